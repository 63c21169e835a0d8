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

#endif
