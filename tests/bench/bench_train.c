/* bench_train.c - training and inference throughput of the classifier and the reference U-Net
 * of issue 3 on the nn engine, the convolution GFLOP/s inside the U-Net training step, and the
 * OpenBLAS sgemm ceiling (2048^3), all in one process at one OpenBLAS thread count.
 *
 *   bench_train [--threads T] [--reps R] [--min-time S] [--only classifier|unet|sgemm]
 *               [--layers] [--kernels]
 *
 * Every measurement warms up first, then times R repeats (each repeat runs whole steps until
 * at least S seconds have passed) and reports the median. Output is one record per line, read
 * by train_throughput.sh (which prints the comparison table):
 *
 *   PARAMS   <model> <trainable scalars>
 *   RESULT   <model> <train|infer> <batch> <threads> <median img/s> <img/s of each repeat...>
 *   SGEMM    <threads> <median GFLOP/s>
 *   CONV     <threads> <GFLOP/s> <conv s/step> <step s> <GFLOP/step>   (U-Net conv layers)
 *            GFLOP are those of direct convolution (2 per multiply-add of the textbook loop),
 *            whatever the algorithm: Winograd layers execute 2.25x (F(2x2)) or 4x (F(4x4))
 *            fewer GEMM flops, so their "effective" GFLOP/s can exceed the sgemm ceiling
 *   LAYER    <model> <kind> <fwd ms/step> <bwd ms/step> <percent of step>  (--layers)
 *   CONVL    <model> <layer> <geometry> <algorithm> fwd <ms> <GFLOP/s> bwd <ms> <GFLOP/s>
 *            (--layers; algorithm im2col, wino2x2 or wino4x4)
 *   KERNEL   <name> <elements> <engine ms> <prototype ms> <speedup> <max |difference|>
 *            (--kernels: faster prototypes of slow engine kernels, see bench_kernels)
 *
 * The per-layer times come from the engine's layer hook (sd_nn_model_set_layer_hook) around
 * every layer inside sd_nn_model_forward/backward, so they time exactly the engine's own
 * dispatch; their sum (plus loss, zero_grad, optimiser) is printed next to the step time.
 * Exit status is non-zero when a step fails or the loss is not finite. Label bench (opt-in).
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stemdefect/nn.h"
#include "stemdefect/nn_kernels.h"
#include "stemdefect/rng.h"
#include "stemdefect/train.h"

#define MAX_REPS 64

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(const double *v, int n) {
  double s[MAX_REPS];
  memcpy(s, v, sizeof(double) * (size_t)n);
  qsort(s, (size_t)n, sizeof *s, cmp_double);
  return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

static void fill_uniform(float *p, size_t n, uint64_t seed) {
  sd_rng r;
  sd_rng_init(&r, seed, 0, 0);
  for (size_t i = 0; i < n; i++)
    p[i] = (float)sd_rng_range(&r, -1, 1);
}

/* One benchmarked model with its inputs. */
typedef struct bench_model {
  const char *name;
  sd_nn_model *m;
  int batch;
  float *x;   /* [batch, 1, 64, 64] */
  int32_t *y; /* [batch] classes or [batch, 64, 64] per-pixel classes */
  sd_nn_optim opt;
  double loss;
} bench_model;

static sd_status train_step(bench_model *b) {
  sd_nn_model_zero_grad(b->m);
  SD_CHECK(sd_nn_model_forward(b->m, b->x, b->batch, SD_NN_MODE_TRAIN));
  SD_CHECK(sd_nn_loss_softmax_ce(sd_nn_model_output(b->m), b->y, NULL, &b->loss));
  SD_CHECK(sd_nn_model_backward(b->m));
  SD_CHECK(sd_nn_optim_step(b->m, &b->opt, b->opt.lr, NULL));
  if (!isfinite(b->loss))
    return SD_ERROR(SD_ERR_INTERNAL, "%s: loss is not finite", b->name);
  return SD_OK;
}

static sd_status infer_step(bench_model *b) {
  SD_CHECK(sd_nn_model_forward(b->m, b->x, b->batch, SD_NN_MODE_EVAL));
  return SD_OK;
}

/* Warm-up, then reps repeats of at least min_time seconds each; ips[r] = images/s. */
static sd_status time_steps(bench_model *b, sd_status (*step)(bench_model *), int warmup, int reps,
                            double min_time, double *ips) {
  for (int i = 0; i < warmup; i++)
    SD_CHECK(step(b));
  for (int r = 0; r < reps; r++) {
    int iters = 0;
    double t0 = now(), dt;
    do {
      SD_CHECK(step(b));
      iters++;
      dt = now() - t0;
    } while (dt < min_time);
    ips[r] = (double)iters * b->batch / dt;
  }
  return SD_OK;
}

/* 2x conv3x3 32 -> pool -> 2x conv3x3 64 -> pool -> conv3x3 128 -> up, concat 64-skip, conv3x3
 * 64 -> up, concat 32-skip, conv3x3 32 -> conv1x1 8; ReLU after every 3x3 conv. */
static sd_status unet_build(sd_nn_model **out) {
  sd_nn_model *m = NULL;
  SD_CHECK(sd_nn_model_create(&m));
#define CONV_RELU(x, ch) sd_nn_add_relu(m, sd_nn_add_conv2d(m, (x), (ch), 3, 1, 1))
  int s1 = CONV_RELU(CONV_RELU(0, 32), 32);
  int s2 = CONV_RELU(CONV_RELU(sd_nn_add_maxpool(m, s1, 2, 2), 64), 64);
  int mid = CONV_RELU(sd_nn_add_maxpool(m, s2, 2, 2), 128);
  int u2 = sd_nn_add_upsample(m, mid, 2, SD_NN_UPSAMPLE_NEAREST);
  int d2 = CONV_RELU(sd_nn_add_concat(m, u2, s2), 64);
  int u1 = sd_nn_add_upsample(m, d2, 2, SD_NN_UPSAMPLE_NEAREST);
  int d1 = CONV_RELU(sd_nn_add_concat(m, u1, s1), 32);
  sd_nn_add_conv2d(m, d1, 8, 1, 1, 0);
#undef CONV_RELU
  if (m->build_status != SD_OK) {
    sd_status st = m->build_status;
    sd_nn_model_destroy(&m);
    return st;
  }
  *out = m;
  return SD_OK;
}

static sd_status bench_model_create(bench_model *b, const char *name, int batch) {
  memset(b, 0, sizeof *b);
  b->name = name;
  b->batch = batch;
  int unet = strcmp(name, "unet") == 0;
  if (unet)
    SD_CHECK(unet_build(&b->m));
  else
    SD_CHECK(sd_classifier_build(&b->m, 16, 3, 1, 0.1f, 7));
  SD_CHECK(sd_nn_model_compile(b->m, batch, 1, 64, 64));
  SD_CHECK(sd_nn_model_init_params(b->m, 1));
  size_t npx = (size_t)batch * 64 * 64, ny = unet ? npx : (size_t)batch;
  b->x = sd_malloc(npx, sizeof *b->x, "bench images");
  b->y = sd_malloc(ny, sizeof *b->y, "bench targets");
  if (!b->x || !b->y)
    return SD_ERROR(SD_ERR_NOMEM, "bench: out of memory");
  fill_uniform(b->x, npx, 7);
  sd_rng r;
  sd_rng_init(&r, 8, 0, 0);
  for (size_t i = 0; i < ny; i++)
    b->y[i] = (int32_t)sd_rng_below(&r, unet ? 8 : 7);
  b->opt = sd_nn_optim_adamw(1e-3f, 1e-4f);
  return SD_OK;
}

static void bench_model_free(bench_model *b) {
  sd_nn_model_destroy(&b->m);
  free(b->x);
  free(b->y);
}

/* ---- per-layer timing ----------------------------------------------------------------------- */

/* Time per layer kind (seconds summed over timed steps) and conv FLOPs per step. */
typedef struct layer_times {
  double fwd[SD_NN_LAYER_COUNT_], bwd[SD_NN_LAYER_COUNT_];
  double loss, zero, optim;
  double *fwd_layer, *bwd_layer; /* [num_layers] seconds per layer (NULL = not kept) */
  double start;                  /* start of the layer being timed */
} layer_times;

static double conv_flop_fwd(const sd_nn_layer *L, int n) {
  const sd_nn_conv_geom *g = &L->u.conv.g;
  return 2.0 * n * g->oc * (double)g->oh * g->ow * g->c * g->kh * g->kw;
}

/* The engine's layer hook (sd_nn_model_set_layer_hook): a timer around every layer's forward
 * and backward inside sd_nn_model_forward/backward, added into t. */
static void layer_timer(void *ctx, const sd_nn_model *m, int layer, sd_nn_pass pass, int end) {
  layer_times *t = ctx;
  if (!end) {
    t->start = now();
    return;
  }
  double d = now() - t->start;
  sd_nn_layer_kind kind = m->layers[layer].kind;
  if (pass == SD_NN_PASS_FORWARD) {
    t->fwd[kind] += d;
    if (t->fwd_layer)
      t->fwd_layer[layer] += d;
  } else {
    t->bwd[kind] += d;
    if (t->bwd_layer)
      t->bwd_layer[layer] += d;
  }
}

/* The training step of train_step() with the layer hook timing each layer and timers around
 * zero_grad, the loss and the optimiser; adds into t. */
static sd_status timed_step(bench_model *b, layer_times *t) {
  sd_nn_model *m = b->m;
  sd_nn_model_set_layer_hook(m, layer_timer, t);
  double s = now();
  sd_nn_model_zero_grad(m);
  t->zero += now() - s;
  sd_status st = sd_nn_model_forward(m, b->x, b->batch, SD_NN_MODE_TRAIN);
  s = now();
  if (st == SD_OK)
    st = sd_nn_loss_softmax_ce(sd_nn_model_output(m), b->y, NULL, &b->loss);
  t->loss += now() - s;
  if (st == SD_OK)
    st = sd_nn_model_backward(m);
  s = now();
  if (st == SD_OK)
    st = sd_nn_optim_step(m, &b->opt, b->opt.lr, NULL);
  t->optim += now() - s;
  sd_nn_model_set_layer_hook(m, NULL, NULL);
  return st;
}

/* Conv FLOPs of one training step: forward 2*K*N*M, backward the weight GEMM plus the data GEMM
 * when the layer's input keeps a gradient (not for the first conv). */
static double conv_train_flop(const sd_nn_model *m, int n) {
  double f = 0;
  for (int i = 1; i <= m->output; i++) {
    const sd_nn_layer *L = &m->layers[i];
    if (!L->on_path || L->kind != SD_NN_LAYER_CONV2D)
      continue;
    double one = conv_flop_fwd(L, n);
    f += one * (2.0 + (m->layers[L->in[0]].out.grad ? 1.0 : 0.0));
  }
  return f;
}

/* Times `steps` layer-by-layer training steps; prints LAYER lines (and CONV for the U-Net). */
static sd_status profile_layers(bench_model *b, int threads, int steps, int print_layers,
                                double step_seconds) {
  static const char *kind_name[SD_NN_LAYER_COUNT_] = {
      "input",   "conv2d",  "convT",          "dense",   "batchnorm", "relu", "leaky_relu",
      "maxpool", "avgpool", "global_avgpool", "dropout", "concat",    "add",  "upsample"};
  layer_times t;
  memset(&t, 0, sizeof t);
  layer_times warm;
  memset(&warm, 0, sizeof warm);
  SD_CHECK(timed_step(b, &warm));
  const int nl = b->m->num_layers;
  t.fwd_layer = sd_calloc((size_t)nl, sizeof(double), "per-layer times");
  t.bwd_layer = sd_calloc((size_t)nl, sizeof(double), "per-layer times");
  if (!t.fwd_layer || !t.bwd_layer) {
    free(t.fwd_layer), free(t.bwd_layer);
    return SD_ERROR(SD_ERR_NOMEM, "bench: out of memory for per-layer times");
  }
  sd_status st = SD_OK;
  double t0 = now();
  for (int s = 0; s < steps && st == SD_OK; s++)
    st = timed_step(b, &t);
  if (st != SD_OK) {
    free(t.fwd_layer), free(t.bwd_layer);
    return st;
  }
  double total = (now() - t0) / steps;
  double sum = (t.zero + t.loss + t.optim) / steps;
  for (int k = 0; k < SD_NN_LAYER_COUNT_; k++)
    sum += (t.fwd[k] + t.bwd[k]) / steps;
  if (print_layers) {
    for (int k = 0; k < SD_NN_LAYER_COUNT_; k++)
      if (t.fwd[k] + t.bwd[k] > 0)
        printf("LAYER %s %s %.2f %.2f %.1f\n", b->name, kind_name[k], 1e3 * t.fwd[k] / steps,
               1e3 * t.bwd[k] / steps, 100.0 * (t.fwd[k] + t.bwd[k]) / steps / total);
    printf("LAYER %s zero_grads %.2f %.2f %.1f\n", b->name, 1e3 * t.zero / steps, 0.0,
           100.0 * t.zero / steps / total);
    printf("LAYER %s loss %.2f %.2f %.1f\n", b->name, 1e3 * t.loss / steps, 0.0,
           100.0 * t.loss / steps / total);
    printf("LAYER %s adamw %.2f %.2f %.1f\n", b->name, 1e3 * t.optim / steps, 0.0,
           100.0 * t.optim / steps / total);
    printf("LAYER %s sum_of_layers %.2f %.2f %.1f\n", b->name, 1e3 * sum, 0.0, 100.0 * sum / total);
    printf("LAYER %s model_step %.2f %.2f 100.0\n", b->name, 1e3 * step_seconds, 0.0);
    /* every conv layer: geometry, ms and GFLOP/s of forward and of backward */
    for (int i = 1; i < nl; i++) {
      const sd_nn_layer *L = &b->m->layers[i];
      if (!L->on_path || L->kind != SD_NN_LAYER_CONV2D)
        continue;
      const sd_nn_conv_geom *g = &L->u.conv.g;
      double f = conv_flop_fwd(L, b->batch);
      double fb = f * (1.0 + (b->m->layers[L->in[0]].out.grad ? 1.0 : 0.0));
      double tf = t.fwd_layer[i] / steps, tb = t.bwd_layer[i] / steps;
      printf(
          "CONVL %s %-8s %3dx%2dx%2d->%3dx%2dx%2d k%d s%d %-8s fwd %7.2f ms %5.1f GF/s  bwd %7.2f "
          "ms %5.1f GF/s\n",
          b->name, L->name, g->c, g->h, g->w, g->oc, g->oh, g->ow, g->kh, g->sh,
          sd_nn_conv2d_winograd_tile(g) == 4   ? "wino4x4"
          : sd_nn_conv2d_winograd_tile(g) == 2 ? "wino2x2"
                                               : "im2col",
          1e3 * tf, f / tf * 1e-9, 1e3 * tb, fb / tb * 1e-9);
    }
  }
  free(t.fwd_layer), free(t.bwd_layer);
  double conv_s = (t.fwd[SD_NN_LAYER_CONV2D] + t.bwd[SD_NN_LAYER_CONV2D]) / steps;
  double flop = conv_train_flop(b->m, b->batch);
  printf("CONV %s %d %.2f %.4f %.4f %.3f\n", b->name, threads, flop / conv_s * 1e-9, conv_s, total,
         flop * 1e-9);
  return SD_OK;
}

/* ---- kernel prototypes (--kernels) ------------------------------------------------------------
 * Faster versions of engine kernels that the layer profile shows as slow, timed against the
 * engine's on the same data and checked to give the same result. Compiled at O3 like nn_ops.c. */

/* ReLU/LeakyReLU backward with the multiply made unconditional: GCC (12, -O3) vectorises this
 * form; the engine's `x > 0 ? dy : slope * dy` keeps a scalar branch (-ftrapping-math forbids
 * if-converting the multiply), which mispredicts on about every other element. Same NaN
 * propagation (0 * NaN = NaN). noipa: with slope constant-propagated to 0, GCC turns this back
 * into the branchy form, which the engine (slope is a run-time value) would not see. */
__attribute__((optimize("O3"), noipa)) static void proto_relu_backward(size_t len, float slope,
                                                                       const float *restrict x,
                                                                       const float *restrict dy,
                                                                       float *restrict dx) {
  for (size_t i = 0; i < len; i++) {
    float s = x[i] > 0.0f ? 1.0f : slope;
    dx[i] = dx[i] + dy[i] * s;
  }
}

/* Nearest upsampling by 2 without the per-element integer division. */
__attribute__((optimize("O3"))) static void
proto_upsample2_forward(int nc, int h, int w, const float *restrict x, float *restrict y) {
  const int ow = 2 * w;
  for (size_t r = 0; r < (size_t)nc * h; r++) {
    const float *in = x + r * w;
    float *o0 = y + 2 * r * ow, *o1 = o0 + ow;
    for (int i = 0; i < w; i++)
      o0[2 * i] = o0[2 * i + 1] = in[i];
    memcpy(o1, o0, sizeof(float) * (size_t)ow);
  }
}

__attribute__((optimize("O3"))) static void
proto_upsample2_backward(int nc, int h, int w, const float *restrict dy, float *restrict dx) {
  const int ow = 2 * w;
  for (size_t r = 0; r < (size_t)nc * h; r++) {
    const float *g0 = dy + 2 * r * ow, *g1 = g0 + ow;
    float *out = dx + r * w;
    for (int i = 0; i < w; i++)
      out[i] += (g0[2 * i] + g0[2 * i + 1]) + (g1[2 * i] + g1[2 * i + 1]);
  }
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
  double d = 0;
  for (size_t i = 0; i < n; i++) {
    double e = fabs((double)a[i] - (double)b[i]);
    if (e > d)
      d = e;
  }
  return d;
}

/* Median ms of reps calls of body. */
#define TIME_MS(out, reps, body)                                                                   \
  do {                                                                                             \
    double v_[MAX_REPS];                                                                           \
    for (int r_ = 0; r_ < (reps); r_++) {                                                          \
      double t_ = now();                                                                           \
      body;                                                                                        \
      v_[r_] = 1e3 * (now() - t_);                                                                 \
    }                                                                                              \
    (out) = median(v_, (reps));                                                                    \
  } while (0)

static sd_status bench_kernels(int reps) {
  /* the classifier's stem activation [64, 16, 64, 64]; the U-Net's last upsampling
   * [16, 64, 32, 32] -> [16, 64, 64, 64] */
  const size_t n = (size_t)64 * 16 * 64 * 64;
  const int nc = 16 * 64, h = 32, w = 32;
  const size_t nu = (size_t)nc * h * w, nu4 = 4 * nu;
  float *x = sd_malloc(n, sizeof *x, "kernel x"), *dy = sd_malloc(n, sizeof *dy, "kernel dy");
  float *a = sd_malloc(n, sizeof *a, "kernel out a"), *b = sd_malloc(n, sizeof *b, "kernel out b");
  if (!x || !dy || !a || !b) {
    free(x), free(dy), free(a), free(b);
    return SD_ERROR(SD_ERR_NOMEM, "bench: out of memory for kernel prototypes");
  }
  fill_uniform(x, n, 11);
  fill_uniform(dy, n, 12);
  double te, tp;
  memset(a, 0, n * sizeof *a);
  memset(b, 0, n * sizeof *b);
  TIME_MS(te, reps, sd_nn_leaky_relu_backward(n, 0.0f, x, dy, a));
  TIME_MS(tp, reps, proto_relu_backward(n, 0.0f, x, dy, b));
  printf("KERNEL relu_backward %zu %.2f %.2f %.1f %.3g\n", n, te, tp, te / tp,
         max_abs_diff(a, b, n));
  TIME_MS(te, reps, sd_nn_upsample_forward(nc, h, w, 2, SD_NN_UPSAMPLE_NEAREST, x, a));
  TIME_MS(tp, reps, proto_upsample2_forward(nc, h, w, x, b));
  printf("KERNEL upsample2_forward %zu %.2f %.2f %.1f %.3g\n", nu4, te, tp, te / tp,
         max_abs_diff(a, b, nu4));
  memset(a, 0, nu * sizeof *a);
  memset(b, 0, nu * sizeof *b);
  TIME_MS(te, reps, sd_nn_upsample_backward(nc, h, w, 2, SD_NN_UPSAMPLE_NEAREST, dy, a));
  TIME_MS(tp, reps, proto_upsample2_backward(nc, h, w, dy, b));
  printf("KERNEL upsample2_backward %zu %.2f %.2f %.1f %.3g\n", nu4, te, tp, te / tp,
         max_abs_diff(a, b, nu));
  free(x), free(dy), free(a), free(b);
  return SD_OK;
}

/* ---- sgemm ceiling -------------------------------------------------------------------------- */

static sd_status bench_sgemm(int threads, int reps) {
  const int M = 2048;
  float *A = sd_malloc((size_t)M * M, sizeof *A, "sgemm A");
  float *B = sd_malloc((size_t)M * M, sizeof *B, "sgemm B");
  float *C = sd_malloc((size_t)M * M, sizeof *C, "sgemm C");
  if (!A || !B || !C) {
    free(A), free(B), free(C);
    return SD_ERROR(SD_ERR_NOMEM, "bench: out of memory for sgemm");
  }
  fill_uniform(A, (size_t)M * M, 4);
  fill_uniform(B, (size_t)M * M, 5);
  double g[MAX_REPS];
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, M, M, 1.0f, A, M, B, M, 0.0f, C, M);
  for (int r = 0; r < reps; r++) {
    double t0 = now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, M, M, 1.0f, A, M, B, M, 0.0f, C, M);
    g[r] = 2.0 * M * M * (double)M / (now() - t0) * 1e-9;
  }
  printf("SGEMM %d %.2f", threads, median(g, reps));
  for (int r = 0; r < reps; r++)
    printf(" %.2f", g[r]);
  printf("\n");
  free(A), free(B), free(C);
  return SD_OK;
}

static sd_status bench_one(const char *name, int batch, int threads, int reps, double min_time,
                           int layers) {
  bench_model b;
  sd_status st = bench_model_create(&b, name, batch);
  double tr[MAX_REPS], in[MAX_REPS];
  if (st == SD_OK)
    st = time_steps(&b, train_step, 2, reps, min_time, tr);
  if (st == SD_OK)
    st = time_steps(&b, infer_step, 2, reps, min_time, in);
  if (st == SD_OK) {
    printf("PARAMS %s %zu\n", name, sd_nn_model_trainable_count(b.m));
    const char *pass[2] = {"train", "infer"};
    const double *v[2] = {tr, in};
    for (int p = 0; p < 2; p++) {
      printf("RESULT %s %s %d %d %.2f", name, pass[p], batch, threads, median(v[p], reps));
      for (int r = 0; r < reps; r++)
        printf(" %.2f", v[p][r]);
      printf("\n");
    }
    fflush(stdout);
    double step_s = batch / median(tr, reps);
    int steps = (int)(1.0 / step_s) + 2;
    st = profile_layers(&b, threads, steps, layers, step_s);
  }
  bench_model_free(&b);
  return st;
}

int main(int argc, char **argv) {
  int threads = 2, reps = 5, layers = 0, kernels = 0;
  double min_time = 0.5;
  const char *only = "all";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
      threads = atoi(argv[++i]);
    else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
      reps = atoi(argv[++i]);
    else if (strcmp(argv[i], "--min-time") == 0 && i + 1 < argc)
      min_time = atof(argv[++i]);
    else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
      only = argv[++i];
    else if (strcmp(argv[i], "--layers") == 0)
      layers = 1;
    else if (strcmp(argv[i], "--kernels") == 0)
      kernels = 1;
    else {
      fprintf(stderr, "usage: bench_train [--threads T] [--reps R] [--min-time S] "
                      "[--only classifier|unet|sgemm] [--layers] [--kernels]\n");
      return 2;
    }
  }
  if (threads < 1 || reps < 1 || reps > MAX_REPS || !(min_time >= 0)) {
    fprintf(stderr, "bench_train: need threads >= 1, 1 <= reps <= %d, min-time >= 0\n", MAX_REPS);
    return 2;
  }
  openblas_set_num_threads(threads);
  int all = strcmp(only, "all") == 0;
  sd_status st = SD_OK;
  if (st == SD_OK && kernels)
    st = bench_kernels(reps);
  if (st == SD_OK && (all || strcmp(only, "sgemm") == 0))
    st = bench_sgemm(threads, reps);
  if (st == SD_OK && (all || strcmp(only, "classifier") == 0))
    st = bench_one("classifier", 64, threads, reps, min_time, layers);
  if (st == SD_OK && (all || strcmp(only, "unet") == 0))
    st = bench_one("unet", 16, threads, reps, min_time, layers);
  if (st != SD_OK) {
    fprintf(stderr, "bench_train: %s (%s)\n", sd_error_message(), sd_error_where());
    return 1;
  }
  return 0;
}
