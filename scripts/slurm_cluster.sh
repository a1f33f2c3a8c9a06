#!/usr/bin/env bash
# A throw-away single-node Slurm cluster for the tests (Debian's slurm-wlm + munge, as root).
#
#   scripts/slurm_cluster.sh start DIR   writes DIR/slurm.conf, starts munged (when none runs),
#                                        slurmctld and slurmd, waits until the node is idle;
#                                        prints the SLURM_CONF path
#   scripts/slurm_cluster.sh stop DIR    stops the daemons started for DIR
#
# State, logs and pid files stay under DIR; the ports are picked free at start.
set -euo pipefail
cmd=${1:?start|stop}
dir=$(realpath -m "${2:?DIR}")
conf=$dir/slurm.conf

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

case "$cmd" in
start)
  [ "$(id -u)" = 0 ] || { echo "slurm_cluster: must run as root" >&2; exit 1; }
  for bin in munged slurmctld slurmd sbatch; do
    command -v "$bin" >/dev/null || { echo "slurm_cluster: $bin missing: run scripts/setup.sh --test" >&2; exit 1; }
  done
  mkdir -p "$dir/state" "$dir/spool"
  host=$(hostname -s)
  # The node's real CPU and memory figures, as slurmd sees them.
  node=$(slurmd -C | head -n 1)
  cat > "$conf" <<CONF
ClusterName=hermes-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
$node State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  if ! pgrep -x munged >/dev/null; then
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    [ -s /etc/munge/munge.key ] || mungekey --create >/dev/null 2>&1 || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null
    chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
    chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key
    su -s /bin/sh munge -c munged 2>/dev/null || munged --force
    touch "$dir/started-munged"
  fi
  slurmctld -f "$conf"
  slurmd -f "$conf"
  export SLURM_CONF=$conf
  for _ in $(seq 1 100); do
    if sinfo -h -o '%t' 2>/dev/null | grep -qx idle; then echo "$conf"; exit 0; fi
    sleep 0.2
  done
  echo "slurm_cluster: the node did not become idle; logs in $dir" >&2
  sinfo >&2 || true
  exit 1
  ;;
stop)
  for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid"; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  if [ -f "$dir/started-munged" ]; then pkill -x munged || true; fi
  ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
