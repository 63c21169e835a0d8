/* cmd_describe.c - `stemdefect describe`: descriptor rows from per-class heatmaps.
 *
 * Ranks take contiguous blocks of images (sd_shard_range) and read, batch by batch and
 * collectively, their heatmaps [b,C,H,W], images (parallel HDF5 stack) and, when given, the
 * residual against the bulk lattice (/deviation of a pseudo-label file, or computed here from each
 * image's own lattice, which also gives the local lattice displacement). Rows (one per region,
 * or one per image without regions; see features.h) are written into one descriptors.h5 at
 * global offsets from an exclusive scan of the per-rank row counts, so the file is the same at
 * any rank count:
 *   /descriptors float32 [M,D] (attr names), /names string [D], /image_index int64 [M],
 *   /channel int32 [M], /box int32 [M,4] (y0, x0, y1, x1; exclusive ends), /labels int32 [M]
 *   (the class of the row's image, -1 unknown; attr class_names), root attrs threshold,
 *   min_area, residual (source), provenance.
 */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "stemdefect/features.h"
#include "stemdefect/h5util.h"
#include "stemdefect/image.h"
#include "stemdefect/lattice.h"
#include "stemdefect/log.h"
#include "stemdefect/par.h"
#include "stemdefect/profile.h"

#define NAME_LEN 48

static const sd_cli_option describe_options[] = {
    {"--heatmaps", "describe.heatmaps", "FILE", NULL, 0},
    {"--data", "describe.data", "STACK", NULL, 0},
    {"--residual", "describe.residual", "FILE", NULL, 0},
    {"--output", "describe.output", "FILE", NULL, 0},
    {"--threshold", "describe.threshold", "P", NULL, 0},
    {NULL, NULL, NULL, NULL, 0}};

/* Rows produced on this rank, growing. */
typedef struct rowbuf {
  int D;
  int64_t n, cap;
  float *x;       /* (cap, D) */
  int64_t *image; /* (cap) */
  int32_t *channel, *box, *label;
} rowbuf;

static sd_status rowbuf_reserve(rowbuf *r, int64_t need) {
  if (need <= r->cap) return SD_OK;
  int64_t cap = r->cap ? r->cap : 256;
  while (cap < need) cap *= 2;
  float *x = realloc(r->x, (size_t)cap * (size_t)r->D * sizeof *x);
  if (x) r->x = x;
  int64_t *im = realloc(r->image, (size_t)cap * sizeof *im);
  if (im) r->image = im;
  int32_t *ch = realloc(r->channel, (size_t)cap * sizeof *ch);
  if (ch) r->channel = ch;
  int32_t *bx = realloc(r->box, (size_t)cap * 4 * sizeof *bx);
  if (bx) r->box = bx;
  int32_t *lb = realloc(r->label, (size_t)cap * sizeof *lb);
  if (lb) r->label = lb;
  if (!x || !im || !ch || !bx || !lb) return SD_ERROR(SD_ERR_NOMEM, "descriptor rows (%lld)", (long long)cap);
  r->cap = cap;
  return SD_OK;
}

static void rowbuf_free(rowbuf *r) {
  free(r->x);
  free(r->image);
  free(r->channel);
  free(r->box);
  free(r->label);
  memset(r, 0, sizeof *r);
}

/* Class names of the heatmaps: attr class_names on /heatmaps, else on the root. */
static sd_status heatmap_class_names(hid_t file, hid_t dset, const char *path, int C, char ***names) {
  int n = 0, ex = 0;
  SD_CHECK(sd_h5_attr_exists(dset, "class_names", &ex));
  hid_t loc = dset;
  if (!ex) {
    SD_CHECK(sd_h5_attr_exists(file, "class_names", &ex));
    loc = file;
  }
  if (!ex) return SD_ERROR(SD_ERR_FORMAT, "%s: /heatmaps has no class_names attribute", path);
  SD_CHECK(sd_h5_attr_read_strings(loc, "class_names", &n, names));
  if (n != C) {
    sd_h5_strings_free(*names, n);
    *names = NULL;
    return SD_ERROR(SD_ERR_FORMAT, "%s: class_names has %d names but /heatmaps has %d channels",
                    path, n, C);
  }
  return SD_OK;
}

static sd_status describe_run(sd_app *app) {
  const sd_config *cfg = app->cfg;
  const char *hpath = sd_config_string(cfg, "describe.heatmaps");
  const char *dpath = sd_config_string(cfg, "describe.data");
  const char *rpath = sd_config_string(cfg, "describe.residual");
  const char *out = sd_config_string(cfg, "describe.output");
  sd_feat_opts opts = {(float)sd_config_float(cfg, "describe.threshold"),
                       (int)sd_config_int(cfg, "describe.min_area")};
  int batch = (int)sd_config_int(cfg, "describe.batch");
  if (!*hpath) return SD_ERROR(SD_ERR_ARG, "no heatmaps: give --heatmaps FILE");
  if (!*dpath) return SD_ERROR(SD_ERR_ARG, "no image stack: give --data STACK");
  sd_profile_stage_begin("describe");

  sd_status st = SD_OK;
  hid_t hf = H5I_INVALID_HID, hd = H5I_INVALID_HID, rf = H5I_INVALID_HID, rd = H5I_INVALID_HID;
  hid_t dxpl = H5I_INVALID_HID;
  sd_stack *stack = NULL;
  char **names = NULL;
  char *colnames = NULL;
  float *heat = NULL, *img = NULL, *res = NULL, *scratch = NULL, *rows = NULL;
  float *dev = NULL, *dist = NULL;
  sd_deviation_ws *ws = NULL;
  int64_t no_lattice = 0;
  int32_t *labels = NULL, *chan = NULL, *box = NULL;
  rowbuf rb;
  memset(&rb, 0, sizeof rb);
  sd_h5_output o;
  memset(&o, 0, sizeof o);
  int C = 0, nd = 0;
  int64_t dims[4] = {0, 0, 0, 0};

  double t = sd_profile_phase_begin();
  SD_CHECK_GOTO(st, sd_par_agree(app->comm, sd_h5_file_open(app->comm, hpath, 0, &hf)), done);
  SD_CHECK_GOTO(st, sd_par_agree(app->comm, sd_h5_dataset_open(hf, "/heatmaps", &hd, &nd, dims)), done);
  if (nd != 4)
    SD_CHECK_GOTO(st, SD_ERROR(SD_ERR_FORMAT, "%s: /heatmaps must be [N,C,H,W], it has rank %d", hpath, nd), done);
  C = (int)dims[1];
  SD_CHECK_GOTO(st, sd_par_agree(app->comm, heatmap_class_names(hf, hd, hpath, C, &names)), done);
  SD_CHECK_GOTO(st, sd_stack_open(app->comm, dpath, &stack), done);
  const sd_stack_info *in = sd_stack_get_info(stack);
  int64_t N = dims[0];
  int H = (int)dims[2], W = (int)dims[3];
  if (in->n != N || in->height != H || in->width != W)
    SD_CHECK_GOTO(st, SD_ERROR(SD_ERR_ARG, "%s holds %lld images of %dx%d but %s holds %lld heatmaps of %dx%d",
                               dpath, (long long)in->n, in->width, in->height, hpath, (long long)N, W, H), done);
  if (*rpath) {
    int rnd = 0;
    int64_t rdims[4];
    SD_CHECK_GOTO(st, sd_par_agree(app->comm, sd_h5_file_open(app->comm, rpath, 0, &rf)), done);
    SD_CHECK_GOTO(st, sd_par_agree(app->comm, sd_h5_dataset_open(rf, "/deviation", &rd, &rnd, rdims)), done);
    if (rnd != 3 || rdims[0] != N || rdims[1] != H || rdims[2] != W)
      SD_CHECK_GOTO(st, SD_ERROR(SD_ERR_ARG, "%s: /deviation must be [%lld,%d,%d] like the images of %s",
                                 rpath, (long long)N, H, W, dpath), done);
  }
  SD_CHECK_GOTO(st, sd_h5_dxpl_collective(&dxpl), done);
  sd_profile_phase_end(SD_PHASE_IO, t);

  int D = sd_feat_num_columns(C);
  rb.D = D;
  int64_t first, count;
  sd_shard_range(N, app->rank, app->size, &first, &count);
  size_t hw = (size_t)H * (size_t)W;
  int cap = 64;
  heat = sd_malloc((size_t)batch * C * hw, sizeof *heat, "heatmaps batch");
  img = sd_malloc((size_t)batch * hw, sizeof *img, "image batch");
  res = *rpath ? sd_malloc((size_t)batch * hw, sizeof *res, "residual batch") : NULL;
  scratch = sd_malloc(hw, sizeof *scratch, "scratch");
  dev = sd_malloc(hw, sizeof *dev, "deviation");
  dist = sd_malloc(hw, sizeof *dist, "distortion");
  sd_deviation_params dparams;
  sd_deviation_params_default(&dparams);
  sd_lattice_params lparams;
  sd_lattice_params_default(&lparams);
  if (dev && dist && H >= 8 && W >= 8) st = sd_deviation_ws_create(H, W, &dparams, &ws);
  if (st != SD_OK) goto done;
  labels = sd_malloc((size_t)batch, sizeof *labels, "labels");
  rows = sd_malloc((size_t)cap * D, sizeof *rows, "rows");
  chan = sd_malloc((size_t)cap, sizeof *chan, "channels");
  box = sd_malloc((size_t)cap * 4, sizeof *box, "boxes");
  st = (heat && img && (res || !*rpath) && scratch && dev && dist && labels && rows && chan && box) ? SD_OK
                                                                                        : SD_ERR_NOMEM;
  SD_CHECK_GOTO(st, sd_par_agree(app->comm, st), done);

  /* every rank makes the same number of collective reads */
  int64_t nb = (count + batch - 1) / batch, nb_max = nb;
  MPI_Allreduce(&nb, &nb_max, 1, MPI_INT64_T, MPI_MAX, app->comm);
  int64_t done_images = 0;
  sd_progress prog;
  sd_progress_begin(&prog, "describe", N);
  for (int64_t b = 0; b < nb_max; b++) {
    int64_t f = first + b * batch;
    int64_t c = b < nb ? (count - b * batch < batch ? count - b * batch : batch) : 0;
    if (c <= 0) {
      c = 0;
      f = 0;
    }
    t = sd_profile_phase_begin();
    st = sd_h5_rows_read(hd, dxpl, f, c, H5T_NATIVE_FLOAT, heat);
    st = sd_par_agree(app->comm, st);
    if (st == SD_OK) st = sd_stack_read(stack, f, c, img, labels, NULL);
    if (st == SD_OK && rd >= 0) st = sd_par_agree(app->comm, sd_h5_rows_read(rd, dxpl, f, c, H5T_NATIVE_FLOAT, res));
    sd_profile_phase_end(SD_PHASE_IO, t);
    if (st != SD_OK) goto done;
    t = sd_profile_phase_begin();
    sd_status lst = SD_OK;
    for (int64_t i = 0; i < c && lst == SD_OK; i++) {
      float *im = img + (size_t)i * hw;
      lst = sd_normalize_robust(im, hw, scratch);
      /* the bulk lattice of this image: its deviation (when no residual file is given) and the
       * local lattice displacement |shift| (distortion) */
      const float *resid = res ? res + (size_t)i * hw : NULL, *distortion = NULL;
      sd_lattice lat;
      if (lst == SD_OK && ws && sd_lattice_estimate(im, H, W, &lparams, &lat) == SD_OK &&
          sd_lattice_deviation(ws, im, &lat, dev) == SD_OK) {
        for (size_t q = 0; q < hw; q++) dist[q] = hypotf(ws->shift[2 * q], ws->shift[2 * q + 1]);
        distortion = dist;
        if (!resid) resid = dev;
      } else if (lst == SD_OK) {
        sd_error_clear();
        no_lattice++;
      }
      sd_feat_image fi = {C, H, W, heat + (size_t)i * C * hw, im, resid, distortion};
      int nr = 0;
      if (lst == SD_OK) lst = sd_feat_describe_image(&fi, &opts, rows, chan, box, cap, &nr);
      if (lst == SD_ERR_ARG && nr > cap) {
        /* more regions than room: grow and describe again */
        cap = nr;
        float *r2 = realloc(rows, (size_t)cap * D * sizeof *rows);
        if (r2) rows = r2;
        int32_t *c2 = realloc(chan, (size_t)cap * sizeof *chan);
        if (c2) chan = c2;
        int32_t *b2 = realloc(box, (size_t)cap * 4 * sizeof *box);
        if (b2) box = b2;
        lst = (r2 && c2 && b2) ? sd_feat_describe_image(&fi, &opts, rows, chan, box, cap, &nr)
                               : SD_ERROR(SD_ERR_NOMEM, "descriptor rows (%d)", cap);
      }
      if (lst == SD_OK) lst = rowbuf_reserve(&rb, rb.n + nr);
      if (lst != SD_OK) break;
      for (int k = 0; k < nr; k++) {
        memcpy(rb.x + (size_t)(rb.n + k) * D, rows + (size_t)k * D, (size_t)D * sizeof *rows);
        rb.image[rb.n + k] = f + i;
        rb.channel[rb.n + k] = chan[k];
        memcpy(rb.box + 4 * (rb.n + k), box + 4 * k, 4 * sizeof *box);
        rb.label[rb.n + k] = labels[i];
      }
      rb.n += nr;
    }
    sd_profile_phase_end(SD_PHASE_COMPUTE, t);
    SD_CHECK_GOTO(st, sd_par_agree(app->comm, lst), done);
    done_images += c;
    int64_t tot[1] = {done_images};
    SD_CHECK_GOTO(st, sd_par_allreduce_sum_i64(app->comm, tot, 1), done);
    sd_progress_update(&prog, tot[0]);
  }
  sd_progress_end(&prog);
  {
    int64_t nl[1] = {no_lattice};
    SD_CHECK_GOTO(st, sd_par_allreduce_sum_i64(app->comm, nl, 1), done);
    if (nl[0] > 0)
      sd_log_warn("describe: %lld of %lld images show no lattice (no two Fourier peaks): their "
                  "distortion columns%s are 0", (long long)nl[0], (long long)N,
                  *rpath ? "" : " and residual columns");
  }

  /* the output: offsets by exclusive scan */
  int64_t off = 0, M = 0;
  SD_CHECK_GOTO(st, sd_par_exscan_i64(app->comm, rb.n, &off, &M), done);
  t = sd_profile_phase_begin();
  SD_CHECK_GOTO(st, sd_h5_output_create(app->comm, out, &o), done);
  hid_t ds[5] = {H5I_INVALID_HID, H5I_INVALID_HID, H5I_INVALID_HID, H5I_INVALID_HID, H5I_INVALID_HID};
  int64_t d2[2] = {M, D}, d1[1] = {M}, db[2] = {M, 4};
  st = sd_h5_dataset_create(o.file, "/descriptors", H5T_IEEE_F32LE, 2, d2, &ds[0]);
  if (st == SD_OK) st = sd_h5_dataset_create(o.file, "/image_index", H5T_STD_I64LE, 1, d1, &ds[1]);
  if (st == SD_OK) st = sd_h5_dataset_create(o.file, "/channel", H5T_STD_I32LE, 1, d1, &ds[2]);
  if (st == SD_OK) st = sd_h5_dataset_create(o.file, "/box", H5T_STD_I32LE, 2, db, &ds[3]);
  if (st == SD_OK) st = sd_h5_dataset_create(o.file, "/labels", H5T_STD_I32LE, 1, d1, &ds[4]);
  colnames = calloc((size_t)D, NAME_LEN);
  const char **cn = calloc((size_t)D, sizeof *cn);
  if (st == SD_OK && (!colnames || !cn)) st = SD_ERROR(SD_ERR_NOMEM, "column names");
  if (st == SD_OK) {
    sd_feat_column_names(C, (const char *const *)names, colnames, NAME_LEN);
    for (int k = 0; k < D; k++) cn[k] = colnames + (size_t)k * NAME_LEN;
    st = sd_h5_attr_write_strings(ds[0], "names", D, cn);
  }
  if (st == SD_OK) st = sd_h5_dataset_write_strings(o.file, "/names", D, cn, o.dxpl, app->rank);
  if (st == SD_OK)
    st = sd_h5_attr_write_string(ds[0], "description",
                                 "one row per heatmap region (or per image without regions): "
                                 "region shape, probability and residual statistics, then the "
                                 "image's class-mass fractions, region counts and texture");
  if (st == SD_OK) st = sd_h5_attr_write_strings(ds[4], "class_names", C, (const char *const *)names);
  if (st == SD_OK) st = sd_h5_attr_write_string(ds[3], "order", "y0, x0, y1, x1 (exclusive ends), pixels");
  if (st == SD_OK) st = sd_h5_attr_write_string(ds[2], "meaning", "heatmap channel of the region (0 = image row without regions)");
  free(cn);
  st = sd_par_agree(app->comm, st);
  if (st == SD_OK) st = sd_h5_rows_write(ds[0], o.dxpl, off, rb.n, H5T_NATIVE_FLOAT, rb.x);
  if (st == SD_OK) st = sd_h5_rows_write(ds[1], o.dxpl, off, rb.n, H5T_NATIVE_INT64, rb.image);
  if (st == SD_OK) st = sd_h5_rows_write(ds[2], o.dxpl, off, rb.n, H5T_NATIVE_INT32, rb.channel);
  if (st == SD_OK) st = sd_h5_rows_write(ds[3], o.dxpl, off, rb.n, H5T_NATIVE_INT32, rb.box);
  if (st == SD_OK) st = sd_h5_rows_write(ds[4], o.dxpl, off, rb.n, H5T_NATIVE_INT32, rb.label);
  st = sd_par_agree(app->comm, st);
  if (st == SD_OK) {
    char thr[32];
    snprintf(thr, sizeof thr, "%g", opts.threshold);
    st = sd_h5_attr_write_string(o.file, "threshold", thr);
    if (st == SD_OK) st = sd_h5_attr_write_int(o.file, "min_area", opts.min_area);
    if (st == SD_OK) st = sd_h5_attr_write_string(o.file, "heatmaps", hpath);
    if (st == SD_OK)
      st = sd_h5_attr_write_string(o.file, "residual",
                                   *rpath ? rpath : "computed: deviation from each image's own bulk lattice");
    if (st == SD_OK) st = sd_h5_attr_write_string(o.file, "format", "stemdefect-descriptors");
    if (st == SD_OK) st = sd_h5_write_provenance(o.file, &app->prov, app->size);
    st = sd_par_agree(app->comm, st);
  }
  for (int k = 0; k < 5; k++) sd_h5_close(&ds[k]);
  {
    sd_status cst = sd_h5_output_close(&o, st == SD_OK);
    if (st == SD_OK) st = cst;
  }
  sd_profile_phase_end(SD_PHASE_IO, t);
  if (st == SD_OK)
    sd_log_info("describe: %lld rows x %d descriptors from %lld images written to %s", (long long)M,
                D, (long long)N, out);

done:
  sd_h5_output_close(&o, 0);
  sd_profile_stage_end(count);
  sd_h5_close(&dxpl);
  sd_h5_close(&hd);
  sd_h5_close(&rd);
  if (hf >= 0) H5Fclose(hf);
  if (rf >= 0) H5Fclose(rf);
  sd_stack_close(&stack, 0);
  sd_h5_strings_free(names, C);
  free(colnames);
  free(heat);
  free(img);
  free(res);
  free(scratch);
  free(dev);
  free(dist);
  sd_deviation_ws_destroy(&ws);
  free(labels);
  free(rows);
  free(chan);
  free(box);
  rowbuf_free(&rb);
  return st;
}

const sd_command sd_cmd_describe = {
    .name = "describe",
    .summary = "descriptors of every defect region in the heatmaps (sharded over ranks)",
    .usage = "--heatmaps heatmaps.h5 --data stack.h5 --output descriptors.h5 [--residual pseudo.h5] [--threshold P]",
    .description =
        "For every image and defect channel, the pixels above describe.threshold form 8-connected\n"
        "regions (at least describe.min_area pixels); each region gives one row: area, mean and\n"
        "max probability, centroid, box, perimeter, eccentricity, orientation, solidity, Hu\n"
        "moments, and the residual against the bulk lattice (/deviation of --residual) inside it:\n"
        "mean, std, skewness, kurtosis. Every row also holds its image's class-mass fractions,\n"
        "region counts and texture statistics; an image without regions gets one row of its own.\n"
        "The output is the same at any rank count.",
    .sections = "describe,general",
    .positional_key = NULL,
    .options = describe_options,
    .run = describe_run,
};
