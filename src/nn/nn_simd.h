/* nn_simd.h - internal to src/nn: SD_NN_CLONES marks a memory-bound kernel that GCC also
 * compiles for AVX2 and picks at load time (function multiversioning through an ifunc); the
 * default build targets baseline x86-64 (SSE2), where these loops run at half width. Only
 * "avx2", not "fma": no contraction, so every clone computes bit-identical results. */
#ifndef STEMDEFECT_NN_SIMD_H
#define STEMDEFECT_NN_SIMD_H

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__AVX2__)
#define SD_NN_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SD_NN_CLONES
#endif

#endif
