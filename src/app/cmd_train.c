/* cmd_train.c - `stemdefect train --task classify`: data-parallel training of the defect
 * classifier, with optional pretraining on simulated images and transfer learning from a model
 * (--init), checkpoints, --resume and clean stops on SIGTERM/SIGUSR1 (exit code 75). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "classify_common.h"
#include "segment_app.h"
#include "stemdefect/image.h"
#include "stemdefect/log.h"
#include "stemdefect/par.h"
#include "stemdefect/profile.h"
#include "stemdefect/sim.h"
#include "stemdefect/split.h"

static const sd_cli_option train_options[] = {
    {"--task", "train.task", "TASK", NULL, 0},
    {"--data", "classifier.data", "STACK", NULL, 0},
    {"--output", "classifier.output", "MODEL", NULL, 0},
    {"--init", "classifier.init", "MODEL", NULL, 0},
    {"--freeze", "classifier.freeze", "WHAT", NULL, 0},
    {"--resume", "classifier.resume", NULL, NULL, 0},
    {"--epochs", "classifier.epochs", "E", NULL, 0},
    {"--batch", "classifier.batch", "B", NULL, 0},
    {"--lr", "classifier.lr", "LR", NULL, 0},
    {"--split", "classifier.split", "KIND", NULL, 0},
    {"--seed", "classifier.seed", "S", NULL, 0},
    {"--checkpoint", "classifier.checkpoint", "FILE", NULL, 0},
    {"--labels", "segmenter.labels", "FILE", NULL, 0},
    {"--deviation", "segmenter.deviation", "FILE", NULL, 0},
    {NULL, NULL, NULL, NULL, 0}};

/* Simulated pretraining data: shards of the first n simulated images, rendered where they
 * are used (image i depends only on (seed, i)), normalised like real data. */
static sd_status simulated_data(sd_app *app, const sd_sim_params *p, uint64_t seed, int64_t n,
                                int shards, sd_train_data *d) {
  memset(d, 0, sizeof *d);
  int S = shards;
  d->h = d->w = p->size;
  d->n_global = n;
  d->num_shards = S;
  int nloc = 0;
  for (int s = 0; s < S; s++) nloc += (s % app->size) == app->rank;
  d->num_local = nloc;
  d->shard_id = sd_calloc((size_t)nloc + 1, sizeof *d->shard_id, "shards");
  d->shard_first = sd_calloc((size_t)nloc + 1, sizeof *d->shard_first, "shards");
  d->shard_count = sd_calloc((size_t)nloc + 1, sizeof *d->shard_count, "shards");
  if (!d->shard_id || !d->shard_first || !d->shard_count) return SD_ERR_NOMEM;
  int64_t total = 0;
  d->min_shard = n;
  for (int s = 0, j = 0; s < S; s++) {
    int64_t f, c;
    sd_shard_range(n, s, S, &f, &c);
    if (c < d->min_shard) d->min_shard = c;
    if ((s % app->size) != app->rank) continue;
    d->shard_id[j] = s;
    d->shard_first[j] = total;
    d->shard_count[j] = c;
    total += c;
    j++;
  }
  d->n = total;
  size_t npx = (size_t)p->size * p->size;
  d->images = sd_malloc((size_t)(total ? total : 1) * npx, sizeof *d->images, "simulated images");
  d->labels = sd_malloc((size_t)(total ? total : 1), sizeof *d->labels, "simulated labels");
  d->index = sd_malloc((size_t)(total ? total : 1), sizeof *d->index, "simulated indices");
  float *scratch = sd_malloc(npx, sizeof *scratch, "scratch");
  if (!d->images || !d->labels || !d->index || !scratch) {
    free(scratch);
    return SD_ERR_NOMEM;
  }
  sd_status st = SD_OK;
  for (int j = 0; j < nloc && st == SD_OK; j++) {
    int64_t f, c;
    sd_shard_range(n, d->shard_id[j], S, &f, &c);
    for (int64_t i = 0; i < c && st == SD_OK; i++) {
      int64_t li = d->shard_first[j] + i;
      float *img = d->images + (size_t)li * npx;
      st = sd_sim_render(p, seed, f + i, img, NULL, &d->labels[li]);
      if (st == SD_OK) st = sd_normalize_robust(img, npx, scratch);
      d->index[li] = f + i;
    }
  }
  free(scratch);
  return st;
}

static sd_status build_fresh(sd_app *app, int num_classes, sd_nn_model **m) {
  return sd_classifier_build(m, (int)sd_config_int(app->cfg, "classifier.width"),
                             (int)sd_config_int(app->cfg, "classifier.stages"),
                             (int)sd_config_int(app->cfg, "classifier.blocks"),
                             (float)sd_config_float(app->cfg, "classifier.dropout"), num_classes);
}

/* Copies parameters and buffers of equal name and shape from src into dst; counts the rest. */
static int copy_matching(sd_nn_model *dst, const sd_nn_model *src) {
  int skipped = 0;
  for (int pass = 0; pass < 2; pass++) {
    int n = pass ? sd_nn_model_buffer_count(dst) : sd_nn_model_param_count(dst);
    for (int i = 0; i < n; i++) {
      const sd_nn_param *p = pass ? sd_nn_model_buffer(dst, i) : sd_nn_model_param(dst, i);
      int j = pass ? sd_nn_model_find_buffer(src, p->name) : sd_nn_model_find_param(src, p->name);
      const sd_nn_param *q = j < 0 ? NULL : (pass ? sd_nn_model_buffer(src, j) : sd_nn_model_param(src, j));
      if (!q || q->count != p->count || q->ndim != p->ndim ||
          memcmp(q->shape, p->shape, sizeof p->shape) != 0) {
        skipped++;
        continue;
      }
      float *d = pass ? sd_nn_buffer_data(dst, p) : sd_nn_param_data(dst, p);
      const float *s = pass ? sd_nn_buffer_data(src, q) : sd_nn_param_data(src, q);
      memcpy(d, s, p->count * sizeof *d);
    }
  }
  return skipped;
}

static int head_layer(const sd_nn_model *m) {
  for (int i = 0; i < m->num_layers; i++)
    if (!strcmp(m->layers[i].name, "head")) return i;
  return m->num_layers - 1;
}

static sd_status train_run(sd_app *app) {
  const sd_config *cfg = app->cfg;
  if (!strcmp(sd_config_string(cfg, "train.task"), "segment")) return sd_segment_train_run(app);
  const char *data = sd_config_string(cfg, "classifier.data");
  const char *output = sd_config_string(cfg, "classifier.output");
  if (!*data) return SD_ERROR(SD_ERR_ARG, "no training data: give --data STACK (an image stack from import or simulate)");
  char ckpt[4200];
  snprintf(ckpt, sizeof ckpt, "%s", sd_config_string(cfg, "classifier.checkpoint"));
  if (!ckpt[0]) snprintf(ckpt, sizeof ckpt, "%s.ckpt", output);
  int resume = sd_config_bool(cfg, "classifier.resume");
  const char *init = sd_config_string(cfg, "classifier.init");
  uint64_t seed = (uint64_t)sd_config_int(cfg, "classifier.seed");
  sd_profile_stage_begin("train");

  sd_stack *stack = NULL;
  sd_nn_model *m = NULL;
  sd_classify_split split;
  memset(&split, 0, sizeof split);
  sd_train_data tr, va;
  memset(&tr, 0, sizeof tr);
  memset(&va, 0, sizeof va);
  sd_ckpt_state state;
  memset(&state, 0, sizeof state);
  sd_status st;
  SD_CHECK_GOTO(st, sd_stack_open(app->comm, data, &stack), done);
  const sd_stack_info *in = sd_stack_get_info(stack);
  if (in->num_classes < 2 || in->num_classes > SD_CKPT_MAX_CLASSES) {
    st = SD_ERROR(SD_ERR_ARG, "%s has %d classes; training a classifier needs 2..%d", data,
                  in->num_classes, SD_CKPT_MAX_CLASSES);
    goto done;
  }
  if (in->height != in->width) {
    st = SD_ERROR(SD_ERR_ARG, "%s holds %dx%d images; the classifier needs square images (import with --crop or --resize)",
                  data, in->width, in->height);
    goto done;
  }
  int normalize = 0;
  SD_CHECK_GOTO(st, sd_classify_normalization(app->comm, cfg, stack, &normalize), done);
  SD_CHECK_GOTO(st, sd_classify_make_split(app->comm, cfg, stack, &split), done);

  int S = (int)sd_config_int(cfg, "classifier.data_shards");
  if (S == 0) S = app->size;
  if (S < app->size) {
    st = SD_ERROR(SD_ERR_CONFIG, "classifier.data_shards = %d is smaller than the %d ranks", S, app->size);
    goto done;
  }
  int B = (int)sd_config_int(cfg, "classifier.batch");
  if (B % S != 0) {
    st = SD_ERROR(SD_ERR_CONFIG, "classifier.batch = %d must be a multiple of the %d data shards", B, S);
    goto done;
  }
  int max_local = ((S + app->size - 1) / app->size) * (B / S);

  /* state common to every path */
  snprintf(state.task, sizeof state.task, "classify");
  snprintf(state.normalization, sizeof state.normalization, "%s", normalize ? "robust_zscore" : "none");
  state.num_classes = in->num_classes;
  for (int c = 0; c < in->num_classes; c++)
    snprintf(state.class_names[c], sizeof state.class_names[c], "%s", in->class_names[c]);
  state.seed = seed;
  state.best_val_loss = INFINITY;
  const char *opt = sd_config_string(cfg, "classifier.optimizer");
  float lr = (float)sd_config_float(cfg, "classifier.lr");
  float wd = (float)sd_config_float(cfg, "classifier.weight_decay");
  state.optim = !strcmp(opt, "sgd") ? sd_nn_optim_sgd(lr, (float)sd_config_float(cfg, "classifier.momentum"), 1, wd)
                : !strcmp(opt, "adam") ? sd_nn_optim_adam(lr, wd)
                                       : sd_nn_optim_adamw(lr, wd);
  state.optim.clip_norm = (float)sd_config_float(cfg, "classifier.clip_norm");
  snprintf(state.split_kind, sizeof state.split_kind, "%s", split.kind);
  snprintf(state.data_path, sizeof state.data_path, "%s", data);
  state.split = split.part;
  state.split_n = in->n;

  sd_train_opts opts;
  sd_classify_train_opts(cfg, app, &opts);
  opts.checkpoint = ckpt;

  if (resume) {
    /* the checkpoint decides the architecture, the weights, the optimiser and where to go on */
    sd_ckpt_state saved;
    int c, h, w;
    SD_CHECK_GOTO(st, sd_ckpt_open_model(app->comm, ckpt, &m, &c, &h, &w, &saved), done);
    free(saved.split);
    saved.split = NULL;
    if (saved.num_classes != state.num_classes || h != in->height || w != in->width) {
      st = SD_ERROR(SD_ERR_ARG, "checkpoint %s was made for %d classes of %dx%d images, the data %s has %d of %dx%d",
                    ckpt, saved.num_classes, w, h, data, in->num_classes, in->width, in->height);
      goto done;
    }
    SD_CHECK_GOTO(st, sd_nn_model_compile(m, max_local, 1, h, w), done);
    SD_CHECK_GOTO(st, sd_ckpt_load_params(app->comm, ckpt, m, 1, 1, NULL), done);
    state.epoch = saved.epoch;
    state.step = saved.step;
    state.optim = saved.optim;
    state.best_val_loss = saved.best_val_loss;
    state.best_epoch = saved.best_epoch;
    state.bad_epochs = saved.bad_epochs;
    sd_log_info("train: resuming from %s at epoch %d, step %lld", ckpt, state.epoch, (long long)state.step);
  } else {
    SD_CHECK_GOTO(st, build_fresh(app, in->num_classes, &m), done);
    SD_CHECK_GOTO(st, sd_nn_model_compile(m, max_local, 1, in->height, in->width), done);
    SD_CHECK_GOTO(st, sd_nn_model_init_params(m, seed), done);
    if (*init) {
      /* transfer learning: everything of equal name and shape; a new head if classes differ */
      sd_nn_model *src = NULL;
      sd_ckpt_state ist;
      int c, h, w, skipped = 0;
      SD_CHECK_GOTO(st, sd_ckpt_open_model(app->comm, init, &src, &c, &h, &w, &ist), done);
      free(ist.split);
      st = sd_nn_model_compile(src, 1, c, h, w);
      if (st == SD_OK) st = sd_ckpt_load_params(app->comm, init, src, 1, 0, NULL);
      if (st == SD_OK) skipped = copy_matching(m, src);
      sd_nn_model_destroy(&src);
      if (st != SD_OK) goto done;
      int same = ist.num_classes == in->num_classes;
      for (int k = 0; same && k < in->num_classes; k++) same = !strcmp(ist.class_names[k], in->class_names[k]);
      int allowed = same ? 0 : 2; /* head.weight and head.bias */
      if (skipped > allowed) {
        st = SD_ERROR(SD_ERR_ARG,
                      "%s does not match the configured classifier (%d tensors differ); set classifier.width/stages/blocks as when it was trained",
                      init, skipped);
        goto done;
      }
      sd_log_info("train: initialised from %s%s", init,
                  same ? "" : " with a new head for the new classes");
    } else if (sd_config_int(cfg, "classifier.pretrain_count") > 0) {
      /* pretraining on simulated images (simulate section), then a new head */
      sd_sim_params sp;
      SD_CHECK_GOTO(st, sd_simulate_params_from_config(cfg, &sp), done);
      if (sp.size != in->height) {
        st = SD_ERROR(SD_ERR_CONFIG, "simulate.size = %d must equal the data's image size %d for pretraining",
                      sp.size, in->height);
        goto done;
      }
      sd_nn_model *pre = NULL;
      sd_train_data sim;
      int64_t npre = sd_config_int(cfg, "classifier.pretrain_count");
      st = build_fresh(app, sp.num_classes, &pre);
      if (st == SD_OK) st = sd_nn_model_compile(pre, max_local, 1, sp.size, sp.size);
      if (st == SD_OK) st = sd_nn_model_init_params(pre, seed);
      if (st == SD_OK) st = simulated_data(app, &sp, (uint64_t)sd_config_int(cfg, "simulate.seed"), npre, S, &sim);
      st = sd_par_agree(app->comm, st);
      if (st == SD_OK) {
        sd_ckpt_state ps = state;
        ps.num_classes = sp.num_classes;
        for (int k = 0; k < sp.num_classes; k++)
          snprintf(ps.class_names[k], sizeof ps.class_names[k], "%s", sp.classes[k].name);
        ps.split = NULL;
        ps.split_n = 0;
        sd_train_opts po = opts;
        po.epochs = (int)sd_config_int(cfg, "classifier.pretrain_epochs");
        po.checkpoint = "";
        po.patience = 0;
        po.max_steps = 0;
        sd_log_info("train: pretraining on %lld simulated %s images (%d classes) for %d epochs",
                    (long long)npre, sd_sim_material_name(sp.material), sp.num_classes, po.epochs);
        sd_train_data empty;
        memset(&empty, 0, sizeof empty);
        st = sd_train_run(app->comm, pre, &sim, &empty, &po, &ps, NULL, 0, NULL);
      }
      sd_train_data_free(&sim);
      if (st == SD_OK) copy_matching(m, pre);
      sd_nn_model_destroy(&pre);
      if (st != SD_OK) goto done;
      sd_log_info("train: pretrained backbone in place; fine-tuning on %s", data);
    }
    if (!strcmp(sd_config_string(cfg, "classifier.freeze"), "backbone")) {
      if (!*init && sd_config_int(cfg, "classifier.pretrain_count") == 0) {
        st = SD_ERROR(SD_ERR_CONFIG, "classifier.freeze = backbone needs --init MODEL or pretraining (a random backbone would stay random)");
        goto done;
      }
      SD_CHECK_GOTO(st, sd_nn_model_set_trainable(m, 0, head_layer(m) - 1, 0), done);
      sd_log_info("train: backbone frozen; %zu trainable parameters", sd_nn_model_trainable_count(m));
    }
  }

  SD_CHECK_GOTO(st, sd_train_data_load(app->comm, stack, split.part, SD_SPLIT_PART_TRAIN, S, normalize, 0, &tr), done);
  SD_CHECK_GOTO(st, sd_train_data_load(app->comm, stack, split.part, SD_SPLIT_PART_VAL, 0, normalize, 0, &va), done);
  sd_log_info("train: %lld training and %lld validation images (%s split), %d classes, batch %d over %d shard(s) on %d rank(s), %zu parameters",
              (long long)tr.n_global, (long long)va.n_global, split.kind, in->num_classes, B, S,
              app->size, sd_nn_model_trainable_count(m));
  sd_train_install_signal_handlers();
  st = sd_train_run(app->comm, m, &tr, &va, &opts, &state, NULL, 0, NULL);
  if (st == SD_OK) {
    state.finished = 1;
    double t = sd_profile_phase_begin();
    st = sd_ckpt_save(app->comm, output, m, &state, &app->prov);
    sd_profile_phase_end(SD_PHASE_IO, t);
    if (st == SD_OK) sd_log_info("train: model written to %s", output);
  }

done:
  sd_profile_stage_end(tr.n);
  sd_train_data_free(&tr);
  sd_train_data_free(&va);
  sd_nn_model_destroy(&m);
  free(split.part);
  sd_stack_close(&stack, 0);
  return st;
}

const sd_command sd_cmd_train = {
    .name = "train",
    .summary = "train the defect classifier or the segmentation U-Net, data-parallel over MPI ranks",
    .usage = "--task classify|segment --data stack.h5 --output model.h5 [--labels pseudo.h5] [--init model.h5 [--freeze backbone]] [--epochs E] [--batch B] [--resume]",
    .description =
        "Splits the stack (stratified, or grouped so that near-copies stay in one part), normalises\n"
        "each image (robust z-score), augments with the 8 lattice symmetries, shifts, intensity\n"
        "jitter and noise, and trains a residual CNN with gradients summed over ranks. With\n"
        "classifier.pretrain_count > 0 it first pretrains on simulated images (simulate section);\n"
        "with --init it starts from a model (new head when the classes differ). Checkpoints are\n"
        "written every classifier.checkpoint_every epochs and on SIGTERM/SIGUSR1 (then exit 75);\n"
        "--resume continues exactly where the checkpoint stopped.\n"
        "--task segment trains the U-Net (segmenter section) on the per-pixel class maps /masks of\n"
        "--labels FILE (e.g. pseudo.h5; default: the stack's own /masks), with cross-entropy +\n"
        "Dice, 2x2 multi-defect mosaics and the same augmentation applied to image and mask; the\n"
        "flags --data --output --epochs --batch --lr --seed --resume --checkpoint apply to it.",
    .sections = "train,classifier,segmenter,general",
    .positional_key = NULL,
    .options = train_options,
    .run = train_run,
};
