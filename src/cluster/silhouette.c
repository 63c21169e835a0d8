/* silhouette.c - silhouette (exact over a ring of row blocks, or sampled), Calinski-Harabasz,
 * Davies-Bouldin, and the external indices against true labels.
 *
 * The per-row, per-cluster distance sums are a matrix product: for a tile of rows A (one
 * chunk) against rows B (one chunk), D = sqrt(|a|^2 + |b|^2 - 2 A B^T) (sgemm), then
 * S = D H with H the one-hot labels of B for all nk clusterings side by side (sgemm again).
 * Each tile's S is added to int64 fixed-point totals, so the order in which blocks arrive
 * (which depends on the rank count) does not change a bit. Distances are single precision
 * (relative error ~1e-6, like any float32 GEMM distance). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "fixed.h"
#include "stemdefect/cluster.h"
#include "stemdefect/log.h"
#include "stemdefect/par.h"
#include "stemdefect/rng.h"

typedef struct sil_work {
  int p, K;
  float *g;   /* [CHUNK, SUBK] */
  float *s;   /* [CHUNK, K] */
  double *sd; /* [CHUNK, K] */
  double fac;
} sil_work;

static void row_norms(const float *x, int64_t n, int p, float *xn) {
  for (int64_t i = 0; i < n; i++) {
    double s = 0;
    for (int l = 0; l < p; l++)
      s += (double)x[i * p + l] * x[i * p + l];
    xn[i] = (float)s;
  }
}

/* g[j] <- sqrt(max(a + b[j] - 2 g[j], 0)): the same operations in every path (no fused
 * multiply-add; the square root is correctly rounded), so the values do not depend on it. */
static void dist_row_sse(float *g, int n, float a, const float *b) {
  int j = 0;
#if defined(__SSE2__)
  __m128 va = _mm_set1_ps(a), vm2 = _mm_set1_ps(-2.0f), z = _mm_setzero_ps();
  for (; j + 4 <= n; j += 4) {
    __m128 v =
        _mm_add_ps(_mm_add_ps(va, _mm_loadu_ps(b + j)), _mm_mul_ps(vm2, _mm_loadu_ps(g + j)));
    _mm_storeu_ps(g + j, _mm_sqrt_ps(_mm_max_ps(v, z)));
  }
#endif
  for (; j < n; j++) {
    float v = a + b[j] - 2.0f * g[j];
    g[j] = v > 0 ? sqrtf(v) : 0.0f;
  }
}

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("avx2"))) static void dist_row_avx2(float *g, int n, float a,
                                                          const float *b) {
  int j = 0;
  __m256 va = _mm256_set1_ps(a), vm2 = _mm256_set1_ps(-2.0f), z = _mm256_setzero_ps();
  for (; j + 8 <= n; j += 8) {
    __m256 v = _mm256_add_ps(_mm256_add_ps(va, _mm256_loadu_ps(b + j)),
                             _mm256_mul_ps(vm2, _mm256_loadu_ps(g + j)));
    _mm256_storeu_ps(g + j, _mm256_sqrt_ps(_mm256_max_ps(v, z)));
  }
  dist_row_sse(g + j, n - j, a, b + j);
}
#endif

static void dist_row(float *g, int n, float a, const float *b) {
#if defined(__GNUC__) && defined(__x86_64__)
  static int avx2 = -1;
  if (avx2 < 0) {
    __builtin_cpu_init();
    avx2 = __builtin_cpu_supports("avx2");
  }
  if (avx2) {
    dist_row_avx2(g, n, a, b);
    return;
  }
#endif
  dist_row_sse(g, n, a, b);
}

/* acc[nA, K] += fixed(D(A, B) H(B)); rows of A with global index gidA[i] equal to
 * firstB + j get distance 0 to column j. The B rows go in column blocks of SD_CLUSTER_SUBK:
 * D of a block (nA x SUBK floats) stays in cache between the two products, and S = D H has no
 * inner dimension above SUBK, so OpenBLAS never splits it, whatever its thread count. The
 * blocks' S are summed in double in a fixed order. */
static void sil_tile(sil_work *w, int nA, const float *XA, const float *xnA, const int64_t *gidA,
                     int nB, const float *XB, const float *xnB, int64_t firstB, const float *HB,
                     int64_t *acc) {
  int p = w->p, K = w->K;
  memset(w->sd, 0, sizeof *w->sd * (size_t)nA * K);
  for (int j0 = 0; j0 < nB; j0 += SD_CLUSTER_SUBK) {
    int jn = nB - j0 < SD_CLUSTER_SUBK ? nB - j0 : SD_CLUSTER_SUBK;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nA, jn, p, 1.0f, XA, p,
                XB + (size_t)j0 * p, p, 0.0f, w->g, jn);
    for (int i = 0; i < nA; i++) {
      float *gi = w->g + (size_t)i * jn;
      dist_row(gi, jn, xnA[i], xnB + j0);
      int64_t self = gidA[i] - firstB - j0;
      if (self >= 0 && self < jn)
        gi[self] = 0.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nA, K, jn, 1.0f, w->g, jn,
                HB + (size_t)j0 * K, K, 0.0f, w->s, K);
    for (size_t t = 0; t < (size_t)nA * K; t++)
      w->sd[t] += w->s[t];
  }
  for (size_t t = 0; t < (size_t)nA * K; t++)
    acc[t] += sd_fix_from(w->sd[t], w->fac);
}

/* One-hot labels of n rows for all clusterings: h[n, K]. */
static void one_hot(int64_t n, int nk, const int *koff, const int32_t *lab /* [n, nk] */, int K,
                    float *h) {
  memset(h, 0, sizeof *h * (size_t)n * K);
  for (int64_t i = 0; i < n; i++)
    for (int q = 0; q < nk; q++)
      h[i * K + koff[q] + lab[i * nk + q]] = 1.0f;
}

/* s(i) from the per-cluster distance sums of one clustering. */
static double sil_value(const int64_t *acc, int e, int own, int k, const int64_t *counts) {
  if (counts[own] <= 1)
    return 0.0;
  double a = sd_fix_to(acc[own], e) / (double)(counts[own] - 1), b = INFINITY;
  for (int c = 0; c < k; c++)
    if (c != own && counts[c] > 0) {
      double v = sd_fix_to(acc[c], e) / (double)counts[c];
      if (v < b)
        b = v;
    }
  if (!isfinite(b))
    return 0.0;
  double mx = a > b ? a : b;
  return mx > 0 ? (b - a) / mx : 0.0;
}

static sd_status silhouette(MPI_Comm comm, const float *x, int64_t m_local, int64_t m, int p,
                            int nk, const int *ks, const int32_t *const *assign, int64_t sample,
                            uint64_t seed, double *mean, double *stderr_out,
                            double *const *per_cluster) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int sampled = sample > 0 && sample < m;
  int K = 0, koff[64];
  if (nk < 1 || nk > 64)
    return SD_ERROR(SD_ERR_ARG, "silhouette of %d clusterings (1..64)", nk);
  for (int q = 0; q < nk; q++) {
    koff[q] = K;
    K += ks[q];
  }
  int64_t first;
  SD_CHECK(sd_par_exscan_i64(comm, m_local, &first, NULL));
  int64_t maxrows = m_local;
  SD_CHECK(sd_par_allreduce_max_i64(comm, &maxrows, 1));
  int64_t nA = sampled ? sample : m_local; /* the rows whose silhouettes we compute */
  if (sampled && (nA * K > INT32_MAX || nA * p > INT32_MAX))
    return SD_ERROR(SD_ERR_ARG,
                    "sampled silhouette of %lld rows for %d clusters in all: more than 2^31 sums "
                    "(lower cluster.sample or the k range)",
                    (long long)nA, K);
  size_t blk_floats = (size_t)(maxrows > 0 ? maxrows : 1) * (p + 1);
  size_t blk_bytes = 2 * sizeof(int64_t) + blk_floats * sizeof(float) +
                     (size_t)(maxrows > 0 ? maxrows : 1) * nk * sizeof(int32_t);
  sil_work w = {p, K, NULL, NULL, NULL, 0};
  sd_status st = SD_OK;
  char *send = NULL, *recv = NULL;
  float *xa = NULL, *xna = NULL, *h = NULL, *own = NULL;
  int32_t *laba = NULL, *lab_own = NULL;
  int64_t *gida = NULL, *acc = NULL, *counts = NULL, *sfix = NULL;
  size_t na = (size_t)(nA > 0 ? nA : 1);
  w.g = sd_malloc((size_t)SD_CLUSTER_CHUNK * SD_CLUSTER_SUBK, sizeof *w.g, "distance tile");
  w.s = sd_malloc((size_t)SD_CLUSTER_CHUNK * K, sizeof *w.s, "cluster sums");
  w.sd = sd_malloc((size_t)SD_CLUSTER_CHUNK * K, sizeof *w.sd, "cluster sums");
  acc = sd_calloc(na * K, sizeof *acc, "silhouette sums");
  gida = sd_malloc(na, sizeof *gida, "row index");
  counts = sd_calloc((size_t)K, sizeof *counts, "cluster sizes");
  sfix = sd_calloc((size_t)K + nk, sizeof *sfix, "silhouette totals");
  if (!w.g || !w.s || !w.sd || !acc || !gida || !counts || !sfix)
    st = SD_ERR_NOMEM;
  if (st == SD_OK && !sampled) {
    send = sd_malloc(blk_bytes, 1, "ring block");
    recv = sd_malloc(blk_bytes, 1, "ring block");
    if (!send || !recv)
      st = SD_ERR_NOMEM;
  } else if (st == SD_OK) {
    xa = sd_calloc(na * (p + 1), sizeof *xa, "sample rows");
    laba = sd_calloc(na * nk, sizeof *laba, "sample labels");
    xna = sd_malloc(na, sizeof *xna, "sample norms");
    h = sd_malloc((size_t)(m_local > 0 ? m_local : 1) * K, sizeof *h, "one-hot labels");
    own = sd_malloc((size_t)(m_local > 0 ? m_local : 1), sizeof *own, "row norms");
    if (!xa || !laba || !xna || !h || !own)
      st = SD_ERR_NOMEM;
  }
  lab_own = sd_malloc((size_t)(m_local > 0 ? m_local : 1) * nk, sizeof *lab_own, "labels");
  if (!lab_own)
    st = SD_ERR_NOMEM;
  SD_CHECK_GOTO(st, sd_par_agree(comm, st), done);

  /* labels interleaved [m_local, nk], global cluster sizes, distance bound */
  double rmax = 0;
  for (int64_t i = 0; i < m_local; i++) {
    double s = 0;
    for (int l = 0; l < p; l++)
      s += (double)x[i * p + l] * x[i * p + l];
    if (s > rmax)
      rmax = s;
    for (int q = 0; q < nk; q++) {
      int32_t a = assign[q][i];
      if (a < 0 || a >= ks[q]) {
        st = SD_ERROR(SD_ERR_ARG, "silhouette: label %d of row %lld outside [0, %d)", (int)a,
                      (long long)(first + i), ks[q]);
        break;
      }
      lab_own[i * nk + q] = a;
      counts[koff[q] + a]++;
    }
    if (st != SD_OK)
      break;
  }
  SD_CHECK_GOTO(st, sd_par_agree(comm, st), done);
  SD_CHECK_GOTO(st, sd_par_allreduce_sum_i64(comm, counts, K), done);
  SD_CHECK_GOTO(st, sd_par_allreduce_max_double(comm, &rmax, 1), done);
  double dmax = 2.0 * sqrt(rmax) * 1.001 + 1e-30;
  int e = sd_fix_exponent((double)m * dmax * 1.01);
  w.fac = sd_fix_factor(e);

  if (!sampled) {
    /* exact: ring of blocks [first, rows | x (rows, p) | |x|^2 (rows) | labels (rows, nk)] */
    for (int64_t i = 0; i < m_local; i++)
      gida[i] = first + i;
    int64_t *hd = (int64_t *)send;
    hd[0] = first;
    hd[1] = m_local;
    float *bx = (float *)(hd + 2);
    memcpy(bx, x, sizeof *x * (size_t)m_local * p);
    row_norms(x, m_local, p, bx + (size_t)m_local * p);
    memcpy(bx + (size_t)m_local * (p + 1), lab_own, sizeof *lab_own * (size_t)m_local * nk);
    const float *xn_own = bx + (size_t)m_local * p;
    float *own_norms = sd_malloc((size_t)(m_local > 0 ? m_local : 1), sizeof *own_norms, "norms");
    h = sd_malloc((size_t)(maxrows > 0 ? maxrows : 1) * K, sizeof *h, "one-hot labels");
    st = sd_par_agree(comm, (own_norms && h) ? SD_OK : SD_ERR_NOMEM);
    if (st != SD_OK) {
      free(own_norms);
      goto done;
    }
    memcpy(own_norms, xn_own, sizeof *own_norms * (size_t)m_local);
    sd_progress prog;
    sd_progress_begin(&prog, "silhouette (ring steps)", size);
    for (int step = 0; step < size; step++) {
      const char *blk = step == 0 ? send : recv;
      const int64_t *bh = (const int64_t *)blk;
      int64_t bfirst = bh[0], brows = bh[1];
      const float *bxx = (const float *)(bh + 2);
      const float *bxn = bxx + (size_t)brows * p;
      const int32_t *blab = (const int32_t *)(bxn + brows);
      one_hot(brows, nk, koff, blab, K, h);
      for (int64_t a0 = 0; a0 < m_local; a0 += SD_CLUSTER_CHUNK) {
        int an = (int)(m_local - a0 < SD_CLUSTER_CHUNK ? m_local - a0 : SD_CLUSTER_CHUNK);
        for (int64_t b0 = 0; b0 < brows; b0 += SD_CLUSTER_CHUNK) {
          int bn = (int)(brows - b0 < SD_CLUSTER_CHUNK ? brows - b0 : SD_CLUSTER_CHUNK);
          sil_tile(&w, an, x + a0 * p, own_norms + a0, gida + a0, bn, bxx + b0 * p, bxn + b0,
                   bfirst + b0, h + b0 * K, acc + (size_t)a0 * K);
        }
      }
      if (step + 1 < size) {
        /* pass on what we just used: our own block first, then the one received */
        int64_t got = 0;
        const char *src = step == 0 ? send : recv;
        int64_t sb = 2 * (int64_t)sizeof(int64_t) +
                     bh[1] * (int64_t)((p + 1) * sizeof(float) + nk * sizeof(int32_t));
        if (src == recv) {
          memcpy(send, recv, (size_t)sb);
        }
        st = sd_par_ring_shift(comm, send, sb, recv, (int64_t)blk_bytes, &got);
        if (st != SD_OK)
          break;
      }
      sd_progress_update(&prog, step + 1);
    }
    if (st == SD_OK)
      sd_progress_end(&prog);
    free(own_norms);
    if (st != SD_OK)
      goto done;
  } else {
    /* sampled: `sample` distinct rows by selection sampling (Knuth's algorithm S) with a
     * stream every rank draws the same way; their rows reach every rank (owners add, the
     * others add zeros), then each rank adds its rows' distance sums */
    sd_rng rng;
    sd_rng_init(&rng, seed, 0x53494C, SD_RNG_STREAM_KMEANS);
    int64_t t = 0;
    for (int64_t i = 0; i < m && t < sample; i++)
      if ((double)(m - i) * sd_rng_uniform(&rng) < (double)(sample - t))
        gida[t++] = i;
    nA = t;
    for (int64_t s = 0; s < nA; s++) {
      int64_t r = gida[s] - first;
      if (r >= 0 && r < m_local) {
        for (int l = 0; l < p; l++)
          xa[s * p + l] = x[r * p + l];
        for (int q = 0; q < nk; q++)
          laba[s * nk + q] = lab_own[r * nk + q] + 1;
      }
    }
    double *tmp = sd_malloc(na * p, sizeof *tmp, "sample rows");
    int64_t *ltmp = sd_malloc(na * nk, sizeof *ltmp, "sample labels");
    st = sd_par_agree(comm, (tmp && ltmp) ? SD_OK : SD_ERR_NOMEM);
    if (st == SD_OK) {
      for (size_t i = 0; i < (size_t)nA * p; i++)
        tmp[i] = xa[i];
      for (size_t i = 0; i < (size_t)nA * nk; i++)
        ltmp[i] = laba[i];
      st = sd_par_allreduce_sum_double(comm, tmp, (int)(nA * p));
      if (st == SD_OK)
        st = sd_par_allreduce_sum_i64(comm, ltmp, (int)(nA * nk));
      for (size_t i = 0; i < (size_t)nA * p; i++)
        xa[i] = (float)tmp[i];
      for (size_t i = 0; i < (size_t)nA * nk; i++)
        laba[i] = (int32_t)ltmp[i] - 1;
    }
    free(tmp);
    free(ltmp);
    if (st != SD_OK)
      goto done;
    row_norms(xa, nA, p, xna);
    row_norms(x, m_local, p, own);
    one_hot(m_local, nk, koff, lab_own, K, h);
    for (int64_t a0 = 0; a0 < nA; a0 += SD_CLUSTER_CHUNK) {
      int an = (int)(nA - a0 < SD_CLUSTER_CHUNK ? nA - a0 : SD_CLUSTER_CHUNK);
      for (int64_t b0 = 0; b0 < m_local; b0 += SD_CLUSTER_CHUNK) {
        int bn = (int)(m_local - b0 < SD_CLUSTER_CHUNK ? m_local - b0 : SD_CLUSTER_CHUNK);
        sil_tile(&w, an, xa + a0 * p, xna + a0, gida + a0, bn, x + b0 * p, own + b0, first + b0,
                 h + b0 * K, acc + (size_t)a0 * K);
      }
    }
    SD_CHECK_GOTO(st, sd_par_allreduce_sum_i64(comm, acc, (int)(nA * K)), done);
  }

  /* per-row silhouettes -> fixed-point totals: [per cluster sums (K) | per clustering (nk)] and
   * the sum of squares for the standard error (sampled: replicated, computed in order) */
  {
    const int32_t *lab = sampled ? laba : lab_own;
    double ef = sd_fix_factor(sd_fix_exponent((double)m * 1.0001));
    int es = sd_fix_exponent((double)m * 1.0001);
    double *sq = sd_calloc((size_t)nk, sizeof *sq, "squares");
    if (!sq) {
      st = SD_ERR_NOMEM;
      goto done;
    }
    int64_t rows_here = sampled ? (rank == 0 ? nA : 0) : m_local; /* sampled: rank 0 sums */
    int64_t *ccount = sd_calloc((size_t)K, sizeof *ccount, "sampled sizes");
    if (!ccount) {
      free(sq);
      st = SD_ERR_NOMEM;
      goto done;
    }
    for (int64_t i = 0; i < rows_here; i++)
      for (int q = 0; q < nk; q++) {
        int o = lab[i * nk + q];
        double s = sil_value(acc + (size_t)i * K + koff[q], e, o, ks[q], counts + koff[q]);
        int64_t v = sd_fix_from(s, ef);
        sfix[koff[q] + o] += v;
        sfix[K + q] += v;
        sq[q] += s * s;
        ccount[koff[q] + o]++;
      }
    if (!sampled)
      memcpy(ccount, counts, sizeof *ccount * (size_t)K);
    st = sd_par_allreduce_sum_i64(comm, sfix, K + nk);
    if (st == SD_OK && sampled)
      st = sd_par_allreduce_sum_i64(comm, ccount, K);
    if (st == SD_OK && sampled)
      st = sd_par_allreduce_sum_double(comm, sq, nk); /* rank 0 only */
    if (st == SD_OK) {
      int64_t nrows = sampled ? nA : m;
      for (int q = 0; q < nk; q++) {
        double mu = sd_fix_to(sfix[K + q], es) / (double)nrows;
        if (mean)
          mean[q] = mu;
        if (stderr_out) {
          double var = nrows > 1 ? fmax(sq[q] / nrows - mu * mu, 0.0) * nrows / (nrows - 1) : 0;
          stderr_out[q] = sampled ? sqrt(var / nrows) * sqrt(1.0 - (double)nrows / m) : 0.0;
        }
        if (per_cluster && per_cluster[q])
          for (int c = 0; c < ks[q]; c++) {
            int64_t n = ccount[koff[q] + c];
            per_cluster[q][c] = n > 0 ? sd_fix_to(sfix[koff[q] + c], es) / (double)n : NAN;
          }
      }
    }
    free(sq);
    free(ccount);
  }
done:
  free(w.g);
  free(w.s);
  free(w.sd);
  free(send);
  free(recv);
  free(xa);
  free(xna);
  free(h);
  free(own);
  free(laba);
  free(lab_own);
  free(gida);
  free(acc);
  free(counts);
  free(sfix);
  return st;
}

sd_status sd_km_silhouette(MPI_Comm comm, const float *x, int64_t m_local, int64_t m, int p, int nk,
                           const int *ks, const int32_t *const *assign, int64_t sample,
                           uint64_t seed, double *mean, double *stderr_out,
                           double *const *per_cluster) {
  int nt = sd_blas_single_begin();
  sd_status st = silhouette(comm, x, m_local, m, p, nk, ks, assign, sample, seed, mean, stderr_out,
                            per_cluster);
  sd_blas_single_end(nt);
  return st;
}

sd_status sd_km_indices(MPI_Comm comm, const float *x, int64_t m_local, int64_t m, int p,
                        const int32_t *assign, int k, double *calinski_harabasz,
                        double *davies_bouldin) {
  if (k < 2)
    return SD_ERROR(SD_ERR_ARG, "cluster indices need k >= 2 (got %d)", k);
  sd_status st = SD_OK;
  size_t kp = (size_t)k * p;
  double *part = sd_malloc(kp + p, sizeof *part, "sums");
  double *cent = sd_malloc(kp, sizeof *cent, "means");
  double *mx = sd_calloc((size_t)p + 1, sizeof *mx, "bounds");
  int64_t *acc = sd_calloc(kp + k + p + 1 + k, sizeof *acc, "sums");
  int *ex = sd_malloc((size_t)p, sizeof *ex, "exponents");
  double *fac = sd_malloc((size_t)p, sizeof *fac, "factors");
  double *dpart = sd_malloc((size_t)k + 1, sizeof *dpart, "distance sums");
  if (!part || !cent || !mx || !acc || !ex || !fac || !dpart)
    st = SD_ERR_NOMEM;
  SD_CHECK_GOTO(st, sd_par_agree(comm, st), done);
  for (int64_t i = 0; i < m_local; i++) {
    double s = 0;
    for (int l = 0; l < p; l++) {
      double v = fabs((double)x[i * p + l]);
      if (v > mx[l])
        mx[l] = v;
      s += v * v;
    }
    if (s > mx[p])
      mx[p] = s;
  }
  SD_CHECK_GOTO(st, sd_par_allreduce_max_double(comm, mx, p + 1), done);
  for (int l = 0; l < p; l++) {
    ex[l] = sd_fix_exponent((double)m * mx[l] * 1.0001);
    fac[l] = sd_fix_factor(ex[l]);
  }
  /* pass 1: per-cluster sums and counts; column sums for the global mean */
  int64_t *csum = acc, *cnt = acc + kp, *gsum = acc + kp + k;
  for (int64_t c0 = 0; c0 < m_local; c0 += SD_CLUSTER_CHUNK) {
    int64_t nb = m_local - c0 < SD_CLUSTER_CHUNK ? m_local - c0 : SD_CLUSTER_CHUNK;
    memset(part, 0, sizeof *part * (kp + p));
    for (int64_t i = c0; i < c0 + nb; i++) {
      int a = assign[i];
      for (int l = 0; l < p; l++) {
        part[(size_t)a * p + l] += x[i * p + l];
        part[kp + l] += x[i * p + l];
      }
      cnt[a]++;
    }
    for (size_t t = 0; t < kp; t++)
      csum[t] += sd_fix_from(part[t], fac[t % p]);
    for (int l = 0; l < p; l++)
      gsum[l] += sd_fix_from(part[kp + l], fac[l]);
  }
  SD_CHECK_GOTO(st, sd_par_allreduce_sum_i64(comm, acc, (int)(kp + k + p)), done);
  int nonempty = 0;
  for (int a = 0; a < k; a++) {
    if (cnt[a] > 0)
      nonempty++;
    for (int l = 0; l < p; l++)
      cent[(size_t)a * p + l] =
          cnt[a] > 0 ? sd_fix_to(csum[(size_t)a * p + l], ex[l]) / (double)cnt[a] : 0.0;
  }
  /* pass 2: within-cluster squared distances (CH) and mean distances to the mean (DB) */
  double dbound = 2.0 * sqrt(mx[p]) * 1.001 + 1e-30;
  int ew = sd_fix_exponent((double)m * dbound * dbound * 1.01),
      ed = sd_fix_exponent((double)m * dbound * 1.01);
  double fw = sd_fix_factor(ew), fd = sd_fix_factor(ed);
  int64_t *dsum = acc + kp + k + p + 1; /* [k] */
  int64_t *wsum = acc + kp + k + p;     /* [1] */
  for (int64_t c0 = 0; c0 < m_local; c0 += SD_CLUSTER_CHUNK) {
    int64_t nb = m_local - c0 < SD_CLUSTER_CHUNK ? m_local - c0 : SD_CLUSTER_CHUNK;
    memset(dpart, 0, sizeof *dpart * ((size_t)k + 1));
    for (int64_t i = c0; i < c0 + nb; i++) {
      int a = assign[i];
      double s = 0;
      for (int l = 0; l < p; l++) {
        double t = (double)x[i * p + l] - cent[(size_t)a * p + l];
        s += t * t;
      }
      dpart[k] += s;
      dpart[a] += sqrt(s);
    }
    *wsum += sd_fix_from(dpart[k], fw);
    for (int a = 0; a < k; a++)
      dsum[a] += sd_fix_from(dpart[a], fd);
  }
  SD_CHECK_GOTO(st, sd_par_allreduce_sum_i64(comm, wsum, k + 1), done);
  double W = sd_fix_to(*wsum, ew), B = 0;
  for (int a = 0; a < k; a++) {
    double s = 0;
    for (int l = 0; l < p; l++) {
      double g = sd_fix_to(gsum[l], ex[l]) / (double)m, t = cent[(size_t)a * p + l] - g;
      s += t * t;
    }
    B += (double)cnt[a] * s;
  }
  if (calinski_harabasz)
    *calinski_harabasz = W > 0 ? (B * (double)(m - k)) / (W * (double)(k - 1)) : 1.0;
  if (davies_bouldin) {
    double db = 0;
    for (int a = 0; a < k; a++) {
      if (cnt[a] == 0)
        continue;
      double sa = sd_fix_to(dsum[a], ed) / (double)cnt[a], worst = 0;
      for (int b = 0; b < k; b++) {
        if (b == a || cnt[b] == 0)
          continue;
        double sb = sd_fix_to(dsum[b], ed) / (double)cnt[b], dc = 0;
        for (int l = 0; l < p; l++) {
          double t = cent[(size_t)a * p + l] - cent[(size_t)b * p + l];
          dc += t * t;
        }
        dc = sqrt(dc);
        double r = dc > 0 ? (sa + sb) / dc : INFINITY;
        if (r > worst)
          worst = r;
      }
      db += worst;
    }
    *davies_bouldin = nonempty > 0 ? db / nonempty : 0.0;
  }
done:
  free(part);
  free(cent);
  free(mx);
  free(acc);
  free(ex);
  free(fac);
  free(dpart);
  return st;
}

static double comb2(double n) {
  return n * (n - 1) / 2;
}

void sd_cluster_external(const int64_t *n, int nr, int nc, double *ari, double *nmi,
                         double *purity) {
  double tot = 0, sij = 0, sa = 0, sb = 0, mi = 0, hu = 0, hv = 0, pur = 0;
  for (int r = 0; r < nr; r++)
    for (int c = 0; c < nc; c++)
      tot += (double)n[r * nc + c];
  for (int r = 0; r < nr; r++) {
    double a = 0;
    for (int c = 0; c < nc; c++)
      a += (double)n[r * nc + c];
    sa += comb2(a);
    if (a > 0)
      hu -= a / tot * log(a / tot);
  }
  for (int c = 0; c < nc; c++) {
    double b = 0, mx = 0;
    for (int r = 0; r < nr; r++) {
      double v = (double)n[r * nc + c];
      b += v;
      if (v > mx)
        mx = v;
    }
    sb += comb2(b);
    pur += mx;
    if (b > 0)
      hv -= b / tot * log(b / tot);
  }
  for (int r = 0; r < nr; r++) {
    double a = 0;
    for (int c = 0; c < nc; c++)
      a += (double)n[r * nc + c];
    for (int c = 0; c < nc; c++) {
      double v = (double)n[r * nc + c];
      sij += comb2(v);
      if (v > 0) {
        double b = 0;
        for (int q = 0; q < nr; q++)
          b += (double)n[q * nc + c];
        mi += v / tot * log(v * tot / (a * b));
      }
    }
  }
  if (ari) {
    double expected = tot > 1 ? sa * sb / comb2(tot) : 0, mx = 0.5 * (sa + sb);
    *ari = (mx - expected) != 0 ? (sij - expected) / (mx - expected) : 1.0;
  }
  if (nmi) {
    double den = 0.5 * (hu + hv);
    *nmi = den > 0 ? fmax(mi, 0.0) / den : 1.0;
  }
  if (purity)
    *purity = tot > 0 ? pur / tot : 0.0;
}

sd_status sd_cluster_contingency(MPI_Comm comm, const int32_t *labels, const int32_t *clusters,
                                 int64_t m_local, int nr, int nc, int64_t *table) {
  memset(table, 0, sizeof *table * (size_t)nr * nc);
  for (int64_t i = 0; i < m_local; i++) {
    int r = labels[i], c = clusters[i];
    if (r < 0 || r >= nr || c < 0 || c >= nc)
      continue;
    table[(size_t)r * nc + c]++;
  }
  return sd_par_allreduce_sum_i64(comm, table, nr * nc);
}
