/* test_nn_winograd.c - the Winograd F(2x2, 3x3) and F(4x4, 3x3) convolution kernels (forward,
 * input gradient, weight and bias gradients, add and overwrite variants) against
 * double-precision naive loops, over paddings 0..2, odd sizes and sizes not a multiple of the
 * tile (partial tiles), one and several images, chunk boundaries inside an image, across
 * images and at image boundaries; and the dispatching sd_nn_conv2d_* entry points on
 * geometries that pick each tile size.
 *
 * Error measure: max |result - reference| / max |reference| over each output array.
 * Tolerance: 1e-5 for F(2x2) (observed <= 1e-6), 2e-5 for F(4x4) (observed <= 8e-6 here: its
 * transform coefficients reach 8, see nn_winograd4.c). The rms relative error is printed too. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sd_test.h"
#include "stemdefect/nn_kernels.h"
#include "stemdefect/rng.h"

static void fill_rand(sd_rng *r, float *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    p[i] = (float)sd_rng_range(r, -1.0, 1.0);
}

#define X(i, c, y, x) ((((size_t)(i)*g->c + (c)) * g->h + (y)) * g->w + (x))
#define Y(i, o, y, x) ((((size_t)(i)*g->oc + (o)) * g->oh + (y)) * g->ow + (x))
#define W(o, c, y, x) ((((size_t)(o)*g->c + (c)) * 3 + (y)) * 3 + (x))

/* y = conv(x, w) + b; dx = conv^T(dy); dw = sum dy x; db = sum dy; all in double. */
static void naive(const sd_nn_conv_geom *g, int n, const float *x, const float *w, const float *b,
                  const float *dy, double *y, double *dx, double *dw, double *db) {
  memset(dx, 0, sizeof(double) * (size_t)n * g->c * g->h * g->w);
  memset(dw, 0, sizeof(double) * (size_t)g->oc * g->c * 9);
  memset(db, 0, sizeof(double) * (size_t)g->oc);
  for (int i = 0; i < n; i++)
    for (int o = 0; o < g->oc; o++)
      for (int oy = 0; oy < g->oh; oy++)
        for (int ox = 0; ox < g->ow; ox++) {
          double s = b ? b[o] : 0.0, d = dy[Y(i, o, oy, ox)];
          db[o] += d;
          for (int c = 0; c < g->c; c++)
            for (int ky = 0; ky < 3; ky++)
              for (int kx = 0; kx < 3; kx++) {
                int iy = oy - g->ph + ky, ix = ox - g->pw + kx;
                if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w)
                  continue;
                s += (double)x[X(i, c, iy, ix)] * w[W(o, c, ky, kx)];
                dx[X(i, c, iy, ix)] += d * w[W(o, c, ky, kx)];
                dw[W(o, c, ky, kx)] += d * x[X(i, c, iy, ix)];
              }
          y[Y(i, o, oy, ox)] = s;
        }
}

/* max |a - (ref + base)| / max |ref| */
static double rel_err(const float *a, const double *ref, const float *base, size_t n) {
  double scale = 1e-6, err = 0.0;
  for (size_t i = 0; i < n; i++)
    scale = fmax(scale, fabs(ref[i]));
  for (size_t i = 0; i < n; i++)
    err = fmax(err, fabs(a[i] - (ref[i] + (base ? base[i] : 0.0))) / scale);
  return err;
}

/* sqrt(sum (a - (ref + base))^2 / sum ref^2) */
static double rms_err(const float *a, const double *ref, const float *base, size_t n) {
  double se = 0.0, sr = 1e-300;
  for (size_t i = 0; i < n; i++) {
    const double e = a[i] - (ref[i] + (base ? base[i] : 0.0));
    se += e * e;
    sr += ref[i] * ref[i];
  }
  return sqrt(se / sr);
}

typedef struct {
  int tile; /* 2: F(2x2, 3x3), 4: F(4x4, 3x3) */
  int n, c, h, w, oc, p;
  int dispatch; /* 1: through sd_nn_conv2d_* (must pick this tile size) */
} wcase;

static double worst[5], worst_rms[5]; /* the largest errors seen per tile size */

/* Tolerance of F(4x4, 3x3) on max |error| / max |reference| (F(2x2) and im2col: 1e-5). */
#define TOL4 2e-5

static void check(sd_rng *r, const wcase *k) {
  sd_nn_conv_geom geom = {.c = k->c,
                          .h = k->h,
                          .w = k->w,
                          .oc = k->oc,
                          .kh = 3,
                          .kw = 3,
                          .sh = 1,
                          .sw = 1,
                          .ph = k->p,
                          .pw = k->p};
  const sd_nn_conv_geom *g = &geom;
  geom.oh = sd_nn_conv_out_size(g->h, 3, 1, g->ph);
  geom.ow = sd_nn_conv_out_size(g->w, 3, 1, g->pw);
  SD_EXPECT_MSG(sd_nn_conv2d_winograd_applies(g), "Winograd must apply to 3x3 s1 p%d", k->p);
  const int t4 = k->tile == 4;
  if (k->dispatch) {
    SD_EXPECT_MSG(sd_nn_conv2d_prefers_winograd(g), "c=%d oc=%d should prefer Winograd", k->c,
                  k->oc);
    SD_EXPECT_MSG(sd_nn_conv2d_winograd_tile(g) == k->tile, "c=%d oc=%d: tile %d, expected %d",
                  k->c, k->oc, sd_nn_conv2d_winograd_tile(g), k->tile);
  }
  const size_t xs = (size_t)k->n * g->c * g->h * g->w, ws = (size_t)g->oc * g->c * 9;
  const size_t ys = (size_t)k->n * g->oc * g->oh * g->ow;
  size_t wk = k->dispatch ? sd_nn_conv2d_workspace(g, k->n)
              : t4        ? sd_nn_conv2d_winograd4_workspace(g, k->n)
                          : sd_nn_conv2d_winograd_workspace(g, k->n);
  float *x = malloc(xs * 4), *w = malloc(ws * 4), *b = malloc((size_t)g->oc * 4);
  float *dy = malloc(ys * 4), *y = malloc(ys * 4), *work = malloc(wk * 4);
  float *dx = malloc(xs * 4), *dx0 = malloc(xs * 4), *dw = malloc(ws * 4), *dw0 = malloc(ws * 4);
  float *db = malloc((size_t)g->oc * 4), *db0 = malloc((size_t)g->oc * 4);
  double *ry = malloc(ys * 8), *rdx = malloc(xs * 8), *rdw = malloc(ws * 8);
  double *rdb = malloc((size_t)g->oc * 8);
  fill_rand(r, x, xs);
  fill_rand(r, w, ws);
  fill_rand(r, b, (size_t)g->oc);
  fill_rand(r, dy, ys);
  fill_rand(r, dx0, xs);
  fill_rand(r, dw0, ws);
  fill_rand(r, db0, (size_t)g->oc);
  naive(g, k->n, x, w, b, dy, ry, rdx, rdw, rdb);

  /* forward, then the adding backward on random initial gradients */
  for (int i = 0; i < (int)ys; i++)
    y[i] = NAN; /* every output must be written */
  if (k->dispatch)
    sd_nn_conv2d_forward(g, k->n, x, w, b, y, work);
  else if (t4)
    sd_nn_conv2d_winograd4_forward(g, k->n, x, w, b, y, work);
  else
    sd_nn_conv2d_winograd_forward(g, k->n, x, w, b, y, work);
  double ey = rel_err(y, ry, NULL, ys), ry2 = rms_err(y, ry, NULL, ys);
  memcpy(dx, dx0, xs * 4);
  memcpy(dw, dw0, ws * 4);
  memcpy(db, db0, (size_t)g->oc * 4);
  if (k->dispatch)
    sd_nn_conv2d_backward(g, k->n, x, w, dy, dx, dw, db, work);
  else if (t4)
    sd_nn_conv2d_winograd4_backward(g, k->n, x, w, dy, dx, dw, db, work);
  else
    sd_nn_conv2d_winograd_backward(g, k->n, x, w, dy, dx, dw, db, work);
  double edx = rel_err(dx, rdx, dx0, xs), edw = rel_err(dw, rdw, dw0, ws);
  double rdx2 = rms_err(dx, rdx, dx0, xs), rdw2 = rms_err(dw, rdw, dw0, ws);
  double edb = rel_err(db, rdb, db0, (size_t)g->oc);
  /* the overwriting variant on garbage dx, and dx only (dw, db NULL) */
  for (size_t i = 0; i < xs; i++)
    dx[i] = NAN;
  if (k->dispatch)
    sd_nn_conv2d_backward_set(g, k->n, x, w, dy, dx, NULL, NULL, work);
  else if (t4)
    sd_nn_conv2d_winograd4_backward_set(g, k->n, x, w, dy, dx, NULL, NULL, work);
  else
    sd_nn_conv2d_winograd_backward_set(g, k->n, x, w, dy, dx, NULL, NULL, work);
  double eset = rel_err(dx, rdx, NULL, xs);
  fprintf(stderr,
          "winograd F(%dx%d) n=%d c=%d %dx%d oc=%d p=%d%s: max err y %.2g dx %.2g dw %.2g "
          "db %.2g dx(set) %.2g; rms err y %.2g dx %.2g dw %.2g\n",
          k->tile, k->tile, k->n, k->c, k->h, k->w, k->oc, k->p, k->dispatch ? " (dispatch)" : "",
          ey, edx, edw, edb, eset, ry2, rdx2, rdw2);
  const double errs[5] = {ey, edx, edw, edb, eset};
  for (int i = 0; i < 5; i++)
    worst[k->tile] = fmax(worst[k->tile], errs[i]);
  worst_rms[k->tile] = fmax(worst_rms[k->tile], fmax(ry2, fmax(rdx2, rdw2)));
  /* relative to the largest reference value; see nn_winograd4.c for the F(4x4) error */
  const double tol = t4 ? TOL4 : 1e-5;
  SD_EXPECT_MSG(ey < tol, "forward rel err %.3g", ey);
  SD_EXPECT_MSG(edx < tol, "input gradient rel err %.3g", edx);
  SD_EXPECT_MSG(edw < tol, "weight gradient rel err %.3g", edw);
  SD_EXPECT_MSG(edb < tol, "bias gradient rel err %.3g", edb);
  SD_EXPECT_MSG(eset < tol, "overwritten input gradient rel err %.3g", eset);
  free(x), free(w), free(b), free(dy), free(y), free(work), free(dx), free(dx0), free(dw),
      free(dw0), free(db), free(db0), free(ry), free(rdx), free(rdw), free(rdb);
}

int main(void) {
  sd_rng r;
  sd_rng_init(&r, 4321, 0, 98);
  const wcase cases[] = {
      /* F(2x2, 3x3) */
      {2, 2, 3, 7, 5, 4, 1, 0},     /* odd output: partial tiles in both directions */
      {2, 3, 2, 8, 6, 3, 0, 0},     /* no padding, 6x4 output */
      {2, 2, 2, 5, 9, 2, 2, 0},     /* padding 2: output larger than the input */
      {2, 1, 1, 1, 1, 1, 1, 0},     /* 1x1 image */
      {2, 2, 5, 1, 7, 3, 1, 0},     /* one row */
      {2, 3, 9, 70, 9, 10, 1, 0},   /* tall image, one chunk */
      {2, 1, 3, 130, 130, 2, 1, 0}, /* chunks of tile rows inside one image */
      {2, 5, 4, 40, 42, 6, 1, 0},   /* chunks across images with a remainder */
      {2, 4, 16, 6, 12, 16, 1, 1},  /* the dispatching entry points: outputs under 8 high */
      {2, 2, 16, 17, 7, 20, 1, 1},  /* ... or wide */
      {2, 2, 32, 3, 3, 32, 1, 1},
      /* F(4x4, 3x3): chunks of 16 tile rows, at least 128 and at most 256 tiles */
      {4, 2, 3, 7, 5, 4, 1, 0},     /* 7x5 output: partial tiles in both directions */
      {4, 3, 2, 8, 6, 3, 0, 0},     /* no padding, 6x4 output */
      {4, 2, 3, 6, 6, 2, 0, 0},     /* no padding, exactly one 4x4 tile */
      {4, 1, 2, 3, 3, 2, 0, 0},     /* no padding, 1x1 output */
      {4, 2, 2, 5, 9, 2, 2, 0},     /* padding 2: 7x11 output from 5x9 */
      {4, 2, 3, 9, 10, 5, 2, 0},    /* padding 2: 11x12 */
      {4, 1, 1, 1, 1, 1, 1, 0},     /* 1x1 image */
      {4, 2, 5, 1, 7, 3, 1, 0},     /* one row */
      {4, 3, 9, 70, 9, 10, 1, 0},   /* tall image: chunks of 42 tile rows over 3 x 18 */
      {4, 1, 3, 130, 130, 2, 1, 0}, /* chunks of 7 tile rows inside one image, remainder */
      {4, 5, 4, 40, 42, 6, 1, 0},   /* chunks of 16 rows across images (10 each), remainder */
      {4, 4, 3, 24, 24, 2, 0, 0},   /* chunks of 21 rows: three and a half images, then 3 */
      {4, 3, 2, 64, 64, 3, 1, 0},   /* chunks ending exactly at image boundaries */
      {4, 2, 40, 13, 11, 36, 1, 0}, /* longer channel sums */
      {4, 4, 32, 12, 17, 32, 1, 1}, /* the dispatching entry points */
      {4, 3, 16, 8, 8, 24, 1, 1},
      {4, 2, 64, 9, 16, 48, 1, 1},
      {4, 2, 8, 10, 20, 8, 1, 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    check(&r, &cases[i]);
  /* non-3x3 and strided convolutions are not Winograd's */
  sd_nn_conv_geom g5 = {.c = 16,
                        .h = 8,
                        .w = 8,
                        .oc = 16,
                        .oh = 8,
                        .ow = 8,
                        .kh = 5,
                        .kw = 5,
                        .sh = 1,
                        .sw = 1,
                        .ph = 2,
                        .pw = 2};
  sd_nn_conv_geom gs = {.c = 16,
                        .h = 8,
                        .w = 8,
                        .oc = 16,
                        .oh = 4,
                        .ow = 4,
                        .kh = 3,
                        .kw = 3,
                        .sh = 2,
                        .sw = 2,
                        .ph = 1,
                        .pw = 1};
  SD_EXPECT_MSG(!sd_nn_conv2d_winograd_applies(&g5), "5x5 must not use Winograd");
  SD_EXPECT_MSG(!sd_nn_conv2d_winograd_applies(&gs), "stride 2 must not use Winograd");
  fprintf(stderr,
          "worst max |error| / max |reference|: F(2x2) %.2g, F(4x4) %.2g; worst rms "
          "relative error: F(2x2) %.2g, F(4x4) %.2g\n",
          worst[2], worst[4], worst_rms[2], worst_rms[4]);
  return sd_test_finish("test_nn_winograd");
}
