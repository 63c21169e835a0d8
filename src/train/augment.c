/* augment.c - dihedral transforms, reflected shifts, intensity jitter and noise. */
#include "stemdefect/augment.h"

#include <math.h>
#include <string.h>

/* Source coordinates of destination pixel (y, x) under transform t. */
static inline void dihedral_src(int s, int t, int y, int x, int *sy, int *sx) {
  /* undo the rotation (counter-clockwise by 90 degrees per step), then the mirror */
  int yy = y, xx = x;
  for (int r = 0; r < (t & 3); r++) {
    int ny = xx, nx = s - 1 - yy;
    yy = ny;
    xx = nx;
  }
  if (t & 4) xx = s - 1 - xx;
  *sy = yy;
  *sx = xx;
}

void sd_dihedral(const float *src, float *dst, int s, int t) {
  if ((t & 7) == 0) {
    memcpy(dst, src, (size_t)s * s * sizeof *dst);
    return;
  }
  for (int y = 0; y < s; y++)
    for (int x = 0; x < s; x++) {
      int sy, sx;
      dihedral_src(s, t, y, x, &sy, &sx);
      dst[y * s + x] = src[sy * s + sx];
    }
}

void sd_dihedral_u8(const uint8_t *src, uint8_t *dst, int s, int t) {
  if ((t & 7) == 0) {
    memcpy(dst, src, (size_t)s * s);
    return;
  }
  for (int y = 0; y < s; y++)
    for (int x = 0; x < s; x++) {
      int sy, sx;
      dihedral_src(s, t, y, x, &sy, &sx);
      dst[y * s + x] = src[sy * s + sx];
    }
}

static inline int reflect(int i, int n) {
  if (n == 1) return 0;
  int period = 2 * n - 2;
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - i;
}

void sd_shift_reflect(const float *src, float *dst, int h, int w, int dy, int dx) {
  for (int y = 0; y < h; y++) {
    int sy = reflect(y - dy, h);
    for (int x = 0; x < w; x++) dst[y * w + x] = src[sy * w + reflect(x - dx, w)];
  }
}

void sd_shift_reflect_u8(const uint8_t *src, uint8_t *dst, int h, int w, int dy, int dx) {
  for (int y = 0; y < h; y++) {
    int sy = reflect(y - dy, h);
    for (int x = 0; x < w; x++) dst[y * w + x] = src[sy * w + reflect(x - dx, w)];
  }
}

void sd_augment_apply_channels(const sd_augment_params *p, sd_rng *rng, float *img, int channels,
                               int s, float *scratch, uint8_t *mask, uint8_t *scratch_u8) {
  size_t n = (size_t)s * s;
  /* draw everything first, in a fixed order, so the stream does not depend on the flags */
  int t = (int)sd_rng_below(rng, 8);
  int range = 2 * p->max_shift + 1;
  int dy = (int)sd_rng_below(rng, (uint64_t)range) - p->max_shift;
  int dx = (int)sd_rng_below(rng, (uint64_t)range) - p->max_shift;
  double gain = exp(p->gain_jitter * sd_rng_normal(rng));
  double offset = p->offset_jitter * sd_rng_normal(rng);
  double sigma = p->noise_sigma_max * sd_rng_uniform(rng);
  /* the geometry moves every channel and the mask alike */
  for (int c = 0; c < channels; c++) {
    float *ic = img + (size_t)c * n;
    if (p->symmetries && t) {
      sd_dihedral(ic, scratch, s, t);
      memcpy(ic, scratch, n * sizeof *ic);
    }
    if (p->max_shift > 0 && (dy || dx)) {
      sd_shift_reflect(ic, scratch, s, s, dy, dx);
      memcpy(ic, scratch, n * sizeof *ic);
    }
  }
  if (mask && p->symmetries && t) {
    sd_dihedral_u8(mask, scratch_u8, s, t);
    memcpy(mask, scratch_u8, n);
  }
  if (mask && p->max_shift > 0 && (dy || dx)) {
    sd_shift_reflect_u8(mask, scratch_u8, s, s, dy, dx);
    memcpy(mask, scratch_u8, n);
  }
  /* intensity jitter and noise: the image (channel 0) only; a deviation channel is already in
   * units of the image's own noise */
  if (p->gain_jitter > 0 || p->offset_jitter > 0)
    for (size_t i = 0; i < n; i++) img[i] = (float)(img[i] * gain + offset);
  if (sigma > 0)
    for (size_t i = 0; i < n; i++) img[i] += (float)(sigma * sd_rng_normal(rng));
}

void sd_augment_apply(const sd_augment_params *p, sd_rng *rng, float *img, int s, float *scratch,
                      uint8_t *mask, uint8_t *scratch_u8) {
  sd_augment_apply_channels(p, rng, img, 1, s, scratch, mask, scratch_u8);
}
