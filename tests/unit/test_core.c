/* test_core.c - status/error record, RNG streams and distributions, image utilities. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sd_test.h"
#include "stemdefect/image.h"
#include "stemdefect/rng.h"
#include "stemdefect/status.h"

static sd_status inner(void) { return SD_ERROR(SD_ERR_FORMAT, "file %s is bad", "x.tif"); }
static sd_status outer(void) {
  SD_CHECK(inner());
  return SD_OK;
}

static int cmp_f(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}

int main(void) {
  /* error record: first message kept, trace grows, clear resets */
  sd_status st = outer();
  SD_EXPECT(st == SD_ERR_FORMAT);
  SD_EXPECT(strstr(sd_error_message(), "x.tif") != NULL);
  SD_EXPECT(strstr(sd_error_where(), "inner") != NULL);
  SD_EXPECT(strstr(sd_error_where(), "outer") != NULL);
  sd_error_clear();
  SD_EXPECT(sd_error_code() == SD_OK && sd_error_message()[0] == '\0');
  SD_EXPECT(sd_malloc((size_t)1 << 62, 1 << 8, "huge") == NULL);
  SD_EXPECT(sd_error_code() == SD_ERR_NOMEM && strstr(sd_error_message(), "huge"));
  sd_error_clear();
  /* large-buffer allocation: zeroed, 64-byte aligned below the threshold, 2 MiB aligned from it
   * (Linux), overflow caught with the buffer's name */
  {
    unsigned char *s = sd_calloc_huge(1000, 3, (size_t)1 << 20, "small");
    unsigned char *l = sd_calloc_huge((size_t)3 << 20, 1, (size_t)1 << 20, "large");
    SD_EXPECT(s && l && (uintptr_t)s % 64 == 0);
#ifdef __linux__
    SD_EXPECT(l && (uintptr_t)l % ((uintptr_t)2 << 20) == 0);
#endif
    int zero = 1;
    for (size_t i = 0; s && i < 3000; i++)
      zero &= s[i] == 0;
    for (size_t i = 0; l && i < ((size_t)3 << 20); i += 4093)
      zero &= l[i] == 0;
    SD_EXPECT(zero && l[((size_t)3 << 20) - 1] == 0);
    free(s);
    free(l);
    SD_EXPECT(sd_calloc_huge((size_t)1 << 62, 1 << 8, 1, "too big") == NULL);
    SD_EXPECT(sd_error_code() == SD_ERR_NOMEM && strstr(sd_error_message(), "too big"));
    sd_error_clear();
  }

  /* rng: determinism, independence of streams, moments */
  sd_rng a, b, c;
  sd_rng_init(&a, 42, 0, 1);
  sd_rng_init(&b, 42, 0, 1);
  sd_rng_init(&c, 42, 1, 1);
  int same = 1, diff = 0;
  for (int i = 0; i < 1000; i++) {
    uint64_t x = sd_rng_u64(&a), y = sd_rng_u64(&b), z = sd_rng_u64(&c);
    same &= x == y;
    diff += x != z;
  }
  SD_EXPECT(same);
  SD_EXPECT(diff == 1000);
  int n = 200000;
  double s = 0, s2 = 0, pu = 0, pn2 = 0;
  double ps = 0, ps2 = 0, pbig = 0, pbig2 = 0;
  int64_t hist[10] = {0};
  for (int i = 0; i < n; i++) {
    double u = sd_rng_uniform(&a);
    SD_EXPECT(u >= 0 && u < 1);
    hist[(int)(u * 10)]++;
    pu += u;
    double g = sd_rng_normal(&a);
    s += g;
    s2 += g * g;
    double p = (double)sd_rng_poisson(&a, 3.5);
    ps += p;
    ps2 += p * p;
    double q = (double)sd_rng_poisson(&a, 250.0);
    pbig += q;
    pbig2 += q * q;
    (void)pn2;
  }
  SD_EXPECT_NEAR(pu / n, 0.5, 0.005);
  for (int k = 0; k < 10; k++) SD_EXPECT_NEAR(hist[k] / (double)n, 0.1, 0.005);
  SD_EXPECT_NEAR(s / n, 0.0, 0.01);
  SD_EXPECT_NEAR(s2 / n, 1.0, 0.02);
  SD_EXPECT_NEAR(ps / n, 3.5, 0.03);
  SD_EXPECT_NEAR(ps2 / n - (ps / n) * (ps / n), 3.5, 0.1);
  SD_EXPECT_NEAR(pbig / n, 250.0, 0.3);
  SD_EXPECT_NEAR(pbig2 / n - (pbig / n) * (pbig / n), 250.0, 6.0);
  for (int i = 0; i < 1000; i++) SD_EXPECT(sd_rng_below(&a, 7) < 7);
  int perm[50], seen[50] = {0};
  for (int i = 0; i < 50; i++) perm[i] = i;
  sd_rng_shuffle_int(&a, perm, 50);
  for (int i = 0; i < 50; i++) seen[perm[i]]++;
  int ok = 1;
  for (int i = 0; i < 50; i++) ok &= seen[i] == 1;
  SD_EXPECT(ok);

  /* median against a sort, odd and even sizes, with ties */
  for (int len = 1; len < 60; len++) {
    float v[64], w[64];
    for (int i = 0; i < len; i++) v[i] = w[i] = (float)(sd_rng_below(&a, 10));
    qsort(w, (size_t)len, sizeof *w, cmp_f);
    float expect = len % 2 ? w[len / 2] : 0.5f * (w[len / 2 - 1] + w[len / 2]);
    SD_EXPECT_NEAR(sd_median(v, (size_t)len, NULL), expect, 0);
  }
  /* robust z-score: median 0, MAD 1/1.4826 */
  float img[101];
  for (int i = 0; i < 101; i++) img[i] = 10.0f + 2.0f * (float)(i - 50);
  SD_EXPECT_OK(sd_normalize_robust(img, 101, NULL));
  SD_EXPECT_NEAR(img[50], 0.0, 1e-6);
  float absdev[101];
  for (int i = 0; i < 101; i++) absdev[i] = fabsf(img[i]);
  SD_EXPECT_NEAR(sd_median(absdev, 101, NULL) * 1.4826, 1.0, 1e-5);
  /* shortcut removal: a linear rescale gives the same normalised image */
  float x1[64], x2[64];
  for (int i = 0; i < 64; i++) {
    x1[i] = (float)sd_rng_normal(&a);
    x2[i] = 3.0f * x1[i] + 100.0f;
  }
  sd_normalize_robust(x1, 64, NULL);
  sd_normalize_robust(x2, 64, NULL);
  double md = 0;
  for (int i = 0; i < 64; i++) md = fmax(md, fabs(x1[i] - x2[i]));
  SD_EXPECT_NEAR(md, 0.0, 1e-4);
  /* constant image: no NaN */
  float cst[16];
  for (int i = 0; i < 16; i++) cst[i] = 7;
  sd_normalize_robust(cst, 16, NULL);
  SD_EXPECT(cst[3] == 0.0f);

  /* resize: identity, constant, linear ramp preserved in the interior; crop */
  float ramp[8 * 8], out[16 * 16], back[8 * 8];
  for (int y = 0; y < 8; y++)
    for (int x = 0; x < 8; x++) ramp[y * 8 + x] = (float)x;
  sd_image_resize(ramp, 8, 8, back, 8, 8);
  SD_EXPECT(memcmp(ramp, back, sizeof ramp) == 0);
  sd_image_resize(ramp, 8, 8, out, 16, 16);
  SD_EXPECT_NEAR(out[5 * 16 + 6], (6 + 0.5) / 2 - 0.5, 1e-6);
  sd_image_resize(out, 16, 16, back, 8, 8);
  SD_EXPECT_NEAR(back[3 * 8 + 4], 4.0, 1e-5);
  float big[40 * 40], small[5 * 5];
  for (int i = 0; i < 1600; i++) big[i] = 2.5f;
  sd_image_resize(big, 40, 40, small, 5, 5);
  SD_EXPECT_NEAR(small[12], 2.5, 1e-6);
  float cr[4 * 4];
  sd_image_crop_center(ramp, 8, 8, cr, 4, 4);
  SD_EXPECT(cr[0] == 2.0f && cr[3] == 5.0f);
  return sd_test_finish("test_core");
}
