/* nn_test_util.h - shared helpers for the nn tests: random fills and a finite-difference
 * gradient check of a whole model (parameters and input). */
#ifndef NN_TEST_UTIL_H
#define NN_TEST_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sd_test.h"
#include "stemdefect/nn.h"
#include "stemdefect/rng.h"

#ifndef NT_KINK_TOL
#define NT_KINK_TOL 0.02
#endif

static inline void nt_fill(sd_rng *r, float *p, size_t n, double lo, double hi) {
  for (size_t i = 0; i < n; i++)
    p[i] = (float)sd_rng_range(r, lo, hi);
}

typedef struct {
  double max_err; /* max relative error over the checked entries */
  int checked;    /* entries compared */
  int skipped;    /* entries at a kink (two step sizes disagree): not compared */
} nt_fd_result;

/* L = sum_i out_i R_i in double, after a forward in `mode` with dropout reseeded. */
static inline double nt_loss(sd_nn_model *m, const float *x, int n, sd_nn_mode mode,
                             const float *R) {
  sd_nn_model_seed_dropout(m, 77, 0);
  if (sd_nn_model_forward(m, x, n, mode) != SD_OK) {
    fprintf(stderr, "forward failed: %s\n", sd_error_message());
    return NAN;
  }
  const sd_nn_tensor *o = sd_nn_model_output(m);
  double s = 0.0;
  for (size_t i = 0; i < sd_nn_tensor_size(o); i++)
    s += (double)o->data[i] * R[i];
  return s;
}

/* Compares one analytic derivative with the central difference of L in *v. A kink (ReLU, max
 * pooling) within the step shows up as a forward difference that differs from the backward
 * one; such entries are skipped and counted instead of compared. */
static inline void nt_fd_entry(sd_nn_model *m, const float *x, int n, sd_nn_mode mode,
                               const float *R, float *v, double analytic, double h, double floor,
                               nt_fd_result *res) {
  const float v0 = *v;
  double l0 = nt_loss(m, x, n, mode, R);
  *v = (float)(v0 + h);
  double hp = (double)*v - v0; /* the step actually taken in float */
  double lp = nt_loss(m, x, n, mode, R);
  *v = (float)(v0 - h);
  double hm = v0 - (double)*v;
  double lm = nt_loss(m, x, n, mode, R);
  *v = v0;
  double fwd = (lp - l0) / hp, bwd = (l0 - lm) / hm, central = (lp - lm) / (hp + hm);
  if (fabs(fwd - bwd) > NT_KINK_TOL * (fmax(fabs(fwd), fabs(bwd)) + floor)) {
    res->skipped++;
    return;
  }
  double err = fabs(analytic - central) / (fmax(fabs(analytic), fabs(central)) + floor);
  if (err > res->max_err)
    res->max_err = err;
  res->checked++;
}

/* Finite-difference check of every parameter tensor (up to per_tensor random entries each)
 * and, when the model keeps it, of the input gradient. Input x [n, c, h, w] is not changed. */
static inline nt_fd_result nt_fd_check(sd_nn_model *m, const float *x_in, int n, sd_nn_mode mode,
                                       int per_tensor, double h, uint64_t seed) {
  nt_fd_result res = {0, 0, 0};
  sd_rng r;
  sd_rng_init(&r, seed, 1, 1);
  sd_nn_tensor *in = sd_nn_model_tensor(m, 0);
  size_t xlen = (size_t)n * sd_nn_tensor_sample_size(in);
  float *x = malloc(xlen * sizeof *x);
  memcpy(x, x_in, xlen * sizeof *x);
  sd_nn_tensor *o = sd_nn_model_output(m);
  size_t olen = (size_t)n * sd_nn_tensor_sample_size(o);
  float *R = malloc(olen * sizeof *R);
  for (size_t i = 0; i < olen; i++)
    R[i] = (float)sd_rng_normal(&r);
  /* analytic */
  sd_nn_model_zero_grad(m);
  nt_loss(m, x, n, mode, R);
  memcpy(o->grad, R, olen * sizeof *R);
  if (sd_nn_model_backward(m) != SD_OK) {
    fprintf(stderr, "backward failed: %s\n", sd_error_message());
    res.max_err = INFINITY;
    free(x), free(R);
    return res;
  }
  float *ga = malloc(m->num_params * sizeof *ga + 4);
  memcpy(ga, m->grads, m->num_params * sizeof *ga);
  float *gx = NULL;
  if (in->grad) {
    gx = malloc(xlen * sizeof *gx);
    memcpy(gx, in->grad, xlen * sizeof *gx);
  }
  double gmax = 1e-12;
  for (size_t i = 0; i < m->num_params; i++)
    gmax = fmax(gmax, fabs(ga[i]));
  for (size_t i = 0; gx && i < xlen; i++)
    gmax = fmax(gmax, fabs(gx[i]));
  const double floor = 1e-2 * gmax;
  for (int t = 0; t < sd_nn_model_param_count(m); t++) {
    const sd_nn_param *p = sd_nn_model_param(m, t);
    size_t cnt = p->count < (size_t)per_tensor ? p->count : (size_t)per_tensor;
    for (size_t k = 0; k < cnt; k++) {
      size_t idx = p->count <= (size_t)per_tensor ? k : (size_t)sd_rng_below(&r, p->count);
      nt_fd_entry(m, x, n, mode, R, sd_nn_param_data(m, p) + idx, ga[p->offset + idx], h, floor,
                  &res);
    }
  }
  if (gx) {
    size_t cnt = xlen < (size_t)per_tensor ? xlen : (size_t)per_tensor;
    for (size_t k = 0; k < cnt; k++) {
      size_t idx = xlen <= (size_t)per_tensor ? k : (size_t)sd_rng_below(&r, xlen);
      nt_fd_entry(m, x, n, mode, R, x + idx, gx[idx], h, floor, &res);
    }
  }
  free(x), free(R), free(ga), free(gx);
  return res;
}

#endif
