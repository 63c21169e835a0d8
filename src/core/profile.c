/* profile.c - stage and phase timers, reduced over ranks into a JSON profile. */
#include "stemdefect/profile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "stemdefect/log.h"
#include "stemdefect/par.h"
#include "stemdefect/version.h"

#define SD_PROFILE_MAX_STAGES 64

typedef struct sd_stage_rec {
  char name[48];
  double t_begin, wall;
  double phase[SD_PHASE_COUNT];
  int64_t bytes[SD_PHASE_COUNT];
  int64_t items;
  int closed;
} sd_stage_rec;

static struct {
  sd_stage_rec stages[SD_PROFILE_MAX_STAGES];
  int nstages;
  int open; /* index of the open stage or -1 */
  double t0;
  int started;
} sd_prof = {.open = -1};

void sd_profile_reset(void) {
  memset(&sd_prof, 0, sizeof sd_prof);
  sd_prof.open = -1;
  sd_prof.t0 = sd_time_now();
  sd_prof.started = 1;
}

static sd_stage_rec *current(void) {
  if (!sd_prof.started) sd_profile_reset();
  if (sd_prof.open < 0) sd_profile_stage_begin("main");
  return &sd_prof.stages[sd_prof.open];
}

void sd_profile_stage_begin(const char *name) {
  if (!sd_prof.started) sd_profile_reset();
  if (sd_prof.open >= 0) sd_profile_stage_end(sd_prof.stages[sd_prof.open].items);
  if (sd_prof.nstages == SD_PROFILE_MAX_STAGES) return;
  sd_stage_rec *s = &sd_prof.stages[sd_prof.nstages];
  memset(s, 0, sizeof *s);
  snprintf(s->name, sizeof s->name, "%s", name);
  s->t_begin = sd_time_now();
  sd_prof.open = sd_prof.nstages++;
}

void sd_profile_stage_end(int64_t items) {
  if (sd_prof.open < 0) return;
  sd_stage_rec *s = &sd_prof.stages[sd_prof.open];
  s->wall = sd_time_now() - s->t_begin;
  s->items = items;
  s->closed = 1;
  sd_prof.open = -1;
}

double sd_profile_phase_begin(void) { return sd_time_now(); }

void sd_profile_phase_end(sd_phase phase, double t_begin) {
  current()->phase[phase] += sd_time_now() - t_begin;
}

void sd_profile_add_bytes(sd_phase phase, int64_t bytes) { current()->bytes[phase] += bytes; }

int64_t sd_peak_rss_bytes(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  long long kb = 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmHWM: %lld kB", &kb) == 1) break;
  fclose(f);
  return (int64_t)kb * 1024;
}

static const char *phase_key[SD_PHASE_COUNT] = {"compute", "communication", "io"};

sd_status sd_profile_write(MPI_Comm comm, const char *path, const char *command,
                           const char *extra_json) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  if (sd_prof.open >= 0) sd_profile_stage_end(sd_prof.stages[sd_prof.open].items);
  int n = sd_prof.nstages;
  /* stage names must agree; use rank 0's count */
  MPI_Bcast(&n, 1, MPI_INT, 0, comm);
  /* per stage: wall, phases (3) -> min/sum/max; bytes (3), items -> sum */
  int nd = 1 + SD_PHASE_COUNT;
  double *loc = calloc((size_t)(n * nd + 1), sizeof *loc);
  double *mn = calloc((size_t)(n * nd + 1), sizeof *mn);
  double *mx = calloc((size_t)(n * nd + 1), sizeof *mx);
  double *sm = calloc((size_t)(n * nd + 1), sizeof *sm);
  int64_t *li = calloc((size_t)(n * 4 + 2), sizeof *li);
  int64_t *si = calloc((size_t)(n * 4 + 2), sizeof *si);
  int ok = loc && mn && mx && sm && li && si;
  if (ok) {
    for (int i = 0; i < n && i < sd_prof.nstages; i++) {
      loc[i * nd] = sd_prof.stages[i].wall;
      for (int p = 0; p < SD_PHASE_COUNT; p++) {
        loc[i * nd + 1 + p] = sd_prof.stages[i].phase[p];
        li[i * 4 + p] = sd_prof.stages[i].bytes[p];
      }
      li[i * 4 + 3] = sd_prof.stages[i].items;
    }
    loc[n * nd] = sd_time_now() - sd_prof.t0;
    li[n * 4] = sd_peak_rss_bytes();
  }
  int all_ok = 0;
  MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, comm);
  if (!all_ok) {
    free(loc), free(mn), free(mx), free(sm), free(li), free(si);
    return SD_ERROR(SD_ERR_NOMEM, "out of memory writing the profile %s", path);
  }
  MPI_Reduce(loc, mn, n * nd + 1, MPI_DOUBLE, MPI_MIN, 0, comm);
  MPI_Reduce(loc, mx, n * nd + 1, MPI_DOUBLE, MPI_MAX, 0, comm);
  MPI_Reduce(loc, sm, n * nd + 1, MPI_DOUBLE, MPI_SUM, 0, comm);
  MPI_Reduce(li, si, n * 4 + 1, MPI_INT64_T, MPI_SUM, 0, comm);
  int64_t peak = 0;
  MPI_Reduce(&li[n * 4], &peak, 1, MPI_INT64_T, MPI_MAX, 0, comm);
  sd_status st = SD_OK;
  if (rank == 0) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
      st = SD_ERROR(SD_ERR_IO, "cannot write the profile %s: cannot create %s", path, tmp);
    } else {
      char stamp[64];
      time_t now = time(NULL);
      struct tm tmv;
      gmtime_r(&now, &tmv);
      strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tmv);
      fprintf(f, "{\n  \"program\": \"stemdefect\",\n  \"version\": \"%s\",\n", SD_VERSION);
      fprintf(f, "  \"git_commit\": \"%s\",\n  \"command\": \"%s\",\n", SD_GIT_COMMIT, command);
      fprintf(f, "  \"ranks\": %d,\n  \"created\": \"%s\",\n", size, stamp);
      fprintf(f, "  \"wall_seconds\": %.6f,\n  \"peak_rss_bytes_max\": %lld,\n", mx[n * nd],
              (long long)peak);
      if (extra_json && *extra_json) fprintf(f, "  %s,\n", extra_json);
      fprintf(f, "  \"stages\": [");
      for (int i = 0; i < n; i++) {
        fprintf(f, "%s\n    {\"name\": \"%s\", \"items\": %lld, \"seconds\": %.6f", i ? "," : "",
                sd_prof.stages[i].name, (long long)si[i * 4 + 3], mx[i * nd]);
        for (int p = 0; p < SD_PHASE_COUNT; p++) {
          int j = i * nd + 1 + p;
          fprintf(f, ", \"%s\": {\"min\": %.6f, \"mean\": %.6f, \"max\": %.6f}", phase_key[p],
                  mn[j], sm[j] / size, mx[j]);
        }
        fprintf(f, ", \"bytes_io\": %lld, \"bytes_communication\": %lld}",
                (long long)si[i * 4 + SD_PHASE_IO], (long long)si[i * 4 + SD_PHASE_COMM]);
      }
      fprintf(f, "\n  ]\n}\n");
      if (fclose(f) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        st = SD_ERROR(SD_ERR_IO, "cannot write the profile %s", path);
      }
    }
  }
  free(loc), free(mn), free(mx), free(sm), free(li), free(si);
  return sd_par_agree(comm, st);
}
