/* tsne_affinity.c - t-SNE input side: parameters, exact fixed-point sums, column
 * standardisation, exact kNN by GEMM with a ring exchange of row blocks (the approximate
 * forest is in tsne_forest.c), the perplexity calibration, and the distributed
 * symmetrisation of P. */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "embed_internal.h"
#include "stemdefect/log.h"
#include "stemdefect/par.h"
#include "stemdefect/tsne.h"

void sd_tsne_params_default(sd_tsne_params *p) {
  memset(p, 0, sizeof *p);
  p->perplexity = 30.0;
  p->theta = 0.5;
  p->iterations = 1000;
  p->learning_rate = 0.0;
  p->early_exaggeration = 12.0;
  p->exaggeration_iters = 250;
  p->neighbors = 0;
  p->knn = SD_TSNE_KNN_AUTO;
  p->forest_trees = 10;
  p->forest_refine = 2;
  p->seed = 1;
  p->init = SD_TSNE_INIT_PCA;
  p->report_every = 50;
  p->momentum_early = 0.5;
  p->momentum_late = 0.8;
  p->min_gain = 0.01;
}

int sd_tsne_resolve_neighbors(const sd_tsne_params *p, int64_t n) {
  int64_t k = p->neighbors > 0 ? p->neighbors : (int64_t)floor(3.0 * p->perplexity) + 1;
  if (k > n - 1)
    k = n - 1;
  if (k < 1)
    k = 1;
  return (int)k;
}

sd_tsne_knn_method sd_tsne_resolve_knn(const sd_tsne_params *p, int64_t n) {
  if (p->knn != SD_TSNE_KNN_AUTO)
    return p->knn;
  return n > SD_TSNE_KNN_EXACT_MAX ? SD_TSNE_KNN_FOREST : SD_TSNE_KNN_EXACT;
}

double sd_tsne_resolve_learning_rate(const sd_tsne_params *p, int64_t n) {
  if (p->learning_rate > 0)
    return p->learning_rate;
  double lr = (double)n / p->early_exaggeration / 4.0;
  return lr > 50.0 ? lr : 50.0;
}

sd_status sd_tsne_params_check(const sd_tsne_params *p, int64_t n) {
  if (n < 2)
    return SD_ERROR(SD_ERR_ARG, "t-SNE needs at least 2 points, the input has %lld", (long long)n);
  if (!(p->perplexity > 0) || !(p->perplexity < (double)n))
    return SD_ERROR(SD_ERR_ARG,
                    "perplexity %g is too large for %lld points (expected 0 < perplexity < "
                    "number of points; use at most %lld)",
                    p->perplexity, (long long)n, (long long)(n - 1));
  if (!(p->theta >= 0) || !(p->theta <= 10))
    return SD_ERROR(SD_ERR_ARG, "theta %g is out of range (expected 0 <= theta <= 10; 0 = exact)",
                    p->theta);
  if (p->iterations < 1)
    return SD_ERROR(SD_ERR_ARG, "iterations %d must be >= 1", p->iterations);
  if (p->exaggeration_iters < 0 || !(p->early_exaggeration >= 1))
    return SD_ERROR(SD_ERR_ARG, "early exaggeration %g for %d iterations (expected >= 1, >= 0)",
                    p->early_exaggeration, p->exaggeration_iters);
  if (p->knn != SD_TSNE_KNN_AUTO && p->knn != SD_TSNE_KNN_EXACT && p->knn != SD_TSNE_KNN_FOREST)
    return SD_ERROR(SD_ERR_ARG, "kNN method %d is unknown (expected auto, exact or forest)",
                    (int)p->knn);
  if (p->forest_trees < 1 || p->forest_trees > 1000)
    return SD_ERROR(SD_ERR_ARG, "forest trees %d is out of range (expected 1..1000)",
                    p->forest_trees);
  if (p->forest_refine < 0 || p->forest_refine > 10)
    return SD_ERROR(SD_ERR_ARG, "forest refinement rounds %d is out of range (expected 0..10)",
                    p->forest_refine);
  int k = sd_tsne_resolve_neighbors(p, n);
  if (p->neighbors > 0 && p->neighbors > n - 1)
    return SD_ERROR(SD_ERR_ARG, "neighbors %d is too large for %lld points (at most %lld)",
                    p->neighbors, (long long)n, (long long)(n - 1));
  if ((double)k < p->perplexity)
    return SD_ERROR(SD_ERR_ARG,
                    "perplexity %g needs more than the %d neighbours used (expected neighbors >= "
                    "perplexity)",
                    p->perplexity, k);
  return SD_OK;
}

/* ---- fixed-point sums ------------------------------------------------------------------- */

int sd_tsne_fixed_exponent(double bound, int64_t n) {
  if (!(bound > 0) || !isfinite(bound))
    return 0;
  int b = 0, c = 0;
  frexp(bound, &b); /* bound < 2^b */
  while (c < 62 && ((int64_t)1 << c) < n)
    c++;
  return 61 - b - c; /* n terms of magnitude < 2^(61-c) each: |sum| < 2^61 */
}

sd_status sd_tsne_repro_colsum(MPI_Comm comm, const double *v, int64_t rows, int m, double *out) {
  double *mx = sd_calloc((size_t)m, sizeof *mx, "fixed-point bounds");
  int64_t *acc = sd_calloc((size_t)m + 1, sizeof *acc, "fixed-point sums");
  int *ex = sd_malloc((size_t)m, sizeof *ex, "fixed-point exponents");
  sd_status st = SD_OK;
  if (!mx || !acc || !ex) {
    st = SD_ERR_NOMEM;
    goto done;
  }
  int nonfinite = 0;
  for (int64_t i = 0; i < rows; i++)
    for (int j = 0; j < m; j++) {
      double a = fabs(v[i * m + j]);
      if (!isfinite(a))
        nonfinite = 1;
      else if (a > mx[j])
        mx[j] = a;
    }
  /* a non-finite flag and the total row count */
  SD_CHECK_GOTO(st, sd_par_allreduce_max_double(comm, mx, m), done);
  int64_t flags[2] = {nonfinite, rows};
  SD_CHECK_GOTO(st, sd_par_allreduce_sum_i64(comm, flags, 2), done);
  if (flags[0]) {
    st = SD_ERROR(SD_ERR_FORMAT, "the input holds non-finite values (NaN or Inf)");
    goto done;
  }
  for (int j = 0; j < m; j++)
    ex[j] = sd_tsne_fixed_exponent(mx[j], flags[1]);
  memset(acc, 0, (size_t)m * sizeof *acc);
  for (int64_t i = 0; i < rows; i++)
    for (int j = 0; j < m; j++)
      acc[j] += (int64_t)llround(ldexp(v[i * m + j], ex[j]));
  SD_CHECK_GOTO(st, sd_par_allreduce_sum_i64(comm, acc, m), done);
  for (int j = 0; j < m; j++)
    out[j] = ldexp((double)acc[j], -ex[j]);
done:
  free(mx);
  free(acc);
  free(ex);
  return st;
}

sd_status sd_tsne_standardize(MPI_Comm comm, double *x, int64_t count, int d, int64_t n) {
  double *mean = sd_malloc((size_t)d, sizeof *mean, "column means");
  double *var = sd_malloc((size_t)d, sizeof *var, "column variances");
  double *sq = sd_malloc((size_t)(count > 0 ? count : 1) * (size_t)d, sizeof *sq, "squares");
  sd_status st = SD_OK;
  if (!mean || !var || !sq) {
    st = SD_ERR_NOMEM;
    goto done;
  }
  SD_CHECK_GOTO(st, sd_tsne_repro_colsum(comm, x, count, d, mean), done);
  for (int j = 0; j < d; j++)
    mean[j] /= (double)n;
  for (int64_t i = 0; i < count; i++)
    for (int j = 0; j < d; j++) {
      double c = x[i * d + j] - mean[j];
      sq[i * d + j] = c * c;
    }
  SD_CHECK_GOTO(st, sd_tsne_repro_colsum(comm, sq, count, d, var), done);
  for (int j = 0; j < d; j++) {
    double sd = sqrt(var[j] / (double)n);
    /* like sklearn: a constant column is centred but not scaled */
    double inv = sd > 1e-300 * (1.0 + fabs(mean[j])) ? 1.0 / sd : 1.0;
    for (int64_t i = 0; i < count; i++)
      x[i * d + j] = (x[i * d + j] - mean[j]) * inv;
  }
done:
  free(mean);
  free(var);
  free(sq);
  return st;
}

/* ---- kNN -------------------------------------------------------------------------------- */

/* max-heap of (d2, index) under the lexicographic order */
static inline int key_less(double da, int64_t ia, double db, int64_t ib) {
  return da < db || (da == db && ia < ib);
}

/* swaps entries a and b of the parallel arrays (d2, index) */
static inline void entry_swap(double *hd, int64_t *hi, int a, int b) {
  double td = hd[a];
  hd[a] = hd[b];
  hd[b] = td;
  int64_t ti = hi[a];
  hi[a] = hi[b];
  hi[b] = ti;
}

static void heap_sift_down(double *hd, int64_t *hi, int size, int pos) {
  for (;;) {
    int l = 2 * pos + 1, r = l + 1, big = pos;
    if (l < size && key_less(hd[big], hi[big], hd[l], hi[l]))
      big = l;
    if (r < size && key_less(hd[big], hi[big], hd[r], hi[r]))
      big = r;
    if (big == pos)
      return;
    entry_swap(hd, hi, pos, big);
    pos = big;
  }
}

void sd_tsne_heap_push(double *hd, int64_t *hi, int *size, int cap, double d, int64_t idx) {
  if (*size < cap) {
    int pos = (*size)++;
    hd[pos] = d;
    hi[pos] = idx;
    while (pos > 0) {
      int par = (pos - 1) / 2;
      if (!key_less(hd[par], hi[par], hd[pos], hi[pos]))
        break;
      entry_swap(hd, hi, pos, par);
      pos = par;
    }
  } else if (key_less(d, idx, hd[0], hi[0])) {
    hd[0] = d;
    hi[0] = idx;
    heap_sift_down(hd, hi, *size, 0);
  }
}

static int pair_cmp(const void *a, const void *b) {
  const sd_tsne_pair *x = a, *y = b;
  if (key_less(x->d, x->i, y->d, y->i))
    return -1;
  if (key_less(y->d, y->i, x->d, x->i))
    return 1;
  return 0;
}

void sd_tsne_heap_sorted(const double *hd, const int64_t *hi, int k, sd_tsne_pair *scratch,
                         int64_t *nbr, double *dist2) {
  for (int j = 0; j < k; j++) {
    scratch[j].d = hd[j];
    scratch[j].i = hi[j];
  }
  qsort(scratch, (size_t)k, sizeof *scratch, pair_cmp);
  for (int j = 0; j < k; j++) {
    nbr[j] = scratch[j].i;
    dist2[j] = scratch[j].d;
  }
}

#define KNN_TILE_A 256
#define KNN_TILE_B 1024

/* Scans the visiting block xb [cb, d] (global rows fb..) against the own rows. */
static void knn_block(const double *xa, const double *na, int64_t ca, int64_t fa, const double *xb,
                      const double *nb, int64_t cb, int64_t fb, int d, int k, double *hd,
                      int64_t *hi, int *hsize, double *tile) {
  const double tolc = 64.0 * (double)(d + 4) * DBL_EPSILON;
  for (int64_t a0 = 0; a0 < ca; a0 += KNN_TILE_A) {
    int ta = (int)(ca - a0 < KNN_TILE_A ? ca - a0 : KNN_TILE_A);
    for (int64_t b0 = 0; b0 < cb; b0 += KNN_TILE_B) {
      int tb = (int)(cb - b0 < KNN_TILE_B ? cb - b0 : KNN_TILE_B);
      /* tile [ta, tb] = xa_rows . xb_rows^T */
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ta, tb, d, 1.0, xa + a0 * d, d,
                  xb + b0 * d, d, 0.0, tile, tb);
      for (int r = 0; r < ta; r++) {
        int64_t ia = a0 + r, ga = fa + ia;
        double *rd = hd + ia * k;
        int64_t *ri = hi + ia * k;
        int *sz = hsize + ia;
        const double *trow = tile + (size_t)r * tb;
        double nra = na[ia];
        for (int c = 0; c < tb; c++) {
          int64_t gb = fb + b0 + c;
          if (gb == ga)
            continue;
          double approx = nra + nb[b0 + c] - 2.0 * trow[c];
          if (*sz == k) {
            double tol = tolc * (nra + nb[b0 + c]) + 1e-300;
            if (approx - tol > rd[0])
              continue; /* surely farther than the k-th */
          }
          double ex = sd_tsne_dist2(xa + ia * d, xb + (b0 + c) * d, d);
          sd_tsne_heap_push(rd, ri, sz, k, ex, gb);
        }
      }
    }
  }
}

sd_status sd_tsne_knn(MPI_Comm comm, const double *x_own, int64_t count, int d, int64_t n, int k,
                      int64_t *nbr, double *dist2) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  if (k < 1 || k >= n)
    return SD_ERROR(SD_ERR_ARG, "kNN: k = %d needs 1 <= k < %lld", k, (long long)n);
  int64_t maxc = 0, f0;
  sd_shard_range(n, 0, size, &f0, &maxc); /* rank 0 has the largest block */
  size_t bufrows = (size_t)(maxc > 0 ? maxc : 1);
  sd_status st = SD_OK;
  double *buf[2] = {NULL, NULL}, *nrm[2] = {NULL, NULL}, *na = NULL, *tile = NULL, *hd = NULL;
  int64_t *hi = NULL;
  int *hsize = NULL;
  sd_tsne_pair *pairs = NULL;
  buf[0] = sd_malloc(bufrows * (size_t)d, sizeof(double), "kNN ring buffer");
  buf[1] = sd_malloc(bufrows * (size_t)d, sizeof(double), "kNN ring buffer");
  nrm[0] = sd_malloc(bufrows, sizeof(double), "kNN norms");
  nrm[1] = sd_malloc(bufrows, sizeof(double), "kNN norms");
  na = sd_malloc(bufrows, sizeof(double), "kNN norms");
  tile = sd_malloc((size_t)KNN_TILE_A * KNN_TILE_B, sizeof(double), "kNN distance tile");
  hd = sd_malloc(bufrows * (size_t)k, sizeof *hd, "kNN heaps");
  hi = sd_malloc(bufrows * (size_t)k, sizeof *hi, "kNN heaps");
  hsize = sd_calloc(bufrows, sizeof *hsize, "kNN heap sizes");
  pairs = sd_malloc((size_t)k, sizeof *pairs, "kNN pairs");
  if (!buf[0] || !buf[1] || !nrm[0] || !nrm[1] || !na || !tile || !hd || !hi || !hsize || !pairs)
    st = SD_ERR_NOMEM;
  st = sd_par_agree(comm, st);
  if (st != SD_OK)
    goto done;

  for (int64_t i = 0; i < count; i++) {
    double s = 0;
    for (int t = 0; t < d; t++)
      s += x_own[i * d + t] * x_own[i * d + t];
    na[i] = s;
  }
  int64_t fa, ca;
  sd_shard_range(n, rank, size, &fa, &ca);
  memcpy(buf[0], x_own, (size_t)count * d * sizeof(double));
  memcpy(nrm[0], na, (size_t)count * sizeof(double));
  int cur = 0;
  int next_rank = (rank + 1) % size, prev_rank = (rank - 1 + size) % size;
  for (int step = 0; step < size; step++) {
    int owner = (rank + step) % size; /* whose block is in buf[cur] */
    int64_t fb, cb;
    sd_shard_range(n, owner, size, &fb, &cb);
    MPI_Request req[4];
    int nreq = 0;
    if (step + 1 < size) {
      /* pass the current block on to the previous rank, receive the next from the following */
      int64_t fnext, cnext;
      sd_shard_range(n, (rank + step + 1) % size, size, &fnext, &cnext);
      st = sd_par_check(
          MPI_Irecv(buf[1 - cur], (int)(cnext * d), MPI_DOUBLE, next_rank, 11, comm, &req[nreq++]),
          "kNN ring receive");
      if (st == SD_OK)
        st = sd_par_check(
            MPI_Irecv(nrm[1 - cur], (int)cnext, MPI_DOUBLE, next_rank, 12, comm, &req[nreq++]),
            "kNN ring receive");
      if (st == SD_OK)
        st = sd_par_check(
            MPI_Isend(buf[cur], (int)(cb * d), MPI_DOUBLE, prev_rank, 11, comm, &req[nreq++]),
            "kNN ring send");
      if (st == SD_OK)
        st = sd_par_check(
            MPI_Isend(nrm[cur], (int)cb, MPI_DOUBLE, prev_rank, 12, comm, &req[nreq++]),
            "kNN ring send");
      if (st != SD_OK)
        SD_PAR_FATAL(comm);
    }
    knn_block(x_own, na, ca, fa, buf[cur], nrm[cur], cb, fb, d, k, hd, hi, hsize, tile);
    if (nreq) {
      st = sd_par_check(MPI_Waitall(nreq, req, MPI_STATUSES_IGNORE), "kNN ring exchange");
      if (st != SD_OK)
        SD_PAR_FATAL(comm);
      cur = 1 - cur;
    }
  }
  for (int64_t i = 0; i < count; i++) {
    if (hsize[i] != k) {
      st = SD_ERROR(SD_ERR_INTERNAL, "kNN: row %lld has %d of %d neighbours", (long long)(fa + i),
                    hsize[i], k);
      break;
    }
    sd_tsne_heap_sorted(hd + i * k, hi + i * k, k, pairs, nbr + i * k, dist2 + i * k);
  }
  st = sd_par_agree(comm, st);
done:
  free(buf[0]);
  free(buf[1]);
  free(nrm[0]);
  free(nrm[1]);
  free(na);
  free(tile);
  free(hd);
  free(hi);
  free(hsize);
  free(pairs);
  return st;
}

/* ---- perplexity calibration (the binary search of the reference method) ------------------- */

void sd_tsne_calibrate(int64_t rows, int k, const double *dist2, double perplexity, double *pcond,
                       double *beta_out, double *entropy_out, int64_t *unconverged) {
  const double target = log(perplexity), tol = 1e-5;
  int64_t bad = 0;
  for (int64_t i = 0; i < rows; i++) {
    const double *dr = dist2 + i * k;
    double *pr = pcond + i * k;
    double beta = 1.0, lo = -INFINITY, hi = INFINITY, h = 0;
    int ok = 0;
    for (int it = 0; it < 200; it++) {
      double sum = 0, dsum = 0;
      for (int j = 0; j < k; j++) {
        pr[j] = exp(-dr[j] * beta);
        sum += pr[j];
      }
      if (sum < 1e-300)
        sum = 1e-300;
      for (int j = 0; j < k; j++)
        dsum += dr[j] * pr[j];
      h = log(sum) + beta * dsum / sum;
      double diff = h - target;
      for (int j = 0; j < k; j++)
        pr[j] /= sum;
      if (fabs(diff) <= tol) {
        ok = 1;
        break;
      }
      if (diff > 0) {
        lo = beta;
        beta = isinf(hi) ? beta * 2.0 : (beta + hi) / 2.0;
      } else {
        hi = beta;
        beta = isinf(lo) ? beta / 2.0 : (beta + lo) / 2.0;
      }
    }
    if (!ok)
      bad++;
    if (beta_out)
      beta_out[i] = beta;
    if (entropy_out)
      entropy_out[i] = h;
  }
  if (unconverged)
    *unconverged = bad;
}

/* ---- symmetrisation --------------------------------------------------------------------- */

int sd_tsne_owner(int64_t n, int size, int64_t j) {
  int64_t base = n / size, extra = n % size;
  int64_t big = extra * (base + 1);
  if (j < big)
    return (int)(j / (base + 1));
  return (int)(extra + (j - big) / base);
}

typedef struct p_entry {
  int64_t row, col;
  double v;
} p_entry;

typedef struct col_val {
  int64_t col;
  double v;
} col_val;

static int col_val_cmp(const void *a, const void *b) {
  const col_val *x = a, *y = b;
  return (x->col > y->col) - (x->col < y->col);
}

void sd_tsne_affinity_destroy(sd_tsne_affinity **a) {
  if (!a || !*a)
    return;
  free((*a)->rowptr);
  free((*a)->col);
  free((*a)->val);
  free(*a);
  *a = NULL;
}

sd_status sd_tsne_symmetrize(MPI_Comm comm, int64_t n, int k, const int64_t *nbr,
                             const double *pcond, sd_tsne_affinity **out) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int64_t first, count;
  sd_shard_range(n, rank, size, &first, &count);
  *out = NULL;
  sd_status st = SD_OK;
  int *scnt = sd_calloc((size_t)size, sizeof *scnt, "alltoall counts");
  int *rcnt = sd_calloc((size_t)size, sizeof *rcnt, "alltoall counts");
  int *sdis = sd_calloc((size_t)size, sizeof *sdis, "alltoall displacements");
  int *rdis = sd_calloc((size_t)size, sizeof *rdis, "alltoall displacements");
  int64_t *fill = sd_calloc((size_t)size, sizeof *fill, "alltoall fill");
  int64_t nsend = count * k;
  p_entry *sendb = sd_malloc((size_t)(nsend > 0 ? nsend : 1), sizeof *sendb, "transposed P");
  p_entry *recvb = NULL;
  col_val *cv = NULL;
  int64_t *rowcnt = NULL;
  sd_tsne_affinity *a = sd_calloc(1, sizeof *a, "affinity");
  if (!scnt || !rcnt || !sdis || !rdis || !fill || !sendb || !a)
    st = SD_ERR_NOMEM;
  if (st == SD_OK && (double)nsend * sizeof(p_entry) > 2147483647.0)
    st = SD_ERROR(SD_ERR_ARG,
                  "t-SNE: %lld neighbour entries on one rank exceed one MPI message (2 GiB); use "
                  "more ranks or fewer neighbours",
                  (long long)nsend);
  st = sd_par_agree(comm, st);
  if (st != SD_OK)
    goto done;

  /* count and pack the transposed entries (j, i, p_{j|i}... stored as p at (j, i)) by owner */
  for (int64_t i = 0; i < count; i++)
    for (int j = 0; j < k; j++)
      scnt[sd_tsne_owner(n, size, nbr[i * k + j])]++;
  {
    int64_t off = 0;
    for (int r = 0; r < size; r++) {
      fill[r] = off;
      off += scnt[r];
    }
  }
  for (int64_t i = 0; i < count; i++)
    for (int j = 0; j < k; j++) {
      int64_t c = nbr[i * k + j];
      int r = sd_tsne_owner(n, size, c);
      p_entry e = {c, first + i, pcond[i * k + j]};
      sendb[fill[r]++] = e;
    }
  st = sd_par_check(MPI_Alltoall(scnt, 1, MPI_INT, rcnt, 1, MPI_INT, comm), "alltoall(counts)");
  if (st != SD_OK)
    SD_PAR_FATAL(comm);
  int64_t nrecv = 0;
  for (int r = 0; r < size; r++) {
    nrecv += rcnt[r];
  }
  {
    int64_t so = 0, ro = 0;
    for (int r = 0; r < size; r++) {
      sdis[r] = (int)(so * (int64_t)sizeof(p_entry));
      rdis[r] = (int)(ro * (int64_t)sizeof(p_entry));
      so += scnt[r];
      ro += rcnt[r];
      scnt[r] *= (int)sizeof(p_entry);
      rcnt[r] *= (int)sizeof(p_entry);
    }
  }
  recvb = sd_malloc((size_t)(nrecv > 0 ? nrecv : 1), sizeof *recvb, "received P entries");
  rowcnt = sd_calloc((size_t)count + 1, sizeof *rowcnt, "row counts");
  cv = sd_malloc((size_t)(count * k + nrecv + 1), sizeof *cv, "P rows");
  if (!recvb || !rowcnt || !cv || (double)nrecv * sizeof(p_entry) > 2147483647.0)
    st = SD_ERR_NOMEM;
  st = sd_par_agree(comm, st);
  if (st != SD_OK)
    goto done;
  st = sd_par_check(MPI_Alltoallv(sendb, scnt, sdis, MPI_BYTE, recvb, rcnt, rdis, MPI_BYTE, comm),
                    "alltoallv(P entries)");
  if (st != SD_OK)
    SD_PAR_FATAL(comm);

  /* rows: own k entries + received transposed entries; sort by column; merge (i,j)+(j,i) */
  for (int64_t i = 0; i < count; i++)
    rowcnt[i + 1] = k;
  for (int64_t e = 0; e < nrecv; e++)
    rowcnt[recvb[e].row - first + 1]++;
  for (int64_t i = 0; i < count; i++)
    rowcnt[i + 1] += rowcnt[i];
  {
    int64_t *pos = sd_malloc((size_t)(count > 0 ? count : 1), sizeof *pos, "row fill");
    if (!pos) {
      st = SD_ERR_NOMEM;
      goto agree;
    }
    for (int64_t i = 0; i < count; i++) {
      pos[i] = rowcnt[i];
      for (int j = 0; j < k; j++) {
        col_val c = {nbr[i * k + j], pcond[i * k + j]};
        cv[pos[i]++] = c;
      }
    }
    for (int64_t e = 0; e < nrecv; e++) {
      int64_t i = recvb[e].row - first;
      col_val c = {recvb[e].col, recvb[e].v};
      cv[pos[i]++] = c;
    }
    free(pos);
  }
  a->n = n;
  a->first = first;
  a->count = count;
  a->rowptr = sd_malloc((size_t)count + 1, sizeof *a->rowptr, "P row pointers");
  a->col = sd_malloc((size_t)(rowcnt[count] > 0 ? rowcnt[count] : 1), sizeof *a->col, "P columns");
  a->val = sd_malloc((size_t)(rowcnt[count] > 0 ? rowcnt[count] : 1), sizeof *a->val, "P values");
  if (!a->rowptr || !a->col || !a->val) {
    st = SD_ERR_NOMEM;
    goto agree;
  }
  {
    const double inv2n = 1.0 / (2.0 * (double)n);
    int64_t nnz = 0;
    for (int64_t i = 0; i < count; i++) {
      a->rowptr[i] = nnz;
      col_val *seg = cv + rowcnt[i];
      int64_t len = rowcnt[i + 1] - rowcnt[i];
      qsort(seg, (size_t)len, sizeof *seg, col_val_cmp);
      for (int64_t e = 0; e < len;) {
        double v = seg[e].v;
        int64_t c = seg[e].col;
        /* at most two entries per column: p_{j|i} and p_{i|j}; a + b is exact-order free */
        if (e + 1 < len && seg[e + 1].col == c) {
          v = v + seg[e + 1].v;
          e += 2;
        } else {
          e += 1;
        }
        a->col[nnz] = c;
        a->val[nnz] = v * inv2n;
        nnz++;
      }
    }
    a->rowptr[count] = nnz;
    a->nnz = nnz;
  }
agree:
  st = sd_par_agree(comm, st);
  if (st == SD_OK) {
    *out = a;
    a = NULL;
  }
done:
  sd_tsne_affinity_destroy(&a);
  free(scnt);
  free(rcnt);
  free(sdis);
  free(rdis);
  free(fill);
  free(sendb);
  free(recvb);
  free(cv);
  free(rowcnt);
  return st;
}
