/* test_nn_ops.c - forward values of the non-GEMM layers against hand-computed results
 * (the gradient tests only prove backward matches forward; these pin forward itself), dropout
 * in training and Monte Carlo (EVAL_DROPOUT, per-sample keyed masks) modes. */
#include "nn_test_util.h"
#include "stemdefect/nn_kernels.h"

static double max_abs(const float *a, const float *b, size_t n) {
  double d = 0;
  for (size_t i = 0; i < n; i++)
    d = fmax(d, fabs(a[i] - b[i]));
  return d;
}

int main(void) {
  /* bilinear x2 of [[1,2],[3,4]], align_corners = false (torch.nn.Upsample's documented
   * example) and nearest x2 */
  {
    const float x[4] = {1, 2, 3, 4};
    float y[16];
    const float bil[16] = {1.0f, 1.25f, 1.75f, 2.0f, 1.5f, 1.75f, 2.25f, 2.5f,
                           2.5f, 2.75f, 3.25f, 3.5f, 3.0f, 3.25f, 3.75f, 4.0f};
    sd_nn_upsample_forward(1, 2, 2, 2, SD_NN_UPSAMPLE_BILINEAR, x, y);
    SD_EXPECT_MSG(max_abs(y, bil, 16) < 1e-6, "bilinear x2 differs by %.3g", max_abs(y, bil, 16));
    const float near[16] = {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4};
    sd_nn_upsample_forward(1, 2, 2, 2, SD_NN_UPSAMPLE_NEAREST, x, y);
    SD_EXPECT(max_abs(y, near, 16) == 0.0);
    /* adjoint: <up(x), g> = <x, up^T(g)> for bilinear */
    float g[16], gx[4] = {0, 0, 0, 0};
    for (int i = 0; i < 16; i++)
      g[i] = (float)(i % 5) - 2.0f;
    sd_nn_upsample_forward(1, 2, 2, 2, SD_NN_UPSAMPLE_BILINEAR, x, y);
    sd_nn_upsample_backward(1, 2, 2, 2, SD_NN_UPSAMPLE_BILINEAR, g, gx);
    double l = 0, r = 0;
    for (int i = 0; i < 16; i++)
      l += (double)y[i] * g[i];
    for (int i = 0; i < 4; i++)
      r += (double)x[i] * gx[i];
    SD_EXPECT_NEAR(l, r, 1e-5);
  }
  /* nearest x2 and x3 backward (x2 has its own fast path) against the 2x2 / 3x3 block sums,
   * added onto an existing gradient */
  for (int f = 2; f <= 3; f++) {
    const int nc = 3, h = 3, w = 5, oh = h * f, ow = w * f;
    float dy[3 * 9 * 15], dx[3 * 3 * 5];
    double ref[3 * 3 * 5];
    for (int i = 0; i < nc * oh * ow; i++)
      dy[i] = (float)((i * 37) % 23) / 7.0f - 1.5f;
    for (int i = 0; i < nc * h * w; i++)
      ref[i] = dx[i] = (float)(i % 4) - 1.0f;
    for (int p = 0; p < nc; p++)
      for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++)
          ref[(p * h + oy / f) * w + ox / f] += dy[(p * oh + oy) * ow + ox];
    sd_nn_upsample_backward(nc, h, w, f, SD_NN_UPSAMPLE_NEAREST, dy, dx);
    double e = 0;
    for (int i = 0; i < nc * h * w; i++)
      e = fmax(e, fabs(dx[i] - ref[i]));
    SD_EXPECT_MSG(e < 1e-5, "nearest x%d backward differs from block sums by %.3g", f, e);
  }
  /* pooling on a 4x4 ramp 0..15 */
  {
    float x[16], y[16];
    for (int i = 0; i < 16; i++)
      x[i] = (float)i;
    sd_nn_maxpool_forward(1, 4, 4, 2, 2, 0, 2, 2, x, y);
    const float mx[4] = {5, 7, 13, 15};
    SD_EXPECT(max_abs(y, mx, 4) == 0.0);
    sd_nn_avgpool_forward(1, 4, 4, 2, 2, 0, 2, 2, x, y);
    const float av[4] = {2.5f, 4.5f, 10.5f, 12.5f};
    SD_EXPECT(max_abs(y, av, 4) < 1e-6);
    /* 3x3 stride 2 pad 1: maxpool ignores padding; avgpool counts it as zero (divisor 9) */
    sd_nn_maxpool_forward(1, 4, 4, 3, 2, 1, 2, 2, x, y);
    const float mx3[4] = {5, 7, 13, 15};
    SD_EXPECT(max_abs(y, mx3, 4) == 0.0);
    sd_nn_avgpool_forward(1, 4, 4, 3, 2, 1, 2, 2, x, y);
    const float av3[4] = {(0 + 1 + 4 + 5) / 9.0f, (1 + 2 + 3 + 5 + 6 + 7) / 9.0f,
                          (4 + 5 + 8 + 9 + 12 + 13) / 9.0f,
                          (5 + 6 + 7 + 9 + 10 + 11 + 13 + 14 + 15) / 9.0f};
    SD_EXPECT(max_abs(y, av3, 4) < 1e-6);
    /* negative inputs in maxpool with padding: padding must not win */
    float neg[16];
    for (int i = 0; i < 16; i++)
      neg[i] = -1.0f - (float)i;
    sd_nn_maxpool_forward(1, 4, 4, 3, 2, 1, 2, 2, neg, y);
    SD_EXPECT(y[0] == -1.0f && y[3] == -6.0f);
    sd_nn_global_avgpool_forward(1, 16, x, y);
    SD_EXPECT_NEAR(y[0], 7.5, 1e-6);
    /* maxpool backward routes to the argmax only */
    float dy[4] = {1, 2, 3, 4}, dx[16] = {0};
    sd_nn_maxpool_backward(1, 4, 4, 2, 2, 0, 2, 2, x, dy, dx);
    SD_EXPECT(dx[5] == 1 && dx[7] == 2 && dx[13] == 3 && dx[15] == 4 && dx[0] == 0);
  }
  /* activations */
  {
    const float x[4] = {-2, -0.5f, 0, 3};
    float y[4];
    sd_nn_leaky_relu_forward(4, 0.0f, x, y);
    SD_EXPECT(y[0] == 0 && y[1] == 0 && y[2] == 0 && y[3] == 3);
    sd_nn_leaky_relu_forward(4, 0.1f, x, y);
    SD_EXPECT_NEAR(y[0], -0.2, 1e-7);
    SD_EXPECT(y[3] == 3);
  }
  /* concat [n=2, 1 + 2 channels, hw=2] */
  {
    const float a[4] = {1, 2, 3, 4}, b[8] = {5, 6, 7, 8, 9, 10, 11, 12};
    float y[12];
    sd_nn_concat_forward(2, 1, 2, 2, a, b, y);
    const float want[12] = {1, 2, 5, 6, 7, 8, 3, 4, 9, 10, 11, 12};
    SD_EXPECT(max_abs(y, want, 12) == 0.0);
  }
  /* dropout through a model: train zeroes about `rate` and scales by 1/(1-rate); eval copies */
  {
    sd_nn_model *m = NULL;
    SD_EXPECT_OK(sd_nn_model_create(&m));
    sd_nn_add_dropout(m, 0, 0.25f);
    SD_EXPECT_OK(sd_nn_model_compile(m, 4, 8, 16, 16));
    size_t n = 4 * 8 * 16 * 16;
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
      x[i] = 1.0f;
    SD_EXPECT_OK(sd_nn_model_forward(m, x, 4, SD_NN_MODE_TRAIN));
    const float *y = sd_nn_model_output(m)->data;
    size_t zeros = 0, scaled = 0;
    for (size_t i = 0; i < n; i++) {
      zeros += y[i] == 0.0f;
      scaled += fabsf(y[i] - 1.0f / 0.75f) < 1e-6f;
    }
    SD_EXPECT(zeros + scaled == n);
    SD_EXPECT_MSG(fabs((double)zeros / n - 0.25) < 0.03, "dropout zeroed %.3f", (double)zeros / n);
    /* the same seed gives the same mask; the stream advances otherwise */
    float first = y[0];
    sd_nn_model_seed_dropout(m, 5, 1);
    SD_EXPECT_OK(sd_nn_model_forward(m, x, 4, SD_NN_MODE_TRAIN));
    float *copy = malloc(n * sizeof *copy);
    memcpy(copy, y, n * sizeof *copy);
    sd_nn_model_seed_dropout(m, 5, 1);
    SD_EXPECT_OK(sd_nn_model_forward(m, x, 4, SD_NN_MODE_TRAIN));
    SD_EXPECT(memcmp(copy, y, n * sizeof *copy) == 0);
    (void)first;
    SD_EXPECT_OK(sd_nn_model_forward(m, x, 4, SD_NN_MODE_EVAL));
    SD_EXPECT(max_abs(y, x, n) == 0.0);
    free(x), free(copy);
    sd_nn_model_destroy(&m);
  }
  /* MC dropout (EVAL_DROPOUT): batch norm uses and keeps its running statistics, dropout is
   * active; with per-sample keys a sample's mask depends on its key, not on its batch */
  {
    enum { B = 3, CH = 4, S = 8 };
    const size_t per = (size_t)CH * S * S;
    sd_nn_model *m = NULL;
    SD_EXPECT_OK(sd_nn_model_create(&m));
    int bn = sd_nn_add_batchnorm(m, 0);
    sd_nn_add_dropout(m, bn, 0.5f);
    SD_EXPECT_OK(sd_nn_model_compile(m, B, CH, S, S));
    SD_EXPECT(sd_nn_model_first_dropout(m) == 2);
    float *rm = m->layers[bn].u.bn.running_mean, *rv = m->layers[bn].u.bn.running_var;
    for (int c = 0; c < CH; c++)
      rm[c] = 0.5f * (float)c, rv[c] = 4.0f;
    float *x = malloc(B * per * sizeof *x), *ref = malloc(B * per * sizeof *ref);
    sd_rng r;
    sd_rng_init(&r, 9, 0, 0);
    nt_fill(&r, x, B * per, -2, 2);
    SD_EXPECT_OK(sd_nn_model_forward(m, x, B, SD_NN_MODE_EVAL));
    memcpy(ref, sd_nn_model_output(m)->data, B * per * sizeof *ref);
    const uint64_t keys[B] = {11, 22, 33};
    sd_nn_model_set_dropout_keys(m, 7, keys);
    SD_EXPECT_OK(sd_nn_model_forward(m, x, B, SD_NN_MODE_EVAL_DROPOUT));
    const float *y = sd_nn_model_output(m)->data;
    size_t zeros = 0, kept = 0;
    for (size_t i = 0; i < B * per; i++) {
      zeros += y[i] == 0.0f;
      kept += fabsf(y[i] - 2.0f * ref[i]) <= 1e-6f * (1 + fabsf(ref[i]));
    }
    SD_EXPECT_MSG(zeros + kept == B * per, "EVAL_DROPOUT = eval output x mask: %zu + %zu of %zu",
                  zeros, kept, B * per);
    SD_EXPECT_MSG(fabs((double)zeros / (B * per) - 0.5) < 0.08, "zeroed %.3f",
                  (double)zeros / (B * per));
    int stats_kept = 1;
    for (int c = 0; c < CH; c++)
      stats_kept &= rm[c] == 0.5f * (float)c && rv[c] == 4.0f;
    SD_EXPECT_MSG(stats_kept, "EVAL_DROPOUT changed the running statistics");
    /* sample 2 alone (batch of one, key 33) gets the mask it had in the batch */
    float *in_batch = malloc(per * sizeof *in_batch);
    memcpy(in_batch, y + 2 * per, per * sizeof *in_batch);
    sd_nn_model_set_dropout_keys(m, 7, keys + 2);
    SD_EXPECT_OK(sd_nn_model_forward(m, x + 2 * per, 1, SD_NN_MODE_EVAL_DROPOUT));
    SD_EXPECT(memcmp(in_batch, y, per * sizeof *in_batch) == 0);
    /* rerunning from the dropout layer reuses the batch-norm output (the input, now zeroed, is
     * not read again): the same as the full pass */
    memset(m->layers[0].out.data, 0, per * sizeof(float));
    SD_EXPECT_OK(
        sd_nn_model_forward_from(m, sd_nn_model_first_dropout(m), SD_NN_MODE_EVAL_DROPOUT));
    SD_EXPECT(memcmp(in_batch, y, per * sizeof *in_batch) == 0);
    /* another seed, another mask; no keys: the model's stream */
    sd_nn_model_set_dropout_keys(m, 8, keys + 2);
    SD_EXPECT_OK(sd_nn_model_forward(m, x + 2 * per, 1, SD_NN_MODE_EVAL_DROPOUT));
    SD_EXPECT(memcmp(in_batch, y, per * sizeof *in_batch) != 0);
    sd_nn_model_set_dropout_keys(m, 0, NULL);
    SD_EXPECT_OK(sd_nn_model_forward(m, x, B, SD_NN_MODE_EVAL));
    SD_EXPECT(max_abs(y, ref, B * per) == 0.0);
    free(x), free(ref), free(in_batch);
    sd_nn_model_destroy(&m);
  }
  return sd_test_finish("test_nn_ops");
}
