/* regions.c - connected components and region shape: moments, Hu invariants, perimeter,
 * eccentricity, orientation, convex-hull solidity. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stemdefect/features.h"

int sd_feat_label_components(const uint8_t *mask, int h, int w, int32_t *labels, int32_t *stack) {
  size_t n = (size_t)h * (size_t)w;
  memset(labels, 0, n * sizeof *labels);
  int32_t next = 0;
  for (size_t start = 0; start < n; start++) {
    if (!mask[start] || labels[start]) continue;
    next++;
    size_t top = 0;
    stack[top++] = (int32_t)start;
    labels[start] = next;
    while (top > 0) {
      int32_t p = stack[--top];
      int y = p / w, x = p % w;
      for (int dy = -1; dy <= 1; dy++)
        for (int dx = -1; dx <= 1; dx++) {
          int yy = y + dy, xx = x + dx;
          if ((!dy && !dx) || yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
          size_t q = (size_t)yy * (size_t)w + (size_t)xx;
          if (mask[q] && !labels[q]) {
            labels[q] = next;
            stack[top++] = (int32_t)q;
          }
        }
    }
  }
  return next;
}

static int cmp_pt(const void *a, const void *b) {
  const double *p = a, *q = b;
  if (p[0] != q[0]) return p[0] < q[0] ? -1 : 1;
  if (p[1] != q[1]) return p[1] < q[1] ? -1 : 1;
  return 0;
}

static double cross(const double *o, const double *a, const double *b) {
  return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
}

double sd_feat_convex_hull_area(double *pts, int n) {
  if (n < 3) return 0;
  qsort(pts, (size_t)n, 2 * sizeof *pts, cmp_pt);
  /* Andrew's monotone chain; hull indices into a separate array */
  int *hull = malloc((size_t)(2 * n + 1) * sizeof *hull);
  if (!hull) return 0;
  int k = 0;
  for (int i = 0; i < n; i++) {
    while (k >= 2 && cross(pts + 2 * hull[k - 2], pts + 2 * hull[k - 1], pts + 2 * i) <= 0) k--;
    hull[k++] = i;
  }
  for (int i = n - 2, t = k + 1; i >= 0; i--) {
    while (k >= t && cross(pts + 2 * hull[k - 2], pts + 2 * hull[k - 1], pts + 2 * i) <= 0) k--;
    hull[k++] = i;
  }
  double a = 0;
  for (int i = 0; i + 1 < k; i++) {
    const double *p = pts + 2 * hull[i], *q = pts + 2 * hull[i + 1];
    a += p[0] * q[1] - q[0] * p[1];
  }
  free(hull);
  return fabs(a) / 2;
}

sd_status sd_feat_region_shape(const int32_t *labels, int h, int w, int32_t id, double *hull,
                               sd_region_shape *out) {
  memset(out, 0, sizeof *out);
  double m00 = 0, m10 = 0, m01 = 0;
  int y0 = h, x0 = w, y1 = -1, x1 = -1;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      if (labels[(size_t)y * w + x] != id) continue;
      m00 += 1;
      m10 += x;
      m01 += y;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
    }
  if (m00 == 0) return SD_ERROR(SD_ERR_ARG, "region %d is empty", (int)id);
  double cx = m10 / m00, cy = m01 / m00;
  /* central moments mu_pq, p + q <= 3 (x = column, y = row) */
  double mu20 = 0, mu02 = 0, mu11 = 0, mu30 = 0, mu03 = 0, mu21 = 0, mu12 = 0, per = 0;
  int64_t area = (int64_t)m00;
  double *pts = hull;
  int own = 0;
  size_t npts_cap = (size_t)(4 * area + 8);
  if (!pts) {
    pts = malloc(2 * npts_cap * sizeof *pts);
    if (!pts) return SD_ERROR(SD_ERR_NOMEM, "convex hull points (%lld)", (long long)area);
    own = 1;
  }
  int np = 0;
  for (int y = y0; y <= y1; y++)
    for (int x = x0; x <= x1; x++) {
      if (labels[(size_t)y * w + x] != id) continue;
      double dx = x - cx, dy = y - cy;
      mu20 += dx * dx;
      mu02 += dy * dy;
      mu11 += dx * dy;
      mu30 += dx * dx * dx;
      mu03 += dy * dy * dy;
      mu21 += dx * dx * dy;
      mu12 += dx * dy * dy;
      /* boundary edges: 4-neighbours outside the region */
      per += (y == 0 || labels[(size_t)(y - 1) * w + x] != id);
      per += (y == h - 1 || labels[(size_t)(y + 1) * w + x] != id);
      per += (x == 0 || labels[(size_t)y * w + x - 1] != id);
      per += (x == w - 1 || labels[(size_t)y * w + x + 1] != id);
      /* the corners of the pixel square, for the hull (only boundary pixels matter) */
      int inner = y > 0 && y < h - 1 && x > 0 && x < w - 1 &&
                  labels[(size_t)(y - 1) * w + x] == id && labels[(size_t)(y + 1) * w + x] == id &&
                  labels[(size_t)y * w + x - 1] == id && labels[(size_t)y * w + x + 1] == id;
      if (!inner) {
        double c[8] = {x - 0.5, y - 0.5, x + 0.5, y - 0.5, x - 0.5, y + 0.5, x + 0.5, y + 0.5};
        memcpy(pts + 2 * np, c, sizeof c);
        np += 4;
      }
    }
  double hull_area = sd_feat_convex_hull_area(pts, np);
  if (own) free(pts);
  out->area = area;
  out->cy = cy;
  out->cx = cx;
  out->y0 = y0;
  out->x0 = x0;
  out->y1 = y1 + 1;
  out->x1 = x1 + 1;
  out->perimeter = per;
  out->solidity = hull_area > 0 ? fmin(1.0, m00 / hull_area) : 1.0;
  /* covariance (normalised second moments) */
  double a = mu20 / m00, b = mu11 / m00, c = mu02 / m00;
  double tr = a + c, det = a * c - b * b;
  double disc = sqrt(fmax(0, tr * tr / 4 - det));
  double l1 = tr / 2 + disc, l2 = tr / 2 - disc;
  out->eccentricity = l1 > 0 ? sqrt(fmax(0, 1 - l2 / l1)) : 0;
  out->orientation = 0.5 * atan2(2 * b, a - c);
  /* normalised central moments eta_pq = mu_pq / m00^(1 + (p+q)/2) and Hu's invariants */
  double s2 = m00 * m00, s3 = pow(m00, 2.5);
  double n20 = mu20 / s2, n02 = mu02 / s2, n11 = mu11 / s2;
  double n30 = mu30 / s3, n03 = mu03 / s3, n21 = mu21 / s3, n12 = mu12 / s3;
  double t1 = n30 + n12, t2 = n21 + n03;
  out->hu[0] = n20 + n02;
  out->hu[1] = (n20 - n02) * (n20 - n02) + 4 * n11 * n11;
  out->hu[2] = (n30 - 3 * n12) * (n30 - 3 * n12) + (3 * n21 - n03) * (3 * n21 - n03);
  out->hu[3] = t1 * t1 + t2 * t2;
  out->hu[4] = (n30 - 3 * n12) * t1 * (t1 * t1 - 3 * t2 * t2) +
               (3 * n21 - n03) * t2 * (3 * t1 * t1 - t2 * t2);
  out->hu[5] = (n20 - n02) * (t1 * t1 - t2 * t2) + 4 * n11 * t1 * t2;
  out->hu[6] = (3 * n21 - n03) * t1 * (t1 * t1 - 3 * t2 * t2) -
               (n30 - 3 * n12) * t2 * (3 * t1 * t1 - t2 * t2);
  return SD_OK;
}
