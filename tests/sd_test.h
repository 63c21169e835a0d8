/* sd_test.h - a minimal test harness: checks count failures, the program exits non-zero
 * when any failed (every check prints what it compared). Under MPI, failures are summed
 * over ranks by sd_test_finish_mpi(). */
#ifndef SD_TEST_H
#define SD_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int sd_test_failures = 0;
static int sd_test_checks = 0;

#define SD_EXPECT(cond)                                                                            \
  do {                                                                                             \
    sd_test_checks++;                                                                              \
    if (!(cond)) {                                                                                 \
      sd_test_failures++;                                                                          \
      fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond);                           \
    }                                                                                              \
  } while (0)

#define SD_EXPECT_MSG(cond, ...)                                                                   \
  do {                                                                                             \
    sd_test_checks++;                                                                              \
    if (!(cond)) {                                                                                 \
      sd_test_failures++;                                                                          \
      fprintf(stderr, "%s:%d: FAILED: %s: ", __FILE__, __LINE__, #cond);                           \
      fprintf(stderr, __VA_ARGS__);                                                                \
      fputc('\n', stderr);                                                                         \
    }                                                                                              \
  } while (0)

#define SD_EXPECT_NEAR(a, b, tol)                                                                  \
  do {                                                                                             \
    double sd_a_ = (double)(a), sd_b_ = (double)(b);                                               \
    sd_test_checks++;                                                                              \
    if (!(fabs(sd_a_ - sd_b_) <= (tol))) {                                                         \
      sd_test_failures++;                                                                          \
      fprintf(stderr, "%s:%d: FAILED: %s = %.9g vs %s = %.9g (tol %g)\n", __FILE__, __LINE__, #a,  \
              sd_a_, #b, sd_b_, (double)(tol));                                                    \
    }                                                                                              \
  } while (0)

#define SD_EXPECT_OK(expr)                                                                         \
  do {                                                                                             \
    sd_status sd_s_ = (expr);                                                                      \
    sd_test_checks++;                                                                              \
    if (sd_s_ != SD_OK) {                                                                          \
      sd_test_failures++;                                                                          \
      fprintf(stderr, "%s:%d: FAILED: %s returned %d: %s\n", __FILE__, __LINE__, #expr, (int)sd_s_, \
              sd_error_message());                                                                 \
      sd_error_clear();                                                                            \
    }                                                                                              \
  } while (0)

static inline int sd_test_finish(const char *name) {
  if (sd_test_checks == 0) {
    fprintf(stderr, "%s: no checks ran\n", name);
    return 1;
  }
  fprintf(stderr, "%s: %d checks, %d failed\n", name, sd_test_checks, sd_test_failures);
  return sd_test_failures ? 1 : 0;
}

#endif
