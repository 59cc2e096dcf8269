#!/bin/bash
# A seeded catalog synced through `scmctl sync`; then changes in SCM
# (added, renamed, removed, validation expired) reflected by a second sync,
# with the counts in catalog.synced; `scmctl catalog` lists it.
CT_NAME=catsync
. "$(dirname "$0")/lib.sh"
ct_setup
ct_sim
ct_account
ct_worker w1

out=$(timeout 200 "$SCMCTL" sync --timeout 180s --json) || ct_fail "first sync: $out"
[ "$(jq -r .type <<<"$out")" = catalog.synced ] || ct_fail "first sync answered $out"
[ "$(jq .data.organizations <<<"$out")" = 4 ] || ct_fail "organizations total: $out"
[ "$(jq .data.domains <<<"$out")" = 8 ] || ct_fail "domains total: $out"
[ "$(jq .data.profiles <<<"$out")" = 6 ] || ct_fail "profiles total: $out"
[ "$(ct_sql "select count(*) from catalog_organizations where status='active'")" = 4 ] || ct_fail "orgs in DB"
[ "$(ct_sql "select parent_id from catalog_organizations where id=1011")" = 1001 ] || ct_fail "department parent"
[ "$(ct_sql "select count(*) from catalog_domains where status='active'")" = 8 ] || ct_fail "domains in DB"
[ "$(ct_sql "select validation_status from catalog_domains where id=2003")" = NOT_VALIDATED ] || ct_fail "validation status"
[ "$(ct_sql "select count(*) from catalog_domain_delegations where domain_id=2006 and org_id=1002 and 'SSL'=any(cert_types)")" = 1 ] \
    || ct_fail "delegation of other.test"
[ "$(ct_sql "select string_agg(org_id::text, ',' order by org_id) from catalog_profile_orgs where profile_id=505")" = 1002 ] \
    || ct_fail "profile 505 availability"
[ "$(ct_sql "select count(*) from catalog_custom_fields where mandatory")" = 1 ] || ct_fail "custom fields"
[ "$(ct_sql "select terms::text from catalog_profiles where id=501")" = "{365,730}" ] || ct_fail "profile terms"
ct_ok "seeded catalog synced"

n=$("$SCMCTL" catalog organizations --json | jq length) && [ "$n" = 4 ] || ct_fail "catalog organizations --json: $n"
"$SCMCTL" catalog domains | grep -q "unvalidated.test .*NOT_VALIDATED" || ct_fail "catalog domains table"
"$SCMCTL" catalog profiles | grep -q "^505 .*Other Org Only" || ct_fail "catalog profiles table"
ct_ok "scmctl catalog"

first_sync=$(ct_sql "select last_synced_at from catalog_domains where id=2002")
ct_sim_post catalog '{"organizations": [{"id": 1002, "name": "Other Org Renamed"},
                                        {"id": 1004, "name": "New Org", "certTypes": ["SSL"]}],
                      "domains": [{"id": 2001, "validationStatus": "EXPIRED", "dcvExpiration": "2020-01-01"},
                                  {"id": 2006, "deleted": true},
                                  {"id": 2100, "name": "added.test", "validationStatus": "VALIDATED",
                                   "state": "ACTIVE", "delegations": [{"orgId": 1001, "certTypes": ["SSL"]}]}],
                      "profiles": [{"id": 506, "deleted": true}]}' || ct_fail "patch the sim catalog"

out=$(timeout 200 "$SCMCTL" sync --timeout 180s --json) || ct_fail "second sync: $out"
c=$(jq -c .data.counts <<<"$out")
[ "$(jq .organizations.added <<<"$c")" = 1 ] && [ "$(jq .organizations.changed <<<"$c")" = 1 ] \
    && [ "$(jq .organizations.removed <<<"$c")" = 0 ] || ct_fail "organization counts: $c"
[ "$(jq .domains.added <<<"$c")" = 1 ] && [ "$(jq .domains.changed <<<"$c")" = 1 ] \
    && [ "$(jq .domains.removed <<<"$c")" = 1 ] || ct_fail "domain counts: $c"
[ "$(jq .profiles.removed <<<"$c")" = 1 ] && [ "$(jq .profiles.added <<<"$c")" = 0 ] || ct_fail "profile counts: $c"
[ "$(jq .data.added <<<"$out")" = 2 ] && [ "$(jq .data.removed <<<"$out")" = 2 ] || ct_fail "totals: $out"
[ "$(ct_sql "select name from catalog_organizations where id=1002")" = "Other Org Renamed" ] || ct_fail "rename"
[ "$(ct_sql "select name || '/' || status from catalog_organizations where id=1004")" = "New Org/active" ] || ct_fail "added org"
[ "$(ct_sql "select validation_status || '/' || dcv_expiration from catalog_domains where id=2001")" = "EXPIRED/2020-01-01" ] \
    || ct_fail "validation expired"
[ "$(ct_sql "select status || '/' || (removed_at is not null) from catalog_domains where id=2006")" = "removed/true" ] \
    || ct_fail "removed domain must be kept, marked removed"
[ "$(ct_sql "select status from catalog_profiles where id=506")" = removed ] || ct_fail "removed profile"
[ "$(ct_sql "select count(*) from catalog_domains where id=2100 and status='active'")" = 1 ] || ct_fail "added domain"
[ "$(ct_sql "select last_synced_at > '$first_sync' from catalog_domains where id=2002")" = t ] || ct_fail "last sync time"
"$SCMCTL" catalog domains | grep -q other.test && ct_fail "removed domain listed without --all"
"$SCMCTL" catalog domains --all | grep -q "other.test .*removed" || ct_fail "removed domain missing with --all"
[ "$(ct_sql "select count(*) from catalog_syncs where status='succeeded'")" -ge 2 ] || ct_fail "catalog_syncs rows"
ct_ok "changes in SCM reflected"
