# lib.sh - helpers of the status-poller / repo-ingest integration tests.
# Needs: SCMCTL, STATUS_POLLER, REPO_INGEST, SCM_SIM_BIN (ORDER_SUBMITTER,
# CATALOG_SYNC for the end-to-end test), SCMFLOW_SOURCE_DIR, and the pg +
# kafka fixtures (tests/lib/testenv.sh). Each test has its own database,
# topic prefix, master key and its own scm-sim (tests force statuses and
# read its request record).
set -u
. "$SCMFLOW_SOURCE_DIR/tests/lib/testenv.sh"
tenv_load

PT_NAME=${PT_NAME:-poller}
PT_DIR=$(mktemp -d "/tmp/pt-$PT_NAME.XXXXXX")
PT_PIDS=()
PT_SEED=${PT_SEED:-$SCMFLOW_SOURCE_DIR/deploy/scm-sim/seed-test.json}
PT_LOGIN=api_admin
PT_PASSWORD='Test-Passw0rd!'
PT_CUSTOMER=scmflow-test

pt_cleanup() {
    local rc=$?
    for p in "${PT_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${PT_PIDS[@]}"; do
        for _ in $(seq 1 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
    done
    # sanitizer reports of any worker (the suite runs under ASan+UBSan)
    if [ $rc -eq 0 ] && grep -lE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$PT_DIR"/*.log >/dev/null 2>&1; then
        echo "FAIL: sanitizer report in $(grep -lE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$PT_DIR"/*.log | tr '\n' ' ')" >&2
        rc=1
    fi
    if [ $rc -ne 0 ]; then
        echo "---- logs ($PT_DIR) ----" >&2
        for f in "$PT_DIR"/*.log; do [ -f "$f" ] && { echo "== $f" >&2; tail -n 40 "$f" >&2; }; done
    else
        [ -n "${PT_DB_URL:-}" ] && tenv_drop_db "$PT_DB_URL"
        rm -rf "$PT_DIR"
    fi
    exit $rc
}
trap pt_cleanup EXIT

pt_fail() { echo "FAIL: $*" >&2; exit 1; }
pt_ok() { echo "ok: $*"; }
pt_sql() { psql "$PT_DB_URL" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }

# pt_setup: database (migrated), topic prefix, master key, fast settings.
pt_setup() {
    PT_DB_URL=$(tenv_new_db "$PT_NAME")
    export SCMFLOW_DATABASE_URL=$PT_DB_URL
    export SCMFLOW_TOPIC_PREFIX=$(tenv_topic_prefix "$PT_NAME")
    export SCMFLOW_MASTER_KEY_FILE=$(tenv_master_key "$PT_DIR/master.key")
    export SCMFLOW_LOG_FORMAT=${SCMFLOW_LOG_FORMAT:-text} SCMFLOW_LOG_LEVEL=${SCMFLOW_LOG_LEVEL:-info}
    export SCMFLOW_STATUS_LADDER=${SCMFLOW_STATUS_LADDER:-200ms,500ms,1s}
    export SCMFLOW_STATUS_TICK=${SCMFLOW_STATUS_TICK:-50ms}
    export SCMFLOW_STATUS_LEASE=${SCMFLOW_STATUS_LEASE:-30s}
    export SCMFLOW_INGEST_RETRY_INTERVAL=${SCMFLOW_INGEST_RETRY_INTERVAL:-300ms}
    export SCMFLOW_SCM_TIMEOUT=${SCMFLOW_SCM_TIMEOUT:-5s}
    export SCMCTL_TIMEOUT=${SCMCTL_TIMEOUT:-60s}
    # the schema, before anything inserts rows (license show migrates)
    "$SCMCTL" license show > "$PT_DIR/migrate.out" 2>&1 || { cat "$PT_DIR/migrate.out" >&2; pt_fail "migrate"; }
}

# pt_sim [ARGS...]: a private scm-sim; sets PT_SIM (http://.../api), PT_SIM_ADMIN.
pt_sim() {
    "$SCM_SIM_BIN" --listen 127.0.0.1:0 --port-file "$PT_DIR/sim.port" --seed "$PT_SEED" --quiet "$@" \
        > "$PT_DIR/sim.log" 2>&1 &
    PT_PIDS+=($!)
    tenv_wait_for 60 test -s "$PT_DIR/sim.port" || pt_fail "scm-sim did not start"
    local port; port=$(cat "$PT_DIR/sim.port")
    PT_SIM=http://127.0.0.1:$port/api
    PT_SIM_ADMIN=http://127.0.0.1:$port/__sim
    export SCMFLOW_SCM_BASE_URL=$PT_SIM
}

pt_sim_post() { curl -fsS -X POST -H 'Content-Type: application/json' -d "$2" "$PT_SIM_ADMIN/$1" >/dev/null; }
pt_sim_get() { curl -fsS "$PT_SIM_ADMIN/$1"; }

# pt_account: the SCM account "main" (scmctl checks it against the sim).
pt_account() {
    printf '%s\n' "$PT_PASSWORD" | "$SCMCTL" account set --name main --login "$PT_LOGIN" \
        --customer-uri "$PT_CUSTOMER" --base-url "$PT_SIM" --password-stdin \
        > "$PT_DIR/account.out" 2>&1 || { cat "$PT_DIR/account.out" >&2; pt_fail "account set"; }
}

# pt_start NAME BINARY [ENV=VALUE...]: start a worker; pid in PT_LAST_PID.
pt_start() {
    local name=$1 bin=$2; shift 2
    # a consumer group per test and binary: groups are broker-wide, and tests
    # running in parallel must not rebalance each other
    env SCMFLOW_CONSUMER_GROUP="${SCMFLOW_TOPIC_PREFIX}$(basename "$bin")" "$@" "$bin" >> "$PT_DIR/$name.log" 2>&1 &
    PT_LAST_PID=$!
    PT_PIDS+=($PT_LAST_PID)
}

# pt_enroll CN [SAN...]: enroll straight in the sim (EC key made here);
# prints the sslId. The key stays in $PT_DIR/<cn>.key.
pt_enroll() {
    local cn=$1; shift
    local sans=$cn s
    for s in "$@"; do sans="$sans,$s"; done
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$PT_DIR/$cn.key" \
        -subj "/CN=$cn" -out "$PT_DIR/$cn.csr" 2>/dev/null || pt_fail "openssl req"
    jq -n --rawfile csr "$PT_DIR/$cn.csr" --arg sans "$sans" \
        '{orgId:1001, csr:$csr, certType:501, term:365, subjAltNames:$sans, customFields:[{name:"Cost Center", value:"CC-1"}]}' |
        curl -fsS -X POST -H 'Content-Type: application/json' -H "login: $PT_LOGIN" \
            -H "password: $PT_PASSWORD" -H "customerUri: $PT_CUSTOMER" --data-binary @- \
            "$PT_SIM/ssl/v1/enroll" | jq -e .sslId
}

# pt_order ID SSL_ID CN [SAN...]: an order row in state submitted, due now
# (as order-submitter leaves it).
pt_order() {
    local id=$1 ssl=$2 cn=$3; shift 3
    local arr="{$cn" s
    for s in "$@"; do arr="$arr,$s"; done
    arr="$arr}"
    pt_sql "INSERT INTO orders (id, account, origin, state, ssl_id, common_name, sans, submitted_at, next_check_at)
            VALUES ('$id', 'main', 'enroll', 'submitted', $ssl, '$cn', '$arr', now(), now())"
}

# pt_generated_orders N PREFIX STATE: an order row in STATE, due now, for
# each of the N certificates scm-sim generated (--generate-certs N; listed
# through the API, 200 a page); the ids are PREFIX-<sslId>.
pt_generated_orders() {
    local n=$1 prefix=$2 state=$3 pos
    : > "$PT_DIR/orders.csv"
    for ((pos = 0; pos < n + 2000; pos += 200)); do
        curl -fsS -H "login: $PT_LOGIN" -H "password: $PT_PASSWORD" -H "customerUri: $PT_CUSTOMER" \
            "$PT_SIM/ssl/v1?position=$pos&size=200" > "$PT_DIR/page.json" || pt_fail "list"
        [ "$(jq length "$PT_DIR/page.json")" = 0 ] && break
        jq -r --arg p "$prefix" '.[] | select(.commonName | startswith("gen-")) | "\($p)-\(.sslId),\(.sslId),\(.commonName)"' \
            "$PT_DIR/page.json" >> "$PT_DIR/orders.csv"
    done
    [ "$(wc -l < "$PT_DIR/orders.csv")" = "$n" ] || pt_fail "listed $(wc -l < "$PT_DIR/orders.csv") generated orders"
    psql "$PT_DB_URL" -XAtq -v ON_ERROR_STOP=1 \
        -c "CREATE TEMP TABLE x (id text, ssl bigint, cn text)" \
        -c "\\copy x FROM '$PT_DIR/orders.csv' WITH (FORMAT csv)" \
        -c "INSERT INTO orders (id, account, origin, state, ssl_id, common_name, next_check_at)
            SELECT id, 'main', 'enroll', '$state', ssl, cn, now() FROM x" >/dev/null || pt_fail "insert orders"
}

# pt_events FILE [TOPIC_SUFFIX]: every message of <prefix>events (or the
# given topic) so far, one JSON per line.
pt_events() {
    kcat -C -b "$SCMFLOW_KAFKA_BROKERS" -t "${SCMFLOW_TOPIC_PREFIX}${2:-events}" -o beginning -e -q \
        -f '%s\n' 2>/dev/null > "$1" || true
}

# pt_wait_sql TIMEOUT_S SQL EXPECTED: wait until the query prints EXPECTED.
pt_wait_sql() {
    local t=$1 q=$2 want=$3
    tenv_wait_for "$t" bash -c "[ \"\$(psql '$PT_DB_URL' -XAtq -c \"$q\")\" = '$want' ]" ||
        pt_fail "waited ${t}s for [$q] = [$want], got [$(pt_sql "$q")]"
}

# pt_wait_event TIMEOUT_S JQ_FILTER [TOPIC_SUFFIX]: wait until an event matches (jq -e select).
pt_wait_event() {
    local t=$1 f=$2 topic=${3:-events}
    local deadline=$(( $(date +%s) + t ))
    while :; do
        pt_events "$PT_DIR/ev.tmp" "$topic"
        [ -n "$(jq -c "select($f)" "$PT_DIR/ev.tmp" 2>/dev/null | head -1)" ] && return 0
        [ "$(date +%s)" -ge $deadline ] && pt_fail "no event on $topic matching $f within ${t}s"
        sleep 0.3
    done
}

# pt_publish TOPIC_SUFFIX TYPE KEY DATA_JSON [ID]: publish an event with kcat; prints the id.
pt_publish() {
    local id=${5:-$(cat /proc/sys/kernel/random/uuid)}
    # data through a file: one argument is limited to 128 KiB
    printf '%s' "$4" > "$PT_DIR/publish.json"
    jq -cn --arg id "$id" --arg type "$2" --arg time "$(date -u +%Y-%m-%dT%H:%M:%S.000Z)" --slurpfile data "$PT_DIR/publish.json" \
        '{specversion:"1.0", id:$id, source:"test", type:$type, time:$time, datacontenttype:"application/json", data:$data[0]}' |
        kcat -P -b "$SCMFLOW_KAFKA_BROKERS" -t "${SCMFLOW_TOPIC_PREFIX}$1" -k "$3" 2>/dev/null ||
        pt_fail "kcat publish"
    echo "$id"
}

# pt_stop PID NAME: SIGTERM a worker and wait until it stopped taking work
# ("worker stopping" in its log; the Kafka teardown may take longer).
pt_stop() {
    kill -TERM "$1" 2>/dev/null
    tenv_wait_for 30 grep -q "worker stopping" "$PT_DIR/$2.log" || pt_fail "$2 did not stop"
}
