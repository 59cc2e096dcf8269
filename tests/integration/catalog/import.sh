#!/bin/bash
# Import of 10,000 generated SCM certificates in every status, run twice:
# every certificate becomes exactly one order (id scm:<account>:<sslId>),
# with the state the status implies; the second run adds nothing; a
# certificate deleted locally (deleted_orders) is not brought back.
CT_NAME=catimport
. "$(dirname "$0")/lib.sh"
ct_setup
ct_sim --generate-certs 10000
ct_account
ct_worker w1

total=$(curl -fsS "$CT_SIM_ADMIN/state" | jq .certificates)
[ "$total" -ge 10000 ] || ct_fail "sim has $total certificates"
# One certificate was deleted locally before: it must be skipped.
ct_sql "insert into deleted_orders (order_id, account, ssl_id) values ('scm:main:100', 'main', 100)"

out=$(timeout 300 "$SCMCTL" import --timeout 240s --json 2>"$CT_DIR/import1.err") || ct_fail "first import: $out $(cat "$CT_DIR/import1.err")"
[ "$(jq .imported <<<"$out")" = $((total - 1)) ] || ct_fail "first import counts (total $total): $out"
[ "$(jq .skipped <<<"$out")" = 1 ] || ct_fail "skipped count: $out"
[ "$(ct_sql "select count(*) from orders")" = $((total - 1)) ] || ct_fail "orders: $(ct_sql "select count(*) from orders")"
[ "$(ct_sql "select count(*) from orders where ssl_id = 100")" = 0 ] || ct_fail "a deleted order came back"
[ "$(ct_sql "select count(distinct ssl_id) from orders")" = $((total - 1)) ] || ct_fail "duplicate ssl ids"
# Per status, the same numbers as SCM reports (minus the deleted one).
curl -fsS "$CT_SIM_ADMIN/state" | jq -r '.by_status | to_entries[] | "\(.key) \(.value)"' | sort > "$CT_DIR/sim.st"
ct_sql "select scm_status || ' ' || (count(*) + case when scm_status = (select 'Issued' where exists (select 1 from deleted_orders)) then 1 else 0 end) from orders group by scm_status" | sort > "$CT_DIR/db.st"
diff "$CT_DIR/sim.st" "$CT_DIR/db.st" >&2 || ct_fail "statuses differ between SCM and the orders"
[ "$(wc -l < "$CT_DIR/sim.st")" -ge 8 ] || ct_fail "the generated certificates do not cover the statuses"
# States per 002: Issued -> submitted + due for the poller; ended ones final.
[ "$(ct_sql "select count(*) from orders where scm_status='Issued' and (state <> 'submitted' or next_check_at is null or origin <> 'imported')")" = 0 ] \
    || ct_fail "Issued orders not handed to the poller"
[ "$(ct_sql "select count(*) from orders where scm_status='Revoked' and state <> 'revoked'")" = 0 ] || ct_fail "revoked state"
[ "$(ct_sql "select count(*) from orders where scm_status in ('Expired','Replaced') and state <> 'imported'")" = 0 ] || ct_fail "imported state"
[ "$(ct_sql "select count(*) from orders where scm_status in ('Declined','Rejected','Invalid') and state <> 'failed'")" = 0 ] || ct_fail "failed state"
[ "$(ct_sql "select count(*) from orders where id <> 'scm:main:' || ssl_id")" = 0 ] || ct_fail "order ids"
ct_ok "first import: $(jq -c . <<<"$out")"

out=$(timeout 300 "$SCMCTL" import --timeout 240s --json 2>"$CT_DIR/import2.err") || ct_fail "second import: $out"
[ "$(jq .imported <<<"$out")" = 0 ] && [ "$(jq .updated <<<"$out")" = 0 ] || ct_fail "second import changed things: $out"
[ "$(ct_sql "select count(*) from orders")" = $((total - 1)) ] || ct_fail "orders after the second import"
ct_ok "second import: no duplicates"

# A status change in SCM is picked up by a third, filtered import.
ct_sim_post orders/101/status '{"status": "Revoked"}' || true
out=$(timeout 120 "$SCMCTL" import --status Revoked --timeout 60s --json) || ct_fail "filtered import: $out"
[ "$(jq .updated <<<"$out")" -ge 1 ] || ct_fail "filtered import did not update: $out"
[ "$(ct_sql "select scm_status || '/' || state from orders where ssl_id = 101")" = "Revoked/revoked" ] \
    || ct_fail "status change not imported: $(ct_sql "select scm_status || '/' || state from orders where ssl_id = 101")"
ct_ok "status change updated"

# An enroll of ours in flight (SCM called, sslId not recorded yet) for a
# certificate's name: the import leaves that certificate to the submitter
# instead of taking its (account, sslId); once the submitter has recorded
# it, the next import updates our order and adds no second one.
read -r st cn <<<"$(ct_sql "select scm_status || ' ' || common_name from orders where ssl_id = 102")"
[ -n "$cn" ] || ct_fail "no order for sslId 102"
ct_sql "delete from orders where ssl_id = 102"
ct_sql "insert into orders (id, account, origin, state, common_name) values ('mine-1', 'main', 'enroll', 'submitting', '$cn')"
ct_sql "insert into scm_operations (order_id, kind, state, call_started, correlation_ref) values ('mine-1', 'enroll', 'unknown', true, 'ref-mine-1')"
out=$(timeout 120 "$SCMCTL" import --status "$st" --timeout 60s --json) || ct_fail "import during an enroll: $out"
[ "$(ct_sql "select count(*) from orders where ssl_id = 102")" = 0 ] || ct_fail "imported the certificate of an enroll in flight"
[ "$(jq .skipped <<<"$out")" -ge 1 ] || ct_fail "not counted as skipped: $out"
ct_sql "update scm_operations set state = 'done' where order_id = 'mine-1'"
ct_sql "update orders set ssl_id = 102, state = 'submitted' where id = 'mine-1'"
out=$(timeout 120 "$SCMCTL" import --status "$st" --timeout 60s --json) || ct_fail "import after the enroll: $out"
[ "$(ct_sql "select string_agg(id || '/' || origin, ',') from orders where ssl_id = 102")" = "mine-1/enroll" ] ||
    ct_fail "after the enroll: $(ct_sql "select id, origin from orders where ssl_id = 102")"
ct_ok "certificate of an enroll in flight left to the submitter, then our order updated ($st, $cn)"
