/* test_par.c - sharding, agreement on errors (no hang, the failing rank's message reaches
 * everyone), the non-blocking failure watch, exclusive scan, profile JSON. Runs at 1, 2 and 4 ranks. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sd_test.h"
#include "stemdefect/par.h"
#include "stemdefect/profile.h"

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);

  /* shards cover [0, n) exactly once, balanced within one */
  for (int64_t n = 0; n < 40; n++) {
    for (int p = 1; p <= 7; p++) {
      int64_t next = 0, lo = n, hi = 0;
      for (int r = 0; r < p; r++) {
        int64_t f, c;
        sd_shard_range(n, r, p, &f, &c);
        SD_EXPECT(f == next);
        next = f + c;
        if (c < lo) lo = c;
        if (c > hi) hi = c;
      }
      SD_EXPECT(next == n);
      SD_EXPECT(hi - lo <= 1);
    }
  }

  /* all ok */
  SD_EXPECT(sd_par_agree(MPI_COMM_WORLD, SD_OK) == SD_OK);
  /* the last rank fails: every rank gets its status and message */
  sd_status local = SD_OK;
  if (rank == size - 1) local = SD_ERROR(SD_ERR_FORMAT, "bad file on the last rank");
  sd_status st = sd_par_agree(MPI_COMM_WORLD, local);
  SD_EXPECT(st == SD_ERR_FORMAT);
  SD_EXPECT(strstr(sd_error_message(), "bad file on the last rank") != NULL);
  if (size > 1) SD_EXPECT(strstr(sd_error_message(), "[rank") != NULL);
  sd_error_clear();
  /* two ranks fail: the lowest one's message wins */
  local = SD_OK;
  if (rank >= size / 2) local = SD_ERROR(rank == size / 2 ? SD_ERR_IO : SD_ERR_ARG, "rank %d failed", rank);
  st = sd_par_agree(MPI_COMM_WORLD, local);
  char expect[64];
  snprintf(expect, sizeof expect, "rank %d failed", size / 2);
  SD_EXPECT(st == SD_ERR_IO);
  SD_EXPECT_MSG(strstr(sd_error_message(), expect) != NULL, "got '%s'", sd_error_message());
  sd_error_clear();

  /* exclusive scan */
  int64_t off = -1, total = -1;
  SD_EXPECT_OK(sd_par_exscan_i64(MPI_COMM_WORLD, rank + 1, &off, &total));
  SD_EXPECT(off == (int64_t)rank * (rank + 1) / 2);
  SD_EXPECT(total == (int64_t)size * (size + 1) / 2);

  /* broadcast of a string */
  char *s = rank == 0 ? strdup("hello ranks") : NULL;
  SD_EXPECT_OK(sd_par_bcast_string(MPI_COMM_WORLD, &s, 0));
  SD_EXPECT(s && strcmp(s, "hello ranks") == 0);
  free(s);

  /* profile: stages with items summed over ranks */
  sd_profile_reset();
  sd_profile_stage_begin("alpha");
  double t = sd_profile_phase_begin();
  usleep(2000);
  sd_profile_phase_end(SD_PHASE_IO, t);
  sd_profile_add_bytes(SD_PHASE_IO, 100);
  sd_profile_stage_end(10);
  char path[256] = "/tmp/sd_test_profile_XXXXXX";
  if (rank == 0) {
    int fd = mkstemp(path);
    if (fd >= 0) close(fd);
  }
  MPI_Bcast(path, sizeof path, MPI_CHAR, 0, MPI_COMM_WORLD);
  SD_EXPECT_OK(sd_profile_write(MPI_COMM_WORLD, path, "test", "\"extra\": 1"));
  if (rank == 0) {
    FILE *f = fopen(path, "r");
    char buf[4096] = "";
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    buf[n] = '\0';
    if (f) fclose(f);
    char items[64];
    snprintf(items, sizeof items, "\"items\": %d", 10 * size);
    SD_EXPECT_MSG(strstr(buf, items) != NULL, "profile: %s", buf);
    char bytes[64];
    snprintf(bytes, sizeof bytes, "\"bytes_io\": %d", 100 * size);
    SD_EXPECT(strstr(buf, bytes) != NULL);
    SD_EXPECT(strstr(buf, "\"name\": \"alpha\"") != NULL);
    SD_EXPECT(strstr(buf, "\"extra\": 1") != NULL);
    unlink(path);
  }

  /* failure watch: ranks with different amounts of work (rank r: 3 + 40r pieces of 2 ms; the
   * failure is seen within a few pieces, far fewer than the last rank has) */
  for (int fail_rank = -1; fail_rank < size; fail_rank++) {
    sd_par_watch w;
    sd_par_watch_init(&w, MPI_COMM_WORLD);
    const int work = 3 + 40 * rank;
    int done = 0, failed = 0, rounds_left = 0;
    for (int r = 0;; r++) {
      if (failed || r >= work) {
        while (!sd_par_watch_poll(&w, failed, 0, 1)) {
        }
        break;
      }
      if (sd_par_watch_poll(&w, 0, 1, 0)) {
        rounds_left = 1; /* left because another rank failed */
        break;
      }
      usleep(2000); /* a piece of work */
      done++;
      if (rank == fail_rank && r == 1)
        failed = 1;
    }
    SD_EXPECT(w.req == MPI_REQUEST_NULL);
    int any_failed = 0;
    MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    SD_EXPECT(any_failed == (fail_rank >= 0));
    if (fail_rank < 0) {
      /* nobody failed: every rank did all its work */
      SD_EXPECT_MSG(done == work && !rounds_left, "rank %d did %d of %d pieces", rank, done, work);
    } else if (rank == size - 1 && fail_rank != rank && size > 1) {
      /* the rank with the most work stops early once the failure is seen */
      SD_EXPECT_MSG(done < work, "rank %d did all %d pieces although rank %d failed", rank, work,
                    fail_rank);
    }
    /* nothing left open: a collective afterwards matches on every rank */
    SD_EXPECT(sd_par_agree(MPI_COMM_WORLD, SD_OK) == SD_OK);
  }

  int fails = sd_test_failures, all = 0;
  MPI_Allreduce(&fails, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  sd_test_failures = all;
  int code = sd_test_finish(rank == 0 ? "test_par" : "test_par(other rank)");
  MPI_Finalize();
  return code;
}
