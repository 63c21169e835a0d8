/* classify_common.h - what train, evaluate and predict share for the classifier: the split,
 * the normalisation decision, training options from the configuration, metrics. */
#ifndef STEMDEFECT_CLASSIFY_COMMON_H
#define STEMDEFECT_CLASSIFY_COMMON_H

#include "app.h"
#include "stemdefect/train.h"

typedef struct sd_classify_split {
  char kind[16];  /* "stratified" | "grouped" */
  int8_t *part;   /* [n] 0 train, 1 validation, 2 test, 3 unused (label_fraction) */
  int ngroups;    /* grouped: number of near-copy groups */
} sd_classify_split;

/* Collective: decides whether images get the robust z-score (classifier.normalize, or the
 * stack's consumer_normalization attribute when auto). */
sd_status sd_classify_normalization(MPI_Comm comm, const sd_config *cfg, sd_stack *stack,
                                    int *robust);
/* Collective: the train/validation/test split of the stack (classifier.split, fractions,
 * seed); grouped splits find near-copies on rank 0 and broadcast the groups. */
sd_status sd_classify_make_split(MPI_Comm comm, const sd_config *cfg, sd_stack *stack,
                                 sd_classify_split *split);
/* Training options from the classifier section. */
void sd_classify_train_opts(const sd_config *cfg, const sd_app *app, sd_train_opts *o);

/* Metrics of predictions against labels: accuracy, macro-F1, per-class P/R/F1/support, the
 * confusion matrix [C][C] (rows true, columns predicted). */
typedef struct sd_classify_metrics {
  int num_classes;
  int64_t n;
  double accuracy, macro_f1;
  double precision[64], recall[64], f1[64];
  int64_t support[64];
  int64_t confusion[64][64];
} sd_classify_metrics;

void sd_classify_metrics_compute(const int32_t *truth, const int32_t *pred, int64_t n, int C,
                                 sd_classify_metrics *m);

#endif
