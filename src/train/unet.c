/* unet.c - the segmentation U-Net builder, multi-defect mosaics, robust frame statistics and
 * the tile geometry of tiled inference (see segment.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stemdefect/image.h"
#include "stemdefect/segment.h"

static int conv_block(sd_nn_model *m, int x, int ch, int batchnorm, const char *name) {
  char nm[SD_NN_NAME_MAX];
  for (int r = 0; r < 2; r++) {
    x = sd_nn_add_conv2d_ex(m, x, ch, 3, 1, 1, !batchnorm);
    snprintf(nm, sizeof nm, "%s_conv%d", name, r);
    if (x >= 0) sd_nn_layer_set_name(m, x, nm);
    if (batchnorm) {
      x = sd_nn_add_batchnorm(m, x);
      snprintf(nm, sizeof nm, "%s_bn%d", name, r);
      if (x >= 0) sd_nn_layer_set_name(m, x, nm);
    }
    x = sd_nn_add_relu(m, x);
  }
  return x;
}

sd_status sd_unet_build(sd_nn_model **out, int depth, int width, int batchnorm, float dropout,
                        int num_classes) {
  if (depth < 1 || depth > 6 || width < 1 || num_classes < 2 || dropout < 0 || dropout >= 1)
    return SD_ERROR(SD_ERR_ARG,
                    "U-Net: depth %d (1..6), width %d (>= 1), classes %d (>= 2), dropout %g ([0,1))",
                    depth, width, num_classes, (double)dropout);
  sd_nn_model *m = NULL;
  SD_CHECK(sd_nn_model_create(&m));
  int skip[8];
  int x = 0;
  char nm[SD_NN_NAME_MAX];
  for (int l = 0; l < depth; l++) {
    snprintf(nm, sizeof nm, "enc%d", l);
    skip[l] = conv_block(m, x, width << l, batchnorm, nm);
    x = sd_nn_add_maxpool(m, skip[l], 2, 2);
  }
  x = conv_block(m, x, width << depth, batchnorm, "mid");
  if (dropout > 0) x = sd_nn_add_dropout(m, x, dropout);
  for (int l = depth - 1; l >= 0; l--) {
    x = sd_nn_add_conv_transpose2d(m, x, width << l, 2, 2, 0);
    snprintf(nm, sizeof nm, "up%d", l);
    if (x >= 0) sd_nn_layer_set_name(m, x, nm);
    x = sd_nn_add_concat(m, x, skip[l]);
    snprintf(nm, sizeof nm, "dec%d", l);
    x = conv_block(m, x, width << l, batchnorm, nm);
  }
  x = sd_nn_add_conv2d(m, x, num_classes, 1, 1, 0);
  if (x >= 0) sd_nn_layer_set_name(m, x, "head");
  if (m->build_status != SD_OK) {
    sd_status st = m->build_status;
    sd_nn_model_destroy(&m);
    return st;
  }
  *out = m;
  return SD_OK;
}

int sd_unet_depth(const sd_nn_model *m) {
  int n = 0;
  for (int i = 0; i < m->num_layers; i++) n += m->layers[i].kind == SD_NN_LAYER_MAXPOOL;
  return n;
}

/* ---- mosaics ----------------------------------------------------------------------------- */

void sd_seg_mosaic(const float *const src_img[4], const uint8_t *const src_mask[4], int s,
                   sd_rng *rng, float *img, uint8_t *mask) {
  int h = s / 2;
  for (int q = 0; q < 4; q++) {
    /* window of src[q] centred on its defect pixels */
    double sy = 0, sx = 0, cnt = 0;
    const uint8_t *mk = src_mask[q];
    for (int y = 0; y < s; y++)
      for (int x = 0; x < s; x++)
        if (mk[y * s + x]) {
          sy += y;
          sx += x;
          cnt++;
        }
    int y0, x0;
    /* draw always, so the stream does not depend on the content */
    int ry = (int)sd_rng_below(rng, (uint64_t)(s - h + 1));
    int rx = (int)sd_rng_below(rng, (uint64_t)(s - h + 1));
    if (cnt > 0) {
      y0 = (int)lround(sy / cnt) - h / 2;
      x0 = (int)lround(sx / cnt) - h / 2;
      if (y0 < 0) y0 = 0;
      if (x0 < 0) x0 = 0;
      if (y0 > s - h) y0 = s - h;
      if (x0 > s - h) x0 = s - h;
    } else {
      y0 = ry;
      x0 = rx;
    }
    int oy = (q / 2) * h, ox = (q % 2) * h;
    for (int y = 0; y < h; y++) {
      memcpy(img + (size_t)(oy + y) * s + ox, src_img[q] + (size_t)(y0 + y) * s + x0,
             (size_t)h * sizeof *img);
      memcpy(mask + (size_t)(oy + y) * s + ox, mk + (size_t)(y0 + y) * s + x0, (size_t)h);
    }
  }
}

/* ---- robust statistics ---------------------------------------------------------------- */

void sd_seg_robust_stats(float *v, size_t n, float *median, float *inv_scale) {
  if (n == 0) {
    *median = 0;
    *inv_scale = 1;
    return;
  }
  /* the same arithmetic as sd_normalize_robust */
  double mean = 0, var = 0;
  for (size_t i = 0; i < n; i++) mean += v[i];
  mean /= (double)n;
  for (size_t i = 0; i < n; i++) var += (v[i] - mean) * (v[i] - mean);
  float med = sd_median(v, n, v);
  for (size_t i = 0; i < n; i++) v[i] = fabsf(v[i] - med);
  float mad = sd_median(v, n, v);
  double sc = 1.4826 * mad;
  if (!(sc > 1e-12)) {
    sc = sqrt(var / (double)n);
    if (!(sc > 1e-12)) sc = 1.0;
  }
  *median = med;
  *inv_scale = (float)(1.0 / sc);
}

int sd_seg_sample_stride(int h, int w, int64_t max_samples) {
  int s = 1;
  while ((int64_t)((h + s - 1) / s) * (int64_t)((w + s - 1) / s) > max_samples) s++;
  return s;
}

/* ---- tile geometry --------------------------------------------------------------------- */

int sd_seg_tile_positions(int len, int t, int overlap, int align, int *pos, int cap) {
  if (t >= len || cap < 2) {
    if (cap > 0) pos[0] = 0;
    return 1;
  }
  if (align < 1) align = 1;
  if (overlap >= t) overlap = t - 1;
  int stride = t - overlap;
  int n = 1 + (len - t + stride - 1) / stride; /* enough tiles to cover with this stride */
  if (n > cap) n = cap;
  for (;;) {
    int okay = 1;
    for (int i = 0; i < n; i++) {
      int p = (i == n - 1) ? len - t : (int)((int64_t)i * (len - t) / (n - 1));
      if (i < n - 1) p -= p % align;
      pos[i] = p;
    }
    for (int i = 1; i < n; i++) okay &= pos[i - 1] + t - pos[i] >= overlap && pos[i] > pos[i - 1];
    if (okay || n >= cap) break;
    n++;
  }
  return n;
}

void sd_seg_window_1d(const int *pos, int n, int i, int t, float *w) {
  for (int j = 0; j < t; j++) w[j] = 1.0f;
  if (i > 0) {
    int r = pos[i - 1] + t - pos[i];
    for (int j = 0; j < r && j < t; j++) w[j] *= (float)(0.5 - 0.5 * cos(M_PI * (j + 0.5) / r));
  }
  if (i < n - 1) {
    int r = pos[i] + t - pos[i + 1];
    for (int j = 0; j < r && j < t; j++) w[t - 1 - j] *= (float)(0.5 - 0.5 * cos(M_PI * (j + 0.5) / r));
  }
}
