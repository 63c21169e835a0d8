/* pseudolabel.c - detection of pixels that deviate from the bulk lattice, weak supervision by
 * the image class, the notebook baseline, morphology and IoU counting. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stemdefect/image.h"
#include "stemdefect/pseudolabel.h"

struct sd_pl {
  int h, w;
  sd_pl_params p;
  sd_deviation_ws *dev;
  float *norm;    /* (h, w) robust z-scored image */
  float *energy;  /* (h, w) smoothed deviation^2, then local RMS deviation */
  float *tmp;     /* (h, w) */
  float *scratch; /* (h, w) */
  uint8_t *btmp;  /* (h, w) */
  int32_t *lab, *stk;
  float *phase_work; /* sd_phase_work_floats(h, w), allocated on first use */
  int have_energy; /* the last sd_pl_image found a lattice (energy holds its local RMS deviation) */
};

void sd_pl_params_default(sd_pl_params *p) {
  sd_lattice_params_default(&p->lattice);
  sd_deviation_params_default(&p->deviation);
  p->smooth_sigma = 3.0;
  p->threshold = SD_PL_THRESHOLD_ROBUST_Z;
  p->threshold_value = 3.0;
  p->min_deviation = 1.6;
  p->open_steps = 1;
  p->close_steps = 1;
  p->min_area = 20;
  p->reference_tolerance = 0.1;
  p->grain_area = 0.08;
  p->grain_band = 5;
  p->fallback_fraction = 0.05;
  sd_phase_params_default(&p->phase);
  p->point_radius = 0.42;
  p->swap_window = 0.3;
  p->baseline_sigma = 1.0;
  p->baseline_box = 7;
  p->baseline_percentile = 98.0;
}

sd_status sd_pl_create(int h, int w, const sd_pl_params *p, sd_pl **out) {
  if (!out || !p)
    return SD_ERROR(SD_ERR_ARG, "sd_pl_create: NULL argument");
  *out = NULL;
  sd_pl *pl = sd_calloc(1, sizeof *pl, "pseudo-label workspace");
  if (!pl)
    return SD_ERR_NOMEM;
  pl->h = h;
  pl->w = w;
  pl->p = *p;
  sd_status st = sd_deviation_ws_create(h, w, &p->deviation, &pl->dev);
  if (st != SD_OK) {
    free(pl);
    SD_CHECK(st);
  }
  size_t n = (size_t)h * w;
  pl->norm = sd_malloc(n, sizeof(float), "normalised image");
  pl->energy = sd_malloc(n, sizeof(float), "deviation energy");
  pl->tmp = sd_malloc(n, sizeof(float), "scratch");
  pl->scratch = sd_malloc(n, sizeof(float), "scratch");
  pl->btmp = sd_malloc(n, 1, "morphology scratch");
  pl->lab = sd_malloc(n, sizeof(int32_t), "component labels");
  pl->stk = sd_malloc(n, sizeof(int32_t), "component stack");
  if (!pl->norm || !pl->energy || !pl->tmp || !pl->scratch || !pl->btmp || !pl->lab || !pl->stk) {
    sd_pl_destroy(&pl);
    return SD_ERR_NOMEM;
  }
  *out = pl;
  return SD_OK;
}

void sd_pl_destroy(sd_pl **plp) {
  if (!plp || !*plp)
    return;
  sd_pl *pl = *plp;
  sd_deviation_ws_destroy(&pl->dev);
  free(pl->norm);
  free(pl->energy);
  free(pl->tmp);
  free(pl->scratch);
  free(pl->btmp);
  free(pl->lab);
  free(pl->stk);
  free(pl->phase_work);
  free(pl);
  *plp = NULL;
}

const sd_deviation_ws *sd_pl_deviation_ws(const sd_pl *pl) {
  return pl ? pl->dev : NULL;
}

void sd_pl_erode(uint8_t *m, int h, int w, uint8_t *tmp) {
  memcpy(tmp, m, (size_t)h * w);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      uint8_t v = 1;
      for (int dy = -1; dy <= 1 && v; dy++)
        for (int dx = -1; dx <= 1; dx++) {
          int yy = y + dy, xx = x + dx;
          if (yy < 0 || xx < 0 || yy >= h || xx >= w)
            continue; /* border: no erosion from outside */
          if (!tmp[(size_t)yy * w + xx]) {
            v = 0;
            break;
          }
        }
      m[(size_t)y * w + x] = v;
    }
}

void sd_pl_dilate(uint8_t *m, int h, int w, uint8_t *tmp) {
  memcpy(tmp, m, (size_t)h * w);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      uint8_t v = 0;
      for (int dy = -1; dy <= 1 && !v; dy++)
        for (int dx = -1; dx <= 1; dx++) {
          int yy = y + dy, xx = x + dx;
          if (yy < 0 || xx < 0 || yy >= h || xx >= w)
            continue;
          if (tmp[(size_t)yy * w + xx]) {
            v = 1;
            break;
          }
        }
      m[(size_t)y * w + x] = v;
    }
}

/* 8-connected flood fill of the component of m holding seed: its pixels end up in
 * stack[0..count) (returned), labels[...] = 1 for them. */
static size_t flood(const uint8_t *m, int h, int w, size_t seed, int32_t *labels,
                    int32_t *stack) {
  size_t top = 0, count = 0;
  stack[top++] = (int32_t)seed;
  labels[seed] = 1;
  while (top > count) {
    int32_t p = stack[count++];
    int py = p / w, px = p % w;
    for (int dy = -1; dy <= 1; dy++)
      for (int dx = -1; dx <= 1; dx++) {
        int yy = py + dy, xx = px + dx;
        if (yy < 0 || xx < 0 || yy >= h || xx >= w)
          continue;
        size_t q = (size_t)yy * w + xx;
        if (m[q] && labels[q] < 0) {
          labels[q] = 1;
          stack[top++] = (int32_t)q;
        }
      }
  }
  return count;
}

int sd_pl_components_filter(uint8_t *m, int h, int w, int min_area, int32_t *labels,
                            int32_t *stack) {
  size_t n = (size_t)h * w;
  for (size_t i = 0; i < n; i++)
    labels[i] = -1;
  int kept = 0;
  for (size_t s = 0; s < n; s++) {
    if (!m[s] || labels[s] >= 0)
      continue;
    size_t count = flood(m, h, w, s, labels, stack);
    if ((int64_t)count < min_area)
      for (size_t k = 0; k < count; k++)
        m[stack[k]] = 0;
    else
      kept++;
  }
  return kept;
}

double sd_pl_otsu(const float *v, size_t n) {
  if (n == 0)
    return 0;
  float lo = v[0], hi = v[0];
  for (size_t i = 1; i < n; i++) {
    if (v[i] < lo)
      lo = v[i];
    if (v[i] > hi)
      hi = v[i];
  }
  if (!(hi > lo))
    return hi;
  enum { NB = 256 };
  double hist[NB] = {0};
  double scale = NB / ((double)hi - lo);
  for (size_t i = 0; i < n; i++) {
    int b = (int)((v[i] - lo) * scale);
    if (b >= NB)
      b = NB - 1;
    hist[b] += 1;
  }
  double total = (double)n, sum_all = 0;
  for (int b = 0; b < NB; b++)
    sum_all += b * hist[b];
  double w0 = 0, sum0 = 0, best = -1;
  int bt = 0;
  for (int b = 0; b < NB - 1; b++) {
    w0 += hist[b];
    sum0 += b * hist[b];
    double w1 = total - w0;
    if (w0 == 0 || w1 == 0)
      continue;
    double m0 = sum0 / w0, m1 = (sum_all - sum0) / w1;
    double between = w0 * w1 * (m0 - m1) * (m0 - m1);
    if (between > best) {
      best = between;
      bt = b;
    }
  }
  return lo + (bt + 1) / scale;
}

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* robust z-score of raw into out (scratch n floats) */
static void normalise(const float *raw, size_t n, float *out, float *scratch) {
  memcpy(out, raw, n * sizeof *out);
  if (sd_normalize_robust(out, n, scratch) != SD_OK) { /* cannot fail with a scratch given */
  }
}

/* openings, closings and the minimum component area of a detection */
static void clean(sd_pl *pl, uint8_t *m) {
  int h = pl->h, w = pl->w;
  const sd_pl_params *p = &pl->p;
  for (int k = 0; k < p->open_steps; k++)
    sd_pl_erode(m, h, w, pl->btmp);
  for (int k = 0; k < p->open_steps; k++)
    sd_pl_dilate(m, h, w, pl->btmp);
  for (int k = 0; k < p->close_steps; k++)
    sd_pl_dilate(m, h, w, pl->btmp);
  for (int k = 0; k < p->close_steps; k++)
    sd_pl_erode(m, h, w, pl->btmp);
  sd_pl_components_filter(m, h, w, p->min_area, pl->lab, pl->stk);
}

sd_status sd_pl_image(sd_pl *pl, const float *raw, const sd_lattice *reference, float *deviation,
                      uint8_t *detected, sd_lattice *lat_out, int *lattice_ok) {
  if (!pl || !raw || !deviation || !detected)
    return SD_ERROR(SD_ERR_ARG, "sd_pl_image: NULL argument");
  int h = pl->h, w = pl->w;
  size_t n = (size_t)h * w;
  const sd_pl_params *p = &pl->p;
  normalise(raw, n, pl->norm, pl->scratch);
  sd_lattice lat;
  sd_status st;
  if (reference)
    st = sd_lattice_refine(pl->norm, h, w, reference, p->reference_tolerance, &lat);
  else
    st = sd_lattice_estimate(pl->norm, h, w, &p->lattice, &lat);
  int ok = st == SD_OK;
  if (st == SD_ERR_FORMAT) { /* no lattice in this image: not fatal */
    sd_error_clear();
    st = SD_OK;
  }
  SD_CHECK(st);
  if (ok) {
    st = sd_lattice_deviation(pl->dev, pl->norm, &lat, deviation);
    if (st == SD_ERR_ARG) { /* a cell that does not fit: treat as no lattice */
      sd_error_clear();
      ok = 0;
    } else {
      SD_CHECK(st);
    }
  }
  if (lattice_ok)
    *lattice_ok = ok;
  if (lat_out) {
    if (ok)
      *lat_out = lat;
    else
      memset(lat_out, 0, sizeof *lat_out);
  }
  pl->have_energy = ok;
  if (!ok) {
    memcpy(deviation, pl->norm, n * sizeof *deviation);
    memset(detected, 0, n);
    return SD_OK;
  }
  /* local RMS deviation */
  for (size_t i = 0; i < n; i++)
    pl->energy[i] = deviation[i] * deviation[i];
  sd_gauss_blur(pl->energy, h, w, p->smooth_sigma, 1, pl->tmp, pl->energy);
  for (size_t i = 0; i < n; i++)
    pl->energy[i] = sqrtf(pl->energy[i]);
  double thr;
  if (p->threshold == SD_PL_THRESHOLD_OTSU) {
    thr = p->threshold_value * sd_pl_otsu(pl->energy, n);
  } else {
    memcpy(pl->scratch, pl->energy, n * sizeof(float));
    float med = sd_median(pl->scratch, n, pl->tmp);
    for (size_t i = 0; i < n; i++)
      pl->scratch[i] = fabsf(pl->energy[i] - med);
    float mad = sd_median(pl->scratch, n, pl->tmp);
    thr = med + p->threshold_value * 1.4826 * mad;
  }
  if (thr < p->min_deviation)
    thr = p->min_deviation;
  for (size_t i = 0; i < n; i++)
    detected[i] = pl->energy[i] > thr;
  clean(pl, detected);
  if (p->grain_area < 1.0)
    sd_pl_grain_boundaries(detected, h, w, (int)(p->grain_area * (double)n), p->grain_band, pl->lab,
                           pl->stk, pl->btmp);
  return SD_OK;
}

int sd_pl_fallback(sd_pl *pl, uint8_t *detected) {
  size_t n = (size_t)pl->h * pl->w;
  double f = pl->p.fallback_fraction;
  if (!(f > 0) || !pl->have_energy)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (detected[i])
      return 0;
  /* the (1 - f) quantile of the local RMS deviation (order statistic) */
  memcpy(pl->scratch, pl->energy, n * sizeof(float));
  qsort(pl->scratch, n, sizeof(float), cmp_float);
  size_t q = (size_t)((1.0 - (f < 1 ? f : 1)) * (double)(n - 1));
  float thr = pl->scratch[q];
  for (size_t i = 0; i < n; i++)
    detected[i] = pl->energy[i] >= thr;
  clean(pl, detected);
  for (size_t i = 0; i < n; i++)
    if (detected[i])
      return 1;
  return 0;
}

sd_status sd_pl_phase(sd_pl *pl, const sd_lattice *lat, sd_phase_shape shape, uint8_t *detected,
                      int *found) {
  if (!pl || !lat || !detected || !found)
    return SD_ERROR(SD_ERR_ARG, "sd_pl_phase: NULL argument");
  *found = 0;
  if (!pl->have_energy || shape == SD_PHASE_SHAPE_NONE)
    return SD_OK;
  if (!pl->phase_work) {
    pl->phase_work = sd_malloc(sd_phase_work_floats(pl->h, pl->w), sizeof(float), "phase work");
    if (!pl->phase_work)
      return SD_ERR_NOMEM;
  }
  /* pl->norm still holds the robust z-scored image of the last sd_pl_image */
  return sd_phase_detect(pl->norm, pl->h, pl->w, lat, &pl->p.phase, shape, pl->phase_work,
                         detected, found);
}

int sd_pl_points(sd_pl *pl, const sd_lattice *lat, uint8_t *m) {
  if (!pl || !lat || !m || !pl->have_energy)
    return 0;
  int h = pl->h, w = pl->w;
  size_t n = (size_t)h * w;
  double rad = pl->p.point_radius * sd_phase_period(lat);
  if (!(rad > 0) || !isfinite(rad))
    return 0;
  /* component peaks (centres in scratch as x, y pairs) */
  int32_t *lab = pl->lab, *stk = pl->stk;
  for (size_t i = 0; i < n; i++)
    lab[i] = -1;
  float *cen = pl->scratch; /* at most n / 2 components of >= 1 px: 2 floats each fit in n */
  int nc = 0;
  for (size_t s0 = 0; s0 < n; s0++) {
    if (!m[s0] || lab[s0] >= 0)
      continue;
    size_t count = flood(m, h, w, s0, lab, stk), best = s0;
    for (size_t k = 0; k < count; k++)
      if (pl->energy[stk[k]] > pl->energy[best])
        best = (size_t)stk[k];
    if ((size_t)(2 * nc + 2) <= n) {
      cen[2 * nc] = (float)(best % w);
      cen[2 * nc + 1] = (float)(best / w);
      nc++;
    }
  }
  memset(m, 0, n);
  double r2 = rad * rad;
  for (int k = 0; k < nc; k++) {
    double cx = cen[2 * k], cy = cen[2 * k + 1];
    int y0 = (int)floor(cy - rad), y1 = (int)ceil(cy + rad);
    int x0 = (int)floor(cx - rad), x1 = (int)ceil(cx + rad);
    for (int y = y0 < 0 ? 0 : y0; y <= y1 && y < h; y++)
      for (int x = x0 < 0 ? 0 : x0; x <= x1 && x < w; x++)
        if ((x - cx) * (x - cx) + (y - cy) * (y - cy) < r2)
          m[(size_t)y * w + x] = 1;
  }
  return nc;
}

/* the periodic motif at bin coordinates (x, y), bin i centred at x = i */
static double motif_bin(const float *mo, int M, double x, double y) {
  return sd_motif_sample(mo, M, (x + 0.5) / M, (y + 0.5) / M);
}

int sd_pl_swap(sd_pl *pl, const sd_lattice *lat, uint8_t *m) {
  if (!pl || !lat || !m || !pl->have_energy)
    return 0;
  const sd_deviation_ws *ws = pl->dev;
  int h = pl->h, w = pl->w, M = ws->p.motif_resolution;
  size_t n = (size_t)h * w;
  double period = sd_phase_period(lat);
  if (!(period > 0) || !isfinite(period))
    return 0;
  const float *mo = ws->motif;
  /* the centre of the 180-degree rotation that best maps the motif onto itself: for a
   * two-column basis (a CdTe dumbbell) its midpoint, where the rotation swaps the columns.
   * Rotations about half-bin points map bin i to (c - 1 - i) mod M exactly. */
  double mean = 0, lo = mo[0], hi = mo[0];
  for (int i = 0; i < M * M; i++) {
    mean += mo[i];
    lo = mo[i] < lo ? mo[i] : lo;
    hi = mo[i] > hi ? mo[i] : hi;
  }
  mean /= (double)M * M;
  if (!(hi > lo))
    return 0;
  /* c and c + M give the same map: M x M candidates; the sum over bins is strided for a fine
   * motif (at most 32 x 32 terms), the refinement below uses every bin */
  int bi = 0, bj = 0, st = M > 32 ? M / 32 : 1;
  double best = -INFINITY;
  for (int cj = 0; cj < M; cj++)
    for (int ci = 0; ci < M; ci++) {
      double c = 0;
      for (int j = 0; j < M; j += st) {
        int jj = (((cj - 1 - j) % M) + M) % M;
        for (int i = 0; i < M; i += st) {
          int ii = (((ci - 1 - i) % M) + M) % M;
          c += (mo[j * M + i] - mean) * (mo[jj * M + ii] - mean);
        }
      }
      if (c > best) {
        best = c;
        bi = ci;
        bj = cj;
      }
    }
  if (!pl->phase_work) {
    pl->phase_work = sd_malloc(sd_phase_work_floats(h, w), sizeof(float), "phase work");
    if (!pl->phase_work) {
      sd_error_clear();
      return 0;
    }
  }
  float *rot = sd_malloc((size_t)M * M, sizeof *rot, "rotated motif");
  if (!rot) {
    sd_error_clear();
    return 0;
  }
  float *P = pl->phase_work, *T = P + n, *num = T + n, *den = num + n;
  /* refine the centre to a tenth of a bin (bilinear, periodic), so that a column that sits
   * between bin centres still rotates onto itself */
  double cu = bi * 0.5, cv = bj * 0.5, bestc = -INFINITY; /* in bins: rotation i -> 2c - 1 - i */
  double c0u = cu, c0v = cv;
  for (int dv = -5; dv <= 5; dv++)
    for (int du = -5; du <= 5; du++) {
      double u0 = c0u + 0.1 * du, v0 = c0v + 0.1 * dv, c = 0;
      for (int j = 0; j < M; j++)
        for (int i = 0; i < M; i++)
          c += (mo[j * M + i] - mean) * (motif_bin(mo, M, 2 * u0 - 1 - i, 2 * v0 - 1 - j) - mean);
      if (c > bestc) {
        bestc = c;
        cu = u0;
        cv = v0;
      }
    }
  double var = 0, diff = 0;
  for (int j = 0; j < M; j++)
    for (int i = 0; i < M; i++) {
      rot[j * M + i] = (float)motif_bin(mo, M, 2 * cu - 1 - i, 2 * cv - 1 - j);
      double d = rot[j * M + i] - mo[j * M + i];
      diff += d * d;
      var += (mo[j * M + i] - mean) * (mo[j * M + i] - mean);
    }
  if (!(var > 0) || !(diff > 1e-6 * var)) {
    free(rot);
    return 0; /* the rotation leaves the motif unchanged: nothing to swap */
  }
  /* T = what the image would change by where a cell's columns are swapped */
  sd_motif_render(mo, M, lat, ws->shift, h, w, P, NULL);
  sd_motif_render(rot, M, lat, ws->shift, h, w, T, NULL);
  free(rot);
  for (size_t i = 0; i < n; i++) {
    T[i] = ws->gain[i] * (T[i] - P[i]);
    num[i] = ws->residual[i] * T[i];
    den[i] = ws->noise[i] * ws->noise[i] * T[i] * T[i];
  }
  /* matched filter over about one cell: SNR of the swap amplitude */
  double sig = pl->p.swap_window * period;
  sd_gauss_blur(num, h, w, sig, 0, pl->tmp, num);
  sd_gauss_blur(den, h, w, sig, 0, pl->tmp, den);
  size_t arg = 0;
  double zbest = -INFINITY;
  for (size_t i = 0; i < n; i++) {
    double z = den[i] > 0 ? num[i] / sqrt(den[i]) : 0;
    if (z > zbest) {
      zbest = z;
      arg = i;
    }
  }
  if (!(zbest > 0))
    return 0;
  double cx = (double)(arg % w), cy = (double)(arg / w), rad = pl->p.point_radius * period;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      m[(size_t)y * w + x] = (x - cx) * (x - cx) + (y - cy) * (y - cy) < rad * rad;
  return 1;
}

void sd_pl_baseline(sd_pl *pl, const float *raw, uint8_t *detected) {
  int h = pl->h, w = pl->w, r = pl->p.baseline_box / 2;
  pl->have_energy = 0; /* norm and energy are overwritten below */
  size_t n = (size_t)h * w;
  normalise(raw, n, pl->norm, pl->scratch);
  sd_gauss_blur(pl->norm, h, w, pl->p.baseline_sigma, 1, pl->tmp, pl->energy);
  /* box mean over the part of the window inside the image */
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      double s = 0;
      int c = 0;
      for (int yy = y - r; yy <= y + r; yy++) {
        if (yy < 0 || yy >= h)
          continue;
        for (int xx = x - r; xx <= x + r; xx++) {
          if (xx < 0 || xx >= w)
            continue;
          s += pl->norm[(size_t)yy * w + xx];
          c++;
        }
      }
      size_t i = (size_t)y * w + x;
      pl->scratch[i] = fabsf(pl->energy[i] - (float)(s / c));
    }
  memcpy(pl->tmp, pl->scratch, n * sizeof(float));
  qsort(pl->tmp, n, sizeof(float), cmp_float);
  /* percentile by linear interpolation between order statistics (numpy's default) */
  double pos = pl->p.baseline_percentile / 100.0 * (double)(n - 1);
  size_t i0 = (size_t)pos;
  double thr = pl->tmp[i0];
  if (i0 + 1 < n)
    thr += (pos - i0) * (pl->tmp[i0 + 1] - pl->tmp[i0]);
  for (size_t i = 0; i < n; i++)
    detected[i] = pl->scratch[i] > thr;
}

int sd_pl_grain_boundaries(uint8_t *m, int h, int w, int max_area, int band, int32_t *labels,
                           int32_t *stack, uint8_t *tmp) {
  size_t n = (size_t)h * w;
  for (size_t i = 0; i < n; i++)
    labels[i] = -1;
  int grains = 0;
  /* label components; a component larger than max_area is a grain: mark it 2 */
  for (size_t s = 0; s < n; s++) {
    if (!m[s] || labels[s] >= 0)
      continue;
    size_t count = flood(m, h, w, s, labels, stack);
    if ((int64_t)count > max_area) {
      grains++;
      for (size_t k = 0; k < count; k++)
        m[stack[k]] = 2;
    }
  }
  if (!grains)
    return 0;
  /* boundary of the grains towards undetected pixels inside the image */
  uint8_t *bd = tmp;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      size_t i = (size_t)y * w + x;
      uint8_t b = 0;
      if (m[i] == 2) {
        if ((x > 0 && !m[i - 1]) || (x + 1 < w && !m[i + 1]) || (y > 0 && !m[i - w]) ||
            (y + 1 < h && !m[i + w]))
          b = 1;
      }
      bd[i] = b;
    }
  /* the band: the boundary dilated band times (3x3), on both sides of it; labels as scratch */
  uint8_t *scr = (uint8_t *)labels;
  for (int k = 0; k < band; k++)
    sd_pl_dilate(bd, h, w, scr);
  for (size_t i = 0; i < n; i++)
    m[i] = (m[i] == 1) || bd[i];
  return grains;
}

void sd_pl_mask(const uint8_t *detected, size_t n, int32_t label, int bulk_class, uint8_t *mask) {
  if (label < 0 || label == bulk_class || label > 255) {
    memset(mask, 0, n);
    return;
  }
  for (size_t i = 0; i < n; i++)
    mask[i] = detected[i] ? (uint8_t)label : 0;
}

void sd_pl_iou_accumulate(const uint8_t *pred, const uint8_t *truth, size_t n, int nc,
                          int64_t *inter, int64_t *uni) {
  for (size_t i = 0; i < n; i++) {
    int a = pred[i], b = truth[i];
    if (a == b) {
      if (a < nc) {
        inter[a]++;
        uni[a]++;
      }
    } else {
      if (a < nc)
        uni[a]++;
      if (b < nc)
        uni[b]++;
    }
  }
}
