/* nn_loss.c - losses on an output tensor: softmax cross-entropy (class weights, label
 * smoothing, per-sample or per-pixel targets), sigmoid binary cross-entropy, soft Dice. Each
 * returns the loss and writes (or adds) its gradient into logits->grad. */
/* The default build is -O2, where GCC 12 barely vectorises; these loops are the engine's
 * non-GEMM time, so ask for the O3 vectoriser here (no -ffast-math: NaN checks stay). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif

#include <math.h>
#include <string.h>

#include "stemdefect/nn.h"

static double opt_scale(const sd_nn_loss_opts *o) {
  return o && o->scale != 0.0 ? o->scale : 1.0;
}

static sd_status check_logits(const sd_nn_tensor *t, const char *what) {
  if (!t || !t->data || !t->grad)
    return SD_ERROR(SD_ERR_ARG, "%s: logits tensor has no data or gradient buffer", what);
  if (t->n < 1 || t->c < 1 || t->h < 1 || t->w < 1)
    return SD_ERROR(SD_ERR_ARG, "%s: empty logits tensor [%d,%d,%d,%d]", what, t->n, t->c, t->h,
                    t->w);
  return SD_OK;
}

static sd_status check_targets(const int32_t *target, size_t count, int C, const char *what) {
  for (size_t i = 0; i < count; i++)
    if (target[i] >= C)
      return SD_ERROR(SD_ERR_ARG, "%s: target %zu is class %d but the output has %d classes", what,
                      i, (int)target[i], C);
  return SD_OK;
}

/* Log-sum-exp over C values spaced `stride` apart. */
static inline float logsumexp(const float *z, int C, size_t stride) {
  float mx = z[0];
  for (int c = 1; c < C; c++)
    if (z[(size_t)c * stride] > mx)
      mx = z[(size_t)c * stride];
  float s = 0.0f;
  for (int c = 0; c < C; c++)
    s += expf(z[(size_t)c * stride] - mx);
  return mx + logf(s);
}

void sd_nn_softmax(int n, int c, int hw, const float *x, float *y) {
  for (int i = 0; i < n; i++)
    for (int p = 0; p < hw; p++) {
      const float *z = x + (size_t)i * c * hw + p;
      float *q = y + (size_t)i * c * hw + p;
      float lse = logsumexp(z, c, (size_t)hw);
      for (int k = 0; k < c; k++)
        q[(size_t)k * hw] = expf(z[(size_t)k * hw] - lse);
    }
}

sd_status sd_nn_loss_softmax_ce(sd_nn_tensor *logits, const int32_t *target,
                                const sd_nn_loss_opts *opts, double *loss) {
  SD_CHECK(check_logits(logits, "softmax cross-entropy"));
  if (!target || !loss)
    return SD_ERROR(SD_ERR_ARG, "softmax cross-entropy: NULL target or loss");
  const int n = logits->n, C = logits->c;
  const size_t HW = (size_t)logits->h * logits->w;
  const float eps = opts ? opts->label_smoothing : 0.0f;
  const float *cw = opts ? opts->class_weights : NULL;
  const int acc = opts && opts->accumulate;
  if (!(eps >= 0.0f && eps < 1.0f))
    return SD_ERROR(SD_ERR_ARG, "softmax cross-entropy: label smoothing must be in [0, 1) (got %g)",
                    (double)eps);
  SD_CHECK(check_targets(target, (size_t)n * HW, C, "softmax cross-entropy"));
  double wtot = 0.0;
  for (int c = 0; c < C; c++)
    wtot += cw ? cw[c] : 1.0;
  double denom = 0.0;
  for (size_t i = 0; i < (size_t)n * HW; i++)
    if (target[i] >= 0)
      denom += cw ? cw[target[i]] : 1.0;
  if (opts && opts->reduce)
    SD_CHECK(opts->reduce(opts->reduce_ctx, &denom, 1));
  const double scale = opt_scale(opts);
  const double f = denom > 0.0 ? scale / denom : 0.0;
  const float es = eps / (float)C;
  double total = 0.0;
  for (int i = 0; i < n; i++) {
    for (size_t p = 0; p < HW; p++) {
      const float *z = logits->data + (size_t)i * C * HW + p;
      float *g = logits->grad + (size_t)i * C * HW + p;
      const int32_t y = target[(size_t)i * HW + p];
      if (y < 0 || f == 0.0) {
        if (!acc)
          for (int c = 0; c < C; c++)
            g[(size_t)c * HW] = 0.0f;
        continue;
      }
      const float lse = logsumexp(z, C, HW);
      const float wy = cw ? cw[y] : 1.0f;
      double l = (1.0 - eps) * wy * (lse - z[(size_t)y * HW]);
      const float pk_coef = (1.0f - eps) * wy + es * (float)wtot;
      for (int c = 0; c < C; c++) {
        const float zc = z[(size_t)c * HW], wc = cw ? cw[c] : 1.0f;
        if (eps > 0.0f)
          l += (double)es * wc * (lse - zc);
        float gc = expf(zc - lse) * pk_coef - es * wc - (c == y ? (1.0f - eps) * wy : 0.0f);
        gc *= (float)f;
        if (acc)
          g[(size_t)c * HW] += gc;
        else
          g[(size_t)c * HW] = gc;
      }
      total += l;
    }
  }
  *loss = total * f;
  return SD_OK;
}

sd_status sd_nn_loss_sigmoid_bce(sd_nn_tensor *logits, const float *target,
                                 const sd_nn_loss_opts *opts, double *loss) {
  SD_CHECK(check_logits(logits, "sigmoid binary cross-entropy"));
  if (!target || !loss)
    return SD_ERROR(SD_ERR_ARG, "sigmoid binary cross-entropy: NULL target or loss");
  const int n = logits->n, C = logits->c;
  const size_t HW = (size_t)logits->h * logits->w;
  const float *cw = opts ? opts->class_weights : NULL;
  const int acc = opts && opts->accumulate;
  const size_t len = (size_t)n * C * HW;
  double denom = 0.0;
  for (size_t i = 0; i < len; i++) {
    if (target[i] > 1.0f)
      return SD_ERROR(SD_ERR_ARG, "sigmoid binary cross-entropy: target %zu is %g, not in [0, 1]",
                      i, (double)target[i]);
    if (target[i] >= 0.0f)
      denom += 1.0;
  }
  if (opts && opts->reduce)
    SD_CHECK(opts->reduce(opts->reduce_ctx, &denom, 1));
  const double f = denom > 0.0 ? opt_scale(opts) / denom : 0.0;
  double total = 0.0;
  for (int i = 0; i < n; i++)
    for (int c = 0; c < C; c++) {
      const size_t off = ((size_t)i * C + c) * HW;
      const float *z = logits->data + off, *t = target + off;
      float *g = logits->grad + off;
      const float w = cw ? cw[c] : 1.0f;
      double sum = 0.0;
      for (size_t p = 0; p < HW; p++) {
        float gv = 0.0f;
        if (t[p] >= 0.0f && f != 0.0) {
          const float x = z[p];
          sum += w * ((x > 0.0f ? x : 0.0f) - x * t[p] + log1pf(expf(-fabsf(x))));
          const float s = x >= 0.0f ? 1.0f / (1.0f + expf(-x)) : expf(x) / (1.0f + expf(x));
          gv = (float)(w * (s - t[p]) * f);
        }
        if (acc)
          g[p] += gv;
        else
          g[p] = gv;
      }
      total += sum;
    }
  *loss = total * f;
  return SD_OK;
}

double sd_nn_dice_from_sums(int C, const double *sums, const float *class_weights,
                            int skip_background, float smooth) {
  const double s = smooth != 0.0f ? smooth : 1.0;
  double wsum = 0.0, dsum = 0.0;
  for (int c = skip_background ? 1 : 0; c < C; c++) {
    const double w = class_weights ? class_weights[c] : 1.0;
    wsum += w;
    dsum += w * (2.0 * sums[c] + s) / (sums[C + c] + sums[2 * C + c] + s);
  }
  return wsum > 0.0 ? 1.0 - dsum / wsum : NAN;
}

sd_status sd_nn_loss_sums(const sd_nn_tensor *logits, const int32_t *target,
                          const float *class_weights, double *sums) {
  if (!logits || !logits->data || !target || !sums)
    return SD_ERROR(SD_ERR_ARG, "loss sums: NULL logits, target or sums");
  const int n = logits->n, C = logits->c;
  const size_t HW = (size_t)logits->h * logits->w;
  SD_CHECK(check_targets(target, (size_t)n * HW, C, "loss sums"));
  double *dice = sums + 4;
  for (int i = 0; i < n; i++)
    for (size_t p = 0; p < HW; p++) {
      const int32_t y = target[(size_t)i * HW + p];
      if (y < 0)
        continue;
      const float *z = logits->data + (size_t)i * C * HW + p;
      const float lse = logsumexp(z, C, HW);
      const double wy = class_weights ? class_weights[y] : 1.0;
      int best = 0;
      for (int c = 0; c < C; c++) {
        const float zc = z[(size_t)c * HW];
        dice[C + c] += expf(zc - lse);
        if (zc > z[(size_t)best * HW])
          best = c;
      }
      sums[0] += wy * (lse - z[(size_t)y * HW]);
      sums[1] += wy;
      sums[2] += best == y;
      sums[3] += 1.0;
      dice[y] += expf(z[(size_t)y * HW] - lse);
      dice[2 * C + y] += 1.0;
    }
  return SD_OK;
}

sd_status sd_nn_loss_dice(sd_nn_tensor *logits, const int32_t *target, const sd_nn_loss_opts *opts,
                          double *loss) {
  SD_CHECK(check_logits(logits, "Dice loss"));
  if (!target || !loss)
    return SD_ERROR(SD_ERR_ARG, "Dice loss: NULL target or loss");
  const int n = logits->n, C = logits->c;
  const size_t HW = (size_t)logits->h * logits->w;
  if (C > 256)
    return SD_ERROR(SD_ERR_ARG, "Dice loss: at most 256 classes (got %d)", C);
  SD_CHECK(check_targets(target, (size_t)n * HW, C, "Dice loss"));
  const float *cw = opts ? opts->class_weights : NULL;
  const int acc = opts && opts->accumulate;
  const int c0 = opts && opts->dice_skip_background ? 1 : 0;
  const double smooth = opts && opts->dice_smooth != 0.0f ? opts->dice_smooth : 1.0;
  if (c0 >= C)
    return SD_ERROR(SD_ERR_ARG, "Dice loss: no class left after skipping background");
  /* sums[c] = sum p g (intersection), sums[C + c] = sum p, sums[2C + c] = sum g */
  double sums[3 * 256];
  memset(sums, 0, sizeof(double) * 3 * (size_t)C);
  for (int i = 0; i < n; i++)
    for (size_t p = 0; p < HW; p++) {
      const int32_t y = target[(size_t)i * HW + p];
      if (y < 0)
        continue;
      const float *z = logits->data + (size_t)i * C * HW + p;
      const float lse = logsumexp(z, C, HW);
      for (int c = 0; c < C; c++)
        sums[C + c] += expf(z[(size_t)c * HW] - lse);
      sums[y] += expf(z[(size_t)y * HW] - lse);
      sums[2 * C + y] += 1.0;
    }
  if (opts && opts->reduce)
    SD_CHECK(opts->reduce(opts->reduce_ctx, sums, 3 * C));
  double wsum = 0.0;
  float coef_g[256], coef_p[256]; /* dL/dp_c = coef_g[c] g_c + coef_p[c] */
  for (int c = 0; c < C; c++) {
    coef_g[c] = coef_p[c] = 0.0f;
    if (c < c0)
      continue;
    wsum += cw ? cw[c] : 1.0;
  }
  if (!(wsum > 0.0))
    return SD_ERROR(SD_ERR_ARG, "Dice loss: class weights sum to zero");
  const double scale = opt_scale(opts);
  for (int c = c0; c < C; c++) {
    const double w = (cw ? cw[c] : 1.0) / wsum;
    const double num = 2.0 * sums[c] + smooth, den = sums[C + c] + sums[2 * C + c] + smooth;
    coef_g[c] = (float)(-scale * w * 2.0 / den);
    coef_p[c] = (float)(scale * w * num / (den * den));
  }
  *loss = scale * sd_nn_dice_from_sums(C, sums, cw, c0, (float)smooth);
  for (int i = 0; i < n; i++)
    for (size_t p = 0; p < HW; p++) {
      const int32_t y = target[(size_t)i * HW + p];
      const float *z = logits->data + (size_t)i * C * HW + p;
      float *g = logits->grad + (size_t)i * C * HW + p;
      if (y < 0) {
        if (!acc)
          for (int c = 0; c < C; c++)
            g[(size_t)c * HW] = 0.0f;
        continue;
      }
      /* dz_k = p_k (dp_k - sum_c p_c dp_c) */
      const float lse = logsumexp(z, C, HW);
      float dot = 0.0f;
      for (int c = 0; c < C; c++) {
        float pc = expf(z[(size_t)c * HW] - lse);
        dot += pc * (coef_p[c] + (c == y ? coef_g[c] : 0.0f));
      }
      for (int c = 0; c < C; c++) {
        float pc = expf(z[(size_t)c * HW] - lse);
        float gc = pc * (coef_p[c] + (c == y ? coef_g[c] : 0.0f) - dot);
        if (acc)
          g[(size_t)c * HW] += gc;
        else
          g[(size_t)c * HW] = gc;
      }
    }
  return SD_OK;
}
