/* cmd_pseudolabel.c - `stemdefect pseudolabel`: per-pixel pseudo-labels from the deviation of
 * every image from its bulk lattice (src/label), weakly supervised by the image class.
 *
 * Ranks read contiguous shards of the stack (parallel HDF5), process every image on its own
 * (deterministic, so the file does not depend on the rank count) and write their rows of
 * pseudo.h5 collectively, in batches, into a temporary file renamed into place when complete.
 * With --evaluate FILE (and /masks in the stack) the per-class IoU of the pseudo-labels and of
 * the notebook baseline against the true masks go to a JSON file. */
#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "stemdefect/h5util.h"
#include "stemdefect/image.h"
#include "stemdefect/imgread.h"
#include "stemdefect/log.h"
#include "stemdefect/par.h"
#include "stemdefect/png.h"
#include "stemdefect/profile.h"
#include "stemdefect/pseudolabel.h"

#define PL_BATCH 128
#define PL_FORMAT "stemdefect-pseudolabels"

static const sd_cli_option pseudolabel_options[] = {
    {"--data", "pseudolabel.data", "FILE", NULL, 0},
    {"--output", "pseudolabel.output", "FILE", NULL, 0},
    {"--reference", "pseudolabel.reference", "IMAGE", NULL, 0},
    {"--evaluate", "pseudolabel.evaluate", "JSON", NULL, 0},
    {"--preview", "pseudolabel.preview", "PNG", NULL, 0},
    {"--preview-count", "pseudolabel.preview_count", "K", NULL, 0},
    {"--bulk-class", "pseudolabel.bulk_class", "NAME", NULL, 0},
    {"--threshold", "pseudolabel.threshold", "METHOD", NULL, 0},
    {NULL, NULL, NULL, NULL, 0}};

/* ---- parameters ------------------------------------------------------------------------- */

static void params_from_config(const sd_config *cfg, sd_pl_params *p) {
  sd_pl_params_default(p);
  p->lattice.min_period = sd_config_float(cfg, "pseudolabel.min_period");
  p->lattice.max_period = sd_config_float(cfg, "pseudolabel.max_period");
  p->lattice.peak_threshold = sd_config_float(cfg, "pseudolabel.peak_threshold");
  p->deviation.motif_resolution = (int)sd_config_int(cfg, "pseudolabel.motif_resolution");
  p->deviation.reg_radius = sd_config_float(cfg, "pseudolabel.registration_radius");
  p->deviation.reg_window = sd_config_float(cfg, "pseudolabel.registration_window");
  p->deviation.reg_iterations = (int)sd_config_int(cfg, "pseudolabel.registration_iterations");
  p->deviation.fold_iterations = (int)sd_config_int(cfg, "pseudolabel.fold_iterations");
  p->deviation.noise_window = (int)sd_config_int(cfg, "pseudolabel.noise_window") | 1;
  p->deviation.noise_ratio_max = sd_config_float(cfg, "pseudolabel.noise_ratio_max");
  p->smooth_sigma = sd_config_float(cfg, "pseudolabel.smooth_sigma");
  p->threshold = strcmp(sd_config_string(cfg, "pseudolabel.threshold"), "otsu")
                     ? SD_PL_THRESHOLD_ROBUST_Z
                     : SD_PL_THRESHOLD_OTSU;
  p->threshold_value = sd_config_float(cfg, "pseudolabel.threshold_value");
  p->min_deviation = sd_config_float(cfg, "pseudolabel.min_deviation");
  p->open_steps = (int)sd_config_int(cfg, "pseudolabel.open_steps");
  p->close_steps = (int)sd_config_int(cfg, "pseudolabel.close_steps");
  p->min_area = (int)sd_config_int(cfg, "pseudolabel.min_area");
  p->reference_tolerance = sd_config_float(cfg, "pseudolabel.reference_tolerance");
  p->grain_area = sd_config_float(cfg, "pseudolabel.grain_area");
  p->grain_band = (int)sd_config_int(cfg, "pseudolabel.grain_band");
  p->fallback_fraction = sd_config_float(cfg, "pseudolabel.fallback_fraction");
  p->phase.sigma = sd_config_float(cfg, "pseudolabel.phase_sigma");
  p->phase.core_sigma = sd_config_float(cfg, "pseudolabel.core_sigma");
  p->phase.core_loop = sd_config_float(cfg, "pseudolabel.core_loop");
  p->phase.band_halfwidth = sd_config_float(cfg, "pseudolabel.band_halfwidth");
  p->phase.boundary_shift = sd_config_float(cfg, "pseudolabel.boundary_shift");
  p->phase.core_radius = sd_config_float(cfg, "pseudolabel.core_radius");
  p->phase.fringes = (int)sd_config_int(cfg, "pseudolabel.phase_fringes");
  p->point_radius = sd_config_float(cfg, "pseudolabel.point_radius");
  p->swap_window = sd_config_float(cfg, "pseudolabel.swap_window");
  p->baseline_sigma = sd_config_float(cfg, "pseudolabel.baseline_sigma");
  p->baseline_box = (int)sd_config_int(cfg, "pseudolabel.baseline_box") | 1;
  p->baseline_percentile = sd_config_float(cfg, "pseudolabel.baseline_percentile");
}

/* The bulk class: the configured name, else "auto" = the class named bulk (any case), else 0. */
static sd_status bulk_class_resolve(const sd_config *cfg, const sd_stack_info *in, const char *path,
                                    int *out) {
  const char *want = sd_config_string(cfg, "pseudolabel.bulk_class");
  if (!strcmp(want, "auto")) {
    *out = 0;
    for (int c = 0; c < in->num_classes; c++)
      if (!strcasecmp(in->class_names[c], "bulk")) {
        *out = c;
        break;
      }
    return SD_OK;
  }
  for (int c = 0; c < in->num_classes; c++)
    if (!strcmp(in->class_names[c], want)) {
      *out = c;
      return SD_OK;
    }
  char names[1024] = "";
  for (int c = 0; c < in->num_classes; c++) {
    size_t l = strlen(names);
    snprintf(names + l, sizeof names - l, "%s%s", c ? ", " : "", in->class_names[c]);
  }
  return SD_ERROR(
      SD_ERR_CONFIG,
      "pseudolabel.bulk_class = '%s' (from %s) is not a class of stack '%s' (classes: %s)", want,
      sd_config_origin(cfg, "pseudolabel.bulk_class"), path, names);
}

/* 1 when name matches one of the comma-separated shell patterns of list (case-insensitive) */
static int name_in_list(const char *name, const char *list) {
  char lname[256], pat[256];
  size_t k = 0;
  for (; name[k] && k + 1 < sizeof lname; k++)
    lname[k] = (char)tolower((unsigned char)name[k]);
  lname[k] = '\0';
  const char *q = list;
  while (*q) {
    while (*q == ',' || *q == ' ')
      q++;
    size_t l = 0;
    while (q[l] && q[l] != ',')
      l++;
    size_t e = l;
    while (e > 0 && q[e - 1] == ' ')
      e--;
    if (e > 0 && e < sizeof pat) {
      for (size_t i = 0; i < e; i++)
        pat[i] = (char)tolower((unsigned char)q[i]);
      pat[e] = '\0';
      if (fnmatch(pat, lname, 0) == 0)
        return 1;
    }
    q += l;
  }
  return 0;
}

/* The pseudo-label shape of a class: the detection as it is, an extended-defect shape from the
 * lattice phase (the values of sd_phase_shape), or point-defect discs. */
typedef enum pl_shape {
  PL_DEVIATION = SD_PHASE_SHAPE_NONE,
  PL_FAULT = SD_PHASE_SHAPE_FAULT,
  PL_BOUNDARY = SD_PHASE_SHAPE_BOUNDARY,
  PL_CORE = SD_PHASE_SHAPE_CORE,
  PL_POINT = 16,
  PL_SWAP = 17
} pl_shape;

/* The shape of every class from pseudolabel.{fault,boundary,core,point}_classes; a class in two
 * lists is a configuration error. The bulk class has none. */
static sd_status class_shapes(const sd_config *cfg, const sd_stack_info *in, int bulk,
                              pl_shape *shape) {
  static const char *const keys[5] = {"pseudolabel.fault_classes", "pseudolabel.boundary_classes",
                                      "pseudolabel.core_classes", "pseudolabel.point_classes",
                                      "pseudolabel.swap_classes"};
  static const pl_shape kinds[5] = {PL_FAULT, PL_BOUNDARY, PL_CORE, PL_POINT, PL_SWAP};
  for (int c = 0; c < in->num_classes; c++) {
    shape[c] = PL_DEVIATION;
    int from = -1;
    for (int k = 0; k < 5; k++) {
      if (c == bulk || !name_in_list(in->class_names[c], sd_config_string(cfg, keys[k])))
        continue;
      if (from >= 0)
        return SD_ERROR(SD_ERR_CONFIG,
                        "class '%s' matches both %s = '%s' and %s = '%s': give each class one "
                        "shape",
                        in->class_names[c], keys[from], sd_config_string(cfg, keys[from]), keys[k],
                        sd_config_string(cfg, keys[k]));
      from = k;
      shape[c] = kinds[k];
    }
  }
  return SD_OK;
}

static const char *shape_name(pl_shape s) {
  return s == PL_FAULT      ? "fault band (phase step)"
         : s == PL_BOUNDARY ? "boundary band (edge of the coherent matrix)"
         : s == PL_CORE     ? "core disc (phase winding)"
         : s == PL_POINT    ? "point discs (deviation peaks)"
         : s == PL_SWAP     ? "swap disc (matched filter of swapped basis columns)"
                            : "deviation";
}

/* One image: deviation and detection (class-independent), then the pseudo-label mask of its
 * class: the extended-defect shape from the lattice phase where the class has one and it is
 * found, else the detection (with the empty-detection fallback), made into discs for a point
 * class. *how: 0 deviation, 1 phase shape, 2 fallback. */
static sd_status label_one(sd_pl *pl, size_t npx, const float *img, const sd_lattice *ref,
                           int32_t lab, int bulk, int nc, const pl_shape *shapes, float *dev,
                           uint8_t *det, uint8_t *shp, uint8_t *msk, sd_lattice *lat, int *ok,
                           int *how) {
  *how = 0;
  SD_CHECK(sd_pl_image(pl, img, ref, dev, det, lat, ok));
  if (lab < 0 || lab >= nc || lab == bulk) {
    memset(msk, 0, npx); /* bulk and unknown images: empty masks */
    return SD_OK;
  }
  int found = 0;
  if (*ok && shapes[lab] == PL_SWAP)
    found = sd_pl_swap(pl, lat, shp);
  else if (*ok && shapes[lab] != PL_DEVIATION && shapes[lab] != PL_POINT)
    SD_CHECK(sd_pl_phase(pl, lat, (sd_phase_shape)shapes[lab], shp, &found));
  if (found) {
    *how = 1;
    sd_pl_mask(shp, npx, lab, bulk, msk);
    return SD_OK;
  }
  memcpy(shp, det, npx);
  if (sd_pl_fallback(pl, shp))
    *how = 2;
  if (*ok && (shapes[lab] == PL_POINT || shapes[lab] == PL_SWAP))
    sd_pl_points(pl, lat, shp);
  sd_pl_mask(shp, npx, lab, bulk, msk);
  return SD_OK;
}

/* Every rank reads the reference image and estimates its lattice; agreed over ranks. */
static sd_status reference_lattice(MPI_Comm comm, const char *path, const sd_pl_params *p,
                                   sd_lattice *lat) {
  sd_image *pages = NULL;
  int np = 0;
  sd_status st = sd_image_file_read(path, &pages, &np);
  if (st != SD_OK) {
    char msg[2048];
    snprintf(msg, sizeof msg, "cannot use reference image (pseudolabel.reference): %s",
             sd_error_message());
    sd_error_set_message(st, msg);
  } else {
    int h = pages[0].height, w = pages[0].width;
    float *norm = sd_malloc((size_t)h * w, sizeof *norm, "reference image");
    if (!norm)
      st = SD_ERR_NOMEM;
    else {
      memcpy(norm, pages[0].pixels, (size_t)h * w * sizeof *norm);
      st = sd_normalize_robust(norm, (size_t)h * w, NULL);
      if (st == SD_OK)
        st = sd_lattice_estimate(norm, h, w, &p->lattice, lat);
      if (st != SD_OK) {
        char msg[2048];
        snprintf(msg, sizeof msg, "reference image '%s' (%dx%d): %s", path, w, h,
                 sd_error_message());
        sd_error_set_message(st, msg);
      }
      free(norm);
    }
  }
  sd_images_free(pages, np);
  return sd_par_agree(comm, st);
}

/* ---- output file ------------------------------------------------------------------------ */

typedef struct pl_out {
  MPI_Comm comm;
  int rank;
  sd_h5_output out; /* the file under its temporary name, its collective dxpl */
  hid_t masks, dev, det, labels, lattice, frac;
  int64_t n;
  int h, w;
} pl_out;

static sd_status dset_create(pl_out *o, const char *name, hid_t type, int nd, const hsize_t *dims,
                             int chunked, hid_t *out) {
  sd_status st = SD_OK;
  hid_t space = H5Screate_simple(nd, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
  herr_t rc = (space < 0 || dcpl < 0) ? -1 : H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
  if (rc >= 0 && chunked && o->n > 0) {
    hsize_t chunk[3] = {1, dims[1], nd > 2 ? dims[2] : 1};
    rc = H5Pset_chunk(dcpl, nd, chunk);
  }
  if (rc >= 0)
    rc = H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
  if (rc >= 0)
    *out = H5Dcreate2(o->out.file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  if (rc < 0 || *out < 0)
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot create dataset %s in '%s'", name, o->out.tmp_path);
  sd_h5_close(&dcpl);
  sd_h5_close(&space);
  return st;
}

static sd_status out_contents(pl_out *o, const sd_stack_info *in, int bulk, int64_t unknown,
                              const char *method, const sd_app *app) {
  hsize_t d3[3] = {(hsize_t)o->n, (hsize_t)o->h, (hsize_t)o->w}, d2[2] = {(hsize_t)o->n, 4};
  SD_CHECK(dset_create(o, "/masks", H5T_STD_U8LE, 3, d3, 1, &o->masks));
  SD_CHECK(sd_h5_attr_write_string(o->masks, "description",
                                   "pseudo-label per pixel, [image, row, column]: 0 = background, "
                                   "c = class c of the stack (the image's own class where it "
                                   "deviates from the bulk lattice; bulk and unknown images are "
                                   "all 0)"));
  SD_CHECK(sd_h5_attr_write_strings(o->masks, "class_names", in->num_classes,
                                    (const char *const *)in->class_names));
  SD_CHECK(dset_create(o, "/deviation", H5T_IEEE_F32LE, 3, d3, 1, &o->dev));
  SD_CHECK(sd_h5_attr_write_string(o->dev, "description",
                                   "(image - registered bulk-lattice prediction) / local noise "
                                   "(1.4826 MAD of the residual), signed, [image, row, column]"));
  SD_CHECK(sd_h5_attr_write_string(o->dev, "units", "noise standard deviations"));
  SD_CHECK(dset_create(o, "/detected", H5T_STD_U8LE, 3, d3, 1, &o->det));
  SD_CHECK(sd_h5_attr_write_string(o->det, "description",
                                   "1 = pixel deviates from the bulk lattice (thresholded, cleaned "
                                   "local RMS deviation), whatever the image label"));
  SD_CHECK(dset_create(o, "/labels", H5T_STD_I32LE, 1, d3, 0, &o->labels));
  SD_CHECK(sd_h5_attr_write_strings(o->labels, "class_names", in->num_classes,
                                    (const char *const *)in->class_names));
  SD_CHECK(sd_h5_attr_write_string(o->labels, "description",
                                   "class index per image (copied from the stack), -1 = unknown"));
  SD_CHECK(sd_h5_dataset_write_strings(o->out.file, "/class_names", in->num_classes,
                                       (const char *const *)in->class_names, o->out.dxpl, o->rank));
  SD_CHECK(dset_create(o, "/lattice", H5T_IEEE_F64LE, 2, d2, 0, &o->lattice));
  SD_CHECK(sd_h5_attr_write_string(o->lattice, "description",
                                   "lattice vectors per image (a1x, a1y, a2x, a2y) in pixels (x = "
                                   "column, y = row); NaN where no lattice was found"));
  SD_CHECK(dset_create(o, "/detected_fraction", H5T_IEEE_F32LE, 1, d3, 0, &o->frac));
  SD_CHECK(sd_h5_attr_write_string(o->frac, "description",
                                   "fraction of each image's pixels in /detected"));
  SD_CHECK(sd_h5_attr_write_string(o->out.file, "format", PL_FORMAT));
  SD_CHECK(sd_h5_attr_write_int(o->out.file, "format_version", 1));
  SD_CHECK(sd_h5_attr_write_int(o->out.file, "bulk_class", bulk));
  SD_CHECK(sd_h5_attr_write_string(o->out.file, "bulk_class_name", in->class_names[bulk]));
  SD_CHECK(sd_h5_attr_write_int(o->out.file, "unknown_label_images", (int)unknown));
  SD_CHECK(sd_h5_attr_write_string(o->out.file, "unknown_labels",
                                   unknown > 0 ? "images with label -1 have /deviation and "
                                                 "/detected but an all-zero /mask"
                                               : "none"));
  SD_CHECK(sd_h5_attr_write_string(o->out.file, "method", method));
  SD_CHECK(sd_h5_attr_write_string(o->out.file, "source_stack",
                                   sd_config_string(app->cfg, "pseudolabel.data")));
  SD_CHECK(sd_h5_attr_write_string(o->out.file, "reference",
                                   sd_config_string(app->cfg, "pseudolabel.reference")));
  SD_CHECK(sd_h5_write_provenance(o->out.file, &app->prov, app->size));
  return SD_OK;
}

/* Collective: closes everything; renames (commit and st OK) or removes the temporary file. */
static sd_status out_close(pl_out *o, int commit, sd_status st) {
  sd_h5_close(&o->frac);
  sd_h5_close(&o->lattice);
  sd_h5_close(&o->labels);
  sd_h5_close(&o->det);
  sd_h5_close(&o->dev);
  sd_h5_close(&o->masks);
  st = sd_par_agree(o->comm, st);
  sd_status c = sd_h5_output_close(&o->out, commit && st == SD_OK);
  return st == SD_OK ? c : st;
}

static sd_status out_create(pl_out *o, const sd_app *app, const char *path, const sd_stack_info *in,
                            int bulk, int64_t unknown, const char *method) {
  memset(o, 0, sizeof *o);
  o->comm = app->comm;
  o->rank = app->rank;
  o->masks = o->dev = o->det = o->labels = o->lattice = o->frac = H5I_INVALID_HID;
  o->n = in->n;
  o->h = in->height;
  o->w = in->width;
  sd_status st = sd_h5_output_create(app->comm, path, &o->out);
  if (st == SD_OK)
    st = sd_par_agree(app->comm, out_contents(o, in, bulk, unknown, method, app));
  if (st != SD_OK) {
    char msg[2048];
    snprintf(msg, sizeof msg, "cannot write pseudo-labels '%s': %s", path, sd_error_message());
    sd_error_set_message(st, msg);
    return out_close(o, 0, st);
  }
  return SD_OK;
}

/* ---- preview montage -------------------------------------------------------------------- */

static const uint8_t class_rgb[8][3] = {{0, 0, 0},      {230, 25, 75}, {60, 180, 75},
                                        {255, 225, 25}, {0, 130, 200}, {245, 130, 48},
                                        {145, 30, 180}, {70, 240, 240}};

/* Rank 0: rows of (image | deviation | pseudo-label overlay [| true mask overlay]). */
static sd_status preview_write(const char *path, int k, int h, int w, const float *img,
                               const float *dev, const uint8_t *mask, const uint8_t *truth) {
  int cols = truth ? 4 : 3, gap = 2;
  int pw = cols * (w + gap) - gap, ph = k * (h + gap) - gap;
  uint8_t *rgb = sd_calloc((size_t)pw * ph * 3, 1, "preview");
  float *sc = sd_malloc((size_t)h * w, sizeof *sc, "preview scratch");
  if (!rgb || !sc) {
    free(rgb);
    free(sc);
    return SD_ERR_NOMEM;
  }
  for (size_t i = 0; i < (size_t)pw * ph * 3; i++)
    rgb[i] = 255;
  for (int r = 0; r < k; r++) {
    const float *im = img + (size_t)r * h * w;
    memcpy(sc, im, (size_t)h * w * sizeof *sc);
    sd_normalize_robust(sc, (size_t)h * w, NULL);
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) {
        size_t i = (size_t)r * h * w + (size_t)y * w + x;
        float g = 128.0f + 40.0f * sc[(size_t)y * w + x];
        uint8_t gv = (uint8_t)(g < 0 ? 0 : g > 255 ? 255 : g);
        float d = dev[i] / 5.0f;
        d = d < -1 ? -1 : d > 1 ? 1 : d;
        uint8_t dv[3] = {(uint8_t)(d > 0 ? 255 : 255 * (1 + d)), (uint8_t)(255 * (1 - fabsf(d))),
                         (uint8_t)(d < 0 ? 255 : 255 * (1 - d))};
        for (int c = 0; c < cols; c++) {
          uint8_t *px = rgb + (((size_t)r * (h + gap) + y) * pw + (size_t)c * (w + gap) + x) * 3;
          const uint8_t *mm = c == 2 ? mask : c == 3 ? truth : NULL;
          for (int q = 0; q < 3; q++) {
            if (c == 1)
              px[q] = dv[q];
            else if (mm && mm[i])
              px[q] = (uint8_t)((gv + class_rgb[mm[i] % 8 ? mm[i] % 8 : 1][q]) / 2);
            else
              px[q] = gv;
          }
        }
      }
  }
  sd_status st = sd_png_write_rgb8(path, pw, ph, rgb);
  free(rgb);
  free(sc);
  return st;
}

/* ---- JSON ------------------------------------------------------------------------------- */

static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\')
      fputc('\\', f);
    if ((unsigned char)*s < 0x20)
      fprintf(f, "\\u%04x", *s);
    else
      fputc(*s, f);
  }
  fputc('"', f);
}

typedef struct pl_stats {
  int nc;
  int64_t *inter, *uni, *binter, *buni; /* [nc] IoU counts: ours, baseline */
  int64_t *count, *det_px, *bdet_px;    /* [nc + 1] images, detected pixels (index nc: unknown) */
} pl_stats;

static double ratio(int64_t a, int64_t b) {
  return b > 0 ? (double)a / (double)b : NAN;
}

static void json_num(FILE *f, double v) {
  if (isfinite(v))
    fprintf(f, "%.6f", v);
  else
    fprintf(f, "null");
}

static sd_status evaluate_write(const char *path, const sd_stack_info *in, int bulk, int has_truth,
                                const pl_stats *s, int64_t npx, const pl_shape *shapes,
                                const int64_t *nphase, const sd_app *app) {
  size_t cap = strlen(path) + 32;
  char *tmp = sd_malloc(cap, 1, "temporary name");
  if (!tmp)
    return SD_ERR_NOMEM;
  snprintf(tmp, cap, "%s.tmp-%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "w");
  if (!f) {
    sd_status st = SD_ERROR(SD_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    free(tmp);
    return st;
  }
  fprintf(f, "{\n  \"data\": ");
  json_str(f, sd_config_string(app->cfg, "pseudolabel.data"));
  fprintf(f, ",\n  \"reference\": ");
  json_str(f, sd_config_string(app->cfg, "pseudolabel.reference"));
  fprintf(f, ",\n  \"images\": %lld,\n  \"bulk_class\": ", (long long)in->n);
  json_str(f, in->class_names[bulk]);
  fprintf(f,
          ",\n  \"baseline\": \"|gaussian_blur(sigma=%g px) - box_mean(%lldx%lld)| > percentile %g "
          "of the image\",\n",
          sd_config_float(app->cfg, "pseudolabel.baseline_sigma"),
          (long long)(sd_config_int(app->cfg, "pseudolabel.baseline_box") | 1),
          (long long)(sd_config_int(app->cfg, "pseudolabel.baseline_box") | 1),
          sd_config_float(app->cfg, "pseudolabel.baseline_percentile"));
  fprintf(f, "  \"classes\": [\n");
  double mi = 0, mb = 0;
  int nm = 0;
  for (int c = 0; c < in->num_classes; c++) {
    fprintf(f, "    {\"class\": %d, \"name\": ", c);
    json_str(f, in->class_names[c]);
    fprintf(f, ", \"images\": %lld, \"label_shape\": ", (long long)s->count[c]);
    json_str(f, c == bulk ? "none (bulk)" : shape_name(shapes[c]));
    if (shapes[c] != PL_DEVIATION && shapes[c] != PL_POINT)
      fprintf(f, ", \"shape_found_images\": %lld", (long long)nphase[c]);
    fprintf(f, ", \"detected_fraction\": ");
    json_num(f, ratio(s->det_px[c], s->count[c] * npx));
    fprintf(f, ", \"baseline_detected_fraction\": ");
    json_num(f, ratio(s->bdet_px[c], s->count[c] * npx));
    if (has_truth) {
      double io = ratio(s->inter[c], s->uni[c]), ib = ratio(s->binter[c], s->buni[c]);
      fprintf(f, ", \"iou\": ");
      json_num(f, io);
      fprintf(f, ", \"baseline_iou\": ");
      json_num(f, ib);
      if (c != bulk && s->count[c] > 0 && isfinite(io) && isfinite(ib)) {
        mi += io;
        mb += ib;
        nm++;
      }
    }
    fprintf(f, "}%s\n", c + 1 < in->num_classes ? "," : "");
  }
  fprintf(f, "  ],\n  \"unknown_label_images\": %lld,\n", (long long)s->count[in->num_classes]);
  fprintf(f, "  \"bulk_false_alarm_fraction\": ");
  json_num(f, ratio(s->det_px[bulk], s->count[bulk] * npx));
  fprintf(f, ",\n  \"baseline_bulk_false_alarm_fraction\": ");
  json_num(f, ratio(s->bdet_px[bulk], s->count[bulk] * npx));
  if (has_truth) {
    fprintf(f, ",\n  \"mean_iou\": ");
    json_num(f, nm ? mi / nm : NAN);
    fprintf(f, ",\n  \"baseline_mean_iou\": ");
    json_num(f, nm ? mb / nm : NAN);
  }
  fprintf(f, "\n}\n");
  sd_status st = SD_OK;
  if (fclose(f) != 0 || rename(tmp, path) != 0) {
    st = SD_ERROR(SD_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    unlink(tmp);
  }
  free(tmp);
  return st;
}

/* ---- the command ------------------------------------------------------------------------ */

/* Error before the output exists: frees the per-class and label arrays, closes the stack. */
static sd_status early_exit(void *shapes, int64_t *nphase, int32_t *all_labels, sd_stack **stack,
                            sd_status st) {
  free(shapes);
  free(nphase);
  free(all_labels);
  sd_stack_close(stack, 0);
  return st;
}

static sd_status pseudolabel_run(sd_app *app) {
  const sd_config *cfg = app->cfg;
  const char *data = sd_config_string(cfg, "pseudolabel.data");
  const char *outp = sd_config_string(cfg, "pseudolabel.output");
  const char *refp = sd_config_string(cfg, "pseudolabel.reference");
  const char *evalp = sd_config_string(cfg, "pseudolabel.evaluate");
  const char *prevp = sd_config_string(cfg, "pseudolabel.preview");
  if (!*data)
    return SD_ERROR(SD_ERR_ARG, "pseudolabel needs --data stack.h5 (pseudolabel.data)");
  if (!*outp)
    return SD_ERROR(SD_ERR_ARG, "pseudolabel needs --output pseudo.h5 (pseudolabel.output)");
  sd_pl_params p;
  params_from_config(cfg, &p);
  sd_profile_stage_begin("pseudolabel");

  sd_stack *stack = NULL;
  SD_CHECK(sd_stack_open(app->comm, data, &stack));
  const sd_stack_info *in = sd_stack_get_info(stack);
  sd_status st = SD_OK;
  int bulk = 0;
  sd_lattice ref;
  int has_ref = *refp != '\0';
  if (in->num_classes < 1)
    st = SD_ERROR(SD_ERR_FORMAT,
                  "stack '%s' has no class names: pseudolabel needs image-level labels (/labels "
                  "with attribute class_names; import with --labels filename or folder)",
                  data);
  if (st == SD_OK && (in->height < 16 || in->width < 16))
    st = SD_ERROR(SD_ERR_FORMAT, "stack '%s' has %dx%d images: pseudolabel needs at least 16x16",
                  data, in->width, in->height);
  if (st == SD_OK && *evalp && !in->has_masks)
    sd_log_warn("pseudolabel: stack '%s' has no /masks: --evaluate writes areas only, no IoU",
                data);
  if (st == SD_OK)
    st = bulk_class_resolve(cfg, in, data, &bulk);
  if (st == SD_OK && has_ref) {
    st = reference_lattice(app->comm, refp, &p, &ref);
    if (st == SD_OK)
      sd_log_info("pseudolabel: reference %s: a1 = (%.3f, %.3f) px, a2 = (%.3f, %.3f) px, %d peaks "
                  "(%.0f%% of their power indexed)",
                  refp, ref.a1[0], ref.a1[1], ref.a2[0], ref.a2[1], ref.npeaks,
                  100 * ref.explained);
  }
  if (st != SD_OK) {
    sd_stack_close(&stack, 0);
    return st;
  }
  int64_t n = in->n, first, count;
  int h = in->height, w = in->width, nc = in->num_classes;
  size_t npx = (size_t)h * w;
  sd_shard_range(n, app->rank, app->size, &first, &count);

  /* labels of the whole stack (small): unknown count, and per-class image counts */
  int32_t *all_labels = sd_malloc((size_t)(n > 0 ? n : 1), sizeof *all_labels, "labels");
  st = all_labels ? SD_OK : SD_ERR_NOMEM;
  st = sd_par_agree(app->comm, st);
  if (st == SD_OK) {
    /* every rank reads its shard, then the counts are summed */
    st = sd_stack_read(stack, first, count, NULL, all_labels + first, NULL);
  }
  int64_t unknown = 0, labelled = 0;
  for (int64_t i = 0; st == SD_OK && i < count; i++) {
    if (all_labels[first + i] < 0 || all_labels[first + i] >= nc)
      unknown++;
    else
      labelled++;
  }
  int64_t cnt[2] = {unknown, labelled};
  if (st == SD_OK)
    st = sd_par_allreduce_sum_i64(app->comm, cnt, 2);
  if (st == SD_OK && n > 0 && cnt[1] == 0)
    st = SD_ERROR(SD_ERR_FORMAT,
                  "stack '%s' has no labelled image (every /labels entry is -1): pseudolabel needs "
                  "image-level classes",
                  data);
  st = sd_par_agree(app->comm, st);
  if (st != SD_OK) {
    free(all_labels);
    sd_stack_close(&stack, 0);
    return st;
  }
  unknown = cnt[0];
  if (unknown > 0)
    sd_log_warn("pseudolabel: %lld image(s) have no label (-1): their masks stay empty (deviation "
                "and detection are written)",
                (long long)unknown);

  pl_shape *shapes = sd_malloc((size_t)nc, sizeof *shapes, "class shapes");
  int64_t *nphase = sd_calloc((size_t)(2 * nc), sizeof *nphase, "shape counts");
  st = shapes && nphase ? class_shapes(cfg, in, bulk, shapes) : SD_ERR_NOMEM;
  st = sd_par_agree(app->comm, st);
  if (st != SD_OK)
    return early_exit(shapes, nphase, all_labels, &stack, st);
  char shapes_txt[1024] = "";
  for (int c = 0; c < nc; c++)
    if (shapes[c] != PL_DEVIATION) {
      size_t l = strlen(shapes_txt);
      snprintf(shapes_txt + l, sizeof shapes_txt - l, "%s%s: %s", l ? "; " : "",
               in->class_names[c], shape_name(shapes[c]));
    }
  char method[2048];
  snprintf(method, sizeof method,
           "bulk-lattice deviation: lattice from Fourier peaks (%s), median motif %dx%d, local "
           "registration (radius %g px, window %g px), noise = local MAD (%d px); smoothing %g px, "
           "threshold %s %g (floor %g), open %d, close %d, min area %d px",
           has_ref ? "reference refined per image" : "per image", p.deviation.motif_resolution,
           p.deviation.motif_resolution, p.deviation.reg_radius, p.deviation.reg_window,
           p.deviation.noise_window, p.smooth_sigma, sd_config_string(cfg, "pseudolabel.threshold"),
           p.threshold_value, p.min_deviation, p.open_steps, p.close_steps, p.min_area);
  if (*shapes_txt) {
    size_t l = strlen(method);
    snprintf(method + l, sizeof method - l,
             "; shapes (lattice fringe phase: window %g, band half width %g, boundary shift %g, "
             "core window %g, loop %g, radius %g lattice periods, %d fringes; point discs of "
             "radius %g periods): %s",
             p.phase.sigma, p.phase.band_halfwidth, p.phase.boundary_shift, p.phase.core_sigma,
             p.phase.core_loop, p.phase.core_radius, p.phase.fringes, p.point_radius, shapes_txt);
    sd_log_info("pseudolabel: pseudo-label shapes: %s", shapes_txt);
  }
  sd_log_info("pseudolabel: %lld image(s) of %dx%d, %d classes (bulk = %s), on %d rank(s) -> %s",
              (long long)n, w, h, nc, in->class_names[bulk], app->size, outp);

  pl_out o;
  st = out_create(&o, app, outp, in, bulk, unknown, method);
  if (st != SD_OK)
    return early_exit(shapes, nphase, all_labels, &stack, st);

  int64_t bcap = count < PL_BATCH ? (count > 0 ? count : 1) : PL_BATCH;
  int want_truth = *evalp && in->has_masks;
  float *img = sd_malloc((size_t)bcap * npx, sizeof *img, "images");
  float *dev = sd_malloc((size_t)bcap * npx, sizeof *dev, "deviation");
  uint8_t *det = sd_malloc((size_t)bcap * npx, 1, "detection");
  uint8_t *msk = sd_malloc((size_t)bcap * npx, 1, "masks");
  uint8_t *truth = want_truth ? sd_malloc((size_t)bcap * npx, 1, "true masks") : NULL;
  uint8_t *base = sd_malloc(npx, 1, "baseline");
  uint8_t *bmask = sd_malloc(npx, 1, "baseline mask");
  uint8_t *shp = sd_malloc(npx, 1, "pseudo-label shape");
  double *latv = sd_malloc((size_t)bcap * 4, sizeof *latv, "lattice vectors");
  float *frac = sd_malloc((size_t)bcap, sizeof *frac, "detected fraction");
  pl_stats s = {.nc = nc};
  int64_t *counts = sd_calloc((size_t)(7 * nc + 3), sizeof(int64_t), "statistics");
  sd_pl *pl = NULL;
  st = (img && dev && det && msk && base && bmask && shp && latv && frac && counts &&
        (!want_truth || truth))
           ? SD_OK
           : SD_ERR_NOMEM;
  if (st == SD_OK)
    st = sd_pl_create(h, w, &p, &pl);
  st = sd_par_agree(app->comm, st);
  if (counts) {
    s.inter = counts;
    s.uni = counts + nc;
    s.binter = counts + 2 * nc;
    s.buni = counts + 3 * nc;
    s.count = counts + 4 * nc;
    s.det_px = counts + 5 * nc + 1;
    s.bdet_px = counts + 6 * nc + 2;
  }
  int64_t rounds = (count + PL_BATCH - 1) / PL_BATCH, nolattice = 0, nfallback = 0;
  if (st == SD_OK)
    st = sd_par_agree(app->comm, sd_par_allreduce_max_i64(app->comm, &rounds, 1));
  sd_progress prog;
  sd_progress_begin(&prog, "pseudolabel", n);
  int64_t done = 0;
  for (int64_t r = 0; st == SD_OK && r < rounds; r++) {
    int64_t b0 = first + done;
    int64_t nb = count - done < PL_BATCH ? count - done : PL_BATCH;
    if (nb < 0)
      nb = 0;
    double t = sd_profile_phase_begin();
    st = sd_stack_read(stack, b0, nb, img, NULL, want_truth ? truth : NULL);
    sd_profile_phase_end(SD_PHASE_IO, t);
    if (st != SD_OK)
      break;
    t = sd_profile_phase_begin();
    sd_status lst = SD_OK;
    for (int64_t i = 0; i < nb && lst == SD_OK; i++) {
      size_t off = (size_t)i * npx;
      int32_t lab = all_labels[b0 + i];
      sd_lattice lat;
      int ok = 0, how = 0;
      lst = label_one(pl, npx, img + off, has_ref ? &ref : NULL, lab, bulk, nc, shapes, dev + off,
                      det + off, shp, msk + off, &lat, &ok, &how);
      if (lst != SD_OK) {
        char msg[2048];
        snprintf(msg, sizeof msg, "image %lld of '%s': %s", (long long)(b0 + i), data,
                 sd_error_message());
        sd_error_set_message(lst, msg);
        break;
      }
      if (!ok)
        nolattice++;
      nfallback += how == 2;
      if (how == 1)
        nphase[lab]++;
      if (ok && lab >= 0 && lab < nc && shapes[lab] != PL_DEVIATION && shapes[lab] != PL_POINT)
        nphase[nc + lab]++;
      double *lv = latv + 4 * i;
      lv[0] = ok ? lat.a1[0] : NAN;
      lv[1] = ok ? lat.a1[1] : NAN;
      lv[2] = ok ? lat.a2[0] : NAN;
      lv[3] = ok ? lat.a2[1] : NAN;
      int64_t dcount = 0, mcount = 0;
      for (size_t q = 0; q < npx; q++) {
        dcount += det[off + q];
        mcount += msk[off + q] != 0;
      }
      frac[i] = (float)((double)dcount / (double)npx);
      int cls = lab >= 0 && lab < nc ? lab : nc;
      s.count[cls]++;
      /* area of the pseudo-label; for bulk and unknown images (empty masks) the detection */
      s.det_px[cls] += cls == nc || cls == bulk ? dcount : mcount;
      if (*evalp) {
        sd_pl_baseline(pl, img + off, base);
        int64_t bc = 0;
        for (size_t q = 0; q < npx; q++)
          bc += base[q];
        s.bdet_px[cls] += bc;
        if (want_truth) {
          sd_pl_mask(base, npx, lab, bulk, bmask);
          sd_pl_iou_accumulate(msk + off, truth + off, npx, nc, s.inter, s.uni);
          sd_pl_iou_accumulate(bmask, truth + off, npx, nc, s.binter, s.buni);
        }
      }
    }
    sd_profile_phase_end(SD_PHASE_COMPUTE, t);
    st = sd_par_agree(app->comm, lst);
    if (st != SD_OK)
      break;
    t = sd_profile_phase_begin();
    st = sd_h5_rows_write(o.masks, o.out.dxpl, b0, nb, H5T_NATIVE_UINT8, msk);
    if (st == SD_OK)
      st = sd_h5_rows_write(o.dev, o.out.dxpl, b0, nb, H5T_NATIVE_FLOAT, dev);
    if (st == SD_OK)
      st = sd_h5_rows_write(o.det, o.out.dxpl, b0, nb, H5T_NATIVE_UINT8, det);
    if (st == SD_OK)
      st = sd_h5_rows_write(o.labels, o.out.dxpl, b0, nb, H5T_NATIVE_INT32, all_labels + b0);
    if (st == SD_OK)
      st = sd_h5_rows_write(o.lattice, o.out.dxpl, b0, nb, H5T_NATIVE_DOUBLE, latv);
    if (st == SD_OK)
      st = sd_h5_rows_write(o.frac, o.out.dxpl, b0, nb, H5T_NATIVE_FLOAT, frac);
    sd_profile_phase_end(SD_PHASE_IO, t);
    sd_profile_add_bytes(SD_PHASE_IO, nb * (int64_t)npx * 6);
    st = sd_par_agree(app->comm, st);
    done += nb;
    int64_t est = done * app->size;
    sd_progress_update(&prog, est < n ? est : n);
  }
  if (st == SD_OK) {
    prog.done = n;
    sd_progress_end(&prog);
  }
  /* statistics over ranks */
  if (st == SD_OK)
    st = sd_par_agree(app->comm, sd_par_allreduce_sum_i64(app->comm, counts, 7 * nc + 3));
  if (st == SD_OK)
    st = sd_par_agree(app->comm, sd_par_allreduce_sum_i64(app->comm, &nolattice, 1));
  if (st == SD_OK)
    st = sd_par_agree(app->comm, sd_par_allreduce_sum_i64(app->comm, &nfallback, 1));
  if (st == SD_OK)
    st = sd_par_agree(app->comm, sd_par_allreduce_sum_i64(app->comm, nphase, 2 * nc));
  if (st == SD_OK)
    for (int c = 0; c < nc; c++)
      if (shapes[c] != PL_DEVIATION && shapes[c] != PL_POINT && nphase[nc + c] > 0)
        sd_log_info("pseudolabel: %s: %s found in %lld of %lld image(s) with a lattice (the rest "
                    "keep the deviation detection)",
                    in->class_names[c], shape_name(shapes[c]), (long long)nphase[c],
                    (long long)nphase[nc + c]);
  if (st == SD_OK) {
    if (nfallback > 0)
      sd_log_info("pseudolabel: %lld defect image(s) with an empty detection labelled by the top "
                  "%.0f%% of their deviation (pseudolabel.fallback_fraction)",
                  (long long)nfallback, 100.0 * p.fallback_fraction);
    if (nolattice > 0)
      sd_log_warn("pseudolabel: no lattice found in %lld image(s): their deviation is the z-scored "
                  "image and their detection is empty (/lattice = NaN)",
                  (long long)nolattice);
    for (int c = 0; c < nc; c++) {
      if (!s.count[c])
        continue;
      double fr = ratio(s.det_px[c], s.count[c] * (int64_t)npx);
      if (want_truth)
        sd_log_info(
            "pseudolabel:   %-16s %5lld images, detected area %5.1f%%, IoU %.3f (baseline %.3f)%s",
            in->class_names[c], (long long)s.count[c], 100 * fr, ratio(s.inter[c], s.uni[c]),
            ratio(s.binter[c], s.buni[c]), c == bulk ? "  [bulk: false alarm]" : "");
      else
        sd_log_info("pseudolabel:   %-16s %5lld images, detected area %5.1f%%%s",
                    in->class_names[c], (long long)s.count[c], 100 * fr,
                    c == bulk ? "  [bulk: false alarm]" : "");
    }
  }
  /* preview: rank 0 recomputes its first images (read collectively) */
  if (st == SD_OK && *prevp && n > 0) {
    int k = (int)sd_config_int(cfg, "pseudolabel.preview_count");
    if (k > n)
      k = (int)n;
    int64_t kk = app->rank == 0 ? k : 0;
    float *pimg = sd_malloc((size_t)(k > 0 ? k : 1) * npx, sizeof *pimg, "preview images");
    float *pdev = sd_malloc((size_t)(k > 0 ? k : 1) * npx, sizeof *pdev, "preview deviation");
    uint8_t *pm = sd_malloc((size_t)(k > 0 ? k : 1) * npx, 1, "preview masks");
    uint8_t *pt =
        in->has_masks ? sd_malloc((size_t)(k > 0 ? k : 1) * npx, 1, "preview truth") : NULL;
    st = sd_par_agree(app->comm,
                      (pimg && pdev && pm && (!in->has_masks || pt)) ? SD_OK : SD_ERR_NOMEM);
    /* images spread evenly over the stack (stacks are often sorted by class) */
    int64_t *pidx = sd_malloc((size_t)(k > 0 ? k : 1), sizeof *pidx, "preview indices");
    int32_t *plab = sd_malloc((size_t)(k > 0 ? k : 1), sizeof *plab, "preview labels");
    if ((!pidx || !plab) && st == SD_OK)
      st = SD_ERR_NOMEM;
    st = sd_par_agree(app->comm, st);
    for (int i = 0; st == SD_OK && i < k; i++) {
      pidx[i] = (int64_t)i * n / k;
      st = sd_stack_read(stack, pidx[i], kk ? 1 : 0, pimg + (size_t)i * npx, plab + i,
                         pt ? pt + (size_t)i * npx : NULL);
    }
    sd_status pst = SD_OK;
    if (st == SD_OK && app->rank == 0) {
      for (int i = 0; i < k && pst == SD_OK; i++) {
        sd_lattice lat;
        int ok = 0, how = 0;
        pst = label_one(pl, npx, pimg + (size_t)i * npx, has_ref ? &ref : NULL, plab[i], bulk, nc,
                        shapes, pdev + (size_t)i * npx, det, shp, pm + (size_t)i * npx, &lat, &ok,
                        &how);
      }
      if (pst == SD_OK)
        pst = preview_write(prevp, k, h, w, pimg, pdev, pm, pt);
    }
    if (st == SD_OK)
      st = sd_par_agree(app->comm, pst);
    if (st == SD_OK)
      sd_log_info("pseudolabel: preview (image | deviation | pseudo-label%s) -> %s",
                  pt ? " | true mask" : "", prevp);
    free(pidx);
    free(plab);
    free(pimg);
    free(pdev);
    free(pm);
    free(pt);
  }
  if (st == SD_OK && *evalp) {
    sd_status est = SD_OK;
    if (app->rank == 0)
      est = evaluate_write(evalp, in, bulk, want_truth, &s, (int64_t)npx, shapes, nphase, app);
    st = sd_par_agree(app->comm, est);
    if (st == SD_OK)
      sd_log_info("pseudolabel: evaluation -> %s", evalp);
  }
  sd_pl_destroy(&pl);
  free(img);
  free(dev);
  free(det);
  free(msk);
  free(truth);
  free(base);
  free(bmask);
  free(shp);
  free(latv);
  free(frac);
  free(counts);
  free(all_labels);
  free(shapes);
  free(nphase);
  st = out_close(&o, 1, st);
  sd_status cst = sd_stack_close(&stack, 0);
  if (st == SD_OK)
    st = cst;
  sd_profile_stage_end(count);
  if (st == SD_OK)
    sd_log_info("pseudolabel: wrote %s", outp);
  return st;
}

const sd_command sd_cmd_pseudolabel = {
    .name = "pseudolabel",
    .summary = "pixel pseudo-labels from each image's deviation from its bulk lattice",
    .usage = "--data stack.h5 --output pseudo.h5 [--reference bulk.tif] [--evaluate iou.json] "
             "[--preview PNG]",
    .description =
        "Per image: lattice vectors from the Fourier peaks (or a bulk --reference image, refined\n"
        "per image), the median unit cell folded from the image, re-tiled and registered locally\n"
        "(gain, offset, shift), the residual divided by the local noise (MAD) = /deviation;\n"
        "smoothed, thresholded (robust z or Otsu), opened/closed, small components removed =\n"
        "/detected. /masks = the image's class where detected (bulk and unknown images: 0).\n"
        "--evaluate FILE writes per-class IoU against the stack's /masks for these pseudo-labels\n"
        "and for the notebook baseline (|blur - 7x7 box mean| > 98th percentile), and detected\n"
        "areas per class (the bulk class gives the false-alarm area). The output does not depend\n"
        "on the rank count.",
    .sections = "pseudolabel,general",
    .positional_key = NULL,
    .options = pseudolabel_options,
    .run = pseudolabel_run,
};
