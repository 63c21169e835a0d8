#!/usr/bin/env bash
# jobs/run-local.sh - the main job on this machine: install what is missing, build, then run
# the whole study with `stemdefect run` under mpirun, and print where the report is.
#
#   jobs/run-local.sh [--config FILE] [--ranks N] [--out DIR] [--force] [-- stemdefect options]
#
# --config  study configuration (default config/demo.yaml: simulated CdTe, minutes on 2 cores)
# --ranks   MPI ranks (default 2; more than the cores are oversubscribed)
# --out     run directory (default runs/<config name>)
# --force   re-run every stage even when its outputs are up to date
# Anything after -- goes to `stemdefect run` (e.g. -- --set classifier.epochs=4). Running the
# same command again resumes at the first stage that is missing or out of date.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/setup.sh"

config="$SD_ROOT/config/demo.yaml"
ranks=2
out=""
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --config) config="$2"; shift ;;
    --ranks) ranks="$2"; shift ;;
    --out) out="$2"; shift ;;
    --force) extra+=(--force) ;;
    --) shift; extra+=("$@"); break ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "jobs/run-local.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -f "$config" ] || { echo "jobs/run-local.sh: no such config file: $config" >&2; exit 2; }
case "$ranks" in ''|*[!0-9]*|0) echo "jobs/run-local.sh: --ranks needs a positive number, got '$ranks'" >&2; exit 2 ;; esac
config=$(cd "$(dirname "$config")" && pwd)/$(basename "$config")
name=$(basename "$config" .yaml)
out=${out:-$SD_ROOT/runs/$name}

sd_setup_packages $SD_BUILD_PACKAGES
sd_setup_build
SD="$SD_BUILD_DIR/stemdefect"
mkdir -p "$out"
sd_log "stemdefect $("$SD" --version | cut -d' ' -f2-) - run directory $out, $ranks rank(s)"
cd "$SD_ROOT"
# the cores are shared out between the ranks: OpenBLAS threads beyond that only contend (on a
# busy 2-core machine 2 threads per rank ran many times slower than 1); override to experiment
threads=$(( $(nproc) / ranks )); [ "$threads" -ge 1 ] || threads=1
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-$threads} OMP_NUM_THREADS=${OMP_NUM_THREADS:-$threads}
mpirun -n "$ranks" "$SD" run --config "$config" --dir "$out" "${extra[@]}"
sd_log "done: the report is $out/report.html"
echo "$out/report.html"
