/* config.c - the configuration store: YAML through libyaml, typed values checked against the
 * schema (config_schema.c), layered defaults -> file -> command line. */
#include "stemdefect/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

typedef struct sd_config_value {
  int set;
  char *text;   /* scalar text as given (normalised for bool/int) */
  int64_t i;
  double f;
  int b;
  char **list;
  int nlist;
  char *origin;
} sd_config_value;

struct sd_config {
  int nkeys;
  sd_config_value *values; /* [nkeys], parallel to sd_config_schema */
};

static int schema_count(void) {
  int n = 0;
  while (sd_config_schema[n].name) n++;
  return n;
}

static int key_index(const char *key) {
  for (int i = 0; sd_config_schema[i].name; i++)
    if (strcmp(sd_config_schema[i].name, key) == 0) return i;
  return -1;
}

const sd_config_key *sd_config_find_key(const char *key) {
  int i = key_index(key);
  return i < 0 ? NULL : &sd_config_schema[i];
}

static void value_clear(sd_config_value *v) {
  free(v->text);
  for (int i = 0; i < v->nlist; i++) free(v->list[i]);
  free(v->list);
  free(v->origin);
  memset(v, 0, sizeof *v);
}

void sd_config_destroy(sd_config **cfg) {
  if (!cfg || !*cfg) return;
  for (int i = 0; i < (*cfg)->nkeys; i++) value_clear(&(*cfg)->values[i]);
  free((*cfg)->values);
  free(*cfg);
  *cfg = NULL;
}

/* "simulate" section names known to the schema, for messages */
static void list_sections(char *buf, size_t n) {
  buf[0] = '\0';
  for (int i = 0; sd_config_schema[i].name; i++) {
    const char *k = sd_config_schema[i].name;
    size_t len = (size_t)(strchr(k, '.') - k);
    int seen = 0;
    for (int j = 0; j < i; j++)
      if (strncmp(sd_config_schema[j].name, k, len) == 0 && sd_config_schema[j].name[len] == '.')
        seen = 1;
    if (seen) continue;
    size_t cur = strlen(buf);
    snprintf(buf + cur, n - cur, "%s%.*s", cur ? ", " : "", (int)len, k);
  }
}

static void list_keys(const char *section, char *buf, size_t n) {
  buf[0] = '\0';
  size_t sl = strlen(section);
  for (int i = 0; sd_config_schema[i].name; i++) {
    const char *k = sd_config_schema[i].name;
    if (strncmp(k, section, sl) == 0 && k[sl] == '.') {
      size_t cur = strlen(buf);
      snprintf(buf + cur, n - cur, "%s%s", cur ? ", " : "", k + sl + 1);
    }
  }
}

static int section_exists(const char *section) {
  size_t sl = strlen(section);
  for (int i = 0; sd_config_schema[i].name; i++)
    if (strncmp(sd_config_schema[i].name, section, sl) == 0 && sd_config_schema[i].name[sl] == '.')
      return 1;
  return 0;
}

static sd_status unknown_key(const char *key, const char *origin) {
  char section[128];
  const char *dot = strchr(key, '.');
  if (!dot) {
    char secs[1024];
    list_sections(secs, sizeof secs);
    return SD_ERROR(SD_ERR_CONFIG, "%s: unknown configuration key '%s' (keys are section.key; sections: %s)",
                    origin, key, secs);
  }
  snprintf(section, sizeof section, "%.*s", (int)(dot - key), key);
  if (!section_exists(section)) {
    char secs[1024];
    list_sections(secs, sizeof secs);
    return SD_ERROR(SD_ERR_CONFIG, "%s: unknown configuration section '%s' in '%s' (allowed sections: %s)",
                    origin, section, key, secs);
  }
  char keys[2048];
  list_keys(section, keys, sizeof keys);
  return SD_ERROR(SD_ERR_CONFIG, "%s: unknown configuration key '%s' (allowed keys in '%s': %s)",
                  origin, key, section, keys);
}

static char *trim_dup(const char *s) {
  while (isspace((unsigned char)*s)) s++;
  size_t n = strlen(s);
  while (n > 0 && isspace((unsigned char)s[n - 1])) n--;
  char *d = sd_malloc(n + 1, 1, "config value");
  if (!d) return NULL;
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

static void describe_allowed(const sd_config_key *k, char *buf, size_t n) {
  switch (k->type) {
  case SD_CONFIG_TYPE_INT:
    snprintf(buf, n, "an integer in [%.0f, %.0f]", k->min, k->max);
    break;
  case SD_CONFIG_TYPE_FLOAT:
    snprintf(buf, n, "a number in [%g, %g]", k->min, k->max);
    break;
  case SD_CONFIG_TYPE_BOOL:
    snprintf(buf, n, "true or false");
    break;
  case SD_CONFIG_TYPE_ENUM:
    snprintf(buf, n, "one of %s", k->allowed);
    break;
  case SD_CONFIG_TYPE_STRING:
    snprintf(buf, n, "a string");
    break;
  case SD_CONFIG_TYPE_STRING_LIST:
    snprintf(buf, n, "a list of strings");
    break;
  case SD_CONFIG_TYPE_FLOAT_AUTO:
    snprintf(buf, n, "auto or a number in [%g, %g]", k->min, k->max);
    break;
  }
}

static int enum_has(const char *allowed, const char *v) {
  size_t vl = strlen(v);
  const char *p = allowed;
  while (*p) {
    const char *bar = strchr(p, '|');
    size_t len = bar ? (size_t)(bar - p) : strlen(p);
    if (len == vl && strncmp(p, v, len) == 0) return 1;
    if (!bar) break;
    p = bar + 1;
  }
  return 0;
}

/* Parses and checks a scalar for key index ki; on success replaces the stored value. */
static sd_status set_scalar(sd_config *cfg, int ki, const char *raw, const char *origin) {
  const sd_config_key *k = &sd_config_schema[ki];
  sd_config_value nv;
  memset(&nv, 0, sizeof nv);
  char allowed[512];
  describe_allowed(k, allowed, sizeof allowed);
  char *t = trim_dup(raw);
  if (!t) return SD_ERR_NOMEM;
  sd_status st = SD_OK;
  switch (k->type) {
  case SD_CONFIG_TYPE_INT: {
    char *end;
    errno = 0;
    long long v = strtoll(t, &end, 10);
    if (!*t || *end || errno) {
      /* accept 1e6-style integers written as numbers */
      double d = strtod(t, &end);
      if (!*t || *end || d != floor(d) || fabs(d) > 9e15) {
        st = SD_ERROR(SD_ERR_CONFIG, "%s: %s = '%s' is not an integer; expected %s", origin,
                      k->name, t, allowed);
        break;
      }
      v = (long long)d;
    }
    if ((double)v < k->min || (double)v > k->max) {
      st = SD_ERROR(SD_ERR_CONFIG, "%s: %s = %lld is out of range; expected %s", origin, k->name,
                    v, allowed);
      break;
    }
    nv.i = v;
    nv.f = (double)v;
    break;
  }
  case SD_CONFIG_TYPE_FLOAT_AUTO:
    if (!strcmp(t, "auto")) {
      nv.f = NAN;
      break;
    }
    /* fall through */
  case SD_CONFIG_TYPE_FLOAT: {
    char *end;
    errno = 0;
    double v = strtod(t, &end);
    if (!*t || *end || errno || !isfinite(v)) {
      st = SD_ERROR(SD_ERR_CONFIG, "%s: %s = '%s' is not a number; expected %s", origin, k->name,
                    t, allowed);
      break;
    }
    if (v < k->min || v > k->max) {
      st = SD_ERROR(SD_ERR_CONFIG, "%s: %s = %g is out of range; expected %s", origin, k->name, v,
                    allowed);
      break;
    }
    nv.f = v;
    break;
  }
  case SD_CONFIG_TYPE_BOOL: {
    for (char *c = t; *c; c++) *c = (char)tolower((unsigned char)*c);
    if (!strcmp(t, "true") || !strcmp(t, "yes") || !strcmp(t, "on") || !strcmp(t, "1"))
      nv.b = 1;
    else if (!strcmp(t, "false") || !strcmp(t, "no") || !strcmp(t, "off") || !strcmp(t, "0"))
      nv.b = 0;
    else {
      st = SD_ERROR(SD_ERR_CONFIG, "%s: %s = '%s' is not a boolean; expected %s", origin, k->name,
                    t, allowed);
      break;
    }
    {
      char *norm = sd_strdup(nv.b ? "true" : "false");
      if (!norm) {
        st = SD_ERR_NOMEM;
        break;
      }
      free(t);
      t = norm;
    }
    break;
  }
  case SD_CONFIG_TYPE_ENUM:
    if (!enum_has(k->allowed, t))
      st = SD_ERROR(SD_ERR_CONFIG, "%s: %s = '%s' is not allowed; expected %s", origin, k->name, t,
                    allowed);
    break;
  case SD_CONFIG_TYPE_STRING:
    break;
  case SD_CONFIG_TYPE_STRING_LIST: {
    /* comma separated; empty string = empty list */
    int cap = 1;
    for (const char *c = t; *c; c++) cap += *c == ',';
    nv.list = sd_calloc((size_t)cap, sizeof *nv.list, "config list");
    if (!nv.list) {
      st = SD_ERR_NOMEM;
      break;
    }
    const char *p = t;
    while (*t && p) {
      const char *comma = strchr(p, ',');
      size_t len = comma ? (size_t)(comma - p) : strlen(p);
      char tmp[4096];
      snprintf(tmp, sizeof tmp, "%.*s", (int)len, p);
      char *item = trim_dup(tmp);
      if (!item) {
        st = SD_ERR_NOMEM;
        break;
      }
      if (!*item) {
        free(item);
        st = SD_ERROR(SD_ERR_CONFIG, "%s: %s = '%s' has an empty list item; expected %s", origin,
                      k->name, t, allowed);
        break;
      }
      nv.list[nv.nlist++] = item;
      p = comma ? comma + 1 : NULL;
    }
    break;
  }
  }
  if (st != SD_OK) {
    free(t);
    value_clear(&nv);
    return st;
  }
  nv.set = 1;
  nv.text = t;
  nv.origin = sd_strdup(origin);
  value_clear(&cfg->values[ki]);
  cfg->values[ki] = nv;
  return SD_OK;
}

sd_status sd_config_set(sd_config *cfg, const char *key, const char *value, const char *origin) {
  int ki = key_index(key);
  if (ki < 0) return unknown_key(key, origin);
  return set_scalar(cfg, ki, value, origin);
}

sd_status sd_config_set_assignment(sd_config *cfg, const char *assignment, const char *origin) {
  const char *eq = strchr(assignment, '=');
  if (!eq || eq == assignment)
    return SD_ERROR(SD_ERR_ARG, "%s: '%s' is not an assignment; expected section.key=value", origin,
                    assignment);
  char key[256];
  snprintf(key, sizeof key, "%.*s", (int)(eq - assignment), assignment);
  char *k = trim_dup(key);
  if (!k) return SD_ERR_NOMEM;
  sd_status st = sd_config_set(cfg, k, eq + 1, origin);
  free(k);
  return st;
}

/* ---- YAML ------------------------------------------------------------------------------- */

static const char *node_kind(yaml_node_t *n) {
  switch (n->type) {
  case YAML_SCALAR_NODE: return "a scalar";
  case YAML_SEQUENCE_NODE: return "a list";
  case YAML_MAPPING_NODE: return "a mapping";
  default: return "empty";
  }
}

static sd_status apply_node(sd_config *cfg, yaml_document_t *doc, const char *key,
                            yaml_node_t *val, const char *origin) {
  int ki = key_index(key);
  char where[512];
  snprintf(where, sizeof where, "%s line %lu", origin, (unsigned long)val->start_mark.line + 1);
  if (ki < 0) return unknown_key(key, where);
  const sd_config_key *k = &sd_config_schema[ki];
  if (val->type == YAML_SCALAR_NODE) {
    return set_scalar(cfg, ki, (const char *)val->data.scalar.value, where);
  }
  if (val->type == YAML_SEQUENCE_NODE && k->type == SD_CONFIG_TYPE_STRING_LIST) {
    /* join items with commas after checking none contains one */
    size_t cap = 1;
    for (yaml_node_item_t *it = val->data.sequence.items.start; it < val->data.sequence.items.top;
         it++) {
      yaml_node_t *item = yaml_document_get_node(doc, *it);
      if (!item || item->type != YAML_SCALAR_NODE)
        return SD_ERROR(SD_ERR_CONFIG, "%s: %s: list items must be scalars, got %s", where,
                        k->name, item ? node_kind(item) : "nothing");
      if (strchr((const char *)item->data.scalar.value, ','))
        return SD_ERROR(SD_ERR_CONFIG, "%s: %s: list item '%s' must not contain a comma", where,
                        k->name, (const char *)item->data.scalar.value);
      cap += strlen((const char *)item->data.scalar.value) + 1;
    }
    char *joined = sd_malloc(cap, 1, "config list");
    if (!joined) return SD_ERR_NOMEM;
    joined[0] = '\0';
    for (yaml_node_item_t *it = val->data.sequence.items.start; it < val->data.sequence.items.top;
         it++) {
      yaml_node_t *item = yaml_document_get_node(doc, *it);
      if (joined[0]) strcat(joined, ",");
      strcat(joined, (const char *)item->data.scalar.value);
    }
    sd_status st = set_scalar(cfg, ki, joined, where);
    free(joined);
    return st;
  }
  char allowed[512];
  describe_allowed(k, allowed, sizeof allowed);
  return SD_ERROR(SD_ERR_CONFIG, "%s: %s has the wrong type: got %s, expected %s", where, k->name,
                  node_kind(val), allowed);
}

sd_status sd_config_load_string(sd_config *cfg, const char *text, const char *origin) {
  yaml_parser_t parser;
  yaml_document_t doc;
  if (!yaml_parser_initialize(&parser)) return SD_ERROR(SD_ERR_NOMEM, "cannot start YAML parser");
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
  if (!yaml_parser_load(&parser, &doc)) {
    sd_status st = SD_ERROR(SD_ERR_CONFIG, "%s line %lu column %lu: YAML syntax error: %s%s%s",
                            origin, (unsigned long)parser.problem_mark.line + 1,
                            (unsigned long)parser.problem_mark.column + 1,
                            parser.problem ? parser.problem : "unknown",
                            parser.context ? " " : "", parser.context ? parser.context : "");
    yaml_parser_delete(&parser);
    return st;
  }
  sd_status st = SD_OK;
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  if (!root) goto done; /* empty document: nothing to apply */
  if (root->type == YAML_SCALAR_NODE && root->data.scalar.length == 0) goto done;
  if (root->type != YAML_MAPPING_NODE) {
    st = SD_ERROR(SD_ERR_CONFIG, "%s: expected a mapping of sections (e.g. 'simulate:'), got %s",
                  origin, node_kind(root));
    goto done;
  }
  for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
       p++) {
    yaml_node_t *kn = yaml_document_get_node(&doc, p->key);
    yaml_node_t *vn = yaml_document_get_node(&doc, p->value);
    if (kn->type != YAML_SCALAR_NODE) {
      st = SD_ERROR(SD_ERR_CONFIG, "%s line %lu: section names must be scalars", origin,
                    (unsigned long)kn->start_mark.line + 1);
      goto done;
    }
    const char *section = (const char *)kn->data.scalar.value;
    if (!section_exists(section)) {
      char where[512];
      snprintf(where, sizeof where, "%s line %lu", origin, (unsigned long)kn->start_mark.line + 1);
      char secs[1024];
      list_sections(secs, sizeof secs);
      st = SD_ERROR(SD_ERR_CONFIG, "%s: unknown configuration section '%s' (allowed sections: %s)",
                    where, section, secs);
      goto done;
    }
    if (vn->type == YAML_SCALAR_NODE && vn->data.scalar.length == 0) continue; /* "section:" */
    if (vn->type != YAML_MAPPING_NODE) {
      st = SD_ERROR(SD_ERR_CONFIG, "%s line %lu: section '%s' must be a mapping of keys, got %s",
                    origin, (unsigned long)vn->start_mark.line + 1, section, node_kind(vn));
      goto done;
    }
    for (yaml_node_pair_t *q = vn->data.mapping.pairs.start; q < vn->data.mapping.pairs.top; q++) {
      yaml_node_t *k2 = yaml_document_get_node(&doc, q->key);
      yaml_node_t *v2 = yaml_document_get_node(&doc, q->value);
      if (k2->type != YAML_SCALAR_NODE) {
        st = SD_ERROR(SD_ERR_CONFIG, "%s line %lu: keys must be scalars", origin,
                      (unsigned long)k2->start_mark.line + 1);
        goto done;
      }
      char key[512];
      snprintf(key, sizeof key, "%s.%s", section, (const char *)k2->data.scalar.value);
      st = apply_node(cfg, &doc, key, v2, origin);
      if (st != SD_OK) goto done;
    }
  }
done:
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  return st;
}

sd_status sd_config_create(sd_config **out) {
  *out = NULL;
  sd_config *cfg = sd_calloc(1, sizeof *cfg, "config");
  if (!cfg) return SD_ERR_NOMEM;
  cfg->nkeys = schema_count();
  cfg->values = sd_calloc((size_t)cfg->nkeys, sizeof *cfg->values, "config values");
  if (!cfg->values) {
    free(cfg);
    return SD_ERR_NOMEM;
  }
  sd_status st = sd_config_load_string(cfg, sd_defaults_yaml, "defaults (config/defaults.yaml)");
  if (st == SD_OK) {
    for (int i = 0; i < cfg->nkeys; i++) {
      if (!cfg->values[i].set) {
        st = SD_ERROR(SD_ERR_INTERNAL, "config/defaults.yaml has no default for %s",
                      sd_config_schema[i].name);
        break;
      }
    }
  }
  if (st != SD_OK) {
    sd_config_destroy(&cfg);
    return st;
  }
  *out = cfg;
  return SD_OK;
}

/* ---- getters ---------------------------------------------------------------------------- */

static const sd_config_value *get(const sd_config *cfg, const char *key, sd_config_type type) {
  int ki = key_index(key);
  if (ki < 0 || sd_config_schema[ki].type != type) {
    int enum_as_string = ki >= 0 && type == SD_CONFIG_TYPE_STRING &&
                         sd_config_schema[ki].type == SD_CONFIG_TYPE_ENUM;
    int int_as_float = ki >= 0 && type == SD_CONFIG_TYPE_FLOAT &&
                       (sd_config_schema[ki].type == SD_CONFIG_TYPE_INT ||
                        sd_config_schema[ki].type == SD_CONFIG_TYPE_FLOAT_AUTO);
    int scalar_text = ki >= 0 && type == SD_CONFIG_TYPE_STRING &&
                      sd_config_schema[ki].type != SD_CONFIG_TYPE_STRING_LIST;
    if (!enum_as_string && !int_as_float && !scalar_text) {
      fprintf(stderr, "stemdefect: internal error: config key %s read with the wrong type\n", key);
      abort();
    }
  }
  return &cfg->values[ki];
}

int64_t sd_config_int(const sd_config *cfg, const char *key) {
  return get(cfg, key, SD_CONFIG_TYPE_INT)->i;
}
double sd_config_float(const sd_config *cfg, const char *key) {
  return get(cfg, key, SD_CONFIG_TYPE_FLOAT)->f;
}
int sd_config_bool(const sd_config *cfg, const char *key) {
  return get(cfg, key, SD_CONFIG_TYPE_BOOL)->b;
}
const char *sd_config_string(const sd_config *cfg, const char *key) {
  return get(cfg, key, SD_CONFIG_TYPE_STRING)->text;
}
int sd_config_list_length(const sd_config *cfg, const char *key) {
  return get(cfg, key, SD_CONFIG_TYPE_STRING_LIST)->nlist;
}
const char *sd_config_list_item(const sd_config *cfg, const char *key, int i) {
  const sd_config_value *v = get(cfg, key, SD_CONFIG_TYPE_STRING_LIST);
  return (i >= 0 && i < v->nlist) ? v->list[i] : NULL;
}
const char *sd_config_origin(const sd_config *cfg, const char *key) {
  int ki = key_index(key);
  return ki < 0 ? "" : cfg->values[ki].origin;
}

/* ---- dump ------------------------------------------------------------------------------- */

static int needs_quotes(const char *s) {
  if (!*s) return 1;
  if (strpbrk(s, ":#{}[],&*!|>'\"%@`") || isspace((unsigned char)s[0])) return 1;
  return 0;
}

static void emit(char **buf, size_t *len, size_t *cap, const char *fmt, ...) {
  va_list ap;
  for (;;) {
    va_start(ap, fmt);
    int n = vsnprintf(*buf ? *buf + *len : NULL, *buf ? *cap - *len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (*buf && *len + (size_t)n < *cap) {
      *len += (size_t)n;
      return;
    }
    size_t ncap = (*cap ? *cap * 2 : 1024) + (size_t)n;
    char *nb = realloc(*buf, ncap);
    if (!nb) return;
    *buf = nb;
    *cap = ncap;
  }
}

char *sd_config_to_yaml(const sd_config *cfg, const char *only) {
  char *buf = NULL;
  size_t len = 0, cap = 0;
  emit(&buf, &len, &cap, "%s", "");
  char cur[128] = "";
  for (int i = 0; i < cfg->nkeys; i++) {
    const char *name = sd_config_schema[i].name;
    const char *dot = strchr(name, '.');
    char section[128];
    snprintf(section, sizeof section, "%.*s", (int)(dot - name), name);
    if (only && strcmp(only, section) != 0) continue;
    if (strcmp(section, cur) != 0) {
      emit(&buf, &len, &cap, "%s:\n", section);
      snprintf(cur, sizeof cur, "%s", section);
    }
    const sd_config_value *v = &cfg->values[i];
    if (sd_config_schema[i].type == SD_CONFIG_TYPE_STRING_LIST) {
      emit(&buf, &len, &cap, "  %s: [", dot + 1);
      for (int j = 0; j < v->nlist; j++)
        emit(&buf, &len, &cap, needs_quotes(v->list[j]) ? "%s\"%s\"" : "%s%s", j ? ", " : "",
             v->list[j]);
      emit(&buf, &len, &cap, "]\n");
    } else if (sd_config_schema[i].type == SD_CONFIG_TYPE_STRING) {
      emit(&buf, &len, &cap, needs_quotes(v->text) ? "  %s: \"%s\"\n" : "  %s: %s\n", dot + 1,
           v->text);
    } else {
      emit(&buf, &len, &cap, "  %s: %s\n", dot + 1, v->text);
    }
  }
  return buf;
}
