#!/bin/bash
# The poll task runs on a thread of its own. While one long run checks
# orders (SCMFLOW_STATUS_SLICE=10m: the run does not end in between), the
# main loop goes on relaying the events of the rounds already recorded and
# taking in check commands. With the task on the main loop both waited for
# the end of the run. A requested check goes before the orders already
# due, so it is answered in seconds, not at the end of the cycle.
PT_NAME=pbusy
N=1000
. "$SCMFLOW_SOURCE_DIR/tests/integration/poller/lib.sh"
pt_setup
pt_sim --issue-after-polls 1000000 --generate-certs "$N" --record-max 100
pt_account
pt_generated_orders "$N" busy submitted
pt_sim_post faults '{"latency_ms": 100}'
# 8 in flight at 100 ms: about 80 checks a second, a run of about 12 s
pt_start poller "$STATUS_POLLER" SCMFLOW_STATUS_SLICE=10m SCMFLOW_STATUS_BATCH=50 \
    SCMFLOW_STATUS_INFLIGHT=8 SCMFLOW_STATUS_LADDER=1h
left() { pt_sql "select count(*) from orders where scm_status is null"; }

# events of the first rounds reach Kafka while most orders are unchecked
pt_wait_event 20 '.type == "order.status_changed"'
n=$(left)
[ "$n" -gt $((N / 2)) ] || pt_fail "the first event came when only $n of $N orders were left"
pt_ok "events published during the run ($n of $N orders still unchecked)"

# a check command is taken in while the run goes on
last=$(pt_sql "select id from orders order by ssl_id desc limit 1")
cid=$(pt_publish status.commands scmflow.order.check_status "$last" "{\"order_id\": \"$last\"}")
pt_wait_sql 5 "select count(*) from orders where id = '$last' and check_command_id = '$cid'" 1
n=$(left)
[ "$n" -gt 0 ] || pt_fail "the run ended before the command was taken in"
pt_ok "check command taken in during the run ($n orders still unchecked)"

# ... and answered before the orders that were due before it
pt_wait_event 8 ".correlationid == \"$cid\" and .type == \"order.status_changed\""
n=$(left)
[ "$n" -gt 0 ] || pt_fail "the requested check was answered only at the end of the cycle"
pt_ok "requested check answered during the run ($n orders still unchecked)"

pt_wait_sql 60 "select count(*) from orders where scm_status is null or lease_owner is not null" 0
runs=$(grep -c 'checked [0-9]* orders' "$PT_DIR/poller.log")
[ "$runs" = 1 ] || pt_fail "$runs poll runs, want the one long run"
pt_ok "all $N orders checked in one run"
