/* test_sim.c - the STEM image simulator: parameters and their errors, determinism, balanced
 * labels, masks, the physical effect of every defect type (against the defect-free render of
 * the same image), lattice spacing by a naive DFT, Poisson statistics, multi-defect masks,
 * the preview montage, and render speed. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sd_test.h"
#include "sim/sim_internal.h"
#include "stemdefect/sim.h"
#include "stemdefect/status.h"

#define SEED 20240917ULL

static int msg_has(const char *needle) { return strstr(sd_error_message(), needle) != NULL; }

static sd_sim_params params(sd_sim_material m, int size, const char *classes) {
  sd_sim_params p;
  SD_EXPECT_OK(sd_sim_params_default(&p, m, size));
  if (classes) SD_EXPECT_OK(sd_sim_parse_classes(&p, classes));
  return p;
}

/* ---- parameters -------------------------------------------------------------------------- */

static void test_params(void) {
  for (int mi = 0; mi < 2; mi++) {
    sd_sim_params p;
    SD_EXPECT_OK(sd_sim_params_default(&p, (sd_sim_material)mi, 64));
    SD_EXPECT_OK(sd_sim_params_validate(&p));
    SD_EXPECT(p.num_classes == (mi == 0 ? 7 : 5));
    SD_EXPECT(p.classes[0].defect == SD_SIM_DEFECT_BULK);
  }
  sd_sim_material m;
  SD_EXPECT_OK(sd_sim_parse_material("CdTe", &m));
  SD_EXPECT(m == SD_SIM_MATERIAL_CDTE);
  SD_EXPECT_OK(sd_sim_parse_material("sto", &m));
  SD_EXPECT(m == SD_SIM_MATERIAL_STO);
  SD_EXPECT(sd_sim_parse_material("gaas", &m) == SD_ERR_CONFIG && msg_has("gaas"));
  sd_error_clear();

  sd_sim_params p = params(SD_SIM_MATERIAL_CDTE, 64, NULL);
  /* set / get / auto */
  double v = 0;
  SD_EXPECT_OK(sd_sim_params_set(&p, "dose_max", "800"));
  SD_EXPECT_OK(sd_sim_params_get(&p, "dose_max", &v));
  SD_EXPECT_NEAR(v, 800, 0);
  SD_EXPECT_OK(sd_sim_params_set(&p, "dose_max", "auto"));
  SD_EXPECT_NEAR(p.dose_max, params(SD_SIM_MATERIAL_CDTE, 64, NULL).dose_max, 0);
  SD_EXPECT(sd_sim_params_set(&p, "dose_max", "lots") == SD_ERR_CONFIG &&
            msg_has("simulate.dose_max") && msg_has("not a number"));
  sd_error_clear();
  SD_EXPECT(sd_sim_params_set(&p, "drift", "0.5") == SD_ERR_CONFIG && msg_has("simulate.drift") &&
            msg_has("[0, 0.2]"));
  sd_error_clear();
  SD_EXPECT(sd_sim_params_set(&p, "dose", "5") == SD_ERR_CONFIG && msg_has("simulate.dose") &&
            msg_has("dose_min"));
  sd_error_clear();
  SD_EXPECT(sd_sim_params_set(&p, "material", "sto") == SD_ERR_CONFIG);
  sd_error_clear();
  int n = sd_sim_param_count();
  SD_EXPECT(n >= 20);
  for (int i = 0; i < n; i++) {
    sd_sim_param_desc d;
    SD_EXPECT_OK(sd_sim_param_info(i, &d));
    SD_EXPECT(d.name && d.help && d.min <= d.max);
    double cur;
    SD_EXPECT_OK(sd_sim_params_get(&p, d.name, &cur));
    SD_EXPECT_MSG(cur >= d.min && cur <= d.max, "default %s = %g outside [%g, %g]", d.name, cur,
                  d.min, d.max);
  }

  /* validate: every error names the field and the allowed range (fields are poked directly,
   * sd_sim_params_set would already refuse these values) */
  const char *bad_field[] = {"pixel_size_min", "dose_min",    "probe_sigma_max",
                             "multi_defect_prob", "scan_jitter", "gaussian_noise"};
  const char *bad_range[] = {"[0.01, 5]", "[1, 1e+07]", "[0.1, 3]", "[0, 1]", "[0, 5]", "[0, 1]"};
  for (int i = 0; i < 6; i++) {
    sd_sim_params q = params(SD_SIM_MATERIAL_STO, 64, NULL);
    switch (i) {
    case 0: q.pixel_size_min = -1; break;
    case 1: q.dose_min = 0; break;
    case 2: q.probe_sigma_max = 9; break;
    case 3: q.multi_defect_prob = 1.5; break;
    case 4: q.scan_jitter = NAN; break;
    default: q.gaussian_noise = -0.1; break;
    }
    char field[64];
    snprintf(field, sizeof field, "simulate.%s", bad_field[i]);
    sd_status st = sd_sim_params_validate(&q);
    SD_EXPECT_MSG(st == SD_ERR_CONFIG && msg_has(field) && msg_has(bad_range[i]), "%s: got '%s'",
                  bad_field[i], sd_error_message());
    sd_error_clear();
    float img[64 * 64]; /* render refuses invalid parameters too */
    SD_EXPECT(sd_sim_render(&q, 1, 0, img, NULL, NULL) == SD_ERR_CONFIG);
    sd_error_clear();
  }
  sd_sim_params q = params(SD_SIM_MATERIAL_CDTE, 64, NULL);
  q.pixel_size_max = 0.1;
  q.pixel_size_min = 0.2;
  SD_EXPECT(sd_sim_params_validate(&q) == SD_ERR_CONFIG && msg_has("simulate.pixel_size_max") &&
            msg_has("simulate.pixel_size_min"));
  sd_error_clear();
  q = params(SD_SIM_MATERIAL_CDTE, 64, NULL);
  q.size = 2;
  SD_EXPECT(sd_sim_params_validate(&q) == SD_ERR_CONFIG && msg_has("simulate.size") &&
            msg_has("[8, 4096]"));
  sd_error_clear();

  q = params(SD_SIM_MATERIAL_CDTE, 4096, NULL);
  SD_EXPECT_OK(sd_sim_params_validate(&q));
  q.pixel_size_max = 0.5;
  SD_EXPECT(sd_sim_params_validate(&q) == SD_ERR_CONFIG && msg_has("field of view"));
  sd_error_clear();

  /* classes */
  q = params(SD_SIM_MATERIAL_CDTE, 64, NULL);
  SD_EXPECT_OK(sd_sim_parse_classes(
      &q, " Bulk=bulk, LC=dislocation ,SF1=stacking_fault:1,SF2=stacking_fault:2,"
          "Twin_Bound=twin,Vacancy_CdTe=vacancy,interstitial"));
  SD_EXPECT(q.num_classes == 7);
  SD_EXPECT(strcmp(q.classes[1].name, "LC") == 0 && q.classes[1].defect == SD_SIM_DEFECT_DISLOCATION);
  SD_EXPECT(q.classes[3].variant == 2 && q.classes[3].defect == SD_SIM_DEFECT_STACKING_FAULT);
  SD_EXPECT(strcmp(q.classes[6].name, "interstitial") == 0 &&
            q.classes[6].defect == SD_SIM_DEFECT_INTERSTITIAL);
  char buf[512];
  SD_EXPECT_OK(sd_sim_format_classes(&q, buf, sizeof buf));
  sd_sim_params q2 = params(SD_SIM_MATERIAL_CDTE, 64, NULL);
  SD_EXPECT_OK(sd_sim_parse_classes(&q2, buf));
  SD_EXPECT(memcmp(q.classes, q2.classes, sizeof q.classes) == 0 && q2.num_classes == 7);
  const char *names[] = {"Bulk", "Extra", "IExtra", "Mis"};
  sd_sim_params s = params(SD_SIM_MATERIAL_STO, 64, "bulk,interstitial,substitution,vacancy");
  SD_EXPECT_OK(sd_sim_set_class_names(&s, names, 4));
  SD_EXPECT(strcmp(s.classes[3].name, "Mis") == 0 && s.classes[3].defect == SD_SIM_DEFECT_VACANCY);
  SD_EXPECT(sd_sim_set_class_names(&s, names, 3) == SD_ERR_CONFIG);
  sd_error_clear();
  SD_EXPECT(sd_sim_parse_classes(&q, "Vac=vacancy,Bulk=bulk") == SD_ERR_CONFIG &&
            msg_has("must be bulk"));
  sd_error_clear();
  SD_EXPECT(sd_sim_parse_classes(&q, "Bulk=bulk,X=crack") == SD_ERR_CONFIG && msg_has("crack"));
  sd_error_clear();
  SD_EXPECT(sd_sim_parse_classes(&q, "Bulk=bulk,A=vacancy,A=twin") == SD_ERR_CONFIG &&
            msg_has("twice"));
  sd_error_clear();
  SD_EXPECT(sd_sim_parse_classes(&q, "Bulk=bulk,B=bulk") == SD_ERR_CONFIG);
  sd_error_clear();
  SD_EXPECT(sd_sim_parse_classes(&q, "Bulk=bulk,A=twin:x") == SD_ERR_CONFIG && msg_has("variant"));
  sd_error_clear();
  SD_EXPECT(q.num_classes == 7); /* failed parses leave the list alone */
}

/* ---- determinism and labels ---------------------------------------------------------------- */

static void test_determinism(void) {
  for (int mi = 0; mi < 2; mi++) {
    sd_sim_params p = params((sd_sim_material)mi, 64, NULL);
    p.multi_defect_prob = 0.5;
    float a[64 * 64], b[64 * 64];
    uint8_t ma[64 * 64], mb[64 * 64];
    int32_t la = -1, lb = -2;
    for (int64_t idx = 0; idx < 30; idx++) {
      SD_EXPECT_OK(sd_sim_render(&p, SEED, idx, a, ma, &la));
      /* something else in between: no hidden state may leak */
      SD_EXPECT_OK(sd_sim_render(&p, SEED + 1, idx + 1000, b, mb, &lb));
      SD_EXPECT_OK(sd_sim_render(&p, SEED, idx, b, mb, &lb));
      SD_EXPECT(memcmp(a, b, sizeof a) == 0 && memcmp(ma, mb, sizeof ma) == 0 && la == lb);
      SD_EXPECT(la == sd_sim_label_for_index(&p, SEED, idx));
      SD_EXPECT_OK(sd_sim_render(&p, SEED, idx + 1, b, mb, &lb));
      SD_EXPECT(memcmp(a, b, sizeof a) != 0);
      SD_EXPECT_OK(sd_sim_render(&p, SEED + 7, idx, b, mb, &lb));
      SD_EXPECT(memcmp(a, b, sizeof a) != 0);
    }
  }
}

static void test_labels(void) {
  sd_sim_params p = params(SD_SIM_MATERIAL_CDTE, 64, NULL);
  int K = p.num_classes, counts[SD_SIM_MAX_CLASSES] = {0};
  int differs = 0;
  for (int64_t i = 0; i < 7001; i++) {
    int l = sd_sim_label_for_index(&p, SEED, i);
    SD_EXPECT(l >= 0 && l < K);
    if (l < 0 || l >= K) continue;
    counts[l]++;
    differs |= l != sd_sim_label_for_index(&p, SEED + 1, i);
    int mn = 1 << 30, mx = 0;
    for (int k = 0; k < K; k++) mn = counts[k] < mn ? counts[k] : mn, mx = counts[k] > mx ? counts[k] : mx;
    if (mx - mn > 1) {
      SD_EXPECT_MSG(mx - mn <= 1, "prefix of %lld images: class counts %d..%d", (long long)i + 1, mn, mx);
      break;
    }
  }
  int total = 0;
  for (int k = 0; k < K; k++) total += counts[k];
  SD_EXPECT(total == 7001);
  SD_EXPECT(differs); /* the order depends on the seed */
  SD_EXPECT(sd_sim_label_for_index(&p, SEED, -1) == -1);
  /* a single class: always bulk */
  sd_sim_params b = params(SD_SIM_MATERIAL_STO, 64, "bulk");
  SD_EXPECT(sd_sim_label_for_index(&b, SEED, 12345) == 0);
}

/* ---- masks ------------------------------------------------------------------------------- */

static void test_masks(void) {
  for (int mi = 0; mi < 2; mi++) {
    sd_sim_params p = params((sd_sim_material)mi, 64, NULL);
    p.multi_defect_prob = 0;
    float img[64 * 64];
    uint8_t mask[64 * 64];
    int bad_bulk = 0, bad_defect = 0, foreign = 0;
    for (int64_t idx = 0; idx < 140; idx++) {
      int32_t lab = -1;
      sd_sim_info info;
      SD_EXPECT_OK(sd_sim_render_ex(&p, SEED, idx, 0, img, mask, &lab, &info));
      int n = 0;
      for (int k = 0; k < 64 * 64; k++) {
        n += mask[k] == lab;
        foreign += mask[k] != 0 && mask[k] != lab;
      }
      if (lab == 0) bad_bulk += n != 64 * 64; /* all zero */
      if (lab != 0) bad_defect += n < 10;
      SD_EXPECT(info.label == lab && info.num_defects == (lab != 0));
    }
    SD_EXPECT_MSG(bad_bulk == 0, "%d bulk images with a non-empty mask", bad_bulk);
    SD_EXPECT_MSG(bad_defect == 0, "%d defect images with an (almost) empty mask", bad_defect);
    SD_EXPECT_MSG(foreign == 0, "%d mask pixels of another class without multi-defects", foreign);
  }
}

static void test_multi_defect(void) {
  for (int mi = 0; mi < 2; mi++) {
    sd_sim_params p = params((sd_sim_material)mi, 64, NULL);
    p.multi_defect_prob = 1.0;
    float img[64 * 64];
    uint8_t mask[64 * 64];
    int total = 0, two = 0, has_label = 0;
    for (int64_t idx = 0; idx < 200; idx++) {
      int32_t lab;
      sd_sim_info info;
      SD_EXPECT_OK(sd_sim_render_ex(&p, SEED, idx, 0, img, mask, &lab, &info));
      if (lab == 0) continue;
      total++;
      int seen[256] = {0}, distinct = 0;
      for (int k = 0; k < 64 * 64; k++)
        if (mask[k] && !seen[mask[k]]++) distinct++;
      two += distinct == 2;
      has_label += seen[lab] > 0;
      SD_EXPECT(info.num_defects == 2 && info.defects[0].class_index == lab &&
                info.defects[1].class_index != lab && info.defects[1].class_index > 0);
    }
    SD_EXPECT_MSG(has_label == total, "%s: label in the mask of %d of %d", mi ? "sto" : "cdte",
                  has_label, total);
    SD_EXPECT_MSG(two >= 0.95 * total, "%s: two classes in %d of %d masks", mi ? "sto" : "cdte",
                  two, total);
  }
}

/* ---- physics ----------------------------------------------------------------------------- */

/* Statistics of (defect - bulk) over the mask and outside it, noise-free. */
typedef struct diffstat {
  double in_sum, in_abs, in_bulk, in_max, out_max;
  int in_n, out_changed;
} diffstat;

static diffstat diff_one(const sd_sim_params *p, int64_t idx, float *d, float *b, uint8_t *mask,
                         sd_sim_info *info) {
  diffstat s = {0};
  int32_t lab;
  int S = p->size;
  SD_EXPECT_OK(sd_sim_render_ex(p, SEED, idx, SD_SIM_RENDER_NOISE_FREE, d, mask, &lab, info));
  SD_EXPECT_OK(sd_sim_render_ex(p, SEED, idx, SD_SIM_RENDER_NOISE_FREE | SD_SIM_RENDER_NO_DEFECTS,
                                b, NULL, NULL, NULL));
  for (int k = 0; k < S * S; k++) {
    double e = d[k] - b[k];
    if (mask[k]) {
      s.in_n++;
      s.in_sum += e;
      s.in_abs += fabs(e);
      s.in_bulk += b[k];
      s.in_max = fmax(s.in_max, fabs(e));
    } else {
      s.out_max = fmax(s.out_max, fabs(e));
      s.out_changed += fabs(e) > 0.02 * info->dose;
    }
  }
  return s;
}

/* First index >= from with label 1 (class lists below are "bulk,<defect>"). */
static int64_t next_defect(const sd_sim_params *p, int64_t from) {
  while (sd_sim_label_for_index(p, SEED, from) != 1) from++;
  return from;
}

static void test_point_defects(void) {
  const struct {
    sd_sim_material m;
    const char *classes;
    int sign; /* expected sign of the intensity change in the mask, 0 = conserved */
  } cases[] = {
      {SD_SIM_MATERIAL_CDTE, "bulk,vacancy", -1},        {SD_SIM_MATERIAL_STO, "bulk,vacancy", -1},
      {SD_SIM_MATERIAL_CDTE, "bulk,vacancy:1", -1},      {SD_SIM_MATERIAL_CDTE, "bulk,interstitial", 1},
      {SD_SIM_MATERIAL_STO, "bulk,interstitial", 1},     {SD_SIM_MATERIAL_STO, "bulk,substitution:1", 1},
      {SD_SIM_MATERIAL_STO, "bulk,substitution:2", -1},  {SD_SIM_MATERIAL_CDTE, "bulk,substitution:1", 1},
      {SD_SIM_MATERIAL_CDTE, "bulk,antisite", 0},        {SD_SIM_MATERIAL_STO, "bulk,antisite", 0},
  };
  float d[64 * 64], b[64 * 64];
  uint8_t mask[64 * 64];
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    sd_sim_params p = params(cases[c].m, 64, cases[c].classes);
    p.multi_defect_prob = 0;
    int64_t idx = 0;
    int ok_sign = 0, ok_local = 0, n = 20;
    for (int t = 0; t < n; t++) {
      idx = next_defect(&p, idx);
      sd_sim_info info;
      diffstat s = diff_one(&p, idx, d, b, mask, &info);
      idx++;
      double rel = s.in_sum / s.in_bulk;
      if (cases[c].sign < 0) ok_sign += rel < -0.03;
      if (cases[c].sign > 0) ok_sign += rel > 0.03;
      if (cases[c].sign == 0) /* a swap: large local change, nearly conserved total */
        ok_sign += s.in_max > 0.03 * info.dose && fabs(s.in_sum) < 0.35 * s.in_abs;
      /* the change is local: outside the mask only the Gaussian tails remain */
      ok_local += s.out_max <= 0.12 * s.in_max;
    }
    SD_EXPECT_MSG(ok_sign == n, "%s %s: intended intensity change in %d of %d images",
                  sd_sim_material_name(cases[c].m), cases[c].classes, ok_sign, n);
    SD_EXPECT_MSG(ok_local == n, "%s %s: change confined to the mask in %d of %d images",
                  sd_sim_material_name(cases[c].m), cases[c].classes, ok_local, n);
  }
}

/* Principal-axis ratio of the mask pixels (a band is long and thin), and their count. */
static double mask_anisotropy(const uint8_t *mask, int S, int *count, double axis[2]) {
  double n = 0, mx = 0, my = 0;
  for (int i = 0; i < S; i++)
    for (int j = 0; j < S; j++)
      if (mask[i * S + j]) n++, mx += j, my += i;
  *count = (int)n;
  if (n < 2) return 0;
  mx /= n, my /= n;
  double sxx = 0, syy = 0, sxy = 0;
  for (int i = 0; i < S; i++)
    for (int j = 0; j < S; j++)
      if (mask[i * S + j]) sxx += (j - mx) * (j - mx), syy += (i - my) * (i - my), sxy += (j - mx) * (i - my);
  double tr = sxx + syy, det = sxx * syy - sxy * sxy, disc = sqrt(fmax(0, tr * tr / 4 - det));
  double l1 = tr / 2 + disc, l2 = tr / 2 - disc;
  axis[0] = sxy, axis[1] = l1 - sxx; /* eigenvector of l1 */
  if (fabs(axis[0]) + fabs(axis[1]) < 1e-9) axis[0] = 1, axis[1] = 0;
  double an = hypot(axis[0], axis[1]);
  axis[0] /= an, axis[1] /= an;
  return l2 > 0 ? l1 / l2 : 1e9;
}

static void test_planar_defects(void) {
  const struct {
    sd_sim_material m;
    const char *classes;
  } cases[] = {
      {SD_SIM_MATERIAL_CDTE, "bulk,stacking_fault"}, {SD_SIM_MATERIAL_CDTE, "bulk,twin"},
      {SD_SIM_MATERIAL_STO, "bulk,stacking_fault"},  {SD_SIM_MATERIAL_STO, "bulk,twin"},
  };
  const int S = 96;
  float *d = malloc(sizeof(float) * S * S), *b = malloc(sizeof(float) * S * S);
  uint8_t *mask = malloc((size_t)S * S);
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    sd_sim_params p = params(cases[c].m, S, cases[c].classes);
    p.multi_defect_prob = 0;
    int64_t idx = 0;
    int ok_band = 0, ok_side = 0, n = 12;
    for (int t = 0; t < n; t++) {
      idx = next_defect(&p, idx);
      sd_sim_info info;
      diff_one(&p, idx, d, b, mask, &info);
      idx++;
      int cnt;
      double ax[2] = {1, 0};
      double an = mask_anisotropy(mask, S, &cnt, ax);
      ok_band += an > 5 && cnt > 0.05 * S * S && cnt < 0.6 * S * S;
      /* the lattice changed over a large region on one side of the band only */
      int plus = 0, minus = 0;
      double cx = info.defects[0].x, cy = info.defects[0].y;
      for (int i = 0; i < S; i++)
        for (int j = 0; j < S; j++) {
          if (mask[i * S + j] || fabs(d[i * S + j] - b[i * S + j]) < 0.1 * info.dose) continue;
          double side = ax[0] * (i - cy) - ax[1] * (j - cx);
          /* columns inside the band reach out by their Gaussian tails */
          if (fabs(side) < (p.mask_band_halfwidth + 2 * info.probe_sigma) / info.pixel_size) continue;
          if (side > 0) plus++;
          else minus++;
        }
      int big = plus > minus ? plus : minus, small = plus > minus ? minus : plus;
      int one_side = big > 0.03 * S * S && small < 0.1 * big;
      if (!one_side)
        fprintf(stderr, "  %s %s index %lld: %d changed pixels on one side, %d on the other\n",
                sd_sim_material_name(cases[c].m), cases[c].classes, (long long)(idx - 1), big, small);
      ok_side += one_side;
    }
    SD_EXPECT_MSG(ok_band == n, "%s %s: band-shaped mask in %d of %d images",
                  sd_sim_material_name(cases[c].m), cases[c].classes, ok_band, n);
    SD_EXPECT_MSG(ok_side == n, "%s %s: lattice changed on one side of the band in %d of %d",
                  sd_sim_material_name(cases[c].m), cases[c].classes, ok_side, n);
  }
  free(d);
  free(b);
  free(mask);
}

static void test_dislocation_mask(void) {
  for (int mi = 0; mi < 2; mi++) {
    sd_sim_params p = params((sd_sim_material)mi, 64, "bulk,dislocation");
    p.multi_defect_prob = 0;
    float d[64 * 64], b[64 * 64];
    uint8_t mask[64 * 64];
    int64_t idx = 0;
    for (int t = 0; t < 10; t++) {
      idx = next_defect(&p, idx);
      sd_sim_info info;
      diffstat s = diff_one(&p, idx, d, b, mask, &info);
      idx++;
      /* a disc of mask_core_radius around the core (clipped by the image border) */
      double r = p.mask_core_radius / info.pixel_size, cx = info.defects[0].x, cy = info.defects[0].y;
      int expect = 0, outside = 0;
      for (int i = 0; i < 64; i++)
        for (int j = 0; j < 64; j++) {
          double dd = hypot(j - cx, i - cy);
          expect += dd <= r;
          outside += mask[i * 64 + j] && dd > 1.05 * r + 1;
        }
      SD_EXPECT_MSG(abs(s.in_n - expect) < 0.08 * expect && outside == 0,
                    "%s: disc of %d px, expected %d; %d px beyond the radius",
                    mi ? "sto" : "cdte", s.in_n, expect, outside);
      SD_EXPECT(s.in_abs > 0.05 * s.in_bulk); /* the lattice around the core is disturbed */
    }
  }
}

/* Crystallography on the column lists (material frame): faults keep nearest-neighbour
 * distances (an intrinsic fault and a coherent twin have no AA stacking), the fault shift is
 * parallel to the plane, and an edge dislocation has a closure failure of one Burgers vector. */
static double min_site_distance(const sim_model *m, double within) {
  double best = 1e300;
  for (int i = 0; i < m->n; i++) {
    if (m->col[i].basis != 0 || hypot(m->col[i].sx, m->col[i].sy) > within) continue;
    for (int j = i + 1; j < m->n; j++) {
      if (m->col[j].basis != 0) continue;
      double d = hypot(m->col[i].sx - m->col[j].sx, m->col[i].sy - m->col[j].sy);
      if (d < best) best = d;
    }
  }
  return best;
}

static double min_column_distance(const sim_model *m, double within) {
  double best = 1e300;
  for (int i = 0; i < m->n; i++) {
    if (hypot(m->col[i].x, m->col[i].y) > within) continue;
    for (int j = 0; j < m->n; j++) {
      if (j == i) continue;
      double d = hypot(m->col[i].x - m->col[j].x, m->col[i].y - m->col[j].y);
      if (d < best) best = d;
    }
  }
  return best;
}

static void test_crystallography(void) {
  for (int mi = 0; mi < 2; mi++) {
    const sim_crystal *x = sim_crystal_get((sd_sim_material)mi);
    double tmin = fmin(hypot(x->t1[0], x->t1[1]), hypot(x->t2[0], x->t2[1]));
    sd_sim_params p = params((sd_sim_material)mi, 64, NULL);
    double origin[2] = {0.3 * x->t1[0] + 0.6 * x->t2[0], 0.3 * x->t1[1] + 0.6 * x->t2[1]};
    for (int d = 0; d < 3; d++) {
      sd_sim_defect def = d == 0 ? SD_SIM_DEFECT_STACKING_FAULT
                          : d == 1 ? SD_SIM_DEFECT_TWIN
                                   : SD_SIM_DEFECT_DISLOCATION;
      int nvar = d == 0 ? x->n_sf : d == 1 ? x->n_twin : x->n_burgers;
      for (int v = 1; v <= nvar; v++)
        for (int trial = 0; trial < 4; trial++) {
          sim_model m, ref;
          sd_rng r;
          sd_rng_init(&r, SEED, (uint64_t)(100 * d + 10 * v + trial), 99);
          SD_EXPECT_OK(sim_model_build(&m, x, origin, 0.2, 40.0, 9.0, 1.0, p.z_exponent));
          SD_EXPECT_OK(sim_model_build(&ref, x, origin, 0.2, 40.0, 9.0, 1.0, p.z_exponent));
          SD_EXPECT_OK(sim_model_add_defect(&m, &p, def, 1, v, &r));
          const sim_defect_geom *g = &m.def[0];
          /* an intrinsic fault and a coherent (CdTe Sigma-3) twin keep every site at the bulk
           * nearest-neighbour distance (no AA stacking); the sto Sigma-5 boundary is not
           * coherent, but no two columns may come closer than 60% of the bulk minimum */
          if (def == SD_SIM_DEFECT_STACKING_FAULT || (def == SD_SIM_DEFECT_TWIN && mi == 0)) {
            double dm = min_site_distance(&m, 25.0);
            SD_EXPECT_MSG(dm > 0.99 * tmin, "%s %s variant %d: sites %.3f A apart (bulk %.3f)",
                          x->name, sd_sim_defect_name(def), v, dm, tmin);
          }
          if (def != SD_SIM_DEFECT_DISLOCATION) {
            double dc = min_column_distance(&m, 25.0);
            SD_EXPECT_MSG(dc > 0.59 * x->min_column_distance,
                          "%s %s variant %d: columns %.3f A apart (bulk %.3f)", x->name,
                          sd_sim_defect_name(def), v, dc, x->min_column_distance);
          }
          if (def == SD_SIM_DEFECT_STACKING_FAULT) {
            int moved = 0, parallel = 1;
            for (int i = 0; i < m.n; i++) {
              double ex = m.col[i].x - ref.col[i].x, ey = m.col[i].y - ref.col[i].y;
              if (hypot(ex, ey) < 1e-9) continue;
              moved++;
              parallel &= fabs(ex * g->dy - ey * g->dx) < 1e-9; /* no component along the normal */
            }
            SD_EXPECT(moved > m.n / 5 && moved < 4 * m.n / 5 && parallel);
          }
          if (def == SD_SIM_DEFECT_DISLOCATION) {
            /* Burgers circuit: the displacement along b of sites on a ring around the core
             * runs through one Burgers vector (the theta term), i.e. one extra half plane */
            double lo = 1e300, hi = -1e300;
            for (int i = 0; i < m.n; i++) {
              double rr = hypot(ref.col[i].sx - g->px0, ref.col[i].sy - g->py0);
              if (rr < 12 || rr > 20) continue;
              double u = (m.col[i].sx - ref.col[i].sx) * g->dx + (m.col[i].sy - ref.col[i].sy) * g->dy;
              lo = fmin(lo, u), hi = fmax(hi, u);
            }
            const int *bv = x->burgers[v - 1];
            double blen = hypot(bv[0] * x->t1[0] + bv[1] * x->t2[0], bv[0] * x->t1[1] + bv[1] * x->t2[1]);
            SD_EXPECT_MSG(hi - lo > 0.9 * blen && hi - lo < 1.3 * blen,
                          "%s dislocation variant %d: u.b spans %.3f A, |b| = %.3f A", x->name, v,
                          hi - lo, blen);
          }
          free(m.col);
          free(ref.col);
        }
    }
  }
}

/* ---- lattice spacing (naive DFT) ----------------------------------------------------------- */

/* Period (px) of the strongest Fourier component of v (Hann window), scanned finely. */
static double dominant_period(const double *v, int n, double pmin, double pmax) {
  double mean = 0;
  for (int j = 0; j < n; j++) mean += v[j];
  mean /= n;
  double best = 0, bestf = 0;
  for (double f = 1.0 / pmax; f <= 1.0 / pmin; f += 2e-5) {
    double re = 0, im = 0;
    for (int j = 0; j < n; j++) {
      double w = 0.5 - 0.5 * cos(2 * M_PI * j / (n - 1));
      re += w * (v[j] - mean) * cos(2 * M_PI * f * j);
      im -= w * (v[j] - mean) * sin(2 * M_PI * f * j);
    }
    double a = re * re + im * im;
    if (a > best) best = a, bestf = f;
  }
  return 1.0 / bestf;
}

static void test_lattice_spacing(void) {
  const int S = 256;
  float *img = malloc(sizeof(float) * S * S);
  double prof[256];
  const double pix[2] = {0.20, 0.30};
  for (int mi = 0; mi < 2; mi++)
    for (int k = 0; k < 2; k++) {
      sd_sim_params p = params((sd_sim_material)mi, S, "bulk");
      p.pixel_size_min = p.pixel_size_max = pix[k];
      p.rotation_deg = 0, p.rotation_max_deg = 0;
      p.z_exponent = 1.7; /* Sr clearly brighter than Ti-O: the fundamental is a */
      SD_EXPECT_OK(sd_sim_render_ex(&p, SEED, 3, SD_SIM_RENDER_NOISE_FREE | SD_SIM_RENDER_NO_DISTORTION | SD_SIM_RENDER_FLAT_BACKGROUND, img, NULL, NULL, NULL));
      /* columns along x: cdte dumbbells every a/(2 sqrt2) along [1-10]; sto Sr every a */
      double expect = mi == 0 ? 6.48 / (2 * sqrt(2.0)) / pix[k] : 3.905 / pix[k];
      for (int j = 0; j < S; j++) {
        prof[j] = 0;
        for (int i = 0; i < S; i++) prof[j] += img[i * S + j];
      }
      double per = dominant_period(prof, S, 4.0, 40.0);
      SD_EXPECT_MSG(fabs(per - expect) < 0.01 * expect, "%s at %.2f A/px: period %.3f px, expected %.3f",
                    mi ? "sto" : "cdte", pix[k], per, expect);
    }
  free(img);
}

/* ---- noise ------------------------------------------------------------------------------- */

static void test_poisson(void) {
  for (int gi = 0; gi < 2; gi++) {
    sd_sim_params p = params(SD_SIM_MATERIAL_STO, 64, NULL);
    p.dose_min = p.dose_max = 200;
    p.gaussian_noise = gi ? 0.05 : 0.0;
    p.post_blur = 0, p.scan_smear = 0; /* both correlate neighbouring pixels */
    float lam[64 * 64], x[64 * 64];
    double s1 = 0, s2 = 0, n = 0, bin_var[2] = {0}, bin_mean[2] = {0}, bin_n[2] = {0};
    double extra = pow(p.gaussian_noise * 200, 2);
    for (int64_t idx = 0; idx < 30; idx++) {
      SD_EXPECT_OK(sd_sim_render_ex(&p, SEED, idx, SD_SIM_RENDER_NOISE_FREE, lam, NULL, NULL, NULL));
      SD_EXPECT_OK(sd_sim_render_ex(&p, SEED, idx, 0, x, NULL, NULL, NULL));
      for (int k = 0; k < 64 * 64; k++) {
        double e = x[k] - lam[k], z = e / sqrt(lam[k] + extra);
        s1 += z, s2 += z * z, n++;
        int bin = lam[k] > 0.55 * 200; /* between the columns / on the columns */
        bin_var[bin] += e * e, bin_mean[bin] += lam[k] + extra, bin_n[bin]++;
      }
    }
    double mean = s1 / n, var = s2 / n - mean * mean;
    SD_EXPECT_MSG(fabs(mean) < 0.02 && fabs(var - 1) < 0.03,
                  "gaussian_noise %.2f: standardised residual mean %.4f variance %.4f",
                  p.gaussian_noise, mean, var);
    for (int b = 0; b < 2; b++)
      SD_EXPECT_MSG(bin_n[b] > 1000 && fabs(bin_var[b] / bin_mean[b] - 1) < 0.05,
                    "variance / mean = %.3f over %g pixels (bin %d)", bin_var[b] / bin_mean[b],
                    bin_n[b], b);
  }
  /* the dose sets the brightest column peak */
  for (int mi = 0; mi < 2; mi++) {
    sd_sim_params p = params((sd_sim_material)mi, 64, "bulk");
    p.dose_min = p.dose_max = 500;
    p.column_variation = 0;
    float lam[64 * 64];
    for (int64_t idx = 0; idx < 5; idx++) {
      SD_EXPECT_OK(sd_sim_render_ex(&p, SEED, idx, SD_SIM_RENDER_NOISE_FREE | SD_SIM_RENDER_FLAT_BACKGROUND, lam, NULL, NULL, NULL));
      double mx = 0;
      for (int k = 0; k < 64 * 64; k++) mx = fmax(mx, lam[k]);
      SD_EXPECT_MSG(mx > 0.85 * 500 && mx < 1.3 * 500, "%s: brightest peak %.1f at dose 500",
                    mi ? "sto" : "cdte", mx);
    }
  }
}

/* ---- preview and speed --------------------------------------------------------------------- */

static void test_preview(void) {
  sd_sim_params p = params(SD_SIM_MATERIAL_CDTE, 64, NULL);
  uint8_t *pix = NULL;
  int w = 0, h = 0;
  SD_EXPECT_OK(sd_sim_montage(&p, SEED, 10, 4, &pix, &w, &h));
  SD_EXPECT(w == 4 * 64 + 3 * 2 && h == 3 * 64 + 2 * 2);
  if (pix && w == 262 && h == 196) {
    int gap_ok = 1, lo = 255, hi = 0;
    for (int i = 0; i < h; i++) gap_ok &= pix[i * w + 64] == 0 && pix[i * w + 65] == 0;
    for (int i = 0; i < 64; i++)
      for (int j = 0; j < 64; j++) {
        int v = pix[i * w + j];
        lo = v < lo ? v : lo, hi = v > hi ? v : hi;
      }
    SD_EXPECT(gap_ok && lo == 0 && hi == 255);
  }
  free(pix);
  char dir[] = "/tmp/test_sim_XXXXXX";
  if (mkdtemp(dir)) {
    char path[256];
    snprintf(path, sizeof path, "%s/preview.png", dir);
    SD_EXPECT_OK(sd_sim_preview(&p, SEED, 12, 6, path));
    FILE *f = fopen(path, "rb");
    unsigned char sig[8] = {0};
    SD_EXPECT(f && fread(sig, 1, 8, f) == 8 && memcmp(sig, "\x89PNG\r\n\x1a\n", 8) == 0);
    if (f) fclose(f);
    unlink(path);
    rmdir(dir);
  }
  SD_EXPECT(sd_sim_montage(&p, SEED, 0, 4, &pix, &w, &h) == SD_ERR_ARG);
  sd_error_clear();
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void test_speed(void) {
  for (int mi = 0; mi < 2; mi++) {
    sd_sim_params p = params((sd_sim_material)mi, 64, NULL);
    float img[64 * 64];
    uint8_t mask[64 * 64];
    int32_t lab;
    const int n = 2000;
    double t0 = now();
    for (int64_t i = 0; i < n; i++) SD_EXPECT_OK(sd_sim_render(&p, SEED, i, img, mask, &lab));
    double rate = n / (now() - t0);
    /* informational only: sanitizer, valgrind and debug runs are far slower (a release build
     * on one core renders about 2500-3000 images/s) */
    fprintf(stderr, "test_sim: %s 64x64 render speed %.0f images/s (one core)\n",
            sd_sim_material_name((sd_sim_material)mi), rate);
  }
}

int main(void) {
  test_params();
  test_determinism();
  test_labels();
  test_masks();
  test_multi_defect();
  test_point_defects();
  test_planar_defects();
  test_dislocation_mask();
  test_crystallography();
  test_lattice_spacing();
  test_poisson();
  test_preview();
  test_speed();
  return sd_test_finish("test_sim");
}
