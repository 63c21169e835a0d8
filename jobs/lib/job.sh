# jobs/lib/job.sh - shared body of the Slurm batch scripts (sourced by jobs/*.sbatch, not run).
#
# A batch script runs from a copy in slurmd's spool directory, so it cannot find the
# repository from its own path: the few lines at the top of each .sbatch look in $SD_ROOT,
# then the job's Command= path (scontrol show job), then $SLURM_SUBMIT_DIR, and source this.
#
#   sd_job_init              resolve SD_ROOT and the program (SD_BIN), load modules
#                            ($SD_MODULES, optional), print the job header (job id, nodes,
#                            ranks, git commit, config).
#   sd_job_srun ARGS...      srun --mpi=$SD_SRUN_MPI (pmix) "$SD_BIN" ARGS... in the
#                            background, forwarding USR1/USR2 that reach the batch shell
#                            (--signal=B:USR1@120) to the job steps, so the program
#                            checkpoints and exits 75. Returns the step's exit code
#                            (75 also when the step died of the forwarded signal itself,
#                            i.e. a stage without a handler: the run keeps what is complete).
#   sd_job_run STAGE CONFIG [--dir D] [run options]   the whole job: init, config, one
#                            `stemdefect run` step, finish (below).
#   sd_job_finish RC         RC 75 (checkpointed, stopped by a signal) -> scontrol requeue
#                            $SLURM_JOB_ID (at most $SD_MAX_REQUEUES times, default 20), and the
#                            requeued job resumes from the checkpoint; otherwise exit RC.
#
# Environment (all optional): SD_ROOT, SD_BIN (default $SD_ROOT/build/stemdefect, else
# `stemdefect` on PATH), SD_MODULES ("openmpi hdf5" -> module load openmpi hdf5),
# SD_SRUN_MPI (default pmix: Open MPI starts under srun --mpi=pmix, not pmi2),
# SD_SRUN_ARGS (extra srun options), SD_MAX_REQUEUES.

SD_JOB_EXIT_REQUEUE=75 # EX_TEMPFAIL: what stemdefect returns after a checkpoint on a signal

sd_job_log() { printf '[%s job %s] %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "${SLURM_JOB_ID:-local}" "$*" >&2; }
sd_job_die() {
  sd_job_log "error: $*"
  exit 2
}

sd_job_init() {
  # the repository and the program
  SD_BIN=${SD_BIN:-}
  if [ -z "$SD_BIN" ]; then
    if [ -x "$SD_ROOT/build/stemdefect" ]; then
      SD_BIN="$SD_ROOT/build/stemdefect"
    elif command -v stemdefect >/dev/null 2>&1; then
      SD_BIN=$(command -v stemdefect)
    else
      sd_job_die "no stemdefect program: build it (cmake --build build) or set SD_BIN=/path/to/stemdefect"
    fi
  fi
  [ -x "$SD_BIN" ] || sd_job_die "SD_BIN=$SD_BIN is not an executable file"
  if [ -n "${SD_MODULES:-}" ]; then
    type module >/dev/null 2>&1 || sd_job_die "SD_MODULES=$SD_MODULES is set but there is no 'module' command"
    # shellcheck disable=SC2086
    module load $SD_MODULES || sd_job_die "module load $SD_MODULES failed"
  fi
  # one BLAS thread per allocated CPU of a rank, unless the user chose (OpenBLAS would
  # otherwise start one thread per core of the node in every rank)
  export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
  sd_job__traps
  export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1} OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}

  local commit version
  commit=$(git -C "$SD_ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
  if [ "$commit" != unknown ] && [ -n "$(git -C "$SD_ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    commit="$commit (with uncommitted changes)"
  fi
  version=$("$SD_BIN" --version 2>/dev/null || echo "stemdefect (version unknown)")
  sd_job_log "job ${SLURM_JOB_ID:-none} '${SLURM_JOB_NAME:-}' on ${SLURM_JOB_NODELIST:-$(hostname)}" \
    "(nodes ${SLURM_JOB_NUM_NODES:-1}, ranks ${SLURM_NTASKS:-1}, cpus/task ${SLURM_CPUS_PER_TASK:-1}," \
    "partition ${SLURM_JOB_PARTITION:-none}, restart ${SLURM_RESTART_COUNT:-0})"
  sd_job_log "program $SD_BIN: $version; repository $SD_ROOT at commit $commit"
}

# sd_job_show_config FILE: logs the config's path, checksum and text.
sd_job_show_config() {
  [ -f "$1" ] || sd_job_die "no such config file: $1"
  sd_job_log "config $1 (sha256 $(sha256sum "$1" | cut -d' ' -f1)):"
  sed 's/^/    | /' "$1" >&2
}

SD_JOB_STEP_PID=""
SD_JOB_PENDING_SIG=""
SD_JOB_FORWARDED=""
# Signal handler of the batch shell: forwards USR1/USR2 to the running job step, or keeps it
# for the next step when none is running (so a signal never kills the shell itself).
sd_job__forward() {
  local sig=$1
  if [ -z "$SD_JOB_STEP_PID" ]; then
    sd_job_log "received SIG$sig between steps: passing it to the next step"
    SD_JOB_PENDING_SIG=$sig
    return 0
  fi
  sd_job_log "received SIG$sig: forwarding it to the job steps (checkpoint and stop)"
  SD_JOB_FORWARDED=$sig
  # scancel without --batch signals every step of the job but not this shell
  if [ -n "${SLURM_JOB_ID:-}" ] && scancel --signal="$sig" "$SLURM_JOB_ID" 2>/dev/null; then
    return 0
  fi
  kill -s "$sig" "$SD_JOB_STEP_PID" 2>/dev/null || true
}
sd_job__traps() {
  trap 'sd_job__forward USR1' USR1
  trap 'sd_job__forward USR2' USR2
  # SIGTERM (scancel, time limit, preemption) reaches the steps from Slurm itself; the shell
  # keeps waiting for them so a checkpoint exit 75 can still be seen and acted on (the ranks
  # must write it within the site's KillWait, 30 s by default)
  trap 'sd_job_log "received SIGTERM: waiting for the job step to checkpoint"' TERM
}

sd_job_srun() {
  local rc launcher
  if [ -n "${SLURM_JOB_ID:-}" ]; then
    # shellcheck disable=SC2086
    launcher=(srun --mpi="${SD_SRUN_MPI:-pmix}" ${SD_SRUN_ARGS:-})
  else
    launcher=(mpirun -n "${SD_RANKS:-1}")
  fi
  sd_job__traps
  sd_job_log "${launcher[*]} $(basename "$SD_BIN") $*"
  "${launcher[@]}" "$SD_BIN" "$@" &
  SD_JOB_STEP_PID=$!
  if [ -n "$SD_JOB_PENDING_SIG" ]; then
    # give the ranks a moment to install their handlers, then pass the signal on
    sleep 5
    sd_job__forward "$SD_JOB_PENDING_SIG"
    SD_JOB_PENDING_SIG=""
  fi
  while :; do
    wait "$SD_JOB_STEP_PID"
    rc=$?
    # wait returns > 128 when a trapped signal interrupts it: the step is still running
    if [ $rc -gt 128 ] && kill -0 "$SD_JOB_STEP_PID" 2>/dev/null; then continue; fi
    break
  done
  SD_JOB_STEP_PID=""
  sd_job_log "step exited with code $rc"
  # a stage without a signal handler dies of the forwarded signal (srun reports 128 + signal):
  # the run keeps its completed stages and checkpoints, so treat it like a checkpoint stop
  if [ -n "$SD_JOB_FORWARDED" ] && [ $rc -eq $((128 + $(kill -l "$SD_JOB_FORWARDED"))) ]; then
    sd_job_log "the step was ended by the forwarded SIG$SD_JOB_FORWARDED: treating it as stopped (exit 75)"
    rc=$SD_JOB_EXIT_REQUEUE
  fi
  SD_JOB_FORWARDED=""
  return $rc
}

sd_job_finish() {
  local rc=$1 restarts=${SLURM_RESTART_COUNT:-0} max=${SD_MAX_REQUEUES:-20}
  if [ "$rc" -eq "$SD_JOB_EXIT_REQUEUE" ]; then
    if [ -z "${SLURM_JOB_ID:-}" ]; then
      sd_job_log "stopped after a checkpoint (exit 75): run the same command again to resume"
      exit "$rc"
    fi
    if [ "$restarts" -ge "$max" ]; then
      sd_job_log "stopped after a checkpoint but already requeued $restarts times (SD_MAX_REQUEUES=$max): not requeueing"
      exit "$rc"
    fi
    sd_job_log "checkpoint written: requeueing job $SLURM_JOB_ID (restart $((restarts + 1))); it resumes from the checkpoint"
    if scontrol requeue "$SLURM_JOB_ID"; then
      exit 0
    fi
    sd_job_log "scontrol requeue $SLURM_JOB_ID failed: resubmit the job by hand to resume"
    exit "$rc"
  fi
  if [ "$rc" -eq 0 ]; then sd_job_log "done"; else sd_job_log "failed with exit code $rc"; fi
  exit "$rc"
}

# sd_job_run STAGE CONFIG [--dir RUNDIR] [run options...]: the job is one step
#   stemdefect run --config CONFIG --dir RUNDIR [--stages STAGES] --profile FILE [options]
# STAGE "all" runs the whole chain (or the stages of --stages a,b in the run options). RUNDIR defaults to runs/<config name> (as run's own
# default), relative to the submit directory. The job's own profile goes to
# RUNDIR/profile/jobs/<job name>-<job id>.json (run writes RUNDIR/profile/<stage>.json).
# A requeued job drops --force, so it resumes instead of starting again.
sd_job_run() {
  local stages=${1:-} config=${2:-} dir="" args=() a stage_items=()
  sd_job_init
  [ -n "$stages" ] && [ -n "$config" ] || sd_job_die "usage: sbatch ${SLURM_JOB_NAME:-JOB}.sbatch $([ "$stages" = all ] || echo "STAGE ")CONFIG [--dir RUNDIR] [run options]"
  shift 2
  while [ $# -gt 0 ]; do
    case "$1" in
      --dir) [ $# -ge 2 ] || sd_job_die "--dir needs a directory"; dir=$2; shift ;;
      --dir=*) dir=${1#--dir=} ;;
      # a comma list becomes repeated --stages options (run takes one stage per --stages)
      --stages | --stages=*)
        local list
        if [ "$1" = --stages ]; then
          [ $# -ge 2 ] || sd_job_die "--stages needs a stage list"
          list=$2
          shift
        else
          list=${1#--stages=}
        fi
        IFS=, read -r -a stage_items <<<"$list"
        for a in "${stage_items[@]}"; do args+=(--stages "$a"); done ;;
      --force)
        if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ]; then
          sd_job_log "requeued job: ignoring --force so the run resumes"
        else
          args+=("$1")
        fi ;;
      *) args+=("$1") ;;
    esac
    shift
  done
  sd_job_show_config "$config"
  config=$(cd "$(dirname "$config")" && pwd)/$(basename "$config")
  dir=${dir:-runs/$(basename "$config" .yaml)}
  mkdir -p "$dir/profile/jobs" || sd_job_die "cannot create the run directory $dir"
  dir=$(cd "$dir" && pwd)
  sd_job_log "run directory $dir, stages $stages"
  a=()
  [ "$stages" = all ] || a=(--stages "$stages")
  sd_job_srun run --config "$config" --dir "$dir" "${a[@]}" \
    --profile "$dir/profile/jobs/${SLURM_JOB_NAME:-job}-${SLURM_JOB_ID:-local}.json" "${args[@]}"
  sd_job_finish $?
}
