/* cmd_run.c - `stemdefect run`: the whole study in one run directory.
 *
 * Runs the stages in order, each one the same code as its subcommand, with its inputs and
 * outputs at fixed names inside the run directory:
 *   data        import (when import.input is given) or simulate  -> stack.h5
 *   classify    train --task classify, then evaluate              -> classifier.h5, classifier_metrics.json
 *   pseudolabel bulk-lattice pseudo-labels (IoU against /masks if any)  -> pseudo.h5 [, pseudo_metrics.json]
 *   segmenter   train --task segment on them, then evaluate           -> unet.h5, unet_metrics.json
 *   segment     tiled U-Net heatmaps and overlays                      -> heatmaps.h5, overlays/
 *   describe    region descriptors                                     -> descriptors.h5
 *   cluster     PCA, k-means over k, silhouette                        -> clusters.h5, figures/cluster-*
 *   embed       Barnes-Hut t-SNE                                       -> embedding.h5, figures/tsne*.png
 *   report      the HTML report of everything above                 -> report.html
 * A stage whose outputs exist and whose fingerprint is current is skipped. The fingerprint
 * (FNV-1a 64) covers the stage name, the program version, the resolved configuration of the
 * sections the stage reads (with the run's paths filled in), the fingerprints of the stages it
 * reads from, and for imported files their paths, sizes and modification times. It is stored in
 * <dir>/.state/<stage> after the stage completes, so a re-run after a failure or a preemption
 * resumes at the first stage that is missing or stale; a training stage with a checkpoint and no
 * model resumes from the checkpoint. Each stage writes its JSON profile to
 * <dir>/profile/<stage>.json.
 *
 * Collective: every rank runs every stage; decisions (skip, resume) are taken on rank 0 and
 * broadcast, so the ranks never disagree about which collective comes next.
 */
#include <errno.h>
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "stemdefect/log.h"
#include "stemdefect/par.h"
#include "stemdefect/profile.h"
#include "stemdefect/train.h"
#include "stemdefect/version.h"

#define RUN_PATH_MAX 4096

static const sd_cli_option run_options[] = {
    {"--dir", "run.dir", "DIR", NULL, 0},
    {"--stages", "run.stages", "LIST", "stages to run, comma separated or repeated (default: all)", 2},
    {"--force", "run.force", NULL, NULL, 0},
    {NULL, NULL, NULL, NULL, 0}};

typedef struct run_ctx {
  sd_app *app;
  char dir[RUN_PATH_MAX];
  uint64_t fp[32]; /* fingerprint of each stage once decided */
} run_ctx;

typedef struct run_stage {
  const char *name;
  const char *sections;      /* config sections that define its result */
  const char *inputs;        /* stages it reads from, comma separated ("" = none) */
  const char *outputs;       /* files it writes in the run directory, comma separated */
  const char *paths;         /* "key=file,..." set before the stage (files in the run directory) */
  const sd_command *cmd;     /* the command it runs, when execute is NULL */
  sd_status (*configure)(run_ctx *r);             /* more settings, or NULL */
  sd_status (*execute)(run_ctx *r, int resume);   /* runs it, or NULL: cmd */
  const char *checkpoint;    /* file whose presence (without the outputs) means: resume */
} run_stage;

/* ---- small helpers ---------------------------------------------------------------------- */

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
  const unsigned char *p = data;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}
static uint64_t fnv1a_str(uint64_t h, const char *s) { return fnv1a(h, s, strlen(s) + 1); }

static sd_status path_in(const run_ctx *r, const char *name, char *out, size_t cap) {
  int n = snprintf(out, cap, "%s/%s", r->dir, name);
  if (n < 0 || (size_t)n >= cap) return SD_ERROR(SD_ERR_ARG, "run directory path too long: %s", r->dir);
  return SD_OK;
}

static sd_status set_key(run_ctx *r, const char *key, const char *value) {
  return sd_config_set(r->app->cfg, key, value, "run (stage paths)");
}

static sd_status set_path(run_ctx *r, const char *key, const char *file) {
  char p[RUN_PATH_MAX + 64];
  SD_CHECK(path_in(r, file, p, sizeof p));
  return set_key(r, key, p);
}

static sd_status mkdir_p(const char *path) {
  char tmp[RUN_PATH_MAX + 64];
  int n = snprintf(tmp, sizeof tmp, "%s", path);
  if (n < 0 || (size_t)n >= sizeof tmp) return SD_ERROR(SD_ERR_ARG, "path too long: %s", path);
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(tmp, 0777) != 0 && errno != EEXIST)
      return SD_ERROR(SD_ERR_IO, "cannot create directory %s: %s", tmp, strerror(errno));
    *p = '/';
  }
  if (mkdir(tmp, 0777) != 0 && errno != EEXIST)
    return SD_ERROR(SD_ERR_IO, "cannot create directory %s: %s", tmp, strerror(errno));
  struct stat sb;
  if (stat(tmp, &sb) != 0 || !S_ISDIR(sb.st_mode))
    return SD_ERROR(SD_ERR_IO, "%s exists and is not a directory", tmp);
  return SD_OK;
}

/* Runs one subcommand in this process with the current configuration. */
static sd_status run_command(run_ctx *r, const sd_command *cmd) {
  sd_app *app = r->app;
  const sd_command *self = app->cmd;
  char *yaml = sd_config_to_yaml(app->cfg, NULL);
  if (!yaml) return SD_ERROR(SD_ERR_NOMEM, "resolved configuration");
  free(app->config_yaml);
  app->config_yaml = yaml;
  app->prov.config_yaml = yaml;
  app->prov.command = cmd->name;
  app->cmd = cmd;
  sd_status st = cmd->run(app);
  app->cmd = self;
  app->prov.command = self->name;
  return sd_par_agree(app->comm, st);
}

/* ---- the stages ------------------------------------------------------------------------- */

static int data_is_import(const run_ctx *r) {
  return sd_config_list_length(r->app->cfg, "import.input") > 0;
}

static sd_status data_configure(run_ctx *r) {
  SD_CHECK(set_path(r, "import.output", "stack.h5"));
  SD_CHECK(set_path(r, "simulate.output", "stack.h5"));
  if (!data_is_import(r)) SD_CHECK(set_path(r, "simulate.preview", "stack_preview.png"));
  return SD_OK;
}
static sd_status data_execute(run_ctx *r, int resume) {
  (void)resume;
  return run_command(r, data_is_import(r) ? &sd_cmd_import : &sd_cmd_simulate);
}

static sd_status classify_configure(run_ctx *r) {
  SD_CHECK(set_key(r, "train.task", "classify"));
  SD_CHECK(set_path(r, "classifier.data", "stack.h5"));
  SD_CHECK(set_path(r, "classifier.output", "classifier.h5"));
  SD_CHECK(set_path(r, "classifier.checkpoint", "classifier.h5.ckpt"));
  SD_CHECK(set_path(r, "classifier.model", "classifier.h5"));
  SD_CHECK(set_path(r, "classifier.metrics", "classifier_metrics.json"));
  SD_CHECK(set_path(r, "classifier.predictions", "classifier_predictions.h5"));
  return set_key(r, "classifier.resume", "false");
}
static sd_status classify_execute(run_ctx *r, int resume) {
  SD_CHECK(set_key(r, "classifier.resume", resume ? "true" : "false"));
  sd_status st = run_command(r, &sd_cmd_train);
  SD_CHECK(set_key(r, "classifier.resume", "false"));
  SD_CHECK(st);
  SD_CHECK(run_command(r, &sd_cmd_evaluate));
  return run_command(r, &sd_cmd_predict);
}

/* Rank 0 looks into stack.h5 (serial HDF5): image count and whether it holds /masks;
 * broadcast to all. Missing file: n = -1. */
static void stack_facts(run_ctx *r, int64_t *n, int *has_masks) {
  int64_t v[2] = {-1, 0};
  if (r->app->rank == 0) {
    char p[RUN_PATH_MAX + 64];
    if (path_in(r, "stack.h5", p, sizeof p) == SD_OK && access(p, R_OK) == 0) {
      hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
      hid_t d = f >= 0 ? H5Dopen2(f, "/images", H5P_DEFAULT) : -1;
      hid_t sp = d >= 0 ? H5Dget_space(d) : -1;
      hsize_t dims[3] = {0, 0, 0};
      if (sp >= 0 && H5Sget_simple_extent_ndims(sp) == 3 && H5Sget_simple_extent_dims(sp, dims, NULL) >= 0)
        v[0] = (int64_t)dims[0];
      v[1] = f >= 0 && H5Lexists(f, "/masks", H5P_DEFAULT) > 0;
      if (sp >= 0) H5Sclose(sp);
      if (d >= 0) H5Dclose(d);
      if (f >= 0) H5Fclose(f);
      H5Eclear2(H5E_DEFAULT);
    }
  }
  MPI_Bcast(v, 2, MPI_INT64_T, 0, r->app->comm);
  *n = v[0];
  *has_masks = (int)v[1];
}

static sd_status pseudolabel_configure(run_ctx *r) {
  int64_t n;
  int masks;
  stack_facts(r, &n, &masks);
  /* quality against the truth only where the stack has one (simulated data) */
  if (masks) return set_path(r, "pseudolabel.evaluate", "pseudo_metrics.json");
  return set_key(r, "pseudolabel.evaluate", "");
}

static sd_status segmenter_configure(run_ctx *r) {
  SD_CHECK(set_key(r, "train.task", "segment"));
  return set_key(r, "segmenter.resume", "false");
}
static sd_status segmenter_execute(run_ctx *r, int resume) {
  SD_CHECK(set_key(r, "segmenter.resume", resume ? "true" : "false"));
  sd_status st = run_command(r, &sd_cmd_train);
  SD_CHECK(set_key(r, "segmenter.resume", "false"));
  SD_CHECK(st);
  /* U-Net evaluate reads the evaluate keys of the classifier section: point them at the U-Net
   * for this call, then back at the classifier */
  char model[RUN_PATH_MAX + 64], data[RUN_PATH_MAX + 64], metrics[RUN_PATH_MAX + 64];
  snprintf(model, sizeof model, "%s", sd_config_string(r->app->cfg, "classifier.model"));
  snprintf(data, sizeof data, "%s", sd_config_string(r->app->cfg, "classifier.data"));
  snprintf(metrics, sizeof metrics, "%s", sd_config_string(r->app->cfg, "classifier.metrics"));
  SD_CHECK(set_path(r, "classifier.model", "unet.h5"));
  SD_CHECK(set_path(r, "classifier.data", "stack.h5"));
  SD_CHECK(set_path(r, "classifier.metrics", "unet_metrics.json"));
  st = run_command(r, &sd_cmd_evaluate);
  SD_CHECK(set_key(r, "classifier.model", model));
  SD_CHECK(set_key(r, "classifier.data", data));
  SD_CHECK(set_key(r, "classifier.metrics", metrics));
  return st;
}

static sd_status report_configure(run_ctx *r) { return set_key(r, "report.run", r->dir); }

static sd_status segment_configure(run_ctx *r) {
  /* overlays of 6 images spread over the stack */
  int64_t n;
  int masks;
  stack_facts(r, &n, &masks);
  char list[256] = "";
  size_t len = 0;
  int k = n < 6 ? (int)(n > 0 ? n : 0) : 6;
  for (int i = 0; i < k; i++)
    len += (size_t)snprintf(list + len, sizeof list - len, "%s%lld", i ? "," : "",
                            (long long)(k > 1 ? (n - 1) * i / (k - 1) : 0));
  return set_key(r, "segment.overlay_images", list);
}
static sd_status segment_execute(run_ctx *r, int resume) {
  (void)resume;
  char p[RUN_PATH_MAX + 64];
  SD_CHECK(path_in(r, "overlays", p, sizeof p));
  SD_CHECK(sd_par_agree(r->app->comm, r->app->rank == 0 ? mkdir_p(p) : SD_OK));
  return run_command(r, &sd_cmd_segment);
}

static const run_stage stages[] = {
    {"data", "import,simulate", "", "stack.h5", "", NULL, data_configure, data_execute, NULL},
    {"classify", "train,classifier,simulate", "data",
     "classifier.h5,classifier_metrics.json,classifier_predictions.h5", "", NULL,
     classify_configure, classify_execute, "classifier.h5.ckpt"},
    {"pseudolabel", "pseudolabel", "data", "pseudo.h5",
     "pseudolabel.data=stack.h5,pseudolabel.output=pseudo.h5,"
     "pseudolabel.preview=figures/pseudolabel_preview.png",
     &sd_cmd_pseudolabel, pseudolabel_configure, NULL, NULL},
    {"segmenter", "train,segmenter,segment", "data,pseudolabel", "unet.h5,unet_metrics.json",
     "segmenter.data=stack.h5,segmenter.labels=pseudo.h5,segmenter.output=unet.h5,"
     "segmenter.checkpoint=unet.h5.ckpt,segment.deviation=pseudo.h5",
     NULL, segmenter_configure, segmenter_execute, "unet.h5.ckpt"},
    {"segment", "segment", "data,segmenter,pseudolabel", "heatmaps.h5",
     "segment.model=unet.h5,segment.data=stack.h5,segment.output=heatmaps.h5,"
     "segment.deviation=pseudo.h5,segment.overlay=overlays",
     NULL, segment_configure, segment_execute, NULL},
    {"describe", "describe", "data,segment,pseudolabel", "descriptors.h5",
     "describe.heatmaps=heatmaps.h5,describe.data=stack.h5,describe.residual=pseudo.h5,"
     "describe.output=descriptors.h5",
     &sd_cmd_describe, NULL, NULL, NULL},
    {"cluster", "cluster", "describe", "clusters.h5",
     "cluster.descriptors=descriptors.h5,cluster.output=clusters.h5,cluster.figures=figures/cluster-",
     &sd_cmd_cluster, NULL, NULL, NULL},
    {"embed", "embed", "cluster", "embedding.h5",
     "embed.input=clusters.h5,embed.output=embedding.h5,embed.figure=figures/tsne.png",
     &sd_cmd_embed, NULL, NULL, NULL},
    {"report", "report", "data,classify,pseudolabel,segmenter,segment,describe,cluster,embed",
     "report.html", "report.output=report.html", &sd_cmd_report, report_configure, NULL, NULL},
};
#define NUM_STAGES ((int)(sizeof stages / sizeof stages[0]))

/* 1 when the comma-separated list holds name as one whole item. */
static int list_has(const char *list, const char *name) {
  size_t n = strlen(name);
  for (const char *p = list; *p;) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == n && !strncmp(p, name, n)) return 1;
    if (!e) break;
    p = e + 1;
  }
  return 0;
}

static int stage_index(const char *name) {
  for (int i = 0; i < NUM_STAGES; i++)
    if (!strcmp(stages[i].name, name)) return i;
  return -1;
}

static void stage_names(char *buf, size_t cap) {
  size_t len = 0;
  buf[0] = 0;
  for (int i = 0; i < NUM_STAGES && len < cap; i++)
    len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", stages[i].name);
}

/* Sets the stage's "key=file" paths, then its own settings. */
static sd_status stage_configure(run_ctx *r, const run_stage *s) {
  char spec[1024];
  snprintf(spec, sizeof spec, "%s", s->paths);
  for (char *save = NULL, *tok = strtok_r(spec, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(tok, '=');
    if (!eq) return SD_ERROR(SD_ERR_INTERNAL, "stage %s: bad path spec '%s'", s->name, tok);
    *eq = 0;
    SD_CHECK(set_path(r, tok, eq + 1));
  }
  return s->configure ? s->configure(r) : SD_OK;
}

static sd_status stage_execute(run_ctx *r, const run_stage *s, int resume) {
  return s->execute ? s->execute(r, resume) : run_command(r, s->cmd);
}

/* ---- fingerprints and state ------------------------------------------------------------- */

/* Fingerprint of stage i (after its configure): rank 0 computes, everybody gets it. */
static uint64_t stage_fingerprint(run_ctx *r, int i) {
  const run_stage *s = &stages[i];
  uint64_t h = 1469598103934665603ull;
  h = fnv1a_str(h, s->name);
  h = fnv1a_str(h, SD_VERSION);
  char secs[256];
  snprintf(secs, sizeof secs, "%s", s->sections);
  for (char *save = NULL, *tok = strtok_r(secs, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    char *y = sd_config_to_yaml(r->app->cfg, tok);
    if (y) h = fnv1a_str(h, y);
    free(y);
  }
  char ins[256];
  snprintf(ins, sizeof ins, "%s", s->inputs);
  for (char *save = NULL, *tok = strtok_r(ins, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    int j = stage_index(tok);
    if (j >= 0) h = fnv1a(h, &r->fp[j], sizeof r->fp[j]);
  }
  if (i == stage_index("data") && data_is_import(r)) {
    int n = sd_config_list_length(r->app->cfg, "import.input");
    for (int k = 0; k < n; k++) {
      const char *p = sd_config_list_item(r->app->cfg, "import.input", k);
      struct stat sb;
      h = fnv1a_str(h, p);
      if (stat(p, &sb) == 0) {
        int64_t v[2] = {(int64_t)sb.st_size, (int64_t)sb.st_mtime};
        h = fnv1a(h, v, sizeof v);
      }
    }
  }
  return h;
}

/* 1 when the state file at path starts with "fingerprint <fp>". */
static int fingerprint_file_is(const char *path, uint64_t fp) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  unsigned long long stored = 0;
  int ok = fscanf(f, "fingerprint %llx", &stored) == 1;
  fclose(f);
  return ok && stored == fp;
}

/* 1 when every output of stage i exists and the stored fingerprint equals fp (rank 0). */
static int stage_current(const run_ctx *r, int i, uint64_t fp) {
  char outs[512], p[RUN_PATH_MAX + 64];
  snprintf(outs, sizeof outs, "%s", stages[i].outputs);
  for (char *save = NULL, *tok = strtok_r(outs, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    if (path_in(r, tok, p, sizeof p) != SD_OK || access(p, R_OK) != 0) return 0;
  }
  snprintf(p, sizeof p, "%s/.state/%s", r->dir, stages[i].name);
  return fingerprint_file_is(p, fp);
}

/* 1 when stage i was started with fingerprint fp (<dir>/.state/<stage>.started), did not
 * finish, and left a checkpoint: then it resumes (rank 0). A checkpoint of a run with another
 * configuration is not resumed. */
static int stage_resumable(const run_ctx *r, int i, uint64_t fp) {
  if (!stages[i].checkpoint) return 0;
  char p[RUN_PATH_MAX + 64];
  if (path_in(r, stages[i].checkpoint, p, sizeof p) != SD_OK || access(p, R_OK) != 0) return 0;
  snprintf(p, sizeof p, "%s/.state/%s.started", r->dir, stages[i].name);
  return fingerprint_file_is(p, fp);
}

/* Rank 0 records that stage i starts with fingerprint fp. */
static sd_status stage_mark_started(const run_ctx *r, int i, uint64_t fp) {
  char p[RUN_PATH_MAX + 64];
  snprintf(p, sizeof p, "%s/.state/%s.started", r->dir, stages[i].name);
  FILE *f = fopen(p, "w");
  if (!f) return SD_ERROR(SD_ERR_IO, "cannot write %s: %s", p, strerror(errno));
  fprintf(f, "fingerprint %016llx\n", (unsigned long long)fp);
  if (fclose(f) != 0) return SD_ERROR(SD_ERR_IO, "cannot write %s", p);
  return SD_OK;
}

/* Rank 0 writes <dir>/.state/<stage> atomically. */
static sd_status stage_mark_done(const run_ctx *r, int i, uint64_t fp, double seconds) {
  char p[RUN_PATH_MAX + 64], tmp[RUN_PATH_MAX + 96];
  snprintf(p, sizeof p, "%s/.state/%s", r->dir, stages[i].name);
  snprintf(tmp, sizeof tmp, "%s.tmp-%ld", p, (long)getpid());
  FILE *f = fopen(tmp, "w");
  if (!f) return SD_ERROR(SD_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
  time_t now = time(NULL);
  char when[32];
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
  fprintf(f, "fingerprint %016llx\nstage %s\nfinished %s\nseconds %.3f\nranks %d\nversion %s\ngit %s\n",
          (unsigned long long)fp, stages[i].name, when, seconds, r->app->size, SD_VERSION,
          SD_GIT_COMMIT);
  int bad = fclose(f) != 0;
  if (bad || rename(tmp, p) != 0) {
    unlink(tmp);
    return SD_ERROR(SD_ERR_IO, "cannot write %s", p);
  }
  return SD_OK;
}

/* ---- the command ------------------------------------------------------------------------ */

static sd_status resolve_dir(run_ctx *r) {
  const char *dir = sd_config_string(r->app->cfg, "run.dir");
  int n;
  if (dir && *dir) {
    n = snprintf(r->dir, sizeof r->dir, "%s", dir);
  } else {
    const char *cfg = r->app->config_path;
    char name[256] = "default";
    if (cfg) {
      const char *b = strrchr(cfg, '/');
      snprintf(name, sizeof name, "%s", b ? b + 1 : cfg);
      char *dot = strrchr(name, '.');
      if (dot && dot != name) *dot = 0;
    }
    n = snprintf(r->dir, sizeof r->dir, "runs/%s", name);
  }
  if (n < 0 || (size_t)n >= sizeof r->dir) return SD_ERROR(SD_ERR_ARG, "run.dir is too long");
  size_t len = strlen(r->dir);
  while (len > 1 && r->dir[len - 1] == '/') r->dir[--len] = 0;
  return SD_OK;
}

static sd_status run_run(sd_app *app) {
  run_ctx r;
  memset(&r, 0, sizeof r);
  r.app = app;
  SD_CHECK(resolve_dir(&r));

  /* which stages */
  int want[NUM_STAGES];
  int nsel = sd_config_list_length(app->cfg, "run.stages");
  char names[256];
  stage_names(names, sizeof names);
  for (int i = 0; i < NUM_STAGES; i++) want[i] = nsel == 0;
  for (int k = 0; k < nsel; k++) {
    /* each item may itself be a comma list (--stages data,classify) */
    char item[512];
    snprintf(item, sizeof item, "%s", sd_config_list_item(app->cfg, "run.stages", k));
    for (char *save = NULL, *s = strtok_r(item, ", ", &save); s; s = strtok_r(NULL, ", ", &save)) {
      int i = stage_index(s);
      if (i < 0)
        return SD_ERROR(SD_ERR_CONFIG, "run.stages: unknown stage '%s' (from %s); the stages are: %s",
                        s, sd_config_origin(app->cfg, "run.stages"), names);
      want[i] = 1;
    }
  }
  nsel = 0;
  for (int i = 0; i < NUM_STAGES; i++) nsel += want[i];
  int force = sd_config_bool(app->cfg, "run.force");

  /* the directory: created by rank 0, agreed by all */
  sd_status st = SD_OK;
  if (app->rank == 0) {
    char sub[RUN_PATH_MAX + 64];
    st = mkdir_p(r.dir);
    if (st == SD_OK) {
      snprintf(sub, sizeof sub, "%s/.state", r.dir);
      st = mkdir_p(sub);
    }
    if (st == SD_OK) {
      snprintf(sub, sizeof sub, "%s/profile", r.dir);
      st = mkdir_p(sub);
    }
    if (st == SD_OK) {
      snprintf(sub, sizeof sub, "%s/figures", r.dir);
      st = mkdir_p(sub);
    }
    if (st == SD_OK && access(r.dir, W_OK) != 0)
      st = SD_ERROR(SD_ERR_IO, "run directory %s is not writable", r.dir);
  }
  SD_CHECK(sd_par_agree(app->comm, st));
  /* general.profile would be written by the front end for the last stage only: run writes
   * one profile per stage instead */
  char summary[RUN_PATH_MAX];
  snprintf(summary, sizeof summary, "%s", sd_config_string(app->cfg, "general.profile"));
  SD_CHECK(sd_config_set(app->cfg, "general.profile", "", "run"));
  /* SIGTERM/SIGUSR1 (Slurm's warning before a time limit) at any time: a training stage
   * checkpoints and exits; any other stage finishes, and run stops before the next one */
  sd_train_install_signal_handlers();
  double secs_of[NUM_STAGES];
  int ran_of[NUM_STAGES];
  for (int i = 0; i < NUM_STAGES; i++) {
    secs_of[i] = 0;
    ran_of[i] = -1;
  }
  sd_log_info("run: %d stage(s) in %s on %d rank(s): %s", nsel ? nsel : NUM_STAGES, r.dir,
              app->size, names);

  int ran = 0, skipped = 0;
  for (int i = 0; i < NUM_STAGES; i++) {
    const run_stage *s = &stages[i];
    SD_CHECK(stage_configure(&r, s));
    r.fp[i] = stage_fingerprint(&r, i);
    /* rank 0 decides: 0 = skip, 1 = run, 2 = run resuming from a checkpoint, 3 = missing input */
    int decision = 0;
    if (app->rank == 0) {
      int current = stage_current(&r, i, r.fp[i]);
      if (!want[i]) decision = current ? 0 : 3;
      else if (current && !force) decision = 0;
      else decision = !force && stage_resumable(&r, i, r.fp[i]) ? 2 : 1;
    }
    uint64_t fp = r.fp[i];
    MPI_Bcast(&fp, 1, MPI_UINT64_T, 0, app->comm);
    MPI_Bcast(&decision, 1, MPI_INT, 0, app->comm);
    r.fp[i] = fp;
    if (decision == 3) {
      /* not selected and not current: fine unless a selected later stage needs it */
      for (int j = i + 1; j < NUM_STAGES; j++)
        if (want[j] && list_has(stages[j].inputs, s->name))
          return SD_ERROR(SD_ERR_ARG,
                          "stage '%s' needs the outputs of stage '%s' (%s in %s), which are missing "
                          "or out of date: run that stage too (add it to --stages)",
                          stages[j].name, s->name, s->outputs, r.dir);
      continue;
    }
    if (decision == 0) {
      if (want[i]) {
        sd_log_info("run: stage %-10s up to date, skipped", s->name);
        skipped++;
      }
      continue;
    }
    sd_log_info("run: stage %-10s %s", s->name, decision == 2 ? "resuming from its checkpoint" : "running");
    st = app->rank == 0 ? stage_mark_started(&r, i, r.fp[i]) : SD_OK;
    SD_CHECK(sd_par_agree(app->comm, st));
    sd_profile_reset();
    double t0 = MPI_Wtime();
    st = stage_execute(&r, s, decision == 2);
    double secs = MPI_Wtime() - t0;
    if (st != SD_OK) {
      char msg[2048];
      snprintf(msg, sizeof msg, "stage %s: %s%s", s->name, sd_error_message(),
               st == SD_ERR_INTERRUPTED ? " (run the same command again to resume)" :
                                          " (fix it and run the same command again: completed stages are kept)");
      sd_error_set_message(st, msg);
      return st;
    }
    char prof[RUN_PATH_MAX + 64];
    snprintf(prof, sizeof prof, "%s/profile/%s.json", r.dir, s->name);
    SD_CHECK(sd_profile_write(app->comm, prof, s->name, NULL));
    st = app->rank == 0 ? stage_mark_done(&r, i, r.fp[i], secs) : SD_OK;
    SD_CHECK(sd_par_agree(app->comm, st));
    sd_log_info("run: stage %-10s done in %.1f s", s->name, secs);
    ran++;
    secs_of[i] = secs;
    ran_of[i] = 1;
    if (sd_train_stop_requested()) {
      int more = 0;
      for (int j = i + 1; j < NUM_STAGES; j++) more |= want[j];
      if (more)
        return SD_ERROR(SD_ERR_INTERRUPTED,
                        "stopped by a signal after stage %s (run the same command again to go on)",
                        s->name);
    }
  }
  if (summary[0] && app->rank == 0) {
    /* --profile: one JSON naming every stage, its state and its own profile */
    char tmp[RUN_PATH_MAX + 64];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", summary, (long)getpid());
    FILE *f = fopen(tmp, "w");
    st = f ? SD_OK : SD_ERROR(SD_ERR_IO, "cannot write the profile %s", summary);
    if (f) {
      fprintf(f, "{\n  \"program\": \"stemdefect\",\n  \"version\": \"%s\",\n  \"git_commit\": \"%s\",\n"
                 "  \"command\": \"run\",\n  \"ranks\": %d,\n  \"run_dir\": \"%s\",\n  \"stages\": [\n",
              SD_VERSION, SD_GIT_COMMIT, app->size, r.dir);
      int first = 1;
      for (int i = 0; i < NUM_STAGES; i++) {
        if (ran_of[i] < 0 && !want[i]) continue;
        fprintf(f, "%s    {\"name\": \"%s\", \"state\": \"%s\", \"seconds\": %.6f, \"profile\": \"%s/profile/%s.json\"}",
                first ? "" : ",\n", stages[i].name, ran_of[i] > 0 ? "ran" : "up to date", secs_of[i], r.dir,
                stages[i].name);
        first = 0;
      }
      fprintf(f, "\n  ]\n}\n");
      if (fclose(f) != 0 || rename(tmp, summary) != 0) {
        unlink(tmp);
        st = SD_ERROR(SD_ERR_IO, "cannot write the profile %s", summary);
      }
    }
  } else {
    st = SD_OK;
  }
  SD_CHECK(sd_par_agree(app->comm, st));
  sd_log_info("run: finished in %s (%d stage(s) run, %d up to date)", r.dir, ran, skipped);
  return SD_OK;
}

const sd_command sd_cmd_run = {
    .name = "run",
    .summary = "run the whole study (every stage) into one run directory, resuming where it stopped",
    .usage = "--config FILE [--dir DIR] [--stages LIST] [--force]",
    .description =
        "Runs the stages in order into the run directory (default runs/<config name>): data\n"
        "(import when import.input is set, else simulate) -> stack.h5; classify (train, evaluate,\n"
        "predict) -> classifier.h5, classifier_metrics.json, classifier_predictions.h5; pseudolabel\n"
        "-> pseudo.h5; segmenter (U-Net on the pseudo-labels) -> unet.h5, unet_metrics.json;\n"
        "segment -> heatmaps.h5, overlays/; describe -> descriptors.h5; cluster -> clusters.h5;\n"
        "embed -> embedding.h5; report -> report.html (figures in figures/).\n"
        "A stage whose outputs exist and whose fingerprint (its configuration sections, the\n"
        "fingerprints of its inputs, imported files' sizes and times) is unchanged is skipped, so\n"
        "running the same command again after a failure or a preemption resumes at the first\n"
        "missing or stale stage (training resumes from its checkpoint). --stages runs a subset\n"
        "(the others must be up to date when a selected stage needs them); --force re-runs the\n"
        "selected stages. Profiles: DIR/profile/<stage>.json.",
    .sections = "run,general",
    .positional_key = NULL,
    .options = run_options,
    .run = run_run,
};
