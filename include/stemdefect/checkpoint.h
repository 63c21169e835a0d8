/* checkpoint.h - model files and training checkpoints in HDF5.
 *
 * One format for both: a trained model (what `--init`, `evaluate`, `predict` and `segment`
 * read) is a checkpoint whose optimiser state may be ignored. Layout:
 *   /model        attrs architecture (sd_nn_model_describe text), task ("classify" |
 *                 "segment"), input_channels, input_height, input_width, normalization
 *                 ("robust_zscore" | "none"), class_names (string array)
 *   /params/<name>   float32 with the tensor's shape ("conv0.weight" [16,1,3,3], ...)
 *   /buffers/<name>  float32 (batch-norm running statistics)
 *   /optimizer    attrs kind, lr, momentum, nesterov, beta1, beta2, eps, weight_decay,
 *                 clip_norm, step; dataset state float32 [2*num_params] (arena layout)
 *   /training     attrs epoch, step, best_val_loss, best_epoch, finished (0/1), seed,
 *                 data_shards; dataset rng uint64 [k,4] (one xoshiro state per data shard)
 *   root          provenance attributes (program, version, git_commit, config, ...)
 *                 dataset split int8 [N] with attrs kind, data (the split of the stack)
 * Written by rank 0 to "<path>.tmp-<pid>" and renamed (atomic); read by every rank.
 */
#ifndef STEMDEFECT_CHECKPOINT_H
#define STEMDEFECT_CHECKPOINT_H

#include <mpi.h>
#include <stdint.h>

#include "stemdefect/nn.h"
#include "stemdefect/rng.h"
#include "stemdefect/stack.h"
#include "stemdefect/status.h"

#define SD_CKPT_MAX_CLASSES 64
#define SD_CKPT_MAX_RNG 1024

typedef struct sd_ckpt_state {
  char task[16];          /* "classify" or "segment" */
  char normalization[32]; /* "robust_zscore" or "none" */
  int num_classes;
  char class_names[SD_CKPT_MAX_CLASSES][64];
  int epoch;              /* epochs completed */
  int64_t step;           /* optimiser steps taken */
  double best_val_loss;
  int best_epoch;
  int bad_epochs;         /* early stopping: epochs since the best one */
  /* early stopping's copy of the best weights: saved as /training/best_params and
   * /training/best_buffers (whole arenas) when non-NULL, so --resume keeps them; read back
   * with sd_ckpt_load_best */
  const float *best_params, *best_buffers;
  int finished;           /* 1: training ended normally (a model, not a mid-run checkpoint) */
  uint64_t seed;
  int num_rng;            /* data-shard RNG states saved */
  sd_rng rng[SD_CKPT_MAX_RNG];
  sd_nn_optim optim;
  int has_optimizer;      /* set by load: the file holds optimiser state */
  /* the train/validation/test split of the data stack (saved when split_n > 0) */
  char split_kind[16];    /* "stratified" or "grouped" */
  char data_path[1024];   /* the stack trained on */
  int64_t split_n;
  int8_t *split;          /* [split_n] 0 train, 1 validation, 2 test; owned by the caller on
                             save, allocated by load (free it) */
} sd_ckpt_state;

/* Collective on comm: reads /training/best_params and /training/best_buffers of path (written
 * when the state's best_params was set) into params [m->num_params] and buffers
 * [m->num_buffers]; *found = 0 (and nothing read) when the file has none. */
sd_status sd_ckpt_load_best(MPI_Comm comm, const char *path, const sd_nn_model *m,
                            float *params, float *buffers, int *found);

/* Collective on comm: rank 0 writes the model (parameters, buffers, optimiser state) and the
 * state to path atomically; the status is the same on all ranks. */
sd_status sd_ckpt_save(MPI_Comm comm, const char *path, const sd_nn_model *m,
                       const sd_ckpt_state *st, const sd_provenance *prov);

/* Collective on comm: every rank reads path. Builds the model from its architecture (not
 * compiled: *c, *h, *w receive the input shape); the parameters are loaded afterwards with
 * sd_ckpt_load_params once the caller compiled it (any batch size). state may be NULL. */
sd_status sd_ckpt_open_model(MPI_Comm comm, const char *path, sd_nn_model **m, int *c, int *h,
                             int *w, sd_ckpt_state *state);
/* Collective: loads parameters and buffers by name into a compiled model. With strict = 1
 * every model tensor must be in the file with the same shape; with strict = 0 tensors that
 * are missing or differ in shape are skipped (transfer learning: a new head) and counted in
 * *skipped. With optimizer = 1 also restores the optimiser arena (same architecture only). */
sd_status sd_ckpt_load_params(MPI_Comm comm, const char *path, sd_nn_model *m, int strict,
                              int optimizer, int *skipped);

#endif
