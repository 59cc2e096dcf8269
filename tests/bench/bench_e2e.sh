#!/usr/bin/env bash
# bench_e2e - end-to-end throughput and latency: N enroll commands published
# at once with kcat, through every worker (E2E_REPLICAS replicas each,
# default 2) to the certificate stored in the repository, for EC P-256 and
# RSA 2048. Prints one table:
#   orders/s (N / first command -> last certificate.stored), latency
#   percentiles command -> certificate.stored and order.accepted ->
#   certificate.stored (from the events' CloudEvents times), next to the raw
#   key+CSR generation rate on this machine (bench_keygen, 2 threads) as the
#   ceiling; then the peak RSS (VmHWM) of every worker replica.
#
#   BENCH_E2E_N        orders per key type (default 10000)
#   BENCH_E2E_KEYS     key types (default "EC:256 RSA:2048")
#   BENCH_E2E_KEYSTORE keystore type of the orders (default PEM)
#   BENCH_KEYGEN       bench_keygen binary (default: <build>/tests/bench_keygen)
#   E2E_REPLICAS       replicas per worker (default 2)
#   BENCH_E2E_STALL_S  fail when nothing is stored for this long (default 300)
#   BENCH_E2E_MAX_S    fail after this long per key type (default 10800)
# Runs on the pg + kafka fixtures (own database and topic prefix) with a
# private scm-sim that issues at enroll (--issue-after-polls 0) so that the
# numbers are scmflow's, not the simulated CA's.
E2E_NAME=bench
export SCMFLOW_LOG_LEVEL=${SCMFLOW_LOG_LEVEL:-warn}
export SCMFLOW_SUBMIT_FIRST_CHECK=200ms SCMFLOW_STATUS_LADDER=200ms,500ms,1s,2s
. "$(dirname "$0")/../e2e/lib.sh"
N=${BENCH_E2E_N:-10000}
KEYS=${BENCH_E2E_KEYS:-EC:256 RSA:2048}
KS=${BENCH_E2E_KEYSTORE:-PEM}
KEYGEN=${BENCH_KEYGEN:-}
if [ -z "$KEYGEN" ]; then
    for c in "$TESTENV_DIR/../tests/bench_keygen" "$SCMFLOW_BIN_DIR/bench_keygen"; do
        [ -x "$c" ] && { KEYGEN=$c; break; }
    done
fi
export SCMCTL_TIMEOUT=300s

e2e_setup
e2e_sim --issue-after-polls 0 --record-max 1000
e2e_workers
e2e_account
e2e_ctl "$E2E_DIR/sync.out" sync --quiet
echo "bench_e2e: N=$N per key type, $E2E_REPLICAS replicas per worker, keystore $KS, $(nproc) CPUs" >&2

# The raw ceiling first, while nothing else runs.
declare -A CEIL
if [ -n "$KEYGEN" ]; then
    "$KEYGEN" 2 > "$E2E_DIR/keygen.out" 2>&1 || true
    CEIL[EC:256]=$(awk '/keygen\+csr EC-256 +threads=2/ {sub("/s", "", $4); print $4}' "$E2E_DIR/keygen.out")
    CEIL[RSA:2048]=$(awk '/keygen\+csr RSA-2048 +threads=2/ {sub("/s", "", $4); print $4}' "$E2E_DIR/keygen.out")
fi

: > "$E2E_DIR/results.tsv"
for kt in $KEYS; do
    alg=${kt%%:*} size=${kt##*:} tag=$(echo "$kt" | tr 'A-Z:' 'a-z-')
    pw=; [ "$KS" != PEM ] && pw=bench-keystore-pw
    # N commands, "key<TAB>event" per line, one kcat run.
    now=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
    for ((i = 1; i <= N; i++)); do
        printf '%s\t{"specversion":"1.0","id":"%s-%d","source":"urn:bench","type":"scmflow.order.enroll","time":"%s","datacontenttype":"application/json","data":%s}\n' \
            "b-$tag-$i" "cmd-$tag" "$i" "$now" "$(e2e_enroll_json "b-$tag-$i" "b$i-$tag.acme.example" "$alg" "$size" "$KS" "$pw")"
    done > "$E2E_DIR/cmds-$tag.txt"
    t0=$(date +%s)
    kcat -P -b "$SCMFLOW_KAFKA_BROKERS" -t "${SCMFLOW_TOPIC_PREFIX}order.commands" -K $'\t' \
        -l "$E2E_DIR/cmds-$tag.txt" 2>>"$E2E_DIR/kcat.log" || e2e_fail "publishing the commands"
    # RSA keys cost ~150 ms of CPU each: the deadline scales with N.
    # Fail when nothing is stored for BENCH_E2E_STALL_S (default 300 s) or
    # after BENCH_E2E_MAX_S in all (default 3 h): RSA keys cost ~150 ms of
    # CPU each, so the total time depends on N and on the machine.
    stall=${BENCH_E2E_STALL_S:-300}
    deadline=$(( $(date +%s) + ${BENCH_E2E_MAX_S:-10800} ))
    progress_at=$(date +%s)
    last=-1
    while :; do
        done_n=$(e2e_sql "select count(*) from orders where id like 'b-$tag-%' and state = 'stored'")
        [ "$done_n" = "$N" ] && break
        bad=$(e2e_sql "select count(*) from orders where id like 'b-$tag-%' and state in ('rejected','failed')")
        [ "$bad" = 0 ] || e2e_fail "$bad orders rejected/failed: $(e2e_sql "select id, last_error from orders where id like 'b-$tag-%' and state in ('rejected','failed') limit 3")"
        [ "$(date +%s)" -lt $deadline ] || e2e_fail "$kt: only $done_n of $N stored before the deadline"
        [ $(( $(date +%s) - progress_at )) -lt "$stall" ] || e2e_fail "$kt: stuck at $done_n of $N for ${stall}s"
        if [ "$done_n" != "$last" ]; then
            progress_at=$(date +%s)
            printf 'bench_e2e: %s %d/%d stored (%ds)\n' "$kt" "$done_n" "$N" $(( $(date +%s) - t0 )) >&2
            last=$done_n
        fi
        e2e_workers_alive
        sleep 5
    done
    printf '%s\t%s\t%s\n' "$kt" "$tag" "${CEIL[$kt]:-}" >> "$E2E_DIR/results.tsv"
done

# Peak RSS before stopping the workers.
e2e_peak_rss > "$E2E_DIR/rss.txt"
e2e_events "$E2E_DIR/events.jsonl"

python3 - "$E2E_DIR" "$N" "$E2E_REPLICAS" "$KS" <<'PY'
import json, sys, datetime as dt
d, n, repl, ks = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def ts(s):
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
ev = {}
for line in open(f"{d}/events.jsonl"):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    oid = (e.get("data") or {}).get("order_id")
    if oid and oid.startswith("b-"):
        t = e["type"]
        if t == "order.status_changed":
            t += ":" + str(e["data"].get("status"))
        ev.setdefault(oid, {}).setdefault(t, ts(e["time"]))
def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]
print()
print(f"end-to-end: {n} orders per key type, {repl} replicas per worker, {ks} keystore, scm-sim issuing at enroll")
hdr = ("key", "orders", "wall s", "orders/s", "keygen/s", "ratio",
       "p50 s", "p90 s", "p99 s", "max s", "acc->stored p50", "p99")
fmt = "{:<9} {:>6} {:>7} {:>8} {:>9} {:>6} {:>7} {:>7} {:>7} {:>7} {:>15} {:>7}"
print(fmt.format(*hdr))
for row in open(f"{d}/results.tsv"):
    kt, tag, ceil = (row.rstrip("\n").split("\t") + [""])[:3]
    cmd_t = {}
    for l in open(f"{d}/cmds-{tag}.txt"):
        k, js = l.split("\t", 1)
        cmd_t[k] = ts(json.loads(js)["time"])
    lat, acc, stored = [], [], []
    for k, t0 in cmd_t.items():
        e = ev.get(k, {})
        if "certificate.stored" in e:
            s = e["certificate.stored"]
            stored.append(s)
            lat.append(s - t0)
            if "order.accepted" in e:
                acc.append(s - e["order.accepted"])
    if not lat:
        print(f"{kt:<9} no certificate.stored events")
        continue
    wall = max(stored) - min(cmd_t.values())
    rate = len(lat) / wall if wall > 0 else 0
    ratio = f"{rate / float(ceil):.2f}" if ceil else "-"
    print(fmt.format(kt.replace(":", " "), len(lat), f"{wall:.1f}", f"{rate:.1f}", ceil or "-", ratio,
                     f"{pct(lat, 50):.2f}", f"{pct(lat, 90):.2f}", f"{pct(lat, 99):.2f}", f"{max(lat):.2f}",
                     f"{pct(acc, 50):.2f}" if acc else "-", f"{pct(acc, 99):.2f}" if acc else "-"))
print("(latency = command time -> certificate.stored time; all N commands are published at once,")
print(" so it includes queueing; acc->stored = order.accepted -> certificate.stored)")
# Where the time goes: each stage's p50 / p99 in seconds, per key type.
stages = [("command", None), ("order.accepted", "consume+validate"), ("order.submitted", "keygen+enroll"),
          ("order.status_changed:Issued", "status poll"), ("certificate.stored", "collect+ingest")]
print()
print("stage p50/p99 s   " + "  ".join(f"{label:>18}" for _, label in stages[1:]))
for row in open(f"{d}/results.tsv"):
    kt, tag = row.rstrip("\n").split("\t")[:2]
    cols = []
    per = {name: [] for name, _ in stages[1:]}
    for l in open(f"{d}/cmds-{tag}.txt"):
        k, js = l.split("\t", 1)
        prev = ts(json.loads(js)["time"])
        e = ev.get(k, {})
        for name, _ in stages[1:]:
            if name not in e:
                break
            per[name].append(e[name] - prev)
            prev = e[name]
    for name, _ in stages[1:]:
        v = per[name]
        cols.append(f"{pct(v, 50):.2f}/{pct(v, 99):.2f}" if v else "-")
    print(f"{kt.replace(':', ' '):<17} " + "  ".join(f"{c:>18}" for c in cols))
print()
print("peak RSS (VmHWM) per worker replica:")
for l in open(f"{d}/rss.txt"):
    k, kb = l.split()
    print(f"  {k:<20} {int(kb) / 1024:7.1f} MB")
PY
e2e_consistency
echo "bench_e2e: consistent ($E2E_N_ENROLLMENTS SCM enrollments = orders)" >&2
