#!/bin/bash
# License count: at the limit a collected certificate is not stored
# (certificate.not_stored, chain kept as not_stored, order not_stored) and is
# stored automatically once `scmctl license set` raises it. A reissue's new
# certificate supersedes the old one (the count does not grow); a renewal's
# certificate is linked to the one it renews.
PT_NAME=ilicense
. "$(dirname "$(dirname "$0")")/poller/lib.sh"
pt_setup
pt_sim --issue-after-polls 0
pt_account
"$SCMCTL" license set 2 >/dev/null || pt_fail "license set 2"
pt_start ingest "$REPO_INGEST"
pt_start poller "$STATUS_POLLER"

for i in 1 2 3 4; do
    ssl=$(pt_enroll "l$i.scmflow.test") || pt_fail "enroll"
    pt_order "l-$i" "$ssl" "l$i.scmflow.test"
    pt_wait_sql 30 "select state in ('stored','not_stored') from orders where id='l-$i'" t
done
[ "$(pt_sql "select count(*) from certificates where status='active'")" = 2 ] || pt_fail "more than the license stored"
[ "$(pt_sql "select string_agg(id || '=' || state, ' ' order by id) from orders")" = "l-1=stored l-2=stored l-3=not_stored l-4=not_stored" ] ||
    pt_fail "states: $(pt_sql "select string_agg(id || '=' || state, ' ' order by id) from orders")"
[ "$(pt_sql "select count(*) from collected_chains where state='not_stored'")" = 2 ] || pt_fail "chains not kept"
pt_wait_event 20 '.type=="certificate.not_stored" and .data.order_id=="l-3" and .data.license_limit==2 and .data.license_count==2'
"$SCMCTL" license show --json | jq -e '.license_max == 2 and .active == 2 and .not_stored == 2' >/dev/null ||
    pt_fail "license show: $("$SCMCTL" license show)"
pt_ok "license count 2: two stored, two kept as not_stored"

"$SCMCTL" license set 3 >/dev/null || pt_fail "license set 3"
pt_wait_sql 30 "select count(*) from certificates where status='active'" 3
sleep 1  # a second retry round must not store beyond the count (bounded check, not a wait for a condition)
[ "$(pt_sql "select count(*) from certificates")" = 3 ] || pt_fail "stored beyond 3"
"$SCMCTL" license set 10 >/dev/null || pt_fail "license set 10"
pt_wait_sql 30 "select count(*) from orders where state='stored'" 4
[ "$(pt_sql "select count(*) from collected_chains where state='not_stored'")" = 0 ] || pt_fail "chains left"
pt_wait_event 20 '.type=="certificate.stored" and .data.order_id=="l-4"'
pt_ok "raised to 3 then 10: stored automatically, nothing lost"

# reissue of l-1: SCM replaces the certificate (same sslId); order-submitter
# puts the order back to submitted -> the new one supersedes the old one
ssl1=$(pt_sql "select ssl_id from orders where id='l-1'")
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$PT_DIR/re.key" -subj "/CN=l1.scmflow.test" -out "$PT_DIR/re.csr" 2>/dev/null
jq -n --rawfile csr "$PT_DIR/re.csr" '{csr:$csr, reason:"key compromise test"}' |
    curl -fsS -X POST -H 'Content-Type: application/json' -H "login: $PT_LOGIN" -H "password: $PT_PASSWORD" \
        -H "customerUri: $PT_CUSTOMER" --data-binary @- "$PT_SIM/ssl/v1/replace/$ssl1" >/dev/null || pt_fail "replace"
pt_sql "UPDATE orders SET state='submitted', scm_status=NULL, next_check_at=now(), check_step=0 WHERE id='l-1'"
pt_wait_sql 30 "select string_agg(status, ',' order by id) from certificates where order_id='l-1'" "superseded,active"
[ "$(pt_sql "select count(*) from certificates where status='active'")" = 4 ] || pt_fail "reissue changed the count"
pt_ok "reissue: new certificate supersedes the old one"

# renewal of l-2: a new SCM order, a new scmflow order renewed_from l-2
ssl2=$(pt_sql "select ssl_id from orders where id='l-2'")
new=$(curl -fsS -X POST -H 'Content-Type: application/json' -H "login: $PT_LOGIN" -H "password: $PT_PASSWORD" \
        -H "customerUri: $PT_CUSTOMER" -d '{}' "$PT_SIM/ssl/v1/renewById/$ssl2" | jq -e .sslId) || pt_fail "renew"
pt_sql "INSERT INTO orders (id, account, origin, renewed_from, state, ssl_id, common_name, sans, next_check_at)
        VALUES ('l-2r', 'main', 'renewal', 'l-2', 'submitted', $new, 'l2.scmflow.test', '{l2.scmflow.test}', now())"
pt_wait_sql 30 "select state from orders where id='l-2r'" stored
[ "$(pt_sql "select renews_certificate_id = (select id from certificates where order_id='l-2') from certificates where order_id='l-2r'")" = t ] ||
    pt_fail "renewal not linked"
pt_ok "renewal linked to the certificate it renews"
