/* imgread.c - TIFF (libtiff), JPEG (libjpeg) and PNG (libpng) files to float grey images.
 *
 * Flow: sniff() opens the file, checks it is a regular non-empty file and picks the decoder
 * from the magic bytes. Each decoder fills a float buffer of shape (h, w, nc), nc = 1 (grey) or
 * 3 (RGB; alpha and extra samples are skipped while decoding), and to_grey() turns it into the
 * page's (h, w) grey pixels.
 *
 * Library errors never reach stderr and never exit: libtiff messages go to per-handle handlers
 * (libtiff >= 4.5) that keep the last error text for our message; libjpeg and libpng errors
 * longjmp back to the decoder, which returns SD_ERR_FORMAT. The setjmp calls sit in small
 * functions (jpeg_run, png_run) whose state lives in a struct owned by the caller, so nothing
 * that is changed after setjmp is an automatic variable of the function that called setjmp.
 */
#include "stemdefect/imgread.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <png.h>
#include <tiffio.h>

/* jpeglib.h before jerror.h: jerror.h's message list depends on jconfig.h */
#include <jpeglib.h>

#include <jerror.h>

/* Largest page we decode (pixels). A corrupt header must not make us allocate terabytes. */
#define IMG_MAX_PIXELS ((uint64_t)1 << 31)

/* libtiff 4.5 added per-handle error handlers; older versions only have process-wide ones. */
#if defined(TIFFLIB_VERSION) && TIFFLIB_VERSION >= 20221213 && !defined(SD_IMGREAD_LEGACY_TIFF)
#define IMG_TIFF_PER_HANDLE 1
#else
#define IMG_TIFF_PER_HANDLE 0
#endif

typedef enum img_kind { IMG_KIND_UNKNOWN, IMG_KIND_TIFF, IMG_KIND_JPEG, IMG_KIND_PNG } img_kind;

static const char *kind_name(img_kind k) {
  switch (k) {
  case IMG_KIND_TIFF: return "TIFF";
  case IMG_KIND_JPEG: return "JPEG";
  case IMG_KIND_PNG: return "PNG";
  case IMG_KIND_UNKNOWN: break;
  }
  return "image";
}

/* ---- names and magic numbers ------------------------------------------------------------- */

/* 1 when the file name (after the last '/') ends in ext (".tif"), ignoring case. */
static int name_ends_with(const char *path, const char *ext) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  size_t n = strlen(base), m = strlen(ext);
  if (n <= m)
    return 0; /* ".tif" alone is a hidden file, not a TIFF name */
  const char *s = base + n - m;
  for (size_t i = 0; i < m; i++) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z')
      c = (char)(c - 'A' + 'a');
    if (c != ext[i])
      return 0;
  }
  return 1;
}

static img_kind kind_from_name(const char *path) {
  if (name_ends_with(path, ".tif") || name_ends_with(path, ".tiff"))
    return IMG_KIND_TIFF;
  if (name_ends_with(path, ".jpg") || name_ends_with(path, ".jpeg"))
    return IMG_KIND_JPEG;
  if (name_ends_with(path, ".png"))
    return IMG_KIND_PNG;
  return IMG_KIND_UNKNOWN;
}

int sd_image_path_supported(const char *path) {
  return path && kind_from_name(path) != IMG_KIND_UNKNOWN;
}

static img_kind kind_from_magic(const unsigned char *m, size_t n) {
  static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (n >= 4 && ((m[0] == 'I' && m[1] == 'I' && (m[2] == 42 || m[2] == 43) && m[3] == 0) ||
                 (m[0] == 'M' && m[1] == 'M' && m[2] == 0 && (m[3] == 42 || m[3] == 43))))
    return IMG_KIND_TIFF; /* classic (42) or BigTIFF (43), either byte order */
  if (n >= 3 && m[0] == 0xff && m[1] == 0xd8 && m[2] == 0xff)
    return IMG_KIND_JPEG;
  if (n >= 8 && memcmp(m, png_sig, 8) == 0)
    return IMG_KIND_PNG;
  return IMG_KIND_UNKNOWN;
}

/* Writes the first bytes as hex plus their printable text: "48 65 6c 6c ("Hell")". */
static void describe_bytes(const unsigned char *m, size_t n, char *out, size_t cap) {
  size_t len = 0;
  out[0] = '\0';
  if (n > 4)
    n = 4;
  for (size_t i = 0; i < n && len + 4 < cap; i++)
    len += (size_t)snprintf(out + len, cap - len, "%s%02x", i ? " " : "", m[i]);
  int printable = 1;
  for (size_t i = 0; i < n; i++)
    if (m[i] < 0x20 || m[i] > 0x7e)
      printable = 0;
  if (printable && len + n + 6 < cap) {
    len += (size_t)snprintf(out + len, cap - len, " (\"");
    for (size_t i = 0; i < n; i++)
      out[len++] = (char)m[i];
    snprintf(out + len, cap - len, "\")");
  }
}

/* Opens path for reading and identifies the format from its first bytes. On success *fp is
 * the open stream at offset 0 (the caller closes it) and *kind is known. */
static sd_status sniff(const char *path, FILE **fp, img_kind *kind) {
  struct stat sb;
  *fp = NULL;
  *kind = IMG_KIND_UNKNOWN;
  if (stat(path, &sb) != 0)
    return SD_ERROR(SD_ERR_IO, "%s: cannot open image file: %s", path, strerror(errno));
  if (S_ISDIR(sb.st_mode))
    return SD_ERROR(SD_ERR_IO, "%s: is a directory; expected an image file (TIFF, JPEG or PNG)",
                    path);
  if (!S_ISREG(sb.st_mode))
    return SD_ERROR(SD_ERR_IO, "%s: not a regular file; expected an image file (TIFF, JPEG or PNG)",
                    path);
  FILE *f = fopen(path, "rb");
  if (!f)
    return SD_ERROR(SD_ERR_IO, "%s: cannot open image file: %s", path, strerror(errno));
  unsigned char m[8];
  size_t n = fread(m, 1, sizeof m, f);
  if (ferror(f)) {
    int e = errno;
    fclose(f);
    return SD_ERROR(SD_ERR_IO, "%s: cannot read image file: %s", path, strerror(e));
  }
  if (n == 0) {
    fclose(f);
    return SD_ERROR(SD_ERR_FORMAT, "%s: empty file (0 bytes); expected a TIFF, JPEG or PNG image",
                    path);
  }
  img_kind k = kind_from_magic(m, n);
  if (k == IMG_KIND_UNKNOWN) {
    char bytes[64];
    describe_bytes(m, n, bytes, sizeof bytes);
    img_kind by_name = kind_from_name(path);
    fclose(f);
    if (by_name != IMG_KIND_UNKNOWN)
      return SD_ERROR(SD_ERR_FORMAT,
                      "%s: not a %s file (bad magic number %s); expected TIFF, JPEG or PNG", path,
                      kind_name(by_name), bytes);
    return SD_ERROR(SD_ERR_FORMAT,
                    "%s: unrecognised file format (first bytes %s); expected TIFF, JPEG or PNG",
                    path, bytes);
  }
  rewind(f);
  *fp = f;
  *kind = k;
  return SD_OK;
}

/* ---- shared: size checks, colour to grey, page arrays ------------------------------------ */

static sd_status check_size(const char *path, const char *where, uint64_t w, uint64_t h) {
  if (w == 0 || h == 0)
    return SD_ERROR(SD_ERR_FORMAT,
                    "%s: %simage has no pixels (%llu x %llu); expected a non-empty image", path,
                    where, (unsigned long long)w, (unsigned long long)h);
  if (w > INT_MAX || h > INT_MAX || w * h > IMG_MAX_PIXELS)
    return SD_ERROR(
        SD_ERR_FORMAT,
        "%s: %simage of %llu x %llu pixels is too large (at most 2^31 pixels supported)", path,
        where, (unsigned long long)w, (unsigned long long)h);
  return SD_OK;
}

/* grey (n) from src (n, nc): nc == 1 copies; nc == 3 takes the first channel when R == G == B at
 * every pixel, otherwise the luminance 0.299 R + 0.587 G + 0.114 B. */
static void to_grey(const float *src, size_t n, int nc, float *grey) {
  if (nc == 1) {
    memcpy(grey, src, n * sizeof *grey);
    return;
  }
  int equal = 1;
  for (size_t i = 0; i < n && equal; i++)
    equal = src[3 * i] == src[3 * i + 1] && src[3 * i] == src[3 * i + 2];
  for (size_t i = 0; i < n; i++) {
    const float *p = src + 3 * i;
    grey[i] = equal ? p[0] : (float)(0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]);
  }
}

/* Fills page from buf (h, w, nc). For nc == 1 the page takes over buf (*buf = NULL). */
static sd_status page_from_buffer(sd_image *page, int w, int h, int nc, float **buf) {
  size_t n = (size_t)w * (size_t)h;
  page->width = w;
  page->height = h;
  page->page_note[0] = '\0';
  if (nc == 1) {
    page->pixels = *buf;
    *buf = NULL;
    return SD_OK;
  }
  page->pixels = sd_malloc(n, sizeof *page->pixels, "grey image");
  if (!page->pixels)
    return SD_ERR_NOMEM;
  to_grey(*buf, n, nc, page->pixels);
  return SD_OK;
}

void sd_images_free(sd_image *pages, int npages) {
  if (!pages)
    return;
  for (int i = 0; i < npages; i++)
    free(pages[i].pixels);
  free(pages);
}

/* ---- TIFF ----------------------------------------------------------------------------------- */

/* Last libtiff error of one open file (libtiff calls the handlers with a pointer to it). */
typedef struct tiff_log {
  char last[320];
  int nerrors;
} tiff_log;

static void tiff_log_add(tiff_log *log, const char *module, const char *fmt, va_list ap) {
  char text[256];
  vsnprintf(text, sizeof text, fmt, ap);
  snprintf(log->last, sizeof log->last, "%s%s%s", module ? module : "", module ? ": " : "", text);
  log->nerrors++;
}

#if IMG_TIFF_PER_HANDLE
static int tiff_on_error(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap) {
  (void)tif;
  tiff_log_add(user, module, fmt, ap);
  return 1; /* handled: do not call the process-wide (stderr) handler */
}

static int tiff_on_warning(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap) {
  (void)tif, (void)user, (void)module, (void)fmt, (void)ap;
  return 1; /* warnings (unknown private tags ...) are expected and silenced */
}
#else
/* libtiff < 4.5: the process-wide handlers are swapped in for the duration of one read, and
 * this points to the log of that read. Not thread-safe (neither is libtiff's global state). */
static tiff_log *tiff_legacy_log;

static void tiff_legacy_on_error(thandle_t h, const char *module, const char *fmt, va_list ap) {
  (void)h;
  if (tiff_legacy_log)
    tiff_log_add(tiff_legacy_log, module, fmt, ap);
}

static void tiff_legacy_on_warning(thandle_t h, const char *module, const char *fmt, va_list ap) {
  (void)h, (void)module, (void)fmt, (void)ap;
}
#endif

/* One open TIFF with its error log. Do not copy (libtiff keeps a pointer to log). */
typedef struct tiff_file {
  TIFF *tif;
  tiff_log log;
#if !IMG_TIFF_PER_HANDLE
  TIFFErrorHandler old_error, old_warning;
  TIFFErrorHandlerExt old_error_ext, old_warning_ext;
#endif
} tiff_file;

static const char *tiff_reason(const tiff_file *tf) {
  return tf->log.last[0] ? tf->log.last : "libtiff gave no reason";
}

static void tiff_close(tiff_file *tf) {
  if (tf->tif)
    TIFFClose(tf->tif);
  tf->tif = NULL;
#if !IMG_TIFF_PER_HANDLE
  TIFFSetErrorHandler(tf->old_error);
  TIFFSetWarningHandler(tf->old_warning);
  TIFFSetErrorHandlerExt(tf->old_error_ext);
  TIFFSetWarningHandlerExt(tf->old_warning_ext);
  tiff_legacy_log = NULL;
#endif
}

static sd_status tiff_open(const char *path, tiff_file *tf) {
  memset(tf, 0, sizeof *tf);
#if IMG_TIFF_PER_HANDLE
  TIFFOpenOptions *opts = TIFFOpenOptionsAlloc();
  if (!opts)
    return SD_ERROR(SD_ERR_NOMEM, "%s: out of memory opening TIFF", path);
  TIFFOpenOptionsSetErrorHandlerExtR(opts, tiff_on_error, &tf->log);
  TIFFOpenOptionsSetWarningHandlerExtR(opts, tiff_on_warning, &tf->log);
  tf->tif = TIFFOpenExt(path, "r", opts);
  TIFFOpenOptionsFree(opts);
#else
  tf->old_error = TIFFSetErrorHandler(NULL);
  tf->old_warning = TIFFSetWarningHandler(NULL);
  tf->old_error_ext = TIFFSetErrorHandlerExt(tiff_legacy_on_error);
  tf->old_warning_ext = TIFFSetWarningHandlerExt(tiff_legacy_on_warning);
  tiff_legacy_log = &tf->log;
  tf->tif = TIFFOpen(path, "r");
#endif
  if (!tf->tif) {
    sd_status st = SD_ERROR(SD_ERR_FORMAT,
                            "%s: cannot read TIFF header or first directory (%s); "
                            "the file is corrupt or truncated",
                            path, tiff_reason(tf));
    tiff_close(tf);
    return st;
  }
  return SD_OK;
}

typedef enum tiff_sample {
  TIFF_SAMPLE_U1,
  TIFF_SAMPLE_U2,
  TIFF_SAMPLE_U4,
  TIFF_SAMPLE_U8,
  TIFF_SAMPLE_U16,
  TIFF_SAMPLE_U32,
  TIFF_SAMPLE_U64,
  TIFF_SAMPLE_I8,
  TIFF_SAMPLE_I16,
  TIFF_SAMPLE_I32,
  TIFF_SAMPLE_I64,
  TIFF_SAMPLE_F16,
  TIFF_SAMPLE_F32,
  TIFF_SAMPLE_F64
} tiff_sample;

/* What one TIFF directory holds and how we decode it. */
typedef struct tiff_layout {
  uint32_t w, h;
  uint16_t spp, bps, format, planar, photometric;
  tiff_sample sample;
  int nc;        /* channels we keep: 1 (grey) or 3 (RGB) */
  int invert;    /* MinIsWhite: value = maxval - value */
  double maxval; /* 2^bps - 1 for unsigned samples */
} tiff_layout;

static double half_to_double(uint16_t v) {
  int sign = (v >> 15) & 1, e = (v >> 10) & 0x1f, m = v & 0x3ff;
  double x;
  if (e == 0)
    x = ldexp((double)m, -24);
  else if (e == 31)
    x = m ? NAN : INFINITY;
  else
    x = ldexp((double)(m | 0x400), e - 25);
  return sign ? -x : x;
}

/* Sample k of a decoded row (libtiff has already put multi-byte samples in host byte order). */
static double tiff_sample_at(const unsigned char *row, size_t k, tiff_sample s) {
  switch (s) {
  case TIFF_SAMPLE_U1: return (row[k >> 3] >> (7 - (k & 7))) & 1;
  case TIFF_SAMPLE_U2: return (row[k >> 2] >> (6 - 2 * (k & 3))) & 3;
  case TIFF_SAMPLE_U4: return (row[k >> 1] >> (4 - 4 * (k & 1))) & 15;
  case TIFF_SAMPLE_U8: return row[k];
  case TIFF_SAMPLE_I8: return (int8_t)row[k];
  case TIFF_SAMPLE_U16: {
    uint16_t v;
    memcpy(&v, row + 2 * k, 2);
    return v;
  }
  case TIFF_SAMPLE_I16: {
    int16_t v;
    memcpy(&v, row + 2 * k, 2);
    return v;
  }
  case TIFF_SAMPLE_F16: {
    uint16_t v;
    memcpy(&v, row + 2 * k, 2);
    return half_to_double(v);
  }
  case TIFF_SAMPLE_U32: {
    uint32_t v;
    memcpy(&v, row + 4 * k, 4);
    return v;
  }
  case TIFF_SAMPLE_I32: {
    int32_t v;
    memcpy(&v, row + 4 * k, 4);
    return v;
  }
  case TIFF_SAMPLE_F32: {
    float v;
    memcpy(&v, row + 4 * k, 4);
    return v;
  }
  case TIFF_SAMPLE_U64: {
    uint64_t v;
    memcpy(&v, row + 8 * k, 8);
    return (double)v;
  }
  case TIFF_SAMPLE_I64: {
    int64_t v;
    memcpy(&v, row + 8 * k, 8);
    return (double)v;
  }
  case TIFF_SAMPLE_F64: {
    double v;
    memcpy(&v, row + 8 * k, 8);
    return v;
  }
  }
  return 0.0;
}

static const char *tiff_format_name(uint16_t f) {
  switch (f) {
  case SAMPLEFORMAT_UINT: return "unsigned integer";
  case SAMPLEFORMAT_INT: return "signed integer";
  case SAMPLEFORMAT_IEEEFP: return "IEEE float";
  case SAMPLEFORMAT_VOID: return "untyped";
  case SAMPLEFORMAT_COMPLEXINT: return "complex integer";
  case SAMPLEFORMAT_COMPLEXIEEEFP: return "complex float";
  }
  return "unknown";
}

/* Reads and checks the current directory's layout; for JPEG-compressed YCbCr it asks libtiff
 * to convert to RGB. where is "" or "page 2 of 3: ". */
static sd_status tiff_layout_read(const char *path, const char *where, TIFF *tif, tiff_layout *L) {
  memset(L, 0, sizeof *L);
  uint16_t compression = COMPRESSION_NONE;
  if (!TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &L->w) ||
      !TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &L->h))
    return SD_ERROR(SD_ERR_FORMAT, "%s: %sTIFF directory lacks ImageWidth/ImageLength", path,
                    where);
  SD_CHECK(check_size(path, where, L->w, L->h));
  TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &L->spp);
  TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &L->bps);
  TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLEFORMAT, &L->format);
  TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &L->planar);
  TIFFGetFieldDefaulted(tif, TIFFTAG_COMPRESSION, &compression);
  if (!TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &L->photometric))
    L->photometric = L->spp >= 3 ? PHOTOMETRIC_RGB : PHOTOMETRIC_MINISBLACK;
  if (L->spp == 0)
    return SD_ERROR(SD_ERR_FORMAT, "%s: %sSamplesPerPixel is 0; expected 1 or more", path, where);

  if (!TIFFIsCODECConfigured(compression)) {
    const TIFFCodec *c = TIFFFindCODEC(compression);
    return SD_ERROR(SD_ERR_FORMAT,
                    "%s: %sTIFF compression %u (%s) is not supported by this libtiff build; "
                    "expected e.g. none, LZW, Deflate, PackBits or JPEG",
                    path, where, (unsigned)compression, c ? c->name : "unknown scheme");
  }

  switch (L->photometric) {
  case PHOTOMETRIC_MINISBLACK: L->nc = 1; break;
  case PHOTOMETRIC_MINISWHITE:
    L->nc = 1;
    L->invert = 1;
    break;
  case PHOTOMETRIC_RGB: L->nc = 3; break;
  case PHOTOMETRIC_YCBCR:
    if (compression != COMPRESSION_JPEG)
      return SD_ERROR(SD_ERR_FORMAT,
                      "%s: %sYCbCr TIFF without JPEG compression is not supported; expected grey "
                      "or RGB samples",
                      path, where);
    /* libtiff's JPEG codec upsamples and converts to 8-bit RGB for us */
    if (!TIFFSetField(tif, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB))
      return SD_ERROR(SD_ERR_FORMAT, "%s: %scannot convert JPEG YCbCr data to RGB", path, where);
    L->nc = 3;
    L->spp = 3;
    L->bps = 8;
    L->format = SAMPLEFORMAT_UINT;
    break;
  default:
    return SD_ERROR(SD_ERR_FORMAT,
                    "%s: %sTIFF photometric interpretation %u (palette, CMYK, Lab, ...) is not "
                    "supported; expected grey (MinIsBlack/MinIsWhite), RGB or JPEG YCbCr",
                    path, where, (unsigned)L->photometric);
  }
  if (L->nc == 3 && L->spp < 3)
    return SD_ERROR(SD_ERR_FORMAT, "%s: %sRGB TIFF with %u sample(s) per pixel; expected 3 or more",
                    path, where, (unsigned)L->spp);

  uint16_t f = L->format == SAMPLEFORMAT_VOID ? SAMPLEFORMAT_UINT : L->format;
  int ok = 1;
  if (f == SAMPLEFORMAT_UINT) {
    switch (L->bps) {
    case 1: L->sample = TIFF_SAMPLE_U1; break;
    case 2: L->sample = TIFF_SAMPLE_U2; break;
    case 4: L->sample = TIFF_SAMPLE_U4; break;
    case 8: L->sample = TIFF_SAMPLE_U8; break;
    case 16: L->sample = TIFF_SAMPLE_U16; break;
    case 32: L->sample = TIFF_SAMPLE_U32; break;
    case 64: L->sample = TIFF_SAMPLE_U64; break;
    default: ok = 0;
    }
    L->maxval = ldexp(1.0, L->bps) - 1.0;
  } else if (f == SAMPLEFORMAT_INT) {
    switch (L->bps) {
    case 8: L->sample = TIFF_SAMPLE_I8; break;
    case 16: L->sample = TIFF_SAMPLE_I16; break;
    case 32: L->sample = TIFF_SAMPLE_I32; break;
    case 64: L->sample = TIFF_SAMPLE_I64; break;
    default: ok = 0;
    }
  } else if (f == SAMPLEFORMAT_IEEEFP) {
    switch (L->bps) {
    case 16: L->sample = TIFF_SAMPLE_F16; break;
    case 32: L->sample = TIFF_SAMPLE_F32; break;
    case 64: L->sample = TIFF_SAMPLE_F64; break;
    default: ok = 0;
    }
  } else {
    ok = 0;
  }
  if (!ok)
    return SD_ERROR(SD_ERR_FORMAT,
                    "%s: %s%u-bit %s TIFF samples are not supported; expected 1/2/4/8/16/32/64-bit "
                    "unsigned, 8/16/32/64-bit signed or 16/32/64-bit float",
                    path, where, (unsigned)L->bps, tiff_format_name(L->format));
  if (L->invert && f != SAMPLEFORMAT_UINT)
    return SD_ERROR(SD_ERR_FORMAT,
                    "%s: %sMinIsWhite with %s samples is not supported; expected unsigned integers",
                    path, where, tiff_format_name(L->format));
  if (L->planar != PLANARCONFIG_CONTIG && L->planar != PLANARCONFIG_SEPARATE)
    return SD_ERROR(SD_ERR_FORMAT, "%s: %sTIFF PlanarConfiguration %u; expected 1 or 2", path,
                    where, (unsigned)L->planar);
  return SD_OK;
}

/* Copies nx pixels of one decoded row into dst row (w, nc) starting at column x0. Contiguous
 * rows hold spp samples per pixel (we keep the first nc); a separate plane holds channel c. */
static void tiff_scatter_row(const tiff_layout *L, const unsigned char *row, uint32_t x0,
                             uint32_t nx, int plane, float *dst_row) {
  const int nc = L->nc;
  if (L->planar == PLANARCONFIG_CONTIG) {
    for (uint32_t i = 0; i < nx; i++)
      for (int c = 0; c < nc; c++) {
        double v = tiff_sample_at(row, (size_t)i * L->spp + (size_t)c, L->sample);
        dst_row[(size_t)(x0 + i) * nc + c] = (float)(L->invert ? L->maxval - v : v);
      }
  } else {
    for (uint32_t i = 0; i < nx; i++) {
      double v = tiff_sample_at(row, i, L->sample);
      dst_row[(size_t)(x0 + i) * nc + plane] = (float)(L->invert ? L->maxval - v : v);
    }
  }
}

/* Decodes the current directory into dst (h, w, nc) with TIFFReadEncodedStrip/Tile, so libtiff
 * undoes compression, predictors, fill order and byte order. */
static sd_status tiff_decode(const char *path, const char *where, tiff_file *tf,
                             const tiff_layout *L, float *dst) {
  TIFF *tif = tf->tif;
  const int nplanes = L->planar == PLANARCONFIG_SEPARATE ? L->nc : 1;
  const size_t dst_row = (size_t)L->w * (size_t)L->nc;
  sd_status st = SD_OK;
  unsigned char *buf = NULL;
  if (TIFFIsTiled(tif)) {
    uint32_t tw = 0, th = 0;
    TIFFGetField(tif, TIFFTAG_TILEWIDTH, &tw);
    TIFFGetField(tif, TIFFTAG_TILELENGTH, &th);
    uint64_t rowbytes = TIFFTileRowSize64(tif), tilebytes = TIFFTileSize64(tif);
    if (tw == 0 || th == 0 || rowbytes == 0 || tilebytes < (uint64_t)th * rowbytes ||
        tilebytes > (uint64_t)INT32_MAX)
      return SD_ERROR(SD_ERR_FORMAT, "%s: %sbad TIFF tile layout (%u x %u tiles, %llu bytes each)",
                      path, where, (unsigned)tw, (unsigned)th, (unsigned long long)tilebytes);
    SD_ALLOC_GOTO(st, buf, (size_t)tilebytes, done);
    for (int p = 0; p < nplanes; p++)
      for (uint32_t ty = 0; ty < L->h; ty += th)
        for (uint32_t tx = 0; tx < L->w; tx += tw) {
          uint32_t tile = TIFFComputeTile(tif, tx, ty, 0, (uint16_t)p);
          tmsize_t got = TIFFReadEncodedTile(tif, tile, buf, (tmsize_t)tilebytes);
          if (got < 0 || (uint64_t)got < tilebytes) {
            st = SD_ERROR(SD_ERR_FORMAT,
                          "%s: %scannot decode TIFF tile %u at (x %u, y %u) (%s); the file is "
                          "truncated or corrupt",
                          path, where, (unsigned)tile, (unsigned)tx, (unsigned)ty,
                          got < 0 ? tiff_reason(tf) : "short tile");
            goto done;
          }
          uint32_t nx = L->w - tx < tw ? L->w - tx : tw, ny = L->h - ty < th ? L->h - ty : th;
          for (uint32_t r = 0; r < ny; r++)
            tiff_scatter_row(L, buf + (size_t)r * rowbytes, tx, nx, p,
                             dst + (size_t)(ty + r) * dst_row);
        }
  } else {
    uint32_t rps = 0;
    TIFFGetFieldDefaulted(tif, TIFFTAG_ROWSPERSTRIP, &rps);
    if (rps == 0 || rps > L->h)
      rps = L->h;
    uint64_t rowbytes = TIFFScanlineSize64(tif), stripbytes = TIFFStripSize64(tif);
    uint32_t per_plane = (L->h - 1) / rps + 1, nstrips = TIFFNumberOfStrips(tif);
    if (rowbytes == 0 || stripbytes == 0 || stripbytes > (uint64_t)INT32_MAX ||
        nstrips < per_plane * (uint32_t)nplanes)
      return SD_ERROR(SD_ERR_FORMAT,
                      "%s: %sbad TIFF strip layout (%u strips of %u rows, %llu bytes each)", path,
                      where, (unsigned)nstrips, (unsigned)rps, (unsigned long long)stripbytes);
    SD_ALLOC_GOTO(st, buf, (size_t)stripbytes, done);
    for (int p = 0; p < nplanes; p++)
      for (uint32_t s = 0; s < per_plane; s++) {
        uint32_t y0 = s * rps, ny = L->h - y0 < rps ? L->h - y0 : rps;
        uint32_t strip = (uint32_t)p * per_plane + s;
        tmsize_t got = TIFFReadEncodedStrip(tif, strip, buf, (tmsize_t)stripbytes);
        if (got < 0 || (uint64_t)got < (uint64_t)ny * rowbytes) {
          st = SD_ERROR(SD_ERR_FORMAT,
                        "%s: %scannot decode TIFF strip %u (rows %u..%u) (%s); the file is "
                        "truncated or corrupt",
                        path, where, (unsigned)strip, (unsigned)y0, (unsigned)(y0 + ny - 1),
                        got < 0 ? tiff_reason(tf) : "short strip");
          goto done;
        }
        for (uint32_t r = 0; r < ny; r++)
          tiff_scatter_row(L, buf + (size_t)r * rowbytes, 0, L->w, p,
                           dst + (size_t)(y0 + r) * dst_row);
      }
  }
done:
  free(buf);
  return st;
}

static sd_status tiff_page_read(const char *path, int index, int npages, tiff_file *tf,
                                sd_image *page) {
  char where[48] = "";
  if (npages > 1)
    snprintf(where, sizeof where, "page %d of %d: ", index + 1, npages);
  tiff_layout L;
  SD_CHECK(tiff_layout_read(path, where, tf->tif, &L));
  sd_status st = SD_OK;
  float *buf = NULL;
  SD_ALLOC_GOTO(st, buf, (size_t)L.w * L.h * (size_t)L.nc, done);
  SD_CHECK_GOTO(st, tiff_decode(path, where, tf, &L, buf), done);
  SD_CHECK_GOTO(st, page_from_buffer(page, (int)L.w, (int)L.h, L.nc, &buf), done);
  if (npages > 1)
    snprintf(page->page_note, sizeof page->page_note, "page %d", index + 1);
done:
  free(buf);
  return st;
}

/* The number of directories, checked to be in 1..INT_MAX. libtiff stops counting at a
 * directory link it cannot follow (a truncated multi-page file) and only logs an error: that
 * error makes the count fail, so a damaged file never reads as fewer pages. */
static sd_status tiff_count_pages(const char *path, tiff_file *tf, int *npages) {
  int errors_before = tf->log.nerrors;
  uint64_t n = (uint64_t)TIFFNumberOfDirectories(tf->tif);
  if (n == 0 || n > INT_MAX || tf->log.nerrors > errors_before)
    return SD_ERROR(SD_ERR_FORMAT,
                    "%s: cannot follow the chain of TIFF directories (pages) after %llu (%s); the "
                    "file is truncated or corrupt",
                    path, (unsigned long long)n, tiff_reason(tf));
  *npages = (int)n;
  return SD_OK;
}

static sd_status tiff_read_all(const char *path, sd_image **pages_out, int *npages_out) {
  tiff_file tf;
  SD_CHECK(tiff_open(path, &tf));
  sd_status st = SD_OK;
  sd_image *pages = NULL;
  int n = 0;
  SD_CHECK_GOTO(st, tiff_count_pages(path, &tf, &n), fail);
  pages = sd_calloc((size_t)n, sizeof *pages, "TIFF pages");
  if (!pages) {
    st = SD_ERR_NOMEM;
    goto fail;
  }
  for (int i = 0; i < n; i++) {
    if (i > 0 && !TIFFReadDirectory(tf.tif)) {
      st = SD_ERROR(SD_ERR_FORMAT, "%s: cannot read the TIFF directory of page %d of %d (%s)", path,
                    i + 1, n, tiff_reason(&tf));
      goto fail;
    }
    SD_CHECK_GOTO(st, tiff_page_read(path, i, n, &tf, &pages[i]), fail);
  }
  tiff_close(&tf);
  *pages_out = pages;
  *npages_out = n;
  return SD_OK;
fail:
  sd_images_free(pages, n);
  tiff_close(&tf);
  return st;
}

static sd_status tiff_probe(const char *path, int *npages, int *width, int *height) {
  tiff_file tf;
  SD_CHECK(tiff_open(path, &tf));
  sd_status st = SD_OK;
  uint32_t w = 0, h = 0;
  int n = 0;
  if (!TIFFGetField(tf.tif, TIFFTAG_IMAGEWIDTH, &w) ||
      !TIFFGetField(tf.tif, TIFFTAG_IMAGELENGTH, &h)) {
    st = SD_ERROR(SD_ERR_FORMAT, "%s: TIFF directory lacks ImageWidth/ImageLength", path);
    goto done;
  }
  SD_CHECK_GOTO(st, check_size(path, "", w, h), done);
  SD_CHECK_GOTO(st, tiff_count_pages(path, &tf, &n), done);
  *npages = n;
  *width = (int)w;
  *height = (int)h;
done:
  tiff_close(&tf);
  return st;
}

/* ---- JPEG ----------------------------------------------------------------------------------- */

typedef struct jpeg_fail {
  struct jpeg_error_mgr pub; /* first member: libjpeg sees only this */
  jmp_buf jump;
  char msg[JMSG_LENGTH_MAX];
} jpeg_fail;

/* State of one JPEG decode, owned by the caller of jpeg_run (see the file comment). */
typedef struct jpeg_job {
  const char *path;
  FILE *fp;
  struct jpeg_decompress_struct cinfo;
  jpeg_fail fail;
  int created;
  unsigned char *row; /* (w * nc) one decoded scanline */
  float *buf;         /* (h, w, nc) */
  int w, h, nc;
} jpeg_job;

static void jpeg_on_error(j_common_ptr cinfo) {
  jpeg_fail *f = (jpeg_fail *)cinfo->err;
  (*cinfo->err->format_message)(cinfo, f->msg);
  longjmp(f->jump, 1);
}

/* Warnings that mean the pixels are wrong (libjpeg would fill in grey and carry on). */
static int jpeg_warning_is_fatal(int code) {
  switch (code) {
  case JWRN_JPEG_EOF:
  case JWRN_HIT_MARKER:
  case JWRN_HUFF_BAD_CODE:
#if JPEG_LIB_VERSION >= 70 || defined(C_ARITH_CODING_SUPPORTED) || defined(D_ARITH_CODING_SUPPORTED)
  case JWRN_ARITH_BAD_CODE: /* declared only in these builds (see jerror.h) */
#endif
  case JWRN_MUST_RESYNC:
  case JWRN_NOT_SEQUENTIAL:
  case JWRN_BOGUS_PROGRESSION: return 1;
  default: return 0;
  }
}

static void jpeg_on_message(j_common_ptr cinfo, int level) {
  if (level >= 0)
    return; /* trace messages */
  cinfo->err->num_warnings++;
  if (jpeg_warning_is_fatal(cinfo->err->msg_code))
    jpeg_on_error(cinfo);
  /* other warnings (extraneous bytes between markers, unknown JFIF revision) are silenced */
}

static void jpeg_on_output(j_common_ptr cinfo) {
  (void)cinfo;
}

static sd_status jpeg_run(jpeg_job *job, int header_only) {
  job->cinfo.err = jpeg_std_error(&job->fail.pub);
  job->fail.pub.error_exit = jpeg_on_error;
  job->fail.pub.emit_message = jpeg_on_message;
  job->fail.pub.output_message = jpeg_on_output;
  if (setjmp(job->fail.jump))
    return SD_ERROR(SD_ERR_FORMAT, "%s: corrupt or truncated JPEG (libjpeg: %s)", job->path,
                    job->fail.msg);
  jpeg_create_decompress(&job->cinfo);
  job->created = 1;
  jpeg_stdio_src(&job->cinfo, job->fp);
  jpeg_read_header(&job->cinfo, TRUE);
  job->w = (int)job->cinfo.image_width;
  job->h = (int)job->cinfo.image_height;
  SD_CHECK(check_size(job->path, "", job->cinfo.image_width, job->cinfo.image_height));
  if (header_only)
    return SD_OK;
  if (job->cinfo.data_precision != 8)
    return SD_ERROR(SD_ERR_FORMAT, "%s: %d-bit JPEG is not supported; expected 8-bit samples",
                    job->path, job->cinfo.data_precision);
  switch (job->cinfo.jpeg_color_space) {
  case JCS_GRAYSCALE: job->cinfo.out_color_space = JCS_GRAYSCALE; break;
  case JCS_YCbCr:
  case JCS_RGB: job->cinfo.out_color_space = JCS_RGB; break;
  default:
    return SD_ERROR(
        SD_ERR_FORMAT,
        "%s: JPEG colour space %d (CMYK/YCCK) is not supported; expected grey or colour", job->path,
        (int)job->cinfo.jpeg_color_space);
  }
  jpeg_start_decompress(&job->cinfo);
  job->nc = job->cinfo.output_components;
  if (job->nc != 1 && job->nc != 3)
    return SD_ERROR(SD_ERR_FORMAT, "%s: JPEG decodes to %d components; expected 1 or 3", job->path,
                    job->nc);
  size_t rowlen = (size_t)job->w * (size_t)job->nc;
  job->row = sd_malloc(rowlen, 1, "JPEG scanline");
  if (!job->row)
    return SD_ERR_NOMEM;
  job->buf = sd_malloc(rowlen * (size_t)job->h, sizeof *job->buf, "JPEG pixels");
  if (!job->buf)
    return SD_ERR_NOMEM;
  while (job->cinfo.output_scanline < job->cinfo.output_height) {
    size_t y = job->cinfo.output_scanline;
    JSAMPROW rows[1] = {job->row};
    if (jpeg_read_scanlines(&job->cinfo, rows, 1) != 1)
      return SD_ERROR(SD_ERR_FORMAT, "%s: JPEG scanline %zu could not be decoded", job->path, y);
    for (size_t i = 0; i < rowlen; i++)
      job->buf[y * rowlen + i] = job->row[i];
  }
  jpeg_finish_decompress(&job->cinfo); /* reads to the end marker: a truncated file fails here */
  return SD_OK;
}

static void jpeg_job_free(jpeg_job *job) {
  if (job->created)
    jpeg_destroy_decompress(&job->cinfo);
  free(job->row);
  free(job->buf);
}

/* ---- PNG ------------------------------------------------------------------------------------ */

/* State of one PNG decode, owned by the caller of png_run (see the file comment). */
typedef struct png_job {
  const char *path;
  FILE *fp;
  png_structp png;
  png_infop info;
  char msg[256];
  unsigned char *data; /* (h, rowbytes) decoded rows */
  png_bytep *rows;     /* (h) pointers into data */
  float *buf;          /* (h, w, nc) */
  int w, h, nc;
} png_job;

static void png_on_error(png_structp png, png_const_charp msg) {
  png_job *job = png_get_error_ptr(png);
  snprintf(job->msg, sizeof job->msg, "%s", msg ? msg : "unknown error");
  png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {
  (void)png, (void)msg; /* benign (bad ancillary chunk, ...); fatal problems are errors */
}

static sd_status png_run(png_job *job, int header_only) {
  job->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, job, png_on_error, png_on_warning);
  if (!job->png)
    return SD_ERROR(SD_ERR_NOMEM, "%s: cannot create a libpng reader", job->path);
  job->info = png_create_info_struct(job->png);
  if (!job->info)
    return SD_ERROR(SD_ERR_NOMEM, "%s: cannot create a libpng reader", job->path);
  if (setjmp(png_jmpbuf(job->png)))
    return SD_ERROR(SD_ERR_FORMAT, "%s: corrupt or truncated PNG (libpng: %s)", job->path,
                    job->msg);
  png_init_io(job->png, job->fp);
  png_read_info(job->png, job->info);
  png_uint_32 w = 0, h = 0;
  int depth = 0, ctype = 0, interlace = 0;
  png_get_IHDR(job->png, job->info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
  SD_CHECK(check_size(job->path, "", w, h));
  job->w = (int)w;
  job->h = (int)h;
  if (header_only)
    return SD_OK;

  if (ctype == PNG_COLOR_TYPE_PALETTE)
    png_set_palette_to_rgb(job->png); /* 8-bit RGB(A) */
  else if (depth < 8)
    png_set_packing(job->png); /* one byte per pixel, raw 0..2^depth-1 */
  if (interlace != PNG_INTERLACE_NONE)
    png_set_interlace_handling(job->png);
  png_read_update_info(job->png, job->info);
  int channels = png_get_channels(job->png, job->info);
  int depth_out = png_get_bit_depth(job->png, job->info);
  int ctype_out = png_get_color_type(job->png, job->info);
  size_t rowbytes = png_get_rowbytes(job->png, job->info);
  job->nc = (ctype_out & PNG_COLOR_MASK_COLOR) ? 3 : 1;
  if ((depth_out != 8 && depth_out != 16) || channels < job->nc ||
      rowbytes < (size_t)w * (size_t)channels * (size_t)(depth_out / 8))
    return SD_ERROR(SD_ERR_FORMAT,
                    "%s: unexpected PNG layout after expansion (%d-bit, %d channels)", job->path,
                    depth_out, channels);

  job->data = sd_malloc((size_t)h, rowbytes, "PNG rows");
  if (!job->data)
    return SD_ERR_NOMEM;
  job->rows = sd_malloc((size_t)h, sizeof *job->rows, "PNG row pointers");
  if (!job->rows)
    return SD_ERR_NOMEM;
  for (size_t y = 0; y < h; y++)
    job->rows[y] = job->data + y * rowbytes;
  png_read_image(job->png, job->rows);
  png_read_end(job->png, NULL); /* checks the chunks after the image: a truncated file fails */

  job->buf = sd_malloc((size_t)w * h * (size_t)job->nc, sizeof *job->buf, "PNG pixels");
  if (!job->buf)
    return SD_ERR_NOMEM;
  for (size_t y = 0; y < h; y++) {
    const unsigned char *row = job->rows[y];
    float *out = job->buf + y * (size_t)w * (size_t)job->nc;
    for (size_t x = 0; x < w; x++)
      for (int c = 0; c < job->nc; c++) {
        size_t k = x * (size_t)channels + (size_t)c;
        out[x * (size_t)job->nc + (size_t)c] =
            depth_out == 16 ? (float)((row[2 * k] << 8) | row[2 * k + 1]) : (float)row[k];
      }
  }
  return SD_OK;
}

static void png_job_free(png_job *job) {
  if (job->png)
    png_destroy_read_struct(&job->png, job->info ? &job->info : NULL, NULL);
  free(job->data);
  free(job->rows);
  free(job->buf);
}

/* ---- public ------------------------------------------------------------------------------- */

/* One page from a decoded (h, w, nc) buffer (which it takes over or frees). */
static sd_status single_page(float **buf, int w, int h, int nc, sd_image **pages, int *npages) {
  sd_image *page = sd_calloc(1, sizeof *page, "image page");
  if (!page)
    return SD_ERR_NOMEM;
  sd_status st = page_from_buffer(page, w, h, nc, buf);
  if (st != SD_OK) {
    free(page);
    return st;
  }
  *pages = page;
  *npages = 1;
  return SD_OK;
}

sd_status sd_image_file_read(const char *path, sd_image **pages, int *npages) {
  if (pages)
    *pages = NULL;
  if (npages)
    *npages = 0;
  if (!path || !pages || !npages)
    return SD_ERROR(SD_ERR_ARG, "sd_image_file_read: path, pages and npages must not be NULL");
  FILE *fp = NULL;
  img_kind kind = IMG_KIND_UNKNOWN;
  SD_CHECK(sniff(path, &fp, &kind));
  sd_status st = SD_OK;
  if (kind == IMG_KIND_TIFF) {
    fclose(fp);
    SD_CHECK(tiff_read_all(path, pages, npages));
  } else if (kind == IMG_KIND_JPEG) {
    jpeg_job job;
    memset(&job, 0, sizeof job);
    job.path = path;
    job.fp = fp;
    st = jpeg_run(&job, 0);
    if (st == SD_OK)
      st = single_page(&job.buf, job.w, job.h, job.nc, pages, npages);
    jpeg_job_free(&job);
    fclose(fp);
    SD_CHECK(st);
  } else {
    png_job job;
    memset(&job, 0, sizeof job);
    job.path = path;
    job.fp = fp;
    st = png_run(&job, 0);
    if (st == SD_OK)
      st = single_page(&job.buf, job.w, job.h, job.nc, pages, npages);
    png_job_free(&job);
    fclose(fp);
    SD_CHECK(st);
  }
  return SD_OK;
}

sd_status sd_image_file_probe(const char *path, int *npages, int *width, int *height) {
  int n = 0, w = 0, h = 0;
  if (!path)
    return SD_ERROR(SD_ERR_ARG, "sd_image_file_probe: path must not be NULL");
  FILE *fp = NULL;
  img_kind kind = IMG_KIND_UNKNOWN;
  SD_CHECK(sniff(path, &fp, &kind));
  sd_status st = SD_OK;
  if (kind == IMG_KIND_TIFF) {
    fclose(fp);
    SD_CHECK(tiff_probe(path, &n, &w, &h));
  } else if (kind == IMG_KIND_JPEG) {
    jpeg_job job;
    memset(&job, 0, sizeof job);
    job.path = path;
    job.fp = fp;
    st = jpeg_run(&job, 1);
    n = 1, w = job.w, h = job.h;
    jpeg_job_free(&job);
    fclose(fp);
    SD_CHECK(st);
  } else {
    png_job job;
    memset(&job, 0, sizeof job);
    job.path = path;
    job.fp = fp;
    st = png_run(&job, 1);
    n = 1, w = job.w, h = job.h;
    png_job_free(&job);
    fclose(fp);
    SD_CHECK(st);
  }
  if (npages)
    *npages = n;
  if (width)
    *width = w;
  if (height)
    *height = h;
  return SD_OK;
}
