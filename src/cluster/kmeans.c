/* kmeans.c - distributed Lloyd k-means with k-means++ / k-means|| initialisation, restarts
 * and empty-cluster repair, bitwise independent of the rank count (see cluster.h).
 *
 * One iteration: each rank assigns its rows chunk by chunk (sgemm of the chunk against the
 * float centroids, |x|^2 + |c|^2 - 2 x.c, a double re-check of close calls), accumulates
 * per-cluster sums per chunk in double, adds them to int64 fixed-point totals, and one
 * MPI_Allreduce of [sums | counts | changed] makes the new centroids. The objective of an
 * assignment against the centroids it was made with is computed from those exact sums:
 * J = sum|x|^2 - 2 sum_a c_a.S_a + sum_a n_a |c_a|^2. */
#include <cblas.h>
#include <float.h>
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

typedef struct km_ctx {
  MPI_Comm comm;
  const float *x;
  int64_t m_local, m, first; /* first: global index of local row 0 */
  int p, k;
  double *xn;      /* [m_local] |x|^2 */
  double *dmin;    /* [m_local] squared distance to the assigned centroid */
  int k8;          /* k rounded up to a multiple of 8 */
  float *cb;       /* [k8, p, 8] -2 c in float, each value 8 times (padding: 0; aligned) */
  double *cn;      /* [k] |c|^2 */
  float *cnb;      /* [k8] |c|^2 in float (padding: +inf) */
  float *xt;       /* [p, 8] 8 rows transposed (64-byte aligned) */
  int32_t *a1;     /* [CHUNK] best centroid */
  int *closeidx;   /* [CHUNK] close calls of a chunk (decided in double) */
  int64_t *cnt;    /* [4, k] chunk counts */
  double *part;    /* [4, k, p] chunk partial sums */
  int64_t *acc;    /* [k*p + k + 1]: sums, counts, changed */
  int *ex;         /* [p] fixed-point exponents of the column sums */
  double *fac;     /* [p] */
  double x2;       /* global sum |x|^2 */
  double var_mean; /* mean column variance (tolerance scale) */
  double *rowbuf;  /* [p + 1] */
} km_ctx;

static void km_ctx_free(km_ctx *c) {
  free(c->xn);
  free(c->dmin);
  free(c->cb);
  free(c->cn);
  free(c->cnb);
  free(c->xt);
  free(c->closeidx);
  free(c->cnt);
  free(c->a1);
  free(c->part);
  free(c->acc);
  free(c->ex);
  free(c->fac);
  free(c->rowbuf);
}

static double dist2_exact(const float *x, const double *c, int p) {
  double s = 0;
  for (int l = 0; l < p; l++) {
    double t = (double)x[l] - c[l];
    s += t * t;
  }
  return s;
}

static double dist2_exact_d(const double *x, const double *c, int p) {
  double s = 0;
  for (int l = 0; l < p; l++) {
    double t = x[l] - c[l];
    s += t * t;
  }
  return s;
}

/* Global row `row` into buf[p] on every rank (its owner contributes, the others add zeros). */
static sd_status fetch_row(km_ctx *c, int64_t row, double *buf) {
  for (int l = 0; l < c->p; l++)
    buf[l] = 0;
  if (row >= c->first && row < c->first + c->m_local)
    for (int l = 0; l < c->p; l++)
      buf[l] = c->x[(row - c->first) * c->p + l];
  return sd_par_allreduce_sum_double(c->comm, buf, c->p);
}

/* The global row with the largest dmin (lowest index on ties), its dmin set to -1. */
static sd_status farthest_row(km_ctx *c, double *buf) {
  double best = -1;
  int64_t bi = INT64_MAX;
  for (int64_t i = 0; i < c->m_local; i++)
    if (c->dmin[i] > best) {
      best = c->dmin[i];
      bi = c->first + i;
    }
  double g = best;
  SD_CHECK(sd_par_allreduce_max_double(c->comm, &g, 1));
  int64_t cand = (best == g) ? -bi : -INT64_MAX;
  SD_CHECK(sd_par_allreduce_max_i64(c->comm, &cand, 1));
  int64_t row = -cand;
  if (row >= c->first && row < c->first + c->m_local)
    c->dmin[row - c->first] = -1;
  return fetch_row(c, row, buf);
}

/* Sampling index t in [0, total) of fixed-point weights w (local rows) -> global row. */
static sd_status sample_weighted(km_ctx *c, const int64_t *w, sd_rng *rng, int64_t *row) {
  int64_t local = 0;
  for (int64_t i = 0; i < c->m_local; i++)
    local += w[i];
  int64_t off, total;
  SD_CHECK(sd_par_exscan_i64(c->comm, local, &off, &total));
  if (total <= 0) {
    *row = (int64_t)sd_rng_below(rng, (uint64_t)c->m);
    return SD_OK;
  }
  int64_t t = (int64_t)sd_rng_below(rng, (uint64_t)total);
  int64_t found = -1;
  if (t >= off && t < off + local) {
    int64_t cum = off;
    for (int64_t i = 0; i < c->m_local; i++) {
      cum += w[i];
      if (cum > t) {
        found = c->first + i;
        break;
      }
    }
  }
  SD_CHECK(sd_par_allreduce_max_i64(c->comm, &found, 1));
  *row = found;
  return SD_OK;
}

/* dmin -> int64 weights with a global scale. */
static sd_status weights_from_dmin(km_ctx *c, int64_t *w) {
  double mx = 0;
  for (int64_t i = 0; i < c->m_local; i++)
    mx = fmax(mx, c->dmin[i]);
  SD_CHECK(sd_par_allreduce_max_double(c->comm, &mx, 1));
  double f = sd_fix_factor(sd_fix_exponent((double)c->m * mx * 1.0001));
  for (int64_t i = 0; i < c->m_local; i++)
    w[i] = sd_fix_from(fmax(c->dmin[i], 0.0), f);
  return SD_OK;
}

static sd_status init_plusplus(km_ctx *c, sd_rng *rng, double *cent, int64_t *w) {
  int p = c->p;
  int64_t r0 = (int64_t)sd_rng_below(rng, (uint64_t)c->m);
  SD_CHECK(fetch_row(c, r0, cent));
  for (int64_t i = 0; i < c->m_local; i++)
    c->dmin[i] = dist2_exact(c->x + i * p, cent, p);
  for (int a = 1; a < c->k; a++) {
    SD_CHECK(weights_from_dmin(c, w));
    int64_t row;
    SD_CHECK(sample_weighted(c, w, rng, &row));
    SD_CHECK(fetch_row(c, row, cent + (size_t)a * p));
    for (int64_t i = 0; i < c->m_local; i++) {
      double d = dist2_exact(c->x + i * p, cent + (size_t)a * p, p);
      if (d < c->dmin[i])
        c->dmin[i] = d;
    }
  }
  return SD_OK;
}

static double row_uniform(uint64_t seed, uint64_t stream, int64_t row) {
  uint64_t h = sd_rng_mix64(
      seed ^ sd_rng_mix64(stream ^ sd_rng_mix64((uint64_t)row + 0x9E3779B97F4A7C15ull)));
  return (double)(h >> 11) * 0x1.0p-53;
}

/* k-means|| (Bahmani et al. 2012): 5 rounds, each row joins with probability l d^2 / phi
 * (l = 2k, a per-row hash of (seed, restart, round, row): rank independent); the candidates
 * are gathered in global row order, weighted by the rows closest to them, and reduced to k
 * by weighted k-means++ on every rank (the same computation everywhere). */
static sd_status init_parallel(km_ctx *c, sd_rng *rng, uint64_t seed, int restart, double *cent,
                               int64_t *w) {
  int p = c->p, k = c->k;
  sd_status st = SD_OK;
  int cap = 1 + 5 * 2 * k * 4 + k, nc = 1;
  double *cand = sd_malloc((size_t)cap * p, sizeof *cand, "k-means|| candidates");
  double *cw = NULL, *best = NULL;
  int32_t *owner = sd_malloc((size_t)(c->m_local ? c->m_local : 1), sizeof *owner, "owner");
  st = sd_par_agree(c->comm, (cand && owner) ? SD_OK : SD_ERR_NOMEM);
  if (st != SD_OK)
    goto done;
  int64_t r0 = (int64_t)sd_rng_below(rng, (uint64_t)c->m);
  SD_CHECK_GOTO(st, fetch_row(c, r0, cand), done);
  for (int64_t i = 0; i < c->m_local; i++) {
    c->dmin[i] = dist2_exact(c->x + i * p, cand, p);
    owner[i] = 0;
  }
  double l = 2.0 * k;
  for (int round = 0; round < 5; round++) {
    SD_CHECK_GOTO(st, weights_from_dmin(c, w), done);
    int64_t wl = 0;
    for (int64_t i = 0; i < c->m_local; i++)
      wl += w[i];
    int64_t woff, wtot;
    SD_CHECK_GOTO(st, sd_par_exscan_i64(c->comm, wl, &woff, &wtot), done);
    if (wtot <= 0)
      break;
    uint64_t stream = ((uint64_t)restart << 8) | (uint64_t)round | 0x4B4D00000000ull;
    int64_t sel = 0;
    for (int64_t i = 0; i < c->m_local; i++)
      if (row_uniform(seed, stream, c->first + i) * (double)wtot < l * (double)w[i])
        sel++;
    int64_t off, tot;
    SD_CHECK_GOTO(st, sd_par_exscan_i64(c->comm, sel, &off, &tot), done);
    if (tot > cap - nc)
      tot = cap - nc; /* rare: more than 4x the expected count */
    if (tot <= 0)
      continue;
    double *nw = cand + (size_t)nc * p;
    memset(nw, 0, sizeof *nw * (size_t)tot * p);
    int64_t j = off;
    for (int64_t i = 0; i < c->m_local; i++)
      if (row_uniform(seed, stream, c->first + i) * (double)wtot < l * (double)w[i]) {
        if (j < tot)
          for (int q = 0; q < p; q++)
            nw[j * p + q] = c->x[i * p + q];
        j++;
      }
    SD_CHECK_GOTO(st, sd_par_allreduce_sum_double(c->comm, nw, (int)(tot * p)), done);
    for (int64_t i = 0; i < c->m_local; i++)
      for (int64_t t = 0; t < tot; t++) {
        double d = dist2_exact(c->x + i * p, nw + t * p, p);
        if (d < c->dmin[i]) {
          c->dmin[i] = d;
          owner[i] = (int32_t)(nc + t);
        }
      }
    nc += (int)tot;
  }
  /* weights: rows closest to each candidate */
  int64_t *cnt = sd_calloc((size_t)nc, sizeof *cnt, "candidate weights");
  cw = sd_malloc((size_t)nc, sizeof *cw, "candidate weights");
  best = sd_malloc((size_t)nc, sizeof *best, "candidate distances");
  st = sd_par_agree(c->comm, (cnt && cw && best) ? SD_OK : SD_ERR_NOMEM);
  if (st != SD_OK) {
    free(cnt);
    goto done;
  }
  for (int64_t i = 0; i < c->m_local; i++)
    cnt[owner[i]]++;
  st = sd_par_allreduce_sum_i64(c->comm, cnt, nc);
  for (int t = 0; t < nc; t++)
    cw[t] = (double)cnt[t];
  free(cnt);
  if (st != SD_OK)
    goto done;
  /* weighted k-means++ on the candidates (replicated, serial) */
  int taken = 0;
  {
    double tw = 0;
    for (int t = 0; t < nc; t++)
      tw += cw[t];
    double u = sd_rng_uniform(rng) * tw, cum = 0;
    int pick = nc - 1;
    for (int t = 0; t < nc; t++) {
      cum += cw[t];
      if (cum > u) {
        pick = t;
        break;
      }
    }
    memcpy(cent, cand + (size_t)pick * p, sizeof *cent * p);
    taken = 1;
    for (int t = 0; t < nc; t++)
      best[t] = dist2_exact_d(cand + (size_t)t * p, cent, p);
  }
  for (; taken < k; taken++) {
    double tot = 0;
    for (int t = 0; t < nc; t++)
      tot += cw[t] * best[t];
    int pick = -1;
    if (tot > 0) {
      double u = sd_rng_uniform(rng) * tot, cum = 0;
      for (int t = 0; t < nc; t++) {
        cum += cw[t] * best[t];
        if (cum > u && cw[t] * best[t] > 0) {
          pick = t;
          break;
        }
      }
    }
    double *ca = cent + (size_t)taken * p;
    if (pick < 0) { /* fewer distinct candidates than k: a random row (repaired if empty) */
      SD_CHECK_GOTO(st, fetch_row(c, (int64_t)sd_rng_below(rng, (uint64_t)c->m), ca), done);
    } else {
      memcpy(ca, cand + (size_t)pick * p, sizeof *ca * p);
    }
    for (int t = 0; t < nc; t++) {
      double d = dist2_exact_d(cand + (size_t)t * p, ca, p);
      if (d < best[t])
        best[t] = d;
    }
  }
done:
  free(cand);
  free(cw);
  free(best);
  free(owner);
  return st;
}

/* ---- the distance and accumulation kernels of one chunk ------------------------------------
 * Distances are computed for 8 rows at a time (one SIMD lane per row): the rows are
 * transposed into xt [p][8], and for each centroid a, v = |c_a|^2 + sum_l (-2 c_al) x_l is
 * accumulated from coefficients stored 8 times over (cb [k8][p][8]), so every step is one
 * multiply-add with a memory operand. Padded centroids have |c|^2 = +inf and never win. The
 * value of a row does not depend on its neighbours or on the chunk it is in, and the minimum
 * is taken over a in ascending order with a strict comparison (the first index wins).
 * Float rounding here only decides calls that are clear by the margin in estep; closer calls
 * are decided in double, so the assignment does not depend on the path (AVX2+FMA or not). */
#define KM_LANES 8

/* The epilogue of a row: its distance to the winner (xn + f1, at least 0) into dmin (may be
 * NULL), and whether the call is close (second best within the float error margin). Rows that
 * are not close get their new assignment in asg and count in the returned number of changes;
 * close rows are listed in closeidx (their asg is left for the caller to decide in double). */
static int64_t best_two_generic(const float *xc, int nb, int p, int k8, const float *cb,
                                const float *cnb, const double *xn, double rel, double cmax,
                                int32_t *asg, int32_t *a1o, double *dmin, int *closeidx,
                                int *nclose) {
  int64_t changed = 0;
  int nc = 0;
  for (int i = 0; i < nb; i++) {
    const float *x = xc + (size_t)i * p;
    float f1 = INFINITY, f2 = INFINITY;
    int a1 = 0;
    for (int a = 0; a < k8; a++) {
      float v = cnb[a];
      for (int l = 0; l < p; l++)
        v += cb[((size_t)a * p + l) * KM_LANES] * x[l];
      int lt = v < f1;
      float m2 = v < f2 ? v : f2;
      f2 = lt ? f1 : m2;
      f1 = lt ? v : f1;
      a1 = lt ? a : a1;
    }
    double b1 = xn[i] + (double)f1;
    a1o[i] = a1;
    if (dmin)
      dmin[i] = b1 > 0 ? b1 : 0;
    if ((double)f2 - (double)f1 <= rel * (xn[i] + cmax) + 1e-300) {
      closeidx[nc++] = i;
    } else {
      changed += asg[i] != a1;
      asg[i] = a1;
    }
  }
  *nclose = nc;
  return changed;
}

/* part [4][k][p] += rows of xc by assignment and cnt [4][k] += 1; row i goes to copy i % 4, so
 * consecutive rows of one cluster do not wait for each other's stores */
static void accumulate_generic(const float *xc, int nb, int p, int k, const int32_t *a1,
                               double *part, int64_t *cnt) {
  for (int i = 0; i < nb; i++) {
    cnt[(i & 3) * k + a1[i]]++;
    double *pa = part + ((size_t)(i & 3) * k + a1[i]) * p;
    const float *x = xc + (size_t)i * p;
    for (int l = 0; l < p; l++)
      pa[l] += x[l];
  }
}

#if defined(__GNUC__) && defined(__x86_64__)
#include "simd_x86.h"
#define KM_HAVE_AVX2 SD_CL_HAVE_AVX2
#define KM_AVX2 SD_CL_AVX2


/* xt [p][8] (64-byte aligned) from rows i0 .. i0+7 of xc (rows past nb read as zero) */
KM_AVX2 static void load_block(const float *xc, int nb, int i0, int p, float *xt) {
  int n = nb - i0 < KM_LANES ? nb - i0 : KM_LANES, l = 0;
  if (n == KM_LANES)
    for (; l + 8 <= p; l += 8) {
      __m256 r[8];
#pragma GCC unroll 8
      for (int j = 0; j < 8; j++)
        r[j] = _mm256_loadu_ps(xc + (size_t)(i0 + j) * p + l);
      sd_cl_transpose8(r);
#pragma GCC unroll 8
      for (int j = 0; j < 8; j++)
        _mm256_store_ps(xt + (size_t)(l + j) * KM_LANES, r[j]);
    }
  for (; l < p; l++)
    for (int j = 0; j < KM_LANES; j++)
      xt[(size_t)l * KM_LANES + j] = j < n ? xc[(size_t)(i0 + j) * p + l] : 0.0f;
}

KM_AVX2 static int64_t best_two_avx2(const float *xc, int nb, int p, int k8, const float *cb,
                                     const float *cnb, float *xt, const double *xn, double rel,
                                     double cmax, int32_t *asg, int32_t *a1o, double *dmin,
                                     int *closeidx, int *nclose, const float *xend) {
  int64_t changed = 0;
  int nc = 0;
  const __m256i bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256d vrel = _mm256_set1_pd(rel), vcmax = _mm256_set1_pd(cmax),
                tiny = _mm256_set1_pd(1e-300), zero = _mm256_setzero_pd();
  for (int i0 = 0; i0 < nb; i0 += KM_LANES) {
    /* the rows come from memory once per iteration: ask for them 4 blocks ahead (into the
     * next chunk, up to the end of the rank's rows xend) */
    size_t ahead = (size_t)(i0 + 4 * KM_LANES) * p;
    if (ahead < (size_t)(xend - xc)) {
      const char *pf = (const char *)(xc + ahead), *end = (const char *)xend;
      for (size_t o = 0; o < sizeof(float) * KM_LANES * (size_t)p && pf + o < end; o += 64)
        _mm_prefetch(pf + o, _MM_HINT_T0);
    }
    load_block(xc, nb, i0, p, xt);
    __m256 f1 = _mm256_set1_ps(INFINITY), f2 = f1;
    __m256i a1 = _mm256_setzero_si256();
    for (int ab = 0; ab < k8; ab += 8) {
      __m256 acc[8];
#pragma GCC unroll 8
      for (int j = 0; j < 8; j++)
        acc[j] = _mm256_set1_ps(cnb[ab + j]);
      const float *cbb = cb + (size_t)ab * p * KM_LANES;
      for (int l = 0; l < p; l++) {
        __m256 xl = _mm256_load_ps(xt + (size_t)l * KM_LANES);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
          acc[j] =
              _mm256_fmadd_ps(_mm256_load_ps(cbb + ((size_t)j * p + l) * KM_LANES), xl, acc[j]);
      }
#pragma GCC unroll 8
      for (int j = 0; j < 8; j++) {
        __m256 v = acc[j];
        __m256 lt = _mm256_cmp_ps(v, f1, _CMP_LT_OQ);
        __m256 m2 = _mm256_min_ps(v, f2); /* v < f2 ? v : f2 */
        f2 = _mm256_blendv_ps(m2, f1, lt);
        f1 = _mm256_blendv_ps(f1, v, lt);
        a1 = _mm256_castps_si256(_mm256_blendv_ps(
            _mm256_castsi256_ps(a1), _mm256_castsi256_ps(_mm256_set1_epi32(ab + j)), lt));
      }
    }
    if (nb - i0 >= KM_LANES) {
      _mm256_storeu_si256((__m256i *)(a1o + i0), a1);
      int m = 0;
      for (int h = 0; h < 2; h++) {
        __m128 f1h = h ? _mm256_extractf128_ps(f1, 1) : _mm256_castps256_ps128(f1);
        __m128 f2h = h ? _mm256_extractf128_ps(f2, 1) : _mm256_castps256_ps128(f2);
        __m256d f1d = _mm256_cvtps_pd(f1h), f2d = _mm256_cvtps_pd(f2h);
        __m256d x = _mm256_loadu_pd(xn + i0 + 4 * h);
        __m256d thr = _mm256_add_pd(_mm256_mul_pd(vrel, _mm256_add_pd(x, vcmax)), tiny);
        m |= _mm256_movemask_pd(_mm256_cmp_pd(_mm256_sub_pd(f2d, f1d), thr, _CMP_LE_OQ)) << (4 * h);
        if (dmin)
          _mm256_storeu_pd(dmin + i0 + 4 * h, _mm256_max_pd(_mm256_add_pd(x, f1d), zero));
      }
      /* lanes that are not close take the new assignment and count if it changed */
      __m256i closev =
          _mm256_cmpgt_epi32(_mm256_and_si256(_mm256_set1_epi32(m), bits), _mm256_setzero_si256());
      __m256i old = _mm256_loadu_si256((const __m256i *)(asg + i0));
      __m256i neq = _mm256_andnot_si256(_mm256_cmpeq_epi32(old, a1), _mm256_set1_epi32(-1));
      changed += __builtin_popcount(
          (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_andnot_si256(closev, neq))));
      _mm256_storeu_si256(
          (__m256i *)(asg + i0),
          _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(a1), _mm256_castsi256_ps(old),
                                               _mm256_castsi256_ps(closev))));
      while (m) {
        int j = __builtin_ctz((unsigned)m);
        closeidx[nc++] = i0 + j;
        m &= m - 1;
      }
    } else {
      float t1[8], t2[8];
      int32_t ta[8];
      _mm256_storeu_ps(t1, f1);
      _mm256_storeu_ps(t2, f2);
      _mm256_storeu_si256((__m256i *)ta, a1);
      for (int j = 0; i0 + j < nb; j++) {
        int i = i0 + j;
        double b1 = xn[i] + (double)t1[j];
        a1o[i] = ta[j];
        if (dmin)
          dmin[i] = b1 > 0 ? b1 : 0;
        if ((double)t2[j] - (double)t1[j] <= rel * (xn[i] + cmax) + 1e-300) {
          closeidx[nc++] = i;
        } else {
          changed += asg[i] != ta[j];
          asg[i] = ta[j];
        }
      }
    }
  }
  *nclose = nc;
  return changed;
}

KM_AVX2 static void accumulate_avx2(const float *xc, int nb, int p, int k, const int32_t *a1,
                                    double *part, int64_t *cnt) {
  for (int i = 0; i < nb; i++) {
    cnt[(i & 3) * k + a1[i]]++;
    double *pa = part + ((size_t)(i & 3) * k + a1[i]) * p;
    const float *x = xc + (size_t)i * p;
    int l = 0;
    for (; l + 4 <= p; l += 4)
      _mm256_storeu_pd(
          pa + l, _mm256_add_pd(_mm256_loadu_pd(pa + l), _mm256_cvtps_pd(_mm_loadu_ps(x + l))));
    for (; l < p; l++)
      pa[l] += x[l];
  }
}

static int km_use_avx2(void) {
  static int have = -1;
  if (have < 0) {
    __builtin_cpu_init();
    /* SD_KMEANS_KERNEL=generic: the portable loop (the tests run both) */
    const char *e = getenv("SD_KMEANS_KERNEL");
    have = !(e && !strcmp(e, "generic")) && __builtin_cpu_supports("avx2") &&
           __builtin_cpu_supports("fma");
  }
  return have;
}
#endif

static int64_t best_two(const float *xc, int nb, int p, int k8, const float *cb, const float *cnb,
                        float *xt, const double *xn, double rel, double cmax, int32_t *asg,
                        int32_t *a1, double *dmin, int *closeidx, int *nclose, const float *xend) {
#ifdef KM_HAVE_AVX2
  if (km_use_avx2())
    return best_two_avx2(xc, nb, p, k8, cb, cnb, xt, xn, rel, cmax, asg, a1, dmin, closeidx, nclose,
                         xend);
#endif
  (void)xt;
  (void)xend;
  return best_two_generic(xc, nb, p, k8, cb, cnb, xn, rel, cmax, asg, a1, dmin, closeidx, nclose);
}

static void accumulate(const float *xc, int nb, int p, int k, const int32_t *a1, double *part,
                       int64_t *cnt) {
#ifdef KM_HAVE_AVX2
  if (km_use_avx2()) {
    accumulate_avx2(xc, nb, p, k, a1, part, cnt);
    return;
  }
#endif
  accumulate_generic(xc, nb, p, k, a1, part, cnt);
}

/* E-step with centroids cent [k, p] and accumulation of the next M-step: assign (m_local)
 * updated, dmin set; c->acc holds the global [sums | counts | changed] afterwards. */
static sd_status estep(km_ctx *c, const double *cent, int32_t *assign, int first_pass,
                       int want_dmin) {
  int p = c->p, k = c->k, k8 = c->k8;
  double cmax = 0;
  for (int a = 0; a < k8; a++) {
    double s = 0;
    for (int l = 0; l < p; l++) {
      float v = a < k ? (float)(-2.0 * cent[a * p + l]) : 0.0f;
      for (int j = 0; j < KM_LANES; j++)
        c->cb[((size_t)a * p + l) * KM_LANES + j] = v;
      if (a < k)
        s += cent[a * p + l] * cent[a * p + l];
    }
    if (a < k) {
      c->cn[a] = s;
      c->cnb[a] = (float)s;
      if (s > cmax)
        cmax = s;
    } else {
      c->cnb[a] = INFINITY;
    }
  }
  /* a safe margin for the float distances: (p + 2) float roundings of |x|^2 + |c|^2, with a
   * factor 16 to spare; closer calls are decided by the double loop */
  double rel = 16.0 * (p + 2) * FLT_EPSILON;
  memset(c->acc, 0, sizeof *c->acc * ((size_t)k * p + k + 1));
  int64_t changed = 0;
  size_t np = (size_t)k * p;
  for (int64_t c0 = 0; c0 < c->m_local; c0 += SD_CLUSTER_CHUNK) {
    int nb = (int)(c->m_local - c0 < SD_CLUSTER_CHUNK ? c->m_local - c0 : SD_CLUSTER_CHUNK);
    const float *xc = c->x + c0 * p;
    int32_t *as = assign + c0;
    int nclose = 0;
    int64_t ch = best_two(xc, nb, p, k8, c->cb, c->cnb, c->xt, c->xn + c0, rel, cmax, as, c->a1,
                          want_dmin ? c->dmin + c0 : NULL, c->closeidx, &nclose,
                          c->x + (size_t)c->m_local * p);
    for (int q = 0; q < nclose; q++) { /* close calls: decided in double */
      int i = c->closeidx[q];
      int64_t r = c0 + i;
      double b1 = INFINITY;
      int a1 = 0;
      for (int a = 0; a < k; a++) {
        double d = dist2_exact(c->x + r * p, cent + (size_t)a * p, p);
        if (d < b1) {
          b1 = d;
          a1 = a;
        }
      }
      if (want_dmin)
        c->dmin[r] = b1 > 0 ? b1 : 0;
      c->a1[i] = a1;
      ch += as[i] != a1;
      as[i] = a1;
    }
    changed += ch;
    /* per-cluster sums of the chunk in double (exact for float rows of one chunk, so the
     * grouping into four copies does not matter), then fixed point */
    memset(c->part, 0, sizeof *c->part * 4 * np);
    memset(c->cnt, 0, sizeof *c->cnt * 4 * (size_t)k);
    accumulate(xc, nb, p, k, c->a1, c->part, c->cnt);
    for (size_t q = 0; q < np; q++) {
      double v = (c->part[q] + c->part[np + q]) + (c->part[2 * np + q] + c->part[3 * np + q]);
      c->acc[q] += sd_fix_from(v, c->fac[q % p]);
    }
    for (int a = 0; a < k; a++)
      c->acc[np + a] += c->cnt[a] + c->cnt[k + a] + c->cnt[2 * k + a] + c->cnt[3 * k + a];
  }
  c->acc[(size_t)k * p + k] = first_pass ? c->m_local : changed;
  return sd_par_allreduce_sum_i64(c->comm, c->acc, k * p + k + 1);
}

/* Objective of the last E-step against cent (from the exact sums). */
static double objective(const km_ctx *c, const double *cent) {
  int p = c->p, k = c->k;
  double j = c->x2;
  for (int a = 0; a < k; a++) {
    double n = (double)c->acc[(size_t)k * p + a], cs = 0, cc = 0;
    for (int l = 0; l < p; l++) {
      double s = sd_fix_to(c->acc[(size_t)a * p + l], c->ex[l]);
      cs += cent[a * p + l] * s;
      cc += cent[a * p + l] * cent[a * p + l];
    }
    j += -2.0 * cs + n * cc;
  }
  return j > 0 ? j : 0;
}

void sd_km_result_free(sd_km_result *res) {
  if (!res)
    return;
  free(res->centroids);
  free(res->assign);
  free(res->counts);
  free(res->objective);
  memset(res, 0, sizeof *res);
}

sd_status sd_km_fit(MPI_Comm comm, const float *x, int64_t m_local, int64_t m, int p,
                    const sd_km_params *prm, sd_km_result *res) {
  memset(res, 0, sizeof *res);
  int k = prm->k;
  if (k < 1 || k > m || p < 1)
    return SD_ERROR(SD_ERR_ARG, "k-means with k = %d on %lld rows of %d columns", k, (long long)m,
                    p);
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  km_ctx c;
  memset(&c, 0, sizeof c);
  c.comm = comm;
  c.x = x;
  c.m_local = m_local;
  c.m = m;
  c.p = p;
  c.k = k;
  int64_t cnt_local = m_local;
  SD_CHECK(sd_par_exscan_i64(comm, cnt_local, &c.first, NULL));
  size_t ml = (size_t)(m_local > 0 ? m_local : 1);
  int maxit = prm->max_iter > 0 ? prm->max_iter : 1;
  int restarts = prm->restarts > 0 ? prm->restarts : 1;
  c.xn = sd_malloc(ml, sizeof *c.xn, "row norms");
  c.dmin = sd_malloc(ml, sizeof *c.dmin, "row distances");
  c.k8 = (k + KM_LANES - 1) / KM_LANES * KM_LANES;
  c.cb = aligned_alloc(64, sizeof(float) * (size_t)c.k8 * p * KM_LANES); /* a multiple of 64 */
  c.cn = sd_malloc((size_t)k, sizeof *c.cn, "centroid norms");
  c.cnb = sd_malloc((size_t)c.k8, sizeof *c.cnb, "centroid norms");
  c.xt = aligned_alloc(64, ((sizeof(float) * (size_t)p * KM_LANES + 63) / 64) * 64);
  c.closeidx = sd_malloc(SD_CLUSTER_CHUNK, sizeof *c.closeidx, "close calls");
  c.cnt = sd_malloc((size_t)4 * k, sizeof *c.cnt, "counts");
  c.a1 = sd_malloc(SD_CLUSTER_CHUNK, sizeof *c.a1, "nearest");
  c.part = sd_malloc((size_t)4 * k * p, sizeof *c.part, "partial sums");
  c.acc = sd_malloc((size_t)k * p + k + 1, sizeof *c.acc, "sums");
  c.ex = sd_malloc((size_t)p, sizeof *c.ex, "exponents");
  c.fac = sd_malloc((size_t)p, sizeof *c.fac, "factors");
  c.rowbuf = sd_malloc((size_t)p + 1, sizeof *c.rowbuf, "row");
  double *cent = sd_malloc((size_t)k * p, sizeof *cent, "centroids");
  double *next = sd_malloc((size_t)k * p, sizeof *next, "centroids");
  int32_t *asg = sd_calloc(ml, sizeof *asg, "assignments"); /* read (not used) in pass 1 */
  int64_t *w = sd_malloc(ml, sizeof *w, "weights");
  double *obj = sd_malloc((size_t)maxit + 2, sizeof *obj, "objective");
  res->centroids = sd_malloc((size_t)k * p, sizeof *res->centroids, "centroids");
  res->assign = sd_malloc(ml, sizeof *res->assign, "assignments");
  res->counts = sd_malloc((size_t)k, sizeof *res->counts, "counts");
  res->objective = sd_malloc((size_t)maxit + 2, sizeof *res->objective, "objective");
  sd_status st = (c.xn && c.dmin && c.cb && c.cn && c.cnb && c.xt && c.closeidx && c.cnt && c.a1 &&
                  c.part && c.acc && c.ex && c.fac && c.rowbuf && cent && next && asg && w && obj &&
                  res->centroids && res->assign && res->counts && res->objective)
                     ? SD_OK
                     : SD_ERR_NOMEM;
  SD_CHECK_GOTO(st, sd_par_agree(comm, st), done);

  /* global constants: |x|^2 total, column bounds (fixed-point scales), mean variance */
  {
    double *mx = sd_calloc((size_t)p + 1, sizeof *mx, "bounds");
    int64_t *sx = sd_calloc((size_t)p + 1, sizeof *sx, "sums");
    st = sd_par_agree(comm, (mx && sx) ? SD_OK : SD_ERR_NOMEM);
    if (st == SD_OK) {
      for (int64_t i = 0; i < m_local; i++) {
        double s = 0;
        for (int l = 0; l < p; l++) {
          double v = x[i * p + l];
          s += v * v;
          if (fabs(v) > mx[l])
            mx[l] = fabs(v);
        }
        c.xn[i] = s;
        if (s > mx[p])
          mx[p] = s;
      }
      st = sd_par_allreduce_max_double(comm, mx, p + 1);
    }
    if (st == SD_OK) {
      int ex2 = sd_fix_exponent((double)m * mx[p] * 1.0001);
      double f2 = sd_fix_factor(ex2);
      for (int l = 0; l < p; l++) {
        c.ex[l] = sd_fix_exponent((double)m * mx[l] * 1.0001);
        c.fac[l] = sd_fix_factor(c.ex[l]);
      }
      for (int64_t c0 = 0; c0 < m_local; c0 += SD_CLUSTER_CHUNK) {
        int64_t nb = m_local - c0 < SD_CLUSTER_CHUNK ? m_local - c0 : SD_CLUSTER_CHUNK;
        double s2 = 0;
        for (int l = 0; l < p; l++)
          c.part[l] = 0;
        for (int64_t i = c0; i < c0 + nb; i++) {
          s2 += c.xn[i];
          for (int l = 0; l < p; l++)
            c.part[l] += x[i * p + l];
        }
        sx[p] += sd_fix_from(s2, f2);
        for (int l = 0; l < p; l++)
          sx[l] += sd_fix_from(c.part[l], c.fac[l]);
      }
      st = sd_par_allreduce_sum_i64(comm, sx, p + 1);
      if (st == SD_OK) {
        c.x2 = sd_fix_to(sx[p], ex2);
        double ss = 0;
        for (int l = 0; l < p; l++) {
          double s = sd_fix_to(sx[l], c.ex[l]);
          ss += s * s / (double)m;
        }
        c.var_mean = fmax(c.x2 - ss, 0.0) / ((double)m * p);
      }
    }
    free(mx);
    free(sx);
    if (st != SD_OK)
      goto done;
  }

  double best = INFINITY;
  for (int r = 0; r < restarts; r++) {
    sd_rng rng;
    sd_rng_init(&rng, prm->seed, (uint64_t)r, SD_RNG_STREAM_KMEANS);
    if (prm->init == SD_KM_INIT_PARALLEL)
      st = init_parallel(&c, &rng, prm->seed, r, cent, w);
    else
      st = init_plusplus(&c, &rng, cent, w);
    if (st != SD_OK)
      goto done;
    int nobj = 0, it = 0;
    double t0 = sd_time_now();
    for (it = 0; it < maxit; it++) {
      /* dmin (for the empty-cluster repair) costs a pass of writes: only when a repair is due */
      SD_CHECK_GOTO(st, estep(&c, cent, asg, it == 0, 0), done);
      obj[nobj++] = objective(&c, cent);
      int64_t changed = c.acc[(size_t)k * p + k];
      /* M-step: the exact means; empty clusters take the farthest rows */
      for (int a = 0; a < k; a++) {
        int64_t n = c.acc[(size_t)k * p + a];
        for (int l = 0; l < p; l++)
          next[a * p + l] =
              n > 0 ? sd_fix_to(c.acc[(size_t)a * p + l], c.ex[l]) / (double)n : cent[a * p + l];
      }
      int nempty = 0;
      for (int a = 0; a < k; a++)
        nempty += c.acc[(size_t)k * p + a] == 0;
      /* the counts are global, so every rank takes this branch; the repeated E-step gives the
       * same assignment and sums, now with dmin */
      if (nempty > 0)
        SD_CHECK_GOTO(st, estep(&c, cent, asg, 1, 1), done);
      for (int a = 0; a < k; a++)
        if (c.acc[(size_t)k * p + a] == 0) {
          SD_CHECK_GOTO(st, farthest_row(&c, c.rowbuf), done);
          memcpy(next + (size_t)a * p, c.rowbuf, sizeof *next * p);
          res->empty_repairs++;
        }
      double shift = 0;
      for (int i = 0; i < k * p; i++)
        shift += (next[i] - cent[i]) * (next[i] - cent[i]);
      memcpy(cent, next, sizeof *cent * (size_t)k * p);
      if (shift <= prm->tol * c.var_mean || (it > 0 && changed == 0)) {
        it++;
        break;
      }
    }
    /* final E-step: labels consistent with the returned centroids */
    SD_CHECK_GOTO(st, estep(&c, cent, asg, 0, 0), done);
    obj[nobj++] = objective(&c, cent);
    res->lloyd_seconds += sd_time_now() - t0;
    res->lloyd_iterations += it;
    double j = obj[nobj - 1];
    sd_log_debug("k-means k=%d restart %d: %d iterations, objective %.10g", k, r, it, j);
    if (j < best) {
      best = j;
      res->inertia = j;
      res->iterations = it;
      res->restart = r;
      res->n_objective = nobj;
      memcpy(res->objective, obj, sizeof *obj * (size_t)nobj);
      memcpy(res->centroids, cent, sizeof *cent * (size_t)k * p);
      memcpy(res->assign, asg, sizeof *asg * (size_t)m_local);
      for (int a = 0; a < k; a++)
        res->counts[a] = c.acc[(size_t)k * p + a];
    }
  }
  res->k = k;
  res->p = p;
done:
  km_ctx_free(&c);
  free(cent);
  free(next);
  free(asg);
  free(w);
  free(obj);
  if (st != SD_OK)
    sd_km_result_free(res);
  return st;
}
