/* test_nn_conv.c - convolution, transposed convolution and dense kernels against naive loops,
 * over kernel sizes, strides, paddings, channel counts, non-square inputs and both GEMM paths
 * (one image per GEMM, several images folded into one GEMM). */
#include <stdlib.h>
#include <string.h>

#include "sd_test.h"
#include "stemdefect/nn_kernels.h"
#include "stemdefect/rng.h"

static void fill_rand(sd_rng *r, float *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    p[i] = (float)sd_rng_range(r, -1.0, 1.0);
}

/* The textbook 7-loop convolution in double. */
static void conv_naive(const sd_nn_conv_geom *g, int n, const float *x, const float *w,
                       const float *b, double *y) {
  for (int i = 0; i < n; i++)
    for (int o = 0; o < g->oc; o++)
      for (int oy = 0; oy < g->oh; oy++)
        for (int ox = 0; ox < g->ow; ox++) {
          double s = b ? b[o] : 0.0;
          for (int c = 0; c < g->c; c++)
            for (int ky = 0; ky < g->kh; ky++)
              for (int kx = 0; kx < g->kw; kx++) {
                int iy = oy * g->sh - g->ph + ky, ix = ox * g->sw - g->pw + kx;
                if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w)
                  continue;
                s += (double)x[(((size_t)i * g->c + c) * g->h + iy) * g->w + ix] *
                     w[(((size_t)o * g->c + c) * g->kh + ky) * g->kw + kx];
              }
          y[(((size_t)i * g->oc + o) * g->oh + oy) * g->ow + ox] = s;
        }
}

/* Transposed convolution by scattering each input pixel (independent of col2im). */
static void convt_naive(const sd_nn_conv_geom *g, int n, const float *x, const float *w,
                        const float *b, double *y) {
  size_t ysz = (size_t)g->c * g->h * g->w;
  for (int i = 0; i < n; i++)
    for (int c = 0; c < g->c; c++)
      for (int p = 0; p < g->h * g->w; p++)
        y[i * ysz + (size_t)c * g->h * g->w + p] = b ? b[c] : 0;
  for (int i = 0; i < n; i++)
    for (int o = 0; o < g->oc; o++)
      for (int oy = 0; oy < g->oh; oy++)
        for (int ox = 0; ox < g->ow; ox++) {
          double v = x[(((size_t)i * g->oc + o) * g->oh + oy) * g->ow + ox];
          for (int c = 0; c < g->c; c++)
            for (int ky = 0; ky < g->kh; ky++)
              for (int kx = 0; kx < g->kw; kx++) {
                int iy = oy * g->sh - g->ph + ky, ix = ox * g->sw - g->pw + kx;
                if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w)
                  continue;
                y[(((size_t)i * g->c + c) * g->h + iy) * g->w + ix] +=
                    v * w[(((size_t)o * g->c + c) * g->kh + ky) * g->kw + kx];
              }
        }
}

static double max_rel(const float *a, const double *ref, size_t n) {
  double scale = 1e-6, err = 0.0;
  for (size_t i = 0; i < n; i++)
    scale = fmax(scale, fabs(ref[i]));
  for (size_t i = 0; i < n; i++)
    err = fmax(err, fabs(a[i] - ref[i]) / scale);
  return err;
}

typedef struct {
  int n, c, h, w, oc, kh, kw, s, p, bias;
} conv_case;

static void check_conv(sd_rng *r, const conv_case *cc) {
  sd_nn_conv_geom g = {.c = cc->c,
                       .h = cc->h,
                       .w = cc->w,
                       .oc = cc->oc,
                       .kh = cc->kh,
                       .kw = cc->kw,
                       .sh = cc->s,
                       .sw = cc->s,
                       .ph = cc->p,
                       .pw = cc->p};
  g.oh = sd_nn_conv_out_size(g.h, g.kh, g.sh, g.ph);
  g.ow = sd_nn_conv_out_size(g.w, g.kw, g.sw, g.pw);
  size_t xs = (size_t)cc->n * g.c * g.h * g.w, ws = (size_t)g.oc * g.c * g.kh * g.kw;
  size_t ys = (size_t)cc->n * g.oc * g.oh * g.ow;
  float *x = malloc(xs * 4), *w = malloc(ws * 4), *b = malloc((size_t)g.oc * 4);
  float *y = malloc(ys * 4), *work = malloc(sd_nn_conv2d_workspace(&g, cc->n) * 4 + 4);
  double *ref = malloc(ys * 8);
  fill_rand(r, x, xs);
  fill_rand(r, w, ws);
  fill_rand(r, b, (size_t)g.oc);
  sd_nn_conv2d_forward(&g, cc->n, x, w, cc->bias ? b : NULL, y, work);
  conv_naive(&g, cc->n, x, w, cc->bias ? b : NULL, ref);
  double e = max_rel(y, ref, ys);
  SD_EXPECT_MSG(e < 1e-5, "conv n=%d c=%d %dx%d oc=%d k=%dx%d s=%d p=%d: max rel err %.3g", cc->n,
                cc->c, cc->h, cc->w, cc->oc, cc->kh, cc->kw, cc->s, cc->p, e);

  /* transposed convolution of y-shaped input back to x's shape */
  float *xt = malloc(ys * 4), *yt = malloc(xs * 4);
  double *reft = malloc(xs * 8);
  fill_rand(r, xt, ys);
  /* the bias of a transposed conv has g.c entries */
  float *bt = malloc((size_t)g.c * 4);
  fill_rand(r, bt, (size_t)g.c);
  sd_nn_conv_transpose2d_forward(&g, cc->n, xt, w, cc->bias ? bt : NULL, yt, work);
  convt_naive(&g, cc->n, xt, w, cc->bias ? bt : NULL, reft);
  double et = max_rel(yt, reft, xs);
  SD_EXPECT_MSG(et < 1e-5, "conv_transpose n=%d c=%d %dx%d oc=%d k=%d s=%d p=%d: max rel err %.3g",
                cc->n, cc->c, cc->h, cc->w, cc->oc, cc->kh, cc->s, cc->p, et);
  fprintf(stderr,
          "conv n=%d c=%d %dx%d -> oc=%d %dx%d k=%dx%d s=%d p=%d: err %.2g, transposed %.2g\n",
          cc->n, cc->c, cc->h, cc->w, cc->oc, g.oh, g.ow, cc->kh, cc->kw, cc->s, cc->p, e, et);
  free(x), free(w), free(b), free(y), free(work), free(ref), free(xt), free(yt), free(reft),
      free(bt);
}

int main(void) {
  sd_rng r;
  sd_rng_init(&r, 1234, 0, 99);
  const conv_case cases[] = {
      {2, 3, 7, 5, 4, 3, 3, 1, 1, 1},   /* non-square, same padding */
      {3, 2, 9, 6, 5, 3, 3, 2, 1, 1},   /* stride 2 */
      {2, 4, 8, 8, 3, 1, 1, 1, 0, 1},   /* pointwise, folded */
      {1, 4, 50, 45, 3, 1, 1, 1, 0, 0}, /* pointwise, one image per GEMM */
      {2, 1, 11, 13, 6, 5, 5, 1, 2, 1}, /* 5x5 */
      {2, 3, 10, 7, 2, 2, 2, 2, 0, 1},  /* 2x2 stride 2 */
      {2, 2, 6, 9, 3, 3, 3, 3, 2, 1},   /* stride 3, large pad */
      {2, 2, 48, 48, 4, 3, 3, 1, 1, 1}, /* >= 2048 output pixels: one image per GEMM */
      {7, 3, 20, 30, 4, 3, 3, 1, 0, 0}, /* folded chunks of 5 and a remainder of 2 */
      {2, 3, 9, 8, 4, 3, 2, 1, 1, 1},   /* non-square kernel */
      {1, 1, 1, 1, 2, 1, 1, 1, 0, 1},   /* 1x1 image */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    check_conv(&r, &cases[i]);

  /* dense against a naive product */
  {
    const int n = 3, in = 7, out = 5;
    float x[21], w[35], b[5], y[15];
    fill_rand(&r, x, 21);
    fill_rand(&r, w, 35);
    fill_rand(&r, b, 5);
    sd_nn_dense_forward(n, in, out, x, w, b, y);
    double err = 0;
    for (int i = 0; i < n; i++)
      for (int o = 0; o < out; o++) {
        double s = b[o];
        for (int k = 0; k < in; k++)
          s += (double)x[i * in + k] * w[o * in + k];
        err = fmax(err, fabs(s - y[i * out + o]));
      }
    SD_EXPECT_MSG(err < 1e-5, "dense max abs err %.3g", err);
  }

  /* im2col of a known 3x3 image, k2 s1 p0: row (0,0) holds the top-left of each window */
  {
    sd_nn_conv_geom g = {.c = 1,
                         .h = 3,
                         .w = 3,
                         .oc = 1,
                         .oh = 2,
                         .ow = 2,
                         .kh = 2,
                         .kw = 2,
                         .sh = 1,
                         .sw = 1,
                         .ph = 0,
                         .pw = 0};
    float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, col[16];
    sd_nn_im2col(&g, x, col, 4);
    const float want[16] = {1, 2, 4, 5, 2, 3, 5, 6, 4, 5, 7, 8, 5, 6, 8, 9};
    int same = memcmp(col, want, sizeof want) == 0;
    SD_EXPECT_MSG(same, "im2col of a 3x3 ramp differs from the hand-written columns");
  }
  return sd_test_finish("test_nn_conv");
}
