/* test_nn_grad.c - every layer's backward (input and parameter gradients) against central
 * finite differences, one small model per layer, plus a residual block and U-Net-shaped nets
 * (conv, pool, upsample, concat; one of them with every 3x3 conv on Winograd F(4x4)). Entries at a
 * kink (ReLU, max pooling) where two step sizes disagree are skipped and counted; the test fails if
 * more than a few are. */
#include "nn_test_util.h"

typedef int (*build_fn)(sd_nn_model *m, int x);

static int b_conv(sd_nn_model *m, int x) {
  return sd_nn_add_conv2d(m, x, 4, 3, 1, 1);
}
static int b_conv_s2(sd_nn_model *m, int x) {
  return sd_nn_add_conv2d(m, x, 3, 3, 2, 1);
}
static int b_conv_1x1(sd_nn_model *m, int x) {
  return sd_nn_add_conv2d(m, x, 5, 1, 1, 0);
}
static int b_conv_k2_nobias(sd_nn_model *m, int x) {
  return sd_nn_add_conv2d_ex(m, x, 2, 2, 2, 0, 0);
}
static int b_conv_5x5(sd_nn_model *m, int x) {
  return sd_nn_add_conv2d(m, x, 2, 5, 1, 2);
}
static int b_convt_k2(sd_nn_model *m, int x) {
  return sd_nn_add_conv_transpose2d(m, x, 3, 2, 2, 0);
}
static int b_convt_k3(sd_nn_model *m, int x) {
  return sd_nn_add_conv_transpose2d(m, x, 2, 3, 2, 1);
}
static int b_dense(sd_nn_model *m, int x) {
  return sd_nn_add_dense(m, x, 4);
}
static int b_bn(sd_nn_model *m, int x) {
  return sd_nn_add_batchnorm(m, x);
}
static int b_relu(sd_nn_model *m, int x) {
  return sd_nn_add_relu(m, x);
}
static int b_lrelu(sd_nn_model *m, int x) {
  return sd_nn_add_leaky_relu(m, x, 0.1f);
}
static int b_maxpool(sd_nn_model *m, int x) {
  return sd_nn_add_maxpool(m, x, 2, 2);
}
static int b_maxpool_k3(sd_nn_model *m, int x) {
  return sd_nn_add_pool_ex(m, SD_NN_LAYER_MAXPOOL, x, 3, 2, 1);
}
static int b_avgpool(sd_nn_model *m, int x) {
  return sd_nn_add_avgpool(m, x, 2, 2);
}
static int b_avgpool_k3(sd_nn_model *m, int x) {
  return sd_nn_add_pool_ex(m, SD_NN_LAYER_AVGPOOL, x, 3, 1, 1);
}
static int b_gap(sd_nn_model *m, int x) {
  return sd_nn_add_global_avgpool(m, x);
}
static int b_dropout(sd_nn_model *m, int x) {
  return sd_nn_add_dropout(m, x, 0.3f);
}
static int b_up_nearest(sd_nn_model *m, int x) {
  return sd_nn_add_upsample(m, x, 2, SD_NN_UPSAMPLE_NEAREST);
}
static int b_up_bilinear(sd_nn_model *m, int x) {
  return sd_nn_add_upsample(m, x, 2, SD_NN_UPSAMPLE_BILINEAR);
}
static int b_up_bilinear3(sd_nn_model *m, int x) {
  return sd_nn_add_upsample(m, x, 3, SD_NN_UPSAMPLE_BILINEAR);
}
static int b_concat(sd_nn_model *m, int x) {
  int a = sd_nn_add_conv2d(m, x, 2, 3, 1, 1);
  return sd_nn_add_concat(m, a, x); /* x is read twice: gradients must add up */
}
static int b_add(sd_nn_model *m, int x) {
  int a = sd_nn_add_conv2d(m, x, 3, 3, 1, 1);
  return sd_nn_add_add(m, a, x);
}
/* x is read by add and, later in the list, by concat: add's gradient must add, not overwrite */
static int b_add_reuse(sd_nn_model *m, int x) {
  int a = sd_nn_add_conv2d(m, x, 3, 3, 1, 1);
  int s = sd_nn_add_add(m, a, x);
  return sd_nn_add_concat(m, s, x);
}
static int b_concat_reuse(sd_nn_model *m, int x) {
  int a = sd_nn_add_conv2d(m, x, 2, 1, 1, 0);
  int c = sd_nn_add_concat(m, a, x);
  return sd_nn_add_add(m, sd_nn_add_conv2d(m, c, 3, 1, 1, 0), x);
}
static int b_residual(sd_nn_model *m, int x) {
  int a = sd_nn_add_conv2d_ex(m, x, 3, 3, 1, 1, 0);
  a = sd_nn_add_batchnorm(m, a);
  a = sd_nn_add_relu(m, a);
  a = sd_nn_add_conv2d_ex(m, a, 3, 3, 1, 1, 0);
  a = sd_nn_add_batchnorm(m, a);
  a = sd_nn_add_add(m, a, x);
  return sd_nn_add_relu(m, a);
}
/* conv-bn-relu x2, pool, conv, upsample, concat skip, conv, 1x1 head */
static int b_unet(sd_nn_model *m, int x) {
  int c1 = sd_nn_add_conv2d(m, x, 4, 3, 1, 1);
  c1 = sd_nn_add_batchnorm(m, c1);
  c1 = sd_nn_add_relu(m, c1);
  int p = sd_nn_add_maxpool(m, c1, 2, 2);
  int c2 = sd_nn_add_conv2d(m, p, 6, 3, 1, 1);
  c2 = sd_nn_add_relu(m, c2);
  int u = sd_nn_add_upsample(m, c2, 2, SD_NN_UPSAMPLE_BILINEAR);
  int t = sd_nn_add_conv_transpose2d(m, c2, 2, 2, 2, 0);
  int cat = sd_nn_add_concat(m, u, c1);
  cat = sd_nn_add_concat(m, cat, t);
  int c3 = sd_nn_add_conv2d(m, cat, 4, 3, 1, 1);
  c3 = sd_nn_add_leaky_relu(m, c3, 0.01f);
  return sd_nn_add_conv2d(m, c3, 3, 1, 1, 0);
}

/* 3x3 convolutions the dispatch runs on Winograd: F(4x4) (>= 8 channels, output >= 8x8) and
 * F(2x2) (>= 16 channels, smaller outputs) */
static int b_conv8(sd_nn_model *m, int x) {
  return sd_nn_add_conv2d(m, x, 8, 3, 1, 1);
}
static int b_conv16(sd_nn_model *m, int x) {
  return sd_nn_add_conv2d(m, x, 16, 3, 1, 1);
}
/* the U-Net shape with every 3x3 convolution on Winograd F(4x4) (16x16 and 8x8 outputs),
 * linear up to the loss (average pooling, no activations), so that a large step is accurate:
 * at these widths, F(4x4)'s rounding (about 1e-6 relative) makes differences with small steps
 * noisy, and ReLU and max pooling would put many entries at a kink */
static int b_unet_wino(sd_nn_model *m, int x) {
  int c1 = sd_nn_add_conv2d(m, x, 8, 3, 1, 1);
  int p = sd_nn_add_avgpool(m, c1, 2, 2);
  int c2 = sd_nn_add_conv2d(m, p, 16, 3, 1, 1);
  int u = sd_nn_add_upsample(m, c2, 2, SD_NN_UPSAMPLE_NEAREST);
  int cat = sd_nn_add_concat(m, u, c1);
  int c3 = sd_nn_add_conv2d(m, cat, 8, 3, 1, 1);
  return sd_nn_add_conv2d(m, c3, 3, 1, 1, 0);
}

typedef struct {
  const char *name;
  build_fn build;
  int n, c, h, w;
  sd_nn_mode mode;
  int warm;    /* training forwards before the check (running statistics for eval mode) */
  double step; /* finite-difference step: large for one layer (less float noise), small for deep
               nets with ReLU (fewer kinks inside the step); 0 = 1e-2 */
} grad_case;

static void run_case(const grad_case *gc) {
  sd_nn_model *m = NULL;
  SD_EXPECT_OK(sd_nn_model_create(&m));
  if (!m)
    return;
  int id = gc->build(m, 0);
  SD_EXPECT(id > 0);
  sd_nn_model_set_input_grad(m, 1);
  sd_status st = sd_nn_model_compile(m, gc->n, gc->c, gc->h, gc->w);
  SD_EXPECT_MSG(st == SD_OK, "%s: compile failed: %s", gc->name, sd_error_message());
  if (st != SD_OK) {
    sd_error_clear();
    sd_nn_model_destroy(&m);
    return;
  }
  SD_EXPECT_OK(sd_nn_model_init_params(m, 5));
  sd_rng r;
  sd_rng_init(&r, 42, 0, 7);
  size_t xlen = (size_t)gc->n * gc->c * gc->h * gc->w;
  float *x = malloc(xlen * sizeof *x);
  /* perturb BN and biases away from their trivial init values */
  for (int t = 0; t < sd_nn_model_param_count(m); t++) {
    const sd_nn_param *p = sd_nn_model_param(m, t);
    if (!p->decay)
      nt_fill(&r, sd_nn_param_data(m, p), p->count, -0.5, 0.5);
    if (p->ndim == 1 && strstr(p->name, ".weight"))
      for (size_t k = 0; k < p->count; k++)
        sd_nn_param_data(m, p)[k] += 1.0f;
  }
  for (int k = 0; k < gc->warm; k++) {
    nt_fill(&r, x, xlen, -2.0, 3.0);
    SD_EXPECT_OK(sd_nn_model_forward(m, x, gc->n, SD_NN_MODE_TRAIN));
  }
  nt_fill(&r, x, xlen, -1.0, 1.0);
  nt_fd_result res = nt_fd_check(m, x, gc->n, gc->mode, 40, gc->step > 0 ? gc->step : 1e-2, 3);
  fprintf(stderr, "%-22s %-5s params %6zu: max rel err %.2e over %d entries (%d at kinks)\n",
          gc->name, gc->mode == SD_NN_MODE_TRAIN ? "train" : "eval", sd_nn_model_trainable_count(m),
          res.max_err, res.checked, res.skipped);
  SD_EXPECT_MSG(res.max_err < 1e-2 && res.checked > 0, "%s: max rel err %.3g", gc->name,
                res.max_err);
  SD_EXPECT_MSG(res.skipped * 10 <= res.checked, "%s: %d of %d entries at kinks", gc->name,
                res.skipped, res.checked);
  free(x);
  sd_nn_model_destroy(&m);
  SD_EXPECT(m == NULL);
}

int main(void) {
  const sd_nn_mode T = SD_NN_MODE_TRAIN, E = SD_NN_MODE_EVAL;
  const grad_case cases[] = {
      {"conv3x3", b_conv, 2, 3, 5, 6, T, 0, 0},
      {"conv3x3 stride2", b_conv_s2, 2, 2, 7, 6, T, 0, 0},
      {"conv1x1", b_conv_1x1, 3, 3, 4, 5, T, 0, 0},
      {"conv2x2 s2 no bias", b_conv_k2_nobias, 2, 3, 6, 4, T, 0, 0},
      {"conv5x5 one image", b_conv_5x5, 1, 2, 46, 46, T, 0, 0},
      {"conv3x3 chunks 3+1", b_conv, 4, 2, 24, 32, T, 0, 0},
      {"conv1x1 chunks 3+1", b_conv_1x1, 4, 2, 24, 32, T, 0, 0},
      {"conv_transpose chunks", b_convt_k3, 4, 2, 24, 32, T, 0, 0},
      {"conv_transpose k2 s2", b_convt_k2, 2, 3, 3, 4, T, 0, 0},
      {"conv_transpose k3 s2", b_convt_k3, 2, 2, 4, 3, T, 0, 0},
      {"dense", b_dense, 3, 2, 3, 4, T, 0, 0},
      {"batchnorm", b_bn, 4, 3, 3, 5, T, 0, 0},
      {"batchnorm", b_bn, 4, 3, 3, 5, E, 3, 0},
      {"relu", b_relu, 2, 2, 4, 5, T, 0, 0},
      {"leaky_relu", b_lrelu, 2, 2, 4, 5, T, 0, 0},
      {"maxpool 2/2", b_maxpool, 2, 2, 6, 5, T, 0, 0},
      {"maxpool 3/2 pad1", b_maxpool_k3, 2, 2, 7, 6, T, 0, 0},
      {"avgpool 2/2", b_avgpool, 2, 2, 6, 5, T, 0, 0},
      {"avgpool 3/1 pad1", b_avgpool_k3, 2, 2, 5, 4, T, 0, 0},
      {"global_avgpool", b_gap, 3, 4, 3, 5, T, 0, 0},
      {"dropout", b_dropout, 3, 2, 4, 4, T, 0, 0},
      {"dropout", b_dropout, 3, 2, 4, 4, E, 0, 0},
      {"upsample nearest x2", b_up_nearest, 2, 2, 3, 4, T, 0, 0},
      {"upsample bilinear x2", b_up_bilinear, 2, 2, 3, 4, T, 0, 0},
      {"upsample bilinear x3", b_up_bilinear3, 1, 2, 3, 2, T, 0, 0},
      {"concat (skip)", b_concat, 2, 2, 4, 5, T, 0, 0},
      {"add (residual)", b_add, 2, 3, 4, 5, T, 0, 0},
      {"add, input reused", b_add_reuse, 2, 3, 4, 5, T, 0, 0},
      {"concat, input reused", b_concat_reuse, 2, 3, 4, 5, T, 0, 0},
      {"residual block", b_residual, 4, 3, 5, 4, T, 0, 1e-3},
      {"unet-shaped", b_unet, 2, 1, 8, 6, T, 0, 1e-3},
      {"unet-shaped", b_unet, 2, 1, 8, 6, E, 2, 1e-3},
      {"conv3x3 winograd 4x4", b_conv8, 2, 8, 10, 9, T, 0, 0},
      {"conv3x3 winograd 2x2", b_conv16, 2, 16, 6, 7, T, 0, 0},
      {"unet-shaped winograd", b_unet_wino, 3, 8, 16, 16, T, 0, 3e-2},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    run_case(&cases[i]);
  return sd_test_finish("test_nn_grad");
}
