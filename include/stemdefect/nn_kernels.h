/* nn_kernels.h - the stateless compute kernels behind the layers of nn.h, on raw float32 NCHW
 * buffers with explicit shapes. The model calls these; tests and benchmarks call them directly.
 *
 * Conventions: forward kernels overwrite their output; backward kernels ADD into the input
 * gradient (dx), into parameter gradients (dw, db, dgamma, dbeta), so a tensor read by several
 * layers collects all contributions; the _set variants overwrite dx instead (the first
 * contribution, so the gradient needs no zeroing). A NULL gradient pointer skips that
 * gradient. No kernel
 * allocates: the ones needing scratch take a workspace sized by their _workspace function.
 */
#ifndef STEMDEFECT_NN_KERNELS_H
#define STEMDEFECT_NN_KERNELS_H

#include <stddef.h>

#include "stemdefect/nn.h"

/* ---- convolution (im2col + OpenBLAS sgemm) ------------------------------------------------ */

/* Output size of a convolution: (in + 2 pad - k) / stride + 1 (0 or less: invalid). */
int sd_nn_conv_out_size(int in, int k, int stride, int pad);

/* x [c, h, w] -> col [c*kh*kw, oh*ow] (row r = (ci*kh + ky)*kw + kx), rows ldcol apart. */
void sd_nn_im2col(const sd_nn_conv_geom *g, const float *x, float *col, size_t ldcol);
/* Inverse scatter: x [c, h, w] += col2im(col [c*kh*kw, oh*ow], rows ldcol apart). */
void sd_nn_col2im_add(const sd_nn_conv_geom *g, const float *col, size_t ldcol, float *x);

/* Floats of workspace needed by conv2d forward/backward and transposed conv on n images. */
size_t sd_nn_conv2d_workspace(const sd_nn_conv_geom *g, int n);
/* y [n, oc, oh, ow] = conv(x [n, c, h, w], w [oc, c, kh, kw]) + b [oc] (b may be NULL). */
void sd_nn_conv2d_forward(const sd_nn_conv_geom *g, int n, const float *x, const float *w,
                          const float *b, float *y, float *work);
/* From dy [n, oc, oh, ow]: dx [n, c, h, w] +=, dw [oc, c, kh, kw] +=, db [oc] += (each may be
 * NULL). */
void sd_nn_conv2d_backward(const sd_nn_conv_geom *g, int n, const float *x, const float *w,
                           const float *dy, float *dx, float *dw, float *db, float *work);

/* As sd_nn_conv2d_backward, but dx (when not NULL) is overwritten instead of added into. */
void sd_nn_conv2d_backward_set(const sd_nn_conv_geom *g, int n, const float *x, const float *w,
                               const float *dy, float *dx, float *dw, float *db, float *work);

/* Transposed convolution, the adjoint of the conv described by g: input x [n, oc, oh, ow],
 * weight w [oc, c, kh, kw] (PyTorch's ConvTranspose2d [in, out, kh, kw] layout), output
 * y [n, c, h, w] = conv_backward_data(x) + b [c]. */
void sd_nn_conv_transpose2d_forward(const sd_nn_conv_geom *g, int n, const float *x, const float *w,
                                    const float *b, float *y, float *work);
/* From dy [n, c, h, w]: dx [n, oc, oh, ow] +=, dw [oc, c, kh, kw] +=, db [c] +=. */
void sd_nn_conv_transpose2d_backward(const sd_nn_conv_geom *g, int n, const float *x,
                                     const float *w, const float *dy, float *dx, float *dw,
                                     float *db, float *work);

/* ---- Winograd F(2x2, 3x3) convolution ------------------------------------------------------
 * 3x3 stride-1 convolutions (padding 0..2) with 2.25x fewer GEMM flops than im2col; same
 * shapes and conventions as sd_nn_conv2d_forward/backward, which dispatch here when
 * sd_nn_conv2d_prefers_winograd(g). Called directly by tests and benchmarks. */

/* The im2col + sgemm path whatever g is (sd_nn_conv2d_forward/backward pick it or Winograd);
 * overwrite = 1 overwrites dx instead of adding into it. Workspace: sd_nn_conv2d_workspace. */
void sd_nn_conv2d_im2col_forward(const sd_nn_conv_geom *g, int n, const float *x, const float *w,
                                 const float *b, float *y, float *work);
void sd_nn_conv2d_im2col_backward(const sd_nn_conv_geom *g, int n, const float *x, const float *w,
                                  const float *dy, float *dx, float *dw, float *db, float *work,
                                  int overwrite);
/* 1 when g is a 3x3, stride-1 convolution with padding 0..2 (Winograd can compute it). */
int sd_nn_conv2d_winograd_applies(const sd_nn_conv_geom *g);
/* 1 when sd_nn_conv2d_forward/backward use Winograd (F(2x2) or F(4x4)) for g (it applies and
 * the layer has enough channels for the transforms to pay off). */
int sd_nn_conv2d_prefers_winograd(const sd_nn_conv_geom *g);
/* Floats of workspace for the Winograd kernels on n images (0 when it does not apply). */
size_t sd_nn_conv2d_winograd_workspace(const sd_nn_conv_geom *g, int n);
/* y [n, oc, oh, ow] = conv(x [n, c, h, w], w [oc, c, 3, 3]) + b [oc] (b may be NULL). */
void sd_nn_conv2d_winograd_forward(const sd_nn_conv_geom *g, int n, const float *x, const float *w,
                                   const float *b, float *y, float *work);
/* From dy [n, oc, oh, ow]: dx [n, c, h, w] +=, dw [oc, c, 3, 3] +=, db [oc] += (each may be
 * NULL); the _set variant overwrites dx. */
void sd_nn_conv2d_winograd_backward(const sd_nn_conv_geom *g, int n, const float *x, const float *w,
                                    const float *dy, float *dx, float *dw, float *db, float *work);
void sd_nn_conv2d_winograd_backward_set(const sd_nn_conv_geom *g, int n, const float *x,
                                        const float *w, const float *dy, float *dx, float *dw,
                                        float *db, float *work);

/* ---- Winograd F(4x4, 3x3) convolution ------------------------------------------------------
 * The same convolutions with 6x6 tiles (nn_winograd4.c): 4x fewer GEMM flops than im2col, but
 * transform coefficients up to 8, so float32 errors about 6x (rms) and 10-20x (worst case)
 * F(2x2)'s, a few 1e-6 relative (see nn_winograd4.c). Same shapes, conventions and
 * applicability as the F(2x2) functions above; sd_nn_conv2d_forward/backward dispatch here
 * when sd_nn_conv2d_winograd_tile(g) == 4. */
int sd_nn_conv2d_winograd4_applies(const sd_nn_conv_geom *g);
size_t sd_nn_conv2d_winograd4_workspace(const sd_nn_conv_geom *g, int n);
void sd_nn_conv2d_winograd4_forward(const sd_nn_conv_geom *g, int n, const float *x, const float *w,
                                    const float *b, float *y, float *work);
void sd_nn_conv2d_winograd4_backward(const sd_nn_conv_geom *g, int n, const float *x,
                                     const float *w, const float *dy, float *dx, float *dw,
                                     float *db, float *work);
void sd_nn_conv2d_winograd4_backward_set(const sd_nn_conv_geom *g, int n, const float *x,
                                         const float *w, const float *dy, float *dx, float *dw,
                                         float *db, float *work);
/* The algorithm sd_nn_conv2d_forward/backward use for g: 0 im2col, 2 Winograd F(2x2, 3x3),
 * 4 Winograd F(4x4, 3x3). Depends on g only (not on the image count). */
int sd_nn_conv2d_winograd_tile(const sd_nn_conv_geom *g);

/* ---- dense ---------------------------------------------------------------------------- */

/* y [n, out] = x [n, in] w^T + b; w [out, in]; b [out] or NULL. */
void sd_nn_dense_forward(int n, int in, int out, const float *x, const float *w, const float *b,
                         float *y);
/* dx [n, in] +=, dw [out, in] +=, db [out] += (each may be NULL). */
void sd_nn_dense_backward(int n, int in, int out, const float *x, const float *w, const float *dy,
                          float *dx, float *dw, float *db);

/* ---- batch normalisation ---------------------------------------------------------------- */

/* Training forward on x [n, c, hw]: per-channel sums (sum x, sum x^2, count) go through reduce
 * (may be NULL) in stats [2c + 1], then y = gamma (x - mean) invstd + beta. Saves mean, invstd
 * [c] and *count; updates running_mean/var [c] (unbiased variance, PyTorch's momentum). */
sd_status sd_nn_batchnorm_forward_train(int n, int c, int hw, const float *x, const float *gamma,
                                        const float *beta, float momentum, float eps,
                                        float *running_mean, float *running_var, float *mean,
                                        float *invstd, double *count, float *y, double *stats,
                                        sd_nn_reduce_fn reduce, void *reduce_ctx);
/* Inference forward with running statistics. */
void sd_nn_batchnorm_forward_eval(int n, int c, int hw, const float *x, const float *gamma,
                                  const float *beta, const float *running_mean,
                                  const float *running_var, float eps, float *y);
/* Training backward: local dgamma, dbeta [c] +=; the sums (sum dy, sum dy xhat) go through
 * reduce in stats [2c] before dx +=. count is the (global) count saved by forward. */
sd_status sd_nn_batchnorm_backward_train(int n, int c, int hw, const float *x, const float *dy,
                                         const float *gamma, const float *mean, const float *invstd,
                                         double count, float *dx, float *dgamma, float *dbeta,
                                         double *stats, sd_nn_reduce_fn reduce, void *reduce_ctx);
/* As sd_nn_batchnorm_backward_train, but dx is overwritten instead of added into. */
sd_status sd_nn_batchnorm_backward_train_set(int n, int c, int hw, const float *x, const float *dy,
                                             const float *gamma, const float *mean,
                                             const float *invstd, double count, float *dx,
                                             float *dgamma, float *dbeta, double *stats,
                                             sd_nn_reduce_fn reduce, void *reduce_ctx);
/* Backward of the eval-mode affine map. */
void sd_nn_batchnorm_backward_eval(int n, int c, int hw, const float *x, const float *dy,
                                   const float *gamma, const float *running_mean,
                                   const float *running_var, float eps, float *dx, float *dgamma,
                                   float *dbeta);

/* ---- elementwise ------------------------------------------------------------------------ */

/* y = x > 0 ? x : slope x over len elements (slope 0 = ReLU). */
void sd_nn_leaky_relu_forward(size_t len, float slope, const float *x, float *y);
/* dx += dy * (x > 0 ? 1 : slope). */
void sd_nn_leaky_relu_backward(size_t len, float slope, const float *x, const float *dy, float *dx);
/* dx = dy * (x > 0 ? 1 : slope) (overwrites dx). */
void sd_nn_leaky_relu_backward_set(size_t len, float slope, const float *x, const float *dy,
                                   float *dx);
/* y = x * mask. */
void sd_nn_mul_forward(size_t len, const float *x, const float *mask, float *y);
/* dx += dy * mask. */
void sd_nn_mul_backward(size_t len, const float *mask, const float *dy, float *dx);

/* ---- pooling ------------------------------------------------------------------------------ */

/* x [nc, h, w] -> y [nc, oh, ow] (nc = batch * channels). */
void sd_nn_maxpool_forward(int nc, int h, int w, int k, int stride, int pad, int oh, int ow,
                           const float *x, float *y);
/* Routes dy to the first maximum of each window (recomputed from x): dx +=. */
void sd_nn_maxpool_backward(int nc, int h, int w, int k, int stride, int pad, int oh, int ow,
                            const float *x, const float *dy, float *dx);
void sd_nn_avgpool_forward(int nc, int h, int w, int k, int stride, int pad, int oh, int ow,
                           const float *x, float *y);
void sd_nn_avgpool_backward(int nc, int h, int w, int k, int stride, int pad, int oh, int ow,
                            const float *dy, float *dx);
/* x [nc, hw] -> y [nc]. */
void sd_nn_global_avgpool_forward(int nc, int hw, const float *x, float *y);
void sd_nn_global_avgpool_backward(int nc, int hw, const float *dy, float *dx);

/* ---- resampling and joins -------------------------------------------------------------------- */

/* x [nc, h, w] -> y [nc, h*factor, w*factor]. */
void sd_nn_upsample_forward(int nc, int h, int w, int factor, sd_nn_upsample_mode mode,
                            const float *x, float *y);
/* dx [nc, h, w] += adjoint of the upsampling applied to dy. */
void sd_nn_upsample_backward(int nc, int h, int w, int factor, sd_nn_upsample_mode mode,
                             const float *dy, float *dx);
/* y [n, ca + cb, hw] = [a [n, ca, hw], b [n, cb, hw]]. */
void sd_nn_concat_forward(int n, int ca, int cb, int hw, const float *a, const float *b, float *y);
/* da +=, db += the matching slices of dy (either may be NULL). */
void sd_nn_concat_backward(int n, int ca, int cb, int hw, const float *dy, float *da, float *db);

#endif
