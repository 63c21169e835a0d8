/* describe.c - descriptor rows of one image: regions of every defect channel with shape,
 * probability and residual statistics, and the image's own vector on every row. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stemdefect/features.h"

static const char *const region_names[SD_FEAT_REGION_COLS] = {
    "area",      "mean_prob",  "max_prob",     "centroid_y",  "centroid_x", "box_height",
    "box_width", "perimeter",  "eccentricity", "orientation", "solidity",   "hu1",
    "hu2",       "hu3",        "hu4",          "hu5",         "hu6",        "hu7",
    "res_mean",  "res_std",    "res_skew",     "res_kurt",    "res_absmax", "distortion"};
static const char *const image_fixed_names[SD_FEAT_IMAGE_FIXED_COLS] = {
    "img_skew", "img_kurt", "img_grad", "img_tail", "res_img_absmean", "res_img_tail"};

int sd_feat_num_columns(int C) { return SD_FEAT_REGION_COLS + C + (C - 1) + SD_FEAT_IMAGE_FIXED_COLS; }

void sd_feat_column_names(int C, const char *const *class_names, char *out, size_t len) {
  int k = 0;
  for (int i = 0; i < SD_FEAT_REGION_COLS; i++, k++) snprintf(out + k * len, len, "%s", region_names[i]);
  for (int c = 0; c < C; c++, k++) snprintf(out + k * len, len, "mass_%s", class_names[c]);
  for (int c = 1; c < C; c++, k++) snprintf(out + k * len, len, "regions_%s", class_names[c]);
  for (int i = 0; i < SD_FEAT_IMAGE_FIXED_COLS; i++, k++)
    snprintf(out + k * len, len, "%s", image_fixed_names[i]);
}

/* Hu moments span many decades: a signed log keeps them comparable. */
static float hu_log(double h) {
  return (float)(h < 0 ? -log10(1 + fabs(h) * 1e6) : log10(1 + fabs(h) * 1e6));
}

/* mean, std, skewness, excess kurtosis of v over the pixels where labels == id (or all when
 * labels == NULL); absmax. */
static void moments(const float *v, const int32_t *labels, int32_t id, size_t n, double out[5]) {
  double s = 0, cnt = 0, amax = 0;
  for (size_t i = 0; i < n; i++)
    if (!labels || labels[i] == id) {
      s += v[i];
      cnt += 1;
      if (fabs(v[i]) > amax) amax = fabs(v[i]);
    }
  double mean = cnt > 0 ? s / cnt : 0, m2 = 0, m3 = 0, m4 = 0;
  for (size_t i = 0; i < n; i++)
    if (!labels || labels[i] == id) {
      double d = v[i] - mean;
      m2 += d * d;
      m3 += d * d * d;
      m4 += d * d * d * d;
    }
  if (cnt > 0) {
    m2 /= cnt;
    m3 /= cnt;
    m4 /= cnt;
  }
  out[0] = mean;
  out[1] = sqrt(m2);
  out[2] = m2 > 1e-12 ? m3 / pow(m2, 1.5) : 0;
  out[3] = m2 > 1e-12 ? m4 / (m2 * m2) - 3 : 0;
  out[4] = amax;
}

sd_status sd_feat_describe_image(const sd_feat_image *in, const sd_feat_opts *opts, float *rows,
                                 int32_t *channel, int32_t *box, int cap, int *nrows) {
  int C = in->channels, h = in->height, w = in->width;
  size_t n = (size_t)h * (size_t)w;
  int D = sd_feat_num_columns(C);
  *nrows = 0;
  if (C < 2 || C > 60)
    return SD_ERROR(SD_ERR_ARG, "heatmaps need a background and 1..59 class channels (C = %d)", C);
  uint8_t *mask = malloc(n);
  int32_t *labels = malloc(n * sizeof *labels), *stack = malloc(n * sizeof *stack);
  double *hull = malloc(2 * (4 * n + 8) * sizeof *hull);
  float *zero = calloc(n, sizeof *zero);
  if (!mask || !labels || !stack || !hull || !zero) {
    free(mask);
    free(labels);
    free(stack);
    free(hull);
    free(zero);
    return SD_ERROR(SD_ERR_NOMEM, "describe scratch (%dx%d)", h, w);
  }
  const float *res = in->residual ? in->residual : zero;
  const float *dist = in->distortion ? in->distortion : zero;

  /* the image's own vector */
  double ivec[2 * 60 + SD_FEAT_IMAGE_FIXED_COLS];
  int ni = 0;
  for (int c = 0; c < C; c++) {
    double s = 0;
    const float *p = in->heatmap + (size_t)c * n;
    for (size_t i = 0; i < n; i++) s += p[i];
    ivec[ni++] = s / (double)n;
  }
  int count_at = ni; /* region counts are filled after labelling */
  ni += C - 1;
  double mo[5];
  moments(in->image, NULL, 0, n, mo);
  double grad = 0, tail = 0;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      float v = in->image[(size_t)y * w + x];
      float gx = x + 1 < w ? in->image[(size_t)y * w + x + 1] - v : 0;
      float gy = y + 1 < h ? in->image[(size_t)(y + 1) * w + x] - v : 0;
      grad += sqrt((double)gx * gx + (double)gy * gy);
      tail += fabsf(v) > 3;
    }
  double rabs = 0, rtail = 0;
  for (size_t i = 0; i < n; i++) {
    rabs += fabsf(res[i]);
    rtail += fabsf(res[i]) > 3;
  }
  ivec[ni++] = mo[2];
  ivec[ni++] = mo[3];
  ivec[ni++] = grad / (double)n;
  ivec[ni++] = tail / (double)n;
  ivec[ni++] = rabs / (double)n;
  ivec[ni++] = rtail / (double)n;

  sd_status st = SD_OK;
  int nr = 0;
  for (int c = 1; c < C && st == SD_OK; c++) {
    const float *p = in->heatmap + (size_t)c * n;
    for (size_t i = 0; i < n; i++) mask[i] = p[i] > opts->threshold;
    int ncomp = sd_feat_label_components(mask, h, w, labels, stack);
    int kept = 0;
    for (int id = 1; id <= ncomp && st == SD_OK; id++) {
      sd_region_shape sh;
      st = sd_feat_region_shape(labels, h, w, id, hull, &sh);
      if (st != SD_OK) break;
      if (sh.area < opts->min_area) continue;
      kept++;
      if (nr >= cap) {
        nr++;
        continue;
      }
      float *r = rows + (size_t)nr * D;
      double ps = 0, pm = 0;
      for (size_t i = 0; i < n; i++)
        if (labels[i] == id) {
          ps += p[i];
          if (p[i] > pm) pm = p[i];
        }
      double rm[5], dm[5];
      moments(res, labels, id, n, rm);
      moments(dist, labels, id, n, dm);
      float v[SD_FEAT_REGION_COLS] = {
          (float)sh.area, (float)(ps / (double)sh.area), (float)pm, (float)sh.cy, (float)sh.cx,
          (float)(sh.y1 - sh.y0), (float)(sh.x1 - sh.x0), (float)sh.perimeter,
          (float)sh.eccentricity, (float)sh.orientation, (float)sh.solidity,
          hu_log(sh.hu[0]), hu_log(sh.hu[1]), hu_log(sh.hu[2]), hu_log(sh.hu[3]),
          hu_log(sh.hu[4]), hu_log(sh.hu[5]), hu_log(sh.hu[6]), (float)rm[0], (float)rm[1],
          (float)rm[2], (float)rm[3], (float)rm[4], (float)dm[0]};
      memcpy(r, v, sizeof v);
      channel[nr] = c;
      box[4 * nr + 0] = sh.y0;
      box[4 * nr + 1] = sh.x0;
      box[4 * nr + 2] = sh.y1;
      box[4 * nr + 3] = sh.x1;
      nr++;
    }
    ivec[count_at + c - 1] = kept;
  }
  if (st == SD_OK && nr == 0) {
    /* no region: one row for the image (channel 0, region columns 0, box = the image) */
    if (cap >= 1) {
      memset(rows, 0, (size_t)D * sizeof *rows);
      channel[0] = 0;
      box[0] = 0;
      box[1] = 0;
      box[2] = h;
      box[3] = w;
    }
    nr = 1;
  }
  if (st == SD_OK) {
    for (int k = 0; k < nr && k < cap; k++)
      for (int j = 0; j < ni; j++) rows[(size_t)k * D + SD_FEAT_REGION_COLS + j] = (float)ivec[j];
    if (nr > cap) st = SD_ERROR(SD_ERR_ARG, "image needs %d descriptor rows, room for %d", nr, cap);
  }
  *nrows = nr;
  free(mask);
  free(labels);
  free(stack);
  free(hull);
  free(zero);
  return st;
}
