#!/usr/bin/env bash
# scm-sim API behaviour: auth, enroll + validation codes, status progression,
# collect formats (chain order, openssl verify, key match), list/count,
# renew/replace/revoke/approve, admin endpoints, request record.
. "$(dirname "$0")/lib.sh"
sim_start

# --- auth
check "bad password" "$(PASS=wrong call GET /organization/v1)" 401
check "bad password code" "$(jbody .code)" -16
check "bad customerUri" "$(CURI=nope call GET /organization/v1)" 401
check "unknown login" "$(LOGIN=nobody call GET /organization/v1)" 401
check "good credentials" "$(call GET /organization/v1)" 200
check "orgs" "$(jbody '[.[].id]|join(",")')" "1001,1002,1003"
check "departments" "$(jbody '.[0].departments[0].id')" 1011
check "content type" "$(header Content-Type)" "application/json;charset=UTF-8"
# /private/api: no password needed (client-cert variant)
check "private api" "$(curl -s -o /dev/null -w '%{http_code}' -H "login: $LOGIN" -H "customerUri: $CURI" \
      "${BASE%/api}/private/api/ssl/v1/types")" 200
check "unknown path" "$(call GET /nothing/v1)" 404
check "unknown path json" "$(jbody .code)" -1

# --- catalog reads
check "org details" "$(call GET /organization/v1/1011)" 200
check "dept parent" "$(jbody .parentId)" 1001
check "domains page" "$(call GET '/domain/v1?size=3&position=1')" 200
check "domains total" "$(header X-Total-Count)" 8
check "domains page len" "$(jbody length)" 3
check "domains first" "$(jbody '.[0].name')" nowild.test
check "domains size>200" "$(call GET '/domain/v1?size=201')" 400
check "domain filter org" "$(call GET '/domain/v1?orgId=1002' >/dev/null; jbody '[.[].name]|join(",")')" other.test
check "domain details" "$(call GET /domain/v1/2001)" 200
check "domain validation" "$(jbody .validationStatus)" VALIDATED
check "domain dcvExpiration" "$(jbody .dcvExpiration)" 2099-12-31
check "domain delegation privs" "$(jbody '.delegations[0].domainCertificateRequestPrivileges|length')" 4
check "types" "$(call GET /ssl/v1/types)" 200
check "types count" "$(jbody length)" 6
check "types EC keys" "$(jbody '.[0].keyTypes.EC|join(",")')" "P-256,P-384"
check "types for org 1001" "$(call GET '/ssl/v1/types?organizationId=1001' >/dev/null; jbody 'map(.id)|index(505)')" null
check "types for org 1002" "$(call GET '/ssl/v1/types?organizationId=1002' >/dev/null; jbody 'map(.id)|index(505) != null')" true
check "custom fields" "$(call GET /ssl/v1/customFields >/dev/null; jbody '.[0].mandatory')" true
check "admins by login" "$(call GET "/admin/v1?login=$LOGIN" >/dev/null; jbody '.[0].id')" 1
check "admin details role" "$(call GET /admin/v1/1 >/dev/null; jbody '.credentials[0].role')" MRAO
check "admin no password" "$(jbody 'has("password")')" false
check "roles MRAO" "$(call GET /admin/v1/roles >/dev/null; jbody 'index("MRAO") != null')" true
check "ca-backend MRAO" "$(call GET /ca-backend/v1)" 200
check "ca-backend DRAO" "$(LOGIN=drao_user PASS='Drao-Passw0rd!' call GET /ca-backend/v1)" 403
check "ca-backend DRAO code" "$(jbody .code)" -3

# --- enroll happy path + progression
mkcsr app app.scmflow.test rsa:2048
B=$(enroll_body app 1011 501 365 "app.scmflow.test, api.scmflow.test" '"comments":"cmd-0001","externalRequester":"ops@scmflow.test"')
check "enroll" "$(call POST /ssl/v1/enroll "$B")" 200
ID=$(jbody .sslId)
check "renewId length" "$(jbody '.renewId|length')" 20
check "collect before issue (pending)" "$(call GET /ssl/v1/collect/$ID/x509)" 400
check "pending code" "$(jbody .code)" 0
check "pending text" "$(jbody .description)" "Being processed by Sectigo"
check "details after 1 poll" "$(call GET /ssl/v1/$ID >/dev/null; jbody .status)" Issued
check "details dates" "$(jbody '.requested|test("^[0-9]{2}/[0-9]{2}/[0-9]{4}$")')" true
check "details sans" "$(jbody '.subjectAlternativeNames|join(",")')" "app.scmflow.test,api.scmflow.test"
check "details keyType" "$(jbody .keyType)" "RSA - 2048"
check "details serial colon hex" "$(jbody '.serialNumber|test("^([0-9A-F]{2}:)+[0-9A-F]{2}$")')" true
check "details certificateDetails.sans" "$(jbody .certificateDetails.subjectAltNames)" \
      "dNSName=app.scmflow.test, dNSName=api.scmflow.test"
SERIAL=$(jbody .serialNumber)

# --- collect in every format
curl -s "$ADMIN/ca/root.pem" > "$T/root.pem"
curl -s "$ADMIN/ca/intermediate.pem" > "$T/int.pem"
order_of() { # prints e.g. RIL for a PEM bundle
    awk -v d="$T/split" 'BEGIN{n=0} /BEGIN CERT/{n++; f=sprintf("%s.%d",d,n)} n>0{print > f}' "$1"
    local out="" i=1
    while [ -f "$T/split.$i" ]; do
        local s; s=$(openssl x509 -in "$T/split.$i" -noout -subject)
        case $s in *"Root CA"*) out+=R ;; *"Secure Server CA"*) out+=I ;; *) out+=L ;; esac
        rm -f "$T/split.$i"; i=$((i + 1))
    done
    echo "$out"
}
for pair in x509:RIL x509CO:L x509IO:RI x509IOR:IR x509R:LIR pem:RIL pemco:L pemia:LIR; do
    f=${pair%%:*}
    check "collect $f" "$(call GET /ssl/v1/collect/$ID/$f)" 200
    check "collect $f order" "$(order_of "$T/body")" "${pair#*:}"
    check "collect $f disposition" "$(header Content-Disposition | grep -c attachment)" 1
done
check "collect ?format=pemco" "$(call GET "/ssl/v1/collect/$ID?format=pemco")" 200
cp "$T/body" "$T/leaf.pem"
check "leaf verifies" "$(openssl verify -CAfile "$T/root.pem" -untrusted "$T/int.pem" "$T/leaf.pem" 2>&1)" "$T/leaf.pem: OK"
check "leaf key = CSR key" "$(openssl x509 -in "$T/leaf.pem" -noout -pubkey | sha256sum)" \
      "$(openssl req -in "$T/app.csr" -noout -pubkey | sha256sum)"
check "leaf SAN" "$(openssl x509 -in "$T/leaf.pem" -noout -ext subjectAltName | tail -1 | tr -d ' ')" \
      "DNS:app.scmflow.test,DNS:api.scmflow.test"
check "leaf serial" "$(openssl x509 -in "$T/leaf.pem" -noout -serial | cut -d= -f2)" "$(echo "$SERIAL" | tr -d :)"
check "collect base64 (default)" "$(call GET /ssl/v1/collect/$ID)" 200
check "base64 is PKCS7" "$(openssl pkcs7 -in "$T/body" -print_certs -noout | grep -c subject=)" 3
check "collect bin" "$(call GET /ssl/v1/collect/$ID/bin)" 200
check "bin is DER PKCS7" "$(openssl pkcs7 -inform DER -in "$T/body" -print_certs -noout | grep -c subject=)" 3
expect_err "unknown format" 400 -126 GET /ssl/v1/collect/$ID/zip
expect_err "unknown id details" 404 -5101 GET /ssl/v1/999999
expect_err "unknown id collect" 404 -5101 GET /ssl/v1/collect/999999/x509

# --- EC enroll
mkcsr ec ec.scmflow.test ec:P-384
check "enroll EC" "$(call POST /ssl/v1/enroll "$(enroll_body ec 1001 501 730)")" 200
ECID=$(jbody .sslId)
call GET /ssl/v1/$ECID >/dev/null
check "EC keyType" "$(call GET /ssl/v1/$ECID >/dev/null; jbody .keyType)" "EC - P-384"
check "EC collect" "$(call GET /ssl/v1/collect/$ECID/pemco)" 200
check "EC leaf verifies" "$(openssl verify -CAfile "$T/root.pem" -untrusted "$T/int.pem" "$T/body" 2>&1 | grep -c ': OK')" 1
check "wildcard ok" "$(mkcsr w '*.scmflow.test'; call POST /ssl/v1/enroll "$(enroll_body w 1001 501 365)")" 200

# --- validation error codes
mkcsr ok ok.scmflow.test
expect_err "body not JSON" 400 -1002 POST /ssl/v1/enroll 'nope'
expect_err "SANs as array" 400 -1002 POST /ssl/v1/enroll \
    "$(printf '{"orgId":1001,"certType":501,"term":365,"csr":%s,"subjAltNames":["a.scmflow.test"]}' "$(csr_json ok)")"
expect_err "orgId missing" 400 -7 POST /ssl/v1/enroll "$(printf '{"certType":501,"term":365,"csr":%s}' "$(csr_json ok)")"
expect_err "orgId unknown" 400 -639 POST /ssl/v1/enroll "$(enroll_body ok 4242 501 365)"
expect_err "org without SSL" 400 -1021 POST /ssl/v1/enroll "$(enroll_body ok 1003 501 365)"
expect_err "certType unknown" 400 -111 POST /ssl/v1/enroll "$(enroll_body ok 1001 777 365)"
expect_err "certType missing" 400 -39 POST /ssl/v1/enroll "$(printf '{"orgId":1001,"term":365,"csr":%s}' "$(csr_json ok)")"
expect_err "profile not for org" 400 -39 POST /ssl/v1/enroll "$(enroll_body ok 1001 505 365)"
expect_err "term not in profile" 400 -36 POST /ssl/v1/enroll "$(enroll_body ok 1001 501 400)"
LONG=$(head -c 1025 /dev/zero | tr '\0' x)
expect_err "comments > 1024" 400 -1601 POST /ssl/v1/enroll "$(enroll_body ok 1001 501 365 "" "\"comments\":\"$LONG\"")"
expect_err "externalRequester > 512" 400 -1601 POST /ssl/v1/enroll \
    "$(enroll_body ok 1001 501 365 "" "\"externalRequester\":\"${LONG:0:513}\"")"
check "comments = 1024 ok" "$(call POST /ssl/v1/enroll "$(enroll_body ok 1001 501 365 "" "\"comments\":\"${LONG:0:1024}\"")")" 200
expect_err "csr missing" 400 -7 POST /ssl/v1/enroll '{"orgId":1001,"certType":501,"term":365}'
expect_err "csr bad chars" 400 -9 POST /ssl/v1/enroll '{"orgId":1001,"certType":501,"term":365,"csr":"abc$%^"}'
expect_err "csr garbage" 400 -10 POST /ssl/v1/enroll '{"orgId":1001,"certType":501,"term":365,"csr":"QUJDRA=="}'
# flip one signature byte near the end of the DER => signature check fails
openssl req -in "$T/ok.csr" -outform DER -out "$T/ok.der"
python3 - "$T/ok.der" "$T/bad.csr" <<'PY'
import sys, base64
d = bytearray(open(sys.argv[1], 'rb').read()); d[-5] ^= 0x55
open(sys.argv[2], 'w').write("-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(bytes(d)).decode() + "-----END CERTIFICATE REQUEST-----\n")
PY
expect_err "csr bad signature" 400 -138 POST /ssl/v1/enroll "$(enroll_body bad 1001 501 365)"
mkcsr rsa1k small.scmflow.test rsa:1024
expect_err "RSA size not allowed" 400 -13 POST /ssl/v1/enroll "$(enroll_body rsa1k 1001 501 365)"
expect_err "RSA on EC-only profile" 400 -11 POST /ssl/v1/enroll "$(enroll_body ok 1001 506 365)"
mkcsr ec256 e.scmflow.test ec:P-256
expect_err "EC on RSA-only profile" 400 -170 POST /ssl/v1/enroll "$(enroll_body ec256 1001 502 365)"
mkcsr ec521 e.scmflow.test ec:P-521
expect_err "EC curve not allowed" 400 -194 POST /ssl/v1/enroll "$(enroll_body ec521 1001 501 365)"
expect_err "mandatory custom field" 400 -62 POST /ssl/v1/enroll "$(enroll_body ok 1001 504 365)"
check "custom field given" "$(call POST /ssl/v1/enroll "$(enroll_body ok 1001 504 365 "" '"customFields":[{"name":"Cost Center","value":"CC-1"}]')")" 200
expect_err "unknown custom field" 400 -135 POST /ssl/v1/enroll "$(enroll_body ok 1001 501 365 "" '"customFields":[{"name":"Nope","value":"x"}]')"
expect_err "name under no domain" 400 -1010 POST /ssl/v1/enroll "$(enroll_body ok 1001 501 365 "www.example.org")"
expect_err "domain not delegated to org" 400 -1010 POST /ssl/v1/enroll "$(enroll_body ok 1001 501 365 "x.other.test")"
expect_err "domain SMIME only" 400 -1010 POST /ssl/v1/enroll "$(enroll_body ok 1001 501 365 "x.smimeonly.test")"
expect_err "not validated" 400 -737 POST /ssl/v1/enroll "$(enroll_body ok 1001 501 365 "x.unvalidated.test")"
expect_err "validation expired" 400 -107 POST /ssl/v1/enroll "$(enroll_body ok 1001 501 365 "x.expired.test")"
expect_err "dcvExpiration past" 400 -107 POST /ssl/v1/enroll "$(enroll_body ok 1001 501 365 "x.stale.test")"
expect_err "suspended domain" 400 -715 POST /ssl/v1/enroll "$(enroll_body ok 1001 501 365 "x.suspended.test")"
mkcsr nw '*.nowild.test'
expect_err "wildcard without privilege" 400 -1010 POST /ssl/v1/enroll "$(enroll_body nw 1001 501 365)"
LOGIN=drao_user PASS='Drao-Passw0rd!' expect_err "DRAO other org" 400 -3 POST /ssl/v1/enroll "$(enroll_body ok 1001 501 365)"
check "DRAO enrolls for own org" "$(mkcsr o2 www.other.test; LOGIN=drao_user PASS='Drao-Passw0rd!' call POST /ssl/v1/enroll "$(enroll_body o2 1002 505 365)")" 200

# --- list / count
check "list by CN" "$(call GET '/ssl/v1?commonName=app.scmflow.test')" 200
check "list by CN total" "$(header X-Total-Count)" 1
check "list by CN id" "$(jbody '.[0].sslId')" "$ID"
check "list by serial" "$(call GET "/ssl/v1?serialNumber=$SERIAL" >/dev/null; jbody '.[0].sslId')" "$ID"
check "HEAD count" "$(call HEAD '/ssl/v1?status=Issued')" 200
ISSUED=$(header X-Total-Count)
check "GET count = HEAD" "$(call GET '/ssl/v1?status=Issued&size=200' >/dev/null; header X-Total-Count)" "$ISSUED"
check "list status page" "$(jbody length)" "$ISSUED"
check "list by org" "$(call GET '/ssl/v1?orgId=1011&size=200' >/dev/null; header X-Total-Count)" 1
check "list by type" "$(call GET '/ssl/v1?sslTypeId=503' >/dev/null; jbody '.[0].sslId')" 104
check "list size>200" "$(call GET '/ssl/v1?size=201')" 400
check "list bad status" "$(call GET '/ssl/v1?status=Bogus')" 400

# --- renew
expect_err "renewById body \"\"" 400 -1002 POST /ssl/v1/renewById/$ID '""'
expect_err "renew forbidden by profile" 400 -180 POST /ssl/v1/renewById/104 '{}'
check "renewById" "$(call POST /ssl/v1/renewById/$ID '{}')" 200
NEWID=$(jbody .sslId)
check "renew new id" "$([ "$NEWID" -gt "$ID" ] && echo yes)" yes
check "old marked renewed" "$(call GET /ssl/v1/$ID >/dev/null; jbody .renewed)" true
check "renewed CN" "$(call GET /ssl/v1/$NEWID >/dev/null; jbody .commonName)" app.scmflow.test
RID=$(call POST /ssl/v1/enroll "$(enroll_body app 1011 501 365)" >/dev/null; jbody .renewId)
R2=$(jbody .sslId)
expect_err "renew not issued" 400 -105 POST /ssl/v1/renew/$RID '{}'
call GET /ssl/v1/$R2 >/dev/null; call GET /ssl/v1/$R2 >/dev/null
check "renew by renewId" "$(call POST /ssl/v1/renew/$RID '{}')" 204

# --- replace
mkcsr rep app.scmflow.test rsa:3072
expect_err "replace no reason" 400 -7 POST /ssl/v1/replace/$ID "$(printf '{"csr":%s}' "$(csr_json rep)")"
expect_err "replace SANs string" 400 -1002 POST /ssl/v1/replace/$ID \
    "$(printf '{"csr":%s,"reason":"rekey","subjectAlternativeNames":"a"}' "$(csr_json rep)")"
check "replace" "$(call POST /ssl/v1/replace/$ID "$(printf '{"csr":%s,"reason":"rekey","subjectAlternativeNames":["app.scmflow.test"]}' "$(csr_json rep)")")" 204
call GET /ssl/v1/$ID >/dev/null
check "replace same id, reissued" "$(call GET /ssl/v1/$ID >/dev/null; jbody .status)" Issued
check "replace new key type" "$(jbody .keyType)" "RSA - 3072"
call GET /ssl/v1/collect/$ID/pemco >/dev/null
check "replace new key in cert" "$(openssl x509 -in "$T/body" -noout -pubkey | sha256sum)" \
      "$(openssl req -in "$T/rep.csr" -noout -pubkey | sha256sum)"

# --- revoke
expect_err "revoke non-issued" 400 -102 POST /ssl/v1/revoke/103 '{"reasonCode":4,"reason":"superseded"}'
expect_err "revoke bad reasonCode" 400 -1601 POST /ssl/v1/revoke/$ID '{"reasonCode":2,"reason":"x"}'
check "revoke (string code)" "$(call POST /ssl/v1/revoke/$ID '{"reasonCode":"1","reason":"key compromise"}')" 204
expect_err "revoke again" 400 -159 POST /ssl/v1/revoke/$ID '{"reasonCode":1,"reason":"again"}'
check "revoked status" "$(call GET /ssl/v1/$ID >/dev/null; jbody .status)" Revoked
check "revoked reasonCode" "$(jbody .reasonCode)" 1
expect_err "collect revoked" 400 -110 GET /ssl/v1/collect/$ID/x509
SER100=$(call GET /ssl/v1/100 >/dev/null; jbody .serialNumber)
check "revoke by serial" "$(call POST "/ssl/v1/revoke/serial/$SER100" '{"reasonCode":5,"reason":"retired"}')" 204
check "revoked by serial" "$(call GET /ssl/v1/100 >/dev/null; jbody .status)" Revoked

# --- approve / decline (manual approval switched on at run time)
admin POST /config '{"manual_approval":true}' >/dev/null
mkcsr m1 m1.scmflow.test
M1=$(call POST /ssl/v1/enroll "$(enroll_body m1 1001 501 365)" >/dev/null; jbody .sslId)
call GET /ssl/v1/$M1 >/dev/null; call GET /ssl/v1/$M1 >/dev/null
check "manual stays Requested" "$(call GET /ssl/v1/$M1 >/dev/null; jbody .status)" Requested
check "approve" "$(call POST /ssl/v1/approve/$M1 '{"message":"ok"}')" 204
expect_err "approve twice" 400 -1112 POST /ssl/v1/approve/$M1 '{"message":"ok"}'
call GET /ssl/v1/$M1 >/dev/null
check "approved then issued" "$(call GET /ssl/v1/$M1 >/dev/null; jbody .status)" Issued
M2=$(call POST /ssl/v1/enroll "$(enroll_body m1 1001 501 365)" >/dev/null; jbody .sslId)
check "decline" "$(call POST /ssl/v1/decline/$M2 '{"message":"no"}')" 204
check "declined" "$(call GET /ssl/v1/$M2 >/dev/null; jbody .status)" Declined
M3=$(call POST /ssl/v1/enroll "$(enroll_body m1 1001 501 365)" >/dev/null; jbody .sslId)
check "admin approve" "$(admin POST /approve/$M3 | jq -r .ok)" true
admin POST /config '{"manual_approval":false}' >/dev/null

# --- forced status, pending styles
check "force Rejected" "$(admin POST /orders/$M3/status '{"status":"Rejected"}' | jq -r .ok)" true
check "forced shows" "$(call GET /ssl/v1/$M3 >/dev/null; jbody .status)" Rejected
for st in 1400:-1400 183:-183 109:-109; do
    admin POST /config "{\"pending_style\":\"${st%%:*}\"}" >/dev/null
    P=$(call POST /ssl/v1/enroll "$(enroll_body m1 1001 501 365)" >/dev/null; jbody .sslId)
    expect_err "pending style ${st%%:*}" 400 "${st#*:}" GET /ssl/v1/collect/$P/x509
done
admin POST /config '{"pending_style":"empty200"}' >/dev/null
P=$(call POST /ssl/v1/enroll "$(enroll_body m1 1001 501 365)" >/dev/null; jbody .sslId)
check "pending empty200" "$(call GET /ssl/v1/collect/$P/x509):$(wc -c < "$T/body")" "200:0"
admin POST /config '{"pending_style":"code0","issue_after_polls":3}' >/dev/null
P=$(call POST /ssl/v1/enroll "$(enroll_body m1 1001 501 365)" >/dev/null; jbody .sslId)
S=""; for i in 1 2 3 4; do S+="$(call GET /ssl/v1/$P >/dev/null; jbody .status) "; done
check "issue after 3 polls" "$S" "Applied Applied Applied Issued "

# --- request record + enrollment count
check "record has enroll" "$(admin GET '/requests?method=POST&path_prefix=/api/ssl/v1/enroll' | jq 'length > 10')" true
check "password redacted" "$(admin GET '/requests?path_prefix=/api/ssl/v1/enroll' | jq -r '.[0].headers.password')" '***'
check "no password anywhere" "$(admin GET /requests | grep -c 'Test-Passw0rd')" 0
PK=$(openssl req -in "$T/app.csr" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1)
check "enrollments per pubkey" "$(admin GET "/enrollments?pubkey_sha256=$PK" | jq -r '[.enrollments[]|.kind]|join(",")')" "enroll,renew,enroll,renew"
# enroll + renewById (comments copied) + replace of the same order
check "enrollments per comment" "$(admin GET '/enrollments?comment=cmd-0001' | jq .count)" 3
check "record summary" "$(admin GET '/requests?summary=1' | jq -r ".by_path[\"POST /api/ssl/v1/revoke/$ID\"]")" 3
admin DELETE /requests >/dev/null
check "record cleared" "$(admin GET /requests | jq length)" 0

# --- catalog patch + reset
admin POST /catalog '{"domains":[{"id":2001,"validationStatus":"EXPIRED"}],"organizations":[{"id":1004,"name":"New Org","certTypes":["SSL"]}]}' >/dev/null
expect_err "patched domain expired" 400 -107 POST /ssl/v1/enroll "$(enroll_body ok 1001 501 365)"
check "org added" "$(call GET /organization/v1 >/dev/null; jbody length)" 4
admin POST /catalog '{"organizations":[{"id":1004,"deleted":true}]}' >/dev/null
check "org removed" "$(call GET /organization/v1 >/dev/null; jbody length)" 3
check "reset" "$(admin POST /reset | jq -r .ok)" true
check "after reset" "$(call POST /ssl/v1/enroll "$(enroll_body ok 1001 501 365)")" 200
check "state" "$(admin GET /state | jq .certificates)" 6
{ printf '{"csr":"'; head -c 2000000 /dev/zero | tr '\0' a; printf '"}'; } > "$T/big.json"
check "oversized body" "$(curl -s --max-time "$CALL_TIMEOUT_S" -o /dev/null -w '%{http_code}' -H "login: $LOGIN" \
    -H "password: $PASS" -H "customerUri: $CURI" -H 'Content-Type: application/json' \
    --data-binary @"$T/big.json" "$BASE/ssl/v1/enroll")" 413

sim_stop
finish
