/* split.h - train/validation/test splits for labelled image stacks, and near-copy groups.
 *
 * Three pieces:
 *   1. sd_split_stratified: a seeded stratified split. Within each class the indices are
 *      shuffled with the (seed, 0, SD_RNG_STREAM_SPLIT) stream and cut at the fractions, so
 *      every class is represented proportionally in every part.
 *   2. sd_nearcopy_groups: groups of near-copies. Many real patches are crops of one region
 *      shifted by a few pixels; putting one in training and another in test leaks the answer.
 *      A shift-tolerant cross-correlation of the images themselves cannot find them: every
 *      pair of lattice patches matches, because the lattice is periodic. What near-copies
 *      share beyond the lattice is the noise and the defect at an integer offset, so each
 *      image (robust-normalised) is reduced to its residual:
 *        residual = periodic component (Moisan's periodic + smooth decomposition, which
 *                   removes the edge discontinuity) with its Bragg peaks (local maxima of |F|
 *                   above peak_factor x the median |F|, with a neighbourhood of peak_radius
 *                   bins), DC and the lowest frequencies removed, then whitened (every kept
 *                   frequency divided by the local mean magnitude);
 *      whitening is what makes it work on real data: the noise of STEM images is not white
 *      (scan-line streaks, correlated noise, leftovers of the lattice), and a few strong
 *      structured components dominate an unwhitened residual, so independent patches then
 *      correlate at 0.3-0.6; whitened, they stay below ~0.25 while shifted crops of one region
 *      give >= 0.9.
 *      Two images are near-copies when the normalised cross-correlation of their residuals,
 *      computed on the overlapping region at every integer offset |dx|, |dy| <= max_shift with
 *      at least min_overlap of the pixels overlapping, exceeds threshold somewhere. Matched
 *      pairs are joined with union-find (so groups are transitive closures). Correlations of
 *      all offsets come from one zero-padded FFT per pair (two pairs per complex transform).
 *   3. sd_split_grouped: a split that keeps each group in one part, stratified by the group's
 *      majority label.
 *
 * Labels: values in [0, num_classes) or -1 (unknown); unknown images form one extra stratum
 * in the splits. Parts are coded 0 = train, 1 = validation, 2 = test (sd_split_part).
 *
 * Example:
 *   sd_nearcopy_params p = sd_nearcopy_params_default();
 *   int32_t *group = ...;  // (n)
 *   int ngroups;
 *   SD_CHECK(sd_nearcopy_groups(images, labels, n, 64, 64, &p, group, &ngroups, NULL));
 *   SD_CHECK(sd_split_grouped(labels, group, n, num_classes, 0.7, 0.15, seed, part));
 *
 * Nothing here is collective or uses MPI: every rank that needs a split computes the same one
 * from the same inputs and seed. All functions are deterministic (no timing or thread effects).
 */
#ifndef STEMDEFECT_SPLIT_H
#define STEMDEFECT_SPLIT_H

#include <stdint.h>

#include "stemdefect/status.h"

typedef enum sd_split_part {
  SD_SPLIT_PART_TRAIN = 0,
  SD_SPLIT_PART_VAL = 1,
  SD_SPLIT_PART_TEST = 2
} sd_split_part;

/* Stratified split of n items. labels (n): in [0, num_classes) or -1. f_train, f_val >= 0 with
 * f_train + f_val <= 1; the test fraction is the rest. Per class of m items the part sizes are
 * round(f * m), adjusted so they sum to m and, when m >= 3, every part with a positive
 * fraction gets at least one item. Writes part (n): SD_SPLIT_PART_*. Same inputs and seed give
 * the same split. SD_ERR_ARG naming the value on bad fractions, a label out of range or a
 * NULL pointer. */
sd_status sd_split_stratified(const int32_t *labels, int64_t n, int num_classes, double f_train,
                              double f_val, uint64_t seed, int8_t *part);

/* Grouped split: every group (group ids in [0, ngroups), any values >= 0 accepted) goes whole
 * into one part. A group's stratum is its majority label (ties: the smaller label; -1 only
 * when all its members are unknown). Within a stratum, groups are taken largest first (ties
 * in seeded random order) and each goes to a part chosen at random, weighted by how many
 * items that part still lacks of its target round(f * m), among the parts it fits in; when
 * it fits in none, to the part that lacks most. Then, when a stratum has >= 3 groups, a part
 * with a positive fraction that got no group receives the smallest group of the part with
 * the most groups. Fractions are therefore met up to the sizes of the groups. Writes part
 * (n). Errors as sd_split_stratified, and SD_ERR_ARG for a negative group id. */
sd_status sd_split_grouped(const int32_t *labels, const int32_t *group, int64_t n, int num_classes,
                           double f_train, double f_val, uint64_t seed, int8_t *part);

/* Parameters of the near-copy search. Start from sd_nearcopy_params_default(). */
typedef struct sd_nearcopy_params {
  int max_shift;       /* largest |dx|, |dy| searched, pixels (24; clamped to side - 1) */
  double threshold;    /* a pair matches when its best residual NCC >= this (0.5) */
  double min_overlap;  /* smallest overlap as a fraction of the h*w pixels (0.5) */
  int same_label_only; /* 1: compare only images with the same label (1) */
  double peak_factor;  /* Bragg peak: local max of |F| above this x median |F| (8) */
  int peak_radius;     /* frequencies within this many bins of a peak are removed, and a peak
                          is a maximum of its (2r+1)^2 neighbourhood (2) */
  int low_radius;      /* frequencies with |k| <= low_radius bins are removed (2) */
  int whiten_radius;   /* kept frequencies are divided by the mean magnitude over their
                          (2r+1)^2 neighbourhood (2); -1: no whitening */
} sd_nearcopy_params;

sd_nearcopy_params sd_nearcopy_params_default(void);

/* What sd_nearcopy_groups did (for logs). */
typedef struct sd_nearcopy_stats {
  int64_t pairs_compared;
  int64_t pairs_matched;
  double max_nonmatch_corr; /* the largest best-correlation among non-matching pairs */
  int largest_group;
  double seconds; /* wall time */
} sd_nearcopy_stats;

/* The residual of one image: image (h, w) raw values (not modified) -> residual (h, w),
 * zero mean, unit standard deviation (all zero for a constant image). See the file comment.
 * Any h, w >= 2 (power-of-two sides are fastest). */
sd_status sd_nearcopy_residual(const float *image, int h, int w, const sd_nearcopy_params *p,
                               float *residual);

/* One pair: the best normalised cross-correlation of the residuals of a and b (both (h, w)
 * raw) over the offsets allowed by p, and that offset: b(y + dy, x + dx) lines up with
 * a(y, x). corr = -1 and dx = dy = 0 when no offset has a defined correlation. Any output
 * pointer may be NULL. */
sd_status sd_nearcopy_pair(const float *a, const float *b, int h, int w,
                           const sd_nearcopy_params *p, double *corr, int *dx, int *dy);

/* Near-copy groups of n images (n, h, w) raw. labels (n) may be NULL (then same_label_only is
 * ignored); with same_label_only only images with equal labels are compared (unknown -1 is
 * compared with -1). Writes group (n): ids 0..*ngroups-1 numbered in order of each group's
 * first image; singletons are groups of one. stats may be NULL. Memory: the residuals
 * (n*h*w floats) plus spectra of two blocks of 64 images. Time: one inverse FFT of size
 * P x P (P = the power of two >= side + max_shift) per two compared pairs. */
sd_status sd_nearcopy_groups(const float *images, const int32_t *labels, int64_t n, int h, int w,
                             const sd_nearcopy_params *p, int32_t *group, int *ngroups,
                             sd_nearcopy_stats *stats);

#endif
