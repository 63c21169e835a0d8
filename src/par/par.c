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
  if (mpi_rc == MPI_SUCCESS)
    return SD_OK;
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
  if (first == size)
    return SD_OK;
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
  if (rank != first || first != 0)
    sd_error_set_message((sd_status)code, buf);
  return (sd_status)code;
}

void sd_par_watch_init(sd_par_watch *w, MPI_Comm comm) {
  w->comm = comm;
  w->req = MPI_REQUEST_NULL;
  w->loc[0] = w->loc[1] = w->glob[0] = w->glob[1] = 0;
}

int sd_par_watch_poll(sd_par_watch *w, int failed, int working, int wait) {
  if (w->req == MPI_REQUEST_NULL) {
    w->loc[0] = failed;
    w->loc[1] = working;
    if (sd_par_check(MPI_Iallreduce(w->loc, w->glob, 2, MPI_INT, MPI_MAX, w->comm, &w->req),
                     "failure watch (iallreduce)") != SD_OK)
      SD_PAR_FATAL(w->comm);
  }
  int done = 1;
  int rc =
      wait ? MPI_Wait(&w->req, MPI_STATUS_IGNORE) : MPI_Test(&w->req, &done, MPI_STATUS_IGNORE);
  if (sd_par_check(rc, "failure watch (wait)") != SD_OK)
    SD_PAR_FATAL(w->comm);
  if (!done)
    return 0;
  w->req = MPI_REQUEST_NULL;
  return w->glob[0] || !w->glob[1];
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
    if (sd_tmpfiles[i])
      unlink(sd_tmpfiles[i]);
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
    if (rank != root)
      *s = NULL;
    return SD_OK;
  }
  if (rank != root) {
    *s = sd_malloc((size_t)len + 1, 1, "broadcast string");
    if (!*s)
      SD_PAR_FATAL(comm); /* cannot agree without a second collective */
  }
  SD_CHECK(sd_par_check(MPI_Bcast(*s, (int)len + 1, MPI_CHAR, root, comm), "bcast(string)"));
  return SD_OK;
}

sd_status sd_par_exscan_i64(MPI_Comm comm, int64_t local, int64_t *offset, int64_t *total) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  int64_t off = 0, tot = 0;
  SD_CHECK(sd_par_check(MPI_Exscan(&local, &off, 1, MPI_INT64_T, MPI_SUM, comm), "exscan"));
  if (rank == 0)
    off = 0; /* MPI_Exscan leaves rank 0's result undefined */
  SD_CHECK(sd_par_check(MPI_Allreduce(&local, &tot, 1, MPI_INT64_T, MPI_SUM, comm), "allreduce"));
  if (offset)
    *offset = off;
  if (total)
    *total = tot;
  return SD_OK;
}

/* ---- cluster module: ring exchange of row blocks (exact silhouette) ---- */
sd_status sd_par_ring_shift_begin(MPI_Comm comm, int shift, const void *send, int64_t send_bytes,
                                  void *recv, int64_t recv_cap, sd_par_shift *sh) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  sh->req[0] = sh->req[1] = MPI_REQUEST_NULL;
  sh->done = 0;
  sh->got = 0;
  if (send_bytes > INT32_MAX || recv_cap > INT32_MAX)
    return SD_ERROR(SD_ERR_ARG, "ring shift of %lld bytes: more than 2 GiB per message",
                    (long long)(send_bytes > recv_cap ? send_bytes : recv_cap));
  int s = ((shift % size) + size) % size;
  int to = (rank + s) % size, from = (rank + size - s) % size;
  SD_CHECK(sd_par_check(MPI_Irecv(recv, (int)recv_cap, MPI_BYTE, from, 717, comm, &sh->req[1]),
                        "ring shift (irecv)"));
  SD_CHECK(sd_par_check(MPI_Isend(send, (int)send_bytes, MPI_BYTE, to, 717, comm, &sh->req[0]),
                        "ring shift (isend)"));
  return SD_OK;
}

/* Completes both requests (wait) or checks them (test); the received count is kept. */
static sd_status shift_complete(sd_par_shift *sh, int wait) {
  if (sh->done)
    return SD_OK;
  MPI_Status status[2];
  int had_recv = sh->req[1] != MPI_REQUEST_NULL, flag = 1;
  if (wait)
    SD_CHECK(sd_par_check(MPI_Waitall(2, sh->req, status), "ring shift (wait)"));
  else
    SD_CHECK(sd_par_check(MPI_Testall(2, sh->req, &flag, status), "ring shift (test)"));
  if (!flag)
    return SD_OK;
  int got = 0;
  if (had_recv)
    SD_CHECK(sd_par_check(MPI_Get_count(&status[1], MPI_BYTE, &got), "ring shift (count)"));
  sh->got = got;
  sh->done = 1;
  return SD_OK;
}

sd_status sd_par_ring_shift_test(sd_par_shift *sh) {
  return shift_complete(sh, 0);
}

sd_status sd_par_ring_shift_end(sd_par_shift *sh, int64_t *recv_bytes) {
  sd_status st = shift_complete(sh, 1);
  *recv_bytes = sh->got;
  return st;
}

sd_status sd_par_ring_shift_by(MPI_Comm comm, int shift, const void *send, int64_t send_bytes,
                               void *recv, int64_t recv_cap, int64_t *recv_bytes) {
  sd_par_shift sh;
  sd_status st = sd_par_ring_shift_begin(comm, shift, send, send_bytes, recv, recv_cap, &sh);
  sd_status st2 = sd_par_ring_shift_end(&sh, recv_bytes);
  return st != SD_OK ? st : st2;
}

sd_status sd_par_ring_shift(MPI_Comm comm, const void *send, int64_t send_bytes, void *recv,
                            int64_t recv_cap, int64_t *recv_bytes) {
  return sd_par_ring_shift_by(comm, 1, send, send_bytes, recv, recv_cap, recv_bytes);
}

struct sd_par_counter {
  MPI_Win win;
  int64_t *mem;
};

sd_status sd_par_counter_create(MPI_Comm comm, sd_par_counter **ctr) {
  *ctr = NULL;
  sd_par_counter *c = sd_calloc(1, sizeof *c, "shared counter");
  if (!c)
    SD_PAR_FATAL(comm); /* the others are in the collective below */
  sd_status st = sd_par_check(MPI_Win_allocate((MPI_Aint)sizeof(int64_t), (int)sizeof(int64_t),
                                               MPI_INFO_NULL, comm, &c->mem, &c->win),
                              "shared counter (window)");
  if (st != SD_OK) {
    free(c);
    return st;
  }
  *c->mem = 0;
  SD_CHECK(sd_par_check(MPI_Win_lock_all(MPI_MODE_NOCHECK, c->win), "shared counter (lock)"));
  SD_CHECK(sd_par_check(MPI_Win_sync(c->win), "shared counter (sync)"));
  SD_CHECK(sd_par_check(MPI_Barrier(comm), "shared counter (barrier)"));
  *ctr = c;
  return SD_OK;
}

sd_status sd_par_counter_next(sd_par_counter *ctr, int owner, int64_t *value) {
  const int64_t one = 1;
  SD_CHECK(sd_par_check(MPI_Fetch_and_op(&one, value, MPI_INT64_T, owner, 0, MPI_SUM, ctr->win),
                        "shared counter (fetch and add)"));
  return sd_par_check(MPI_Win_flush(owner, ctr->win), "shared counter (flush)");
}

void sd_par_counter_destroy(sd_par_counter **ctr) {
  if (!ctr || !*ctr)
    return;
  MPI_Win_unlock_all((*ctr)->win);
  MPI_Win_free(&(*ctr)->win);
  free(*ctr);
  *ctr = NULL;
}
