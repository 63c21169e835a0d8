/* augment.h - lattice-respecting augmentation and per-image normalisation for training.
 *
 * The 8 symmetries of the square (identity, three rotations by 90 degrees, four mirrors), small
 * integer shifts with reflected borders, intensity and contrast jitter and added noise, all
 * drawn from an explicit sd_rng so a sample's augmentation depends only on (seed, stream).
 * Pure functions, not collective.
 */
#ifndef STEMDEFECT_AUGMENT_H
#define STEMDEFECT_AUGMENT_H

#include <stdint.h>

#include "stemdefect/rng.h"
#include "stemdefect/status.h"

typedef struct sd_augment_params {
  int symmetries;         /* 1: one of the 8 dihedral transforms at random */
  int max_shift;          /* shifts in [-max_shift, max_shift] px, reflected borders */
  double gain_jitter;     /* multiply by exp(N(0, gain_jitter)) (contrast) */
  double offset_jitter;   /* add N(0, offset_jitter) (on the normalised scale) */
  double noise_sigma_max; /* add Gaussian noise with sigma ~ U(0, noise_sigma_max) */
} sd_augment_params;

/* Applies dihedral transform t (0..7) to a square image src (s x s) into dst (no alias):
 * t & 3 = number of 90-degree rotations, t & 4 = mirror left-right first. */
void sd_dihedral(const float *src, float *dst, int s, int t);
/* Same for a uint8 mask or label map. */
void sd_dihedral_u8(const uint8_t *src, uint8_t *dst, int s, int t);
/* Shift by (dy, dx) with reflected borders: dst[y][x] = src[reflect(y-dy)][reflect(x-dx)]. */
void sd_shift_reflect(const float *src, float *dst, int h, int w, int dy, int dx);
void sd_shift_reflect_u8(const uint8_t *src, uint8_t *dst, int h, int w, int dy, int dx);

/* Augments one normalised square image in place (scratch: s*s floats). When mask is not
 * NULL (s*s, scratch_u8 s*s) it gets the same geometric transform. */
void sd_augment_apply(const sd_augment_params *p, sd_rng *rng, float *img, int s, float *scratch,
                      uint8_t *mask, uint8_t *scratch_u8);
/* The same for an image of `channels` planes (channels x s x s): every plane and the mask get
 * the same geometric transform; the intensity jitter and the noise go to plane 0 (the image)
 * only. channels = 1 is sd_augment_apply, draw for draw. */
void sd_augment_apply_channels(const sd_augment_params *p, sd_rng *rng, float *img, int channels,
                               int s, float *scratch, uint8_t *mask, uint8_t *scratch_u8);

#endif
