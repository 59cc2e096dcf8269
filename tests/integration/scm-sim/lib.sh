# Helpers for the scm-sim integration tests (bash). Source it; needs SCM_SIM
# (the binary) and SCMFLOW_SOURCE_DIR in the environment (set by
# tests/cmake/70-scm-sim.cmake). Each test starts its own simulator on a free
# port (--listen 127.0.0.1:0 --port-file) and stops it on exit.
set -u
SEED=${SEED:-$SCMFLOW_SOURCE_DIR/deploy/scm-sim/seed-test.json}
LOGIN=api_admin
PASS='Test-Passw0rd!'
CURI=scmflow-test
T=$(mktemp -d "${TMPDIR:-/tmp}/scm-sim-test.XXXXXX")
SIM_PID=
# Deadlines (seconds): starting the simulator, one HTTP call. Raised by
# test_valgrind.sh, where everything runs ~20x slower.
SIM_START_TIMEOUT_S=${SIM_START_TIMEOUT_S:-30}
CALL_TIMEOUT_S=${CALL_TIMEOUT_S:-20}
FAILS=0
CHECKS=0

cleanup() {
    if [ -n "$SIM_PID" ]; then
        kill -TERM "$SIM_PID" 2>/dev/null
        wait "$SIM_PID" 2>/dev/null
    fi
    rm -rf "$T"
}
trap cleanup EXIT

die() { echo "FAIL: $*" >&2; [ -f "$T/sim.err" ] && tail -5 "$T/sim.err" >&2; exit 1; }

# wait_for TIMEOUT_S CMD...: poll every 50 ms until CMD succeeds.
wait_for() {
    local deadline=$(( $(date +%s%N) / 1000000 + $1 * 1000 )); shift
    until "$@" >/dev/null 2>&1; do
        [ $(( $(date +%s%N) / 1000000 )) -lt $deadline ] || return 1
        sleep 0.05
    done
}

# sim_start [extra args]: start scm-sim with $SEED; sets SIM_PORT, BASE, ADMIN, SCHEME.
sim_start() {
    rm -f "$T/port"
    "$SCM_SIM" --listen 127.0.0.1:0 --port-file "$T/port" --seed "$SEED" --ca-dir "$T/ca" "$@" \
        >"$T/sim.out" 2>"$T/sim.err" &
    SIM_PID=$!
    wait_for "$SIM_START_TIMEOUT_S" test -s "$T/port" || die "scm-sim did not write its port file"
    wait_for 10 grep -q "scm-sim listening on" "$T/sim.out" || die "no listening line"
    SIM_PORT=$(cat "$T/port")
    SCHEME=http
    grep -q "listening on https://" "$T/sim.out" && SCHEME=https
    BASE=$SCHEME://127.0.0.1:$SIM_PORT/api
    ADMIN=$SCHEME://127.0.0.1:$SIM_PORT/__sim
}

sim_stop() {
    kill -TERM "$SIM_PID" 2>/dev/null
    local rc=0
    wait "$SIM_PID" || rc=$?
    SIM_PID=
    [ $rc -eq 0 ] || die "scm-sim exited with $rc on SIGTERM"
}

# call METHOD PATH [JSON]: API call with the seed credentials; prints the
# status; body in $T/body, headers in $T/hdr.
CURL_EXTRA=()
call() {
    local m=$1 p=$2 d=${3-}
    local a=(-s --max-time "$CALL_TIMEOUT_S" -o "$T/body" -D "$T/hdr" -w '%{http_code}' -H "login: $LOGIN"
             -H "password: $PASS" -H "customerUri: $CURI" -H 'Content-Type: application/json'
             "${CURL_EXTRA[@]}")
    if [ "$m" = HEAD ]; then a+=(-I); else a+=(-X "$m"); fi
    [ -n "$d" ] && a+=(--data-binary "$d")
    curl "${a[@]}" "$BASE$p"
}

# admin METHOD PATH [JSON]: simulator admin API; body on stdout.
admin() {
    local m=$1 p=$2 d=${3-}
    if [ -n "$d" ]; then
        curl -s --max-time "$CALL_TIMEOUT_S" "${CURL_EXTRA[@]}" -X "$m" -H 'Content-Type: application/json' --data-binary "$d" "$ADMIN$p"
    else
        curl -s --max-time "$CALL_TIMEOUT_S" "${CURL_EXTRA[@]}" -X "$m" "$ADMIN$p"
    fi
}

header() { grep -i "^$1:" "$T/hdr" | head -1 | cut -d: -f2- | tr -d ' \r'; }
jbody() { jq -r "$1" "$T/body"; }

check() { # check DESC ACTUAL EXPECTED
    CHECKS=$((CHECKS + 1))
    if [ "$2" != "$3" ]; then
        echo "FAIL: $1: got '$2', want '$3'" >&2
        [ -f "$T/body" ] && echo "  body: $(head -c 300 "$T/body")" >&2
        FAILS=$((FAILS + 1))
    fi
}

# expect_err DESC STATUS CODE METHOD PATH [JSON]
expect_err() {
    local desc=$1 st=$2 code=$3; shift 3
    local got; got=$(call "$@")
    check "$desc (status)" "$got" "$st"
    check "$desc (code)" "$(jq -r .code "$T/body" 2>/dev/null)" "$code"
}

finish() {
    echo "$CHECKS checks, $FAILS failed"
    [ $FAILS -eq 0 ] || exit 1
}

# mkcsr NAME CN [KEYSPEC]: CSR at $T/NAME.csr (key $T/NAME.key); KEYSPEC like rsa:2048 or ec:P-256
mkcsr() {
    local n=$1 cn=$2 spec=${3:-rsa:2048}
    case $spec in
        rsa:*) openssl req -new -newkey "$spec" -nodes -keyout "$T/$n.key" -subj "/CN=$cn" -out "$T/$n.csr" 2>/dev/null ;;
        ec:*) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:"${spec#ec:}" -out "$T/$n.key" 2>/dev/null &&
              openssl req -new -key "$T/$n.key" -subj "/CN=$cn" -out "$T/$n.csr" 2>/dev/null ;;
    esac || die "could not make CSR $n"
}

# csr_json NAME: the CSR as a JSON string literal
csr_json() { jq -Rs . < "$T/$1.csr"; }

# enroll_body NAME ORG TYPE TERM [SANS] [EXTRA_JSON_FIELDS]
enroll_body() {
    local sans=${5-} extra=${6-}
    printf '{"orgId":%s,"certType":%s,"term":%s,"csr":%s%s%s}' "$2" "$3" "$4" "$(csr_json "$1")" \
        "${sans:+,\"subjAltNames\":\"$sans\"}" "${extra:+,$extra}"
}
