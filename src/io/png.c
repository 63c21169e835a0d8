/* png.c - 8-bit PNG writer (grey and RGB) behind png.h.
 *
 * libpng errors longjmp back into png_encode (whose state lives in a struct owned by its
 * caller) and become SD_ERR_IO; nothing is printed. The image goes to "<path>.tmp-<pid>",
 * which is renamed to path only when complete and flushed, and removed on any error, so a
 * reader never sees a half-written file.
 */
#include "stemdefect/png.h"

#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <png.h>

/* One PNG being written. */
typedef struct png_out {
  const char *path; /* the final name (for messages) */
  FILE *fp;
  png_structp png;
  png_infop info;
  char msg[256]; /* last libpng error */
} png_out;

static void on_error(png_structp png, png_const_charp msg) {
  png_out *o = png_get_error_ptr(png);
  snprintf(o->msg, sizeof o->msg, "%s", msg ? msg : "unknown error");
  png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg) {
  (void)png, (void)msg;
}

/* pixels: (h, w, channels). */
static sd_status png_encode(png_out *o, int w, int h, int color_type, int channels,
                            const uint8_t *pixels) {
  o->png = png_create_write_struct(PNG_LIBPNG_VER_STRING, o, on_error, on_warning);
  if (!o->png)
    return SD_ERROR(SD_ERR_NOMEM, "%s: cannot create a libpng writer", o->path);
  o->info = png_create_info_struct(o->png);
  if (!o->info)
    return SD_ERROR(SD_ERR_NOMEM, "%s: cannot create a libpng writer", o->path);
  if (setjmp(png_jmpbuf(o->png)))
    return SD_ERROR(SD_ERR_IO, "%s: cannot write PNG (libpng: %s)", o->path, o->msg);
  png_init_io(o->png, o->fp);
  png_set_IHDR(o->png, o->info, (png_uint_32)w, (png_uint_32)h, 8, color_type, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(o->png, o->info);
  const size_t stride = (size_t)w * (size_t)channels;
  for (int y = 0; y < h; y++)
    png_write_row(o->png, pixels + (size_t)y * stride);
  png_write_end(o->png, NULL);
  return SD_OK;
}

static sd_status png_write(const char *path, int w, int h, const uint8_t *pixels, int color_type,
                           int channels, const char *fn) {
  if (!path || !path[0] || !pixels)
    return SD_ERROR(SD_ERR_ARG, "%s: path and pixels must be given (path %s)", fn,
                    path ? path : "NULL");
  if (w <= 0 || h <= 0)
    return SD_ERROR(SD_ERR_ARG, "%s: %s: image size %d x %d; expected positive width and height",
                    fn, path, w, h);
  size_t cap = strlen(path) + 32;
  char *tmp = sd_malloc(cap, 1, "temporary PNG path");
  if (!tmp)
    return SD_ERR_NOMEM;
  snprintf(tmp, cap, "%s.tmp-%ld", path, (long)getpid());

  png_out o;
  memset(&o, 0, sizeof o);
  o.path = path;
  o.fp = fopen(tmp, "wb");
  if (!o.fp) {
    sd_status st =
        SD_ERROR(SD_ERR_IO, "%s: cannot create temporary file %s: %s", path, tmp, strerror(errno));
    free(tmp);
    return st;
  }
  sd_status st = png_encode(&o, w, h, color_type, channels, pixels);
  png_destroy_write_struct(&o.png, &o.info);
  if (st == SD_OK && (fflush(o.fp) != 0 || ferror(o.fp)))
    st = SD_ERROR(SD_ERR_IO, "%s: cannot write temporary file %s: %s", path, tmp, strerror(errno));
  if (fclose(o.fp) != 0 && st == SD_OK)
    st = SD_ERROR(SD_ERR_IO, "%s: cannot close temporary file %s: %s", path, tmp, strerror(errno));
  if (st == SD_OK && rename(tmp, path) != 0)
    st = SD_ERROR(SD_ERR_IO, "%s: cannot rename temporary file %s into place: %s", path, tmp,
                  strerror(errno));
  if (st != SD_OK)
    remove(tmp);
  free(tmp);
  return st;
}

sd_status sd_png_write_gray8(const char *path, int w, int h, const uint8_t *pixels) {
  SD_CHECK(png_write(path, w, h, pixels, PNG_COLOR_TYPE_GRAY, 1, "sd_png_write_gray8"));
  return SD_OK;
}

sd_status sd_png_write_rgb8(const char *path, int w, int h, const uint8_t *pixels) {
  SD_CHECK(png_write(path, w, h, pixels, PNG_COLOR_TYPE_RGB, 3, "sd_png_write_rgb8"));
  return SD_OK;
}
