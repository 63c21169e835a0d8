/* tsne_forest.c - approximate k nearest neighbours by a random-projection forest, for inputs
 * too large for the exact quadratic search (sd_tsne_knn).
 *
 * Every rank gets all rows (one allgather). Tree t splits the rows recursively at the median
 * of their projections on the difference of two rows drawn at random, until a node holds at
 * most `leaf` rows; the trees are built by ranks in turn (tree t by rank t mod P) and
 * broadcast as a permutation of the rows plus the leaf boundaries. The candidates of row i
 * are the other rows of its leaf in every tree, then (refinement rounds, over all rows'
 * gathered lists) the nearest neighbours of its neighbours; their squared distances are
 * computed in a fixed order (after a float screen that provably rejects only candidates
 * farther than the current k-th) and the k smallest kept, sorted by (distance, index).
 * A tree depends only on (seed, t) and the rows, and the candidate set of a row only on the
 * trees and the lists, so the neighbours are the same at any rank count. Median splits keep
 * every leaf at >= (leaf + 1) / 2 rows, so leaf >= 2k + 1 guarantees k candidates from one
 * tree. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "embed_internal.h"
#include "stemdefect/log.h"
#include "stemdefect/par.h"
#include "stemdefect/rng.h"
#include "stemdefect/tsne.h"

/* the nearest neighbours of each neighbour that a refinement round looks at */
#define SD_FOREST_FAN 16

typedef struct proj_pair {
  double v;  /* projection */
  int32_t i; /* row */
} proj_pair;

/* squared distance in four interleaved partial sums (a fixed order: the same bits on any
 * rank; about four times the speed of the single chain of sd_tsne_dist2) */
static inline double dist2_4(const double *a, const double *b, int d) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int t = 0;
  for (; t + 4 <= d; t += 4) {
    double u0 = a[t] - b[t], u1 = a[t + 1] - b[t + 1], u2 = a[t + 2] - b[t + 2],
           u3 = a[t + 3] - b[t + 3];
    s0 += u0 * u0;
    s1 += u1 * u1;
    s2 += u2 * u2;
    s3 += u3 * u3;
  }
  for (; t < d; t++) {
    double u = a[t] - b[t];
    s0 += u * u;
  }
  return (s0 + s1) + (s2 + s3);
}

/* the same in single precision from float copies of the rows (a screen only) */
static inline float dist2_f(const float *a, const float *b, int d) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int t = 0;
  for (; t + 8 <= d; t += 8)
    for (int u = 0; u < 8; u++) {
      float w = a[t + u] - b[t + u];
      s[u] += w * w;
    }
  for (; t < d; t++) {
    float w = a[t] - b[t];
    s[0] += w * w;
  }
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* Pushes candidate j (row xj, float copy fj) of the row xi / fi into the heap unless its
 * single-precision distance proves it farther than the current k-th. Rounding the rows to
 * float moves each coordinate difference by at most e = 2^-22 max|x|, so by the triangle
 * inequality |u_f| >= |u| - sqrt(d) e, and the float sum of d squares is within a factor
 * 1 + rho (rho = 1.2e-7 d) of |u_f|^2: a candidate with df > (1 + rho) (sqrt(top) +
 * sqrt(d) e)^2 is farther than the k-th. *thr holds that threshold (infinite until the heap
 * is full) and is renewed when the top changes, so the heap ends with exactly the entries
 * it would have without the screen. */
int sd_tsne_forest_unscreened = 0;

static inline double screen_threshold(double top, double sde, double rho) {
  const double r = sqrt(top) + sde;
  return (1.0 + rho) * r * r * (1.0 + 1e-12) + 1e-300;
}

/* One row's search: its heap of the k best (distance, row) pairs and its screen. */
typedef struct forest_query {
  double *hd;
  int64_t *hi;
  int hs, k, d;
  int32_t stamp;    /* marks the rows already measured for this row */
  const double *xi; /* the row, and its float copy */
  const float *fi;
  double sde, rho, thr; /* the screen's error terms and threshold */
} forest_query;

/* Measures candidate j (row xj, float copy fj) unless the row has been measured for this
 * query already (mark) or its float distance puts it beyond the k-th. */
static inline void visit(forest_query *fq, int32_t *mark, int64_t *cand, const double *xj,
                         const float *fj, int32_t j) {
  if (mark[j] == fq->stamp)
    return;
  mark[j] = fq->stamp;
  (*cand)++;
  if (fq->hs == fq->k && !sd_tsne_forest_unscreened && (double)dist2_f(fq->fi, fj, fq->d) > fq->thr)
    return;
  sd_tsne_heap_push(fq->hd, fq->hi, &fq->hs, fq->k, dist2_4(fq->xi, xj, fq->d), j);
  if (fq->hs == fq->k)
    fq->thr = screen_threshold(fq->hd[0], fq->sde, fq->rho);
}

static inline int pp_less(const proj_pair *a, const proj_pair *b) {
  return a->v < b->v || (a->v == b->v && a->i < b->i);
}

static inline void pp_swap(proj_pair *a, int64_t x, int64_t y) {
  proj_pair t = a[x];
  a[x] = a[y];
  a[y] = t;
}

/* Rearranges a [m] (distinct under pp_less) so that a[h] has rank h, the ones before it are
 * smaller and the ones after it larger (quickselect with a median-of-three pivot:
 * deterministic for a given input order). */
static void select_nth(proj_pair *a, int64_t m, int64_t h) {
  int64_t lo = 0, hi = m - 1;
  while (hi > lo) {
    int64_t mid = lo + (hi - lo) / 2;
    if (pp_less(&a[mid], &a[lo]))
      pp_swap(a, mid, lo);
    if (pp_less(&a[hi], &a[lo]))
      pp_swap(a, hi, lo);
    if (pp_less(&a[hi], &a[mid]))
      pp_swap(a, hi, mid);
    const proj_pair piv = a[mid];
    int64_t i = lo, j = hi;
    while (i <= j) {
      while (pp_less(&a[i], &piv))
        i++;
      while (pp_less(&piv, &a[j]))
        j--;
      if (i <= j) {
        pp_swap(a, i, j);
        i++;
        j--;
      }
    }
    if (h <= j)
      hi = j;
    else if (h >= i)
      lo = i;
    else
      return;
  }
}

/* Tree t over x [n, d]: out [2n + 2] receives the permutation of the rows (out[0 .. n)),
 * the leaf count L (out[n]) and the L + 1 leaf starts (out[n + 1 ..]). stack [2n] and
 * scratch [n] are work space; v [d]. */
static void build_tree(const double *x, int64_t n, int d, int leaf, uint64_t seed, int t,
                       int32_t *out, int64_t *stack, proj_pair *scratch, double *v) {
  int32_t *perm = out, *starts = out + n + 1;
  for (int64_t i = 0; i < n; i++)
    perm[i] = (int32_t)i;
  int64_t top = 0, nleaves = 0;
  uint64_t node = 0;
  stack[top++] = 0;
  stack[top++] = n;
  while (top > 0) {
    const int64_t hi = stack[--top], lo = stack[--top];
    const int64_t m = hi - lo;
    if (m <= leaf) {
      starts[nleaves++] = (int32_t)lo;
      continue;
    }
    sd_rng r;
    sd_rng_init(&r, seed, ((uint64_t)t << 40) ^ node++, SD_RNG_STREAM_FOREST);
    int64_t qa = (int64_t)sd_rng_below(&r, (uint64_t)m);
    int64_t qb = (int64_t)sd_rng_below(&r, (uint64_t)(m - 1));
    if (qb >= qa)
      qb++;
    const double *xa = x + (size_t)perm[lo + qa] * d, *xb = x + (size_t)perm[lo + qb] * d;
    for (int c = 0; c < d; c++)
      v[c] = xa[c] - xb[c];
    for (int64_t q = 0; q < m; q++) {
      const int32_t i = perm[lo + q];
      const double *xi = x + (size_t)i * d;
      double s = 0;
      for (int c = 0; c < d; c++)
        s += v[c] * xi[c];
      scratch[q].v = s;
      scratch[q].i = i;
    }
    /* the median split (equal projections are ordered by row: the halves never empty) */
    const int64_t h = m / 2;
    select_nth(scratch, m, h);
    for (int64_t q = 0; q < m; q++)
      perm[lo + q] = scratch[q].i;
    /* right pushed first: leaves come out left to right */
    stack[top++] = lo + h;
    stack[top++] = hi;
    stack[top++] = lo;
    stack[top++] = lo + h;
  }
  out[n] = (int32_t)nleaves;
  starts[nleaves] = (int32_t)n;
  /* the unused tail is broadcast too: defined bits */
  memset(starts + nleaves + 1, 0, (size_t)(n - nleaves) * sizeof *starts);
}

int sd_tsne_forest_leaf_size(int k) {
  return 2 * k + 2;
}

sd_status sd_tsne_knn_forest(MPI_Comm comm, const double *x_own, int64_t count, int d, int64_t n,
                             int k, int trees, int refine, uint64_t seed, int64_t *nbr,
                             double *dist2) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  if (k < 1 || k >= n)
    return SD_ERROR(SD_ERR_ARG, "kNN: k = %d needs 1 <= k < %lld", k, (long long)n);
  if (trees < 1)
    return SD_ERROR(SD_ERR_ARG, "kNN forest: %d trees (expected >= 1)", trees);
  if (refine < 0)
    return SD_ERROR(SD_ERR_ARG, "kNN forest: %d refinement rounds (expected >= 0)", refine);
  if (2.0 * (double)n + 2 > (double)INT32_MAX)
    return SD_ERROR(SD_ERR_ARG, "kNN forest: %lld rows exceed one MPI message (%d values)",
                    (long long)n, INT32_MAX);
  const int leaf = sd_tsne_forest_leaf_size(k);
  int64_t first, own;
  sd_shard_range(n, rank, size, &first, &own);
  (void)own; /* = count: the rows follow sd_shard_range (the contract) */
  const size_t tn = 2 * (size_t)n + 2;
  sd_status st = SD_OK;
  MPI_Datatype rowt = MPI_DATATYPE_NULL, listt = MPI_DATATYPE_NULL;
  double *x = sd_malloc((size_t)n * d, sizeof *x, "kNN forest: all rows");
  double *scratch_x = sd_malloc((size_t)n * d, sizeof *x, "kNN forest: rows in tree order");
  int32_t *slot0 = sd_malloc((size_t)n, sizeof *slot0, "kNN forest: tree order");
  float *xf = sd_malloc((size_t)n * d, sizeof *xf, "kNN forest: float rows");
  int32_t *tr = sd_malloc((size_t)trees * tn, sizeof *tr, "kNN forest: trees");
  int64_t *stack = sd_malloc(2 * (size_t)n + 2, sizeof *stack, "kNN forest: stack");
  proj_pair *scratch = sd_malloc((size_t)n, sizeof *scratch, "kNN forest: projections");
  double *v = sd_malloc((size_t)d, sizeof *v, "kNN forest: direction");
  int32_t *leafof = sd_malloc((size_t)trees * (size_t)(count > 0 ? count : 1), sizeof *leafof,
                              "kNN forest: leaves of the own rows");
  int32_t *mark = sd_malloc((size_t)n, sizeof *mark, "kNN forest: marks");
  int64_t *qorder =
      sd_malloc((size_t)(count > 0 ? count : 1), sizeof *qorder, "kNN forest: query order");
  double *hd = sd_malloc((size_t)k, sizeof *hd, "kNN heap");
  int64_t *hi = sd_malloc((size_t)k, sizeof *hi, "kNN heap");
  sd_tsne_pair *pairs = sd_malloc((size_t)k, sizeof *pairs, "kNN pairs");
  int *cnts = sd_malloc((size_t)size, sizeof *cnts, "gather counts");
  int *disp = sd_malloc((size_t)size, sizeof *disp, "gather counts");
  int32_t *own32 = refine > 0 ? sd_malloc((size_t)(count > 0 ? count : 1) * k, sizeof *own32,
                                          "kNN forest: own lists")
                              : NULL;
  int32_t *all32 =
      refine > 0 ? sd_malloc((size_t)n * k, sizeof *all32, "kNN forest: all lists") : NULL;
  if (!x || !scratch_x || !slot0 || !xf || !tr || !stack || !scratch || !v || !leafof || !mark ||
      !qorder || !hd || !hi || !pairs || !cnts || !disp || (refine > 0 && (!own32 || !all32)))
    st = SD_ERR_NOMEM;
  st = sd_par_agree(comm, st);
  if (st != SD_OK)
    goto done;
  for (int r = 0; r < size; r++) {
    int64_t f, c;
    sd_shard_range(n, r, size, &f, &c);
    cnts[r] = (int)c; /* rows: the datatypes are whole rows and whole lists */
    disp[r] = (int)f;
  }
  MPI_Type_contiguous(d, MPI_DOUBLE, &rowt);
  MPI_Type_commit(&rowt);
  MPI_Type_contiguous(k, MPI_INT32_T, &listt);
  MPI_Type_commit(&listt);
  SD_CHECK_GOTO(st,
                sd_par_check(MPI_Allgatherv(x_own, (int)count, rowt, x, cnts, disp, rowt, comm),
                             "allgather(kNN forest rows)"),
                done);
  double t0 = sd_time_now();
  for (int t = rank; t < trees; t += size)
    build_tree(x, n, d, leaf, seed, t, tr + (size_t)t * tn, stack, scratch, v);
  for (int t = 0; t < trees; t++)
    SD_CHECK_GOTO(st,
                  sd_par_check(MPI_Bcast(tr + (size_t)t * tn, (int)tn, MPI_INT32_T, t % size, comm),
                               "broadcast(kNN forest tree)"),
                  done);
  double t1 = sd_time_now();
  /* the leaf of every own row in every tree */
  for (int t = 0; t < trees; t++) {
    const int32_t *perm = tr + (size_t)t * tn, *starts = perm + n + 1;
    const int32_t nl = perm[n];
    int32_t *lo = leafof + (size_t)t * (size_t)count;
    for (int32_t l = 0; l < nl; l++)
      for (int32_t s = starts[l]; s < starts[l + 1]; s++) {
        int64_t i = perm[s];
        if (i >= first && i < first + count)
          lo[i - first] = l;
      }
  }
  for (int64_t i = 0; i < n; i++)
    mark[i] = -1;
  /* the rows in the order of tree 0 (xs[slot0[i]] = row i): the candidates of a row are
   * near it, so their rows then lie near each other in memory (4x fewer cache misses) */
  {
    const int32_t *perm = tr;
    for (int64_t s = 0; s < n; s++) {
      slot0[perm[s]] = (int32_t)s;
      memcpy(scratch_x + (size_t)s * d, x + (size_t)perm[s] * d, (size_t)d * sizeof *x);
    }
    free(x);
    x = scratch_x;
    scratch_x = NULL;
  }
  /* float copies of the rows for the distance screen (half the memory traffic) */
  double emax = 0;
  for (size_t e = 0; e < (size_t)n * d; e++) {
    xf[e] = (float)x[e];
    emax = fabs(x[e]) > emax ? fabs(x[e]) : emax;
  }
  const double sde = sqrt((double)d) * ldexp(emax, -22), rho = 1.2e-7 * (double)d;
#define ROW(j) (x + (size_t)slot0[j] * d)
#define ROWF(j) (xf + (size_t)slot0[j] * d)
  /* the own rows in the order of tree 0: neighbouring queries share most candidates, which
   * then stay in cache (the result of a row does not depend on the order) */
  {
    const int32_t *perm = tr;
    int64_t e = 0;
    for (int64_t s = 0; s < n; s++)
      if (perm[s] >= first && perm[s] < first + count)
        qorder[e++] = perm[s] - first;
  }
  /* pass 0: the rows sharing a leaf; passes 1..refine (the local join of NN-descent): the
   * nearest neighbours of the neighbours, from all rows' lists gathered at the start of the
   * pass (so a pass reads the previous pass's lists only: the same result at any rank
   * count). A row marked q by an earlier pass was measured for row q then; the lists only
   * get closer, so it cannot enter now unless it is in the list already. */
  int64_t cand = 0;
  double t2 = t1;
  const int fan = k < SD_FOREST_FAN ? k : SD_FOREST_FAN;
  for (int pass = 0; pass <= refine && st == SD_OK; pass++) {
    if (pass > 0) {
      for (int64_t q = 0; q < count; q++)
        for (int j = 0; j < k; j++)
          own32[q * k + j] = (int32_t)nbr[q * k + j];
      SD_CHECK_GOTO(
          st,
          sd_par_check(MPI_Allgatherv(own32, (int)count, listt, all32, cnts, disp, listt, comm),
                       "allgather(kNN forest lists)"),
          done);
    }
    for (int64_t qq = 0; qq < count; qq++) {
      const int64_t q = qorder[qq];
      const int64_t gi = first + q;
      forest_query fq = {hd, hi, 0, k, d, (int32_t)q, ROW(gi), ROWF(gi), sde, rho, INFINITY};
      mark[gi] = fq.stamp; /* self excluded */
      if (pass == 0) {
        for (int t = 0; t < trees; t++) {
          const int32_t *perm = tr + (size_t)t * tn, *starts = perm + n + 1;
          const int32_t l = leafof[(size_t)t * (size_t)count + q];
          for (int32_t s = starts[l]; s < starts[l + 1]; s++)
            visit(&fq, mark, &cand, ROW(perm[s]), ROWF(perm[s]), perm[s]);
        }
      } else {
        for (int j = 0; j < k; j++) { /* the current list */
          const int32_t a = all32[(size_t)gi * k + j];
          mark[a] = fq.stamp;
          sd_tsne_heap_push(hd, hi, &fq.hs, k, dist2[q * k + j], a);
        }
        fq.thr = screen_threshold(hd[0], sde, rho);
        for (int j = 0; j < k; j++) {
          const int32_t *la = all32 + (size_t)all32[(size_t)gi * k + j] * k;
          for (int e = 0; e < fan; e++)
            visit(&fq, mark, &cand, ROW(la[e]), ROWF(la[e]), la[e]);
        }
      }
      if (fq.hs != k) {
        st = SD_ERROR(SD_ERR_INTERNAL, "kNN forest: row %lld has %d of %d candidates",
                      (long long)gi, fq.hs, k);
        break;
      }
      sd_tsne_heap_sorted(hd, hi, k, pairs, nbr + q * k, dist2 + q * k);
    }
    st = sd_par_agree(comm, st);
    if (pass == 0)
      t2 = sd_time_now();
  }
#undef ROW
#undef ROWF
  st = sd_par_agree(comm, st);
  if (st == SD_OK) {
    int64_t c[1] = {cand};
    st = sd_par_allreduce_sum_i64(comm, c, 1);
    sd_log_debug("embed: kNN forest of %d trees (leaves of %d-%d rows): trees %.2f s, "
                 "queries %.2f s, %d refinement round(s) %.2f s, %.0f candidates per row",
                 trees, (leaf + 1) / 2, leaf, t1 - t0, t2 - t1, refine, sd_time_now() - t2,
                 n > 0 ? (double)c[0] / (double)n : 0.0);
  }
done:
  if (rowt != MPI_DATATYPE_NULL)
    MPI_Type_free(&rowt);
  if (listt != MPI_DATATYPE_NULL)
    MPI_Type_free(&listt);
  free(x);
  free(scratch_x);
  free(slot0);
  free(xf);
  free(tr);
  free(stack);
  free(scratch);
  free(v);
  free(leafof);
  free(mark);
  free(qorder);
  free(hd);
  free(hi);
  free(pairs);
  free(cnts);
  free(disp);
  free(own32);
  free(all32);
  return st;
}
