#!/usr/bin/env bash
# Start a single-node Grid Engine (Debian's gridengine 8.1.9) on this machine.
#
# Runs as root, non-interactively, and is idempotent: a second call finds the queue up and
# only prints its environment. Grid Engine's cell lives in fixed paths
# (/var/lib/gridengine, /var/spool/gridengine: one cell per machine), but the daemons run
# on non-default ports (qmaster 16444, execd 16445, set through SGE_QMASTER_PORT and
# SGE_EXECD_PORT), so they never answer a client of a system install on 6444/6445. The
# environment to use the cell is written to $CAIMAN_DASK_SGE_DIR/env (default
# /tmp/caiman-dask-sge/env); `source` it (tests read it themselves).
# Stop it with .ci/services/sge-down.sh. Facts: ../shared/docs/real-services.md.
set -euo pipefail
dir="${CAIMAN_DASK_SGE_DIR:-/tmp/caiman-dask-sge}"
start=$(date +%s%N)
export SGE_ROOT=/var/lib/gridengine SGE_CELL=default
export SGE_QMASTER_PORT=16444 SGE_EXECD_PORT=16445
common="$SGE_ROOT/$SGE_CELL/common"
spool=/var/spool/gridengine
host="$(hostname -s)"
mkdir -p "$dir"

execd_pid() {  # execd names its spool dir by the resolved name (localhost)
    ls "$spool"/execd/*/execd.pid 2>/dev/null | head -1
}
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
write_env() {
    printf 'export SGE_ROOT=%s SGE_CELL=%s SGE_QMASTER_PORT=%s SGE_EXECD_PORT=%s\n' \
        "$SGE_ROOT" "$SGE_CELL" "$SGE_QMASTER_PORT" "$SGE_EXECD_PORT" > "$dir/env"
    cat "$dir/env"
}
queue_ok() {  # the queue instance exists and is in no alarm/unknown/error state
    local states
    states="$(qstat -f -q all.q 2>/dev/null | awk -v h="all.q@$host" '$1 == h {print $6}')" || return 1
    qstat -f -q all.q 2>/dev/null | grep -q "^all.q@$host" && [ -z "$states" ]
}

if ! command -v sge_qmaster >/dev/null || ! command -v sge_execd >/dev/null; then
    echo "== sge-up: installing Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    debconf-set-selections <<EOF
gridengine-common shared/gridenginecell string $SGE_CELL
gridengine-common shared/gridengineconfig boolean false
gridengine-common shared/gridenginemaster string $host
gridengine-client shared/gridenginecell string $SGE_CELL
gridengine-client shared/gridengineconfig boolean false
gridengine-client shared/gridenginemaster string $host
gridengine-master shared/gridenginecell string $SGE_CELL
gridengine-master shared/gridengineconfig boolean false
gridengine-master shared/gridenginemaster string $host
EOF
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends \
        gridengine-master gridengine-exec gridengine-client >/dev/null
fi

if alive "$spool/qmaster/qmaster.pid" && alive "$(execd_pid)" && queue_ok; then
    echo "== sge-up: already running"
    write_env
    exit 0
fi

# The cell: names, host aliases (the host name resolves to 127.0.0.1 = "localhost"), spool.
getent hosts "$host" >/dev/null || echo "127.0.0.1 $host" >> /etc/hosts
echo "$host" > "$common/act_qmaster"
grep -qx "$host localhost" "$common/host_aliases" 2>/dev/null || echo "$host localhost" >> "$common/host_aliases"
mkdir -p "$spool/spooldb" "$spool/qmaster" "$spool/execd"
chown -R sgeadmin:sgeadmin "$spool" "$common"
if [ ! -e "$spool/spooldb/sge" ]; then
    su -s /bin/sh -c "/usr/share/gridengine/scripts/init_cluster $SGE_ROOT $SGE_CELL \
        $spool/spooldb sgeadmin" sgeadmin >/dev/null
fi

alive "$spool/qmaster/qmaster.pid" || sge_qmaster
for _ in $(seq 1 40); do qconf -sh >/dev/null 2>&1 && break; sleep 0.25; done

# qconf -m* edits only through $EDITOR (one executable): a sed script driven by $SGE_EDIT.
edit="$dir/edit.sh"
printf '#!/bin/sh\nsed -i -E "$SGE_EDIT" "$1"\n' > "$edit"
chmod +x "$edit"
export EDITOR="$edit"
SGE_EDIT='s/^min_uid .*/min_uid 0/; s/^min_gid .*/min_gid 0/' qconf -mconf global >/dev/null 2>&1
SGE_EDIT='s/^schedule_interval .*/schedule_interval 0:0:1/' qconf -msconf >/dev/null 2>&1
qconf -sh 2>/dev/null | grep -qx "$host" || qconf -ah "$host" >/dev/null
qconf -ss 2>/dev/null | grep -qx "$host" || qconf -as "$host" >/dev/null

alive "$(execd_pid)" || sge_execd
for _ in $(seq 1 40); do qconf -sel 2>/dev/null | grep -qx "$host" && break; sleep 0.25; done

# One queue on this host: bash jobs, no parallel environment, 8 slots.
queue_edit="s/^hostlist .*/hostlist $host/; s/^pe_list .*/pe_list NONE/; s/^slots .*/slots 8/; s/^load_thresholds .*/load_thresholds NONE/; s/^shell .*/shell \/bin\/bash/; s/^shell_start_mode .*/shell_start_mode unix_behavior/"
if qconf -sql 2>/dev/null | grep -qx all.q; then
    SGE_EDIT="$queue_edit" qconf -mq all.q >/dev/null 2>&1
else
    SGE_EDIT="$queue_edit" qconf -aq all.q >/dev/null 2>&1
fi
qmod -c "all.q@$host" >/dev/null 2>&1 || true
qmod -e "all.q@$host" >/dev/null 2>&1 || true

for _ in $(seq 1 80); do queue_ok && break; sleep 0.25; done
if ! queue_ok; then
    echo "sge-up: queue all.q@$host is not ready; see $spool/qmaster/messages" >&2
    qstat -f >&2 || true
    exit 1
fi
write_env
echo "== sge-up: ready in $(( ($(date +%s%N) - start) / 1000000 )) ms"
