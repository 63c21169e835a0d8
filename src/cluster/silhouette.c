/* silhouette.c - silhouette (exact over a half ring of row blocks, or sampled), Calinski-Harabasz,
 * Davies-Bouldin, and the external indices against true labels.
 *
 * The exact silhouette needs, for every row and every cluster, the sum of the row's distances
 * to the cluster's rows. Rows come in chunks of SD_CLUSTER_CHUNK global rows, and every
 * unordered pair of chunks (a <= b) is one tile, computed once, with the lower chunk as A:
 * D = sqrt(max(|a|^2 + |b|^2 - 2 A B^T, 0)) and from the same D both sides' sums: per row of A,
 * over the columns of each cluster of B (the A side), and per row of B, over the rows of each
 * cluster of A (the B side). A diagonal tile (a == b) gives its A side only, over the whole
 * square. With AVX2+FMA (chosen at run time) A B^T is formed in registers, 6 x 16 at a time,
 * and the sums run over 8x8 blocks of D: a row's 8 distances are one register for the B side,
 * transposed in registers (one register per column) for the A side. The portable path takes
 * A B^T from sgemm and adds in the same order. Float partial sums run over at most
 * SD_CLUSTER_SUBK terms in a fixed order, are added in double per tile and then into int64
 * fixed point (fixed.h), so the totals do not depend on which rank computed a tile or when: the
 * results are bitwise the same at any rank count. Distances are single precision (relative
 * error ~1e-6, like any float32 GEMM distance).
 *
 * Half ring: each rank first does the pairs inside its own block, then the blocks travel one
 * rank on for floor(P/2) steps; at step s a rank pairs its own chunks with those of the block of
 * rank - s. The visiting block carries the fixed-point B-side sums of its rows, which go back to
 * the owner at the end (one more message) and are added. At even P both ranks of the last step
 * hold the same two blocks; they take its chunk pairs one at a time from a shared counter (MPI
 * one-sided), so the rank that is ahead does more (the sums do not depend on who computes a
 * tile). The first step's message travels while the ranks do their own pairs. Every
 * message starts with a status: a rank that failed sends only the header, the ranks that get it
 * stop computing and pass it on, nobody leaves the exchange early, and sd_par_agree at the end
 * hands every rank the error. */
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_internal.h"
#include "fixed.h"
#include "stemdefect/cluster.h"
#include "stemdefect/log.h"
#include "stemdefect/par.h"
#include "stemdefect/rng.h"

/* One side of a tile: up to SD_CLUSTER_CHUNK rows. */
typedef struct sil_rows {
  int n;
  const float *x;     /* [n, p] */
  const float *xn;    /* [n] squared norms */
  const int32_t *hot; /* [n, nk] cluster of each clustering as an index into the K sums */
} sil_rows;

/* The float sums: the A side of a row over at most SD_CLUSTER_SUBK columns, the B side of a
 * column over at most SIL_GROUP rows; then double. The AVX2 kernel computes G for 6 rows x 16
 * columns at a time (12 independent accumulator chains) into a strip of SIL_STRIP rows, which
 * it then sums in 8x8 blocks. */
#define SIL_GROUP 96
#define SIL_STRIP 24
#define SIL_ROWS (SD_CLUSTER_CHUNK + SIL_STRIP) /* rows of a side with its padding */

/* Scratch of the tile kernel (one allocation). Slot K of the sums takes the padding rows and
 * columns (the AVX2 kernel works on whole blocks). */
typedef struct sil_work {
  int p, nk, K, avx2;
  double fac;     /* fixed-point factor of the distance sums */
  float *g;       /* [CHUNK, SUBK] portable: G of one column block; AVX2: D of one strip */
  float *xpa;     /* [SIL_ROWS, p] rows of A, zero-padded (AVX2) */
  float *bt;      /* [p, SIL_ROWS] rows of B transposed, zero-padded (AVX2) */
  float *xna;     /* [SIL_ROWS] norms of A, zero-padded */
  float *xnb;     /* [SIL_ROWS] norms of B, zero-padded */
  int32_t *hota;  /* [SIL_ROWS, nk] cluster indices of A, padded with K */
  int32_t *hotb;  /* [SIL_ROWS, nk] the same for B */
  int32_t *self;  /* [CHUNK] the column of B that is row i of A itself, or -1 */
  int32_t *ident; /* [CHUNK] 0, 1, 2 ...: the self columns of a diagonal tile */
  float *sa;      /* [K + 1, 8] A-side float sums of 8 rows over one column block */
  float *sb;      /* [K + 1, SUBK] B-side float sums of a column block over a row group */
  double *da;     /* [CHUNK, K + 1] A-side sums of the tile */
  double *db;     /* [CHUNK, K + 1] B-side sums of the tile */
  void *arena;
} sil_work;

/* A large zeroed scratch buffer (free() releases it). On Linux, from 128 KB, it is 2 MB
 * aligned and marked for transparent huge pages: the first touch of a fresh 4 KB page can cost
 * ~10 us on a virtual machine (12 us measured on the 2-core VM), several percent of an exact
 * silhouette of 2e4 rows, and a huge page takes one fault for 512 of them. */
static void *sil_big_calloc(size_t bytes, const char *what) {
  return sd_calloc_huge(bytes, 1, ((size_t)2 << 20) / 16, what);
}

static sd_status sil_work_create(sil_work *w, int p, int nk, int K, int avx2) {
  size_t C = SD_CLUSTER_CHUNK, S = SD_CLUSTER_SUBK, R = SIL_ROWS, K1 = (size_t)K + 1;
  /* doubles first, then the 4-byte arrays */
  size_t nd = 2 * C * K1, nf = C * S + 2 * R * p + 2 * R + 8 * K1 + K1 * S, ni = 2 * R * nk + 2 * C;
  memset(w, 0, sizeof *w);
  w->arena = sil_big_calloc(nd * sizeof(double) + (nf + ni) * 4, "silhouette tile scratch");
  if (!w->arena)
    return SD_ERR_NOMEM;
  w->p = p;
  w->nk = nk;
  w->K = K;
  w->avx2 = avx2;
  w->da = w->arena;
  w->db = w->da + C * K1;
  w->g = (float *)(w->db + C * K1);
  w->xpa = w->g + C * S;
  w->bt = w->xpa + R * p;
  w->xna = w->bt + R * p;
  w->xnb = w->xna + R;
  w->sa = w->xnb + R;
  w->sb = w->sa + 8 * K1;
  w->hota = (int32_t *)(w->sb + K1 * S);
  w->hotb = w->hota + R * nk;
  w->self = w->hotb + R * nk;
  w->ident = w->self + C;
  for (size_t i = 0; i < C; i++)
    w->ident[i] = (int32_t)i;
  return SD_OK;
}

static void sil_work_destroy(sil_work *w) {
  free(w->arena);
  w->arena = NULL;
}

static void row_norms(const float *x, int64_t n, int p, float *xn) {
  for (int64_t i = 0; i < n; i++) {
    double s = 0;
    for (int l = 0; l < p; l++)
      s += (double)x[i * p + l] * x[i * p + l];
    xn[i] = (float)s;
  }
}

/* Rows [i0, i0 + in) of A against the column block [j0, j0 + jn) of B, whose G is in w->g
 * (row stride ld). A side: w->da[i] += the float sums over the block's columns; B side (both):
 * w->db[j] += the float sums over the rows. Every float sum adds its terms in increasing
 * index, the distance is sqrt(max((|a|^2 + |b|^2) + (-2 g), 0)) with a correctly rounded
 * square root, and a self distance is +0: the AVX2 kernel below adds in the same order. */
static void sil_group_generic(sil_work *w, int i0, int in, int j0, int jn, int ld,
                              const int32_t *self, int both) {
  int nk = w->nk, K = w->K, K1 = K + 1;
  float *sa = w->sa, *sb = w->sb;
  if (both)
    memset(sb, 0, sizeof *sb * (size_t)K1 * ld);
  for (int i = i0; i < i0 + in; i++) {
    const float *g = w->g + (size_t)i * ld;
    const int32_t *ha = w->hota + (size_t)i * nk;
    float a = w->xna[i];
    int si = self && self[i] >= 0 ? self[i] - j0 : -1;
    memset(sa, 0, sizeof *sa * (size_t)K1);
    for (int j = 0; j < jn; j++) {
      float v = (a + w->xnb[j0 + j]) - 2.0f * g[j];
      float d = v > 0 ? sqrtf(v) : 0.0f;
      if (j == si)
        d = 0.0f;
      const int32_t *hb = w->hotb + (size_t)(j0 + j) * nk;
      for (int q = 0; q < nk; q++)
        sa[hb[q]] += d;
      if (both)
        for (int q = 0; q < nk; q++)
          sb[(size_t)ha[q] * ld + j] += d;
    }
    double *da = w->da + (size_t)i * K1;
    for (int c = 0; c < K; c++)
      da[c] += sa[c];
  }
  if (both)
    for (int j = 0; j < jn; j++) {
      double *db = w->db + (size_t)(j0 + j) * K1;
      for (int c = 0; c < K; c++)
        db[c] += sb[(size_t)c * ld + j];
    }
}

#if defined(__GNUC__) && defined(__x86_64__)
#include "simd_x86.h"
#define SIL_HAVE_AVX2 SD_CL_HAVE_AVX2
#define SIL_AVX2 SD_CL_AVX2

/* D of the strip rows [r0, r0 + SIL_STRIP) of A (w->xpa) against the columns [j0, j0 + ld)
 * of B (w->bt, row stride bs) into w->g [SIL_STRIP, ld] (ld a multiple of 16). G is a fused
 * multiply-add chain over the p dimensions in order, from zero, as the sgemm kernels form it
 * (but that is up to the BLAS: the portable path may differ in the last bit of a distance;
 * each path is rank-count independent). t - 2 g is fused too: 2 g is exact, so it rounds as
 * t + (-2 g). */
SIL_AVX2 static void sil_strip_dist(sil_work *w, int r0, int j0, int ld, int bs) {
  int p = w->p;
  const __m256 two = _mm256_set1_ps(2.0f), z = _mm256_setzero_ps();
  for (int r = r0; r < r0 + SIL_STRIP; r += 6) {
    const float *xr = w->xpa + (size_t)r * p;
    for (int jb = 0; jb < ld; jb += 16) {
      const float *b = w->bt + j0 + jb;
      __m256 g[6][2];
#pragma GCC unroll 6
      for (int k = 0; k < 6; k++)
        g[k][0] = g[k][1] = z;
      for (int l = 0; l < p; l++) {
        __m256 b0 = _mm256_loadu_ps(b + (size_t)l * bs),
               b1 = _mm256_loadu_ps(b + (size_t)l * bs + 8);
#pragma GCC unroll 6
        for (int k = 0; k < 6; k++) {
          __m256 a = _mm256_broadcast_ss(xr + k * p + l);
          g[k][0] = _mm256_fmadd_ps(a, b0, g[k][0]);
          g[k][1] = _mm256_fmadd_ps(a, b1, g[k][1]);
        }
      }
      __m256 xb0 = _mm256_loadu_ps(w->xnb + j0 + jb), xb1 = _mm256_loadu_ps(w->xnb + j0 + jb + 8);
      float *d = w->g + (size_t)(r - r0) * ld + jb;
#pragma GCC unroll 6
      for (int k = 0; k < 6; k++) {
        __m256 xa = _mm256_broadcast_ss(w->xna + r + k);
        __m256 v0 = _mm256_fnmadd_ps(two, g[k][0], _mm256_add_ps(xa, xb0));
        __m256 v1 = _mm256_fnmadd_ps(two, g[k][1], _mm256_add_ps(xa, xb1));
        _mm256_storeu_ps(d + (size_t)k * ld, _mm256_sqrt_ps(_mm256_max_ps(v0, z)));
        _mm256_storeu_ps(d + (size_t)k * ld + 8, _mm256_sqrt_ps(_mm256_max_ps(v1, z)));
      }
    }
  }
}

/* The sums of the strip's D (w->g) over 8x8 blocks: the 8 distances of a row are one
 * register, added as it is into the B-side sums of the row's clusters; after an 8x8 transpose
 * (a register per column) into the A-side sums of the column's clusters, 8 rows per register.
 * Padding rows and columns go to slot K. nk and both are constants in each instance. */
SIL_AVX2 static inline __attribute__((always_inline)) void
sil_strip_sums_body(sil_work *w, int an, int r0, int j0, int ld, const int32_t *self,
                    const int both, const int nk) {
  static const int32_t keep[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, -1, -1, -1, -1, -1, -1, -1};
  int K = w->K, K1 = K + 1;
  float *sa = w->sa, *sb = w->sb;
  for (int ib = r0; ib < r0 + SIL_STRIP && ib < an; ib += 8) {
    memset(sa, 0, sizeof *sa * (size_t)K1 * 8);
    /* the self columns of these rows (relative to j0), if any */
    int slo = INT_MAX, shi = INT_MIN;
    if (self)
      for (int k = 0; k < 8 && ib + k < an; k++)
        if (self[ib + k] >= 0) {
          int c = self[ib + k] - j0;
          slo = c < slo ? c : slo;
          shi = c > shi ? c : shi;
        }
    float *pb[8 * 64]; /* B-side sums of each row's clusters, [8, nk] */
    if (both)
      for (int k = 0; k < 8; k++)
        for (int q = 0; q < nk; q++)
          pb[k * nk + q] = sb + (size_t)w->hota[(size_t)(ib + k) * nk + q] * ld;
    const float *dr = w->g + (size_t)(ib - r0) * ld;
    const int32_t *hb = w->hotb + (size_t)j0 * nk;
    for (int jb = 0; jb < ld; jb += 8) {
      __m256 d[8];
#pragma GCC unroll 8
      for (int k = 0; k < 8; k++)
        d[k] = _mm256_loadu_ps(dr + (size_t)k * ld + jb);
      if (jb + 8 > slo && jb <= shi)
        for (int k = 0; k < 8 && ib + k < an; k++) {
          int c = self[ib + k] >= 0 ? self[ib + k] - j0 - jb : -1;
          if (c >= 0 && c < 8)
            d[k] = _mm256_and_ps(
                d[k], _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)(keep + 8 - c))));
        }
      if (both) {
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++)
          for (int q = 0; q < nk; q++) {
            float *s = pb[k * nk + q] + jb;
            _mm256_storeu_ps(s, _mm256_add_ps(_mm256_loadu_ps(s), d[k]));
          }
      }
      sd_cl_transpose8(d);
#pragma GCC unroll 8
      for (int l = 0; l < 8; l++)
        for (int q = 0; q < nk; q++) {
          float *s = sa + ((size_t)hb[(size_t)(jb + l) * nk + q] << 3);
          _mm256_storeu_ps(s, _mm256_add_ps(_mm256_loadu_ps(s), d[l]));
        }
    }
    for (int k = 0; k < 8 && ib + k < an; k++) {
      double *da = w->da + (size_t)(ib + k) * K1;
      for (int c = 0; c < K; c++)
        da[c] += sa[c * 8 + k];
    }
  }
}

/* sil_group_generic for the AVX2 kernels, G from w->xpa and w->bt (row stride bs). */
SIL_AVX2 static void sil_group_avx2(sil_work *w, int an, int i0, int in, int j0, int jn, int ld,
                                    int bs, const int32_t *self, int both) {
  int nk = w->nk, K = w->K, K1 = K + 1;
  if (both)
    memset(w->sb, 0, sizeof *w->sb * (size_t)K1 * ld);
  for (int r0 = i0; r0 < i0 + in; r0 += SIL_STRIP) {
    sil_strip_dist(w, r0, j0, ld, bs);
    if (nk == 1 && both)
      sil_strip_sums_body(w, an, r0, j0, ld, self, 1, 1);
    else if (nk == 1)
      sil_strip_sums_body(w, an, r0, j0, ld, self, 0, 1);
    else if (both)
      sil_strip_sums_body(w, an, r0, j0, ld, self, 1, nk);
    else
      sil_strip_sums_body(w, an, r0, j0, ld, self, 0, nk);
  }
  if (both)
    for (int j = 0; j < jn; j++) {
      double *db = w->db + (size_t)(j0 + j) * K1;
      for (int c = 0; c < K; c++)
        db[c] += w->sb[(size_t)c * ld + j];
    }
}

static int sil_cpu_avx2(void) {
  static int have = -1;
  if (have < 0) {
    __builtin_cpu_init();
    have = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }
  return have;
}
#endif

/* One tile: acc_a[A.n, K] += fixed(A-side sums); acc_b[B.n, K] += fixed(B-side sums) unless
 * acc_b is NULL (A side only). self[i] (NULL: none) is the column of B that is row i of A
 * itself (its distance is taken as 0), or -1. */
static void sil_tile(sil_work *w, const sil_rows *A, const sil_rows *B, const int32_t *self,
                     int64_t *acc_a, int64_t *acc_b) {
  int p = w->p, nk = w->nk, K = w->K, K1 = K + 1;
  /* padding: whole strips of A, whole 16-column blocks of B */
  int an_pad = (A->n + SIL_STRIP - 1) / SIL_STRIP * SIL_STRIP, bn_pad = (B->n + 15) & ~15;
  for (int i = 0; i < an_pad; i++) {
    w->xna[i] = i < A->n ? A->xn[i] : 0.0f;
    for (int q = 0; q < nk; q++)
      w->hota[i * nk + q] = i < A->n ? A->hot[i * nk + q] : K;
  }
  for (int j = 0; j < bn_pad; j++) {
    w->xnb[j] = j < B->n ? B->xn[j] : 0.0f;
    for (int q = 0; q < nk; q++)
      w->hotb[j * nk + q] = j < B->n ? B->hot[j * nk + q] : K;
  }
  memset(w->da, 0, sizeof *w->da * (size_t)A->n * K1);
  if (acc_b)
    memset(w->db, 0, sizeof *w->db * (size_t)B->n * K1);
#ifdef SIL_HAVE_AVX2
  if (w->avx2) {
    /* rows of A as they are and B transposed, both zero-padded */
    memcpy(w->xpa, A->x, sizeof *w->xpa * (size_t)A->n * p);
    memset(w->xpa + (size_t)A->n * p, 0, sizeof *w->xpa * (size_t)(an_pad - A->n) * p);
    for (int j = 0; j < bn_pad; j++)
      for (int l = 0; l < p; l++)
        w->bt[(size_t)l * bn_pad + j] = j < B->n ? B->x[(size_t)j * p + l] : 0.0f;
  }
#endif
  for (int j0 = 0; j0 < B->n; j0 += SD_CLUSTER_SUBK) {
    int jn = B->n - j0 < SD_CLUSTER_SUBK ? B->n - j0 : SD_CLUSTER_SUBK;
#ifdef SIL_HAVE_AVX2
    if (w->avx2) {
      for (int i0 = 0; i0 < A->n; i0 += SIL_GROUP) {
        int in = A->n - i0 < SIL_GROUP ? A->n - i0 : SIL_GROUP;
        sil_group_avx2(w, A->n, i0, in, j0, jn, (jn + 15) & ~15, bn_pad, self, acc_b != NULL);
      }
      continue;
    }
#endif
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, A->n, jn, p, 1.0f, A->x, p,
                B->x + (size_t)j0 * p, p, 0.0f, w->g, jn);
    for (int i0 = 0; i0 < A->n; i0 += SIL_GROUP) {
      int in = A->n - i0 < SIL_GROUP ? A->n - i0 : SIL_GROUP;
      sil_group_generic(w, i0, in, j0, jn, jn, self, acc_b != NULL);
    }
  }
  for (int i = 0; i < A->n; i++)
    for (int c = 0; c < K; c++)
      acc_a[(size_t)i * K + c] += sd_fix_from(w->da[(size_t)i * K1 + c], w->fac);
  if (acc_b)
    for (int j = 0; j < B->n; j++)
      for (int c = 0; c < K; c++)
        acc_b[(size_t)j * K + c] += sd_fix_from(w->db[(size_t)j * K1 + c], w->fac);
}

/* ---- exact: the half ring ---------------------------------------------------------------- */

/* A ring message: [header | acc (rows, K) int64 | x (rows, p) | xn (rows) | hot (rows, nk)
 * int32]. acc holds the B-side sums that the ranks visited so far found for the block's rows;
 * the owner's block goes out with zeros there. A failed rank sends the header alone. */
enum { SIL_HDR_STATUS, SIL_HDR_FIRST, SIL_HDR_ROWS, SIL_HDR_LEN };

typedef struct sil_block {
  int64_t first, rows; /* global index of the first row; row count */
  int64_t *acc;        /* [rows, K] */
  float *x;            /* [rows, p] */
  float *xn;           /* [rows] */
  int32_t *hot;        /* [rows, nk] */
} sil_block;

static size_t sil_block_bytes(int64_t rows, int p, int nk, int K) {
  return sizeof(int64_t) * (SIL_HDR_LEN + (size_t)rows * K) +
         sizeof(float) * (size_t)rows * (p + 1) + sizeof(int32_t) * (size_t)rows * nk;
}

static void sil_block_view(char *buf, int p, int K, sil_block *b) {
  int64_t *h = (int64_t *)buf;
  b->first = h[SIL_HDR_FIRST];
  b->rows = h[SIL_HDR_ROWS];
  b->acc = h + SIL_HDR_LEN;
  b->x = (float *)(b->acc + (size_t)b->rows * K);
  b->xn = b->x + (size_t)b->rows * p;
  b->hot = (int32_t *)(b->xn + b->rows);
}

static sil_rows sil_chunk(const sil_block *b, int64_t r0, int p, int nk) {
  int64_t n = b->rows - r0 < SD_CLUSTER_CHUNK ? b->rows - r0 : SD_CLUSTER_CHUNK;
  sil_rows r = {(int)n, b->x + (size_t)r0 * p, b->xn + r0, b->hot + (size_t)r0 * nk};
  return r;
}

/* The chunk pairs inside block o (a <= b); sums into acc[o->rows, K]. progress (NULL: none):
 * a message in flight, tested after every tile; returns the error of a test, if any. */
static sd_status sil_pairs_own(sil_work *w, const sil_block *o, int64_t *acc,
                               sd_par_shift *progress) {
  int K = w->K;
  sd_status st = SD_OK;
  for (int64_t a0 = 0; a0 < o->rows; a0 += SD_CLUSTER_CHUNK) {
    sil_rows A = sil_chunk(o, a0, w->p, w->nk);
    for (int64_t b0 = a0; b0 < o->rows; b0 += SD_CLUSTER_CHUNK) {
      if (b0 == a0) {
        sil_tile(w, &A, &A, w->ident, acc + (size_t)a0 * K, NULL);
      } else {
        sil_rows B = sil_chunk(o, b0, w->p, w->nk);
        sil_tile(w, &A, &B, NULL, acc + (size_t)a0 * K, acc + (size_t)b0 * K);
      }
      if (progress && st == SD_OK)
        st = sd_par_ring_shift_test(progress);
    }
  }
  return st;
}

/* The chunk pairs between own block o (sums into acc_o) and visiting block v (sums into
 * v->acc), the block with the lower rows as A, in order (a over the lower block, b over the
 * other). shared (the last step at even P, where both ranks hold this pair of blocks): the two
 * ranks take the pairs one at a time from the counter on rank owner, so the one that is ahead
 * (less work of its own, a quieter core) does more of them; the sums do not depend on who
 * computes a tile. */
static sd_status sil_pairs_cross(sil_work *w, const sil_block *o, int64_t *acc_o,
                                 const sil_block *v, sd_par_counter *shared, int owner) {
  int K = w->K, olow = o->first < v->first;
  const sil_block *lo = olow ? o : v, *hi = olow ? v : o;
  int64_t *acc_lo = olow ? acc_o : v->acc, *acc_hi = olow ? v->acc : acc_o;
  int64_t na = (lo->rows + SD_CLUSTER_CHUNK - 1) / SD_CLUSTER_CHUNK,
          nb = (hi->rows + SD_CLUSTER_CHUNK - 1) / SD_CLUSTER_CHUNK;
  for (int64_t t = 0;; t++) {
    int64_t c = t;
    if (shared)
      SD_CHECK(sd_par_counter_next(shared, owner, &c));
    if (c >= na * nb)
      return SD_OK;
    int64_t a0 = c / nb * SD_CLUSTER_CHUNK, b0 = c % nb * SD_CLUSTER_CHUNK;
    sil_rows A = sil_chunk(lo, a0, w->p, w->nk), B = sil_chunk(hi, b0, w->p, w->nk);
    sil_tile(w, &A, &B, NULL, acc_lo + (size_t)a0 * K, acc_hi + (size_t)b0 * K);
  }
}

/* Posts block buffer cur to rank + shift (the header alone when failed != SD_OK; the status
 * goes into the header) and the receive of the next one into nxt (cap bytes). */
static sd_status sil_pass_begin(MPI_Comm comm, int shift, char *cur, size_t bytes, sd_status failed,
                                char *nxt, size_t cap, sd_par_shift *sh) {
  int64_t *h = (int64_t *)cur;
  h[SIL_HDR_STATUS] = failed;
  if (failed != SD_OK)
    bytes = sizeof(int64_t) * SIL_HDR_LEN;
  return sd_par_ring_shift_begin(comm, shift, cur, (int64_t)bytes, nxt, (int64_t)cap, sh);
}

/* Waits for sil_pass_begin; a received failure lands in *failed. Returns a local error (the
 * caller carries on with the exchange). */
static sd_status sil_pass_end(sd_par_shift *sh, const char *nxt, sd_status *failed,
                              size_t (*expect)(const int64_t *, const void *), const void *ctx) {
  int64_t got = 0;
  SD_CHECK(sd_par_ring_shift_end(sh, &got));
  const int64_t *hn = (const int64_t *)nxt;
  if (got < (int64_t)(sizeof(int64_t) * SIL_HDR_LEN))
    return SD_ERROR(SD_ERR_INTERNAL, "silhouette ring: a message of %lld bytes (no header)",
                    (long long)got);
  if (hn[SIL_HDR_STATUS] != SD_OK) {
    if (*failed == SD_OK)
      *failed = (sd_status)hn[SIL_HDR_STATUS];
    return SD_OK;
  }
  size_t want = expect(hn, ctx);
  if ((size_t)got != want)
    return SD_ERROR(SD_ERR_INTERNAL,
                    "silhouette ring: a block of %lld rows came as %lld bytes (expected %zu)",
                    (long long)hn[SIL_HDR_ROWS], (long long)got, want);
  return SD_OK;
}

typedef struct sil_shape {
  int p, nk, K;
} sil_shape;

static size_t sil_expect_block(const int64_t *h, const void *ctx) {
  const sil_shape *s = ctx;
  return sil_block_bytes(h[SIL_HDR_ROWS], s->p, s->nk, s->K);
}

static size_t sil_expect_sums(const int64_t *h, const void *ctx) {
  const sil_shape *s = ctx;
  return sizeof(int64_t) * (SIL_HDR_LEN + (size_t)h[SIL_HDR_ROWS] * s->K);
}

/* Collective. The exact per-row, per-cluster distance sums of the own block (packed in mine,
 * its acc zero) into acc[rows, K]; ring[2] are two buffers of cap bytes. fail_step >= 0 makes
 * this rank fail at that step (tests): 0 its own pairs, 1..P/2 the ring steps, P/2 + 1 the
 * return of the sums. */
static sd_status sil_exact(MPI_Comm comm, sil_work *w, char *mine, char *ring[2], size_t cap,
                           int64_t *acc, int fail_step) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int steps = size / 2, K = w->K;
  sil_shape shape = {w->p, w->nk, K};
  sd_status st = SD_OK, failed = SD_OK; /* this rank's error; any rank's, as far as known */
  sil_block own, vis;
  sil_block_view(mine, w->p, K, &own);
  sd_par_counter *shared = NULL; /* even P: the last step's pairs are shared out */
  if (size % 2 == 0)
    st = sd_par_counter_create(comm, &shared);
  sd_progress prog;
  sd_progress_begin(&prog, "silhouette (ring steps)", steps + 1);
  if (fail_step == 0 && st == SD_OK)
    st = SD_ERROR(SD_ERR_NOMEM, "silhouette: injected failure in the own block (test)");
  char *cur = mine;
  sd_par_shift sh;
  if (steps > 0) {
    /* our block travels to rank + 1 while we do its own pairs (its sums there are zeros) */
    if (fail_step == 1 && st == SD_OK)
      st = SD_ERROR(SD_ERR_NOMEM, "silhouette: injected failure at ring step 1 (test)");
    failed = st;
    const int64_t *h = (const int64_t *)cur;
    sd_status t = sil_pass_begin(comm, 1, cur, sil_block_bytes(h[SIL_HDR_ROWS], w->p, w->nk, K),
                                 failed, ring[1], cap, &sh);
    if (t != SD_OK && st == SD_OK)
      st = t;
  }
  if (st == SD_OK)
    st = sil_pairs_own(w, &own, acc, steps > 0 ? &sh : NULL);
  sd_progress_update(&prog, 1);
  for (int s = 1; s <= steps; s++) {
    char *nxt = ring[s & 1];
    if (s > 1) {
      if (fail_step == s && st == SD_OK)
        st = SD_ERROR(SD_ERR_NOMEM, "silhouette: injected failure at ring step %d (test)", s);
      if (failed == SD_OK)
        failed = st;
      const int64_t *h = (const int64_t *)cur;
      sd_status t = sil_pass_begin(comm, 1, cur, sil_block_bytes(h[SIL_HDR_ROWS], w->p, w->nk, K),
                                   failed, nxt, cap, &sh);
      if (t != SD_OK && st == SD_OK)
        st = t;
    }
    sd_status t = sil_pass_end(&sh, nxt, &failed, sil_expect_block, &shape);
    if (t != SD_OK && st == SD_OK)
      st = t;
    if (failed == SD_OK)
      failed = st;
    cur = nxt;
    if (failed == SD_OK) {
      sil_block_view(cur, w->p, K, &vis);
      int last_even = 2 * s == size, partner = (rank + s) % size;
      int owner = own.first < vis.first ? rank : partner;
      t = sil_pairs_cross(w, &own, acc, &vis, last_even ? shared : NULL, owner);
      if (t != SD_OK && st == SD_OK)
        st = t;
    }
    sd_progress_update(&prog, s + 1);
  }
  if (steps > 0) {
    /* the sums found for the visiting block go back to its owner, rank - steps */
    if (fail_step == steps + 1 && st == SD_OK)
      st = SD_ERROR(SD_ERR_NOMEM, "silhouette: injected failure returning the sums (test)");
    if (failed == SD_OK)
      failed = st;
    char *back = ring[(steps + 1) & 1];
    const int64_t *h = (const int64_t *)cur;
    sd_status t =
        sil_pass_begin(comm, -steps, cur, sil_expect_sums(h, &shape), failed, back, cap, &sh);
    if (t != SD_OK && st == SD_OK)
      st = t;
    t = sil_pass_end(&sh, back, &failed, sil_expect_sums, &shape);
    if (t != SD_OK && st == SD_OK)
      st = t;
    const int64_t *hb = (const int64_t *)back;
    if (st == SD_OK && failed == SD_OK &&
        (hb[SIL_HDR_FIRST] != own.first || hb[SIL_HDR_ROWS] != own.rows))
      st = SD_ERROR(SD_ERR_INTERNAL,
                    "silhouette ring: the sums of rows %lld+%lld came back for rows %lld+%lld",
                    (long long)hb[SIL_HDR_FIRST], (long long)hb[SIL_HDR_ROWS], (long long)own.first,
                    (long long)own.rows);
    if (st == SD_OK && failed == SD_OK)
      for (size_t t2 = 0; t2 < (size_t)own.rows * K; t2++)
        acc[t2] += hb[SIL_HDR_LEN + t2];
  }
  if (st == SD_OK && failed == SD_OK)
    sd_progress_end(&prog);
  sd_par_counter_destroy(&shared);
  return sd_par_agree(comm, st);
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
                            double *const *per_cluster, const sd_sil_debug *dbg) {
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
  size_t blk_bytes = sil_block_bytes(maxrows, p, nk, K);
  if (!sampled && blk_bytes > INT32_MAX)
    return SD_ERROR(SD_ERR_ARG,
                    "exact silhouette: blocks of %lld rows take %zu bytes, more than a 2 GiB "
                    "message (use more ranks or the sampled silhouette)",
                    (long long)maxrows, blk_bytes);
  int avx2 = 0;
#ifdef SIL_HAVE_AVX2
  avx2 = sil_cpu_avx2();
#endif
  {
    /* SD_SILHOUETTE_KERNEL=generic: the portable loop (the tests run both) */
    const char *ev = getenv("SD_SILHOUETTE_KERNEL");
    if ((ev && !strcmp(ev, "generic")) || (dbg && dbg->generic))
      avx2 = 0;
  }
  int fail_step = dbg && dbg->fail_rank == rank ? dbg->fail_step : -1;
  sil_work w;
  sd_status st = sil_work_create(&w, p, nk, K, avx2);
  char *mine = NULL, *ring[2] = {NULL, NULL};
  float *xa = NULL, *xna = NULL, *xn_own = NULL;
  int32_t *laba = NULL, *lab_own = NULL, *hota = NULL, *hot_own = NULL;
  int64_t *gida = NULL, *acc = NULL, *counts = NULL, *sfix = NULL;
  size_t na = (size_t)(nA > 0 ? nA : 1), ml = (size_t)(m_local > 0 ? m_local : 1);
  acc = sil_big_calloc(na * K * sizeof *acc, "silhouette sums");
  counts = sd_calloc((size_t)K, sizeof *counts, "cluster sizes");
  sfix = sd_calloc((size_t)K + nk, sizeof *sfix, "silhouette totals");
  lab_own = sd_malloc(ml * nk, sizeof *lab_own, "labels");
  if (!acc || !counts || !sfix || !lab_own)
    st = SD_ERR_NOMEM;
  if (st == SD_OK && !sampled) {
    mine = sil_big_calloc(blk_bytes, "ring block");
    if (size > 1) { /* the blocks of the others */
      ring[0] = sil_big_calloc(blk_bytes, "ring block");
      ring[1] = sil_big_calloc(blk_bytes, "ring block");
    }
    if (!mine || (size > 1 && (!ring[0] || !ring[1])))
      st = SD_ERR_NOMEM;
  } else if (st == SD_OK) {
    gida = sd_malloc(na, sizeof *gida, "sample rows");
    xa = sd_calloc(na * p, sizeof *xa, "sample rows");
    laba = sd_calloc(na * nk, sizeof *laba, "sample labels");
    xna = sd_malloc(na, sizeof *xna, "sample norms");
    hota = sd_malloc(na * nk, sizeof *hota, "sample clusters");
    xn_own = sd_malloc(ml, sizeof *xn_own, "row norms");
    hot_own = sd_malloc(ml * nk, sizeof *hot_own, "row clusters");
    if (!gida || !xa || !laba || !xna || !hota || !xn_own || !hot_own)
      st = SD_ERR_NOMEM;
  }
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
    /* our block: header, zero sums, rows, norms, cluster indices */
    int64_t *hd = (int64_t *)mine;
    hd[SIL_HDR_STATUS] = SD_OK;
    hd[SIL_HDR_FIRST] = first;
    hd[SIL_HDR_ROWS] = m_local;
    sil_block own;
    sil_block_view(mine, p, K, &own);
    memcpy(own.x, x, sizeof *x * (size_t)m_local * p);
    row_norms(x, m_local, p, own.xn);
    for (int64_t i = 0; i < m_local; i++)
      for (int q = 0; q < nk; q++)
        own.hot[i * nk + q] = koff[q] + lab_own[i * nk + q];
    SD_CHECK_GOTO(st, sil_exact(comm, &w, mine, ring, blk_bytes, acc, fail_step), done);
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
    row_norms(x, m_local, p, xn_own);
    for (int64_t i = 0; i < nA; i++)
      for (int q = 0; q < nk; q++)
        hota[i * nk + q] = koff[q] + laba[i * nk + q];
    for (int64_t i = 0; i < m_local; i++)
      for (int q = 0; q < nk; q++)
        hot_own[i * nk + q] = koff[q] + lab_own[i * nk + q];
    for (int64_t a0 = 0; a0 < nA; a0 += SD_CLUSTER_CHUNK) {
      int an = (int)(nA - a0 < SD_CLUSTER_CHUNK ? nA - a0 : SD_CLUSTER_CHUNK);
      sil_rows A = {an, xa + a0 * p, xna + a0, hota + a0 * nk};
      for (int64_t b0 = 0; b0 < m_local; b0 += SD_CLUSTER_CHUNK) {
        int bn = (int)(m_local - b0 < SD_CLUSTER_CHUNK ? m_local - b0 : SD_CLUSTER_CHUNK);
        sil_rows B = {bn, x + b0 * p, xn_own + b0, hot_own + b0 * nk};
        for (int i = 0; i < an; i++) {
          int64_t c = gida[a0 + i] - (first + b0);
          w.self[i] = c >= 0 && c < bn ? (int32_t)c : -1;
        }
        sil_tile(&w, &A, &B, w.self, acc + (size_t)a0 * K, NULL);
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
  sil_work_destroy(&w);
  free(mine);
  free(ring[0]);
  free(ring[1]);
  free(xa);
  free(xna);
  free(xn_own);
  free(laba);
  free(lab_own);
  free(hota);
  free(hot_own);
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
  return sd_km_silhouette_debug(comm, x, m_local, m, p, nk, ks, assign, sample, seed, mean,
                                stderr_out, per_cluster, NULL);
}

sd_status sd_km_silhouette_debug(MPI_Comm comm, const float *x, int64_t m_local, int64_t m, int p,
                                 int nk, const int *ks, const int32_t *const *assign,
                                 int64_t sample, uint64_t seed, double *mean, double *stderr_out,
                                 double *const *per_cluster, const sd_sil_debug *dbg) {
  int nt = sd_blas_single_begin();
  sd_status st = silhouette(comm, x, m_local, m, p, nk, ks, assign, sample, seed, mean, stderr_out,
                            per_cluster, dbg);
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
