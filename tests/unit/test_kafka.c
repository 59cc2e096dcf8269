/*
 * test_kafka.c - unit tests of sf_kafka against librdkafka's in-process
 * mock cluster (the one module under test; the cross-process delivery tests
 * live in tests/integration/delivery). Every Kafka wait has a deadline.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "sf_kafka.h"
#include "sf_log.h"
#include "sf_util.h"

typedef struct fixture {
    rd_kafka_t *owner;
    rd_kafka_mock_cluster_t *mc;
    char brokers[256];
    char prefix[64];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    assert_non_null(f);
    rd_kafka_conf_set(conf, "log_level", "2", errstr, sizeof(errstr));
    f->owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    assert_non_null(f->owner);
    f->mc = rd_kafka_mock_cluster_new(f->owner, 1);
    assert_non_null(f->mc);
    assert_int_equal(sf_snprintf(f->brokers, sizeof(f->brokers), "%s", rd_kafka_mock_cluster_bootstraps(f->mc)), 0);
    assert_int_equal(sf_snprintf(f->prefix, sizeof(f->prefix), "ut%ld.", (long)getpid()), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    rd_kafka_mock_cluster_destroy(f->mc);
    rd_kafka_destroy(f->owner);
    free(f);
    return 0;
}

static void test_bad_config_file_names_key(void **state)
{
    fixture *f = *state;
    char path[] = "/tmp/sf_kafka_cfg_XXXXXX";
    int fd = mkstemp(path);
    sf_kafka_opts o = {f->brokers, path, NULL, 0};
    sf_error err;
    sf_kafka_producer *p;
    static const char text[] = "# comment\n\nsocket.timeout.ms = 5000\nno.such.property=secretvalue\n";

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
    close(fd);
    sf_error_clear(&err);
    p = sf_kafka_producer_new(&o, &err);
    unlink(path);
    assert_null(p);
    assert_int_equal(err.cls, SF_ERR_FATAL);
    assert_non_null(strstr(err.msg, "no.such.property"));
    assert_non_null(strstr(err.msg, "line 4"));
    /* The value may be a password: never echoed. */
    assert_null(strstr(err.msg, "secretvalue"));
}

static void test_missing_config_file(void **state)
{
    fixture *f = *state;
    sf_kafka_opts o = {f->brokers, "/nonexistent/kafka.conf", NULL, 0};
    sf_error err;

    sf_error_clear(&err);
    assert_null(sf_kafka_producer_new(&o, &err));
    assert_int_equal(err.cls, SF_ERR_FATAL);
    assert_non_null(strstr(err.msg, "/nonexistent/kafka.conf"));
}

static void test_ensure_topics_idempotent(void **state)
{
    fixture *f = *state;
    sf_kafka_opts o = {f->brokers, NULL, NULL, 0};
    char t1[128], t2[128];
    const char *topics[3];
    sf_error err;

    sf_snprintf(t1, sizeof(t1), "%sa", f->prefix);
    sf_snprintf(t2, sizeof(t2), "%sb", f->prefix);
    topics[0] = t1;
    topics[1] = t2;
    topics[2] = NULL;
    sf_error_clear(&err);
    if (sf_kafka_ensure_topics(&o, topics, 3, 5000, &err) != 0)
        fail_msg("%s", err.msg);
    /* Already exists: still fine. */
    assert_int_equal(sf_kafka_ensure_topics(&o, topics, 3, 5000, &err), 0);
}

static void test_unreachable_broker_is_transient(void **state)
{
    sf_kafka_opts o = {"127.0.0.1:1", NULL, NULL, 0};
    const char *topics[] = {"x", NULL};
    sf_error err;
    int64_t t0 = sf_now_mono_ms();

    (void)state;
    sf_error_clear(&err);
    assert_int_equal(sf_kafka_ensure_topics(&o, topics, 1, 1000, &err), -1);
    assert_int_equal(err.cls, SF_ERR_TRANSIENT);
    assert_true(sf_now_mono_ms() - t0 < 10000);
}

/* Poll until one message arrives (deadline 20 s: the first group join on
 * the mock takes about 3 s). */
static sf_kafka_msg *poll_one(sf_kafka_consumer *c)
{
    int64_t end = sf_now_mono_ms() + 20000;

    while (sf_now_mono_ms() < end) {
        sf_kafka_msg *m = NULL;
        sf_error err;
        int r = sf_kafka_poll(c, 200, &m, &err);

        assert_true(r >= 0);
        if (r == 1)
            return m;
    }
    fail_msg("no message within 20 s");
    return NULL;
}

static void test_produce_consume_deadletter(void **state)
{
    fixture *f = *state;
    sf_kafka_opts o = {f->brokers, NULL, NULL, 64};
    char in[128], dlq[128];
    const char *topics[3];
    sf_kafka_producer *p;
    sf_kafka_consumer *c, *dc;
    sf_kafka_msg *m, *d;
    sf_error err;
    size_t len = 0;
    const void *v;
    char big[100];
    sf_kafka_header h = {"x-test", "1", 1};

    sf_snprintf(in, sizeof(in), "%sin", f->prefix);
    sf_snprintf(dlq, sizeof(dlq), "%sdlq", f->prefix);
    topics[0] = in;
    topics[1] = dlq;
    topics[2] = NULL;
    sf_error_clear(&err);
    /* Same key for both messages: the mock auto-creates topics with several
     * partitions, and order is kept per partition only. */
    assert_int_equal(sf_kafka_ensure_topics(&o, topics, 1, 5000, &err), 0);
    p = sf_kafka_producer_new(&o, &err);
    assert_non_null(p);
    memset(big, 'B', sizeof(big));
    assert_int_equal(sf_kafka_produce_sync(p, in, "kk", "hello", 5, &h, 1, 10000, &err), 0);
    assert_int_equal(sf_kafka_produce_sync(p, in, "kk", big, sizeof(big), NULL, 0, 10000, &err), 0);
    assert_true(sf_kafka_producer_delivered(p) >= 2);

    topics[1] = NULL;
    c = sf_kafka_consumer_new(&o, "ut-group", topics, &err);
    assert_non_null(c);
    m = poll_one(c);
    v = sf_kafka_msg_value(m, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(v, "hello", 5);
    assert_false(sf_kafka_msg_too_big(m));
    assert_true(sf_kafka_consumer_assigned(c));
    assert_int_equal(sf_kafka_store_offset(c, m, &err), 0);
    sf_kafka_msg_free(m);

    /* Over the 64-byte limit: returned (not dropped), flagged, and it can be
     * dead-lettered with its original bytes and key. */
    m = poll_one(c);
    assert_true(sf_kafka_msg_too_big(m));
    assert_int_equal(sf_kafka_deadletter(p, dlq, m, "unit", "message: too big", 10000, &err), 0);
    assert_int_equal(sf_kafka_store_offset(c, m, &err), 0);
    sf_kafka_msg_free(m);
    assert_int_equal(sf_kafka_commit(c, &err), 0);
    sf_kafka_consumer_free(c);

    topics[0] = dlq;
    o.max_message_bytes = 0;
    dc = sf_kafka_consumer_new(&o, "ut-dlq", topics, &err);
    assert_non_null(dc);
    d = poll_one(dc);
    v = sf_kafka_msg_value(d, &len);
    assert_int_equal(len, sizeof(big));
    assert_memory_equal(v, big, sizeof(big));
    v = sf_kafka_msg_key(d, &len);
    assert_int_equal(len, 2);
    assert_memory_equal(v, "kk", 2);
    sf_kafka_msg_free(d);
    sf_kafka_consumer_free(dc);
    sf_kafka_producer_free(p);
}

static void test_produce_sync_timeout(void **state)
{
    fixture *f = *state;
    sf_kafka_opts o = {f->brokers, NULL, NULL, 0};
    sf_kafka_producer *p;
    sf_error err;
    char t[128];
    int64_t t0;

    sf_snprintf(t, sizeof(t), "%sdown", f->prefix);
    sf_error_clear(&err);
    p = sf_kafka_producer_new(&o, &err);
    assert_non_null(p);
    rd_kafka_mock_broker_set_down(f->mc, 1);
    t0 = sf_now_mono_ms();
    assert_int_equal(sf_kafka_produce_sync(p, t, "k", "v", 1, NULL, 0, 1500, &err), -1);
    assert_int_equal(err.cls, SF_ERR_TRANSIENT);
    assert_true(sf_now_mono_ms() - t0 < 5000);
    rd_kafka_mock_broker_set_up(f->mc, 1);
    /* The abandoned message is still delivered or failed; free must not hang
     * or leak (checked by ASan/valgrind runs). */
    sf_kafka_producer_free(p);
}

typedef struct seen {
    char v[8][16];
    int n;
} seen;

static void on_hdr(void *ud, const void *v, size_t len)
{
    seen *s = ud;

    if (s->n < 8 && len < sizeof(s->v[0])) {
        memcpy(s->v[s->n], v, len);
        s->v[s->n][len] = '\0';
        s->n++;
    }
}

static void test_scan_tail(void **state)
{
    fixture *f = *state;
    sf_kafka_opts o = {f->brokers, NULL, NULL, 0};
    sf_kafka_producer *p;
    sf_error err;
    char t[128];
    seen s;

    memset(&s, 0, sizeof(s));
    sf_snprintf(t, sizeof(t), "%stail", f->prefix);
    sf_error_clear(&err);
    /* A topic that does not exist yet is empty, not an error. */
    assert_int_equal(sf_kafka_scan_tail(&o, t, 2, "h", on_hdr, &s, 5000, &err), 0);
    assert_int_equal(s.n, 0);
    p = sf_kafka_producer_new(&o, &err);
    assert_non_null(p);
    for (int i = 1; i <= 3; i++) {
        char v[4];
        sf_kafka_header h = {"h", v, 1};

        sf_snprintf(v, sizeof(v), "%d", i);
        assert_int_equal(sf_kafka_produce_sync(p, t, "same", "x", 1, &h, 1, 10000, &err), 0);
    }
    assert_int_equal(sf_kafka_produce_sync(p, t, "same", "no-header", 9, NULL, 0, 10000, &err), 0);
    sf_kafka_producer_free(p);
    /* Last 3 messages of the partition: headers 2 and 3 (the 4th has none). */
    assert_int_equal(sf_kafka_scan_tail(&o, t, 3, "h", on_hdr, &s, 10000, &err), 0);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.v[0], "2");
    assert_string_equal(s.v[1], "3");
}

/* librdkafka's syslog levels: 0-3 error, 4 warn, 5 notice and 6 info ->
 * info, 7 debug; a notice must never show up as an error. */
static void test_rdkafka_log_levels(void **state)
{
    static const struct { int syslog; const char *want; } cases[] = {
        {0, " error "}, {2, " error "}, {3, " error "}, {4, " warn "}, {5, " info "}, {6, " info "},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        FILE *f = tmpfile();
        char line[1024] = "";

        assert_non_null(f);
        sf_log_init("test_kafka", SF_LOG_INFO, SF_LOG_TEXT);
        sf_log_set_stream(f);
        sf_log_rdkafka_cb(NULL, cases[i].syslog, "FAC", "a librdkafka line");
        sf_log_rdkafka_cb(NULL, 7, "FAC", "a debug line"); /* below info: dropped */
        sf_log_set_stream(NULL);
        rewind(f);
        assert_non_null(fgets(line, sizeof(line), f));
        if (!strstr(line, cases[i].want))
            fail_msg("syslog level %d logged as: %s", cases[i].syslog, line);
        assert_non_null(strstr(line, "a librdkafka line"));
        assert_null(fgets(line, sizeof(line), f));
        fclose(f);
    }
    sf_log_init("test_kafka", SF_LOG_WARN, SF_LOG_TEXT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_config_file_names_key),
        cmocka_unit_test(test_missing_config_file),
        cmocka_unit_test(test_ensure_topics_idempotent),
        cmocka_unit_test(test_unreachable_broker_is_transient),
        cmocka_unit_test(test_produce_consume_deadletter),
        cmocka_unit_test(test_produce_sync_timeout),
        cmocka_unit_test(test_scan_tail),
        cmocka_unit_test(test_rdkafka_log_levels),
    };

    sf_log_init("test_kafka", SF_LOG_WARN, SF_LOG_TEXT);
    return cmocka_run_group_tests(tests, setup, teardown);
}
