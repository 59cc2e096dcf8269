#!/bin/bash
# SCM errors midway through a sync, and a malformed SCM response, leave the
# previous catalog intact (nothing half-written), emit catalog.sync_failed
# with the reason (naming the field for a malformed response), and the sync
# is retried with backoff until it succeeds.
CT_NAME=catfault
. "$(dirname "$0")/lib.sh"
ct_setup
ct_sim
ct_account
ct_worker w1 SCMFLOW_CATALOG_RETRY_BASE=1s SCMFLOW_CATALOG_RETRY_MAX=2s

out=$(timeout 200 "$SCMCTL" sync --timeout 180s --json) || ct_fail "first sync: $out"
snap() {
    ct_sql "select md5(string_agg(t, '|' order by t)) from (
              select 'o' || id || name || status || last_synced_at as t from catalog_organizations
              union all select 'd' || id || name || coalesce(validation_status, '') || status || last_synced_at from catalog_domains
              union all select 'p' || id || name || status || last_synced_at from catalog_profiles) x"
}
before=$(snap)

# 1. SCM fails on the domain details (after organizations were fetched):
# an org rename in SCM must NOT show up (the sync is all or nothing).
ct_sim_post catalog '{"organizations": [{"id": 1002, "name": "Renamed During Outage"}]}'
ct_sim_post faults '{"rules": [{"path_prefix": "/api/domain/v1/", "kind": "500", "error_rate": 1.0}]}'
out=$(timeout 60 "$SCMCTL" sync --timeout 8s --json 2>"$CT_DIR/sync2.err")
rc=$?
[ $rc -ne 0 ] || ct_fail "sync during the outage must not report success: $out"
grep -q "sync attempt failed" "$CT_DIR/sync2.err" || ct_fail "scmctl did not show the failed attempt: $(cat "$CT_DIR/sync2.err")"
[ "$(snap)" = "$before" ] || ct_fail "catalog changed by a failed sync"
[ "$(ct_sql "select name from catalog_organizations where id=1002")" = "Other Org" ] || ct_fail "half-written sync"
[ "$(ct_sql "select count(*) from catalog_syncs where status='failed'")" -ge 1 ] || ct_fail "failed sync not recorded"
[ "$(ct_sql "select count(*) from catalog_jobs where state in ('pending', 'running') and attempts >= 1 and last_error is not null")" -ge 1 ] \
    || ct_fail "failed sync not queued for retry"
timeout 20 kcat -b "$SCMFLOW_KAFKA_BROKERS" -C -t "${SCMFLOW_TOPIC_PREFIX}events" -o beginning -e -q 2>/dev/null \
    | jq -c 'select(.type=="catalog.sync_failed")' > "$CT_DIR/failed.json"
[ -s "$CT_DIR/failed.json" ] || ct_fail "no catalog.sync_failed event"
jq -e 'select(.data.error.code=="scm_unavailable" and .data.will_retry==true)' "$CT_DIR/failed.json" >/dev/null \
    || ct_fail "sync_failed event lacks the reason: $(head -1 "$CT_DIR/failed.json")"
ct_ok "SCM outage midway leaves the previous catalog intact"

# 2. Outage over: the pending retry succeeds on its own (backoff 1-2 s).
ct_sim_post faults '{"rules": []}'
tenv_wait_for 30 bash -c "[ \"\$(psql '$CT_DB_URL' -XAtqc \"select name from catalog_organizations where id=1002\")\" = 'Renamed During Outage' ]" \
    || ct_fail "sync was not retried after the outage"
ct_ok "retried with backoff after the outage"

# 3. A malformed response (a name that is a number): same, field named.
before=$(snap)
ct_sim_post catalog '{"domains": [{"id": 2002, "name": 12345}], "organizations": [{"id": 1003, "name": "Renamed Before Bad Data"}]}'
out=$(timeout 60 "$SCMCTL" sync --timeout 6s --json 2>"$CT_DIR/sync3.err")
[ $? -ne 0 ] || ct_fail "sync with malformed data must not succeed"
[ "$(snap)" = "$before" ] || ct_fail "catalog changed by a malformed response"
[ "$(ct_sql "select name from catalog_organizations where id=1003")" = "No SSL Org" ] || ct_fail "half-written (malformed)"
timeout 20 kcat -b "$SCMFLOW_KAFKA_BROKERS" -C -t "${SCMFLOW_TOPIC_PREFIX}events" -o beginning -e -q 2>/dev/null \
    | jq -c 'select(.type=="catalog.sync_failed" and .data.error.code=="scm_malformed_response")' > "$CT_DIR/bad.json"
jq -e 'select(.data.error.field | test("^domains\\[[0-9]+\\]\\.name$"))' "$CT_DIR/bad.json" >/dev/null \
    || ct_fail "malformed response: field not named: $(cat "$CT_DIR/bad.json")"
grep -q 'field=domains\[[0-9]*\]\.name' "$CT_DIR/w1.log" || ct_fail "offending field not in the log"
ct_ok "malformed SCM response rejected, field named in event and log"
