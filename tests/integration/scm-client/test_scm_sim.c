/*
 * test_scm_sim.c - the SCM client against the real simulator (scm-sim as a
 * separate process over TCP, seed-test.json): every call, the error classes
 * the simulator produces, and fault injection through /__sim/faults for
 * retries, Retry-After, resets and "outcome unknown" on enroll.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "sf_scm.h"
#include "simctl.h"
#include "sf_util.h"

static simproc S;

static char *make_csr(const char *cn)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509_REQ *r = X509_REQ_new();
    X509_NAME *n = X509_NAME_new();
    BIO *b = BIO_new(BIO_s_mem());
    char *out = NULL, *p;
    long len;

    assert_non_null(k);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
    X509_REQ_set_subject_name(r, n);
    X509_REQ_set_pubkey(r, k);
    assert_true(X509_REQ_sign(r, k, EVP_sha256()) > 0);
    PEM_write_bio_X509_REQ(b, r);
    len = BIO_get_mem_data(b, &p);
    out = calloc(1, (size_t)len + 1);
    memcpy(out, p, (size_t)len);
    BIO_free(b);
    X509_NAME_free(n);
    X509_REQ_free(r);
    EVP_PKEY_free(k);
    return out;
}

static sf_scm_account mkacct(void)
{
    sf_scm_account a;

    memset(&a, 0, sizeof(a));
    a.base_url = S.base;
    a.login = "api_admin";
    a.password = "Test-Passw0rd!";
    a.customer_uri = "scmflow-test";
    a.connect_timeout_ms = 2000;
    a.total_timeout_ms = 10000;
    a.retry_max_attempts = 4;
    a.retry_max_total_ms = 15000;
    a.retry_base_ms = 20;
    a.retry_cap_ms = 200;
    return a;
}

static sf_scm_client *client(void)
{
    sf_scm_account a = mkacct();
    sf_error err;
    sf_scm_client *c = sf_scm_client_new(&a, &err);

    if (c == NULL)
        fail_msg("client: %s", err.msg);
    return c;
}

#define OK(call)                                                                              \
    do {                                                                                      \
        sf_error_clear(&err);                                                                 \
        if ((call) != 0)                                                                      \
            fail_msg("%s failed: [%s] %s", #call, sf_err_class_name(err.cls), err.msg);       \
    } while (0)

static void expect_err(int rc, const sf_error *e, sf_err_class cls, int code)
{
    if (rc != -1 || e->cls != cls || (code != 999999 && e->code != code))
        fail_msg("want %s/%d, got rc %d %s/%d: %s", sf_err_class_name(cls), code, rc,
                 sf_err_class_name(e->cls), e->code, e->msg);
    assert_null(strstr(e->msg, "Test-Passw0rd!"));
}

/* Requests the simulator recorded for "METHOD /path". */
static int recorded(const char *key)
{
    char *body = NULL;
    cJSON *j, *bp, *v;
    int n = 0;

    assert_int_equal(sim_admin(&S, "GET", "/__sim/requests?summary=1", NULL, &body), 200);
    j = cJSON_Parse(body);
    free(body);
    bp = cJSON_GetObjectItem(j, "by_path");
    v = cJSON_GetObjectItem(bp, key);
    if (cJSON_IsNumber(v))
        n = v->valueint;
    cJSON_Delete(j);
    return n;
}

static int enrollments_with_comment(const char *comment)
{
    char path[256], *body = NULL;
    cJSON *j;
    int n;

    (void)sf_snprintf(path, sizeof(path), "/__sim/enrollments?comment=%s", comment);
    assert_int_equal(sim_admin(&S, "GET", path, NULL, &body), 200);
    j = cJSON_Parse(body);
    free(body);
    n = cJSON_GetObjectItem(j, "count")->valueint;
    cJSON_Delete(j);
    return n;
}

static int reset(void **state)
{
    (void)state;
    return sim_admin(&S, "POST", "/__sim/reset", "{}", NULL) == 200 ? 0 : -1;
}

static int64_t enroll_one(sf_scm_client *c, const char *cn, const char *comment, sf_error *err,
                          int *rc_out)
{
    char *csr = make_csr(cn);
    const char *sans[] = { cn };
    sf_scm_enroll_req req = { .org_id = 1001, .csr = csr, .cert_type = 501, .term = 365,
                              .sans = sans, .n_sans = 1, .comments = comment };
    sf_scm_enroll_resp r;
    int rc = sf_scm_enroll(c, &req, &r, err);

    free(csr);
    *rc_out = rc;
    return rc == 0 ? r.ssl_id : 0;
}

static void test_catalog(void **state)
{
    sf_scm_client *c = client();
    sf_error err;
    sf_scm_org_list *orgs = NULL;
    sf_scm_domain_page *dp = NULL, *dp2 = NULL;
    sf_scm_domain *dom = NULL;
    sf_scm_profile_list *pl = NULL;
    sf_scm_custom_field_list *cf = NULL;
    sf_scm_roles *roles = NULL;
    bool found = false;

    (void)state;
    OK(sf_scm_list_orgs(c, &orgs, &err));
    for (size_t i = 0; i < orgs->n; i++)
        if (orgs->orgs[i].id == 1001) {
            found = true;
            assert_true(orgs->orgs[i].n_departments >= 1);
        }
    assert_true(found);
    sf_scm_org_list_free(orgs);

    OK(sf_scm_list_domains(c, 0, 200, &dp, &err));
    assert_true(dp->n >= 8);
    assert_int_equal(dp->total, (int64_t)dp->n);
    OK(sf_scm_list_domains(c, 2, 3, &dp2, &err));
    assert_int_equal(dp2->n, 3);
    assert_int_equal(dp2->total, dp->total);
    assert_int_equal(dp2->items[0].id, dp->items[2].id);
    OK(sf_scm_get_domain(c, 2001, &dom, &err));
    assert_string_equal(dom->name, "scmflow.test");
    assert_string_equal(dom->validation_status, "VALIDATED");
    assert_true(dom->n_delegations >= 1);
    sf_scm_domain_free(dom);
    sf_scm_domain_page_free(dp);
    sf_scm_domain_page_free(dp2);

    OK(sf_scm_list_profiles(c, 1001, &pl, &err));
    found = false;
    for (size_t i = 0; i < pl->n; i++) {
        assert_int_not_equal(pl->profiles[i].id, 505); /* other org only */
        if (pl->profiles[i].id == 501) {
            found = true;
            assert_int_equal(pl->profiles[i].n_terms, 2);
            assert_int_equal(pl->profiles[i].n_key_types, 2);
        }
    }
    assert_true(found);
    sf_scm_profile_list_free(pl);

    OK(sf_scm_list_custom_fields(c, &cf, &err));
    found = false;
    for (size_t i = 0; i < cf->n; i++)
        if (strcmp(cf->fields[i].name, "Cost Center") == 0)
            found = true;
    assert_true(found);
    sf_scm_custom_field_list_free(cf);

    OK(sf_scm_check_roles(c, &roles, &err));
    assert_true(roles->is_mrao);
    sf_scm_roles_free(roles);
    sf_scm_client_free(c);

    {
        sf_scm_account a = mkacct();
        a.login = "drao_user";
        a.password = "Drao-Passw0rd!";
        c = sf_scm_client_new(&a, &err);
        OK(sf_scm_check_roles(c, &roles, &err));
        assert_false(roles->is_mrao);
        sf_scm_roles_free(roles);
        sf_scm_client_free(c);

        a = mkacct();
        a.password = "wrong-password";
        c = sf_scm_client_new(&a, &err);
        expect_err(sf_scm_list_orgs(c, &orgs, &err), &err, SF_ERR_AUTH, -16);
        assert_int_equal(err.http_status, 401);
        sf_scm_client_free(c);
    }
}

static void test_lifecycle(void **state)
{
    sf_scm_client *c = client();
    sf_error err;
    sf_scm_cert *cert = NULL;
    sf_scm_cert_page *cp = NULL;
    sf_scm_cert_filter f = SF_SCM_CERT_FILTER_INIT;
    char *pem = NULL;
    size_t len = 0;
    int rc;
    int64_t id, nid = 0, count = -1, t;

    (void)state;
    id = enroll_one(c, "life.scmflow.test", "lifecycle-1", &err, &rc);
    if (rc != 0)
        fail_msg("enroll: %s", err.msg);
    /* default --issue-after-polls 1: first check Applied/pending */
    expect_err(sf_scm_collect(c, id, "x509", &pem, &len, &err), &err, SF_ERR_PENDING, 0);
    OK(sf_scm_get_cert(c, id, &cert, &err));
    assert_string_equal(cert->status, "Issued");
    assert_string_equal(cert->common_name, "life.scmflow.test");
    assert_non_null(cert->serial_number);
    assert_non_null(cert->requested);
    OK(sf_scm_parse_date(cert->requested, &t, &err));
    sf_scm_cert_free(cert);
    OK(sf_scm_collect(c, id, "x509", &pem, &len, &err));
    assert_non_null(strstr(pem, "-----BEGIN CERTIFICATE-----"));
    free(pem);
    OK(sf_scm_collect(c, id, "bin", &pem, &len, &err));
    assert_true(len > 100 && (unsigned char)pem[0] == 0x30); /* DER PKCS#7 */
    free(pem);

    f.common_name = "life.scmflow.test";
    f.position = 0;
    f.size = 10;
    OK(sf_scm_list_certs(c, &f, &cp, &err));
    assert_int_equal(cp->n, 1);
    assert_int_equal(cp->items[0].ssl_id, id);
    assert_int_equal(cp->total, 1);
    sf_scm_cert_page_free(cp);
    OK(sf_scm_count_certs(c, &f, &count, &err));
    assert_int_equal(count, 1);

    {
        char *csr = make_csr("life.scmflow.test");
        const char *sans[] = { "life.scmflow.test" };
        sf_scm_replace_req rr = { .csr = csr, .reason = "key rotation",
                                  .common_name = "life.scmflow.test", .sans = sans, .n_sans = 1 };
        OK(sf_scm_replace(c, id, &rr, &err));
        OK(sf_scm_renew_by_id(c, 100, csr, &nid, &err));
        assert_true(nid > 0 && nid != 100);
        free(csr);
    }
    OK(sf_scm_get_cert(c, id, &cert, &err)); /* re-issued by the poll rule */
    sf_scm_cert_free(cert);
    OK(sf_scm_get_cert(c, id, &cert, &err));
    assert_string_equal(cert->status, "Issued");
    OK(sf_scm_revoke_serial(c, cert->serial_number, 4, "superseded", &err));
    sf_scm_cert_free(cert);
    expect_err(sf_scm_revoke(c, id, 4, "again", &err), &err, SF_ERR_REJECTED, -159);
    OK(sf_scm_revoke(c, 104, 1, "key compromise", &err));

    /* renew by renewId */
    {
        char *csr = make_csr("renew.scmflow.test");
        const char *sans[] = { "renew.scmflow.test" };
        sf_scm_enroll_req req = { .org_id = 1001, .csr = csr, .cert_type = 501, .term = 365,
                                  .sans = sans, .n_sans = 1 };
        sf_scm_enroll_resp r;
        OK(sf_scm_enroll(c, &req, &r, &err));
        assert_int_equal(strlen(r.renew_id), 20);
        OK(sf_scm_get_cert(c, r.ssl_id, &cert, &err));
        sf_scm_cert_free(cert);
        OK(sf_scm_get_cert(c, r.ssl_id, &cert, &err));
        sf_scm_cert_free(cert);
        OK(sf_scm_renew(c, r.renew_id, NULL, &err));
        free(csr);
    }
    sf_scm_client_free(c);
}

static void test_rejections(void **state)
{
    sf_scm_client *c = client();
    sf_error err;
    sf_scm_cert *cert = NULL;
    char *pem = NULL, *csr = make_csr("www.scmflow.test");
    size_t len;
    int64_t nid;
    sf_scm_enroll_req req = { .org_id = 1001, .csr = csr, .cert_type = 501, .term = 999 };
    sf_scm_enroll_resp r;

    (void)state;
    expect_err(sf_scm_enroll(c, &req, &r, &err), &err, SF_ERR_REJECTED, -36);
    assert_int_equal(err.http_status, 400);
    assert_int_equal(recorded("POST /api/ssl/v1/enroll"), 1);
    req.term = 365;
    {
        const char *sans[] = { "www.unvalidated.test" };
        req.sans = sans;
        req.n_sans = 1;
        expect_err(sf_scm_enroll(c, &req, &r, &err), &err, SF_ERR_REJECTED, -737);
    }
    expect_err(sf_scm_get_cert(c, 987654, &cert, &err), &err, SF_ERR_NOT_FOUND, 999999);
    expect_err(sf_scm_collect(c, 987654, "pem", &pem, &len, &err), &err, SF_ERR_NOT_FOUND, 999999);
    expect_err(sf_scm_collect(c, 102, "pem", &pem, &len, &err), &err, SF_ERR_REJECTED, -110);
    expect_err(sf_scm_revoke(c, 103, 0, "not issued", &err), &err, SF_ERR_REJECTED, -102);
    expect_err(sf_scm_renew_by_id(c, 104, NULL, &nid, &err), &err, SF_ERR_REJECTED, -180);
    free(csr);

    /* every pending style */
    {
        static const char *styles[] = { "code0", "1400", "183", "109", "empty200" };
        int rc;
        int64_t id = enroll_one(c, "pending.scmflow.test", "pending", &err, &rc);
        assert_int_equal(rc, 0);
        assert_int_equal(sim_admin(&S, "POST", "/__sim/config", "{\"issue_after_polls\":100}", NULL), 200);
        for (size_t i = 0; i < SF_ARRAY_LEN(styles); i++) {
            char cfg[96];
            (void)sf_snprintf(cfg, sizeof(cfg), "{\"pending_style\":\"%s\"}", styles[i]);
            assert_int_equal(sim_admin(&S, "POST", "/__sim/config", cfg, NULL), 200);
            expect_err(sf_scm_collect(c, id, "pem", &pem, &len, &err), &err, SF_ERR_PENDING, 999999);
        }
    }
    sf_scm_client_free(c);
}

static void test_approval(void **state)
{
    sf_scm_client *c = client();
    sf_error err;
    sf_scm_cert *cert = NULL;
    int rc;
    int64_t a, d;

    (void)state;
    assert_int_equal(sim_admin(&S, "POST", "/__sim/config", "{\"manual_approval\":true}", NULL), 200);
    a = enroll_one(c, "appr.scmflow.test", "appr", &err, &rc);
    assert_int_equal(rc, 0);
    d = enroll_one(c, "decl.scmflow.test", "decl", &err, &rc);
    assert_int_equal(rc, 0);
    OK(sf_scm_get_cert(c, a, &cert, &err));
    assert_string_equal(cert->status, "Requested");
    sf_scm_cert_free(cert);
    OK(sf_scm_approve(c, a, "approved by test", &err));
    OK(sf_scm_decline(c, d, "declined by test", &err));
    OK(sf_scm_get_cert(c, d, &cert, &err));
    assert_string_equal(cert->status, "Declined");
    sf_scm_cert_free(cert);
    expect_err(sf_scm_approve(c, d, "too late", &err), &err, SF_ERR_REJECTED, -1112);
    sf_scm_client_free(c);
}

static void test_faults(void **state)
{
    sf_scm_client *c = client();
    sf_error err;
    sf_scm_cert *cert = NULL;
    int64_t t0, took;
    int rc;

    (void)state;
    /* 500 twice, then fine: retried */
    assert_int_equal(sim_admin(&S, "POST", "/__sim/faults",
        "{\"rules\":[{\"path_prefix\":\"/api/ssl/v1/100\",\"count\":2,\"kind\":\"500\"}]}", NULL), 200);
    OK(sf_scm_get_cert(c, 100, &cert, &err));
    sf_scm_cert_free(cert);
    assert_int_equal(recorded("GET /api/ssl/v1/100"), 3);

    /* 429 + Retry-After 1 s: honoured */
    assert_int_equal(sim_admin(&S, "POST", "/__sim/faults",
        "{\"rules\":[{\"path_prefix\":\"/api/ssl/v1/101\",\"count\":1,\"kind\":\"429\",\"retry_after_s\":1}]}", NULL), 200);
    t0 = sf_now_mono_ms();
    OK(sf_scm_get_cert(c, 101, &cert, &err));
    took = sf_now_mono_ms() - t0;
    print_message("429 Retry-After 1 s from scm-sim: %lld ms\n", (long long)took);
    assert_true(took >= 950);
    sf_scm_cert_free(cert);

    /* connection reset on GET: retried */
    assert_int_equal(sim_admin(&S, "POST", "/__sim/faults",
        "{\"rules\":[{\"path_prefix\":\"/api/ssl/v1/102\",\"count\":1,\"kind\":\"reset\"}]}", NULL), 200);
    OK(sf_scm_get_cert(c, 102, &cert, &err));
    sf_scm_cert_free(cert);

    /* 503 on enroll: explicit refusal, retried, exactly one order */
    assert_int_equal(sim_admin(&S, "POST", "/__sim/faults",
        "{\"rules\":[{\"path_prefix\":\"/api/ssl/v1/enroll\",\"count\":2,\"kind\":\"503\"}]}", NULL), 200);
    (void)enroll_one(c, "f503.scmflow.test", "fault503", &err, &rc);
    if (rc != 0)
        fail_msg("enroll after 503: %s", err.msg);
    assert_int_equal(enrollments_with_comment("fault503"), 1);

    /* 500 on enroll: not retried (the server saw it) => UNKNOWN */
    assert_int_equal(sim_admin(&S, "POST", "/__sim/faults",
        "{\"rules\":[{\"path_prefix\":\"/api/ssl/v1/enroll\",\"count\":1,\"kind\":\"500\"}]}", NULL), 200);
    (void)enroll_one(c, "f500.scmflow.test", "fault500", &err, &rc);
    expect_err(rc, &err, SF_ERR_UNKNOWN, 999999);
    assert_int_equal(enrollments_with_comment("fault500"), 0);

    /* the order is created, then the answer never comes: UNKNOWN, one order,
     * found again by listing its common name (the caller's reconciliation) */
    sf_scm_client_free(c);
    {
        sf_scm_account a = mkacct();
        sf_scm_cert_page *cp = NULL;
        sf_scm_cert_filter f = SF_SCM_CERT_FILTER_INIT;

        a.total_timeout_ms = 700;
        c = sf_scm_client_new(&a, &err);
        assert_int_equal(sim_admin(&S, "POST", "/__sim/faults",
            "{\"rules\":[{\"path_prefix\":\"/api/ssl/v1/enroll\",\"count\":1,\"kind\":\"timeout_after_commit\",\"hang_ms\":2000}]}", NULL), 200);
        (void)enroll_one(c, "lost.scmflow.test", "faultlost", &err, &rc);
        expect_err(rc, &err, SF_ERR_UNKNOWN, 999999);
        assert_int_equal(enrollments_with_comment("faultlost"), 1);
        f.common_name = "lost.scmflow.test";
        OK(sf_scm_list_certs(c, &f, &cp, &err));
        assert_int_equal(cp->n, 1);
        sf_scm_cert_page_free(cp);
    }
    assert_int_equal(sim_admin(&S, "DELETE", "/__sim/faults", NULL, NULL), 200);
    sf_scm_client_free(c);
}

typedef struct bst {
    int calls, ok;
} bst;

static void on_done(sf_scm_result *r, void *ud)
{
    bst *s = ud;

    s->calls++;
    if (r->rc == 0) {
        s->ok++;
        if (r->kind == SF_SCM_REQ_GET) {
            assert_true(cJSON_IsArray(r->json));
            assert_true(r->total >= 8);
            assert_int_equal(cJSON_GetArraySize(r->json), r->total);
        }
    } else
        print_message("batch item %lld: %s\n", (long long)r->ssl_id, r->err.msg);
}

static void test_batch_sim(void **state)
{
    sf_scm_client *c = client();
    sf_error err;
    sf_scm_batch *b;
    bst s = { 0, 0 };

    (void)state;
    assert_int_equal(sim_admin(&S, "POST", "/__sim/faults",
        "{\"latency_ms\":5,\"rules\":[{\"path_prefix\":\"/api/ssl/v1/collect/100/\",\"count\":3,\"kind\":\"503\"}]}", NULL), 200);
    b = sf_scm_batch_new(c, 16, &err);
    assert_non_null(b);
    for (int r = 0; r < 40; r++)
        for (int id = 100; id <= 104; id++) {
            if (id == 102 || id == 103)
                OK(sf_scm_batch_add_details(b, id, on_done, &s, &err));
            else
                OK(sf_scm_batch_add_collect(b, id, "pem", on_done, &s, &err));
        }
    for (int r = 0; r < 5; r++)
        OK(sf_scm_batch_add_get(b, "/domain/v1?position=0&size=200", on_done, &s, &err));
    OK(sf_scm_batch_run(b, sf_now_mono_ms() + 60000, &err));
    assert_int_equal(s.calls, 205);
    /* 101 (Expired) collects fine; nothing failed after the retries */
    assert_int_equal(s.ok, 205);
    if (recorded("GET /api/ssl/v1/collect/100/pem") != 40 + 3) {
        char *dbg = NULL;
        sim_admin(&S, "GET", "/__sim/requests?summary=1", NULL, &dbg);
        print_message("record: %s\n", dbg);
        free(dbg);
        sim_admin(&S, "GET", "/__sim/faults", NULL, &dbg);
        print_message("faults: %s\n", dbg);
        free(dbg);
        fail_msg("expected 43 collects of 100 (3 refused with 503, retried)");
    }
    sf_scm_batch_free(b);
    sf_scm_client_free(c);
    assert_int_equal(sim_admin(&S, "DELETE", "/__sim/faults", NULL, NULL), 200);
}

/* ---- a batch fed while it runs (callbacks and the refill hook) ---- */

typedef struct feed_req {
    int calls;              /* callback calls: must end at exactly 1 */
    int rc;
    sf_scm_req_kind kind;
    sf_err_class cls;
    int64_t done_ms;        /* completion, ms after the feed started */
    int fast_done_before;   /* (slow request) fast ones completed before it */
} feed_req;

typedef struct feed {
    sf_scm_batch *b;
    int64_t t0;
    feed_req req[160];
    int n_added;            /* requests added so far (index into req) */
    int n_fast;             /* fast requests the hook hands out in all */
    int fast_done;
    int outstanding;        /* added, not completed */
    int max_outstanding;
    int hook_calls;
    int hook_bad_room;      /* hook called with room != in_flight - outstanding */
    int in_flight;          /* the batch's max_in_flight */
} feed;

static feed_req *feed_slot(feed *f)
{
    assert_true(f->n_added < (int)(sizeof(f->req) / sizeof(f->req[0])));
    f->outstanding++;
    if (f->outstanding > f->max_outstanding)
        f->max_outstanding = f->outstanding;
    return &f->req[f->n_added++];
}

static void feed_done(feed *f, feed_req *q, sf_scm_result *r)
{
    q->calls++;
    q->rc = r->rc;
    q->kind = r->kind;
    q->cls = r->rc < 0 ? r->err.cls : SF_ERR_NONE;
    q->done_ms = sf_now_mono_ms() - f->t0;
    f->outstanding--;
}

static feed *g_feed;

static void on_feed_collect(sf_scm_result *r, void *ud)
{
    feed_done(g_feed, ud, r);
}

/* Every details completion queues a collect from inside the callback. */
static void on_feed_details(sf_scm_result *r, void *ud)
{
    feed *f = g_feed;
    sf_error err;

    feed_done(f, ud, r);
    if (f->n_added == 12) /* the first completion: run() is not re-entrant */
        assert_int_equal(sf_scm_batch_run(f->b, 0, &err), -1);
    OK(sf_scm_batch_add_collect(f->b, 100, "pem", on_feed_collect, feed_slot(f), &err));
}

static void test_batch_add_from_callback(void **state)
{
    sf_scm_client *c = client();
    sf_error err;
    feed f;

    (void)state;
    memset(&f, 0, sizeof(f));
    g_feed = &f;
    assert_int_equal(sim_admin(&S, "POST", "/__sim/faults", "{\"latency_ms\":10}", NULL), 200);
    assert_int_equal(sim_admin(&S, "DELETE", "/__sim/requests", NULL, NULL), 200);
    f.b = sf_scm_batch_new(c, 4, &err);
    assert_non_null(f.b);
    f.t0 = sf_now_mono_ms();
    for (int i = 0; i < 12; i++)
        OK(sf_scm_batch_add_details(f.b, 100 + i % 5, on_feed_details, feed_slot(&f), &err));
    OK(sf_scm_batch_run(f.b, sf_now_mono_ms() + 60000, &err));
    assert_int_equal(f.n_added, 24);
    assert_int_equal(sf_scm_batch_pending(f.b), 0);
    for (int i = 0; i < 24; i++) {
        assert_int_equal(f.req[i].calls, 1);
        assert_int_equal(f.req[i].rc, 0);
        assert_int_equal(f.req[i].kind, i < 12 ? SF_SCM_REQ_DETAILS : SF_SCM_REQ_COLLECT);
    }
    assert_int_equal(recorded("GET /api/ssl/v1/collect/100/pem"), 12);
    /* reusable afterwards */
    assert_int_equal(sf_scm_batch_run(f.b, 0, &err), 0);
    sf_scm_batch_free(f.b);
    sf_scm_client_free(c);
    assert_int_equal(sim_admin(&S, "DELETE", "/__sim/faults", NULL, NULL), 200);
}

static void on_feed_fast(sf_scm_result *r, void *ud)
{
    g_feed->fast_done++;
    feed_done(g_feed, ud, r);
}

static void on_feed_slow(sf_scm_result *r, void *ud)
{
    feed_req *q = ud;

    q->fast_done_before = g_feed->fast_done;
    feed_done(g_feed, q, r);
}

/* The hook hands out one request per call: first a slow one (held 2 s by
 * the simulator), then n_fast quick ones, then nothing. */
static int feed_hook(sf_scm_batch *b, size_t room, void *ud)
{
    feed *f = ud;
    sf_error err;

    f->hook_calls++;
    if ((int)room != f->in_flight - f->outstanding || room == 0)
        f->hook_bad_room++;
    if (f->n_added == 0) {
        OK(sf_scm_batch_add_details(b, 103, on_feed_slow, feed_slot(f), &err));
        return 1;
    }
    if (f->n_added > f->n_fast)
        return 0;
    OK(sf_scm_batch_add_details(b, 100, on_feed_fast, feed_slot(f), &err));
    return 1;
}

static void test_batch_refill(void **state)
{
    sf_scm_client *c = client();
    sf_error err;
    feed f;
    int64_t t;

    (void)state;
    memset(&f, 0, sizeof(f));
    g_feed = &f;
    assert_int_equal(sim_admin(&S, "POST", "/__sim/faults",
        "{\"latency_ms\":20,\"rules\":[{\"path_prefix\":\"/api/ssl/v1/103\",\"count\":1,\"kind\":\"delay\",\"hang_ms\":2000}]}",
        NULL), 200);
    f.in_flight = 4;
    f.n_fast = 120;
    f.b = sf_scm_batch_new(c, f.in_flight, &err);
    assert_non_null(f.b);
    sf_scm_batch_set_refill(f.b, feed_hook, &f);
    f.t0 = t = sf_now_mono_ms();
    /* nothing queued: the hook feeds the batch from the start */
    OK(sf_scm_batch_run(f.b, t + 60000, &err));
    t = sf_now_mono_ms() - t;
    assert_int_equal(f.n_added, 1 + f.n_fast);
    for (int i = 0; i < f.n_added; i++) {
        assert_int_equal(f.req[i].calls, 1);
        assert_int_equal(f.req[i].rc, 0);
    }
    assert_int_equal(f.max_outstanding, f.in_flight);
    assert_int_equal(f.hook_bad_room, 0);
    /* The slow request held one slot for 2 s; the hook refilled the three
     * others as they completed, so most quick requests were done before it
     * (refilling only when the batch drains would give 3 at most). */
    print_message("refill: %d of %d quick requests done before the slow one (%lld ms), "
                  "run %lld ms, %d hook calls\n", f.req[0].fast_done_before, f.n_fast,
                  (long long)f.req[0].done_ms, (long long)t, f.hook_calls);
    assert_true(f.req[0].done_ms >= 1900);
    assert_true(f.req[0].fast_done_before >= 40);
    assert_true(t < 20000);
    sf_scm_batch_free(f.b);
    sf_scm_client_free(c);
    assert_int_equal(sim_admin(&S, "DELETE", "/__sim/faults", NULL, NULL), 200);
}

/* Per-request deadlines: an expired request (in flight or still queued)
 * fails alone; the others, and what its callback adds, complete normally. */
static void on_feed_expired(sf_scm_result *r, void *ud)
{
    feed *f = g_feed;
    sf_error err;

    feed_done(f, ud, r);
    OK(sf_scm_batch_add_collect(f->b, 100, "pem", on_feed_collect, feed_slot(f), &err));
}

static void test_batch_request_deadline(void **state)
{
    sf_scm_client *c = client();
    sf_error err;
    feed f;
    sf_scm_batch_req q = SF_SCM_BATCH_REQ_INIT;
    int64_t t;

    (void)state;
    memset(&f, 0, sizeof(f));
    g_feed = &f;
    assert_int_equal(sim_admin(&S, "POST", "/__sim/faults",
        "{\"rules\":[{\"path_prefix\":\"/api/ssl/v1/104\",\"count\":1,\"kind\":\"delay\",\"hang_ms\":1500},"
        "{\"path_prefix\":\"/api/ssl/v1/103\",\"count\":1,\"kind\":\"delay\",\"hang_ms\":1500}]}",
        NULL), 200);
    f.b = sf_scm_batch_new(c, 2, &err);
    assert_non_null(f.b);
    f.t0 = t = sf_now_mono_ms();
    /* [0] in flight, expires at 300 ms; its callback adds [4] (no deadline) */
    q.kind = SF_SCM_REQ_DETAILS;
    q.ssl_id = 104;
    q.deadline_ms = t + 300;
    q.cb = on_feed_expired;
    q.ud = feed_slot(&f);
    OK(sf_scm_batch_add(f.b, &q, &err));
    /* [1] in flight, no deadline: completes after 1.5 s */
    OK(sf_scm_batch_add_details(f.b, 103, on_feed_collect, feed_slot(&f), &err));
    /* [2] queued behind the two, expires at 200 ms before it is sent */
    q.ssl_id = 102;
    q.deadline_ms = t + 200;
    q.cb = on_feed_collect;
    q.ud = feed_slot(&f);
    OK(sf_scm_batch_add(f.b, &q, &err));
    /* [3] queued, a deadline far away: sent when [0] gives its slot up */
    q.ssl_id = 100;
    q.deadline_ms = t + 30000;
    q.ud = feed_slot(&f);
    OK(sf_scm_batch_add(f.b, &q, &err));
    OK(sf_scm_batch_run(f.b, 0, &err));
    assert_int_equal(f.n_added, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(f.req[i].calls, 1);
    assert_int_equal(f.req[0].rc, -1);
    assert_int_equal(f.req[0].cls, SF_ERR_TRANSIENT);
    assert_true(f.req[0].done_ms >= 300 && f.req[0].done_ms < 1400);
    assert_int_equal(f.req[2].rc, -1);
    assert_int_equal(f.req[2].cls, SF_ERR_TRANSIENT);
    assert_true(f.req[2].done_ms >= 200 && f.req[2].done_ms < 1400);
    assert_int_equal(f.req[1].rc, 0);
    assert_true(f.req[1].done_ms >= 1500);
    assert_int_equal(f.req[3].rc, 0);
    assert_true(f.req[3].done_ms < 1400);
    assert_int_equal(f.req[4].rc, 0);
    assert_int_equal(f.req[4].kind, SF_SCM_REQ_COLLECT);
    assert_int_equal(recorded("GET /api/ssl/v1/102"), 0);

    sf_scm_batch_free(f.b);

    /* The run's own deadline: what a callback adds meanwhile fails too. */
    memset(&f, 0, sizeof(f));
    f.b = sf_scm_batch_new(c, 2, &err);
    assert_non_null(f.b);
    assert_int_equal(sim_admin(&S, "POST", "/__sim/faults",
        "{\"rules\":[{\"path_prefix\":\"/api/ssl/v1/101\",\"count\":2,\"kind\":\"delay\",\"hang_ms\":1500}]}",
        NULL), 200);
    f.t0 = sf_now_mono_ms();
    for (int i = 0; i < 2; i++)
        OK(sf_scm_batch_add_details(f.b, 101, on_feed_expired, feed_slot(&f), &err));
    assert_int_equal(sf_scm_batch_run(f.b, sf_now_mono_ms() + 300, &err), -1);
    assert_int_equal(err.cls, SF_ERR_TRANSIENT);
    assert_int_equal(f.n_added, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(f.req[i].calls, 1);
        assert_int_equal(f.req[i].rc, -1);
    }
    assert_int_equal(sf_scm_batch_pending(f.b), 0);
    sf_scm_batch_free(f.b);
    sf_scm_client_free(c);
    assert_int_equal(sim_admin(&S, "DELETE", "/__sim/faults", NULL, NULL), 200);
}

/* Read-only checks that are safe on the shared `sim` fixture. */
static void test_shared_readonly(void **state)
{
    sf_scm_client *c = client();
    sf_error err;
    sf_scm_batch *b;
    bst s = { 0, 0 };
    sf_scm_cert *cert = NULL;

    (void)state;
    OK(sf_scm_get_cert(c, 100, &cert, &err));
    assert_string_equal(cert->status, "Issued");
    sf_scm_cert_free(cert);
    {
        sf_scm_roles *roles = NULL;
        sf_scm_org_list *orgs = NULL;
        OK(sf_scm_check_roles(c, &roles, &err));
        assert_true(roles->is_mrao);
        sf_scm_roles_free(roles);
        OK(sf_scm_list_orgs(c, &orgs, &err));
        assert_true(orgs->n >= 1);
        sf_scm_org_list_free(orgs);
    }
    b = sf_scm_batch_new(c, 8, &err);
    for (int i = 0; i < 20; i++)
        OK(sf_scm_batch_add_collect(b, 100, "x509", on_done, &s, &err));
    OK(sf_scm_batch_run(b, sf_now_mono_ms() + 30000, &err));
    assert_int_equal(s.ok, 20);
    sf_scm_batch_free(b);
    sf_scm_client_free(c);
}

/* The batch over HTTPS, as against the real SCM: curl's socket interface
 * with TLS (a record may hold more than one read asks for), a private
 * scm-sim with a self-signed CA. With the wrong trust anchors every request
 * fails at once, none hangs. */
static void test_batch_tls(void **state)
{
    char dir[64] = "/tmp/scmclient-tls-XXXXXX", ca[128], cmd[128];
    const char *extra[] = {"--tls-self-signed", dir, NULL};
    simproc t;
    sf_scm_account a = mkacct();
    sf_scm_client *c;
    sf_scm_batch *b;
    sf_error err;
    bst s = {0, 0}, bad = {0, 0};
    int64_t t0;

    (void)state;
    assert_non_null(mkdtemp(dir));
    (void)sf_snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    assert_int_equal(sim_start(&t, extra), 0);
    (void)sf_snprintf(t.base, sizeof(t.base), "https://127.0.0.1:%d/api", t.port);
    a.base_url = t.base;
    a.ca_bundle = ca;
    assert_non_null(c = sf_scm_client_new(&a, &err));
    assert_non_null(b = sf_scm_batch_new(c, 16, &err));
    for (int r = 0; r < 20; r++)
        for (int id = 100; id <= 104; id++) {
            if (id == 102 || id == 103)
                OK(sf_scm_batch_add_details(b, id, on_done, &s, &err));
            else
                OK(sf_scm_batch_add_collect(b, id, "pem", on_done, &s, &err));
        }
    OK(sf_scm_batch_run(b, sf_now_mono_ms() + 60000, &err));
    assert_int_equal(s.calls, 100);
    assert_int_equal(s.ok, 100);
    sf_scm_batch_free(b);
    sf_scm_client_free(c);

    a.ca_bundle = NULL; /* the system's CAs do not know scm-sim's */
    assert_non_null(c = sf_scm_client_new(&a, &err));
    assert_non_null(b = sf_scm_batch_new(c, 4, &err));
    for (int i = 0; i < 8; i++)
        OK(sf_scm_batch_add_details(b, 102, on_done, &bad, &err));
    t0 = sf_now_mono_ms();
    (void)sf_scm_batch_run(b, sf_now_mono_ms() + 60000, &err);
    assert_int_equal(bad.calls, 8);
    assert_int_equal(bad.ok, 0);
    assert_true(sf_now_mono_ms() - t0 < 10000);
    sf_scm_batch_free(b);
    sf_scm_client_free(c);
    sim_stop(&t);
    (void)sf_snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static int group_setup(void **state)
{
    (void)state;
    return sim_start(&S, NULL);
}

static int group_teardown(void **state)
{
    (void)state;
    sim_stop(&S);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--shared") == 0) {
        /* Against the ctest fixture `sim` (SCM_SIM_URL from env.sh): no
         * faults, no resets, nothing that would disturb other tests. */
        const char *url = getenv("SCM_SIM_URL");
        const struct CMUnitTest shared[] = {
            cmocka_unit_test(test_shared_readonly),
        };

        if (url == NULL || sf_snprintf(S.base, sizeof(S.base), "%s", url) < 0) {
            fprintf(stderr, "SCM_SIM_URL not set (fixture sim missing?)\n");
            return 1;
        }
        return cmocka_run_group_tests(shared, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_catalog, reset),
        cmocka_unit_test_setup(test_lifecycle, reset),
        cmocka_unit_test_setup(test_rejections, reset),
        cmocka_unit_test_setup(test_approval, reset),
        cmocka_unit_test_setup(test_faults, reset),
        cmocka_unit_test_setup(test_batch_sim, reset),
        cmocka_unit_test_setup(test_batch_add_from_callback, reset),
        cmocka_unit_test_setup(test_batch_refill, reset),
        cmocka_unit_test_setup(test_batch_request_deadline, reset),
        cmocka_unit_test(test_batch_tls),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
