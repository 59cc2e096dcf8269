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
