#!/bin/bash
# bench_orders - orders per second from command to order.submitted, for EC
# P-256 and RSA 2048, with 1 and 2 order-submitter replicas, next to the raw
# key+CSR generation rate of this machine measured in the same run
# (bench_keygen, 1 and 2 threads), printed as a ratio. Real parts:
# PostgreSQL, the dev broker, scm-sim.
#   BENCH_EC_ORDERS (2000), BENCH_RSA_ORDERS (100), BENCH_KEYGEN (binary),
#   BENCH_KEYGEN_SECONDS (5; RSA needs a few seconds for a stable rate),
#   BENCH_CASES ("ec1 ec2 rsa1 rsa2")
# The raw rate compared with N replicas is the N-thread rate (the machine's
# capacity for N parallel generators). Each row is printed as soon as its
# case ends, then the table.
OT_NAME=benchorders
. "$SCMFLOW_SOURCE_DIR/tests/integration/order/lib.sh"
ot_setup
export SCMFLOW_LOG_LEVEL=${BENCH_LOG_LEVEL:-warn} SCMFLOW_SUBMIT_POLL=5ms SCMFLOW_SUBMIT_BATCH=${SCMFLOW_SUBMIT_BATCH:-100}
ot_sim
SIM_PID=${OT_PIDS[-1]}
ot_ready
EC_N=${BENCH_EC_ORDERS:-2000}
RSA_N=${BENCH_RSA_ORDERS:-100}

[ -n "${BENCH_KEYGEN:-}" ] && [ -x "$BENCH_KEYGEN" ] || ot_fail "BENCH_KEYGEN not set"
raw() { # ALG-SIZE THREADS -> rate
    grep -E "keygen\+csr $1 +threads=$2:" "$OT_DIR/keygen.txt" | sed -E 's/.*: +([0-9.]+)\/s.*/\1/' | head -1
}
keygen() {
    "$BENCH_KEYGEN" "${BENCH_KEYGEN_SECONDS:-5}" > "$OT_DIR/keygen.txt" 2>&1 || ot_fail "bench_keygen failed"
}

# cpu_ms PID...: CPU time (user + system, with reaped children) used so
# far by these processes, in ms. CPU time, unlike wall time, says what an
# order costs each part even on a shared machine.
cpu_ms() {
    local t=0 p
    for p in "$@"; do
        [ -r "/proc/$p/stat" ] && t=$(( t + $(awk '{print $14 + $15 + $16 + $17}' "/proc/$p/stat" 2>/dev/null || echo 0) ))
    done
    echo $(( t * 1000 / $(getconf CLK_TCK) ))
}
pg_pids() { # the fixture's postmaster and its backends
    local pm; pm=$(head -1 "$TESTENV_DIR/pg/data/postmaster.pid" 2>/dev/null) || return 0
    echo "$pm" $(pgrep -P "$pm")
}

# run_case NAME ALG SIZE N REPLICAS: sets RATE (orders/s).
run_case() {
    local name=$1 alg=$2 size=$3 n=$4 reps=$5
    export SCMFLOW_TOPIC_PREFIX=$(tenv_topic_prefix "$name")
    OT_GROUP=bench-$(tenv_rand)
    local pids=()
    for r in $(seq 1 "$reps"); do
        ot_submitter "$name-$r"
        pids+=("$OT_LAST_PID")
    done
    # warm up: one order through, so the group has formed
    ot_publish scmflow.order.enroll "$name-warm" "$(ot_enroll_json "$name-warm" "$name-warm.scmflow.test" | jq -c ".key_algorithm=\"$alg\" | .key_size=$size")" >/dev/null
    ot_wait_sql 60 "select state from orders where id='$name-warm'" submitted || ot_fail "$name warm-up"
    # one jq run for all commands (one per order took a minute for 2000)
    jq -rn --arg name "$name" --arg alg "$alg" --argjson size "$size" --argjson n "$n" \
        --argjson base "$(ot_enroll_json X X.scmflow.test)" '
        range(1; $n + 1) | tostring as $k | ($name + "-" + $k) as $id |
        $id + "\t" + ({specversion: "1.0", id: ($name + "-c" + $k), source: "bench",
            type: "scmflow.order.enroll", time: "2026-01-01T00:00:00Z",
            datacontenttype: "application/json",
            data: ($base | .order_id = $id | .common_name = ($id + ".scmflow.test")
                   | .sans = [$id + ".scmflow.test"] | .key_algorithm = $alg | .key_size = $size)}
            | tojson)' > "$OT_DIR/$name.cmds" || ot_fail "$name: jq"
    [ "$(wc -l < "$OT_DIR/$name.cmds")" = "$n" ] || ot_fail "$name: command file"
    local c_sub0 c_pg0 c_sim0 c_k0
    c_sub0=$(cpu_ms "${pids[@]}"); c_pg0=$(cpu_ms $(pg_pids)); c_sim0=$(cpu_ms "$SIM_PID")
    c_k0=$(cpu_ms "$(cat "$TESTENV_DIR/kafka.pid" 2>/dev/null)")
    local t0; t0=$(date +%s.%N)
    kcat -P -b "$SCMFLOW_KAFKA_BROKERS" -t "${SCMFLOW_TOPIC_PREFIX}order.commands" -K '\t' -l "$OT_DIR/$name.cmds" 2>/dev/null ||
        ot_fail "$name: kcat"
    # poll once a second: psql every 100 ms took ~20% of the CPU (connection
    # + backend start) from the system under test; the end time comes from
    # max(submitted_at), not from the poll
    local deadline=$(( $(date +%s) + 600 ))
    until [ "$(ot_sql "select count(*) from orders where id like '$name-%' and id <> '$name-warm' and state='submitted'")" = "$n" ]; do
        [ "$(date +%s)" -lt $deadline ] || break
        sleep 1
    done
    [ "$(ot_sql "select count(*) from orders where id like '$name-%' and id <> '$name-warm' and state='submitted'")" = "$n" ] ||
        ot_fail "$name: not all submitted: $(ot_sql "select state, count(*) from orders where id like '$name-%' group by 1")"
    local last; last=$(ot_sql "select extract(epoch from max(submitted_at)) from orders where id like '$name-%' and id <> '$name-warm'")
    local c_sub c_pg c_sim c_k
    c_sub=$(( $(cpu_ms "${pids[@]}") - c_sub0 )); c_pg=$(( $(cpu_ms $(pg_pids)) - c_pg0 ))
    c_sim=$(( $(cpu_ms "$SIM_PID") - c_sim0 )); c_k=$(( $(cpu_ms "$(cat "$TESTENV_DIR/kafka.pid" 2>/dev/null)") - c_k0 ))
    # (measured up to the moment all were seen submitted: up to 1 s of idle polling included)
    python3 - "$n" "$c_sub" "$c_pg" "$c_sim" "$c_k" "$(nproc)" >&2 <<'PY'
import sys
n, sub, pg, sim, k, cpus = (int(x) for x in sys.argv[1:])
own = sub + pg + k
print("   cpu per order: order-submitter %.2f ms, PostgreSQL %.2f ms, broker %.2f ms, scm-sim %.2f ms;"
      " scmflow's own %.2f ms -> %d CPUs could do %.0f orders/s with SCM elsewhere"
      % (sub / n, pg / n, k / n, sim / n, own / n, cpus, cpus * 1000.0 * n / own if own else 0))
PY
    for p in "${pids[@]}"; do kill -TERM "$p"; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    # BENCH_LOG_LEVEL=info: the submitter's own account of its rounds
    for r in $(seq 1 "$reps"); do
        grep -o 'ran [0-9]* SCM operation.*' "$OT_DIR/$name-$r.log" | tail -3 | sed "s/^/   $name-$r: /" >&2
    done
    RATE=$(python3 -c "print('%.1f' % ($n / ($last - $t0)))")
    # where the time went: commands taken in (created_at) vs enrolled
    # (submitted_at), both relative to the publish start
    ot_sql "select 'stages: accepted in ' || round((extract(epoch from max(created_at)) - $t0)::numeric, 2)
            || ' s, submitted in ' || round((extract(epoch from max(submitted_at)) - $t0)::numeric, 2)
            || ' s, first submitted after ' || round((extract(epoch from min(submitted_at)) - $t0)::numeric, 2) || ' s'
            from orders where id like '$name-%' and id <> '$name-warm'" >&2
}

row() { # LABEL RATE RAW1 RAW2
    printf '%-22s %10s %12s %12s %8s\n' "$1" "$2" "$3" "$4" "$(python3 -c "print('%.2f' % ($2 / $4))")"
}

keygen
rawec1=$(raw EC-256 1); rawec2=$(raw EC-256 2); rawrsa1=$(raw RSA-2048 1); rawrsa2=$(raw RSA-2048 2)
[ -n "$rawec1" ] && [ -n "$rawec2" ] && [ -n "$rawrsa1" ] && [ -n "$rawrsa2" ] ||
    ot_fail "bench_keygen output: $(cat "$OT_DIR/keygen.txt")"
header=$(printf '%-22s %10s %12s %12s %8s' case orders/s "raw 1 thr/s" "raw 2 thr/s" ratio)
echo "$header"
rows=()
want=0
for c in ${BENCH_CASES:-ec1 ec2 rsa1 rsa2}; do
    case $c in
        ec1) run_case bec1 EC 256 "$EC_N" 1; rows+=("$(row "EC-P256 replicas=1" "$RATE" "$rawec1" "$rawec2")"); want=$((want + EC_N + 1)) ;;
        ec2) run_case bec2 EC 256 "$EC_N" 2; rows+=("$(row "EC-P256 replicas=2" "$RATE" "$rawec1" "$rawec2")"); want=$((want + EC_N + 1)) ;;
        rsa1) run_case brsa1 RSA 2048 "$RSA_N" 1; rows+=("$(row "RSA-2048 replicas=1" "$RATE" "$rawrsa1" "$rawrsa2")"); want=$((want + RSA_N + 1)) ;;
        rsa2) run_case brsa2 RSA 2048 "$RSA_N" 2; rows+=("$(row "RSA-2048 replicas=2" "$RATE" "$rawrsa1" "$rawrsa2")"); want=$((want + RSA_N + 1)) ;;
        *) ot_fail "unknown case $c" ;;
    esac
    echo "${rows[-1]}"
done

# the sim must hold one enrollment per order (no duplicates, none lost)
enr=$(ot_sim_get enrollments | jq .count)
[ "$enr" = "$want" ] || ot_fail "scm-sim has $enr enrollments, want $want"

echo
echo "$header"
printf '%s\n' "${rows[@]}"
echo "raw: bench_keygen key+CSR in this run (1 and 2 threads); ratio = orders/s / raw 2 thr/s,"
echo "  the machine's key generation capacity (a replica generates keys in one thread per CPU,"
echo "  SCMFLOW_SUBMIT_KEYGEN_THREADS). Machine: $(nproc) CPUs, shared."
echo "targets: RSA-2048 ratio >= 0.8; EC-P256 >= 500 orders/s"
