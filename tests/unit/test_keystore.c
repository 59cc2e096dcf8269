/* Unit tests for sf_keystore: PEM / PKCS#12 / JKS building and parsing,
 * password and alias rules, key/leaf mismatch, corrupted stores.
 * (Interop with openssl and keytool: tests/integration/crypto.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../integration/crypto/testca.h"
#include "sf_keystore.h"
#include "sf_seal.h"
#include "sf_x509.h"
#include "sf_util.h"

static tca_chain C;
static sf_chain *CH3; /* leaf, inter, root (ordered) */
static sf_chain *CH2; /* leaf, inter */
static const char *PW = "correct horse battery ~!@#$%^&*()";

static int setup(void **state)
{
    X509 *certs[3];

    (void)state;
    tca_chain_make(&C, "EC", 256, "ks.example.com", "DNS:ks.example.com");
    certs[0] = C.root;
    certs[1] = C.leaf;
    certs[2] = C.inter;
    if (sf_chain_from_certs(certs, 3, &CH3, NULL) < 0 || sf_chain_order(CH3, NULL) < 0)
        return -1;
    if (sf_chain_from_certs(certs + 1, 2, &CH2, NULL) < 0 || sf_chain_order(CH2, NULL) < 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sf_chain_free(CH3);
    sf_chain_free(CH2);
    tca_chain_free(&C);
    return 0;
}

static void test_types(void **state)
{
    sf_keystore_type t;

    (void)state;
    assert_int_equal(sf_keystore_type_parse("pkcs12", &t), 0);
    assert_int_equal(t, SF_KEYSTORE_PKCS12);
    assert_int_equal(sf_keystore_type_parse("P12", &t), 0);
    assert_int_equal(sf_keystore_type_parse("JKS", &t), 0);
    assert_int_equal(t, SF_KEYSTORE_JKS);
    assert_string_equal(sf_keystore_type_name(t), "JKS");
    assert_string_equal(sf_keystore_file_ext(SF_KEYSTORE_PKCS12), "p12");
    assert_int_equal(sf_keystore_type_parse("BKS", &t), -1);
    assert_int_equal(sf_keystore_type_parse(NULL, &t), -1);
}

static void test_password_rules(void **state)
{
    sf_error err;
    char longpw[200];

    (void)state;
    assert_int_equal(sf_keystore_check_password("123456", &err), 0);
    assert_int_equal(sf_keystore_check_password(PW, &err), 0);
    assert_int_equal(sf_keystore_check_password("12345", &err), -1);
    assert_string_equal(err.field, "keystore_password");
    assert_null(strstr(err.msg, "12345"));
    assert_int_equal(sf_keystore_check_password(NULL, &err), -1);
    assert_int_equal(sf_keystore_check_password("abcdef\xff", &err), -1);
    assert_int_equal(sf_keystore_check_password("abc\xc0\xafxyz", &err), -1); /* overlong */
    memset(longpw, 'p', 129);
    longpw[129] = '\0';
    assert_int_equal(sf_keystore_check_password(longpw, &err), -1);
    longpw[128] = '\0';
    assert_int_equal(sf_keystore_check_password(longpw, &err), 0);
    /* non-ASCII is refused: Java cannot open such a PKCS#12 */
    assert_int_equal(sf_keystore_check_password("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", &err), -1);
    assert_non_null(strstr(err.msg, "ASCII"));
    assert_int_equal(sf_keystore_check_password("tab\there", &err), -1);
}

static void test_pem(void **state)
{
    unsigned char *out = NULL;
    size_t len = 0;
    sf_error err;
    char *p;
    int n = 0;

    (void)state;
    assert_int_equal(sf_keystore_build(SF_KEYSTORE_PEM, C.leaf_key, CH3, NULL, NULL, &out, &len, &err), 0);
    assert_int_equal(strlen((char *)out), len);
    assert_int_equal(strncmp((char *)out, "-----BEGIN PRIVATE KEY-----", 27), 0);
    for (p = (char *)out; (p = strstr(p, "BEGIN CERTIFICATE")) != NULL; p++)
        n++;
    assert_int_equal(n, 3);
    /* the certificates that follow the key are the chain, leaf first */
    {
        sf_chain *ch = NULL;

        assert_int_equal(sf_chain_parse(out, len, &ch, &err), -1); /* key block refused */
        p = strstr((char *)out, "-----BEGIN CERTIFICATE");
        assert_int_equal(sf_chain_parse(p, strlen(p), &ch, &err), 0);
        assert_int_equal(X509_cmp(sf_chain_cert(ch, 0), C.leaf), 0);
        assert_int_equal(X509_cmp(sf_chain_cert(ch, 2), C.root), 0);
        sf_chain_free(ch);
    }
    sf_secret_free(out, len);
    assert_int_equal(sf_keystore_pem(C.leaf_key, CH2, "pem-password", &out, &len, &err), 0);
    assert_int_equal(strncmp((char *)out, "-----BEGIN ENCRYPTED PRIVATE KEY-----", 37), 0);
    assert_null(strstr((char *)out, "pem-password"));
    sf_secret_free(out, len);
    assert_int_equal(sf_keystore_pem(C.leaf_key, CH2, "short", &out, &len, &err), -1);
}

static void test_pkcs12_roundtrip(void **state)
{
    unsigned char *out = NULL;
    size_t len = 0;
    EVP_PKEY *k = NULL;
    sf_chain *ch = NULL;
    sf_error err;

    (void)state;
    assert_int_equal(sf_keystore_build(SF_KEYSTORE_PKCS12, C.leaf_key, CH3, PW, "web", &out, &len, &err), 0);
    assert_int_equal(sf_keystore_parse_pkcs12(out, len, PW, &k, &ch, &err), 0);
    assert_int_equal(EVP_PKEY_eq(k, C.leaf_key), 1);
    assert_int_equal(sf_chain_count(ch), 3);
    assert_int_equal(X509_cmp(sf_chain_cert(ch, 0), C.leaf), 0);
    assert_true(sf_chain_has_root(ch));
    EVP_PKEY_free(k);
    sf_chain_free(ch);
    k = NULL;
    ch = NULL;
    assert_int_equal(sf_keystore_parse_pkcs12(out, len, "wrong-password", &k, &ch, &err), -1);
    assert_int_equal(err.cls, SF_ERR_AUTH);
    assert_null(k);
    assert_null(strstr(err.msg, "wrong-password"));
    assert_int_equal(sf_keystore_parse_pkcs12(out, len / 2, PW, &k, &ch, &err), -1);
    assert_int_equal(err.cls, SF_ERR_INVALID);
    assert_int_equal(sf_keystore_parse_pkcs12("garbage", 7, PW, &k, &ch, &err), -1);
    sf_secret_free(out, len);
}

static void test_jks_roundtrip(void **state)
{
    unsigned char *out = NULL;
    size_t len = 0;
    EVP_PKEY *k = NULL;
    sf_chain *ch = NULL;
    sf_error err;

    (void)state;
    assert_int_equal(sf_keystore_build(SF_KEYSTORE_JKS, C.leaf_key, CH2, PW, "My-Alias", &out, &len, &err), 0);
    /* header: magic, version 2, one entry, tag 1, alias lower-cased */
    assert_memory_equal(out, "\xfe\xed\xfe\xed\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00\x01", 16);
    assert_memory_equal(out + 16, "\x00\x08my-alias", 10);
    assert_int_equal(sf_keystore_parse_jks(out, len, PW, &k, &ch, &err), 0);
    assert_int_equal(EVP_PKEY_eq(k, C.leaf_key), 1);
    assert_int_equal(sf_chain_count(ch), 2);
    assert_int_equal(X509_cmp(sf_chain_cert(ch, 1), C.inter), 0);
    EVP_PKEY_free(k);
    sf_chain_free(ch);
    k = NULL;
    ch = NULL;
    assert_int_equal(sf_keystore_parse_jks(out, len, "wrong-password", &k, &ch, &err), -1);
    assert_int_equal(err.cls, SF_ERR_AUTH);
    /* flip a byte inside the protected key: integrity digest catches it */
    out[60] ^= 1;
    assert_int_equal(sf_keystore_parse_jks(out, len, PW, &k, &ch, &err), -1);
    assert_int_equal(err.cls, SF_ERR_AUTH);
    out[60] ^= 1;
    assert_int_equal(sf_keystore_parse_jks(out, len - 1, PW, &k, &ch, &err), -1);
    assert_int_equal(sf_keystore_parse_jks(out, 10, PW, &k, &ch, &err), -1);
    assert_null(k);
    sf_secret_free(out, len);
    /* two builds differ (random salt) */
    {
        unsigned char *a = NULL, *b = NULL;
        size_t la = 0, lb = 0;

        assert_int_equal(sf_keystore_jks(C.leaf_key, CH3, "abcdefgh", NULL, &a, &la, &err), 0);
        assert_int_equal(sf_keystore_jks(C.leaf_key, CH3, "abcdefgh", NULL, &b, &lb, &err), 0);
        assert_int_equal(la, lb);
        assert_memory_not_equal(a, b, la);
        assert_memory_equal(a + 16, "\x00\x07scmflow", 9);
        sf_secret_free(a, la);
        sf_secret_free(b, lb);
    }
}

static void test_bad_inputs(void **state)
{
    unsigned char *out = (unsigned char *)"x";
    size_t len = 99;
    sf_error err;
    static const sf_keystore_type types[] = {SF_KEYSTORE_PEM, SF_KEYSTORE_PKCS12, SF_KEYSTORE_JKS};

    (void)state;
    for (size_t i = 0; i < SF_ARRAY_LEN(types); i++) {
        /* key does not match the leaf */
        assert_int_equal(sf_keystore_build(types[i], C.int_key, CH3, "password1", NULL, &out, &len, &err), -1);
        assert_string_equal(err.field, "certificate");
        if (types[i] != SF_KEYSTORE_PEM) {
            assert_int_equal(sf_keystore_build(types[i], C.leaf_key, CH3, NULL, NULL, &out, &len, &err), -1);
            assert_string_equal(err.field, "keystore_password");
            assert_int_equal(sf_keystore_build(types[i], C.leaf_key, CH3, "12345", NULL, &out, &len, &err), -1);
            assert_int_equal(sf_keystore_build(types[i], C.leaf_key, CH3, "password1", "bad alias", &out, &len, &err), -1);
            assert_string_equal(err.field, "alias");
            assert_int_equal(sf_keystore_build(types[i], C.leaf_key, CH3, "password1", "", &out, &len, &err), -1);
        }
    }
    assert_int_equal(sf_keystore_build((sf_keystore_type)42, C.leaf_key, CH3, "password1", NULL, &out, &len, &err), -1);
    assert_string_equal((char *)out, "x");
    assert_int_equal(len, 99);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_types),           cmocka_unit_test(test_password_rules),
        cmocka_unit_test(test_pem),             cmocka_unit_test(test_pkcs12_roundtrip),
        cmocka_unit_test(test_jks_roundtrip),   cmocka_unit_test(test_bad_inputs),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
