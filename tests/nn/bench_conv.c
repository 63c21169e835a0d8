/* bench_conv.c - convolution throughput next to the machine's sgemm ceiling.
 *
 * Conv: input [16, 32, 64, 64], 3x3, pad 1, 64 output channels; forward, backward (data and
 * weight gradients) and both together, in GFLOP/s (2 flops per multiply-add, backward counted
 * as two forward-sized GEMMs). sgemm: 2048^3. Runs at 1 and 2 OpenBLAS threads (or the
 * counts given as arguments). Also times a training step and inference of the reference U-Net
 * of issue 3 (batch 16, 64x64) built with the nn.h API. Label bench: not part of the unit run. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "stemdefect/nn.h"
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
  for (size_t i = 0; i < n; i++)
    p[i] = (float)sd_rng_range(&r, -1, 1);
}

/* best of reps timings of fn */
#define BEST_OF(reps, t, body)                                                                     \
  do {                                                                                             \
    t = 1e30;                                                                                      \
    for (int rep_ = 0; rep_ < (reps); rep_++) {                                                    \
      double t0_ = now();                                                                          \
      body;                                                                                        \
      double dt_ = now() - t0_;                                                                    \
      if (dt_ < t)                                                                                 \
        t = dt_;                                                                                   \
    }                                                                                              \
  } while (0)

/* 2x conv3x3 32 -> pool -> 2x conv3x3 64 -> pool -> conv3x3 128 -> up, concat 64-skip, conv3x3
 * 64 -> up, concat 32-skip, conv3x3 32 -> conv1x1 8; ReLU after every 3x3 conv. */
static sd_status build_unet(sd_nn_model **out, int batch) {
  sd_nn_model *m = NULL;
  SD_CHECK(sd_nn_model_create(&m));
#define CONV_RELU(x, ch) sd_nn_add_relu(m, sd_nn_add_conv2d(m, (x), (ch), 3, 1, 1))
  int s1 = CONV_RELU(CONV_RELU(0, 32), 32);
  int s2 = CONV_RELU(CONV_RELU(sd_nn_add_maxpool(m, s1, 2, 2), 64), 64);
  int b = CONV_RELU(sd_nn_add_maxpool(m, s2, 2, 2), 128);
  int u2 = sd_nn_add_upsample(m, b, 2, SD_NN_UPSAMPLE_NEAREST);
  int d2 = CONV_RELU(sd_nn_add_concat(m, u2, s2), 64);
  int u1 = sd_nn_add_upsample(m, d2, 2, SD_NN_UPSAMPLE_NEAREST);
  int d1 = CONV_RELU(sd_nn_add_concat(m, u1, s1), 32);
  sd_nn_add_conv2d(m, d1, 8, 1, 1, 0);
#undef CONV_RELU
  sd_status st = sd_nn_model_compile(m, batch, 1, 64, 64);
  if (st != SD_OK) {
    sd_nn_model_destroy(&m);
    return st;
  }
  *out = m;
  return SD_OK;
}

static void bench_unet(int threads) {
  const int B = 16;
  sd_nn_model *m = NULL;
  if (build_unet(&m, B) != SD_OK) {
    fprintf(stderr, "bench_conv: U-Net: %s\n", sd_error_message());
    return;
  }
  float *x = malloc((size_t)B * 64 * 64 * sizeof *x);
  int32_t *y = malloc((size_t)B * 64 * 64 * sizeof *y);
  fill(x, (size_t)B * 64 * 64, 6);
  for (int i = 0; i < B * 64 * 64; i++)
    y[i] = i % 8;
  sd_nn_optim opt = sd_nn_optim_adamw(1e-3f, 1e-4f);
  double tt, ti, loss = 0;
  int ok = 1;
  BEST_OF(4, tt, {
    sd_nn_model_zero_grad(m);
    ok &= sd_nn_model_forward(m, x, B, SD_NN_MODE_TRAIN) == SD_OK;
    ok &= sd_nn_loss_softmax_ce(sd_nn_model_output(m), y, NULL, &loss) == SD_OK;
    ok &= sd_nn_model_backward(m) == SD_OK;
    ok &= sd_nn_optim_step(m, &opt, opt.lr, NULL) == SD_OK;
  });
  BEST_OF(4, ti, ok &= sd_nn_model_forward(m, x, B, SD_NN_MODE_EVAL) == SD_OK);
  if (!ok)
    fprintf(stderr, "bench_conv: U-Net step failed: %s\n", sd_error_message());
  printf("%7d U-Net batch 16: train %.1f img/s (%.3f s/step), inference %.1f img/s\n", threads,
         B / tt, tt, B / ti);
  free(x), free(y);
  sd_nn_model_destroy(&m);
}

int main(int argc, char **argv) {
  const int N = 16;
  sd_nn_conv_geom g = {.c = 32,
                       .h = 64,
                       .w = 64,
                       .oc = 64,
                       .oh = 64,
                       .ow = 64,
                       .kh = 3,
                       .kw = 3,
                       .sh = 1,
                       .sw = 1,
                       .ph = 1,
                       .pw = 1};
  size_t xs = (size_t)N * g.c * g.h * g.w, ys = (size_t)N * g.oc * g.oh * g.ow;
  size_t ws = (size_t)g.oc * g.c * 9;
  float *x = malloc(xs * 4), *dx = malloc(xs * 4), *y = malloc(ys * 4), *dy = malloc(ys * 4);
  float *w = malloc(ws * 4), *dw = malloc(ws * 4), *b = calloc(64, 4), *db = calloc(64, 4);
  float *work = malloc(sd_nn_conv2d_workspace(&g, N) * 4);
  const int M = 2048;
  float *A = malloc((size_t)M * M * 4), *B = malloc((size_t)M * M * 4),
        *C = malloc((size_t)M * M * 4);
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
    for (int i = 1; i < argc && nt < 8; i++)
      threads[nt++] = atoi(argv[i]);
  }
  printf("conv 3x3 pad 1: [16,32,64,64] -> [16,64,64,64]; %.2f GFLOP forward, %.2f backward\n",
         conv_flop * 1e-9, 2 * conv_flop * 1e-9);
  printf("%7s %12s %12s %12s %12s %10s\n", "threads", "sgemm2048", "conv fwd", "conv bwd",
         "conv f+b", "f+b/sgemm");
  for (int t = 0; t < nt; t++) {
    openblas_set_num_threads(threads[t]);
    double tg, tf, tb;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, M, M, 1, A, M, B, M, 0, C, M);
    BEST_OF(3, tg,
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, M, M, 1.0f, A, M, B, M, 0.0f,
                        C, M));
    sd_nn_conv2d_forward(&g, N, x, w, b, y, work);
    BEST_OF(3, tf, sd_nn_conv2d_forward(&g, N, x, w, b, y, work));
    BEST_OF(3, tb, sd_nn_conv2d_backward(&g, N, x, w, dy, dx, dw, db, work));
    double gs = gemm_flop / tg * 1e-9, gf = conv_flop / tf * 1e-9, gb = 2 * conv_flop / tb * 1e-9;
    double gfb = 3 * conv_flop / (tf + tb) * 1e-9;
    printf("%7d %9.1f GF %9.1f GF %9.1f GF %9.1f GF %9.0f%%\n", threads[t], gs, gf, gb, gfb,
           100.0 * gfb / gs);
    printf("        (times: sgemm %.3f s, conv forward %.3f s, backward %.3f s)\n", tg, tf, tb);
  }
  for (int t = 0; t < nt; t++) {
    openblas_set_num_threads(threads[t]);
    bench_unet(threads[t]);
  }
  free(x), free(dx), free(y), free(dy), free(w), free(dw), free(b), free(db), free(work);
  free(A), free(B), free(C);
  return 0;
}
