/* test_nn_mpi.c - data parallelism through the engine's hooks: P ranks with batch B/P each
 * (batch-norm statistics and the loss normaliser summed through sd_nn_reduce_fn, gradients
 * summed with one allreduce on the gradient arena) match one model with batch B, for gradients,
 * running statistics, loss, and parameters after several steps; replicas stay identical. */
#include <mpi.h>

#include "nn_test_util.h"
#include "stemdefect/par.h"

enum { G = 8, H = 8, W = 8, CLASSES = 3, STEPS = 4 };

static sd_status allreduce_hook(void *ctx, double *buf, int n) {
  return sd_par_allreduce_sum_double(*(MPI_Comm *)ctx, buf, n);
}

static sd_nn_model *make(int batch) {
  sd_nn_model *m = NULL;
  if (sd_nn_model_create(&m) != SD_OK)
    return NULL;
  int x = sd_nn_add_conv2d_ex(m, 0, 4, 3, 1, 1, 0);
  x = sd_nn_add_batchnorm(m, x);
  x = sd_nn_add_relu(m, x);
  x = sd_nn_add_maxpool(m, x, 2, 2);
  x = sd_nn_add_conv2d_ex(m, x, 6, 3, 1, 1, 0);
  x = sd_nn_add_batchnorm(m, x);
  x = sd_nn_add_relu(m, x);
  x = sd_nn_add_global_avgpool(m, x);
  sd_nn_add_dense(m, x, CLASSES);
  if (sd_nn_model_compile(m, batch, 1, H, W) != SD_OK || sd_nn_model_init_params(m, 3) != SD_OK)
    sd_nn_model_destroy(&m);
  return m;
}

static double max_rel_diff(const float *a, const float *b, size_t n) {
  double scale = 1e-6, d = 0;
  for (size_t i = 0; i < n; i++)
    scale = fmax(scale, fabs(a[i]));
  for (size_t i = 0; i < n; i++)
    d = fmax(d, fabs(a[i] - b[i]));
  return d / scale;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm comm = MPI_COMM_WORLD;
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  const int local = G / size; /* run at 1, 2, 4 (or 8) ranks */
  SD_EXPECT(G % size == 0);

  float x[G * H * W];
  int32_t y[G];
  sd_rng r;
  sd_rng_init(&r, 99, 0, 0);
  nt_fill(&r, x, G * H * W, -1, 2);
  for (int i = 0; i < G; i++)
    y[i] = (int32_t)sd_rng_below(&r, CLASSES);

  sd_nn_model *ref = make(G), *dist = make(local);
  SD_EXPECT(ref && dist);
  if (ref && dist && G % size == 0) {
    sd_nn_model_set_reduce(dist, allreduce_hook, &comm);
    sd_nn_loss_opts dopts = {
        .reduce = allreduce_hook, .reduce_ctx = &comm, .label_smoothing = 0.1f};
    sd_nn_loss_opts ropts = {.label_smoothing = 0.1f};
    sd_nn_optim oref = sd_nn_optim_sgd(0.05f, 0.9f, 0, 1e-3f), odist = oref;
    for (int step = 0; step < STEPS; step++) {
      double lref, ldist;
      sd_nn_model_zero_grad(ref);
      SD_EXPECT_OK(sd_nn_model_forward(ref, x, G, SD_NN_MODE_TRAIN));
      SD_EXPECT_OK(sd_nn_loss_softmax_ce(sd_nn_model_output(ref), y, &ropts, &lref));
      SD_EXPECT_OK(sd_nn_model_backward(ref));

      sd_nn_model_zero_grad(dist);
      SD_EXPECT_OK(
          sd_nn_model_forward(dist, x + (size_t)rank * local * H * W, local, SD_NN_MODE_TRAIN));
      SD_EXPECT_OK(
          sd_nn_loss_softmax_ce(sd_nn_model_output(dist), y + rank * local, &dopts, &ldist));
      SD_EXPECT_OK(sd_nn_model_backward(dist));
      /* the trainer's one allreduce over the whole gradient arena */
      MPI_Allreduce(MPI_IN_PLACE, dist->grads, (int)dist->num_params, MPI_FLOAT, MPI_SUM, comm);
      SD_EXPECT_OK(sd_par_allreduce_sum_double(comm, &ldist, 1));

      double dg = max_rel_diff(ref->grads, dist->grads, ref->num_params);
      double db = max_rel_diff(ref->buffers, dist->buffers, ref->num_buffers);
      if (rank == 0)
        fprintf(stderr, "np %d step %d: loss %.6f vs %.6f, grad diff %.2e, running stats %.2e\n",
                size, step, lref, ldist, dg, db);
      SD_EXPECT_NEAR(ldist, lref, 1e-5);
      SD_EXPECT_MSG(dg < 1e-4, "step %d: gradients of %d ranks differ from one rank by %.3g", step,
                    size, dg);
      SD_EXPECT_MSG(db < 1e-5, "step %d: running statistics differ by %.3g", step, db);
      SD_EXPECT_OK(sd_nn_optim_step(ref, &oref, oref.lr, NULL));
      SD_EXPECT_OK(sd_nn_optim_step(dist, &odist, odist.lr, NULL));
    }
    double dp = max_rel_diff(ref->params, dist->params, ref->num_params);
    SD_EXPECT_MSG(dp < 1e-4, "parameters after %d steps differ by %.3g", STEPS, dp);
    /* replicas identical: the same bytes on every rank */
    double sum = 0;
    for (size_t i = 0; i < dist->num_params; i++)
      sum += dist->params[i] * (1.0 + (double)(i % 7));
    double lo = sum, hi = sum;
    MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_DOUBLE, MPI_MIN, comm);
    MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_DOUBLE, MPI_MAX, comm);
    SD_EXPECT_MSG(lo == hi, "replicas differ: checksum %.17g .. %.17g", lo, hi);
  }
  sd_nn_model_destroy(&ref);
  sd_nn_model_destroy(&dist);
  int fails = sd_test_failures, all = 0;
  MPI_Allreduce(&fails, &all, 1, MPI_INT, MPI_SUM, comm);
  sd_test_failures = all;
  int code = sd_test_finish(rank == 0 ? "test_nn_mpi" : "test_nn_mpi(other rank)");
  MPI_Finalize();
  return code;
}
