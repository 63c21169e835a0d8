/* sim_render.c - one simulated image: draws its geometry, builds the defective crystal
 * (sim_model.c), rasterises the columns as probe-blurred Gaussians with drift and scan jitter,
 * adds background and noise, and paints the ground-truth mask.
 *
 * Random streams: (seed, index, SD_RNG_STREAM_SIM) draws the geometry and two sub-seeds, one
 * for the defects and one for the noise (re-keyed per row), so switching defects or noise off
 * (sd_sim_render_flags) leaves every other draw unchanged.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sim/sim_internal.h"

#define SIM_FWHM_PER_SIGMA 2.3548200450309493
#define SIM_WINDOW_SIGMAS 4.0

/* Geometry of one image, all drawn before anything else. */
typedef struct sim_geometry {
  double pix;         /* A/px */
  double rot;         /* radians */
  double origin_u, origin_v;
  double sigma;       /* probe, A */
  double dose;
  double bgc[5];      /* background polynomial coefficients */
  double shear, stretch;
  uint64_t defect_seed, noise_seed, column_seed;
} sim_geometry;

static void draw_geometry(const sd_sim_params *p, sd_rng *r, double *jitter, sim_geometry *g) {
  g->defect_seed = sd_rng_u64(r);
  g->noise_seed = sd_rng_u64(r);
  g->column_seed = sd_rng_u64(r);
  g->pix = sd_rng_range(r, p->pixel_size_min, p->pixel_size_max);
  g->rot = (p->rotation_deg + sd_rng_range(r, -p->rotation_max_deg, p->rotation_max_deg)) *
           (M_PI / 180.0);
  g->origin_u = sd_rng_uniform(r);
  g->origin_v = sd_rng_uniform(r);
  g->sigma = sd_rng_range(r, p->probe_sigma_min, p->probe_sigma_max);
  g->dose = exp(sd_rng_range(r, log(p->dose_min), log(p->dose_max)));
  for (int k = 0; k < 5; k++) g->bgc[k] = sd_rng_range(r, -0.4, 0.4);
  g->shear = sd_rng_range(r, -p->drift, p->drift);
  g->stretch = sd_rng_range(r, -p->drift, p->drift);
  /* scan jitter: AR(1) over rows with stationary standard deviation scan_jitter */
  double rho = p->scan_jitter_corr, innov = sqrt(1.0 - rho * rho);
  double prev = p->scan_jitter * sd_rng_normal(r);
  for (int i = 0; i < p->size; i++) {
    if (i > 0) prev = rho * prev + innov * p->scan_jitter * sd_rng_normal(r);
    jitter[i] = prev;
  }
}

/* Chooses the defects of an image with label `label`: out[0] the primary class, out[1] an
 * optional second class. Returns how many (0..2). */
static int choose_defects(const sd_sim_params *p, int32_t label, sd_rng *r, int32_t out[2]) {
  if (label <= 0) return 0;
  out[0] = label;
  double u = sd_rng_uniform(r);
  int cand[SD_SIM_MAX_CLASSES], nc = 0, nsame = 0, same[SD_SIM_MAX_CLASSES];
  for (int c = 1; c < p->num_classes; c++) {
    if (c == label) continue;
    if (p->classes[c].defect != p->classes[label].defect)
      cand[nc++] = c;
    else
      same[nsame++] = c;
  }
  if (nc == 0) { /* only classes of the same defect type remain: use them */
    memcpy(cand, same, sizeof(int) * (size_t)nsame);
    nc = nsame;
  }
  if (nc == 0 || !(u < p->multi_defect_prob)) return 1;
  out[1] = cand[sd_rng_below(r, (uint64_t)nc)];
  return 2;
}

/* Per-column static intensity spread, keyed by the lattice site so that the defect-free and
 * the defective image of one index agree column by column. Uniform with std `spread`. */
static double column_factor(uint64_t key, const sim_column *c, double spread) {
  if (spread <= 0 || c->site < 0) return 1.0;
  uint64_t h = sd_rng_mix64(key ^ ((uint64_t)(uint32_t)c->site * 0x9E3779B97F4A7C15ULL) ^
                            ((uint64_t)c->basis << 56));
  double u = (double)(h >> 11) * 0x1.0p-53;
  return 1.0 + spread * 1.7320508075688772 * (2.0 * u - 1.0);
}

/* Adds amp * exp(-|x - c|^2 / (2 s^2)) over the +-rad window, row i sampled at x = j + jit[i]. */
static void splat(float *img, int S, double cx, double cy, double amp, double inv2s2, double rad,
                  const double *jit) {
  int i0 = (int)ceil(cy - rad), i1 = (int)floor(cy + rad);
  if (i0 < 0) i0 = 0;
  if (i1 > S - 1) i1 = S - 1;
  double q = exp(-2.0 * inv2s2);
  for (int i = i0; i <= i1; i++) {
    double dy = i - cy;
    double gy = amp * exp(-dy * dy * inv2s2);
    double xc = cx - jit[i];
    int j0 = (int)ceil(xc - rad), j1 = (int)floor(xc + rad);
    if (j0 < 0) j0 = 0;
    if (j1 > S - 1) j1 = S - 1;
    if (j0 > j1) continue;
    double dx = j0 - xc;
    double gv = gy * exp(-dx * dx * inv2s2);
    double ratio = exp(-(2.0 * dx + 1.0) * inv2s2);
    float *row = img + (size_t)i * S;
    for (int j = j0; j <= j1; j++) { /* exp recurrence: 3 exp per row instead of one per pixel */
      row[j] += (float)gv;
      gv *= ratio;
      ratio *= q;
    }
  }
}

/* Detector lag along the fast scan direction, made zero-phase (forward then backward
 * exponential smoothing) so columns do not move; keeps the mean. */
static void smear_rows(float *img, int S, double alpha) {
  double b = 1.0 - alpha;
  for (int i = 0; i < S; i++) {
    float *row = img + (size_t)i * S;
    double y = row[0];
    for (int j = 0; j < S; j++) row[j] = (float)(y = b * row[j] + alpha * y);
    y = row[S - 1];
    for (int j = S - 1; j >= 0; j--) row[j] = (float)(y = b * row[j] + alpha * y);
  }
}

/* Separable Gaussian smoothing (standard deviation sigma px, edges replicated), in place;
 * tmp: (S, S) scratch. */
static void gaussian_blur(float *img, float *tmp, int S, double sigma) {
  enum { KMAX = 10 };
  int K = (int)ceil(3.0 * sigma);
  if (K > KMAX) K = KMAX;
  double k[KMAX + 1], sum = 0;
  for (int d = 0; d <= K; d++) sum += (d ? 2 : 1) * (k[d] = exp(-0.5 * d * d / (sigma * sigma)));
  for (int d = 0; d <= K; d++) k[d] /= sum;
  for (int i = 0; i < S; i++) {
    const float *row = img + (size_t)i * S;
    for (int j = 0; j < S; j++) {
      double v = k[0] * row[j];
      for (int d = 1; d <= K; d++) {
        int a = j - d < 0 ? 0 : j - d, b = j + d > S - 1 ? S - 1 : j + d;
        v += k[d] * (row[a] + row[b]);
      }
      tmp[(size_t)i * S + j] = (float)v;
    }
  }
  for (int i = 0; i < S; i++)
    for (int j = 0; j < S; j++) {
      double v = k[0] * tmp[(size_t)i * S + j];
      for (int d = 1; d <= K; d++) {
        int a = i - d < 0 ? 0 : i - d, b = i + d > S - 1 ? S - 1 : i + d;
        v += k[d] * (tmp[(size_t)a * S + j] + tmp[(size_t)b * S + j]);
      }
      img[(size_t)i * S + j] = (float)v;
    }
}

/* Material frame (A) -> pixel coordinates with drift. */
static void to_pixel(const sim_geometry *g, double cth, double sth, double half_px, double x,
                     double y, double *px, double *py) {
  double X = cth * x - sth * y, Y = sth * x + cth * y;
  double Xd = X + g->shear * Y, Yd = Y * (1.0 + g->stretch);
  *px = Xd / g->pix + half_px;
  *py = Yd / g->pix + half_px;
}

static void paint_mask(const sd_sim_params *p, const sim_model *m, const sim_geometry *g,
                       const double *jit, const int order[2], uint8_t *mask) {
  int S = p->size;
  double c = 0.5 * (S - 1), cth = m->cth, sth = m->sth;
  /* the marked columns of each slot */
  double pts[2][8][2];
  int npts[2] = {0, 0};
  for (int i = 0; i < m->n; i++) {
    int k = m->col[i].mark - 1;
    if (k < 0 || k > 1 || npts[k] >= 8) continue;
    pts[k][npts[k]][0] = m->col[i].x;
    pts[k][npts[k]][1] = m->col[i].y;
    npts[k]++;
  }
  for (int i = 0; i < S; i++) {
    double Y = (i - c) * g->pix;
    double Ys = Y / (1.0 + g->stretch);
    for (int j = 0; j < S; j++) {
      double X = (j - c + jit[i]) * g->pix;
      double Xs = X - g->shear * Ys;
      double x = cth * Xs + sth * Ys, y = -sth * Xs + cth * Ys;
      uint8_t v = 0;
      for (int o = 0; o < m->ndef; o++) {
        int k = order[o];
        const sim_defect_geom *d = &m->def[k];
        double ex = x - d->px0, ey = y - d->py0, r2 = d->radius * d->radius;
        int in = 0;
        if (d->kind == SIM_MASK_BAND) {
          in = fabs(d->dx * ey - d->dy * ex) <= d->radius;
        } else if (d->kind == SIM_MASK_DISC) {
          in = ex * ex + ey * ey <= r2;
        } else if (d->kind == SIM_MASK_POINTS) {
          for (int t = 0; t < npts[k] && !in; t++) {
            double fx = x - pts[k][t][0], fy = y - pts[k][t][1];
            in = fx * fx + fy * fy <= r2;
          }
        }
        if (in) v = (uint8_t)d->class_index;
      }
      mask[(size_t)i * S + j] = v;
    }
  }
}

sd_status sd_sim_render_ex(const sd_sim_params *p, uint64_t seed, int64_t index, unsigned flags,
                           float *image, uint8_t *mask, int32_t *label, sd_sim_info *info) {
  if (!p || !image) return SD_ERROR(SD_ERR_ARG, "sd_sim_render: params and image must not be NULL");
  if (index < 0) return SD_ERROR(SD_ERR_ARG, "sd_sim_render: image index %lld is negative", (long long)index);
  SD_CHECK(sd_sim_params_validate(p));
  const int S = p->size;
  const sim_crystal *x = sim_crystal_get(p->material);
  int32_t lab = sd_sim_label_for_index(p, seed, index);

  sd_status st = SD_OK;
  sim_model m;
  memset(&m, 0, sizeof m);
  double *jit = NULL;
  float *tmp = NULL;
  SD_ALLOC_GOTO(st, jit, (size_t)S, done);

  sd_rng rg;
  sd_rng_init(&rg, seed, (uint64_t)index, SD_RNG_STREAM_SIM);
  sim_geometry g;
  draw_geometry(p, &rg, jit, &g);
  if (flags & SD_SIM_RENDER_NO_DISTORTION) {
    g.shear = g.stretch = 0.0;
    memset(jit, 0, sizeof *jit * (size_t)S);
  }

  /* defects: which classes, applied structural-first; the mask is painted primary-first */
  sd_rng rd;
  sd_rng_init(&rd, g.defect_seed, (uint64_t)index, SD_RNG_STREAM_SIM);
  int32_t cls[2] = {0, 0};
  int ndef = choose_defects(p, lab, &rd, cls);
  if (flags & SD_SIM_RENDER_NO_DEFECTS) ndef = 0;
  int apply[2] = {0, 1};
  if (ndef == 2 && !sim_defect_is_structural(p->classes[cls[0]].defect) &&
      sim_defect_is_structural(p->classes[cls[1]].defect))
    apply[0] = 1, apply[1] = 0;
  int has_twin = 0;
  for (int k = 0; k < ndef; k++) has_twin |= p->classes[cls[k]].defect == SD_SIM_DEFECT_TWIN;

  double L = S * g.pix, half = 0.5 * L;
  double margin = SIM_WINDOW_SIGMAS * g.sigma + 3.0 + x->a; /* blur, displacements, a cell */
  /* a twin mirrors the far side of a line up to 0.3 half-FOV (x sqrt2) off centre */
  double radius = has_twin ? half * M_SQRT2 * (1.0 + 2 * 0.3) + 2 * x->a + margin
                           : half * M_SQRT2 + margin;
  double origin[2] = {g.origin_u * x->t1[0] + g.origin_v * x->t2[0],
                      g.origin_u * x->t1[1] + g.origin_v * x->t2[1]};
  double point_radius = p->mask_point_radius * SIM_FWHM_PER_SIGMA * g.sigma;
  SD_CHECK_GOTO(st, sim_model_build(&m, x, origin, g.rot, radius, half, point_radius,
                                    p->z_exponent),
                done);
  for (int k = 0; k < ndef; k++) {
    const sd_sim_class *c = &p->classes[cls[apply[k]]];
    SD_CHECK_GOTO(st, sim_model_add_defect(&m, p, c->defect, cls[apply[k]], c->variant, &rd),
                  done);
  }
  /* slot of the primary and of the secondary defect */
  int order[2] = {apply[0] == 0 ? 0 : 1, apply[0] == 0 ? 1 : 0};

  /* background: a smooth quadratic field around its mean */
  double bg = p->background;
  double var = (flags & SD_SIM_RENDER_FLAT_BACKGROUND) ? 0.0 : p->background_variation;
  double c = 0.5 * (S - 1), inv_half = S > 1 ? 2.0 / (S - 1) : 0.0;
  for (int i = 0; i < S; i++) {
    double v = (i - c) * inv_half;
    for (int j = 0; j < S; j++) {
      double u = (j - c) * inv_half;
      double f = g.bgc[0] * u + g.bgc[1] * v + g.bgc[2] * (u * u - 1.0 / 3) + g.bgc[3] * u * v +
                 g.bgc[4] * (v * v - 1.0 / 3);
      image[(size_t)i * S + j] = (float)fmax(0.0, bg * (1.0 + var * f));
    }
  }

  /* columns */
  double sig_px = g.sigma / g.pix, inv2s2 = 1.0 / (2.0 * sig_px * sig_px);
  double rad = SIM_WINDOW_SIGMAS * sig_px, maxjit = 0;
  for (int i = 0; i < S; i++) maxjit = fmax(maxjit, fabs(jit[i]));
  for (int i = 0; i < m.n; i++) {
    const sim_column *col = &m.col[i];
    if (col->w <= 0.0f) continue;
    double px, py;
    to_pixel(&g, m.cth, m.sth, c, col->x, col->y, &px, &py);
    if (py + rad < 0 || py - rad > S - 1 || px + rad + maxjit < 0 || px - rad - maxjit > S - 1)
      continue;
    double amp = col->w * column_factor(g.column_seed, col, p->column_variation);
    splat(image, S, px, py, amp, inv2s2, rad, jit);
  }

  /* counts: the brightest bulk column peak (weight 1 on the mean background) -> dose */
  double scale = g.dose / (1.0 + bg);
  size_t npix = (size_t)S * S;
  if (flags & SD_SIM_RENDER_NOISE_FREE) {
    for (size_t k = 0; k < npix; k++) image[k] = (float)(image[k] * scale);
  } else {
    double gn = p->gaussian_noise * g.dose;
    for (int i = 0; i < S; i++) {
      sd_rng rn;
      sd_rng_init(&rn, g.noise_seed, (uint64_t)i, SD_RNG_STREAM_SIM);
      float *row = image + (size_t)i * S;
      for (int j = 0; j < S; j++) {
        double lam = row[j] * scale;
        double v = (double)sd_rng_poisson(&rn, lam);
        if (gn > 0) v += gn * sd_rng_normal(&rn);
        row[j] = (float)v;
      }
    }
  }

  if (p->scan_smear > 0) smear_rows(image, S, p->scan_smear);
  if (p->post_blur > 0) {
    SD_ALLOC_GOTO(st, tmp, npix, done);
    gaussian_blur(image, tmp, S, p->post_blur);
  }

  if (mask) {
    if (m.ndef == 0)
      memset(mask, 0, npix);
    else
      paint_mask(p, &m, &g, jit, order, mask);
  }
  if (label) *label = lab;
  if (info) {
    memset(info, 0, sizeof *info);
    info->pixel_size = g.pix;
    info->rotation_deg = g.rot * (180.0 / M_PI);
    info->probe_sigma = g.sigma;
    info->dose = g.dose;
    info->shear = g.shear;
    info->stretch = g.stretch;
    info->label = lab;
    info->num_defects = m.ndef;
    for (int k = 0; k < m.ndef; k++) {
      const sim_defect_geom *d = &m.def[order[k]];
      info->defects[k].defect = d->defect;
      info->defects[k].class_index = d->class_index;
      info->defects[k].variant = d->variant;
      to_pixel(&g, m.cth, m.sth, c, d->px0, d->py0, &info->defects[k].x, &info->defects[k].y);
    }
  }
done:
  free(m.col);
  free(jit);
  free(tmp);
  return st;
}

sd_status sd_sim_render(const sd_sim_params *p, uint64_t seed, int64_t index, float *image,
                        uint8_t *mask, int32_t *label) {
  SD_CHECK(sd_sim_render_ex(p, seed, index, 0u, image, mask, label, NULL));
  return SD_OK;
}
