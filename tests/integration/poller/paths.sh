#!/bin/bash
# Declined, Rejected, Invalid end the order with order.failed carrying SCM's
# status; Revoked in SCM (found by an on-demand check of a stored order)
# revokes the order and its certificate; an SCM outage (503 on every details
# call) leaves orders waiting with last_error and they complete once SCM is
# back; a collect failing transiently is retried, not treated as a failure;
# a collect answering "being processed" after SCM said Issued is retried
# later, neither a failure nor a reason for attention.
PT_NAME=ppaths
. "$(dirname "$0")/lib.sh"
pt_setup
pt_sim --issue-after-polls 1000000
pt_account
pt_start ingest "$REPO_INGEST"
pt_start poller "$STATUS_POLLER"

declare -A SSL
for o in dec rej inv rev out col pen; do
    SSL[$o]=$(pt_enroll "$o.scmflow.test") || pt_fail "enroll $o"
    pt_order "p-$o" "${SSL[$o]}" "$o.scmflow.test"
done
# all seen as Applied at least once
pt_wait_sql 30 "select count(*) from orders where scm_status='Applied'" 7

# SCM outage for details of p-out only: 503 for a while
pt_sim_post faults "{\"rules\":[{\"path_prefix\":\"/api/ssl/v1/${SSL[out]}\",\"error_rate\":1.0,\"kind\":\"503\"},
                                 {\"path_prefix\":\"/api/ssl/v1/collect/${SSL[col]}\",\"count\":4,\"kind\":\"503\"},
                                 {\"path_prefix\":\"/api/ssl/v1/collect/${SSL[pen]}\",\"count\":3,\"kind\":\"pending\"}]}"
pt_sim_post "orders/${SSL[dec]}/status" '{"status":"Declined"}'
pt_sim_post "orders/${SSL[rej]}/status" '{"status":"Rejected"}'
pt_sim_post "orders/${SSL[inv]}/status" '{"status":"Invalid"}'
pt_sim_post "orders/${SSL[rev]}/status" '{"status":"Issued"}'
pt_sim_post "orders/${SSL[out]}/status" '{"status":"Issued"}'
pt_sim_post "orders/${SSL[col]}/status" '{"status":"Issued"}'
pt_sim_post "orders/${SSL[pen]}/status" '{"status":"Issued"}'

for o in dec rej inv; do
    pt_wait_sql 30 "select state from orders where id='p-$o'" failed
done
pt_wait_sql 30 "select state from orders where id='p-rev'" stored
pt_wait_sql 30 "select state from orders where id='p-col'" stored
pt_wait_event 20 '.type=="order.failed" and .data.order_id=="p-dec" and .data.status=="Declined" and .data.error.code=="scm_declined"'
pt_wait_event 20 '.type=="order.failed" and .data.order_id=="p-rej" and .data.status=="Rejected"'
pt_wait_event 20 '.type=="order.failed" and .data.order_id=="p-inv" and .data.status=="Invalid"'
pt_wait_event 20 '.type=="order.status_changed" and .data.order_id=="p-dec" and .data.old_status=="Applied" and .data.status=="Declined"'
[ "$(pt_sql "select count(*) from orders where state='failed' and next_check_at is null")" = 3 ] || pt_fail "failed orders still scheduled"
pt_ok "Declined, Rejected, Invalid -> failed with order.failed"
pt_ok "collect failing 4x with 503 was retried and stored"

# Issued, but collect answered "being processed" three times
pt_wait_sql 30 "select state from orders where id='p-pen'" stored
n=$(pt_sim_get "requests?path_prefix=/api/ssl/v1/collect/${SSL[pen]}" | jq 'length')
[ "$n" -ge 4 ] || pt_fail "p-pen: $n collect calls, want >= 4 (3 pending + 1)"
[ "$(pt_sql "select count(*) from orders where id='p-pen' and (needs_attention or last_error is not null)")" = 0 ] ||
    pt_fail "p-pen: pending collect flagged as an error: $(pt_sql "select needs_attention, last_error from orders where id='p-pen'")"
pt_events "$PT_DIR/ev-pen.json"
! jq -e 'select(.type=="order.failed" and .data.order_id=="p-pen")' "$PT_DIR/ev-pen.json" >/dev/null ||
    pt_fail "p-pen: order.failed for a pending collect"
pt_ok "Issued but collect 'being processed' 3x: retried later ($n collect calls), stored, no failure"

# outage: still submitted, with last_error, checks keep coming
pt_wait_sql 30 "select last_error->>'code' from orders where id='p-out'" status_check_failed
[ "$(pt_sql "select state from orders where id='p-out'")" = submitted ] || pt_fail "outage changed the state"
curl -fsS -X DELETE "$PT_SIM_ADMIN/faults" >/dev/null
pt_wait_sql 30 "select state from orders where id='p-out'" stored
pt_ok "SCM outage: order waited, then stored"

# revoked in SCM, seen by an on-demand check
pt_sim_post "orders/${SSL[rev]}/status" '{"status":"Revoked"}'
out=$("$SCMCTL" order check p-rev --quiet) || pt_fail "order check p-rev: $out"
[ "$out" = "order p-rev: status Revoked (was Issued)" ] || pt_fail "order check printed: $out"
pt_wait_sql 10 "select state || ' ' || (select status from certificates where order_id='p-rev') from orders where id='p-rev'" "revoked revoked"
pt_wait_event 20 '.type=="order.revoked" and .data.order_id=="p-rev"'
pt_ok "Revoked in SCM -> order and certificate revoked"

# history recorded every change
[ "$(pt_sql "select count(*) from order_status_history where order_id='p-dec' and new_status='Declined' and old_status='Applied'")" = 1 ] ||
    pt_fail "history of p-dec"
pt_ok "status history"
