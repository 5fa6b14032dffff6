#!/usr/bin/env bash
# A throw-away single-node SLURM (munge + slurmctld + slurmd) without systemd, for tests and laptops.
#
#   cluster/slurm/local-slurm.sh start DIR     write config into DIR, start the daemons, wait until the node is idle
#   cluster/slurm/local-slurm.sh stop DIR      cancel jobs, stop only the daemons this script started
#   cluster/slurm/local-slurm.sh run DIR -- CMD ...   start, run CMD with SLURM_CONF set, always stop (trap)
#
# Needs Debian's slurmctld, slurmd, slurm-client and munge packages
# (apt-get install --no-install-recommends slurmctld slurmd slurm-client munge) and root (slurmd runs jobs
# as their submitting user).  After `start`, use the cluster with:  export SLURM_CONF=DIR/slurm.conf
# Pitfalls handled here: munged as root needs --force and a world-executable socket directory; slurmd is
# started with -N localhost whatever the hostname; DefMemPerCPU is set so memory-less jobs don't block the
# node; everything listens on 127.0.0.1 only.
set -euo pipefail

usage() { sed -n '2,12p' "$0" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1; dir=$(mkdir -p "$2" && cd "$2" && pwd); shift 2

start() {
  for b in munged slurmctld slurmd sinfo sbatch; do
    command -v "$b" >/dev/null || { echo "local-slurm: $b not found (apt-get install slurmctld slurmd slurm-client munge)" >&2; exit 1; }
  done
  [ "$(id -u)" = 0 ] || { echo "local-slurm: must run as root (slurmd starts jobs as their user)" >&2; exit 1; }
  mkdir -p "$dir"/{munge,state,spool,log}
  chmod 755 "$dir" "$dir/munge"             # the socket directory must be world-executable
  if [ ! -s "$dir/munge/munge.key" ]; then
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$dir/munge/munge.key"
  fi
  local cpus mem_mb
  cpus=$(nproc)
  mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))
  cat > "$dir/slurm.conf" <<EOF
ClusterName=ecmlocal
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=${SLURMCTLD_PORT:-16817}
SlurmdPort=${SLURMD_PORT:-16818}
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF=$dir/slurm.conf
  munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munge.seed"
  slurmctld -f "$SLURM_CONF" -i
  slurmd -f "$SLURM_CONF" -N localhost
  for _ in $(seq 1 60); do
    state=$(sinfo -h -N -o '%T' 2>/dev/null | head -1 || true)
    case "$state" in idle*|mixed*|allocated*) echo "local-slurm: node $state; export SLURM_CONF=$SLURM_CONF"; return 0;; esac
    sleep 0.5
  done
  echo "local-slurm: node did not become idle (state '${state:-?}'); logs in $dir/log" >&2
  tail -5 "$dir"/log/*.log >&2 || true
  stop; exit 1
}

stop() {
  export SLURM_CONF=$dir/slurm.conf
  if [ -f "$SLURM_CONF" ] && [ -f "$dir/slurmctld.pid" ]; then
    scancel --user="$(id -un)" >/dev/null 2>&1 || true
    for _ in $(seq 1 20); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.5; done
  fi
  for f in slurmd.pid slurmctld.pid munge/munged.pid; do   # only the PIDs this script started
    if [ -f "$dir/$f" ]; then
      pid=$(cat "$dir/$f"); kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$dir/$f"
    fi
  done
  echo "local-slurm: stopped"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  run)
    [ "${1:-}" = "--" ] && shift
    [ $# -ge 1 ] || usage
    trap stop EXIT
    start
    SLURM_CONF=$dir/slurm.conf "$@"
    ;;
  *) usage ;;
esac
