/*
 * testca.h - a throwaway CA for crypto tests: root -> intermediate -> leaf
 * built with OpenSSL APIs. Header-only (static inline) so each test binary
 * includes it without another library. Test code: aborts on failure.
 */
#ifndef SF_TESTCA_H
#define SF_TESTCA_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "sf_keygen.h"

#define TCA_CHECK(cond)                                                                    \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: testca: %s failed\n", __FILE__, __LINE__, #cond);      \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

static inline EVP_PKEY *tca_key(const char *alg, int size)
{
    EVP_PKEY *k = NULL;

    TCA_CHECK(sf_keygen_generate(alg, size, &k, NULL) == 0);
    return k;
}

static inline void tca_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;

    X509V3_set_ctx(&ctx, issuer ? issuer : cert, cert, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    TCA_CHECK(ext != NULL);
    TCA_CHECK(X509_add_ext(cert, ext, -1) == 1);
    X509_EXTENSION_free(ext);
}

/* A certificate for key with subject CN=cn, signed by issuer_key (self-signed
 * when issuer is NULL). san: a config string like "DNS:a.example,IP:10.0.0.1"
 * or NULL. serial distinguishes certificates. */
static inline X509 *tca_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key,
                             int is_ca, const char *san, long serial)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();

    TCA_CHECK(x != NULL && name != NULL);
    TCA_CHECK(X509_set_version(x, 2) == 1);
    TCA_CHECK(ASN1_INTEGER_set(X509_get_serialNumber(x), serial) == 1);
    TCA_CHECK(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"scmflow test",
                                         -1, -1, 0) == 1);
    TCA_CHECK(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1,
                                         -1, 0) == 1);
    TCA_CHECK(X509_set_subject_name(x, name) == 1);
    TCA_CHECK(X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) == 1);
    TCA_CHECK(X509_gmtime_adj(X509_getm_notBefore(x), -3600) != NULL);
    TCA_CHECK(X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365) != NULL);
    TCA_CHECK(X509_set_pubkey(x, key) == 1);
    tca_ext(x, issuer, NID_basic_constraints, is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    tca_ext(x, issuer, NID_key_usage,
            is_ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature,keyEncipherment");
    tca_ext(x, issuer, NID_subject_key_identifier, "hash");
    if (issuer != NULL)
        tca_ext(x, issuer, NID_authority_key_identifier, "keyid:always");
    if (san != NULL)
        tca_ext(x, issuer, NID_subject_alt_name, san);
    TCA_CHECK(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
    X509_NAME_free(name);
    return x;
}

typedef struct tca_chain {
    EVP_PKEY *root_key, *int_key, *leaf_key;
    X509 *root, *inter, *leaf;
} tca_chain;

/* root (EC P-256) -> intermediate (EC P-256) -> leaf (leaf_alg/leaf_size),
 * leaf CN=cn with SANs san. */
static inline void tca_chain_make(tca_chain *c, const char *leaf_alg, int leaf_size,
                                  const char *cn, const char *san)
{
    static long serial = 1000;

    memset(c, 0, sizeof(*c));
    c->root_key = tca_key("EC", 256);
    c->int_key = tca_key("EC", 256);
    c->leaf_key = tca_key(leaf_alg, leaf_size);
    c->root = tca_cert("Test Root CA", c->root_key, NULL, NULL, 1, NULL, ++serial);
    c->inter = tca_cert("Test Intermediate CA", c->int_key, c->root, c->root_key, 1, NULL,
                        ++serial);
    c->leaf = tca_cert(cn, c->leaf_key, c->inter, c->int_key, 0, san, ++serial);
}

static inline void tca_chain_free(tca_chain *c)
{
    X509_free(c->root);
    X509_free(c->inter);
    X509_free(c->leaf);
    EVP_PKEY_free(c->root_key);
    EVP_PKEY_free(c->int_key);
    EVP_PKEY_free(c->leaf_key);
    memset(c, 0, sizeof(*c));
}

/* PEM of one certificate appended to a heap string (realloc'd). */
static inline char *tca_pem_append(char *s, X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data;
    long n;
    size_t old = s ? strlen(s) : 0;

    TCA_CHECK(b != NULL && PEM_write_bio_X509(b, x) == 1);
    n = BIO_get_mem_data(b, &data);
    s = realloc(s, old + (size_t)n + 1);
    TCA_CHECK(s != NULL);
    memcpy(s + old, data, (size_t)n);
    s[old + (size_t)n] = '\0';
    BIO_free(b);
    return s;
}

#endif
