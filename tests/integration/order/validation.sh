#!/bin/bash
# Every validation rule with a bad order, answered with order.rejected naming
# the field (all failures of one order at once), nothing sent to SCM; an
# order breaking the schema itself is answered with order.rejected too and
# also dead-lettered.
OT_NAME=ordervalid
. "$(dirname "$0")/lib.sh"
ot_setup
ot_sim
ot_ready
ot_submitter sub1
curl -fsS -X DELETE "$OT_SIM_ADMIN/requests" >/dev/null

# case: id | extra-json-overrides (jq expression on the base order) | expected code | expected field
cases=(
 "v-org~.organization=9999~unknown_organization~data.organization"
 "v-orgname~.organization=\"No Such Org\"~unknown_organization~data.organization"
 "v-nossl~.organization=1003~organization_no_ssl~data.organization"
 "v-prof~.profile=999~unknown_profile~data.profile"
 "v-profavail~.profile=505~profile_not_available~data.profile"
 "v-term~.term_days=90~term_not_allowed~data.term_days"
 "v-keyalg~.profile=502 | .key_algorithm=\"EC\" | .key_size=256~key_not_allowed~data.key_size"
 "v-keysize~.profile=502 | .key_size=3072 | .key_algorithm=\"RSA\"~key_not_allowed~data.key_size"
 "v-unknown~.common_name=\"www.nowhere.example\" | .sans=[]~domain_unknown~data.common_name"
 "v-unval~.common_name=\"a.unvalidated.test\" | .sans=[]~domain_not_validated~data.common_name"
 "v-expired~.common_name=\"a.expired.test\" | .sans=[]~domain_not_validated~data.common_name"
 "v-stale~.common_name=\"a.stale.test\" | .sans=[]~domain_validation_expired~data.common_name"
 "v-other~.common_name=\"a.other.test\" | .sans=[]~domain_not_delegated~data.common_name"
 "v-susp~.common_name=\"a.suspended.test\" | .sans=[]~domain_inactive~data.common_name"
 "v-smime~.common_name=\"a.smimeonly.test\" | .sans=[]~domain_not_delegated~data.common_name"
 "v-wild~.common_name=\"*.nowild.test\" | .sans=[]~wildcard_not_allowed~data.common_name"
 "v-san~.sans=[\"ok.scmflow.test\",\"bad.other.test\"]~domain_not_delegated~data.sans[1]"
 "v-single~.common_name=\"localhost\" | .sans=[]~invalid_name~data.common_name"
 "v-email~.external_requesters=[\"x@b..c\"]~invalid_email~data.external_requesters[0]"
 "v-emails~.external_requesters=[range(0;20)|\"requester-number-\\(.)-with-a-long-name@scmflow.test\"]~requesters_too_long~data.external_requesters"
 "v-custom~.custom_fields=[]~custom_field_missing~data.custom_fields"
 "v-custom2~.custom_fields+=[{\"name\":\"Nope\",\"value\":\"x\"}]~custom_field_unknown~data.custom_fields[1].name"
 "v-account~.account=\"nosuch\"~unknown_account~data.account"
)
ids=()
for c in "${cases[@]}"; do
    IFS='~' read -r id expr code field <<<"$c"
    data=$(ot_enroll_json "$id" "$id.scmflow.test" | jq -c "$expr")
    ot_publish scmflow.order.enroll "$id" "$data" >/dev/null
    ids+=("$id~$code~$field")
done
# several failures of one order at once
data=$(ot_enroll_json v-multi "*.nowild.test" | jq -c '.sans=["x.expired.test"] | .term_days=90 | .custom_fields=[]')
ot_publish scmflow.order.enroll v-multi "$data" >/dev/null

tenv_wait_for 60 bash -c "[ \$(psql '$OT_DB_URL' -XAtq -c \"select count(*) from orders where state='rejected'\") -ge ${#cases[@]} ]" ||
    ot_fail "not all rejected: $(ot_sql "select id, state from orders")"
# the account case has no row (unknown account): wait on the event instead
tenv_wait_for 30 bash -c "kcat -C -b '$SCMFLOW_KAFKA_BROKERS' -t '${SCMFLOW_TOPIC_PREFIX}events' -o beginning -e -q 2>/dev/null | grep -q '\"v-account\"'" ||
    ot_fail "no answer for v-account"
tenv_wait_for 30 bash -c "kcat -C -b '$SCMFLOW_KAFKA_BROKERS' -t '${SCMFLOW_TOPIC_PREFIX}events' -o beginning -e -q 2>/dev/null | grep -q '\"v-multi\"'" ||
    ot_fail "no answer for v-multi"
ot_events "$OT_DIR/events.jsonl"
for x in "${ids[@]}"; do
    IFS='~' read -r id code field <<<"$x"
    ev=$(jq -c "select(.type==\"order.rejected\" and .data.order_id==\"$id\")" "$OT_DIR/events.jsonl" | head -1)
    [ -n "$ev" ] || ot_fail "$id: no order.rejected"
    jq -e --arg c "$code" --arg f "$field" '[.data.errors[] | select(.code==$c and .field==$f)] | length > 0' <<<"$ev" >/dev/null ||
        ot_fail "$id: expected $code at $field, got $(jq -c .data.errors <<<"$ev")"
done
ot_ok "${#cases[@]} rules each rejected naming the field"
ev=$(jq -c 'select(.type=="order.rejected" and .data.order_id=="v-multi")' "$OT_DIR/events.jsonl" | head -1)
for code in wildcard_not_allowed domain_not_validated term_not_allowed custom_field_missing; do
    jq -e --arg c "$code" '[.data.errors[] | select(.code==$c)] | length > 0' <<<"$ev" >/dev/null ||
        ot_fail "v-multi misses $code: $(jq -c .data.errors <<<"$ev")"
done
ot_ok "all failures of one order at once: $(jq '.data.errors | length' <<<"$ev") errors"
[ "$(ot_sim_get "requests?summary=1" | jq '[.by_path | to_entries[] | select(.key | startswith("POST /api/ssl/v1/enroll"))] | length')" = 0 ] ||
    ot_fail "a rejected order reached SCM"
ot_ok "nothing reached SCM"

# schema violations (comments > 1024, keystore password too short, bad
# order id syntax): answered with order.rejected naming the field AND
# dead-lettered (operators see them); the password never appears anywhere.
long=$(head -c 1100 /dev/zero | tr '\0' 'x')
pw='Qz!7%'
id_long=$(ot_publish scmflow.order.enroll v-long "$(ot_enroll_json v-long v-long.scmflow.test "\"comments\":\"$long\"")")
id_pw=$(ot_publish scmflow.order.enroll v-pw "$(ot_enroll_json v-pw v-pw.scmflow.test | jq -c --arg pw "$pw" '.keystore_type="PKCS12" | .keystore_password=$pw')")
id_badid=$(ot_publish scmflow.order.enroll v-badid "$(ot_enroll_json 'bad id!' v-badid.scmflow.test)")
id_label=$(ot_publish scmflow.order.enroll v-label "$(ot_enroll_json v-label "$(head -c 64 /dev/zero | tr '\0' 'a').scmflow.test")")
tenv_wait_for 30 bash -c "[ \$(kcat -C -b '$SCMFLOW_KAFKA_BROKERS' -t '${SCMFLOW_TOPIC_PREFIX}deadletter' -o beginning -e -q 2>/dev/null | wc -l) -ge 4 ]" ||
    ot_fail "schema violations not dead-lettered"
kcat -C -b "$SCMFLOW_KAFKA_BROKERS" -t "${SCMFLOW_TOPIC_PREFIX}deadletter" -o beginning -e -q -f '%h\n' 2>/dev/null > "$OT_DIR/dlq.txt"
grep -qF "$pw" "$OT_DIR/dlq.txt" && ot_fail "keystore password in dead-letter headers"
ot_ok "schema violations dead-lettered"
for x in "$id_long~v-long~data.comments" "$id_pw~v-pw~data.keystore_password" "$id_badid~$id_badid~data.order_id" "$id_label~v-label~data.common_name"; do
    IFS='~' read -r cid oid field <<<"$x"
    tenv_wait_for 30 bash -c "kcat -C -b '$SCMFLOW_KAFKA_BROKERS' -t '${SCMFLOW_TOPIC_PREFIX}events' -o beginning -e -q 2>/dev/null | grep -q '\"correlationid\":\"$cid\"'" ||
        ot_fail "$oid: no answer to the schema-invalid command $cid"
    ot_events "$OT_DIR/events.jsonl"
    ev=$(jq -c --arg c "$cid" 'select(.correlationid==$c)' "$OT_DIR/events.jsonl" | head -1)
    jq -e --arg o "$oid" --arg f "$field" '.type=="order.rejected" and .data.order_id==$o and .data.action=="enroll"
        and ([.data.errors[] | select(.code=="invalid_field" and (.field | startswith($f)))] | length > 0)' <<<"$ev" >/dev/null ||
        ot_fail "$oid: expected order.rejected at $field, got $ev"
done
grep -qF "$pw" "$OT_DIR/events.jsonl" && ot_fail "keystore password in an event"
grep -qF "$pw" "$OT_DIR"/sub1.log && ot_fail "keystore password in the log"
ot_ok "schema violations answered with order.rejected naming the field"
