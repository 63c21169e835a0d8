/* par.c - the MPI layer: sharding, agreement on errors, abort with cleanup, checked
 * collectives. The only module besides the stages' own collective I/O that calls MPI. */
#include "stemdefect/par.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stemdefect/log.h"

#define SD_TMP_MAX 16
static char *sd_tmpfiles[SD_TMP_MAX];

void sd_shard_range(int64_t n, int rank, int size, int64_t *first, int64_t *count) {
  int64_t base = n / size, extra = n % size;
  int64_t r = rank;
  *count = base + (r < extra ? 1 : 0);
  *first = r * base + (r < extra ? r : extra);
}

sd_status sd_par_check(int mpi_rc, const char *what) {
  if (mpi_rc == MPI_SUCCESS) return SD_OK;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(mpi_rc, msg, &len);
  return SD_ERROR(SD_ERR_MPI, "MPI call failed in %s: %s", what, msg);
}

sd_status sd_par_agree(MPI_Comm comm, sd_status local) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  /* lowest failing rank: MIN over (rank if failed else size) */
  int mine = local != SD_OK ? rank : size, first = size;
  int rc = MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm);
  if (rc != MPI_SUCCESS) {
    sd_par_check(rc, "sd_par_agree");
    SD_PAR_FATAL(comm);
  }
  if (first == size) return SD_OK;
  /* ship the status and the message of the first failing rank to everyone */
  char buf[2048 + 16];
  int code = (int)local;
  if (rank == first) {
    if (first != 0)
      snprintf(buf, sizeof buf, "[rank %d] %s", first, sd_error_message());
    else
      snprintf(buf, sizeof buf, "%s", sd_error_message());
  }
  MPI_Bcast(&code, 1, MPI_INT, first, comm);
  MPI_Bcast(buf, (int)sizeof buf, MPI_CHAR, first, comm);
  buf[sizeof buf - 1] = '\0';
  if (rank != first || first != 0) sd_error_set_message((sd_status)code, buf);
  return (sd_status)code;
}

void sd_par_tmpfile_register(const char *path) {
  for (int i = 0; i < SD_TMP_MAX; i++) {
    if (!sd_tmpfiles[i]) {
      sd_tmpfiles[i] = strdup(path);
      return;
    }
  }
}

void sd_par_tmpfile_unregister(const char *path) {
  for (int i = 0; i < SD_TMP_MAX; i++) {
    if (sd_tmpfiles[i] && strcmp(sd_tmpfiles[i], path) == 0) {
      free(sd_tmpfiles[i]);
      sd_tmpfiles[i] = NULL;
    }
  }
}

void sd_par_fatal(MPI_Comm comm, const char *file, int line) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  const char *base = strrchr(file, '/');
  base = base ? base + 1 : file;
  fprintf(stderr, "stemdefect: [rank %d] %s:%d %s\n", rank, base, line,
          sd_error_message()[0] ? sd_error_message() : "fatal error");
  fflush(stderr);
  for (int i = 0; i < SD_TMP_MAX; i++)
    if (sd_tmpfiles[i]) unlink(sd_tmpfiles[i]);
  MPI_Abort(comm, 3);
  abort();
}

sd_status sd_par_allreduce_sum_double(MPI_Comm comm, double *v, int n) {
  return sd_par_check(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, comm),
                      "allreduce(sum, double)");
}
sd_status sd_par_allreduce_max_double(MPI_Comm comm, double *v, int n) {
  return sd_par_check(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_MAX, comm),
                      "allreduce(max, double)");
}
sd_status sd_par_allreduce_sum_i64(MPI_Comm comm, int64_t *v, int n) {
  return sd_par_check(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_INT64_T, MPI_SUM, comm),
                      "allreduce(sum, int64)");
}
sd_status sd_par_allreduce_max_i64(MPI_Comm comm, int64_t *v, int n) {
  return sd_par_check(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_INT64_T, MPI_MAX, comm),
                      "allreduce(max, int64)");
}

sd_status sd_par_bcast_string(MPI_Comm comm, char **s, int root) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  long long len = (rank == root && *s) ? (long long)strlen(*s) : -1;
  SD_CHECK(sd_par_check(MPI_Bcast(&len, 1, MPI_LONG_LONG, root, comm), "bcast(string length)"));
  if (len < 0) {
    if (rank != root) *s = NULL;
    return SD_OK;
  }
  if (rank != root) {
    *s = sd_malloc((size_t)len + 1, 1, "broadcast string");
    if (!*s) SD_PAR_FATAL(comm); /* cannot agree without a second collective */
  }
  SD_CHECK(sd_par_check(MPI_Bcast(*s, (int)len + 1, MPI_CHAR, root, comm), "bcast(string)"));
  return SD_OK;
}

sd_status sd_par_exscan_i64(MPI_Comm comm, int64_t local, int64_t *offset, int64_t *total) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  int64_t off = 0, tot = 0;
  SD_CHECK(sd_par_check(MPI_Exscan(&local, &off, 1, MPI_INT64_T, MPI_SUM, comm), "exscan"));
  if (rank == 0) off = 0; /* MPI_Exscan leaves rank 0's result undefined */
  SD_CHECK(sd_par_check(MPI_Allreduce(&local, &tot, 1, MPI_INT64_T, MPI_SUM, comm), "allreduce"));
  if (offset) *offset = off;
  if (total) *total = tot;
  return SD_OK;
}

/* ---- cluster module: ring exchange of row blocks (exact silhouette) ---- */
sd_status sd_par_ring_shift_by(MPI_Comm comm, int shift, const void *send, int64_t send_bytes,
                               void *recv, int64_t recv_cap, int64_t *recv_bytes) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  if (send_bytes > INT32_MAX || recv_cap > INT32_MAX)
    return SD_ERROR(SD_ERR_ARG, "ring shift of %lld bytes: more than 2 GiB per message",
                    (long long)(send_bytes > recv_cap ? send_bytes : recv_cap));
  int s = ((shift % size) + size) % size;
  int to = (rank + s) % size, from = (rank + size - s) % size;
  MPI_Status status;
  SD_CHECK(sd_par_check(MPI_Sendrecv(send, (int)send_bytes, MPI_BYTE, to, 717, recv, (int)recv_cap,
                                     MPI_BYTE, from, 717, comm, &status),
                        "ring shift (sendrecv)"));
  int got = 0;
  SD_CHECK(sd_par_check(MPI_Get_count(&status, MPI_BYTE, &got), "ring shift (count)"));
  *recv_bytes = got;
  return SD_OK;
}

sd_status sd_par_ring_shift(MPI_Comm comm, const void *send, int64_t send_bytes, void *recv,
                            int64_t recv_cap, int64_t *recv_bytes) {
  return sd_par_ring_shift_by(comm, 1, send, send_bytes, recv, recv_cap, recv_bytes);
}
