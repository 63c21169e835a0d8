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

    /* train */
    {"train.task", E, 0, 0, "classify", "what to train: classify (the defect classifier; the segmentation U-Net comes with the localisation stage)"},

    /* classifier: `train --task classify`, `evaluate`, `predict` */
    {"classifier.data", S, 0, 0, NULL, "image stack to train on (--data)"},
    {"classifier.output", S, 0, 0, NULL, "model file to write (--output)"},
    {"classifier.init", S, 0, 0, NULL, "start from this model (transfer learning; the head is replaced when the classes differ); \"\" = random init"},
    {"classifier.freeze", E, 0, 0, "none|backbone", "with init: train only the head (backbone) or everything (none)"},
    {"classifier.resume", B, 0, 0, NULL, "continue from the checkpoint (classifier.checkpoint) where it stopped"},
    {"classifier.checkpoint", S, 0, 0, NULL, "checkpoint path (\"\" = <output>.ckpt)"},
    {"classifier.checkpoint_every", I, 0, 100000, NULL, "write a checkpoint every this many epochs (0 = only on signals)"},
    {"classifier.epochs", I, 1, 100000, NULL, "training epochs"},
    {"classifier.batch", I, 1, 65536, NULL, "global batch size (over all ranks; a multiple of data_shards)"},
    {"classifier.data_shards", I, 0, 4096, NULL, "data shards S (0 = the rank count); the same S gives the same training at any rank count dividing S"},
    {"classifier.max_steps", I, 0, 1e12, NULL, "stop after this many optimiser steps and write a checkpoint (0 = no limit)"},
    {"classifier.optimizer", E, 0, 0, "adamw|adam|sgd", "optimiser"},
    {"classifier.lr", F, 1e-7, 10, NULL, "peak learning rate"},
    {"classifier.momentum", F, 0, 0.999, NULL, "SGD momentum"},
    {"classifier.weight_decay", F, 0, 1, NULL, "weight decay (decoupled for adamw)"},
    {"classifier.schedule", E, 0, 0, "cosine|step|constant", "learning-rate schedule"},
    {"classifier.warmup_epochs", F, 0, 1000, NULL, "linear warm-up, epochs"},
    {"classifier.clip_norm", F, 0, 1e6, NULL, "clip the global gradient norm to this (0 = off)"},
    {"classifier.label_smoothing", F, 0, 0.5, NULL, "label smoothing of the cross-entropy"},
    {"classifier.class_weights", E, 0, 0, "balanced|none", "weight classes by inverse frequency"},
    {"classifier.patience", I, 0, 100000, NULL, "early stopping after this many epochs without validation improvement, restoring the best weights (0 = off)"},
    {"classifier.width", I, 1, 1024, NULL, "channels of the first stage (doubling per stage)"},
    {"classifier.stages", I, 1, 8, NULL, "resolution stages of the residual CNN"},
    {"classifier.blocks", I, 1, 16, NULL, "residual blocks per stage"},
    {"classifier.dropout", F, 0, 0.95, NULL, "dropout before the head"},
    {"classifier.split", E, 0, 0, "stratified|grouped", "train/validation/test split: stratified by class, or grouped keeping near-copies (shifted crops of one region) in one part"},
    {"classifier.val_fraction", F, 0, 0.9, NULL, "validation fraction"},
    {"classifier.test_fraction", F, 0, 0.9, NULL, "test fraction"},
    {"classifier.seed", I, 0, 9.007199254740992e15, NULL, "seed of the split, initialisation, sample order and augmentation"},
    {"classifier.normalize", E, 0, 0, "auto|robust|none", "per-image normalisation before the model (auto = what the stack recommends)"},
    {"classifier.augment", B, 0, 0, NULL, "augment: 8 lattice symmetries, shifts, intensity jitter, noise"},
    {"classifier.max_shift", I, 0, 64, NULL, "largest augmentation shift, pixels"},
    {"classifier.gain_jitter", F, 0, 2, NULL, "contrast jitter (log-normal sigma)"},
    {"classifier.offset_jitter", F, 0, 10, NULL, "intensity offset jitter (normalised units)"},
    {"classifier.noise_sigma", F, 0, 10, NULL, "largest added Gaussian noise (normalised units)"},
    {"classifier.label_fraction", F, 0.001, 1, NULL, "use only this fraction of the training part's labels (stratified, seeded; the rest is left out: for label-efficiency studies)"},
    {"classifier.pretrain_count", I, 0, 1e9, NULL, "pretrain on this many simulated images (simulate section) before training on the data (0 = off)"},
    {"classifier.pretrain_epochs", I, 1, 100000, NULL, "pretraining epochs"},
    {"classifier.metrics", S, 0, 0, NULL, "evaluate: metrics JSON path (\"\" = print only)"},
    {"classifier.part", E, 0, 0, "test|val|train|all", "evaluate: which part of the model's split to score"},
    {"classifier.tta", E, 0, 0, "dihedral|none", "evaluate/predict: average the class probabilities over the 8 lattice symmetries of each image (dihedral) or score it as it is (none)"},
    {"classifier.predictions", S, 0, 0, NULL, "predict: output HDF5 with per-image class probabilities"},
    {"classifier.model", S, 0, 0, NULL, "evaluate/predict: the model file (--model)"},
    /* describe */
    {"describe.heatmaps", S, 0, 0, NULL, "heatmaps file (/heatmaps [N,C,H,W] per-class probabilities) to describe"},
    {"describe.data", S, 0, 0, NULL, "the image stack the heatmaps belong to"},
    {"describe.residual", S, 0, 0, NULL, "pseudo-label file whose /deviation (residual against the bulk lattice) gives the residual columns (\"\" = none: those columns are 0)"},
    {"describe.output", S, 0, 0, NULL, "output descriptors file (HDF5)"},
    {"describe.threshold", F, 0, 1, NULL, "probability above which a pixel belongs to a defect region"},
    {"describe.min_area", I, 1, 1000000, NULL, "smallest region kept, pixels"},
    {"describe.batch", I, 1, 65536, NULL, "images read per collective transfer on each rank"},

    /* report */
    {"report.run", S, 0, 0, NULL, "run directory to report on"},
    {"report.output", S, 0, 0, NULL, "the HTML report to write"},
    {"report.title", S, 0, 0, NULL, "page title"},
    {"report.examples", I, 1, 32, NULL, "example patches shown per cluster"},
    {"report.samples", I, 1, 32, NULL, "sample images shown per class"},

    /* run */
    {"run.dir", S, 0, 0, NULL, "run directory of `stemdefect run` (\"\" = runs/<config file name>)"},
    {"run.stages", L, 0, 0, NULL, "stages to run (default all, in order): data, classify, report"},
    {"run.force", B, 0, 0, NULL, "re-run the selected stages even when their outputs are up to date"},

    {NULL, 0, 0, 0, NULL, NULL}};
