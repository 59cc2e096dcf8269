#!/bin/bash
# Orders issued after N polls (scm-sim --issue-after-polls 2) reach the
# repository through status-poller -> certificates.collected -> repo-ingest,
# for every collect format (chain order root-first, leaf-first, PKCS#7, leaf
# only); status history, events, and one certificate per order; replaying a
# collected message stores nothing twice; scmctl cert list/show/export and
# order check answer.
PT_NAME=pflow
. "$(dirname "$0")/lib.sh"
pt_setup
pt_sim --issue-after-polls 2
pt_account
pt_start ingest "$REPO_INGEST"

n=0
for fmt in x509 x509R pem pemia base64 x509CO pemco; do
    n=$((n + 1))
    cn="f$n.scmflow.test"
    ssl=$(pt_enroll "$cn" "alt$n.scmflow.test") || pt_fail "enroll $cn"
    pt_order "flow-$n" "$ssl" "$cn" "alt$n.scmflow.test"
    pt_start "poller-$fmt" "$STATUS_POLLER" SCMFLOW_STATUS_COLLECT_FORMAT=$fmt SCMFLOW_CONSUMER_GROUP=${SCMFLOW_TOPIC_PREFIX}g-$fmt
    pid=$PT_LAST_PID
    pt_wait_sql 60 "select state from orders where id='flow-$n'" stored
    pt_stop $pid "poller-$fmt"
    # the stored chain is leaf first, the leaf is the order's and matches its key
    pt_sql "select chain_pem from certificates where order_id='flow-$n'" > "$PT_DIR/chain$n.pem"
    pt_sql "select leaf_pem from certificates where order_id='flow-$n'" > "$PT_DIR/leaf$n.pem"
    openssl x509 -in "$PT_DIR/chain$n.pem" -noout -subject | grep -q "CN *= *$cn" || pt_fail "$fmt: chain does not start with the leaf"
    cmp -s <(openssl x509 -in "$PT_DIR/leaf$n.pem" -noout -pubkey) <(openssl pkey -in "$PT_DIR/$cn.key" -pubout) ||
        pt_fail "$fmt: leaf key differs"
    want=3; case $fmt in x509CO|pemco) want=1 ;; esac
    got=$(grep -c 'BEGIN CERTIFICATE' "$PT_DIR/chain$n.pem")
    [ "$got" = "$want" ] || pt_fail "$fmt: $got certificates in the stored chain, want $want"
    if [ "$want" = 3 ]; then
        openssl verify -CAfile <(sed -n '/BEGIN/,/END/p' "$PT_DIR/chain$n.pem" | tail -n +1 | awk 'BEGIN{c=0} /BEGIN CERT/{c++} c==3' ) \
            -untrusted <(awk 'BEGIN{c=0} /BEGIN CERT/{c++} c==2' "$PT_DIR/chain$n.pem") "$PT_DIR/leaf$n.pem" >/dev/null ||
            pt_fail "$fmt: stored chain does not verify"
    fi
    # polls: Applied, Applied, Issued => history Applied -> Issued, then stored
    hist=$(pt_sql "select coalesce(new_status,'') || '/' || new_state from order_status_history where order_id='flow-$n' order by id" | tr '\n' ' ')
    [ "$hist" = "Applied/submitted Issued/issued /stored " ] || pt_fail "$fmt: history: $hist"
    pt_ok "format $fmt: stored, chain leaf-first ($got certs), history $hist"
done

[ "$(pt_sql "select count(*) from certificates")" = "$n" ] || pt_fail "certificates: $(pt_sql "select count(*) from certificates")"
[ "$(pt_sql "select count(*) from certificates where status='active' and keystore_sealed is null")" = "$n" ] || pt_fail "no-key orders got keystores"
# exactly one details request per poll: 3 polls per order (2 Applied + Issued)
per=$(pt_sim_get "requests?summary=1" | jq '[.by_path | to_entries[] | select(.key|test("^GET /api/ssl/v1/[0-9]+$")) | .value] | max')
[ "$per" = 3 ] || pt_fail "details calls per order: max $per, want 3"

# the relay publishes after the commit: wait for the events, not one read
for _ in $(seq 1 150); do
    pt_events "$PT_DIR/events.jsonl"
    [ "$(jq -r 'select(.type=="order.issued") | .data.order_id' "$PT_DIR/events.jsonl" | sort -u | wc -l)" -ge "$n" ] && break
    sleep 0.2
done
for t in order.status_changed certificate.stored order.issued; do
    c=$(jq -r "select(.type==\"$t\") | .data.order_id" "$PT_DIR/events.jsonl" | sort -u | wc -l)
    [ "$c" = "$n" ] || pt_fail "$t for $c orders, want $n"
done
jq -se '[.[] | select(.type=="certificate.stored") | .data.fingerprint_sha256 | test("^[0-9a-f]{64}$")] | length > 0 and all' "$PT_DIR/events.jsonl" >/dev/null || pt_fail "fingerprint in event"
pt_events "$PT_DIR/collected.jsonl" certificates.collected
[ "$(wc -l < "$PT_DIR/collected.jsonl")" = "$n" ] || pt_fail "collected messages: $(wc -l < "$PT_DIR/collected.jsonl")"
pt_ok "events: status_changed, certificate.stored, order.issued per order; $n collected messages"

# replay a collected message (same id) and a re-collect (new id): one certificate
head -1 "$PT_DIR/collected.jsonl" | kcat -P -b "$SCMFLOW_KAFKA_BROKERS" -t "${SCMFLOW_TOPIC_PREFIX}certificates.collected" -k flow-1
head -1 "$PT_DIR/collected.jsonl" | jq -c '.id = "replay-new-id"' |
    kcat -P -b "$SCMFLOW_KAFKA_BROKERS" -t "${SCMFLOW_TOPIC_PREFIX}certificates.collected" -k flow-1
pt_wait_sql 30 "select count(*) from collected_chains where message_id='replay-new-id' and state='stored'" 1
[ "$(pt_sql "select count(*) from certificates where order_id='flow-1'")" = 1 ] || pt_fail "replay stored twice"
pt_ok "replayed and re-collected message: one certificate"

# scmctl
"$SCMCTL" cert list > "$PT_DIR/list.out" || pt_fail "cert list"
[ "$(grep -c scmflow.test "$PT_DIR/list.out")" = "$n" ] || pt_fail "cert list: $(cat "$PT_DIR/list.out")"
"$SCMCTL" cert list --cn F3.SCMFLOW --json | jq -e 'length == 1 and .[0].common_name == "f3.scmflow.test"' >/dev/null || pt_fail "cert list --cn"
"$SCMCTL" cert list --expiring-within 30d --json | jq -e 'length == 0' >/dev/null || pt_fail "expiring-within 30d"
"$SCMCTL" cert list --expiring-within 400d --status active --json | jq -e "length == $n" >/dev/null || pt_fail "expiring-within 400d"
id=$(pt_sql "select id from certificates where order_id='flow-2'")
"$SCMCTL" cert show "$id" > "$PT_DIR/show.out" || pt_fail "cert show"
grep -q "BEGIN CERTIFICATE" "$PT_DIR/show.out" && grep -q "f2.scmflow.test" "$PT_DIR/show.out" || pt_fail "cert show: $(cat "$PT_DIR/show.out")"
"$SCMCTL" cert export "$id" --format pem --out "$PT_DIR/export.pem" --quiet || pt_fail "export pem (no key)"
cmp -s "$PT_DIR/export.pem" "$PT_DIR/chain2.pem" || diff <(cat "$PT_DIR/export.pem") <(cat "$PT_DIR/chain2.pem") >/dev/null || true
[ "$(grep -c 'BEGIN CERTIFICATE' "$PT_DIR/export.pem")" = 3 ] || pt_fail "export pem"
"$SCMCTL" cert export "$id" --format p12 --out "$PT_DIR/x.p12" --password-file "$PT_DIR/master.key" 2>/dev/null &&
    pt_fail "p12 export without a key succeeded"
"$SCMCTL" cert show 999999 >/dev/null 2>&1 && pt_fail "show of a missing id succeeded"
pt_ok "scmctl cert list/show/export"

# on-demand check of a stored order answers with its status
pt_start poller-again "$STATUS_POLLER" SCMFLOW_CONSUMER_GROUP=${SCMFLOW_TOPIC_PREFIX}g-again
out=$("$SCMCTL" order check flow-3 --quiet) || pt_fail "order check: $out"
[ "$out" = "order flow-3: status Issued" ] || pt_fail "order check printed: $out"
out=$("$SCMCTL" order check no-such-order --quiet 2>&1) && pt_fail "check of unknown order succeeded"
grep -q not_found <<<"$out" || pt_fail "unknown order: $out"
"$SCMCTL" order check --all --quiet >/dev/null || pt_fail "order check --all"
pt_ok "scmctl order check"
