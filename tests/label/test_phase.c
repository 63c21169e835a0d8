/* test_phase.c - extended defects from the lattice fringe phase (phase.h) on synthetic lattices
 * whose defect geometry is known exactly: a stacking-type fault (one side translated by half a
 * lattice vector along the fault plane) in two orientations, a coherent twin (the far side the
 * mirror image of the near side across the boundary), an edge dislocation (Volterra
 * displacement b theta / 2 pi), the perfect lattice (no winding: no core) and one swapped
 * dumbbell (antisite). The lattice is estimated on the image as the pseudo-labels do. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sd_test.h"
#include "stemdefect/image.h"
#include "stemdefect/lattice.h"
#include "stemdefect/phase.h"
#include "stemdefect/pseudolabel.h"
#include "stemdefect/rng.h"

enum { S = 96 };

static const double A1[2] = {11.0, 0.0}, A2[2] = {3.0, 10.0}; /* oblique, px */
static const double ORG[2] = {2.3, 1.7};
#define SIGMA 1.8
#define NOISE 0.08

typedef enum { DEF_NONE, DEF_FAULT_A2, DEF_FAULT_A1, DEF_TWIN, DEF_DISLOCATION } def_kind;

static void add_column(float *img, double cx, double cy) {
  int x0 = (int)floor(cx - 4 * SIGMA), x1 = (int)ceil(cx + 4 * SIGMA);
  int y0 = (int)floor(cy - 4 * SIGMA), y1 = (int)ceil(cy + 4 * SIGMA);
  for (int y = y0 < 0 ? 0 : y0; y <= y1 && y < S; y++)
    for (int x = x0 < 0 ? 0 : x0; x <= x1 && x < S; x++) {
      double d2 = (x - cx) * (x - cx) + (y - cy) * (y - cy);
      img[y * S + x] += (float)exp(-0.5 * d2 / (SIGMA * SIGMA));
    }
}

/* the defect line (fault and twin): through p0 along dir; the core at CORE */
static const int KLINE = 4; /* fault / boundary between sites n < KLINE and n >= KLINE */
static const double CORE[2] = {47.3, 48.6};

static void line_of(def_kind k, double p0[2], double dir[2]) {
  const double *across = k == DEF_FAULT_A1 ? A2 : A1, *along = k == DEF_FAULT_A1 ? A1 : A2;
  p0[0] = ORG[0] + (KLINE - 0.5) * across[0];
  p0[1] = ORG[1] + (KLINE - 0.5) * across[1];
  double l = hypot(along[0], along[1]);
  dir[0] = along[0] / l;
  dir[1] = along[1] / l;
}

static void render(float *img, def_kind kind, uint64_t seed) {
  memset(img, 0, sizeof(float) * S * S);
  double p0[2], dir[2];
  line_of(kind == DEF_FAULT_A1 ? DEF_FAULT_A1 : DEF_FAULT_A2, p0, dir);
  for (int n1 = -30; n1 <= 30; n1++)
    for (int n2 = -30; n2 <= 30; n2++) {
      double x = ORG[0] + n1 * A1[0] + n2 * A2[0], y = ORG[1] + n1 * A1[1] + n2 * A2[1];
      if (kind == DEF_FAULT_A2 && n1 >= KLINE) { /* shift along the plane (a2) by a2 / 2 */
        x += 0.5 * A2[0];
        y += 0.5 * A2[1];
      } else if (kind == DEF_FAULT_A1 && n2 >= KLINE) {
        x += 0.5 * A1[0];
        y += 0.5 * A1[1];
      } else if (kind == DEF_TWIN && n1 >= KLINE) {
        continue; /* the far side is another grain, drawn below */
      } else if (kind == DEF_DISLOCATION) {
        double th = atan2(y - CORE[1], x - CORE[0]);
        x += A1[0] * th / (2 * M_PI);
        y += A1[1] * th / (2 * M_PI);
      }
      if (x < -10 || y < -10 || x > S + 10 || y > S + 10)
        continue;
      add_column(img, x, y);
    }
  if (kind == DEF_TWIN) {
    /* a coherent twin: beyond the line, the mirror images (across the line) of the matrix
     * sites before it; the planes parallel to the line are shared by both sides */
    for (int n1 = -30; n1 < KLINE; n1++)
      for (int n2 = -30; n2 <= 30; n2++) {
        double vx = ORG[0] + n1 * A1[0] + n2 * A2[0] - p0[0];
        double vy = ORG[1] + n1 * A1[1] + n2 * A2[1] - p0[1];
        double t = vx * dir[0] + vy * dir[1];
        double x = p0[0] + 2 * t * dir[0] - vx, y = p0[1] + 2 * t * dir[1] - vy;
        if (x < -10 || y < -10 || x > S + 10 || y > S + 10)
          continue;
        add_column(img, x, y);
      }
  }
  sd_rng r;
  sd_rng_init(&r, seed, 3, 4);
  for (int i = 0; i < S * S; i++)
    img[i] += (float)(NOISE * sd_rng_normal(&r));
  SD_EXPECT_OK(sd_normalize_robust(img, (size_t)S * S, NULL));
}

/* IoU of the detected band with the true band |distance to the line| < hw */
static double band_iou(const uint8_t *m, const double p0[2], const double dir[2], double hw) {
  int64_t in = 0, un = 0;
  for (int y = 0; y < S; y++)
    for (int x = 0; x < S; x++) {
      double d = fabs((x - p0[0]) * dir[1] - (y - p0[1]) * dir[0]);
      int t = d < hw, p = m[y * S + x] != 0;
      in += t && p;
      un += t || p;
    }
  return un ? (double)in / (double)un : 0;
}

static void detect(const float *img, sd_phase_shape shape, double boundary_shift, uint8_t *m,
                   int *found, double *period, double *hw) {
  sd_lattice_params lp;
  sd_lattice_params_default(&lp);
  sd_lattice lat;
  SD_EXPECT_OK(sd_lattice_estimate(img, S, S, &lp, &lat));
  sd_phase_params pp;
  sd_phase_params_default(&pp);
  if (boundary_shift >= 0)
    pp.boundary_shift = boundary_shift;
  float *work = malloc(sizeof(float) * sd_phase_work_floats(S, S));
  SD_EXPECT(work != NULL);
  memset(m, 0, S * S);
  SD_EXPECT_OK(sd_phase_detect(img, S, S, &lat, &pp, shape, work, m, found));
  *period = sd_phase_period(&lat);
  *hw = pp.band_halfwidth * *period;
  free(work);
}

static void test_fault(def_kind kind) {
  float *img = malloc(sizeof(float) * S * S);
  uint8_t *m = malloc(S * S);
  render(img, kind, 11);
  int found = 0;
  double period, hw, p0[2], dir[2];
  detect(img, SD_PHASE_SHAPE_FAULT, -1, m, &found, &period, &hw);
  SD_EXPECT_MSG(fabs(period - 10.44) < 0.3, "shortest period %.2f px (true 10.44)", period);
  SD_EXPECT(found == 1);
  line_of(kind, p0, dir);
  double iou = band_iou(m, p0, dir, hw);
  SD_EXPECT_MSG(iou > 0.7, "fault along %s: band IoU %.3f with the true fault plane",
                kind == DEF_FAULT_A1 ? "a1" : "a2", iou);
  free(img);
  free(m);
}

static void test_twin(void) {
  /* Without the shift calibrated on the simulated CdTe twins (boundary_shift = 0), the band is
   * the step of the phase energy: at the edge of the coherent matrix, i.e. between the last
   * matrix plane (half a plane spacing before the line) and the line. */
  float *img = malloc(sizeof(float) * S * S);
  uint8_t *m = malloc(S * S);
  render(img, DEF_TWIN, 12);
  int found = 0;
  double period, hw, p0[2], dir[2];
  detect(img, SD_PHASE_SHAPE_BOUNDARY, 0.0, m, &found, &period, &hw);
  SD_EXPECT(found == 1);
  line_of(DEF_TWIN, p0, dir);
  double nx = dir[1], ny = -dir[0]; /* towards the twinned side */
  if (nx * A1[0] + ny * A1[1] < 0)
    nx = -nx, ny = -ny;
  double spacing = fabs(nx * A1[0] + ny * A1[1]);
  double iou = band_iou(m, p0, dir, hw), sd = 0, sn = 0;
  for (int y = 0; y < S; y++)
    for (int x = 0; x < S; x++)
      if (m[y * S + x]) {
        double d = (x - p0[0]) * nx + (y - p0[1]) * ny;
        sd += d;
        sn++;
      }
  double c = sn ? sd / sn : 1e9;
  SD_EXPECT_MSG(c > -0.5 * spacing - 2.0 && c < 2.0 && iou > 0.25,
                "twin boundary: band centre %.1f px from the boundary (last matrix plane at %.1f), "
                "IoU %.3f with the true band",
                c, -0.5 * spacing, iou);
  free(img);
  free(m);
}

static void test_core(void) {
  float *img = malloc(sizeof(float) * S * S);
  uint8_t *m = malloc(S * S);
  render(img, DEF_DISLOCATION, 13);
  int found = 0;
  double period, hw;
  detect(img, SD_PHASE_SHAPE_CORE, -1, m, &found, &period, &hw);
  SD_EXPECT(found == 1);
  double sx = 0, sy = 0, sn = 0;
  for (int y = 0; y < S; y++)
    for (int x = 0; x < S; x++)
      if (m[y * S + x]) {
        sx += x;
        sy += y;
        sn++;
      }
  double cx = sn ? sx / sn : -1, cy = sn ? sy / sn : -1;
  SD_EXPECT_MSG(hypot(cx - CORE[0], cy - CORE[1]) < 3.0,
                "dislocation core found at (%.1f, %.1f), true (%.1f, %.1f)", cx, cy, CORE[0],
                CORE[1]);
  /* the perfect lattice has no winding: no core, mask untouched */
  render(img, DEF_NONE, 14);
  detect(img, SD_PHASE_SHAPE_CORE, -1, m, &found, &period, &hw);
  int any = 0;
  for (int i = 0; i < S * S; i++)
    any |= m[i];
  SD_EXPECT_MSG(found == 0 && !any, "perfect lattice: a core was reported (found %d)", found);
  free(img);
  free(m);
}

static void test_energy(void) {
  /* phase-gradient energy: ~0 on the perfect lattice, concentrated on the fault plane */
  float *img = malloc(sizeof(float) * S * S), *e0 = malloc(sizeof(float) * S * S),
        *e1 = malloc(sizeof(float) * S * S);
  float *work = malloc(sizeof(float) * sd_phase_work_floats(S, S));
  sd_lattice_params lp;
  sd_lattice_params_default(&lp);
  sd_lattice lat;
  render(img, DEF_NONE, 15);
  SD_EXPECT_OK(sd_lattice_estimate(img, S, S, &lp, &lat));
  double sig = 0.42 * sd_phase_period(&lat);
  SD_EXPECT(sd_phase_energy(img, S, S, &lat, sig, 3, work, e0) == 3);
  render(img, DEF_FAULT_A2, 15);
  SD_EXPECT(sd_phase_energy(img, S, S, &lat, sig, 3, work, e1) == 3);
  double p0[2], dir[2], on = 0, off = 0, bulk = 0;
  int non = 0, noff = 0;
  line_of(DEF_FAULT_A2, p0, dir);
  for (int y = 12; y < S - 12; y++)
    for (int x = 12; x < S - 12; x++) {
      double d = fabs((x - p0[0]) * dir[1] - (y - p0[1]) * dir[0]);
      bulk += e0[y * S + x];
      if (d < 3)
        on += e1[y * S + x], non++;
      else if (d > 15)
        off += e1[y * S + x], noff++;
    }
  bulk /= (S - 24) * (S - 24);
  on /= non;
  off /= noff;
  SD_EXPECT_MSG(on > 20 * off && on > 20 * bulk,
                "phase-gradient energy on the fault %.3g, away from it %.3g, perfect lattice %.3g",
                on, off, bulk);
  sd_lattice none = lat;
  none.npeaks = 0;
  SD_EXPECT(sd_phase_energy(img, S, S, &none, sig, 3, work, e1) == 0); /* no usable fringe */
  free(img);
  free(e0);
  free(e1);
  free(work);
}

/* Antisite: a dumbbell lattice (two columns of weights 1 and 0.75, 4.5 px apart) with one
 * dumbbell's columns swapped; sd_pl_swap must put its disc on that dumbbell. */
static void render_dumbbells(float *img, int two, double swap_x, double swap_y, double *mx,
                             double *my, uint64_t seed) {
  memset(img, 0, sizeof(float) * S * S);
  double best = 1e9;
  int bn1 = 0, bn2 = 0;
  for (int n1 = -30; n1 <= 30; n1++)
    for (int n2 = -30; n2 <= 30; n2++) {
      double x = ORG[0] + n1 * A1[0] + n2 * A2[0], y = ORG[1] + n1 * A1[1] + n2 * A2[1];
      double d = hypot(x - swap_x, y - swap_y);
      if (d < best)
        best = d, bn1 = n1, bn2 = n2;
    }
  for (int n1 = -30; n1 <= 30; n1++)
    for (int n2 = -30; n2 <= 30; n2++) {
      double x = ORG[0] + n1 * A1[0] + n2 * A2[0], y = ORG[1] + n1 * A1[1] + n2 * A2[1];
      if (x < -10 || y < -10 || x > S + 10 || y > S + 10)
        continue;
      int sw = two && n1 == bn1 && n2 == bn2;
      double wa = sw ? 0.75 : 1.0, wb = sw ? 1.0 : 0.75;
      for (int yy = (int)floor(y - 8); yy <= (int)ceil(y + 12); yy++)
        for (int xx = (int)floor(x - 8); xx <= (int)ceil(x + 8); xx++) {
          if (yy < 0 || xx < 0 || yy >= S || xx >= S)
            continue;
          double da = (xx - x) * (xx - x) + (yy - y) * (yy - y);
          double db = (xx - x) * (xx - x) + (yy - y - 4.5) * (yy - y - 4.5);
          img[yy * S + xx] += (float)(wa * exp(-da / (2 * 1.3 * 1.3)) +
                                      (two ? wb * exp(-db / (2 * 1.3 * 1.3)) : 0.0));
        }
      if (n1 == bn1 && n2 == bn2) {
        *mx = x;
        *my = y + (two ? 2.25 : 0);
      }
    }
  sd_rng r;
  sd_rng_init(&r, seed, 5, 6);
  for (int i = 0; i < S * S; i++)
    img[i] += (float)(0.04 * sd_rng_normal(&r));
}

static void test_swap(void) {
  float *img = malloc(sizeof(float) * S * S), *dev = malloc(sizeof(float) * S * S);
  uint8_t *det = malloc(S * S), *m = malloc(S * S);
  sd_pl_params pp;
  sd_pl_params_default(&pp);
  sd_pl *pl = NULL;
  SD_EXPECT_OK(sd_pl_create(S, S, &pp, &pl));
  double mx = 0, my = 0;
  render_dumbbells(img, 1, 47.0, 52.0, &mx, &my, 21);
  sd_lattice lat;
  int ok = 0;
  SD_EXPECT_OK(sd_pl_image(pl, img, NULL, dev, det, &lat, &ok));
  SD_EXPECT(ok);
  memset(m, 0, S * S);
  int got = sd_pl_swap(pl, &lat, m);
  double sx = 0, sy = 0, sn = 0;
  for (int y = 0; y < S; y++)
    for (int x = 0; x < S; x++)
      if (m[y * S + x])
        sx += x, sy += y, sn++;
  SD_EXPECT_MSG(got == 1 && sn > 0 && hypot(sx / sn - mx, sy / sn - my) < 3.0,
                "swapped dumbbell at (%.1f, %.1f): swap disc %d at (%.1f, %.1f)", mx, my, got,
                sn ? sx / sn : 0, sn ? sy / sn : 0);
  sd_pl_destroy(&pl);
  free(img);
  free(dev);
  free(det);
  free(m);
}

int main(void) {
  test_swap();
  test_energy();
  test_fault(DEF_FAULT_A2);
  test_fault(DEF_FAULT_A1);
  test_twin();
  test_core();
  return sd_test_finish("test_phase");
}
