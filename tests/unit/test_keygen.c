/* Unit tests for sf_keygen: key generation, CSR build/parse, key PEM. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "sf_keygen.h"
#include "sf_seal.h"
#include "sf_util.h"

static void test_generate_ok(void **state)
{
    static const struct {
        const char *alg;
        int size;
    } cases[] = {{"EC", 256}, {"EC", 384}, {"RSA", 2048}, {"ec", 256}};

    (void)state;
    for (size_t i = 0; i < SF_ARRAY_LEN(cases); i++) {
        EVP_PKEY *k = NULL;
        const char *alg;
        int size;

        assert_int_equal(sf_keygen_generate(cases[i].alg, cases[i].size, &k, NULL), 0);
        assert_int_equal(sf_key_describe(k, &alg, &size, NULL), 0);
        assert_true(strcasecmp(alg, cases[i].alg) == 0);
        assert_int_equal(size, cases[i].size);
        EVP_PKEY_free(k);
    }
}

static void test_generate_bad(void **state)
{
    EVP_PKEY *k = (EVP_PKEY *)0x1;
    sf_error err;

    (void)state;
    assert_int_equal(sf_keygen_generate("RSA", 1024, &k, &err), -1);
    assert_string_equal(err.field, "key_size");
    assert_int_equal(sf_keygen_generate("EC", 521, &k, &err), -1);
    assert_string_equal(err.field, "key_size");
    assert_int_equal(sf_keygen_generate("DSA", 2048, &k, &err), -1);
    assert_string_equal(err.field, "key_algorithm");
    assert_ptr_equal(k, (EVP_PKEY *)0x1); /* untouched on failure */
}

static void test_csr_roundtrip(void **state)
{
    EVP_PKEY *k = NULL;
    const char *sans[] = {"www.example.com", "api.example.com", "10.1.2.3", "2001:db8::1"};
    char *pem = NULL, spki[SF_SPKI_SHA256_HEX_LEN + 1];
    sf_csr_info *ci = NULL;
    sf_error err;

    (void)state;
    assert_int_equal(sf_keygen_generate("EC", 384, &k, NULL), 0);
    assert_int_equal(sf_csr_build(k, "www.example.com", sans, 4, &pem, &err), 0);
    assert_non_null(strstr(pem, "-----BEGIN CERTIFICATE REQUEST-----"));
    assert_int_equal(sf_csr_parse(pem, strlen(pem), &ci, &err), 0);
    assert_string_equal(ci->cn, "www.example.com");
    assert_int_equal(ci->nsans, 4);
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(ci->sans[i], sans[i]);
    assert_string_equal(ci->key_alg, "EC");
    assert_int_equal(ci->key_size, 384);
    assert_int_equal(sf_key_spki_sha256(k, spki, NULL), 0);
    assert_string_equal(ci->spki_sha256, spki);
    assert_true(ci->spki_der_len > 50);
    sf_csr_info_free(ci);
    free(pem);
    /* no SANs */
    assert_int_equal(sf_csr_build(k, "solo.example.com", NULL, 0, &pem, &err), 0);
    assert_int_equal(sf_csr_parse(pem, strlen(pem), &ci, &err), 0);
    assert_int_equal(ci->nsans, 0);
    sf_csr_info_free(ci);
    free(pem);
    EVP_PKEY_free(k);
    /* RSA */
    assert_int_equal(sf_keygen_generate("RSA", 2048, &k, NULL), 0);
    assert_int_equal(sf_csr_build(k, "rsa.example.com", sans, 1, &pem, &err), 0);
    assert_int_equal(sf_csr_parse(pem, strlen(pem), &ci, &err), 0);
    assert_string_equal(ci->key_alg, "RSA");
    assert_int_equal(ci->key_size, 2048);
    sf_csr_info_free(ci);
    free(pem);
    EVP_PKEY_free(k);
}

static void test_csr_build_bad(void **state)
{
    EVP_PKEY *k = NULL;
    char *pem = NULL, longname[300];
    const char *bad_sans[] = {"ok.example.com", "bad name"};
    const char *many[SF_CSR_MAX_SANS + 1];
    sf_error err;

    (void)state;
    assert_int_equal(sf_keygen_generate("EC", 256, &k, NULL), 0);
    assert_int_equal(sf_csr_build(k, "", NULL, 0, &pem, &err), -1);
    assert_string_equal(err.field, "common_name");
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(sf_csr_build(k, longname, NULL, 0, &pem, &err), -1);
    assert_string_equal(err.field, "common_name");
    assert_int_equal(sf_csr_build(k, "x\n.example.com", NULL, 0, &pem, &err), -1);
    assert_int_equal(sf_csr_build(k, "ok.example.com", bad_sans, 2, &pem, &err), -1);
    assert_string_equal(err.field, "subject_alt_names");
    for (size_t i = 0; i < SF_ARRAY_LEN(many); i++)
        many[i] = "a.example.com";
    assert_int_equal(sf_csr_build(k, "ok.example.com", many, SF_ARRAY_LEN(many), &pem, &err), -1);
    assert_string_equal(err.field, "subject_alt_names");
    assert_null(pem);
    EVP_PKEY_free(k);
}

static void test_csr_parse_bad(void **state)
{
    EVP_PKEY *k = NULL, *k2 = NULL;
    char *pem = NULL, *big;
    sf_csr_info *ci = NULL;
    sf_error err;
    X509_REQ *req;
    BIO *b;
    char *bad;
    size_t n;

    (void)state;
    assert_int_equal(sf_csr_parse("garbage", 7, &ci, &err), -1);
    assert_string_equal(err.field, "csr");
    assert_int_equal(sf_csr_parse("", 0, &ci, &err), -1);
    assert_string_equal(err.field, "csr");
    assert_int_equal(sf_keygen_generate("EC", 256, &k, NULL), 0);
    assert_int_equal(sf_csr_build(k, "t.example.com", NULL, 0, &pem, &err), 0);
    n = strlen(pem);
    /* truncated */
    assert_int_equal(sf_csr_parse(pem, n / 2, &ci, &err), -1);
    assert_string_equal(err.field, "csr");
    /* too big */
    big = malloc(SF_CSR_MAX_BYTES + 10);
    memset(big, '\n', SF_CSR_MAX_BYTES + 10);
    memcpy(big, pem, n);
    assert_int_equal(sf_csr_parse(big, SF_CSR_MAX_BYTES + 10, &ci, &err), -1);
    assert_non_null(strstr(err.msg, "larger"));
    free(big);
    /* two CSRs */
    big = malloc(2 * n + 1);
    memcpy(big, pem, n);
    memcpy(big + n, pem, n + 1);
    assert_int_equal(sf_csr_parse(big, 2 * n, &ci, &err), -1);
    assert_non_null(strstr(err.msg, "more than one"));
    free(big);
    /* signature that does not verify: swap in a different public key after signing */
    b = BIO_new_mem_buf(pem, (int)n);
    req = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(req);
    assert_int_equal(sf_keygen_generate("EC", 256, &k2, NULL), 0);
    assert_int_equal(X509_REQ_set_pubkey(req, k2), 1);
    b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_X509_REQ(b, req), 1);
    n = (size_t)BIO_get_mem_data(b, &bad);
    assert_int_equal(sf_csr_parse(bad, n, &ci, &err), -1);
    assert_non_null(strstr(err.msg, "signature"));
    assert_string_equal(err.field, "csr");
    BIO_free(b);
    X509_REQ_free(req);
    assert_null(ci);
    free(pem);
    EVP_PKEY_free(k);
    EVP_PKEY_free(k2);
}

/* Keys we never accept in a CSR, built directly with OpenSSL. */
static void test_csr_weak_keys(void **state)
{
    EVP_PKEY *weak[2];
    sf_error err;

    (void)state;
    weak[0] = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    weak[1] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521");
    for (size_t i = 0; i < 2; i++) {
        char *pem = NULL;
        sf_csr_info *ci = NULL;
        const char *alg;
        int size;

        assert_non_null(weak[i]);
        assert_int_equal(sf_csr_build(weak[i], "weak.example.com", NULL, 0, &pem, &err), 0);
        assert_int_equal(sf_csr_parse(pem, strlen(pem), &ci, &err), -1);
        assert_string_equal(err.field, "csr");
        assert_non_null(strstr(err.msg, "not allowed"));
        assert_int_equal(sf_key_describe(weak[i], &alg, &size, NULL), 0);
        assert_int_equal(size, i == 0 ? 1024 : 0);
        free(pem);
        EVP_PKEY_free(weak[i]);
    }
}

/* The EC fast paths of sf_keygen.c write the DER themselves (OpenSSL 3.0's
 * encoders cost ~0.5 ms per order): they must produce exactly what OpenSSL
 * produces. PKCS#8 PEM byte for byte; the CSR's SubjectPublicKeyInfo equal
 * to i2d_PUBKEY and its signature verifying. RSA takes OpenSSL's path. */
static void test_ec_encoding_matches_openssl(void **state)
{
    static const struct { const char *alg; int size; int n; } cases[] = {
        {"EC", 256, 100}, {"EC", 384, 100}, {"RSA", 2048, 2}};
    const char *sans[] = {"www.example.com", "192.0.2.7"};

    (void)state;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        for (int i = 0; i < cases[c].n; i++) {
            EVP_PKEY *k = NULL, *back = NULL;
            char *pem = NULL, *csr = NULL, *want = NULL;
            unsigned char *spki_want = NULL, *spki_got = NULL;
            int lw, lg;
            long wl;
            BIO *bio = BIO_new(BIO_s_mem());
            X509_REQ *req = NULL;

            assert_int_equal(sf_keygen_generate(cases[c].alg, cases[c].size, &k, NULL), 0);
            assert_int_equal(sf_key_to_pem(k, &pem, NULL), 0);
            assert_non_null(bio);
            assert_int_equal(PEM_write_bio_PKCS8PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL), 1);
            wl = BIO_get_mem_data(bio, &want);
            assert_true(wl > 0);
            assert_int_equal(strlen(pem), (size_t)wl);
            assert_memory_equal(pem, want, (size_t)wl);
            assert_int_equal(sf_key_from_pem(pem, strlen(pem), &back, NULL), 0);
            assert_int_equal(EVP_PKEY_eq(k, back), 1);

            assert_int_equal(sf_csr_build(k, "www.example.com", sans, 2, &csr, NULL), 0);
            BIO_free(bio);
            bio = BIO_new_mem_buf(csr, -1);
            req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
            assert_non_null(req);
            assert_int_equal(X509_REQ_verify(req, k), 1);
            lw = i2d_PUBKEY(k, &spki_want);
            lg = i2d_X509_PUBKEY(X509_REQ_get_X509_PUBKEY(req), &spki_got);
            assert_true(lw > 0);
            assert_int_equal(lg, lw);
            assert_memory_equal(spki_got, spki_want, (size_t)lw);

            OPENSSL_free(spki_want);
            OPENSSL_free(spki_got);
            X509_REQ_free(req);
            BIO_free(bio);
            sf_secret_str_free(pem);
            free(csr);
            EVP_PKEY_free(back);
            EVP_PKEY_free(k);
        }
    }
}

static void test_key_pem(void **state)
{
    EVP_PKEY *k = NULL, *k2 = NULL;
    char *pem = NULL;
    sf_error err;
    char a[65], b[65];

    (void)state;
    assert_int_equal(sf_keygen_generate("EC", 256, &k, NULL), 0);
    assert_int_equal(sf_key_to_pem(k, &pem, &err), 0);
    assert_non_null(strstr(pem, "-----BEGIN PRIVATE KEY-----"));
    assert_int_equal(sf_key_from_pem(pem, strlen(pem), &k2, &err), 0);
    assert_int_equal(EVP_PKEY_eq(k, k2), 1);
    assert_int_equal(sf_key_spki_sha256(k, a, NULL), 0);
    assert_int_equal(sf_key_spki_sha256(k2, b, NULL), 0);
    assert_string_equal(a, b);
    EVP_PKEY_free(k2);
    k2 = NULL;
    assert_int_equal(sf_key_from_pem(pem, strlen(pem) / 2, &k2, &err), -1);
    assert_string_equal(err.field, "key");
    assert_null(k2);
    assert_int_equal(sf_key_from_pem("nope", 4, &k2, &err), -1);
    sf_secret_str_free(pem);
    /* an encrypted key is refused, not prompted for */
    {
        BIO *bio = BIO_new(BIO_s_mem());
        char *data;
        long n;

        assert_int_equal(PEM_write_bio_PKCS8PrivateKey(bio, k, EVP_aes_256_cbc(), "secret", 6,
                                                       NULL, NULL), 1);
        n = BIO_get_mem_data(bio, &data);
        assert_int_equal(sf_key_from_pem(data, (size_t)n, &k2, &err), -1);
        BIO_free(bio);
    }
    EVP_PKEY_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_ok),   cmocka_unit_test(test_generate_bad),
        cmocka_unit_test(test_csr_roundtrip), cmocka_unit_test(test_csr_build_bad),
        cmocka_unit_test(test_csr_parse_bad), cmocka_unit_test(test_csr_weak_keys),
        cmocka_unit_test(test_key_pem),
        cmocka_unit_test(test_ec_encoding_matches_openssl),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
