#!/usr/bin/env bash
# run_delivery.sh SCENARIO - delivery tests of the worker run loop on a real
# PostgreSQL and the dev Kafka broker; sf-test-worker runs as a separate
# process. Scenarios:
#   exactly_once          2,000 messages (with duplicates and injected
#                         transient failures) -> each row and event exactly once
#   failpoint FP:N        SIGKILL at failpoint FP on its N-th hit, restart ->
#                         still exactly once
#   poison                garbage, missing field, wrong type, invalid UTF-8 and
#                         a 4 MiB message (see below) interleaved -> dead-letter with reason
#                         and original bytes; good messages still flow
#   group                 two instances in one group; one is killed, the other
#                         finishes
#   valgrind              a short run under valgrind --leak-check=full
#   http                  /healthz, /readyz (200 when ready, 503 while the
#                         database refuses connections, 200 again after),
#                         /metrics counters move with the traffic
#   sigterm               SIGTERM in the middle of a stream: exit 0 within
#                         a deadline; after a restart still exactly once
#   tick                  a once_across_replicas task (1 s) on two replicas:
#                         one run per interval in all, and every run's event
#                         (sf_worker_emit_db + kick) published exactly once
# Needs: DELIVERY_BIN (dir of sf-test-worker, sf-test-produce,
# sf-test-consume), the pg and kafka fixtures (tests/lib/testenv.sh).
set -euo pipefail

. "${SCMFLOW_SOURCE_DIR:?}/tests/lib/testenv.sh"
tenv_load

SCENARIO=${1:?scenario}
BIN=${DELIVERY_BIN:?}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/delivery.${SCENARIO}.XXXXXX")
PIDS=()

cleanup() {
    local rc=$?
    for p in "${PIDS[@]:-}"; do
        # $p is a `timeout` wrapper: kill its child (the worker) too, or
        # the worker outlives the test.
        [ -n "$p" ] && { pkill -KILL -P "$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; } || true
    done
    if [ $rc -ne 0 ]; then
        echo "--- logs of failed scenario $SCENARIO ($WORK) ---" >&2
        for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "== $f" >&2; tail -n 40 "$f" >&2; }; done
    else
        [ -n "${DB_URL:-}" ] && tenv_drop_db "$DB_URL"
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

ADMIN_URL=$SCMFLOW_DATABASE_URL # the maintenance database (fixture)
DB_URL=$(tenv_new_db "delivery_${SCENARIO//[^a-z]/_}")
PREFIX=$(tenv_topic_prefix "dlv-${SCENARIO//[^a-z]/_}")
export SCMFLOW_DATABASE_URL=$DB_URL
export SCMFLOW_TOPIC_PREFIX=$PREFIX
export SCMFLOW_CONSUMER_GROUP="g-${PREFIX}"
export SCMFLOW_MASTER_KEY_FILE=$(tenv_master_key "$WORK/master.key")
export SCMFLOW_LOG_FORMAT=text
export SCMFLOW_LOG_LEVEL=${SCMFLOW_LOG_LEVEL:-info}
# Fast failover on the dev broker: a killed member leaves the group after
# the session timeout.
printf 'session.timeout.ms=6000\nheartbeat.interval.ms=500\n' > "$WORK/kafka.conf"
export SCMFLOW_KAFKA_CONFIG="$WORK/kafka.conf"
IN="${PREFIX}test.in"

produce() { timeout -s KILL 120 "$BIN/sf-test-produce" --brokers "$SCMFLOW_KAFKA_BROKERS" --topic "$IN" "$@"; }
consume() { timeout -s KILL 120 "$BIN/sf-test-consume" --brokers "$SCMFLOW_KAFKA_BROKERS" "$@"; }
sql() { psql "$DB_URL" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }

# run_worker LOG [args...]: run to completion (hard timeout); prints status.
run_worker() {
    local log=$1; shift
    local rc=0
    timeout -s KILL "${WORKER_TIMEOUT:-180}" "$BIN/sf-test-worker" "$@" >"$log" 2>&1 || rc=$?
    echo "$rc"
}

# check_exactly_once N: N rows with N distinct ids; N events, N distinct
# correlation ids.
check_exactly_once() {
    local n=$1 rows distinct
    rows=$(sql "select count(*) from test_items")
    distinct=$(sql "select count(distinct msg_id) from test_items")
    [ "$rows" = "$n" ] && [ "$distinct" = "$n" ] || tenv_fail "rows: $rows total, $distinct distinct, want $n"
    consume --topic "${PREFIX}events" --format cid > "$WORK/events.txt" || tenv_fail "could not read events"
    local ev evd
    ev=$(wc -l < "$WORK/events.txt")
    evd=$(sort -u "$WORK/events.txt" | wc -l)
    [ "$evd" = "$n" ] || tenv_fail "events: $evd distinct correlation ids, want $n"
    [ "$ev" = "$n" ] || tenv_fail "events: $ev in total ($evd distinct), want exactly $n"
    echo "ok: $rows rows, $ev events ($evd distinct)"
}

case "$SCENARIO" in
exactly_once)
    # 2,000 messages; every 100th sent twice (same id); every 97th handler
    # call fails TRANSIENT once (batch retried from the messages in hand).
    produce --count 2000 --dup-every 100 || tenv_fail "produce failed"
    rc=$(SCMFLOW_TEST_TRANSIENT_EVERY=97 run_worker "$WORK/w1.log" --exit-on-idle 4000)
    [ "$rc" = 0 ] || tenv_fail "worker exited $rc"
    grep -q "retrying" "$WORK/w1.log" || tenv_fail "the injected transient failures were not retried"
    check_exactly_once 2000
    ;;
failpoint)
    FP=${2:?failpoint NAME:N}
    produce --count 2000 --dup-every 250 || tenv_fail "produce failed"
    rc=$(SCMFLOW_FAILPOINT=$FP run_worker "$WORK/w1.log" --exit-on-idle 6000)
    [ "$rc" = 137 ] || tenv_fail "worker with failpoint $FP exited $rc, want 137 (SIGKILL)"
    grep -q "failpoint ${FP%%:*} hit" "$WORK/w1.log" || tenv_fail "failpoint $FP not reported"
    rows_before=$(sql "select count(*) from test_items")
    [ "$rows_before" -lt 2000 ] || tenv_fail "the kill came too late ($rows_before rows already)"
    rc=$(run_worker "$WORK/w2.log" --exit-on-idle 4000)
    [ "$rc" = 0 ] || tenv_fail "restarted worker exited $rc"
    echo "killed at $FP with $rows_before rows; restarted"
    if [[ "$FP" == relay.* ]]; then
        # The rows published before the kill must be recognised, not re-sent.
        grep -q "already published before a crash" "$WORK/w2.log" \
            || tenv_fail "the restarted relay did not recover the published rows"
    fi
    check_exactly_once 2000
    ;;
poison)
    # 300 good messages; after every 30th a poison one (10 in all: garbage,
    # missing field, wrong type, invalid UTF-8, a big one, twice each).
    # The big one is 4 MiB by default: the dev broker (librdkafka 2.0.2 mock
    # cluster) ACCEPTS 10 MB but keeps at most 5 MB per partition log, so a
    # 10 MB message is evicted at once together with its neighbours (checked
    # with kcat). Against a real broker set DELIVERY_BIG_BYTES=10485760.
    produce --count 300 --poison-every 30 --big-bytes "${DELIVERY_BIG_BYTES:-4194304}" \
        --poison-log "$WORK/poison.txt" || tenv_fail "produce failed"
    rc=$(run_worker "$WORK/w1.log" --exit-on-idle 4000)
    [ "$rc" = 0 ] || tenv_fail "worker exited $rc"
    check_exactly_once 300
    consume --topic "${PREFIX}deadletter" --format dlq > "$WORK/dlq.txt" || tenv_fail "could not read dead-letter"
    [ "$(wc -l < "$WORK/dlq.txt")" = 10 ] || tenv_fail "dead-letter has $(wc -l < "$WORK/dlq.txt") messages, want 10"
    while IFS=$'\t' read -r key sha len kind; do
        line=$(awk -F'\t' -v k="$key" '$1 == k' "$WORK/dlq.txt")
        [ -n "$line" ] || tenv_fail "poison $key ($kind) not in dead-letter"
        IFS=$'\t' read -r _ dsha dlen reason stopic soff service trunc <<<"$line"
        [ "$stopic" = "$IN" ] || tenv_fail "$key: source topic '$stopic'"
        [ "$soff" != "-" ] || tenv_fail "$key: no source offset"
        [ "$service" = "test-worker" ] || tenv_fail "$key: service '$service'"
        [ -n "$reason" ] && [ "$reason" != "-" ] || tenv_fail "$key: no reason"
        if [ "$kind" = big ]; then
            [[ "$reason" == message:*exceeds* ]] || tenv_fail "$key: reason '$reason'"
            if [ "$trunc" = true ]; then
                echo "note: the big message was cut to $dlen bytes in the dead-letter (broker limit)"
            else
                [ "$dsha" = "$sha" ] || tenv_fail "$key: bytes differ"
            fi
        else
            [ "$dsha" = "$sha" ] && [ "$dlen" = "$len" ] || tenv_fail "$key ($kind): original bytes not kept"
            case $kind in
            missing-field|wrong-type) [[ "$reason" == *data.n* ]] || tenv_fail "$key ($kind): reason '$reason' does not name data.n" ;;
            esac
        fi
        echo "dead-lettered $kind: $reason"
    done < "$WORK/poison.txt"
    ;;
group)
    produce --count 4000 || tenv_fail "produce failed"
    # A dies on its 15th commit; B must take over A's partitions and finish.
    SCMFLOW_WORKER_BATCH=20 SCMFLOW_FAILPOINT=worker.after_commit_before_offset:15 \
        timeout -s KILL 180 "$BIN/sf-test-worker" --exit-on-idle 30000 >"$WORK/a.log" 2>&1 &
    PIDS+=($!); A=$!
    SCMFLOW_WORKER_BATCH=20 timeout -s KILL 180 "$BIN/sf-test-worker" --exit-on-idle 15000 >"$WORK/b.log" 2>&1 &
    PIDS+=($!); B=$!
    rca=0; wait "$A" || rca=$?
    [ "$rca" = 137 ] || tenv_fail "instance A exited $rca, want 137 (killed at its failpoint)"
    rcb=0; wait "$B" || rcb=$?
    [ "$rcb" = 0 ] || tenv_fail "instance B exited $rcb"
    grep -q "partition(s) assigned" "$WORK/a.log" || tenv_fail "A never got partitions"
    grep -q "partition(s) assigned" "$WORK/b.log" || tenv_fail "B never got partitions"
    # B must have been given partitions again after A died (A's share).
    [ "$(grep -c "partition(s) assigned" "$WORK/b.log")" -ge 2 ] || tenv_fail "B never took over A's partitions"
    check_exactly_once 4000
    ;;
http)
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    BASE="http://127.0.0.1:$PORT"
    DBNAME=${DB_URL##*/}
    produce --count 200 --poison-every 50 || tenv_fail "produce failed"
    SCMFLOW_HTTP_LISTEN=127.0.0.1:$PORT SCMFLOW_DB_CONNECT_TIMEOUT=2s timeout -s KILL 180 "$BIN/sf-test-worker" \
        >"$WORK/w1.log" 2>&1 &
    W=$!; PIDS+=($W)
    code() { curl -s -o /dev/null -w '%{http_code}' "$BASE$1"; }
    metric() { curl -fsS "$BASE/metrics" | awk -v m="$1" 'index($0, m) == 1 { s += $NF } END { print s + 0 }'; }
    # For tenv_wait_for: re-evaluated on every try.
    code_is() { [ "$(code "$2")" = "$1" ]; }
    metric_ge() { [ "$(metric "$1")" -ge "$2" ]; }
    metric_eq() { [ "$(metric "$1")" = "$2" ]; }
    tenv_wait_for 60 code_is 200 /healthz || tenv_fail "/healthz never answered 200"
    tenv_wait_for 60 code_is 200 /readyz || tenv_fail "/readyz never became 200"
    tenv_wait_for 60 metric_ge scmflow_messages_produced_total 200 \
        || tenv_fail "produced counter stuck at $(metric scmflow_messages_produced_total), want 200"
    curl -fsS "$BASE/metrics" > "$WORK/metrics1.txt"
    c=$(metric scmflow_messages_consumed_total); d=$(metric scmflow_messages_deadlettered_total)
    [ "$c" -ge 200 ] || tenv_fail "consumed counter $c, want >= 200"
    [ "$d" = 4 ] || tenv_fail "dead-lettered counter $d, want 4"
    grep -q '^scmflow_consumer_lag' "$WORK/metrics1.txt" || tenv_fail "scmflow_consumer_lag missing from /metrics"
    grep -q '^scmflow_outbox_backlog' "$WORK/metrics1.txt" || tenv_fail "scmflow_outbox_backlog missing from /metrics"
    # Domain gauges from the shared schema (every worker migrates it): no
    # orders here, so every state reads 0 and the license max its default.
    grep -q '^scmflow_orders{state="stored"} 0$' "$WORK/metrics1.txt" ||
        tenv_fail "scmflow_orders{state=\"stored\"} 0 missing from /metrics"
    grep -q '^scmflow_repository_certificates 0$' "$WORK/metrics1.txt" ||
        tenv_fail "scmflow_repository_certificates missing from /metrics"
    grep -q '^scmflow_repository_license_max 1000000$' "$WORK/metrics1.txt" ||
        tenv_fail "scmflow_repository_license_max missing from /metrics"
    tenv_wait_for 20 metric_eq scmflow_outbox_backlog 0 || tenv_fail "outbox backlog gauge never reached 0"
    # More traffic: the counters must move.
    produce --count 100 --start 100000 || tenv_fail "produce failed"
    tenv_wait_for 60 metric_ge scmflow_messages_produced_total 300 \
        || tenv_fail "produced counter did not move (still $(metric scmflow_messages_produced_total))"
    an=$(psql "$ADMIN_URL" -XAtq -c "SELECT count(*) FROM pg_stat_activity WHERE datname = '$DBNAME' AND application_name = 'test-worker'")
    [ "$an" -ge 1 ] || tenv_fail "no connection with application_name test-worker (sf_db_open_opts)"
    # Database down (connections refused): not ready; back: ready again.
    psql "$ADMIN_URL" -XAtq -c "ALTER DATABASE \"$DBNAME\" ALLOW_CONNECTIONS false" \
        -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '$DBNAME' AND pid <> pg_backend_pid()" >/dev/null
    tenv_wait_for 30 code_is 503 /readyz || tenv_fail "/readyz stayed $(code /readyz) with the database down"
    [ "$(code /healthz)" = 200 ] || tenv_fail "/healthz not 200 while the database is down"
    psql "$ADMIN_URL" -XAtq -c "ALTER DATABASE \"$DBNAME\" ALLOW_CONNECTIONS true" >/dev/null
    tenv_wait_for 30 code_is 200 /readyz || tenv_fail "/readyz did not recover after the database came back"
    kill -TERM "$W"; rc=0; wait "$W" || rc=$?
    [ "$rc" = 0 ] || tenv_fail "worker exited $rc after SIGTERM"
    check_exactly_once 300
    ;;
sigterm)
    produce --count 3000 --dup-every 300 || tenv_fail "produce failed"
    SCMFLOW_WORKER_BATCH=10 timeout -s KILL 180 "$BIN/sf-test-worker" >"$WORK/w1.log" 2>&1 &
    W=$!; PIDS+=($W)
    rows_ge() { [ "$(sql "select count(*) from test_items")" -ge "$1" ]; }
    tenv_wait_for 60 rows_ge 300 || tenv_fail "worker made no progress"
    t0=$(date +%s%N)
    kill -TERM "$W"
    rc=0; wait "$W" || rc=$?
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    [ "$rc" = 0 ] || tenv_fail "worker exited $rc after SIGTERM, want 0"
    [ "$ms" -le 15000 ] || tenv_fail "worker took $ms ms to stop after SIGTERM (deadline 15 s)"
    rows_before=$(sql "select count(*) from test_items")
    [ "$rows_before" -lt 3000 ] || tenv_fail "SIGTERM came too late ($rows_before rows already)"
    echo "stopped after SIGTERM in $ms ms with $rows_before rows"
    rc=$(run_worker "$WORK/w2.log" --exit-on-idle 4000)
    [ "$rc" = 0 ] || tenv_fail "restarted worker exited $rc"
    check_exactly_once 3000
    ;;
tick)
    # No input; two replicas run the 1 s task for a measured window.
    export SCMFLOW_TEST_TICK=true SCMFLOW_TEST_TICK_INTERVAL=1s
    timeout -s KILL 120 "$BIN/sf-test-worker" >"$WORK/a.log" 2>&1 &
    A=$!; PIDS+=($A)
    timeout -s KILL 120 "$BIN/sf-test-worker" >"$WORK/b.log" 2>&1 &
    B=$!; PIDS+=($B)
    ticks_ge() { [ "$(sql "select count(*) from test_ticks" 2>/dev/null || echo 0)" -ge "$1" ]; }
    tenv_wait_for 60 ticks_ge 1 || tenv_fail "the task never ran"
    # A measured window (not a settle delay): ~10 runs expected in it.
    tenv_wait_for 30 ticks_ge 10 || tenv_fail "fewer than 10 task runs in 30 s (interval 1 s)"
    kill -TERM "$A" "$B"
    rca=0; wait "$A" || rca=$?; rcb=0; wait "$B" || rcb=$?
    [ "$rca" = 0 ] && [ "$rcb" = 0 ] || tenv_fail "replicas exited $rca/$rcb after SIGTERM"
    read -r runs span inst mingap < <(sql "select count(*), ceil(extract(epoch from max(created_at) - min(created_at))),
        count(distinct instance), coalesce(min(gap), 0) from (select created_at, instance,
        extract(epoch from created_at - lag(created_at) over (order by created_at)) as gap from test_ticks) t" | tr '|' ' ')
    echo "task runs: $runs over ${span}s by $inst replica(s), smallest gap ${mingap}s"
    [ "$runs" -ge 8 ] || tenv_fail "only $runs task runs in ${span}s (interval 1 s)"
    [ "$runs" -le $(( span + 2 )) ] || tenv_fail "$runs task runs in ${span}s: fired more than once per interval"
    awk -v g="$mingap" 'BEGIN { exit !(g >= 0.5) }' || tenv_fail "two runs ${mingap}s apart: fired twice in one interval"
    consume --topic "${PREFIX}events" --format cid > "$WORK/ticks.txt" || tenv_fail "could not read events"
    ev=$(wc -l < "$WORK/ticks.txt"); evd=$(sort -u "$WORK/ticks.txt" | wc -l)
    [ "$ev" = "$runs" ] && [ "$evd" = "$runs" ] || tenv_fail "tick events: $ev ($evd distinct), want $runs"
    ;;
valgrind)
    command -v valgrind >/dev/null || tenv_fail "valgrind not installed"
    produce --count 200 --dup-every 50 --poison-every 50 || tenv_fail "produce failed"
    rc=0
    WORKER_TIMEOUT=300 timeout -s KILL 300 valgrind --leak-check=full --errors-for-leak-kinds=definite \
        --error-exitcode=99 "${VG_WORKER:-$BIN/sf-test-worker}" --exit-on-idle 6000 >"$WORK/vg.log" 2>&1 || rc=$?
    [ "$rc" = 0 ] || tenv_fail "worker under valgrind exited $rc"
    grep -q "ERROR SUMMARY: 0 errors" "$WORK/vg.log" || tenv_fail "valgrind reported errors"
    check_exactly_once 200
    ;;
*)
    tenv_fail "unknown scenario $SCENARIO"
    ;;
esac
echo "PASS: $SCENARIO ${2:-}"
