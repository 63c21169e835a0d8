/* stack.c - the image stack file (schema in stack.h), written and read in parallel.
 *
 * Every rank selects its own rows of each dataset (a hyperslab, or nothing when it has no
 * rows) and takes part in every transfer, which is collective. Failures that only some
 * ranks can see (bad arguments, allocation) are checked before the next collective call and
 * agreed on with sd_par_agree, so every public function returns the same status on every
 * rank. HDF5 metadata calls (create, open, attributes) are made by all ranks with the same
 * arguments and fail identically; their status is agreed on as well before returning.
 */
#include "stemdefect/stack.h"

#include <errno.h>
#include <hdf5.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "stemdefect/h5util.h"
#include "stemdefect/par.h"
#include "stemdefect/version.h"

#define SD_STACK_FORMAT "stemdefect-stack"
#define SD_STACK_FORMAT_VERSION 1

struct sd_stack {
  MPI_Comm comm; /* duplicate of the caller's communicator, MPI_ERRORS_RETURN */
  int rank, size;
  int writing;       /* 1: made by sd_stack_create, 0: opened for reading */
  char *path;        /* the final name */
  char *tmp_path;    /* "<path>.tmp-<token>" while writing, else NULL */
  hid_t file, dxpl;  /* dxpl: collective transfers */
  hid_t images;      /* [N,H,W] */
  hid_t labels;      /* [N] */
  hid_t masks;       /* [N,H,W], or H5I_INVALID_HID */
  hid_t source;      /* [N], or H5I_INVALID_HID (absent, or not created yet) */
  size_t source_len; /* bytes per /source string (fixed length); 0 when variable-length */
  int64_t written;   /* images this rank wrote */
  /* sources passed to sd_stack_write on this rank, in call order, kept until commit */
  int64_t src_n, src_cap;
  int64_t *src_index; /* (src_n) image index */
  char **src_text;    /* (src_n) copies */
  sd_stack_info info;
};

/* ---- provenance ------------------------------------------------------------------------- */

static void utc_now_iso8601(char *buf, size_t cap) {
  time_t t = time(NULL);
  struct tm tm;
  if (!gmtime_r(&t, &tm) || strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    snprintf(buf, cap, "unknown");
}

/* The communicator of the file holding loc when it uses the MPI-IO driver (a duplicate to
 * free), else MPI_COMM_NULL. */
static MPI_Comm file_comm(hid_t loc) {
  MPI_Comm comm = MPI_COMM_NULL;
  MPI_Info info = MPI_INFO_NULL;
  hid_t file = H5Iget_file_id(loc);
  hid_t fapl = file >= 0 ? H5Fget_access_plist(file) : H5I_INVALID_HID;
  if (fapl >= 0 && H5Pget_driver(fapl) == H5FD_MPIO && H5Pget_fapl_mpio(fapl, &comm, &info) < 0)
    comm = MPI_COMM_NULL;
  if (info != MPI_INFO_NULL)
    MPI_Info_free(&info);
  sd_h5_close(&fapl);
  sd_h5_close(&file);
  H5Eclear2(H5E_DEFAULT);
  return comm;
}

sd_status sd_h5_write_provenance(long long loc_id, const sd_provenance *prov, int ranks) {
  hid_t loc = (hid_t)loc_id;
  sd_status st = SD_OK;
  char *created = NULL;
  MPI_Comm comm = file_comm(loc);
  int rank = 0;
  if (comm != MPI_COMM_NULL)
    MPI_Comm_rank(comm, &rank);
  if (rank == 0) {
    char now[64];
    utc_now_iso8601(now, sizeof now);
    created = sd_strdup(now);
    if (!created)
      SD_PAR_FATAL(comm != MPI_COMM_NULL ? comm : MPI_COMM_WORLD);
  }
  /* attribute values must be identical on every rank: take the time from rank 0 */
  if (comm != MPI_COMM_NULL)
    SD_CHECK_GOTO(st, sd_par_bcast_string(comm, &created, 0), done);
  const sd_provenance none = {NULL, NULL, NULL};
  if (!prov)
    prov = &none;
  SD_CHECK_GOTO(st, sd_h5_attr_write_string(loc, "program", "stemdefect"), done);
  SD_CHECK_GOTO(st, sd_h5_attr_write_string(loc, "version", SD_VERSION), done);
  SD_CHECK_GOTO(st, sd_h5_attr_write_string(loc, "git_commit", SD_GIT_COMMIT), done);
  SD_CHECK_GOTO(st, sd_h5_attr_write_string(loc, "command", prov->command), done);
  SD_CHECK_GOTO(st, sd_h5_attr_write_string(loc, "command_line", prov->command_line), done);
  SD_CHECK_GOTO(st, sd_h5_attr_write_string(loc, "config", prov->config_yaml), done);
  SD_CHECK_GOTO(st, sd_h5_attr_write_int(loc, "ranks", ranks), done);
  SD_CHECK_GOTO(st, sd_h5_attr_write_string(loc, "created", created), done);
done:
  free(created);
  if (comm != MPI_COMM_NULL)
    MPI_Comm_free(&comm);
  return st;
}

/* ---- life cycle ------------------------------------------------------------------------- */

/* Allocates a stack with no HDF5 objects on a duplicate of comm (collective). */
static sd_status stack_alloc(MPI_Comm comm, const char *path, int writing, sd_stack **out) {
  sd_status st = SD_OK;
  *out = NULL;
  sd_stack *s = sd_calloc(1, sizeof *s, "stack");
  if (s) {
    s->comm = MPI_COMM_NULL;
    s->file = s->dxpl = s->images = s->labels = s->masks = s->source = H5I_INVALID_HID;
    s->writing = writing;
    s->path = sd_strdup(path);
    if (!s->path)
      st = SD_ERR_NOMEM;
  } else {
    st = SD_ERR_NOMEM;
  }
  /* every rank duplicates, even one that failed above, so the collective matches */
  MPI_Comm dup = MPI_COMM_NULL;
  sd_status st_dup = sd_par_check(MPI_Comm_dup(comm, &dup), "MPI_Comm_dup in sd_stack");
  if (st == SD_OK)
    st = st_dup;
  if (dup != MPI_COMM_NULL)
    MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN);
  if (s) {
    s->comm = dup;
    MPI_Comm_rank(comm, &s->rank);
    MPI_Comm_size(comm, &s->size);
  } else if (dup != MPI_COMM_NULL) {
    MPI_Comm_free(&dup);
  }
  st = sd_par_agree(comm, st);
  if (st != SD_OK) {
    if (s) {
      if (s->comm != MPI_COMM_NULL)
        MPI_Comm_free(&s->comm);
      free(s->path);
      free(s);
    }
    SD_CHECK(st);
  }
  *out = s;
  return SD_OK;
}

/* Collective. Closes every HDF5 object (reverse order of creation) and the file; for a stack
 * being written, renames the temporary file into place (commit, and everything so far OK)
 * or deletes it; frees s. Returns the same status on every rank. */
static sd_status stack_release(sd_stack *s, int commit, sd_status st) {
  sd_h5_close(&s->source);
  sd_h5_close(&s->masks);
  sd_h5_close(&s->labels);
  sd_h5_close(&s->images);
  sd_h5_close(&s->dxpl);
  if (s->file >= 0) {
    if (H5Fclose(s->file) < 0 && st == SD_OK)
      st = SD_H5_ERROR(SD_ERR_HDF5, "cannot close '%s'", s->tmp_path ? s->tmp_path : s->path);
    s->file = H5I_INVALID_HID;
  }
  /* the agreement is also the barrier before the rename: every rank has closed the file */
  st = sd_par_agree(s->comm, st);
  if (s->tmp_path) {
    sd_status local = SD_OK;
    if (s->rank == 0) {
      if (commit && st == SD_OK) {
        if (rename(s->tmp_path, s->path) != 0) {
          local = SD_ERROR(SD_ERR_IO, "cannot rename '%s' to '%s': %s", s->tmp_path, s->path,
                           strerror(errno));
          unlink(s->tmp_path);
        }
      } else if (unlink(s->tmp_path) != 0 && errno != ENOENT && st == SD_OK) {
        local = SD_ERROR(SD_ERR_IO, "cannot remove temporary file '%s': %s", s->tmp_path,
                         strerror(errno));
      }
    }
    /* ships rank 0's rename result to everyone; also the barrier after it */
    sd_status renamed = sd_par_agree(s->comm, local);
    if (st == SD_OK)
      st = renamed;
    sd_par_tmpfile_unregister(s->tmp_path);
  }
  if (s->comm != MPI_COMM_NULL)
    MPI_Comm_free(&s->comm);
  sd_h5_strings_free(s->info.class_names, s->info.num_classes);
  for (int64_t i = 0; i < s->src_n; i++)
    free(s->src_text[i]);
  free(s->src_text);
  free(s->src_index);
  free(s->tmp_path);
  free(s->path);
  free(s);
  return st;
}

/* ---- rows of a dataset ------------------------------------------------------------------ */

/* Collective. Reads or writes rows [first, first+count) of dset (whose first dimension is the
 * image index) from/to buf in memory type mtype; count == 0 selects nothing in both spaces
 * but still takes part in the transfer. */
static sd_status rows_io(const sd_stack *s, hid_t dset, const char *name, hid_t mtype,
                         int64_t first, int64_t count, void *buf, int writing) {
  sd_status st = SD_OK;
  hid_t fspace = H5I_INVALID_HID, mspace = H5I_INVALID_HID;
  hsize_t dims[3] = {0, 0, 0}, start[3] = {0, 0, 0}, block[3] = {0, 0, 0};
  const char *file = s->writing ? s->tmp_path : s->path;
  if (s->info.n == 0)
    return SD_OK; /* an empty dataset has no storage: nothing to transfer */
  fspace = H5Dget_space(dset);
  int nd = fspace >= 0 ? H5Sget_simple_extent_ndims(fspace) : -1;
  if (nd < 1 || nd > 3 || H5Sget_simple_extent_dims(fspace, dims, NULL) < 0) {
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot query the dataspace of %s in '%s'", name, file);
    goto done;
  }
  for (int d = 1; d < nd; d++)
    block[d] = dims[d];
  start[0] = (hsize_t)first;
  block[0] = count > 0 ? (hsize_t)count : 1;
  mspace = H5Screate_simple(nd, block, NULL);
  if (mspace < 0) {
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot create a memory dataspace for %s", name);
    goto done;
  }
  herr_t sel = count > 0 ? H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, block, NULL)
                         : (H5Sselect_none(fspace) < 0 ? -1 : H5Sselect_none(mspace));
  if (sel < 0) {
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot select rows [%lld, %lld) of %s in '%s'", (long long)first,
                     (long long)(first + count), name, file);
    goto done;
  }
  char dummy[16]; /* a rank selecting nothing has no buffer; HDF5 wants one anyway */
  void *b = buf ? buf : dummy;
  herr_t rc = writing ? H5Dwrite(dset, mtype, mspace, fspace, s->dxpl, b)
                      : H5Dread(dset, mtype, mspace, fspace, s->dxpl, b);
  if (rc < 0)
    st = SD_H5_ERROR(SD_ERR_IO, "cannot %s rows [%lld, %lld) of %s %s '%s'",
                     writing ? "write" : "read", (long long)first, (long long)(first + count), name,
                     writing ? "to" : "in", file);
done:
  sd_h5_close(&mspace);
  sd_h5_close(&fspace);
  return st;
}

/* Collective. Creates dataset name of file type type and shape dims[nd]; chunk (or NULL for
 * contiguous). Fill: the value fill in memory type fill_type; all zero bytes when fill is
 * NULL and fill_type >= 0; never filled when fill_type < 0. */
static sd_status dataset_create(sd_stack *s, const char *name, hid_t type, int nd,
                                const hsize_t *dims, const hsize_t *chunk, hid_t fill_type,
                                const void *fill, hid_t *out) {
  sd_status st = SD_OK;
  hid_t space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID;
  *out = H5I_INVALID_HID;
  space = H5Screate_simple(nd, dims, NULL);
  dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (space < 0 || dcpl < 0) {
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot prepare dataset %s in '%s'", name, s->tmp_path);
    goto done;
  }
  /* parallel HDF5 allocates space when the dataset is created; the big datasets are never
   * filled (every image is written before commit), the small ones get their fill value */
  herr_t rc = H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
  if (rc >= 0 && chunk)
    rc = H5Pset_chunk(dcpl, nd, chunk);
  if (rc >= 0 && fill)
    rc = H5Pset_fill_value(dcpl, fill_type, fill);
  if (rc >= 0 && fill_type >= 0)
    rc = H5Pset_fill_time(dcpl, H5D_FILL_TIME_ALLOC);
  if (rc >= 0 && fill_type < 0)
    rc = H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
  if (rc < 0) {
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot set the layout of dataset %s in '%s'", name, s->tmp_path);
    goto done;
  }
  *out = H5Dcreate2(s->file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  if (*out < 0)
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot create dataset %s in '%s'", name, s->tmp_path);
done:
  sd_h5_close(&dcpl);
  sd_h5_close(&space);
  return st;
}

/* Collective. Creates /source [N] with fixed-length strings of len bytes (NUL included). */
static sd_status source_create(sd_stack *s, size_t len) {
  sd_status st = SD_OK;
  hid_t type = H5I_INVALID_HID;
  hsize_t dims[1] = {(hsize_t)s->info.n};
  SD_CHECK_GOTO(st, sd_h5_fixed_string_type(len, &type), done);
  /* filled with zero bytes: "" */
  SD_CHECK_GOTO(st, dataset_create(s, "/source", type, 1, dims, NULL, type, NULL, &s->source),
                done);
  SD_CHECK_GOTO(st,
                sd_h5_attr_write_string(s->source, "description",
                                        "file (and page) each image came from, or "
                                        "simulate:<seed>:<index>"),
                done);
  s->source_len = len;
done:
  sd_h5_close(&type);
  return st;
}

/* ---- create ----------------------------------------------------------------------------- */

/* Local checks of sd_stack_create's arguments. */
static sd_status create_args_check(const char *path, int64_t n, int height, int width,
                                   int num_classes, const char *const *class_names,
                                   sd_stack **out) {
  if (!out)
    return SD_ERROR(SD_ERR_ARG, "sd_stack_create: out is NULL");
  if (!path || !path[0])
    return SD_ERROR(SD_ERR_ARG, "sd_stack_create: empty output path");
  if (n < 0 || height < 1 || width < 1)
    return SD_ERROR(SD_ERR_ARG,
                    "stack '%s': %lld images of %d x %d pixels (expected n >= 0, "
                    "height and width >= 1)",
                    path, (long long)n, height, width);
  /* one image per chunk; HDF5 chunks hold less than 4 GiB */
  if ((uint64_t)height * (uint64_t)width * sizeof(float) >= ((uint64_t)1 << 32))
    return SD_ERROR(SD_ERR_ARG,
                    "stack '%s': images of %d x %d pixels are too large (expected "
                    "height * width * 4 bytes < 4 GiB)",
                    path, height, width);
  if (num_classes < 0 || (num_classes > 0 && !class_names))
    return SD_ERROR(SD_ERR_ARG, "stack '%s': %d classes without class names", path, num_classes);
  for (int c = 0; c < num_classes; c++)
    if (!class_names[c])
      return SD_ERROR(SD_ERR_ARG, "stack '%s': class name %d is NULL", path, c);
  return SD_OK;
}

/* Rank 0: the directory of path exists and is writable, and path is not a directory. */
static sd_status output_dir_check(const char *path) {
  char *dir = sd_strdup(path);
  if (!dir)
    SD_CHECK(SD_ERR_NOMEM);
  char *slash = strrchr(dir, '/');
  if (!slash)
    strcpy(dir, ".");
  else if (slash == dir)
    dir[1] = '\0';
  else
    *slash = '\0';
  sd_status st = SD_OK;
  struct stat sb;
  if (stat(dir, &sb) != 0)
    st = SD_ERROR(SD_ERR_IO, "cannot write stack '%s': directory '%s' %s", path, dir,
                  errno == ENOENT ? "does not exist" : strerror(errno));
  else if (!S_ISDIR(sb.st_mode))
    st = SD_ERROR(SD_ERR_IO, "cannot write stack '%s': '%s' is not a directory", path, dir);
  else if (access(dir, W_OK | X_OK) != 0)
    st = SD_ERROR(SD_ERR_IO, "cannot write stack '%s': directory '%s' is not writable (%s)", path,
                  dir, strerror(errno));
  else if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
    st = SD_ERROR(SD_ERR_IO, "cannot write stack '%s': it is a directory", path);
  free(dir);
  return st;
}

/* Rank 0: "<path>.tmp-<pid>-<nanoseconds>", unique per process and call. */
static sd_status tmp_name(const char *path, char **out) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  size_t cap = strlen(path) + 64;
  *out = sd_malloc(cap, 1, "temporary file name");
  if (!*out)
    SD_CHECK(SD_ERR_NOMEM);
  snprintf(*out, cap, "%s.tmp-%ld-%lx", path, (long)getpid(),
           (unsigned long)((unsigned long)ts.tv_sec * 1000000000ul + (unsigned long)ts.tv_nsec));
  return SD_OK;
}

/* Collective. All datasets but /source, and the attributes, in the open temporary file. */
static sd_status create_contents(sd_stack *s, const char *const *class_names, int with_masks,
                                 const sd_provenance *prov) {
  const sd_stack_info *in = &s->info;
  hsize_t dims[3] = {(hsize_t)in->n, (hsize_t)in->height, (hsize_t)in->width};
  hsize_t chunk[3] = {1, (hsize_t)in->height, (hsize_t)in->width};
  const hsize_t *chunk_or_null = in->n > 0 ? chunk : NULL; /* an empty stack has no chunks */
  const int unknown = -1;
  const uint8_t background = 0;

  SD_CHECK(sd_h5_dxpl_collective(&s->dxpl));
  SD_CHECK(dataset_create(s, "/images", H5T_IEEE_F32LE, 3, dims, chunk_or_null, H5I_INVALID_HID,
                          NULL, &s->images));
  SD_CHECK(sd_h5_attr_write_string(s->images, "units", "counts"));
  SD_CHECK(sd_h5_attr_write_string(s->images, "normalization", "none"));
  SD_CHECK(sd_h5_attr_write_string(s->images, "description",
                                   "HAADF-STEM images, raw grey values, [image, row, column], "
                                   "one image per chunk"));

  SD_CHECK(dataset_create(s, "/labels", H5T_STD_I32LE, 1, dims, NULL, H5T_NATIVE_INT, &unknown,
                          &s->labels));
  SD_CHECK(sd_h5_attr_write_strings(s->labels, "class_names", in->num_classes, class_names));
  SD_CHECK(sd_h5_attr_write_string(s->labels, "description",
                                   "class index per image into class_names, -1 = unknown"));
  SD_CHECK(sd_h5_dataset_write_strings(s->file, "/class_names", in->num_classes, class_names,
                                       s->dxpl, s->rank));

  if (with_masks) {
    SD_CHECK(dataset_create(s, "/masks", H5T_STD_U8LE, 3, dims, chunk_or_null, H5T_NATIVE_UINT8,
                            &background, &s->masks));
    SD_CHECK(sd_h5_attr_write_string(s->masks, "description",
                                     "pixel ground truth, [image, row, column]: 0 = background, "
                                     "c = pixel of class c"));
  }

  SD_CHECK(sd_h5_attr_write_string(s->file, "format", SD_STACK_FORMAT));
  SD_CHECK(sd_h5_attr_write_int(s->file, "format_version", SD_STACK_FORMAT_VERSION));
  SD_CHECK(sd_h5_write_provenance(s->file, prov, s->size));
  return SD_OK;
}

/* Checks that the arguments are the same on every rank (one allreduce of +v and -v). */
static sd_status same_everywhere(MPI_Comm comm, const char *path, int64_t n, int height, int width,
                                 int num_classes, int with_masks) {
  int64_t v[10] = {n, height, width, num_classes, with_masks != 0};
  for (int i = 0; i < 5; i++)
    v[5 + i] = -v[i];
  SD_CHECK(sd_par_allreduce_max_i64(comm, v, 10));
  for (int i = 0; i < 5; i++)
    if (v[i] != -v[5 + i])
      return SD_ERROR(SD_ERR_ARG,
                      "stack '%s': sd_stack_create called with different n, "
                      "height, width, num_classes or with_masks on different ranks",
                      path);
  return SD_OK;
}

sd_status sd_stack_create(MPI_Comm comm, const char *path, int64_t n, int height, int width,
                          int num_classes, const char *const *class_names, int with_masks,
                          const sd_provenance *prov, sd_stack **out) {
  sd_status st = create_args_check(path, n, height, width, num_classes, class_names, out);
  if (out)
    *out = NULL;
  SD_CHECK(sd_par_agree(comm, st));
  SD_CHECK(same_everywhere(comm, path, n, height, width, num_classes, with_masks));

  sd_stack *s = NULL;
  SD_CHECK(stack_alloc(comm, path, 1, &s));
  s->info.n = n;
  s->info.height = height;
  s->info.width = width;
  s->info.has_masks = with_masks != 0;

  /* the temporary name is decided on rank 0, which also checks the directory */
  st = SD_OK;
  if (s->rank == 0) {
    st = output_dir_check(path);
    if (st == SD_OK)
      st = tmp_name(path, &s->tmp_path);
  }
  st = sd_par_agree(s->comm, st);
  if (st == SD_OK)
    st = sd_par_agree(s->comm, sd_par_bcast_string(s->comm, &s->tmp_path, 0));
  if (st != SD_OK) {
    free(s->tmp_path); /* no file yet: nothing to remove */
    s->tmp_path = NULL;
    goto fail;
  }
  sd_par_tmpfile_register(s->tmp_path);

  st = sd_par_agree(s->comm, sd_h5_file_create(s->comm, s->tmp_path, &s->file));
  if (st != SD_OK)
    goto fail;

  /* from here the class names are owned by the stack (freed by stack_release) */
  st = SD_OK;
  if (num_classes > 0) {
    s->info.class_names = sd_calloc((size_t)num_classes, sizeof(char *), "class names");
    if (!s->info.class_names)
      st = SD_ERR_NOMEM;
    for (int c = 0; c < num_classes && st == SD_OK; c++) {
      s->info.class_names[c] = sd_strdup(class_names[c]);
      s->info.num_classes = c + 1;
      if (!s->info.class_names[c])
        st = SD_ERR_NOMEM;
    }
  }
  st = sd_par_agree(s->comm, st);
  if (st == SD_OK)
    st = sd_par_agree(s->comm, create_contents(s, class_names, with_masks, prov));
  if (st != SD_OK)
    goto fail;
  *out = s;
  return SD_OK;

fail:
  st = stack_release(s, 0, st);
  sd_error_trace(__FILE__, __LINE__, __func__);
  return st;
}

/* ---- write ------------------------------------------------------------------------------ */

sd_status sd_stack_set_image_attribute(sd_stack *s, const char *name, const char *value) {
  if (!s)
    return SD_ERROR(SD_ERR_ARG, "sd_stack_set_image_attribute: stack is NULL");
  sd_status st = SD_OK;
  if (!s->writing || !name || !value)
    st = SD_ERROR(SD_ERR_ARG,
                  "stack '%s': attribute %s can only be set on a stack being written", s->path,
                  name ? name : "(null)");
  SD_CHECK(sd_par_agree(s->comm, st));
  SD_CHECK(sd_par_agree(s->comm, sd_h5_attr_write_string(s->images, name, value)));
  return SD_OK;
}

sd_status sd_stack_set_image_units(sd_stack *s, const char *units) {
  return sd_stack_set_image_attribute(s, "units", units);
}

sd_status sd_stack_get_image_attribute(sd_stack *s, const char *name, char **value) {
  *value = NULL;
  int exists = 0;
  SD_CHECK(sd_par_agree(s->comm, sd_h5_attr_exists(s->images, name, &exists)));
  if (!exists) return SD_OK;
  SD_CHECK(sd_par_agree(s->comm, sd_h5_attr_read_string(s->images, name, value)));
  return SD_OK;
}

/* Local checks of sd_stack_write's arguments. */
static sd_status write_args_check(const sd_stack *s, int64_t first, int64_t count,
                                  const float *images, const int32_t *labels,
                                  const char *const *sources, const uint8_t *masks) {
  const sd_stack_info *in = &s->info;
  if (!s->writing)
    return SD_ERROR(SD_ERR_ARG, "stack '%s' was opened for reading, not writing", s->path);
  if (first < 0 || count < 0 || first > in->n - count)
    return SD_ERROR(SD_ERR_ARG,
                    "stack '%s': cannot write images [%lld, %lld) (expected a range "
                    "within [0, %lld))",
                    s->path, (long long)first, (long long)(first + count), (long long)in->n);
  if (count > 0 && !images)
    return SD_ERROR(SD_ERR_ARG, "stack '%s': no image buffer for images [%lld, %lld)", s->path,
                    (long long)first, (long long)(first + count));
  if (masks && !in->has_masks)
    return SD_ERROR(SD_ERR_ARG, "stack '%s' was created without masks, but masks were passed",
                    s->path);
  if (in->has_masks && count > 0 && !masks)
    return SD_ERROR(SD_ERR_ARG,
                    "stack '%s' has /masks: masks are required for images [%lld, "
                    "%lld)",
                    s->path, (long long)first, (long long)(first + count));
  for (int64_t i = 0; labels && i < count; i++)
    if (labels[i] < -1 || labels[i] >= in->num_classes)
      return SD_ERROR(SD_ERR_ARG,
                      "stack '%s': label %d of image %lld is out of range (expected "
                      "-1 for unknown or a class in [0, %d))",
                      s->path, (int)labels[i], (long long)(first + i), in->num_classes);
  for (int64_t i = 0; sources && i < count; i++)
    if (!sources[i])
      return SD_ERROR(SD_ERR_ARG, "stack '%s': source string of image %lld is NULL", s->path,
                      (long long)(first + i));
  return SD_OK;
}

/* Local: keeps copies of the count sources of images first.. until commit. */
static sd_status sources_keep(sd_stack *s, int64_t first, int64_t count,
                              const char *const *sources) {
  if (s->src_n + count > s->src_cap) {
    int64_t cap = s->src_cap ? s->src_cap : 64;
    while (cap < s->src_n + count)
      cap *= 2;
    int64_t *index = sd_realloc(s->src_index, (size_t)cap, sizeof *index, "source indices");
    if (!index)
      SD_CHECK(SD_ERR_NOMEM);
    s->src_index = index;
    char **text = sd_realloc(s->src_text, (size_t)cap, sizeof *text, "source strings");
    if (!text)
      SD_CHECK(SD_ERR_NOMEM);
    s->src_text = text;
    s->src_cap = cap;
  }
  for (int64_t i = 0; i < count; i++) {
    char *copy = sd_strdup(sources[i]);
    if (!copy)
      SD_CHECK(SD_ERR_NOMEM);
    s->src_index[s->src_n] = first + i;
    s->src_text[s->src_n] = copy;
    s->src_n++;
  }
  return SD_OK;
}

sd_status sd_stack_write(sd_stack *s, int64_t first, int64_t count, const float *images,
                         const int32_t *labels, const char *const *sources, const uint8_t *masks) {
  if (!s)
    return SD_ERROR(SD_ERR_ARG, "sd_stack_write: stack is NULL");
  sd_status st;
  int32_t *unknown = NULL; /* (count) -1 labels when labels is NULL */

  st = write_args_check(s, first, count, images, labels, sources, masks);
  if (st == SD_OK && !labels) {
    unknown = sd_malloc(count > 0 ? (size_t)count : 1, sizeof *unknown, "unknown labels");
    if (!unknown)
      st = SD_ERR_NOMEM;
    for (int64_t i = 0; unknown && i < count; i++)
      unknown[i] = -1;
  }
  /* sources go to the file at commit, when the longest over all ranks is known */
  if (st == SD_OK && sources)
    st = sources_keep(s, first, count, sources);
  SD_CHECK_GOTO(st, sd_par_agree(s->comm, st), done);

  /* every rank takes part in every transfer, even after a failed one, so none is left
   * waiting; the first failure is kept */
  sd_status w = rows_io(s, s->images, "/images", H5T_NATIVE_FLOAT, first, count, (void *)images, 1);
  if (st == SD_OK)
    st = w;
  w = rows_io(s, s->labels, "/labels", H5T_NATIVE_INT32, first, count,
              labels ? (void *)labels : unknown, 1);
  if (st == SD_OK)
    st = w;
  if (s->masks >= 0) {
    w = rows_io(s, s->masks, "/masks", H5T_NATIVE_UINT8, first, count, (void *)masks, 1);
    if (st == SD_OK)
      st = w;
  }
  SD_CHECK_GOTO(st, sd_par_agree(s->comm, st), done);
  s->written += count;
done:
  free(unknown);
  return st;
}

/* ---- open ------------------------------------------------------------------------------- */

/* Rank 0: path exists, is a readable regular file, and is HDF5. */
static sd_status input_file_check(const char *path) {
  struct stat sb;
  if (stat(path, &sb) != 0)
    return SD_ERROR(SD_ERR_IO, "cannot open stack '%s': %s", path,
                    errno == ENOENT ? "no such file" : strerror(errno));
  if (!S_ISREG(sb.st_mode))
    return SD_ERROR(SD_ERR_IO, "cannot open stack '%s': not a regular file", path);
  if (access(path, R_OK) != 0)
    return SD_ERROR(SD_ERR_IO, "cannot open stack '%s': %s", path, strerror(errno));
  htri_t is_h5 = H5Fis_hdf5(path);
  if (is_h5 <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return SD_ERROR(SD_ERR_FORMAT,
                    "'%s' is not an HDF5 file (expected a stemdefect stack "
                    "with /images and /labels)",
                    path);
  }
  return SD_OK;
}

/* Collective. Opens the dataset name if it exists: *out stays H5I_INVALID_HID when it does
 * not and required is 0; SD_ERR_FORMAT naming the file and expected when required. */
static sd_status dataset_open(sd_stack *s, const char *name, int required, const char *expected,
                              hid_t *out) {
  *out = H5I_INVALID_HID;
  htri_t ex = H5Lexists(s->file, name, H5P_DEFAULT);
  if (ex < 0)
    return SD_H5_ERROR(SD_ERR_HDF5, "cannot look up %s in '%s'", name, s->path);
  if (ex == 0) {
    if (!required)
      return SD_OK;
    return SD_ERROR(SD_ERR_FORMAT, "'%s' has no dataset %s (expected %s)", s->path, name, expected);
  }
  hid_t obj = H5Oopen(s->file, name, H5P_DEFAULT);
  if (obj < 0)
    return SD_H5_ERROR(SD_ERR_FORMAT, "cannot open %s in '%s'", name, s->path);
  if (H5Iget_type(obj) != H5I_DATASET) {
    H5Oclose(obj);
    return SD_ERROR(SD_ERR_FORMAT, "%s in '%s' is not a dataset (expected %s)", name, s->path,
                    expected);
  }
  *out = obj;
  return SD_OK;
}

static const char *type_class_name(H5T_class_t cls) {
  switch (cls) {
  case H5T_INTEGER: return "integer";
  case H5T_FLOAT: return "float";
  case H5T_STRING: return "string";
  case H5T_COMPOUND: return "compound";
  case H5T_ENUM: return "enum";
  case H5T_ARRAY: return "array";
  case H5T_VLEN: return "variable-length";
  case H5T_OPAQUE: return "opaque";
  case H5T_REFERENCE: return "reference";
  case H5T_BITFIELD: return "bitfield";
  case H5T_TIME: return "time";
  default: return "unknown";
  }
}

/* The type class and shape of dataset dset: *cls, *nd, dims[3] (nd up to 3 is reported;
 * more dimensions give *nd > 3 and dims unset). */
static sd_status dataset_shape(const sd_stack *s, hid_t dset, const char *name, H5T_class_t *cls,
                               int *nd, hsize_t dims[3]) {
  hid_t type = H5Dget_type(dset), space = H5Dget_space(dset);
  sd_status st = SD_OK;
  *cls = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
  *nd = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
  if (type < 0 || space < 0 || *nd < 0 || *cls == H5T_NO_CLASS)
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot query the type and shape of %s in '%s'", name, s->path);
  else if (*nd <= 3 && H5Sget_simple_extent_dims(space, dims, NULL) < 0)
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot query the shape of %s in '%s'", name, s->path);
  sd_h5_close(&space);
  sd_h5_close(&type);
  return st;
}

/* Collective. Opens the datasets and checks the schema (see stack.h). */
static sd_status schema_check(sd_stack *s) {
  sd_stack_info *in = &s->info;
  H5T_class_t cls;
  int nd, ex;
  hsize_t dims[3] = {0, 0, 0};

  /* our own files say what they are; other tools' files need not */
  SD_CHECK(sd_h5_attr_exists(s->file, "format", &ex));
  if (ex) {
    char *format = NULL;
    SD_CHECK(sd_h5_attr_read_string(s->file, "format", &format));
    int ok = strcmp(format, SD_STACK_FORMAT) == 0;
    sd_status st = ok ? SD_OK
                      : SD_ERROR(SD_ERR_FORMAT, "'%s' has format = '%s' (expected '%s')", s->path,
                                 format, SD_STACK_FORMAT);
    free(format);
    SD_CHECK(st);
  }
  SD_CHECK(sd_h5_attr_exists(s->file, "format_version", &ex));
  if (ex) {
    int64_t version = 0;
    SD_CHECK(sd_h5_attr_read_int(s->file, "format_version", &version));
    if (version < 1 || version > SD_STACK_FORMAT_VERSION)
      return SD_ERROR(SD_ERR_FORMAT,
                      "'%s' has format_version = %lld (this program reads "
                      "versions 1 to %d)",
                      s->path, (long long)version, SD_STACK_FORMAT_VERSION);
  }

  const char *images_expected = "a 3-D [N,H,W] dataset of float or integer images";
  SD_CHECK(dataset_open(s, "/images", 1, images_expected, &s->images));
  SD_CHECK(dataset_shape(s, s->images, "/images", &cls, &nd, dims));
  if (nd != 3 || (cls != H5T_FLOAT && cls != H5T_INTEGER))
    return SD_ERROR(SD_ERR_FORMAT, "/images in '%s' has %d dimensions of %s type (expected %s)",
                    s->path, nd, type_class_name(cls), images_expected);
  if (dims[1] < 1 || dims[2] < 1 || dims[1] > INT_MAX || dims[2] > INT_MAX)
    return SD_ERROR(SD_ERR_FORMAT,
                    "/images in '%s' has images of %llu x %llu pixels (expected "
                    "at least 1 x 1)",
                    s->path, (unsigned long long)dims[1], (unsigned long long)dims[2]);
  in->n = (int64_t)dims[0];
  in->height = (int)dims[1];
  in->width = (int)dims[2];

  const char *labels_expected = "a 1-D [N] integer dataset of class indices, -1 = unknown";
  SD_CHECK(dataset_open(s, "/labels", 1, labels_expected, &s->labels));
  SD_CHECK(dataset_shape(s, s->labels, "/labels", &cls, &nd, dims));
  if (nd != 1 || cls != H5T_INTEGER)
    return SD_ERROR(SD_ERR_FORMAT, "/labels in '%s' has %d dimensions of %s type (expected %s)",
                    s->path, nd, type_class_name(cls), labels_expected);
  if ((int64_t)dims[0] != in->n)
    return SD_ERROR(SD_ERR_FORMAT,
                    "/labels in '%s' has %llu entries but /images has %lld "
                    "images (expected one label per image)",
                    s->path, (unsigned long long)dims[0], (long long)in->n);

  SD_CHECK(sd_h5_attr_exists(s->labels, "class_names", &ex));
  if (ex) {
    SD_CHECK(sd_h5_attr_read_strings(s->labels, "class_names", &in->num_classes, &in->class_names));
  } else {
    htri_t ds = H5Lexists(s->file, "/class_names", H5P_DEFAULT);
    if (ds < 0)
      return SD_H5_ERROR(SD_ERR_HDF5, "cannot look up /class_names in '%s'", s->path);
    if (ds == 0)
      return SD_ERROR(SD_ERR_FORMAT,
                      "'%s' has no class names (expected the attribute "
                      "class_names on /labels or the dataset /class_names)",
                      s->path);
    SD_CHECK(sd_h5_dataset_read_strings(s->file, "/class_names", s->dxpl, &in->num_classes,
                                        &in->class_names));
  }

  const char *masks_expected = "a 3-D [N,H,W] integer dataset like /images";
  SD_CHECK(dataset_open(s, "/masks", 0, masks_expected, &s->masks));
  if (s->masks >= 0) {
    SD_CHECK(dataset_shape(s, s->masks, "/masks", &cls, &nd, dims));
    if (nd != 3 || cls != H5T_INTEGER || (int64_t)dims[0] != in->n ||
        dims[1] != (hsize_t)in->height || dims[2] != (hsize_t)in->width)
      return SD_ERROR(SD_ERR_FORMAT, "/masks in '%s' is not %s of shape [%lld,%d,%d]", s->path,
                      masks_expected, (long long)in->n, in->height, in->width);
    in->has_masks = 1;
  }

  const char *source_expected = "a 1-D [N] string dataset";
  SD_CHECK(dataset_open(s, "/source", 0, source_expected, &s->source));
  if (s->source >= 0) {
    SD_CHECK(dataset_shape(s, s->source, "/source", &cls, &nd, dims));
    if (nd != 1 || cls != H5T_STRING || (int64_t)dims[0] != in->n)
      return SD_ERROR(SD_ERR_FORMAT, "/source in '%s' is not %s of %lld strings", s->path,
                      source_expected, (long long)in->n);
    hid_t type = H5Dget_type(s->source);
    htri_t vlen = type >= 0 ? H5Tis_variable_str(type) : -1;
    size_t size = type >= 0 ? H5Tget_size(type) : 0;
    sd_h5_close(&type);
    if (vlen < 0 || size == 0)
      return SD_H5_ERROR(SD_ERR_HDF5, "cannot query the string type of /source in '%s'", s->path);
    s->source_len = vlen ? 0 : size;
  }
  return SD_OK;
}

sd_status sd_stack_open(MPI_Comm comm, const char *path, sd_stack **out) {
  sd_status st = SD_OK;
  if (!out || !path || !path[0])
    st = SD_ERROR(SD_ERR_ARG, "sd_stack_open: %s", out ? "empty path" : "out is NULL");
  if (out)
    *out = NULL;
  SD_CHECK(sd_par_agree(comm, st));
  sd_stack *s = NULL;
  SD_CHECK(stack_alloc(comm, path, 0, &s));
  sd_h5_init();
  st = SD_OK;
  if (s->rank == 0)
    st = input_file_check(path);
  st = sd_par_agree(s->comm, st);
  if (st == SD_OK)
    st = sd_par_agree(s->comm, sd_h5_file_open(s->comm, path, 0, &s->file));
  if (st == SD_OK)
    st = sd_par_agree(s->comm, sd_h5_dxpl_collective(&s->dxpl));
  if (st == SD_OK)
    st = sd_par_agree(s->comm, schema_check(s));
  if (st != SD_OK) {
    st = stack_release(s, 0, st);
    sd_error_trace(__FILE__, __LINE__, __func__);
    return st;
  }
  *out = s;
  return SD_OK;
}

const sd_stack_info *sd_stack_get_info(const sd_stack *s) {
  return s ? &s->info : NULL;
}

/* ---- read ------------------------------------------------------------------------------- */

static sd_status read_range_check(const sd_stack *s, int64_t first, int64_t count) {
  if (first < 0 || count < 0 || first > s->info.n - count)
    return SD_ERROR(SD_ERR_ARG,
                    "stack '%s': cannot read images [%lld, %lld) (expected a range "
                    "within [0, %lld))",
                    s->path, (long long)first, (long long)(first + count), (long long)s->info.n);
  return SD_OK;
}

sd_status sd_stack_read(sd_stack *s, int64_t first, int64_t count, float *images, int32_t *labels,
                        uint8_t *masks) {
  if (!s)
    return SD_ERROR(SD_ERR_ARG, "sd_stack_read: stack is NULL");
  sd_status st = read_range_check(s, first, count);
  if (st == SD_OK && masks && !s->info.has_masks)
    st = SD_ERROR(SD_ERR_ARG, "stack '%s' has no /masks, but masks were requested", s->path);
  SD_CHECK(sd_par_agree(s->comm, st));

  /* a dataset is read when any rank asks for it; the others select nothing */
  int64_t want[3] = {images != NULL, labels != NULL, masks != NULL};
  SD_CHECK(sd_par_allreduce_max_i64(s->comm, want, 3));
  sd_status w;
  if (want[0]) {
    w = rows_io(s, s->images, "/images", H5T_NATIVE_FLOAT, first, images ? count : 0, images, 0);
    if (st == SD_OK)
      st = w;
  }
  if (want[1]) {
    w = rows_io(s, s->labels, "/labels", H5T_NATIVE_INT32, first, labels ? count : 0, labels, 0);
    if (st == SD_OK)
      st = w;
  }
  if (want[2]) {
    w = rows_io(s, s->masks, "/masks", H5T_NATIVE_UINT8, first, masks ? count : 0, masks, 0);
    if (st == SD_OK)
      st = w;
  }
  SD_CHECK(sd_par_agree(s->comm, st));
  return SD_OK;
}

void sd_stack_strings_free(char **sources, int64_t count) {
  if (!sources)
    return;
  for (int64_t i = 0; i < count; i++)
    free(sources[i]);
  free(sources);
}

/* Local: count new C strings from raw (fixed: count*len bytes; variable: count char*). */
static sd_status sources_unpack(const char *raw, size_t len, int64_t count, char ***out) {
  char **v = sd_calloc(count > 0 ? (size_t)count : 1, sizeof *v, "source strings");
  if (!v)
    SD_CHECK(SD_ERR_NOMEM);
  for (int64_t i = 0; i < count; i++) {
    const char *src = len ? raw + (size_t)i * len : ((char *const *)(const void *)raw)[i];
    size_t k = len ? strnlen(src, len) : (src ? strlen(src) : 0);
    v[i] = sd_malloc(k + 1, 1, "source string");
    if (!v[i]) {
      sd_stack_strings_free(v, i);
      SD_CHECK(SD_ERR_NOMEM);
    }
    if (k)
      memcpy(v[i], src, k);
    v[i][k] = '\0';
  }
  *out = v;
  return SD_OK;
}

sd_status sd_stack_read_sources(sd_stack *s, int64_t first, int64_t count, char ***sources) {
  if (!s)
    return SD_ERROR(SD_ERR_ARG, "sd_stack_read_sources: stack is NULL");
  sd_status st = SD_OK;
  char *raw = NULL; /* (count, source_len) bytes, or count char* for variable length */
  hid_t ftype = H5I_INVALID_HID, mtype = H5I_INVALID_HID;
  int vlen_read = 0;
  if (!sources)
    st = SD_ERROR(SD_ERR_ARG, "sd_stack_read_sources: sources is NULL");
  else
    *sources = NULL;
  if (st == SD_OK)
    st = read_range_check(s, first, count);
  if (st == SD_OK && s->source < 0 && s->writing)
    st = SD_ERROR(SD_ERR_ARG,
                  "stack '%s' is being written: /source is written when it is "
                  "committed",
                  s->path);
  else if (st == SD_OK && s->source < 0)
    st = SD_ERROR(SD_ERR_FORMAT,
                  "'%s' has no dataset /source (expected one source string "
                  "per image)",
                  s->path);
  size_t elem = s->source_len ? s->source_len : sizeof(char *);
  if (st == SD_OK) {
    raw = sd_calloc(count > 0 ? (size_t)count : 1, elem, "source buffer");
    if (!raw)
      st = SD_ERR_NOMEM;
  }
  SD_CHECK_GOTO(st, sd_par_agree(s->comm, st), done);

  /* the file's own type as memory type: fixed strings need no conversion, and variable-length
   * strings keep their character set */
  ftype = H5Dget_type(s->source);
  mtype = ftype >= 0 ? H5Tget_native_type(ftype, H5T_DIR_DEFAULT) : H5I_INVALID_HID;
  if (mtype < 0)
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot query the type of /source in '%s'", s->path);
  if (st == SD_OK)
    st = rows_io(s, s->source, "/source", mtype, first, count, raw, 0);
  vlen_read = st == SD_OK && s->source_len == 0;
  if (st == SD_OK)
    st = sources_unpack(raw, s->source_len, count, sources);
  SD_CHECK_GOTO(st, sd_par_agree(s->comm, st), done);
done:
  if (vlen_read && count > 0) {
    /* strings HDF5 allocated for the variable-length read */
    for (int64_t i = 0; i < count; i++)
      H5free_memory(((char **)(void *)raw)[i]);
  }
  sd_h5_close(&mtype);
  sd_h5_close(&ftype);
  free(raw);
  if (st != SD_OK && sources && *sources) {
    sd_stack_strings_free(*sources, count);
    *sources = NULL;
  }
  return st;
}

/* ---- sources, written at commit ---------------------------------------------------------- */

typedef struct kept_source {
  int64_t index; /* image */
  int64_t seq;   /* order of the write on this rank: the last one wins */
  const char *text;
} kept_source;

static int kept_source_cmp(const void *pa, const void *pb) {
  const kept_source *a = pa, *b = pb;
  if (a->index != b->index)
    return a->index < b->index ? -1 : 1;
  return a->seq < b->seq ? -1 : (a->seq > b->seq);
}

/* Collective, at commit. Creates /source with the longest kept string over all ranks (plus
 * its NUL) as its fixed length and writes every rank's kept sources in one transfer: the file
 * selection is the union of the runs of consecutive images a rank holds, and the memory
 * buffer is packed in increasing image order, the order HDF5 walks such a selection. */
static sd_status sources_flush(sd_stack *s) {
  sd_status st = SD_OK;
  kept_source *k = NULL; /* (m) distinct images, increasing */
  char *packed = NULL;   /* (m, len) */
  hid_t type = H5I_INVALID_HID, fspace = H5I_INVALID_HID, mspace = H5I_INVALID_HID;
  int64_t m = 0, maxlen = 0;

  k = sd_malloc(s->src_n > 0 ? (size_t)s->src_n : 1, sizeof *k, "kept sources");
  if (!k)
    st = SD_ERR_NOMEM;
  for (int64_t i = 0; k && i < s->src_n; i++)
    k[i] = (kept_source){s->src_index[i], i, s->src_text[i]};
  if (k && s->src_n > 1)
    qsort(k, (size_t)s->src_n, sizeof *k, kept_source_cmp);
  for (int64_t i = 0; k && i < s->src_n; i++) {
    if (m > 0 && k[m - 1].index == k[i].index)
      k[m - 1] = k[i];
    else
      k[m++] = k[i];
  }
  for (int64_t i = 0; i < m; i++) {
    int64_t len = (int64_t)strlen(k[i].text);
    if (len > maxlen)
      maxlen = len;
  }
  SD_CHECK_GOTO(st, sd_par_agree(s->comm, st), done);
  SD_CHECK_GOTO(st, sd_par_allreduce_max_i64(s->comm, &maxlen, 1), done);
  size_t len = (size_t)maxlen + 1;
  SD_CHECK_GOTO(st, sd_par_agree(s->comm, source_create(s, len)), done);
  if (s->info.n == 0)
    goto done; /* an empty dataset has no storage: nothing to transfer */

  packed = sd_calloc(m > 0 ? (size_t)m : 1, len, "packed sources");
  if (!packed)
    st = SD_ERR_NOMEM;
  for (int64_t i = 0; packed && i < m; i++)
    memcpy(packed + (size_t)i * len, k[i].text, strlen(k[i].text));
  hsize_t mdims[1] = {m > 0 ? (hsize_t)m : 1};
  type = H5Dget_type(s->source);
  fspace = H5Dget_space(s->source);
  mspace = H5Screate_simple(1, mdims, NULL);
  herr_t rc = (type < 0 || fspace < 0 || mspace < 0) ? -1 : H5Sselect_none(fspace);
  if (rc >= 0 && m == 0)
    rc = H5Sselect_none(mspace);
  for (int64_t i = 0; rc >= 0 && i < m;) {
    int64_t j = i + 1;
    while (j < m && k[j].index == k[j - 1].index + 1)
      j++;
    hsize_t start[1] = {(hsize_t)k[i].index}, count[1] = {(hsize_t)(j - i)};
    rc = H5Sselect_hyperslab(fspace, H5S_SELECT_OR, start, NULL, count, NULL);
    i = j;
  }
  if (rc < 0 && st == SD_OK)
    st = SD_H5_ERROR(SD_ERR_HDF5, "cannot select the rows of /source in '%s'", s->tmp_path);
  SD_CHECK_GOTO(st, sd_par_agree(s->comm, st), done);
  char dummy[1];
  if (H5Dwrite(s->source, type, mspace, fspace, s->dxpl, m > 0 ? packed : dummy) < 0)
    st = SD_H5_ERROR(SD_ERR_IO, "cannot write /source to '%s'", s->tmp_path);
  SD_CHECK_GOTO(st, sd_par_agree(s->comm, st), done);
done:
  sd_h5_close(&mspace);
  sd_h5_close(&fspace);
  sd_h5_close(&type);
  free(packed);
  free(k);
  return st;
}

/* ---- close ------------------------------------------------------------------------------ */

sd_status sd_stack_close(sd_stack **sp, int commit) {
  if (!sp || !*sp)
    return SD_OK;
  sd_stack *s = *sp;
  *sp = NULL;
  sd_status st = SD_OK;
  if (s->writing && commit) {
    int64_t total = s->written;
    st = sd_par_allreduce_sum_i64(s->comm, &total, 1);
    if (st == SD_OK && total < s->info.n)
      st = SD_ERROR(SD_ERR_ARG,
                    "'%s' is incomplete: %lld of %lld images were written, not "
                    "committing it",
                    s->path, (long long)total, (long long)s->info.n);
    /* /source exists in every committed stack, "" where no writer passed a source */
    if (st == SD_OK)
      st = sources_flush(s);
  }
  st = stack_release(s, commit, st);
  SD_CHECK(st);
  return SD_OK;
}
