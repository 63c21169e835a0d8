/* image.h - small image utilities on float grey images (H, W), row-major: robust
 * normalisation (applied by consumers, never to stored raw data), resizing and cropping.
 * Pure functions, not collective. */
#ifndef STEMDEFECT_IMAGE_H
#define STEMDEFECT_IMAGE_H

#include <stddef.h>

#include "stemdefect/status.h"

/* Median of n values (copies into scratch of n floats; scratch may be NULL to allocate). */
float sd_median(const float *v, size_t n, float *scratch);
/* Robust z-score in place: (x - median) / (1.4826 MAD); when MAD is 0 falls back to the
 * standard deviation, and to 1 for a constant image. scratch: n floats or NULL. */
sd_status sd_normalize_robust(float *img, size_t n, float *scratch);
/* Bilinear resize (with box pre-averaging when shrinking by more than 2x) from (h, w) to
 * (oh, ow) into out. */
void sd_image_resize(const float *in, int h, int w, float *out, int oh, int ow);
/* Centre crop (h, w) to (oh, ow); requires oh <= h, ow <= w. */
void sd_image_crop_center(const float *in, int h, int w, float *out, int oh, int ow);

#endif
