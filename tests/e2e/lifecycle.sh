#!/usr/bin/env bash
# The user guide's lifecycle end to end, with two replicas of each of the
# four workers as separate processes, PostgreSQL (pg fixture), the dev broker
# (kafka fixture) and a private scm-sim (demo seed):
#   account set -> sync -> import existing orders (issued ones collected
#   into the repository) -> order with scmctl (PKCS#12) and with a raw
#   CloudEvent over kcat (JKS) -> check status -> issued -> stored ->
#   export + open the keystores -> renew -> reissue -> revoke -> delete ->
#   import again (the deleted order stays deleted) -> consistency, and no
#   secret in any log line or event.
E2E_NAME=lifecycle
. "$(dirname "$0")/lib.sh"
e2e_setup
e2e_sim
e2e_workers
e2e_ok "2 replicas x 4 workers started"
D=$E2E_DIR
KSPW1='Ks-e2e-Pw-One-4711'
KSPW2='Ks-e2e-Pw-Two-0815'
printf '%s\n' "$KSPW1" > "$D/kspw1"
printf '%s\n' "$KSPW2" > "$D/kspw2"
T=90   # per-step deadline (s)

# 1. account, catalog
e2e_account
[ "$(e2e_sql "select login || ' ' || is_mrao::text || ' ' || (password_sealed like 'v1.%')::text from scm_accounts where name = 'acme'")" = "$E2E_LOGIN true true" ] ||
    e2e_fail "account row: $(e2e_sql "select name, login, is_mrao from scm_accounts")"
e2e_ok "account set (password sealed)"
e2e_ctl "$D/sync.out" sync --quiet
[ "$(e2e_sql "select count(*) from catalog_profiles where status = 'active'")" -ge 5 ] || e2e_fail "profiles after sync"
[ "$(e2e_sql "select count(*) from catalog_domains where status = 'active'")" -ge 6 ] || e2e_fail "domains after sync"
e2e_ctl "$D/orgs.json" catalog organizations --json
jq -e '.. | objects | select(.name? == "ACME Corporation")' "$D/orgs.json" >/dev/null || e2e_fail "catalog organizations: $(cat "$D/orgs.json")"
e2e_ok "catalog synced"

# 2. import the simulator's existing orders; the issued ones reach the repository
e2e_ctl "$D/import.out" import --quiet
seeded=$(jq '.certificates | length' "$E2E_SEED")
# Issued ones, and the open ones (Requested/Approved/Applied) that the
# simulator issues when the poller checks them.
seeded_issued=$(jq '[.certificates[] | select(.status | IN("Issued", "Requested", "Approved", "Applied"))] | length' "$E2E_SEED")
[ "$(e2e_sql "select count(*) from orders where origin = 'imported'")" = "$seeded" ] ||
    e2e_fail "imported $(e2e_sql "select count(*) from orders where origin = 'imported'") of $seeded"
e2e_wait_sql $T "select count(*) from orders where origin = 'imported' and state in ('submitted', 'issued')" 0 ||
    e2e_fail "imported orders not collected: $(e2e_sql "select state, scm_status, count(*) from orders where origin = 'imported' group by 1, 2")"
[ "$(e2e_sql "select count(*) from orders o join certificates c on c.order_id = o.id where o.origin = 'imported' and o.state = 'stored' and o.scm_status = 'Issued' and c.status = 'active'")" = "$seeded_issued" ] ||
    e2e_fail "not every issued SCM order is in the repository: $(e2e_sql "select state, scm_status, count(*) from orders where origin = 'imported' group by 1, 2")"
e2e_ok "import: $seeded orders, $seeded_issued issued (or issued since) in the repository ($(e2e_sql "select count(*) from certificates") certificates in all)"

# 3a. order with scmctl: EC P-256, PKCS#12
e2e_ctl "$D/create1.out" order create --order-id e2e-web-1 --cn www.acme.example --san www.acme.example \
    --san acme.example --org "ACME Corporation" --profile "ACME OV SSL" --term 365 --key EC --key-size 256 \
    --keystore PKCS12 --keystore-password-file "$D/kspw1" --custom "Cost Center=CC-4711" \
    --comments "e2e lifecycle" --requester pki@acme.example --quiet
grep -q "order.submitted" "$D/create1.out" || e2e_fail "create answer: $(cat "$D/create1.out")"
ssl1=$(e2e_sql "select ssl_id from orders where id = 'e2e-web-1'")
[ -n "$ssl1" ] || e2e_fail "no ssl_id for e2e-web-1"
e2e_ok "order e2e-web-1 submitted (sslId $ssl1)"

# 3b. order with a raw CloudEvent: RSA 2048, JKS
cmd2=$(e2e_publish order.commands scmflow.order.enroll e2e-api-2 \
    "$(e2e_enroll_json e2e-api-2 shop.acme.example RSA 2048 JKS "$KSPW2")")

# 4. check status on demand, then issued -> stored
e2e_ctl "$D/check1.out" order check e2e-web-1 --quiet
e2e_wait_sql $T "select state from orders where id = 'e2e-web-1'" stored ||
    e2e_fail "e2e-web-1 not stored: $(e2e_sql "select state, scm_status, last_error from orders where id = 'e2e-web-1'")"
e2e_wait_sql $T "select state from orders where id = 'e2e-api-2'" stored ||
    e2e_fail "e2e-api-2 not stored: $(e2e_sql "select state, scm_status, last_error from orders where id = 'e2e-api-2'")"
cert1=$(e2e_sql "select id from certificates where order_id = 'e2e-web-1' and status = 'active'")
cert2=$(e2e_sql "select id from certificates where order_id = 'e2e-api-2' and status = 'active'")
e2e_events "$D/events.jsonl"
e2e_wait_event $T "$D/events.jsonl" '.correlationid == $c and .type == "order.submitted"' --arg c "$cmd2" ||
    e2e_fail "no order.submitted answering the kcat command $cmd2"
for t in order.accepted order.submitted order.status_changed order.issued certificate.stored; do
    e2e_wait_event $T "$D/events.jsonl" '.type == $t and .data.order_id == "e2e-web-1"' --arg t "$t" ||
        e2e_fail "no $t event for e2e-web-1"
done
e2e_ok "both orders issued and in the repository (certificates $cert1, $cert2; events complete)"

# 4b. the guide's raw commands for a status check and a catalog sync answer too
chk=$(e2e_publish status.commands scmflow.order.check_status e2e-api-2 '{"order_id":"e2e-api-2"}')
syn=$(e2e_publish catalog.commands scmflow.catalog.sync acme '{"account":"acme","scope":["domains","profiles"]}')
ok_raw() {
    e2e_events "$D/events.jsonl"
    e2e_has_event "$D/events.jsonl" '.correlationid == $c and .type == "order.status_changed"' --arg c "$chk" &&
        e2e_has_event "$D/events.jsonl" '.correlationid == $c and .type == "catalog.synced"' --arg c "$syn"
}
tenv_wait_for 60 ok_raw || e2e_fail "no answer to the raw check_status ($chk) / catalog.sync ($syn)"
e2e_ok "raw kcat check_status and catalog.sync answered"

# 5. the repository: list/show, export and open the keystores
e2e_ctl "$D/list.json" cert list --json
jq -e --argjson id "$cert1" '.. | objects | select(.id? == $id)' "$D/list.json" >/dev/null || e2e_fail "cert list lacks $cert1"
e2e_ctl "$D/show1.out" cert show "$cert1"
grep -q "www.acme.example" "$D/show1.out" || e2e_fail "cert show: $(head -20 "$D/show1.out")"
e2e_ctl "$D/export1.out" cert export "$cert1" --format p12 --out "$D/web1.p12" --password-file "$D/kspw1"
openssl pkcs12 -in "$D/web1.p12" -passin "file:$D/kspw1" -nokeys 2>/dev/null | openssl x509 -noout -subject |
    grep -q "www.acme.example" || e2e_fail "exported PKCS#12 does not open with its password"
! openssl pkcs12 -in "$D/web1.p12" -passin pass:wrong -nokeys >/dev/null 2>&1 || e2e_fail "PKCS#12 opens with a wrong password"
keytool -list -storetype PKCS12 -keystore "$D/web1.p12" -storepass "$KSPW1" >/dev/null 2>&1 || e2e_fail "keytool cannot read the PKCS#12"
# the key in the keystore is the one SCM enrolled
pub=$(openssl pkcs12 -in "$D/web1.p12" -passin "file:$D/kspw1" -nocerts -nodes 2>/dev/null |
    openssl pkey -pubout -outform DER | sha256sum | cut -d' ' -f1)
[ "$(e2e_sim_get "enrollments?pubkey_sha256=$pub" | jq '.enrollments[0].sslId')" = "$ssl1" ] ||
    e2e_fail "the keystore's key is not the key enrolled as sslId $ssl1"
e2e_ctl "$D/export2.out" cert export "$cert2" --format jks --out "$D/api2.jks" --password-file "$D/kspw2"
keytool -list -storetype JKS -keystore "$D/api2.jks" -storepass "$KSPW2" > "$D/keytool2.out" 2>&1 ||
    e2e_fail "keytool cannot open the JKS: $(cat "$D/keytool2.out")"
grep -q PrivateKeyEntry "$D/keytool2.out" || e2e_fail "JKS without the private key: $(cat "$D/keytool2.out")"
e2e_ok "keystores exported: PKCS#12 (openssl + keytool, key = enrolled key), JKS (keytool)"

# 6. renew e2e-web-1: a new SCM order, linked, stored, its certificate linked
e2e_ctl "$D/renew.out" order renew e2e-web-1 --quiet
grep -q "order.renewed" "$D/renew.out" || e2e_fail "renew answer: $(cat "$D/renew.out")"
e2e_wait_sql $T "select count(*) from orders where renewed_from = 'e2e-web-1' and state = 'stored'" 1 ||
    e2e_fail "renewal not stored: $(e2e_sql "select id, state, scm_status from orders where renewed_from = 'e2e-web-1'")"
ren=$(e2e_sql "select id from orders where renewed_from = 'e2e-web-1'")
[ "$(e2e_sql "select renews_certificate_id from certificates where order_id = '$ren' and status = 'active'")" = "$cert1" ] ||
    e2e_fail "the renewal's certificate is not linked to $cert1"
e2e_ok "renewed: order $ren stored, certificate linked to $cert1"

# 7. reissue e2e-api-2: same sslId, new key, new certificate supersedes the old
e2e_ctl "$D/reissue.out" order reissue e2e-api-2 --reason "e2e key rotation" --quiet
grep -q "order.reissued" "$D/reissue.out" || e2e_fail "reissue answer: $(cat "$D/reissue.out")"
e2e_wait_sql $T "select count(*) from certificates where order_id = 'e2e-api-2' and status = 'active' and id <> $cert2" 1 ||
    e2e_fail "no new certificate after reissue: $(e2e_sql "select id, status from certificates where order_id = 'e2e-api-2'")"
e2e_wait_sql 10 "select status from certificates where id = $cert2" superseded || e2e_fail "old certificate not superseded"
[ "$(e2e_sim_get "enrollments" | jq --argjson s "$(e2e_sql "select ssl_id from orders where id = 'e2e-api-2'")" \
    '[.enrollments[] | select(.sslId == $s and .kind == "replace")] | length')" = 1 ] || e2e_fail "SCM saw no single replace"
e2e_ok "reissued: new certificate, old one superseded"

# 8. revoke e2e-api-2
e2e_ctl "$D/revoke.out" order revoke e2e-api-2 --reason-code 4 --reason "e2e superseded" --quiet
grep -q "order.revoked" "$D/revoke.out" || e2e_fail "revoke answer: $(cat "$D/revoke.out")"
e2e_wait_sql 20 "select state from orders where id = 'e2e-api-2'" revoked || e2e_fail "order not revoked"
e2e_wait_sql 20 "select count(*) from certificates where order_id = 'e2e-api-2' and status = 'active'" 0 ||
    e2e_fail "certificate still active after revoke"
ssl2=$(e2e_sql "select ssl_id from orders where id = 'e2e-api-2'")
[ "$(curl -fsS -H "login: $E2E_LOGIN" -H "password: $E2E_PASSWORD" -H "customerUri: $E2E_CUSTOMER" \
    "$E2E_SIM/ssl/v1/$ssl2" | jq -r .status)" = Revoked ] || e2e_fail "SCM does not show sslId $ssl2 revoked"
e2e_ok "revoked (SCM and repository)"

# 9. delete e2e-web-1 (local only), then import again: it does not come back
e2e_ctl "$D/delete.out" order delete e2e-web-1 --quiet
grep -q "order.deleted" "$D/delete.out" || e2e_fail "delete answer: $(cat "$D/delete.out")"
[ "$(e2e_sql "select count(*) from orders where id = 'e2e-web-1'")" = 0 ] || e2e_fail "order still there"
[ "$(e2e_sql "select count(*) from certificates where order_id = 'e2e-web-1'")" = 0 ] || e2e_fail "certificate still there"
[ "$(e2e_sql "select count(*) from deleted_orders where order_id = 'e2e-web-1'")" = 1 ] || e2e_fail "not in deleted_orders"
e2e_ctl "$D/import2.out" import --quiet
[ "$(e2e_sql "select count(*) from orders where ssl_id = $ssl1")" = 0 ] || e2e_fail "import brought the deleted order back"
e2e_ok "deleted locally; a new import does not bring it back"

# 10. everything consistent, every replica still alive, no secret anywhere
e2e_workers_alive
e2e_consistency
e2e_events "$D/events.jsonl"
for s in "$KSPW1" "$KSPW2" "$E2E_PASSWORD" "PRIVATE KEY"; do
    if grep -l -F -- "$s" "$D"/*.log "$D/events.jsonl" "$D"/*.out 2>/dev/null; then
        e2e_fail "a secret ($([ "$s" = "PRIVATE KEY" ] && echo "$s" || echo "a password")) appears in the files above"
    fi
done
e2e_ok "consistent: $E2E_N_ENROLLMENTS SCM enrollments = scmflow orders; no secret in logs or events"
echo "PASS"
