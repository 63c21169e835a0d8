#!/usr/bin/env bash
# jobs/submit.sh - submit the pipeline as one Slurm job per stage, chained with
# --dependency=afterok, so long training and cheap analysis get different resources.
#
#   jobs/submit.sh CONFIG [--dir RUNDIR] [--stages a,b,...] [--dry-run] [sbatch options...]
#
# CONFIG     study configuration (e.g. config/demo.yaml)
# --dir      run directory (default runs/<config name>, as `stemdefect run`)
# --stages   comma list, run in the order given (default: every stage `stemdefect run --help`
#            lists; without the program the whole chain data,classify,pseudolabel,segmenter,
#            segment,describe,cluster,embed,report)
# --dry-run  print the sbatch commands instead of submitting
# Anything else is passed to every sbatch call (e.g. -p short -A myproject --qos=normal).
#
# classify and segmenter run jobs/train.sbatch (long, 4 ranks, USR1 before the time limit ->
# checkpoint, requeue, resume); the other stages jobs/stage.sbatch (short, 2 ranks). Their
# #SBATCH lines are defaults; SBATCH_* variables override them, options given here override
# those, then SD_SBATCH_TRAINING / SD_SBATCH_ANALYSIS (per kind of stage) and
# SD_SBATCH_<STAGE> (one stage, e.g. SD_SBATCH_CLASSIFY="--ntasks=16 --time=12:00:00").
# A stage that fails cancels the rest of the chain (--kill-on-invalid-dep=yes).
# Prints one "stage job-id" line per job and writes them to RUNDIR/slurm-jobs.tsv; the job
# logs go to RUNDIR/logs/<stage>-<job id>.out.
set -euo pipefail
SD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export SD_ROOT
# the stages, in order: as the program lists them (`stemdefect run --help`), else the whole
# chain of issue 6
SD_CONTRACT_STAGES="data classify pseudolabel segmenter segment describe cluster embed report"
SD_TRAINING_STAGES="classify segmenter"
sd_bin=${SD_BIN:-}
[ -z "$sd_bin" ] && [ -x "$SD_ROOT/build/stemdefect" ] && sd_bin=$SD_ROOT/build/stemdefect
[ -z "$sd_bin" ] && sd_bin=$(command -v stemdefect 2>/dev/null || true)
SD_ALL_STAGES=""
if [ -n "$sd_bin" ] && [ -x "$sd_bin" ]; then
  SD_ALL_STAGES=$(OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 60 "$sd_bin" run --help 2>/dev/null |
    sed -n 's/.*stages to run (default all, in order): \([a-z, ]*\).*/\1/p' | tr -d ',' | head -n 1) || true
fi
# shellcheck disable=SC2086
SD_ALL_STAGES=$(echo ${SD_ALL_STAGES:-$SD_CONTRACT_STAGES})

die() {
  echo "jobs/submit.sh: $*" >&2
  exit 2
}
usage() { sed -n '2,/^[^#]/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; }

[ $# -gt 0 ] || { usage >&2; exit 2; }
case "$1" in -h | --help) usage; exit 0 ;; esac
config=$1
shift
[ -f "$config" ] || die "no such config file: $config"
config=$(cd "$(dirname "$config")" && pwd)/$(basename "$config")
dir=""
stages=${SD_ALL_STAGES// /,}
dry=0
sbatch_opts=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) [ $# -ge 2 ] || die "--dir needs a directory"; dir=$2; shift ;;
    --dir=*) dir=${1#--dir=} ;;
    --stages) [ $# -ge 2 ] || die "--stages needs a comma list"; stages=$2; shift ;;
    --stages=*) stages=${1#--stages=} ;;
    --dry-run) dry=1 ;;
    -h | --help) usage; exit 0 ;;
    *) sbatch_opts+=("$1") ;;
  esac
  shift
done

IFS=, read -r -a list <<<"$stages"
[ ${#list[@]} -gt 0 ] || die "--stages is empty (stages: ${SD_ALL_STAGES// /,})"
for s in "${list[@]}"; do
  case " $SD_ALL_STAGES " in
    *" $s "*) ;;
    *) die "unknown stage '$s' in --stages $stages (stages: ${SD_ALL_STAGES// /,})" ;;
  esac
done
command -v sbatch >/dev/null 2>&1 || [ $dry = 1 ] || die "sbatch not found: run this on a Slurm login node (or use --dry-run)"

dir=${dir:-runs/$(basename "$config" .yaml)}
if [ $dry = 0 ]; then
  mkdir -p "$dir/logs" || die "cannot create the run directory $dir"
  dir=$(cd "$dir" && pwd)
fi

submitted=()
cancel_submitted() {
  [ ${#submitted[@]} -gt 0 ] || return 0
  echo "jobs/submit.sh: cancelling the jobs already submitted: ${submitted[*]}" >&2
  scancel "${submitted[@]}" 2>/dev/null || true
}

prev=""
table=""
n=0
for s in "${list[@]}"; do
  n=$((n + 1))
  case " $SD_TRAINING_STAGES " in
    *" $s "*) script="$SD_ROOT/jobs/train.sbatch"; kind=${SD_SBATCH_TRAINING:-} ;;
    *) script="$SD_ROOT/jobs/stage.sbatch"; kind=${SD_SBATCH_ANALYSIS:-} ;;
  esac
  var="SD_SBATCH_$(printf '%s' "$s" | tr '[:lower:]' '[:upper:]')"
  own=${!var:-}
  cmd=(sbatch --parsable --job-name="sd-$s" --output="$dir/logs/$s-%j.out")
  [ -n "$prev" ] && cmd+=(--dependency="afterok:$prev" --kill-on-invalid-dep=yes)
  # shellcheck disable=SC2206
  cmd+=("${sbatch_opts[@]}" $kind $own "$script" "$s" "$config" --dir "$dir")
  if [ $dry = 1 ]; then
    printf '%q ' "${cmd[@]}"
    echo
    id="DRYRUN$n"
  else
    if ! out=$("${cmd[@]}" 2>&1); then
      echo "jobs/submit.sh: sbatch failed for stage $s: $out" >&2
      cancel_submitted
      exit 1
    fi
    id=${out%%;*}
    id=$(printf '%s' "$id" | tail -n 1)
    [[ $id =~ ^[0-9]+$ ]] || { echo "jobs/submit.sh: unexpected sbatch output for stage $s: $out" >&2; cancel_submitted; exit 1; }
    submitted+=("$id")
    echo "$s $id"
  fi
  table+="$s	$id	$(basename "$script")"$'\n'
  prev=$id
done
if [ $dry = 0 ]; then
  printf 'stage\tjob_id\tscript\n%s' "$table" >"$dir/slurm-jobs.tsv.tmp" && mv "$dir/slurm-jobs.tsv.tmp" "$dir/slurm-jobs.tsv"
  echo "jobs/submit.sh: ${#submitted[@]} job(s) submitted, run directory $dir; follow with: squeue -j $(IFS=,; echo "${submitted[*]}"); logs in $dir/logs" >&2
fi
