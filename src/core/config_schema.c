/* config_schema.c - every configuration key: type, allowed range or values, help. Defaults
 * live in config/defaults.yaml (embedded); sd_config_create() checks the two agree. */
#include "stemdefect/config.h"

#define I SD_CONFIG_TYPE_INT
#define F SD_CONFIG_TYPE_FLOAT
#define B SD_CONFIG_TYPE_BOOL
#define S SD_CONFIG_TYPE_STRING
#define E SD_CONFIG_TYPE_ENUM
#define L SD_CONFIG_TYPE_STRING_LIST

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
    {"simulate.classes", L, 0, 0, NULL, "classes as name=defect (defects: bulk, vacancy, interstitial, substitution, antisite, stacking_fault, twin, dislocation); [] = the material's default set"},
    {"simulate.dose", F, 1, 1e7, NULL, "electrons per pixel at the brightest column peak (sets the Poisson noise)"},
    {"simulate.pixel_size_min", F, 0.02, 2.0, NULL, "smallest pixel size, angstrom per pixel"},
    {"simulate.pixel_size_max", F, 0.02, 2.0, NULL, "largest pixel size, angstrom per pixel"},
    {"simulate.rotation_max", F, 0, 180, NULL, "largest lattice rotation, degrees (uniform in +-value)"},
    {"simulate.probe_sigma", F, 0.1, 3.0, NULL, "probe Gaussian sigma, angstrom"},
    {"simulate.gaussian_noise", F, 0, 1e6, NULL, "detector read noise sigma, counts"},
    {"simulate.scan_jitter", F, 0, 5, NULL, "scan-line jitter sigma, pixels"},
    {"simulate.drift", F, 0, 0.2, NULL, "largest linear drift distortion (fraction)"},
    {"simulate.background", F, 0, 1, NULL, "slowly varying background, fraction of the column peak"},
    {"simulate.multi_defect_prob", F, 0, 1, NULL, "probability that a defect image holds a second defect of another class"},
    {NULL, 0, 0, 0, NULL, NULL}};
