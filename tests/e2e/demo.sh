#!/usr/bin/env bash
# The first README command, deploy/dev/demo.sh, in a private directory
# against this build (--no-deps --no-build): it must finish with the
# certificate in the repository and an exported PKCS#12 that opens with its
# password; a second run reuses the running stack and places a new order;
# --down stops every process.
set -euo pipefail
src=${SCMFLOW_SOURCE_DIR:?}
. "$src/tests/lib/testenv.sh"
work=${1:?work dir}
rm -rf "$work"; mkdir -p "$work"
export SCMFLOW_DEV_DIR=$work/dev
: "${SCMFLOW_BUILD_DIR:?}"
# The demo reads the SCMFLOW_* of the stack it starts, not the test fixtures'.
unset SCMFLOW_DATABASE_URL SCMFLOW_KAFKA_BROKERS SCMFLOW_TOPIC_PREFIX SCMFLOW_SCM_BASE_URL PGHOST PGPORT PGUSER
cleanup() {
    local rc=$?
    "$src/deploy/dev/demo.sh" --down >/dev/null 2>&1 || true
    [ $rc = 0 ] && rm -rf "$work"
    exit $rc
}
trap cleanup EXIT

"$src/deploy/dev/demo.sh" --no-deps --no-build --timeout 120 > "$work/run1.out" 2>&1 ||
    { cat "$work/run1.out"; tenv_fail "demo.sh failed"; }
cat "$work/run1.out"
grep -q '^Done in' <(sed 's/\x1b\[[0-9;]*m//g' "$work/run1.out") || tenv_fail "no final summary"
p12=$SCMFLOW_DEV_DIR/exports/www.acme.example.p12
[ -s "$p12" ] || tenv_fail "no exported keystore $p12"
openssl pkcs12 -in "$p12" -passin "file:$p12.password" -nokeys 2>/dev/null | openssl x509 -noout -subject |
    grep -q www.acme.example || tenv_fail "the exported PKCS#12 does not open with its password"
kpid=$(cat "$SCMFLOW_DEV_DIR/run/kafka.pid")

# second run: same stack (same broker process), a second order stored
"$src/deploy/dev/demo.sh" --no-deps --no-build --timeout 120 > "$work/run2.out" 2>&1 ||
    { cat "$work/run2.out"; tenv_fail "second demo.sh run failed"; }
[ "$(cat "$SCMFLOW_DEV_DIR/run/kafka.pid")" = "$kpid" ] || tenv_fail "second run restarted the broker"
( . "$SCMFLOW_DEV_DIR/env"
  n=$(psql "$SCMFLOW_DATABASE_URL" -XAtq -c "select count(*) from orders o join certificates c on c.order_id = o.id where o.id like 'demo-%' and o.state = 'stored'")
  [ "$n" = 2 ] || tenv_fail "expected 2 stored demo orders, got $n" )

pids=$(cat "$SCMFLOW_DEV_DIR"/run/*.pid)
"$src/deploy/dev/demo.sh" --down
for p in $pids; do ! kill -0 "$p" 2>/dev/null || tenv_fail "pid $p still running after --down"; done
# Sanitizer reports (the suite runs under ASan+UBSan; leaks show at exit).
if grep -l -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$SCMFLOW_DEV_DIR"/logs/*.log; then
    grep -h -A12 -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$SCMFLOW_DEV_DIR"/logs/*.log | head -60
    tenv_fail "sanitizer reports in the logs above"
fi
echo ok
