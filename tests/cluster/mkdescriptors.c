/* mkdescriptors.c - writes a synthetic descriptors file for the cluster tests and benchmark:
 * /descriptors float32 [M,D] of Gaussian blobs (columns on different scales, the last two
 * columns a near-copy of column 0 and a near-constant one), /names, /labels int32 [M] (the
 * blob of each row) with attr class_names. Plain serial HDF5, no stemdefect code.
 * usage: mkdescriptors OUT M D BLOBS SEED [SEPARATION] [nan|nolabels|nodescriptors] */
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t s = 88172645463325252ull;
static double unif(void) {
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return ((s >> 11) + 0.5) * 0x1.0p-53;
}
static double gauss(void) { return sqrt(-2 * log(unif())) * cos(6.283185307179586 * unif()); }

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: %s OUT M D BLOBS SEED [SEPARATION] [nan|nolabels|nodescriptors]\n", argv[0]);
    return 2;
  }
  const char *out = argv[1];
  long long m = atoll(argv[2]);
  int d = atoi(argv[3]), nb = atoi(argv[4]);
  s ^= (uint64_t)atoll(argv[5]) * 0x9E3779B97F4A7C15ull;
  double sep = argc > 6 ? atof(argv[6]) : 8.0;
  const char *mode = argc > 7 ? argv[7] : "";
  if (m < 1 || d < 3 || nb < 1 || nb > 64) return 2;
  double *cen = malloc(sizeof *cen * nb * d), *scale = malloc(sizeof *scale * d);
  for (int j = 0; j < d; j++) scale[j] = pow(10.0, (double)(j % 4) - 1); /* 0.1 .. 100 */
  for (int b = 0; b < nb; b++)
    for (int j = 0; j < d; j++) cen[b * d + j] = sep * gauss() / sqrt((double)d / 4);
  float *x = malloc(sizeof *x * m * d);
  int32_t *lab = malloc(sizeof *lab * m);
  for (long long i = 0; i < m; i++) {
    int b = (int)(unif() * nb);
    lab[i] = b;
    for (int j = 0; j < d - 2; j++) x[i * d + j] = (float)((cen[b * d + j] + gauss()) * scale[j] + 3 * j);
    x[i * d + d - 2] = (float)(x[i * d] * 2.0 + 0.01 * gauss()); /* |r| ~ 1 with column 0 */
    x[i * d + d - 1] = (float)(5.0 + 0.001 * gauss());           /* near-constant */
  }
  if (!strcmp(mode, "nan")) x[(m / 2) * d + 1] = NAN;
  hid_t f = H5Fcreate(out, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) return 1;
  hsize_t dims[2] = {(hsize_t)m, (hsize_t)d};
  hid_t sp = H5Screate_simple(2, dims, NULL);
  const char *dname = !strcmp(mode, "nodescriptors") ? "features" : "descriptors";
  hid_t ds = H5Dcreate2(f, dname, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
  H5Dclose(ds);
  H5Sclose(sp);
  /* /names: fixed-length strings */
  char *names = calloc((size_t)d, 16);
  for (int j = 0; j < d; j++) snprintf(names + 16 * j, 16, j == d - 2 ? "copy_of_f0" : j == d - 1 ? "constant" : "f%d", j);
  hid_t st = H5Tcopy(H5T_C_S1);
  H5Tset_size(st, 16);
  hsize_t dn[1] = {(hsize_t)d};
  sp = H5Screate_simple(1, dn, NULL);
  ds = H5Dcreate2(f, "names", st, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(ds, st, H5S_ALL, H5S_ALL, H5P_DEFAULT, names);
  H5Dclose(ds);
  H5Sclose(sp);
  if (strcmp(mode, "nolabels") != 0) {
    hsize_t dl[1] = {(hsize_t)m};
    sp = H5Screate_simple(1, dl, NULL);
    ds = H5Dcreate2(f, "labels", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, lab);
    H5Sclose(sp);
    char *cn = calloc((size_t)nb, 16);
    for (int b = 0; b < nb; b++) snprintf(cn + 16 * b, 16, "blob%d", b);
    hsize_t dc[1] = {(hsize_t)nb};
    sp = H5Screate_simple(1, dc, NULL);
    hid_t a = H5Acreate2(ds, "class_names", st, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, st, cn);
    H5Aclose(a);
    H5Sclose(sp);
    H5Dclose(ds);
    free(cn);
  }
  H5Tclose(st);
  H5Fclose(f);
  free(names);
  free(cen);
  free(scale);
  free(x);
  free(lab);
  return 0;
}
