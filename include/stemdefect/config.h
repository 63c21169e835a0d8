/* config.h - validated configuration: embedded defaults, YAML files, command-line overrides.
 *
 * Keys are "section.key" (sections: general, import, simulate, and one per later stage).
 * Every key is declared in a schema (type, range or allowed values, help text) compiled into
 * the program, and has its default in config/defaults.yaml, which is embedded at build time.
 * Layers apply in order: defaults, then --config FILE, then command-line options; each value
 * is checked when it is set, and an unknown key, a wrong type or an out-of-range value gives
 * one message naming the key, the value, where it came from, and what is allowed.
 * Not collective: the front end reads the file on rank 0 and broadcasts its text.
 */
#ifndef STEMDEFECT_CONFIG_H
#define STEMDEFECT_CONFIG_H

#include <stdint.h>

#include "stemdefect/status.h"

typedef enum sd_config_type {
  SD_CONFIG_TYPE_INT,
  SD_CONFIG_TYPE_FLOAT,
  SD_CONFIG_TYPE_BOOL,
  SD_CONFIG_TYPE_STRING,
  SD_CONFIG_TYPE_ENUM,       /* one of a '|' separated list */
  SD_CONFIG_TYPE_STRING_LIST, /* YAML sequence of strings, or comma separated on the command line */
  SD_CONFIG_TYPE_FLOAT_AUTO   /* a number in range, or "auto" (a default chosen by the program;
                                 sd_config_float gives NAN, sd_config_string gives "auto") */
} sd_config_type;

typedef struct sd_config_key {
  const char *name; /* "section.key" */
  sd_config_type type;
  double min, max;     /* INT and FLOAT: inclusive range */
  const char *allowed; /* ENUM: "a|b|c" */
  const char *help;
} sd_config_key;

/* The schema: all keys, terminated by an entry with name == NULL. */
extern const sd_config_key sd_config_schema[];

typedef struct sd_config sd_config;

/* Creates a configuration holding the embedded defaults (config/defaults.yaml). Fails if the
 * defaults and the schema disagree (a key without a default or a default without a key). */
sd_status sd_config_create(sd_config **out);
void sd_config_destroy(sd_config **cfg);

/* Applies a YAML document (a mapping of sections to mappings of keys). origin names it in
 * messages (a file path, or "defaults"). */
sd_status sd_config_load_string(sd_config *cfg, const char *yaml_text, const char *origin);
/* Sets one "section.key" from text (a list is comma separated). */
sd_status sd_config_set(sd_config *cfg, const char *key, const char *value, const char *origin);
/* Parses "section.key=value". */
sd_status sd_config_set_assignment(sd_config *cfg, const char *assignment, const char *origin);

/* Getters. The key must be in the schema with the matching type (else the program aborts:
 * that is a bug, not a user error). Strings are owned by cfg. */
int64_t sd_config_int(const sd_config *cfg, const char *key);
/* FLOAT, INT or FLOAT_AUTO keys (NAN for "auto"). */
double sd_config_float(const sd_config *cfg, const char *key);
int sd_config_bool(const sd_config *cfg, const char *key);
/* STRING and ENUM keys; also the text of any scalar key ("auto", "0.25", "true"). */
const char *sd_config_string(const sd_config *cfg, const char *key);
int sd_config_list_length(const sd_config *cfg, const char *key);
const char *sd_config_list_item(const sd_config *cfg, const char *key, int i);
/* Where the current value came from ("defaults", a file, "command line"). */
const char *sd_config_origin(const sd_config *cfg, const char *key);

/* The resolved configuration as YAML (all sections, or one section when section != NULL);
 * malloc'd, caller frees. */
char *sd_config_to_yaml(const sd_config *cfg, const char *section);

/* Looks up a schema entry (NULL if unknown). */
const sd_config_key *sd_config_find_key(const char *key);

/* The embedded text of config/defaults.yaml. */
extern const char sd_defaults_yaml[];

#endif
