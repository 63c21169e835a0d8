/* jsonread.c - see jsonread.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonread.h"

int sd_json_load(const char *path, sd_json_doc *j) {
  memset(j, 0, sizeof *j);
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  yaml_parser_t p;
  yaml_parser_initialize(&p);
  yaml_parser_set_input_file(&p, f);
  j->ok = yaml_parser_load(&p, &j->doc) && yaml_document_get_root_node(&j->doc);
  yaml_parser_delete(&p);
  fclose(f);
  if (!j->ok) yaml_document_delete(&j->doc);
  return j->ok;
}
void sd_json_free(sd_json_doc *j) {
  if (j->ok) yaml_document_delete(&j->doc);
  j->ok = 0;
}
yaml_node_t *sd_json_root(sd_json_doc *j) { return j->ok ? yaml_document_get_root_node(&j->doc) : NULL; }
yaml_node_t *sd_json_get(sd_json_doc *j, yaml_node_t *n, const char *key) {
  if (!n || n->type != YAML_MAPPING_NODE) return NULL;
  for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(&j->doc, p->key);
    if (k && k->type == YAML_SCALAR_NODE && !strcmp((const char *)k->data.scalar.value, key))
      return yaml_document_get_node(&j->doc, p->value);
  }
  return NULL;
}
int sd_json_len(yaml_node_t *n) {
  return n && n->type == YAML_SEQUENCE_NODE ? (int)(n->data.sequence.items.top - n->data.sequence.items.start) : 0;
}
yaml_node_t *sd_json_at(sd_json_doc *j, yaml_node_t *n, int i) {
  if (i >= sd_json_len(n)) return NULL;
  return yaml_document_get_node(&j->doc, n->data.sequence.items.start[i]);
}
const char *sd_json_str(yaml_node_t *n) {
  return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}
double sd_json_num(yaml_node_t *n) {
  const char *s = sd_json_str(n);
  return s ? strtod(s, NULL) : NAN;
}
