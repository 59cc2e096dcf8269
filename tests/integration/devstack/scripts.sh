#!/usr/bin/env bash
# pg.sh and stack.sh end to end in a private directory: start, reuse when
# already running, the env files work, stop leaves nothing running.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../../.." && pwd)
. "$src/tests/lib/testenv.sh"
work=${1:?work dir}
rm -rf "$work"; mkdir -p "$work"
cleanup() {
    "$src/deploy/dev/stack.sh" down --dir "$work/stack" >/dev/null 2>&1 || true
    "$src/deploy/dev/pg.sh" stop "$work/pg" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# pg.sh: start, idempotent start reuses the same port, status, stop
out1=$("$src/deploy/dev/pg.sh" start "$work/pg")
out2=$("$src/deploy/dev/pg.sh" start "$work/pg")
[ "$out1" = "$out2" ] || tenv_fail "second start did not reuse the cluster"
( . "$work/pg/env"; [ "$(psql "$SCMFLOW_DATABASE_URL" -XAtc 'SHOW fsync')" = off ] ) \
    || tenv_fail "fsync should be off without --durable"
"$src/deploy/dev/pg.sh" status "$work/pg" >/dev/null || tenv_fail "status of a running cluster"
"$src/deploy/dev/pg.sh" stop "$work/pg"
! "$src/deploy/dev/pg.sh" status "$work/pg" >/dev/null 2>&1 || tenv_fail "status after stop"
"$src/deploy/dev/pg.sh" stop "$work/pg" || tenv_fail "stop is not idempotent"

# stack.sh: up twice (reuse), env file usable, master key 0600 and stable
"$src/deploy/dev/stack.sh" up --dir "$work/stack" --no-workers >/dev/null
key1=$(od -An -tx1 "$work/stack/master.key" | tr -d ' \n')
kpid=$(cat "$work/stack/run/kafka.pid")
"$src/deploy/dev/stack.sh" up --dir "$work/stack" --no-workers >/dev/null
[ "$(cat "$work/stack/run/kafka.pid")" = "$kpid" ] || tenv_fail "stack up restarted the broker"
[ "$(od -An -tx1 "$work/stack/master.key" | tr -d ' \n')" = "$key1" ] || tenv_fail "master key changed"
[ "$(stat -c %a "$work/stack/master.key")" = 600 ] || tenv_fail "master key mode"
[ "$(stat -c %s "$work/stack/master.key")" = 32 ] || tenv_fail "master key size"
(
    . "$work/stack/env"
    [ "$(psql "$SCMFLOW_DATABASE_URL" -XAtc 'SELECT 1')" = 1 ] || tenv_fail "db from stack env"
    curl -fsS "$KAFKA_DEVBROKER_CONTROL/health" >/dev/null || tenv_fail "broker control from stack env"
    kcat -L -b "$SCMFLOW_KAFKA_BROKERS" -m 10 >/dev/null || tenv_fail "broker metadata"
)
"$src/deploy/dev/stack.sh" status --dir "$work/stack" >/dev/null || tenv_fail "stack status"
"$src/deploy/dev/stack.sh" down --dir "$work/stack" >/dev/null
! kill -0 "$kpid" 2>/dev/null || tenv_fail "broker still running after down"
! "$src/deploy/dev/stack.sh" status --dir "$work/stack" >/dev/null 2>&1 || tenv_fail "status after down"
echo ok
