/* cluster_internal.h - hooks into the cluster module for its tests. Not a public header. */
#ifndef STEMDEFECT_CLUSTER_INTERNAL_H
#define STEMDEFECT_CLUSTER_INTERNAL_H

#include <mpi.h>
#include <stdint.h>

#include "stemdefect/status.h"

/* How sd_km_silhouette_debug departs from sd_km_silhouette. */
typedef struct sd_sil_debug {
  int generic;   /* 1: the portable tile kernel even where the CPU has AVX2 */
  int fail_rank; /* this rank fails (as if out of memory) at fail_step of the exact ring; -1: none
                  */
  int fail_step; /* 0: its own block's pairs, 1 .. P/2: the ring steps, P/2 + 1: returning sums */
} sd_sil_debug;

/* Collective. sd_km_silhouette with the departures in dbg (NULL: none). */
sd_status sd_km_silhouette_debug(MPI_Comm comm, const float *x, int64_t m_local, int64_t m, int p,
                                 int nk, const int *ks, const int32_t *const *assign,
                                 int64_t sample, uint64_t seed, double *mean, double *stderr_out,
                                 double *const *per_cluster, const sd_sil_debug *dbg);

#endif
