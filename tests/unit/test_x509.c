/* Unit tests for sf_x509: chain parsing in every form, ordering, limits,
 * certificate facts, key and name matching. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>

#include "../integration/crypto/testca.h"
#include "sf_keygen.h"
#include "sf_x509.h"
#include "sf_util.h"

static tca_chain C; /* root -> intermediate -> leaf (RSA-2048 leaf) */

static int setup(void **state)
{
    (void)state;
    tca_chain_make(&C, "RSA", 2048, "leaf.example.com",
                   "DNS:leaf.example.com,DNS:www.example.com,IP:10.0.0.1");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tca_chain_free(&C);
    return 0;
}

static char *pem_of(X509 *a, X509 *b, X509 *c)
{
    char *s = NULL;

    if (a)
        s = tca_pem_append(s, a);
    if (b)
        s = tca_pem_append(s, b);
    if (c)
        s = tca_pem_append(s, c);
    return s;
}

static void expect_order(sf_chain *ch, X509 *a, X509 *b, X509 *c)
{
    assert_int_equal(X509_cmp(sf_chain_cert(ch, 0), a), 0);
    if (b)
        assert_int_equal(X509_cmp(sf_chain_cert(ch, 1), b), 0);
    if (c)
        assert_int_equal(X509_cmp(sf_chain_cert(ch, 2), c), 0);
}

static void test_pem_any_order(void **state)
{
    X509 *perms[6][3] = {
        {C.leaf, C.inter, C.root}, {C.leaf, C.root, C.inter}, {C.inter, C.leaf, C.root},
        {C.inter, C.root, C.leaf}, {C.root, C.leaf, C.inter}, {C.root, C.inter, C.leaf},
    };

    (void)state;
    for (size_t i = 0; i < 6; i++) {
        char *pem = pem_of(perms[i][0], perms[i][1], perms[i][2]);
        char *withtext = sf_asprintf("Bag Attributes\n  friendlyName: x\n%s\ntrailer\n", pem);
        sf_chain *ch = NULL;
        sf_error err;

        assert_int_equal(sf_chain_parse(withtext, strlen(withtext), &ch, &err), 0);
        assert_int_equal(sf_chain_count(ch), 3);
        assert_int_equal(sf_chain_order(ch, &err), 0);
        expect_order(ch, C.leaf, C.inter, C.root);
        assert_true(sf_chain_has_root(ch));
        sf_chain_free(ch);
        free(pem);
        free(withtext);
    }
}

static void test_no_root(void **state)
{
    char *pem = pem_of(C.inter, C.leaf, NULL), *out = NULL;
    sf_chain *ch = NULL, *ch2 = NULL;
    size_t len = 0;

    (void)state;
    assert_int_equal(sf_chain_parse(pem, strlen(pem), &ch, NULL), 0);
    assert_int_equal(sf_chain_order(ch, NULL), 0);
    expect_order(ch, C.leaf, C.inter, NULL);
    assert_false(sf_chain_has_root(ch));
    assert_int_equal(sf_chain_to_pem(ch, false, &out, &len, NULL), 0);
    assert_int_equal(strlen(out), len);
    assert_int_equal(sf_chain_parse(out, len, &ch2, NULL), 0);
    assert_int_equal(sf_chain_count(ch2), 2);
    expect_order(ch2, C.leaf, C.inter, NULL);
    sf_chain_free(ch2);
    free(out);
    sf_chain_free(ch);
    free(pem);
    /* leaf only */
    pem = pem_of(C.leaf, NULL, NULL);
    assert_int_equal(sf_chain_parse(pem, strlen(pem), &ch, NULL), 0);
    assert_int_equal(sf_chain_order(ch, NULL), 0);
    assert_int_equal(sf_chain_count(ch), 1);
    assert_false(sf_chain_has_root(ch));
    sf_chain_free(ch);
    free(pem);
}

static void test_to_pem_root(void **state)
{
    char *pem = pem_of(C.root, C.leaf, C.inter), *out = NULL;
    sf_chain *ch = NULL, *ch2 = NULL;

    (void)state;
    assert_int_equal(sf_chain_parse(pem, strlen(pem), &ch, NULL), 0);
    assert_int_equal(sf_chain_order(ch, NULL), 0);
    assert_int_equal(sf_chain_to_pem(ch, false, &out, NULL, NULL), 0);
    assert_int_equal(sf_chain_parse(out, strlen(out), &ch2, NULL), 0);
    assert_int_equal(sf_chain_count(ch2), 2);
    sf_chain_free(ch2);
    free(out);
    assert_int_equal(sf_chain_to_pem(ch, true, &out, NULL, NULL), 0);
    assert_int_equal(sf_chain_parse(out, strlen(out), &ch2, NULL), 0);
    assert_int_equal(sf_chain_count(ch2), 3);
    expect_order(ch2, C.leaf, C.inter, C.root);
    sf_chain_free(ch2);
    free(out);
    sf_chain_free(ch);
    free(pem);
}

static PKCS7 *make_p7(X509 *a, X509 *b, X509 *c)
{
    PKCS7 *p7 = PKCS7_new();

    assert_non_null(p7);
    assert_int_equal(PKCS7_set_type(p7, NID_pkcs7_signed), 1);
    assert_int_equal(PKCS7_content_new(p7, NID_pkcs7_data), 1);
    assert_int_equal(PKCS7_add_certificate(p7, a), 1);
    assert_int_equal(PKCS7_add_certificate(p7, b), 1);
    if (c)
        assert_int_equal(PKCS7_add_certificate(p7, c), 1);
    return p7;
}

static void test_pkcs7(void **state)
{
    PKCS7 *p7 = make_p7(C.root, C.inter, C.leaf);
    unsigned char *der = NULL;
    int derlen = i2d_PKCS7(p7, &der);
    BIO *b = BIO_new(BIO_s_mem());
    char *pem;
    long pemlen;
    sf_chain *ch = NULL;
    sf_error err;

    (void)state;
    assert_true(derlen > 0);
    assert_int_equal(sf_chain_parse(der, (size_t)derlen, &ch, &err), 0);
    assert_int_equal(sf_chain_count(ch), 3);
    assert_int_equal(sf_chain_order(ch, &err), 0);
    expect_order(ch, C.leaf, C.inter, C.root);
    sf_chain_free(ch);
    /* truncated DER */
    assert_int_equal(sf_chain_parse(der, (size_t)derlen - 10, &ch, &err), -1);
    assert_string_equal(err.field, "certificate");
    /* PEM PKCS7 */
    assert_int_equal(PEM_write_bio_PKCS7(b, p7), 1);
    pemlen = BIO_get_mem_data(b, &pem);
    /* A memory BIO's data is not NUL-terminated: the str* calls below need
     * a terminated copy (ASan strict_string_checks catches the overread). */
    assert_true(pemlen > 0);
    {
        char *z = malloc((size_t)pemlen + 1);

        assert_non_null(z);
        memcpy(z, pem, (size_t)pemlen);
        z[pemlen] = '\0';
        pem = z;
    }
    assert_non_null(strstr(pem, "-----BEGIN PKCS7-----"));
    assert_int_equal(sf_chain_parse(pem, (size_t)pemlen, &ch, &err), 0);
    assert_int_equal(sf_chain_order(ch, &err), 0);
    expect_order(ch, C.leaf, C.inter, C.root);
    sf_chain_free(ch);
    /* bare base64 of the DER, with line breaks (SCM collect format "base64") */
    {
        const char *body = strstr(pem, "\n") + 1;
        size_t blen = (size_t)(strstr(pem, "-----END") - body);

        assert_int_equal(sf_chain_parse(body, blen, &ch, &err), 0);
        assert_int_equal(sf_chain_count(ch), 3);
        sf_chain_free(ch);
        assert_int_equal(sf_chain_parse("QUJD\nREVG\n", 10, &ch, &err), -1);
        assert_string_equal(err.field, "certificate");
    }
    free(pem);
    BIO_free(b);
    OPENSSL_free(der);
    PKCS7_free(p7);
}

static void test_single_der(void **state)
{
    unsigned char *der = NULL, *junk;
    int n = i2d_X509(C.leaf, &der);
    sf_chain *ch = NULL;
    sf_error err;

    (void)state;
    assert_int_equal(sf_chain_parse(der, (size_t)n, &ch, &err), 0);
    assert_int_equal(sf_chain_count(ch), 1);
    sf_chain_free(ch);
    junk = malloc((size_t)n + 3);
    memcpy(junk, der, (size_t)n);
    memcpy(junk + n, "xyz", 3);
    assert_int_equal(sf_chain_parse(junk, (size_t)n + 3, &ch, &err), -1);
    assert_non_null(strstr(err.msg, "trailing"));
    free(junk);
    OPENSSL_free(der);
}

static void test_bad_input(void **state)
{
    char *pem = pem_of(C.leaf, C.inter, NULL), *cut, *big;
    const char *garbage = "-----BEGIN CERTIFICATE-----\nnot base64 !!!\n-----END CERTIFICATE-----\n";
    sf_chain *ch = NULL;
    sf_error err;
    size_t n = strlen(pem);

    (void)state;
    assert_int_equal(sf_chain_parse("", 0, &ch, &err), -1);
    assert_int_equal(sf_chain_parse("hello world", 11, &ch, &err), -1);
    assert_string_equal(err.field, "certificate");
    assert_int_equal(sf_chain_parse(garbage, strlen(garbage), &ch, &err), -1);
    /* truncated in the middle of the second block */
    cut = strndup(pem, n - 100);
    assert_int_equal(sf_chain_parse(cut, strlen(cut), &ch, &err), -1);
    assert_non_null(strstr(err.msg, "PEM block 2"));
    free(cut);
    /* a private key block among certificates is refused */
    {
        char *k = NULL, *mixed;

        assert_int_equal(sf_key_to_pem(C.leaf_key, &k, NULL), 0);
        mixed = sf_asprintf("%s%s", pem, k);
        assert_int_equal(sf_chain_parse(mixed, strlen(mixed), &ch, &err), -1);
        assert_non_null(strstr(err.msg, "PRIVATE KEY"));
        free(mixed);
        free(k);
    }
    /* over the byte limit */
    big = malloc(SF_CHAIN_MAX_BYTES + 1);
    memset(big, ' ', SF_CHAIN_MAX_BYTES + 1);
    memcpy(big, pem, n);
    assert_int_equal(sf_chain_parse(big, SF_CHAIN_MAX_BYTES + 1, &ch, &err), -1);
    assert_non_null(strstr(err.msg, "larger"));
    free(big);
    assert_null(ch);
    free(pem);
}

static void test_too_many_certs(void **state)
{
    char *pem = NULL;
    sf_chain *ch = NULL;
    sf_error err;

    (void)state;
    for (int i = 0; i < SF_CHAIN_MAX_CERTS + 1; i++)
        pem = tca_pem_append(pem, i % 2 ? C.inter : C.root);
    assert_int_equal(sf_chain_parse(pem, strlen(pem), &ch, &err), -1);
    assert_non_null(strstr(err.msg, "more than 10"));
    free(pem);
}

static void test_order_failures(void **state)
{
    EVP_PKEY *other = tca_key("EC", 256);
    /* claims the intermediate as issuer but is signed by another key */
    X509 *forged = tca_cert("forged.example.com", C.leaf_key, C.inter, other, 0, NULL, 77);
    X509 *stranger = tca_cert("Stranger Root", other, NULL, NULL, 1, NULL, 78);
    X509 *set1[] = {forged, C.inter, C.root};
    X509 *set2[] = {C.leaf, C.inter, C.root, stranger};
    X509 *set3[] = {C.leaf, C.root}; /* intermediate missing */
    X509 *set4[] = {C.leaf, C.inter, C.leaf};
    sf_chain *ch = NULL;
    sf_error err;

    (void)state;
    assert_int_equal(sf_chain_from_certs(set1, 3, &ch, &err), 0);
    assert_int_equal(sf_chain_order(ch, &err), -1);
    assert_string_equal(err.field, "certificate");
    /* order left unchanged on failure */
    assert_ptr_equal(sf_chain_cert(ch, 0), forged);
    sf_chain_free(ch);
    assert_int_equal(sf_chain_from_certs(set2, 4, &ch, &err), 0);
    assert_int_equal(sf_chain_order(ch, &err), -1);
    sf_chain_free(ch);
    assert_int_equal(sf_chain_from_certs(set3, 2, &ch, &err), 0);
    assert_int_equal(sf_chain_order(ch, &err), -1);
    sf_chain_free(ch);
    assert_int_equal(sf_chain_from_certs(set4, 3, &ch, &err), 0);
    assert_int_equal(sf_chain_order(ch, &err), -1);
    assert_non_null(strstr(err.msg, "duplicate"));
    sf_chain_free(ch);
    /* the intermediate also present as a self-signed twin (same name and
     * key): the cross-signed one is followed, the twin dropped */
    {
        X509 *twin = tca_cert("Test Intermediate CA", C.int_key, NULL, NULL, 1, NULL, 79);
        X509 *set5[] = {twin, C.root, C.leaf, C.inter};
        X509 *set6[] = {twin, C.leaf}; /* twin alone is a valid issuer */

        assert_int_equal(sf_chain_from_certs(set5, 4, &ch, &err), 0);
        assert_int_equal(sf_chain_order(ch, &err), 0);
        assert_int_equal(sf_chain_count(ch), 3);
        expect_order(ch, C.leaf, C.inter, C.root);
        assert_true(sf_chain_has_root(ch));
        sf_chain_free(ch);
        assert_int_equal(sf_chain_from_certs(set6, 2, &ch, &err), 0);
        assert_int_equal(sf_chain_order(ch, &err), 0);
        expect_order(ch, C.leaf, twin, NULL);
        assert_true(sf_chain_has_root(ch));
        sf_chain_free(ch);
        X509_free(twin);
    }
    X509_free(forged);
    X509_free(stranger);
    EVP_PKEY_free(other);
}

static void test_san_limits(void **state)
{
    sf_buf b;
    X509 *x;
    sf_chain *ch = NULL;
    sf_cert_info *ci = NULL;
    sf_error err;

    (void)state;
    /* ~100 KB of SANs */
    sf_buf_init(&b, 1 << 20);
    for (int i = 0; i < 900; i++)
        assert_int_equal(sf_buf_appendf(&b, "%sDNS:host-%04d-%s.example.com", i ? "," : "", i,
                                        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
                         0);
    x = tca_cert("big.example.com", C.leaf_key, C.inter, C.int_key, 0, b.data, 90);
    assert_int_equal(sf_chain_from_certs(&x, 1, &ch, &err), -1);
    assert_non_null(strstr(err.msg, "larger than 65536"));
    assert_int_equal(sf_cert_info_get(x, &ci, &err), -1);
    X509_free(x);
    {
        unsigned char *der = NULL;
        int n = i2d_X509(x = tca_cert("big.example.com", C.leaf_key, C.inter, C.int_key, 0, b.data, 91), &der);

        assert_true(n > 65536);
        assert_int_equal(sf_chain_parse(der, (size_t)n, &ch, &err), -1);
        OPENSSL_free(der);
        X509_free(x);
    }
    /* > 1000 short names, under the byte limit */
    sf_buf_reset(&b);
    for (int i = 0; i < 1200; i++)
        assert_int_equal(sf_buf_appendf(&b, "%sDNS:h%d.x", i ? "," : "", i), 0);
    x = tca_cert("many.example.com", C.leaf_key, C.inter, C.int_key, 0, b.data, 92);
    assert_int_equal(sf_chain_from_certs(&x, 1, &ch, &err), -1);
    assert_non_null(strstr(err.msg, "1200 subject alternative names"));
    X509_free(x);
    sf_buf_release(&b);
}

static void test_cert_info(void **state)
{
    sf_cert_info *ci = NULL;
    unsigned char md[32];
    unsigned int mdlen;
    char hex[96], spki[65];
    sf_error err;
    time_t now = time(NULL);

    (void)state;
    assert_int_equal(sf_cert_info_get(C.leaf, &ci, &err), 0);
    X509_digest(C.leaf, EVP_sha256(), md, &mdlen);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 3 * i, 4, "%02X%s", md[i], i < 31 ? ":" : "");
    assert_string_equal(ci->sha256_fp, hex);
    assert_int_equal(strlen(ci->sha1_fp), 59);
    assert_string_equal(ci->serial_hex, "03EB"); /* leaf serial 1003, as BN_bn2hex prints it */
    assert_string_equal(ci->subject, "CN=leaf.example.com,O=scmflow test");
    assert_string_equal(ci->issuer, "CN=Test Intermediate CA,O=scmflow test");
    assert_true(ci->not_before <= now && ci->not_before > now - 7200);
    assert_true(ci->not_after > now + 86400L * 364);
    assert_string_equal(ci->key_alg, "RSA");
    assert_int_equal(ci->key_size, 2048);
    assert_string_equal(ci->cn, "leaf.example.com");
    assert_int_equal(ci->nsans, 3);
    assert_string_equal(ci->sans[2], "10.0.0.1");
    assert_int_equal(sf_key_spki_sha256(C.leaf_key, spki, NULL), 0);
    assert_string_equal(ci->spki_sha256, spki);
    assert_false(ci->self_signed);
    sf_cert_info_free(ci);
    assert_int_equal(sf_cert_info_get(C.root, &ci, &err), 0);
    assert_true(ci->self_signed);
    assert_string_equal(ci->key_alg, "EC");
    assert_int_equal(ci->key_size, 256);
    assert_int_equal(ci->nsans, 0);
    sf_cert_info_free(ci);
    sf_cert_info_free(NULL);
}

static void test_matches(void **state)
{
    sf_cert_info *ci = NULL;
    sf_error err;
    const char *same[] = {"10.0.0.1", "WWW.example.com", "leaf.example.com", "www.example.com"};
    const char *missing[] = {"leaf.example.com", "www.example.com"};
    const char *extra[] = {"leaf.example.com", "www.example.com", "10.0.0.1", "x.example.com"};

    (void)state;
    assert_int_equal(sf_cert_matches_key(C.leaf, C.leaf_key, &err), 0);
    assert_int_equal(sf_cert_matches_key(C.leaf, C.int_key, &err), -1);
    assert_non_null(strstr(err.msg, "does not match"));
    assert_int_equal(sf_cert_info_get(C.leaf, &ci, &err), 0);
    assert_int_equal(sf_cert_names_match(ci, "LEAF.example.com", same, 4, &err), 0);
    assert_int_equal(sf_cert_names_match(ci, NULL, same, 4, &err), 0);
    assert_int_equal(sf_cert_names_match(ci, "other.example.com", same, 4, &err), -1);
    assert_string_equal(err.field, "common_name");
    assert_int_equal(sf_cert_names_match(ci, "leaf.example.com", missing, 2, &err), -1);
    assert_string_equal(err.field, "subject_alt_names");
    assert_non_null(strstr(err.msg, "10.0.0.1"));
    assert_int_equal(sf_cert_names_match(ci, "leaf.example.com", extra, 4, &err), -1);
    assert_non_null(strstr(err.msg, "x.example.com"));
    sf_cert_info_free(ci);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pem_any_order), cmocka_unit_test(test_no_root),
        cmocka_unit_test(test_to_pem_root),   cmocka_unit_test(test_pkcs7),
        cmocka_unit_test(test_single_der),    cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_too_many_certs), cmocka_unit_test(test_order_failures),
        cmocka_unit_test(test_san_limits),    cmocka_unit_test(test_cert_info),
        cmocka_unit_test(test_matches),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
