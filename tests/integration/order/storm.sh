#!/bin/bash
# 200 SIGKILLs at random instants (0.2-1 s into each life of the worker)
# across a stream of orders it is enrolling; then a clean run finishes the
# stream. The stream is made longer than the storm (600 orders, 300 ms of
# SCM latency) so that the storm always reaches its 200 kills. Zero
# duplicates (scm-sim's enrollment record: one per order) and zero lost
# (every order submitted with the sslId SCM has).
OT_NAME=orderstorm
N=${STORM_ORDERS:-600}
MAX_KILLS=${STORM_KILLS:-200}
. "$(dirname "$0")/lib.sh"
ot_setup
export SCMFLOW_SUBMIT_BATCH=${STORM_BATCH:-2} SCMFLOW_LOG_LEVEL=warn
ot_sim
ot_ready
ot_sim_post faults "{\"latency_ms\":${STORM_LATENCY_MS:-300},\"latency_jitter_ms\":50}" || ot_fail "faults"

for k in $(seq 1 "$N"); do
    ot_enroll_json "st-$k" "st$k.scmflow.test"
    echo
done | while read -r data; do
    id=$(jq -r .order_id <<<"$data")
    printf '%s\t{"specversion":"1.0","id":"cmd-%s","source":"test","type":"scmflow.order.enroll","time":"2026-01-01T00:00:00Z","datacontenttype":"application/json","data":%s}\n' "$id" "$id" "$data"
done | kcat -P -b "$SCMFLOW_KAFKA_BROKERS" -t "${SCMFLOW_TOPIC_PREFIX}order.commands" -K '\t' 2>/dev/null

# let the commands be consumed, then kill at random instants
ot_submitter storm0
tenv_wait_for 120 bash -c "[ \$(psql '$OT_DB_URL' -XAtq -c 'select count(*) from orders') -ge $N ]" || ot_fail "commands not consumed"
kills=0
start=$(date +%s)
while [ $kills -lt "$MAX_KILLS" ] && [ $(( $(date +%s) - start )) -lt ${STORM_SECONDS:-420} ]; do
    done_n=$(ot_sql "select count(*) from orders where state='submitted'")
    [ "$done_n" -ge "$N" ] && break
    sleep "0.$(( RANDOM % 8 + 2 ))"
    kill -KILL "$OT_LAST_PID" 2>/dev/null && kills=$((kills + 1))
    wait "$OT_LAST_PID" 2>/dev/null
    ot_submitter "storm$kills"
done
during=$(ot_sql "select count(*) from orders where state='submitted'")
echo "storm: $kills SIGKILLs in $(( $(date +%s) - start )) s, $during/$N submitted during the storm"
[ $kills -ge "$MAX_KILLS" ] || ot_fail "the storm ended after $kills of $MAX_KILLS kills: make the stream longer"
# the rest of the stream at full speed, by a worker left alone
curl -fsS -X DELETE "$OT_SIM_ADMIN/faults" >/dev/null
ot_wait_sql 240 "select count(*) from orders where state='submitted'" "$N" ||
    ot_fail "lost orders: $(ot_sql "select state, count(*) from orders group by 1")"
enr=$(ot_sim_get enrollments)
total=$(jq '[.enrollments[] | select(.commonName | startswith("st"))] | length' <<<"$enr")
distinct=$(jq '[.enrollments[] | select(.commonName | startswith("st")) | .commonName] | unique | length' <<<"$enr")
[ "$total" = "$N" ] && [ "$distinct" = "$N" ] || ot_fail "SCM has $total enrollments for $distinct names (want $N/$N)"
mism=$(ot_sql "select count(*) from orders where state='submitted'" )
jq -r '.enrollments[] | select(.commonName | startswith("st")) | "\(.commonName) \(.sslId)"' <<<"$enr" | sort > "$OT_DIR/scm.txt"
ot_sql "select common_name || ' ' || ssl_id from orders" | sort > "$OT_DIR/ours.txt"
diff -q "$OT_DIR/scm.txt" "$OT_DIR/ours.txt" >/dev/null || ot_fail "sslIds differ: $(diff "$OT_DIR/scm.txt" "$OT_DIR/ours.txt" | head)"
ot_ok "$kills SIGKILLs: $N orders, $total SCM enrollments, 0 duplicates, 0 lost ($mism held)"
