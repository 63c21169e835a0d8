/* motif.c - the average unit cell (median fold onto the lattice), its re-tiling into a
 * defect-free prediction, local registration (gain, offset, shift per pixel by Gaussian-
 * windowed least squares) and the noise-normalised deviation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stemdefect/lattice.h"

void sd_deviation_params_default(sd_deviation_params *p) {
  p->motif_resolution = 16;
  p->reg_radius = 2.0;
  p->reg_window = 12.0;
  p->reg_iterations = 3;
  p->fold_iterations = 2;
  p->noise_window = 21;
  p->noise_ratio_max = 1.2;
}

enum { NPROD = 14 }; /* 10 entries of the symmetric 4x4 normal matrix + 4 right-hand sides */

sd_status sd_deviation_ws_create(int h, int w, const sd_deviation_params *p,
                                 sd_deviation_ws **out) {
  if (!out || !p || h < 8 || w < 8)
    return SD_ERROR(SD_ERR_ARG, "deviation workspace needs an image of at least 8x8 pixels");
  if (p->motif_resolution < 2 || p->motif_resolution > 256 || p->fold_iterations < 1 ||
      p->noise_window < 3 || p->reg_iterations < 0)
    return SD_ERROR(SD_ERR_ARG,
                    "deviation parameters out of range (motif resolution %d, fold "
                    "iterations %d, noise window %d)",
                    p->motif_resolution, p->fold_iterations, p->noise_window);
  sd_deviation_ws *ws = sd_calloc(1, sizeof *ws, "deviation workspace");
  if (!ws)
    return SD_ERR_NOMEM;
  size_t n = (size_t)h * w;
  ws->h = h;
  ws->w = w;
  ws->p = *p;
  int m = p->motif_resolution;
  ws->motif = sd_malloc((size_t)m * m, sizeof(float), "motif");
  ws->predicted = sd_malloc(n, sizeof(float), "prediction");
  ws->residual = sd_malloc(n, sizeof(float), "residual");
  ws->noise = sd_malloc(n, sizeof(float), "noise map");
  ws->shift = sd_malloc(2 * n, sizeof(float), "shift field");
  ws->gain = sd_malloc(n, sizeof(float), "gain map");
  ws->offset = sd_malloc(n, sizeof(float), "offset map");
  ws->grad = sd_malloc(2 * n, sizeof(float), "gradient");
  ws->prod = sd_malloc(NPROD * n, sizeof(float), "registration products");
  ws->tmp = sd_malloc(n, sizeof(float), "blur scratch");
  ws->weight = sd_malloc(n, sizeof(float), "robust weights");
  ws->line = sd_malloc((size_t)(h > w ? h : w) + 1, sizeof(double), "box-sum scratch");
  if (!ws->motif || !ws->predicted || !ws->residual || !ws->noise || !ws->shift || !ws->gain ||
      !ws->offset || !ws->grad || !ws->prod || !ws->tmp || !ws->weight || !ws->line) {
    sd_deviation_ws_destroy(&ws);
    return SD_ERR_NOMEM;
  }
  *out = ws;
  return SD_OK;
}

void sd_deviation_ws_destroy(sd_deviation_ws **wsp) {
  if (!wsp || !*wsp)
    return;
  sd_deviation_ws *ws = *wsp;
  free(ws->motif);
  free(ws->predicted);
  free(ws->residual);
  free(ws->noise);
  free(ws->shift);
  free(ws->gain);
  free(ws->offset);
  free(ws->grad);
  free(ws->prod);
  free(ws->tmp);
  free(ws->weight);
  free(ws->line);
  free(ws->samples);
  free(ws);
  *wsp = NULL;
}

/* ---- helpers ---------------------------------------------------------------------------- */

static void swapf(float *a, float *b) {
  float t = *a;
  *a = *b;
  *b = t;
}

/* k-th smallest of v[0..n-1] (reorders v). */
static float select_kth(float *v, size_t n, size_t k) {
  size_t lo = 0, hi = n - 1;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (v[mid] < v[lo])
      swapf(&v[mid], &v[lo]);
    if (v[hi] < v[lo])
      swapf(&v[hi], &v[lo]);
    if (v[hi] < v[mid])
      swapf(&v[hi], &v[mid]);
    float piv = v[mid];
    size_t i = lo, j = hi;
    while (i <= j) {
      while (v[i] < piv)
        i++;
      while (v[j] > piv)
        j--;
      if (i <= j) {
        swapf(&v[i], &v[j]);
        i++;
        if (j == 0)
          break;
        j--;
      }
    }
    if (k <= j)
      hi = j;
    else if (k >= i)
      lo = i;
    else
      return v[k];
  }
  return v[k];
}

/* Median (the mean of the two middle values for even n); reorders v. n >= 1. */
static float median_inplace(float *v, size_t n) {
  float a = select_kth(v, n, n / 2);
  if (n % 2)
    return a;
  float b = v[0];
  for (size_t i = 1; i < n / 2; i++) /* largest of the lower half after the selection */
    if (v[i] > b)
      b = v[i];
  return 0.5f * (a + b);
}

static int grow(float **buf, size_t *cap, size_t need) {
  if (need <= *cap)
    return 1;
  float *nb = sd_realloc(*buf, need, sizeof(float), "fold samples");
  if (!nb)
    return 0;
  *buf = nb;
  *cap = need;
  return 1;
}

/* Bilinear sample of (h, w) at (x, y), clamped to the image. */
static float bilerp(const float *img, int h, int w, double x, double y) {
  if (x < 0)
    x = 0;
  if (y < 0)
    y = 0;
  if (x > w - 1)
    x = w - 1;
  if (y > h - 1)
    y = h - 1;
  int x0 = (int)x, y0 = (int)y;
  if (x0 > w - 2)
    x0 = w - 2;
  if (y0 > h - 2)
    y0 = h - 2;
  double fx = x - x0, fy = y - y0;
  const float *r0 = img + (size_t)y0 * w, *r1 = r0 + w;
  return (float)((1 - fy) * ((1 - fx) * r0[x0] + fx * r0[x0 + 1]) +
                 fy * ((1 - fx) * r1[x0] + fx * r1[x0 + 1]));
}

/* Bilinear sample of the shift field (h, w, 2) at (x, y). */
static void shift_at(const float *s, int h, int w, double x, double y, double out[2]) {
  if (x < 0)
    x = 0;
  if (y < 0)
    y = 0;
  if (x > w - 1)
    x = w - 1;
  if (y > h - 1)
    y = h - 1;
  int x0 = (int)x, y0 = (int)y;
  if (x0 > w - 2)
    x0 = w - 2;
  if (y0 > h - 2)
    y0 = h - 2;
  double fx = x - x0, fy = y - y0;
  for (int c = 0; c < 2; c++) {
    const float *r0 = s + ((size_t)y0 * w) * 2 + c, *r1 = r0 + (size_t)w * 2;
    out[c] = (1 - fy) * ((1 - fx) * r0[2 * x0] + fx * r0[2 * x0 + 2]) +
             fy * ((1 - fx) * r1[2 * x0] + fx * r1[2 * x0 + 2]);
  }
}

float sd_motif_sample(const float *motif, int m, double f1, double f2) {
  double u = (f1 - floor(f1)) * m - 0.5, v = (f2 - floor(f2)) * m - 0.5;
  int i0 = (int)floor(u), j0 = (int)floor(v);
  double fu = u - i0, fv = v - j0;
  int i1 = i0 + 1, j1 = j0 + 1;
  i0 = (i0 % m + m) % m;
  i1 = (i1 % m + m) % m;
  j0 = (j0 % m + m) % m;
  j1 = (j1 % m + m) % m;
  return (float)((1 - fv) * ((1 - fu) * motif[j0 * m + i0] + fu * motif[j0 * m + i1]) +
                 fv * ((1 - fu) * motif[j1 * m + i0] + fu * motif[j1 * m + i1]));
}

/* ---- fold and render -------------------------------------------------------------------- */

sd_status sd_motif_fold(const float *img, int h, int w, const sd_lattice *lat, int m,
                        const float *shift, const float *gain, const float *offset, float *motif,
                        float **samples, size_t *cap) {
  double cx[4] = {0, w - 1, 0, w - 1}, cy[4] = {0, 0, h - 1, h - 1};
  double f1lo = 1e300, f1hi = -1e300, f2lo = 1e300, f2hi = -1e300;
  for (int c = 0; c < 4; c++) {
    double f1 = lat->b1[0] * cx[c] + lat->b1[1] * cy[c],
           f2 = lat->b2[0] * cx[c] + lat->b2[1] * cy[c];
    f1lo = fmin(f1lo, f1);
    f1hi = fmax(f1hi, f1);
    f2lo = fmin(f2lo, f2);
    f2hi = fmax(f2hi, f2);
  }
  long n1a = (long)floor(f1lo) - 1, n1b = (long)ceil(f1hi) + 1;
  long n2a = (long)floor(f2lo) - 1, n2b = (long)ceil(f2hi) + 1;
  size_t need = (size_t)(n1b - n1a + 1) * (size_t)(n2b - n2a + 1);
  if (need > ((size_t)1 << 31))
    return SD_ERROR(SD_ERR_ARG, "lattice too fine for the fold (%zu cells)", need);
  if (!grow(samples, cap, need))
    return SD_ERR_NOMEM;
  float *sv = *samples;
  double sum = 0;
  int nsum = 0;
  for (int j = 0; j < m; j++)
    for (int i = 0; i < m; i++) {
      double u = (i + 0.5) / m, v = (j + 0.5) / m;
      size_t n = 0;
      for (long n1 = n1a; n1 <= n1b; n1++)
        for (long n2 = n2a; n2 <= n2b; n2++) {
          double qx = (u + n1) * lat->a1[0] + (v + n2) * lat->a2[0];
          double qy = (u + n1) * lat->a1[1] + (v + n2) * lat->a2[1];
          if (qx < 0 || qy < 0 || qx > w - 1 || qy > h - 1)
            continue;
          double x = qx, y = qy;
          if (shift) {
            double s[2];
            shift_at(shift, h, w, qx, qy, s);
            x += s[0];
            y += s[1];
            if (x < 0 || y < 0 || x > w - 1 || y > h - 1)
              continue;
          }
          float val = bilerp(img, h, w, x, y);
          if (gain && offset) {
            float g = bilerp(gain, h, w, qx, qy), o = bilerp(offset, h, w, qx, qy);
            val = (val - o) / (g > 0.05f ? g : 0.05f);
          }
          sv[n++] = val;
        }
      float med = n ? median_inplace(sv, n) : NAN;
      motif[j * m + i] = med;
      if (n) {
        sum += med;
        nsum++;
      }
    }
  if (nsum == 0)
    return SD_ERROR(SD_ERR_ARG, "lattice cell does not fit in a %dx%d image", w, h);
  for (int i = 0; i < m * m; i++)
    if (isnan(motif[i]))
      motif[i] = (float)(sum / nsum);
  return SD_OK;
}

void sd_motif_render(const float *motif, int m, const sd_lattice *lat, const float *shift, int h,
                     int w, float *out, float *grad) {
  const double *b1 = lat->b1, *b2 = lat->b2;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      size_t i = (size_t)y * w + x;
      double qx = x, qy = y;
      if (shift) {
        qx -= shift[2 * i];
        qy -= shift[2 * i + 1];
      }
      double f1 = b1[0] * qx + b1[1] * qy, f2 = b2[0] * qx + b2[1] * qy;
      out[i] = sd_motif_sample(motif, m, f1, f2);
      if (grad) {
        /* central differences over +-0.5 px */
        double hx1 = 0.5 * b1[0], hx2 = 0.5 * b2[0], hy1 = 0.5 * b1[1], hy2 = 0.5 * b2[1];
        grad[2 * i] =
            sd_motif_sample(motif, m, f1 + hx1, f2 + hx2) -
            sd_motif_sample(motif, m, f1 - hx1, f2 - hx2);
        grad[2 * i + 1] =
            sd_motif_sample(motif, m, f1 + hy1, f2 + hy2) -
            sd_motif_sample(motif, m, f1 - hy1, f2 - hy2);
      }
    }
}

/* ---- registration ----------------------------------------------------------------------- */

/* Solves the 4x4 system a x = b (a symmetric, given as 10 entries) by Gaussian elimination
 * with partial pivoting. Returns 0 when singular. */
static int solve4(const double e[10], const double b[4], double x[4]) {
  double a[4][5];
  int idx = 0;
  for (int r = 0; r < 4; r++)
    for (int c = r; c < 4; c++) {
      a[r][c] = a[c][r] = e[idx++];
    }
  for (int r = 0; r < 4; r++)
    a[r][4] = b[r];
  for (int c = 0; c < 4; c++) {
    int piv = c;
    for (int r = c + 1; r < 4; r++)
      if (fabs(a[r][c]) > fabs(a[piv][c]))
        piv = r;
    if (fabs(a[piv][c]) < 1e-12)
      return 0;
    if (piv != c)
      for (int k = 0; k < 5; k++) {
        double t = a[c][k];
        a[c][k] = a[piv][k];
        a[piv][k] = t;
      }
    for (int r = c + 1; r < 4; r++) {
      double f = a[r][c] / a[c][c];
      for (int k = c; k < 5; k++)
        a[r][k] -= f * a[c][k];
    }
  }
  for (int r = 3; r >= 0; r--) {
    double s = a[r][4];
    for (int k = r + 1; k < 4; k++)
      s -= a[r][k] * x[k];
    x[r] = s / a[r][r];
  }
  return 1;
}

/* 1.4826 * median(|v - median(v)|) of n values (copied into scratch). */
static float robust_sigma(const float *v, size_t n, float *scratch) {
  memcpy(scratch, v, n * sizeof *scratch);
  float med = median_inplace(scratch, n);
  for (size_t i = 0; i < n; i++)
    scratch[i] = fabsf(v[i] - med);
  return 1.4826f * median_inplace(scratch, n);
}

/* Windowed sum approximating a Gaussian of standard deviation sigma: three box sums of
 * radius b ((2b+1)^2 - 1 = 4 sigma^2, so the variance is about sigma^2) along rows, then
 * along columns, with zeros outside the image (the window is the part inside). O(1) per pixel
 * whatever sigma. line: max(h, w) + 1 doubles of scratch. In place on v (h, w). */
static void box3_sum(float *v, int h, int w, double sigma, double *line) {
  int b = (int)lround((sqrt(4.0 * sigma * sigma + 1.0) - 1.0) / 2.0);
  if (b < 1)
    b = 1;
  for (int pass = 0; pass < 3; pass++) {
    for (int y = 0; y < h; y++) {
      float *row = v + (size_t)y * w;
      line[0] = 0;
      for (int x = 0; x < w; x++)
        line[x + 1] = line[x] + row[x];
      for (int x = 0; x < w; x++) {
        int lo = x - b < 0 ? 0 : x - b, hi = x + b >= w ? w - 1 : x + b;
        row[x] = (float)(line[hi + 1] - line[lo]);
      }
    }
    for (int x = 0; x < w; x++) {
      line[0] = 0;
      for (int y = 0; y < h; y++)
        line[y + 1] = line[y] + v[(size_t)y * w + x];
      for (int y = 0; y < h; y++) {
        int lo = y - b < 0 ? 0 : y - b, hi = y + b >= h ? h - 1 : y + b;
        v[(size_t)y * w + x] = (float)(line[hi + 1] - line[lo]);
      }
    }
  }
}

/* One Gauss-Newton step of the local registration. */
static void register_step(sd_deviation_ws *ws, const float *img, const sd_lattice *lat) {
  int h = ws->h, w = ws->w, m = ws->p.motif_resolution;
  size_t n = (size_t)h * w;
  float *P = ws->predicted, *G = ws->grad, *wt = ws->weight;
  sd_motif_render(ws->motif, m, lat, ws->shift, h, w, P, G);
  for (size_t i = 0; i < n; i++)
    ws->residual[i] = img[i] - (ws->gain[i] * P[i] + ws->offset[i]);
  float sig = robust_sigma(ws->residual, n, ws->tmp);
  if (!(sig > 1e-12f))
    sig = 1e-12f;
  for (size_t i = 0; i < n; i++) {
    float z = ws->residual[i] / (3.0f * sig);
    wt[i] = 1.0f / (1.0f + z * z);
  }
  float *pr = ws->prod;
  for (size_t i = 0; i < n; i++) {
    float phi[4] = {P[i], 1.0f, -G[2 * i], -G[2 * i + 1]};
    int k = 0;
    for (int a = 0; a < 4; a++)
      for (int b = a; b < 4; b++)
        pr[(size_t)(k++) * n + i] = wt[i] * phi[a] * phi[b];
    for (int a = 0; a < 4; a++)
      pr[(size_t)(10 + a) * n + i] = wt[i] * phi[a] * img[i];
  }
  for (int k = 0; k < NPROD; k++)
    box3_sum(pr + (size_t)k * n, h, w, ws->p.reg_window, ws->line);
  double rad = ws->p.reg_radius;
  for (size_t i = 0; i < n; i++) {
    double e[10], b[4], x[4];
    for (int k = 0; k < 10; k++)
      e[k] = pr[(size_t)k * n + i];
    for (int a = 0; a < 4; a++)
      b[a] = pr[(size_t)(10 + a) * n + i];
    /* ridge: keeps flat regions (no gradient) and the borders well posed; entries 0, 4, 7, 9
     * are the diagonal of the packed upper triangle */
    double tr = e[7] + e[9];
    e[0] *= 1.0 + 1e-6;
    e[4] *= 1.0 + 1e-6;
    e[7] += 1e-3 * tr + 1e-9;
    e[9] += 1e-3 * tr + 1e-9;
    if (!solve4(e, b, x))
      continue;
    double g = x[0];
    if (!(g > 0.05) || !isfinite(g))
      continue;
    ws->gain[i] = (float)g;
    ws->offset[i] = (float)x[1];
    if (rad > 0) {
      double sx = ws->shift[2 * i] + x[2] / g, sy = ws->shift[2 * i + 1] + x[3] / g;
      double r = sqrt(sx * sx + sy * sy);
      if (r > rad) {
        sx *= rad / r;
        sy *= rad / r;
      }
      ws->shift[2 * i] = (float)sx;
      ws->shift[2 * i + 1] = (float)sy;
    }
  }
}

/* Local noise: 1.4826 MAD of the residual in a window, on a grid, bilinear in between. */
static sd_status local_noise(sd_deviation_ws *ws) {
  int h = ws->h, w = ws->w, nw = ws->p.noise_window, half = nw / 2;
  size_t n = (size_t)h * w;
  if (!grow(&ws->samples, &ws->samples_cap, (size_t)nw * nw > n ? (size_t)nw * nw : n))
    return SD_ERR_NOMEM;
  float global = robust_sigma(ws->residual, n, ws->samples);
  double ratio = ws->p.noise_ratio_max >= 1.0 ? ws->p.noise_ratio_max : 1.0;
  float floor_sig = (float)(global / ratio) > 1e-6f ? (float)(global / ratio) : 1e-6f;
  float ceil_sig = (float)(global * ratio) > floor_sig ? (float)(global * ratio) : floor_sig;
  int step = nw / 4 > 1 ? nw / 4 : 1;
  int gw = (w - 1) / step + 2, gh = (h - 1) / step + 2;
  /* grid values stored in tmp (gw * gh <= h * w as step >= 1 ... ensure) */
  if ((size_t)gw * gh > n)
    return SD_ERROR(SD_ERR_INTERNAL, "noise grid larger than the image");
  float *grid = ws->tmp;
  for (int gy = 0; gy < gh; gy++)
    for (int gx = 0; gx < gw; gx++) {
      int cx = gx * step < w ? gx * step : w - 1, cy = gy * step < h ? gy * step : h - 1;
      int x0 = cx - half < 0 ? 0 : cx - half, x1 = cx + half >= w ? w - 1 : cx + half;
      int y0 = cy - half < 0 ? 0 : cy - half, y1 = cy + half >= h ? h - 1 : cy + half;
      size_t k = 0;
      for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++)
          ws->samples[k++] = ws->residual[(size_t)y * w + x];
      float med = median_inplace(ws->samples, k);
      for (size_t q = 0; q < k; q++)
        ws->samples[q] = fabsf(ws->samples[q] - med);
      float s = 1.4826f * median_inplace(ws->samples, k);
      grid[gy * gw + gx] = s < floor_sig ? floor_sig : s > ceil_sig ? ceil_sig : s;
    }
  for (int y = 0; y < h; y++) {
    double gyf = (double)y / step;
    int gy0 = (int)gyf;
    if (gy0 > gh - 2)
      gy0 = gh - 2;
    double fy = gyf - gy0;
    for (int x = 0; x < w; x++) {
      double gxf = (double)x / step;
      int gx0 = (int)gxf;
      if (gx0 > gw - 2)
        gx0 = gw - 2;
      double fx = gxf - gx0;
      const float *r0 = grid + gy0 * gw, *r1 = r0 + gw;
      ws->noise[(size_t)y * w + x] = (float)((1 - fy) * ((1 - fx) * r0[gx0] + fx * r0[gx0 + 1]) +
                                             fy * ((1 - fx) * r1[gx0] + fx * r1[gx0 + 1]));
    }
  }
  return SD_OK;
}

sd_status sd_lattice_deviation(sd_deviation_ws *ws, const float *img, const sd_lattice *lat,
                               float *deviation) {
  if (!ws || !img || !lat || !deviation)
    return SD_ERROR(SD_ERR_ARG, "sd_lattice_deviation: NULL argument");
  int h = ws->h, w = ws->w, m = ws->p.motif_resolution;
  size_t n = (size_t)h * w;
  for (size_t i = 0; i < n; i++) {
    ws->shift[2 * i] = ws->shift[2 * i + 1] = 0.0f;
    ws->gain[i] = 1.0f;
    ws->offset[i] = 0.0f;
  }
  for (int f = 0; f < ws->p.fold_iterations; f++) {
    int registered = f > 0 && ws->p.reg_iterations > 0;
    SD_CHECK(sd_motif_fold(img, h, w, lat, m, registered ? ws->shift : NULL,
                           registered ? ws->gain : NULL, registered ? ws->offset : NULL, ws->motif,
                           &ws->samples, &ws->samples_cap));
    for (int it = 0; it < ws->p.reg_iterations; it++)
      register_step(ws, img, lat);
  }
  sd_motif_render(ws->motif, m, lat, ws->shift, h, w, ws->predicted, NULL);
  for (size_t i = 0; i < n; i++) {
    ws->predicted[i] = ws->gain[i] * ws->predicted[i] + ws->offset[i];
    ws->residual[i] = img[i] - ws->predicted[i];
  }
  SD_CHECK(local_noise(ws));
  double ss = 0;
  for (size_t i = 0; i < n; i++) {
    deviation[i] = ws->residual[i] / ws->noise[i];
    ss += (double)deviation[i] * deviation[i];
  }
  ws->residual_rms = sqrt(ss / (double)n);
  return SD_OK;
}
