/* test_tsne.c - the t-SNE building blocks against independent computations, at 1, 2 and 4
 * ranks:
 *   - exact fixed-point column sums: equal bitwise on MPI_COMM_SELF and on the world, and
 *     close to a long-double naive sum;
 *   - kNN against a naive brute-force search (indices and distances);
 *   - perplexity calibration: every row's entropy is log(perplexity), rows sum to 1;
 *   - symmetrisation: the gathered sparse P equals (P_cond + P_cond^T) / 2N built densely;
 *   - gradient: Barnes-Hut with theta = 0 equals the exact O(N^2) gradient to rounding,
 *     theta = 0.5 is close, and the KL divergences agree;
 *   - the quadtree: the one-pass build (sorted from the previous order) equals the recursive
 *     reference bit for bit on drifting, clustered, coincident and degenerate layouts; the
 *     slot-split repulsion equals the row version for arbitrary cuts; the load balancer
 *     keeps its boundaries ordered and moves them toward equal times;
 *   - the whole method on 5 well-separated blobs in 20-D: high kNN recall, blobs separated;
 *     the embedding is bitwise identical on 1 rank (MPI_COMM_SELF), on 2 ranks and on the
 *     world communicator, and under arbitrary splits of the repulsion between ranks. */
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "embed/embed_internal.h"
#include "sd_test.h"
#include "stemdefect/par.h"
#include "stemdefect/rng.h"
#include "stemdefect/tsne.h"

/* blobs: nb centres N(0, sep^2) in d dims, points = centre + N(0, 1); label = blob */
static void make_blobs(int64_t n, int d, int nb, double sep, uint64_t seed, double *x, int *lab) {
  double *c = malloc((size_t)nb * d * sizeof *c);
  sd_rng r;
  sd_rng_init(&r, seed, 0, 99);
  for (int b = 0; b < nb * d; b++)
    c[b] = sep * sd_rng_normal(&r);
  for (int64_t i = 0; i < n; i++) {
    int b = (int)(i % nb);
    lab[i] = b;
    for (int t = 0; t < d; t++)
      x[i * d + t] = c[b * d + t] + sd_rng_normal(&r);
  }
  free(c);
}

static double dist2(const double *a, const double *b, int d) {
  double s = 0;
  for (int t = 0; t < d; t++)
    s += (a[t] - b[t]) * (a[t] - b[t]);
  return s;
}

/* naive kNN of row i among all n (self excluded), sorted by (d2, index) */
static void naive_knn(const double *x, int64_t n, int d, int64_t i, int k, int64_t *nbr,
                      double *dd) {
  for (int j = 0; j < k; j++) {
    dd[j] = INFINITY;
    nbr[j] = -1;
  }
  for (int64_t j = 0; j < n; j++) {
    if (j == i)
      continue;
    double v = dist2(x + i * d, x + j * d, d);
    int p = k;
    while (p > 0 && (v < dd[p - 1] || (v == dd[p - 1] && j < nbr[p - 1])))
      p--;
    if (p >= k)
      continue;
    for (int q = k - 1; q > p; q--) {
      dd[q] = dd[q - 1];
      nbr[q] = nbr[q - 1];
    }
    dd[p] = v;
    nbr[p] = j;
  }
}

/* gathers the distributed sparse P into a dense [n, n] matrix on every rank */
static void gather_dense(MPI_Comm comm, const sd_tsne_affinity *a, double *dense) {
  int64_t n = a->n;
  double *mine = calloc((size_t)(n * n), sizeof *mine);
  for (int64_t q = 0; q < a->count; q++)
    for (int64_t e = a->rowptr[q]; e < a->rowptr[q + 1]; e++)
      mine[(a->first + q) * n + a->col[e]] = a->val[e];
  MPI_Allreduce(mine, dense, (int)(n * n), MPI_DOUBLE, MPI_SUM, comm);
  free(mine);
}

static double run_embedding(MPI_Comm comm, const sd_tsne_params *p, const double *x, int64_t n,
                            int d, double *y) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int64_t f, c;
  sd_shard_range(n, rank, size, &f, &c);
  sd_tsne_result res;
  memset(&res, 0, sizeof res);
  SD_EXPECT_OK(sd_tsne_run(comm, p, x + f * d, c, d, n, y, &res));
  return res.kl_divergence;
}

/* the one-pass build (reusing tree b across calls, as the optimiser does) against the
 * recursive reference on y [n, 2]; returns 1 when identical */
static int tree_matches(sd_tsne_tree *b, int64_t n, const double *y) {
  sd_tsne_tree *a = NULL;
  if (sd_tsne_tree_create(n, &a) != SD_OK)
    return 0;
  int ok = sd_tsne_tree_build_reference(a, n, y) == SD_OK && sd_tsne_tree_build(b, n, y) == SD_OK &&
           sd_tsne_tree_same(a, b);
  sd_tsne_tree_destroy(&a);
  return ok;
}

static void test_tree_builds(void) {
  const int64_t n = 3000;
  double *y = malloc((size_t)n * 2 * sizeof *y);
  sd_rng r;
  sd_rng_init(&r, 17, 0, 5);
  sd_tsne_tree *t = NULL;
  SD_EXPECT_OK(sd_tsne_tree_create(16, &t)); /* grows on demand */
  /* 10 clusters drifting slowly (insertion sorts), then fast (radix fallbacks), then
   * rescaled (the bounding box moves: Morton order changes wholesale) */
  for (int64_t i = 0; i < n; i++) {
    int b = (int)(i % 10);
    y[2 * i] = 30 * cos(b) + 3 * sd_rng_normal(&r);
    y[2 * i + 1] = 30 * sin(b) + 3 * sd_rng_normal(&r);
  }
  int bad = 0;
  for (int step = 0; step < 60; step++) {
    double drift = step < 20 ? 1e-3 : (step < 40 ? 2.0 : 0.0);
    double scale = step >= 40 ? 1.05 : 1.0;
    for (int64_t e = 0; e < 2 * n; e++)
      y[e] = scale * y[e] + drift * sd_rng_normal(&r);
    bad += !tree_matches(t, n, y);
  }
  SD_EXPECT_MSG(bad == 0, "%d of 60 drifting layouts: the one-pass tree differs", bad);
  sd_tsne_tree_info ti;
  sd_tsne_tree_stats(t, &ti);
  SD_EXPECT_MSG(ti.sorts_insertion >= 15 && ti.sorts_radix >= 5,
                "sorts: %lld from the previous order, %lld by radix", (long long)ti.sorts_insertion,
                (long long)ti.sorts_radix);
  /* coincident points (runs of equal codes, leaves of many points), a dense core with far
   * outliers (long one-child chains), all on one vertical line, all equal */
  for (int64_t i = 0; i < n; i++) {
    y[2 * i] = (double)(i % 7 == 0 ? 0 : i % 13);
    y[2 * i + 1] = (double)(i % 5 == 0 ? 1 : i % 3);
  }
  SD_EXPECT_MSG(tree_matches(t, n, y), "coincident points: the one-pass tree differs");
  for (int64_t i = 0; i < n; i++) {
    y[2 * i] = 1e-9 * sd_rng_normal(&r) + (i == 0 ? 1e3 : 0) - (i == 1 ? 1e3 : 0);
    y[2 * i + 1] = 1e-9 * sd_rng_normal(&r) + (i == 2 ? 5e2 : 0);
  }
  SD_EXPECT_MSG(tree_matches(t, n, y), "dense core with outliers: the one-pass tree differs");
  for (int64_t i = 0; i < n; i++) {
    y[2 * i] = 2.5;
    y[2 * i + 1] = sd_rng_normal(&r);
  }
  SD_EXPECT_MSG(tree_matches(t, n, y), "points on a line: the one-pass tree differs");
  for (int64_t i = 0; i < 2 * n; i++)
    y[i] = -4.0;
  SD_EXPECT_MSG(tree_matches(t, n, y), "all points equal: the one-pass tree differs");
  for (int64_t m = 1; m <= 5; m++) {
    for (int64_t i = 0; i < 2 * m; i++)
      y[i] = sd_rng_normal(&r);
    SD_EXPECT_MSG(tree_matches(t, m, y), "%lld points: the one-pass tree differs", (long long)m);
  }
  /* the previous order of another n is not reused by mistake: back to n after m */
  for (int64_t i = 0; i < 2 * n; i++)
    y[i] = sd_rng_normal(&r);
  SD_EXPECT_MSG(tree_matches(t, n, y), "after a smaller build: the one-pass tree differs");
  SD_EXPECT(sd_tsne_tree_build(t, n, y) == SD_OK);
  y[7] = NAN;
  SD_EXPECT(sd_tsne_tree_build(t, n, y) == SD_ERR_INTERNAL);
  sd_tsne_tree_destroy(&t);
  free(y);
}

/* the balancer: boundaries stay ordered in [0, n]; a uniform profile with equal other work
 * keeps an even split; a slow share shrinks; a non-uniform profile is split where the
 * cumulative cost says; the other work moves the boundary; degenerate inputs change nothing */
static void test_balance(void) {
  const int64_t n = 1000;
  enum { NB = 4 };
  int64_t cut[5] = {0, 250, 500, 750, 1000};
  double bnd[5] = {0, 250, 500, 750, 1000};
  double work[4 * NB], oth[4] = {0.5, 0.5, 0.5, 0.5}, pr[4] = {1e-3, 1e-3, 1e-3, 1e-3};
  for (int e = 0; e < 4 * NB; e++)
    work[e] = 100;
  sd_tsne_balance(4, n, cut, NB, work, pr, oth, 1.0, bnd);
  for (int r = 0; r <= 4; r++)
    SD_EXPECT_NEAR(bnd[r], (double)cut[r], 1e-9);
  for (int q = 0; q < NB; q++)
    work[q] = 300; /* rank 0's slots cost 3x */
  sd_tsne_balance(4, n, cut, NB, work, pr, oth, 1.0, bnd);
  SD_EXPECT_MSG(bnd[1] < 250 && bnd[1] > 0, "boundary 1 at %g", bnd[1]);
  for (int r = 0; r < 4; r++)
    SD_EXPECT(bnd[r] <= bnd[r + 1]);
  SD_EXPECT(bnd[0] == 0 && bnd[4] == 1000);
  /* 2 ranks, a profile rising over the slots (8 bins per rank), rank 1 with 0.2 s more
   * other work: the boundary where the costs to its left and right differ by that */
  {
    enum { B2 = 8 };
    int64_t c2[3] = {0, 500, 1000};
    double w2[2 * B2], b2[3] = {0, 500, 1000}, o2[2] = {0.0, 0.2}, p2[2] = {0.01, 0.01};
    for (int e = 0; e < 2 * B2; e++)
      w2[e] = (double)(2 * e + 1);
    sd_tsne_balance(2, n, c2, B2, w2, p2, o2, 1.0, b2);
    double total = 0;
    for (int e = 0; e < 2 * B2; e++)
      total += w2[e];
    double want = ((total * 0.01 + 0.2) / 2) / 0.01; /* units left of the boundary */
    double acc = 0, x = 0;
    for (int e = 0; e < 2 * B2; e++) {
      /* bin e holds the slots s with (s - c) B2 / 500 == e % B2: [ceil(62.5 e), ..) */
      double lo = 500.0 * (e / B2) + ceil(62.5 * (e % B2)),
             hi = 500.0 * (e / B2) + ceil(62.5 * (e % B2 + 1));
      if (acc + w2[e] >= want) {
        x = lo + (hi - lo) * (want - acc) / w2[e];
        break;
      }
      acc += w2[e];
    }
    SD_EXPECT_MSG(fabs(b2[1] - x) < 1e-6, "balanced boundary %g, expected %g", b2[1], x);
    /* half way with gain 0.5 */
    double b3[3] = {0, 500, 1000};
    sd_tsne_balance(2, n, c2, B2, w2, p2, o2, 0.5, b3);
    SD_EXPECT_NEAR(b3[1], 500 + 0.5 * (x - 500), 1e-6);
  }
  /* a rank without slots gets work back; no work or no price changes nothing */
  {
    int64_t c3[3] = {0, 1000, 1000};
    double b3[3] = {0, 1000, 1000}, w3[2] = {500, 0}, o3[2] = {0, 0};
    double p3[2] = {1e-3, 0};
    sd_tsne_balance(2, n, c3, 1, w3, p3, o3, 1.0, b3);
    SD_EXPECT_MSG(fabs(b3[1] - 500) < 1e-9, "boundary %g", b3[1]);
    double b4[3] = {0, 300, 1000}, w4[2] = {0, 0};
    int64_t c4[3] = {0, 300, 1000};
    sd_tsne_balance(2, n, c4, 1, w4, p3, o3, 1.0, b4);
    SD_EXPECT(b4[1] == 300);
    double w5[2] = {1, 1}, p5[2] = {0, 0};
    sd_tsne_balance(2, n, c4, 1, w5, p5, o3, 1.0, b4);
    SD_EXPECT(b4[1] == 300);
    /* operations priced 2:1 by the two ranks (rank 0's region is slower per operation):
     * half of the 1.5 s total lies left of slot 375 */
    double w6[2] = {500, 500}, p6[2] = {2e-3, 1e-3}, b6[3] = {0, 500, 1000};
    int64_t c6[3] = {0, 500, 1000};
    sd_tsne_balance(2, n, c6, 1, w6, p6, o3, 1.0, b6);
    SD_EXPECT_NEAR(b6[1], 375.0, 1e-9);
  }
}

/* The random-projection forest against the exact search: recall, ordering, distances, the
 * same neighbours at any rank count, a single leaf = the exact result, bad arguments. */
static void test_knn_forest(MPI_Comm world) {
  int rank, size;
  MPI_Comm_rank(world, &rank);
  MPI_Comm_size(world, &size);
  const int64_t n = 3000;
  const int d = 12, k = 15, trees = 10;
  double *x = malloc((size_t)n * d * sizeof *x);
  int *lab = malloc((size_t)n * sizeof *lab);
  make_blobs(n, d, 6, 2.0, 23, x, lab);
  int64_t first, count;
  sd_shard_range(n, rank, size, &first, &count);
  size_t ck = (size_t)(count + 1) * k;
  int64_t *ne = malloc(ck * sizeof *ne), *nf = malloc(ck * sizeof *nf);
  int64_t *ns = malloc((size_t)n * k * sizeof *ns);
  double *de = malloc(ck * sizeof *de), *df = malloc(ck * sizeof *df);
  double *ds = malloc((size_t)n * k * sizeof *ds);
  SD_EXPECT_OK(sd_tsne_knn(world, x + first * d, count, d, n, k, ne, de));
  SD_EXPECT_OK(sd_tsne_knn_forest(world, x + first * d, count, d, n, k, trees, 1, 7, nf, df));
  /* one process with all rows: the own rows' neighbours must be the same bits */
  SD_EXPECT_OK(sd_tsne_knn_forest(MPI_COMM_SELF, x, n, d, n, k, trees, 1, 7, ns, ds));
  int64_t hit = 0, bad_order = 0, bad_dist = 0, diff = 0;
  for (int64_t q = 0; q < count; q++) {
    const int64_t i = first + q;
    for (int j = 0; j < k; j++) {
      const int64_t a = nf[q * k + j];
      for (int e = 0; e < k; e++)
        hit += ne[q * k + e] == a;
      if (a == i || a < 0 || a >= n)
        bad_order++;
      if (j > 0 && !(df[q * k + j - 1] < df[q * k + j] ||
                     (df[q * k + j - 1] == df[q * k + j] && nf[q * k + j - 1] < a)))
        bad_order++;
      double ex = dist2(x + i * d, x + a * d, d);
      if (fabs(df[q * k + j] - ex) > 1e-12 * (1 + ex))
        bad_dist++;
      if (ns[i * k + j] != a || memcmp(&ds[i * k + j], &df[q * k + j], sizeof(double)) != 0)
        diff++;
    }
  }
  int64_t v[4] = {hit, bad_order, bad_dist, diff};
  MPI_Allreduce(MPI_IN_PLACE, v, 4, MPI_INT64_T, MPI_SUM, world);
  const double recall = (double)v[0] / ((double)n * k);
  if (rank == 0)
    fprintf(stderr,
            "kNN forest (%d trees, n %lld, d %d, k %d): recall %.4f of the exact "
            "neighbours\n",
            trees, (long long)n, d, k, recall);
  SD_EXPECT_MSG(recall >= 0.95, "forest recall %.4f (expected >= 0.95)", recall);
  SD_EXPECT_MSG(v[1] == 0, "%lld forest entries out of order, self or out of range",
                (long long)v[1]);
  SD_EXPECT_MSG(v[2] == 0, "%lld forest distances differ from the direct sum", (long long)v[2]);
  SD_EXPECT_MSG(v[3] == 0, "%lld forest entries differ between %d rank(s) and 1", (long long)v[3],
                size);
  /* more trees, and the refinement round, find more of the exact neighbours */
  double rec[2];
  for (int c = 0; c < 2; c++) {
    SD_EXPECT_OK(sd_tsne_knn_forest(MPI_COMM_SELF, x, n, d, n, k, c ? trees : 1, 0, 7, ns, ds));
    int64_t h = 0;
    for (int64_t q = 0; q < count; q++)
      for (int j = 0; j < k; j++)
        for (int e = 0; e < k; e++)
          h += ne[q * k + e] == ns[(first + q) * k + j];
    MPI_Allreduce(MPI_IN_PLACE, &h, 1, MPI_INT64_T, MPI_SUM, world);
    rec[c] = (double)h / ((double)n * k);
  }
  if (rank == 0)
    fprintf(stderr, "kNN forest without refinement: 1 tree recall %.4f, %d trees %.4f\n", rec[0],
            trees, rec[1]);
  SD_EXPECT_MSG(rec[0] > 0.1 && rec[0] < rec[1] && rec[1] < recall,
                "recall: 1 tree %.4f, %d trees %.4f, with refinement %.4f", rec[0], trees, rec[1],
                recall);
  /* duplicated rows on a coarse grid (tied projections and distances), 2 refinement rounds,
   * fewer trees than ranks, and fewer rows than ranks (ranks with none): the world result
   * equals the one-process result bit for bit, and is sorted and self-free */
  for (int c = 0; c < 2; c++) {
    const int64_t m = c ? 3 : 500;
    const int kk = c ? 1 : 9, dd = 3;
    double *g = malloc((size_t)m * dd * sizeof *g);
    sd_rng r;
    sd_rng_init(&r, 41, (uint64_t)c, 3);
    for (int64_t e = 0; e < m * dd; e++)
      g[e] = (double)sd_rng_below(&r, 3); /* 27 distinct rows: many copies */
    int64_t f2, c2;
    sd_shard_range(m, rank, size, &f2, &c2);
    int64_t *gw = malloc((size_t)(c2 + 1) * kk * sizeof *gw),
            *gs = malloc((size_t)m * kk * sizeof *gs);
    double *hw = malloc((size_t)(c2 + 1) * kk * sizeof *hw),
           *hs = malloc((size_t)m * kk * sizeof *hs);
    SD_EXPECT_OK(sd_tsne_knn_forest(world, g + f2 * dd, c2, dd, m, kk, 2, 2, 5, gw, hw));
    SD_EXPECT_OK(sd_tsne_knn_forest(MPI_COMM_SELF, g, m, dd, m, kk, 2, 2, 5, gs, hs));
    int64_t bad = 0;
    for (int64_t q = 0; q < c2; q++)
      for (int j = 0; j < kk; j++) {
        const int64_t e = q * kk + j;
        bad += gw[e] != gs[(f2 + q) * kk + j] || hw[e] != hs[(f2 + q) * kk + j];
        bad += gw[e] == f2 + q ||
               (j > 0 && (hw[e - 1] > hw[e] || (hw[e - 1] == hw[e] && gw[e - 1] >= gw[e])));
      }
    MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT64_T, MPI_SUM, world);
    SD_EXPECT_MSG(bad == 0,
                  "%lld rows: %lld forest entries differ from 1 process or are out of "
                  "order",
                  (long long)m, (long long)bad);
    free(g);
    free(gw);
    free(gs);
    free(hw);
    free(hs);
  }
  /* the float screen changes nothing: the same bits without it, also for rows far from the
   * origin (float rounding then coarse against the distances between them) */
  for (int c = 0; c < 2; c++) {
    double *xo = malloc((size_t)n * d * sizeof *xo);
    for (int64_t e = 0; e < n * d; e++)
      xo[e] = x[e] + (c ? 3e4 : 0.0);
    int64_t *n1 = malloc((size_t)n * k * sizeof *n1), *n2 = malloc((size_t)n * k * sizeof *n2);
    double *e1 = malloc((size_t)n * k * sizeof *e1), *e2 = malloc((size_t)n * k * sizeof *e2);
    SD_EXPECT_OK(sd_tsne_knn_forest(MPI_COMM_SELF, xo, n, d, n, k, 4, 2, 9, n1, e1));
    sd_tsne_forest_unscreened = 1;
    SD_EXPECT_OK(sd_tsne_knn_forest(MPI_COMM_SELF, xo, n, d, n, k, 4, 2, 9, n2, e2));
    sd_tsne_forest_unscreened = 0;
    SD_EXPECT_MSG(memcmp(n1, n2, (size_t)n * k * sizeof *n1) == 0 &&
                      memcmp(e1, e2, (size_t)n * k * sizeof *e1) == 0,
                  "the float screen changed the neighbours (offset %g)", c ? 3e4 : 0.0);
    free(xo);
    free(n1);
    free(n2);
    free(e1);
    free(e2);
  }
  /* n <= the leaf size: one leaf holds all rows, the result is the exact one */
  {
    const int64_t m = 20;
    const int kk = 12; /* leaf 26 >= 20 */
    int64_t e1[20 * 12], f1[20 * 12];
    double e2[20 * 12], f2[20 * 12];
    SD_EXPECT_OK(sd_tsne_knn(MPI_COMM_SELF, x, m, d, m, kk, e1, e2));
    SD_EXPECT_OK(sd_tsne_knn_forest(MPI_COMM_SELF, x, m, d, m, kk, 3, 1, 1, f1, f2));
    int bad = 0;
    for (int e = 0; e < m * kk; e++)
      bad += e1[e] != f1[e] || fabs(e2[e] - f2[e]) > 1e-12 * (1 + e2[e]);
    SD_EXPECT_MSG(bad == 0, "single leaf: %d entries differ from the exact search", bad);
    SD_EXPECT(sd_tsne_knn_forest(MPI_COMM_SELF, x, m, d, m, kk, 0, 1, 1, f1, f2) == SD_ERR_ARG);
    SD_EXPECT(sd_tsne_knn_forest(MPI_COMM_SELF, x, m, d, m, 20, 3, 1, 1, f1, f2) == SD_ERR_ARG);
  }
  free(x);
  free(lab);
  free(ne);
  free(nf);
  free(ns);
  free(de);
  free(df);
  free(ds);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Comm world = MPI_COMM_WORLD;

  test_tree_builds();
  test_balance();
  test_knn_forest(world);

  /* ---- fixed-point column sums ---- */
  {
    const int64_t n = 1001;
    const int m = 3;
    double *v = malloc(n * m * sizeof *v);
    sd_rng r;
    sd_rng_init(&r, 5, 0, 1);
    for (int64_t i = 0; i < n * m; i++)
      v[i] = sd_rng_normal(&r) * pow(10.0, (double)(i % m) * 3 - 3);
    int64_t f, c;
    sd_shard_range(n, rank, size, &f, &c);
    double sw[3], ss[3];
    SD_EXPECT_OK(sd_tsne_repro_colsum(world, v + f * m, c, m, sw));
    SD_EXPECT_OK(sd_tsne_repro_colsum(MPI_COMM_SELF, v, n, m, ss));
    for (int j = 0; j < m; j++) {
      long double e = 0;
      for (int64_t i = 0; i < n; i++)
        e += v[i * m + j];
      SD_EXPECT_MSG(sw[j] == ss[j], "column %d: world %.17g vs self %.17g", j, sw[j], ss[j]);
      SD_EXPECT_NEAR(sw[j], (double)e, 1e-9 * pow(10.0, (double)j * 3 - 3) * 40);
    }
    free(v);
  }

  /* ---- kNN, calibration, symmetrisation, gradients on a small problem ---- */
  const int64_t n = 240;
  const int d = 7, k = 30;
  const double perp = 9.0;
  double *x = malloc((size_t)n * d * sizeof *x);
  int *lab = malloc((size_t)n * sizeof *lab);
  make_blobs(n, d, 3, 3.0, 11, x, lab);
  int64_t first, count;
  sd_shard_range(n, rank, size, &first, &count);
  int64_t *nbr = malloc((size_t)(count + 1) * k * sizeof *nbr);
  double *dd = malloc((size_t)(count + 1) * k * sizeof *dd);
  double *pc = malloc((size_t)(count + 1) * k * sizeof *pc);
  SD_EXPECT_OK(sd_tsne_knn(world, x + first * d, count, d, n, k, nbr, dd));
  {
    int64_t nb2[64];
    double d2[64];
    int bad = 0;
    for (int64_t q = 0; q < count; q++) {
      naive_knn(x, n, d, first + q, k, nb2, d2);
      for (int j = 0; j < k; j++)
        if (nb2[j] != nbr[q * k + j] || fabs(d2[j] - dd[q * k + j]) > 1e-12 * (1 + d2[j]))
          bad++;
    }
    SD_EXPECT_MSG(bad == 0, "%d kNN entries differ from the naive search", bad);
  }
  {
    double *ent = malloc((size_t)(count + 1) * sizeof *ent);
    int64_t unconv = -1;
    sd_tsne_calibrate(count, k, dd, perp, pc, NULL, ent, &unconv);
    SD_EXPECT(unconv == 0);
    double worst = 0, worst_sum = 0;
    for (int64_t q = 0; q < count; q++) {
      /* entropy recomputed independently from the probabilities */
      double h = 0, s = 0;
      for (int j = 0; j < k; j++) {
        double pj = pc[q * k + j];
        s += pj;
        if (pj > 0)
          h -= pj * log(pj);
      }
      if (fabs(h - log(perp)) > worst)
        worst = fabs(h - log(perp));
      if (fabs(s - 1) > worst_sum)
        worst_sum = fabs(s - 1);
    }
    SD_EXPECT_MSG(worst < 2e-5, "entropy off log(perplexity) by %g", worst);
    SD_EXPECT_MSG(worst_sum < 1e-12, "row sums off 1 by %g", worst_sum);
    free(ent);
  }
  sd_tsne_affinity *a = NULL;
  SD_EXPECT_OK(sd_tsne_symmetrize(world, n, k, nbr, pc, &a));
  double *P = calloc((size_t)(n * n), sizeof *P);
  double *Pref = calloc((size_t)(n * n), sizeof *Pref);
  if (a) {
    gather_dense(world, a, P);
    /* reference: every row on this rank from the naive kNN, dense symmetrisation */
    int64_t nb2[64];
    double d2[64], p2[64];
    for (int64_t i = 0; i < n; i++) {
      naive_knn(x, n, d, i, k, nb2, d2);
      sd_tsne_calibrate(1, k, d2, perp, p2, NULL, NULL, NULL);
      for (int j = 0; j < k; j++) {
        Pref[i * n + nb2[j]] += p2[j] / (2.0 * n);
        Pref[nb2[j] * n + i] += p2[j] / (2.0 * n);
      }
    }
    double err = 0, tot = 0, asym = 0;
    for (int64_t e = 0; e < n * n; e++) {
      err = fmax(err, fabs(P[e] - Pref[e]));
      tot += P[e];
    }
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < n; j++)
        asym = fmax(asym, fabs(P[i * n + j] - P[j * n + i]));
    SD_EXPECT_MSG(err < 1e-15, "sparse P differs from the dense reference by %g", err);
    SD_EXPECT_NEAR(tot, 1.0, 1e-12);
    SD_EXPECT(asym == 0.0);
  }

  /* gradient: BH vs exact on a spread-out embedding */
  if (a) {
    double *y = malloc((size_t)n * 2 * sizeof *y);
    sd_rng r;
    sd_rng_init(&r, 3, 0, 7);
    for (int64_t i = 0; i < n; i++) {
      y[2 * i] = 4.0 * sd_rng_normal(&r) + 6.0 * (lab[i] == 1);
      y[2 * i + 1] = 4.0 * sd_rng_normal(&r) - 5.0 * (lab[i] == 2);
    }
    double *ge = malloc((size_t)n * 2 * sizeof *ge);
    double kl_exact = sd_tsne_gradient_exact(n, P, y, ge);
    sd_tsne_tree *t = NULL;
    SD_EXPECT_OK(sd_tsne_tree_create(n, &t));
    SD_EXPECT_OK(sd_tsne_tree_build(t, n, y));
    double *g = malloc((size_t)(count + 1) * 2 * sizeof *g);
    double kl0 = 0, kl5 = 0;
    SD_EXPECT_OK(sd_tsne_gradient(world, a, t, y, 0.0, 1.0, g, &kl0));
    double num = 0, den = 0, emax = 0;
    for (int64_t e = 0; e < 2 * count; e++) {
      double ref = ge[2 * first + e];
      num += (g[e] - ref) * (g[e] - ref);
      den += ref * ref;
      emax = fmax(emax, fabs(g[e] - ref));
    }
    double gscale = sqrt(den / (double)(2 * count > 0 ? 2 * count : 1));
    SD_EXPECT_MSG(emax <= 1e-10 * gscale + 1e-300, "theta=0 gradient max error %g (scale %g)", emax,
                  gscale);
    SD_EXPECT_MSG(fabs(kl0 - kl_exact) <= 1e-10 * fabs(kl_exact), "theta=0 KL %.12g vs exact %.12g",
                  kl0, kl_exact);
    SD_EXPECT_OK(sd_tsne_gradient(world, a, t, y, 0.5, 1.0, g, &kl5));
    num = 0;
    for (int64_t e = 0; e < 2 * count; e++) {
      double ref = ge[2 * first + e];
      num += (g[e] - ref) * (g[e] - ref);
    }
    double nd[2] = {num, den};
    MPI_Allreduce(MPI_IN_PLACE, nd, 2, MPI_DOUBLE, MPI_SUM, world);
    double rel = sqrt(nd[0] / nd[1]);
    SD_EXPECT_MSG(rel < 0.05, "theta=0.5 relative gradient error %g", rel);
    SD_EXPECT_MSG(fabs(kl5 - kl_exact) < 0.01 * kl_exact, "theta=0.5 KL %g vs exact %g", kl5,
                  kl_exact);
    if (rank == 0)
      fprintf(stderr,
              "gradient: theta=0 max err %.3g (scale %.3g), theta=0.5 rel err %.3g, KL %.6f / "
              "%.6f / exact %.6f\n",
              emax, gscale, rel, kl0, kl5, kl_exact);
    /* a gradient-descent step along -grad lowers the exact KL (sanity of the sign) */
    {
      double *y2 = malloc((size_t)n * 2 * sizeof *y2), *gg = malloc((size_t)n * 2 * sizeof *gg);
      for (int64_t e = 0; e < 2 * n; e++)
        y2[e] = y[e] - 1.0 * ge[e];
      double kl2 = sd_tsne_gradient_exact(n, P, y2, gg);
      SD_EXPECT_MSG(kl2 < kl_exact, "a step along -grad raised KL: %g -> %g", kl_exact, kl2);
      /* finite differences of the exact KL against the exact gradient (one coordinate) */
      double h = 1e-5;
      memcpy(y2, y, (size_t)n * 2 * sizeof *y2);
      y2[10] += h;
      double kp = sd_tsne_gradient_exact(n, P, y2, gg);
      y2[10] -= 2 * h;
      double km = sd_tsne_gradient_exact(n, P, y2, gg);
      SD_EXPECT_NEAR((kp - km) / (2 * h), ge[10], 1e-6 + 1e-4 * fabs(ge[10]));
      free(y2);
      free(gg);
    }
    /* the group-split repulsion (what the optimiser uses) gives the row version's values bit
     * for bit, every point exactly once, for any number of parts */
    {
      double *neg = malloc((size_t)n * 2 * sizeof *neg), *z = malloc((size_t)n * sizeof *z);
      double *out = malloc((size_t)n * 5 * sizeof *out);
      int *hits = calloc((size_t)n, sizeof *hits);
      SD_EXPECT_OK(sd_tsne_tree_repulsion(t, 0, n, 0.5, neg, z));
      for (int parts = 1; parts <= 3; parts++) {
        for (int64_t e = 0; e < 5 * n; e++)
          out[e] = NAN;
        memset(hits, 0, (size_t)n * sizeof *hits);
        for (int part = 0; part < parts; part++) {
          double *tmp = malloc((size_t)n * 5 * sizeof *tmp);
          for (int64_t e = 0; e < 5 * n; e++)
            tmp[e] = NAN;
          SD_EXPECT_OK(sd_tsne_tree_repulsion_share(t, part, parts, 0.5, tmp, 5, 2));
          for (int64_t i = 0; i < n; i++)
            if (!isnan(tmp[5 * i + 4])) {
              hits[i]++;
              memcpy(out + 5 * i, tmp + 5 * i, 5 * sizeof *out);
            }
          free(tmp);
        }
        int bad = 0;
        for (int64_t i = 0; i < n; i++)
          bad += hits[i] != 1 || out[5 * i + 2] != neg[2 * i] || out[5 * i + 3] != neg[2 * i + 1] ||
                 out[5 * i + 4] != z[i];
        SD_EXPECT_MSG(bad == 0, "%d of %lld points differ or are not written once (%d parts)", bad,
                      (long long)n, parts);
      }
      /* slot ranges between cuts: bitwise the row values, every slot written once */
      {
        const int32_t *order = sd_tsne_tree_order(t), *slot = sd_tsne_tree_slots(t);
        double *so = malloc((size_t)n * 3 * sizeof *so);
        sd_rng rr;
        sd_rng_init(&rr, 9, 0, 1);
        int bad = 0;
        for (int trial = 0; trial < 8; trial++) {
          for (int64_t e = 0; e < 3 * n; e++)
            so[e] = NAN;
          int64_t xs[5] = {0, 0, 0, 0, n};
          for (int q = 1; q < 4; q++)
            xs[q] = trial == 0 ? 0 : (int64_t)(sd_rng_uniform(&rr) * (double)(n + 1));
          for (int q = 1; q < 4; q++) /* sort the inner points */
            for (int u = q + 1; u < 4; u++)
              if (xs[u] < xs[q]) {
                int64_t v = xs[u];
                xs[u] = xs[q];
                xs[q] = v;
              }
          int64_t c[5];
          for (int q = 0; q < 5; q++)
            c[q] = sd_tsne_tree_cut(t, xs[q]);
          SD_EXPECT(c[0] == 0 && c[4] == n);
          for (int q = 0; q < 4; q++) {
            SD_EXPECT(c[q] <= c[q + 1] && c[q] >= xs[q]);
            SD_EXPECT_OK(
                sd_tsne_tree_repulsion_slots(t, c[q], c[q + 1], 0.5, so + 3 * c[q], NULL, 0));
          }
          for (int64_t i = 0; i < n; i++) {
            const double *v = so + 3 * (int64_t)slot[i];
            bad +=
                order[slot[i]] != i || v[0] != neg[2 * i] || v[1] != neg[2 * i + 1] || v[2] != z[i];
          }
        }
        SD_EXPECT_MSG(bad == 0, "slot-split repulsion: %d point values differ", bad);
        free(so);
      }
      free(neg);
      free(z);
      free(out);
      free(hits);
    }
    sd_tsne_tree_destroy(&t);
    free(g);
    free(ge);
    free(y);
  }
  sd_tsne_affinity_destroy(&a);
  free(P);
  free(Pref);
  free(nbr);
  free(dd);
  free(pc);
  free(x);
  free(lab);

  /* ---- the whole method with Barnes-Hut (theta 0.5) vs the exact method (theta 0): the
   * final KL divergences agree ---- */
  {
    const int64_t nn = 300;
    const int dd2 = 10;
    double *xb = malloc((size_t)nn * dd2 * sizeof *xb);
    int *lb = malloc((size_t)nn * sizeof *lb);
    make_blobs(nn, dd2, 4, 2.0, 31, xb, lb);
    sd_tsne_params p;
    sd_tsne_params_default(&p);
    p.perplexity = 15;
    p.iterations = 300;
    p.exaggeration_iters = 100;
    p.report_every = 1000;
    double *y0 = malloc((size_t)nn * 2 * sizeof *y0), *y5 = malloc((size_t)nn * 2 * sizeof *y5);
    p.theta = 0.0;
    double kl_exact = run_embedding(world, &p, xb, nn, dd2, y0);
    p.theta = 0.5;
    double kl_bh = run_embedding(world, &p, xb, nn, dd2, y5);
    /* the exact KL of the Barnes-Hut embedding (the reported value uses the Barnes-Hut Z) */
    int64_t f5, c5;
    sd_shard_range(nn, rank, size, &f5, &c5);
    int k5 = sd_tsne_resolve_neighbors(&p, nn);
    int64_t *nb5 = malloc((size_t)(c5 + 1) * k5 * sizeof *nb5);
    double *d5 = malloc((size_t)(c5 + 1) * k5 * sizeof *d5),
           *p5 = malloc((size_t)(c5 + 1) * k5 * sizeof *p5);
    double *P5 = calloc((size_t)(nn * nn), sizeof *P5), *g5 = malloc((size_t)nn * 2 * sizeof *g5);
    sd_tsne_affinity *a5 = NULL;
    SD_EXPECT_OK(sd_tsne_knn(world, xb + f5 * dd2, c5, dd2, nn, k5, nb5, d5));
    sd_tsne_calibrate(c5, k5, d5, p.perplexity, p5, NULL, NULL, NULL);
    SD_EXPECT_OK(sd_tsne_symmetrize(world, nn, k5, nb5, p5, &a5));
    double kl_bh_exact = 0, kl_exact_check = 0;
    if (a5) {
      gather_dense(world, a5, P5);
      kl_bh_exact = sd_tsne_gradient_exact(nn, P5, y5, g5);
      kl_exact_check = sd_tsne_gradient_exact(nn, P5, y0, g5);
    }
    if (rank == 0)
      fprintf(stderr,
              "final KL: exact method %.5f (recomputed %.5f), Barnes-Hut theta 0.5 %.5f "
              "(exact KL of its embedding %.5f)\n",
              kl_exact, kl_exact_check, kl_bh, kl_bh_exact);
    SD_EXPECT_NEAR(kl_exact_check, kl_exact, 1e-9 * kl_exact);
    /* different trajectories end in different local optima: Barnes-Hut must not be worse
     * than the exact method by more than 3%, and both within 5% */
    SD_EXPECT_MSG(kl_bh_exact <= 1.03 * kl_exact && fabs(kl_bh_exact - kl_exact) < 0.05 * kl_exact,
                  "final exact KL %g (BH) vs %g (exact method)", kl_bh_exact, kl_exact);
    SD_EXPECT_MSG(fabs(kl_bh - kl_bh_exact) < 0.05 * kl_bh_exact, "BH KL estimate %g vs exact %g",
                  kl_bh, kl_bh_exact);
    sd_tsne_affinity_destroy(&a5);
    free(nb5);
    free(d5);
    free(p5);
    free(P5);
    free(g5);
    free(xb);
    free(lb);
    free(y0);
    free(y5);
  }

  /* ---- the whole method on 5 separated blobs in 20-D; rank-count independence ---- */
  {
    const int64_t nn = 400;
    const int dd2 = 20, nb = 5;
    double *xb = malloc((size_t)nn * dd2 * sizeof *xb);
    int *lb = malloc((size_t)nn * sizeof *lb);
    make_blobs(nn, dd2, nb, 4.0, 21, xb, lb);
    sd_tsne_params p;
    sd_tsne_params_default(&p);
    p.perplexity = 20;
    p.iterations = 300;
    p.exaggeration_iters = 100;
    p.report_every = 1000;
    double *yw = malloc((size_t)nn * 2 * sizeof *yw), *ys = malloc((size_t)nn * 2 * sizeof *ys);
    double klw = run_embedding(world, &p, xb, nn, dd2, yw);
    /* the same on one rank (each rank alone) and, at 4 ranks, on pairs of ranks */
    double kls = run_embedding(MPI_COMM_SELF, &p, xb, nn, dd2, ys);
    SD_EXPECT_MSG(memcmp(yw, ys, (size_t)nn * 2 * sizeof *yw) == 0,
                  "embedding on %d ranks differs from 1 rank", size);
    SD_EXPECT(klw == kls);
    /* the split of the repulsion between ranks is free: random cuts, the same bits */
    {
      double *yj = malloc((size_t)nn * 2 * sizeof *yj);
      sd_tsne_balance_jitter = 1;
      double klj = run_embedding(world, &p, xb, nn, dd2, yj);
      sd_tsne_balance_jitter = 0;
      SD_EXPECT_MSG(memcmp(yw, yj, (size_t)nn * 2 * sizeof *yw) == 0,
                    "embedding under random splits differs (%d ranks)", size);
      SD_EXPECT(klw == klj);
      free(yj);
    }
    if (size == 4) {
      MPI_Comm pair;
      MPI_Comm_split(world, rank / 2, rank, &pair);
      double *yp = malloc((size_t)nn * 2 * sizeof *yp);
      run_embedding(pair, &p, xb, nn, dd2, yp);
      SD_EXPECT_MSG(memcmp(yw, yp, (size_t)nn * 2 * sizeof *yw) == 0, "2-rank embedding differs");
      free(yp);
      MPI_Comm_free(&pair);
    }
    /* kNN recall: 10 nearest in 2-D vs in 20-D; blob separation by nearest 2-D centroid */
    const int kr = 10;
    int64_t hits = 0, sep_ok = 0;
    double cen[5][2] = {{0}};
    int cnt[5] = {0};
    for (int64_t i = 0; i < nn; i++) {
      cen[lb[i]][0] += yw[2 * i];
      cen[lb[i]][1] += yw[2 * i + 1];
      cnt[lb[i]]++;
    }
    for (int b = 0; b < nb; b++) {
      cen[b][0] /= cnt[b];
      cen[b][1] /= cnt[b];
    }
    int64_t nh[16], nl[16];
    double dh[16], dl[16];
    int same_blob = 0;
    for (int64_t i = 0; i < nn; i++) {
      naive_knn(xb, nn, dd2, i, kr, nh, dh);
      naive_knn(yw, nn, 2, i, kr, nl, dl);
      for (int u = 0; u < kr; u++) {
        for (int v = 0; v < kr; v++)
          hits += nh[u] == nl[v];
        same_blob += lb[nl[u]] == lb[i];
      }
      int best = 0;
      for (int b = 1; b < nb; b++)
        if (dist2(yw + 2 * i, cen[b], 2) < dist2(yw + 2 * i, cen[best], 2))
          best = b;
      sep_ok += best == lb[i];
    }
    double recall = (double)hits / (double)(nn * kr);
    double purity = (double)same_blob / (double)(nn * kr);
    double sep = (double)sep_ok / (double)nn;
    if (rank == 0)
      fprintf(stderr,
              "blobs: KL %.4f, 10-NN recall %.3f, 2-D neighbours in the same blob %.4f, "
              "nearest-centroid accuracy %.4f\n",
              klw, recall, purity, sep);
    /* within a blob points are i.i.d. Gaussian: the exact neighbours are only partly
     * recoverable, the blobs must be */
    SD_EXPECT_MSG(recall > 0.35, "kNN recall %g", recall);
    SD_EXPECT_MSG(purity > 0.995, "2-D neighbour blob purity %g", purity);
    SD_EXPECT_MSG(sep > 0.995, "blob separation %g", sep);
    SD_EXPECT_MSG(klw > 0 && klw < 2.0, "final KL %g", klw);
    free(xb);
    free(lb);
    free(yw);
    free(ys);
  }

  int fails = sd_test_failures, all = 0;
  MPI_Allreduce(&fails, &all, 1, MPI_INT, MPI_SUM, world);
  int rc = sd_test_finish("test_tsne");
  MPI_Finalize();
  return all ? 1 : rc;
}
