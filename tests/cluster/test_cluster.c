/* test_cluster.c - the cluster module at 1, 2, 3, 4 ranks: moments and PCA against naive loops
 * and LAPACK, k-means against a naive serial Lloyd, silhouette / CH / DB against O(N^2)
 * loops, external indices against hand-computed and stored scikit-learn values, and the
 * distributed results against the same computation on one process (MPI_COMM_SELF on rank
 * 0), bitwise. The exact silhouette also: several chunks per rank and several clusterings at
 * once, its two kernels against each other, and a rank failing at each step of the ring
 * (every rank must return the error, and the next call must be unaffected). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster_internal.h"
#include "sd_test.h"
#include "stemdefect/cluster.h"
#include "stemdefect/rng.h"

static int rank_, size_;

/* Gaussian blobs: m rows of p columns around nb centres 6 apart (+ a correlated column). */
static float *blobs(int64_t m, int p, int nb, uint64_t seed, int32_t *truth) {
  float *x = malloc(sizeof *x * (size_t)m * p);
  sd_rng r;
  sd_rng_init(&r, seed, 0, 99);
  double cen[16][16];
  for (int b = 0; b < nb; b++)
    for (int l = 0; l < p; l++)
      cen[b][l] = 6.0 * sd_rng_normal(&r);
  for (int64_t i = 0; i < m; i++) {
    int b = (int)(i % nb);
    if (truth)
      truth[i] = b;
    for (int l = 0; l < p; l++)
      x[i * p + l] = (float)(cen[b][l] + sd_rng_normal(&r));
    if (p > 2)
      x[i * p + p - 1] = (float)(0.8 * x[i * p] + 0.3 * sd_rng_normal(&r) + 100.0);
  }
  return x;
}

static void test_external(void) {
  int64_t t1[] = {2, 1, 0, 0, 1, 2}; /* true [0,0,0,1,1,1] vs pred [0,0,1,1,2,2] */
  double ari, nmi, pur;
  sd_cluster_external(t1, 2, 3, &ari, &nmi, &pur);
  SD_EXPECT_NEAR(ari, 0.8 / 3.3, 1e-12);          /* by hand: (2 - 1.2) / (4.5 - 1.2) */
  SD_EXPECT_NEAR(nmi, 0.5158037429793888, 1e-12); /* scikit-learn 1.2.1 */
  SD_EXPECT_NEAR(pur, 5.0 / 6.0, 1e-12);
  /* true [0,0,1,1,2,2,2] vs pred [1,1,0,0,0,2,2] */
  int64_t t2[] = {0, 2, 0, 2, 0, 0, 1, 0, 2};
  sd_cluster_external(t2, 3, 3, &ari, &nmi, &pur);
  SD_EXPECT_NEAR(ari, 0.475, 1e-12);
  SD_EXPECT_NEAR(nmi, 0.7471790950662618, 1e-12);
  SD_EXPECT_NEAR(pur, 6.0 / 7.0, 1e-12);
  int64_t t3[] = {5, 0, 0, 7}; /* a perfect clustering */
  sd_cluster_external(t3, 2, 2, &ari, &nmi, &pur);
  SD_EXPECT_NEAR(ari, 1.0, 1e-12);
  SD_EXPECT_NEAR(nmi, 1.0, 1e-12);
  SD_EXPECT_NEAR(pur, 1.0, 1e-12);
}

/* ScaLAPACK against LAPACK and one process against the communicator for sizes around the
 * block size (d = 42..64 on one rank once came back from pdsyevd with info 0 and wrong
 * vectors: its workspace query undercounted) */
static void test_pca_sizes(MPI_Comm comm) {
  const int sizes[] = {7, 16, 41, 42, 43, 64, 65, 100};
  for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++) {
    const int d = sizes[t];
    double *a = calloc((size_t)d * d, sizeof *a), *ev = malloc((size_t)d * sizeof *ev),
           *evec = malloc((size_t)d * d * sizeof *evec), *lv = malloc((size_t)d * sizeof *lv),
           *lvec = malloc((size_t)d * d * sizeof *lvec), *sv = malloc((size_t)d * sizeof *sv),
           *svec = malloc((size_t)d * d * sizeof *svec);
    sd_rng r;
    sd_rng_init(&r, 3, (uint64_t)d, 1);
    double *x = malloc((size_t)3 * d * d * sizeof *x);
    for (int i = 0; i < 3 * d * d; i++)
      x[i] = sd_rng_normal(&r) * (1.0 + (i % d));
    for (int i = 0; i < 3 * d; i++)
      for (int p = 0; p < d; p++)
        for (int q = 0; q < d; q++)
          a[p * d + q] += x[i * d + p] * x[i * d + q] / (3.0 * d);
    SD_EXPECT_OK(sd_pca_eig(comm, d, a, ev, evec));
    SD_EXPECT_OK(sd_pca_eig_lapack(d, a, lv, lvec));
    SD_EXPECT_OK(sd_pca_eig(MPI_COMM_SELF, d, a, sv, svec));
    double de = 0, dv = 0;
    for (int i = 0; i < d; i++) {
      de = fmax(de, fabs(ev[i] - lv[i]) / lv[0]);
      for (int j = 0; j < d; j++)
        dv = fmax(dv, fabs(evec[i * d + j] - lvec[i * d + j]));
    }
    /* well separated spectrum: the vectors agree up to the rounding of eig_finish */
    SD_EXPECT_MSG(de < 1e-10 && dv < 1e-5,
                  "d = %d: eigenvalues differ by %g, vectors by %g from "
                  "LAPACK",
                  d, de, dv);
    SD_EXPECT_MSG(!memcmp(ev, sv, (size_t)d * sizeof *ev) &&
                      !memcmp(evec, svec, (size_t)d * d * sizeof *evec),
                  "d = %d: eigenpairs differ between one process and %d", d, size_);
    free(a);
    free(ev);
    free(evec);
    free(lv);
    free(lvec);
    free(sv);
    free(svec);
    free(x);
  }
}

static void test_pca(MPI_Comm comm) {
  int64_t m = 3001;
  int d = 7;
  float *x = blobs(m, d, 3, 5, NULL);
  int64_t first, count;
  sd_cluster_rows(m, rank_, size_, &first, &count);
  double mean[7], sd[7], corr[49];
  SD_EXPECT_OK(sd_cluster_moments(comm, x + first * d, count, m, d, mean, sd, corr));
  /* naive two-pass in long double */
  for (int j = 0; j < d; j++) {
    long double s = 0, s2 = 0;
    for (int64_t i = 0; i < m; i++)
      s += x[i * d + j];
    long double mu = s / m;
    for (int64_t i = 0; i < m; i++)
      s2 += (x[i * d + j] - mu) * (x[i * d + j] - mu);
    SD_EXPECT_NEAR(mean[j], (double)mu, 1e-12 * (1 + fabsl(mu)));
    SD_EXPECT_NEAR(sd[j], sqrt((double)(s2 / m)), 1e-10);
  }
  for (int a = 0; a < d; a++)
    for (int b = 0; b < d; b++) {
      long double s = 0;
      for (int64_t i = 0; i < m; i++)
        s += (x[i * d + a] - mean[a]) * (x[i * d + b] - mean[b]);
      SD_EXPECT_NEAR(corr[a * d + b], (double)(s / m / (sd[a] * sd[b])), 1e-10);
    }
  /* ScaLAPACK against LAPACK; and bitwise against one process */
  double ev[7], evec[49], lv[7], lvec[49];
  SD_EXPECT_OK(sd_pca_eig(comm, d, corr, ev, evec));
  SD_EXPECT_OK(sd_pca_eig_lapack(d, corr, lv, lvec));
  for (int i = 0; i < d; i++) {
    SD_EXPECT_NEAR(ev[i], lv[i], 1e-8);
    for (int j = 0; j < d; j++)
      SD_EXPECT_NEAR(evec[i * d + j], lvec[i * d + j], 1e-6);
  }
  /* eigen-equation residual of the (rounded) ScaLAPACK vectors */
  for (int i = 0; i < d; i++) {
    double r = 0;
    for (int a = 0; a < d; a++) {
      double s = 0;
      for (int b = 0; b < d; b++)
        s += corr[a * d + b] * evec[i * d + b];
      r = fmax(r, fabs(s - ev[i] * evec[i * d + a]));
    }
    SD_EXPECT_MSG(r < 1e-6, "eigenpair %d residual %g", i, r);
  }
  double ev1[7], evec1[49];
  double sd1[7], mean1[7], corr1[49];
  int same = 1;
  if (rank_ == 0) {
    SD_EXPECT_OK(sd_cluster_moments(MPI_COMM_SELF, x, m, m, d, mean1, sd1, corr1));
    same = !memcmp(mean, mean1, sizeof mean) && !memcmp(sd, sd1, sizeof sd) &&
           !memcmp(corr, corr1, sizeof corr);
    SD_EXPECT_MSG(same, "moments differ from one process at %d ranks", size_);
    SD_EXPECT_OK(sd_pca_eig(MPI_COMM_SELF, d, corr, ev1, evec1));
    SD_EXPECT_MSG(!memcmp(ev, ev1, sizeof ev) && !memcmp(evec, evec1, sizeof evec),
                  "eigenpairs differ from one process at %d ranks", size_);
  }
  /* the fit keeps enough components and projects like a naive loop */
  sd_pca *pca = NULL;
  int cols[5] = {0, 1, 2, 4, 6};
  SD_EXPECT_OK(sd_pca_fit(comm, d, mean, sd, corr, 5, cols, 0.9, 0, &pca));
  if (pca) {
    double cum = 0;
    for (int i = 0; i < pca->p; i++)
      cum += pca->explained_ratio[i];
    SD_EXPECT(cum >= 0.9 - 1e-12);
    SD_EXPECT(pca->p == 1 || cum - pca->explained_ratio[pca->p - 1] < 0.9);
    float *sc = malloc(sizeof *sc * (size_t)(count ? count : 1) * pca->p);
    SD_EXPECT_OK(sd_pca_transform(pca, x + first * d, count, sc));
    double err = 0;
    for (int64_t i = 0; i < count; i++)
      for (int c = 0; c < pca->p; c++) {
        double s = 0;
        for (int j = 0; j < 5; j++)
          s += (x[(first + i) * d + cols[j]] - mean[cols[j]]) / sd[cols[j]] *
               pca->components[c * 5 + j];
        err = fmax(err, fabs(s - sc[i * pca->p + c]));
      }
    SD_EXPECT_MSG(err < 1e-5, "projection error %g", err);
    free(sc);
  }
  sd_pca_destroy(&pca);
  free(x);
}

/* Naive serial Lloyd from given centroids to convergence; returns the objective. */
static double naive_lloyd(const float *x, int64_t m, int p, int k, double *c, int32_t *lab) {
  double *s = malloc(sizeof *s * k * p);
  int64_t *n = malloc(sizeof *n * k);
  double obj = 0;
  for (int it = 0; it < 300; it++) {
    int changed = 0;
    obj = 0;
    memset(s, 0, sizeof *s * k * p);
    memset(n, 0, sizeof *n * k);
    for (int64_t i = 0; i < m; i++) {
      int best = 0;
      double bd = INFINITY;
      for (int a = 0; a < k; a++) {
        double dd = 0;
        for (int l = 0; l < p; l++)
          dd += (x[i * p + l] - c[a * p + l]) * (x[i * p + l] - c[a * p + l]);
        if (dd < bd) {
          bd = dd;
          best = a;
        }
      }
      if (lab[i] != best)
        changed = 1;
      lab[i] = best;
      obj += bd;
      n[best]++;
      for (int l = 0; l < p; l++)
        s[best * p + l] += x[i * p + l];
    }
    for (int a = 0; a < k; a++)
      for (int l = 0; l < p; l++)
        if (n[a])
          c[a * p + l] = s[a * p + l] / n[a];
    if (!changed && it > 0)
      break;
  }
  free(s);
  free(n);
  return obj;
}

static double pair_ari(const int32_t *a, const int32_t *b, int64_t m, int k) {
  int64_t t[64] = {0};
  for (int64_t i = 0; i < m; i++)
    t[a[i] * k + b[i]]++;
  double ari;
  sd_cluster_external(t, k, k, &ari, NULL, NULL);
  return ari;
}

static void gather_assign(MPI_Comm comm, const int32_t *local, int64_t count, int64_t m,
                          int32_t *all) {
  int cnt = (int)count, *counts = malloc(sizeof(int) * size_),
      *displs = malloc(sizeof(int) * size_);
  MPI_Allgather(&cnt, 1, MPI_INT, counts, 1, MPI_INT, comm);
  for (int r = 0, o = 0; r < size_; r++) {
    displs[r] = o;
    o += counts[r];
  }
  MPI_Allgatherv(local, cnt, MPI_INT32_T, all, counts, displs, MPI_INT32_T, comm);
  free(counts);
  free(displs);
  (void)m;
}

static void test_kmeans(MPI_Comm comm, sd_km_init init) {
  int64_t m = 4100;
  int p = 5, k = 4;
  int32_t *truth = malloc(sizeof *truth * m), *all = malloc(sizeof *all * m);
  float *x = blobs(m, p, k, 11, truth);
  int64_t first, count;
  sd_cluster_rows(m, rank_, size_, &first, &count);
  sd_km_params prm = {k, 3, 100, 0.0, 42, init};
  sd_km_result res;
  SD_EXPECT_OK(sd_km_fit(comm, x + first * p, count, m, p, &prm, &res));
  if (!res.assign)
    return;
  gather_assign(comm, res.assign, count, m, all);
  /* the objective never rises; the inertia is the naive one */
  for (int i = 1; i < res.n_objective; i++)
    SD_EXPECT_MSG(res.objective[i] <= res.objective[i - 1] * (1 + 1e-12),
                  "objective rose at %d: %.17g -> %.17g", i, res.objective[i - 1],
                  res.objective[i]);
  double naive = 0, err_assign = 0;
  for (int64_t i = 0; i < m; i++) {
    double bd = INFINITY;
    int best = 0;
    for (int a = 0; a < k; a++) {
      double dd = 0;
      for (int l = 0; l < p; l++) {
        double t = x[i * p + l] - res.centroids[a * p + l];
        dd += t * t;
      }
      if (dd < bd) {
        bd = dd;
        best = a;
      }
    }
    naive += bd;
    if (best != all[i])
      err_assign++;
  }
  SD_EXPECT_MSG(err_assign == 0, "%g rows not at their nearest centroid", err_assign);
  SD_EXPECT_NEAR(res.inertia, naive, 1e-9 * naive);
  /* centroids are the means of their rows (converged) */
  double cerr = 0;
  for (int a = 0; a < k; a++)
    for (int l = 0; l < p; l++) {
      double s = 0;
      int64_t n = 0;
      for (int64_t i = 0; i < m; i++)
        if (all[i] == a) {
          s += x[i * p + l];
          n++;
        }
      cerr = fmax(cerr, fabs(s / n - res.centroids[a * p + l]));
      SD_EXPECT(n == res.counts[a]);
    }
  SD_EXPECT_MSG(cerr < 1e-9, "centroid vs mean %g", cerr);
  /* a naive serial Lloyd from rough centres finds the same partition and objective */
  double c0[64];
  int32_t *lab = calloc((size_t)m, sizeof *lab);
  for (int a = 0; a < k; a++)
    for (int l = 0; l < p; l++)
      c0[a * p + l] = x[a * p + l]; /* rows 0..k-1: one per blob */
  double nobj = naive_lloyd(x, m, p, k, c0, lab);
  SD_EXPECT_NEAR(pair_ari(lab, all, m, k), 1.0, 1e-12);
  SD_EXPECT_NEAR(pair_ari(truth, all, m, k), 1.0, 1e-12);
  SD_EXPECT_NEAR(res.inertia, nobj, 1e-9 * nobj);
  /* bitwise the same as one process */
  if (rank_ == 0) {
    sd_km_result one;
    SD_EXPECT_OK(sd_km_fit(MPI_COMM_SELF, x, m, m, p, &prm, &one));
    if (one.assign) {
      SD_EXPECT_MSG(!memcmp(one.assign, all, sizeof *all * m), "assignments differ at %d ranks",
                    size_);
      SD_EXPECT_MSG(!memcmp(one.centroids, res.centroids, sizeof(double) * k * p),
                    "centroids differ at %d ranks", size_);
      SD_EXPECT_MSG(one.inertia == res.inertia, "inertia %.17g vs %.17g", one.inertia, res.inertia);
      SD_EXPECT(one.iterations == res.iterations && one.restart == res.restart);
    }
    sd_km_result_free(&one);
  }
  sd_km_result_free(&res);
  /* empty-cluster repair: 3 distinct points, k = 5 */
  int64_t m2 = 900;
  float *y = malloc(sizeof *y * m2 * 2);
  for (int64_t i = 0; i < m2; i++) {
    y[i * 2] = (float)(i % 3);
    y[i * 2 + 1] = (float)(i % 3 == 2) * 4.0f + (i % 7 == 0 ? 0.01f : 0.0f);
  }
  sd_cluster_rows(m2, rank_, size_, &first, &count);
  sd_km_params p2 = {5, 2, 50, 0.0, 7, init};
  SD_EXPECT_OK(sd_km_fit(comm, y + first * 2, count, m2, 2, &p2, &res));
  if (res.counts) {
    int64_t tot = 0;
    for (int a = 0; a < 5; a++)
      tot += res.counts[a];
    SD_EXPECT(tot == m2);
    SD_EXPECT(isfinite(res.inertia));
    SD_EXPECT_MSG(res.inertia < 1e-2, "inertia %g with 5 centroids for 5 distinct points",
                  res.inertia);
  }
  sd_km_result_free(&res);
  free(y);
  free(lab);
  free(x);
  free(truth);
  free(all);
}

/* Naive O(N^2) silhouette of one clustering (double), per-cluster means into pc. */
static double naive_silhouette(const float *x, int64_t m, int p, const int32_t *lab, int k,
                               double *pc) {
  double tot = 0, *cs = calloc(k, sizeof *cs), *sum = calloc(k, sizeof *sum);
  int64_t *n = calloc(k, sizeof *n);
  for (int64_t i = 0; i < m; i++)
    n[lab[i]]++;
  for (int64_t i = 0; i < m; i++) {
    memset(cs, 0, sizeof *cs * k);
    for (int64_t j = 0; j < m; j++) {
      double dd = 0;
      for (int l = 0; l < p; l++)
        dd += (double)(x[i * p + l] - x[j * p + l]) * (x[i * p + l] - x[j * p + l]);
      cs[lab[j]] += sqrt(dd);
    }
    int o = lab[i];
    double s = 0;
    if (n[o] > 1) {
      double a = cs[o] / (n[o] - 1), b = INFINITY;
      for (int c = 0; c < k; c++)
        if (c != o && n[c] > 0 && cs[c] / n[c] < b)
          b = cs[c] / n[c];
      s = (b - a) / fmax(a, b);
    }
    tot += s;
    sum[o] += s;
  }
  for (int c = 0; c < k; c++)
    pc[c] = n[c] ? sum[c] / n[c] : NAN;
  free(cs);
  free(sum);
  free(n);
  return tot / m;
}

static void test_silhouette(MPI_Comm comm) {
  int64_t m = 1300;
  int p = 3;
  int32_t *truth = malloc(sizeof *truth * m), *lab4 = malloc(sizeof *lab4 * m);
  float *x = blobs(m, p, 3, 21, truth);
  for (int64_t i = 0; i < m; i++)
    lab4[i] = (int32_t)((i * 7) % 4);
  lab4[5] = 3; /* not every cluster the same; one singleton below */
  for (int64_t i = 0; i < m; i++)
    if (lab4[i] == 3 && i != 5)
      lab4[i] = 2;
  int64_t first, count;
  sd_cluster_rows(m, rank_, size_, &first, &count);
  int ks[2] = {3, 4};
  const int32_t *as[2] = {truth + first, lab4 + first};
  double mean[2], se[2], pc3[3], pc4[4], *pcs[2] = {pc3, pc4};
  SD_EXPECT_OK(sd_km_silhouette(comm, x + first * p, count, m, p, 2, ks, as, 0, 1, mean, se, pcs));
  double n3[3], n4[4];
  double ref3 = naive_silhouette(x, m, p, truth, 3, n3),
         ref4 = naive_silhouette(x, m, p, lab4, 4, n4);
  SD_EXPECT_NEAR(mean[0], ref3, 1e-5);
  SD_EXPECT_NEAR(mean[1], ref4, 1e-5);
  SD_EXPECT(se[0] == 0 && se[1] == 0);
  for (int c = 0; c < 3; c++)
    SD_EXPECT_NEAR(pc3[c], n3[c], 1e-5);
  for (int c = 0; c < 4; c++)
    SD_EXPECT_NEAR(pc4[c], n4[c], 1e-5);
  SD_EXPECT(pc4[3] == 0.0); /* the singleton */
  /* sampled: within 5 standard errors of the exact value */
  double sm[2], sse[2];
  SD_EXPECT_OK(
      sd_km_silhouette(comm, x + first * p, count, m, p, 2, ks, as, 400, 3, sm, sse, NULL));
  for (int q = 0; q < 2; q++) {
    SD_EXPECT(sse[q] > 0);
    SD_EXPECT_MSG(fabs(sm[q] - (q ? ref4 : ref3)) < 5 * sse[q] + 1e-9, "sampled %g +- %g vs %g",
                  sm[q], sse[q], q ? ref4 : ref3);
  }
  /* CH and DB against naive formulas */
  double ch, db;
  SD_EXPECT_OK(sd_km_indices(comm, x + first * p, count, m, p, truth + first, 3, &ch, &db));
  {
    double c[3][3] = {{0}}, g[3] = {0}, s[3] = {0}, W = 0, B = 0;
    int64_t n[3] = {0};
    for (int64_t i = 0; i < m; i++) {
      n[truth[i]]++;
      for (int l = 0; l < p; l++) {
        c[truth[i]][l] += x[i * p + l];
        g[l] += x[i * p + l];
      }
    }
    for (int a = 0; a < 3; a++)
      for (int l = 0; l < p; l++)
        c[a][l] /= n[a];
    for (int l = 0; l < p; l++)
      g[l] /= m;
    for (int64_t i = 0; i < m; i++) {
      double dd = 0;
      for (int l = 0; l < p; l++)
        dd += (x[i * p + l] - c[truth[i]][l]) * (x[i * p + l] - c[truth[i]][l]);
      W += dd;
      s[truth[i]] += sqrt(dd);
    }
    for (int a = 0; a < 3; a++) {
      s[a] /= n[a];
      for (int l = 0; l < p; l++)
        B += n[a] * (c[a][l] - g[l]) * (c[a][l] - g[l]);
    }
    double dbr = 0;
    for (int a = 0; a < 3; a++) {
      double w = 0;
      for (int b = 0; b < 3; b++) {
        if (a == b)
          continue;
        double dc = 0;
        for (int l = 0; l < p; l++)
          dc += (c[a][l] - c[b][l]) * (c[a][l] - c[b][l]);
        w = fmax(w, (s[a] + s[b]) / sqrt(dc));
      }
      dbr += w / 3;
    }
    SD_EXPECT_NEAR(ch, B * (m - 3) / (W * 2), 1e-8 * ch);
    SD_EXPECT_NEAR(db, dbr, 1e-10);
  }
  /* bitwise the same as one process */
  if (rank_ == 0) {
    const int32_t *as1[2] = {truth, lab4};
    double m1[2], s1[2], q3[3], q4[4], *q[2] = {q3, q4}, ch1, db1;
    SD_EXPECT_OK(sd_km_silhouette(MPI_COMM_SELF, x, m, m, p, 2, ks, as1, 0, 1, m1, s1, q));
    SD_EXPECT_MSG(!memcmp(m1, mean, sizeof m1) && !memcmp(q3, pc3, sizeof q3) &&
                      !memcmp(q4, pc4, sizeof q4),
                  "exact silhouette differs at %d ranks: %.17g vs %.17g", size_, m1[0], mean[0]);
    SD_EXPECT_OK(sd_km_silhouette(MPI_COMM_SELF, x, m, m, p, 2, ks, as1, 400, 3, m1, s1, NULL));
    SD_EXPECT_MSG(!memcmp(m1, sm, sizeof m1) && !memcmp(s1, sse, sizeof s1),
                  "sampled silhouette differs at %d ranks", size_);
    SD_EXPECT_OK(sd_km_indices(MPI_COMM_SELF, x, m, m, p, truth, 3, &ch1, &db1));
    SD_EXPECT(ch1 == ch && db1 == db);
  }
  free(x);
  free(truth);
  free(lab4);
}

/* Several 512-row chunks per rank (a partial one at the end), four clusterings at once (one
 * with an empty cluster, one with long runs of equal labels, one with 200 small clusters, where
 * a row's distance to itself would show) and one alone: against the naive loop, bitwise
 * against one process, and the portable kernel against the default one. */
static void test_silhouette_chunks(MPI_Comm comm) {
  int64_t m = 5 * 512 + 77;
  int p = 5, ks[4] = {4, 6, 2, 200};
  int32_t *lab[4];
  float *x = blobs(m, p, 4, 31, NULL);
  sd_rng r;
  sd_rng_init(&r, 5, 0, 98);
  for (int q = 0; q < 4; q++)
    lab[q] = malloc(sizeof **lab * m);
  for (int64_t i = 0; i < m; i++) {
    lab[0][i] = (int32_t)(i % 4);                    /* the blobs */
    lab[1][i] = (int32_t)sd_rng_below(&r, 5);        /* random; cluster 5 stays empty */
    lab[2][i] = (int32_t)((i / 300 + (i == 7)) % 2); /* runs of 300 rows */
    lab[3][i] = (int32_t)sd_rng_below(&r, 200);
  }
  int64_t first, count;
  sd_cluster_rows(m, rank_, size_, &first, &count);
  const int32_t *as[4] = {lab[0] + first, lab[1] + first, lab[2] + first, lab[3] + first};
  double mean[4], se[4], pc0[4], pc1[6], pc2[2], pc3[200], *pcs[4] = {pc0, pc1, pc2, pc3};
  SD_EXPECT_OK(sd_km_silhouette(comm, x + first * p, count, m, p, 4, ks, as, 0, 1, mean, se, pcs));
  for (int q = 0; q < 4; q++) {
    double ref[200];
    double rm = naive_silhouette(x, m, p, lab[q], ks[q], ref);
    SD_EXPECT_MSG(fabs(mean[q] - rm) < 1e-5, "clustering %d: mean %.9g vs naive %.9g", q, mean[q],
                  rm);
    SD_EXPECT(se[q] == 0);
    for (int c = 0; c < ks[q]; c++) {
      if (isnan(ref[c]))
        SD_EXPECT_MSG(isnan(pcs[q][c]), "clustering %d cluster %d: %g for an empty cluster", q, c,
                      pcs[q][c]);
      else /* float distances: a mean over ~13 rows keeps more of their error */
        SD_EXPECT_MSG(fabs(pcs[q][c] - ref[c]) < (ks[q] > 100 ? 1e-4 : 1e-5),
                      "clustering %d cluster %d: %.9g vs %.9g", q, c, pcs[q][c], ref[c]);
    }
  }
  /* one clustering alone (its own kernel instance): the same as within the three */
  double m1, pc1b[6], *pcs1[1] = {pc1b};
  SD_EXPECT_OK(
      sd_km_silhouette(comm, x + first * p, count, m, p, 1, ks + 1, as + 1, 0, 1, &m1, NULL, pcs1));
  SD_EXPECT_MSG(m1 == mean[1] && !memcmp(pc1b, pc1, sizeof pc1b),
                "one clustering alone: %.17g vs %.17g within three", m1, mean[1]);
  /* the portable kernel: the same up to the last bits of G (the BLAS forms it there) */
  sd_sil_debug gen = {1, -1, -1};
  double mg[4], g0[4], g1[6], g2[2], g3[200], *pg[4] = {g0, g1, g2, g3};
  SD_EXPECT_OK(sd_km_silhouette_debug(comm, x + first * p, count, m, p, 4, ks, as, 0, 1, mg, NULL,
                                      pg, &gen));
  for (int q = 0; q < 4; q++) {
    SD_EXPECT_MSG(fabs(mg[q] - mean[q]) < 1e-7, "portable kernel: %.17g vs %.17g", mg[q], mean[q]);
    for (int c = 0; c < ks[q]; c++)
      SD_EXPECT(isnan(pcs[q][c]) ? isnan(pg[q][c]) : fabs(pg[q][c] - pcs[q][c]) < 1e-7);
  }
  if (rank_ == 0 && memcmp(mg, mean, sizeof mg))
    fprintf(stderr,
            "test_cluster: note: the portable silhouette kernel differs in the last bits "
            "(%.17g vs %.17g)\n",
            mg[0], mean[0]);
  /* bitwise the same as one process */
  if (rank_ == 0) {
    const int32_t *as1[4] = {lab[0], lab[1], lab[2], lab[3]};
    double o[4], o0[4], o1[6], o2[2], o3[200], *po[4] = {o0, o1, o2, o3};
    SD_EXPECT_OK(sd_km_silhouette(MPI_COMM_SELF, x, m, m, p, 4, ks, as1, 0, 1, o, NULL, po));
    SD_EXPECT_MSG(!memcmp(o, mean, sizeof o) && !memcmp(o0, pc0, sizeof o0) &&
                      !memcmp(o1, pc1, sizeof o1) && !memcmp(o2, pc2, sizeof o2) &&
                      !memcmp(o3, pc3, sizeof o3),
                  "exact silhouette of 4 clusterings differs at %d ranks: %.17g vs %.17g", size_,
                  o[0], mean[0]);
  }
  for (int q = 0; q < 4; q++)
    free(lab[q]);
  free(x);
}

/* A rank that fails at any step of the exact ring: every rank returns its error (nobody hangs),
 * and the next call gives the same result as before. */
static void test_silhouette_failure(MPI_Comm comm) {
  int64_t m = 4 * 512 + 100;
  int p = 3, k = 3;
  int32_t *truth = malloc(sizeof *truth * m);
  float *x = blobs(m, p, k, 41, truth);
  int64_t first, count;
  sd_cluster_rows(m, rank_, size_, &first, &count);
  const int32_t *as[1] = {truth + first};
  double ref, after;
  SD_EXPECT_OK(
      sd_km_silhouette(comm, x + first * p, count, m, p, 1, &k, as, 0, 1, &ref, NULL, NULL));
  int last = size_ / 2 > 0 ? size_ / 2 + 1 : 0;
  for (int fr = 0; fr < size_; fr++)
    for (int step = 0; step <= last; step++) {
      sd_sil_debug dbg = {0, fr, step};
      double mu = -2;
      sd_status st = sd_km_silhouette_debug(comm, x + first * p, count, m, p, 1, &k, as, 0, 1, &mu,
                                            NULL, NULL, &dbg);
      SD_EXPECT_MSG(st == SD_ERR_NOMEM && strstr(sd_error_message(), "injected"),
                    "rank %d failing at step %d: rank %d got status %d (%s)", fr, step, rank_,
                    (int)st, sd_error_message());
      sd_error_clear();
      SD_EXPECT_OK(
          sd_km_silhouette(comm, x + first * p, count, m, p, 1, &k, as, 0, 1, &after, NULL, NULL));
      SD_EXPECT_MSG(after == ref, "after a failure (rank %d, step %d): %.17g vs %.17g", fr, step,
                    after, ref);
    }
  free(x);
  free(truth);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  if (rank_ == 0)
    test_external();
  test_pca_sizes(MPI_COMM_WORLD);
  test_pca(MPI_COMM_WORLD);
  test_kmeans(MPI_COMM_WORLD, SD_KM_INIT_PLUSPLUS);
  test_kmeans(MPI_COMM_WORLD, SD_KM_INIT_PARALLEL);
  test_silhouette(MPI_COMM_WORLD);
  test_silhouette_chunks(MPI_COMM_WORLD);
  test_silhouette_failure(MPI_COMM_WORLD);
  int f = sd_test_failures, total = 0;
  MPI_Allreduce(&f, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  int rc = sd_test_finish("test_cluster");
  MPI_Finalize();
  return total ? 1 : rc;
}
