/* log.h - leveled logging with timestamps, and a progress line for long loops.
 *
 * By default only rank 0 prints (errors print on every rank, prefixed [rank r]). Levels:
 * error < warn < info < debug; --quiet shows warnings and errors, --verbose adds debug.
 * Output goes to stderr. The progress line rewrites itself with '\r' on a terminal and
 * prints a plain line at most every few seconds (or at 10% steps) when stderr is a file
 * (a Slurm log), so logs stay readable.
 */
#ifndef STEMDEFECT_LOG_H
#define STEMDEFECT_LOG_H

#include <stdint.h>

typedef enum sd_log_level {
  SD_LOG_LEVEL_ERROR = 0,
  SD_LOG_LEVEL_WARN = 1,
  SD_LOG_LEVEL_INFO = 2,
  SD_LOG_LEVEL_DEBUG = 3
} sd_log_level;

/* Sets this process's rank (for prefixes and rank-0 filtering) and the level. */
void sd_log_init(int rank, int size, sd_log_level level);
void sd_log_set_level(sd_log_level level);
sd_log_level sd_log_get_level(void);
/* Print from every rank, not only rank 0 (debugging). */
void sd_log_set_all_ranks(int on);

void sd_log_msg(sd_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
#define sd_log_error(...) sd_log_msg(SD_LOG_LEVEL_ERROR, __VA_ARGS__)
#define sd_log_warn(...) sd_log_msg(SD_LOG_LEVEL_WARN, __VA_ARGS__)
#define sd_log_info(...) sd_log_msg(SD_LOG_LEVEL_INFO, __VA_ARGS__)
#define sd_log_debug(...) sd_log_msg(SD_LOG_LEVEL_DEBUG, __VA_ARGS__)

/* Progress of a loop of `total` items (items counted on the calling rank unless the
 * caller scales them). Prints on rank 0 at info level. */
typedef struct sd_progress {
  char what[64];
  int64_t total;
  int64_t done;
  double t_start;
  double t_last_print;
  int last_decile;
  int tty;
  int active;
} sd_progress;

void sd_progress_begin(sd_progress *p, const char *what, int64_t total);
/* Sets the count of finished items and prints if it is time to. */
void sd_progress_update(sd_progress *p, int64_t done);
/* Prints the final line (count, elapsed, rate). */
void sd_progress_end(sd_progress *p);

/* Wall-clock seconds (monotonic). */
double sd_time_now(void);

#endif
