#!/usr/bin/env bash
# demo.sh - the first README command: the whole certificate lifecycle on one
# machine, no Docker, no SCM account.
#
#   deploy/dev/demo.sh [--no-deps] [--no-build] [--cn NAME] [--keystore PKCS12|JKS|PEM]
#                      [--key EC|RSA] [--timeout SECONDS]
#   deploy/dev/demo.sh --down          stop everything (= deploy/dev/stack.sh down)
#
# Steps: install the missing Debian packages (install-deps.sh), build a
# release build in build/ (no sanitizers), start PostgreSQL, the dev Kafka
# broker, the SCM simulator (seed deploy/scm-sim/seed-demo.json, customer
# acme-demo) and the four workers in the background (deploy/dev/stack.sh,
# state in .dev/, logs in .dev/logs/), set the SCM account, sync the catalog,
# import the simulator's existing orders, order a certificate with a PKCS#12
# keystore, wait until it is in the repository, show it and export the
# keystore to .dev/exports/<cn>.p12. Run again, it reuses what runs and
# places a new order. Every step prints its duration; a failing step prints
# the end of its log and the log files to read.
#
# Environment: SCMFLOW_BUILD_DIR (default <repo>/build), SCMFLOW_DEV_DIR
# (default <repo>/.dev), JOBS (build parallelism, default 2).
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
build=${SCMFLOW_BUILD_DIR:-$src/build}
dev=${SCMFLOW_DEV_DIR:-$src/.dev}

# The demo seed's account (deploy/scm-sim/README.md "Credentials").
DEMO_ACCOUNT=demo
DEMO_LOGIN=scmflow_api
DEMO_CUSTOMER=acme-demo
DEMO_PASSWORD=Demo-Passw0rd-2025
DEMO_ORG=3001          # ACME Corporation
DEMO_PROFILE=601       # ACME OV SSL: RSA 2048-4096, EC P-256/P-384, 365/730 days

no_deps=0 no_build=0 cn=www.acme.example keystore=PKCS12 key=EC timeout_s=180
usage() {
    if [ "${1:-2}" = 0 ]; then
        sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    else
        echo "usage: deploy/dev/demo.sh [--no-deps] [--no-build] [--cn NAME] [--keystore PKCS12|JKS|PEM] [--key EC|RSA] [--timeout S] | --down  (see --help)" >&2
    fi
    exit "${1:-2}"
}
while [ $# -gt 0 ]; do
    case $1 in
        --no-deps) no_deps=1; shift ;;
        --no-build) no_build=1; shift ;;
        --cn) [ $# -ge 2 ] || usage; cn=$2; shift 2 ;;
        --keystore) [ $# -ge 2 ] || usage; keystore=$2; shift 2 ;;
        --key) [ $# -ge 2 ] || usage; key=$2; shift 2 ;;
        --timeout) [ $# -ge 2 ] || usage; timeout_s=$2; shift 2 ;;
        --down) exec "$src/deploy/dev/stack.sh" down --dir "$dev" ;;
        -h|--help) usage 0 ;;
        *) echo "demo.sh: unknown option $1" >&2; usage 2 ;;
    esac
done
case $keystore in PKCS12) ext=p12 fmt=p12 ;; JKS) ext=jks fmt=jks ;; PEM) ext=pem fmt=pem ;;
    *) echo "demo.sh: --keystore PKCS12|JKS|PEM" >&2; exit 2 ;; esac
case $key in EC) key_size=256 ;; RSA) key_size=2048 ;;
    *) echo "demo.sh: --key EC|RSA" >&2; exit 2 ;; esac

mkdir -p "$dev/logs" "$dev/exports"
dev=$(cd "$dev" && pwd)

# ---- output helpers ------------------------------------------------------

if [ -t 1 ]; then B=$'\e[1m' G=$'\e[32m' R=$'\e[31m' D=$'\e[2m' N=$'\e[0m'; else B= G= R= D= N=; fi
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
secs() { local ms=$1; printf '%d.%ds' $((ms / 1000)) $(((ms % 1000) / 100)); }
t_start=$(now_ms)
step_no=0
STEP_LOG=

# step TITLE CMD...: run CMD with its output in .dev/logs/demo-NN-<slug>.log;
# print the title, "ok" and the duration, or FAILED, the end of the log and
# which files to read, and exit 1.
step() {
    local title=$1 slug t0 rc=0; shift
    step_no=$((step_no + 1))
    slug=$(printf '%s' "$title" | tr 'A-Z' 'a-z' | tr -cs 'a-z0-9' '-' | sed 's/-*$//' | cut -c1-40)
    STEP_LOG=$dev/logs/demo-$(printf %02d $step_no)-$slug.log
    printf '%s[%2d]%s %-58s ' "$B" "$step_no" "$N" "$title"
    t0=$(now_ms)
    "$@" > "$STEP_LOG" 2>&1 || rc=$?
    if [ $rc = 0 ]; then
        printf '%sok%s   %s\n' "$G" "$N" "$(secs $(( $(now_ms) - t0 )))"
    else
        printf '%sFAILED%s (exit %d after %s)\n\n' "$R" "$N" "$rc" "$(secs $(( $(now_ms) - t0 )))"
        tail -n 30 "$STEP_LOG" | sed 's/^/    /'
        echo
        echo "${R}demo.sh: step $step_no \"$title\" failed.${N} Its full output: $STEP_LOG"
        echo "Service logs: $dev/logs/{kafka,sim,catalog-sync,order-submitter,status-poller,repo-ingest}.log"
        [ -d "$dev/pg" ] && echo "PostgreSQL log: $dev/pg/log"
        exit 1
    fi
}
# show: print the last step's output, indented.
show() { sed 's/^/      /' "$STEP_LOG"; }
show_tail() { tail -n "$1" "$STEP_LOG" | sed 's/^/      /'; }

# ---- the steps -----------------------------------------------------------

echo "${B}scmflow demo${N}  (repo $src, state $dev)"

if [ $no_deps = 0 ]; then
    step "Install missing Debian packages" "$src/deploy/dev/install-deps.sh"
    show_tail 1
fi

do_build() {
    cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DSCMFLOW_SANITIZE=OFF || return
    cmake --build "$build" -j "${JOBS:-2}" --target scmctl catalog-sync order-submitter \
        status-poller repo-ingest scm-sim kafka-devbroker
}
if [ $no_build = 0 ]; then
    step "Build (release, $build)" do_build
fi
for b in services/scmctl/scmctl deploy/scm-sim/scm-sim deploy/kafka-devbroker/kafka-devbroker; do
    [ -x "$build/$b" ] || { echo "${R}demo.sh: $build/$b is missing (build failed?)${N}" >&2; exit 1; }
done
for w in catalog-sync order-submitter status-poller repo-ingest; do
    [ -x "$build/services/$w/$w" ] || echo "${R}demo.sh: warning: $build/services/$w/$w is missing: the demo cannot finish${N}" >&2
done
SCMCTL=$build/services/scmctl/scmctl

step "Start PostgreSQL, Kafka, scm-sim and the 4 workers" \
    env SCMFLOW_BUILD_DIR="$build" SCM_SIM_SEED="$src/deploy/scm-sim/seed-demo.json" \
    "$src/deploy/dev/stack.sh" up --dir "$dev"
show
# shellcheck disable=SC1091
. "$dev/env"
export SCMCTL_TIMEOUT=${SCMCTL_TIMEOUT:-120s}

# The account: the password goes through stdin, never argv.
set_account() {
    printf '%s\n' "$DEMO_PASSWORD" | "$SCMCTL" account set --name "$DEMO_ACCOUNT" --login "$DEMO_LOGIN" \
        --customer-uri "$DEMO_CUSTOMER" --base-url "$SCMFLOW_SCM_BASE_URL" --password-stdin --default || return
    "$SCMCTL" account show --account "$DEMO_ACCOUNT"
}
step "Set the SCM account ($DEMO_LOGIN @ $DEMO_CUSTOMER)" set_account
show_tail 8

step "Sync the catalog (scmctl sync)" "$SCMCTL" sync --quiet
show_tail 3

step "Import the existing SCM orders (scmctl import)" "$SCMCTL" import --quiet
show_tail 3

# A fresh order every run. The keystore password is random and kept beside
# the export (0600) so that the exported keystore can be opened.
order_id=demo-$(date +%Y%m%d-%H%M%S)-$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')
out_base=$dev/exports/$cn
out_base=${out_base//\*/wildcard}
pwfile=$out_base.$ext.password
if [ "$keystore" != PEM ]; then
    (umask 077 && od -An -N12 -tx1 /dev/urandom | tr -d ' \n' > "$pwfile")
    pwopt=(--keystore-password-file "$pwfile")
else
    pwopt=()
fi
# SANs: the name itself and, for www.X / *.X, the bare X as well.
sans=(--san "$cn")
san_base=${cn#www.}; san_base=${san_base#\*.}
[ "$san_base" != "$cn" ] && sans+=(--san "$san_base")
step "Order $cn ($key $key_size, $keystore keystore)" \
    "$SCMCTL" order create --order-id "$order_id" --cn "$cn" "${sans[@]}" \
    --org "$DEMO_ORG" --profile "$DEMO_PROFILE" --term 365 --key "$key" --key-size "$key_size" \
    --keystore "$keystore" "${pwopt[@]}" --custom "Cost Center=CC-4711" --comments "scmflow demo order" --requester "pki-team@acme.example" --quiet
show

psql_q() { psql "$SCMFLOW_DATABASE_URL" -XAtq -v ON_ERROR_STOP=1 -v oid="$order_id" "$@"; }
cert_id=
wait_stored() {
    local deadline=$(( $(now_ms) + timeout_s * 1000 )) state= last= id
    while :; do
        id=$(psql_q <<<"SELECT id FROM certificates WHERE order_id = :'oid' AND status = 'active' ORDER BY id DESC LIMIT 1")
        state=$(psql_q <<<"SELECT state || ' (SCM: ' || coalesce(scm_status, '-') || ')' FROM orders WHERE id = :'oid'")
        [ "$state" != "$last" ] && { echo "order $order_id: $state"; last=$state; }
        if [ -n "$id" ]; then cert_id=$id; echo "certificate $id in the repository"; return 0; fi
        case $state in
            failed*|rejected*|revoked*|not_stored*)
                echo "the order ended in state $state:"
                psql_q <<<"SELECT last_error, attention_reason FROM orders WHERE id = :'oid'"
                return 1 ;;
        esac
        if [ "$(now_ms)" -ge $deadline ]; then
            echo "timeout after ${timeout_s}s; the order is $state (see status-poller.log, repo-ingest.log)"
            return 1
        fi
        sleep 0.5
    done
}
step "Wait until SCM issued it and it is in the repository" wait_stored
show
# wait_stored ran in the step's shell: read the id again here.
cert_id=$(psql_q <<<"SELECT id FROM certificates WHERE order_id = :'oid' AND status = 'active' ORDER BY id DESC LIMIT 1")

step "Certificate details (scmctl cert show $cert_id)" "$SCMCTL" cert show "$cert_id"
# Details without the PEM blocks, which are long.
sed -n '/-----BEGIN/q;/^ *$/d;p' "$STEP_LOG" | sed 's/^/      /'

export_file=$out_base.$ext
rm -f "$export_file"
step "Export the keystore (scmctl cert export --format $fmt)" \
    "$SCMCTL" cert export "$cert_id" --format "$fmt" --out "$export_file" ${pwopt:+--password-file "$pwfile"}
show_tail 3

inspect() {
    case $keystore in
        PKCS12)
            if command -v keytool >/dev/null; then
                keytool -list -v -storetype PKCS12 -keystore "$export_file" -storepass:file "$pwfile" |
                    sed '/^Certificate\[2\]/q' | grep -E '^(Keystore type|Your keystore|Alias name|Entry type|Certificate chain length|Owner|Issuer|Serial number|Valid from|Signature algorithm name|Subject Public Key)' || return
            else
                openssl pkcs12 -info -nokeys -in "$export_file" -passin "file:$pwfile" || return
            fi ;;
        JKS) keytool -list -storetype JKS -keystore "$export_file" -storepass:file "$pwfile" || return ;;
        PEM) openssl x509 -in "$export_file" -noout -subject -issuer -serial -enddate || return ;;
    esac
    # The keystore's leaf must be the repository's certificate.
    echo "chain check:"
    local chain
    chain=$(psql_q <<<"SELECT chain_pem FROM certificates WHERE id = $cert_id") || return
    openssl verify -CAfile <(awk 'f {print} /-----END CERTIFICATE-----/ {f = 1}' <<<"$chain") \
        <(awk '{print} /-----END CERTIFICATE-----/ {exit}' <<<"$chain") | sed 's|^/dev/fd/[0-9]*|leaf|'
    return "${PIPESTATUS[0]}"
}
step "Inspect the keystore" inspect
show

echo
echo "${B}Done in $(secs $(( $(now_ms) - t_start )))${N}. Order $order_id, certificate $cert_id:"
echo "  keystore      $export_file"
[ "$keystore" != PEM ] && echo "  its password  $pwfile"
cat <<MSG

Try it yourself:
  . $dev/env
  $SCMCTL cert list
  $SCMCTL order renew $order_id
  $SCMCTL order revoke $order_id --reason-code 4 --reason "superseded"
  kcat -C -b \$SCMFLOW_KAFKA_BROKERS -t \${SCMFLOW_TOPIC_PREFIX}events -o beginning -e
Guide: deploy/USER-GUIDE.md    Logs: $dev/logs/    Stop: deploy/dev/demo.sh --down
MSG
