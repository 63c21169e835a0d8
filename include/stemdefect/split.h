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
 *      give >= 0.9. Calibration of the default threshold 0.5 on random 64x64 crops of the two
 *      bulk reference images: overlapping crops 0.94..1.0, disjoint crops <= 0.14 (the raw
 *      images of disjoint crops correlate at up to ~0.9); on the CdTe patches the groups equal
 *      those of pixel-identical overlaps found by exhaustive search (tests/split).
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
 * f * m rounded by largest remainder (so they sum to m), then, when m >= 3, every part with a
 * positive fraction that got none takes one item from the largest part. Writes part (n):
 * SD_SPLIT_PART_*. Same inputs and seed give the same split. SD_ERR_ARG naming the value on bad
 * fractions, a label out of range or a NULL pointer. */
sd_status sd_split_stratified(const int32_t *labels, int64_t n, int num_classes, double f_train,
                              double f_val, uint64_t seed, int8_t *part);

/* Grouped split: every group (group (n): ids >= 0, need not be contiguous) goes whole into
 * one part. A group's stratum is its majority label (ties: the smaller label; -1 only
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

/* What a near-copy search did (for logs). */
typedef struct sd_nearcopy_stats {
  int64_t pairs_compared;
  int64_t pairs_matched;    /* best correlation >= threshold */
  double max_nonmatch_corr; /* the largest best correlation below threshold (-1: none) */
  int largest_group;        /* sd_nearcopy_groups only */
  double seconds;           /* wall time of the comparison */
} sd_nearcopy_stats;

/* One compared pair: images a < b, b(y + dy, x + dx) lines up with a(y, x). */
typedef struct sd_nearcopy_match {
  int32_t a, b;
  int32_t dx, dy;
  double corr; /* best residual NCC over the offsets (-1: no offset had a defined one) */
} sd_nearcopy_match;

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

/* Compares the candidate pairs of n images (n, h, w) raw and returns those whose best
 * correlation is >= min_corr (pass -1 for every compared pair; p->threshold for the matches)
 * as a new array *pairs of *npairs entries sorted by (a, b) (free() it; NULL when none).
 * labels (n) may be NULL (then same_label_only is ignored); with same_label_only only images
 * with equal labels are compared (unknown -1 with -1). stats may be NULL. Memory: the residuals
 * (n*h*w floats) plus the spectra of two blocks of 64 images (2 x 64 x P^2 complex floats,
 * P = the power of two >= side + max_shift: 16 MB for 64x64 images). Time: one P x P inverse
 * FFT per two compared pairs (64x64 images: ~0.17 ms per pair on one core). */
sd_status sd_nearcopy_pairs(const float *images, const int32_t *labels, int64_t n, int h, int w,
                            const sd_nearcopy_params *p, double min_corr, sd_nearcopy_match **pairs,
                            int64_t *npairs, sd_nearcopy_stats *stats);

/* Near-copy groups: the connected components of the matched pairs of sd_nearcopy_pairs (a
 * group is a transitive closure, so two members need not overlap each other). Writes group
 * (n): ids 0..*ngroups-1 numbered in order of each group's first image; an image without a
 * match is a group of one. stats may be NULL. */
sd_status sd_nearcopy_groups(const float *images, const int32_t *labels, int64_t n, int h, int w,
                             const sd_nearcopy_params *p, int32_t *group, int *ngroups,
                             sd_nearcopy_stats *stats);

#endif
