# lib.sh - helpers of the end-to-end tests (tests/e2e/*.sh, tests/bench/bench_e2e.sh).
#
# Everything runs as separate processes: PostgreSQL, the dev Kafka broker,
# scm-sim and every worker (E2E_REPLICAS replicas each, default 2), driven
# by scmctl and by raw CloudEvents published with kcat. Each test has its own
# database, topic prefix, master key and its own scm-sim (tests read its
# request record and enrollment count, and inject faults).
#
# Source after setting E2E_NAME:  E2E_NAME=lifecycle; . "$(dirname "$0")/lib.sh"
# Needs SCMFLOW_SOURCE_DIR and the test environment (tests/lib/testenv.sh).
set -u
. "$SCMFLOW_SOURCE_DIR/tests/lib/testenv.sh"
tenv_load

E2E_NAME=${E2E_NAME:-e2e}
E2E_DIR=$(mktemp -d "/tmp/e2e-$E2E_NAME.XXXXXX")
chmod 755 "$E2E_DIR"
E2E_REPLICAS=${E2E_REPLICAS:-2}
E2E_WORKERS=(catalog-sync order-submitter status-poller repo-ingest)
E2E_SEED=${E2E_SEED:-$SCMFLOW_SOURCE_DIR/deploy/scm-sim/seed-demo.json}
# The demo seed's account (deploy/scm-sim/README.md).
E2E_LOGIN=scmflow_api
E2E_PASSWORD=Demo-Passw0rd-2025
E2E_CUSTOMER=acme-demo
E2E_ORG=3001
E2E_PROFILE=601
E2E_PIDS=()          # everything this test started (stopped in reverse order)
declare -A E2E_WPID  # "<worker>.<n>" -> pid
E2E_PG_DIR=          # set by e2e_pg_private
E2E_KEEP=${E2E_KEEP:-0}
SCMCTL=$SCMFLOW_BIN_DIR/scmctl

for _b in scmctl scm-sim kafka-devbroker "${E2E_WORKERS[@]}"; do
    [ -x "$SCMFLOW_BIN_DIR/$_b" ] || tenv_fail "$_b is not built ($SCMFLOW_BIN_DIR/$_b)"
done

e2e_fail() { echo "FAIL: $*" >&2; exit 1; }
e2e_ok() { printf 'ok %3ds  %s\n' $(( $(date +%s) - E2E_T0 )) "$*"; }
E2E_T0=$(date +%s)

e2e_cleanup() {
    local rc=$? i p
    for ((i = ${#E2E_PIDS[@]} - 1; i >= 0; i--)); do kill -TERM "${E2E_PIDS[$i]}" 2>/dev/null; done
    for p in "${E2E_PIDS[@]}"; do
        for _ in $(seq 1 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
    done
    tenv_kafka_private_stop >/dev/null 2>&1 || true
    [ -n "$E2E_PG_DIR" ] && "$SCMFLOW_SOURCE_DIR/deploy/dev/pg.sh" stop "$E2E_PG_DIR" >/dev/null 2>&1
    rm -f "$E2E_DIR/pids"   # all stopped: the watchdog has nothing left to do
    # Sanitizer reports of any process (the suite runs under ASan+UBSan;
    # leaks are reported at exit, so only now).
    local san
    san=$(grep -l -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$E2E_DIR"/*.log 2>/dev/null)
    if [ -n "$san" ]; then
        echo "FAIL: sanitizer reports in: $san" >&2
        grep -h -A12 -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' $san | head -60 >&2
        [ $rc -eq 0 ] && rc=1
    fi
    if [ $rc -ne 0 ] || [ "$E2E_KEEP" = 1 ]; then
        echo "---- logs kept in $E2E_DIR ----" >&2
        if [ $rc -ne 0 ]; then
            for f in "$E2E_DIR"/*.log; do
                [ -f "$f" ] && { echo "== $f" >&2; grep -v ' debug ' "$f" | tail -n 25 >&2; }
            done
        fi
    else
        [ -z "$E2E_PG_DIR" ] && [ -n "${E2E_DB_URL:-}" ] && tenv_drop_db "$E2E_DB_URL"
        rm -rf "$E2E_DIR"
    fi
    exit $rc
}
trap e2e_cleanup EXIT
trap 'exit 130' INT TERM

# A watchdog: if this shell is killed outright (ctest's timeout), nothing it
# started may live on. Every started pid is appended to E2E_DIR/pids.
e2e_track() { echo "$1" >> "$E2E_DIR/pids"; }
(
    trap '' TERM INT
    while kill -0 $$ 2>/dev/null; do sleep 2; done
    [ -f "$E2E_DIR/pids" ] && xargs -r kill -KILL < "$E2E_DIR/pids" 2>/dev/null
) </dev/null >/dev/null 2>&1 &

e2e_sql() { psql "$E2E_DB_URL" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }

# e2e_setup: database (the pg fixture's server unless e2e_pg_private ran),
# topic prefix, master key, worker settings (fast ladders, short retries).
e2e_setup() {
    if [ -z "$E2E_PG_DIR" ]; then
        E2E_DB_URL=$(tenv_new_db "e2e_$E2E_NAME")
    fi
    export SCMFLOW_DATABASE_URL=$E2E_DB_URL
    export SCMFLOW_TOPIC_PREFIX=$(tenv_topic_prefix "e2e-$E2E_NAME")
    export SCMFLOW_MASTER_KEY_FILE=$(tenv_master_key "$E2E_DIR/master.key")
    export SCMFLOW_LOG_FORMAT=text SCMFLOW_LOG_LEVEL=${SCMFLOW_LOG_LEVEL:-info}
    export SCMFLOW_CATALOG_JOB_POLL=200ms SCMFLOW_CATALOG_RETRY_BASE=500ms SCMFLOW_CATALOG_RETRY_MAX=3s
    export SCMFLOW_SUBMIT_POLL=50ms SCMFLOW_SUBMIT_FIRST_CHECK=${SCMFLOW_SUBMIT_FIRST_CHECK:-300ms}
    export SCMFLOW_SUBMIT_RETRY_BASE=300ms SCMFLOW_SUBMIT_RETRY_MAX=3s
    # Leases stay at their defaults (5m): no test here kills a replica, and
    # a lease shorter than a claimed batch's key generation lets a second
    # replica take over operations that are still running.
    export SCMFLOW_STATUS_LADDER=${SCMFLOW_STATUS_LADDER:-300ms,500ms,1s,2s,3s}
    export SCMFLOW_STATUS_TICK=100ms
    export SCMFLOW_SCM_TIMEOUT=${SCMFLOW_SCM_TIMEOUT:-5s}
    # an enroll cut off by the SCM outage is reconciled this long after
    # (scm-sim acts on a request within its latency: 5 s is ample)
    export SCMFLOW_SUBMIT_INFLIGHT_GRACE=${SCMFLOW_SUBMIT_INFLIGHT_GRACE:-5s}
    export SCMCTL_TIMEOUT=${SCMCTL_TIMEOUT:-90s}
}

# e2e_pg_private: a private PostgreSQL cluster (deploy/dev/pg.sh) in the
# test directory, so that the test may stop and restart it.
e2e_pg_private() {
    E2E_PG_DIR=$E2E_DIR/pg
    "$SCMFLOW_SOURCE_DIR/deploy/dev/pg.sh" start "$E2E_PG_DIR" > "$E2E_DIR/pg.env" \
        || e2e_fail "private PostgreSQL did not start"
    e2e_track "$(head -n 1 "$E2E_PG_DIR/data/postmaster.pid")"
    E2E_DB_URL=$(. "$E2E_DIR/pg.env"; echo "$SCMFLOW_DATABASE_URL")
    E2E_PG_PORT=$(. "$E2E_DIR/pg.env"; echo "$PGPORT")
}

# e2e_pg_restart DOWN_S: stop the private cluster (fast shutdown: every
# connection is cut), wait DOWN_S seconds, start it again on the SAME port
# (pg.sh start would pick a new one; the workers keep their URL).
e2e_pg_restart() {
    local down=$1 data=$E2E_PG_DIR/data as=()
    "$SCMFLOW_SOURCE_DIR/deploy/dev/pg.sh" stop "$E2E_PG_DIR" || e2e_fail "pg stop"
    sleep "$down"
    [ "$(id -u)" = 0 ] && as=(runuser -u postgres --)
    local sock=$E2E_PG_DIR; [ ${#sock} -le 80 ] || sock=
    "${as[@]}" /usr/lib/postgresql/15/bin/pg_ctl -D "$data" -l "$E2E_PG_DIR/log" -w -t 60 \
        -o "-p $E2E_PG_PORT -k '$sock' -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off -c synchronous_commit=off" \
        start >/dev/null || e2e_fail "pg restart on port $E2E_PG_PORT"
    e2e_track "$(head -n 1 "$data/postmaster.pid")"
}

# e2e_kafka_private: a private dev broker (3 brokers) for broker faults.
e2e_kafka_private() {
    tenv_kafka_private "$E2E_DIR/kafka" 3
    e2e_track "$TENV_KAFKA_PID"
    export SCMFLOW_KAFKA_BROKERS=$TENV_KAFKA_BROKERS
    export KAFKA_DEVBROKER_CONTROL=$TENV_KAFKA_CONTROL
}

# e2e_kafka_all DOWN|UP: every broker of the private cluster down or up.
e2e_kafka_all() {
    local b
    for b in 1 2 3; do
        curl -fsS -X POST "$KAFKA_DEVBROKER_CONTROL/broker/$b/$1" >/dev/null || e2e_fail "broker $b $1"
    done
}

# e2e_sim [ARGS...]: a private scm-sim; sets E2E_SIM (http://.../api), E2E_SIM_ADMIN.
e2e_sim() {
    "$SCMFLOW_BIN_DIR/scm-sim" --listen 127.0.0.1:0 --port-file "$E2E_DIR/sim.port" --seed "$E2E_SEED" \
        --quiet "$@" > "$E2E_DIR/sim.log" 2>&1 &
    E2E_PIDS+=($!); e2e_track $!
    tenv_wait_for 60 test -s "$E2E_DIR/sim.port" || e2e_fail "scm-sim did not start"
    local port; port=$(cat "$E2E_DIR/sim.port")
    E2E_SIM=http://127.0.0.1:$port/api
    E2E_SIM_ADMIN=http://127.0.0.1:$port/__sim
    export SCMFLOW_SCM_BASE_URL=$E2E_SIM
}
e2e_sim_post() { curl -fsS -X POST -H 'Content-Type: application/json' -d "$2" "$E2E_SIM_ADMIN/$1" >/dev/null; }
e2e_sim_get() { curl -fsS "$E2E_SIM_ADMIN/$1"; }

# e2e_worker NAME N: start replica N of worker NAME (log E2E_DIR/NAME.N.log).
# The consumer group carries the test's topic prefix: groups are broker-wide,
# and a test that SIGKILLs its workers (e2e.faults) leaves dead members that
# stall every rebalance of a group it shares until their session times out
# (e2e.lifecycle, run beside it, once waited 45 s for its poller's partitions).
e2e_worker() {
    local w=$1 n=$2
    SCMFLOW_CONSUMER_GROUP="${SCMFLOW_TOPIC_PREFIX}scmflow-$w" "$SCMFLOW_BIN_DIR/$w" >> "$E2E_DIR/$w.$n.log" 2>&1 &
    E2E_WPID[$w.$n]=$!
    E2E_PIDS+=($!); e2e_track $!
}

# e2e_workers: E2E_REPLICAS replicas of each of the four workers.
e2e_workers() {
    local w n
    for w in "${E2E_WORKERS[@]}"; do
        for ((n = 1; n <= E2E_REPLICAS; n++)); do e2e_worker "$w" "$n"; done
    done
    sleep 0.5
    e2e_workers_alive
}

# e2e_workers_alive: fail when a worker replica has exited.
e2e_workers_alive() {
    local k
    for k in "${!E2E_WPID[@]}"; do
        kill -0 "${E2E_WPID[$k]}" 2>/dev/null || e2e_fail "worker $k exited (see $E2E_DIR/$k.log)"
    done
}

# e2e_peak_rss: "worker.n VmHWM-kB" for every replica (before stopping them).
e2e_peak_rss() {
    local k
    for k in $(printf '%s\n' "${!E2E_WPID[@]}" | sort); do
        printf '%s %s\n' "$k" "$(awk '/^VmHWM/ {print $2}' "/proc/${E2E_WPID[$k]}/status" 2>/dev/null || echo 0)"
    done
}

# e2e_account: set the SCM account (password on stdin), sync the catalog.
e2e_account() {
    printf '%s\n' "$E2E_PASSWORD" | "$SCMCTL" account set --name acme --login "$E2E_LOGIN" \
        --customer-uri "$E2E_CUSTOMER" --base-url "$E2E_SIM" --password-stdin --default \
        > "$E2E_DIR/account.out" 2>&1 || e2e_fail "account set: $(cat "$E2E_DIR/account.out")"
}

# e2e_ctl OUTFILE ARGS...: run scmctl, output in OUTFILE; fail with it shown.
e2e_ctl() {
    local out=$1; shift
    "$SCMCTL" "$@" > "$out" 2>&1 || e2e_fail "scmctl $*: $(cat "$out")"
}

# e2e_wait_sql TIMEOUT_S SQL EXPECTED: wait until the query prints EXPECTED.
e2e_wait_sql() {
    local t=$1 q=$2 want=$3 deadline got
    deadline=$(( $(date +%s) + t ))
    while :; do
        got=$(psql "$E2E_DB_URL" -XAtq -c "$q" 2>/dev/null) || got="(db error)"
        [ "$got" = "$want" ] && return 0
        if [ "$(date +%s)" -ge $deadline ]; then
            echo "timeout after ${t}s: [$q] = [$got], want [$want]" >&2
            return 1
        fi
        sleep 0.2
    done
}

# e2e_publish TOPIC_SUFFIX TYPE KEY DATA_JSON [ID]: publish one CloudEvent
# with kcat (exactly what the user guide shows); prints the event id.
e2e_publish() {
    local id=${5:-$(cat /proc/sys/kernel/random/uuid)} ev try
    ev=$(printf '{"specversion":"1.0","id":"%s","source":"urn:e2e:%s","type":"%s","time":"%s","datacontenttype":"application/json","data":%s}' \
        "$id" "$E2E_NAME" "$2" "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" "$4")
    # kcat gives up when every broker is down: retry (same id: at most once
    # is the consumer's business, the inbox drops a duplicate).
    for try in 1 2 3 4 5 6 7 8 9 10; do
        printf '%s\n' "$ev" | kcat -P -b "$SCMFLOW_KAFKA_BROKERS" -t "${SCMFLOW_TOPIC_PREFIX}$1" -k "$3" \
            -X message.timeout.ms=60000 2>>"$E2E_DIR/kcat.log" && { echo "$id"; return 0; }
        sleep 1
    done
    e2e_fail "kcat publish $2 (see $E2E_DIR/kcat.log)"
}

# e2e_events FILE: every event on <prefix>events so far (one JSON per line).
e2e_events() {
    kcat -C -b "$SCMFLOW_KAFKA_BROKERS" -t "${SCMFLOW_TOPIC_PREFIX}events" -o beginning -e -q \
        -f '%s\n' 2>/dev/null > "$1" || true
}
# e2e_topic_count SUFFIX: number of messages on <prefix>SUFFIX.
e2e_topic_count() {
    kcat -C -b "$SCMFLOW_KAFKA_BROKERS" -t "${SCMFLOW_TOPIC_PREFIX}$1" -o beginning -e -q \
        -f 'x\n' 2>/dev/null | wc -l
}

# e2e_enroll_json ORDER_ID CN KEY_ALG KEY_SIZE KEYSTORE [PASSWORD]: enroll data.
e2e_enroll_json() {
    local pw=''
    [ -n "${6:-}" ] && pw=$(printf ',"keystore_password":"%s"' "$6")
    printf '{"order_id":"%s","common_name":"%s","sans":["%s"],"organization":%s,"profile":%s,"term_days":365,"key_algorithm":"%s","key_size":%s,"keystore_type":"%s"%s,"custom_fields":[{"name":"Cost Center","value":"CC-4711"}],"comments":"e2e %s"}' \
        "$1" "$2" "$2" "$E2E_ORG" "$E2E_PROFILE" "$3" "$4" "$5" "$pw" "$E2E_NAME"
}

# e2e_consistency: the invariants that must hold once everything settled.
#  - every order is final or correctly pending: no order stuck in accepted/
#    submitting/issued, none flagged needs_attention, no open SCM intent;
#  - every stored order has exactly one active certificate; no certificate
#    twice (fingerprints unique) and each issued SCM order in the repo once;
#  - scm-sim's enrollments (enroll + renew create an SCM order) equal
#    scmflow's non-imported orders (kept + locally deleted);
#  - the outbox is drained and nothing went to the dead-letter topic.
e2e_consistency() {
    local bad n_sim n_ours
    bad=$(e2e_sql "select id || ':' || state from orders where state in ('accepted','submitting','issued') or needs_attention")
    [ -z "$bad" ] || e2e_fail "orders not settled: $bad"
    bad=$(e2e_sql "select count(*) from scm_operations where state in ('intent','unknown')")
    [ "$bad" = 0 ] || e2e_fail "$bad SCM operations still open"
    bad=$(e2e_sql "select o.id || ':' || count(c.id) from orders o left join certificates c on c.order_id = o.id and c.status = 'active' where o.state = 'stored' group by o.id having count(c.id) <> 1")
    [ -z "$bad" ] || e2e_fail "stored orders without exactly one active certificate: $bad"
    bad=$(e2e_sql "select serial || ' x' || count(*) from certificates group by issuer, serial having count(*) > 1")
    [ -z "$bad" ] || e2e_fail "a certificate is in the repository more than once: $bad"
    n_sim=$(e2e_sim_get enrollments | jq '[.enrollments[] | select(.kind == "enroll" or .kind == "renew")] | length')
    n_ours=$(e2e_sql "select (select count(*) from orders where origin <> 'imported' and ssl_id is not null) + (select count(*) from deleted_orders where order_id not like 'scm:%')")
    if [ "$n_sim" != "$n_ours" ]; then
        echo "SCM orders enrolled more than once for one name (first 10):" >&2
        e2e_sim_get enrollments | jq -c '[.enrollments[] | select(.kind != "replace")] | group_by(.commonName)
            | map(select(length > 1)) | .[:10][] | map({sslId, kind, commonName, comments})' >&2
        e2e_sql "select o.id, o.ssl_id, s.kind, s.state, s.attempt, s.correlation_ref from orders o join scm_operations s on s.order_id = o.id where s.attempt > 1 or s.state <> 'done' limit 20" >&2
        e2e_fail "SCM has $n_sim enrollments, scmflow $n_ours orders"
    fi
    bad=$(e2e_sql "select count(*) from outbox where sent_at is null" 2>/dev/null || echo 0)
    [ "$bad" = 0 ] || e2e_fail "$bad outbox rows not sent"
    bad=$(e2e_topic_count deadletter)
    [ "$bad" = 0 ] || e2e_fail "$bad messages on the dead-letter topic"
    E2E_N_ENROLLMENTS=$n_sim
}

# e2e_has_event FILE JQ_FILTER [jq args...]: some event in FILE (JSON lines)
# matches (jq -e alone looks at the last input only, in jq 1.6).
e2e_has_event() {
    local f=$1 filter=$2; shift 2
    jq -s -e "$@" "map(select($filter)) | length > 0" "$f" >/dev/null
}
# e2e_wait_event T FILE FILTER [jq args]: re-read the events topic into FILE
# until FILTER matches or T seconds pass. The state a test waits for in SQL
# commits before the relay publishes its events (outbox), so one snapshot
# taken right after can miss them on a loaded machine.
e2e_wait_event() {
    local t=$1 f=$2 filter=$3 deadline; shift 3
    deadline=$(( $(date +%s) + t ))
    while :; do
        e2e_has_event "$f" "$filter" "$@" 2>/dev/null && return 0
        [ "$(date +%s)" -ge $deadline ] && return 1
        sleep 0.5
        e2e_events "$f"
    done
}
