/* test_nn_model.c - the model as a whole: a tiny CNN overfits a tiny random set; no allocation
 * inside the training step (malloc family wrapped at link time, arena pointers unchanged);
 * batch norm train vs eval against hand-computed statistics; deterministic initialisation;
 * parameter enumeration; the architecture description round trip; hooks; error reporting. */
#include <stddef.h>

#include "nn_test_util.h"
#include "stemdefect/nn_kernels.h"

/* ---- allocation counting: the test links with -Wl,--wrap=malloc,... so calls made by the
 * statically linked library land here (OpenBLAS's own allocations are not counted) ---- */
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t s);
void *__real_realloc(void *p, size_t n);
int __real_posix_memalign(void **p, size_t a, size_t n);
static long alloc_calls = 0;
void *__wrap_malloc(size_t n) {
  alloc_calls++;
  return __real_malloc(n);
}
void *__wrap_calloc(size_t n, size_t s) {
  alloc_calls++;
  return __real_calloc(n, s);
}
void *__wrap_realloc(void *p, size_t n) {
  alloc_calls++;
  return __real_realloc(p, n);
}
int __wrap_posix_memalign(void **p, size_t a, size_t n) {
  alloc_calls++;
  return __real_posix_memalign(p, a, n);
}

/* conv-bn-relu-pool-dense for [n, 1, 8, 8], 4 classes */
static sd_nn_model *tiny_cnn(int batch) {
  sd_nn_model *m = NULL;
  if (sd_nn_model_create(&m) != SD_OK)
    return NULL;
  int x = sd_nn_add_conv2d_ex(m, 0, 8, 3, 1, 1, 0);
  x = sd_nn_add_batchnorm(m, x);
  x = sd_nn_add_relu(m, x);
  x = sd_nn_add_maxpool(m, x, 2, 2);
  x = sd_nn_add_dropout(m, x, 0.1f);
  x = sd_nn_add_dense(m, x, 4);
  if (sd_nn_model_compile(m, batch, 1, 8, 8) != SD_OK) {
    fprintf(stderr, "compile: %s\n", sd_error_message());
    sd_nn_model_destroy(&m);
  }
  return m;
}

static void test_overfit_and_no_alloc(void) {
  enum { N = 16, C = 4, STEPS = 300 };
  sd_nn_model *m = tiny_cnn(N);
  SD_EXPECT(m != NULL);
  if (!m)
    return;
  SD_EXPECT_OK(sd_nn_model_init_params(m, 11));
  sd_rng r;
  sd_rng_init(&r, 2024, 0, 1);
  float x[N * 64];
  int32_t y[N];
  nt_fill(&r, x, N * 64, -1, 1);
  for (int i = 0; i < N; i++)
    y[i] = i % C;
  sd_nn_optim opt = sd_nn_optim_adamw(1e-2f, 1e-4f);
  sd_nn_schedule sched = {
      .kind = SD_NN_SCHEDULE_COSINE, .lr = 1e-2f, .min_lr = 1e-3f, .total = STEPS, .warmup = 10};
  const float *arenas[6] = {m->params, m->grads, m->opt_state, m->buffers, m->acts, m->work};
  double loss = 1e9, first = 0;
  long allocs_in_steps = 0;
  int steps = 0;
  for (; steps < STEPS; steps++) {
    long before = alloc_calls;
    sd_nn_model_zero_grad(m);
    SD_EXPECT_OK(sd_nn_model_forward(m, x, N, SD_NN_MODE_TRAIN));
    SD_EXPECT_OK(sd_nn_loss_softmax_ce(sd_nn_model_output(m), y, NULL, &loss));
    SD_EXPECT_OK(sd_nn_model_backward(m));
    SD_EXPECT_OK(sd_nn_optim_step(m, &opt, sd_nn_schedule_lr(&sched, opt.step), NULL));
    allocs_in_steps += alloc_calls - before;
    if (steps == 0)
      first = loss;
    if (loss < 0.01)
      break;
  }
  fprintf(stderr, "overfit: loss %.4f -> %.5f after %d steps; %ld allocations in the steps\n",
          first, loss, steps + 1, allocs_in_steps);
  SD_EXPECT_MSG(loss < 0.05, "tiny CNN did not overfit 16 images: loss %.4f", loss);
  SD_EXPECT_MSG(allocs_in_steps == 0, "%ld allocations inside training steps", allocs_in_steps);
  const float *after[6] = {m->params, m->grads, m->opt_state, m->buffers, m->acts, m->work};
  SD_EXPECT(memcmp(arenas, after, sizeof arenas) == 0);
  /* eval mode classifies the training set */
  SD_EXPECT_OK(sd_nn_model_forward(m, x, N, SD_NN_MODE_EVAL));
  const sd_nn_tensor *o = sd_nn_model_output(m);
  int correct = 0;
  for (int i = 0; i < N; i++) {
    int best = 0;
    for (int c = 1; c < C; c++)
      if (o->data[i * C + c] > o->data[i * C + best])
        best = c;
    correct += best == y[i];
  }
  SD_EXPECT_MSG(correct == N, "eval accuracy %d/%d after overfitting", correct, N);
  /* a smaller batch than compiled runs in the same arenas */
  SD_EXPECT_OK(sd_nn_model_forward(m, x, 3, SD_NN_MODE_EVAL));
  SD_EXPECT(sd_nn_model_output(m)->n == 3);
  SD_EXPECT(sd_nn_model_forward(m, x, N + 1, SD_NN_MODE_EVAL) == SD_ERR_ARG);
  sd_error_clear();
  sd_nn_model_destroy(&m);
}

/* [4, 2, 3, 1] through batch norm only: train output and running statistics by hand */
static void test_batchnorm_modes(void) {
  enum { N = 4, C = 2, HW = 3 };
  sd_nn_model *m = NULL;
  SD_EXPECT_OK(sd_nn_model_create(&m));
  sd_nn_add_batchnorm_ex(m, 0, 0.1f, 1e-5f);
  SD_EXPECT_OK(sd_nn_model_compile(m, N, C, HW, 1));
  sd_rng r;
  sd_rng_init(&r, 9, 0, 0);
  float x[N * C * HW];
  nt_fill(&r, x, N * C * HW, 1.0, 4.0);
  double mean[C] = {0}, var[C] = {0};
  for (int c = 0; c < C; c++) {
    for (int i = 0; i < N; i++)
      for (int p = 0; p < HW; p++)
        mean[c] += x[(i * C + c) * HW + p];
    mean[c] /= N * HW;
    for (int i = 0; i < N; i++)
      for (int p = 0; p < HW; p++)
        var[c] += pow(x[(i * C + c) * HW + p] - mean[c], 2);
    var[c] /= N * HW; /* biased, used to normalise */
  }
  /* one training forward: output normalised with the batch statistics */
  SD_EXPECT_OK(sd_nn_model_forward(m, x, N, SD_NN_MODE_TRAIN));
  const sd_nn_tensor *o = sd_nn_model_output(m);
  double err = 0;
  for (int i = 0; i < N; i++)
    for (int c = 0; c < C; c++)
      for (int p = 0; p < HW; p++) {
        int k = (i * C + c) * HW + p;
        err = fmax(err, fabs(o->data[k] - (x[k] - mean[c]) / sqrt(var[c] + 1e-5)));
      }
  SD_EXPECT_MSG(err < 1e-5, "batch norm train output differs by %.3g", err);
  const float *rm = m->layers[1].u.bn.running_mean, *rv = m->layers[1].u.bn.running_var;
  double unb = (double)(N * HW) / (N * HW - 1);
  SD_EXPECT_NEAR(rm[0], 0.1 * mean[0], 1e-6);
  SD_EXPECT_NEAR(rv[1], 0.9 + 0.1 * var[1] * unb, 1e-6);
  /* eval before convergence uses the running statistics, not the batch's */
  SD_EXPECT_OK(sd_nn_model_forward(m, x, N, SD_NN_MODE_EVAL));
  SD_EXPECT_NEAR(o->data[0], (x[0] - rm[0]) / sqrt(rv[0] + 1e-5), 1e-5);
  /* many training passes on the same batch: running stats -> batch mean, unbiased var */
  for (int k = 0; k < 300; k++)
    SD_EXPECT_OK(sd_nn_model_forward(m, x, N, SD_NN_MODE_TRAIN));
  for (int c = 0; c < C; c++) {
    SD_EXPECT_NEAR(rm[c], mean[c], 1e-5);
    SD_EXPECT_NEAR(rv[c], var[c] * unb, 1e-5);
  }
  SD_EXPECT_OK(sd_nn_model_forward(m, x, N, SD_NN_MODE_EVAL));
  err = 0;
  for (int i = 0; i < N; i++)
    for (int c = 0; c < C; c++)
      for (int p = 0; p < HW; p++) {
        int k = (i * C + c) * HW + p;
        err = fmax(err, fabs(o->data[k] - (x[k] - mean[c]) / sqrt(var[c] * unb + 1e-5)));
      }
  SD_EXPECT_MSG(err < 1e-4, "batch norm eval output differs by %.3g", err);
  /* eval mode leaves running statistics alone */
  float before = rm[0];
  SD_EXPECT_OK(sd_nn_model_forward(m, x, N, SD_NN_MODE_EVAL));
  SD_EXPECT(rm[0] == before);
  sd_nn_model_destroy(&m);
}

static sd_nn_model *unet(int batch, int compile) {
  sd_nn_model *m = NULL;
  if (sd_nn_model_create(&m) != SD_OK)
    return NULL;
  int c1 = sd_nn_add_conv2d(m, 0, 4, 3, 1, 1);
  c1 = sd_nn_add_batchnorm(m, c1);
  c1 = sd_nn_add_relu(m, c1);
  int p = sd_nn_add_maxpool(m, c1, 2, 2);
  int c2 = sd_nn_add_conv2d(m, p, 8, 3, 1, 1);
  c2 = sd_nn_add_leaky_relu(m, c2, 0.1f);
  int u = sd_nn_add_upsample(m, c2, 2, SD_NN_UPSAMPLE_BILINEAR);
  int cat = sd_nn_add_concat(m, u, c1);
  int c3 = sd_nn_add_conv2d(m, cat, 4, 3, 1, 1);
  c3 = sd_nn_add_dropout(m, c3, 0.2f);
  int t = sd_nn_add_conv_transpose2d(m, c2, 4, 2, 2, 0);
  int s = sd_nn_add_add(m, c3, t);
  s = sd_nn_add_avgpool(m, s, 1, 1);
  int head = sd_nn_add_conv2d(m, s, 3, 1, 1, 0);
  if (sd_nn_layer_set_name(m, head, "head") != SD_OK)
    sd_error_clear();
  if (compile && sd_nn_model_compile(m, batch, 1, 8, 8) != SD_OK)
    sd_nn_model_destroy(&m);
  return m;
}

static int ready_calls = 0;
static size_t last_ready = (size_t)-1;
static int ready_monotone = 1;
static sd_status on_ready(void *ctx, size_t first) {
  (void)ctx;
  if (first > last_ready)
    ready_monotone = 0;
  last_ready = first;
  ready_calls++;
  return SD_OK;
}

static void test_structure(void) {
  sd_nn_model *a = unet(2, 1), *b = unet(2, 1);
  SD_EXPECT(a && b);
  if (!a || !b)
    return;
  /* deterministic initialisation, identical across processes by construction */
  SD_EXPECT_OK(sd_nn_model_init_params(a, 7));
  SD_EXPECT_OK(sd_nn_model_init_params(b, 7));
  SD_EXPECT(memcmp(a->params, b->params, a->num_params * sizeof(float)) == 0);
  SD_EXPECT_OK(sd_nn_model_init_params(b, 8));
  SD_EXPECT(memcmp(a->params, b->params, a->num_params * sizeof(float)) != 0);
  /* He init: conv0.weight [4,1,3,3] has std sqrt(2/9) (loose check over 36 values) */
  int i0 = sd_nn_model_find_param(a, "conv0.weight");
  SD_EXPECT(i0 == 0);
  const sd_nn_param *p0 = sd_nn_model_param(a, i0);
  SD_EXPECT(p0->ndim == 4 && p0->shape[0] == 4 && p0->shape[1] == 1 && p0->shape[2] == 3 &&
            p0->shape[3] == 3 && p0->count == 36 && p0->decay == 1);
  double ss = 0;
  for (int k = 0; k < 36; k++)
    ss += pow(sd_nn_param_data(a, p0)[k], 2);
  SD_EXPECT(sqrt(ss / 36) > 0.5 * sqrt(2.0 / 9) && sqrt(ss / 36) < 1.5 * sqrt(2.0 / 9));
  SD_EXPECT(sd_nn_model_find_param(a, "bn0.weight") >= 0);
  SD_EXPECT(sd_nn_model_param(a, sd_nn_model_find_param(a, "bn0.bias"))->decay == 0);
  SD_EXPECT(sd_nn_model_find_param(a, "head.weight") >= 0);
  SD_EXPECT(sd_nn_model_find_param(a, "convt0.weight") >= 0);
  SD_EXPECT(sd_nn_model_find_buffer(a, "bn0.running_var") == 1);
  SD_EXPECT(sd_nn_model_buffer_count(a) == 2);
  /* every parameter is 64-byte aligned, inside the arena, not overlapping */
  size_t end = 0;
  for (int k = 0; k < sd_nn_model_param_count(a); k++) {
    const sd_nn_param *p = sd_nn_model_param(a, k);
    SD_EXPECT(p->offset % 16 == 0 && p->offset >= end);
    end = p->offset + p->count;
  }
  SD_EXPECT(end <= a->num_params);
  SD_EXPECT(((uintptr_t)a->params & 63) == 0 && ((uintptr_t)a->acts & 63) == 0);

  /* description round trip: same text, same parameter names, shapes and layout */
  char desc[4096], desc2[4096];
  size_t len = sd_nn_model_describe(a, desc, sizeof desc);
  SD_EXPECT(len > 0 && len < sizeof desc);
  fprintf(stderr, "architecture:\n%s", desc);
  sd_nn_model *c = NULL;
  int ic, ih, iw;
  SD_EXPECT_OK(sd_nn_model_create_from_description(&c, desc, &ic, &ih, &iw));
  SD_EXPECT(ic == 1 && ih == 8 && iw == 8);
  if (c) {
    SD_EXPECT_OK(sd_nn_model_compile(c, 2, ic, ih, iw));
    sd_nn_model_describe(c, desc2, sizeof desc2);
    SD_EXPECT(strcmp(desc, desc2) == 0);
    SD_EXPECT(c->num_params == a->num_params);
    SD_EXPECT(sd_nn_model_param_count(c) == sd_nn_model_param_count(a));
    for (int k = 0; k < sd_nn_model_param_count(a) && k < sd_nn_model_param_count(c); k++) {
      SD_EXPECT(strcmp(sd_nn_model_param(a, k)->name, sd_nn_model_param(c, k)->name) == 0);
      SD_EXPECT(sd_nn_model_param(a, k)->offset == sd_nn_model_param(c, k)->offset);
    }
    /* copying the arenas reproduces the output exactly */
    memcpy(c->params, a->params, a->num_params * sizeof(float));
    memcpy(c->buffers, a->buffers, a->num_buffers * sizeof(float));
    float x[2 * 64];
    sd_rng r;
    sd_rng_init(&r, 1, 0, 0);
    nt_fill(&r, x, 128, -1, 1);
    SD_EXPECT_OK(sd_nn_model_forward(a, x, 2, SD_NN_MODE_EVAL));
    SD_EXPECT_OK(sd_nn_model_forward(c, x, 2, SD_NN_MODE_EVAL));
    SD_EXPECT(memcmp(sd_nn_model_output(a)->data, sd_nn_model_output(c)->data,
                     sd_nn_tensor_size(sd_nn_model_output(a)) * sizeof(float)) == 0);
    sd_nn_model_destroy(&c);
  }
  sd_nn_model *bad = NULL;
  SD_EXPECT(sd_nn_model_create_from_description(&bad, "input c=1 h=8 w=8\nwobble in=0\n", NULL,
                                                NULL, NULL) == SD_ERR_FORMAT);
  SD_EXPECT(bad == NULL && strstr(sd_error_message(), "wobble") != NULL);
  sd_error_clear();

  /* grad-ready hook: called per layer with parameters, offsets never increase, ends at 0 */
  sd_nn_model_set_grad_ready(a, on_ready, NULL);
  float x[2 * 64];
  sd_rng r;
  sd_rng_init(&r, 2, 0, 0);
  nt_fill(&r, x, 128, -1, 1);
  sd_nn_model_seed_dropout(a, 1, 0);
  SD_EXPECT_OK(sd_nn_model_forward(a, x, 2, SD_NN_MODE_TRAIN));
  sd_nn_tensor *o = sd_nn_model_output(a);
  for (size_t k = 0; k < sd_nn_tensor_size(o); k++)
    o->grad[k] = 1.0f;
  SD_EXPECT_OK(sd_nn_model_backward(a));
  SD_EXPECT(ready_calls == 6 && ready_monotone && last_ready == 0);
  sd_nn_model_set_grad_ready(a, NULL, NULL);

  /* parameter gradients accumulate until zero_grad: a second backward doubles them */
  float *g1 = malloc(a->num_params * sizeof *g1);
  memcpy(g1, a->grads, a->num_params * sizeof *g1);
  sd_nn_model_seed_dropout(a, 1, 0); /* the same dropout mask as the first pass */
  SD_EXPECT_OK(sd_nn_model_forward(a, x, 2, SD_NN_MODE_TRAIN));
  for (size_t k = 0; k < sd_nn_tensor_size(o); k++)
    o->grad[k] = 1.0f;
  SD_EXPECT_OK(sd_nn_model_backward(a));
  double acc_err = 0;
  for (size_t k = 0; k < a->num_params; k++)
    acc_err = fmax(acc_err, fabs(a->grads[k] - 2 * g1[k]) / (fabs(g1[k]) + 1e-3));
  SD_EXPECT_MSG(acc_err < 1e-4, "second backward without zero_grad: rel err %.3g", acc_err);
  free(g1);

  /* a middle layer as the output (feature extraction) */
  SD_EXPECT_OK(sd_nn_model_set_output(a, 4));
  SD_EXPECT_OK(sd_nn_model_forward(a, x, 2, SD_NN_MODE_EVAL));
  SD_EXPECT(sd_nn_model_output(a)->c == 4 && sd_nn_model_output(a)->h == 4);
  sd_nn_model_destroy(&a);
  sd_nn_model_destroy(&b);
  sd_nn_model_destroy(&b); /* NULL-safe */
}

static sd_status doubling(void *ctx, double *buf, int n) {
  (void)ctx;
  for (int i = 0; i < n; i++)
    buf[i] *= 2;
  return SD_OK;
}

static void test_reduce_hook(void) {
  /* a pretend second rank holding the same samples: the statistics (and so the outputs) are
   * unchanged, the loss normaliser doubles, so this rank's loss and gradients are half */
  sd_nn_model *a = tiny_cnn(4), *b = tiny_cnn(4);
  SD_EXPECT(a && b);
  if (!a || !b)
    return;
  sd_nn_model_set_reduce(b, doubling, NULL);
  float x[4 * 64];
  int32_t y[4] = {0, 1, 2, 3};
  sd_rng r;
  sd_rng_init(&r, 4, 0, 0);
  nt_fill(&r, x, 256, -1, 1);
  sd_nn_model *ms[2] = {a, b};
  double l[2];
  for (int k = 0; k < 2; k++) {
    sd_nn_model_seed_dropout(ms[k], 1, 0);
    SD_EXPECT_OK(sd_nn_model_forward(ms[k], x, 4, SD_NN_MODE_TRAIN));
    sd_nn_loss_opts o = {.reduce = k ? doubling : NULL};
    SD_EXPECT_OK(sd_nn_loss_softmax_ce(sd_nn_model_output(ms[k]), y, &o, &l[k]));
    sd_nn_model_zero_grad(ms[k]);
    SD_EXPECT_OK(sd_nn_model_backward(ms[k]));
  }
  SD_EXPECT_NEAR(l[1], l[0] / 2, 1e-6);
  double err = 0;
  for (size_t k = 0; k < a->num_params; k++)
    err = fmax(err, fabs(a->grads[k] - 2 * b->grads[k]));
  SD_EXPECT_MSG(err < 1e-5, "two identical pretend ranks: gradient share differs by %.3g", err);
  /* same running means; running variances differ only by the unbiased factor of 4*64 vs
   * 2*4*64 elements */
  const float *ma = a->layers[2].u.bn.running_mean, *mb = b->layers[2].u.bn.running_mean;
  const float *va = a->layers[2].u.bn.running_var, *vb = b->layers[2].u.bn.running_var;
  for (int c = 0; c < 8; c++) {
    SD_EXPECT_NEAR(ma[c], mb[c], 1e-6);
    double var = (va[c] - 0.9) / 0.1 * (255.0 / 256.0);
    SD_EXPECT_NEAR(vb[c], 0.9 + 0.1 * var * 512.0 / 511.0, 1e-6);
  }
  sd_nn_model_destroy(&a);
  sd_nn_model_destroy(&b);
}

static void test_errors(void) {
  sd_nn_model *m = NULL;
  SD_EXPECT_OK(sd_nn_model_create(&m));
  int a = sd_nn_add_conv2d(m, 0, 4, 3, 1, 1);
  int p = sd_nn_add_maxpool(m, a, 2, 2);
  int bad = sd_nn_add_concat(m, p, a); /* 4x4 with 8x8 */
  SD_EXPECT(bad > 0);
  sd_status st = sd_nn_model_compile(m, 2, 1, 8, 8);
  SD_EXPECT(st == SD_ERR_ARG && strstr(sd_error_message(), "concat0") != NULL);
  fprintf(stderr, "expected error: %s\n", sd_error_message());
  sd_error_clear();
  sd_nn_model_destroy(&m);

  SD_EXPECT_OK(sd_nn_model_create(&m));
  int x = sd_nn_add_conv2d(m, 0, 0, 3, 1, 1); /* out_ch 0 */
  SD_EXPECT(x == -1);
  x = sd_nn_add_relu(m, x); /* propagates */
  SD_EXPECT(x == -1);
  SD_EXPECT(sd_nn_add_relu(m, 42) == -1);
  SD_EXPECT(sd_nn_model_compile(m, 1, 1, 8, 8) == SD_ERR_ARG);
  sd_error_clear();
  sd_nn_model_destroy(&m);

  SD_EXPECT_OK(sd_nn_model_create(&m));
  sd_nn_add_conv2d(m, 0, 2, 5, 1, 0);
  SD_EXPECT(sd_nn_model_compile(m, 1, 1, 3, 3) == SD_ERR_ARG); /* 3x3 input, 5x5 kernel */
  sd_error_clear();
  SD_EXPECT(sd_nn_model_backward(m) == SD_ERR_ARG);
  sd_error_clear();
  sd_nn_model_destroy(&m);
}

/* The layer hook: a begin and an end around every on-path layer, forward in increasing and
 * backward in decreasing id order, nothing for layers off the output's path; removing it stops
 * the calls. */
typedef struct {
  int calls, bad, open;
  int last; /* last layer id seen at an end */
  int seen[16][2];
} hook_log;

static void log_hook(void *ctx, const sd_nn_model *m, int layer, sd_nn_pass pass, int end) {
  hook_log *h = ctx;
  h->calls++;
  if (layer < 1 || layer >= m->num_layers || layer >= 16 || !m->layers[layer].on_path) {
    h->bad++;
    return;
  }
  if (!end) {
    if (h->open != 0)
      h->bad++;
    /* order: forward increasing, backward decreasing */
    if (h->last >= 0 && (pass == SD_NN_PASS_FORWARD ? layer <= h->last : layer >= h->last))
      h->bad++;
    h->open = layer;
    return;
  }
  if (h->open != layer)
    h->bad++;
  h->open = 0;
  h->last = layer;
  h->seen[layer][pass]++;
}

static void test_layer_hook(void) {
  sd_nn_model *m = NULL;
  SD_EXPECT_OK(sd_nn_model_create(&m));
  int a = sd_nn_add_conv2d(m, 0, 3, 3, 1, 1);
  int side = sd_nn_add_relu(m, 0); /* not on the output's path */
  int r = sd_nn_add_relu(m, a);
  int c = sd_nn_add_concat(m, r, a);
  int out = sd_nn_add_global_avgpool(m, c);
  SD_EXPECT_OK(sd_nn_model_set_output(m, out));
  SD_EXPECT_OK(sd_nn_model_compile(m, 2, 1, 5, 5));
  float x[50];
  for (int i = 0; i < 50; i++)
    x[i] = (float)((i * 7) % 11) - 5.0f;
  hook_log h;
  memset(&h, 0, sizeof h);
  h.last = -1;
  sd_nn_model_set_layer_hook(m, log_hook, &h);
  SD_EXPECT_OK(sd_nn_model_forward(m, x, 2, SD_NN_MODE_TRAIN));
  h.last = -1;
  sd_nn_tensor *o = sd_nn_model_output(m);
  for (size_t i = 0; i < sd_nn_tensor_size(o); i++)
    o->grad[i] = 1.0f;
  SD_EXPECT_OK(sd_nn_model_backward(m));
  SD_EXPECT_MSG(h.bad == 0, "layer hook: %d calls out of order or for a wrong layer", h.bad);
  SD_EXPECT_MSG(h.calls == 16, "layer hook: %d calls, want 2 x 2 x 4 on-path layers", h.calls);
  const int on[4] = {a, r, c, out};
  for (int k = 0; k < 4; k++)
    SD_EXPECT_MSG(h.seen[on[k]][0] == 1 && h.seen[on[k]][1] == 1,
                  "layer %d: forward %d, backward %d hook calls, want 1 and 1", on[k],
                  h.seen[on[k]][0], h.seen[on[k]][1]);
  SD_EXPECT(h.seen[side][0] == 0 && h.seen[side][1] == 0);
  sd_nn_model_set_layer_hook(m, NULL, NULL);
  int before = h.calls;
  SD_EXPECT_OK(sd_nn_model_forward(m, x, 2, SD_NN_MODE_EVAL));
  SD_EXPECT(h.calls == before);
  sd_nn_model_destroy(&m);
}

int main(void) {
  test_overfit_and_no_alloc();
  test_batchnorm_modes();
  test_structure();
  test_reduce_hook();
  test_layer_hook();
  test_errors();
  return sd_test_finish("test_nn_model");
}
