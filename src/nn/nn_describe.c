/* nn_describe.c - the architecture description: a line-per-layer text that names every layer,
 * its inputs and settings, written next to the parameters in a model file so the same graph can
 * be rebuilt before the parameters are loaded. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stemdefect/nn.h"

typedef struct {
  char *buf;
  size_t cap, len;
} out_buf;

static void emit(out_buf *o, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  size_t room = o->len < o->cap ? o->cap - o->len : 0;
  int k = vsnprintf(room ? o->buf + o->len : NULL, room, fmt, ap);
  va_end(ap);
  if (k > 0)
    o->len += (size_t)k;
}

/* Shortest decimal form of v that reads back as the same float. */
static const char *fmt_float(float v, char *buf, size_t cap) {
  for (int prec = 6; prec <= 9; prec++) {
    snprintf(buf, cap, "%.*g", prec, (double)v);
    if (strtof(buf, NULL) == v)
      break;
  }
  return buf;
}

size_t sd_nn_model_describe(const sd_nn_model *m, char *buf, size_t cap) {
  out_buf o = {buf, cap, 0};
  if (buf && cap)
    buf[0] = '\0';
  char f1[32], f2[32];
  emit(&o, "input c=%d h=%d w=%d\n", m->in_c, m->in_h, m->in_w);
  for (int i = 1; i < m->num_layers; i++) {
    const sd_nn_layer *L = &m->layers[i];
    emit(&o, "%s name=%s in=%d", sd_nn_layer_kind_name(L->kind), L->name, L->in[0]);
    if (L->in[1] >= 0)
      emit(&o, ",%d", L->in[1]);
    switch (L->kind) {
    case SD_NN_LAYER_CONV2D:
    case SD_NN_LAYER_CONV_TRANSPOSE2D:
      emit(&o, " out=%d k=%d stride=%d pad=%d bias=%d", L->u.conv.out_ch, L->u.conv.k,
           L->u.conv.stride, L->u.conv.pad, L->u.conv.bias);
      break;
    case SD_NN_LAYER_DENSE: emit(&o, " out=%d bias=%d", L->u.dense.out, L->u.dense.bias); break;
    case SD_NN_LAYER_BATCHNORM:
      emit(&o, " momentum=%s eps=%s", fmt_float(L->u.bn.momentum, f1, sizeof f1),
           fmt_float(L->u.bn.eps, f2, sizeof f2));
      break;
    case SD_NN_LAYER_LEAKY_RELU:
      emit(&o, " slope=%s", fmt_float(L->u.leaky.slope, f1, sizeof f1));
      break;
    case SD_NN_LAYER_MAXPOOL:
    case SD_NN_LAYER_AVGPOOL:
      emit(&o, " k=%d stride=%d pad=%d", L->u.pool.k, L->u.pool.stride, L->u.pool.pad);
      break;
    case SD_NN_LAYER_DROPOUT:
      emit(&o, " rate=%s", fmt_float(L->u.dropout.rate, f1, sizeof f1));
      break;
    case SD_NN_LAYER_UPSAMPLE:
      emit(&o, " factor=%d mode=%s", L->u.up.factor,
           L->u.up.mode == SD_NN_UPSAMPLE_BILINEAR ? "bilinear" : "nearest");
      break;
    default: break;
    }
    emit(&o, "\n");
  }
  emit(&o, "output %d\n", m->output);
  if (buf && cap && o.len >= cap)
    buf[cap - 1] = '\0';
  return o.len;
}

/* key=value settings of one line. */
#define MAX_KV 16
typedef struct {
  const char *key[MAX_KV], *val[MAX_KV];
  int n;
} kv_list;

static const char *kv_get(const kv_list *kv, const char *key) {
  for (int i = 0; i < kv->n; i++)
    if (strcmp(kv->key[i], key) == 0)
      return kv->val[i];
  return NULL;
}

static sd_status kv_int(const kv_list *kv, const char *key, int line, int *v) {
  const char *s = kv_get(kv, key);
  if (!s)
    return SD_ERROR(SD_ERR_FORMAT, "architecture line %d: missing %s=", line, key);
  char *end;
  long x = strtol(s, &end, 10);
  if (*end != '\0' || end == s || x < -1000000000L || x > 1000000000L)
    return SD_ERROR(SD_ERR_FORMAT, "architecture line %d: %s=%s is not an integer", line, key, s);
  *v = (int)x;
  return SD_OK;
}

static sd_status kv_float(const kv_list *kv, const char *key, int line, float *v) {
  const char *s = kv_get(kv, key);
  if (!s)
    return SD_ERROR(SD_ERR_FORMAT, "architecture line %d: missing %s=", line, key);
  char *end;
  double x = strtod(s, &end);
  if (*end != '\0' || end == s)
    return SD_ERROR(SD_ERR_FORMAT, "architecture line %d: %s=%s is not a number", line, key, s);
  *v = (float)x;
  return SD_OK;
}

static int kind_from_name(const char *s) {
  for (int k = 0; k < SD_NN_LAYER_COUNT_; k++)
    if (strcmp(s, sd_nn_layer_kind_name((sd_nn_layer_kind)k)) == 0)
      return k;
  return -1;
}

static sd_status parse_line(sd_nn_model *m, char *line, int lineno, int *c, int *h, int *w,
                            int *output) {
  kv_list kv = {.n = 0};
  char *save = NULL;
  char *kind_s = strtok_r(line, " \t\r", &save);
  if (!kind_s)
    return SD_OK; /* blank line */
  char *first_arg = strtok_r(NULL, " \t\r", &save);
  if (strcmp(kind_s, "output") == 0) {
    if (!first_arg)
      return SD_ERROR(SD_ERR_FORMAT, "architecture line %d: output without id", lineno);
    *output = atoi(first_arg);
    return SD_OK;
  }
  for (char *tok = first_arg; tok; tok = strtok_r(NULL, " \t\r", &save)) {
    char *eq = strchr(tok, '=');
    if (!eq || kv.n == MAX_KV)
      return SD_ERROR(SD_ERR_FORMAT, "architecture line %d: '%s' is not key=value", lineno, tok);
    *eq = '\0';
    kv.key[kv.n] = tok;
    kv.val[kv.n++] = eq + 1;
  }
  if (strcmp(kind_s, "input") == 0) {
    SD_CHECK(kv_int(&kv, "c", lineno, c));
    SD_CHECK(kv_int(&kv, "h", lineno, h));
    SD_CHECK(kv_int(&kv, "w", lineno, w));
    return SD_OK;
  }
  int kind = kind_from_name(kind_s);
  if (kind <= 0)
    return SD_ERROR(SD_ERR_FORMAT, "architecture line %d: unknown layer kind '%s'", lineno, kind_s);
  const char *in_s = kv_get(&kv, "in");
  if (!in_s)
    return SD_ERROR(SD_ERR_FORMAT, "architecture line %d: missing in=", lineno);
  int a = -1, b = -1;
  if (sscanf(in_s, "%d,%d", &a, &b) < 1)
    return SD_ERROR(SD_ERR_FORMAT, "architecture line %d: in=%s is not an id list", lineno, in_s);
  int id = -1, out = 0, k = 0, stride = 1, pad = 0, bias = 1, factor = 1;
  float f1 = 0.0f, f2 = 0.0f;
  switch ((sd_nn_layer_kind)kind) {
  case SD_NN_LAYER_CONV2D:
  case SD_NN_LAYER_CONV_TRANSPOSE2D:
    SD_CHECK(kv_int(&kv, "out", lineno, &out));
    SD_CHECK(kv_int(&kv, "k", lineno, &k));
    SD_CHECK(kv_int(&kv, "stride", lineno, &stride));
    SD_CHECK(kv_int(&kv, "pad", lineno, &pad));
    SD_CHECK(kv_int(&kv, "bias", lineno, &bias));
    if (kind == SD_NN_LAYER_CONV2D) {
      id = sd_nn_add_conv2d_ex(m, a, out, k, stride, pad, bias);
    } else {
      id = sd_nn_add_conv_transpose2d(m, a, out, k, stride, pad);
      if (id >= 0)
        m->layers[id].u.conv.bias = bias ? 1 : 0;
    }
    break;
  case SD_NN_LAYER_DENSE:
    SD_CHECK(kv_int(&kv, "out", lineno, &out));
    SD_CHECK(kv_int(&kv, "bias", lineno, &bias));
    id = sd_nn_add_dense(m, a, out);
    if (id >= 0)
      m->layers[id].u.dense.bias = bias ? 1 : 0;
    break;
  case SD_NN_LAYER_BATCHNORM:
    SD_CHECK(kv_float(&kv, "momentum", lineno, &f1));
    SD_CHECK(kv_float(&kv, "eps", lineno, &f2));
    id = sd_nn_add_batchnorm_ex(m, a, f1, f2);
    break;
  case SD_NN_LAYER_RELU: id = sd_nn_add_relu(m, a); break;
  case SD_NN_LAYER_LEAKY_RELU:
    SD_CHECK(kv_float(&kv, "slope", lineno, &f1));
    id = sd_nn_add_leaky_relu(m, a, f1);
    break;
  case SD_NN_LAYER_MAXPOOL:
  case SD_NN_LAYER_AVGPOOL:
    SD_CHECK(kv_int(&kv, "k", lineno, &k));
    SD_CHECK(kv_int(&kv, "stride", lineno, &stride));
    SD_CHECK(kv_int(&kv, "pad", lineno, &pad));
    id = sd_nn_add_pool_ex(m, (sd_nn_layer_kind)kind, a, k, stride, pad);
    break;
  case SD_NN_LAYER_GLOBAL_AVGPOOL: id = sd_nn_add_global_avgpool(m, a); break;
  case SD_NN_LAYER_DROPOUT:
    SD_CHECK(kv_float(&kv, "rate", lineno, &f1));
    id = sd_nn_add_dropout(m, a, f1);
    break;
  case SD_NN_LAYER_CONCAT: id = sd_nn_add_concat(m, a, b); break;
  case SD_NN_LAYER_ADD: id = sd_nn_add_add(m, a, b); break;
  case SD_NN_LAYER_UPSAMPLE: {
    SD_CHECK(kv_int(&kv, "factor", lineno, &factor));
    const char *mode = kv_get(&kv, "mode");
    if (!mode || (strcmp(mode, "nearest") != 0 && strcmp(mode, "bilinear") != 0))
      return SD_ERROR(SD_ERR_FORMAT, "architecture line %d: mode must be nearest or bilinear",
                      lineno);
    id = sd_nn_add_upsample(m, a, factor,
                            strcmp(mode, "bilinear") == 0 ? SD_NN_UPSAMPLE_BILINEAR
                                                          : SD_NN_UPSAMPLE_NEAREST);
    break;
  }
  default:
    return SD_ERROR(SD_ERR_FORMAT, "architecture line %d: unexpected kind '%s'", lineno, kind_s);
  }
  if (id < 0)
    return SD_ERROR(SD_ERR_FORMAT, "architecture line %d: invalid layer", lineno);
  const char *name = kv_get(&kv, "name");
  if (name)
    SD_CHECK(sd_nn_layer_set_name(m, id, name));
  return SD_OK;
}

sd_status sd_nn_model_create_from_description(sd_nn_model **model, const char *text, int *c, int *h,
                                              int *w) {
  if (!model || !text)
    return SD_ERROR(SD_ERR_ARG, "create_from_description: NULL argument");
  *model = NULL;
  sd_nn_model *m = NULL;
  SD_CHECK(sd_nn_model_create(&m));
  char *copy = sd_strdup(text);
  if (!copy) {
    sd_nn_model_destroy(&m);
    return SD_ERR_NOMEM;
  }
  int ic = 0, ih = 0, iw = 0, output = -1, lineno = 0;
  sd_status st = SD_OK;
  char *save = NULL;
  for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    SD_CHECK_GOTO(st, parse_line(m, line, ++lineno, &ic, &ih, &iw, &output), fail);
  }
  if (output >= 0)
    SD_CHECK_GOTO(st, sd_nn_model_set_output(m, output), fail);
  free(copy);
  if (c)
    *c = ic;
  if (h)
    *h = ih;
  if (w)
    *w = iw;
  *model = m;
  return SD_OK;
fail:
  free(copy);
  sd_nn_model_destroy(&m);
  return st;
}
