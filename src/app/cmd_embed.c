/* cmd_embed.c - `stemdefect embed`: Barnes-Hut t-SNE of a clusters.h5 (/scores) or of any
 * file holding /descriptors (standardised column-wise first), distributed by rows.
 *
 * Every rank reads its row block with parallel HDF5, the embedding is computed by
 * sd_tsne_run (the same bits at any rank count for a given seed), and embedding.h5 is written
 * to a temporary name with every rank writing its rows, then renamed:
 *   /embedding   float32 [M,2]
 *   /assignments int32 [M]  (copied when the input has it)
 *   /labels      int32 [M]  (copied when the input has it, with class_names)
 *   root attributes: kl_divergence, perplexity, theta, iterations, seed, learning_rate,
 *   neighbors, early_exaggeration, exaggeration_iters, init, input, input_dataset, provenance.
 * The optional figure (embed.figure) is a PNG with the scatter coloured by cluster and, when
 * the input has labels, a second panel coloured by true class. */
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "stemdefect/h5util.h"
#include "stemdefect/log.h"
#include "stemdefect/par.h"
#include "stemdefect/profile.h"
#include "stemdefect/tsne.h"

static const sd_cli_option embed_options[] = {
    {"--input", "embed.input", "FILE", NULL, 0},
    {"--output", "embed.output", "FILE", NULL, 0},
    {"--perplexity", "embed.perplexity", "P", NULL, 0},
    {"--theta", "embed.theta", "T", NULL, 0},
    {"--iterations", "embed.iterations", "N", NULL, 0},
    {"--learning-rate", "embed.learning_rate", "LR", NULL, 0},
    {"--early-exaggeration", "embed.early_exaggeration", "X", NULL, 0},
    {"--exaggeration-iters", "embed.exaggeration_iters", "N", NULL, 0},
    {"--neighbors", "embed.neighbors", "K", NULL, 0},
    {"--knn", "embed.knn", "auto|exact|forest", NULL, 0},
    {"--forest-trees", "embed.forest_trees", "T", NULL, 0},
    {"--forest-refine", "embed.forest_refine", "R", NULL, 0},
    {"--init", "embed.init", "pca|random", NULL, 0},
    {"--seed", "embed.seed", "S", NULL, 0},
    {"--figure", "embed.figure", "PNG", NULL, 0},
    {NULL, NULL, NULL, NULL, 0}};

/* The input: own rows of the matrix, and the optional per-row int arrays (whole, every rank). */
typedef struct embed_input {
  int64_t n, first, count;
  int d;
  const char *dataset;  /* "/scores" or "/descriptors" */
  double *x;            /* [count, d] */
  int32_t *assignments; /* [n] or NULL */
  int32_t *labels;      /* [n] or NULL */
  int nclass;
  char **class_names; /* [nclass] or NULL */
} embed_input;

static void embed_input_free(embed_input *in) {
  free(in->x);
  free(in->assignments);
  free(in->labels);
  sd_h5_strings_free(in->class_names, in->nclass);
  memset(in, 0, sizeof *in);
}

static sd_status link_exists(hid_t f, const char *path, const char *file, int *ex) {
  htri_t e = H5Lexists(f, path + 1, H5P_DEFAULT);
  if (e < 0)
    return SD_H5_ERROR(SD_ERR_HDF5, "cannot look up %s in '%s'", path, file);
  *ex = e > 0;
  return SD_OK;
}

/* Reads the whole int dataset name [n] into a new array (collective), after checking its shape. */
static sd_status read_int_rows(hid_t f, const char *file, const char *name, int64_t n, hid_t dxpl,
                               int32_t **out) {
  *out = NULL;
  hid_t ds = H5Dopen2(f, name, H5P_DEFAULT), sp = H5I_INVALID_HID, ty = H5I_INVALID_HID;
  sd_status st = SD_OK;
  if (ds < 0)
    return SD_H5_ERROR(SD_ERR_FORMAT, "cannot open %s in '%s'", name, file);
  sp = H5Dget_space(ds);
  ty = H5Dget_type(ds);
  hsize_t dims[2] = {0, 0};
  int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
  if (nd == 1)
    H5Sget_simple_extent_dims(sp, dims, NULL);
  if (nd != 1 || (int64_t)dims[0] != n || H5Tget_class(ty) != H5T_INTEGER) {
    st = SD_ERROR(SD_ERR_FORMAT,
                  "%s in '%s' must be an integer vector of %lld entries (one per row)", name, file,
                  (long long)n);
    goto done;
  }
  *out = sd_malloc((size_t)n, sizeof **out, name);
  if (!*out) {
    st = SD_ERR_NOMEM;
    goto done;
  }
  if (H5Dread(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, dxpl, *out) < 0) {
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot read %s from '%s'", name, file);
    free(*out);
    *out = NULL;
  }
done:
  sd_h5_close(&ty);
  sd_h5_close(&sp);
  sd_h5_close(&ds);
  return st;
}

static sd_status read_input(sd_app *app, const char *file, embed_input *in) {
  memset(in, 0, sizeof *in);
  hid_t f = H5I_INVALID_HID, ds = H5I_INVALID_HID, sp = H5I_INVALID_HID, ms = H5I_INVALID_HID;
  hid_t ty = H5I_INVALID_HID, dxpl = H5I_INVALID_HID;
  sd_status st = SD_OK;
  if (access(file, R_OK) != 0) {
    st = SD_ERROR(SD_ERR_IO, "cannot read input '%s': %s", file, strerror(errno));
  }
  st = sd_par_agree(app->comm, st);
  if (st != SD_OK)
    return st;
  st = sd_par_agree(app->comm, sd_h5_file_open(app->comm, file, 0, &f));
  if (st != SD_OK)
    goto done;
  SD_CHECK_GOTO(st, sd_h5_dxpl_collective(&dxpl), done);
  int has_scores = 0, has_desc = 0;
  SD_CHECK_GOTO(st, link_exists(f, "/scores", file, &has_scores), done);
  SD_CHECK_GOTO(st, link_exists(f, "/descriptors", file, &has_desc), done);
  if (!has_scores && !has_desc) {
    st = SD_ERROR(SD_ERR_FORMAT,
                  "'%s' has neither /scores nor /descriptors (expected a float matrix [M,D]: "
                  "the output of `stemdefect cluster` or of `stemdefect describe`)",
                  file);
    goto done;
  }
  in->dataset = has_scores ? "/scores" : "/descriptors";
  ds = H5Dopen2(f, in->dataset, H5P_DEFAULT);
  if (ds < 0) {
    st = SD_H5_ERROR(SD_ERR_FORMAT, "cannot open %s in '%s'", in->dataset, file);
    goto done;
  }
  sp = H5Dget_space(ds);
  ty = H5Dget_type(ds);
  hsize_t dims[3] = {0, 0, 0};
  int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
  if (nd == 2)
    H5Sget_simple_extent_dims(sp, dims, NULL);
  H5T_class_t cls = ty >= 0 ? H5Tget_class(ty) : H5T_NO_CLASS;
  if (nd != 2 || (cls != H5T_FLOAT && cls != H5T_INTEGER) || dims[1] < 1 || dims[1] > 100000) {
    st = SD_ERROR(SD_ERR_FORMAT,
                  "%s in '%s' must be a 2-D numeric matrix [M,D] with 1 <= D <= 100000",
                  in->dataset, file);
    goto done;
  }
  in->n = (int64_t)dims[0];
  in->d = (int)dims[1];
  if (in->n < 2) {
    st = SD_ERROR(SD_ERR_FORMAT, "%s in '%s' has %lld row(s); t-SNE needs at least 2", in->dataset,
                  file, (long long)in->n);
    goto done;
  }
  sd_shard_range(in->n, app->rank, app->size, &in->first, &in->count);
  in->x = sd_malloc((size_t)(in->count > 0 ? in->count : 1) * in->d, sizeof *in->x, "input rows");
  if (!in->x)
    st = SD_ERR_NOMEM;
  st = sd_par_agree(app->comm, st);
  if (st != SD_OK)
    goto done;
  {
    hsize_t start[2] = {(hsize_t)in->first, 0}, cnt[2] = {(hsize_t)in->count, (hsize_t)in->d};
    hsize_t mdims[1] = {(hsize_t)in->count * (hsize_t)in->d};
    ms = H5Screate_simple(1, mdims, NULL);
    if (in->count > 0) {
      H5Sselect_hyperslab(sp, H5S_SELECT_SET, start, NULL, cnt, NULL);
    } else {
      H5Sselect_none(sp);
      H5Sselect_none(ms);
    }
    double t = sd_profile_phase_begin();
    /* float32 (what `cluster` and `describe` write) is read as such and widened here:
     * HDF5's MPI-IO path does the float -> double conversion slowly (several times the
     * read itself); the values are the same (widening is exact) */
    const size_t nval = (size_t)(in->count > 0 ? in->count : 0) * (size_t)in->d;
    const int as_float = cls == H5T_FLOAT && H5Tget_size(ty) == sizeof(float);
    float *xf =
        as_float ? sd_malloc(nval > 0 ? nval : 1, sizeof *xf, "input rows (float32)") : NULL;
    /* the read is collective: every rank must take the same branch */
    st = sd_par_agree(app->comm, as_float && !xf ? SD_ERR_NOMEM : SD_OK);
    if (st == SD_OK) {
      herr_t rc = as_float ? H5Dread(ds, H5T_NATIVE_FLOAT, ms, sp, dxpl, xf)
                           : H5Dread(ds, H5T_NATIVE_DOUBLE, ms, sp, dxpl, in->x);
      if (rc < 0)
        st = SD_H5_ERROR(SD_ERR_HDF5, "cannot read rows %lld..%lld of %s from '%s'",
                         (long long)in->first, (long long)(in->first + in->count), in->dataset,
                         file);
      else if (xf)
        for (size_t e = 0; e < nval; e++)
          in->x[e] = (double)xf[e];
    }
    free(xf);
    sd_profile_phase_end(SD_PHASE_IO, t);
    sd_profile_add_bytes(SD_PHASE_IO, in->count * in->d * 4);
  }
  st = sd_par_agree(app->comm, st);
  if (st != SD_OK)
    goto done;
  {
    int64_t bad = 0;
    for (int64_t e = 0; e < in->count * in->d; e++)
      if (!isfinite(in->x[e]))
        bad++;
    SD_CHECK_GOTO(st, sd_par_allreduce_sum_i64(app->comm, &bad, 1), done);
    if (bad) {
      st = SD_ERROR(SD_ERR_FORMAT, "%s in '%s' holds %lld non-finite value(s) (NaN or Inf)",
                    in->dataset, file, (long long)bad);
      goto done;
    }
  }
  int ex = 0;
  SD_CHECK_GOTO(st, link_exists(f, "/assignments", file, &ex), done);
  if (ex)
    SD_CHECK_GOTO(st,
                  sd_par_agree(app->comm, read_int_rows(f, file, "/assignments", in->n, dxpl,
                                                        &in->assignments)),
                  done);
  SD_CHECK_GOTO(st, link_exists(f, "/labels", file, &ex), done);
  if (ex) {
    SD_CHECK_GOTO(
        st, sd_par_agree(app->comm, read_int_rows(f, file, "/labels", in->n, dxpl, &in->labels)),
        done);
    hid_t lds = H5Dopen2(f, "/labels", H5P_DEFAULT);
    int has = 0;
    if (lds >= 0 && sd_h5_attr_exists(lds, "class_names", &has) == SD_OK && has)
      st = sd_h5_attr_read_strings(lds, "class_names", &in->nclass, &in->class_names);
    sd_h5_close(&lds);
    st = sd_par_agree(app->comm, st);
    if (st != SD_OK)
      goto done;
  }
done:
  sd_h5_close(&ms);
  sd_h5_close(&ty);
  sd_h5_close(&sp);
  sd_h5_close(&ds);
  sd_h5_close(&dxpl);
  if (f >= 0)
    H5Fclose(f);
  if (st != SD_OK)
    embed_input_free(in);
  return st;
}

static sd_status attr_double(hid_t loc, const char *name, double v) {
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(loc, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
  sd_status st = SD_OK;
  if (a < 0 || H5Awrite(a, H5T_NATIVE_DOUBLE, &v) < 0)
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot write attribute %s", name);
  sd_h5_close(&a);
  sd_h5_close(&sp);
  return st;
}

static sd_status attr_i64(hid_t loc, const char *name, int64_t v) {
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(loc, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
  sd_status st = SD_OK;
  long long w = (long long)v;
  if (a < 0 || H5Awrite(a, H5T_NATIVE_LLONG, &w) < 0)
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot write attribute %s", name);
  sd_h5_close(&a);
  sd_h5_close(&sp);
  return st;
}

/* Creates dataset name [n, cols] of ftype and writes rows [first, first+count) of buf
 * (memory type mtype, count*cols values) collectively. */
static sd_status write_rows(hid_t f, const char *name, hid_t ftype, hid_t mtype, int64_t n,
                            int cols, int64_t first, int64_t count, const void *buf, hid_t dxpl,
                            hid_t *out_ds) {
  hsize_t dims[2] = {(hsize_t)n, (hsize_t)cols};
  int rank = cols > 1 ? 2 : 1;
  hid_t sp = H5Screate_simple(rank, dims, NULL), ms = H5I_INVALID_HID;
  hid_t ds = H5Dcreate2(f, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  sd_status st = SD_OK;
  if (sp < 0 || ds < 0) {
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot create dataset %s", name);
    goto done;
  }
  hsize_t mdims[1] = {(hsize_t)(count > 0 ? count : 1) * (hsize_t)cols};
  ms = H5Screate_simple(1, mdims, NULL);
  if (count > 0) {
    hsize_t start[2] = {(hsize_t)first, 0}, cnt[2] = {(hsize_t)count, (hsize_t)cols};
    H5Sselect_hyperslab(sp, H5S_SELECT_SET, start, NULL, cnt, NULL);
  } else {
    H5Sselect_none(sp);
    H5Sselect_none(ms);
  }
  if (H5Dwrite(ds, mtype, ms, sp, dxpl, buf) < 0)
    st = SD_H5_ERROR(SD_ERR_IO, "cannot write dataset %s", name);
done:
  sd_h5_close(&ms);
  sd_h5_close(&sp);
  if (out_ds && st == SD_OK)
    *out_ds = ds;
  else
    sd_h5_close(&ds);
  return st;
}

static sd_status write_output(sd_app *app, const char *path, const embed_input *in,
                              const sd_tsne_params *p, const sd_tsne_result *res, const float *y) {
  char *tmp = NULL;
  if (app->rank == 0) {
    size_t cap = strlen(path) + 64;
    tmp = sd_malloc(cap, 1, "temporary name");
    if (tmp) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      snprintf(tmp, cap, "%s.tmp-%ld-%lx", path, (long)getpid(), (unsigned long)ts.tv_nsec);
    }
  }
  sd_status st = sd_par_agree(app->comm, app->rank == 0 && !tmp ? SD_ERR_NOMEM : SD_OK);
  if (st != SD_OK)
    return st;
  SD_CHECK(sd_par_bcast_string(app->comm, &tmp, 0));
  sd_par_tmpfile_register(tmp);
  hid_t f = H5I_INVALID_HID, dxpl = H5I_INVALID_HID, ds = H5I_INVALID_HID;
  st = sd_par_agree(app->comm, sd_h5_file_create(app->comm, tmp, &f));
  if (st != SD_OK) {
    char msg[2048];
    snprintf(msg, sizeof msg, "cannot write output '%s' (is its directory there and writable?): %s",
             path, sd_error_message());
    sd_error_set_message(SD_ERR_IO, msg);
    st = SD_ERR_IO;
    goto out;
  }
  SD_CHECK_GOTO(st, sd_h5_dxpl_collective(&dxpl), close);
  double t = sd_profile_phase_begin();
  SD_CHECK_GOTO(st,
                write_rows(f, "/embedding", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, in->n, 2, in->first,
                           in->count, y + 2 * in->first, dxpl, &ds),
                close);
  SD_CHECK_GOTO(st,
                sd_h5_attr_write_string(ds, "description",
                                        "t-SNE embedding (Barnes-Hut), one row per input row"),
                close);
  SD_CHECK_GOTO(st, sd_h5_attr_write_string(ds, "source_dataset", in->dataset), close);
  sd_h5_close(&ds);
  if (in->assignments) {
    SD_CHECK_GOTO(st,
                  write_rows(f, "/assignments", H5T_STD_I32LE, H5T_NATIVE_INT32, in->n, 1,
                             in->first, in->count, in->assignments + in->first, dxpl, &ds),
                  close);
    SD_CHECK_GOTO(
        st,
        sd_h5_attr_write_string(ds, "description", "cluster of each row (copied from the input)"),
        close);
    sd_h5_close(&ds);
  }
  if (in->labels) {
    SD_CHECK_GOTO(st,
                  write_rows(f, "/labels", H5T_STD_I32LE, H5T_NATIVE_INT32, in->n, 1, in->first,
                             in->count, in->labels + in->first, dxpl, &ds),
                  close);
    SD_CHECK_GOTO(
        st,
        sd_h5_attr_write_string(ds, "description",
                                "true class of each row, -1 = unknown (copied from the input)"),
        close);
    if (in->class_names) {
      SD_CHECK_GOTO(st,
                    sd_h5_attr_write_strings(ds, "class_names", in->nclass,
                                             (const char *const *)in->class_names),
                    close);
      SD_CHECK_GOTO(st,
                    sd_h5_dataset_write_strings(f, "/class_names", in->nclass,
                                                (const char *const *)in->class_names, dxpl,
                                                app->rank),
                    close);
    }
    sd_h5_close(&ds);
  }
  {
    hid_t root = H5Gopen2(f, "/", H5P_DEFAULT);
    st = sd_h5_write_provenance(root, &app->prov, app->size);
    if (st == SD_OK)
      st = sd_h5_attr_write_string(root, "format", "stemdefect-embedding");
    if (st == SD_OK)
      st = sd_h5_attr_write_int(root, "format_version", 1);
    if (st == SD_OK)
      st = attr_double(root, "kl_divergence", res->kl_divergence);
    if (st == SD_OK)
      st = attr_double(root, "perplexity", p->perplexity);
    if (st == SD_OK)
      st = attr_double(root, "theta", p->theta);
    if (st == SD_OK)
      st = sd_h5_attr_write_int(root, "iterations", res->iterations);
    if (st == SD_OK)
      st = attr_i64(root, "seed", (int64_t)p->seed);
    if (st == SD_OK)
      st = attr_double(root, "learning_rate", res->learning_rate);
    if (st == SD_OK)
      st = sd_h5_attr_write_int(root, "neighbors", res->neighbors);
    if (st == SD_OK)
      st =
          sd_h5_attr_write_string(root, "knn", res->knn == SD_TSNE_KNN_FOREST ? "forest" : "exact");
    if (st == SD_OK && res->knn == SD_TSNE_KNN_FOREST)
      st = sd_h5_attr_write_int(root, "forest_trees", p->forest_trees);
    if (st == SD_OK && res->knn == SD_TSNE_KNN_FOREST)
      st = sd_h5_attr_write_int(root, "forest_refine", p->forest_refine);
    if (st == SD_OK)
      st = attr_double(root, "early_exaggeration", p->early_exaggeration);
    if (st == SD_OK)
      st = sd_h5_attr_write_int(root, "exaggeration_iters", p->exaggeration_iters);
    if (st == SD_OK)
      st = sd_h5_attr_write_string(root, "init", p->init == SD_TSNE_INIT_PCA ? "pca" : "random");
    if (st == SD_OK)
      st = sd_h5_attr_write_string(root, "input", sd_config_string(app->cfg, "embed.input"));
    if (st == SD_OK)
      st = sd_h5_attr_write_string(root, "input_dataset", in->dataset);
    if (st == SD_OK)
      st = sd_h5_attr_write_string(root, "input_normalization",
                                   strcmp(in->dataset, "/scores") == 0
                                       ? "none (PCA scores used as they are)"
                                       : "column-wise standardisation (population std)");
    sd_h5_close(&root);
  }
  sd_profile_phase_end(SD_PHASE_IO, t);
close:
  sd_h5_close(&ds);
  sd_h5_close(&dxpl);
  if (f >= 0 && H5Fclose(f) < 0 && st == SD_OK)
    st = SD_H5_ERROR(SD_ERR_IO, "cannot close '%s'", tmp);
  st = sd_par_agree(app->comm, st);
  {
    sd_status local = SD_OK;
    if (app->rank == 0) {
      if (st == SD_OK && rename(tmp, path) != 0)
        local = SD_ERROR(SD_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
      if (st != SD_OK || local != SD_OK)
        unlink(tmp);
    }
    sd_status r = sd_par_agree(app->comm, local);
    if (st == SD_OK)
      st = r;
  }
out:
  sd_par_tmpfile_unregister(tmp);
  free(tmp);
  return st;
}

static sd_status params_from_config(const sd_config *cfg, sd_tsne_params *p) {
  sd_tsne_params_default(p);
  p->perplexity = sd_config_float(cfg, "embed.perplexity");
  p->theta = sd_config_float(cfg, "embed.theta");
  p->iterations = (int)sd_config_int(cfg, "embed.iterations");
  double lr = sd_config_float(cfg, "embed.learning_rate");
  p->learning_rate = isnan(lr) ? 0.0 : lr;
  p->early_exaggeration = sd_config_float(cfg, "embed.early_exaggeration");
  p->exaggeration_iters = (int)sd_config_int(cfg, "embed.exaggeration_iters");
  double k = sd_config_float(cfg, "embed.neighbors");
  p->neighbors = isnan(k) ? 0 : (int)k;
  if (!isnan(k) && k != floor(k))
    return SD_ERROR(SD_ERR_CONFIG, "embed.neighbors = %g must be a whole number or auto", k);
  p->seed = (uint64_t)sd_config_int(cfg, "embed.seed");
  const char *knn = sd_config_string(cfg, "embed.knn");
  p->knn = !strcmp(knn, "exact")    ? SD_TSNE_KNN_EXACT
           : !strcmp(knn, "forest") ? SD_TSNE_KNN_FOREST
                                    : SD_TSNE_KNN_AUTO;
  p->forest_trees = (int)sd_config_int(cfg, "embed.forest_trees");
  p->forest_refine = (int)sd_config_int(cfg, "embed.forest_refine");
  p->init = strcmp(sd_config_string(cfg, "embed.init"), "random") == 0 ? SD_TSNE_INIT_RANDOM
                                                                       : SD_TSNE_INIT_PCA;
  return SD_OK;
}

static sd_status embed_run(sd_app *app) {
  const char *input = sd_config_string(app->cfg, "embed.input");
  const char *output = sd_config_string(app->cfg, "embed.output");
  const char *figure = sd_config_string(app->cfg, "embed.figure");
  if (!input || !*input)
    return SD_ERROR(
        SD_ERR_ARG,
        "embed needs an input file (--input clusters.h5 or any file with /descriptors)");
  if (!output || !*output)
    return SD_ERROR(SD_ERR_ARG, "embed needs an output file (--output embedding.h5)");
  sd_tsne_params p;
  SD_CHECK(params_from_config(app->cfg, &p));
  sd_profile_stage_begin("embed-read");
  embed_input in;
  SD_CHECK(read_input(app, input, &in));
  sd_profile_stage_end(in.count);
  sd_status st = sd_tsne_params_check(&p, in.n);
  if (st != SD_OK) {
    char msg[2048];
    snprintf(msg, sizeof msg, "%s: %s (input '%s', %s [%lld, %d])", "embed settings",
             sd_error_message(), input, in.dataset, (long long)in.n, in.d);
    sd_error_set_message(SD_ERR_ARG, msg);
    embed_input_free(&in);
    return SD_ERR_ARG;
  }
  sd_log_info("embed: %s %s [%lld, %d] on %d rank(s), perplexity %g, theta %g, %d iterations -> %s",
              input, in.dataset, (long long)in.n, in.d, app->size, p.perplexity, p.theta,
              p.iterations, output);
  double *y = sd_malloc((size_t)in.n * 2, sizeof *y, "embedding");
  float *yf = sd_malloc((size_t)in.n * 2, sizeof *yf, "embedding");
  st = sd_par_agree(app->comm, (y && yf) ? SD_OK : SD_ERR_NOMEM);
  sd_tsne_result res;
  memset(&res, 0, sizeof res);
  if (st == SD_OK) {
    sd_profile_stage_begin("embed");
    double t = sd_profile_phase_begin();
    if (strcmp(in.dataset, "/descriptors") == 0)
      st = sd_tsne_standardize(app->comm, in.x, in.count, in.d, in.n);
    if (st == SD_OK)
      st = sd_tsne_run(app->comm, &p, in.x, in.count, in.d, in.n, y, &res);
    sd_profile_phase_end(SD_PHASE_COMPUTE, t);
    sd_profile_stage_end(in.count);
  }
  if (st == SD_OK) {
    for (int64_t e = 0; e < 2 * in.n; e++)
      yf[e] = (float)y[e];
    sd_log_info(
        "embed: KL divergence %.6f after %d iterations (affinities %.2f s, optimisation %.2f s)",
        res.kl_divergence, res.iterations, res.seconds_affinities, res.seconds_optimize);
    sd_profile_stage_begin("embed-write");
    st = write_output(app, output, &in, &p, &res, yf);
    sd_profile_stage_end(in.count);
  }
  if (st == SD_OK && figure && *figure) {
    sd_status fs = SD_OK;
    if (app->rank == 0) {
      int k = 0;
      if (in.assignments)
        for (int64_t i = 0; i < in.n; i++)
          if (in.assignments[i] + 1 > k)
            k = in.assignments[i] + 1;
      int nl = in.nclass;
      if (in.labels && !in.class_names)
        for (int64_t i = 0; i < in.n; i++)
          if (in.labels[i] + 1 > nl)
            nl = in.labels[i] + 1;
      if (in.assignments)
        fs = sd_tsne_plot_png(figure, in.n, yf, in.assignments, k, NULL,
                              "t-SNE coloured by cluster", in.labels, nl,
                              (const char *const *)in.class_names, "t-SNE coloured by true class");
      else
        fs = sd_tsne_plot_png(figure, in.n, yf, in.labels, nl, (const char *const *)in.class_names,
                              in.labels ? "t-SNE coloured by true class" : "t-SNE embedding", NULL,
                              0, NULL, NULL);
    }
    st = sd_par_agree(app->comm, fs);
    if (st == SD_OK)
      sd_log_info("embed: figure written to %s", figure);
  }
  if (st == SD_OK)
    sd_log_info("embed: wrote %s", output);
  free(y);
  free(yf);
  embed_input_free(&in);
  return st;
}

const sd_command sd_cmd_embed = {
    .name = "embed",
    .summary = "Barnes-Hut t-SNE of cluster scores or descriptors (2-D map for figures)",
    .usage =
        "--input clusters.h5 --output embedding.h5 [--perplexity 30] [--theta 0.5] [--figure PNG]",
    .description =
        "Embeds /scores of the input (the PCA scores written by `stemdefect cluster`) or, when "
        "the\n"
        "file has no /scores, its /descriptors standardised column-wise. Input similarities come\n"
        "from the k nearest neighbours (k = 3 x perplexity + 1 by default): exact up to 50000\n"
        "rows (blocked GEMM distances, the row blocks of the ranks passed around a ring), above\n"
        "that approximate from a random-projection forest (--knn exact|forest forces either),\n"
        "and a per-point bandwidth search to the perplexity; the embedding is optimised with\n"
        "Barnes-Hut repulsion (theta), early exaggeration, momentum and gains as in the\n"
        "reference method. The same seed gives the same embedding at any rank count.",
    .sections = "embed,general",
    .positional_key = NULL,
    .options = embed_options,
    .run = embed_run,
};
