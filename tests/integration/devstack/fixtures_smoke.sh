#!/usr/bin/env bash
# The test environment itself: PostgreSQL answers and tenv_new_db gives a
# fresh database; the dev broker round-trips a message on a unique topic and
# its control API injects a fault that a client observes.
set -euo pipefail
. "$(dirname "$0")/../../lib/testenv.sh"
tenv_load

[ -n "${SCMFLOW_DATABASE_URL:-}" ] || tenv_fail "SCMFLOW_DATABASE_URL not exported"
[ -n "${SCMFLOW_KAFKA_BROKERS:-}" ] || tenv_fail "SCMFLOW_KAFKA_BROKERS not exported"
[ -d "${SCMFLOW_BIN_DIR:-}" ] || tenv_fail "SCMFLOW_BIN_DIR missing"
[ -x "$SCMFLOW_BIN_DIR/kafka-devbroker" ] || tenv_fail "kafka-devbroker not linked in SCMFLOW_BIN_DIR"

# PostgreSQL
[ "$(psql "$SCMFLOW_DATABASE_URL" -XAtc 'SELECT 41 + 1')" = 42 ] || tenv_fail "psql query"
url=$(tenv_new_db smoke)
psql "$url" -Xq -v ON_ERROR_STOP=1 -c 'CREATE TABLE t (x int)' -c 'INSERT INTO t VALUES (1)'
url2=$(tenv_new_db smoke)
[ "$url" != "$url2" ] || tenv_fail "tenv_new_db returned the same database twice"
! psql "$url2" -XAtc 'SELECT * FROM t' 2>/dev/null || tenv_fail "fresh database not empty"
tenv_drop_db "$url"; tenv_drop_db "$url2"

# Kafka: produce + consume on a unique topic
topic="$(tenv_topic_prefix smoke)roundtrip"
echo "hello-$topic" | kcat -P -b "$SCMFLOW_KAFKA_BROKERS" -t "$topic" -k k1
got=$(timeout 30 kcat -C -b "$SCMFLOW_KAFKA_BROKERS" -t "$topic" -o beginning -c 1 -q)
[ "$got" = "hello-$topic" ] || tenv_fail "kafka round trip: got '$got'"

# Control API: create a topic with 2 partitions and see it in metadata
t2="$(tenv_topic_prefix smoke)two"
tenv_kafka_ctl "topic?name=$t2&partitions=2" >/dev/null || tenv_fail "control /topic"
tenv_wait_for 10 bash -c "kcat -L -b '$SCMFLOW_KAFKA_BROKERS' -t '$t2' | grep -q 'with 2 partitions'" \
    || tenv_fail "topic with 2 partitions not visible"
# Fault injection goes to a private broker: errors injected into the shared
# one would hit whatever test runs in parallel.
work=$(mktemp -d /tmp/devstack-smoke.XXXXXX)
trap 'tenv_kafka_private_stop || true; rm -rf "$work"' EXIT
tenv_kafka_private "$work" 2
ctl=$TENV_KAFKA_CONTROL
boot=$TENV_KAFKA_BROKERS
# Bad requests are 400
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$ctl/broker/99/down")
[ "$code" = 400 ] || tenv_fail "expected 400 for an unknown broker, got $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$ctl/errors?api=Nope&code=1")
[ "$code" = 400 ] || tenv_fail "expected 400 for an unknown api, got $code"
# Every Produce fails with a non-retriable error until cleared
curl -fsS -X POST "$ctl/errors?api=Produce&code=10&count=5" >/dev/null   # MSG_SIZE_TOO_LARGE
if echo x | timeout 30 kcat -P -b "$boot" -t smoke -X message.send.max.retries=0 2>/dev/null; then
    tenv_fail "produce succeeded despite injected errors"
fi
curl -fsS -X POST "$ctl/errors/clear?api=Produce" >/dev/null
echo y | timeout 30 kcat -P -b "$boot" -t smoke || tenv_fail "produce failed after clearing errors"
# Leader moves show in metadata
curl -fsS -X POST "$ctl/topic?name=lead&partitions=1" >/dev/null
curl -fsS -X POST "$ctl/partition/leader?topic=lead&partition=0&broker=2" >/dev/null
tenv_wait_for 10 bash -c "kcat -L -b '$boot' -t lead | grep -q 'partition 0, leader 2'" \
    || tenv_fail "leader change not visible"
# SIGTERM stops it cleanly with exit 0
tenv_kafka_private_stop || tenv_fail "kafka-devbroker did not exit 0 on SIGTERM"

# Simulator (when the fixture is there)
if [ -n "${SCM_SIM_URL:-}" ]; then
    tenv_wait_for 10 curl -s -o /dev/null "$SCM_SIM_ADMIN_URL/state" || tenv_fail "scm-sim admin not answering"
fi
echo "ok"
