/*
 * sf_scm_parse.c - SCM response parsing: every field read from a response is
 * type-checked and named by its JSON path in the error, so a surprising
 * server answer is a defined SF_ERR_INVALID, never a crash. No I/O here (the
 * fuzzer drives these functions directly).
 */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "sf_scm.h"
#include "sf_util.h"

/* ---- small helpers ----------------------------------------------------- */

static void join_path(char *dst, size_t size, const char *pfx, const char *name)
{
    if (pfx == NULL || pfx[0] == '\0')
        (void)sf_snprintf(dst, size, "%s", name);
    else
        (void)sf_snprintf(dst, size, "%s.%s", pfx, name);
}

static int type_error(sf_error *err, const char *path, const char *what)
{
    return sf_error_field(err, path, "scm response: field %s: %s", path, what);
}

static cJSON *parse_doc(const char *body, size_t len, sf_error *err)
{
    cJSON *doc;

    if (body == NULL || len == 0) {
        sf_error_field(err, "", "scm response: empty body where JSON was expected");
        return NULL;
    }
    doc = cJSON_ParseWithLength(body, len);
    if (doc == NULL)
        sf_error_field(err, "", "scm response: not valid JSON");
    return doc;
}

/* Integral JSON number within int64 range (doubles are exact to 2^53). */
static int num_to_i64(const cJSON *it, int64_t *out)
{
    double d;

    if (!cJSON_IsNumber(it))
        return -1;
    d = it->valuedouble;
    if (!isfinite(d) || d != floor(d) || d < -9007199254740992.0 || d > 9007199254740992.0)
        return -1;
    *out = (int64_t)d;
    return 0;
}

/* A string field. Absent or null: error when required, else *out = NULL. */
static int get_str(const cJSON *o, const char *pfx, const char *name, bool required,
                   char **out, sf_error *err)
{
    char path[128];
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);

    join_path(path, sizeof(path), pfx, name);
    if (it == NULL || cJSON_IsNull(it)) {
        if (required)
            return type_error(err, path, "missing");
        *out = NULL;
        return 0;
    }
    if (!cJSON_IsString(it) || it->valuestring == NULL)
        return type_error(err, path, "expected string");
    *out = sf_strdup(it->valuestring);
    if (*out == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    return 0;
}

static int get_i64(const cJSON *o, const char *pfx, const char *name, bool required,
                   int64_t *out, sf_error *err)
{
    char path[128];
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);

    join_path(path, sizeof(path), pfx, name);
    if (it == NULL || cJSON_IsNull(it)) {
        if (required)
            return type_error(err, path, "missing");
        *out = 0;
        return 0;
    }
    if (num_to_i64(it, out) < 0)
        return type_error(err, path, "expected integer");
    return 0;
}

static int get_bool(const cJSON *o, const char *pfx, const char *name, bool *out,
                    sf_error *err)
{
    char path[128];
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);

    join_path(path, sizeof(path), pfx, name);
    if (it == NULL || cJSON_IsNull(it)) {
        *out = false;
        return 0;
    }
    if (!cJSON_IsBool(it))
        return type_error(err, path, "expected boolean");
    *out = cJSON_IsTrue(it);
    return 0;
}

static void strv_free(sf_scm_strv *v)
{
    if (v->v) {
        for (size_t i = 0; i < v->n; i++)
            free(v->v[i]);
        free(v->v);
    }
    v->v = NULL;
    v->n = 0;
}

/* Optional array of strings (absent => empty). */
static int get_strv(const cJSON *o, const char *pfx, const char *name, sf_scm_strv *out,
                    sf_error *err)
{
    char path[128];
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
    const cJSON *el;
    sf_scm_strv v = { NULL, 0 };
    int n, i = 0;

    join_path(path, sizeof(path), pfx, name);
    if (it == NULL || cJSON_IsNull(it)) {
        *out = v;
        return 0;
    }
    if (!cJSON_IsArray(it))
        return type_error(err, path, "expected array");
    n = cJSON_GetArraySize(it);
    if (n > 0) {
        v.v = calloc((size_t)n, sizeof(*v.v));
        if (v.v == NULL)
            return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    }
    cJSON_ArrayForEach(el, it) {
        if (!cJSON_IsString(el) || el->valuestring == NULL) {
            char ep[160];
            (void)sf_snprintf(ep, sizeof(ep), "%s[%d]", path, i);
            strv_free(&v);
            return type_error(err, ep, "expected string");
        }
        v.v[v.n] = sf_strdup(el->valuestring);
        if (v.v[v.n] == NULL) {
            strv_free(&v);
            return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        }
        v.n++;
        i++;
    }
    *out = v;
    return 0;
}

static int expect_array(const cJSON *doc, const char *what, sf_error *err)
{
    if (!cJSON_IsArray(doc))
        return type_error(err, what, "expected array");
    return 0;
}

static int expect_object(const cJSON *it, const char *path, sf_error *err)
{
    if (!cJSON_IsObject(it))
        return type_error(err, path[0] ? path : "(root)", "expected object");
    return 0;
}

/* ---- free functions ---------------------------------------------------- */

void sf_scm_org_list_free(sf_scm_org_list *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++) {
        sf_scm_org *o = &l->orgs[i];
        free(o->name);
        strv_free(&o->cert_types);
        for (size_t j = 0; j < o->n_departments; j++) {
            free(o->departments[j].name);
            free(o->departments[j].parent_name);
        }
        free(o->departments);
    }
    free(l->orgs);
    free(l);
}

void sf_scm_domain_page_free(sf_scm_domain_page *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n; i++)
        free(p->items[i].name);
    free(p->items);
    free(p);
}

void sf_scm_domain_free(sf_scm_domain *d)
{
    if (d == NULL)
        return;
    free(d->name);
    free(d->delegation_status);
    free(d->state);
    free(d->validation_status);
    free(d->validation_method);
    free(d->dcv_validation);
    free(d->dcv_expiration);
    for (size_t i = 0; i < d->n_delegations; i++) {
        strv_free(&d->delegations[i].cert_types);
        strv_free(&d->delegations[i].privileges);
        free(d->delegations[i].status);
    }
    free(d->delegations);
    free(d);
}

static void profile_release(sf_scm_profile *p)
{
    free(p->name);
    free(p->description);
    free(p->terms);
    for (size_t j = 0; j < p->n_key_types; j++) {
        free(p->key_types[j].alg);
        strv_free(&p->key_types[j].sizes);
    }
    free(p->key_types);
}

void sf_scm_profile_list_free(sf_scm_profile_list *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++)
        profile_release(&l->profiles[i]);
    free(l->profiles);
    free(l);
}

void sf_scm_custom_field_list_free(sf_scm_custom_field_list *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->fields[i].name);
    free(l->fields);
    free(l);
}

void sf_scm_cert_free(sf_scm_cert *c)
{
    if (c == NULL)
        return;
    free(c->common_name);
    free(c->status);
    free(c->backend_cert_id);
    free(c->vendor);
    free(c->cert_type_name);
    free(c->validation_type);
    free(c->owner);
    free(c->requester);
    free(c->requested_via);
    free(c->external_requester);
    free(c->comments);
    free(c->requested);
    free(c->approved);
    free(c->issued);
    free(c->declined);
    free(c->expires);
    free(c->replaced);
    free(c->revoked);
    free(c->renewed_date);
    free(c->reason_code);
    free(c->serial_number);
    free(c->signature_alg);
    free(c->key_algorithm);
    free(c->key_type);
    strv_free(&c->sans);
    free(c->subject);
    free(c->issuer);
    free(c->sha1_hash);
    free(c);
}

void sf_scm_cert_page_free(sf_scm_cert_page *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n; i++) {
        free(p->items[i].common_name);
        strv_free(&p->items[i].sans);
        free(p->items[i].serial_number);
    }
    free(p->items);
    free(p);
}

void sf_scm_roles_free(sf_scm_roles *r)
{
    if (r == NULL)
        return;
    strv_free(&r->roles);
    free(r);
}

/* ---- parsers ----------------------------------------------------------- */

int sf_scm_parse_orgs(const char *body, size_t len, sf_scm_org_list **out, sf_error *err)
{
    int rc = -1;
    cJSON *doc = parse_doc(body, len, err);
    const cJSON *el;
    sf_scm_org_list *l = NULL;
    int n, i = 0;

    if (doc == NULL || expect_array(doc, "orgs", err) < 0)
        goto out;
    l = calloc(1, sizeof(*l));
    n = cJSON_GetArraySize(doc);
    if (l == NULL || (n > 0 && (l->orgs = calloc((size_t)n, sizeof(*l->orgs))) == NULL)) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    cJSON_ArrayForEach(el, doc) {
        char pfx[64];
        sf_scm_org *o = &l->orgs[l->n];
        const cJSON *deps, *d;
        int j = 0, nd;

        (void)sf_snprintf(pfx, sizeof(pfx), "orgs[%d]", i++);
        if (expect_object(el, pfx, err) < 0)
            goto out;
        l->n++; /* counted before filling so a failure frees what is there */
        if (get_i64(el, pfx, "id", true, &o->id, err) < 0 ||
            get_str(el, pfx, "name", true, &o->name, err) < 0 ||
            get_strv(el, pfx, "certTypes", &o->cert_types, err) < 0)
            goto out;
        deps = cJSON_GetObjectItemCaseSensitive(el, "departments");
        if (deps == NULL || cJSON_IsNull(deps))
            continue;
        if (!cJSON_IsArray(deps)) {
            char p2[96];
            join_path(p2, sizeof(p2), pfx, "departments");
            type_error(err, p2, "expected array");
            goto out;
        }
        nd = cJSON_GetArraySize(deps);
        if (nd > 0 && (o->departments = calloc((size_t)nd, sizeof(*o->departments))) == NULL) {
            sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
            goto out;
        }
        cJSON_ArrayForEach(d, deps) {
            char dp[96];
            sf_scm_department *dep = &o->departments[o->n_departments];

            (void)sf_snprintf(dp, sizeof(dp), "%s.departments[%d]", pfx, j++);
            if (expect_object(d, dp, err) < 0)
                goto out;
            o->n_departments++;
            if (get_i64(d, dp, "id", true, &dep->id, err) < 0 ||
                get_str(d, dp, "name", true, &dep->name, err) < 0 ||
                get_str(d, dp, "parentName", false, &dep->parent_name, err) < 0)
                goto out;
        }
    }
    *out = l;
    l = NULL;
    rc = 0;
out:
    sf_scm_org_list_free(l);
    cJSON_Delete(doc);
    return rc;
}

int sf_scm_parse_domains(const char *body, size_t len, sf_scm_domain_page **out,
                         sf_error *err)
{
    int rc = -1;
    cJSON *doc = parse_doc(body, len, err);
    const cJSON *el;
    sf_scm_domain_page *p = NULL;
    int n, i = 0;

    if (doc == NULL || expect_array(doc, "domains", err) < 0)
        goto out;
    p = calloc(1, sizeof(*p));
    n = cJSON_GetArraySize(doc);
    if (p == NULL || (n > 0 && (p->items = calloc((size_t)n, sizeof(*p->items))) == NULL)) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    p->total = -1;
    cJSON_ArrayForEach(el, doc) {
        char pfx[64];
        sf_scm_domain_ref *r = &p->items[p->n];

        (void)sf_snprintf(pfx, sizeof(pfx), "domains[%d]", i++);
        if (expect_object(el, pfx, err) < 0)
            goto out;
        p->n++;
        if (get_i64(el, pfx, "id", true, &r->id, err) < 0 ||
            get_str(el, pfx, "name", true, &r->name, err) < 0)
            goto out;
    }
    *out = p;
    p = NULL;
    rc = 0;
out:
    sf_scm_domain_page_free(p);
    cJSON_Delete(doc);
    return rc;
}

int sf_scm_parse_domain(const char *body, size_t len, sf_scm_domain **out, sf_error *err)
{
    int rc = -1;
    cJSON *doc = parse_doc(body, len, err);
    const cJSON *dels, *el;
    sf_scm_domain *d = NULL;
    int i = 0, n;

    if (doc == NULL || expect_object(doc, "", err) < 0)
        goto out;
    if ((d = calloc(1, sizeof(*d))) == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    if (get_i64(doc, "", "id", true, &d->id, err) < 0 ||
        get_str(doc, "", "name", true, &d->name, err) < 0 ||
        get_str(doc, "", "delegationStatus", false, &d->delegation_status, err) < 0 ||
        get_str(doc, "", "state", false, &d->state, err) < 0 ||
        get_str(doc, "", "validationStatus", false, &d->validation_status, err) < 0 ||
        get_str(doc, "", "validationMethod", false, &d->validation_method, err) < 0 ||
        get_str(doc, "", "dcvValidation", false, &d->dcv_validation, err) < 0 ||
        get_str(doc, "", "dcvExpiration", false, &d->dcv_expiration, err) < 0)
        goto out;
    dels = cJSON_GetObjectItemCaseSensitive(doc, "delegations");
    if (dels != NULL && !cJSON_IsNull(dels)) {
        if (!cJSON_IsArray(dels)) {
            type_error(err, "delegations", "expected array");
            goto out;
        }
        n = cJSON_GetArraySize(dels);
        if (n > 0 && (d->delegations = calloc((size_t)n, sizeof(*d->delegations))) == NULL) {
            sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
            goto out;
        }
        cJSON_ArrayForEach(el, dels) {
            char pfx[64];
            sf_scm_delegation *g = &d->delegations[d->n_delegations];

            (void)sf_snprintf(pfx, sizeof(pfx), "delegations[%d]", i++);
            if (expect_object(el, pfx, err) < 0)
                goto out;
            d->n_delegations++;
            if (get_i64(el, pfx, "orgId", true, &g->org_id, err) < 0 ||
                get_strv(el, pfx, "certTypes", &g->cert_types, err) < 0 ||
                get_strv(el, pfx, "domainCertificateRequestPrivileges", &g->privileges,
                         err) < 0 ||
                get_str(el, pfx, "status", false, &g->status, err) < 0)
                goto out;
        }
    }
    *out = d;
    d = NULL;
    rc = 0;
out:
    sf_scm_domain_free(d);
    cJSON_Delete(doc);
    return rc;
}

/* One profile object (also used for details' certType). */
static int parse_profile(const cJSON *el, const char *pfx, sf_scm_profile *p, sf_error *err)
{
    char path[128];
    const cJSON *terms, *kt, *t;
    int i = 0, n;

    if (expect_object(el, pfx, err) < 0 ||
        get_i64(el, pfx, "id", true, &p->id, err) < 0 ||
        get_str(el, pfx, "name", true, &p->name, err) < 0 ||
        get_str(el, pfx, "description", false, &p->description, err) < 0 ||
        get_bool(el, pfx, "useSecondaryOrgName", &p->use_secondary_org_name, err) < 0)
        return -1;
    terms = cJSON_GetObjectItemCaseSensitive(el, "terms");
    if (terms != NULL && !cJSON_IsNull(terms)) {
        join_path(path, sizeof(path), pfx, "terms");
        if (!cJSON_IsArray(terms))
            return type_error(err, path, "expected array");
        n = cJSON_GetArraySize(terms);
        if (n > 0 && (p->terms = calloc((size_t)n, sizeof(*p->terms))) == NULL)
            return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        cJSON_ArrayForEach(t, terms) {
            if (num_to_i64(t, &p->terms[p->n_terms]) < 0) {
                char ep[160];
                (void)sf_snprintf(ep, sizeof(ep), "%s[%d]", path, i);
                return type_error(err, ep, "expected integer");
            }
            p->n_terms++;
            i++;
        }
    }
    kt = cJSON_GetObjectItemCaseSensitive(el, "keyTypes");
    if (kt != NULL && !cJSON_IsNull(kt)) {
        join_path(path, sizeof(path), pfx, "keyTypes");
        if (!cJSON_IsObject(kt))
            return type_error(err, path, "expected object");
        n = cJSON_GetArraySize(kt);
        if (n > 0 && (p->key_types = calloc((size_t)n, sizeof(*p->key_types))) == NULL)
            return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        cJSON_ArrayForEach(t, kt) {
            sf_scm_key_type *k = &p->key_types[p->n_key_types];
            const cJSON *s;
            int m, j = 0;
            char kp[192];

            if (t->string == NULL)
                return type_error(err, path, "expected object");
            (void)sf_snprintf(kp, sizeof(kp), "%s.%s", path, t->string);
            if (!cJSON_IsArray(t))
                return type_error(err, kp, "expected array");
            if ((k->alg = sf_strdup(t->string)) == NULL)
                return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
            p->n_key_types++;
            m = cJSON_GetArraySize(t);
            if (m > 0 && (k->sizes.v = calloc((size_t)m, sizeof(char *))) == NULL)
                return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
            cJSON_ArrayForEach(s, t) {
                /* The doc shows sizes as strings ("2048"); tolerate numbers,
                 * normalised to their decimal text. */
                int64_t v;
                char num[32];
                const char *txt;

                if (cJSON_IsString(s) && s->valuestring) {
                    txt = s->valuestring;
                } else if (num_to_i64(s, &v) == 0) {
                    (void)sf_snprintf(num, sizeof(num), "%lld", (long long)v);
                    txt = num;
                } else {
                    char ep[224];
                    (void)sf_snprintf(ep, sizeof(ep), "%s[%d]", kp, j);
                    return type_error(err, ep, "expected string");
                }
                if ((k->sizes.v[k->sizes.n] = sf_strdup(txt)) == NULL)
                    return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
                k->sizes.n++;
                j++;
            }
        }
    }
    return 0;
}

int sf_scm_parse_profiles(const char *body, size_t len, sf_scm_profile_list **out,
                          sf_error *err)
{
    int rc = -1;
    cJSON *doc = parse_doc(body, len, err);
    const cJSON *el;
    sf_scm_profile_list *l = NULL;
    int n, i = 0;

    if (doc == NULL || expect_array(doc, "profiles", err) < 0)
        goto out;
    l = calloc(1, sizeof(*l));
    n = cJSON_GetArraySize(doc);
    if (l == NULL || (n > 0 && (l->profiles = calloc((size_t)n, sizeof(*l->profiles))) == NULL)) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    cJSON_ArrayForEach(el, doc) {
        char pfx[64];

        (void)sf_snprintf(pfx, sizeof(pfx), "profiles[%d]", i++);
        l->n++;
        if (parse_profile(el, pfx, &l->profiles[l->n - 1], err) < 0)
            goto out;
    }
    *out = l;
    l = NULL;
    rc = 0;
out:
    sf_scm_profile_list_free(l);
    cJSON_Delete(doc);
    return rc;
}

int sf_scm_parse_custom_fields(const char *body, size_t len, sf_scm_custom_field_list **out,
                               sf_error *err)
{
    int rc = -1;
    cJSON *doc = parse_doc(body, len, err);
    const cJSON *el;
    sf_scm_custom_field_list *l = NULL;
    int n, i = 0;

    if (doc == NULL || expect_array(doc, "customFields", err) < 0)
        goto out;
    l = calloc(1, sizeof(*l));
    n = cJSON_GetArraySize(doc);
    if (l == NULL || (n > 0 && (l->fields = calloc((size_t)n, sizeof(*l->fields))) == NULL)) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    cJSON_ArrayForEach(el, doc) {
        char pfx[64];
        sf_scm_custom_field *f = &l->fields[l->n];

        (void)sf_snprintf(pfx, sizeof(pfx), "customFields[%d]", i++);
        if (expect_object(el, pfx, err) < 0)
            goto out;
        l->n++;
        if (get_i64(el, pfx, "id", true, &f->id, err) < 0 ||
            get_str(el, pfx, "name", true, &f->name, err) < 0 ||
            get_bool(el, pfx, "mandatory", &f->mandatory, err) < 0)
            goto out;
    }
    *out = l;
    l = NULL;
    rc = 0;
out:
    sf_scm_custom_field_list_free(l);
    cJSON_Delete(doc);
    return rc;
}

int sf_scm_parse_enroll(const char *body, size_t len, sf_scm_enroll_resp *out, sf_error *err)
{
    int rc = -1;
    cJSON *doc = parse_doc(body, len, err);
    sf_scm_enroll_resp r;
    char *renew = NULL;

    memset(&r, 0, sizeof(r));
    if (doc == NULL || expect_object(doc, "", err) < 0 ||
        get_i64(doc, "", "sslId", true, &r.ssl_id, err) < 0 ||
        get_str(doc, "", "renewId", false, &renew, err) < 0)
        goto out;
    if (r.ssl_id <= 0) {
        type_error(err, "sslId", "expected a positive id");
        goto out;
    }
    if (renew && sf_snprintf(r.renew_id, sizeof(r.renew_id), "%s", renew) < 0) {
        type_error(err, "renewId", "too long");
        goto out;
    }
    *out = r;
    rc = 0;
out:
    free(renew);
    cJSON_Delete(doc);
    return rc;
}

/* reasonCode is a number in the doc and a string enum in the OpenAPI spec:
 * keep it as text either way. */
static int get_num_or_str(const cJSON *o, const char *name, char **out, sf_error *err)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
    int64_t v;

    *out = NULL;
    if (it == NULL || cJSON_IsNull(it))
        return 0;
    if (cJSON_IsString(it) && it->valuestring)
        *out = sf_strdup(it->valuestring);
    else if (num_to_i64(it, &v) == 0)
        *out = sf_asprintf("%lld", (long long)v);
    else
        return type_error(err, name, "expected number or string");
    if (*out == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    return 0;
}

int sf_scm_parse_cert(const char *body, size_t len, sf_scm_cert **out, sf_error *err)
{
    int rc = -1;
    cJSON *doc = parse_doc(body, len, err);
    const cJSON *ct, *cd;
    sf_scm_cert *c = NULL;
    int64_t sslid = 0;

    if (doc == NULL || expect_object(doc, "", err) < 0)
        goto out;
    if ((c = calloc(1, sizeof(*c))) == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    if (get_i64(doc, "", "id", false, &c->id, err) < 0 ||
        get_i64(doc, "", "sslId", false, &sslid, err) < 0)
        goto out;
    if (c->id == 0)
        c->id = sslid;
    if (c->id <= 0) {
        type_error(err, "id", "missing");
        goto out;
    }
    if (get_str(doc, "", "commonName", false, &c->common_name, err) < 0 ||
        get_i64(doc, "", "orgId", false, &c->org_id, err) < 0 ||
        get_str(doc, "", "status", true, &c->status, err) < 0 ||
        get_i64(doc, "", "orderNumber", false, &c->order_number, err) < 0 ||
        get_str(doc, "", "backendCertId", false, &c->backend_cert_id, err) < 0 ||
        get_str(doc, "", "vendor", false, &c->vendor, err) < 0 ||
        get_str(doc, "", "validationType", false, &c->validation_type, err) < 0 ||
        get_i64(doc, "", "term", false, &c->term, err) < 0 ||
        get_str(doc, "", "owner", false, &c->owner, err) < 0 ||
        get_str(doc, "", "requester", false, &c->requester, err) < 0 ||
        get_str(doc, "", "requestedVia", false, &c->requested_via, err) < 0 ||
        get_str(doc, "", "externalRequester", false, &c->external_requester, err) < 0 ||
        get_str(doc, "", "comments", false, &c->comments, err) < 0 ||
        get_str(doc, "", "requested", false, &c->requested, err) < 0 ||
        get_str(doc, "", "approved", false, &c->approved, err) < 0 ||
        get_str(doc, "", "issued", false, &c->issued, err) < 0 ||
        get_str(doc, "", "declined", false, &c->declined, err) < 0 ||
        get_str(doc, "", "expires", false, &c->expires, err) < 0 ||
        get_str(doc, "", "replaced", false, &c->replaced, err) < 0 ||
        get_str(doc, "", "revoked", false, &c->revoked, err) < 0 ||
        get_str(doc, "", "renewedDate", false, &c->renewed_date, err) < 0 ||
        get_num_or_str(doc, "reasonCode", &c->reason_code, err) < 0 ||
        get_bool(doc, "", "renewed", &c->renewed, err) < 0 ||
        get_str(doc, "", "serialNumber", false, &c->serial_number, err) < 0 ||
        get_str(doc, "", "signatureAlg", false, &c->signature_alg, err) < 0 ||
        get_str(doc, "", "keyAlgorithm", false, &c->key_algorithm, err) < 0 ||
        get_i64(doc, "", "keySize", false, &c->key_size, err) < 0 ||
        get_str(doc, "", "keyType", false, &c->key_type, err) < 0 ||
        get_strv(doc, "", "subjectAlternativeNames", &c->sans, err) < 0)
        goto out;
    ct = cJSON_GetObjectItemCaseSensitive(doc, "certType");
    if (ct != NULL && !cJSON_IsNull(ct)) {
        if (expect_object(ct, "certType", err) < 0 ||
            get_i64(ct, "certType", "id", true, &c->cert_type_id, err) < 0 ||
            get_str(ct, "certType", "name", false, &c->cert_type_name, err) < 0)
            goto out;
    }
    cd = cJSON_GetObjectItemCaseSensitive(doc, "certificateDetails");
    if (cd != NULL && !cJSON_IsNull(cd)) {
        if (expect_object(cd, "certificateDetails", err) < 0 ||
            get_str(cd, "certificateDetails", "subject", false, &c->subject, err) < 0 ||
            get_str(cd, "certificateDetails", "issuer", false, &c->issuer, err) < 0 ||
            get_str(cd, "certificateDetails", "sha1Hash", false, &c->sha1_hash, err) < 0)
            goto out;
    }
    *out = c;
    c = NULL;
    rc = 0;
out:
    sf_scm_cert_free(c);
    cJSON_Delete(doc);
    return rc;
}

int sf_scm_parse_cert_list(const char *body, size_t len, sf_scm_cert_page **out,
                           sf_error *err)
{
    int rc = -1;
    cJSON *doc = parse_doc(body, len, err);
    const cJSON *el;
    sf_scm_cert_page *p = NULL;
    int n, i = 0;

    if (doc == NULL || expect_array(doc, "certs", err) < 0)
        goto out;
    p = calloc(1, sizeof(*p));
    n = cJSON_GetArraySize(doc);
    if (p == NULL || (n > 0 && (p->items = calloc((size_t)n, sizeof(*p->items))) == NULL)) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    p->total = -1;
    cJSON_ArrayForEach(el, doc) {
        char pfx[64];
        sf_scm_cert_ref *r = &p->items[p->n];

        (void)sf_snprintf(pfx, sizeof(pfx), "certs[%d]", i++);
        if (expect_object(el, pfx, err) < 0)
            goto out;
        p->n++;
        if (get_i64(el, pfx, "sslId", true, &r->ssl_id, err) < 0 ||
            get_str(el, pfx, "commonName", false, &r->common_name, err) < 0 ||
            get_strv(el, pfx, "subjectAlternativeNames", &r->sans, err) < 0 ||
            get_str(el, pfx, "serialNumber", false, &r->serial_number, err) < 0)
            goto out;
    }
    *out = p;
    p = NULL;
    rc = 0;
out:
    sf_scm_cert_page_free(p);
    cJSON_Delete(doc);
    return rc;
}

/* ---- errors ------------------------------------------------------------ */

static bool is_pending_code(int code)
{
    return code == 0 || code == -1400 || code == -183 || code == -109;
}

int sf_scm_error_from_response(int http_status, const char *body, size_t len, bool collect,
                               int retry_after_ms, sf_error *err)
{
    cJSON *doc = NULL;
    const cJSON *jc, *jd;
    bool has_code = false;
    int code = 0;
    char desc[300] = "";
    sf_err_class cls;
    int64_t v;

    if (body && len > 0 && len <= 65536)
        doc = cJSON_ParseWithLength(body, len);
    if (cJSON_IsObject(doc)) {
        jc = cJSON_GetObjectItemCaseSensitive(doc, "code");
        jd = cJSON_GetObjectItemCaseSensitive(doc, "description");
        if (num_to_i64(jc, &v) == 0 && v >= -2147483647 && v <= 2147483647) {
            has_code = true;
            code = (int)v;
        }
        if (cJSON_IsString(jd) && jd->valuestring) {
            /* Keep the text printable: it ends up in logs and events. */
            size_t k = 0;
            for (const char *s = jd->valuestring; *s && k + 1 < sizeof(desc); s++)
                desc[k++] = (char)(((unsigned char)*s < 0x20 || *s == 0x7f) ? ' ' : *s);
            desc[k] = '\0';
        }
    }
    cJSON_Delete(doc);

    if (collect && http_status == 200) {
        cls = SF_ERR_PENDING;
        if (desc[0] == '\0')
            (void)sf_snprintf(desc, sizeof(desc), "empty response: certificate not ready");
    } else if (collect && http_status == 400 && has_code && is_pending_code(code)) {
        cls = SF_ERR_PENDING;
    } else if (http_status == 401 || (has_code && (code == -16 || code == -970))) {
        cls = SF_ERR_AUTH;
    } else if (http_status == 429 || http_status == 503 || http_status == 408 ||
               http_status >= 500 || (has_code && (code == -195 || code == -140))) {
        cls = SF_ERR_TRANSIENT;
    } else if (http_status == 404) {
        cls = SF_ERR_NOT_FOUND;
    } else if (http_status >= 400 && http_status < 500) {
        cls = SF_ERR_REJECTED;
    } else {
        cls = SF_ERR_INVALID;
    }
    if (err == NULL)
        return -1;
    if (has_code)
        sf_error_set(err, cls, code, "scm: HTTP %d, code %d: %s", http_status, code,
                     desc[0] ? desc : "(no description)");
    else
        sf_error_set(err, cls, http_status, "scm: HTTP %d%s%s", http_status,
                     desc[0] ? ": " : "", desc);
    err->http_status = http_status;
    err->retry_after_ms = retry_after_ms;
    return -1;
}

/* ---- misc -------------------------------------------------------------- */

/* Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int sf_scm_parse_date(const char *s, int64_t *epoch_s, sf_error *err)
{
    static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    int64_t m, d, y;
    char mm[3], dd[3], yy[5];

    if (s == NULL || strlen(s) != 10 || s[2] != '/' || s[5] != '/')
        return sf_error_field(err, "date", "scm date \"%s\": expected MM/dd/yyyy",
                              s ? s : "(null)");
    memcpy(mm, s, 2);
    mm[2] = '\0';
    memcpy(dd, s + 3, 2);
    dd[2] = '\0';
    memcpy(yy, s + 6, 4);
    yy[4] = '\0';
    for (int i = 0; i < 10; i++)
        if (i != 2 && i != 5 && !isdigit((unsigned char)s[i]))
            return sf_error_field(err, "date", "scm date \"%s\": expected MM/dd/yyyy", s);
    if (sf_str_to_i64(mm, 1, 12, &m) < 0 || sf_str_to_i64(dd, 1, 31, &d) < 0 ||
        sf_str_to_i64(yy, 1970, 9999, &y) < 0 || d > mdays[m - 1] ||
        (m == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)))
        return sf_error_field(err, "date", "scm date \"%s\": out of range", s);
    *epoch_s = days_from_civil(y, m, d) * 86400;
    return 0;
}

bool sf_scm_format_valid(const char *f)
{
    static const char *const fmts[] = { "x509", "x509CO", "x509IO", "x509IOR", "x509R",
                                         "base64", "bin", "pem", "pemco", "pemia" };

    if (f == NULL)
        return false;
    for (size_t i = 0; i < SF_ARRAY_LEN(fmts); i++)
        if (strcmp(f, fmts[i]) == 0)
            return true;
    return false;
}
