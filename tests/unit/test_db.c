/*
 * test_db.c - unit tests of the pure parts of sf_db: SQLSTATE
 * classification, the type-checked cell readers on bad data (results built
 * in memory with libpq's PQmakeEmptyPGresult, no server), the embedded
 * migration list, and the connection-string / unreachable-server errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sf_db.h"
#include "sf_util.h"

static void test_classify(void **state)
{
    static const struct {
        const char *s;
        sf_err_class cls;
    } cases[] = {
        {"08006", SF_ERR_TRANSIENT}, {"08001", SF_ERR_TRANSIENT}, {"08P01", SF_ERR_TRANSIENT},
        {"40001", SF_ERR_TRANSIENT}, {"40P01", SF_ERR_TRANSIENT}, {"57P01", SF_ERR_TRANSIENT},
        {"57P02", SF_ERR_TRANSIENT}, {"57P03", SF_ERR_TRANSIENT}, {"53300", SF_ERR_TRANSIENT},
        {"55P03", SF_ERR_TRANSIENT}, {"57014", SF_ERR_TRANSIENT}, {"23505", SF_ERR_INVALID},
        {"23503", SF_ERR_INTERNAL},  {"42P01", SF_ERR_INTERNAL},  {"22P02", SF_ERR_INTERNAL},
        {"40002", SF_ERR_INTERNAL},  {"57000", SF_ERR_INTERNAL},  {"XX000", SF_ERR_INTERNAL},
    };
    size_t i;
    int code;

    (void)state;
    for (i = 0; i < SF_ARRAY_LEN(cases); i++) {
        code = 0;
        assert_int_equal(sf_db_classify_sqlstate(cases[i].s, &code), cases[i].cls);
        assert_int_not_equal(code, 0);
    }
    assert_int_equal(sf_db_classify_sqlstate("23505", &code), SF_ERR_INVALID);
    assert_int_equal(code, SF_DB_UNIQUE_VIOLATION);
    assert_int_equal(sf_db_classify_sqlstate("40P01", &code), SF_ERR_TRANSIENT);
    assert_int_equal(code, SF_DB_DEADLOCK_DETECTED);
    assert_int_not_equal(SF_DB_UNIQUE_VIOLATION, SF_DB_SQLSTATE('2', '3', '5', '0', '3'));

    /* Malformed: never a crash, never "transient". */
    {
        const char *bad[] = {NULL, "", "0800", "080066", "08a06", "08\n06", "\xff\xfe\xfd\xfc\xfb"};
        for (i = 0; i < SF_ARRAY_LEN(bad); i++) {
            code = 42;
            assert_int_equal(sf_db_classify_sqlstate(bad[i], &code), SF_ERR_INTERNAL);
            assert_int_equal(code, 0);
        }
    }
    assert_int_equal(sf_db_classify_sqlstate("40001", NULL), SF_ERR_TRANSIENT);
}

/* A 1-row result with columns: i (text "123"), bad ("12x"), nul (NULL),
 * big ("9223372036854775807"), over ("9223372036854775808"), b ("t"),
 * bb ("yes"), hex ("\x00ff41"), badhex ("\x0g"), neg ("-2147483649"). */
static PGresult *make_result(void)
{
    static const char *names[] = {"i", "bad", "nul", "big", "over", "b", "bb", "hex", "badhex", "neg"};
    static const char *vals[] = {"123", "12x", NULL, "9223372036854775807", "9223372036854775808",
                                 "t", "yes", "\\x00ff41", "\\x0g", "-2147483649"};
    PGresAttDesc att[SF_ARRAY_LEN(names)];
    PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    size_t i;

    assert_non_null(r);
    memset(att, 0, sizeof(att));
    for (i = 0; i < SF_ARRAY_LEN(names); i++) {
        att[i].name = (char *)names[i];
        att[i].typid = 25;
        att[i].typlen = -1;
        att[i].atttypmod = -1;
    }
    assert_int_equal(PQsetResultAttrs(r, (int)SF_ARRAY_LEN(names), att), 1);
    for (i = 0; i < SF_ARRAY_LEN(vals); i++)
        assert_int_equal(PQsetvalue(r, 0, (int)i, (char *)vals[i],
                                    vals[i] ? (int)strlen(vals[i]) : -1),
                         1);
    return r;
}

static void test_cells(void **state)
{
    PGresult *r = make_result();
    int64_t v = 7;
    int32_t v32 = 7;
    bool b = false;
    const char *s = "untouched";
    unsigned char *bytes = NULL;
    size_t len = 99;
    sf_error err;

    (void)state;
    assert_int_equal(sf_db_get_i64(r, 0, 0, &v, &err), 0);
    assert_int_equal(v, 123);
    assert_int_equal(sf_db_get_i32(r, 0, 0, &v32, &err), 0);
    assert_int_equal(v32, 123);

    v = 7;
    sf_error_clear(&err);
    assert_int_equal(sf_db_get_i64(r, 0, 1, &v, &err), -1);
    assert_int_equal(v, 7);
    assert_int_equal(err.cls, SF_ERR_INTERNAL);
    assert_string_equal(err.field, "bad");
    assert_int_equal(sf_db_get_i64(r, 0, 2, &v, &err), -1); /* NULL */
    assert_int_equal(v, 7);
    assert_string_equal(err.field, "nul");
    assert_int_equal(sf_db_get_i64(r, 0, 3, &v, &err), 0);
    assert_true(v == INT64_MAX);
    v = 7;
    assert_int_equal(sf_db_get_i64(r, 0, 4, &v, &err), -1); /* overflow */
    assert_int_equal(v, 7);
    assert_int_equal(sf_db_get_i32(r, 0, 9, &v32, &err), -1);
    assert_int_equal(v32, 123);
    assert_int_equal(sf_db_get_i32(r, 0, 3, &v32, &err), -1);

    /* Out of range rows / columns, NULL result, NULL err. */
    assert_int_equal(sf_db_get_i64(r, 1, 0, &v, &err), -1);
    assert_int_equal(sf_db_get_i64(r, -1, 0, &v, &err), -1);
    assert_int_equal(sf_db_get_i64(r, 0, 10, &v, &err), -1);
    assert_int_equal(sf_db_get_i64(r, 0, -1, &v, NULL), -1);
    assert_int_equal(sf_db_get_i64(NULL, 0, 0, &v, &err), -1);
    assert_int_equal(sf_db_get_str(NULL, 0, 0, &s, NULL), -1);
    assert_int_equal(v, 7);

    assert_int_equal(sf_db_get_bool(r, 0, 5, &b, &err), 0);
    assert_true(b);
    assert_int_equal(sf_db_get_bool(r, 0, 6, &b, &err), -1);
    assert_int_equal(sf_db_get_bool(r, 0, 2, &b, &err), -1);
    assert_true(b);

    assert_int_equal(sf_db_get_str(r, 0, 2, &s, &err), -1);
    assert_string_equal(s, "untouched");
    assert_int_equal(sf_db_get_str_opt(r, 0, 2, &s, &err), 0);
    assert_null(s);
    assert_int_equal(sf_db_get_str_opt(r, 0, 1, &s, &err), 0);
    assert_string_equal(s, "12x");
    assert_int_equal(sf_db_get_str_opt(r, 0, 11, &s, &err), -1);
    assert_string_equal(s, "12x");
    assert_int_equal(sf_db_get_str(r, 0, 0, &s, &err), 0);
    assert_string_equal(s, "123");

    assert_true(sf_db_is_null(r, 0, 2));
    assert_false(sf_db_is_null(r, 0, 0));
    assert_true(sf_db_is_null(r, 5, 0));
    assert_true(sf_db_is_null(NULL, 0, 0));

    assert_int_equal(sf_db_get_bytea(r, 0, 7, &bytes, &len, &err), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(bytes, "\x00\xff\x41", 3);
    free(bytes);
    bytes = NULL;
    len = 99;
    assert_int_equal(sf_db_get_bytea(r, 0, 8, &bytes, &len, &err), -1);
    assert_int_equal(sf_db_get_bytea(r, 0, 0, &bytes, &len, &err), -1);
    assert_int_equal(sf_db_get_bytea(r, 0, 2, &bytes, &len, &err), -1);
    assert_null(bytes);
    assert_int_equal(len, 99);

    assert_int_equal(sf_db_affected(r), -1); /* a SELECT built in memory has no count */
    assert_int_equal(sf_db_affected(NULL), -1);
    PQclear(r);
}

static void test_migrations_embedded(void **state)
{
    size_t n, i;
    const sf_db_migration *m = sf_db_migrations(&n);

    (void)state;
    assert_true(n >= 1);
    assert_int_equal(m[0].version, 1);
    assert_string_equal(m[0].name, "001_core");
    assert_non_null(strstr(m[0].sql, "CREATE TABLE inbox"));
    assert_non_null(strstr(m[0].sql, "CREATE TABLE outbox"));
    assert_non_null(strstr(m[0].sql, "CREATE TABLE schedules"));
    for (i = 1; i < n; i++) {
        assert_true(m[i].version > m[i - 1].version);
        assert_non_null(m[i].sql);
        assert_true(strlen(m[i].sql) > 0);
    }
}

static void test_open_errors(void **state)
{
    sf_error err;
    sf_db_opts o = {.connect_timeout_ms = 2000};
    int64_t t0;

    (void)state;
    sf_error_clear(&err);
    assert_null(sf_db_open("postgresql://[bad", &err));
    assert_int_equal(err.cls, SF_ERR_FATAL);
    assert_null(sf_db_open("host=localhost nosuchkeyword=1", &err));
    assert_int_equal(err.cls, SF_ERR_FATAL);
    assert_null(sf_db_open(NULL, &err));
    assert_int_equal(err.cls, SF_ERR_FATAL);
    /* libpq's parse errors quote the offending text, which can be the
     * password: it must not reach the message (the reason stays). */
    assert_null(sf_db_open("postgresql://u:s3cr%zzpw@h/db", &err));
    assert_int_equal(err.cls, SF_ERR_FATAL);
    assert_null(strstr(err.msg, "s3cr"));
    assert_non_null(strstr(err.msg, "percent"));
    assert_null(sf_db_open("host=h password s3cretpw", &err));
    assert_int_equal(err.cls, SF_ERR_FATAL);
    assert_null(strstr(err.msg, "s3cretpw"));

    /* Nothing listens on port 1: refused at once, transient, and the
     * password never shows up in the message. */
    t0 = sf_now_mono_ms();
    sf_error_clear(&err);
    assert_null(sf_db_open_opts("postgresql://u:s3cretpw@127.0.0.1:1/x", &o, &err));
    assert_int_equal(err.cls, SF_ERR_TRANSIENT);
    assert_null(strstr(err.msg, "s3cretpw"));
    assert_true(sf_now_mono_ms() - t0 < 2500);

    sf_db_close(NULL);
    sf_db_outbox_rows_free(NULL, 0);
    assert_int_equal(sf_db_rollback(NULL, NULL), 0);
    assert_false(sf_db_connected(NULL));
    assert_false(sf_db_in_transaction(NULL));
    assert_string_equal(sf_db_last_sqlstate(NULL), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_cells),
        cmocka_unit_test(test_migrations_embedded),
        cmocka_unit_test(test_open_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
