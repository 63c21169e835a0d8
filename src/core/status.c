/* status.c - the per-process error record behind SD_ERROR / SD_CHECK, checked allocation. */
#include "stemdefect/status.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define SD_ERROR_MSG_MAX 2048
#define SD_ERROR_WHERE_MAX 2048

static struct {
  sd_status code;
  char msg[SD_ERROR_MSG_MAX];
  char where[SD_ERROR_WHERE_MAX];
} sd_err;

static void append(char *buf, size_t cap, const char *fmt, ...) {
  size_t len = strlen(buf);
  if (len + 1 >= cap)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf + len, cap - len, fmt, ap);
  va_end(ap);
}

static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

sd_status sd_error_raise(sd_status code, const char *file, int line, const char *func,
                         const char *fmt, ...) {
  char text[SD_ERROR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  if (sd_err.code == SD_OK) {
    sd_err.code = code;
    snprintf(sd_err.msg, sizeof sd_err.msg, "%s", text);
    sd_err.where[0] = '\0';
  } else {
    /* an error while handling another one: keep the first as the headline */
    append(sd_err.msg, sizeof sd_err.msg, " (then: %s)", text);
  }
  append(sd_err.where, sizeof sd_err.where, "%s%s:%d %s", sd_err.where[0] ? "\n" : "",
         base_name(file), line, func);
  return code;
}

void sd_error_trace(const char *file, int line, const char *func) {
  if (sd_err.code == SD_OK)
    return;
  append(sd_err.where, sizeof sd_err.where, "%s%s:%d %s", sd_err.where[0] ? "\n" : "",
         base_name(file), line, func);
}

const char *sd_error_message(void) {
  return sd_err.msg;
}
const char *sd_error_where(void) {
  return sd_err.where;
}
sd_status sd_error_code(void) {
  return sd_err.code;
}

void sd_error_set_message(sd_status code, const char *msg) {
  sd_err.code = code;
  snprintf(sd_err.msg, sizeof sd_err.msg, "%s", msg ? msg : "");
  sd_err.where[0] = '\0';
}

void sd_error_clear(void) {
  sd_err.code = SD_OK;
  sd_err.msg[0] = '\0';
  sd_err.where[0] = '\0';
}

const char *sd_status_name(sd_status code) {
  switch (code) {
  case SD_OK: return "ok";
  case SD_ERR_ARG: return "invalid argument";
  case SD_ERR_CONFIG: return "configuration error";
  case SD_ERR_IO: return "i/o error";
  case SD_ERR_FORMAT: return "format error";
  case SD_ERR_NOMEM: return "out of memory";
  case SD_ERR_HDF5: return "hdf5 error";
  case SD_ERR_MPI: return "mpi error";
  case SD_ERR_INTERNAL: return "internal error";
  case SD_ERR_INTERRUPTED: return "interrupted";
  }
  return "unknown error";
}

static void *nomem(size_t n, size_t size, const char *what) {
  sd_error_raise(SD_ERR_NOMEM, __FILE__, __LINE__, __func__,
                 "out of memory allocating %zu x %zu bytes for %s", n, size, what ? what : "?");
  return NULL;
}

void *sd_malloc(size_t n, size_t size, const char *what) {
  if (n == 0 || size == 0)
    n = size = 1;
  if (n > SIZE_MAX / size)
    return nomem(n, size, what);
  void *p = malloc(n * size);
  return p ? p : nomem(n, size, what);
}

void *sd_calloc(size_t n, size_t size, const char *what) {
  if (n == 0 || size == 0)
    n = size = 1;
  if (n > SIZE_MAX / size)
    return nomem(n, size, what);
  void *p = calloc(n, size);
  return p ? p : nomem(n, size, what);
}

void *sd_realloc(void *p, size_t n, size_t size, const char *what) {
  if (n == 0 || size == 0)
    n = size = 1;
  if (n > SIZE_MAX / size)
    return nomem(n, size, what);
  void *q = realloc(p, n * size);
  return q ? q : nomem(n, size, what);
}

void *sd_calloc_huge(size_t n, size_t size, size_t huge_from, const char *what) {
  if (n == 0 || size == 0)
    n = size = 1;
  if (n > SIZE_MAX / size)
    return nomem(n, size, what);
  size_t bytes = n * size, len = bytes, align = 64;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const size_t huge = (size_t)2 << 20;
  if (bytes >= huge_from && bytes <= SIZE_MAX - huge) {
    align = huge;
    len = (bytes + huge - 1) / huge * huge;
  }
#else
  (void)huge_from;
#endif
  void *p = NULL;
  if (posix_memalign(&p, align, len) != 0)
    return nomem(n, size, what);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (align > 64)
    (void)madvise(p, len, MADV_HUGEPAGE); /* a hint: ignored where THP is off */
#endif
  memset(p, 0, bytes);
  return p;
}

char *sd_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = sd_malloc(n, 1, "string");
  if (d)
    memcpy(d, s, n);
  return d;
}
