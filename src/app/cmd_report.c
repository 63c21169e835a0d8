/* cmd_report.c - `stemdefect report`: the HTML study report of a run directory (rank 0
 * writes it; the other ranks wait for the agreed status). */
#include "app.h"
#include "stemdefect/log.h"
#include "stemdefect/par.h"
#include "stemdefect/profile.h"
#include "stemdefect/report.h"

static const sd_cli_option report_options[] = {
    {"--run", "report.run", "DIR", NULL, 0},
    {"--output", "report.output", "FILE", NULL, 0},
    {"--title", "report.title", "TEXT", NULL, 0},
    {NULL, NULL, NULL, NULL, 0}};

static sd_status report_run(sd_app *app) {
  sd_report_opts o = {sd_config_string(app->cfg, "report.run"), sd_config_string(app->cfg, "report.output"),
                      sd_config_string(app->cfg, "report.title"), (int)sd_config_int(app->cfg, "report.examples"),
                      (int)sd_config_int(app->cfg, "report.samples")};
  if (!*o.run_dir) return SD_ERROR(SD_ERR_ARG, "no run directory: give --run DIR");
  sd_profile_stage_begin("report");
  int figures = 0;
  double t = sd_profile_phase_begin();
  sd_status st = app->rank == 0 ? sd_report_write(&o, &figures) : SD_OK;
  sd_profile_phase_end(SD_PHASE_IO, t);
  sd_profile_stage_end(1);
  SD_CHECK(sd_par_agree(app->comm, st));
  sd_log_info("report: %s written (%d figures)", o.output, figures);
  return SD_OK;
}

const sd_command sd_cmd_report = {
    .name = "report",
    .summary = "write the HTML study report of a run directory",
    .usage = "--run DIR --output report.html [--title TEXT]",
    .description =
        "One self-contained HTML page (figures embedded) from what the run directory holds:\n"
        "dataset summary and samples, classifier metrics and confusion matrix, pseudo-label and\n"
        "U-Net quality, heatmap overlays, silhouette curve, clusters with their mean descriptors\n"
        "and example patches, the t-SNE map, per-stage timings and provenance. Sections whose\n"
        "stage has not run say so.",
    .sections = "report,general",
    .positional_key = NULL,
    .options = report_options,
    .run = report_run,
};
