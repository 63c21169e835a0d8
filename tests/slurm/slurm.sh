#!/usr/bin/env bash
# tests/slurm/slurm.sh - the job scripts in jobs/ on a REAL single-node Slurm (Debian's
# slurm-wlm + munge, started by tests/slurm/lib.sh in a temporary directory; not a mock).
#
# What it checks now:
#  1. the harness: munged, slurmctld and slurmd come up, the node is idle with this
#     machine's CPUs, srun --mpi=pmix starts 2 Open MPI ranks of stemdefect.
#  2. preemption: tests/slurm/train-job.sbatch (simulate + train --task classify through
#     jobs/lib/job.sh, the same code path as the pipeline jobs) gets USR1 mid-training as
#     --signal=B:USR1 would deliver it (scancel --signal=USR1 --batch) -> the ranks checkpoint
#     and exit 75 -> the job requeues itself -> the requeued job resumes and its final model
#     equals (h5diff /params, /buffers) that of an uninterrupted job, which was submitted with
#     --dependency=afterok on the preempted one (so the dependency also holds across a requeue).
#  3. jobs/submit.sh: one job per stage chained with afterok, in order, each starting after the
#     previous ended, training and analysis stages with their own resources (#SBATCH defaults,
#     SD_SBATCH_* and SBATCH_* overrides), logs and slurm-jobs.tsv; a failing stage cancels the
#     rest of the chain. While `stemdefect run` does not exist yet, the chain's jobs run a
#     recording stand-in for the program (SD_BIN) that logs each call; once `run` exists the
#     chain runs the real program on a tiny copy of config/demo.yaml and every stage listed in
#     STAGE_OUTPUTS below must have written its outputs.
# Waits are bounded; on failure it prints the daemon logs and the job outputs; every daemon is
# stopped by PID on exit and the temporary directories are removed.
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/lib.sh"

# Outputs each stage of `stemdefect run` must leave in the run directory (the contract of
# issue 6). One line per stage: jobs/submit.sh is run with exactly these stages, in this order,
# so a stage `run` does not have yet is one line to delete and a new one is one line to add.
STAGE_OUTPUTS=(
  "data        stack.h5"
  "classify    classifier.h5 classifier_metrics.json classifier_predictions.h5"
  "pseudolabel pseudo.h5"
  "segmenter   unet.h5 unet_metrics.json"
  "segment     heatmaps.h5"
  "describe    descriptors.h5"
  "cluster     clusters.h5"
  "embed       embedding.h5"
  "report      report.html"
)

if ! command -v slurmctld >/dev/null 2>&1 && ! [ -x /usr/sbin/slurmctld ] || ! command -v munged >/dev/null 2>&1 && ! [ -x /usr/sbin/munged ]; then
  [ "${CI:-}" = true ] && { echo "slurm-wlm/munge missing (tests/run.sh installs them in CI)"; exit 1; }
  echo "SKIP: Debian packages slurm-wlm and munge not installed"
  exit 77
fi
[ "$(id -u)" = 0 ] || { echo "SKIP: the single-node Slurm test runs its daemons as root"; exit 77; }
PATH=$PATH:/usr/sbin:/sbin
PY=/usr/bin/python3
[ -x $PY ] || PY=python3

SLURM_TMP=$(mktemp -d /tmp/sd_slurm_XXXXXX)
on_exit() {
  local rc=$?
  if [ $rc -ne 0 ] || [ $FAILS -ne 0 ]; then
    sd_slurm_dump_logs
    for f in "$WORK"/*/job.out "$WORK"/*/logs/*.out; do
      [ -f "$f" ] || continue
      echo "----- $f (last 30 lines) -----" >&2
      grep -v '^    | ' "$f" | tail -n 30 >&2
    done
  fi
  sd_slurm_kill_helpers $$
  sd_slurm_stop
  rm -rf "$SLURM_TMP" "$WORK"
}
trap on_exit EXIT
trap 'echo "slurm.sh: interrupted" >&2; exit 1' TERM INT
t_start=$(date +%s)
export SD_ROOT=$SRC SD_BIN=$SD
# jobs inherit this environment (sbatch --export=ALL)
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1

# wait_for SECONDS DESCRIPTION CMD...: polls CMD every half second; fails the test on timeout
wait_for() {
  local secs=$1 what=$2 t0
  shift 2
  t0=$(date +%s)
  until "$@"; do
    if [ $(($(date +%s) - t0)) -ge "$secs" ] || ! sd_slurm_alive; then
      fail "timed out after ${secs}s waiting for $what"
      return 1
    fi
    sleep 0.5
  done
  return 0
}
field() { sd_slurm_job_field "$@"; }
epoch_of() { date -d "$1" +%s 2>/dev/null || echo 0; }
# requeued ID: true once job ID has been requeued (Restarts >= 1). Slurm holds a requeued job
# ~120 s (Reason=BeginTime) before it may start again, so that the node has revoked the old
# instance's credential; the test shortens that to 5 s (sooner fails with "Job credential
# revoked") instead of waiting the two minutes.
# Right after the requeue the job can show PENDING with Reason=None before the scheduler has
# marked it BeginTime: the eligible time (already ~120 s ahead) is checked as well, and a
# pending job is not reported requeued until it has been released (or its start is near), so
# it cannot be left waiting the two minutes.
declare -A released
requeued() {
  local id=$1 st el
  [ "$(field "$id" Restarts)" -ge 1 ] 2>/dev/null || return 1
  st=$(sd_slurm_job_state "$id")
  case "$st" in
    PENDING)
      [ -n "${released[$id]:-}" ] && return 0
      el=$(epoch_of "$(field "$id" EligibleTime)")
      if [ "$(field "$id" Reason)" = BeginTime ] || [ "$el" -gt $(($(date +%s) + 10)) ]; then
        scontrol update JobId="$id" StartTime=now+5 && released[$id]=1
        return 0
      fi
      # eligible soon (or already): nothing to shorten once the time is known
      [ "$el" -gt 0 ] && return 0
      return 1 ;;
    RUNNING | COMPLETED | FAILED | CANCELLED | TIMEOUT) return 0 ;;
    *) return 1 ;; # REQUEUED, COMPLETING: not pending yet
  esac
}

# ---- 1. the harness ------------------------------------------------------------------------
sd_slurm_start "$SLURM_TMP" || { fail "could not start the single-node Slurm"; finish; exit 1; }
ok
[ "$(sinfo -h -o "%c")" = "$(getconf _NPROCESSORS_ONLN)" ] && ok || fail "node CPUs $(sinfo -h -o "%c") != online CPUs $(getconf _NPROCESSORS_ONLN)"
out=$(timeout 60 srun --mpi=pmix -n 2 "$SD" info --help 2>&1 | grep -c '^usage\|stemdefect info' || true)
[ "${out:-0}" -ge 2 ] && ok || fail "srun --mpi=pmix -n 2 did not start two ranks: $(timeout 60 srun --mpi=pmix -n 2 "$SD" --version 2>&1 | tail -3)"

phase() { echo "[$(date +%T)] $*"; }
phase "harness up"
# does `stemdefect run` exist, and which stages does it list?
real_run=0
run_stages=$("$SD" run --help 2>/dev/null | sed -n 's/.*stages to run (default all, in order): \([a-z, ]*\).*/\1/p' | tr -d ',')
[ -n "$run_stages" ] && real_run=1

# ---- 2. preemption: USR1 mid-training -> checkpoint, exit 75, requeue, resume ------------------
# With `run`: jobs/pipeline.sbatch ... --stages data,classify (the real job script and program);
# without it: tests/slurm/train-job.sbatch (simulate + train through the same job library).
EPOCHS=16
P=$WORK/preempt
R=$WORK/reference
mkdir -p "$P" "$R"
if [ $real_run = 1 ]; then
  cat >"$WORK/preempt.yaml" <<EOF
simulate:
  material: cdte
  count: 192
  size: 32
  seed: 3
  preview_count: 8
classifier:
  # the length of training is set by max_steps (the same for both jobs), with epochs out of
  # reach: about 7 s on an idle 2-core machine, so the signal always lands mid-training however
  # fast the machine is (16 epochs took under a second once the engine got faster)
  epochs: 100000
  max_steps: 3000
  checkpoint_every: 25
  batch: 16
  data_shards: 4
  width: 4
  stages: 2
EOF
  job_p=("$SRC/jobs/pipeline.sbatch" "$WORK/preempt.yaml" --stages data,classify --dir "$P")
  job_r=("$SRC/jobs/pipeline.sbatch" "$WORK/preempt.yaml" --stages data,classify --dir "$R")
  resumed_pat="run: stage classify   resuming from its checkpoint"
  prof_names="data classify"
else
  job_p=("$SRC/tests/slurm/train-job.sbatch" "$P" $EPOCHS)
  job_r=("$SRC/tests/slurm/train-job.sbatch" "$R" $EPOCHS)
  resumed_pat="train: resuming from"
  prof_names="simulate classify"
fi
id_p=$(sbatch --parsable -n 2 --job-name=sd-test-train -o "$P/job.out" "${job_p[@]}") || fail "sbatch failed"
id_r=$(sbatch --parsable -n 2 --job-name=sd-test-train -o "$R/job.out" --dependency="afterok:$id_p" "${job_r[@]}") ||
  fail "sbatch of the reference job failed"
# true once training is under way, or when the job ended (an empty state means scontrol did not
# answer in time on the loaded machine: keep waiting)
in_training() {
  grep -q 'epoch 1/' "$P/job.out" 2>/dev/null && return 0
  case "$(sd_slurm_job_state "$id_p")" in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL) return 0 ;; esac
  return 1
}
wait_for 120 "the preempted job to finish its first epoch" in_training
if grep -q 'epoch 1/' "$P/job.out" && [ "$(sd_slurm_job_state "$id_p")" = RUNNING ] && ! grep -q 'model written' "$P/job.out"; then
  ok
  phase "signalling job $id_p"
  scancel --signal=USR1 --batch "$id_p" && ok || fail "scancel --signal=USR1 --batch $id_p"
else
  fail "job $id_p was not training when it should have been signalled (state $(sd_slurm_job_state "$id_p"))"
fi
wait_for 60 "job $id_p to requeue itself" requeued "$id_p" && ok
phase "job $id_p requeued"
st=$(sd_slurm_wait_job "$id_p" 180) && [ "$st" = COMPLETED ] && ok || fail "preempted job $id_p ended $st"
# the reference job was held by afterok through the requeue and runs now
[ "$(field "$id_r" Restarts)" = 0 ] && ok || fail "reference job $id_r was restarted"
phase "job $id_p done"
st=$(sd_slurm_wait_job "$id_r" 180) && [ "$st" = COMPLETED ] && ok || fail "reference job $id_r ended $st"
phase "reference job $id_r done"
[ "$(epoch_of "$(field "$id_r" StartTime)")" -ge "$(epoch_of "$(field "$id_p" EndTime)")" ] && ok ||
  fail "reference job started $(field "$id_r" StartTime) before job $id_p ended $(field "$id_p" EndTime) (afterok)"
for pat in "job $id_p 'sd-test-train' on $(hostname -s) (nodes 1, ranks 2" "restart 0)" "at commit " \
  "received SIGUSR1: forwarding it" "stop signal received: checkpoint written" "step exited with code 75" \
  "requeueing job $id_p (restart 1)" "restart 1)" "$resumed_pat" "model written to"; do
  grep -qF -- "$pat" "$P/job.out" && ok || fail "preempted job's log lacks '$pat'"
done
grep -q 'resuming from' "$R/job.out" && fail "the reference job resumed (it must run uninterrupted)" || ok
h5diff "$P/stack.h5" "$R/stack.h5" /images /images >/dev/null && ok || fail "the two jobs simulated different stacks"
h5diff "$P/classifier.h5" "$R/classifier.h5" /params /params >/dev/null && ok ||
  fail "the requeued+resumed model differs from the uninterrupted one (/params)"
h5diff "$P/classifier.h5" "$R/classifier.h5" /buffers /buffers >/dev/null && ok ||
  fail "the requeued+resumed model differs from the uninterrupted one (/buffers)"
for f in $prof_names; do
  f=$P/profile/$f.json
  $PY -c 'import json,sys; json.load(open(sys.argv[1]))' "$f" 2>/dev/null && ok || fail "no valid JSON profile $f"
done
t_preempt=$(date +%s)

# ---- 3. jobs/submit.sh: the per-stage chain ----------------------------------------------------
C=$WORK/chain
mkdir -p "$C"
sed -e 's/^\( *count:\).*/\1 128/' -e 's/^\( *size:\).*/\1 32/' -e 's/^\( *preview_count:\).*/\1 8/' \
  -e 's/^\( *epochs:\).*/\1 2/' -e 's/^\( *width:\).*/\1 4/' -e 's/^\( *batch:\).*/\1 16/' "$SRC/config/demo.yaml" >"$C/tiny.yaml"
# a short t-SNE (the demo's 1000 iterations take most of the chain's time on 128 images)
grep -q '^embed:' "$C/tiny.yaml" || printf 'embed:\n  iterations: 300\n  exaggeration_iters: 100\n' >>"$C/tiny.yaml"
# the stages: with `stemdefect run`, those it lists (each must have a STAGE_OUTPUTS line);
# without it, every STAGE_OUTPUTS line (through the stand-in)
stages=()
outputs=()
for l in "${STAGE_OUTPUTS[@]}"; do
  set -- $l
  if [ $real_run = 0 ] || [[ " $run_stages " == *" $1 "* ]]; then
    stages+=("$1")
    outputs+=("$l")
  fi
done
for s in $run_stages; do
  [[ " ${stages[*]} " == *" $s "* ]] && ok || fail "run has a stage '$s' that STAGE_OUTPUTS does not list (add its outputs there)"
done
# A stand-in for the program where the test needs one: logs each call (rank 0) to
# $SD_RECORD_LOG; exits 3 for the stage named by SD_RECORD_FAIL; with SD_RECORD_REQUEUE=1 it
# exits 75 (as stemdefect after a checkpoint) unless the job is a requeued one; with
# SD_RECORD_WAIT=1 it waits, without a signal handler, to be killed (unless requeued).
STANDIN=$WORK/standin.sh
cat >"$STANDIN" <<'EOF'
#!/usr/bin/env bash
[ "$1" = --version ] && { echo "stemdefect stand-in (tests/slurm/slurm.sh)"; exit 0; }
if [ "${SLURM_PROCID:-0}" = 0 ]; then
  echo "$SLURM_JOB_ID $SLURM_JOB_NAME ntasks=$SLURM_NTASKS restart=${SLURM_RESTART_COUNT:-0} $*" >>"$SD_RECORD_LOG"
fi
case " $* " in *" --stages ${SD_RECORD_FAIL:-none} "*) echo "stand-in: failing as asked" >&2; exit 3 ;; esac
if [ "${SD_RECORD_WAIT:-0}" = 1 ] && [ "${SLURM_RESTART_COUNT:-0}" = 0 ]; then
  # a stage with no signal handler: the forwarded USR1 ends it (srun exit 138)
  echo "stand-in: waiting for a signal" >&2
  exec sleep 120
fi
if [ "${SD_RECORD_REQUEUE:-0}" = 1 ] && [ "${SLURM_RESTART_COUNT:-0}" = 0 ]; then
  echo "stand-in: checkpoint written, exit 75" >&2
  exit 75
fi
exit 0
EOF
chmod +x "$STANDIN"
if [ $real_run = 1 ]; then
  echo "chain: stemdefect run exists: running the real stages ${stages[*]}"
  chain_bin=$SD
else
  echo "chain: stemdefect run does not exist yet: the chain's jobs run a recording stand-in for the program"
  chain_bin=$STANDIN
fi
export SD_RECORD_LOG=$C/calls.log
IFS=,
stage_list="${stages[*]}"
unset IFS
subout=$(SD_BIN=$chain_bin SD_SBATCH_TRAINING="--ntasks=2" "$SRC/jobs/submit.sh" "$C/tiny.yaml" --dir "$C/run" \
  --stages "$stage_list" --ntasks=1 2>"$C/submit.err") && ok || fail "jobs/submit.sh failed: $(cat "$C/submit.err")"
declare -A jid
while read -r s i; do jid[$s]=$i; done <<<"$subout"
[ ${#jid[@]} = ${#stages[@]} ] && ok || fail "submit.sh printed ${#jid[@]} jobs for ${#stages[@]} stages: $subout"
last=${jid[${stages[-1]}]:-0}
st=$(sd_slurm_wait_job "$last" 200) && [ "$st" = COMPLETED ] && ok || fail "last job of the chain ($last, ${stages[-1]}) ended $st"
prev=""
for s in "${stages[@]}"; do
  i=${jid[$s]:-0}
  [ "$(sd_slurm_job_state "$i")" = COMPLETED ] && ok || fail "stage $s job $i: $(sd_slurm_job_state "$i")"
  [ "$(field "$i" JobName)" = "sd-$s" ] && ok || fail "stage $s job name $(field "$i" JobName)"
  case $s in
    classify | segmenter) want_n=2 want_t=08:00:00 ;;
    *) want_n=1 want_t=01:00:00 ;;
  esac
  [ "$(field "$i" NumTasks)" = $want_n ] && ok || fail "stage $s: $(field "$i" NumTasks) tasks, wanted $want_n"
  [ "$(field "$i" TimeLimit)" = $want_t ] && ok || fail "stage $s: time limit $(field "$i" TimeLimit), wanted the #SBATCH default $want_t"
  if [ -n "$prev" ]; then
    dep=$(timeout 20 scontrol show job "$i" | tr ' ' '\n' | grep '^Dependency=' || true)
    # a satisfied dependency shows as afterok:<id>(unfulfilled) while pending and (null) later;
    # the start order is what afterok guarantees
    [ "$(epoch_of "$(field "$i" StartTime)")" -ge "$(epoch_of "$(field "${jid[$prev]}" EndTime)")" ] && ok ||
      fail "stage $s started $(field "$i" StartTime) before $prev ended $(field "${jid[$prev]}" EndTime) ($dep)"
  fi
  log=$(ls "$C/run/logs/$s-$i.out" 2>/dev/null) && ok || fail "no log $C/run/logs/$s-$i.out"
  [ -n "$log" ] && grep -qF "job $i 'sd-$s'" "$log" && ok || fail "stage $s log lacks the job header"
  [ -n "$log" ] && grep -qF "run --config $C/tiny.yaml --dir $C/run --stages $s --profile $C/run/profile/jobs/sd-$s-$i.json" "$log" &&
    ok || fail "stage $s log lacks the run command line"
  prev=$s
done
[ "$(tail -n +2 "$C/run/slurm-jobs.tsv" | cut -f1 | tr '\n' ' ')" = "${stages[*]} " ] && ok || fail "slurm-jobs.tsv: $(cat "$C/run/slurm-jobs.tsv")"
if [ $real_run = 1 ]; then
  for l in "${outputs[@]}"; do
    set -- $l
    s=$1
    shift
    for f in "$@"; do
      [ -s "$C/run/$f" ] && ok || fail "stage $s did not write $C/run/$f"
    done
    ls "$C/run/profile/$s.json" >/dev/null 2>&1 && ok || fail "stage $s wrote no profile $C/run/profile/$s.json"
  done
  grep -qi '<html' "$C/run/report.html" 2>/dev/null && ok || fail "report.html is not an HTML page"
else
  # the stand-in ran once per stage, in chain order, with the stage's resources
  [ "$(cut -d' ' -f2 "$C/calls.log" | tr '\n' ' ')" = "$(printf 'sd-%s ' "${stages[@]}")" ] && ok ||
    fail "stages ran out of order or not once each: $(cut -d' ' -f1-3 "$C/calls.log" | tr '\n' ';')"
  grep -q '^[0-9]* sd-classify ntasks=2 ' "$C/calls.log" && ok || fail "classify did not get 2 tasks (SD_SBATCH_TRAINING)"
  grep -q '^[0-9]* sd-data ntasks=1 ' "$C/calls.log" && ok || fail "data did not get 1 task (--ntasks=1)"
fi
t_chain=$(date +%s)

# ---- 3b. a failing stage cancels the rest of the chain; SBATCH_* overrides #SBATCH -------------
F=$WORK/fail
mkdir -p "$F"
# meanwhile, on the free CPU: a pipeline job with a 1-minute limit, so the script's own
# "#SBATCH --signal=B:USR1@120" fires from Slurm's time-limit check (not from scancel); its step
# (the stand-in, no handler) is ended by the forwarded USR1 and the job requeues itself
TL=$WORK/timelimit
mkdir -p "$TL"
id_t=$(env SD_BIN=$STANDIN SD_RECORD_LOG=$TL/calls.log SD_RECORD_WAIT=1 sbatch --parsable -n 1 --time=1 -o "$TL/job.out" \
  "$SRC/jobs/pipeline.sbatch" "$C/tiny.yaml" --dir "$TL/run") && ok || fail "sbatch of the time-limit job failed"
subout=$(SD_BIN=$STANDIN SD_RECORD_LOG=$F/calls.log SD_RECORD_FAIL=classify SBATCH_TIMELIMIT=00:20:00 "$SRC/jobs/submit.sh" "$C/tiny.yaml" --dir "$F/run" \
  --stages data,classify,segment --ntasks=1 2>"$F/submit.err") && ok || fail "jobs/submit.sh failed: $(cat "$F/submit.err")"
declare -A fid
while read -r s i; do fid[$s]=$i; done <<<"$subout"
st=$(sd_slurm_wait_job "${fid[segment]:-0}" 90) && [ "$st" = CANCELLED ] && ok ||
  fail "segment after a failed classify: $st (wanted CANCELLED by --kill-on-invalid-dep)"
[ "$(sd_slurm_job_state "${fid[data]:-0}")" = COMPLETED ] && ok || fail "data job: $(sd_slurm_job_state "${fid[data]:-0}")"
[ "$(sd_slurm_job_state "${fid[classify]:-0}")" = FAILED ] && ok || fail "classify job: $(sd_slurm_job_state "${fid[classify]:-0}")"
[ "$(field "${fid[classify]:-0}" ExitCode)" = 3:0 ] && ok || fail "classify exit code $(field "${fid[classify]:-0}" ExitCode), wanted 3:0"
[ "$(field "${fid[data]:-0}" TimeLimit)" = 00:20:00 ] && ok || fail "SBATCH_TIMELIMIT did not override the #SBATCH time: $(field "${fid[data]:-0}" TimeLimit)"
grep -q "failed with exit code 3" "$F/run/logs/classify-${fid[classify]:-0}.out" && ok || fail "classify log lacks the failure line"
# ---- 3c. jobs/pipeline.sbatch: the whole chain in one job; exit 75 -> requeue; --force dropped
Q=$WORK/pipeline
mkdir -p "$Q"
# without SD_ROOT: the job finds the repository from its own script path (scontrol Command=)
id_q=$(env -u SD_ROOT SD_BIN=$STANDIN SD_RECORD_LOG=$Q/calls.log SD_RECORD_REQUEUE=1 sbatch --parsable -n 2 -o "$Q/job.out" \
  "$SRC/jobs/pipeline.sbatch" "$C/tiny.yaml" --dir "$Q/run" --force) && ok || fail "sbatch jobs/pipeline.sbatch failed"
wait_for 60 "jobs/pipeline.sbatch to requeue itself after exit 75" requeued "$id_q" && ok
# the same job once more in a stage that has no USR1 handler: the signal forwarded by the batch
# shell ends the step (exit 138), which the script also treats as stopped -> requeue
id_w=$(env -u SD_ROOT SD_BIN=$STANDIN SD_RECORD_LOG=$Q/calls-w.log SD_RECORD_WAIT=1 sbatch --parsable -n 2 -o "$Q/job-w.out" \
  "$SRC/jobs/pipeline.sbatch" "$C/tiny.yaml" --dir "$Q/run-w") && ok || fail "sbatch jobs/pipeline.sbatch failed"
waiting_w() { grep -q 'stand-in: waiting for a signal' "$Q/job-w.out" 2>/dev/null; }
wait_for 60 "the pipeline job $id_w to start its step" waiting_w && ok
scancel --signal=USR1 --batch "$id_w" && ok || fail "scancel --signal=USR1 --batch $id_w"
wait_for 60 "pipeline job $id_w to requeue itself after its step died of USR1" requeued "$id_w" && ok
st=$(sd_slurm_wait_job "$id_w" 90) && [ "$st" = COMPLETED ] && ok || fail "pipeline job $id_w ended $st"
grep -qF "ended by the forwarded SIGUSR1: treating it as stopped" "$Q/job-w.out" && ok || fail "job $id_w log lacks the signal-death line"
[ "$(grep -c " restart=1 run " "$Q/calls-w.log")" = 1 ] && ok || fail "requeued job $id_w did not run once: $(cat "$Q/calls-w.log")"
st=$(sd_slurm_wait_job "$id_q" 90) && [ "$st" = COMPLETED ] && ok || fail "pipeline job $id_q ended $st"
[ "$(field "$id_q" TimeLimit)" = 08:00:00 ] && [ "$(field "$id_q" NumTasks)" = 2 ] && ok ||
  fail "pipeline job: time limit $(field "$id_q" TimeLimit) tasks $(field "$id_q" NumTasks)"
grep -qx "$id_q sd-pipeline ntasks=2 restart=0 run --config $C/tiny.yaml --dir $Q/run --profile $Q/run/profile/jobs/sd-pipeline-$id_q.json --force" "$Q/calls.log" &&
  ok || fail "first pipeline run: $(head -1 "$Q/calls.log")"
grep -qx "$id_q sd-pipeline ntasks=2 restart=1 run --config $C/tiny.yaml --dir $Q/run --profile $Q/run/profile/jobs/sd-pipeline-$id_q.json" "$Q/calls.log" &&
  ok || fail "requeued pipeline run (without --force): $(tail -1 "$Q/calls.log")"
grep -qF "ignoring --force" "$Q/job.out" && ok || fail "pipeline log lacks the --force note"

wait_for 120 "the time-limit job $id_t to get USR1 from --signal=B:USR1@120 and requeue itself" requeued "$id_t" && ok
st=$(sd_slurm_wait_job "$id_t" 90) && [ "$st" = COMPLETED ] && ok || fail "time-limit job $id_t ended $st"
grep -qF "received SIGUSR1" "$TL/job.out" && ok || fail "time-limit job $id_t: no USR1 in its log"
grep -qF "requeueing job $id_t (restart 1)" "$TL/job.out" && ok || fail "time-limit job $id_t did not requeue itself"
phase "time-limit signal job $id_t done"

# --dry-run prints the chain without submitting; --help of the scripts
dry=$("$SRC/jobs/submit.sh" "$C/tiny.yaml" --dir "$F/dry" --stages data,classify,report --dry-run -p short 2>&1)
[ "$(printf '%s\n' "$dry" | grep -c '^sbatch ')" = 3 ] && ok || fail "--dry-run: $dry"
printf '%s\n' "$dry" | grep -q -- '--dependency=afterok:DRYRUN2 --kill-on-invalid-dep=yes -p short .*/jobs/stage.sbatch report ' && ok ||
  fail "--dry-run: no afterok chain to the report stage: $dry"
printf '%s\n' "$dry" | grep -q -- 'jobs/train.sbatch classify ' && ok || fail "--dry-run: classify does not use train.sbatch"
[ ! -e "$F/dry" ] && ok || fail "--dry-run created $F/dry"
for f in pipeline.sbatch train.sbatch stage.sbatch submit.sh; do
  bash "$SRC/jobs/$f" --help | grep -q "jobs/$f" && ok || fail "jobs/$f --help"
done
# bad input: one clear message, nothing submitted
expect_fail 2 "unknown stage 'segmentr'" "$SRC/jobs/submit.sh" "$C/tiny.yaml" --dir "$F/bad" --stages data,segmentr
expect_fail 2 "no such config file: $F/none.yaml" "$SRC/jobs/submit.sh" "$F/none.yaml"
[ -z "$(timeout 10 squeue -h -o %i)" ] && ok || fail "jobs left in the queue: $(squeue -h -o '%i %j %T')"

# ---- 4. the scaling study as job arrays (one task per rank count) + a dependent collector ----
if [ $real_run = 1 ]; then
  SC=$WORK/scaling
  sout=$(SD_BINARY=$chain_bin bash "$SRC/jobs/scaling-study.sh" --slurm --mode strong --config "$C/tiny.yaml" \
    --count 64 --out "$SC" 1 2 2>&1) && ok || fail "scaling-study.sh --slurm: $sout"
  cid=$(printf '%s\n' "$sout" | tail -1)
  st=$(sd_slurm_wait_job "$cid" 300) && [ "$st" = COMPLETED ] && ok ||
    fail "scaling collector job $cid ended ${st:-?}: $(cat "$SC"/scaling-*.out 2>/dev/null | tail -20)"
  for p in 1 2; do
    grep -q "^strong,classify,train,$p,0,64," "$SC/scaling.csv" 2>/dev/null && ok ||
      fail "scaling.csv has no classify row at $p ranks: $(grep "classify,train" "$SC/scaling.csv" 2>/dev/null) $(grep -h "srun\|ranks" "$SC"/scaling-strong-*_1.out 2>/dev/null | head -5)"
  done
  [ -s "$SC/speedup.png" ] && [ -s "$SC/efficiency.png" ] && ok || fail "no scaling plots"
fi

t_end=$(date +%s)
echo "timings: harness+preemption $((t_preempt - t_start))s, chain $((t_chain - t_preempt))s, failure chain $((t_end - t_chain))s"
finish
