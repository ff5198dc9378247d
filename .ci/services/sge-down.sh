#!/usr/bin/env bash
# Stop the single-node Grid Engine started by sge-up.sh: delete its jobs, then stop
# sge_execd and sge_qmaster by their pid files. Idempotent; keeps the cell for a fast restart.
set -uo pipefail
dir="${CAIMAN_DASK_SGE_DIR:-/tmp/caiman-dask-sge}"
export SGE_ROOT=/var/lib/gridengine SGE_CELL=default SGE_QMASTER_PORT=16444 SGE_EXECD_PORT=16445
spool=/var/spool/gridengine
host="$(hostname -s)"

execd_pid() {  # execd names its spool dir by the resolved name (localhost)
    ls "$spool"/execd/*/execd.pid 2>/dev/null | head -1
}
stop() {  # stop <pid file>: TERM, wait up to 10 s, then KILL
    local pid
    [ -f "$1" ] || return 0
    pid="$(cat "$1")"
    kill -TERM "$pid" 2>/dev/null || { rm -f "$1"; return 0; }
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$1"
}

if command -v qdel >/dev/null; then
    timeout 10 qdel -f -u '*' >/dev/null 2>&1 || true
fi
stop "$(execd_pid)"
stop "$spool/qmaster/qmaster.pid"
rm -f "$dir/env"
echo "== sge-down: stopped"
