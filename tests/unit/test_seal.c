/* Unit tests for sf_seal: AES-256-GCM sealing with key ids and rotation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "sf_config.h"
#include "sf_seal.h"
#include "sf_util.h"

static const unsigned char key_a[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                        17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static const unsigned char key_b[32] = {0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88,
                                        0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00,
                                        0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88,
                                        0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00};

static char tmpdir[64];

static int setup_dir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_seal.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *name, const void *data, size_t len, char *path, size_t psize)
{
    FILE *f;

    snprintf(path, psize, "%s/%s", tmpdir, name);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
    chmod(path, 0600);
}

static sf_sealer *sealer_with(const unsigned char *k)
{
    sf_sealer *s = sf_sealer_new(NULL);

    assert_non_null(s);
    assert_int_equal(sf_sealer_add_key(s, k, NULL), 0);
    return s;
}

static void test_roundtrip(void **state)
{
    sf_sealer *s = sealer_with(key_a);
    const char *secret = "-----BEGIN PRIVATE KEY-----\nabc\n";
    char *tok = NULL, *tok2 = NULL;
    unsigned char *plain = NULL;
    size_t len = 0;
    char id[SF_SEAL_KEY_ID_LEN + 1];
    sf_error err;

    (void)state;
    assert_int_equal(sf_seal(s, secret, strlen(secret), "order:1:key", &tok, &err), 0);
    assert_non_null(tok);
    assert_int_equal(strncmp(tok, "v1.", 3), 0);
    assert_int_equal(sf_seal_key_id(tok, id), 0);
    assert_string_equal(id, sf_sealer_primary_id(s));
    assert_null(strstr(tok, "PRIVATE"));
    assert_int_equal(sf_unseal(s, tok, "order:1:key", &plain, &len, &err), 0);
    assert_int_equal(len, strlen(secret));
    assert_memory_equal(plain, secret, len);
    assert_int_equal(plain[len], '\0');
    sf_secret_free(plain, len);
    /* Fresh nonce: sealing the same value twice gives different tokens. */
    assert_int_equal(sf_seal(s, secret, strlen(secret), "order:1:key", &tok2, &err), 0);
    assert_string_not_equal(tok, tok2);
    free(tok);
    free(tok2);
    /* Empty secret and empty context work. */
    assert_int_equal(sf_seal(s, "", 0, "", &tok, &err), 0);
    assert_int_equal(sf_unseal(s, tok, "", &plain, &len, &err), 0);
    assert_int_equal(len, 0);
    sf_secret_free(plain, len);
    free(tok);
    sf_sealer_free(s);
}

static void test_key_id_stable(void **state)
{
    char id1[SF_SEAL_KEY_ID_LEN + 1], id2[SF_SEAL_KEY_ID_LEN + 1];
    sf_sealer *s = sealer_with(key_a);

    (void)state;
    sf_seal_compute_key_id(key_a, id1);
    sf_seal_compute_key_id(key_a, id2);
    assert_string_equal(id1, id2);
    assert_int_equal(strlen(id1), 8);
    assert_string_equal(id1, sf_sealer_primary_id(s));
    sf_seal_compute_key_id(key_b, id2);
    assert_string_not_equal(id1, id2);
    sf_sealer_free(s);
}

static void test_wrong_aad_key_tamper(void **state)
{
    sf_sealer *a = sealer_with(key_a), *b = sealer_with(key_b), *c = sf_sealer_new(NULL);
    char *tok = NULL;
    unsigned char *plain = (unsigned char *)"untouched";
    size_t len = 12345;
    sf_error err;
    char *bad;
    size_t tl;

    (void)state;
    assert_int_equal(sf_seal(a, "hunter2-secret", 14, "account:7:password", &tok, &err), 0);
    /* wrong context */
    assert_int_equal(sf_unseal(a, tok, "account:8:password", &plain, &len, &err), -1);
    assert_int_equal(err.cls, SF_ERR_INVALID);
    assert_string_equal(err.field, "sealed");
    assert_null(strstr(err.msg, "hunter2"));
    assert_string_equal((const char *)plain, "untouched");
    assert_int_equal(len, 12345);
    /* key not configured */
    assert_int_equal(sf_unseal(b, tok, "account:7:password", &plain, &len, &err), -1);
    assert_int_equal(err.cls, SF_ERR_NOT_FOUND);
    /* same id forged onto another key's sealer: add key b, then force a's id
     * into a token sealed by b -> authentication failure, no output */
    /* tamper with every position of the payload */
    tl = strlen(tok);
    bad = strdup(tok);
    for (size_t i = 12; i < tl; i++) {
        memcpy(bad, tok, tl + 1);
        bad[i] = bad[i] == 'A' ? 'B' : 'A';
        assert_int_equal(sf_unseal(a, bad, "account:7:password", &plain, &len, &err), -1);
    }
    /* truncated and malformed tokens */
    memcpy(bad, tok, tl + 1);
    bad[tl - 4] = '\0';
    assert_int_equal(sf_unseal(a, bad, "account:7:password", &plain, &len, &err), -1);
    assert_int_equal(sf_unseal(a, "v1.zzzzzzzz.AAAA", "x", &plain, &len, &err), -1);
    assert_int_equal(sf_unseal(a, "v2.00000000.AAAA", "x", &plain, &len, &err), -1);
    assert_string_equal(err.field, "sealed");
    assert_int_equal(sf_unseal(a, "", "x", &plain, &len, &err), -1);
    memcpy(bad, tok, 12);
    memcpy(bad + 12, "AAAA", 5);
    assert_int_equal(sf_unseal(a, bad, "account:7:password", &plain, &len, &err), -1);
    memcpy(bad + 12, "AA\nA", 5);
    assert_int_equal(sf_unseal(a, bad, "account:7:password", &plain, &len, &err), -1);
    assert_string_equal((const char *)plain, "untouched");
    /* no key at all */
    assert_int_equal(sf_seal(c, "x", 1, "", &bad, &err), -1);
    assert_int_equal(err.cls, SF_ERR_FATAL);
    free(bad);
    free(tok);
    sf_sealer_free(a);
    sf_sealer_free(b);
    sf_sealer_free(c);
}

static void test_rotation(void **state)
{
    sf_sealer *s = sealer_with(key_a);
    char *old_tok = NULL, *new_tok = NULL;
    char ida[SF_SEAL_KEY_ID_LEN + 1], idb[SF_SEAL_KEY_ID_LEN + 1];
    unsigned char *plain;
    size_t len;
    sf_error err;

    (void)state;
    sf_seal_compute_key_id(key_a, ida);
    sf_seal_compute_key_id(key_b, idb);
    assert_int_equal(sf_seal(s, "pw-one", 6, "ctx", &old_tok, &err), 0);
    /* second key only unseals until made primary */
    assert_int_equal(sf_sealer_add_key(s, key_b, &err), 0);
    assert_int_equal(sf_sealer_add_key(s, key_b, &err), 0); /* duplicate: no-op */
    assert_string_equal(sf_sealer_primary_id(s), ida);
    assert_false(sf_seal_needs_reseal(s, old_tok));
    assert_int_equal(sf_sealer_set_primary(s, idb, &err), 0);
    assert_true(sf_seal_needs_reseal(s, old_tok));
    assert_int_equal(sf_seal(s, "pw-two", 6, "ctx", &new_tok, &err), 0);
    assert_false(sf_seal_needs_reseal(s, new_tok));
    assert_int_equal(strncmp(new_tok + 3, idb, 8), 0);
    assert_int_equal(sf_unseal(s, old_tok, "ctx", &plain, &len, &err), 0);
    assert_memory_equal(plain, "pw-one", 6);
    sf_secret_free(plain, len);
    assert_int_equal(sf_unseal(s, new_tok, "ctx", &plain, &len, &err), 0);
    assert_memory_equal(plain, "pw-two", 6);
    sf_secret_free(plain, len);
    assert_int_equal(sf_sealer_set_primary(s, "deadbeef", &err), -1);
    assert_int_equal(err.cls, SF_ERR_NOT_FOUND);
    assert_false(sf_seal_needs_reseal(s, "garbage"));
    free(old_tok);
    free(new_tok);
    sf_sealer_free(s);
}

static void test_key_files(void **state)
{
    char path[256], hex[70] = {0};
    sf_sealer *s = sf_sealer_new(NULL);
    char ida[SF_SEAL_KEY_ID_LEN + 1];
    sf_error err;

    (void)state;
    sf_seal_compute_key_id(key_a, ida);
    /* raw 32 bytes */
    write_file("raw.key", key_a, 32, path, sizeof(path));
    assert_int_equal(sf_sealer_add_key_file(s, path, &err), 0);
    assert_string_equal(sf_sealer_primary_id(s), ida);
    assert_int_equal(sf_seal_check_key_file_mode(path, &err), 0);
    sf_sealer_free(s);
    /* hex with newline gives the same id */
    s = sf_sealer_new(NULL);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02X", key_a[i]);
    hex[64] = '\n';
    write_file("hex.key", hex, 65, path, sizeof(path));
    assert_int_equal(sf_sealer_add_key_file(s, path, &err), 0);
    assert_string_equal(sf_sealer_primary_id(s), ida);
    /* bad: 31 bytes, bad hex, too long, missing file */
    write_file("short.key", key_a, 31, path, sizeof(path));
    assert_int_equal(sf_sealer_add_key_file(s, path, &err), -1);
    assert_string_equal(err.field, "master_key");
    hex[3] = 'g';
    write_file("badhex.key", hex, 65, path, sizeof(path));
    assert_int_equal(sf_sealer_add_key_file(s, path, &err), -1);
    assert_null(strstr(err.msg, "0102"));
    write_file("long.key", hex, 70, path, sizeof(path));
    assert_int_equal(sf_sealer_add_key_file(s, path, &err), -1);
    assert_int_equal(sf_sealer_add_key_file(s, "/nonexistent/master.key", &err), -1);
    assert_int_equal(err.cls, SF_ERR_FATAL);
    /* mode check */
    write_file("open.key", key_a, 32, path, sizeof(path));
    chmod(path, 0644);
    assert_int_equal(sf_seal_check_key_file_mode(path, &err), 1);
    assert_non_null(strstr(err.msg, "group or others"));
    sf_sealer_free(s);
}

static void test_limits(void **state)
{
    sf_sealer *s = sealer_with(key_a);
    char *tok = NULL, *aad;
    unsigned char *big = calloc(1, SF_SEAL_MAX_PLAINTEXT + 1), *plain;
    size_t len;
    sf_error err;

    (void)state;
    assert_non_null(big);
    assert_int_equal(sf_seal(s, big, SF_SEAL_MAX_PLAINTEXT + 1, "x", &tok, &err), -1);
    assert_int_equal(err.cls, SF_ERR_INVALID);
    assert_int_equal(sf_seal(s, big, SF_SEAL_MAX_PLAINTEXT, "x", &tok, &err), 0);
    assert_int_equal(sf_unseal(s, tok, "x", &plain, &len, &err), 0);
    assert_int_equal(len, SF_SEAL_MAX_PLAINTEXT);
    sf_secret_free(plain, len);
    free(tok);
    aad = malloc(SF_SEAL_MAX_AAD + 2);
    memset(aad, 'a', SF_SEAL_MAX_AAD + 1);
    aad[SF_SEAL_MAX_AAD + 1] = '\0';
    assert_int_equal(sf_seal(s, "x", 1, aad, &tok, &err), -1);
    free(aad);
    free(big);
    /* too many keys */
    for (int i = 1; i < SF_SEAL_MAX_KEYS; i++) {
        unsigned char k[32];

        memset(k, i, sizeof(k));
        assert_int_equal(sf_sealer_add_key(s, k, &err), 0);
    }
    {
        unsigned char k[32];

        memset(k, 0xAB, sizeof(k));
        assert_int_equal(sf_sealer_add_key(s, k, &err), -1);
    }
    sf_sealer_free(s);
    sf_sealer_free(NULL);
    sf_secret_free(NULL, 3);
    sf_secret_str_free(NULL);
}

static const unsigned char key_c[32] = {0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a,
                                        0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a,
                                        0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5,
                                        0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5};

/* A config of the common settings with the two master key settings given
 * (NULL = not in the environment). */
static sf_config *key_config(const char *primary, const char *old)
{
    char e1[600], e2[600];
    const char *env[3] = {NULL, NULL, NULL};
    size_t n = 0;
    sf_config *cfg = sf_config_new(sf_cfg_common, sf_cfg_common_len, NULL, 0);
    sf_error err;

    assert_non_null(cfg);
    if (primary != NULL) {
        snprintf(e1, sizeof(e1), "SCMFLOW_MASTER_KEY_FILE=%s", primary);
        env[n++] = e1;
    }
    if (old != NULL) {
        snprintf(e2, sizeof(e2), "SCMFLOW_MASTER_KEY_OLD_FILES=%s", old);
        env[n++] = e2;
    }
    /* Without SCMFLOW_MASTER_KEY_FILE the load fails (required) but the
     * values that were set are kept: enough for the sealer tests. */
    (void)sf_config_load_env(cfg, env, NULL, &err);
    return cfg;
}

static char *seal_with(const unsigned char *k, const char *plain, const char *aad)
{
    sf_sealer *s = sealer_with(k);
    char *tok = NULL;
    sf_error err;

    assert_int_equal(sf_seal(s, plain, strlen(plain), aad, &tok, &err), 0);
    sf_sealer_free(s);
    return tok;
}

static void assert_unseals(const sf_sealer *s, const char *tok, const char *aad, const char *want)
{
    unsigned char *plain = NULL;
    size_t len = 0;
    sf_error err;

    assert_int_equal(sf_unseal(s, tok, aad, &plain, &len, &err), 0);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(plain, want, len);
    sf_secret_free(plain, len);
}

static void test_from_config_primary_only(void **state)
{
    char pa[256], ida[SF_SEAL_KEY_ID_LEN + 1];
    sf_config *cfg;
    sf_sealer *s;
    sf_error err;

    (void)state;
    sf_seal_compute_key_id(key_a, ida);
    write_file("cfg-a.key", key_a, 32, pa, sizeof(pa));
    /* not set, and set to "" */
    cfg = key_config(NULL, NULL);
    sf_error_clear(&err);
    assert_null(sf_sealer_from_config(cfg, &err));
    assert_int_equal(err.cls, SF_ERR_INVALID);
    assert_string_equal(err.field, "SCMFLOW_MASTER_KEY_FILE");
    sf_config_free(cfg);
    cfg = key_config("", NULL);
    assert_null(sf_sealer_from_config(cfg, &err));
    assert_string_equal(err.field, "SCMFLOW_MASTER_KEY_FILE");
    sf_config_free(cfg);
    /* a missing file: fatal, names the setting and the path */
    cfg = key_config("/nonexistent/rekey-primary.key", NULL);
    assert_null(sf_sealer_from_config(cfg, &err));
    assert_int_equal(err.cls, SF_ERR_FATAL);
    assert_string_equal(err.field, "SCMFLOW_MASTER_KEY_FILE");
    assert_non_null(strstr(err.msg, "/nonexistent/rekey-primary.key"));
    sf_config_free(cfg);
    /* the key alone: primary, no old key */
    cfg = key_config(pa, NULL);
    assert_non_null(s = sf_sealer_from_config(cfg, &err));
    assert_string_equal(sf_sealer_primary_id(s), ida);
    sf_sealer_free(s);
    sf_config_free(cfg);
    assert_null(sf_sealer_from_config(NULL, &err));
    assert_int_equal(err.cls, SF_ERR_INTERNAL);
}

static void test_from_config_two_old_keys(void **state)
{
    char pa[256], pb[256], pc[256], list[600], idc[SF_SEAL_KEY_ID_LEN + 1];
    char *tok_a = seal_with(key_a, "secret-under-a", "order:7:key");
    char *tok_b = seal_with(key_b, "secret-under-b", "account:main:password");
    char *tok_c = NULL;
    sf_config *cfg;
    sf_sealer *s;
    sf_error err;

    (void)state;
    sf_seal_compute_key_id(key_c, idc);
    write_file("two-a.key", key_a, 32, pa, sizeof(pa));
    write_file("two-b.key", key_b, 32, pb, sizeof(pb));
    write_file("two-c.key", key_c, 32, pc, sizeof(pc));
    /* blanks and an empty entry are ignored; the new key stays primary */
    snprintf(list, sizeof(list), " %s ,, %s,", pa, pb);
    cfg = key_config(pc, list);
    assert_non_null(s = sf_sealer_from_config(cfg, &err));
    assert_string_equal(sf_sealer_primary_id(s), idc);
    assert_unseals(s, tok_a, "order:7:key", "secret-under-a");
    assert_unseals(s, tok_b, "account:main:password", "secret-under-b");
    assert_true(sf_seal_needs_reseal(s, tok_a));
    /* sealing uses the new key only */
    assert_int_equal(sf_seal(s, "x", 1, "ctx", &tok_c, &err), 0);
    assert_int_equal(strncmp(tok_c + 3, idc, SF_SEAL_KEY_ID_LEN), 0);
    assert_false(sf_seal_needs_reseal(s, tok_c));
    sf_sealer_free(s);
    sf_config_free(cfg);
    /* the primary listed again among the old keys changes nothing */
    snprintf(list, sizeof(list), "%s,%s", pc, pa);
    cfg = key_config(pc, list);
    assert_non_null(s = sf_sealer_from_config(cfg, &err));
    assert_string_equal(sf_sealer_primary_id(s), idc);
    sf_sealer_free(s);
    sf_config_free(cfg);
    /* without the old keys the old tokens name a key that is not there */
    cfg = key_config(pc, NULL);
    assert_non_null(s = sf_sealer_from_config(cfg, &err));
    {
        unsigned char *plain = NULL;
        size_t len = 0;
        char ida[SF_SEAL_KEY_ID_LEN + 1];

        sf_seal_compute_key_id(key_a, ida);
        assert_int_equal(sf_unseal(s, tok_a, "order:7:key", &plain, &len, &err), -1);
        assert_int_equal(err.cls, SF_ERR_NOT_FOUND);
        assert_non_null(strstr(err.msg, ida));
    }
    sf_sealer_free(s);
    sf_config_free(cfg);
    free(tok_a);
    free(tok_b);
    free(tok_c);
}

static void test_from_config_bad_old_key(void **state)
{
    char pa[256], pb[256], pbad[256], list[600], hex[65];
    sf_config *cfg;
    sf_error err;

    (void)state;
    write_file("bad-a.key", key_a, 32, pa, sizeof(pa));
    write_file("bad-b.key", key_b, 32, pb, sizeof(pb));
    /* 64 characters, not all hex: the message must not echo the content */
    memset(hex, 'z', 64);
    memcpy(hex, "0102030405", 10);
    write_file("bad-old.key", hex, 64, pbad, sizeof(pbad));
    snprintf(list, sizeof(list), "%s,%s", pb, pbad);
    cfg = key_config(pa, list);
    sf_error_clear(&err);
    assert_null(sf_sealer_from_config(cfg, &err));
    assert_int_equal(err.cls, SF_ERR_INVALID);
    assert_string_equal(err.field, "SCMFLOW_MASTER_KEY_OLD_FILES");
    assert_non_null(strstr(err.msg, "entry 2"));
    assert_non_null(strstr(err.msg, pbad));
    assert_null(strstr(err.msg, "0102030405"));
    sf_config_free(cfg);
    /* a missing old file: fatal, first entry */
    snprintf(list, sizeof(list), "/nonexistent/old.key,%s", pb);
    cfg = key_config(pa, list);
    assert_null(sf_sealer_from_config(cfg, &err));
    assert_int_equal(err.cls, SF_ERR_FATAL);
    assert_string_equal(err.field, "SCMFLOW_MASTER_KEY_OLD_FILES");
    assert_non_null(strstr(err.msg, "entry 1"));
    assert_non_null(strstr(err.msg, "/nonexistent/old.key"));
    sf_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_key_id_stable),
        cmocka_unit_test(test_wrong_aad_key_tamper),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_key_files),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_from_config_primary_only),
        cmocka_unit_test(test_from_config_two_old_keys),
        cmocka_unit_test(test_from_config_bad_old_key),
    };

    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
