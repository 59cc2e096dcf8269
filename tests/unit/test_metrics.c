/* Unit tests of sf_metrics: Prometheus text exposition rendering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sf_metrics.h"
#include "sf_util.h"

static char *render(void)
{
    sf_buf b;
    size_t len;
    sf_buf_init(&b, 1 << 20);
    assert_int_equal(sf_metrics_render(&b), 0);
    return sf_buf_detach(&b, &len);
}

static int setup(void **state)
{
    (void)state;
    sf_metrics_reset();
    return 0;
}

static void test_counter_and_help(void **state)
{
    (void)state;
    sf_metrics_describe("scmflow_requests_total", "counter", "Requests.\nSecond \\ line");
    sf_metrics_counter_add("scmflow_requests_total", "endpoint=\"enroll\",outcome=\"ok\"", 1);
    sf_metrics_counter_add("scmflow_requests_total", "endpoint=\"enroll\",outcome=\"ok\"", 2.5);
    sf_metrics_counter_add("scmflow_requests_total", NULL, 1);
    sf_metrics_counter_add("scmflow_requests_total", NULL, -5); /* ignored */
    char *out = render();
    assert_string_equal(out,
                        "# HELP scmflow_requests_total Requests.\\nSecond \\\\ line\n"
                        "# TYPE scmflow_requests_total counter\n"
                        "scmflow_requests_total{endpoint=\"enroll\",outcome=\"ok\"} 3.5\n"
                        "scmflow_requests_total 1\n");
    free(out);
}

static void test_gauge_and_sorting(void **state)
{
    (void)state;
    sf_metrics_gauge_set("zz_gauge", NULL, 7);
    sf_metrics_gauge_set("aa_gauge", "", -1.25);
    sf_metrics_gauge_add("zz_gauge", NULL, -2);
    sf_metrics_gauge_set("mm_gauge", NULL, 0.1);
    char *out = render();
    assert_string_equal(out,
                        "# TYPE aa_gauge gauge\naa_gauge -1.25\n"
                        "# TYPE mm_gauge gauge\nmm_gauge 0.1\n"
                        "# TYPE zz_gauge gauge\nzz_gauge 5\n");
    free(out);
}

static void test_histogram(void **state)
{
    (void)state;
    sf_metrics_observe("lat_seconds", "op=\"x\"", 0.003);  /* 0.005 bucket */
    sf_metrics_observe("lat_seconds", "op=\"x\"", 0.005);  /* le is inclusive */
    sf_metrics_observe("lat_seconds", "op=\"x\"", 0.7);    /* 1 */
    sf_metrics_observe("lat_seconds", "op=\"x\"", 100);    /* +Inf only */
    char *out = render();
    assert_non_null(strstr(out, "# TYPE lat_seconds histogram\n"));
    assert_non_null(strstr(out, "lat_seconds_bucket{op=\"x\",le=\"0.005\"} 2\n"));
    assert_non_null(strstr(out, "lat_seconds_bucket{op=\"x\",le=\"0.5\"} 2\n"));
    assert_non_null(strstr(out, "lat_seconds_bucket{op=\"x\",le=\"1\"} 3\n"));
    assert_non_null(strstr(out, "lat_seconds_bucket{op=\"x\",le=\"60\"} 3\n"));
    assert_non_null(strstr(out, "lat_seconds_bucket{op=\"x\",le=\"+Inf\"} 4\n"));
    assert_non_null(strstr(out, "lat_seconds_sum{op=\"x\"} 100.708\n"));
    assert_non_null(strstr(out, "lat_seconds_count{op=\"x\"} 4\n"));
    /* 13 finite buckets + Inf */
    size_t n = 0;
    for (const char *p = out; (p = strstr(p, "lat_seconds_bucket")) != NULL; p++)
        n++;
    assert_int_equal(n, 14);
    free(out);

    sf_metrics_reset();
    sf_metrics_observe("plain_seconds", NULL, 2);
    out = render();
    assert_non_null(strstr(out, "plain_seconds_bucket{le=\"2.5\"} 1\n"));
    assert_non_null(strstr(out, "plain_seconds_sum 2\nplain_seconds_count 1\n"));
    free(out);
}

static void test_type_clash_and_bad_names(void **state)
{
    (void)state;
    sf_metrics_counter_add("m_total", NULL, 1);
    sf_metrics_gauge_set("m_total", NULL, 99);      /* other type: ignored */
    sf_metrics_counter_add("9bad", NULL, 1);        /* bad names ignored */
    sf_metrics_counter_add("bad-name", NULL, 1);
    sf_metrics_counter_add("", NULL, 1);
    sf_metrics_counter_add(NULL, NULL, 1);
    sf_metrics_counter_add("bad_labels", "a=\"1\"\n", 1); /* newline in labels: dropped */
    sf_metrics_describe("x", "summary", "unsupported type");
    char *out = render();
    assert_null(strstr(out, "9bad"));
    assert_null(strstr(out, "bad-name"));
    assert_null(strstr(out, "summary"));
    assert_non_null(strstr(out, "m_total 1\n"));
    assert_non_null(strstr(out, "scmflow_metrics_dropped_total 1\n"));
    free(out);
}

static void test_described_without_series(void **state)
{
    (void)state;
    sf_metrics_describe("up_gauge", "gauge", "Nothing yet");
    char *out = render();
    assert_string_equal(out, "# HELP up_gauge Nothing yet\n# TYPE up_gauge gauge\n");
    free(out);
}

static void test_label_escape(void **state)
{
    (void)state;
    char buf[64];
    assert_int_equal(sf_metrics_label_escape("a\"b\\c\nd", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "a\\\"b\\\\c\\nd");
    assert_int_equal(sf_metrics_label_escape("abcdef", buf, 4), -1);
    assert_string_equal(buf, "abc");
    assert_int_equal(sf_metrics_label_escape("\"\"", buf, 4), -1);
    assert_string_equal(buf, "\\\"");
    assert_int_equal(sf_metrics_label_escape(NULL, buf, 4), 0);
    assert_string_equal(buf, "");
}

static void test_render_limit(void **state)
{
    (void)state;
    sf_buf b;
    sf_metrics_counter_add("a_total", NULL, 1);
    sf_buf_init(&b, 8);
    assert_int_equal(sf_metrics_render(&b), -1);
    sf_buf_release(&b);
}

static void test_series_limit(void **state)
{
    (void)state;
    char l[64];
    for (int i = 0; i < SF_METRICS_MAX_SERIES + 10; i++) {
        snprintf(l, sizeof(l), "i=\"%d\"", i);
        sf_metrics_counter_add("many_total", l, 1);
    }
    char *out = render();
    assert_non_null(strstr(out, "scmflow_metrics_dropped_total 10\n"));
    assert_null(strstr(out, "many_total{i=\"4096\"}"));
    assert_non_null(strstr(out, "many_total{i=\"4095\"} 1\n"));
    free(out);
}

static void *adder(void *arg)
{
    (void)arg;
    for (int i = 0; i < 10000; i++) {
        sf_metrics_counter_add("conc_total", "t=\"x\"", 1);
        sf_metrics_observe("conc_seconds", NULL, 0.01);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, adder, NULL), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    char *out = render();
    assert_non_null(strstr(out, "conc_total{t=\"x\"} 40000\n"));
    assert_non_null(strstr(out, "conc_seconds_count 40000\n"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_counter_and_help, setup),
        cmocka_unit_test_setup(test_gauge_and_sorting, setup),
        cmocka_unit_test_setup(test_histogram, setup),
        cmocka_unit_test_setup(test_type_clash_and_bad_names, setup),
        cmocka_unit_test_setup(test_described_without_series, setup),
        cmocka_unit_test_setup(test_label_escape, setup),
        cmocka_unit_test_setup(test_render_limit, setup),
        cmocka_unit_test_setup(test_series_limit, setup),
        cmocka_unit_test_setup(test_threads, setup),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    sf_metrics_reset();
    return rc;
}
