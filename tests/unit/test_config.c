/* Unit tests of sf_config: every type parsed, bad values rejected naming the
 * setting, default < file < environment < --set, required settings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "sf_config.h"
#include "sf_util.h"

static const sf_cfg_def defs[] = {
    {"T_STR", SF_CFG_STRING, "dflt", 0, 0, NULL, "a string", false},
    {"T_INT", SF_CFG_INT, "5", 1, 10, NULL, "an int", false},
    {"T_DUR", SF_CFG_DURATION, "30s", 1000, 86400000, NULL, "a duration", false},
    {"T_ANYDUR", SF_CFG_DURATION, "0", 0, 0, NULL, "any duration", false},
    {"T_BOOL", SF_CFG_BOOL, "false", 0, 0, NULL, "a bool", false},
    {"T_ENUM", SF_CFG_ENUM, "info", 0, 0, "debug|info|warn", "an enum", false},
    {"T_ADDR", SF_CFG_ADDR, "", 0, 0, NULL, "an address", false},
    {"T_SECRET", SF_CFG_STRING, "", 0, 0, NULL, "a secret", true},
    {"T_MINDUR", SF_CFG_DURATION, "7d", 1000, 0, NULL, "min only", false},
};
static const sf_cfg_def req_defs[] = {
    {"T_REQ", SF_CFG_STRING, NULL, 0, 0, NULL, "must be set", false},
};

static char g_file[64];

static sf_config *new_cfg(void)
{
    sf_config *c = sf_config_new(defs, SF_ARRAY_LEN(defs), NULL, 0);
    assert_non_null(c);
    return c;
}

static void write_file(const char *text)
{
    snprintf(g_file, sizeof(g_file), "/tmp/sf_test_config_XXXXXX");
    int fd = mkstemp(g_file);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static void test_defaults(void **state)
{
    (void)state;
    sf_config *c = new_cfg();
    const char *env[] = {NULL};
    assert_int_equal(sf_config_load_env(c, env, NULL, NULL), 0);
    assert_string_equal(sf_config_str(c, "T_STR"), "dflt");
    assert_int_equal(sf_config_int(c, "T_INT"), 5);
    assert_int_equal(sf_config_duration_ms(c, "T_DUR"), 30000);
    assert_false(sf_config_bool(c, "T_BOOL"));
    assert_string_equal(sf_config_str(c, "T_ENUM"), "info");
    assert_string_equal(sf_config_str(c, "T_ADDR"), "");
    assert_string_equal(sf_config_str(c, "NOPE"), "");
    sf_config_free(c);
    sf_config_free(NULL);
}

static void test_every_type_parsed(void **state)
{
    (void)state;
    sf_config *c = new_cfg();
    const char *env[] = {"T_STR=hello world", "T_INT=10", "T_DUR=2h", "T_ANYDUR=250ms",
                         "T_BOOL=yes", "T_ENUM=warn", "T_ADDR=0.0.0.0:9100",
                         "UNRELATED=1", NULL};
    sf_error err;
    assert_int_equal(sf_config_load_env(c, env, NULL, &err), 0);
    assert_string_equal(sf_config_str(c, "T_STR"), "hello world");
    assert_int_equal(sf_config_int(c, "T_INT"), 10);
    assert_int_equal(sf_config_duration_ms(c, "T_DUR"), 7200000);
    assert_int_equal(sf_config_duration_ms(c, "T_ANYDUR"), 250);
    assert_true(sf_config_bool(c, "T_BOOL"));
    assert_string_equal(sf_config_str(c, "T_ENUM"), "warn");
    assert_string_equal(sf_config_str(c, "T_ADDR"), "0.0.0.0:9100");
    /* a minimum without a maximum: no upper bound */
    assert_int_equal(sf_config_duration_ms(c, "T_MINDUR"), 7LL * 86400000);
    assert_int_equal(sf_config_set(c, "T_MINDUR", "3650d", &err), 0);
    assert_int_equal(sf_config_set(c, "T_MINDUR", "1s", &err), 0);
    sf_config_free(c);

    static const char *bools[][2] = {{"1", "1"}, {"true", "1"}, {"on", "1"}, {"yes", "1"},
                                     {"0", "0"}, {"false", "0"}, {"off", "0"}, {"no", "0"}};
    for (size_t i = 0; i < SF_ARRAY_LEN(bools); i++) {
        c = new_cfg();
        assert_int_equal(sf_config_set(c, "T_BOOL", bools[i][0], &err), 0);
        assert_int_equal(sf_config_bool(c, "T_BOOL"), bools[i][1][0] == '1');
        sf_config_free(c);
    }
}

static void test_bad_values_name_the_setting(void **state)
{
    (void)state;
    static const struct {
        const char *name, *value;
    } bad[] = {
        {"T_INT", "0"},      {"T_INT", "11"},     {"T_INT", "five"},  {"T_INT", ""},
        {"T_INT", " 5"},     {"T_DUR", "500ms"},  {"T_DUR", "2d"},    {"T_DUR", "soon"},
        {"T_BOOL", "maybe"}, {"T_BOOL", "TRUE"},  {"T_ENUM", "loud"}, {"T_ENUM", "inf"},
        {"T_ENUM", "info|warn"}, {"T_ADDR", "nohost"}, {"T_ADDR", "h:70000"},
        {"T_ADDR", ":80"},   {"T_ADDR", "h:"},    {"T_MINDUR", "999ms"},
    };
    for (size_t i = 0; i < SF_ARRAY_LEN(bad); i++) {
        sf_config *c = new_cfg();
        sf_error err;
        char envbuf[128];
        const char *env[] = {envbuf, NULL};
        snprintf(envbuf, sizeof(envbuf), "%s=%s", bad[i].name, bad[i].value);
        sf_error_clear(&err);
        if (sf_config_load_env(c, env, NULL, &err) != -1)
            fail_msg("%s accepted", envbuf);
        assert_string_equal(err.field, bad[i].name);
        assert_non_null(strstr(err.msg, bad[i].name));
        assert_non_null(strstr(err.msg, "environment"));
        sf_config_free(c);
    }
    /* unknown setting via --set */
    sf_config *c = new_cfg();
    sf_error err;
    assert_int_equal(sf_config_set(c, "T_NOPE", "1", &err), -1);
    assert_string_equal(err.field, "T_NOPE");
    /* the error message says what is allowed */
    assert_int_equal(sf_config_set(c, "T_ENUM", "loud", &err), -1);
    assert_non_null(strstr(err.msg, "debug|info|warn"));
    sf_config_free(c);
}

static void test_secret_never_in_error(void **state)
{
    (void)state;
    static const sf_cfg_def sdefs[] = {
        {"S_INT", SF_CFG_INT, "1", 1, 5, NULL, "secret int", true},
        {"S_ENUM", SF_CFG_ENUM, "a", 0, 0, "a|b", "secret enum", true},
        {"S_BOOL", SF_CFG_BOOL, "no", 0, 0, NULL, "secret bool", true},
        {"S_DUR", SF_CFG_DURATION, "1s", 0, 0, NULL, "secret duration", true},
        {"S_ADDR", SF_CFG_ADDR, "", 0, 0, NULL, "secret addr", true},
    };
    sf_config *c = sf_config_new(sdefs, SF_ARRAY_LEN(sdefs), NULL, 0);
    sf_error err;
    for (size_t i = 0; i < SF_ARRAY_LEN(sdefs); i++) {
        assert_int_equal(sf_config_set(c, sdefs[i].name, "TopSecret99", &err), -1);
        if (strstr(err.msg, "TopSecret99"))
            fail_msg("%s leaks its value: %s", sdefs[i].name, err.msg);
    }
    /* dump masks secrets */
    const char *env[] = {NULL};
    sf_config_free(c);
    c = new_cfg();
    assert_int_equal(sf_config_set(c, "T_SECRET", "TopSecret99", &err), 0);
    assert_int_equal(sf_config_load_env(c, env, NULL, &err), 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    sf_config_dump(c, f);
    sf_config_print_help(c, f);
    fclose(f);
    assert_null(strstr(buf, "TopSecret99"));
    assert_non_null(strstr(buf, "T_SECRET=***"));
    assert_non_null(strstr(buf, "T_INT"));
    assert_non_null(strstr(buf, "[1..10]"));
    free(buf);
    sf_config_free(c);
}

static void test_precedence(void **state)
{
    (void)state;
    write_file("# comment\n\n  T_STR = \"from file\"  \nT_INT=7\nT_ENUM=debug\n");
    sf_config *c = new_cfg();
    const char *env[] = {"T_INT=8", NULL};
    sf_error err;
    assert_int_equal(sf_config_load_env(c, env, g_file, &err), 0);
    assert_string_equal(sf_config_str(c, "T_STR"), "from file"); /* file beats default */
    assert_int_equal(sf_config_int(c, "T_INT"), 8);               /* env beats file */
    assert_string_equal(sf_config_str(c, "T_ENUM"), "debug");
    sf_config_free(c);

    /* the real entry point: --config, environment, --set */
    c = new_cfg();
    setenv("T_INT", "9", 1);
    setenv("T_BOOL", "on", 1);
    char a0[] = "prog", a1[] = "--config", a3[] = "--set", a4[] = "T_INT=3", a5[] = "--other";
    char *argv[] = {a0, a1, g_file, a3, a4, a5, NULL};
    assert_int_equal(sf_config_load(c, 6, argv, &err), 0);
    assert_int_equal(sf_config_int(c, "T_INT"), 3);              /* --set beats env */
    assert_true(sf_config_bool(c, "T_BOOL"));                    /* env */
    assert_string_equal(sf_config_str(c, "T_STR"), "from file"); /* file */
    sf_config_free(c);

    c = new_cfg();
    char b2[] = "T_INT";
    char *argv2[] = {a0, a3, b2, NULL};
    assert_int_equal(sf_config_load(c, 3, argv2, &err), -1);
    assert_string_equal(err.field, "--set");
    sf_config_free(c);
    c = new_cfg();
    char c2[] = "T_INT=99";
    char *argv3[] = {a0, a3, c2, NULL};
    assert_int_equal(sf_config_load(c, 3, argv3, &err), -1);
    assert_string_equal(err.field, "T_INT");
    assert_non_null(strstr(err.msg, "command line"));
    sf_config_free(c);
    unsetenv("T_INT");
    unsetenv("T_BOOL");
    unlink(g_file);
}

static void test_file_errors(void **state)
{
    (void)state;
    sf_error err;
    const char *env[] = {NULL};
    /* the line number counts blank lines and comments */
    write_file("T_STR=a\n\n# c\n\nT_INT=zz\n");
    sf_config *c = new_cfg();
    assert_int_equal(sf_config_load_env(c, env, g_file, &err), -1);
    assert_string_equal(err.field, "T_INT");
    char where[96];
    snprintf(where, sizeof(where), "%s:5", g_file);
    if (!strstr(err.msg, where))
        fail_msg("expected %s in: %s", where, err.msg);
    sf_config_free(c);
    unlink(g_file);

    write_file("T_UNKNOWN=1\n");
    c = new_cfg();
    assert_int_equal(sf_config_load_env(c, env, g_file, &err), -1);
    assert_string_equal(err.field, "T_UNKNOWN");
    sf_config_free(c);
    unlink(g_file);

    write_file("just words\n");
    c = new_cfg();
    assert_int_equal(sf_config_load_env(c, env, g_file, &err), -1);
    assert_non_null(strstr(err.msg, "NAME=VALUE"));
    sf_config_free(c);
    unlink(g_file);

    c = new_cfg();
    assert_int_equal(sf_config_load_env(c, env, "/nonexistent/sf.conf", &err), -1);
    assert_non_null(strstr(err.msg, "/nonexistent/sf.conf"));
    sf_config_free(c);
}

static void test_required(void **state)
{
    (void)state;
    sf_error err;
    sf_config *c = sf_config_new(defs, SF_ARRAY_LEN(defs), req_defs, SF_ARRAY_LEN(req_defs));
    const char *env[] = {NULL};
    assert_int_equal(sf_config_load_env(c, env, NULL, &err), -1);
    assert_string_equal(err.field, "T_REQ");
    assert_non_null(strstr(err.msg, "required"));
    sf_config_free(c);

    c = sf_config_new(defs, SF_ARRAY_LEN(defs), req_defs, SF_ARRAY_LEN(req_defs));
    const char *env2[] = {"T_REQ=x", NULL};
    assert_int_equal(sf_config_load_env(c, env2, NULL, &err), 0);
    assert_string_equal(sf_config_str(c, "T_REQ"), "x");
    sf_config_free(c);
}

static void test_common_table(void **state)
{
    (void)state;
    sf_error err;
    sf_config *c = sf_config_new(sf_cfg_common, sf_cfg_common_len, NULL, 0);
    const char *env[] = {NULL};
    /* the master key file is required */
    assert_int_equal(sf_config_load_env(c, env, NULL, &err), -1);
    assert_string_equal(err.field, "SCMFLOW_MASTER_KEY_FILE");
    sf_config_free(c);
    c = sf_config_new(sf_cfg_common, sf_cfg_common_len, NULL, 0);
    const char *env2[] = {"SCMFLOW_MASTER_KEY_FILE=/k", NULL};
    assert_int_equal(sf_config_load_env(c, env2, NULL, &err), 0);
    assert_string_equal(sf_config_str(c, "SCMFLOW_TOPIC_PREFIX"), "scm.");
    assert_string_equal(sf_config_str(c, "SCMFLOW_LOG_LEVEL"), "info");
    assert_string_equal(sf_config_str(c, "SCMFLOW_LOG_FORMAT"), "json");
    assert_string_equal(sf_config_str(c, "SCMFLOW_KAFKA_BROKERS"), "localhost:9092");
    sf_config_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_type_parsed),
        cmocka_unit_test(test_bad_values_name_the_setting),
        cmocka_unit_test(test_secret_never_in_error),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_required),
        cmocka_unit_test(test_common_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
