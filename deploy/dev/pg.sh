#!/usr/bin/env bash
# pg.sh - a throwaway PostgreSQL 15 cluster for development and tests.
#
#   pg.sh start DIR [--durable]   initdb (once) + start + create db "scmflow";
#                                 writes DIR/env (sourceable) and prints it
#   pg.sh stop DIR                fast shutdown
#   pg.sh status DIR              exit 0 when running (prints DIR/env)
#
# PostgreSQL refuses to run as root: when run as root the cluster runs as the
# "postgres" user (DIR is chowned, and every parent directory is made
# traversable for it). Without --durable the cluster runs with fsync=off: it
# is meant to be thrown away. start on a running DIR reuses it (idempotent).
set -euo pipefail

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
START_TIMEOUT_S=${PG_START_TIMEOUT_S:-60}

die() { echo "pg.sh: $*" >&2; exit 1; }
usage() { echo "usage: pg.sh start|stop|status DIR [--durable]" >&2; exit 2; }

[ $# -ge 2 ] || usage
cmd=$1; dir=$2; shift 2
durable=0
for a in "$@"; do
    case $a in
        --durable) durable=1 ;;
        *) usage ;;
    esac
done
[ -x "$PGBIN/pg_ctl" ] || die "PostgreSQL binaries not found in $PGBIN (set PGBIN)"

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
data=$dir/data

as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# The postgres user must be able to reach DIR even when it lives under a
# root-owned private directory (CI temp dirs): add o+x on the parents that
# it cannot traverse, and nothing more.
make_reachable() {
    [ "$(id -u)" = 0 ] || return 0
    chown postgres "$dir"
    local p=$dir
    while [ "$p" != / ]; do
        if ! runuser -u postgres -- test -x "$p"; then
            chmod o+x "$p"
        fi
        p=$(dirname "$p")
    done
}

is_running() {
    [ -f "$data/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$data" status >/dev/null 2>&1
}

port_in_use() {
    ss -Hltn "sport = :$1" 2>/dev/null | grep -q . 
}

pick_port() {
    local p i
    for i in $(seq 1 50); do
        p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
        if ! port_in_use "$p"; then echo "$p"; return 0; fi
    done
    die "could not find a free port"
}

write_env() {
    local port=$1
    cat > "$dir/env.tmp" <<ENV
export SCMFLOW_DATABASE_URL=postgresql://postgres@127.0.0.1:$port/scmflow
export PGHOST=127.0.0.1
export PGPORT=$port
export PGUSER=postgres
ENV
    mv "$dir/env.tmp" "$dir/env"
}

wait_ready() {
    local port=$1 deadline=$(( SECONDS + START_TIMEOUT_S ))
    until "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres; do
        if [ $SECONDS -ge $deadline ]; then
            tail -n 20 "$dir/log" >&2 || true
            die "PostgreSQL in $dir not ready after ${START_TIMEOUT_S}s"
        fi
        sleep 0.1
    done
}

create_db() {
    local port=$1
    local exists
    exists=$(psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -XAtq \
        -c "SELECT 1 FROM pg_database WHERE datname = 'scmflow'")
    if [ "$exists" != 1 ]; then
        psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -Xq \
            -c "CREATE DATABASE scmflow" >/dev/null
    fi
}

start() {
    make_reachable
    if is_running; then
        local port
        port=$(sed -n 4p "$data/postmaster.pid")
        wait_ready "$port"
        create_db "$port"
        write_env "$port"
        cat "$dir/env"
        return 0
    fi
    if [ ! -f "$data/PG_VERSION" ]; then
        rm -rf "$data"
        as_pg "$PGBIN/initdb" -D "$data" -A trust -U postgres -E UTF8 \
            --no-locale >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    fi
    # Unix socket inside DIR when the path fits (sun_path is 108 bytes),
    # otherwise TCP only: clients use 127.0.0.1 anyway.
    local sockdir=$dir
    [ ${#dir} -le 80 ] || sockdir=
    local opts="-c listen_addresses=127.0.0.1 -c max_connections=200"
    [ $durable = 1 ] || opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    local attempt port
    for attempt in 1 2 3 4 5; do
        port=$(pick_port)
        # Ports can be taken between the check and the bind by a parallel
        # fixture: retry with another port.
        if as_pg "$PGBIN/pg_ctl" -D "$data" -l "$dir/log" -w -t "$START_TIMEOUT_S" \
            -o "-p $port -k '$sockdir' $opts" start >/dev/null 2>&1; then
            wait_ready "$port"
            create_db "$port"
            write_env "$port"
            cat "$dir/env"
            return 0
        fi
        is_running && break
    done
    tail -n 20 "$dir/log" >&2 || true
    die "could not start PostgreSQL in $dir"
}

stop() {
    if [ -f "$data/postmaster.pid" ]; then
        if ! as_pg "$PGBIN/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null 2>&1; then
            if is_running; then die "could not stop PostgreSQL in $dir"; fi
        fi
    fi
    return 0
}

case $cmd in
    start) start ;;
    stop) stop ;;
    status)
        if is_running; then [ -f "$dir/env" ] && cat "$dir/env"; exit 0; fi
        echo "pg.sh: not running in $dir" >&2; exit 1 ;;
    *) usage ;;
esac
