/* test_config.c - defaults agree with the schema; YAML and overrides; each kind of bad
 * input gives one message naming the key, the value and what is allowed. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sd_test.h"
#include "stemdefect/config.h"

static void expect_error(sd_config *cfg, const char *yaml, const char *must1, const char *must2) {
  sd_status st = sd_config_load_string(cfg, yaml, "test.yaml");
  SD_EXPECT_MSG(st == SD_ERR_CONFIG, "yaml '%s' gave status %d", yaml, (int)st);
  SD_EXPECT_MSG(strstr(sd_error_message(), must1) != NULL, "message '%s' lacks '%s'",
                sd_error_message(), must1);
  if (must2)
    SD_EXPECT_MSG(strstr(sd_error_message(), must2) != NULL, "message '%s' lacks '%s'",
                  sd_error_message(), must2);
  sd_error_clear();
}

int main(void) {
  sd_config *cfg = NULL;
  SD_EXPECT_OK(sd_config_create(&cfg));
  if (!cfg) return sd_test_finish("test_config");
  /* every schema key has a default and reads back */
  for (int i = 0; sd_config_schema[i].name; i++)
    SD_EXPECT(strncmp(sd_config_origin(cfg, sd_config_schema[i].name), "defaults (config/defaults.yaml) line ", 37) == 0);
  SD_EXPECT(sd_config_int(cfg, "simulate.size") == 64);
  SD_EXPECT(strcmp(sd_config_string(cfg, "simulate.material"), "cdte") == 0);
  SD_EXPECT(sd_config_list_length(cfg, "import.input") == 0);

  /* a file layer and command-line layer */
  SD_EXPECT_OK(sd_config_load_string(cfg,
                                     "simulate:\n  count: 100\n  dose_max: 1.5e3\n  material: sto\n"
                                     "import:\n  input: [a.tif, b dir]\n  recursive: yes\n",
                                     "study.yaml"));
  SD_EXPECT(sd_config_int(cfg, "simulate.count") == 100);
  SD_EXPECT_NEAR(sd_config_float(cfg, "simulate.dose_max"), 1500.0, 0);
  SD_EXPECT(sd_config_list_length(cfg, "import.input") == 2);
  SD_EXPECT(strcmp(sd_config_list_item(cfg, "import.input", 1), "b dir") == 0);
  SD_EXPECT(sd_config_bool(cfg, "import.recursive") == 1);
  SD_EXPECT(strcmp(sd_config_origin(cfg, "simulate.count"), "study.yaml line 2") == 0);
  SD_EXPECT_OK(sd_config_set(cfg, "simulate.count", "7", "command line"));
  SD_EXPECT(sd_config_int(cfg, "simulate.count") == 7);
  SD_EXPECT_OK(sd_config_set_assignment(cfg, "simulate.seed = 99", "command line"));
  SD_EXPECT(sd_config_int(cfg, "simulate.seed") == 99);
  SD_EXPECT_OK(sd_config_load_string(cfg, "", "empty.yaml"));
  SD_EXPECT_OK(sd_config_load_string(cfg, "# only a comment\n", "comment.yaml"));

  /* bad input: each names the key and the allowed values */
  expect_error(cfg, "simulate:\n  cuont: 3\n", "simulate.cuont", "allowed keys in 'simulate'");
  expect_error(cfg, "simulte:\n  count: 3\n", "simulte", "allowed sections");
  expect_error(cfg, "simulate:\n  count: many\n", "simulate.count", "integer");
  expect_error(cfg, "simulate:\n  count: 0\n", "simulate.count", "[1, 1000000000]");
  expect_error(cfg, "simulate:\n  dose_max: -5\n", "simulate.dose_max", "out of range");
  expect_error(cfg, "simulate:\n  dose_max: lots\n", "simulate.dose_max", "auto or a number");
  SD_EXPECT_OK(sd_config_load_string(cfg, "simulate:\n  dose_max: auto\n", "auto.yaml"));
  SD_EXPECT(isnan(sd_config_float(cfg, "simulate.dose_max")));
  SD_EXPECT(strcmp(sd_config_string(cfg, "simulate.dose_max"), "auto") == 0);
  expect_error(cfg, "simulate:\n  material: gold\n", "simulate.material", "cdte|sto");
  expect_error(cfg, "import:\n  recursive: maybe\n", "import.recursive", "true or false");
  expect_error(cfg, "simulate:\n  count: [1, 2]\n", "simulate.count", "wrong type");
  expect_error(cfg, "simulate: 3\n", "section 'simulate' must be a mapping", NULL);
  expect_error(cfg, "simulate:\n  count: [1\n", "YAML syntax error", "line");
  expect_error(cfg, "- a\n- b\n", "expected a mapping of sections", NULL);
  /* failed loads leave earlier values in place */
  SD_EXPECT(sd_config_int(cfg, "simulate.count") == 7);
  SD_EXPECT(sd_config_set(cfg, "nosuch", "1", "cli") == SD_ERR_CONFIG);
  sd_error_clear();
  SD_EXPECT(sd_config_set_assignment(cfg, "novalue", "cli") == SD_ERR_ARG);
  sd_error_clear();

  /* the dump is valid YAML that reproduces the configuration */
  char *dump = sd_config_to_yaml(cfg, NULL);
  SD_EXPECT(dump != NULL);
  sd_config *cfg2 = NULL;
  SD_EXPECT_OK(sd_config_create(&cfg2));
  if (dump && cfg2) {
    SD_EXPECT_OK(sd_config_load_string(cfg2, dump, "dump"));
    char *dump2 = sd_config_to_yaml(cfg2, NULL);
    SD_EXPECT(dump2 && strcmp(dump, dump2) == 0);
    free(dump2);
  }
  free(dump);
  sd_config_destroy(&cfg2);
  sd_config_destroy(&cfg);
  SD_EXPECT(cfg == NULL);
  sd_config_destroy(&cfg); /* NULL-safe */
  return sd_test_finish("test_config");
}
