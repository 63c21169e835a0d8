/* train.h - data-parallel training over MPI on the nn engine.
 *
 * Data: the training images are cut into S data shards (contiguous blocks of the sorted
 * training indices); shard s lives on rank s % P, which reads only the stack ranges its
 * shards cover (parallel HDF5). Each step, every shard contributes B/S samples to the global
 * batch B: rank r runs forward/backward on the samples of its shards, batch-norm statistics
 * and the loss normaliser are summed over ranks, gradients are summed with one
 * MPI_Allreduce on the gradient arena, and every rank takes the same optimiser step. The
 * sample order of shard s in epoch e and the augmentation of step t are drawn from streams
 * keyed by (seed, s, e) and (seed, t, s): nothing depends on which rank holds a shard, so
 * P ranks with the same S reproduce 1 rank to float tolerance, and a run resumed from a
 * checkpoint (written at epoch ends, and on SIGTERM / SIGUSR1 after the current step)
 * continues bitwise identically.
 */
#ifndef STEMDEFECT_TRAIN_H
#define STEMDEFECT_TRAIN_H

#include <mpi.h>
#include <stdint.h>

#include "stemdefect/augment.h"
#include "stemdefect/checkpoint.h"
#include "stemdefect/nn.h"
#include "stemdefect/stack.h"
#include "stemdefect/status.h"

/* Images of one part (train, validation or test) held by this rank, normalised. */
typedef struct sd_train_data {
  int h, w;
  int channels;       /* input channels per image (1 after loading; 2 with the deviation) */
  int64_t n;          /* images held by this rank */
  int64_t n_global;   /* images of the part over all ranks */
  float *images;      /* (n, channels, h, w): the normalised image [, its lattice deviation] */
  int32_t *labels;    /* (n) class */
  uint8_t *masks;     /* (n, h, w) per-pixel class, or NULL */
  int64_t *index;     /* (n) stack index of each image */
  /* training parts only: shards owned by this rank */
  int num_shards;     /* S (global) */
  int num_local;      /* shards on this rank */
  int *shard_id;      /* [num_local] global shard ids, increasing */
  int64_t *shard_first; /* [num_local] first local image of the shard */
  int64_t *shard_count; /* [num_local] */
  int64_t min_shard;  /* smallest shard size over all shards (sets the epoch length) */
} sd_train_data;

/* Collective. Loads the images of stack whose part[i] == which (part has one entry per image,
 * the same on all ranks). shards > 0: training layout with S = shards data shards (S >= P);
 * shards == 0: an even contiguous split over ranks (validation, test, inference).
 * normalize_robust: apply the robust z-score per image. with_masks: also read /masks. */
sd_status sd_train_data_load(MPI_Comm comm, sd_stack *stack, const int8_t *part, int8_t which,
                             int shards, int normalize_robust, int with_masks,
                             sd_train_data *out);
void sd_train_data_free(sd_train_data *d);

typedef enum sd_train_task { SD_TRAIN_TASK_CLASSIFY = 0, SD_TRAIN_TASK_SEGMENT = 1 } sd_train_task;

typedef struct sd_train_opts {
  sd_train_task task;
  int epochs;
  int batch;              /* global batch B (a multiple of S) */
  uint64_t seed;
  sd_nn_optim optim;
  sd_nn_schedule_kind schedule;
  double warmup_epochs;
  float min_lr_factor;    /* cosine floor as a fraction of lr */
  float label_smoothing;
  int balanced_weights;   /* class weights ~ 1 / frequency (training set); segmentation:
                             sqrt(1 / pixel frequency of the mask classes) */
  float dice_weight;      /* segmentation: loss = CE + dice_weight * Dice */
  float mosaic_prob;      /* segmentation: probability that a sample is replaced by a 2x2
                             mosaic of defect-centred half-size windows of 4 shard samples
                             (of different classes where possible; sd_seg_mosaic) */
  int patience;           /* early stopping (epochs, 0 = off); restores the best weights */
  int augment;
  sd_augment_params aug;
  const char *checkpoint; /* checkpoint path ("" = none) */
  int checkpoint_every;   /* epochs */
  int max_steps;          /* stop after this many steps in total (tests; 0 = no limit) */
  const sd_provenance *prov;
} sd_train_opts;

/* Per-epoch record. */
typedef struct sd_train_epoch_log {
  int epoch;
  double loss, val_loss, val_acc, images_per_s, seconds;
} sd_train_epoch_log;

/* Collective. Trains m (compiled with batch >= the largest per-rank batch, parameters
 * identical on all ranks) on train, validating on val (may hold 0 images). state carries the
 * class names and normalisation, and on resume the epoch/step to continue from; it is
 * updated as training proceeds. Returns SD_ERR_INTERRUPTED after writing a checkpoint when
 * SIGTERM or SIGUSR1 arrived. log (may be NULL) receives up to max_log epochs. */
sd_status sd_train_run(MPI_Comm comm, sd_nn_model *m, const sd_train_data *train,
                       const sd_train_data *val, const sd_train_opts *opts, sd_ckpt_state *state,
                       sd_train_epoch_log *log, int max_log, int *nlog);

/* Installs SIGTERM/SIGUSR1 handlers that ask sd_train_run to checkpoint and stop. */
void sd_train_install_signal_handlers(void);
/* 1 when a stop signal arrived (this process). */
int sd_train_stop_requested(void);

/* Collective. Runs m in eval mode over d in batches of at most m->batch; writes the output
 * (n, C, h, w) of every local image into out (may be NULL) and returns the summed
 * cross-entropy and correct count (classification) over all ranks. */
sd_status sd_train_evaluate(MPI_Comm comm, sd_nn_model *m, const sd_train_data *d, float *out,
                            double *loss_sum, int64_t *correct);

/* Collective. The segmentation objective of training on the whole part d (eval mode, batches
 * of at most m->batch): class-weighted pixel cross-entropy sum w_y (-log p_y) / sum w_y plus
 * dice_weight x the soft Dice loss over the defect classes (weights class_weights [C], may be
 * NULL), every sum taken over all pixels of all images on all ranks, so the value depends on
 * neither the batch size nor the rank count. *pixel_acc: fraction of pixels whose arg-max class
 * is the mask class. d->masks must be set. */
sd_status sd_train_evaluate_segment(MPI_Comm comm, sd_nn_model *m, const sd_train_data *d,
                                    const float *class_weights, double dice_weight, double *loss,
                                    double *pixel_acc);

/* The classifier: a compact residual CNN for (1, H, W) input: stem conv3x3(width)-BN-ReLU, then
 * `stages` stages of `blocks` residual blocks (conv3x3-BN-ReLU-conv3x3-BN + identity or 1x1
 * projection, ReLU), channels doubling and resolution halving (stride 2) from stage 2 on,
 * global average pooling, dropout, dense to num_classes. The last layer is named "head". */
sd_status sd_classifier_build(sd_nn_model **m, int width, int stages, int blocks, float dropout,
                              int num_classes);

/* A stack-level sanity measure used by the report and tests: per-class counts. */

/* MPI hook for sd_nn_reduce_fn: sums doubles over the communicator passed as ctx. */
sd_status sd_train_reduce_sum(void *ctx, double *buf, int n);

#endif
