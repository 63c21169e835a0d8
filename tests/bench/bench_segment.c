/* bench_segment.c - inference speed of the segmentation U-Net (sd_unet_build) on our engine,
 * the counterpart of torch_unet.py; run by segment_bench.sh.
 *
 *   bench_segment [--model unet.h5] [--depth D --width W --classes C] [--batch B] [--size S]
 *                 [--threads T] [--reps R] [--min-time S]
 *
 * With --model the architecture and weights come from the file (as `segment` uses them);
 * otherwise a fresh U-Net of the given shape. Warms up, then times R repeats of eval-mode
 * forward + softmax on a batch of B images (each repeat runs until --min-time has passed) and
 * prints
 *   PARAMS unet <trainable scalars>
 *   RESULT unet infer <batch> <threads> <median img/s> <img/s of each repeat...> */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mpi.h>

#include "stemdefect/checkpoint.h"
#include "stemdefect/segment.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  const char *model = NULL;
  int depth = 3, width = 16, classes = 7, batch = 16, size = 64, threads = 1, reps = 5;
  double min_time = 0.5;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--model")) model = argv[i + 1];
    else if (!strcmp(argv[i], "--depth")) depth = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--width")) width = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--classes")) classes = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--size")) size = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--min-time")) min_time = atof(argv[i + 1]);
  }
  sd_nn_model *m = NULL;
  sd_status st;
  if (model) {
    int c, h, w;
    sd_ckpt_state state;
    st = sd_ckpt_open_model(MPI_COMM_WORLD, model, &m, &c, &h, &w, &state);
    if (st == SD_OK) st = sd_nn_model_compile(m, batch, 1, size, size);
    if (st == SD_OK) st = sd_ckpt_load_params(MPI_COMM_WORLD, model, m, 1, 0, NULL);
    if (st == SD_OK) free(state.split);
  } else {
    st = sd_unet_build(&m, depth, width, 1, 0.1f, classes);
    if (st == SD_OK) st = sd_nn_model_compile(m, batch, 1, size, size);
  }
  if (st != SD_OK) {
    fprintf(stderr, "bench_segment: %s\n", sd_error_message());
    MPI_Finalize();
    return 1;
  }
  size_t n = (size_t)batch * size * size;
  float *x = malloc(n * sizeof *x);
  sd_rng r;
  sd_rng_init(&r, 7, 0, 1);
  for (size_t i = 0; i < n; i++) x[i] = (float)sd_rng_range(&r, -1, 1);
  sd_nn_tensor *o = sd_nn_model_output(m);
  for (int i = 0; i < 2 && st == SD_OK; i++) st = sd_nn_model_forward(m, x, batch, SD_NN_MODE_EVAL);
  double *ips = malloc((size_t)reps * sizeof *ips);
  for (int k = 0; k < reps && st == SD_OK; k++) {
    int it = 0;
    double t0 = now(), dt;
    do {
      st = sd_nn_model_forward(m, x, batch, SD_NN_MODE_EVAL);
      sd_nn_softmax(batch, o->c, o->h * o->w, o->data, o->data);
      it++;
      dt = now() - t0;
    } while (st == SD_OK && dt < min_time);
    ips[k] = it * batch / dt;
  }
  if (st != SD_OK) {
    fprintf(stderr, "bench_segment: %s\n", sd_error_message());
    MPI_Finalize();
    return 1;
  }
  printf("PARAMS unet %zu\n", sd_nn_model_trainable_count(m));
  double *s = malloc((size_t)reps * sizeof *s);
  memcpy(s, ips, (size_t)reps * sizeof *s);
  qsort(s, (size_t)reps, sizeof *s, cmp_double);
  printf("RESULT unet infer %d %d %.2f", batch, threads, reps % 2 ? s[reps / 2] : 0.5 * (s[reps / 2 - 1] + s[reps / 2]));
  for (int k = 0; k < reps; k++) printf(" %.2f", ips[k]);
  printf("\n");
  free(s);
  free(ips);
  free(x);
  sd_nn_model_destroy(&m);
  MPI_Finalize();
  return 0;
}
