/* h5util.c - HDF5 helpers: error-stack capture, MPI-IO file access, string attributes and
 * string datasets that h5py and h5dump read without our code. */
#include "stemdefect/h5util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* H5Dvlen_reclaim was renamed H5Treclaim in 1.12 (both exist in 1.10.8). */
#if H5_VERSION_GE(1, 12, 0)
#define SD_H5_RECLAIM(type, space, plist, buf) H5Treclaim((type), (space), (plist), (buf))
#else
#define SD_H5_RECLAIM(type, space, plist, buf) H5Dvlen_reclaim((type), (space), (plist), (buf))
#endif

void sd_h5_init(void) {
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

/* ---- error stack ------------------------------------------------------------------------ */

typedef struct stack_walk {
  int n;           /* entries seen */
  char first[256]; /* description of the outermost (API) entry */
  char last[512];  /* description and minor message of the innermost entry */
} stack_walk;

static herr_t walk_cb(unsigned idx, const H5E_error2_t *e, void *data) {
  stack_walk *w = data;
  const char *desc = (e->desc && e->desc[0]) ? e->desc : (e->func_name ? e->func_name : "?");
  if (w->n == 0)
    snprintf(w->first, sizeof w->first, "%s", desc);
  char minor[128] = "";
  H5Eget_msg(e->min_num, NULL, minor, sizeof minor);
  if (minor[0] && strcmp(minor, desc) != 0)
    snprintf(w->last, sizeof w->last, "%s: %s", desc, minor);
  else
    snprintf(w->last, sizeof w->last, "%s", desc);
  w->n++;
  (void)idx;
  return 0;
}

void sd_h5_error_stack(char *buf, size_t cap) {
  if (cap == 0)
    return;
  buf[0] = '\0';
  hid_t stk = H5Eget_current_stack(); /* copies and clears the default stack */
  if (stk < 0)
    return;
  stack_walk w = {0, "", ""};
  H5Ewalk2(stk, H5E_WALK_DOWNWARD, walk_cb, &w);
  H5Eclose_stack(stk);
  if (w.n == 0)
    return;
  if (w.n == 1 || strstr(w.last, w.first) == w.last)
    snprintf(buf, cap, "%s", w.last);
  else
    snprintf(buf, cap, "%s; %s", w.first, w.last);
}

sd_status sd_h5_error_raise(sd_status code, const char *file, int line, const char *func,
                            const char *fmt, ...) {
  char stack[768];
  sd_h5_error_stack(stack, sizeof stack);
  char text[1536];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  if (stack[0])
    return sd_error_raise(code, file, line, func, "%s (HDF5: %s)", text, stack);
  return sd_error_raise(code, file, line, func, "%s", text);
}

const char *sd_h5_describe(hid_t loc, char *buf, size_t cap) {
  /* used in the arguments of SD_H5_ERROR: keep the pending error stack for it */
  hid_t pending = H5Eget_current_stack();
  char fname[512] = "?", oname[256] = "";
  if (H5Fget_name(loc, fname, sizeof fname) < 0)
    snprintf(fname, sizeof fname, "?");
  H5I_type_t t = H5Iget_type(loc);
  if (t != H5I_FILE && H5Iget_name(loc, oname, sizeof oname) < 0)
    oname[0] = '\0';
  if (oname[0])
    snprintf(buf, cap, "'%s:%s'", fname, oname);
  else
    snprintf(buf, cap, "'%s'", fname);
  if (pending >= 0)
    H5Eset_current_stack(pending); /* restores and closes the copy */
  else
    H5Eclear2(H5E_DEFAULT);
  return buf;
}

void sd_h5_close(hid_t *id) {
  if (!id || *id < 0)
    return;
  switch (H5Iget_type(*id)) {
  case H5I_FILE: H5Fclose(*id); break;
  case H5I_GROUP: H5Gclose(*id); break;
  case H5I_DATASET: H5Dclose(*id); break;
  case H5I_DATASPACE: H5Sclose(*id); break;
  case H5I_DATATYPE: H5Tclose(*id); break;
  case H5I_ATTR: H5Aclose(*id); break;
  case H5I_GENPROP_LST: H5Pclose(*id); break;
  default: break;
  }
  *id = H5I_INVALID_HID;
}

/* ---- files ------------------------------------------------------------------------------ */

static sd_status fapl_mpio(MPI_Comm comm, const char *path, hid_t *out) {
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl < 0)
    return SD_H5_ERROR(SD_ERR_HDF5, "cannot create a file access list for '%s'", path);
  herr_t rc = H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
#if H5_VERSION_GE(1, 10, 0)
  /* metadata is read by one rank and broadcast, and written collectively */
  if (rc >= 0)
    rc = H5Pset_all_coll_metadata_ops(fapl, 1);
  if (rc >= 0)
    rc = H5Pset_coll_metadata_write(fapl, 1);
#endif
  if (rc < 0) {
    sd_status st = SD_H5_ERROR(SD_ERR_HDF5, "cannot set MPI-IO file access for '%s'", path);
    H5Pclose(fapl);
    return st;
  }
  *out = fapl;
  return SD_OK;
}

sd_status sd_h5_file_create(MPI_Comm comm, const char *path, hid_t *out) {
  *out = H5I_INVALID_HID;
  sd_h5_init();
  hid_t fapl;
  SD_CHECK(fapl_mpio(comm, path, &fapl));
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  sd_status st = SD_OK;
  if (f < 0)
    st = SD_H5_ERROR(SD_ERR_IO, "cannot create HDF5 file '%s'", path);
  H5Pclose(fapl);
  *out = f;
  return st;
}

sd_status sd_h5_file_open(MPI_Comm comm, const char *path, int writable, hid_t *out) {
  *out = H5I_INVALID_HID;
  sd_h5_init();
  hid_t fapl;
  SD_CHECK(fapl_mpio(comm, path, &fapl));
  hid_t f = H5Fopen(path, writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, fapl);
  sd_status st = SD_OK;
  if (f < 0)
    st = SD_H5_ERROR(SD_ERR_IO, "cannot open '%s' as an HDF5 file%s", path,
                     writable ? " for writing" : "");
  H5Pclose(fapl);
  *out = f;
  return st;
}

sd_status sd_h5_dxpl_collective(hid_t *out) {
  *out = H5Pcreate(H5P_DATASET_XFER);
  if (*out < 0)
    return SD_H5_ERROR(SD_ERR_HDF5, "cannot create a transfer property list");
  if (H5Pset_dxpl_mpio(*out, H5FD_MPIO_COLLECTIVE) < 0) {
    sd_h5_close(out);
    return SD_H5_ERROR(SD_ERR_HDF5, "cannot set collective MPI-IO transfers");
  }
  return SD_OK;
}

/* ---- types ------------------------------------------------------------------------------ */

sd_status sd_h5_fixed_string_type(size_t len, hid_t *out) {
  *out = H5Tcopy(H5T_C_S1);
  if (*out < 0)
    return SD_H5_ERROR(SD_ERR_HDF5, "cannot create a string type");
  if (H5Tset_size(*out, len ? len : 1) < 0 || H5Tset_strpad(*out, H5T_STR_NULLTERM) < 0 ||
      H5Tset_cset(*out, H5T_CSET_ASCII) < 0) {
    sd_h5_close(out);
    return SD_H5_ERROR(SD_ERR_HDF5, "cannot create a fixed-length string type of %zu bytes", len);
  }
  return SD_OK;
}

static sd_status vlen_string_type(hid_t *out) {
  *out = H5Tcopy(H5T_C_S1);
  if (*out < 0)
    return SD_H5_ERROR(SD_ERR_HDF5, "cannot create a string type");
  if (H5Tset_size(*out, H5T_VARIABLE) < 0 || H5Tset_cset(*out, H5T_CSET_UTF8) < 0) {
    sd_h5_close(out);
    return SD_H5_ERROR(SD_ERR_HDF5, "cannot create a variable-length string type");
  }
  return SD_OK;
}

/* ---- attributes ------------------------------------------------------------------------- */

/* Creates attribute name of type/space on loc, replacing an existing one. */
static sd_status attr_create(hid_t loc, const char *name, hid_t type, hid_t space, hid_t *out) {
  char where[800];
  *out = H5I_INVALID_HID;
  htri_t ex = H5Aexists(loc, name);
  if (ex < 0)
    return SD_H5_ERROR(SD_ERR_HDF5, "cannot check attribute %s on %s", name,
                       sd_h5_describe(loc, where, sizeof where));
  if (ex > 0 && H5Adelete(loc, name) < 0)
    return SD_H5_ERROR(SD_ERR_HDF5, "cannot replace attribute %s on %s", name,
                       sd_h5_describe(loc, where, sizeof where));
  *out = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  if (*out < 0)
    return SD_H5_ERROR(SD_ERR_HDF5, "cannot create attribute %s on %s", name,
                       sd_h5_describe(loc, where, sizeof where));
  return SD_OK;
}

sd_status sd_h5_attr_write_string(hid_t loc, const char *name, const char *value) {
  sd_status st = SD_OK;
  char where[800];
  hid_t type = H5I_INVALID_HID, space = H5I_INVALID_HID, attr = H5I_INVALID_HID;
  const char *v = value ? value : "";
  SD_CHECK_GOTO(st, vlen_string_type(&type), done);
  space = H5Screate(H5S_SCALAR);
  if (space < 0) {
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot create a scalar dataspace");
    goto done;
  }
  SD_CHECK_GOTO(st, attr_create(loc, name, type, space, &attr), done);
  if (H5Awrite(attr, type, &v) < 0)
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot write string attribute %s on %s", name,
                     sd_h5_describe(loc, where, sizeof where));
done:
  sd_h5_close(&attr);
  sd_h5_close(&space);
  sd_h5_close(&type);
  return st;
}

/* A scalar integer attribute of file type ftype from *value of memory type mtype. */
static sd_status attr_write_scalar(hid_t loc, const char *name, hid_t ftype, hid_t mtype,
                                   const void *value) {
  sd_status st = SD_OK;
  char where[800];
  hid_t space = H5I_INVALID_HID, attr = H5I_INVALID_HID;
  space = H5Screate(H5S_SCALAR);
  if (space < 0)
    return SD_H5_ERROR(SD_ERR_HDF5, "cannot create a scalar dataspace");
  SD_CHECK_GOTO(st, attr_create(loc, name, ftype, space, &attr), done);
  if (H5Awrite(attr, mtype, value) < 0)
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot write integer attribute %s on %s", name,
                     sd_h5_describe(loc, where, sizeof where));
done:
  sd_h5_close(&attr);
  sd_h5_close(&space);
  return st;
}

sd_status sd_h5_attr_write_int(hid_t loc, const char *name, int value) {
  return attr_write_scalar(loc, name, H5T_STD_I32LE, H5T_NATIVE_INT, &value);
}

sd_status sd_h5_attr_write_i64(hid_t loc, const char *name, int64_t value) {
  return attr_write_scalar(loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

/* Packs n strings into n*len bytes, NUL-terminated and padded; len = longest + 1. */
static sd_status pack_strings(int n, const char *const *values, size_t *len, char **buf) {
  size_t l = 1;
  for (int i = 0; i < n; i++) {
    size_t k = values[i] ? strlen(values[i]) + 1 : 1;
    if (k > l)
      l = k;
  }
  *buf = sd_calloc(n > 0 ? (size_t)n : 1, l, "packed strings");
  if (!*buf)
    SD_CHECK(SD_ERR_NOMEM);
  for (int i = 0; i < n; i++)
    if (values[i])
      memcpy(*buf + (size_t)i * l, values[i], strlen(values[i]));
  *len = l;
  return SD_OK;
}

sd_status sd_h5_attr_write_strings(hid_t loc, const char *name, int n, const char *const *values) {
  sd_status st = SD_OK;
  char where[800];
  char *buf = NULL;
  size_t len = 0;
  hid_t type = H5I_INVALID_HID, space = H5I_INVALID_HID, attr = H5I_INVALID_HID;
  if (n < 0 || (n > 0 && !values))
    return SD_ERROR(SD_ERR_ARG, "attribute %s: %d strings without values", name, n);
  SD_CHECK_GOTO(st, pack_strings(n, values, &len, &buf), done);
  SD_CHECK_GOTO(st, sd_h5_fixed_string_type(len, &type), done);
  hsize_t dims[1] = {(hsize_t)n};
  space = H5Screate_simple(1, dims, NULL);
  if (space < 0) {
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot create a dataspace of %d strings", n);
    goto done;
  }
  SD_CHECK_GOTO(st, attr_create(loc, name, type, space, &attr), done);
  if (H5Awrite(attr, type, buf) < 0)
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot write string array attribute %s on %s", name,
                     sd_h5_describe(loc, where, sizeof where));
done:
  sd_h5_close(&attr);
  sd_h5_close(&space);
  sd_h5_close(&type);
  free(buf);
  return st;
}

sd_status sd_h5_attr_exists(hid_t loc, const char *name, int *exists) {
  char where[800];
  htri_t ex = H5Aexists(loc, name);
  if (ex < 0)
    return SD_H5_ERROR(SD_ERR_HDF5, "cannot check attribute %s on %s", name,
                       sd_h5_describe(loc, where, sizeof where));
  *exists = ex > 0;
  return SD_OK;
}

void sd_h5_strings_free(char **s, int n) {
  if (!s)
    return;
  for (int i = 0; i < n; i++)
    free(s[i]);
  free(s);
}

/* Converts n strings read with file type ftype (fixed or variable length) from raw into
 * new C strings. raw holds n*size bytes for fixed, n char* for variable length. */
static sd_status unpack_strings(int n, int is_vlen, size_t size, const void *raw, char ***out) {
  char **s = sd_calloc(n > 0 ? (size_t)n : 1, sizeof *s, "string array");
  if (!s)
    SD_CHECK(SD_ERR_NOMEM);
  for (int i = 0; i < n; i++) {
    const char *src;
    size_t len;
    if (is_vlen) {
      src = ((char *const *)raw)[i];
      if (!src)
        src = "";
      len = strlen(src);
    } else {
      src = (const char *)raw + (size_t)i * size;
      len = strnlen(src, size);
    }
    s[i] = sd_malloc(len + 1, 1, "string");
    if (!s[i]) {
      sd_h5_strings_free(s, i);
      SD_CHECK(SD_ERR_NOMEM);
    }
    memcpy(s[i], src, len);
    s[i][len] = '\0';
    /* trailing spaces of Fortran-style (SPACEPAD) strings */
    while (!is_vlen && len > 0 && s[i][len - 1] == ' ')
      s[i][--len] = '\0';
  }
  *out = s;
  return SD_OK;
}

/* Reads all elements of a string attribute or dataset obj (is_dataset selects the API). */
static sd_status read_string_object(hid_t obj, int is_dataset, hid_t dxpl, const char *what,
                                    int *n_out, char ***out) {
  sd_status st = SD_OK;
  char where[800];
  hid_t ftype = H5I_INVALID_HID, space = H5I_INVALID_HID, mtype = H5I_INVALID_HID;
  void *raw = NULL;
  int vlen_read = 0;
  ftype = is_dataset ? H5Dget_type(obj) : H5Aget_type(obj);
  space = is_dataset ? H5Dget_space(obj) : H5Aget_space(obj);
  if (ftype < 0 || space < 0) {
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot query %s %s", what,
                     sd_h5_describe(obj, where, sizeof where));
    goto done;
  }
  if (H5Tget_class(ftype) != H5T_STRING) {
    st = SD_ERROR(SD_ERR_FORMAT,
                  "%s %s is not a string (expected fixed- or variable-length "
                  "strings)",
                  what, sd_h5_describe(obj, where, sizeof where));
    goto done;
  }
  int ndims = H5Sget_simple_extent_ndims(space);
  hssize_t npoints = H5Sget_simple_extent_npoints(space);
  if (ndims > 1 || npoints < 0 || npoints > 1000000) {
    st = SD_ERROR(SD_ERR_FORMAT,
                  "%s %s has %d dimensions and %lld elements (expected a 1-D "
                  "list of strings)",
                  what, sd_h5_describe(obj, where, sizeof where), ndims, (long long)npoints);
    goto done;
  }
  int n = (int)npoints;
  htri_t is_vlen = H5Tis_variable_str(ftype);
  size_t size = H5Tget_size(ftype);
  if (is_vlen < 0 || size == 0) {
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot query the string type of %s %s", what,
                     sd_h5_describe(obj, where, sizeof where));
    goto done;
  }
  if (is_vlen > 0) {
    /* same character set as the file: HDF5 does not convert between ASCII and UTF-8 */
    SD_CHECK_GOTO(st, vlen_string_type(&mtype), done);
    if (H5Tset_cset(mtype, H5Tget_cset(ftype)) < 0) {
      st = SD_H5_ERROR(SD_ERR_HDF5, "cannot create a memory string type");
      goto done;
    }
    raw = sd_calloc(n > 0 ? (size_t)n : 1, sizeof(char *), "string pointers");
  } else {
    /* same size as the file, so no conversion; unpack handles padding */
    mtype = H5Tcopy(ftype);
    raw = sd_calloc(n > 0 ? (size_t)n : 1, size ? size : 1, "string buffer");
  }
  if (mtype < 0) {
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot create a memory string type");
    goto done;
  }
  if (!raw)
    SD_CHECK_GOTO(st, SD_ERR_NOMEM, done);
  herr_t rc =
      is_dataset ? H5Dread(obj, mtype, H5S_ALL, H5S_ALL, dxpl, raw) : H5Aread(obj, mtype, raw);
  if (rc < 0) {
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot read %s %s", what,
                     sd_h5_describe(obj, where, sizeof where));
    goto done;
  }
  vlen_read = is_vlen > 0;
  SD_CHECK_GOTO(st, unpack_strings(n, is_vlen > 0, size, raw, out), done);
  *n_out = n;
done:
  if (vlen_read)
    SD_H5_RECLAIM(mtype, space, H5P_DEFAULT, raw);
  free(raw);
  sd_h5_close(&mtype);
  sd_h5_close(&space);
  sd_h5_close(&ftype);
  return st;
}

static sd_status attr_open(hid_t loc, const char *name, hid_t *attr) {
  char where[800];
  htri_t ex = H5Aexists(loc, name);
  if (ex <= 0)
    return SD_H5_ERROR(SD_ERR_FORMAT, "%s has no attribute %s",
                       sd_h5_describe(loc, where, sizeof where), name);
  *attr = H5Aopen(loc, name, H5P_DEFAULT);
  if (*attr < 0)
    return SD_H5_ERROR(SD_ERR_HDF5, "cannot open attribute %s on %s", name,
                       sd_h5_describe(loc, where, sizeof where));
  return SD_OK;
}

sd_status sd_h5_attr_read_strings(hid_t loc, const char *name, int *n, char ***out) {
  sd_status st = SD_OK;
  hid_t attr = H5I_INVALID_HID;
  char what[300];
  snprintf(what, sizeof what, "attribute %s of", name);
  SD_CHECK_GOTO(st, attr_open(loc, name, &attr), done);
  SD_CHECK_GOTO(st, read_string_object(attr, 0, H5P_DEFAULT, what, n, out), done);
done:
  sd_h5_close(&attr);
  return st;
}

sd_status sd_h5_attr_read_string(hid_t loc, const char *name, char **out) {
  char **s = NULL;
  int n = 0;
  SD_CHECK(sd_h5_attr_read_strings(loc, name, &n, &s));
  if (n != 1) {
    char where[800];
    sd_h5_strings_free(s, n);
    return SD_ERROR(SD_ERR_FORMAT, "attribute %s on %s holds %d strings (expected one)", name,
                    sd_h5_describe(loc, where, sizeof where), n);
  }
  *out = s[0];
  free(s);
  return SD_OK;
}

sd_status sd_h5_attr_read_int(hid_t loc, const char *name, int64_t *out) {
  sd_status st = SD_OK;
  char where[800];
  hid_t attr = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
  SD_CHECK_GOTO(st, attr_open(loc, name, &attr), done);
  type = H5Aget_type(attr);
  space = H5Aget_space(attr);
  if (type < 0 || space < 0) {
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot query attribute %s on %s", name,
                     sd_h5_describe(loc, where, sizeof where));
    goto done;
  }
  if (H5Tget_class(type) != H5T_INTEGER || H5Sget_simple_extent_npoints(space) != 1) {
    st = SD_ERROR(SD_ERR_FORMAT, "attribute %s on %s is not one integer", name,
                  sd_h5_describe(loc, where, sizeof where));
    goto done;
  }
  long long v = 0;
  if (H5Aread(attr, H5T_NATIVE_LLONG, &v) < 0) {
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot read attribute %s on %s", name,
                     sd_h5_describe(loc, where, sizeof where));
    goto done;
  }
  *out = (int64_t)v;
done:
  sd_h5_close(&space);
  sd_h5_close(&type);
  sd_h5_close(&attr);
  return st;
}

/* ---- string datasets -------------------------------------------------------------------- */

sd_status sd_h5_dataset_write_strings(hid_t loc, const char *name, int n, const char *const *values,
                                      hid_t dxpl, int rank) {
  sd_status st = SD_OK;
  char where[800];
  char *buf = NULL;
  size_t len = 0;
  hid_t type = H5I_INVALID_HID, space = H5I_INVALID_HID, dset = H5I_INVALID_HID;
  if (n < 0 || (n > 0 && !values))
    return SD_ERROR(SD_ERR_ARG, "dataset %s: %d strings without values", name, n);
  SD_CHECK_GOTO(st, pack_strings(n, values, &len, &buf), done);
  SD_CHECK_GOTO(st, sd_h5_fixed_string_type(len, &type), done);
  hsize_t dims[1] = {(hsize_t)n};
  space = H5Screate_simple(1, dims, NULL);
  if (space < 0) {
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot create a dataspace of %d strings", n);
    goto done;
  }
  dset = H5Dcreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (dset < 0) {
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot create dataset %s in %s", name,
                     sd_h5_describe(loc, where, sizeof where));
    goto done;
  }
  if (n == 0)
    goto done; /* nothing to write (the same on every rank) */
  /* one writer: the others select nothing in the same collective call */
  if (rank != 0 && H5Sselect_none(space) < 0) {
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot select nothing");
    goto done;
  }
  if (H5Dwrite(dset, type, space, space, dxpl, buf) < 0)
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot write dataset %s",
                     sd_h5_describe(dset, where, sizeof where));
done:
  sd_h5_close(&dset);
  sd_h5_close(&space);
  sd_h5_close(&type);
  free(buf);
  return st;
}

sd_status sd_h5_dataset_read_strings(hid_t loc, const char *name, hid_t dxpl, int *n, char ***out) {
  sd_status st = SD_OK;
  char where[800];
  hid_t dset = H5Dopen2(loc, name, H5P_DEFAULT);
  if (dset < 0)
    return SD_H5_ERROR(SD_ERR_FORMAT, "cannot open dataset %s in %s", name,
                       sd_h5_describe(loc, where, sizeof where));
  SD_CHECK_GOTO(st, read_string_object(dset, 1, dxpl, "dataset", n, out), done);
done:
  sd_h5_close(&dset);
  return st;
}
