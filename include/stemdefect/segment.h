/* segment.h - the segmentation U-Net and what training and inference around it need:
 * the builder, multi-defect mosaics for training, per-image robust statistics, and tiled
 * inference with a smooth blending window.
 *
 * Tiled inference (sd_seg_tiler): the network is compiled once for a tile of th x tw pixels
 * (multiples of 2^depth). A frame of H x W is covered by ny x nx overlapping tiles whose
 * positions are multiples of 2^depth where possible (so max-pooling sees the same pixel
 * grid as whole-image inference) and whose overlap is at least `overlap` pixels. Each tile's
 * per-class probabilities are multiplied by a separable raised-cosine window that ramps
 * over the overlap on sides that have a neighbour tile (and stays 1 towards the frame
 * border), summed, and divided by the summed window. The frame is processed one row of
 * tiles at a time: the caller hands in the input rows of tile row k and gets back the
 * output rows that no later tile row touches, so memory is O(C * th * W) for the
 * accumulator (plus the tile batch), independent of the frame height. Frames smaller than a
 * tile are reflect-padded. Not collective; no allocation after create (and set_mc).
 *
 * Monte Carlo dropout (sd_seg_tiler_set_mc): every tile runs S stochastic passes with dropout
 * active and batch norm in eval mode (SD_NN_MODE_EVAL_DROPOUT); the tile's mean probability
 * and its per-class variance over the passes (population variance, divided by S) are each
 * blended with the same window as the deterministic probabilities. The masks of pass s of
 * tile (row k, column j) of image i are keyed by sd_seg_mc_key(i, k * nx + j, s) and the seed
 * (sd_nn_model_set_dropout_keys), so the results depend on neither the batching nor the rank
 * that processes the image.
 */
#ifndef STEMDEFECT_SEGMENT_H
#define STEMDEFECT_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "stemdefect/nn.h"
#include "stemdefect/rng.h"
#include "stemdefect/status.h"

/* Builds (does not compile) the U-Net for (cin, H, W) input (cin set when compiling: 1 = the
 * image, 2 = the image and its deviation from the bulk lattice) with H, W multiples of 2^depth:
 * encoder levels l = 0..depth-1 of two conv3x3 (width * 2^l channels) [+BN] + ReLU, each
 * followed by 2x2 max pooling; a bottleneck of two conv3x3 (width * 2^depth) [+BN] + ReLU,
 * then dropout (rate dropout; 0 = none); decoder levels
 * l = depth-1..0: 2x2 stride-2 transposed convolution to width * 2^l channels, concatenation
 * with the encoder output of level l, two conv3x3 [+BN] + ReLU; a 1x1 convolution to
 * num_classes logits (layer "head"). Output [B, num_classes, H, W]. */
sd_status sd_unet_build(sd_nn_model **m, int depth, int width, int batchnorm, float dropout,
                        int num_classes);

/* Depth of a U-Net (number of 2x2 poolings): input sides must be multiples of 2^depth. */
int sd_unet_depth(const sd_nn_model *m);

/* Composes a 2x2 mosaic (s x s, s even) into img/mask from four samples src[0..3] (each
 * s x s image and mask): quadrant q receives the (s/2 x s/2) window of src[q] centred on the
 * centroid of its non-background mask pixels (a random window when the mask is empty),
 * clamped to the image. rng decides the random windows. Pure. */
void sd_seg_mosaic(const float *const src_img[4], const uint8_t *const src_mask[4], int s,
                   sd_rng *rng, float *img, uint8_t *mask);

/* Robust statistics of a frame from a sample (every value of a strided grid): the median and
 * inv_scale = 1 / (1.4826 MAD) (falling back to the standard deviation, then 1), so that
 * (x - median) * inv_scale is exactly what sd_normalize_robust computes when the sample is the
 * whole image. v is reordered. */
void sd_seg_robust_stats(float *v, size_t n, float *median, float *inv_scale);

/* Grid stride s >= 1 so that ceil(h/s) * ceil(w/s) <= max_samples. */
int sd_seg_sample_stride(int h, int w, int64_t max_samples);

/* Tile positions along a side of length len for tile length t (t <= len: the first at 0,
 * the last at len - t, overlap >= overlap, positions rounded down to multiples of align
 * except the last; t > len: one tile at 0). Writes up to cap positions; returns the count. */
int sd_seg_tile_positions(int len, int t, int overlap, int align, int *pos, int cap);

/* One-dimensional blending weights of a tile of length t at pos[i] among n positions:
 * a raised-cosine ramp 0.5 - 0.5 cos(pi (j + 0.5) / r) over the first r = min(overlap with
 * the previous tile) pixels when there is a previous tile, and mirrored towards the next,
 * 1 elsewhere. w: t floats. */
void sd_seg_window_1d(const int *pos, int n, int i, int t, float *w);

typedef struct sd_seg_tiler {
  sd_nn_model *m;         /* compiled [batch, cin, th, tw]; not owned */
  int C;                  /* classes (output channels) */
  int cin;                /* input channels (1: image; 2: image and lattice deviation) */
  int H, W;               /* frame size */
  int th, tw;             /* tile size */
  int batch;              /* tiles per forward (= the model's compiled batch) */
  int max_images;         /* images per call (> 1 only when the frame is one tile) */
  int ny, nx;             /* tiles per column and row */
  int *py, *px;           /* [ny], [nx] tile positions */
  float *wy, *wx;         /* [ny * th], [nx * tw] blending windows */
  float *tiles;           /* [batch, cin, th, tw] tile inputs */
  int *tile_img, *tile_x; /* [batch] image and column tile of each batched tile */
  float *acc;  /* [max_images, C, th, W] weighted probability sums of the rows in flight */
  float *wacc; /* [th, W] summed weights (the same for every image) */
  /* Monte Carlo dropout (mc_samples > 0 after sd_seg_tiler_set_mc) */
  int mc_samples;    /* S stochastic passes per tile (0 = one deterministic pass) */
  uint64_t mc_seed;  /* seed of the dropout masks */
  uint64_t *mc_keys; /* [batch] mask keys of the batched tiles */
  float *mc_mean;    /* [batch, C, th, tw] running mean over the passes */
  float *mc_m2;      /* [batch, C, th, tw] running sum of squared deviations (Welford) */
  float *acc_var;    /* [max_images, C, th, W] weighted variance sums of the rows in flight */
} sd_seg_tiler;

/* Sets up tiling of H x W frames for the compiled U-Net m (input [batch,cin,th,tw], output
 * channels C); overlap in pixels, align = 2^depth. Allocates every buffer once. */
sd_status sd_seg_tiler_create(sd_seg_tiler *t, sd_nn_model *m, int H, int W, int overlap,
                              int align);
void sd_seg_tiler_destroy(sd_seg_tiler *t);
/* Switches t to Monte Carlo dropout with `samples` >= 1 passes per tile and mask seed `seed`
 * (allocates its buffers once). The model must have a dropout layer (SD_ERR_ARG otherwise). */
sd_status sd_seg_tiler_set_mc(sd_seg_tiler *t, int samples, uint64_t seed);
/* The dropout-mask key of pass `sample` of tile `tile` (k * nx + j) of stack image `image`. */
uint64_t sd_seg_mc_key(int64_t image, int tile, int sample);

/* Input rows of tile row k: [*r0, *r1) (clipped to the frame). */
void sd_seg_tiler_rows_in(const sd_seg_tiler *t, int k, int *r0, int *r1);
/* Output rows final after tile row k: [*f0, *f1). */
void sd_seg_tiler_rows_out(const sd_seg_tiler *t, int k, int *f0, int *f1);

/* Processes tile row k (called for k = 0..ny-1 in order) of nimg <= max_images frames, the
 * stack images first_image .. first_image + nimg - 1 (their index keys the MC-dropout masks).
 * rows [nimg, cin, r1-r0, W]: the normalised input rows [r0, r1) of each input channel of each
 * frame (contiguous).
 * out [nimg, C, f1-f0, W]: the blended probabilities of the final rows [f0, f1) (with MC
 * dropout their mean over the passes); var [nimg, C, f1-f0, W] (MC dropout only, may be NULL):
 * the blended per-class variance over the passes. */
sd_status sd_seg_tiler_row(sd_seg_tiler *t, const float *rows, int nimg, int64_t first_image, int k,
                           float *out, float *var);

/* Whole frames in memory: img [nimg, cin, H, W] normalised -> out (and with MC dropout var)
 * [nimg, C, H, W], nimg <= max_images; images first_image.. as in sd_seg_tiler_row. */
sd_status sd_seg_tiler_frames(sd_seg_tiler *t, const float *img, int nimg, int64_t first_image,
                              float *out, float *var);

#endif
