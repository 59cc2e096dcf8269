#!/usr/bin/env bash
# scm-sim fault injection: error rates, counted faults, 429 + Retry-After,
# rate limit, hang, reset, timeout_after_commit, pending, latency, concurrency.
. "$(dirname "$0")/lib.sh"
sim_start
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# 50% 500s on one path
admin POST /faults '{"rules":[{"path_prefix":"/api/ssl/v1/types","error_rate":0.5,"kind":"500"}]}' >/dev/null
n500=0
for i in $(seq 200); do [ "$(call GET /ssl/v1/types)" = 500 ] && n500=$((n500 + 1)); done
echo "500s: $n500 / 200"
check "error_rate 0.5 gives ~100 500s" "$([ $n500 -ge 60 ] && [ $n500 -le 140 ] && echo ok)" ok
check "other paths unaffected" "$(call GET /organization/v1)" 200
check "500 body" "$(call GET /ssl/v1/types >/dev/null; admin GET /faults | jq -r '.rules[0].kind')" 500

# next 2 enrolls answer 503 with Retry-After, then normal
mkcsr a a.scmflow.test
admin POST /faults '{"rules":[{"path_prefix":"/api/ssl/v1/enroll","method":"POST","count":2,"kind":"503","retry_after_s":3}]}' >/dev/null
check "503 #1" "$(call POST /ssl/v1/enroll "$(enroll_body a 1001 501 365)")" 503
check "503 Retry-After" "$(header Retry-After)" 3
check "503 #2" "$(call POST /ssl/v1/enroll "$(enroll_body a 1001 501 365)")" 503
check "then 200" "$(call POST /ssl/v1/enroll "$(enroll_body a 1001 501 365)")" 200
check "only 1 enrollment made" "$(admin GET /enrollments | jq .count)" 1

admin POST /faults '{"rules":[{"path_prefix":"/api/ssl/v1/","count":1,"kind":"429","retry_after_s":2}]}' >/dev/null
check "429" "$(call GET /ssl/v1/100)" 429
check "429 Retry-After" "$(header Retry-After)" 2
check "429 once" "$(call GET /ssl/v1/100)" 200

# token bucket per account
admin POST /faults '{"rate_limit":{"per_account_rps":2,"burst":3}}' >/dev/null
codes=""
t0=$(now_ms)
for i in $(seq 20); do codes+="$(call GET /ssl/v1/100) "; done
el=$(( $(now_ms) - t0 ))
n429=$(echo "$codes" | tr ' ' '\n' | grep -c 429)
n200=$(echo "$codes" | tr ' ' '\n' | grep -c 200)
# at most burst + rps * elapsed (+1 for rounding) may pass
max_ok=$(( 3 + 2 * (el + 999) / 1000 + 1 ))
echo "rate limit: $n429 of 20 got 429, $n200 passed in $el ms (bound $max_ok)"
check "rate limit bound" "$([ "$n200" -le "$max_ok" ] && [ "$n429" -ge 1 ] && [ $((n200 + n429)) -eq 20 ] && echo ok)" ok
for i in $(seq 20); do [ "$(call GET /ssl/v1/100)" = 429 ] && break; done
check "rate limit Retry-After >= 1" "$([ "$(header Retry-After)" -ge 1 ] 2>/dev/null && echo ok)" ok
check "other account has its own bucket" "$(LOGIN=drao_user PASS='Drao-Passw0rd!' call GET /ssl/v1/types)" 200

# hang: the client times out; the next request is fine
admin POST /faults '{"rules":[{"path_prefix":"/api/ssl/v1/types","count":1,"kind":"hang","hang_ms":5000}]}' >/dev/null
t0=$(now_ms); rc=0
curl -s --max-time 1 -o /dev/null -H "login: $LOGIN" -H "password: $PASS" -H "customerUri: $CURI" "$BASE/ssl/v1/types" || rc=$?
check "hang => client timeout (curl 28)" "$rc" 28
check "hang took ~1 s" "$(( $(now_ms) - t0 >= 900 ))" 1
check "after hang" "$(call GET /ssl/v1/types)" 200

# reset: connection dropped without a response
admin POST /faults '{"rules":[{"path_prefix":"/api/ssl/v1/types","count":1,"kind":"reset"}]}' >/dev/null
rc=0
curl -s --max-time 5 -o /dev/null -H "login: $LOGIN" -H "password: $PASS" -H "customerUri: $CURI" "$BASE/ssl/v1/types" || rc=$?
check "reset => curl 52/56" "$( [ $rc -eq 52 ] || [ $rc -eq 56 ] && echo ok)" ok
check "after reset" "$(call GET /ssl/v1/types)" 200

# timeout_after_commit: the order exists although the client saw no answer
mkcsr tac tac.scmflow.test
admin POST /faults '{"rules":[{"path_prefix":"/api/ssl/v1/enroll","count":1,"kind":"timeout_after_commit","hang_ms":3000}]}' >/dev/null
rc=0
curl -s --max-time 1 -o /dev/null -H "login: $LOGIN" -H "password: $PASS" -H "customerUri: $CURI" \
    -H 'Content-Type: application/json' --data-binary "$(enroll_body tac 1001 501 365 "" '"comments":"tac-cmd"')" \
    "$BASE/ssl/v1/enroll" || rc=$?
check "timeout_after_commit => client timeout" "$rc" 28
check "order was created" "$(admin GET '/enrollments?comment=tac-cmd' | jq .count)" 1
check "order findable by CN" "$(call GET '/ssl/v1?commonName=tac.scmflow.test' >/dev/null; header X-Total-Count)" 1
check "recorded as fault" "$(admin GET '/requests?path_prefix=/api/ssl/v1/enroll' | jq -r '.[-1].headers["x-sim-fault"]')" timeout_after_commit

# pending: an issued certificate whose collect still answers "being processed"
admin POST /faults '{"rules":[{"path_prefix":"/api/ssl/v1/collect/","count":1,"kind":"pending"}]}' >/dev/null
check "pending => 400" "$(call GET /ssl/v1/collect/100/x509)" 400
check "pending code 0" "$(jbody .code)" 0
admin POST /config '{"pending_style":"empty200"}' >/dev/null
admin POST /faults '{"rules":[{"path_prefix":"/api/ssl/v1/collect/","count":1,"kind":"pending"}]}' >/dev/null
check "pending empty200 => 200" "$(call GET /ssl/v1/collect/100/x509)" 200
check "pending empty200 => empty body" "$(stat -c %s "$T/body")" 0
check "then the certificate" "$(call GET /ssl/v1/collect/100/x509 >/dev/null; grep -q 'BEGIN CERTIFICATE' "$T/body" && echo ok)" ok
admin POST /config '{"pending_style":"code0"}' >/dev/null

# admin API never faulted
admin POST /faults '{"rules":[{"path_prefix":"/","error_rate":1,"kind":"500"}]}' >/dev/null
check "everything 500" "$(call GET /ssl/v1/100)" 500
check "admin API unaffected" "$(admin GET /state | jq -r .customerUri)" scmflow-test
admin DELETE /faults >/dev/null
check "faults cleared" "$(call GET /ssl/v1/100)" 200

# latency + concurrency: 64 requests in parallel with 300 ms latency
admin POST /faults '{"latency_ms":300}' >/dev/null
t0=$(now_ms); call GET /ssl/v1/100 >/dev/null; dt=$(( $(now_ms) - t0 ))
check "latency applied" "$([ $dt -ge 290 ] && echo ok)" ok
t0=$(now_ms)
pids=()
for i in $(seq 64); do
    curl -s --max-time 20 -o /dev/null -w '%{http_code}\n' -H "login: $LOGIN" -H "password: $PASS" \
        -H "customerUri: $CURI" "$BASE/ssl/v1/100" >> "$T/par" &
    pids+=($!)
done
wait "${pids[@]}"
dt=$(( $(now_ms) - t0 ))
echo "64 parallel requests at 300 ms latency: $dt ms"
check "64 parallel all 200" "$(grep -c '^200$' "$T/par")" 64
check "served concurrently (< 3 s)" "$([ $dt -lt 3000 ] && echo ok)" ok
admin DELETE /faults >/dev/null

# faults from a file at start
sim_stop
echo '{"rules":[{"path_prefix":"/api/organization/v1","count":1,"kind":"500"}]}' > "$T/f.json"
sim_start --faults "$T/f.json"
check "--faults file" "$(call GET /organization/v1)" 500
check "--faults count 1" "$(call GET /organization/v1)" 200
sim_stop
finish
