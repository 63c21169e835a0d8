/* trainer.c - the data-parallel training loop, evaluation, signals, the classifier. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stemdefect/log.h"
#include "stemdefect/par.h"
#include "stemdefect/profile.h"
#include "stemdefect/segment.h"
#include "stemdefect/train.h"

static volatile sig_atomic_t sd_stop_flag = 0;

static void on_stop_signal(int sig) {
  (void)sig;
  sd_stop_flag = 1;
}

void sd_train_install_signal_handlers(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGUSR1, &sa, NULL);
}

int sd_train_stop_requested(void) { return sd_stop_flag != 0; }

sd_status sd_train_reduce_sum(void *ctx, double *buf, int n) {
  MPI_Comm comm = *(MPI_Comm *)ctx;
  double t = sd_profile_phase_begin();
  sd_status st = sd_par_allreduce_sum_double(comm, buf, n);
  sd_profile_phase_end(SD_PHASE_COMM, t);
  sd_profile_add_bytes(SD_PHASE_COMM, (int64_t)n * 8);
  return st;
}

/* ---- gradient allreduce overlapped with backward --------------------------------------------
 * The gradient arena is reduced in about SD_TRAIN_GRAD_BUCKETS buckets: backward runs from the
 * last layer to the first and tells (sd_nn_grad_ready_fn) when grads[first, num_params) are
 * final, so a bucket's MPI_Iallreduce starts as soon as it is complete and progresses while
 * the earlier layers' backward runs (Open MPI progresses it inside the batch-norm allreduces
 * that backward makes, and in the final wait). Every rank has the same model, so every rank
 * starts the same buckets in the same order. The sums are the same numbers as one allreduce of
 * the whole arena up to the MPI library's summation order. */
#define SD_TRAIN_GRAD_BUCKETS 4
#define SD_TRAIN_MAX_REQS (SD_TRAIN_GRAD_BUCKETS + 2)

typedef struct grad_overlap {
  MPI_Comm comm;
  float *grads;
  size_t end;    /* grads[end, num_params) are being reduced */
  size_t bucket; /* floats per bucket */
  MPI_Request req[SD_TRAIN_MAX_REQS];
  int nreq;
} grad_overlap;

static sd_status overlap_start(grad_overlap *o, size_t first) {
  int rc = MPI_Iallreduce(MPI_IN_PLACE, o->grads + first, (int)(o->end - first), MPI_FLOAT, MPI_SUM,
                          o->comm, &o->req[o->nreq]);
  sd_profile_add_bytes(SD_PHASE_COMM, (int64_t)(o->end - first) * 4);
  o->nreq++;
  o->end = first;
  return sd_par_check(rc, "MPI_Iallreduce of a gradient bucket");
}

static sd_status overlap_ready(void *ctx, size_t first) {
  grad_overlap *o = ctx;
  if (o->end > first && o->end - first >= o->bucket && o->nreq < SD_TRAIN_MAX_REQS - 1)
    return overlap_start(o, first);
  return SD_OK;
}

static void overlap_begin(grad_overlap *o, MPI_Comm comm, const sd_nn_model *m) {
  o->comm = comm;
  o->grads = m->grads;
  o->end = m->num_params;
  o->bucket = (m->num_params + SD_TRAIN_GRAD_BUCKETS - 1) / SD_TRAIN_GRAD_BUCKETS;
  o->nreq = 0;
}

/* Starts the last bucket and waits for all of them. */
static sd_status overlap_finish(grad_overlap *o) {
  sd_status st = SD_OK;
  if (o->end > 0)
    st = overlap_start(o, 0);
  int rc = MPI_Waitall(o->nreq, o->req, MPI_STATUSES_IGNORE);
  o->nreq = 0;
  sd_status sw = sd_par_check(rc, "MPI_Waitall of the gradient buckets");
  return st != SD_OK ? st : sw;
}

/* ---- the classifier --------------------------------------------------------------------- */

static int conv_bn(sd_nn_model *m, int x, int ch, int k, int stride, int relu) {
  x = sd_nn_add_conv2d_ex(m, x, ch, k, stride, k / 2, 0);
  x = sd_nn_add_batchnorm(m, x);
  return relu ? sd_nn_add_relu(m, x) : x;
}

sd_status sd_classifier_build(sd_nn_model **out, int width, int stages, int blocks, float dropout,
                              int num_classes) {
  sd_nn_model *m = NULL;
  SD_CHECK(sd_nn_model_create(&m));
  int x = conv_bn(m, 0, width, 3, 1, 1);
  int ch = width;
  for (int s = 0; s < stages; s++) {
    for (int b = 0; b < blocks; b++) {
      int stride = (s > 0 && b == 0) ? 2 : 1;
      int och = (s > 0 && b == 0) ? ch * 2 : ch;
      int y = conv_bn(m, x, och, 3, stride, 1);
      y = conv_bn(m, y, och, 3, 1, 0);
      int skip = x;
      if (stride != 1 || och != ch) skip = conv_bn(m, x, och, 1, stride, 0);
      x = sd_nn_add_add(m, y, skip);
      x = sd_nn_add_relu(m, x);
      ch = och;
    }
  }
  x = sd_nn_add_global_avgpool(m, x);
  if (dropout > 0) x = sd_nn_add_dropout(m, x, dropout);
  x = sd_nn_add_dense(m, x, num_classes);
  if (x >= 0) {
    sd_status st = sd_nn_layer_set_name(m, x, "head");
    if (st != SD_OK) {
      sd_nn_model_destroy(&m);
      return st;
    }
  }
  if (m->build_status != SD_OK) {
    sd_status st = m->build_status;
    sd_nn_model_destroy(&m);
    return st;
  }
  *out = m;
  return SD_OK;
}

/* ---- evaluation -------------------------------------------------------------------------- */

/* input channels per image (data built by hand may leave the field 0: one channel) */
static int data_channels(const sd_train_data *d) { return d->channels > 1 ? d->channels : 1; }

sd_status sd_train_evaluate(MPI_Comm comm, sd_nn_model *m, const sd_train_data *d, float *out,
                            double *loss_sum, int64_t *correct) {
  int64_t nb = d->n > 0 ? (d->n + m->batch - 1) / m->batch : 0;
  size_t npx = (size_t)d->h * d->w;
  double loss = 0;
  int64_t good = 0;
  sd_status st = SD_OK;
  sd_nn_loss_opts lo;
  memset(&lo, 0, sizeof lo);
  for (int64_t b = 0; b < nb && st == SD_OK; b++) {
    int64_t first = b * m->batch;
    int n = (int)(d->n - first < m->batch ? d->n - first : m->batch);
    st = sd_nn_model_forward(m, d->images + (size_t)first * npx * data_channels(d), n,
                             SD_NN_MODE_EVAL);
    if (st != SD_OK) break;
    sd_nn_tensor *o = sd_nn_model_output(m);
    size_t per = sd_nn_tensor_sample_size(o);
    if (out) memcpy(out + (size_t)first * per, o->data, (size_t)n * per * sizeof(float));
    if (o->h == 1 && o->w == 1) {
      double l = 0;
      st = sd_nn_loss_softmax_ce(o, d->labels + first, &lo, &l);
      loss += l * n; /* mean over the batch without weights */
      for (int i = 0; i < n; i++) {
        const float *z = o->data + (size_t)i * per;
        int best = 0;
        for (int c = 1; c < o->c; c++)
          if (z[c] > z[best]) best = c;
        good += best == d->labels[first + i];
      }
    }
  }
  double v[2] = {loss, (double)good};
  sd_status a = sd_par_agree(comm, st);
  if (a != SD_OK) return a;
  SD_CHECK(sd_par_allreduce_sum_double(comm, v, 2));
  if (loss_sum) *loss_sum = v[0];
  if (correct) *correct = (int64_t)v[1];
  return SD_OK;
}

sd_status sd_train_evaluate_segment(MPI_Comm comm, sd_nn_model *m, const sd_train_data *d,
                                    const float *class_weights, double dice_weight, double *loss,
                                    double *pixel_acc) {
  const int C = sd_nn_model_output(m)->c;
  const size_t npx = (size_t)d->h * d->w;
  const int64_t nb = d->n > 0 ? (d->n + m->batch - 1) / m->batch : 0;
  /* sd_nn_loss_sums layout: CE numerator and denominator, correct, pixels, Dice I, P, G */
  double *sums = sd_calloc(4 + 3 * (size_t)C, sizeof *sums, "validation sums");
  int32_t *target = sd_malloc((size_t)m->batch * npx, sizeof *target, "validation targets");
  sd_status st = sums && target ? SD_OK : SD_ERR_NOMEM;
  if (st == SD_OK && d->n > 0 && !d->masks)
    st = SD_ERROR(SD_ERR_INTERNAL, "segmentation validation without masks");
  for (int64_t b = 0; b < nb && st == SD_OK; b++) {
    int64_t first = b * m->batch;
    int n = (int)(d->n - first < m->batch ? d->n - first : m->batch);
    for (size_t p = 0; p < (size_t)n * npx; p++)
      target[p] = d->masks[(size_t)first * npx + p];
    st = sd_nn_model_forward(m, d->images + (size_t)first * npx * data_channels(d), n,
                             SD_NN_MODE_EVAL);
    if (st == SD_OK)
      st = sd_nn_loss_sums(sd_nn_model_output(m), target, class_weights, sums);
  }
  free(target);
  st = sd_par_agree(comm, st);
  if (st == SD_OK)
    st = sd_par_allreduce_sum_double(comm, sums, 4 + 3 * C);
  if (st == SD_OK) {
    double ce = sums[1] > 0 ? sums[0] / sums[1] : NAN;
    double dice = dice_weight > 0 ? sd_nn_dice_from_sums(C, sums + 4, class_weights, 1, 0) : 0;
    if (loss)
      *loss = ce + dice_weight * dice;
    if (pixel_acc)
      *pixel_acc = sums[3] > 0 ? sums[2] / sums[3] : NAN;
  }
  free(sums);
  return st;
}

/* ---- training ---------------------------------------------------------------------------- */

/* Segmentation: replaces sample (img, mask) of local image li by a 2x2 mosaic of it and three
 * other images of the same shard (local first..first+count), preferring other classes; every
 * input channel gets the same windows. */
static void mosaic_sample(const sd_train_data *d, int64_t first, int64_t count, int64_t li,
                          sd_rng *r, float *img, uint8_t *mask, float *scratch, uint8_t *mscratch) {
  size_t npx = (size_t)d->h * d->w;
  const int ch = data_channels(d);
  const float *src[4];
  const uint8_t *msk[4];
  int32_t used[4];
  src[0] = img;
  msk[0] = mask;
  used[0] = d->labels[li];
  for (int q = 1; q < 4; q++) {
    int64_t pick = first + (int64_t)sd_rng_below(r, (uint64_t)count);
    for (int tries = 0; tries < 4; tries++) {
      int dup = 0;
      for (int u = 0; u < q; u++) dup |= d->labels[pick] == used[u];
      if (!dup) break;
      pick = first + (int64_t)sd_rng_below(r, (uint64_t)count);
    }
    used[q] = d->labels[pick];
    src[q] = d->images + (size_t)pick * npx * ch;
    msk[q] = d->masks + (size_t)pick * npx;
  }
  /* the windows depend only on the masks and the draws: each channel repeats the draws */
  sd_rng r0 = *r;
  for (int c = 0; c < ch; c++) {
    const float *sc[4];
    for (int q = 0; q < 4; q++) sc[q] = src[q] + (size_t)c * npx;
    *r = r0;
    sd_seg_mosaic(sc, msk, d->h, r, scratch, mscratch);
    memcpy(img + (size_t)c * npx, scratch, npx * sizeof *img);
  }
  memcpy(mask, mscratch, npx);
}

/* Sample order of a shard in an epoch: a permutation keyed by (seed, shard, epoch). */
static void shard_order(int *perm, int64_t n, uint64_t seed, int shard, int epoch) {
  for (int64_t i = 0; i < n; i++) perm[i] = (int)i;
  sd_rng r;
  sd_rng_init(&r, seed, ((uint64_t)shard << 32) | (uint64_t)epoch, SD_RNG_STREAM_SPLIT);
  sd_rng_shuffle_int(&r, perm, (int)n);
}

static void fmt_eta(char *buf, size_t n, double s) {
  if (s < 60) snprintf(buf, n, "%.0fs", s);
  else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
  else snprintf(buf, n, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

sd_status sd_train_run(MPI_Comm comm, sd_nn_model *m, const sd_train_data *train,
                       const sd_train_data *val, const sd_train_opts *opts, sd_ckpt_state *state,
                       sd_train_epoch_log *log, int max_log, int *nlog) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  if (nlog) *nlog = 0;
  const int S = train->num_shards;
  if (opts->batch % S != 0)
    return SD_ERROR(SD_ERR_CONFIG, "batch %d must be a multiple of the %d data shards", opts->batch, S);
  int per_shard = opts->batch / S;
  if (train->min_shard < 1)
    return SD_ERROR(SD_ERR_ARG, "too few training images (%lld) for %d data shards",
                    (long long)train->n_global, S);
  if (train->min_shard < per_shard) {
    sd_log_warn("only %lld training images per data shard: batch lowered from %d to %lld",
                (long long)train->min_shard, opts->batch, (long long)train->min_shard * S);
    per_shard = (int)train->min_shard;
  }
  const int64_t steps_per_epoch = train->min_shard / per_shard;
  const int local_batch = per_shard * train->num_local;
  if (local_batch > m->batch)
    return SD_ERROR(SD_ERR_INTERNAL, "model compiled for batch %d < local batch %d", m->batch, local_batch);
  const int h = train->h, w = train->w;
  const size_t npx = (size_t)h * w;
  const int C = state->num_classes;
  const int ch = data_channels(train);
  if (m->in_c != ch || (val && val->n_global > 0 && data_channels(val) != ch))
    return SD_ERROR(SD_ERR_INTERNAL, "model of %d input channels, data of %d", m->in_c, ch);

  /* class weights (training part, all ranks) */
  float weights[SD_CKPT_MAX_CLASSES];
  double counts[SD_CKPT_MAX_CLASSES] = {0};
  const int seg = opts->task == SD_TRAIN_TASK_SEGMENT;
  for (int64_t i = 0; i < train->n; i++) {
    if (seg) /* segmentation: pixel frequencies of the mask classes */
      for (size_t p = 0; p < (size_t)train->h * train->w; p++) {
        uint8_t v = train->masks[(size_t)i * train->h * train->w + p];
        if (v < C) counts[v]++;
      }
    else if (train->labels[i] >= 0 && train->labels[i] < C) counts[train->labels[i]]++;
  }
  SD_CHECK(sd_par_allreduce_sum_double(comm, counts, C));
  double tot = 0;
  for (int c = 0; c < C; c++) tot += counts[c];
  for (int c = 0; c < C; c++) {
    weights[c] = (opts->balanced_weights && counts[c] > 0) ? (float)(tot / (C * counts[c])) : 1.0f;
    if (seg) weights[c] = sqrtf(weights[c]); /* pixel classes: damped inverse frequency */
  }

  sd_nn_schedule sched;
  memset(&sched, 0, sizeof sched);
  sched.kind = opts->schedule;
  sched.lr = state->optim.lr;
  sched.min_lr = state->optim.lr * opts->min_lr_factor;
  sched.gamma = 0.1f;
  sched.total = (int64_t)opts->epochs * steps_per_epoch;
  sched.step_size = sched.total / 3 > 0 ? sched.total / 3 : 1;
  sched.warmup = (int64_t)(opts->warmup_epochs * (double)steps_per_epoch);

  /* buffers allocated once */
  int **perm = sd_calloc((size_t)train->num_local + 1, sizeof *perm, "shard orders");
  float *xb = sd_malloc((size_t)local_batch * npx * ch, sizeof *xb, "batch images");
  /* dropout masks keyed by (step, shard, position in the shard's part of the batch), so P ranks
   * x batch B/P draw the masks of 1 rank x batch B */
  uint64_t *dkeys = sd_malloc((size_t)local_batch, sizeof *dkeys, "dropout keys");
  int32_t *yb = sd_malloc((size_t)local_batch * (opts->task == SD_TRAIN_TASK_SEGMENT ? npx : 1),
                          sizeof *yb, "batch targets");
  float *scratch = sd_malloc(npx, sizeof *scratch, "augment scratch");
  uint8_t *mb = opts->task == SD_TRAIN_TASK_SEGMENT ? sd_malloc(npx, 1, "mask") : NULL;
  uint8_t *mscratch = opts->task == SD_TRAIN_TASK_SEGMENT ? sd_malloc(npx, 1, "mask scratch") : NULL;
  sd_status st = (perm && xb && dkeys && yb && scratch &&
                  (opts->task != SD_TRAIN_TASK_SEGMENT || (mb && mscratch)))
                     ? SD_OK
                     : SD_ERR_NOMEM;
  for (int j = 0; st == SD_OK && j < train->num_local; j++) {
    perm[j] = sd_malloc((size_t)train->shard_count[j] + 1, sizeof **perm, "shard order");
    if (!perm[j]) st = SD_ERR_NOMEM;
  }
  sd_nn_early_stop es;
  memset(&es, 0, sizeof es);
  if (st == SD_OK && opts->patience > 0) st = sd_nn_early_stop_init(&es, m, opts->patience, 1e-4);
  st = sd_par_agree(comm, st);
  /* resuming: early stopping's best epoch, its count and its weights come from the checkpoint */
  if (st == SD_OK && opts->patience > 0 && state->epoch > 0 && state->best_epoch > 0 &&
      opts->checkpoint && *opts->checkpoint) {
    int found = 0;
    st = sd_ckpt_load_best(comm, opts->checkpoint, m, es.best_params, es.best_buffers, &found);
    if (st == SD_OK && found) {
      es.best = state->best_val_loss;
      es.best_epoch = state->best_epoch;
      es.bad_epochs = state->bad_epochs;
    } else if (st == SD_OK) {
      sd_log_warn("%s holds no best weights (an older checkpoint): early stopping restarts",
                  opts->checkpoint);
    }
  }

  MPI_Comm comm_copy = comm;
  sd_nn_model_set_reduce(m, size > 1 ? sd_train_reduce_sum : NULL, &comm_copy);
  grad_overlap ov;
  memset(&ov, 0, sizeof ov);
  sd_nn_model_set_grad_ready(m, size > 1 ? overlap_ready : NULL, &ov);
  if (size > 1)
    sd_log_debug("gradient allreduce: %zu floats in buckets of about %zu, overlapped with backward",
                 m->num_params,
                 (m->num_params + SD_TRAIN_GRAD_BUCKETS - 1) / SD_TRAIN_GRAD_BUCKETS);
  sd_nn_loss_opts lo;
  memset(&lo, 0, sizeof lo);
  lo.class_weights = weights;
  lo.label_smoothing = opts->label_smoothing;
  lo.reduce = size > 1 ? sd_train_reduce_sum : NULL;
  lo.reduce_ctx = &comm_copy;

  int start_epoch = state->epoch;
  int64_t step = state->step;
  if (step < (int64_t)start_epoch * steps_per_epoch) step = (int64_t)start_epoch * steps_per_epoch;
  double t_run = sd_time_now();
  int64_t steps_run = 0;
  int interrupted = 0;
  char eta[32];

  for (int epoch = start_epoch; st == SD_OK && epoch < opts->epochs && !interrupted; epoch++) {
    double t_epoch = sd_time_now();
    for (int j = 0; j < train->num_local; j++)
      shard_order(perm[j], train->shard_count[j], state->seed, train->shard_id[j], epoch);
    double loss_acc = 0;
    int64_t loss_steps = 0;
    int64_t first_step = step - (int64_t)epoch * steps_per_epoch; /* > 0 when resuming mid-epoch */
    for (int64_t k = first_step; st == SD_OK && k < steps_per_epoch; k++) {
      /* assemble this rank's part of the global batch: per_shard samples of each local shard */
      double t = sd_profile_phase_begin();
      int bi = 0;
      for (int j = 0; j < train->num_local; j++) {
        sd_rng arng, mrng;
        sd_rng_init(&arng, state->seed, ((uint64_t)step << 12) | (uint64_t)train->shard_id[j],
                    SD_RNG_STREAM_AUGMENT);
        sd_rng_init(&mrng, state->seed, ((uint64_t)step << 12) | (uint64_t)train->shard_id[j],
                    SD_RNG_STREAM_MOSAIC);
        for (int q = 0; q < per_shard; q++, bi++) {
          int64_t li = train->shard_first[j] + perm[j][k * per_shard + q];
          dkeys[bi] = sd_rng_mix64(((uint64_t)step << 24) ^ ((uint64_t)train->shard_id[j] << 12) ^
                                   (uint64_t)q);
          float *dst = xb + (size_t)bi * npx * ch;
          memcpy(dst, train->images + (size_t)li * npx * ch, npx * ch * sizeof *dst);
          if (opts->task == SD_TRAIN_TASK_SEGMENT) {
            memcpy(mb, train->masks + (size_t)li * npx, npx);
            if (opts->mosaic_prob > 0 && sd_rng_uniform(&mrng) < opts->mosaic_prob)
              mosaic_sample(train, train->shard_first[j], train->shard_count[j], li, &mrng, dst, mb,
                            scratch, mscratch);
            if (opts->augment)
              sd_augment_apply_channels(&opts->aug, &arng, dst, ch, h, scratch, mb, mscratch);
            for (size_t p = 0; p < npx; p++) yb[(size_t)bi * npx + p] = mb[p];
          } else {
            if (opts->augment) sd_augment_apply(&opts->aug, &arng, dst, h, scratch, NULL, NULL);
            yb[bi] = train->labels[li];
          }
        }
      }
      sd_nn_model_set_dropout_keys(m, state->seed, dkeys);
      sd_nn_model_zero_grad(m);
      st = sd_nn_model_forward(m, xb, local_batch, SD_NN_MODE_TRAIN);
      double loss = 0;
      if (st == SD_OK) {
        lo.scale = 0;
        lo.accumulate = 0;
        st = sd_nn_loss_softmax_ce(sd_nn_model_output(m), yb, &lo, &loss);
        if (st == SD_OK && opts->task == SD_TRAIN_TASK_SEGMENT && opts->dice_weight > 0) {
          sd_nn_loss_opts ld = lo;
          double dl = 0;
          ld.label_smoothing = 0;
          ld.accumulate = 1;
          ld.scale = opts->dice_weight;
          ld.dice_skip_background = 1;
          st = sd_nn_loss_dice(sd_nn_model_output(m), yb, &ld, &dl);
          loss += dl / (double)size; /* Dice is the global value on every rank */
        }
      }
      if (size > 1)
        overlap_begin(&ov, comm, m);
      if (st == SD_OK) st = sd_nn_model_backward(m);
      sd_profile_phase_end(SD_PHASE_COMPUTE, t);
      /* the gradient buckets started during backward (the last one now), plus the loss and
       * the stop flag */
      t = sd_profile_phase_begin();
      if (st == SD_OK && size > 1)
        st = overlap_finish(&ov);
      double red[2] = {loss, (double)sd_stop_flag};
      if (st == SD_OK && size > 1) {
        int rc = MPI_Allreduce(MPI_IN_PLACE, red, 2, MPI_DOUBLE, MPI_SUM, comm);
        st = sd_par_check(rc, "allreduce of the loss");
      }
      sd_profile_phase_end(SD_PHASE_COMM, t);
      st = sd_par_agree(comm, st);
      if (st != SD_OK) break;
      if (!isfinite(red[0])) {
        st = SD_ERROR(SD_ERR_ARG,
                      "training diverged at step %lld (loss is %g); lower the learning rate",
                      (long long)step, red[0]);
        break;
      }
      t = sd_profile_phase_begin();
      st = sd_nn_optim_step(m, &state->optim, sd_nn_schedule_lr(&sched, step), NULL);
      sd_profile_phase_end(SD_PHASE_COMPUTE, t);
      loss_acc += red[0];
      loss_steps++;
      step++;
      steps_run++;
      state->step = step;
      if ((opts->max_steps > 0 && step >= opts->max_steps) || red[1] > 0) {
        interrupted = red[1] > 0 ? 1 : 2;
        break;
      }
    }
    if (st != SD_OK) break;
    int epoch_done = step >= (int64_t)(epoch + 1) * steps_per_epoch;
    if (epoch_done) state->epoch = epoch + 1;
    /* validation */
    double vloss = NAN, vacc = NAN;
    if (epoch_done && val && val->n_global > 0) {
      if (seg) {
        st = sd_train_evaluate_segment(comm, m, val, weights, opts->dice_weight, &vloss, &vacc);
      } else {
        double ls = 0;
        int64_t good = 0;
        st = sd_train_evaluate(comm, m, val, NULL, &ls, &good);
        vloss = ls / (double)val->n_global;
        vacc = (double)good / (double)val->n_global;
      }
      if (st != SD_OK)
        break;
    }
    double secs = sd_time_now() - t_epoch;
    double ips = secs > 0 ? (double)loss_steps * per_shard * S / secs : 0;
    double per_step = steps_run > 0 ? (sd_time_now() - t_run) / (double)steps_run : 0;
    fmt_eta(eta, sizeof eta,
            per_step * (double)((int64_t)opts->epochs * steps_per_epoch - step));
    double mean_loss = loss_steps ? loss_acc / (double)loss_steps : NAN;
    if (epoch_done)
      sd_log_info("epoch %d/%d  loss %.4f  val_loss %.4f  val_acc %.4f  %.0f img/s  lr %.2g  eta %s",
                  epoch + 1, opts->epochs, mean_loss, vloss, vacc, ips,
                  (double)sd_nn_schedule_lr(&sched, step), eta);
    if (log && nlog && *nlog < max_log && epoch_done) {
      sd_train_epoch_log *e = &log[(*nlog)++];
      e->epoch = epoch + 1;
      e->loss = mean_loss;
      e->val_loss = vloss;
      e->val_acc = vacc;
      e->images_per_s = ips;
      e->seconds = secs;
    }
    int stop_early = 0;
    if (epoch_done && opts->patience > 0 && isfinite(vloss)) {
      stop_early = sd_nn_early_stop_update(&es, m, vloss, epoch + 1);
      state->best_val_loss = es.best;
      state->best_epoch = es.best_epoch;
      state->bad_epochs = es.bad_epochs;
      if (stop_early)
        sd_log_info("early stopping: no validation improvement for %d epochs (best epoch %d)",
                    opts->patience, es.best_epoch);
    }
    int want_ckpt = opts->checkpoint && *opts->checkpoint &&
                    (interrupted || (epoch_done && opts->checkpoint_every > 0 &&
                                     state->epoch % opts->checkpoint_every == 0));
    if (want_ckpt) {
      double t = sd_profile_phase_begin();
      if (opts->patience > 0 && es.best_epoch > 0) {
        state->best_params = es.best_params;
        state->best_buffers = es.best_buffers;
      }
      st = sd_ckpt_save(comm, opts->checkpoint, m, state, opts->prov);
      state->best_params = state->best_buffers = NULL;
      sd_profile_phase_end(SD_PHASE_IO, t);
      if (st != SD_OK) break;
      sd_log_debug("checkpoint written to %s (epoch %d, step %lld)", opts->checkpoint, state->epoch,
                   (long long)state->step);
    }
    if (stop_early) break;
  }
  if (st == SD_OK && opts->patience > 0 && es.best_epoch > 0 && interrupted != 1) {
    st = sd_nn_early_stop_restore(&es, m);
    sd_log_info("restored the weights of epoch %d (validation loss %.4f)", es.best_epoch, es.best);
  }
  sd_nn_model_set_reduce(m, NULL, NULL);
  sd_nn_model_set_grad_ready(m, NULL, NULL);
  sd_nn_early_stop_free(&es);
  for (int j = 0; perm && j < train->num_local; j++) free(perm[j]);
  free(perm);
  sd_nn_model_set_dropout_keys(m, 0, NULL);
  free(dkeys);
  free(xb);
  free(yb);
  free(scratch);
  free(mb);
  free(mscratch);
  if (st == SD_OK && interrupted == 1) {
    sd_log_warn("stop signal received: checkpoint written to %s at step %lld; resume with --resume",
                opts->checkpoint && *opts->checkpoint ? opts->checkpoint : "(none)",
                (long long)state->step);
    return SD_ERROR(SD_ERR_INTERRUPTED, "interrupted by a signal at step %lld; checkpoint %s",
                    (long long)state->step, opts->checkpoint ? opts->checkpoint : "");
  }
  return st;
}
