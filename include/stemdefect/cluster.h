/* cluster.h - standardisation, feature screening, PCA on ScaLAPACK, distributed k-means,
 * silhouette / Calinski-Harabasz / Davies-Bouldin, and external indices (ARI, NMI, purity).
 *
 * Row layout. Every distributed function here takes the calling rank's contiguous block of
 * rows of an [m, d] row-major matrix. The block must come from sd_cluster_rows(): rows are
 * dealt out in chunks of SD_CLUSTER_CHUNK global rows, so every chunk lives on one rank.
 *
 * Rank-count independence. Every floating-point partial sum is formed per chunk (the same
 * rows in the same order whatever the rank count), converted to a 64-bit fixed-point number
 * with a scale agreed by all ranks (from a global bound, an MPI max), and reduced as
 * integers, which is exact and order-independent. Distances from GEMM are only used to
 * decide when the winner is clear by a safe margin; close calls are re-decided by a plain
 * double loop. So the same seed gives bitwise the same assignments, centroids, scores and
 * indices at 1, 2, 4 ... ranks. The only part that is not exact by construction is the
 * ScaLAPACK eigensolver (its rounding depends on the process grid): its eigenvectors are
 * sign-fixed and rounded to a 2^-26 grid and the eigenvalues to 2^-30 of the trace, so the
 * grids' last-bit differences vanish (except, in principle, for a value within 1e-16 of a
 * rounding boundary, or for eigenvalues that are equal and so have no unique eigenvectors).
 *
 * Standardisation uses the population standard deviation (divide by m, as scikit-learn's
 * StandardScaler); a constant column gets scale 1 (it becomes all zeros).
 */
#ifndef STEMDEFECT_CLUSTER_H
#define STEMDEFECT_CLUSTER_H

#include <mpi.h>
#include <stdint.h>

#include "stemdefect/status.h"

#define SD_CLUSTER_CHUNK 512
/* Largest inner dimension of our GEMM calls: OpenBLAS splits longer inner dimensions
 * differently depending on its thread count, which would change the last bits. */
#define SD_CLUSTER_SUBK 128

/* Pure. The block [first, first + count) of m rows for rank of size: whole chunks of
 * SD_CLUSTER_CHUNK rows, balanced over ranks (a rank may get none). */
void sd_cluster_rows(int64_t m, int rank, int size, int64_t *first, int64_t *count);

/* ---- moments and screening ---------------------------------------------------------------- */

/* Collective. Column statistics of x (m_local, d) (this rank's rows of m): mean[d],
 * population std[d], and the correlation matrix corr[d*d] of the standardised columns
 * (= their covariance; a constant column has 0 everywhere, also on the diagonal).
 * Exact and rank-count independent. Any output may be NULL except mean. */
sd_status sd_cluster_moments(MPI_Comm comm, const float *x, int64_t m_local, int64_t m, int d,
                             double *mean, double *std, double *corr);

/* Why a column was dropped by the screen. */
typedef enum sd_screen_reason {
  SD_SCREEN_REASON_KEPT = 0,
  SD_SCREEN_REASON_LOW_VARIANCE = 1, /* raw-unit variance below the threshold */
  SD_SCREEN_REASON_CORRELATED = 2    /* |r| above the threshold with an earlier kept column */
} sd_screen_reason;

/* Pure. Feature screening as in the old notebooks: drops columns whose raw variance
 * (std^2) is below min_var, then, scanning columns in order, drops a column whose |r| with an
 * earlier kept column exceeds max_corr (it names that column in partner[j], else -1).
 * reason[d], partner[d] out. Returns the number of kept columns (at least 1 when d >= 1: if
 * every column would go, the highest-variance one is kept). */
int sd_cluster_screen(int d, const double *std, const double *corr, double min_var, double max_corr,
                      sd_screen_reason *reason, int *partner);

/* ---- PCA -------------------------------------------------------------------------------- */

/* Collective. Eigen-decomposition of the symmetric d x d matrix a (row-major, the same on
 * every rank) with ScaLAPACK pdsyevd on a BLACS grid of (about) sqrt(size) x sqrt(size)
 * ranks (block-cyclic, blocks small enough that every grid rank holds a part). Outputs on
 * every rank: evals[d] descending, evecs[d*d] row-major, row i = eigenvector i, sign fixed
 * so that its largest-|.| entry (first on ties) is positive, rounded as described above.
 * Workspace sizes are the maximum of the grid ranks' queries. */
sd_status sd_pca_eig(MPI_Comm comm, int d, const double *a, double *evals, double *evecs);

/* Not collective: the same with LAPACK dsyev (reference for tests), same ordering, sign
 * rule and rounding. */
sd_status sd_pca_eig_lapack(int d, const double *a, double *evals, double *evecs);

/* A fitted PCA on the kept columns of the input. */
typedef struct sd_pca {
  int d_in;                /* input columns */
  int d;                   /* kept (screened) columns */
  int p;                   /* kept components */
  int *columns;            /* [d] input column of each kept column */
  double *mean;            /* [d] */
  double *scale;           /* [d] population std (1 for a constant column) */
  double *eigenvalues;     /* [d] descending: variances of the standardised data along components */
  double *explained_ratio; /* [d] eigenvalue / sum */
  double *components;      /* [d, d] row-major; the first p rows are the kept components */
} sd_pca;

/* Collective. Fits the PCA of x (m_local, d_in) on the columns listed in columns[d] (NULL =
 * all, d = d_in) given their mean/std from sd_cluster_moments (indexed by input column) and
 * the correlation matrix of all input columns corr[d_in*d_in]. Keeps the smallest p whose
 * cumulative explained ratio reaches variance (0 < variance <= 1), or exactly ncomp
 * components when ncomp > 0 (capped at d). */
sd_status sd_pca_fit(MPI_Comm comm, int d_in, const double *mean, const double *std,
                     const double *corr, int d, const int *columns, double variance, int ncomp,
                     sd_pca **out);
/* Not collective. scores (m_local, p) = standardised kept columns of x (m_local, d_in)
 * projected on the p kept components (per chunk with dgemm, so rank-count independent). */
sd_status sd_pca_transform(const sd_pca *pca, const float *x, int64_t m_local, float *scores);
void sd_pca_destroy(sd_pca **pca);

/* ---- k-means ------------------------------------------------------------------------------ */

typedef enum sd_km_init {
  SD_KM_INIT_PLUSPLUS = 0, /* k-means++ (D^2 sampling over all rows) */
  SD_KM_INIT_PARALLEL = 1  /* k-means|| (Bahmani et al.): 5 rounds of oversampling 2k, then
                              weighted k-means++ on the candidates */
} sd_km_init;

typedef struct sd_km_params {
  int k;
  int restarts;  /* independent initialisations; the lowest final objective wins */
  int max_iter;  /* Lloyd iterations per restart */
  double tol;    /* stop when the squared centroid shift <= tol * mean feature variance
                    (scikit-learn's rule); also stops when no assignment changes */
  uint64_t seed; /* restarts r use streams (seed, r, SD_RNG_STREAM_KMEANS) */
  sd_km_init init;
} sd_km_params;

typedef struct sd_km_result {
  int k, p;
  double *centroids;    /* [k, p] */
  int32_t *assign;      /* [m_local] cluster of each local row, in [0, k) */
  int64_t *counts;      /* [k] rows per cluster (global) */
  double inertia;       /* sum of squared distances to the assigned centroid (global) */
  int iterations;       /* Lloyd iterations of the winning restart */
  int restart;          /* which restart won */
  int empty_repairs;    /* clusters re-seeded because they became empty (all restarts) */
  int n_objective;      /* entries in objective */
  double *objective;    /* [n_objective] the winning restart's objective after each E-step */
  double lloyd_seconds; /* wall time of all Lloyd iterations (all restarts) */
  int lloyd_iterations; /* all Lloyd iterations (all restarts) */
} sd_km_result;

/* Collective. Distributed Lloyd on x (m_local, p) (this rank's rows of m from
 * sd_cluster_rows), distances in GEMM form (sgemm per chunk), one integer allreduce of sums
 * and counts per iteration, empty-cluster repair (the farthest row), restarts. Fills *res
 * (free with sd_km_result_free). Same params -> bitwise the same result at any rank count. */
sd_status sd_km_fit(MPI_Comm comm, const float *x, int64_t m_local, int64_t m, int p,
                    const sd_km_params *params, sd_km_result *res);
void sd_km_result_free(sd_km_result *res);

/* ---- internal indices ---------------------------------------------------------------------- */

/* Collective. Silhouette of nk clusterings of the same rows at once (the distances are
 * computed once): assign[j] (m_local) labels in [0, ks[j]). Exact: ranks pass their row
 * blocks half way around a ring (floor(P/2) steps, the sums found for a block go back to its
 * owner), and every pair of chunks is computed once, its distances added to both sides'
 * sums. If a rank fails during the exchange, every rank returns its error. Sampled (sample > 0 and
 * sample < m): the silhouettes of `sample` rows drawn without replacement (seeded, rank
 * independent) against all rows. Outputs: mean[nk]; stderr_out[nk] (standard error of the
 * mean: 0 when exact); per_cluster[j] (ks[j] entries each; mean over the cluster's
 * (sampled) rows, NaN when it has none), any may be NULL. sklearn's definition: s = 0 for a
 * row alone in its cluster. */
sd_status sd_km_silhouette(MPI_Comm comm, const float *x, int64_t m_local, int64_t m, int p, int nk,
                           const int *ks, const int32_t *const *assign, int64_t sample,
                           uint64_t seed, double *mean, double *stderr_out,
                           double *const *per_cluster);

/* Collective. Calinski-Harabasz and Davies-Bouldin indices of the labels assign (m_local)
 * in [0, k), with the cluster means of these labels (as scikit-learn). Needs k >= 2. */
sd_status sd_km_indices(MPI_Comm comm, const float *x, int64_t m_local, int64_t m, int p,
                        const int32_t *assign, int k, double *calinski_harabasz,
                        double *davies_bouldin);

/* ---- external indices ---------------------------------------------------------------------- */

/* Pure. From a contingency table n[r * nc + c] (rows: true classes, columns: clusters):
 * adjusted Rand index, normalised mutual information (arithmetic mean of the entropies, as
 * scikit-learn's default) and purity (sum over clusters of the largest class count / n).
 * Any output may be NULL. */
void sd_cluster_external(const int64_t *n, int nr, int nc, double *ari, double *nmi,
                         double *purity);

/* Collective. The contingency table [nr * nc] of local labels (in [0, nr), negative =
 * unknown: skipped) against local clusters (in [0, nc)), summed over ranks. */
sd_status sd_cluster_contingency(MPI_Comm comm, const int32_t *labels, const int32_t *clusters,
                                 int64_t m_local, int nr, int nc, int64_t *table);

#endif
