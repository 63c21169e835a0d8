/* pseudolabel.h - pixel pseudo-labels from the deviation of each image from its bulk lattice
 * (lattice.h), weakly supervised by the image-level class, and the notebook baseline they are
 * compared with.
 *
 * Per image (sd_pl_image): robust z-score (median / 1.4826 MAD), lattice vectors (estimated on
 * the image, or a reference lattice refined on it), deviation = noise-normalised residual
 * against the registered re-tiled motif, local RMS deviation = sqrt(Gaussian-smoothed
 * deviation^2), threshold (robust z over the image or Otsu; never below min_deviation), binary
 * opening then closing (3x3), connected components (8-neighbour) of at least min_area pixels
 * -> the detection map. The pseudo-label mask is detection * class for a labelled non-bulk
 * image, empty for bulk and unknown images (sd_pl_mask).
 *
 * Baseline (the old notebook, sd_pl_baseline): |Gaussian blur (sigma baseline_sigma, default
 * 1 px) - box mean (baseline_box, default 7x7)| of the robust z-scored image, thresholded at its
 * baseline_percentile (default 98th) percentile.
 *
 * Nothing here calls MPI or touches files. Not collective; deterministic.
 */
#ifndef STEMDEFECT_PSEUDOLABEL_H
#define STEMDEFECT_PSEUDOLABEL_H

#include <stdint.h>

#include "stemdefect/lattice.h"
#include "stemdefect/phase.h"
#include "stemdefect/status.h"

typedef enum sd_pl_threshold {
  SD_PL_THRESHOLD_ROBUST_Z = 0, /* median + value * 1.4826 MAD of the local RMS deviation */
  SD_PL_THRESHOLD_OTSU = 1      /* Otsu's threshold of the local RMS deviation, times value */
} sd_pl_threshold;

typedef struct sd_pl_params {
  sd_lattice_params lattice;
  sd_deviation_params deviation;
  double smooth_sigma;        /* Gaussian smoothing of deviation^2 (px) */
  sd_pl_threshold threshold;  /* method */
  double threshold_value;     /* robust_z: z; otsu: multiplier of Otsu's threshold */
  double min_deviation;       /* floor of the threshold on the local RMS deviation (noise units) */
  int open_steps;             /* binary openings (3x3) */
  int close_steps;            /* binary closings (3x3) */
  int min_area;               /* smallest kept component (px) */
  double reference_tolerance; /* relative change allowed when refining a reference lattice */
  double grain_area;          /* a component larger than this fraction of the image is another grain
                                 (a twinned or shifted region): it is replaced by the band along its
                                 boundary; >= 1 = off */
  int grain_band;             /* half width of that band (3x3 dilations of the boundary) */
  double fallback_fraction;   /* weak supervision: an image of a defect class whose detection is
                                 empty gets the top fraction of its local RMS deviation
                                 (cleaned like a detection); 0 = off (sd_pl_fallback) */
  sd_phase_params phase;      /* extended defects from the lattice phase (sd_pl_phase) */
  double point_radius;        /* point-defect disc radius (lattice periods, sd_pl_points) */
  double swap_window;         /* window of the swap matched filter (lattice periods, sd_pl_swap) */
  double baseline_sigma;      /* baseline: Gaussian blur sigma (px) */
  int baseline_box;           /* baseline: box side (px, odd) */
  double baseline_percentile; /* baseline: threshold percentile (0..100) */
} sd_pl_params;

void sd_pl_params_default(sd_pl_params *p);

typedef struct sd_pl sd_pl; /* workspace for one image size */

sd_status sd_pl_create(int h, int w, const sd_pl_params *p, sd_pl **out);
/* NULL-safe; sets *pl to NULL. */
void sd_pl_destroy(sd_pl **pl);

/* The deviation workspace of the last image (its predicted, residual, noise, shift maps). */
const sd_deviation_ws *sd_pl_deviation_ws(const sd_pl *pl);

/* One image: raw (h, w) -> deviation (h, w) float (signed, noise units) and detected (h, w)
 * uint8 (1 = deviates from the bulk lattice). reference: a lattice to refine on the image
 * (e.g. from a bulk reference image), or NULL to estimate it. lat_out may be NULL. A lattice
 * that cannot be found is not an error: the deviation is then the robust z-score itself, the
 * detection empty, and *lattice_ok = 0. */
sd_status sd_pl_image(sd_pl *pl, const float *raw, const sd_lattice *reference, float *deviation,
                      uint8_t *detected, sd_lattice *lat_out, int *lattice_ok);

/* Weak supervision for an image whose class says it holds a defect but whose detection from
 * the last sd_pl_image came out empty (a defect that deviates only weakly from the lattice):
 * detected becomes the pixels in the top fallback_fraction of that image's local RMS deviation,
 * opened, closed and filtered by min_area like a detection. Nothing happens when the fraction
 * is 0, the detection is not empty, or the image had no lattice. Returns 1 when it labelled. */
int sd_pl_fallback(sd_pl *pl, uint8_t *detected);

/* Weak supervision for an image whose class is an extended defect (its shape from the class:
 * the band of a stacking fault, the band of a twin boundary, the disc of a dislocation core;
 * phase.h): detected becomes the mask of that shape found from the lattice phase of the image
 * of the last sd_pl_image, with the lattice it found (lat). *found = 0 (detected untouched) when
 * the last image had no lattice, the shape is NONE, or the phase gives no such defect. */
sd_status sd_pl_phase(sd_pl *pl, const sd_lattice *lat, sd_phase_shape shape, uint8_t *detected,
                      int *found);

/* Point defects: every 8-connected component of m (h, w, 0/1, e.g. the detection of the last
 * sd_pl_image or its fallback) becomes the disc of radius point_radius lattice periods of lat
 * centred on the component's strongest local RMS deviation, so that the pseudo-label has the
 * footprint of one column whatever the smoothing made of the blob. Nothing happens when the
 * last image had no lattice. Returns the number of discs. */
int sd_pl_points(sd_pl *pl, const sd_lattice *lat, uint8_t *m);

/* Antisite (swapped basis columns): the motif of the last sd_pl_image rotated by 180 degrees
 * about the point that best maps it onto itself (for a two-column basis the midpoint, so the
 * rotation swaps the columns) gives the template T = gain (swapped - motif) re-tiled with the
 * registration; the matched filter G * (residual T) / sqrt(G * (noise^2 T^2)) (window
 * swap_window periods) peaks where a cell's columns are swapped. m becomes the disc of
 * point_radius periods at its maximum. Weak supervision: it labels the best cell of every image
 * it is given (only images whose class says a swap is there), it does not decide whether one
 * exists. Returns 0 (m untouched) without a lattice or for a motif the rotation leaves exactly
 * unchanged, 1 when it labelled. */
int sd_pl_swap(sd_pl *pl, const sd_lattice *lat, uint8_t *m);

/* The notebook baseline on raw (h, w): detected (h, w) = 1 where |blur - box mean| exceeds
 * its percentile. */
void sd_pl_baseline(sd_pl *pl, const float *raw, uint8_t *detected);

/* Weak supervision: mask = label where detected, for a labelled non-bulk image (label >= 0,
 * label != bulk_class); all 0 otherwise. n pixels. */
void sd_pl_mask(const uint8_t *detected, size_t n, int32_t label, int bulk_class, uint8_t *mask);

/* Binary morphology on (h, w) 0/1 maps with a 3x3 square, in place; tmp h * w bytes. */
void sd_pl_erode(uint8_t *m, int h, int w, uint8_t *tmp);
void sd_pl_dilate(uint8_t *m, int h, int w, uint8_t *tmp);
/* Removes 8-connected components smaller than min_area from the 0/1 map; returns the number
 * kept. labels: h * w int32 scratch, stack: h * w int32 scratch. */
int sd_pl_components_filter(uint8_t *m, int h, int w, int min_area, int32_t *labels,
                            int32_t *stack);
/* Replaces every 8-connected component of the 0/1 map larger than max_area pixels (a grain)
 * by the band of its boundary towards undetected pixels inside the image, dilated band times
 * (3x3, both sides); smaller components are kept. Returns the number of grains. labels,
 * stack: h * w int32 scratch; tmp: h * w bytes. */
int sd_pl_grain_boundaries(uint8_t *m, int h, int w, int max_area, int band, int32_t *labels,
                           int32_t *stack, uint8_t *tmp);
/* Otsu's threshold of n values (256-bin histogram between min and max). */
double sd_pl_otsu(const float *v, size_t n);

/* Accumulates per-class pixel counts of pred against truth (n pixels, classes 0..nc-1):
 * inter[c] += |pred == c and truth == c|, uni[c] += |pred == c or truth == c|. */
void sd_pl_iou_accumulate(const uint8_t *pred, const uint8_t *truth, size_t n, int nc,
                          int64_t *inter, int64_t *uni);

#endif
