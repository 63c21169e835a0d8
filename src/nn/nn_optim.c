/* nn_optim.c - optimisers over the whole parameter arena (SGD with momentum, Adam, AdamW),
 * global-norm gradient clipping, learning-rate schedules, early stopping. */
/* The default build is -O2, where GCC 12 barely vectorises; these loops are the engine's
 * non-GEMM time, so ask for the O3 vectoriser here (no -ffast-math: NaN checks stay). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stemdefect/nn.h"

sd_nn_optim sd_nn_optim_sgd(float lr, float momentum, int nesterov, float weight_decay) {
  sd_nn_optim o;
  memset(&o, 0, sizeof o);
  o.kind = SD_NN_OPTIM_SGD;
  o.lr = lr;
  o.momentum = momentum;
  o.nesterov = nesterov ? 1 : 0;
  o.weight_decay = weight_decay;
  return o;
}

static sd_nn_optim adam_like(sd_nn_optim_kind kind, float lr, float weight_decay) {
  sd_nn_optim o;
  memset(&o, 0, sizeof o);
  o.kind = kind;
  o.lr = lr;
  o.beta1 = 0.9f;
  o.beta2 = 0.999f;
  o.eps = 1e-8f;
  o.weight_decay = weight_decay;
  return o;
}

sd_nn_optim sd_nn_optim_adam(float lr, float weight_decay) {
  return adam_like(SD_NN_OPTIM_ADAM, lr, weight_decay);
}

sd_nn_optim sd_nn_optim_adamw(float lr, float weight_decay) {
  return adam_like(SD_NN_OPTIM_ADAMW, lr, weight_decay);
}

double sd_nn_grad_norm(const sd_nn_model *m) {
  double s = 0.0;
  for (int i = 0; i < m->num_param_tensors; i++) {
    const sd_nn_param *p = &m->param_info[i];
    if (!p->trainable)
      continue;
    const float *g = m->grads + p->offset;
    float acc[8] = {0};
    size_t k = 0;
    for (; k + 8 <= p->count; k += 8)
      for (int l = 0; l < 8; l++)
        acc[l] += g[k + l] * g[k + l];
    for (; k < p->count; k++)
      s += (double)g[k] * g[k];
    for (int l = 0; l < 8; l++)
      s += acc[l];
  }
  return sqrt(s);
}

void sd_nn_optim_reset(sd_nn_model *m, sd_nn_optim *opt) {
  if (m && m->opt_state)
    memset(m->opt_state, 0, sizeof(float) * 2 * m->num_params);
  if (opt)
    opt->step = 0;
}

sd_status sd_nn_optim_step(sd_nn_model *m, sd_nn_optim *opt, float lr, double *grad_norm) {
  if (!m || !m->compiled || !opt)
    return SD_ERROR(SD_ERR_ARG, "optim_step: model not compiled");
  if (!(lr >= 0.0f) || !isfinite(lr))
    return SD_ERROR(SD_ERR_ARG, "optim_step: learning rate must be finite and >= 0 (got %g)",
                    (double)lr);
  const double norm = sd_nn_grad_norm(m); /* also catches a NaN/inf gradient every step */
  if (grad_norm)
    *grad_norm = norm;
  if (!isfinite(norm))
    return SD_ERROR(SD_ERR_ARG, "optim_step: the gradient norm is %g (the loss diverged)", norm);
  float gscale = 1.0f;
  if (opt->clip_norm > 0.0f && norm > opt->clip_norm)
    gscale = (float)(opt->clip_norm / (norm + 1e-6));
  opt->step++;
  const float wd = opt->weight_decay;
  const float b1 = opt->beta1, b2 = opt->beta2, eps = opt->eps, mu = opt->momentum;
  const double bc1 = 1.0 - pow(b1, (double)opt->step), bc2 = 1.0 - pow(b2, (double)opt->step);
  const float step_size = (float)(lr / bc1), inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
  for (int i = 0; i < m->num_param_tensors; i++) {
    const sd_nn_param *pi = &m->param_info[i];
    if (!pi->trainable)
      continue;
    const size_t n = pi->count;
    float *p = m->params + pi->offset, *g = m->grads + pi->offset;
    float *s1 = m->opt_state + pi->offset, *s2 = m->opt_state + m->num_params + pi->offset;
    if (gscale != 1.0f)
      for (size_t k = 0; k < n; k++)
        g[k] *= gscale;
    const float l2 = pi->decay && opt->kind != SD_NN_OPTIM_ADAMW ? wd : 0.0f;
    switch (opt->kind) {
    case SD_NN_OPTIM_SGD:
      for (size_t k = 0; k < n; k++) {
        float d = g[k] + l2 * p[k];
        if (mu != 0.0f) {
          s1[k] = mu * s1[k] + d;
          d = opt->nesterov ? d + mu * s1[k] : s1[k];
        }
        p[k] -= lr * d;
      }
      break;
    case SD_NN_OPTIM_ADAM:
    case SD_NN_OPTIM_ADAMW: {
      if (opt->kind == SD_NN_OPTIM_ADAMW && pi->decay && wd != 0.0f) {
        const float f = 1.0f - lr * wd;
        for (size_t k = 0; k < n; k++)
          p[k] *= f;
      }
      for (size_t k = 0; k < n; k++) {
        float d = g[k] + l2 * p[k];
        s1[k] = b1 * s1[k] + (1.0f - b1) * d;
        s2[k] = b2 * s2[k] + (1.0f - b2) * d * d;
        p[k] -= step_size * s1[k] / (sqrtf(s2[k]) * inv_sqrt_bc2 + eps);
      }
      break;
    }
    default: return SD_ERROR(SD_ERR_ARG, "optim_step: unknown optimiser kind %d", (int)opt->kind);
    }
  }
  return SD_OK;
}

float sd_nn_schedule_lr(const sd_nn_schedule *s, int64_t t) {
  if (t < 0)
    t = 0;
  if (s->warmup > 0 && t < s->warmup)
    return s->lr * (float)(t + 1) / (float)s->warmup;
  const int64_t u = t - (s->warmup > 0 ? s->warmup : 0);
  switch (s->kind) {
  case SD_NN_SCHEDULE_STEP:
    if (s->step_size <= 0)
      return s->lr;
    return (float)(s->lr * pow(s->gamma, (double)(u / s->step_size)));
  case SD_NN_SCHEDULE_COSINE: {
    const int64_t span = s->total - (s->warmup > 0 ? s->warmup : 0);
    if (span <= 0 || u >= span)
      return s->min_lr;
    const double c = 0.5 * (1.0 + cos(M_PI * (double)u / (double)span));
    return (float)(s->min_lr + (s->lr - s->min_lr) * c);
  }
  case SD_NN_SCHEDULE_CONSTANT:
  default: return s->lr;
  }
}

sd_status sd_nn_early_stop_init(sd_nn_early_stop *es, const sd_nn_model *m, int patience,
                                double min_delta) {
  if (!es || !m || !m->compiled)
    return SD_ERROR(SD_ERR_ARG, "early_stop_init: model not compiled");
  if (patience < 1)
    return SD_ERROR(SD_ERR_ARG, "early stopping patience must be >= 1 (got %d)", patience);
  memset(es, 0, sizeof *es);
  es->patience = patience;
  es->min_delta = min_delta;
  es->best = INFINITY;
  es->best_epoch = -1;
  es->num_params = m->num_params;
  es->num_buffers = m->num_buffers;
  es->best_params = sd_malloc(m->num_params ? m->num_params : 1, sizeof(float), "best parameters");
  es->best_buffers = sd_malloc(m->num_buffers ? m->num_buffers : 1, sizeof(float), "best buffers");
  if (!es->best_params || !es->best_buffers) {
    sd_nn_early_stop_free(es);
    return SD_ERR_NOMEM;
  }
  return SD_OK;
}

int sd_nn_early_stop_update(sd_nn_early_stop *es, const sd_nn_model *m, double val_loss,
                            int epoch) {
  if (isfinite(val_loss) && val_loss < es->best - es->min_delta) {
    es->best = val_loss;
    es->best_epoch = epoch;
    es->bad_epochs = 0;
    memcpy(es->best_params, m->params, sizeof(float) * es->num_params);
    memcpy(es->best_buffers, m->buffers, sizeof(float) * es->num_buffers);
    return 0;
  }
  es->bad_epochs++;
  return es->bad_epochs >= es->patience;
}

sd_status sd_nn_early_stop_restore(const sd_nn_early_stop *es, sd_nn_model *m) {
  if (es->num_params != m->num_params || es->num_buffers != m->num_buffers)
    return SD_ERROR(SD_ERR_ARG,
                    "early_stop_restore: the model's arenas differ from the saved ones");
  if (es->best_epoch < 0)
    return SD_OK;
  memcpy(m->params, es->best_params, sizeof(float) * es->num_params);
  memcpy(m->buffers, es->best_buffers, sizeof(float) * es->num_buffers);
  return SD_OK;
}

void sd_nn_early_stop_free(sd_nn_early_stop *es) {
  if (!es)
    return;
  free(es->best_params);
  free(es->best_buffers);
  es->best_params = es->best_buffers = NULL;
}
