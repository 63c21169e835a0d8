/* cmd_segment.c - `stemdefect segment`: per-class heatmaps of a stack with a trained U-Net.
 * Ranks split the stack; each reads its images' rows with parallel HDF5, runs tiled
 * inference (raised-cosine blending of overlapping tiles, one row of tiles at a time, so
 * memory follows the tile and the frame width, not the frame height) and writes its rows of
 * /heatmaps [N,C,H,W] into one shared file with collective transfers (temporary name,
 * renamed when complete). Optional PNG overlays of chosen images. */
#include <cairo.h>
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app.h"
#include "segment_app.h"
#include "stemdefect/checkpoint.h"
#include "stemdefect/h5util.h"
#include "stemdefect/log.h"
#include "stemdefect/par.h"
#include "stemdefect/profile.h"
#include "stemdefect/segment.h"

static const sd_cli_option segment_options[] = {
    {"--model", "segment.model", "MODEL", NULL, 0},
    {"--data", "segment.data", "STACK", NULL, 0},
    {"--output", "segment.output", "FILE", NULL, 0},
    {"--deviation", "segment.deviation", "FILE", NULL, 0},
    {"--tile", "segment.tile", "PX", NULL, 0},
    {"--overlap", "segment.overlap", "PX", NULL, 0},
    {"--batch", "segment.batch", "B", NULL, 0},
    {"--overlay", "segment.overlay", "DIR", NULL, 0},
    {"--overlay-images", "segment.overlay_images", "I,J,..", NULL, 0},
    {"--mc-samples", "segment.mc_samples", "S", NULL, 0},
    {"--mc-seed", "segment.mc_seed", "SEED", NULL, 0},
    {NULL, NULL, NULL, NULL, 0}};

/* one unit of work: tile row k of images [img, img + nimg) */
typedef struct seg_job {
  int64_t img;
  int nimg, k;
} seg_job;

/* Bytes of input and output buffers a rank holds per I/O block of whole frames. */
#define SD_SEGMENT_IO_BLOCK_BYTES ((size_t)32 << 20)

/* Frames per I/O block: a multiple of the batch (max_images) within SD_SEGMENT_IO_BLOCK_BYTES,
 * at least one batch. */
static int io_block_images(int max_images, int H, int W, int C, int with_var) {
  size_t per = (size_t)H * W * sizeof(float) * (1 + (size_t)C * (with_var ? 2 : 1));
  size_t n = SD_SEGMENT_IO_BLOCK_BYTES / (per ? per : 1);
  n = n / (size_t)max_images * (size_t)max_images;
  if (n < (size_t)max_images)
    n = (size_t)max_images;
  return n > (1 << 20) ? (1 << 20) : (int)n;
}

/* Tests only (SD_FAULT_SEGMENT_RANK=R): rank R fails its second job as a write error would. */
static int fault_rank(void) {
  const char *e = getenv("SD_FAULT_SEGMENT_RANK");
  return e && *e ? atoi(e) : -1;
}

static int round_up(int v, int a) {
  return (v + a - 1) / a * a;
}

/* Independent strided read of image i for its robust statistics (at most 2^20 samples). */
static sd_status frame_stats(hid_t ds, hid_t fs, int64_t i, int H, int W, float *buf, float *med,
                             float *scale) {
  int s = sd_seg_sample_stride(H, W, (int64_t)1 << 20);
  hsize_t start[3] = {(hsize_t)i, 0, 0}, stride[3] = {1, (hsize_t)s, (hsize_t)s};
  hsize_t count[3] = {1, (hsize_t)((H + s - 1) / s), (hsize_t)((W + s - 1) / s)};
  hsize_t n = count[1] * count[2];
  hid_t ms = H5Screate_simple(1, &n, NULL);
  sd_status st = SD_OK;
  if (ms < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, stride, count, NULL) < 0 ||
      H5Dread(ds, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, buf) < 0)
    st = SD_H5_ERROR(SD_ERR_IO, "cannot read image %lld for its statistics", (long long)i);
  sd_h5_close(&ms);
  if (st == SD_OK)
    sd_seg_robust_stats(buf, (size_t)n, med, scale);
  return st;
}

/* ---- overlays ---------------------------------------------------------------------------- */

static void class_colour(int c, double rgb[3]) {
  static const double pal[][3] = {{0.90, 0.10, 0.10}, {0.10, 0.60, 1.00}, {0.10, 0.85, 0.20},
                                  {1.00, 0.80, 0.00}, {0.85, 0.20, 0.90}, {1.00, 0.50, 0.05},
                                  {0.00, 0.90, 0.90}, {0.60, 0.40, 0.20}};
  const double *p = pal[(c - 1) % 8];
  rgb[0] = p[0];
  rgb[1] = p[1];
  rgb[2] = p[2];
}

/* black -> red -> yellow -> white for t in [0, 1] */
static void heat_colour(double t, double rgb[3]) {
  t = t < 0 ? 0 : t > 1 ? 1 : t;
  rgb[0] = t * 3 > 1 ? 1 : t * 3;
  rgb[1] = t * 3 - 1 < 0 ? 0 : t * 3 - 1 > 1 ? 1 : t * 3 - 1;
  rgb[2] = t * 3 - 2 < 0 ? 0 : t * 3 - 2;
}

/* Rank 0: PNG of image idx: grey image (robust-normalised, clipped at +-3), each defect
 * class's probability as its colour with alpha = p, legend; with MC dropout (with_var) a second
 * panel shows the pixel's total predictive variance (the sum over classes of /variance) on a
 * heat scale from 0 to the image's largest value. Frames larger than 1024 px are read with a
 * stride; small ones are enlarged to about 384 px. */
static sd_status write_overlay(const char *dir, const char *stack_path, const char *heat_path,
                               int64_t idx, int H, int W, int C, char names[][64], int32_t label,
                               int with_var) {
  int s = 1;
  while ((H + s - 1) / s > 1024 || (W + s - 1) / s > 1024)
    s++;
  int h = (H + s - 1) / s, w = (W + s - 1) / s;
  int z = 1;
  while (h * (z + 1) <= 384 && w * (z + 1) <= 384)
    z++;
  float *img = sd_malloc((size_t)h * w, sizeof *img, "overlay image");
  float *hm = sd_malloc((size_t)C * h * w, sizeof *hm, "overlay heatmaps");
  float *var = with_var ? sd_malloc((size_t)C * h * w, sizeof *var, "overlay variance") : NULL;
  sd_status st = (img && hm && (!with_var || var)) ? SD_OK : SD_ERR_NOMEM;
  hid_t f1 = -1, f2 = -1, d1 = -1, d2 = -1, s1 = -1, s2 = -1, m1 = -1, m2 = -1, d3 = -1;
  if (st == SD_OK) {
    f1 = H5Fopen(stack_path, H5F_ACC_RDONLY, H5P_DEFAULT);
    f2 = H5Fopen(heat_path, H5F_ACC_RDONLY, H5P_DEFAULT);
    d1 = f1 >= 0 ? H5Dopen2(f1, "images", H5P_DEFAULT) : -1;
    d2 = f2 >= 0 ? H5Dopen2(f2, "heatmaps", H5P_DEFAULT) : -1;
    s1 = d1 >= 0 ? H5Dget_space(d1) : -1;
    s2 = d2 >= 0 ? H5Dget_space(d2) : -1;
    hsize_t a[3] = {(hsize_t)idx, 0, 0}, as[3] = {1, (hsize_t)s, (hsize_t)s},
            ac[3] = {1, (hsize_t)h, (hsize_t)w};
    hsize_t b[4] = {(hsize_t)idx, 0, 0, 0}, bs[4] = {1, 1, (hsize_t)s, (hsize_t)s};
    hsize_t bc[4] = {1, (hsize_t)C, (hsize_t)h, (hsize_t)w};
    hsize_t n1 = (hsize_t)h * w, n2 = (hsize_t)C * h * w;
    m1 = H5Screate_simple(1, &n1, NULL);
    m2 = H5Screate_simple(1, &n2, NULL);
    if (s1 < 0 || s2 < 0 || H5Sselect_hyperslab(s1, H5S_SELECT_SET, a, as, ac, NULL) < 0 ||
        H5Sselect_hyperslab(s2, H5S_SELECT_SET, b, bs, bc, NULL) < 0 ||
        H5Dread(d1, H5T_NATIVE_FLOAT, m1, s1, H5P_DEFAULT, img) < 0 ||
        H5Dread(d2, H5T_NATIVE_FLOAT, m2, s2, H5P_DEFAULT, hm) < 0)
      st = SD_H5_ERROR(SD_ERR_IO, "cannot read image %lld for its overlay", (long long)idx);
    /* /variance has the shape of /heatmaps: the same selection */
    d3 = st == SD_OK && with_var ? H5Dopen2(f2, "variance", H5P_DEFAULT) : -1;
    if (st == SD_OK && with_var &&
        (d3 < 0 || H5Dread(d3, H5T_NATIVE_FLOAT, m2, s2, H5P_DEFAULT, var) < 0))
      st = SD_H5_ERROR(SD_ERR_IO, "cannot read %s:/variance of image %lld for its overlay",
                       heat_path, (long long)idx);
  }
  hid_t ids[] = {m1, m2, s1, s2, d3, d1, d2, f1, f2};
  for (int i = 0; i < 9; i++)
    sd_h5_close(&ids[i]);
  if (st != SD_OK) {
    free(img);
    free(hm);
    free(var);
    return st;
  }
  /* total predictive variance per pixel, into var[0 .. h*w) */
  double umax = 0;
  for (size_t p = 0; with_var && p < (size_t)h * w; p++) {
    double u = 0;
    for (int c = 0; c < C; c++)
      u += var[(size_t)c * h * w + p];
    var[p] = (float)u;
    umax = u > umax ? u : umax;
  }
  float *tmp = sd_malloc((size_t)h * w, sizeof *tmp, "overlay");
  float med = 0, sc = 1;
  if (tmp) {
    memcpy(tmp, img, (size_t)h * w * sizeof *tmp);
    sd_seg_robust_stats(tmp, (size_t)h * w, &med, &sc);
    free(tmp);
  }
  int legend = 170;
  const int vx = w * z + 10;                    /* left edge of the variance panel */
  const int lx = with_var ? vx + w * z : w * z; /* left edge of the legend */
  int PW = lx + legend, PH = h * z + 40;
  if (PH < 40 + 22 * C)
    PH = 40 + 22 * C;
  cairo_surface_t *sf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, PW, PH);
  unsigned char *px = cairo_image_surface_get_data(sf);
  int stride = cairo_image_surface_get_stride(sf);
  cairo_surface_flush(sf);
  memset(px, 255, (size_t)stride * PH);
  for (int y = 0; y < h * z; y++)
    for (int x = 0; x < w * z; x++) {
      size_t p = (size_t)(y / z) * w + (size_t)(x / z);
      double g = ((img[p] - med) * sc + 3.0) / 6.0;
      g = g < 0 ? 0 : g > 1 ? 1 : g;
      double rgb[3] = {g, g, g};
      for (int c = 1; c < C; c++) {
        double a = hm[(size_t)c * h * w + p], col[3];
        if (!(a > 0.05))
          continue;
        a = a > 1 ? 1 : a;
        class_colour(c, col);
        for (int q = 0; q < 3; q++)
          rgb[q] = (1 - 0.7 * a) * rgb[q] + 0.7 * a * col[q];
      }
      uint32_t *o = (uint32_t *)(px + (size_t)(y + 40) * stride) + x;
      *o = ((uint32_t)(rgb[0] * 255) << 16) | ((uint32_t)(rgb[1] * 255) << 8) |
           (uint32_t)(rgb[2] * 255);
      if (!with_var)
        continue;
      heat_colour(umax > 0 ? var[p] / umax : 0, rgb);
      o = (uint32_t *)(px + (size_t)(y + 40) * stride) + vx + x;
      *o = ((uint32_t)(rgb[0] * 255) << 16) | ((uint32_t)(rgb[1] * 255) << 8) |
           (uint32_t)(rgb[2] * 255);
    }
  cairo_surface_mark_dirty(sf);
  cairo_t *cr = cairo_create(sf);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 12);
  cairo_set_source_rgb(cr, 0, 0, 0);
  char buf[160];
  snprintf(buf, sizeof buf, "image %lld (%dx%d)%s%s", (long long)idx, W, H,
           label >= 0 && label < C ? " label: " : "", label >= 0 && label < C ? names[label] : "");
  cairo_move_to(cr, 6, 16);
  cairo_show_text(cr, buf);
  cairo_move_to(cr, 6, 32);
  cairo_show_text(cr, "colour = class probability (alpha)");
  if (with_var) {
    snprintf(buf, sizeof buf, "MC-dropout variance (sum over classes), 0 .. %.3g", umax);
    cairo_move_to(cr, vx, 32);
    cairo_show_text(cr, buf);
  }
  for (int c = 1; c < C; c++) {
    double col[3];
    class_colour(c, col);
    int ly = 40 + 22 * (c - 1);
    cairo_set_source_rgb(cr, col[0], col[1], col[2]);
    cairo_rectangle(cr, lx + 10, ly + 4, 14, 14);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_move_to(cr, lx + 30, ly + 16);
    cairo_show_text(cr, names[c]);
  }
  cairo_destroy(cr);
  char path[8192], tmpp[8300];
  snprintf(path, sizeof path, "%s/overlay_%05lld.png", dir, (long long)idx);
  snprintf(tmpp, sizeof tmpp, "%s.tmp-%ld", path, (long)getpid());
  cairo_status_t cs = cairo_surface_write_to_png(sf, tmpp);
  cairo_surface_destroy(sf);
  free(img);
  free(hm);
  free(var);
  if (cs != CAIRO_STATUS_SUCCESS || rename(tmpp, path) != 0) {
    unlink(tmpp);
    return SD_ERROR(SD_ERR_IO, "cannot write overlay %s", path);
  }
  sd_log_info("segment: overlay %s", path);
  return SD_OK;
}

/* ---- the command --------------------------------------------------------------------------- */

static sd_status segment_run(sd_app *app) {
  const sd_config *cfg = app->cfg;
  const char *model = sd_config_string(cfg, "segment.model");
  const char *data = sd_config_string(cfg, "segment.data");
  const char *output = sd_config_string(cfg, "segment.output");
  const char *odir = sd_config_string(cfg, "segment.overlay");
  int tile = (int)sd_config_int(cfg, "segment.tile");
  int overlap = (int)sd_config_int(cfg, "segment.overlap");
  int batch = (int)sd_config_int(cfg, "segment.batch");
  const int mc_samples = (int)sd_config_int(cfg, "segment.mc_samples");
  const uint64_t mc_seed = (uint64_t)sd_config_int(cfg, "segment.mc_seed");
  if (!*data)
    return SD_ERROR(SD_ERR_ARG, "no data: give --data STACK");
  if (!*output)
    return SD_ERROR(SD_ERR_ARG, "no output: give --output heatmaps.h5");
  sd_profile_stage_begin("segment");
  double t_start = sd_time_now(), t_setup = t_start, t_files = t_start, t_loop = t_start;

  sd_nn_model *m = NULL;
  sd_ckpt_state state;
  memset(&state, 0, sizeof state);
  sd_stack *stack = NULL;
  sd_seg_tiler tl;
  memset(&tl, 0, sizeof tl);
  int32_t *labels = NULL;
  seg_job *jobs = NULL;
  float *rows = NULL, *outb = NULL, *varb = NULL, *sbuf = NULL, *fmed = NULL, *fsc = NULL;
  hid_t fin = -1, din = -1, sin = -1, fout = -1, dout = -1, sout = -1, dl = -1, sl = -1, dx = -1;
  hid_t dvar = -1, fdev = -1, ddev = -1, sdev = -1;
  char *tmp = NULL;
  int64_t nlocal = 0, n_images = 0;
  double in_bytes = 0;
  sd_status st;

  int is_unet = 0;
  SD_CHECK_GOTO(st, sd_segment_model_is_unet(app->comm, model, &is_unet), done);
  if (!is_unet) {
    st = SD_ERROR(
        SD_ERR_ARG,
        "%s is a classifier model, not a U-Net: segment needs a model from `train --task segment`",
        model);
    goto done;
  }
  int mc, mh, mw;
  SD_CHECK_GOTO(st, sd_ckpt_open_model(app->comm, model, &m, &mc, &mh, &mw, &state), done);
  const int depth = sd_unet_depth(m), align = 1 << depth;
  if (tile % align != 0) {
    st = SD_ERROR(SD_ERR_CONFIG, "segment.tile = %d must be a multiple of 2^depth = %d for %s",
                  tile, align, model);
    goto done;
  }
  SD_CHECK_GOTO(st, sd_stack_open(app->comm, data, &stack), done);
  const sd_stack_info *in = sd_stack_get_info(stack);
  const int64_t N = in->n;
  n_images = N;
  in_bytes = (double)N * in->height * in->width * 4;
  const int H = in->height, W = in->width, C = state.num_classes;
  if (in->num_classes != 0 && in->num_classes != C)
    sd_log_warn("%s has %d classes but %s was trained on %d: heatmap channels follow the model",
                data, in->num_classes, model, C);
  for (int i = 0; *odir && i < sd_config_list_length(cfg, "segment.overlay_images"); i++) {
    const char *s = sd_config_list_item(cfg, "segment.overlay_images", i);
    char *end = NULL;
    long long idx = strtoll(s, &end, 10);
    if (!end || end == s || *end || idx < 0 || idx >= N) {
      st =
          SD_ERROR(SD_ERR_ARG, "segment.overlay_images: '%s' is not an image index of %s (0..%lld)",
                   s, data, (long long)N - 1);
      goto done;
    }
  }
  labels = sd_malloc((size_t)(N ? N : 1), sizeof *labels, "labels");
  st = sd_par_agree(app->comm, labels ? SD_OK : SD_ERR_NOMEM);
  if (st == SD_OK)
    st = sd_stack_read(stack, 0, N, NULL, labels, NULL);
  sd_stack_close(&stack, 0);
  if (st != SD_OK)
    goto done;
  const int th = H <= tile ? round_up(H, align) : tile, tw = W <= tile ? round_up(W, align) : tile;
  if ((H > tile || W > tile) && overlap > tile - align) {
    /* tiles must advance by at least one pooling cell */
    st = SD_ERROR(SD_ERR_CONFIG,
                  "segment.overlap = %d is too large for segment.tile = %d: the %dx%d frames of %s "
                  "are tiled, and the overlap must be at most the tile minus 2^depth = %d (e.g. "
                  "--overlap %d)",
                  overlap, tile, W, H, data, tile - align, tile / 4 / align * align);
    goto done;
  }
  const int cin = mc == 2 ? 2 : 1; /* 2: the image and its deviation from the bulk lattice */
  const char *devpath = sd_config_string(cfg, "segment.deviation");
  if (cin == 2 && !*devpath) {
    st = sd_segment_need_deviation(model, data);
    goto done;
  }
  sd_nn_model_set_inference_only(m, 1);
  SD_CHECK_GOTO(st, sd_nn_model_compile(m, batch, cin, th, tw), done);
  SD_CHECK_GOTO(st, sd_ckpt_load_params(app->comm, model, m, 1, 0, NULL), done);
  if (mc_samples > 0 && sd_nn_model_first_dropout(m) < 0) {
    st = SD_ERROR(SD_ERR_CONFIG,
                  "segment.mc_samples = %d needs a model with dropout, but %s has no dropout layer "
                  "(train it with segmenter.dropout > 0, or set segment.mc_samples = 0)",
                  mc_samples, model);
    goto done;
  }
  SD_CHECK_GOTO(st, sd_par_agree(app->comm, sd_seg_tiler_create(&tl, m, H, W, overlap, align)),
                done);
  if (mc_samples > 0)
    SD_CHECK_GOTO(st, sd_par_agree(app->comm, sd_seg_tiler_set_mc(&tl, mc_samples, mc_seed)), done);
  const int normalize = !strcmp(state.normalization, "robust_zscore");

  /* this rank's images and its jobs */
  int64_t first, count;
  sd_shard_range(N, app->rank, app->size, &first, &count);
  nlocal = count;
  /* frames that are one tile: a job is a block of whole frames, read and written with one
   * call each and inferred batch by batch (few, large transfers) */
  const int blk = tl.max_images > 1 ? io_block_images(tl.max_images, H, W, C, mc_samples > 0) : 1;
  int64_t njobs = tl.max_images > 1 ? (count + blk - 1) / blk : count * tl.ny;
  jobs = sd_malloc((size_t)(njobs ? njobs : 1), sizeof *jobs, "jobs");
  int rmax = tl.max_images > 1 ? H : tl.th; /* input rows per job and frame */
  /* the I/O blocks (up to 32 MB) on huge pages: first touches of 4 KB pages are slow on VMs */
  rows = sd_calloc_huge((size_t)blk * cin * rmax * W, sizeof *rows, (size_t)4 << 20,
                        "input rows");
  const size_t out_rows = (size_t)blk * C * (tl.max_images > 1 ? H : tl.th) * W;
  outb = sd_calloc_huge(out_rows, sizeof *outb, (size_t)4 << 20, "output rows");
  varb = mc_samples > 0 ? sd_calloc_huge(out_rows, sizeof *varb, (size_t)4 << 20, "variance rows")
                        : NULL;
  int ss = sd_seg_sample_stride(H, W, (int64_t)1 << 20);
  sbuf = sd_malloc((size_t)((H + ss - 1) / ss) * ((W + ss - 1) / ss) +
                       (size_t)H * W * (tl.max_images > 1),
                   sizeof *sbuf, "statistics sample");
  fmed = sd_malloc((size_t)blk, sizeof *fmed, "statistics");
  fsc = sd_malloc((size_t)blk, sizeof *fsc, "statistics");
  st = (jobs && rows && outb && (mc_samples == 0 || varb) && sbuf && fmed && fsc) ? SD_OK
                                                                                  : SD_ERR_NOMEM;
  for (int64_t j = 0, i = first; st == SD_OK && i < first + count;) {
    if (tl.max_images > 1) {
      int n = (int)(first + count - i < blk ? first + count - i : blk);
      jobs[j++] = (seg_job){i, n, 0};
      i += n;
    } else {
      for (int k = 0; k < tl.ny; k++)
        jobs[j++] = (seg_job){i, 1, k};
      i++;
    }
  }
  st = sd_par_agree(app->comm, st);
  if (st != SD_OK)
    goto done;

  t_setup = sd_time_now();
  /* files: input stack (MPI-IO, read-only) and the output under a temporary name */
  SD_CHECK_GOTO(st, sd_par_agree(app->comm, sd_h5_file_open(app->comm, data, 0, &fin)), done);
  /* the rows are read independently (below): the chunk-index lookups of /images must then not
   * be collective metadata reads */
  hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
  if (dapl >= 0)
    H5Pset_all_coll_metadata_ops(dapl, 0);
  din = dapl >= 0 ? H5Dopen2(fin, "images", dapl) : -1;
  sin = din >= 0 ? H5Dget_space(din) : -1;
  st = sd_par_agree(app->comm,
                    sin >= 0 ? SD_OK : SD_H5_ERROR(SD_ERR_FORMAT, "cannot open %s:/images", data));
  if (st == SD_OK && cin == 2) {
    /* the second input channel: the rows of the deviation file, read like the images */
    int has = 0;
    st = sd_segment_open_deviation(app->comm, devpath, N, H, W, 1, dapl, &fdev, &ddev, &has);
    sdev = st == SD_OK ? H5Dget_space(ddev) : -1;
    if (st == SD_OK && sdev < 0)
      st = SD_H5_ERROR(SD_ERR_FORMAT, "cannot read the shape of %s:/deviation", devpath);
    st = sd_par_agree(app->comm, st);
  }
  sd_h5_close(&dapl);
  if (st != SD_OK)
    goto done;
  if (app->rank == 0) {
    tmp = sd_malloc(strlen(output) + 64, 1, "temporary name");
    if (tmp)
      snprintf(tmp, strlen(output) + 64, "%s.tmp-%ld", output, (long)getpid());
  }
  st = sd_par_agree(app->comm, app->rank != 0 || tmp ? SD_OK : SD_ERR_NOMEM);
  if (st == SD_OK)
    st = sd_par_agree(app->comm, sd_par_bcast_string(app->comm, &tmp, 0));
  if (st != SD_OK)
    goto done;
  sd_par_tmpfile_register(tmp);
  st = sd_par_agree(app->comm, sd_h5_file_create(app->comm, tmp, &fout));
  if (st != SD_OK) {
    st = SD_ERROR(st, "cannot create %s (is its folder writable?): %s", output, sd_error_message());
    goto done;
  }
  hsize_t hd[4] = {(hsize_t)N, (hsize_t)C, (hsize_t)H, (hsize_t)W}, ld[1] = {(hsize_t)N};
  sout = H5Screate_simple(4, hd, NULL);
  dout = sout >= 0 ? H5Dcreate2(fout, "heatmaps", H5T_IEEE_F32LE, sout, H5P_DEFAULT, H5P_DEFAULT,
                                H5P_DEFAULT)
                   : -1;
  sl = H5Screate_simple(1, ld, NULL);
  dl = sl >= 0
           ? H5Dcreate2(fout, "labels", H5T_STD_I32LE, sl, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)
           : -1;
  if (mc_samples > 0 && sout >= 0)
    dvar =
        H5Dcreate2(fout, "variance", H5T_IEEE_F32LE, sout, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  st = (dout >= 0 && dl >= 0 && (mc_samples == 0 || dvar >= 0))
           ? SD_OK
           : SD_H5_ERROR(SD_ERR_HDF5, "cannot create the datasets of %s", output);
  if (st == SD_OK)
    st = sd_h5_dxpl_collective(&dx);
  const char *names[SD_CKPT_MAX_CLASSES];
  for (int c = 0; c < C; c++)
    names[c] = state.class_names[c];
  if (st == SD_OK)
    st = sd_h5_attr_write_strings(dout, "class_names", C, names);
  if (st == SD_OK)
    st = sd_h5_attr_write_strings(dl, "class_names", C, names);
  if (st == SD_OK)
    st = sd_h5_attr_write_string(
        dout, "meaning",
        mc_samples > 0
            ? "per-class probabilities (softmax of the U-Net), mean over mc_samples Monte "
              "Carlo dropout passes, [image, channel, y, x]; channel 0 = background (bulk), "
              "channel c = class c; channels sum to 1"
            : "per-class probabilities (softmax of the U-Net), [image, channel, y, x]; "
              "channel 0 = background (bulk), channel c = class c; channels sum to 1");
  if (st == SD_OK)
    st = sd_h5_attr_write_int(dout, "mc_samples", mc_samples);
  if (st == SD_OK && mc_samples > 0)
    st = sd_h5_attr_write_strings(dvar, "class_names", C, names);
  if (st == SD_OK && mc_samples > 0)
    st = sd_h5_attr_write_string(
        dvar, "meaning",
        "per-class variance of the softmax probabilities over mc_samples Monte Carlo dropout "
        "passes (dropout active, batch norm in eval mode; divided by mc_samples), computed per "
        "tile and blended like /heatmaps, [image, channel, y, x]; sum over channels = total "
        "predictive variance of the pixel");
  if (st == SD_OK && mc_samples > 0)
    st = sd_h5_attr_write_int(dvar, "mc_samples", mc_samples);
  if (st == SD_OK && mc_samples > 0)
    st = sd_h5_attr_write_i64(dvar, "mc_seed", (int64_t)mc_seed);
  if (st == SD_OK)
    st = sd_h5_attr_write_string(dout, "model", model);
  if (st == SD_OK)
    st = sd_h5_attr_write_string(dout, "data", data);
  if (st == SD_OK)
    st = sd_h5_attr_write_string(dout, "normalization", state.normalization);
  if (st == SD_OK)
    st = sd_h5_attr_write_int(dout, "tile_height", th);
  if (st == SD_OK)
    st = sd_h5_attr_write_int(dout, "tile_width", tw);
  if (st == SD_OK)
    st = sd_h5_attr_write_int(dout, "tile_overlap", overlap);
  if (st == SD_OK)
    st = sd_h5_attr_write_int(dout, "tiles_per_frame", tl.ny * tl.nx);
  if (st == SD_OK)
    st = sd_h5_attr_write_string(
        dl, "meaning", "image-level class of each image, copied from the stack (-1 = unknown)");
  if (st == SD_OK)
    st = sd_h5_dataset_write_strings(fout, "class_names", C, names, dx, app->rank);
  if (st == SD_OK)
    st = sd_h5_write_provenance(fout, &app->prov, app->size);
  if (st == SD_OK) {
    /* labels: rank 0 writes all, the others select nothing */
    hid_t ms = H5Screate_simple(1, ld, NULL);
    if (app->rank != 0) {
      H5Sselect_none(ms);
      H5Sselect_none(sl);
    } else
      H5Sselect_all(sl);
    if (H5Dwrite(dl, H5T_NATIVE_INT32, ms, sl, dx, labels) < 0)
      st = SD_H5_ERROR(SD_ERR_IO, "cannot write %s:/labels", output);
    sd_h5_close(&ms);
  }
  st = sd_par_agree(app->comm, st);
  if (st != SD_OK)
    goto done;
  sd_log_info("segment: %lld image(s) of %dx%d, %d classes, tiles %dx%d (%d per frame, overlap >= "
              "%d), batch %d, %d rank(s)",
              (long long)N, W, H, C, tw, th, tl.ny * tl.nx, overlap, batch, app->size);
  if (mc_samples > 0)
    sd_log_info("segment: MC dropout, %d passes per tile (seed %llu): /heatmaps = their mean, "
                "/variance = their per-class variance",
                mc_samples, (unsigned long long)mc_seed);

  /* the jobs: every rank reads its rows and writes its heatmaps with independent transfers
   * at its own pace, so one rank's writing overlaps the other ranks' inference (buffered
   * writes to one file are serialised by the file system's inode lock: collective rounds
   * made every rank wait for all writes of the round). Nothing collective happens in the
   * loop: a rank that fails stops, and all agree after it. */
  t_files = sd_time_now();
  hid_t dxi = H5Pcreate(H5P_DATASET_XFER);
  if (dxi < 0 || H5Pset_dxpl_mpio(dxi, H5FD_MPIO_INDEPENDENT) < 0)
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot set independent MPI-IO transfers");
  double t_io = 0, t_cmp = 0;
  int64_t next_log = njobs / 10 > 0 ? njobs / 10 : 1;
  /* the loop has no collective: the watch lets all ranks leave together (sd_par_watch) */
  sd_par_watch watch;
  sd_par_watch_init(&watch, app->comm);
  const int fault = fault_rank();
  for (int64_t r = 0;; r++) {
    const int working = st == SD_OK && r < njobs;
    if (!working) {
      /* failed or finished: wait for the rounds until all leave */
      while (!sd_par_watch_poll(&watch, st != SD_OK, 0, 1)) {
      }
      break;
    }
    if (sd_par_watch_poll(&watch, 0, 1, 0)) {
      /* another rank failed (this one still had work): stop here; the agreement below
       * carries that rank's status and message to everyone */
      sd_log_debug("segment: rank %d stops after %lld of its %lld jobs: another rank failed",
                   app->rank, (long long)r, (long long)njobs);
      break;
    }
    seg_job *jb = &jobs[r];
    int r0 = 0, r1 = 0, f0 = 0, f1 = 0;
    if (tl.max_images == 1 && jb->k == 0) {
      double t = sd_profile_phase_begin();
      st = normalize ? frame_stats(din, sin, jb->img, H, W, sbuf, &fmed[0], &fsc[0]) : SD_OK;
      sd_profile_phase_end(SD_PHASE_IO, t);
    }
    sd_seg_tiler_rows_in(&tl, jb->k, &r0, &r1);
    sd_seg_tiler_rows_out(&tl, jb->k, &f0, &f1);
    /* read rows [r0, r1) of the job's frames */
    double t = sd_time_now();
    hsize_t rs[3] = {(hsize_t)jb->img, (hsize_t)r0, 0};
    hsize_t rc[3] = {(hsize_t)jb->nimg, (hsize_t)(r1 - r0), (hsize_t)W};
    hsize_t rn = rc[0] * rc[1] * rc[2];
    /* memory [nimg, cin, rows, W]: the images into channel 0, the deviation into 1 */
    hsize_t md[4] = {rc[0] ? rc[0] : 1, (hsize_t)cin, rc[1] ? rc[1] : 1, (hsize_t)W};
    hsize_t m0[4] = {0, 0, 0, 0}, mcnt[4] = {rc[0], 1, rc[1], rc[2]};
    hid_t ms = H5Screate_simple(4, md, NULL);
    sd_status lst = st;
    for (int c = 0; c < cin && lst == SD_OK; c++) {
      m0[1] = (hsize_t)c;
      H5Sselect_hyperslab(ms, H5S_SELECT_SET, m0, NULL, mcnt, NULL);
      hid_t dset = c ? ddev : din, fsp = c ? sdev : sin;
      H5Sselect_hyperslab(fsp, H5S_SELECT_SET, rs, NULL, rc, NULL);
      if (H5Dread(dset, H5T_NATIVE_FLOAT, ms, fsp, dxi, rows) < 0)
        lst = SD_H5_ERROR(SD_ERR_IO, "cannot read rows of %s:/%s", c ? devpath : data,
                          c ? "deviation" : "images");
    }
    sd_h5_close(&ms);
    t_io += sd_time_now() - t;
    sd_profile_add_bytes(SD_PHASE_IO, (int64_t)rn * 4 * cin);
    /* normalise, infer */
    t = sd_time_now();
    if (lst == SD_OK) {
      size_t per = (size_t)(r1 - r0) * W;
      for (int i = 0; i < jb->nimg; i++) {
        float *p = rows + (size_t)i * cin * per; /* channel 0: the image */
        if (!normalize)
          continue;
        if (tl.max_images > 1) {
          /* whole frames in memory: statistics from the frame's sample grid */
          size_t ns = 0;
          for (int y = 0; y < H; y += ss)
            for (int x = 0; x < W; x += ss)
              sbuf[ns++] = p[(size_t)y * W + x];
          sd_seg_robust_stats(sbuf, ns, &fmed[i], &fsc[i]);
        }
        float med = tl.max_images > 1 ? fmed[i] : fmed[0];
        float inv = tl.max_images > 1 ? fsc[i] : fsc[0];
        for (size_t q = 0; q < per; q++)
          p[q] = (p[q] - med) * inv;
      }
      if (tl.max_images > 1) {
        const size_t in_per = (size_t)cin * H * W, out_per = (size_t)C * H * W;
        for (int b0 = 0; b0 < jb->nimg && lst == SD_OK; b0 += tl.max_images) {
          int nb = jb->nimg - b0 < tl.max_images ? jb->nimg - b0 : tl.max_images;
          lst = sd_seg_tiler_row(&tl, rows + (size_t)b0 * in_per, nb, jb->img + b0, 0,
                                 outb + (size_t)b0 * out_per,
                                 varb ? varb + (size_t)b0 * out_per : NULL);
        }
      } else {
        lst = sd_seg_tiler_row(&tl, rows, jb->nimg, jb->img, jb->k, outb, varb);
      }
    }
    t_cmp += sd_time_now() - t;
    /* write the final rows [f0, f1) of every channel */
    t = sd_time_now();
    hsize_t ws[4] = {(hsize_t)jb->img, 0, (hsize_t)f0, 0};
    hsize_t wc[4] = {(hsize_t)jb->nimg, (hsize_t)C, (hsize_t)(f1 - f0), (hsize_t)W};
    hsize_t wn = wc[0] * wc[1] * wc[2] * wc[3], wn1 = wn ? wn : 1;
    ms = H5Screate_simple(1, &wn1, NULL);
    if (lst == SD_OK) {
      H5Sselect_hyperslab(sout, H5S_SELECT_SET, ws, NULL, wc, NULL);
      if (H5Dwrite(dout, H5T_NATIVE_FLOAT, ms, sout, dxi, outb) < 0)
        lst = SD_H5_ERROR(SD_ERR_IO, "cannot write rows of %s:/heatmaps", output);
      if (lst == SD_OK && mc_samples > 0 &&
          H5Dwrite(dvar, H5T_NATIVE_FLOAT, ms, sout, dxi, varb) < 0)
        lst = SD_H5_ERROR(SD_ERR_IO, "cannot write rows of %s:/variance", output);
    }
    sd_h5_close(&ms);
    t_io += sd_time_now() - t;
    sd_profile_add_bytes(SD_PHASE_IO, (int64_t)wn * 4);
    if (lst == SD_OK && app->rank == fault && r == 1)
      lst = SD_ERROR(SD_ERR_IO,
                     "cannot write rows of %s:/heatmaps (fault injected by "
                     "SD_FAULT_SEGMENT_RANK for tests)",
                     output);
    st = lst;
    if (st == SD_OK && app->rank == 0 && (r + 1) % next_log == 0 && njobs >= 10)
      sd_log_info("segment: %lld%% (%.1f s)", (long long)(100 * (r + 1) / njobs),
                  sd_time_now() - t_start);
  }
  sd_h5_close(&dxi);
  st = sd_par_agree(app->comm, st);
  t_loop = sd_time_now();
  sd_profile_phase_end(SD_PHASE_IO, sd_time_now() - t_io);
  sd_profile_phase_end(SD_PHASE_COMPUTE, sd_time_now() - t_cmp);

done:;
  hid_t ids[] = {dx, dvar, dl, sl, dout, sout, sin, din, fin, sdev, ddev, fdev};
  for (int i = 0; i < 12; i++)
    sd_h5_close(&ids[i]);
  if (fout >= 0 && H5Fclose(fout) < 0 && st == SD_OK)
    st = SD_H5_ERROR(SD_ERR_IO, "cannot close %s", output);
  st = sd_par_agree(app->comm, st);
  if (tmp) {
    sd_status rs = SD_OK;
    if (app->rank == 0) {
      if (st == SD_OK && rename(tmp, output) != 0)
        rs = SD_ERROR(SD_ERR_IO, "cannot rename %s to %s: %s", tmp, output, strerror(errno));
      if (st != SD_OK || rs != SD_OK)
        unlink(tmp);
    }
    sd_par_tmpfile_unregister(tmp);
    rs = sd_par_agree(app->comm, rs);
    if (st == SD_OK)
      st = rs;
  }
  double secs = sd_time_now() - t_start;
  if (st == SD_OK)
    sd_log_debug("segment: rank %d: model, labels and buffers %.3f s, opening and creating the "
                 "files %.3f s, jobs %.3f s, closing %.3f s",
                 app->rank, t_setup - t_start, t_files - t_setup, t_loop - t_files,
                 sd_time_now() - t_loop);
  if (st == SD_OK) {
    double v[2] = {(double)sd_peak_rss_bytes(), 0};
    sd_par_allreduce_max_double(app->comm, v, 1);
    sd_log_info("segment: heatmaps of %lld image(s) written to %s in %.2f s (%.2f images/s, %.2f "
                "MB/s of input images); peak RSS per rank %.1f MB",
                (long long)n_images, output, secs, secs > 0 ? (double)n_images / secs : 0,
                secs > 0 ? in_bytes / 1048576.0 / secs : 0, v[0] / 1048576.0);
  }
  /* overlays (rank 0 reads the finished files without MPI-IO) */
  if (st == SD_OK && *odir) {
    sd_status ost = SD_OK;
    if (app->rank == 0) {
      if (mkdir(odir, 0777) != 0 && errno != EEXIST)
        ost = SD_ERROR(SD_ERR_IO, "cannot create overlay folder %s: %s", odir, strerror(errno));
      int n = sd_config_list_length(cfg, "segment.overlay_images");
      if (n == 0)
        n = -1;
      for (int i = 0; ost == SD_OK && i < (n < 0 ? 1 : n); i++) {
        const char *s = n < 0 ? "0" : sd_config_list_item(cfg, "segment.overlay_images", i);
        long long idx = strtoll(s, NULL, 10); /* checked at the start */
        ost = write_overlay(odir, data, output, idx, tl.H, tl.W, tl.C, state.class_names,
                            labels ? labels[idx] : -1, mc_samples > 0);
      }
    }
    st = sd_par_agree(app->comm, ost);
  }
  sd_profile_stage_end(nlocal);
  free(jobs);
  free(rows);
  free(outb);
  free(varb);
  free(sbuf);
  free(fmed);
  free(fsc);
  free(labels);
  free(tmp);
  sd_seg_tiler_destroy(&tl);
  sd_nn_model_destroy(&m);
  free(state.split);
  sd_stack_close(&stack, 0);
  return st;
}

const sd_command sd_cmd_segment = {
    .name = "segment",
    .summary =
        "per-class defect heatmaps of a stack with a trained U-Net (tiled, sharded over ranks)",
    .usage = "--model unet.h5 --data stack.h5 --output heatmaps.h5 [--deviation pseudo.h5] "
             "[--tile PX] [--overlap PX] [--overlay DIR --overlay-images 0,5,9] "
             "[--mc-samples S [--mc-seed SEED]]",
    .description =
        "Ranks split the stack; each reads its images with parallel HDF5, normalises each frame "
        "as\n"
        "the model was trained (robust z-score), and runs the U-Net on tiles of --tile pixels "
        "that\n"
        "overlap by at least --overlap pixels, blended with a raised-cosine window; frames up to "
        "a\n"
        "tile run whole. Writes /heatmaps float32 [N,C,H,W] (channel 0 = background, c = class c,\n"
        "attribute class_names), /labels and /class_names into one file (each rank its rows), "
        "under a\n"
        "temporary name renamed when complete. --overlay DIR draws PNGs of the chosen images.\n"
        "--mc-samples S (Monte Carlo dropout) runs S passes per tile with dropout active and "
        "batch\n"
        "norm in eval mode: /heatmaps holds their mean, /variance [N,C,H,W] their per-class\n"
        "variance (blended like the heatmaps; masks keyed by image, tile, pass and --mc-seed, so\n"
        "the same at any rank count); overlays gain a panel of the summed variance.\n"
        "A U-Net trained on image + lattice deviation (segmenter.input) also reads the same rows\n"
        "of /deviation from --deviation FILE, the output of `pseudolabel` on this stack.",
    .sections = "segment,general",
    .positional_key = NULL,
    .options = segment_options,
    .run = segment_run,
};
