/* lattice.c - lattice vectors from Fourier peaks (with sub-pixel refinement on the continuous
 * DFT), lattice refinement from a reference, and the Gaussian smoothing shared by the label
 * module. The motif and the deviation are in motif.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stemdefect/lattice.h"

void sd_lattice_params_default(sd_lattice_params *p) {
  p->min_period = 3.0;
  p->max_period = 0.0;
  p->peak_threshold = 0.05;
  p->max_peaks = 12;
}

void sd_lattice_from_reciprocal(sd_lattice *lat) {
  /* B = [b1 b2] (columns); A = B^-T, so a_i . b_j = delta_ij */
  double det = lat->b1[0] * lat->b2[1] - lat->b2[0] * lat->b1[1];
  if (det == 0.0)
    return;
  /* B^-1 = 1/det [[b2y, -b2x], [-b1y, b1x]]; A^T = B^-1, rows of B^-1 are a1, a2 */
  lat->a1[0] = lat->b2[1] / det;
  lat->a1[1] = -lat->b2[0] / det;
  lat->a2[0] = -lat->b1[1] / det;
  lat->a2[1] = lat->b1[0] / det;
}

/* Hann-windowed, mean-removed copy of img (h, w) into out. */
static void window_image(const float *img, int h, int w, float *out) {
  double mean = 0;
  for (size_t i = 0; i < (size_t)h * w; i++)
    mean += img[i];
  mean /= (double)h * w;
  for (int y = 0; y < h; y++) {
    double wy = 0.5 - 0.5 * cos(2.0 * M_PI * (y + 0.5) / h);
    for (int x = 0; x < w; x++) {
      double wx = 0.5 - 0.5 * cos(2.0 * M_PI * (x + 0.5) / w);
      out[(size_t)y * w + x] = (float)((img[(size_t)y * w + x] - mean) * wx * wy);
    }
  }
}

static double power_at(const float *win, int h, int w, double fx, double fy, double *tw) {
  double re, im;
  sd_dft_at(win, h, w, fx, fy, tw, &re, &im);
  return re * re + im * im;
}

/* Hill-climbs the power of the continuous DFT from f with parabolic steps along x and y,
 * starting at step (cycles/px) and shrinking it; f is moved at most `reach` in total. */
static double peak_refine(const float *win, int h, int w, double f[2], double step, double reach,
                          double *tw) {
  double f0[2] = {f[0], f[1]};
  double p0 = power_at(win, h, w, f[0], f[1], tw);
  for (int it = 0; it < 14; it++) {
    for (int d = 0; d < 2; d++) {
      double fm[2] = {f[0], f[1]}, fp[2] = {f[0], f[1]};
      fm[d] -= step;
      fp[d] += step;
      double pm = power_at(win, h, w, fm[0], fm[1], tw), pp = power_at(win, h, w, fp[0], fp[1], tw);
      double lm = log(pm + 1e-300), l0 = log(p0 + 1e-300), lp = log(pp + 1e-300);
      double den = lm - 2 * l0 + lp;
      double delta;
      if (den < 0) {
        delta = 0.5 * (lm - lp) / den * step;
        if (delta > step)
          delta = step;
        if (delta < -step)
          delta = -step;
      } else {
        delta = pp > pm ? step : -step;
      }
      double fn[2] = {f[0], f[1]};
      fn[d] += delta;
      if (fabs(fn[0] - f0[0]) > reach || fabs(fn[1] - f0[1]) > reach)
        continue;
      double pn = power_at(win, h, w, fn[0], fn[1], tw);
      if (pn > p0) {
        f[0] = fn[0];
        f[1] = fn[1];
        p0 = pn;
      }
    }
    step *= 0.6;
  }
  return p0;
}

typedef struct peak {
  double power, f[2];
} peak;

static int peak_cmp(const void *a, const void *b) {
  double pa = ((const peak *)a)->power, pb = ((const peak *)b)->power;
  if (pa != pb)
    return pa < pb ? 1 : -1;
  /* deterministic tie break */
  const peak *x = a, *y = b;
  if (x->f[0] != y->f[0])
    return x->f[0] < y->f[0] ? -1 : 1;
  return x->f[1] < y->f[1] ? -1 : (x->f[1] > y->f[1]);
}

/* Indexes peak f on basis (b1, b2): returns 1 and (h, k) when it lies within tol of a lattice
 * point with |h|, |k| <= 4 (not both 0). */
static int index_peak(const double b1[2], const double b2[2], const double f[2], double tol,
                      int hk[2]) {
  double det = b1[0] * b2[1] - b2[0] * b1[1];
  if (fabs(det) < 1e-12)
    return 0;
  double c1 = (f[0] * b2[1] - b2[0] * f[1]) / det, c2 = (b1[0] * f[1] - f[0] * b1[1]) / det;
  int h = (int)lround(c1), k = (int)lround(c2);
  if ((h == 0 && k == 0) || abs(h) > 4 || abs(k) > 4)
    return 0;
  double ex = f[0] - h * b1[0] - k * b2[0], ey = f[1] - h * b1[1] - k * b2[1];
  if (sqrt(ex * ex + ey * ey) > tol)
    return 0;
  hk[0] = h;
  hk[1] = k;
  return 1;
}

/* Least-squares fit of b1, b2 to indexed peaks (weights sqrt(power)). Returns the number
 * used; leaves lat unchanged when fewer than 2 non-collinear ones. */
static int fit_basis(sd_lattice *lat) {
  double m00 = 0, m01 = 0, m11 = 0, rx0 = 0, rx1 = 0, ry0 = 0, ry1 = 0;
  int used = 0;
  for (int i = 0; i < lat->npeaks; i++) {
    int h = lat->peak_hk[i][0], k = lat->peak_hk[i][1];
    if (h == 0 && k == 0)
      continue;
    double wgt = sqrt(lat->peak_power[i]);
    m00 += wgt * h * h;
    m01 += wgt * h * k;
    m11 += wgt * k * k;
    rx0 += wgt * h * lat->peak_f[i][0];
    rx1 += wgt * k * lat->peak_f[i][0];
    ry0 += wgt * h * lat->peak_f[i][1];
    ry1 += wgt * k * lat->peak_f[i][1];
    used++;
  }
  double det = m00 * m11 - m01 * m01;
  if (used < 2 || det <= 1e-9 * (m00 * m11 + 1e-300))
    return 0;
  lat->b1[0] = (m11 * rx0 - m01 * rx1) / det;
  lat->b2[0] = (m00 * rx1 - m01 * rx0) / det;
  lat->b1[1] = (m11 * ry0 - m01 * ry1) / det;
  lat->b2[1] = (m00 * ry1 - m01 * ry0) / det;
  sd_lattice_from_reciprocal(lat);
  return used;
}

/* Lagrange-Gauss reduction of a 2-D basis (shortest, most orthogonal pair). */
static void reduce_basis(double b1[2], double b2[2]) {
  for (int it = 0; it < 64; it++) {
    double n1 = b1[0] * b1[0] + b1[1] * b1[1], n2 = b2[0] * b2[0] + b2[1] * b2[1];
    if (n2 < n1) {
      double t0 = b1[0], t1 = b1[1];
      b1[0] = b2[0];
      b1[1] = b2[1];
      b2[0] = t0;
      b2[1] = t1;
      double tn = n1;
      n1 = n2;
      n2 = tn;
    }
    double mu = (b1[0] * b2[0] + b1[1] * b2[1]) / n1;
    long r = lround(mu);
    if (r == 0)
      break;
    b2[0] -= r * b1[0];
    b2[1] -= r * b1[1];
  }
  /* canonical orientation: b1 with fx >= 0 (or fy > 0), right-handed pair */
  if (b1[0] < 0 || (b1[0] == 0 && b1[1] < 0)) {
    b1[0] = -b1[0];
    b1[1] = -b1[1];
  }
  if (b1[0] * b2[1] - b2[0] * b1[1] < 0) {
    b2[0] = -b2[0];
    b2[1] = -b2[1];
  }
}

sd_status sd_lattice_estimate(const float *img, int h, int w, const sd_lattice_params *p,
                              sd_lattice *out) {
  if (!img || h < 8 || w < 8 || !p || !out)
    return SD_ERROR(SD_ERR_ARG,
                    "lattice estimate needs an image of at least 8x8 pixels (got %dx%d)", w, h);
  memset(out, 0, sizeof *out);
  int ny = sd_fft_next_pow2(h <= 256 ? 2 * h : h), nx = sd_fft_next_pow2(w <= 256 ? 2 * w : w);
  int nmax = ny > nx ? ny : nx;
  sd_status st = SD_OK;
  float *win = sd_malloc((size_t)h * w, sizeof *win, "windowed image");
  double *buf = sd_calloc((size_t)ny * nx * 2, sizeof *buf, "FFT buffer");
  double *scratch = sd_malloc((size_t)2 * (nmax > w ? nmax : w), sizeof *scratch, "FFT scratch");
  peak *cand = NULL;
  int ncand = 0, capc = 256;
  cand = sd_malloc((size_t)capc, sizeof *cand, "Fourier peaks");
  if (!win || !buf || !scratch || !cand) {
    st = SD_ERR_NOMEM;
    goto done;
  }
  window_image(img, h, w, win);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      buf[((size_t)y * nx + x) * 2] = win[(size_t)y * w + x];
  SD_CHECK_GOTO(st, sd_fft_2d(buf, ny, nx, 0, scratch), done);
  /* power in place (re slot) */
  for (size_t i = 0; i < (size_t)ny * nx; i++)
    buf[2 * i] = buf[2 * i] * buf[2 * i] + buf[2 * i + 1] * buf[2 * i + 1];
  double maxp = p->max_period > 0 ? p->max_period : (h < w ? h : w) / 2.5;
  double fmin = 1.0 / maxp, fmax = 1.0 / (p->min_period > 2.0 ? p->min_period : 2.0);
  for (int ky = 0; ky < ny; ky++) {
    int sy = ky < ny / 2 ? ky : ky - ny;
    for (int kx = 0; kx < nx; kx++) {
      int sx = kx < nx / 2 ? kx : kx - nx;
      if (!(sy > 0 || (sy == 0 && sx > 0)))
        continue; /* half plane: one of each +-g pair */
      double fx = (double)sx / nx, fy = (double)sy / ny, fr = sqrt(fx * fx + fy * fy);
      if (fr < fmin || fr > fmax)
        continue;
      double pv = buf[((size_t)ky * nx + kx) * 2];
      int ismax = 1;
      for (int dy = -2; dy <= 2 && ismax; dy++)
        for (int dx = -2; dx <= 2; dx++) {
          if (!dx && !dy)
            continue;
          int qy = (ky + dy + ny) % ny, qx = (kx + dx + nx) % nx;
          double q = buf[((size_t)qy * nx + qx) * 2];
          if (q > pv || (q == pv && (dy < 0 || (dy == 0 && dx < 0)))) {
            ismax = 0;
            break;
          }
        }
      if (!ismax)
        continue;
      if (ncand == capc) {
        peak *nc = sd_realloc(cand, (size_t)capc * 2, sizeof *cand, "Fourier peaks");
        if (!nc) {
          st = SD_ERR_NOMEM;
          goto done;
        }
        cand = nc;
        capc *= 2;
      }
      cand[ncand].power = pv;
      cand[ncand].f[0] = fx;
      cand[ncand].f[1] = fy;
      ncand++;
    }
  }
  qsort(cand, (size_t)ncand, sizeof *cand, peak_cmp);
  int keep = 0, maxk = p->max_peaks < SD_LATTICE_MAX_PEAKS ? p->max_peaks : SD_LATTICE_MAX_PEAKS;
  while (keep < ncand && keep < maxk && cand[keep].power >= p->peak_threshold * cand[0].power)
    keep++;
  /* sub-pixel refinement of the kept peaks on the continuous DFT of the unpadded window */
  double bin = 1.0 / (h < w ? h : w);
  for (int i = 0; i < keep; i++)
    cand[i].power = peak_refine(win, h, w, cand[i].f, 0.25 * bin, 1.5 * bin, scratch);
  /* choose the basis: pairs of peaks that index (nearly) all the peak power; among them the
   * smallest reciprocal cell (never a real cell too small to hold the motif) */
  double total = 0;
  for (int i = 0; i < keep; i++)
    total += cand[i].power;
  double tol = 0.75 * bin;
  int bi = -1, bj = -1;
  double best_e = -1, best_area = 0;
  for (int i = 0; i < keep; i++)
    for (int j = i + 1; j < keep; j++) {
      const double *g1 = cand[i].f, *g2 = cand[j].f;
      double cr = g1[0] * g2[1] - g1[1] * g2[0];
      double n1 = sqrt(g1[0] * g1[0] + g1[1] * g1[1]), n2 = sqrt(g2[0] * g2[0] + g2[1] * g2[1]);
      if (fabs(cr) < 0.3 * n1 * n2)
        continue;
      double e = 0;
      int hk[2];
      for (int k = 0; k < keep; k++)
        if (index_peak(g1, g2, cand[k].f,
                       tol + 0.03 * sqrt(cand[k].f[0] * cand[k].f[0] + cand[k].f[1] * cand[k].f[1]),
                       hk))
          e += cand[k].power;
      double area = fabs(cr);
      int good = e >= 0.9 * total, best_good = best_e >= 0.9 * total;
      int better;
      if (bi < 0)
        better = 1;
      else if (good != best_good)
        better = good;
      else if (good)
        better = area < 0.95 * best_area || (area < 1.05 * best_area && e > best_e);
      else
        better = e > best_e;
      if (better) {
        bi = i;
        bj = j;
        best_e = e;
        best_area = area;
      }
    }
  if (bi < 0) {
    st = SD_ERROR(SD_ERR_FORMAT,
                  "no lattice found: fewer than two non-collinear Fourier peaks with periods "
                  "%.3g..%.3g px in a %dx%d image",
                  1.0 / fmax, maxp, w, h);
    goto done;
  }
  out->b1[0] = cand[bi].f[0];
  out->b1[1] = cand[bi].f[1];
  out->b2[0] = cand[bj].f[0];
  out->b2[1] = cand[bj].f[1];
  reduce_basis(out->b1, out->b2);
  out->npeaks = keep;
  double expl = 0;
  for (int k = 0; k < keep; k++) {
    out->peak_f[k][0] = cand[k].f[0];
    out->peak_f[k][1] = cand[k].f[1];
    out->peak_power[k] = cand[k].power;
    double fr = sqrt(cand[k].f[0] * cand[k].f[0] + cand[k].f[1] * cand[k].f[1]);
    if (index_peak(out->b1, out->b2, cand[k].f, tol + 0.03 * fr, out->peak_hk[k]))
      expl += cand[k].power;
    else
      out->peak_hk[k][0] = out->peak_hk[k][1] = 0;
  }
  out->explained = total > 0 ? expl / total : 0;
  sd_lattice_from_reciprocal(out);
  fit_basis(out);
done:
  free(win);
  free(buf);
  free(scratch);
  free(cand);
  return st;
}

sd_status sd_lattice_refine(const float *img, int h, int w, const sd_lattice *guess,
                            double max_change, sd_lattice *out) {
  if (!img || h < 8 || w < 8 || !guess || !out)
    return SD_ERROR(SD_ERR_ARG, "lattice refine needs an image of at least 8x8 pixels");
  sd_lattice lat = *guess;
  float *win = sd_malloc((size_t)h * w, sizeof *win, "windowed image");
  double *tw = sd_malloc((size_t)2 * w, sizeof *tw, "DFT twiddles");
  if (!win || !tw) {
    free(win);
    free(tw);
    return SD_ERR_NOMEM;
  }
  window_image(img, h, w, win);
  double bin = 1.0 / (h < w ? h : w);
  for (int i = 0; i < lat.npeaks; i++) {
    int hh = lat.peak_hk[i][0], kk = lat.peak_hk[i][1];
    if (hh == 0 && kk == 0)
      continue;
    double f[2] = {hh * guess->b1[0] + kk * guess->b2[0], hh * guess->b1[1] + kk * guess->b2[1]};
    lat.peak_power[i] = peak_refine(win, h, w, f, 0.25 * bin, 1.0 * bin, tw);
    lat.peak_f[i][0] = f[0];
    lat.peak_f[i][1] = f[1];
  }
  free(win);
  free(tw);
  *out = *guess;
  if (fit_basis(&lat) < 2)
    return SD_OK;
  double n1 = hypot(guess->b1[0], guess->b1[1]), n2 = hypot(guess->b2[0], guess->b2[1]);
  double d1 = hypot(lat.b1[0] - guess->b1[0], lat.b1[1] - guess->b1[1]);
  double d2 = hypot(lat.b2[0] - guess->b2[0], lat.b2[1] - guess->b2[1]);
  if (d1 > max_change * n1 || d2 > max_change * n2)
    return SD_OK;
  *out = lat;
  return SD_OK;
}

void sd_gauss_blur(const float *in, int h, int w, double sigma, int normalize, float *tmp,
                   float *out) {
  if (sigma <= 0) {
    if (out != in)
      memcpy(out, in, (size_t)h * w * sizeof *out);
    return;
  }
  enum { RMAX = 192 };
  double k[2 * RMAX + 1];
  int r = (int)ceil(3.0 * sigma);
  if (r > RMAX)
    r = RMAX;
  for (int i = -r; i <= r; i++)
    k[i + r] = exp(-0.5 * i * i / (sigma * sigma));
  /* prefix sums of the kernel: the mass inside the image of the window at x is
   * K[hi + r] - K[lo + r - 1] */
  double K[2 * RMAX + 2];
  K[0] = 0;
  for (int i = 0; i <= 2 * r; i++)
    K[i + 1] = K[i] + k[i];
  /* rows: in -> tmp, accumulated one kernel tap at a time (contiguous, vectorises) */
  for (int y = 0; y < h; y++) {
    const float *row = in + (size_t)y * w;
    float *o = tmp + (size_t)y * w;
    for (int x = 0; x < w; x++)
      o[x] = 0.0f;
    for (int d = -r; d <= r; d++) {
      int x0 = d < 0 ? -d : 0, x1 = d > 0 ? w - d : w;
      float kd = (float)k[d + r];
      const float *src = row + d;
      for (int x = x0; x < x1; x++)
        o[x] += kd * src[x];
    }
    if (normalize)
      for (int x = 0; x < w; x++) {
        int lo = x - r < 0 ? -x : -r, hi = x + r >= w ? w - 1 - x : r;
        o[x] = (float)(o[x] / (K[hi + r + 1] - K[lo + r]));
      }
  }
  /* columns: tmp -> out, accumulated row by row (contiguous access) */
  for (int y = 0; y < h; y++) {
    int lo = y - r < 0 ? -y : -r, hi = y + r >= h ? h - 1 - y : r;
    float *o = out + (size_t)y * w;
    double m = 0;
    for (int x = 0; x < w; x++)
      o[x] = 0.0f;
    for (int d = lo; d <= hi; d++) {
      const float *t = tmp + (size_t)(y + d) * w;
      float kd = (float)k[d + r];
      m += k[d + r];
      for (int x = 0; x < w; x++)
        o[x] += kd * t[x];
    }
    if (normalize) {
      float inv = (float)(1.0 / m);
      for (int x = 0; x < w; x++)
        o[x] *= inv;
    }
  }
}
