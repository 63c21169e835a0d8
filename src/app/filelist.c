/* filelist.c - input expansion and labels from names. */
#include "filelist.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "stemdefect/imgread.h"

int sd_natural_compare(const char *a, const char *b) {
  while (*a && *b) {
    if (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
      while (*a == '0') a++;
      while (*b == '0') b++;
      const char *ea = a, *eb = b;
      while (isdigit((unsigned char)*ea)) ea++;
      while (isdigit((unsigned char)*eb)) eb++;
      if (ea - a != eb - b) return (ea - a) < (eb - b) ? -1 : 1;
      int c = strncmp(a, b, (size_t)(ea - a));
      if (c) return c;
      a = ea;
      b = eb;
    } else {
      if (*a != *b) return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
      a++;
      b++;
    }
  }
  return (unsigned char)*a - (unsigned char)*b;
}

static int cmp_natural(const void *x, const void *y) {
  return sd_natural_compare(*(const char *const *)x, *(const char *const *)y);
}

static sd_status push(sd_filelist *fl, const char *path) {
  if (fl->n == fl->cap) {
    int ncap = fl->cap ? fl->cap * 2 : 64;
    char **np = sd_realloc(fl->paths, (size_t)ncap, sizeof *np, "file list");
    if (!np) return SD_ERR_NOMEM;
    fl->paths = np;
    fl->cap = ncap;
  }
  fl->paths[fl->n] = sd_strdup(path);
  if (!fl->paths[fl->n]) return SD_ERR_NOMEM;
  fl->n++;
  return SD_OK;
}

static sd_status expand_dir(sd_filelist *fl, const char *dir, int recursive, int *found) {
  DIR *d = opendir(dir);
  if (!d) return SD_ERROR(SD_ERR_IO, "cannot read folder %s: %s", dir, strerror(errno));
  sd_filelist files = {0}, subdirs = {0};
  sd_status st = SD_OK;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    size_t len = strlen(dir) + strlen(e->d_name) + 2;
    char *full = sd_malloc(len, 1, "path");
    if (!full) {
      st = SD_ERR_NOMEM;
      break;
    }
    snprintf(full, len, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", e->d_name);
    struct stat sb;
    if (stat(full, &sb) == 0) {
      if (S_ISDIR(sb.st_mode)) {
        if (recursive) st = push(&subdirs, full);
      } else if (S_ISREG(sb.st_mode) && sd_image_path_supported(full)) {
        st = push(&files, full);
      }
    }
    free(full);
    if (st != SD_OK) break;
  }
  closedir(d);
  if (st == SD_OK) {
    if (files.n > 1) qsort(files.paths, (size_t)files.n, sizeof *files.paths, cmp_natural);
    if (subdirs.n > 1) qsort(subdirs.paths, (size_t)subdirs.n, sizeof *subdirs.paths, cmp_natural);
    for (int i = 0; i < files.n && st == SD_OK; i++) st = push(fl, files.paths[i]);
    *found += files.n;
    for (int i = 0; i < subdirs.n && st == SD_OK; i++) st = expand_dir(fl, subdirs.paths[i], 1, found);
  }
  sd_filelist_free(&files);
  sd_filelist_free(&subdirs);
  return st;
}

sd_status sd_filelist_expand(sd_filelist *fl, const char *const *inputs, int ninputs, int recursive) {
  if (ninputs == 0)
    return SD_ERROR(SD_ERR_ARG, "no input given; expected image files or folders (--input PATH)");
  for (int i = 0; i < ninputs; i++) {
    struct stat sb;
    if (stat(inputs[i], &sb) != 0)
      return SD_ERROR(SD_ERR_IO, "input %s does not exist (%s)", inputs[i], strerror(errno));
    if (S_ISDIR(sb.st_mode)) {
      int found = 0;
      SD_CHECK(expand_dir(fl, inputs[i], recursive, &found));
      if (found == 0)
        return SD_ERROR(SD_ERR_ARG, "folder %s holds no TIFF, JPEG or PNG images%s", inputs[i],
                        recursive ? "" : " (use --recursive to look into sub-folders)");
    } else {
      SD_CHECK(push(fl, inputs[i]));
    }
  }
  return SD_OK;
}

void sd_filelist_free(sd_filelist *fl) {
  for (int i = 0; i < fl->n; i++) free(fl->paths[i]);
  free(fl->paths);
  fl->paths = NULL;
  fl->n = fl->cap = 0;
}

char *sd_filelist_join(const sd_filelist *fl) {
  size_t len = 1;
  for (int i = 0; i < fl->n; i++) len += strlen(fl->paths[i]) + 1;
  char *s = sd_malloc(len, 1, "file list");
  if (!s) return NULL;
  s[0] = '\0';
  char *p = s;
  for (int i = 0; i < fl->n; i++) {
    size_t l = strlen(fl->paths[i]);
    memcpy(p, fl->paths[i], l);
    p += l;
    *p++ = '\n';
  }
  *p = '\0';
  return s;
}

sd_status sd_filelist_split(sd_filelist *fl, const char *joined) {
  const char *p = joined;
  while (*p) {
    const char *nl = strchr(p, '\n');
    size_t l = nl ? (size_t)(nl - p) : strlen(p);
    char *item = sd_malloc(l + 1, 1, "path");
    if (!item) return SD_ERR_NOMEM;
    memcpy(item, p, l);
    item[l] = '\0';
    sd_status st = push(fl, item);
    free(item);
    SD_CHECK(st);
    p += l + (nl ? 1 : 0);
  }
  return SD_OK;
}

void sd_label_from_path(const char *path, const char *mode, char *out, int n) {
  if (!strcmp(mode, "folder")) {
    /* parent folder name */
    const char *end = strrchr(path, '/');
    if (!end) {
      snprintf(out, (size_t)n, ".");
      return;
    }
    const char *start = end;
    while (start > path && start[-1] != '/') start--;
    if (start == end) {
      snprintf(out, (size_t)n, "/");
      return;
    }
    snprintf(out, (size_t)n, "%.*s", (int)(end - start), start);
    return;
  }
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  const char *dot = strrchr(base, '.');
  size_t len = dot && dot != base ? (size_t)(dot - base) : strlen(base);
  /* strip a trailing _<digits> */
  size_t k = len;
  while (k > 0 && isdigit((unsigned char)base[k - 1])) k--;
  if (k < len && k > 1 && base[k - 1] == '_') len = k - 1;
  snprintf(out, (size_t)n, "%.*s", (int)len, base);
}
