/* test_imgread.c - the image reader (imgread.h) and the PNG writer (png.h).
 *
 * Fixtures are written here, into a mkdtemp directory, with libtiff, libjpeg and libpng (and one
 * TIFF assembled byte by byte), from value generators that the checks re-evaluate: every pixel
 * read back is compared with the value written (exactly for lossless files, within a tolerance
 * for JPEG). Then bad inputs (missing, empty, text, truncated, corrupt) must fail with the
 * right status and a message naming the file. Last, when the real STEM data folder is present,
 * every patch and both training images are read and checked against libtiff's independent
 * RGBA decoder; when it is absent that part is skipped with a message.
 * Set SD_TEST_KEEP_FILES=1 to keep the fixture directory for inspection.
 */
#include "stemdefect/imgread.h"
#include "stemdefect/png.h"

#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>
#include <tiffio.h>

#include "sd_test.h"

#define PATH_CAP 4096

static void join(char *out, const char *dir, const char *name) {
  int n = snprintf(out, PATH_CAP, "%s/%s", dir, name);
  SD_EXPECT_MSG(n > 0 && n < PATH_CAP, "path too long: %s/%s", dir, name);
}

static int message_has(const char *needle) {
  return strstr(sd_error_message(), needle) != NULL;
}

static int write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f)
    return 0;
  size_t put = n ? fwrite(data, 1, n, f) : 0;
  return (fclose(f) == 0) && put == n;
}

/* Reads a whole file (malloc'd, *n bytes) or returns NULL. */
static unsigned char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  rewind(f);
  unsigned char *buf = malloc(len > 0 ? (size_t)len : 1);
  *n = buf ? fread(buf, 1, (size_t)len, f) : 0;
  fclose(f);
  return buf;
}

/* Writes the first keep bytes of src to dst. */
static int truncate_copy(const char *src, const char *dst, double fraction, long minus) {
  size_t n = 0;
  unsigned char *buf = slurp(src, &n);
  if (!buf)
    return 0;
  size_t keep = minus > 0 ? n - (size_t)minus : (size_t)((double)n * fraction);
  int ok = write_bytes(dst, buf, keep);
  free(buf);
  return ok;
}

static double luminance(double r, double g, double b) {
  return (float)(0.299 * r + 0.587 * g + 0.114 * b);
}

/* Compares a page with expected grey values; reports the first mismatch. */
static void expect_pixels(const char *what, const sd_image *img, const float *expected, double tol,
                          double mean_tol) {
  size_t n = (size_t)img->width * (size_t)img->height, bad = 0, first = 0;
  double sum = 0.0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)img->pixels[i] - (double)expected[i]);
    double lim = tol + 1e-6 * fabs((double)expected[i]);
    sum += d;
    if (!(d <= lim) && !(isnan(expected[i]) && isnan(img->pixels[i]))) {
      if (!bad)
        first = i;
      bad++;
    }
  }
  SD_EXPECT_MSG(bad == 0,
                "%s: %zu of %zu pixels differ; first at (x %zu, y %zu): got %.9g, expected %.9g",
                what, bad, n, first % (size_t)img->width, first / (size_t)img->width,
                bad ? img->pixels[first] : 0.0, bad ? expected[first] : 0.0);
  if (mean_tol > 0)
    SD_EXPECT_MSG(sum / (double)n <= mean_tol, "%s: mean abs error %.3f > %.3f", what,
                  sum / (double)n, mean_tol);
}

/* ---- TIFF fixtures ----------------------------------------------------------------------- */

typedef struct tif_spec {
  const char *name;
  int w, h, spp, bps, fmt; /* fmt: SAMPLEFORMAT_* */
  int planar, photometric, compression, predictor;
  int tile; /* 0: strips of rps rows; else square tiles of this size */
  int rps;
  int npages;   /* page p is (w + p) x (h + 2p) */
  int rgb_mode; /* 0: R = G = B (alpha differs), 1: channels differ, 2: G differs at the last
                   pixel only, 3: B differs at the first pixel only */
  int smooth;   /* 1: smooth 8-bit pattern (for JPEG compression) */
  double tol;   /* 0 for lossless */
} tif_spec;

/* The value written for sample c of pixel (x, y) of page p, in the sample type's range. */
static double tif_value(const tif_spec *s, int p, int x, int y, int c) {
  int w = s->w + p, h = s->h + 2 * p;
  int cc = (c < 3 && s->rgb_mode != 1) ? 0 : c;
  double v;
  long t = 7L * x + 13L * y + 29L * p + 53L * cc;
  long u16 = (1031L * x + 4093L * y + 7919L * p + 12345L * cc) % 65536;
  if (s->smooth) {
    v = floor(128 + 60 * sin(0.21 * x + 0.3 * cc) * cos(0.17 * y + 0.1 * p) + 25 * cc);
  } else if (s->fmt == SAMPLEFORMAT_IEEEFP) {
    v = sin(0.37 * x + 0.11 * y + p + 0.7 * cc) * (s->bps == 64 ? 1e6 : 1000.0) + 0.125 * y;
    if (x == 0 && y == 0)
      v = 1e-30;
    if (x == 1 && y == 0)
      v = -3.5e30;
  } else if (s->fmt == SAMPLEFORMAT_INT) {
    if (s->bps == 8)
      v = (double)(t % 256) - 128;
    else if (s->bps == 16)
      v = (double)u16 - 32768;
    else
      v = (double)(((uint64_t)u16 * 65537u + 12345u) % 4294967296u) - 2147483648.0;
  } else if (s->bps < 8) {
    v = (double)(t % (1L << s->bps));
  } else if (s->bps == 8) {
    v = (double)(t % 256);
  } else if (s->bps == 16) {
    v = (double)u16;
  } else if (s->bps == 32) {
    v = (double)(((uint64_t)u16 * 65537u + 12345u) % 4294967296u);
  } else {
    v = (double)(((uint64_t)u16 * 65537u + 12345u) % 4294967296u) * 1000.0 + 7.0;
  }
  if (s->rgb_mode == 2 && c == 1 && x == w - 1 && y == h - 1)
    v = v > 0 ? v - 1 : v + 1;
  if (s->rgb_mode == 3 && c == 2 && x == 0 && y == 0)
    v = v > 0 ? v - 1 : v + 1;
  if (s->fmt == SAMPLEFORMAT_IEEEFP && s->bps == 32)
    v = (float)v;
  return v;
}

static void put_sample(unsigned char *row, size_t k, int bps, int fmt, double v) {
  if (bps < 8) {
    size_t per = 8 / (size_t)bps;
    int shift = 8 - bps * (int)(k % per + 1);
    row[k / per] |= (unsigned char)(((unsigned)v & ((1u << bps) - 1)) << shift);
    return;
  }
  unsigned char *d = row + k * (size_t)(bps / 8);
  if (fmt == SAMPLEFORMAT_IEEEFP) {
    if (bps == 32) {
      float f = (float)v;
      memcpy(d, &f, 4);
    } else {
      memcpy(d, &v, 8);
    }
  } else if (fmt == SAMPLEFORMAT_INT) {
    if (bps == 8) {
      int8_t i = (int8_t)v;
      memcpy(d, &i, 1);
    } else if (bps == 16) {
      int16_t i = (int16_t)v;
      memcpy(d, &i, 2);
    } else {
      int32_t i = (int32_t)v;
      memcpy(d, &i, 4);
    }
  } else {
    if (bps == 8) {
      d[0] = (unsigned char)v;
    } else if (bps == 16) {
      uint16_t i = (uint16_t)v;
      memcpy(d, &i, 2);
    } else if (bps == 32) {
      uint32_t i = (uint32_t)v;
      memcpy(d, &i, 4);
    } else {
      uint64_t i = (uint64_t)v;
      memcpy(d, &i, 8);
    }
  }
}

static int write_tiff(const char *path, const tif_spec *s) {
  TIFF *tif = TIFFOpen(path, "w");
  if (!tif)
    return 0;
  int ok = 1;
  int nplanes = s->planar == PLANARCONFIG_SEPARATE ? s->spp : 1;
  int spc = s->planar == PLANARCONFIG_SEPARATE ? 1 : s->spp; /* samples per chunk pixel */
  for (int p = 0; p < s->npages && ok; p++) {
    int w = s->w + p, h = s->h + 2 * p;
    TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, (uint32_t)w);
    TIFFSetField(tif, TIFFTAG_IMAGELENGTH, (uint32_t)h);
    TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, (uint16_t)s->spp);
    TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, (uint16_t)s->bps);
    TIFFSetField(tif, TIFFTAG_SAMPLEFORMAT, (uint16_t)s->fmt);
    TIFFSetField(tif, TIFFTAG_PLANARCONFIG, (uint16_t)s->planar);
    TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, (uint16_t)s->photometric);
    TIFFSetField(tif, TIFFTAG_COMPRESSION, (uint16_t)s->compression);
    if (s->compression == COMPRESSION_JPEG) {
      TIFFSetField(tif, TIFFTAG_JPEGQUALITY, 95);
      if (s->photometric == PHOTOMETRIC_YCBCR)
        TIFFSetField(tif, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB);
    }
    if (s->predictor)
      TIFFSetField(tif, TIFFTAG_PREDICTOR, (uint16_t)s->predictor);
    if (s->spp == 4 || (s->spp == 2 && s->photometric != PHOTOMETRIC_RGB)) {
      uint16_t extra = EXTRASAMPLE_UNASSALPHA;
      TIFFSetField(tif, TIFFTAG_EXTRASAMPLES, 1, &extra);
    }
    if (s->npages > 1) {
      TIFFSetField(tif, TIFFTAG_SUBFILETYPE, FILETYPE_PAGE);
      TIFFSetField(tif, TIFFTAG_PAGENUMBER, (uint16_t)p, (uint16_t)s->npages);
    }
    if (s->tile) {
      TIFFSetField(tif, TIFFTAG_TILEWIDTH, (uint32_t)s->tile);
      TIFFSetField(tif, TIFFTAG_TILELENGTH, (uint32_t)s->tile);
      size_t tsize = (size_t)TIFFTileSize(tif), trow = (size_t)TIFFTileRowSize(tif);
      unsigned char *buf = malloc(tsize);
      for (int pl = 0; pl < nplanes && ok; pl++)
        for (int ty = 0; ty < h && ok; ty += s->tile)
          for (int tx = 0; tx < w && ok; tx += s->tile) {
            memset(buf, 0, tsize);
            for (int r = 0; r < s->tile && ty + r < h; r++)
              for (int i = 0; i < s->tile && tx + i < w; i++)
                for (int c = 0; c < spc; c++)
                  put_sample(buf + (size_t)r * trow, (size_t)i * (size_t)spc + (size_t)c, s->bps,
                             s->fmt, tif_value(s, p, tx + i, ty + r, nplanes > 1 ? pl : c));
            ok = TIFFWriteTile(tif, buf, (uint32_t)tx, (uint32_t)ty, 0, (uint16_t)pl) >= 0;
          }
      free(buf);
    } else {
      TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, (uint32_t)s->rps);
      size_t rowbytes = ((size_t)w * (size_t)spc * (size_t)s->bps + 7) / 8;
      unsigned char *row = malloc(rowbytes);
      for (int pl = 0; pl < nplanes && ok; pl++)
        for (int y = 0; y < h && ok; y++) {
          memset(row, 0, rowbytes);
          for (int x = 0; x < w; x++)
            for (int c = 0; c < spc; c++)
              put_sample(row, (size_t)x * (size_t)spc + (size_t)c, s->bps, s->fmt,
                         tif_value(s, p, x, y, nplanes > 1 ? pl : c));
          ok = TIFFWriteScanline(tif, row, (uint32_t)y, (uint16_t)pl) == 1;
        }
      free(row);
    }
    if (ok)
      ok = TIFFWriteDirectory(tif) == 1;
  }
  TIFFClose(tif);
  return ok;
}

static void check_tiff(const char *dir, const tif_spec *s) {
  char path[PATH_CAP];
  join(path, dir, s->name);
  if (!write_tiff(path, s)) {
    SD_EXPECT_MSG(0, "%s: cannot write fixture", s->name);
    return;
  }
  int np = 0, pw = 0, ph = 0;
  SD_EXPECT_OK(sd_image_file_probe(path, &np, &pw, &ph));
  SD_EXPECT_MSG(np == s->npages && pw == s->w && ph == s->h, "%s: probe gave %d pages %dx%d",
                s->name, np, pw, ph);
  sd_image *pages = NULL;
  int n = 0;
  sd_status st = sd_image_file_read(path, &pages, &n);
  SD_EXPECT_MSG(st == SD_OK, "%s: read failed: %s", s->name, sd_error_message());
  sd_error_clear();
  if (st != SD_OK)
    return;
  SD_EXPECT_MSG(n == s->npages, "%s: %d pages, expected %d", s->name, n, s->npages);
  int nc = (s->photometric == PHOTOMETRIC_RGB || s->photometric == PHOTOMETRIC_YCBCR) ? 3 : 1;
  double maxval = ldexp(1.0, s->bps) - 1;
  for (int p = 0; p < n && p < s->npages; p++) {
    const sd_image *img = &pages[p];
    int w = s->w + p, h = s->h + 2 * p;
    char what[128], note[32] = "";
    if (s->npages > 1)
      snprintf(note, sizeof note, "page %d", p + 1);
    snprintf(what, sizeof what, "%s page %d", s->name, p + 1);
    SD_EXPECT_MSG(img->width == w && img->height == h, "%s: size %dx%d, expected %dx%d", what,
                  img->width, img->height, w, h);
    SD_EXPECT_MSG(strcmp(img->page_note, note) == 0, "%s: page_note \"%s\", expected \"%s\"", what,
                  img->page_note, note);
    if (img->width != w || img->height != h)
      continue;
    float *exp = malloc((size_t)w * (size_t)h * sizeof *exp);
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) {
        double ch[3];
        for (int c = 0; c < nc; c++) {
          double v = (float)tif_value(s, p, x, y, c); /* the reader stores float */
          ch[c] = s->photometric == PHOTOMETRIC_MINISWHITE ? maxval - v : v;
        }
        exp[(size_t)y * w + x] =
            (float)((nc == 1 || s->rgb_mode == 0) ? ch[0] : luminance(ch[0], ch[1], ch[2]));
      }
    expect_pixels(what, img, exp, s->tol, s->tol > 0 ? 2.0 : 0.0);
    free(exp);
  }
  sd_images_free(pages, n);
}

/* Half floats: raw bit patterns and their values (independent of the reader's conversion). */
static void check_tiff_half(const char *dir) {
  static const uint16_t bits[8] = {0x0000, 0x3c00, 0xc000, 0x3555, 0x7bff, 0x0001, 0x0400, 0xbc00};
  static const float vals[8] = {
      0.0f, 1.0f, -2.0f, 0.333251953125f, 65504.0f, 5.9604644775390625e-8f, 6.103515625e-5f, -1.0f};
  char path[PATH_CAP];
  join(path, dir, "half.tif");
  TIFF *tif = TIFFOpen(path, "w");
  SD_EXPECT(tif != NULL);
  if (!tif)
    return;
  TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, 4u);
  TIFFSetField(tif, TIFFTAG_IMAGELENGTH, 2u);
  TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, 1);
  TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, 16);
  TIFFSetField(tif, TIFFTAG_SAMPLEFORMAT, SAMPLEFORMAT_IEEEFP);
  TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
  TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, 2u);
  int ok = TIFFWriteEncodedStrip(tif, 0, (void *)bits, sizeof bits) == (tmsize_t)sizeof bits;
  TIFFClose(tif);
  SD_EXPECT(ok);
  sd_image *pages = NULL;
  int n = 0;
  SD_EXPECT_OK(sd_image_file_read(path, &pages, &n));
  if (n == 1 && pages[0].width == 4 && pages[0].height == 2)
    expect_pixels("half.tif", &pages[0], vals, 0.0, 0.0);
  else
    SD_EXPECT_MSG(0, "half.tif: %d pages", n);
  sd_images_free(pages, n);
}

/* A TIFF assembled byte by byte (directory before the data, as PIL writes it): 8-bit grey,
 * one uncompressed strip. */
static int write_tiff_by_hand(const char *path, int w, int h, unsigned char *pix_out) {
  unsigned char buf[4096];
  size_t n = 0;
  const uint16_t tags[9][2] = {{256, 3}, {257, 3}, {258, 3}, {259, 3}, {262, 3},
                               {273, 4}, {277, 3}, {278, 3}, {279, 4}};
  const uint32_t data_off = 8 + 2 + 9 * 12 + 4;
  const uint32_t vals[9] = {(uint32_t)w, (uint32_t)h,      8, 1, 1, data_off, 1,
                            (uint32_t)h, (uint32_t)(w * h)};
  if (data_off + (size_t)w * h > sizeof buf)
    return 0;
#define PUT16(v) (buf[n++] = (unsigned char)((v)&0xff), buf[n++] = (unsigned char)((v) >> 8))
#define PUT32(v) (PUT16((v)&0xffff), PUT16((v) >> 16))
  buf[n++] = 'I', buf[n++] = 'I';
  PUT16(42);
  PUT32(8u);
  PUT16(9);
  for (int i = 0; i < 9; i++) {
    PUT16(tags[i][0]);
    PUT16(tags[i][1]);
    PUT32(1u);
    if (tags[i][1] == 3) {
      PUT16(vals[i]);
      PUT16(0);
    } else {
      PUT32(vals[i]);
    }
  }
  PUT32(0u);
#undef PUT16
#undef PUT32
  for (int i = 0; i < w * h; i++)
    pix_out[i] = buf[n++] = (unsigned char)((i * 37 + 11) % 251);
  return write_bytes(path, buf, n);
}

/* ---- PNG fixtures ------------------------------------------------------------------------ */

typedef struct png_spec {
  const char *name;
  int w, h, color_type, depth, interlace;
  int rgb_mode; /* 0: R = G = B, 1: channels differ */
  int trns;     /* add a tRNS chunk (palette and grey) */
} png_spec;

static double png_value(const png_spec *s, int x, int y, int c) {
  int cc = (c < 3 && s->rgb_mode == 0) ? 0 : c;
  if (s->depth == 16)
    return (double)((1031L * x + 4093L * y + 12345L * cc) % 65536);
  return (double)((7L * x + 13L * y + 53L * cc) % (1L << s->depth));
}

static void palette_rgb(int i, double rgb[3]) {
  rgb[0] = i;
  rgb[1] = 255 - i;
  rgb[2] = (i * 3) % 256;
}

static int write_png_fixture(const char *path, const png_spec *s) {
  FILE *f = fopen(path, "wb");
  if (!f)
    return 0;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  unsigned char *row = NULL;
  if (!png || !info || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    fclose(f);
    free(row);
    return 0;
  }
  png_init_io(png, f);
  png_set_IHDR(png, info, (png_uint_32)s->w, (png_uint_32)s->h, s->depth, s->color_type,
               s->interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (s->color_type == PNG_COLOR_TYPE_PALETTE) {
    png_color pal[256];
    png_byte alpha[256];
    for (int i = 0; i < 256; i++) {
      double rgb[3];
      palette_rgb(i, rgb);
      pal[i].red = (png_byte)rgb[0], pal[i].green = (png_byte)rgb[1],
      pal[i].blue = (png_byte)rgb[2];
      alpha[i] = (png_byte)(255 - i / 2);
    }
    png_set_PLTE(png, info, pal, 1 << s->depth);
    if (s->trns)
      png_set_tRNS(png, info, alpha, 1 << s->depth, NULL);
  } else if (s->trns && s->color_type == PNG_COLOR_TYPE_GRAY) {
    png_color_16 t = {0, 0, 0, 0, 1};
    png_set_tRNS(png, info, NULL, 0, &t);
  }
  png_write_info(png, info);
  int ch = png_get_channels(png, info);
  int passes = png_set_interlace_handling(png);
  row = calloc((size_t)s->w * (size_t)ch * 2 + 8, 1);
  for (int pass = 0; pass < passes; pass++)
    for (int y = 0; y < s->h; y++) {
      memset(row, 0, (size_t)s->w * (size_t)ch * 2 + 8);
      for (int x = 0; x < s->w; x++)
        for (int c = 0; c < ch; c++) {
          unsigned v = (unsigned)png_value(s, x, y, c);
          size_t k = (size_t)x * (size_t)ch + (size_t)c;
          if (s->depth == 16)
            row[2 * k] = (unsigned char)(v >> 8), row[2 * k + 1] = (unsigned char)v;
          else if (s->depth == 8)
            row[k] = (unsigned char)v;
          else
            row[k * s->depth / 8] |= (unsigned char)(v << (8 - s->depth - (int)(k * s->depth % 8)));
        }
      png_write_row(png, row);
    }
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  free(row);
  return fclose(f) == 0;
}

static void check_png(const char *dir, const png_spec *s) {
  char path[PATH_CAP];
  join(path, dir, s->name);
  if (!write_png_fixture(path, s)) {
    SD_EXPECT_MSG(0, "%s: cannot write fixture", s->name);
    return;
  }
  int np = 0, pw = 0, ph = 0;
  SD_EXPECT_OK(sd_image_file_probe(path, &np, &pw, &ph));
  SD_EXPECT_MSG(np == 1 && pw == s->w && ph == s->h, "%s: probe gave %d pages %dx%d", s->name, np,
                pw, ph);
  sd_image *pages = NULL;
  int n = 0;
  sd_status st = sd_image_file_read(path, &pages, &n);
  SD_EXPECT_MSG(st == SD_OK, "%s: read failed: %s", s->name, sd_error_message());
  sd_error_clear();
  if (st != SD_OK)
    return;
  SD_EXPECT(n == 1 && pages[0].page_note[0] == '\0');
  if (pages[0].width == s->w && pages[0].height == s->h) {
    float *exp = malloc((size_t)s->w * (size_t)s->h * sizeof *exp);
    for (int y = 0; y < s->h; y++)
      for (int x = 0; x < s->w; x++) {
        double e, rgb[3];
        if (s->color_type == PNG_COLOR_TYPE_PALETTE) {
          palette_rgb((int)png_value(s, x, y, 0), rgb);
          e = luminance(rgb[0], rgb[1], rgb[2]);
        } else if ((s->color_type & PNG_COLOR_MASK_COLOR) && s->rgb_mode == 1) {
          e = luminance(png_value(s, x, y, 0), png_value(s, x, y, 1), png_value(s, x, y, 2));
        } else {
          e = png_value(s, x, y, 0);
        }
        exp[(size_t)y * s->w + x] = (float)e;
      }
    expect_pixels(s->name, &pages[0], exp, 0.0, 0.0);
    free(exp);
  } else {
    SD_EXPECT_MSG(0, "%s: size %dx%d", s->name, pages[0].width, pages[0].height);
  }
  sd_images_free(pages, n);
}

/* ---- JPEG fixtures ----------------------------------------------------------------------- */

static double jpeg_value(int x, int y, int c, int colour) {
  int cc = colour ? c : 0;
  return floor(128 + 60 * sin(0.21 * x + 0.5 * cc) * cos(0.17 * y) + 20 * cc);
}

static int write_jpeg_fixture(const char *path, int w, int h, int colour, int progressive) {
  FILE *f = fopen(path, "wb");
  if (!f)
    return 0;
  struct jpeg_compress_struct ci;
  struct jpeg_error_mgr jerr;
  ci.err = jpeg_std_error(&jerr); /* fixtures are valid: libjpeg's default handler is fine */
  jpeg_create_compress(&ci);
  jpeg_stdio_dest(&ci, f);
  ci.image_width = (JDIMENSION)w;
  ci.image_height = (JDIMENSION)h;
  ci.input_components = colour ? 3 : 1;
  ci.in_color_space = colour ? JCS_RGB : JCS_GRAYSCALE;
  jpeg_set_defaults(&ci);
  jpeg_set_quality(&ci, 95, TRUE);
  if (progressive)
    jpeg_simple_progression(&ci);
  jpeg_start_compress(&ci, TRUE);
  unsigned char *row = malloc((size_t)w * 3);
  while (ci.next_scanline < ci.image_height) {
    int y = (int)ci.next_scanline;
    for (int x = 0; x < w; x++)
      for (int c = 0; c < ci.input_components; c++)
        row[x * ci.input_components + c] = (unsigned char)jpeg_value(x, y, c, colour);
    JSAMPROW rp[1] = {row};
    jpeg_write_scanlines(&ci, rp, 1);
  }
  jpeg_finish_compress(&ci);
  jpeg_destroy_compress(&ci);
  free(row);
  return fclose(f) == 0;
}

static void check_jpeg(const char *dir, const char *name, int colour, int progressive) {
  char path[PATH_CAP];
  join(path, dir, name);
  const int w = 45, h = 31;
  if (!write_jpeg_fixture(path, w, h, colour, progressive)) {
    SD_EXPECT_MSG(0, "%s: cannot write fixture", name);
    return;
  }
  int np = 0, pw = 0, ph = 0;
  SD_EXPECT_OK(sd_image_file_probe(path, &np, &pw, &ph));
  SD_EXPECT_MSG(np == 1 && pw == w && ph == h, "%s: probe gave %d pages %dx%d", name, np, pw, ph);
  sd_image *pages = NULL;
  int n = 0;
  sd_status st = sd_image_file_read(path, &pages, &n);
  SD_EXPECT_MSG(st == SD_OK, "%s: read failed: %s", name, sd_error_message());
  sd_error_clear();
  if (st != SD_OK)
    return;
  if (n == 1 && pages[0].width == w && pages[0].height == h) {
    float exp[45 * 31];
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++)
        exp[y * w + x] = (float)(colour ? luminance(jpeg_value(x, y, 0, 1), jpeg_value(x, y, 1, 1),
                                                    jpeg_value(x, y, 2, 1))
                                        : jpeg_value(x, y, 0, 0));
    expect_pixels(name, &pages[0], exp, 10.0, 2.0);
  } else {
    SD_EXPECT_MSG(0, "%s: %d pages", name, n);
  }
  sd_images_free(pages, n);
}

/* ---- bad inputs -------------------------------------------------------------------------- */

/* Reading and probing path must fail with code and a message naming the file. */
static void expect_failure(const char *dir, const char *name, sd_status code, const char *also) {
  char path[PATH_CAP];
  join(path, dir, name);
  sd_image *pages = (sd_image *)&pages; /* must be reset to NULL */
  int n = 77;
  sd_error_clear();
  sd_status st = sd_image_file_read(path, &pages, &n);
  SD_EXPECT_MSG(st == code, "%s: status %d (%s), expected %d: %s", name, (int)st,
                sd_status_name(st), (int)code, sd_error_message());
  SD_EXPECT_MSG(pages == NULL && n == 0, "%s: outputs not reset on failure", name);
  SD_EXPECT_MSG(message_has(name), "%s: message does not name the file: %s", name,
                sd_error_message());
  if (also)
    SD_EXPECT_MSG(message_has(also), "%s: message lacks \"%s\": %s", name, also,
                  sd_error_message());
  fprintf(stderr, "  expected failure: %s\n", sd_error_message());
  if (st == SD_OK)
    sd_images_free(pages, n);
  sd_error_clear();
}

static void expect_probe_failure(const char *dir, const char *name, sd_status code) {
  char path[PATH_CAP];
  join(path, dir, name);
  int np = 0, w = 0, h = 0;
  sd_error_clear();
  sd_status st = sd_image_file_probe(path, &np, &w, &h);
  SD_EXPECT_MSG(st == code, "probe %s: status %d, expected %d: %s", name, (int)st, (int)code,
                sd_error_message());
  SD_EXPECT_MSG(message_has(name), "probe %s: message does not name the file: %s", name,
                sd_error_message());
  sd_error_clear();
}

static void test_bad_inputs(const char *dir) {
  char src[PATH_CAP], dst[PATH_CAP];
  expect_failure(dir, "missing.tif", SD_ERR_IO, "No such file");
  expect_probe_failure(dir, "missing.tif", SD_ERR_IO);

  join(dst, dir, "empty.png");
  SD_EXPECT(write_bytes(dst, "", 0));
  expect_failure(dir, "empty.png", SD_ERR_FORMAT, "empty");
  expect_probe_failure(dir, "empty.png", SD_ERR_FORMAT);

  const char *text = "This is not an image, just text.\n";
  join(dst, dir, "text.tif");
  SD_EXPECT(write_bytes(dst, text, strlen(text)));
  expect_failure(dir, "text.tif", SD_ERR_FORMAT, "not a TIFF file");
  expect_probe_failure(dir, "text.tif", SD_ERR_FORMAT);
  join(dst, dir, "text.dat");
  SD_EXPECT(write_bytes(dst, text, strlen(text)));
  expect_failure(dir, "text.dat", SD_ERR_FORMAT, "expected TIFF, JPEG or PNG");

  join(dst, dir, "adir.tif");
  SD_EXPECT(mkdir(dst, 0700) == 0);
  expect_failure(dir, "adir.tif", SD_ERR_IO, "directory");

  /* libtiff puts the directory after the data: half a file has no directory */
  join(src, dir, "u16_lzw_pred.tif");
  join(dst, dir, "trunc_dir.tif");
  SD_EXPECT(truncate_copy(src, dst, 0.5, 0));
  expect_failure(dir, "trunc_dir.tif", SD_ERR_FORMAT, NULL);
  expect_probe_failure(dir, "trunc_dir.tif", SD_ERR_FORMAT);
  /* directory first (like the real patches): the header reads, the strip does not */
  join(src, dir, "byhand.tif");
  join(dst, dir, "trunc_data.tif");
  SD_EXPECT(truncate_copy(src, dst, 0.5, 0));
  expect_failure(dir, "trunc_data.tif", SD_ERR_FORMAT, "strip");
  /* corrupt Deflate data (libtiff writes the first strip right after the 8-byte header) */
  join(src, dir, "f32_deflate_fpred.tif");
  join(dst, dir, "bad_deflate.tif");
  {
    size_t n = 0;
    unsigned char *buf = slurp(src, &n);
    SD_EXPECT(buf != NULL && n > 64);
    if (buf && n > 64) {
      for (size_t i = 8; i < 40; i++)
        buf[i] ^= 0xa5;
      SD_EXPECT(write_bytes(dst, buf, n));
      expect_failure(dir, "bad_deflate.tif", SD_ERR_FORMAT, "strip");
    }
    free(buf);
  }
  /* a multi-page file whose third page is cut off must not read as two pages */
  join(src, dir, "multipage.tif");
  join(dst, dir, "trunc_multipage.tif");
  SD_EXPECT(truncate_copy(src, dst, 0.85, 0));
  expect_failure(dir, "trunc_multipage.tif", SD_ERR_FORMAT, NULL);

  join(src, dir, "rgb8.png");
  join(dst, dir, "trunc.png");
  SD_EXPECT(truncate_copy(src, dst, 0.5, 0));
  expect_failure(dir, "trunc.png", SD_ERR_FORMAT, "PNG");
  join(dst, dir, "trunc_iend.png"); /* everything but the 12-byte IEND chunk */
  SD_EXPECT(truncate_copy(src, dst, 0, 12));
  expect_failure(dir, "trunc_iend.png", SD_ERR_FORMAT, "PNG");
  {
    size_t n = 0;
    unsigned char *buf = slurp(src, &n);
    if (buf) {
      buf[n / 2] ^= 0x55; /* inside IDAT: CRC mismatch */
      join(dst, dir, "crc.png");
      SD_EXPECT(write_bytes(dst, buf, n));
      free(buf);
      expect_failure(dir, "crc.png", SD_ERR_FORMAT, "PNG");
    }
  }

  join(src, dir, "grey.jpg");
  join(dst, dir, "trunc.jpg");
  SD_EXPECT(truncate_copy(src, dst, 0.5, 0));
  expect_failure(dir, "trunc.jpg", SD_ERR_FORMAT, "JPEG");
  join(dst, dir, "trunc_header.jpg");
  SD_EXPECT(truncate_copy(src, dst, 0.02, 0));
  expect_failure(dir, "trunc_header.jpg", SD_ERR_FORMAT, "JPEG");
  join(dst, dir, "trunc_eoi.jpg"); /* only the end-of-image marker missing */
  SD_EXPECT(truncate_copy(src, dst, 0, 2));
  expect_failure(dir, "trunc_eoi.jpg", SD_ERR_FORMAT, "JPEG");

  sd_image *pages = NULL;
  int n = 0;
  SD_EXPECT(sd_image_file_read(NULL, &pages, &n) == SD_ERR_ARG);
  sd_error_clear();
}

/* Content decides the format, not the name. */
static void test_magic_over_extension(const char *dir) {
  char src[PATH_CAP], dst[PATH_CAP];
  const struct {
    const char *from, *to;
  } cases[] = {{"grey.jpg", "jpeg_named.tif"},
               {"gray8.png", "png_named.dat"},
               {"g8_none.tif", "tiff_named.png"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    join(src, dir, cases[i].from);
    join(dst, dir, cases[i].to);
    SD_EXPECT(truncate_copy(src, dst, 1.0, 0));
    sd_image *a = NULL, *b = NULL;
    int na = 0, nb = 0;
    SD_EXPECT_OK(sd_image_file_read(src, &a, &na));
    SD_EXPECT_OK(sd_image_file_read(dst, &b, &nb));
    SD_EXPECT_MSG(na == 1 && nb == 1 && a[0].width == b[0].width && a[0].height == b[0].height &&
                      memcmp(a[0].pixels, b[0].pixels,
                             (size_t)a[0].width * (size_t)a[0].height * sizeof(float)) == 0,
                  "%s differs from %s", cases[i].to, cases[i].from);
    sd_images_free(a, na);
    sd_images_free(b, nb);
  }
}

static void test_path_supported(void) {
  SD_EXPECT(sd_image_path_supported("a.tif"));
  SD_EXPECT(sd_image_path_supported("dir.x/A.TIFF"));
  SD_EXPECT(sd_image_path_supported("b.JPG"));
  SD_EXPECT(sd_image_path_supported("b.jpeg"));
  SD_EXPECT(sd_image_path_supported("c.Png"));
  SD_EXPECT(!sd_image_path_supported("c.png.txt"));
  SD_EXPECT(!sd_image_path_supported("tif"));
  SD_EXPECT(!sd_image_path_supported("dir.tif/"));
  SD_EXPECT(!sd_image_path_supported("x.gif"));
  SD_EXPECT(!sd_image_path_supported(NULL));
}

/* ---- the PNG writer ---------------------------------------------------------------------- */

static int count_temporaries(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (strstr(e->d_name, ".tmp-"))
      n++;
  if (d)
    closedir(d);
  return n;
}

static void test_png_writer(const char *dir) {
  enum { W = 29, H = 13 };
  uint8_t grey[W * H], rgb[W * H * 3], rgb_equal[W * H * 3];
  float exp_grey[W * H], exp_rgb[W * H];
  for (int i = 0; i < W * H; i++) {
    grey[i] = (uint8_t)((i * 11 + 3) % 256);
    exp_grey[i] = grey[i];
    for (int c = 0; c < 3; c++) {
      rgb[3 * i + c] = (uint8_t)((i * 5 + c * 70) % 256);
      rgb_equal[3 * i + c] = grey[i];
    }
    exp_rgb[i] = (float)luminance(rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]);
  }
  const struct {
    const char *name;
    int colour;
    const uint8_t *pix;
    const float *exp;
  } cases[] = {{"out_grey.png", 0, grey, exp_grey},
               {"out_rgb.png", 1, rgb, exp_rgb},
               {"out_rgb_equal.png", 1, rgb_equal, exp_grey}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char path[PATH_CAP];
    join(path, dir, cases[i].name);
    if (cases[i].colour)
      SD_EXPECT_OK(sd_png_write_rgb8(path, W, H, cases[i].pix));
    else
      SD_EXPECT_OK(sd_png_write_gray8(path, W, H, cases[i].pix));
    sd_image *pages = NULL;
    int n = 0;
    SD_EXPECT_OK(sd_image_file_read(path, &pages, &n));
    if (n == 1 && pages[0].width == W && pages[0].height == H)
      expect_pixels(cases[i].name, &pages[0], cases[i].exp, 0.0, 0.0);
    else
      SD_EXPECT_MSG(0, "%s: read back %d pages", cases[i].name, n);
    sd_images_free(pages, n);
  }
  /* overwriting an existing file works */
  char path[PATH_CAP];
  join(path, dir, "out_grey.png");
  SD_EXPECT_OK(sd_png_write_gray8(path, W, H, grey));

  /* errors: a missing directory, bad arguments; no temporary file stays behind */
  join(path, dir, "no/such/dir/fail.png");
  sd_error_clear();
  SD_EXPECT(sd_png_write_gray8(path, W, H, grey) == SD_ERR_IO);
  SD_EXPECT_MSG(message_has("fail.png"), "message: %s", sd_error_message());
  fprintf(stderr, "  expected failure: %s\n", sd_error_message());
  sd_error_clear();
  join(path, dir, "bad.png");
  SD_EXPECT(sd_png_write_rgb8(path, 0, H, rgb) == SD_ERR_ARG);
  SD_EXPECT_MSG(message_has("bad.png"), "message: %s", sd_error_message());
  sd_error_clear();
  SD_EXPECT(sd_png_write_gray8(path, W, H, NULL) == SD_ERR_ARG);
  sd_error_clear();
  struct stat sb;
  SD_EXPECT(stat(path, &sb) != 0);
  SD_EXPECT_MSG(count_temporaries(dir) == 0, "temporary files left in %s", dir);
}

/* ---- real STEM data ---------------------------------------------------------------------- */

/* libtiff's own RGBA decoder (8-bit output) as an independent reference for 8-bit files:
 * grey = R when R = G = B everywhere, else the luminance. */
static int rgba_reference(const char *path, int w, int h, float *grey) {
  TIFFErrorHandler old = TIFFSetWarningHandler(NULL); /* private tags in the training image */
  TIFF *tif = TIFFOpen(path, "r");
  int ok = 0;
  uint32_t *ras = malloc((size_t)w * (size_t)h * sizeof *ras);
  if (tif && ras &&
      TIFFReadRGBAImageOriented(tif, (uint32_t)w, (uint32_t)h, ras, ORIENTATION_TOPLEFT, 0)) {
    int equal = 1;
    for (size_t i = 0; i < (size_t)w * h; i++)
      equal &= TIFFGetR(ras[i]) == TIFFGetG(ras[i]) && TIFFGetR(ras[i]) == TIFFGetB(ras[i]);
    for (size_t i = 0; i < (size_t)w * h; i++)
      grey[i] = equal ? (float)TIFFGetR(ras[i])
                      : (float)luminance(TIFFGetR(ras[i]), TIFFGetG(ras[i]), TIFFGetB(ras[i]));
    ok = 1;
  }
  if (tif)
    TIFFClose(tif);
  free(ras);
  TIFFSetWarningHandler(old);
  return ok;
}

static int samples_per_pixel(const char *path) {
  TIFFErrorHandler old = TIFFSetWarningHandler(NULL);
  TIFF *tif = TIFFOpen(path, "r");
  uint16_t spp = 0;
  if (tif) {
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &spp);
    TIFFClose(tif);
  }
  TIFFSetWarningHandler(old);
  return spp;
}

/* Reads one real 8-bit file and checks size, range, contrast and (TIFF) the RGBA reference.
 * Returns 1 when every check passed. */
static int check_real_file(const char *path, int w, int h, int quiet) {
  sd_image *pages = NULL;
  int n = 0, good = 1;
  sd_status st = sd_image_file_read(path, &pages, &n);
  if (st != SD_OK) {
    SD_EXPECT_MSG(0, "%s: %s", path, sd_error_message());
    sd_error_clear();
    return 0;
  }
  int np = 0, pw = 0, ph = 0;
  SD_EXPECT_OK(sd_image_file_probe(path, &np, &pw, &ph));
  good &= np == 1 && pw == w && ph == h;
  good &= n == 1 && pages[0].width == w && pages[0].height == h;
  if (good) {
    float lo = pages[0].pixels[0], hi = lo;
    for (size_t i = 0; i < (size_t)w * h; i++) {
      float v = pages[0].pixels[i];
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
      good &= v == floorf(v); /* 8-bit data gives whole numbers */
    }
    good &= lo >= 0 && hi <= 255 && hi > lo;
    if (!quiet || !good)
      fprintf(stderr, "  %s: %dx%d, values %g..%g\n", path, pages[0].width, pages[0].height, lo,
              hi);
    size_t len = strlen(path);
    if (good && len > 4 && strcmp(path + len - 4, ".tif") == 0) {
      float *ref = malloc((size_t)w * h * sizeof *ref);
      good &= ref && rgba_reference(path, w, h, ref);
      for (size_t i = 0; good && i < (size_t)w * h; i++)
        good &= fabsf(ref[i] - pages[0].pixels[i]) <= 1e-4f;
      free(ref);
    }
  }
  SD_EXPECT_MSG(good, "%s: %d pages, %dx%d (probe %d, %dx%d): wrong size, range or values", path, n,
                n ? pages[0].width : 0, n ? pages[0].height : 0, np, pw, ph);
  sd_images_free(pages, n);
  return good;
}

static int find_real_dir(char *out) {
  const char *src = getenv("SD_SOURCE_DIR");
  struct stat sb;
  if (src && src[0]) {
    snprintf(out, PATH_CAP, "%s/../shared/data/stem-real", src);
    if (stat(out, &sb) == 0 && S_ISDIR(sb.st_mode))
      return 1;
  }
  snprintf(out, PATH_CAP, "/work/shared/data/stem-real");
  return stat(out, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static void test_real_data(void) {
  char root[PATH_CAP];
  if (!find_real_dir(root)) {
    fprintf(stderr, "test_imgread: SKIP real data: no stem-real folder at "
                    "$SD_SOURCE_DIR/../shared/data/stem-real or /work/shared/data/stem-real\n");
    return;
  }
  const char *sets[2] = {"CdTe", "STO"};
  int spp_seen[5] = {0};
  for (int s = 0; s < 2; s++) {
    char dir[PATH_CAP];
    join(dir, root, sets[s]);
    DIR *d = opendir(dir);
    SD_EXPECT_MSG(d != NULL, "cannot list %s", dir);
    if (!d)
      continue;
    int files = 0, good = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
      if (!sd_image_path_supported(e->d_name))
        continue;
      char path[PATH_CAP];
      join(path, dir, e->d_name);
      /* print the first patch of each layout, sweep the rest quietly */
      int spp = samples_per_pixel(path);
      int quiet = spp >= 0 && spp <= 4 && spp_seen[spp] > 0;
      if (spp >= 0 && spp <= 4)
        spp_seen[spp]++;
      files++;
      good += check_real_file(path, 64, 64, quiet);
    }
    closedir(d);
    fprintf(stderr, "  %s: %d of %d patches read correctly\n", sets[s], good, files);
    SD_EXPECT_MSG(files > 0, "no patches in %s", dir);
  }
  fprintf(stderr, "  patches with 1/3/4 samples per pixel: %d/%d/%d\n", spp_seen[1], spp_seen[3],
          spp_seen[4]);
  SD_EXPECT(spp_seen[1] > 0 && spp_seen[3] > 0 && spp_seen[4] > 0);

  char path[PATH_CAP];
  join(path, root, "CdTe_Training_Image.tif");
  check_real_file(path, 768, 768, 0);
  join(path, root, "STO_Training_Image.jpg");
  check_real_file(path, 512, 512, 0);
}

/* ---- main -------------------------------------------------------------------------------- */

static void remove_tree(const char *dir) {
  DIR *d = opendir(dir);
  struct dirent *e;
  while (d && (e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    char path[PATH_CAP];
    join(path, dir, e->d_name);
    struct stat sb;
    if (lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
      remove_tree(path);
    else
      unlink(path);
  }
  if (d)
    closedir(d);
  rmdir(dir);
}

int main(void) {
  char dir[] = "/tmp/sd_test_imgread.XXXXXX";
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  enum {
    C = PLANARCONFIG_CONTIG,
    S = PLANARCONFIG_SEPARATE,
    U = SAMPLEFORMAT_UINT,
    I = SAMPLEFORMAT_INT,
    F = SAMPLEFORMAT_IEEEFP,
    MB = PHOTOMETRIC_MINISBLACK,
    MW = PHOTOMETRIC_MINISWHITE,
    RGB = PHOTOMETRIC_RGB,
    YCC = PHOTOMETRIC_YCBCR,
    NONE = COMPRESSION_NONE,
    LZW = COMPRESSION_LZW,
    ZIP = COMPRESSION_ADOBE_DEFLATE,
    PACK = COMPRESSION_PACKBITS,
    JPG = COMPRESSION_JPEG
  };
  /* clang-format off */
  const tif_spec tiffs[] = {
      /* name               w   h spp bps fmt planar phot comp pred tile rps pages rgb smooth tol */
      {"g8_none.tif",          37, 23, 1, 8, U, C, MB, NONE, 0, 0, 5, 1, 0, 0, 0},
      {"u16_lzw_pred.tif",     37, 23, 1, 16, U, C, MB, LZW, 2, 0, 8, 1, 0, 0, 0},
      {"u32_deflate_pred.tif", 30, 20, 1, 32, U, C, MB, ZIP, 2, 0, 7, 1, 0, 0, 0},
      {"u64_none.tif",         9, 7, 1, 64, U, C, MB, NONE, 0, 0, 7, 1, 0, 0, 0},
      {"i8_none.tif",          19, 9, 1, 8, I, C, MB, NONE, 0, 0, 4, 1, 0, 0, 0},
      {"i16_none.tif",         33, 21, 1, 16, I, C, MB, NONE, 0, 0, 21, 1, 0, 0, 0},
      {"i16_lzw_pred.tif",     33, 21, 1, 16, I, C, MB, LZW, 2, 0, 3, 1, 0, 0, 0},
      {"i32_deflate.tif",      17, 11, 1, 32, I, C, MB, ZIP, 0, 0, 4, 1, 0, 0, 0},
      {"f32_none.tif",         31, 17, 1, 32, F, C, MB, NONE, 0, 0, 17, 1, 0, 0, 0},
      {"f32_deflate_fpred.tif", 31, 17, 1, 32, F, C, MB, ZIP, 3, 0, 6, 1, 0, 0, 0},
      {"f32_lzw_fpred_tiled.tif", 40, 35, 1, 32, F, C, MB, LZW, 3, 16, 0, 1, 0, 0, 0},
      {"f64_deflate_fpred.tif", 25, 19, 1, 64, F, C, MB, ZIP, 3, 0, 5, 1, 0, 0, 0},
      {"u1_none.tif",          21, 5, 1, 1, U, C, MB, NONE, 0, 0, 5, 1, 0, 0, 0},
      {"u4_packbits.tif",      21, 5, 1, 4, U, C, MB, PACK, 0, 0, 2, 1, 0, 0, 0},
      {"u8_miniswhite.tif",    16, 8, 1, 8, U, C, MW, NONE, 0, 0, 8, 1, 0, 0, 0},
      {"u16_tiled_packbits.tif", 40, 35, 1, 16, U, C, MB, PACK, 0, 16, 0, 1, 0, 0, 0},
      {"rgb8_equal_lzw.tif",   37, 23, 3, 8, U, C, RGB, LZW, 2, 0, 6, 1, 0, 0, 0},
      {"rgb8_unequal.tif",     37, 23, 3, 8, U, C, RGB, NONE, 0, 0, 23, 1, 1, 0, 0},
      {"rgb8_onediff_sep_tiled.tif", 37, 23, 3, 8, U, S, RGB, ZIP, 2, 16, 0, 1, 2, 0, 0},
      {"rgb16_bdiff.tif",      21, 13, 3, 16, U, C, RGB, NONE, 0, 0, 13, 1, 3, 0, 0},
      {"rgba8_equal.tif",      64, 64, 4, 8, U, C, RGB, NONE, 0, 0, 64, 1, 0, 0, 0},
      {"rgba16_unequal_sep.tif", 37, 23, 4, 16, U, S, RGB, ZIP, 2, 0, 5, 1, 1, 0, 0},
      {"rgbf32_unequal_sep.tif", 20, 12, 3, 32, F, S, RGB, LZW, 3, 0, 4, 1, 1, 0, 0},
      {"ga8.tif",              15, 9, 2, 8, U, C, MB, NONE, 0, 0, 9, 1, 0, 0, 0},
      {"multipage.tif",        24, 16, 1, 16, U, C, MB, LZW, 2, 0, 4, 3, 0, 0, 0},
      {"jpeg_grey.tif",        48, 32, 1, 8, U, C, MB, JPG, 0, 0, 16, 1, 0, 1, 10},
      {"jpeg_ycbcr.tif",       48, 32, 3, 8, U, C, YCC, JPG, 0, 0, 16, 1, 1, 1, 10},
  };
  /* clang-format on */
  for (size_t i = 0; i < sizeof tiffs / sizeof tiffs[0]; i++)
    check_tiff(dir, &tiffs[i]);
  check_tiff_half(dir);
  {
    char path[PATH_CAP];
    unsigned char pix[20 * 10];
    float exp[20 * 10];
    join(path, dir, "byhand.tif");
    SD_EXPECT(write_tiff_by_hand(path, 20, 10, pix));
    for (int i = 0; i < 200; i++)
      exp[i] = pix[i];
    sd_image *pages = NULL;
    int n = 0;
    SD_EXPECT_OK(sd_image_file_read(path, &pages, &n));
    if (n == 1 && pages[0].width == 20 && pages[0].height == 10)
      expect_pixels("byhand.tif", &pages[0], exp, 0.0, 0.0);
    else
      SD_EXPECT_MSG(0, "byhand.tif: %d pages", n);
    sd_images_free(pages, n);
  }

  const png_spec pngs[] = {
      {"gray8.png", 37, 23, PNG_COLOR_TYPE_GRAY, 8, 0, 0, 0},
      {"gray16.png", 37, 23, PNG_COLOR_TYPE_GRAY, 16, 0, 0, 0},
      {"gray4.png", 37, 23, PNG_COLOR_TYPE_GRAY, 4, 0, 0, 0},
      {"gray1_trns.png", 37, 23, PNG_COLOR_TYPE_GRAY, 1, 0, 0, 1},
      {"gray_alpha8.png", 37, 23, PNG_COLOR_TYPE_GRAY_ALPHA, 8, 0, 0, 0},
      {"gray_alpha16.png", 37, 23, PNG_COLOR_TYPE_GRAY_ALPHA, 16, 0, 0, 0},
      {"rgb8.png", 37, 23, PNG_COLOR_TYPE_RGB, 8, 0, 1, 0},
      {"rgb8_equal.png", 37, 23, PNG_COLOR_TYPE_RGB, 8, 0, 0, 0},
      {"rgb16.png", 37, 23, PNG_COLOR_TYPE_RGB, 16, 0, 1, 0},
      {"rgba8_equal.png", 37, 23, PNG_COLOR_TYPE_RGB_ALPHA, 8, 0, 0, 0},
      {"rgba16.png", 37, 23, PNG_COLOR_TYPE_RGB_ALPHA, 16, 0, 1, 0},
      {"palette8.png", 37, 23, PNG_COLOR_TYPE_PALETTE, 8, 0, 1, 0},
      {"palette4_trns.png", 37, 23, PNG_COLOR_TYPE_PALETTE, 4, 0, 1, 1},
      {"rgb8_interlaced.png", 37, 23, PNG_COLOR_TYPE_RGB, 8, 1, 1, 0},
  };
  for (size_t i = 0; i < sizeof pngs / sizeof pngs[0]; i++)
    check_png(dir, &pngs[i]);

  check_jpeg(dir, "grey.jpg", 0, 0);
  check_jpeg(dir, "colour.jpg", 1, 0);
  check_jpeg(dir, "grey_progressive.jpg", 0, 1);

  test_path_supported();
  test_magic_over_extension(dir);
  test_bad_inputs(dir);
  test_png_writer(dir);
  test_real_data();

  if (getenv("SD_TEST_KEEP_FILES")) {
    fprintf(stderr, "test_imgread: fixtures kept in %s\n", dir);
  } else {
    remove_tree(dir);
    struct stat sb;
    SD_EXPECT_MSG(stat(dir, &sb) != 0, "temporary directory %s not removed", dir);
  }
  return sd_test_finish("test_imgread");
}
