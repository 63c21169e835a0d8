/* cluster_bench.c - timing driver for tests/bench/cluster_bench.sh: k-means time per Lloyd
 * iteration and exact silhouette time on synthetic blobs, at any rank count.
 * usage: cluster_bench kmeans N D K ITERS REPEATS | silhouette N D K REPEATS
 * Prints one line per repeat: "<what> seconds <s>" (rank 0); rows are generated per global
 * row index, so the data do not depend on the rank count. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stemdefect/cluster.h"
#include "stemdefect/log.h"
#include "stemdefect/rng.h"

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  sd_log_init(rank, size, SD_LOG_LEVEL_WARN);
  if (argc < 6) {
    if (rank == 0) fprintf(stderr, "usage: %s kmeans N D K ITERS REPEATS | silhouette N D K REPEATS\n", argv[0]);
    MPI_Finalize();
    return 2;
  }
  int km = !strcmp(argv[1], "kmeans");
  int64_t n = atoll(argv[2]);
  int d = atoi(argv[3]), k = atoi(argv[4]);
  int iters = km ? atoi(argv[5]) : 0, reps = atoi(argv[km ? 6 : 5]);
  int64_t first, count;
  sd_cluster_rows(n, rank, size, &first, &count);
  float *x = malloc(sizeof *x * (size_t)(count ? count : 1) * d);
  int32_t *lab = malloc(sizeof *lab * (size_t)(count ? count : 1));
  double cen[64][64];
  sd_rng r;
  sd_rng_init(&r, 1, 0, 77);
  for (int c = 0; c < k; c++)
    for (int j = 0; j < d; j++) cen[c][j] = 3.0 * sd_rng_normal(&r);
  for (int64_t i = 0; i < count; i++) {
    sd_rng_init(&r, 2, (uint64_t)(first + i), 78);
    int c = (int)sd_rng_below(&r, (uint64_t)k);
    lab[i] = c;
    for (int j = 0; j < d; j++) x[i * d + j] = (float)(cen[c][j] + sd_rng_normal(&r));
  }
  for (int t = 0; t < reps; t++) {
    MPI_Barrier(MPI_COMM_WORLD);
    if (km) {
      sd_km_params p = {k, 1, iters, 0.0, (uint64_t)(10 + t), SD_KM_INIT_PLUSPLUS};
      sd_km_result res;
      if (sd_km_fit(MPI_COMM_WORLD, x, count, n, d, &p, &res) != SD_OK) MPI_Abort(MPI_COMM_WORLD, 1);
      if (rank == 0)
        printf("kmeans_iteration seconds %.6f (%d iterations)\n", res.lloyd_seconds / res.lloyd_iterations,
               res.lloyd_iterations);
      sd_km_result_free(&res);
    } else {
      const int32_t *as[1] = {lab};
      double mean;
      double t0 = MPI_Wtime();
      if (sd_km_silhouette(MPI_COMM_WORLD, x, count, n, d, 1, &k, as, 0, 1, &mean, NULL, NULL) != SD_OK)
        MPI_Abort(MPI_COMM_WORLD, 1);
      double dt = MPI_Wtime() - t0;
      MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      if (rank == 0) printf("silhouette seconds %.6f (mean %.6f)\n", dt, mean);
    }
    fflush(stdout);
  }
  free(x);
  free(lab);
  MPI_Finalize();
  return 0;
}
