/* seg_tiler.c - tiled U-Net inference with raised-cosine blending, one row of tiles at a time
 * (see segment.h). */
#include <stdlib.h>
#include <string.h>

#include "stemdefect/segment.h"

void sd_seg_tiler_destroy(sd_seg_tiler *t) {
  if (!t) return;
  free(t->py);
  free(t->px);
  free(t->wy);
  free(t->wx);
  free(t->tiles);
  free(t->tile_img);
  free(t->tile_x);
  free(t->acc);
  free(t->wacc);
  memset(t, 0, sizeof *t);
}

sd_status sd_seg_tiler_create(sd_seg_tiler *t, sd_nn_model *m, int H, int W, int overlap,
                              int align) {
  memset(t, 0, sizeof *t);
  if (!m->compiled || m->in_c != 1)
    return SD_ERROR(SD_ERR_INTERNAL, "tiler needs a compiled single-channel model");
  if (H < 1 || W < 1) return SD_ERROR(SD_ERR_ARG, "frame of %dx%d pixels", W, H);
  t->m = m;
  t->C = sd_nn_model_output(m)->c;
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
  t->tiles = sd_malloc((size_t)t->batch * t->th * t->tw, sizeof *t->tiles, "tile batch");
  t->tile_img = sd_malloc((size_t)t->batch, sizeof *t->tile_img, "tile batch");
  t->tile_x = sd_malloc((size_t)t->batch, sizeof *t->tile_x, "tile batch");
  t->acc = sd_calloc((size_t)t->max_images * t->C * t->th * W, sizeof *t->acc, "tile accumulator");
  t->wacc = sd_calloc((size_t)t->th * W, sizeof *t->wacc, "tile weights");
  if (!t->wy || !t->wx || !t->tiles || !t->tile_img || !t->tile_x || !t->acc || !t->wacc) {
    sd_seg_tiler_destroy(t);
    return SD_ERR_NOMEM;
  }
  for (int i = 0; i < t->ny; i++) sd_seg_window_1d(t->py, t->ny, i, t->th, t->wy + (size_t)i * t->th);
  for (int i = 0; i < t->nx; i++) sd_seg_window_1d(t->px, t->nx, i, t->tw, t->wx + (size_t)i * t->tw);
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
  if (n == 1) return 0;
  int p = 2 * n - 2;
  i %= p;
  if (i < 0) i += p;
  return i < n ? i : p - i;
}

/* runs the batched tiles and adds their weighted probabilities into the accumulator */
static sd_status flush(sd_seg_tiler *t, int ntiles, int k) {
  if (ntiles == 0) return SD_OK;
  SD_CHECK(sd_nn_model_forward(t->m, t->tiles, ntiles, SD_NN_MODE_EVAL));
  sd_nn_tensor *o = sd_nn_model_output(t->m);
  const int th = t->th, tw = t->tw, C = t->C, W = t->W;
  const size_t tpx = (size_t)th * tw;
  sd_nn_softmax(ntiles, C, (int)tpx, o->data, o->data);
  int ylim = t->H - t->py[k] < th ? t->H - t->py[k] : th;
  const float *wy = t->wy + (size_t)k * th;
  for (int b = 0; b < ntiles; b++) {
    int j = t->tile_x[b];
    int x0 = t->px[j];
    int xlim = W - x0 < tw ? W - x0 : tw;
    const float *wx = t->wx + (size_t)j * tw;
    for (int c = 0; c < C; c++) {
      const float *p = o->data + ((size_t)b * C + c) * tpx;
      float *a = t->acc + ((size_t)t->tile_img[b] * C + c) * (size_t)th * W;
      for (int y = 0; y < ylim; y++) {
        float wyy = wy[y];
        float *ar = a + (size_t)y * W + x0;
        const float *pr = p + (size_t)y * tw;
        for (int x = 0; x < xlim; x++) ar[x] += wyy * wx[x] * pr[x];
      }
    }
  }
  return SD_OK;
}

sd_status sd_seg_tiler_row(sd_seg_tiler *t, const float *rows, int nimg, int k, float *out) {
  if (k < 0 || k >= t->ny || nimg < 1 || nimg > t->max_images)
    return SD_ERROR(SD_ERR_INTERNAL, "tile row %d of %d, %d images (max %d)", k, t->ny, nimg, t->max_images);
  const int th = t->th, tw = t->tw, C = t->C, W = t->W, H = t->H;
  int r0, r1;
  sd_seg_tiler_rows_in(t, k, &r0, &r1);
  const int nr = r1 - r0;
  int ylim = H - r0 < th ? H - r0 : th;
  /* weights of this tile row */
  const float *wy = t->wy + (size_t)k * th;
  for (int j = 0; j < t->nx; j++) {
    int x0 = t->px[j], xlim = W - x0 < tw ? W - x0 : tw;
    const float *wx = t->wx + (size_t)j * tw;
    for (int y = 0; y < ylim; y++)
      for (int x = 0; x < xlim; x++) t->wacc[(size_t)y * W + x0 + x] += wy[y] * wx[x];
  }
  /* cut the tiles (reflect-padded where the frame is smaller than a tile), batch, run */
  int nb = 0;
  for (int i = 0; i < nimg; i++) {
    const float *src = rows + (size_t)i * nr * W;
    for (int j = 0; j < t->nx; j++) {
      float *dst = t->tiles + (size_t)nb * th * tw;
      int x0 = t->px[j];
      for (int y = 0; y < th; y++) {
        const float *sr = src + (size_t)(reflect(r0 + y, H) - r0) * W;
        float *dr = dst + (size_t)y * tw;
        if (x0 + tw <= W) memcpy(dr, sr + x0, (size_t)tw * sizeof *dr);
        else
          for (int x = 0; x < tw; x++) dr[x] = sr[reflect(x0 + x, W)];
      }
      t->tile_img[nb] = i;
      t->tile_x[nb] = j;
      if (++nb == t->batch) {
        SD_CHECK(flush(t, nb, k));
        nb = 0;
      }
    }
  }
  SD_CHECK(flush(t, nb, k));
  /* final rows: divide by the summed window, then move the rows still in flight up */
  int f0, f1;
  sd_seg_tiler_rows_out(t, k, &f0, &f1);
  const int nf = f1 - f0;
  for (int i = 0; i < nimg; i++)
    for (int c = 0; c < C; c++) {
      const float *a = t->acc + ((size_t)i * C + c) * (size_t)th * W;
      float *o = out + ((size_t)i * C + c) * (size_t)nf * W;
      for (size_t p = 0; p < (size_t)nf * W; p++) o[p] = a[p] / t->wacc[p];
    }
  int d = nf;
  if (k + 1 < t->ny) {
    for (int i = 0; i < nimg; i++)
      for (int c = 0; c < C; c++) {
        float *a = t->acc + ((size_t)i * C + c) * (size_t)th * W;
        memmove(a, a + (size_t)d * W, (size_t)(th - d) * W * sizeof *a);
        memset(a + (size_t)(th - d) * W, 0, (size_t)d * W * sizeof *a);
      }
    memmove(t->wacc, t->wacc + (size_t)d * W, (size_t)(th - d) * W * sizeof *t->wacc);
    memset(t->wacc + (size_t)(th - d) * W, 0, (size_t)d * W * sizeof *t->wacc);
  } else {
    memset(t->acc, 0, (size_t)t->max_images * C * th * W * sizeof *t->acc);
    memset(t->wacc, 0, (size_t)th * W * sizeof *t->wacc);
  }
  return SD_OK;
}

sd_status sd_seg_tiler_frames(sd_seg_tiler *t, const float *img, int nimg, float *out) {
  const int C = t->C, W = t->W, H = t->H;
  /* one tile per frame: rows [0, H) of nimg frames are contiguous, one call */
  if (t->ny == 1 && t->nx == 1) return sd_seg_tiler_row(t, img, nimg, 0, out);
  /* else one frame at a time, tile row by tile row; the final rows [C, f1-f0, W] are staged
   * and copied to their place in each channel (once per tile row, not per pixel) */
  float *tmp = sd_malloc((size_t)C * t->th * W, sizeof *tmp, "tile rows");
  if (!tmp) return SD_ERR_NOMEM;
  sd_status st = SD_OK;
  for (int i = 0; st == SD_OK && i < nimg; i++)
    for (int k = 0; st == SD_OK && k < t->ny; k++) {
      int r0, r1, f0, f1;
      sd_seg_tiler_rows_in(t, k, &r0, &r1);
      sd_seg_tiler_rows_out(t, k, &f0, &f1);
      st = sd_seg_tiler_row(t, img + ((size_t)i * H + r0) * W, 1, k, tmp);
      for (int c = 0; st == SD_OK && c < C; c++)
        memcpy(out + (((size_t)i * C + c) * H + f0) * W, tmp + (size_t)c * (f1 - f0) * W,
               (size_t)(f1 - f0) * W * sizeof *tmp);
    }
  free(tmp);
  return st;
}
