#!/usr/bin/env bash
# Faults during a stream of orders, two replicas of every worker, all
# private instances (this test stops and restarts them):
#   A. baseline orders
#   B. SCM outage: every /api call fails for E2E_OUTAGE_S (default 30 s:
#      first answering 503, then hanging); orders keep arriving and wait in PostgreSQL
#   C. every Kafka broker down for 8 s while orders are in flight (their
#      events wait in the outboxes), more orders right after it is back
#   D. PostgreSQL stopped for 5 s and started again on the same port
# Afterwards every order is stored exactly once and the simulator's
# enrollment count equals scmflow's order count (no duplicate, none lost).
E2E_NAME=faults
. "$(dirname "$0")/lib.sh"
OUTAGE_S=${E2E_OUTAGE_S:-30}
PER_PHASE=${E2E_PER_PHASE:-6}
e2e_pg_private
e2e_kafka_private
e2e_setup
e2e_sim
e2e_workers
e2e_account
e2e_ctl "$E2E_DIR/sync.out" sync --quiet
e2e_ok "private PostgreSQL, broker, scm-sim; 2 replicas x 4 workers; catalog synced"

n=0
# order_batch COUNT: publish COUNT enroll commands (EC P-256, PEM) with kcat.
order_batch() {
    local i
    for ((i = 0; i < $1; i++)); do
        n=$((n + 1))
        e2e_publish order.commands scmflow.order.enroll "f-$n" \
            "$(e2e_enroll_json "f-$n" "f$n.acme.example" EC 256 PEM)" >/dev/null
    done
}
stored() { e2e_sql "select count(*) from orders where id like 'f-%' and state = 'stored'"; }

# A. baseline
order_batch "$PER_PHASE"
e2e_wait_sql 90 "select count(*) from orders where id like 'f-%' and state = 'stored'" "$n" ||
    e2e_fail "baseline orders not stored"
e2e_ok "A: $n orders stored"

# B. SCM outage
e2e_sim_post faults '{"rules":[{"path_prefix":"/api","kind":"503","error_rate":1.0,"retry_after_s":1}]}'
t_out=$(date +%s)
before=$(stored)
order_batch "$PER_PHASE"
# accepted, waiting in PostgreSQL, none in SCM
e2e_wait_sql $((OUTAGE_S / 2)) "select count(*) from orders where id like 'f-%' and ssl_id is null" "$PER_PHASE" ||
    e2e_fail "the new orders were not accepted, or reached SCM during the outage"
rest=$(( OUTAGE_S / 2 - ( $(date +%s) - t_out ) ))
[ $rest -gt 0 ] && sleep $rest
e2e_sim_post faults '{"rules":[{"path_prefix":"/api","kind":"hang","error_rate":1.0,"hang_ms":2000}]}'
rest=$(( OUTAGE_S - ( $(date +%s) - t_out ) ))
[ $rest -gt 0 ] && sleep $rest
e2e_sim_post faults '{"rules":[{"path_prefix":"/api","kind":"503","error_rate":1.0,"retry_after_s":1}]}'
sleep 1
[ "$(stored)" = "$before" ] || e2e_fail "orders stored while SCM was down ($before -> $(stored))"
failed503=$(e2e_sim_get "requests?path_prefix=/api/ssl/v1/enroll" | jq '[.[] | select(.status == 503)] | length')
[ "$failed503" -gt 0 ] || e2e_fail "no enroll attempt was answered 503: the outage was not exercised"
curl -fsS -X DELETE "$E2E_SIM_ADMIN/faults" >/dev/null
e2e_workers_alive
e2e_wait_sql 120 "select count(*) from orders where id like 'f-%' and state = 'stored'" "$n" ||
    e2e_fail "orders not stored after the SCM outage: $(e2e_sql "select state, count(*) from orders where id like 'f-%' group by 1")"
e2e_ok "B: SCM down ${OUTAGE_S}s (503 then hang; $failed503 enroll attempts got 503 and were retried), all $n stored after it came back"

# C. broker outage: orders in flight (being submitted, polled, collected:
# their events and collected certificates wait in the outboxes), then every
# broker down for 8 s; more orders right after it is back.
order_batch "$PER_PHASE"
sleep 0.5
e2e_kafka_all down
sleep 8
e2e_kafka_all up
order_batch 2
e2e_workers_alive
e2e_wait_sql 150 "select count(*) from orders where id like 'f-%' and state = 'stored'" "$n" ||
    e2e_fail "orders not stored after the broker outage: $(e2e_sql "select state, count(*) from orders where id like 'f-%' group by 1")"
e2e_ok "C: brokers down 8 s, all $n stored after they came back"

# D. PostgreSQL restart while orders arrive
order_batch "$PER_PHASE"
e2e_pg_restart 5
order_batch 2
e2e_workers_alive
e2e_wait_sql 150 "select count(*) from orders where id like 'f-%' and state = 'stored'" "$n" ||
    e2e_fail "orders not stored after the PostgreSQL restart: $(e2e_sql "select state, count(*) from orders where id like 'f-%' group by 1")"
e2e_ok "D: PostgreSQL restarted (5 s down), all $n stored"

# Everything settled and consistent
e2e_workers_alive
e2e_consistency
[ "$E2E_N_ENROLLMENTS" = "$n" ] || e2e_fail "SCM has $E2E_N_ENROLLMENTS enrollments for $n orders"
e2e_ok "consistent: $n orders, $n SCM enrollments, $n certificates, dead-letter empty"
echo "PASS"
