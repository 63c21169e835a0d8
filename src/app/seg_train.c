/* seg_train.c - `stemdefect train --task segment`: data-parallel U-Net training on per-pixel
 * class maps (the stack's /masks or the /masks of a --labels file such as pseudo.h5), with
 * mosaics, augmentation, checkpoints, --resume and clean stops on signals (exit 75). */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classify_common.h"
#include "segment_app.h"
#include "stemdefect/h5util.h"
#include "stemdefect/log.h"
#include "stemdefect/par.h"
#include "stemdefect/profile.h"
#include "stemdefect/segment.h"
#include "stemdefect/split.h"

const char *sd_segment_key(const sd_config *cfg, const char *name, char *buf) {
  snprintf(buf, 64, "classifier.%s", name);
  const char *o = sd_config_origin(cfg, buf);
  if (o && !strncmp(o, "command line (--", 16) && strcmp(o, "command line (--set)") != 0)
    return buf;
  snprintf(buf, 64, "segmenter.%s", name);
  return buf;
}

sd_status sd_segment_model_is_unet(MPI_Comm comm, const char *path, int *is_unet) {
  hid_t f = H5I_INVALID_HID, g = H5I_INVALID_HID;
  *is_unet = 0;
  sd_status st = sd_h5_file_open(comm, path, 0, &f);
  st = sd_par_agree(comm, st);
  if (st != SD_OK)
    return SD_ERROR(st, "cannot open model %s: %s", path, sd_error_message());
  char *task = NULL;
  htri_t has = H5Lexists(f, "model", H5P_DEFAULT);
  if (has > 0)
    g = H5Gopen2(f, "model", H5P_DEFAULT);
  if (g < 0)
    st = SD_ERROR(SD_ERR_FORMAT, "%s is not a stemdefect model file (no /model group)", path);
  else
    st = sd_h5_attr_read_string(g, "task", &task);
  if (st == SD_OK)
    *is_unet = !strcmp(task, "segment");
  free(task);
  sd_h5_close(&g);
  sd_h5_close(&f);
  return sd_par_agree(comm, st);
}

/* Every rank reads the masks of its local images d->index[0..n) from path:/masks, after the
 * collective checks of the dataset's shape against the stack. */
static sd_status read_label_masks(MPI_Comm comm, const char *path, const sd_stack_info *in,
                                  sd_train_data *d) {
  hid_t f = H5I_INVALID_HID, ds = H5I_INVALID_HID, fs = H5I_INVALID_HID, ms = H5I_INVALID_HID;
  sd_status st = sd_par_agree(comm, sd_h5_file_open(comm, path, 0, &f));
  if (st != SD_OK)
    return st;
  htri_t has = H5Lexists(f, "masks", H5P_DEFAULT);
  if (has <= 0) {
    st = SD_ERROR(SD_ERR_ARG,
                  "labels file %s has no /masks dataset (expected uint8 [N,H,W] class maps, as "
                  "written by pseudolabel or simulate)",
                  path);
    goto done;
  }
  ds = H5Dopen2(f, "masks", H5P_DEFAULT);
  fs = ds >= 0 ? H5Dget_space(ds) : H5I_INVALID_HID;
  hsize_t dims[4] = {0};
  int nd = fs >= 0 ? H5Sget_simple_extent_ndims(fs) : -1;
  if (nd == 3)
    H5Sget_simple_extent_dims(fs, dims, NULL);
  if (nd != 3 || (int64_t)dims[0] != in->n || (int)dims[1] != in->height ||
      (int)dims[2] != in->width) {
    st = SD_ERROR(
        SD_ERR_ARG,
        "%s:/masks has shape [%llu,%llu,%llu] (rank %d) but the data stack holds [%lld,%d,%d]",
        path, (unsigned long long)dims[0], (unsigned long long)dims[1], (unsigned long long)dims[2],
        nd, (long long)in->n, in->height, in->width);
    goto done;
  }
  size_t npx = (size_t)in->height * in->width;
  d->masks = sd_malloc((size_t)(d->n ? d->n : 1) * npx, 1, "label masks");
  hsize_t mdims[1] = {npx};
  ms = H5Screate_simple(1, mdims, NULL);
  st = d->masks ? SD_OK : SD_ERR_NOMEM;
  double t = sd_profile_phase_begin();
  for (int64_t i = 0; st == SD_OK && i < d->n; i++) {
    hsize_t start[3] = {(hsize_t)d->index[i], 0, 0},
            count[3] = {1, (hsize_t)in->height, (hsize_t)in->width};
    if (H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        H5Dread(ds, H5T_NATIVE_UINT8, ms, fs, H5P_DEFAULT, d->masks + (size_t)i * npx) < 0)
      st = SD_H5_ERROR(SD_ERR_IO, "cannot read %s:/masks image %lld", path, (long long)d->index[i]);
  }
  sd_profile_phase_end(SD_PHASE_IO, t);
  sd_profile_add_bytes(SD_PHASE_IO, d->n * (int64_t)npx);
  for (int64_t i = 0; st == SD_OK && i < d->n; i++)
    for (size_t p = 0; p < npx; p++)
      if (d->masks[(size_t)i * npx + p] >= in->num_classes) {
        st = SD_ERROR(SD_ERR_ARG,
                      "%s:/masks image %lld holds class %d; the stack has %d classes (0..%d)", path,
                      (long long)d->index[i], d->masks[(size_t)i * npx + p], in->num_classes,
                      in->num_classes - 1);
        break;
      }
done:
  sd_h5_close(&ms);
  sd_h5_close(&fs);
  sd_h5_close(&ds);
  sd_h5_close(&f);
  return sd_par_agree(comm, st);
}

sd_status sd_segment_open_deviation(MPI_Comm comm, const char *path, int64_t n, int h, int w,
                                    int need, hid_t dapl, hid_t *f, hid_t *ds, int *has) {
  *has = 0;
  *ds = H5I_INVALID_HID;
  sd_status st = sd_par_agree(comm, sd_h5_file_open(comm, path, 0, f));
  if (st != SD_OK)
    return SD_ERROR(st, "cannot open the deviation file %s: %s", path, sd_error_message());
  if (H5Lexists(*f, "deviation", H5P_DEFAULT) <= 0) {
    if (need)
      st = SD_ERROR(SD_ERR_ARG,
                    "%s has no /deviation dataset (expected float32 [N,H,W], the deviation from "
                    "the bulk lattice written by `stemdefect pseudolabel --data STACK`)",
                    path);
    return sd_par_agree(comm, st);
  }
  *ds = H5Dopen2(*f, "deviation", dapl);
  hid_t fs = *ds >= 0 ? H5Dget_space(*ds) : H5I_INVALID_HID;
  hsize_t dims[3] = {0};
  int nd = fs >= 0 ? H5Sget_simple_extent_ndims(fs) : -1;
  if (nd == 3)
    H5Sget_simple_extent_dims(fs, dims, NULL);
  sd_h5_close(&fs);
  if (nd != 3 || (int64_t)dims[0] != n || (int)dims[1] != h || (int)dims[2] != w)
    st = SD_ERROR(SD_ERR_ARG,
                  "%s:/deviation has shape [%llu,%llu,%llu] (rank %d) but the data stack holds "
                  "[%lld,%d,%d]: give the pseudolabel output of this stack",
                  path, (unsigned long long)dims[0], (unsigned long long)dims[1],
                  (unsigned long long)dims[2], nd, (long long)n, h, w);
  else
    *has = 1;
  return sd_par_agree(comm, st);
}

sd_status sd_segment_need_deviation(const char *model, const char *data) {
  return SD_ERROR(SD_ERR_ARG,
                  "the U-Net %s takes the image and its deviation from the bulk lattice: give "
                  "--deviation pseudo.h5, the output of `stemdefect pseudolabel --data %s`",
                  model, data);
}

/* the file of the training deviation: segmenter.deviation, else the labels file */
static const char *deviation_file(const sd_config *cfg, const char *labels) {
  const char *dev = sd_config_string(cfg, "segmenter.deviation");
  return *dev ? dev : labels;
}

static sd_status deviation_open(MPI_Comm comm, const char *path, const sd_stack_info *in,
                                int need, hid_t *f, hid_t *ds, int *has) {
  return sd_segment_open_deviation(comm, path, in->n, in->height, in->width, need, H5P_DEFAULT,
                                   f, ds, has);
}

sd_status sd_segment_has_deviation(MPI_Comm comm, const char *path, const sd_stack_info *in,
                                   int *has) {
  hid_t f = H5I_INVALID_HID, ds = H5I_INVALID_HID;
  sd_status st = deviation_open(comm, path, in, 0, &f, &ds, has);
  sd_h5_close(&ds);
  sd_h5_close(&f);
  return st;
}

sd_status sd_segment_attach_deviation(MPI_Comm comm, const char *path, const sd_stack_info *in,
                                      sd_train_data *d) {
  hid_t f = H5I_INVALID_HID, ds = H5I_INVALID_HID, fs = H5I_INVALID_HID, ms = H5I_INVALID_HID;
  int has = 0;
  sd_status st = deviation_open(comm, path, in, 1, &f, &ds, &has);
  const size_t npx = (size_t)in->height * in->width;
  float *both = NULL;
  if (st == SD_OK && d->channels != 1)
    st = SD_ERROR(SD_ERR_INTERNAL, "deviation attached to data of %d channels", d->channels);
  if (st == SD_OK) {
    both = sd_malloc((size_t)(d->n ? d->n : 1) * 2 * npx, sizeof *both, "image and deviation");
    fs = H5Dget_space(ds);
    hsize_t mdims[1] = {npx};
    ms = H5Screate_simple(1, mdims, NULL);
    st = both ? SD_OK : SD_ERR_NOMEM;
  }
  double t = sd_profile_phase_begin();
  for (int64_t i = 0; st == SD_OK && i < d->n; i++) {
    float *dst = both + (size_t)i * 2 * npx;
    memcpy(dst, d->images + (size_t)i * npx, npx * sizeof *dst);
    hsize_t start[3] = {(hsize_t)d->index[i], 0, 0},
            count[3] = {1, (hsize_t)in->height, (hsize_t)in->width};
    if (H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        H5Dread(ds, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, dst + npx) < 0)
      st = SD_H5_ERROR(SD_ERR_IO, "cannot read %s:/deviation image %lld", path,
                       (long long)d->index[i]);
    for (size_t p = 0; st == SD_OK && p < npx; p++)
      if (!isfinite(dst[npx + p]))
        st = SD_ERROR(SD_ERR_FORMAT, "%s:/deviation image %lld holds a non-finite value", path,
                      (long long)d->index[i]);
  }
  sd_profile_phase_end(SD_PHASE_IO, t);
  sd_profile_add_bytes(SD_PHASE_IO, d->n * (int64_t)npx * 4);
  if (st == SD_OK) {
    free(d->images);
    d->images = both;
    d->channels = 2;
  } else
    free(both);
  sd_h5_close(&ms);
  sd_h5_close(&fs);
  sd_h5_close(&ds);
  sd_h5_close(&f);
  return sd_par_agree(comm, st);
}

/* The input of a new U-Net from segmenter.input: 2 channels (image and deviation) or 1, and the
 * file the deviation comes from (segmenter.deviation, else the labels file). */
static sd_status input_channels(const sd_app *app, const sd_stack_info *in, const char *labels,
                                int *channels, const char **devfile) {
  const sd_config *cfg = app->cfg;
  const char *mode = sd_config_string(cfg, "segmenter.input");
  const char *dev = deviation_file(cfg, labels);
  *channels = 1;
  *devfile = dev;
  if (!strcmp(mode, "image"))
    return SD_OK;
  if (!*dev) {
    if (!strcmp(mode, "auto"))
      return SD_OK;
    return SD_ERROR(SD_ERR_CONFIG,
                    "segmenter.input = image+deviation needs the deviation from the bulk lattice: "
                    "give --labels pseudo.h5 or --set segmenter.deviation=pseudo.h5 (the output "
                    "of `stemdefect pseudolabel` on the training stack)");
  }
  int has = 0;
  SD_CHECK(sd_segment_has_deviation(app->comm, dev, in, &has));
  if (!has && strcmp(mode, "auto") != 0)
    return SD_ERROR(SD_ERR_ARG,
                    "segmenter.input = image+deviation, but %s has no /deviation (expected the "
                    "output of `stemdefect pseudolabel` on the training stack)",
                    dev);
  *channels = has ? 2 : 1;
  return SD_OK;
}

/* train/validation/test split stratified by image label (unknown labels as one stratum) */
static sd_status make_split(const sd_config *cfg, sd_stack *stack, int8_t **part) {
  const sd_stack_info *in = sd_stack_get_info(stack);
  int64_t n = in->n;
  char k[64];
  double fv = sd_config_float(cfg, "segmenter.val_fraction");
  double ft = sd_config_float(cfg, "segmenter.test_fraction");
  if (fv + ft >= 1.0)
    return SD_ERROR(SD_ERR_CONFIG,
                    "segmenter.val_fraction + segmenter.test_fraction = %g leaves no training "
                    "images (must be < 1)",
                    fv + ft);
  int32_t *lab = sd_malloc((size_t)(n ? n : 1), sizeof *lab, "labels");
  *part = sd_malloc((size_t)(n ? n : 1), 1, "split");
  if (!lab || !*part) {
    free(lab);
    return SD_ERR_NOMEM;
  }
  sd_status st = sd_stack_read(stack, 0, n, NULL, lab, NULL);
  int C = in->num_classes + 1;
  for (int64_t i = 0; st == SD_OK && i < n; i++)
    lab[i] = lab[i] < 0 ? in->num_classes : lab[i];
  if (st == SD_OK)
    st = sd_split_stratified(lab, n, C, 1.0 - fv - ft, fv,
                             (uint64_t)sd_config_int(cfg, sd_segment_key(cfg, "seed", k)), *part);
  free(lab);
  return st;
}

sd_status sd_segment_train_run(sd_app *app) {
  const sd_config *cfg = app->cfg;
  char k[64];
  const char *data = sd_config_string(cfg, sd_segment_key(cfg, "data", k));
  const char *output = sd_config_string(cfg, sd_segment_key(cfg, "output", k));
  const char *labels = sd_config_string(cfg, "segmenter.labels");
  if (!*data)
    return SD_ERROR(SD_ERR_ARG,
                    "no training data: give --data STACK (an image stack from import or simulate)");
  if (!*output)
    return SD_ERROR(SD_ERR_ARG, "no output: give --output MODEL");
  char ckpt[4200];
  snprintf(ckpt, sizeof ckpt, "%s", sd_config_string(cfg, sd_segment_key(cfg, "checkpoint", k)));
  if (!ckpt[0])
    snprintf(ckpt, sizeof ckpt, "%s.ckpt", output);
  int resume = sd_config_bool(cfg, sd_segment_key(cfg, "resume", k));
  uint64_t seed = (uint64_t)sd_config_int(cfg, sd_segment_key(cfg, "seed", k));
  int depth = (int)sd_config_int(cfg, "segmenter.depth");
  sd_profile_stage_begin("train");

  sd_stack *stack = NULL;
  sd_nn_model *m = NULL;
  int8_t *part = NULL;
  sd_train_data tr, va;
  memset(&tr, 0, sizeof tr);
  memset(&va, 0, sizeof va);
  sd_ckpt_state state;
  memset(&state, 0, sizeof state);
  sd_status st;
  SD_CHECK_GOTO(st, sd_stack_open(app->comm, data, &stack), done);
  const sd_stack_info *in = sd_stack_get_info(stack);
  if (in->num_classes < 2 || in->num_classes > SD_CKPT_MAX_CLASSES) {
    st = SD_ERROR(SD_ERR_ARG,
                  "%s has %d classes; the U-Net needs 2..%d (class 0 = bulk = background)", data,
                  in->num_classes, SD_CKPT_MAX_CLASSES);
    goto done;
  }
  if (in->height != in->width || in->height % (1 << depth) != 0) {
    st = SD_ERROR(SD_ERR_ARG,
                  "%s holds %dx%d images; U-Net training needs square images with a side divisible "
                  "by 2^segmenter.depth = %d (import with --crop or --resize)",
                  data, in->width, in->height, 1 << depth);
    goto done;
  }
  if (!*labels && !in->has_masks) {
    st = SD_ERROR(
        SD_ERR_ARG,
        "%s has no /masks: give --labels FILE with /masks (e.g. the output of pseudolabel)", data);
    goto done;
  }
  int normalize = 0;
  SD_CHECK_GOTO(st, sd_classify_normalization(app->comm, cfg, stack, &normalize), done);
  SD_CHECK_GOTO(st, sd_par_agree(app->comm, make_split(cfg, stack, &part)), done);

  int S = (int)sd_config_int(cfg, "segmenter.data_shards");
  if (S == 0)
    S = app->size;
  if (S < app->size) {
    st = SD_ERROR(SD_ERR_CONFIG, "segmenter.data_shards = %d is smaller than the %d ranks", S,
                  app->size);
    goto done;
  }
  int B = (int)sd_config_int(cfg, sd_segment_key(cfg, "batch", k));
  if (B % S != 0) {
    st = SD_ERROR(SD_ERR_CONFIG, "%s = %d must be a multiple of the %d data shards", k, B, S);
    goto done;
  }
  int max_local = ((S + app->size - 1) / app->size) * (B / S);

  snprintf(state.task, sizeof state.task, "segment");
  snprintf(state.normalization, sizeof state.normalization, "%s",
           normalize ? "robust_zscore" : "none");
  state.num_classes = in->num_classes;
  for (int c = 0; c < in->num_classes; c++)
    snprintf(state.class_names[c], sizeof state.class_names[c], "%s", in->class_names[c]);
  state.seed = seed;
  state.best_val_loss = INFINITY;
  state.optim = sd_nn_optim_adamw((float)sd_config_float(cfg, sd_segment_key(cfg, "lr", k)),
                                  (float)sd_config_float(cfg, "segmenter.weight_decay"));
  state.optim.clip_norm = (float)sd_config_float(cfg, "segmenter.clip_norm");
  snprintf(state.split_kind, sizeof state.split_kind, "stratified");
  snprintf(state.data_path, sizeof state.data_path, "%s", data);
  state.split = part;
  state.split_n = in->n;

  sd_train_opts opts;
  memset(&opts, 0, sizeof opts);
  opts.task = SD_TRAIN_TASK_SEGMENT;
  opts.epochs = (int)sd_config_int(cfg, sd_segment_key(cfg, "epochs", k));
  opts.batch = B;
  opts.seed = seed;
  opts.schedule = SD_NN_SCHEDULE_COSINE;
  opts.warmup_epochs = sd_config_float(cfg, "segmenter.warmup_epochs");
  opts.min_lr_factor = 0.01f;
  opts.balanced_weights = !strcmp(sd_config_string(cfg, "segmenter.class_weights"), "balanced");
  opts.dice_weight = (float)sd_config_float(cfg, "segmenter.dice_weight");
  opts.mosaic_prob = (float)sd_config_float(cfg, "segmenter.mosaic_prob");
  opts.augment = sd_config_bool(cfg, "segmenter.augment");
  opts.aug.symmetries = 1;
  opts.aug.max_shift = (int)sd_config_int(cfg, "segmenter.max_shift");
  opts.aug.gain_jitter = sd_config_float(cfg, "segmenter.gain_jitter");
  opts.aug.offset_jitter = sd_config_float(cfg, "segmenter.offset_jitter");
  opts.aug.noise_sigma_max = sd_config_float(cfg, "segmenter.noise_sigma");
  opts.checkpoint = ckpt;
  opts.checkpoint_every = (int)sd_config_int(cfg, "segmenter.checkpoint_every");
  opts.max_steps = (int)sd_config_int(cfg, "segmenter.max_steps");
  opts.patience = (int)sd_config_int(cfg, "segmenter.patience");
  opts.prov = &app->prov;

  int channels = 1;
  const char *devfile = "";
  if (!resume)
    SD_CHECK_GOTO(st, input_channels(app, in, labels, &channels, &devfile), done);
  if (resume) {
    sd_ckpt_state saved;
    int c, h, w;
    SD_CHECK_GOTO(st, sd_ckpt_open_model(app->comm, ckpt, &m, &c, &h, &w, &saved), done);
    free(saved.split);
    /* the checkpoint decides the input; a second channel needs the deviation file */
    channels = c;
    devfile = deviation_file(cfg, labels);
    int has = 0;
    if (c == 2 && *devfile)
      SD_CHECK_GOTO(st, sd_segment_has_deviation(app->comm, devfile, in, &has), done);
    if (c == 2 && !has) {
      st = SD_ERROR(SD_ERR_ARG,
                    "checkpoint %s takes the image and its lattice deviation: give --labels "
                    "pseudo.h5 or --set segmenter.deviation=pseudo.h5 (a file with /deviation, "
                    "from `stemdefect pseudolabel`)%s%s",
                    ckpt, *devfile ? "; this one has none: " : "", devfile);
      goto done;
    }
    if (strcmp(saved.task, "segment") != 0 || saved.num_classes != state.num_classes ||
        h != in->height || w != in->width) {
      st = SD_ERROR(SD_ERR_ARG,
                    "checkpoint %s is a '%s' model for %d classes of %dx%d images; the data %s has "
                    "%d of %dx%d",
                    ckpt, saved.task, saved.num_classes, w, h, data, in->num_classes, in->width,
                    in->height);
      goto done;
    }
    SD_CHECK_GOTO(st, sd_nn_model_compile(m, max_local, channels, h, w), done);
    SD_CHECK_GOTO(st, sd_ckpt_load_params(app->comm, ckpt, m, 1, 1, NULL), done);
    state.epoch = saved.epoch;
    state.step = saved.step;
    state.optim = saved.optim;
    state.best_val_loss = saved.best_val_loss;
    state.best_epoch = saved.best_epoch;
    state.bad_epochs = saved.bad_epochs;
    sd_log_info("train: resuming the U-Net from %s at epoch %d, step %lld", ckpt, state.epoch,
                (long long)state.step);
  } else {
    SD_CHECK_GOTO(st,
                  sd_unet_build(&m, depth, (int)sd_config_int(cfg, "segmenter.width"),
                                sd_config_bool(cfg, "segmenter.batchnorm"),
                                (float)sd_config_float(cfg, "segmenter.dropout"), in->num_classes),
                  done);
    SD_CHECK_GOTO(st, sd_nn_model_compile(m, max_local, channels, in->height, in->width), done);
    SD_CHECK_GOTO(st, sd_nn_model_init_params(m, seed), done);
  }

  int own = !*labels;
  SD_CHECK_GOTO(
      st, sd_train_data_load(app->comm, stack, part, SD_SPLIT_PART_TRAIN, S, normalize, own, &tr),
      done);
  SD_CHECK_GOTO(
      st, sd_train_data_load(app->comm, stack, part, SD_SPLIT_PART_VAL, 0, normalize, own, &va),
      done);
  if (!own) {
    SD_CHECK_GOTO(st, read_label_masks(app->comm, labels, in, &tr), done);
    SD_CHECK_GOTO(st, read_label_masks(app->comm, labels, in, &va), done);
  }
  if (channels == 2) {
    SD_CHECK_GOTO(st, sd_segment_attach_deviation(app->comm, devfile, in, &tr), done);
    SD_CHECK_GOTO(st, sd_segment_attach_deviation(app->comm, devfile, in, &va), done);
  }
  sd_log_info("train: U-Net (depth %d) on %lld training images of %dx%d, input %s, masks from "
              "%s, %d classes, batch %d over %d shard(s) on %d rank(s), %zu parameters",
              depth, (long long)tr.n_global, in->width, in->height,
              channels == 2 ? "image + lattice deviation" : "image", own ? data : labels,
              in->num_classes, B, S, app->size, sd_nn_model_trainable_count(m));
  sd_train_install_signal_handlers();
  st = sd_train_run(app->comm, m, &tr, &va, &opts, &state, NULL, 0, NULL);
  if (st == SD_OK) {
    state.finished = 1;
    double t = sd_profile_phase_begin();
    st = sd_ckpt_save(app->comm, output, m, &state, &app->prov);
    sd_profile_phase_end(SD_PHASE_IO, t);
    if (st == SD_OK)
      sd_log_info("train: U-Net written to %s", output);
  }

done:
  sd_profile_stage_end(tr.n);
  sd_train_data_free(&tr);
  sd_train_data_free(&va);
  sd_nn_model_destroy(&m);
  free(part);
  sd_stack_close(&stack, 0);
  return st;
}
