/* png.h - writing 8-bit PNG files (previews, overlays, figures made without cairo).
 * Files are written under a temporary name and renamed when complete. Not collective. */
#ifndef STEMDEFECT_PNG_H
#define STEMDEFECT_PNG_H

#include <stdint.h>

#include "stemdefect/status.h"

/* pixels: (h, w) grey, row-major. */
sd_status sd_png_write_gray8(const char *path, int w, int h, const uint8_t *pixels);
/* pixels: (h, w, 3) RGB, row-major. */
sd_status sd_png_write_rgb8(const char *path, int w, int h, const uint8_t *pixels);

#endif
