# testenv.sh - helpers for bash tests; source it:
#   . "$SCMFLOW_SOURCE_DIR/tests/lib/testenv.sh"; tenv_load
# Also: tenv_kafka_private DIR / tenv_kafka_private_stop (a private broker
# for fault injection). Tests get the test environment from ${CMAKE_BINARY_DIR}/testenv/env.sh,
# written by the ctest fixtures pg/kafka/sim (tests/cmake/00-fixtures.cmake).
# Pass its path as TESTENV_ENV, or TESTENV_DIR, or run from the build tree
# (ctest's working directory is under it).

# tenv_fail MSG: print "FAIL: MSG" to stderr and exit 1.
tenv_fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# tenv_load: source env.sh (searching up from the current directory when
# neither TESTENV_ENV nor TESTENV_DIR is set).
tenv_load() {
    local f=${TESTENV_ENV:-}
    if [ -z "$f" ] && [ -n "${TESTENV_DIR:-}" ]; then f=$TESTENV_DIR/env.sh; fi
    if [ -z "$f" ]; then
        local d=$PWD
        while [ "$d" != / ]; do
            if [ -f "$d/testenv/env.sh" ]; then f=$d/testenv/env.sh; break; fi
            d=$(dirname "$d")
        done
    fi
    [ -n "$f" ] && [ -f "$f" ] || tenv_fail "test environment not found (env.sh; set TESTENV_ENV or TESTENV_DIR)"
    # shellcheck disable=SC1090
    . "$f"
}

# tenv_rand: 8 random hex characters.
tenv_rand() {
    od -An -N4 -tx1 /dev/urandom | tr -d ' \n'
}

# tenv_new_db NAME: create a fresh database NAME_<random> (dropping a stale
# one of that name) and print its URL. Needs SCMFLOW_DATABASE_URL.
tenv_new_db() {
    [ -n "${1:-}" ] || tenv_fail "tenv_new_db: NAME required"
    [ -n "${SCMFLOW_DATABASE_URL:-}" ] || tenv_fail "tenv_new_db: SCMFLOW_DATABASE_URL not set (fixture pg missing?)"
    local name
    name=$(printf '%s_%s' "$1" "$(tenv_rand)" | tr 'A-Z.-' 'a-z__' | tr -cd 'a-z0-9_')
    psql "$SCMFLOW_DATABASE_URL" -Xq -v ON_ERROR_STOP=1 \
        -c "DROP DATABASE IF EXISTS \"$name\"" -c "CREATE DATABASE \"$name\"" >/dev/null \
        || tenv_fail "could not create database $name"
    printf '%s/%s\n' "${SCMFLOW_DATABASE_URL%/*}" "$name"
}

# tenv_drop_db URL: drop a database made by tenv_new_db (best effort).
tenv_drop_db() {
    local name=${1##*/}
    psql "$SCMFLOW_DATABASE_URL" -Xq -c "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" >/dev/null 2>&1 || true
}

# tenv_topic_prefix NAME: print a unique topic prefix "t.<name>.<random>.".
tenv_topic_prefix() {
    [ -n "${1:-}" ] || tenv_fail "tenv_topic_prefix: NAME required"
    printf 't.%s.%s.\n' "$(printf '%s' "$1" | tr -c 'a-zA-Z0-9_-' '_')" "$(tenv_rand)"
}

# tenv_wait_for TIMEOUT_S CMD...: run CMD every 100 ms until it succeeds;
# returns 1 with a message after TIMEOUT_S seconds.
tenv_wait_for() {
    local timeout=$1; shift
    local deadline=$(( $(date +%s%N) / 1000000 + timeout * 1000 ))
    until "$@" >/dev/null 2>&1; do
        if [ $(( $(date +%s%N) / 1000000 )) -ge $deadline ]; then
            echo "timeout after ${timeout}s waiting for: $*" >&2
            return 1
        fi
        sleep 0.1
    done
}

# tenv_master_key FILE: create a 32-byte random master key (mode 0600)
# unless FILE exists; prints FILE.
tenv_master_key() {
    [ -n "${1:-}" ] || tenv_fail "tenv_master_key: FILE required"
    if [ ! -s "$1" ]; then
        (umask 077 && head -c 32 /dev/urandom > "$1.tmp.$$" && mv -f "$1.tmp.$$" "$1") \
            || tenv_fail "could not write master key $1"
    fi
    chmod 600 "$1"
    printf '%s\n' "$1"
}

# tenv_kafka_ctl PATH?QUERY: POST to the dev broker's control API.
tenv_kafka_ctl() {
    curl -fsS -X POST "${KAFKA_DEVBROKER_CONTROL:?}/$1"
}

# tenv_kafka_private DIR [BROKERS]: start a private kafka-devbroker (for
# fault injection, which would disturb other tests on the shared one) and
# set TENV_KAFKA_BROKERS, TENV_KAFKA_CONTROL, TENV_KAFKA_PID. Stop it with
# tenv_kafka_private_stop (do it in an EXIT trap).
tenv_kafka_private() {
    local d=${1:?DIR} n=${2:-3}
    mkdir -p "$d"
    rm -f "$d/bootstrap" "$d/control.port"
    "${SCMFLOW_BIN_DIR:?}/kafka-devbroker" --brokers "$n" --bootstrap-file "$d/bootstrap" \
        --control-port-file "$d/control.port" > "$d/kafka-devbroker.log" 2>&1 &
    TENV_KAFKA_PID=$!
    tenv_wait_for 30 test -s "$d/control.port" || tenv_fail "private kafka-devbroker did not start (see $d/kafka-devbroker.log)"
    TENV_KAFKA_BROKERS=$(cat "$d/bootstrap")
    TENV_KAFKA_CONTROL=http://127.0.0.1:$(cat "$d/control.port")
}

# tenv_kafka_private_stop: SIGTERM the private broker and wait (10 s, then
# SIGKILL). Returns the broker's exit status.
tenv_kafka_private_stop() {
    [ -n "${TENV_KAFKA_PID:-}" ] || return 0
    local pid=$TENV_KAFKA_PID rc=0
    TENV_KAFKA_PID=
    kill -TERM "$pid" 2>/dev/null || return 0
    tenv_wait_for 10 bash -c "! kill -0 $pid" || kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || rc=$?
    return $rc
}
