/* report.h - the study report: one self-contained HTML page (figures embedded as PNG data
 * URIs) built from whatever a run directory holds: the stack, classifier metrics, pseudo-label
 * and U-Net quality, heatmap overlays, clusters, embedding, per-stage profiles, provenance.
 * Sections whose inputs are missing say so instead of failing, so a partial run still gets a
 * page. Not collective: one process writes the page. */
#ifndef STEMDEFECT_REPORT_H
#define STEMDEFECT_REPORT_H

#include "stemdefect/status.h"

typedef struct sd_report_opts {
  const char *run_dir;   /* the run directory (files named as `stemdefect run` writes them) */
  const char *output;    /* report.html (written to a temporary name, then renamed) */
  const char *title;     /* page title */
  int examples;          /* example patches per cluster */
  int samples;           /* sample images per class in the dataset section */
} sd_report_opts;

/* Writes the report. Errors name the file that could not be read or written. The number of
 * figures embedded is returned in *figures (may be NULL). */
sd_status sd_report_write(const sd_report_opts *opts, int *figures);

#endif
