/* sim.c - simulator parameters (defaults, the table of config keys with their ranges,
 * validation, parsing), class lists, balanced labels, and the preview montage.
 * Rendering itself lives in sim_render.c and sim_model.c. */
#include "stemdefect/sim.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sim/sim_internal.h"
#include "stemdefect/png.h"
#include "stemdefect/rng.h"

#define SIM_MAX_FOV 1500.0 /* A */

/* ---- the numeric fields: one table drives set, get, validate and help ---------------------- */

typedef struct sim_field {
  const char *name;
  size_t offset;
  double min, max;
  const char *unit;
  const char *help;
} sim_field;

#define F(name, lo, hi, unit, help) {#name, offsetof(sd_sim_params, name), lo, hi, unit, help}
static const sim_field g_fields[] = {
    F(pixel_size_min, 0.01, 5.0, "A/px", "smallest pixel size (drawn per image)"),
    F(pixel_size_max, 0.01, 5.0, "A/px", "largest pixel size (>= pixel_size_min)"),
    F(rotation_deg, -360.0, 360.0, "deg", "centre of the lattice orientation range"),
    F(rotation_max_deg, 0.0, 180.0, "deg", "orientation = rotation_deg +- this"),
    F(dose_min, 1.0, 1e7, "counts", "smallest dose: expected counts at the brightest column peak"),
    F(dose_max, 1.0, 1e7, "counts", "largest dose (>= dose_min; drawn log-uniformly)"),
    F(gaussian_noise, 0.0, 1.0, "x dose", "detector noise standard deviation"),
    F(scan_jitter, 0.0, 5.0, "px", "standard deviation of the horizontal shift of each scan row"),
    F(scan_jitter_corr, 0.0, 0.999, "", "correlation of the shifts of consecutive rows"),
    F(drift, 0.0, 0.2, "", "largest shear and stretch from slow drift"),
    F(scan_smear, 0.0, 0.95, "", "detector lag: zero-phase exponential smoothing of each row"),
    F(post_blur, 0.0, 3.0, "px", "Gaussian smoothing after the noise (standard deviation)"),
    F(probe_sigma_min, 0.1, 3.0, "A", "smallest probe (column image) standard deviation"),
    F(probe_sigma_max, 0.1, 3.0, "A", "largest probe standard deviation (>= probe_sigma_min)"),
    F(z_exponent, 0.5, 2.5, "", "column intensity ~ sum of Z^z_exponent over its atoms"),
    F(background, 0.0, 10.0, "x peak", "mean background relative to the brightest column peak"),
    F(background_variation, 0.0, 1.0, "x background", "amplitude of the smooth background field"),
    F(column_variation, 0.0, 0.5, "", "standard deviation of the static column intensity spread"),
    F(multi_defect_prob, 0.0, 1.0, "", "probability of a second defect of another class"),
    F(vacancy_occupancy_max, 0.0, 0.99, "", "vacancy column occupancy is drawn in 0..this"),
    F(interstitial_occupancy_min, 0.01, 1.0, "", "smallest interstitial column occupancy"),
    F(interstitial_occupancy_max, 0.01, 1.0, "", "largest interstitial column occupancy"),
    F(substitution_contrast_min, 0.01, 5.0, "", "substituted column: intensity x(1+c) or /(1+c)"),
    F(substitution_contrast_max, 0.01, 5.0, "", "largest c (>= substitution_contrast_min)"),
    F(mask_point_radius, 0.1, 5.0, "x FWHM", "point-defect mask radius in probe FWHM"),
    F(mask_band_halfwidth, 0.2, 50.0, "A", "half width of the stacking-fault / twin mask band"),
    F(mask_core_radius, 0.2, 50.0, "A", "radius of the dislocation-core mask disc"),
};
#undef F
#define NFIELDS ((int)(sizeof g_fields / sizeof g_fields[0]))

/* min/max pairs checked in validate: (lower field, upper field) */
static const char *const g_pairs[][2] = {
    {"pixel_size_min", "pixel_size_max"},
    {"dose_min", "dose_max"},
    {"probe_sigma_min", "probe_sigma_max"},
    {"interstitial_occupancy_min", "interstitial_occupancy_max"},
    {"substitution_contrast_min", "substitution_contrast_max"},
};

static const sim_field *field_find(const char *name) {
  for (int i = 0; i < NFIELDS; i++)
    if (strcmp(g_fields[i].name, name) == 0) return &g_fields[i];
  return NULL;
}

static double *field_ptr(sd_sim_params *p, const sim_field *f) {
  return (double *)((char *)p + f->offset);
}
static double field_value(const sd_sim_params *p, const sim_field *f) {
  return *(const double *)((const char *)p + f->offset);
}

int sd_sim_param_count(void) { return NFIELDS; }

sd_status sd_sim_param_info(int i, sd_sim_param_desc *out) {
  if (i < 0 || i >= NFIELDS || !out)
    return SD_ERROR(SD_ERR_ARG, "simulator parameter index %d outside 0..%d", i, NFIELDS - 1);
  out->name = g_fields[i].name;
  out->min = g_fields[i].min;
  out->max = g_fields[i].max;
  out->unit = g_fields[i].unit;
  out->help = g_fields[i].help;
  return SD_OK;
}

sd_status sd_sim_params_get(const sd_sim_params *p, const char *key, double *value) {
  const sim_field *f = key ? field_find(key) : NULL;
  if (!f) return SD_ERROR(SD_ERR_CONFIG, "unknown simulator parameter simulate.%s", key ? key : "(null)");
  *value = field_value(p, f);
  return SD_OK;
}

/* ---- names --------------------------------------------------------------------------------- */

static const char *const g_defect_names[SD_SIM_DEFECT_COUNT] = {
    "bulk", "vacancy", "interstitial", "substitution", "antisite", "stacking_fault", "twin",
    "dislocation"};

const char *sd_sim_defect_name(sd_sim_defect d) {
  return (d >= 0 && d < SD_SIM_DEFECT_COUNT) ? g_defect_names[d] : "unknown";
}

sd_status sd_sim_parse_defect(const char *s, sd_sim_defect *d) {
  for (int i = 0; s && i < SD_SIM_DEFECT_COUNT; i++)
    if (strcasecmp(s, g_defect_names[i]) == 0) {
      *d = (sd_sim_defect)i;
      return SD_OK;
    }
  return SD_ERROR(SD_ERR_CONFIG,
                  "unknown defect type '%s' (expected bulk, vacancy, interstitial, substitution, "
                  "antisite, stacking_fault, twin or dislocation)",
                  s ? s : "(null)");
}

const char *sd_sim_material_name(sd_sim_material m) {
  return m == SD_SIM_MATERIAL_STO ? "sto" : m == SD_SIM_MATERIAL_CDTE ? "cdte" : "unknown";
}

sd_status sd_sim_parse_material(const char *s, sd_sim_material *m) {
  if (s && strcasecmp(s, "cdte") == 0) {
    *m = SD_SIM_MATERIAL_CDTE;
    return SD_OK;
  }
  if (s && (strcasecmp(s, "sto") == 0 || strcasecmp(s, "srtio3") == 0)) {
    *m = SD_SIM_MATERIAL_STO;
    return SD_OK;
  }
  return SD_ERROR(SD_ERR_CONFIG, "unknown material '%s' (expected cdte or sto)", s ? s : "(null)");
}

/* ---- classes ------------------------------------------------------------------------------- */

static int name_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n >= SD_SIM_NAME_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (!(isalnum(ch) || ch == '_' || ch == '.' || ch == '-' || ch == '+')) return 0;
  }
  return 1;
}

static sd_status check_classes(const sd_sim_class *cl, int n) {
  if (n < 1 || n > SD_SIM_MAX_CLASSES)
    return SD_ERROR(SD_ERR_CONFIG, "simulate.classes has %d classes; allowed 1..%d", n,
                    SD_SIM_MAX_CLASSES);
  for (int i = 0; i < n; i++) {
    if (!name_ok(cl[i].name))
      return SD_ERROR(SD_ERR_CONFIG,
                      "simulate.classes: class %d name '%.40s' must be 1..%d characters of "
                      "[A-Za-z0-9_.+-]",
                      i, cl[i].name, SD_SIM_NAME_MAX - 1);
    if ((int)cl[i].defect < 0 || cl[i].defect >= SD_SIM_DEFECT_COUNT)
      return SD_ERROR(SD_ERR_CONFIG, "simulate.classes: class %s has an invalid defect type %d",
                      cl[i].name, (int)cl[i].defect);
    if (i == 0 && cl[i].defect != SD_SIM_DEFECT_BULK)
      return SD_ERROR(SD_ERR_CONFIG, "simulate.classes: class 0 (%s) must be bulk, not %s",
                      cl[i].name, sd_sim_defect_name(cl[i].defect));
    if (i > 0 && cl[i].defect == SD_SIM_DEFECT_BULK)
      return SD_ERROR(SD_ERR_CONFIG,
                      "simulate.classes: only class 0 may be bulk, class %d (%s) is bulk too", i,
                      cl[i].name);
    if (cl[i].variant < 0 || cl[i].variant > 8)
      return SD_ERROR(SD_ERR_CONFIG, "simulate.classes: class %s variant %d outside 0..8",
                      cl[i].name, cl[i].variant);
    for (int j = 0; j < i; j++)
      if (strcmp(cl[i].name, cl[j].name) == 0)
        return SD_ERROR(SD_ERR_CONFIG, "simulate.classes: class name '%s' appears twice",
                        cl[i].name);
  }
  return SD_OK;
}

static char *trim(char *s) {
  while (isspace((unsigned char)*s)) s++;
  char *e = s + strlen(s);
  while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
  return s;
}

sd_status sd_sim_parse_classes(sd_sim_params *p, const char *spec) {
  if (!p || !spec) return SD_ERROR(SD_ERR_ARG, "sd_sim_parse_classes: NULL argument");
  sd_sim_class cl[SD_SIM_MAX_CLASSES];
  memset(cl, 0, sizeof cl);
  char *buf = sd_strdup(spec);
  if (!buf) return SD_ERR_NOMEM;
  sd_status st = SD_OK;
  int n = 0;
  char *save = NULL;
  for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    char *item = trim(tok);
    if (!*item) continue;
    if (n >= SD_SIM_MAX_CLASSES) {
      st = SD_ERROR(SD_ERR_CONFIG, "simulate.classes '%s': more than %d classes", spec,
                    SD_SIM_MAX_CLASSES);
      goto done;
    }
    char *eq = strchr(item, '=');
    char *name = item, *type = item;
    if (eq) {
      *eq = '\0';
      name = trim(item);
      type = trim(eq + 1);
    }
    char *colon = strchr(type, ':');
    int variant = 0;
    if (colon) {
      *colon = '\0';
      char *vs = trim(colon + 1), *end = NULL;
      long v = strtol(vs, &end, 10);
      if (!*vs || *end || v < 0 || v > 8) {
        st = SD_ERROR(SD_ERR_CONFIG, "simulate.classes: variant '%s' of '%s' must be 0..8", vs,
                      name);
        goto done;
      }
      variant = (int)v;
      type = trim(type);
    }
    sd_sim_defect d;
    if (sd_sim_parse_defect(type, &d) != SD_OK) {
      sd_error_clear();
      st = SD_ERROR(SD_ERR_CONFIG,
                    "simulate.classes: class '%s' has unknown defect type '%s' (expected bulk, "
                    "vacancy, interstitial, substitution, antisite, stacking_fault, twin or "
                    "dislocation; write Name=type[:variant])",
                    name, type);
      goto done;
    }
    if (strlen(name) >= SD_SIM_NAME_MAX) {
      st = SD_ERROR(SD_ERR_CONFIG, "simulate.classes: class name '%s' longer than %d characters",
                    name, SD_SIM_NAME_MAX - 1);
      goto done;
    }
    snprintf(cl[n].name, sizeof cl[n].name, "%s", name);
    cl[n].defect = d;
    cl[n].variant = variant;
    n++;
  }
  SD_CHECK_GOTO(st, check_classes(cl, n), done);
  memcpy(p->classes, cl, sizeof cl);
  p->num_classes = n;
done:
  free(buf);
  return st;
}

sd_status sd_sim_set_class_names(sd_sim_params *p, const char *const *names, int n) {
  if (!p || !names) return SD_ERROR(SD_ERR_ARG, "sd_sim_set_class_names: NULL argument");
  if (n != p->num_classes)
    return SD_ERROR(SD_ERR_CONFIG, "simulate.classes: %d names given for %d classes", n,
                    p->num_classes);
  sd_sim_class cl[SD_SIM_MAX_CLASSES];
  memcpy(cl, p->classes, sizeof cl);
  for (int i = 0; i < n; i++) {
    if (!names[i] || strlen(names[i]) >= SD_SIM_NAME_MAX)
      return SD_ERROR(SD_ERR_CONFIG, "simulate.classes: name %d is missing or longer than %d", i,
                      SD_SIM_NAME_MAX - 1);
    snprintf(cl[i].name, sizeof cl[i].name, "%s", names[i]);
  }
  SD_CHECK(check_classes(cl, n));
  memcpy(p->classes, cl, sizeof cl);
  return SD_OK;
}

sd_status sd_sim_format_classes(const sd_sim_params *p, char *buf, size_t cap) {
  if (!p || !buf || cap == 0) return SD_ERROR(SD_ERR_ARG, "sd_sim_format_classes: bad argument");
  size_t len = 0;
  buf[0] = '\0';
  for (int i = 0; i < p->num_classes; i++) {
    const sd_sim_class *c = &p->classes[i];
    int k = c->variant ? snprintf(buf + len, cap - len, "%s%s=%s:%d", i ? "," : "", c->name,
                                  sd_sim_defect_name(c->defect), c->variant)
                       : snprintf(buf + len, cap - len, "%s%s=%s", i ? "," : "", c->name,
                                  sd_sim_defect_name(c->defect));
    if (k < 0 || (size_t)k >= cap - len)
      return SD_ERROR(SD_ERR_ARG, "sd_sim_format_classes: buffer of %zu bytes too small", cap);
    len += (size_t)k;
  }
  return SD_OK;
}

/* ---- defaults and validation ----------------------------------------------------------------- */

sd_status sd_sim_params_default(sd_sim_params *p, sd_sim_material m, int size) {
  if (!p) return SD_ERROR(SD_ERR_ARG, "sd_sim_params_default: NULL params");
  if (m != SD_SIM_MATERIAL_CDTE && m != SD_SIM_MATERIAL_STO)
    return SD_ERROR(SD_ERR_CONFIG, "simulate.material: unknown material %d", (int)m);
  memset(p, 0, sizeof *p);
  p->material = m;
  p->size = size;
  /* shared settings; the per-material block below overrides them. Tuned against the real
   * 64x64 patches: spacing and orientation from their power spectra, probe size from the
   * ratio of the Bragg-peak amplitudes, dose and smoothing from the noise power spectrum. */
  p->dose_min = 40;
  p->dose_max = 160;
  p->gaussian_noise = 0.02;
  p->scan_jitter = 0.2;
  p->scan_jitter_corr = 0.3;
  p->drift = 0.02;
  p->scan_smear = 0.0;
  p->post_blur = 0.0;
  p->probe_sigma_min = 0.6;
  p->probe_sigma_max = 0.8;
  p->z_exponent = 1.7;
  p->background = 0.5;
  p->background_variation = 0.1;
  p->column_variation = 0.05;
  p->multi_defect_prob = 0.2;
  p->vacancy_occupancy_max = 0.5;
  p->interstitial_occupancy_min = 0.3;
  p->interstitial_occupancy_max = 0.8;
  p->substitution_contrast_min = 0.5;
  p->substitution_contrast_max = 1.0;
  p->mask_point_radius = 1.0;
  p->mask_band_halfwidth = 2.0;
  p->mask_core_radius = 3.5;
  const char *classes;
  if (m == SD_SIM_MATERIAL_CDTE) {
    /* real CdTe: {111} fringes 13.84 px apart (3.74 A) -> 0.270 A/px; [001] dumbbell axis
     * 53.7 degrees below the x axis; noise spectrum falling off as after a 0.5 px blur */
    p->pixel_size_min = 0.25;
    p->pixel_size_max = 0.29;
    p->rotation_deg = -36.3;
    p->rotation_max_deg = 10.0;
    p->post_blur = 0.5;
    classes = "bulk,vacancy,interstitial,antisite,stacking_fault,twin,dislocation";
  } else {
    /* real STO: {100} 23.8 px (3.905 A) -> 0.164 A/px, lattice along the image axes; Ti-O
     * columns about 0.8 of Sr (a Z^1.0 rule fits the Bragg amplitudes, Z^1.7 gives 0.47);
     * noise correlated along the scan rows (detector lag) */
    p->pixel_size_min = 0.15;
    p->pixel_size_max = 0.18;
    p->rotation_deg = 0.0;
    p->rotation_max_deg = 10.0;
    p->z_exponent = 1.0;
    p->dose_min = 50;
    p->dose_max = 200;
    p->background = 0.15;
    p->scan_jitter = 0.4;
    p->scan_smear = 0.1;
    p->probe_sigma_min = 0.65;
    p->probe_sigma_max = 0.85;
    classes = "bulk,vacancy,interstitial,substitution,dislocation";
  }
  SD_CHECK(sd_sim_parse_classes(p, classes));
  return SD_OK;
}

sd_status sd_sim_params_validate(const sd_sim_params *p) {
  if (!p) return SD_ERROR(SD_ERR_ARG, "sd_sim_params_validate: NULL params");
  if (p->material != SD_SIM_MATERIAL_CDTE && p->material != SD_SIM_MATERIAL_STO)
    return SD_ERROR(SD_ERR_CONFIG, "simulate.material = %d is not a material (cdte or sto)",
                    (int)p->material);
  if (p->size < 8 || p->size > 4096)
    return SD_ERROR(SD_ERR_CONFIG, "simulate.size = %d is outside the allowed range [8, 4096] px",
                    p->size);
  for (int i = 0; i < NFIELDS; i++) {
    const sim_field *f = &g_fields[i];
    double v = field_value(p, f);
    if (!(v >= f->min && v <= f->max)) /* also catches NaN */
      return SD_ERROR(SD_ERR_CONFIG, "simulate.%s = %g is outside the allowed range [%g, %g]%s%s",
                      f->name, v, f->min, f->max, f->unit[0] ? " " : "", f->unit);
  }
  /* the column list grows with the field of view squared (a twin needs about 4x its area) */
  double fov = p->size * p->pixel_size_max;
  if (fov > SIM_MAX_FOV)
    return SD_ERROR(SD_ERR_CONFIG,
                    "simulate.size x simulate.pixel_size_max = %d x %g = %g A field of view; at "
                    "most %g A is allowed (use fewer pixels or smaller pixels)",
                    p->size, p->pixel_size_max, fov, SIM_MAX_FOV);
  for (size_t k = 0; k < sizeof g_pairs / sizeof g_pairs[0]; k++) {
    double lo = field_value(p, field_find(g_pairs[k][0]));
    double hi = field_value(p, field_find(g_pairs[k][1]));
    if (hi < lo)
      return SD_ERROR(SD_ERR_CONFIG, "simulate.%s = %g must be >= simulate.%s = %g",
                      g_pairs[k][1], hi, g_pairs[k][0], lo);
  }
  SD_CHECK(check_classes(p->classes, p->num_classes));
  return SD_OK;
}

sd_status sd_sim_params_set(sd_sim_params *p, const char *key, const char *value) {
  if (!p || !key || !value) return SD_ERROR(SD_ERR_ARG, "sd_sim_params_set: NULL argument");
  if (strcmp(key, "classes") == 0) {
    if (strcmp(value, "auto") == 0) {
      sd_sim_params d;
      SD_CHECK(sd_sim_params_default(&d, p->material, p->size));
      memcpy(p->classes, d.classes, sizeof d.classes);
      p->num_classes = d.num_classes;
      return SD_OK;
    }
    SD_CHECK(sd_sim_parse_classes(p, value));
    return SD_OK;
  }
  if (strcmp(key, "material") == 0 || strcmp(key, "size") == 0)
    return SD_ERROR(SD_ERR_CONFIG,
                    "simulate.%s is chosen with sd_sim_params_default (it resets the other "
                    "defaults), not set on its own",
                    key);
  const sim_field *f = field_find(key);
  if (!f) {
    char names[1024];
    size_t len = 0;
    names[0] = '\0';
    for (int i = 0; i < NFIELDS && len < sizeof names; i++)
      len += (size_t)snprintf(names + len, sizeof names - len, "%s%s", i ? ", " : "",
                              g_fields[i].name);
    return SD_ERROR(SD_ERR_CONFIG, "unknown key simulate.%s (known: classes, %s)", key, names);
  }
  if (strcmp(value, "auto") == 0) {
    sd_sim_params d;
    SD_CHECK(sd_sim_params_default(&d, p->material, p->size));
    *field_ptr(p, f) = field_value(&d, f);
    return SD_OK;
  }
  char *end = NULL;
  errno = 0;
  double v = strtod(value, &end);
  while (end && isspace((unsigned char)*end)) end++;
  if (end == value || !end || *end || errno == ERANGE)
    return SD_ERROR(SD_ERR_CONFIG, "simulate.%s = '%s' is not a number (allowed range [%g, %g]%s%s)",
                    key, value, f->min, f->max, f->unit[0] ? " " : "", f->unit);
  if (!(v >= f->min && v <= f->max))
    return SD_ERROR(SD_ERR_CONFIG, "simulate.%s = %s is outside the allowed range [%g, %g]%s%s",
                    key, value, f->min, f->max, f->unit[0] ? " " : "", f->unit);
  *field_ptr(p, f) = v;
  return SD_OK;
}

/* ---- balanced labels ------------------------------------------------------------------------- */

int sd_sim_label_for_index(const sd_sim_params *p, uint64_t seed, int64_t index) {
  if (!p || index < 0 || p->num_classes < 1 || p->num_classes > SD_SIM_MAX_CLASSES) return -1;
  int k = p->num_classes;
  if (k == 1) return 0;
  int64_t block = index / k;
  int pos = (int)(index % k);
  int perm[SD_SIM_MAX_CLASSES];
  for (int i = 0; i < k; i++) perm[i] = i;
  /* a key of its own so it never coincides with an image's stream (seed, index, SIM) */
  sd_rng r;
  sd_rng_init(&r, sd_rng_mix64(seed ^ 0x6C6162656C73ULL /* "labels" */), (uint64_t)block,
              SD_RNG_STREAM_SIM);
  sd_rng_shuffle_int(&r, perm, k);
  return perm[pos];
}

/* ---- preview --------------------------------------------------------------------------------- */

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

sd_status sd_sim_montage(const sd_sim_params *p, uint64_t seed, int count, int columns,
                         uint8_t **pixels, int *w, int *h) {
  if (!p || !pixels || !w || !h) return SD_ERROR(SD_ERR_ARG, "sd_sim_montage: NULL argument");
  if (count < 1 || columns < 1)
    return SD_ERROR(SD_ERR_ARG, "sd_sim_montage: count (%d) and columns (%d) must be >= 1", count,
                    columns);
  SD_CHECK(sd_sim_params_validate(p));
  const int S = p->size, gap = 2;
  int ncol = columns < count ? columns : count;
  int nrow = (count + ncol - 1) / ncol;
  int W = ncol * S + (ncol - 1) * gap, H = nrow * S + (nrow - 1) * gap;
  sd_status st = SD_OK;
  float *img = NULL, *sorted = NULL;
  uint8_t *out = NULL;
  size_t npix = (size_t)S * S;
  SD_ALLOC_GOTO(st, img, npix, fail);
  SD_ALLOC_GOTO(st, sorted, npix, fail);
  out = sd_calloc((size_t)W * (size_t)H, 1, "preview montage");
  if (!out) {
    st = SD_ERR_NOMEM;
    goto fail;
  }
  for (int k = 0; k < count; k++) {
    SD_CHECK_GOTO(st, sd_sim_render(p, seed, k, img, NULL, NULL), fail);
    memcpy(sorted, img, npix * sizeof *img);
    qsort(sorted, npix, sizeof *sorted, cmp_float);
    double lo = sorted[(size_t)(0.01 * (double)(npix - 1))];
    double hi = sorted[(size_t)(0.99 * (double)(npix - 1))];
    double sc = hi > lo ? 255.0 / (hi - lo) : 0.0;
    int r0 = (k / ncol) * (S + gap), c0 = (k % ncol) * (S + gap);
    for (int i = 0; i < S; i++)
      for (int j = 0; j < S; j++) {
        double v = (img[(size_t)i * S + j] - lo) * sc;
        v = v < 0 ? 0 : v > 255 ? 255 : v;
        out[(size_t)(r0 + i) * W + c0 + j] = (uint8_t)lrint(v);
      }
  }
  free(img);
  free(sorted);
  *pixels = out;
  *w = W;
  *h = H;
  return SD_OK;
fail:
  free(img);
  free(sorted);
  free(out);
  return st;
}

sd_status sd_sim_preview(const sd_sim_params *p, uint64_t seed, int count, int columns,
                         const char *png_path) {
  if (!png_path) return SD_ERROR(SD_ERR_ARG, "sd_sim_preview: NULL path");
  uint8_t *pix = NULL;
  int w = 0, h = 0;
  SD_CHECK(sd_sim_montage(p, seed, count, columns, &pix, &w, &h));
  sd_status st = sd_png_write_gray8(png_path, w, h, pix);
  free(pix);
  if (st != SD_OK) {
    sd_error_trace(__FILE__, __LINE__, __func__);
    return st;
  }
  return SD_OK;
}
