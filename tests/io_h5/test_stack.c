/* test_stack.c - the HDF5 image stack (stack.h) at any rank count (run at 1, 2 and 4).
 *
 * Writes a stack of N = 7 images of 5 x 6 pixels (7 is not divisible by 2 or 4) with known
 * values, each rank its balanced shard, reads it back with other shardings (all of it on
 * every rank, one image per rank per round, the mirrored shard) and compares exactly; checks
 * the temporary name before and after commit, that commit = 0 and failed writes leave
 * nothing, that errors (missing file, non-HDF5 file, broken schema, unwritable directory,
 * bad arguments on one rank only) come back with the same status on every rank and name the
 * file, that a stack of 1 image (count 0 on most ranks) and of 0 images work, and that no
 * HDF5 object is left open after each close.
 *
 * Usage: test_stack [--dir DIR]          writes into DIR/stack_np<ranks>/ (default ".");
 *                                         DIR/stack_np<ranks>/stack.h5 stays for the
 *                                         interoperability script (check_h5py.py)
 *        test_stack --read-foreign FILE   reads the stack check_h5py.py wrote with h5py
 */
#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sd_test.h"
#include "stemdefect/h5util.h"
#include "stemdefect/par.h"
#include "stemdefect/stack.h"

/* The test stack; check_h5py.py repeats these definitions. */
enum { N = 7, H = 5, W = 6, C = 3 };
static const char *const class_names[C] = {"bulk", "vacancy", "interstitial"};

static float pixel_of(int64_t i, int y, int x) {
  return (float)(i * 1000 + y * 10 + x) + 0.25f;
}
static int32_t label_of(int64_t i) {
  return i == 4 ? -1 : (int32_t)(i % C);
}
static uint8_t mask_of(int64_t i, int y, int x) {
  return (uint8_t)((i + y + x) % (C + 1));
}
/* the last image (on the last rank) has the longest source */
static void source_of(int64_t i, char *buf, size_t cap) {
  if (i == N - 1)
    snprintf(buf, cap, "a/much/longer/path/to/the/last/image_%lld.tif#page2", (long long)i);
  else
    snprintf(buf, cap, "sample_%lld.tif", (long long)i);
}

static int rank, size;

/* ---- helpers ---------------------------------------------------------------------------- */

static int file_exists(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0;
}

/* Files in dir whose name starts with "<base>.tmp-". */
static int count_tmp_files(const char *dir, const char *base) {
  char prefix[256];
  snprintf(prefix, sizeof prefix, "%s.tmp-", base);
  DIR *d = opendir(dir);
  if (!d)
    return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
      n++;
  closedir(d);
  return n;
}

/* 1 when st is the same on every rank. */
static int same_on_all_ranks(sd_status st) {
  int v[2] = {(int)st, -(int)st};
  MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return v[0] == -v[1];
}

/* After every close: no file, dataset, group, datatype or attribute left open. */
static void expect_no_h5_objects(const char *where) {
  ssize_t n = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
  SD_EXPECT_MSG(n == 0, "%zd HDF5 objects open after %s", n, where);
}

/* Expects st to be the failure code on every rank with a message containing needle (and,
 * when needle2 is not NULL, needle2 too); clears the error. */
static void expect_failure(sd_status st, sd_status code, const char *needle, const char *needle2,
                           const char *what) {
  SD_EXPECT_MSG(st == code, "%s: status %d (%s), expected %d: %s", what, (int)st,
                sd_status_name(st), (int)code, sd_error_message());
  SD_EXPECT_MSG(same_on_all_ranks(st), "%s: status differs between ranks", what);
  SD_EXPECT_MSG(strstr(sd_error_message(), needle) != NULL, "%s: message '%s' lacks '%s'", what,
                sd_error_message(), needle);
  if (needle2)
    SD_EXPECT_MSG(strstr(sd_error_message(), needle2) != NULL, "%s: message '%s' lacks '%s'", what,
                  sd_error_message(), needle2);
  if (rank == 0)
    fprintf(stderr, "  (expected) %s: %s\n", what, sd_error_message());
  sd_error_clear();
}

/* Fills the test data for images [first, first+count). */
static void make_data(int64_t first, int64_t count, float *img, int32_t *lab, uint8_t *msk,
                      char (*src)[96], const char **srcp) {
  for (int64_t k = 0; k < count; k++) {
    int64_t i = first + k;
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) {
        img[(k * H + y) * W + x] = pixel_of(i, y, x);
        msk[(k * H + y) * W + x] = mask_of(i, y, x);
      }
    lab[k] = label_of(i);
    source_of(i, src[k], sizeof src[k]);
    srcp[k] = src[k];
  }
}

/* Compares images/labels/masks/sources of [first, first+count) with the test data; any
 * pointer may be NULL to skip. Returns the number of mismatches. */
static int compare_data(int64_t first, int64_t count, const float *img, const int32_t *lab,
                        const uint8_t *msk, char **src) {
  int bad = 0;
  for (int64_t k = 0; k < count; k++) {
    int64_t i = first + k;
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) {
        if (img && img[(k * H + y) * W + x] != pixel_of(i, y, x))
          bad++;
        if (msk && msk[(k * H + y) * W + x] != mask_of(i, y, x))
          bad++;
      }
    if (lab && lab[k] != label_of(i))
      bad++;
    if (src) {
      char want[96];
      source_of(i, want, sizeof want);
      if (strcmp(src[k], want) != 0) {
        fprintf(stderr, "[rank %d] source %lld: '%s', expected '%s'\n", rank, (long long)i, src[k],
                want);
        bad++;
      }
    }
  }
  return bad;
}

static char big_config[120000];

/* A resolved configuration larger than the 64 KiB an attribute header holds, with UTF-8. */
static const char *make_config(void) {
  size_t len = 0;
  len += (size_t)snprintf(big_config + len, sizeof big_config - len,
                          "simulate:\n  material: cdte\n  probe: 0.8 \xc3\x85\n");
  for (int i = 0; len + 64 < sizeof big_config - 64 && i < 3000; i++)
    len += (size_t)snprintf(big_config + len, sizeof big_config - len,
                            "# padding line %04d to exceed 64 KiB\n", i);
  return big_config;
}

/* ---- the round trip --------------------------------------------------------------------- */

static void test_write_read(const char *dir) {
  char path[512];
  snprintf(path, sizeof path, "%s/stack.h5", dir);
  const sd_provenance prov = {"test_stack --dir x", make_config(), "test_stack"};

  int64_t first, count;
  sd_shard_range(N, rank, size, &first, &count);
  float img[N * H * W];
  int32_t lab[N];
  uint8_t msk[N * H * W];
  char src[N][96];
  const char *srcp[N];
  make_data(first, count, img, lab, msk, src, srcp);

  sd_stack *s = NULL;
  SD_EXPECT_OK(sd_stack_create(MPI_COMM_WORLD, path, N, H, W, C, class_names, 1, &prov, &s));
  if (!s)
    return;
  SD_EXPECT_OK(sd_stack_write(s, first, count, img, lab, srcp, msk));

  /* while writing: one temporary file, no final file */
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0) {
    SD_EXPECT_MSG(count_tmp_files(dir, "stack.h5") == 1, "expected one temporary file in %s", dir);
    SD_EXPECT_MSG(!file_exists(path), "%s exists before commit", path);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  SD_EXPECT_OK(sd_stack_close(&s, 1));
  SD_EXPECT(s == NULL);
  expect_no_h5_objects("commit");
  /* after: the final file on every rank, no temporary file */
  SD_EXPECT_MSG(file_exists(path), "%s missing after commit", path);
  if (rank == 0)
    SD_EXPECT_MSG(count_tmp_files(dir, "stack.h5") == 0, "temporary file left in %s", dir);

  /* read back: the schema */
  SD_EXPECT_OK(sd_stack_open(MPI_COMM_WORLD, path, &s));
  if (!s)
    return;
  const sd_stack_info *in = sd_stack_get_info(s);
  SD_EXPECT(in->n == N && in->height == H && in->width == W);
  SD_EXPECT(in->has_masks == 1);
  SD_EXPECT(in->num_classes == C);
  for (int c = 0; c < C && in->num_classes == C; c++)
    SD_EXPECT_MSG(strcmp(in->class_names[c], class_names[c]) == 0, "class %d: '%s'", c,
                  in->class_names[c]);

  /* all of it on every rank */
  float rimg[N * H * W];
  int32_t rlab[N];
  uint8_t rmsk[N * H * W];
  memset(rimg, 0, sizeof rimg);
  SD_EXPECT_OK(sd_stack_read(s, 0, N, rimg, rlab, rmsk));
  SD_EXPECT_MSG(compare_data(0, N, rimg, rlab, rmsk, NULL) == 0, "whole-stack read differs");
  char **rsrc = NULL;
  SD_EXPECT_OK(sd_stack_read_sources(s, 0, N, &rsrc));
  if (rsrc)
    SD_EXPECT_MSG(compare_data(0, N, NULL, NULL, NULL, rsrc) == 0, "sources differ");
  sd_stack_strings_free(rsrc, N);

  /* one image per rank per round (strided; the last round has count 0 on some ranks), and
   * odd ranks skip the labels (the others still read them) */
  for (int64_t round = 0; round * size < N; round++) {
    int64_t i = round * size + rank;
    int64_t c = i < N ? 1 : 0;
    memset(rimg, 0, sizeof rimg);
    rlab[0] = -99;
    SD_EXPECT_OK(sd_stack_read(s, c ? i : 0, c, rimg, rank % 2 ? NULL : rlab, rmsk));
    SD_EXPECT_MSG(compare_data(i, c, rimg, rank % 2 ? NULL : rlab, rmsk, NULL) == 0,
                  "strided read of image %lld differs", (long long)i);
    rsrc = NULL;
    SD_EXPECT_OK(sd_stack_read_sources(s, c ? i : 0, c, &rsrc));
    if (rsrc)
      SD_EXPECT(compare_data(i, c, NULL, NULL, NULL, rsrc) == 0);
    sd_stack_strings_free(rsrc, c);
  }

  /* the mirrored shard: rank r reads what rank size-1-r wrote */
  int64_t mf, mc;
  sd_shard_range(N, size - 1 - rank, size, &mf, &mc);
  SD_EXPECT_OK(sd_stack_read(s, mf, mc, rimg, NULL, NULL));
  SD_EXPECT(compare_data(mf, mc, rimg, NULL, NULL, NULL) == 0);

  SD_EXPECT_OK(sd_stack_close(&s, 0));
  expect_no_h5_objects("close after reading");

  /* h5util: an HDF5 failure names the file and object and carries the HDF5 error stack */
  hid_t f = H5I_INVALID_HID;
  SD_EXPECT_OK(sd_h5_file_open(MPI_COMM_WORLD, path, 0, &f));
  if (f >= 0) {
    expect_failure(sd_h5_attr_write_string(f, "extra", "x"), SD_ERR_HDF5, "stack.h5",
                   "(HDF5: ", "attribute write into a read-only file");
    char *format = NULL;
    SD_EXPECT_OK(sd_h5_attr_read_string(f, "format", &format));
    SD_EXPECT(format && strcmp(format, "stemdefect-stack") == 0);
    free(format);
    int64_t version = 0;
    SD_EXPECT_OK(sd_h5_attr_read_int(f, "format_version", &version));
    SD_EXPECT(version == 1);
    expect_failure(sd_h5_attr_read_int(f, "format", &version), SD_ERR_FORMAT, "stack.h5",
                   "not one integer", "integer read of a string attribute");
    SD_EXPECT(H5Fclose(f) >= 0);
  }
  expect_no_h5_objects("h5util checks");
}

/* Several writes per rank, sources only in the second, labels only in the first, the longest
 * source last: /source is sized at commit, so this works. */
static void test_batches(const char *dir) {
  char path[512];
  snprintf(path, sizeof path, "%s/batched.h5", dir);
  int64_t first, count;
  sd_shard_range(N, rank, size, &first, &count);
  float img[N * H * W];
  int32_t lab[N];
  uint8_t msk[N * H * W];
  char src[N][96];
  const char *srcp[N];
  make_data(first, count, img, lab, msk, src, srcp);
  int64_t half = count / 2;

  sd_stack *s = NULL;
  SD_EXPECT_OK(sd_stack_create(MPI_COMM_WORLD, path, N, H, W, C, class_names, 0, NULL, &s));
  if (!s)
    return;
  SD_EXPECT_OK(sd_stack_set_image_units(s, "a.u."));
  SD_EXPECT_OK(sd_stack_write(s, first, half, img, lab, NULL, NULL));
  SD_EXPECT_OK(
      sd_stack_write(s, first + half, count - half, img + half * H * W, NULL, srcp + half, NULL));
  /* a stack being written reads back its images, but has no /source before commit */
  float back[H * W];
  int64_t c0 = count > 0 ? 1 : 0;
  SD_EXPECT_OK(sd_stack_read(s, first, c0, back, NULL, NULL));
  if (c0)
    SD_EXPECT(compare_data(first, 1, back, NULL, NULL, NULL) == 0);
  char **early = NULL;
  expect_failure(sd_stack_read_sources(s, 0, 0, &early), SD_ERR_ARG, "batched.h5", "being written",
                 "sources before commit");
  SD_EXPECT_OK(sd_stack_close(&s, 1));
  expect_no_h5_objects("commit of batches");

  SD_EXPECT_OK(sd_stack_open(MPI_COMM_WORLD, path, &s));
  if (!s)
    return;
  SD_EXPECT(sd_stack_get_info(s)->has_masks == 0);
  float rimg[N * H * W];
  int32_t rlab[N];
  char **rsrc = NULL;
  SD_EXPECT_OK(sd_stack_read(s, 0, N, rimg, rlab, NULL));
  SD_EXPECT_OK(sd_stack_read_sources(s, 0, N, &rsrc));
  SD_EXPECT(compare_data(0, N, rimg, NULL, NULL, NULL) == 0);
  for (int r = 0; r < size; r++) {
    int64_t f, c;
    sd_shard_range(N, r, size, &f, &c);
    for (int64_t k = 0; k < c; k++) {
      int64_t i = f + k;
      int first_batch = k < c / 2;
      char want[96] = "";
      if (!first_batch)
        source_of(i, want, sizeof want);
      SD_EXPECT_MSG(rlab[i] == (first_batch ? label_of(i) : -1), "label %lld = %d", (long long)i,
                    rlab[i]);
      if (rsrc)
        SD_EXPECT_MSG(strcmp(rsrc[i], want) == 0, "source %lld = '%s', expected '%s'", (long long)i,
                      rsrc[i], want);
    }
  }
  sd_stack_strings_free(rsrc, N);
  /* masks were not written: asking for them is an error on every rank */
  uint8_t rmsk[H * W];
  expect_failure(sd_stack_read(s, 0, rank == 0 ? 1 : 0, NULL, NULL, rank == 0 ? rmsk : NULL),
                 SD_ERR_ARG, "batched.h5", "masks", "reading masks of a stack without them");
  SD_EXPECT_OK(sd_stack_close(&s, 0));
  expect_no_h5_objects("close of batches");
}

/* commit = 0, a failed write, and an incomplete stack leave nothing behind. */
static void test_discard(const char *dir) {
  char path[512];
  snprintf(path, sizeof path, "%s/discard.h5", dir);
  int64_t first, count;
  sd_shard_range(N, rank, size, &first, &count);
  float img[N * H * W];
  int32_t lab[N];
  uint8_t msk[N * H * W];
  char src[N][96];
  const char *srcp[N];
  make_data(first, count, img, lab, msk, src, srcp);

  sd_stack *s = NULL;
  SD_EXPECT_OK(sd_stack_create(MPI_COMM_WORLD, path, N, H, W, C, class_names, 1, NULL, &s));
  SD_EXPECT_OK(sd_stack_write(s, first, count, img, lab, srcp, msk));
  SD_EXPECT_OK(sd_stack_close(&s, 0));
  SD_EXPECT_MSG(!file_exists(path), "%s exists after commit = 0", path);
  if (rank == 0)
    SD_EXPECT(count_tmp_files(dir, "discard.h5") == 0);
  expect_no_h5_objects("discard");

  /* a bad range on the last rank only: every rank fails, then nothing is left */
  SD_EXPECT_OK(sd_stack_create(MPI_COMM_WORLD, path, N, H, W, C, class_names, 1, NULL, &s));
  int last = rank == size - 1;
  expect_failure(sd_stack_write(s, last ? N - 1 : first, last ? 2 : count, img, lab, srcp, msk),
                 SD_ERR_ARG, "discard.h5", "[6, 8)", "write beyond the end on one rank");
  /* a label out of range on rank 0 only */
  int32_t badlab[N];
  memcpy(badlab, lab, sizeof lab);
  if (rank == 0)
    badlab[0] = C;
  expect_failure(sd_stack_write(s, first, count, img, badlab, srcp, msk), SD_ERR_ARG, "discard.h5",
                 "label 3 of image 0", "label out of range on rank 0");
  /* masks missing where the stack has them */
  expect_failure(sd_stack_write(s, first, count, img, lab, srcp, rank == 0 ? NULL : msk),
                 SD_ERR_ARG, "masks are required", NULL, "missing masks on rank 0");
  SD_EXPECT_OK(sd_stack_close(&s, 0));
  SD_EXPECT(!file_exists(path));
  if (rank == 0)
    SD_EXPECT(count_tmp_files(dir, "discard.h5") == 0);
  expect_no_h5_objects("failed writes");

  /* only rank 0 writes: commit refuses an incomplete stack and removes it */
  SD_EXPECT_OK(sd_stack_create(MPI_COMM_WORLD, path, N, H, W, C, class_names, 0, NULL, &s));
  SD_EXPECT_OK(sd_stack_write(s, first, rank == 0 ? count : 0, img, lab, NULL, NULL));
  if (size > 1 || count < N) {
    expect_failure(sd_stack_close(&s, 1), SD_ERR_ARG, "discard.h5", "incomplete",
                   "commit of an incomplete stack");
  } else {
    SD_EXPECT_OK(sd_stack_close(&s, 1)); /* one rank wrote everything */
    if (rank == 0)
      unlink(path);
  }
  SD_EXPECT(s == NULL);
  MPI_Barrier(MPI_COMM_WORLD);
  SD_EXPECT(!file_exists(path));
  if (rank == 0)
    SD_EXPECT(count_tmp_files(dir, "discard.h5") == 0);
  expect_no_h5_objects("incomplete commit");
}

/* One image: ranks > 0 write and read nothing. No classes, no masks, no sources given. */
static void test_tiny(const char *dir) {
  char path[512];
  snprintf(path, sizeof path, "%s/one.h5", dir);
  float img[H * W];
  for (int k = 0; k < H * W; k++)
    img[k] = pixel_of(0, k / W, k % W);
  sd_stack *s = NULL;
  SD_EXPECT_OK(sd_stack_create(MPI_COMM_WORLD, path, 1, H, W, 0, NULL, 0, NULL, &s));
  SD_EXPECT_OK(sd_stack_write(s, 0, rank == 0 ? 1 : 0, rank == 0 ? img : NULL, NULL, NULL, NULL));
  SD_EXPECT_OK(sd_stack_close(&s, 1));
  expect_no_h5_objects("commit of one image");

  SD_EXPECT_OK(sd_stack_open(MPI_COMM_WORLD, path, &s));
  if (!s)
    return;
  const sd_stack_info *in = sd_stack_get_info(s);
  SD_EXPECT(in->n == 1 && in->num_classes == 0 && in->has_masks == 0);
  /* the last rank reads the image, the others nothing */
  int reader = rank == size - 1;
  float rimg[H * W];
  int32_t rlab[1] = {7};
  memset(rimg, 0, sizeof rimg);
  SD_EXPECT_OK(sd_stack_read(s, 0, reader, reader ? rimg : NULL, reader ? rlab : NULL, NULL));
  if (reader) {
    SD_EXPECT(compare_data(0, 1, rimg, NULL, NULL, NULL) == 0);
    SD_EXPECT(rlab[0] == -1);
  }
  char **rsrc = NULL;
  SD_EXPECT_OK(sd_stack_read_sources(s, 0, reader, &rsrc));
  if (reader && rsrc)
    SD_EXPECT_MSG(strcmp(rsrc[0], "") == 0, "source '%s'", rsrc[0]);
  sd_stack_strings_free(rsrc, reader);
  SD_EXPECT_OK(sd_stack_close(&s, 0));

  /* no images at all */
  snprintf(path, sizeof path, "%s/empty.h5", dir);
  SD_EXPECT_OK(sd_stack_create(MPI_COMM_WORLD, path, 0, H, W, C, class_names, 1, NULL, &s));
  SD_EXPECT_OK(sd_stack_write(s, 0, 0, NULL, NULL, NULL, NULL));
  SD_EXPECT_OK(sd_stack_close(&s, 1));
  SD_EXPECT_OK(sd_stack_open(MPI_COMM_WORLD, path, &s));
  if (s) {
    SD_EXPECT(sd_stack_get_info(s)->n == 0 && sd_stack_get_info(s)->num_classes == C);
    SD_EXPECT_OK(sd_stack_read(s, 0, 0, rimg, rlab, NULL));
  }
  SD_EXPECT_OK(sd_stack_close(&s, 0));
  expect_no_h5_objects("empty stack");
}

/* Writes a small HDF5 file with the serial driver on rank 0 (for schema errors):
 * images_nd = 2 or 3 dimensions, nlabels labels (-1: no /labels), with_class_names. */
static void write_broken(const char *path, int images_nd, int nlabels, int with_class_names) {
  if (rank != 0)
    return;
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hsize_t dims[3] = {3, 4, 4};
  hid_t sp = H5Screate_simple(images_nd, dims, NULL);
  hid_t d = H5Dcreate2(f, "images", H5T_NATIVE_FLOAT, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dclose(d);
  H5Sclose(sp);
  if (nlabels >= 0) {
    hsize_t ld[1] = {(hsize_t)nlabels};
    sp = H5Screate_simple(1, ld, NULL);
    d = H5Dcreate2(f, "labels", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (with_class_names) {
      hid_t as = H5Screate(H5S_SCALAR);
      hid_t t = H5Tcopy(H5T_C_S1);
      H5Tset_size(t, 4);
      hid_t a = H5Acreate2(d, "class_names", t, as, H5P_DEFAULT, H5P_DEFAULT);
      H5Awrite(a, t, "bulk");
      H5Aclose(a);
      H5Tclose(t);
      H5Sclose(as);
    }
    H5Dclose(d);
    H5Sclose(sp);
  }
  H5Fclose(f);
}

static void test_open_errors(const char *dir) {
  char path[512];
  sd_stack *s = NULL;

  snprintf(path, sizeof path, "%s/missing.h5", dir);
  expect_failure(sd_stack_open(MPI_COMM_WORLD, path, &s), SD_ERR_IO, path, "no such file",
                 "open of a missing file");
  SD_EXPECT(s == NULL);

  snprintf(path, sizeof path, "%s/not_hdf5.h5", dir);
  if (rank == 0) {
    FILE *fp = fopen(path, "w");
    if (fp) {
      fputs("this is a text file, not HDF5\n", fp);
      fclose(fp);
    }
  }
  MPI_Barrier(MPI_COMM_WORLD);
  expect_failure(sd_stack_open(MPI_COMM_WORLD, path, &s), SD_ERR_FORMAT, path, "not an HDF5",
                 "open of a text file");
  expect_failure(sd_stack_open(MPI_COMM_WORLD, dir, &s), SD_ERR_IO, dir, "regular file",
                 "open of a directory");

  snprintf(path, sizeof path, "%s/images_2d.h5", dir);
  write_broken(path, 2, 3, 1);
  MPI_Barrier(MPI_COMM_WORLD);
  expect_failure(sd_stack_open(MPI_COMM_WORLD, path, &s), SD_ERR_FORMAT, path, "/images",
                 "2-D /images");

  snprintf(path, sizeof path, "%s/no_labels.h5", dir);
  write_broken(path, 3, -1, 0);
  MPI_Barrier(MPI_COMM_WORLD);
  expect_failure(sd_stack_open(MPI_COMM_WORLD, path, &s), SD_ERR_FORMAT, path, "no dataset /labels",
                 "no /labels");

  snprintf(path, sizeof path, "%s/short_labels.h5", dir);
  write_broken(path, 3, 2, 1);
  MPI_Barrier(MPI_COMM_WORLD);
  expect_failure(sd_stack_open(MPI_COMM_WORLD, path, &s), SD_ERR_FORMAT, path, "/labels in",
                 "2 labels for 3 images");

  snprintf(path, sizeof path, "%s/no_class_names.h5", dir);
  write_broken(path, 3, 3, 0);
  MPI_Barrier(MPI_COMM_WORLD);
  expect_failure(sd_stack_open(MPI_COMM_WORLD, path, &s), SD_ERR_FORMAT, path, "class names",
                 "no class names");

  /* a scalar fixed-length class_names attribute is one class: accepted */
  snprintf(path, sizeof path, "%s/scalar_class.h5", dir);
  write_broken(path, 3, 3, 1);
  MPI_Barrier(MPI_COMM_WORLD);
  SD_EXPECT_OK(sd_stack_open(MPI_COMM_WORLD, path, &s));
  if (s)
    SD_EXPECT(sd_stack_get_info(s)->num_classes == 1 &&
              strcmp(sd_stack_get_info(s)->class_names[0], "bulk") == 0);
  /* ... without /source */
  char **rsrc = NULL;
  expect_failure(sd_stack_read_sources(s, 0, 1, &rsrc), SD_ERR_FORMAT, path, "/source",
                 "sources of a stack without /source");
  SD_EXPECT_OK(sd_stack_close(&s, 0));
  expect_no_h5_objects("open errors");
}

static void test_create_errors(const char *dir) {
  sd_stack *s = NULL;
  const char *nodir = "/proc/nonexistent/x.h5";
  expect_failure(sd_stack_create(MPI_COMM_WORLD, nodir, N, H, W, C, class_names, 0, NULL, &s),
                 SD_ERR_IO, nodir, "does not exist", "create in a missing directory");
  SD_EXPECT(s == NULL);

  char regular[512], under[600];
  snprintf(regular, sizeof regular, "%s/regular_file", dir);
  snprintf(under, sizeof under, "%s/x.h5", regular);
  if (rank == 0) {
    FILE *fp = fopen(regular, "w");
    if (fp)
      fclose(fp);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  expect_failure(sd_stack_create(MPI_COMM_WORLD, under, N, H, W, C, class_names, 0, NULL, &s),
                 SD_ERR_IO, under, "not a directory", "create under a regular file");

  /* as root, /proc passes the directory check, but HDF5 cannot create a file there: the
   * failure comes from H5Fcreate, with the HDF5 error stack in the message */
  const char *procfile = "/proc/stemdefect_test_stack.h5";
  expect_failure(sd_stack_create(MPI_COMM_WORLD, procfile, N, H, W, C, class_names, 0, NULL, &s),
                 SD_ERR_IO, procfile, geteuid() == 0 ? "HDF5" : "not writable", "create in /proc");

  expect_failure(sd_stack_create(MPI_COMM_WORLD, dir, N, H, W, C, class_names, 0, NULL, &s),
                 SD_ERR_IO, dir, "is a directory", "create over a directory");

  char path[512];
  snprintf(path, sizeof path, "%s/args.h5", dir);
  expect_failure(sd_stack_create(MPI_COMM_WORLD, path, N, 0, W, C, class_names, 0, NULL, &s),
                 SD_ERR_ARG, path, "height and width", "zero height");
  expect_failure(sd_stack_create(MPI_COMM_WORLD, path, N, H, W, C, NULL, 0, NULL, &s), SD_ERR_ARG,
                 path, "class names", "classes without names");
  if (size > 1) {
    expect_failure(sd_stack_create(MPI_COMM_WORLD, path, rank == 1 ? N + 1 : N, H, W, C,
                                   class_names, 0, NULL, &s),
                   SD_ERR_ARG, path, "different", "n differs between ranks");
  }
  SD_EXPECT(s == NULL);
  SD_EXPECT(!file_exists(path));
  if (rank == 0)
    SD_EXPECT(count_tmp_files(dir, "args.h5") == 0);
  expect_no_h5_objects("create errors");
}

/* ---- a stack written by h5py (check_h5py.py make-foreign) ---------------------------------- */

static int read_foreign(const char *path) {
  enum { FN = 5, FH = 4, FW = 3 };
  static const int32_t flabels[FN] = {0, 1, -1, 1, 0};
  sd_stack *s = NULL;
  SD_EXPECT_OK(sd_stack_open(MPI_COMM_WORLD, path, &s));
  if (!s)
    return 1;
  const sd_stack_info *in = sd_stack_get_info(s);
  SD_EXPECT(in->n == FN && in->height == FH && in->width == FW);
  SD_EXPECT(in->num_classes == 2 && in->has_masks == 1);
  if (in->num_classes == 2)
    SD_EXPECT(strcmp(in->class_names[0], "bulk") == 0 &&
              strcmp(in->class_names[1], "vacancy \xc3\xa9") == 0);
  int64_t first, count;
  sd_shard_range(FN, rank, size, &first, &count);
  float img[FN * FH * FW];
  int32_t lab[FN];
  uint8_t msk[FN * FH * FW];
  char **src = NULL;
  SD_EXPECT_OK(sd_stack_read(s, first, count, img, lab, msk));
  SD_EXPECT_OK(sd_stack_read_sources(s, first, count, &src));
  for (int64_t k = 0; k < count; k++) {
    int64_t i = first + k;
    for (int p = 0; p < FH * FW; p++) {
      SD_EXPECT_MSG(img[k * FH * FW + p] == (float)((i * 50 + p * 7) % 256), "pixel %lld/%d = %g",
                    (long long)i, p, img[k * FH * FW + p]);
      SD_EXPECT(msk[k * FH * FW + p] == (uint8_t)((i + p) % 2));
    }
    SD_EXPECT_MSG(lab[k] == flabels[i], "label %lld = %d", (long long)i, lab[k]);
    char want[64];
    snprintf(want, sizeof want, "foreign_%lld.png", (long long)i);
    if (src)
      SD_EXPECT_MSG(strcmp(src[k], want) == 0, "source %lld = '%s'", (long long)i, src[k]);
  }
  sd_stack_strings_free(src, count);
  SD_EXPECT_OK(sd_stack_close(&s, 0));
  expect_no_h5_objects("foreign stack");
  return 0;
}

/* ---- main ------------------------------------------------------------------------------- */

static int finish(void) {
  int v[2] = {sd_test_failures, sd_test_checks};
  MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0)
    fprintf(stderr, "test_stack (%d ranks): %d checks, %d failed\n", size, v[1], v[0]);
  return v[0] ? 1 : (v[1] == 0);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const char *base = ".", *foreign = NULL;
  for (int a = 1; a + 1 < argc; a += 2) {
    if (strcmp(argv[a], "--dir") == 0)
      base = argv[a + 1];
    else if (strcmp(argv[a], "--read-foreign") == 0)
      foreign = argv[a + 1];
  }
  if (foreign) {
    read_foreign(foreign);
  } else {
    char dir[400];
    snprintf(dir, sizeof dir, "%s/stack_np%d", base, size);
    if (rank == 0) {
      if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        fprintf(stderr, "cannot create %s\n", dir);
      DIR *d = opendir(dir); /* leftovers of an earlier run */
      struct dirent *e;
      while (d && (e = readdir(d))) {
        char p[700];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (e->d_name[0] != '.')
          unlink(p);
      }
      if (d)
        closedir(d);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    test_write_read(dir);
    test_batches(dir);
    test_discard(dir);
    test_tiny(dir);
    test_open_errors(dir);
    test_create_errors(dir);
  }
  int rc = finish();
  MPI_Finalize();
  return rc;
}
