# lib.sh - helpers of the order-submitter integration tests.
# Needs: SCMCTL, ORDER_SUBMITTER, CATALOG_SYNC, SCM_SIM_BIN, SCMFLOW_SOURCE_DIR
# and the pg + kafka fixtures (tests/lib/testenv.sh). Each test has its own
# database, topic prefix, master key and its own scm-sim (tests inject
# faults and read its request record).
set -u
. "$SCMFLOW_SOURCE_DIR/tests/lib/testenv.sh"
tenv_load

OT_NAME=${OT_NAME:-order}
OT_DIR=$(mktemp -d "/tmp/ot-$OT_NAME.XXXXXX")
OT_PIDS=()
OT_SEED=${OT_SEED:-$SCMFLOW_SOURCE_DIR/deploy/scm-sim/seed-test.json}
OT_LOGIN=api_admin
OT_PASSWORD='Test-Passw0rd!'
OT_CUSTOMER=scmflow-test

ot_cleanup() {
    local rc=$?
    for p in "${OT_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${OT_PIDS[@]}"; do
        for _ in $(seq 1 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
    done
    # under -DSCMFLOW_SANITIZE=ON a report in any process log fails the test
    # (the processes are ours; their exit status is not otherwise checked)
    if [ $rc -eq 0 ] && grep -lE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$OT_DIR"/*.log >/dev/null 2>&1; then
        echo "FAIL: sanitizer report in $(grep -lE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$OT_DIR"/*.log | tr '\n' ' ')" >&2
        grep -hE -A12 "ERROR: (Address|Leak)Sanitizer|runtime error:" "$OT_DIR"/*.log | head -60 >&2
        rc=1
    fi
    if [ $rc -ne 0 ]; then
        echo "---- logs ($OT_DIR) ----" >&2
        for f in "$OT_DIR"/*.log; do [ -f "$f" ] && { echo "== $f" >&2; tail -n 30 "$f" >&2; }; done
    else
        [ -n "${OT_DB_URL:-}" ] && tenv_drop_db "$OT_DB_URL"
        rm -rf "$OT_DIR"
    fi
    exit $rc
}
trap ot_cleanup EXIT

ot_fail() { echo "FAIL: $*" >&2; exit 1; }
ot_ok() { echo "ok: $*"; }
ot_sql() { psql "$OT_DB_URL" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }

# ot_setup: database, topic prefix, master key, worker settings.
ot_setup() {
    OT_DB_URL=$(tenv_new_db "$OT_NAME")
    export SCMFLOW_DATABASE_URL=$OT_DB_URL
    export SCMFLOW_TOPIC_PREFIX=$(tenv_topic_prefix "$OT_NAME")
    export SCMFLOW_MASTER_KEY_FILE=$(tenv_master_key "$OT_DIR/master.key")
    export SCMFLOW_LOG_FORMAT=${SCMFLOW_LOG_FORMAT:-text} SCMFLOW_LOG_LEVEL=${SCMFLOW_LOG_LEVEL:-info}
    export SCMFLOW_CATALOG_JOB_POLL=200ms
    export SCMFLOW_SUBMIT_POLL=20ms SCMFLOW_SUBMIT_FIRST_CHECK=2s
    export SCMFLOW_SUBMIT_RETRY_BASE=200ms SCMFLOW_SUBMIT_RETRY_MAX=2s
    export SCMFLOW_SCM_TIMEOUT=${SCMFLOW_SCM_TIMEOUT:-3s} SCMFLOW_SUBMIT_LEASE=${SCMFLOW_SUBMIT_LEASE:-20s}
    # scm-sim acts on a request within its configured latency (tests keep
    # it below 1 s) or a fault's hang_ms (fault.sh: at most 4 s)
    export SCMFLOW_SUBMIT_INFLIGHT_GRACE=${SCMFLOW_SUBMIT_INFLIGHT_GRACE:-5s}
    export SCMCTL_TIMEOUT=${SCMCTL_TIMEOUT:-60s}
    # a group of its own: a killed member of an earlier run must not delay
    # this test's rebalance
    OT_GROUP=scmflow-order-submitter-$(tenv_rand)
    # a SIGKILLed member leaves the group after 6 s instead of 45 s, so a
    # restarted worker gets its partitions quickly (consumer only)
    OT_SESSION_TIMEOUT=${OT_SESSION_TIMEOUT:-6s}
}

# ot_sim [ARGS...]: a private scm-sim; sets OT_SIM (http://.../api), OT_SIM_ADMIN.
ot_sim() {
    "$SCM_SIM_BIN" --listen 127.0.0.1:0 --port-file "$OT_DIR/sim.port" --seed "$OT_SEED" --quiet "$@" \
        > "$OT_DIR/sim.log" 2>&1 &
    OT_PIDS+=($!)
    tenv_wait_for 60 test -s "$OT_DIR/sim.port" || ot_fail "scm-sim did not start"
    local port; port=$(cat "$OT_DIR/sim.port")
    OT_SIM=http://127.0.0.1:$port/api
    OT_SIM_ADMIN=http://127.0.0.1:$port/__sim
    export SCMFLOW_SCM_BASE_URL=$OT_SIM
}

ot_sim_post() { curl -fsS -X POST -H 'Content-Type: application/json' -d "$2" "$OT_SIM_ADMIN/$1" >/dev/null; }
ot_sim_get() { curl -fsS "$OT_SIM_ADMIN/$1"; }

# ot_submitter NAME [ENV=VALUE...]: start an order-submitter; pid in OT_LAST_PID.
ot_submitter() {
    local name=$1; shift
    env SCMFLOW_CONSUMER_GROUP="$OT_GROUP" SCMFLOW_KAFKA_SESSION_TIMEOUT="$OT_SESSION_TIMEOUT" "$@" "$ORDER_SUBMITTER" >> "$OT_DIR/$name.log" 2>&1 &
    OT_LAST_PID=$!
    OT_PIDS+=($OT_LAST_PID)
}

# ot_ready: account set, catalog synced (catalog-sync runs until the sync is done).
ot_ready() {
    printf '%s\n' "$OT_PASSWORD" | "$SCMCTL" account set --name main --login "$OT_LOGIN" \
        --customer-uri "$OT_CUSTOMER" --base-url "$OT_SIM" --password-stdin \
        > "$OT_DIR/account.out" 2>&1 || { cat "$OT_DIR/account.out" >&2; ot_fail "account set"; }
    SCMFLOW_CONSUMER_GROUP=scmflow-catalog-sync-$(tenv_rand) "$CATALOG_SYNC" > "$OT_DIR/catalog.log" 2>&1 &
    local cpid=$!
    OT_PIDS+=($cpid)
    "$SCMCTL" sync --quiet > "$OT_DIR/sync.out" 2>&1 || { cat "$OT_DIR/sync.out" >&2; ot_fail "catalog sync"; }
    [ "$(ot_sql "select count(*) from catalog_profiles")" -gt 0 ] || ot_fail "catalog empty after sync"
    kill -TERM $cpid
}

# ot_events FILE: every event on <prefix>events so far (one JSON per line).
ot_events() {
    kcat -C -b "$SCMFLOW_KAFKA_BROKERS" -t "${SCMFLOW_TOPIC_PREFIX}events" -o beginning -e -q \
        -f '%s\n' 2>/dev/null > "$1" || true
}

# ot_wait_sql TIMEOUT_S SQL EXPECTED: wait until the query prints EXPECTED.
ot_wait_sql() {
    local t=$1 q=$2 want=$3
    tenv_wait_for "$t" bash -c "[ \"\$(psql '$OT_DB_URL' -XAtq -c \"$q\")\" = '$want' ]"
}

# ot_enroll_json ORDER_ID CN [EXTRA_JSON_FIELDS]: an enroll data object for the test seed.
ot_enroll_json() {
    local extra=${3:-}
    printf '{"order_id":"%s","common_name":"%s","sans":["%s"],"organization":1001,"profile":501,"term_days":365,"key_algorithm":"EC","key_size":256,"keystore_type":"PEM","custom_fields":[{"name":"Cost Center","value":"CC-1"}]%s}' \
        "$1" "$2" "$2" "${extra:+,$extra}"
}

# ot_publish TYPE KEY DATA_JSON [ID]: publish a command event with kcat; prints the id.
ot_publish() {
    local id=${4:-$(cat /proc/sys/kernel/random/uuid)}
    printf '{"specversion":"1.0","id":"%s","source":"test","type":"%s","time":"%s","datacontenttype":"application/json","data":%s}\n' \
        "$id" "$1" "$(date -u +%Y-%m-%dT%H:%M:%S.000Z)" "$3" |
        kcat -P -b "$SCMFLOW_KAFKA_BROKERS" -t "${SCMFLOW_TOPIC_PREFIX}order.commands" -k "$2" -K '\t' 2>/dev/null ||
        true
    echo "$id"
}
