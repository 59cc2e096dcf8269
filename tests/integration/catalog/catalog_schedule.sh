#!/bin/bash
# Two catalog-sync replicas with a short SCMFLOW_CATALOG_SYNC_INTERVAL: each
# scheduled sync fires exactly once (one job per interval, never one per
# replica), and each job runs once.
CT_NAME=catsched
. "$(dirname "$0")/lib.sh"
ct_setup
ct_sim
ct_account
ct_worker r1 SCMFLOW_CATALOG_SYNC_INTERVAL=2s
ct_worker r2 SCMFLOW_CATALOG_SYNC_INTERVAL=2s
# Wait for 5 scheduled runs (deadline), then stop both replicas.
tenv_wait_for 200 bash -c "[ \"\$(psql '$CT_DB_URL' -XAtqc \"select count(*) from catalog_jobs where trigger='schedule' and state='succeeded'\")\" -ge 5 ]" \
    || ct_fail "scheduled syncs did not run: $(ct_sql "select count(*) from catalog_jobs where trigger='schedule'")"
for p in "${CT_PIDS[@]:1}"; do kill -TERM "$p"; done
for p in "${CT_PIDS[@]:1}"; do tenv_wait_for 30 bash -c "! kill -0 $p" || ct_fail "replica $p did not stop"; done

n=$(ct_sql "select count(*) from catalog_jobs where trigger='schedule'")
# Schedule slots are start + k * interval (sf_db_schedule_due keeps the next
# run in the DB); a late check may fire two consecutive slots close
# together, but a slot fired by both replicas would double the count: at
# most one job per elapsed interval (+1 for the first at start).
span=$(ct_sql "select extract(epoch from max(created_at) - min(created_at)) from catalog_jobs where trigger='schedule'")
max=$(awk -v s="$span" 'BEGIN { printf "%d", s / 2 + 1 }')
echo "scheduled jobs: $n over ${span}s (at most $max allowed)"
[ "$n" -le "$max" ] || ct_fail "$n scheduled syncs in ${span}s: a schedule fired more than once per interval"
[ "$(ct_sql "select count(*) from catalog_jobs where trigger='schedule' and attempts <> 1 and state='succeeded'")" = 0 ] \
    || ct_fail "a scheduled job ran more than once"
owners=$(ct_sql "select count(distinct last_owner) from schedules where name='catalog.sync_schedule'")
[ -n "$owners" ] || ct_fail "schedule row missing"
ct_ok "$n scheduled syncs, one per interval across 2 replicas"
