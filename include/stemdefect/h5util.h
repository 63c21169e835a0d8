/* h5util.h - small HDF5 helpers shared by every writer and reader of our files.
 *
 * - Errors: HDF5's automatic error printing is switched off (sd_h5_init) and failures are
 *   raised with SD_H5_ERROR, which appends a one-line summary of the HDF5 error stack to our
 *   message and clears the stack.
 * - Files: sd_h5_file_create / sd_h5_file_open use the MPI-IO driver with collective
 *   metadata reads and writes, so every rank must make the same metadata calls in the same
 *   order (create, open, attribute reads and writes) with the same values.
 * - Attributes: scalar strings are variable-length UTF-8 (h5py reads them as str, and their
 *   size is not limited by the 64 KiB attribute header, which matters for a config text);
 *   string arrays are fixed-length (HDF5 cannot write variable-length data collectively).
 *   Readers accept both kinds.
 *
 * Every function returning sd_status names the file and the object in its message. hid_t
 * values are closed by the caller; sd_h5_close closes any kind and resets it.
 */
#ifndef STEMDEFECT_H5UTIL_H
#define STEMDEFECT_H5UTIL_H

#include <hdf5.h>
#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "stemdefect/status.h"

/* Turns off HDF5's automatic error printing for the default error stack (process-wide,
 * idempotent, not collective). Called by sd_h5_file_create / sd_h5_file_open. */
void sd_h5_init(void);

/* Copies a short summary of the current HDF5 error stack ("" when empty) into buf and
 * clears the stack. Not collective. */
void sd_h5_error_stack(char *buf, size_t cap);

/* Raises code with the formatted message followed by " (HDF5: <stack summary>)" when the
 * HDF5 error stack is not empty. Use through SD_H5_ERROR. */
sd_status sd_h5_error_raise(sd_status code, const char *file, int line, const char *func,
                            const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;
#define SD_H5_ERROR(code, ...) sd_h5_error_raise((code), __FILE__, __LINE__, __func__, __VA_ARGS__)

/* Writes "'<file>:<object>'" for loc (a file, group, dataset or attribute id) into buf,
 * for messages. Returns buf. */
const char *sd_h5_describe(hid_t loc, char *buf, size_t cap);

/* Closes id whatever kind of HDF5 object it is (file, group, dataset, dataspace, datatype,
 * attribute, property list) when it is >= 0, and sets it to H5I_INVALID_HID. Errors on close
 * are ignored (used on cleanup paths; close the file with H5Fclose and check it). */
void sd_h5_close(hid_t *id);

/* Collective on comm. Creates (truncates) path with the MPI-IO driver and collective
 * metadata operations. Fails with SD_ERR_IO naming path. The same status on every rank only
 * when the caller follows with sd_par_agree (MPI_File_open fails collectively in practice). */
sd_status sd_h5_file_create(MPI_Comm comm, const char *path, hid_t *out);
/* Collective on comm. Opens an existing file read-only (writable = 0) or read-write. */
sd_status sd_h5_file_open(MPI_Comm comm, const char *path, int writable, hid_t *out);
/* A dataset transfer property list with collective MPI-IO transfers. */
sd_status sd_h5_dxpl_collective(hid_t *out);

/* A fixed-length string type of len bytes (len >= 1) holding up to len - 1 characters and
 * a terminating NUL (NULLTERM: h5dump prints the strings without padding), ASCII. */
sd_status sd_h5_fixed_string_type(size_t len, hid_t *out);

/* Attribute writers (collective in parallel files: every rank, same value). An existing
 * attribute of the same name is replaced. */
sd_status sd_h5_attr_write_string(hid_t loc, const char *name, const char *value);
sd_status sd_h5_attr_write_int(hid_t loc, const char *name, int value);
sd_status sd_h5_attr_write_i64(hid_t loc, const char *name, int64_t value);
/* A fixed-length string array [n] (n may be 0) of the longest string's length + 1. */
sd_status sd_h5_attr_write_strings(hid_t loc, const char *name, int n, const char *const *values);

/* 1 when loc has the attribute, 0 when not; SD_ERR_HDF5 on failure. */
sd_status sd_h5_attr_exists(hid_t loc, const char *name, int *exists);
/* Reads a scalar string attribute (variable- or fixed-length) into a new string (free it). */
sd_status sd_h5_attr_read_string(hid_t loc, const char *name, char **out);
/* Reads an integer attribute (any integer type, scalar or one element). */
sd_status sd_h5_attr_read_int(hid_t loc, const char *name, int64_t *out);
/* Reads a 1-D (or scalar) string attribute, variable- or fixed-length, into *n new strings
 * (free with sd_h5_strings_free). */
sd_status sd_h5_attr_read_strings(hid_t loc, const char *name, int *n, char ***out);

/* Collective. Creates the 1-D fixed-length string dataset name [n] (n may be 0) under loc
 * and writes values in one transfer through dxpl: the rank passing rank == 0 writes, the
 * others take part selecting nothing. values must be the same on every rank. */
sd_status sd_h5_dataset_write_strings(hid_t loc, const char *name, int n, const char *const *values,
                                      hid_t dxpl, int rank);
/* Collective. Reads the whole 1-D string dataset name (fixed- or variable-length) on every
 * rank into *n new strings (free with sd_h5_strings_free). */
sd_status sd_h5_dataset_read_strings(hid_t loc, const char *name, hid_t dxpl, int *n, char ***out);

/* Frees n strings and the array; NULL-safe. */
void sd_h5_strings_free(char **s, int n);

/* Collective. Reads (sd_h5_rows_read) or writes rows [first, first+count) along the first
 * dimension of an N-D dataset (N <= 4) through dxpl, converting to/from mtype; count may be 0
 * on some ranks (they select nothing). Messages name the file, the dataset and the rows. */
sd_status sd_h5_rows_read(hid_t dset, hid_t dxpl, int64_t first, int64_t count, hid_t mtype,
                          void *buf);
sd_status sd_h5_rows_write(hid_t dset, hid_t dxpl, int64_t first, int64_t count, hid_t mtype,
                           const void *buf);
/* Collective. Creates dataset name [dims[0..nd-1]] of file type ftype under loc (contiguous,
 * no fill: every row is written once). */
sd_status sd_h5_dataset_create(hid_t loc, const char *name, hid_t ftype, int nd,
                               const int64_t *dims, hid_t *out);
/* Collective. Opens dataset name and returns its rank and dims (up to 4). */
sd_status sd_h5_dataset_open(hid_t loc, const char *name, hid_t *out, int *nd, int64_t *dims);

/* Collective. Reads (sd_h5_rows_read) or writes rows [first, first+count) along the first
 * dimension of an N-D dataset (N <= 4) through dxpl, converting to/from mtype; count may be 0
 * on some ranks (they select nothing). Messages name the file, the dataset and the rows. */
sd_status sd_h5_rows_read(hid_t dset, hid_t dxpl, int64_t first, int64_t count, hid_t mtype,
                          void *buf);
sd_status sd_h5_rows_write(hid_t dset, hid_t dxpl, int64_t first, int64_t count, hid_t mtype,
                           const void *buf);
/* Collective. Creates dataset name [dims[0..nd-1]] of file type ftype under loc (contiguous,
 * no fill: every row is written once). */
sd_status sd_h5_dataset_create(hid_t loc, const char *name, hid_t ftype, int nd,
                               const int64_t *dims, hid_t *out);
/* Collective. Opens dataset name and returns its rank and dims (up to 4). */
sd_status sd_h5_dataset_open(hid_t loc, const char *name, hid_t *out, int *nd, int64_t *dims);


/* An output file written collectively under a temporary name and renamed into place when
 * complete, so a failed run never leaves a half-written file where a complete one belongs. */
typedef struct sd_h5_output {
  MPI_Comm comm;
  hid_t file;     /* the open temporary file (MPI-IO driver) */
  hid_t dxpl;     /* collective transfer property list */
  char *path;     /* final name */
  char *tmp_path; /* "<path>.tmp-<pid>-<ns>", registered for removal on abort */
} sd_h5_output;
/* Collective. Checks the directory on rank 0, creates the temporary file on all ranks. */
sd_status sd_h5_output_create(MPI_Comm comm, const char *path, sd_h5_output *out);
/* Collective. Closes the file; commit = 1 on every rank and no failure anywhere: rank 0
 * renames it to path; else it is removed. Returns the same status on every rank. NULL-safe
 * on a zeroed struct. */
sd_status sd_h5_output_close(sd_h5_output *o, int commit);

#endif
