#!/usr/bin/env bash
# jobs/scaling-study.sh - strong and weak scaling of every stage of `stemdefect run` over rank
# counts, locally with mpirun or as a Slurm job array (jobs/scaling.sbatch), then one CSV and
# PNG plots of speedup and efficiency with the ideal line (`stemdefect scaling`).
#
#   jobs/scaling-study.sh [--mode strong|weak|both] [--config FILE] [--out DIR]
#                         [--per-rank N] [--count N] [--oversubscribe] [--slurm] RANKS...
#
# RANKS      rank counts, e.g. 1 2 4 (default 1 2)
# --mode     strong: the same simulated set at every rank count (simulate.count = --count,
#            default from the config); weak: --per-rank images per rank (default 256); both
# --oversubscribe  allow more ranks than cores (such rows are marked in the CSV)
# --out      study directory (default runs/scaling); runs go to DIR/<mode>-<P>/
# --slurm    submit a job array per mode (jobs/scaling.sbatch, one task per rank count, sized for
#            the largest) and a dependent job that collects the CSV and plots; prints the job ids
#            (extra sbatch options: SD_SBATCH_SCALING="-p batch -A proj")
# Results: DIR/scaling.csv, DIR/speedup.png, DIR/efficiency.png.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/setup.sh"

mode=both
config="$SD_ROOT/config/scaling.yaml"
out="$SD_ROOT/runs/scaling"
per_rank=256
count=""
over=0
slurm=0
ranks=()
while [ $# -gt 0 ]; do
  case "$1" in
    --mode) mode="$2"; shift ;;
    --config) config="$2"; shift ;;
    --out) out="$2"; shift ;;
    --per-rank) per_rank="$2"; shift ;;
    --count) count="$2"; shift ;;
    --oversubscribe) over=1 ;;
    --slurm) slurm=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    -*) echo "jobs/scaling-study.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) ranks+=("$1") ;;
  esac
  shift
done
[ ${#ranks[@]} -gt 0 ] || ranks=(1 2)
case "$mode" in strong|weak|both) ;; *) echo "jobs/scaling-study.sh: --mode must be strong, weak or both, got '$mode'" >&2; exit 2 ;; esac
for p in "${ranks[@]}"; do
  case "$p" in ''|*[!0-9]*|0) echo "jobs/scaling-study.sh: rank counts must be positive numbers, got '$p'" >&2; exit 2 ;; esac
done
[ -f "$config" ] || { echo "jobs/scaling-study.sh: no such config file: $config" >&2; exit 2; }
config=$(cd "$(dirname "$config")" && pwd)/$(basename "$config")
cores=$(nproc)

if [ -z "${SD_BINARY:-}" ]; then
  sd_setup_packages $SD_BUILD_PACKAGES
  sd_setup_build
  SD="$SD_BUILD_DIR/stemdefect"
else
  SD="$SD_BINARY"
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
modes=()
[ "$mode" = both ] && modes=(strong weak) || modes=("$mode")
if [ $slurm -eq 1 ]; then
  command -v sbatch >/dev/null || { echo "jobs/scaling-study.sh: --slurm needs sbatch on PATH" >&2; exit 2; }
  maxp=0
  for p in "${ranks[@]}"; do [ "$p" -gt "$maxp" ] && maxp=$p; done
  ids=()
  dirs=()
  for m in "${modes[@]}"; do
    # shellcheck disable=SC2086
    id=$(SD_BIN="$SD" sbatch --parsable --array=0-$((${#ranks[@]} - 1)) --ntasks="$maxp" \
      -o "$out/scaling-$m-%A_%a.out" ${SD_SBATCH_SCALING:-} "$SD_ROOT/jobs/scaling.sbatch" \
      "$m" "$out" "$config" "$per_rank" "${count:--}" "${ranks[@]}") || exit 1
    ids+=("$id")
    for p in "${ranks[@]}"; do dirs+=("$out/$m-$p"); done
  done
  dep=$(IFS=:; echo "${ids[*]}")
  # each task gets an allocation of maxp tasks: no rank count is oversubscribed (--cores maxp)
  # shellcheck disable=SC2086
  cid=$(sbatch --parsable --dependency="afterok:$dep" --kill-on-invalid-dep=yes -n 1 \
    -J sd-scaling-collect -o "$out/scaling-collect-%j.out" ${SD_SBATCH_SCALING:-} \
    --wrap "'$SD' scaling --output '$out' --cores $maxp ${dirs[*]}") || exit 1
  echo "scaling arrays: ${ids[*]}; collector: $cid (afterok); results in $out"
  echo "$cid"
  exit 0
fi
dirs=()
for m in "${modes[@]}"; do
  for p in "${ranks[@]}"; do
    if [ "$p" -gt "$cores" ] && [ $over -eq 0 ] && [ -z "${SLURM_JOB_ID:-}" ]; then
      echo "jobs/scaling-study.sh: $p ranks > $cores cores: add --oversubscribe to run it anyway (marked in the CSV)" >&2
      exit 2
    fi
    d="$out/$m-$p"
    set_count=()
    if [ "$m" = weak ]; then set_count=(--set "simulate.count=$((per_rank * p))")
    elif [ -n "$count" ]; then set_count=(--set "simulate.count=$count"); fi
    sd_log "scaling: $m, $p rank(s) -> $d"
    # one thread per rank: the study measures the MPI decomposition
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
      mpirun -n "$p" "$SD" run --config "$config" --dir "$d" --force "${set_count[@]}" --quiet
    dirs+=("$d")
  done
done
"$SD" scaling --output "$out" --cores "$cores" "${dirs[@]}"
sd_log "scaling: $out/scaling.csv, $out/speedup.png, $out/efficiency.png"
