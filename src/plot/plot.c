/* plot.c - the cairo plotting helper (see plot.h): panels with axes, nice ticks, grid,
 * line / bar / scatter series and a legend. Data are copied when added; drawing happens in
 * sd_plot_save_png. */
#include "stemdefect/plot.h"

#include <cairo.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SD_PLOT_MAX_SERIES 24
#define SD_PLOT_MAX_CATS 64

typedef enum series_kind { SERIES_LINE, SERIES_BARS, SERIES_VLINE, SERIES_SCATTER } series_kind;

typedef struct series {
  series_kind kind;
  int64_t n;
  double *x, *y, *e; /* line/bars: [n]; scatter: x, y [n] */
  int32_t *cat;      /* scatter [n] or NULL */
  int ncat;
  char **names; /* scatter [ncat] */
  int color;
  sd_plot_style style;
  double width; /* bars: width; scatter: radius */
  char label[96];
} series;

typedef struct panel {
  char title[160], xlabel[96], ylabel[96];
  int has_xlim, has_ylim, integer_x, legend;
  double xlo, xhi, ylo, yhi;
  int ns;
  series s[SD_PLOT_MAX_SERIES];
} panel;

struct sd_plot {
  int width, height, rows, cols, cur;
  panel *panels;
};

static const double palette[10][3] = {
    {0.122, 0.467, 0.706}, {1.000, 0.498, 0.055}, {0.173, 0.627, 0.173}, {0.839, 0.153, 0.157},
    {0.580, 0.404, 0.741}, {0.549, 0.337, 0.294}, {0.890, 0.467, 0.761}, {0.498, 0.498, 0.498},
    {0.737, 0.741, 0.133}, {0.090, 0.745, 0.812}};

static void set_color(cairo_t *cr, int c, double alpha) {
  if (c < 0) {
    cairo_set_source_rgba(cr, 0.6, 0.6, 0.6, alpha);
    return;
  }
  /* beyond 10 categories: the palette again, darker */
  double f = 1.0 - 0.35 * ((c / 10) % 3);
  const double *v = palette[c % 10];
  cairo_set_source_rgba(cr, v[0] * f, v[1] * f, v[2] * f, alpha);
}

sd_status sd_plot_create(int width, int height, int rows, int cols, sd_plot **out) {
  *out = NULL;
  if (width < 100 || height < 100 || rows < 1 || cols < 1 || rows * cols > 16)
    return SD_ERROR(SD_ERR_ARG, "plot of %dx%d pixels with %dx%d panels", width, height, rows,
                    cols);
  sd_plot *p = sd_calloc(1, sizeof *p, "plot");
  if (!p)
    return SD_ERR_NOMEM;
  p->panels = sd_calloc((size_t)rows * cols, sizeof *p->panels, "plot panels");
  if (!p->panels) {
    free(p);
    return SD_ERR_NOMEM;
  }
  p->width = width;
  p->height = height;
  p->rows = rows;
  p->cols = cols;
  *out = p;
  return SD_OK;
}

static void series_free(series *s) {
  free(s->x);
  free(s->y);
  free(s->e);
  free(s->cat);
  if (s->names)
    for (int c = 0; c < s->ncat; c++)
      free(s->names[c]);
  free(s->names);
}

void sd_plot_destroy(sd_plot **pp) {
  if (!pp || !*pp)
    return;
  sd_plot *p = *pp;
  for (int i = 0; i < p->rows * p->cols; i++)
    for (int j = 0; j < p->panels[i].ns; j++)
      series_free(&p->panels[i].s[j]);
  free(p->panels);
  free(p);
  *pp = NULL;
}

sd_status sd_plot_panel(sd_plot *p, int index, const char *title, const char *xlabel,
                        const char *ylabel) {
  if (index < 0 || index >= p->rows * p->cols)
    return SD_ERROR(SD_ERR_ARG, "plot panel %d of %d", index, p->rows * p->cols);
  p->cur = index;
  panel *q = &p->panels[index];
  snprintf(q->title, sizeof q->title, "%s", title ? title : "");
  snprintf(q->xlabel, sizeof q->xlabel, "%s", xlabel ? xlabel : "");
  snprintf(q->ylabel, sizeof q->ylabel, "%s", ylabel ? ylabel : "");
  return SD_OK;
}

void sd_plot_xlim(sd_plot *p, double lo, double hi) {
  panel *q = &p->panels[p->cur];
  q->has_xlim = 1;
  q->xlo = lo;
  q->xhi = hi;
}
void sd_plot_ylim(sd_plot *p, double lo, double hi) {
  panel *q = &p->panels[p->cur];
  q->has_ylim = 1;
  q->ylo = lo;
  q->yhi = hi;
}
void sd_plot_legend_at(sd_plot *p, sd_plot_legend where) {
  p->panels[p->cur].legend = (int)where;
}
void sd_plot_integer_x(sd_plot *p, int on) {
  p->panels[p->cur].integer_x = on;
}

static series *new_series(sd_plot *p, series_kind kind, int64_t n, const char *label, int color) {
  panel *q = &p->panels[p->cur];
  if (q->ns >= SD_PLOT_MAX_SERIES) {
    SD_ERROR(SD_ERR_ARG, "more than %d series in one plot panel", SD_PLOT_MAX_SERIES);
    return NULL;
  }
  series *s = &q->s[q->ns];
  memset(s, 0, sizeof *s);
  s->kind = kind;
  s->n = n;
  s->color = color;
  snprintf(s->label, sizeof s->label, "%s", label ? label : "");
  size_t cnt = (size_t)(n > 0 ? n : 1);
  s->x = sd_malloc(cnt, sizeof *s->x, "plot data");
  s->y = sd_malloc(cnt, sizeof *s->y, "plot data");
  if (!s->x || !s->y) {
    series_free(s);
    return NULL;
  }
  q->ns++;
  return s;
}

sd_status sd_plot_line(sd_plot *p, int n, const double *x, const double *y, const double *yerr,
                       int color, sd_plot_style style, const char *label) {
  series *s = new_series(p, SERIES_LINE, n, label, color);
  if (!s)
    return sd_error_code() ? sd_error_code() : SD_ERR_NOMEM;
  memcpy(s->x, x, sizeof *x * (size_t)n);
  memcpy(s->y, y, sizeof *y * (size_t)n);
  if (yerr) {
    s->e = sd_malloc((size_t)(n > 0 ? n : 1), sizeof *s->e, "plot data");
    if (!s->e)
      return SD_ERR_NOMEM;
    memcpy(s->e, yerr, sizeof *yerr * (size_t)n);
  }
  s->style = style;
  return SD_OK;
}

sd_status sd_plot_bars(sd_plot *p, int n, const double *x, const double *h, double width, int color,
                       const char *label) {
  series *s = new_series(p, SERIES_BARS, n, label, color);
  if (!s)
    return sd_error_code() ? sd_error_code() : SD_ERR_NOMEM;
  memcpy(s->x, x, sizeof *x * (size_t)n);
  memcpy(s->y, h, sizeof *h * (size_t)n);
  s->width = width;
  return SD_OK;
}

sd_status sd_plot_vline(sd_plot *p, double x, int color, const char *label) {
  series *s = new_series(p, SERIES_VLINE, 1, label, color);
  if (!s)
    return sd_error_code() ? sd_error_code() : SD_ERR_NOMEM;
  s->x[0] = x;
  s->y[0] = NAN;
  return SD_OK;
}

sd_status sd_plot_scatter(sd_plot *p, int64_t n, const float *x, const float *y, int stride,
                          const int32_t *cat, int ncat, const char *const *names, double radius) {
  if (ncat < 0 || ncat > SD_PLOT_MAX_CATS)
    return SD_ERROR(SD_ERR_ARG, "scatter with %d categories (at most %d)", ncat, SD_PLOT_MAX_CATS);
  series *s = new_series(p, SERIES_SCATTER, n, NULL, 0);
  if (!s)
    return sd_error_code() ? sd_error_code() : SD_ERR_NOMEM;
  if (stride < 1)
    stride = 1;
  for (int64_t i = 0; i < n; i++) {
    s->x[i] = x[i * stride];
    s->y[i] = y[i * stride];
  }
  s->width = radius > 0 ? radius : 2.0;
  s->ncat = cat ? ncat : 0;
  if (cat) {
    s->cat = sd_malloc((size_t)(n > 0 ? n : 1), sizeof *s->cat, "plot categories");
    s->names = sd_calloc((size_t)(ncat > 0 ? ncat : 1), sizeof *s->names, "plot names");
    if (!s->cat || !s->names)
      return SD_ERR_NOMEM;
    memcpy(s->cat, cat, sizeof *cat * (size_t)n);
    for (int c = 0; c < ncat; c++) {
      char buf[32];
      snprintf(buf, sizeof buf, "%d", c);
      s->names[c] = sd_strdup(names && names[c] ? names[c] : buf);
      if (!s->names[c])
        return SD_ERR_NOMEM;
    }
  }
  return SD_OK;
}

/* ---- drawing ------------------------------------------------------------------------------ */

static double nice_step(double range, int target) {
  double raw = range / target, mag = pow(10, floor(log10(raw))), f = raw / mag;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

static void fmt_tick(char *buf, size_t cap, double v, double step) {
  if (fabs(v) < step * 1e-9)
    v = 0;
  double a = fabs(v);
  if (a != 0 && (a >= 1e5 || a < 1e-3))
    snprintf(buf, cap, "%.2g", v);
  else {
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    snprintf(buf, cap, "%.*f", dec > 6 ? 6 : dec, v);
  }
}

static void text_at(cairo_t *cr, double x, double y, const char *s, double ax, double ay) {
  cairo_text_extents_t e;
  cairo_text_extents(cr, s, &e);
  cairo_move_to(cr, x - e.width * ax - e.x_bearing, y - e.height * ay - e.y_bearing);
  cairo_show_text(cr, s);
}

static void data_range(const panel *q, double *xlo, double *xhi, double *ylo, double *yhi) {
  double a = INFINITY, b = -INFINITY, c = INFINITY, d = -INFINITY;
  for (int j = 0; j < q->ns; j++) {
    const series *s = &q->s[j];
    for (int64_t i = 0; i < s->n; i++) {
      double x = s->x[i], y = s->y[i];
      if (!isfinite(x))
        continue;
      double hw = s->kind == SERIES_BARS ? s->width / 2 : 0;
      a = fmin(a, x - hw);
      b = fmax(b, x + hw);
      if (!isfinite(y))
        continue;
      double e = s->e && isfinite(s->e[i]) ? s->e[i] : 0;
      c = fmin(c, y - e);
      d = fmax(d, y + e);
      if (s->kind == SERIES_BARS) {
        c = fmin(c, 0);
        d = fmax(d, 0);
      }
    }
  }
  if (!isfinite(a))
    a = 0, b = 1;
  if (!isfinite(c))
    c = 0, d = 1;
  if (b - a <= 0)
    a -= 0.5, b += 0.5;
  if (d - c <= 0)
    c -= 0.5 + fabs(c) * 0.05, d += 0.5 + fabs(d) * 0.05;
  double mx = (b - a) * 0.05, my = (d - c) * 0.08;
  *xlo = q->has_xlim ? q->xlo : a - mx;
  *xhi = q->has_xlim ? q->xhi : b + mx;
  *ylo = q->has_ylim ? q->ylo : c - my;
  *yhi = q->has_ylim ? q->yhi : d + my;
}

static void draw_marker(cairo_t *cr, double x, double y, double r) {
  cairo_new_sub_path(cr);
  cairo_arc(cr, x, y, r, 0, 2 * M_PI);
}

static void draw_panel(cairo_t *cr, const panel *q, double X0, double Y0, double W, double H) {
  double left = X0 + 78, right = X0 + W - 18, top = Y0 + 40, bottom = Y0 + H - 58;
  int has_scatter_legend = 0;
  for (int j = 0; j < q->ns; j++)
    if (q->s[j].kind == SERIES_SCATTER && q->s[j].ncat > 0)
      has_scatter_legend = 1;
  if (has_scatter_legend)
    right = X0 + W - 170;
  double xlo, xhi, ylo, yhi;
  data_range(q, &xlo, &xhi, &ylo, &yhi);
  double pw = right - left, ph = bottom - top;
#define PX(v) (left + ((v)-xlo) / (xhi - xlo) * pw)
#define PY(v) (bottom - ((v)-ylo) / (yhi - ylo) * ph)
  /* title, labels */
  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
  cairo_set_font_size(cr, 15);
  text_at(cr, (left + right) / 2, Y0 + 20, q->title, 0.5, 0.5);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 13);
  text_at(cr, (left + right) / 2, Y0 + H - 14, q->xlabel, 0.5, 0.5);
  cairo_save(cr);
  cairo_translate(cr, X0 + 16, (top + bottom) / 2);
  cairo_rotate(cr, -M_PI / 2);
  text_at(cr, 0, 0, q->ylabel, 0.5, 0.5);
  cairo_restore(cr);
  /* ticks and grid */
  cairo_set_font_size(cr, 11);
  char buf[48];
  double xs = nice_step(xhi - xlo, 8);
  if (q->integer_x && xs < 1)
    xs = 1;
  for (double v = ceil(xlo / xs) * xs; v <= xhi + xs * 1e-9; v += xs) {
    double px = PX(v);
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_set_line_width(cr, 1);
    cairo_move_to(cr, px, top);
    cairo_line_to(cr, px, bottom);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_move_to(cr, px, bottom);
    cairo_line_to(cr, px, bottom + 5);
    cairo_stroke(cr);
    fmt_tick(buf, sizeof buf, v, xs);
    text_at(cr, px, bottom + 16, buf, 0.5, 0.5);
  }
  double ys = nice_step(yhi - ylo, 6);
  for (double v = ceil(ylo / ys) * ys; v <= yhi + ys * 1e-9; v += ys) {
    double py = PY(v);
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_set_line_width(cr, 1);
    cairo_move_to(cr, left, py);
    cairo_line_to(cr, right, py);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_move_to(cr, left - 5, py);
    cairo_line_to(cr, left, py);
    cairo_stroke(cr);
    fmt_tick(buf, sizeof buf, v, ys);
    text_at(cr, left - 8, py, buf, 1.0, 0.5);
  }
  /* series, clipped to the axes */
  cairo_save(cr);
  cairo_rectangle(cr, left, top, pw, ph);
  cairo_clip(cr);
  for (int j = 0; j < q->ns; j++) {
    const series *s = &q->s[j];
    if (s->kind == SERIES_BARS) {
      set_color(cr, s->color, 0.85);
      for (int64_t i = 0; i < s->n; i++) {
        if (!isfinite(s->y[i]))
          continue;
        double x0 = PX(s->x[i] - s->width / 2), x1 = PX(s->x[i] + s->width / 2);
        double y0 = PY(0), y1 = PY(s->y[i]);
        cairo_rectangle(cr, x0, fmin(y0, y1), x1 - x0, fabs(y1 - y0));
      }
      cairo_fill(cr);
    } else if (s->kind == SERIES_LINE) {
      set_color(cr, s->color, 1);
      cairo_set_line_width(cr, 2);
      if (s->style & SD_PLOT_STYLE_LINE) {
        int pen = 0;
        for (int64_t i = 0; i < s->n; i++) {
          if (!isfinite(s->x[i]) || !isfinite(s->y[i])) {
            pen = 0;
            continue;
          }
          if (pen)
            cairo_line_to(cr, PX(s->x[i]), PY(s->y[i]));
          else
            cairo_move_to(cr, PX(s->x[i]), PY(s->y[i]));
          pen = 1;
        }
        cairo_stroke(cr);
      }
      if (s->e) {
        cairo_set_line_width(cr, 1.2);
        for (int64_t i = 0; i < s->n; i++) {
          if (!isfinite(s->y[i]) || !isfinite(s->e[i]) || s->e[i] <= 0)
            continue;
          double px = PX(s->x[i]);
          cairo_move_to(cr, px, PY(s->y[i] - s->e[i]));
          cairo_line_to(cr, px, PY(s->y[i] + s->e[i]));
          cairo_move_to(cr, px - 4, PY(s->y[i] - s->e[i]));
          cairo_line_to(cr, px + 4, PY(s->y[i] - s->e[i]));
          cairo_move_to(cr, px - 4, PY(s->y[i] + s->e[i]));
          cairo_line_to(cr, px + 4, PY(s->y[i] + s->e[i]));
        }
        cairo_stroke(cr);
      }
      if (s->style & SD_PLOT_STYLE_MARKERS) {
        for (int64_t i = 0; i < s->n; i++)
          if (isfinite(s->x[i]) && isfinite(s->y[i]))
            draw_marker(cr, PX(s->x[i]), PY(s->y[i]), 4);
        cairo_fill(cr);
      }
    } else if (s->kind == SERIES_VLINE) {
      set_color(cr, s->color, 1);
      cairo_set_line_width(cr, 1.5);
      double dash[2] = {6, 4};
      cairo_set_dash(cr, dash, 2, 0);
      cairo_move_to(cr, PX(s->x[0]), top);
      cairo_line_to(cr, PX(s->x[0]), bottom);
      cairo_stroke(cr);
      cairo_set_dash(cr, NULL, 0, 0);
    } else if (s->kind == SERIES_SCATTER) {
      /* a fixed pseudo-random drawing order (multiplicative stride co-prime with n) */
      int64_t n = s->n, stride = 1;
      if (n > 2) {
        stride = (int64_t)(0.6180339887 * (double)n) | 1;
        while (stride > 1) {
          int64_t a = n, b = stride;
          while (b) {
            int64_t t = a % b;
            a = b;
            b = t;
          }
          if (a == 1)
            break;
          stride += 2;
          if (stride >= n) {
            stride = 1;
            break;
          }
        }
      }
      for (int64_t t = 0, i = 0; t < n; t++, i = (i + stride) % n) {
        if (!isfinite(s->x[i]) || !isfinite(s->y[i]))
          continue;
        int c = s->cat ? (s->cat[i] < s->ncat ? s->cat[i] : -1) : 0;
        set_color(cr, c, 0.75);
        draw_marker(cr, PX(s->x[i]), PY(s->y[i]), s->width);
        cairo_fill(cr);
      }
    }
  }
  cairo_restore(cr);
  /* frame */
  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_set_line_width(cr, 1.2);
  cairo_rectangle(cr, left, top, pw, ph);
  cairo_stroke(cr);
  /* legend: labelled series top right inside; scatter categories to the right */
  cairo_set_font_size(cr, 12);
  int nl = 0;
  double lw = 0;
  for (int j = 0; j < q->ns; j++)
    if (q->s[j].label[0] && q->s[j].kind != SERIES_SCATTER) {
      cairo_text_extents_t e;
      cairo_text_extents(cr, q->s[j].label, &e);
      lw = fmax(lw, e.width);
      nl++;
    }
  if (nl > 0) {
    double bx = right - lw - 48, by = top + 8, bh = nl * 18 + 8;
    if (q->legend == SD_PLOT_LEGEND_TOP_LEFT)
      bx = left + 8;
    if (q->legend == SD_PLOT_LEGEND_BOTTOM_RIGHT)
      by = bottom - 8 - bh;
    if (q->legend == SD_PLOT_LEGEND_MIDDLE_RIGHT)
      by = (top + bottom - bh) / 2;
    if (q->legend == SD_PLOT_LEGEND_AUTO) {
      /* the corner whose box covers the fewest data points (ties: top right, top left,
       * bottom right, bottom left) */
      const double cx[4] = {right - lw - 48, left + 8, right - lw - 48, left + 8};
      const double cy[4] = {top + 8, top + 8, bottom - 8 - bh, bottom - 8 - bh};
      int64_t best = -1;
      for (int c = 0; c < 4; c++) {
        int64_t hits = 0;
        for (int j = 0; j < q->ns; j++) {
          const series *s = &q->s[j];
          const double m = 8, x0 = cx[c] - m, x1 = cx[c] + lw + 40 + m;
          if (s->kind == SERIES_VLINE) { /* crosses every box it passes */
            const double px = s->n > 0 && isfinite(s->x[0]) ? PX(s->x[0]) : NAN;
            hits += px >= x0 && px <= x1;
            continue;
          }
          for (int64_t i = 0; i < s->n; i++) {
            if (!isfinite(s->x[i]) || !isfinite(s->y[i]))
              continue;
            /* a bar covers its column down to the axis, an error bar its whiskers */
            const double hw = s->kind == SERIES_BARS ? s->width / 2 : 0;
            const double ex = s->e && isfinite(s->e[i]) ? fabs(s->e[i]) : 0;
            const double pxa = PX(s->x[i] - hw), pxb = PX(s->x[i] + hw);
            double ya = PY(s->y[i] + ex), yb = PY(s->y[i] - ex);
            if (s->kind == SERIES_BARS)
              yb = PY(ylo > 0 ? ylo : 0);
            if (fmax(pxa, pxb) >= x0 && fmin(pxa, pxb) <= x1 && fmax(ya, yb) >= cy[c] - m &&
                fmin(ya, yb) <= cy[c] + bh + m)
              hits++;
          }
        }
        if (best < 0 || hits < best) {
          best = hits;
          bx = cx[c];
          by = cy[c];
        }
      }
    }
    cairo_set_source_rgba(cr, 1, 1, 1, 0.85);
    cairo_rectangle(cr, bx, by, lw + 40, nl * 18 + 8);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
    cairo_set_line_width(cr, 0.8);
    cairo_rectangle(cr, bx, by, lw + 40, nl * 18 + 8);
    cairo_stroke(cr);
    int row = 0;
    for (int j = 0; j < q->ns; j++) {
      const series *s = &q->s[j];
      if (!s->label[0] || s->kind == SERIES_SCATTER)
        continue;
      double yy = by + 13 + row * 18;
      set_color(cr, s->color, 1);
      if (s->kind == SERIES_BARS) {
        cairo_rectangle(cr, bx + 6, yy - 5, 20, 10);
        cairo_fill(cr);
      } else {
        cairo_set_line_width(cr, 2);
        if (s->kind == SERIES_VLINE) {
          double dash[2] = {4, 3};
          cairo_set_dash(cr, dash, 2, 0);
        }
        cairo_move_to(cr, bx + 6, yy);
        cairo_line_to(cr, bx + 26, yy);
        cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0);
        if (s->kind == SERIES_LINE && (s->style & SD_PLOT_STYLE_MARKERS)) {
          draw_marker(cr, bx + 16, yy, 4);
          cairo_fill(cr);
        }
      }
      cairo_set_source_rgb(cr, 0, 0, 0);
      text_at(cr, bx + 32, yy, s->label, 0, 0.5);
      row++;
    }
  }
  for (int j = 0; j < q->ns; j++) {
    const series *s = &q->s[j];
    if (s->kind != SERIES_SCATTER || s->ncat == 0)
      continue;
    int unknown = 0;
    for (int64_t i = 0; i < s->n; i++)
      if (s->cat[i] < 0 || s->cat[i] >= s->ncat)
        unknown = 1;
    double bx = right + 14, by = top + 4;
    for (int c = -unknown; c < s->ncat; c++) {
      double yy = by + 10 + (c + unknown) * 18;
      if (yy > bottom)
        break;
      set_color(cr, c, 1);
      draw_marker(cr, bx + 6, yy, 5);
      cairo_fill(cr);
      cairo_set_source_rgb(cr, 0, 0, 0);
      text_at(cr, bx + 18, yy, c < 0 ? "unknown" : s->names[c], 0, 0.5);
    }
  }
#undef PX
#undef PY
}

sd_status sd_plot_save_png(sd_plot *p, const char *path) {
  cairo_surface_t *sf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, p->width, p->height);
  cairo_t *cr = cairo_create(sf);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  double pw = (double)p->width / p->cols, ph = (double)p->height / p->rows;
  for (int r = 0; r < p->rows; r++)
    for (int c = 0; c < p->cols; c++)
      draw_panel(cr, &p->panels[r * p->cols + c], c * pw, r * ph, pw, ph);
  cairo_destroy(cr);
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
  cairo_status_t cs = cairo_surface_write_to_png(sf, tmp);
  cairo_surface_destroy(sf);
  if (cs != CAIRO_STATUS_SUCCESS) {
    unlink(tmp);
    return SD_ERROR(SD_ERR_IO, "cannot write the figure '%s': %s", path,
                    cairo_status_to_string(cs));
  }
  if (rename(tmp, path) != 0) {
    unlink(tmp);
    return SD_ERROR(SD_ERR_IO, "cannot rename '%s' to '%s'", tmp, path);
  }
  return SD_OK;
}
