/* jsonread.h - reading our small JSON files (metrics, profiles) with libyaml: JSON flow
 * documents are YAML. Internal to src/report. Not collective. */
#ifndef STEMDEFECT_JSONREAD_H
#define STEMDEFECT_JSONREAD_H

#include <yaml.h>

typedef struct sd_json_doc {
  yaml_document_t doc;
  int ok;
} sd_json_doc;

/* Loads path; returns 1 on success (then sd_json_free it). */
int sd_json_load(const char *path, sd_json_doc *j);
void sd_json_free(sd_json_doc *j);
yaml_node_t *sd_json_root(sd_json_doc *j);
/* Value of key in a mapping node (NULL when absent or n is not a mapping). */
yaml_node_t *sd_json_get(sd_json_doc *j, yaml_node_t *n, const char *key);
/* Length of a sequence node (0 otherwise) and its item i. */
int sd_json_len(yaml_node_t *n);
yaml_node_t *sd_json_at(sd_json_doc *j, yaml_node_t *n, int i);
/* A scalar's text (NULL otherwise) and its value as a number (NAN otherwise). */
const char *sd_json_str(yaml_node_t *n);
double sd_json_num(yaml_node_t *n);

#endif
