/* cmd_cluster.c - `stemdefect cluster`: descriptors -> standardise (+ optional screening) ->
 * PCA on ScaLAPACK -> k-means for every k of a range -> silhouette / Calinski-Harabasz /
 * Davies-Bouldin -> k chosen by the largest mean silhouette -> clusters.h5 (+ figures).
 *
 * Ranks read their own chunk-aligned row blocks of /descriptors with parallel HDF5 and write
 * their rows of /assignments and /scores collectively; everything else is replicated and
 * written by rank 0 inside the same collective calls. The file is written under a temporary
 * name and renamed when complete. Results are bitwise the same at any rank count. */
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app.h"
#include "stemdefect/cluster.h"
#include "stemdefect/h5util.h"
#include "stemdefect/log.h"
#include "stemdefect/par.h"
#include "stemdefect/plot.h"
#include "stemdefect/profile.h"

#define SD_CLUSTER_MAX_K 64

static const sd_cli_option cluster_options[] = {
    {"--descriptors", "cluster.descriptors", "FILE", NULL, 0},
    {"--output", "cluster.output", "FILE", NULL, 0},
    {"--k", "cluster.k", "LO:HI", NULL, 0},
    {"--variance", "cluster.variance", "F", NULL, 0},
    {"--components", "cluster.components", "P", NULL, 0},
    {"--restarts", "cluster.restarts", "N", NULL, 0},
    {"--seed", "cluster.seed", "S", NULL, 0},
    {"--silhouette", "cluster.silhouette", "MODE", NULL, 0},
    {"--screen", "cluster.screen", NULL, NULL, 0},
    {"--figures", "cluster.figures", "PREFIX", NULL, 0},
    {NULL, NULL, NULL, NULL, 0}};

/* "LO:HI" or "K" -> [lo, hi]; SD_ERR_CONFIG naming the key otherwise. */
static sd_status parse_k(const char *s, int *lo, int *hi) {
  char *end;
  errno = 0;
  long a = strtol(s, &end, 10), b = a;
  int ok = end != s && errno == 0;
  if (ok && *end == ':') {
    const char *t = end + 1;
    b = strtol(t, &end, 10);
    ok = end != t && errno == 0;
  }
  ok = ok && *end == '\0' && a >= 2 && b >= a && b <= SD_CLUSTER_MAX_K;
  if (!ok)
    return SD_ERROR(SD_ERR_CONFIG,
                    "cluster.k = '%s': expected LO:HI with 2 <= LO <= HI <= %d (e.g. 2:12), or one "
                    "k >= 2",
                    s, SD_CLUSTER_MAX_K);
  *lo = (int)a;
  *hi = (int)b;
  return SD_OK;
}

/* ---- input ---------------------------------------------------------------------------------- */

typedef struct cl_input {
  int64_t m, first, count;
  int d;
  float *x;     /* [count, d] */
  char **names; /* [d] */
  int has_labels;
  int32_t *labels; /* [count] */
  int nclass;
  char **class_names;
} cl_input;

static void cl_input_free(cl_input *in) {
  free(in->x);
  sd_h5_strings_free(in->names, in->d);
  free(in->labels);
  sd_h5_strings_free(in->class_names, in->nclass);
  memset(in, 0, sizeof *in);
}

static sd_status read_rows(hid_t ds, hid_t mtype, int ndim, int64_t first, int64_t count,
                           int64_t cols, void *buf, hid_t dxpl, const char *what) {
  hid_t fs = H5Dget_space(ds);
  hsize_t start[2] = {(hsize_t)first, 0}, cnt[2] = {(hsize_t)count, (hsize_t)cols};
  hsize_t mdims[2] = {(hsize_t)(count > 0 ? count : 1), (hsize_t)cols};
  hid_t ms = H5Screate_simple(ndim, mdims, NULL);
  herr_t e = 0;
  if (count > 0)
    e = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL);
  else {
    e = H5Sselect_none(fs);
    if (e >= 0)
      e = H5Sselect_none(ms);
  }
  if (e >= 0)
    e = H5Dread(ds, mtype, ms, fs, dxpl, buf);
  H5Sclose(ms);
  H5Sclose(fs);
  return e < 0 ? SD_H5_ERROR(SD_ERR_HDF5, "cannot read %s", what) : SD_OK;
}

static sd_status read_input(sd_app *app, const char *path, cl_input *in) {
  memset(in, 0, sizeof *in);
  sd_status st =
      access(path, R_OK) == 0
          ? SD_OK
          : SD_ERROR(SD_ERR_IO, "cannot read the descriptors file '%s': %s", path, strerror(errno));
  SD_CHECK(sd_par_agree(app->comm, st));
  hid_t f = H5I_INVALID_HID, ds = H5I_INVALID_HID, dxpl = H5I_INVALID_HID, lab = H5I_INVALID_HID;
  SD_CHECK_GOTO(st, sd_h5_file_open(app->comm, path, 0, &f), done);
  SD_CHECK_GOTO(st, sd_h5_dxpl_collective(&dxpl), done);
  if (H5Lexists(f, "descriptors", H5P_DEFAULT) <= 0) {
    st = SD_ERROR(SD_ERR_FORMAT,
                  "'%s' has no dataset /descriptors (expected float32 [M,D] rows of descriptors)",
                  path);
    goto done;
  }
  ds = H5Dopen2(f, "descriptors", H5P_DEFAULT);
  if (ds < 0) {
    st = SD_H5_ERROR(SD_ERR_FORMAT, "cannot open '%s:/descriptors'", path);
    goto done;
  }
  {
    hid_t sp = H5Dget_space(ds), ty = H5Dget_type(ds);
    int nd = H5Sget_simple_extent_ndims(sp);
    H5T_class_t tc = H5Tget_class(ty);
    hsize_t dims[2] = {0, 0};
    if (nd == 2)
      H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    H5Tclose(ty);
    if (nd != 2 || (tc != H5T_FLOAT && tc != H5T_INTEGER)) {
      st = SD_ERROR(
          SD_ERR_FORMAT,
          "'%s:/descriptors' must be a 2-D numeric dataset [M,D] (found %d dimension(s)%s)", path,
          nd, (tc != H5T_FLOAT && tc != H5T_INTEGER) ? ", not numbers" : "");
      goto done;
    }
    in->m = (int64_t)dims[0];
    in->d = (int)dims[1];
  }
  if (in->m < 3 || in->d < 1) {
    st =
        SD_ERROR(SD_ERR_FORMAT, "'%s:/descriptors' is [%lld,%d]: need at least 3 rows and 1 column",
                 path, (long long)in->m, in->d);
    goto done;
  }
  /* names: dataset /names, or attribute names on /descriptors, or f0, f1, ... */
  {
    int n = 0;
    char **names = NULL;
    int ex = 0;
    if (H5Lexists(f, "names", H5P_DEFAULT) > 0) {
      SD_CHECK_GOTO(st, sd_h5_dataset_read_strings(f, "names", dxpl, &n, &names), done);
    } else {
      SD_CHECK_GOTO(st, sd_h5_attr_exists(ds, "names", &ex), done);
      if (ex)
        SD_CHECK_GOTO(st, sd_h5_attr_read_strings(ds, "names", &n, &names), done);
    }
    if (names && n != in->d) {
      sd_h5_strings_free(names, n);
      st = SD_ERROR(SD_ERR_FORMAT, "'%s': %d descriptor names for %d columns of /descriptors", path,
                    n, in->d);
      goto done;
    }
    if (!names) {
      names = sd_calloc((size_t)in->d, sizeof *names, "names");
      for (int j = 0; names && j < in->d; j++) {
        char b[32];
        snprintf(b, sizeof b, "f%d", j);
        names[j] = sd_strdup(b);
      }
    }
    in->names = names;
  }
  sd_cluster_rows(in->m, app->rank, app->size, &in->first, &in->count);
  in->x = sd_malloc((size_t)(in->count > 0 ? in->count : 1) * in->d, sizeof *in->x, "descriptors");
  st = sd_par_agree(app->comm, in->x && in->names ? SD_OK : SD_ERR_NOMEM);
  if (st != SD_OK)
    goto done;
  double t = sd_profile_phase_begin();
  SD_CHECK_GOTO(
      st,
      read_rows(ds, H5T_NATIVE_FLOAT, 2, in->first, in->count, in->d, in->x, dxpl, "/descriptors"),
      done);
  sd_profile_phase_end(SD_PHASE_IO, t);
  sd_profile_add_bytes(SD_PHASE_IO, in->count * in->d * 4);
  /* optional /labels [M] with class names */
  if (H5Lexists(f, "labels", H5P_DEFAULT) > 0) {
    lab = H5Dopen2(f, "labels", H5P_DEFAULT);
    hid_t sp = lab >= 0 ? H5Dget_space(lab) : H5I_INVALID_HID;
    hsize_t n = 0;
    int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (nd == 1)
      H5Sget_simple_extent_dims(sp, &n, NULL);
    if (sp >= 0)
      H5Sclose(sp);
    if (nd != 1 || (int64_t)n != in->m) {
      st = SD_ERROR(SD_ERR_FORMAT, "'%s:/labels' must be int32 [%lld] (one per descriptor row)",
                    path, (long long)in->m);
      goto done;
    }
    in->has_labels = 1;
    in->labels = sd_malloc((size_t)(in->count > 0 ? in->count : 1), sizeof *in->labels, "labels");
    st = sd_par_agree(app->comm, in->labels ? SD_OK : SD_ERR_NOMEM);
    if (st != SD_OK)
      goto done;
    SD_CHECK_GOTO(
        st,
        read_rows(lab, H5T_NATIVE_INT32, 1, in->first, in->count, 1, in->labels, dxpl, "/labels"),
        done);
    int ex = 0;
    SD_CHECK_GOTO(st, sd_h5_attr_exists(lab, "class_names", &ex), done);
    if (ex)
      SD_CHECK_GOTO(st, sd_h5_attr_read_strings(lab, "class_names", &in->nclass, &in->class_names),
                    done);
    int64_t mx = -1;
    for (int64_t i = 0; i < in->count; i++)
      if (in->labels[i] > mx)
        mx = in->labels[i];
    SD_CHECK_GOTO(st, sd_par_allreduce_max_i64(app->comm, &mx, 1), done);
    if (mx + 1 > in->nclass) {
      if (in->class_names && in->nclass > 0)
        sd_log_warn("'%s:/labels' goes up to %lld but names %d classes", path, (long long)mx,
                    in->nclass);
      sd_h5_strings_free(in->class_names, in->nclass);
      in->nclass = (int)(mx + 1);
      in->class_names = sd_calloc((size_t)(in->nclass > 0 ? in->nclass : 1),
                                  sizeof *in->class_names, "class names");
      for (int c = 0; in->class_names && c < in->nclass; c++) {
        char b[32];
        snprintf(b, sizeof b, "class %d", c);
        in->class_names[c] = sd_strdup(b);
      }
    }
  }
  /* every value finite (the lowest failing rank names its first bad value) */
  {
    sd_status vst = SD_OK;
    for (int64_t i = 0; i < in->count && vst == SD_OK; i++)
      for (int j = 0; j < in->d; j++)
        if (!isfinite(in->x[i * in->d + j])) {
          vst = SD_ERROR(
              SD_ERR_FORMAT,
              "'%s:/descriptors' row %lld column %d (%s) is %g: every value must be finite", path,
              (long long)(in->first + i), j, in->names[j], (double)in->x[i * in->d + j]);
          break;
        }
    st = sd_par_agree(app->comm, vst);
  }
done:
  sd_h5_close(&lab);
  sd_h5_close(&ds);
  sd_h5_close(&dxpl);
  if (f >= 0)
    H5Fclose(f);
  st = sd_par_agree(app->comm, st);
  if (st != SD_OK)
    cl_input_free(in);
  return st;
}

/* ---- output -----------------------------------------------------------------------------------
 */

/* Creates dataset name [dims] and writes rows [first, first + count) of dimension 0 from buf
 * (every rank calls it; replicated data: rank 0 passes all rows, the others count = 0). */
static sd_status write_ds(hid_t loc, const char *name, hid_t ftype, hid_t mtype, int ndim,
                          const hsize_t *dims, int64_t first, int64_t count, const void *buf,
                          hid_t dxpl, const char *meaning) {
  hid_t fs = H5Screate_simple(ndim, dims, NULL);
  hid_t ds = fs >= 0 ? H5Dcreate2(loc, name, ftype, fs, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
  sd_status st = SD_OK;
  if (ds < 0) {
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot create dataset %s", name);
    goto done;
  }
  hsize_t start[3] = {(hsize_t)first, 0, 0}, cnt[3] = {(hsize_t)count, 1, 1}, md[3] = {1, 1, 1};
  for (int i = 1; i < ndim; i++)
    cnt[i] = md[i] = dims[i];
  md[0] = count > 0 ? (hsize_t)count : 1;
  hid_t ms = H5Screate_simple(ndim, md, NULL);
  herr_t e;
  if (count > 0 && dims[0] > 0)
    e = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL);
  else {
    e = H5Sselect_none(fs);
    if (e >= 0)
      e = H5Sselect_none(ms);
  }
  if (e >= 0)
    e = H5Dwrite(ds, mtype, ms, fs, dxpl, buf);
  H5Sclose(ms);
  if (e < 0)
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot write dataset %s", name);
  if (st == SD_OK && meaning)
    st = sd_h5_attr_write_string(ds, "meaning", meaning);
done:
  if (ds >= 0)
    H5Dclose(ds);
  if (fs >= 0)
    H5Sclose(fs);
  return st;
}

static sd_status attr_double(hid_t loc, const char *name, double v) {
  if (H5Aexists(loc, name) > 0)
    H5Adelete(loc, name);
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(loc, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
  herr_t e = a >= 0 ? H5Awrite(a, H5T_NATIVE_DOUBLE, &v) : -1;
  if (a >= 0)
    H5Aclose(a);
  H5Sclose(sp);
  return e < 0 ? SD_H5_ERROR(SD_ERR_HDF5, "cannot write attribute %s", name) : SD_OK;
}

typedef struct cl_result {
  int nk, *ks, chosen; /* chosen: index into ks */
  double *sil, *sil_se, *ch, *db, *inertia;
  int32_t *iters;
  double **per_cluster; /* [nk][ks[j]] */
  sd_km_result *km;     /* [nk] */
  sd_pca *pca;
  int p;
  float *scores; /* [count, p] */
  sd_screen_reason *reason;
  int *partner;
  int d_kept;
  int screened;
  double ari, nmi, purity;
  const char *sil_mode;
  int64_t sample;
} cl_result;

static sd_status write_output(sd_app *app, const cl_input *in, const cl_result *r,
                              const char *out) {
  char *tmp = NULL;
  sd_status st = SD_OK;
  if (app->rank == 0) {
    size_t cap = strlen(out) + 64;
    tmp = sd_malloc(cap, 1, "temporary name");
    if (tmp)
      snprintf(tmp, cap, "%s.tmp-%ld", out, (long)getpid());
    else
      st = SD_ERR_NOMEM;
  }
  SD_CHECK(sd_par_agree(app->comm, st));
  SD_CHECK(sd_par_bcast_string(app->comm, &tmp, 0));
  sd_par_tmpfile_register(tmp);
  hid_t f = H5I_INVALID_HID, dxpl = H5I_INVALID_HID, g = H5I_INVALID_HID;
  int r0 = app->rank == 0;
  st = sd_h5_file_create(app->comm, tmp, &f);
  if (st != SD_OK) {
    char msg[4400];
    snprintf(msg, sizeof msg, "cannot create the output '%s' (is its folder there and writable?)",
             out);
    sd_error_set_message(SD_ERR_IO, msg);
  }
  st = sd_par_agree(app->comm, st);
  if (st != SD_OK)
    goto done;
  SD_CHECK_GOTO(st, sd_h5_dxpl_collective(&dxpl), done);
  int nk = r->nk, kc = r->ks[r->chosen], p = r->p, d = r->pca->d;
  const sd_km_result *km = &r->km[r->chosen];
  hsize_t dm[2] = {(hsize_t)in->m, (hsize_t)p};
  SD_CHECK_GOTO(st,
                write_ds(f, "assignments", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, dm, in->first,
                         in->count, km->assign, dxpl,
                         "cluster of each descriptor row at the chosen k (0..chosen_k-1)"),
                done);
  SD_CHECK_GOTO(st,
                write_ds(f, "scores", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, dm, in->first, in->count,
                         r->scores, dxpl,
                         "standardised (screened) rows projected on the kept principal components: "
                         "the input of embed"),
                done);
  hsize_t dc[2] = {(hsize_t)kc, (hsize_t)p};
  SD_CHECK_GOTO(st,
                write_ds(f, "centroids", H5T_IEEE_F32LE, H5T_NATIVE_DOUBLE, 2, dc, 0, r0 ? kc : 0,
                         km->centroids, dxpl,
                         "k-means centroids at the chosen k, in PCA score space"),
                done);
  hsize_t dk[1] = {(hsize_t)nk};
  SD_CHECK_GOTO(st,
                write_ds(f, "k_values", H5T_STD_I32LE, H5T_NATIVE_INT, 1, dk, 0, r0 ? nk : 0, r->ks,
                         dxpl, "the k values tried"),
                done);
  SD_CHECK_GOTO(st,
                write_ds(f, "silhouette", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, dk, 0, r0 ? nk : 0,
                         r->sil, dxpl, "mean silhouette per k (Euclidean, in PCA score space)"),
                done);
  SD_CHECK_GOTO(st,
                write_ds(f, "silhouette_stderr", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, dk, 0,
                         r0 ? nk : 0, r->sil_se, dxpl,
                         "standard error of the mean silhouette (0 = exact)"),
                done);
  SD_CHECK_GOTO(st,
                write_ds(f, "calinski_harabasz", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, dk, 0,
                         r0 ? nk : 0, r->ch, dxpl,
                         "Calinski-Harabasz index per k (higher = better separated)"),
                done);
  SD_CHECK_GOTO(st,
                write_ds(f, "davies_bouldin", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, dk, 0,
                         r0 ? nk : 0, r->db, dxpl,
                         "Davies-Bouldin index per k (lower = better separated)"),
                done);
  SD_CHECK_GOTO(st,
                write_ds(f, "inertia", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, dk, 0, r0 ? nk : 0,
                         r->inertia, dxpl,
                         "k-means objective (sum of squared distances to the centroid) per k"),
                done);
  SD_CHECK_GOTO(st,
                write_ds(f, "iterations", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, dk, 0, r0 ? nk : 0,
                         r->iters, dxpl, "Lloyd iterations of the winning restart per k"),
                done);
  hsize_t dcs[1] = {(hsize_t)kc};
  SD_CHECK_GOTO(st,
                write_ds(f, "cluster_silhouette", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, dcs, 0,
                         r0 ? kc : 0, r->per_cluster[r->chosen], dxpl,
                         "mean silhouette of each cluster at the chosen k"),
                done);
  {
    int64_t *cnt = km->counts;
    SD_CHECK_GOTO(st,
                  write_ds(f, "cluster_sizes", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, dcs, 0,
                           r0 ? kc : 0, cnt, dxpl, "rows per cluster at the chosen k"),
                  done);
  }
  /* PCA */
  g = H5Gcreate2(f, "pca", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0) {
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot create group /pca");
    goto done;
  }
  hsize_t dd[1] = {(hsize_t)d}, dpd[2] = {(hsize_t)p, (hsize_t)d};
  SD_CHECK_GOTO(st,
                write_ds(g, "mean", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, dd, 0, r0 ? d : 0,
                         r->pca->mean, dxpl, "column means of the kept descriptors"),
                done);
  SD_CHECK_GOTO(st,
                write_ds(g, "scale", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, dd, 0, r0 ? d : 0,
                         r->pca->scale, dxpl,
                         "population standard deviation (ddof = 0) of the kept descriptors; 1 for "
                         "a constant column"),
                done);
  SD_CHECK_GOTO(st,
                write_ds(g, "components", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, dpd, 0, r0 ? p : 0,
                         r->pca->components, dxpl,
                         "principal axes [P,D] of the standardised kept descriptors, unit length, "
                         "largest |loading| positive"),
                done);
  SD_CHECK_GOTO(st,
                write_ds(g, "explained_variance_ratio", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, dd, 0,
                         r0 ? d : 0, r->pca->explained_ratio, dxpl,
                         "variance fraction of every component (all D, descending)"),
                done);
  SD_CHECK_GOTO(st,
                write_ds(g, "eigenvalues", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, dd, 0, r0 ? d : 0,
                         r->pca->eigenvalues, dxpl,
                         "eigenvalues of the correlation matrix of the kept descriptors"),
                done);
  {
    const char **kn = sd_malloc((size_t)d, sizeof *kn, "names");
    const char **dn = sd_malloc((size_t)in->d + 1, sizeof *dn, "names");
    const char **why = sd_malloc((size_t)in->d + 1, sizeof *why, "reasons");
    char(*reasons)[160] = sd_malloc((size_t)in->d + 1, sizeof *reasons, "reasons");
    st = (kn && dn && why && reasons) ? SD_OK : SD_ERR_NOMEM;
    int nd = 0;
    if (st == SD_OK) {
      for (int j = 0; j < d; j++)
        kn[j] = in->names[r->pca->columns[j]];
      for (int j = 0; j < in->d; j++) {
        if (r->reason[j] == SD_SCREEN_REASON_KEPT)
          continue;
        dn[nd] = in->names[j];
        if (r->reason[j] == SD_SCREEN_REASON_LOW_VARIANCE)
          snprintf(reasons[nd], sizeof reasons[nd], "variance below cluster.screen_var");
        else
          snprintf(reasons[nd], sizeof reasons[nd], "|r| above cluster.screen_corr with %.100s",
                   in->names[r->partner[j]]);
        why[nd] = reasons[nd];
        nd++;
      }
    }
    if (st == SD_OK)
      st = sd_h5_dataset_write_strings(g, "names", d, kn, dxpl, app->rank);
    if (st == SD_OK)
      st = sd_h5_attr_write_strings(g, "names", d, kn);
    if (st == SD_OK)
      st = sd_h5_attr_write_int(g, "n_components", p);
    if (st == SD_OK)
      st = sd_h5_attr_write_string(
          g, "method", "eigen-decomposition of the correlation matrix (ScaLAPACK pdsyevd)");
    if (st == SD_OK)
      st = sd_h5_attr_write_int(g, "screened", r->screened);
    if (st == SD_OK)
      st = sd_h5_dataset_write_strings(g, "dropped_names", nd, dn, dxpl, app->rank);
    if (st == SD_OK)
      st = sd_h5_dataset_write_strings(g, "dropped_reasons", nd, why, dxpl, app->rank);
    free(kn);
    free(dn);
    free(why);
    free(reasons);
    if (st != SD_OK)
      goto done;
  }
  sd_h5_close(&g);
  if (in->has_labels) {
    hsize_t dl[1] = {(hsize_t)in->m};
    SD_CHECK_GOTO(st,
                  write_ds(f, "labels", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, dl, in->first,
                           in->count, in->labels, dxpl,
                           "true class of each row (copied from the input; -1 = unknown)"),
                  done);
    hid_t ld = H5Dopen2(f, "labels", H5P_DEFAULT);
    st = sd_h5_attr_write_strings(ld, "class_names", in->nclass,
                                  (const char *const *)in->class_names);
    H5Dclose(ld);
    if (st != SD_OK)
      goto done;
    SD_CHECK_GOTO(st, attr_double(f, "ari", r->ari), done);
    SD_CHECK_GOTO(st, attr_double(f, "nmi", r->nmi), done);
    SD_CHECK_GOTO(st, attr_double(f, "purity", r->purity), done);
  }
  SD_CHECK_GOTO(st, sd_h5_attr_write_int(f, "chosen_k", kc), done);
  SD_CHECK_GOTO(st, attr_double(f, "chosen_silhouette", r->sil[r->chosen]), done);
  SD_CHECK_GOTO(st, sd_h5_attr_write_string(f, "format", "stemdefect-clusters"), done);
  SD_CHECK_GOTO(st, sd_h5_attr_write_int(f, "format_version", 1), done);
  SD_CHECK_GOTO(st, sd_h5_attr_write_string(f, "silhouette_mode", r->sil_mode), done);
  SD_CHECK_GOTO(st, sd_h5_attr_write_string(f, "chosen_by", "largest mean silhouette"), done);
  SD_CHECK_GOTO(st, sd_h5_write_provenance(f, &app->prov, app->size), done);
done:
  sd_h5_close(&g);
  sd_h5_close(&dxpl);
  if (f >= 0 && H5Fclose(f) < 0 && st == SD_OK)
    st = SD_H5_ERROR(SD_ERR_IO, "cannot close '%s'", tmp);
  st = sd_par_agree(app->comm, st);
  sd_status rst = SD_OK;
  if (r0) {
    if (st == SD_OK && rename(tmp, out) != 0)
      rst = SD_ERROR(SD_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, out, strerror(errno));
    if (st != SD_OK || rst != SD_OK)
      unlink(tmp);
  }
  if (st == SD_OK)
    st = sd_par_agree(app->comm, rst);
  sd_par_tmpfile_unregister(tmp);
  free(tmp);
  return st;
}

/* ---- figures ------------------------------------------------------------------------------- */

static void figure_path(const char *prefix, const char *name, char *buf, size_t cap) {
  struct stat sb;
  size_t n = strlen(prefix);
  int dir = (n > 0 && prefix[n - 1] == '/') || (stat(prefix, &sb) == 0 && S_ISDIR(sb.st_mode));
  snprintf(buf, cap, "%s%s%s", prefix, dir && prefix[n - 1] != '/' ? "/" : "", name);
}

static sd_status write_figures(const cl_result *r, const char *prefix, double variance) {
  char path[4200];
  sd_plot *pl = NULL;
  int nk = r->nk;
  double *kx = sd_malloc((size_t)nk, sizeof *kx, "k");
  if (!kx)
    return SD_ERR_NOMEM;
  for (int j = 0; j < nk; j++)
    kx[j] = r->ks[j];
  sd_status st = sd_plot_create(900, 1000, 3, 1, &pl);
  char title[200], lab[64];
  snprintf(title, sizeof title, "Mean silhouette against k (%s)", r->sil_mode);
  snprintf(lab, sizeof lab, "chosen k = %d", r->ks[r->chosen]);
  if (st == SD_OK)
    st = sd_plot_panel(pl, 0, title, "k (clusters)", "mean silhouette");
  if (st == SD_OK) {
    sd_plot_integer_x(pl, 1);
    sd_plot_legend_at(pl, SD_PLOT_LEGEND_AUTO);
    st = sd_plot_line(pl, nk, kx, r->sil, r->sil_se, 0, SD_PLOT_STYLE_LINE_MARKERS, "silhouette");
  }
  if (st == SD_OK)
    st = sd_plot_vline(pl, r->ks[r->chosen], 3, lab);
  if (st == SD_OK)
    st = sd_plot_panel(pl, 1, "Calinski-Harabasz index (higher = better separated)", "k (clusters)",
                       "Calinski-Harabasz");
  if (st == SD_OK) {
    sd_plot_integer_x(pl, 1);
    sd_plot_legend_at(pl, SD_PLOT_LEGEND_AUTO);
    st = sd_plot_line(pl, nk, kx, r->ch, NULL, 1, SD_PLOT_STYLE_LINE_MARKERS, "Calinski-Harabasz");
  }
  if (st == SD_OK)
    st = sd_plot_vline(pl, r->ks[r->chosen], 3, lab);
  if (st == SD_OK)
    st = sd_plot_panel(pl, 2, "Davies-Bouldin index (lower = better separated)", "k (clusters)",
                       "Davies-Bouldin");
  if (st == SD_OK) {
    sd_plot_integer_x(pl, 1);
    sd_plot_legend_at(pl, SD_PLOT_LEGEND_AUTO);
    st = sd_plot_line(pl, nk, kx, r->db, NULL, 2, SD_PLOT_STYLE_LINE_MARKERS, "Davies-Bouldin");
  }
  if (st == SD_OK)
    st = sd_plot_vline(pl, r->ks[r->chosen], 3, lab);
  figure_path(prefix, "silhouette.png", path, sizeof path);
  if (st == SD_OK)
    st = sd_plot_save_png(pl, path);
  if (st == SD_OK)
    sd_log_info("cluster: figure %s", path);
  sd_plot_destroy(&pl);
  free(kx);
  if (st != SD_OK)
    return st;

  int d = r->pca->d;
  double *cx = sd_malloc((size_t)d, sizeof *cx, "x"),
         *cum = sd_malloc((size_t)d, sizeof *cum, "cumulative");
  if (!cx || !cum) {
    free(cx);
    free(cum);
    return SD_ERR_NOMEM;
  }
  double s = 0;
  for (int i = 0; i < d; i++) {
    cx[i] = i + 1;
    s += r->pca->explained_ratio[i];
    cum[i] = s;
  }
  st = sd_plot_create(900, 560, 1, 1, &pl);
  snprintf(title, sizeof title, "PCA explained variance: %d of %d components kept", r->p, d);
  if (st == SD_OK)
    st = sd_plot_panel(pl, 0, title, "principal component", "fraction of the variance");
  if (st == SD_OK) {
    sd_plot_integer_x(pl, 1);
    sd_plot_ylim(pl, 0, 1.05);
    sd_plot_legend_at(pl, SD_PLOT_LEGEND_MIDDLE_RIGHT);
    st = sd_plot_bars(pl, d, cx, r->pca->explained_ratio, 0.7, 0, "per component");
  }
  if (st == SD_OK)
    st = sd_plot_line(pl, d, cx, cum, NULL, 1, SD_PLOT_STYLE_LINE_MARKERS, "cumulative");
  if (st == SD_OK) {
    double hx[2] = {0.5, d + 0.5}, hy[2] = {variance, variance};
    snprintf(lab, sizeof lab, "target %.3g", variance);
    st = sd_plot_line(pl, 2, hx, hy, NULL, 7, SD_PLOT_STYLE_LINE, lab);
  }
  if (st == SD_OK) {
    snprintf(lab, sizeof lab, "kept: %d", r->p);
    st = sd_plot_vline(pl, r->p + 0.5, 3, lab);
  }
  figure_path(prefix, "pca_variance.png", path, sizeof path);
  if (st == SD_OK)
    st = sd_plot_save_png(pl, path);
  if (st == SD_OK)
    sd_log_info("cluster: figure %s", path);
  sd_plot_destroy(&pl);
  free(cx);
  free(cum);
  return st;
}

/* ---- the command ----------------------------------------------------------------------------- */

static void result_free(cl_result *r) {
  if (r->km)
    for (int j = 0; j < r->nk; j++)
      sd_km_result_free(&r->km[j]);
  free(r->km);
  if (r->per_cluster)
    for (int j = 0; j < r->nk; j++)
      free(r->per_cluster[j]);
  free(r->per_cluster);
  free(r->ks);
  free(r->sil);
  free(r->sil_se);
  free(r->ch);
  free(r->db);
  free(r->inertia);
  free(r->iters);
  sd_pca_destroy(&r->pca);
  free(r->scores);
  free(r->reason);
  free(r->partner);
}

static sd_status cluster_run(sd_app *app) {
  const sd_config *cfg = app->cfg;
  const char *path = sd_config_string(cfg, "cluster.descriptors");
  const char *out = sd_config_string(cfg, "cluster.output");
  const char *figs = sd_config_string(cfg, "cluster.figures");
  const char *mode = sd_config_string(cfg, "cluster.silhouette");
  const char *init = sd_config_string(cfg, "cluster.init");
  double variance = sd_config_float(cfg, "cluster.variance");
  int ncomp = (int)sd_config_int(cfg, "cluster.components");
  int klo = 0, khi = 0;
  SD_CHECK(parse_k(sd_config_string(cfg, "cluster.k"), &klo, &khi));
  if (!*path)
    return SD_ERROR(
        SD_ERR_ARG,
        "no descriptors: give --descriptors FILE (any HDF5 file with /descriptors [M,D])");
  if (!*out)
    return SD_ERROR(SD_ERR_ARG, "no output: give --output clusters.h5");

  sd_profile_stage_begin("cluster-read");
  cl_input in;
  SD_CHECK(read_input(app, path, &in));
  sd_profile_stage_end(in.count);
  cl_result r;
  memset(&r, 0, sizeof r);
  sd_status st = SD_OK;
  if (khi > in.m - 1) {
    st = SD_ERROR(SD_ERR_ARG,
                  "cluster.k = %d:%d but '%s' has only %lld rows (k must be below the row count)",
                  klo, khi, path, (long long)in.m);
    goto done;
  }
  int d = in.d;
  sd_log_info("cluster: %lld descriptor rows x %d columns from %s on %d rank(s), k = %d..%d",
              (long long)in.m, d, path, app->size, klo, khi);

  /* standardise, screen, PCA */
  sd_profile_stage_begin("cluster-pca");
  double t = sd_profile_phase_begin();
  double *mean = sd_malloc((size_t)d, sizeof *mean, "means"),
         *sdv = sd_malloc((size_t)d, sizeof *sdv, "stds");
  double *corr = sd_malloc((size_t)d * d, sizeof *corr, "correlations");
  int *cols = sd_malloc((size_t)d, sizeof *cols, "columns");
  r.reason = sd_malloc((size_t)d, sizeof *r.reason, "screen");
  r.partner = sd_malloc((size_t)d, sizeof *r.partner, "screen");
  st = sd_par_agree(app->comm,
                    (mean && sdv && corr && cols && r.reason && r.partner) ? SD_OK : SD_ERR_NOMEM);
  if (st == SD_OK)
    st = sd_cluster_moments(app->comm, in.x, in.count, in.m, d, mean, sdv, corr);
  if (st == SD_OK) {
    r.screened = sd_config_bool(cfg, "cluster.screen");
    if (r.screened) {
      r.d_kept =
          sd_cluster_screen(d, sdv, corr, sd_config_float(cfg, "cluster.screen_var"),
                            sd_config_float(cfg, "cluster.screen_corr"), r.reason, r.partner);
    } else {
      r.d_kept = d;
      for (int j = 0; j < d; j++) {
        r.reason[j] = SD_SCREEN_REASON_KEPT;
        r.partner[j] = -1;
      }
    }
    int n = 0;
    for (int j = 0; j < d; j++)
      if (r.reason[j] == SD_SCREEN_REASON_KEPT)
        cols[n++] = j;
    if (r.screened)
      for (int j = 0; j < d; j++)
        if (r.reason[j] != SD_SCREEN_REASON_KEPT)
          sd_log_info("cluster: screen drops %s (%s%s)", in.names[j],
                      r.reason[j] == SD_SCREEN_REASON_LOW_VARIANCE
                          ? "variance below cluster.screen_var"
                          : "correlated with ",
                      r.reason[j] == SD_SCREEN_REASON_CORRELATED ? in.names[r.partner[j]] : "");
    st = sd_pca_fit(app->comm, d, mean, sdv, corr, r.d_kept, cols, variance, ncomp, &r.pca);
  }
  free(mean);
  free(sdv);
  free(corr);
  free(cols);
  if (st != SD_OK)
    goto done;
  r.p = r.pca->p;
  r.scores = sd_malloc((size_t)(in.count > 0 ? in.count : 1) * r.p, sizeof *r.scores, "scores");
  st = sd_par_agree(app->comm, r.scores ? SD_OK : SD_ERR_NOMEM);
  if (st == SD_OK)
    st = sd_par_agree(app->comm, sd_pca_transform(r.pca, in.x, in.count, r.scores));
  if (st != SD_OK)
    goto done;
  {
    double cum = 0;
    for (int i = 0; i < r.p; i++)
      cum += r.pca->explained_ratio[i];
    sd_log_info("cluster: PCA keeps %d of %d components (%.1f%% of the variance of %d standardised "
                "columns)",
                r.p, r.d_kept, 100 * cum, r.d_kept);
  }
  sd_profile_phase_end(SD_PHASE_COMPUTE, t);
  sd_profile_stage_end(in.count);

  /* k-means for every k */
  sd_profile_stage_begin("cluster-kmeans");
  r.nk = khi - klo + 1;
  r.ks = sd_malloc((size_t)r.nk, sizeof *r.ks, "k");
  r.sil = sd_calloc((size_t)r.nk, sizeof *r.sil, "silhouette");
  r.sil_se = sd_calloc((size_t)r.nk, sizeof *r.sil_se, "silhouette");
  r.ch = sd_calloc((size_t)r.nk, sizeof *r.ch, "CH");
  r.db = sd_calloc((size_t)r.nk, sizeof *r.db, "DB");
  r.inertia = sd_calloc((size_t)r.nk, sizeof *r.inertia, "inertia");
  r.iters = sd_calloc((size_t)r.nk, sizeof *r.iters, "iterations");
  r.km = sd_calloc((size_t)r.nk, sizeof *r.km, "k-means");
  r.per_cluster = sd_calloc((size_t)r.nk, sizeof *r.per_cluster, "per cluster");
  st = (r.ks && r.sil && r.sil_se && r.ch && r.db && r.inertia && r.iters && r.km && r.per_cluster)
           ? SD_OK
           : SD_ERR_NOMEM;
  for (int j = 0; st == SD_OK && j < r.nk; j++) {
    r.ks[j] = klo + j;
    r.per_cluster[j] = sd_calloc((size_t)r.ks[j], sizeof *r.per_cluster[j], "per cluster");
    if (!r.per_cluster[j])
      st = SD_ERR_NOMEM;
  }
  st = sd_par_agree(app->comm, st);
  if (st != SD_OK)
    goto done;
  sd_km_params prm = {0,
                      (int)sd_config_int(cfg, "cluster.restarts"),
                      (int)sd_config_int(cfg, "cluster.max_iter"),
                      sd_config_float(cfg, "cluster.tol"),
                      (uint64_t)sd_config_int(cfg, "cluster.seed"),
                      SD_KM_INIT_PLUSPLUS};
  if (!strcmp(init, "parallel") || (!strcmp(init, "auto") && in.m > 100000))
    prm.init = SD_KM_INIT_PARALLEL;
  sd_progress prog;
  sd_progress_begin(&prog, "k-means", r.nk);
  for (int j = 0; j < r.nk; j++) {
    prm.k = r.ks[j];
    t = sd_profile_phase_begin();
    SD_CHECK_GOTO(st, sd_km_fit(app->comm, r.scores, in.count, in.m, r.p, &prm, &r.km[j]), done);
    SD_CHECK_GOTO(st,
                  sd_km_indices(app->comm, r.scores, in.count, in.m, r.p, r.km[j].assign, r.ks[j],
                                &r.ch[j], &r.db[j]),
                  done);
    sd_profile_phase_end(SD_PHASE_COMPUTE, t);
    r.inertia[j] = r.km[j].inertia;
    r.iters[j] = r.km[j].iterations;
    sd_log_info("cluster: k = %2d: objective %.6g after %d iterations (restart %d of %d), CH %.4g, "
                "DB %.4f%s",
                r.ks[j], r.km[j].inertia, r.km[j].iterations, r.km[j].restart + 1, prm.restarts,
                r.ch[j], r.db[j], r.km[j].empty_repairs ? " (empty clusters repaired)" : "");
    sd_progress_update(&prog, j + 1);
  }
  sd_progress_end(&prog);
  sd_profile_stage_end(in.count);

  /* silhouettes of all k at once */
  sd_profile_stage_begin("cluster-silhouette");
  int64_t exact_max = sd_config_int(cfg, "cluster.exact_max");
  int64_t sample = sd_config_int(cfg, "cluster.sample");
  int sampled = !strcmp(mode, "sampled") || (!strcmp(mode, "auto") && in.m > exact_max);
  if (sampled && sample >= in.m)
    sampled = 0;
  r.sil_mode = sampled ? "sampled" : "exact";
  r.sample = sampled ? sample : 0;
  {
    const int32_t **as = sd_malloc((size_t)r.nk, sizeof *as, "assignments");
    st = sd_par_agree(app->comm, as ? SD_OK : SD_ERR_NOMEM);
    if (st != SD_OK)
      goto done;
    for (int j = 0; j < r.nk; j++)
      as[j] = r.km[j].assign;
    sd_log_info("cluster: %s silhouette of %lld rows for %d k value(s)%s", r.sil_mode,
                (long long)(sampled ? sample : in.m), r.nk,
                sampled ? " (sampled rows against all rows)" : "");
    t = sd_profile_phase_begin();
    st = sd_km_silhouette(app->comm, r.scores, in.count, in.m, r.p, r.nk, r.ks, as, r.sample,
                          (uint64_t)sd_config_int(cfg, "cluster.seed"), r.sil, r.sil_se,
                          r.per_cluster);
    sd_profile_phase_end(SD_PHASE_COMPUTE, t);
    free(as);
    if (st != SD_OK)
      goto done;
  }
  r.chosen = 0;
  for (int j = 1; j < r.nk; j++)
    if (r.sil[j] > r.sil[r.chosen])
      r.chosen = j;
  sd_profile_stage_end(in.count);
  if (app->rank == 0) {
    fprintf(stderr, "    k   silhouette   Calinski-H.   Davies-B.   objective\n");
    for (int j = 0; j < r.nk; j++)
      fprintf(stderr, "  %3d   %7.4f%s   %11.4g   %9.4f   %.6g%s\n", r.ks[j], r.sil[j],
              sampled ? "*" : " ", r.ch[j], r.db[j], r.inertia[j],
              j == r.chosen ? "   <- chosen" : "");
    if (sampled)
      fprintf(stderr, "  (* sampled: standard error %.2g at the chosen k)\n", r.sil_se[r.chosen]);
  }
  if (in.has_labels) {
    int kc = r.ks[r.chosen];
    int64_t *tab =
        sd_malloc((size_t)(in.nclass > 0 ? in.nclass : 1) * kc, sizeof *tab, "contingency");
    st = sd_par_agree(app->comm, tab ? SD_OK : SD_ERR_NOMEM);
    if (st == SD_OK)
      st = sd_cluster_contingency(app->comm, in.labels, r.km[r.chosen].assign, in.count, in.nclass,
                                  kc, tab);
    if (st == SD_OK)
      sd_cluster_external(tab, in.nclass, kc, &r.ari, &r.nmi, &r.purity);
    free(tab);
    if (st != SD_OK)
      goto done;
    sd_log_info("cluster: against the %d true classes: ARI %.4f, NMI %.4f, purity %.4f", in.nclass,
                r.ari, r.nmi, r.purity);
  }
  sd_log_info("cluster: chosen k = %d (mean silhouette %.4f)", r.ks[r.chosen], r.sil[r.chosen]);

  sd_profile_stage_begin("cluster-write");
  t = sd_profile_phase_begin();
  st = write_output(app, &in, &r, out);
  sd_profile_phase_end(SD_PHASE_IO, t);
  sd_profile_stage_end(in.count);
  if (st != SD_OK)
    goto done;
  sd_log_info("cluster: wrote %s", out);
  if (figs && *figs) {
    sd_status fst = SD_OK;
    if (app->rank == 0)
      fst = write_figures(&r, figs, variance);
    st = sd_par_agree(app->comm, fst);
  }
done:
  st = sd_par_agree(app->comm, st);
  result_free(&r);
  cl_input_free(&in);
  return st;
}

const sd_command sd_cmd_cluster = {
    .name = "cluster",
    .summary = "PCA (ScaLAPACK) + distributed k-means over a range of k, silhouette-chosen k "
               "(clusters.h5)",
    .usage = "--descriptors descriptors.h5 --output clusters.h5 [--k 2:12] [--variance 0.95] "
             "[--screen] [--figures PREFIX]",
    .description =
        "Reads any HDF5 file holding /descriptors [M,D] (optional /names, /labels), standardises "
        "the\n"
        "columns (population std), optionally screens them (near-constant, |r| above a "
        "threshold),\n"
        "keeps the principal components explaining cluster.variance, runs k-means (k-means++ or\n"
        "k-means||, restarts) for every k of cluster.k, and scores each k by the mean silhouette\n"
        "(exact or sampled), Calinski-Harabasz and Davies-Bouldin. The k with the largest mean\n"
        "silhouette is chosen; ARI / NMI / purity against /labels when present. Writes "
        "clusters.h5\n"
        "(/assignments, /centroids, /scores, /k_values, /silhouette, ..., /pca/*) and, with\n"
        "--figures, <prefix>silhouette.png and <prefix>pca_variance.png. Bitwise the same at any\n"
        "rank count.",
    .sections = "cluster,general",
    .positional_key = NULL,
    .options = cluster_options,
    .run = cluster_run,
};
