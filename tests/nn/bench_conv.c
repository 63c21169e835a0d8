/* bench_conv.c - convolution throughput next to the machine's sgemm ceiling.
 *
 * Conv: input [16, 32, 64, 64], 3x3, pad 1, 64 output channels; forward, backward (data and
 * weight gradients) and both together, in GFLOP/s (2 flops per multiply-add, backward counted
 * as two forward-sized GEMMs). sgemm: 2048^3. Runs at 1 and 2 OpenBLAS threads (or the
 * counts given as arguments). Label bench: not part of the unit run. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "stemdefect/nn_kernels.h"
#include "stemdefect/rng.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void fill(float *p, size_t n, uint64_t seed) {
  sd_rng r;
  sd_rng_init(&r, seed, 0, 0);
  for (size_t i = 0; i < n; i++) p[i] = (float)sd_rng_range(&r, -1, 1);
}

/* best of reps timings of fn */
#define BEST_OF(reps, t, body)                                                                     \
  do {                                                                                             \
    t = 1e30;                                                                                      \
    for (int rep_ = 0; rep_ < (reps); rep_++) {                                                    \
      double t0_ = now();                                                                          \
      body;                                                                                        \
      double dt_ = now() - t0_;                                                                    \
      if (dt_ < t) t = dt_;                                                                        \
    }                                                                                              \
  } while (0)

int main(int argc, char **argv) {
  const int N = 16;
  sd_nn_conv_geom g = {.c = 32, .h = 64, .w = 64, .oc = 64, .oh = 64, .ow = 64,
                       .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1};
  size_t xs = (size_t)N * g.c * g.h * g.w, ys = (size_t)N * g.oc * g.oh * g.ow;
  size_t ws = (size_t)g.oc * g.c * 9;
  float *x = malloc(xs * 4), *dx = malloc(xs * 4), *y = malloc(ys * 4), *dy = malloc(ys * 4);
  float *w = malloc(ws * 4), *dw = malloc(ws * 4), *b = calloc(64, 4), *db = calloc(64, 4);
  float *work = malloc(sd_nn_conv2d_workspace(&g, N) * 4);
  const int M = 2048;
  float *A = malloc((size_t)M * M * 4), *B = malloc((size_t)M * M * 4), *C = malloc((size_t)M * M * 4);
  if (!x || !dx || !y || !dy || !w || !dw || !work || !A || !B || !C) {
    fprintf(stderr, "bench_conv: out of memory\n");
    return 1;
  }
  fill(x, xs, 1);
  fill(w, ws, 2);
  fill(dy, ys, 3);
  fill(A, (size_t)M * M, 4);
  fill(B, (size_t)M * M, 5);
  const double conv_flop = 2.0 * N * g.oc * g.oh * g.ow * (double)g.c * 9;
  const double gemm_flop = 2.0 * M * M * (double)M;
  int threads[8] = {1, 2}, nt = 2;
  if (argc > 1) {
    nt = 0;
    for (int i = 1; i < argc && nt < 8; i++) threads[nt++] = atoi(argv[i]);
  }
  printf("conv 3x3 pad 1: [16,32,64,64] -> [16,64,64,64]; %.2f GFLOP forward, %.2f backward\n",
         conv_flop * 1e-9, 2 * conv_flop * 1e-9);
  printf("%7s %12s %12s %12s %12s %10s\n", "threads", "sgemm2048", "conv fwd", "conv bwd",
         "conv f+b", "f+b/sgemm");
  for (int t = 0; t < nt; t++) {
    openblas_set_num_threads(threads[t]);
    double tg, tf, tb;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, M, M, 1, A, M, B, M, 0, C, M);
    BEST_OF(3, tg, cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, M, M, 1.0f, A, M,
                               B, M, 0.0f, C, M));
    sd_nn_conv2d_forward(&g, N, x, w, b, y, work);
    BEST_OF(3, tf, sd_nn_conv2d_forward(&g, N, x, w, b, y, work));
    BEST_OF(3, tb, sd_nn_conv2d_backward(&g, N, x, w, dy, dx, dw, db, work));
    double gs = gemm_flop / tg * 1e-9, gf = conv_flop / tf * 1e-9, gb = 2 * conv_flop / tb * 1e-9;
    double gfb = 3 * conv_flop / (tf + tb) * 1e-9;
    printf("%7d %9.1f GF %9.1f GF %9.1f GF %9.1f GF %9.0f%%\n", threads[t], gs, gf, gb, gfb,
           100.0 * gfb / gs);
    printf("        (times: sgemm %.3f s, conv forward %.3f s, backward %.3f s)\n", tg, tf, tb);
  }
  free(x), free(dx), free(y), free(dy), free(w), free(dw), free(b), free(db), free(work);
  free(A), free(B), free(C);
  return 0;
}
