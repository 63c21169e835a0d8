/* features.h - defect descriptors from per-class heatmaps: connected regions and their shape,
 * probability and residual statistics, plus one per-image vector.
 *
 * For each image and each defect channel c >= 1 of its heatmap [C,H,W], the pixels whose
 * probability exceeds a threshold form regions (8-connected components, labelled in raster
 * order, so the order of rows never depends on how images are spread over ranks). Each region
 * becomes one descriptor row; an image without any region gets one row with channel 0 (its
 * region columns are 0), so every image is represented. Every row also carries the image's
 * own vector (class-mass fractions, region counts per class, texture and residual statistics),
 * so the columns are the same for all rows:
 *
 *   region columns (SD_FEAT_REGION_COLS):
 *     area (pixels), mean_prob, max_prob, centroid_y, centroid_x (pixels, image frame),
 *     box_height, box_width, perimeter (pixel edges on the boundary), eccentricity (0 = disc,
 *     -> 1 elongated, from the second central moments), orientation (major axis angle to the
 *     x axis in radians, -pi/2..pi/2, y down), solidity (area / area of the convex hull of the
 *     pixel squares), hu1..hu7 (Hu's invariant moments as sign(h) log10(1 + |h| 1e6)),
 *     res_mean, res_std, res_skew, res_kurt (excess kurtosis) of the residual against the bulk
 *     lattice inside the region, res_absmax, distortion (mean local lattice displacement |shift| of
 *     the registered bulk lattice inside the region, pixels; 0 when no displacement map is given)
 *   image columns: mass_<class> (mean probability of each channel, C columns),
 *     regions_<class> (number of regions of each defect channel, C - 1 columns), img_skew,
 *     img_kurt, img_grad (mean gradient magnitude of the normalised image), img_tail (fraction
 *     of |z| > 3), res_img_absmean, res_img_tail (fraction of |residual| > 3)
 *
 * Pure functions, not collective; the describe command shards images over ranks.
 */
#ifndef STEMDEFECT_FEATURES_H
#define STEMDEFECT_FEATURES_H

#include <stddef.h>
#include <stdint.h>

#include "stemdefect/status.h"

#define SD_FEAT_REGION_COLS 24
#define SD_FEAT_IMAGE_FIXED_COLS 6

/* Shape of one region (pure geometry, from a binary mask). */
typedef struct sd_region_shape {
  int64_t area;
  double cy, cx;             /* centroid */
  int y0, x0, y1, x1;        /* bounding box, inclusive-exclusive: rows y0..y1-1 */
  double perimeter;          /* boundary pixel edges */
  double eccentricity;
  double orientation;        /* radians */
  double solidity;
  double hu[7];              /* raw Hu moments */
} sd_region_shape;

/* Labels the 8-connected components of mask (h, w; non-zero = in) into labels (h, w):
 * 0 = outside, 1..n in raster order of each component's first pixel. stack: scratch of h*w
 * int32. Returns n. */
int sd_feat_label_components(const uint8_t *mask, int h, int w, int32_t *labels, int32_t *stack);

/* Shape of the pixels with labels[i] == id. hull: scratch of 4 * area + 8 doubles pairs
 * (2 * (4 * area + 8) doubles), or NULL to allocate. */
sd_status sd_feat_region_shape(const int32_t *labels, int h, int w, int32_t id, double *hull,
                               sd_region_shape *out);

/* Area of the convex hull of n points (xy pairs); reorders pts. */
double sd_feat_convex_hull_area(double *pts, int n);

/* Number of columns for C heatmap channels. */
int sd_feat_num_columns(int num_channels);

/* Column names for C channels with the given class names ([C]); names[k] is written into
 * out + k * name_len (name_len bytes each). */
void sd_feat_column_names(int num_channels, const char *const *class_names, char *out,
                          size_t name_len);

/* One image's inputs: heatmap [C,H,W] probabilities, the normalised image [H,W], and optional
 * residual [H,W] and displacement magnitude [H,W] maps (NULL = zeros). */
typedef struct sd_feat_image {
  int channels, height, width;
  const float *heatmap;
  const float *image;
  const float *residual;
  const float *distortion;
} sd_feat_image;

typedef struct sd_feat_opts {
  float threshold;  /* probability above which a pixel belongs to a region */
  int min_area;     /* smaller regions are dropped */
} sd_feat_opts;

/* Rows of one image: appends up to cap rows of sd_feat_num_columns(C) floats to rows, with
 * their channel (int32) and box (y0, x0, y1, x1) per row; sets *nrows. Returns SD_ERR_ARG when
 * more than cap rows would be needed (call again with a larger cap; *nrows says how many). */
sd_status sd_feat_describe_image(const sd_feat_image *in, const sd_feat_opts *opts, float *rows,
                                 int32_t *channel, int32_t *box, int cap, int *nrows);

#endif
