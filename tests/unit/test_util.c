/* Unit tests of sf_util: integer and duration parsing, sf_buf limits,
 * UTF-8 validation, file reading, formatting helpers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "sf_util.h"

static void test_str_to_i64(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int64_t min, max;
        int ok;
        int64_t want;
    } cases[] = {
        {"0", 0, 10, 1, 0},
        {"10", 0, 10, 1, 10},
        {"11", 0, 10, 0, 0},
        {"-1", 0, 10, 0, 0},
        {"-5", -10, 10, 1, -5},
        {"9223372036854775807", INT64_MIN, INT64_MAX, 1, INT64_MAX},
        {"-9223372036854775808", INT64_MIN, INT64_MAX, 1, INT64_MIN},
        {"9223372036854775808", INT64_MIN, INT64_MAX, 0, 0}, /* overflow */
        {"-9223372036854775809", INT64_MIN, INT64_MAX, 0, 0},
        {"", 0, 10, 0, 0},
        {" 1", 0, 10, 0, 0},
        {"\t1", 0, 10, 0, 0},
        {"\r1", 0, 10, 0, 0},
        {"\v1", 0, 10, 0, 0},
        {"1 ", 0, 10, 0, 0},
        {"1x", 0, 10, 0, 0},
        {"0x10", 0, 100, 0, 0},
        {"1e3", 0, 10000, 0, 0},
        {"-", -10, 10, 0, 0},
        {"abc", 0, 10, 0, 0},
    };
    for (size_t i = 0; i < SF_ARRAY_LEN(cases); i++) {
        int64_t v = 12345;
        int rc = sf_str_to_i64(cases[i].s, cases[i].min, cases[i].max, &v);
        if (cases[i].ok) {
            assert_int_equal(rc, 0);
            assert_true(v == cases[i].want);
        } else {
            if (rc != -1)
                fail_msg("\"%s\" accepted", cases[i].s);
            assert_true(v == 12345); /* output untouched on failure */
        }
    }
    int64_t v;
    assert_int_equal(sf_str_to_i64(NULL, 0, 1, &v), -1);
}

static void test_duration(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int ok;
        int64_t ms;
    } cases[] = {
        {"250ms", 1, 250}, {"30s", 1, 30000},     {"5m", 1, 300000},
        {"2h", 1, 7200000}, {"7d", 1, 604800000}, {"45", 1, 45000},
        {"0", 1, 0},        {"0s", 1, 0},
        {"", 0, 0},         {"s", 0, 0},          {"5x", 0, 0},
        {"-5s", 0, 0},      {"1.5h", 0, 0},       {"5 s", 0, 0},
        {"5S", 0, 0},       {"5sec", 0, 0},       {"99999999999999999999d", 0, 0},
        {" 5s", 0, 0},      {"5ms ", 0, 0},
    };
    for (size_t i = 0; i < SF_ARRAY_LEN(cases); i++) {
        int64_t ms = -7;
        int rc = sf_parse_duration_ms(cases[i].s, &ms);
        if (cases[i].ok) {
            if (rc != 0 || ms != cases[i].ms)
                fail_msg("\"%s\": rc %d ms %lld", cases[i].s, rc, (long long)ms);
        } else {
            if (rc != -1)
                fail_msg("\"%s\" accepted as %lld", cases[i].s, (long long)ms);
            assert_true(ms == -7);
        }
    }
    int64_t ms;
    assert_int_equal(sf_parse_duration_ms(NULL, &ms), -1);
    /* the largest day count still fits */
    char big[64];
    snprintf(big, sizeof(big), "%lldd", (long long)(INT64_MAX / 86400000));
    assert_int_equal(sf_parse_duration_ms(big, &ms), 0);
    assert_true(ms > 0);
}

static void test_snprintf_asprintf(void **state)
{
    (void)state;
    char buf[8];
    assert_int_equal(sf_snprintf(buf, sizeof(buf), "%s", "1234567"), 0);
    assert_string_equal(buf, "1234567");
    assert_int_equal(sf_snprintf(buf, sizeof(buf), "%s", "12345678"), -1);
    assert_string_equal(buf, "1234567"); /* terminated */
    char *s = sf_asprintf("%d-%s", 42, "x");
    assert_string_equal(s, "42-x");
    free(s);
    assert_null(sf_strdup(NULL));
}

static void test_buf_limit(void **state)
{
    (void)state;
    sf_buf b;
    sf_buf_init(&b, 10);
    assert_int_equal(sf_buf_append(&b, "12345", 5), 0);
    assert_int_equal(sf_buf_append(&b, "67890", 5), 0);
    assert_int_equal(b.len, 10);
    /* over the limit: fails and leaves the buffer unchanged */
    assert_int_equal(sf_buf_appendc(&b, 'x'), -1);
    assert_int_equal(sf_buf_appendf(&b, "%d", 1), -1);
    assert_int_equal(b.len, 10);
    assert_string_equal(b.data, "1234567890");
    /* a huge length must not wrap around */
    assert_int_equal(sf_buf_append(&b, "", SIZE_MAX), -1);
    sf_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    sf_buf_release(&b);
    assert_null(b.data);
    assert_int_equal(b.limit, 10);

    /* appendf longer than its internal small buffer */
    sf_buf_init(&b, 4096);
    char big[1000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(sf_buf_appendf(&b, "<%s>", big), 0);
    assert_int_equal(b.len, 1001);
    assert_int_equal(sf_buf_appendf(&b, "%s%s%s%s", big, big, big, big), -1);
    assert_int_equal(b.len, 1001);
    size_t len;
    char *d = sf_buf_detach(&b, &len);
    assert_int_equal(len, 1001);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    free(d);
    sf_buf_release(&b);
}

static void test_utf8(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t len;
        int ok;
    } cases[] = {
        {"", 0, 1},
        {"plain ascii", 11, 1},
        {"caf\xc3\xa9", 5, 1},                 /* é */
        {"\xe2\x82\xac", 3, 1},                /* € */
        {"\xf0\x9f\x94\x92", 4, 1},            /* U+1F512 */
        {"\xf4\x8f\xbf\xbf", 4, 1},            /* U+10FFFF */
        {"\xed\x9f\xbf", 3, 1},                /* U+D7FF, below surrogates */
        {"\xee\x80\x80", 3, 1},                /* U+E000, above */
        {"\xc0\xaf", 2, 0},                    /* overlong '/' */
        {"\xc1\xbf", 2, 0},                    /* overlong */
        {"\xe0\x80\xaf", 3, 0},                /* overlong 3-byte */
        {"\xe0\x9f\xbf", 3, 0},                /* overlong U+07FF */
        {"\xf0\x80\x80\xaf", 4, 0},            /* overlong 4-byte */
        {"\xf0\x8f\xbf\xbf", 4, 0},            /* overlong U+FFFF */
        {"\xed\xa0\x80", 3, 0},                /* U+D800 surrogate */
        {"\xed\xbf\xbf", 3, 0},                /* U+DFFF surrogate */
        {"\xf4\x90\x80\x80", 4, 0},            /* U+110000 */
        {"\xf8\x88\x80\x80\x80", 5, 0},        /* 5-byte form */
        {"\xff", 1, 0},
        {"\x80", 1, 0},                        /* lone continuation */
        {"\xc3", 1, 0},                        /* truncated */
        {"\xe2\x82", 2, 0},                    /* truncated */
        {"\xc3\x28", 2, 0},                    /* bad continuation */
        {"a\0b", 3, 0},                        /* embedded NUL */
    };
    for (size_t i = 0; i < SF_ARRAY_LEN(cases); i++) {
        bool got = sf_utf8_valid(cases[i].s, cases[i].len);
        if (got != (cases[i].ok != 0))
            fail_msg("case %zu: expected %s", i, cases[i].ok ? "valid" : "invalid");
    }
    /* a valid sequence cut short by len */
    assert_false(sf_utf8_valid("\xe2\x82\xac", 2));
}

static void test_read_file(void **state)
{
    (void)state;
    char path[] = "/tmp/sf_test_util_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    char data[20000];
    memset(data, 'z', sizeof(data));
    assert_int_equal(write(fd, data, sizeof(data)), (ssize_t)sizeof(data));
    close(fd);

    char *out = NULL;
    size_t len = 0;
    assert_int_equal(sf_read_file(path, 20000, &out, &len), 0);
    assert_int_equal(len, 20000);
    assert_int_equal(out[20000], '\0');
    free(out);
    out = NULL;
    errno = 0;
    assert_int_equal(sf_read_file(path, 19999, &out, &len), -1);
    assert_int_equal(errno, EFBIG);
    assert_null(out);

    /* empty file: an empty string, not NULL */
    FILE *f = fopen(path, "w");
    fclose(f);
    assert_int_equal(sf_read_file(path, 10, &out, &len), 0);
    assert_non_null(out);
    assert_int_equal(len, 0);
    free(out);
    unlink(path);
    assert_int_equal(sf_read_file(path, 10, &out, &len), -1);
    assert_int_equal(errno, ENOENT);
}

static void test_time(void **state)
{
    (void)state;
    char buf[40];
    sf_format_rfc3339(0, buf, sizeof(buf));
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
    sf_format_rfc3339(1795734130123LL, buf, sizeof(buf));
    assert_string_equal(buf, "2026-11-26T23:02:10.123Z");
    int64_t a = sf_now_mono_ms(), b = sf_now_mono_ms();
    assert_true(b >= a);
    assert_true(sf_now_wall_ms() > 1700000000000LL);
}

static void test_memzero(void **state)
{
    (void)state;
    char s[] = "secret";
    sf_memzero(s, sizeof(s));
    for (size_t i = 0; i < sizeof(s); i++)
        assert_int_equal(s[i], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_str_to_i64),  cmocka_unit_test(test_duration),
        cmocka_unit_test(test_snprintf_asprintf), cmocka_unit_test(test_buf_limit),
        cmocka_unit_test(test_utf8),        cmocka_unit_test(test_read_file),
        cmocka_unit_test(test_time),        cmocka_unit_test(test_memzero),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
