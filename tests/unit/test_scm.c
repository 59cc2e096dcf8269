/*
 * test_scm.c - the SCM client against canned responses written from the
 * documented examples in scm-api.md (tests/fixtures/scm/), served by a tiny
 * in-test libmicrohttpd server. The simulator is deliberately not used here:
 * the client and the simulator must not be able to share a mistake.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "sf_log.h"
#include "sf_metrics.h"
#include "sf_scm.h"
#include "sf_util.h"

#define FIX SCMFLOW_SOURCE_DIR "/tests/fixtures/scm/"
#define PASSWORD "s3cr3t-Pa55word"

enum { ACT_RESPOND = 0, ACT_RESET, ACT_SLEEP };

typedef struct route {
    const char *method;     /* NULL = any */
    const char *path;       /* exact; a trailing '*' = prefix */
    int status;
    const char *fixture;    /* file in FIX, or NULL */
    const char *body;       /* inline body when no fixture */
    const char *retry_after;
    const char *total;      /* X-Total-Count */
    int action;
    int sleep_ms;
    int times;              /* uses left; -1 = forever */
    int hits;
} route;

typedef struct fake {
    struct MHD_Daemon *d;
    int port;
    char base[128];
    pthread_mutex_t mu;
    route routes[32];
    int n_routes;
    int requests;
    int64_t req_ms[32];
    char method[16];
    char url[512];
    char query[1024];
    char body[16384];
    char login[128], password[128], customer[128], ctype[128];
} fake;

static fake F;

typedef struct upload {
    sf_buf b;
} upload;

static void add_route(const route *r)
{
    pthread_mutex_lock(&F.mu);
    assert_true(F.n_routes < 32);
    F.routes[F.n_routes++] = *r;
    pthread_mutex_unlock(&F.mu);
}

static int route_hits(const char *path)
{
    int n = 0;

    pthread_mutex_lock(&F.mu);
    for (int i = 0; i < F.n_routes; i++)
        if (strcmp(F.routes[i].path, path) == 0)
            n += F.routes[i].hits;
    pthread_mutex_unlock(&F.mu);
    return n;
}

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    sf_buf *q = cls;

    (void)kind;
    (void)sf_buf_appendf(q, "%s%s=%s", q->len ? "&" : "", key, value ? value : "");
    return MHD_YES;
}

static bool path_match(const char *pat, const char *url)
{
    size_t n = strlen(pat);

    if (n > 0 && pat[n - 1] == '*')
        return strncmp(pat, url, n - 1) == 0;
    return strcmp(pat, url) == 0;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version,
                               const char *upload_data, size_t *upload_size, void **con_cls)
{
    upload *up = *con_cls;
    route r;
    int found = -1;
    char *body = NULL;
    size_t blen = 0;
    struct MHD_Response *resp;
    enum MHD_Result ret;
    const char *h;
    sf_buf q;

    (void)cls;
    (void)version;
    if (up == NULL) {
        up = calloc(1, sizeof(*up));
        if (up == NULL)
            return MHD_NO;
        sf_buf_init(&up->b, 1 << 20);
        *con_cls = up;
        return MHD_YES;
    }
    if (*upload_size > 0) {
        (void)sf_buf_append(&up->b, upload_data, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    sf_buf_init(&q, 4096);
    (void)sf_buf_append(&q, "", 0);
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_arg, &q);

    pthread_mutex_lock(&F.mu);
    if (F.requests < 32)
        F.req_ms[F.requests] = sf_now_mono_ms();
    F.requests++;
    (void)sf_snprintf(F.method, sizeof(F.method), "%s", method);
    (void)sf_snprintf(F.url, sizeof(F.url), "%s", url);
    (void)sf_snprintf(F.query, sizeof(F.query), "%s", q.data ? q.data : "");
    (void)sf_snprintf(F.body, sizeof(F.body), "%s", up->b.data ? up->b.data : "");
    h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "login");
    (void)sf_snprintf(F.login, sizeof(F.login), "%s", h ? h : "");
    h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "password");
    (void)sf_snprintf(F.password, sizeof(F.password), "%s", h ? h : "");
    h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "customerUri");
    (void)sf_snprintf(F.customer, sizeof(F.customer), "%s", h ? h : "");
    h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    (void)sf_snprintf(F.ctype, sizeof(F.ctype), "%s", h ? h : "");
    for (int i = 0; i < F.n_routes; i++) {
        route *x = &F.routes[i];
        if (x->times == 0 || !path_match(x->path, url) ||
            (x->method && strcmp(x->method, method) != 0))
            continue;
        if (x->times > 0)
            x->times--;
        x->hits++;
        found = i;
        break;
    }
    if (found >= 0)
        r = F.routes[found];
    pthread_mutex_unlock(&F.mu);
    sf_buf_release(&q);

    if (found < 0) {
        r = (route){ .status = 404, .body = "{\"code\":-999,\"description\":\"no test route\"}" };
    }
    if (r.action == ACT_RESET)
        return MHD_NO; /* closes the connection without an answer */
    if (r.action == ACT_SLEEP) {
        struct timespec ts = { r.sleep_ms / 1000, (long)(r.sleep_ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
    }
    if (r.fixture) {
        char path[512];
        (void)sf_snprintf(path, sizeof(path), FIX "%s", r.fixture);
        if (sf_read_file(path, 8 << 20, &body, &blen) < 0)
            return MHD_NO;
    } else {
        body = sf_strdup(r.body ? r.body : "");
        blen = strlen(body);
    }
    resp = MHD_create_response_from_buffer(blen, body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(resp, "Content-Type", "application/json;charset=UTF-8");
    if (r.retry_after)
        MHD_add_response_header(resp, "Retry-After", r.retry_after);
    if (r.total)
        MHD_add_response_header(resp, "X-Total-Count", r.total);
    ret = MHD_queue_response(conn, (unsigned)r.status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    upload *up = *con_cls;

    (void)cls;
    (void)c;
    (void)toe;
    if (up) {
        sf_buf_release(&up->b);
        free(up);
        *con_cls = NULL;
    }
}

static char *g_tls_key, *g_tls_cert;

static int fake_start(bool tls)
{
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION;
    const union MHD_DaemonInfo *info;
    size_t n;

    memset(&F, 0, sizeof(F));
    pthread_mutex_init(&F.mu, NULL);
    if (tls) {
        assert_int_equal(sf_read_file(FIX "tls-server.key", 65536, &g_tls_key, &n), 0);
        assert_int_equal(sf_read_file(FIX "tls-server.pem", 65536, &g_tls_cert, &n), 0);
        F.d = MHD_start_daemon(flags | MHD_USE_TLS, 0, NULL, NULL, handler, NULL,
                               MHD_OPTION_HTTPS_MEM_KEY, g_tls_key, MHD_OPTION_HTTPS_MEM_CERT,
                               g_tls_cert, MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
                               MHD_OPTION_SOCK_ADDR, NULL, MHD_OPTION_END);
    } else {
        F.d = MHD_start_daemon(flags, 0, NULL, NULL, handler, NULL, MHD_OPTION_NOTIFY_COMPLETED,
                               completed, NULL, MHD_OPTION_END);
    }
    if (F.d == NULL)
        return -1;
    info = MHD_get_daemon_info(F.d, MHD_DAEMON_INFO_BIND_PORT);
    F.port = info ? info->port : 0;
    (void)sf_snprintf(F.base, sizeof(F.base), "%s://127.0.0.1:%d/api", tls ? "https" : "http",
                      F.port);
    return F.port > 0 ? 0 : -1;
}

static int setup(void **state)
{
    (void)state;
    return fake_start(false);
}

static int teardown(void **state)
{
    (void)state;
    MHD_stop_daemon(F.d);
    pthread_mutex_destroy(&F.mu);
    free(g_tls_key);
    free(g_tls_cert);
    g_tls_key = g_tls_cert = NULL;
    return 0;
}

static sf_scm_account mkacct(void)
{
    sf_scm_account a;

    memset(&a, 0, sizeof(a));
    a.base_url = F.base;
    a.login = "api_admin";
    a.password = PASSWORD;
    a.customer_uri = "cst001";
    a.connect_timeout_ms = 2000;
    a.total_timeout_ms = 5000;
    a.retry_max_attempts = 4;
    a.retry_max_total_ms = 10000;
    a.retry_base_ms = 10;
    a.retry_cap_ms = 50;
    return a;
}

static sf_scm_client *client(void)
{
    sf_scm_account a = mkacct();
    sf_error err;
    sf_scm_client *c = sf_scm_client_new(&a, &err);

    assert_non_null(c);
    return c;
}

/* No error text may ever carry the password. */
static void check_err(const sf_error *e, sf_err_class cls)
{
    if (e->cls != cls)
        fail_msg("expected class %s, got %s: %s", sf_err_class_name(cls),
                 sf_err_class_name(e->cls), e->msg);
    assert_null(strstr(e->msg, PASSWORD));
    assert_null(strstr(e->field, PASSWORD));
}

/* ---- parsers on the fixtures ------------------------------------------ */

static char *fixture(const char *name, size_t *len)
{
    char path[512], *b = NULL;

    (void)sf_snprintf(path, sizeof(path), FIX "%s", name);
    assert_int_equal(sf_read_file(path, 8 << 20, &b, len), 0);
    return b;
}

static void test_parse_fixtures(void **state)
{
    size_t n;
    char *b;
    sf_error err;
    sf_scm_org_list *orgs = NULL;
    sf_scm_profile_list *pl = NULL;
    sf_scm_domain *dom = NULL;
    sf_scm_cert *cert = NULL;
    sf_scm_cert_page *cp = NULL;
    sf_scm_enroll_resp er;
    sf_scm_custom_field_list *cf = NULL;

    (void)state;
    b = fixture("orgs.json", &n);
    assert_int_equal(sf_scm_parse_orgs(b, n, &orgs, &err), 0);
    free(b);
    assert_int_equal(orgs->n, 2);
    assert_int_equal(orgs->orgs[0].id, 1001);
    assert_string_equal(orgs->orgs[0].name, "ccmqa");
    assert_int_equal(orgs->orgs[0].cert_types.n, 2);
    assert_int_equal(orgs->orgs[0].n_departments, 1);
    assert_int_equal(orgs->orgs[0].departments[0].id, 1002);
    assert_string_equal(orgs->orgs[0].departments[0].parent_name, "ccmqa");
    assert_int_equal(orgs->orgs[1].n_departments, 0);
    sf_scm_org_list_free(orgs);

    b = fixture("types.json", &n);
    assert_int_equal(sf_scm_parse_profiles(b, n, &pl, &err), 0);
    free(b);
    assert_int_equal(pl->n, 2);
    assert_int_equal(pl->profiles[0].id, 224);
    assert_int_equal(pl->profiles[0].n_terms, 2);
    assert_int_equal(pl->profiles[0].terms[1], 730);
    assert_string_equal(pl->profiles[0].key_types[0].alg, "RSA");
    assert_int_equal(pl->profiles[0].key_types[0].sizes.n, 3);
    assert_string_equal(pl->profiles[0].key_types[0].sizes.v[0], "2048");
    assert_string_equal(pl->profiles[1].key_types[0].sizes.v[1], "P-384");
    assert_true(pl->profiles[1].use_secondary_org_name);
    assert_null(pl->profiles[1].description);
    sf_scm_profile_list_free(pl);

    b = fixture("domain.json", &n);
    assert_int_equal(sf_scm_parse_domain(b, n, &dom, &err), 0);
    free(b);
    assert_string_equal(dom->validation_status, "VALIDATED");
    assert_string_equal(dom->dcv_expiration, "2026-05-21");
    assert_string_equal(dom->state, "ACTIVE");
    assert_int_equal(dom->n_delegations, 1);
    assert_int_equal(dom->delegations[0].org_id, 1001);
    assert_string_equal(dom->delegations[0].cert_types.v[0], "SSL");
    assert_string_equal(dom->delegations[0].status, "ACTIVE");
    sf_scm_domain_free(dom);

    b = fixture("cert-details.json", &n);
    assert_int_equal(sf_scm_parse_cert(b, n, &cert, &err), 0);
    free(b);
    assert_int_equal(cert->id, 55);
    assert_string_equal(cert->status, "Issued");
    assert_string_equal(cert->expires, "05/22/2026");
    assert_int_equal(cert->cert_type_id, 224);
    assert_int_equal(cert->sans.n, 2);
    assert_string_equal(cert->serial_number, "AB:CD:EF:01:23:45:67:89");
    assert_string_equal(cert->key_type, "RSA - 2048");
    assert_string_equal(cert->subject, "CN=ccmqa.com");
    assert_null(cert->revoked);
    sf_scm_cert_free(cert);

    b = fixture("cert-details-requested.json", &n);
    assert_int_equal(sf_scm_parse_cert(b, n, &cert, &err), 0);
    free(b);
    assert_string_equal(cert->status, "Requested");
    assert_null(cert->serial_number);
    sf_scm_cert_free(cert);

    b = fixture("cert-list.json", &n);
    assert_int_equal(sf_scm_parse_cert_list(b, n, &cp, &err), 0);
    free(b);
    assert_int_equal(cp->n, 2);
    assert_int_equal(cp->items[0].ssl_id, 58);
    assert_null(cp->items[0].serial_number);
    assert_string_equal(cp->items[1].sans.v[0], "www.ccmqa.com");
    sf_scm_cert_page_free(cp);

    b = fixture("enroll.json", &n);
    assert_int_equal(sf_scm_parse_enroll(b, n, &er, &err), 0);
    free(b);
    assert_int_equal(er.ssl_id, 55);
    assert_string_equal(er.renew_id, "gu03sW6WENt7GTvDTuOP");

    b = fixture("custom-fields.json", &n);
    assert_int_equal(sf_scm_parse_custom_fields(b, n, &cf, &err), 0);
    free(b);
    assert_int_equal(cf->n, 2);
    assert_true(cf->fields[0].mandatory);
    assert_false(cf->fields[1].mandatory);
    sf_scm_custom_field_list_free(cf);
}

static void test_parse_wrong_types(void **state)
{
    static const struct {
        const char *body;
        int which;
        const char *field;
    } cases[] = {
        { "[{\"id\":1,\"name\":\"a\"},{\"id\":2,\"name\":\"b\"},{\"id\":3,\"name\":42}]", 0,
          "orgs[2].name" },
        { "[{\"id\":\"1\",\"name\":\"a\"}]", 0, "orgs[0].id" },
        { "[{\"id\":1,\"name\":\"a\",\"departments\":[{\"id\":2}]}]", 0,
          "orgs[0].departments[0].name" },
        { "{\"id\":1}", 0, "orgs" },
        { "[{\"id\":224,\"name\":\"x\",\"terms\":[365,\"730\"]}]", 1, "profiles[0].terms[1]" },
        { "[{\"id\":224,\"name\":\"x\",\"keyTypes\":{\"RSA\":\"2048\"}}]", 1,
          "profiles[0].keyTypes.RSA" },
        { "{\"id\":55,\"status\":3}", 2, "status" },
        { "{\"id\":55,\"status\":\"Issued\",\"certType\":[]}", 2, "certType" },
        { "{\"id\":1.5,\"status\":\"Issued\"}", 2, "id" },
        { "{\"sslId\":\"55\"}", 3, "sslId" },
        { "[{\"sslId\":58,\"subjectAlternativeNames\":[1]}]", 4,
          "certs[0].subjectAlternativeNames[0]" },
        { "not json", 0, "" },
        { "", 2, "" },
    };

    (void)state;
    for (size_t i = 0; i < SF_ARRAY_LEN(cases); i++) {
        sf_error err;
        int rc = 0;
        size_t n = strlen(cases[i].body);
        void *p = NULL;
        sf_scm_enroll_resp er;

        sf_error_clear(&err);
        switch (cases[i].which) {
        case 0: rc = sf_scm_parse_orgs(cases[i].body, n, (sf_scm_org_list **)&p, &err); break;
        case 1: rc = sf_scm_parse_profiles(cases[i].body, n, (sf_scm_profile_list **)&p, &err); break;
        case 2: rc = sf_scm_parse_cert(cases[i].body, n, (sf_scm_cert **)&p, &err); break;
        case 3: rc = sf_scm_parse_enroll(cases[i].body, n, &er, &err); break;
        case 4: rc = sf_scm_parse_cert_list(cases[i].body, n, (sf_scm_cert_page **)&p, &err); break;
        }
        if (rc != -1 || p != NULL)
            fail_msg("case %zu: parsed although wrong", i);
        check_err(&err, SF_ERR_INVALID);
        if (strcmp(err.field, cases[i].field) != 0)
            fail_msg("case %zu: field \"%s\" want \"%s\" (%s)", i, err.field, cases[i].field,
                     err.msg);
    }
    {
        sf_error err;
        sf_scm_org_list *o = NULL;
        const char *b = "[{\"id\":1,\"name\":\"a\"},{\"id\":2,\"name\":\"b\"},{\"id\":3,\"name\":42}]";
        assert_int_equal(sf_scm_parse_orgs(b, strlen(b), &o, &err), -1);
        assert_string_equal(err.msg, "scm response: field orgs[2].name: expected string");
    }
}

static void test_error_mapping(void **state)
{
    static const struct {
        int status;
        const char *body;
        bool collect;
        sf_err_class cls;
        int code;
    } cases[] = {
        { 401, "{\"code\":-16,\"description\":\"Unknown user\"}", false, SF_ERR_AUTH, -16 },
        { 400, "{\"code\":-970,\"description\":\"Incorrect login credentials.\"}", false, SF_ERR_AUTH, -970 },
        { 400, "{\"code\":-36,\"description\":\"term\"}", false, SF_ERR_REJECTED, -36 },
        { 400, "{\"code\":0,\"description\":\"Being processed by Sectigo\"}", true, SF_ERR_PENDING, 0 },
        { 400, "{\"code\":-1400,\"description\":\"x\"}", true, SF_ERR_PENDING, -1400 },
        { 400, "{\"code\":-183,\"description\":\"x\"}", true, SF_ERR_PENDING, -183 },
        { 400, "{\"code\":-109,\"description\":\"x\"}", true, SF_ERR_PENDING, -109 },
        { 400, "{\"code\":-110,\"description\":\"revoked\"}", true, SF_ERR_REJECTED, -110 },
        { 400, "{\"code\":0,\"description\":\"x\"}", false, SF_ERR_REJECTED, 0 },
        { 200, "", true, SF_ERR_PENDING, 200 },
        { 404, "{\"code\":-5101,\"description\":\"Certificate not found.\"}", true, SF_ERR_NOT_FOUND, -5101 },
        { 500, "{\"code\":-2,\"description\":\"Internal\"}", false, SF_ERR_TRANSIENT, -2 },
        { 502, "<html>bad gateway</html>", false, SF_ERR_TRANSIENT, 502 },
        { 429, "", false, SF_ERR_TRANSIENT, 429 },
        { 503, "", false, SF_ERR_TRANSIENT, 503 },
        { 400, "{\"code\":-195,\"description\":\"CA\"}", false, SF_ERR_TRANSIENT, -195 },
        { 400, "{\"code\":-140,\"description\":\"CSR\"}", false, SF_ERR_TRANSIENT, -140 },
        { 403, "", false, SF_ERR_REJECTED, 403 },
    };

    (void)state;
    for (size_t i = 0; i < SF_ARRAY_LEN(cases); i++) {
        sf_error err;

        sf_error_clear(&err);
        assert_int_equal(sf_scm_error_from_response(cases[i].status, cases[i].body,
                                                    strlen(cases[i].body), cases[i].collect,
                                                    1234, &err), -1);
        if (err.cls != cases[i].cls || err.code != cases[i].code)
            fail_msg("case %zu: got %s/%d want %s/%d (%s)", i, sf_err_class_name(err.cls), err.code,
                     sf_err_class_name(cases[i].cls), cases[i].code, err.msg);
        assert_int_equal(err.http_status, cases[i].status);
        assert_int_equal(err.retry_after_ms, 1234);
    }
}

static void test_date(void **state)
{
    int64_t t;
    sf_error err;

    (void)state;
    assert_int_equal(sf_scm_parse_date("05/21/2025", &t, &err), 0);
    assert_int_equal(t, 1747785600);
    assert_int_equal(sf_scm_parse_date("02/29/2024", &t, &err), 0);
    assert_int_equal(sf_scm_parse_date("02/29/2023", &t, &err), -1);
    assert_int_equal(sf_scm_parse_date("13/01/2025", &t, &err), -1);
    assert_int_equal(sf_scm_parse_date("2025-05-21", &t, &err), -1);
    assert_int_equal(sf_scm_parse_date("5/21/2025", &t, &err), -1);
    assert_int_equal(sf_scm_parse_date(NULL, &t, &err), -1);
    assert_true(sf_scm_format_valid("x509IOR"));
    assert_false(sf_scm_format_valid("p12"));
}

static void test_client_new_validation(void **state)
{
    sf_scm_account a = mkacct();
    sf_error err;

    (void)state;
    a.login = NULL;
    assert_null(sf_scm_client_new(&a, &err));
    assert_string_equal(err.field, "login");
    a = mkacct();
    a.base_url = "https://cert-manager.com/";
    assert_null(sf_scm_client_new(&a, &err));
    assert_string_equal(err.field, "base_url");
    a = mkacct();
    a.password = "bad\r\nX-Injected: 1";
    assert_null(sf_scm_client_new(&a, &err));
    assert_string_equal(err.field, "password");
    check_err(&err, SF_ERR_INVALID);
}

/* ---- every call over HTTP --------------------------------------------- */

static void test_calls(void **state)
{
    sf_scm_client *c;
    sf_error err;
    sf_scm_org_list *orgs = NULL;
    sf_scm_domain_page *dp = NULL;
    sf_scm_domain *dom = NULL;
    sf_scm_profile_list *pl = NULL;
    sf_scm_custom_field_list *cf = NULL;
    sf_scm_enroll_resp er;
    sf_scm_cert *cert = NULL;
    sf_scm_cert_page *cp = NULL;
    sf_scm_cert_filter f = SF_SCM_CERT_FILTER_INIT;
    int64_t total = 0, newid = 0;
    char *bytes = NULL, *expect = NULL;
    size_t blen = 0, elen = 0;
    cJSON *j;
    const char *sans[] = { "ccmqa.com", "www.ccmqa.com" };
    sf_scm_enroll_req req = { .org_id = 1001, .csr = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n",
                              .cert_type = 224, .term = 365, .sans = sans, .n_sans = 2,
                              .comments = "order 7", .external_requester = "a@x.org" };
    sf_scm_replace_req rr = { .csr = "CSR", .reason = "key change", .common_name = "ccmqa.com",
                              .sans = sans, .n_sans = 2 };

    (void)state;
    add_route(&(route){ "GET", "/api/organization/v1", 200, "orgs.json", .times = -1 });
    add_route(&(route){ "GET", "/api/domain/v1", 200, "domains.json", .total = "5", .times = -1 });
    add_route(&(route){ "GET", "/api/domain/v1/1", 200, "domain.json", .times = -1 });
    add_route(&(route){ "GET", "/api/ssl/v1/types", 200, "types.json", .times = -1 });
    add_route(&(route){ "GET", "/api/ssl/v1/customFields", 200, "custom-fields.json", .times = -1 });
    add_route(&(route){ "POST", "/api/ssl/v1/enroll", 200, "enroll.json", .times = -1 });
    add_route(&(route){ "GET", "/api/ssl/v1/55", 200, "cert-details.json", .times = -1 });
    add_route(&(route){ "GET", "/api/ssl/v1", 200, "cert-list.json", .total = "42", .times = -1 });
    add_route(&(route){ "HEAD", "/api/ssl/v1", 200, NULL, "", .total = "42", .times = -1 });
    add_route(&(route){ "GET", "/api/ssl/v1/collect/55/x509", 200, "collect-x509.pem", .times = -1 });
    add_route(&(route){ "POST", "/api/ssl/v1/renewById/55", 200, "renew-by-id.json", .times = -1 });
    add_route(&(route){ "POST", "/api/ssl/v1/*", 204, NULL, "", .times = -1 });
    c = client();

    assert_int_equal(sf_scm_list_orgs(c, &orgs, &err), 0);
    assert_int_equal(orgs->n, 2);
    assert_string_equal(F.login, "api_admin");
    assert_string_equal(F.password, PASSWORD);
    assert_string_equal(F.customer, "cst001");
    assert_string_equal(F.ctype, "application/json;charset=UTF-8");
    sf_scm_org_list_free(orgs);

    assert_int_equal(sf_scm_list_domains(c, 0, 2, &dp, &err), 0);
    assert_string_equal(F.query, "position=0&size=2");
    assert_int_equal(dp->n, 2);
    assert_int_equal(dp->total, 5);
    assert_string_equal(dp->items[1].name, "*.ccmqa.com");
    sf_scm_domain_page_free(dp);
    assert_int_equal(sf_scm_list_domains(c, 0, 201, &dp, &err), -1);

    assert_int_equal(sf_scm_get_domain(c, 1, &dom, &err), 0);
    assert_string_equal(dom->validation_status, "VALIDATED");
    sf_scm_domain_free(dom);

    assert_int_equal(sf_scm_list_profiles(c, 1001, &pl, &err), 0);
    assert_string_equal(F.query, "organizationId=1001");
    assert_int_equal(pl->n, 2);
    sf_scm_profile_list_free(pl);

    assert_int_equal(sf_scm_list_custom_fields(c, &cf, &err), 0);
    assert_int_equal(cf->n, 2);
    sf_scm_custom_field_list_free(cf);

    assert_int_equal(sf_scm_enroll(c, &req, &er, &err), 0);
    assert_int_equal(er.ssl_id, 55);
    assert_string_equal(er.renew_id, "gu03sW6WENt7GTvDTuOP");
    j = cJSON_Parse(F.body);
    assert_non_null(j);
    assert_true(cJSON_IsString(cJSON_GetObjectItem(j, "subjAltNames")));
    assert_string_equal(cJSON_GetObjectItem(j, "subjAltNames")->valuestring, "ccmqa.com,www.ccmqa.com");
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(j, "orgId")));
    assert_int_equal(cJSON_GetObjectItem(j, "certType")->valueint, 224);
    assert_int_equal(cJSON_GetObjectItem(j, "term")->valueint, 365);
    assert_string_equal(cJSON_GetObjectItem(j, "externalRequester")->valuestring, "a@x.org");
    cJSON_Delete(j);

    assert_int_equal(sf_scm_get_cert(c, 55, &cert, &err), 0);
    assert_string_equal(cert->status, "Issued");
    sf_scm_cert_free(cert);

    f.position = 0;
    f.size = 200;
    f.common_name = "ccmqa.com";
    f.status = "Issued";
    assert_int_equal(sf_scm_list_certs(c, &f, &cp, &err), 0);
    assert_string_equal(F.query, "position=0&size=200&commonName=ccmqa.com&status=Issued");
    assert_int_equal(cp->total, 42);
    assert_int_equal(cp->n, 2);
    sf_scm_cert_page_free(cp);

    assert_int_equal(sf_scm_count_certs(c, &f, &total, &err), 0);
    assert_string_equal(F.method, "HEAD");
    assert_string_equal(F.query, "commonName=ccmqa.com&status=Issued");
    assert_int_equal(total, 42);

    assert_int_equal(sf_scm_collect(c, 55, "x509", &bytes, &blen, &err), 0);
    expect = fixture("collect-x509.pem", &elen);
    assert_int_equal(blen, elen);
    assert_memory_equal(bytes, expect, elen);
    free(bytes);
    free(expect);
    assert_int_equal(sf_scm_collect(c, 55, "p12", &bytes, &blen, &err), -1);
    check_err(&err, SF_ERR_INVALID);

    assert_int_equal(sf_scm_renew_by_id(c, 55, NULL, &newid, &err), 0);
    assert_int_equal(newid, 60);
    assert_string_equal(F.body, "{}");
    assert_int_equal(sf_scm_renew_by_id(c, 55, "CSR", &newid, &err), 0);
    assert_string_equal(F.body, "{\"csr\":\"CSR\"}");

    assert_int_equal(sf_scm_renew(c, "gu03sW6WENt7GTvDTuOP", NULL, &err), 0);
    assert_string_equal(F.url, "/api/ssl/v1/renew/gu03sW6WENt7GTvDTuOP");

    assert_int_equal(sf_scm_replace(c, 55, &rr, &err), 0);
    assert_string_equal(F.url, "/api/ssl/v1/replace/55");
    j = cJSON_Parse(F.body);
    assert_true(cJSON_IsArray(cJSON_GetObjectItem(j, "subjectAlternativeNames")));
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "subjectAlternativeNames")), 2);
    assert_string_equal(cJSON_GetObjectItem(j, "reason")->valuestring, "key change");
    cJSON_Delete(j);

    assert_int_equal(sf_scm_revoke(c, 55, 4, "superseded", &err), 0);
    assert_string_equal(F.url, "/api/ssl/v1/revoke/55");
    assert_string_equal(F.body, "{\"reasonCode\":4,\"reason\":\"superseded\"}");
    assert_int_equal(sf_scm_revoke(c, 55, 2, "bad code", &err), -1);
    assert_string_equal(err.field, "reasonCode");

    assert_int_equal(sf_scm_revoke_serial(c, "AB:CD:EF", 1, "key compromise", &err), 0);
    assert_string_equal(F.url, "/api/ssl/v1/revoke/serial/AB:CD:EF");

    assert_int_equal(sf_scm_approve(c, 56, "ok", &err), 0);
    assert_string_equal(F.url, "/api/ssl/v1/approve/56");
    assert_string_equal(F.body, "{\"message\":\"ok\"}");
    assert_int_equal(sf_scm_decline(c, 56, "no", &err), 0);
    assert_string_equal(F.url, "/api/ssl/v1/decline/56");

    sf_scm_client_free(c);
}

static void test_roles(void **state)
{
    sf_scm_client *c;
    sf_error err;
    sf_scm_roles *r = NULL;

    (void)state;
    add_route(&(route){ "GET", "/api/admin/v1", 200, "admins.json", .times = 1 });
    add_route(&(route){ "GET", "/api/admin/v1/7", 200, "admin-7.json", .times = 1 });
    c = client();
    assert_int_equal(sf_scm_check_roles(c, &r, &err), 0);
    assert_true(r->is_mrao);
    assert_int_equal(r->admin_id, 7);
    assert_string_equal(r->method, "admin");
    assert_int_equal(r->roles.n, 2);
    sf_scm_roles_free(r);

    /* Admin view refused: fall back to the assignable roles. */
    add_route(&(route){ "GET", "/api/admin/v1", 400, "err-not-authorized.json", .times = 1 });
    add_route(&(route){ "GET", "/api/admin/v1/roles", 200, "roles.json", .times = 1 });
    assert_int_equal(sf_scm_check_roles(c, &r, &err), 0);
    assert_true(r->is_mrao);
    assert_string_equal(r->method, "roles");
    sf_scm_roles_free(r);

    /* Bad credentials: AUTH, no fallback. */
    add_route(&(route){ "GET", "/api/admin/v1", 401, "err-unknown-user.json", .times = 1 });
    assert_int_equal(sf_scm_check_roles(c, &r, &err), -1);
    check_err(&err, SF_ERR_AUTH);
    assert_int_equal(err.code, -16);
    sf_scm_client_free(c);
}

static void test_client_cert_path(void **state)
{
    sf_scm_account a = mkacct();
    sf_scm_client *c;
    sf_error err;
    sf_scm_custom_field_list *cf = NULL;

    (void)state;
    add_route(&(route){ "GET", "/private/api/ssl/v1/customFields", 200, "custom-fields.json", .times = -1 });
    a.auth = SF_SCM_AUTH_CLIENT_CERT;
    a.password = NULL;
    a.client_cert_file = FIX "tls-server.pem";
    a.client_key_file = FIX "tls-server.key";
    c = sf_scm_client_new(&a, &err);
    assert_non_null(c);
    assert_int_equal(sf_scm_list_custom_fields(c, &cf, &err), 0);
    assert_string_equal(F.password, "");
    assert_string_equal(F.login, "api_admin");
    sf_scm_custom_field_list_free(cf);
    sf_scm_client_free(c);
}

/* ---- error classes over HTTP ------------------------------------------ */

static void test_errors_http(void **state)
{
    sf_scm_client *c = NULL;
    sf_error err;
    sf_scm_cert *cert = NULL;
    sf_scm_org_list *orgs = NULL;
    sf_scm_enroll_resp er;
    char *bytes = NULL;
    size_t blen;
    sf_scm_enroll_req req = { .org_id = 1001, .csr = "CSR", .cert_type = 224, .term = 999 };
    static const char *pend[] = { "pending-0.json", "pending-1400.json", "pending-183.json",
                                  "pending-109.json" };
    int64_t t0;

    (void)state;
    c = client();
    /* 401 -16 */
    add_route(&(route){ "GET", "/api/organization/v1", 401, "err-unknown-user.json", .times = 1 });
    assert_int_equal(sf_scm_list_orgs(c, &orgs, &err), -1);
    check_err(&err, SF_ERR_AUTH);
    assert_int_equal(err.code, -16);
    assert_int_equal(err.http_status, 401);
    assert_int_equal(route_hits("/api/organization/v1"), 1);

    /* 400 -36 on enroll: rejected, exactly one request. */
    add_route(&(route){ "POST", "/api/ssl/v1/enroll", 400, "err-term.json", .times = 1 });
    assert_int_equal(sf_scm_enroll(c, &req, &er, &err), -1);
    check_err(&err, SF_ERR_REJECTED);
    assert_int_equal(err.code, -36);
    assert_non_null(strstr(err.msg, "validity period"));
    assert_int_equal(route_hits("/api/ssl/v1/enroll"), 1);

    /* every documented pending form */
    for (size_t i = 0; i < SF_ARRAY_LEN(pend); i++) {
        add_route(&(route){ "GET", "/api/ssl/v1/collect/56/pem", 400, pend[i], .times = 1 });
        assert_int_equal(sf_scm_collect(c, 56, "pem", &bytes, &blen, &err), -1);
        check_err(&err, SF_ERR_PENDING);
    }
    add_route(&(route){ "GET", "/api/ssl/v1/collect/56/pem", 200, NULL, "", .times = 1 });
    assert_int_equal(sf_scm_collect(c, 56, "pem", &bytes, &blen, &err), -1);
    check_err(&err, SF_ERR_PENDING);
    assert_int_equal(route_hits("/api/ssl/v1/collect/56/pem"), 5); /* not retried */

    /* 404 */
    add_route(&(route){ "GET", "/api/ssl/v1/999", 404, "err-not-found.json", .times = 1 });
    assert_int_equal(sf_scm_get_cert(c, 999, &cert, &err), -1);
    check_err(&err, SF_ERR_NOT_FOUND);
    assert_int_equal(err.code, -5101);

    /* 500 then 200: retried */
    add_route(&(route){ "GET", "/api/ssl/v1/55", 500, "err-internal.json", .times = 1 });
    add_route(&(route){ "GET", "/api/ssl/v1/55", 200, "cert-details.json", .times = 1 });
    assert_int_equal(sf_scm_get_cert(c, 55, &cert, &err), 0);
    assert_int_equal(route_hits("/api/ssl/v1/55"), 2);
    sf_scm_cert_free(cert);

    /* connection reset on a GET: retried */
    add_route(&(route){ "GET", "/api/ssl/v1/57", 200, .action = ACT_RESET, .times = 1 });
    add_route(&(route){ "GET", "/api/ssl/v1/57", 200, "cert-details.json", .times = 1 });
    assert_int_equal(sf_scm_get_cert(c, 57, &cert, &err), 0);
    assert_int_equal(route_hits("/api/ssl/v1/57"), 2);
    sf_scm_cert_free(cert);

    /* -195 (CA unavailable): transient, retried */
    add_route(&(route){ "GET", "/api/ssl/v1/58", 400, "err-ca-unavailable.json", .times = 1 });
    add_route(&(route){ "GET", "/api/ssl/v1/58", 200, "cert-details.json", .times = 1 });
    assert_int_equal(sf_scm_get_cert(c, 58, &cert, &err), 0);
    sf_scm_cert_free(cert);

    /* 429 with Retry-After: 1 honoured (measured) */
    add_route(&(route){ "GET", "/api/ssl/v1/59", 429, NULL, "", .retry_after = "1", .times = 1 });
    add_route(&(route){ "GET", "/api/ssl/v1/59", 200, "cert-details.json", .times = 1 });
    t0 = sf_now_mono_ms();
    assert_int_equal(sf_scm_get_cert(c, 59, &cert, &err), 0);
    {
        int64_t waited = sf_now_mono_ms() - t0;
        print_message("429 Retry-After 1 s: call took %lld ms\n", (long long)waited);
        assert_true(waited >= 950 && waited < 6000);
    }
    sf_scm_cert_free(cert);

    /* Retry-After as an HTTP date (~2 s ahead, second granularity) */
    {
        char date[64];
        time_t when = time(NULL) + 2;
        struct tm tmv;
        int64_t waited;

        gmtime_r(&when, &tmv);
        strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tmv);
        add_route(&(route){ "GET", "/api/ssl/v1/60", 503, NULL, "", .retry_after = date, .times = 1 });
        add_route(&(route){ "GET", "/api/ssl/v1/60", 200, "cert-details.json", .times = 1 });
        t0 = sf_now_mono_ms();
        assert_int_equal(sf_scm_get_cert(c, 60, &cert, &err), 0);
        waited = sf_now_mono_ms() - t0;
        print_message("503 Retry-After \"%s\": call took %lld ms\n", date, (long long)waited);
        assert_true(waited >= 900 && waited < 6000);
        sf_scm_cert_free(cert);
    }

    /* 503 on enroll: an explicit refusal, so even POST is retried */
    add_route(&(route){ "POST", "/api/ssl/v1/enroll", 503, NULL, "", .times = 1 });
    add_route(&(route){ "POST", "/api/ssl/v1/enroll", 200, "enroll.json", .times = 1 });
    req.term = 365;
    assert_int_equal(sf_scm_enroll(c, &req, &er, &err), 0);
    assert_int_equal(er.ssl_id, 55);
    assert_int_equal(route_hits("/api/ssl/v1/enroll"), 3);

    /* 503 forever: transient after max attempts (4) */
    add_route(&(route){ "GET", "/api/ssl/v1/types", 503, NULL, "", .times = -1 });
    {
        sf_scm_profile_list *pl = NULL;
        assert_int_equal(sf_scm_list_profiles(c, 0, &pl, &err), -1);
        check_err(&err, SF_ERR_TRANSIENT);
        assert_int_equal(err.http_status, 503);
        assert_int_equal(route_hits("/api/ssl/v1/types"), 4);
    }

    /* Retry-After beyond the budget: returned at once with the hint */
    {
        sf_scm_account a = mkacct();
        sf_scm_client *c2;
        sf_scm_custom_field_list *cf = NULL;

        a.retry_max_total_ms = 3000;
        c2 = sf_scm_client_new(&a, &err);
        add_route(&(route){ "GET", "/api/ssl/v1/customFields", 429, NULL, "", .retry_after = "30", .times = 1 });
        t0 = sf_now_mono_ms();
        assert_int_equal(sf_scm_list_custom_fields(c2, &cf, &err), -1);
        check_err(&err, SF_ERR_TRANSIENT);
        assert_int_equal(err.retry_after_ms, 30000);
        assert_true(sf_now_mono_ms() - t0 < 2500); /* no waiting at all */
        sf_scm_client_free(c2);
    }

    /* 500 on enroll: the server saw it; unknown outcome, not retried */
    add_route(&(route){ "POST", "/api/ssl/v1/renewById/70", 500, "err-internal.json", .times = -1 });
    {
        int64_t nid;
        assert_int_equal(sf_scm_renew_by_id(c, 70, NULL, &nid, &err), -1);
        check_err(&err, SF_ERR_UNKNOWN);
        assert_int_equal(route_hits("/api/ssl/v1/renewById/70"), 1);
    }

    /* 408 on a POST: the request was not received, so it is retried */
    add_route(&(route){ "POST", "/api/ssl/v1/approve/75", 408, NULL, "", .times = 1 });
    add_route(&(route){ "POST", "/api/ssl/v1/approve/75", 204, NULL, "", .times = 1 });
    assert_int_equal(sf_scm_approve(c, 75, "ok", &err), 0);
    assert_int_equal(route_hits("/api/ssl/v1/approve/75"), 2);

    /* connection reset after an enroll was sent: UNKNOWN, not retried */
    add_route(&(route){ "POST", "/api/ssl/v1/replace/71", 204, .action = ACT_RESET, .times = -1 });
    {
        sf_scm_replace_req rr = { .csr = "CSR", .reason = "r" };
        assert_int_equal(sf_scm_replace(c, 71, &rr, &err), -1);
        check_err(&err, SF_ERR_UNKNOWN);
        assert_int_equal(route_hits("/api/ssl/v1/replace/71"), 1);
    }
    sf_scm_client_free(c);

    /* timeout on enroll: UNKNOWN, exactly one request */
    {
        sf_scm_account a = mkacct();
        a.total_timeout_ms = 300;
        c = sf_scm_client_new(&a, &err);
        add_route(&(route){ "POST", "/api/ssl/v1/enroll", 200, "enroll.json", .action = ACT_SLEEP,
                            .sleep_ms = 800, .times = -1 });
        assert_int_equal(sf_scm_enroll(c, &req, &er, &err), -1);
        check_err(&err, SF_ERR_UNKNOWN);
        assert_int_equal(route_hits("/api/ssl/v1/enroll"), 4);
        /* ...while a GET that times out is retried (TRANSIENT in the end) */
        add_route(&(route){ "GET", "/api/ssl/v1/72", 200, "cert-details.json", .action = ACT_SLEEP,
                            .sleep_ms = 800, .times = 1 });
        add_route(&(route){ "GET", "/api/ssl/v1/72", 200, "cert-details.json", .times = 1 });
        assert_int_equal(sf_scm_get_cert(c, 72, &cert, &err), 0);
        assert_int_equal(route_hits("/api/ssl/v1/72"), 2);
        sf_scm_cert_free(cert);
        sf_scm_client_free(c);
    }

    /* response over the size limit */
    {
        sf_scm_account a = mkacct();
        a.max_response_bytes = 1000;
        c = sf_scm_client_new(&a, &err);
        add_route(&(route){ "GET", "/api/ssl/v1/73", 200, "cert-details.json", .times = -1 });
        assert_int_equal(sf_scm_get_cert(c, 73, &cert, &err), -1);
        check_err(&err, SF_ERR_INVALID);
        assert_string_equal(err.field, "body");
        assert_int_equal(route_hits("/api/ssl/v1/73"), 1);
        sf_scm_client_free(c);
    }

    /* wrong-typed field over HTTP */
    c = client();
    add_route(&(route){ "GET", "/api/ssl/v1/74", 200, "cert-details-bad-status.json", .times = -1 });
    assert_int_equal(sf_scm_get_cert(c, 74, &cert, &err), -1);
    check_err(&err, SF_ERR_INVALID);
    assert_string_equal(err.field, "status");
    add_route(&(route){ "GET", "/api/organization/v1", 200, "orgs-bad-name.json", .times = 1 });
    assert_int_equal(sf_scm_list_orgs(c, &orgs, &err), -1);
    assert_string_equal(err.msg, "scm response: field orgs[2].name: expected string");
    sf_scm_client_free(c);
}

static void test_connect_refused(void **state)
{
    sf_scm_account a = mkacct();
    sf_scm_client *c;
    sf_error err;
    sf_scm_enroll_resp er;
    sf_scm_enroll_req req = { .org_id = 1, .csr = "CSR", .cert_type = 1, .term = 365 };

    (void)state;
    /* Nothing listens on port 1: the request surely did not reach SCM,
     * so even an enroll is TRANSIENT (safe to retry), never UNKNOWN. */
    a.base_url = "http://127.0.0.1:1/api";
    a.retry_max_attempts = 2;
    c = sf_scm_client_new(&a, &err);
    assert_int_equal(sf_scm_enroll(c, &req, &er, &err), -1);
    check_err(&err, SF_ERR_TRANSIENT);
    sf_scm_client_free(c);
}

static void test_tls(void **state)
{
    sf_scm_account a;
    sf_scm_client *c;
    sf_error err;
    sf_scm_custom_field_list *cf = NULL;

    (void)state;
    MHD_stop_daemon(F.d);
    pthread_mutex_destroy(&F.mu);
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
        fail_msg("libmicrohttpd built without TLS");
    assert_int_equal(fake_start(true), 0);
    add_route(&(route){ "GET", "/api/ssl/v1/customFields", 200, "custom-fields.json", .times = -1 });

    a = mkacct();
    a.ca_bundle = FIX "tls-server.pem";
    c = sf_scm_client_new(&a, &err);
    assert_int_equal(sf_scm_list_custom_fields(c, &cf, &err), 0);
    sf_scm_custom_field_list_free(cf);
    sf_scm_client_free(c);

    a.ca_bundle = FIX "tls-other-ca.pem";
    c = sf_scm_client_new(&a, &err);
    assert_int_equal(sf_scm_list_custom_fields(c, &cf, &err), -1);
    check_err(&err, SF_ERR_FATAL);
    print_message("wrong CA: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "certificate"));
    assert_int_equal(route_hits("/api/ssl/v1/customFields"), 1);
    sf_scm_client_free(c);
}

/* ---- rate limit -------------------------------------------------------- */

static void test_rate_limit(void **state)
{
    sf_scm_account a = mkacct();
    sf_scm_client *c1, *c2;
    sf_error err;
    int64_t t0, took;

    (void)state;
    add_route(&(route){ "GET", "/api/ssl/v1/55", 200, "cert-details.json", .times = -1 });
    a.rate_per_sec = 20;
    a.rate_burst = 1;
    c1 = sf_scm_client_new(&a, &err);
    c2 = sf_scm_client_new(&a, &err); /* same account: same bucket */
    assert_non_null(c1);
    assert_non_null(c2);
    t0 = sf_now_mono_ms();
    for (int i = 0; i < 11; i++) {
        sf_scm_cert *cert = NULL;
        assert_int_equal(sf_scm_get_cert(i % 2 ? c1 : c2, 55, &cert, &err), 0);
        sf_scm_cert_free(cert);
    }
    took = sf_now_mono_ms() - t0;
    print_message("11 calls at 20/s burst 1 over two clients: %lld ms\n", (long long)took);
    assert_true(took >= 450);
    assert_true(took < 6000);
    sf_scm_client_free(c1);
    sf_scm_client_free(c2);
}

/* ---- batch ------------------------------------------------------------- */

typedef struct bstat {
    int calls, ok, pending, transient;
    int seen[256];
} bstat;

static void on_done(sf_scm_result *r, void *ud)
{
    bstat *s = ud;

    s->calls++;
    if (r->ssl_id >= 0 && r->ssl_id < 256)
        s->seen[r->ssl_id]++;
    if (r->rc == 0) {
        s->ok++;
        if (r->kind == SF_SCM_REQ_DETAILS) {
            assert_non_null(r->cert);
            assert_string_equal(r->cert->status, "Issued");
        } else if (r->kind == SF_SCM_REQ_COLLECT) {
            assert_true(r->body_len > 0);
            /* take ownership */
            free(r->body);
            r->body = NULL;
        }
    } else if (r->err.cls == SF_ERR_PENDING) {
        s->pending++;
    } else if (r->err.cls == SF_ERR_TRANSIENT) {
        s->transient++;
    }
}

static void test_batch(void **state)
{
    sf_scm_client *c = client();
    sf_scm_batch *b;
    sf_error err;
    bstat s;

    (void)state;
    memset(&s, 0, sizeof(s));
    add_route(&(route){ "GET", "/api/ssl/v1/7", 500, "err-internal.json", .times = 1 });
    add_route(&(route){ "GET", "/api/ssl/v1/collect/200/x509", 400, "pending-0.json", .times = -1 });
    add_route(&(route){ "GET", "/api/ssl/v1/collect/*", 200, "collect-x509.pem", .times = -1 });
    add_route(&(route){ "GET", "/api/ssl/v1/*", 200, "cert-details.json", .times = -1 });
    b = sf_scm_batch_new(c, 8, &err);
    assert_non_null(b);
    for (int i = 1; i <= 100; i++)
        assert_int_equal(sf_scm_batch_add_details(b, i, on_done, &s, &err), 0);
    for (int i = 101; i <= 120; i++)
        assert_int_equal(sf_scm_batch_add_collect(b, i, "x509", on_done, &s, &err), 0);
    assert_int_equal(sf_scm_batch_add_collect(b, 200, "x509", on_done, &s, &err), 0);
    assert_int_equal(sf_scm_batch_pending(b), 121);
    assert_int_equal(sf_scm_batch_run(b, sf_now_mono_ms() + 20000, &err), 0);
    assert_int_equal(s.calls, 121);
    assert_int_equal(s.ok, 120);
    assert_int_equal(s.pending, 1);
    for (int i = 1; i <= 120; i++)
        assert_int_equal(s.seen[i], 1);
    assert_int_equal(route_hits("/api/ssl/v1/7"), 1);
    assert_int_equal(sf_scm_batch_pending(b), 0);

    /* deadline: a hanging server; every request still completes once */
    memset(&s, 0, sizeof(s));
    add_route(&(route){ "GET", "/api/domain/v1/9", 200, "domain.json", .action = ACT_SLEEP,
                        .sleep_ms = 1500, .times = -1 });
    for (int i = 0; i < 3; i++)
        assert_int_equal(sf_scm_batch_add_get(b, "/domain/v1/9", on_done, &s, &err), 0);
    assert_int_equal(sf_scm_batch_run(b, sf_now_mono_ms() + 300, &err), -1);
    assert_int_equal(s.calls, 3);
    assert_int_equal(s.transient, 3);
    sf_scm_batch_free(b);
    sf_scm_client_free(c);
}

static void test_metrics(void **state)
{
    sf_scm_client *c;
    sf_error err;
    sf_scm_cert *cert = NULL;
    sf_buf out;

    (void)state;
    sf_metrics_reset();
    add_route(&(route){ "GET", "/api/ssl/v1/55", 500, "err-internal.json", .times = 1 });
    add_route(&(route){ "GET", "/api/ssl/v1/55", 200, "cert-details.json", .times = 1 });
    c = client();
    assert_int_equal(sf_scm_get_cert(c, 55, &cert, &err), 0);
    sf_scm_cert_free(cert);
    sf_buf_init(&out, 1 << 20);
    assert_int_equal(sf_metrics_render(&out), 0);
    assert_non_null(strstr(out.data, "scmflow_scm_requests_total{endpoint=\"details\",outcome=\"ok\"} 1"));
    assert_non_null(strstr(out.data, "scmflow_scm_requests_total{endpoint=\"details\",outcome=\"transient\"} 1"));
    assert_non_null(strstr(out.data, "scmflow_scm_retries_total{endpoint=\"details\"} 1"));
    assert_non_null(strstr(out.data, "scmflow_scm_request_seconds_count{endpoint=\"details\"} 2"));
    assert_null(strstr(out.data, PASSWORD));
    sf_buf_release(&out);
    sf_scm_client_free(c);
}

static void test_batch_rate_limit(void **state)
{
    sf_scm_account a = mkacct();
    sf_scm_client *c;
    sf_scm_batch *b;
    sf_error err;
    bstat s;
    int64_t t0, took;

    (void)state;
    memset(&s, 0, sizeof(s));
    add_route(&(route){ "GET", "/api/ssl/v1/*", 200, "cert-details.json", .times = -1 });
    a.rate_per_sec = 40;
    a.rate_burst = 1;
    a.customer_uri = "cst-batch-rl"; /* its own bucket */
    c = sf_scm_client_new(&a, &err);
    b = sf_scm_batch_new(c, 8, &err);
    for (int i = 1; i <= 21; i++)
        assert_int_equal(sf_scm_batch_add_details(b, i, on_done, &s, &err), 0);
    t0 = sf_now_mono_ms();
    assert_int_equal(sf_scm_batch_run(b, t0 + 20000, &err), 0);
    took = sf_now_mono_ms() - t0;
    print_message("batch: 21 calls at 40/s burst 1: %lld ms\n", (long long)took);
    assert_int_equal(s.ok, 21);
    assert_true(took >= 450 && took < 6000);
    sf_scm_batch_free(b);
    sf_scm_client_free(c);
}

/* Debug logging of failing calls never shows the password (nor do the
 * errors, checked everywhere by check_err). */
static void test_no_secret_in_logs(void **state)
{
    char *logbuf = NULL;
    size_t loglen = 0;
    FILE *mem = open_memstream(&logbuf, &loglen);
    sf_scm_client *c;
    sf_error err;
    sf_scm_cert *cert = NULL;
    sf_scm_enroll_resp er;
    sf_scm_enroll_req req = { .org_id = 1, .csr = "CSR", .cert_type = 1, .term = 1 };

    (void)state;
    assert_non_null(mem);
    sf_log_init("test_scm", SF_LOG_DEBUG, SF_LOG_TEXT);
    sf_log_set_stream(mem);
    add_route(&(route){ "GET", "/api/ssl/v1/55", 500, "err-internal.json", .times = 1 });
    add_route(&(route){ "GET", "/api/ssl/v1/55", 200, "cert-details.json", .times = 1 });
    add_route(&(route){ "POST", "/api/ssl/v1/enroll", 401, "err-unknown-user.json", .times = -1 });
    c = client();
    assert_int_equal(sf_scm_get_cert(c, 55, &cert, &err), 0);
    sf_scm_cert_free(cert);
    assert_int_equal(sf_scm_enroll(c, &req, &er, &err), -1);
    check_err(&err, SF_ERR_AUTH);
    sf_scm_client_free(c);
    sf_log_set_stream(stderr);
    fclose(mem);
    assert_true(loglen > 0); /* the debug lines were written */
    assert_null(strstr(logbuf, PASSWORD));
    assert_null(strstr(logbuf, "password:"));
    free(logbuf);
    sf_log_init("test_scm", SF_LOG_INFO, SF_LOG_TEXT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_fixtures),
        cmocka_unit_test(test_parse_wrong_types),
        cmocka_unit_test(test_error_mapping),
        cmocka_unit_test(test_date),
        cmocka_unit_test_setup_teardown(test_client_new_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_cert_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors_http, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_rate_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_secret_in_logs, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
