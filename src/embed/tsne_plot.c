/* tsne_plot.c - the t-SNE scatter figure (cairo PNG): one or two panels (by cluster, by
 * true class), points coloured by group with a legend, axes with ticks. Self-contained on
 * purpose (a shared plotting module is being written elsewhere; the lead unifies later). */
#include <cairo.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stemdefect/tsne.h"

/* Tableau-like qualitative palette (20 colours), then repeats. */
static const double palette[20][3] = {
    {0.122, 0.467, 0.706}, {1.000, 0.498, 0.055}, {0.173, 0.627, 0.173}, {0.839, 0.153, 0.157},
    {0.580, 0.404, 0.741}, {0.549, 0.337, 0.294}, {0.890, 0.467, 0.761}, {0.498, 0.498, 0.498},
    {0.737, 0.741, 0.133}, {0.090, 0.745, 0.812}, {0.682, 0.780, 0.910}, {1.000, 0.733, 0.471},
    {0.596, 0.875, 0.541}, {1.000, 0.596, 0.588}, {0.773, 0.690, 0.835}, {0.769, 0.612, 0.580},
    {0.969, 0.714, 0.824}, {0.780, 0.780, 0.780}, {0.859, 0.859, 0.553}, {0.620, 0.855, 0.898}};

static double nice_step(double range, int target) {
  double raw = range / (target > 0 ? target : 1);
  double mag = pow(10.0, floor(log10(raw)));
  double f = raw / mag;
  double s = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
  return s * mag;
}

static void draw_panel(cairo_t *cr, double x0, double y0, double w, double h, int64_t n,
                       const float *y, const int32_t *g, int ng, const char *const *names,
                       const char *title, const double box[4]) {
  const double legend_w = 170, ml = 60, mr = 20 + legend_w, mt = 40, mb = 50;
  double px0 = x0 + ml, py0 = y0 + mt, pw = w - ml - mr, ph = h - mt - mb;
  double xmin = box[0], xmax = box[1], ymin = box[2], ymax = box[3];
  /* frame */
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_rectangle(cr, px0, py0, pw, ph);
  cairo_fill(cr);
  cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, px0 + 0.5, py0 + 0.5, pw, ph);
  cairo_stroke(cr);
  /* title */
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
  cairo_set_font_size(cr, 16);
  cairo_text_extents_t te;
  cairo_text_extents(cr, title, &te);
  cairo_move_to(cr, px0 + pw / 2 - te.width / 2, y0 + 25);
  cairo_show_text(cr, title);
  /* ticks and labels */
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 11);
  for (int axis = 0; axis < 2; axis++) {
    double lo = axis == 0 ? xmin : ymin, hi = axis == 0 ? xmax : ymax;
    double step = nice_step(hi - lo, 6);
    for (double v = ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step) {
      char lab[32];
      snprintf(lab, sizeof lab, "%g", fabs(v) < 1e-9 * step ? 0.0 : v);
      cairo_text_extents(cr, lab, &te);
      if (axis == 0) {
        double sx = px0 + (v - xmin) / (xmax - xmin) * pw;
        cairo_move_to(cr, sx, py0 + ph);
        cairo_line_to(cr, sx, py0 + ph + 5);
        cairo_stroke(cr);
        cairo_move_to(cr, sx - te.width / 2, py0 + ph + 18);
      } else {
        double sy = py0 + ph - (v - ymin) / (ymax - ymin) * ph;
        cairo_move_to(cr, px0 - 5, sy);
        cairo_line_to(cr, px0, sy);
        cairo_stroke(cr);
        cairo_move_to(cr, px0 - 8 - te.width, sy + te.height / 2);
      }
      cairo_show_text(cr, lab);
    }
  }
  cairo_set_font_size(cr, 13);
  cairo_text_extents(cr, "t-SNE 1", &te);
  cairo_move_to(cr, px0 + pw / 2 - te.width / 2, py0 + ph + 38);
  cairo_show_text(cr, "t-SNE 1");
  cairo_save(cr);
  cairo_move_to(cr, x0 + 18, py0 + ph / 2 + te.width / 2);
  cairo_rotate(cr, -M_PI / 2);
  cairo_show_text(cr, "t-SNE 2");
  cairo_restore(cr);
  /* points: unknown (grey) first, then groups; small discs with some transparency */
  double r = n > 20000 ? 1.2 : n > 3000 ? 1.8 : 2.8;
  double alpha = n > 20000 ? 0.5 : 0.75;
  cairo_save(cr);
  cairo_rectangle(cr, px0, py0, pw, ph);
  cairo_clip(cr);
  for (int pass = 0; pass < 2; pass++) {
    for (int64_t i = 0; i < n; i++) {
      int gi = g ? g[i] : 0;
      int known = gi >= 0 && gi < (ng > 0 ? ng : 1);
      if (known != pass)
        continue;
      if (known)
        cairo_set_source_rgba(cr, palette[gi % 20][0], palette[gi % 20][1], palette[gi % 20][2],
                              alpha);
      else
        cairo_set_source_rgba(cr, 0.6, 0.6, 0.6, 0.5);
      double sx = px0 + (y[2 * i] - xmin) / (xmax - xmin) * pw;
      double sy = py0 + ph - (y[2 * i + 1] - ymin) / (ymax - ymin) * ph;
      cairo_arc(cr, sx, sy, r, 0, 2 * M_PI);
      cairo_fill(cr);
    }
  }
  cairo_restore(cr);
  /* legend with counts */
  int64_t *cnt = calloc((size_t)(ng > 0 ? ng : 1) + 1, sizeof *cnt);
  if (cnt && g)
    for (int64_t i = 0; i < n; i++)
      cnt[(g[i] >= 0 && g[i] < ng) ? g[i] : ng]++;
  double lx = px0 + pw + 15, ly = py0 + 10;
  cairo_set_font_size(cr, 12);
  int shown = ng > 40 ? 40 : ng;
  for (int c = 0; c < shown + 1; c++) {
    if (c == shown) {
      if (!cnt || cnt[ng] == 0)
        break;
      cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
    } else {
      cairo_set_source_rgb(cr, palette[c % 20][0], palette[c % 20][1], palette[c % 20][2]);
    }
    cairo_arc(cr, lx + 6, ly + 6 + c * 20, 5, 0, 2 * M_PI);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    char lab[96];
    if (c == shown)
      snprintf(lab, sizeof lab, "unknown (%lld)", (long long)cnt[ng]);
    else if (names && names[c])
      snprintf(lab, sizeof lab, "%.60s (%lld)", names[c], (long long)(cnt ? cnt[c] : 0));
    else
      snprintf(lab, sizeof lab, "cluster %d (%lld)", c, (long long)(cnt ? cnt[c] : 0));
    cairo_move_to(cr, lx + 16, ly + 10 + c * 20);
    cairo_show_text(cr, lab);
  }
  free(cnt);
}

sd_status sd_tsne_plot_png(const char *path, int64_t n, const float *y, const int32_t *groups1,
                           int ngroups1, const char *const *names1, const char *title1,
                           const int32_t *groups2, int ngroups2, const char *const *names2,
                           const char *title2) {
  const int panels = groups2 ? 2 : 1;
  const int pw = 760, H = 640, W = pw * panels;
  double box[4] = {0, 1, 0, 1};
  if (n > 0) {
    box[0] = box[1] = y[0];
    box[2] = box[3] = y[1];
    for (int64_t i = 1; i < n; i++) {
      box[0] = fmin(box[0], y[2 * i]);
      box[1] = fmax(box[1], y[2 * i]);
      box[2] = fmin(box[2], y[2 * i + 1]);
      box[3] = fmax(box[3], y[2 * i + 1]);
    }
  }
  for (int a = 0; a < 2; a++) {
    double lo = box[2 * a], hi = box[2 * a + 1], pad = (hi - lo) * 0.04;
    if (!(pad > 0))
      pad = 1;
    box[2 * a] = lo - pad;
    box[2 * a + 1] = hi + pad;
  }
  cairo_surface_t *sf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
  cairo_t *cr = cairo_create(sf);
  cairo_set_source_rgb(cr, 0.97, 0.97, 0.97);
  cairo_paint(cr);
  draw_panel(cr, 0, 0, pw, H, n, y, groups1, ngroups1, names1, title1 ? title1 : "t-SNE", box);
  if (groups2)
    draw_panel(cr, pw, 0, pw, H, n, y, groups2, ngroups2, names2, title2 ? title2 : "t-SNE", box);
  cairo_destroy(cr);
  size_t cap = strlen(path) + 32;
  char *tmp = sd_malloc(cap, 1, "temporary name");
  if (!tmp) {
    cairo_surface_destroy(sf);
    return SD_ERR_NOMEM;
  }
  snprintf(tmp, cap, "%s.tmp-%ld", path, (long)getpid());
  cairo_status_t cs = cairo_surface_write_to_png(sf, tmp);
  cairo_surface_destroy(sf);
  sd_status st = SD_OK;
  if (cs != CAIRO_STATUS_SUCCESS) {
    unlink(tmp);
    st = SD_ERROR(SD_ERR_IO, "cannot write figure '%s': %s", path, cairo_status_to_string(cs));
  } else if (rename(tmp, path) != 0) {
    unlink(tmp);
    st = SD_ERROR(SD_ERR_IO, "cannot rename the figure to '%s'", path);
  }
  free(tmp);
  return st;
}
