#!/bin/bash
# 10,000 open orders (scm-sim --generate-certs: every SCM status) shared by
# two poller replicas: every order is checked exactly once per cycle (one
# details call per order in scm-sim's request record), both replicas take
# part, and a second cycle (scmctl order check --all) checks each order that
# is still open exactly once more.
PT_NAME=pscale
N=${PT_SCALE_ORDERS:-10000}
. "$(dirname "$0")/lib.sh"
pt_setup
export SCMFLOW_STATUS_LADDER=1h SCMFLOW_STATUS_BATCH=250 SCMFLOW_STATUS_INFLIGHT=32
pt_sim --issue-after-polls 1000000 --generate-certs "$N" --record-max 100000
pt_account

pt_generated_orders "$N" s submitted
curl -fsS -X DELETE "$PT_SIM_ADMIN/requests" >/dev/null
t0=$(date +%s%N)
pt_start r1 "$STATUS_POLLER" SCMFLOW_CONSUMER_GROUP=${SCMFLOW_TOPIC_PREFIX}g-scale
pt_start r2 "$STATUS_POLLER" SCMFLOW_CONSUMER_GROUP=${SCMFLOW_TOPIC_PREFIX}g-scale
pt_wait_sql 300 "select count(*) from orders where scm_status is not null and lease_owner is null" "$N"
t1=$(date +%s%N)
pt_sim_get "requests?summary=1" > "$PT_DIR/summary.json"
read -r calls distinct maxper <<<"$(jq -r '[.by_path | to_entries[] | select(.key|test("^GET /api/ssl/v1/[0-9]+$")) | .value] | "\(add) \(length) \(max)"' "$PT_DIR/summary.json")"
[ "$calls" = "$N" ] && [ "$distinct" = "$N" ] && [ "$maxper" = 1 ] ||
    pt_fail "cycle 1: $calls details calls for $distinct orders (max $maxper per order), want $N each once"
c1=$(grep -o 'checked [0-9]* orders' "$PT_DIR/r1.log" | awk '{s+=$2} END {print s+0}')
c2=$(grep -o 'checked [0-9]* orders' "$PT_DIR/r2.log" | awk '{s+=$2} END {print s+0}')
[ $((c1 + c2)) = "$N" ] && [ "$c1" -gt 0 ] && [ "$c2" -gt 0 ] || pt_fail "replicas checked $c1 + $c2"
pt_ok "cycle 1: $N orders, one details call each, replicas $c1 + $c2, $(( (t1 - t0) / 1000000 )) ms"
echo "   states: $(pt_sql "select string_agg(state || '=' || n, ' ') from (select state, count(*) n from orders group by state order by state) s")"

open=$(pt_sql "select count(*) from orders where state='submitted'")
curl -fsS -X DELETE "$PT_SIM_ADMIN/requests" >/dev/null
"$SCMCTL" order check --all --quiet >/dev/null || pt_fail "order check --all"
details_calls() {
    pt_sim_get "requests?summary=1" | jq -r '[.by_path | to_entries[] | select(.key|test("^GET /api/ssl/v1/[0-9]+$")) | .value] | add // 0'
}
tenv_wait_for 120 bash -c "[ \$(curl -fsS '$PT_SIM_ADMIN/requests?summary=1' | jq -r '[.by_path | to_entries[] | select(.key|test(\"^GET /api/ssl/v1/[0-9]+\$\")) | .value] | add // 0') -ge $open ]" ||
    pt_fail "cycle 2: only $(details_calls) details calls"
pt_wait_sql 60 "select count(*) from orders where state='submitted' and (next_check_at is null or next_check_at > now() + interval '30 minutes') and lease_owner is null" "$open"
pt_sim_get "requests?summary=1" > "$PT_DIR/summary2.json"
read -r calls distinct maxper <<<"$(jq -r '[.by_path | to_entries[] | select(.key|test("^GET /api/ssl/v1/[0-9]+$")) | .value] | "\(add) \(length) \(max)"' "$PT_DIR/summary2.json")"
[ "$calls" = "$open" ] && [ "$maxper" = 1 ] || pt_fail "cycle 2: $calls details calls (max $maxper per order) for $open open orders"
pt_ok "cycle 2 (check --all): $open open orders, one details call each"
