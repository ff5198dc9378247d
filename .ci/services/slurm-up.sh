#!/usr/bin/env bash
# Start a single-node SLURM on this machine, isolated from any system install.
#
# Runs as root, non-interactively, and is idempotent: a second call finds the cluster up
# and only prints its environment. Everything lives under $CAIMAN_DASK_SLURM_DIR
# (default /tmp/caiman-dask-slurm): its own munge key and socket, slurm.conf, state, logs
# and pid files. Ports are non-default (slurmctld 16817, slurmd 16818), so a system SLURM
# on 6817/6818 is left alone. The environment to use the cluster is written to
# $CAIMAN_DASK_SLURM_DIR/env; `source` it (tests read it themselves).
# Stop it with .ci/services/slurm-down.sh. Facts: ../shared/docs/real-services.md.
set -euo pipefail
dir="${CAIMAN_DASK_SLURM_DIR:-/tmp/caiman-dask-slurm}"
start=$(date +%s%N)

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    echo "== slurm-up: installing Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi

host="$(hostname -s)"
getent hosts "$host" >/dev/null || echo "127.0.0.1 $host" >> /etc/hosts

mkdir -p "$dir"/{state,spool,log,run}
conf="$dir/slurm.conf"
if alive "$dir/run/slurmctld.pid" && alive "$dir/run/slurmd.pid" \
        && SLURM_CONF="$conf" sinfo -h -o %T 2>/dev/null | grep -q idle; then
    echo "== slurm-up: already running ($conf)"
    cat "$dir/env"
    exit 0
fi

# munge: own key, socket, pid and seed files.
if [ ! -s "$dir/munge.key" ]; then
    dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 status=none
fi
chmod 0400 "$dir/munge.key"
chmod 0700 "$dir"/run
if ! alive "$dir/run/munged.pid"; then
    munged --force --socket="$dir/run/munge.sock" --key-file="$dir/munge.key" \
        --pid-file="$dir/run/munged.pid" --log-file="$dir/log/munged.log" \
        --seed-file="$dir/state/munged.seed"
fi

# slurm.conf: one node (this machine's topology, 95% of its memory), one partition.
topology="$(slurmd -C | head -1 | sed -E 's/^NodeName=[^ ]+ //; s/RealMemory=[0-9]+//')"
memory="$(slurmd -C | head -1 | sed -E 's/.*RealMemory=([0-9]+).*/\1/')"
cat > "$conf" <<EOF
ClusterName=caimandask
SlurmctldHost=$host
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/run/munge.sock
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MailProg=/bin/true
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SchedulerType=sched/backfill
MinJobAge=10
KillWait=5
NodeName=$host NodeAddr=127.0.0.1 $topology RealMemory=$((memory * 95 / 100)) State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

export SLURM_CONF="$conf"
alive "$dir/run/slurmctld.pid" || slurmctld -c   # -c: clean start, no old jobs
alive "$dir/run/slurmd.pid" || slurmd

for _ in $(seq 1 60); do
    if sinfo -h -o %T 2>/dev/null | grep -q idle; then break; fi
    sleep 0.5
done
if ! sinfo -h -o %T | grep -q idle; then
    echo "slurm-up: the node did not become idle; see $dir/log/" >&2
    sinfo >&2 || true
    exit 1
fi
echo "export SLURM_CONF=$conf" > "$dir/env"
cat "$dir/env"
echo "== slurm-up: ready in $(( ($(date +%s%N) - start) / 1000000 )) ms (state in $dir)"
