/* config_schema.c - every configuration key: type, allowed range or values, help. Defaults
 * live in config/defaults.yaml (embedded); sd_config_create() checks the two agree. */
#include "stemdefect/config.h"

#define I SD_CONFIG_TYPE_INT
#define F SD_CONFIG_TYPE_FLOAT
#define B SD_CONFIG_TYPE_BOOL
#define S SD_CONFIG_TYPE_STRING
#define E SD_CONFIG_TYPE_ENUM
#define L SD_CONFIG_TYPE_STRING_LIST
#define A SD_CONFIG_TYPE_FLOAT_AUTO

const sd_config_key sd_config_schema[] = {
    /* general */
    {"general.log_level", E, 0, 0, "error|warn|info|debug", "how much to log (--quiet = warn, --verbose = debug)"},
    {"general.profile", S, 0, 0, NULL, "write a JSON timing profile here at the end of the command (\"\" = none)"},

    /* import */
    {"import.input", L, 0, 0, NULL, "image files or folders to import (TIFF, JPEG, PNG)"},
    {"import.output", S, 0, 0, NULL, "output stack (HDF5)"},
    {"import.labels", E, 0, 0, "filename|folder|none", "where class labels come from: file name prefix (Class_12.tif), parent folder, or none"},
    {"import.recursive", B, 0, 0, NULL, "descend into sub-folders of input folders"},
    {"import.resize", I, 0, 65536, NULL, "resize every image to SIZE x SIZE (bilinear, area-averaged when shrinking); 0 = off"},
    {"import.crop", I, 0, 65536, NULL, "centre-crop every image to SIZE x SIZE; 0 = off"},
    {"import.normalize", E, 0, 0, "robust|none", "per-image normalisation consumers apply (robust z-score: median/MAD); never applied to the stored raw values"},

    /* simulate */
    {"simulate.material", E, 0, 0, "cdte|sto", "crystal: CdTe [110] (dumbbells) or SrTiO3 [001]"},
    {"simulate.count", I, 1, 1e9, NULL, "number of images"},
    {"simulate.size", I, 16, 4096, NULL, "image side in pixels"},
    {"simulate.seed", I, 0, 9.007199254740992e15, NULL, "random seed (results do not depend on the rank count)"},
    {"simulate.output", S, 0, 0, NULL, "output stack (HDF5)"},
    {"simulate.preview", S, 0, 0, NULL, "write a PNG montage of the first images here (\"\" = none)"},
    {"simulate.preview_count", I, 1, 400, NULL, "images in the preview montage"},
    {"simulate.classes", L, 0, 0, NULL, "classes as Name=defect[:variant] (defects: bulk, vacancy, interstitial, substitution, antisite, stacking_fault, twin, dislocation); the first must be bulk; [] = the material's default set"},
    {"simulate.pixel_size_min", A, 0.01, 5, NULL, "smallest pixel size (drawn per image) (A/px)"},
    {"simulate.pixel_size_max", A, 0.01, 5, NULL, "largest pixel size (>= pixel_size_min) (A/px)"},
    {"simulate.rotation_deg", A, -360, 360, NULL, "centre of the lattice orientation range (deg)"},
    {"simulate.rotation_max_deg", A, 0, 180, NULL, "orientation = rotation_deg +- this (deg)"},
    {"simulate.dose_min", A, 1, 10000000, NULL, "smallest dose: expected counts at the brightest column peak (counts)"},
    {"simulate.dose_max", A, 1, 10000000, NULL, "largest dose (>= dose_min; drawn log-uniformly) (counts)"},
    {"simulate.gaussian_noise", A, 0, 1, NULL, "detector noise standard deviation (x dose)"},
    {"simulate.scan_jitter", A, 0, 5, NULL, "standard deviation of the horizontal shift of each scan row (px)"},
    {"simulate.scan_jitter_corr", A, 0, 0.999, NULL, "correlation of the shifts of consecutive rows"},
    {"simulate.drift", A, 0, 0.20000000000000001, NULL, "largest shear and stretch from slow drift"},
    {"simulate.scan_smear", A, 0, 0.94999999999999996, NULL, "detector lag: zero-phase exponential smoothing of each row"},
    {"simulate.post_blur", A, 0, 3, NULL, "Gaussian smoothing after the noise (standard deviation) (px)"},
    {"simulate.probe_sigma_min", A, 0.10000000000000001, 3, NULL, "smallest probe (column image) standard deviation (A)"},
    {"simulate.probe_sigma_max", A, 0.10000000000000001, 3, NULL, "largest probe standard deviation (>= probe_sigma_min) (A)"},
    {"simulate.z_exponent", A, 0.5, 2.5, NULL, "column intensity ~ sum of Z^z_exponent over its atoms"},
    {"simulate.background", A, 0, 10, NULL, "mean background relative to the brightest column peak (x peak)"},
    {"simulate.background_variation", A, 0, 1, NULL, "amplitude of the smooth background field (x background)"},
    {"simulate.column_variation", A, 0, 0.5, NULL, "standard deviation of the static column intensity spread"},
    {"simulate.multi_defect_prob", A, 0, 1, NULL, "probability of a second defect of another class"},
    {"simulate.vacancy_occupancy_max", A, 0, 0.98999999999999999, NULL, "vacancy column occupancy is drawn in 0..this"},
    {"simulate.interstitial_occupancy_min", A, 0.01, 1, NULL, "smallest interstitial column occupancy"},
    {"simulate.interstitial_occupancy_max", A, 0.01, 1, NULL, "largest interstitial column occupancy"},
    {"simulate.substitution_contrast_min", A, 0.01, 5, NULL, "substituted column: intensity x(1+c) or /(1+c)"},
    {"simulate.substitution_contrast_max", A, 0.01, 5, NULL, "largest c (>= substitution_contrast_min)"},
    {"simulate.mask_point_radius", A, 0.10000000000000001, 5, NULL, "point-defect mask radius in probe FWHM (x FWHM)"},
    {"simulate.mask_band_halfwidth", A, 0.20000000000000001, 50, NULL, "half width of the stacking-fault / twin mask band (A)"},
    {"simulate.mask_core_radius", A, 0.20000000000000001, 50, NULL, "radius of the dislocation-core mask disc (A)"},
    {NULL, 0, 0, 0, NULL, NULL}};
