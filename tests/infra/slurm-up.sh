#!/usr/bin/env bash
# Make a one-node Slurm answer: munged, slurmctld and slurmd on this machine, a CPU-only partition.
#
# Idempotent and fast when the controller answers (one `scontrol ping`). Writes /etc/slurm/slurm.conf
# only when it is absent or was written by this script (a site's own config is never replaced).
# No slurmdbd: accounting_storage/none, so job state comes from scontrol while slurmctld keeps the
# job (MinJobAge) and a finished job is also appended to the jobcomp/filetxt log for people to read.
# Needs root (the daemons and munged are started as root / the munge user). Logs: /var/log/slurm.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARK="# written by mbctl tests/infra/slurm-up.sh"
WAIT=${MBCTL_SLURM_WAIT:-60}

answers() { timeout 10 scontrol ping 2>/dev/null | grep -q "is UP"; }
node_ready() { timeout 10 sinfo --noheader --responding -o %t 2>/dev/null | grep -qE "idle|mix|alloc"; }

if answers && node_ready; then
  exit 0
fi
for tool in munged slurmctld slurmd scontrol; do
  if ! command -v "$tool" >/dev/null; then
    echo "slurm-up: no $tool on PATH (install slurm-wlm and munge: make system)" >&2
    exit 1
  fi
done
if [[ $(id -u) -ne 0 ]]; then
  echo "slurm-up: the Slurm daemons must be started as root (run: sudo $0)" >&2
  exit 1
fi
if [[ -f $CONF ]] && ! grep -qF "$MARK" "$CONF"; then
  if answers; then
    echo "slurm-up: slurmctld answers but no node is ready; not touching the site's $CONF" >&2
  else
    echo "slurm-up: $CONF exists and is not ours; start that cluster, or move it away" >&2
  fi
  exit 1
fi

host=$(hostname -s)
cpus=$(nproc)
# the test partition packs concurrent CPU jobs: claim at least 8 CPUs (config_overrides below)
((cpus < 8)) && cpus=8
memory=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/slurm
cat >"$CONF" <<EOF
$MARK
ClusterName=mbctl-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# no cgroups in a container: track processes by parentage, bind nothing
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
# finished jobs stay visible to scontrol for five minutes; cancelled ones are killed fast
MinJobAge=300
KillWait=5
InactiveLimit=0
NodeName=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

# munged: its socket directory belongs to the munge user
mkdir -p /run/munge
chown munge:munge /run/munge
chmod 0755 /run/munge
if ! runuser -u munge -- munge -n >/dev/null 2>&1 </dev/null || ! pgrep -u munge -x munged >/dev/null; then
  [[ -s /etc/munge/munge.key ]] || runuser -u munge -- mungekey --create
  runuser -u munge -- munged
fi

start() {
  local name=$1
  shift
  local pidfile=/run/slurm/$name.pid
  if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    return 0
  fi
  echo "slurm-up: starting $name (log: /var/log/slurm/$name.log)" >&2
  "$name" "$@"
}
start slurmctld
start slurmd

deadline=$((SECONDS + WAIT))
until answers && node_ready; do
  if ((SECONDS >= deadline)); then
    echo "slurm-up: slurm did not become ready within ${WAIT}s; last lines of the logs:" >&2
    tail -n 10 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
    exit 1
  fi
  # a node left DOWN by an earlier daemon comes back once it registers
  scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
  sleep 1
done
echo "slurm-up: slurmctld and slurmd up (node $host, partition cpu, $cpus CPUs)" >&2
