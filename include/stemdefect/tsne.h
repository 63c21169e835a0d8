/* tsne.h - distributed Barnes-Hut t-SNE (module embed).
 *
 * Points are distributed by rows: rank r owns the balanced contiguous block
 * [first, first+count) of sd_shard_range(n, r, size). The pipeline is
 *   1. sd_tsne_knn: exact k nearest neighbours by blocked GEMM distances, the row blocks of
 *      the ranks travelling around a ring (O(N^2 D / P) work per rank: meant for modest N
 *      and D, e.g. N <= ~5e4), or sd_tsne_knn_forest: approximate neighbours from a
 *      random-projection forest (O(N T leaf D / P) per rank, every rank holding all rows);
 *   2. sd_tsne_calibrate: per-point binary search on the Gaussian precision beta so the
 *      entropy of the conditional row p_{j|i} equals log(perplexity) (nats);
 *   3. sd_tsne_symmetrize: P = (P_cond + P_cond^T) / 2N, a sparse matrix distributed by row
 *      (the transposed entries are sent to the ranks owning their rows);
 *   4. sd_tsne_optimize: gradient descent with early exaggeration, momentum and
 *      delta-bar-delta gains (van der Maaten's reference method, as scikit-learn does).
 *      Every iteration every rank builds the same quadtree over the gathered 2-D embedding
 *      Y [N,2] (sd_tsne_tree_build, one pass over the Morton-sorted points, sorted from the
 *      previous iteration's order), computes the Barnes-Hut repulsion of the tree groups in
 *      its range of sorted slots (ranges balanced on measured cost) and the attraction of
 *      its rows of P; the repulsion is all-gathered, each rank updates its own rows, and
 *      the new rows are all-gathered.
 *
 * Rank-count independence: every sum whose order would depend on the partition (column
 * moments, the PCA covariance, the normalisation Z, the KL divergence) is either an exact
 * fixed-point sum (sd_tsne_repro_colsum) or a fixed-order sum over a gathered per-point
 * vector, and neighbour distances are recomputed by a fixed-order loop after the GEMM
 * preselection. So the same seed gives a bitwise identical embedding at any rank count.
 *
 * Shapes are row-major; "own" arrays have the rank's count rows, "all" arrays n rows.
 */
#ifndef STEMDEFECT_TSNE_H
#define STEMDEFECT_TSNE_H

#include <mpi.h>
#include <stdint.h>

#include "stemdefect/status.h"

typedef enum sd_tsne_init {
  SD_TSNE_INIT_PCA = 0,   /* first two principal components, std of column 0 scaled to 1e-4 */
  SD_TSNE_INIT_RANDOM = 1 /* 1e-4 * N(0, 1), point i from the stream (seed, i) */
} sd_tsne_init;

typedef enum sd_tsne_knn_method {
  SD_TSNE_KNN_AUTO = 0,  /* exact up to SD_TSNE_KNN_EXACT_MAX rows, the forest above */
  SD_TSNE_KNN_EXACT = 1, /* sd_tsne_knn */
  SD_TSNE_KNN_FOREST = 2 /* sd_tsne_knn_forest */
} sd_tsne_knn_method;
#define SD_TSNE_KNN_EXACT_MAX 50000

typedef struct sd_tsne_params {
  double perplexity;         /* target perplexity (> 0, < n) */
  double theta;              /* Barnes-Hut opening angle (0 = exact: every cell opened) */
  int iterations;            /* total gradient-descent iterations */
  double learning_rate;      /* <= 0: auto = max(n / early_exaggeration / 4, 50) */
  double early_exaggeration; /* P is multiplied by this during the first exaggeration_iters */
  int exaggeration_iters;    /* iterations with exaggeration and momentum_early */
  int neighbors;          /* k of the kNN graph; <= 0: auto = min(n - 1, floor(3 perplexity) + 1) */
  sd_tsne_knn_method knn; /* how the neighbours are found */
  int forest_trees;       /* trees of the random-projection forest (>= 1) */
  int forest_refine;      /* neighbours-of-neighbours rounds after the forest (>= 0) */
  uint64_t seed;          /* random init and the forest's projections */
  sd_tsne_init init;
  int report_every;      /* log the KL divergence every this many iterations (computed
                          * only when info messages are shown) */
  double momentum_early; /* 0.5 */
  double momentum_late;  /* 0.8 */
  double min_gain;       /* 0.01 */
} sd_tsne_params;

/* The defaults above (perplexity 30, theta 0.5, 1000 iterations, auto learning rate,
 * exaggeration 12 for 250 iterations, PCA init, seed 1, report every 50). */
void sd_tsne_params_default(sd_tsne_params *p);

/* The neighbour count and learning rate that params resolve to for n points. */
int sd_tsne_resolve_neighbors(const sd_tsne_params *p, int64_t n);
double sd_tsne_resolve_learning_rate(const sd_tsne_params *p, int64_t n);

/* Checks params against n points (perplexity < n, theta >= 0, ...); SD_ERR_ARG with a
 * message naming the value and the allowed range. Not collective (same answer everywhere). */
sd_status sd_tsne_params_check(const sd_tsne_params *p, int64_t n);

/* ---- reproducible sums ------------------------------------------------------------------ */

/* Collective. out[j] = sum over the rows of every rank of v[i*m + j] (v is [rows, m]),
 * computed exactly in 64-bit fixed point (per-column scale from the global max |v|), so the
 * result does not depend on how the rows are split over ranks. Relative rounding of each
 * term ~ 2^-(62 - log2(total rows)) of the column's largest magnitude. */
sd_status sd_tsne_repro_colsum(MPI_Comm comm, const double *v, int64_t rows, int m, double *out);

/* Collective. Standardises columns of x_own [count, d] in place: (x - mean) / std with the
 * population std (columns with std 0 are only centred, like sklearn's StandardScaler).
 * n = total rows. Rank-count independent. */
sd_status sd_tsne_standardize(MPI_Comm comm, double *x_own, int64_t count, int d, int64_t n);

/* ---- input similarities ----------------------------------------------------------------- */

/* Collective. Exact k nearest neighbours (Euclidean, self excluded) of the own rows
 * x_own [count, d] among all n rows (own blocks are passed around a ring). nbr [count, k]
 * receives global indices sorted by (distance, index); dist2 [count, k] the squared
 * distances, recomputed in a fixed order (so identical at any rank count). 1 <= k < n. */
sd_status sd_tsne_knn(MPI_Comm comm, const double *x_own, int64_t count, int d, int64_t n, int k,
                      int64_t *nbr, double *dist2);

/* Collective. Approximate k nearest neighbours of the own rows among all n rows, from a
 * forest of `trees` random-projection trees (median splits on the difference of two random
 * rows, leaves of sd_tsne_forest_leaf_size(k) rows at most, half that at least; tree t
 * depends on (seed, t) only): the candidates of a row are the rows sharing one of its
 * leaves, ranked by the exact squared distance; then `refine` rounds in which the 16
 * nearest neighbours of each neighbour (all lists gathered: n k int32 per rank) are
 * candidates too (NN-descent's local join). Same output contract as sd_tsne_knn
 * (sorted by (distance, index), identical at any rank count); every rank holds all n rows
 * (n d doubles, twice that while they are reordered, plus a float copy), the trees (2n int32
 * each) and, with
 * refinement, all lists (n k int32). */
sd_status sd_tsne_knn_forest(MPI_Comm comm, const double *x_own, int64_t count, int d, int64_t n,
                             int k, int trees, int refine, uint64_t seed, int64_t *nbr,
                             double *dist2);
int sd_tsne_forest_leaf_size(int k);
/* The method params resolve to for n rows (never AUTO). */
sd_tsne_knn_method sd_tsne_resolve_knn(const sd_tsne_params *p, int64_t n);

/* Not collective. For each of rows rows of squared neighbour distances dist2 [rows, k]:
 * binary search (<= 200 steps, tolerance 1e-5 nats) on beta so that the entropy of
 * p_j = exp(-beta d_j) / sum equals log(perplexity); pcond [rows, k] receives p, beta [rows]
 * (may be NULL) the precisions, entropy [rows] (may be NULL) the reached entropies (nats).
 * *unconverged (may be NULL) counts rows that missed the tolerance. */
void sd_tsne_calibrate(int64_t rows, int k, const double *dist2, double perplexity, double *pcond,
                       double *beta, double *entropy, int64_t *unconverged);

/* The symmetric joint probabilities, rows [first, first+count) of an n x n sparse matrix. */
typedef struct sd_tsne_affinity {
  int64_t n, first, count;
  int64_t nnz;     /* own entries */
  int64_t *rowptr; /* [count + 1] */
  int64_t *col;    /* [nnz] global column indices, ascending within a row */
  double *val;     /* [nnz] p_ij; sums to 1 over all rows of all ranks */
} sd_tsne_affinity;

/* Collective. P = (P_cond + P_cond^T) / (2n) from the own rows' neighbours nbr [count, k]
 * and conditional probabilities pcond [count, k]; entries (i, j) with j owned by another
 * rank are sent there (MPI_Alltoallv). Rows own blocks of sd_shard_range. */
sd_status sd_tsne_symmetrize(MPI_Comm comm, int64_t n, int k, const int64_t *nbr,
                             const double *pcond, sd_tsne_affinity **out);
/* Frees; NULL-safe; sets *a to NULL. */
void sd_tsne_affinity_destroy(sd_tsne_affinity **a);

/* ---- Barnes-Hut quadtree ---------------------------------------------------------------- */

typedef struct sd_tsne_tree sd_tsne_tree;

/* Creates a tree for up to capacity points (storage grows when needed). */
sd_status sd_tsne_tree_create(int64_t capacity, sd_tsne_tree **out);
void sd_tsne_tree_destroy(sd_tsne_tree **t);
/* Not collective. Builds the quadtree over y [n, 2] (a deterministic function of y: every
 * rank building it from the same gathered y gets the same tree and the same sums). */
sd_status sd_tsne_tree_build(sd_tsne_tree *t, int64_t n, const double *y);
/* Not collective. Barnes-Hut repulsion for points [first, first+count) of the tree's y:
 * neg [count, 2] = sum_j w_ij^2 (y_i - y_j) and z [count] = sum_{j != i} w_ij with
 * w_ij = 1 / (1 + |y_i - y_j|^2). Points are processed in groups (maximal subtrees of at
 * most 32 points) sharing one interaction list: a cell of width s stands for its points
 * when s / r < theta, r being the distance from its centre of mass to the nearest point of
 * the group's bounding box (never larger than the distance to any point of the group, so
 * at least as accurate as the per-point criterion; theta = 0: exact). Uses the tree's
 * scratch (not thread-safe on one tree), reserved by sd_tsne_tree_build: after a
 * successful build it cannot fail (SD_ERR_NOMEM otherwise). */
sd_status sd_tsne_tree_repulsion(sd_tsne_tree *t, int64_t first, int64_t count, double theta,
                                 double *neg, double *z);
/* The same forces split by groups instead of rows: part `part` of `parts` takes the groups
 * whose first sorted slot lies in its equal share of [0, n), and for each of their points i
 * writes (neg_x, neg_y, z) to out[i * stride + offset + 0..2] (other entries untouched).
 * The values are bitwise those of sd_tsne_tree_repulsion; over all parts every point is
 * written exactly once. Not collective; same scratch and failure as above. */
sd_status sd_tsne_tree_repulsion_share(sd_tsne_tree *t, int part, int parts, double theta,
                                       double *out, int stride, int offset);

/* Split by sorted slots (what the optimiser uses): sd_tsne_tree_cut(t, x) is the first slot
 * >= x (clamped to [0, n]) at which a group starts, so cuts c_0 = 0 <= c_1 <= ... <= c_P = n
 * of any x_r split the groups between parts; sd_tsne_tree_repulsion_slots computes the
 * groups starting in [s0, s1) (both cuts) and writes (neg_x, neg_y, z) of the point in slot
 * s to out[3 (s - s0) + 0..2], bitwise the values of sd_tsne_tree_repulsion whatever the
 * cuts. sd_tsne_tree_order(t)[s] is the point in slot s, sd_tsne_tree_slots(t)[i] the slot
 * of point i (both [n], valid until the next build). When work != NULL, a count of the
 * operations of each group (deterministic: interaction-list entries and point pairs) is
 * added to work[b], b the bin of nbins equal parts of [s0, s1) holding the group's first
 * slot (the load balancer's cost profile). Not collective; same scratch and failure as
 * sd_tsne_tree_repulsion. */
int64_t sd_tsne_tree_cut(const sd_tsne_tree *t, int64_t x);
sd_status sd_tsne_tree_repulsion_slots(sd_tsne_tree *t, int64_t s0, int64_t s1, double theta,
                                       double *out, double *work, int nbins);
const int32_t *sd_tsne_tree_order(const sd_tsne_tree *t);
const int32_t *sd_tsne_tree_slots(const sd_tsne_tree *t);

/* For tests and profiles: sd_tsne_tree_build_reference builds the same tree as
 * sd_tsne_tree_build by the original recursive method (sort from the index order, one
 * recursive call per cell, binary searches for the quadrants); sd_tsne_tree_same is 1 when
 * two built trees are bitwise identical (nodes, sorted order, positions, groups, boxes). */
sd_status sd_tsne_tree_build_reference(sd_tsne_tree *t, int64_t n, const double *y);
int sd_tsne_tree_same(const sd_tsne_tree *a, const sd_tsne_tree *b);
typedef struct sd_tsne_tree_info {
  int64_t nodes, groups;                /* of the last build */
  int64_t sorts_insertion, sorts_radix; /* builds sorted from the previous order / by radix */
  double seconds_sort, seconds_nodes, seconds_groups; /* summed over the builds */
} sd_tsne_tree_info;
void sd_tsne_tree_stats(const sd_tsne_tree *t, sd_tsne_tree_info *info);

/* ---- gradient --------------------------------------------------------------------------- */

/* Not collective. Attractive forces on the own rows: pos [count, 2] =
 * exaggeration * sum_j p_ij w_ij (y_i - y_j), y_all [n, 2]. */
void sd_tsne_attraction(const sd_tsne_affinity *a, const double *y_all, double exaggeration,
                        double *pos);

/* Collective. The gradient of KL(P || Q) on the own rows, grad [count, 2] =
 * 4 (pos - neg / Z), with the Barnes-Hut Z = sum_i z_i summed in point order over the
 * gathered per-point z (identical at any rank count); the tree must be built from y_all.
 * When kl != NULL, also the KL divergence over the nonzero p_ij (not exaggerated) with
 * q_ij = w_ij / Z (all ranks get it). Allocates its scratch per call (the optimiser keeps
 * its own). */
sd_status sd_tsne_gradient(MPI_Comm comm, const sd_tsne_affinity *a, sd_tsne_tree *t,
                           const double *y_all, double theta, double exaggeration, double *grad,
                           double *kl);

/* Not collective (reference, O(n^2)): the exact gradient grad [n, 2] of KL(P || Q) for a dense
 * joint P [n, n] (symmetric, zero diagonal, sums to 1) and y [n, 2]; returns the exact KL. */
double sd_tsne_gradient_exact(int64_t n, const double *p, const double *y, double *grad);

/* ---- the whole method ------------------------------------------------------------------- */

typedef struct sd_tsne_result {
  double kl_divergence; /* at the last iteration (Barnes-Hut Z) */
  int iterations;
  int neighbors;
  sd_tsne_knn_method knn; /* the method used (exact or forest) */
  double learning_rate;
  int64_t unconverged; /* rows whose bandwidth search missed the tolerance */
  double seconds_affinities, seconds_optimize;
} sd_tsne_result;

/* Collective. Initial embedding y_all [n, 2] (on every rank) from the own rows
 * x_own [count, d]: PCA (covariance by exact fixed-point sums, eigenvectors by LAPACK dsyev,
 * each component's largest entry made positive, then scaled so the std of column 0 is 1e-4)
 * or random. */
sd_status sd_tsne_initialize(MPI_Comm comm, const sd_tsne_params *p, const double *x_own,
                             int64_t count, int d, int64_t n, double *y_all);

/* Collective. Optimises y_all [n, 2] (the initial embedding on input, identical on every
 * rank; the result on output, identical on every rank) against the affinities a. */
sd_status sd_tsne_optimize(MPI_Comm comm, const sd_tsne_params *p, const sd_tsne_affinity *a,
                           double *y_all, sd_tsne_result *res);

/* Collective. The whole method: kNN, calibration, symmetrisation, initialisation,
 * optimisation, from the own rows x_own [count, d] (count and the row block from
 * sd_shard_range(n, rank, size)). y_all [n, 2] receives the embedding on every rank. */
sd_status sd_tsne_run(MPI_Comm comm, const sd_tsne_params *p, const double *x_own, int64_t count,
                      int d, int64_t n, double *y_all, sd_tsne_result *res);

/* ---- figure ----------------------------------------------------------------------------- */

/* Not collective. Writes a PNG scatter plot of y [n, 2] with one colour per group
 * (groups [n] in [-1, ngroups); -1 = unknown, grey) and a legend of names [ngroups]
 * (NULL: "cluster g"). Two panels side by side when groups2 != NULL (e.g. clusters and true
 * classes), with titles title1 / title2. Written to a temporary name and renamed. */
sd_status sd_tsne_plot_png(const char *path, int64_t n, const float *y, const int32_t *groups1,
                           int ngroups1, const char *const *names1, const char *title1,
                           const int32_t *groups2, int ngroups2, const char *const *names2,
                           const char *title2);

#endif
