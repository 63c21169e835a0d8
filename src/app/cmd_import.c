/* cmd_import.c - `stemdefect import`: image files (TIFF, JPEG, PNG) into one HDF5 stack.
 *
 * Rank 0 expands the inputs into a sorted file list and broadcasts it; every rank probes its
 * contiguous share of files (pages and size), the counts are gathered so every rank knows each
 * file's place in the stack; then ranks read and convert their files in batches and write
 * them collectively. Any failure (a corrupt file on one rank) is agreed on before the next
 * collective, the temporary output is removed, and one message names the file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "filelist.h"
#include "stemdefect/image.h"
#include "stemdefect/imgread.h"
#include "stemdefect/log.h"
#include "stemdefect/par.h"
#include "stemdefect/profile.h"

#define SD_IMPORT_BATCH 256 /* images per collective write */

static const sd_cli_option import_options[] = {
    {"--input", "import.input", "PATH", "image file or folder (repeatable; also positional)", 1},
    {"--output", "import.output", "FILE", NULL, 0},
    {"--labels", "import.labels", "MODE", NULL, 0},
    {"--recursive", "import.recursive", NULL, NULL, 0},
    {"--resize", "import.resize", "SIZE", NULL, 0},
    {"--crop", "import.crop", "SIZE", NULL, 0},
    {"--normalize", "import.normalize", "MODE", NULL, 0},
    {NULL, NULL, NULL, NULL, 0}};

typedef struct import_plan {
  sd_filelist files;
  int *pages;      /* [nfiles] */
  int *width;      /* [nfiles] size of the file's pages */
  int *height;     /* [nfiles] */
  int64_t *offset; /* [nfiles] first image index of each file */
  int32_t *label;  /* [nfiles] class index or -1 */
  char **classes;  /* sorted class names */
  int nclasses;
  int64_t n;       /* images */
  int out_h, out_w;
  int first_file, nfile_local; /* this rank's files */
} import_plan;

static void plan_free(import_plan *p) {
  sd_filelist_free(&p->files);
  free(p->pages);
  free(p->width);
  free(p->height);
  free(p->offset);
  free(p->label);
  for (int i = 0; i < p->nclasses; i++) free(p->classes[i]);
  free(p->classes);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Class names (sorted, unique) and each file's label index. All ranks compute the same. */
static sd_status plan_labels(import_plan *p, const char *mode) {
  int nf = p->files.n;
  SD_CHECK((p->label = sd_malloc((size_t)nf, sizeof *p->label, "labels")) ? SD_OK : SD_ERR_NOMEM);
  if (!strcmp(mode, "none")) {
    for (int i = 0; i < nf; i++) p->label[i] = -1;
    return SD_OK;
  }
  char **names = sd_calloc((size_t)nf, sizeof *names, "label names");
  if (!names) return SD_ERR_NOMEM;
  sd_status st = SD_OK;
  for (int i = 0; i < nf && st == SD_OK; i++) {
    char buf[512];
    sd_label_from_path(p->files.paths[i], mode, buf, sizeof buf);
    if (!buf[0]) st = SD_ERROR(SD_ERR_ARG, "%s: cannot derive a class label from its %s", p->files.paths[i], mode);
    else if (!(names[i] = sd_strdup(buf))) st = SD_ERR_NOMEM;
  }
  if (st == SD_OK) {
    char **sorted = sd_malloc((size_t)nf, sizeof *sorted, "class names");
    if (!sorted) st = SD_ERR_NOMEM;
    else {
      memcpy(sorted, names, (size_t)nf * sizeof *sorted);
      qsort(sorted, (size_t)nf, sizeof *sorted, cmp_str);
      p->classes = sd_calloc((size_t)nf, sizeof *p->classes, "class names");
      if (!p->classes) st = SD_ERR_NOMEM;
      for (int i = 0; i < nf && st == SD_OK; i++) {
        if (p->nclasses && !strcmp(p->classes[p->nclasses - 1], sorted[i])) continue;
        if (!(p->classes[p->nclasses] = sd_strdup(sorted[i]))) st = SD_ERR_NOMEM;
        else p->nclasses++;
      }
      free(sorted);
    }
  }
  for (int i = 0; i < nf && st == SD_OK; i++) {
    char **hit = bsearch(&names[i], p->classes, (size_t)p->nclasses, sizeof *p->classes, cmp_str);
    p->label[i] = (int32_t)(hit - p->classes);
  }
  for (int i = 0; i < nf; i++) free(names[i]);
  free(names);
  return st;
}

/* Probes this rank's files; gathers pages and sizes of all files on all ranks. Collective. */
static sd_status plan_probe(sd_app *app, import_plan *p) {
  int nf = p->files.n;
  int64_t first, count;
  sd_shard_range(nf, app->rank, app->size, &first, &count);
  p->first_file = (int)first;
  p->nfile_local = (int)count;
  int *mine = sd_calloc((size_t)(3 * count + 1), sizeof *mine, "probe");
  p->pages = sd_calloc((size_t)nf, sizeof *p->pages, "pages");
  p->width = sd_calloc((size_t)nf, sizeof *p->width, "widths");
  p->height = sd_calloc((size_t)nf, sizeof *p->height, "heights");
  p->offset = sd_calloc((size_t)nf + 1, sizeof *p->offset, "offsets");
  int *all = sd_calloc((size_t)(3 * nf + 1), sizeof *all, "probe");
  int *counts = sd_calloc((size_t)app->size, sizeof *counts, "counts");
  int *displs = sd_calloc((size_t)app->size, sizeof *displs, "displs");
  sd_status st = (mine && p->pages && p->width && p->height && p->offset && all && counts && displs)
                     ? SD_OK
                     : SD_ERR_NOMEM;
  double t = sd_profile_phase_begin();
  for (int64_t i = 0; i < count && st == SD_OK; i++) {
    int np = 0, w = 0, h = 0;
    st = sd_image_file_probe(p->files.paths[first + i], &np, &w, &h);
    mine[3 * i] = np;
    mine[3 * i + 1] = w;
    mine[3 * i + 2] = h;
  }
  sd_profile_phase_end(SD_PHASE_IO, t);
  st = sd_par_agree(app->comm, st);
  if (st == SD_OK) {
    for (int r = 0; r < app->size; r++) {
      int64_t f, c;
      sd_shard_range(nf, r, app->size, &f, &c);
      counts[r] = (int)(3 * c);
      displs[r] = (int)(3 * f);
    }
    t = sd_profile_phase_begin();
    st = sd_par_check(MPI_Allgatherv(mine, (int)(3 * count), MPI_INT, all, counts, displs, MPI_INT,
                                     app->comm),
                      "allgather of file sizes");
    sd_profile_phase_end(SD_PHASE_COMM, t);
  }
  if (st == SD_OK) {
    p->n = 0;
    for (int i = 0; i < nf; i++) {
      p->pages[i] = all[3 * i];
      p->width[i] = all[3 * i + 1];
      p->height[i] = all[3 * i + 2];
      p->offset[i] = p->n;
      p->n += p->pages[i];
    }
    p->offset[nf] = p->n;
  }
  free(mine);
  free(all);
  free(counts);
  free(displs);
  return st;
}

/* Decides the output size; all ranks see the same data so the check is collective-safe. */
static sd_status plan_size(sd_app *app, import_plan *p) {
  int resize = (int)sd_config_int(app->cfg, "import.resize");
  int crop = (int)sd_config_int(app->cfg, "import.crop");
  for (int i = 0; i < p->files.n; i++) {
    if (crop > 0 && (p->width[i] < crop || p->height[i] < crop))
      return SD_ERROR(SD_ERR_ARG, "%s is %dx%d, smaller than the crop size %d", p->files.paths[i],
                      p->width[i], p->height[i], crop);
  }
  if (resize > 0) {
    p->out_h = p->out_w = resize;
  } else if (crop > 0) {
    p->out_h = p->out_w = crop;
  } else {
    p->out_w = p->width[0];
    p->out_h = p->height[0];
    for (int i = 1; i < p->files.n; i++) {
      if (p->width[i] != p->out_w || p->height[i] != p->out_h)
        return SD_ERROR(SD_ERR_ARG,
                        "images differ in size: %s is %dx%d but %s is %dx%d; give --resize SIZE "
                        "or --crop SIZE to import them together",
                        p->files.paths[0], p->out_w, p->out_h, p->files.paths[i], p->width[i],
                        p->height[i]);
    }
  }
  return SD_OK;
}

/* Converts one decoded page into the output geometry (crop, then resize). */
static void fit_page(const sd_image *pg, int crop, int oh, int ow, float *out, float *tmp) {
  const float *src = pg->pixels;
  int h = pg->height, w = pg->width;
  if (crop > 0 && (crop != h || crop != w)) {
    sd_image_crop_center(src, h, w, tmp, crop, crop);
    src = tmp;
    h = w = crop;
  }
  if (h == oh && w == ow)
    memcpy(out, src, (size_t)oh * ow * sizeof *out);
  else
    sd_image_resize(src, h, w, out, oh, ow);
}

static sd_status import_run(sd_app *app) {
  import_plan p;
  memset(&p, 0, sizeof p);
  sd_stack *stack = NULL;
  float *batch = NULL, *tmp = NULL;
  int32_t *labels = NULL;
  char **sources = NULL;
  sd_image *pages = NULL;
  int npages = 0;
  sd_status st = SD_OK;
  const char *out = sd_config_string(app->cfg, "import.output");
  const char *mode = sd_config_string(app->cfg, "import.labels");
  int crop = (int)sd_config_int(app->cfg, "import.crop");
  sd_profile_stage_begin("import");

  /* 1. file list on rank 0, broadcast */
  char *joined = NULL;
  if (app->rank == 0) {
    int nin = sd_config_list_length(app->cfg, "import.input");
    const char **inputs = sd_calloc((size_t)nin + 1, sizeof *inputs, "inputs");
    st = inputs ? SD_OK : SD_ERR_NOMEM;
    for (int i = 0; i < nin && inputs; i++) inputs[i] = sd_config_list_item(app->cfg, "import.input", i);
    if (st == SD_OK) st = sd_filelist_expand(&p.files, inputs, nin, sd_config_bool(app->cfg, "import.recursive"));
    free((void *)inputs);
    if (st == SD_OK && !(joined = sd_filelist_join(&p.files))) st = SD_ERR_NOMEM;
  }
  SD_CHECK_GOTO(st, sd_par_agree(app->comm, st), done);
  SD_CHECK_GOTO(st, sd_par_bcast_string(app->comm, &joined, 0), done);
  if (app->rank != 0) st = sd_filelist_split(&p.files, joined);
  free(joined);
  joined = NULL;
  SD_CHECK_GOTO(st, sd_par_agree(app->comm, st), done);
  sd_log_info("import: %d file(s) into %s on %d rank(s)", p.files.n, out, app->size);

  /* 2. labels, pages, sizes */
  st = plan_labels(&p, mode);
  SD_CHECK_GOTO(st, sd_par_agree(app->comm, st), done);
  SD_CHECK_GOTO(st, plan_probe(app, &p), done);
  SD_CHECK_GOTO(st, plan_size(app, &p), done);
  if (p.n == 0) {
    st = SD_ERROR(SD_ERR_ARG, "the inputs hold no images");
    goto done;
  }

  /* 3. create the stack (collective) */
  SD_CHECK_GOTO(st, sd_stack_create(app->comm, out, p.n, p.out_h, p.out_w, p.nclasses,
                                    (const char *const *)p.classes, 0, &app->prov, &stack),
                done);
  SD_CHECK_GOTO(st, sd_stack_set_image_attribute(
                        stack, "consumer_normalization",
                        strcmp(sd_config_string(app->cfg, "import.normalize"), "robust") == 0
                            ? "robust_zscore"
                            : "none"),
                fail);

  /* 4. read and write in batches; every rank makes the same number of collective writes */
  int64_t local_first = p.offset[p.first_file];
  int64_t local_n = p.offset[p.first_file + p.nfile_local] - local_first;
  int64_t rounds = (local_n + SD_IMPORT_BATCH - 1) / SD_IMPORT_BATCH;
  SD_CHECK_GOTO(st, sd_par_allreduce_max_i64(app->comm, &rounds, 1), done);
  size_t npx = (size_t)p.out_h * p.out_w;
  int max_side = 0;
  for (int i = 0; i < p.files.n; i++) {
    if (p.width[i] > max_side) max_side = p.width[i];
    if (p.height[i] > max_side) max_side = p.height[i];
  }
  batch = sd_malloc((size_t)SD_IMPORT_BATCH * npx, sizeof *batch, "import batch");
  tmp = crop > 0 ? sd_malloc((size_t)crop * crop, sizeof *tmp, "crop buffer") : NULL;
  labels = sd_malloc(SD_IMPORT_BATCH, sizeof *labels, "batch labels");
  sources = sd_calloc(SD_IMPORT_BATCH, sizeof *sources, "batch sources");
  st = (batch && labels && sources && (crop <= 0 || tmp)) ? SD_OK : SD_ERR_NOMEM;
  SD_CHECK_GOTO(st, sd_par_agree(app->comm, st), fail);

  sd_progress prog;
  sd_progress_begin(&prog, "import", p.n);
  int fi = p.first_file, pi = 0; /* cursor: file and page */
  int file_end = p.first_file + p.nfile_local;
  int64_t written = 0;
  for (int64_t r = 0; r < rounds; r++) {
    int nb = 0;
    double t = sd_profile_phase_begin();
    while (st == SD_OK && nb < SD_IMPORT_BATCH && fi < file_end) {
      if (!pages) {
        st = sd_image_file_read(p.files.paths[fi], &pages, &npages);
        if (st != SD_OK) break;
        if (npages != p.pages[fi] || pages[0].width != p.width[fi] || pages[0].height != p.height[fi]) {
          st = SD_ERROR(SD_ERR_FORMAT, "%s changed while importing (expected %d page(s) of %dx%d)",
                        p.files.paths[fi], p.pages[fi], p.width[fi], p.height[fi]);
          break;
        }
        pi = 0;
      }
      if (pages[pi].width != p.width[fi] || pages[pi].height != p.height[fi]) {
        if (sd_config_int(app->cfg, "import.resize") <= 0 && crop <= 0) {
          st = SD_ERROR(SD_ERR_ARG, "%s: page %d is %dx%d but page 1 is %dx%d; give --resize or --crop",
                        p.files.paths[fi], pi + 1, pages[pi].width, pages[pi].height, p.width[fi], p.height[fi]);
          break;
        }
      }
      if (crop > 0 && (pages[pi].width < crop || pages[pi].height < crop)) {
        st = SD_ERROR(SD_ERR_ARG, "%s: page %d is smaller than the crop size %d", p.files.paths[fi], pi + 1, crop);
        break;
      }
      fit_page(&pages[pi], crop, p.out_h, p.out_w, batch + (size_t)nb * npx, tmp);
      labels[nb] = p.label[fi];
      char src[4200];
      if (npages > 1) snprintf(src, sizeof src, "%s#page%d", p.files.paths[fi], pi + 1);
      else snprintf(src, sizeof src, "%s", p.files.paths[fi]);
      free(sources[nb]);
      sources[nb] = sd_strdup(src);
      if (!sources[nb]) {
        st = SD_ERR_NOMEM;
        break;
      }
      nb++;
      if (++pi == npages) {
        sd_images_free(pages, npages);
        pages = NULL;
        npages = 0;
        fi++;
      }
    }
    sd_profile_phase_end(SD_PHASE_IO, t);
    SD_CHECK_GOTO(st, sd_par_agree(app->comm, st), fail);
    int64_t first = local_first + written;
    t = sd_profile_phase_begin();
    SD_CHECK_GOTO(st, sd_stack_write(stack, first, nb, batch, labels, (const char *const *)sources, NULL), fail);
    sd_profile_phase_end(SD_PHASE_IO, t);
    sd_profile_add_bytes(SD_PHASE_IO, (int64_t)nb * (int64_t)npx * 4);
    written += nb;
    sd_progress_update(&prog, written * app->size < p.n ? written * app->size : p.n);
  }
  prog.done = p.n;
  sd_progress_end(&prog);
  if (written != local_n) {
    st = SD_ERROR(SD_ERR_INTERNAL, "import wrote %lld of %lld images on this rank", (long long)written,
                  (long long)local_n);
  }
  SD_CHECK_GOTO(st, sd_par_agree(app->comm, st), fail);
  SD_CHECK_GOTO(st, sd_stack_close(&stack, 1), done);
  sd_profile_stage_end(local_n);

  if (app->rank == 0) {
    sd_log_info("import: wrote %s: %lld image(s) of %dx%d, %d class(es)", out, (long long)p.n,
                p.out_w, p.out_h, p.nclasses);
    for (int c = 0; c < p.nclasses; c++) {
      int64_t cnt = 0;
      for (int i = 0; i < p.files.n; i++) cnt += p.label[i] == c ? p.pages[i] : 0;
      sd_log_info("  class %d %-16s %lld image(s)", c, p.classes[c], (long long)cnt);
    }
  }
  goto done;

fail:
  sd_stack_close(&stack, 0);
done:
  if (pages) sd_images_free(pages, npages);
  if (sources)
    for (int i = 0; i < SD_IMPORT_BATCH; i++) free(sources[i]);
  free(sources);
  free(labels);
  free(batch);
  free(tmp);
  plan_free(&p);
  return st;
}

const sd_command sd_cmd_import = {
    .name = "import",
    .summary = "import TIFF, JPEG and PNG images into an HDF5 image stack",
    .usage = "--input PATH... --output stack.h5 [--labels filename|folder|none] [--resize N | --crop N]",
    .description =
        "Folders contribute their .tif/.tiff/.jpg/.jpeg/.png files in natural name order.\n"
        "TIFF: 8/16/32-bit integer and 32-bit float, 1/3/4 samples, strips or tiles, any\n"
        "compression libtiff reads, multi-page files as several images. Colour becomes grey\n"
        "(first channel when channels are equal, else luminance). Raw grey values are stored;\n"
        "the normalisation consumers apply is recorded (import.normalize). Labels come from the\n"
        "file name (Vacancy_CdTe_12.tif -> Vacancy_CdTe) or the parent folder; classes are\n"
        "sorted by name. Ranks split the file list and write the stack collectively.",
    .sections = "import,general",
    .positional_key = "import.input",
    .options = import_options,
    .run = import_run,
};
