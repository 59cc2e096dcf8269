#!/bin/bash
# bench_orders - orders per second from command to order.submitted, for EC
# P-256 and RSA 2048, with 1 and 2 order-submitter replicas, next to the raw
# key+CSR generation rate of this machine (bench_keygen, 1 and 2 threads),
# printed as a ratio. Real parts: PostgreSQL, the dev broker, scm-sim.
#   BENCH_EC_ORDERS (2000), BENCH_RSA_ORDERS (150), BENCH_KEYGEN (binary)
OT_NAME=benchorders
. "$SCMFLOW_SOURCE_DIR/tests/integration/order/lib.sh"
ot_setup
export SCMFLOW_LOG_LEVEL=warn SCMFLOW_SUBMIT_POLL=5ms SCMFLOW_SUBMIT_BATCH=50
ot_sim
ot_ready
EC_N=${BENCH_EC_ORDERS:-2000}
RSA_N=${BENCH_RSA_ORDERS:-150}

raw() { # ALG-SIZE THREADS -> rate
    grep -E "keygen\+csr $1 +threads=$2:" "$OT_DIR/keygen.txt" | sed -E 's/.*: +([0-9.]+)\/s.*/\1/' | head -1
}
if [ -n "${BENCH_KEYGEN:-}" ] && [ -x "$BENCH_KEYGEN" ]; then
    "$BENCH_KEYGEN" 2 > "$OT_DIR/keygen.txt" 2>&1 || ot_fail "bench_keygen failed"
else
    ot_fail "BENCH_KEYGEN not set"
fi

run_case() { # NAME ALG SIZE N REPLICAS -> prints rate
    local name=$1 alg=$2 size=$3 n=$4 reps=$5
    export SCMFLOW_TOPIC_PREFIX=$(tenv_topic_prefix "$name")
    OT_GROUP=bench-$(tenv_rand)
    local pids=()
    for r in $(seq 1 "$reps"); do
        ot_submitter "$name-$r"
        pids+=("$OT_LAST_PID")
    done
    # warm up: one order through, so every replica has joined the group
    ot_publish scmflow.order.enroll "$name-warm" "$(ot_enroll_json "$name-warm" "$name-warm.scmflow.test" | jq -c ".key_algorithm=\"$alg\" | .key_size=$size")" >/dev/null
    ot_wait_sql 60 "select state from orders where id='$name-warm'" submitted || ot_fail "$name warm-up"
    for r in $(seq 1 "$reps"); do
        tenv_wait_for 30 grep -q "partition(s) assigned" "$OT_DIR/$name-$r.log" 2>/dev/null || true
    done
    seq 1 "$n" | while read -r k; do
        printf '%s-%s\t{"specversion":"1.0","id":"%s-c%s","source":"bench","type":"scmflow.order.enroll","time":"2026-01-01T00:00:00Z","datacontenttype":"application/json","data":%s}\n' \
            "$name" "$k" "$name" "$k" "$(ot_enroll_json "$name-$k" "$name-$k.scmflow.test" | jq -c ".key_algorithm=\"$alg\" | .key_size=$size")"
    done > "$OT_DIR/$name.cmds"
    local t0; t0=$(date +%s.%N)
    kcat -P -b "$SCMFLOW_KAFKA_BROKERS" -t "${SCMFLOW_TOPIC_PREFIX}order.commands" -K '\t' -l "$OT_DIR/$name.cmds" 2>/dev/null
    ot_wait_sql 600 "select count(*) from orders where id like '$name-%' and id <> '$name-warm' and state='submitted'" "$n" ||
        ot_fail "$name: not all submitted: $(ot_sql "select state, count(*) from orders where id like '$name-%' group by 1")"
    local last; last=$(ot_sql "select extract(epoch from max(submitted_at)) from orders where id like '$name-%' and id <> '$name-warm'")
    for p in "${pids[@]}"; do kill -TERM "$p"; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    python3 -c "print('%.1f' % ($n / ($last - $t0)))"
}

# the sim must hold one enrollment per order (sanity)
declare -A rate
rate[ec1]=$(run_case bec1 EC 256 "$EC_N" 1)
rate[ec2]=$(run_case bec2 EC 256 "$EC_N" 2)
rate[rsa1]=$(run_case brsa1 RSA 2048 "$RSA_N" 1)
rate[rsa2]=$(run_case brsa2 RSA 2048 "$RSA_N" 2)
enr=$(ot_sim_get enrollments | jq .count)
want=$(( 2 * EC_N + 2 * RSA_N + 4 ))
[ "$enr" = "$want" ] || ot_fail "scm-sim has $enr enrollments, want $want"

rawec1=$(raw EC-256 1); rawec2=$(raw EC-256 2); rawrsa1=$(raw RSA-2048 1); rawrsa2=$(raw RSA-2048 2)
printf '\n%-22s %10s %14s %8s\n' case orders/s "raw key+CSR/s" ratio
for c in "EC-P256 1 ec1 $rawec1" "EC-P256 2 ec2 $rawec2" "RSA-2048 1 rsa1 $rawrsa1" "RSA-2048 2 rsa2 $rawrsa2"; do
    set -- $c
    printf '%-22s %10s %14s %8s\n' "$1 replicas=$2" "${rate[$3]}" "$4" "$(python3 -c "print('%.2f' % (${rate[$3]} / $4))")"
done
echo "targets: RSA-2048 ratio >= 0.8; EC-P256 >= 500 orders/s"
