/*
 * os_validate.c - validation of an enroll against the synced catalog.
 *
 * Rules (every failure is collected; the handler answers order.rejected
 * with all of them in data.errors[]):
 *   account       given, else the default account, else the only one
 *   organization  id or name (case-insensitive), present and active
 *   profile       id or name, active, available to the organization or its
 *                 parent (catalog_profile_orgs)
 *   term_days     one of the profile's terms
 *   key           algorithm and size (or the BYO CSR's key) among the
 *                 profile's key_types ({"RSA":["2048"],"EC":["P-256"]})
 *   names         CN and SANs are DNS names (LDH labels, <= 63 per label,
 *                 <= 253 in all); each lies under an active catalog domain
 *                 that is ACTIVE, VALIDATED, not past dcv_expiration, and
 *                 delegated for SSL (delegation ACTIVE) to the organization
 *                 or its parent, with privilege DOMAIN (the name is the
 *                 domain) or SUBDOMAIN (below it); an empty privilege list
 *                 means DOMAIN + SUBDOMAIN.
 *   wildcards     "*." only as the whole first label, and only when the
 *                 profile's name contains "wildcard" (case-insensitive) or
 *                 the delegation grants a WILDCARD_* privilege
 *   comments      at most 1024 characters
 *   requesters    valid e-mail addresses, at most 512 characters joined
 *                 with ","
 *   keystore      PEM, PKCS12 or JKS; PKCS12/JKS need a password of 6..128
 *                 printable ASCII characters
 *   custom fields every mandatory active catalog field present with a
 *                 non-empty value; no unknown names
 *   BYO CSR       parses, signature verifies (sf_csr_parse), CN equals the
 *                 order's CN, and its DNS SANs equal the order's SANs (the
 *                 CN may also appear among the CSR's SANs)
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "os.h"
#include "sf_cmd.h"
#include "sf_db.h"
#include "sf_keygen.h"
#include "sf_keystore.h"
#include "sf_util.h"

/* ---- catalog read cache ----
 * A batch of enroll commands validates against the same few catalog rows
 * (account, organization, profile, domains, custom fields): each catalog
 * query result is kept for the rest of the batch (os_validate_cache_reset
 * from the worker's batch_begin hook), which cuts the handler's round trips
 * per order from ~10 to ~4. Only catalog reads go through it; results are
 * copies, so callers PQclear them as usual. The handler runs on the loop's
 * thread only, hence plain static state. */
#define CAT_CACHE_MAX 512
#define CAT_KEY_MAX 1024

typedef struct cat_entry {
    const char *sql; /* static query text: compared by address */
    char key[CAT_KEY_MAX];
    PGresult *res;
} cat_entry;

static cat_entry cat_cache[CAT_CACHE_MAX];
static size_t cat_n;

void os_validate_cache_reset(void)
{
    for (size_t i = 0; i < cat_n; i++) {
        PQclear(cat_cache[i].res);
        cat_cache[i].res = NULL;
    }
    cat_n = 0;
}

static PGresult *cat_copy(const PGresult *res)
{
    return PQcopyResult(res, PG_COPYRES_ATTRS | PG_COPYRES_TUPLES);
}

static int cat_exec(sf_db *db, const char *sql, int n, const char *const *params, PGresult **res,
                    sf_error *err)
{
    char key[CAT_KEY_MAX];
    size_t len = 0;
    bool cacheable = true;
    PGresult *r = NULL;

    key[0] = '\0';
    for (int i = 0; i < n && cacheable; i++) {
        const char *v = params[i] ? params[i] : "\x01(null)";
        size_t vl = strlen(v);

        if (len + vl + 2 > sizeof(key)) {
            cacheable = false;
            break;
        }
        memcpy(key + len, v, vl);
        len += vl;
        key[len++] = '\x1f';
        key[len] = '\0';
    }
    if (cacheable) {
        for (size_t i = 0; i < cat_n; i++) {
            if (cat_cache[i].sql == sql && strcmp(cat_cache[i].key, key) == 0) {
                if ((r = cat_copy(cat_cache[i].res)) == NULL)
                    return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
                *res = r;
                return 0;
            }
        }
    }
    if (sf_db_exec(db, sql, n, params, &r, err) < 0)
        return -1;
    if (cacheable && cat_n < CAT_CACHE_MAX) {
        PGresult *c = cat_copy(r);

        if (c != NULL) {
            cat_cache[cat_n].sql = sql;
            memcpy(cat_cache[cat_n].key, key, len + 1);
            cat_cache[cat_n].res = c;
            cat_n++;
        }
    }
    *res = r;
    return 0;
}

void os_errors_add(os_errors *e, const char *code, const char *field, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    cJSON *o;

    if (e->arr == NULL && (e->arr = cJSON_CreateArray()) == NULL)
        return;
    if (cJSON_GetArraySize(e->arr) >= OS_MAX_ERRORS)
        return;
    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if ((o = cJSON_CreateObject()) == NULL)
        return;
    cJSON_AddStringToObject(o, "code", code);
    cJSON_AddStringToObject(o, "message", msg[0] ? msg : "invalid");
    if (field)
        cJSON_AddStringToObject(o, "field", field);
    cJSON_AddItemToArray(e->arr, o);
}

int os_errors_count(const os_errors *e)
{
    return e->arr ? cJSON_GetArraySize(e->arr) : 0;
}

bool os_dns_name_valid(const char *name, bool allow_wildcard)
{
    size_t len = strlen(name), label = 0;
    const char *p = name;

    if (len == 0 || len > 253)
        return false;
    if (p[0] == '*') {
        if (!allow_wildcard || p[1] != '.')
            return false;
        p += 2;
        if (*p == '\0')
            return false;
    }
    for (const char *q = p;; q++) {
        if (*q == '.' || *q == '\0') {
            if (label == 0 || label > 63 || q[-1] == '-')
                return false;
            if (*q == '\0')
                break;
            label = 0;
            continue;
        }
        if (!(isalnum((unsigned char)*q) || *q == '-' || *q == '_'))
            return false;
        if (label == 0 && *q == '-')
            return false;
        label++;
    }
    /* a bare single label ("localhost") is not a public DNS name */
    return strchr(p, '.') != NULL;
}

bool os_email_valid(const char *s)
{
    const char *at = strchr(s, '@'), *dot;
    size_t len = strlen(s);

    if (len < 3 || len > SF_CMD_EMAIL_MAX || at == NULL || at == s || strchr(at + 1, '@'))
        return false;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == ',' || *p == '<' ||
            *p == '>' || *p == '"')
            return false;
    dot = strrchr(at + 1, '.');
    if (dot == NULL || dot == at + 1 || dot[1] == '\0')
        return false;
    return os_dns_name_valid(at + 1, false);
}

int os_resolve_account(sf_db *db, const char *given, char *out, size_t size, sf_error *err)
{
    static const char sql_given[] = "SELECT name FROM scm_accounts WHERE name = $1";
    static const char sql_default[] =
        "SELECT name FROM scm_accounts ORDER BY is_default DESC, name LIMIT 2";
    PGresult *res = NULL;
    const char *p[1] = {given};
    int rc = -1;

    if (cat_exec(db, given ? sql_given : sql_default, given ? 1 : 0, given ? p : NULL, &res,
                   err) < 0)
        return -1;
    if (PQntuples(res) == 0) {
        rc = 1;
        goto out;
    }
    if (!given && PQntuples(res) == 2) {
        /* two accounts and none is the default: ambiguous */
        PGresult *r2 = NULL;
        bool def = false;

        static const char sql_isdef[] = "SELECT 1 FROM scm_accounts WHERE is_default";

        if (cat_exec(db, sql_isdef, 0, NULL, &r2, err) < 0)
            goto out;
        def = PQntuples(r2) > 0;
        PQclear(r2);
        if (!def) {
            rc = 1;
            goto out;
        }
    }
    (void)sf_snprintf(out, size, "%s", PQgetvalue(res, 0, 0));
    rc = 0;
out:
    PQclear(res);
    return rc;
}

static bool text_array_has(const char *pgarr, const char *want)
{
    /* PostgreSQL text[] output: {a,b,"c d"}; our values are plain words */
    size_t n = strlen(want);
    const char *p = pgarr;

    while ((p = strstr(p, want)) != NULL) {
        char before = p == pgarr ? '{' : p[-1], after = p[n];

        if ((before == '{' || before == ',' || before == '"') &&
            (after == '}' || after == ',' || after == '"'))
            return true;
        p += n;
    }
    return false;
}

static int check_org(sf_db *db, const sf_cmd_enroll *e, os_resolved *rs, os_errors *errs,
                     sf_error *err)
{
    static const char sql_id[] =
        "SELECT id, coalesce(parent_id, 0), status, cert_types FROM catalog_organizations"
        " WHERE account = $1 AND id = $2::bigint";
    static const char sql_name[] =
        "SELECT id, coalesce(parent_id, 0), status, cert_types FROM catalog_organizations"
        " WHERE account = $1 AND lower(name) = lower($2) ORDER BY (status = 'active') DESC, id"
        " LIMIT 2";
    char idbuf[32];
    const char *p[2] = {rs->account, idbuf};
    PGresult *res = NULL;
    const char *status, *types;

    if (e->org_name) {
        p[1] = e->org_name;
    } else {
        (void)sf_snprintf(idbuf, sizeof(idbuf), "%lld", (long long)e->org_id);
    }
    if (cat_exec(db, e->org_name ? sql_name : sql_id, 2, p, &res, err) < 0)
        return -1;
    if (PQntuples(res) == 0) {
        os_errors_add(errs, "unknown_organization", "data.organization",
                      "organization \"%s\" is not in the catalog of account \"%s\"", p[1],
                      rs->account);
        goto out;
    }
    status = PQgetvalue(res, 0, 2);
    types = PQgetvalue(res, 0, 3);
    if (e->org_name && PQntuples(res) > 1 && strcmp(PQgetvalue(res, 1, 2), "active") == 0) {
        os_errors_add(errs, "ambiguous_organization", "data.organization",
                      "organization name \"%s\" is ambiguous: give the id", e->org_name);
        goto out;
    }
    if (strcmp(status, "active") != 0) {
        os_errors_add(errs, "organization_inactive", "data.organization",
                      "organization \"%s\" was removed from SCM", p[1]);
        goto out;
    }
    if (strcmp(types, "{}") != 0 && !text_array_has(types, "SSL")) {
        os_errors_add(errs, "organization_no_ssl", "data.organization",
                      "organization \"%s\" may not order SSL certificates", p[1]);
        goto out;
    }
    (void)sf_str_to_i64(PQgetvalue(res, 0, 0), 1, INT64_MAX, &rs->org_id);
    (void)sf_str_to_i64(PQgetvalue(res, 0, 1), 0, INT64_MAX, &rs->org_parent_id);
out:
    PQclear(res);
    return 0;
}

/* Key type strings of the profile for an algorithm/size. */
static bool key_allowed(const cJSON *kt, const char *alg, int size)
{
    const cJSON *sizes = cJSON_GetObjectItemCaseSensitive(kt, alg), *s;
    char want[16], want2[16];

    if (!cJSON_IsArray(sizes))
        return false;
    if (strcmp(alg, "EC") == 0) {
        (void)sf_snprintf(want, sizeof(want), "P-%d", size);
        (void)sf_snprintf(want2, sizeof(want2), "%d", size);
    } else {
        (void)sf_snprintf(want, sizeof(want), "%d", size);
        want2[0] = '\0';
    }
    cJSON_ArrayForEach(s, sizes) {
        if (cJSON_IsString(s) && (strcasecmp(s->valuestring, want) == 0 ||
                                  (want2[0] && strcmp(s->valuestring, want2) == 0)))
            return true;
        if (cJSON_IsNumber(s) && (int)s->valuedouble == size)
            return true;
    }
    return false;
}

static int check_profile(sf_db *db, const sf_cmd_enroll *e, const sf_csr_info *csr,
                         os_resolved *rs, os_errors *errs, sf_error *err)
{
    static const char sql_id[] =
        "SELECT id, name, status, array_to_string(terms, ','), key_types::text"
        " FROM catalog_profiles WHERE account = $1 AND id = $2::bigint";
    static const char sql_name[] =
        "SELECT id, name, status, array_to_string(terms, ','), key_types::text"
        " FROM catalog_profiles WHERE account = $1 AND lower(name) = lower($2)"
        " ORDER BY (status = 'active') DESC, id LIMIT 1";
    static const char sql_avail[] =
        "SELECT 1 FROM catalog_profile_orgs WHERE account = $1 AND profile_id = $2::bigint"
        " AND org_id IN ($3::bigint, $4::bigint)";
    char idbuf[32], orgbuf[32], parbuf[32], pidbuf[32];
    const char *p[2] = {rs->account, idbuf};
    PGresult *res = NULL, *r2 = NULL;
    cJSON *kt = NULL;
    const char *alg;
    int size, rc = -1;
    bool term_ok = false;
    char *terms, *save = NULL, *tok;

    if (e->profile_name)
        p[1] = e->profile_name;
    else
        (void)sf_snprintf(idbuf, sizeof(idbuf), "%lld", (long long)e->profile_id);
    if (cat_exec(db, e->profile_name ? sql_name : sql_id, 2, p, &res, err) < 0)
        return -1;
    if (PQntuples(res) == 0) {
        os_errors_add(errs, "unknown_profile", "data.profile",
                      "certificate profile \"%s\" is not in the catalog", p[1]);
        rc = 0;
        goto out;
    }
    if (strcmp(PQgetvalue(res, 0, 2), "active") != 0) {
        os_errors_add(errs, "profile_inactive", "data.profile",
                      "certificate profile \"%s\" was removed from SCM", p[1]);
        rc = 0;
        goto out;
    }
    (void)sf_str_to_i64(PQgetvalue(res, 0, 0), 1, INT64_MAX, &rs->profile_id);
    (void)sf_snprintf(rs->profile_name, sizeof(rs->profile_name), "%s", PQgetvalue(res, 0, 1));
    if (rs->org_id > 0) {
        (void)sf_snprintf(pidbuf, sizeof(pidbuf), "%lld", (long long)rs->profile_id);
        (void)sf_snprintf(orgbuf, sizeof(orgbuf), "%lld", (long long)rs->org_id);
        (void)sf_snprintf(parbuf, sizeof(parbuf), "%lld",
                          (long long)(rs->org_parent_id ? rs->org_parent_id : rs->org_id));
        {
            const char *pa[4] = {rs->account, pidbuf, orgbuf, parbuf};

            if (cat_exec(db, sql_avail, 4, pa, &r2, err) < 0)
                goto out;
        }
        if (PQntuples(r2) == 0)
            os_errors_add(errs, "profile_not_available", "data.profile",
                          "certificate profile \"%s\" is not available to organization %lld",
                          rs->profile_name, (long long)rs->org_id);
    }
    if ((terms = sf_strdup(PQgetvalue(res, 0, 3))) == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    for (tok = strtok_r(terms, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int64_t t;

        if (sf_str_to_i64(tok, 0, INT32_MAX, &t) == 0 && t == e->term_days)
            term_ok = true;
    }
    if (!term_ok)
        os_errors_add(errs, "term_not_allowed", "data.term_days",
                      "term %d days is not one of the profile's terms (%s)", e->term_days,
                      PQgetvalue(res, 0, 3));
    free(terms);
    kt = cJSON_Parse(PQgetvalue(res, 0, 4));
    if (csr) {
        alg = csr->key_alg;
        size = csr->key_size;
    } else {
        alg = sf_key_alg_name(e->key_alg);
        size = e->key_size;
    }
    if (alg == NULL || !key_allowed(kt, alg, size))
        os_errors_add(errs, "key_not_allowed", csr ? "data.csr" : "data.key_size",
                      "key %s %d is not allowed by profile \"%s\" (allowed: %s)",
                      alg ? alg : "?", size, rs->profile_name, PQgetvalue(res, 0, 4));
    rc = 0;
out:
    cJSON_Delete(kt);
    PQclear(r2);
    PQclear(res);
    return rc;
}

static int check_name(sf_db *db, const os_resolved *rs, const char *name, const char *field,
                      bool profile_wild, os_errors *errs, sf_error *err)
{
    static const char sql[] =
        "SELECT d.name, upper(coalesce(d.state, 'ACTIVE')), upper(coalesce(d.validation_status, '')),"
        " coalesce(d.dcv_expiration < current_date, false), x.privs IS NOT NULL,"
        " coalesce(x.privs, ''), coalesce(x.anyempty, false)"
        " FROM catalog_domains d LEFT JOIN LATERAL ("
        "   SELECT string_agg(array_to_string(dd.privileges, ','), ',') AS privs,"
        "          bool_or(cardinality(dd.privileges) = 0) AS anyempty"
        "   FROM catalog_domain_delegations dd"
        "   WHERE dd.account = d.account AND dd.domain_id = d.id"
        "     AND dd.org_id IN ($3::bigint, $4::bigint) AND 'SSL' = ANY(dd.cert_types)"
        "     AND upper(coalesce(dd.status, 'ACTIVE')) = 'ACTIVE'"
        "   HAVING count(*) > 0) x ON true"
        " WHERE d.account = $1 AND d.status = 'active'"
        "   AND ($2 = lower(d.name) OR right($2, length(d.name) + 1) = '.' || lower(d.name))"
        " ORDER BY length(d.name) DESC LIMIT 1";
    char lower[256], orgbuf[32], parbuf[32];
    const char *base;
    bool wild = strncmp(name, "*.", 2) == 0, exact, priv_ok;
    PGresult *res = NULL;
    const char *privs;

    if (!os_dns_name_valid(name, true)) {
        os_errors_add(errs, "invalid_name", field, "\"%s\" is not a valid DNS name", name);
        return 0;
    }
    (void)sf_snprintf(lower, sizeof(lower), "%s", name);
    for (char *q = lower; *q; q++)
        *q = (char)tolower((unsigned char)*q);
    base = wild ? lower + 2 : lower;
    (void)sf_snprintf(orgbuf, sizeof(orgbuf), "%lld", (long long)rs->org_id);
    (void)sf_snprintf(parbuf, sizeof(parbuf), "%lld",
                      (long long)(rs->org_parent_id ? rs->org_parent_id : rs->org_id));
    {
        const char *p[4] = {rs->account, base, orgbuf, parbuf};

        if (cat_exec(db, sql, 4, p, &res, err) < 0)
            return -1;
    }
    if (PQntuples(res) == 0) {
        os_errors_add(errs, "domain_unknown", field, "\"%s\" is under no domain of the catalog",
                      name);
        goto out;
    }
    if (strcmp(PQgetvalue(res, 0, 1), "ACTIVE") != 0)
        os_errors_add(errs, "domain_inactive", field, "domain \"%s\" of \"%s\" is %s",
                      PQgetvalue(res, 0, 0), name, PQgetvalue(res, 0, 1));
    if (strcmp(PQgetvalue(res, 0, 2), "VALIDATED") != 0)
        os_errors_add(errs, "domain_not_validated", field,
                      "domain \"%s\" of \"%s\" is not validated (%s)", PQgetvalue(res, 0, 0),
                      name, PQgetvalue(res, 0, 2)[0] ? PQgetvalue(res, 0, 2) : "unknown");
    else if (strcmp(PQgetvalue(res, 0, 3), "t") == 0)
        os_errors_add(errs, "domain_validation_expired", field,
                      "the domain control validation of \"%s\" (for \"%s\") has expired",
                      PQgetvalue(res, 0, 0), name);
    if (strcmp(PQgetvalue(res, 0, 4), "t") != 0) {
        os_errors_add(errs, "domain_not_delegated", field,
                      "domain \"%s\" of \"%s\" is not delegated for SSL to organization %lld",
                      PQgetvalue(res, 0, 0), name, (long long)rs->org_id);
        goto out;
    }
    privs = PQgetvalue(res, 0, 5);
    exact = strcasecmp(base, PQgetvalue(res, 0, 0)) == 0;
    if (wild) {
        priv_ok = profile_wild || strstr(privs, "WILDCARD") != NULL;
        if (!priv_ok)
            os_errors_add(errs, "wildcard_not_allowed", field,
                          "wildcard \"%s\" is not allowed: profile \"%s\" is not a wildcard "
                          "profile and domain \"%s\" grants no WILDCARD privilege",
                          name, rs->profile_name, PQgetvalue(res, 0, 0));
    } else {
        bool anyempty = strcmp(PQgetvalue(res, 0, 6), "t") == 0;

        priv_ok = anyempty || strstr(privs, exact ? "DOMAIN" : "SUBDOMAIN") != NULL;
        if (!priv_ok)
            os_errors_add(errs, "domain_privilege", field,
                          "the delegation of \"%s\" does not allow %s names",
                          PQgetvalue(res, 0, 0), exact ? "the domain itself" : "subdomain");
    }
out:
    PQclear(res);
    return 0;
}

static int check_custom(sf_db *db, const sf_cmd_enroll *e, const os_resolved *rs,
                        os_errors *errs, sf_error *err)
{
    static const char sql[] =
        "SELECT name, mandatory FROM catalog_custom_fields WHERE account = $1 AND status = 'active'";
    const char *p[1] = {rs->account};
    PGresult *res = NULL;
    char field[64];

    if (cat_exec(db, sql, 1, p, &res, err) < 0)
        return -1;
    for (int i = 0; i < PQntuples(res); i++) {
        const char *name = PQgetvalue(res, i, 0);
        bool found = false;

        if (strcmp(PQgetvalue(res, i, 1), "t") != 0)
            continue;
        for (size_t j = 0; j < e->n_custom_fields; j++)
            if (strcasecmp(e->custom_fields[j].name, name) == 0 && e->custom_fields[j].value[0])
                found = true;
        if (!found)
            os_errors_add(errs, "custom_field_missing", "data.custom_fields",
                          "mandatory custom field \"%s\" is missing", name);
    }
    for (size_t j = 0; j < e->n_custom_fields; j++) {
        bool known = false;

        for (int i = 0; i < PQntuples(res); i++)
            if (strcasecmp(e->custom_fields[j].name, PQgetvalue(res, i, 0)) == 0)
                known = true;
        if (!known) {
            (void)sf_snprintf(field, sizeof(field), "data.custom_fields[%zu].name", j);
            os_errors_add(errs, "custom_field_unknown", field, "custom field \"%s\" is unknown",
                          e->custom_fields[j].name);
        }
    }
    PQclear(res);
    return 0;
}

static bool contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);

    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return true;
    return false;
}

static bool name_in(const char *name, char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(name, list[i]) == 0)
            return true;
    return false;
}

static void check_csr(const sf_cmd_enroll *e, const sf_csr_info *ci, os_errors *errs)
{
    if (strcasecmp(ci->cn, e->common_name) != 0)
        os_errors_add(errs, "csr_mismatch", "data.csr",
                      "the CSR's common name \"%s\" differs from the order's \"%s\"", ci->cn,
                      e->common_name);
    for (size_t i = 0; i < ci->nsans; i++)
        if (!name_in(ci->sans[i], e->sans, e->n_sans) && strcasecmp(ci->sans[i], e->common_name))
            os_errors_add(errs, "csr_mismatch", "data.csr",
                          "the CSR names \"%s\", which is not among the order's SANs",
                          ci->sans[i]);
    for (size_t i = 0; i < e->n_sans; i++)
        if (!name_in(e->sans[i], ci->sans, ci->nsans))
            os_errors_add(errs, "csr_mismatch", "data.csr",
                          "the order's SAN \"%s\" is missing from the CSR", e->sans[i]);
}

int os_validate_enroll(sf_db *db, const sf_cmd_enroll *e, const sf_csr_info *csr_info,
                       os_resolved *rs, os_errors *errs, sf_error *err)
{
    char field[64];
    size_t reqlen = 0;
    bool profile_wild;
    size_t ncomment = 0;

    /* account resolution is done by the caller (rs->account) */
    if (check_org(db, e, rs, errs, err) < 0 || check_profile(db, e, csr_info, rs, errs, err) < 0)
        return -1;
    profile_wild = contains_ci(rs->profile_name, "wildcard");
    if (rs->org_id > 0) {
        if (check_name(db, rs, e->common_name, "data.common_name", profile_wild, errs, err) < 0)
            return -1;
        for (size_t i = 0; i < e->n_sans; i++) {
            if (strcasecmp(e->sans[i], e->common_name) == 0)
                continue;
            (void)sf_snprintf(field, sizeof(field), "data.sans[%zu]", i);
            if (check_name(db, rs, e->sans[i], field, profile_wild, errs, err) < 0)
                return -1;
        }
    } else {
        if (!os_dns_name_valid(e->common_name, true))
            os_errors_add(errs, "invalid_name", "data.common_name",
                          "\"%s\" is not a valid DNS name", e->common_name);
    }
    if (e->comments) {
        for (const unsigned char *p = (const unsigned char *)e->comments; *p; p++)
            if ((*p & 0xC0) != 0x80)
                ncomment++;
        if (ncomment > SF_CMD_COMMENTS_MAX)
            os_errors_add(errs, "comments_too_long", "data.comments",
                          "comments have %zu characters, at most %d are allowed", ncomment,
                          SF_CMD_COMMENTS_MAX);
    }
    for (size_t i = 0; i < e->n_external_requesters; i++) {
        reqlen += strlen(e->external_requesters[i]) + (i ? 1 : 0);
        if (!os_email_valid(e->external_requesters[i])) {
            (void)sf_snprintf(field, sizeof(field), "data.external_requesters[%zu]", i);
            os_errors_add(errs, "invalid_email", field, "\"%s\" is not a valid e-mail address",
                          e->external_requesters[i]);
        }
    }
    if (reqlen > 512)
        os_errors_add(errs, "requesters_too_long", "data.external_requesters",
                      "external requesters take %zu characters together, at most 512", reqlen);
    if (e->keystore_type != SF_KEYSTORE_PEM || e->keystore_password) {
        sf_error pe;

        sf_error_clear(&pe);
        if (e->keystore_password == NULL && e->keystore_type != SF_KEYSTORE_PEM)
            os_errors_add(errs, "keystore_password_missing", "data.keystore_password",
                          "a keystore password is required for %s",
                          sf_keystore_type_name(e->keystore_type));
        else if (e->keystore_password && sf_keystore_check_password(e->keystore_password, &pe) < 0)
            /* the message of sf_keystore_check_password never holds the value */
            os_errors_add(errs, "keystore_password_invalid", "data.keystore_password",
                          "keystore password: %s", pe.msg);
    }
    if (check_custom(db, e, rs, errs, err) < 0)
        return -1;
    if (csr_info)
        check_csr(e, csr_info, errs);
    return 0;
}

int os_validate_names(sf_db *db, const char *account, int64_t org_id, const char *profile_name,
                      const char *cn, char *const *sans, size_t n_sans, const char *sans_field,
                      os_errors *errs, sf_error *err)
{
    static const char sql[] =
        "SELECT coalesce(parent_id, 0) FROM catalog_organizations WHERE account = $1 AND id = $2::bigint";
    os_resolved rs;
    char idbuf[32], field[64];
    const char *p[2] = {account, idbuf};
    PGresult *res = NULL;
    bool wild = contains_ci(profile_name ? profile_name : "", "wildcard");

    memset(&rs, 0, sizeof(rs));
    (void)sf_snprintf(rs.account, sizeof(rs.account), "%s", account);
    (void)sf_snprintf(rs.profile_name, sizeof(rs.profile_name), "%s", profile_name ? profile_name : "");
    rs.org_id = org_id;
    (void)sf_snprintf(idbuf, sizeof(idbuf), "%lld", (long long)org_id);
    if (cat_exec(db, sql, 2, p, &res, err) < 0)
        return -1;
    if (PQntuples(res) == 1)
        (void)sf_str_to_i64(PQgetvalue(res, 0, 0), 0, INT64_MAX, &rs.org_parent_id);
    PQclear(res);
    for (size_t i = 0; i < n_sans; i++) {
        if (cn && strcasecmp(sans[i], cn) == 0)
            continue;
        (void)sf_snprintf(field, sizeof(field), "%s[%zu]", sans_field, i);
        if (check_name(db, &rs, sans[i], field, wild, errs, err) < 0)
            return -1;
    }
    return 0;
}
