/* scm-sim: state — seed loading, catalog, certificate records, order life. */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/rand.h>

sim_state g_sim = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .issue_after_polls = 1,
    .issue_delay_ms = -1,
    .rec_max = 200000,
};

static const char *const k_status_names[ST__COUNT] = {
    "Invalid", "Requested", "Approved", "Declined", "Applied", "Issued", "Revoked",
    "Expired", "Replaced", "Rejected", "Unmanaged", "SAApproved", "Init",
};

const char *sim_status_name(int st)
{
    return st >= 0 && st < ST__COUNT ? k_status_names[st] : "Invalid";
}

int sim_status_parse(const char *s)
{
    if (!s)
        return -1;
    if (strcasecmp(s, "SA Approved") == 0)
        return ST_SAAPPROVED;
    for (int i = 0; i < ST__COUNT; i++)
        if (strcasecmp(s, k_status_names[i]) == 0)
            return i;
    return -1;
}

int64_t sim_now_s(void) { return (int64_t)time(NULL); }

int64_t sim_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int sim_parse_date(const char *s, int64_t *out)
{
    int y, m, d;
    char extra;
    if (!s || sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &extra) != 3 || m < 1 || m > 12 || d < 1 || d > 31)
        return -1;
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = m - 1;
    tm.tm_mday = d;
    tm.tm_hour = 12; /* midday: the date survives any display time zone */
    *out = (int64_t)timegm(&tm);
    return 0;
}

void sim_fmt_date(int64_t t, char *buf, size_t n, bool us)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    if (us)
        snprintf(buf, n, "%02d/%02d/%04d", tm.tm_mon + 1, tm.tm_mday, tm.tm_year + 1900);
    else
        snprintf(buf, n, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

void sim_random_renew_id(char out[21])
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char r[20];
    if (RAND_bytes(r, sizeof r) != 1)
        memset(r, 7, sizeof r);
    for (int i = 0; i < 20; i++)
        out[i] = al[r[i] % (sizeof al - 1)];
    out[20] = '\0';
}

int store_json_int(const cJSON *o, const char *key, int dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsNumber(v))
        return v->valueint;
    return dflt;
}

const char *store_json_str(const cJSON *o, const char *key, const char *dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

static void cert_free(sim_cert *c)
{
    if (!c)
        return;
    free(c->cn);
    free(c->sans);
    free(c->comments);
    free(c->ext_req);
    cJSON_Delete(c->custom_fields);
    free(c->csr_pem);
    free(c->serial);
    free(c->revoke_reason);
    sim_leaf_free(c->leaf);
    free(c);
}

static void clear_certs(void)
{
    for (size_t i = 0; i < g_sim.ncerts; i++)
        cert_free(g_sim.certs[i]);
    free(g_sim.certs);
    g_sim.certs = NULL;
    g_sim.ncerts = g_sim.cap_certs = 0;
    for (size_t i = 0; i < g_sim.nenrolls; i++) {
        free(g_sim.enrolls[i].cn);
        free(g_sim.enrolls[i].comments);
    }
    free(g_sim.enrolls);
    g_sim.enrolls = NULL;
    g_sim.nenrolls = g_sim.cap_enrolls = 0;
}

static int push_cert(sim_cert *c)
{
    if (g_sim.ncerts == g_sim.cap_certs) {
        size_t nc = g_sim.cap_certs ? g_sim.cap_certs * 2 : 256;
        sim_cert **n = realloc(g_sim.certs, nc * sizeof *n);
        if (!n)
            return -1;
        g_sim.certs = n;
        g_sim.cap_certs = nc;
    }
    g_sim.certs[g_sim.ncerts++] = c;
    if (c->id >= g_sim.next_id)
        g_sim.next_id = c->id + 1;
    return 0;
}

sim_cert *store_cert(int id)
{
    size_t lo = 0, hi = g_sim.ncerts;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int mid_id = g_sim.certs[mid]->id;
        if (mid_id == id)
            return g_sim.certs[mid];
        if (mid_id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

sim_cert *store_cert_by_renew_id(const char *rid)
{
    for (size_t i = 0; i < g_sim.ncerts; i++)
        if (strcmp(g_sim.certs[i]->renew_id, rid) == 0)
            return g_sim.certs[i];
    return NULL;
}

sim_cert *store_cert_by_serial(const char *serial)
{
    /* accept colon or plain hex, any case */
    char want[128];
    size_t j = 0;
    for (const char *p = serial; *p && j + 1 < sizeof want; p++)
        if (*p != ':')
            want[j++] = *p;
    want[j] = '\0';
    const char *w = want;
    while (*w == '0' && w[1])
        w++;
    for (size_t i = 0; i < g_sim.ncerts; i++) {
        const char *s = g_sim.certs[i]->serial;
        if (!s)
            continue;
        char have[128];
        size_t k = 0;
        for (const char *p = s; *p && k + 1 < sizeof have; p++)
            if (*p != ':')
                have[k++] = *p;
        have[k] = '\0';
        const char *h = have;
        while (*h == '0' && h[1])
            h++;
        if (strcasecmp(h, w) == 0)
            return g_sim.certs[i];
    }
    return NULL;
}

sim_cert *store_new_cert(void)
{
    sim_cert *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->id = g_sim.next_id;
    c->reason_code = -1;
    sim_random_renew_id(c->renew_id);
    if (push_cert(c)) {
        free(c);
        return NULL;
    }
    return c;
}

void store_add_enrollment(const sim_cert *c, const char *kind)
{
    if (g_sim.nenrolls == g_sim.cap_enrolls) {
        size_t nc = g_sim.cap_enrolls ? g_sim.cap_enrolls * 2 : 256;
        sim_enrollment *n = realloc(g_sim.enrolls, nc * sizeof *n);
        if (!n)
            return;
        g_sim.enrolls = n;
        g_sim.cap_enrolls = nc;
    }
    sim_enrollment *e = &g_sim.enrolls[g_sim.nenrolls++];
    e->ssl_id = c->id;
    snprintf(e->pub_sha256, sizeof e->pub_sha256, "%s", c->pub_sha256);
    e->cn = c->cn ? strdup(c->cn) : NULL;
    e->comments = c->comments ? strdup(c->comments) : NULL;
    e->kind = kind;
}

const cJSON *store_org(int id, const cJSON **parent)
{
    const cJSON *o;
    if (parent)
        *parent = NULL;
    cJSON_ArrayForEach(o, g_sim.orgs) {
        if (store_json_int(o, "id", -1) == id)
            return o;
    }
    cJSON_ArrayForEach(o, g_sim.orgs) {
        const cJSON *d;
        cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(o, "departments")) {
            if (store_json_int(d, "id", -1) == id) {
                if (parent)
                    *parent = o;
                return d;
            }
        }
    }
    return NULL;
}

const cJSON *store_profile(int id)
{
    const cJSON *p;
    cJSON_ArrayForEach(p, g_sim.profiles) {
        if (store_json_int(p, "id", -1) == id)
            return p;
    }
    return NULL;
}

const cJSON *store_admin_by_login(const char *login)
{
    const cJSON *a;
    cJSON_ArrayForEach(a, g_sim.admins) {
        const char *l = store_json_str(a, "login", NULL);
        if (l && strcmp(l, login) == 0)
            return a;
    }
    return NULL;
}

void store_start_progress(sim_cert *c)
{
    c->polls = 0;
    c->progress_start_ms = sim_now_ms();
}

int store_issue(sim_cert *c)
{
    if (c->leaf)
        return 0;
    EVP_PKEY *pub = NULL;
    sim_csr csr;
    bool own = false;
    if (c->csr_pem && ca_parse_csr(c->csr_pem, &csr) == 0) {
        pub = csr.pub;
        own = true;
    } else {
        pub = ca_shared_key(c->key_type);
    }
    if (!pub)
        return -1;
    const cJSON *parent = NULL;
    const cJSON *org = store_org(c->org_id, &parent);
    if (parent) /* a department's certificate carries its organization's name */
        org = parent;
    int64_t nb = c->t_issued ? c->t_issued : (c->t_requested ? c->t_requested : sim_now_s());
    int64_t na = c->t_expires ? c->t_expires : nb + (int64_t)c->term * 86400;
    char *serial = NULL;
    sim_leaf *l = ca_issue(pub, c->cn, store_json_str(org, "name", "scm-sim"), c->sans, nb - 3600, na,
                           c->serial, &serial);
    if (own)
        sim_csr_free(&csr);
    if (!l)
        return -1;
    c->leaf = l;
    free(c->serial);
    c->serial = serial;
    if (!c->t_expires)
        c->t_expires = na;
    return 0;
}

static bool progressing(const sim_cert *c)
{
    return c->status == ST_REQUESTED || c->status == ST_APPROVED || c->status == ST_SAAPPROVED ||
           c->status == ST_APPLIED;
}

void store_status_check(sim_cert *c)
{
    if (!progressing(c))
        return;
    if (c->status == ST_REQUESTED && g_sim.manual_approval)
        return;
    c->polls++;
    bool ready = g_sim.issue_delay_ms >= 0 ? sim_now_ms() - c->progress_start_ms >= g_sim.issue_delay_ms
                                           : c->polls > g_sim.issue_after_polls;
    if (!ready) {
        c->status = ST_APPLIED;
        return;
    }
    int64_t now = sim_now_s();
    c->t_issued = now;
    c->t_expires = now + (int64_t)c->term * 86400;
    free(c->serial);
    c->serial = NULL;
    sim_leaf_free(c->leaf);
    c->leaf = NULL;
    if (!c->t_approved)
        c->t_approved = now;
    if (store_issue(c) == 0)
        c->status = ST_ISSUED;
    else
        c->status = ST_APPLIED;
}

/* ------------------------------------------------------------ seed */

static char *join_sans(const cJSON *v, bool *bad)
{
    *bad = false;
    if (!v || cJSON_IsNull(v))
        return NULL;
    if (cJSON_IsString(v))
        return v->valuestring[0] ? strdup(v->valuestring) : NULL;
    if (!cJSON_IsArray(v)) {
        *bad = true;
        return NULL;
    }
    size_t cap = 1;
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        if (!cJSON_IsString(e)) {
            *bad = true;
            return NULL;
        }
        cap += strlen(e->valuestring) + 1;
    }
    if (cap == 1)
        return NULL;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    size_t o = 0;
    cJSON_ArrayForEach(e, v) {
        o += (size_t)snprintf(s + o, cap - o, "%s%s", o ? "," : "", e->valuestring);
    }
    return s;
}

static int seed_cert(const cJSON *j, char *err, size_t errlen)
{
    int id = store_json_int(j, "sslId", store_json_int(j, "id", -1));
    const char *cn = store_json_str(j, "commonName", NULL);
    int st = sim_status_parse(store_json_str(j, "status", "Issued"));
    if (id <= 0 || !cn || st < 0) {
        snprintf(err, errlen, "certificate needs sslId > 0, commonName and a known status");
        return -1;
    }
    if (store_cert(id) || (g_sim.ncerts && g_sim.certs[g_sim.ncerts - 1]->id > id)) {
        snprintf(err, errlen, "certificate %d: sslIds must be unique and ascending", id);
        return -1;
    }
    sim_cert *c = calloc(1, sizeof *c);
    if (!c)
        return -1;
    c->id = id;
    c->reason_code = -1;
    sim_random_renew_id(c->renew_id);
    c->status = (uint8_t)st;
    c->org_id = store_json_int(j, "orgId", 0);
    c->cert_type = store_json_int(j, "certType", 0);
    c->term = store_json_int(j, "term", 365);
    c->cn = strdup(cn);
    bool bad;
    c->sans = join_sans(cJSON_GetObjectItemCaseSensitive(j, "sans"), &bad);
    const char *s;
    if ((s = store_json_str(j, "comments", NULL)))
        c->comments = strdup(s);
    if ((s = store_json_str(j, "externalRequester", NULL)))
        c->ext_req = strdup(s);
    const cJSON *cf = cJSON_GetObjectItemCaseSensitive(j, "customFields");
    if (cJSON_IsArray(cf))
        c->custom_fields = cJSON_Duplicate(cf, 1);
    snprintf(c->key_type, sizeof c->key_type, "%s", store_json_str(j, "keyType", "RSA - 2048"));
    int64_t t;
    c->t_requested = sim_parse_date(store_json_str(j, "requested", NULL), &t) == 0 ? t : sim_now_s();
    if (sim_parse_date(store_json_str(j, "expires", NULL), &t) == 0)
        c->t_expires = t;
    if (sim_parse_date(store_json_str(j, "revoked", NULL), &t) == 0)
        c->t_revoked = t;
    if (st == ST_ISSUED || st == ST_EXPIRED || st == ST_REVOKED || st == ST_REPLACED) {
        c->t_approved = c->t_issued = c->t_requested;
        if (!c->t_expires)
            c->t_expires = c->t_issued + (int64_t)c->term * 86400;
        c->serial = ca_random_serial();
        if (st == ST_REVOKED && !c->t_revoked)
            c->t_revoked = c->t_issued + 86400;
        if (st == ST_REVOKED)
            c->reason_code = 4;
        if (st == ST_REPLACED)
            c->t_replaced = c->t_issued + 86400;
    }
    if (st == ST_DECLINED)
        c->t_declined = c->t_requested;
    c->progress_start_ms = sim_now_ms();
    c->requester_id = 0;
    if (!c->cn || bad || push_cert(c)) {
        snprintf(err, errlen, "certificate %d: bad fields", id);
        cert_free(c);
        return -1;
    }
    return 0;
}

static void generate_certs(int n)
{
    static const uint8_t cycle[] = {ST_ISSUED, ST_ISSUED, ST_ISSUED, ST_ISSUED, ST_EXPIRED, ST_REVOKED,
                                    ST_APPLIED, ST_REQUESTED, ST_DECLINED, ST_REJECTED, ST_INVALID,
                                    ST_REPLACED, ST_APPROVED};
    /* base the names on the first validated domain and its first SSL delegation */
    const char *dom = "generated.example";
    int org = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, g_sim.domains) {
        const char *vs = store_json_str(d, "validationStatus", "");
        const cJSON *del = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(d, "delegations"), 0);
        if (strcmp(vs, "VALIDATED") == 0 && del) {
            dom = store_json_str(d, "name", dom);
            org = store_json_int(del, "orgId", 0);
            break;
        }
    }
    if (!org)
        org = store_json_int(cJSON_GetArrayItem(g_sim.orgs, 0), "id", 0);
    const cJSON *prof = cJSON_GetArrayItem(g_sim.profiles, 0);
    int ptype = store_json_int(prof, "id", 0);
    const cJSON *t0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(prof, "terms"), 0);
    int term = cJSON_IsNumber(t0) ? t0->valueint : 365;
    int64_t now = sim_now_s();
    for (int i = 0; i < n; i++) {
        sim_cert *c = store_new_cert();
        if (!c)
            return;
        char cn[300];
        snprintf(cn, sizeof cn, "gen-%06d.%s", i, dom);
        c->cn = strdup(cn);
        c->status = cycle[i % (int)sizeof cycle];
        c->org_id = org;
        c->cert_type = ptype;
        c->term = term > 0 ? term : 365;
        snprintf(c->key_type, sizeof c->key_type, "%s", i % 7 == 3 ? "EC - P-256" : "RSA - 2048");
        c->t_requested = now - (int64_t)(i % 300 + 1) * 86400;
        if (c->status == ST_EXPIRED)
            c->t_requested = now - ((int64_t)c->term + i % 300 + 2) * 86400;
        if (c->status == ST_ISSUED || c->status == ST_EXPIRED || c->status == ST_REVOKED ||
            c->status == ST_REPLACED) {
            c->t_approved = c->t_issued = c->t_requested;
            c->t_expires = c->t_issued + (int64_t)c->term * 86400;
            c->serial = ca_random_serial();
            if (c->status == ST_REVOKED) {
                c->t_revoked = c->t_issued + 86400;
                c->reason_code = 4;
            }
            if (c->status == ST_REPLACED)
                c->t_replaced = c->t_issued + 86400;
        }
        if (c->status == ST_DECLINED)
            c->t_declined = c->t_requested;
        c->progress_start_ms = sim_now_ms();
    }
}

static cJSON *dup_array(const char *key)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(g_sim.seed, key);
    return cJSON_IsArray(a) ? cJSON_Duplicate(a, 1) : cJSON_CreateArray();
}

int store_reset(char *err, size_t errlen)
{
    clear_certs();
    cJSON_Delete(g_sim.orgs);
    cJSON_Delete(g_sim.domains);
    cJSON_Delete(g_sim.profiles);
    cJSON_Delete(g_sim.custom_fields);
    cJSON_Delete(g_sim.admins);
    free(g_sim.customer_uri);
    g_sim.customer_uri = strdup(store_json_str(g_sim.seed, "customerUri", "scm-sim"));
    g_sim.orgs = dup_array("organizations");
    g_sim.domains = dup_array("domains");
    g_sim.profiles = dup_array("profiles");
    g_sim.custom_fields = dup_array("customFields");
    g_sim.admins = dup_array("admins");
    g_sim.next_id = 1;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(g_sim.seed, "certificates")) {
        if (seed_cert(c, err, errlen))
            return -1;
    }
    if (g_sim.next_id < 1000)
        g_sim.next_id = 1000;
    generate_certs(g_sim.generate_certs);
    return 0;
}

int store_load_seed(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "could not open seed \"%s\"", path);
        return -1;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 65536 > cap) {
            cap = cap ? cap * 2 : 131072;
            if (cap > 64u * 1024 * 1024) {
                fclose(f);
                free(buf);
                snprintf(err, errlen, "seed \"%s\" is too large", path);
                return -1;
            }
            char *nb = realloc(buf, cap);
            if (!nb) {
                fclose(f);
                free(buf);
                return -1;
            }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    fclose(f);
    g_sim.seed = cJSON_ParseWithLength(buf, len);
    free(buf);
    if (!cJSON_IsObject(g_sim.seed)) {
        snprintf(err, errlen, "seed \"%s\" is not a JSON object", path);
        return -1;
    }
    static const char *const arrays[] = {"admins", "organizations", "domains", "profiles",
                                         "customFields", "certificates"};
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(g_sim.seed, arrays[i]);
        if (a && !cJSON_IsArray(a)) {
            snprintf(err, errlen, "seed: \"%s\" must be an array", arrays[i]);
            return -1;
        }
        const cJSON *e;
        cJSON_ArrayForEach(e, a) {
            if (!cJSON_IsObject(e)) {
                snprintf(err, errlen, "seed: every \"%s\" entry must be an object", arrays[i]);
                return -1;
            }
        }
    }
    return store_reset(err, errlen);
}

/* ---------------------------------------------------------- catalog */

static int patch_array(cJSON *live, const cJSON *patch, char *err, size_t errlen)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, patch) {
        const cJSON *idv = cJSON_GetObjectItemCaseSensitive(e, "id");
        if (!cJSON_IsObject(e) || !cJSON_IsNumber(idv)) {
            snprintf(err, errlen, "every catalog entry needs a numeric id");
            return -1;
        }
        int idx = 0, found = -1;
        const cJSON *x;
        cJSON_ArrayForEach(x, live) {
            if (store_json_int(x, "id", -1) == idv->valueint) {
                found = idx;
                break;
            }
            idx++;
        }
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "deleted"))) {
            if (found >= 0)
                cJSON_DeleteItemFromArray(live, found);
            continue;
        }
        if (found < 0) {
            cJSON_AddItemToArray(live, cJSON_Duplicate(e, 1));
            continue;
        }
        cJSON *tgt = cJSON_GetArrayItem(live, found);
        const cJSON *kv;
        cJSON_ArrayForEach(kv, e) {
            cJSON *dup = cJSON_Duplicate(kv, 1);
            if (!dup)
                return -1;
            if (cJSON_GetObjectItemCaseSensitive(tgt, kv->string))
                cJSON_ReplaceItemInObjectCaseSensitive(tgt, kv->string, dup);
            else
                cJSON_AddItemToObject(tgt, kv->string, dup);
        }
    }
    return 0;
}

int store_catalog_patch(const cJSON *patch, char *err, size_t errlen)
{
    if (!cJSON_IsObject(patch)) {
        snprintf(err, errlen, "catalog patch must be a JSON object");
        return -1;
    }
    bool replace = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(patch, "replace"));
    struct { const char *key; cJSON **live; } tab[] = {
        {"organizations", &g_sim.orgs}, {"domains", &g_sim.domains}, {"profiles", &g_sim.profiles},
        {"customFields", &g_sim.custom_fields}, {"admins", &g_sim.admins},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(patch, tab[i].key);
        if (!a)
            continue;
        if (!cJSON_IsArray(a)) {
            snprintf(err, errlen, "\"%s\" must be an array", tab[i].key);
            return -1;
        }
        if (replace) {
            cJSON_Delete(*tab[i].live);
            *tab[i].live = cJSON_Duplicate(a, 1);
        } else if (patch_array(*tab[i].live, a, err, errlen)) {
            return -1;
        }
    }
    const char *cu = store_json_str(patch, "customerUri", NULL);
    if (cu) {
        free(g_sim.customer_uri);
        g_sim.customer_uri = strdup(cu);
    }
    return 0;
}
