#!/usr/bin/env bash
# jobs/transfer-study.sh - what pretraining buys: test accuracy and macro-F1 of the classifier
# trained with 10%, 30% and 100% of the real training labels, from scratch and pretrained on
# simulated images (config/<material>.yaml), on the stratified split; plus the CdTe model
# fine-tuned on SrTiO3. Prints a markdown table.
#
#   jobs/transfer-study.sh [--data DIR] [--ranks N] [--out DIR] [--epochs E]
# --data   the real data folder (default ../shared/data/stem-real)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/setup.sh"
data="$SD_ROOT/../shared/data/stem-real"
ranks=2
out="$SD_ROOT/runs/transfer-study"
epochs=""
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data="$2"; shift ;;
    --ranks) ranks="$2"; shift ;;
    --out) out="$2"; shift ;;
    --epochs) epochs="$2"; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "jobs/transfer-study.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ -d "$data/CdTe" ] || { echo "jobs/transfer-study.sh: no real data under $data" >&2; exit 2; }
sd_setup_packages $SD_BUILD_PACKAGES
sd_setup_build
SD="$SD_BUILD_DIR/stemdefect"
mkdir -p "$out"
run() { mpirun -n "$ranks" "$SD" "$@"; }
extra=()
[ -n "$epochs" ] && extra+=(--epochs "$epochs")
row() { # material frac mode model
  local m=$1 f=$2 mode=$3 model=$4
  local acc f1
  acc=$(sed -n 's/.*"accuracy": \([0-9.]*\).*/\1/p' "$model.json")
  f1=$(sed -n 's/.*"macro_f1": \([0-9.]*\).*/\1/p' "$model.json")
  printf '| %s | %s | %s | %.3f | %.3f |\n' "$m" "$f" "$mode" "$acc" "$f1" | tee -a "$out/table.md"
}
printf '| data | training labels | start | test accuracy | test macro-F1 |\n|---|---|---|---|---|\n' > "$out/table.md"
for m in cdte sto; do
  dir=CdTe; [ $m = sto ] && dir=STO
  [ -f "$out/$m.h5" ] || run import --input "$data/$dir" --output "$out/$m.h5" --quiet
  for f in 0.1 0.3 1; do
    for mode in scratch pretrained; do
      model="$out/${m}_${mode}_$f"
      pre=(--set classifier.pretrain_count=0)
      [ $mode = pretrained ] && pre=()
      if [ ! -f "$model.h5" ]; then
        sd_log "$m: $mode, label fraction $f"
        run train --task classify --config "$SD_ROOT/config/$m.yaml" --data "$out/$m.h5" \
          --output "$model.h5" --set classifier.label_fraction=$f "${pre[@]}" "${extra[@]}" --quiet
      fi
      run evaluate --model "$model.h5" --data "$out/$m.h5" --output "$model.json" --quiet >/dev/null
      row "$m" "$f" "$mode" "$model"
    done
  done
done
# the CdTe model fine-tuned on SrTiO3
for f in 0.1 1; do
  model="$out/sto_from_cdte_$f"
  if [ ! -f "$model.h5" ]; then
    run train --task classify --config "$SD_ROOT/config/sto.yaml" --data "$out/sto.h5" --output "$model.h5" \
      --init "$out/cdte_pretrained_1.h5" --set classifier.pretrain_count=0 \
      --set classifier.label_fraction=$f "${extra[@]}" --quiet
  fi
  run evaluate --model "$model.h5" --data "$out/sto.h5" --output "$model.json" --quiet >/dev/null
  row sto "$f" "CdTe model" "$model"
done
sd_log "table in $out/table.md"
cat "$out/table.md"
