/* stack.h - HDF5 image stacks, read and written in parallel.
 *
 * Schema (one file, readable by h5dump/h5py without our code):
 *   /images  float32 [N,H,W], chunked one image per chunk; raw grey values (never
 *            normalised); attrs: units = "counts" (or "a.u."), normalization = "none".
 *   /labels  int32 [N], -1 = unknown; attr class_names: fixed-length string array [C]
 *            (also /class_names dataset, the same strings, for tools that read datasets only).
 *   /source  fixed-length string [N]: file (and page) of origin, or "simulate:<seed>:<index>".
 *            Parallel HDF5 cannot write variable-length strings, and the fixed length L
 *            must be known when the dataset is created, but writers learn their sources
 *            batch by batch (file paths, "...:index=1000" longer than "...:index=9"). So
 *            sd_stack_write keeps a copy of each rank's source strings (small next to the
 *            images) and sd_stack_close(.., commit=1) creates /source with L = the longest
 *            string over all ranks (MPI_Allreduce) + 1 for the terminating NUL (NULLTERM,
 *            so h5dump shows no padding) and writes each rank's rows
 *            in one collective transfer. No length to guess, no limit; images written
 *            without sources hold "" (the fill value); a stack being written has no /source
 *            to read yet.
 *   /masks   uint8 [N,H,W] (optional): 0 = background, c = pixel of class c.
 *   root attributes: format = "stemdefect-stack", format_version = 1, plus provenance
 *   (program, version, git_commit, command_line, config (resolved YAML), ranks, created).
 *
 * Writing: sd_stack_create() opens "<path>.tmp-<id>" with the MPI-IO driver; every rank
 * then writes its own images with sd_stack_write (hyperslabs, collective transfers); on
 * sd_stack_close(.., commit=1) rank 0 renames the file to <path>; with commit=0 the
 * temporary file is removed, so a failed run leaves nothing behind.
 *
 * Reading accepts stacks written by other tools (h5py): /images of any integer or float type
 * is converted to float, /labels of any integer type to int32, /masks to uint8; class names
 * may be the attribute class_names on /labels or the dataset /class_names, fixed- or
 * variable-length strings; /source and /masks are optional.
 *
 * Every function here is collective on the stack's communicator and returns the same status
 * on every rank (failures seen by some ranks only are agreed with sd_par_agree), so callers
 * can unwind together and call sd_stack_close(.., 0) on every rank.
 *
 * Example (each rank writes its balanced shard):
 *   sd_stack *s;
 *   SD_CHECK(sd_stack_create(comm, "stack.h5", n, h, w, nc, names, 0, &prov, &s));
 *   sd_shard_range(n, rank, size, &first, &count);
 *   st = sd_stack_write(s, first, count, images, labels, sources, NULL);
 *   SD_CHECK(sd_stack_close(&s, st == SD_OK)); // commit only when every write succeeded
 */
#ifndef STEMDEFECT_STACK_H
#define STEMDEFECT_STACK_H

#include <mpi.h>
#include <stdint.h>

#include "stemdefect/status.h"

/* Provenance written as root attributes of every output file. Any field may be NULL. */
typedef struct sd_provenance {
  const char *command_line;
  const char *config_yaml; /* the fully resolved configuration */
  const char *command;     /* subcommand name */
} sd_provenance;

typedef struct sd_stack_info {
  int64_t n;         /* images */
  int height, width; /* pixels */
  int num_classes;
  char **class_names; /* [num_classes], owned by the stack */
  int has_masks;
} sd_stack_info;

typedef struct sd_stack sd_stack;

/* Collective. Creates the temporary file and all datasets (/source is written at commit).
 * All arguments must be the same on every rank (checked). n may be 0; height, width >= 1.
 * class_names may be NULL when num_classes == 0. Fails on all ranks with SD_ERR_IO naming
 * path when its directory does not exist or is not writable. prov may be NULL. */
sd_status sd_stack_create(MPI_Comm comm, const char *path, int64_t n, int height, int width,
                          int num_classes, const char *const *class_names, int with_masks,
                          const sd_provenance *prov, sd_stack **out);

/* Collective: every rank calls it, count may be 0. Writes images [first, first+count):
 * images (count,H,W); labels (count) or NULL (writes -1), each in [-1, num_classes);
 * sources (count strings, copied; written to the file at commit) or NULL (leaves them as
 * they are, "" when never given; when an image is written twice its last source wins);
 * masks (count,H,W) or NULL (only when the stack has masks: then required). */
sd_status sd_stack_write(sd_stack *s, int64_t first, int64_t count, const float *images,
                         const int32_t *labels, const char *const *sources,
                         const uint8_t *masks);

/* Collective (an attribute write): sets the units attribute of /images (default "counts";
 * "a.u." for simulated or rescaled data). Same value on every rank. */
sd_status sd_stack_set_image_units(sd_stack *s, const char *units);

/* Collective (an attribute write): sets a string attribute of /images, e.g.
 * "consumer_normalization" = "robust_zscore" (what consumers apply before using the raw
 * values). Same value on every rank. */
sd_status sd_stack_set_image_attribute(sd_stack *s, const char *name, const char *value);
/* Collective: reads a string attribute of /images into a new string (free it), or sets
 * *value = NULL when the attribute does not exist. */
sd_status sd_stack_get_image_attribute(sd_stack *s, const char *name, char **value);

/* Collective. Opens an existing stack for reading and checks the schema (names the file
 * and the missing or malformed dataset on error). */
sd_status sd_stack_open(MPI_Comm comm, const char *path, sd_stack **out);

const sd_stack_info *sd_stack_get_info(const sd_stack *s);

/* Collective; count may be 0 on some ranks. Any output pointer may be NULL to skip it
 * (a dataset is read when any rank asks for it); masks requires has_masks. images
 * (count,H,W) converted to float, labels (count), masks (count,H,W). Works on a stack
 * being written too. */
sd_status sd_stack_read(sd_stack *s, int64_t first, int64_t count, float *images, int32_t *labels,
                        uint8_t *masks);
/* Collective like sd_stack_read: reads the /source strings [first, first+count) into
 * count newly allocated strings (free each and the array, e.g. with sd_stack_strings_free).
 * SD_ERR_FORMAT naming the file when the stack has no /source. */
sd_status sd_stack_read_sources(sd_stack *s, int64_t first, int64_t count, char ***sources);

/* Frees count strings and the array returned by sd_stack_read_sources; NULL-safe. */
void sd_stack_strings_free(char **sources, int64_t count);

/* Collective. For a stack being written: commit = 1 closes and renames into place,
 * commit = 0 closes and deletes the temporary file. Committing fails (and deletes the
 * temporary file) when the ranks wrote fewer than n images in total (a count of
 * sd_stack_write rows: an image written twice counts twice), else writes /source and
 * renames, which fails when the rename does; the status is the same on every rank. For a stack opened for reading commit is
 * ignored. Releases everything even on failure. NULL-safe; sets *s to NULL. */
sd_status sd_stack_close(sd_stack **s, int commit);

/* Writes the provenance attributes onto an open HDF5 object (file or group); used by every
 * output writer: program = "stemdefect", version, git_commit, command, command_line, config
 * (NULL fields are written as ""), ranks (int) and created (ISO-8601 UTC, e.g.
 * "2025-01-31T12:00:00Z"). In a file opened with the MPI-IO driver it is collective on the
 * file's communicator: every rank calls it with the same prov, and created is taken from
 * rank 0 so the attribute values are identical everywhere (HDF5 requires that). */
sd_status sd_h5_write_provenance(long long loc_id, const sd_provenance *prov, int ranks);

#endif
