#!/bin/bash
# A poller replica killed (SIGKILL) right after claiming a batch leaves its
# orders leased; another replica takes them over once the lease expires (not
# before) and every order reaches the repository.
PT_NAME=plea
. "$(dirname "$0")/lib.sh"
pt_setup
export SCMFLOW_STATUS_LEASE=4s
pt_sim --issue-after-polls 0
pt_account
for i in $(seq 1 20); do
    ssl=$(pt_enroll "k$i.scmflow.test") || pt_fail enroll
    pt_order "k-$i" "$ssl" "k$i.scmflow.test"
done
pt_start ingest "$REPO_INGEST"
pt_start dying "$STATUS_POLLER" SCMFLOW_FAILPOINT=poller.after_claim SCMFLOW_CONSUMER_GROUP=${SCMFLOW_TOPIC_PREFIX}g-dying
dying=$PT_LAST_PID
tenv_wait_for 30 bash -c "! kill -0 $dying" || pt_fail "the failpoint did not kill the poller"
leased=$(pt_sql "select count(*) from orders where lease_owner is not null and lease_until > now() and state='submitted'")
[ "$leased" = 20 ] || pt_fail "leased orders after the kill: $leased"
until_=$(pt_sql "select max(lease_until) from orders")
pt_ok "replica killed holding 20 leases (until $until_)"

pt_start survivor "$STATUS_POLLER" SCMFLOW_CONSUMER_GROUP=${SCMFLOW_TOPIC_PREFIX}g-survivor
pt_wait_sql 60 "select count(*) from orders where state='stored'" 20
early=$(pt_sql "select count(*) from order_status_history where new_state='issued' and at < '$until_'::timestamptz")
[ "$early" = 0 ] || pt_fail "$early orders taken over before the lease expired"
[ "$(pt_sql "select count(*) from certificates")" = 20 ] || pt_fail "certificates"
pt_ok "survivor took over after the lease expired; 20 stored"
