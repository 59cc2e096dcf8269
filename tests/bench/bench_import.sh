#!/bin/bash
# bench_import.sh - import of BENCH_IMPORT_CERTS (default 100000) existing
# orders from scm-sim through catalog-sync: prints seconds, orders/s and the
# worker's peak RSS (VmHWM). Targets: < 60 s, < 64 MB. Exits 1 when a
# target is missed or the import is incomplete.
# Needs the same environment as tests/integration/catalog (SCMCTL,
# CATALOG_SYNC, SCM_SIM_BIN, SCMFLOW_SOURCE_DIR, pg + kafka fixtures).
CT_NAME=benchimport
. "$SCMFLOW_SOURCE_DIR/tests/integration/catalog/lib.sh"
N=${BENCH_IMPORT_CERTS:-100000}
ct_setup
export SCMFLOW_LOG_LEVEL=warn
ct_sim --generate-certs "$N"
ct_account
ct_worker w1
worker=$CT_LAST_PID
total=$(curl -fsS "$CT_SIM_ADMIN/state" | jq .certificates)

start=$(date +%s%N)
out=$(timeout 600 "$SCMCTL" import --timeout 540s --json --quiet) || ct_fail "import: $out"
end=$(date +%s%N)
hwm_kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$worker/status")
orders=$(ct_sql "select count(*) from orders")
[ "$orders" = "$total" ] || ct_fail "imported $orders of $total"

secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
worker_secs=$(jq '.duration_ms / 1000' <<<"$out")
rate=$(awk -v n="$total" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')
mb=$(awk -v k="$hwm_kb" 'BEGIN { printf "%.1f", k / 1024 }')
echo "bench_import: $total orders in ${secs} s end to end (worker ${worker_secs} s), ${rate} orders/s, worker peak RSS ${mb} MB"
awk -v s="$secs" -v m="$mb" 'BEGIN { exit !(s < 60 && m < 64) }' || ct_fail "target missed (< 60 s, < 64 MB)"
