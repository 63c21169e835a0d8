/* rng.c - xoshiro256** streams keyed by (seed, a, b) through SplitMix64. */
#include "stemdefect/rng.h"

#include <math.h>

uint64_t sd_rng_mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

void sd_rng_init(sd_rng *r, uint64_t seed, uint64_t a, uint64_t b) {
  uint64_t k = sd_rng_mix64(seed);
  k = sd_rng_mix64(k ^ (a * 0xD1B54A32D192ED03ULL));
  k = sd_rng_mix64(k ^ (b * 0x8CB92BA72F3D8DD7ULL));
  for (int i = 0; i < 4; i++) {
    k += 0x9E3779B97F4A7C15ULL;
    r->s[i] = sd_rng_mix64(k);
  }
  if ((r->s[0] | r->s[1] | r->s[2] | r->s[3]) == 0) r->s[0] = 1;
  r->has_spare = 0;
  r->spare = 0.0;
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t sd_rng_u64(sd_rng *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double sd_rng_uniform(sd_rng *r) { return (double)(sd_rng_u64(r) >> 11) * 0x1.0p-53; }

double sd_rng_range(sd_rng *r, double lo, double hi) {
  return lo + (hi - lo) * sd_rng_uniform(r);
}

uint64_t sd_rng_below(sd_rng *r, uint64_t n) {
  /* Lemire's nearly divisionless method is overkill here; plain rejection */
  uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do {
    x = sd_rng_u64(r);
  } while (x >= limit);
  return x % n;
}

double sd_rng_normal(sd_rng *r) {
  if (r->has_spare) {
    r->has_spare = 0;
    return r->spare;
  }
  double u1, u2;
  do {
    u1 = sd_rng_uniform(r);
  } while (u1 <= 0.0);
  u2 = sd_rng_uniform(r);
  double rad = sqrt(-2.0 * log(u1));
  double th = 2.0 * M_PI * u2;
  r->spare = rad * sin(th);
  r->has_spare = 1;
  return rad * cos(th);
}

uint64_t sd_rng_poisson(sd_rng *r, double lambda) {
  if (!(lambda > 0.0)) return 0;
  if (lambda < 30.0) {
    /* inversion by sequential search */
    double p = exp(-lambda), s = p, u = sd_rng_uniform(r);
    uint64_t k = 0;
    while (u > s && k < 1000) {
      k++;
      p *= lambda / (double)k;
      s += p;
    }
    return k;
  }
  /* PTRS: Hormann, "The transformed rejection method for generating Poisson random
   * variables" (1993) */
  double slam = sqrt(lambda), loglam = log(lambda);
  double b = 0.931 + 2.53 * slam;
  double a = -0.059 + 0.02483 * b;
  double invalpha = 1.1239 + 1.1328 / (b - 3.4);
  double vr = 0.9277 - 3.6224 / (b - 2);
  for (;;) {
    double u = sd_rng_uniform(r) - 0.5;
    double v = sd_rng_uniform(r);
    double us = 0.5 - fabs(u);
    double k = floor((2 * a / us + b) * u + lambda + 0.43);
    if (us >= 0.07 && v <= vr) return (uint64_t)k;
    if (k < 0 || (us < 0.013 && v > us)) continue;
    if (log(v) + log(invalpha) - log(a / (us * us) + b) <= -lambda + k * loglam - lgamma(k + 1))
      return (uint64_t)k;
  }
}

void sd_rng_shuffle_int(sd_rng *r, int *v, int n) {
  for (int i = n - 1; i > 0; i--) {
    int j = (int)sd_rng_below(r, (uint64_t)i + 1);
    int t = v[i];
    v[i] = v[j];
    v[j] = t;
  }
}
