#!/usr/bin/env bash
# jobs/run-local.sh - the main job on this machine: install what is missing, build, then run
# the pipeline with mpirun.
#
#   jobs/run-local.sh [--config FILE] [--ranks N] [--data DIR] [--out DIR]
#
# --config  study configuration (default config/demo.yaml: simulated CdTe)
# --ranks   MPI ranks (default 2)
# --data    also import a folder of real images, e.g. ../shared/data/stem-real/CdTe
# --out     run directory (default runs/<config name>)
# Stages so far: simulate the dataset (+ preview montage), train and evaluate the defect
# classifier on it, import the real folder if given, and print a summary of each stack.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/setup.sh"

config="$SD_ROOT/config/demo.yaml"
ranks=2
data=""
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --config) config="$2"; shift ;;
    --ranks) ranks="$2"; shift ;;
    --data) data="$2"; shift ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "jobs/run-local.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -f "$config" ] || { echo "jobs/run-local.sh: no such config file: $config" >&2; exit 2; }
config=$(cd "$(dirname "$config")" && pwd)/$(basename "$config")
name=$(basename "$config" .yaml)
out=${out:-$SD_ROOT/runs/$name}

sd_setup_packages $SD_BUILD_PACKAGES
sd_setup_build
SD="$SD_BUILD_DIR/stemdefect"
mkdir -p "$out"
run() { sd_log "mpirun -n $ranks stemdefect $*"; mpirun -n "$ranks" "$SD" "$@"; }

sd_log "stemdefect $("$SD" --version | cut -d' ' -f2-) - run directory $out"
run simulate --config "$config" --output "$out/sim.h5" --preview "$out/sim_preview.png" \
  --profile "$out/profile_simulate.json"
"$SD" info "$out/sim.h5"
run train --task classify --config "$config" --data "$out/sim.h5" --output "$out/classifier.h5" \
  --profile "$out/profile_train.json"
run evaluate --config "$config" --model "$out/classifier.h5" --data "$out/sim.h5" \
  --output "$out/classifier_metrics.json"
if [ -n "$data" ]; then
  run import --config "$config" --input "$data" --output "$out/real.h5" \
    --profile "$out/profile_import.json"
  "$SD" info "$out/real.h5"
fi
sd_log "done: stacks and previews are in $out"
ls -l "$out"
