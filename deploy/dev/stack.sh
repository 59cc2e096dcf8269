#!/usr/bin/env bash
# stack.sh - the whole scmflow stack on one machine, no Docker:
# PostgreSQL (pg.sh), the dev Kafka broker (kafka-devbroker), the SCM
# simulator (scm-sim) and the four workers, each in the background.
#
#   stack.sh up|down|status [--dir DIR] [--no-workers]   (DIR default: .dev)
#
# up reuses whatever already runs; logs go to DIR/logs/, pids to DIR/run/,
# a master key is generated once (DIR/master.key, 32 random bytes, 0600)
# and DIR/env holds the SCMFLOW_* variables:  . DIR/env
# Binaries are looked up in SCMFLOW_BUILD_DIR (default <repo>/build), then
# <repo>/build-*/, then PATH.
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
WORKERS=(catalog-sync order-submitter status-poller repo-ingest)
START_TIMEOUT_S=${STACK_START_TIMEOUT_S:-60}
STOP_TIMEOUT_S=${STACK_STOP_TIMEOUT_S:-30}

usage() { echo "usage: stack.sh up|down|status [--dir DIR] [--no-workers]" >&2; exit 2; }
die() { echo "stack.sh: $*" >&2; exit 1; }
warn() { echo "stack.sh: warning: $*" >&2; }

[ $# -ge 1 ] || usage
cmd=$1; shift
dir=.dev
no_workers=0
while [ $# -gt 0 ]; do
    case $1 in
        --dir) [ $# -ge 2 ] || usage; dir=$2; shift 2 ;;
        --no-workers) no_workers=1; shift ;;
        *) usage ;;
    esac
done
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
mkdir -p "$dir/logs" "$dir/run"

find_bin() {
    local name=$1 d dirs
    # An explicit SCMFLOW_BUILD_DIR is the only place looked at (tests).
    if [ -n "${SCMFLOW_BUILD_DIR:-}" ]; then dirs=("$SCMFLOW_BUILD_DIR"); else dirs=("$src/build" "$src"/build-*); fi
    for d in "${dirs[@]}"; do
        for cand in "$d/services/$name/$name" "$d/deploy/$name/$name" "$d/testenv/bin/$name"; do
            if [ -x "$cand" ]; then echo "$cand"; return 0; fi
        done
    done
    [ -z "${SCMFLOW_BUILD_DIR:-}" ] || return 1
    command -v "$name" 2>/dev/null || return 1
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
wait_for() {
    local timeout=$1; shift
    local deadline=$(( $(now_ms) + timeout * 1000 ))
    until "$@" >/dev/null 2>&1; do
        [ "$(now_ms)" -lt $deadline ] || return 1
        sleep 0.1
    done
}
alive() { [ -f "$dir/run/$1.pid" ] && kill -0 "$(cat "$dir/run/$1.pid")" 2>/dev/null; }
spawn() {
    local name=$1; shift
    setsid "$@" </dev/null >>"$dir/logs/$name.log" 2>&1 &
    echo $! > "$dir/run/$name.pid"
}
stop_one() {
    local name=$1 pid
    [ -f "$dir/run/$name.pid" ] || return 0
    pid=$(cat "$dir/run/$name.pid")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        if ! wait_for "$STOP_TIMEOUT_S" bash -c "! kill -0 $pid"; then
            warn "$name (pid $pid) did not stop in ${STOP_TIMEOUT_S}s, killing"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        echo "stopped $name"
    fi
    rm -f "$dir/run/$name.pid"
}
free_port() {
    local p
    for _ in $(seq 1 50); do
        p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
        ss -Hltn "sport = :$p" 2>/dev/null | grep -q . || { echo "$p"; return 0; }
    done
    die "no free port"
}

up() {
    # 1. PostgreSQL
    "$src/deploy/dev/pg.sh" start "$dir/pg" > "$dir/run/pg.env"
    . "$dir/run/pg.env"

    # 2. Kafka
    local kbin
    kbin=$(find_bin kafka-devbroker) || die "kafka-devbroker not built (cmake --build build)"
    if ! alive kafka || [ ! -s "$dir/run/kafka.port" ]; then
        stop_one kafka
        rm -f "$dir/run/kafka.bootstrap" "$dir/run/kafka.port"
        spawn kafka "$kbin" --brokers 3 --bootstrap-file "$dir/run/kafka.bootstrap" \
            --control-port-file "$dir/run/kafka.port"
        wait_for "$START_TIMEOUT_S" test -s "$dir/run/kafka.port" \
            || { tail -n 20 "$dir/logs/kafka.log" >&2; die "kafka-devbroker did not start"; }
        echo "started kafka-devbroker"
    fi
    local kport brokers
    kport=$(cat "$dir/run/kafka.port"); brokers=$(cat "$dir/run/kafka.bootstrap")

    # 3. SCM simulator
    local sim_fresh=0 sbin seed=${SCM_SIM_SEED:-$src/deploy/scm-sim/seed-demo.json} scm_url=${SCMFLOW_SCM_BASE_URL:-}
    if sbin=$(find_bin scm-sim) && [ -f "$seed" ]; then
        if ! alive sim || [ ! -s "$dir/run/sim.port" ]; then
            stop_one sim
            rm -f "$dir/run/sim.port"
            # --ca-dir: the same issuing CA across restarts.
            spawn sim "$sbin" --listen 127.0.0.1:0 --port-file "$dir/run/sim.port" --seed "$seed" \
                --ca-dir "$dir/sim-ca"
            wait_for "$START_TIMEOUT_S" test -s "$dir/run/sim.port" \
                || { tail -n 20 "$dir/logs/sim.log" >&2; die "scm-sim did not start"; }
            echo "started scm-sim"
            sim_fresh=1
        fi
        scm_url=http://127.0.0.1:$(cat "$dir/run/sim.port")/api
    else
        warn "scm-sim or its seed ($seed) missing: no simulator (set SCMFLOW_SCM_BASE_URL for a real SCM)"
    fi

    # The simulator keeps its orders in memory: a fresh one has forgotten
    # every order a kept database knows (and reuses their sslIds). Start
    # from an empty scmflow database then (STACK_KEEP_DB=1 keeps it).
    if [ "${sim_fresh:-0}" = 1 ] && [ "${STACK_KEEP_DB:-0}" != 1 ] \
        && [ "$(psql "$SCMFLOW_DATABASE_URL" -XAtq -c "SELECT to_regclass('orders') IS NOT NULL" 2>/dev/null)" = t ]; then
        local w
        for w in "${WORKERS[@]}"; do stop_one "$w"; done
        psql "${SCMFLOW_DATABASE_URL%/*}/postgres" -Xq -v ON_ERROR_STOP=1 \
            -c "DROP DATABASE IF EXISTS scmflow WITH (FORCE)" -c "CREATE DATABASE scmflow" >/dev/null \
            || die "could not reset the scmflow database"
        echo "scm-sim started afresh: scmflow database reset (STACK_KEEP_DB=1 keeps it)"
    fi

    # 4. master key, generated once
    if [ ! -s "$dir/master.key" ]; then
        (umask 077 && head -c 32 /dev/urandom > "$dir/master.key")
    fi
    chmod 600 "$dir/master.key"

    # 5. the env file
    cat > "$dir/env.tmp" <<ENV
# generated by deploy/dev/stack.sh: . $dir/env
export SCMFLOW_DATABASE_URL=$SCMFLOW_DATABASE_URL
export PGHOST=$PGHOST PGPORT=$PGPORT PGUSER=$PGUSER
export SCMFLOW_KAFKA_BROKERS=$brokers
export KAFKA_DEVBROKER_CONTROL=http://127.0.0.1:$kport
export SCMFLOW_TOPIC_PREFIX=${SCMFLOW_TOPIC_PREFIX:-scm.}
export SCMFLOW_MASTER_KEY_FILE=$dir/master.key
export SCMFLOW_LOG_FORMAT=${SCMFLOW_LOG_FORMAT:-text}
# Dev pacing: the simulator issues within seconds, so check soon and often
# (production defaults: first check after 60s, ladder 30s..12h).
export SCMFLOW_SUBMIT_FIRST_CHECK=${SCMFLOW_SUBMIT_FIRST_CHECK:-1s}
export SCMFLOW_STATUS_LADDER=${SCMFLOW_STATUS_LADDER:-1s,2s,5s,10s,30s,1m,5m,30m}
export SCMFLOW_CATALOG_JOB_POLL=${SCMFLOW_CATALOG_JOB_POLL:-200ms}
ENV
    if [ -n "$scm_url" ]; then
        echo "export SCMFLOW_SCM_BASE_URL=$scm_url" >> "$dir/env.tmp"
        [ -s "$dir/run/sim.port" ] && echo "export SCM_SIM_ADMIN_URL=http://127.0.0.1:$(cat "$dir/run/sim.port")/__sim" >> "$dir/env.tmp"
    fi
    mv -f "$dir/env.tmp" "$dir/env"

    # 6. workers
    local w wbin port
    for w in "${WORKERS[@]}"; do
        [ $no_workers = 0 ] || break
        if ! wbin=$(find_bin "$w"); then
            warn "$w not built yet: skipped"
            continue
        fi
        # A worker running an older build than the one on disk is restarted.
        if alive "$w" && [ "$wbin" -nt "$dir/run/$w.pid" ]; then
            echo "$w was rebuilt: restarting it"
            stop_one "$w"
        fi
        alive "$w" && continue
        local attempt logpos
        for attempt in 1 2 3; do
            port=$(free_port)
            echo "$port" > "$dir/run/$w.http"
            logpos=$(stat -c %s "$dir/logs/$w.log" 2>/dev/null || echo 0)
            ( . "$dir/env"; SCMFLOW_HTTP_LISTEN=127.0.0.1:$port exec setsid "$wbin" \
                </dev/null >>"$dir/logs/$w.log" 2>&1 ) &
            echo $! > "$dir/run/$w.pid"
            # Ready when /healthz answers; give up early when the worker exits.
            if wait_for "$START_TIMEOUT_S" bash -c "curl -fsS http://127.0.0.1:$port/healthz || ! kill -0 $(cat "$dir/run/$w.pid")" \
                && curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
                echo "started $w (http://127.0.0.1:$port)"
                break
            fi
            if alive "$w"; then
                warn "$w runs but /healthz on $port does not answer"
                break
            fi
            # The random port was taken between the check and the bind: retry.
            if [ $attempt -lt 3 ] && tail -c +"$((logpos + 1))" "$dir/logs/$w.log" | grep -q 'Address already in use'; then
                warn "$w: port $port taken, retrying"
                continue
            fi
            tail -n 20 "$dir/logs/$w.log" >&2; die "$w exited"
        done
    done
    echo "stack up; environment: . $dir/env"
}

down() {
    local w
    for w in "${WORKERS[@]}"; do stop_one "$w"; done
    stop_one sim
    stop_one kafka
    [ -d "$dir/pg" ] && "$src/deploy/dev/pg.sh" stop "$dir/pg" && echo "stopped postgresql"
    return 0
}

status() {
    local rc=0 s
    if "$src/deploy/dev/pg.sh" status "$dir/pg" >/dev/null 2>&1; then echo "postgresql  running"; else echo "postgresql  stopped"; rc=1; fi
    for s in kafka sim "${WORKERS[@]}"; do
        if alive "$s"; then
            printf '%-16s running (pid %s)\n' "$s" "$(cat "$dir/run/$s.pid")"
        else
            printf '%-16s stopped\n' "$s"
        fi
    done
    return $rc
}

case $cmd in
    up) up ;;
    down) down ;;
    status) status ;;
    *) usage ;;
esac
