/* test_nn_loss.c - losses against hand-computed values (computed independently with Python's
 * math module from the PyTorch definitions) and their logit gradients against finite
 * differences; ignored targets, accumulate/scale options and the reduce hook; whole-set sums
 * (sd_nn_loss_sums, sd_nn_dice_from_sums) against the batch losses. */
#include "nn_test_util.h"

typedef sd_status (*loss_fn)(sd_nn_tensor *t, const void *target, const sd_nn_loss_opts *o,
                             double *loss);

static sd_status ce(sd_nn_tensor *t, const void *tg, const sd_nn_loss_opts *o, double *l) {
  return sd_nn_loss_softmax_ce(t, tg, o, l);
}
static sd_status bce(sd_nn_tensor *t, const void *tg, const sd_nn_loss_opts *o, double *l) {
  return sd_nn_loss_sigmoid_bce(t, tg, o, l);
}
static sd_status dice(sd_nn_tensor *t, const void *tg, const sd_nn_loss_opts *o, double *l) {
  return sd_nn_loss_dice(t, tg, o, l);
}

/* Max relative error of the loss gradient against central differences (h = 1e-3). */
static double loss_fd(loss_fn f, sd_nn_tensor *t, const void *tg, const sd_nn_loss_opts *o) {
  size_t len = sd_nn_tensor_size(t);
  float *g = malloc(len * sizeof *g), *scratch = malloc(len * sizeof *scratch);
  double l;
  f(t, tg, o, &l);
  memcpy(g, t->grad, len * sizeof *g);
  float *keep = t->grad;
  t->grad = scratch;
  double gmax = 1e-9, err = 0.0;
  for (size_t i = 0; i < len; i++)
    gmax = fmax(gmax, fabs(g[i]));
  for (size_t i = 0; i < len; i++) {
    float v = t->data[i];
    double lp, lm;
    t->data[i] = v + 1e-3f;
    double hp = (double)t->data[i] - v;
    f(t, tg, o, &lp);
    t->data[i] = v - 1e-3f;
    double hm = v - (double)t->data[i];
    f(t, tg, o, &lm);
    t->data[i] = v;
    double fd = (lp - lm) / (hp + hm);
    err = fmax(err, fabs(fd - g[i]) / (fmax(fabs(fd), fabs(g[i])) + 1e-2 * gmax));
  }
  t->grad = keep;
  free(g), free(scratch);
  return err;
}

/* A pretend second rank holding identical data: doubles every sum. */
static sd_status twice(void *ctx, double *buf, int n) {
  (void)ctx;
  for (int i = 0; i < n; i++)
    buf[i] *= 2.0;
  return SD_OK;
}

int main(void) {
  /* ---- softmax cross-entropy, one sample: -log softmax([1,2,3])[2] and p - onehot ---- */
  {
    float z[3] = {1, 2, 3}, g[3];
    int32_t y = 2;
    sd_nn_tensor t = {z, g, 1, 3, 1, 1};
    double l;
    SD_EXPECT_OK(sd_nn_loss_softmax_ce(&t, &y, NULL, &l));
    SD_EXPECT_NEAR(l, 0.4076059644443804, 1e-6);
    SD_EXPECT_NEAR(g[0], 0.09003057317038046, 1e-6);
    SD_EXPECT_NEAR(g[1], 0.24472847105479767, 1e-6);
    SD_EXPECT_NEAR(g[2], 0.66524095577482190 - 1.0, 1e-6);
    y = 3;
    SD_EXPECT(sd_nn_loss_softmax_ce(&t, &y, NULL, &l) == SD_ERR_ARG); /* class out of range */
    sd_error_clear();
  }
  /* ---- weights + label smoothing, two samples [2, 3] (PyTorch's definition) ---- */
  {
    float z[6] = {1, 2, 3, 0.5f, -1, 2}, g[6];
    int32_t y[2] = {2, 0};
    const float w[3] = {1, 2, 0.5f};
    sd_nn_loss_opts o = {.class_weights = w, .label_smoothing = 0.1f};
    sd_nn_tensor t = {z, g, 2, 3, 1, 1};
    double l;
    SD_EXPECT_OK(sd_nn_loss_softmax_ce(&t, y, &o, &l));
    SD_EXPECT_NEAR(l, 1.4730954654132835, 1e-6);
    double e = loss_fd(ce, &t, y, &o);
    fprintf(stderr, "softmax CE weighted+smoothed: loss %.9f, gradient max rel err %.2e\n", l, e);
    SD_EXPECT_MSG(e < 1e-2, "CE gradient vs finite differences: %.3g", e);
    /* scale and accumulate: adding 2x the loss on top of the gradient gives 3x */
    float g1[6];
    memcpy(g1, g, sizeof g);
    sd_nn_loss_opts o2 = o;
    o2.scale = 2.0;
    o2.accumulate = 1;
    double l2;
    SD_EXPECT_OK(sd_nn_loss_softmax_ce(&t, y, &o2, &l2));
    SD_EXPECT_NEAR(l2, 2 * l, 1e-9);
    for (int i = 0; i < 6; i++)
      SD_EXPECT_NEAR(g[i], 3 * g1[i], 1e-6);
    /* the reduce hook: a second identical rank doubles the normaliser, halving this share */
    sd_nn_loss_opts o3 = o;
    o3.reduce = twice;
    double l3;
    SD_EXPECT_OK(sd_nn_loss_softmax_ce(&t, y, &o3, &l3));
    SD_EXPECT_NEAR(l3, l / 2, 1e-9);
    for (int i = 0; i < 6; i++)
      SD_EXPECT_NEAR(g[i], g1[i] / 2, 1e-7);
  }
  /* ---- per-pixel targets [n, h, w] with ignored pixels ---- */
  {
    /* one image, 2 classes, 1x2 pixels: pixel 0 target 1, pixel 1 ignored */
    float z[4] = {0.3f, -0.2f, 1.0f, 2.0f}, g[4];
    int32_t y[2] = {1, -1};
    sd_nn_tensor t = {z, g, 1, 2, 1, 2};
    double l;
    SD_EXPECT_OK(sd_nn_loss_softmax_ce(&t, y, NULL, &l));
    /* pixel 0 logits (0.3, 1.0), target 1: log(1 + e^{-0.7}) */
    SD_EXPECT_NEAR(l, log1p(exp(-0.7)), 1e-6);
    SD_EXPECT(g[1] == 0.0f && g[3] == 0.0f);
    SD_EXPECT_NEAR(g[0] + g[2], 0.0, 1e-7);
    /* a larger segmentation case against finite differences */
    enum { N = 2, C = 4, H = 3, W = 5 };
    float zz[N * C * H * W], gg[N * C * H * W];
    int32_t yy[N * H * W];
    sd_rng r;
    sd_rng_init(&r, 3, 0, 0);
    nt_fill(&r, zz, N * C * H * W, -2, 2);
    for (int i = 0; i < N * H * W; i++)
      yy[i] = (int32_t)sd_rng_below(&r, C + 1) - 1;
    const float w[C] = {0.2f, 1.0f, 2.0f, 1.5f};
    sd_nn_loss_opts o = {.class_weights = w, .label_smoothing = 0.05f};
    sd_nn_tensor tt = {zz, gg, N, C, H, W};
    double e = loss_fd(ce, &tt, yy, &o);
    fprintf(stderr, "softmax CE per pixel with ignore: gradient max rel err %.2e\n", e);
    SD_EXPECT_MSG(e < 1e-2, "per-pixel CE gradient: %.3g", e);

    /* Dice on the same data */
    sd_nn_loss_opts od = {.class_weights = w, .dice_skip_background = 1};
    e = loss_fd(dice, &tt, yy, &od);
    fprintf(stderr, "Dice (weighted, no background): gradient max rel err %.2e\n", e);
    SD_EXPECT_MSG(e < 1e-2, "Dice gradient: %.3g", e);
    sd_nn_loss_opts od2 = {.dice_smooth = 0.5f};
    e = loss_fd(dice, &tt, yy, &od2);
    SD_EXPECT_MSG(e < 1e-2, "Dice gradient (smooth 0.5): %.3g", e);

    /* whole-set sums from two batches (one image each) give the losses of the whole batch */
    double sums[4 + 3 * C] = {0}, lce, ldice;
    for (int i = 0; i < N; i++) {
      sd_nn_tensor ti = {zz + i * C * H * W, NULL, 1, C, H, W};
      SD_EXPECT_OK(sd_nn_loss_sums(&ti, yy + i * H * W, w, sums));
    }
    sd_nn_loss_opts ow = {.class_weights = w};
    SD_EXPECT_OK(sd_nn_loss_softmax_ce(&tt, yy, &ow, &lce));
    SD_EXPECT_OK(sd_nn_loss_dice(&tt, yy, &od, &ldice));
    SD_EXPECT_NEAR(sums[0] / sums[1], lce, 1e-6);
    SD_EXPECT_NEAR(sd_nn_dice_from_sums(C, sums + 4, w, 1, 0), ldice, 1e-9);
    int valid = 0, correct = 0;
    for (int i = 0; i < N; i++)
      for (int p = 0; p < H * W; p++) {
        const int32_t yt = yy[i * H * W + p];
        if (yt < 0)
          continue;
        int best = 0;
        for (int c = 1; c < C; c++)
          if (zz[(i * C + c) * H * W + p] > zz[(i * C + best) * H * W + p])
            best = c;
        valid++;
        correct += best == yt;
      }
    SD_EXPECT(sums[3] == valid && sums[2] == correct && valid > 0);
  }
  /* ---- Dice by hand: uniform softmax (p = 1/2), targets (0, 1) -> dice 2/3 per class ---- */
  {
    float z[4] = {0, 0, 0, 0}, g[4];
    int32_t y[2] = {0, 1};
    sd_nn_tensor t = {z, g, 1, 2, 1, 2};
    double l;
    SD_EXPECT_OK(sd_nn_loss_dice(&t, y, NULL, &l));
    SD_EXPECT_NEAR(l, 1.0 / 3.0, 1e-7);
    /* a perfect, confident prediction has a loss near 0 */
    float zc[4] = {20, -20, -20, 20};
    t.data = zc;
    SD_EXPECT_OK(sd_nn_loss_dice(&t, y, NULL, &l));
    SD_EXPECT_NEAR(l, 0.0, 1e-6);
  }
  /* ---- sigmoid BCE: z (0, 2, -1), t (1, 0, 0.5) ---- */
  {
    float z[3] = {0, 2, -1}, g[3], tg[3] = {1, 0, 0.5f};
    sd_nn_tensor t = {z, g, 1, 3, 1, 1};
    double l;
    SD_EXPECT_OK(sd_nn_loss_sigmoid_bce(&t, tg, NULL, &l));
    SD_EXPECT_NEAR(l, 1.2111122930403804, 1e-6);
    SD_EXPECT_NEAR(g[0], (0.5 - 1.0) / 3, 1e-7);
    SD_EXPECT_NEAR(g[1], (1.0 / (1.0 + exp(-2.0))) / 3, 1e-7);
    SD_EXPECT_NEAR(g[2], (1.0 / (1.0 + exp(1.0)) - 0.5) / 3, 1e-7);
    double e = loss_fd(bce, &t, tg, NULL);
    SD_EXPECT_MSG(e < 1e-2, "BCE gradient: %.3g", e);
    /* an ignored element (target < 0) drops out of the mean */
    float tg2[3] = {1, 0, -1};
    SD_EXPECT_OK(sd_nn_loss_sigmoid_bce(&t, tg2, NULL, &l));
    SD_EXPECT_NEAR(l, (log(2.0) + 2.0 + log1p(exp(-2.0))) / 2, 1e-6);
    SD_EXPECT(g[2] == 0.0f);
    /* extreme logits stay finite */
    float zx[3] = {80, -80, 0};
    t.data = zx;
    SD_EXPECT_OK(sd_nn_loss_sigmoid_bce(&t, tg, NULL, &l));
    SD_EXPECT(isfinite(l) && isfinite(g[0]) && isfinite(g[1]));
  }
  /* ---- softmax helper ---- */
  {
    float z[6] = {1, 0, 2, 0, 3, 0}, p[6]; /* n=1, c=3, hw=2 */
    sd_nn_softmax(1, 3, 2, z, p);
    double s0 = p[0] + p[2] + p[4], s1 = p[1] + p[3] + p[5];
    SD_EXPECT_NEAR(s0, 1.0, 1e-6);
    SD_EXPECT_NEAR(s1, 1.0, 1e-6);
    SD_EXPECT_NEAR(p[1], 1.0 / 3.0, 1e-6);
    SD_EXPECT_NEAR(p[4], exp(3.0) / (exp(1.0) + exp(2.0) + exp(3.0)), 1e-6);
  }
  return sd_test_finish("test_nn_loss");
}
