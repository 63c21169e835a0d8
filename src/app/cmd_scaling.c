/* cmd_scaling.c - `stemdefect scaling`: collects the per-stage JSON profiles of several run
 * directories (one per rank count, named <mode>-<ranks> by jobs/scaling-study.sh) into one CSV
 * and plots speedup and parallel efficiency per stage against the rank count, with the ideal
 * line. Strong scaling: speedup T(P0)/T(P) against the ideal P/P0, efficiency speedup*P0/P;
 * weak scaling (images per rank fixed): efficiency T(P0)/T(P) against the ideal 1, scaled
 * speedup efficiency*P/P0. P0 is the smallest rank count of the mode. Runs on rank 0. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../report/jsonread.h"
#include "app.h"
#include "stemdefect/log.h"
#include "stemdefect/par.h"
#include "stemdefect/plot.h"

static const char *const stage_names[] = {"data", "classify", "pseudolabel", "segmenter", "segment",
                                          "describe", "cluster", "embed", "report"};
#define NSTAGE ((int)(sizeof stage_names / sizeof *stage_names))
#define MAXRUN 64

static const sd_cli_option scaling_options[] = {
    {"--output", "scaling.output", "DIR", NULL, 0},
    {"--cores", "scaling.cores", "N", NULL, 0},
    {NULL, NULL, NULL, NULL, 0}};

typedef struct run_rec {
  char mode[16];
  int ranks;
  int64_t images;
  double seconds[NSTAGE]; /* NAN = stage absent */
} run_rec;

static int64_t stack_images(const char *dir) {
  char p[4200];
  snprintf(p, sizeof p, "%s/stack.h5", dir);
  if (access(p, R_OK) != 0) return -1;
  hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t d = f >= 0 ? H5Dopen2(f, "/images", H5P_DEFAULT) : -1;
  hid_t s = d >= 0 ? H5Dget_space(d) : -1;
  hsize_t dims[3] = {0};
  int64_t n = -1;
  if (s >= 0 && H5Sget_simple_extent_ndims(s) == 3 && H5Sget_simple_extent_dims(s, dims, NULL) >= 0)
    n = (int64_t)dims[0];
  if (s >= 0) H5Sclose(s);
  if (d >= 0) H5Dclose(d);
  if (f >= 0) H5Fclose(f);
  H5Eclear2(H5E_DEFAULT);
  return n;
}

/* Reads one run directory; writes its CSV rows. */
static sd_status read_run(const char *dir, FILE *csv, int cores, run_rec *r) {
  memset(r, 0, sizeof *r);
  const char *base = strrchr(dir, '/');
  base = base ? base + 1 : dir;
  snprintf(r->mode, sizeof r->mode, "%s", !strncmp(base, "weak", 4) ? "weak" : "strong");
  r->images = stack_images(dir);
  int found = 0;
  for (int s = 0; s < NSTAGE; s++) {
    r->seconds[s] = NAN;
    char p[4200];
    snprintf(p, sizeof p, "%s/profile/%s.json", dir, stage_names[s]);
    sd_json_doc j;
    if (!sd_json_load(p, &j)) continue;
    yaml_node_t *root = sd_json_root(&j), *steps = sd_json_get(&j, root, "stages");
    int ranks = (int)sd_json_num(sd_json_get(&j, root, "ranks"));
    if (r->ranks && ranks != r->ranks) {
      sd_json_free(&j);
      return SD_ERROR(SD_ERR_FORMAT, "%s: stage %s ran on %d ranks, another stage on %d", dir,
                      stage_names[s], ranks, r->ranks);
    }
    r->ranks = ranks;
    r->seconds[s] = sd_json_num(sd_json_get(&j, root, "wall_seconds"));
    for (int i = 0; i < sd_json_len(steps); i++) {
      yaml_node_t *e = sd_json_at(&j, steps, i);
      const char *name = sd_json_str(sd_json_get(&j, e, "name"));
      fprintf(csv, "%s,%s,%s,%d,%d,%lld,%.6f,%.6f,%.6f,%.6f,%.0f,%.0f\n", r->mode, stage_names[s],
              name ? name : "?", ranks, ranks > cores, (long long)r->images,
              sd_json_num(sd_json_get(&j, e, "seconds")),
              sd_json_num(sd_json_get(&j, sd_json_get(&j, e, "compute"), "max")),
              sd_json_num(sd_json_get(&j, sd_json_get(&j, e, "communication"), "max")),
              sd_json_num(sd_json_get(&j, sd_json_get(&j, e, "io"), "max")),
              sd_json_num(sd_json_get(&j, e, "bytes_io")),
              sd_json_num(sd_json_get(&j, e, "bytes_communication")));
    }
    fprintf(csv, "%s,%s,total,%d,%d,%lld,%.6f,,,,,\n", r->mode, stage_names[s], ranks, ranks > cores,
            (long long)r->images, r->seconds[s]);
    sd_json_free(&j);
    found++;
  }
  if (!found) return SD_ERROR(SD_ERR_FORMAT, "%s holds no stage profiles (profile/<stage>.json)", dir);
  return SD_OK;
}

static int cmp_rec(const void *a, const void *b) {
  const run_rec *x = a, *y = b;
  int m = strcmp(x->mode, y->mode);
  return m ? m : x->ranks - y->ranks;
}

/* One panel per mode; y = speedup (which = 0) or efficiency (which = 1). */
static sd_status plot(const run_rec *runs, int n, int which, int cores, const char *path) {
  const char *modes[2] = {"strong", "weak"};
  int present[2] = {0, 0};
  for (int i = 0; i < n; i++) present[strcmp(runs[i].mode, "weak") == 0] = 1;
  int panels = present[0] + present[1];
  sd_plot *pl = NULL;
  SD_CHECK(sd_plot_create(panels * 620, 480, 1, panels, &pl));
  sd_status st = SD_OK;
  int panel = 0;
  for (int m = 0; m < 2 && st == SD_OK; m++) {
    if (!present[m]) continue;
    double x[MAXRUN], y[MAXRUN], ideal[MAXRUN];
    char title[160];
    snprintf(title, sizeof title, "%s scaling: %s%s", modes[m], which ? "parallel efficiency" : "speedup",
             m ? " (scaled)" : "");
    st = sd_plot_panel(pl, panel++, title, "MPI ranks", which ? "efficiency" : "speedup");
    sd_plot_integer_x(pl, 1);
    if (which) sd_plot_ylim(pl, 0, 1.3);
    int first = -1, k = 0;
    for (int i = 0; i < n; i++)
      if (!strcmp(runs[i].mode, modes[m])) {
        if (first < 0) first = i;
        x[k] = runs[i].ranks;
        double r = (double)runs[i].ranks / runs[first].ranks;
        ideal[k++] = which ? 1 : r;
      }
    if (st == SD_OK) st = sd_plot_line(pl, k, x, ideal, NULL, 7, SD_PLOT_STYLE_LINE, "ideal");
    int color = 0;
    for (int s = 0; s < NSTAGE && st == SD_OK; s++) {
      int kk = 0, any = 0;
      for (int i = 0; i < n; i++) {
        if (strcmp(runs[i].mode, modes[m])) continue;
        double t0 = runs[first].seconds[s], t = runs[i].seconds[s];
        double r = (double)runs[i].ranks / runs[first].ranks;
        double v = NAN;
        if (t0 > 0 && t > 0) {
          double ratio = t0 / t; /* strong: speedup; weak: efficiency */
          v = m == 0 ? (which ? ratio / r : ratio) : (which ? ratio : ratio * r);
          any = 1;
        }
        x[kk] = runs[i].ranks;
        y[kk++] = v;
      }
      if (!any) continue;
      st = sd_plot_line(pl, kk, x, y, NULL, color == 7 ? ++color : color, SD_PLOT_STYLE_LINE_MARKERS,
                        stage_names[s]);
      color++;
    }
    if (st == SD_OK && cores > 0) {
      for (int i = 0; i < n; i++)
        if (!strcmp(runs[i].mode, modes[m]) && runs[i].ranks > cores) {
          st = sd_plot_vline(pl, cores + 0.5, 7, "beyond the cores (oversubscribed)");
          break;
        }
    }
    sd_plot_legend_at(pl, which ? SD_PLOT_LEGEND_BOTTOM_RIGHT : SD_PLOT_LEGEND_TOP_LEFT);
  }
  if (st == SD_OK) st = sd_plot_save_png(pl, path);
  sd_plot_destroy(&pl);
  return st;
}

static sd_status scaling_local(sd_app *app) {
  const char *out = sd_config_string(app->cfg, "scaling.output");
  int cores = (int)sd_config_int(app->cfg, "scaling.cores");
  int n = sd_config_list_length(app->cfg, "scaling.runs");
  if (n == 0) return SD_ERROR(SD_ERR_ARG, "no run directories given (stemdefect scaling --output DIR RUN...)");
  if (n > MAXRUN) return SD_ERROR(SD_ERR_ARG, "at most %d run directories, got %d", MAXRUN, n);
  if (cores <= 0) cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
  char csvp[4200], tmp[4300];
  snprintf(csvp, sizeof csvp, "%s/scaling.csv", out);
  snprintf(tmp, sizeof tmp, "%s.tmp-%ld", csvp, (long)getpid());
  FILE *csv = fopen(tmp, "w");
  if (!csv) return SD_ERROR(SD_ERR_IO, "cannot write %s (does the directory %s exist?)", csvp, out);
  fprintf(csv, "mode,stage,step,ranks,oversubscribed,images,seconds,compute,communication,io,bytes_io,bytes_communication\n");
  run_rec runs[MAXRUN];
  sd_status st = SD_OK;
  for (int i = 0; i < n && st == SD_OK; i++) st = read_run(sd_config_list_item(app->cfg, "scaling.runs", i), csv, cores, &runs[i]);
  int bad = fclose(csv) != 0;
  if (st == SD_OK && (bad || rename(tmp, csvp) != 0)) st = SD_ERROR(SD_ERR_IO, "cannot write %s", csvp);
  if (st != SD_OK) {
    unlink(tmp);
    return st;
  }
  qsort(runs, (size_t)n, sizeof *runs, cmp_rec);
  char p[4200];
  snprintf(p, sizeof p, "%s/speedup.png", out);
  SD_CHECK(plot(runs, n, 0, cores, p));
  snprintf(p, sizeof p, "%s/efficiency.png", out);
  SD_CHECK(plot(runs, n, 1, cores, p));
  sd_log_info("scaling: %d runs -> %s, %s/speedup.png, %s/efficiency.png", n, csvp, out, out);
  return SD_OK;
}

static sd_status scaling_run(sd_app *app) {
  sd_status st = app->rank == 0 ? scaling_local(app) : SD_OK;
  return sd_par_agree(app->comm, st);
}

const sd_command sd_cmd_scaling = {
    .name = "scaling",
    .summary = "collect the profiles of scaling runs into a CSV and speedup/efficiency plots",
    .usage = "--output DIR [--cores N] RUNDIR...",
    .description =
        "Reads profile/<stage>.json of each run directory (named <mode>-<ranks> by\n"
        "jobs/scaling-study.sh; mode strong or weak) and writes DIR/scaling.csv (stage, step,\n"
        "ranks, oversubscribed, images, seconds, compute, communication, I/O, bytes moved) and\n"
        "DIR/speedup.png, DIR/efficiency.png with the ideal line per mode.",
    .sections = "scaling,general",
    .positional_key = "scaling.runs",
    .options = scaling_options,
    .run = scaling_run,
};
