/* stack.h - HDF5 image stacks, read and written in parallel.
 *
 * Schema (one file, readable by h5dump/h5py without our code):
 *   /images  float32 [N,H,W], chunked one image per chunk; raw grey values (never
 *            normalised); attrs: units = "counts" (or "a.u."), normalization = "none".
 *   /labels  int32 [N], -1 = unknown; attr class_names: fixed-length string array [C]
 *            (also /class_names dataset, the same strings, for tools that read datasets only).
 *   /source  fixed-length string [N]: file (and page) of origin, or "simulate:<seed>:<index>".
 *            The string length L is fixed when /source is created, which happens lazily in
 *            the first sd_stack_write (collective): L = the longest source string passed by
 *            any rank in that call, or the value given to sd_stack_set_source_length before
 *            it, whichever is larger (at least 1). A later write with a longer string fails
 *            on all ranks naming the image; writers that write in several batches and do not
 *            know their longest name up front call sd_stack_set_source_length first. Images
 *            written without sources (NULL) keep "" (the fill value).
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

/* Collective. Creates the temporary file and all datasets (except /source, see above).
 * All arguments must be the same on every rank (checked). n may be 0; height, width >= 1.
 * class_names may be NULL when num_classes == 0. Fails on all ranks with SD_ERR_IO naming
 * path when its directory does not exist or is not writable. prov may be NULL. */
sd_status sd_stack_create(MPI_Comm comm, const char *path, int64_t n, int height, int width,
                          int num_classes, const char *const *class_names, int with_masks,
                          const sd_provenance *prov, sd_stack **out);

/* Collective: every rank calls it, count may be 0. Writes images [first, first+count):
 * images (count,H,W); labels (count) or NULL (writes -1), each in [-1, num_classes);
 * sources (count strings) or NULL (leaves them as they are, "" when never written);
 * masks (count,H,W) or NULL (only when the stack has masks: then required). */
sd_status sd_stack_write(sd_stack *s, int64_t first, int64_t count, const float *images,
                         const int32_t *labels, const char *const *sources,
                         const uint8_t *masks);

/* Not collective, but call it on every rank with the same value before the first
 * sd_stack_write: the fixed length of the /source strings will be at least max_len bytes.
 * SD_ERR_ARG after /source has been created. */
sd_status sd_stack_set_source_length(sd_stack *s, int max_len);

/* Collective (an attribute write): sets the units attribute of /images (default "counts";
 * "a.u." for simulated or rescaled data). Same value on every rank. */
sd_status sd_stack_set_image_units(sd_stack *s, const char *units);

/* Collective. Opens an existing stack for reading and checks the schema (names the file
 * and the missing or malformed dataset on error). */
sd_status sd_stack_open(MPI_Comm comm, const char *path, sd_stack **out);

const sd_stack_info *sd_stack_get_info(const sd_stack *s);

/* Collective; count may be 0 on some ranks. Any output pointer may be NULL to skip it;
 * masks requires has_masks. images (count,H,W), labels (count), masks (count,H,W). */
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
 * temporary file) when the ranks wrote fewer than n images in total, or when the rename
 * fails; the status is the same on every rank. For a stack opened for reading commit is
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
