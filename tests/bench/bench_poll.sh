#!/bin/bash
# Benchmark: status checks per second of one status-poller replica for
# BENCH_POLL_ORDERS (default 100,000) orders against scm-sim with 0 ms and
# 20 ms injected latency; at 20 ms the bound is INFLIGHT / latency. Orders
# are SCM's generated certificates (every status) in state 'issued' (already
# collected: one details call each, no collect). Prints checks/s, % of the
# bound, and the poller's peak RSS. Needs the pg + kafka fixtures.
PT_NAME=bpoll
N=${BENCH_POLL_ORDERS:-100000}
INFLIGHT=${BENCH_POLL_INFLIGHT:-64}
. "$SCMFLOW_SOURCE_DIR/tests/integration/poller/lib.sh"
pt_setup
export SCMFLOW_LOG_LEVEL=info
export SCMFLOW_STATUS_BATCH=${BENCH_POLL_BATCH:-2000} SCMFLOW_STATUS_INFLIGHT=$INFLIGHT
pt_sim --issue-after-polls 1000000 --generate-certs "$N" --record-max 1000
pt_account

pt_generated_orders "$N" b issued
pt_sql "VACUUM ANALYZE orders" >/dev/null

run() { # LATENCY_MS
    local lat=$1 pid rss ms n0 rate bound
    pt_sim_post faults "{\"latency_ms\": $lat}"
    pt_sql "UPDATE orders SET state='issued', scm_status=NULL, next_check_at=now(), lease_owner=NULL, lease_until=NULL, needs_attention=false, updated_at='-infinity'" >/dev/null
    pt_sql "VACUUM ANALYZE orders" >/dev/null
    local st0; st0=$(pt_sim_get state)
    pt_start "poller-$lat" "$STATUS_POLLER" SCMFLOW_CONSUMER_GROUP=${SCMFLOW_TOPIC_PREFIX}bench-$lat
    pid=$PT_LAST_PID
    # Timing comes from the database: every round is recorded in one
    # transaction, so updated_at = now() marks when each round ended. The
    # rate is measured from the end of the first round to the end of the
    # last (the first round's orders are not counted). The wait reads the
    # poller's log ("checked N orders" per task), not the table: a count
    # over 100k rows each second took a tenth of the database's time from the
    # system under test. The table is checked once at the end.
    local deadline=$(( $(date +%s) + 1200 )) done=0
    until [ "$done" -ge "$N" ]; do
        [ "$(date +%s)" -lt $deadline ] || pt_fail "$done of $N checked after 1200 s"
        sleep 1
        done=$(grep -o 'checked [0-9]* orders' "$PT_DIR/poller-$lat.log" | awk '{s += $2} END {print s + 0}')
    done
    [ "$(pt_sql "select count(*) from orders where scm_status is null or lease_owner is not null")" = 0 ] ||
        pt_fail "the log says $done checked, the table has orders left"
    read -r ms n0 <<<"$(pt_sql "select round(extract(epoch from max(updated_at) - min(updated_at)) * 1000)::bigint,
        (select count(*) from orders where updated_at = (select min(updated_at) from orders)) from orders" | tr '|' ' ')"
    rss=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
    # What scm-sim itself took per request, from headers parsed to response
    # queued and to response sent: the latency the poller saw from the server.
    jq -rn --argjson a "$st0" --argjson b "$(pt_sim_get state)" '($b.api_answered - $a.api_answered) as $n |
        if $n > 0 then "   scm-sim: \($n) requests, \(((($b.api_answer_us_total - $a.api_answer_us_total) / $n) | floor)) us to answer, \(((($b.api_sent_us_total - $a.api_sent_us_total) / $n) | floor)) us to send (mean)" else empty end'
    pt_stop $pid "poller-$lat"
    grep -o 'checked .*' "$PT_DIR/poller-$lat.log" | tail -2 | sed 's/^/   /'
    grep -E ' (warn|error) ' "$PT_DIR/poller-$lat.log" | grep -v librdkafka | head -3 | sed 's/^/   /'
    rate=$(( (N - n0) * 1000 / (ms > 0 ? ms : 1) ))
    if [ "$lat" -gt 0 ]; then
        bound=$(( INFLIGHT * 1000 / lat ))
        echo "BENCH poll latency=${lat}ms orders=$N inflight=$INFLIGHT: $ms ms, $rate checks/s, bound $bound/s ($(( rate * 100 / bound ))%), peak RSS ${rss} kB"
    else
        echo "BENCH poll latency=0ms orders=$N inflight=$INFLIGHT: $ms ms, $rate checks/s, peak RSS ${rss} kB"
    fi
}
for lat in ${BENCH_POLL_LATENCIES:-0 20}; do run "$lat"; done
