/* nn_winograd4.c - 3x3 stride-1 convolution by Winograd's minimal filtering F(4x4, 3x3)
 * (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016), forward and both
 * gradients, on OpenBLAS sgemm. Same structure as nn_winograd.c (F(2x2, 3x3)); read that first.
 *
 * The output is cut into 4x4 tiles; tile t reads the 6x6 input patch d at (4ty - ph, 4tx - pw).
 *   U = G g G^T (6x6 per (oc, c)),  V = B^T d B (6x6 per (c, tile)),  Y = A^T M A (4x4),
 *   M = sum_c U (.) V: 36 GEMMs M_xi [oc, T] = U_xi [oc, c] V_xi [c, T], 36 multiply-adds per
 * 16 outputs instead of 144 (4x fewer GEMM flops than im2col, 1.78x fewer than F(2x2)); V holds
 * 2.25 floats per output pixel and channel instead of F(2x2)'s 4, so the transforms also move
 * less data. With the interpolation points 0, 1, -1, 2, -2 and infinity (Lavin and Gray's
 * matrices, as in most libraries' F(4x4, 3x3)):
 *
 *   B^T = [ 4  0 -5  0  1  0 ]   G = [  1/4     0     0 ]   A^T = [ 1  1  1  1  1  0 ]
 *         [ 0 -4 -4  1  1  0 ]       [ -1/6  -1/6  -1/6 ]         [ 0  1 -1  2 -2  0 ]
 *         [ 0  4 -4 -1  1  0 ]       [ -1/6   1/6  -1/6 ]         [ 0  1  1  4  4  0 ]
 *         [ 0 -2 -1  2  1  0 ]       [ 1/24  1/12   1/6 ]         [ 0  1 -1  8 -8  1 ]
 *         [ 0  2 -1 -2  1  0 ]       [ 1/24 -1/12   1/6 ]
 *         [ 0  4  0 -5  0  1 ]       [    0     0     1 ]
 *
 * (checked in exact rational arithmetic: sum_x A^T[i][x] G[x][r] B^T[x][k] = [k == i + r]).
 * The gradients are the adjoints of the same linear maps (exact in real arithmetic):
 *   dM = A dY A^T,  dV_xi = U_xi^T dM_xi,  dd = B dV B^T (scattered-added: patches overlap by
 *   two rows and two columns),  dU_xi += dM_xi V_xi^T over all tiles, dw += G^T dU G.
 * The weight transforms (once per call, O(oc c)) run in double, so U is G g G^T rounded once
 * and dw gets G^T dU G rounded once despite the inexact 1/6, 1/12, 1/24.
 *
 * Rounding: the transform coefficients reach 5 (B) and 8 (A) and the tile values cancel, so
 * float32 errors are larger than F(2x2)'s (coefficients 0, +-1, +-1/2). Measured against a
 * double-precision loop on random data in [-1, 1] (the harness of tests/nn/test_nn_winograd.c),
 * as max |error| / max |reference| and as rms relative error:
 *   test shapes (1..64 channels):        F(4x4) max <= 8e-6, rms <= 3.5e-6 (test tolerance 2e-5 on
 *                                        the max); F(2x2) max <= 8e-7, rms <= 6e-7
 *   U-Net shapes, forward / dx / dw:     32ch 64x64: F(4x4) max 5.6e-6 / 3.2e-6 / 8.3e-6,
 *                                        rms 1.2e-6 / 1.2e-6 / 2.9e-6 (F(2x2) max 2.6e-7 / 2.5e-7 /
 *                                        6.2e-7); 96ch 64x64: max 6.9e-6 / 3.0e-6 / 7.5e-6;
 *                                        192ch 32x32: max 1.2e-5 / 4.0e-6 / 5.9e-6, rms 2.6e-6 /
 *                                        1.6e-6 / 2.2e-6 (F(2x2) max 5.4e-7 / 3.2e-7 / 8.0e-7)
 * i.e. about 6x F(2x2)'s rms error and 10-20x its worst case, still far below what training
 * notices (bf16 training rounds at 4e-3). A simulation of one 64-channel tile (dense float
 * transforms) gave rms 1.7e-6 for these points and 1.1e-6 for Barabasz et al.'s
 * {0, -1, 1, 1/2, -2}, whose B^T is denser (more flops in the input transforms); not used.
 *
 * Tiles are processed in chunks of whole tile rows (16 tile rows of 128..256 tiles, see
 * SD_NN_WINO4_MIN_TILES) over the flattened (image, tile row) index, so V, M and dV stay a few
 * MB whatever the batch; every transform is a loop over the tiles of one tile row (streams of
 * tw floats, after splitting rows into their four phases where windows overlap) that GCC
 * vectorises, compiled for AVX2 too (SD_NN_CLONES).
 * Layouts in the workspace: U, dU [36][oc][c]; V, dV [36][c][Tc]; M, dM [36][oc][Tc] (the 36
 * matrices pad_stride() apart), matrix 6 i + j holding element (i, j) of the 6x6 tiles.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif

#include <cblas.h>
#include <string.h>

#include "nn_simd.h"
#include "stemdefect/nn_kernels.h"

/* Tiles per chunk: 16 tile rows, but at least SD_NN_WINO4_MIN_TILES and at most
 * SD_NN_WINO4_MAX_TILES (rounded to whole tile rows). Measured (tests/nn/bench_wino-style paired
 * runs over 128..2048 tiles, 8 and 16 images): 64x64 layers are fastest at 256 tiles, 32x32
 * and 16x16 layers at 128; above 384 every layer slows down (V and M leave the caches), by
 * up to 1.4x at 2048. */
#define SD_NN_WINO4_MIN_TILES 128
#define SD_NN_WINO4_MAX_TILES 256

/* The stream loops are inlined into their (cloned) callers, so they get the AVX2 code too. */
#if defined(__GNUC__)
#define SD_NN_INLINE __attribute__((always_inline)) inline
#else
#define SD_NN_INLINE inline
#endif

int sd_nn_conv2d_winograd4_applies(const sd_nn_conv_geom *g) {
  return sd_nn_conv2d_winograd_applies(g);
}

typedef struct wino4_plan {
  int th, tw;        /* tiles per image: ceil(oh/4) x ceil(ow/4) */
  int rows;          /* tile rows per chunk */
  size_t tc;         /* tiles per full chunk: rows * tw */
  int len;           /* row buffer length 4 tw + 2 (input columns -pw .. 4 tw + 1 - pw) */
  size_t su, sv, sm; /* floats from one of the 36 matrices of U (dU), V (dV), M (dM) to the next */
  size_t u, v, m;    /* floats of U (and of dU), of V (and of dV), of M (and of dM) */
} wino4_plan;

/* The distance between consecutive matrices of U, V, M: 16 floats past a multiple of 4 KB, so
 * that the 36 streams a transform reads or writes at the same offset fall into 36 different
 * cache sets (at a multiple of 4 KB they would all share one set of the 8- or 12-way L1, and
 * loads would alias stores 4 KB apart). */
static size_t pad_stride(size_t floats) {
  return (floats + 1023) / 1024 * 1024 + 16;
}

static wino4_plan make_plan(const sd_nn_conv_geom *g, int n) {
  wino4_plan p;
  p.th = (g->oh + 3) / 4;
  p.tw = (g->ow + 3) / 4;
  long total_rows = (long)n * p.th;
  long tiles = 16L * p.tw;
  tiles = tiles < SD_NN_WINO4_MIN_TILES   ? SD_NN_WINO4_MIN_TILES
          : tiles > SD_NN_WINO4_MAX_TILES ? SD_NN_WINO4_MAX_TILES
                                          : tiles;
  long r = tiles / p.tw;
  if (r > total_rows)
    r = total_rows;
  if (r < 1)
    r = 1;
  p.rows = (int)r;
  p.tc = (size_t)p.rows * (size_t)p.tw;
  p.len = 4 * p.tw + 2;
  p.su = pad_stride((size_t)g->oc * g->c);
  p.sv = pad_stride((size_t)g->c * p.tc);
  p.sm = pad_stride((size_t)g->oc * p.tc);
  p.u = 36 * p.su;
  p.v = 36 * p.sv;
  p.m = 36 * p.sm;
  return p;
}

/* Row buffer floats: the largest of the four transforms' needs (input gradient: 6 rows + 36
 * streams + 36 shifted streams). */
static size_t rbuf_floats(const wino4_plan *p, const sd_nn_conv_geom *g) {
  return (size_t)8 * p->len + (size_t)80 * (p->tw + 1) + (size_t)g->w + 64;
}

size_t sd_nn_conv2d_winograd4_workspace(const sd_nn_conv_geom *g, int n) {
  if (!sd_nn_conv2d_winograd4_applies(g))
    return 0;
  wino4_plan p = make_plan(g, n < 1 ? 1 : n);
  return 2 * p.u + 2 * p.v + p.m + rbuf_floats(&p, g);
}

/* ---- weight transforms: per output channel, vectorised over blocks of input channels ---- */

#define WBLK 64 /* input channels per block */
#define SIXTH (1.0 / 6)
#define TWELFTH (1.0 / 12)
#define TWENTYFOURTH (1.0 / 24)

/* U [36][oc][c] = G g G^T for every (o, c); w [oc, c, 3, 3]. In double, rounded once. */
SD_NN_CLONES static void transform_weights(const sd_nn_conv_geom *g, size_t step, const float *w,
                                           float *U) {
  const size_t oc = (size_t)g->oc, c = (size_t)g->c;
  double k[9][WBLK], t[6][3][WBLK];
  for (size_t o = 0; o < oc; o++)
    for (size_t c0 = 0; c0 < c; c0 += WBLK) {
      const int nb = (int)(c - c0 < WBLK ? c - c0 : WBLK);
      const float *src = w + (o * c + c0) * 9;
      for (int i = 0; i < nb; i++)
        for (int r = 0; r < 9; r++)
          k[r][i] = src[9 * i + r];
      for (int j = 0; j < 3; j++) /* t = G g: column j of g is k[j], k[3 + j], k[6 + j] */
        for (int i = 0; i < nb; i++) {
          const double a = k[j][i], b = k[3 + j][i], e = k[6 + j][i];
          const double s = -(a + e) * SIXTH, d = b * SIXTH;
          t[0][j][i] = 0.25 * a;
          t[1][j][i] = s - d;
          t[2][j][i] = s + d;
          t[3][j][i] = (a * TWENTYFOURTH + b * TWELFTH) + e * SIXTH;
          t[4][j][i] = (a * TWENTYFOURTH - b * TWELFTH) + e * SIXTH;
          t[5][j][i] = e;
        }
      float *u = U + o * c + c0;
      for (int r = 0; r < 6; r++) { /* row r of t G^T */
        float *u0 = u + (size_t)(6 * r) * step, *u1 = u0 + step, *u2 = u1 + step;
        float *u3 = u2 + step, *u4 = u3 + step, *u5 = u4 + step;
        for (int i = 0; i < nb; i++) {
          const double a = t[r][0][i], b = t[r][1][i], e = t[r][2][i];
          const double s = -(a + e) * SIXTH, d = b * SIXTH;
          u0[i] = (float)(0.25 * a);
          u1[i] = (float)(s - d);
          u2[i] = (float)(s + d);
          u3[i] = (float)((a * TWENTYFOURTH + b * TWELFTH) + e * SIXTH);
          u4[i] = (float)((a * TWENTYFOURTH - b * TWELFTH) + e * SIXTH);
          u5[i] = (float)e;
        }
      }
    }
}

/* dw [oc, c, 3, 3] += G^T dU G. In double, rounded once. G^T maps six values d0..d5 to
 * (d0 / 4 - (d1 + d2) / 6 + (d3 + d4) / 24,  (d2 - d1) / 6 + (d3 - d4) / 12,
 *  -(d1 + d2) / 6 + (d3 + d4) / 6 + d5). */
SD_NN_CLONES static void transform_weight_grad(const sd_nn_conv_geom *g, size_t step,
                                               const float *dU, float *dw) {
  const size_t oc = (size_t)g->oc, c = (size_t)g->c;
  double t[3][6][WBLK], k[9][WBLK];
  for (size_t o = 0; o < oc; o++)
    for (size_t c0 = 0; c0 < c; c0 += WBLK) {
      const int nb = (int)(c - c0 < WBLK ? c - c0 : WBLK);
      const float *d = dU + o * c + c0;
      for (int j = 0; j < 6; j++) { /* t = G^T dU, column j */
        const float *d0 = d + (size_t)j * step, *d1 = d0 + 6 * step, *d2 = d1 + 6 * step;
        const float *d3 = d2 + 6 * step, *d4 = d3 + 6 * step, *d5 = d4 + 6 * step;
        for (int i = 0; i < nb; i++) {
          const double s12 = (double)d1[i] + d2[i], s34 = (double)d3[i] + d4[i];
          t[0][j][i] = (0.25 * d0[i] - s12 * SIXTH) + s34 * TWENTYFOURTH;
          t[1][j][i] = ((double)d2[i] - d1[i]) * SIXTH + ((double)d3[i] - d4[i]) * TWELFTH;
          t[2][j][i] = (s34 * SIXTH - s12 * SIXTH) + d5[i];
        }
      }
      for (int r = 0; r < 3; r++) /* (G^T dU) G, row r */
        for (int i = 0; i < nb; i++) {
          const double *q = &t[r][0][0];
          const double d0 = q[i], d1 = q[WBLK + i], d2 = q[2 * WBLK + i], d3 = q[3 * WBLK + i];
          const double d4 = q[4 * WBLK + i], d5 = q[5 * WBLK + i];
          const double s12 = d1 + d2, s34 = d3 + d4;
          k[3 * r + 0][i] = (0.25 * d0 - s12 * SIXTH) + s34 * TWENTYFOURTH;
          k[3 * r + 1][i] = (d2 - d1) * SIXTH + (d3 - d4) * TWELFTH;
          k[3 * r + 2][i] = (s34 * SIXTH - s12 * SIXTH) + d5;
        }
      float *dst = dw + (o * c + c0) * 9;
      for (int i = 0; i < nb; i++)
        for (int r = 0; r < 9; r++)
          dst[9 * i + r] = (float)((double)dst[9 * i + r] + k[r][i]);
    }
}

/* sum of n floats in double (eight partial sums, which GCC vectorises) */
static double sum_double(const float *s, size_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  size_t k = 0;
  for (; k + 8 <= n; k += 8)
    for (int l = 0; l < 8; l++)
      acc[l] += s[k + l];
  double tot = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  for (; k < n; k++)
    tot += s[k];
  return tot;
}

/* ---- vector loops over the tiles of a tile row (restrict parameters let GCC vectorise) ---- */

/* B^T of six streams (the vertical input transform of six rows). */
SD_NN_INLINE static void bt_streams(int n, const float *restrict r0, const float *restrict r1,
                                    const float *restrict r2, const float *restrict r3,
                                    const float *restrict r4, const float *restrict r5,
                                    float *restrict t0, float *restrict t1, float *restrict t2,
                                    float *restrict t3, float *restrict t4, float *restrict t5) {
  for (int j = 0; j < n; j++) {
    const float a = r0[j], b = r1[j], c = r2[j], d = r3[j], e = r4[j], f = r5[j];
    const float p = e - 4.0f * c, q = d - 4.0f * b, s = e - c, u = d - b;
    t0[j] = (4.0f * a - 5.0f * c) + e;
    t1[j] = p + q;
    t2[j] = p - q;
    t3[j] = s + 2.0f * u;
    t4[j] = s - 2.0f * u;
    t5[j] = (4.0f * b - 5.0f * d) + f;
  }
}

/* The four phases of n groups of four: e_p[m] = t[4m + p] (a whole interleaving group per
 * iteration, which GCC vectorises with permutations). */
SD_NN_INLINE static void deinterleave4(int n, const float *restrict t, float *restrict e0,
                                       float *restrict e1, float *restrict e2, float *restrict e3) {
  for (int m = 0; m < n; m++) {
    e0[m] = t[4 * m];
    e1[m] = t[4 * m + 1];
    e2[m] = t[4 * m + 2];
    e3[m] = t[4 * m + 3];
  }
}

/* The B^T row transform of the 6-column windows at 4tx of one row given by its phases
 * (window tx: e0[tx], e1[tx], e2[tx], e3[tx], e0[tx + 1], e1[tx + 1]). */
SD_NN_INLINE static void bt_phases(int tw, const float *restrict e0, const float *restrict e1,
                                   const float *restrict e2, const float *restrict e3,
                                   float *restrict t0, float *restrict t1, float *restrict t2,
                                   float *restrict t3, float *restrict t4, float *restrict t5) {
  for (int tx = 0; tx < tw; tx++) {
    const float a = e0[tx], b = e1[tx], c = e2[tx], d = e3[tx], e = e0[tx + 1], f = e1[tx + 1];
    const float p = e - 4.0f * c, q = d - 4.0f * b, ss = e - c, u = d - b;
    t0[tx] = (4.0f * a - 5.0f * c) + e;
    t1[tx] = p + q;
    t2[tx] = p - q;
    t3[tx] = ss + 2.0f * u;
    t4[tx] = ss - 2.0f * u;
    t5[tx] = (4.0f * b - 5.0f * d) + f;
  }
}

/* B of six streams (the adjoint of bt_streams). */
SD_NN_INLINE static void b_streams(int n, const float *restrict v0, const float *restrict v1,
                                   const float *restrict v2, const float *restrict v3,
                                   const float *restrict v4, const float *restrict v5,
                                   float *restrict p0, float *restrict p1, float *restrict p2,
                                   float *restrict p3, float *restrict p4, float *restrict p5) {
  for (int i = 0; i < n; i++) {
    const float a = v0[i], b = v1[i], c = v2[i], d = v3[i], e = v4[i], f = v5[i];
    const float s12 = b + c, s34 = d + e;
    p0[i] = 4.0f * a;
    p1[i] = (4.0f * (c - b) + 2.0f * (e - d)) + 4.0f * f;
    p2[i] = (-5.0f * a - 4.0f * s12) - s34;
    p3[i] = ((b - c) + 2.0f * (d - e)) - 5.0f * f;
    p4[i] = (a + s12) + s34;
    p5[i] = f;
  }
}

/* A^T of six streams: four out. */
SD_NN_INLINE static void at_streams(int n, const float *restrict m0, const float *restrict m1,
                                    const float *restrict m2, const float *restrict m3,
                                    const float *restrict m4, const float *restrict m5,
                                    float *restrict s0, float *restrict s1, float *restrict s2,
                                    float *restrict s3) {
  for (int i = 0; i < n; i++) {
    const float p = m1[i] + m2[i], q = m1[i] - m2[i], r = m3[i] + m4[i], t = m3[i] - m4[i];
    s0[i] = (m0[i] + p) + r;
    s1[i] = q + 2.0f * t;
    s2[i] = p + 4.0f * r;
    s3[i] = (q + 8.0f * t) + m5[i];
  }
}

/* The A^T row transform of six streams, interleaved into one output row plus bias:
 * out[4tx + l] = (A^T [a0..a5][tx])_l + bias. */
SD_NN_INLINE static void at_interleave(int tw, float bias, const float *restrict a0,
                                       const float *restrict a1, const float *restrict a2,
                                       const float *restrict a3, const float *restrict a4,
                                       const float *restrict a5, float *restrict out) {
  for (int tx = 0; tx < tw; tx++) {
    const float p = a1[tx] + a2[tx], q = a1[tx] - a2[tx], r = a3[tx] + a4[tx], t = a3[tx] - a4[tx];
    out[4 * tx + 0] = ((a0[tx] + p) + r) + bias;
    out[4 * tx + 1] = (q + 2.0f * t) + bias;
    out[4 * tx + 2] = (p + 4.0f * r) + bias;
    out[4 * tx + 3] = ((q + 8.0f * t) + a5[tx]) + bias;
  }
}

/* A of the 4-column windows at 4tx of one row r (the adjoint of at_interleave's transform). */
SD_NN_INLINE static void a_cols(int tw, const float *restrict r, float *restrict q0,
                                float *restrict q1, float *restrict q2, float *restrict q3,
                                float *restrict q4, float *restrict q5) {
  for (int tx = 0; tx < tw; tx++) {
    const float *w = r + 4 * tx;
    const float a = w[0], b = w[1], c = w[2], d = w[3];
    const float e = a + c, o = b + d, e4 = a + 4.0f * c, o4 = 2.0f * b + 8.0f * d;
    q0[tx] = a;
    q1[tx] = e + o;
    q2[tx] = e - o;
    q3[tx] = e4 + o4;
    q4[tx] = e4 - o4;
    q5[tx] = d;
  }
}

/* A of four streams: six out (the adjoint of at_streams). */
SD_NN_INLINE static void a_streams(int n, const float *restrict a0, const float *restrict a1,
                                   const float *restrict a2, const float *restrict a3,
                                   float *restrict q0, float *restrict q1, float *restrict q2,
                                   float *restrict q3, float *restrict q4, float *restrict q5) {
  for (int i = 0; i < n; i++) {
    const float a = a0[i], b = a1[i], c = a2[i], d = a3[i];
    const float e = a + c, o = b + d, e4 = a + 4.0f * c, o4 = 2.0f * b + 8.0f * d;
    q0[i] = a;
    q1[i] = e + o;
    q2[i] = e - o;
    q3[i] = e4 + o4;
    q4[i] = e4 - o4;
    q5[i] = d;
  }
}

/* One patch row from the tiles' columns: row[4tx + l] = c_l[tx] + (l < 2: c_{l+4}[tx - 1]),
 * where s4, s5 hold c_4, c_5 shifted by one (s4[0] = s5[0] = 0, s4[tx + 1] = c_4[tx]). */
SD_NN_INLINE static void overlap_row(int tw, const float *restrict c0, const float *restrict c1,
                                     const float *restrict c2, const float *restrict c3,
                                     const float *restrict s4, const float *restrict s5,
                                     float *restrict row) {
  for (int tx = 0; tx < tw; tx++) {
    row[4 * tx + 0] = c0[tx] + s4[tx];
    row[4 * tx + 1] = c1[tx] + s5[tx];
    row[4 * tx + 2] = c2[tx];
    row[4 * tx + 3] = c3[tx];
  }
  row[4 * tw] = s4[tw];
  row[4 * tw + 1] = s5[tw];
}

SD_NN_INLINE static void add_row(int n, const float *restrict s, float *restrict d) {
  for (int j = 0; j < n; j++)
    d[j] += s[j];
}

/* ---- the four tile-row transforms ---- */

/* V [36][c][tc] (tiles of the chunk starting at flat tile row q0, nq rows) = B^T d B. The
 * vertical transform reads the six input rows in place (rows outside the image read `zero`)
 * into T[6][L], L = 4 (tw + 1), whose column j holds input column j - pw; the six rows are then
 * split into their four phases (one loop over all of them: the rows are L apart) for the
 * horizontal transform. */
SD_NN_CLONES static void transform_input(const sd_nn_conv_geom *g, const wino4_plan *p,
                                         const float *x, long q0, int nq, float *V, float *rbuf) {
  const size_t c = (size_t)g->c, hw = (size_t)g->h * g->w, tc = p->tc;
  const size_t step = p->sv;
  const int tw = p->tw, h = g->h, w = g->w, pw = g->pw;
  const int L = 4 * (tw + 1), np = 6 * (tw + 1);
  float *T = rbuf;                 /* [6][L] */
  float *zero = T + 6 * (size_t)L; /* [w] zeros */
  float *E = zero + w;             /* [4][6][tw + 1]: the phases of T */
  memset(zero, 0, sizeof(float) * (size_t)w);
  for (int i = 0; i < 6; i++) {
    for (int j = 0; j < pw; j++)
      T[(size_t)i * L + j] = 0.0f;
    for (int j = pw + w; j < L; j++)
      T[(size_t)i * L + j] = 0.0f;
  }
  for (size_t ci = 0; ci < c; ci++) {
    for (int qi = 0; qi < nq; qi++) {
      const long q = q0 + qi;
      const long img = q / p->th;
      const int ty = (int)(q % p->th);
      const float *xc = x + ((size_t)img * c + ci) * hw;
      const float *rr[6];
      for (int i = 0; i < 6; i++) {
        const int iy = 4 * ty - g->ph + i;
        rr[i] = iy < 0 || iy >= h ? zero : xc + (size_t)iy * w;
      }
      bt_streams(w, rr[0], rr[1], rr[2], rr[3], rr[4], rr[5], T + pw, T + L + pw, T + 2 * L + pw,
                 T + 3 * L + pw, T + 4 * L + pw, T + 5 * L + pw);
      deinterleave4(np, T, E, E + np, E + 2 * np, E + 3 * np);
      float *v = V + ci * tc + (size_t)qi * tw;
      for (int i = 0; i < 6; i++) {
        const float *e0 = E + (size_t)i * (tw + 1);
        float *v0 = v + (size_t)(6 * i) * step;
        bt_phases(tw, e0, e0 + np, e0 + 2 * np, e0 + 3 * np, v0, v0 + step, v0 + 2 * step,
                  v0 + 3 * step, v0 + 4 * step, v0 + 5 * step);
      }
    }
  }
}

/* y (the chunk's tiles) = A^T M A + b. */
SD_NN_CLONES static void transform_output(const sd_nn_conv_geom *g, const wino4_plan *p,
                                          const float *M, const float *b, long q0, int nq, float *y,
                                          float *rbuf) {
  const size_t oc = (size_t)g->oc, ohw = (size_t)g->oh * g->ow, tc = p->tc;
  const size_t step = p->sm;
  const int tw = p->tw, len = p->len, ow = g->ow;
  float *orow = rbuf;                /* [4][len] */
  float *S = rbuf + 4 * (size_t)len; /* [4][6][tw]: A^T M */
  const size_t s6 = 6 * (size_t)tw;
  for (size_t o = 0; o < oc; o++) {
    const float bias = b ? b[o] : 0.0f;
    for (int qi = 0; qi < nq; qi++) {
      const long q = q0 + qi;
      const long img = q / p->th;
      const int ty = (int)(q % p->th);
      const float *m = M + o * tc + (size_t)qi * tw;
      for (int j = 0; j < 6; j++) { /* column j: A^T over the rows */
        const float *m0 = m + (size_t)j * step;
        float *s0 = S + (size_t)j * tw;
        at_streams(tw, m0, m0 + 6 * step, m0 + 12 * step, m0 + 18 * step, m0 + 24 * step,
                   m0 + 30 * step, s0, s0 + s6, s0 + 2 * s6, s0 + 3 * s6);
      }
      const int rows = g->oh - 4 * ty < 4 ? g->oh - 4 * ty : 4;
      float *Y = y + ((size_t)img * oc + o) * ohw + (size_t)(4 * ty) * ow;
      for (int k = 0; k < rows; k++) { /* (A^T M) A */
        const float *a0 = S + (size_t)k * s6;
        float *out = orow + (size_t)k * len;
        at_interleave(tw, bias, a0, a0 + tw, a0 + 2 * tw, a0 + 3 * tw, a0 + 4 * tw, a0 + 5 * tw,
                      out);
        memcpy(Y + (size_t)k * ow, out, sizeof(float) * (size_t)ow);
      }
    }
  }
}

/* dM [36][oc][tc] = A dY A^T for the chunk's tiles (dY zero outside the output). */
SD_NN_CLONES static void transform_output_grad(const sd_nn_conv_geom *g, const wino4_plan *p,
                                               const float *dy, long q0, int nq, float *dM,
                                               float *rbuf) {
  const size_t oc = (size_t)g->oc, ohw = (size_t)g->oh * g->ow, tc = p->tc;
  const size_t step = p->sm;
  const int tw = p->tw, ow = g->ow, len = p->len;
  float *r = rbuf;               /* one dY row, [len] */
  float *Q = rbuf + (size_t)len; /* [4][6][tw]: dY A^T */
  const size_t s6 = 6 * (size_t)tw;
  for (int j = ow; j < len; j++)
    r[j] = 0.0f;
  for (size_t o = 0; o < oc; o++) {
    for (int qi = 0; qi < nq; qi++) {
      const long q = q0 + qi;
      const long img = q / p->th;
      const int ty = (int)(q % p->th);
      const int rows = g->oh - 4 * ty < 4 ? g->oh - 4 * ty : 4;
      const float *D = dy + ((size_t)img * oc + o) * ohw + (size_t)(4 * ty) * ow;
      for (int k = 0; k < 4; k++) { /* row k of every tile: A over the columns */
        float *q0k = Q + (size_t)k * s6;
        if (k < rows) {
          memcpy(r, D + (size_t)k * ow, sizeof(float) * (size_t)ow);
          a_cols(tw, r, q0k, q0k + tw, q0k + 2 * tw, q0k + 3 * tw, q0k + 4 * tw, q0k + 5 * tw);
        } else {
          memset(q0k, 0, sizeof(float) * s6);
        }
      }
      float *m = dM + o * tc + (size_t)qi * tw;
      for (int j = 0; j < 6; j++) { /* column j: A over the rows */
        const float *a0 = Q + (size_t)j * tw;
        float *m0 = m + (size_t)j * step;
        a_streams(tw, a0, a0 + s6, a0 + 2 * s6, a0 + 3 * s6, m0, m0 + 6 * step, m0 + 12 * step,
                  m0 + 18 * step, m0 + 24 * step, m0 + 30 * step);
      }
    }
  }
}

/* dx += B dV B^T of the chunk's tiles, scattered onto the overlapping 6x6 input patches (tile
 * tx covers patch columns 4tx .. 4tx + 5; columns 4tx, 4tx + 1 collect tile tx's columns 0, 1
 * and tile tx - 1's columns 4, 5; rows likewise between tile rows). */
SD_NN_CLONES static void transform_input_grad(const sd_nn_conv_geom *g, const wino4_plan *p,
                                              const float *dV, long q0, int nq, float *dx,
                                              float *rbuf, int overwrite) {
  const size_t c = (size_t)g->c, hw = (size_t)g->h * g->w, tc = p->tc;
  const size_t step = p->sv;
  const int tw = p->tw, len = p->len, h = g->h, w = g->w, pw = g->pw;
  const size_t st = (size_t)tw + 1;  /* stream stride in P and DD */
  float *acc = rbuf;                 /* [6][len] */
  float *P = rbuf + 6 * (size_t)len; /* [6][6][st]: B dV (rows) */
  float *DD = P + 36 * st;           /* [6][6][st]: B dV B^T; columns 4, 5 shifted by one */
  for (int a = 0; a < 6; a++) {
    DD[(size_t)(6 * a + 4) * st] = 0.0f;
    DD[(size_t)(6 * a + 5) * st] = 0.0f;
  }
  for (size_t ci = 0; ci < c; ci++) {
    for (int qi = 0; qi < nq; qi++) {
      const long q = q0 + qi;
      const long img = q / p->th;
      const int ty = (int)(q % p->th);
      const float *v = dV + ci * tc + (size_t)qi * tw;
      for (int j = 0; j < 6; j++) { /* column j of dV: B over the rows */
        const float *v0 = v + (size_t)j * step;
        float *p0 = P + (size_t)j * st;
        const size_t r6 = 6 * st;
        b_streams(tw, v0, v0 + 6 * step, v0 + 12 * step, v0 + 18 * step, v0 + 24 * step,
                  v0 + 30 * step, p0, p0 + r6, p0 + 2 * r6, p0 + 3 * r6, p0 + 4 * r6, p0 + 5 * r6);
      }
      for (int a = 0; a < 6; a++) { /* row a: B over the columns, then overlap the tiles */
        const float *p0 = P + (size_t)(6 * a) * st;
        float *d0 = DD + (size_t)(6 * a) * st;
        b_streams(tw, p0, p0 + st, p0 + 2 * st, p0 + 3 * st, p0 + 4 * st, p0 + 5 * st, d0, d0 + st,
                  d0 + 2 * st, d0 + 3 * st, d0 + 4 * st + 1, d0 + 5 * st + 1);
        overlap_row(tw, d0, d0 + st, d0 + 2 * st, d0 + 3 * st, d0 + 4 * st, d0 + 5 * st,
                    acc + (size_t)a * len);
      }
      /* overwrite: every input row's first contribution comes from the first tile row that
       * covers it (tile rows run in order, chunk after chunk): rows 0, 1 of tile row 0 and
       * rows 2..5 of every tile row; all input pixels are covered */
      float *X = dx + ((size_t)img * c + ci) * hw;
      for (int i = 0; i < 6; i++) {
        const int iy = 4 * ty - g->ph + i;
        if (iy < 0 || iy >= h)
          continue;
        const float *s = acc + (size_t)i * len + pw;
        float *d = X + (size_t)iy * w;
        if (overwrite && (ty == 0 || i >= 2))
          memcpy(d, s, sizeof(float) * (size_t)w);
        else
          add_row(w, s, d);
      }
    }
  }
}

void sd_nn_conv2d_winograd4_forward(const sd_nn_conv_geom *g, int n, const float *x, const float *w,
                                    const float *b, float *y, float *work) {
  const wino4_plan p = make_plan(g, n);
  float *U = work, *V = U + 2 * p.u, *M = V + 2 * p.v, *rbuf = M + p.m;
  const int oc = g->oc, c = g->c;
  transform_weights(g, p.su, w, U);
  const long total = (long)n * p.th;
  for (long q0 = 0; q0 < total; q0 += p.rows) {
    const int nq = (int)(total - q0 < p.rows ? total - q0 : p.rows);
    const int T = nq * p.tw; /* columns in use; rows of V and M are p.tc apart */
    transform_input(g, &p, x, q0, nq, V, rbuf);
    for (size_t xi = 0; xi < 36; xi++)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, oc, T, c, 1.0f, U + xi * p.su, c,
                  V + xi * p.sv, (int)p.tc, 0.0f, M + xi * p.sm, (int)p.tc);
    transform_output(g, &p, M, b, q0, nq, y, rbuf);
  }
}

static void winograd4_backward(const sd_nn_conv_geom *g, int n, const float *x, const float *w,
                               const float *dy, float *dx, float *dw, float *db, float *work,
                               int overwrite) {
  const wino4_plan p = make_plan(g, n);
  float *U = work, *dU = U + p.u, *V = dU + p.u, *dV = V + p.v, *dM = dV + p.v, *rbuf = dM + p.m;
  const int oc = g->oc, c = g->c;
  const size_t ohw = (size_t)g->oh * g->ow;
  if (db)
    for (int i = 0; i < n; i++)
      for (int o = 0; o < oc; o++) {
        db[o] += (float)sum_double(dy + ((size_t)i * oc + o) * ohw, ohw);
      }
  if (!dx && !dw)
    return;
  if (dx)
    transform_weights(g, p.su, w, U);
  if (dw)
    memset(dU, 0, sizeof(float) * p.u);
  const long total = (long)n * p.th;
  for (long q0 = 0; q0 < total; q0 += p.rows) {
    const int nq = (int)(total - q0 < p.rows ? total - q0 : p.rows);
    const int T = nq * p.tw;
    const int ld = (int)p.tc;
    transform_output_grad(g, &p, dy, q0, nq, dM, rbuf);
    if (dw) {
      transform_input(g, &p, x, q0, nq, V, rbuf);
      for (size_t xi = 0; xi < 36; xi++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, oc, c, T, 1.0f, dM + xi * p.sm, ld,
                    V + xi * p.sv, ld, 1.0f, dU + xi * p.su, c);
    }
    if (dx) {
      for (size_t xi = 0; xi < 36; xi++)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c, T, oc, 1.0f, U + xi * p.su, c,
                    dM + xi * p.sm, ld, 0.0f, dV + xi * p.sv, ld);
      transform_input_grad(g, &p, dV, q0, nq, dx, rbuf, overwrite);
    }
  }
  if (dw)
    transform_weight_grad(g, p.su, dU, dw);
}

void sd_nn_conv2d_winograd4_backward(const sd_nn_conv_geom *g, int n, const float *x,
                                     const float *w, const float *dy, float *dx, float *dw,
                                     float *db, float *work) {
  winograd4_backward(g, n, x, w, dy, dx, dw, db, work, 0);
}

void sd_nn_conv2d_winograd4_backward_set(const sd_nn_conv_geom *g, int n, const float *x,
                                         const float *w, const float *dy, float *dx, float *dw,
                                         float *db, float *work) {
  winograd4_backward(g, n, x, w, dy, dx, dw, db, work, 1);
}
