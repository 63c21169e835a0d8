/* plot.h - small cairo plots for the figures of every stage: line (with error bars), bar
 * and categorical scatter plots with axes, ticks, labels and legends, in one or more panels,
 * written as PNG.
 *
 * A figure holds rows x cols panels; sd_plot_panel() selects one and sets its title and axis
 * labels, and the add functions (which copy their data) go to the selected panel. Nothing is
 * drawn until sd_plot_save_png(), which computes the axis ranges (or uses sd_plot_ylim /
 * sd_plot_xlim), draws everything and writes the file atomically (temporary name + rename).
 * Not collective: call on one rank. Colours are indices into a 10-colour categorical palette
 * (matplotlib's tab10); category -1 in a scatter is drawn grey as "unknown".
 *
 * Example (an embedding coloured by cluster):
 *   sd_plot *pl;
 *   SD_CHECK(sd_plot_create(900, 800, 1, 1, &pl));
 *   sd_plot_panel(pl, 0, "t-SNE", "t-SNE 1", "t-SNE 2");
 *   sd_plot_scatter(pl, n, xy, xy + 1, 2, cluster, k, names, 2.0);
 *   st = sd_plot_save_png(pl, "embedding.png");
 *   sd_plot_destroy(&pl);
 */
#ifndef STEMDEFECT_PLOT_H
#define STEMDEFECT_PLOT_H

#include <stdint.h>

#include "stemdefect/status.h"

typedef struct sd_plot sd_plot;

typedef enum sd_plot_style {
  SD_PLOT_STYLE_LINE = 1,
  SD_PLOT_STYLE_MARKERS = 2,
  SD_PLOT_STYLE_LINE_MARKERS = 3
} sd_plot_style;

/* A figure of width x height pixels with rows x cols panels (panel 0 selected). */
sd_status sd_plot_create(int width, int height, int rows, int cols, sd_plot **out);
/* NULL-safe; sets *p to NULL. */
void sd_plot_destroy(sd_plot **p);
/* Selects panel index (row-major) and sets its title and axis labels (NULL = none). */
sd_status sd_plot_panel(sd_plot *p, int index, const char *title, const char *xlabel,
                        const char *ylabel);
/* Fixed axis ranges for the selected panel (otherwise from the data, with a margin). */
void sd_plot_xlim(sd_plot *p, double lo, double hi);
void sd_plot_ylim(sd_plot *p, double lo, double hi);
/* Where the legend of labelled series goes in the selected panel (default top right). */
typedef enum sd_plot_legend {
  SD_PLOT_LEGEND_TOP_RIGHT = 0,
  SD_PLOT_LEGEND_TOP_LEFT = 1,
  SD_PLOT_LEGEND_BOTTOM_RIGHT = 2,
  SD_PLOT_LEGEND_MIDDLE_RIGHT = 3,
  SD_PLOT_LEGEND_AUTO = 4 /* the corner that hides the fewest data points */
} sd_plot_legend;
void sd_plot_legend_at(sd_plot *p, sd_plot_legend where);
/* Ticks of the x axis at integers only (k values, component numbers). */
void sd_plot_integer_x(sd_plot *p, int on);
/* y[n] against x[n]; yerr[n] (or NULL) draws error bars of +-yerr. label (or NULL) goes into
 * the legend. Non-finite points are skipped. */
sd_status sd_plot_line(sd_plot *p, int n, const double *x, const double *y, const double *yerr,
                       int color, sd_plot_style style, const char *label);
/* Bars of height h[n] centred at x[n], width in x units. */
sd_status sd_plot_bars(sd_plot *p, int n, const double *x, const double *h, double width, int color,
                       const char *label);
/* A dashed vertical line at x with a legend label. */
sd_status sd_plot_vline(sd_plot *p, double x, int color, const char *label);
/* n points (x[i*stride], y[i*stride]) coloured by category cat[i] in [0, ncat) (-1 =
 * unknown, grey; cat NULL = one colour), names[ncat] for the legend (NULL = "0", "1", ...),
 * dot radius in pixels. Points are drawn in a fixed pseudo-random order so no category
 * hides the others. */
sd_status sd_plot_scatter(sd_plot *p, int64_t n, const float *x, const float *y, int stride,
                          const int32_t *cat, int ncat, const char *const *names, double radius);
/* Draws the figure and writes the PNG (path.tmp-<pid>, then renamed). SD_ERR_IO naming path. */
sd_status sd_plot_save_png(sd_plot *p, const char *path);

#endif
