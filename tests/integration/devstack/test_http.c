/*
 * sf_http over real TCP: start the endpoint in this process, fetch /healthz,
 * /readyz (ready and not ready), /metrics and an unknown path with libcurl.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>
#include <cmocka.h>

#include <curl/curl.h>

#include "sf_http.h"
#include "sf_metrics.h"
#include "sf_util.h"

typedef struct resp {
    long status;
    char ctype[128];
    sf_buf body;
} resp;

static size_t on_data(char *p, size_t sz, size_t n, void *ud)
{
    resp *r = ud;
    return sf_buf_append(&r->body, p, sz * n) == 0 ? sz * n : 0;
}

static void fetch(int port, const char *method, const char *path, resp *r)
{
    char url[256];
    char *ct = NULL;
    CURL *c = curl_easy_init();
    assert_non_null(c);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    memset(r, 0, sizeof(*r));
    sf_buf_init(&r->body, 1 << 20);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    snprintf(r->ctype, sizeof(r->ctype), "%s", ct ? ct : "");
    curl_easy_cleanup(c);
}

typedef struct readiness {
    int ready;
    int calls;
} readiness;

static int ready_cb(void *ud, char *why, size_t why_len)
{
    readiness *st = ud;
    st->calls++;
    if (!st->ready)
        snprintf(why, why_len, "database: connection refused");
    return st->ready;
}

static void test_endpoints(void **state)
{
    (void)state;
    readiness st = {.ready = 1};
    sf_error err;
    resp r;
    sf_http *h = sf_http_start("127.0.0.1:0", ready_cb, &st, &err);
    assert_non_null(h);
    int port = sf_http_port(h);
    assert_true(port > 0 && port < 65536);

    fetch(port, "GET", "/healthz", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, "ok\n");
    assert_int_equal(st.calls, 0); /* liveness touches nothing */
    sf_buf_release(&r.body);

    fetch(port, "GET", "/readyz", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(st.calls, 1);
    sf_buf_release(&r.body);

    st.ready = 0;
    fetch(port, "GET", "/readyz", &r);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body.data, "database: connection refused"));
    sf_buf_release(&r.body);

    sf_metrics_describe("scmflow_test_requests_total", "counter", "Test requests.");
    sf_metrics_counter_add("scmflow_test_requests_total", "outcome=\"ok\"", 3);
    sf_metrics_observe("scmflow_test_seconds", NULL, 0.2);
    fetch(port, "GET", "/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.ctype, "text/plain; version=0.0.4"));
    assert_non_null(strstr(r.body.data, "# HELP scmflow_test_requests_total Test requests.\n"));
    assert_non_null(strstr(r.body.data, "scmflow_test_requests_total{outcome=\"ok\"} 3\n"));
    assert_non_null(strstr(r.body.data, "scmflow_test_seconds_bucket{le=\"0.25\"} 1\n"));
    sf_buf_release(&r.body);

    fetch(port, "GET", "/nope", &r);
    assert_int_equal(r.status, 404);
    sf_buf_release(&r.body);

    fetch(port, "POST", "/healthz", &r);
    assert_int_equal(r.status, 405);
    sf_buf_release(&r.body);

    sf_http_stop(h);
}

/* A ready callback stuck for 2 s must not delay /healthz. */
static int slow_ready(void *ud, char *why, size_t why_len)
{
    (void)ud;
    (void)why;
    (void)why_len;
    usleep(2000 * 1000);
    return 1;
}

typedef struct fetch_arg {
    int port;
    resp r;
} fetch_arg;

static void *fetch_readyz(void *arg)
{
    fetch_arg *a = arg;
    fetch(a->port, "GET", "/readyz", &a->r);
    return NULL;
}

static void test_slow_readiness_does_not_block_liveness(void **state)
{
    (void)state;
    sf_error err;
    sf_http *h = sf_http_start("127.0.0.1:0", slow_ready, NULL, &err);
    assert_non_null(h);
    fetch_arg a = {.port = sf_http_port(h)};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, fetch_readyz, &a), 0);
    usleep(200 * 1000); /* let /readyz get into the callback */
    int64_t t0 = sf_now_mono_ms();
    resp r;
    fetch(a.port, "GET", "/healthz", &r);
    int64_t took = sf_now_mono_ms() - t0;
    assert_int_equal(r.status, 200);
    sf_buf_release(&r.body);
    if (took > 1000)
        fail_msg("/healthz took %lld ms while /readyz was busy", (long long)took);
    pthread_join(t, NULL);
    assert_int_equal(a.r.status, 200);
    sf_buf_release(&a.r.body);
    sf_http_stop(h);
}

static void test_bad_listen(void **state)
{
    (void)state;
    sf_error err;
    sf_error_clear(&err);
    assert_null(sf_http_start("nonsense", NULL, NULL, &err));
    assert_int_equal(err.cls, SF_ERR_INVALID);
    assert_null(sf_http_start("127.0.0.1:70000", NULL, NULL, &err));
    assert_null(sf_http_start(NULL, NULL, NULL, NULL));

    /* A port in use is a FATAL error naming the address. */
    sf_http *h = sf_http_start("127.0.0.1:0", NULL, NULL, &err);
    assert_non_null(h);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", sf_http_port(h));
    sf_error_clear(&err);
    assert_null(sf_http_start(addr, NULL, NULL, &err));
    assert_int_equal(err.cls, SF_ERR_FATAL);
    assert_non_null(strstr(err.msg, addr));
    sf_http_stop(h);
    sf_http_stop(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoints),
        cmocka_unit_test(test_slow_readiness_does_not_block_liveness),
        cmocka_unit_test(test_bad_listen),
    };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    sf_metrics_reset();
    curl_global_cleanup();
    return rc;
}
