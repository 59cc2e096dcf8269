#!/usr/bin/env bash
# scm-sim over HTTPS: --tls-self-signed generates a CA + server cert; curl
# with --cacert works, without it fails; --tls-cert/--tls-key; --ca-dir reuse.
. "$(dirname "$0")/lib.sh"
sim_start --tls-self-signed "$T/tls"
check "https scheme" "$SCHEME" https
for f in ca.pem server.pem server.key; do check "generated $f" "$([ -s "$T/tls/$f" ] && echo yes)" yes; done
check "key file mode" "$(stat -c %a "$T/tls/server.key")" 600
rc=0; curl -s --max-time 10 -o /dev/null "$BASE/ssl/v1/types" || rc=$?
check "without the CA: verification fails (curl 60)" "$rc" 60
CURL_EXTRA=(--cacert "$T/tls/ca.pem")
check "with the CA" "$(call GET /ssl/v1/types)" 200
check "with the CA, bad password" "$(PASS=x call GET /ssl/v1/types)" 401
check "admin API over https" "$(admin GET /state | jq -r .customerUri)" scmflow-test
check "localhost name valid" "$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' --cacert "$T/tls/ca.pem" \
      -H "login: $LOGIN" -H "password: $PASS" -H "customerUri: $CURI" "https://localhost:$SIM_PORT/api/ssl/v1/types")" 200
mkcsr a tls.scmflow.test
check "enroll over https" "$(call POST /ssl/v1/enroll "$(enroll_body a 1001 501 365)")" 200
ROOT1=$(admin GET /ca/root.pem | sha256sum)
sim_stop

# explicit cert/key; same --ca-dir => same issuing root
CURL_EXTRA=()
sim_start --tls-cert "$T/tls/server.pem" --tls-key "$T/tls/server.key"
CURL_EXTRA=(--cacert "$T/tls/ca.pem")
check "--tls-cert/--tls-key" "$(call GET /organization/v1)" 200
check "--ca-dir reused" "$(admin GET /ca/root.pem | sha256sum)" "$ROOT1"
sim_stop

# plain http still fine; bad options rejected
CURL_EXTRA=()
rc=0; "$SCM_SIM" --seed "$SEED" --tls-cert "$T/tls/server.pem" >/dev/null 2>&1 || rc=$?
check "--tls-cert without key => exit 2" "$rc" 2
rc=0; "$SCM_SIM" --listen 127.0.0.1:0 >/dev/null 2>&1 || rc=$?
check "no --seed => exit 2" "$rc" 2
check "--help exit 0" "$("$SCM_SIM" --help >/dev/null; echo $?)" 0
finish
