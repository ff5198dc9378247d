#!/usr/bin/env bash
# Stop the single-node SLURM started by slurm-up.sh: cancel its jobs, then TERM slurmd,
# slurmctld and munged by their pid files. Idempotent; leaves the state dir for logs.
set -uo pipefail
dir="${CAIMAN_DASK_SLURM_DIR:-/tmp/caiman-dask-slurm}"
export SLURM_CONF="$dir/slurm.conf"

stop() {  # stop <pid file>: TERM, wait up to 10 s, then KILL
    local pid
    [ -f "$1" ] || return 0
    pid="$(cat "$1")"
    kill -TERM "$pid" 2>/dev/null || { rm -f "$1"; return 0; }
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$1"
}

if [ -f "$SLURM_CONF" ] && command -v scancel >/dev/null; then
    timeout 10 scancel --full --quiet --user=root 2>/dev/null || true
fi
stop "$dir/run/slurmd.pid"
stop "$dir/run/slurmctld.pid"
stop "$dir/run/munged.pid"
rm -f "$dir/env"
echo "== slurm-down: stopped (logs in $dir/log)"
