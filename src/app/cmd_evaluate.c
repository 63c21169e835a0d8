/* cmd_evaluate.c / predict - scoring a classifier on a stack: metrics JSON and a confusion
 * matrix PNG (evaluate), per-image class probabilities in HDF5 (predict). */
#include <cairo.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "classify_common.h"
#include "stemdefect/augment.h"
#include "segment_app.h"
#include "stemdefect/h5util.h"
#include "stemdefect/log.h"
#include "stemdefect/par.h"
#include "stemdefect/profile.h"
#include "stemdefect/split.h"

static const sd_cli_option evaluate_options[] = {
    {"--model", "classifier.model", "MODEL", NULL, 0},
    {"--data", "classifier.data", "STACK", NULL, 0},
    {"--output", "classifier.metrics", "JSON", NULL, 0},
    {"--part", "classifier.part", "PART", NULL, 0},
    {"--tta", "classifier.tta", "MODE", NULL, 0},
    {"--deviation", "segment.deviation", "FILE", NULL, 0},
    {NULL, NULL, NULL, NULL, 0}};

static const sd_cli_option predict_options[] = {
    {"--model", "classifier.model", "MODEL", NULL, 0},
    {"--data", "classifier.data", "STACK", NULL, 0},
    {"--output", "classifier.predictions", "FILE", NULL, 0},
    {"--tta", "classifier.tta", "MODE", NULL, 0},
    {NULL, NULL, NULL, NULL, 0}};

/* Everything evaluate and predict share: the model, the stack, the images to score. */
typedef struct scored {
  sd_nn_model *m;
  sd_ckpt_state state;
  sd_stack *stack;
  sd_train_data d;
  int8_t *part;
  const char *part_name;
  float *probs;   /* (d.n, C) softmax of the logits */
  int32_t *pred;  /* (d.n) */
} scored;

static void scored_free(scored *s) {
  sd_nn_model_destroy(&s->m);
  free(s->state.split);
  sd_stack_close(&s->stack, 0);
  sd_train_data_free(&s->d);
  free(s->part);
  free(s->probs);
  free(s->pred);
}

/* Class probabilities of the loaded images into s->probs (d.n, C): the softmax of the logits,
 * or with classifier.tta = dihedral the mean of the softmax over the 8 symmetries of the square
 * (the lattice symmetries the classifier was trained with). Collective. */
static sd_status score_probabilities(sd_app *app, scored *s, int C) {
  int tta = strcmp(sd_config_string(app->cfg, "classifier.tta"), "dihedral") == 0 &&
            s->d.h == s->d.w;
  size_t n = (size_t)s->d.n, hw = (size_t)s->d.h * (size_t)s->d.w;
  if (!tta) {
    SD_CHECK(sd_train_evaluate(app->comm, s->m, &s->d, s->probs, NULL, NULL));
    sd_nn_softmax((int)s->d.n, C, 1, s->probs, s->probs);
    return SD_OK;
  }
  float *orig = s->d.images;
  float *turned = sd_malloc(n ? n * hw : 1, sizeof *turned, "symmetric images");
  float *logits = sd_malloc(n ? n * (size_t)C : 1, sizeof *logits, "logits");
  sd_status st = (turned && logits) ? SD_OK : SD_ERR_NOMEM;
  st = sd_par_agree(app->comm, st);
  for (size_t i = 0; i < n * (size_t)C; i++) s->probs[i] = 0;
  for (int t = 0; t < 8 && st == SD_OK; t++) {
    for (size_t i = 0; i < n; i++) sd_dihedral(orig + i * hw, turned + i * hw, s->d.w, t);
    s->d.images = turned;
    st = sd_train_evaluate(app->comm, s->m, &s->d, logits, NULL, NULL);
    s->d.images = orig;
    if (st != SD_OK) break;
    sd_nn_softmax((int)s->d.n, C, 1, logits, logits);
    for (size_t i = 0; i < n * (size_t)C; i++) s->probs[i] += logits[i] / 8.0f;
  }
  free(turned);
  free(logits);
  return st;
}

static sd_status score(sd_app *app, const char *which, scored *s) {
  const char *model = sd_config_string(app->cfg, "classifier.model");
  const char *data = sd_config_string(app->cfg, "classifier.data");
  if (!*data) return SD_ERROR(SD_ERR_ARG, "no data: give --data STACK");
  int c, h, w;
  SD_CHECK(sd_ckpt_open_model(app->comm, model, &s->m, &c, &h, &w, &s->state));
  if (strcmp(s->state.task, "classify") != 0)
    return SD_ERROR(SD_ERR_ARG, "%s is a '%s' model, not a classifier", model, s->state.task);
  SD_CHECK(sd_nn_model_compile(s->m, 64, c, h, w));
  SD_CHECK(sd_ckpt_load_params(app->comm, model, s->m, 1, 0, NULL));
  SD_CHECK(sd_stack_open(app->comm, data, &s->stack));
  const sd_stack_info *in = sd_stack_get_info(s->stack);
  if (in->height != h || in->width != w)
    return SD_ERROR(SD_ERR_ARG, "%s holds %dx%d images but %s expects %dx%d", data, in->width,
                    in->height, model, w, h);
  int C = s->state.num_classes;
  s->part = sd_malloc((size_t)(in->n ? in->n : 1), 1, "part");
  if (!s->part) return SD_ERR_NOMEM;
  /* which images: the model's split part when it was trained on this stack, else all */
  int use_split = strcmp(which, "all") != 0 && s->state.split && s->state.split_n == in->n;
  int8_t want = !strcmp(which, "train") ? 0 : !strcmp(which, "val") ? 1 : 2;
  for (int64_t i = 0; i < in->n; i++) s->part[i] = use_split ? s->state.split[i] : 0;
  if (!use_split) want = 0;
  s->part_name = use_split ? which : "all";
  if (strcmp(which, "all") != 0 && !use_split)
    sd_log_warn("%s carries no split of a %lld-image stack: scoring all images of %s", model,
                (long long)in->n, data);
  SD_CHECK(sd_train_data_load(app->comm, s->stack, s->part, want, 0,
                              !strcmp(s->state.normalization, "robust_zscore"), 0, &s->d));
  float *logits = sd_malloc((size_t)(s->d.n ? s->d.n : 1) * C, sizeof *logits, "logits");
  s->probs = logits;
  s->pred = sd_malloc((size_t)(s->d.n ? s->d.n : 1), sizeof *s->pred, "predictions");
  sd_status st = (logits && s->pred) ? SD_OK : SD_ERR_NOMEM;
  SD_CHECK(sd_par_agree(app->comm, st));
  SD_CHECK(score_probabilities(app, s, C));
  for (int64_t i = 0; i < s->d.n; i++) {
    int best = 0;
    for (int k = 1; k < C; k++)
      if (s->probs[i * C + k] > s->probs[i * C + best]) best = k;
    s->pred[i] = best;
  }
  return SD_OK;
}

/* Gathers a per-image int32 array to rank 0 in stack order (local blocks are contiguous and
 * in rank order). */
static sd_status gather_i32(MPI_Comm comm, const int32_t *local, int64_t n_local, int32_t *all) {
  int size;
  MPI_Comm_size(comm, &size);
  int *counts = sd_malloc((size_t)size, sizeof *counts, "counts");
  int *displs = sd_malloc((size_t)size, sizeof *displs, "displs");
  if (!counts || !displs) {
    free(counts);
    free(displs);
    SD_PAR_FATAL(comm);
  }
  int mine = (int)n_local;
  MPI_Allgather(&mine, 1, MPI_INT, counts, 1, MPI_INT, comm);
  for (int r = 0, off = 0; r < size; r++) {
    displs[r] = off;
    off += counts[r];
  }
  int rc = MPI_Gatherv(local, mine, MPI_INT32_T, all, counts, displs, MPI_INT32_T, 0, comm);
  free(counts);
  free(displs);
  return sd_par_check(rc, "gather of predictions");
}

static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') fputc('\\', f);
    fputc(*s, f);
  }
  fputc('"', f);
}

static sd_status write_confusion_png(const char *path, const sd_classify_metrics *m,
                                     const sd_ckpt_state *st, const char *title) {
  int C = m->num_classes;
  int cell = C > 8 ? 40 : 56, left = 150, top = 70;
  int W = left + C * cell + 30, H = top + C * cell + 130;
  if (W < 480) W = 480; /* room for the title */
  cairo_surface_t *sf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
  cairo_t *cr = cairo_create(sf);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
  cairo_set_font_size(cr, 15);
  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_move_to(cr, 10, 24);
  cairo_show_text(cr, title);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 12);
  char buf[160];
  snprintf(buf, sizeof buf, "accuracy %.4f   macro-F1 %.4f   n = %lld", m->accuracy, m->macro_f1,
           (long long)m->n);
  cairo_move_to(cr, 10, 44);
  cairo_show_text(cr, buf);
  for (int i = 0; i < C; i++) {
    int64_t row = m->support[i];
    for (int j = 0; j < C; j++) {
      double frac = row ? (double)m->confusion[i][j] / (double)row : 0;
      cairo_set_source_rgb(cr, 1 - 0.8 * frac, 1 - 0.55 * frac, 1 - 0.2 * frac);
      cairo_rectangle(cr, left + j * cell, top + i * cell, cell - 1, cell - 1);
      cairo_fill(cr);
      cairo_set_source_rgb(cr, frac > 0.6 ? 1 : 0, frac > 0.6 ? 1 : 0, frac > 0.6 ? 1 : 0);
      snprintf(buf, sizeof buf, "%lld", (long long)m->confusion[i][j]);
      cairo_text_extents_t te;
      cairo_text_extents(cr, buf, &te);
      cairo_move_to(cr, left + j * cell + (cell - te.width) / 2, top + i * cell + cell / 2 + 4);
      cairo_show_text(cr, buf);
    }
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_text_extents_t te;
    cairo_text_extents(cr, st->class_names[i], &te);
    cairo_move_to(cr, left - 8 - te.width, top + i * cell + cell / 2 + 4);
    cairo_show_text(cr, st->class_names[i]);
    cairo_save(cr);
    cairo_move_to(cr, left + i * cell + cell / 2 + 4, top + C * cell + 8);
    cairo_rotate(cr, M_PI / 4);
    cairo_show_text(cr, st->class_names[i]);
    cairo_restore(cr);
  }
  cairo_move_to(cr, left + C * cell / 2 - 30, H - 12);
  cairo_show_text(cr, "predicted");
  cairo_save(cr);
  cairo_move_to(cr, 16, top + C * cell / 2 + 20);
  cairo_rotate(cr, -M_PI / 2);
  cairo_show_text(cr, "true");
  cairo_restore(cr);
  char tmp[8704];
  int len = snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
  cairo_status_t cs = (len > 0 && (size_t)len < sizeof tmp) ? cairo_surface_write_to_png(sf, tmp)
                                                             : CAIRO_STATUS_WRITE_ERROR;
  cairo_destroy(cr);
  cairo_surface_destroy(sf);
  if (cs != CAIRO_STATUS_SUCCESS || rename(tmp, path) != 0) {
    unlink(tmp);
    return SD_ERROR(SD_ERR_IO, "cannot write %s", path);
  }
  return SD_OK;
}

static sd_status evaluate_run(sd_app *app) {
  int is_unet = 0;
  SD_CHECK(sd_segment_model_is_unet(app->comm, sd_config_string(app->cfg, "classifier.model"), &is_unet));
  if (is_unet) return sd_segment_evaluate_run(app);
  scored s;
  memset(&s, 0, sizeof s);
  sd_profile_stage_begin("evaluate");
  const char *which = sd_config_string(app->cfg, "classifier.part");
  sd_status st = score(app, which, &s);
  st = sd_par_agree(app->comm, st);
  int64_t n = s.d.n_global;
  int32_t *truth = NULL, *pred = NULL;
  if (st == SD_OK && app->rank == 0) {
    truth = sd_malloc((size_t)(n ? n : 1), sizeof *truth, "labels");
    pred = sd_malloc((size_t)(n ? n : 1), sizeof *pred, "predictions");
    if (!truth || !pred) st = SD_ERR_NOMEM;
  }
  st = sd_par_agree(app->comm, st);
  if (st == SD_OK) st = gather_i32(app->comm, s.d.labels, s.d.n, truth);
  if (st == SD_OK) st = gather_i32(app->comm, s.pred, s.d.n, pred);
  sd_status wst = SD_OK;
  if (st == SD_OK && app->rank == 0) {
    sd_classify_metrics m;
    int C = s.state.num_classes;
    sd_classify_metrics_compute(truth, pred, n, C, &m);
    printf("%s on %s (%s part of a %s split, %lld images): accuracy %.4f, macro-F1 %.4f\n",
           sd_config_string(app->cfg, "classifier.model"), sd_config_string(app->cfg, "classifier.data"),
           s.part_name, s.state.split_kind[0] ? s.state.split_kind : "-", (long long)n, m.accuracy, m.macro_f1);
    for (int c = 0; c < C; c++)
      printf("  %-16s precision %.3f recall %.3f F1 %.3f support %lld\n", s.state.class_names[c],
             m.precision[c], m.recall[c], m.f1[c], (long long)m.support[c]);
    fflush(stdout);
    const char *out = sd_config_string(app->cfg, "classifier.metrics");
    if (*out) {
      char tmp[8448];
      snprintf(tmp, sizeof tmp, "%s.tmp-%ld", out, (long)getpid());
      FILE *f = fopen(tmp, "w");
      if (!f) wst = SD_ERROR(SD_ERR_IO, "cannot write metrics %s", out);
      else {
        fprintf(f, "{\n  \"model\": ");
        json_str(f, sd_config_string(app->cfg, "classifier.model"));
        fprintf(f, ",\n  \"data\": ");
        json_str(f, sd_config_string(app->cfg, "classifier.data"));
        fprintf(f, ",\n  \"split_kind\": ");
        json_str(f, s.state.split_kind[0] ? s.state.split_kind : "none");
        fprintf(f, ",\n  \"part\": ");
        json_str(f, s.part_name);
        fprintf(f, ",\n  \"tta\": ");
        json_str(f, sd_config_string(app->cfg, "classifier.tta"));
        fprintf(f, ",\n  \"n\": %lld,\n  \"accuracy\": %.6f,\n  \"macro_f1\": %.6f,\n", (long long)n, m.accuracy, m.macro_f1);
        fprintf(f, "  \"class_names\": [");
        for (int c = 0; c < C; c++) {
          fprintf(f, "%s", c ? ", " : "");
          json_str(f, s.state.class_names[c]);
        }
        fprintf(f, "],\n  \"per_class\": [");
        for (int c = 0; c < C; c++)
          fprintf(f, "%s\n    {\"class\": \"%s\", \"precision\": %.6f, \"recall\": %.6f, \"f1\": %.6f, \"support\": %lld}",
                  c ? "," : "", s.state.class_names[c], m.precision[c], m.recall[c], m.f1[c], (long long)m.support[c]);
        fprintf(f, "\n  ],\n  \"confusion_matrix\": [");
        for (int i = 0; i < C; i++) {
          fprintf(f, "%s\n    [", i ? "," : "");
          for (int j = 0; j < C; j++) fprintf(f, "%s%lld", j ? ", " : "", (long long)m.confusion[i][j]);
          fprintf(f, "]");
        }
        fprintf(f, "\n  ]\n}\n");
        if (fclose(f) != 0 || rename(tmp, out) != 0) {
          unlink(tmp);
          wst = SD_ERROR(SD_ERR_IO, "cannot write metrics %s", out);
        }
      }
      if (wst == SD_OK) {
        char png[8448];
        snprintf(png, sizeof png, "%.*s_confusion.png", (int)(strlen(out) > 5 && !strcmp(out + strlen(out) - 5, ".json") ? strlen(out) - 5 : strlen(out)), out);
        char title[256];
        snprintf(title, sizeof title, "confusion matrix (%s part, %s split)", s.part_name,
                 s.state.split_kind[0] ? s.state.split_kind : "no");
        wst = write_confusion_png(png, &m, &s.state, title);
        if (wst == SD_OK) sd_log_info("evaluate: metrics in %s, confusion matrix in %s", out, png);
      }
    }
  }
  free(truth);
  free(pred);
  if (st == SD_OK) st = sd_par_agree(app->comm, wst);
  sd_profile_stage_end(s.d.n);
  scored_free(&s);
  return st;
}

static sd_status predict_run(sd_app *app) {
  scored s;
  memset(&s, 0, sizeof s);
  sd_profile_stage_begin("predict");
  sd_status st = score(app, "all", &s);
  st = sd_par_agree(app->comm, st);
  int C = s.state.num_classes;
  int64_t n = s.d.n_global;
  float *probs = NULL;
  int32_t *pred = NULL;
  if (st == SD_OK && app->rank == 0) {
    probs = sd_malloc((size_t)(n ? n : 1) * C, sizeof *probs, "probabilities");
    pred = sd_malloc((size_t)(n ? n : 1), sizeof *pred, "predictions");
    if (!probs || !pred) st = SD_ERR_NOMEM;
  }
  st = sd_par_agree(app->comm, st);
  if (st == SD_OK) st = gather_i32(app->comm, s.pred, s.d.n, pred);
  if (st == SD_OK) {
    int size = app->size, *counts = malloc(sizeof(int) * size), *displs = malloc(sizeof(int) * size);
    int mine = (int)(s.d.n * C);
    MPI_Allgather(&mine, 1, MPI_INT, counts, 1, MPI_INT, app->comm);
    for (int r = 0, off = 0; r < size; r++) {
      displs[r] = off;
      off += counts[r];
    }
    st = sd_par_check(MPI_Gatherv(s.probs, mine, MPI_FLOAT, probs, counts, displs, MPI_FLOAT, 0, app->comm), "gather");
    free(counts);
    free(displs);
  }
  sd_status wst = SD_OK;
  const char *out = sd_config_string(app->cfg, "classifier.predictions");
  if (st == SD_OK && app->rank == 0) {
    sd_h5_init();
    char tmp[8448];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", out, (long)getpid());
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) wst = SD_H5_ERROR(SD_ERR_IO, "cannot create %s", out);
    else {
      hsize_t d2[2] = {(hsize_t)n, (hsize_t)C}, d1[1] = {(hsize_t)n};
      hid_t s2 = H5Screate_simple(2, d2, NULL), s1 = H5Screate_simple(1, d1, NULL);
      hid_t a = H5Dcreate2(f, "probabilities", H5T_IEEE_F32LE, s2, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
      hid_t b = H5Dcreate2(f, "predicted", H5T_STD_I32LE, s1, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
      if (a < 0 || b < 0 || H5Dwrite(a, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, probs) < 0 ||
          H5Dwrite(b, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, pred) < 0)
        wst = SD_H5_ERROR(SD_ERR_HDF5, "cannot write %s", out);
      const char *names[64];
      for (int c = 0; c < C; c++) names[c] = s.state.class_names[c];
      if (wst == SD_OK) wst = sd_h5_attr_write_strings(a, "class_names", C, names);
      if (wst == SD_OK) wst = sd_h5_attr_write_strings(b, "class_names", C, names);
      if (wst == SD_OK)
        wst = sd_h5_attr_write_string(a, "tta", sd_config_string(app->cfg, "classifier.tta"));
      if (wst == SD_OK) wst = sd_h5_write_provenance(f, &app->prov, app->size);
      if (a >= 0) H5Dclose(a);
      if (b >= 0) H5Dclose(b);
      H5Sclose(s1);
      H5Sclose(s2);
      if (H5Fclose(f) < 0 && wst == SD_OK) wst = SD_H5_ERROR(SD_ERR_IO, "cannot close %s", out);
      if (wst == SD_OK && rename(tmp, out) != 0) wst = SD_ERROR(SD_ERR_IO, "cannot rename %s to %s", tmp, out);
      if (wst != SD_OK) unlink(tmp);
    }
    if (wst == SD_OK) sd_log_info("predict: probabilities of %lld images written to %s", (long long)n, out);
  }
  free(probs);
  free(pred);
  if (st == SD_OK) st = sd_par_agree(app->comm, wst);
  sd_profile_stage_end(s.d.n);
  scored_free(&s);
  return st;
}

const sd_command sd_cmd_evaluate = {
    .name = "evaluate",
    .summary = "score a classifier (accuracy, macro-F1, confusion) or a U-Net (per-class IoU) on a stack",
    .usage = "--model model.h5 --data stack.h5 [--output metrics.json] [--part test|val|train|all]",
    .description =
        "Scores the test part of the split the model was trained with (when --data is that\n"
        "stack; else all images). Writes metrics JSON (accuracy, macro-F1, per-class precision,\n"
        "recall, F1, support, confusion matrix, class names, split kind) and <output>_confusion.png.\n"
        "A U-Net model (train --task segment) is recognised from the file: on a stack with /masks\n"
        "it reports per-class IoU, mean IoU (defect classes), pixel precision/recall; with image\n"
        "labels, the fraction of non-bulk images whose class carries the most heatmap mass and the\n"
        "false-alarm area on bulk images (segment.tile/overlap/batch set the tiling).",
    .sections = "classifier,segment,general",
    .positional_key = NULL,
    .options = evaluate_options,
    .run = evaluate_run,
};

const sd_command sd_cmd_predict = {
    .name = "predict",
    .summary = "per-image class probabilities of a stack (HDF5)",
    .usage = "--model model.h5 --data stack.h5 --output predictions.h5",
    .description = "Writes /probabilities float32 [N,C] and /predicted int32 [N] with class names.",
    .sections = "classifier,general",
    .positional_key = NULL,
    .options = predict_options,
    .run = predict_run,
};
