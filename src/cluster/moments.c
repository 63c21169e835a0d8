/* moments.c - chunk-aligned row layout, exact distributed column moments (mean, population
 * std, correlation of the standardised columns) and the feature screen. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fixed.h"
#include "stemdefect/cluster.h"
#include "stemdefect/par.h"

void sd_cluster_rows(int64_t m, int rank, int size, int64_t *first, int64_t *count) {
  int64_t nchunks = (m + SD_CLUSTER_CHUNK - 1) / SD_CLUSTER_CHUNK, cf, cc;
  sd_shard_range(nchunks, rank, size, &cf, &cc);
  int64_t lo = cf * SD_CLUSTER_CHUNK, hi = (cf + cc) * SD_CLUSTER_CHUNK;
  if (lo > m) lo = m;
  if (hi > m) hi = m;
  *first = lo;
  *count = hi - lo;
}

sd_status sd_cluster_moments(MPI_Comm comm, const float *x, int64_t m_local, int64_t m, int d,
                             double *mean, double *std, double *corr) {
  if (m < 1 || d < 1) return SD_ERROR(SD_ERR_ARG, "moments of a %lld x %d matrix", (long long)m, d);
  sd_status st = SD_OK;
  double *ext = NULL, *part = NULL, *y = NULL, *cov = NULL, *fac = NULL;
  int64_t *acc = NULL;
  int *ex = NULL;
  size_t dd = (size_t)d * d;
  SD_ALLOC_GOTO(st, ext, 2 * (size_t)d, fail);
  SD_ALLOC_GOTO(st, part, dd, fail);
  SD_ALLOC_GOTO(st, y, (size_t)SD_CLUSTER_CHUNK * d, fail);
  SD_ALLOC_GOTO(st, cov, dd, fail);
  SD_ALLOC_GOTO(st, fac, dd, fail);
  SD_ALLOC_GOTO(st, acc, dd, fail);
  SD_ALLOC_GOTO(st, ex, dd, fail);
fail:
  SD_CHECK_GOTO(st, sd_par_agree(comm, st), done);

  /* global max and -min per column: bounds for the fixed-point scales */
  for (int j = 0; j < d; j++) ext[j] = ext[d + j] = -INFINITY;
  for (int64_t i = 0; i < m_local; i++)
    for (int j = 0; j < d; j++) {
      double v = x[i * d + j];
      if (v > ext[j]) ext[j] = v;
      if (-v > ext[d + j]) ext[d + j] = -v;
    }
  SD_CHECK_GOTO(st, sd_par_allreduce_max_double(comm, ext, 2 * d), done);

  /* pass 1: exact column sums */
  for (int j = 0; j < d; j++) {
    double amax = fmax(fabs(ext[j]), fabs(ext[d + j]));
    ex[j] = sd_fix_exponent((double)m * amax * 1.0001);
    fac[j] = sd_fix_factor(ex[j]);
    acc[j] = 0;
  }
  for (int64_t c0 = 0; c0 < m_local; c0 += SD_CLUSTER_CHUNK) {
    int64_t nb = m_local - c0 < SD_CLUSTER_CHUNK ? m_local - c0 : SD_CLUSTER_CHUNK;
    for (int j = 0; j < d; j++) part[j] = 0;
    for (int64_t i = c0; i < c0 + nb; i++)
      for (int j = 0; j < d; j++) part[j] += x[i * d + j];
    for (int j = 0; j < d; j++) acc[j] += sd_fix_from(part[j], fac[j]);
  }
  SD_CHECK_GOTO(st, sd_par_allreduce_sum_i64(comm, acc, d), done);
  for (int j = 0; j < d; j++) mean[j] = sd_fix_to(acc[j], ex[j]) / (double)m;
  if (!std && !corr) goto done;

  /* pass 2: exact centred second moments, one dgemm per chunk */
  double *cmax = ext; /* reuse: largest |x - mean| per column */
  for (int j = 0; j < d; j++) {
    double hi = ext[j] - mean[j], lo = -ext[d + j] - mean[j];
    cmax[j] = fmax(fabs(hi), fabs(lo));
  }
  for (int a = 0; a < d; a++)
    for (int b = 0; b < d; b++) {
      size_t ij = (size_t)a * d + b;
      ex[ij] = sd_fix_exponent((double)m * cmax[a] * cmax[b] * 1.0001);
      fac[ij] = sd_fix_factor(ex[ij]);
      acc[ij] = 0;
    }
  for (int64_t c0 = 0; c0 < m_local; c0 += SD_CLUSTER_CHUNK) {
    int64_t nb = m_local - c0 < SD_CLUSTER_CHUNK ? m_local - c0 : SD_CLUSTER_CHUNK;
    for (int64_t i = 0; i < nb; i++)
      for (int j = 0; j < d; j++) y[i * d + j] = (double)x[(c0 + i) * d + j] - mean[j];
    int nt = sd_blas_single_begin();
    /* inner dimension at most SD_CLUSTER_SUBK per dgemm (thread-count independent), summed
     * in a fixed order */
    for (int64_t r0 = 0; r0 < nb; r0 += SD_CLUSTER_SUBK) {
      int rn = (int)(nb - r0 < SD_CLUSTER_SUBK ? nb - r0 : SD_CLUSTER_SUBK);
      cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, d, rn, 1.0, y + r0 * d, d,
                  y + r0 * d, d, r0 == 0 ? 0.0 : 1.0, part, d);
    }
    sd_blas_single_end(nt);
    for (int a = 0; a < d; a++)
      for (int b = a; b < d; b++) acc[(size_t)a * d + b] += sd_fix_from(part[(size_t)a * d + b], fac[(size_t)a * d + b]);
  }
  SD_CHECK_GOTO(st, sd_par_allreduce_sum_i64(comm, acc, (int)dd), done);
  for (int a = 0; a < d; a++)
    for (int b = a; b < d; b++) {
      double v = sd_fix_to(acc[(size_t)a * d + b], ex[(size_t)a * d + b]) / (double)m;
      cov[(size_t)a * d + b] = cov[(size_t)b * d + a] = v;
    }
  /* a column is constant when its std is below 1e-12 of its magnitude (rounding of the mean
   * leaves a tiny non-zero spread): it gets scale 1 and zero correlations */
  for (int j = 0; j < d; j++) {
    double s = sqrt(fmax(cov[(size_t)j * d + j], 0.0));
    double mag = fmax(fabs(ext[j]), fabs(mean[j]));
    part[j] = (s > 1e-12 * mag && s > 0) ? s : 0.0;
    if (std) std[j] = part[j];
  }
  if (corr)
    for (int a = 0; a < d; a++)
      for (int b = 0; b < d; b++) {
        double sa = part[a], sb = part[b];
        corr[(size_t)a * d + b] = (sa > 0 && sb > 0) ? cov[(size_t)a * d + b] / (sa * sb) : 0.0;
      }
done:
  free(ext);
  free(part);
  free(y);
  free(cov);
  free(fac);
  free(acc);
  free(ex);
  return st;
}

int sd_cluster_screen(int d, const double *std, const double *corr, double min_var,
                      double max_corr, sd_screen_reason *reason, int *partner) {
  int kept = 0, best = 0;
  for (int j = 0; j < d; j++) {
    partner[j] = -1;
    reason[j] = std[j] * std[j] < min_var ? SD_SCREEN_REASON_LOW_VARIANCE : SD_SCREEN_REASON_KEPT;
    if (std[j] > std[best]) best = j;
  }
  for (int j = 0; j < d; j++) {
    if (reason[j] != SD_SCREEN_REASON_KEPT) continue;
    for (int i = 0; i < j; i++)
      if (reason[i] == SD_SCREEN_REASON_KEPT && fabs(corr[(size_t)i * d + j]) > max_corr) {
        reason[j] = SD_SCREEN_REASON_CORRELATED;
        partner[j] = i;
        break;
      }
    if (reason[j] == SD_SCREEN_REASON_KEPT) kept++;
  }
  if (kept == 0 && d > 0) {
    reason[best] = SD_SCREEN_REASON_KEPT;
    partner[best] = -1;
    kept = 1;
  }
  return kept;
}
