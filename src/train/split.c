/* split.c - seeded stratified and grouped train/validation/test splits (see split.h).
 *
 * Randomness: stratum s (label s, or -1 for unknown) uses its own stream
 * (seed, s + 1, SD_RNG_STREAM_SPLIT) in the stratified split and (seed, 2^32 + s + 1, ...) in
 * the grouped split, so the split of one class does not change when another class changes.
 */
#include "stemdefect/split.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stemdefect/rng.h"

#define GROUPED_STREAM_OFFSET ((uint64_t)1 << 32)

static sd_status check_args(const char *fn, const int32_t *labels, int64_t n, int num_classes,
                            double f_train, double f_val, const int8_t *part) {
  if (n < 0 || n > INT32_MAX)
    return SD_ERROR(SD_ERR_ARG, "%s: item count %lld out of range 0..%d", fn, (long long)n,
                    INT32_MAX);
  if (n > 0 && (!labels || !part))
    return SD_ERROR(SD_ERR_ARG, "%s: NULL labels or part", fn);
  if (num_classes < 0)
    return SD_ERROR(SD_ERR_ARG, "%s: num_classes %d < 0", fn, num_classes);
  if (!(f_train >= 0 && f_val >= 0 && f_train + f_val <= 1 + 1e-12))
    return SD_ERROR(SD_ERR_ARG,
                    "%s: fractions train %g, validation %g must be >= 0 with a sum <= 1", fn,
                    f_train, f_val);
  for (int64_t i = 0; i < n; i++)
    if (labels[i] < -1 || labels[i] >= num_classes)
      return SD_ERROR(SD_ERR_ARG, "%s: label %d of item %lld is outside -1..%d", fn, labels[i],
                      (long long)i, num_classes - 1);
  return SD_OK;
}

/* Part sizes for m items: largest-remainder rounding of f * m, then, when m >= 3, one item for
 * every part with a positive fraction that got none (taken from the largest part). */
static void part_sizes(int64_t m, const double f[3], int64_t cnt[3]) {
  double rem[3];
  int64_t sum = 0;
  for (int k = 0; k < 3; k++) {
    double x = f[k] * (double)m;
    cnt[k] = (int64_t)floor(x);
    rem[k] = x - (double)cnt[k];
    sum += cnt[k];
  }
  while (sum < m) {
    int best = 0;
    for (int k = 1; k < 3; k++)
      if (rem[k] > rem[best])
        best = k;
    cnt[best]++;
    rem[best] = -1.0;
    sum++;
  }
  while (sum > m) { /* only from floating-point excess */
    int big = 0;
    for (int k = 1; k < 3; k++)
      if (cnt[k] > cnt[big])
        big = k;
    cnt[big]--;
    sum--;
  }
  if (m >= 3) {
    for (int k = 0; k < 3; k++) {
      if (f[k] > 0 && cnt[k] == 0) {
        int big = 0;
        for (int j = 1; j < 3; j++)
          if (cnt[j] > cnt[big])
            big = j;
        cnt[big]--;
        cnt[k]++;
      }
    }
  }
}

static void fractions(double f_train, double f_val, double f[3]) {
  f[0] = f_train;
  f[1] = f_val;
  f[2] = 1.0 - f_train - f_val;
  if (f[2] < 1e-12)
    f[2] = 0.0;
}

/* stratum of a label: 0..num_classes-1, num_classes for unknown */
static int stratum_of(int32_t label, int num_classes) {
  return label < 0 ? num_classes : label;
}

sd_status sd_split_stratified(const int32_t *labels, int64_t n, int num_classes, double f_train,
                              double f_val, uint64_t seed, int8_t *part) {
  SD_CHECK(check_args(__func__, labels, n, num_classes, f_train, f_val, part));
  if (n == 0)
    return SD_OK;
  double f[3];
  fractions(f_train, f_val, f);
  const int ns = num_classes + 1;
  sd_status st = SD_OK;
  int64_t *start = NULL;
  int *idx = NULL;
  SD_ALLOC_GOTO(st, start, (size_t)ns + 1, done);
  SD_ALLOC_GOTO(st, idx, (size_t)n, done);
  /* indices grouped by stratum, in index order (counting sort) */
  memset(start, 0, ((size_t)ns + 1) * sizeof *start);
  for (int64_t i = 0; i < n; i++)
    start[stratum_of(labels[i], num_classes) + 1]++;
  for (int s = 0; s < ns; s++)
    start[s + 1] += start[s];
  for (int64_t i = 0; i < n; i++)
    idx[start[stratum_of(labels[i], num_classes)]++] = (int)i;
  for (int s = ns - 1; s >= 0; s--)
    start[s + 1] = start[s];
  start[0] = 0;

  for (int s = 0; s < ns; s++) {
    int64_t m = start[s + 1] - start[s];
    if (m == 0)
      continue;
    int label = s == num_classes ? -1 : s;
    sd_rng r;
    sd_rng_init(&r, seed, (uint64_t)(label + 1), SD_RNG_STREAM_SPLIT);
    int *v = idx + start[s];
    sd_rng_shuffle_int(&r, v, (int)m);
    int64_t cnt[3];
    part_sizes(m, f, cnt);
    for (int64_t j = 0; j < m; j++)
      part[v[j]] = (int8_t)(j < cnt[0]            ? SD_SPLIT_PART_TRAIN
                            : j < cnt[0] + cnt[1] ? SD_SPLIT_PART_VAL
                                                  : SD_SPLIT_PART_TEST);
  }
done:
  free(start);
  free(idx);
  return st;
}

/* ---- grouped split ------------------------------------------------------------------------ */

typedef struct gitem {
  int32_t group;
  int32_t index;
} gitem;

static int cmp_gitem(const void *pa, const void *pb) {
  const gitem *a = pa, *b = pb;
  if (a->group != b->group)
    return a->group < b->group ? -1 : 1;
  return a->index < b->index ? -1 : (a->index > b->index);
}

typedef struct ginfo {
  int64_t first, size; /* members: items[first .. first+size) */
  int stratum;
  int rank; /* seeded random position within the stratum */
  int part;
} ginfo;

static int cmp_ginfo_ptr(const void *pa, const void *pb) {
  const ginfo *a = *(const ginfo *const *)pa, *b = *(const ginfo *const *)pb;
  if (a->size != b->size)
    return a->size > b->size ? -1 : 1;
  return a->rank < b->rank ? -1 : (a->rank > b->rank);
}

/* Assigns the groups gs[0..ng) of one stratum (sorted largest first) to parts. */
static void assign_stratum(ginfo **gs, int ng, const double f[3], sd_rng *r) {
  int64_t m = 0;
  for (int g = 0; g < ng; g++)
    m += gs[g]->size;
  int64_t target[3], cnt[3] = {0, 0, 0};
  int ngroups[3] = {0, 0, 0};
  part_sizes(m, f, target);
  for (int g = 0; g < ng; g++) {
    int64_t size = gs[g]->size, lack[3], wsum = 0;
    for (int k = 0; k < 3; k++) {
      lack[k] = target[k] - cnt[k];
      if (lack[k] >= size)
        wsum += lack[k];
    }
    int chosen = 0;
    if (wsum > 0) {
      int64_t u = (int64_t)sd_rng_below(r, (uint64_t)wsum);
      for (int k = 0; k < 3; k++) {
        if (lack[k] < size)
          continue;
        chosen = k;
        if (u < lack[k])
          break;
        u -= lack[k];
      }
    } else {
      for (int k = 1; k < 3; k++)
        if (lack[k] > lack[chosen])
          chosen = k;
    }
    gs[g]->part = chosen;
    cnt[chosen] += size;
    ngroups[chosen]++;
  }
  if (ng < 3)
    return;
  /* every part with a positive fraction gets at least one group */
  for (int k = 0; k < 3; k++) {
    if (!(f[k] > 0) || ngroups[k] > 0)
      continue;
    int donor = -1;
    for (int j = 0; j < 3; j++)
      if (ngroups[j] >= 2 && (donor < 0 || ngroups[j] > ngroups[donor]))
        donor = j;
    if (donor < 0)
      continue;
    int smallest = -1; /* gs is sorted largest first: the last of the donor's is smallest */
    for (int g = ng - 1; g >= 0 && smallest < 0; g--)
      if (gs[g]->part == donor)
        smallest = g;
    gs[smallest]->part = k;
    ngroups[donor]--;
    ngroups[k]++;
  }
}

sd_status sd_split_grouped(const int32_t *labels, const int32_t *group, int64_t n, int num_classes,
                           double f_train, double f_val, uint64_t seed, int8_t *part) {
  SD_CHECK(check_args(__func__, labels, n, num_classes, f_train, f_val, part));
  if (n == 0)
    return SD_OK;
  if (!group)
    return SD_ERROR(SD_ERR_ARG, "%s: NULL group", __func__);
  for (int64_t i = 0; i < n; i++)
    if (group[i] < 0)
      return SD_ERROR(SD_ERR_ARG, "%s: group id %d of item %lld is negative", __func__, group[i],
                      (long long)i);
  double f[3];
  fractions(f_train, f_val, f);
  const int ns = num_classes + 1;
  sd_status st = SD_OK;
  gitem *items = NULL;
  ginfo *gi = NULL;
  ginfo **order = NULL;
  int64_t *votes = NULL, *sstart = NULL;
  int *perm = NULL;
  SD_ALLOC_GOTO(st, items, (size_t)n, done);
  for (int64_t i = 0; i < n; i++) {
    items[i].group = group[i];
    items[i].index = (int32_t)i;
  }
  qsort(items, (size_t)n, sizeof *items, cmp_gitem);
  int64_t ng = 1;
  for (int64_t i = 1; i < n; i++)
    ng += items[i].group != items[i - 1].group;
  SD_ALLOC_GOTO(st, gi, (size_t)ng, done);
  SD_ALLOC_GOTO(st, order, (size_t)ng, done);
  SD_ALLOC_GOTO(st, votes, (size_t)ns, done);
  SD_ALLOC_GOTO(st, sstart, (size_t)ns + 1, done);
  SD_ALLOC_GOTO(st, perm, (size_t)ng, done);
  memset(votes, 0, (size_t)ns * sizeof *votes);

  /* groups, their majority label (ties: the smaller label; unknown only when all are) */
  int64_t g = 0;
  for (int64_t i = 0; i < n;) {
    int64_t j = i;
    while (j < n && items[j].group == items[i].group)
      j++;
    for (int64_t k = i; k < j; k++)
      votes[stratum_of(labels[items[k].index], num_classes)]++;
    int best = num_classes;
    for (int s = 0; s < num_classes; s++)
      if (votes[s] > 0 && (best == num_classes || votes[s] > votes[best]))
        best = s;
    for (int64_t k = i; k < j; k++)
      votes[stratum_of(labels[items[k].index], num_classes)] = 0;
    gi[g].first = i;
    gi[g].size = j - i;
    gi[g].stratum = best;
    gi[g].part = 0;
    g++;
    i = j;
  }

  /* groups by stratum (in group-id order), then per stratum: seeded ranks, largest first */
  memset(sstart, 0, ((size_t)ns + 1) * sizeof *sstart);
  for (g = 0; g < ng; g++)
    sstart[gi[g].stratum + 1]++;
  for (int s = 0; s < ns; s++)
    sstart[s + 1] += sstart[s];
  for (g = 0; g < ng; g++)
    order[sstart[gi[g].stratum]++] = &gi[g];
  for (int s = ns - 1; s >= 0; s--)
    sstart[s + 1] = sstart[s];
  sstart[0] = 0;
  for (int s = 0; s < ns; s++) {
    int64_t m = sstart[s + 1] - sstart[s];
    if (m == 0)
      continue;
    int label = s == num_classes ? -1 : s;
    sd_rng r;
    sd_rng_init(&r, seed, GROUPED_STREAM_OFFSET + (uint64_t)(label + 1), SD_RNG_STREAM_SPLIT);
    ginfo **gs = order + sstart[s];
    for (int k = 0; k < (int)m; k++)
      perm[k] = k;
    sd_rng_shuffle_int(&r, perm, (int)m);
    for (int k = 0; k < (int)m; k++)
      gs[k]->rank = perm[k];
    qsort(gs, (size_t)m, sizeof *gs, cmp_ginfo_ptr);
    assign_stratum(gs, (int)m, f, &r);
  }
  for (g = 0; g < ng; g++)
    for (int64_t k = gi[g].first; k < gi[g].first + gi[g].size; k++)
      part[items[k].index] = (int8_t)gi[g].part;
done:
  free(items);
  free(gi);
  free(order);
  free(votes);
  free(sstart);
  free(perm);
  return st;
}
