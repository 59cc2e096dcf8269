#!/usr/bin/env bash
# bench_delivery.sh - throughput of the delivery pipeline
#   consume -> DB transaction (inbox + row + outbox) -> relay -> produce
# with 1 and 2 worker processes, and the same pipeline without the DB
# (SCMFLOW_WORKER_DIRECT: consume -> produce, at least once), side by side.
# Throughput = output events / (last event timestamp - first event
# timestamp), so start-up and the group join are not counted.
# Env: BENCH_N (default 100000), SCMFLOW_WORKER_BATCH (default 500),
# DELIVERY_BIN, and the pg + kafka fixtures (tests/lib/testenv.sh).
set -euo pipefail
. "${SCMFLOW_SOURCE_DIR:?}/tests/lib/testenv.sh"
tenv_load
BIN=${DELIVERY_BIN:?}
N=${BENCH_N:-100000}
export SCMFLOW_WORKER_BATCH=${SCMFLOW_WORKER_BATCH:-500}
export SCMFLOW_LOG_FORMAT=text SCMFLOW_LOG_LEVEL=warn
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench.XXXXXX")
export SCMFLOW_MASTER_KEY_FILE=$(tenv_master_key "$WORK/master.key")
trap 'rc=$?; [ $rc = 0 ] && rm -rf "$WORK" || echo "logs kept in $WORK" >&2' EXIT

# run MODE WORKERS: prints msgs/s
run() {
    local mode=$1 workers=$2 db prefix pids=() rc=0
    db=$(tenv_new_db bench)
    prefix=$(tenv_topic_prefix "bench-$mode-$workers")
    export SCMFLOW_DATABASE_URL=$db SCMFLOW_TOPIC_PREFIX=$prefix SCMFLOW_CONSUMER_GROUP="g-$prefix"
    export SCMFLOW_WORKER_DIRECT=$([ "$mode" = direct ] && echo true || echo false)
    # The dev broker (librdkafka mock) keeps at most 5 MB per partition log
    # and evicts older data: 100,000 events need more than its default 4
    # partitions, so create the topics wide through its control API.
    if [ -n "${KAFKA_DEVBROKER_CONTROL:-}" ]; then
        for t in test.in events deadletter; do
            tenv_kafka_ctl "topic?name=${prefix}${t}&partitions=${BENCH_PARTITIONS:-16}" >/dev/null \
                || tenv_fail "could not create topic ${prefix}${t}"
        done
    fi
    timeout -s KILL 300 "$BIN/sf-test-produce" --brokers "$SCMFLOW_KAFKA_BROKERS" --topic "${prefix}test.in" \
        --count "$N" --timeout-ms 120000 >/dev/null || tenv_fail "produce failed"
    for i in $(seq 1 "$workers"); do
        timeout -s KILL 900 "$BIN/sf-test-worker" --exit-on-idle 5000 >"$WORK/$mode-$workers-$i.log" 2>&1 &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || rc=$?; done
    [ "$rc" = 0 ] || { tail -20 "$WORK"/*.log >&2; tenv_fail "worker failed ($mode x$workers)"; }
    timeout -s KILL 300 "$BIN/sf-test-consume" --brokers "$SCMFLOW_KAFKA_BROKERS" --topic "${prefix}events" \
        --format ts --timeout-ms 240000 --summary "$WORK/sum.txt" > "$WORK/ts.txt" 2>"$WORK/consume.err" \
        || { cat "$WORK/consume.err" >&2; tenv_fail "could not read events"; }
    # What was produced, independent of what the broker still holds: outbox
    # rows marked sent (db mode) and the sum of the high watermarks (every
    # message ever appended). The first bench shortfall ("only 50002 of
    # 100000") was the dev broker's eviction, not a loss: proven with
    # 100,000 events on 4 partitions -> 100,000 rows, 100,000 outbox rows
    # sent, high watermarks summing to 100,000, low watermarks summing to
    # 26,358 and exactly 73,642 = 100,000 - 26,358 events readable.
    local sent=-1 high low readable
    if [ "$mode" = db ]; then
        sent=$(psql "$db" -XAtq -c "select count(*) from outbox where sent_at is not null") || tenv_fail "outbox count"
    fi
    tenv_drop_db "$db"
    read -r high low readable < <(sed 's/[a-z]*=//g' "$WORK/sum.txt")
    if [ "$low" -gt 0 ]; then
        echo "note ($mode x$workers): the dev broker evicted the first $low of $high events (5 MB/partition" \
             "limit); counting by watermarks, throughput from the $readable still readable" >&2
    fi
    if [ "$mode" = db ] && [ "$sent" != "$N" ]; then
        tenv_fail "$mode x$workers: $sent outbox rows sent, want $N"
    fi
    # db mode is exactly once: exactly N appended; direct mode is at least once.
    if { [ "$mode" = db ] && [ "$high" != "$N" ]; } || [ "$high" -lt "$N" ]; then
        tenv_fail "$mode x$workers: $high events appended to the topic, want $N"
    fi
    sort -n "$WORK/ts.txt" | awk -v n="$readable" -v mode="$mode" -v w="$workers" '
        NR == 1 { first = $1 } { last = $1; c++ }
        END {
            if (c < n) { printf "%s x%d: read only %d of %d readable events\n", mode, w, c, n > "/dev/stderr"; exit 1 }
            secs = (last - first) / 1000.0; if (secs <= 0) secs = 0.001
            printf "%.0f\n", (c - 1) / secs
        }'
}

db1=$(run db 1); db2=$(run db 2); d1=$(run direct 1); d2=$(run direct 2)
printf '\nbench_delivery: %d messages, batch %s, this machine (%s cores)\n' "$N" "$SCMFLOW_WORKER_BATCH" "$(nproc)"
printf '%-10s %22s %22s %8s\n' workers "db+outbox (msg/s)" "no db (msg/s)" ratio
printf '%-10s %22s %22s %8s\n' 1 "$db1" "$d1" "$(awk -v a="$db1" -v b="$d1" 'BEGIN{printf "%.2f", a/b}')"
printf '%-10s %22s %22s %8s\n' 2 "$db2" "$d2" "$(awk -v a="$db2" -v b="$d2" 'BEGIN{printf "%.2f", a/b}')"
awk -v a="$db1" 'BEGIN{ if (a < 5000) { print "below the 5,000 msg/s target (1 worker)"; } else print "target >= 5,000 msg/s effectively-once: met (1 worker)" }'
