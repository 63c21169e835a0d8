/* report.c - the self-contained HTML study report (see report.h).
 *
 * Everything is read with plain (serial) HDF5 and libyaml (our JSON files are YAML flow
 * documents) on the calling process; images are drawn with cairo and embedded as base64 PNG
 * data URIs, so the page is one file that can be mailed or archived. */
#include <cairo.h>
#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>

#include "jsonread.h"
#include "stemdefect/h5util.h"
#include "stemdefect/image.h"
#include "stemdefect/report.h"
#include "stemdefect/version.h"

#define PATHCAP 4352

typedef struct page {
  FILE *f;
  const sd_report_opts *o;
  int figures;
} page;

/* ---- small utilities -------------------------------------------------------------------- */

static int file_exists(const char *p) { return access(p, R_OK) == 0; }

static void path_of(const page *pg, const char *name, char *out) {
  snprintf(out, PATHCAP, "%s/%s", pg->o->run_dir, name);
}

static void esc(FILE *f, const char *s) {
  for (; s && *s; s++) {
    switch (*s) {
    case '<': fputs("&lt;", f); break;
    case '>': fputs("&gt;", f); break;
    case '&': fputs("&amp;", f); break;
    case '"': fputs("&quot;", f); break;
    default: fputc(*s, f);
    }
  }
}

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void b64(FILE *f, const unsigned char *d, size_t n) {
  for (size_t i = 0; i < n; i += 3) {
    unsigned v = (unsigned)d[i] << 16 | (i + 1 < n ? (unsigned)d[i + 1] << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);
    fputc(b64chars[(v >> 18) & 63], f);
    fputc(b64chars[(v >> 12) & 63], f);
    fputc(i + 1 < n ? b64chars[(v >> 6) & 63] : '=', f);
    fputc(i + 2 < n ? b64chars[v & 63] : '=', f);
  }
}

typedef struct membuf {
  unsigned char *d;
  size_t n, cap;
} membuf;

static cairo_status_t mem_write(void *closure, const unsigned char *data, unsigned int len) {
  membuf *m = closure;
  if (m->n + len > m->cap) {
    size_t cap = m->cap ? m->cap * 2 : 65536;
    while (cap < m->n + len) cap *= 2;
    unsigned char *d = realloc(m->d, cap);
    if (!d) return CAIRO_STATUS_NO_MEMORY;
    m->d = d;
    m->cap = cap;
  }
  memcpy(m->d + m->n, data, len);
  m->n += len;
  return CAIRO_STATUS_SUCCESS;
}

/* <img> of a cairo surface. */
static void img_surface(page *pg, cairo_surface_t *s, const char *alt, const char *cls) {
  membuf m = {0};
  if (cairo_surface_write_to_png_stream(s, mem_write, &m) == CAIRO_STATUS_SUCCESS) {
    fprintf(pg->f, "<img class=\"%s\" alt=\"", cls);
    esc(pg->f, alt);
    fputs("\" src=\"data:image/png;base64,", pg->f);
    b64(pg->f, m.d, m.n);
    fputs("\">", pg->f);
    pg->figures++;
  }
  free(m.d);
}

/* <figure> of a PNG file; returns 1 when it was there. */
static int img_file(page *pg, const char *path, const char *caption) {
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *d = n > 0 ? malloc((size_t)n) : NULL;
  int ok = d && fread(d, 1, (size_t)n, f) == (size_t)n && n > 8 && !memcmp(d, "\x89PNG", 4);
  fclose(f);
  if (ok) {
    fputs("<figure><img class=\"fig\" alt=\"", pg->f);
    esc(pg->f, caption);
    fputs("\" src=\"data:image/png;base64,", pg->f);
    b64(pg->f, d, (size_t)n);
    fputs("\"><figcaption>", pg->f);
    esc(pg->f, caption);
    fputs("</figcaption></figure>\n", pg->f);
    pg->figures++;
  }
  free(d);
  return ok;
}

static void missing(page *pg, const char *what, const char *stage) {
  fprintf(pg->f, "<p class=\"missing\">%s: not in this run (stage <code>%s</code> has not run).</p>\n",
          what, stage);
}

/* ---- JSON cells ---- */

/* A scalar as the table shows it: numbers with a fraction to 4 significant digits. */
static void jcell(FILE *f, yaml_node_t *n) {
  const char *s = sd_json_str(n);
  if (!s) return;
  char *end;
  double v = strtod(s, &end);
  if (*s && !*end && strchr(s, '.')) fprintf(f, "%.4g", v);
  else esc(f, s);
}
/* ---- HDF5 (serial reads of our files) --------------------------------------------------- */

static hid_t h5open(const char *path) {
  if (!file_exists(path)) return H5I_INVALID_HID;
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) H5Eclear2(H5E_DEFAULT);
  return f;
}

/* Whole dataset as native type; *n elements; dims (up to 4) into dims when not NULL. */
static void *h5all(hid_t f, const char *name, hid_t mtype, size_t esize, int64_t *n, int64_t *dims, int *nd) {
  *n = 0;
  if (f < 0 || H5Lexists(f, name, H5P_DEFAULT) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return NULL;
  }
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
  hid_t s = d >= 0 ? H5Dget_space(d) : -1;
  hsize_t dd[8] = {0};
  int r = s >= 0 ? H5Sget_simple_extent_ndims(s) : -1;
  void *buf = NULL;
  if (r >= 0 && r <= 4 && H5Sget_simple_extent_dims(s, dd, NULL) >= 0) {
    int64_t tot = 1;
    for (int i = 0; i < r; i++) tot *= (int64_t)dd[i];
    buf = malloc((size_t)(tot ? tot : 1) * esize);
    if (buf && (tot == 0 || H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0)) {
      *n = tot;
      if (dims)
        for (int i = 0; i < r; i++) dims[i] = (int64_t)dd[i];
      if (nd) *nd = r;
    } else {
      free(buf);
      buf = NULL;
    }
  }
  if (s >= 0) H5Sclose(s);
  if (d >= 0) H5Dclose(d);
  H5Eclear2(H5E_DEFAULT);
  return buf;
}

/* Shape of a dataset (up to 4 dims); returns its rank, or -1. */
static int h5dims(hid_t f, const char *name, int64_t *dims) {
  if (f < 0 || H5Lexists(f, name, H5P_DEFAULT) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return -1;
  }
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT), s = d >= 0 ? H5Dget_space(d) : -1;
  hsize_t dd[8];
  int r = s >= 0 ? H5Sget_simple_extent_ndims(s) : -1;
  if (r < 0 || r > 4 || H5Sget_simple_extent_dims(s, dd, NULL) < 0) r = -1;
  for (int i = 0; i < r; i++) dims[i] = (int64_t)dd[i];
  if (s >= 0) H5Sclose(s);
  if (d >= 0) H5Dclose(d);
  H5Eclear2(H5E_DEFAULT);
  return r;
}

/* Image i of /images [N,H,W] into buf (H*W floats): one hyperslab, so the report never holds
 * the stack in memory. Returns 1 on success. */
static int h5image(hid_t f, int64_t i, int H, int W, float *buf) {
  hid_t d = H5Dopen2(f, "/images", H5P_DEFAULT), s = d >= 0 ? H5Dget_space(d) : -1;
  hsize_t start[3] = {(hsize_t)i, 0, 0}, count[3] = {1, (hsize_t)H, (hsize_t)W};
  hid_t m = H5Screate_simple(3, count, NULL);
  int ok = s >= 0 && m >= 0 && H5Sselect_hyperslab(s, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
           H5Dread(d, H5T_NATIVE_FLOAT, m, s, H5P_DEFAULT, buf) >= 0;
  if (m >= 0) H5Sclose(m);
  if (s >= 0) H5Sclose(s);
  if (d >= 0) H5Dclose(d);
  H5Eclear2(H5E_DEFAULT);
  return ok;
}

static double h5attr_num(hid_t loc, const char *name) {
  if (loc < 0 || H5Aexists(loc, name) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return NAN;
  }
  hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
  double v = NAN;
  if (a < 0 || H5Aread(a, H5T_NATIVE_DOUBLE, &v) < 0) v = NAN;
  if (a >= 0) H5Aclose(a);
  H5Eclear2(H5E_DEFAULT);
  return v;
}

static char *h5attr_str(hid_t loc, const char *name) {
  int ex = 0;
  char *s = NULL;
  if (loc < 0 || sd_h5_attr_exists(loc, name, &ex) != SD_OK || !ex) return NULL;
  if (sd_h5_attr_read_string(loc, name, &s) != SD_OK) return NULL;
  return s;
}

/* Class names: attr class_names on /labels, else on the given dataset or the root. */
static int h5class_names(hid_t f, const char *dset, char ***names) {
  int n = 0, ex = 0;
  *names = NULL;
  if (f < 0) return 0;
  hid_t d = H5Lexists(f, dset, H5P_DEFAULT) > 0 ? H5Dopen2(f, dset, H5P_DEFAULT) : -1;
  H5Eclear2(H5E_DEFAULT);
  hid_t loc = d >= 0 ? d : f;
  if (sd_h5_attr_exists(loc, "class_names", &ex) == SD_OK && ex)
    if (sd_h5_attr_read_strings(loc, "class_names", &n, names) != SD_OK) n = 0;
  if (d >= 0) H5Dclose(d);
  return n;
}

/* ---- drawing ---------------------------------------------------------------------------- */

/* Paints a grey image (h, w), robustly stretched (1st..99th percentile), at (x, y) scaled. */
static void paint_image(cairo_t *cr, const float *img, int h, int w, int y0, int x0, int y1, int x1,
                        double x, double y, double scale) {
  int ch = y1 - y0, cw = x1 - x0;
  cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, cw, ch);
  unsigned char *px = cairo_image_surface_get_data(s);
  int stride = cairo_image_surface_get_stride(s);
  float lo = INFINITY, hi = -INFINITY;
  /* a cheap robust range: mean +- 2.5 std of the crop */
  double sum = 0, sq = 0;
  for (int r = y0; r < y1; r++)
    for (int c = x0; c < x1; c++) {
      double v = img[(size_t)r * w + c];
      sum += v;
      sq += v * v;
    }
  double m = sum / (ch * cw), sd = sqrt(fmax(0, sq / (ch * cw) - m * m));
  lo = (float)(m - 2.5 * sd);
  hi = (float)(m + 2.5 * sd);
  if (!(hi > lo)) hi = lo + 1;
  cairo_surface_flush(s);
  for (int r = 0; r < ch; r++)
    for (int c = 0; c < cw; c++) {
      float v = (img[(size_t)(r + y0) * w + c + x0] - lo) / (hi - lo);
      unsigned char g = (unsigned char)(v < 0 ? 0 : v > 1 ? 255 : v * 255);
      uint32_t *p = (uint32_t *)(px + (size_t)r * stride) + c;
      *p = (uint32_t)g << 16 | (uint32_t)g << 8 | g;
    }
  cairo_surface_mark_dirty(s);
  cairo_save(cr);
  cairo_translate(cr, x, y);
  cairo_scale(cr, scale, scale);
  cairo_set_source_surface(cr, s, 0, 0);
  cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_NEAREST);
  cairo_paint(cr);
  cairo_restore(cr);
  cairo_surface_destroy(s);
  (void)h;
}

static void text(cairo_t *cr, double x, double y, double size, const char *s) {
  cairo_set_font_size(cr, size);
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  cairo_move_to(cr, x, y);
  cairo_show_text(cr, s);
}

/* ---- sections --------------------------------------------------------------------------- */

static void section_dataset(page *pg, int64_t *n_out) {
  char p[PATHCAP];
  path_of(pg, "stack.h5", p);
  fputs("<h2 id=\"data\">Dataset</h2>\n", pg->f);
  hid_t f = h5open(p);
  if (f < 0) {
    missing(pg, "The image stack", "data");
    return;
  }
  int64_t dims[4] = {0}, nl = 0;
  int nd = h5dims(f, "/images", dims);
  float *img = nd == 3 ? malloc((size_t)dims[1] * (size_t)dims[2] * sizeof *img) : NULL;
  int32_t *lab = h5all(f, "/labels", H5T_NATIVE_INT32, sizeof(int32_t), &nl, NULL, NULL);
  char **names = NULL;
  int C = h5class_names(f, "/labels", &names);
  int has_masks = H5Lexists(f, "/masks", H5P_DEFAULT) > 0;
  H5Eclear2(H5E_DEFAULT);
  char *src = h5attr_str(f, "command");
  int64_t N = nd == 3 ? dims[0] : 0;
  int H = nd == 3 ? (int)dims[1] : 0, W = nd == 3 ? (int)dims[2] : 0;
  *n_out = N;
  fprintf(pg->f, "<p><b>%lld</b> images of %d&times;%d pixels, %d classes%s; made by <code>%s</code>.</p>\n",
          (long long)N, W, H, C, has_masks ? ", with pixel ground truth (<code>/masks</code>)" : "",
          src ? src : "?");
  if (C > 0 && lab && nl == N) {
    fputs("<table><tr><th>class</th><th>images</th></tr>\n", pg->f);
    for (int c = 0; c < C; c++) {
      int64_t k = 0;
      for (int64_t i = 0; i < N; i++) k += lab[i] == c;
      fputs("<tr><td>", pg->f);
      esc(pg->f, names[c]);
      fprintf(pg->f, "</td><td>%lld</td></tr>\n", (long long)k);
    }
    fputs("</table>\n", pg->f);
  }
  /* samples per class */
  if (img && lab && C > 0 && N > 0) {
    int per = pg->o->samples, rows = C < 12 ? C : 12;
    double scale = H <= 64 ? 1.5 : 96.0 / H;
    int cell = (int)(H * scale) + 6, left = 130;
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, left + per * cell, rows * cell + 8);
    cairo_t *cr = cairo_create(s);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    for (int c = 0; c < rows; c++) {
      text(cr, 6, c * cell + cell / 2.0 + 4, 12, names[c]);
      int k = 0;
      for (int64_t i = 0; i < N && k < per; i++) {
        if (lab[i] != c) continue;
        if (!h5image(f, i, H, W, img)) break;
        paint_image(cr, img, H, W, 0, 0, H, W, left + k * cell, c * cell + 4, scale);
        k++;
      }
    }
    cairo_destroy(cr);
    fputs("<figure>", pg->f);
    img_surface(pg, s, "sample images per class", "fig");
    fputs("<figcaption>Sample images of each class (each stretched on its own).</figcaption></figure>\n", pg->f);
    cairo_surface_destroy(s);
  }
  free(src);
  free(img);
  free(lab);
  sd_h5_strings_free(names, C);
  H5Fclose(f);
}

static void metrics_table(page *pg, const char *path, const char *title) {
  sd_json_doc j;
  if (!sd_json_load(path, &j)) return;
  yaml_node_t *r = sd_json_root(&j);
  fprintf(pg->f, "<h3>%s</h3>\n<p>", title);
  const char *keys[] = {"accuracy", "macro_f1", "mean_iou", "baseline_mean_iou", "defect_pixel_precision",
                        "defect_pixel_recall",
                        "labelled_class_top_mass_fraction", "bulk_false_alarm_area",
                        "bulk_false_alarm_fraction", "baseline_bulk_false_alarm_fraction", "n"};
  int any = 0;
  for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
    yaml_node_t *v = sd_json_get(&j, r, keys[k]);
    if (!sd_json_str(v)) continue;
    fprintf(pg->f, "%s<b>%s</b> ", any ? " &middot; " : "", keys[k]);
    jcell(pg->f, v);
    any = 1;
  }
  const char *sk = sd_json_str(sd_json_get(&j, r, "split_kind")), *part = sd_json_str(sd_json_get(&j, r, "part"));
  if (sk) fprintf(pg->f, " (%s part of the %s split)", part ? part : "?", sk);
  fputs("</p>\n", pg->f);
  /* per-class rows: "per_class" (classifier, U-Net) or "classes" (pseudolabel, which names the
   * class in "name" and has the notebook baseline's IoU beside ours) */
  yaml_node_t *pc = sd_json_get(&j, r, "per_class");
  if (!sd_json_len(pc)) pc = sd_json_get(&j, r, "classes");
  if (sd_json_len(pc) > 0) {
    fputs("<table><tr><th>class</th>", pg->f);
    yaml_node_t *first = sd_json_at(&j, pc, 0);
    const char *cols[] = {"precision", "recall", "f1", "iou", "support", "baseline_iou"};
    int use[6] = {0};
    for (int c = 0; c < 6; c++)
      if (sd_json_get(&j, first, cols[c])) {
        use[c] = 1;
        fprintf(pg->f, "<th>%s</th>", cols[c]);
      }
    fputs("</tr>\n", pg->f);
    for (int i = 0; i < sd_json_len(pc); i++) {
      yaml_node_t *e = sd_json_at(&j, pc, i);
      fputs("<tr><td>", pg->f);
      const char *name = sd_json_str(sd_json_get(&j, e, "name"));
      if (!name) name = sd_json_str(sd_json_get(&j, e, "class"));
      esc(pg->f, name ? name : "?");
      fputs("</td>", pg->f);
      for (int c = 0; c < 6; c++)
        if (use[c]) {
          fputs("<td>", pg->f);
          jcell(pg->f, sd_json_get(&j, e, cols[c]));
          fputs("</td>", pg->f);
        }
      fputs("</tr>\n", pg->f);
    }
    fputs("</table>\n", pg->f);
  }
  sd_json_free(&j);
}

static void section_classifier(page *pg) {
  char p[PATHCAP];
  fputs("<h2 id=\"classifier\">Defect classifier</h2>\n", pg->f);
  path_of(pg, "classifier_metrics.json", p);
  if (!file_exists(p)) {
    missing(pg, "Classifier metrics", "classify");
    return;
  }
  metrics_table(pg, p, "Test metrics");
  path_of(pg, "classifier_metrics_confusion.png", p);
  img_file(pg, p, "Confusion matrix of the classifier on the test part (rows: true class)");
}

/* PNG files in a folder of the run directory whose names start with prefix, sorted. */
static int list_pngs(const page *pg, const char *sub, const char *prefix, char names[][256], int cap) {
  char p[PATHCAP];
  path_of(pg, sub, p);
  DIR *d = opendir(p);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < cap) {
    size_t l = strlen(e->d_name);
    if (l < 5 || strcmp(e->d_name + l - 4, ".png") || strncmp(e->d_name, prefix, strlen(prefix)))
      continue;
    snprintf(names[n++], 256, "%s", e->d_name);
  }
  closedir(d);
  qsort(names, (size_t)n, 256, (int (*)(const void *, const void *))strcmp);
  return n;
}

static void section_localisation(page *pg) {
  char p[PATHCAP];
  fputs("<h2 id=\"localisation\">Defect localisation</h2>\n", pg->f);
  int any = 0;
  path_of(pg, "pseudo_metrics.json", p);
  if (file_exists(p)) {
    metrics_table(pg, p, "Pseudo-labels against the true masks");
    any = 1;
  }
  path_of(pg, "unet_metrics.json", p);
  if (file_exists(p)) {
    metrics_table(pg, p, "U-Net heatmaps against the true masks");
    any = 1;
  }
  static char names[64][256];
  int n = list_pngs(pg, "overlays", "", names, 64);
  if (n > 0) {
    fputs("<h3>Heatmap overlays</h3>\n<div class=\"grid\">\n", pg->f);
    for (int i = 0; i < n && i < 12; i++) {
      if (snprintf(p, sizeof p, "%s/overlays/%s", pg->o->run_dir, names[i]) < (int)sizeof p)
        img_file(pg, p, names[i]);
    }
    fputs("</div>\n", pg->f);
    any = 1;
  }
  if (!any) missing(pg, "Pseudo-labels, U-Net metrics and overlays", "pseudolabel / segmenter / segment");
}

static void section_clusters(page *pg) {
  char p[PATHCAP];
  fputs("<h2 id=\"clusters\">Clusters of defect descriptors</h2>\n", pg->f);
  path_of(pg, "clusters.h5", p);
  hid_t cf = h5open(p);
  if (cf < 0) {
    missing(pg, "Clusters", "cluster");
    return;
  }
  double ck = h5attr_num(cf, "chosen_k");
  double ari = h5attr_num(cf, "ari"), nmi = h5attr_num(cf, "nmi"), pur = h5attr_num(cf, "purity");
  fprintf(pg->f, "<p>k chosen by the largest mean silhouette: <b>%.0f</b>", ck);
  if (!isnan(ari)) fprintf(pg->f, " &middot; against the true classes: ARI <b>%.3f</b>, NMI %.3f, purity %.3f", ari, nmi, pur);
  fputs(".</p>\n", pg->f);
  int64_t nk = 0, ns = 0, na = 0;
  int32_t *kv = h5all(cf, "/k_values", H5T_NATIVE_INT32, 4, &nk, NULL, NULL);
  double *sil = h5all(cf, "/silhouette", H5T_NATIVE_DOUBLE, 8, &ns, NULL, NULL);
  if (kv && sil && nk == ns) {
    fputs("<table><tr><th>k</th>", pg->f);
    for (int64_t i = 0; i < nk; i++) fprintf(pg->f, "<td>%d</td>", kv[i]);
    fputs("</tr><tr><th>mean silhouette</th>", pg->f);
    for (int64_t i = 0; i < nk; i++) fprintf(pg->f, "<td>%.3f</td>", sil[i]);
    fputs("</tr></table>\n", pg->f);
  }
  static char names[32][256];
  int nf = list_pngs(pg, "figures", "cluster", names, 32);
  for (int i = 0; i < nf; i++) {
    if (snprintf(p, sizeof p, "%s/figures/%s", pg->o->run_dir, names[i]) < (int)sizeof p)
      img_file(pg, p, names[i]);
  }
  int32_t *as = h5all(cf, "/assignments", H5T_NATIVE_INT32, 4, &na, NULL, NULL);
  /* table of clusters: size, true-class make-up, mean of key descriptors, example patches */
  path_of(pg, "descriptors.h5", p);
  hid_t df = h5open(p);
  int64_t nx = 0, xd[4] = {0}, ni = 0, nb = 0, nl = 0;
  int xnd = 0;
  float *X = h5all(df, "/descriptors", H5T_NATIVE_FLOAT, 4, &nx, xd, &xnd);
  int64_t *img = h5all(df, "/image_index", H5T_NATIVE_INT64, 8, &ni, NULL, NULL);
  int32_t *box = h5all(df, "/box", H5T_NATIVE_INT32, 4, &nb, NULL, NULL);
  int32_t *lab = h5all(df, "/labels", H5T_NATIVE_INT32, 4, &nl, NULL, NULL);
  char **cls = NULL;
  int C = h5class_names(df, "/labels", &cls);
  char **dn = NULL;
  int D = 0;
  if (df >= 0 && H5Lexists(df, "/names", H5P_DEFAULT) > 0) {
    hid_t dxpl = H5P_DEFAULT;
    if (sd_h5_dataset_read_strings(df, "/names", dxpl, &D, &dn) != SD_OK) D = 0;
  }
  H5Eclear2(H5E_DEFAULT);
  int64_t M = xnd == 2 ? xd[0] : 0;
  if (as && X && M == na && img && ni == M && D == (int)xd[1]) {
    int K = 0;
    for (int64_t i = 0; i < M; i++)
      if (as[i] + 1 > K) K = as[i] + 1;
    const char *show[] = {"area", "mean_prob", "eccentricity", "solidity", "res_mean", "res_std"};
    int col[6];
    for (int s = 0; s < 6; s++) {
      col[s] = -1;
      for (int d = 0; d < D; d++)
        if (!strcmp(dn[d], show[s])) col[s] = d;
    }
    /* images for the examples */
    path_of(pg, "stack.h5", p);
    hid_t sf = h5open(p);
    int64_t idims[4] = {0};
    int ind = h5dims(sf, "/images", idims);
    float *ims = ind == 3 ? malloc((size_t)idims[1] * (size_t)idims[2] * sizeof *ims) : NULL;
    fputs("<table class=\"wide\"><tr><th>cluster</th><th>rows</th><th>most common true class</th>", pg->f);
    for (int s = 0; s < 6; s++)
      if (col[s] >= 0) fprintf(pg->f, "<th>mean %s</th>", show[s]);
    fputs("<th>examples</th></tr>\n", pg->f);
    for (int k = 0; k < K && k < 64; k++) {
      int64_t cnt = 0;
      double mean[6] = {0};
      int *cc = calloc((size_t)(C > 0 ? C : 1), sizeof *cc);
      for (int64_t i = 0; i < M; i++) {
        if (as[i] != k) continue;
        cnt++;
        for (int s = 0; s < 6; s++)
          if (col[s] >= 0) mean[s] += X[(size_t)i * D + col[s]];
        if (lab && nl == M && lab[i] >= 0 && lab[i] < C && cc) cc[lab[i]]++;
      }
      fprintf(pg->f, "<tr><td>%d</td><td>%lld</td><td>", k, (long long)cnt);
      if (C > 0 && cc && cnt > 0) {
        int best = 0;
        for (int c = 1; c < C; c++)
          if (cc[c] > cc[best]) best = c;
        esc(pg->f, cls[best]);
        fprintf(pg->f, " (%.0f%%)", 100.0 * cc[best] / (double)cnt);
      } else {
        fputs("&ndash;", pg->f);
      }
      fputs("</td>", pg->f);
      for (int s = 0; s < 6; s++)
        if (col[s] >= 0) fprintf(pg->f, "<td>%.3g</td>", cnt ? mean[s] / (double)cnt : 0);
      fputs("<td>", pg->f);
      if (ims && ind == 3 && box && nb == 4 * M) {
        int H = (int)idims[1], W = (int)idims[2], ex = pg->o->examples, cell = 56;
        cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, ex * (cell + 4), cell);
        cairo_t *cr = cairo_create(s);
        cairo_set_source_rgb(cr, 1, 1, 1);
        cairo_paint(cr);
        int e = 0;
        /* spread the examples over the cluster's rows */
        int64_t step = cnt > ex ? cnt / ex : 1, seen = 0;
        for (int64_t i = 0; i < M && e < ex; i++) {
          if (as[i] != k) continue;
          if (seen++ % step) continue;
          int64_t im = img[i];
          if (im < 0 || im >= idims[0]) continue;
          /* a square crop around the region, at least 32 px, inside the image */
          int y0 = box[4 * i], x0 = box[4 * i + 1], y1 = box[4 * i + 2], x1 = box[4 * i + 3];
          int side = y1 - y0 > x1 - x0 ? y1 - y0 : x1 - x0;
          side = side < 32 ? 32 : side + 8;
          if (side > H) side = H;
          if (side > W) side = W;
          int cy = (y0 + y1) / 2, cx = (x0 + x1) / 2;
          int sy = cy - side / 2, sx = cx - side / 2;
          if (sy < 0) sy = 0;
          if (sx < 0) sx = 0;
          if (sy + side > H) sy = H - side;
          if (sx + side > W) sx = W - side;
          if (!h5image(sf, im, H, W, ims)) break;
          paint_image(cr, ims, H, W, sy, sx, sy + side, sx + side,
                      e * (cell + 4), 0, (double)cell / side);
          e++;
        }
        cairo_destroy(cr);
        img_surface(pg, s, "example patches", "ex");
        cairo_surface_destroy(s);
      }
      fputs("</td></tr>\n", pg->f);
      free(cc);
    }
    fputs("</table>\n", pg->f);
    free(ims);
    if (sf >= 0) H5Fclose(sf);
  } else if (as) {
    fprintf(pg->f, "<p>%lld rows clustered (descriptors file not found: no cluster table).</p>\n", (long long)na);
  }
  free(kv);
  free(sil);
  free(as);
  free(X);
  free(img);
  free(box);
  free(lab);
  sd_h5_strings_free(cls, C);
  sd_h5_strings_free(dn, D);
  if (df >= 0) H5Fclose(df);
  H5Fclose(cf);
}

static void section_embedding(page *pg) {
  char p[PATHCAP];
  fputs("<h2 id=\"embedding\">t-SNE map</h2>\n", pg->f);
  path_of(pg, "embedding.h5", p);
  hid_t f = h5open(p);
  if (f < 0) {
    missing(pg, "The embedding", "embed");
    return;
  }
  fprintf(pg->f, "<p>Barnes-Hut t-SNE: perplexity %g, theta %g, %g iterations, final KL divergence <b>%.4f</b>.</p>\n",
          h5attr_num(f, "perplexity"), h5attr_num(f, "theta"), h5attr_num(f, "iterations"),
          h5attr_num(f, "kl_divergence"));
  H5Fclose(f);
  static char names[16][256];
  int n = list_pngs(pg, "figures", "tsne", names, 16);
  for (int i = 0; i < n; i++) {
    if (snprintf(p, sizeof p, "%s/figures/%s", pg->o->run_dir, names[i]) < (int)sizeof p)
      img_file(pg, p, names[i]);
  }
}

static void section_timings(page *pg) {
  static const char *stages[] = {"data", "classify", "pseudolabel", "segmenter", "segment",
                                 "describe", "cluster", "embed"};
  char p[PATHCAP];
  fputs("<h2 id=\"timings\">Per-stage timings</h2>\n", pg->f);
  fputs("<table><tr><th>stage</th><th>step</th><th>ranks</th><th>seconds</th><th>compute (max)</th>"
        "<th>communication (max)</th><th>I/O (max)</th><th>I/O bytes</th><th>peak RSS</th></tr>\n", pg->f);
  int rows = 0;
  for (size_t s = 0; s < sizeof stages / sizeof *stages; s++) {
    snprintf(p, sizeof p, "%s/profile/%s.json", pg->o->run_dir, stages[s]);
    sd_json_doc j;
    if (!sd_json_load(p, &j)) continue;
    yaml_node_t *r = sd_json_root(&j), *st = sd_json_get(&j, r, "stages");
    double rss = sd_json_num(sd_json_get(&j, r, "peak_rss_bytes_max"));
    for (int i = 0; i < sd_json_len(st); i++) {
      yaml_node_t *e = sd_json_at(&j, st, i);
      fprintf(pg->f, "<tr><td>%s</td><td>%s</td><td>%s</td><td>%.2f</td><td>%.2f</td><td>%.2f</td><td>%.2f</td><td>%.1f MB</td><td>%.0f MB</td></tr>\n",
              stages[s], sd_json_str(sd_json_get(&j, e, "name")) ? sd_json_str(sd_json_get(&j, e, "name")) : "?",
              sd_json_str(sd_json_get(&j, r, "ranks")) ? sd_json_str(sd_json_get(&j, r, "ranks")) : "?", sd_json_num(sd_json_get(&j, e, "seconds")),
              sd_json_num(sd_json_get(&j, sd_json_get(&j, e, "compute"), "max")), sd_json_num(sd_json_get(&j, sd_json_get(&j, e, "communication"), "max")),
              sd_json_num(sd_json_get(&j, sd_json_get(&j, e, "io"), "max")), sd_json_num(sd_json_get(&j, e, "bytes_io")) / 1e6, rss / 1e6);
      rows++;
    }
    sd_json_free(&j);
  }
  fputs("</table>\n", pg->f);
  if (!rows) fputs("<p class=\"missing\">No stage profiles in this run.</p>\n", pg->f);
}

static void section_provenance(page *pg) {
  char p[PATHCAP];
  fputs("<h2 id=\"provenance\">Provenance</h2>\n", pg->f);
  time_t now = time(NULL);
  char when[32];
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
  fprintf(pg->f, "<p>Report written %s by stemdefect %s (git %s) from <code>", when, SD_VERSION, SD_GIT_COMMIT);
  esc(pg->f, pg->o->run_dir);
  fputs("</code>.</p>\n<table><tr><th>file</th><th>command</th><th>ranks</th><th>created</th><th>git</th></tr>\n", pg->f);
  static const char *files[] = {"stack.h5", "classifier.h5", "pseudo.h5", "unet.h5", "heatmaps.h5",
                                "descriptors.h5", "clusters.h5", "embedding.h5"};
  char *config = NULL;
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    path_of(pg, files[i], p);
    hid_t f = h5open(p);
    if (f < 0) continue;
    char *cmd = h5attr_str(f, "command"), *created = h5attr_str(f, "created"), *git = h5attr_str(f, "git_commit");
    char *cl = h5attr_str(f, "command_line");
    double ranks = h5attr_num(f, "ranks");
    fprintf(pg->f, "<tr><td>%s</td><td title=\"", files[i]);
    esc(pg->f, cl);
    fputs("\">", pg->f);
    esc(pg->f, cmd ? cmd : "?");
    fprintf(pg->f, "</td><td>%.0f</td><td>", ranks);
    esc(pg->f, created ? created : "?");
    fputs("</td><td>", pg->f);
    esc(pg->f, git ? git : "?");
    fputs("</td></tr>\n", pg->f);
    char *c = h5attr_str(f, "config");
    if (c) {
      free(config);
      config = c; /* the last stage's resolved configuration holds every section */
    }
    free(cmd);
    free(created);
    free(git);
    free(cl);
    H5Fclose(f);
  }
  fputs("</table>\n", pg->f);
  if (config) {
    fputs("<details><summary>Resolved configuration of the last stage</summary><pre>", pg->f);
    esc(pg->f, config);
    fputs("</pre></details>\n", pg->f);
  }
  free(config);
}

sd_status sd_report_write(const sd_report_opts *o, int *figures) {
  struct stat sb;
  if (stat(o->run_dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
    return SD_ERROR(SD_ERR_IO, "run directory '%s' does not exist", o->run_dir);
  char tmp[PATHCAP];
  snprintf(tmp, sizeof tmp, "%s.tmp-%ld", o->output, (long)getpid());
  FILE *f = fopen(tmp, "w");
  if (!f) return SD_ERROR(SD_ERR_IO, "cannot write the report '%s'", o->output);
  sd_h5_init();
  page pg = {f, o, 0};
  fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>", f);
  esc(f, o->title);
  fputs("</title>\n<style>\n"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}\n"
        "h1{border-bottom:2px solid #246}h2{margin-top:2em;border-bottom:1px solid #ccc}\n"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\n"
        "th{background:#eef}td:first-child{text-align:left}img.fig{max-width:100%;border:1px solid #ddd}\n"
        "figure{display:inline-block;margin:.5em}figcaption{font-size:90%;color:#555}\n"
        "table.wide{display:block;overflow-x:auto}.missing{color:#a60}.grid figure{width:31%}.grid img{width:100%}nav a{margin-right:1em}\n"
        "pre{background:#f6f6f6;padding:.5em;overflow:auto;max-height:30em}\n"
        "</style></head><body>\n<h1>", f);
  esc(f, o->title);
  fputs("</h1>\n<nav><a href=\"#data\">dataset</a><a href=\"#classifier\">classifier</a>"
        "<a href=\"#localisation\">localisation</a><a href=\"#clusters\">clusters</a>"
        "<a href=\"#embedding\">t-SNE</a><a href=\"#timings\">timings</a><a href=\"#provenance\">provenance</a></nav>\n", f);
  int64_t n = 0;
  section_dataset(&pg, &n);
  section_classifier(&pg);
  section_localisation(&pg);
  section_clusters(&pg);
  section_embedding(&pg);
  section_timings(&pg);
  section_provenance(&pg);
  /* for readers and the browser test: how many figures decoded */
  fputs("<script>window.addEventListener('load',function(){var im=document.images,ok=0;"
        "for(var i=0;i<im.length;i++)if(im[i].complete&&im[i].naturalWidth>0)ok++;"
        "document.body.setAttribute('data-figures',ok+'/'+im.length);});</script>\n", f);
  fputs("</body></html>\n", f);
  int bad = ferror(f);
  bad |= fclose(f) != 0;
  if (bad || rename(tmp, o->output) != 0) {
    unlink(tmp);
    return SD_ERROR(SD_ERR_IO, "cannot write the report '%s'", o->output);
  }
  if (figures) *figures = pg.figures;
  return SD_OK;
}
