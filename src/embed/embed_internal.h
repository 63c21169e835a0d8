/* embed_internal.h - helpers shared by the files of the embed module (not public). */
#ifndef STEMDEFECT_EMBED_INTERNAL_H
#define STEMDEFECT_EMBED_INTERNAL_H

#include <stdint.h>

/* Exponent e such that n terms each rounded from |x| <= bound times 2^e sum below 2^61. */
int sd_tsne_fixed_exponent(double bound, int64_t n);
/* The rank owning global row j under sd_shard_range(n, ., size). */
int sd_tsne_owner(int64_t n, int size, int64_t j);

/* The split of the sorted slots between ranks in sd_tsne_optimize: given the cuts of this
 * iteration (cut [size + 1], cut[0] = 0, cut[size] = n), the repulsion's operation counts
 * work [size, nb] (bin b of rank r: an equal part of [cut[r], cut[r+1])), the seconds per
 * operation measured by each rank spw [size] (0: none; its bins then count as free) and
 * each rank's seconds of other work other [size], moves the boundaries
 * bnd [size + 1] (slot units, bnd[0] = 0, bnd[size] = n, non-decreasing) by the fraction
 * gain toward the split that equalises repulsion + other work under that cost profile.
 * Pure; the same inputs give the same bits on every rank. */
void sd_tsne_balance(int size, int64_t n, const int64_t *cut, int nb, const double *work,
                     const double *spw, const double *other, double gain, double *bnd);
/* Tests: when nonzero, sd_tsne_optimize replaces the measured split by pseudo-random cuts
 * (the same on every rank) each iteration; the embedding must not change. */
extern int sd_tsne_balance_jitter;

/* Tests: when nonzero, sd_tsne_knn_forest measures every candidate in double precision
 * (no float screen); the neighbours must not change. */
extern int sd_tsne_forest_unscreened;

/* kNN helpers shared by the exact search (tsne_affinity.c) and the forest (tsne_forest.c). */
/* Squared distance by a fixed-order loop (the same bits on any rank). */
static inline double sd_tsne_dist2(const double *a, const double *b, int d) {
  double s = 0;
  for (int t = 0; t < d; t++) {
    double u = a[t] - b[t];
    s += u * u;
  }
  return s;
}
/* Max-heap hd/hi [cap] of the (d2, index) pairs under the lexicographic order: keeps the cap
 * smallest pushed; *size grows to cap. */
void sd_tsne_heap_push(double *hd, int64_t *hi, int *size, int cap, double d, int64_t idx);
/* The k heap entries sorted by (d2, index) into nbr [k] and dist2 [k]; scratch [k]. */
typedef struct sd_tsne_pair {
  double d;
  int64_t i;
} sd_tsne_pair;
void sd_tsne_heap_sorted(const double *hd, const int64_t *hi, int k, sd_tsne_pair *scratch,
                         int64_t *nbr, double *dist2);

#endif
