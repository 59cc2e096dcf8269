#!/usr/bin/env bash
# scm-sim --generate-certs 100000: page through all of them with size 200,
# check X-Total-Count, ids unique, every status present; print the time.
. "$(dirname "$0")/lib.sh"
N=${SCM_SIM_BULK_N:-100000}
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
t0=$(now_ms)
sim_start --generate-certs "$N" --record-max 1000
echo "startup with $N generated certificates: $(( $(now_ms) - t0 )) ms"
check "HEAD total" "$(call HEAD /ssl/v1)" 200
TOTAL=$(header X-Total-Count)
check "total = seeded 5 + generated" "$TOTAL" $((N + 5))
# page with keep-alive: one curl process, many URLs
pages=$(( (TOTAL + 199) / 200 ))
: > "$T/urls"
for p in $(seq 0 $((pages - 1))); do
    echo "url = \"$BASE/ssl/v1?size=200&position=$((p * 200))\"" >> "$T/urls"
    echo "output = \"$T/page.$p\"" >> "$T/urls"
done
t0=$(now_ms)
curl -s --max-time 300 -K "$T/urls" -H "login: $LOGIN" -H "password: $PASS" -H "customerUri: $CURI" \
    -D "$T/allhdr" || die "paging failed"
dt=$(( $(now_ms) - t0 ))
check "every page 200" "$(grep -c '^HTTP/1.1 200' "$T/allhdr")" "$pages"
check "every page has the total" "$(grep -ci "^X-Total-Count: $TOTAL" "$T/allhdr")" "$pages"
cat $(for p in $(seq 0 $((pages - 1))); do echo "$T/page.$p"; done) | jq -c '.[].sslId' > "$T/ids"
check "ids listed" "$(wc -l < "$T/ids")" "$TOTAL"
check "ids unique" "$(sort -u "$T/ids" | wc -l)" "$TOTAL"
echo "paged $TOTAL certificates in $pages pages of 200: $dt ms ($(( TOTAL * 1000 / (dt + 1) )) certs/s)"
for st in Issued Expired Revoked Applied Requested Declined Rejected Invalid Replaced Approved; do
    call HEAD "/ssl/v1?status=$st" >/dev/null
    c=$(header X-Total-Count)
    check "status $st present" "$([ "${c:-0}" -gt 0 ] && echo yes)" yes
done
# a generated issued certificate can be collected and verified
ID=$(call GET '/ssl/v1?status=Issued&size=1&position=500' >/dev/null; jbody '.[0].sslId')
check "collect generated" "$(call GET /ssl/v1/collect/$ID/pemco)" 200
cp "$T/body" "$T/leaf.pem"
admin GET /ca/root.pem > "$T/root.pem"; admin GET /ca/intermediate.pem > "$T/int.pem"
check "generated leaf verifies" "$(openssl verify -CAfile "$T/root.pem" -untrusted "$T/int.pem" "$T/leaf.pem" 2>&1 | grep -c ': OK')" 1
check "generated details serial = cert" "$(call GET /ssl/v1/$ID >/dev/null; jbody .serialNumber | tr -d :)" \
      "$(openssl x509 -in "$T/leaf.pem" -noout -serial | cut -d= -f2)"
sim_stop
finish
