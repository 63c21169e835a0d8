/* classify_common.c - split, normalisation, options and metrics for the classifier commands. */
#include "classify_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stemdefect/log.h"
#include "stemdefect/par.h"
#include "stemdefect/split.h"

sd_status sd_classify_normalization(MPI_Comm comm, const sd_config *cfg, sd_stack *stack,
                                    int *robust) {
  const char *mode = sd_config_string(cfg, "classifier.normalize");
  if (!strcmp(mode, "robust")) {
    *robust = 1;
    return SD_OK;
  }
  if (!strcmp(mode, "none")) {
    *robust = 0;
    return SD_OK;
  }
  char *attr = NULL;
  SD_CHECK(sd_stack_get_image_attribute(stack, "consumer_normalization", &attr));
  /* stacks from other tools carry no recommendation: normalise (the safe choice) */
  *robust = !attr || strcmp(attr, "none") != 0;
  free(attr);
  (void)comm;
  return SD_OK;
}

sd_status sd_classify_make_split(MPI_Comm comm, const sd_config *cfg, sd_stack *stack,
                                 sd_classify_split *split) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  const sd_stack_info *in = sd_stack_get_info(stack);
  int64_t n = in->n;
  memset(split, 0, sizeof *split);
  snprintf(split->kind, sizeof split->kind, "%s", sd_config_string(cfg, "classifier.split"));
  double fv = sd_config_float(cfg, "classifier.val_fraction");
  double ft = sd_config_float(cfg, "classifier.test_fraction");
  if (fv + ft >= 1.0)
    return SD_ERROR(SD_ERR_CONFIG, "classifier.val_fraction + classifier.test_fraction = %g leaves no training images (must be < 1)", fv + ft);
  uint64_t seed = (uint64_t)sd_config_int(cfg, "classifier.seed");
  int32_t *labels = sd_malloc((size_t)(n ? n : 1), sizeof *labels, "labels");
  int32_t *group = NULL;
  split->part = sd_malloc((size_t)(n ? n : 1), 1, "split");
  sd_status st = (labels && split->part) ? SD_OK : SD_ERR_NOMEM;
  st = sd_par_agree(comm, st);
  if (st == SD_OK) st = sd_stack_read(stack, 0, n, NULL, labels, NULL);
  for (int64_t i = 0; st == SD_OK && i < n; i++)
    if (labels[i] < 0 || labels[i] >= in->num_classes)
      st = SD_ERROR(SD_ERR_ARG, "image %lld has no class label (%d); the classifier needs labelled images", (long long)i, labels[i]);
  st = sd_par_agree(comm, st);
  if (st == SD_OK && !strcmp(split->kind, "grouped")) {
    /* near-copy groups on rank 0 from the raw images, broadcast */
    size_t npx = (size_t)in->height * in->width;
    float *img = rank == 0 ? sd_malloc((size_t)(n ? n : 1) * npx, sizeof *img, "images") : NULL;
    group = sd_malloc((size_t)(n ? n : 1), sizeof *group, "groups");
    st = (group && (rank != 0 || img)) ? SD_OK : SD_ERR_NOMEM;
    st = sd_par_agree(comm, st);
    if (st == SD_OK) st = sd_stack_read(stack, 0, rank == 0 ? n : 0, img, NULL, NULL);
    int ng = 0;
    if (st == SD_OK && rank == 0) {
      sd_nearcopy_params p = sd_nearcopy_params_default();
      sd_nearcopy_stats stats;
      st = sd_nearcopy_groups(img, labels, n, in->height, in->width, &p, group, &ng, &stats);
      if (st == SD_OK)
        sd_log_info("split: %d near-copy groups among %lld images (largest %d, %lld matching pairs, %.1f s)",
                    ng, (long long)n, stats.largest_group, (long long)stats.pairs_matched, stats.seconds);
    }
    free(img);
    st = sd_par_agree(comm, st);
    if (st == SD_OK) st = sd_par_check(MPI_Bcast(group, (int)n, MPI_INT32_T, 0, comm), "bcast groups");
    if (st == SD_OK) st = sd_par_check(MPI_Bcast(&ng, 1, MPI_INT, 0, comm), "bcast groups");
    split->ngroups = ng;
    if (st == SD_OK) st = sd_split_grouped(labels, group, n, in->num_classes, 1.0 - fv - ft, fv, seed, split->part);
  } else if (st == SD_OK) {
    st = sd_split_stratified(labels, n, in->num_classes, 1.0 - fv - ft, fv, seed, split->part);
  }
  /* label-efficiency studies: keep a stratified fraction of the training part (3 = unused) */
  double lf = sd_config_float(cfg, "classifier.label_fraction");
  if (st == SD_OK && lf < 1.0) {
    int64_t nt = 0;
    for (int64_t i = 0; i < n; i++) nt += split->part[i] == SD_SPLIT_PART_TRAIN;
    int32_t *sub = sd_malloc((size_t)(nt ? nt : 1), sizeof *sub, "labels");
    int8_t *keep = sd_malloc((size_t)(nt ? nt : 1), 1, "subset");
    if (!sub || !keep) st = SD_ERR_NOMEM;
    for (int64_t i = 0, k = 0; st == SD_OK && i < n; i++)
      if (split->part[i] == SD_SPLIT_PART_TRAIN) sub[k++] = labels[i];
    if (st == SD_OK) st = sd_split_stratified(sub, nt, in->num_classes, lf, 0.0, seed ^ 0x5eedULL, keep);
    for (int64_t i = 0, k = 0; st == SD_OK && i < n; i++)
      if (split->part[i] == SD_SPLIT_PART_TRAIN && keep[k++] != SD_SPLIT_PART_TRAIN) split->part[i] = 3;
    free(sub);
    free(keep);
  }
  free(labels);
  free(group);
  st = sd_par_agree(comm, st);
  if (st != SD_OK) {
    free(split->part);
    split->part = NULL;
  }
  return st;
}

void sd_classify_train_opts(const sd_config *cfg, const sd_app *app, sd_train_opts *o) {
  memset(o, 0, sizeof *o);
  o->task = SD_TRAIN_TASK_CLASSIFY;
  o->epochs = (int)sd_config_int(cfg, "classifier.epochs");
  o->batch = (int)sd_config_int(cfg, "classifier.batch");
  o->seed = (uint64_t)sd_config_int(cfg, "classifier.seed");
  const char *sch = sd_config_string(cfg, "classifier.schedule");
  o->schedule = !strcmp(sch, "cosine") ? SD_NN_SCHEDULE_COSINE
                : !strcmp(sch, "step") ? SD_NN_SCHEDULE_STEP
                                       : SD_NN_SCHEDULE_CONSTANT;
  o->warmup_epochs = sd_config_float(cfg, "classifier.warmup_epochs");
  o->min_lr_factor = 0.01f;
  o->label_smoothing = (float)sd_config_float(cfg, "classifier.label_smoothing");
  o->balanced_weights = !strcmp(sd_config_string(cfg, "classifier.class_weights"), "balanced");
  o->patience = (int)sd_config_int(cfg, "classifier.patience");
  o->augment = sd_config_bool(cfg, "classifier.augment");
  o->aug.symmetries = 1;
  o->aug.max_shift = (int)sd_config_int(cfg, "classifier.max_shift");
  o->aug.gain_jitter = sd_config_float(cfg, "classifier.gain_jitter");
  o->aug.offset_jitter = sd_config_float(cfg, "classifier.offset_jitter");
  o->aug.noise_sigma_max = sd_config_float(cfg, "classifier.noise_sigma");
  o->checkpoint_every = (int)sd_config_int(cfg, "classifier.checkpoint_every");
  o->max_steps = (int)sd_config_int(cfg, "classifier.max_steps");
  o->prov = &app->prov;
}

void sd_classify_metrics_compute(const int32_t *truth, const int32_t *pred, int64_t n, int C,
                                 sd_classify_metrics *m) {
  memset(m, 0, sizeof *m);
  m->num_classes = C;
  m->n = n;
  int64_t good = 0;
  for (int64_t i = 0; i < n; i++) {
    if (truth[i] < 0 || truth[i] >= C || pred[i] < 0 || pred[i] >= C) continue;
    m->confusion[truth[i]][pred[i]]++;
    good += truth[i] == pred[i];
  }
  m->accuracy = n ? (double)good / (double)n : 0;
  double f1sum = 0;
  int present = 0;
  for (int c = 0; c < C; c++) {
    int64_t tp = m->confusion[c][c], col = 0, row = 0;
    for (int k = 0; k < C; k++) {
      col += m->confusion[k][c];
      row += m->confusion[c][k];
    }
    m->support[c] = row;
    m->precision[c] = col ? (double)tp / (double)col : 0;
    m->recall[c] = row ? (double)tp / (double)row : 0;
    double pr = m->precision[c] + m->recall[c];
    m->f1[c] = pr > 0 ? 2 * m->precision[c] * m->recall[c] / pr : 0;
    if (row > 0) {
      f1sum += m->f1[c];
      present++;
    }
  }
  m->macro_f1 = present ? f1sum / present : 0;
}
