#!/bin/bash
# Benchmark: certificates ingested per second by one repo-ingest with
# PKCS#12 keystores (EC P-256 keys; PBKDF2 10,000 iterations per store), and
# its peak RSS. BENCH_INGEST_ORDERS (default 500) enroll commands go through
# order-submitter and status-poller first (repo-ingest not running), so the
# collected messages wait on the topic; then repo-ingest is started and
# timed until every certificate is stored. Needs pg + kafka fixtures.
PT_NAME=bingest
N=${BENCH_INGEST_ORDERS:-500}
. "$SCMFLOW_SOURCE_DIR/tests/integration/poller/lib.sh"
[ -n "${ORDER_SUBMITTER:-}" ] || pt_fail "ORDER_SUBMITTER not set"
pt_setup
export SCMFLOW_SUBMIT_POLL=20ms SCMFLOW_SUBMIT_FIRST_CHECK=100ms SCMFLOW_CATALOG_JOB_POLL=200ms
pt_sim --issue-after-polls 0
pt_account
SCMFLOW_CONSUMER_GROUP="${SCMFLOW_TOPIC_PREFIX}cs" "$CATALOG_SYNC" > "$PT_DIR/catalog.log" 2>&1 &
PT_PIDS+=($!)
"$SCMCTL" sync --quiet > "$PT_DIR/sync.out" 2>&1 || { cat "$PT_DIR/sync.out" >&2; pt_fail "catalog sync"; }
for i in $(seq 1 "$N"); do
    jq -cn --arg id "bi-$i" --arg cn "bi$i.scmflow.test" --arg t "$(date -u +%Y-%m-%dT%H:%M:%S.000Z)" \
        '{specversion:"1.0", id:("cmd-" + $id), source:"bench", type:"scmflow.order.enroll", time:$t,
          datacontenttype:"application/json",
          data:{order_id:$id, common_name:$cn, sans:[$cn], organization:1001, profile:501, term_days:365,
                key_algorithm:"EC", key_size:256, keystore_type:"PKCS12", keystore_password:"Bench-Pw-123456",
                custom_fields:[{name:"Cost Center", value:"CC-1"}]}}'
done > "$PT_DIR/enroll.jsonl"
kcat -P -b "$SCMFLOW_KAFKA_BROKERS" -t "${SCMFLOW_TOPIC_PREFIX}order.commands" -l "$PT_DIR/enroll.jsonl" 2>/dev/null || pt_fail "publish"
pt_start submitter "$ORDER_SUBMITTER"
pt_start poller "$STATUS_POLLER"
pt_wait_sql 900 "select count(*) from orders where state='issued'" "$N"
pt_ok "$N orders collected; starting repo-ingest"
t0=$(date +%s%N)
pt_start ingest "$REPO_INGEST"
pid=$PT_LAST_PID
pt_wait_sql 900 "select count(*) from certificates where keystore_type='PKCS12'" "$N"
t1=$(date +%s%N)
rss=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
ms=$(( (t1 - t0) / 1000000 ))
echo "BENCH ingest PKCS12 orders=$N: $ms ms incl. start + group join, $(( N * 1000 / ms )) certificates/s, peak RSS ${rss} kB"
first=$(pt_sql "select extract(epoch from min(created_at))*1000 from certificates")
last=$(pt_sql "select extract(epoch from max(created_at))*1000 from certificates")
span=$(python3 -c "print(max(1, int($last - $first)))")
echo "BENCH ingest PKCS12 steady: first to last stored in $span ms: $(( (N - 1) * 1000 / span )) certificates/s"
