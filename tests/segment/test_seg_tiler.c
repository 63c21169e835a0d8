/* test_seg_tiler.c - U-Net builder shapes, tile geometry (coverage, alignment, blending
 * windows summing to 1), robust statistics equal to sd_normalize_robust, mosaics keep the
 * defect pixels, and tiled inference equal to whole-frame inference away from tile borders
 * (and close everywhere); MC dropout (mean and variance against keyed passes, independent of the
 * batch position, bounded variance, refused without dropout). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sd_test.h"
#include "stemdefect/image.h"
#include "stemdefect/segment.h"

static void test_builder(void) {
  sd_nn_model *m = NULL;
  SD_EXPECT_OK(sd_unet_build(&m, 3, 4, 1, 0.1f, 5));
  SD_EXPECT_OK(sd_nn_model_compile(m, 2, 1, 64, 48));
  sd_nn_tensor *o = sd_nn_model_output(m);
  SD_EXPECT(o->c == 5 && o->h == 64 && o->w == 48);
  SD_EXPECT(sd_unet_depth(m) == 3);
  /* conv parameters by hand: enc 1->4->4, 4->8->8, 8->16->16, mid 16->32->32, up + dec */
  size_t want = 0;
  int ch[5] = {1, 4, 8, 16, 32};
  for (int l = 0; l < 4; l++)
    want += (size_t)9 * ch[l] * ch[l + 1] + (size_t)9 * ch[l + 1] * ch[l + 1];
  for (int l = 2; l >= 0; l--) {
    int c = 4 << l;
    want += (size_t)4 * (2 * c) * c + c;                 /* transposed conv + bias */
    want += (size_t)9 * (2 * c) * c + (size_t)9 * c * c; /* two convs without bias */
  }
  want += (size_t)4 * 5 + 5; /* head */
  size_t bn = 0;
  for (int l = 0; l < 3; l++)
    bn += 2 * 2 * (size_t)(4 << l) * 2; /* enc + dec BN: gamma, beta */
  bn += 2 * 2 * 32;
  SD_EXPECT_MSG(sd_nn_model_trainable_count(m) == want + bn, "%zu trainable, expected %zu",
                sd_nn_model_trainable_count(m), want + bn);
  sd_nn_model_destroy(&m);
  SD_EXPECT(sd_unet_build(&m, 0, 4, 1, 0, 5) != SD_OK);
  sd_error_clear();
  SD_EXPECT(sd_nn_model_compile(NULL == m ? (sd_unet_build(&m, 2, 4, 0, 0, 3), m) : m, 1, 1, 30,
                                32) != SD_OK);
  sd_error_clear();
  sd_nn_model_destroy(&m);
}

static void test_geometry(void) {
  int pos[64];
  for (int len = 40; len <= 700; len += 37)
    for (int t = 32; t <= 256; t *= 2)
      for (int ov = 0; ov <= t / 2; ov += 8) {
        int n = sd_seg_tile_positions(len, t, ov, 8, pos, 64);
        int cover_ok = pos[0] == 0 && (t >= len || pos[n - 1] == len - t);
        for (int i = 1; i < n; i++) {
          cover_ok &= pos[i] > pos[i - 1] && pos[i - 1] + t - pos[i] >= ov;
          if (i < n - 1)
            cover_ok &= pos[i] % 8 == 0;
        }
        SD_EXPECT_MSG(cover_ok, "len %d tile %d overlap %d: %d tiles", len, t, ov, n);
        if (t >= len || n < 2)
          continue;
        /* windows sum to 1 wherever at most two tiles overlap */
        float *w = malloc((size_t)n * t * sizeof *w);
        double worst = 0;
        for (int i = 0; i < n; i++)
          sd_seg_window_1d(pos, n, i, t, w + (size_t)i * t);
        for (int x = 0; x < len; x++) {
          double s = 0;
          int k = 0;
          for (int i = 0; i < n; i++)
            if (x >= pos[i] && x < pos[i] + t) {
              s += w[(size_t)i * t + x - pos[i]];
              k++;
            }
          if (k <= 2 && fabs(s - 1) > worst)
            worst = fabs(s - 1);
          SD_EXPECT(s > 0);
        }
        SD_EXPECT_MSG(worst < 1e-5, "len %d tile %d overlap %d: window sum off by %g", len, t, ov,
                      worst);
        free(w);
      }
}

static void test_stats(void) {
  const int n = 1000;
  float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
  sd_rng r;
  sd_rng_init(&r, 3, 0, 99);
  for (int i = 0; i < n; i++)
    a[i] = b[i] = (float)(50 + 10 * sd_rng_normal(&r) + (i % 7 == 0 ? 100 : 0));
  float med, inv;
  sd_seg_robust_stats(a, n, &med, &inv);
  for (int i = 0; i < n; i++)
    a[i] = b[i];
  SD_EXPECT_OK(sd_normalize_robust(b, n, NULL));
  double worst = 0;
  for (int i = 0; i < n; i++)
    worst = fmax(worst, fabs((a[i] - med) * inv - b[i]));
  SD_EXPECT_MSG(worst == 0, "robust stats differ from sd_normalize_robust by %g", worst);
  SD_EXPECT(sd_seg_sample_stride(4096, 4096, 1 << 20) == 4);
  SD_EXPECT(sd_seg_sample_stride(64, 64, 1 << 20) == 1);
  free(a);
  free(b);
}

static void test_mosaic(void) {
  const int s = 32;
  float *img[4];
  uint8_t *mk[4];
  sd_rng r;
  sd_rng_init(&r, 1, 0, 1);
  for (int q = 0; q < 4; q++) {
    img[q] = malloc((size_t)s * s * sizeof(float));
    mk[q] = calloc((size_t)s * s, 1);
    for (int i = 0; i < s * s; i++)
      img[q][i] = (float)(q * 10000 + i);
    if (q > 0) /* a 5x5 defect of class q near a corner */
      for (int y = 0; y < 5; y++)
        for (int x = 0; x < 5; x++)
          mk[q][(y + (q == 1 ? 1 : 24)) * s + x + (q == 2 ? 2 : 25)] = (uint8_t)q;
  }
  float *out = malloc((size_t)s * s * sizeof *out);
  uint8_t *om = malloc((size_t)s * s);
  sd_seg_mosaic((const float *const *)img, (const uint8_t *const *)mk, s, &r, out, om);
  int cnt[4] = {0};
  for (int i = 0; i < s * s; i++)
    cnt[om[i]]++;
  SD_EXPECT_MSG(cnt[1] == 25 && cnt[2] == 25 && cnt[3] == 25, "defect pixels kept: %d %d %d",
                cnt[1], cnt[2], cnt[3]);
  /* quadrant q holds pixels of source q with their masks */
  int okq = 1;
  for (int y = 0; y < s; y++)
    for (int x = 0; x < s; x++) {
      int q = (y / 16) * 2 + x / 16;
      okq &= (int)(out[y * s + x] / 10000) == q;
      okq &= om[y * s + x] == 0 || om[y * s + x] == q;
    }
  SD_EXPECT(okq);
  for (int q = 0; q < 4; q++)
    free(img[q]), free(mk[q]);
  free(out);
  free(om);
}

/* tiled (tile 128, overlap 32) against whole-frame inference of a 320x288 frame of cin input
 * channels (2: image and deviation, planes of one frame H*W apart) */
static void test_tiled_equals_whole(int cin) {
  const int H = 320, W = 288, depth = 2, C = 3;
  sd_nn_model *a = NULL, *b = NULL;
  SD_EXPECT_OK(sd_unet_build(&a, depth, 4, 1, 0.0f, C));
  SD_EXPECT_OK(sd_unet_build(&b, depth, 4, 1, 0.0f, C));
  SD_EXPECT_OK(sd_nn_model_compile(a, 1, cin, H, W));
  SD_EXPECT_OK(sd_nn_model_compile(b, 4, cin, 128, 128));
  SD_EXPECT_OK(sd_nn_model_init_params(a, 7));
  SD_EXPECT_OK(sd_nn_model_init_params(b, 7));
  /* non-trivial running statistics so eval-mode BN is not the identity */
  for (int i = 0; i < sd_nn_model_buffer_count(a); i++) {
    const sd_nn_param *p = sd_nn_model_buffer(a, i);
    float *x = sd_nn_buffer_data(a, p), *y = sd_nn_buffer_data(b, sd_nn_model_buffer(b, i));
    for (size_t k = 0; k < p->count; k++)
      x[k] = y[k] = strstr(p->name, "var") ? 0.5f + 0.1f * (k % 5) : 0.05f * (k % 3);
  }
  float *img = malloc((size_t)cin * H * W * sizeof *img);
  sd_rng r;
  sd_rng_init(&r, 5, 0, 1);
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++)
      img[y * W + x] = (float)(sin(0.7 * x) * cos(0.5 * y) + 0.3 * sd_rng_normal(&r) +
                               (hypot(y - 150, x - 100) < 12 ? 2 : 0));
  /* a second channel unlike the first (a deviation-like map: noise and a blob elsewhere) */
  for (int y = 0; cin > 1 && y < H; y++)
    for (int x = 0; x < W; x++)
      img[(size_t)H * W + y * W + x] =
          (float)(sd_rng_normal(&r) + (hypot(y - 220, x - 200) < 9 ? 4 : 0));
  sd_seg_tiler tw, tt;
  SD_EXPECT_OK(sd_seg_tiler_create(&tw, a, H, W, 32, 1 << depth));
  SD_EXPECT_OK(sd_seg_tiler_create(&tt, b, H, W, 32, 1 << depth));
  SD_EXPECT(tw.ny == 1 && tw.nx == 1 && tt.ny == 3 && tt.nx == 3);
  float *pw = malloc((size_t)C * H * W * sizeof *pw), *pt = malloc((size_t)C * H * W * sizeof *pt);
  SD_EXPECT_OK(sd_seg_tiler_frames(&tw, img, 1, 0, pw, NULL));
  SD_EXPECT_OK(sd_seg_tiler_frames(&tt, img, 1, 0, pt, NULL));
  /* the whole-frame result against a plain forward + softmax */
  SD_EXPECT_OK(sd_nn_model_forward(a, img, 1, SD_NN_MODE_EVAL));
  sd_nn_tensor *o = sd_nn_model_output(a);
  sd_nn_softmax(1, C, H * W, o->data, o->data);
  double dw = 0;
  for (size_t i = 0; i < (size_t)C * H * W; i++)
    dw = fmax(dw, fabs(o->data[i] - pw[i]));
  SD_EXPECT_MSG(dw < 1e-6, "whole-frame tiler vs forward: %g", dw);
  /* away from tile borders: every tile that covers the pixel with weight > 0 sees it at
   * least `margin` pixels from each of its edges that lie inside the frame */
  const int margin = 40;
  double interior = 0, anywhere = 0, sum1 = 0;
  long n_int = 0;
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      int far = 1;
      for (int i = 0; i < tt.ny; i++)
        for (int j = 0; j < tt.nx; j++) {
          int y0 = tt.py[i], x0 = tt.px[j];
          if (y < y0 || y >= y0 + 128 || x < x0 || x >= x0 + 128)
            continue;
          if (tt.wy[i * 128 + y - y0] * tt.wx[j * 128 + x - x0] <= 0)
            continue;
          if ((y0 > 0 && y - y0 < margin) || (y0 + 128 < H && y0 + 128 - y <= margin) ||
              (x0 > 0 && x - x0 < margin) || (x0 + 128 < W && x0 + 128 - x <= margin))
            far = 0;
        }
      double s = 0;
      for (int c = 0; c < C; c++) {
        size_t q = ((size_t)c * H + y) * W + x;
        double d = fabs(pw[q] - pt[q]);
        anywhere = fmax(anywhere, d);
        if (far)
          interior = fmax(interior, d);
        s += pt[q];
      }
      sum1 = fmax(sum1, fabs(s - 1));
      n_int += far;
    }
  SD_EXPECT_MSG(n_int > H * W / 20, "%ld interior pixels", n_int);
  SD_EXPECT_MSG(interior < 1e-4, "tiled vs whole away from tile borders: max |dp| = %g over %ld px",
                interior, n_int);
  SD_EXPECT_MSG(sum1 < 1e-5, "blended probabilities sum to 1 +- %g", sum1);
  printf("tiled vs whole (%d input channel(s)): max |dp| %.3g away from tile borders (%ld px), "
         "%.3g anywhere\n",
         cin, interior, n_int, anywhere);
  if (cin > 1) {
    /* the second channel matters: zeroing it changes the probabilities */
    float *pz = malloc((size_t)C * H * W * sizeof *pz);
    float *iz = malloc((size_t)cin * H * W * sizeof *iz);
    memcpy(iz, img, (size_t)cin * H * W * sizeof *iz);
    memset(iz + (size_t)H * W, 0, (size_t)H * W * sizeof *iz);
    SD_EXPECT_OK(sd_seg_tiler_frames(&tt, iz, 1, 0, pz, NULL));
    double dz = 0;
    for (size_t i = 0; i < (size_t)C * H * W; i++)
      dz = fmax(dz, fabs(pz[i] - pt[i]));
    SD_EXPECT_MSG(dz > 1e-3, "the second input channel does not change the output (%g)", dz);
    free(pz);
    free(iz);
  }
  /* a frame smaller than the tile is reflect-padded and runs whole */
  sd_seg_tiler ts;
  SD_EXPECT_OK(sd_seg_tiler_create(&ts, b, 100, 90, 32, 4));
  SD_EXPECT(ts.ny == 1 && ts.nx == 1 && ts.max_images == 4);
  float *ps = malloc((size_t)2 * C * 100 * 90 * sizeof *ps),
        *im2 = malloc((size_t)2 * cin * 100 * 90 * sizeof *im2);
  for (int i = 0; i < 2 * cin * 100 * 90; i++)
    im2[i] = img[i % (cin * H * W)];
  SD_EXPECT_OK(sd_seg_tiler_frames(&ts, im2, 2, 0, ps, NULL));
  int fin = 1;
  for (int i = 0; i < 2 * C * 100 * 90; i++)
    fin &= isfinite(ps[i]) && ps[i] >= 0 && ps[i] <= 1;
  SD_EXPECT(fin);
  sd_seg_tiler_destroy(&ts);
  free(ps);
  free(im2);
  sd_seg_tiler_destroy(&tw);
  sd_seg_tiler_destroy(&tt);
  free(pw);
  free(pt);
  free(img);
  sd_nn_model_destroy(&a);
  sd_nn_model_destroy(&b);
}

/* MC dropout: the tiler's mean and variance against S plain keyed passes; the same image gets
 * the same result in another batch position; tiled MC results are probabilities with a
 * bounded variance; a model without dropout is refused */
static void test_mc_dropout(void) {
  const int H = 64, W = 64, depth = 2, C = 3, S = 5;
  const size_t npx = (size_t)H * W, len = (size_t)C * npx;
  const uint64_t seed = 3;
  sd_nn_model *a = NULL, *b = NULL, *nod = NULL;
  SD_EXPECT_OK(sd_unet_build(&a, depth, 4, 1, 0.3f, C));
  SD_EXPECT_OK(sd_unet_build(&b, depth, 4, 1, 0.3f, C));
  SD_EXPECT_OK(sd_unet_build(&nod, depth, 4, 1, 0.0f, C));
  SD_EXPECT_OK(sd_nn_model_compile(a, 2, 1, H, W));
  SD_EXPECT_OK(sd_nn_model_compile(b, 4, 1, 32, 32));
  SD_EXPECT_OK(sd_nn_model_compile(nod, 1, 1, H, W));
  SD_EXPECT_OK(sd_nn_model_init_params(a, 5));
  SD_EXPECT_OK(sd_nn_model_init_params(b, 5));
  float *img = malloc(2 * npx * sizeof *img);
  sd_rng r;
  sd_rng_init(&r, 8, 0, 1);
  for (size_t i = 0; i < 2 * npx; i++)
    img[i] = (float)sd_rng_normal(&r);
  /* reference: S keyed passes of image 7 (whole frame = tile 0), in double */
  double *rm = calloc(len, sizeof *rm), *rq = calloc(len, sizeof *rq);
  for (int s = 0; s < S; s++) {
    uint64_t key = sd_seg_mc_key(7, 0, s);
    sd_nn_model_set_dropout_keys(a, seed, &key);
    SD_EXPECT_OK(sd_nn_model_forward(a, img + npx, 1, SD_NN_MODE_EVAL_DROPOUT));
    sd_nn_tensor *o = sd_nn_model_output(a);
    sd_nn_softmax(1, C, (int)npx, o->data, o->data);
    for (size_t i = 0; i < len; i++) {
      rm[i] += o->data[i] / (double)S;
      rq[i] += (double)o->data[i] * o->data[i] / S;
    }
  }
  sd_nn_model_set_dropout_keys(a, 0, NULL);
  sd_seg_tiler tw, tt, tn;
  SD_EXPECT_OK(sd_seg_tiler_create(&tw, a, H, W, 16, 1 << depth));
  SD_EXPECT_OK(sd_seg_tiler_set_mc(&tw, S, seed));
  float *mean = malloc(2 * len * sizeof *mean), *var = malloc(2 * len * sizeof *var);
  float *m1 = malloc(len * sizeof *m1), *v1 = malloc(len * sizeof *v1);
  /* image 7 alone, then as the second of images 6, 7 */
  SD_EXPECT_OK(sd_seg_tiler_frames(&tw, img + npx, 1, 7, m1, v1));
  SD_EXPECT_OK(sd_seg_tiler_frames(&tw, img, 2, 6, mean, var));
  double dm = 0, dv = 0, db = 0, vmax = 0;
  for (size_t i = 0; i < len; i++) {
    dm = fmax(dm, fabs(m1[i] - rm[i]));
    dv = fmax(dv, fabs(v1[i] - (rq[i] - rm[i] * rm[i])));
    db = fmax(db, fmax(fabs(m1[i] - mean[len + i]), fabs(v1[i] - var[len + i])));
    vmax = fmax(vmax, v1[i]);
  }
  SD_EXPECT_MSG(dm < 1e-6 && dv < 1e-6, "MC tiler vs keyed passes: mean %g, variance %g", dm, dv);
  SD_EXPECT_MSG(db < 1e-5, "the same image in another batch position: %g", db);
  SD_EXPECT_MSG(vmax > 1e-4, "largest MC variance %g (dropout 0.3 should vary the output)", vmax);
  /* tiled (32 px tiles, 3 x 3 per frame) MC: probabilities, 0 <= var <= m (1 - m) */
  SD_EXPECT_OK(sd_seg_tiler_create(&tt, b, H, W, 16, 1 << depth));
  SD_EXPECT(tt.ny == 3 && tt.nx == 3);
  SD_EXPECT_OK(sd_seg_tiler_set_mc(&tt, S, seed));
  SD_EXPECT_OK(sd_seg_tiler_frames(&tt, img, 2, 6, mean, var));
  double sum1 = 0, bound = 0, tvmax = 0;
  for (size_t p = 0; p < 2 * npx; p++) {
    size_t i = p / npx, q = p % npx;
    double su = 0;
    for (int c = 0; c < C; c++) {
      size_t k = (i * C + c) * npx + q;
      su += mean[k];
      bound = fmax(bound, fmax(-var[k], var[k] - mean[k] * (1 - mean[k])));
      tvmax = fmax(tvmax, var[k]);
    }
    sum1 = fmax(sum1, fabs(su - 1));
  }
  SD_EXPECT_MSG(sum1 < 1e-5, "tiled MC means sum to 1 +- %g", sum1);
  SD_EXPECT_MSG(bound < 1e-6 && tvmax > 1e-4, "tiled MC variance: bound violated by %g, max %g",
                bound, tvmax);
  printf("MC dropout: tiler vs keyed passes mean %.2g variance %.2g; batch position %.2g; largest "
         "variance %.3g whole, %.3g tiled\n",
         dm, dv, db, vmax, tvmax);
  SD_EXPECT_OK(sd_seg_tiler_create(&tn, nod, H, W, 16, 1 << depth));
  SD_EXPECT(sd_seg_tiler_set_mc(&tn, S, seed) == SD_ERR_ARG);
  sd_error_clear();
  sd_seg_tiler_destroy(&tn);
  sd_seg_tiler_destroy(&tw);
  sd_seg_tiler_destroy(&tt);
  free(img), free(rm), free(rq), free(mean), free(var), free(m1), free(v1);
  sd_nn_model_destroy(&a);
  sd_nn_model_destroy(&b);
  sd_nn_model_destroy(&nod);
}

int main(void) {
  test_builder();
  test_geometry();
  test_stats();
  test_mosaic();
  test_tiled_equals_whole(1);
  test_tiled_equals_whole(2);
  test_mc_dropout();
  return sd_test_finish("test_seg_tiler");
}
