/* nn_winograd.c - 3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3)
 * (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016), forward and both
 * gradients, on OpenBLAS sgemm.
 *
 * The output is cut into 2x2 tiles; tile t reads the 4x4 input patch d at (2ty - ph, 2tx - pw).
 * With the transforms
 *   U = G g G^T (weights, 4x4 per (oc, c)),  V = B^T d B (input, 4x4 per (c, tile)),
 *   Y = A^T M A (output, 2x2 per (oc, tile)),  M = sum_c U (.) V,
 * the 16 elementwise products over c are 16 GEMMs M_xi [oc, T] = U_xi [oc, c] V_xi [c, T], with
 * 16 multiply-adds per 4 outputs instead of 36: 2.25x fewer GEMM flops than im2col. The
 * gradients are the adjoints of the same linear maps (exact in real arithmetic):
 *   dM = A dY A^T,  dV_xi = U_xi^T dM_xi,  dd = B dV B^T (scattered-added: patches overlap),
 *   dU_xi += dM_xi V_xi^T over all tiles, then dw += G^T dU G.
 * Tiles are processed in chunks of whole tile rows (over the flattened (image, tile row) index)
 * of about SD_NN_WINO_TILES tiles, so V, M and dV stay a few MB whatever the batch.
 * Layouts in the workspace: U, dU [16][oc][c]; V, dV [16][c][Tc]; M, dM [16][oc][Tc] (the 16
 * matrices pad_stride() apart). nn_winograd4.c is the F(4x4, 3x3) variant, which
 * sd_nn_conv2d_forward/backward prefer for outputs of at least 8x8 (nn_conv.c).
 * Every transform coefficient is 0, +-1 or +-1/2, so the rounding error stays at the level of
 * the im2col path (tests/nn/test_nn_winograd.c compares both against a double-precision loop).
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif

#include <cblas.h>
#include <string.h>

#include "nn_simd.h"
#include "stemdefect/nn_kernels.h"

/* Tiles per chunk (rounded to whole tile rows). */
#define SD_NN_WINO_TILES 1024

int sd_nn_conv2d_winograd_applies(const sd_nn_conv_geom *g) {
  return g->kh == 3 && g->kw == 3 && g->sh == 1 && g->sw == 1 && g->ph >= 0 && g->ph <= 2 &&
         g->pw >= 0 && g->pw <= 2 && g->oh >= 1 && g->ow >= 1 && g->c >= 1 && g->oc >= 1;
}

/* Tile grid and chunking. */
typedef struct wino_plan {
  int th, tw;        /* tiles per image: ceil(oh/2) x ceil(ow/2) */
  int rows;          /* tile rows per chunk */
  size_t tc;         /* tiles per full chunk: rows * tw */
  int len;           /* row buffer length 2 tw + 2 */
  size_t su, sv, sm; /* floats from one of the 16 matrices of U (dU), V (dV), M (dM) to the next */
  size_t u, v, m;    /* floats of U (and of dU), of V (and of dV), of M (and of dM) */
} wino_plan;

/* The distance between consecutive matrices of U, V, M: 16 floats past a multiple of 4 KB, so
 * that the 16 streams a transform reads or writes at the same offset fall into different cache
 * sets (at a multiple of 4 KB, which 16 c tc floats usually are, they all share one set of the
 * 8- or 12-way L1 and loads alias stores 4 KB apart). */
static size_t pad_stride(size_t floats) {
  return (floats + 1023) / 1024 * 1024 + 16;
}

static wino_plan make_plan(const sd_nn_conv_geom *g, int n) {
  wino_plan p;
  p.th = (g->oh + 1) / 2;
  p.tw = (g->ow + 1) / 2;
  long total_rows = (long)n * p.th;
  long r = SD_NN_WINO_TILES / p.tw;
  if (r < 1)
    r = 1;
  if (r > total_rows)
    r = total_rows;
  if (r < 1)
    r = 1;
  p.rows = (int)r;
  p.tc = (size_t)p.rows * (size_t)p.tw;
  p.len = 2 * p.tw + 2;
  p.su = pad_stride((size_t)g->oc * g->c);
  p.sv = pad_stride((size_t)g->c * p.tc);
  p.sm = pad_stride((size_t)g->oc * p.tc);
  p.u = 16 * p.su;
  p.v = 16 * p.sv;
  p.m = 16 * p.sm;
  return p;
}

size_t sd_nn_conv2d_winograd_workspace(const sd_nn_conv_geom *g, int n) {
  if (!sd_nn_conv2d_winograd_applies(g))
    return 0;
  wino_plan p = make_plan(g, n < 1 ? 1 : n);
  /* U, dU, V, dV, M, row buffers (at most 4 rows + 32 tile-row streams) */
  return 2 * p.u + 2 * p.v + p.m + (size_t)40 * p.len + 64;
}

/* U [16][oc][c] = G g G^T for every (o, c); w [oc, c, 3, 3]. */
static void transform_weights(const sd_nn_conv_geom *g, size_t step, const float *w, float *U) {
  const size_t oc = (size_t)g->oc, c = (size_t)g->c;
  for (size_t o = 0; o < oc; o++)
    for (size_t ci = 0; ci < c; ci++) {
      const float *k = w + (o * c + ci) * 9;
      float t[4][3]; /* G g */
      for (int j = 0; j < 3; j++) {
        t[0][j] = k[j];
        t[1][j] = 0.5f * (k[j] + k[3 + j] + k[6 + j]);
        t[2][j] = 0.5f * (k[j] - k[3 + j] + k[6 + j]);
        t[3][j] = k[6 + j];
      }
      float *u = U + o * c + ci;
      for (int i = 0; i < 4; i++) {
        u[(size_t)(4 * i + 0) * step] = t[i][0];
        u[(size_t)(4 * i + 1) * step] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
        u[(size_t)(4 * i + 2) * step] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
        u[(size_t)(4 * i + 3) * step] = t[i][2];
      }
    }
}

/* dw [oc, c, 3, 3] += G^T dU G. */
static void transform_weight_grad(const sd_nn_conv_geom *g, size_t step, const float *dU,
                                  float *dw) {
  const size_t oc = (size_t)g->oc, c = (size_t)g->c;
  for (size_t o = 0; o < oc; o++)
    for (size_t ci = 0; ci < c; ci++) {
      const float *d = dU + o * c + ci;
      float D[4][4];
      for (int x = 0; x < 16; x++)
        D[x / 4][x % 4] = d[(size_t)x * step];
      float t[3][4]; /* G^T dU */
      for (int j = 0; j < 4; j++) {
        t[0][j] = D[0][j] + 0.5f * (D[1][j] + D[2][j]);
        t[1][j] = 0.5f * (D[1][j] - D[2][j]);
        t[2][j] = 0.5f * (D[1][j] + D[2][j]) + D[3][j];
      }
      float *k = dw + (o * c + ci) * 9;
      for (int i = 0; i < 3; i++) {
        k[3 * i + 0] += t[i][0] + 0.5f * (t[i][1] + t[i][2]);
        k[3 * i + 1] += 0.5f * (t[i][1] - t[i][2]);
        k[3 * i + 2] += 0.5f * (t[i][1] + t[i][2]) + t[i][3];
      }
    }
}

/* ---- vector loops over the tiles of a tile row (restrict parameters let GCC vectorise) ---- */

/* The B^T column transform of four rows: t0 = r0 - r2, t1 = r1 + r2, t2 = r2 - r1,
 * t3 = r1 - r3. */
static void bt_rows(int n, const float *restrict r0, const float *restrict r1,
                    const float *restrict r2, const float *restrict r3, float *restrict t0,
                    float *restrict t1, float *restrict t2, float *restrict t3) {
  for (int j = 0; j < n; j++) {
    t0[j] = r0[j] - r2[j];
    t1[j] = r1[j] + r2[j];
    t2[j] = r2[j] - r1[j];
    t3[j] = r1[j] - r3[j];
  }
}

/* The B^T row transform of the 4-column windows at 2tx of one row s. */
static void bt_cols(int tw, const float *restrict s, float *restrict v0, float *restrict v1,
                    float *restrict v2, float *restrict v3) {
  for (int tx = 0; tx < tw; tx++) {
    const float a = s[2 * tx], b = s[2 * tx + 1], c = s[2 * tx + 2], d = s[2 * tx + 3];
    v0[tx] = a - c;
    v1[tx] = b + c;
    v2[tx] = c - b;
    v3[tx] = b - d;
  }
}

/* Even and odd elements of the first 2 tw of r. */
static void deinterleave(int tw, const float *restrict r, float *restrict e, float *restrict o) {
  for (int tx = 0; tx < tw; tx++) {
    e[tx] = r[2 * tx];
    o[tx] = r[2 * tx + 1];
  }
}

/* u = sa a + sb b, l = sa c + sb d; m0 = u, m1 = u + l, m2 = u - l, m3 = -l. */
static void a_rows(int tw, float sa, float sb, const float *restrict a, const float *restrict b,
                   const float *restrict c, const float *restrict d, float *restrict m0,
                   float *restrict m1, float *restrict m2, float *restrict m3) {
  for (int tx = 0; tx < tw; tx++) {
    const float u = sa * a[tx] + sb * b[tx], l = sa * c[tx] + sb * d[tx];
    m0[tx] = u;
    m1[tx] = u + l;
    m2[tx] = u - l;
    m3[tx] = -l;
  }
}

/* The B transform of four streams: p0 = v0, p1 = v1 - v2 + v3, p2 = v1 + v2 - v0, p3 = -v3. */
static void b_streams(int n, const float *restrict v0, const float *restrict v1,
                      const float *restrict v2, const float *restrict v3, float *restrict p0,
                      float *restrict p1, float *restrict p2, float *restrict p3) {
  for (int i = 0; i < n; i++) {
    p0[i] = v0[i];
    p1[i] = v1[i] - v2[i] + v3[i];
    p2[i] = v1[i] + v2[i] - v0[i];
    p3[i] = -v3[i];
  }
}

/* One patch row from the tiles' columns c0..c3: row[2tx + j] = c_j[tx] + c_{j+2}[tx - 1]. */
static void overlap_row(int tw, const float *restrict c0, const float *restrict c1,
                        const float *restrict c2, const float *restrict c3, float *restrict row) {
  row[0] = c0[0];
  row[1] = c1[0];
  for (int tx = 1; tx < tw; tx++) {
    row[2 * tx] = c0[tx] + c2[tx - 1];
    row[2 * tx + 1] = c1[tx] + c3[tx - 1];
  }
  row[2 * tw] = c2[tw - 1];
  row[2 * tw + 1] = c3[tw - 1];
}

static void add_row(int n, const float *restrict s, float *restrict d) {
  for (int j = 0; j < n; j++)
    d[j] += s[j];
}

/* A^T of four streams: s0 = m0 + m1 + m2, s1 = m1 - m2 - m3. */
static void at_streams(int n, const float *restrict m0, const float *restrict m1,
                       const float *restrict m2, const float *restrict m3, float *restrict s0,
                       float *restrict s1) {
  for (int i = 0; i < n; i++) {
    s0[i] = m0[i] + m1[i] + m2[i];
    s1[i] = m1[i] - m2[i] - m3[i];
  }
}

/* out[2tx] = a0 + a1 + a2 + bias, out[2tx + 1] = a1 - a2 - a3 + bias. */
static void at_interleave(int tw, float bias, const float *restrict a0, const float *restrict a1,
                          const float *restrict a2, const float *restrict a3, float *restrict out) {
  for (int tx = 0; tx < tw; tx++) {
    out[2 * tx] = a0[tx] + a1[tx] + a2[tx] + bias;
    out[2 * tx + 1] = a1[tx] - a2[tx] - a3[tx] + bias;
  }
}

/* V [16][c][tc] (tiles of the chunk starting at flat tile row q0, nq rows) = B^T d B. The
 * vertical transform reads the four input rows in place (rows outside the image read `zero`)
 * into t[4][len], whose column j holds input column j - pw. */
SD_NN_CLONES static void transform_input(const sd_nn_conv_geom *g, const wino_plan *p,
                                         const float *x, long q0, int nq, float *V, float *rbuf) {
  const size_t c = (size_t)g->c, hw = (size_t)g->h * g->w, tc = p->tc;
  const size_t step = p->sv;
  const int tw = p->tw, len = p->len, h = g->h, w = g->w, pw = g->pw;
  float *t0 = rbuf, *t1 = t0 + len, *t2 = t1 + len, *t3 = t2 + len;
  float *zero = t3 + len; /* [w] zeros */
  memset(zero, 0, sizeof(float) * (size_t)w);
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < pw; j++)
      rbuf[(size_t)i * len + j] = 0.0f;
  for (int i = 0; i < 4; i++)
    for (int j = pw + w; j < len; j++)
      rbuf[(size_t)i * len + j] = 0.0f;
  for (size_t ci = 0; ci < c; ci++) {
    for (int qi = 0; qi < nq; qi++) {
      const long q = q0 + qi;
      const long img = q / p->th;
      const int ty = (int)(q % p->th);
      const float *xc = x + ((size_t)img * c + ci) * hw;
      const float *rr[4];
      for (int i = 0; i < 4; i++) {
        const int iy = 2 * ty - g->ph + i;
        rr[i] = iy < 0 || iy >= h ? zero : xc + (size_t)iy * w;
      }
      bt_rows(w, rr[0], rr[1], rr[2], rr[3], t0 + pw, t1 + pw, t2 + pw, t3 + pw);
      float *v = V + ci * tc + (size_t)qi * tw;
      const float *ts[4] = {t0, t1, t2, t3};
      for (int i = 0; i < 4; i++) {
        float *v0 = v + (size_t)(4 * i) * step;
        bt_cols(tw, ts[i], v0, v0 + step, v0 + 2 * step, v0 + 3 * step);
      }
    }
  }
}

/* y (the chunk's tiles) = A^T M A + b. Each step is a loop over the tiles of a tile row with
 * a few streams in and out, which GCC vectorises. */
SD_NN_CLONES static void transform_output(const sd_nn_conv_geom *g, const wino_plan *p,
                                          const float *M, const float *b, long q0, int nq, float *y,
                                          float *rbuf) {
  const size_t oc = (size_t)g->oc, ohw = (size_t)g->oh * g->ow, tc = p->tc;
  const size_t step = p->sm;
  const int tw = p->tw, len = p->len;
  float *o0 = rbuf, *o1 = rbuf + len, *S = rbuf + 2 * (size_t)len; /* [8][tw] */
  for (size_t o = 0; o < oc; o++) {
    const float bias = b ? b[o] : 0.0f;
    for (int qi = 0; qi < nq; qi++) {
      const long q = q0 + qi;
      const long img = q / p->th;
      const int ty = (int)(q % p->th);
      const float *m = M + o * tc + (size_t)qi * tw;
      for (int j = 0; j < 4; j++) { /* A^T M */
        const float *m0 = m + (size_t)j * step;
        at_streams(tw, m0, m0 + 4 * step, m0 + 8 * step, m0 + 12 * step, S + (size_t)j * tw,
                   S + (size_t)(4 + j) * tw);
      }
      for (int i = 0; i < 2; i++) { /* (A^T M) A */
        const float *a0 = S + (size_t)(4 * i) * tw;
        at_interleave(tw, bias, a0, a0 + tw, a0 + 2 * tw, a0 + 3 * tw, i ? o1 : o0);
      }
      float *Y = y + ((size_t)img * oc + o) * ohw + (size_t)(2 * ty) * g->ow;
      memcpy(Y, o0, sizeof(float) * (size_t)g->ow);
      if (2 * ty + 1 < g->oh)
        memcpy(Y + g->ow, o1, sizeof(float) * (size_t)g->ow);
    }
  }
}

/* dM [16][oc][tc] = A dY A^T for the chunk's tiles (dY zero outside the output). */
SD_NN_CLONES static void transform_output_grad(const sd_nn_conv_geom *g, const wino_plan *p,
                                               const float *dy, long q0, int nq, float *dM,
                                               float *rbuf) {
  const size_t oc = (size_t)g->oc, ohw = (size_t)g->oh * g->ow, tc = p->tc;
  const size_t step = p->sm;
  const int tw = p->tw, ow = g->ow, len = p->len;
  float *r0 = rbuf, *r1 = rbuf + len;
  float *ea = rbuf + 2 * (size_t)len, *eb = ea + tw, *ec = eb + tw, *ed = ec + tw;
  for (size_t o = 0; o < oc; o++) {
    for (int qi = 0; qi < nq; qi++) {
      const long q = q0 + qi;
      const long img = q / p->th;
      const int ty = (int)(q % p->th);
      const float *D = dy + ((size_t)img * oc + o) * ohw + (size_t)(2 * ty) * ow;
      memcpy(r0, D, sizeof(float) * (size_t)ow);
      if (2 * ty + 1 < g->oh)
        memcpy(r1, D + ow, sizeof(float) * (size_t)ow);
      else
        memset(r1, 0, sizeof(float) * (size_t)ow);
      for (int j = ow; j < 2 * tw; j++)
        r0[j] = r1[j] = 0.0f;
      /* the tile [[a, b], [c, d]] of every tile column */
      deinterleave(tw, r0, ea, eb);
      deinterleave(tw, r1, ec, ed);
      float *m = dM + o * tc + (size_t)qi * tw;
      /* rows of dY A^T: u = [a, a + b, a - b, -b], l = [c, c + d, c - d, -d]; then
       * A (dY A^T) = [u, u + l, u - l, -l] */
      for (int j = 0; j < 4; j++) {
        float *m0 = m + (size_t)j * step;
        const float su = j == 0 ? 0.0f : (j == 3 ? -1.0f : 1.0f); /* coefficient of b, d */
        const float sa = j == 3 ? 0.0f : 1.0f;                    /* coefficient of a, c */
        const float sb = j == 2 ? -su : su;
        a_rows(tw, sa, sb, ea, eb, ec, ed, m0, m0 + 4 * step, m0 + 8 * step, m0 + 12 * step);
      }
    }
  }
}

/* dx += B dV B^T of the chunk's tiles, scattered onto the overlapping 4x4 input patches
 * (tile tx covers patch columns 2tx .. 2tx + 3, so columns 2tx, 2tx + 1 collect tile tx's
 * columns 0, 1 and tile tx - 1's columns 2, 3). */
SD_NN_CLONES static void transform_input_grad(const sd_nn_conv_geom *g, const wino_plan *p,
                                              const float *dV, long q0, int nq, float *dx,
                                              float *rbuf, int overwrite) {
  const size_t c = (size_t)g->c, hw = (size_t)g->h * g->w, tc = p->tc;
  const size_t step = p->sv;
  const int tw = p->tw, len = p->len, h = g->h, w = g->w, pw = g->pw;
  float *acc = rbuf;                 /* [4][len] */
  float *P = rbuf + 4 * (size_t)len; /* [16][tw]: dV B^T */
  float *DD = P + 16 * (size_t)tw;   /* [16][tw]: B dV B^T */
  for (size_t ci = 0; ci < c; ci++) {
    for (int qi = 0; qi < nq; qi++) {
      const long q = q0 + qi;
      const long img = q / p->th;
      const int ty = (int)(q % p->th);
      const float *v = dV + ci * tc + (size_t)qi * tw;
      for (int r = 0; r < 4; r++) { /* row r of dV -> B v */
        const float *v0 = v + (size_t)(4 * r) * step;
        float *p0 = P + (size_t)(4 * r) * tw;
        b_streams(tw, v0, v0 + step, v0 + 2 * step, v0 + 3 * step, p0, p0 + tw, p0 + 2 * tw,
                  p0 + 3 * tw);
      }
      for (int j = 0; j < 4; j++) { /* column j of P -> B column */
        const float *a0 = P + (size_t)j * tw;
        float *d0 = DD + (size_t)j * tw;
        const size_t s4 = 4 * (size_t)tw;
        b_streams(tw, a0, a0 + s4, a0 + 2 * s4, a0 + 3 * s4, d0, d0 + s4, d0 + 2 * s4, d0 + 3 * s4);
      }
      for (int i = 0; i < 4; i++) { /* DD [i][j] = row i, column j of the patch */
        const float *c0 = DD + (size_t)(4 * i) * tw;
        overlap_row(tw, c0, c0 + tw, c0 + 2 * tw, c0 + 3 * tw, acc + (size_t)i * len);
      }
      /* overwrite: every input row's first contribution comes from the first tile row that
       * covers it (tile rows run in order, chunk after chunk): rows 0, 1 of tile row 0 and
       * rows 2, 3 of every tile row; all input pixels are covered */
      float *X = dx + ((size_t)img * c + ci) * hw;
      for (int i = 0; i < 4; i++) {
        const int iy = 2 * ty - g->ph + i;
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

void sd_nn_conv2d_winograd_forward(const sd_nn_conv_geom *g, int n, const float *x, const float *w,
                                   const float *b, float *y, float *work) {
  const wino_plan p = make_plan(g, n);
  float *U = work, *V = U + 2 * p.u, *M = V + 2 * p.v, *rbuf = M + p.m;
  const int oc = g->oc, c = g->c;
  transform_weights(g, p.su, w, U);
  const long total = (long)n * p.th;
  for (long q0 = 0; q0 < total; q0 += p.rows) {
    const int nq = (int)(total - q0 < p.rows ? total - q0 : p.rows);
    const int T = nq * p.tw; /* columns in use; rows of V and M are p.tc apart */
    transform_input(g, &p, x, q0, nq, V, rbuf);
    for (size_t xi = 0; xi < 16; xi++)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, oc, T, c, 1.0f, U + xi * p.su, c,
                  V + xi * p.sv, (int)p.tc, 0.0f, M + xi * p.sm, (int)p.tc);
    transform_output(g, &p, M, b, q0, nq, y, rbuf);
  }
}

static void winograd_backward(const sd_nn_conv_geom *g, int n, const float *x, const float *w,
                              const float *dy, float *dx, float *dw, float *db, float *work,
                              int overwrite) {
  const wino_plan p = make_plan(g, n);
  float *U = work, *dU = U + p.u, *V = dU + p.u, *dV = V + p.v, *dM = dV + p.v, *rbuf = dM + p.m;
  const int oc = g->oc, c = g->c;
  const size_t ohw = (size_t)g->oh * g->ow;
  if (db)
    for (int i = 0; i < n; i++)
      for (int o = 0; o < oc; o++) {
        const float *s = dy + ((size_t)i * oc + o) * ohw;
        double acc = 0.0;
        for (size_t k = 0; k < ohw; k++)
          acc += s[k];
        db[o] += (float)acc;
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
      for (size_t xi = 0; xi < 16; xi++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, oc, c, T, 1.0f, dM + xi * p.sm, ld,
                    V + xi * p.sv, ld, 1.0f, dU + xi * p.su, c);
    }
    if (dx) {
      for (size_t xi = 0; xi < 16; xi++)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c, T, oc, 1.0f, U + xi * p.su, c,
                    dM + xi * p.sm, ld, 0.0f, dV + xi * p.sv, ld);
      transform_input_grad(g, &p, dV, q0, nq, dx, rbuf, overwrite);
    }
  }
  if (dw)
    transform_weight_grad(g, p.su, dU, dw);
}

void sd_nn_conv2d_winograd_backward(const sd_nn_conv_geom *g, int n, const float *x, const float *w,
                                    const float *dy, float *dx, float *dw, float *db, float *work) {
  winograd_backward(g, n, x, w, dy, dx, dw, db, work, 0);
}

void sd_nn_conv2d_winograd_backward_set(const sd_nn_conv_geom *g, int n, const float *x,
                                        const float *w, const float *dy, float *dx, float *dw,
                                        float *db, float *work) {
  winograd_backward(g, n, x, w, dy, dx, dw, db, work, 1);
}
