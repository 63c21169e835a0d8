/* sim_model.c - the projected crystals and the defects that edit their column lists.
 *
 * Everything here works in the material frame (Angstrom, see sim_crystal). Structural defects
 * (stacking fault, twin, dislocation) move whole lattice sites, so a CdTe dumbbell is never
 * split; point defects change or add single columns and mark them for the mask.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sim/sim_internal.h"

#define SIM_POISSON_NU 0.3

/* ---- crystals ---------------------------------------------------------------------------- */

#define CDTE_A 6.48
#define CDTE_H (CDTE_A * 0.35355339059327376) /* a / (2 sqrt 2) */
#define STO_A 3.905

/* CdTe zincblende along [110]: centred rectangular dumbbell lattice (a/sqrt2 x a); the two
 * {111} planes seen edge-on lie along t1 and t2. Burgers vectors in projection: the Lomer
 * (pure edge, misfit) a/2[1-10] = t1 - t2 along x, and the edge parts t1, t2 of the two
 * 60-degree dislocations a/2<011> (their screw part lies along the beam and does not show). */
static const sim_crystal g_cdte = {
    .name = "cdte",
    .a = CDTE_A,
    .t1 = {CDTE_H, CDTE_A / 2},
    .t2 = {-CDTE_H, CDTE_A / 2},
    .nbasis = 2,
    .basis = {{0, 0}, {0, CDTE_A / 4}}, /* Cd, then Te 1.62 A along [001] */
    .natoms = {1, 1},
    .z = {{48}, {52}},
    .interstitial = {CDTE_H, CDTE_A / 8}, /* channel centre, 2.43 A from four columns */
    .min_column_distance = CDTE_A / 4,
    .n_sf = 2,
    .sf = {{1, 0}, {0, 1}},
    .n_twin = 2,
    .twin = {{1, 0}, {0, 1}},
    .n_burgers = 3,
    .burgers = {{1, -1}, {1, 0}, {0, 1}},
};

/* SrTiO3 perovskite along [001]: square lattice a x a. Mirrors across {100} or {110} map a
 * square lattice onto itself; {210} gives the Sigma-5 boundary (36.9 degrees) seen in SrTiO3
 * bicrystals. */
static const sim_crystal g_sto = {
    .name = "sto",
    .a = STO_A,
    .t1 = {STO_A, 0},
    .t2 = {0, STO_A},
    .nbasis = 4,
    .basis = {{0, 0}, {STO_A / 2, STO_A / 2}, {STO_A / 2, 0}, {0, STO_A / 2}}, /* Sr, TiO, O, O */
    .natoms = {1, 2, 1, 1},
    .z = {{38}, {22, 8}, {8}, {8}},
    .interstitial = {STO_A / 4, STO_A / 4},
    .min_column_distance = STO_A / 2,
    .n_sf = 2,
    .sf = {{1, 0}, {0, 1}},
    .n_twin = 4,
    .twin = {{1, 2}, {2, 1}, {-1, 2}, {-2, 1}},
    .n_burgers = 2,
    .burgers = {{1, 0}, {0, 1}},
};

const sim_crystal *sim_crystal_get(sd_sim_material m) {
  return m == SD_SIM_MATERIAL_STO ? &g_sto : &g_cdte;
}

/* ---- small vector helpers ---------------------------------------------------------------- */

static double cross2(double ax, double ay, double bx, double by) { return ax * by - ay * bx; }

static void lattice_vec(const sim_crystal *x, const int p[2], double out[2]) {
  out[0] = p[0] * x->t1[0] + p[1] * x->t2[0];
  out[1] = p[0] * x->t1[1] + p[1] * x->t2[1];
}

/* Integer q with p1 q2 - p2 q1 = 1: the lattice step from one plane along p to the next. */
static int plane_step(const int p[2], int q[2]) {
  for (int q1 = -4; q1 <= 4; q1++)
    for (int q2 = -4; q2 <= 4; q2++)
      if (p[0] * q2 - p[1] * q1 == 1) {
        q[0] = q1, q[1] = q2;
        return 1;
      }
  return 0;
}

int sim_defect_is_structural(sd_sim_defect d) {
  return d == SD_SIM_DEFECT_STACKING_FAULT || d == SD_SIM_DEFECT_TWIN ||
         d == SD_SIM_DEFECT_DISLOCATION;
}

/* ---- the perfect crystal ----------------------------------------------------------------- */

sd_status sim_model_build(sim_model *m, const sim_crystal *x, const double origin[2],
                          double rotation_rad, double radius, double half_fov,
                          double point_radius, double z_exponent) {
  memset(m, 0, sizeof *m);
  m->xtal = x;
  /* column weight: sum over the atoms of the column of Z^exponent, relative to the brightest */
  double wmax = 0;
  for (int b = 0; b < x->nbasis; b++) {
    m->weight[b] = 0;
    for (int k = 0; k < x->natoms[b]; k++) m->weight[b] += pow(x->z[b][k], z_exponent);
    wmax = fmax(wmax, m->weight[b]);
  }
  for (int b = 0; b < x->nbasis; b++) m->weight[b] /= wmax;
  m->cth = cos(rotation_rad), m->sth = sin(rotation_rad);
  m->origin[0] = origin[0], m->origin[1] = origin[1];
  m->half_fov = half_fov;
  m->point_radius = point_radius;
  /* site range: invert [t1 t2] on the corners of the bounding square */
  double det = cross2(x->t1[0], x->t1[1], x->t2[0], x->t2[1]);
  double lo1 = 1e300, hi1 = -1e300, lo2 = 1e300, hi2 = -1e300;
  for (int k = 0; k < 4; k++) {
    double px = ((k & 1) ? radius : -radius) - origin[0];
    double py = ((k & 2) ? radius : -radius) - origin[1];
    double n1 = cross2(px, py, x->t2[0], x->t2[1]) / det;
    double n2 = cross2(x->t1[0], x->t1[1], px, py) / det;
    lo1 = fmin(lo1, n1), hi1 = fmax(hi1, n1), lo2 = fmin(lo2, n2), hi2 = fmax(hi2, n2);
  }
  int a1 = (int)floor(lo1) - 1, b1 = (int)ceil(hi1) + 1;
  int a2 = (int)floor(lo2) - 1, b2 = (int)ceil(hi2) + 1;
  double r2 = radius * radius;
  int nsites = 0;
  for (int n1 = a1; n1 <= b1; n1++)
    for (int n2 = a2; n2 <= b2; n2++) {
      double sx = origin[0] + n1 * x->t1[0] + n2 * x->t2[0];
      double sy = origin[1] + n1 * x->t1[1] + n2 * x->t2[1];
      if (sx * sx + sy * sy <= r2) nsites++;
    }
  /* room for a twin's mirrored copies (at most all sites again) and two interstitials */
  m->cap = 2 * nsites * x->nbasis + 8;
  m->col = sd_malloc((size_t)m->cap, sizeof *m->col, "simulator column list");
  if (!m->col) return SD_ERR_NOMEM;
  for (int n1 = a1; n1 <= b1; n1++)
    for (int n2 = a2; n2 <= b2; n2++) {
      double sx = origin[0] + n1 * x->t1[0] + n2 * x->t2[0];
      double sy = origin[1] + n1 * x->t1[1] + n2 * x->t2[1];
      if (sx * sx + sy * sy > r2) continue;
      int32_t site = m->next_site++;
      for (int b = 0; b < x->nbasis; b++) {
        sim_column *c = &m->col[m->n++];
        c->x = sx + x->basis[b][0];
        c->y = sy + x->basis[b][1];
        c->sx = sx, c->sy = sy;
        c->w = c->w0 = (float)m->weight[b];
        c->site = site;
        c->basis = (uint8_t)b;
        c->mark = 0;
      }
    }
  return SD_OK;
}

/* ---- targets ----------------------------------------------------------------------------- */

/* A random point of the central box |X|,|Y| <= frac * half_fov (image axes), in the material
 * frame (image = R(theta) material). */
static void draw_target(const sim_model *m, double frac, sd_rng *r, double t[2]) {
  double X = sd_rng_range(r, -frac, frac) * m->half_fov;
  double Y = sd_rng_range(r, -frac, frac) * m->half_fov;
  t[0] = m->cth * X + m->sth * Y;
  t[1] = -m->sth * X + m->cth * Y;
}

/* Distance from t to the mask geometry of the defects applied so far minus their extent. */
static double clearance(const sim_model *m, const double t[2]) {
  double best = 1e300;
  for (int k = 0; k < m->ndef; k++) {
    const sim_defect_geom *g = &m->def[k];
    double dx = t[0] - g->px0, dy = t[1] - g->py0, d;
    if (g->kind == SIM_MASK_BAND) {
      d = fabs(cross2(g->dx, g->dy, dx, dy)) - g->radius;
    } else if (g->kind == SIM_MASK_DISC) {
      d = sqrt(dx * dx + dy * dy) - g->radius;
    } else if (g->kind == SIM_MASK_POINTS) {
      d = 1e300;
      for (int i = 0; i < m->n; i++)
        if (m->col[i].mark == k + 1) {
          double ex = t[0] - m->col[i].x, ey = t[1] - m->col[i].y;
          d = fmin(d, sqrt(ex * ex + ey * ey) - g->radius);
        }
    } else {
      continue;
    }
    best = fmin(best, d);
  }
  return best;
}

/* Index of the unmarked column nearest to t with bulk weight >= 0.3 (a visible column). */
static int nearest_bright(const sim_model *m, const double t[2]) {
  int best = -1;
  double bd = 1e300;
  for (int i = 0; i < m->n; i++) {
    const sim_column *c = &m->col[i];
    if (c->w0 < 0.3f || c->mark || c->basis == SIM_BASIS_ADDED) continue;
    double dx = c->x - t[0], dy = c->y - t[1], d = dx * dx + dy * dy;
    if (d < bd) bd = d, best = i;
  }
  return best;
}

/* ---- structural defects ------------------------------------------------------------------ */

/* Plane index of position (x, y) for planes along d with step q, relative to the origin. */
static double plane_index(const sim_model *m, const double d[2], const double q[2], double x,
                          double y) {
  return cross2(d[0], d[1], x - m->origin[0], y - m->origin[1]) / cross2(d[0], d[1], q[0], q[1]);
}

static int pick_family(int variant, int n, sd_rng *r) {
  if (variant >= 1) return (variant - 1) % n;
  return (int)sd_rng_below(r, (uint64_t)n);
}

static sd_status add_plane_defect(sim_model *m, sd_sim_defect defect, int fam, const double t[2],
                                  double halfwidth, sd_rng *r, sim_defect_geom *g) {
  const sim_crystal *x = m->xtal;
  const int *p = defect == SD_SIM_DEFECT_TWIN ? x->twin[fam] : x->sf[fam];
  int qi[2];
  if (!plane_step(p, qi)) return SD_ERROR(SD_ERR_INTERNAL, "no lattice step for plane (%d,%d)", p[0], p[1]);
  double d[2], q[2];
  lattice_vec(x, p, d);
  lattice_vec(x, qi, q);
  double dlen = hypot(d[0], d[1]);
  double ux = d[0] / dlen, uy = d[1] / dlen;
  double mt = plane_index(m, d, q, t[0], t[1]);
  /* the line: between planes k and k+1 (fault) or through plane k (twin mirror) */
  double kline = defect == SD_SIM_DEFECT_TWIN ? floor(mt + 0.5) : floor(mt) + 0.5;
  double qx = m->origin[0] + kline * q[0], qy = m->origin[1] + kline * q[1];
  int side = sd_rng_below(r, 2) ? 1 : -1; /* which half is shifted / mirrored */

  if (defect == SD_SIM_DEFECT_STACKING_FAULT) {
    /* Each plane steps by s0 (fraction of the in-plane period) along d; shifting one half by
     * -2 s0 reverses the step at the fault (ABC|BCA: an intrinsic fault). Where s0 = 0 (sto),
     * use half a period: an antiphase-type shift. */
    double s0 = (q[0] * d[0] + q[1] * d[1]) / (dlen * dlen);
    double f = -2.0 * s0 * side;
    f -= floor(f);
    if (f < 1e-6 || f > 1 - 1e-6) f = 0.5;
    for (int i = 0; i < m->n; i++) {
      sim_column *c = &m->col[i];
      double mi = plane_index(m, d, q, c->sx, c->sy);
      if ((mi - kline) * side > 0) {
        c->x += f * d[0], c->y += f * d[1];
        c->sx += f * d[0], c->sy += f * d[1];
      }
    }
  } else {
    /* twin: drop the sites beyond the mirror line and add the mirror images of the sites
     * before it; sites on the line stay (a coherent twin shares that plane) */
    int n0 = m->n, w = 0;
    for (int i = 0; i < n0; i++) {
      double mi = plane_index(m, d, q, m->col[i].sx, m->col[i].sy);
      if ((mi - kline) * side > 0.5) continue;
      m->col[w++] = m->col[i];
    }
    m->n = w;
    int32_t site_base = m->next_site;
    int32_t max_site = -1;
    for (int i = 0; i < w; i++) {
      sim_column c = m->col[i];
      double mi = plane_index(m, d, q, c.sx, c.sy);
      if ((mi - kline) * side >= -0.5) continue;
      if (m->n >= m->cap) return SD_ERROR(SD_ERR_INTERNAL, "twin: column list full (%d)", m->cap);
      /* the site is mirrored across the line; the column offset from its site is rotated by
       * 180 degrees about the plane normal (in projection: mirrored and inverted), which keeps
       * the CdTe polarity across the twin (no wrong bonds) */
      double vx = c.sx - qx, vy = c.sy - qy, dot = vx * ux + vy * uy;
      double msx = qx + 2 * dot * ux - vx, msy = qy + 2 * dot * uy - vy;
      double ox = c.x - c.sx, oy = c.y - c.sy, odot = ox * ux + oy * uy;
      c.x = msx - (2 * odot * ux - ox), c.y = msy - (2 * odot * uy - oy);
      c.sx = msx, c.sy = msy;
      if (c.site >= 0) {
        c.site += site_base;
        if (c.site > max_site) max_site = c.site;
      }
      m->col[m->n++] = c;
    }
    if (max_site >= m->next_site) m->next_site = max_site + 1;
    /* where the mirrored half meets the kept one, columns closer than 60% of the shortest bulk
     * column distance cannot coexist (a grain-boundary structural unit keeps one): drop the
     * mirrored one. A coherent CdTe twin never gets here; the sto Sigma-5 boundary does. */
    double lim = 0.6 * x->min_column_distance, lim2 = lim * lim, near = 2 * x->a;
    int nnear = 0, *nearby = NULL; /* kept columns close to the line */
    nearby = sd_malloc((size_t)w + 1, sizeof *nearby, "twin boundary columns");
    if (!nearby) return SD_ERR_NOMEM;
    for (int j = 0; j < w; j++)
      if (fabs((m->col[j].x - qx) * uy - (m->col[j].y - qy) * ux) < near) nearby[nnear++] = j;
    int keep = w;
    for (int i = w; i < m->n; i++) {
      const sim_column *c = &m->col[i];
      int clash = 0;
      if (fabs((c->x - qx) * uy - (c->y - qy) * ux) < near)
        for (int k = 0; k < nnear && !clash; k++) {
          double ex = c->x - m->col[nearby[k]].x, ey = c->y - m->col[nearby[k]].y;
          clash = ex * ex + ey * ey < lim2;
        }
      if (!clash) m->col[keep++] = *c;
    }
    m->n = keep;
    free(nearby);
  }
  g->kind = SIM_MASK_BAND;
  double along = (t[0] - qx) * ux + (t[1] - qy) * uy;
  g->px0 = qx + along * ux, g->py0 = qy + along * uy;
  g->dx = ux, g->dy = uy;
  g->radius = halfwidth;
  return SD_OK;
}

static void add_dislocation(sim_model *m, int fam, const double t[2], double core_radius,
                            sd_rng *r, sim_defect_geom *g) {
  const sim_crystal *x = m->xtal;
  double b[2];
  lattice_vec(x, x->burgers[fam], b);
  if (sd_rng_below(r, 2)) b[0] = -b[0], b[1] = -b[1];
  double blen = hypot(b[0], b[1]);
  double bx = b[0] / blen, by = b[1] / blen;
  /* core in the open channel next to the site nearest t, so no column sits on it */
  int ic = nearest_bright(m, t);
  double cx = t[0], cy = t[1];
  if (ic >= 0) {
    cx = m->col[ic].sx + x->interstitial[0];
    cy = m->col[ic].sy + x->interstitial[1];
  }
  /* the elastic field is singular at the core: regularise r^2 -> r^2 + rc^2 with a core
   * radius of half the Burgers vector, so columns next to the core do not pile up */
  const double nu = SIM_POISSON_NU, k = blen / (2.0 * M_PI), rc2 = 0.25 * blen * blen,
               r0sq = blen * blen;
  for (int i = 0; i < m->n; i++) {
    sim_column *c = &m->col[i];
    double ex = c->sx - cx, ey = c->sy - cy;
    double xr = ex * bx + ey * by;  /* along b (glide direction) */
    double yr = -ex * by + ey * bx; /* normal to the glide plane */
    double r2 = xr * xr + yr * yr + rc2;
    double th = atan2(yr, xr);
    double ux = k * (th + xr * yr / (2.0 * (1.0 - nu) * r2));
    double uy = -k * ((1.0 - 2.0 * nu) / (4.0 * (1.0 - nu)) * log(r2 / r0sq) +
                      (xr * xr - yr * yr) / (4.0 * (1.0 - nu) * r2));
    double dx = ux * bx - uy * by, dy = ux * by + uy * bx;
    c->x += dx, c->y += dy;
    c->sx += dx, c->sy += dy;
  }
  g->kind = SIM_MASK_DISC;
  g->px0 = cx, g->py0 = cy;
  g->dx = bx, g->dy = by;
  g->radius = core_radius;
}

/* ---- point defects ----------------------------------------------------------------------- */

/* A target in the central 60% of the field, away from the defects applied so far. */
static void point_target(sim_model *m, sd_rng *r, double t[2]) {
  double best[2] = {0, 0}, bestc = -1e300;
  for (int tries = 0; tries < 24; tries++) {
    double c[2];
    draw_target(m, 0.6, r, c);
    double cl = clearance(m, c) - m->point_radius;
    if (cl > bestc) bestc = cl, best[0] = c[0], best[1] = c[1];
    if (cl > 0) break;
  }
  t[0] = best[0], t[1] = best[1];
}

static sd_status add_point_defect(sim_model *m, const sd_sim_params *p, sd_sim_defect defect,
                                  int variant, const double t[2], sd_rng *r, uint8_t mark,
                                  sim_defect_geom *g) {
  const sim_crystal *x = m->xtal;
  int ic = nearest_bright(m, t);
  if (ic < 0) return SD_ERROR(SD_ERR_INTERNAL, "no column left for a %s", sd_sim_defect_name(defect));
  sim_column *c = &m->col[ic];
  g->kind = SIM_MASK_POINTS;
  g->radius = m->point_radius;
  g->px0 = c->x, g->py0 = c->y;
  switch (defect) {
  case SD_SIM_DEFECT_VACANCY: {
    double occ = sd_rng_range(r, 0.0, p->vacancy_occupancy_max);
    if (variant == 1) {
      int32_t site = c->site;
      for (int i = 0; i < m->n; i++)
        if (m->col[i].site == site && m->col[i].w0 >= 0.3f && !m->col[i].mark) {
          m->col[i].w = (float)(m->col[i].w * occ);
          m->col[i].mark = mark;
        }
    } else {
      c->w = (float)(c->w * occ);
      c->mark = mark;
    }
    break;
  }
  case SD_SIM_DEFECT_INTERSTITIAL: {
    if (m->n >= m->cap) return SD_ERROR(SD_ERR_INTERNAL, "interstitial: column list full");
    /* the open channel nearest to the target */
    double bd = 1e300;
    for (int i = 0; i < m->n; i++) {
      const sim_column *s = &m->col[i];
      if (s->basis != 0) continue;
      double ex = s->sx + x->interstitial[0] - t[0], ey = s->sy + x->interstitial[1] - t[1];
      if (ex * ex + ey * ey < bd) bd = ex * ex + ey * ey, c = &m->col[i];
    }
    double occ = sd_rng_range(r, p->interstitial_occupancy_min, p->interstitial_occupancy_max);
    /* the atom is one of the heavy species of the crystal */
    int nb = 0, heavy[SIM_MAX_BASIS];
    for (int b = 0; b < x->nbasis; b++)
      if (m->weight[b] >= 0.3) heavy[nb++] = b;
    double w0 = m->weight[heavy[sd_rng_below(r, (uint64_t)nb)]];
    sim_column *n = &m->col[m->n++];
    n->sx = c->sx, n->sy = c->sy;
    n->x = c->sx + x->interstitial[0], n->y = c->sy + x->interstitial[1];
    n->w0 = (float)w0;
    n->w = (float)(w0 * occ);
    n->site = -1;
    n->basis = SIM_BASIS_ADDED;
    n->mark = mark;
    g->px0 = n->x, g->py0 = n->y;
    break;
  }
  case SD_SIM_DEFECT_SUBSTITUTION: {
    double cst = sd_rng_range(r, p->substitution_contrast_min, p->substitution_contrast_max);
    int heavier = variant == 1 ? 1 : variant == 2 ? 0 : (int)sd_rng_below(r, 2);
    c->w = (float)(heavier ? c->w * (1.0 + cst) : c->w / (1.0 + cst));
    c->mark = mark;
    break;
  }
  case SD_SIM_DEFECT_ANTISITE: {
    /* swap with the nearest bright column of the other species (the dumbbell partner in
     * CdTe; of the four Ti-O neighbours of a Sr column, the one nearest the image centre) */
    int partner = -1;
    double best = 1e300;
    for (int i = 0; i < m->n; i++) {
      const sim_column *o = &m->col[i];
      if (i == ic || o->w0 < 0.3f || o->w0 == c->w0 || o->mark || o->basis == SIM_BASIS_ADDED)
        continue;
      double score = hypot(o->x - c->x, o->y - c->y) + 1e-3 * hypot(o->x, o->y);
      if (score < best) best = score, partner = i;
    }
    if (partner < 0) return SD_ERROR(SD_ERR_INTERNAL, "antisite: no partner column");
    float tmp = c->w;
    c->w = m->col[partner].w;
    m->col[partner].w = tmp;
    c->mark = m->col[partner].mark = mark;
    break;
  }
  default:
    return SD_ERROR(SD_ERR_INTERNAL, "%s is not a point defect", sd_sim_defect_name(defect));
  }
  return SD_OK;
}

/* ---- entry --------------------------------------------------------------------------------- */

sd_status sim_model_add_defect(sim_model *m, const sd_sim_params *p, sd_sim_defect d,
                               int32_t class_index, int variant, sd_rng *r) {
  if (m->ndef >= 2) return SD_ERROR(SD_ERR_INTERNAL, "at most two defects per image");
  int slot = m->ndef;
  sim_defect_geom *g = &m->def[slot];
  memset(g, 0, sizeof *g);
  g->defect = d;
  g->class_index = class_index;
  g->variant = variant;
  const sim_crystal *x = m->xtal;
  double t[2];
  switch (d) {
  case SD_SIM_DEFECT_STACKING_FAULT:
  case SD_SIM_DEFECT_TWIN: {
    int n = d == SD_SIM_DEFECT_TWIN ? x->n_twin : x->n_sf;
    int fam = pick_family(variant, n, r);
    g->variant = fam + 1;
    draw_target(m, 0.3, r, t);
    SD_CHECK(add_plane_defect(m, d, fam, t, p->mask_band_halfwidth, r, g));
    break;
  }
  case SD_SIM_DEFECT_DISLOCATION: {
    int fam = pick_family(variant, x->n_burgers, r);
    g->variant = fam + 1;
    draw_target(m, 0.3, r, t);
    add_dislocation(m, fam, t, p->mask_core_radius, r, g);
    break;
  }
  case SD_SIM_DEFECT_VACANCY:
  case SD_SIM_DEFECT_INTERSTITIAL:
  case SD_SIM_DEFECT_SUBSTITUTION:
  case SD_SIM_DEFECT_ANTISITE:
    point_target(m, r, t);
    SD_CHECK(add_point_defect(m, p, d, variant, t, r, (uint8_t)(slot + 1), g));
    break;
  default:
    return SD_ERROR(SD_ERR_INTERNAL, "cannot add defect %d", (int)d);
  }
  m->ndef++;
  return SD_OK;
}
