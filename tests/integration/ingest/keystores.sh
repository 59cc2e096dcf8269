#!/bin/bash
# End to end through the real workers: scmctl order create -> order-submitter
# -> status-poller (issued after 2 polls) -> repo-ingest. Every keystore type
# (PEM, PKCS#12, JKS) is stored sealed and opened by openssl and by keytool
# with the right password, refused with a wrong one; scmctl cert export
# rebuilds with another password; a collected leaf whose key is not the
# order's is rejected (key_mismatch). No secret in logs or events.
PT_NAME=iks
. "$(dirname "$(dirname "$0")")/poller/lib.sh"
[ -n "${ORDER_SUBMITTER:-}" ] || pt_fail "ORDER_SUBMITTER not set"
pt_setup
export SCMFLOW_SUBMIT_POLL=20ms SCMFLOW_SUBMIT_FIRST_CHECK=200ms SCMFLOW_CATALOG_JOB_POLL=200ms
pt_sim --issue-after-polls 2
pt_account
SCMFLOW_CONSUMER_GROUP="${SCMFLOW_TOPIC_PREFIX}cs" "$CATALOG_SYNC" > "$PT_DIR/catalog.log" 2>&1 &
cpid=$!
PT_PIDS+=($cpid)
"$SCMCTL" sync --quiet > "$PT_DIR/sync.out" 2>&1 || { cat "$PT_DIR/sync.out" >&2; pt_fail "catalog sync"; }
pt_start submitter "$ORDER_SUBMITTER"
pt_start poller "$STATUS_POLLER"
pt_start ingest "$REPO_INGEST"
KSPW='Ks-Secret-Pw-4711'
printf '%s\n' "$KSPW" > "$PT_DIR/kspw"
printf '%s\n' 'Wrong-Pw-0000' > "$PT_DIR/wrongpw"
printf '%s\n' 'Other-Pw-9999' > "$PT_DIR/otherpw"

n=0
for kt in "RSA 2048 PKCS12" "EC 256 JKS" "EC 384 PEM" "RSA 3072 JKS" "EC 256 PKCS12"; do
    set -- $kt
    n=$((n + 1))
    pwopt=()
    [ "$3" != PEM ] && pwopt=(--keystore-password-file "$PT_DIR/kspw")
    "$SCMCTL" order create --order-id "ks-$n" --cn "ks$n.scmflow.test" --san "ks$n.scmflow.test" \
        --org 1001 --profile 501 --term 365 --key "$1" --key-size "$2" --keystore "$3" "${pwopt[@]}" \
        --custom "Cost Center=CC-1" --quiet > "$PT_DIR/create$n.out" 2>&1 || pt_fail "create $kt: $(cat "$PT_DIR/create$n.out")"
done
for i in $(seq 1 $n); do
    pt_wait_sql 90 "select state from orders where id='ks-$i'" stored
done
pt_ok "$n orders created by scmctl reached the repository"

n=0
for kt in "RSA 2048 PKCS12" "EC 256 JKS" "EC 384 PEM" "RSA 3072 JKS" "EC 256 PKCS12"; do
    set -- $kt
    n=$((n + 1))
    id=$(pt_sql "select id from certificates where order_id='ks-$n'")
    [ "$(pt_sql "select keystore_type || ' ' || (keystore_sealed like 'v1.%')::text from certificates where id=$id")" = "$3 true" ] ||
        pt_fail "$kt: keystore not stored sealed"
    case $3 in
    PKCS12)
        "$SCMCTL" cert export "$id" --format p12 --out "$PT_DIR/$n.p12" --password-file "$PT_DIR/kspw" --quiet || pt_fail "export p12"
        openssl pkcs12 -in "$PT_DIR/$n.p12" -passin "file:$PT_DIR/kspw" -nodes -out "$PT_DIR/$n.p12.pem" 2>/dev/null || pt_fail "openssl pkcs12 refused the right password"
        grep -q "PRIVATE KEY" "$PT_DIR/$n.p12.pem" && [ "$(grep -c 'BEGIN CERT' "$PT_DIR/$n.p12.pem")" = 3 ] || pt_fail "p12 content"
        openssl pkcs12 -in "$PT_DIR/$n.p12" -passin "file:$PT_DIR/wrongpw" -nodes -out /dev/null 2>/dev/null && pt_fail "openssl opened p12 with a wrong password"
        keytool -list -keystore "$PT_DIR/$n.p12" -storetype PKCS12 -storepass "$KSPW" > "$PT_DIR/kt$n.out" 2>&1 || pt_fail "keytool p12: $(cat "$PT_DIR/kt$n.out")"
        grep -q PrivateKeyEntry "$PT_DIR/kt$n.out" || pt_fail "keytool p12 entry"
        keytool -list -keystore "$PT_DIR/$n.p12" -storetype PKCS12 -storepass Wrong-Pw-0000 >/dev/null 2>&1 && pt_fail "keytool opened p12 with a wrong password"
        # another password: rebuilt from the sealed key
        "$SCMCTL" cert export "$id" --format p12 --out "$PT_DIR/$n-other.p12" --password-file "$PT_DIR/otherpw" --quiet || pt_fail "export p12 other pw"
        openssl pkcs12 -in "$PT_DIR/$n-other.p12" -passin pass:Other-Pw-9999 -nodes -out /dev/null 2>/dev/null || pt_fail "rebuilt p12"
        ;;
    JKS)
        "$SCMCTL" cert export "$id" --format jks --out "$PT_DIR/$n.jks" --password-file "$PT_DIR/kspw" --quiet || pt_fail "export jks"
        keytool -list -v -keystore "$PT_DIR/$n.jks" -storetype JKS -storepass "$KSPW" > "$PT_DIR/kt$n.out" 2>&1 || pt_fail "keytool jks: $(cat "$PT_DIR/kt$n.out")"
        grep -q "Certificate chain length: 3" "$PT_DIR/kt$n.out" || pt_fail "jks chain: $(grep -i chain "$PT_DIR/kt$n.out")"
        keytool -list -keystore "$PT_DIR/$n.jks" -storetype JKS -storepass Wrong-Pw-0000 >/dev/null 2>&1 && pt_fail "keytool opened jks with a wrong password"
        # and a PKCS#12 of the same certificate (other type: built from the key)
        "$SCMCTL" cert export "$id" --format p12 --out "$PT_DIR/$n.p12" --password-file "$PT_DIR/kspw" --quiet || pt_fail "p12 of a jks order"
        openssl pkcs12 -in "$PT_DIR/$n.p12" -passin "file:$PT_DIR/kspw" -nodes -out /dev/null 2>/dev/null || pt_fail "p12 of jks order"
        ;;
    PEM)
        "$SCMCTL" cert export "$id" --format pem --out "$PT_DIR/$n.pem" --quiet || pt_fail "export pem"
        openssl pkey -in "$PT_DIR/$n.pem" -noout 2>/dev/null || pt_fail "pem key"
        [ "$(grep -c 'BEGIN CERT' "$PT_DIR/$n.pem")" = 3 ] || pt_fail "pem chain"
        cmp -s <(openssl pkey -in "$PT_DIR/$n.pem" -pubout) <(openssl x509 -in "$PT_DIR/$n.pem" -pubkey -noout) || pt_fail "pem key != leaf"
        [ "$(stat -c %a "$PT_DIR/$n.pem")" = 600 ] || pt_fail "export mode"
        ;;
    esac
    pt_ok "$kt: sealed keystore opened by openssl/keytool with the right password, refused with a wrong one"
done

# key mismatch: a leaf with the order's names but another key
ssl=$(pt_enroll ks1.scmflow.test) || pt_fail enroll
pt_sim_post "orders/$ssl/status" '{"status":"Issued"}'
curl -fsS -H "login: $PT_LOGIN" -H "password: $PT_PASSWORD" -H "customerUri: $PT_CUSTOMER" \
    "$PT_SIM/ssl/v1/collect/$ssl/pemia" > "$PT_DIR/foreign.pem" || pt_fail collect
jq -cn --rawfile pem "$PT_DIR/foreign.pem" '{order_id:"ks-1", ssl_id:1, format:"pemia", chain_pem:$pem, collected_at:"2026-01-01T00:00:00Z"}' > "$PT_DIR/km.json"
pt_publish certificates.collected scmflow.certificate.collected ks-1 "$(cat "$PT_DIR/km.json")" >/dev/null
pt_wait_event 30 '.type=="certificate.rejected" and .data.order_id=="ks-1" and .data.error.code=="key_mismatch"'
[ "$(pt_sql "select needs_attention from orders where id='ks-1'")" = t ] || pt_fail "ks-1 not flagged"
[ "$(pt_sql "select count(*) from certificates where order_id='ks-1'")" = 1 ] || pt_fail "foreign certificate stored"
pt_ok "leaf with another key rejected (key_mismatch)"

pt_events "$PT_DIR/events.jsonl"
pt_events "$PT_DIR/dlq.jsonl" deadletter
for f in "$PT_DIR"/*.log "$PT_DIR"/*.out "$PT_DIR/events.jsonl" "$PT_DIR/dlq.jsonl"; do
    grep -qF "$KSPW" "$f" && pt_fail "keystore password in $f"
    grep -q "PRIVATE KEY" "$f" && pt_fail "private key in $f"
    grep -qF "$PT_PASSWORD" "$f" && pt_fail "SCM password in $f"
done
pt_ok "no secret in logs, events or the dead-letter topic"
