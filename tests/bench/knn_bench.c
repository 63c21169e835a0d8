/* knn_bench.c - driver of knn_bench.sh: the t-SNE neighbour search on one data file, exact
 * (sd_tsne_knn) and by the random-projection forest (sd_tsne_knn_forest), timed on the
 * communicator, with the forest's recall against the exact lists.
 *
 *   mpirun -n P knn_bench DATA.h5 K TREES REFINE [EXACT_OUT]
 * DATA.h5 holds /scores float32 [N, D]. Prints one line
 *   RESULT ranks P n N d D k K exact_s S forest_s S recall R
 * and, when EXACT_OUT is given (1 rank only), writes the exact lists there as raw int64 [N, K]
 * (for the comparison with scikit-learn). */
#include <hdf5.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "stemdefect/par.h"
#include "stemdefect/tsne.h"

static int read_scores(const char *path, int64_t *n, int *d, double **x) {
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0)
    return 0;
  hid_t ds = H5Dopen2(f, "scores", H5P_DEFAULT);
  hid_t sp = ds >= 0 ? H5Dget_space(ds) : -1;
  hsize_t dims[2] = {0, 0};
  int ok = sp >= 0 && H5Sget_simple_extent_ndims(sp) == 2 &&
           H5Sget_simple_extent_dims(sp, dims, NULL) == 2;
  float *buf = ok ? malloc((size_t)(dims[0] * dims[1]) * sizeof *buf) : NULL;
  ok = ok && buf && H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0;
  if (ok) {
    *n = (int64_t)dims[0];
    *d = (int)dims[1];
    *x = malloc((size_t)(dims[0] * dims[1]) * sizeof **x);
    ok = *x != NULL;
    for (size_t e = 0; ok && e < dims[0] * dims[1]; e++)
      (*x)[e] = buf[e];
  }
  free(buf);
  if (sp >= 0)
    H5Sclose(sp);
  if (ds >= 0)
    H5Dclose(ds);
  H5Fclose(f);
  return ok;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (argc < 5) {
    if (rank == 0)
      fprintf(stderr, "usage: knn_bench DATA.h5 K TREES REFINE [EXACT_OUT]\n");
    MPI_Finalize();
    return 2;
  }
  const int k = atoi(argv[2]), trees = atoi(argv[3]), refine = atoi(argv[4]);
  int64_t n = 0;
  int d = 0;
  double *x = NULL;
  int ok = read_scores(argv[1], &n, &d, &x), all = 0;
  MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (!all) {
    if (rank == 0)
      fprintf(stderr, "knn_bench: cannot read %s:/scores (float32 [N, D])\n", argv[1]);
    MPI_Finalize();
    return 1;
  }
  int64_t first, count;
  sd_shard_range(n, rank, size, &first, &count);
  size_t ck = (size_t)(count > 0 ? count : 1) * k;
  int64_t *ne = malloc(ck * sizeof *ne), *nf = malloc(ck * sizeof *nf);
  double *de = malloc(ck * sizeof *de), *df = malloc(ck * sizeof *df);
  MPI_Barrier(MPI_COMM_WORLD);
  double t0 = MPI_Wtime();
  sd_status s1 = sd_tsne_knn(MPI_COMM_WORLD, x + first * d, count, d, n, k, ne, de);
  MPI_Barrier(MPI_COMM_WORLD);
  double t1 = MPI_Wtime();
  sd_status s2 = sd_tsne_knn_forest(MPI_COMM_WORLD, x + first * d, count, d, n, k, trees, refine,
                                    1, nf, df);
  MPI_Barrier(MPI_COMM_WORLD);
  double t2 = MPI_Wtime();
  if (s1 != SD_OK || s2 != SD_OK) {
    if (rank == 0)
      fprintf(stderr, "knn_bench: the search failed: %s\n", sd_error_message());
    MPI_Finalize();
    return 1;
  }
  /* recall: the lists are sorted by (distance, index); count the forest's entries present
   * in the exact list of the row (two-pointer merge over the index-sorted copies would be
   * faster; k is small) */
  int64_t hit = 0;
  for (int64_t q = 0; q < count; q++)
    for (int j = 0; j < k; j++)
      for (int e = 0; e < k; e++)
        if (nf[q * k + j] == ne[q * k + e]) {
          hit++;
          break;
        }
  MPI_Allreduce(MPI_IN_PLACE, &hit, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0)
    printf("RESULT ranks %d n %lld d %d k %d exact_s %.4f forest_s %.4f recall %.5f\n", size,
           (long long)n, d, k, t1 - t0, t2 - t1, (double)hit / ((double)n * k));
  if (argc > 5 && size == 1) {
    FILE *f = fopen(argv[5], "wb");
    if (!f || fwrite(ne, sizeof *ne, (size_t)n * k, f) != (size_t)n * k) {
      fprintf(stderr, "knn_bench: cannot write %s\n", argv[5]);
      ok = 0;
    }
    if (f)
      fclose(f);
  }
  free(x);
  free(ne);
  free(nf);
  free(de);
  free(df);
  MPI_Finalize();
  return ok ? 0 : 1;
}
