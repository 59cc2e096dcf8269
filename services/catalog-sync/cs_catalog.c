/*
 * cs_catalog.c - fetch the SCM catalog (organizations with departments,
 * domains with delegations, certificate profiles per organization, custom
 * fields) and apply it to the catalog tables of 002_domain.sql.
 *
 * Fetching happens outside any transaction and keeps everything in memory
 * (bounded by CS_MAX_*); only a complete, type-checked catalog is applied,
 * in one transaction, so an SCM failure midway leaves the previous catalog
 * intact. Every field read from SCM is type-checked; a malformed response
 * is SF_ERR_INVALID with err->field naming the JSON path (e.g.
 * "domains[3].delegations[0].orgId").
 */
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cs.h"
#include "sf_db.h"
#include "sf_log.h"
#include "sf_scm.h"
#include "sf_util.h"

/* ---- type-checked field access ---- */

static int bad(sf_error *err, const char *path, const char *what)
{
    return sf_error_field(err, path, "malformed SCM response: %s %s", path, what);
}

static int get_id(const cJSON *o, const char *key, const char *base, int64_t *out, sf_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    char path[64];

    (void)sf_snprintf(path, sizeof(path), "%s.%s", base, key);
    if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 9007199254740991.0 ||
        v->valuedouble != (double)(int64_t)v->valuedouble)
        return bad(err, path, "must be a positive integer");
    *out = (int64_t)v->valuedouble;
    return 0;
}

/* Optional string (absent/null -> *out NULL); max bytes; valid UTF-8. */
static int get_str(const cJSON *o, const char *key, const char *base, bool required, size_t max,
                   const char **out, sf_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    char path[64];

    (void)sf_snprintf(path, sizeof(path), "%s.%s", base, key);
    *out = NULL;
    if (v == NULL || cJSON_IsNull(v)) {
        if (required)
            return bad(err, path, "is missing");
        return 0;
    }
    if (!cJSON_IsString(v) || v->valuestring == NULL)
        return bad(err, path, "must be a string");
    if (strlen(v->valuestring) > max || !sf_utf8_valid(v->valuestring, strlen(v->valuestring)))
        return bad(err, path, "is too long or not UTF-8");
    if (required && v->valuestring[0] == '\0')
        return bad(err, path, "must not be empty");
    *out = v->valuestring;
    return 0;
}

/* Optional array of short strings -> a new JSON array of copies. */
static int get_strarr(const cJSON *o, const char *key, const char *base, cJSON **out,
                      sf_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    const cJSON *e;
    cJSON *arr;
    char path[80];
    int i = 0;

    (void)sf_snprintf(path, sizeof(path), "%s.%s", base, key);
    if ((arr = cJSON_CreateArray()) == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    if (v == NULL || cJSON_IsNull(v)) {
        *out = arr;
        return 0;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > 64) {
        cJSON_Delete(arr);
        return bad(err, path, "must be an array of at most 64 strings");
    }
    cJSON_ArrayForEach(e, v) {
        if (!cJSON_IsString(e) || strlen(e->valuestring) > 64 ||
            !sf_utf8_valid(e->valuestring, strlen(e->valuestring))) {
            char p2[96];

            (void)sf_snprintf(p2, sizeof(p2), "%s[%d]", path, i);
            cJSON_Delete(arr);
            return bad(err, p2, "must be a short string");
        }
        cJSON_AddItemToArray(arr, cJSON_CreateString(e->valuestring));
        i++;
    }
    *out = arr;
    return 0;
}

static bool date_ok(const char *s)
{
    /* yyyy-MM-dd */
    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return false;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
            return false;
    return (s[5] - '0') * 10 + (s[6] - '0') >= 1 && (s[5] - '0') * 10 + (s[6] - '0') <= 12 &&
           (s[8] - '0') * 10 + (s[9] - '0') >= 1 && (s[8] - '0') * 10 + (s[9] - '0') <= 31;
}

static void add_str_or_null(cJSON *o, const char *k, const char *v)
{
    if (v != NULL)
        cJSON_AddStringToObject(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

/* ---- organizations ---- */

static int org_row(cJSON *rows, const cJSON *src, int64_t parent, const cJSON *inherit_types,
                   const char *path, sf_error *err)
{
    int64_t id;
    const char *name;
    cJSON *types = NULL, *row;

    if (!cJSON_IsObject(src))
        return bad(err, path, "must be an object");
    if (get_id(src, "id", path, &id, err) < 0 ||
        get_str(src, "name", path, true, 256, &name, err) < 0 ||
        get_strarr(src, "certTypes", path, &types, err) < 0)
        return -1;
    if (cJSON_GetArraySize(types) == 0 && inherit_types != NULL) {
        cJSON_Delete(types);
        types = cJSON_Duplicate(inherit_types, true);
    }
    if ((row = cJSON_CreateObject()) == NULL) {
        cJSON_Delete(types);
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    }
    cJSON_AddNumberToObject(row, "id", (double)id);
    if (parent > 0)
        cJSON_AddNumberToObject(row, "parent_id", (double)parent);
    else
        cJSON_AddNullToObject(row, "parent_id");
    cJSON_AddStringToObject(row, "name", name);
    cJSON_AddItemToObject(row, "cert_types", types);
    cJSON_AddItemToObject(row, "raw", cJSON_Duplicate(src, true));
    cJSON_AddItemToArray(rows, row);
    return 0;
}

static int fetch_orgs(sf_scm_client *scm, cJSON **out, sf_error *err)
{
    cJSON *doc = NULL, *rows = NULL;
    const cJSON *org;
    int rc = -1, i = 0;

    if (sf_scm_get_json(scm, "/organization/v1", &doc, NULL, err) < 0)
        goto out;
    if (!cJSON_IsArray(doc)) {
        bad(err, "organizations", "must be an array");
        goto out;
    }
    if ((rows = cJSON_CreateArray()) == NULL)
        goto oom;
    cJSON_ArrayForEach(org, doc) {
        char path[48];
        const cJSON *deps, *dep;
        int64_t id = 0;
        int j = 0;

        (void)sf_snprintf(path, sizeof(path), "organizations[%d]", i);
        if (org_row(rows, org, 0, NULL, path, err) < 0)
            goto out;
        (void)get_id(org, "id", path, &id, NULL);
        deps = cJSON_GetObjectItemCaseSensitive(org, "departments");
        if (deps != NULL && !cJSON_IsNull(deps) && !cJSON_IsArray(deps)) {
            char p2[80];

            (void)sf_snprintf(p2, sizeof(p2), "%s.departments", path);
            bad(err, p2, "must be an array");
            goto out;
        }
        cJSON_ArrayForEach(dep, deps) {
            char p2[80];
            const cJSON *otypes = cJSON_GetObjectItemCaseSensitive(
                cJSON_GetArrayItem(rows, cJSON_GetArraySize(rows) - 1 - j), "cert_types");

            (void)sf_snprintf(p2, sizeof(p2), "%s.departments[%d]", path, j);
            if (org_row(rows, dep, id, otypes, p2, err) < 0)
                goto out;
            j++;
        }
        if (cJSON_GetArraySize(rows) > CS_MAX_ORGS) {
            bad(err, "organizations", "has more entries than the limit");
            goto out;
        }
        i++;
    }
    *out = rows;
    rows = NULL;
    rc = 0;
    goto out;
oom:
    sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
out:
    cJSON_Delete(doc);
    cJSON_Delete(rows);
    return rc;
}

/* ---- domains ---- */

typedef struct dom_fetch {
    cJSON **details;   /* per index */
    int64_t *ids;
    size_t n;
    sf_error first_err;
    bool failed;
} dom_fetch;

static void dom_cb(sf_scm_result *res, void *ud)
{
    dom_fetch *f = ud;

    /* Completions arrive in any order: match the id in the document. */
    if (res->rc < 0) {
        if (!f->failed) {
            f->first_err = res->err;
            f->failed = true;
        }
        return;
    }
    if (cJSON_IsObject(res->json)) {
        const cJSON *idv = cJSON_GetObjectItemCaseSensitive(res->json, "id");

        if (cJSON_IsNumber(idv))
            for (size_t i = 0; i < f->n; i++)
                if (f->details[i] == NULL && (double)f->ids[i] == idv->valuedouble) {
                    f->details[i] = res->json;
                    res->json = NULL;
                    return;
                }
    }
    if (!f->failed) {
        sf_error_field(&f->first_err, "domain", "malformed SCM response: domain details "
                       "are not an object with the requested id");
        f->failed = true;
    }
}

static int domain_row(cJSON *rows, const cJSON *d, const char *path, sf_error *err)
{
    int64_t id;
    const char *name, *state, *dstat, *vstat, *vmeth, *dval, *dexp;
    const cJSON *dels, *del;
    cJSON *row = NULL, *drows = NULL;
    int j = 0;

    if (!cJSON_IsObject(d))
        return bad(err, path, "must be an object");
    if (get_id(d, "id", path, &id, err) < 0 ||
        get_str(d, "name", path, true, 255, &name, err) < 0 ||
        get_str(d, "state", path, false, 32, &state, err) < 0 ||
        get_str(d, "delegationStatus", path, false, 32, &dstat, err) < 0 ||
        get_str(d, "validationStatus", path, false, 32, &vstat, err) < 0 ||
        get_str(d, "validationMethod", path, false, 64, &vmeth, err) < 0 ||
        get_str(d, "dcvValidation", path, false, 10, &dval, err) < 0 ||
        get_str(d, "dcvExpiration", path, false, 10, &dexp, err) < 0)
        return -1;
    if (dval != NULL && !date_ok(dval)) {
        char p2[80];
        (void)sf_snprintf(p2, sizeof(p2), "%s.dcvValidation", path);
        return bad(err, p2, "must be a yyyy-MM-dd date");
    }
    if (dexp != NULL && !date_ok(dexp)) {
        char p2[80];
        (void)sf_snprintf(p2, sizeof(p2), "%s.dcvExpiration", path);
        return bad(err, p2, "must be a yyyy-MM-dd date");
    }
    dels = cJSON_GetObjectItemCaseSensitive(d, "delegations");
    if (dels != NULL && !cJSON_IsNull(dels) && !cJSON_IsArray(dels)) {
        char p2[80];
        (void)sf_snprintf(p2, sizeof(p2), "%s.delegations", path);
        return bad(err, p2, "must be an array");
    }
    if ((drows = cJSON_CreateArray()) == NULL || (row = cJSON_CreateObject()) == NULL)
        goto oom;
    cJSON_ArrayForEach(del, dels) {
        char p2[96];
        int64_t org;
        const char *st;
        cJSON *ct = NULL, *pv = NULL, *dr;

        (void)sf_snprintf(p2, sizeof(p2), "%s.delegations[%d]", path, j++);
        if (!cJSON_IsObject(del)) {
            bad(err, p2, "must be an object");
            goto fail;
        }
        if (get_id(del, "orgId", p2, &org, err) < 0 || get_str(del, "status", p2, false, 32, &st, err) < 0 ||
            get_strarr(del, "certTypes", p2, &ct, err) < 0)
            goto fail;
        if (get_strarr(del, cJSON_GetObjectItemCaseSensitive(del, "domainCertificateRequestPrivileges")
                                ? "domainCertificateRequestPrivileges" : "privileges",
                       p2, &pv, err) < 0) {
            cJSON_Delete(ct);
            goto fail;
        }
        if ((dr = cJSON_CreateObject()) == NULL) {
            cJSON_Delete(ct);
            cJSON_Delete(pv);
            goto oom;
        }
        cJSON_AddNumberToObject(dr, "org_id", (double)org);
        cJSON_AddItemToObject(dr, "cert_types", ct);
        cJSON_AddItemToObject(dr, "privileges", pv);
        add_str_or_null(dr, "status", st);
        cJSON_AddItemToArray(drows, dr);
    }
    cJSON_AddNumberToObject(row, "id", (double)id);
    cJSON_AddStringToObject(row, "name", name);
    add_str_or_null(row, "state", state);
    add_str_or_null(row, "delegation_status", dstat);
    add_str_or_null(row, "validation_status", vstat);
    add_str_or_null(row, "validation_method", vmeth);
    add_str_or_null(row, "dcv_validation", dval);
    add_str_or_null(row, "dcv_expiration", dexp);
    cJSON_AddItemToObject(row, "delegations", drows);
    cJSON_AddItemToObject(row, "raw", cJSON_Duplicate(d, true));
    cJSON_AddItemToArray(rows, row);
    return 0;
oom:
    sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
fail:
    cJSON_Delete(drows);
    cJSON_Delete(row);
    return -1;
}

static int fetch_domains(sf_scm_client *scm, cJSON **out, sf_error *err)
{
    dom_fetch f = {0};
    size_t cap = 0;
    int64_t total = -1, position = 0;
    sf_scm_batch *b = NULL;
    cJSON *rows = NULL;
    int rc = -1;

    /* 1. page through the list of ids */
    for (;;) {
        cJSON *page = NULL;
        const cJSON *e;
        char path[96];
        int n = 0;

        (void)sf_snprintf(path, sizeof(path), "/domain/v1?size=%d&position=%lld", CS_PAGE_SIZE,
                          (long long)position);
        if (sf_scm_get_json(scm, path, &page, &total, err) < 0)
            goto out;
        if (!cJSON_IsArray(page)) {
            cJSON_Delete(page);
            bad(err, "domains", "must be an array");
            goto out;
        }
        cJSON_ArrayForEach(e, page) {
            char p2[48];
            int64_t id;

            (void)sf_snprintf(p2, sizeof(p2), "domains[%lld]", (long long)(position + n));
            if (!cJSON_IsObject(e) || get_id(e, "id", p2, &id, err) < 0) {
                if (!cJSON_IsObject(e))
                    bad(err, p2, "must be an object");
                cJSON_Delete(page);
                goto out;
            }
            if (f.n == cap) {
                size_t nc = cap ? cap * 2 : 256;
                int64_t *ni;

                if (nc > CS_MAX_DOMAINS || (ni = realloc(f.ids, nc * sizeof(*ni))) == NULL) {
                    cJSON_Delete(page);
                    bad(err, "domains", "has more entries than the limit");
                    goto out;
                }
                f.ids = ni;
                cap = nc;
            }
            f.ids[f.n++] = id;
            n++;
        }
        cJSON_Delete(page);
        position += n;
        if (n < CS_PAGE_SIZE || (total >= 0 && position >= total))
            break;
    }
    /* 2. details of each, a few requests in flight */
    if (f.n > 0) {
        if ((f.details = calloc(f.n, sizeof(*f.details))) == NULL) {
            sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
            goto out;
        }
        if ((b = sf_scm_batch_new(scm, 8, err)) == NULL)
            goto out;
        for (size_t i = 0; i < f.n; i++) {
            char path[64];

            (void)sf_snprintf(path, sizeof(path), "/domain/v1/%lld", (long long)f.ids[i]);
            if (sf_scm_batch_add_get(b, path, dom_cb, &f, err) < 0)
                goto out;
        }
        if (sf_scm_batch_run(b, sf_now_mono_ms() + 600000, err) < 0)
            goto out;
        if (f.failed) {
            if (err != NULL)
                *err = f.first_err;
            goto out;
        }
    }
    if ((rows = cJSON_CreateArray()) == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < f.n; i++) {
        char path[48];

        (void)sf_snprintf(path, sizeof(path), "domains[%zu]", i);
        if (f.details[i] == NULL) {
            bad(err, path, "details are missing");
            goto out;
        }
        if (domain_row(rows, f.details[i], path, err) < 0)
            goto out;
    }
    *out = rows;
    rows = NULL;
    rc = 0;
out:
    sf_scm_batch_free(b);
    for (size_t i = 0; f.details != NULL && i < f.n; i++)
        cJSON_Delete(f.details[i]);
    free(f.details);
    free(f.ids);
    cJSON_Delete(rows);
    return rc;
}

/* ---- profiles and custom fields ---- */

static int profile_row(cJSON *rows, const cJSON *p, const char *path, sf_error *err)
{
    int64_t id;
    const char *name, *desc;
    const cJSON *terms = cJSON_GetObjectItemCaseSensitive(p, "terms");
    const cJSON *kt = cJSON_GetObjectItemCaseSensitive(p, "keyTypes");
    const cJSON *usec = cJSON_GetObjectItemCaseSensitive(p, "useSecondaryOrgName");
    const cJSON *e;
    cJSON *row, *t, *k;
    char p2[96];

    if (!cJSON_IsObject(p))
        return bad(err, path, "must be an object");
    if (get_id(p, "id", path, &id, err) < 0 || get_str(p, "name", path, true, 256, &name, err) < 0 ||
        get_str(p, "description", path, false, 4096, &desc, err) < 0)
        return -1;
    (void)sf_snprintf(p2, sizeof(p2), "%s.terms", path);
    if (terms != NULL && !cJSON_IsArray(terms))
        return bad(err, p2, "must be an array of integers");
    cJSON_ArrayForEach(e, terms)
        if (!cJSON_IsNumber(e) || e->valuedouble < 1 || e->valuedouble > 36500 ||
            e->valuedouble != (double)(int)e->valuedouble)
            return bad(err, p2, "must be an array of day counts");
    (void)sf_snprintf(p2, sizeof(p2), "%s.keyTypes", path);
    if (kt != NULL && !cJSON_IsNull(kt) && !cJSON_IsObject(kt))
        return bad(err, p2, "must be an object");
    cJSON_ArrayForEach(e, kt) {
        const cJSON *s;

        if (!cJSON_IsArray(e))
            return bad(err, p2, "values must be arrays of strings");
        cJSON_ArrayForEach(s, e)
            if (!cJSON_IsString(s) || strlen(s->valuestring) > 32)
                return bad(err, p2, "values must be arrays of strings");
    }
    (void)sf_snprintf(p2, sizeof(p2), "%s.useSecondaryOrgName", path);
    if (usec != NULL && !cJSON_IsNull(usec) && !cJSON_IsBool(usec))
        return bad(err, p2, "must be a boolean");
    if ((row = cJSON_CreateObject()) == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    cJSON_AddNumberToObject(row, "id", (double)id);
    cJSON_AddStringToObject(row, "name", name);
    add_str_or_null(row, "description", desc);
    t = terms ? cJSON_Duplicate(terms, true) : cJSON_CreateArray();
    cJSON_AddItemToObject(row, "terms", t);
    k = cJSON_IsObject(kt) ? cJSON_Duplicate(kt, true) : cJSON_CreateObject();
    cJSON_AddItemToObject(row, "key_types", k);
    cJSON_AddBoolToObject(row, "use_secondary_org_name", cJSON_IsTrue(usec));
    cJSON_AddItemToObject(row, "raw", cJSON_Duplicate(p, true));
    cJSON_AddItemToArray(rows, row);
    return 0;
}

static int fetch_profiles(sf_scm_client *scm, const cJSON *orgs, cJSON **out_rows,
                          cJSON **out_pairs, sf_error *err)
{
    cJSON *doc = NULL, *rows = NULL, *pairs = NULL;
    const cJSON *e, *org;
    int rc = -1, i = 0;

    if (sf_scm_get_json(scm, "/ssl/v1/types", &doc, NULL, err) < 0)
        goto out;
    if (!cJSON_IsArray(doc) || cJSON_GetArraySize(doc) > CS_MAX_PROFILES) {
        bad(err, "profiles", "must be an array within the limit");
        goto out;
    }
    if ((rows = cJSON_CreateArray()) == NULL || (pairs = cJSON_CreateArray()) == NULL)
        goto oom;
    cJSON_ArrayForEach(e, doc) {
        char path[48];

        (void)sf_snprintf(path, sizeof(path), "profiles[%d]", i++);
        if (profile_row(rows, e, path, err) < 0)
            goto out;
    }
    /* Availability per organization and department. */
    cJSON_ArrayForEach(org, orgs) {
        int64_t oid = (int64_t)cJSON_GetObjectItemCaseSensitive(org, "id")->valuedouble;
        char path[64];
        cJSON *od = NULL;
        int j = 0;

        (void)sf_snprintf(path, sizeof(path), "/ssl/v1/types?organizationId=%lld", (long long)oid);
        if (sf_scm_get_json(scm, path, &od, NULL, err) < 0)
            goto out;
        if (!cJSON_IsArray(od)) {
            cJSON_Delete(od);
            bad(err, "profiles", "per organization must be an array");
            goto out;
        }
        cJSON_ArrayForEach(e, od) {
            char p2[64];
            int64_t pid;
            cJSON *pair;

            (void)sf_snprintf(p2, sizeof(p2), "profiles(org %lld)[%d]", (long long)oid, j++);
            if (!cJSON_IsObject(e) || get_id(e, "id", p2, &pid, err) < 0) {
                if (!cJSON_IsObject(e))
                    bad(err, p2, "must be an object");
                cJSON_Delete(od);
                goto out;
            }
            if ((pair = cJSON_CreateObject()) == NULL) {
                cJSON_Delete(od);
                goto oom;
            }
            cJSON_AddNumberToObject(pair, "profile_id", (double)pid);
            cJSON_AddNumberToObject(pair, "org_id", (double)oid);
            cJSON_AddItemToArray(pairs, pair);
        }
        cJSON_Delete(od);
    }
    *out_rows = rows;
    *out_pairs = pairs;
    rows = pairs = NULL;
    rc = 0;
    goto out;
oom:
    sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
out:
    cJSON_Delete(doc);
    cJSON_Delete(rows);
    cJSON_Delete(pairs);
    return rc;
}

static int fetch_custom_fields(sf_scm_client *scm, cJSON **out, sf_error *err)
{
    cJSON *doc = NULL, *rows = NULL;
    const cJSON *e;
    int rc = -1, i = 0;

    if (sf_scm_get_json(scm, "/ssl/v1/customFields", &doc, NULL, err) < 0)
        goto out;
    if (!cJSON_IsArray(doc) || cJSON_GetArraySize(doc) > CS_MAX_CUSTOM_FIELDS) {
        bad(err, "customFields", "must be an array within the limit");
        goto out;
    }
    if ((rows = cJSON_CreateArray()) == NULL)
        goto oom;
    cJSON_ArrayForEach(e, doc) {
        char path[48];
        int64_t id;
        const char *name;
        const cJSON *m;
        cJSON *row;

        (void)sf_snprintf(path, sizeof(path), "customFields[%d]", i++);
        if (!cJSON_IsObject(e)) {
            bad(err, path, "must be an object");
            goto out;
        }
        if (get_id(e, "id", path, &id, err) < 0 || get_str(e, "name", path, true, 256, &name, err) < 0)
            goto out;
        m = cJSON_GetObjectItemCaseSensitive(e, "mandatory");
        if (m != NULL && !cJSON_IsBool(m)) {
            char p2[64];
            (void)sf_snprintf(p2, sizeof(p2), "%s.mandatory", path);
            bad(err, p2, "must be a boolean");
            goto out;
        }
        if ((row = cJSON_CreateObject()) == NULL)
            goto oom;
        cJSON_AddNumberToObject(row, "id", (double)id);
        cJSON_AddStringToObject(row, "name", name);
        cJSON_AddBoolToObject(row, "mandatory", cJSON_IsTrue(m));
        cJSON_AddItemToArray(rows, row);
    }
    *out = rows;
    rows = NULL;
    rc = 0;
    goto out;
oom:
    sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
out:
    cJSON_Delete(doc);
    cJSON_Delete(rows);
    return rc;
}

int cs_catalog_fetch(sf_scm_client *scm, cs_catalog *cat, sf_error *err)
{
    cJSON *orgs = NULL;

    /* Profiles are mirrored per organization, so they need the org list
     * even when organizations are not in scope. */
    if ((cat->want_orgs || cat->want_profiles) && fetch_orgs(scm, &orgs, err) < 0)
        goto fail;
    if (cat->want_domains && fetch_domains(scm, &cat->domains, err) < 0)
        goto fail;
    if (cat->want_profiles &&
        (fetch_profiles(scm, orgs, &cat->profiles, &cat->profile_orgs, err) < 0 ||
         fetch_custom_fields(scm, &cat->custom_fields, err) < 0))
        goto fail;
    if (cat->want_orgs) {
        cat->orgs = orgs;
        orgs = NULL;
    }
    cJSON_Delete(orgs);
    return 0;
fail:
    cJSON_Delete(orgs);
    cs_catalog_release(cat);
    return -1;
}

void cs_catalog_release(cs_catalog *cat)
{
    if (cat == NULL)
        return;
    cJSON_Delete(cat->orgs);
    cJSON_Delete(cat->domains);
    cJSON_Delete(cat->profiles);
    cJSON_Delete(cat->profile_orgs);
    cJSON_Delete(cat->custom_fields);
    cat->orgs = cat->domains = cat->profiles = cat->profile_orgs = cat->custom_fields = NULL;
}

/* ---- apply (inside the caller's transaction) ---- */

/*
 * Each kind is one statement over the JSON rows: the CTE "old" sees the
 * table before the statement (one snapshot), so added/changed are counted
 * against what was there; rows absent from SCM are marked removed (never
 * deleted: orders refer to them).
 */
static const char sql_orgs[] =
    "WITH input AS (SELECT * FROM jsonb_to_recordset($2::jsonb) AS r(id bigint, parent_id bigint,"
    "   name text, cert_types text[], raw jsonb)),"
    " old AS (SELECT id, raw, status FROM catalog_organizations WHERE account = $1),"
    " up AS (INSERT INTO catalog_organizations AS t (account, id, parent_id, name, cert_types, status,"
    "   raw, last_synced_at, removed_at)"
    "   SELECT $1, id, parent_id, name, coalesce(cert_types, '{}'), 'active', raw, now(), NULL FROM input"
    "   ON CONFLICT (account, id) DO UPDATE SET parent_id = EXCLUDED.parent_id, name = EXCLUDED.name,"
    "   cert_types = EXCLUDED.cert_types, status = 'active', raw = EXCLUDED.raw,"
    "   last_synced_at = now(), removed_at = NULL RETURNING t.id),"
    " gone AS (UPDATE catalog_organizations SET status = 'removed', removed_at = now()"
    "   WHERE account = $1 AND status = 'active' AND id NOT IN (SELECT id FROM input) RETURNING id)"
    " SELECT (SELECT count(*) FROM input i LEFT JOIN old o USING (id) WHERE o.id IS NULL),"
    "  (SELECT count(*) FROM input i JOIN old o USING (id) WHERE o.raw IS DISTINCT FROM i.raw"
    "     OR o.status = 'removed'),"
    "  (SELECT count(*) FROM gone), (SELECT count(*) FROM up)";

static const char sql_domains[] =
    "WITH input AS (SELECT * FROM jsonb_to_recordset($2::jsonb) AS r(id bigint, name text,"
    "   state text, delegation_status text, validation_status text, validation_method text,"
    "   dcv_validation date, dcv_expiration date, raw jsonb)),"
    " old AS (SELECT id, raw, status FROM catalog_domains WHERE account = $1),"
    " up AS (INSERT INTO catalog_domains AS t (account, id, name, state, delegation_status,"
    "   validation_status, validation_method, dcv_validation, dcv_expiration, status, raw,"
    "   last_synced_at, removed_at)"
    "   SELECT $1, id, name, state, delegation_status, validation_status, validation_method,"
    "   dcv_validation, dcv_expiration, 'active', raw, now(), NULL FROM input"
    "   ON CONFLICT (account, id) DO UPDATE SET name = EXCLUDED.name, state = EXCLUDED.state,"
    "   delegation_status = EXCLUDED.delegation_status, validation_status = EXCLUDED.validation_status,"
    "   validation_method = EXCLUDED.validation_method, dcv_validation = EXCLUDED.dcv_validation,"
    "   dcv_expiration = EXCLUDED.dcv_expiration, status = 'active', raw = EXCLUDED.raw,"
    "   last_synced_at = now(), removed_at = NULL RETURNING t.id),"
    " gone AS (UPDATE catalog_domains SET status = 'removed', removed_at = now()"
    "   WHERE account = $1 AND status = 'active' AND id NOT IN (SELECT id FROM input) RETURNING id)"
    " SELECT (SELECT count(*) FROM input i LEFT JOIN old o USING (id) WHERE o.id IS NULL),"
    "  (SELECT count(*) FROM input i JOIN old o USING (id) WHERE o.raw IS DISTINCT FROM i.raw"
    "     OR o.status = 'removed'),"
    "  (SELECT count(*) FROM gone), (SELECT count(*) FROM up)";

/* Delegations of the synced domains are replaced wholesale (after the
 * domains exist: foreign key). */
static const char sql_delegations_del[] =
    "DELETE FROM catalog_domain_delegations WHERE account = $1 AND domain_id IN"
    " (SELECT (e->>'id')::bigint FROM jsonb_array_elements($2::jsonb) e)";
static const char sql_delegations_ins[] =
    "INSERT INTO catalog_domain_delegations (account, domain_id, org_id, cert_types, privileges, status)"
    " SELECT $1, (d->>'id')::bigint, r.org_id, coalesce(r.cert_types, '{}'), coalesce(r.privileges, '{}'),"
    " r.status FROM jsonb_array_elements($2::jsonb) d,"
    " jsonb_to_recordset(d->'delegations') AS r(org_id bigint, cert_types text[], privileges text[],"
    "   status text)"
    " ON CONFLICT (account, domain_id, org_id) DO UPDATE SET cert_types = EXCLUDED.cert_types,"
    " privileges = EXCLUDED.privileges, status = EXCLUDED.status";

static const char sql_profiles[] =
    "WITH input AS (SELECT * FROM jsonb_to_recordset($2::jsonb) AS r(id bigint, name text,"
    "   description text, terms int[], key_types jsonb, use_secondary_org_name boolean, raw jsonb)),"
    " old AS (SELECT id, raw, status FROM catalog_profiles WHERE account = $1),"
    " up AS (INSERT INTO catalog_profiles AS t (account, id, name, description, terms, key_types,"
    "   use_secondary_org_name, status, raw, last_synced_at, removed_at)"
    "   SELECT $1, id, name, description, coalesce(terms, '{}'), coalesce(key_types, '{}'),"
    "   coalesce(use_secondary_org_name, false), 'active', raw, now(), NULL FROM input"
    "   ON CONFLICT (account, id) DO UPDATE SET name = EXCLUDED.name,"
    "   description = EXCLUDED.description, terms = EXCLUDED.terms, key_types = EXCLUDED.key_types,"
    "   use_secondary_org_name = EXCLUDED.use_secondary_org_name, status = 'active',"
    "   raw = EXCLUDED.raw, last_synced_at = now(), removed_at = NULL RETURNING t.id),"
    " gone AS (UPDATE catalog_profiles SET status = 'removed', removed_at = now()"
    "   WHERE account = $1 AND status = 'active' AND id NOT IN (SELECT id FROM input) RETURNING id)"
    " SELECT (SELECT count(*) FROM input i LEFT JOIN old o USING (id) WHERE o.id IS NULL),"
    "  (SELECT count(*) FROM input i JOIN old o USING (id) WHERE o.raw IS DISTINCT FROM i.raw"
    "     OR o.status = 'removed'),"
    "  (SELECT count(*) FROM gone), (SELECT count(*) FROM up)";

static const char sql_profile_orgs_del[] = "DELETE FROM catalog_profile_orgs WHERE account = $1";
static const char sql_profile_orgs_ins[] =
    "INSERT INTO catalog_profile_orgs (account, profile_id, org_id)"
    " SELECT DISTINCT $1, profile_id, org_id FROM jsonb_to_recordset($2::jsonb)"
    "   AS r(profile_id bigint, org_id bigint)";

static const char sql_custom_fields[] =
    "WITH input AS (SELECT * FROM jsonb_to_recordset($2::jsonb) AS r(id bigint, name text,"
    "   mandatory boolean)),"
    " old AS (SELECT id, name, mandatory, status FROM catalog_custom_fields WHERE account = $1),"
    " up AS (INSERT INTO catalog_custom_fields AS t (account, id, name, mandatory, status, last_synced_at)"
    "   SELECT $1, id, name, coalesce(mandatory, false), 'active', now() FROM input"
    "   ON CONFLICT (account, id) DO UPDATE SET name = EXCLUDED.name, mandatory = EXCLUDED.mandatory,"
    "   status = 'active', last_synced_at = now() RETURNING t.id),"
    " gone AS (UPDATE catalog_custom_fields SET status = 'removed'"
    "   WHERE account = $1 AND status = 'active' AND id NOT IN (SELECT id FROM input) RETURNING id)"
    " SELECT (SELECT count(*) FROM input i LEFT JOIN old o USING (id) WHERE o.id IS NULL),"
    "  (SELECT count(*) FROM input i JOIN old o USING (id) WHERE o.name IS DISTINCT FROM i.name"
    "     OR o.mandatory IS DISTINCT FROM i.mandatory OR o.status = 'removed'),"
    "  (SELECT count(*) FROM gone), (SELECT count(*) FROM up)";

static int exec_json(sf_db *db, const char *sql, const char *account, const cJSON *rows,
                     PGresult **res, sf_error *err)
{
    char *text = cJSON_PrintUnformatted(rows);
    const char *params[2] = {account, text};
    int rc;

    if (text == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    rc = sf_db_exec(db, sql, 2, params, res, err);
    cJSON_free(text);
    return rc;
}

static int apply_kind(sf_db *db, const char *sql, const char *account, const cJSON *rows,
                      cJSON *counts, const char *name, sf_error *err)
{
    PGresult *res = NULL;
    cJSON *c;
    int64_t v[3];

    if (exec_json(db, sql, account, rows, &res, err) < 0)
        return -1;
    if (PQntuples(res) != 1 || PQnfields(res) < 3) {
        PQclear(res);
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "unexpected result applying %s", name);
    }
    for (int i = 0; i < 3; i++)
        if (sf_str_to_i64(PQgetvalue(res, 0, i), 0, INT64_MAX, &v[i]) < 0)
            v[i] = 0;
    PQclear(res);
    if ((c = cJSON_AddObjectToObject(counts, name)) == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    cJSON_AddNumberToObject(c, "added", (double)v[0]);
    cJSON_AddNumberToObject(c, "changed", (double)v[1]);
    cJSON_AddNumberToObject(c, "removed", (double)v[2]);
    return 0;
}

int cs_catalog_apply(sf_db *db, const char *account, const cs_catalog *cat, cJSON **counts,
                     sf_error *err)
{
    cJSON *c = cJSON_CreateObject();

    if (c == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    if (cat->orgs != NULL &&
        apply_kind(db, sql_orgs, account, cat->orgs, c, "organizations", err) < 0)
        goto fail;
    if (cat->domains != NULL &&
        (apply_kind(db, sql_domains, account, cat->domains, c, "domains", err) < 0 ||
         exec_json(db, sql_delegations_del, account, cat->domains, NULL, err) < 0 ||
         exec_json(db, sql_delegations_ins, account, cat->domains, NULL, err) < 0))
        goto fail;
    if (cat->profiles != NULL) {
        const char *p1[1] = {account};

        if (apply_kind(db, sql_profiles, account, cat->profiles, c, "profiles", err) < 0 ||
            sf_db_exec(db, sql_profile_orgs_del, 1, p1, NULL, err) < 0 ||
            exec_json(db, sql_profile_orgs_ins, account, cat->profile_orgs, NULL, err) < 0)
            goto fail;
    }
    if (cat->custom_fields != NULL &&
        apply_kind(db, sql_custom_fields, account, cat->custom_fields, c, "custom_fields", err) < 0)
        goto fail;
    *counts = c;
    return 0;
fail:
    cJSON_Delete(c);
    return -1;
}
