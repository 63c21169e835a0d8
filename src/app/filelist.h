/* filelist.h - expanding import inputs (files and folders) into a sorted file list, and
 * labels from file or folder names. Not collective (rank 0 expands, then broadcasts). */
#ifndef STEMDEFECT_FILELIST_H
#define STEMDEFECT_FILELIST_H

#include "stemdefect/status.h"

typedef struct sd_filelist {
  char **paths;
  int n, cap;
} sd_filelist;

/* Appends the image files of each input: a file is taken as is, a folder contributes its
 * TIFF/JPEG/PNG files in natural name order (Bulk_2 before Bulk_10), descending into
 * sub-folders when recursive. Errors name a missing input or a folder without images. */
sd_status sd_filelist_expand(sd_filelist *fl, const char *const *inputs, int ninputs, int recursive);
void sd_filelist_free(sd_filelist *fl);
/* Serialises to one '\n'-separated string and back. */
char *sd_filelist_join(const sd_filelist *fl);
sd_status sd_filelist_split(sd_filelist *fl, const char *joined);

/* Label of a file: mode "filename": the base name without extension and without a trailing
 * "_<digits>" (Vacancy_CdTe_12.tif -> Vacancy_CdTe); "folder": the parent folder's name.
 * Writes into out (size n). */
void sd_label_from_path(const char *path, const char *mode, char *out, int n);
/* Natural order comparison of two strings (digit runs compare as numbers). */
int sd_natural_compare(const char *a, const char *b);

#endif
