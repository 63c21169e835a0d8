/* test_split.c - splits and near-copy groups (split.h).
 *
 * Stratified split: determinism by seed, part sizes per class against the rounding rule, every
 * part represented. Grouped split: no group spans two parts, fractions met up to group sizes,
 * determinism. Near-copies on a synthetic lattice with independent noise (no data needed):
 * overlapping crops match at their true offset, non-overlapping crops of the same lattice do
 * not (while the plain correlation of the raw images calls them a match), the FFT correlation
 * agrees with a naive loop over the residuals, groups equal the ground-truth components.
 * With the real data (../shared/data/stem-real; skipped with a message when absent, unless
 * CI=true): random crops of the two bulk reference images, pair precision/recall at the
 * default threshold; and the CdTe patches: groups equal the groups of pixel-identical crops
 * found by an exhaustive search.
 */
#include "stemdefect/split.h"

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "stemdefect/imgread.h"
#include "stemdefect/rng.h"

#include "sd_test.h"

#define PATH_CAP 4096

/* ---- helpers ------------------------------------------------------------------------------ */

static int64_t uf_find(int64_t *p, int64_t i) {
  while (p[i] != i) {
    p[i] = p[p[i]];
    i = p[i];
  }
  return i;
}

static void uf_union(int64_t *p, int64_t a, int64_t b) {
  a = uf_find(p, a);
  b = uf_find(p, b);
  if (a != b)
    p[a > b ? a : b] = a < b ? a : b;
}

/* the rule of split.h: largest remainder, then one per positive part when m >= 3 */
static void expected_sizes(int64_t m, double ft, double fv, int64_t cnt[3]) {
  double f[3] = {ft, fv, 1.0 - ft - fv}, rem[3];
  int64_t sum = 0;
  for (int k = 0; k < 3; k++) {
    cnt[k] = (int64_t)floor(f[k] * (double)m);
    rem[k] = f[k] * (double)m - (double)cnt[k];
    sum += cnt[k];
  }
  for (; sum < m; sum++) {
    int b = 0;
    for (int k = 1; k < 3; k++)
      if (rem[k] > rem[b])
        b = k;
    cnt[b]++;
    rem[b] = -1;
  }
  if (m >= 3)
    for (int k = 0; k < 3; k++)
      if (f[k] > 1e-12 && cnt[k] == 0) {
        int b = 0;
        for (int j = 1; j < 3; j++)
          if (cnt[j] > cnt[b])
            b = j;
        cnt[b]--;
        cnt[k]++;
      }
}

/* naive NCC of a and b over the overlap at offset (dy, dx): b(y+dy, x+dx) ~ a(y, x) */
static double ncc_at(const float *a, const float *b, int h, int w, int dy, int dx) {
  double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
  int n = 0;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      int yy = y + dy, xx = x + dx;
      if (yy < 0 || yy >= h || xx < 0 || xx >= w)
        continue;
      double u = a[y * w + x], v = b[yy * w + xx];
      sa += u;
      sb += v;
      saa += u * u;
      sbb += v * v;
      sab += u * v;
      n++;
    }
  double den = (saa - sa * sa / n) * (sbb - sb * sb / n);
  return den > 0 ? (sab - sa * sb / n) / sqrt(den) : -1.0;
}

/* naive best over the offsets allowed by p (for 64x64: |d| <= 24, overlap >= min_overlap) */
static double ncc_best(const float *a, const float *b, int h, int w, const sd_nearcopy_params *p,
                       int *bdy, int *bdx) {
  double best = -1;
  for (int dy = -p->max_shift; dy <= p->max_shift; dy++)
    for (int dx = -p->max_shift; dx <= p->max_shift; dx++) {
      if ((double)(h - abs(dy)) * (w - abs(dx)) < p->min_overlap * h * w)
        continue;
      double r = ncc_at(a, b, h, w, dy, dx);
      if (r > best) {
        best = r;
        *bdy = dy;
        *bdx = dx;
      }
    }
  return best;
}

static void crop(const float *big, int bw, int y0, int x0, int h, int w, float *out) {
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      out[y * w + x] = big[(size_t)(y0 + y) * bw + x0 + x];
}

/* A synthetic HAADF-like lattice (oblique cell, periods not dividing 64, Gaussian columns of
 * two intensities) with independent Gaussian noise of standard deviation sigma. (H, W). */
static float *make_lattice(int H, int W, double sigma, uint64_t seed) {
  float *img = malloc((size_t)H * W * sizeof *img);
  if (!img)
    return NULL;
  const double a1y = 1.3, a1x = 7.7, a2y = 8.9, a2x = -2.6; /* lattice vectors, pixels */
  const double det = a1y * a2x - a1x * a2y;
  sd_rng r;
  sd_rng_init(&r, seed, 0, 99);
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      /* fractional coordinates of (y, x) in the cell */
      double u = (y * a2x - x * a2y) / det, v = (a1y * x - a1x * y) / det;
      double v0 = 0;
      for (int du = -1; du <= 1; du++)
        for (int dv = -1; dv <= 1; dv++) {
          double cu = floor(u) + du, cv = floor(v) + dv;
          for (int s = 0; s < 2; s++) { /* two columns per cell */
            double pu = cu + 0.5 * s, pv = cv + 0.5 * s;
            double py = pu * a1y + pv * a2y, px = pu * a1x + pv * a2x;
            double d2 = (y - py) * (y - py) + (x - px) * (x - px);
            v0 += (s ? 0.6 : 1.0) * exp(-d2 / (2 * 1.8 * 1.8));
          }
        }
      img[(size_t)y * W + x] = (float)(100.0 + 50.0 * v0 + 50.0 * sigma * sd_rng_normal(&r));
    }
  return img;
}

/* ---- stratified split ----------------------------------------------------------------------- */

static void test_stratified(void) {
  enum { N = 1000, C = 5 };
  int32_t labels[N];
  int8_t p1[N], p2[N], p3[N];
  sd_rng r;
  sd_rng_init(&r, 7, 0, 1);
  int64_t count[C + 1] = {0};
  for (int i = 0; i < N; i++) {
    /* uneven classes: 0 is common, 4 has 3 items, some unknown */
    int64_t u = (int64_t)sd_rng_below(&r, 100);
    labels[i] = u < 40 ? 0 : u < 65 ? 1 : u < 85 ? 2 : u < 97 ? 3 : -1;
  }
  for (int i = 0, k = 0; i < N && k < 3; i++)
    if (labels[i] == 3)
      labels[i] = 4, k++;
  for (int i = 0; i < N; i++)
    count[labels[i] < 0 ? C : labels[i]]++;
  SD_EXPECT_OK(sd_split_stratified(labels, N, C, 0.7, 0.15, 42, p1));
  SD_EXPECT_OK(sd_split_stratified(labels, N, C, 0.7, 0.15, 42, p2));
  SD_EXPECT_OK(sd_split_stratified(labels, N, C, 0.7, 0.15, 43, p3));
  SD_EXPECT(memcmp(p1, p2, N) == 0);
  SD_EXPECT_MSG(memcmp(p1, p3, N) != 0, "seeds 42 and 43 gave the same split");
  for (int s = 0; s <= C; s++) {
    int64_t got[3] = {0, 0, 0}, want[3];
    for (int i = 0; i < N; i++)
      if ((labels[i] < 0 ? C : labels[i]) == s) {
        SD_EXPECT(p1[i] >= 0 && p1[i] <= 2);
        got[p1[i]]++;
      }
    expected_sizes(count[s], 0.7, 0.15, want);
    for (int k = 0; k < 3; k++)
      SD_EXPECT_MSG(got[k] == want[k], "stratum %d part %d: %lld items, expected %lld", s, k,
                    (long long)got[k], (long long)want[k]);
    if (count[s] >= 3)
      for (int k = 0; k < 3; k++)
        SD_EXPECT_MSG(got[k] >= 1, "stratum %d part %d empty", s, k);
  }
  /* a class of 3 at 0.8/0.1 still gets one item in each part */
  int32_t three[3] = {0, 0, 0};
  int8_t pt[3];
  SD_EXPECT_OK(sd_split_stratified(three, 3, 1, 0.8, 0.1, 1, pt));
  SD_EXPECT(pt[0] + pt[1] + pt[2] == 3 && pt[0] != pt[1] && pt[1] != pt[2] && pt[0] != pt[2]);
  /* no validation part */
  SD_EXPECT_OK(sd_split_stratified(labels, N, C, 0.8, 0.0, 5, p1));
  int nval = 0;
  for (int i = 0; i < N; i++)
    nval += p1[i] == SD_SPLIT_PART_VAL;
  SD_EXPECT(nval == 0);
  /* bad arguments */
  SD_EXPECT(sd_split_stratified(labels, N, C, 0.9, 0.2, 1, p1) == SD_ERR_ARG);
  sd_error_clear();
  SD_EXPECT(sd_split_stratified(labels, N, C, -0.1, 0.2, 1, p1) == SD_ERR_ARG);
  sd_error_clear();
  SD_EXPECT(sd_split_stratified(labels, N, 3, 0.7, 0.15, 1, p1) == SD_ERR_ARG);
  SD_EXPECT(strstr(sd_error_message(), "label") != NULL);
  sd_error_clear();
}

/* ---- grouped split ----------------------------------------------------------------------------
 */

static void test_grouped(void) {
  enum { C = 4, NMAX = 3000 };
  static int32_t labels[NMAX], group[NMAX];
  static int8_t p1[NMAX], p2[NMAX];
  sd_rng r;
  sd_rng_init(&r, 11, 0, 1);
  int n = 0, ng = 0, maxsize[C + 1] = {0};
  /* groups of 1..12 items, labels mostly the group's class, ids shuffled and sparse */
  while (n < NMAX - 12) {
    int size = 1 + (int)sd_rng_below(&r, sd_rng_below(&r, 4) == 0 ? 12 : 3);
    int cls = (int)sd_rng_below(&r, C + 1) - 1; /* -1..C-1 */
    int gid = 3 * ng + 1;
    for (int k = 0; k < size; k++) {
      labels[n] = (k == 1 && size >= 4 && cls >= 0) ? (cls + 1) % C : cls; /* a minority */
      group[n] = gid;
      n++;
    }
    int s = cls < 0 ? C : cls;
    if (size > maxsize[s])
      maxsize[s] = size;
    ng++;
  }
  /* interleave items so groups are not contiguous */
  for (int i = n - 1; i > 0; i--) {
    int j = (int)sd_rng_below(&r, (uint64_t)i + 1);
    int32_t tl = labels[i], tg = group[i];
    labels[i] = labels[j];
    group[i] = group[j];
    labels[j] = tl;
    group[j] = tg;
  }
  SD_EXPECT_OK(sd_split_grouped(labels, group, n, C, 0.7, 0.15, 3, p1));
  SD_EXPECT_OK(sd_split_grouped(labels, group, n, C, 0.7, 0.15, 3, p2));
  SD_EXPECT(memcmp(p1, p2, (size_t)n) == 0);
  SD_EXPECT_OK(sd_split_grouped(labels, group, n, C, 0.7, 0.15, 4, p2));
  SD_EXPECT_MSG(memcmp(p1, p2, (size_t)n) != 0, "seeds 3 and 4 gave the same grouped split");
  /* no group spans two parts */
  int spans = 0;
  int8_t *gpart = malloc((size_t)(3 * ng + 2));
  memset(gpart, -1, (size_t)(3 * ng + 2));
  for (int i = 0; i < n; i++) {
    if (gpart[group[i]] < 0)
      gpart[group[i]] = p1[i];
    spans += gpart[group[i]] != p1[i];
  }
  SD_EXPECT_MSG(spans == 0, "%d items in a different part from their group", spans);
  /* fractions per stratum (majority label), within the largest group size */
  int64_t gsize[3 * NMAX + 2];
  int32_t gmaj[3 * NMAX + 2];
  memset(gsize, 0, sizeof gsize);
  for (int i = 0; i < n; i++)
    gsize[group[i]]++;
  for (int i = 0; i < n; i++)
    gmaj[group[i]] = -2;
  for (int i = 0; i < n; i++) { /* majority: count the labels of the group */
    if (gmaj[group[i]] != -2)
      continue;
    int votes[C + 1] = {0};
    for (int j = 0; j < n; j++)
      if (group[j] == group[i])
        votes[labels[j] < 0 ? C : labels[j]]++;
    int best = C;
    for (int c = 0; c < C; c++)
      if (votes[c] > 0 && (best == C || votes[c] > votes[best]))
        best = c;
    gmaj[group[i]] = best;
  }
  for (int s = 0; s <= C; s++) {
    int64_t got[3] = {0, 0, 0}, m = 0, want[3];
    for (int i = 0; i < n; i++)
      if (gmaj[group[i]] == s) {
        got[p1[i]]++;
        m++;
      }
    expected_sizes(m, 0.7, 0.15, want);
    for (int k = 0; k < 3; k++)
      SD_EXPECT_MSG(llabs(got[k] - want[k]) <= maxsize[s], "stratum %d part %d: %lld vs %lld", s, k,
                    (long long)got[k], (long long)want[k]);
    double frac = (double)got[0] / (double)m;
    SD_EXPECT_MSG(fabs(frac - 0.7) < 0.03, "stratum %d train fraction %.3f", s, frac);
  }
  free(gpart);
  /* singletons: the grouped split meets the fractions like the stratified one */
  for (int i = 0; i < n; i++)
    group[i] = i;
  SD_EXPECT_OK(sd_split_grouped(labels, group, n, C, 0.6, 0.2, 9, p1));
  int64_t cnt[3] = {0, 0, 0};
  for (int i = 0; i < n; i++)
    cnt[p1[i]]++;
  SD_EXPECT_MSG(llabs(cnt[0] - (int64_t)(0.6 * n)) <= C + 1 &&
                    llabs(cnt[1] - (int64_t)(0.2 * n)) <= C + 1,
                "singleton groups: %lld/%lld/%lld of %d", (long long)cnt[0], (long long)cnt[1],
                (long long)cnt[2], n);
  /* one big group and two small ones: each part still gets a group */
  int32_t l3[12] = {0}, g3[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 7};
  int8_t p3[12];
  SD_EXPECT_OK(sd_split_grouped(l3, g3, 12, 1, 0.7, 0.15, 1, p3));
  SD_EXPECT(p3[0] == SD_SPLIT_PART_TRAIN && p3[10] != p3[11] && p3[10] != 0 && p3[11] != 0);
  g3[3] = -1;
  SD_EXPECT(sd_split_grouped(l3, g3, 12, 1, 0.7, 0.15, 1, p3) == SD_ERR_ARG);
  sd_error_clear();
}

/* ---- near-copies on a synthetic lattice ----------------------------------------------------- */

static void test_nearcopy_synthetic(void) {
  const int H = 320, W = 320, h = 64, w = 64;
  float *big = make_lattice(H, W, 0.1, 5);
  SD_EXPECT(big != NULL);
  if (!big)
    return;
  sd_nearcopy_params p = sd_nearcopy_params_default();
  float a[64 * 64], b[64 * 64], c[64 * 64], ra[64 * 64], rb[64 * 64];
  crop(big, W, 40, 50, h, w, a);
  crop(big, W, 45, 41, h, w, b);   /* overlaps a: b(y - 5, x + 9) = a(y, x) */
  crop(big, W, 200, 210, h, w, c); /* no overlap with a */
  double corr;
  int dx = 0, dy = 0;
  SD_EXPECT_OK(sd_nearcopy_pair(a, b, h, w, &p, &corr, &dx, &dy));
  SD_EXPECT_MSG(corr >= 0.8 && dy == -5 && dx == 9, "overlapping crops: corr %.3f at (%d, %d)",
                corr, dy, dx);
  double c_overlap = corr, c_disjoint;
  SD_EXPECT_OK(sd_nearcopy_pair(a, c, h, w, &p, &c_disjoint, &dx, &dy));
  SD_EXPECT_MSG(c_disjoint < 0.3, "disjoint crops of the same lattice: corr %.3f", c_disjoint);
  /* the plain correlation of the raw images is fooled by the lattice */
  int ry, rx;
  double raw = ncc_best(a, c, h, w, &p, &ry, &rx);
  fprintf(stderr,
          "test_split: synthetic lattice: residual NCC %.3f overlapping, %.3f disjoint; raw-image "
          "NCC of the disjoint pair %.3f\n",
          c_overlap, c_disjoint, raw);
  SD_EXPECT_MSG(raw > 0.7, "raw-image NCC of disjoint lattice crops %.3f (expected high)", raw);
  /* the FFT correlation equals a naive loop over the residuals */
  SD_EXPECT_OK(sd_nearcopy_residual(a, h, w, &p, ra));
  SD_EXPECT_OK(sd_nearcopy_residual(c, h, w, &p, rb));
  int ny = 0, nx = 0;
  double naive = ncc_best(ra, rb, h, w, &p, &ny, &nx);
  SD_EXPECT_OK(sd_nearcopy_pair(a, c, h, w, &p, &corr, &dx, &dy));
  SD_EXPECT_NEAR(corr, naive, 1e-3);
  SD_EXPECT_MSG(dy == ny && dx == nx, "offset (%d, %d) vs naive (%d, %d)", dy, dx, ny, nx);
  SD_EXPECT_OK(sd_nearcopy_residual(b, h, w, &p, rb));
  SD_EXPECT_NEAR(ncc_at(ra, rb, h, w, -5, 9), ncc_best(ra, rb, h, w, &p, &ny, &nx), 1e-9);
  SD_EXPECT_OK(sd_nearcopy_pair(a, b, h, w, &p, &corr, &dx, &dy));
  SD_EXPECT_NEAR(corr, ncc_at(ra, rb, h, w, -5, 9), 1e-3);
  /* residual: zero mean, unit variance, the lattice gone (little correlation with the image) */
  double m = 0, v = 0;
  for (int i = 0; i < h * w; i++)
    m += ra[i];
  m /= h * w;
  for (int i = 0; i < h * w; i++)
    v += (ra[i] - m) * (ra[i] - m);
  v /= h * w;
  SD_EXPECT_NEAR(m, 0.0, 1e-4);
  SD_EXPECT_NEAR(v, 1.0, 1e-3);
  float *clean = make_lattice(H, W, 0.0, 5), lattice[64 * 64], noise[64 * 64];
  SD_EXPECT(clean != NULL);
  if (clean) {
    crop(clean, W, 40, 50, h, w, lattice);
    for (int i = 0; i < h * w; i++)
      noise[i] = a[i] - lattice[i];
    double lat = ncc_at(lattice, ra, h, w, 0, 0), noi = ncc_at(noise, ra, h, w, 0, 0);
    SD_EXPECT_MSG(fabs(lat) < 0.1 && noi > 0.8,
                  "residual correlates %.3f with the lattice and %.3f with the noise", lat, noi);
    free(clean);
  }

  /* groups of random crops equal the components of the true-overlap graph */
  enum { NC = 48 };
  float *imgs = malloc((size_t)NC * h * w * sizeof *imgs);
  int32_t group[NC], labels[NC], group2[NC];
  int Y[NC], X[NC];
  int64_t parent[NC];
  sd_rng r;
  sd_rng_init(&r, 3, 0, 1);
  for (int i = 0; i < NC; i++) {
    /* clusters of crops around 6 centres, so there are chains and singletons */
    int cy = 20 + 90 * (i % 3), cx = 20 + 120 * ((i / 3) % 2);
    Y[i] = cy + (int)sd_rng_below(&r, 40);
    X[i] = cx + (int)sd_rng_below(&r, 40);
    if (i % 8 == 7) { /* scattered */
      Y[i] = (int)sd_rng_below(&r, (uint64_t)(H - h));
      X[i] = (int)sd_rng_below(&r, (uint64_t)(W - w));
    }
    crop(big, W, Y[i], X[i], h, w, imgs + (size_t)i * h * w);
    labels[i] = 0;
    parent[i] = i;
  }
  int true_pairs = 0;
  for (int i = 0; i < NC; i++)
    for (int j = i + 1; j < NC; j++) {
      int ty = Y[i] - Y[j], tx = X[i] - X[j];
      if (abs(ty) <= p.max_shift && abs(tx) <= p.max_shift &&
          (double)(h - abs(ty)) * (w - abs(tx)) >= p.min_overlap * h * w) {
        uf_union(parent, i, j);
        true_pairs++;
      }
    }
  int ng = 0;
  sd_nearcopy_stats st;
  SD_EXPECT_OK(sd_nearcopy_groups(imgs, labels, NC, h, w, &p, group, &ng, &st));
  int agree = 0, disagree = 0;
  for (int i = 0; i < NC; i++)
    for (int j = i + 1; j < NC; j++) {
      int t = uf_find(parent, i) == uf_find(parent, j), o = group[i] == group[j];
      if (t == o)
        agree++;
      else
        disagree++;
    }
  SD_EXPECT_MSG(disagree == 0,
                "synthetic groups: %d pair decisions differ from the truth (%d agree)", disagree,
                agree);
  SD_EXPECT(true_pairs > 20 && st.pairs_compared == NC * (NC - 1) / 2);
  SD_EXPECT_MSG(st.max_nonmatch_corr < 0.3, "largest non-match correlation %.3f",
                st.max_nonmatch_corr);
  /* pair list: the matched pairs are exactly the true ones, at their true offsets */
  sd_nearcopy_match *pairs = NULL;
  int64_t np = 0;
  SD_EXPECT_OK(sd_nearcopy_pairs(imgs, NULL, NC, h, w, &p, p.threshold, &pairs, &np, NULL));
  SD_EXPECT_MSG(np == true_pairs, "%lld matched pairs, %d true", (long long)np, true_pairs);
  int bad_offset = 0;
  for (int64_t k = 0; k < np; k++) {
    SD_EXPECT(pairs[k].a < pairs[k].b && (k == 0 || pairs[k - 1].a <= pairs[k].a));
    bad_offset += pairs[k].dy != Y[pairs[k].a] - Y[pairs[k].b] ||
                  pairs[k].dx != X[pairs[k].a] - X[pairs[k].b];
  }
  SD_EXPECT_MSG(bad_offset == 0, "%d matched pairs at a wrong offset", bad_offset);
  free(pairs);
  /* determinism, and labels: with same_label_only, differently labelled copies stay apart */
  int ng2 = 0;
  SD_EXPECT_OK(sd_nearcopy_groups(imgs, labels, NC, h, w, &p, group2, &ng2, NULL));
  SD_EXPECT(ng2 == ng && memcmp(group, group2, sizeof group) == 0);
  for (int i = 0; i < NC; i++)
    labels[i] = (i / 6) % 2; /* alternates within a cluster */
  SD_EXPECT_OK(sd_nearcopy_groups(imgs, labels, NC, h, w, &p, group2, &ng2, NULL));
  int mixed = 0;
  for (int i = 0; i < NC; i++)
    for (int j = i + 1; j < NC; j++)
      mixed += group2[i] == group2[j] && labels[i] != labels[j];
  SD_EXPECT_MSG(mixed == 0 && ng2 > ng, "labels: %d mixed pairs, %d groups vs %d", mixed, ng2, ng);
  p.same_label_only = 0;
  SD_EXPECT_OK(sd_nearcopy_groups(imgs, labels, NC, h, w, &p, group2, &ng2, NULL));
  SD_EXPECT(ng2 == ng && memcmp(group, group2, sizeof group) == 0);
  /* the grouped split keeps these groups whole */
  int8_t part[NC];
  SD_EXPECT_OK(sd_split_grouped(labels, group, NC, 2, 0.7, 0.15, 1, part));
  for (int i = 0; i < NC; i++)
    for (int j = i + 1; j < NC; j++)
      if (group[i] == group[j])
        SD_EXPECT(part[i] == part[j]);
  /* bad parameters */
  p = sd_nearcopy_params_default();
  p.min_overlap = 0;
  SD_EXPECT(sd_nearcopy_groups(imgs, NULL, NC, h, w, &p, group, &ng, NULL) == SD_ERR_ARG);
  sd_error_clear();
  free(imgs);
  free(big);
}

/* ---- real data ----------------------------------------------------------------------------------
 */

static int real_dir(char *out) {
  const char *src = getenv("SD_SOURCE_DIR");
  struct stat sb;
  if (src) {
    snprintf(out, PATH_CAP, "%s/../shared/data/stem-real", src);
    if (stat(out, &sb) == 0 && S_ISDIR(sb.st_mode))
      return 1;
  }
  snprintf(out, PATH_CAP, "/work/shared/data/stem-real");
  return stat(out, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Random 64x64 crops of a bulk reference image: pairs within max_shift (and min_overlap) must
 * match at their offset, pairs that do not overlap at all must not. */
static void bulk_crops(const char *path, int ncrops, uint64_t seed) {
  sd_image *pg = NULL;
  int npg = 0;
  SD_EXPECT_OK(sd_image_file_read(path, &pg, &npg));
  if (!pg)
    return;
  const int h = 64, w = 64, H = pg[0].height, W = pg[0].width;
  sd_nearcopy_params p = sd_nearcopy_params_default();
  float *imgs = malloc((size_t)ncrops * h * w * sizeof *imgs);
  int *Y = malloc((size_t)ncrops * sizeof *Y), *X = malloc((size_t)ncrops * sizeof *X);
  sd_rng r;
  sd_rng_init(&r, seed, 0, 1);
  for (int i = 0; i < ncrops; i++) {
    if (i % 2 && i > 0) { /* half the crops near an earlier one, so there are many positives */
      int j = (int)sd_rng_below(&r, (uint64_t)i);
      Y[i] = Y[j] + (int)sd_rng_below(&r, 41) - 20;
      X[i] = X[j] + (int)sd_rng_below(&r, 41) - 20;
      Y[i] = Y[i] < 0 ? 0 : Y[i] > H - h ? H - h : Y[i];
      X[i] = X[i] < 0 ? 0 : X[i] > W - w ? W - w : X[i];
    } else {
      Y[i] = (int)sd_rng_below(&r, (uint64_t)(H - h + 1));
      X[i] = (int)sd_rng_below(&r, (uint64_t)(W - w + 1));
    }
    crop(pg[0].pixels, W, Y[i], X[i], h, w, imgs + (size_t)i * h * w);
  }
  sd_nearcopy_match *pairs = NULL;
  int64_t np = 0;
  sd_nearcopy_stats st;
  SD_EXPECT_OK(sd_nearcopy_pairs(imgs, NULL, ncrops, h, w, &p, -1.0, &pairs, &np, &st));
  int64_t tp = 0, fn = 0, fp = 0, tn = 0, badoff = 0, amb = 0;
  double min_pos = 2, max_neg = -2;
  for (int64_t k = 0; k < np; k++) {
    int a = pairs[k].a, b = pairs[k].b, ty = Y[a] - Y[b], tx = X[a] - X[b];
    int match = pairs[k].corr >= p.threshold;
    if (abs(ty) <= p.max_shift && abs(tx) <= p.max_shift &&
        (double)(h - abs(ty)) * (w - abs(tx)) >= p.min_overlap * h * w) {
      match ? tp++ : fn++;
      if (match && (pairs[k].dy != ty || pairs[k].dx != tx))
        badoff++;
      if (pairs[k].corr < min_pos)
        min_pos = pairs[k].corr;
    } else if (abs(ty) >= h || abs(tx) >= w) {
      match ? fp++ : tn++;
      if (pairs[k].corr > max_neg)
        max_neg = pairs[k].corr;
    } else {
      amb++;
    }
  }
  double prec = tp + fp ? (double)tp / (double)(tp + fp) : 0,
         rec = tp + fn ? (double)tp / (double)(tp + fn) : 0;
  fprintf(stderr,
          "test_split: %s: %d crops, %lld pairs in %.2f s: overlapping %lld, disjoint %lld, "
          "partial (not scored) %lld; at threshold %.2f precision %.4f recall %.4f; lowest "
          "overlapping %.3f, highest disjoint %.3f\n",
          path, ncrops, (long long)np, st.seconds, (long long)(tp + fn), (long long)(fp + tn),
          (long long)amb, p.threshold, prec, rec, min_pos, max_neg);
  SD_EXPECT(np == (int64_t)ncrops * (ncrops - 1) / 2);
  SD_EXPECT_MSG(tp + fn >= 50, "only %lld overlapping pairs", (long long)(tp + fn));
  SD_EXPECT_MSG(prec >= 0.99 && rec >= 0.99, "%s: precision %.4f recall %.4f", path, prec, rec);
  SD_EXPECT_MSG(badoff == 0, "%lld matches at a wrong offset", (long long)badoff);
  free(pairs);
  free(imgs);
  free(Y);
  free(X);
  sd_images_free(pg, npg);
}

/* The CdTe patches: our groups (same label) against the groups of pixel-identical crops. */
static void cdte_patches(const char *dir) {
  DIR *d = opendir(dir);
  SD_EXPECT_MSG(d != NULL, "cannot open %s", dir);
  if (!d)
    return;
  enum { CAP = 2000, NAMES = 16 };
  const int h = 64, w = 64;
  float *imgs = malloc((size_t)CAP * h * w * sizeof *imgs);
  int32_t *labels = malloc(CAP * sizeof *labels), *group = malloc(CAP * sizeof *group);
  int64_t *parent = malloc(CAP * sizeof *parent);
  char names[NAMES][64];
  int nnames = 0, n = 0, bad = 0;
  struct dirent *e;
  char path[2 * PATH_CAP];
  while ((e = readdir(d)) && n < CAP) {
    const char *us = strrchr(e->d_name, '_');
    if (!us || !strstr(us, ".tif"))
      continue;
    char label[64];
    snprintf(label, sizeof label, "%.*s", (int)(us - e->d_name), e->d_name);
    int c = 0;
    while (c < nnames && strcmp(names[c], label))
      c++;
    if (c == nnames && nnames < NAMES)
      strcpy(names[nnames++], label);
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    sd_image *pg = NULL;
    int npg = 0;
    if (sd_image_file_read(path, &pg, &npg) != SD_OK || pg[0].width != w || pg[0].height != h) {
      bad++;
      sd_error_clear();
      sd_images_free(pg, npg);
      continue;
    }
    memcpy(imgs + (size_t)n * h * w, pg[0].pixels, (size_t)h * w * sizeof *imgs);
    labels[n] = c;
    parent[n] = n;
    n++;
    sd_images_free(pg, npg);
  }
  closedir(d);
  SD_EXPECT_MSG(bad == 0 && n > 700, "%d CdTe patches read, %d failed", n, bad);
  /* truth: exhaustive search for pixel-identical overlaps (|d| <= 24, >= half the pixels) */
  sd_nearcopy_params p = sd_nearcopy_params_default();
  int64_t ident = 0;
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++) {
      if (labels[i] != labels[j])
        continue;
      const float *a = imgs + (size_t)i * h * w, *b = imgs + (size_t)j * h * w;
      int found = 0;
      for (int dy = -p.max_shift; dy <= p.max_shift && !found; dy++)
        for (int dx = -p.max_shift; dx <= p.max_shift && !found; dx++) {
          if ((h - abs(dy)) * (w - abs(dx)) * 2 < h * w)
            continue;
          int same = 1;
          for (int y = dy < 0 ? -dy : 0; y < (dy < 0 ? h : h - dy) && same; y++)
            for (int x = dx < 0 ? -dx : 0; x < (dx < 0 ? w : w - dx); x++)
              if (a[y * w + x] != b[(y + dy) * w + x + dx]) {
                same = 0;
                break;
              }
          found = same;
        }
      if (found) {
        ident++;
        uf_union(parent, i, j);
      }
    }
  int ng = 0;
  sd_nearcopy_stats st;
  SD_EXPECT_OK(sd_nearcopy_groups(imgs, labels, n, h, w, &p, group, &ng, &st));
  int64_t tp = 0, fp = 0, fn = 0;
  int ngt = 0;
  for (int i = 0; i < n; i++)
    ngt += uf_find(parent, i) == i;
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++) {
      if (labels[i] != labels[j])
        continue;
      int t = uf_find(parent, i) == uf_find(parent, j), o = group[i] == group[j];
      tp += t && o;
      fp += o && !t;
      fn += t && !o;
    }
  fprintf(stderr,
          "test_split: CdTe patches: %d images, %lld pixel-identical pairs -> %d groups; ours: %d "
          "groups (largest %lld), %lld matched of %lld pairs, highest non-match %.3f, %.2f s; "
          "same-group pairs: %lld both, %lld ours only, %lld truth only\n",
          n, (long long)ident, ngt, ng, (long long)st.largest_group, (long long)st.pairs_matched,
          (long long)st.pairs_compared, st.max_nonmatch_corr, st.seconds, (long long)tp,
          (long long)fp, (long long)fn);
  SD_EXPECT_MSG(fp <= tp / 100 && fn <= tp / 100, "CdTe groups differ from the truth");
  free(imgs);
  free(labels);
  free(group);
  free(parent);
}

static int test_real(void) {
  char dir[PATH_CAP], path[PATH_CAP + 64];
  if (!real_dir(dir)) {
    const char *ci = getenv("CI");
    if (ci && strcmp(ci, "true") == 0) {
      fprintf(stderr, "test_split: real data missing under $SD_SOURCE_DIR/../shared/data/stem-real "
                      "(required when CI=true)\n");
      return 0;
    }
    fprintf(stderr, "test_split: SKIP real data: no stem-real folder at "
                    "$SD_SOURCE_DIR/../shared/data/stem-real or /work/shared/data/stem-real\n");
    return 1;
  }
  snprintf(path, sizeof path, "%s/CdTe_Training_Image.tif", dir);
  bulk_crops(path, 120, 1);
  snprintf(path, sizeof path, "%s/STO_Training_Image.jpg", dir);
  bulk_crops(path, 120, 2);
  snprintf(path, sizeof path, "%s/CdTe", dir);
  cdte_patches(path);
  return 1;
}

int main(void) {
  test_stratified();
  test_grouped();
  test_nearcopy_synthetic();
  int ok = test_real();
  SD_EXPECT_MSG(ok, "real data required in CI");
  return sd_test_finish("test_split");
}
