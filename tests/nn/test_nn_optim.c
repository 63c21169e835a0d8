/* test_nn_optim.c - SGD (momentum, Nesterov, weight decay), Adam and AdamW updates against
 * hand-computed values; decay only on flagged tensors; frozen tensors; gradient clipping;
 * learning-rate schedules; early stopping with best-weights restore. */
#include "nn_test_util.h"

/* dense 2 -> 2 on a [1, 2, 1, 1] input: weight [2, 2] (decayed), bias [2] (not decayed) */
static sd_nn_model *tiny(void) {
  sd_nn_model *m = NULL;
  if (sd_nn_model_create(&m) != SD_OK)
    return NULL;
  sd_nn_add_dense(m, 0, 2);
  if (sd_nn_model_compile(m, 1, 2, 1, 1) != SD_OK) {
    sd_nn_model_destroy(&m);
    return NULL;
  }
  return m;
}

static void set_all(sd_nn_model *m, float p, float g) {
  for (int i = 0; i < sd_nn_model_param_count(m); i++) {
    const sd_nn_param *pi = sd_nn_model_param(m, i);
    for (size_t k = 0; k < pi->count; k++) {
      sd_nn_param_data(m, pi)[k] = p;
      sd_nn_param_grad(m, pi)[k] = g;
    }
  }
}

static void set_grads(sd_nn_model *m, float g) {
  for (int i = 0; i < sd_nn_model_param_count(m); i++) {
    const sd_nn_param *pi = sd_nn_model_param(m, i);
    for (size_t k = 0; k < pi->count; k++)
      sd_nn_param_grad(m, pi)[k] = g;
  }
}

static float W(sd_nn_model *m) {
  return m->layers[1].u.dense.w[0];
}
static float B(sd_nn_model *m) {
  return m->layers[1].u.dense.b[0];
}

int main(void) {
  sd_nn_model *m = tiny();
  SD_EXPECT(m != NULL);
  if (!m)
    return sd_test_finish("test_nn_optim");
  SD_EXPECT(sd_nn_model_param_count(m) == 2);
  SD_EXPECT(sd_nn_model_param(m, 0)->decay == 1 && sd_nn_model_param(m, 1)->decay == 0);

  /* SGD, momentum 0.9, Nesterov, weight decay 0.1, lr 0.1, two steps with gradient 0.5:
   * weight: d = 0.5 + 0.1*1 = 0.6, buf = 0.6, step = 0.6 + 0.9*0.6 = 1.14 -> 0.886;
   *         d = 0.5 + 0.0886 = 0.5886, buf = 0.54 + 0.5886 = 1.1286, step 1.60434 -> 0.725566
   * bias:   d = 0.5, buf 0.5, step 0.95 -> 0.905; buf 0.95, step 1.355 -> 0.7695 */
  {
    sd_nn_optim o = sd_nn_optim_sgd(0.1f, 0.9f, 1, 0.1f);
    sd_nn_optim_reset(m, &o);
    set_all(m, 1.0f, 0.5f);
    SD_EXPECT_OK(sd_nn_optim_step(m, &o, o.lr, NULL));
    SD_EXPECT_NEAR(W(m), 0.886, 1e-6);
    SD_EXPECT_NEAR(B(m), 0.905, 1e-6);
    set_grads(m, 0.5f);
    SD_EXPECT_OK(sd_nn_optim_step(m, &o, o.lr, NULL));
    SD_EXPECT_NEAR(W(m), 0.725566, 1e-6);
    SD_EXPECT_NEAR(B(m), 0.7695, 1e-6);
    SD_EXPECT(o.step == 2);
  }
  /* plain SGD with momentum (no Nesterov): p -= lr * buf */
  {
    sd_nn_optim o = sd_nn_optim_sgd(0.1f, 0.9f, 0, 0.0f);
    sd_nn_optim_reset(m, &o);
    set_all(m, 1.0f, 0.5f);
    SD_EXPECT_OK(sd_nn_optim_step(m, &o, o.lr, NULL));
    set_grads(m, 0.5f);
    SD_EXPECT_OK(sd_nn_optim_step(m, &o, o.lr, NULL));
    SD_EXPECT_NEAR(W(m), 1.0 - 0.05 - 0.1 * 0.95, 1e-6);
  }
  /* Adam / AdamW, lr 0.01, two steps with gradients 0.5 then -0.2 (values from a Python
   * transcription of torch.optim.Adam / AdamW) */
  {
    const struct {
      sd_nn_optim o;
      double want_w, want_b;
    } cases[] = {
        {sd_nn_optim_adam(0.01f, 0.1f), 0.984628324547652, 0.9865439418116511},
        {sd_nn_optim_adamw(0.01f, 0.1f), 0.9845549418114511, 0.9865439418116511},
        {sd_nn_optim_adam(0.01f, 0.0f), 0.9865439418116511, 0.9865439418116511},
    };
    for (int c = 0; c < 3; c++) {
      sd_nn_optim o = cases[c].o;
      sd_nn_optim_reset(m, &o);
      set_all(m, 1.0f, 0.5f);
      SD_EXPECT_OK(sd_nn_optim_step(m, &o, o.lr, NULL));
      set_grads(m, -0.2f);
      SD_EXPECT_OK(sd_nn_optim_step(m, &o, o.lr, NULL));
      SD_EXPECT_NEAR(W(m), cases[c].want_w, 2e-6);
      SD_EXPECT_NEAR(B(m), cases[c].want_b, 2e-6);
    }
  }
  /* clipping by global norm: gradient entries (3, 4, 0, ...) have norm 5; clip to 1 */
  {
    sd_nn_optim o = sd_nn_optim_sgd(1.0f, 0.0f, 0, 0.0f);
    o.clip_norm = 1.0f;
    set_all(m, 0.0f, 0.0f);
    m->layers[1].u.dense.dw[0] = 3.0f;
    m->layers[1].u.dense.db[1] = 4.0f;
    double norm = 0;
    SD_EXPECT_OK(sd_nn_optim_step(m, &o, o.lr, &norm));
    SD_EXPECT_NEAR(norm, 5.0, 1e-6);
    SD_EXPECT_NEAR(W(m), -0.6, 1e-5);
    SD_EXPECT_NEAR(m->layers[1].u.dense.b[1], -0.8, 1e-5);
    SD_EXPECT_NEAR(sd_nn_grad_norm(m), 1.0, 1e-5);
  }
  /* frozen parameters are left alone; a diverged gradient is an error */
  {
    sd_nn_optim o = sd_nn_optim_sgd(0.1f, 0.0f, 0, 0.0f);
    set_all(m, 1.0f, 0.5f);
    SD_EXPECT_OK(sd_nn_model_set_trainable(m, 1, 1, 0));
    SD_EXPECT(sd_nn_model_trainable_count(m) == 0);
    SD_EXPECT_OK(sd_nn_optim_step(m, &o, o.lr, NULL));
    SD_EXPECT(W(m) == 1.0f && B(m) == 1.0f);
    SD_EXPECT_OK(sd_nn_model_set_trainable(m, 0, 1, 1));
    SD_EXPECT(sd_nn_model_trainable_count(m) == 6);
    m->layers[1].u.dense.dw[0] = NAN;
    SD_EXPECT(sd_nn_optim_step(m, &o, o.lr, NULL) == SD_ERR_ARG);
    sd_error_clear();
  }
  /* schedules */
  {
    sd_nn_schedule s = {.kind = SD_NN_SCHEDULE_STEP, .lr = 1.0f, .gamma = 0.1f, .step_size = 10};
    SD_EXPECT_NEAR(sd_nn_schedule_lr(&s, 0), 1.0, 1e-7);
    SD_EXPECT_NEAR(sd_nn_schedule_lr(&s, 9), 1.0, 1e-7);
    SD_EXPECT_NEAR(sd_nn_schedule_lr(&s, 10), 0.1, 1e-7);
    SD_EXPECT_NEAR(sd_nn_schedule_lr(&s, 25), 0.01, 1e-8);
    sd_nn_schedule c = {.kind = SD_NN_SCHEDULE_COSINE, .lr = 1.0f, .min_lr = 0.0f, .total = 100};
    SD_EXPECT_NEAR(sd_nn_schedule_lr(&c, 0), 1.0, 1e-7);
    SD_EXPECT_NEAR(sd_nn_schedule_lr(&c, 50), 0.5, 1e-6);
    SD_EXPECT_NEAR(sd_nn_schedule_lr(&c, 100), 0.0, 1e-7);
    c.warmup = 10;
    c.min_lr = 0.1f;
    SD_EXPECT_NEAR(sd_nn_schedule_lr(&c, 0), 0.1, 1e-7);
    SD_EXPECT_NEAR(sd_nn_schedule_lr(&c, 4), 0.5, 1e-7);
    SD_EXPECT_NEAR(sd_nn_schedule_lr(&c, 10), 1.0, 1e-6);
    SD_EXPECT_NEAR(sd_nn_schedule_lr(&c, 55), 0.55, 1e-6);
    SD_EXPECT_NEAR(sd_nn_schedule_lr(&c, 1000), 0.1, 1e-7);
  }
  /* early stopping: best at epoch 1 (0.8), patience 3 -> stop after epoch 4, restore epoch 1 */
  {
    sd_nn_early_stop es;
    SD_EXPECT_OK(sd_nn_early_stop_init(&es, m, 3, 0.0));
    const double val[5] = {1.0, 0.8, 0.9, 0.85, 0.95};
    int stop_at = -1;
    for (int e = 0; e < 5 && stop_at < 0; e++) {
      set_all(m, (float)e, 0.0f);
      if (sd_nn_early_stop_update(&es, m, val[e], e))
        stop_at = e;
    }
    SD_EXPECT(stop_at == 4);
    SD_EXPECT(es.best_epoch == 1);
    SD_EXPECT_OK(sd_nn_early_stop_restore(&es, m));
    SD_EXPECT(W(m) == 1.0f && B(m) == 1.0f);
    sd_nn_early_stop_free(&es);
  }
  sd_nn_model_destroy(&m);
  return sd_test_finish("test_nn_optim");
}
