/* app.h - the command-line front end: commands, their options, and the shared run context.
 *
 * Every command is a table entry: its options map onto configuration keys (so every option
 * can also come from a YAML file), plus the common options --config, --set, --profile,
 * --verbose, --quiet, --help. All ranks parse the same argv; a configuration file is read on
 * rank 0 and broadcast, so a bad option or file is a collective error: rank 0 prints one
 * message and every rank exits with the same code.
 */
#ifndef STEMDEFECT_APP_H
#define STEMDEFECT_APP_H

#include <mpi.h>

#include "stemdefect/config.h"
#include "stemdefect/stack.h"
#include "stemdefect/status.h"

typedef struct sd_cli_option {
  const char *flag;    /* "--count" */
  const char *key;     /* config key it sets ("simulate.count"), or NULL for a flag handled by the command */
  const char *metavar; /* "N"; NULL for a switch (sets the key to true) */
  const char *help;    /* one line; the schema's help is used when NULL */
  int repeatable;      /* list keys: each occurrence appends (2: and may itself be a comma list) */
} sd_cli_option;

struct sd_app;
typedef struct sd_command {
  const char *name;
  const char *summary;
  const char *usage;             /* "--input PATH... --output stack.h5 [--labels ...]" */
  const char *description;       /* a paragraph for --help */
  const char *sections;          /* config sections read, comma separated */
  const char *positional_key;    /* list key that positional arguments append to, or NULL */
  const sd_cli_option *options;  /* terminated by {NULL} */
  sd_status (*run)(struct sd_app *app);
} sd_command;

typedef struct sd_app {
  MPI_Comm comm;
  int rank, size;
  sd_config *cfg;
  const sd_command *cmd;
  char *command_line; /* argv joined, for provenance */
  sd_provenance prov; /* points into command_line and resolved config */
  char *config_yaml;  /* resolved configuration of the command's sections */
  const char *config_path; /* the --config file, or NULL */
} sd_app;

extern const sd_command sd_cmd_import;
extern const sd_command sd_cmd_simulate;
extern const sd_command sd_cmd_info;
extern const sd_command sd_cmd_train;
extern const sd_command sd_cmd_evaluate;
extern const sd_command sd_cmd_predict;
extern const sd_command sd_cmd_describe;
extern const sd_command sd_cmd_report;
extern const sd_command sd_cmd_run;
extern const sd_command sd_cmd_scaling;
extern const sd_command sd_cmd_cluster;
extern const sd_command sd_cmd_embed; /* Barnes-Hut t-SNE (embed branch) */
extern const sd_command sd_cmd_segment;
extern const sd_command sd_cmd_pseudolabel;

struct sd_sim_params;
/* Simulator parameters from the simulate section (errors name the simulate.* key). */
sd_status sd_simulate_params_from_config(const sd_config *cfg, struct sd_sim_params *p);

/* Runs the front end (called by main between MPI_Init and MPI_Finalize); returns the process
 * exit code, the same on every rank. */
int sd_app_main(MPI_Comm comm, int argc, char **argv);

/* Exit codes */
enum {
  SD_EXIT_OK = 0,
  SD_EXIT_FAILURE = 1,
  SD_EXIT_USAGE = 2,
  SD_EXIT_REQUEUE = 75 /* interrupted by SIGTERM/SIGUSR1 after writing a checkpoint */
};

#endif
