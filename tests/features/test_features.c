/* test_features.c - region labelling and shape descriptors against hand-computed values:
 * rectangle moments, perimeter and eccentricity; convex-hull solidity of an L; 8-connectivity;
 * Hu invariants under 90-degree rotation and mirroring; descriptor rows of a two-class heatmap
 * (region rows, the image row for an image without regions, the image vector on every row). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sd_test.h"
#include "stemdefect/features.h"

#define H 16
#define W 20

static void rect(uint8_t *m, int y0, int x0, int y1, int x1) {
  for (int y = y0; y < y1; y++)
    for (int x = x0; x < x1; x++) m[y * W + x] = 1;
}

static void shape_of(const uint8_t *m, int id, sd_region_shape *s, int *ncomp) {
  int32_t lab[H * W], stk[H * W];
  *ncomp = sd_feat_label_components(m, H, W, lab, stk);
  SD_EXPECT_OK(sd_feat_region_shape(lab, H, W, id, NULL, s));
}

int main(void) {
  uint8_t m[H * W];
  sd_region_shape s;
  int n;

  /* a 3 x 5 rectangle (rows 4..6, columns 2..6) */
  memset(m, 0, sizeof m);
  rect(m, 4, 2, 7, 7);
  shape_of(m, 1, &s, &n);
  SD_EXPECT(n == 1);
  SD_EXPECT(s.area == 15);
  SD_EXPECT_NEAR(s.cy, 5, 1e-12);
  SD_EXPECT_NEAR(s.cx, 4, 1e-12);
  SD_EXPECT(s.y0 == 4 && s.x0 == 2 && s.y1 == 7 && s.x1 == 7);
  SD_EXPECT_NEAR(s.perimeter, 16, 0);
  SD_EXPECT_NEAR(s.solidity, 1, 1e-12);
  SD_EXPECT_NEAR(s.orientation, 0, 1e-12);                 /* long along x */
  SD_EXPECT_NEAR(s.eccentricity, sqrt(1 - (8.0 / 12) / (24.0 / 12)), 1e-9); /* var 2/3 vs 2 */
  /* Hu 1 = eta20 + eta02 = (mu20 + mu02) / m00^2 = (15*2 + 15*2/3) / 225 */
  SD_EXPECT_NEAR(s.hu[0], (30 + 10) / 225.0, 1e-12);

  /* the same rectangle turned by 90 degrees: the same Hu moments, orientation pi/2 */
  sd_region_shape r;
  memset(m, 0, sizeof m);
  rect(m, 3, 8, 8, 11);
  shape_of(m, 1, &r, &n);
  SD_EXPECT(r.area == 15);
  for (int k = 0; k < 7; k++) SD_EXPECT_NEAR(r.hu[k], s.hu[k], 1e-12 + 1e-9 * fabs(s.hu[k]));
  SD_EXPECT_NEAR(fabs(r.orientation), M_PI / 2, 1e-12);

  /* an asymmetric shape and its mirror image: Hu 1..6 equal, Hu 7 changes sign */
  sd_region_shape a, b;
  memset(m, 0, sizeof m);
  rect(m, 2, 2, 3, 8);
  rect(m, 3, 2, 7, 4);
  rect(m, 6, 4, 7, 5);
  shape_of(m, 1, &a, &n);
  uint8_t mm[H * W];
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) mm[y * W + x] = m[y * W + (W - 1 - x)];
  shape_of(mm, 1, &b, &n);
  for (int k = 0; k < 6; k++) SD_EXPECT_NEAR(a.hu[k], b.hu[k], 1e-12 + 1e-9 * fabs(a.hu[k]));
  SD_EXPECT_NEAR(a.hu[6], -b.hu[6], 1e-12 + 1e-9 * fabs(a.hu[6]));

  /* an L of three unit squares: hull of the pixel squares is the L plus a half square */
  memset(m, 0, sizeof m);
  m[5 * W + 5] = m[6 * W + 5] = m[6 * W + 6] = 1;
  shape_of(m, 1, &s, &n);
  SD_EXPECT(s.area == 3);
  SD_EXPECT_NEAR(s.solidity, 3 / 3.5, 1e-12);
  SD_EXPECT_NEAR(s.perimeter, 8, 0);

  /* 8-connectivity: diagonal neighbours join, separate blobs are numbered in raster order */
  memset(m, 0, sizeof m);
  m[1 * W + 1] = m[2 * W + 2] = 1;      /* diagonal pair: one component */
  rect(m, 10, 10, 12, 12);              /* second */
  m[0 * W + 15] = 1;                    /* third, but first in raster order */
  int32_t lab[H * W], stk[H * W];
  n = sd_feat_label_components(m, H, W, lab, stk);
  SD_EXPECT(n == 3);
  SD_EXPECT(lab[0 * W + 15] == 1 && lab[1 * W + 1] == 2 && lab[2 * W + 2] == 2 && lab[10 * W + 10] == 3);

  /* convex hull of a square's corners plus inner points */
  double pts[] = {0, 0, 2, 0, 2, 2, 0, 2, 1, 1, 0.5, 1.5};
  SD_EXPECT_NEAR(sd_feat_convex_hull_area(pts, 6), 4, 1e-12);

  /* descriptor rows: C = 3 (background + 2 classes) */
  int C = 3, D = sd_feat_num_columns(C);
  SD_EXPECT(D == SD_FEAT_REGION_COLS + 3 + 2 + SD_FEAT_IMAGE_FIXED_COLS);
  float *heat = calloc((size_t)C * H * W, sizeof *heat), *img = calloc(H * W, sizeof *img);
  float *res = calloc(H * W, sizeof *res);
  for (int i = 0; i < H * W; i++) {
    heat[i] = 1;
    img[i] = (float)((i * 37) % 11) - 5;
  }
  /* class 1: two blobs (4 and 6 pixels), class 2: one blob of 9 pixels; one blob of 2 pixels
   * under min_area */
  int blobs[][4] = {{1, 1, 3, 3}, {5, 10, 7, 13}, {9, 2, 12, 5}, {14, 17, 15, 19}};
  int cls[] = {1, 1, 2, 1};
  for (int k = 0; k < 4; k++)
    for (int y = blobs[k][0]; y < blobs[k][2]; y++)
      for (int x = blobs[k][1]; x < blobs[k][3]; x++) {
        heat[y * W + x] = 0.1f;
        heat[(size_t)cls[k] * H * W + y * W + x] = 0.9f;
        res[y * W + x] = (float)cls[k] * 2;
      }
  sd_feat_image fi = {C, H, W, heat, img, res, NULL};
  sd_feat_opts o = {0.5f, 3};
  float rows[8 * 64];
  int32_t ch[8], bx[32];
  int nr = 0;
  SD_EXPECT(D <= 64);
  SD_EXPECT_OK(sd_feat_describe_image(&fi, &o, rows, ch, bx, 8, &nr));
  SD_EXPECT(nr == 3);
  SD_EXPECT(ch[0] == 1 && ch[1] == 1 && ch[2] == 2);
  SD_EXPECT(rows[0 * D + 0] == 4 && rows[1 * D + 0] == 6 && rows[2 * D + 0] == 9);
  SD_EXPECT_NEAR(rows[0 * D + 1], 0.9, 1e-6); /* mean prob */
  SD_EXPECT(bx[4 * 1 + 0] == 5 && bx[4 * 1 + 1] == 10 && bx[4 * 1 + 2] == 7 && bx[4 * 1 + 3] == 13);
  SD_EXPECT_NEAR(rows[2 * D + 18], 4, 1e-6);  /* res_mean inside the class-2 blob */
  SD_EXPECT_NEAR(rows[2 * D + 19], 0, 1e-6);  /* res_std */
  /* image vector on every row: regions_<class1> = 2 (the 2-pixel blob is dropped) */
  int regions1 = SD_FEAT_REGION_COLS + C;
  for (int k = 0; k < 3; k++) {
    SD_EXPECT(rows[k * D + regions1] == 2 && rows[k * D + regions1 + 1] == 1);
    SD_EXPECT(rows[k * D + SD_FEAT_REGION_COLS + 2] == rows[SD_FEAT_REGION_COLS + 2]);
  }
  double mass2 = 9 * 0.9 / (H * W);
  SD_EXPECT_NEAR(rows[SD_FEAT_REGION_COLS + 2], mass2, 1e-6);
  /* too little room: the count is reported */
  SD_EXPECT(sd_feat_describe_image(&fi, &o, rows, ch, bx, 2, &nr) == SD_ERR_ARG && nr == 3);
  /* no region at all: one image row, channel 0, box = the image */
  for (int i = 0; i < H * W; i++) {
    heat[i] = 1;
    heat[H * W + i] = heat[2 * H * W + i] = 0;
  }
  SD_EXPECT_OK(sd_feat_describe_image(&fi, &o, rows, ch, bx, 8, &nr));
  SD_EXPECT(nr == 1 && ch[0] == 0 && bx[2] == H && bx[3] == W && rows[0] == 0);
  SD_EXPECT_NEAR(rows[SD_FEAT_REGION_COLS], 1, 1e-6); /* mass of background */
  char names[64 * 48];
  const char *cn[3] = {"Bulk", "Vac", "Int"};
  sd_feat_column_names(C, cn, names, 48);
  SD_EXPECT(!strcmp(names, "area") && !strcmp(names + 48 * SD_FEAT_REGION_COLS, "mass_Bulk") &&
            !strcmp(names + 48 * (SD_FEAT_REGION_COLS + 4), "regions_Int"));
  free(heat);
  free(img);
  free(res);
  return sd_test_finish("test_features");
}
