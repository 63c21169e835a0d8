/* imgread.h - reading image files (TIFF, JPEG, PNG) into float grey images.
 *
 * The format is recognised from the file's first bytes (magic number); the extension is only
 * used to word the error message when the content is not recognised. Values are kept raw:
 * 8-bit data gives 0..255, 16-bit data 0..65535, float data as stored; nothing is normalised
 * (normalise per image later, see the data README).
 *
 * Colour to grey: when every colour channel is equal at every pixel, the grey value is the
 * first channel (exact); otherwise it is the luminance 0.299 R + 0.587 G + 0.114 B. Alpha and
 * other extra samples are ignored.
 *
 *   sd_image *pages = NULL;
 *   int npages = 0;
 *   SD_CHECK(sd_image_file_read("patch.tif", &pages, &npages));
 *   float v = pages[0].pixels[y * pages[0].width + x];
 *   sd_images_free(pages, npages);
 *
 * Nothing here is collective; the functions only touch the calling process's error record.
 */
#ifndef STEMDEFECT_IMGREAD_H
#define STEMDEFECT_IMGREAD_H

#include "stemdefect/status.h"

/* One decoded grey page. */
typedef struct sd_image {
  int width, height;
  float *pixels;      /* (height, width) row-major, owned (freed by sd_images_free) */
  char page_note[32]; /* "" for single-page files; "page 3" for page 3 of a multi-page TIFF */
} sd_image;

/* Reads every page of the image file at path. TIFF: 1/2/4/8/16/32/64-bit unsigned, 8/16/32/64-bit
 * signed, 16/32/64-bit float samples; 1..n samples per pixel (grey, grey+alpha, RGB, RGBA, extra
 * samples), contiguous or separate planes, strips or tiles, any compression the linked libtiff
 * decodes, one sd_image per directory (page). JPEG: baseline/progressive 8-bit grey or colour.
 * PNG: every colour type and bit depth (palette images through their palette, 1/2/4-bit grey
 * keeps its raw values 0..2^depth-1, 16-bit gives 0..65535).
 * On success *pages is a new array of *npages (>= 1) images; release it with sd_images_free.
 * On failure *pages = NULL, *npages = 0 and the status is SD_ERR_IO (missing or unreadable
 * file), SD_ERR_FORMAT (unrecognised, corrupt, truncated or unsupported content), SD_ERR_NOMEM
 * or SD_ERR_ARG (NULL argument), with a message that names the path. Not collective. */
sd_status sd_image_file_read(const char *path, sd_image **pages, int *npages);

/* Frees the pixel buffers of pages[0..npages-1] and the array itself. NULL-safe. Not
 * collective. */
void sd_images_free(sd_image *pages, int npages);

/* 1 when path ends in .tif, .tiff, .jpg, .jpeg or .png (any case), else 0. Looks only at the
 * name (for choosing files in a directory); reading recognises content by magic bytes. Not
 * collective. */
int sd_image_path_supported(const char *path);

/* Cheap look at an image file: the number of pages (TIFF directories; 1 for JPEG and PNG) and the
 * size of the first page, read from headers without decoding pixels. Any output pointer may be
 * NULL. Errors as sd_image_file_read (a probe does not prove the pixel data is intact). Not
 * collective. */
sd_status sd_image_file_probe(const char *path, int *npages, int *width, int *height);

#endif
