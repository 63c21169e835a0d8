/* status.h - status codes, the one error path, and checked allocation.
 *
 * Every function that can fail returns an sd_status. The first failure records a message
 * (what is wrong: the file, key or value, and what was expected) with SD_ERROR; callers pass
 * it upward with SD_CHECK / SD_CHECK_GOTO, which append file:line to a short trace. The
 * message lives in one per-process error record (like errno); sd_error_message() reads it,
 * sd_error_clear() resets it. The abort policy across ranks lives in par.h.
 */
#ifndef STEMDEFECT_STATUS_H
#define STEMDEFECT_STATUS_H

#include <stddef.h>

typedef enum sd_status {
  SD_OK = 0,
  SD_ERR_ARG = 1,        /* bad argument or option value */
  SD_ERR_CONFIG = 2,     /* configuration: unknown key, wrong type, out of range */
  SD_ERR_IO = 3,         /* file system: cannot open, read, write, rename */
  SD_ERR_FORMAT = 4,     /* file content: corrupt, truncated, unsupported */
  SD_ERR_NOMEM = 5,      /* allocation failed */
  SD_ERR_HDF5 = 6,       /* HDF5 library call failed */
  SD_ERR_MPI = 7,        /* MPI call failed */
  SD_ERR_INTERNAL = 8,   /* broken invariant: a bug */
  SD_ERR_INTERRUPTED = 9 /* stopped by a signal (checkpoint written) */
} sd_status;

/* Records the first error message (later raises while one is pending are appended as
 * context) and returns code. Use through SD_ERROR. */
sd_status sd_error_raise(sd_status code, const char *file, int line, const char *func,
                         const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;
/* Appends "file:line func" to the trace of the pending error. */
void sd_error_trace(const char *file, int line, const char *func);
/* The pending error's message ("" when none). */
const char *sd_error_message(void);
/* The pending error's trace lines, newline separated ("" when none). */
const char *sd_error_where(void);
/* The pending error's code (SD_OK when none). */
sd_status sd_error_code(void);
/* Replaces the pending error with code and a message (used when a message is received
 * from another rank). */
void sd_error_set_message(sd_status code, const char *msg);
void sd_error_clear(void);
/* Short name of a status ("io error", ...). */
const char *sd_status_name(sd_status code);

#define SD_ERROR(code, ...) sd_error_raise((code), __FILE__, __LINE__, __func__, __VA_ARGS__)

#define SD_CHECK(expr)                                                                             \
  do {                                                                                             \
    sd_status sd_check_s_ = (expr);                                                                \
    if (sd_check_s_ != SD_OK) {                                                                    \
      sd_error_trace(__FILE__, __LINE__, __func__);                                                \
      return sd_check_s_;                                                                          \
    }                                                                                              \
  } while (0)

/* Assigns the result to st and jumps to label on failure (for functions with cleanup). */
#define SD_CHECK_GOTO(st, expr, label)                                                             \
  do {                                                                                             \
    (st) = (expr);                                                                                 \
    if ((st) != SD_OK) {                                                                           \
      sd_error_trace(__FILE__, __LINE__, __func__);                                                \
      goto label;                                                                                  \
    }                                                                                              \
  } while (0)

/* Checked allocation: returns NULL and raises SD_ERR_NOMEM naming what. n*size overflow is
 * caught. sd_calloc zeroes. Free with free(). */
void *sd_malloc(size_t n, size_t size, const char *what);
void *sd_calloc(size_t n, size_t size, const char *what);
void *sd_realloc(void *p, size_t n, size_t size, const char *what);
char *sd_strdup(const char *s);
/* Checked, zeroed, 64-byte aligned allocation for large buffers (free with free()): from
 * huge_from bytes on, on Linux, it starts on a 2 MiB boundary, is rounded up to whole 2 MiB
 * and marked for transparent huge pages. On a virtual machine the first touch of every 4 KiB
 * page costs ~10 us; a huge page takes one fault for 512 of them. */
void *sd_calloc_huge(size_t n, size_t size, size_t huge_from, const char *what);

/* ptr = sd_malloc(n, sizeof *ptr); on failure st = SD_ERR_NOMEM and goto label. */
#define SD_ALLOC_GOTO(st, ptr, n, label)                                                           \
  do {                                                                                             \
    (ptr) = sd_malloc((n), sizeof *(ptr), #ptr);                                                   \
    if (!(ptr)) {                                                                                  \
      (st) = SD_ERR_NOMEM;                                                                         \
      sd_error_trace(__FILE__, __LINE__, __func__);                                                \
      goto label;                                                                                  \
    }                                                                                              \
  } while (0)

#endif
