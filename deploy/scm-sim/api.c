/* scm-sim: the SCM REST API (/api/... and /private/api/...), per scm-api.md.
 * Every function here runs with g_sim.mu held. */
#include "sim.h"

#include <ctype.h>
#include <stdarg.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_SEGS 8

typedef struct segs {
    char buf[1024];
    const char *s[MAX_SEGS];
    int n;
} segs;

static void split_path(const char *p, segs *out)
{
    snprintf(out->buf, sizeof out->buf, "%s", p);
    out->n = 0;
    char *q = out->buf;
    while (*q && out->n < MAX_SEGS) {
        while (*q == '/')
            q++;
        if (!*q)
            break;
        out->s[out->n++] = q;
        char *e = strchr(q, '/');
        if (!e)
            break;
        *e = '\0';
        q = e + 1;
    }
}

/* pattern like "ssl/v1/collect/ * / *" with '*' wildcards (no spaces) */
static bool match(const segs *s, int n, ...)
{
    if (s->n != n)
        return false;
    va_list ap;
    va_start(ap, n);
    bool ok = true;
    for (int i = 0; i < n; i++) {
        const char *w = va_arg(ap, const char *);
        if (strcmp(w, "*") != 0 && strcmp(w, s->s[i]) != 0) {
            ok = false;
            break;
        }
    }
    va_end(ap);
    return ok;
}

static int parse_int(const char *s, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!s[0] || errno || *end)
        return -1;
    *out = v;
    return 0;
}

static bool is_mrao(const cJSON *admin)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(admin, "credentials")) {
        const char *r = store_json_str(c, "role", "");
        if (strcmp(r, "MRAO") == 0)
            return true;
    }
    return false;
}

/* May this admin act on org_id (org or department)? */
static bool admin_can_org(const cJSON *admin, int org_id)
{
    if (is_mrao(admin))
        return true;
    const cJSON *parent = NULL;
    store_org(org_id, &parent);
    int pid = parent ? store_json_int(parent, "id", -1) : -1;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(admin, "credentials")) {
        int o = store_json_int(c, "orgId", -2);
        if (o == org_id || o == pid)
            return true;
    }
    return false;
}

static bool str_in_array(const cJSON *arr, const char *s)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        if (cJSON_IsString(e) && strcasecmp(e->valuestring, s) == 0)
            return true;
    }
    return false;
}

static bool int_in_array(const cJSON *arr, int v)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        if (cJSON_IsNumber(e) && e->valueint == v)
            return true;
    }
    return false;
}

static const cJSON *org_cert_types(const cJSON *org, const cJSON *parent)
{
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(org, "certTypes");
    if (!ct && parent)
        ct = cJSON_GetObjectItemCaseSensitive(parent, "certTypes");
    return ct;
}

static bool profile_available(const cJSON *prof, int org_id)
{
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(prof, "orgIds");
    if (!cJSON_IsArray(ids))
        return true;
    if (int_in_array(ids, org_id))
        return true;
    const cJSON *parent = NULL;
    store_org(org_id, &parent);
    return parent && int_in_array(ids, store_json_int(parent, "id", -1));
}

static long qlong(const sim_req *r, const char *k, long dflt, bool *bad)
{
    const char *v = req_query(r, k);
    long x;
    if (!v)
        return dflt;
    if (parse_int(v, &x)) {
        *bad = true;
        return dflt;
    }
    return x;
}

/* position/size; false => error response set */
static bool paging(const sim_req *r, sim_resp *resp, long *pos, long *size)
{
    bool bad = false;
    *pos = qlong(r, "position", 0, &bad);
    *size = qlong(r, "size", 10, &bad);
    if (bad || *pos < 0 || *size < 0 || *size > 200) {
        resp_error(resp, 400, -1601, "Field '%s' has invalid value.",
                   (*pos < 0 || bad) ? "position" : "size");
        if (bad && *size >= 0 && *size <= 200 && *pos >= 0)
            resp_error(resp, 400, -1601, "Field 'size' has invalid value.");
        return false;
    }
    return true;
}

/* JSON field readers: 1 present and well typed, 0 absent or null, -1 wrong type
 * (=> -1002, as Jackson would fail to bind it). */
static int jint(const cJSON *o, const char *k, long *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (cJSON_IsNumber(v)) {
        /* int32 like Jackson's binding; also keeps the cast below defined */
        if (!(v->valuedouble >= -2147483648.0 && v->valuedouble <= 2147483647.0) ||
            v->valuedouble != (double)(long)v->valuedouble)
            return -1;
        *out = (long)v->valuedouble;
        return 1;
    }
    if (cJSON_IsString(v) && parse_int(v->valuestring, out) == 0 && *out >= -2147483647L - 1 &&
        *out <= 2147483647L)
        return 1;
    return -1;
}

static int jstr(const cJSON *o, const char *k, const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsString(v))
        return -1;
    *out = v->valuestring;
    return 1;
}

static void err_parse(sim_resp *r) { resp_error(r, 400, -1002, "Cannot parse message body"); }

/* Parse the body as a JSON object; false => -1002 set. */
static cJSON *body_object(const sim_req *r, sim_resp *resp, bool allow_empty)
{
    if (r->body_len == 0 && allow_empty)
        return cJSON_CreateObject();
    cJSON *j = cJSON_ParseWithLength(r->body, r->body_len);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        err_parse(resp);
        return NULL;
    }
    return j;
}

/* ------------------------------------------------------------ auth */

static bool authenticate(sim_req *r, sim_resp *resp)
{
    const char *login = req_header(r, "login");
    const char *password = req_header(r, "password");
    const char *cu = req_header(r, "customerUri");
    const cJSON *a = login ? store_admin_by_login(login) : NULL;
    bool ok = a && cu && g_sim.customer_uri && strcmp(cu, g_sim.customer_uri) == 0;
    if (ok && !r->private_api) {
        const char *pw = store_json_str(a, "password", NULL);
        ok = password && pw && strcmp(password, pw) == 0;
    }
    if (!ok) {
        resp_error(resp, 401, -16, "Unknown user");
        return false;
    }
    r->admin = a;
    return true;
}

/* ----------------------------------------------------- organizations */

static cJSON *org_json(const cJSON *o, const cJSON *parent, bool details)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "id", store_json_int(o, "id", 0));
    cJSON_AddStringToObject(j, "name", store_json_str(o, "name", ""));
    const cJSON *ct = org_cert_types(o, parent);
    cJSON_AddItemToObject(j, "certTypes", ct ? cJSON_Duplicate(ct, 1) : cJSON_CreateArray());
    if (parent) {
        cJSON_AddNumberToObject(j, "parentId", store_json_int(parent, "id", 0));
        cJSON_AddStringToObject(j, "parentName", store_json_str(parent, "name", ""));
    }
    cJSON *deps = cJSON_AddArrayToObject(j, "departments");
    const cJSON *d;
    cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(o, "departments")) {
        cJSON *dj = cJSON_CreateObject();
        cJSON_AddNumberToObject(dj, "id", store_json_int(d, "id", 0));
        cJSON_AddStringToObject(dj, "name", store_json_str(d, "name", ""));
        cJSON_AddStringToObject(dj, "parentName", store_json_str(o, "name", ""));
        const cJSON *dct = org_cert_types(d, o);
        cJSON_AddItemToObject(dj, "certTypes", dct ? cJSON_Duplicate(dct, 1) : cJSON_CreateArray());
        cJSON_AddItemToArray(deps, dj);
    }
    if (details) {
        static const char *const extra[] = {"address1", "city", "stateOrProvince", "postalCode", "country"};
        for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
            const char *v = store_json_str(o, extra[i], NULL);
            if (v)
                cJSON_AddStringToObject(j, extra[i], v);
        }
        cJSON_AddStringToObject(j, "validationStatus", store_json_str(o, "validationStatus", "VALIDATED"));
        const cJSON *api = cJSON_GetObjectItemCaseSensitive(o, "sslCertsApiEnabled");
        cJSON_AddBoolToObject(j, "sslCertsApiEnabled", api ? cJSON_IsTrue(api) : true);
        cJSON_AddBoolToObject(j, "clientCertsApiEnabled", true);
    }
    return j;
}

static void h_orgs(sim_req *r, sim_resp *resp)
{
    cJSON *arr = cJSON_CreateArray();
    const cJSON *o;
    cJSON_ArrayForEach(o, g_sim.orgs) {
        if (admin_can_org(r->admin, store_json_int(o, "id", -1)))
            cJSON_AddItemToArray(arr, org_json(o, NULL, false));
    }
    resp_json(resp, 200, arr);
}

static void h_org(sim_req *r, sim_resp *resp, const char *ids)
{
    long id;
    const cJSON *parent = NULL, *o = NULL;
    if (parse_int(ids, &id) == 0)
        o = store_org((int)id, &parent);
    if (!o || !admin_can_org(r->admin, (int)id)) {
        resp_error(resp, 404, -1023, "Organization '%s' not found.", ids);
        return;
    }
    resp_json(resp, 200, org_json(o, parent, true));
}

/* ----------------------------------------------------------- domains */

static const cJSON *domain_by_id(long id)
{
    const cJSON *d;
    cJSON_ArrayForEach(d, g_sim.domains) {
        if (store_json_int(d, "id", -1) == id)
            return d;
    }
    return NULL;
}

static bool domain_match(const sim_req *r, const cJSON *d)
{
    const char *name = req_query(r, "name"), *state = req_query(r, "state"),
               *status = req_query(r, "status"), *org = req_query(r, "orgId");
    if (name && strcasecmp(name, store_json_str(d, "name", "")) != 0)
        return false;
    if (state) {
        bool active = strcasecmp(store_json_str(d, "state", "ACTIVE"), "ACTIVE") == 0;
        if ((strcasecmp(state, "active") == 0) != active)
            return false;
    }
    if (status) {
        bool requested = strcasecmp(store_json_str(d, "delegationStatus", "ACTIVE"), "REQUESTED") == 0;
        if ((strcasecmp(status, "requested") == 0) != requested)
            return false;
    }
    if (org) {
        long oid;
        if (parse_int(org, &oid))
            return false;
        bool found = false;
        const cJSON *del;
        cJSON_ArrayForEach(del, cJSON_GetObjectItemCaseSensitive(d, "delegations")) {
            if (store_json_int(del, "orgId", -1) == oid)
                found = true;
        }
        if (!found)
            return false;
    }
    return true;
}

static void h_domains(sim_req *r, sim_resp *resp, bool count_only)
{
    long pos, size;
    if (!count_only && !paging(r, resp, &pos, &size))
        return;
    cJSON *arr = cJSON_CreateArray();
    long total = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, g_sim.domains) {
        if (!domain_match(r, d))
            continue;
        if (!count_only && total >= pos && total < pos + size) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddNumberToObject(j, "id", store_json_int(d, "id", 0));
            cJSON_AddStringToObject(j, "name", store_json_str(d, "name", ""));
            cJSON_AddItemToArray(arr, j);
        }
        total++;
    }
    if (count_only) {
        cJSON_Delete(arr);
        cJSON *c = cJSON_CreateObject();
        cJSON_AddNumberToObject(c, "count", (double)total);
        resp_json(resp, 200, c);
        return;
    }
    resp->total_count = total;
    resp_json(resp, 200, arr);
}

static void h_domain(sim_req *r, sim_resp *resp, const char *ids)
{
    (void)r;
    long id;
    const cJSON *d = parse_int(ids, &id) == 0 ? domain_by_id(id) : NULL;
    if (!d) {
        resp_error(resp, 404, -727, "The domain '%s' does not exist.", ids);
        return;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "id", store_json_int(d, "id", 0));
    cJSON_AddStringToObject(j, "name", store_json_str(d, "name", ""));
    cJSON_AddStringToObject(j, "delegationStatus", store_json_str(d, "delegationStatus", "ACTIVE"));
    cJSON_AddStringToObject(j, "state", store_json_str(d, "state", "ACTIVE"));
    cJSON_AddStringToObject(j, "validationStatus", store_json_str(d, "validationStatus", "NOT_VALIDATED"));
    const char *vm = store_json_str(d, "validationMethod", NULL);
    if (vm)
        cJSON_AddStringToObject(j, "validationMethod", vm);
    const char *dv = store_json_str(d, "dcvValidation", NULL);
    if (dv)
        cJSON_AddStringToObject(j, "dcvValidation", dv);
    const char *de = store_json_str(d, "dcvExpiration", NULL);
    if (de)
        cJSON_AddStringToObject(j, "dcvExpiration", de);
    cJSON *dels = cJSON_AddArrayToObject(j, "delegations");
    const cJSON *del;
    cJSON_ArrayForEach(del, cJSON_GetObjectItemCaseSensitive(d, "delegations")) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "orgId", store_json_int(del, "orgId", 0));
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(del, "certTypes");
        cJSON_AddItemToObject(x, "certTypes", ct ? cJSON_Duplicate(ct, 1) : cJSON_CreateStringArray(
                                                                                (const char *[]){"SSL"}, 1));
        const cJSON *pv = cJSON_GetObjectItemCaseSensitive(del, "privileges");
        cJSON_AddItemToObject(x, "domainCertificateRequestPrivileges",
                              pv ? cJSON_Duplicate(pv, 1)
                                 : cJSON_CreateStringArray((const char *[]){"DOMAIN", "SUBDOMAIN"}, 2));
        cJSON_AddStringToObject(x, "status", store_json_str(del, "status", "ACTIVE"));
        cJSON_AddItemToArray(dels, x);
    }
    resp_json(resp, 200, j);
}

/* ------------------------------------------------ profiles, fields */

static cJSON *profile_json(const cJSON *p)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "id", store_json_int(p, "id", 0));
    cJSON_AddStringToObject(j, "name", store_json_str(p, "name", ""));
    cJSON_AddStringToObject(j, "description", store_json_str(p, "description", ""));
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "terms");
    cJSON_AddItemToObject(j, "terms", t ? cJSON_Duplicate(t, 1) : cJSON_CreateArray());
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(p, "keyTypes");
    cJSON_AddItemToObject(j, "keyTypes", k ? cJSON_Duplicate(k, 1) : cJSON_CreateObject());
    cJSON_AddBoolToObject(j, "useSecondaryOrgName",
                          cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "useSecondaryOrgName")));
    return j;
}

static void h_types(sim_req *r, sim_resp *resp)
{
    const char *org = req_query(r, "organizationId");
    long oid = -1;
    if (org && parse_int(org, &oid)) {
        resp_error(resp, 400, -1601, "Field 'organizationId' has invalid value.");
        return;
    }
    cJSON *arr = cJSON_CreateArray();
    const cJSON *p;
    cJSON_ArrayForEach(p, g_sim.profiles) {
        if (org && !profile_available(p, (int)oid))
            continue;
        cJSON_AddItemToArray(arr, profile_json(p));
    }
    resp_json(resp, 200, arr);
}

static void h_custom_fields(sim_req *r, sim_resp *resp)
{
    (void)r;
    cJSON *arr = cJSON_CreateArray();
    const cJSON *f;
    cJSON_ArrayForEach(f, g_sim.custom_fields) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "id", store_json_int(f, "id", 0));
        cJSON_AddStringToObject(j, "name", store_json_str(f, "name", ""));
        cJSON_AddBoolToObject(j, "mandatory", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(f, "mandatory")));
        cJSON_AddItemToArray(arr, j);
    }
    resp_json(resp, 200, arr);
}

/* ------------------------------------------------------- validation */

/* Check one requested name for org (and its parent). true = ok. */
static bool check_name(sim_resp *resp, const char *raw, int org_id, int parent_id)
{
    char name[300];
    size_t n = strlen(raw);
    if (n == 0 || n >= sizeof name) {
        resp_error(resp, 400, -732, "Invalid domain name.");
        return false;
    }
    for (size_t i = 0; i <= n; i++)
        name[i] = (char)tolower((unsigned char)raw[i]);
    bool wild = strncmp(name, "*.", 2) == 0;
    const char *base = wild ? name + 2 : name;
    for (const char *p = base; *p; p++) {
        if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '.') || (*p == '.' && p[1] == '.')) {
            resp_error(resp, 400, -732, "Invalid domain name.");
            return false;
        }
    }
    if (!*base || *base == '.' || base[strlen(base) - 1] == '.') {
        resp_error(resp, 400, -732, "Invalid domain name.");
        return false;
    }
    const cJSON *best = NULL, *d;
    size_t best_len = 0;
    cJSON_ArrayForEach(d, g_sim.domains) {
        const char *dn = store_json_str(d, "name", "");
        size_t dl = strlen(dn), bl = strlen(base);
        bool m = strcasecmp(base, dn) == 0 ||
                 (bl > dl && base[bl - dl - 1] == '.' && strcasecmp(base + bl - dl, dn) == 0);
        if (m && dl > best_len) {
            best = d;
            best_len = dl;
        }
    }
    if (!best) {
        resp_error(resp, 400, -1010, "Domain '%s' is not allowed.", raw);
        return false;
    }
    bool exact = strcasecmp(base, store_json_str(best, "name", "")) == 0;
    const cJSON *del, *ok_del = NULL;
    cJSON_ArrayForEach(del, cJSON_GetObjectItemCaseSensitive(best, "delegations")) {
        int o = store_json_int(del, "orgId", -1);
        if (o != org_id && o != parent_id)
            continue;
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(del, "certTypes");
        if (ct && !str_in_array(ct, "SSL"))
            continue;
        if (strcasecmp(store_json_str(del, "status", "ACTIVE"), "ACTIVE") != 0)
            continue;
        const cJSON *pv = cJSON_GetObjectItemCaseSensitive(del, "privileges");
        bool allowed;
        if (wild)
            allowed = pv && (str_in_array(pv, exact ? "WILDCARD_1ST_LEVEL" : "WILDCARD_2ND_LEVEL") ||
                             str_in_array(pv, "WILDCARD_1ST_LEVEL"));
        else
            allowed = !pv || str_in_array(pv, exact ? "DOMAIN" : "SUBDOMAIN");
        if (allowed) {
            ok_del = del;
            break;
        }
    }
    if (!ok_del) {
        resp_error(resp, 400, -1010, "Domain '%s' is not allowed.", raw);
        return false;
    }
    if (strcasecmp(store_json_str(best, "state", "ACTIVE"), "ACTIVE") != 0) {
        resp_error(resp, 400, -715, "The domain '%s' is inactive.", store_json_str(best, "name", ""));
        return false;
    }
    const char *vs = store_json_str(best, "validationStatus", "NOT_VALIDATED");
    int64_t exp = 0;
    const char *de = store_json_str(best, "dcvExpiration", NULL);
    bool expired = strcasecmp(vs, "EXPIRED") == 0 ||
                   (de && sim_parse_date(de, &exp) == 0 && exp + 43200 < sim_now_s());
    if (strcasecmp(vs, "VALIDATED") != 0 && !expired) {
        resp_error(resp, 400, -737,
                   "The domain(s): %s are not validated! Please perform the DCV process for them before proceed.",
                   raw);
        return false;
    }
    if (expired) {
        resp_error(resp, 400, -107,
                   "Domain Control Validation is either incomplete or expired for %s. Please complete it "
                   "before requesting a certificate.",
                   raw);
        return false;
    }
    return true;
}

/* Check CN + comma SANs. */
static bool check_names(sim_resp *resp, const char *cn, const char *sans, int org_id)
{
    const cJSON *parent = NULL;
    store_org(org_id, &parent);
    int pid = parent ? store_json_int(parent, "id", -1) : -1;
    if (!check_name(resp, cn, org_id, pid))
        return false;
    if (!sans)
        return true;
    char item[300];
    const char *p = sans;
    while (*p) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len >= sizeof item) {
            resp_error(resp, 400, -732, "Invalid domain name.");
            return false;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        if (item[0] && !check_name(resp, item, org_id, pid))
            return false;
        if (!c)
            break;
        p = c + 1;
    }
    return true;
}

/* Normalize "a, b ,c" => "a,b,c" (no empties). NULL when empty. */
static char *normalize_sans(const char *in)
{
    if (!in)
        return NULL;
    size_t n = strlen(in);
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    const char *p = in;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        const char *s = p;
        while (*p && *p != ',')
            p++;
        const char *e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (e > s) {
            if (o)
                out[o++] = ',';
            memcpy(out + o, s, (size_t)(e - s));
            o += (size_t)(e - s);
        }
    }
    out[o] = '\0';
    if (!o) {
        free(out);
        return NULL;
    }
    return out;
}

/* CSR checks incl. key type vs profile; fills csr. */
static bool check_csr(sim_resp *resp, const char *text, const cJSON *prof, sim_csr *csr)
{
    int rc = ca_parse_csr(text, csr);
    switch (rc) {
    case 0:
        break;
    case -9:
        resp_error(resp, 400, -9, "The CSR is not valid Base-64 data!");
        return false;
    case -138:
        resp_error(resp, 400, -138, "Invalid CSR.");
        return false;
    case -11:
        resp_error(resp, 400, -11, "The CSR uses an unsupported algorithm!");
        return false;
    default:
        resp_error(resp, 400, -10, "Error while decoding CSR.");
        return false;
    }
    const cJSON *kt = cJSON_GetObjectItemCaseSensitive(prof, "keyTypes");
    const cJSON *sizes = cJSON_GetObjectItemCaseSensitive(kt, csr->alg);
    bool is_ec = strcmp(csr->alg, "EC") == 0;
    if (!sizes) {
        if (is_ec)
            resp_error(resp, 400, -170, "Based on the customer configuration, ECC CSRs are not allowed.");
        else
            resp_error(resp, 400, -11, "The CSR uses an unsupported algorithm!");
        sim_csr_free(csr);
        return false;
    }
    if (!str_in_array(sizes, csr->param)) {
        if (is_ec)
            resp_error(resp, 400, -194, "The CSR uses an unsupported key size.");
        else
            resp_error(resp, 400, -13, "The CSR uses an unsupported key size!");
        sim_csr_free(csr);
        return false;
    }
    return true;
}

static void after_create(sim_cert *c)
{
    store_start_progress(c);
    if (g_sim.manual_approval)
        return;
    if (g_sim.issue_delay_ms == 0 || (g_sim.issue_delay_ms < 0 && g_sim.issue_after_polls == 0))
        store_status_check(c);
}

/* ------------------------------------------------------------ enroll */

static void h_enroll(sim_req *r, sim_resp *resp)
{
    cJSON *b = body_object(r, resp, false);
    if (!b)
        return;
    long org_id = 0, cert_type = 0, term = 0, tmp;
    const char *csr_text = NULL, *sans = NULL, *comments = NULL, *ext = NULL, *stmp;
    int ho = jint(b, "orgId", &org_id), hc = jint(b, "certType", &cert_type), ht = jint(b, "term", &term);
    int hcsr = jstr(b, "csr", &csr_text), hs = jstr(b, "subjAltNames", &sans),
        hcm = jstr(b, "comments", &comments), he = jstr(b, "externalRequester", &ext);
    const cJSON *cfs = cJSON_GetObjectItemCaseSensitive(b, "customFields");
    bool bad = ho < 0 || hc < 0 || ht < 0 || hcsr < 0 || hs < 0 || hcm < 0 || he < 0 ||
               jint(b, "numberServers", &tmp) < 0 || jint(b, "serverType", &tmp) < 0 ||
               jstr(b, "dcvMode", &stmp) < 0 || jstr(b, "dcvEmail", &stmp) < 0 ||
               (cfs && !cJSON_IsNull(cfs) && !cJSON_IsArray(cfs));
    const cJSON *cf;
    const cJSON *cfa = cJSON_IsArray(cfs) ? cfs : NULL;
    cJSON_ArrayForEach(cf, cfa) {
        if (!cJSON_IsObject(cf) || jstr(cf, "name", &stmp) != 1 || jstr(cf, "value", &stmp) < 0)
            bad = true;
    }
    sim_csr csr = {0};
    const cJSON *parent = NULL, *org, *prof;
    if (bad) {
        err_parse(resp);
        goto out;
    }
    if (ho == 0) {
        resp_error(resp, 400, -7, "orgId is required but missing");
        goto out;
    }
    org = store_org((int)org_id, &parent);
    if (!org) {
        resp_error(resp, 400, -639, "Supplied orgid invalid..");
        goto out;
    }
    if (!admin_can_org(r->admin, (int)org_id)) {
        resp_error(resp, 400, -3, "You are not authorized to perform enroll.");
        goto out;
    }
    if (!str_in_array(org_cert_types(org, parent), "SSL")) {
        resp_error(resp, 400, -1021, "This operation cannot be performed for Organization '%s'.",
                   store_json_str(org, "name", ""));
        goto out;
    }
    if (hc == 0) {
        resp_error(resp, 400, -39, "The certificate profile id is invalid!");
        goto out;
    }
    prof = store_profile((int)cert_type);
    if (!prof) {
        resp_error(resp, 400, -111, "No certificate profile found by id %ld", cert_type);
        goto out;
    }
    if (!profile_available(prof, (int)org_id)) {
        resp_error(resp, 400, -39, "The certificate profile id is invalid!");
        goto out;
    }
    if (ht == 0 || !int_in_array(cJSON_GetObjectItemCaseSensitive(prof, "terms"), (int)term)) {
        resp_error(resp, 400, -36, "The validity period (term) is invalid for this certificate profile.");
        goto out;
    }
    if (comments && strlen(comments) > 1024) {
        resp_error(resp, 400, -1601, "Field 'comments' has invalid value.");
        goto out;
    }
    if (ext && strlen(ext) > 512) {
        resp_error(resp, 400, -1601, "Field 'externalRequester' has invalid value.");
        goto out;
    }
    if (hcsr == 0 || !csr_text[0]) {
        resp_error(resp, 400, -7, "csr is required but missing");
        goto out;
    }
    if (strlen(csr_text) > 32767) {
        resp_error(resp, 400, -1601, "Field 'csr' has invalid value.");
        goto out;
    }
    if (!check_csr(resp, csr_text, prof, &csr))
        goto out;
    /* custom fields: names must exist; the profile's required ones must be there */
    cJSON_ArrayForEach(cf, cfa) {
        const char *nm = store_json_str(cf, "name", "");
        bool known = false;
        const cJSON *f;
        cJSON_ArrayForEach(f, g_sim.custom_fields) {
            if (strcmp(store_json_str(f, "name", ""), nm) == 0)
                known = true;
        }
        if (!known) {
            resp_error(resp, 400, -135, "Custom field cannot be found.");
            goto out;
        }
    }
    const cJSON *req_f;
    cJSON_ArrayForEach(req_f, cJSON_GetObjectItemCaseSensitive(prof, "customFields")) {
        if (!cJSON_IsString(req_f))
            continue;
        bool have = false;
        cJSON_ArrayForEach(cf, cfa) {
            const char *v = store_json_str(cf, "value", "");
            if (strcmp(store_json_str(cf, "name", ""), req_f->valuestring) == 0 && v[0])
                have = true;
        }
        if (!have) {
            resp_error(resp, 400, -62, "Missing mandatory custom field!");
            goto out;
        }
    }
    char *nsans = normalize_sans(sans);
    if (!check_names(resp, csr.cn, nsans, (int)org_id)) {
        free(nsans);
        goto out;
    }
    sim_cert *c = store_new_cert();
    if (!c) {
        free(nsans);
        resp_error(resp, 500, -2, "Internal error. Please contact Support for details.");
        goto out;
    }
    c->org_id = (int)org_id;
    c->cert_type = (int)cert_type;
    c->term = (int)term;
    c->status = ST_REQUESTED;
    c->cn = strdup(csr.cn);
    c->sans = nsans;
    c->comments = comments ? strdup(comments) : NULL;
    c->ext_req = ext ? strdup(ext) : NULL;
    c->custom_fields = cJSON_IsArray(cfs) && cJSON_GetArraySize(cfs) ? cJSON_Duplicate(cfs, 1) : NULL;
    c->csr_pem = strdup(csr_text);
    snprintf(c->key_type, sizeof c->key_type, "%s - %s", csr.alg, csr.param);
    snprintf(c->pub_sha256, sizeof c->pub_sha256, "%s", csr.pub_sha256);
    c->t_requested = sim_now_s();
    c->requester_id = store_json_int(r->admin, "id", 0);
    store_add_enrollment(c, "enroll");
    after_create(c);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "sslId", c->id);
    cJSON_AddStringToObject(o, "renewId", c->renew_id);
    resp_json(resp, 200, o);
out:
    sim_csr_free(&csr);
    cJSON_Delete(b);
}

/* ----------------------------------------------------------- details */

/* The next name of a comma-joined SAN list into item (names of 300 bytes
 * or more are skipped); false at the end. */
static bool san_next(const char **pp, char item[300])
{
    const char *p = *pp;
    while (p && *p) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        *pp = c ? c + 1 : NULL;
        if (len < 300) {
            memcpy(item, p, len);
            item[len] = '\0';
            return true;
        }
        p = *pp;
    }
    return false;
}

static cJSON *sans_array(const char *sans)
{
    cJSON *a = cJSON_CreateArray();
    const char *p = sans;
    char item[300];
    while (san_next(&p, item))
        cJSON_AddItemToArray(a, cJSON_CreateString(item));
    return a;
}

static bool has_cert(const sim_cert *c)
{
    return c->serial && (c->status == ST_ISSUED || c->status == ST_EXPIRED || c->status == ST_REVOKED ||
                         c->status == ST_REPLACED);
}

/* The details answer written straight to text: the same document as the
 * cJSON tree it replaces (checked equal with cJSON_Compare for 3,007
 * certificates of every status, with escapes, custom fields, leaves). A
 * status check is what scm-sim answers most, and building and printing the
 * tree cost about a third of its CPU, on the cores the system under test
 * runs on. */
typedef struct jw {
    char *p;
    size_t n, cap;
    bool oom, first;
} jw;

static void jw_raw(jw *w, const char *s, size_t len)
{
    if (w->oom)
        return;
    if (w->n + len + 1 > w->cap) {
        size_t cap = w->cap ? w->cap : 1024;
        while (w->n + len + 1 > cap)
            cap *= 2;
        char *np = realloc(w->p, cap);
        if (!np) {
            w->oom = true;
            return;
        }
        w->p = np;
        w->cap = cap;
    }
    memcpy(w->p + w->n, s, len);
    w->n += len;
    w->p[w->n] = '\0';
}

static void jw_s(jw *w, const char *s) { jw_raw(w, s, strlen(s)); }

/* a JSON string, escaped as cJSON does (UTF-8 passes through) */
static void jw_str(jw *w, const char *s)
{
    const char *run = s;
    jw_raw(w, "\"", 1);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        const char *esc = NULL;
        char u[8];
        switch (ch) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default:
            if (ch < 0x20) {
                snprintf(u, sizeof u, "\\u%04x", ch);
                esc = u;
            }
        }
        if (esc) {
            jw_raw(w, run, (size_t)(s - run));
            jw_s(w, esc);
            run = s + 1;
        }
    }
    jw_raw(w, run, (size_t)(s - run));
    jw_raw(w, "\"", 1);
}

static void jw_key(jw *w, const char *k)
{
    if (!w->first)
        jw_raw(w, ",", 1);
    w->first = false;
    jw_str(w, k);
    jw_raw(w, ":", 1);
}

static void jw_kstr(jw *w, const char *k, const char *v)
{
    jw_key(w, k);
    jw_str(w, v);
}

static void jw_kint(jw *w, const char *k, long long v)
{
    char b[24];
    jw_key(w, k);
    snprintf(b, sizeof b, "%lld", v);
    jw_s(w, b);
}

static void jw_kbool(jw *w, const char *k, bool v)
{
    jw_key(w, k);
    jw_s(w, v ? "true" : "false");
}

/* a cJSON value as it is (catalog parts, custom fields) */
static void jw_kjson(jw *w, const char *k, const cJSON *v, const char *dflt)
{
    jw_key(w, k);
    char *t = v ? cJSON_PrintUnformatted(v) : NULL;
    if (v && !t)
        w->oom = true;
    jw_s(w, t ? t : dflt);
    cJSON_free(t);
}

static void jw_kdate(jw *w, const char *k, int64_t t)
{
    if (!t)
        return;
    char buf[16];
    sim_fmt_date(t, buf, sizeof buf, true);
    jw_kstr(w, k, buf);
}

static void jw_kstrs(jw *w, const char *k, const char *const *v, int n)
{
    jw_key(w, k);
    jw_raw(w, "[", 1);
    for (int i = 0; i < n; i++) {
        if (i)
            jw_raw(w, ",", 1);
        jw_str(w, v[i]);
    }
    jw_raw(w, "]", 1);
}

static char *details_text(sim_cert *c, size_t *out_len)
{
    jw w = {.first = true};
    const cJSON *parent = NULL;
    const cJSON *org = store_org(c->org_id, &parent);
    if (parent)
        org = parent;
    const cJSON *prof = store_profile(c->cert_type);
    char num[32];

    jw_raw(&w, "{", 1);
    jw_kstr(&w, "commonName", c->cn ? c->cn : "");
    jw_kint(&w, "sslId", c->id);
    jw_kint(&w, "id", c->id);
    jw_kint(&w, "orgId", c->org_id);
    jw_kstr(&w, "status", sim_status_name(c->status));
    jw_kint(&w, "orderNumber", 1000000LL + c->id);
    snprintf(num, sizeof num, "%d", 1000000 + c->id);
    jw_kstr(&w, "backendCertId", num);
    jw_kstr(&w, "vendor", "scm-sim");
    if (prof) {
        jw_key(&w, "certType");
        jw_raw(&w, "{", 1);
        w.first = true;
        jw_kint(&w, "id", store_json_int(prof, "id", 0));
        jw_kstr(&w, "name", store_json_str(prof, "name", ""));
        jw_kstr(&w, "description", store_json_str(prof, "description", ""));
        jw_kjson(&w, "terms", cJSON_GetObjectItemCaseSensitive(prof, "terms"), "[]");
        jw_kjson(&w, "keyTypes", cJSON_GetObjectItemCaseSensitive(prof, "keyTypes"), "{}");
        jw_kbool(&w, "useSecondaryOrgName",
                 cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(prof, "useSecondaryOrgName")));
        jw_raw(&w, "}", 1);
        w.first = false;
    }
    jw_kstr(&w, "validationType", "OV");
    jw_kint(&w, "term", c->term);
    const cJSON *req = NULL, *a;
    cJSON_ArrayForEach(a, g_sim.admins) {
        if (store_json_int(a, "id", -1) == c->requester_id)
            req = a;
    }
    if (req) {
        char nm[256];
        snprintf(nm, sizeof nm, "%s %s", store_json_str(req, "forename", ""), store_json_str(req, "surname", ""));
        jw_kstr(&w, "requester", nm);
        jw_kint(&w, "requesterId", c->requester_id);
        if (c->t_approved) {
            jw_kstr(&w, "owner", nm);
            jw_kint(&w, "ownerId", c->requester_id);
        }
    }
    jw_kstr(&w, "requestedVia", c->csr_pem ? "REST API" : "Imported");
    if (c->ext_req)
        jw_kstr(&w, "externalRequester", c->ext_req);
    if (c->comments)
        jw_kstr(&w, "comments", c->comments);
    jw_kdate(&w, "requested", c->t_requested);
    jw_kdate(&w, "approved", c->t_approved);
    jw_kdate(&w, "issued", has_cert(c) ? c->t_issued : 0);
    jw_kdate(&w, "declined", c->t_declined);
    jw_kdate(&w, "expires", has_cert(c) ? c->t_expires : 0);
    jw_kdate(&w, "replaced", c->t_replaced);
    jw_kdate(&w, "revoked", c->t_revoked);
    jw_kdate(&w, "renewedDate", c->t_renewed);
    if (c->reason_code >= 0)
        jw_kint(&w, "reasonCode", c->reason_code);
    jw_kbool(&w, "renewed", c->renewed);
    bool ec = strncmp(c->key_type, "EC", 2) == 0;
    if (has_cert(c)) {
        jw_kstr(&w, "serialNumber", c->serial);
        jw_kstr(&w, "signatureAlg", "SHA256WITHRSA");
        if (ec)
            jw_kstrs(&w, "keyUsages", (const char *[]){"digitalSignature"}, 1);
        else
            jw_kstrs(&w, "keyUsages", (const char *[]){"digitalSignature", "keyEncipherment"}, 2);
        jw_kstrs(&w, "extendedKeyUsages", (const char *[]){"serverAuth", "clientAuth"}, 2);
    }
    char alg[8] = "", par[16] = "";
    sscanf(c->key_type, "%7s - %15s", alg, par);
    jw_kstr(&w, "keyAlgorithm", alg);
    long ks = 0;
    if (!ec)
        parse_int(par, &ks);
    else
        ks = strcmp(par, "P-384") == 0 ? 384 : strcmp(par, "P-521") == 0 ? 521 : 256;
    jw_kint(&w, "keySize", ks);
    jw_kstr(&w, "keyType", c->key_type);
    if (c->sans) {
        jw_key(&w, "subjectAlternativeNames");
        jw_raw(&w, "[", 1);
        const char *p = c->sans;
        char item[300];
        for (bool first = true; san_next(&p, item); first = false) {
            if (!first)
                jw_raw(&w, ",", 1);
            jw_str(&w, item);
        }
        jw_raw(&w, "]", 1);
    }
    if (c->custom_fields)
        jw_kjson(&w, "customFields", c->custom_fields, "[]");
    if (has_cert(c)) {
        char buf[1024];
        jw_key(&w, "certificateDetails");
        jw_raw(&w, "{", 1);
        w.first = true;
        if (c->leaf) {
            jw_kstr(&w, "issuer", c->leaf->issuer);
            jw_kstr(&w, "subject", c->leaf->subject);
        } else {
            jw_kstr(&w, "issuer", ca_intermediate_name());
            snprintf(buf, sizeof buf, "CN=%s,O=%s", c->cn, store_json_str(org, "name", "scm-sim"));
            jw_kstr(&w, "subject", buf);
        }
        size_t o = (size_t)snprintf(buf, sizeof buf, "dNSName=%s", c->cn);
        const char *p = c->sans;
        while (p && *p && o < sizeof buf) {
            const char *cm = strchr(p, ',');
            size_t len = cm ? (size_t)(cm - p) : strlen(p);
            if (!(len == strlen(c->cn) && strncmp(p, c->cn, len) == 0))
                o += (size_t)snprintf(buf + o, sizeof buf - o, ", dNSName=%.*s", (int)len, p);
            if (!cm)
                break;
            p = cm + 1;
        }
        jw_kstr(&w, "subjectAltNames", buf);
        if (c->leaf) {
            jw_kstr(&w, "md5Hash", c->leaf->md5);
            jw_kstr(&w, "sha1Hash", c->leaf->sha1);
        }
        jw_raw(&w, "}", 1);
        w.first = false;
    }
    jw_kbool(&w, "suspendNotifications", false);
    jw_raw(&w, "}", 1);
    if (w.oom) {
        free(w.p);
        return NULL;
    }
    *out_len = w.n;
    return w.p;
}

static sim_cert *cert_or_404(sim_resp *resp, const char *ids)
{
    long id;
    sim_cert *c = parse_int(ids, &id) == 0 && id > 0 && id < 2147483647L ? store_cert((int)id) : NULL;
    if (!c)
        resp_error(resp, 404, -5101, "Certificate not found. Id: %s", ids);
    return c;
}

static void h_details(sim_req *r, sim_resp *resp, const char *ids)
{
    (void)r;
    sim_cert *c = cert_or_404(resp, ids);
    if (!c)
        return;
    store_status_check(c);
    size_t len = 0;
    char *body = details_text(c, &len);
    if (!body) {
        resp_error(resp, 500, -2, "Internal error. Please contact Support for details.");
        return;
    }
    free(resp->body);
    resp->status = 200;
    resp->body = body;
    resp->body_len = len;
}

/* -------------------------------------------------------------- list */

typedef struct list_filter {
    const char *cn, *serial, *san, *ext;
} list_filter;

static bool list_match(const list_filter *f, const sim_cert *c, int st, long org, long type)
{
    const char *cn = f->cn, *serial = f->serial, *san = f->san, *ext = f->ext;
    if (st >= 0 && c->status != st)
        return false;
    if (org >= 0 && c->org_id != org)
        return false;
    if (type >= 0 && c->cert_type != type)
        return false;
    if (cn && (!c->cn || strcasecmp(cn, c->cn) != 0))
        return false;
    if (ext && (!c->ext_req || strcasecmp(ext, c->ext_req) != 0))
        return false;
    if (serial) {
        if (!c->serial)
            return false;
        char a[128], b[128];
        size_t i = 0, k = 0;
        for (const char *p = serial; *p && i + 1 < sizeof a; p++)
            if (*p != ':')
                a[i++] = (char)toupper((unsigned char)*p);
        a[i] = '\0';
        for (const char *p = c->serial; *p && k + 1 < sizeof b; p++)
            if (*p != ':')
                b[k++] = *p;
        b[k] = '\0';
        if (strcmp(a, b) != 0)
            return false;
    }
    if (san) {
        bool found = c->cn && strcasecmp(san, c->cn) == 0;
        const char *p = c->sans;
        size_t sl = strlen(san);
        while (!found && p && *p) {
            const char *cm = strchr(p, ',');
            size_t len = cm ? (size_t)(cm - p) : strlen(p);
            if (len == sl && strncasecmp(p, san, len) == 0)
                found = true;
            p = cm ? cm + 1 : NULL;
        }
        if (!found)
            return false;
    }
    return true;
}

static void h_list(sim_req *r, sim_resp *resp, bool head)
{
    long pos = 0, size = 10;
    if (!paging(r, resp, &pos, &size))
        return;
    bool bad = false;
    int st = -1;
    const char *sts = req_query(r, "status");
    if (sts && (st = sim_status_parse(sts)) < 0) {
        resp_error(resp, 400, -1601, "Field 'status' has invalid value.");
        return;
    }
    long org = qlong(r, "orgId", -1, &bad), type = qlong(r, "sslTypeId", -1, &bad);
    if (bad) {
        resp_error(resp, 400, -1601, "Field 'orgId' has invalid value.");
        return;
    }
    /* look the filters up once: this loop runs over up to 100,000+ records per page */
    list_filter f = {req_query(r, "commonName"), req_query(r, "serialNumber"),
                     req_query(r, "subjectAlternativeName"), req_query(r, "externalRequester")};
    bool all_orgs = is_mrao(r->admin);
    cJSON *arr = head ? NULL : cJSON_CreateArray();
    long total = 0;
    bool unfiltered = all_orgs && st < 0 && org < 0 && type < 0 && !f.cn && !f.serial && !f.san && !f.ext;
    size_t start = 0;
    if (unfiltered) {
        /* the import path: no scan, the page is a slice of the sorted array */
        start = (size_t)pos < g_sim.ncerts ? (size_t)pos : g_sim.ncerts;
        total = (long)start;
    }
    for (size_t i = start; i < g_sim.ncerts; i++) {
        const sim_cert *c = g_sim.certs[i];
        if (unfiltered && total >= pos + size) {
            total = (long)g_sim.ncerts;
            break;
        }
        if (!list_match(&f, c, st, org, type) || (!all_orgs && !admin_can_org(r->admin, c->org_id)))
            continue;
        if (arr && total >= pos && total < pos + size) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddNumberToObject(j, "sslId", c->id);
            cJSON_AddStringToObject(j, "commonName", c->cn ? c->cn : "");
            if (c->sans)
                cJSON_AddItemToObject(j, "subjectAlternativeNames", sans_array(c->sans));
            if (c->serial && has_cert(c))
                cJSON_AddStringToObject(j, "serialNumber", c->serial);
            cJSON_AddItemToArray(arr, j);
        }
        total++;
    }
    resp->total_count = total;
    if (head) {
        resp->status = 200;
        return;
    }
    resp_json(resp, 200, arr);
}

/* ----------------------------------------------------------- collect */

void api_pending(sim_resp *resp)
{
    switch (g_sim.pending_style) {
    case PEND_1400:
        resp_error(resp, 400, -1400, "The request is being processed by Sectigo.");
        break;
    case PEND_183:
        resp_error(resp, 400, -183, "Certificate is not collectable.");
        break;
    case PEND_109:
        resp_error(resp, 400, -109, "Certificate is not available now, please try again later.");
        break;
    case PEND_EMPTY200:
        resp->status = 200;
        resp->ctype = "application/octet-stream;charset=UTF-8";
        break;
    default:
        resp_error(resp, 400, 0, "Being processed by Sectigo");
        break;
    }
}

static void h_collect(sim_req *r, sim_resp *resp, const char *ids, const char *fmt)
{
    sim_cert *c = cert_or_404(resp, ids);
    if (!c)
        return;
    if (!fmt)
        fmt = req_query(r, "format");
    if (!fmt || !fmt[0])
        fmt = "base64";
    static const char *const known[] = {"x509", "x509CO", "x509IO", "x509IOR", "x509R", "base64",
                                        "bin", "pem", "pemco", "pemia"};
    bool ok = false;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(fmt, known[i]) == 0)
            ok = true;
    if (!ok) {
        resp_error(resp, 400, -126, "Unknown SSL certificate file format requested: %s", fmt);
        return;
    }
    store_status_check(c);
    switch (c->status) {
    case ST_REVOKED:
        resp_error(resp, 400, -110, "Certificate has been revoked and cannot be downloaded.");
        return;
    case ST_ISSUED:
    case ST_EXPIRED:
    case ST_REPLACED:
        break;
    case ST_REQUESTED:
    case ST_APPROVED:
    case ST_SAAPPROVED:
    case ST_APPLIED:
    case ST_INIT:
        api_pending(resp);
        return;
    default:
        resp_error(resp, 400, -169, "Certificate is not available, please contact administrator.");
        return;
    }
    if (store_issue(c) != 0) {
        resp_error(resp, 500, -2, "Internal error. Please contact Support for details.");
        return;
    }
    char *out = NULL;
    size_t len = 0;
    const char *ext = "crt";
    if (ca_collect(c->leaf->pem, fmt, &out, &len, &ext) != 0) {
        resp_error(resp, 500, -2, "Internal error. Please contact Support for details.");
        return;
    }
    free(resp->body);
    resp->body = out;
    resp->body_len = len;
    resp->status = 200;
    resp->ctype = "application/octet-stream;charset=UTF-8";
    snprintf(resp->disposition, sizeof resp->disposition, "attachment; filename=\"cert_%d_%s.%s\"", c->id,
             fmt, ext);
}

/* ------------------------------------------------------------- renew */

static void do_renew(sim_req *r, sim_resp *resp, sim_cert *old, bool by_renew_id)
{
    cJSON *b = body_object(r, resp, by_renew_id);
    if (!b)
        return;
    const char *csr_text = NULL, *stmp;
    int hc = jstr(b, "csr", &csr_text);
    sim_csr csr = {0};
    bool have_csr = false;
    if (hc < 0 || jstr(b, "dcvMode", &stmp) < 0 || jstr(b, "dcvEmail", &stmp) < 0) {
        err_parse(resp);
        goto out;
    }
    const cJSON *prof = store_profile(old->cert_type);
    const cJSON *ra = cJSON_GetObjectItemCaseSensitive(prof, "renewAllowed");
    if (!prof || cJSON_IsFalse(ra)) {
        resp_error(resp, 400, -180, "This SSL Certificate Profile doesn't allow renew");
        goto out;
    }
    if (old->status != ST_ISSUED && old->status != ST_EXPIRED) {
        resp_error(resp, 400, -105, "Error was occurred while renewing cert. Status = %s",
                   sim_status_name(old->status));
        goto out;
    }
    if (hc == 1 && csr_text[0]) {
        if (!check_csr(resp, csr_text, prof, &csr))
            goto out;
        have_csr = true;
    }
    sim_cert *c = store_new_cert();
    if (!c) {
        resp_error(resp, 500, -2, "Internal error. Please contact Support for details.");
        goto out;
    }
    c->org_id = old->org_id;
    c->cert_type = old->cert_type;
    c->term = old->term;
    c->status = ST_REQUESTED;
    c->cn = old->cn ? strdup(old->cn) : NULL;
    c->sans = old->sans ? strdup(old->sans) : NULL;
    c->comments = old->comments ? strdup(old->comments) : NULL;
    c->ext_req = old->ext_req ? strdup(old->ext_req) : NULL;
    c->custom_fields = old->custom_fields ? cJSON_Duplicate(old->custom_fields, 1) : NULL;
    if (have_csr) {
        c->csr_pem = strdup(csr_text);
        snprintf(c->key_type, sizeof c->key_type, "%s - %s", csr.alg, csr.param);
        snprintf(c->pub_sha256, sizeof c->pub_sha256, "%s", csr.pub_sha256);
    } else {
        c->csr_pem = old->csr_pem ? strdup(old->csr_pem) : NULL;
        snprintf(c->key_type, sizeof c->key_type, "%s", old->key_type);
        snprintf(c->pub_sha256, sizeof c->pub_sha256, "%s", old->pub_sha256);
    }
    c->t_requested = sim_now_s();
    c->requester_id = store_json_int(r->admin, "id", 0);
    old->renewed = true;
    old->t_renewed = sim_now_s();
    store_add_enrollment(c, "renew");
    after_create(c);
    if (by_renew_id) {
        resp->status = 204;
    } else {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "sslId", c->id);
        resp_json(resp, 200, o);
    }
out:
    sim_csr_free(&csr);
    cJSON_Delete(b);
}

/* ----------------------------------------------------------- replace */

static void h_replace(sim_req *r, sim_resp *resp, sim_cert *c)
{
    cJSON *b = body_object(r, resp, false);
    if (!b)
        return;
    const char *csr_text = NULL, *reason = NULL, *cn = NULL, *stmp;
    int hc = jstr(b, "csr", &csr_text), hr = jstr(b, "reason", &reason), hn = jstr(b, "commonName", &cn);
    const cJSON *sa = cJSON_GetObjectItemCaseSensitive(b, "subjectAlternativeNames");
    sim_csr csr = {0};
    bool bad = hc < 0 || hr < 0 || hn < 0 || jstr(b, "dcvMode", &stmp) < 0 || jstr(b, "dcvEmail", &stmp) < 0 ||
               (sa && !cJSON_IsNull(sa) && !cJSON_IsArray(sa));
    const cJSON *e;
    const cJSON *saa = cJSON_IsArray(sa) ? sa : NULL;
    cJSON_ArrayForEach(e, saa) {
        if (!cJSON_IsString(e))
            bad = true;
    }
    char *sans = NULL;
    if (bad) {
        err_parse(resp);
        goto out;
    }
    if (hc == 0 || !csr_text[0]) {
        resp_error(resp, 400, -7, "csr is required but missing");
        goto out;
    }
    if (hr == 0 || !reason[0]) {
        resp_error(resp, 400, -7, "reason is required but missing");
        goto out;
    }
    if (strlen(reason) > 512) {
        resp_error(resp, 400, -1601, "Field 'reason' has invalid value.");
        goto out;
    }
    if (hn == 1 && (strlen(cn) < 1 || strlen(cn) > 64)) {
        resp_error(resp, 400, -1601, "Field 'commonName' has invalid value.");
        goto out;
    }
    if (c->status != ST_ISSUED) {
        resp_error(resp, 400, -130, "SSL state is not 'ISSUED': %s", sim_status_name(c->status));
        goto out;
    }
    const cJSON *prof = store_profile(c->cert_type);
    if (!check_csr(resp, csr_text, prof, &csr))
        goto out;
    const char *new_cn = hn == 1 ? cn : csr.cn;
    if (cJSON_IsArray(sa)) {
        cJSON *tmp = cJSON_Duplicate(sa, 1);
        char *joined = cJSON_PrintUnformatted(tmp); /* ["a","b"] -> a,b below */
        cJSON_Delete(tmp);
        size_t cap = joined ? strlen(joined) + 1 : 1;
        sans = malloc(cap);
        if (sans) {
            size_t o = 0;
            cJSON_ArrayForEach(e, sa) {
                o += (size_t)snprintf(sans + o, cap - o, "%s%s", o ? "," : "", e->valuestring);
            }
            if (!o) {
                free(sans);
                sans = NULL;
            }
        }
        free(joined);
    } else if (c->sans) {
        sans = strdup(c->sans);
    }
    if (!check_names(resp, new_cn, sans, c->org_id))
        goto out;
    free(c->cn);
    c->cn = strdup(new_cn);
    free(c->sans);
    c->sans = sans;
    sans = NULL;
    free(c->csr_pem);
    c->csr_pem = strdup(csr_text);
    snprintf(c->key_type, sizeof c->key_type, "%s - %s", csr.alg, csr.param);
    snprintf(c->pub_sha256, sizeof c->pub_sha256, "%s", csr.pub_sha256);
    c->t_replaced = sim_now_s();
    c->t_issued = c->t_expires = 0;
    free(c->serial);
    c->serial = NULL;
    sim_leaf_free(c->leaf);
    c->leaf = NULL;
    c->status = ST_APPLIED;
    store_add_enrollment(c, "replace");
    store_start_progress(c);
    if (g_sim.issue_delay_ms == 0 || (g_sim.issue_delay_ms < 0 && g_sim.issue_after_polls == 0))
        store_status_check(c);
    resp->status = 204;
out:
    free(sans);
    sim_csr_free(&csr);
    cJSON_Delete(b);
}

/* ------------------------------------------------------------ revoke */

static void h_revoke(sim_req *r, sim_resp *resp, sim_cert *c)
{
    cJSON *b = body_object(r, resp, false);
    if (!b)
        return;
    const char *reason = NULL;
    long code = -1;
    int hr = jstr(b, "reason", &reason), hc = jint(b, "reasonCode", &code);
    if (hr < 0 || hc < 0) {
        err_parse(resp);
        goto out;
    }
    if (hc == 1 && code != 0 && code != 1 && code != 3 && code != 4 && code != 5) {
        resp_error(resp, 400, -1601, "Field 'reasonCode' has invalid value.");
        goto out;
    }
    if (hr == 0 || !reason[0]) {
        resp_error(resp, 400, -7, "reason is required but missing");
        goto out;
    }
    if (strlen(reason) > 512) {
        resp_error(resp, 400, -1601, "Field 'reason' has invalid value.");
        goto out;
    }
    if (c->status == ST_REVOKED) {
        resp_error(resp, 400, -159, "Your certificate already revoked");
        goto out;
    }
    if (c->status != ST_ISSUED) {
        resp_error(resp, 400, -102, "Only issued certificates could be revoked.");
        goto out;
    }
    c->status = ST_REVOKED;
    c->t_revoked = sim_now_s();
    c->reason_code = hc == 1 ? (int)code : 0;
    free(c->revoke_reason);
    c->revoke_reason = strdup(reason);
    resp->status = 204;
out:
    cJSON_Delete(b);
}

/* ---------------------------------------------------- approve/decline */

static void h_approve(sim_req *r, sim_resp *resp, sim_cert *c, bool approve)
{
    cJSON *b = body_object(r, resp, true);
    if (!b)
        return;
    const char *msg = NULL;
    if (jstr(b, "message", &msg) < 0) {
        err_parse(resp);
        cJSON_Delete(b);
        return;
    }
    cJSON_Delete(b);
    if (c->status != ST_REQUESTED) {
        resp_error(resp, 400, -1112, "Certificate can't be approved cause it has state = %s",
                   sim_status_name(c->status));
        return;
    }
    if (approve) {
        c->status = ST_APPROVED;
        c->t_approved = sim_now_s();
        store_start_progress(c);
        if (g_sim.issue_delay_ms == 0 || (g_sim.issue_delay_ms < 0 && g_sim.issue_after_polls == 0))
            store_status_check(c);
    } else {
        c->status = ST_DECLINED;
        c->t_declined = sim_now_s();
    }
    resp->status = 204;
}

/* ------------------------------------------------------------ admins */

static void h_admins(sim_req *r, sim_resp *resp)
{
    long pos, size;
    if (!paging(r, resp, &pos, &size))
        return;
    const char *login = req_query(r, "login");
    cJSON *arr = cJSON_CreateArray();
    long total = 0;
    const cJSON *a;
    cJSON_ArrayForEach(a, g_sim.admins) {
        if (login && strcmp(login, store_json_str(a, "login", "")) != 0)
            continue;
        if (total >= pos && total < pos + size) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddNumberToObject(j, "id", store_json_int(a, "id", 0));
            cJSON_AddStringToObject(j, "type", store_json_str(a, "type", "API"));
            cJSON_AddStringToObject(j, "login", store_json_str(a, "login", ""));
            cJSON_AddStringToObject(j, "email", store_json_str(a, "email", ""));
            cJSON_AddStringToObject(j, "forename", store_json_str(a, "forename", ""));
            cJSON_AddStringToObject(j, "surname", store_json_str(a, "surname", ""));
            cJSON_AddItemToArray(arr, j);
        }
        total++;
    }
    resp->total_count = total;
    resp_json(resp, 200, arr);
}

static void h_admin(sim_req *r, sim_resp *resp, const char *ids)
{
    (void)r;
    long id;
    const cJSON *a = NULL, *x;
    if (parse_int(ids, &id) == 0) {
        cJSON_ArrayForEach(x, g_sim.admins) {
            if (store_json_int(x, "id", -1) == id)
                a = x;
        }
    }
    if (!a) {
        resp_error(resp, 404, -219, "Admin not found.");
        return;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "id", store_json_int(a, "id", 0));
    cJSON_AddStringToObject(j, "type", store_json_str(a, "type", "API"));
    cJSON_AddStringToObject(j, "status", "Active");
    cJSON_AddStringToObject(j, "activeState", "ACTIVE");
    cJSON_AddStringToObject(j, "forename", store_json_str(a, "forename", ""));
    cJSON_AddStringToObject(j, "surname", store_json_str(a, "surname", ""));
    cJSON_AddStringToObject(j, "login", store_json_str(a, "login", ""));
    cJSON_AddStringToObject(j, "email", store_json_str(a, "email", ""));
    cJSON_AddStringToObject(j, "passwordState", "NEVER_EXPIRE");
    const cJSON *cr = cJSON_GetObjectItemCaseSensitive(a, "credentials");
    cJSON_AddItemToObject(j, "credentials", cr ? cJSON_Duplicate(cr, 1) : cJSON_CreateArray());
    cJSON_AddItemToObject(j, "privileges", cJSON_CreateArray());
    cJSON_AddNumberToObject(j, "failedAttempts", 0);
    resp_json(resp, 200, j);
}

static void h_roles(sim_req *r, sim_resp *resp)
{
    static const char *const all[] = {"MRAO", "RAO_SSL", "RAO_SMIME", "RAO_CS", "RAO_DEVICE",
                                      "DRAO_SSL", "DRAO_SMIME", "DRAO_CS", "DRAO_DEVICE"};
    bool m = is_mrao(r->admin);
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = m ? 0 : 5; i < sizeof all / sizeof all[0]; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(all[i]));
    resp_json(resp, 200, arr);
}

/* ---------------------------------------------------------- dispatch */

void api_handle(sim_req *r, sim_resp *resp)
{
    segs s;
    split_path(r->sub, &s);
    bool get = strcmp(r->method, "GET") == 0, head = strcmp(r->method, "HEAD") == 0,
         post = strcmp(r->method, "POST") == 0;
    if (!authenticate(r, resp))
        return;

    if (s.n >= 2 && strcmp(s.s[0], "ssl") == 0 && strcmp(s.s[1], "v1") == 0) {
        if (match(&s, 2, "ssl", "v1")) {
            if (get || head)
                h_list(r, resp, head);
            else
                goto method;
            return;
        }
        if (match(&s, 3, "ssl", "v1", "types")) {
            if (!get)
                goto method;
            h_types(r, resp);
            return;
        }
        if (match(&s, 3, "ssl", "v1", "customFields")) {
            if (!get)
                goto method;
            h_custom_fields(r, resp);
            return;
        }
        if (match(&s, 3, "ssl", "v1", "enroll")) {
            if (!post)
                goto method;
            h_enroll(r, resp);
            return;
        }
        if (match(&s, 4, "ssl", "v1", "collect", "*") || match(&s, 5, "ssl", "v1", "collect", "*", "*")) {
            if (!get)
                goto method;
            h_collect(r, resp, s.s[3], s.n == 5 ? s.s[4] : NULL);
            return;
        }
        if (match(&s, 4, "ssl", "v1", "renew", "*")) {
            if (!post)
                goto method;
            sim_cert *c = store_cert_by_renew_id(s.s[3]);
            if (!c) {
                resp_error(resp, 404, -5101, "Certificate not found. renewId: %s", s.s[3]);
                return;
            }
            do_renew(r, resp, c, true);
            return;
        }
        if (match(&s, 5, "ssl", "v1", "revoke", "serial", "*")) {
            if (!post)
                goto method;
            sim_cert *c = store_cert_by_serial(s.s[4]);
            if (!c) {
                resp_error(resp, 404, -5101, "Certificate not found. Serial: %s", s.s[4]);
                return;
            }
            h_revoke(r, resp, c);
            return;
        }
        if (s.n == 4 && (strcmp(s.s[2], "renewById") == 0 || strcmp(s.s[2], "replace") == 0 ||
                         strcmp(s.s[2], "revoke") == 0 || strcmp(s.s[2], "approve") == 0 ||
                         strcmp(s.s[2], "decline") == 0)) {
            if (!post)
                goto method;
            sim_cert *c = cert_or_404(resp, s.s[3]);
            if (!c)
                return;
            if (strcmp(s.s[2], "renewById") == 0)
                do_renew(r, resp, c, false);
            else if (strcmp(s.s[2], "replace") == 0)
                h_replace(r, resp, c);
            else if (strcmp(s.s[2], "revoke") == 0)
                h_revoke(r, resp, c);
            else
                h_approve(r, resp, c, strcmp(s.s[2], "approve") == 0);
            return;
        }
        if (match(&s, 3, "ssl", "v1", "*")) {
            if (!get)
                goto method;
            h_details(r, resp, s.s[2]);
            return;
        }
    }
    if (match(&s, 2, "organization", "v1")) {
        if (!get)
            goto method;
        h_orgs(r, resp);
        return;
    }
    if (match(&s, 3, "organization", "v1", "*")) {
        if (!get)
            goto method;
        h_org(r, resp, s.s[2]);
        return;
    }
    if (match(&s, 2, "domain", "v1") || match(&s, 3, "domain", "v1", "count")) {
        if (!get && !head)
            goto method;
        h_domains(r, resp, s.n == 3);
        return;
    }
    if (match(&s, 3, "domain", "v1", "*")) {
        if (!get)
            goto method;
        h_domain(r, resp, s.s[2]);
        return;
    }
    if (match(&s, 2, "admin", "v1")) {
        if (!get && !head)
            goto method;
        h_admins(r, resp);
        return;
    }
    if (match(&s, 3, "admin", "v1", "roles")) {
        if (!get)
            goto method;
        h_roles(r, resp);
        return;
    }
    if (match(&s, 3, "admin", "v1", "*")) {
        if (!get)
            goto method;
        h_admin(r, resp, s.s[2]);
        return;
    }
    if (match(&s, 2, "ca-backend", "v1")) {
        if (!get)
            goto method;
        if (!is_mrao(r->admin)) {
            resp_error(resp, 403, -3, "You are not authorized to perform ca-backend access.");
            return;
        }
        cJSON *arr = cJSON_CreateArray();
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", 1);
        cJSON_AddStringToObject(o, "name", "scm-sim CA backend");
        cJSON_AddItemToArray(arr, o);
        resp_json(resp, 200, arr);
        return;
    }
    resp_error(resp, 404, -1, "Not Found: %s", r->path);
    return;
method:
    resp_error(resp, 405, -1, "Request method '%s' not supported", r->method);
}

