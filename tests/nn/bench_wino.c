/* bench_wino.c - paired timing of the 3x3 stride-1 convolution algorithms (im2col, Winograd
 * F(2x2, 3x3), Winograd F(4x4, 3x3)) on the layer shapes of the reference U-Net and classifier
 * of issue 3, forward and backward (input and weight gradients, overwrite variant as the
 * engine's first consumer), one OpenBLAS thread.
 *
 *   bench_wino [images] [repeats] [shape] [algorithm]   (defaults 16, 7, all, all)
 *
 * shape: index into the table below (-1: all); algorithm 0, 2 or 4 times only that one
 * (for profiling).
 *
 * The algorithms alternate inside every repeat, so machine load affects them alike; each
 * reports its best repeat, in process CPU time. Output, one line per shape:
 *   WINO <c>x<h>x<w>-><oc> fwd im2col <ms> f2 <ms> f4 <ms> bwd im2col <ms> f2 <ms> f4 <ms>
 *        f4/f2 fwd <ratio> bwd <ratio> pick <tile of sd_nn_conv2d_winograd_tile>
 * Label bench: not part of the unit run. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "stemdefect/nn_kernels.h"
#include "stemdefect/rng.h"

/* Process CPU time by default: on a shared machine, time slices lost to other processes do not
 * count (cache sharing still does); -DSD_BENCH_CLOCK=CLOCK_MONOTONIC for wall time. */
#ifndef SD_BENCH_CLOCK
#define SD_BENCH_CLOCK CLOCK_PROCESS_CPUTIME_ID
#endif

static double now(void) {
  struct timespec ts;
  clock_gettime(SD_BENCH_CLOCK, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void fill(float *p, size_t n, uint64_t seed) {
  sd_rng r;
  sd_rng_init(&r, seed, 0, 0);
  for (size_t i = 0; i < n; i++)
    p[i] = (float)sd_rng_range(&r, -1, 1);
}

typedef struct {
  int c, h, oc;
} shape;

static void run_alg(int alg, int fwd, const sd_nn_conv_geom *g, int n, const float *x,
                    const float *w, const float *b, float *y, const float *dy, float *dx, float *dw,
                    float *db, float *work) {
  if (fwd) {
    if (alg == 0)
      sd_nn_conv2d_im2col_forward(g, n, x, w, b, y, work);
    else if (alg == 2)
      sd_nn_conv2d_winograd_forward(g, n, x, w, b, y, work);
    else
      sd_nn_conv2d_winograd4_forward(g, n, x, w, b, y, work);
  } else {
    if (alg == 0)
      sd_nn_conv2d_im2col_backward(g, n, x, w, dy, dx, dw, db, work, 1);
    else if (alg == 2)
      sd_nn_conv2d_winograd_backward_set(g, n, x, w, dy, dx, dw, db, work);
    else
      sd_nn_conv2d_winograd4_backward_set(g, n, x, w, dy, dx, dw, db, work);
  }
}

int main(int argc, char **argv) {
  const int n = argc > 1 ? atoi(argv[1]) : 16;
  const int reps = argc > 2 ? atoi(argv[2]) : 7;
  const int only_shape = argc > 3 ? atoi(argv[3]) : -1;
  const int only_alg = argc > 4 ? atoi(argv[4]) : -1;
  openblas_set_num_threads(1);
  const shape shapes[] = {{32, 64, 32},
                          {32, 32, 64},
                          {64, 32, 64},
                          {64, 16, 128},
                          {192, 32, 64},
                          {96, 64, 32},
                          {16, 64, 16},
                          {32, 32, 32},
                          {64, 16, 64},
                          /* not in the models: smaller images, fewer channels */
                          {128, 8, 128},
                          {128, 4, 128},
                          {8, 64, 8},
                          {16, 32, 16}};
  const int algs[3] = {0, 2, 4};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    if (only_shape >= 0 && (size_t)only_shape != s)
      continue;
    sd_nn_conv_geom g = {.c = shapes[s].c,
                         .h = shapes[s].h,
                         .w = shapes[s].h,
                         .oc = shapes[s].oc,
                         .oh = shapes[s].h,
                         .ow = shapes[s].h,
                         .kh = 3,
                         .kw = 3,
                         .sh = 1,
                         .sw = 1,
                         .ph = 1,
                         .pw = 1};
    const size_t xs = (size_t)n * g.c * g.h * g.w, ys = (size_t)n * g.oc * g.oh * g.ow;
    const size_t ws = (size_t)g.oc * g.c * 9;
    size_t wk = sd_nn_conv2d_workspace(&g, n);
    size_t w2 = sd_nn_conv2d_winograd_workspace(&g, n),
           w4 = sd_nn_conv2d_winograd4_workspace(&g, n);
    if (w2 > wk)
      wk = w2;
    if (w4 > wk)
      wk = w4;
    float *x = malloc(xs * 4), *y = malloc(ys * 4), *dy = malloc(ys * 4), *dx = malloc(xs * 4);
    float *w = malloc(ws * 4), *dw = calloc(ws, 4), *b = malloc((size_t)g.oc * 4);
    float *db = calloc((size_t)g.oc, 4), *work = malloc(wk * 4);
    fill(x, xs, 1);
    fill(dy, ys, 2);
    fill(w, ws, 3);
    fill(b, (size_t)g.oc, 4);
    double best[2][5];
    for (int f = 0; f < 2; f++)
      for (int a = 0; a < 5; a++)
        best[f][a] = 1e30;
    for (int a = 0; a < 3; a++) /* warm-up */
      for (int f = 0; f < 2; f++)
        run_alg(algs[a], f, &g, n, x, w, b, y, dy, dx, dw, db, work);
    for (int r = 0; r < reps; r++)
      for (int a = 0; a < 3; a++)
        for (int f = 0; f < 2; f++) {
          if (only_alg >= 0 && algs[a] != only_alg)
            continue;
          double t0 = now();
          run_alg(algs[a], 1 - f, &g, n, x, w, b, y, dy, dx, dw, db, work);
          double t = now() - t0;
          if (t < best[f][algs[a]])
            best[f][algs[a]] = t;
        }
    printf("WINO %3dx%2dx%2d->%3d fwd im2col %7.2f f2 %7.2f f4 %7.2f  bwd im2col %7.2f f2 %7.2f "
           "f4 %7.2f  f4/f2 fwd %.2f bwd %.2f  pick %d\n",
           g.c, g.h, g.w, g.oc, 1e3 * best[0][0], 1e3 * best[0][2], 1e3 * best[0][4],
           1e3 * best[1][0], 1e3 * best[1][2], 1e3 * best[1][4], best[0][2] / best[0][4],
           best[1][2] / best[1][4], sd_nn_conv2d_winograd_tile(&g));
    fflush(stdout);
    free(x), free(y), free(dy), free(dx), free(w), free(dw), free(b), free(db), free(work);
  }
  return 0;
}
