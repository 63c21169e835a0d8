/* sim.h - the HAADF-STEM image simulator: labelled images with pixel ground truth.
 *
 * The simulator is the project's embedded default dataset. It renders incoherent HAADF
 * (Z-contrast) images of a crystal seen down a zone axis: every projected atomic column is a
 * probe-blurred 2-D Gaussian whose peak is proportional to sum(Z^n * occupancy) over the
 * atoms of the column (n = z_exponent: 1.7 for cdte; 1.0 for sto, where it fits the Ti-O to
 * Sr contrast of the real images, 1.7 making Ti-O too dim), on a slowly varying background, with
 * slow drift (linear shear and stretch), scan-line jitter, Poisson shot noise, Gaussian
 * detector noise, then optional detector lag along the scan rows and a light smoothing
 * (both linear, so a noise-free image is the expectation of a noisy one). Pixel size,
 * orientation, probe size, dose and the distortions vary per image within the ranges of
 * sd_sim_params. Images are raw counts (float, not normalised).
 *
 * Defects (sd_sim_defect) are built into the column list before rendering, and each paints
 * its class index into a uint8 mask: a disc of about one probe FWHM around every affected or
 * added column (point defects), a band along the fault or twin plane, a disc around a
 * dislocation core. With probability multi_defect_prob a second defect of another class is
 * added (where masks overlap, the second wins). The image label is the primary class.
 *
 * Materials:
 *   cdte  CdTe zincblende (a = 6.48 A) along [110]: Cd-Te dumbbells, 1.62 A apart along
 *         [001]; Z 48 and 52.
 *   sto   SrTiO3 perovskite (a = 3.905 A) along [001]: Sr columns at the corners, Ti-O at the
 *         centre, O at the edge centres; Z 38, 22, 8.
 *
 * Determinism: image `index` depends only on (params, seed, index): it draws from
 * sd_rng_init(seed, index, SD_RNG_STREAM_SIM), so any rank can render any index.
 *
 * Worked example:
 *
 *   sd_sim_params p;
 *   SD_CHECK(sd_sim_params_default(&p, SD_SIM_MATERIAL_CDTE, 64));
 *   SD_CHECK(sd_sim_params_set(&p, "dose_max", "800"));        // config key simulate.dose_max
 *   SD_CHECK(sd_sim_parse_classes(&p, "Bulk=bulk,Vacancy_CdTe=vacancy,interstitial=interstitial"));
 *   SD_CHECK(sd_sim_params_validate(&p));
 *   float img[64 * 64]; uint8_t mask[64 * 64]; int32_t label;
 *   for (int64_t i = first; i < last; i++)                     // this rank's share
 *     SD_CHECK(sd_sim_render(&p, seed, i, img, mask, &label));
 *
 * Nothing here calls MPI or touches files, except sd_sim_preview (one PNG). Not collective.
 */
#ifndef STEMDEFECT_SIM_H
#define STEMDEFECT_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "stemdefect/status.h"

#define SD_SIM_MAX_CLASSES 16
#define SD_SIM_NAME_MAX 32 /* class name length including the terminating NUL */

typedef enum sd_sim_material { SD_SIM_MATERIAL_CDTE = 0, SD_SIM_MATERIAL_STO = 1 } sd_sim_material;

typedef enum sd_sim_defect {
  SD_SIM_DEFECT_BULK = 0,           /* "bulk": no defect (class 0, empty mask) */
  SD_SIM_DEFECT_VACANCY = 1,        /* "vacancy": a column at occupancy 0..vacancy_occupancy_max;
                                       variant 1 does so to every bright column of one lattice
                                       site (a Cd-Te divacancy, or Sr + Ti-O) */
  SD_SIM_DEFECT_INTERSTITIAL = 2,   /* "interstitial": extra partial column in an open channel */
  SD_SIM_DEFECT_SUBSTITUTION = 3,   /* "substitution": one column heavier (x 1+c) or lighter
                                       (x 1/(1+c)), c in substitution_contrast_min..max, each
                                       with probability 1/2; variant 1 heavier, 2 lighter only */
  SD_SIM_DEFECT_ANTISITE = 4,       /* "antisite": swap the species of the two bright columns of
                                       one site (Cd<->Te in a dumbbell, Sr<->Ti-O) */
  SD_SIM_DEFECT_STACKING_FAULT = 5, /* "stacking_fault": columns beyond a lattice plane shifted
                                       parallel to it (CdTe: intrinsic fault on {111}, 1/3 of the
                                       in-plane period; STO: a/2 along {100}); variant v >= 1
                                       picks plane family v, 0 a random one */
  SD_SIM_DEFECT_TWIN = 6,           /* "twin": lattice mirrored across a plane (CdTe: {111};
                                       STO: {210}, the Sigma-5 boundary); variant as above */
  SD_SIM_DEFECT_DISLOCATION = 7,    /* "dislocation": edge dislocation (extra half plane,
                                       isotropic-elastic displacement field, nu = 0.3); variant
                                       picks the Burgers vector (0 random): cdte 1 = Lomer
                                       a/2[1-10] (misfit), 2, 3 = edge parts of the 60-degree
                                       a/2<011>; sto 1, 2 = a[100], a[010] */
  SD_SIM_DEFECT_COUNT = 8
} sd_sim_defect;

/* One class: its name (as in a real dataset) and the defect that produces it. */
typedef struct sd_sim_class {
  char name[SD_SIM_NAME_MAX];
  sd_sim_defect defect;
  int variant; /* 0 = the default behaviour; other values: see sd_sim_defect */
} sd_sim_class;

/* Parameters of one simulated dataset. Get defaults from sd_sim_params_default, change fields
 * (directly or with sd_sim_params_set by config key name), then sd_sim_params_validate.
 * Ranges "min..max" are sampled uniformly per image (dose log-uniformly). Lengths in
 * Angstrom unless marked px. Allowed ranges: see sd_sim_param_info (and the table in sim.c). */
typedef struct sd_sim_params {
  sd_sim_material material;
  int size;                    /* image side, px */
  double pixel_size_min;       /* A/px */
  double pixel_size_max;       /* A/px */
  double rotation_deg;         /* centre of the orientation range: angle from the image x axis
                                  to [1-10] (cdte) or [100] (sto), degrees, clockwise on
                                  screen (rows run downwards) */
  double rotation_max_deg;     /* orientation = rotation_deg +- rotation_max_deg */
  double dose_min;             /* expected counts at the brightest bulk column peak */
  double dose_max;
  double gaussian_noise;       /* detector noise standard deviation, as a fraction of the dose */
  double scan_jitter;          /* standard deviation of the per-row horizontal shift, px */
  double scan_jitter_corr;     /* correlation of the shifts of consecutive rows (AR(1)) */
  double drift;                /* maximum |shear| and |stretch| from slow drift (fraction) */
  double scan_smear;           /* detector lag along the fast scan: zero-phase exponential
                                  smoothing of each row with this coefficient (0 = none) */
  double post_blur;            /* Gaussian smoothing after the noise (resampling or filtering
                                  by the acquisition software), standard deviation px */
  double probe_sigma_min;      /* Gaussian probe (column image) standard deviation, A */
  double probe_sigma_max;
  double z_exponent;           /* column intensity ~ sum Z^z_exponent (1.7 = Z-contrast rule) */
  double background;           /* mean background, as a fraction of the brightest column peak */
  double background_variation; /* amplitude of the smooth (quadratic) background variation,
                                  as a fraction of the background */
  double column_variation;     /* standard deviation of the static column-to-column intensity
                                  spread (fraction) */
  double multi_defect_prob;    /* probability that a defect image gets a second defect */
  double vacancy_occupancy_max;      /* vacancy occupancy in 0..this */
  double interstitial_occupancy_min; /* interstitial column occupancy range */
  double interstitial_occupancy_max;
  double substitution_contrast_min;  /* substituted column intensity x(1+c) or /(1+c) */
  double substitution_contrast_max;
  double mask_point_radius;    /* point-defect mask radius, in probe FWHM (2.355 sigma) */
  double mask_band_halfwidth;  /* half width of the stacking-fault / twin band, A */
  double mask_core_radius;     /* radius of the dislocation-core disc, A */
  int num_classes;             /* 1..SD_SIM_MAX_CLASSES; class 0 is bulk */
  sd_sim_class classes[SD_SIM_MAX_CLASSES];
} sd_sim_params;

/* Flags for sd_sim_render_ex (OR them). They never change the random draws, so the same
 * (seed, index) with and without a flag shows the same geometry. */
enum sd_sim_render_flags {
  SD_SIM_RENDER_NO_DEFECTS = 1,    /* render the defect-free crystal (mask all 0) */
  SD_SIM_RENDER_NOISE_FREE = 2,    /* return the expected counts (no Poisson, no detector noise) */
  SD_SIM_RENDER_NO_DISTORTION = 4, /* no drift and no scan jitter */
  SD_SIM_RENDER_FLAT_BACKGROUND = 8 /* background without its smooth variation */
};

/* What sd_sim_render_ex drew for one image (provenance and tests). */
typedef struct sd_sim_info {
  double pixel_size;   /* A/px */
  double rotation_deg;
  double probe_sigma;  /* A */
  double dose;
  double shear, stretch; /* drift */
  int32_t label;
  int num_defects;     /* 0..2 */
  struct {
    sd_sim_defect defect;
    int32_t class_index;
    int variant;       /* the variant used (never 0 for plane/Burgers-vector choices) */
    double x, y;       /* px: the affected column, a point of the plane, or the core */
  } defects[2];
} sd_sim_info;

/* Fills p with the defaults for material m at image side `size` (px), including the default
 * classes: cdte bulk, vacancy, interstitial, antisite, stacking_fault, twin, dislocation;
 * sto bulk, vacancy, interstitial, substitution, dislocation. */
sd_status sd_sim_params_default(sd_sim_params *p, sd_sim_material m, int size);

/* Checks every field; the message names the field (as simulate.<field>), its value and the
 * allowed range. Also bounds the field of view size * pixel_size_max to 1500 A. */
sd_status sd_sim_params_validate(const sd_sim_params *p);

/* Sets one field from text by its key (the config key without "simulate."): any numeric field
 * of sd_sim_params by its name, or "classes" (sd_sim_parse_classes syntax). The value "auto"
 * restores the material default of that field. "material" and "size" are set by
 * sd_sim_params_default, not here. Range checks happen here and in validate. */
sd_status sd_sim_params_set(sd_sim_params *p, const char *key, const char *value);

/* The settable numeric fields, for help texts and config docs: returns the number of fields;
 * with i in range, fills the name, allowed range and a one-line description. */
typedef struct sd_sim_param_desc {
  const char *name;
  double min, max; /* allowed range (inclusive) */
  const char *unit;
  const char *help;
} sd_sim_param_desc;
int sd_sim_param_count(void);
sd_status sd_sim_param_info(int i, sd_sim_param_desc *out);
/* Current value of a numeric field by name (for printing the resolved configuration). */
sd_status sd_sim_params_get(const sd_sim_params *p, const char *key, double *value);

/* "cdte" / "sto" (case-insensitive; also "CdTe", "SrTiO3"). */
sd_status sd_sim_parse_material(const char *s, sd_sim_material *m);
const char *sd_sim_material_name(sd_sim_material m);
/* "bulk", "vacancy", ... as listed in sd_sim_defect. */
sd_status sd_sim_parse_defect(const char *s, sd_sim_defect *d);
const char *sd_sim_defect_name(sd_sim_defect d);

/* Replaces the class list from "Name=defect[:variant],..." (whitespace around items ignored; an
 * item that is just a defect name uses it as the class name). The first class must be bulk,
 * the others must not be; names are unique, 1..31 characters of [A-Za-z0-9_.+-].
 * Example matching the real CdTe set:
 *   "Bulk=bulk,LC=dislocation:1,SF1=stacking_fault:2,SF2=stacking_fault:1,Twin_Bound=twin,"
 *   "Vacancy_CdTe=vacancy,interstitial=interstitial"
 * and the real STO set: "Bulk=bulk,Extra=interstitial,IExtra=substitution,Mis=vacancy". */
sd_status sd_sim_parse_classes(sd_sim_params *p, const char *spec);
/* Renames the current classes in order (n must equal p->num_classes). */
sd_status sd_sim_set_class_names(sd_sim_params *p, const char *const *names, int n);
/* Writes the class list in sd_sim_parse_classes syntax (for provenance). */
sd_status sd_sim_format_classes(const sd_sim_params *p, char *buf, size_t cap);

/* Class of image `index` (>= 0): each block of num_classes consecutive indices holds every
 * class once, in an order seeded by (seed, block), so any prefix or contiguous range has equal
 * counts +-1 per class. Returns -1 for a negative index. */
int sd_sim_label_for_index(const sd_sim_params *p, uint64_t seed, int64_t index);

/* Renders image `index`: image (size, size) raw counts; mask (size, size) class index per pixel
 * (0 = background) or NULL; label = class of the primary defect (0 = bulk). p must be valid
 * (checked cheaply; call sd_sim_params_validate once beforehand for full messages). */
sd_status sd_sim_render(const sd_sim_params *p, uint64_t seed, int64_t index, float *image,
                        uint8_t *mask, int32_t *label);
/* As sd_sim_render with sd_sim_render_flags; info may be NULL. */
sd_status sd_sim_render_ex(const sd_sim_params *p, uint64_t seed, int64_t index, unsigned flags,
                           float *image, uint8_t *mask, int32_t *label, sd_sim_info *info);

/* Montage of images 0..count-1, `columns` per row, each scaled to 8 bit by its own 1st and 99th
 * percentile, 2-px black gaps. *pixels is allocated here ((*h, *w) grey; free() it). */
sd_status sd_sim_montage(const sd_sim_params *p, uint64_t seed, int count, int columns,
                         uint8_t **pixels, int *w, int *h);
/* sd_sim_montage written to png_path (via sd_png_write_gray8). */
sd_status sd_sim_preview(const sd_sim_params *p, uint64_t seed, int count, int columns,
                         const char *png_path);

#endif
