/* nn_par.h - internal to src/nn: the engine's own thread split.
 *
 * A model pass (sd_nn_model_forward/backward) with T > 1 threads (sd_nn_set_threads, default
 * OpenBLAS's thread count) sets OpenBLAS to one thread and splits each layer itself: the
 * convolutions by images (each thread its own workspace and, in backward, its own weight
 * gradient, summed after the layer in thread order), batch norm by channels, the elementwise
 * and per-plane layers by ranges. The GEMMs of one thread are then large enough to run at the
 * single-core speed, where OpenBLAS's threads split each small GEMM and wait between them.
 * With T = 1 nothing forks and every result is as before; with T > 1 only the order of the
 * weight-gradient sums depends on T (the same T gives the same bits). */
#ifndef STEMDEFECT_NN_PAR_H
#define STEMDEFECT_NN_PAR_H

#include <omp.h>
#include <stddef.h>

/* Threads of the running model pass; 1 outside a pass. */
extern int sd_nn_par_active;

/* Below this many floats of work a layer runs on one thread (a fork costs a few us). */
#define SD_NN_PAR_MIN_FLOATS 32768

/* Threads for a kernel touching `floats` floats. */
static inline int sd_nn_par_threads_for(size_t floats) {
  return sd_nn_par_active > 1 && floats >= SD_NN_PAR_MIN_FLOATS ? sd_nn_par_active : 1;
}

/* Part t of T of [0, n), boundaries on multiples of `align` (except n). */
static inline void sd_nn_par_part(size_t n, int t, int T, size_t align, size_t *lo, size_t *hi) {
  size_t units = (n + align - 1) / align;
  size_t a = units * (size_t)t / (size_t)T, b = units * (size_t)(t + 1) / (size_t)T;
  *lo = a * align < n ? a * align : n;
  *hi = b * align < n ? b * align : n;
}

/* Runs the body (the variadic part) with [lo, hi) the calling thread's part of [0, N) (boundaries
 * on multiples of ALIGN) on T_ threads, or with [0, N) when T_ <= 1. */
#define SD_NN_PAR_RANGE(T_, N_, ALIGN_, ...)                                                       \
  do {                                                                                             \
    const int par_t_ = (T_);                                                                       \
    const size_t par_n_ = (N_);                                                                    \
    if (par_t_ <= 1) {                                                                             \
      const size_t lo = 0, hi = par_n_;                                                            \
      __VA_ARGS__;                                                                                 \
    } else {                                                                                       \
      _Pragma("omp parallel num_threads(par_t_)") {                                                \
        size_t lo, hi;                                                                             \
        sd_nn_par_part(par_n_, omp_get_thread_num(), omp_get_num_threads(), (ALIGN_), &lo, &hi);   \
        if (hi > lo) {                                                                             \
          __VA_ARGS__;                                                                             \
        }                                                                                          \
      }                                                                                            \
    }                                                                                              \
  } while (0)

#endif
