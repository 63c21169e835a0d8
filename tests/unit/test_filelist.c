/* test_filelist.c - labels from names, natural order, input expansion errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/filelist.h"
#include "sd_test.h"

static void touch(const char *dir, const char *name) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "w");
  if (f) fclose(f);
}

int main(void) {
  char out[128];
  sd_label_from_path("/d/CdTe/Vacancy_CdTe_12.tif", "filename", out, sizeof out);
  SD_EXPECT(strcmp(out, "Vacancy_CdTe") == 0);
  sd_label_from_path("Twin_Bound_3.tif", "filename", out, sizeof out);
  SD_EXPECT(strcmp(out, "Twin_Bound") == 0);
  sd_label_from_path("Bulk.png", "filename", out, sizeof out);
  SD_EXPECT(strcmp(out, "Bulk") == 0);
  sd_label_from_path("SF2_0.tiff", "filename", out, sizeof out);
  SD_EXPECT(strcmp(out, "SF2") == 0);
  sd_label_from_path("/data/STO/Mis/img_001.tif", "folder", out, sizeof out);
  SD_EXPECT(strcmp(out, "Mis") == 0);
  SD_EXPECT(sd_natural_compare("Bulk_2.tif", "Bulk_10.tif") < 0);
  SD_EXPECT(sd_natural_compare("Bulk_10.tif", "Bulk_2.tif") > 0);
  SD_EXPECT(sd_natural_compare("a", "a") == 0);
  SD_EXPECT(sd_natural_compare("LC_1", "Bulk_1") > 0);

  char dir[] = "/tmp/sd_filelist_XXXXXX";
  SD_EXPECT(mkdtemp(dir) != NULL);
  touch(dir, "B_10.tif");
  touch(dir, "B_2.tif");
  touch(dir, "A_1.PNG");
  touch(dir, "notes.txt");
  char sub[600];
  snprintf(sub, sizeof sub, "%s/sub", dir);
  mkdir(sub, 0755);
  touch(sub, "C_1.jpg");
  sd_filelist fl = {0};
  const char *in[] = {dir};
  SD_EXPECT_OK(sd_filelist_expand(&fl, in, 1, 0));
  SD_EXPECT(fl.n == 3);
  if (fl.n == 3) {
    SD_EXPECT(strstr(fl.paths[0], "A_1.PNG") && strstr(fl.paths[1], "B_2.tif") &&
              strstr(fl.paths[2], "B_10.tif"));
  }
  char *joined = sd_filelist_join(&fl);
  sd_filelist fl2 = {0};
  SD_EXPECT_OK(sd_filelist_split(&fl2, joined));
  SD_EXPECT(fl2.n == fl.n && strcmp(fl2.paths[2], fl.paths[2]) == 0);
  free(joined);
  sd_filelist_free(&fl2);
  sd_filelist_free(&fl);
  SD_EXPECT_OK(sd_filelist_expand(&fl, in, 1, 1));
  SD_EXPECT(fl.n == 4);
  sd_filelist_free(&fl);
  /* errors: missing input, empty folder */
  const char *missing[] = {"/nonexistent/stemdefect"};
  SD_EXPECT(sd_filelist_expand(&fl, missing, 1, 0) == SD_ERR_IO);
  SD_EXPECT(strstr(sd_error_message(), "/nonexistent/stemdefect") != NULL);
  sd_error_clear();
  sd_filelist_free(&fl);
  char empty[700];
  snprintf(empty, sizeof empty, "%s/empty", dir);
  mkdir(empty, 0755);
  const char *ein[] = {empty};
  SD_EXPECT(sd_filelist_expand(&fl, ein, 1, 0) == SD_ERR_ARG);
  SD_EXPECT(strstr(sd_error_message(), "holds no") != NULL);
  sd_error_clear();
  sd_filelist_free(&fl);
  SD_EXPECT(sd_filelist_expand(&fl, NULL, 0, 0) == SD_ERR_ARG);
  sd_error_clear();
  char cmd[800];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  SD_EXPECT(system(cmd) == 0);
  return sd_test_finish("test_filelist");
}
