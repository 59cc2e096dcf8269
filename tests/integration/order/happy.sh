#!/bin/bash
# Enroll end to end for every key type (RSA 2048/3072/4096, EC P-256/P-384)
# with scmctl order create, PEM/PKCS12/JKS keystore passwords sealed; a
# bring-your-own CSR (good) and bad CSRs (garbage, names mismatch); the
# password and key material never in logs or events.
OT_NAME=orderhappy
. "$(dirname "$0")/lib.sh"
ot_setup
ot_sim
ot_ready
ot_submitter sub1
KSPW='Ks-Secret-Pw-778899'
printf '%s\n' "$KSPW" > "$OT_DIR/kspw"

n=0
for kt in "RSA 2048 PEM" "RSA 3072 PKCS12" "RSA 4096 JKS" "EC 256 PKCS12" "EC 384 PEM"; do
    set -- $kt
    n=$((n + 1))
    pwopt=()
    [ "$3" != PEM ] && pwopt=(--keystore-password-file "$OT_DIR/kspw")
    "$SCMCTL" order create --order-id "happy-$n" --cn "h$n.scmflow.test" --san "h$n.scmflow.test" \
        --san "alt$n.scmflow.test" --org 1001 --profile "OV SSL" --term 365 --key "$1" --key-size "$2" \
        --keystore "$3" "${pwopt[@]}" --custom "Cost Center=CC-9" --comments "test order $n" \
        --requester "ops@scmflow.test" --quiet > "$OT_DIR/create$n.out" 2>&1 ||
        ot_fail "create $kt: $(cat "$OT_DIR/create$n.out")"
    grep -q "order.submitted: order happy-$n sslId" "$OT_DIR/create$n.out" || ot_fail "create $kt output: $(cat "$OT_DIR/create$n.out")"
    [ "$(ot_sql "select state || ' ' || key_algorithm || ' ' || key_size || ' ' || (ssl_id is not null)::text || ' ' || (next_check_at is not null)::text from orders where id='happy-$n'")" = "submitted $1 $2 true true" ] ||
        ot_fail "order row $kt: $(ot_sql "select * from orders where id='happy-$n'")"
    sealed=$(ot_sql "select private_key_sealed from orders where id='happy-$n'")
    [[ $sealed == v1.* ]] || ot_fail "key not sealed for $kt"
    if [ "$3" != PEM ]; then
        [[ $(ot_sql "select keystore_password_sealed from orders where id='happy-$n'") == v1.* ]] || ot_fail "keystore password not sealed"
    fi
    # SCM got a CSR with the right key and names
    cnt=$(ot_sim_get "enrollments?comment=scmflow-ref:" | jq "[.enrollments[] | select(.commonName==\"h$n.scmflow.test\")] | length")
    [ "$cnt" = 1 ] || ot_fail "$kt: SCM enrollments for h$n: $cnt"
    ot_ok "enroll $kt"
done

# bring your own key: good CSR
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$OT_DIR/byo.key" \
    -subj "/CN=byo.scmflow.test" -addext "subjectAltName=DNS:byo.scmflow.test" -out "$OT_DIR/byo.csr" 2>/dev/null
"$SCMCTL" order create --order-id byo-1 --cn byo.scmflow.test --san byo.scmflow.test --org 1001 --profile 501 \
    --term 365 --csr "$OT_DIR/byo.csr" --custom "Cost Center=CC-1" --quiet > "$OT_DIR/byo.out" 2>&1 ||
    ot_fail "byo: $(cat "$OT_DIR/byo.out")"
[ "$(ot_sql "select byo_csr::text || ' ' || (private_key_sealed is null)::text from orders where id='byo-1'")" = "true true" ] || ot_fail "byo row"
pub=$(openssl req -in "$OT_DIR/byo.csr" -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1)
[ "$(ot_sim_get "enrollments?pubkey_sha256=$pub" | jq .count)" = 1 ] || ot_fail "SCM did not get the BYO key"
ot_ok "bring your own CSR"

# BYO: names do not match; garbage CSR (signature broken)
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$OT_DIR/bad.key" \
    -subj "/CN=other.scmflow.test" -out "$OT_DIR/bad.csr" 2>/dev/null
out=$("$SCMCTL" order create --order-id byo-2 --cn byo2.scmflow.test --org 1001 --profile 501 --term 365 \
    --csr "$OT_DIR/bad.csr" --custom "Cost Center=CC-1" --quiet 2>&1) && ot_fail "mismatching CSR accepted"
grep -q "csr_mismatch" <<<"$out" || ot_fail "mismatch not named: $out"
# flip a byte in the signature part (base64 body near the end)
python3 - "$OT_DIR/byo.csr" "$OT_DIR/broken.csr" <<'PY'
import sys,base64
t=open(sys.argv[1]).read().splitlines()
body=base64.b64decode(''.join(t[1:-1])); b=bytearray(body); b[-5]^=0xff
enc=base64.b64encode(bytes(b)).decode()
open(sys.argv[2],'w').write(t[0]+'\n'+'\n'.join(enc[i:i+64] for i in range(0,len(enc),64))+'\n'+t[-1]+'\n')
PY
out=$("$SCMCTL" order create --order-id byo-3 --cn byo.scmflow.test --san byo.scmflow.test --org 1001 --profile 501 \
    --term 365 --csr "$OT_DIR/broken.csr" --custom "Cost Center=CC-1" --quiet 2>&1) && ot_fail "broken CSR accepted"
grep -q "invalid_csr" <<<"$out" || ot_fail "broken CSR not named: $out"
ot_ok "bad CSRs rejected: $(tr '\n' ' ' <<<"$out")"

# secrets never in logs or events
ot_events "$OT_DIR/events.jsonl"
[ "$(grep -c order.submitted "$OT_DIR/events.jsonl")" -ge 6 ] || ot_fail "events missing"
for f in "$OT_DIR"/*.log "$OT_DIR"/*.out "$OT_DIR/events.jsonl"; do
    grep -qF "$KSPW" "$f" && ot_fail "keystore password in $f"
    grep -q "PRIVATE KEY" "$f" && ot_fail "private key in $f"
    grep -qF "$OT_PASSWORD" "$f" && ot_fail "SCM password in $f"
done
ot_ok "no secret in logs or events"
