/* tsne_opt.c - t-SNE gradient (Barnes-Hut and the exact O(n^2) reference), the PCA or
 * random initialisation, and the gradient descent of the reference method (early
 * exaggeration, momentum, delta-bar-delta gains), distributed by rows. */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "embed_internal.h"
#include "stemdefect/log.h"
#include "stemdefect/par.h"
#include "stemdefect/rng.h"
#include "stemdefect/tsne.h"

/* LAPACK (from OpenBLAS; no C header): symmetric eigen-decomposition. */
extern void dsyev_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda,
                   double *w, double *work, const int *lwork, int *info, size_t ljobz,
                   size_t luplo);

#define SD_TSNE_TINY 1e-300
/* bins per rank of the repulsion's cost profile (the load balancer) */
#define SD_TSNE_BINS 16

/* CPU seconds of the calling thread: what the load balancer measures (preemption by other
 * processes and busy waiting inside MPI are not work) */
static double cpu_now(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
    return sd_time_now();
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Scratch of the distributed gradient, allocated once per optimisation. */
typedef struct grad_ws {
  int size;
  int *cnt1, *dis1, *cnt2, *dis2; /* Allgatherv layouts of [n] and [n, 2] */
  double *pos, *neg;              /* [count, 2] */
  double *zown;                   /* [count] */
  double *zall;                   /* [n] */
  double t_rep, t_att, t_comm;    /* seconds in repulsion, attraction, communication */
} grad_ws;

static void grad_ws_free(grad_ws *w) {
  free(w->cnt1);
  free(w->dis1);
  free(w->cnt2);
  free(w->dis2);
  free(w->pos);
  free(w->neg);
  free(w->zown);
  free(w->zall);
  memset(w, 0, sizeof *w);
}

static sd_status grad_ws_init(MPI_Comm comm, int64_t n, int64_t count, grad_ws *w) {
  memset(w, 0, sizeof *w);
  MPI_Comm_size(comm, &w->size);
  size_t c = (size_t)(count > 0 ? count : 1);
  w->cnt1 = sd_malloc((size_t)w->size, sizeof(int), "gather counts");
  w->dis1 = sd_malloc((size_t)w->size, sizeof(int), "gather counts");
  w->cnt2 = sd_malloc((size_t)w->size, sizeof(int), "gather counts");
  w->dis2 = sd_malloc((size_t)w->size, sizeof(int), "gather counts");
  w->pos = sd_malloc(2 * c, sizeof(double), "attractive forces");
  w->neg = sd_malloc(2 * c, sizeof(double), "repulsive forces");
  w->zown = sd_malloc(c, sizeof(double), "per-point Z");
  w->zall = sd_malloc((size_t)n, sizeof(double), "per-point Z");
  if (!w->cnt1 || !w->dis1 || !w->cnt2 || !w->dis2 || !w->pos || !w->neg || !w->zown || !w->zall) {
    grad_ws_free(w);
    return SD_ERR_NOMEM;
  }
  if (2 * n > INT32_MAX) {
    grad_ws_free(w);
    return SD_ERROR(SD_ERR_ARG, "t-SNE: %lld points exceed one MPI message", (long long)n);
  }
  for (int r = 0; r < w->size; r++) {
    int64_t f, k;
    sd_shard_range(n, r, w->size, &f, &k);
    w->cnt1[r] = (int)k;
    w->dis1[r] = (int)f;
    w->cnt2[r] = (int)(2 * k);
    w->dis2[r] = (int)(2 * f);
  }
  return SD_OK;
}

void sd_tsne_attraction(const sd_tsne_affinity *a, const double *y_all, double exaggeration,
                        double *pos) {
  for (int64_t q = 0; q < a->count; q++) {
    int64_t i = a->first + q;
    double xi = y_all[2 * i], yi = y_all[2 * i + 1], fx = 0, fy = 0;
    for (int64_t e = a->rowptr[q]; e < a->rowptr[q + 1]; e++) {
      int64_t j = a->col[e];
      double dx = xi - y_all[2 * j], dy = yi - y_all[2 * j + 1];
      double pw = a->val[e] / (1.0 + dx * dx + dy * dy);
      fx += pw * dx;
      fy += pw * dy;
    }
    pos[2 * q] = exaggeration * fx;
    pos[2 * q + 1] = exaggeration * fy;
  }
}

/* Gathers the per-point values zown (own rows) into zall [n] and sums them in point order. */
static sd_status gather_sum(MPI_Comm comm, grad_ws *w, const double *own, int64_t count, int64_t n,
                            double *sum) {
  double t = sd_time_now();
  SD_CHECK(sd_par_check(
      MPI_Allgatherv(own, (int)count, MPI_DOUBLE, w->zall, w->cnt1, w->dis1, MPI_DOUBLE, comm),
      "allgather(per-point sums)"));
  w->t_comm += sd_time_now() - t;
  double s = 0;
  for (int64_t i = 0; i < n; i++)
    s += w->zall[i];
  *sum = s;
  return SD_OK;
}

/* Per-point KL terms of the own rows: out [count] = sum_j p_ij log(p_ij / q_ij), q_ij = w_ij iz. */
static void kl_terms(const sd_tsne_affinity *a, const double *y_all, double iz, double *out) {
  for (int64_t q = 0; q < a->count; q++) {
    int64_t i = a->first + q;
    double s = 0;
    for (int64_t e = a->rowptr[q]; e < a->rowptr[q + 1]; e++) {
      int64_t j = a->col[e];
      double dx = y_all[2 * i] - y_all[2 * j], dy = y_all[2 * i + 1] - y_all[2 * j + 1];
      double qij = iz / (1.0 + dx * dx + dy * dy);
      double p = a->val[e];
      s += p *
           log((p > SD_TSNE_TINY ? p : SD_TSNE_TINY) / (qij > SD_TSNE_TINY ? qij : SD_TSNE_TINY));
    }
    out[q] = s;
  }
}

static sd_status grad_core(MPI_Comm comm, const sd_tsne_affinity *a, sd_tsne_tree *t,
                           const double *y_all, double theta, double exaggeration, grad_ws *w,
                           double *grad, double *kl) {
  /* repulsion cannot fail once the tree's scratch is reserved (sd_tsne_tree_build); an
   * allocation failure in the middle of the collective sequence aborts the job */
  double t0 = sd_time_now();
  if (sd_tsne_tree_repulsion(t, a->first, a->count, theta, w->neg, w->zown) != SD_OK)
    SD_PAR_FATAL(comm);
  double t1 = sd_time_now();
  double t2 = t1;
  sd_tsne_attraction(a, y_all, exaggeration, w->pos);
  w->t_rep += t1 - t0;
  w->t_att += sd_time_now() - t2;
  w->t_comm += t2 - t1;
  double Z = 0;
  SD_CHECK(gather_sum(comm, w, w->zown, a->count, a->n, &Z));
  if (!(Z > 0))
    Z = SD_TSNE_TINY;
  const double iz = 1.0 / Z;
  for (int64_t e = 0; e < 2 * a->count; e++)
    grad[e] = 4.0 * (w->pos[e] - w->neg[e] * iz);
  if (kl) {
    /* per-point terms, then a fixed-order sum over the gathered vector */
    kl_terms(a, y_all, iz, w->zown);
    SD_CHECK(gather_sum(comm, w, w->zown, a->count, a->n, kl));
  }
  return SD_OK;
}

sd_status sd_tsne_gradient(MPI_Comm comm, const sd_tsne_affinity *a, sd_tsne_tree *t,
                           const double *y_all, double theta, double exaggeration, double *grad,
                           double *kl) {
  grad_ws w;
  SD_CHECK(grad_ws_init(comm, a->n, a->count, &w));
  sd_status st = grad_core(comm, a, t, y_all, theta, exaggeration, &w, grad, kl);
  grad_ws_free(&w);
  return st;
}

double sd_tsne_gradient_exact(int64_t n, const double *p, const double *y, double *grad) {
  double Z = 0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++) {
      if (i == j)
        continue;
      double dx = y[2 * i] - y[2 * j], dy = y[2 * i + 1] - y[2 * j + 1];
      Z += 1.0 / (1.0 + dx * dx + dy * dy);
    }
  double kl = 0;
  for (int64_t i = 0; i < n; i++) {
    double gx = 0, gy = 0;
    for (int64_t j = 0; j < n; j++) {
      if (i == j)
        continue;
      double dx = y[2 * i] - y[2 * j], dy = y[2 * i + 1] - y[2 * j + 1];
      double w = 1.0 / (1.0 + dx * dx + dy * dy);
      double pij = p[i * n + j];
      double m = (pij - w / Z) * w;
      gx += m * dx;
      gy += m * dy;
      if (pij > 0)
        kl += pij * log(pij / (w / Z));
    }
    grad[2 * i] = 4.0 * gx;
    grad[2 * i + 1] = 4.0 * gy;
  }
  return kl;
}

/* ---- initialisation --------------------------------------------------------------------- */

static sd_status init_random(const sd_tsne_params *p, int64_t n, double *y_all) {
  for (int64_t i = 0; i < n; i++) {
    sd_rng r;
    sd_rng_init(&r, p->seed, (uint64_t)i, SD_RNG_STREAM_TSNE);
    y_all[2 * i] = 1e-4 * sd_rng_normal(&r);
    y_all[2 * i + 1] = 1e-4 * sd_rng_normal(&r);
  }
  return SD_OK;
}

sd_status sd_tsne_initialize(MPI_Comm comm, const sd_tsne_params *p, const double *x_own,
                             int64_t count, int d, int64_t n, double *y_all) {
  if (p->init == SD_TSNE_INIT_RANDOM)
    return init_random(p, n, y_all);
  if (d < 2) {
    sd_log_warn("embed: PCA initialisation needs >= 2 input columns (the input has %d); using "
                "random initialisation",
                d);
    return init_random(p, n, y_all);
  }
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int64_t first, cnt;
  sd_shard_range(n, rank, size, &first, &cnt);
  sd_status st = SD_OK;
  int m = d * (d + 1) / 2;
  double *mean = sd_malloc((size_t)d, sizeof *mean, "PCA mean");
  double *xc = sd_malloc((size_t)(count > 0 ? count : 1) * d, sizeof *xc, "centred rows");
  double *mx = sd_calloc((size_t)d, sizeof *mx, "column bounds");
  double *pw = sd_malloc((size_t)m, sizeof *pw, "fixed-point scales");
  int *ex = sd_malloc((size_t)m, sizeof *ex, "fixed-point exponents");
  int64_t *acc = sd_calloc((size_t)m, sizeof *acc, "covariance sums");
  double *cov = sd_malloc((size_t)d * d, sizeof *cov, "covariance");
  double *ev = sd_malloc((size_t)d, sizeof *ev, "eigenvalues");
  double *work = NULL;
  if (!mean || !xc || !mx || !pw || !ex || !acc || !cov || !ev)
    st = SD_ERR_NOMEM;
  st = sd_par_agree(comm, st);
  if (st != SD_OK)
    goto done;
  SD_CHECK_GOTO(st, sd_tsne_repro_colsum(comm, x_own, count, d, mean), done);
  for (int j = 0; j < d; j++)
    mean[j] /= (double)n;
  for (int64_t i = 0; i < count; i++)
    for (int j = 0; j < d; j++) {
      double c = x_own[i * d + j] - mean[j];
      xc[i * d + j] = c;
      if (fabs(c) > mx[j])
        mx[j] = fabs(c);
    }
  SD_CHECK_GOTO(st, sd_par_allreduce_max_double(comm, mx, d), done);
  /* covariance: exact fixed-point sums of the products, entry (a <= b) */
  for (int a = 0, e = 0; a < d; a++)
    for (int b = a; b < d; b++, e++) {
      ex[e] = sd_tsne_fixed_exponent(mx[a] * mx[b], n);
      pw[e] = ldexp(1.0, ex[e]);
    }
  for (int64_t i = 0; i < count; i++) {
    const double *r = xc + i * d;
    for (int a = 0, e = 0; a < d; a++)
      for (int b = a; b < d; b++, e++)
        acc[e] += (int64_t)llround(r[a] * r[b] * pw[e]);
  }
  SD_CHECK_GOTO(st, sd_par_allreduce_sum_i64(comm, acc, m), done);
  for (int a = 0, e = 0; a < d; a++)
    for (int b = a; b < d; b++, e++) {
      double v = ldexp((double)acc[e], -ex[e]) / (double)n;
      cov[a * d + b] = v;
      cov[b * d + a] = v;
    }
  {
    int nn = d, lwork = -1, info = 0;
    double wq = 0;
    /* one BLAS thread inside dsyev: threaded kernels round differently, and the thread
     * count OpenBLAS picks depends on the process binding, i.e. on the rank count */
    int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    dsyev_("V", "U", &nn, cov, &nn, ev, &wq, &lwork, &info, 1, 1);
    lwork = (int)wq + 1;
    work = sd_malloc((size_t)lwork, sizeof *work, "LAPACK workspace");
    if (!work) {
      openblas_set_num_threads(blas_threads);
      st = SD_ERR_NOMEM;
      goto agree;
    }
    dsyev_("V", "U", &nn, cov, &nn, ev, work, &lwork, &info, 1, 1);
    openblas_set_num_threads(blas_threads);
    if (info != 0) {
      st = SD_ERROR(SD_ERR_INTERNAL, "PCA initialisation: LAPACK dsyev failed (info %d)", info);
      goto agree;
    }
  }
  {
    /* eigenvalues ascending: columns d-1 and d-2 (column-major: vector c is cov[c*d ..]) */
    double *v[2] = {cov + (size_t)(d - 1) * d, cov + (size_t)(d - 2) * d};
    for (int c = 0; c < 2; c++) {
      int big = 0;
      for (int j = 1; j < d; j++)
        if (fabs(v[c][j]) > fabs(v[c][big]))
          big = j;
      if (v[c][big] < 0)
        for (int j = 0; j < d; j++)
          v[c][j] = -v[c][j];
    }
    for (int64_t i = 0; i < count; i++) {
      double s0 = 0, s1 = 0;
      for (int j = 0; j < d; j++) {
        s0 += xc[i * d + j] * v[0][j];
        s1 += xc[i * d + j] * v[1][j];
      }
      y_all[2 * (first + i)] = s0;
      y_all[2 * (first + i) + 1] = s1;
    }
  }
agree:
  st = sd_par_agree(comm, st);
  if (st != SD_OK)
    goto done;
  {
    int *cnt2 = sd_malloc((size_t)size, sizeof *cnt2, "gather counts");
    int *dis2 = sd_malloc((size_t)size, sizeof *dis2, "gather counts");
    if (!cnt2 || !dis2) {
      free(cnt2);
      free(dis2);
      SD_PAR_FATAL(comm);
    }
    for (int r = 0; r < size; r++) {
      int64_t f, k;
      sd_shard_range(n, r, size, &f, &k);
      cnt2[r] = (int)(2 * k);
      dis2[r] = (int)(2 * f);
    }
    st = sd_par_check(
        MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, y_all, cnt2, dis2, MPI_DOUBLE, comm),
        "allgather(initial embedding)");
    free(cnt2);
    free(dis2);
    if (st != SD_OK)
      goto done;
  }
  {
    double s = 0, ss = 0;
    for (int64_t i = 0; i < n; i++)
      s += y_all[2 * i];
    double mu = s / (double)n;
    for (int64_t i = 0; i < n; i++)
      ss += (y_all[2 * i] - mu) * (y_all[2 * i] - mu);
    double sdv = sqrt(ss / (double)n);
    double f = sdv > 0 ? 1e-4 / sdv : 1.0;
    for (int64_t i = 0; i < 2 * n; i++)
      y_all[i] *= f;
  }
done:
  free(mean);
  free(xc);
  free(mx);
  free(pw);
  free(ex);
  free(acc);
  free(cov);
  free(ev);
  free(work);
  return st;
}

/* ---- optimisation ----------------------------------------------------------------------- */

int sd_tsne_balance_jitter = 0;

void sd_tsne_balance(int size, int64_t n, const int64_t *cut, int nb, const double *work,
                     const double *spw, const double *other, double gain, double *bnd) {
  /* the repulsion's cost profile over the slots: bin b of rank r covers an equal part of
   * [cut[r], cut[r+1]) and costs spw[r] * work[r nb + b] seconds (the price per operation
   * differs between regions of the embedding); rank r's other work stays with it. New
   * boundaries equalise repulsion + other work under that profile. */
  if (size < 2 || n <= 0 || nb < 1)
    return;
#define BIN_COST(e) (work[e] > 0 && spw[(e) / nb] > 0 ? spw[(e) / nb] * work[e] : 0.0)
  double trep = 0, toth = 0;
  for (int e = 0; e < size * nb; e++)
    trep += BIN_COST(e);
  for (int r = 0; r < size; r++)
    toth += other[r] > 0 ? other[r] : 0;
  if (!(trep > 0))
    return;
  const double share = (trep + toth) / size;
  double want_sum = 0;
  for (int r = 0; r < size; r++) {
    double w = share - (other[r] > 0 ? other[r] : 0);
    want_sum += w > 0 ? w : 0;
  }
  if (!(want_sum > 0))
    return;
  const double scale = trep / want_sum;
  double target = 0, fq = 0; /* cumulative wanted cost; cumulative cost before bin e */
  int e = 0;
  for (int r = 1; r < size; r++) {
    double w = share - (other[r - 1] > 0 ? other[r - 1] : 0);
    target += (w > 0 ? w : 0) * scale;
    double x = (double)n;
    for (; e < size * nb; e++) {
      const int q = e / nb, bb = e % nb;
      const int64_t len = cut[q + 1] - cut[q];
      /* the slots s with (s - cut[q]) nb / len == bb, the bin the tree counts them in */
      const double lo = (double)cut[q] + (double)((len * bb + nb - 1) / nb);
      const double hi = (double)cut[q] + (double)((len * (bb + 1) + nb - 1) / nb);
      const double c = BIN_COST(e);
      if (hi > lo && c > 0 && fq + c >= target) {
        x = lo + (hi - lo) * (target - fq) / c;
        break;
      }
      fq += c;
    }
#undef BIN_COST
    if (x > (double)n)
      x = (double)n;
    double v = bnd[r] + gain * (x - bnd[r]);
    bnd[r] = v < bnd[r - 1] ? bnd[r - 1] : v;
  }
  bnd[0] = 0;
  bnd[size] = (double)n;
  for (int r = size - 1; r > 0; r--)
    if (bnd[r] > bnd[r + 1])
      bnd[r] = bnd[r + 1];
}

sd_status sd_tsne_optimize(MPI_Comm comm, const sd_tsne_params *p, const sd_tsne_affinity *a,
                           double *y_all, sd_tsne_result *res) {
  /* Per iteration, every rank builds the same tree from the same y_all; rank r computes the
   * repulsion (3 doubles per point) of the tree groups in its range of sorted slots and the
   * attraction of its own rows; an allgather gives every rank all the repulsion (Z is summed
   * over it in point order), each rank updates its own rows, and a second allgather gives
   * everyone the new y_all. Each value is computed by exactly one rank by the same code
   * whatever the split, so the split of the slots may follow the measured times (one more
   * small allgather): the embedding is the same bits at any rank count and under any
   * split. */
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  const int64_t n = a->n, count = a->count;
  const double lr = sd_tsne_resolve_learning_rate(p, n);
  grad_ws w;
  sd_tsne_tree *tree = NULL;
  double *grad = NULL, *upd = NULL, *gains = NULL, *rep = NULL, *att = NULL, *bnd = NULL;
  double *times = NULL, *oth = NULL, *wk = NULL, *spw = NULL;
  int64_t *cut = NULL;
  int *rcnt = NULL, *rdis = NULL;
  sd_status st = grad_ws_init(comm, n, count, &w);
  if (st == SD_OK)
    st = sd_tsne_tree_create(n, &tree);
  size_t c2 = (size_t)(count > 0 ? 2 * count : 1);
  grad = sd_malloc(c2, sizeof *grad, "gradient");
  upd = sd_calloc(c2, sizeof *upd, "update");
  gains = sd_malloc(c2, sizeof *gains, "gains");
  rep = sd_malloc(3 * (size_t)n, sizeof *rep, "gathered repulsion");
  att = sd_malloc(c2, sizeof *att, "attraction");
  bnd = sd_malloc((size_t)size + 1, sizeof *bnd, "split of the slots");
  times = sd_malloc((size_t)size * (SD_TSNE_BINS + 2), sizeof *times, "per-rank times");
  oth = sd_calloc((size_t)size, sizeof *oth, "per-rank times");
  wk = sd_malloc((size_t)size * SD_TSNE_BINS, sizeof *wk, "cost profile");
  spw = sd_calloc((size_t)size, sizeof *spw, "cost profile");
  cut = sd_malloc((size_t)size + 1, sizeof *cut, "split of the slots");
  rcnt = sd_malloc((size_t)size, sizeof *rcnt, "gather counts");
  rdis = sd_malloc((size_t)size, sizeof *rdis, "gather counts");
  if (st == SD_OK && (!grad || !upd || !gains || !rep || !att || !bnd || !times || !oth || !wk ||
                      !spw || !cut || !rcnt || !rdis))
    st = SD_ERR_NOMEM;
  if (st == SD_OK && 3 * n > INT32_MAX)
    st = SD_ERROR(SD_ERR_ARG, "t-SNE: %lld points exceed one MPI message", (long long)n);
  st = sd_par_agree(comm, st);
  if (st != SD_OK)
    goto done;
  double t0 = sd_time_now(), t_build = 0, t_upd = 0, t_kl = 0;
  for (int64_t e = 0; e < 2 * count; e++)
    gains[e] = 1.0;
  for (int r = 0; r <= size; r++)
    bnd[r] = (double)((int64_t)r * n / size);
  int every = p->report_every > 0 ? p->report_every : 50;
  const int log_info = sd_log_get_level() >= SD_LOG_LEVEL_INFO;
  uint64_t jit = 0x9e3779b97f4a7c15ULL;
  double cpu_after = 0;               /* CPU seconds of the previous iteration's update */
  double busy_max = 0, busy_mean = 0; /* per iteration over ranks, summed: the imbalance */
  for (int it = 0; it < p->iterations; it++) {
    int early = it < p->exaggeration_iters;
    if (it == p->exaggeration_iters && it > 0) {
      /* the second stage starts afresh, as in the reference implementation */
      memset(upd, 0, c2 * sizeof *upd);
      for (int64_t e = 0; e < 2 * count; e++)
        gains[e] = 1.0;
    }
    double exag = early ? p->early_exaggeration : 1.0;
    double mom = early ? p->momentum_early : p->momentum_late;
    /* the intermediate KL divergences are only logged: not computed when info lines are
     * not shown (--quiet; the level comes from the command line, the same on every rank) */
    int report = (it + 1) % every == 0 && log_info;
    double kl = 0, tb = sd_time_now(), c0 = cpu_now();
    /* y_all is the same on every rank, so is the outcome of the build (a non-finite
     * embedding fails everywhere); only running out of memory is local: abort then */
    st = sd_tsne_tree_build(tree, n, y_all);
    t_build += sd_time_now() - tb;
    if (st == SD_ERR_NOMEM)
      SD_PAR_FATAL(comm);
    if (st != SD_OK)
      goto done;
    if (sd_tsne_balance_jitter) {
      /* tests: an arbitrary split (the same on every rank) must not change a bit */
      for (int r = 1; r < size; r++) {
        jit = jit * 6364136223846793005ULL + 1442695040888963407ULL;
        bnd[r] = (double)((jit >> 33) % (uint64_t)(n + 1));
      }
      for (int r = 1; r < size; r++)
        for (int q = r + 1; q < size; q++)
          if (bnd[q] < bnd[r]) {
            double x = bnd[q];
            bnd[q] = bnd[r];
            bnd[r] = x;
          }
    }
    cut[0] = 0;
    for (int r = 1; r < size; r++)
      cut[r] = sd_tsne_tree_cut(tree, (int64_t)bnd[r]);
    cut[size] = n;
    for (int r = 0; r < size; r++) {
      rcnt[r] = (int)(3 * (cut[r + 1] - cut[r]));
      rdis[r] = (int)(3 * cut[r]);
    }
    double mine[SD_TSNE_BINS + 2];
    memset(mine, 0, sizeof mine);
    double t1 = sd_time_now(), c1 = cpu_now();
    if (sd_tsne_tree_repulsion_slots(tree, cut[rank], cut[rank + 1], p->theta, rep + 3 * cut[rank],
                                     mine, SD_TSNE_BINS) != SD_OK)
      SD_PAR_FATAL(comm);
    double t2 = sd_time_now(), cr = cpu_now();
    sd_tsne_attraction(a, y_all, exag, att);
    double t3 = sd_time_now(), c3 = cpu_now();
    w.t_rep += t2 - t1;
    w.t_att += t3 - t2;
    if (size > 1) {
      SD_CHECK_GOTO(st,
                    sd_par_check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, rep, rcnt, rdis,
                                                MPI_DOUBLE, comm),
                                 "allgather(repulsion)"),
                    done);
      /* the repulsion's operation counts by bin, its CPU seconds, and those of all other
       * work of this rank since its last wait */
      mine[SD_TSNE_BINS] = cr - c1;
      mine[SD_TSNE_BINS + 1] = (c1 - c0) + (c3 - cr) + cpu_after;
      SD_CHECK_GOTO(st,
                    sd_par_check(MPI_Allgather(mine, SD_TSNE_BINS + 2, MPI_DOUBLE, times,
                                               SD_TSNE_BINS + 2, MPI_DOUBLE, comm),
                                 "allgather(times)"),
                    done);
    }
    double t4 = sd_time_now(), c4 = cpu_now();
    w.t_comm += t4 - t3;
    if (size > 1) {
      /* the cost profile: this iteration's operation counts, priced by each rank's smoothed
       * seconds per operation; the other work by its smoothed seconds (noise would move the
       * split) */
      const int stride = SD_TSNE_BINS + 2;
      double mx = 0, sum = 0;
      for (int r = 0; r < size; r++) {
        const double *tr = times + (size_t)r * stride;
        double b = tr[SD_TSNE_BINS] + tr[SD_TSNE_BINS + 1];
        mx = b > mx ? b : mx;
        sum += b;
        double ops = 0;
        for (int q = 0; q < SD_TSNE_BINS; q++)
          ops += tr[q];
        if (ops > 0 && tr[SD_TSNE_BINS] > 0) {
          double price = tr[SD_TSNE_BINS] / ops;
          spw[r] = spw[r] > 0 ? 0.75 * spw[r] + 0.25 * price : price;
        }
        oth[r] = it == 0 ? tr[SD_TSNE_BINS + 1] : 0.75 * oth[r] + 0.25 * tr[SD_TSNE_BINS + 1];
        memcpy(wk + (size_t)r * SD_TSNE_BINS, tr, SD_TSNE_BINS * sizeof *wk);
      }
      busy_max += mx;
      busy_mean += sum / size;
      if (!sd_tsne_balance_jitter)
        sd_tsne_balance(size, n, cut, SD_TSNE_BINS, wk, spw, oth, 0.7, bnd);
    }
    /* Z in point order, as the gathered per-point values were summed before */
    const int32_t *slot = sd_tsne_tree_slots(tree);
    double Z = 0;
    for (int64_t i = 0; i < n; i++)
      Z += rep[3 * (int64_t)slot[i] + 2];
    if (!(Z > 0))
      Z = SD_TSNE_TINY;
    const double iz = 1.0 / Z;
    double t5 = sd_time_now(), ck = cpu_now();
    if (report) {
      kl_terms(a, y_all, iz, w.zown);
      SD_CHECK_GOTO(st, gather_sum(comm, &w, w.zown, count, n, &kl), done);
    }
    double t6 = sd_time_now();
    ck = cpu_now() - ck; /* the same share on every rank, and rare: not for the balancer */
    {
      /* the repulsion of the own rows is scattered over the slots: prefetch it a few rows
       * ahead, and select the gains without branches (both keep the reference's values) */
      const int32_t *sl = slot + a->first;
      const double mg = p->min_gain;
      for (int64_t q = 0; q < count; q++) {
        if (q + 8 < count)
          __builtin_prefetch(rep + 3 * (int64_t)sl[q + 8]);
        const double *ri = rep + 3 * (int64_t)sl[q];
        double *yi = y_all + 2 * (a->first + q);
        for (int c = 0; c < 2; c++) {
          int64_t e = 2 * q + c;
          double g = 4.0 * (att[e] - ri[c] * iz), u = upd[e], gv = gains[e];
          double up = gv + 0.2, down = gv * 0.8;
          double gn = (u * g < 0.0) ? up : down;
          gn = gn < mg ? mg : gn;
          gains[e] = gn;
          u = mom * u - lr * (g * gn);
          upd[e] = u;
          yi[c] += u;
        }
      }
    }
    double t7 = sd_time_now();
    cpu_after = cpu_now() - c4 - ck;
    if (size > 1)
      SD_CHECK_GOTO(st,
                    sd_par_check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, y_all, w.cnt2,
                                                w.dis2, MPI_DOUBLE, comm),
                                 "allgather(embedding)"),
                    done);
    double t8 = sd_time_now();
    w.t_comm += t8 - t7;
    t_upd += (t5 - t4) + (t7 - t6);
    t_kl += t6 - t5;
    if (report)
      sd_log_info("embed: iteration %d/%d: KL divergence %.6f%s (%.1f s)", it + 1, p->iterations,
                  kl, early ? " (early exaggeration)" : "", sd_time_now() - t0);
  }
  /* the KL divergence of the final embedding */
  {
    double kl = 0;
    st = sd_tsne_tree_build(tree, n, y_all);
    if (st == SD_ERR_NOMEM)
      SD_PAR_FATAL(comm);
    if (st != SD_OK)
      goto done;
    SD_CHECK_GOTO(st, grad_core(comm, a, tree, y_all, p->theta, 1.0, &w, grad, &kl), done);
    sd_tsne_tree_info ti;
    sd_tsne_tree_stats(tree, &ti);
    sd_log_info("embed: optimisation %.2f s on rank 0: tree builds %.2f s (sort %.2f, cells "
                "%.2f, groups %.2f; %lld cells, %lld groups at the end; %lld of %lld sorts "
                "from the previous order), repulsion %.2f s (slots %lld-%lld of %lld at the "
                "end), attraction %.2f s, communication and waiting %.2f s, update %.2f s, "
                "KL reports %.2f s; CPU per iteration summed: slowest rank %.2f s, mean %.2f s",
                sd_time_now() - t0, t_build, ti.seconds_sort, ti.seconds_nodes, ti.seconds_groups,
                (long long)ti.nodes, (long long)ti.groups, (long long)ti.sorts_insertion,
                (long long)(ti.sorts_insertion + ti.sorts_radix), w.t_rep, (long long)cut[rank],
                (long long)cut[rank + 1], (long long)n, w.t_att, w.t_comm, t_upd, t_kl, busy_max,
                busy_mean);
    if (res) {
      res->kl_divergence = kl;
      res->iterations = p->iterations;
      res->learning_rate = lr;
      res->seconds_optimize = sd_time_now() - t0;
    }
  }
done:
  grad_ws_free(&w);
  sd_tsne_tree_destroy(&tree);
  free(grad);
  free(upd);
  free(gains);
  free(rep);
  free(att);
  free(bnd);
  free(times);
  free(oth);
  free(wk);
  free(spw);
  free(cut);
  free(rcnt);
  free(rdis);
  return st;
}

sd_status sd_tsne_run(MPI_Comm comm, const sd_tsne_params *p, const double *x_own, int64_t count,
                      int d, int64_t n, double *y_all, sd_tsne_result *res) {
  SD_CHECK(sd_tsne_params_check(p, n));
  int k = sd_tsne_resolve_neighbors(p, n);
  double t0 = sd_time_now();
  sd_status st = SD_OK;
  size_t ck = (size_t)(count > 0 ? count : 1) * (size_t)k;
  int64_t *nbr = sd_malloc(ck, sizeof *nbr, "neighbours");
  double *d2 = sd_malloc(ck, sizeof *d2, "neighbour distances");
  double *pc = sd_malloc(ck, sizeof *pc, "conditional P");
  sd_tsne_affinity *a = NULL;
  if (!nbr || !d2 || !pc)
    st = SD_ERR_NOMEM;
  st = sd_par_agree(comm, st);
  if (st != SD_OK)
    goto done;
  const sd_tsne_knn_method knn = sd_tsne_resolve_knn(p, n);
  if (knn == SD_TSNE_KNN_FOREST) {
    sd_log_info("embed: %lld points x %d columns, %d neighbours (approximate: random-projection "
                "forest of %d trees, leaves of at most %d points, %d refinement round(s))",
                (long long)n, d, k, p->forest_trees, sd_tsne_forest_leaf_size(k), p->forest_refine);
    SD_CHECK_GOTO(st,
                  sd_tsne_knn_forest(comm, x_own, count, d, n, k, p->forest_trees, p->forest_refine,
                                     p->seed, nbr, d2),
                  done);
  } else {
    sd_log_info("embed: %lld points x %d columns, %d neighbours (exact kNN, ring of row blocks)",
                (long long)n, d, k);
    SD_CHECK_GOTO(st, sd_tsne_knn(comm, x_own, count, d, n, k, nbr, d2), done);
  }
  int64_t bad = 0;
  sd_tsne_calibrate(count, k, d2, p->perplexity, pc, NULL, NULL, &bad);
  SD_CHECK_GOTO(st, sd_par_allreduce_sum_i64(comm, &bad, 1), done);
  if (bad > 0)
    sd_log_warn("embed: the bandwidth search missed the perplexity tolerance for %lld point(s)",
                (long long)bad);
  SD_CHECK_GOTO(st, sd_tsne_symmetrize(comm, n, k, nbr, pc, &a), done);
  free(nbr);
  free(d2);
  free(pc);
  nbr = NULL;
  d2 = pc = NULL;
  double t1 = sd_time_now();
  sd_log_info("embed: affinities ready in %.2f s (learning rate %g, theta %g)", t1 - t0,
              sd_tsne_resolve_learning_rate(p, n), p->theta);
  SD_CHECK_GOTO(st, sd_tsne_initialize(comm, p, x_own, count, d, n, y_all), done);
  SD_CHECK_GOTO(st, sd_tsne_optimize(comm, p, a, y_all, res), done);
  if (res) {
    res->neighbors = k;
    res->knn = knn;
    res->unconverged = bad;
    res->seconds_affinities = t1 - t0;
  }
done:
  free(nbr);
  free(d2);
  free(pc);
  sd_tsne_affinity_destroy(&a);
  return st;
}
