/* profile.h - per-phase timers (compute / communication / I/O) grouped by stage, collected
 * over ranks into a JSON profile at the end of every command (--profile FILE).
 *
 * One profile per process (like the log): sd_profile_stage_begin("import") opens a stage;
 * time spent between sd_profile_phase_begin/end is charged to the phase in the open stage;
 * sd_profile_add_bytes counts bytes read/written or sent. sd_profile_write is collective: it
 * reduces every stage's numbers over ranks (min / mean / max of seconds, sum of bytes) and
 * rank 0 writes the JSON file (atomically).
 */
#ifndef STEMDEFECT_PROFILE_H
#define STEMDEFECT_PROFILE_H

#include <mpi.h>
#include <stdint.h>

#include "stemdefect/status.h"

typedef enum sd_phase {
  SD_PHASE_COMPUTE = 0,
  SD_PHASE_COMM = 1,
  SD_PHASE_IO = 2,
  SD_PHASE_COUNT = 3
} sd_phase;

void sd_profile_reset(void);
/* Opens a stage (closing the previous one). Stage names are the same on all ranks. */
void sd_profile_stage_begin(const char *name);
/* Closes the open stage, recording `items` processed on this rank (images, rows...). */
void sd_profile_stage_end(int64_t items);
/* Time a phase: t = sd_profile_phase_begin(); ...; sd_profile_phase_end(SD_PHASE_IO, t). */
double sd_profile_phase_begin(void);
void sd_profile_phase_end(sd_phase phase, double t_begin);
void sd_profile_add_bytes(sd_phase phase, int64_t bytes);
/* Collective. Writes the JSON profile (rank 0) with the command name and rank count.
 * extra_json: optional "key": value pairs (already JSON) added at the top level, or NULL. */
sd_status sd_profile_write(MPI_Comm comm, const char *path, const char *command,
                           const char *extra_json);
/* Peak resident set size of this process in bytes (from /proc/self/status VmHWM). */
int64_t sd_peak_rss_bytes(void);

#endif
