/* fixed.h - internal: order-independent sums through 64-bit fixed point.
 *
 * A sum whose every partial is bounded by `bound` (agreed by all ranks, e.g. rows * global
 * max |value|) is accumulated as int64 values v * 2^e with e chosen so bound * 2^e < 2^62.
 * Integer addition is exact and associative, so an MPI_SUM over ranks gives the same bits
 * whatever the rank count or order. The resolution is bound * 2^-62 (about 2e-19 * bound).
 */
#ifndef SD_CLUSTER_FIXED_H
#define SD_CLUSTER_FIXED_H

#include <cblas.h>
#include <math.h>
#include <stdint.h>

/* OpenBLAS rounds a GEMM element differently depending on how its threads split the matrix
 * (edge kernels), so the GEMMs whose values reach our results run single-threaded; ranks are
 * the parallelism. begin returns the previous thread count for end. */
static inline int sd_blas_single_begin(void) {
  int n = openblas_get_num_threads();
  if (n != 1) openblas_set_num_threads(1);
  return n;
}
static inline void sd_blas_single_end(int n) {
  if (n != 1) openblas_set_num_threads(n);
}

/* The exponent e for sums bounded by bound (a tiny or non-positive bound is raised to 1e-200). */
static inline int sd_fix_exponent(double bound) {
  if (!(bound > 1e-200)) bound = 1e-200;
  int ex;
  (void)frexp(bound, &ex); /* bound < 2^ex */
  return 62 - ex;
}
static inline double sd_fix_factor(int e) { return ldexp(1.0, e); }
/* v * factor truncated toward zero (|v| <= bound). */
static inline int64_t sd_fix_from(double v, double factor) { return (int64_t)(v * factor); }
static inline double sd_fix_to(int64_t v, int e) { return ldexp((double)v, -e); }

#endif
