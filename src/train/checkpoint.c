/* checkpoint.c - model files and checkpoints: rank 0 writes (serial HDF5 on one process),
 * every rank reads. */
#include "stemdefect/checkpoint.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stemdefect/h5util.h"
#include "stemdefect/par.h"

static sd_status write_tensor(hid_t group, const char *name, const sd_nn_param *p,
                              const float *data, const char *path) {
  hsize_t dims[4];
  for (int d = 0; d < p->ndim; d++) dims[d] = (hsize_t)p->shape[d];
  hid_t space = H5Screate_simple(p->ndim, dims, NULL);
  hid_t ds = space < 0 ? -1
                       : H5Dcreate2(group, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT,
                                    H5P_DEFAULT);
  herr_t rc = ds < 0 ? -1 : H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
  if (ds >= 0) H5Dclose(ds);
  if (space >= 0) H5Sclose(space);
  if (rc < 0) return SD_H5_ERROR(SD_ERR_HDF5, "%s: cannot write tensor %s", path, name);
  return SD_OK;
}

static sd_status attr_double(hid_t loc, const char *name, double v) {
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(loc, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
  herr_t rc = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_DOUBLE, &v);
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  return rc < 0 ? SD_H5_ERROR(SD_ERR_HDF5, "cannot write attribute %s", name) : SD_OK;
}

static sd_status attr_i64(hid_t loc, const char *name, int64_t v) {
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(loc, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
  herr_t rc = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_INT64, &v);
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  return rc < 0 ? SD_H5_ERROR(SD_ERR_HDF5, "cannot write attribute %s", name) : SD_OK;
}

static sd_status read_attr_double(hid_t loc, const char *name, double *v) {
  hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
  herr_t rc = a < 0 ? -1 : H5Aread(a, H5T_NATIVE_DOUBLE, v);
  if (a >= 0) H5Aclose(a);
  return rc < 0 ? SD_H5_ERROR(SD_ERR_FORMAT, "missing or bad attribute %s", name) : SD_OK;
}

static sd_status save_rank0(const char *path, const sd_nn_model *m, const sd_ckpt_state *st,
                            const sd_provenance *prov, int ranks) {
  sd_h5_init();
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
  hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) return SD_H5_ERROR(SD_ERR_IO, "cannot create model file %s (as %s)", path, tmp);
  sd_status s = SD_OK;
  hid_t gm = -1, gp = -1, gb = -1, go = -1, gt = -1;
  char *arch = NULL;
  SD_CHECK_GOTO(s, sd_h5_write_provenance(f, prov, ranks), done);
  SD_CHECK_GOTO(s, sd_h5_attr_write_string(f, "format", "stemdefect-model"), done);
  SD_CHECK_GOTO(s, sd_h5_attr_write_int(f, "format_version", 1), done);
  gm = H5Gcreate2(f, "model", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  gp = H5Gcreate2(f, "params", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  gb = H5Gcreate2(f, "buffers", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  go = H5Gcreate2(f, "optimizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  gt = H5Gcreate2(f, "training", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (gm < 0 || gp < 0 || gb < 0 || go < 0 || gt < 0) {
    s = SD_H5_ERROR(SD_ERR_HDF5, "%s: cannot create groups", path);
    goto done;
  }
  size_t len = sd_nn_model_describe(m, NULL, 0);
  arch = sd_malloc(len + 1, 1, "architecture");
  if (!arch) {
    s = SD_ERR_NOMEM;
    goto done;
  }
  sd_nn_model_describe(m, arch, len + 1);
  SD_CHECK_GOTO(s, sd_h5_attr_write_string(gm, "architecture", arch), done);
  SD_CHECK_GOTO(s, sd_h5_attr_write_string(gm, "task", st->task), done);
  SD_CHECK_GOTO(s, sd_h5_attr_write_string(gm, "normalization", st->normalization), done);
  SD_CHECK_GOTO(s, sd_h5_attr_write_int(gm, "input_channels", m->in_c), done);
  SD_CHECK_GOTO(s, sd_h5_attr_write_int(gm, "input_height", m->in_h), done);
  SD_CHECK_GOTO(s, sd_h5_attr_write_int(gm, "input_width", m->in_w), done);
  {
    const char *names[SD_CKPT_MAX_CLASSES];
    for (int c = 0; c < st->num_classes; c++) names[c] = st->class_names[c];
    SD_CHECK_GOTO(s, sd_h5_attr_write_strings(gm, "class_names", st->num_classes, names), done);
  }
  for (int i = 0; i < sd_nn_model_param_count(m); i++) {
    const sd_nn_param *p = sd_nn_model_param(m, i);
    SD_CHECK_GOTO(s, write_tensor(gp, p->name, p, sd_nn_param_data(m, p), path), done);
  }
  for (int i = 0; i < sd_nn_model_buffer_count(m); i++) {
    const sd_nn_param *p = sd_nn_model_buffer(m, i);
    SD_CHECK_GOTO(s, write_tensor(gb, p->name, p, sd_nn_buffer_data(m, p), path), done);
  }
  {
    const sd_nn_optim *o = &st->optim;
    SD_CHECK_GOTO(s, sd_h5_attr_write_int(go, "kind", (int)o->kind), done);
    SD_CHECK_GOTO(s, attr_double(go, "lr", o->lr), done);
    SD_CHECK_GOTO(s, attr_double(go, "momentum", o->momentum), done);
    SD_CHECK_GOTO(s, sd_h5_attr_write_int(go, "nesterov", o->nesterov), done);
    SD_CHECK_GOTO(s, attr_double(go, "beta1", o->beta1), done);
    SD_CHECK_GOTO(s, attr_double(go, "beta2", o->beta2), done);
    SD_CHECK_GOTO(s, attr_double(go, "eps", o->eps), done);
    SD_CHECK_GOTO(s, attr_double(go, "weight_decay", o->weight_decay), done);
    SD_CHECK_GOTO(s, attr_double(go, "clip_norm", o->clip_norm), done);
    SD_CHECK_GOTO(s, attr_i64(go, "step", o->step), done);
    sd_nn_param whole = {.ndim = 1, .shape = {(int)(2 * m->num_params)}};
    SD_CHECK_GOTO(s, write_tensor(go, "state", &whole, m->opt_state, path), done);
  }
  SD_CHECK_GOTO(s, attr_i64(gt, "epoch", st->epoch), done);
  SD_CHECK_GOTO(s, attr_i64(gt, "step", st->step), done);
  SD_CHECK_GOTO(s, attr_double(gt, "best_val_loss", st->best_val_loss), done);
  SD_CHECK_GOTO(s, attr_i64(gt, "best_epoch", st->best_epoch), done);
  SD_CHECK_GOTO(s, attr_i64(gt, "bad_epochs", st->bad_epochs), done);
  if (st->best_params && st->best_buffers) {
    sd_nn_param bp = {.ndim = 1, .shape = {(int)m->num_params}};
    sd_nn_param bb = {.ndim = 1, .shape = {(int)(m->num_buffers ? m->num_buffers : 1)}};
    static const float none = 0.0f;
    SD_CHECK_GOTO(s, write_tensor(gt, "best_params", &bp, st->best_params, path), done);
    SD_CHECK_GOTO(s,
                  write_tensor(gt, "best_buffers", &bb, m->num_buffers ? st->best_buffers : &none,
                               path),
                  done);
  }
  SD_CHECK_GOTO(s, attr_i64(gt, "finished", st->finished), done);
  SD_CHECK_GOTO(s, attr_i64(gt, "seed", (int64_t)st->seed), done);
  {
    hsize_t dims[2] = {(hsize_t)(st->num_rng > 0 ? st->num_rng : 0), 5};
    uint64_t *buf = sd_calloc((size_t)dims[0] * 5 + 1, sizeof *buf, "rng states");
    if (!buf) {
      s = SD_ERR_NOMEM;
      goto done;
    }
    for (int i = 0; i < st->num_rng; i++) {
      memcpy(&buf[i * 5], st->rng[i].s, 4 * sizeof(uint64_t));
      buf[i * 5 + 4] = 0; /* spare normals are not carried over: draws restart clean */
    }
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t ds = H5Dcreate2(gt, "rng", H5T_STD_U64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = ds < 0 ? -1 : H5Dwrite(ds, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(sp);
    free(buf);
    if (rc < 0) {
      s = SD_H5_ERROR(SD_ERR_HDF5, "%s: cannot write the RNG states", path);
      goto done;
    }
  }
  if (st->split_n > 0 && st->split) {
    hsize_t dims[1] = {(hsize_t)st->split_n};
    hid_t sp = H5Screate_simple(1, dims, NULL);
    hid_t ds = H5Dcreate2(gt, "split", H5T_STD_I8LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = ds < 0 ? -1 : H5Dwrite(ds, H5T_NATIVE_INT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, st->split);
    if (rc >= 0) {
      s = sd_h5_attr_write_string(ds, "kind", st->split_kind);
      if (s == SD_OK) s = sd_h5_attr_write_string(ds, "data", st->data_path);
      if (s == SD_OK) s = sd_h5_attr_write_string(ds, "meaning", "0 train, 1 validation, 2 test");
    }
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(sp);
    if (rc < 0) {
      s = SD_H5_ERROR(SD_ERR_HDF5, "%s: cannot write the split", path);
      goto done;
    }
    if (s != SD_OK) goto done;
  }
done:
  free(arch);
  if (gt >= 0) H5Gclose(gt);
  if (go >= 0) H5Gclose(go);
  if (gb >= 0) H5Gclose(gb);
  if (gp >= 0) H5Gclose(gp);
  if (gm >= 0) H5Gclose(gm);
  if (H5Fclose(f) < 0 && s == SD_OK) s = SD_H5_ERROR(SD_ERR_IO, "%s: cannot close", tmp);
  if (s == SD_OK && rename(tmp, path) != 0)
    s = SD_ERROR(SD_ERR_IO, "cannot rename %s to %s", tmp, path);
  if (s != SD_OK) unlink(tmp);
  return s;
}

sd_status sd_ckpt_save(MPI_Comm comm, const char *path, const sd_nn_model *m,
                       const sd_ckpt_state *st, const sd_provenance *prov) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  sd_status s = SD_OK;
  if (rank == 0) s = save_rank0(path, m, st, prov, size);
  return sd_par_agree(comm, s);
}

static sd_status open_read(const char *path, hid_t *f) {
  sd_h5_init();
  if (access(path, R_OK) != 0)
    return SD_ERROR(SD_ERR_IO, "model file %s does not exist or is not readable", path);
  htri_t is = H5Fis_hdf5(path);
  if (is <= 0) return SD_H5_ERROR(SD_ERR_FORMAT, "%s is not an HDF5 model file", path);
  *f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (*f < 0) return SD_H5_ERROR(SD_ERR_IO, "cannot open model file %s", path);
  return SD_OK;
}

static sd_status read_state(hid_t f, const char *path, sd_ckpt_state *st) {
  memset(st, 0, sizeof *st);
  hid_t gm = H5Gopen2(f, "model", H5P_DEFAULT);
  if (gm < 0) return SD_H5_ERROR(SD_ERR_FORMAT, "%s: no /model group (not a stemdefect model)", path);
  sd_status s = SD_OK;
  char *txt = NULL;
  char **names = NULL;
  int n = 0;
  SD_CHECK_GOTO(s, sd_h5_attr_read_string(gm, "task", &txt), done);
  snprintf(st->task, sizeof st->task, "%s", txt);
  free(txt);
  txt = NULL;
  SD_CHECK_GOTO(s, sd_h5_attr_read_string(gm, "normalization", &txt), done);
  snprintf(st->normalization, sizeof st->normalization, "%s", txt);
  SD_CHECK_GOTO(s, sd_h5_attr_read_strings(gm, "class_names", &n, &names), done);
  if (n > SD_CKPT_MAX_CLASSES) {
    s = SD_ERROR(SD_ERR_FORMAT, "%s: %d classes, at most %d supported", path, n, SD_CKPT_MAX_CLASSES);
    goto done;
  }
  st->num_classes = n;
  for (int i = 0; i < n; i++) snprintf(st->class_names[i], sizeof st->class_names[i], "%s", names[i]);
  if (H5Lexists(f, "training", H5P_DEFAULT) > 0) {
    hid_t gt = H5Gopen2(f, "training", H5P_DEFAULT);
    int64_t v = 0;
    double d = 0;
    if (sd_h5_attr_read_int(gt, "epoch", &v) == SD_OK) st->epoch = (int)v;
    if (sd_h5_attr_read_int(gt, "step", &v) == SD_OK) st->step = v;
    if (read_attr_double(gt, "best_val_loss", &d) == SD_OK) st->best_val_loss = d;
    if (sd_h5_attr_read_int(gt, "best_epoch", &v) == SD_OK) st->best_epoch = (int)v;
    if (sd_h5_attr_read_int(gt, "bad_epochs", &v) == SD_OK) st->bad_epochs = (int)v;
    if (sd_h5_attr_read_int(gt, "finished", &v) == SD_OK) st->finished = (int)v;
    if (sd_h5_attr_read_int(gt, "seed", &v) == SD_OK) st->seed = (uint64_t)v;
    sd_error_clear();
    hid_t ds = H5Dopen2(gt, "rng", H5P_DEFAULT);
    if (ds >= 0) {
      hid_t sp = H5Dget_space(ds);
      hsize_t dims[2] = {0, 0};
      H5Sget_simple_extent_dims(sp, dims, NULL);
      if (dims[0] <= SD_CKPT_MAX_RNG && dims[1] == 5) {
        uint64_t *buf = sd_malloc((size_t)dims[0] * 5 + 1, sizeof *buf, "rng");
        if (buf && H5Dread(ds, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0) {
          st->num_rng = (int)dims[0];
          for (int i = 0; i < st->num_rng; i++) {
            memcpy(st->rng[i].s, &buf[i * 5], 4 * sizeof(uint64_t));
            st->rng[i].has_spare = 0;
          }
        }
        free(buf);
      }
      H5Sclose(sp);
      H5Dclose(ds);
    }
    ds = H5Lexists(gt, "split", H5P_DEFAULT) > 0 ? H5Dopen2(gt, "split", H5P_DEFAULT) : -1;
    if (ds >= 0) {
      hid_t sp = H5Dget_space(ds);
      hssize_t np = H5Sget_simple_extent_npoints(sp);
      st->split = np > 0 ? sd_malloc((size_t)np, 1, "split") : NULL;
      if (st->split && H5Dread(ds, H5T_NATIVE_INT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, st->split) >= 0) {
        st->split_n = np;
        char *kind = NULL, *data = NULL;
        if (sd_h5_attr_read_string(ds, "kind", &kind) == SD_OK)
          snprintf(st->split_kind, sizeof st->split_kind, "%s", kind);
        if (sd_h5_attr_read_string(ds, "data", &data) == SD_OK)
          snprintf(st->data_path, sizeof st->data_path, "%s", data);
        free(kind);
        free(data);
        sd_error_clear();
      } else {
        free(st->split);
        st->split = NULL;
      }
      H5Sclose(sp);
      H5Dclose(ds);
    }
    H5Gclose(gt);
  }
  if (H5Lexists(f, "optimizer", H5P_DEFAULT) > 0) {
    hid_t go = H5Gopen2(f, "optimizer", H5P_DEFAULT);
    int64_t v = 0;
    double d = 0;
    sd_nn_optim *o = &st->optim;
    if (sd_h5_attr_read_int(go, "kind", &v) == SD_OK) o->kind = (sd_nn_optim_kind)v;
    if (read_attr_double(go, "lr", &d) == SD_OK) o->lr = (float)d;
    if (read_attr_double(go, "momentum", &d) == SD_OK) o->momentum = (float)d;
    if (sd_h5_attr_read_int(go, "nesterov", &v) == SD_OK) o->nesterov = (int)v;
    if (read_attr_double(go, "beta1", &d) == SD_OK) o->beta1 = (float)d;
    if (read_attr_double(go, "beta2", &d) == SD_OK) o->beta2 = (float)d;
    if (read_attr_double(go, "eps", &d) == SD_OK) o->eps = (float)d;
    if (read_attr_double(go, "weight_decay", &d) == SD_OK) o->weight_decay = (float)d;
    if (read_attr_double(go, "clip_norm", &d) == SD_OK) o->clip_norm = (float)d;
    if (sd_h5_attr_read_int(go, "step", &v) == SD_OK) o->step = v;
    sd_error_clear();
    st->has_optimizer = 1;
    H5Gclose(go);
  }
done:
  free(txt);
  sd_h5_strings_free(names, n);
  H5Gclose(gm);
  return s;
}

sd_status sd_ckpt_open_model(MPI_Comm comm, const char *path, sd_nn_model **m, int *c, int *h,
                             int *w, sd_ckpt_state *state) {
  *m = NULL;
  hid_t f = -1;
  char *arch = NULL;
  sd_status s = open_read(path, &f);
  if (s == SD_OK) {
    hid_t gm = H5Gopen2(f, "model", H5P_DEFAULT);
    if (gm < 0) s = SD_H5_ERROR(SD_ERR_FORMAT, "%s: no /model group (not a stemdefect model)", path);
    else {
      s = sd_h5_attr_read_string(gm, "architecture", &arch);
      H5Gclose(gm);
    }
  }
  if (s == SD_OK && state) s = read_state(f, path, state);
  if (s == SD_OK) {
    s = sd_nn_model_create_from_description(m, arch, c, h, w);
    if (s != SD_OK) {
      char msg[2048];
      snprintf(msg, sizeof msg, "%s: bad architecture: %s", path, sd_error_message());
      sd_error_set_message(SD_ERR_FORMAT, msg);
      s = SD_ERR_FORMAT;
    }
  }
  free(arch);
  if (f >= 0) H5Fclose(f);
  s = sd_par_agree(comm, s);
  if (s != SD_OK) sd_nn_model_destroy(m);
  return s;
}

static sd_status load_group(hid_t f, const char *path, const char *group, sd_nn_model *m,
                            int buffers, int strict, int *skipped) {
  int count = buffers ? sd_nn_model_buffer_count(m) : sd_nn_model_param_count(m);
  hid_t g = H5Gopen2(f, group, H5P_DEFAULT);
  if (g < 0) {
    if (!strict || count == 0) {
      sd_error_clear();
      return SD_OK;
    }
    return SD_H5_ERROR(SD_ERR_FORMAT, "%s: no /%s group", path, group);
  }
  sd_status s = SD_OK;
  for (int i = 0; i < count && s == SD_OK; i++) {
    const sd_nn_param *p = buffers ? sd_nn_model_buffer(m, i) : sd_nn_model_param(m, i);
    float *dst = buffers ? sd_nn_buffer_data(m, p) : sd_nn_param_data(m, p);
    if (H5Lexists(g, p->name, H5P_DEFAULT) <= 0) {
      if (strict) s = SD_ERROR(SD_ERR_FORMAT, "%s: tensor /%s/%s is missing", path, group, p->name);
      else (*skipped)++;
      continue;
    }
    hid_t ds = H5Dopen2(g, p->name, H5P_DEFAULT);
    hid_t sp = ds < 0 ? -1 : H5Dget_space(ds);
    hsize_t dims[8] = {0};
    int nd = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
    if (nd > 0 && nd <= 8) H5Sget_simple_extent_dims(sp, dims, NULL);
    int same = nd == p->ndim;
    for (int d = 0; same && d < nd; d++) same = dims[d] == (hsize_t)p->shape[d];
    if (!same) {
      if (strict)
        s = SD_ERROR(SD_ERR_FORMAT, "%s: tensor /%s/%s has another shape than the model's", path,
                     group, p->name);
      else (*skipped)++;
    } else if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0) {
      s = SD_H5_ERROR(SD_ERR_FORMAT, "%s: cannot read /%s/%s", path, group, p->name);
    }
    if (sp >= 0) H5Sclose(sp);
    if (ds >= 0) H5Dclose(ds);
  }
  H5Gclose(g);
  return s;
}

/* Reads the 1-D float dataset name of group g into dst [n]; its size must be n. */
static sd_status read_arena(hid_t g, const char *path, const char *name, float *dst, size_t n) {
  hid_t ds = H5Dopen2(g, name, H5P_DEFAULT);
  hid_t sp = ds < 0 ? -1 : H5Dget_space(ds);
  hssize_t npts = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
  sd_status s = SD_OK;
  if (npts != (hssize_t)(n ? n : 1))
    s = SD_H5_ERROR(SD_ERR_FORMAT, "%s: /training/%s is missing or of another model (%lld values, "
                    "expected %zu)", path, name, (long long)npts, n ? n : 1);
  else if (n && H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
    s = SD_H5_ERROR(SD_ERR_FORMAT, "%s: cannot read /training/%s", path, name);
  if (sp >= 0) H5Sclose(sp);
  if (ds >= 0) H5Dclose(ds);
  return s;
}

sd_status sd_ckpt_load_best(MPI_Comm comm, const char *path, const sd_nn_model *m, float *params,
                            float *buffers, int *found) {
  hid_t f = -1;
  *found = 0;
  sd_status s = open_read(path, &f);
  if (s == SD_OK && H5Lexists(f, "training", H5P_DEFAULT) > 0) {
    hid_t gt = H5Gopen2(f, "training", H5P_DEFAULT);
    if (gt >= 0 && H5Lexists(gt, "best_params", H5P_DEFAULT) > 0) {
      s = read_arena(gt, path, "best_params", params, m->num_params);
      if (s == SD_OK) s = read_arena(gt, path, "best_buffers", buffers, m->num_buffers);
      if (s == SD_OK) *found = 1;
    }
    if (gt >= 0) H5Gclose(gt);
  }
  if (s == SD_OK) sd_error_clear(); /* H5Lexists on an absent link may leave an HDF5 record */
  if (f >= 0) H5Fclose(f);
  return sd_par_agree(comm, s);
}

sd_status sd_ckpt_load_params(MPI_Comm comm, const char *path, sd_nn_model *m, int strict,
                              int optimizer, int *skipped) {
  int skip = 0;
  hid_t f = -1;
  sd_status s = open_read(path, &f);
  if (s == SD_OK) s = load_group(f, path, "params", m, 0, strict, &skip);
  if (s == SD_OK) s = load_group(f, path, "buffers", m, 1, strict, &skip);
  if (s == SD_OK && optimizer) {
    hid_t ds = H5Dopen2(f, "optimizer/state", H5P_DEFAULT);
    hid_t sp = ds < 0 ? -1 : H5Dget_space(ds);
    hssize_t npts = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
    if (npts != (hssize_t)(2 * m->num_params))
      s = SD_H5_ERROR(SD_ERR_FORMAT, "%s: optimiser state missing or of another model", path);
    else if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, m->opt_state) < 0)
      s = SD_H5_ERROR(SD_ERR_FORMAT, "%s: cannot read the optimiser state", path);
    if (sp >= 0) H5Sclose(sp);
    if (ds >= 0) H5Dclose(ds);
  }
  if (f >= 0) H5Fclose(f);
  if (skipped) *skipped = skip;
  return sd_par_agree(comm, s);
}
