#!/bin/bash
# The per-round deadline with streaming rounds. A round whose deadline
# (half the lease) passes completes its hung request as a transient failure
# (last_error mentions the deadline) while the other orders, in the same
# round and in later rounds, are checked normally. Also: an order moved to
# Issued gets its collect in the same pass (collect from the callback).
PT_NAME=pdeadline
. "$SCMFLOW_SOURCE_DIR/tests/integration/poller/lib.sh"
pt_setup
pt_sim --issue-after-polls 1000000
pt_account
declare -A SSL
for o in slow f1 f2 iss; do
    SSL[$o]=$(pt_enroll "$o.scmflow.test") || pt_fail "enroll $o"
done
pt_sim_post faults "{\"rules\":[{\"path_prefix\":\"/api/ssl/v1/${SSL[slow]}\",\"count\":1,\"kind\":\"delay\",\"hang_ms\":8000}]}"
pt_sim_post "orders/${SSL[iss]}/status" '{"status":"Issued"}'
for o in slow f1 f2 iss; do pt_order "d-$o" "${SSL[$o]}" "$o.scmflow.test"; done
t0=$(date +%s%N)
pt_start poller "$STATUS_POLLER" SCMFLOW_STATUS_LEASE=4s SCMFLOW_STATUS_LADDER=1h SCMFLOW_STATUS_BATCH=2 SCMFLOW_STATUS_INFLIGHT=4
pt_wait_sql 30 "select count(*) from orders where scm_status='Applied' and last_error is null and id in ('d-f1','d-f2')" 2
pt_wait_sql 30 "select state from orders where id='d-iss'" issued
pt_wait_sql 30 "select count(*) from orders where id='d-slow' and last_error->>'message' like '%deadline exceeded%' and lease_owner is null" 1
t1=$(date +%s%N)
echo "slow order failed by its round deadline after $(( (t1 - t0) / 1000000 )) ms (lease 4s => deadline 2s)"
pt_ok "round deadline: hung request failed transiently, others checked"
