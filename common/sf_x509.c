/*
 * sf_x509.c - certificate chain parsing, ordering and facts (see sf_x509.h).
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "sf_keygen.h"
#include "sf_x509.h"
#include "sf_util.h"

struct sf_chain {
    X509 *certs[SF_CHAIN_MAX_CERTS];
    size_t n;
    bool has_root;
};

#define CERT_FIELD "certificate"

static sf_chain *chain_new(sf_error *err)
{
    sf_chain *c = calloc(1, sizeof(*c));

    if (c == NULL)
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    return c;
}

void sf_chain_free(sf_chain *chain)
{
    if (chain == NULL)
        return;
    for (size_t i = 0; i < chain->n; i++)
        X509_free(chain->certs[i]);
    free(chain);
}

/* Refuse certificates whose subjectAltName is absurd before anyone walks it. */
static int check_san_limits(X509 *cert, size_t index, sf_error *err)
{
    int idx = X509_get_ext_by_NID(cert, NID_subject_alt_name, -1);
    X509_EXTENSION *ext;
    GENERAL_NAMES *gens;
    int count;

    if (idx < 0)
        return 0;
    if (X509_get_ext_by_NID(cert, NID_subject_alt_name, idx) >= 0)
        return sf_error_field(err, CERT_FIELD, "certificate %zu has more than one subjectAltName",
                              index);
    ext = X509_get_ext(cert, idx);
    if (ASN1_STRING_length(X509_EXTENSION_get_data(ext)) > SF_CERT_MAX_SAN_BYTES)
        return sf_error_field(err, CERT_FIELD,
                              "certificate %zu subjectAltName is larger than %d bytes", index,
                              SF_CERT_MAX_SAN_BYTES);
    gens = X509V3_EXT_d2i(ext);
    if (gens == NULL) {
        ERR_clear_error();
        return sf_error_field(err, CERT_FIELD, "certificate %zu subjectAltName is malformed", index);
    }
    count = sk_GENERAL_NAME_num(gens);
    GENERAL_NAMES_free(gens);
    if (count > SF_CERT_MAX_SAN_NAMES)
        return sf_error_field(err, CERT_FIELD,
                              "certificate %zu has %d subject alternative names (limit %d)", index,
                              count, SF_CERT_MAX_SAN_NAMES);
    return 0;
}

/* Take ownership of cert into the chain (freed on failure). */
static int chain_push(sf_chain *c, X509 *cert, sf_error *err)
{
    if (c->n >= SF_CHAIN_MAX_CERTS) {
        X509_free(cert);
        return sf_error_field(err, CERT_FIELD, "more than %d certificates in the chain",
                              SF_CHAIN_MAX_CERTS);
    }
    if (check_san_limits(cert, c->n, err) < 0) {
        X509_free(cert);
        return -1;
    }
    c->certs[c->n++] = cert;
    return 0;
}

static int push_pkcs7(sf_chain *c, PKCS7 *p7, sf_error *err)
{
    STACK_OF(X509) *certs = NULL;

    if (PKCS7_type_is_signed(p7))
        certs = p7->d.sign ? p7->d.sign->cert : NULL;
    else if (PKCS7_type_is_signedAndEnveloped(p7))
        certs = p7->d.signed_and_enveloped ? p7->d.signed_and_enveloped->cert : NULL;
    else
        return sf_error_field(err, CERT_FIELD, "PKCS#7 data is not a signedData certificate bag");
    if (certs == NULL || sk_X509_num(certs) == 0)
        return sf_error_field(err, CERT_FIELD, "PKCS#7 data holds no certificates");
    for (int i = 0; i < sk_X509_num(certs); i++) {
        X509 *x = sk_X509_value(certs, i);

        if (X509_up_ref(x) != 1)
            return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        if (chain_push(c, x, err) < 0)
            return -1;
    }
    return 0;
}

/* Parse exactly len DER bytes as a certificate or a PKCS#7 bag. */
static int parse_der(sf_chain *c, const unsigned char *der, long len, const char *what,
                     sf_error *err)
{
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, len);
    PKCS7 *p7;
    int rc;

    if (x != NULL) {
        if (p != der + len) {
            X509_free(x);
            return sf_error_field(err, CERT_FIELD, "trailing data after DER certificate");
        }
        return chain_push(c, x, err);
    }
    ERR_clear_error();
    p = der;
    p7 = d2i_PKCS7(NULL, &p, len);
    if (p7 == NULL) {
        ERR_clear_error();
        return sf_error_field(err, CERT_FIELD, "could not parse %s", what);
    }
    if (p != der + len) {
        PKCS7_free(p7);
        return sf_error_field(err, CERT_FIELD, "trailing data after PKCS#7 data");
    }
    rc = push_pkcs7(c, p7, err);
    PKCS7_free(p7);
    return rc;
}

static int parse_pem(sf_chain *c, const void *data, size_t len, sf_error *err)
{
    BIO *bio = BIO_new_mem_buf(data, (int)len);
    int rc = -1, blocks = 0;

    if (bio == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    for (;;) {
        char *name = NULL, *header = NULL;
        unsigned char *der = NULL;
        long derlen = 0;
        int r;

        ERR_clear_error();
        if (PEM_read_bio(bio, &name, &header, &der, &derlen) != 1) {
            unsigned long e = ERR_peek_last_error();

            if (blocks > 0 && ERR_GET_LIB(e) == ERR_LIB_PEM &&
                ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
                rc = 0; /* clean end of input */
            } else {
                sf_error_field(err, CERT_FIELD, "could not parse PEM block %d (truncated or corrupt)",
                               blocks + 1);
            }
            break;
        }
        blocks++;
        if (strcmp(name, PEM_STRING_X509) == 0 || strcmp(name, PEM_STRING_X509_OLD) == 0) {
            r = parse_der(c, der, derlen, "PEM certificate", err);
            /* A PKCS#7 inside a CERTIFICATE block would be odd but harmless. */
        } else if (strcmp(name, PEM_STRING_PKCS7) == 0) {
            r = parse_der(c, der, derlen, "PEM PKCS#7 data", err);
        } else {
            r = sf_error_field(err, CERT_FIELD, "unexpected PEM block \"%.40s\" in certificate data",
                               name);
        }
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(der);
        if (r < 0)
            break;
    }
    ERR_clear_error();
    BIO_free(bio);
    return rc;
}

/* PEM when a "-----BEGIN " marker appears anywhere (memmem is a GNU
 * extension, so search by hand). */
static bool looks_pem(const unsigned char *d, size_t len)
{
    static const char mark[] = "-----BEGIN ";
    size_t m = sizeof(mark) - 1;

    for (size_t i = 0; i + m <= len; i++)
        if (d[i] == '-' && memcmp(d + i, mark, m) == 0)
            return true;
    return false;
}

/* SCM's default collect format "base64" may arrive as bare base64 of the
 * PKCS#7 DER, without PEM armour: all base64 alphabet and whitespace. */
static bool looks_base64(const unsigned char *d, size_t len)
{
    size_t sig = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char ch = d[i];

        if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n')
            continue;
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '+' || ch == '/' || ch == '='))
            return false;
        sig++;
    }
    return sig >= 4;
}

static int parse_base64(sf_chain *c, const unsigned char *d, size_t len, sf_error *err)
{
    EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
    unsigned char *der = malloc(len / 4 * 3 + 4);
    int n = 0, fin = 0, rc = -1;

    if (ctx == NULL || der == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    EVP_DecodeInit(ctx);
    if (EVP_DecodeUpdate(ctx, der, &n, d, (int)len) < 0 || EVP_DecodeFinal(ctx, der + n, &fin) < 0 ||
        n + fin <= 0) {
        sf_error_field(err, CERT_FIELD, "could not decode base64 certificate data");
        goto out;
    }
    rc = parse_der(c, der, (long)(n + fin), "base64 certificate data", err);
out:
    ERR_clear_error();
    EVP_ENCODE_CTX_free(ctx);
    free(der);
    return rc;
}

int sf_chain_parse(const void *data, size_t len, sf_chain **out, sf_error *err)
{
    sf_chain *c;
    int rc;

    if (data == NULL || out == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_chain_parse: NULL argument");
    if (len == 0)
        return sf_error_field(err, CERT_FIELD, "certificate data is empty");
    if (len > SF_CHAIN_MAX_BYTES)
        return sf_error_field(err, CERT_FIELD, "certificate data is larger than %d bytes",
                              SF_CHAIN_MAX_BYTES);
    c = chain_new(err);
    if (c == NULL)
        return -1;
    if (looks_pem(data, len))
        rc = parse_pem(c, data, len, err);
    else if (looks_base64(data, len))
        rc = parse_base64(c, data, len, err);
    else
        rc = parse_der(c, data, (long)len, "DER certificate data", err);
    if (rc == 0 && c->n == 0)
        rc = sf_error_field(err, CERT_FIELD, "no certificates found");
    if (rc < 0) {
        sf_chain_free(c);
        return -1;
    }
    *out = c;
    return 0;
}

int sf_chain_from_certs(X509 *const *certs, size_t n, sf_chain **out, sf_error *err)
{
    sf_chain *c;

    if ((certs == NULL && n > 0) || out == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_chain_from_certs: NULL argument");
    if (n == 0)
        return sf_error_field(err, CERT_FIELD, "no certificates given");
    c = chain_new(err);
    if (c == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (certs[i] == NULL || X509_up_ref(certs[i]) != 1) {
            sf_chain_free(c);
            return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_chain_from_certs: bad certificate");
        }
        if (chain_push(c, certs[i], err) < 0) {
            sf_chain_free(c);
            return -1;
        }
    }
    *out = c;
    return 0;
}

/* Is a issued (and signed) by b? Name chaining plus a real signature check. */
static bool issued_by(X509 *a, X509 *b)
{
    EVP_PKEY *k;
    int r;

    if (X509_NAME_cmp(X509_get_issuer_name(a), X509_get_subject_name(b)) != 0)
        return false;
    k = X509_get0_pubkey(b);
    if (k == NULL) {
        ERR_clear_error();
        return false;
    }
    r = X509_verify(a, k);
    ERR_clear_error();
    return r == 1;
}

int sf_chain_order(sf_chain *chain, sf_error *err)
{
    size_t n;
    bool iss[SF_CHAIN_MAX_CERTS][SF_CHAIN_MAX_CERTS]; /* iss[i][j]: i issued by j */
    bool used[SF_CHAIN_MAX_CERTS] = {false};
    size_t order[SF_CHAIN_MAX_CERTS];
    size_t leaf = SIZE_MAX, nleaves = 0, cur, k = 0, dropped = 0;
    bool root = false;
    bool drop[SF_CHAIN_MAX_CERTS] = {false};

    if (chain == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_chain_order: NULL argument");
    n = chain->n;
    if (n == 0)
        return sf_error_field(err, CERT_FIELD, "no certificates");
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (X509_cmp(chain->certs[i], chain->certs[j]) == 0)
                return sf_error_field(err, CERT_FIELD, "certificates %zu and %zu are duplicates", i,
                                      j);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            iss[i][j] = issued_by(chain->certs[i], chain->certs[j]);
    /* The leaf issues no other certificate of the set. */
    for (size_t j = 0; j < n; j++) {
        bool issues = false;

        for (size_t i = 0; i < n; i++)
            if (i != j && iss[i][j])
                issues = true;
        if (!issues) {
            leaf = j;
            nleaves++;
        }
    }
    if (nleaves != 1)
        return sf_error_field(err, CERT_FIELD,
                              nleaves == 0 ? "certificates form a cycle: no leaf certificate"
                                           : "certificates do not form one chain (%zu candidate "
                                             "leaf certificates)",
                              nleaves);
    cur = leaf;
    used[cur] = true;
    order[k++] = cur;
    for (;;) {
        size_t next = SIZE_MAX, cand = 0;

        for (size_t j = 0; j < n; j++) {
            if (j != cur && iss[cur][j]) {
                next = j;
                cand++;
            }
        }
        if (cand == 0) {
            root = iss[cur][cur] && k > 1;
            break;
        }
        if (cand > 1) {
            /* A bundle may carry a CA both cross-signed and self-signed
             * (same name and key). Follow the one that leads further, the
             * cross-signed one; anything else is ambiguous. */
            size_t nonself = 0;

            for (size_t j = 0; j < n; j++) {
                if (j != cur && iss[cur][j] && !iss[j][j]) {
                    next = j;
                    nonself++;
                }
            }
            if (nonself != 1)
                return sf_error_field(err, CERT_FIELD,
                                      "certificate %zu has more than one issuer in the set", cur);
        }
        if (used[next])
            return sf_error_field(err, CERT_FIELD, "certificates form a cycle");
        used[next] = true;
        order[k++] = next;
        cur = next;
    }
    /* Drop alternates of path certificates (same subject and key, e.g. the
     * self-signed twin of a cross-signed CA): they add nothing. */
    for (size_t u = 0; u < n && k != n; u++) {
        if (used[u])
            continue;
        for (size_t v = 0; v < n; v++) {
            if (used[v] &&
                X509_NAME_cmp(X509_get_subject_name(chain->certs[u]),
                              X509_get_subject_name(chain->certs[v])) == 0 &&
                X509_get0_pubkey(chain->certs[u]) != NULL &&
                EVP_PKEY_eq(X509_get0_pubkey(chain->certs[u]), X509_get0_pubkey(chain->certs[v])) == 1) {
                drop[u] = true;
                dropped++;
                break;
            }
        }
    }
    ERR_clear_error();
    if (k + dropped != n) {
        /* Something in the set is not on the leaf's path. Say why: the
         * path may simply be broken by a bad signature. */
        if (!iss[cur][cur])
            return sf_error_field(err, CERT_FIELD,
                                  "chain is broken: certificate %zu is not signed by any other "
                                  "certificate in the set",
                                  cur);
        return sf_error_field(err, CERT_FIELD, "%zu certificate(s) are not part of the chain",
                              n - k - dropped);
    }
    if (k > 1 && !iss[cur][cur] &&
        X509_NAME_cmp(X509_get_issuer_name(chain->certs[cur]),
                      X509_get_subject_name(chain->certs[cur])) == 0)
        return sf_error_field(err, CERT_FIELD, "self-signed root signature does not verify");
    {
        X509 *tmp[SF_CHAIN_MAX_CERTS];

        for (size_t i = 0; i < k; i++)
            tmp[i] = chain->certs[order[i]];
        for (size_t u = 0; u < n; u++)
            if (drop[u])
                X509_free(chain->certs[u]);
        memcpy(chain->certs, tmp, k * sizeof(X509 *));
        chain->n = k;
    }
    chain->has_root = root;
    return 0;
}

bool sf_chain_has_root(const sf_chain *chain)
{
    return chain != NULL && chain->has_root;
}

size_t sf_chain_count(const sf_chain *chain)
{
    return chain ? chain->n : 0;
}

X509 *sf_chain_cert(const sf_chain *chain, size_t i)
{
    if (chain == NULL || i >= chain->n)
        return NULL;
    return chain->certs[i];
}

static int bio_take_string(BIO *bio, char **out, size_t *outlen, sf_error *err)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    char *s;

    if (n < 0)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "could not read memory BIO");
    s = malloc((size_t)n + 1);
    if (s == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    if (n > 0)
        memcpy(s, data, (size_t)n);
    s[n] = '\0';
    *out = s;
    if (outlen)
        *outlen = (size_t)n;
    return 0;
}

int sf_chain_to_pem(const sf_chain *chain, bool include_root, char **pem, size_t *len,
                    sf_error *err)
{
    BIO *bio;
    size_t n;
    int rc = -1;

    if (chain == NULL || pem == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_chain_to_pem: NULL argument");
    n = chain->n;
    if (!include_root && chain->has_root)
        n--;
    bio = BIO_new(BIO_s_mem());
    if (bio == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (PEM_write_bio_X509(bio, chain->certs[i]) != 1) {
            ERR_clear_error();
            sf_error_set(err, SF_ERR_INTERNAL, 0, "could not write certificate PEM");
            goto out;
        }
    }
    rc = bio_take_string(bio, pem, len, err);
out:
    BIO_free(bio);
    return rc;
}

int sf_cert_to_pem(X509 *cert, char **pem, sf_error *err)
{
    BIO *bio;
    int rc;

    if (cert == NULL || pem == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_cert_to_pem: NULL argument");
    bio = BIO_new(BIO_s_mem());
    if (bio == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    if (PEM_write_bio_X509(bio, cert) != 1) {
        ERR_clear_error();
        rc = sf_error_set(err, SF_ERR_INTERNAL, 0, "could not write certificate PEM");
    } else {
        rc = bio_take_string(bio, pem, NULL, err);
    }
    BIO_free(bio);
    return rc;
}

void sf_cert_info_free(sf_cert_info *info)
{
    if (info == NULL)
        return;
    free(info->serial_hex);
    free(info->issuer);
    free(info->subject);
    free(info->cn);
    for (size_t i = 0; i < info->nsans; i++)
        free(info->sans[i]);
    free(info->sans);
    free(info);
}

static void fp_hex(const unsigned char *md, size_t n, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            out[o++] = ':';
        out[o++] = hex[md[i] >> 4];
        out[o++] = hex[md[i] & 0xf];
    }
    out[o] = '\0';
}

static char *name_rfc2253(const X509_NAME *name)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *s = NULL;

    if (bio == NULL)
        return NULL;
    if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) >= 0)
        bio_take_string(bio, &s, NULL, NULL);
    BIO_free(bio);
    return s;
}

static int asn1_time_epoch(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;

    memset(&tm, 0, sizeof(tm));
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return -1;
    *out = (int64_t)timegm(&tm);
    return 0;
}

static char *cert_cn(const X509_NAME *name)
{
    int idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    unsigned char *utf8 = NULL;
    int n;
    char *t;

    if (idx < 0)
        return sf_strdup("");
    n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx)));
    if (n < 0 || memchr(utf8, '\0', (size_t)n) != NULL) {
        OPENSSL_free(utf8);
        return NULL;
    }
    t = malloc((size_t)n + 1);
    if (t != NULL) {
        memcpy(t, utf8, (size_t)n);
        t[n] = '\0';
    }
    OPENSSL_free(utf8);
    return t;
}

/* DNS and IP SANs as text; other name types are skipped. */
static int cert_sans(X509 *cert, char ***out, size_t *nout, sf_error *err)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    char **list = NULL;
    size_t n = 0;
    int count, rc = -1;

    if (gens == NULL) {
        ERR_clear_error();
        *out = NULL;
        *nout = 0;
        return 0;
    }
    count = sk_GENERAL_NAME_num(gens);
    list = calloc((size_t)count + 1, sizeof(char *));
    if (list == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    for (int i = 0; i < count; i++) {
        int type = 0;
        const ASN1_STRING *s = GENERAL_NAME_get0_value(sk_GENERAL_NAME_value(gens, i), &type);
        const unsigned char *d = ASN1_STRING_get0_data(s);
        int len = ASN1_STRING_length(s);
        char *t = NULL;

        if (type == GEN_DNS) {
            if (len <= 0 || memchr(d, '\0', (size_t)len) != NULL) {
                sf_error_field(err, CERT_FIELD, "certificate DNS name %d is not valid", i);
                goto out;
            }
            t = malloc((size_t)len + 1);
            if (t != NULL) {
                memcpy(t, d, (size_t)len);
                t[len] = '\0';
            }
        } else if (type == GEN_IPADD) {
            char buf[64];

            if (!((len == 4 && inet_ntop(AF_INET, d, buf, sizeof(buf)) != NULL) ||
                  (len == 16 && inet_ntop(AF_INET6, d, buf, sizeof(buf)) != NULL))) {
                sf_error_field(err, CERT_FIELD, "certificate IP address %d is not valid", i);
                goto out;
            }
            t = sf_strdup(buf);
        } else {
            continue;
        }
        if (t == NULL) {
            sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
            goto out;
        }
        list[n++] = t;
    }
    *out = list;
    *nout = n;
    list = NULL;
    rc = 0;
out:
    if (list != NULL) {
        for (size_t i = 0; i < n; i++)
            free(list[i]);
        free(list);
    }
    GENERAL_NAMES_free(gens);
    return rc;
}

int sf_cert_info_get(X509 *cert, sf_cert_info **out, sf_error *err)
{
    sf_cert_info *ci = NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    BIGNUM *bn = NULL;
    char *hex = NULL;
    unsigned char *spki = NULL;
    int spkilen;
    EVP_PKEY *pk;
    int rc = -1;

    if (cert == NULL || out == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_cert_info_get: NULL argument");
    if (check_san_limits(cert, 0, err) < 0)
        return -1;
    ci = calloc(1, sizeof(*ci));
    if (ci == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    if (X509_digest(cert, EVP_sha256(), md, &mdlen) != 1 || mdlen != 32)
        goto ossl;
    fp_hex(md, 32, ci->sha256_fp);
    if (X509_digest(cert, EVP_sha1(), md, &mdlen) != 1 || mdlen != 20)
        goto ossl;
    fp_hex(md, 20, ci->sha1_fp);
    bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    if (bn == NULL || (hex = BN_bn2hex(bn)) == NULL)
        goto ossl;
    ci->serial_hex = sf_strdup(hex);
    ci->issuer = name_rfc2253(X509_get_issuer_name(cert));
    ci->subject = name_rfc2253(X509_get_subject_name(cert));
    if (ci->serial_hex == NULL || ci->issuer == NULL || ci->subject == NULL)
        goto ossl;
    if (asn1_time_epoch(X509_get0_notBefore(cert), &ci->not_before) < 0 ||
        asn1_time_epoch(X509_get0_notAfter(cert), &ci->not_after) < 0) {
        sf_error_field(err, CERT_FIELD, "certificate validity dates are not valid");
        goto out;
    }
    pk = X509_get0_pubkey(cert);
    if (pk != NULL) {
        const char *alg = NULL;
        int size = 0;

        if (sf_key_describe(pk, &alg, &size, NULL) == 0) {
            snprintf(ci->key_alg, sizeof(ci->key_alg), "%s", alg);
            ci->key_size = size;
        }
        ci->self_signed =
            X509_NAME_cmp(X509_get_issuer_name(cert), X509_get_subject_name(cert)) == 0 &&
            X509_verify(cert, pk) == 1;
    }
    spkilen = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &spki);
    if (spkilen <= 0 || EVP_Digest(spki, (size_t)spkilen, md, &mdlen, EVP_sha256(), NULL) != 1)
        goto ossl;
    for (size_t i = 0; i < 32; i++)
        snprintf(ci->spki_sha256 + 2 * i, 3, "%02x", md[i]);
    ci->cn = cert_cn(X509_get_subject_name(cert));
    if (ci->cn == NULL) {
        sf_error_field(err, CERT_FIELD, "certificate common name is not valid text");
        goto out;
    }
    if (cert_sans(cert, &ci->sans, &ci->nsans, err) < 0)
        goto out;
    *out = ci;
    ci = NULL;
    rc = 0;
    goto out;
ossl:
    sf_error_set(err, SF_ERR_INTERNAL, 0, "could not read certificate");
out:
    ERR_clear_error();
    OPENSSL_free(spki);
    OPENSSL_free(hex);
    BN_free(bn);
    sf_cert_info_free(ci);
    return rc;
}

int sf_cert_matches_key(X509 *cert, const EVP_PKEY *pkey, sf_error *err)
{
    EVP_PKEY *pub;

    if (cert == NULL || pkey == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_cert_matches_key: NULL argument");
    pub = X509_get0_pubkey(cert);
    if (pub == NULL || EVP_PKEY_eq(pub, pkey) != 1) {
        ERR_clear_error();
        return sf_error_field(err, CERT_FIELD, "certificate does not match the private key");
    }
    return 0;
}

static bool in_set(const char *s, char *const *set, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (set[i] != NULL && strcasecmp(s, set[i]) == 0)
            return true;
    return false;
}

int sf_cert_names_match(const sf_cert_info *info, const char *cn, const char *const *sans,
                        size_t nsans, sf_error *err)
{
    if (info == NULL || (sans == NULL && nsans > 0))
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_cert_names_match: NULL argument");
    if (cn != NULL && strcasecmp(cn, info->cn ? info->cn : "") != 0)
        return sf_error_field(err, "common_name",
                              "certificate common name \"%.200s\" differs from \"%.200s\"",
                              info->cn ? info->cn : "", cn);
    for (size_t i = 0; i < nsans; i++)
        if (sans[i] == NULL || !in_set(sans[i], info->sans, info->nsans))
            return sf_error_field(err, "subject_alt_names",
                                  "certificate lacks subject alternative name \"%.200s\"",
                                  sans[i] ? sans[i] : "");
    for (size_t i = 0; i < info->nsans; i++)
        if (!in_set(info->sans[i], (char *const *)sans, nsans))
            return sf_error_field(err, "subject_alt_names",
                                  "certificate has unexpected subject alternative name \"%.200s\"",
                                  info->sans[i]);
    return 0;
}
