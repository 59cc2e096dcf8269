#!/bin/bash
# Crafted scmflow.certificate.collected messages (published with kcat): a
# chain that does not verify, a leaf that does not match its order, garbage
# and truncated PEM, an unexpected PKCS#7 blob, a certificate with 100 KB of
# SANs, an unknown order, a wrong type. Each gives certificate.rejected (or
# the worker's dead-letter for messages without an order) and a copy on the
# dead-letter topic; the order is flagged needs_attention; the worker keeps
# running and stores a good chain afterwards.
PT_NAME=ibad
. "$(dirname "$(dirname "$0")")/poller/lib.sh"
pt_setup
pt_sim --issue-after-polls 0
pt_account

collect() { # SSL_ID FORMAT
    curl -fsS -H "login: $PT_LOGIN" -H "password: $PT_PASSWORD" -H "customerUri: $PT_CUSTOMER" \
        "$PT_SIM/ssl/v1/collect/$1/$2"
}
good_ssl=$(pt_enroll good.scmflow.test) || pt_fail enroll
other_ssl=$(pt_enroll other.scmflow.test) || pt_fail enroll
collect "$good_ssl" pemia > "$PT_DIR/good.pem" || pt_fail collect
collect "$other_ssl" pemia > "$PT_DIR/other.pem" || pt_fail collect
[ "$(grep -c 'BEGIN CERT' "$PT_DIR/good.pem")" = 3 ] || pt_fail "sim chain"

# an unrelated self-signed CA, a leaf + that CA (does not verify)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null -subj "/CN=Stranger CA" \
    -days 30 -out "$PT_DIR/stranger.pem" 2>/dev/null
{ awk '/BEGIN CERT/{c++} c==1' "$PT_DIR/good.pem"; cat "$PT_DIR/stranger.pem"; } > "$PT_DIR/noverify.pem"
# 100 KB of SANs
python3 -c "print('subjectAltName=' + ','.join('DNS:host%05d.big-san-name-padding.scmflow.test' % i for i in range(2200)))" > "$PT_DIR/san.cnf"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null -subj "/CN=big.scmflow.test" \
    -days 30 -addext "$(cat "$PT_DIR/san.cnf")" -out "$PT_DIR/bigsan.pem" 2>/dev/null || pt_fail "big SAN cert"
[ "$(stat -c %s "$PT_DIR/bigsan.pem")" -gt 100000 ] || pt_fail "big SAN cert too small"
head -c 1500 "$PT_DIR/good.pem" > "$PT_DIR/truncated.pem"
printf -- '-----BEGIN PKCS7-----\nMIIBAAYJKoZIhvcNAQcCoIIA8TCCAO0CAQExADALBgkqhkiG9w0BBwGgggDV\n-----END PKCS7-----\n' > "$PT_DIR/pkcs7.pem"
printf -- '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n' > "$PT_DIR/garbage.pem"

declare -A CASE=([noverify]=noverify.pem [mismatch]=other.pem [garbage]=garbage.pem [truncated]=truncated.pem
                 [pkcs7]=pkcs7.pem [bigsan]=bigsan.pem)
for k in "${!CASE[@]}"; do
    cn=good.scmflow.test; [ "$k" = bigsan ] && cn=big.scmflow.test
    pt_order "b-$k" "$good_ssl" "$cn" 2>/dev/null ||
        pt_sql "INSERT INTO orders (id, account, origin, state, common_name, next_check_at) VALUES ('b-$k', 'main', 'enroll', 'issued', '$cn', NULL)"
done
pt_start ingest "$REPO_INGEST"
for k in "${!CASE[@]}"; do
    jq -cn --arg id "b-$k" --rawfile pem "$PT_DIR/${CASE[$k]}" --arg t "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
        '{order_id:$id, ssl_id:1, format:"pem", chain_pem:$pem, collected_at:$t}' > "$PT_DIR/data-$k.json"
    pt_publish certificates.collected scmflow.certificate.collected "b-$k" "$(cat "$PT_DIR/data-$k.json")" >/dev/null
done
# no order / wrong type: the worker dead-letters them
data=$(jq -cn --rawfile pem "$PT_DIR/good.pem" '{order_id:"no-such-order", ssl_id:1, format:"pem", chain_pem:$pem, collected_at:"2026-01-01T00:00:00Z"}')
pt_publish certificates.collected scmflow.certificate.collected no-such-order "$data" >/dev/null
pt_publish certificates.collected scmflow.order.check_status x '{"all":true}' >/dev/null

for k in "${!CASE[@]}"; do
    pt_wait_sql 60 "select state from collected_chains where order_id='b-$k'" rejected
    [ "$(pt_sql "select needs_attention from orders where id='b-$k'")" = t ] || pt_fail "$k: order not flagged"
done
# the relay publishes after the commit: wait for the events, not one read
n_rej() {
    pt_events "$PT_DIR/events.jsonl"
    jq -r 'select(.type=="certificate.rejected") | .data.order_id' "$PT_DIR/events.jsonl" | sort -u | grep -c '^b-'
}
for _ in $(seq 1 150); do
    [ "$(n_rej)" -ge "${#CASE[@]}" ] && break
    sleep 0.2
done
for k in "${!CASE[@]}"; do
    code=$(jq -r "select(.type==\"certificate.rejected\" and .data.order_id==\"b-$k\") | .data.error.code" "$PT_DIR/events.jsonl")
    [ -n "$code" ] || pt_fail "no certificate.rejected for $k"
    echo "   $k: $code: $(jq -r "select(.type==\"certificate.rejected\" and .data.order_id==\"b-$k\") | .data.error.message" "$PT_DIR/events.jsonl" | cut -c1-100)"
done
[ "$(jq -r 'select(.type=="certificate.rejected" and .data.order_id=="b-mismatch") | .data.error.code' "$PT_DIR/events.jsonl")" = name_mismatch ] ||
    pt_fail "mismatch code"
pt_ok "bad chains rejected with certificate.rejected, orders flagged"

want=$(( ${#CASE[@]} + 2 ))
tenv_wait_for 30 bash -c "[ \$(kcat -C -b '$SCMFLOW_KAFKA_BROKERS' -t '${SCMFLOW_TOPIC_PREFIX}deadletter' -o beginning -e -q 2>/dev/null | wc -l) -ge $want ]" ||
    pt_fail "dead-letter topic has fewer than $want messages"
pt_ok "dead-letter topic has every bad message"

kill -0 "$PT_LAST_PID" || pt_fail "repo-ingest died"
pt_sql "INSERT INTO orders (id, account, origin, state, common_name) VALUES ('b-good', 'main', 'enroll', 'issued', 'good.scmflow.test')"
data=$(jq -cn --rawfile pem "$PT_DIR/good.pem" '{order_id:"b-good", ssl_id:1, format:"pemia", chain_pem:$pem, collected_at:"2026-01-01T00:00:00Z"}')
pt_publish certificates.collected scmflow.certificate.collected b-good "$data" >/dev/null
pt_wait_sql 30 "select state from orders where id='b-good'" stored
pt_ok "worker alive, a good chain is stored afterwards"
