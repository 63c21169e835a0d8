/* sim_internal.h - shared between the simulator's files: crystal structures, the column list
 * that defects edit, and the geometry each defect leaves for its mask. Not a public header. */
#ifndef STEMDEFECT_SIM_INTERNAL_H
#define STEMDEFECT_SIM_INTERNAL_H

#include <stdint.h>

#include "stemdefect/rng.h"
#include "stemdefect/sim.h"

#define SIM_MAX_BASIS 4
#define SIM_MAX_PLANES 4
#define SIM_BASIS_ADDED 255 /* basis index of an added (interstitial) column */

/* A projected crystal. Material frame: x, y in Angstrom in the image plane (cdte: x = [1-10],
 * y = [001]; sto: x = [100], y = [010]). Plane families and Burgers vectors are integer
 * combinations (p1, p2) of the primitive vectors t1, t2. */
typedef struct sim_crystal {
  const char *name;
  double a;                        /* lattice parameter, A */
  double t1[2], t2[2];             /* primitive vectors of the projected lattice, A */
  int nbasis;
  double basis[SIM_MAX_BASIS][2];  /* column offsets from the lattice site, A */
  int natoms[SIM_MAX_BASIS];       /* atoms per column per repeat along the beam */
  double z[SIM_MAX_BASIS][2];      /* their atomic numbers */
  double interstitial[2];          /* offset of the open-channel site from a lattice site, A */
  double min_column_distance;      /* shortest distance between two bulk columns, A */
  int n_sf, sf[SIM_MAX_PLANES][2];       /* stacking-fault plane directions */
  int n_twin, twin[SIM_MAX_PLANES][2];   /* twin (mirror) plane directions */
  int n_burgers, burgers[SIM_MAX_PLANES][2];
} sim_crystal;

const sim_crystal *sim_crystal_get(sd_sim_material m);

/* One projected column, in the material frame (A). */
typedef struct sim_column {
  double x, y;   /* column position */
  double sx, sy; /* position of its lattice site (moves with the site) */
  float w;       /* intensity weight: sum Z^1.7 * occupancy, relative to the brightest column */
  float w0;      /* bulk weight of the species on this column */
  int32_t site;  /* lattice site id (-1 for added columns) */
  uint8_t basis; /* basis index, SIM_BASIS_ADDED for interstitials */
  uint8_t mark;  /* 0, or 1 + the defect slot that changed this column (point defects) */
} sim_column;

/* What one defect paints into the mask. */
typedef enum sim_mask_kind {
  SIM_MASK_NONE = 0,
  SIM_MASK_POINTS, /* discs around the columns marked with this slot */
  SIM_MASK_BAND,   /* |distance to the line (px0, py0) + t (dx, dy)| <= halfwidth */
  SIM_MASK_DISC    /* |P - (px0, py0)| <= radius */
} sim_mask_kind;

typedef struct sim_defect_geom {
  sd_sim_defect defect;
  int32_t class_index;
  int variant;
  sim_mask_kind kind;
  double px0, py0; /* material frame, A: a point of the line, the disc centre, or the site */
  double dx, dy;   /* unit direction of the line */
  double radius;   /* band half width / disc radius / point radius, A */
} sim_defect_geom;

/* The crystal of one image before rendering. */
typedef struct sim_model {
  const sim_crystal *xtal;
  sim_column *col; /* (cap) */
  int n, cap;
  int32_t next_site;
  double origin[2];   /* lattice origin o = u t1 + v t2, A */
  double cth, sth;     /* orientation: image = R(theta) material */
  double half_fov;    /* half the field of view, A */
  double point_radius; /* point-defect mask radius, A */
  double weight[SIM_MAX_BASIS]; /* bulk column weights: sum Z^z_exponent, brightest = 1 */
  int ndef;
  sim_defect_geom def[2];
} sim_model;

/* Fills m->col with the perfect crystal within radius `radius` (A) of the image centre, for an
 * image rotated by rotation_rad whose field of view is 2 half_fov (A); column weights are
 * sum(Z^z_exponent) relative to the brightest column. Allocates m->col
 * (free() it) with room for the copies a twin adds. */
sd_status sim_model_build(sim_model *m, const sim_crystal *x, const double origin[2],
                          double rotation_rad, double radius, double half_fov,
                          double point_radius, double z_exponent);

/* Applies defect `d` (class `class_index`, variant) to the model as slot m->ndef, drawing
 * from r. Records its mask geometry in m->def[slot]. */
sd_status sim_model_add_defect(sim_model *m, const sd_sim_params *p, sd_sim_defect d,
                               int32_t class_index, int variant, sd_rng *r);

int sim_defect_is_structural(sd_sim_defect d);

#endif
