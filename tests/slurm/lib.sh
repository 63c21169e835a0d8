# tests/slurm/lib.sh - a real single-node Slurm cluster for tests (sourced, not run).
#
# Starts Debian's munged, slurmctld and slurmd as the current user (root, no systemd) inside
# one temporary directory: own munge key and socket, own slurm.conf, state and spool dirs,
# logs, and ports derived from $$ (checked free, below the kernel's ephemeral range; retried
# with other ports when one is taken before the daemon binds it), so two copies can run side
# by side.
#
#   sd_slurm_start DIR     start everything under DIR; exports SLURM_CONF; waits (bounded)
#                          until the node is idle. Returns non-zero with the logs on failure.
#   sd_slurm_stop          stop every daemon it started, by PID (safe to call twice).
#   sd_slurm_dump_logs     print the tails of the daemon logs (for failure messages).
#   sd_slurm_job_state ID  the job's JobState (PENDING, RUNNING, COMPLETED, FAILED, ...).
#   sd_slurm_job_field ID FIELD   one Key=value field of `scontrol show job` (first match).
#   sd_slurm_wait_job ID SECONDS [STATE...]   waits until the job is in a final state (or one
#                          of the given states); prints the state; returns 1 on timeout.
# Needs the Debian packages slurm-wlm and munge (tests/run.sh installs them).

SD_SLURM_DIR=""
SD_SLURM_PIDS=()

sd_slurm_log() { printf '[slurm-harness %s] %s\n' "$(date '+%H:%M:%S')" "$*" >&2; }

# A TCP port nobody listens on, starting from $1 (checked with bash's /dev/tcp).
sd_slurm_free_port() {
  local p=$1 n
  for n in $(seq 0 200); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
    p=$((p + 1))
  done
  return 1
}

sd_slurm_dump_logs() {
  local f
  [ -n "$SD_SLURM_DIR" ] || return 0
  for f in munged.log slurmctld.log slurmd.log; do
    if [ -f "$SD_SLURM_DIR/$f" ]; then
      echo "----- $SD_SLURM_DIR/$f (last 40 lines) -----" >&2
      tail -n 40 "$SD_SLURM_DIR/$f" >&2
    fi
  done
  if [ -n "${SLURM_CONF:-}" ] && [ -f "$SLURM_CONF" ]; then
    echo "----- squeue -----" >&2
    timeout 10 squeue -a -o '%.8i %.12j %.10T %.20R %.6D %.4C' >&2 2>&1 || true
  fi
}

# PIDs of processes that belong to this cluster although we did not start them directly:
# slurmstepd (forked by slurmd: has SD_SLURM_HARNESS=<dir> in its environment) and job
# processes (have SLURM_CONF=<dir>/slurm.conf and a SLURM_JOB_ID).
sd_slurm__leftover_pids() {
  local e p env
  [ -n "$SD_SLURM_DIR" ] || return 0
  for e in /proc/[0-9]*/environ; do
    p=${e#/proc/}
    p=${p%/environ}
    [ "$p" = $$ ] && continue
    env=$({ tr '\0' '\n' <"$e"; } 2>/dev/null) || continue
    if printf '%s\n' "$env" | grep -qxF "SD_SLURM_HARNESS=$SD_SLURM_DIR"; then
      echo "$p"
    elif printf '%s\n' "$env" | grep -qxF "SLURM_CONF=$SD_SLURM_DIR/slurm.conf" &&
      printf '%s\n' "$env" | grep -q '^SLURM_JOB_ID='; then
      echo "$p"
    fi
  done
}

# sd_slurm__stop_daemons FIRST: stops the daemons started from index FIRST of SD_SLURM_PIDS on
# (0 munged, 1 slurmctld, 2 slurmd), last started first, and forgets them.
sd_slurm__stop_daemons() {
  local i pid n
  for ((i = ${#SD_SLURM_PIDS[@]} - 1; i >= $1; i--)); do
    pid=${SD_SLURM_PIDS[$i]}
    if kill -TERM "$pid" 2>/dev/null; then
      for n in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
      done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    unset "SD_SLURM_PIDS[$i]"
  done
  SD_SLURM_PIDS=("${SD_SLURM_PIDS[@]}")
}

sd_slurm_stop() {
  local n
  [ ${#SD_SLURM_PIDS[@]} -gt 0 ] || return 0
  # first end the jobs through Slurm (bounded), so no job outlives the cluster
  if [ ${#SD_SLURM_PIDS[@]} -ge 3 ] && [ -n "$(timeout 10 squeue -h -o %i 2>/dev/null)" ]; then
    timeout 10 scancel --full $(timeout 10 squeue -h -o %i 2>/dev/null) 2>/dev/null
    for n in $(seq 1 30); do
      [ -z "$(timeout 10 squeue -h -t all -o '%i %T' 2>/dev/null | grep -vE 'COMPLETED|CANCELLED|FAILED|TIMEOUT|NODE_FAIL|PREEMPTED|OUT_OF_MEMORY')" ] && break
      sleep 1
    done
  fi
  # then the daemons, in reverse order of start: slurmd, slurmctld, munged
  sd_slurm__stop_daemons 0
  # last, anything of this cluster still alive (a job step of a test that was interrupted)
  for pid in $(sd_slurm__leftover_pids); do
    sd_slurm_log "killing leftover process $pid: $(tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null | cut -c1-100)"
    kill -KILL "$pid" 2>/dev/null || true
  done
}

# true while the slurmctld this harness started is alive (waits give up at once otherwise)
sd_slurm_alive() { [ ${#SD_SLURM_PIDS[@]} -ge 2 ] && kill -0 "${SD_SLURM_PIDS[1]}" 2>/dev/null; }

# PIDs of the processes below $1 (recursive), deepest first
sd_slurm__descendants() {
  local c
  for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    sd_slurm__descendants "$c"
    echo "$c"
  done
}

# sd_slurm_kill_helpers PID: ends what the test script PID started besides the daemons
# (polling subshells, scontrol calls, sbatch, mpirun), so nothing outlives an interrupted test.
sd_slurm_kill_helpers() {
  local p d skip
  for p in $(sd_slurm__descendants "$1"); do
    skip=0
    for d in "${SD_SLURM_PIDS[@]}"; do [ "$p" = "$d" ] && skip=1; done
    [ $skip = 1 ] || kill -TERM "$p" 2>/dev/null || true
  done
}

sd_slurm_job_field() {
  sd_slurm_alive || return 0
  timeout 20 scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1
}

sd_slurm_job_state() { sd_slurm_job_field "$1" JobState; }

sd_slurm_wait_job() {
  local id=$1 secs=$2 t0 s w
  shift 2
  t0=$(date +%s)
  while :; do
    s=$(sd_slurm_job_state "$id")
    case "$s" in
      COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | PREEMPTED | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE)
        echo "$s"; return 0 ;;
    esac
    for w in "$@"; do
      [ "$s" = "$w" ] && { echo "$s"; return 0; }
    done
    if [ $(($(date +%s) - t0)) -ge "$secs" ] || ! sd_slurm_alive; then
      echo "${s:-UNKNOWN}"
      return 1
    fi
    sleep 1
  done
}

# status 2 when the daemon output FILE (or its .log) says its port was in use, else 1
sd_slurm__port_lost() {
  grep -q 'Address already in use' "$1" "${1%.out}.log" 2>/dev/null && return 2
  return 1
}

# sd_slurm__daemons DIR HOST NODELINE BASEPORT: writes slurm.conf with two free ports from
# BASEPORT on and starts slurmctld and slurmd. Returns 2 when a daemon lost its port to another
# process (the caller retries), 1 on any other failure.
sd_slurm__daemons() {
  local d=$1 host=$2 node=$3 base=$4 t0 s
  local ctld_port slurmd_port
  ctld_port=$(sd_slurm_free_port "$base") || { sd_slurm_log "no free port near $base"; return 1; }
  slurmd_port=$(sd_slurm_free_port $((ctld_port + 1))) || { sd_slurm_log "no free port near $ctld_port"; return 1; }
  cat >"$d/slurm.conf" <<EOF
# generated by tests/slurm/lib.sh for one test run
ClusterName=sdtest$$
SlurmctldHost=$host(127.0.0.1)
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$d/munge/munge.sock
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool
TmpFS=$d/tmp
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/slurmd.pid
SlurmctldLogFile=$d/slurmctld.log
SlurmdLogFile=$d/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
MpiDefault=none
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
ReturnToService=2
JobRequeue=1
MinJobAge=600
KillWait=10
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF="$d/slurm.conf"

  slurmctld -D -i -f "$SLURM_CONF" >"$d/slurmctld.out" 2>&1 &
  SD_SLURM_PIDS+=($!)
  t0=$(date +%s)
  until timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP'; do
    kill -0 "${SD_SLURM_PIDS[1]}" 2>/dev/null || { sd_slurm_log "slurmctld exited: $(tail -5 "$d/slurmctld.out")"; sd_slurm__port_lost "$d/slurmctld.out"; return; }
    [ $(($(date +%s) - t0)) -lt 30 ] || { sd_slurm_log "slurmctld did not answer within 30 s"; return 1; }
    sleep 0.5
  done
  SD_SLURM_HARNESS=$d slurmd -D -N "$host" -f "$SLURM_CONF" >"$d/slurmd.out" 2>&1 &
  SD_SLURM_PIDS+=($!)
  t0=$(date +%s)
  while :; do
    s=$(timeout 5 sinfo -h -n "$host" -o '%T' 2>/dev/null | head -n 1)
    [ "$s" = idle ] && break
    kill -0 "${SD_SLURM_PIDS[2]}" 2>/dev/null || { sd_slurm_log "slurmd exited: $(tail -5 "$d/slurmd.out")"; sd_slurm__port_lost "$d/slurmd.out"; return; }
    [ $(($(date +%s) - t0)) -lt 40 ] || { sd_slurm_log "node $host not idle within 40 s (state '$s')"; return 1; }
    sleep 0.5
  done
  SD_SLURM_PORTS="$ctld_port/$slurmd_port"
}

sd_slurm_start() {
  SD_SLURM_DIR=$1
  local d=$SD_SLURM_DIR p host node t0
  for p in slurmctld slurmd munged sbatch srun scontrol squeue scancel; do
    command -v "$p" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin
    command -v "$p" >/dev/null 2>&1 || { sd_slurm_log "$p not found: install the Debian packages slurm-wlm and munge"; return 1; }
  done
  mkdir -p "$d/munge" "$d/state" "$d/spool" "$d/tmp" || return 1
  # munged wants the socket directory (and its parents) searchable by everyone
  chmod 755 "$d" "$d/munge"

  # munge: own key, socket, pid, seed and log files
  dd if=/dev/urandom of="$d/munge/munge.key" bs=1024 count=1 status=none || return 1
  chmod 400 "$d/munge/munge.key"
  munged --foreground --socket="$d/munge/munge.sock" --key-file="$d/munge/munge.key" \
    --pid-file="$d/munge/munged.pid" --seed-file="$d/munge/munged.seed" \
    --log-file="$d/munged.log" --num-threads=2 >"$d/munged.out" 2>&1 &
  SD_SLURM_PIDS+=($!)
  t0=$(date +%s)
  until [ -S "$d/munge/munge.sock" ]; do
    kill -0 "${SD_SLURM_PIDS[0]}" 2>/dev/null || { sd_slurm_log "munged exited: $(cat "$d/munged.out")"; sd_slurm_dump_logs; return 1; }
    [ $(($(date +%s) - t0)) -lt 20 ] || { sd_slurm_log "munged socket did not appear within 20 s"; sd_slurm_dump_logs; return 1; }
    sleep 0.2
  done

  # slurm.conf: the node as slurmd sees it (CPUs, sockets, cores, memory)
  host=$(hostname -s)
  node=$(slurmd -C 2>/dev/null | head -n 1 | sed "s/^NodeName=[^ ]*/NodeName=$host/")
  [ -n "$node" ] || { sd_slurm_log "slurmd -C printed no node line"; return 1; }
  # Ports below the kernel's ephemeral range: a port above it can be taken between the check
  # and the bind by any outgoing connection (scontrol's, MPI's in a parallel test).
  local lo attempt rc
  lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null) || lo=32768
  [ "${lo:-0}" -gt 12000 ] 2>/dev/null || lo=32768
  for attempt in 1 2 3; do
    sd_slurm__daemons "$d" "$host" "$node" $((10000 + ($$ * 7 + attempt * 997) % (lo - 10500)))
    rc=$?
    [ $rc = 0 ] && break
    [ $rc = 2 ] && [ $attempt -lt 3 ] || { sd_slurm_dump_logs; return 1; }
    sd_slurm_log "a port was taken between the check and the bind; retrying with other ports"
    sd_slurm__stop_daemons 1
    for p in slurmctld slurmd; do
      [ -f "$d/$p.log" ] && mv "$d/$p.log" "$d/$p.log.try$attempt"
      [ -f "$d/$p.out" ] && mv "$d/$p.out" "$d/$p.out.try$attempt"
    done
  done
  sd_slurm_log "single-node Slurm up in $d (ports $SD_SLURM_PORTS, node: $node)"
}
