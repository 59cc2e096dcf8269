# lib.sh - helpers of the catalog-sync / scmctl integration tests.
# Sourced by each test; needs: SCMCTL, CATALOG_SYNC, SCM_SIM_BIN (binaries),
# SCMFLOW_SOURCE_DIR, and the pg + kafka fixtures (tests/lib/testenv.sh).
#
# Each test gets its own database, topic prefix, master key and its own
# scm-sim process (the tests change the simulator's catalog and faults, so
# they must not share the fixture's simulator with other tests).
set -u
. "$SCMFLOW_SOURCE_DIR/tests/lib/testenv.sh"
tenv_load

CT_NAME=${CT_NAME:-catalog}
CT_DIR=$(mktemp -d "/tmp/ct-$CT_NAME.XXXXXX")
CT_PIDS=()
CT_SEED=${CT_SEED:-$SCMFLOW_SOURCE_DIR/deploy/scm-sim/seed-test.json}
CT_LOGIN=api_admin
CT_PASSWORD='Test-Passw0rd!'
CT_CUSTOMER=scmflow-test

ct_cleanup() {
    local rc=$?
    for p in "${CT_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${CT_PIDS[@]}"; do
        for _ in $(seq 1 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
    done
    # Workers run under ASan/UBSan in the sanitizer build: a report in a
    # worker's log fails the test even when everything else passed.
    if grep -lE "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:" "$CT_DIR"/*.log >/dev/null 2>&1; then
        echo "FAIL: sanitizer report in $(grep -lE "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:" "$CT_DIR"/*.log)" >&2
        rc=1
    fi
    if [ $rc -ne 0 ]; then
        echo "---- logs ($CT_DIR) ----" >&2
        for f in "$CT_DIR"/*.log; do [ -f "$f" ] && { echo "== $f" >&2; tail -n 40 "$f" >&2; }; done
    else
        [ -n "${CT_DB_URL:-}" ] && tenv_drop_db "$CT_DB_URL"
        rm -rf "$CT_DIR"
    fi
    exit $rc
}
trap ct_cleanup EXIT

ct_fail() { echo "FAIL: $*" >&2; exit 1; }
ct_ok() { echo "ok: $*"; }

# ct_setup: database, topic prefix, master key; exports the worker settings.
ct_setup() {
    CT_DB_URL=$(tenv_new_db "$CT_NAME")
    export SCMFLOW_DATABASE_URL=$CT_DB_URL
    export SCMFLOW_TOPIC_PREFIX=$(tenv_topic_prefix "$CT_NAME")
    export SCMFLOW_MASTER_KEY_FILE=$(tenv_master_key "$CT_DIR/master.key")
    export SCMFLOW_LOG_FORMAT=text SCMFLOW_LOG_LEVEL=info
    export SCMFLOW_CATALOG_JOB_POLL=200ms
}

# ct_sim [ARGS...]: start a private scm-sim; sets CT_SIM (http://.../api), CT_SIM_ADMIN.
ct_sim() {
    "$SCM_SIM_BIN" --listen 127.0.0.1:0 --port-file "$CT_DIR/sim.port" --seed "$CT_SEED" --quiet "$@" \
        > "$CT_DIR/sim.log" 2>&1 &
    CT_PIDS+=($!)
    tenv_wait_for 60 test -s "$CT_DIR/sim.port" || ct_fail "scm-sim did not start"
    local port; port=$(cat "$CT_DIR/sim.port")
    CT_SIM=http://127.0.0.1:$port/api
    CT_SIM_ADMIN=http://127.0.0.1:$port/__sim
    export SCMFLOW_SCM_BASE_URL=$CT_SIM
}

# ct_worker NAME [ENV=VALUE...]: start a catalog-sync replica; its pid in CT_LAST_PID.
# Its consumer group carries the test's topic prefix: groups are broker-wide,
# and fault.catalog.import_kill's SIGKILLed replicas stalled the rebalances of
# integration.catalog.import, run beside it, for 4 minutes.
ct_worker() {
    local name=$1; shift
    env SCMFLOW_CONSUMER_GROUP="${SCMFLOW_TOPIC_PREFIX}scmflow-catalog-sync" "$@" "$CATALOG_SYNC" > "$CT_DIR/$name.log" 2>&1 &
    CT_LAST_PID=$!
    CT_PIDS+=($CT_LAST_PID)
}

# ct_account: store the seed's MRAO account as the default account.
ct_account() {
    printf '%s\n' "$CT_PASSWORD" | "$SCMCTL" account set --name main --login "$CT_LOGIN" \
        --customer-uri "$CT_CUSTOMER" --base-url "$CT_SIM" --password-stdin \
        > "$CT_DIR/account.out" 2>&1 || { cat "$CT_DIR/account.out" >&2; ct_fail "account set"; }
}

ct_sql() { psql "$CT_DB_URL" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }

ct_sim_post() { curl -fsS -X POST -H 'Content-Type: application/json' -d "$2" "$CT_SIM_ADMIN/$1" >/dev/null; }
