/* seg_tiler.c - tiled U-Net inference with raised-cosine blending, one row of tiles at a time
 * (see segment.h). */
#include <stdlib.h>
#include <string.h>

#include "stemdefect/segment.h"

void sd_seg_tiler_destroy(sd_seg_tiler *t) {
  if (!t)
    return;
  free(t->py);
  free(t->px);
  free(t->wy);
  free(t->wx);
  free(t->tiles);
  free(t->tile_img);
  free(t->tile_x);
  free(t->acc);
  free(t->wacc);
  free(t->mc_keys);
  free(t->mc_mean);
  free(t->mc_m2);
  free(t->acc_var);
  memset(t, 0, sizeof *t);
}

sd_status sd_seg_tiler_set_mc(sd_seg_tiler *t, int samples, uint64_t seed) {
  if (samples < 1)
    return SD_ERROR(SD_ERR_ARG, "MC dropout needs at least 1 pass (got %d)", samples);
  if (sd_nn_model_first_dropout(t->m) < 0)
    return SD_ERROR(SD_ERR_ARG, "MC dropout needs a model with a dropout layer");
  const size_t tile = (size_t)t->batch * t->C * t->th * t->tw;
  free(t->mc_keys);
  free(t->mc_mean);
  free(t->mc_m2);
  free(t->acc_var);
  t->mc_keys = sd_malloc((size_t)t->batch, sizeof *t->mc_keys, "dropout keys");
  t->mc_mean = sd_malloc(tile, sizeof *t->mc_mean, "MC mean");
  t->mc_m2 = sd_malloc(tile, sizeof *t->mc_m2, "MC variance");
  t->acc_var = sd_calloc((size_t)t->max_images * t->C * t->th * t->W, sizeof *t->acc_var,
                         "variance accumulator");
  if (!t->mc_keys || !t->mc_mean || !t->mc_m2 || !t->acc_var) {
    sd_seg_tiler_destroy(t);
    return SD_ERR_NOMEM;
  }
  t->mc_samples = samples;
  t->mc_seed = seed;
  return SD_OK;
}

uint64_t sd_seg_mc_key(int64_t image, int tile, int sample) {
  uint64_t k = sd_rng_mix64((uint64_t)image);
  k = sd_rng_mix64(k ^ (uint64_t)(uint32_t)tile);
  return sd_rng_mix64(k ^ ((uint64_t)(uint32_t)sample << 32));
}

sd_status sd_seg_tiler_create(sd_seg_tiler *t, sd_nn_model *m, int H, int W, int overlap,
                              int align) {
  memset(t, 0, sizeof *t);
  if (!m->compiled || m->in_c < 1)
    return SD_ERROR(SD_ERR_INTERNAL, "tiler needs a compiled model");
  if (H < 1 || W < 1)
    return SD_ERROR(SD_ERR_ARG, "frame of %dx%d pixels", W, H);
  t->m = m;
  t->C = sd_nn_model_output(m)->c;
  t->cin = m->in_c;
  t->H = H;
  t->W = W;
  t->th = m->in_h;
  t->tw = m->in_w;
  t->batch = m->batch;
  int cap_y = H / (t->th > overlap + 1 ? t->th - overlap : 1) + 3;
  int cap_x = W / (t->tw > overlap + 1 ? t->tw - overlap : 1) + 3;
  t->py = sd_malloc((size_t)cap_y, sizeof *t->py, "tile rows");
  t->px = sd_malloc((size_t)cap_x, sizeof *t->px, "tile columns");
  if (!t->py || !t->px) {
    sd_seg_tiler_destroy(t);
    return SD_ERR_NOMEM;
  }
  t->ny = sd_seg_tile_positions(H, t->th, overlap, align, t->py, cap_y);
  t->nx = sd_seg_tile_positions(W, t->tw, overlap, align, t->px, cap_x);
  t->max_images = (t->ny == 1 && t->nx == 1) ? t->batch : 1;
  t->wy = sd_malloc((size_t)t->ny * t->th, sizeof *t->wy, "tile windows");
  t->wx = sd_malloc((size_t)t->nx * t->tw, sizeof *t->wx, "tile windows");
  t->tiles =
      sd_malloc((size_t)t->batch * t->cin * t->th * t->tw, sizeof *t->tiles, "tile batch");
  t->tile_img = sd_malloc((size_t)t->batch, sizeof *t->tile_img, "tile batch");
  t->tile_x = sd_malloc((size_t)t->batch, sizeof *t->tile_x, "tile batch");
  t->acc = sd_calloc((size_t)t->max_images * t->C * t->th * W, sizeof *t->acc, "tile accumulator");
  t->wacc = sd_calloc((size_t)t->th * W, sizeof *t->wacc, "tile weights");
  if (!t->wy || !t->wx || !t->tiles || !t->tile_img || !t->tile_x || !t->acc || !t->wacc) {
    sd_seg_tiler_destroy(t);
    return SD_ERR_NOMEM;
  }
  for (int i = 0; i < t->ny; i++)
    sd_seg_window_1d(t->py, t->ny, i, t->th, t->wy + (size_t)i * t->th);
  for (int i = 0; i < t->nx; i++)
    sd_seg_window_1d(t->px, t->nx, i, t->tw, t->wx + (size_t)i * t->tw);
  return SD_OK;
}

void sd_seg_tiler_rows_in(const sd_seg_tiler *t, int k, int *r0, int *r1) {
  *r0 = t->py[k];
  *r1 = t->py[k] + t->th < t->H ? t->py[k] + t->th : t->H;
}

void sd_seg_tiler_rows_out(const sd_seg_tiler *t, int k, int *f0, int *f1) {
  *f0 = t->py[k];
  *f1 = k + 1 < t->ny ? t->py[k + 1] : t->H;
}

/* mirror index into [0, n) without repeating the edge pixel */
static int reflect(int i, int n) {
  if (n == 1)
    return 0;
  int p = 2 * n - 2;
  i %= p;
  if (i < 0)
    i += p;
  return i < n ? i : p - i;
}

/* MC dropout: the S passes of the batched tiles of tile row k (the layers below the first
 * dropout run once: they are deterministic); the mean probabilities into mc_mean, the
 * population variances into mc_m2 */
static sd_status mc_passes(sd_seg_tiler *t, int ntiles, int64_t first_image, int k) {
  sd_nn_tensor *o = sd_nn_model_output(t->m);
  const size_t len = (size_t)ntiles * t->C * t->th * t->tw;
  const int drop = sd_nn_model_first_dropout(t->m);
  sd_status st = SD_OK;
  sd_nn_model_set_dropout_keys(t->m, t->mc_seed, t->mc_keys);
  for (int s = 0; s < t->mc_samples && st == SD_OK; s++) {
    for (int b = 0; b < ntiles; b++)
      t->mc_keys[b] = sd_seg_mc_key(first_image + t->tile_img[b], k * t->nx + t->tile_x[b], s);
    st = s == 0 ? sd_nn_model_forward(t->m, t->tiles, ntiles, SD_NN_MODE_EVAL_DROPOUT)
                : sd_nn_model_forward_from(t->m, drop, SD_NN_MODE_EVAL_DROPOUT);
    if (st != SD_OK)
      break;
    sd_nn_softmax(ntiles, t->C, t->th * t->tw, o->data, o->data);
    if (s == 0) {
      memcpy(t->mc_mean, o->data, len * sizeof *t->mc_mean);
      memset(t->mc_m2, 0, len * sizeof *t->mc_m2);
      continue;
    }
    const float inv = 1.0f / (float)(s + 1);
    for (size_t i = 0; i < len; i++) {
      const float p = o->data[i], d = p - t->mc_mean[i];
      t->mc_mean[i] += d * inv;
      t->mc_m2[i] += d * (p - t->mc_mean[i]);
    }
  }
  sd_nn_model_set_dropout_keys(t->m, 0, NULL);
  const float inv = 1.0f / (float)t->mc_samples;
  for (size_t i = 0; st == SD_OK && i < len; i++)
    t->mc_m2[i] *= inv;
  return st;
}

/* runs the batched tiles (images first_image + tile_img[b]) and adds their weighted
 * probabilities (with MC dropout: mean probabilities and variances) into the accumulators */
static sd_status flush(sd_seg_tiler *t, int ntiles, int64_t first_image, int k) {
  if (ntiles == 0)
    return SD_OK;
  const int th = t->th, tw = t->tw, C = t->C, W = t->W;
  const size_t tpx = (size_t)th * tw;
  const float *prob, *var = NULL;
  if (t->mc_samples > 0) {
    SD_CHECK(mc_passes(t, ntiles, first_image, k));
    prob = t->mc_mean;
    var = t->mc_m2;
  } else {
    SD_CHECK(sd_nn_model_forward(t->m, t->tiles, ntiles, SD_NN_MODE_EVAL));
    sd_nn_tensor *o = sd_nn_model_output(t->m);
    sd_nn_softmax(ntiles, C, (int)tpx, o->data, o->data);
    prob = o->data;
  }
  int ylim = t->H - t->py[k] < th ? t->H - t->py[k] : th;
  const float *wy = t->wy + (size_t)k * th;
  for (int b = 0; b < ntiles; b++) {
    int j = t->tile_x[b];
    int x0 = t->px[j];
    int xlim = W - x0 < tw ? W - x0 : tw;
    const float *wx = t->wx + (size_t)j * tw;
    for (int c = 0; c < C; c++) {
      const size_t off = ((size_t)t->tile_img[b] * C + c) * (size_t)th * W;
      const float *p = prob + ((size_t)b * C + c) * tpx;
      const float *v = var ? var + ((size_t)b * C + c) * tpx : NULL;
      for (int y = 0; y < ylim; y++) {
        float wyy = wy[y];
        float *ar = t->acc + off + (size_t)y * W + x0;
        const float *pr = p + (size_t)y * tw;
        for (int x = 0; x < xlim; x++)
          ar[x] += wyy * wx[x] * pr[x];
        if (!v)
          continue;
        float *vr = t->acc_var + off + (size_t)y * W + x0;
        const float *qr = v + (size_t)y * tw;
        for (int x = 0; x < xlim; x++)
          vr[x] += wyy * wx[x] * qr[x];
      }
    }
  }
  return SD_OK;
}

/* divides the final rows of one accumulator by the summed window and moves the rows in flight
 * up (or clears it after the last tile row) */
static void finish_rows(const sd_seg_tiler *t, float *acc, int nimg, int k, int nf, float *out) {
  const int th = t->th, C = t->C, W = t->W;
  for (int i = 0; out && i < nimg; i++)
    for (int c = 0; c < C; c++) {
      const float *a = acc + ((size_t)i * C + c) * (size_t)th * W;
      float *o = out + ((size_t)i * C + c) * (size_t)nf * W;
      for (size_t p = 0; p < (size_t)nf * W; p++)
        o[p] = a[p] / t->wacc[p];
    }
  if (k + 1 < t->ny) {
    for (int i = 0; i < nimg; i++)
      for (int c = 0; c < C; c++) {
        float *a = acc + ((size_t)i * C + c) * (size_t)th * W;
        memmove(a, a + (size_t)nf * W, (size_t)(th - nf) * W * sizeof *a);
        memset(a + (size_t)(th - nf) * W, 0, (size_t)nf * W * sizeof *a);
      }
  } else
    memset(acc, 0, (size_t)t->max_images * C * th * W * sizeof *acc);
}

/* tile row k of nimg frames whose input channel c of frame i starts at
 * rows + (i * cin + c) * plane (row r0 of the frame first, W floats per row) */
static sd_status tiler_row(sd_seg_tiler *t, const float *rows, size_t plane, int nimg,
                           int64_t first_image, int k, float *out, float *var) {
  if (k < 0 || k >= t->ny || nimg < 1 || nimg > t->max_images)
    return SD_ERROR(SD_ERR_INTERNAL, "tile row %d of %d, %d images (max %d)", k, t->ny, nimg,
                    t->max_images);
  const int th = t->th, tw = t->tw, W = t->W, H = t->H;
  int r0, r1;
  sd_seg_tiler_rows_in(t, k, &r0, &r1);
  int ylim = H - r0 < th ? H - r0 : th;
  /* weights of this tile row */
  const float *wy = t->wy + (size_t)k * th;
  for (int j = 0; j < t->nx; j++) {
    int x0 = t->px[j], xlim = W - x0 < tw ? W - x0 : tw;
    const float *wx = t->wx + (size_t)j * tw;
    for (int y = 0; y < ylim; y++)
      for (int x = 0; x < xlim; x++)
        t->wacc[(size_t)y * W + x0 + x] += wy[y] * wx[x];
  }
  /* cut the tiles (reflect-padded where the frame is smaller than a tile), batch, run */
  int nb = 0;
  const int cin = t->cin;
  for (int i = 0; i < nimg; i++) {
    for (int j = 0; j < t->nx; j++) {
      int x0 = t->px[j];
      for (int c = 0; c < cin; c++) {
        const float *src = rows + ((size_t)i * cin + c) * plane;
        float *dst = t->tiles + ((size_t)nb * cin + c) * th * tw;
        for (int y = 0; y < th; y++) {
          const float *sr = src + (size_t)(reflect(r0 + y, H) - r0) * W;
          float *dr = dst + (size_t)y * tw;
          if (x0 + tw <= W)
            memcpy(dr, sr + x0, (size_t)tw * sizeof *dr);
          else
            for (int x = 0; x < tw; x++)
              dr[x] = sr[reflect(x0 + x, W)];
        }
      }
      t->tile_img[nb] = i;
      t->tile_x[nb] = j;
      if (++nb == t->batch) {
        SD_CHECK(flush(t, nb, first_image, k));
        nb = 0;
      }
    }
  }
  SD_CHECK(flush(t, nb, first_image, k));
  /* final rows: divide by the summed window, then move the rows still in flight up */
  int f0, f1;
  sd_seg_tiler_rows_out(t, k, &f0, &f1);
  const int nf = f1 - f0;
  finish_rows(t, t->acc, nimg, k, nf, out);
  if (t->mc_samples > 0)
    finish_rows(t, t->acc_var, nimg, k, nf, var);
  if (k + 1 < t->ny) {
    memmove(t->wacc, t->wacc + (size_t)nf * W, (size_t)(th - nf) * W * sizeof *t->wacc);
    memset(t->wacc + (size_t)(th - nf) * W, 0, (size_t)nf * W * sizeof *t->wacc);
  } else
    memset(t->wacc, 0, (size_t)th * W * sizeof *t->wacc);
  return SD_OK;
}

sd_status sd_seg_tiler_row(sd_seg_tiler *t, const float *rows, int nimg, int64_t first_image, int k,
                           float *out, float *var) {
  if (k < 0 || k >= t->ny)
    return SD_ERROR(SD_ERR_INTERNAL, "tile row %d of %d", k, t->ny);
  int r0, r1;
  sd_seg_tiler_rows_in(t, k, &r0, &r1);
  return tiler_row(t, rows, (size_t)(r1 - r0) * t->W, nimg, first_image, k, out, var);
}

sd_status sd_seg_tiler_frames(sd_seg_tiler *t, const float *img, int nimg, int64_t first_image,
                              float *out, float *var) {
  const int C = t->C, W = t->W, H = t->H;
  if (t->mc_samples == 0)
    var = NULL;
  /* one tile per frame: rows [0, H) of nimg frames are contiguous, one call */
  if (t->ny == 1 && t->nx == 1)
    return sd_seg_tiler_row(t, img, nimg, first_image, 0, out, var);
  const size_t plane = (size_t)H * W; /* between the input channels of a frame */
  /* else one frame at a time, tile row by tile row; the final rows [C, f1-f0, W] are staged
   * and copied to their place in each channel (once per tile row, not per pixel) */
  const size_t rows = (size_t)C * t->th * W;
  float *tmp = sd_malloc(var ? 2 * rows : rows, sizeof *tmp, "tile rows");
  if (!tmp)
    return SD_ERR_NOMEM;
  float *tvar = var ? tmp + rows : NULL;
  sd_status st = SD_OK;
  for (int i = 0; st == SD_OK && i < nimg; i++)
    for (int k = 0; st == SD_OK && k < t->ny; k++) {
      int r0, r1, f0, f1;
      sd_seg_tiler_rows_in(t, k, &r0, &r1);
      sd_seg_tiler_rows_out(t, k, &f0, &f1);
      st = tiler_row(t, img + (size_t)i * t->cin * plane + (size_t)r0 * W, plane, 1, first_image + i,
                     k, tmp, tvar);
      const size_t n = (size_t)(f1 - f0) * W;
      for (int c = 0; st == SD_OK && c < C; c++) {
        const size_t to = (((size_t)i * C + c) * H + f0) * W;
        memcpy(out + to, tmp + (size_t)c * n, n * sizeof *tmp);
        if (var)
          memcpy(var + to, tvar + (size_t)c * n, n * sizeof *tmp);
      }
    }
  free(tmp);
  return st;
}
