/* test_lattice.c - the label module against independent computations: FFT vs a naive DFT,
 * lattice vectors of synthetic lattices (known vectors, rotations, sub-pixel periods, a
 * two-column basis), the motif of a defect-free simulated image, a planted vacancy, the
 * morphology / components / Otsu / IoU helpers and the baseline's percentile. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sd_test.h"
#include "stemdefect/lattice.h"
#include "stemdefect/pseudolabel.h"
#include "stemdefect/rng.h"
#include "stemdefect/sim.h"

static void test_fft(void) {
  sd_rng r;
  sd_rng_init(&r, 7, 0, 99);
  enum { N = 64 };
  double x[2 * N], X[2 * N];
  for (int i = 0; i < 2 * N; i++)
    x[i] = X[i] = sd_rng_normal(&r);
  SD_EXPECT_OK(sd_fft_1d(X, N, 0));
  double err = 0;
  for (int k = 0; k < N; k++) {
    double re = 0, im = 0;
    for (int j = 0; j < N; j++) {
      double a = -2 * M_PI * (double)j * k / N;
      re += x[2 * j] * cos(a) - x[2 * j + 1] * sin(a);
      im += x[2 * j] * sin(a) + x[2 * j + 1] * cos(a);
    }
    err = fmax(err, fmax(fabs(re - X[2 * k]), fabs(im - X[2 * k + 1])));
  }
  SD_EXPECT_MSG(err < 1e-9, "1-D FFT vs naive DFT: max error %g", err);
  SD_EXPECT_OK(sd_fft_1d(X, N, 1));
  err = 0;
  for (int i = 0; i < 2 * N; i++)
    err = fmax(err, fabs(X[i] - x[i]));
  SD_EXPECT_MSG(err < 1e-12, "inverse FFT round trip: max error %g", err);
  SD_EXPECT(sd_fft_1d(X, 48, 0) == SD_ERR_ARG);
  sd_error_clear();

  /* 2-D real image (16 x 32) against the naive 2-D DFT and against sd_dft_at */
  enum { H = 16, W = 32 };
  float img[H * W];
  double buf[2 * H * W], scratch[2 * H], tw[2 * W];
  for (int i = 0; i < H * W; i++) {
    img[i] = (float)sd_rng_normal(&r);
    buf[2 * i] = img[i];
    buf[2 * i + 1] = 0;
  }
  SD_EXPECT_OK(sd_fft_2d(buf, H, W, 0, scratch));
  double e2 = 0, e3 = 0;
  for (int ky = 0; ky < H; ky++)
    for (int kx = 0; kx < W; kx++) {
      double re = 0, im = 0;
      for (int y = 0; y < H; y++)
        for (int xx = 0; xx < W; xx++) {
          double a = -2 * M_PI * ((double)kx * xx / W + (double)ky * y / H);
          re += img[y * W + xx] * cos(a);
          im += img[y * W + xx] * sin(a);
        }
      const double *b = buf + 2 * (ky * W + kx);
      e2 = fmax(e2, fmax(fabs(re - b[0]), fabs(im - b[1])));
      double dr, di;
      sd_dft_at(img, H, W, (double)kx / W, (double)ky / H, tw, &dr, &di);
      e3 = fmax(e3, fmax(fabs(dr - b[0]), fabs(di - b[1])));
    }
  SD_EXPECT_MSG(e2 < 1e-9, "2-D FFT vs naive DFT: max error %g", e2);
  SD_EXPECT_MSG(e3 < 1e-6, "continuous DFT at bin frequencies vs FFT: max error %g", e3);
}

/* Gaussian columns at every lattice point (+ basis offsets with weights) plus noise. */
static void render_lattice(float *img, int h, int w, const double a1[2], const double a2[2],
                           int nbasis, const double (*basis)[2], const double *weight, double sigma,
                           double noise, uint64_t seed, int skip_x, int skip_y) {
  sd_rng r;
  sd_rng_init(&r, seed, 1, 2);
  memset(img, 0, sizeof(float) * (size_t)h * w);
  for (int n1 = -40; n1 <= 40; n1++)
    for (int n2 = -40; n2 <= 40; n2++)
      for (int b = 0; b < nbasis; b++) {
        double cx = 3.3 + n1 * a1[0] + n2 * a2[0] + basis[b][0];
        double cy = 2.1 + n1 * a1[1] + n2 * a2[1] + basis[b][1];
        if (cx < -10 || cy < -10 || cx > w + 10 || cy > h + 10)
          continue;
        if (skip_x >= 0 && fabs(cx - skip_x) < 0.01 + 0.5 * sqrt(a1[0] * a1[0] + a1[1] * a1[1]) &&
            fabs(cy - skip_y) < 0.5 * sqrt(a2[0] * a2[0] + a2[1] * a2[1]) && b == 0)
          continue; /* the planted vacancy: drop the column nearest (skip_x, skip_y) */
        int x0 = (int)floor(cx - 4 * sigma), x1 = (int)ceil(cx + 4 * sigma);
        int y0 = (int)floor(cy - 4 * sigma), y1 = (int)ceil(cy + 4 * sigma);
        for (int y = y0 < 0 ? 0 : y0; y <= y1 && y < h; y++)
          for (int x = x0 < 0 ? 0 : x0; x <= x1 && x < w; x++) {
            double d2 = (x - cx) * (x - cx) + (y - cy) * (y - cy);
            img[y * w + x] += (float)(weight[b] * exp(-0.5 * d2 / (sigma * sigma)));
          }
      }
  for (int i = 0; i < h * w; i++)
    img[i] += (float)(noise * sd_rng_normal(&r));
}

/* The estimated lattice equals the true one up to a change of basis: A_true^-1 A_est is an
 * integer matrix of determinant +-1. Returns the largest deviation from integers, relative. */
static double lattice_mismatch(const double t1[2], const double t2[2], const sd_lattice *e) {
  double det = t1[0] * t2[1] - t2[0] * t1[1];
  double worst = 0;
  const double *ev[2] = {e->a1, e->a2};
  double c[2][2];
  for (int k = 0; k < 2; k++) {
    /* solve t1 * c0 + t2 * c1 = ev[k] */
    c[k][0] = (ev[k][0] * t2[1] - t2[0] * ev[k][1]) / det;
    c[k][1] = (t1[0] * ev[k][1] - ev[k][0] * t1[1]) / det;
    for (int j = 0; j < 2; j++)
      worst = fmax(worst, fabs(c[k][j] - round(c[k][j])));
  }
  double idet = round(c[0][0]) * round(c[1][1]) - round(c[0][1]) * round(c[1][0]);
  if (fabs(fabs(idet) - 1) > 1e-9)
    worst = fmax(worst, 1.0);
  return worst;
}

static void test_lattice_recovery(void) {
  sd_lattice_params lp;
  sd_lattice_params_default(&lp);
  enum { S = 96 };
  float *img = malloc(sizeof(float) * S * S);
  const double one[1][2] = {{0, 0}}, w1[1] = {1.0};
  const double dumb[2][2] = {{0, 0}, {0, 1.9}}, w2[2] = {1.0, 0.8};
  /* periods 7.37 and 9.13 px (sub-pixel), angles 90 and 75 deg, rotations 0, 17, 33, -50 */
  const double rots[4] = {0, 17, 33, -50};
  for (int t = 0; t < 8; t++) {
    double rot = rots[t % 4] * M_PI / 180, gam = (t / 4 ? 75 : 90) * M_PI / 180;
    double L1 = 7.37, L2 = 9.13;
    double a1[2] = {L1 * cos(rot), L1 * sin(rot)},
           a2[2] = {L2 * cos(rot + gam), L2 * sin(rot + gam)};
    int dumbbell = t % 2;
    render_lattice(img, S, S, a1, a2, dumbbell ? 2 : 1, dumbbell ? dumb : one, dumbbell ? w2 : w1,
                   1.2, 0.15, 100 + t, -1, -1);
    sd_lattice est;
    SD_EXPECT_OK(sd_lattice_estimate(img, S, S, &lp, &est));
    double mm = lattice_mismatch(a1, a2, &est);
    double area_t = fabs(a1[0] * a2[1] - a2[0] * a1[1]),
           area_e = fabs(est.a1[0] * est.a2[1] - est.a2[0] * est.a1[1]);
    SD_EXPECT_MSG(
        mm < 0.01 && fabs(area_e / area_t - 1) < 0.01,
        "case %d (rot %.0f, angle %.0f, %s): true a1 (%.3f %.3f) a2 (%.3f %.3f), estimated "
        "(%.3f %.3f) (%.3f %.3f), mismatch %.4f, area ratio %.4f",
        t, rots[t % 4], gam * 180 / M_PI, dumbbell ? "dumbbell" : "one column", a1[0], a1[1], a2[0],
        a2[1], est.a1[0], est.a1[1], est.a2[0], est.a2[1], mm, area_e / area_t);
    /* refining the true lattice perturbed by 3% recovers it */
    sd_lattice guess = est, ref;
    for (int k = 0; k < 2; k++) {
      guess.b1[k] *= 1.03;
      guess.b2[k] *= 0.98;
    }
    sd_lattice_from_reciprocal(&guess);
    SD_EXPECT_OK(sd_lattice_refine(img, S, S, &guess, 0.1, &ref));
    SD_EXPECT_MSG(lattice_mismatch(a1, a2, &ref) < 0.01, "case %d: refine from a 3%% error: %.4f",
                  t, lattice_mismatch(a1, a2, &ref));
  }
  /* no lattice: pure noise with a tiny period range */
  sd_rng r;
  sd_rng_init(&r, 5, 5, 5);
  for (int i = 0; i < S * S; i++)
    img[i] = (float)sd_rng_normal(&r);
  sd_lattice est;
  sd_lattice_params narrow = lp;
  narrow.min_period = 20.0;
  narrow.max_period = 20.5;
  sd_status st = sd_lattice_estimate(img, S, S, &narrow, &est);
  SD_EXPECT(st == SD_OK || st == SD_ERR_FORMAT);
  sd_error_clear();
  free(img);
}

static void test_motif_simulated(void) {
  /* a defect-free simulated CdTe and SrTiO3 image: the re-tiled motif explains it, the
   * deviation is noise (RMS ~ 1) and nothing is detected */
  for (int mat = 0; mat < 2; mat++) {
    sd_sim_params p;
    SD_EXPECT_OK(sd_sim_params_default(&p, mat ? SD_SIM_MATERIAL_STO : SD_SIM_MATERIAL_CDTE, 64));
    SD_EXPECT_OK(sd_sim_params_validate(&p));
    float img[64 * 64], clean[64 * 64], dev[64 * 64];
    uint8_t mask[64 * 64], det[64 * 64];
    int32_t lab;
    sd_pl_params pp;
    sd_pl_params_default(&pp);
    sd_pl *pl = NULL;
    SD_EXPECT_OK(sd_pl_create(64, 64, &pp, &pl));
    int total_det = 0, lattices = 0;
    double worst_rel = 0;
    for (int i = 0; i < 6; i++) {
      SD_EXPECT_OK(sd_sim_render_ex(&p, 42, i, SD_SIM_RENDER_NO_DEFECTS, img, mask, &lab, NULL));
      SD_EXPECT_OK(sd_sim_render_ex(&p, 42, i, SD_SIM_RENDER_NO_DEFECTS | SD_SIM_RENDER_NOISE_FREE,
                                    clean, mask, &lab, NULL));
      int ok = 0;
      SD_EXPECT_OK(sd_pl_image(pl, img, NULL, dev, det, NULL, &ok));
      lattices += ok;
      for (int k = 0; k < 64 * 64; k++)
        total_det += det[k];
      const sd_deviation_ws *ws = sd_pl_deviation_ws(pl);
      /* the prediction against the noise-free image (least-squares scale and offset, since
       * the prediction lives on the z-scored noisy image): the motif, re-tiled and registered,
       * reproduces the clean crystal */
      double sx = 0, sy = 0, sxx = 0, sxy = 0, nn = 64 * 64;
      for (int k = 0; k < 64 * 64; k++) {
        sx += clean[k];
        sy += ws->predicted[k];
        sxx += (double)clean[k] * clean[k];
        sxy += (double)clean[k] * ws->predicted[k];
      }
      double a = (nn * sxy - sx * sy) / (nn * sxx - sx * sx), b = (sy - a * sx) / nn;
      double ss = 0, sv = 0, mf = a * sx / nn + b;
      for (int k = 0; k < 64 * 64; k++) {
        double fit = a * clean[k] + b;
        ss += (ws->predicted[k] - fit) * (ws->predicted[k] - fit);
        sv += (fit - mf) * (fit - mf);
      }
      worst_rel = fmax(worst_rel, sqrt(ss / sv));
      SD_EXPECT_MSG(ws->residual_rms < 1.3, "material %d image %d: deviation RMS %.3f (noise = 1)",
                    mat, i, ws->residual_rms);
    }
    SD_EXPECT_MSG(lattices == 6, "material %d: lattice found in %d of 6 images", mat, lattices);
    SD_EXPECT_MSG(worst_rel < 0.3,
                  "material %d: |prediction - clean image| / clean contrast up to %.3f", mat,
                  worst_rel);
    fprintf(stderr, "material %d: prediction vs noise-free image: relative RMS error <= %.3f\n",
            mat, worst_rel);
    SD_EXPECT_MSG(total_det < 6 * 64 * 64 / 200,
                  "material %d: %d pixels detected in 6 defect-free images", mat, total_det);
    sd_pl_destroy(&pl);
    SD_EXPECT(pl == NULL);
  }
}

static void test_planted_defect(void) {
  enum { S = 80 };
  float *img = malloc(sizeof(float) * S * S), *dev = malloc(sizeof(float) * S * S);
  uint8_t *det = malloc(S * S), *mask = malloc(S * S);
  const double one[1][2] = {{0, 0}}, w1[1] = {1.0};
  double a1[2] = {8.1, 1.3}, a2[2] = {-1.1, 8.6};
  /* a column at about (41.6, 41.4): n1 = n2 = ... pick the lattice point nearest the centre */
  double best = 1e9, vx = 0, vy = 0;
  for (int n1 = -20; n1 <= 20; n1++)
    for (int n2 = -20; n2 <= 20; n2++) {
      double cx = 3.3 + n1 * a1[0] + n2 * a2[0], cy = 2.1 + n1 * a1[1] + n2 * a2[1];
      double d = hypot(cx - 40, cy - 40);
      if (d < best) {
        best = d;
        vx = cx;
        vy = cy;
      }
    }
  render_lattice(img, S, S, a1, a2, 1, one, w1, 1.3, 0.08, 9, (int)lround(vx), (int)lround(vy));
  sd_pl_params pp;
  sd_pl_params_default(&pp);
  sd_pl *pl = NULL;
  SD_EXPECT_OK(sd_pl_create(S, S, &pp, &pl));
  int ok = 0;
  SD_EXPECT_OK(sd_pl_image(pl, img, NULL, dev, det, NULL, &ok));
  SD_EXPECT(ok);
  int n = 0, near = 0;
  for (int y = 0; y < S; y++)
    for (int x = 0; x < S; x++)
      if (det[y * S + x]) {
        n++;
        if (hypot(x - vx, y - vy) < 5)
          near++;
      }
  SD_EXPECT_MSG(det[(int)lround(vy) * S + (int)lround(vx)], "vacancy at (%.1f, %.1f) not detected",
                vx, vy);
  SD_EXPECT_MSG(n > 0 && near * 2 >= n && n < S * S / 20,
                "detected %d pixels, %d of them within 5 px of the vacancy", n, near);
  SD_EXPECT_MSG(dev[(int)lround(vy) * S + (int)lround(vx)] < -3, "deviation at the vacancy %.2f",
                dev[(int)lround(vy) * S + (int)lround(vx)]);
  /* point disc: the detection becomes the disc of point_radius lattice periods around its
   * strongest deviation, on the vacancy */
  {
    sd_lattice lat;
    uint8_t *pts = malloc(S * S);
    memcpy(pts, det, S * S);
    SD_EXPECT_OK(sd_pl_image(pl, img, NULL, dev, pts, &lat, &ok));
    int nd = sd_pl_points(pl, &lat, pts);
    double r = pp.point_radius * sd_phase_period(&lat), sx = 0, sy = 0;
    int area = 0;
    for (int y = 0; y < S; y++)
      for (int x = 0; x < S; x++)
        if (pts[y * S + x]) {
          area++;
          sx += x;
          sy += y;
        }
    SD_EXPECT_MSG(nd == 1 && fabs(area - M_PI * r * r) < 0.15 * M_PI * r * r &&
                      hypot(sx / area - vx, sy / area - vy) < 2.0,
                  "point disc: %d disc(s), area %d (pi r^2 = %.0f), centre (%.1f, %.1f), vacancy "
                  "(%.1f, %.1f)",
                  nd, area, M_PI * r * r, area ? sx / area : 0, area ? sy / area : 0, vx, vy);
    free(pts);
  }
  /* weak supervision */
  sd_pl_mask(det, S * S, 3, 0, mask);
  int m3 = 0, other = 0;
  for (int i = 0; i < S * S; i++) {
    m3 += mask[i] == 3;
    other += mask[i] != 0 && mask[i] != 3;
  }
  SD_EXPECT(m3 == n && other == 0);
  sd_pl_mask(det, S * S, 0, 0, mask);
  for (int i = 0; i < S * S; i++)
    other += mask[i] != 0;
  sd_pl_mask(det, S * S, -1, 0, mask);
  for (int i = 0; i < S * S; i++)
    other += mask[i] != 0;
  SD_EXPECT_MSG(other == 0, "bulk / unknown images must give empty masks");
  /* the baseline flags 2% of the pixels (98th percentile) */
  sd_pl_baseline(pl, img, det);
  int nb = 0;
  for (int i = 0; i < S * S; i++)
    nb += det[i];
  SD_EXPECT_MSG(abs(nb - S * S / 50) <= 2, "baseline flags %d pixels, expected ~%d", nb,
                S * S / 50);
  sd_pl_destroy(&pl);
  free(img);
  free(dev);
  free(det);
  free(mask);
}

/* Weak-supervision fallback: a detection forced empty (threshold floor far above the defect)
 * is replaced by the top fraction of the local RMS deviation, which sits on the vacancy. */
static void test_fallback(void) {
  enum { S = 80 };
  float *img = malloc(sizeof(float) * S * S), *dev = malloc(sizeof(float) * S * S);
  uint8_t *det = malloc(S * S);
  const double one[1][2] = {{0, 0}}, w1[1] = {1.0};
  double a1[2] = {8.1, 1.3}, a2[2] = {-1.1, 8.6};
  double vx = 3.3 + 5 * a1[0] + 4 * a2[0], vy = 2.1 + 5 * a1[1] + 4 * a2[1];
  render_lattice(img, S, S, a1, a2, 1, one, w1, 1.3, 0.08, 9, (int)lround(vx), (int)lround(vy));
  for (int pass = 0; pass < 3; pass++) {
    sd_pl_params pp;
    sd_pl_params_default(&pp);
    pp.min_deviation = pass == 2 ? pp.min_deviation : 1000; /* pass 2: a normal detection */
    pp.fallback_fraction = pass == 0 ? 0.0 : 0.02;
    sd_pl *pl = NULL;
    SD_EXPECT_OK(sd_pl_create(S, S, &pp, &pl));
    int ok = 0;
    SD_EXPECT_OK(sd_pl_image(pl, img, NULL, dev, det, NULL, &ok));
    SD_EXPECT(ok);
    int before = 0;
    for (int i = 0; i < S * S; i++)
      before += det[i];
    int did = sd_pl_fallback(pl, det);
    int n = 0, near = 0;
    for (int y = 0; y < S; y++)
      for (int x = 0; x < S; x++)
        if (det[y * S + x]) {
          n++;
          near += hypot(x - vx, y - vy) < 6;
        }
    if (pass == 0)
      SD_EXPECT_MSG(before == 0 && !did && n == 0, "fraction 0: %d -> %d pixels", before, n);
    else if (pass == 1)
      SD_EXPECT_MSG(before == 0 && did && n > 0 && near * 2 >= n && n <= S * S / 20,
                    "fallback labelled %d pixels, %d near the vacancy", n, near);
    else
      SD_EXPECT_MSG(before > 0 && !did && n == before, "a non-empty detection must stay: %d -> %d",
                    before, n);
    sd_pl_destroy(&pl);
  }
  free(img);
  free(dev);
  free(det);
}

static void test_helpers(void) {
  enum { H = 10, W = 12 };
  uint8_t m[H * W], tmp[H * W];
  int32_t lab[H * W], stk[H * W];
  memset(m, 0, sizeof m);
  /* a 4x4 square, a single pixel, a 2-pixel diagonal pair */
  for (int y = 2; y < 6; y++)
    for (int x = 2; x < 6; x++)
      m[y * W + x] = 1;
  m[8 * W + 10] = 1;
  m[0 * W + 10] = m[1 * W + 11] = 1;
  uint8_t keep[H * W];
  memcpy(keep, m, sizeof m);
  SD_EXPECT(sd_pl_components_filter(keep, H, W, 2, lab, stk) == 2);
  SD_EXPECT(keep[8 * W + 10] == 0 && keep[0 * W + 10] == 1 && keep[3 * W + 3] == 1);
  memcpy(keep, m, sizeof m);
  SD_EXPECT(sd_pl_components_filter(keep, H, W, 16, lab, stk) == 1);
  /* opening removes the isolated pixel and the pair, keeps the square */
  memcpy(keep, m, sizeof m);
  sd_pl_erode(keep, H, W, tmp);
  sd_pl_dilate(keep, H, W, tmp);
  int n = 0;
  for (int i = 0; i < H * W; i++)
    n += keep[i];
  SD_EXPECT_MSG(n == 16 && keep[2 * W + 2] && keep[5 * W + 5], "opening kept %d pixels", n);
  /* Otsu on two clusters separates them */
  float v[200];
  for (int i = 0; i < 200; i++)
    v[i] = i < 150 ? 1.0f + 0.01f * (i % 10) : 5.0f + 0.01f * (i % 10);
  double t = sd_pl_otsu(v, 200);
  SD_EXPECT_MSG(t > 1.09 && t < 5.0, "Otsu threshold %.3f", t);
  /* IoU counts on a hand example */
  uint8_t pred[6] = {0, 1, 1, 2, 0, 1}, tru[6] = {0, 1, 0, 2, 2, 1};
  int64_t in[3] = {0}, un[3] = {0};
  sd_pl_iou_accumulate(pred, tru, 6, 3, in, un);
  SD_EXPECT(in[0] == 1 && un[0] == 3 && in[1] == 2 && un[1] == 3 && in[2] == 1 && un[2] == 2);
  /* Gaussian blur of a constant with normalisation is the constant */
  float c[H * W], o[H * W], bt[H * W];
  for (int i = 0; i < H * W; i++)
    c[i] = 2.5f;
  sd_gauss_blur(c, H, W, 2.0, 1, bt, o);
  double e = 0;
  for (int i = 0; i < H * W; i++)
    e = fmax(e, fabs(o[i] - 2.5));
  SD_EXPECT_MSG(e < 1e-5, "normalised blur of a constant: error %g", e);
}

static void test_grain(void) {
  /* left half detected (a grain, 50% of the image) and a 3x3 blob on the right: the grain
   * becomes the band along x = 31.5 of half width 2 (+ the boundary pixel itself), the blob stays
   */
  enum { S = 32 };
  uint8_t m[S * S], tmp[S * S];
  int32_t lab[S * S], stk[S * S];
  memset(m, 0, sizeof m);
  for (int y = 0; y < S; y++)
    for (int x = 0; x < S / 2; x++)
      m[y * S + x] = 1;
  for (int y = 4; y < 7; y++)
    for (int x = 25; x < 28; x++)
      m[y * S + x] = 1;
  int g = sd_pl_grain_boundaries(m, S, S, S * S / 4, 2, lab, stk, tmp);
  SD_EXPECT(g == 1);
  int bad = 0;
  for (int y = 0; y < S; y++)
    for (int x = 0; x < S; x++) {
      int blob = y >= 4 && y < 7 && x >= 25 && x < 28;
      int want = blob || (x >= S / 2 - 3 && x <= S / 2 + 1);
      bad += m[y * S + x] != want;
    }
  SD_EXPECT_MSG(bad == 0, "grain boundary band: %d pixels differ from the expected band", bad);
}

int main(void) {
  test_grain();
  test_fft();
  test_lattice_recovery();
  test_motif_simulated();
  test_planted_defect();
  test_fallback();
  test_helpers();
  return sd_test_finish("test_lattice");
}
