#!/bin/bash
# Renew, reissue, revoke, delete with scmctl, and their failure cases
# (revoking a certificate that is not issued, renewing under a profile that
# forbids it, unknown orders); duplicate commands (same id replayed, new id
# for an existing order) make no second SCM order.
# Issuance is the status-poller's job: here it is forced in scm-sim and the
# order's state set to 'issued' directly.
OT_NAME=orderlife
. "$(dirname "$0")/lib.sh"
ot_setup
ot_sim
ot_ready
ot_submitter sub1

create() { # ID CN PROFILE
    "$SCMCTL" order create --order-id "$1" --cn "$2" --org 1001 --profile "$3" --term 365 --key EC \
        --key-size 256 --custom "Cost Center=CC-1" --quiet --json > "$OT_DIR/$1.create.out" 2>&1 ||
        ot_fail "create $1: $(cat "$OT_DIR/$1.create.out")"
}
issue() { # ORDER_ID: force Issued in SCM and in the order row
    local ssl; ssl=$(ot_sql "select ssl_id from orders where id='$1'")
    ot_sim_post "orders/$ssl/status" '{"status":"Issued"}' || ot_fail "sim force status"
    ot_sql "update orders set state='issued', scm_status='Issued' where id='$1'" >/dev/null
}
ctl() { # NAME ARGS... -> output in $OT_DIR/NAME.out, exit status returned
    local name=$1; shift
    "$SCMCTL" order "$@" --quiet --json > "$OT_DIR/$name.out" 2> "$OT_DIR/$name.err"
}

create L1 l1.scmflow.test 501
create L2 l2.scmflow.test 501
create L3 l3.scmflow.test 503
issue L1
issue L3
ssl1=$(ot_sql "select ssl_id from orders where id='L1'")

# revoke of a not issued certificate
ctl rv2 revoke L2 --reason-code 4 --reason "superseded" && ot_fail "revoke of a not issued order succeeded"
jq -e '.type=="order.rejected" and .data.error.code=="not_issued"' "$OT_DIR/rv2.out" >/dev/null || ot_fail "rv2: $(cat "$OT_DIR/rv2.out")"
ot_ok "revoke of a not issued certificate rejected"

# renew
ctl rn1 renew L1 || ot_fail "renew L1: $(cat "$OT_DIR/rn1.out")"
jq -e --argjson s "$ssl1" '.type=="order.renewed" and .data.renewed_from=="L1" and .data.previous_ssl_id==$s and .data.ssl_id>$s' "$OT_DIR/rn1.out" >/dev/null ||
    ot_fail "rn1: $(cat "$OT_DIR/rn1.out")"
new=$(jq -r .data.order_id "$OT_DIR/rn1.out")
[ "$(ot_sql "select origin || ' ' || renewed_from || ' ' || state || ' ' || (private_key_sealed is not null)::text from orders where id='$new'")" = "renewal L1 submitted true" ] ||
    ot_fail "renewal row: $(ot_sql "select * from orders where id='$new'")"
ot_ok "renew: new order $new linked to L1"

# renew under a profile that forbids it
ctl rn3 renew L3 && ot_fail "renew under profile 503 succeeded"
jq -e '.type=="order.failed" and .data.error.scm_code==-180' "$OT_DIR/rn3.out" >/dev/null || ot_fail "rn3: $(cat "$OT_DIR/rn3.out")"
ot_ok "renew refused by SCM: $(jq -c .data.error "$OT_DIR/rn3.out")"

# reissue with a new SAN and a new key
csr_before=$(ot_sql "select md5(csr_pem) from orders where id='L1'")
ctl ri1 reissue L1 --reason "key rotation" --san l1.scmflow.test --san l1b.scmflow.test ||
    ot_fail "reissue: $(cat "$OT_DIR/ri1.out")"
jq -e '.type=="order.reissued"' "$OT_DIR/ri1.out" >/dev/null || ot_fail "ri1: $(cat "$OT_DIR/ri1.out")"
[ "$(ot_sql "select state || ' ' || array_to_string(sans, ',') from orders where id='L1'")" = "submitted l1.scmflow.test,l1b.scmflow.test" ] ||
    ot_fail "reissued row: $(ot_sql "select state, sans from orders where id='L1'")"
[ "$(ot_sql "select md5(csr_pem) from orders where id='L1'")" != "$csr_before" ] || ot_fail "reissue kept the CSR"
[ "$(ot_sim_get enrollments | jq '[.enrollments[] | select(.kind=="replace")] | length')" = 1 ] || ot_fail "SCM replace count"
ot_ok "reissue with new SANs and a new key"
# reissue of a not issued order (after the reissue it is Applied again)
ctl ri2 reissue L1 --reason again && ot_fail "reissue of a not issued order succeeded"
jq -e '.data.error.code=="not_issued"' "$OT_DIR/ri2.out" >/dev/null || ot_fail "ri2: $(cat "$OT_DIR/ri2.out")"

# revoke (with a certificate in the repository)
issue L1
ot_sql "insert into certificates (order_id, ssl_id, serial, issuer, subject, not_before, not_after, sha256_fingerprint, sha1_fingerprint, leaf_pem, chain_pem) values ('L1', $ssl1, '01', 'CN=x', 'CN=l1', now(), now() + interval '1 year', 'fp-l1', 'fp1', 'x', 'x')" >/dev/null
ctl rv1 revoke L1 --reason-code 1 --reason "key compromise" || ot_fail "revoke: $(cat "$OT_DIR/rv1.out")"
jq -e --argjson s "$ssl1" '.type=="order.revoked" and .data.ssl_id==$s and .data.reason_code==1' "$OT_DIR/rv1.out" >/dev/null || ot_fail "rv1: $(cat "$OT_DIR/rv1.out")"
[ "$(ot_sql "select o.state || ' ' || c.status from orders o join certificates c on c.order_id=o.id where o.id='L1'")" = "revoked revoked" ] ||
    ot_fail "revoked state"
[ "$(curl -fsS -H "login: $OT_LOGIN" -H "password: $OT_PASSWORD" -H "customerUri: $OT_CUSTOMER" "$OT_SIM/ssl/v1/$ssl1" | jq -r .status)" = Revoked ] ||
    ot_fail "SCM does not show Revoked"
ot_ok "revoke: order and certificate revoked"

# delete: local only
ctl dl1 delete L1 || ot_fail "delete: $(cat "$OT_DIR/dl1.out")"
jq -e '.type=="order.deleted" and .data.order_id=="L1"' "$OT_DIR/dl1.out" >/dev/null || ot_fail "dl1"
[ "$(ot_sql "select count(*) from orders where id='L1'")/$(ot_sql "select count(*) from certificates where order_id='L1'")/$(ot_sql "select count(*) from deleted_orders where order_id='L1'")" = "0/0/1" ] ||
    ot_fail "delete did not remove the order / remember it"
ctl dl1b delete L1 || ot_fail "second delete: $(cat "$OT_DIR/dl1b.out")"
jq -e '.type=="order.deleted"' "$OT_DIR/dl1b.out" >/dev/null || ot_fail "second delete answer"
ctl dlx delete NOPE && ot_fail "delete of unknown order succeeded"
jq -e '.data.error.code=="not_found"' "$OT_DIR/dlx.out" >/dev/null || ot_fail "dlx"
out=$("$SCMCTL" order create --order-id L1 --cn l1.scmflow.test --org 1001 --profile 501 --term 365 --custom "Cost Center=x" --quiet 2>&1) &&
    ot_fail "re-enroll of a deleted order id accepted"
ot_ok "delete: local only, replay answered, unknown rejected, id not reusable"

# duplicates
data=$(ot_enroll_json D1 d1.scmflow.test)
id=$(ot_publish scmflow.order.enroll D1 "$data")
ot_publish scmflow.order.enroll D1 "$data" "$id" >/dev/null
ot_wait_sql 30 "select state from orders where id='D1'" submitted || ot_fail "D1 not submitted"
id2=$(ot_publish scmflow.order.enroll D1 "$data")
tenv_wait_for 30 bash -c "kcat -C -b '$SCMFLOW_KAFKA_BROKERS' -t '${SCMFLOW_TOPIC_PREFIX}events' -o beginning -e -q 2>/dev/null | grep -q '\"correlationid\":\"$id2\"'" ||
    ot_fail "no answer to the second command for D1"
ssl=$(ot_sql "select ssl_id from orders where id='D1'")
# re-read until the answer is in the file: one kcat read under load can
# come back short (its errors are ignored by ot_events)
for _ in $(seq 1 20); do
    ot_events "$OT_DIR/events.jsonl"
    jq -e --arg c "$id2" 'select(.correlationid==$c)' "$OT_DIR/events.jsonl" >/dev/null 2>&1 && break
    sleep 0.5
done
jq -e --arg c "$id2" --argjson s "$ssl" 'select(.correlationid==$c) | .type=="order.submitted" and .data.ssl_id==$s' "$OT_DIR/events.jsonl" >/dev/null ||
    ot_fail "second command not answered with the existing order: $(jq -c --arg c "$id2" 'select(.correlationid==$c)' "$OT_DIR/events.jsonl")"
[ "$(ot_sim_get enrollments | jq '[.enrollments[] | select(.commonName=="d1.scmflow.test")] | length')" = 1 ] || ot_fail "duplicate enrollment"
[ "$(jq -c "select(.correlationid==\"$id\" and .type==\"order.accepted\")" "$OT_DIR/events.jsonl" | wc -l)" = 1 ] || ot_fail "replayed command handled twice"
ot_ok "duplicates: replay dropped, new command answered with the existing order, one SCM order"
