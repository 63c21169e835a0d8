/* seg_evaluate.c - `stemdefect evaluate` of a U-Net: on a stack with /masks, the pixel
 * confusion matrix, per-class IoU / precision / recall, mean IoU over the defect classes
 * (background excluded) and defect-vs-background pixel precision/recall; with image labels,
 * the fraction of non-bulk images whose labelled class carries the most heatmap mass and the
 * false-alarm area on bulk images. Metrics JSON written atomically by rank 0. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "classify_common.h"
#include "segment_app.h"
#include "stemdefect/log.h"
#include "stemdefect/par.h"
#include "stemdefect/profile.h"
#include "stemdefect/segment.h"
#include "stemdefect/split.h"

static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\')
      fputc('\\', f);
    fputc(*s, f);
  }
  fputc('"', f);
}

sd_status sd_segment_evaluate_run(sd_app *app) {
  const sd_config *cfg = app->cfg;
  const char *model = sd_config_string(cfg, "classifier.model");
  const char *data = sd_config_string(cfg, "classifier.data");
  const char *which = sd_config_string(cfg, "classifier.part");
  const char *out = sd_config_string(cfg, "classifier.metrics");
  if (!*data)
    return SD_ERROR(SD_ERR_ARG, "no data: give --data STACK");
  sd_profile_stage_begin("evaluate");
  sd_nn_model *m = NULL;
  sd_ckpt_state state;
  memset(&state, 0, sizeof state);
  sd_stack *stack = NULL;
  sd_train_data d;
  memset(&d, 0, sizeof d);
  sd_seg_tiler tl;
  memset(&tl, 0, sizeof tl);
  int8_t *part = NULL;
  float *probs = NULL;
  double *acc = NULL;
  const char *part_name = "all";
  int C = 0, has_masks = 0;
  sd_status st;
  int c_, h_, w_;
  SD_CHECK_GOTO(st, sd_ckpt_open_model(app->comm, model, &m, &c_, &h_, &w_, &state), done);
  C = state.num_classes;
  SD_CHECK_GOTO(st, sd_stack_open(app->comm, data, &stack), done);
  const sd_stack_info *in = sd_stack_get_info(stack);
  const int H = in->height, W = in->width;
  has_masks = in->has_masks;
  if (in->num_classes != C) {
    st = SD_ERROR(SD_ERR_ARG, "%s has %d classes but the U-Net %s was trained on %d", data,
                  in->num_classes, model, C);
    goto done;
  }
  for (int c = 0; c < C; c++)
    if (strcasecmp(in->class_names[c], state.class_names[c]) != 0) {
      st = SD_ERROR(SD_ERR_ARG,
                    "class %d of %s is '%s' but the U-Net %s calls channel %d '%s': the heatmap "
                    "channels would not mean the stack's classes",
                    c, data, in->class_names[c], model, c, state.class_names[c]);
      goto done;
    }
  part = sd_malloc((size_t)(in->n ? in->n : 1), 1, "part");
  st = sd_par_agree(app->comm, part ? SD_OK : SD_ERR_NOMEM);
  if (st != SD_OK)
    goto done;
  int use_split = strcmp(which, "all") != 0 && state.split && state.split_n == in->n &&
                  !strcmp(state.data_path, data);
  int8_t want = !strcmp(which, "train") ? 0 : !strcmp(which, "val") ? 1 : 2;
  for (int64_t i = 0; i < in->n; i++)
    part[i] = use_split ? state.split[i] : 0;
  if (!use_split)
    want = 0;
  part_name = use_split ? which : "all";
  const int normalize = !strcmp(state.normalization, "robust_zscore");
  SD_CHECK_GOTO(st, sd_train_data_load(app->comm, stack, part, want, 0, normalize, has_masks, &d),
                done);
  if (c_ == 2) {
    const char *dev = sd_config_string(cfg, "segment.deviation");
    if (!*dev) {
      st = sd_segment_need_deviation(model, data);
      goto done;
    }
    SD_CHECK_GOTO(st, sd_segment_attach_deviation(app->comm, dev, in, &d), done);
  }
  /* the model at the frame size (reflect-padded to a multiple of 2^depth), or tiled */
  const int align = 1 << sd_unet_depth(m);
  int tile = (int)sd_config_int(cfg, "segment.tile");
  tile -= tile % align;
  int th = H <= tile ? (H + align - 1) / align * align : tile;
  int tw = W <= tile ? (W + align - 1) / align * align : tile;
  sd_nn_model_set_inference_only(m, 1);
  SD_CHECK_GOTO(st, sd_nn_model_compile(m, (int)sd_config_int(cfg, "segment.batch"), c_, th, tw),
                done);
  SD_CHECK_GOTO(st, sd_ckpt_load_params(app->comm, model, m, 1, 0, NULL), done);
  st = sd_seg_tiler_create(&tl, m, H, W, (int)sd_config_int(cfg, "segment.overlap"), align);
  const size_t npx = (size_t)H * W;
  /* accumulators: [C*C] pixel confusion, then hits, non-bulk, bulk false-alarm sum, bulk */
  const int nacc = C * C + 4;
  acc = sd_calloc((size_t)nacc, sizeof *acc, "metrics");
  if (st == SD_OK) {
    probs = sd_malloc((size_t)tl.max_images * C * npx, sizeof *probs, "probabilities");
    if (!probs || !acc)
      st = SD_ERR_NOMEM;
  }
  st = sd_par_agree(app->comm, st);
  if (st != SD_OK)
    goto done;
  double t0 = sd_time_now();
  for (int64_t i0 = 0; st == SD_OK && i0 < d.n; i0 += tl.max_images) {
    int n = (int)(d.n - i0 < tl.max_images ? d.n - i0 : tl.max_images);
    st = sd_seg_tiler_frames(&tl, d.images + (size_t)i0 * npx * c_, n, 0, probs, NULL); /* no MC */
    for (int i = 0; st == SD_OK && i < n; i++) {
      const float *p = probs + (size_t)i * C * npx;
      const uint8_t *mk = has_masks ? d.masks + (size_t)(i0 + i) * npx : NULL;
      double mass[SD_CKPT_MAX_CLASSES] = {0};
      int64_t alarms = 0;
      for (size_t q = 0; q < npx; q++) {
        int best = 0;
        for (int c = 1; c < C; c++)
          if (p[(size_t)c * npx + q] > p[(size_t)best * npx + q])
            best = c;
        for (int c = 1; c < C; c++)
          mass[c] += p[(size_t)c * npx + q];
        alarms += best != 0;
        if (mk)
          acc[(size_t)mk[q] * C + best] += 1;
      }
      int32_t lab = d.labels[i0 + i];
      if (lab > 0 && lab < C) {
        int top = 1;
        for (int c = 2; c < C; c++)
          if (mass[c] > mass[top])
            top = c;
        acc[C * C + 0] += top == lab;
        acc[C * C + 1] += 1;
      } else if (lab == 0) {
        acc[C * C + 2] += (double)alarms / (double)npx;
        acc[C * C + 3] += 1;
      }
    }
  }
  st = sd_par_agree(app->comm, st);
  if (st == SD_OK)
    st = sd_par_allreduce_sum_double(app->comm, acc, nacc);
  if (st != SD_OK)
    goto done;
  sd_log_debug("evaluate: inference %.2f s", sd_time_now() - t0);
  sd_status wst = SD_OK;
  if (app->rank == 0) {
    double iou[SD_CKPT_MAX_CLASSES], prec[SD_CKPT_MAX_CLASSES], rec[SD_CKPT_MAX_CLASSES];
    double support[SD_CKPT_MAX_CLASSES];
    double miou = 0, correct = 0, total = 0, dtp = 0, dfp = 0, dfn = 0;
    int nmiou = 0;
    for (int c = 0; c < C; c++) {
      double tp = acc[c * C + c], row = 0, col = 0;
      for (int k = 0; k < C; k++) {
        row += acc[c * C + k];
        col += acc[k * C + c];
      }
      support[c] = row;
      iou[c] = row + col - tp > 0 ? tp / (row + col - tp) : NAN;
      prec[c] = col > 0 ? tp / col : NAN;
      rec[c] = row > 0 ? tp / row : NAN;
      correct += tp;
      total += row;
      if (c > 0 && row + col - tp > 0) {
        miou += iou[c];
        nmiou++;
      }
    }
    for (int t = 0; t < C; t++)
      for (int p = 0; p < C; p++) {
        double v = acc[t * C + p];
        if (t != 0 && p != 0)
          dtp += v;
        if (t == 0 && p != 0)
          dfp += v;
        if (t != 0 && p == 0)
          dfn += v;
      }
    miou = nmiou ? miou / nmiou : NAN;
    double top = acc[C * C + 1] > 0 ? acc[C * C] / acc[C * C + 1] : NAN;
    double fa = acc[C * C + 3] > 0 ? acc[C * C + 2] / acc[C * C + 3] : NAN;
    printf("%s on %s (%s part, %lld images):", model, data, part_name, (long long)d.n_global);
    if (has_masks)
      printf(" mean IoU %.4f (defect classes), pixel accuracy %.4f, defect pixel precision %.4f "
             "recall %.4f\n",
             miou, total > 0 ? correct / total : NAN, dtp + dfp > 0 ? dtp / (dtp + dfp) : NAN,
             dtp + dfn > 0 ? dtp / (dtp + dfn) : NAN);
    else
      printf(" (no /masks: image-label criteria only)\n");
    if (has_masks)
      for (int c = 0; c < C; c++)
        printf("  %-16s IoU %.3f precision %.3f recall %.3f pixels %.0f\n", state.class_names[c],
               iou[c], prec[c], rec[c], support[c]);
    printf("  labelled class carries the most heatmap mass in %.4f of %.0f non-bulk images; bulk "
           "false-alarm area %.5f over %.0f bulk images\n",
           top, acc[C * C + 1], fa, acc[C * C + 3]);
    fflush(stdout);
    if (*out) {
      char tmp[8448];
      snprintf(tmp, sizeof tmp, "%s.tmp-%ld", out, (long)getpid());
      FILE *f = fopen(tmp, "w");
      if (!f)
        wst = SD_ERROR(SD_ERR_IO, "cannot write metrics %s", out);
      else {
#define JNUM(x) (isfinite(x) ? (x) : -1.0)
        fprintf(f, "{\n  \"task\": \"segment\",\n  \"model\": ");
        json_str(f, model);
        fprintf(f, ",\n  \"data\": ");
        json_str(f, data);
        fprintf(f, ",\n  \"part\": ");
        json_str(f, part_name);
        fprintf(f, ",\n  \"n\": %lld,\n  \"has_masks\": %s,\n", (long long)d.n_global,
                has_masks ? "true" : "false");
        fprintf(f, "  \"class_names\": [");
        for (int c = 0; c < C; c++) {
          fprintf(f, "%s", c ? ", " : "");
          json_str(f, state.class_names[c]);
        }
        fprintf(f, "],\n");
        if (has_masks) {
          fprintf(f, "  \"mean_iou\": %.6f,\n  \"pixel_accuracy\": %.6f,\n", JNUM(miou),
                  total > 0 ? correct / total : -1.0);
          fprintf(f, "  \"defect_pixel_precision\": %.6f,\n  \"defect_pixel_recall\": %.6f,\n",
                  dtp + dfp > 0 ? dtp / (dtp + dfp) : -1.0,
                  dtp + dfn > 0 ? dtp / (dtp + dfn) : -1.0);
          fprintf(f, "  \"per_class\": [");
          for (int c = 0; c < C; c++)
            fprintf(f,
                    "%s\n    {\"class\": \"%s\", \"iou\": %.6f, \"precision\": %.6f, \"recall\": "
                    "%.6f, \"pixels\": %.0f}",
                    c ? "," : "", state.class_names[c], JNUM(iou[c]), JNUM(prec[c]), JNUM(rec[c]),
                    support[c]);
          fprintf(f, "\n  ],\n  \"pixel_confusion\": [");
          for (int t = 0; t < C; t++) {
            fprintf(f, "%s\n    [", t ? "," : "");
            for (int p = 0; p < C; p++)
              fprintf(f, "%s%.0f", p ? ", " : "", acc[t * C + p]);
            fprintf(f, "]");
          }
          fprintf(f, "\n  ],\n");
        }
        fprintf(f, "  \"labelled_class_top_mass_fraction\": %.6f,\n  \"nonbulk_images\": %.0f,\n",
                JNUM(top), acc[C * C + 1]);
        fprintf(f, "  \"bulk_false_alarm_area\": %.6f,\n  \"bulk_images\": %.0f,\n", JNUM(fa),
                acc[C * C + 3]);
        fprintf(f, "  \"notes\": \"-1 = undefined (no such pixels or images); mean_iou averages "
                   "the defect classes (1..C-1) whose union is not empty\"\n}\n");
#undef JNUM
        if (fclose(f) != 0 || rename(tmp, out) != 0) {
          unlink(tmp);
          wst = SD_ERROR(SD_ERR_IO, "cannot write metrics %s", out);
        }
        if (wst == SD_OK)
          sd_log_info("evaluate: metrics in %s", out);
      }
    }
  }
  st = sd_par_agree(app->comm, wst);
done:
  sd_profile_stage_end(d.n);
  sd_seg_tiler_destroy(&tl);
  sd_train_data_free(&d);
  sd_nn_model_destroy(&m);
  free(state.split);
  sd_stack_close(&stack, 0);
  free(part);
  free(probs);
  free(acc);
  return st;
}
