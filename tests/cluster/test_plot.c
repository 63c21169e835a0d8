/* test_plot.c - the plot helper draws what it is given: a categorical scatter shows each
 * category's palette colour (and grey for unknown), a bar + line figure has its bars' colour
 * in the bar area, bad arguments and unwritable paths fail with a message. */
#include <cairo.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sd_test.h"
#include "stemdefect/plot.h"
#include "stemdefect/rng.h"

/* Pixels within 12 levels of (r, g, b) (0..255). */
static long count_colour(cairo_surface_t *s, int r, int g, int b) {
  int w = cairo_image_surface_get_width(s), h = cairo_image_surface_get_height(s);
  int stride = cairo_image_surface_get_stride(s);
  const unsigned char *d = cairo_image_surface_get_data(s);
  long n = 0;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      const unsigned char *p = d + (size_t)y * stride + 4 * x; /* BGRA little endian */
      if (abs(p[2] - r) < 12 && abs(p[1] - g) < 12 && abs(p[0] - b) < 12) n++;
    }
  return n;
}

int main(void) {
  char dir[] = "/tmp/sd_plot_XXXXXX";
  if (!mkdtemp(dir)) return 1;
  char path[256];
  /* scatter: 3 categories + unknown */
  int n = 600;
  float *xy = malloc(sizeof *xy * 2 * n);
  int32_t *cat = malloc(sizeof *cat * n);
  sd_rng r;
  sd_rng_init(&r, 1, 2, 3);
  for (int i = 0; i < n; i++) {
    cat[i] = i % 4 == 3 ? -1 : i % 4;
    xy[2 * i] = (float)(5 * (i % 4) + sd_rng_normal(&r));
    xy[2 * i + 1] = (float)(3 * (i % 2) + sd_rng_normal(&r));
  }
  const char *names[3] = {"vacancy", "interstitial", "twin"};
  sd_plot *pl = NULL;
  SD_EXPECT_OK(sd_plot_create(800, 600, 1, 1, &pl));
  SD_EXPECT_OK(sd_plot_panel(pl, 0, "embedding", "t-SNE 1", "t-SNE 2"));
  SD_EXPECT_OK(sd_plot_scatter(pl, n, xy, xy + 1, 2, cat, 3, names, 3.0));
  snprintf(path, sizeof path, "%s/scatter.png", dir);
  SD_EXPECT_OK(sd_plot_save_png(pl, path));
  sd_plot_destroy(&pl);
  SD_EXPECT(pl == NULL);
  cairo_surface_t *s = cairo_image_surface_create_from_png(path);
  SD_EXPECT(cairo_surface_status(s) == CAIRO_STATUS_SUCCESS);
  if (cairo_surface_status(s) == CAIRO_STATUS_SUCCESS) {
    SD_EXPECT(cairo_image_surface_get_width(s) == 800 && cairo_image_surface_get_height(s) == 600);
    /* dots are drawn with alpha 0.75 over white */
#define BL(v) (int)((v) * 0.75 + 255 * 0.25)
    long c0 = count_colour(s, BL(31), BL(119), BL(180)), c1 = count_colour(s, BL(255), BL(127), BL(14)),
         c2 = count_colour(s, BL(44), BL(160), BL(44)), cu = count_colour(s, BL(153), BL(153), BL(153)),
         c3 = count_colour(s, BL(214), BL(39), BL(40)) + count_colour(s, 214, 39, 40);
    SD_EXPECT_MSG(c0 > 200 && c1 > 200 && c2 > 200, "category pixels %ld %ld %ld", c0, c1, c2);
    SD_EXPECT_MSG(cu > 200, "unknown (grey) pixels %ld", cu);
    SD_EXPECT_MSG(c3 == 0, "a fourth palette colour appeared (%ld pixels)", c3);
  }
  cairo_surface_destroy(s);
  /* bars + line + vline in two panels */
  double x[5] = {1, 2, 3, 4, 5}, y[5] = {0.5, 0.25, 0.12, 0.08, 0.05}, cum[5] = {0.5, 0.75, 0.87, 0.95, 1};
  SD_EXPECT_OK(sd_plot_create(600, 800, 2, 1, &pl));
  SD_EXPECT_OK(sd_plot_panel(pl, 0, "variance", "component", "fraction"));
  sd_plot_integer_x(pl, 1);
  SD_EXPECT_OK(sd_plot_bars(pl, 5, x, y, 0.7, 2, "per component"));
  SD_EXPECT_OK(sd_plot_line(pl, 5, x, cum, NULL, 1, SD_PLOT_STYLE_LINE_MARKERS, "cumulative"));
  SD_EXPECT_OK(sd_plot_vline(pl, 3.5, 3, "kept"));
  SD_EXPECT_OK(sd_plot_panel(pl, 1, "silhouette", "k", "s"));
  SD_EXPECT_OK(sd_plot_line(pl, 5, x, y, cum, 0, SD_PLOT_STYLE_LINE_MARKERS, "mean"));
  SD_EXPECT(sd_plot_panel(pl, 2, "none", NULL, NULL) == SD_ERR_ARG);
  sd_error_clear();
  snprintf(path, sizeof path, "%s/bars.png", dir);
  SD_EXPECT_OK(sd_plot_save_png(pl, path));
  SD_EXPECT(sd_plot_save_png(pl, "/nonexistent-dir/x.png") == SD_ERR_IO);
  SD_EXPECT(strstr(sd_error_message(), "/nonexistent-dir/x.png") != NULL);
  sd_error_clear();
  sd_plot_destroy(&pl);
  s = cairo_image_surface_create_from_png(path);
  if (cairo_surface_status(s) == CAIRO_STATUS_SUCCESS) {
    long green = count_colour(s, 44 * 0.85 + 255 * 0.15, 160 * 0.85 + 255 * 0.15, 44 * 0.85 + 255 * 0.15);
    SD_EXPECT_MSG(green > 2000, "bar pixels %ld", green);
  } else {
    SD_EXPECT(0);
  }
  cairo_surface_destroy(s);
  SD_EXPECT(sd_plot_create(10, 10, 1, 1, &pl) == SD_ERR_ARG);
  sd_error_clear();
  if (!getenv("SD_KEEP_PLOTS")) {
    snprintf(path, sizeof path, "%s/scatter.png", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/bars.png", dir);
    unlink(path);
    rmdir(dir);
  } else {
    fprintf(stderr, "plots kept in %s\n", dir);
  }
  free(xy);
  free(cat);
  return sd_test_finish("test_plot");
}
