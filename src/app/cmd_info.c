/* cmd_info.c - `stemdefect info STACK`: a summary of an image stack (size, classes with
 * counts, masks, value range). */
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "stemdefect/log.h"
#include "stemdefect/par.h"

static const sd_cli_option info_options[] = {{NULL, NULL, NULL, NULL, 0}};

static sd_status info_run(sd_app *app) {
  int n_in = sd_config_list_length(app->cfg, "import.input");
  if (n_in != 1)
    return SD_ERROR(SD_ERR_ARG, "info takes exactly one stack file, got %d", n_in);
  const char *path = sd_config_list_item(app->cfg, "import.input", 0);
  sd_stack *s = NULL;
  SD_CHECK(sd_stack_open(app->comm, path, &s));
  const sd_stack_info *in = sd_stack_get_info(s);
  int64_t first, count;
  sd_shard_range(in->n, app->rank, app->size, &first, &count);
  size_t npx = (size_t)in->height * in->width;
  int32_t *labels = sd_malloc((size_t)count + 1, sizeof *labels, "labels");
  float *img = sd_malloc(npx, sizeof *img, "image");
  int64_t *cnt = sd_calloc((size_t)in->num_classes + 2, sizeof *cnt, "counts");
  double mm[2] = {DBL_MAX, DBL_MAX}; /* min, -max */
  sd_status st = (labels && img && cnt) ? SD_OK : SD_ERR_NOMEM;
  st = sd_par_agree(app->comm, st);
  if (st == SD_OK) st = sd_stack_read(s, first, count, NULL, labels, NULL);
  /* value range: one image at a time, same number of collective reads everywhere */
  int64_t rounds = count;
  if (st == SD_OK) st = sd_par_allreduce_max_i64(app->comm, &rounds, 1);
  for (int64_t i = 0; st == SD_OK && i < rounds; i++) {
    int64_t c = i < count ? 1 : 0;
    st = sd_stack_read(s, first + (c ? i : 0), c, img, NULL, NULL);
    for (size_t k = 0; c && k < npx; k++) {
      if (img[k] < mm[0]) mm[0] = img[k];
      if (-img[k] < mm[1]) mm[1] = -img[k];
    }
  }
  if (st == SD_OK) {
    for (int64_t i = 0; i < count; i++) {
      int32_t l = labels[i];
      cnt[(l >= 0 && l < in->num_classes) ? l : in->num_classes]++;
    }
    st = sd_par_allreduce_sum_i64(app->comm, cnt, in->num_classes + 1);
    double neg[2] = {-mm[0], -mm[1]};
    if (st == SD_OK) st = sd_par_allreduce_max_double(app->comm, neg, 2);
    mm[0] = -neg[0];
    mm[1] = neg[1];
  }
  if (st == SD_OK && app->rank == 0) {
    printf("%s: %lld image(s) of %dx%d, masks: %s, values %g .. %g\n", path, (long long)in->n,
           in->width, in->height, in->has_masks ? "yes" : "no", mm[0], mm[1]);
    for (int c = 0; c < in->num_classes; c++)
      printf("  class %2d  %-20s %lld\n", c, in->class_names[c], (long long)cnt[c]);
    if (cnt[in->num_classes]) printf("  unlabelled             %lld\n", (long long)cnt[in->num_classes]);
    fflush(stdout);
  }
  free(labels);
  free(img);
  free(cnt);
  sd_stack_close(&s, 0);
  return st;
}

const sd_command sd_cmd_info = {
    .name = "info",
    .summary = "summarise an image stack: size, classes and counts, masks, value range",
    .usage = "STACK.h5",
    .description = NULL,
    .sections = "",
    .positional_key = "import.input",
    .options = info_options,
    .run = info_run,
};
