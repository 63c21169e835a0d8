/* rng.h - explicit, deterministic random number streams.
 *
 * A stream is identified by (seed, a, b): typically (user seed, rank, purpose) or
 * (user seed, image index, purpose) when results must not depend on the rank count.
 * The key is mixed with SplitMix64 into the state of xoshiro256**, so distinct keys give
 * independent-looking streams. No hidden state: every call takes the sd_rng it advances.
 */
#ifndef STEMDEFECT_RNG_H
#define STEMDEFECT_RNG_H

#include <stdint.h>

typedef struct sd_rng {
  uint64_t s[4];
  int has_spare;  /* Box-Muller keeps its second value */
  double spare;
} sd_rng;

/* Stream purposes (the b of (seed, a, b)); add new ones at the end. */
enum sd_rng_stream {
  SD_RNG_STREAM_SIM = 1,
  SD_RNG_STREAM_AUGMENT = 2,
  SD_RNG_STREAM_SPLIT = 3,
  SD_RNG_STREAM_INIT = 4,
  SD_RNG_STREAM_DROPOUT = 5,
  SD_RNG_STREAM_KMEANS = 6,
  SD_RNG_STREAM_TSNE = 7,
  SD_RNG_STREAM_MOSAIC = 8,
  SD_RNG_STREAM_FOREST = 9
};

void sd_rng_init(sd_rng *r, uint64_t seed, uint64_t a, uint64_t b);
uint64_t sd_rng_u64(sd_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double sd_rng_uniform(sd_rng *r);
/* Uniform in [lo, hi). */
double sd_rng_range(sd_rng *r, double lo, double hi);
/* Uniform integer in [0, n), unbiased; n > 0. */
uint64_t sd_rng_below(sd_rng *r, uint64_t n);
/* Standard normal (Box-Muller). */
double sd_rng_normal(sd_rng *r);
/* Poisson with mean lambda >= 0 (inversion below 30, PTRS transformed rejection above). */
uint64_t sd_rng_poisson(sd_rng *r, double lambda);
/* Fisher-Yates shuffle of n ints. */
void sd_rng_shuffle_int(sd_rng *r, int *v, int n);
/* SplitMix64 mixing step (exposed for hashing keys). */
uint64_t sd_rng_mix64(uint64_t x);

#endif
