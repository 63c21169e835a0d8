/* image.c - robust normalisation, resize, crop. */
#include "stemdefect/image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Wirth's selection: on return a[k] is the k-th smallest and a[0..k-1] <= a[k]. */
static float select_kth(float *a, size_t n, size_t k) {
  long l = 0, m = (long)n - 1, kk = (long)k;
  while (l < m) {
    float x = a[kk];
    long i = l, j = m;
    do {
      while (a[i] < x) i++;
      while (x < a[j]) j--;
      if (i <= j) {
        float t = a[i];
        a[i] = a[j];
        a[j] = t;
        i++;
        j--;
      }
    } while (i <= j);
    if (j < kk) l = i;
    if (kk < i) m = j;
  }
  return a[kk];
}

float sd_median(const float *v, size_t n, float *scratch) {
  if (n == 0) return 0.0f;
  float *s = scratch ? scratch : malloc(n * sizeof *s);
  if (!s) return NAN;
  memcpy(s, v, n * sizeof *s);
  float m;
  if (n % 2) {
    m = select_kth(s, n, n / 2);
  } else {
    float hi = select_kth(s, n, n / 2);
    /* the lower middle is the max of the lower part after selection */
    float lo = s[0];
    for (size_t i = 1; i < n / 2; i++)
      if (s[i] > lo) lo = s[i];
    m = 0.5f * (lo + hi);
  }
  if (!scratch) free(s);
  return m;
}

sd_status sd_normalize_robust(float *img, size_t n, float *scratch) {
  if (n == 0) return SD_OK;
  float *s = scratch ? scratch : sd_malloc(n, sizeof *s, "normalisation scratch");
  if (!s) return SD_ERR_NOMEM;
  float med = sd_median(img, n, s);
  for (size_t i = 0; i < n; i++) s[i] = fabsf(img[i] - med);
  float mad = sd_median(s, n, s);
  double scale = 1.4826 * mad;
  if (!(scale > 1e-12)) {
    double mean = 0, var = 0;
    for (size_t i = 0; i < n; i++) mean += img[i];
    mean /= (double)n;
    for (size_t i = 0; i < n; i++) var += (img[i] - mean) * (img[i] - mean);
    scale = sqrt(var / (double)n);
    if (!(scale > 1e-12)) scale = 1.0;
  }
  float inv = (float)(1.0 / scale);
  for (size_t i = 0; i < n; i++) img[i] = (img[i] - med) * inv;
  if (!scratch) free(s);
  return SD_OK;
}

static float sample_bilinear(const float *in, int h, int w, double y, double x) {
  if (y < 0) y = 0;
  if (x < 0) x = 0;
  if (y > h - 1) y = h - 1;
  if (x > w - 1) x = w - 1;
  int y0 = (int)y, x0 = (int)x;
  int y1 = y0 + 1 < h ? y0 + 1 : y0, x1 = x0 + 1 < w ? x0 + 1 : x0;
  double fy = y - y0, fx = x - x0;
  return (float)((1 - fy) * ((1 - fx) * in[y0 * w + x0] + fx * in[y0 * w + x1]) +
                 fy * ((1 - fx) * in[y1 * w + x0] + fx * in[y1 * w + x1]));
}

void sd_image_resize(const float *in, int h, int w, float *out, int oh, int ow) {
  double sy = (double)h / oh, sx = (double)w / ow;
  int ny = sy > 2 ? (int)ceil(sy) : 1, nx = sx > 2 ? (int)ceil(sx) : 1;
  for (int i = 0; i < oh; i++) {
    for (int j = 0; j < ow; j++) {
      /* pixel centres map: (i + 0.5) * s - 0.5; average ny x nx sub-samples when shrinking */
      double acc = 0;
      for (int a = 0; a < ny; a++) {
        for (int b = 0; b < nx; b++) {
          double y = (i + (a + 0.5) / ny) * sy - 0.5;
          double x = (j + (b + 0.5) / nx) * sx - 0.5;
          acc += sample_bilinear(in, h, w, y, x);
        }
      }
      out[(size_t)i * ow + j] = (float)(acc / (ny * nx));
    }
  }
}

void sd_image_crop_center(const float *in, int h, int w, float *out, int oh, int ow) {
  int y0 = (h - oh) / 2, x0 = (w - ow) / 2;
  for (int i = 0; i < oh; i++)
    memcpy(out + (size_t)i * ow, in + (size_t)(y0 + i) * w + x0, (size_t)ow * sizeof *out);
}
