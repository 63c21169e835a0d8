/* nn_conv.c - convolution, transposed convolution and dense layers lowered onto OpenBLAS sgemm.
 *
 * Convolution of one image is W [oc, c*kh*kw] x col [c*kh*kw, oh*ow] with col built by im2col.
 * When an image has few output pixels, several images are folded into the GEMM's N dimension
 * (col [K, g*P], staged output [oc, g*P] scattered back to NCHW) so that the GEMM stays large
 * enough to run near peak. 1x1 stride-1 convolutions use the input directly as col. The
 * backward pass recomputes col instead of keeping it from forward (memory over a cheap pass).
 */
/* The default build is -O2, where GCC 12 barely vectorises; these loops are the engine's
 * non-GEMM time, so ask for the O3 vectoriser here (no -ffast-math: NaN checks stay). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif

#include <cblas.h>
#include <string.h>

#include "nn_simd.h"
#include "stemdefect/nn_kernels.h"

/* Fold images into one GEMM until it has about this many columns. */
#define SD_NN_GEMM_COLS 2048
/* A one-image convolution whose columns col [K, P] exceed SD_NN_BLOCK_ABOVE floats (no longer
 * cache-resident between im2col and the GEMM, or between the GEMM and col2im) runs in blocks of
 * output rows of about SD_NN_COL_BLOCK floats of columns, each with at least
 * SD_NN_BLOCK_MIN_COLS columns so the GEMM stays efficient. Measured on the U-Net's 96- and
 * 192-channel layers: 5-12% faster; smaller layers lose from blocking, so they do not block. */
#define SD_NN_BLOCK_ABOVE (1u << 20)
#define SD_NN_COL_BLOCK 131072
#define SD_NN_BLOCK_MIN_COLS 1024
/* 3x3 stride-1 convolutions with at least this many input and output channels run on
 * Winograd F(2x2, 3x3) (nn_winograd.c); below, the transforms cost more than the GEMM saves. */
#define SD_NN_WINO_MIN_CH 16
/* Those with at least SD_NN_WINO4_MIN_CH input and output channels and an output at least
 * SD_NN_WINO4_MIN_HW high and wide run on F(4x4, 3x3) (nn_winograd4.c) instead. Measured at 1
 * thread, 16 images (tests/nn/bench_wino: paired, process CPU time), forward / backward, F(4x4)
 * over F(2x2): 1.24-1.57x / 1.39-1.70x on the U-Net and classifier layers (16..192 channels,
 * 16x16..64x64), 0.98x / 1.09x at 8x8 and 0.91x / 0.92x at 4x4 (128 channels); on 8 channels,
 * 64x64, 1.9x / 2.1x over im2col. */
#define SD_NN_WINO4_MIN_CH 8
#define SD_NN_WINO4_MIN_HW 8

int sd_nn_conv_out_size(int in, int k, int stride, int pad) {
  if (in < 1 || k < 1 || stride < 1 || pad < 0)
    return 0;
  int span = in + 2 * pad - k;
  if (span < 0)
    return 0;
  return span / stride + 1;
}

/* For kernel offset kx: the output columns [lo, hi) whose input column ox*s - p + kx is in
 * [0, w). */
static void valid_range(int w, int ow, int s, int p, int kx, int *lo, int *hi) {
  int a = p - kx;
  int l = a <= 0 ? 0 : (a + s - 1) / s;
  int b = w - 1 + p - kx;
  int h = b < 0 ? 0 : b / s + 1;
  if (h > ow)
    h = ow;
  if (l > h)
    l = h;
  *lo = l;
  *hi = h;
}

/* im2col of the output rows [oy0, oy1) only: col [K, (oy1 - oy0)*ow], rows ldcol apart. */
SD_NN_CLONES static void im2col_rows(const sd_nn_conv_geom *g, const float *x, int oy0, int oy1,
                                     float *col, size_t ldcol) {
  const int h = g->h, w = g->w, ow = g->ow;
  const int sh = g->sh, sw = g->sw, ph = g->ph, pw = g->pw;
  for (int ci = 0; ci < g->c; ci++) {
    const float *xc = x + (size_t)ci * h * w;
    for (int ky = 0; ky < g->kh; ky++) {
      for (int kx = 0; kx < g->kw; kx++) {
        float *row = col + (size_t)((ci * g->kh + ky) * g->kw + kx) * ldcol;
        int lo, hi;
        valid_range(w, ow, sw, pw, kx, &lo, &hi);
        const int m = hi - lo;
        for (int oy = oy0; oy < oy1; oy++) {
          float *dst = row + (size_t)(oy - oy0) * ow;
          int iy = oy * sh - ph + ky;
          if (iy < 0 || iy >= h || m == 0) {
            memset(dst, 0, sizeof(float) * (size_t)ow);
            continue;
          }
          const float *src = xc + (size_t)iy * w + (lo * sw - pw + kx);
          for (int ox = 0; ox < lo; ox++)
            dst[ox] = 0.0f;
          if (sw == 1) {
            memcpy(dst + lo, src, sizeof(float) * (size_t)m);
          } else if (sw == 2) {
            float *d = dst + lo;
            for (int i = 0; i < m; i++)
              d[i] = src[2 * i];
          } else {
            float *d = dst + lo;
            for (int i = 0; i < m; i++)
              d[i] = src[(size_t)i * sw];
          }
          for (int ox = hi; ox < ow; ox++)
            dst[ox] = 0.0f;
        }
      }
    }
  }
}

void sd_nn_im2col(const sd_nn_conv_geom *g, const float *x, float *col, size_t ldcol) {
  im2col_rows(g, x, 0, g->oh, col, ldcol);
}

/* x += col2im of the output rows [oy0, oy1): col [K, (oy1 - oy0)*ow], rows ldcol apart. */
SD_NN_CLONES static void col2im_rows_add(const sd_nn_conv_geom *g, const float *col, size_t ldcol,
                                         int oy0, int oy1, float *x) {
  const int h = g->h, w = g->w, ow = g->ow;
  const int sh = g->sh, sw = g->sw, ph = g->ph, pw = g->pw;
  for (int ci = 0; ci < g->c; ci++) {
    float *xc = x + (size_t)ci * h * w;
    for (int ky = 0; ky < g->kh; ky++) {
      for (int kx = 0; kx < g->kw; kx++) {
        const float *row = col + (size_t)((ci * g->kh + ky) * g->kw + kx) * ldcol;
        int lo, hi;
        valid_range(w, ow, sw, pw, kx, &lo, &hi);
        const int m = hi - lo;
        if (m == 0)
          continue;
        for (int oy = oy0; oy < oy1; oy++) {
          int iy = oy * sh - ph + ky;
          if (iy < 0 || iy >= h)
            continue;
          const float *restrict src = row + (size_t)(oy - oy0) * ow + lo;
          float *restrict dst = xc + (size_t)iy * w + (lo * sw - pw + kx);
          if (sw == 1) {
            for (int i = 0; i < m; i++)
              dst[i] += src[i];
          } else {
            for (int i = 0; i < m; i++)
              dst[(size_t)i * sw] += src[i];
          }
        }
      }
    }
  }
}

void sd_nn_col2im_add(const sd_nn_conv_geom *g, const float *col, size_t ldcol, float *x) {
  col2im_rows_add(g, col, ldcol, 0, g->oh, x);
}

/* Output rows per block of a one-image convolution (see SD_NN_COL_BLOCK). */
static int block_rows(const sd_nn_conv_geom *g) {
  const size_t K = (size_t)g->c * g->kh * g->kw, ow = (size_t)g->ow;
  if (K * ow * (size_t)g->oh <= SD_NN_BLOCK_ABOVE)
    return g->oh;
  size_t r = SD_NN_COL_BLOCK / (K * ow);
  size_t rmin = (SD_NN_BLOCK_MIN_COLS + ow - 1) / ow;
  if (r < rmin)
    r = rmin;
  if (r < 1)
    r = 1;
  return r > (size_t)g->oh ? g->oh : (int)r;
}

static int is_pointwise(const sd_nn_conv_geom *g) {
  return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0;
}

/* Images per GEMM. */
static int chunk_images(const sd_nn_conv_geom *g, int n) {
  size_t P = (size_t)g->oh * g->ow;
  if (P >= SD_NN_GEMM_COLS || n <= 1)
    return 1;
  size_t gi = (SD_NN_GEMM_COLS + P - 1) / P;
  return gi > (size_t)n ? n : (int)gi;
}

int sd_nn_conv2d_winograd_tile(const sd_nn_conv_geom *g) {
  if (!sd_nn_conv2d_winograd_applies(g))
    return 0;
  if (g->c >= SD_NN_WINO4_MIN_CH && g->oc >= SD_NN_WINO4_MIN_CH && g->oh >= SD_NN_WINO4_MIN_HW &&
      g->ow >= SD_NN_WINO4_MIN_HW)
    return 4;
  if (g->c >= SD_NN_WINO_MIN_CH && g->oc >= SD_NN_WINO_MIN_CH)
    return 2;
  return 0;
}

int sd_nn_conv2d_prefers_winograd(const sd_nn_conv_geom *g) {
  return sd_nn_conv2d_winograd_tile(g) != 0;
}

size_t sd_nn_conv2d_workspace(const sd_nn_conv_geom *g, int n) {
  size_t P = (size_t)g->oh * g->ow;
  size_t K = (size_t)g->c * g->kh * g->kw;
  size_t im2col = (K + (size_t)g->oc) * (size_t)chunk_images(g, n) * P;
  const int tile = sd_nn_conv2d_winograd_tile(g);
  size_t wino = tile == 4   ? sd_nn_conv2d_winograd4_workspace(g, n)
                : tile == 2 ? sd_nn_conv2d_winograd_workspace(g, n)
                            : 0;
  return im2col > wino ? im2col : wino;
}

/* rows x [rows, P] of `cnt` images (image stride img) -> dst [rows, cnt*P]. */
static void gather_rows(int cnt, int rows, size_t P, const float *src, size_t img, float *dst) {
  size_t N = (size_t)cnt * P;
  for (int j = 0; j < cnt; j++)
    for (int r = 0; r < rows; r++)
      memcpy(dst + (size_t)r * N + (size_t)j * P, src + (size_t)j * img + (size_t)r * P,
             sizeof(float) * P);
}

/* The im2col of cnt images into col [K, cnt*P]. */
static void build_cols(const sd_nn_conv_geom *g, int cnt, const float *x, float *col) {
  size_t P = (size_t)g->oh * g->ow, N = (size_t)cnt * P;
  size_t in_sz = (size_t)g->c * g->h * g->w;
  if (is_pointwise(g)) {
    gather_rows(cnt, g->c, P, x, in_sz, col);
    return;
  }
  for (int j = 0; j < cnt; j++)
    sd_nn_im2col(g, x + (size_t)j * in_sz, col + (size_t)j * P, N);
}

/* dx (cnt images) += col2im(col [K, cnt*P]). */
static void scatter_cols_add(const sd_nn_conv_geom *g, int cnt, const float *col, float *dx) {
  size_t P = (size_t)g->oh * g->ow, N = (size_t)cnt * P;
  size_t in_sz = (size_t)g->c * g->h * g->w;
  for (int j = 0; j < cnt; j++) {
    float *d = dx + (size_t)j * in_sz;
    if (is_pointwise(g)) {
      for (int r = 0; r < g->c; r++) {
        const float *s = col + (size_t)r * N + (size_t)j * P;
        float *dr = d + (size_t)r * P;
        for (size_t i = 0; i < P; i++)
          dr[i] += s[i];
      }
    } else {
      sd_nn_col2im_add(g, col + (size_t)j * P, N, d);
    }
  }
}

void sd_nn_conv2d_forward(const sd_nn_conv_geom *g, int n, const float *x, const float *w,
                          const float *b, float *y, float *work) {
  const int tile = sd_nn_conv2d_winograd_tile(g);
  if (tile == 4)
    sd_nn_conv2d_winograd4_forward(g, n, x, w, b, y, work);
  else if (tile == 2)
    sd_nn_conv2d_winograd_forward(g, n, x, w, b, y, work);
  else
    sd_nn_conv2d_im2col_forward(g, n, x, w, b, y, work);
}

void sd_nn_conv2d_im2col_forward(const sd_nn_conv_geom *g, int n, const float *x, const float *w,
                                 const float *b, float *y, float *work) {
  const int oc = g->oc;
  const size_t P = (size_t)g->oh * g->ow, K = (size_t)g->c * g->kh * g->kw;
  const size_t in_sz = (size_t)g->c * g->h * g->w, out_sz = (size_t)oc * P;
  const int gi = chunk_images(g, n);
  for (int i0 = 0; i0 < n; i0 += gi) {
    const int cnt = n - i0 < gi ? n - i0 : gi;
    const size_t N = (size_t)cnt * P;
    const float *xi = x + (size_t)i0 * in_sz;
    if (cnt == 1) {
      float *Y = y + (size_t)i0 * out_sz;
      float beta = 0.0f;
      if (b) {
        for (int o = 0; o < oc; o++) {
          float *row = Y + (size_t)o * P, v = b[o];
          for (size_t p = 0; p < P; p++)
            row[p] = v;
        }
        beta = 1.0f;
      }
      if (is_pointwise(g)) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, oc, (int)P, (int)K, 1.0f, w,
                    (int)K, xi, (int)P, beta, Y, (int)P);
        continue;
      }
      const int rb = block_rows(g);
      for (int oy0 = 0; oy0 < g->oh; oy0 += rb) {
        const int oy1 = oy0 + rb < g->oh ? oy0 + rb : g->oh;
        const size_t nb = (size_t)(oy1 - oy0) * g->ow, p0 = (size_t)oy0 * g->ow;
        im2col_rows(g, xi, oy0, oy1, work, nb);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, oc, (int)nb, (int)K, 1.0f, w,
                    (int)K, work, (int)nb, beta, Y + p0, (int)P);
      }
    } else {
      float *col = work, *stage = work + K * N;
      build_cols(g, cnt, xi, col);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, oc, (int)N, (int)K, 1.0f, w, (int)K,
                  col, (int)N, 0.0f, stage, (int)N);
      for (int j = 0; j < cnt; j++) {
        float *Y = y + (size_t)(i0 + j) * out_sz;
        for (int o = 0; o < oc; o++) {
          const float *s = stage + (size_t)o * N + (size_t)j * P;
          float *d = Y + (size_t)o * P, v = b ? b[o] : 0.0f;
          for (size_t p = 0; p < P; p++)
            d[p] = s[p] + v;
        }
      }
    }
  }
}

static void row_sums_add(int rows, size_t len, const float *a, float *out) {
  for (int r = 0; r < rows; r++) {
    const float *s = a + (size_t)r * len;
    float acc = 0.0f;
    for (size_t i = 0; i < len; i++)
      acc += s[i];
    out[r] += acc;
  }
}

/* The backward; overwrite stores dx instead of adding into it (each image's dx is zeroed just
 * before its col2im, while it is about to be in cache anyway). */
static void conv2d_backward(const sd_nn_conv_geom *g, int n, const float *x, const float *w,
                            const float *dy, float *dx, float *dw, float *db, float *work,
                            int overwrite) {
  const int oc = g->oc;
  const size_t P = (size_t)g->oh * g->ow, K = (size_t)g->c * g->kh * g->kw;
  const size_t in_sz = (size_t)g->c * g->h * g->w, out_sz = (size_t)oc * P;
  const int gi = chunk_images(g, n);
  const int pointwise = is_pointwise(g);
  for (int i0 = 0; i0 < n; i0 += gi) {
    const int cnt = n - i0 < gi ? n - i0 : gi;
    const size_t N = (size_t)cnt * P;
    const float *xi = x + (size_t)i0 * in_sz;
    float *col = work, *stage = work + K * N;
    const float *DY = dy + (size_t)i0 * out_sz;
    if (cnt == 1 && !pointwise) {
      float *dxi = dx ? dx + (size_t)i0 * in_sz : NULL;
      if (dxi && overwrite)
        memset(dxi, 0, sizeof(float) * in_sz);
      if (db)
        row_sums_add(oc, P, DY, db);
      const int rb = block_rows(g);
      for (int oy0 = 0; oy0 < g->oh; oy0 += rb) {
        const int oy1 = oy0 + rb < g->oh ? oy0 + rb : g->oh;
        const size_t nb = (size_t)(oy1 - oy0) * g->ow, p0 = (size_t)oy0 * g->ow;
        if (dw) {
          im2col_rows(g, xi, oy0, oy1, col, nb);
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, oc, (int)K, (int)nb, 1.0f, DY + p0,
                      (int)P, col, (int)nb, 1.0f, dw, (int)K);
        }
        if (dxi) {
          cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)nb, oc, 1.0f, w,
                      (int)K, DY + p0, (int)P, 0.0f, col, (int)nb);
          col2im_rows_add(g, col, nb, oy0, oy1, dxi);
        }
      }
      continue;
    }
    if (cnt > 1) {
      gather_rows(cnt, oc, P, DY, out_sz, stage);
      DY = stage;
    }
    if (db)
      row_sums_add(oc, N, DY, db);
    if (dw) {
      const float *B = xi;
      if (cnt > 1 || !pointwise) {
        build_cols(g, cnt, xi, col);
        B = col;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, oc, (int)K, (int)N, 1.0f, DY, (int)N, B,
                  (int)N, 1.0f, dw, (int)K);
    }
    if (dx) {
      float *dxi = dx + (size_t)i0 * in_sz;
      if (cnt == 1 && pointwise) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)P, oc, 1.0f, w, (int)K,
                    DY, (int)P, overwrite ? 0.0f : 1.0f, dxi, (int)P);
      } else {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)N, oc, 1.0f, w, (int)K,
                    DY, (int)N, 0.0f, col, (int)N);
        if (overwrite)
          memset(dxi, 0, sizeof(float) * in_sz * (size_t)cnt);
        scatter_cols_add(g, cnt, col, dxi);
      }
    }
  }
}

void sd_nn_conv2d_im2col_backward(const sd_nn_conv_geom *g, int n, const float *x, const float *w,
                                  const float *dy, float *dx, float *dw, float *db, float *work,
                                  int overwrite) {
  conv2d_backward(g, n, x, w, dy, dx, dw, db, work, overwrite != 0);
}

void sd_nn_conv2d_backward(const sd_nn_conv_geom *g, int n, const float *x, const float *w,
                           const float *dy, float *dx, float *dw, float *db, float *work) {
  const int tile = sd_nn_conv2d_winograd_tile(g);
  if (tile == 4)
    sd_nn_conv2d_winograd4_backward(g, n, x, w, dy, dx, dw, db, work);
  else if (tile == 2)
    sd_nn_conv2d_winograd_backward(g, n, x, w, dy, dx, dw, db, work);
  else
    conv2d_backward(g, n, x, w, dy, dx, dw, db, work, 0);
}

void sd_nn_conv2d_backward_set(const sd_nn_conv_geom *g, int n, const float *x, const float *w,
                               const float *dy, float *dx, float *dw, float *db, float *work) {
  const int tile = sd_nn_conv2d_winograd_tile(g);
  if (tile == 4)
    sd_nn_conv2d_winograd4_backward_set(g, n, x, w, dy, dx, dw, db, work);
  else if (tile == 2)
    sd_nn_conv2d_winograd_backward_set(g, n, x, w, dy, dx, dw, db, work);
  else
    conv2d_backward(g, n, x, w, dy, dx, dw, db, work, 1);
}

void sd_nn_conv_transpose2d_forward(const sd_nn_conv_geom *g, int n, const float *x, const float *w,
                                    const float *b, float *y, float *work) {
  const int oc = g->oc;
  const size_t P = (size_t)g->oh * g->ow, K = (size_t)g->c * g->kh * g->kw;
  const size_t y_sz = (size_t)g->c * g->h * g->w, x_sz = (size_t)oc * P;
  const size_t HW = (size_t)g->h * g->w;
  const int gi = chunk_images(g, n);
  for (int i = 0; i < n; i++) {
    float *yi = y + (size_t)i * y_sz;
    for (int c = 0; c < g->c; c++) {
      float v = b ? b[c] : 0.0f, *row = yi + (size_t)c * HW;
      for (size_t p = 0; p < HW; p++)
        row[p] = v;
    }
  }
  for (int i0 = 0; i0 < n; i0 += gi) {
    const int cnt = n - i0 < gi ? n - i0 : gi;
    const size_t N = (size_t)cnt * P;
    float *col = work, *stage = work + K * N;
    const float *X = x + (size_t)i0 * x_sz;
    if (cnt > 1) {
      gather_rows(cnt, oc, P, X, x_sz, stage);
      X = stage;
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)N, oc, 1.0f, w, (int)K, X,
                (int)N, 0.0f, col, (int)N);
    scatter_cols_add(g, cnt, col, y + (size_t)i0 * y_sz);
  }
}

void sd_nn_conv_transpose2d_backward(const sd_nn_conv_geom *g, int n, const float *x,
                                     const float *w, const float *dy, float *dx, float *dw,
                                     float *db, float *work) {
  const int oc = g->oc;
  const size_t P = (size_t)g->oh * g->ow, K = (size_t)g->c * g->kh * g->kw;
  const size_t y_sz = (size_t)g->c * g->h * g->w, x_sz = (size_t)oc * P;
  const size_t HW = (size_t)g->h * g->w;
  const int gi = chunk_images(g, n);
  if (db)
    for (int i = 0; i < n; i++)
      row_sums_add(g->c, HW, dy + (size_t)i * y_sz, db);
  if (!dx && !dw)
    return;
  for (int i0 = 0; i0 < n; i0 += gi) {
    const int cnt = n - i0 < gi ? n - i0 : gi;
    const size_t N = (size_t)cnt * P;
    float *col = work, *stage = work + K * N;
    build_cols(g, cnt, dy + (size_t)i0 * y_sz, col);
    if (dw) {
      const float *X = x + (size_t)i0 * x_sz;
      if (cnt > 1) {
        gather_rows(cnt, oc, P, X, x_sz, stage);
        X = stage;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, oc, (int)K, (int)N, 1.0f, X, (int)N, col,
                  (int)N, 1.0f, dw, (int)K);
    }
    if (dx) {
      float *dxi = dx + (size_t)i0 * x_sz;
      if (cnt == 1) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, oc, (int)P, (int)K, 1.0f, w, (int)K,
                    col, (int)P, 1.0f, dxi, (int)P);
      } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, oc, (int)N, (int)K, 1.0f, w, (int)K,
                    col, (int)N, 0.0f, stage, (int)N);
        for (int j = 0; j < cnt; j++)
          for (int o = 0; o < oc; o++) {
            const float *s = stage + (size_t)o * N + (size_t)j * P;
            float *d = dxi + (size_t)j * x_sz + (size_t)o * P;
            for (size_t p = 0; p < P; p++)
              d[p] += s[p];
          }
      }
    }
  }
}

void sd_nn_dense_forward(int n, int in, int out, const float *x, const float *w, const float *b,
                         float *y) {
  float beta = 0.0f;
  if (b) {
    for (int i = 0; i < n; i++)
      memcpy(y + (size_t)i * out, b, sizeof(float) * (size_t)out);
    beta = 1.0f;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, w, in, beta, y,
              out);
}

void sd_nn_dense_backward(int n, int in, int out, const float *x, const float *w, const float *dy,
                          float *dx, float *dw, float *db) {
  if (db)
    for (int i = 0; i < n; i++)
      for (int o = 0; o < out; o++)
        db[o] += dy[(size_t)i * out + o];
  if (dw)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1.0f, dy, out, x, in, 1.0f, dw,
                in);
  if (dx)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1.0f, dy, out, w, in, 1.0f,
                dx, in);
}
