/* pca.c - PCA of the standardised columns: the correlation matrix (from sd_cluster_moments)
 * is decomposed with ScaLAPACK pdsyevd over a BLACS process grid; LAPACK dsyev is the
 * one-process reference. ScaLAPACK has no C header here, so the Fortran and C-BLACS symbols
 * we call are declared below (Fortran character arguments take a hidden length). */
#include <cblas.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "fixed.h"
#include "stemdefect/cluster.h"
#include "stemdefect/par.h"

extern int Csys2blacs_handle(MPI_Comm comm);
extern void Cfree_blacs_system_handle(int handle);
extern void Cblacs_gridinit(int *context, const char *order, int nprow, int npcol);
extern void Cblacs_gridinfo(int context, int *nprow, int *npcol, int *myrow, int *mycol);
extern void Cblacs_gridexit(int context);
extern int numroc_(const int *n, const int *nb, const int *iproc, const int *isrcproc,
                   const int *nprocs);
extern void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb,
                      const int *irsrc, const int *icsrc, const int *ictxt, const int *lld,
                      int *info);
extern void pdsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *ia,
                     const int *ja, const int *desca, double *w, double *z, const int *iz,
                     const int *jz, const int *descz, double *work, const int *lwork, int *iwork,
                     const int *liwork, int *info, size_t jobz_len, size_t uplo_len);
extern void dsyev_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda,
                   double *w, double *work, const int *lwork, int *info, size_t jobz_len,
                   size_t uplo_len);

/* Shared post-processing: ascending eigenpairs w[d], z (column-major, column j = vector j)
 * -> descending evals, row-major evecs, rounded and sign-fixed (see cluster.h). */
static void eig_finish(int d, const double *a, const double *w, const double *z, double *evals,
                       double *evecs) {
  double trace = 0;
  for (int i = 0; i < d; i++)
    trace += fabs(a[(size_t)i * d + i]);
  int te = trace > 0 ? ilogb(trace) : 0;
  double qv = ldexp(1.0, te - 30), qz = ldexp(1.0, -26);
  for (int i = 0; i < d; i++) {
    int j = d - 1 - i;
    evals[i] = nearbyint(w[j] / qv) * qv;
    double *v = evecs + (size_t)i * d;
    int arg = 0;
    for (int r = 0; r < d; r++) {
      v[r] = nearbyint(z[(size_t)j * d + r] / qz) * qz;
      if (fabs(v[r]) > fabs(v[arg]))
        arg = r;
    }
    if (v[arg] < 0)
      for (int r = 0; r < d; r++)
        v[r] = -v[r] + 0.0;
  }
}

sd_status sd_pca_eig_lapack(int d, const double *a, double *evals, double *evecs) {
  sd_status st = SD_OK;
  double *z = NULL, *w = NULL, *work = NULL;
  SD_ALLOC_GOTO(st, z, (size_t)d * d, done);
  SD_ALLOC_GOTO(st, w, (size_t)d, done);
  memcpy(z, a, sizeof *z * (size_t)d * d); /* symmetric: row- and column-major agree */
  int lwork = -1, info = 0;
  double q = 0;
  dsyev_("V", "U", &d, z, &d, w, &q, &lwork, &info, 1, 1);
  lwork = (int)q + 1;
  SD_ALLOC_GOTO(st, work, (size_t)lwork, done);
  dsyev_("V", "U", &d, z, &d, w, work, &lwork, &info, 1, 1);
  if (info != 0) {
    st = SD_ERROR(SD_ERR_INTERNAL, "LAPACK dsyev failed on a %d x %d matrix (info %d)", d, d, info);
    goto done;
  }
  eig_finish(d, a, w, z, evals, evecs);
done:
  free(z);
  free(w);
  free(work);
  return st;
}

sd_status sd_pca_eig(MPI_Comm comm, int d, const double *a, double *evals, double *evecs) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  if (d < 1)
    return SD_ERROR(SD_ERR_ARG, "eigen-decomposition of a %d x %d matrix", d, d);
  int nprow = (int)floor(sqrt((double)size));
  while (nprow > 1 && nprow * nprow > size)
    nprow--;
  int npcol = size / nprow;
  if (nprow * npcol > d * d)
    nprow = npcol = 1; /* more grid than matrix: keep it small */
  int ingrid = rank < nprow * npcol;
  /* blocks small enough that every grid rank holds a part (ScaLAPACK wants square blocks) */
  int pmax = nprow > npcol ? nprow : npcol;
  int nb = (d + pmax - 1) / pmax;
  if (nb > 64)
    nb = 64;
  if (nb < 1)
    nb = 1;

  int handle = Csys2blacs_handle(comm);
  int ctxt = handle;
  Cblacs_gridinit(&ctxt, "Row", nprow, npcol);
  int myrow = -1, mycol = -1, gr, gc;
  if (ingrid)
    Cblacs_gridinfo(ctxt, &gr, &gc, &myrow, &mycol);
  int zero = 0, one = 1, info = 0;
  int mloc = 0, nloc = 0, lld = 1;
  int desca[9], descz[9];
  double *al = NULL, *zl = NULL, *w = NULL, *zfull = NULL, *work = NULL;
  int *iwork = NULL;
  sd_status st = SD_OK;
  if (ingrid) {
    mloc = numroc_(&d, &nb, &myrow, &zero, &nprow);
    nloc = numroc_(&d, &nb, &mycol, &zero, &npcol);
    lld = mloc > 1 ? mloc : 1;
    descinit_(desca, &d, &d, &nb, &nb, &zero, &zero, &ctxt, &lld, &info);
    if (info == 0)
      descinit_(descz, &d, &d, &nb, &nb, &zero, &zero, &ctxt, &lld, &info);
    if (info != 0)
      st = SD_ERROR(SD_ERR_INTERNAL, "ScaLAPACK descinit failed (info %d)", info);
  }
  size_t nl = (size_t)lld * (nloc > 0 ? nloc : 1);
  if (st == SD_OK) {
    al = sd_calloc(nl, sizeof *al, "local matrix");
    zl = sd_calloc(nl, sizeof *zl, "local eigenvectors");
    w = sd_calloc((size_t)d, sizeof *w, "eigenvalues");
    zfull = sd_calloc((size_t)d * d, sizeof *zfull, "eigenvectors");
    if (!al || !zl || !w || !zfull)
      st = SD_ERR_NOMEM;
  }
  /* workspace query on the grid; the sizes can differ per rank: take the maximum */
  double wq[2] = {0, 0};
  if (st == SD_OK && ingrid) {
    for (int lj = 0; lj < nloc; lj++) {
      int gj = ((lj / nb) * npcol + mycol) * nb + lj % nb;
      for (int li = 0; li < mloc; li++) {
        int gi = ((li / nb) * nprow + myrow) * nb + li % nb;
        al[(size_t)lj * lld + li] = a[(size_t)gi * d + gj];
      }
    }
    double q = 0;
    int iq = 0, m1 = -1;
    pdsyevd_("V", "U", &d, al, &one, &one, desca, w, zl, &one, &one, descz, &q, &m1, &iq, &m1,
             &info, 1, 1);
    if (info != 0)
      st = SD_ERROR(SD_ERR_INTERNAL, "ScaLAPACK pdsyevd workspace query failed (info %d)", info);
    wq[0] = q;
    wq[1] = iq;
  }
  st = sd_par_agree(comm, st);
  if (st == SD_OK)
    st = sd_par_allreduce_max_double(comm, wq, 2);
  if (st == SD_OK && ingrid) {
    /* the query undercounts what pdsyevd hands on to PDORMTR (its back-transformation needs
     * max(nb (nb - 1) / 2, (nq + mp) nb) + nb^2): with 1.1 x the query + 1024 alone, PDORMTR
     * rejected its LWORK (d = 42..73 on one rank, 91..135 on a 2 x 2 grid, 151..197 on 3 x
     * 3, ...), printed a message, and pdsyevd returned info 0 with wrong eigenvectors. Four
     * times that requirement on top. */
    int lwork = (int)(wq[0] * 1.1) + 1024 + 4 * (nb * nb + (mloc + nloc) * nb),
        liwork = (int)wq[1] + 64;
    work = sd_malloc((size_t)lwork, sizeof *work, "pdsyevd work");
    iwork = sd_malloc((size_t)liwork, sizeof *iwork, "pdsyevd iwork");
    if (!work || !iwork)
      st = SD_ERR_NOMEM;
    if (st == SD_OK) {
      pdsyevd_("V", "U", &d, al, &one, &one, desca, w, zl, &one, &one, descz, work, &lwork, iwork,
               &liwork, &info, 1, 1);
      if (info != 0)
        st = SD_ERROR(SD_ERR_INTERNAL, "ScaLAPACK pdsyevd failed on a %d x %d matrix (info %d)", d,
                      d, info);
    }
    /* scatter the local eigenvector blocks into the full (column-major) matrix; the sum over
     * ranks below adds zeros elsewhere, which is exact */
    if (st == SD_OK)
      for (int lj = 0; lj < nloc; lj++) {
        int gj = ((lj / nb) * npcol + mycol) * nb + lj % nb;
        for (int li = 0; li < mloc; li++) {
          int gi = ((li / nb) * nprow + myrow) * nb + li % nb;
          zfull[(size_t)gj * d + gi] = zl[(size_t)lj * lld + li];
        }
      }
  }
  st = sd_par_agree(comm, st);
  if (st == SD_OK && rank != 0)
    for (int i = 0; i < d; i++)
      w[i] = 0; /* rank 0's eigenvalues for everyone */
  if (st == SD_OK)
    st = sd_par_allreduce_sum_double(comm, zfull, d * d);
  if (st == SD_OK)
    st = sd_par_allreduce_sum_double(comm, w, d);
  if (st == SD_OK)
    eig_finish(d, a, w, zfull, evals, evecs);
  if (st == SD_OK) {
    /* ScaLAPACK can return info 0 with wrong vectors (above): check that the vectors have
     * unit length and solve the eigen-equation, within the rounding of eig_finish (vectors
     * to 2^-26, eigenvalues to 2^-30 of the trace); NaN fails every test */
    double scale = 0, worst = 0, norm = 0, trace = 0;
    for (int i = 0; i < d; i++) {
      trace += fabs(a[(size_t)i * d + i]);
      const double e = fabs(evals[i]);
      if (!(e <= scale))
        scale = e;
      for (int c = 0; c < d; c++) {
        const double x = fabs(a[(size_t)i * d + c]);
        if (!(x <= scale))
          scale = x;
      }
    }
    const double qv = ldexp(1.0, (trace > 0 ? ilogb(trace) : 0) - 30);
    for (int i = 0; i < d; i++) {
      const double *v = evecs + (size_t)i * d;
      double vv = 0;
      for (int r = 0; r < d; r++) {
        double s = 0;
        for (int c = 0; c < d; c++)
          s += a[(size_t)r * d + c] * v[c];
        const double e = fabs(s - evals[i] * v[r]);
        if (!(e <= worst))
          worst = e;
        vv += v[r] * v[r];
      }
      if (!(fabs(vv - 1.0) <= norm))
        norm = fabs(vv - 1.0);
    }
    if (!(worst <= 1e-5 * scale + qv + 1e-300) || !(norm <= 1e-6))
      st = SD_ERROR(SD_ERR_INTERNAL,
                    "ScaLAPACK pdsyevd returned eigenvectors that do not solve the eigen-equation "
                    "of the %d x %d matrix (residual %.3g against entries up to %.3g, unit length "
                    "off by %.3g) on a %d x %d grid",
                    d, d, worst, scale, norm, nprow, npcol);
    st = sd_par_agree(comm, st);
  }
  if (ingrid)
    Cblacs_gridexit(ctxt);
  Cfree_blacs_system_handle(handle);
  free(al);
  free(zl);
  free(w);
  free(zfull);
  free(work);
  free(iwork);
  return st;
}

void sd_pca_destroy(sd_pca **pca) {
  if (!pca || !*pca)
    return;
  sd_pca *p = *pca;
  free(p->columns);
  free(p->mean);
  free(p->scale);
  free(p->eigenvalues);
  free(p->explained_ratio);
  free(p->components);
  free(p);
  *pca = NULL;
}

sd_status sd_pca_fit(MPI_Comm comm, int d_in, const double *mean, const double *std,
                     const double *corr, int d, const int *columns, double variance, int ncomp,
                     sd_pca **out) {
  *out = NULL;
  if (!columns)
    d = d_in;
  sd_status st = SD_OK;
  sd_pca *p = sd_calloc(1, sizeof *p, "pca");
  double *c = NULL;
  if (!p)
    st = SD_ERR_NOMEM;
  if (st == SD_OK) {
    p->d_in = d_in;
    p->d = d;
    p->columns = sd_malloc((size_t)d, sizeof *p->columns, "pca columns");
    p->mean = sd_malloc((size_t)d, sizeof *p->mean, "pca mean");
    p->scale = sd_malloc((size_t)d, sizeof *p->scale, "pca scale");
    p->eigenvalues = sd_malloc((size_t)d, sizeof *p->eigenvalues, "pca eigenvalues");
    p->explained_ratio = sd_malloc((size_t)d, sizeof *p->explained_ratio, "pca ratios");
    p->components = sd_malloc((size_t)d * d, sizeof *p->components, "pca components");
    c = sd_malloc((size_t)d * d, sizeof *c, "covariance");
    if (!p->columns || !p->mean || !p->scale || !p->eigenvalues || !p->explained_ratio ||
        !p->components || !c)
      st = SD_ERR_NOMEM;
  }
  st = sd_par_agree(comm, st);
  if (st == SD_OK) {
    for (int i = 0; i < d; i++) {
      int ci = columns ? columns[i] : i;
      p->columns[i] = ci;
      p->mean[i] = mean[ci];
      p->scale[i] = std[ci] > 0 ? std[ci] : 1.0;
      for (int j = 0; j < d; j++)
        c[(size_t)i * d + j] = corr[(size_t)ci * d_in + (columns ? columns[j] : j)];
    }
    st = sd_pca_eig(comm, d, c, p->eigenvalues, p->components);
  }
  if (st == SD_OK) {
    double tot = 0;
    for (int i = 0; i < d; i++)
      tot += fmax(p->eigenvalues[i], 0.0);
    double cum = 0;
    p->p = 0;
    for (int i = 0; i < d; i++) {
      p->explained_ratio[i] = tot > 0 ? fmax(p->eigenvalues[i], 0.0) / tot : 0.0;
      cum += p->explained_ratio[i];
      if (p->p == 0 && cum >= variance - 1e-12)
        p->p = i + 1;
    }
    if (p->p == 0)
      p->p = d;
    if (ncomp > 0)
      p->p = ncomp < d ? ncomp : d;
  }
  free(c);
  if (st != SD_OK) {
    sd_pca_destroy(&p);
    return st;
  }
  *out = p;
  return SD_OK;
}

sd_status sd_pca_transform(const sd_pca *pca, const float *x, int64_t m_local, float *scores) {
  int d = pca->d, p = pca->p, din = pca->d_in;
  double *z = sd_malloc((size_t)SD_CLUSTER_CHUNK * d, sizeof *z, "standardised chunk");
  double *s = sd_malloc((size_t)SD_CLUSTER_CHUNK * p, sizeof *s, "score chunk");
  if (!z || !s) {
    free(z);
    free(s);
    return SD_ERR_NOMEM;
  }
  for (int64_t c0 = 0; c0 < m_local; c0 += SD_CLUSTER_CHUNK) {
    int64_t nb = m_local - c0 < SD_CLUSTER_CHUNK ? m_local - c0 : SD_CLUSTER_CHUNK;
    for (int64_t i = 0; i < nb; i++)
      for (int j = 0; j < d; j++)
        z[i * d + j] = ((double)x[(c0 + i) * din + pca->columns[j]] - pca->mean[j]) / pca->scale[j];
    int nt = sd_blas_single_begin();
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, p, d, 1.0, z, d, pca->components,
                d, 0.0, s, p);
    sd_blas_single_end(nt);
    for (int64_t i = 0; i < nb * p; i++)
      scores[c0 * p + i] = (float)s[i];
  }
  free(z);
  free(s);
  return SD_OK;
}
