/* log.c - leveled, timestamped logging on rank 0 and a file-friendly progress line. */
#include "stemdefect/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct {
  int rank, size;
  sd_log_level level;
  int all_ranks;
  int progress_open; /* a '\r' progress line is on screen and needs a newline first */
} sd_log = {0, 1, SD_LOG_LEVEL_INFO, 0, 0};

void sd_log_init(int rank, int size, sd_log_level level) {
  sd_log.rank = rank;
  sd_log.size = size;
  sd_log.level = level;
}
void sd_log_set_level(sd_log_level level) { sd_log.level = level; }
sd_log_level sd_log_get_level(void) { return sd_log.level; }
void sd_log_set_all_ranks(int on) { sd_log.all_ranks = on; }

double sd_time_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *level_name[] = {"error", "warn ", "info ", "debug"};

static void vlog(sd_log_level level, const char *fmt, va_list ap) {
  if (level > sd_log.level) return;
  if (sd_log.rank != 0 && level != SD_LOG_LEVEL_ERROR && !sd_log.all_ranks) return;
  char stamp[32];
  time_t now = time(NULL);
  struct tm tmv;
  localtime_r(&now, &tmv);
  strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tmv);
  char body[4096];
  vsnprintf(body, sizeof body, fmt, ap);
  if (sd_log.progress_open) {
    fputc('\n', stderr);
    sd_log.progress_open = 0;
  }
  if (sd_log.size > 1 && (sd_log.rank != 0 || sd_log.all_ranks))
    fprintf(stderr, "[%s] %s [rank %d] %s\n", stamp, level_name[level], sd_log.rank, body);
  else
    fprintf(stderr, "[%s] %s %s\n", stamp, level_name[level], body);
  fflush(stderr);
}

void sd_log_msg(sd_log_level level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog(level, fmt, ap);
  va_end(ap);
}

static void fmt_duration(char *buf, size_t n, double s) {
  if (s < 0 || s > 1e7) {
    snprintf(buf, n, "--");
  } else if (s < 60) {
    snprintf(buf, n, "%.0fs", s);
  } else if (s < 3600) {
    snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
  } else {
    snprintf(buf, n, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
  }
}

void sd_progress_begin(sd_progress *p, const char *what, int64_t total) {
  memset(p, 0, sizeof *p);
  snprintf(p->what, sizeof p->what, "%s", what);
  p->total = total;
  p->t_start = sd_time_now();
  p->t_last_print = p->t_start;
  p->tty = isatty(fileno(stderr));
  p->active = (sd_log.rank == 0 && sd_log.level >= SD_LOG_LEVEL_INFO);
}

static void progress_print(sd_progress *p, double now) {
  double el = now - p->t_start;
  double rate = el > 0 ? (double)p->done / el : 0.0;
  double eta = (rate > 0 && p->total > 0) ? (double)(p->total - p->done) / rate : -1;
  char e1[32], e2[32];
  fmt_duration(e1, sizeof e1, el);
  fmt_duration(e2, sizeof e2, eta);
  double pct = p->total > 0 ? 100.0 * (double)p->done / (double)p->total : 0.0;
  if (p->tty) {
    fprintf(stderr, "\r%s: %lld/%lld (%.0f%%) %.1f/s elapsed %s eta %s\033[K", p->what,
            (long long)p->done, (long long)p->total, pct, rate, e1, e2);
    sd_log.progress_open = 1;
  } else {
    sd_log_info("%s: %lld/%lld (%.0f%%) %.1f/s elapsed %s eta %s", p->what, (long long)p->done,
                (long long)p->total, pct, rate, e1, e2);
  }
  fflush(stderr);
}

void sd_progress_update(sd_progress *p, int64_t done) {
  p->done = done;
  if (!p->active) return;
  double now = sd_time_now();
  if (p->tty) {
    if (now - p->t_last_print >= 0.25) {
      progress_print(p, now);
      p->t_last_print = now;
    }
  } else {
    /* files: a line per 10% step, but not more than one per 5 s, and at least every 60 s */
    int decile = p->total > 0 ? (int)(10 * done / p->total) : 0;
    if ((decile > p->last_decile && now - p->t_last_print >= 5.0) || now - p->t_last_print >= 60.0) {
      progress_print(p, now);
      p->last_decile = decile;
      p->t_last_print = now;
    }
  }
}

void sd_progress_end(sd_progress *p) {
  if (!p->active) return;
  double now = sd_time_now();
  double el = now - p->t_start;
  if (p->tty && sd_log.progress_open) {
    fprintf(stderr, "\r\033[K");
    sd_log.progress_open = 0;
  }
  char e1[32];
  fmt_duration(e1, sizeof e1, el);
  sd_log_info("%s: %lld done in %s (%.1f/s)", p->what, (long long)p->done, e1,
              el > 0 ? (double)p->done / el : 0.0);
}
