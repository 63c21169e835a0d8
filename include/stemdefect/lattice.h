/* lattice.h - the bulk lattice of an atomic-resolution image: FFT, lattice vectors from Fourier
 * peaks, the average unit cell (motif), the re-tiled defect-free prediction with local
 * registration, and the noise-normalised deviation from it.
 *
 * Conventions: images are float (H, W) row-major; a pixel position is (x, y) = (column, row).
 * Lattice vectors a1, a2 are in pixels, reciprocal vectors b1, b2 in cycles per pixel, with
 * a_i . b_j = delta_ij. The motif is an (M, M) array over fractional cell coordinates:
 * motif[j * M + i] is the cell at (u, v) = ((i + 0.5) / M, (j + 0.5) / M), position
 * u a1 + v a2 (+ any lattice vector) from the image origin (pixel (0, 0)).
 *
 * Worked example (one image, no reference):
 *
 *   sd_lattice_params lp;  sd_lattice_params_default(&lp);
 *   sd_lattice lat;
 *   SD_CHECK(sd_lattice_estimate(img, h, w, &lp, &lat));        // Fourier peaks -> a1, a2
 *   sd_deviation_params dp; sd_deviation_params_default(&dp);
 *   sd_deviation_ws *ws;
 *   SD_CHECK(sd_deviation_ws_create(h, w, &dp, &ws));
 *   SD_CHECK(sd_lattice_deviation(ws, img, &lat, dev));          // dev (h, w), noise units
 *   // ws->predicted, ws->residual, ws->noise, ws->shift: what describe needs per region
 *   sd_deviation_ws_destroy(&ws);
 *
 * Nothing here calls MPI or touches files. Not collective. Functions are deterministic (no
 * random numbers), so results never depend on the rank that computes them.
 */
#ifndef STEMDEFECT_LATTICE_H
#define STEMDEFECT_LATTICE_H

#include <stddef.h>

#include "stemdefect/status.h"

/* ---- FFT ------------------------------------------------------------------------------------ */

/* Smallest power of two >= n (n >= 1). */
int sd_fft_next_pow2(int n);

/* In-place complex FFT of n (a power of two) interleaved (re, im) doubles: data (n, 2).
 * Forward: X_k = sum_j x_j exp(-2 pi i jk / n); inverse (inverse = 1) uses +i and divides by
 * n. SD_ERR_ARG when n is not a power of two. */
sd_status sd_fft_1d(double *data, int n, int inverse);

/* In-place 2-D complex FFT of data (ny, nx, 2), both sizes powers of two: rows, then columns.
 * scratch: 2 * ny doubles. */
sd_status sd_fft_2d(double *data, int ny, int nx, int inverse, double *scratch);

/* DFT of a real image at one continuous frequency (fx, fy) in cycles per pixel:
 * sum_{y,x} img[y][x] exp(-2 pi i (fx x + fy y)). tw: 2 * w doubles of scratch. */
void sd_dft_at(const float *img, int h, int w, double fx, double fy, double *tw, double *re,
               double *im);

/* ---- lattice vectors -------------------------------------------------------------------- */

#define SD_LATTICE_MAX_PEAKS 16

typedef struct sd_lattice_params {
  double min_period;     /* shortest lattice period searched (px) */
  double max_period;     /* longest (px); 0 = auto: min(H, W) / 2.5 */
  double peak_threshold; /* peaks weaker than this fraction of the strongest are ignored */
  int max_peaks;         /* strongest peaks kept (<= SD_LATTICE_MAX_PEAKS) */
} sd_lattice_params;

typedef struct sd_lattice {
  double a1[2], a2[2];                    /* real-space lattice vectors (x, y), px */
  double b1[2], b2[2];                    /* reciprocal vectors (fx, fy), cycles/px */
  int npeaks;                             /* Fourier peaks found (one of each +-g pair) */
  double peak_f[SD_LATTICE_MAX_PEAKS][2]; /* refined peak frequencies (fx, fy) */
  int peak_hk[SD_LATTICE_MAX_PEAKS][2];   /* their indices on (b1, b2); (0, 0) = not indexed */
  double peak_power[SD_LATTICE_MAX_PEAKS];
  double explained; /* fraction of the peak power that indexes on (b1, b2) */
} sd_lattice;

void sd_lattice_params_default(sd_lattice_params *p);

/* Estimates the lattice of img (h, w >= 8) from the peaks of its Hann-windowed power spectrum
 * (zero-padded FFT), chooses the reciprocal basis that indexes the peaks, refines every
 * indexed peak to sub-pixel precision with the continuous DFT and fits b1, b2 to all of them
 * by least squares. SD_ERR_FORMAT when no two non-collinear peaks exist (no lattice). */
sd_status sd_lattice_estimate(const float *img, int h, int w, const sd_lattice_params *p,
                              sd_lattice *out);

/* Refines a known lattice (e.g. from a bulk reference image at the same magnification) on img:
 * every indexed peak of guess is searched near its predicted frequency in img's spectrum and
 * b1, b2 are refitted. Keeps guess (copied to out) when the refit moves a vector by more than
 * max_change (relative), or fewer than two peaks refine. */
sd_status sd_lattice_refine(const float *img, int h, int w, const sd_lattice *guess,
                            double max_change, sd_lattice *out);

/* Sets a1, a2 from b1, b2 (a = b^-T). */
void sd_lattice_from_reciprocal(sd_lattice *lat);

/* ---- motif, prediction and deviation ----------------------------------------------------- */

typedef struct sd_deviation_params {
  int motif_resolution;   /* M: bins per cell side */
  double reg_radius;      /* largest local shift of the lattice (px) */
  double reg_window;      /* window (sigma, px) of the local registration: a Gaussian
                             approximated by three box sums */
  int reg_iterations;     /* Gauss-Newton steps of the registration per fold */
  int fold_iterations;    /* fold -> register rounds (>= 1) */
  int noise_window;       /* side of the window of the local MAD noise estimate (px, odd) */
  double noise_ratio_max; /* the local noise is clamped to [1/ratio, ratio] x the image's
                             global MAD, so a large defect (a twinned region) cannot normalise
                             itself away */
} sd_deviation_params;

void sd_deviation_params_default(sd_deviation_params *p);

/* Workspace for one image size: every buffer the deviation needs, allocated once.
 * After sd_lattice_deviation the fields hold, for the last image: */
typedef struct sd_deviation_ws {
  int h, w;
  sd_deviation_params p;
  float *motif;         /* (M, M) median unit cell */
  float *predicted;     /* (h, w) defect-free prediction: gain * motif(x - shift) + offset */
  float *residual;      /* (h, w) image - predicted */
  float *noise;         /* (h, w) local robust noise (1.4826 MAD of the residual) */
  float *shift;         /* (h, w, 2) local lattice displacement (dx, dy), px: distortion map */
  float *gain, *offset; /* (h, w) local intensity scale and offset of the prediction */
  double residual_rms;  /* RMS of residual / noise over the image */
  /* private scratch */
  float *grad, *prod, *tmp, *weight;
  double *line;
  float *samples;
  size_t samples_cap;
} sd_deviation_ws;

sd_status sd_deviation_ws_create(int h, int w, const sd_deviation_params *p, sd_deviation_ws **out);
/* NULL-safe; sets *ws to NULL. */
void sd_deviation_ws_destroy(sd_deviation_ws **ws);

/* Folds img onto the lattice: motif (M, M) = per-bin median of img sampled (bilinear) at every
 * lattice translate of the bin inside the image. With shift/gain/offset (each NULL or (h, w[,2])
 * as in the workspace) the sample of lattice position q is taken at q + shift(q) and mapped
 * through (value - offset) / gain. samples: scratch of *cap floats, grown as needed. */
sd_status sd_motif_fold(const float *img, int h, int w, const sd_lattice *lat, int m,
                        const float *shift, const float *gain, const float *offset, float *motif,
                        float **samples, size_t *cap);

/* Periodic bilinear value of the motif (m, m) at fractional cell coordinates (f1, f2) (bin i
 * has its centre at (i + 0.5) / m). */
float sd_motif_sample(const float *motif, int m, double f1, double f2);

/* Re-tiles the motif: out[y][x] = motif(fractional(x - shift)), bilinear and periodic.
 * shift (h, w, 2) or NULL. grad (h, w, 2) or NULL receives d out / d (x, y). */
void sd_motif_render(const float *motif, int m, const sd_lattice *lat, const float *shift, int h,
                     int w, float *out, float *grad);

/* The deviation of img from its bulk lattice: fold the motif, re-tile it, register it locally
 * (per-pixel Gaussian-windowed least squares for gain, offset and a small shift, robustly
 * weighted, shifts clamped to reg_radius), refold with the registration, and divide the
 * residual by the local noise. deviation (h, w): (image - predicted) / noise, signed. The
 * intermediate maps stay in ws (see its fields). Not collective. */
sd_status sd_lattice_deviation(sd_deviation_ws *ws, const float *img, const sd_lattice *lat,
                               float *deviation);

/* Gaussian smoothing of (h, w) with standard deviation sigma (px), separable, truncated at
 * 3 sigma. normalize = 1 divides by the kernel mass inside the image (an average near the
 * border); 0 treats outside pixels as zero (a windowed sum). tmp: h * w floats. */
void sd_gauss_blur(const float *in, int h, int w, double sigma, int normalize, float *tmp,
                   float *out);

#endif
