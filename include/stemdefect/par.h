/* par.h - the thin layer that owns MPI calls, and the abort policy.
 *
 * Abort policy (STYLE.md): an error every rank sees ends all ranks together with one message
 * from rank 0; an error only some ranks see must not leave the others waiting in a
 * collective. Code that may fail on some ranks only (reading a shard of files) calls
 * sd_par_agree() before the next collective: it is collective, returns the same status on
 * every rank, and ships the message of the lowest failing rank to all ranks, so the caller
 * can unwind everywhere and rank 0 prints one message. sd_par_fatal() is the last resort
 * for an error in the middle of a collective sequence: it prints "[rank r] file:line msg",
 * removes registered temporary files, and calls MPI_Abort.
 *
 * Everything here takes comm explicitly so callers can be tested in one process.
 */
#ifndef STEMDEFECT_PAR_H
#define STEMDEFECT_PAR_H

#include <mpi.h>
#include <stdint.h>

#include "stemdefect/status.h"

/* Balanced contiguous shard [first, first+count) of n items for rank of size ranks: the
 * first n % size ranks get one more. Pure function. */
void sd_shard_range(int64_t n, int rank, int size, int64_t *first, int64_t *count);

/* Collective: combines each rank's status; returns SD_OK everywhere when all are OK, else
 * the status of the lowest failing rank on every rank, with its message installed in the
 * local error record (prefixed "[rank r] " when r != 0). */
sd_status sd_par_agree(MPI_Comm comm, sd_status local);

/* Failure watch for a loop with no collective call in it, whose ranks do different amounts
 * of work (independent I/O): rounds of a non-blocking MAX-allreduce of (this rank has
 * failed, this rank still works), one round open at a time. A working rank polls after each
 * piece of work (wait = 0); a rank that has failed or finished polls with wait = 1 until the
 * result is 1. Every rank sees the same result of the same round, so all leave after the
 * same round: when a rank has failed (the others stop after their current piece instead of
 * finishing their share) or when no rank works any more. No round is left open then. Follow
 * it with sd_par_agree to ship the failing rank's status and message. MPI errors abort. */
typedef struct sd_par_watch {
  MPI_Comm comm;
  MPI_Request req;
  int loc[2], glob[2];
} sd_par_watch;
void sd_par_watch_init(sd_par_watch *w, MPI_Comm comm);
/* 1 when a round has completed that says: leave the loop */
int sd_par_watch_poll(sd_par_watch *w, int failed, int working, int wait);

/* Not collective: prints the pending error with rank and location, unlinks registered
 * temporary files, and aborts the whole job. */
void sd_par_fatal(MPI_Comm comm, const char *file, int line) __attribute__((noreturn));
#define SD_PAR_FATAL(comm) sd_par_fatal((comm), __FILE__, __LINE__)

/* Temporary output files to remove if the job aborts (up to 16). */
void sd_par_tmpfile_register(const char *path);
void sd_par_tmpfile_unregister(const char *path);

/* Checked MPI wrappers: return SD_ERR_MPI with the MPI error string on failure. */
sd_status sd_par_check(int mpi_rc, const char *what);
sd_status sd_par_allreduce_sum_double(MPI_Comm comm, double *v, int n);
sd_status sd_par_allreduce_max_double(MPI_Comm comm, double *v, int n);
sd_status sd_par_allreduce_sum_i64(MPI_Comm comm, int64_t *v, int n);
sd_status sd_par_allreduce_max_i64(MPI_Comm comm, int64_t *v, int n);
sd_status sd_par_bcast_string(MPI_Comm comm, char **s, int root); /* *s malloc'd on all */
/* Exclusive prefix sum of a per-rank count (0 on rank 0) and the total. */
sd_status sd_par_exscan_i64(MPI_Comm comm, int64_t local, int64_t *offset, int64_t *total);

/* Collective (cluster module): sends send_bytes of send to rank + 1 and receives at most
 * recv_cap bytes from rank - 1 (cyclically) into recv; *recv_bytes is what arrived. At one
 * rank it copies to itself. Messages are limited to 2 GiB. */
sd_status sd_par_ring_shift(MPI_Comm comm, const void *send, int64_t send_bytes, void *recv,
                            int64_t recv_cap, int64_t *recv_bytes);
/* Collective (cluster module): the same with rank + shift as the destination and rank - shift
 * as the source (cyclically; shift may be negative). */
sd_status sd_par_ring_shift_by(MPI_Comm comm, int shift, const void *send, int64_t send_bytes,
                               void *recv, int64_t recv_cap, int64_t *recv_bytes);

/* The same in two halves, so that work can run while the message travels: begin posts the
 * send and the receive, end waits for both (send and recv must stay untouched in between).
 * Every rank that begins must end. test, called now and then in between, lets MPI move the
 * message on (without it a large message may only move once both ranks are in end). */
typedef struct sd_par_shift {
  MPI_Request req[2];
  int done;    /* both completed (by test) */
  int64_t got; /* bytes received, once done */
} sd_par_shift;
sd_status sd_par_ring_shift_begin(MPI_Comm comm, int shift, const void *send, int64_t send_bytes,
                                  void *recv, int64_t recv_cap, sd_par_shift *sh);
sd_status sd_par_ring_shift_test(sd_par_shift *sh);
sd_status sd_par_ring_shift_end(sd_par_shift *sh, int64_t *recv_bytes);

/* Shared counters for dynamic work sharing (cluster module): one int64 per rank in an MPI
 * window, all starting at 0. create and destroy are collective; destroy is NULL-safe and sets
 * *ctr to NULL. next is not collective: it atomically reads the counter of rank owner and adds
 * 1 to it, so every value is handed out once. */
typedef struct sd_par_counter sd_par_counter;
sd_status sd_par_counter_create(MPI_Comm comm, sd_par_counter **ctr);
sd_status sd_par_counter_next(sd_par_counter *ctr, int owner, int64_t *value);
void sd_par_counter_destroy(sd_par_counter **ctr);

#endif
