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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_key_id_stable),
        cmocka_unit_test(test_wrong_aad_key_tamper),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_key_files),
        cmocka_unit_test(test_limits),
    };

    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
