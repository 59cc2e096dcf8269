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
survivor=$PT_LAST_PID
pt_wait_sql 60 "select count(*) from orders where state='stored'" 20
early=$(pt_sql "select count(*) from order_status_history where new_state='issued' and at < '$until_'::timestamptz")
[ "$early" = 0 ] || pt_fail "$early orders taken over before the lease expired"
[ "$(pt_sql "select count(*) from certificates")" = 20 ] || pt_fail "certificates"
pt_ok "survivor took over after the lease expired; 20 stored"

# The database connection is lost while a round is being checked: the round
# cannot be recorded, and its orders must come back at once (the next poll
# task gives back the leases of this instance), not after the 60 s lease.
pt_stop "$survivor" survivor
for i in $(seq 1 5); do
    ssl=$(pt_enroll "d$i.scmflow.test") || pt_fail enroll
    pt_order "d-$i" "$ssl" "d$i.scmflow.test"
done
pt_sim_post faults '{"latency_ms":1500}' || pt_fail "set latency"
pt_start third "$STATUS_POLLER" SCMFLOW_STATUS_LEASE=60s SCMFLOW_CONSUMER_GROUP=${SCMFLOW_TOPIC_PREFIX}g-third
pt_wait_sql 30 "select count(*) from orders where id like 'd-%' and lease_owner is not null" 5
t0=$(date +%s%N)
nt=$(pt_sql "select count(pg_terminate_backend(pid)) from pg_stat_activity
             where datname = current_database() and pid <> pg_backend_pid()")
pt_wait_sql 30 "select count(*) from orders where id like 'd-%' and state='stored'" 5
dt=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$dt" -lt 30000 ] || pt_fail "stored only after ${dt} ms"
grep -q "took back 5 lease(s) of a round not recorded" "$PT_DIR/third.log" ||
    pt_fail "the leases were not taken back (see third.log)"
pt_ok "connection lost during a check ($nt connection(s) terminated): leases taken back, 5 stored ${dt} ms later (lease 60 s)"

# A replica stopped (SIGTERM) in the middle of the work gives back every
# lease it holds, including the round its claimer had already taken for the
# next check: nothing waits for a lease to expire after a clean stop.
pt_stop "$PT_LAST_PID" third
curl -fsS -X DELETE "$PT_SIM_ADMIN/faults" >/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$PT_DIR/s.key" \
    -subj "/CN=s.scmflow.test" -out "$PT_DIR/s.csr" 2>/dev/null || pt_fail "openssl req"
body=$(jq -n --rawfile csr "$PT_DIR/s.csr" '{orgId:1001, csr:$csr, certType:501, term:365, subjAltNames:"s.scmflow.test", customFields:[{name:"Cost Center", value:"CC-1"}]}')
for i in $(seq 1 60); do
    ssl=$(curl -fsS -X POST -H 'Content-Type: application/json' -H "login: $PT_LOGIN" -H "password: $PT_PASSWORD" \
        -H "customerUri: $PT_CUSTOMER" --data-binary "$body" "$PT_SIM/ssl/v1/enroll" | jq -e .sslId) || pt_fail "enroll s-$i"
    pt_order "s-$i" "$ssl" "s.scmflow.test"
done
pt_sim_post faults '{"latency_ms":300}' || pt_fail "set latency"
pt_start fourth "$STATUS_POLLER" SCMFLOW_STATUS_LEASE=60s SCMFLOW_STATUS_BATCH=10 SCMFLOW_STATUS_INFLIGHT=4 \
    SCMFLOW_CONSUMER_GROUP=${SCMFLOW_TOPIC_PREFIX}g-fourth
pt_wait_sql 30 "select count(*) > 0 from orders where id like 's-%' and scm_status is not null" t
pt_stop "$PT_LAST_PID" fourth
wait "$PT_LAST_PID" 2>/dev/null
left=$(pt_sql "select count(*) from orders where id like 's-%' and lease_owner is not null")
done_=$(pt_sql "select count(*) from orders where id like 's-%' and scm_status is not null")
[ "$left" = 0 ] || pt_fail "$left orders still leased after a clean stop ($done_ checked)"
[ "$done_" -lt 60 ] || pt_fail "all 60 checked before the stop: the test did not stop mid-work"
pt_ok "stopped mid-work ($done_ of 60 checked): no lease left behind"
