#!/bin/bash
# Never twice, never lost: each failpoint SIGKILLs the worker at that instant
# (SCMFLOW_FAILPOINT); after a restart scm-sim's enrollment record shows
# exactly one enrollment per command and scmflow holds the order. Then SCM
# faults on enroll (timeout after commit, hang, reset, 500: outcome
# unknown; 503: refused) are reconciled without duplicates.
OT_NAME=orderfault
export SCMFLOW_SCM_TIMEOUT=2s
. "$(dirname "$0")/lib.sh"
ot_setup
ot_sim
ot_ready

check_one() { # ORDER_ID CN
    ot_wait_sql 60 "select state from orders where id='$1'" submitted ||
        ot_fail "$1 not submitted: $(ot_sql "select state, last_error from orders where id='$1'")"
    local n; n=$(ot_sim_get enrollments | jq "[.enrollments[] | select(.commonName==\"$2\")] | length")
    [ "$n" = 1 ] || ot_fail "$1: $n SCM enrollments"
    local ssl; ssl=$(ot_sql "select ssl_id from orders where id='$1'")
    [ "$(ot_sim_get enrollments | jq "[.enrollments[] | select(.commonName==\"$2\")][0].sslId")" = "$ssl" ] ||
        ot_fail "$1: scmflow holds sslId $ssl, not SCM's"
}

i=0
for fp in submit.before_scm_call submit.after_scm_call_before_commit worker.after_handler \
          worker.after_commit_before_offset relay.after_produce_before_mark; do
    i=$((i + 1))
    ot_submitter "fp$i" SCMFLOW_FAILPOINT="$fp"
    pid=$OT_LAST_PID
    ot_publish scmflow.order.enroll "F$i" "$(ot_enroll_json "F$i" "f$i.scmflow.test")" >/dev/null
    tenv_wait_for 60 bash -c "! kill -0 $pid 2>/dev/null" || ot_fail "failpoint $fp never hit"
    wait "$pid" 2>/dev/null
    grep -q "worker stopping" "$OT_DIR/fp$i.log" && ot_fail "$fp: worker stopped cleanly instead of being killed"
    ot_submitter "fp$i-restart"
    check_one "F$i" "f$i.scmflow.test"
    tenv_wait_for 30 bash -c "kcat -C -b '$SCMFLOW_KAFKA_BROKERS' -t '${SCMFLOW_TOPIC_PREFIX}events' -o beginning -e -q 2>/dev/null | grep '\"order.submitted\"' | grep -q '\"F$i\"'" ||
        ot_fail "$fp: order.submitted never published"
    kill -TERM "$OT_LAST_PID"; wait "$OT_LAST_PID" 2>/dev/null
    ot_ok "failpoint $fp: SIGKILL + restart, one SCM order, order held"
done

# SCM faults on enroll
ot_submitter sub
j=0
for kind in timeout_after_commit hang reset 500 503; do
    j=$((j + 1))
    ot_sim_post faults "{\"rules\":[{\"path_prefix\":\"/api/ssl/v1/enroll\",\"method\":\"POST\",\"count\":1,\"kind\":\"$kind\",\"hang_ms\":4000}]}" ||
        ot_fail "set fault"
    ot_publish scmflow.order.enroll "S$j" "$(ot_enroll_json "S$j" "s$j.scmflow.test")" >/dev/null
    check_one "S$j" "s$j.scmflow.test"
    ot_ok "SCM fault $kind on enroll: reconciled, one SCM order"
done
curl -fsS -X DELETE "$OT_SIM_ADMIN/faults" >/dev/null
grep -q "reconciled enroll of order S1: SCM has it" "$OT_DIR/sub.log" || ot_fail "timeout_after_commit was not reconciled"
ot_ok "outcome-unknown enrollment found by reconciliation"

# The database connection is lost while an enroll is in flight: SCM has
# placed the order, so the submitter must keep the result and record it when
# the database answers again (not drop it and leave the order "submitting"
# until the 20 s lease runs out and a reconcile finds it).
ot_sim_post faults '{"latency_ms":1500}' || ot_fail "set latency"
ot_publish scmflow.order.enroll D1 "$(ot_enroll_json D1 d1.scmflow.test)" >/dev/null
ot_wait_sql 30 "select state from orders where id='D1'" submitting || ot_fail "D1 never submitting"
t0=$(date +%s%N)
nt=$(ot_sql "select count(pg_terminate_backend(pid)) from pg_stat_activity
            where datname = current_database() and pid <> pg_backend_pid()")
[ "$nt" -gt 0 ] || ot_fail "no submitter connection to terminate"
ot_wait_sql 10 "select state from orders where id='D1'" submitted ||
    ot_fail "D1 not recorded within 10 s of losing the connection (lease is 20 s): $(ot_sql "select state from orders where id='D1'")"
dt=$(( ($(date +%s%N) - t0) / 1000000 ))
curl -fsS -X DELETE "$OT_SIM_ADMIN/faults" >/dev/null
grep -q "recorded a round of 1 operation(s) after [1-9][0-9]* failed attempt" "$OT_DIR/sub.log" ||
    ot_fail "the round was not recorded by retrying (log has no retry line)"
n=$(ot_sim_get enrollments | jq '[.enrollments[] | select(.commonName=="d1.scmflow.test")] | length')
[ "$n" = 1 ] || ot_fail "D1: $n SCM enrollments"
ot_ok "database connection lost during an enroll ($nt connection(s) terminated): result kept and recorded ${dt} ms later, one SCM order"

# SCM acts on a request after its sender stopped waiting. The `delay` fault
# holds the enroll 3.5 s before scm-sim places the order; a reconcile inside
# that window finds nothing and would enroll a second time (seen once in
# fault.order.kill_storm). Reconciling waits SCMFLOW_SUBMIT_INFLIGHT_GRACE
# (5 s here) after the lease of the call ended.
# (1) the client times out (2 s) first: outcome unknown
ot_sim_post faults '{"rules":[{"path_prefix":"/api/ssl/v1/enroll","method":"POST","count":1,"kind":"delay","hang_ms":3500}]}' ||
    ot_fail "set fault"
ot_publish scmflow.order.enroll G1 "$(ot_enroll_json G1 g1.scmflow.test)" >/dev/null
check_one G1 g1.scmflow.test
ot_ok "SCM placed the order 1.5 s after the client timed out: reconciled after the grace, one SCM order"
kill -TERM "$OT_LAST_PID"; wait "$OT_LAST_PID" 2>/dev/null
# (2) the worker is SIGKILLed with the request in flight and restarted at
# once (its dead lease is taken back at the restart)
ot_submitter inflight
pid=$OT_LAST_PID
ot_sim_post faults '{"rules":[{"path_prefix":"/api/ssl/v1/enroll","method":"POST","count":1,"kind":"delay","hang_ms":3000}]}' ||
    ot_fail "set fault"
ot_publish scmflow.order.enroll G2 "$(ot_enroll_json G2 g2.scmflow.test)" >/dev/null
ot_wait_sql 30 "select state from orders where id='G2'" submitting || ot_fail "G2 never submitting"
sleep 0.5
kill -KILL "$pid"; wait "$pid" 2>/dev/null
ot_submitter inflight-restart
check_one G2 g2.scmflow.test
grep -q "reconciled enroll of order G2: SCM has it" "$OT_DIR/inflight-restart.log" ||
    ot_fail "G2 was not reconciled by the restarted worker"
ot_ok "SIGKILL with an enroll in flight: reconciled after the grace, one SCM order"
curl -fsS -X DELETE "$OT_SIM_ADMIN/faults" >/dev/null

# a lease that an SCM call with its retries could outlast is refused at start
if SCMFLOW_SUBMIT_LEASE=5s "$ORDER_SUBMITTER" > "$OT_DIR/badlease.out" 2>&1; then
    ot_fail "order-submitter started with SCMFLOW_SUBMIT_LEASE=5s and SCMFLOW_SCM_TIMEOUT=2s"
fi
grep -q "SCMFLOW_SUBMIT_LEASE" "$OT_DIR/badlease.out" || ot_fail "the error does not name SCMFLOW_SUBMIT_LEASE: $(cat "$OT_DIR/badlease.out")"
ot_ok "a lease shorter than 3 x SCMFLOW_SCM_TIMEOUT + 1s is refused, naming the setting"
