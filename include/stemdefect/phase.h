/* phase.h - the geometric phase of the lattice fringes (geometric phase analysis, GPA) and the
 * shapes of the extended defects read from it.
 *
 * The deviation from the registered bulk lattice (lattice.h) finds what the lattice model cannot
 * predict: missing, extra or changed columns. It cannot find a defect that is a lattice
 * translation or rotation of whole regions, because the local registration follows it. The
 * phase of each lattice fringe can: for a fringe g (a Fourier peak of the lattice), the local
 * complex amplitude A_g(r) = Gauss_sigma * (image(r) exp(-2 pi i g . r)) has the phase
 * -2 pi g . u(r), where u(r) is the local displacement of the lattice. Its gradient (computed as
 * Im(conj(A) grad A) / |A|^2, no unwrapping) minus its median over the image is ~0 in the bulk:
 *
 *   - stacking fault (one half shifted by a non-lattice vector): the phase steps across the
 *     fault plane, so the phase-gradient energy peaks in a band along a lattice plane;
 *   - twin boundary (one half mirrored): the matrix fringes stop being coherent beyond the
 *     mirror plane, so the energy is low on the matrix side and high on the twinned side; the
 *     boundary is the best two-level step along a lattice plane, moved back towards the matrix
 *     side by the half width of the window (which sees the twinned side only that far in);
 *   - dislocation: the phase of a fringe with g . b != 0 winds by 2 pi around the core, so the
 *     winding number around a small square loop (a Burgers circuit in phase) locates the core.
 *
 * Lines are searched along the planes of the strongest fringes (normal = g), offsets every
 * 0.5 px. All lengths in sd_phase_params are in lattice periods (the shortest lattice vector),
 * so the same settings work at any magnification. Nothing here calls MPI or touches files;
 * deterministic.
 */
#ifndef STEMDEFECT_PHASE_H
#define STEMDEFECT_PHASE_H

#include <stddef.h>
#include <stdint.h>

#include "stemdefect/lattice.h"
#include "stemdefect/status.h"

typedef enum sd_phase_shape {
  SD_PHASE_SHAPE_NONE = 0,     /* not an extended defect: keep the deviation detection */
  SD_PHASE_SHAPE_FAULT = 1,    /* band where the phase steps (stacking fault, antiphase boundary) */
  SD_PHASE_SHAPE_BOUNDARY = 2, /* band at the edge of the coherent matrix (twin, grain boundary) */
  SD_PHASE_SHAPE_CORE = 3      /* disc where the phase winds (dislocation core) */
} sd_phase_shape;

typedef struct sd_phase_params {
  double sigma;          /* GPA window (Gaussian sigma) for faults and boundaries */
  double core_sigma;     /* GPA window for the winding around a core */
  double core_loop;      /* half side of the square loop of the winding number */
  double band_halfwidth; /* half width of the band mask of a fault or boundary */
  double boundary_shift; /* a boundary line is moved this far towards the matrix (low) side */
  double core_radius;    /* radius of the disc mask of a core */
  int fringes;           /* strongest fringes (Fourier peaks of distinct directions) used (2..6) */
} sd_phase_params;

void sd_phase_params_default(sd_phase_params *p);

/* Floats of work space sd_phase_detect needs for an (h, w) image. */
size_t sd_phase_work_floats(int h, int w);

/* Shortest lattice period of lat (px): min |a1|, |a2|, |a1 + a2|, |a1 - a2|. */
double sd_phase_period(const sd_lattice *lat);

/* Phase-gradient energy (h, w) of img (robust z-scored) for the fringes of lat with window
 * sigma_px: sum over fringes of sqrt(peak power) |grad phase - median|^2, divided by the weight
 * sum (rad^2 / px^2). work: sd_phase_work_floats floats. Returns the number of
 * fringes used (0 = fewer than 2 indexed peaks: energy untouched). */
int sd_phase_energy(const float *img, int h, int w, const sd_lattice *lat, double sigma_px,
                    int fringes, float *work, float *energy);

/* Detects the extended defect of the given shape in img (robust z-scored, the lattice lat found
 * on it) and writes its mask into out (h, w, 0/1). *found = 1 when written; 0 when the shape
 * cannot be found (fewer than 2 fringes, no winding, image too small for the band): out is
 * left untouched so the caller keeps its own detection. work: sd_phase_work_floats floats.
 * SD_ERR_ARG for a bad argument, SD_ERR_NOMEM. */
sd_status sd_phase_detect(const float *img, int h, int w, const sd_lattice *lat,
                          const sd_phase_params *p, sd_phase_shape shape, float *work,
                          uint8_t *out, int *found);

#endif
