/* h5rows.c - row-block transfers of N-D datasets for sharded readers and writers (each rank
 * owns a contiguous block of rows along the first dimension). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "stemdefect/h5util.h"
#include "stemdefect/par.h"

static sd_status rows_transfer(hid_t dset, hid_t dxpl, int64_t first, int64_t count, hid_t mtype,
                               void *buf, int writing) {
  char where[512];
  sd_h5_describe(dset, where, sizeof where);
  hid_t fspace = H5Dget_space(dset), mspace = H5I_INVALID_HID;
  hsize_t dims[4], start[4] = {0, 0, 0, 0}, block[4];
  int nd = fspace >= 0 ? H5Sget_simple_extent_ndims(fspace) : -1;
  sd_status st = SD_OK;
  if (nd < 1 || nd > 4 || H5Sget_simple_extent_dims(fspace, dims, NULL) < 0) {
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot query the dataspace of %s", where);
    goto done;
  }
  if (first < 0 || count < 0 || (hsize_t)(first + count) > dims[0]) {
    st = SD_ERROR(SD_ERR_ARG, "rows [%lld, %lld) are outside %s (%llu rows)", (long long)first,
                  (long long)(first + count), where, (unsigned long long)dims[0]);
    goto done;
  }
  for (int d = 1; d < nd; d++) block[d] = dims[d];
  start[0] = (hsize_t)first;
  block[0] = count > 0 ? (hsize_t)count : 1;
  mspace = H5Screate_simple(nd, block, NULL);
  herr_t sel = mspace < 0 ? -1
               : count > 0 ? H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, block, NULL)
                           : (H5Sselect_none(fspace) < 0 ? -1 : H5Sselect_none(mspace));
  if (sel < 0) {
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot select rows [%lld, %lld) of %s", (long long)first,
                     (long long)(first + count), where);
    goto done;
  }
  if (dims[0] == 0) goto done; /* an empty dataset has no storage */
  char dummy[16];
  void *b = (buf && count > 0) ? buf : dummy;
  herr_t rc = writing ? H5Dwrite(dset, mtype, mspace, fspace, dxpl, b)
                      : H5Dread(dset, mtype, mspace, fspace, dxpl, b);
  if (rc < 0)
    st = SD_H5_ERROR(SD_ERR_IO, "cannot %s rows [%lld, %lld) of %s", writing ? "write" : "read",
                     (long long)first, (long long)(first + count), where);
done:
  sd_h5_close(&mspace);
  sd_h5_close(&fspace);
  return st;
}

sd_status sd_h5_rows_read(hid_t dset, hid_t dxpl, int64_t first, int64_t count, hid_t mtype,
                          void *buf) {
  return rows_transfer(dset, dxpl, first, count, mtype, buf, 0);
}

sd_status sd_h5_rows_write(hid_t dset, hid_t dxpl, int64_t first, int64_t count, hid_t mtype,
                           const void *buf) {
  return rows_transfer(dset, dxpl, first, count, mtype, (void *)buf, 1);
}

sd_status sd_h5_dataset_create(hid_t loc, const char *name, hid_t ftype, int nd,
                               const int64_t *dims, hid_t *out) {
  hsize_t d[4];
  if (nd < 1 || nd > 4) return SD_ERROR(SD_ERR_ARG, "dataset %s: rank %d not in 1..4", name, nd);
  for (int i = 0; i < nd; i++) d[i] = (hsize_t)dims[i];
  hid_t space = H5Screate_simple(nd, d, NULL);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (dcpl >= 0) H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
  *out = space < 0 || dcpl < 0 ? H5I_INVALID_HID
                               : H5Dcreate2(loc, name, ftype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  sd_h5_close(&dcpl);
  sd_h5_close(&space);
  if (*out < 0) {
    char where[512];
    return SD_H5_ERROR(SD_ERR_HDF5, "cannot create dataset %s in %s", name,
                       sd_h5_describe(loc, where, sizeof where));
  }
  return SD_OK;
}

sd_status sd_h5_dataset_open(hid_t loc, const char *name, hid_t *out, int *nd, int64_t *dims) {
  char where[512];
  sd_h5_describe(loc, where, sizeof where);
  htri_t ex = H5Lexists(loc, name, H5P_DEFAULT);
  if (ex <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return SD_ERROR(SD_ERR_FORMAT, "%s has no dataset %s", where, name);
  }
  *out = H5Dopen2(loc, name, H5P_DEFAULT);
  if (*out < 0) return SD_H5_ERROR(SD_ERR_HDF5, "cannot open dataset %s in %s", name, where);
  hid_t sp = H5Dget_space(*out);
  hsize_t d[8];
  int n = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
  if (n < 0 || n > 4 || H5Sget_simple_extent_dims(sp, d, NULL) < 0) {
    sd_h5_close(&sp);
    sd_h5_close(out);
    return SD_ERROR(SD_ERR_FORMAT, "dataset %s in %s has an unsupported shape (rank %d)", name,
                    where, n);
  }
  sd_h5_close(&sp);
  *nd = n;
  for (int i = 0; i < n; i++) dims[i] = (int64_t)d[i];
  return SD_OK;
}

sd_status sd_h5_output_create(MPI_Comm comm, const char *path, sd_h5_output *out) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  memset(out, 0, sizeof *out);
  out->comm = comm;
  out->file = H5I_INVALID_HID;
  out->dxpl = H5I_INVALID_HID;
  sd_status st = SD_OK;
  if (rank == 0) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    size_t cap = strlen(path) + 64;
    out->tmp_path = sd_malloc(cap, 1, "temporary file name");
    if (!out->tmp_path) st = SD_ERR_NOMEM;
    else
      snprintf(out->tmp_path, cap, "%s.tmp-%ld-%lx", path, (long)getpid(),
               (unsigned long)((unsigned long)ts.tv_sec * 1000000000ul + (unsigned long)ts.tv_nsec));
    char *dir = st == SD_OK ? sd_strdup(path) : NULL;
    if (st == SD_OK && !dir) st = SD_ERR_NOMEM;
    if (dir) {
      char *slash = strrchr(dir, '/');
      const char *d = slash ? (slash == dir ? "/" : (*slash = 0, dir)) : ".";
      struct stat sb;
      if (stat(d, &sb) != 0 || !S_ISDIR(sb.st_mode))
        st = SD_ERROR(SD_ERR_IO, "cannot write '%s': directory '%s' does not exist", path, d);
      else if (access(d, W_OK) != 0)
        st = SD_ERROR(SD_ERR_IO, "cannot write '%s': directory '%s' is not writable", path, d);
      else if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        st = SD_ERROR(SD_ERR_IO, "cannot write '%s': it is a directory", path);
      free(dir);
    }
  }
  st = sd_par_agree(comm, st);
  if (st == SD_OK) st = sd_par_agree(comm, sd_par_bcast_string(comm, &out->tmp_path, 0));
  if (st == SD_OK) {
    out->path = sd_strdup(path);
    st = sd_par_agree(comm, out->path ? SD_OK : SD_ERR_NOMEM);
  }
  if (st != SD_OK) {
    free(out->tmp_path);
    free(out->path);
    out->tmp_path = out->path = NULL;
    return st;
  }
  sd_par_tmpfile_register(out->tmp_path);
  st = sd_par_agree(comm, sd_h5_file_create(comm, out->tmp_path, &out->file));
  if (st == SD_OK) st = sd_par_agree(comm, sd_h5_dxpl_collective(&out->dxpl));
  if (st != SD_OK) sd_h5_output_close(out, 0);
  return st;
}

sd_status sd_h5_output_close(sd_h5_output *o, int commit) {
  if (!o->tmp_path) return SD_OK;
  int rank;
  MPI_Comm_rank(o->comm, &rank);
  sd_status st = SD_OK;
  sd_h5_close(&o->dxpl);
  if (o->file >= 0 && H5Fclose(o->file) < 0)
    st = SD_H5_ERROR(SD_ERR_IO, "cannot close '%s'", o->tmp_path);
  o->file = H5I_INVALID_HID;
  st = sd_par_agree(o->comm, st);
  int ok = commit && st == SD_OK;
  /* every rank has to commit: a rank asking for removal wins */
  int all_ok = ok;
  MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, o->comm);
  sd_status local = SD_OK;
  if (rank == 0) {
    if (all_ok && rename(o->tmp_path, o->path) != 0)
      local = SD_ERROR(SD_ERR_IO, "cannot rename '%s' to '%s': %s", o->tmp_path, o->path,
                       strerror(errno));
    if (!all_ok || local != SD_OK) unlink(o->tmp_path);
  }
  sd_status renamed = sd_par_agree(o->comm, local);
  if (st == SD_OK) st = renamed;
  sd_par_tmpfile_unregister(o->tmp_path);
  free(o->tmp_path);
  free(o->path);
  o->tmp_path = o->path = NULL;
  return st;
}
