/* mkblobs.c - writes a synthetic descriptor file for the embed tests with the serial HDF5
 * API (not our writer): nb Gaussian blobs in d dimensions, /labels = blob (with class_names),
 * /assignments = blob shifted by one (so a copy is recognisable).
 *   mkblobs OUT N D NB MODE SEED     MODE: descriptors | scores | both | none */
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t st = 88172645463325252ULL;
static double unif(void) {
  st ^= st << 13;
  st ^= st >> 7;
  st ^= st << 17;
  return ((st >> 11) + 0.5) / 9007199254740992.0;
}
static double normal(void) {
  return sqrt(-2 * log(unif())) * cos(6.283185307179586 * unif());
}

static void write2d(hid_t f, const char *name, const float *x, hsize_t n, hsize_t d) {
  hsize_t dims[2] = {n, d};
  hid_t sp = H5Screate_simple(2, dims, NULL);
  hid_t ds = H5Dcreate2(f, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
  H5Dclose(ds);
  H5Sclose(sp);
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: mkblobs OUT N D NB descriptors|scores|both|none SEED\n");
    return 2;
  }
  int n = atoi(argv[2]), d = atoi(argv[3]), nb = atoi(argv[4]);
  const char *mode = argv[5];
  st += (uint64_t)atoll(argv[6]) * 0x9E3779B97F4A7C15ULL;
  float *x = malloc((size_t)n * d * sizeof *x);
  double *c = malloc((size_t)nb * d * sizeof *c);
  int *lab = malloc((size_t)n * sizeof *lab), *asg = malloc((size_t)n * sizeof *asg);
  for (int i = 0; i < nb * d; i++)
    c[i] = 5.0 * normal();
  for (int i = 0; i < n; i++) {
    lab[i] = i % nb;
    asg[i] = (i + 1) % nb;
    /* columns on different scales, as descriptors are (area vs. a probability) */
    for (int t = 0; t < d; t++)
      x[(size_t)i * d + t] = (float)((c[lab[i] * d + t] + normal()) * pow(3.0, t % 4));
  }
  hid_t f = H5Fcreate(argv[1], H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0)
    return 1;
  if (!strcmp(mode, "descriptors") || !strcmp(mode, "both"))
    write2d(f, "descriptors", x, n, d);
  if (!strcmp(mode, "scores") || !strcmp(mode, "both")) {
    /* "scores": a different matrix (the first min(d, 5) columns scaled down) */
    int p = d < 5 ? d : 5;
    float *s = malloc((size_t)n * p * sizeof *s);
    for (int i = 0; i < n; i++)
      for (int t = 0; t < p; t++)
        s[(size_t)i * p + t] = x[(size_t)i * d + t] / (float)pow(3.0, t % 4);
    write2d(f, "scores", s, n, p);
    free(s);
  }
  hsize_t dims[1] = {(hsize_t)n};
  hid_t sp = H5Screate_simple(1, dims, NULL);
  hid_t ds = H5Dcreate2(f, "labels", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(ds, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, lab);
  /* class_names as a fixed-length string array attribute */
  char *names = calloc((size_t)nb, 16);
  for (int b = 0; b < nb; b++)
    snprintf(names + 16 * b, 16, "blob%d", b);
  hid_t ty = H5Tcopy(H5T_C_S1);
  H5Tset_size(ty, 16);
  hsize_t nd[1] = {(hsize_t)nb};
  hid_t as = H5Screate_simple(1, nd, NULL);
  hid_t at = H5Acreate2(ds, "class_names", ty, as, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(at, ty, names);
  H5Aclose(at);
  H5Sclose(as);
  H5Tclose(ty);
  H5Dclose(ds);
  ds = H5Dcreate2(f, "assignments", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(ds, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, asg);
  H5Dclose(ds);
  H5Sclose(sp);
  H5Fclose(f);
  free(x);
  free(c);
  free(lab);
  free(asg);
  free(names);
  return 0;
}
