/* nn_model.c - the model graph: builders, compile (shapes and arenas), initialisation, forward
 * and backward dispatch, parameter enumeration. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn_par.h"
#include "stemdefect/nn.h"
#include "stemdefect/nn_kernels.h"

/* Every tensor inside an arena starts on a 64-byte boundary. */
#define SD_NN_ALIGN 16

static size_t align_up(size_t n) {
  return (n + SD_NN_ALIGN - 1) / SD_NN_ALIGN * SD_NN_ALIGN;
}

static const char *kind_names[SD_NN_LAYER_COUNT_] = {
    "input",   "conv2d",  "conv_transpose2d", "dense",   "batchnorm", "relu", "leaky_relu",
    "maxpool", "avgpool", "global_avgpool",   "dropout", "concat",    "add",  "upsample"};
/* Prefix of default layer names. */
static const char *kind_prefix[SD_NN_LAYER_COUNT_] = {
    "input",   "conv",    "convt", "dense",   "bn",     "relu", "lrelu",
    "maxpool", "avgpool", "gap",   "dropout", "concat", "add",  "up"};

const char *sd_nn_layer_kind_name(sd_nn_layer_kind kind) {
  if ((int)kind < 0 || kind >= SD_NN_LAYER_COUNT_)
    return "unknown";
  return kind_names[kind];
}

/* ---- creation and builders ------------------------------------------------------------------ */

/* Arenas of at least this size start on a 2 MiB boundary and ask for transparent huge pages:
 * on a VM every 4 KiB page fault is expensive, and the first touch of a 100 MB activation
 * arena took most of a short run's start-up (0.5 s of 0.7 s for 32 images in `segment`). */
#define SD_NN_HUGE_BYTES ((size_t)4 << 20)

static void *aligned_floats(size_t n, const char *what) {
  return sd_calloc_huge(n ? n : 1, sizeof(float), SD_NN_HUGE_BYTES, what);
}

sd_status sd_nn_model_create(sd_nn_model **model) {
  if (!model)
    return SD_ERROR(SD_ERR_ARG, "sd_nn_model_create: model is NULL");
  *model = NULL;
  sd_nn_model *m = sd_calloc(1, sizeof *m, "nn model");
  if (!m)
    return SD_ERR_NOMEM;
  m->cap_layers = 16;
  m->layers = sd_calloc((size_t)m->cap_layers, sizeof *m->layers, "nn layers");
  if (!m->layers) {
    free(m);
    return SD_ERR_NOMEM;
  }
  sd_nn_layer *in = &m->layers[0];
  in->kind = SD_NN_LAYER_INPUT;
  snprintf(in->name, sizeof in->name, "input");
  in->in[0] = in->in[1] = -1;
  m->num_layers = 1;
  m->output = 0;
  sd_rng_init(&m->dropout_rng, 0, 0, SD_RNG_STREAM_DROPOUT);
  *model = m;
  return SD_OK;
}

void sd_nn_model_destroy(sd_nn_model **model) {
  if (!model || !*model)
    return;
  sd_nn_model *m = *model;
  free(m->layers);
  free(m->param_info);
  free(m->buffer_info);
  free(m->params);
  free(m->grads);
  free(m->opt_state);
  free(m->buffers);
  free(m->acts);
  free(m->work);
  free(m->dwork);
  free(m->twork);
  free(m->tgrad);
  free(m);
  *model = NULL;
}

/* Records a build error (first one wins) and returns -1. */
static int build_fail(sd_nn_model *m, sd_status st) {
  if (m->build_status == SD_OK)
    m->build_status = st;
  return -1;
}

/* 1 when id names an existing layer; 0 for a propagated failure (id < 0, already recorded) or
 * a bad id (recorded here). */
static int check_input(sd_nn_model *m, int id, const char *what) {
  if (id < 0)
    return 0;
  if (id >= m->num_layers) {
    build_fail(m, SD_ERROR(SD_ERR_ARG, "%s: input layer id %d does not exist (model has %d layers)",
                           what, id, m->num_layers));
    return 0;
  }
  return 1;
}

static sd_nn_layer *add_layer(sd_nn_model *m, sd_nn_layer_kind kind, int a, int b) {
  if (!m)
    return NULL;
  if (m->compiled) {
    build_fail(m, SD_ERROR(SD_ERR_ARG, "cannot add a %s layer: the model is already compiled",
                           kind_names[kind]));
    return NULL;
  }
  if (!check_input(m, a, kind_names[kind]))
    return NULL;
  if (b != -2 && !check_input(m, b, kind_names[kind]))
    return NULL;
  if (m->num_layers == m->cap_layers) {
    int cap = m->cap_layers * 2;
    sd_nn_layer *nl = sd_realloc(m->layers, (size_t)cap, sizeof *nl, "nn layers");
    if (!nl) {
      build_fail(m, SD_ERR_NOMEM);
      return NULL;
    }
    m->layers = nl;
    m->cap_layers = cap;
  }
  int count = 0;
  for (int i = 0; i < m->num_layers; i++)
    count += m->layers[i].kind == kind;
  sd_nn_layer *L = &m->layers[m->num_layers];
  memset(L, 0, sizeof *L);
  L->kind = kind;
  L->in[0] = a;
  L->in[1] = b == -2 ? -1 : b;
  snprintf(L->name, sizeof L->name, "%s%d", kind_prefix[kind], count);
  m->output = m->num_layers;
  m->num_layers++;
  return L;
}

static int id_of(const sd_nn_model *m, const sd_nn_layer *L) {
  return (int)(L - m->layers);
}

static int bad_arg(sd_nn_model *m, const char *what, const char *cond, int value) {
  if (!m)
    return -1;
  return build_fail(m, SD_ERROR(SD_ERR_ARG, "%s: %s (got %d)", what, cond, value));
}

static int add_conv_common(sd_nn_model *m, sd_nn_layer_kind kind, int in, int out_ch, int k,
                           int stride, int pad, int bias) {
  const char *what = kind_names[kind];
  if (!m)
    return -1;
  if (out_ch < 1)
    return bad_arg(m, what, "out_ch must be >= 1", out_ch);
  if (k < 1)
    return bad_arg(m, what, "kernel size must be >= 1", k);
  if (stride < 1)
    return bad_arg(m, what, "stride must be >= 1", stride);
  if (pad < 0 || pad >= k)
    return bad_arg(m, what, "padding must be in [0, k)", pad);
  sd_nn_layer *L = add_layer(m, kind, in, -2);
  if (!L)
    return -1;
  L->u.conv.out_ch = out_ch;
  L->u.conv.k = k;
  L->u.conv.stride = stride;
  L->u.conv.pad = pad;
  L->u.conv.bias = bias ? 1 : 0;
  return id_of(m, L);
}

int sd_nn_add_conv2d(sd_nn_model *m, int in, int out_ch, int k, int stride, int pad) {
  return add_conv_common(m, SD_NN_LAYER_CONV2D, in, out_ch, k, stride, pad, 1);
}

int sd_nn_add_conv2d_ex(sd_nn_model *m, int in, int out_ch, int k, int stride, int pad, int bias) {
  return add_conv_common(m, SD_NN_LAYER_CONV2D, in, out_ch, k, stride, pad, bias);
}

int sd_nn_add_conv_transpose2d(sd_nn_model *m, int in, int out_ch, int k, int stride, int pad) {
  return add_conv_common(m, SD_NN_LAYER_CONV_TRANSPOSE2D, in, out_ch, k, stride, pad, 1);
}

int sd_nn_add_dense(sd_nn_model *m, int in, int out) {
  if (!m)
    return -1;
  if (out < 1)
    return bad_arg(m, "dense", "output features must be >= 1", out);
  sd_nn_layer *L = add_layer(m, SD_NN_LAYER_DENSE, in, -2);
  if (!L)
    return -1;
  L->u.dense.out = out;
  L->u.dense.bias = 1;
  return id_of(m, L);
}

int sd_nn_add_batchnorm_ex(sd_nn_model *m, int in, float momentum, float eps) {
  if (!m)
    return -1;
  if (!(momentum >= 0.0f && momentum <= 1.0f))
    return build_fail(m, SD_ERROR(SD_ERR_ARG, "batchnorm: momentum must be in [0, 1] (got %g)",
                                  (double)momentum));
  if (!(eps > 0.0f))
    return build_fail(m, SD_ERROR(SD_ERR_ARG, "batchnorm: eps must be > 0 (got %g)", (double)eps));
  sd_nn_layer *L = add_layer(m, SD_NN_LAYER_BATCHNORM, in, -2);
  if (!L)
    return -1;
  L->u.bn.momentum = momentum;
  L->u.bn.eps = eps;
  return id_of(m, L);
}

int sd_nn_add_batchnorm(sd_nn_model *m, int in) {
  return sd_nn_add_batchnorm_ex(m, in, 0.1f, 1e-5f);
}

int sd_nn_add_relu(sd_nn_model *m, int in) {
  sd_nn_layer *L = add_layer(m, SD_NN_LAYER_RELU, in, -2);
  return L ? id_of(m, L) : -1;
}

int sd_nn_add_leaky_relu(sd_nn_model *m, int in, float slope) {
  if (!m)
    return -1;
  if (!(slope >= 0.0f && slope < 1.0f))
    return build_fail(
        m, SD_ERROR(SD_ERR_ARG, "leaky_relu: slope must be in [0, 1) (got %g)", (double)slope));
  sd_nn_layer *L = add_layer(m, SD_NN_LAYER_LEAKY_RELU, in, -2);
  if (!L)
    return -1;
  L->u.leaky.slope = slope;
  return id_of(m, L);
}

int sd_nn_add_pool_ex(sd_nn_model *m, sd_nn_layer_kind kind, int in, int k, int stride, int pad) {
  if (!m)
    return -1;
  if (kind != SD_NN_LAYER_MAXPOOL && kind != SD_NN_LAYER_AVGPOOL)
    return build_fail(m, SD_ERROR(SD_ERR_ARG, "pool: kind must be maxpool or avgpool (got %s)",
                                  sd_nn_layer_kind_name(kind)));
  const char *what = kind_names[kind];
  if (k < 1)
    return bad_arg(m, what, "kernel size must be >= 1", k);
  if (stride < 1)
    return bad_arg(m, what, "stride must be >= 1", stride);
  if (pad < 0 || 2 * pad > k)
    return bad_arg(m, what, "padding must be in [0, k/2]", pad);
  sd_nn_layer *L = add_layer(m, kind, in, -2);
  if (!L)
    return -1;
  L->u.pool.k = k;
  L->u.pool.stride = stride;
  L->u.pool.pad = pad;
  return id_of(m, L);
}

int sd_nn_add_maxpool(sd_nn_model *m, int in, int k, int stride) {
  return sd_nn_add_pool_ex(m, SD_NN_LAYER_MAXPOOL, in, k, stride, 0);
}

int sd_nn_add_avgpool(sd_nn_model *m, int in, int k, int stride) {
  return sd_nn_add_pool_ex(m, SD_NN_LAYER_AVGPOOL, in, k, stride, 0);
}

int sd_nn_add_global_avgpool(sd_nn_model *m, int in) {
  sd_nn_layer *L = add_layer(m, SD_NN_LAYER_GLOBAL_AVGPOOL, in, -2);
  return L ? id_of(m, L) : -1;
}

int sd_nn_add_dropout(sd_nn_model *m, int in, float rate) {
  if (!m)
    return -1;
  if (!(rate >= 0.0f && rate < 1.0f))
    return build_fail(
        m, SD_ERROR(SD_ERR_ARG, "dropout: rate must be in [0, 1) (got %g)", (double)rate));
  sd_nn_layer *L = add_layer(m, SD_NN_LAYER_DROPOUT, in, -2);
  if (!L)
    return -1;
  L->u.dropout.rate = rate;
  return id_of(m, L);
}

int sd_nn_add_concat(sd_nn_model *m, int a, int b) {
  if (!m)
    return -1;
  if (a < 0 || b < 0)
    return -1;
  sd_nn_layer *L = add_layer(m, SD_NN_LAYER_CONCAT, a, b);
  return L ? id_of(m, L) : -1;
}

int sd_nn_add_add(sd_nn_model *m, int a, int b) {
  if (!m)
    return -1;
  if (a < 0 || b < 0)
    return -1;
  sd_nn_layer *L = add_layer(m, SD_NN_LAYER_ADD, a, b);
  return L ? id_of(m, L) : -1;
}

int sd_nn_add_upsample(sd_nn_model *m, int in, int factor, sd_nn_upsample_mode mode) {
  if (!m)
    return -1;
  if (factor < 1)
    return bad_arg(m, "upsample", "factor must be >= 1", factor);
  if (mode != SD_NN_UPSAMPLE_NEAREST && mode != SD_NN_UPSAMPLE_BILINEAR)
    return bad_arg(m, "upsample", "mode must be nearest (0) or bilinear (1)", (int)mode);
  sd_nn_layer *L = add_layer(m, SD_NN_LAYER_UPSAMPLE, in, -2);
  if (!L)
    return -1;
  L->u.up.factor = factor;
  L->u.up.mode = mode;
  return id_of(m, L);
}

sd_status sd_nn_layer_set_name(sd_nn_model *m, int id, const char *name) {
  if (!m || !name)
    return SD_ERROR(SD_ERR_ARG, "sd_nn_layer_set_name: NULL argument");
  if (m->compiled)
    return SD_ERROR(SD_ERR_ARG, "cannot rename layer %d after compile", id);
  if (id < 0 || id >= m->num_layers)
    return SD_ERROR(SD_ERR_ARG, "cannot rename layer %d: the model has %d layers", id,
                    m->num_layers);
  size_t len = strlen(name);
  if (len == 0 || len >= SD_NN_NAME_MAX)
    return SD_ERROR(SD_ERR_ARG, "layer name '%s' must have 1..%d characters", name,
                    SD_NN_NAME_MAX - 1);
  for (size_t i = 0; i < len; i++)
    if (name[i] == ' ' || name[i] == '=' || name[i] == ',' || name[i] == '\n')
      return SD_ERROR(SD_ERR_ARG, "layer name '%s' must not contain spaces, '=', ','", name);
  for (int i = 0; i < m->num_layers; i++)
    if (i != id && strcmp(m->layers[i].name, name) == 0)
      return SD_ERROR(SD_ERR_ARG, "layer name '%s' is already used by layer %d", name, i);
  snprintf(m->layers[id].name, sizeof m->layers[id].name, "%s", name);
  return SD_OK;
}

static void mark_path(sd_nn_model *m);

sd_status sd_nn_model_set_output(sd_nn_model *m, int id) {
  if (!m)
    return SD_ERROR(SD_ERR_ARG, "sd_nn_model_set_output: model is NULL");
  if (id < 0 || id >= m->num_layers)
    return SD_ERROR(SD_ERR_ARG, "output layer %d does not exist (model has %d layers)", id,
                    m->num_layers);
  m->output = id;
  if (m->compiled)
    mark_path(m);
  return SD_OK;
}

void sd_nn_model_set_input_grad(sd_nn_model *m, int on) {
  if (m && !m->compiled)
    m->input_grad = on ? 1 : 0;
}

void sd_nn_model_set_inference_only(sd_nn_model *m, int on) {
  if (m && !m->compiled)
    m->inference_only = on ? 1 : 0;
}

/* 1 when layer L keeps an activation gradient. */
static int keeps_grad(const sd_nn_model *m, const sd_nn_layer *L) {
  return !m->inference_only && (L->kind != SD_NN_LAYER_INPUT || m->input_grad);
}

void sd_nn_model_set_reduce(sd_nn_model *m, sd_nn_reduce_fn fn, void *ctx) {
  m->reduce = fn;
  m->reduce_ctx = ctx;
}

void sd_nn_model_set_grad_ready(sd_nn_model *m, sd_nn_grad_ready_fn fn, void *ctx) {
  m->grad_ready = fn;
  m->grad_ready_ctx = ctx;
}

void sd_nn_model_set_layer_hook(sd_nn_model *m, sd_nn_layer_hook_fn fn, void *ctx) {
  m->layer_hook = fn;
  m->layer_hook_ctx = ctx;
}

void sd_nn_model_seed_dropout(sd_nn_model *m, uint64_t seed, uint64_t a) {
  sd_rng_init(&m->dropout_rng, seed, a, SD_RNG_STREAM_DROPOUT);
}

void sd_nn_model_set_dropout_keys(sd_nn_model *m, uint64_t seed, const uint64_t *keys) {
  m->dropout_keys = keys;
  m->dropout_key_seed = seed;
}

int sd_nn_model_first_dropout(const sd_nn_model *m) {
  for (int i = 1; m->compiled && i <= m->output; i++)
    if (m->layers[i].on_path && m->layers[i].kind == SD_NN_LAYER_DROPOUT &&
        m->layers[i].u.dropout.rate > 0.0f)
      return i;
  return -1;
}

/* ---- compile ------------------------------------------------------------------------------- */

static sd_status register_tensor(sd_nn_param **info, int *num, int *cap, size_t *total,
                                 const sd_nn_layer *L, int layer_id, const char *suffix, int ndim,
                                 const int *shape, int decay, int trainable) {
  if (*num == *cap) {
    int nc = *cap ? *cap * 2 : 32;
    sd_nn_param *ni = sd_realloc(*info, (size_t)nc, sizeof *ni, "nn parameter list");
    if (!ni)
      return SD_ERR_NOMEM;
    *info = ni;
    *cap = nc;
  }
  sd_nn_param *p = &(*info)[(*num)++];
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "%s.%s", L->name, suffix);
  p->ndim = ndim;
  p->count = 1;
  for (int d = 0; d < ndim; d++) {
    p->shape[d] = shape[d];
    p->count *= (size_t)shape[d];
  }
  p->offset = *total;
  *total += align_up(p->count);
  p->layer = layer_id;
  p->decay = decay;
  p->trainable = trainable;
  return SD_OK;
}

#define ADD_PARAM(suffix, ndim, decay, ...)                                                        \
  do {                                                                                             \
    const int shp_[] = {__VA_ARGS__};                                                              \
    SD_CHECK(register_tensor(&m->param_info, &m->num_param_tensors, &m->cap_param_tensors,         \
                             &m->num_params, L, i, suffix, ndim, shp_, decay, 1));                 \
  } while (0)
#define ADD_BUFFER(suffix, ...)                                                                    \
  do {                                                                                             \
    const int shp_[] = {__VA_ARGS__};                                                              \
    SD_CHECK(register_tensor(&m->buffer_info, &m->num_buffer_tensors, &m->cap_buffer_tensors,      \
                             &m->num_buffers, L, i, suffix, 1, shp_, 0, 0));                       \
  } while (0)

static void mark_path(sd_nn_model *m) {
  /* a layer is on the path when the output depends on it; inputs precede their readers */
  for (int i = 0; i < m->num_layers; i++)
    m->layers[i].on_path = 0;
  m->layers[m->output].on_path = 1;
  for (int i = m->output; i > 0; i--) {
    sd_nn_layer *L = &m->layers[i];
    if (!L->on_path)
      continue;
    for (int k = 0; k < 2; k++)
      if (L->in[k] >= 0)
        m->layers[L->in[k]].on_path = 1;
  }
}

/* Shapes, parameter and buffer registration, activation and workspace sizes. */
static sd_status resolve_shapes(sd_nn_model *m, size_t *act_floats, size_t *work_floats,
                                int *max_c) {
  const int B = m->batch;
  size_t acts = 0, work = 0;
  int maxc = 1;
  for (int i = 0; i < m->num_layers; i++) {
    sd_nn_layer *L = &m->layers[i];
    sd_nn_tensor *o = &L->out;
    const sd_nn_tensor *a = L->in[0] >= 0 ? &m->layers[L->in[0]].out : NULL;
    const sd_nn_tensor *b = L->in[1] >= 0 ? &m->layers[L->in[1]].out : NULL;
    L->param_first = m->num_param_tensors;
    L->buffer_first = m->num_buffer_tensors;
    size_t aux = 0;
    switch (L->kind) {
    case SD_NN_LAYER_INPUT:
      o->c = m->in_c;
      o->h = m->in_h;
      o->w = m->in_w;
      break;
    case SD_NN_LAYER_CONV2D:
    case SD_NN_LAYER_CONV_TRANSPOSE2D: {
      const int k = L->u.conv.k, s = L->u.conv.stride, p = L->u.conv.pad;
      sd_nn_conv_geom *g = &L->u.conv.g;
      g->kh = g->kw = k;
      g->sh = g->sw = s;
      g->ph = g->pw = p;
      if (L->kind == SD_NN_LAYER_CONV2D) {
        g->c = a->c;
        g->h = a->h;
        g->w = a->w;
        g->oc = L->u.conv.out_ch;
        g->oh = sd_nn_conv_out_size(a->h, k, s, p);
        g->ow = sd_nn_conv_out_size(a->w, k, s, p);
        if (g->oh < 1 || g->ow < 1)
          return SD_ERROR(SD_ERR_ARG,
                          "layer %d (%s): input %dx%d is too small for kernel %d, stride %d, "
                          "padding %d",
                          i, L->name, a->h, a->w, k, s, p);
        o->c = g->oc;
        o->h = g->oh;
        o->w = g->ow;
        ADD_PARAM("weight", 4, 1, g->oc, g->c, k, k);
      } else {
        /* the adjoint of a conv from [out_ch, H, W] to the input's shape */
        g->oc = a->c;
        g->oh = a->h;
        g->ow = a->w;
        g->c = L->u.conv.out_ch;
        g->h = (a->h - 1) * s - 2 * p + k;
        g->w = (a->w - 1) * s - 2 * p + k;
        if (g->h < 1 || g->w < 1)
          return SD_ERROR(SD_ERR_ARG, "layer %d (%s): output size %dx%d is empty", i, L->name, g->h,
                          g->w);
        o->c = g->c;
        o->h = g->h;
        o->w = g->w;
        ADD_PARAM("weight", 4, 1, g->oc, g->c, k, k);
      }
      if (L->u.conv.bias)
        ADD_PARAM("bias", 1, 0, o->c);
      size_t ws = sd_nn_conv2d_workspace(g, B);
      if (ws > work)
        work = ws;
      break;
    }
    case SD_NN_LAYER_DENSE:
      L->u.dense.in = (int)sd_nn_tensor_sample_size(a);
      o->c = L->u.dense.out;
      o->h = o->w = 1;
      ADD_PARAM("weight", 2, 1, L->u.dense.out, L->u.dense.in);
      if (L->u.dense.bias)
        ADD_PARAM("bias", 1, 0, L->u.dense.out);
      break;
    case SD_NN_LAYER_BATCHNORM:
      o->c = a->c;
      o->h = a->h;
      o->w = a->w;
      ADD_PARAM("weight", 1, 0, a->c);
      ADD_PARAM("bias", 1, 0, a->c);
      ADD_BUFFER("running_mean", a->c);
      ADD_BUFFER("running_var", a->c);
      aux = 2 * align_up((size_t)a->c);
      if (a->c > maxc)
        maxc = a->c;
      break;
    case SD_NN_LAYER_RELU:
    case SD_NN_LAYER_LEAKY_RELU:
      o->c = a->c;
      o->h = a->h;
      o->w = a->w;
      break;
    case SD_NN_LAYER_DROPOUT:
      o->c = a->c;
      o->h = a->h;
      o->w = a->w;
      aux = align_up((size_t)B * sd_nn_tensor_sample_size(a));
      break;
    case SD_NN_LAYER_MAXPOOL:
    case SD_NN_LAYER_AVGPOOL: {
      const int k = L->u.pool.k, s = L->u.pool.stride, p = L->u.pool.pad;
      o->c = a->c;
      o->h = sd_nn_conv_out_size(a->h, k, s, p);
      o->w = sd_nn_conv_out_size(a->w, k, s, p);
      if (o->h < 1 || o->w < 1)
        return SD_ERROR(SD_ERR_ARG,
                        "layer %d (%s): input %dx%d is too small for pool %d, stride %d", i,
                        L->name, a->h, a->w, k, s);
      break;
    }
    case SD_NN_LAYER_GLOBAL_AVGPOOL:
      o->c = a->c;
      o->h = o->w = 1;
      break;
    case SD_NN_LAYER_CONCAT:
      if (a->h != b->h || a->w != b->w)
        return SD_ERROR(SD_ERR_ARG,
                        "layer %d (%s): cannot concatenate %s [%d,%d,%d] and %s [%d,%d,%d]: "
                        "height and width must match",
                        i, L->name, m->layers[L->in[0]].name, a->c, a->h, a->w,
                        m->layers[L->in[1]].name, b->c, b->h, b->w);
      o->c = a->c + b->c;
      o->h = a->h;
      o->w = a->w;
      break;
    case SD_NN_LAYER_ADD:
      if (a->c != b->c || a->h != b->h || a->w != b->w)
        return SD_ERROR(SD_ERR_ARG,
                        "layer %d (%s): cannot add %s [%d,%d,%d] and %s [%d,%d,%d]: shapes differ",
                        i, L->name, m->layers[L->in[0]].name, a->c, a->h, a->w,
                        m->layers[L->in[1]].name, b->c, b->h, b->w);
      o->c = a->c;
      o->h = a->h;
      o->w = a->w;
      break;
    case SD_NN_LAYER_UPSAMPLE:
      o->c = a->c;
      o->h = a->h * L->u.up.factor;
      o->w = a->w * L->u.up.factor;
      break;
    default: return SD_ERROR(SD_ERR_INTERNAL, "layer %d: unknown kind %d", i, (int)L->kind);
    }
    L->param_count = m->num_param_tensors - L->param_first;
    L->buffer_count = m->num_buffer_tensors - L->buffer_first;
    o->n = B;
    size_t sz = align_up((size_t)B * sd_nn_tensor_sample_size(o));
    acts += sz * (keeps_grad(m, L) ? 2 : 1) + aux;
  }
  *act_floats = acts;
  *work_floats = work;
  *max_c = maxc;
  return SD_OK;
}

/* Points every layer's tensors and parameter shortcuts into the arenas. */
static void bind_pointers(sd_nn_model *m) {
  float *p = m->acts;
  for (int i = 0; i < m->num_layers; i++) {
    sd_nn_layer *L = &m->layers[i];
    size_t sz = align_up((size_t)m->batch * sd_nn_tensor_sample_size(&L->out));
    L->out.data = p;
    p += sz;
    if (keeps_grad(m, L)) {
      L->out.grad = p;
      p += sz;
    } else {
      L->out.grad = NULL;
    }
    const sd_nn_param *pi = &m->param_info[L->param_first];
    switch (L->kind) {
    case SD_NN_LAYER_CONV2D:
    case SD_NN_LAYER_CONV_TRANSPOSE2D:
      L->u.conv.w = m->params + pi[0].offset;
      L->u.conv.dw = m->grads + pi[0].offset;
      L->u.conv.b = L->u.conv.bias ? m->params + pi[1].offset : NULL;
      L->u.conv.db = L->u.conv.bias ? m->grads + pi[1].offset : NULL;
      break;
    case SD_NN_LAYER_DENSE:
      L->u.dense.w = m->params + pi[0].offset;
      L->u.dense.dw = m->grads + pi[0].offset;
      L->u.dense.b = L->u.dense.bias ? m->params + pi[1].offset : NULL;
      L->u.dense.db = L->u.dense.bias ? m->grads + pi[1].offset : NULL;
      break;
    case SD_NN_LAYER_BATCHNORM: {
      const sd_nn_param *bi = &m->buffer_info[L->buffer_first];
      L->u.bn.gamma = m->params + pi[0].offset;
      L->u.bn.dgamma = m->grads + pi[0].offset;
      L->u.bn.beta = m->params + pi[1].offset;
      L->u.bn.dbeta = m->grads + pi[1].offset;
      L->u.bn.running_mean = m->buffers + bi[0].offset;
      L->u.bn.running_var = m->buffers + bi[1].offset;
      L->u.bn.mean = p;
      p += align_up((size_t)L->out.c);
      L->u.bn.invstd = p;
      p += align_up((size_t)L->out.c);
      break;
    }
    case SD_NN_LAYER_DROPOUT:
      L->u.dropout.mask = p;
      p += align_up((size_t)m->batch * sd_nn_tensor_sample_size(&L->out));
      break;
    default: break;
    }
  }
}

static sd_status ensure_threads(sd_nn_model *m, int T);

sd_status sd_nn_model_compile(sd_nn_model *m, int batch, int c, int h, int w) {
  if (!m)
    return SD_ERROR(SD_ERR_ARG, "sd_nn_model_compile: model is NULL");
  if (m->build_status != SD_OK)
    return SD_ERROR(m->build_status, "cannot compile: a layer could not be added (see above)");
  if (m->compiled)
    return SD_ERROR(SD_ERR_ARG, "the model is already compiled");
  if (batch < 1 || c < 1 || h < 1 || w < 1)
    return SD_ERROR(SD_ERR_ARG,
                    "compile: batch, channels, height, width must be >= 1 (got "
                    "[%d,%d,%d,%d])",
                    batch, c, h, w);
  m->batch = batch;
  m->in_c = c;
  m->in_h = h;
  m->in_w = w;
  size_t act_floats = 0, work_floats = 0;
  int max_c = 1;
  sd_status st = resolve_shapes(m, &act_floats, &work_floats, &max_c);
  if (st != SD_OK) {
    m->num_param_tensors = m->num_buffer_tensors = 0;
    m->num_params = m->num_buffers = 0;
    sd_error_trace(__FILE__, __LINE__, __func__);
    return st;
  }
  m->num_acts = act_floats;
  m->num_work = work_floats;
  m->params = aligned_floats(m->num_params, "nn parameter arena");
  m->grads = aligned_floats(m->num_params, "nn gradient arena");
  m->opt_state = aligned_floats(2 * m->num_params, "nn optimiser state arena");
  m->buffers = aligned_floats(m->num_buffers, "nn buffer arena");
  m->acts = aligned_floats(m->num_acts, "nn activation arena");
  m->work = aligned_floats(m->num_work, "nn workspace");
  m->dwork = sd_calloc(2 * (size_t)max_c + 2, sizeof *m->dwork, "nn statistics workspace");
  if (!m->params || !m->grads || !m->opt_state || !m->buffers || !m->acts || !m->work ||
      !m->dwork) {
    sd_error_trace(__FILE__, __LINE__, __func__);
    return SD_ERR_NOMEM;
  }
  bind_pointers(m);
  SD_CHECK(ensure_threads(m, sd_nn_model_threads(m)));
  m->compiled = 1;
  mark_path(m);
  SD_CHECK(sd_nn_model_init_params(m, 0));
  return SD_OK;
}

/* ---- initialisation ----------------------------------------------------------------------------
 */

static void fill_normal(sd_rng *r, float *p, size_t n, double std) {
  for (size_t i = 0; i < n; i++)
    p[i] = (float)(std * sd_rng_normal(r));
}

static void fill(float *p, size_t n, float v) {
  for (size_t i = 0; i < n; i++)
    p[i] = v;
}

sd_status sd_nn_model_init_params(sd_nn_model *m, uint64_t seed) {
  if (!m || !m->compiled)
    return SD_ERROR(SD_ERR_ARG, "init_params: the model is not compiled");
  sd_rng r;
  sd_rng_init(&r, seed, 0, SD_RNG_STREAM_INIT);
  memset(m->params, 0, sizeof(float) * m->num_params);
  memset(m->grads, 0, sizeof(float) * m->num_params);
  memset(m->opt_state, 0, sizeof(float) * 2 * m->num_params);
  for (int i = 0; i < m->num_layers; i++) {
    sd_nn_layer *L = &m->layers[i];
    switch (L->kind) {
    case SD_NN_LAYER_CONV2D: {
      const sd_nn_conv_geom *g = &L->u.conv.g;
      size_t fan_in = (size_t)g->c * g->kh * g->kw;
      fill_normal(&r, L->u.conv.w, (size_t)g->oc * fan_in, sqrt(2.0 / (double)fan_in));
      break;
    }
    case SD_NN_LAYER_CONV_TRANSPOSE2D: {
      /* each output pixel sums in_ch * (k/stride)^2 products on average */
      const sd_nn_conv_geom *g = &L->u.conv.g;
      double fan_in = (double)g->oc * g->kh * g->kw / ((double)g->sh * g->sw);
      if (fan_in < 1.0)
        fan_in = 1.0;
      fill_normal(&r, L->u.conv.w, (size_t)g->oc * g->c * g->kh * g->kw, sqrt(2.0 / fan_in));
      break;
    }
    case SD_NN_LAYER_DENSE:
      fill_normal(&r, L->u.dense.w, (size_t)L->u.dense.out * L->u.dense.in,
                  sqrt(2.0 / (double)L->u.dense.in));
      break;
    case SD_NN_LAYER_BATCHNORM:
      fill(L->u.bn.gamma, (size_t)L->out.c, 1.0f);
      fill(L->u.bn.running_mean, (size_t)L->out.c, 0.0f);
      fill(L->u.bn.running_var, (size_t)L->out.c, 1.0f);
      break;
    default: break;
    }
  }
  sd_rng_init(&m->dropout_rng, seed, 0, SD_RNG_STREAM_DROPOUT);
  return SD_OK;
}

/* ---- forward and backward ------------------------------------------------------------------- */

/* ---- the thread split (nn_par.h) -------------------------------------------------------- */

int sd_nn_par_active = 1;

sd_status sd_nn_model_set_threads(sd_nn_model *m, int threads) {
  if (!m)
    return SD_ERROR(SD_ERR_ARG, "set_threads: model is NULL");
  m->threads = threads > 0 ? threads : 0;
  return m->compiled ? ensure_threads(m, sd_nn_model_threads(m)) : SD_OK;
}

int sd_nn_model_threads(const sd_nn_model *m) {
  int t = m && m->threads > 0 ? m->threads : openblas_get_num_threads();
  return t > 0 ? t : 1;
}

/* Sizes the per-thread arenas for T threads: workspaces for a part of ceil(batch / T) images
 * and (T - 1) copies of the largest convolution's weight and bias gradients. */
static sd_status ensure_threads(sd_nn_model *m, int T) {
  if (T <= 1 || m->par_threads == T)
    return SD_OK;
  const int part = (m->batch + T - 1) / T;
  size_t ws = 0, gs = 0;
  for (int i = 0; i < m->num_layers; i++) {
    const sd_nn_layer *L = &m->layers[i];
    if (L->kind != SD_NN_LAYER_CONV2D && L->kind != SD_NN_LAYER_CONV_TRANSPOSE2D)
      continue;
    const sd_nn_conv_geom *g = &L->u.conv.g;
    size_t w = sd_nn_conv2d_workspace(g, part);
    size_t gw = align_up((size_t)g->oc * g->c * g->kh * g->kw) + align_up((size_t)L->out.c);
    if (w > ws)
      ws = w;
    if (gw > gs)
      gs = gw;
  }
  free(m->twork);
  free(m->tgrad);
  m->twork = m->tgrad = NULL;
  m->par_threads = 0;
  m->twork_per = align_up(ws);
  m->tgrad_per = gs;
  m->twork = aligned_floats((size_t)T * m->twork_per, "nn per-thread workspaces");
  m->tgrad = aligned_floats((size_t)(T - 1) * m->tgrad_per, "nn per-thread gradients");
  if (!m->twork || !m->tgrad) {
    free(m->twork);
    free(m->tgrad);
    m->twork = m->tgrad = NULL;
    return SD_ERROR(SD_ERR_NOMEM, "cannot run the model on %d threads (see above)", T);
  }
  m->par_threads = T;
  return SD_OK;
}

/* Starts a pass: its thread count, and OpenBLAS on one thread while the engine splits. */
static sd_status pass_begin(sd_nn_model *m, int *blas_threads) {
  const int T = sd_nn_model_threads(m);
  *blas_threads = 0;
  m->pass_threads = 1;
  if (T > 1) {
    SD_CHECK(ensure_threads(m, T));
    *blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    m->pass_threads = T;
  }
  sd_nn_par_active = m->pass_threads;
  return SD_OK;
}

static void pass_end(sd_nn_model *m, int blas_threads) {
  if (blas_threads > 0)
    openblas_set_num_threads(blas_threads);
  m->pass_threads = 1;
  sd_nn_par_active = 1;
}

/* Threads for a layer touching `floats` floats of n images (at most one image each). */
static int layer_threads(const sd_nn_model *m, int n, size_t floats) {
  int T = floats >= SD_NN_PAR_MIN_FLOATS ? m->pass_threads : 1;
  return T < n ? T : n;
}

/* Floats of one image of a convolution's input and output (x and y of the forward). */
static void conv_sizes(const sd_nn_layer *L, size_t *xs, size_t *ys) {
  const sd_nn_conv_geom *g = &L->u.conv.g;
  const size_t in = (size_t)g->c * g->h * g->w, out = (size_t)g->oc * g->oh * g->ow;
  const int tr = L->kind == SD_NN_LAYER_CONV_TRANSPOSE2D;
  *xs = tr ? out : in;
  *ys = tr ? in : out;
}

static void conv_forward(sd_nn_model *m, const sd_nn_layer *L, int n, const float *x, float *y) {
  const sd_nn_conv_geom *g = &L->u.conv.g;
  size_t xs, ys;
  conv_sizes(L, &xs, &ys);
  const int tr = L->kind == SD_NN_LAYER_CONV_TRANSPOSE2D;
  const int T = layer_threads(m, n, (size_t)n * (xs + ys));
  if (T <= 1) {
    if (tr)
      sd_nn_conv_transpose2d_forward(g, n, x, L->u.conv.w, L->u.conv.b, y, m->work);
    else
      sd_nn_conv2d_forward(g, n, x, L->u.conv.w, L->u.conv.b, y, m->work);
    return;
  }
#pragma omp parallel num_threads(T)
  {
    const int t = omp_get_thread_num();
    size_t lo, hi;
    sd_nn_par_part((size_t)n, t, omp_get_num_threads(), 1, &lo, &hi);
    float *work = m->twork + (size_t)t * m->twork_per;
    const int cnt = (int)(hi - lo);
    if (cnt > 0) {
      if (tr)
        sd_nn_conv_transpose2d_forward(g, cnt, x + lo * xs, L->u.conv.w, L->u.conv.b, y + lo * ys,
                                       work);
      else
        sd_nn_conv2d_forward(g, cnt, x + lo * xs, L->u.conv.w, L->u.conv.b, y + lo * ys, work);
    }
  }
}

/* One image range of a convolution's backward. */
static void conv_backward_part(const sd_nn_layer *L, int cnt, const float *x, const float *dy,
                               float *dx, float *dw, float *db, float *work, int set) {
  const sd_nn_conv_geom *g = &L->u.conv.g;
  if (L->kind == SD_NN_LAYER_CONV_TRANSPOSE2D)
    sd_nn_conv_transpose2d_backward(g, cnt, x, L->u.conv.w, dy, dx, dw, db, work);
  else if (set)
    sd_nn_conv2d_backward_set(g, cnt, x, L->u.conv.w, dy, dx, dw, db, work);
  else
    sd_nn_conv2d_backward(g, cnt, x, L->u.conv.w, dy, dx, dw, db, work);
}

/* The backward split by images: thread 0 adds into the layer's gradients, thread t > 0 into its
 * own zeroed copy, and the copies are added after the layer in thread order. */
static void conv_backward(sd_nn_model *m, const sd_nn_layer *L, int n, const float *x,
                          const float *dy, float *dx, int set) {
  size_t xs, ys;
  conv_sizes(L, &xs, &ys);
  float *dw = L->u.conv.dw, *db = L->u.conv.db;
  const int T = layer_threads(m, n, (size_t)n * (xs + ys));
  if (T <= 1) {
    conv_backward_part(L, n, x, dy, dx, dw, db, m->work, set);
    return;
  }
  const sd_nn_conv_geom *g = &L->u.conv.g;
  const size_t wn = (size_t)g->oc * g->c * g->kh * g->kw, bn = (size_t)L->out.c;
  const size_t boff = align_up(wn);
#pragma omp parallel num_threads(T)
  {
    const int t = omp_get_thread_num();
    size_t lo, hi;
    sd_nn_par_part((size_t)n, t, omp_get_num_threads(), 1, &lo, &hi);
    float *tdw = dw, *tdb = db;
    if (t > 0) {
      float *p = m->tgrad + (size_t)(t - 1) * m->tgrad_per;
      tdw = dw ? p : NULL;
      tdb = db ? p + boff : NULL;
      if (tdw)
        memset(tdw, 0, sizeof(float) * wn);
      if (tdb)
        memset(tdb, 0, sizeof(float) * bn);
    }
    float *work = m->twork + (size_t)t * m->twork_per;
    if (hi > lo)
      conv_backward_part(L, (int)(hi - lo), x + lo * xs, dy + lo * ys, dx ? dx + lo * xs : NULL,
                         tdw, tdb, work, set);
  }
  const float *parts = m->tgrad;
  const size_t stride = m->tgrad_per;
  SD_NN_PAR_RANGE(wn >= SD_NN_PAR_MIN_FLOATS ? T : 1, wn, 16, {
    if (dw)
      for (int t = 1; t < T; t++) {
        const float *s = parts + (size_t)(t - 1) * stride;
        for (size_t i = lo; i < hi; i++)
          dw[i] += s[i];
      }
  });
  if (db)
    for (int t = 1; t < T; t++) {
      const float *s = parts + (size_t)(t - 1) * stride + boff;
      for (size_t i = 0; i < bn; i++)
        db[i] += s[i];
    }
}

/* Threads for an elementwise pass over `floats` floats. */
static int flat_threads(const sd_nn_model *m, size_t floats) {
  return floats >= SD_NN_PAR_MIN_FLOATS ? m->pass_threads : 1;
}

/* da = 0 over len floats, split like the layers. */
static void par_zero(const sd_nn_model *m, float *da, size_t len) {
  SD_NN_PAR_RANGE(flat_threads(m, len), len, 16, memset(da + lo, 0, sizeof(float) * (hi - lo)));
}

static sd_status layer_forward(sd_nn_model *m, sd_nn_layer *L, sd_nn_mode mode) {
  const int n = m->layers[0].out.n;
  const sd_nn_tensor *a = &m->layers[L->in[0]].out;
  const sd_nn_tensor *b = L->in[1] >= 0 ? &m->layers[L->in[1]].out : NULL;
  sd_nn_tensor *o = &L->out;
  const size_t len = sd_nn_tensor_size(o);
  switch (L->kind) {
  case SD_NN_LAYER_CONV2D:
  case SD_NN_LAYER_CONV_TRANSPOSE2D: conv_forward(m, L, n, a->data, o->data); break;
  case SD_NN_LAYER_DENSE:
    sd_nn_dense_forward(n, L->u.dense.in, L->u.dense.out, a->data, L->u.dense.w, L->u.dense.b,
                        o->data);
    break;
  case SD_NN_LAYER_BATCHNORM:
    if (mode == SD_NN_MODE_TRAIN) {
      SD_CHECK(sd_nn_batchnorm_forward_train(
          n, o->c, o->h * o->w, a->data, L->u.bn.gamma, L->u.bn.beta, L->u.bn.momentum, L->u.bn.eps,
          L->u.bn.running_mean, L->u.bn.running_var, L->u.bn.mean, L->u.bn.invstd, &L->u.bn.count,
          o->data, m->dwork, m->reduce, m->reduce_ctx));
    } else {
      sd_nn_batchnorm_forward_eval(n, o->c, o->h * o->w, a->data, L->u.bn.gamma, L->u.bn.beta,
                                   L->u.bn.running_mean, L->u.bn.running_var, L->u.bn.eps, o->data);
    }
    break;
  case SD_NN_LAYER_RELU:
  case SD_NN_LAYER_LEAKY_RELU: {
    const float slope = L->kind == SD_NN_LAYER_RELU ? 0.0f : L->u.leaky.slope;
    SD_NN_PAR_RANGE(flat_threads(m, len), len, 16,
                    sd_nn_leaky_relu_forward(hi - lo, slope, a->data + lo, o->data + lo));
    break;
  }
  case SD_NN_LAYER_MAXPOOL:
  case SD_NN_LAYER_AVGPOOL: {
    const size_t ahw = (size_t)a->h * a->w, ohw = (size_t)o->h * o->w;
    const int mx = L->kind == SD_NN_LAYER_MAXPOOL;
    SD_NN_PAR_RANGE(flat_threads(m, len + sd_nn_tensor_size(a)), (size_t)n * o->c, 1, {
      (mx ? sd_nn_maxpool_forward : sd_nn_avgpool_forward)(
          (int)(hi - lo), a->h, a->w, L->u.pool.k, L->u.pool.stride, L->u.pool.pad, o->h, o->w,
          a->data + lo * ahw, o->data + lo * ohw);
    });
    break;
  }
  case SD_NN_LAYER_GLOBAL_AVGPOOL:
    sd_nn_global_avgpool_forward(n * o->c, a->h * a->w, a->data, o->data);
    break;
  case SD_NN_LAYER_DROPOUT:
    if (mode != SD_NN_MODE_EVAL && L->u.dropout.rate > 0.0f) {
      const double keep = 1.0 - L->u.dropout.rate;
      const float scale = (float)(1.0 / keep);
      float *mask = L->u.dropout.mask;
      if (m->dropout_keys) {
        const size_t per = len / (size_t)n;
        const uint64_t lk = sd_rng_mix64((uint64_t)(L - m->layers));
        for (int i = 0; i < n; i++) {
          sd_rng r;
          sd_rng_init(&r, m->dropout_key_seed, m->dropout_keys[i] ^ lk, SD_RNG_STREAM_DROPOUT);
          for (size_t k = 0; k < per; k++)
            mask[(size_t)i * per + k] = sd_rng_uniform(&r) < keep ? scale : 0.0f;
        }
      } else
        for (size_t i = 0; i < len; i++)
          mask[i] = sd_rng_uniform(&m->dropout_rng) < keep ? scale : 0.0f;
      SD_NN_PAR_RANGE(flat_threads(m, len), len, 16,
                      sd_nn_mul_forward(hi - lo, a->data + lo, mask + lo, o->data + lo));
    } else {
      fill(L->u.dropout.mask, len, 1.0f);
      memcpy(o->data, a->data, sizeof(float) * len);
    }
    break;
  case SD_NN_LAYER_CONCAT: {
    const size_t hw = (size_t)o->h * o->w;
    SD_NN_PAR_RANGE(layer_threads(m, n, 2 * len), (size_t)n, 1,
                    sd_nn_concat_forward((int)(hi - lo), a->c, b->c, (int)hw,
                                         a->data + lo * a->c * hw, b->data + lo * b->c * hw,
                                         o->data + lo * o->c * hw));
    break;
  }
  case SD_NN_LAYER_ADD:
    SD_NN_PAR_RANGE(flat_threads(m, len), len, 16, {
      for (size_t i = lo; i < hi; i++)
        o->data[i] = a->data[i] + b->data[i];
    });
    break;
  case SD_NN_LAYER_UPSAMPLE: {
    const size_t ahw = (size_t)a->h * a->w, ohw = (size_t)o->h * o->w;
    SD_NN_PAR_RANGE(flat_threads(m, len), (size_t)n * o->c, 1,
                    sd_nn_upsample_forward((int)(hi - lo), a->h, a->w, L->u.up.factor, L->u.up.mode,
                                           a->data + lo * ahw, o->data + lo * ohw));
    break;
  }
  default:
    return SD_ERROR(SD_ERR_INTERNAL, "layer %s: no forward for kind %d", L->name, (int)L->kind);
  }
  return SD_OK;
}

/* 1 when layer id is the first, in backward order, to contribute to the gradient of its input
 * k: no later layer on the path reads that tensor (and input 1 is not also input 0). The
 * contribution then overwrites the gradient, which is never zeroed. */
static int grad_first(const sd_nn_model *m, int id, int k) {
  const int t = m->layers[id].in[k];
  if (t < 0 || (k == 1 && m->layers[id].in[0] == t))
    return 0;
  for (int j = id + 1; j <= m->output; j++) {
    const sd_nn_layer *J = &m->layers[j];
    if (J->on_path && (J->in[0] == t || J->in[1] == t))
      return 0;
  }
  return 1;
}

static sd_status layer_backward(sd_nn_model *m, sd_nn_layer *L) {
  const int n = m->layers[0].out.n;
  sd_nn_tensor *a = &m->layers[L->in[0]].out;
  sd_nn_tensor *b = L->in[1] >= 0 ? &m->layers[L->in[1]].out : NULL;
  const sd_nn_tensor *o = &L->out;
  const size_t len = sd_nn_tensor_size(o);
  float *da = a->grad; /* NULL for the model input unless input_grad */
  const float *dy = o->grad;
  const int id = (int)(L - m->layers);
  /* set_a: this layer's kernel overwrites da (the first contribution); kinds without an
   * overwriting kernel zero it here instead */
  int set_a = da && grad_first(m, id, 0);
  switch (L->kind) {
  case SD_NN_LAYER_CONV2D:
  case SD_NN_LAYER_BATCHNORM:
  case SD_NN_LAYER_RELU:
  case SD_NN_LAYER_LEAKY_RELU:
  case SD_NN_LAYER_ADD: break;
  default:
    if (set_a)
      par_zero(m, da, sd_nn_tensor_size(a));
    set_a = 0;
    break;
  }
  if (b && b->grad && grad_first(m, id, 1))
    par_zero(m, b->grad, sd_nn_tensor_size(b));
  switch (L->kind) {
  case SD_NN_LAYER_CONV2D:
  case SD_NN_LAYER_CONV_TRANSPOSE2D: conv_backward(m, L, n, a->data, dy, da, set_a); break;
  case SD_NN_LAYER_DENSE:
    sd_nn_dense_backward(n, L->u.dense.in, L->u.dense.out, a->data, L->u.dense.w, dy, da,
                         L->u.dense.dw, L->u.dense.db);
    break;
  case SD_NN_LAYER_BATCHNORM:
    if (m->mode == SD_NN_MODE_TRAIN) {
      SD_CHECK((set_a ? sd_nn_batchnorm_backward_train_set : sd_nn_batchnorm_backward_train)(
          n, o->c, o->h * o->w, a->data, dy, L->u.bn.gamma, L->u.bn.mean, L->u.bn.invstd,
          L->u.bn.count, da, L->u.bn.dgamma, L->u.bn.dbeta, m->dwork, m->reduce, m->reduce_ctx));
    } else {
      if (set_a)
        memset(da, 0, sizeof(float) * len);
      sd_nn_batchnorm_backward_eval(n, o->c, o->h * o->w, a->data, dy, L->u.bn.gamma,
                                    L->u.bn.running_mean, L->u.bn.running_var, L->u.bn.eps, da,
                                    L->u.bn.dgamma, L->u.bn.dbeta);
    }
    break;
  case SD_NN_LAYER_RELU:
  case SD_NN_LAYER_LEAKY_RELU: {
    const float slope = L->kind == SD_NN_LAYER_RELU ? 0.0f : L->u.leaky.slope;
    if (da)
      SD_NN_PAR_RANGE(flat_threads(m, len), len, 16, {
        if (set_a)
          sd_nn_leaky_relu_backward_set(hi - lo, slope, a->data + lo, dy + lo, da + lo);
        else
          sd_nn_leaky_relu_backward(hi - lo, slope, a->data + lo, dy + lo, da + lo);
      });
    break;
  }
  case SD_NN_LAYER_MAXPOOL:
  case SD_NN_LAYER_AVGPOOL: {
    if (!da)
      break;
    const size_t ahw = (size_t)a->h * a->w, ohw = (size_t)o->h * o->w;
    const int mx = L->kind == SD_NN_LAYER_MAXPOOL;
    SD_NN_PAR_RANGE(flat_threads(m, len + sd_nn_tensor_size(a)), (size_t)n * o->c, 1, {
      const int np = (int)(hi - lo);
      if (mx)
        sd_nn_maxpool_backward(np, a->h, a->w, L->u.pool.k, L->u.pool.stride, L->u.pool.pad, o->h,
                               o->w, a->data + lo * ahw, dy + lo * ohw, da + lo * ahw);
      else
        sd_nn_avgpool_backward(np, a->h, a->w, L->u.pool.k, L->u.pool.stride, L->u.pool.pad, o->h,
                               o->w, dy + lo * ohw, da + lo * ahw);
    });
    break;
  }
  case SD_NN_LAYER_GLOBAL_AVGPOOL:
    if (da)
      sd_nn_global_avgpool_backward(n * o->c, a->h * a->w, dy, da);
    break;
  case SD_NN_LAYER_DROPOUT:
    if (da)
      SD_NN_PAR_RANGE(flat_threads(m, len), len, 16,
                      sd_nn_mul_backward(hi - lo, L->u.dropout.mask + lo, dy + lo, da + lo));
    break;
  case SD_NN_LAYER_CONCAT: {
    const size_t hw = (size_t)o->h * o->w;
    SD_NN_PAR_RANGE(layer_threads(m, n, 2 * len), (size_t)n, 1,
                    sd_nn_concat_backward((int)(hi - lo), a->c, b->c, (int)hw, dy + lo * o->c * hw,
                                          da ? da + lo * a->c * hw : NULL,
                                          b->grad ? b->grad + lo * b->c * hw : NULL));
    break;
  }
  case SD_NN_LAYER_ADD:
    SD_NN_PAR_RANGE(flat_threads(m, len), len, 16, {
      if (set_a)
        memcpy(da + lo, dy + lo, sizeof(float) * (hi - lo));
      else if (da)
        for (size_t i = lo; i < hi; i++)
          da[i] += dy[i];
      if (b->grad)
        for (size_t i = lo; i < hi; i++)
          b->grad[i] += dy[i];
    });
    break;
  case SD_NN_LAYER_UPSAMPLE: {
    if (!da)
      break;
    const size_t ahw = (size_t)a->h * a->w, ohw = (size_t)o->h * o->w;
    SD_NN_PAR_RANGE(flat_threads(m, len), (size_t)n * o->c, 1,
                    sd_nn_upsample_backward((int)(hi - lo), a->h, a->w, L->u.up.factor,
                                            L->u.up.mode, dy + lo * ohw, da + lo * ahw));
    break;
  }
  default:
    return SD_ERROR(SD_ERR_INTERNAL, "layer %s: no backward for kind %d", L->name, (int)L->kind);
  }
  return SD_OK;
}

sd_status sd_nn_model_forward(sd_nn_model *m, const float *x, int n, sd_nn_mode mode) {
  if (!m || !m->compiled)
    return SD_ERROR(SD_ERR_ARG, "forward: the model is not compiled");
  if (n < 1 || n > m->batch)
    return SD_ERROR(SD_ERR_ARG, "forward: batch %d is outside [1, %d] (the compiled batch)", n,
                    m->batch);
  if (mode != SD_NN_MODE_TRAIN && mode != SD_NN_MODE_EVAL && mode != SD_NN_MODE_EVAL_DROPOUT)
    return SD_ERROR(SD_ERR_ARG, "forward: mode must be SD_NN_MODE_TRAIN, _EVAL or _EVAL_DROPOUT");
  for (int i = 0; i < m->num_layers; i++)
    m->layers[i].out.n = n;
  sd_nn_tensor *in = &m->layers[0].out;
  if (x && x != in->data)
    memcpy(in->data, x, sizeof(float) * sd_nn_tensor_size(in));
  m->forward_done = 0;
  return sd_nn_model_forward_from(m, 1, mode);
}

sd_status sd_nn_model_forward_from(sd_nn_model *m, int first, sd_nn_mode mode) {
  if (!m || !m->compiled)
    return SD_ERROR(SD_ERR_ARG, "forward: the model is not compiled");
  if (first < 1 || first > m->output || (first > 1 && !m->forward_done))
    return SD_ERROR(SD_ERR_ARG, "forward from layer %d: needs 1..%d and, above 1, a forward first",
                    first, m->output);
  m->mode = mode;
  int blas = 0;
  SD_CHECK(pass_begin(m, &blas));
  sd_status st = SD_OK;
  for (int i = first; i <= m->output && st == SD_OK; i++) {
    sd_nn_layer *L = &m->layers[i];
    if (!L->on_path)
      continue;
    if (m->layer_hook)
      m->layer_hook(m->layer_hook_ctx, m, i, SD_NN_PASS_FORWARD, 0);
    st = layer_forward(m, L, mode);
    if (st == SD_OK && m->layer_hook)
      m->layer_hook(m->layer_hook_ctx, m, i, SD_NN_PASS_FORWARD, 1);
  }
  pass_end(m, blas);
  SD_CHECK(st);
  m->forward_done = 1;
  return SD_OK;
}

sd_status sd_nn_model_backward(sd_nn_model *m) {
  if (!m || !m->compiled)
    return SD_ERROR(SD_ERR_ARG, "backward: the model is not compiled");
  if (!m->forward_done)
    return SD_ERROR(SD_ERR_ARG, "backward: no forward pass to differentiate");
  if (m->inference_only)
    return SD_ERROR(SD_ERR_ARG, "backward: the model was compiled for inference only");
  /* no zeroing of activation gradients: each one's first contribution overwrites it (see
   * grad_first) */
  int blas = 0;
  SD_CHECK(pass_begin(m, &blas));
  sd_status st = SD_OK;
  for (int i = m->output; i > 0 && st == SD_OK; i--) {
    sd_nn_layer *L = &m->layers[i];
    if (!L->on_path)
      continue;
    if (m->layer_hook)
      m->layer_hook(m->layer_hook_ctx, m, i, SD_NN_PASS_BACKWARD, 0);
    st = layer_backward(m, L);
    if (st != SD_OK)
      break;
    if (m->layer_hook)
      m->layer_hook(m->layer_hook_ctx, m, i, SD_NN_PASS_BACKWARD, 1);
    if (m->grad_ready && L->param_count > 0)
      st = m->grad_ready(m->grad_ready_ctx, m->param_info[L->param_first].offset);
  }
  pass_end(m, blas);
  SD_CHECK(st);
  return SD_OK;
}

void sd_nn_model_zero_grad(sd_nn_model *m) {
  if (m && m->grads)
    memset(m->grads, 0, sizeof(float) * m->num_params);
}

sd_nn_tensor *sd_nn_model_output(sd_nn_model *m) {
  return &m->layers[m->output].out;
}

sd_nn_tensor *sd_nn_model_tensor(sd_nn_model *m, int id) {
  if (!m || id < 0 || id >= m->num_layers)
    return NULL;
  return &m->layers[id].out;
}

/* ---- enumeration ------------------------------------------------------------------------------
 */

int sd_nn_model_param_count(const sd_nn_model *m) {
  return m->num_param_tensors;
}

const sd_nn_param *sd_nn_model_param(const sd_nn_model *m, int i) {
  return i >= 0 && i < m->num_param_tensors ? &m->param_info[i] : NULL;
}

int sd_nn_model_buffer_count(const sd_nn_model *m) {
  return m->num_buffer_tensors;
}

const sd_nn_param *sd_nn_model_buffer(const sd_nn_model *m, int i) {
  return i >= 0 && i < m->num_buffer_tensors ? &m->buffer_info[i] : NULL;
}

int sd_nn_model_find_param(const sd_nn_model *m, const char *name) {
  for (int i = 0; i < m->num_param_tensors; i++)
    if (strcmp(m->param_info[i].name, name) == 0)
      return i;
  return -1;
}

int sd_nn_model_find_buffer(const sd_nn_model *m, const char *name) {
  for (int i = 0; i < m->num_buffer_tensors; i++)
    if (strcmp(m->buffer_info[i].name, name) == 0)
      return i;
  return -1;
}

sd_status sd_nn_model_set_trainable(sd_nn_model *m, int first, int last, int trainable) {
  if (!m || !m->compiled)
    return SD_ERROR(SD_ERR_ARG, "set_trainable: the model is not compiled");
  if (first < 0 || last >= m->num_layers || first > last)
    return SD_ERROR(SD_ERR_ARG, "set_trainable: layer range [%d, %d] is outside [0, %d]", first,
                    last, m->num_layers - 1);
  for (int i = 0; i < m->num_param_tensors; i++)
    if (m->param_info[i].layer >= first && m->param_info[i].layer <= last)
      m->param_info[i].trainable = trainable ? 1 : 0;
  return SD_OK;
}

size_t sd_nn_model_trainable_count(const sd_nn_model *m) {
  size_t n = 0;
  for (int i = 0; i < m->num_param_tensors; i++)
    if (m->param_info[i].trainable)
      n += m->param_info[i].count;
  return n;
}
