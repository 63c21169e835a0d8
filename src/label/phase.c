/* phase.c - geometric phase of the lattice fringes and the extended-defect shapes read from it
 * (see phase.h for the method). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stemdefect/image.h"
#include "stemdefect/phase.h"

#define PHASE_MAX_FRINGES 6
#define PHASE_BIN 0.5 /* px: offset step of the line search */

void sd_phase_params_default(sd_phase_params *p) {
  p->sigma = 0.42;
  p->core_sigma = 0.34;
  p->core_loop = 0.34;
  p->band_halfwidth = 0.48;
  p->boundary_shift = 0.38;
  p->core_radius = 0.88;
  p->fringes = 3;
}

/* re, im, gx, gy, scratch, blur tmp, winding sum */
size_t sd_phase_work_floats(int h, int w) {
  return (size_t)7 * h * w;
}

double sd_phase_period(const sd_lattice *lat) {
  const double *a = lat->a1, *b = lat->a2;
  double l[4] = {hypot(a[0], a[1]), hypot(b[0], b[1]), hypot(a[0] + b[0], a[1] + b[1]),
                 hypot(a[0] - b[0], a[1] - b[1])};
  double m = l[0];
  for (int i = 1; i < 4; i++)
    if (l[i] < m)
      m = l[i];
  return m;
}

/* The fringes: the strongest Fourier peaks found with the lattice (measured reflections,
 * indexed on it), one per direction (peaks within ~6 degrees of a stronger one, e.g. its
 * harmonics, are skipped): g[k] = the refined peak frequency (fx, fy), wt[k] = sqrt(power).
 * Measured peaks rather than h b1 + k b2: on an image holding two orientations (a twin) the
 * fitted basis can be a superlattice whose low orders are not fringes of the image. */
static int pick_fringes(const sd_lattice *lat, int want, double g[][2], double *wt) {
  int used[SD_LATTICE_MAX_PEAKS] = {0}, n = 0;
  if (want > PHASE_MAX_FRINGES)
    want = PHASE_MAX_FRINGES;
  int np = lat->npeaks < SD_LATTICE_MAX_PEAKS ? lat->npeaks : SD_LATTICE_MAX_PEAKS;
  while (n < want) {
    int best = -1;
    for (int i = 0; i < np; i++) {
      if (used[i] || (lat->peak_hk[i][0] == 0 && lat->peak_hk[i][1] == 0))
        continue;
      if (best < 0 || lat->peak_power[i] > lat->peak_power[best])
        best = i;
    }
    if (best < 0)
      break;
    used[best] = 1;
    double fx = lat->peak_f[best][0], fy = lat->peak_f[best][1], len = hypot(fx, fy);
    if (!(len > 1e-9 && len < 0.5) || !(lat->peak_power[best] > 0))
      continue;
    int dup = 0;
    for (int j = 0; j < n && !dup; j++)
      dup = fabs(fx * g[j][1] - fy * g[j][0]) / (len * hypot(g[j][0], g[j][1])) < 0.1;
    if (dup)
      continue;
    g[n][0] = fx;
    g[n][1] = fy;
    wt[n] = sqrt(lat->peak_power[best]);
    n++;
  }
  return n;
}

/* A_g = Gauss_sigma * (img exp(-2 pi i g . r)) into re, im (normalised blur: a local mean). */
static void demodulate(const float *img, int h, int w, const double g[2], double sigma, float *re,
                       float *im, float *tmp) {
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      size_t i = (size_t)y * w + x;
      double ph = 2.0 * M_PI * (g[0] * x + g[1] * y);
      re[i] = (float)(img[i] * cos(ph));
      im[i] = (float)(-img[i] * sin(ph));
    }
  sd_gauss_blur(re, h, w, sigma, 1, tmp, re);
  sd_gauss_blur(im, h, w, sigma, 1, tmp, im);
}

/* central difference along x (dx = 1) or y (dx = 0) at pixel (y, x); one-sided at borders */
static double diff(const float *v, int h, int w, int y, int x, int alongx) {
  if (alongx) {
    int x0 = x > 0 ? x - 1 : x, x1 = x + 1 < w ? x + 1 : x;
    return x1 > x0 ? (v[(size_t)y * w + x1] - v[(size_t)y * w + x0]) / (double)(x1 - x0) : 0;
  }
  int y0 = y > 0 ? y - 1 : y, y1 = y + 1 < h ? y + 1 : y;
  return y1 > y0 ? (v[(size_t)y1 * w + x] - v[(size_t)y0 * w + x]) / (double)(y1 - y0) : 0;
}

int sd_phase_energy(const float *img, int h, int w, const sd_lattice *lat, double sigma_px,
                    int fringes, float *work, float *energy) {
  double g[PHASE_MAX_FRINGES][2], wt[PHASE_MAX_FRINGES];
  int nf = pick_fringes(lat, fringes, g, wt);
  if (nf < 2)
    return 0;
  size_t n = (size_t)h * w;
  float *re = work, *im = work + n, *gx = work + 2 * n, *gy = work + 3 * n, *scr = work + 4 * n,
        *tmp = work + 5 * n;
  double wsum = 0;
  for (size_t i = 0; i < n; i++)
    energy[i] = 0;
  for (int f = 0; f < nf; f++) {
    demodulate(img, h, w, g[f], sigma_px, re, im, tmp);
    double mean2 = 0;
    for (size_t i = 0; i < n; i++)
      mean2 += (double)re[i] * re[i] + (double)im[i] * im[i];
    double eps = 1e-6 * mean2 / (double)n + 1e-30;
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) {
        size_t i = (size_t)y * w + x;
        double a2 = (double)re[i] * re[i] + (double)im[i] * im[i] + eps;
        /* Im(conj(A) dA) = re d(im) - im d(re) */
        gx[i] = (float)((re[i] * diff(im, h, w, y, x, 1) - im[i] * diff(re, h, w, y, x, 1)) / a2);
        gy[i] = (float)((re[i] * diff(im, h, w, y, x, 0) - im[i] * diff(re, h, w, y, x, 0)) / a2);
      }
    /* the median gradient is the mismatch of g with this image's lattice (a uniform ramp) */
    float mx = sd_median(gx, n, scr), my = sd_median(gy, n, scr);
    for (size_t i = 0; i < n; i++) {
      double ax = gx[i] - mx, ay = gy[i] - my;
      energy[i] += (float)(wt[f] * (ax * ax + ay * ay));
    }
    wsum += wt[f];
  }
  if (wsum > 0)
    for (size_t i = 0; i < n; i++)
      energy[i] = (float)(energy[i] / wsum);
  return nf;
}

/* Best line of normal (nx, ny) through the image centre offset by o px:
 * fault: maximal mean of v inside the band |d - o| < hw minus the mean outside;
 * boundary: maximal two-level step n1 n2 (m1 - m2)^2 / n^2 at d = o, with *high_side = +1 when
 * d > o is the high side. Pixels are binned by d (PHASE_BIN) and scored by prefix sums. */
typedef struct line_fit {
  double score, offset;
  int high_side, ok;
} line_fit;

static sd_status best_line(const float *v, int h, int w, double nx, double ny, sd_phase_shape shape,
                           double hw, line_fit *out) {
  out->ok = 0;
  double cx = 0.5 * (w - 1), cy = 0.5 * (h - 1), R = 0.5 * hypot(h, w) + 1.0;
  int nb = (int)ceil(2.0 * R / PHASE_BIN) + 1;
  double *S = sd_calloc((size_t)nb + 1, 2 * sizeof(double), "line search bins");
  if (!S)
    return SD_ERR_NOMEM;
  double *C = S + nb + 1; /* prefix sums: S[b] = sum over bins < b */
  size_t n = (size_t)h * w;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      double d = (x - cx) * nx + (y - cy) * ny;
      int b = (int)floor((d + R) / PHASE_BIN);
      b = b < 0 ? 0 : b >= nb ? nb - 1 : b;
      S[b + 1] += v[(size_t)y * w + x];
      C[b + 1] += 1;
    }
  for (int b = 0; b < nb; b++) {
    S[b + 1] += S[b];
    C[b + 1] += C[b];
  }
  double tot = S[nb], cnt = C[nb];
  int hb = (int)floor(hw / PHASE_BIN + 0.5);
  if (hb < 1)
    hb = 1;
  /* a fault band must cross the image, not graze a corner or an edge (where the window is
   * one-sided and the energy is high): at least half the widest band's pixels */
  double widest = 0;
  for (int b = 0; b <= nb; b++) {
    int lo = b - hb < 0 ? 0 : b - hb, hi = b + hb > nb ? nb : b + hb;
    widest = C[hi] - C[lo] > widest ? C[hi] - C[lo] : widest;
  }
  for (int b = 0; b <= nb; b++) {
    double o = b * PHASE_BIN - R, score;
    int side = 0;
    if (shape == SD_PHASE_SHAPE_FAULT) {
      int lo = b - hb < 0 ? 0 : b - hb, hi = b + hb > nb ? nb : b + hb;
      double sb = S[hi] - S[lo], cb = C[hi] - C[lo];
      if (cb < 0.024 * (double)n || cb < 0.5 * widest || cnt - cb < 0.25 * (double)n)
        continue;
      score = sb / cb - (tot - sb) / (cnt - cb);
    } else {
      double s1 = tot - S[b], n1 = cnt - C[b], s2 = S[b], n2 = C[b]; /* side 1: d > o */
      if (n1 < 0.1 * (double)n || n2 < 0.1 * (double)n)
        continue;
      double m1 = s1 / n1, m2 = s2 / n2;
      score = n1 * n2 * (m1 - m2) * (m1 - m2) / (cnt * cnt);
      side = m1 > m2 ? 1 : -1;
    }
    if (!isfinite(score))
      continue;
    if (!out->ok || score > out->score) {
      out->ok = 1;
      out->score = score;
      out->offset = o;
      out->high_side = side;
    }
  }
  free(S);
  return SD_OK;
}

/* winding number of the wrapped phase atan2(im, re) around the square of half side r centred on
 * each pixel (0 within r of the border), |n| * wt accumulated into acc */
static void winding(const float *ang, int h, int w, int r, double wt, float *acc) {
  for (int y = r; y < h - r; y++)
    for (int x = r; x < w - r; x++) {
      double tot = 0;
      int px = x - r, py = y - r; /* counter-clockwise in (x, y): right, down, left, up */
      double prev = ang[(size_t)py * w + px];
      for (int s = 0; s < 8 * r; s++) {
        int side = s / (2 * r);
        if (side == 0)
          px++;
        else if (side == 1)
          py++;
        else if (side == 2)
          px--;
        else
          py--;
        double cur = ang[(size_t)py * w + px], d = cur - prev;
        d -= 2.0 * M_PI * floor((d + M_PI) / (2.0 * M_PI));
        tot += d;
        prev = cur;
      }
      double k = fabs(floor(tot / (2.0 * M_PI) + 0.5));
      acc[(size_t)y * w + x] += (float)(k * wt);
    }
}

static sd_status detect_core(const float *img, int h, int w, const sd_lattice *lat,
                             const sd_phase_params *p, double period, float *work, uint8_t *out,
                             int *found) {
  double g[PHASE_MAX_FRINGES][2], wt[PHASE_MAX_FRINGES];
  int nf = pick_fringes(lat, p->fringes, g, wt);
  if (nf < 2)
    return SD_OK;
  size_t n = (size_t)h * w;
  float *re = work, *im = work + n, *ang = work + 2 * n, *tmp = work + 5 * n, *acc = work + 6 * n;
  int r = (int)floor(p->core_loop * period + 0.5);
  if (r < 2)
    r = 2;
  if (2 * r + 1 > h || 2 * r + 1 > w)
    return SD_OK;
  for (size_t i = 0; i < n; i++)
    acc[i] = 0;
  for (int f = 0; f < nf; f++) {
    demodulate(img, h, w, g[f], p->core_sigma * period, re, im, tmp);
    for (size_t i = 0; i < n; i++)
      ang[i] = (float)atan2(im[i], re[i]);
    winding(ang, h, w, r, wt[f], acc);
  }
  /* the core: the winding-weighted centroid (windings cluster within a loop of the core) */
  double sw = 0, sx = 0, sy = 0;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      double a = acc[(size_t)y * w + x];
      sw += a;
      sx += a * x;
      sy += a * y;
    }
  if (!(sw > 0))
    return SD_OK; /* no winding: no core found */
  double rad = p->core_radius * period;
  double ccx = sx / sw, ccy = sy / sw;
  int any = 0;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      any |= out[(size_t)y * w + x] = hypot(x - ccx, y - ccy) < rad;
  *found = any;
  return SD_OK;
}

sd_status sd_phase_detect(const float *img, int h, int w, const sd_lattice *lat,
                          const sd_phase_params *p, sd_phase_shape shape, float *work,
                          uint8_t *out, int *found) {
  if (!img || !lat || !p || !work || !out || !found || h < 1 || w < 1)
    return SD_ERROR(SD_ERR_ARG, "sd_phase_detect: bad argument");
  *found = 0;
  if (shape == SD_PHASE_SHAPE_NONE)
    return SD_OK;
  double period = sd_phase_period(lat);
  if (!(period > 0) || !isfinite(period))
    return SD_OK;
  if (shape == SD_PHASE_SHAPE_CORE)
    return detect_core(img, h, w, lat, p, period, work, out, found);
  size_t n = (size_t)h * w;
  float *energy = work + 6 * n;
  if (sd_phase_energy(img, h, w, lat, p->sigma * period, p->fringes, work, energy) < 2)
    return SD_OK;
  /* log energy: the twinned side's level varies by orders of magnitude, the matrix's does not */
  float med = sd_median(energy, n, work);
  double floor_e = 1e-3 * med + 1e-30;
  for (size_t i = 0; i < n; i++)
    energy[i] = (float)log(energy[i] + floor_e);
  /* the planes searched: those of the fringes of every peak direction, whatever their power */
  double g[PHASE_MAX_FRINGES][2], wt[PHASE_MAX_FRINGES];
  int nf = pick_fringes(lat, PHASE_MAX_FRINGES, g, wt);
  double hw = p->band_halfwidth * period;
  line_fit best = {0};
  double bnx = 0, bny = 0;
  for (int f = 0; f < nf; f++) {
    double len = hypot(g[f][0], g[f][1]);
    double nx = g[f][0] / len, ny = g[f][1] / len; /* the planes of fringe g are normal to g */
    line_fit lf = {0};
    SD_CHECK(best_line(energy, h, w, nx, ny, shape, hw, &lf));
    if (lf.ok && (!best.ok || lf.score > best.score)) {
      best = lf;
      bnx = nx;
      bny = ny;
    }
  }
  if (!best.ok || (shape == SD_PHASE_SHAPE_FAULT && !(best.score > 0)))
    return SD_OK; /* no band stands out: keep the caller's detection */
  double o = best.offset;
  if (shape == SD_PHASE_SHAPE_BOUNDARY)
    o -= best.high_side * p->boundary_shift * period;
  double cx = 0.5 * (w - 1), cy = 0.5 * (h - 1);
  int any = 0;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      double d = (x - cx) * bnx + (y - cy) * bny;
      any |= out[(size_t)y * w + x] = fabs(d - o) < hw;
    }
  *found = any;
  return SD_OK;
}
