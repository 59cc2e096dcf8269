#!/bin/bash
# Master key rotation end to end (scmctl rekey, SCMFLOW_MASTER_KEY_OLD_FILES):
#  1. key A: an SCM account (scmctl account set against scm-sim) and three
#     orders through the real workers (submitter -> poller -> ingest), so all
#     five sealed columns hold tokens of A;
#  2. primary B + old A: scmctl and every worker still read everything (cert
#     export, catalog sync with the sealed SCM password), a new order is sealed
#     under B; B alone cannot read A's tokens (error names A's key id);
#  3. rekey --dry-run writes nothing; rekey skips a row another session holds
#     (without waiting for it) and reports it busy, re-seals the rest, keeps
#     every value (exported key identical); again re-seals that row; a third
#     run re-seals 0; no token of A is left (SQL);
#  4. B alone: everything unseals (cert export, catalog sync);
#  5. A alone: unsealing fails naming B's key id, rekey exits 1 and lists the
#     values with the key id they need, and nothing is written.
# No secret in any output or log.
PT_NAME=rekey
. "$(dirname "$(dirname "$0")")/poller/lib.sh"
[ -n "${ORDER_SUBMITTER:-}" ] && [ -n "${CATALOG_SYNC:-}" ] || pt_fail "ORDER_SUBMITTER / CATALOG_SYNC not set"
pt_setup
KEY_A=$SCMFLOW_MASTER_KEY_FILE
KEY_B=$(tenv_master_key "$PT_DIR/b.key")
# key id = first 8 hex characters of SHA-256 of the 32 key bytes (sf_seal.h)
ID_A=$(sha256sum < "$KEY_A" | cut -c1-8)
ID_B=$(sha256sum < "$KEY_B" | cut -c1-8)
[ "$ID_A" != "$ID_B" ] || pt_fail "two random keys with one id"
export SCMFLOW_SUBMIT_POLL=20ms SCMFLOW_SUBMIT_FIRST_CHECK=200ms SCMFLOW_CATALOG_JOB_POLL=200ms
export SCMCTL_TIMEOUT=90s
pt_sim --issue-after-polls 2
pt_account
KSPW='Rekey-Ks-Pw-4711'
printf '%s\n' "$KSPW" > "$PT_DIR/kspw"
printf '%s\n' 'Other-Pw-9999' > "$PT_DIR/otherpw"

COLS="scm_accounts.password_sealed orders.private_key_sealed orders.keystore_password_sealed scm_operations.private_key_sealed certificates.keystore_sealed"
# count_like PATTERN: per column, tokens matching the LIKE pattern ("n n n n n")
count_like() {
    local c out=""
    for c in $COLS; do out="$out $(pt_sql "select count(*) from ${c%%.*} where ${c#*.} like '$1'")"; done
    echo $out
}
sum() { local s=0 n; for n in "$@"; do s=$((s + n)); done; echo $s; }

PHASE=0
RUNNING=()
# start_workers [NAME...]: catalog submitter poller ingest (default: all)
start_workers() {
    local w bin ws=("$@")
    [ $# -gt 0 ] || ws=(catalog submitter poller ingest)
    PHASE=$((PHASE + 1))
    RUNNING=()
    for w in "${ws[@]}"; do
        case $w in
        catalog) bin=$CATALOG_SYNC ;; submitter) bin=$ORDER_SUBMITTER ;;
        poller) bin=$STATUS_POLLER ;; ingest) bin=$REPO_INGEST ;;
        esac
        pt_start "$w-$PHASE" "$bin"
        RUNNING+=("$PT_LAST_PID:$w-$PHASE")
    done
}
stop_workers() {
    local r
    for r in "${RUNNING[@]}"; do pt_stop "${r%%:*}" "${r#*:}"; done
    for r in "${RUNNING[@]}"; do
        tenv_wait_for 30 bash -c "! kill -0 ${r%%:*}" || pt_fail "${r#*:} did not exit"
    done
}
# cert_id ORDER
cert_id() { pt_sql "select id from certificates where order_id='$1'"; }
# sync_ok NAME: scmctl sync through catalog-sync (which unseals the SCM password)
sync_ok() {
    "$SCMCTL" sync --quiet > "$PT_DIR/sync-$1.out" 2>&1 || pt_fail "sync ($1): $(cat "$PT_DIR/sync-$1.out")"
}
# export_all TAG: every certificate exported; the PEM key of rk-2 kept as TAG.pem
export_all() {
    local tag=$1
    "$SCMCTL" cert export "$(cert_id rk-1)" --format p12 --out "$PT_DIR/$tag-1.p12" \
        --password-file "$PT_DIR/kspw" --quiet > "$PT_DIR/export-$tag.out" 2>&1 || pt_fail "$tag: export p12 (sealed keystore): $(cat "$PT_DIR/export-$tag.out")"
    openssl pkcs12 -in "$PT_DIR/$tag-1.p12" -passin "file:$PT_DIR/kspw" -nodes -out /dev/null 2>/dev/null ||
        pt_fail "$tag: exported p12 does not open"
    "$SCMCTL" cert export "$(cert_id rk-1)" --format p12 --out "$PT_DIR/$tag-1o.p12" \
        --password-file "$PT_DIR/otherpw" --quiet >> "$PT_DIR/export-$tag.out" 2>&1 || pt_fail "$tag: export p12 (from the sealed key): $(cat "$PT_DIR/export-$tag.out")"
    "$SCMCTL" cert export "$(cert_id rk-2)" --format pem --out "$PT_DIR/$tag.pem" --quiet \
        >> "$PT_DIR/export-$tag.out" 2>&1 || pt_fail "$tag: export pem: $(cat "$PT_DIR/export-$tag.out")"
    "$SCMCTL" cert export "$(cert_id rk-3)" --format jks --out "$PT_DIR/$tag-3.jks" \
        --password-file "$PT_DIR/kspw" --quiet >> "$PT_DIR/export-$tag.out" 2>&1 || pt_fail "$tag: export jks: $(cat "$PT_DIR/export-$tag.out")"
    keytool -list -keystore "$PT_DIR/$tag-3.jks" -storetype JKS -storepass "$KSPW" > /dev/null 2>&1 ||
        pt_fail "$tag: exported jks does not open"
}

# ---- 1. everything sealed under A ----
start_workers
sync_ok a
n=0
for kt in "EC 256 PKCS12" "EC 256 PEM" "EC 256 JKS"; do
    set -- $kt
    n=$((n + 1))
    pwopt=()
    [ "$3" != PEM ] && pwopt=(--keystore-password-file "$PT_DIR/kspw")
    "$SCMCTL" order create --order-id "rk-$n" --cn "rk$n.scmflow.test" --san "rk$n.scmflow.test" \
        --org 1001 --profile 501 --term 365 --key "$1" --key-size "$2" --keystore "$3" "${pwopt[@]}" \
        --custom "Cost Center=CC-1" --quiet > "$PT_DIR/create$n.out" 2>&1 || pt_fail "create $kt: $(cat "$PT_DIR/create$n.out")"
done
for i in 1 2 3; do pt_wait_sql 120 "select state from orders where id='rk-$i'" stored; done
stop_workers
A_BEFORE=($(count_like "v1.$ID_A.%"))
ALL=($(count_like "v1.%"))
for i in 0 1 2 3 4; do
    [ "${A_BEFORE[$i]}" -gt 0 ] || pt_fail "no token of key A in column $((i + 1)) of [$COLS]: ${A_BEFORE[*]}"
done
[ "${A_BEFORE[*]}" = "${ALL[*]}" ] || pt_fail "tokens not all under A ($ID_A): ${A_BEFORE[*]} of ${ALL[*]}"
export_all a
pt_ok "key A: every sealed column holds tokens of $ID_A (${A_BEFORE[*]}); exports work"

# ---- 2. primary B, A as old key ----
export SCMFLOW_MASTER_KEY_FILE=$KEY_B SCMFLOW_MASTER_KEY_OLD_FILES=$KEY_A
SCMFLOW_MASTER_KEY_OLD_FILES= "$SCMCTL" cert export "$(cert_id rk-2)" --format pem --out "$PT_DIR/nob.pem" \
    --quiet > "$PT_DIR/export-bonly-early.out" 2>&1 && pt_fail "B alone exported a value sealed under A"
grep -q "$ID_A" "$PT_DIR/export-bonly-early.out" || pt_fail "B alone: error does not name key $ID_A: $(cat "$PT_DIR/export-bonly-early.out")"
"$SCMCTL" --help | grep -q "rekey" || pt_fail "rekey not in scmctl --help"
"$SCMCTL" rekey --help | grep -q "SCMFLOW_MASTER_KEY_OLD_FILES" || pt_fail "rekey --help"
"$CATALOG_SYNC" --help 2>&1 | grep -q "SCMFLOW_MASTER_KEY_OLD_FILES" || pt_fail "catalog-sync --help does not list SCMFLOW_MASTER_KEY_OLD_FILES"
"$SCMCTL" account show main > "$PT_DIR/show-ba.out" 2>&1 || pt_fail "account show: $(cat "$PT_DIR/show-ba.out")"
export_all ba
cmp -s "$PT_DIR/a.pem" "$PT_DIR/ba.pem" || pt_fail "B+A: exported key differs"
start_workers
sync_ok ba
"$SCMCTL" order create --order-id rk-4 --cn rk4.scmflow.test --san rk4.scmflow.test --org 1001 --profile 501 \
    --term 365 --key EC --key-size 256 --keystore PKCS12 --keystore-password-file "$PT_DIR/kspw" \
    --custom "Cost Center=CC-1" --quiet > "$PT_DIR/create4.out" 2>&1 || pt_fail "create rk-4: $(cat "$PT_DIR/create4.out")"
pt_wait_sql 120 "select state from orders where id='rk-4'" stored
[ "$(pt_sql "select private_key_sealed like 'v1.$ID_B.%' and keystore_password_sealed like 'v1.$ID_B.%' from orders where id='rk-4'")" = t ] ||
    pt_fail "new order not sealed under B"
[ "$(pt_sql "select keystore_sealed like 'v1.$ID_B.%' from certificates where order_id='rk-4'")" = t ] ||
    pt_fail "new keystore not sealed under B"
pt_ok "primary B + old A: account show, cert export (p12, pem, jks), catalog sync work; new order sealed under $ID_B; B alone names $ID_A"

# ---- 3. rekey (workers keep running) ----
"$SCMCTL" rekey --dry-run --json > "$PT_DIR/dry.json" 2> "$PT_DIR/dry.err" || pt_fail "dry run: $(cat "$PT_DIR/dry.err")"
[ "$(jq .resealed "$PT_DIR/dry.json")" = "$(sum "${A_BEFORE[@]}")" ] || pt_fail "dry run count: $(cat "$PT_DIR/dry.json")"
[ "$(jq -r .dry_run "$PT_DIR/dry.json")" = true ] || pt_fail "dry_run flag"
[ "$(count_like "v1.$ID_A.%")" = "${A_BEFORE[*]}" ] || pt_fail "dry run wrote: $(count_like "v1.$ID_A.%")"
pt_ok "rekey --dry-run counts $(sum "${A_BEFORE[@]}") values and writes nothing"

# Another session holds rk-1 (both its sealed columns) for 20 s.
psql "$PT_DB_URL" -XAtq -v ON_ERROR_STOP=1 > "$PT_DIR/locker.out" 2>&1 <<'SQL' &
BEGIN;
SELECT id FROM orders WHERE id = 'rk-1' FOR UPDATE;
SELECT pg_sleep(20);
COMMIT;
SQL
LOCKER=$!
PT_PIDS+=($LOCKER)
tenv_wait_for 20 bash -c "[ \"\$(psql '$PT_DB_URL' -XAtq -c \"select count(*) from pg_stat_activity where datname = current_database() and query like '%pg_sleep(20)%' and pid <> pg_backend_pid()\")\" = 1 ]" ||
    pt_fail "locker session did not start"
t0=$(date +%s)
"$SCMCTL" rekey --json > "$PT_DIR/rekey1.json" 2> "$PT_DIR/rekey1.err" && pt_fail "rekey with a held row exited 0"
t1=$(date +%s)
kill -0 $LOCKER 2>/dev/null || pt_fail "rekey waited for the held row (took $((t1 - t0))s)"
jq -e . "$PT_DIR/rekey1.json" > /dev/null || pt_fail "rekey output: $(cat "$PT_DIR/rekey1.json" "$PT_DIR/rekey1.err")"
[ "$(jq -c '[.columns[] | .busy]' "$PT_DIR/rekey1.json")" = "[0,1,1,0,0]" ] || pt_fail "busy counts: $(cat "$PT_DIR/rekey1.json")"
[ "$(jq .failed "$PT_DIR/rekey1.json")" = 0 ] || pt_fail "failures: $(cat "$PT_DIR/rekey1.json")"
[ "$(jq .resealed "$PT_DIR/rekey1.json")" = $(( $(sum "${A_BEFORE[@]}") - 2 )) ] || pt_fail "first run re-sealed: $(cat "$PT_DIR/rekey1.json")"
[ "$(count_like "v1.$ID_A.%")" = "0 1 1 0 0" ] || pt_fail "after first run, left under A: $(count_like "v1.$ID_A.%")"
[ "$(pt_sql "select (private_key_sealed like 'v1.$ID_A.%')::text || (keystore_password_sealed like 'v1.$ID_A.%')::text from orders where id='rk-1'")" = truetrue ] ||
    pt_fail "the held row was changed"
pt_ok "rekey skipped the held row without waiting ($((t1 - t0))s), reported it busy (exit 1), re-sealed the other $(jq .resealed "$PT_DIR/rekey1.json")"
wait $LOCKER || pt_fail "locker session: $(cat "$PT_DIR/locker.out")"

"$SCMCTL" rekey --json > "$PT_DIR/rekey2.json" 2> "$PT_DIR/rekey2.err" || pt_fail "second rekey: $(cat "$PT_DIR/rekey2.json" "$PT_DIR/rekey2.err")"
[ "$(jq -c '[.columns[] | .resealed]' "$PT_DIR/rekey2.json")" = "[0,1,1,0,0]" ] || pt_fail "second run: $(cat "$PT_DIR/rekey2.json")"
"$SCMCTL" rekey > "$PT_DIR/rekey3.out" 2> "$PT_DIR/rekey3.err" || pt_fail "third rekey: $(cat "$PT_DIR/rekey3.out" "$PT_DIR/rekey3.err")"
grep -q "re-sealed" "$PT_DIR/rekey3.out" || pt_fail "text output: $(cat "$PT_DIR/rekey3.out")"
"$SCMCTL" rekey --json > "$PT_DIR/rekey4.json" 2> "$PT_DIR/rekey4.err" || pt_fail "fourth rekey"
ALL=($(count_like "v1.%"))
[ "$(jq .resealed "$PT_DIR/rekey4.json")" = 0 ] || pt_fail "idempotence: $(cat "$PT_DIR/rekey4.json")"
[ "$(jq .current "$PT_DIR/rekey4.json")" = "$(sum "${ALL[@]}")" ] || pt_fail "current count: $(cat "$PT_DIR/rekey4.json")"
[ "$(count_like "v1.$ID_A.%")" = "0 0 0 0 0" ] || pt_fail "tokens of A left: $(count_like "v1.$ID_A.%")"
[ "$(count_like "v1.$ID_B.%")" = "${ALL[*]}" ] || pt_fail "not all under B: $(count_like "v1.$ID_B.%") of ${ALL[*]}"
stop_workers
pt_ok "rekey re-sealed the held row once free; again re-seals 0; no token of $ID_A left (${ALL[*]} under $ID_B)"

# ---- 4. B alone ----
unset SCMFLOW_MASTER_KEY_OLD_FILES
export_all b
cmp -s "$PT_DIR/a.pem" "$PT_DIR/b.pem" || pt_fail "B alone: exported key differs from the one sealed under A"
start_workers catalog
sync_ok b
stop_workers
pt_ok "B alone: cert export (p12 both ways, pem identical to before, jks) and catalog sync work"

# ---- 5. A alone ----
export SCMFLOW_MASTER_KEY_FILE=$KEY_A
"$SCMCTL" cert export "$(cert_id rk-2)" --format pem --out "$PT_DIR/a-only.pem" --quiet \
    > "$PT_DIR/export-aonly.out" 2>&1 && pt_fail "A alone exported a value sealed under B"
grep -q "master key $ID_B which is not configured" "$PT_DIR/export-aonly.out" ||
    pt_fail "A alone: unclear error: $(cat "$PT_DIR/export-aonly.out")"
"$SCMCTL" rekey --json > "$PT_DIR/rekey-a.json" 2> "$PT_DIR/rekey-a.err" && pt_fail "rekey with a missing key exited 0"
[ "$(jq .failed "$PT_DIR/rekey-a.json")" = "$(sum "${ALL[@]}")" ] || pt_fail "failed count: $(cat "$PT_DIR/rekey-a.json")"
[ "$(jq -r '[.failures[].key_id] | unique | join(",")' "$PT_DIR/rekey-a.json")" = "$ID_B" ] || pt_fail "failure key ids: $(cat "$PT_DIR/rekey-a.json")"
[ "$(jq -r '.failures[] | select(.table=="orders" and .column=="private_key_sealed") | .id' "$PT_DIR/rekey-a.json" | sort | tr '\n' ' ')" = "rk-1 rk-2 rk-3 rk-4 " ] ||
    pt_fail "failures do not name the order rows: $(cat "$PT_DIR/rekey-a.json")"
"$SCMCTL" rekey > "$PT_DIR/rekey-a.out" 2> "$PT_DIR/rekey-a-text.err" && pt_fail "rekey (text) with a missing key exited 0"
grep -q "cannot unseal scm_accounts.password_sealed of row id \"main\": needs master key $ID_B" "$PT_DIR/rekey-a-text.err" ||
    pt_fail "text failure line: $(head -3 "$PT_DIR/rekey-a-text.err")"
[ "$(count_like "v1.$ID_B.%")" = "${ALL[*]}" ] || pt_fail "failed rekey wrote something"
pt_ok "A alone: export fails naming $ID_B; rekey exits 1 listing $(jq .failed "$PT_DIR/rekey-a.json") values that need $ID_B, writes nothing"

# ---- no secret anywhere ----
for f in "$PT_DIR"/*.log "$PT_DIR"/*.out "$PT_DIR"/*.err "$PT_DIR"/*.json; do
    [ -f "$f" ] || continue
    grep -qF "$KSPW" "$f" && pt_fail "keystore password in $f"
    grep -qF "$PT_PASSWORD" "$f" && pt_fail "SCM password in $f"
    grep -q "PRIVATE KEY" "$f" && pt_fail "private key in $f"
done
for f in "$PT_DIR"/rekey* "$PT_DIR"/dry*; do
    grep -q "v1\.[0-9a-f]\{8\}\.[A-Za-z0-9+/]\{16\}" "$f" && pt_fail "sealed token in $f"
done
pt_ok "no secret in outputs and logs, no token in rekey's output"
