/* nn.h - a small neural-network engine: float32 NCHW tensors in contiguous arenas, layers with
 * forward and backward, losses, optimisers. The data-parallel trainer, the classifier and the
 * U-Net are built on it.
 *
 * Tutorial (a small CNN, one training step):
 *
 *   sd_nn_model *m = NULL;
 *   SD_CHECK(sd_nn_model_create(&m));
 *   int x = 0;                                   // layer 0 is the input
 *   x = sd_nn_add_conv2d(m, x, 16, 3, 1, 1);     // [B,16,H,W]
 *   x = sd_nn_add_batchnorm(m, x);
 *   x = sd_nn_add_relu(m, x);
 *   x = sd_nn_add_maxpool(m, x, 2, 2);           // [B,16,H/2,W/2]
 *   x = sd_nn_add_global_avgpool(m, x);          // [B,16,1,1]
 *   x = sd_nn_add_dense(m, x, 4);                // [B,4,1,1] logits (the last layer is the output)
 *   SD_CHECK(sd_nn_model_compile(m, B, 1, H, W)); // shapes, arenas, He init with seed 0
 *   SD_CHECK(sd_nn_model_init_params(m, seed));   // optional: identical on every rank
 *
 *   sd_nn_optim opt = sd_nn_optim_adamw(1e-3f, 1e-4f);
 *   sd_nn_model_zero_grad(m);
 *   SD_CHECK(sd_nn_model_forward(m, images, B, SD_NN_MODE_TRAIN));       // images [B,1,H,W]
 *   double loss;
 *   SD_CHECK(sd_nn_loss_softmax_ce(sd_nn_model_output(m), labels, NULL, &loss)); // writes grad
 *   SD_CHECK(sd_nn_model_backward(m));
 *   // data parallel: MPI_Allreduce(MPI_IN_PLACE, m->grads, m->num_params, MPI_FLOAT, MPI_SUM, ..)
 *   SD_CHECK(sd_nn_optim_step(m, &opt, sd_nn_schedule_lr(&sched, opt.step), NULL));
 *   sd_nn_model_destroy(&m);
 *
 * Builder functions return the new layer's id (>= 0) or -1 on a bad argument; a -1 input
 * propagates, and sd_nn_model_compile() reports the first build error, so a chain of builder
 * calls needs one check. Shapes are checked at compile time.
 *
 * Memory: after compile the model owns five arenas, each one allocation:
 *   params  [num_params]     every parameter tensor (64-byte aligned inside)
 *   grads   [num_params]     their gradients, same layout (one allreduce reduces them all)
 *   opt     [2*num_params]   optimiser state (SGD momentum; Adam first and second moments)
 *   buffers [num_buffers]    non-trained state (batch-norm running mean and variance)
 *   acts    [num_acts]       every layer output, its gradient, saved statistics and masks
 * plus one float and one double workspace. forward/backward/optim_step allocate nothing.
 *
 * Not collective by itself: MPI enters only through the caller's sd_nn_reduce_fn hooks, which
 * are called by every rank in the same order (so collective when the hook is).
 */
#ifndef STEMDEFECT_NN_H
#define STEMDEFECT_NN_H

#include <stddef.h>
#include <stdint.h>

#include "stemdefect/rng.h"
#include "stemdefect/status.h"

#define SD_NN_NAME_MAX 48

/* Sums buf[0..n) across ranks in place (e.g. MPI_Allreduce with MPI_SUM on MPI_DOUBLE).
 * NULL hook = this process only. Called identically on every rank. */
typedef sd_status (*sd_nn_reduce_fn)(void *ctx, double *buf, int n);

/* Called during backward after a layer's parameter gradients are final: grads[first ..
 * num_params) will not change again in this backward (parameters are laid out in layer order
 * and backward runs in reverse), so a trainer can start reducing those buckets early. */
typedef sd_status (*sd_nn_grad_ready_fn)(void *ctx, size_t first);

struct sd_nn_model;

/* Which pass a layer hook reports. */
typedef enum sd_nn_pass { SD_NN_PASS_FORWARD = 0, SD_NN_PASS_BACKWARD = 1 } sd_nn_pass;

/* Called just before (end = 0) and just after (end = 1) each layer's forward or backward inside
 * sd_nn_model_forward/backward (layer = its id; forward in increasing, backward in decreasing
 * id order, only layers on the output's path). For per-layer timing and tracing; must not
 * change the model. */
typedef void (*sd_nn_layer_hook_fn)(void *ctx, const struct sd_nn_model *m, int layer,
                                    sd_nn_pass pass, int end);

/* ---- tensors --------------------------------------------------------------------------- */

/* A view into the activation arena. n is the active batch (<= the compiled batch). */
typedef struct sd_nn_tensor {
  float *data; /* [n, c, h, w] values */
  float *grad; /* [n, c, h, w] d loss / d data; NULL when no gradient is kept */
  int n, c, h, w;
} sd_nn_tensor;

/* Elements of one sample (c*h*w). */
static inline size_t sd_nn_tensor_sample_size(const sd_nn_tensor *t) {
  return (size_t)t->c * (size_t)t->h * (size_t)t->w;
}
/* Elements of the active batch (n*c*h*w). */
static inline size_t sd_nn_tensor_size(const sd_nn_tensor *t) {
  return (size_t)t->n * sd_nn_tensor_sample_size(t);
}

/* A named parameter or buffer tensor inside its arena (for optimisers and serialization). */
typedef struct sd_nn_param {
  char name[SD_NN_NAME_MAX + 24]; /* "conv3.weight", "bn0.running_var", ... */
  int ndim;                       /* 1..4 */
  int shape[4];                   /* e.g. conv weight [out_ch, in_ch, kh, kw], bias [out_ch] */
  size_t offset;                  /* first element in the arena (params/grads/opt, or buffers) */
  size_t count;                   /* product of shape */
  int layer;                      /* owning layer id */
  int decay;                      /* 1: weight decay applies (conv/dense weights); 0: bias, BN */
  int trainable;                  /* 0: frozen, the optimiser leaves it unchanged */
} sd_nn_param;

/* ---- layers ---------------------------------------------------------------------------- */

typedef enum sd_nn_layer_kind {
  SD_NN_LAYER_INPUT = 0,
  SD_NN_LAYER_CONV2D,
  SD_NN_LAYER_CONV_TRANSPOSE2D,
  SD_NN_LAYER_DENSE,
  SD_NN_LAYER_BATCHNORM,
  SD_NN_LAYER_RELU,
  SD_NN_LAYER_LEAKY_RELU,
  SD_NN_LAYER_MAXPOOL,
  SD_NN_LAYER_AVGPOOL,
  SD_NN_LAYER_GLOBAL_AVGPOOL,
  SD_NN_LAYER_DROPOUT,
  SD_NN_LAYER_CONCAT,
  SD_NN_LAYER_ADD,
  SD_NN_LAYER_UPSAMPLE,
  SD_NN_LAYER_COUNT_ /* number of kinds */
} sd_nn_layer_kind;

typedef enum sd_nn_upsample_mode {
  SD_NN_UPSAMPLE_NEAREST = 0,
  SD_NN_UPSAMPLE_BILINEAR = 1 /* align_corners = false, as PyTorch's default */
} sd_nn_upsample_mode;

/* EVAL: batch norm with running statistics, no dropout. TRAIN: batch statistics (running ones
 * updated), dropout. EVAL_DROPOUT: batch norm as EVAL, dropout as TRAIN (Monte Carlo dropout:
 * repeated stochastic passes of a trained model). */
typedef enum sd_nn_mode {
  SD_NN_MODE_EVAL = 0,
  SD_NN_MODE_TRAIN = 1,
  SD_NN_MODE_EVAL_DROPOUT = 2
} sd_nn_mode;

/* Convolution geometry (also used by transposed convolution, where c/h/w describe the
 * transposed layer's output and oc/oh/ow its input). */
typedef struct sd_nn_conv_geom {
  int c, h, w;    /* input channels, height, width */
  int oc, oh, ow; /* output channels, height, width */
  int kh, kw;     /* kernel size */
  int sh, sw;     /* stride */
  int ph, pw;     /* zero padding */
} sd_nn_conv_geom;

/* One layer. Fields are set by the builder and compile; read-only for callers. Parameter
 * pointers point into the model's arenas (NULL before compile). */
typedef struct sd_nn_layer {
  sd_nn_layer_kind kind;
  char name[SD_NN_NAME_MAX];      /* unique: "conv0", "bn2", ... (sd_nn_layer_set_name) */
  int in[2];                      /* input layer ids; in[1] = -1 except concat and add */
  sd_nn_tensor out;               /* output [n, c, h, w] and its gradient */
  int param_first, param_count;   /* entries in model->param_info */
  int buffer_first, buffer_count; /* entries in model->buffer_info */
  int on_path; /* 1: the output depends on this layer (forward/backward visit it) */
  union {
    struct {
      int out_ch, k, stride, pad, bias; /* as given to the builder */
      sd_nn_conv_geom g;                /* resolved at compile */
      float *w, *dw; /* conv [oc, c, kh, kw]; transposed [in_ch, out_ch, kh, kw] = [g.oc, g.c, ..] */
      float *b, *db;                    /* [oc], NULL without bias */
    } conv;
    struct {
      int out, bias; /* output features */
      int in;        /* input features (c*h*w of the input), resolved at compile */
      float *w, *dw; /* [out, in] */
      float *b, *db; /* [out] or NULL */
    } dense;
    struct {
      float momentum, eps;
      float *gamma, *dgamma, *beta, *dbeta; /* [c] */
      float *running_mean, *running_var;    /* [c] in the buffer arena */
      float *mean, *invstd;                 /* [c] batch statistics saved for backward */
      double count;                         /* elements per channel in the (global) batch */
    } bn;
    struct {
      float slope; /* negative-side slope */
    } leaky;
    struct {
      int k, stride, pad;
    } pool;
    struct {
      float rate;  /* probability of zeroing */
      float *mask; /* [n, c, h, w] 0 or 1/(1-rate), from the last training forward */
    } dropout;
    struct {
      int factor;
      sd_nn_upsample_mode mode;
    } up;
  } u;
} sd_nn_layer;

/* ---- the model ------------------------------------------------------------------------- */

/* A graph of layers in a list, each reading the output of earlier layers. Read-only for
 * callers except through the functions below (the arenas may be read and written). */
typedef struct sd_nn_model {
  sd_nn_layer *layers; /* [num_layers]; layers[0] is the input */
  int num_layers, cap_layers;
  int output;             /* output layer id (default: the last added) */
  sd_status build_status; /* first builder error */
  int compiled;           /* 1 after sd_nn_model_compile */
  int batch;              /* compiled (maximum) batch size */
  int in_c, in_h, in_w;   /* input sample shape */
  int input_grad;         /* 1: backward also fills layers[0].out.grad */
  int inference_only;     /* 1: no activation gradients (sd_nn_model_set_inference_only) */
  sd_nn_mode mode;        /* mode of the last forward */
  int forward_done;       /* 1 after a forward (backward needs one) */

  sd_nn_param *param_info; /* [num_param_tensors] */
  int num_param_tensors, cap_param_tensors;
  sd_nn_param *buffer_info; /* [num_buffer_tensors] */
  int num_buffer_tensors, cap_buffer_tensors;

  size_t num_params;  /* floats in params and grads (including alignment padding) */
  float *params;      /* [num_params] */
  float *grads;       /* [num_params] */
  float *opt_state;   /* [2 * num_params] */
  size_t num_buffers; /* floats in buffers */
  float *buffers;     /* [num_buffers] */
  size_t num_acts;    /* floats in acts */
  float *acts;        /* [num_acts] layer outputs, their gradients, saved stats, masks */
  size_t num_work;    /* floats in work */
  float *work;        /* [num_work] im2col columns and GEMM staging */
  double *dwork;      /* [2 * max channels + 2] statistics handed to the reduce hook */

  sd_rng dropout_rng;     /* advanced by every training forward with dropout */
  /* per-sample dropout mask keys [batch] and their seed (sd_nn_model_set_dropout_keys) */
  const uint64_t *dropout_keys; /* NULL = masks from dropout_rng */
  uint64_t dropout_key_seed;
  sd_nn_reduce_fn reduce; /* batch-norm statistics across ranks; NULL = local */
  void *reduce_ctx;
  sd_nn_grad_ready_fn grad_ready; /* optional, see sd_nn_grad_ready_fn */
  void *grad_ready_ctx;
  sd_nn_layer_hook_fn layer_hook; /* optional, see sd_nn_layer_hook_fn */
  void *layer_hook_ctx;

  /* threads (sd_nn_model_set_threads): the engine splits each layer itself and runs OpenBLAS
   * on one thread during a pass; the per-thread arenas are sized at compile, by
   * sd_nn_model_set_threads, or by the first pass with a new thread count */
  int threads;       /* requested; 0 = OpenBLAS's thread count (OPENBLAS_NUM_THREADS) */
  int par_threads;   /* threads the per-thread arenas below are sized for (0 = none) */
  int pass_threads;  /* threads of the running pass (1 outside one) */
  float *twork;      /* [par_threads * twork_per] per-thread convolution workspaces */
  size_t twork_per;
  float *tgrad;      /* [(par_threads - 1) * tgrad_per] per-thread weight and bias gradients */
  size_t tgrad_per;
} sd_nn_model;

/* Creates an empty model holding only the input layer (id 0). Free with sd_nn_model_destroy. */
sd_status sd_nn_model_create(sd_nn_model **model);
/* Frees the model and every arena; NULL-safe; sets *model to NULL. */
void sd_nn_model_destroy(sd_nn_model **model);

/* Builders: each adds a layer reading layer `in` and returns its id, or -1 (error recorded in
 * model->build_status and the error record). Square kernels; stride >= 1; pad >= 0. */
int sd_nn_add_conv2d(sd_nn_model *m, int in, int out_ch, int k, int stride, int pad);
/* As sd_nn_add_conv2d; bias = 0 leaves the bias out (e.g. before batch norm). */
int sd_nn_add_conv2d_ex(sd_nn_model *m, int in, int out_ch, int k, int stride, int pad, int bias);
/* Transposed convolution: output size (h-1)*stride - 2*pad + k (k = stride = 2 doubles). */
int sd_nn_add_conv_transpose2d(sd_nn_model *m, int in, int out_ch, int k, int stride, int pad);
/* Fully connected on the flattened input [n, c*h*w] -> [n, out, 1, 1]. */
int sd_nn_add_dense(sd_nn_model *m, int in, int out);
/* Batch normalisation over (n, h, w) per channel; momentum 0.1, eps 1e-5 (PyTorch). */
int sd_nn_add_batchnorm(sd_nn_model *m, int in);
int sd_nn_add_batchnorm_ex(sd_nn_model *m, int in, float momentum, float eps);
int sd_nn_add_relu(sd_nn_model *m, int in);
int sd_nn_add_leaky_relu(sd_nn_model *m, int in, float slope);
/* Max pooling (padding counts as -inf) and average pooling (padding counts as zero, divisor
 * k*k, as PyTorch's count_include_pad); output floor((h + 2 pad - k) / stride) + 1. */
int sd_nn_add_maxpool(sd_nn_model *m, int in, int k, int stride);
int sd_nn_add_avgpool(sd_nn_model *m, int in, int k, int stride);
int sd_nn_add_pool_ex(sd_nn_model *m, sd_nn_layer_kind kind, int in, int k, int stride, int pad);
/* [n, c, h, w] -> [n, c, 1, 1] mean. */
int sd_nn_add_global_avgpool(sd_nn_model *m, int in);
/* Inverted dropout: in training zeroes with probability rate and scales by 1/(1-rate). */
int sd_nn_add_dropout(sd_nn_model *m, int in, float rate);
/* Channel concatenation [n, ca + cb, h, w] of two outputs of equal n, h, w. */
int sd_nn_add_concat(sd_nn_model *m, int a, int b);
/* Elementwise sum of two outputs of equal shape (residual connection). */
int sd_nn_add_add(sd_nn_model *m, int a, int b);
/* Upsampling by an integer factor, nearest or bilinear. */
int sd_nn_add_upsample(sd_nn_model *m, int in, int factor, sd_nn_upsample_mode mode);

/* Renames a layer (names prefix its parameters: "<name>.weight"); before compile. */
sd_status sd_nn_layer_set_name(sd_nn_model *m, int id, const char *name);
/* Chooses the output layer (default: the last added). */
sd_status sd_nn_model_set_output(sd_nn_model *m, int id);
/* Keep the gradient with respect to the model input (off by default; for tests, saliency).
 * Before compile; ignored after. */
void sd_nn_model_set_input_grad(sd_nn_model *m, int on);
/* Before compile: on = 1 keeps no activation gradients (half the activation arena; forward
 * only, backward is refused). For inference (segment, evaluate, predict). */
void sd_nn_model_set_inference_only(sd_nn_model *m, int on);

/* Resolves shapes for input [batch, c, h, w], allocates every arena once and initialises the
 * parameters with sd_nn_model_init_params(m, 0). Fails on a build error or a shape mismatch
 * (the message names the layer). */
sd_status sd_nn_model_compile(sd_nn_model *m, int batch, int c, int h, int w);

/* He (Kaiming) normal weights, std sqrt(2 / fan_in), for conv, transposed conv and dense;
 * zero biases; batch-norm gamma 1, beta 0, running mean 0, var 1; optimiser state zero.
 * Drawn in layer order from sd_rng (seed, 0, SD_RNG_STREAM_INIT): identical on every rank. Also
 * reseeds dropout with (seed, 0, SD_RNG_STREAM_DROPOUT). */
sd_status sd_nn_model_init_params(sd_nn_model *m, uint64_t seed);
/* Reseeds the dropout stream with (seed, a, SD_RNG_STREAM_DROPOUT) (a: e.g. rank or step). */
void sd_nn_model_seed_dropout(sd_nn_model *m, uint64_t seed, uint64_t a);
/* Per-sample dropout masks: while keys is not NULL, sample i of a forward that applies dropout
 * draws its mask in layer L from sd_rng (seed, keys[i] ^ sd_rng_mix64(L), SD_RNG_STREAM_DROPOUT)
 * instead of the model's one stream, so a sample's mask depends on its key alone, not on the
 * other samples of its batch (nor on the rank that runs it). keys: at least the forward's batch
 * entries, not copied (keep it alive and filled while set); NULL returns to the one stream. */
void sd_nn_model_set_dropout_keys(sd_nn_model *m, uint64_t seed, const uint64_t *keys);
/* Id of the first dropout layer with a rate > 0 that the output depends on, -1 if none (after
 * compile). */
int sd_nn_model_first_dropout(const sd_nn_model *m);
/* Sets the hook that sums batch-norm statistics across ranks (NULL = local only). */
void sd_nn_model_set_reduce(sd_nn_model *m, sd_nn_reduce_fn fn, void *ctx);
/* Sets the hook told when parameter gradients become final during backward. */
void sd_nn_model_set_grad_ready(sd_nn_model *m, sd_nn_grad_ready_fn fn, void *ctx);
/* Sets the hook called around every layer's forward and backward (NULL = none). */
void sd_nn_model_set_layer_hook(sd_nn_model *m, sd_nn_layer_hook_fn fn, void *ctx);
/* Threads for the passes of this model: 0 (the default) follows OpenBLAS's thread count
 * (OPENBLAS_NUM_THREADS, else the cores), 1 runs single-threaded. With T > 1 the convolutions
 * are split by images (each thread one part of the batch, single-threaded GEMMs), batch norm
 * by channels, the other layers by ranges; results equal the 1-thread ones except for the
 * summation order of the weight gradients (the same T gives the same bits). The per-thread
 * arenas are sized here (and at compile); a pass that finds another count (OpenBLAS's changed)
 * sizes them then. */
sd_status sd_nn_model_set_threads(sd_nn_model *m, int threads);
/* The thread count the next pass will use. */
int sd_nn_model_threads(const sd_nn_model *m);

/* Runs the network on x [n, c, h, w] (n <= compiled batch; x NULL = the caller already wrote
 * layers[0].out.data). TRAIN uses batch statistics (and updates running statistics) and
 * dropout; EVAL uses running statistics and no dropout; EVAL_DROPOUT running statistics and
 * dropout. No allocation. */
sd_status sd_nn_model_forward(sd_nn_model *m, const float *x, int n, sd_nn_mode mode);
/* Reruns only layers first..output of the last forward (same input and batch), reusing the
 * outputs of the layers before first, in mode (which must leave those layers' outputs as they
 * were): e.g. further Monte Carlo dropout passes from sd_nn_model_first_dropout(m) on, without
 * recomputing the deterministic layers below it. No allocation. */
sd_status sd_nn_model_forward_from(sd_nn_model *m, int first, sd_nn_mode mode);
/* Backpropagates from the output gradient (sd_nn_model_output(m)->grad, written by a loss or
 * by the caller) through the last forward; parameter gradients are ADDED to m->grads (call
 * sd_nn_model_zero_grad first). Activation gradients are recomputed from scratch. */
sd_status sd_nn_model_backward(sd_nn_model *m);
/* Zeroes the gradient arena. */
void sd_nn_model_zero_grad(sd_nn_model *m);

/* The output tensor (valid after compile; data after forward). */
sd_nn_tensor *sd_nn_model_output(sd_nn_model *m);
/* Any layer's output tensor (feature extraction, skip connections); NULL for a bad id. */
sd_nn_tensor *sd_nn_model_tensor(sd_nn_model *m, int id);

/* Parameter and buffer enumeration, for serialization and transfer learning. */
int sd_nn_model_param_count(const sd_nn_model *m);
const sd_nn_param *sd_nn_model_param(const sd_nn_model *m, int i);
int sd_nn_model_buffer_count(const sd_nn_model *m);
const sd_nn_param *sd_nn_model_buffer(const sd_nn_model *m, int i);
/* Index of the parameter (or buffer) named name, -1 if none. */
int sd_nn_model_find_param(const sd_nn_model *m, const char *name);
int sd_nn_model_find_buffer(const sd_nn_model *m, const char *name);
/* Pointers to a tensor's values in its arena. */
static inline float *sd_nn_param_data(const sd_nn_model *m, const sd_nn_param *p) {
  return m->params + p->offset;
}
static inline float *sd_nn_param_grad(const sd_nn_model *m, const sd_nn_param *p) {
  return m->grads + p->offset;
}
static inline float *sd_nn_buffer_data(const sd_nn_model *m, const sd_nn_param *p) {
  return m->buffers + p->offset;
}
/* Freezes (trainable = 0) or unfreezes the parameters of layers first..last (inclusive). */
sd_status sd_nn_model_set_trainable(sd_nn_model *m, int first, int last, int trainable);
/* Number of trainable scalars (excluding padding). */
size_t sd_nn_model_trainable_count(const sd_nn_model *m);

/* Architecture description: one line per layer, "<kind> name=<n> in=<id>[,<id>] key=value..",
 * preceded by an "input c= h= w=" line and followed by "output <id>". Writes at most cap bytes
 * (always terminated); returns the full length (like snprintf). */
size_t sd_nn_model_describe(const sd_nn_model *m, char *buf, size_t cap);
/* Builds an uncompiled model from a description written by sd_nn_model_describe; *c, *h, *w
 * receive the input shape (any may be NULL). */
sd_status sd_nn_model_create_from_description(sd_nn_model **model, const char *text, int *c, int *h,
                                              int *w);
/* Kind name as used in descriptions ("conv2d", "batchnorm", ...). */
const char *sd_nn_layer_kind_name(sd_nn_layer_kind kind);

/* ---- losses ------------------------------------------------------------------------------
 * Each computes the loss of the output tensor's active batch and writes (or adds, with
 * accumulate) d loss / d logits into logits->grad. Targets < 0 are ignored (-1 = unknown).
 * With reduce set, the normaliser (CE, BCE) or the per-class sums (Dice) are summed across
 * ranks through the hook, so each rank's gradient is the global batch's gradient for its own
 * samples. The returned CE/BCE loss is then this rank's share (sum the shares over ranks for the
 * global loss); the Dice loss is the global one on every rank. */
typedef struct sd_nn_loss_opts {
  const float *class_weights; /* [C] weight per class (CE, Dice); NULL = all 1 */
  float label_smoothing;      /* CE: eps in [0, 1), PyTorch's definition */
  float dice_smooth;          /* Dice: added to numerator and denominator; 0 = 1 */
  int dice_skip_background;   /* Dice: leave class 0 out of the mean */
  double scale;               /* multiplies loss and gradient (combining losses); 0 = 1 */
  int accumulate;             /* 1: add into logits->grad; 0: overwrite it */
  sd_nn_reduce_fn reduce;     /* optional, see above */
  void *reduce_ctx;
} sd_nn_loss_opts;

/* Softmax + cross-entropy over channels. logits [n, C, h, w]; target [n, h, w] class ids (h = w
 * = 1 for classification). Loss = sum_i [(1-eps) w_{y_i} (-log p_{i,y_i}) + eps/C sum_c w_c
 * (-log p_{i,c})] / sum_i w_{y_i}, as torch.nn.functional.cross_entropy. opts may be NULL. */
sd_status sd_nn_loss_softmax_ce(sd_nn_tensor *logits, const int32_t *target,
                                const sd_nn_loss_opts *opts, double *loss);
/* Sigmoid + binary cross-entropy, mean over elements whose target is >= 0 (negative = ignored).
 * logits, target [n, c, h, w], targets in [0, 1]; class_weights [c] weight each channel. */
sd_status sd_nn_loss_sigmoid_bce(sd_nn_tensor *logits, const float *target,
                                 const sd_nn_loss_opts *opts, double *loss);
/* Soft Dice on softmax(logits) against one-hot targets [n, h, w]: loss = 1 - weighted mean over
 * classes of (2 sum p g + s) / (sum p + sum g + s), sums over the whole batch. */
sd_status sd_nn_loss_dice(sd_nn_tensor *logits, const int32_t *target, const sd_nn_loss_opts *opts,
                          double *loss);
/* Whole-set losses from sums (validation over many batches and ranks): adds into
 * sums[0 .. 4 + 3C), over the pixels of logits [n, C, h, w] whose target [n, h, w] is >= 0:
 * [0] sum w_y (-log p_y) and [1] sum w_y (the weighted cross-entropy without label smoothing is
 * sums[0] / sums[1]), [2] pixels whose arg-max class is the target, [3] pixels, then the Dice
 * sums of sd_nn_dice_from_sums at sums + 4. class_weights [C] may be NULL (all 1). Sums of
 * several batches, summed over ranks, give the losses of the whole set whatever its batching.
 * Reads logits->data only (no gradient). */
sd_status sd_nn_loss_sums(const sd_nn_tensor *logits, const int32_t *target,
                          const float *class_weights, double *sums);
/* The soft Dice loss of sd_nn_loss_dice from its sums over any set of pixels: I = sums[0..C)
 * (sum p_c g_c), P = sums[C..2C) (sum p_c), G = sums[2C..3C) (sum g_c); 1 - weighted mean over
 * classes c >= skip_background (0/1) of (2 I_c + s) / (P_c + G_c + s), s = smooth (0 = 1).
 * NaN when the weights sum to zero. */
double sd_nn_dice_from_sums(int C, const double *sums, const float *class_weights,
                            int skip_background, float smooth);
/* Channel softmax of x [n, c, hw] into y (may alias x). */
void sd_nn_softmax(int n, int c, int hw, const float *x, float *y);

/* ---- optimisers -------------------------------------------------------------------------- */

typedef enum sd_nn_optim_kind {
  SD_NN_OPTIM_SGD = 0,
  SD_NN_OPTIM_ADAM = 1, /* weight decay as L2 added to the gradient */
  SD_NN_OPTIM_ADAMW = 2 /* decoupled weight decay */
} sd_nn_optim_kind;

/* Optimiser settings and step count; the moments live in model->opt_state. */
typedef struct sd_nn_optim {
  sd_nn_optim_kind kind;
  float lr;           /* base learning rate (sd_nn_optim_step takes the scheduled one) */
  float momentum;     /* SGD */
  int nesterov;       /* SGD */
  float beta1, beta2; /* Adam */
  float eps;          /* Adam */
  float weight_decay; /* applied to parameters with decay = 1 */
  float clip_norm;    /* > 0: scale gradients so their global L2 norm is at most this */
  int64_t step;       /* steps taken (Adam bias correction); checkpoint it */
} sd_nn_optim;

sd_nn_optim sd_nn_optim_sgd(float lr, float momentum, int nesterov, float weight_decay);
sd_nn_optim sd_nn_optim_adam(float lr, float weight_decay);
sd_nn_optim sd_nn_optim_adamw(float lr, float weight_decay);

/* One update of every trainable parameter from m->grads with learning rate lr (clipping the
 * gradient first if clip_norm > 0, which rescales m->grads). grad_norm (may be NULL) receives
 * the global gradient norm before clipping. Frozen parameters are untouched. Returns
 * SD_ERR_ARG, changing nothing, when the gradient norm is not finite (a diverged loss). In data
 * parallel training call it after the gradient allreduce: every rank then takes the same step. */
sd_status sd_nn_optim_step(sd_nn_model *m, sd_nn_optim *opt, float lr, double *grad_norm);
/* L2 norm of the gradients of trainable parameters. */
double sd_nn_grad_norm(const sd_nn_model *m);
/* Resets optimiser state (moments, step). */
void sd_nn_optim_reset(sd_nn_model *m, sd_nn_optim *opt);

typedef enum sd_nn_schedule_kind {
  SD_NN_SCHEDULE_CONSTANT = 0,
  SD_NN_SCHEDULE_STEP = 1, /* lr * gamma^floor((t - warmup) / step_size) */
  SD_NN_SCHEDULE_COSINE =
      2 /* min_lr + (lr - min_lr)(1 + cos(pi (t - warmup)/(total - warmup)))/2 */
} sd_nn_schedule_kind;

/* Learning rate as a function of the step t (0-based), with an optional linear warm-up from
 * lr/warmup_steps to lr over the first warmup_steps steps. */
typedef struct sd_nn_schedule {
  sd_nn_schedule_kind kind;
  float lr;          /* peak learning rate */
  float min_lr;      /* cosine floor */
  float gamma;       /* step decay factor */
  int64_t step_size; /* step decay period */
  int64_t total;     /* cosine: total steps */
  int64_t warmup;    /* warm-up steps (0 = none) */
} sd_nn_schedule;

float sd_nn_schedule_lr(const sd_nn_schedule *s, int64_t t);

/* Early stopping on a validation loss with a copy of the best parameters and buffers. */
typedef struct sd_nn_early_stop {
  int patience;        /* epochs without improvement before stopping */
  double min_delta;    /* improvement must exceed this */
  double best;         /* best validation loss so far (+inf at start) */
  int best_epoch;      /* epoch of best (-1 at start) */
  int bad_epochs;      /* epochs since the best */
  float *best_params;  /* [num_params] copy of the parameter arena at the best epoch */
  float *best_buffers; /* [num_buffers] */
  size_t num_params, num_buffers;
} sd_nn_early_stop;

sd_status sd_nn_early_stop_init(sd_nn_early_stop *es, const sd_nn_model *m, int patience,
                                double min_delta);
/* Records this epoch's validation loss (saving the weights when it is the best so far);
 * returns 1 when training should stop, 0 otherwise. */
int sd_nn_early_stop_update(sd_nn_early_stop *es, const sd_nn_model *m, double val_loss, int epoch);
/* Copies the best parameters and buffers back into the model (no-op before any update). */
sd_status sd_nn_early_stop_restore(const sd_nn_early_stop *es, sd_nn_model *m);
void sd_nn_early_stop_free(sd_nn_early_stop *es);

#endif
