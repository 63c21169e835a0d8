/* split_nearcopy.c - near-copy groups: lattice-free residuals, their normalised
 * cross-correlation over integer offsets (by FFT), union-find. See split.h for the method.
 *
 * The FFTs are a small radix-2 complex transform (any other length falls back to a direct
 * DFT, used only for the per-image residual of odd-sized images), static here so the library
 * needs no FFT dependency. Complex arrays are interleaved (re, im) floats.
 */
#include "stemdefect/split.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stemdefect/image.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* images per block of precomputed spectra (two blocks are held at a time) */
#define NC_BLOCK 64

sd_nearcopy_params sd_nearcopy_params_default(void) {
  sd_nearcopy_params p;
  p.max_shift = 24;
  p.threshold = 0.5;
  p.min_overlap = 0.5;
  p.same_label_only = 1;
  p.peak_factor = 8.0;
  p.peak_radius = 2;
  p.low_radius = 2;
  p.whiten_radius = 2;
  return p;
}

/* ---- FFT ------------------------------------------------------------------------------- */

typedef struct fft_plan {
  int n;
  int pow2;
  float *cs;  /* (n, 2): cos, sin of 2 pi k / n */
  int *rev;   /* (n) bit reversal (pow2 only) */
  float *tmp; /* (n, 2) scratch for the direct DFT */
} fft_plan;

static void fft_plan_free(fft_plan *f) {
  free(f->cs);
  free(f->rev);
  free(f->tmp);
  memset(f, 0, sizeof *f);
}

static sd_status fft_plan_init(fft_plan *f, int n) {
  memset(f, 0, sizeof *f);
  f->n = n;
  f->pow2 = n > 0 && (n & (n - 1)) == 0;
  f->cs = sd_malloc((size_t)n * 2, sizeof *f->cs, "FFT twiddles");
  f->rev = sd_malloc((size_t)n, sizeof *f->rev, "FFT bit reversal");
  f->tmp = sd_malloc((size_t)n * 2, sizeof *f->tmp, "FFT scratch");
  if (!f->cs || !f->rev || !f->tmp) {
    fft_plan_free(f);
    return SD_ERR_NOMEM;
  }
  for (int k = 0; k < n; k++) {
    double a = 2.0 * M_PI * (double)k / (double)n;
    f->cs[2 * k] = (float)cos(a);
    f->cs[2 * k + 1] = (float)sin(a);
  }
  int bits = 0;
  while ((1 << bits) < n)
    bits++;
  for (int i = 0; i < n; i++) {
    int r = 0;
    for (int b = 0; b < bits; b++)
      if (i & (1 << b))
        r |= 1 << (bits - 1 - b);
    f->rev[i] = f->pow2 ? r : i;
  }
  return SD_OK;
}

/* In place, unnormalised: z[k] = sum_j z[j] exp(-+2 pi i jk/n) (sign - forward, + inverse). */
static void fft_run(const fft_plan *f, float *z, int inverse) {
  const int n = f->n;
  const float sgn = inverse ? 1.0f : -1.0f;
  if (!f->pow2) {
    for (int k = 0; k < n; k++) {
      double re = 0, im = 0;
      for (int j = 0; j < n; j++) {
        int t = (int)(((int64_t)j * k) % n);
        double c = f->cs[2 * t], s = sgn * f->cs[2 * t + 1];
        re += z[2 * j] * c - z[2 * j + 1] * s;
        im += z[2 * j] * s + z[2 * j + 1] * c;
      }
      f->tmp[2 * k] = (float)re;
      f->tmp[2 * k + 1] = (float)im;
    }
    memcpy(z, f->tmp, (size_t)n * 2 * sizeof *z);
    return;
  }
  for (int i = 0; i < n; i++) {
    int r = f->rev[i];
    if (i < r) {
      float t0 = z[2 * i], t1 = z[2 * i + 1];
      z[2 * i] = z[2 * r];
      z[2 * i + 1] = z[2 * r + 1];
      z[2 * r] = t0;
      z[2 * r + 1] = t1;
    }
  }
  /* first stage: twiddle 1 */
  for (int i = 0; i + 1 < n; i += 2) {
    float ar = z[2 * i], ai = z[2 * i + 1], br = z[2 * i + 2], bi = z[2 * i + 3];
    z[2 * i] = ar + br;
    z[2 * i + 1] = ai + bi;
    z[2 * i + 2] = ar - br;
    z[2 * i + 3] = ai - bi;
  }
  for (int len = 4; len <= n; len <<= 1) {
    const int half = len >> 1, step = n / len;
    for (int k = 0; k < half; k++) {
      const float wr = f->cs[2 * k * step], wi = sgn * f->cs[2 * k * step + 1];
      for (int i = k; i < n; i += len) {
        float *a = z + 2 * i, *b = z + 2 * (i + half);
        float tr = b[0] * wr - b[1] * wi, ti = b[0] * wi + b[1] * wr;
        b[0] = a[0] - tr;
        b[1] = a[1] - ti;
        a[0] += tr;
        a[1] += ti;
      }
    }
  }
}

/* 2-D transform of z (h, w) complex row-major, in place; col: (h, 2) scratch. */
static void fft2_run(const fft_plan *fh, const fft_plan *fw, float *z, float *col, int inverse) {
  const int h = fh->n, w = fw->n;
  for (int y = 0; y < h; y++)
    fft_run(fw, z + (size_t)2 * y * w, inverse);
  for (int x = 0; x < w; x++) {
    for (int y = 0; y < h; y++) {
      col[2 * y] = z[2 * ((size_t)y * w + x)];
      col[2 * y + 1] = z[2 * ((size_t)y * w + x) + 1];
    }
    fft_run(fh, col, inverse);
    for (int y = 0; y < h; y++) {
      z[2 * ((size_t)y * w + x)] = col[2 * y];
      z[2 * ((size_t)y * w + x) + 1] = col[2 * y + 1];
    }
  }
}

/* ---- context: plans and scratch for one image size ------------------------------------- */

typedef struct nc_ctx {
  sd_nearcopy_params p;
  int h, w;          /* image size */
  int sy, sx;        /* largest |dy|, |dx| */
  int py, px;        /* padded correlation size (powers of two) */
  double min_pixels; /* smallest overlap in pixels */
  fft_plan fh, fw, fpy, fpx;
  float *u;            /* (h, w) normalised image */
  float *zu;           /* (h, w, 2) its spectrum */
  float *zv;           /* (h, w, 2) boundary image spectrum */
  float *mag;          /* (h, w) |F| */
  float *scr;          /* (h*w) median scratch */
  unsigned char *mask; /* (h, w) 1 = removed frequency */
  float *col;          /* (max(h, w, py, px), 2) column scratch */
  float *zc;           /* (px, py, 2) correlation spectrum, transposed */
  float *row;          /* (px, 2) */
  float *corr;         /* (2, 2*sy+1, 2*sx+1) raw correlations of two pairs */
} nc_ctx;

static void nc_ctx_free(nc_ctx *c) {
  fft_plan_free(&c->fh);
  fft_plan_free(&c->fw);
  fft_plan_free(&c->fpy);
  fft_plan_free(&c->fpx);
  free(c->u);
  free(c->zu);
  free(c->zv);
  free(c->mag);
  free(c->scr);
  free(c->mask);
  free(c->col);
  free(c->zc);
  free(c->row);
  free(c->corr);
  memset(c, 0, sizeof *c);
}

static int next_pow2(int v) {
  int p = 1;
  while (p < v)
    p <<= 1;
  return p;
}

static sd_status check_params(const sd_nearcopy_params *p, int h, int w) {
  if (!p)
    return SD_ERROR(SD_ERR_ARG, "near-copy parameters are NULL");
  if (h < 2 || w < 2 || h > 4096 || w > 4096)
    return SD_ERROR(SD_ERR_ARG, "near-copy images must be 2..4096 pixels a side, got %dx%d", h, w);
  if (p->max_shift < 0)
    return SD_ERROR(SD_ERR_ARG, "near-copy max_shift must be >= 0, got %d", p->max_shift);
  if (!(p->min_overlap > 0 && p->min_overlap <= 1))
    return SD_ERROR(SD_ERR_ARG, "near-copy min_overlap must be in (0, 1], got %g", p->min_overlap);
  if (!(p->threshold > -1 && p->threshold <= 1))
    return SD_ERROR(SD_ERR_ARG, "near-copy threshold must be in (-1, 1], got %g", p->threshold);
  if (!(p->peak_factor > 0))
    return SD_ERROR(SD_ERR_ARG, "near-copy peak_factor must be > 0, got %g", p->peak_factor);
  if (p->peak_radius < 0 || p->peak_radius > 8)
    return SD_ERROR(SD_ERR_ARG, "near-copy peak_radius must be in 0..8, got %d", p->peak_radius);
  if (p->low_radius < 0)
    return SD_ERROR(SD_ERR_ARG, "near-copy low_radius must be >= 0, got %d", p->low_radius);
  if (p->whiten_radius < -1 || p->whiten_radius > 8)
    return SD_ERROR(SD_ERR_ARG, "near-copy whiten_radius must be in -1..8, got %d",
                    p->whiten_radius);
  return SD_OK;
}

static sd_status nc_ctx_init(nc_ctx *c, const sd_nearcopy_params *p, int h, int w) {
  memset(c, 0, sizeof *c);
  SD_CHECK(check_params(p, h, w));
  c->p = *p;
  c->h = h;
  c->w = w;
  c->sy = p->max_shift < h - 1 ? p->max_shift : h - 1;
  c->sx = p->max_shift < w - 1 ? p->max_shift : w - 1;
  c->py = next_pow2(h + c->sy);
  c->px = next_pow2(w + c->sx);
  c->min_pixels = p->min_overlap * h * w;
  sd_status st = SD_OK;
  SD_CHECK_GOTO(st, fft_plan_init(&c->fh, h), fail);
  SD_CHECK_GOTO(st, fft_plan_init(&c->fw, w), fail);
  SD_CHECK_GOTO(st, fft_plan_init(&c->fpy, c->py), fail);
  SD_CHECK_GOTO(st, fft_plan_init(&c->fpx, c->px), fail);
  size_t hw = (size_t)h * w;
  int m = h;
  if (w > m)
    m = w;
  if (c->py > m)
    m = c->py;
  if (c->px > m)
    m = c->px;
  SD_ALLOC_GOTO(st, c->u, hw, fail);
  SD_ALLOC_GOTO(st, c->zu, 2 * hw, fail);
  SD_ALLOC_GOTO(st, c->zv, 2 * hw, fail);
  SD_ALLOC_GOTO(st, c->mag, hw, fail);
  SD_ALLOC_GOTO(st, c->scr, hw, fail);
  SD_ALLOC_GOTO(st, c->mask, hw, fail);
  SD_ALLOC_GOTO(st, c->col, 2 * (size_t)m, fail);
  SD_ALLOC_GOTO(st, c->zc, 2 * (size_t)c->px * c->py, fail);
  SD_ALLOC_GOTO(st, c->row, 2 * (size_t)c->px, fail);
  SD_ALLOC_GOTO(st, c->corr, 2 * (size_t)(2 * c->sy + 1) * (2 * c->sx + 1), fail);
  return SD_OK;
fail:
  nc_ctx_free(c);
  return st;
}

/* ---- residual ---------------------------------------------------------------------------- */

static int signed_freq(int k, int n) {
  return k <= n / 2 ? k : k - n;
}

/* Residual of image (h, w) into res (h, w): see split.h. */
static sd_status nc_residual(nc_ctx *c, const float *image, float *res) {
  const int h = c->h, w = c->w;
  const size_t hw = (size_t)h * w;
  memcpy(c->u, image, hw * sizeof *c->u);
  SD_CHECK(sd_normalize_robust(c->u, hw, c->scr));

  /* spectrum of the image and of Moisan's boundary image */
  memset(c->zv, 0, 2 * hw * sizeof *c->zv);
  for (size_t i = 0; i < hw; i++) {
    c->zu[2 * i] = c->u[i];
    c->zu[2 * i + 1] = 0.0f;
  }
  for (int x = 0; x < w; x++) {
    float d = c->u[(size_t)(h - 1) * w + x] - c->u[x];
    c->zv[2 * x] += d;
    c->zv[2 * ((size_t)(h - 1) * w + x)] -= d;
  }
  for (int y = 0; y < h; y++) {
    float d = c->u[(size_t)y * w + w - 1] - c->u[(size_t)y * w];
    c->zv[2 * ((size_t)y * w)] += d;
    c->zv[2 * ((size_t)y * w + w - 1)] -= d;
  }
  fft2_run(&c->fh, &c->fw, c->zu, c->col, 0);
  fft2_run(&c->fh, &c->fw, c->zv, c->col, 0);

  /* periodic component P = U - V / (2 cos(2 pi q/h) + 2 cos(2 pi r/w) - 4), P(0) = U(0) */
  for (int q = 0; q < h; q++) {
    for (int r = 0; r < w; r++) {
      size_t i = (size_t)q * w + r;
      if (q == 0 && r == 0)
        continue;
      double den = 2.0 * cos(2.0 * M_PI * q / h) + 2.0 * cos(2.0 * M_PI * r / w) - 4.0;
      c->zu[2 * i] -= (float)(c->zv[2 * i] / den);
      c->zu[2 * i + 1] -= (float)(c->zv[2 * i + 1] / den);
    }
  }
  for (size_t i = 0; i < hw; i++)
    c->mag[i] = hypotf(c->zu[2 * i], c->zu[2 * i + 1]);
  float med = sd_median(c->mag, hw, c->scr);
  const float peak_min = (float)(c->p.peak_factor * med);

  /* mask: low frequencies and Bragg peaks with their neighbourhoods */
  const int R = c->p.peak_radius, L = c->p.low_radius;
  memset(c->mask, 0, hw);
  for (int q = 0; q < h; q++) {
    int fq = signed_freq(q, h);
    for (int r = 0; r < w; r++) {
      int fr = signed_freq(r, w);
      size_t i = (size_t)q * w + r;
      if (fq * fq + fr * fr <= L * L)
        c->mask[i] = 1;
      float m = c->mag[i];
      if (!(m > peak_min))
        continue;
      int is_max = 1;
      for (int a = -R; a <= R && is_max; a++)
        for (int b = -R; b <= R; b++) {
          size_t j = (size_t)((q + a + h) % h) * w + (size_t)((r + b + w) % w);
          if (c->mag[j] > m) {
            is_max = 0;
            break;
          }
        }
      if (!is_max)
        continue;
      for (int a = -R; a <= R; a++)
        for (int b = -R; b <= R; b++)
          c->mask[(size_t)((q + a + h) % h) * w + (size_t)((r + b + w) % w)] = 1;
    }
  }
  for (size_t i = 0; i < hw; i++)
    if (c->mask[i])
      c->zu[2 * i] = c->zu[2 * i + 1] = 0.0f;

  /* whitening: each kept frequency divided by the mean magnitude of the kept frequencies in
   * its (2 wr + 1)^2 neighbourhood, so structured noise (scan lines, correlated noise) and the
   * lattice's leftovers weigh no more than white noise */
  const int wr = c->p.whiten_radius;
  if (wr >= 0) {
    for (size_t i = 0; i < hw; i++)
      c->mag[i] = c->mask[i] ? 0.0f : c->mag[i];
    for (int q = 0; q < h; q++)
      for (int r = 0; r < w; r++) {
        size_t i = (size_t)q * w + r;
        c->scr[i] = 0.0f;
        if (c->mask[i])
          continue;
        double s = 0;
        int cnt = 0;
        for (int a = -wr; a <= wr; a++) {
          const float *mrow = c->mag + (size_t)((q + a + h) % h) * w;
          const unsigned char *krow = c->mask + (size_t)((q + a + h) % h) * w;
          for (int b = -wr; b <= wr; b++) {
            int j = (r + b + w) % w;
            if (krow[j])
              continue;
            s += mrow[j];
            cnt++;
          }
        }
        double m = s / cnt; /* cnt >= 1: bin i itself */
        c->scr[i] = m > 1e-30 ? (float)(1.0 / m) : 0.0f;
      }
    for (size_t i = 0; i < hw; i++) {
      c->zu[2 * i] *= c->scr[i];
      c->zu[2 * i + 1] *= c->scr[i];
    }
  }
  fft2_run(&c->fh, &c->fw, c->zu, c->col, 1);

  double sum = 0, sum2 = 0;
  for (size_t i = 0; i < hw; i++) {
    res[i] = c->zu[2 * i] / (float)hw;
    sum += res[i];
  }
  double mean = sum / (double)hw;
  for (size_t i = 0; i < hw; i++)
    sum2 += (res[i] - mean) * (res[i] - mean);
  double sd = sqrt(sum2 / (double)hw);
  float scale = sd > 1e-12 ? (float)(1.0 / sd) : 0.0f;
  for (size_t i = 0; i < hw; i++)
    res[i] = (float)((res[i] - mean) * scale);
  return SD_OK;
}

/* ---- blocks of precomputed spectra and integral images ---------------------------------- */

typedef struct nc_block {
  int count;
  int64_t idx[NC_BLOCK];
  float *spec;   /* (NC_BLOCK, px, py, 2): padded residual spectra, transposed [kx][ky] */
  double *integ; /* (NC_BLOCK, 2, h+1, w+1): integral images of r and r^2 */
} nc_block;

static sd_status nc_block_alloc(nc_block *b, const nc_ctx *c) {
  memset(b, 0, sizeof *b);
  b->spec = sd_malloc((size_t)NC_BLOCK * c->px * c->py * 2, sizeof *b->spec, "near-copy spectra");
  b->integ = sd_malloc((size_t)NC_BLOCK * 2 * (c->h + 1) * (c->w + 1), sizeof *b->integ,
                       "near-copy integral images");
  if (!b->spec || !b->integ) {
    free(b->spec);
    free(b->integ);
    b->spec = NULL;
    b->integ = NULL;
    return SD_ERR_NOMEM;
  }
  return SD_OK;
}

static void nc_block_free(nc_block *b) {
  free(b->spec);
  free(b->integ);
  b->spec = NULL;
  b->integ = NULL;
}

/* Fills slot s of b with the spectrum and integral images of residual r (h, w). */
static void nc_block_set(nc_ctx *c, nc_block *b, int s, const float *r) {
  const int h = c->h, w = c->w, py = c->py, px = c->px;
  float *spec = b->spec + (size_t)s * px * py * 2;
  memset(spec, 0, (size_t)px * py * 2 * sizeof *spec);
  /* rows: transform along x, store transposed [kx][y] */
  for (int y = 0; y < h; y++) {
    memset(c->row, 0, (size_t)px * 2 * sizeof *c->row);
    for (int x = 0; x < w; x++)
      c->row[2 * x] = r[(size_t)y * w + x];
    fft_run(&c->fpx, c->row, 0);
    for (int kx = 0; kx < px; kx++) {
      spec[2 * ((size_t)kx * py + y)] = c->row[2 * kx];
      spec[2 * ((size_t)kx * py + y) + 1] = c->row[2 * kx + 1];
    }
  }
  for (int kx = 0; kx < px; kx++)
    fft_run(&c->fpy, spec + (size_t)2 * kx * py, 0);

  const int W1 = w + 1;
  double *i1 = b->integ + (size_t)s * 2 * (h + 1) * W1, *i2 = i1 + (size_t)(h + 1) * W1;
  for (int x = 0; x <= w; x++)
    i1[x] = i2[x] = 0.0;
  for (int y = 0; y < h; y++) {
    double a1 = 0, a2 = 0;
    i1[(size_t)(y + 1) * W1] = i2[(size_t)(y + 1) * W1] = 0.0;
    for (int x = 0; x < w; x++) {
      double v = r[(size_t)y * w + x];
      a1 += v;
      a2 += v * v;
      i1[(size_t)(y + 1) * W1 + x + 1] = i1[(size_t)y * W1 + x + 1] + a1;
      i2[(size_t)(y + 1) * W1 + x + 1] = i2[(size_t)y * W1 + x + 1] + a2;
    }
  }
}

static double rect_sum(const double *I, int W1, int y0, int y1, int x0, int x1) {
  return I[(size_t)y1 * W1 + x1] - I[(size_t)y0 * W1 + x1] - I[(size_t)y1 * W1 + x0] +
         I[(size_t)y0 * W1 + x0];
}

/* Raw cross-correlations c_k(dy, dx) = sum a(y, x) b_k(y + dy, x + dx) of a with b_1 and b_2
 * (b2 may be NULL) for |dy| <= sy, |dx| <= sx, into c->corr (2, 2sy+1, 2sx+1). */
static void nc_correlate(nc_ctx *c, const float *sa, const float *sb1, const float *sb2) {
  const int py = c->py, px = c->px, sy = c->sy, sx = c->sx;
  const size_t np = (size_t)px * py;
  float *z = c->zc;
  /* Z = conj(A) (B1 + i B2): its inverse transform is c1 + i c2 */
  if (sb2) {
    for (size_t i = 0; i < np; i++) {
      float ar = sa[2 * i], ai = -sa[2 * i + 1];
      float tr = sb1[2 * i] - sb2[2 * i + 1], ti = sb1[2 * i + 1] + sb2[2 * i];
      z[2 * i] = ar * tr - ai * ti;
      z[2 * i + 1] = ar * ti + ai * tr;
    }
  } else {
    for (size_t i = 0; i < np; i++) {
      float ar = sa[2 * i], ai = -sa[2 * i + 1];
      float tr = sb1[2 * i], ti = sb1[2 * i + 1];
      z[2 * i] = ar * tr - ai * ti;
      z[2 * i + 1] = ar * ti + ai * tr;
    }
  }
  for (int kx = 0; kx < px; kx++)
    fft_run(&c->fpy, z + (size_t)2 * kx * py, 1);
  const float norm = 1.0f / (float)np;
  const int nx = 2 * sx + 1;
  const size_t plane = (size_t)(2 * sy + 1) * nx;
  for (int dy = -sy; dy <= sy; dy++) {
    int y = dy < 0 ? dy + py : dy;
    for (int kx = 0; kx < px; kx++) {
      c->row[2 * kx] = z[2 * ((size_t)kx * py + y)];
      c->row[2 * kx + 1] = z[2 * ((size_t)kx * py + y) + 1];
    }
    fft_run(&c->fpx, c->row, 1);
    for (int dx = -sx; dx <= sx; dx++) {
      int x = dx < 0 ? dx + px : dx;
      size_t o = (size_t)(dy + sy) * nx + (dx + sx);
      c->corr[o] = c->row[2 * x] * norm;
      c->corr[plane + o] = c->row[2 * x + 1] * norm;
    }
  }
}

/* Best NCC over the offsets from raw correlations craw (2sy+1, 2sx+1) and the integral images
 * of a and b. */
static double nc_best(const nc_ctx *c, const float *craw, const double *ia, const double *ib,
                      int *bdx, int *bdy) {
  const int h = c->h, w = c->w, W1 = w + 1, sy = c->sy, sx = c->sx, nx = 2 * sx + 1;
  const size_t isz = (size_t)(h + 1) * W1;
  double best = -1.0;
  int best_dx = 0, best_dy = 0;
  for (int dy = -sy; dy <= sy; dy++) {
    int ay0 = dy < 0 ? -dy : 0, ay1 = dy < 0 ? h : h - dy;
    int oh = ay1 - ay0;
    for (int dx = -sx; dx <= sx; dx++) {
      int ax0 = dx < 0 ? -dx : 0, ax1 = dx < 0 ? w : w - dx;
      double npx = (double)oh * (ax1 - ax0);
      if (npx < c->min_pixels || npx < 4)
        continue;
      double sa = rect_sum(ia, W1, ay0, ay1, ax0, ax1);
      double sa2 = rect_sum(ia + isz, W1, ay0, ay1, ax0, ax1);
      double sb = rect_sum(ib, W1, ay0 + dy, ay1 + dy, ax0 + dx, ax1 + dx);
      double sb2 = rect_sum(ib + isz, W1, ay0 + dy, ay1 + dy, ax0 + dx, ax1 + dx);
      double va = sa2 - sa * sa / npx, vb = sb2 - sb * sb / npx;
      if (!(va > 1e-9 * npx && vb > 1e-9 * npx))
        continue;
      double num = craw[(size_t)(dy + sy) * nx + (dx + sx)] - sa * sb / npx;
      double r = num / sqrt(va * vb);
      if (r > best) {
        best = r;
        best_dx = dx;
        best_dy = dy;
      }
    }
  }
  if (bdx)
    *bdx = best_dx;
  if (bdy)
    *bdy = best_dy;
  return best;
}

static float *slot_spec(const nc_ctx *c, const nc_block *b, int s) {
  return b->spec + (size_t)s * c->px * c->py * 2;
}

static double *slot_integ(const nc_ctx *c, const nc_block *b, int s) {
  return b->integ + (size_t)s * 2 * (c->h + 1) * (c->w + 1);
}

/* ---- public API --------------------------------------------------------------------------- */

sd_status sd_nearcopy_residual(const float *image, int h, int w, const sd_nearcopy_params *p,
                               float *residual) {
  if (!image || !residual)
    return SD_ERROR(SD_ERR_ARG, "sd_nearcopy_residual: NULL image");
  nc_ctx c;
  SD_CHECK(nc_ctx_init(&c, p, h, w));
  sd_status st = nc_residual(&c, image, residual);
  nc_ctx_free(&c);
  SD_CHECK(st);
  return SD_OK;
}

sd_status sd_nearcopy_pair(const float *a, const float *b, int h, int w,
                           const sd_nearcopy_params *p, double *corr, int *dx, int *dy) {
  if (!a || !b)
    return SD_ERROR(SD_ERR_ARG, "sd_nearcopy_pair: NULL image");
  nc_ctx c;
  nc_block blk;
  float *r = NULL;
  SD_CHECK(nc_ctx_init(&c, p, h, w));
  sd_status st = SD_OK;
  memset(&blk, 0, sizeof blk);
  SD_CHECK_GOTO(st, nc_block_alloc(&blk, &c), done);
  SD_ALLOC_GOTO(st, r, (size_t)h * w, done);
  SD_CHECK_GOTO(st, nc_residual(&c, a, r), done);
  nc_block_set(&c, &blk, 0, r);
  SD_CHECK_GOTO(st, nc_residual(&c, b, r), done);
  nc_block_set(&c, &blk, 1, r);
  nc_correlate(&c, slot_spec(&c, &blk, 0), slot_spec(&c, &blk, 1), NULL);
  double best = nc_best(&c, c.corr, slot_integ(&c, &blk, 0), slot_integ(&c, &blk, 1), dx, dy);
  if (corr)
    *corr = best;
done:
  free(r);
  nc_block_free(&blk);
  nc_ctx_free(&c);
  return st;
}

static int64_t uf_find(int64_t *parent, int64_t i) {
  while (parent[i] != i) {
    parent[i] = parent[parent[i]];
    i = parent[i];
  }
  return i;
}

static void uf_union(int64_t *parent, int64_t a, int64_t b) {
  a = uf_find(parent, a);
  b = uf_find(parent, b);
  if (a == b)
    return;
  if (a < b)
    parent[b] = a;
  else
    parent[a] = b;
}

/* Loads members[first .. first+count) of the candidate set into block b. */
static void load_block(nc_ctx *c, nc_block *b, const int64_t *members, int64_t first, int count,
                       const float *res) {
  const size_t hw = (size_t)c->h * c->w;
  b->count = count;
  for (int s = 0; s < count; s++) {
    b->idx[s] = members[first + s];
    nc_block_set(c, b, s, res + (size_t)b->idx[s] * hw);
  }
}

/* Where compared pairs go: the list of pairs with corr >= keep_min, and the statistics. */
typedef struct pair_sink {
  double threshold, keep_min;
  sd_nearcopy_match *list;
  int64_t count, cap;
  sd_nearcopy_stats st;
} pair_sink;

static sd_status record(pair_sink *sk, int64_t i, int64_t j, double r, int dx, int dy) {
  sk->st.pairs_compared++;
  if (r >= sk->threshold)
    sk->st.pairs_matched++;
  else if (r > sk->st.max_nonmatch_corr)
    sk->st.max_nonmatch_corr = r;
  if (!(r >= sk->keep_min))
    return SD_OK;
  if (sk->count == sk->cap) {
    int64_t cap = sk->cap ? 2 * sk->cap : 1024;
    sd_nearcopy_match *l = sd_realloc(sk->list, (size_t)cap, sizeof *l, "near-copy pair list");
    if (!l)
      return SD_ERR_NOMEM;
    sk->list = l;
    sk->cap = cap;
  }
  sd_nearcopy_match *m = &sk->list[sk->count++];
  /* stored with a < b: swapping the images negates the offset */
  if (i < j) {
    m->a = (int32_t)i;
    m->b = (int32_t)j;
    m->dx = dx;
    m->dy = dy;
  } else {
    m->a = (int32_t)j;
    m->b = (int32_t)i;
    m->dx = -dx;
    m->dy = -dy;
  }
  m->corr = r;
  return SD_OK;
}

/* All pairs within one candidate set (m members). */
static sd_status compare_set(nc_ctx *c, nc_block *bi, nc_block *bj, const int64_t *members,
                             int64_t m, const float *res, pair_sink *sk) {
  const size_t plane = (size_t)(2 * c->sy + 1) * (2 * c->sx + 1);
  int partners[NC_BLOCK];
  for (int64_t i0 = 0; i0 < m; i0 += NC_BLOCK) {
    int ni = (int)(m - i0 < NC_BLOCK ? m - i0 : NC_BLOCK);
    load_block(c, bi, members, i0, ni, res);
    for (int64_t j0 = i0; j0 < m; j0 += NC_BLOCK) {
      int nj = (int)(m - j0 < NC_BLOCK ? m - j0 : NC_BLOCK);
      nc_block *b = bi;
      if (j0 != i0) {
        load_block(c, bj, members, j0, nj, res);
        b = bj;
      }
      for (int s = 0; s < ni; s++) {
        int np = 0;
        for (int t = (j0 == i0 ? s + 1 : 0); t < nj; t++)
          partners[np++] = t;
        for (int k = 0; k < np; k += 2) {
          int t1 = partners[k], t2 = k + 1 < np ? partners[k + 1] : -1, dx, dy;
          nc_correlate(c, slot_spec(c, bi, s), slot_spec(c, b, t1),
                       t2 >= 0 ? slot_spec(c, b, t2) : NULL);
          const double *ia = slot_integ(c, bi, s);
          double r1 = nc_best(c, c->corr, ia, slot_integ(c, b, t1), &dx, &dy);
          SD_CHECK(record(sk, bi->idx[s], b->idx[t1], r1, dx, dy));
          if (t2 >= 0) {
            double r2 = nc_best(c, c->corr + plane, ia, slot_integ(c, b, t2), &dx, &dy);
            SD_CHECK(record(sk, bi->idx[s], b->idx[t2], r2, dx, dy));
          }
        }
      }
    }
  }
  return SD_OK;
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct label_index {
  int32_t label;
  int64_t index;
} label_index;

static int cmp_label_index(const void *pa, const void *pb) {
  const label_index *a = pa, *b = pb;
  if (a->label != b->label)
    return a->label < b->label ? -1 : 1;
  return a->index < b->index ? -1 : (a->index > b->index);
}

/* order (n): the indices sorted by (label, index) */
static sd_status order_by_label(const int32_t *labels, int64_t n, int64_t *order) {
  label_index *li = sd_malloc(n > 0 ? (size_t)n : 1, sizeof *li, "label order");
  if (!li)
    return SD_ERR_NOMEM;
  for (int64_t i = 0; i < n; i++) {
    li[i].label = labels[i];
    li[i].index = i;
  }
  qsort(li, (size_t)n, sizeof *li, cmp_label_index);
  for (int64_t i = 0; i < n; i++)
    order[i] = li[i].index;
  free(li);
  return SD_OK;
}

static int cmp_match(const void *pa, const void *pb) {
  const sd_nearcopy_match *a = pa, *b = pb;
  if (a->a != b->a)
    return a->a < b->a ? -1 : 1;
  return a->b < b->b ? -1 : (a->b > b->b);
}

/* The engine behind sd_nearcopy_pairs and sd_nearcopy_groups: compares the candidate pairs
 * and fills the sink. */
static sd_status nearcopy_run(const float *images, const int32_t *labels, int64_t n, int h, int w,
                              const sd_nearcopy_params *p, pair_sink *sk) {
  if (!images && n > 0)
    return SD_ERROR(SD_ERR_ARG, "near-copy search: NULL images");
  if (n < 0 || n > INT32_MAX)
    return SD_ERROR(SD_ERR_ARG, "near-copy search: image count %lld out of range 0..%d",
                    (long long)n, INT32_MAX);
  double t0 = now_seconds();
  nc_ctx c;
  SD_CHECK(nc_ctx_init(&c, p, h, w));
  sd_status st = SD_OK;
  nc_block bi, bj;
  float *res = NULL;
  int64_t *order = NULL;
  memset(&bi, 0, sizeof bi);
  memset(&bj, 0, sizeof bj);
  const size_t hw = (size_t)h * w;
  size_t nn = n > 0 ? (size_t)n : 1;
  SD_ALLOC_GOTO(st, res, nn * hw, done);
  SD_ALLOC_GOTO(st, order, nn, done);
  SD_CHECK_GOTO(st, nc_block_alloc(&bi, &c), done);
  SD_CHECK_GOTO(st, nc_block_alloc(&bj, &c), done);
  for (int64_t i = 0; i < n; i++)
    SD_CHECK_GOTO(st, nc_residual(&c, images + (size_t)i * hw, res + (size_t)i * hw), done);
  const int by_label = labels && p->same_label_only;
  if (by_label) {
    SD_CHECK_GOTO(st, order_by_label(labels, n, order), done);
  } else {
    for (int64_t i = 0; i < n; i++)
      order[i] = i;
  }
  for (int64_t a = 0; a < n;) {
    int64_t b = a + 1;
    if (by_label)
      while (b < n && labels[order[b]] == labels[order[a]])
        b++;
    else
      b = n;
    SD_CHECK_GOTO(st, compare_set(&c, &bi, &bj, order + a, b - a, res, sk), done);
    a = b;
  }
  if (sk->count > 1)
    qsort(sk->list, (size_t)sk->count, sizeof *sk->list, cmp_match);
  sk->st.seconds = now_seconds() - t0;
done:
  free(res);
  free(order);
  nc_block_free(&bi);
  nc_block_free(&bj);
  nc_ctx_free(&c);
  return st;
}

sd_status sd_nearcopy_pairs(const float *images, const int32_t *labels, int64_t n, int h, int w,
                            const sd_nearcopy_params *p, double min_corr, sd_nearcopy_match **pairs,
                            int64_t *npairs, sd_nearcopy_stats *stats) {
  if (!pairs || !npairs)
    return SD_ERROR(SD_ERR_ARG, "sd_nearcopy_pairs: NULL pairs or npairs");
  *pairs = NULL;
  *npairs = 0;
  pair_sink sk;
  memset(&sk, 0, sizeof sk);
  sk.threshold = p ? p->threshold : 0.0;
  sk.keep_min = min_corr;
  sk.st.max_nonmatch_corr = -1.0;
  sd_status st = nearcopy_run(images, labels, n, h, w, p, &sk);
  if (st != SD_OK) {
    free(sk.list);
    SD_CHECK(st);
  }
  *pairs = sk.list;
  *npairs = sk.count;
  if (stats)
    *stats = sk.st;
  return SD_OK;
}

sd_status sd_nearcopy_groups(const float *images, const int32_t *labels, int64_t n, int h, int w,
                             const sd_nearcopy_params *p, int32_t *group, int *ngroups,
                             sd_nearcopy_stats *stats) {
  if ((!group && n > 0) || !ngroups)
    return SD_ERROR(SD_ERR_ARG, "sd_nearcopy_groups: NULL group or ngroups");
  if (!p)
    return SD_ERROR(SD_ERR_ARG, "near-copy parameters are NULL");
  sd_nearcopy_match *pairs = NULL;
  int64_t npairs = 0;
  sd_nearcopy_stats s;
  SD_CHECK(sd_nearcopy_pairs(images, labels, n, h, w, p, p->threshold, &pairs, &npairs, &s));
  sd_status st = SD_OK;
  int64_t *parent = NULL, *size = NULL;
  int32_t *id = NULL;
  size_t nn = n > 0 ? (size_t)n : 1;
  SD_ALLOC_GOTO(st, parent, nn, done);
  SD_ALLOC_GOTO(st, size, nn, done);
  SD_ALLOC_GOTO(st, id, nn, done);
  for (int64_t i = 0; i < n; i++) {
    parent[i] = i;
    size[i] = 0;
    id[i] = -1;
  }
  for (int64_t k = 0; k < npairs; k++)
    uf_union(parent, pairs[k].a, pairs[k].b);
  /* group ids in order of each group's first image */
  int next = 0;
  int64_t largest = 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t r = uf_find(parent, i);
    if (id[r] < 0)
      id[r] = next++;
    group[i] = id[r];
    if (++size[r] > largest)
      largest = size[r];
  }
  *ngroups = next;
  if (stats) {
    *stats = s;
    stats->largest_group = (int)largest;
  }
done:
  free(pairs);
  free(parent);
  free(size);
  free(id);
  return st;
}
