/* cli.c - argument parsing, help, configuration layering and the error/exit policy shared by
 * every command. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include <cblas.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app.h"
#include "stemdefect/log.h"
#include "stemdefect/par.h"
#include "stemdefect/profile.h"
#include "stemdefect/version.h"

static const sd_command *const commands[] = {
    &sd_cmd_import,  &sd_cmd_simulate,    &sd_cmd_info,    &sd_cmd_train,    &sd_cmd_evaluate,
    &sd_cmd_predict, &sd_cmd_pseudolabel, &sd_cmd_segment, &sd_cmd_describe, &sd_cmd_cluster,
    &sd_cmd_embed,   &sd_cmd_report,      &sd_cmd_run,     &sd_cmd_scaling,  NULL};

static const sd_cli_option common_options[] = {
    {"--config", NULL, "FILE", "read options from a YAML study file (command-line options win)", 0},
    {"--set", NULL, "KEY=VALUE", "set any configuration key, e.g. --set simulate.dose_max=800", 1},
    {"--profile", "general.profile", "FILE",
     "write a JSON timing profile (per stage: compute, communication, I/O)", 0},
    {"--verbose", NULL, NULL, "log debug messages", 0},
    {"--quiet", NULL, NULL, "log only warnings and errors", 0},
    {"--help", NULL, NULL, "show this help", 0},
    {NULL, NULL, NULL, NULL, 0}};

static void print_version(void) {
  printf("stemdefect %s (git %s)\n", SD_VERSION, SD_GIT_COMMIT);
}

static void print_main_help(void) {
  printf(
      "stemdefect %s - find, localise and sort defects in atomic-resolution HAADF-STEM images\n\n",
      SD_VERSION);
  printf("usage: [mpirun -n P | srun --mpi=pmix] stemdefect <command> [options]\n\n");
  printf("commands:\n");
  for (int i = 0; commands[i]; i++)
    printf("  %-12s %s\n", commands[i]->name, commands[i]->summary);
  printf("\nglobal options:\n  --help       this help\n  --version    program version and git "
         "commit\n");
  printf("\n`stemdefect <command> --help` lists a command's options and configuration keys.\n");
  printf("Every option can also be set in a YAML file given with --config (see config/).\n");
}

static void print_option(const sd_cli_option *o) {
  char left[64];
  snprintf(left, sizeof left, "%s%s%s", o->flag, o->metavar ? " " : "",
           o->metavar ? o->metavar : "");
  const char *help = o->help;
  if (!help && o->key) {
    const sd_config_key *k = sd_config_find_key(o->key);
    help = k ? k->help : "";
  }
  printf("  %-26s %s", left, help ? help : "");
  if (o->key)
    printf(" [%s]", o->key);
  printf("\n");
}

static void print_command_help(const sd_command *c, const sd_config *cfg) {
  printf("usage: stemdefect %s %s\n\n%s\n", c->name, c->usage, c->summary);
  if (c->description)
    printf("\n%s\n", c->description);
  printf("\noptions:\n");
  for (const sd_cli_option *o = c->options; o->flag; o++)
    print_option(o);
  for (const sd_cli_option *o = common_options; o->flag; o++)
    print_option(o);
  if (c->sections && *c->sections) {
    printf("\nconfiguration keys read (defaults shown; set in --config FILE or with --set):\n");
    char secs[256];
    snprintf(secs, sizeof secs, "%s", c->sections);
    for (char *tok = strtok(secs, ","); tok; tok = strtok(NULL, ",")) {
      size_t tl = strlen(tok);
      for (int i = 0; sd_config_schema[i].name; i++) {
        const sd_config_key *k = &sd_config_schema[i];
        if (strncmp(k->name, tok, tl) || k->name[tl] != '.')
          continue;
        char val[256] = "";
        if (cfg) {
          if (k->type == SD_CONFIG_TYPE_STRING_LIST) {
            int n = sd_config_list_length(cfg, k->name);
            size_t len = 0;
            len += (size_t)snprintf(val + len, sizeof val - len, "[");
            for (int j = 0; j < n && len < sizeof val - 8; j++)
              len += (size_t)snprintf(val + len, sizeof val - len, "%s%s", j ? ", " : "",
                                      sd_config_list_item(cfg, k->name, j));
            snprintf(val + len, sizeof val - len, "]");
          } else if (k->type == SD_CONFIG_TYPE_INT) {
            snprintf(val, sizeof val, "%lld", (long long)sd_config_int(cfg, k->name));
          } else if (k->type == SD_CONFIG_TYPE_FLOAT) {
            snprintf(val, sizeof val, "%g", sd_config_float(cfg, k->name));
          } else if (k->type == SD_CONFIG_TYPE_BOOL) {
            snprintf(val, sizeof val, "%s", sd_config_bool(cfg, k->name) ? "true" : "false");
          } else if (k->type == SD_CONFIG_TYPE_FLOAT_AUTO) {
            snprintf(val, sizeof val, "%s", sd_config_string(cfg, k->name));
          } else {
            snprintf(val, sizeof val, "\"%s\"", sd_config_string(cfg, k->name));
          }
        }
        char range[128] = "";
        if (k->type == SD_CONFIG_TYPE_INT)
          snprintf(range, sizeof range, " (%.0f..%.0f)", k->min, k->max);
        if (k->type == SD_CONFIG_TYPE_FLOAT)
          snprintf(range, sizeof range, " (%g..%g)", k->min, k->max);
        if (k->type == SD_CONFIG_TYPE_FLOAT_AUTO)
          snprintf(range, sizeof range, " (auto or %g..%g)", k->min, k->max);
        if (k->type == SD_CONFIG_TYPE_ENUM)
          snprintf(range, sizeof range, " (%s)", k->allowed);
        printf("  %s = %s%s\n      %s\n", k->name, val, range, k->help);
      }
    }
  }
  printf("\nRun under MPI with `mpirun -n P stemdefect %s ...` or `srun --mpi=pmix ...`.\n",
         c->name);
}

static const sd_cli_option *find_option(const sd_command *c, const char *flag) {
  for (const sd_cli_option *o = c->options; o->flag; o++)
    if (!strcmp(o->flag, flag))
      return o;
  for (const sd_cli_option *o = common_options; o->flag; o++)
    if (!strcmp(o->flag, flag))
      return o;
  return NULL;
}

/* Appends value to a list key, given the current list (command-line occurrences accumulate;
 * the first command-line occurrence replaces what the defaults or the file said). */
static sd_status list_append(sd_config *cfg, const char *key, const char *value, int *replaced,
                             int commas_ok) {
  if (!commas_ok && strchr(value, ','))
    return SD_ERROR(SD_ERR_ARG, "command line: %s value '%s' must not contain a comma", key, value);
  size_t cap = strlen(value) + 2;
  int n = *replaced ? sd_config_list_length(cfg, key) : 0;
  for (int i = 0; i < n; i++)
    cap += strlen(sd_config_list_item(cfg, key, i)) + 1;
  char *joined = sd_malloc(cap, 1, "option list");
  if (!joined)
    return SD_ERR_NOMEM;
  joined[0] = '\0';
  for (int i = 0; i < n; i++) {
    strcat(joined, sd_config_list_item(cfg, key, i));
    strcat(joined, ",");
  }
  strcat(joined, value);
  sd_status st = sd_config_set(cfg, key, joined, "command line");
  free(joined);
  *replaced = 1;
  return st;
}

/* Reads a file on rank 0 and broadcasts its text; the status is the same on all ranks. */
static sd_status read_text_file_bcast(MPI_Comm comm, const char *path, char **text) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  sd_status st = SD_OK;
  *text = NULL;
  if (rank == 0) {
    FILE *f = fopen(path, "rb");
    if (!f) {
      st = SD_ERROR(SD_ERR_IO, "cannot read configuration file %s: %s", path, strerror(errno));
    } else {
      size_t cap = 4096, len = 0;
      char *buf = sd_malloc(cap, 1, "config text");
      while (buf) {
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0)
          break;
        if (len + 1 >= cap) {
          char *nb = sd_realloc(buf, cap * 2, 1, "config text");
          if (!nb) {
            free(buf);
            buf = NULL;
            break;
          }
          buf = nb;
          cap *= 2;
        }
      }
      fclose(f);
      if (!buf)
        st = SD_ERR_NOMEM;
      else {
        buf[len] = '\0';
        *text = buf;
      }
    }
  }
  st = sd_par_agree(comm, st);
  if (st != SD_OK)
    return st;
  return sd_par_bcast_string(comm, text, 0);
}

static int exit_code_for(sd_status st) {
  switch (st) {
  case SD_OK: return SD_EXIT_OK;
  case SD_ERR_ARG:
  case SD_ERR_CONFIG: return SD_EXIT_USAGE;
  case SD_ERR_INTERRUPTED: return SD_EXIT_REQUEUE;
  default: return SD_EXIT_FAILURE;
  }
}

static char *join_argv(int argc, char **argv) {
  size_t cap = 1;
  for (int i = 0; i < argc; i++)
    cap += strlen(argv[i]) + 3;
  char *s = malloc(cap);
  if (!s)
    return NULL;
  s[0] = '\0';
  for (int i = 0; i < argc; i++) {
    if (i)
      strcat(s, " ");
    int q = strchr(argv[i], ' ') != NULL || argv[i][0] == '\0';
    if (q)
      strcat(s, "'");
    strcat(s, argv[i]);
    if (q)
      strcat(s, "'");
  }
  return s;
}

/* Threads per rank (OpenBLAS and the nn engine): OPENBLAS_NUM_THREADS, GOTO_NUM_THREADS or
 * OMP_NUM_THREADS when one is set (as the Slurm jobs do); otherwise the node's online cores
 * shared among the ranks on that node, so `mpirun -n 2` on 2 cores does not run 4 threads,
 * and at most the CPUs the rank may run on (mpirun -n 1 and -n 2 bind each rank to one core:
 * two threads there would share it). */
static int default_threads(MPI_Comm comm) {
  if (getenv("OPENBLAS_NUM_THREADS") || getenv("GOTO_NUM_THREADS") || getenv("OMP_NUM_THREADS"))
    return openblas_get_num_threads();
  MPI_Comm node;
  int local = 1;
  if (MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
    MPI_Comm_size(node, &local);
    MPI_Comm_free(&node);
  }
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  int t = cores > 0 ? (int)(cores / (local > 0 ? local : 1)) : 1;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int allowed = CPU_COUNT(&set);
    if (allowed > 0 && allowed < t)
      t = allowed;
  }
  if (t < 1)
    t = 1;
  openblas_set_num_threads(t);
  return t;
}

int sd_app_main(MPI_Comm comm, int argc, char **argv) {
  sd_app app;
  memset(&app, 0, sizeof app);
  app.comm = comm;
  MPI_Comm_rank(comm, &app.rank);
  MPI_Comm_size(comm, &app.size);
  sd_log_init(app.rank, app.size, SD_LOG_LEVEL_INFO);
  sd_profile_reset();
  const int threads = default_threads(comm);

  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
      !strcmp(argv[1], "help")) {
    if (app.rank == 0)
      print_main_help();
    return argc < 2 ? SD_EXIT_USAGE : SD_EXIT_OK;
  }
  if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
    if (app.rank == 0)
      print_version();
    return SD_EXIT_OK;
  }
  for (int i = 0; commands[i]; i++)
    if (!strcmp(commands[i]->name, argv[1]))
      app.cmd = commands[i];
  if (!app.cmd) {
    if (app.rank == 0) {
      fprintf(stderr, "stemdefect: unknown command '%s'; commands are:", argv[1]);
      for (int i = 0; commands[i]; i++)
        fprintf(stderr, " %s", commands[i]->name);
      fprintf(stderr, "\n(see stemdefect --help)\n");
    }
    return SD_EXIT_USAGE;
  }

  sd_status st = sd_config_create(&app.cfg);
  char *cfg_text = NULL;
  int want_help = 0;
  if (st == SD_OK) {
    /* pass 1: --help, --config, log switches */
    const char *cfg_path = NULL;
    for (int i = 2; i < argc; i++) {
      if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
        want_help = 1;
      else if (!strcmp(argv[i], "--config")) {
        if (i + 1 >= argc) {
          st = SD_ERROR(SD_ERR_ARG, "option --config needs a value (FILE)");
          break;
        }
        cfg_path = argv[++i];
      }
    }
    app.config_path = cfg_path;
    if (st == SD_OK && cfg_path) {
      st = read_text_file_bcast(comm, cfg_path, &cfg_text);
      if (st == SD_OK)
        st = sd_config_load_string(app.cfg, cfg_text, cfg_path);
    }
  }
  /* pass 2: everything else, in order (command line wins over the file) */
  int verbose = 0, quiet = 0;
  const char *replaced_keys[64];
  int nreplaced = 0;
  for (int i = 2; st == SD_OK && i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h"))
      continue;
    if (!strcmp(a, "--config")) {
      i++;
      continue;
    }
    if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
      verbose = 1;
      continue;
    }
    if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
      quiet = 1;
      continue;
    }
    char flag[128];
    const char *inline_val = NULL;
    const char *eq = (a[0] == '-' && a[1] == '-') ? strchr(a, '=') : NULL;
    if (eq) {
      snprintf(flag, sizeof flag, "%.*s", (int)(eq - a), a);
      inline_val = eq + 1;
    } else {
      snprintf(flag, sizeof flag, "%s", a);
    }
    if (a[0] != '-' || !a[1]) {
      if (!app.cmd->positional_key) {
        st = SD_ERROR(SD_ERR_ARG, "unexpected argument '%s' (see stemdefect %s --help)", a,
                      app.cmd->name);
        break;
      }
      int rep = 0;
      for (int k = 0; k < nreplaced; k++)
        rep |= !strcmp(replaced_keys[k], app.cmd->positional_key);
      st = list_append(app.cfg, app.cmd->positional_key, a, &rep, 0);
      if (st == SD_OK && nreplaced < 64)
        replaced_keys[nreplaced++] = app.cmd->positional_key;
      continue;
    }
    const sd_cli_option *o = find_option(app.cmd, flag);
    if (!o) {
      st = SD_ERROR(SD_ERR_ARG, "unknown option '%s' for '%s' (see stemdefect %s --help)", flag,
                    app.cmd->name, app.cmd->name);
      break;
    }
    const char *val = inline_val;
    if (o->metavar && !val) {
      if (i + 1 >= argc) {
        st = SD_ERROR(SD_ERR_ARG, "option %s needs a value (%s)", o->flag, o->metavar);
        break;
      }
      val = argv[++i];
    }
    if (!o->metavar && inline_val) {
      st = SD_ERROR(SD_ERR_ARG, "option %s takes no value", o->flag);
      break;
    }
    if (!strcmp(o->flag, "--set")) {
      st = sd_config_set_assignment(app.cfg, val, "command line (--set)");
      continue;
    }
    if (!o->key)
      continue; /* command-specific switch without a key: read by the command */
    const sd_config_key *k = sd_config_find_key(o->key);
    if (k && k->type == SD_CONFIG_TYPE_STRING_LIST && o->repeatable) {
      int rep = 0;
      for (int q = 0; q < nreplaced; q++)
        rep |= !strcmp(replaced_keys[q], o->key);
      st = list_append(app.cfg, o->key, val, &rep, o->repeatable == 2);
      if (st == SD_OK && nreplaced < 64)
        replaced_keys[nreplaced++] = o->key;
    } else {
      char where[160];
      snprintf(where, sizeof where, "command line (%s)", o->flag);
      st = sd_config_set(app.cfg, o->key, o->metavar ? val : "true", where);
    }
  }
  free(cfg_text);

  if (st == SD_OK && want_help) {
    if (app.rank == 0)
      print_command_help(app.cmd, app.cfg);
    sd_config_destroy(&app.cfg);
    return SD_EXIT_OK;
  }

  if (st == SD_OK) {
    const char *lvl = sd_config_string(app.cfg, "general.log_level");
    sd_log_level level = !strcmp(lvl, "error")   ? SD_LOG_LEVEL_ERROR
                         : !strcmp(lvl, "warn")  ? SD_LOG_LEVEL_WARN
                         : !strcmp(lvl, "debug") ? SD_LOG_LEVEL_DEBUG
                                                 : SD_LOG_LEVEL_INFO;
    if (verbose)
      level = SD_LOG_LEVEL_DEBUG;
    if (quiet)
      level = SD_LOG_LEVEL_WARN;
    sd_log_set_level(level);
    app.command_line = join_argv(argc, argv);
    app.config_yaml = sd_config_to_yaml(app.cfg, NULL);
    app.prov.command = app.cmd->name;
    app.prov.command_line = app.command_line;
    app.prov.config_yaml = app.config_yaml;
    sd_log_debug("stemdefect %s (git %s), %d rank(s) x %d thread(s): %s", SD_VERSION, SD_GIT_COMMIT,
                 app.size, threads, app.command_line ? app.command_line : "");
    st = app.cmd->run(&app);
    /* every command returns a status agreed over ranks; agree once more in case one did not */
    st = sd_par_agree(comm, st);
  }

  if (st == SD_OK) {
    const char *prof = sd_config_string(app.cfg, "general.profile");
    if (prof && *prof) {
      st = sd_profile_write(comm, prof, app.cmd->name, NULL);
      if (st == SD_OK)
        sd_log_info("profile written to %s", prof);
    }
  }
  if (st == SD_ERR_INTERRUPTED && app.rank == 0) {
    fprintf(stderr, "stemdefect %s: stopped: %s (exit code %d%s)\n", app.cmd->name,
            sd_error_message(), SD_EXIT_REQUEUE,
            strcmp(app.cmd->name, "run") ? ": resume with --resume" : "");
  } else if (st != SD_OK && app.rank == 0) {
    fprintf(stderr, "stemdefect %s: error: %s\n", app.cmd->name, sd_error_message());
    if (sd_log_get_level() >= SD_LOG_LEVEL_DEBUG && sd_error_where()[0])
      fprintf(stderr, "trace:\n%s\n", sd_error_where());
    if (st == SD_ERR_ARG)
      fprintf(stderr, "(see stemdefect %s --help)\n", app.cmd->name);
  }
  sd_config_destroy(&app.cfg);
  free(app.command_line);
  free(app.config_yaml);
  return exit_code_for(st);
}
