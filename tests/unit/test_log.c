/* Unit tests of sf_log: JSON line fields, text format, thread context,
 * secret scrubbing, level gating. Lines go to a tmpfile. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <cjson/cJSON.h>

#include "sf_log.h"
#include "sf_util.h"

static FILE *g_out;

static int setup(void **state)
{
    (void)state;
    g_out = tmpfile();
    assert_non_null(g_out);
    sf_log_init("test-svc", SF_LOG_DEBUG, SF_LOG_JSON);
    sf_log_set_stream(g_out);
    sf_log_ctx_clear();
    sf_log_clear_secrets();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sf_log_set_stream(NULL);
    sf_log_clear_secrets();
    sf_log_ctx_clear();
    fclose(g_out);
    return 0;
}

/* Everything written so far (caller frees); the stream is emptied. */
static char *take(void)
{
    long n;
    char *s;
    fflush(g_out);
    n = ftell(g_out);
    assert_true(n >= 0);
    s = calloc(1, (size_t)n + 1);
    assert_non_null(s);
    rewind(g_out);
    assert_int_equal(fread(s, 1, (size_t)n, g_out), (size_t)n);
    rewind(g_out);
    assert_int_equal(ftruncate(fileno(g_out), 0), 0);
    return s;
}

/* The single JSON line written so far, parsed. */
static cJSON *take_json(void)
{
    char *s = take();
    size_t n = strlen(s);
    assert_true(n > 0);
    assert_int_equal(s[n - 1], '\n');
    assert_null(memchr(s, '\n', n - 1)); /* exactly one line */
    cJSON *j = cJSON_Parse(s);
    if (!j)
        fail_msg("not JSON: %s", s);
    free(s);
    return j;
}

static const char *jstr(const cJSON *j, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void test_json_fields(void **state)
{
    (void)state;
    sf_log_info("could not open file \"%s\": %s", "a\tb", "no\nway");
    cJSON *j = take_json();
    assert_string_equal(jstr(j, "level"), "info");
    assert_string_equal(jstr(j, "service"), "test-svc");
    assert_string_equal(jstr(j, "msg"), "could not open file \"a\tb\": no\nway");
    const char *t = jstr(j, "time");
    assert_non_null(t);
    assert_int_equal(strlen(t), 24); /* 2026-11-26T23:02:10.123Z */
    assert_int_equal(t[23], 'Z');
    assert_null(jstr(j, "topic"));
    assert_null(jstr(j, "order_id"));
    cJSON_Delete(j);

    /* control characters stay valid JSON */
    sf_log_warn("bell\x01 end");
    j = take_json();
    assert_string_equal(jstr(j, "msg"), "bell\x01 end");
    assert_string_equal(jstr(j, "level"), "warn");
    cJSON_Delete(j);
}

static void test_context(void **state)
{
    (void)state;
    sf_log_ctx_set("scm.order.commands", 3, 1234567890123LL, "ord-1");
    sf_log_error("boom");
    cJSON *j = take_json();
    assert_string_equal(jstr(j, "topic"), "scm.order.commands");
    assert_string_equal(jstr(j, "partition"), "3");
    assert_string_equal(jstr(j, "offset"), "1234567890123");
    assert_string_equal(jstr(j, "order_id"), "ord-1");
    cJSON_Delete(j);

    sf_log_ctx_order("ord-2");
    sf_log_info("x");
    j = take_json();
    assert_string_equal(jstr(j, "order_id"), "ord-2");
    cJSON_Delete(j);

    sf_log_ctx_clear();
    sf_log_info("y");
    j = take_json();
    assert_null(jstr(j, "topic"));
    assert_null(jstr(j, "order_id"));
    cJSON_Delete(j);
}

static void *other_thread(void *arg)
{
    (void)arg;
    sf_log_info("from other thread");
    return NULL;
}

static void test_context_is_per_thread(void **state)
{
    (void)state;
    pthread_t t;
    sf_log_ctx_set("topic-a", 0, 1, "ord-main");
    assert_int_equal(pthread_create(&t, NULL, other_thread, NULL), 0);
    pthread_join(t, NULL);
    cJSON *j = take_json();
    assert_string_equal(jstr(j, "msg"), "from other thread");
    assert_null(jstr(j, "order_id"));
    assert_null(jstr(j, "topic"));
    cJSON_Delete(j);
}

static void test_kv(void **state)
{
    (void)state;
    const char *kv[] = {"component", "librdkafka", "facility", "FAIL", NULL};
    sf_log_kv(SF_LOG_INFO, kv, "n=%d", 5);
    cJSON *j = take_json();
    assert_string_equal(jstr(j, "component"), "librdkafka");
    assert_string_equal(jstr(j, "facility"), "FAIL");
    assert_string_equal(jstr(j, "msg"), "n=5");
    cJSON_Delete(j);

    sf_log_rdkafka_cb(NULL, 3, "BROKERFAIL", "broker down");
    j = take_json();
    assert_string_equal(jstr(j, "level"), "error");
    assert_string_equal(jstr(j, "component"), "librdkafka");
    cJSON_Delete(j);

    sf_log_pq_notice(NULL, "NOTICE:  relation exists, skipping\n");
    j = take_json();
    assert_string_equal(jstr(j, "msg"), "NOTICE:  relation exists, skipping");
    assert_string_equal(jstr(j, "component"), "libpq");
    cJSON_Delete(j);
}

static void test_secret_scrubbing(void **state)
{
    (void)state;
    assert_int_equal(sf_log_register_secret("hunter2-pass"), 0);
    assert_int_equal(sf_log_register_secret("hunter2-pass"), 0); /* again: fine */
    assert_int_equal(sf_log_register_secret("abc"), -1);          /* too short */
    assert_int_equal(sf_log_register_secret(NULL), -1);
    const char *kv[] = {"password", "hunter2-pass", NULL};
    sf_log_kv(SF_LOG_INFO, kv, "login with hunter2-pass and hunter2-pass again");
    char *s = take();
    assert_null(strstr(s, "hunter2"));
    assert_non_null(strstr(s, "login with [redacted] and [redacted] again"));
    assert_non_null(strstr(s, "\"password\":\"[redacted]\""));
    free(s);

    /* a secret that occurs inside the replacement text itself */
    assert_int_equal(sf_log_register_secret("dact"), 0);
    sf_log_info("x dact y dact");
    s = take();
    assert_non_null(strstr(s, "\"x [redacted] y [redacted]\""));
    free(s);

    sf_log_clear_secrets();
    sf_log_info("hunter2-pass");
    s = take();
    assert_non_null(strstr(s, "hunter2-pass"));
    free(s);
}

static void test_level_gating(void **state)
{
    (void)state;
    sf_log_init("test-svc", SF_LOG_WARN, SF_LOG_JSON);
    sf_log_debug("no");
    sf_log_info("no");
    sf_log_write(SF_LOG_INFO, "no");
    assert_false(sf_log_enabled(SF_LOG_INFO));
    assert_true(sf_log_enabled(SF_LOG_ERROR));
    char *s = take();
    assert_string_equal(s, "");
    free(s);
    sf_log_warn("yes");
    sf_log_error("yes");
    s = take();
    size_t lines = 0;
    for (char *p = s; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 2);
    free(s);
}

static void test_text_format(void **state)
{
    (void)state;
    sf_log_init("txt", SF_LOG_INFO, SF_LOG_TEXT);
    sf_log_ctx_set("t", 1, 2, "o");
    sf_log_info("hello");
    char *s = take();
    assert_non_null(strstr(s, "info  txt: hello topic=t partition=1 offset=2 order_id=o\n"));
    free(s);
}

static void test_parse(void **state)
{
    (void)state;
    sf_log_level l = SF_LOG_ERROR;
    sf_log_format f = SF_LOG_TEXT;
    assert_int_equal(sf_log_parse_level("debug", &l), 0);
    assert_int_equal(l, SF_LOG_DEBUG);
    assert_int_equal(sf_log_parse_level("warn", &l), 0);
    assert_int_equal(l, SF_LOG_WARN);
    assert_int_equal(sf_log_parse_level("WARN", &l), -1);
    assert_int_equal(sf_log_parse_level("warning", &l), -1);
    assert_int_equal(sf_log_parse_level(NULL, &l), -1);
    assert_int_equal(l, SF_LOG_WARN);
    assert_int_equal(sf_log_parse_format("json", &f), 0);
    assert_int_equal(f, SF_LOG_JSON);
    assert_int_equal(sf_log_parse_format("xml", &f), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_json_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_context, setup, teardown),
        cmocka_unit_test_setup_teardown(test_context_is_per_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kv, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_scrubbing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_gating, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
