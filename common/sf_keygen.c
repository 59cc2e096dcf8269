/*
 * sf_keygen.c - key generation, CSR building and parsing (see sf_keygen.h).
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "sf_keygen.h"
#include "sf_seal.h"
#include "sf_util.h"

#define KEY_PEM_MAX (64 * 1024)

/* ---- EC without OpenSSL 3.0's encoders ----
 * In OpenSSL 3.0 (Debian 12) every X509_REQ_set_pubkey and every private
 * key PEM goes through OSSL_ENCODER_CTX_new_for_pkey, which searches all
 * providers' encoders per call: 335 us of a 526 us CSR and 145 us per key
 * PEM on this machine, for a 70 us P-256 key. For the named EC curves we
 * generate, the two DER structures are written here from the key's
 * parameters (7 us, ~10 us); tests/unit/test_keygen.c checks them byte for
 * byte against OpenSSL's own encoding. Other keys take OpenSSL's path. */

/* The curve NID of an EC key on a named curve, NID_undef otherwise. */
static int ec_curve_nid(const EVP_PKEY *pkey)
{
    char name[64];
    size_t len = 0;
    int nid;

    if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_EC ||
        EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof(name),
                                       &len) != 1)
        return NID_undef;
    nid = OBJ_sn2nid(name);
    if (nid == NID_undef)
        nid = EC_curve_nist2nid(name);
    return nid == NID_X9_62_prime256v1 || nid == NID_secp384r1 ? nid : NID_undef;
}

/* Append a DER tag + length (content under 64 KiB). */
static size_t der_hdr(unsigned char *p, unsigned char tag, size_t len)
{
    p[0] = tag;
    if (len < 0x80) {
        p[1] = (unsigned char)len;
        return 2;
    }
    if (len < 0x100) {
        p[1] = 0x81;
        p[2] = (unsigned char)len;
        return 3;
    }
    p[1] = 0x82;
    p[2] = (unsigned char)(len >> 8);
    p[3] = (unsigned char)len;
    return 4;
}

static size_t der_hdr_len(size_t len)
{
    return len < 0x80 ? 2 : len < 0x100 ? 3 : 4;
}

/* The SubjectPublicKeyInfo of a named-curve EC key set without encoders.
 * 1 done, 0 not such a key (caller uses X509_REQ_set_pubkey), -1 error. */
static int ec_set_req_pubkey(X509_REQ *req, const EVP_PKEY *pkey)
{
    unsigned char pt[160], *copy;
    size_t len = 0;
    int nid = ec_curve_nid(pkey);

    if (nid == NID_undef)
        return 0;
    if (EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt, sizeof(pt),
                                        &len) != 1 || len == 0)
        return 0;
    if ((copy = OPENSSL_memdup(pt, len)) == NULL)
        return -1;
    if (X509_PUBKEY_set0_param(X509_REQ_get_X509_PUBKEY(req), OBJ_nid2obj(NID_X9_62_id_ecPublicKey),
                               V_ASN1_OBJECT, OBJ_nid2obj(nid), copy, (int)len) != 1) {
        OPENSSL_free(copy);
        return -1;
    }
    return 1;
}

/* PKCS#8 PEM of a named-curve EC key as OpenSSL 3 writes it: PrivateKeyInfo
 * { 0, { id-ecPublicKey, curve }, OCTET STRING ECPrivateKey { 1, d padded to
 * the order's size, [1] public point } } (parameters only in the
 * AlgorithmIdentifier). 1 done, 0 not such a key, -1 out of memory. */
static int ec_key_to_pem(const EVP_PKEY *pkey, char **pem)
{
    unsigned char d[72], pt[160], oid_alg[16], oid_curve[16], der[400], b64[600];
    unsigned char *q;
    BIGNUM *priv = NULL;
    size_t ptlen = 0, dlen, n = 0, inner, bits, alg, out_len;
    int nid = ec_curve_nid(pkey), la, lc, rc = -1;

    if (nid == NID_undef)
        return 0;
    dlen = nid == NID_X9_62_prime256v1 ? 32 : 48;
    q = oid_alg;
    la = i2d_ASN1_OBJECT(OBJ_nid2obj(NID_X9_62_id_ecPublicKey), &q);
    q = oid_curve;
    lc = i2d_ASN1_OBJECT(OBJ_nid2obj(nid), &q);
    if (la <= 0 || lc <= 0 || la > (int)sizeof(oid_alg) || lc > (int)sizeof(oid_curve) ||
        EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt, sizeof(pt),
                                        &ptlen) != 1 ||
        EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_PRIV_KEY, &priv) != 1 ||
        BN_bn2binpad(priv, d, (int)dlen) != (int)dlen) {
        ERR_clear_error();
        rc = 0; /* not what this path can write: OpenSSL's own path decides */
        goto out;
    }
    bits = 1 + ptlen;                                    /* BIT STRING content */
    inner = 3 + 2 + dlen + der_hdr_len(der_hdr_len(bits) + bits) + der_hdr_len(bits) + bits;
    alg = (size_t)la + (size_t)lc;
    /* PrivateKeyInfo */
    n += der_hdr(der + n, 0x30, 3 + der_hdr_len(alg) + alg + der_hdr_len(der_hdr_len(inner) + inner) +
                                    der_hdr_len(inner) + inner);
    memcpy(der + n, "\x02\x01\x00", 3);
    n += 3;
    n += der_hdr(der + n, 0x30, alg);
    memcpy(der + n, oid_alg, (size_t)la);
    n += (size_t)la;
    memcpy(der + n, oid_curve, (size_t)lc);
    n += (size_t)lc;
    n += der_hdr(der + n, 0x04, der_hdr_len(inner) + inner);
    /* ECPrivateKey */
    n += der_hdr(der + n, 0x30, inner);
    memcpy(der + n, "\x02\x01\x01", 3);
    n += 3;
    n += der_hdr(der + n, 0x04, dlen);
    memcpy(der + n, d, dlen);
    n += dlen;
    n += der_hdr(der + n, 0xa1, der_hdr_len(bits) + bits);
    n += der_hdr(der + n, 0x03, bits);
    der[n++] = 0x00;
    memcpy(der + n, pt, ptlen);
    n += ptlen;
    /* PEM: 64 base64 characters (48 bytes) per line; one exact allocation
     * (no realloc leaving copies of the key behind) */
    {
        size_t cap = 28 + (n + 47) / 48 * 65 + 26 + 1, w = 0;
        char *out = malloc(cap);

        if (out == NULL)
            goto out;
        memcpy(out, "-----BEGIN PRIVATE KEY-----\n", 28);
        w = 28;
        for (size_t off = 0; off < n; off += 48) {
            size_t chunk = n - off < 48 ? n - off : 48;

            out_len = (size_t)EVP_EncodeBlock(b64, der + off, (int)chunk);
            memcpy(out + w, b64, out_len);
            w += out_len;
            out[w++] = '\n';
        }
        memcpy(out + w, "-----END PRIVATE KEY-----\n", 26);
        w += 26;
        out[w] = '\0';
        *pem = out;
        rc = 1;
    }
out:
    OPENSSL_cleanse(d, sizeof(d));
    OPENSSL_cleanse(der, sizeof(der));
    OPENSSL_cleanse(b64, sizeof(b64));
    BN_clear_free(priv);
    return rc;
}

int sf_keygen_generate(const char *alg, int size, EVP_PKEY **out, sf_error *err)
{
    EVP_PKEY *pkey = NULL;

    if (alg == NULL || out == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_keygen_generate: NULL argument");
    if (strcasecmp(alg, "RSA") == 0) {
        if (size != 2048 && size != 3072 && size != 4096)
            return sf_error_field(err, "key_size", "RSA key size must be 2048, 3072 or 4096, not %d",
                                  size);
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)size);
    } else if (strcasecmp(alg, "EC") == 0) {
        const char *curve = size == 256 ? "P-256" : size == 384 ? "P-384" : NULL;

        if (curve == NULL)
            return sf_error_field(err, "key_size", "EC key size must be 256 or 384, not %d", size);
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);
    } else {
        return sf_error_field(err, "key_algorithm", "key algorithm must be RSA or EC");
    }
    if (pkey == NULL) {
        ERR_clear_error();
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "could not generate %s-%d key", alg, size);
    }
    *out = pkey;
    return 0;
}

/* Describe a public key; used for keys, CSRs and certificates. */
static int describe(const EVP_PKEY *pkey, const char **alg, int *size)
{
    int id = EVP_PKEY_get_base_id(pkey);

    if (id == EVP_PKEY_RSA) {
        *alg = "RSA";
        *size = EVP_PKEY_get_bits(pkey);
        return 0;
    }
    if (id == EVP_PKEY_EC) {
        char group[64];
        size_t glen = 0;

        if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                           sizeof(group), &glen) != 1) {
            ERR_clear_error();
            return -1;
        }
        *alg = "EC";
        if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0)
            *size = 256;
        else if (strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0)
            *size = 384;
        else
            *size = 0; /* another curve: callers refuse it */
        return 0;
    }
    return -1;
}

int sf_key_describe(const EVP_PKEY *pkey, const char **alg, int *size, sf_error *err)
{
    const char *a = NULL;
    int sz = 0;

    if (pkey == NULL || alg == NULL || size == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_key_describe: NULL argument");
    if (describe(pkey, &a, &sz) < 0)
        return sf_error_field(err, "key", "key is neither RSA nor EC");
    *alg = a;
    *size = sz;
    return 0;
}

static void to_hex_lower(const unsigned char *p, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[p[i] >> 4];
        out[2 * i + 1] = hex[p[i] & 0xf];
    }
    out[2 * n] = '\0';
}

/* DER SubjectPublicKeyInfo of a key; caller frees with OPENSSL_free. */
static int spki_der(const EVP_PKEY *pkey, unsigned char **der, size_t *len)
{
    unsigned char *p = NULL;
    int n = i2d_PUBKEY(pkey, &p);

    if (n <= 0) {
        ERR_clear_error();
        return -1;
    }
    *der = p;
    *len = (size_t)n;
    return 0;
}

int sf_key_spki_sha256(const EVP_PKEY *pkey, char *hex, sf_error *err)
{
    unsigned char *der = NULL, md[32];
    size_t len = 0;
    unsigned int mdlen = 0;
    int rc = -1;

    if (pkey == NULL || hex == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_key_spki_sha256: NULL argument");
    if (spki_der(pkey, &der, &len) < 0)
        return sf_error_field(err, "key", "could not encode public key");
    if (EVP_Digest(der, len, md, &mdlen, EVP_sha256(), NULL) != 1) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "could not hash public key");
        goto out;
    }
    to_hex_lower(md, 32, hex);
    rc = 0;
out:
    OPENSSL_free(der);
    return rc;
}

/* A CN or SAN we are willing to put in a CSR: printable ASCII, no spaces
 * inside SANs, bounded length. */
static bool name_ok(const char *s, bool san)
{
    size_t n = strlen(s);

    if (n == 0 || n > SF_NAME_MAX_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x20 || c > 0x7e || (san && c == ' '))
            return false;
    }
    return true;
}

static BIO *mem_bio_to_string(BIO *bio, char **out, size_t *outlen)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    char *s;

    if (n < 0)
        return NULL;
    s = malloc((size_t)n + 1);
    if (s == NULL)
        return NULL;
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    *out = s;
    if (outlen)
        *outlen = (size_t)n;
    return bio;
}

int sf_csr_build(EVP_PKEY *pkey, const char *cn, const char *const *sans, size_t nsans,
                 char **csr_pem, sf_error *err)
{
    X509_REQ *req = NULL;
    X509_NAME *name = NULL;
    GENERAL_NAMES *gens = NULL;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    X509_EXTENSION *ext = NULL;
    BIO *bio = NULL;
    int rc = -1;

    if (pkey == NULL || csr_pem == NULL || (nsans > 0 && sans == NULL))
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_csr_build: NULL argument");
    if (cn == NULL || !name_ok(cn, false))
        return sf_error_field(err, "common_name",
                              "common name must be 1..%d printable ASCII characters",
                              SF_NAME_MAX_LEN);
    if (nsans > SF_CSR_MAX_SANS)
        return sf_error_field(err, "subject_alt_names", "too many subject alternative names (%zu, limit %d)",
                              nsans, SF_CSR_MAX_SANS);
    for (size_t i = 0; i < nsans; i++)
        if (sans[i] == NULL || !name_ok(sans[i], true))
            return sf_error_field(err, "subject_alt_names",
                                  "subject alternative name %zu is empty, too long or not printable ASCII",
                                  i);

    req = X509_REQ_new();
    name = X509_NAME_new();
    if (req == NULL || name == NULL)
        goto oom;
    if (X509_REQ_set_version(req, X509_REQ_VERSION_1) != 1)
        goto ossl;
    if (X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_ASC, (const unsigned char *)cn,
                                   -1, -1, 0) != 1) {
        ERR_clear_error();
        sf_error_field(err, "common_name", "common name is not acceptable in a certificate subject");
        goto out;
    }
    if (X509_REQ_set_subject_name(req, name) != 1)
        goto ossl;
    switch (ec_set_req_pubkey(req, pkey)) {
    case 1:
        break;
    case 0:
        if (X509_REQ_set_pubkey(req, pkey) != 1)
            goto ossl;
        break;
    default:
        goto oom;
    }
    if (nsans > 0) {
        gens = sk_GENERAL_NAME_new_null();
        if (gens == NULL)
            goto oom;
        for (size_t i = 0; i < nsans; i++) {
            unsigned char ip[16];
            int iplen = 0;
            GENERAL_NAME *gn = GENERAL_NAME_new();

            if (gn == NULL)
                goto oom;
            if (inet_pton(AF_INET, sans[i], ip) == 1)
                iplen = 4;
            else if (inet_pton(AF_INET6, sans[i], ip) == 1)
                iplen = 16;
            if (iplen > 0) {
                ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();

                if (os == NULL || ASN1_OCTET_STRING_set(os, ip, iplen) != 1) {
                    ASN1_OCTET_STRING_free(os);
                    GENERAL_NAME_free(gn);
                    goto oom;
                }
                GENERAL_NAME_set0_value(gn, GEN_IPADD, os);
            } else {
                ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();

                if (ia5 == NULL || ASN1_STRING_set(ia5, sans[i], -1) != 1) {
                    ASN1_IA5STRING_free(ia5);
                    GENERAL_NAME_free(gn);
                    goto oom;
                }
                GENERAL_NAME_set0_value(gn, GEN_DNS, ia5);
            }
            if (sk_GENERAL_NAME_push(gens, gn) <= 0) {
                GENERAL_NAME_free(gn);
                goto oom;
            }
        }
        ext = X509V3_EXT_i2d(NID_subject_alt_name, 0, gens);
        exts = sk_X509_EXTENSION_new_null();
        if (ext == NULL || exts == NULL || sk_X509_EXTENSION_push(exts, ext) <= 0)
            goto oom;
        ext = NULL; /* owned by exts */
        if (X509_REQ_add_extensions(req, exts) != 1)
            goto ossl;
    }
    if (X509_REQ_sign(req, pkey, EVP_sha256()) <= 0)
        goto ossl;
    bio = BIO_new(BIO_s_mem());
    if (bio == NULL)
        goto oom;
    if (PEM_write_bio_X509_REQ(bio, req) != 1)
        goto ossl;
    if (mem_bio_to_string(bio, csr_pem, NULL) == NULL)
        goto oom;
    rc = 0;
    goto out;
oom:
    sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    goto out;
ossl:
    ERR_clear_error();
    sf_error_set(err, SF_ERR_INTERNAL, 0, "could not build certificate request");
out:
    BIO_free(bio);
    X509_EXTENSION_free(ext);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    GENERAL_NAMES_free(gens);
    X509_NAME_free(name);
    X509_REQ_free(req);
    return rc;
}

int sf_key_to_pem(const EVP_PKEY *pkey, char **pem, sf_error *err)
{
    BIO *bio = NULL;
    char *data = NULL;
    long n = 0;
    int rc = -1;

    if (pkey == NULL || pem == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_key_to_pem: NULL argument");
    switch (ec_key_to_pem(pkey, pem)) {
    case 1:
        return 0;
    case 0:
        break;
    default:
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    }
    bio = BIO_new(BIO_s_secmem());
    if (bio == NULL) {
        ERR_clear_error();
        bio = BIO_new(BIO_s_mem());
    }
    if (bio == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    if (PEM_write_bio_PKCS8PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) != 1) {
        ERR_clear_error();
        sf_error_set(err, SF_ERR_INTERNAL, 0, "could not encode private key");
        goto out;
    }
    n = BIO_get_mem_data(bio, &data);
    if (n <= 0) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "could not encode private key");
        goto out;
    }
    *pem = malloc((size_t)n + 1);
    if (*pem == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    memcpy(*pem, data, (size_t)n);
    (*pem)[n] = '\0';
    rc = 0;
out:
    /* Clear the BIO's copy of the key before it is freed. */
    if (data != NULL && n > 0)
        OPENSSL_cleanse(data, (size_t)n);
    BIO_free(bio);
    return rc;
}

/* Refuse any password prompt: keys handed to us must be unencrypted. */
static int no_password_cb(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

int sf_key_from_pem(const char *pem, size_t len, EVP_PKEY **out, sf_error *err)
{
    BIO *bio;
    EVP_PKEY *pkey;
    const char *alg;
    int size;

    if (pem == NULL || out == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_key_from_pem: NULL argument");
    if (len == 0 || len > KEY_PEM_MAX)
        return sf_error_field(err, "key", "private key PEM is empty or larger than %d bytes",
                              KEY_PEM_MAX);
    bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    pkey = PEM_read_bio_PrivateKey(bio, NULL, no_password_cb, NULL);
    BIO_free(bio);
    ERR_clear_error();
    if (pkey == NULL)
        return sf_error_field(err, "key", "could not parse private key PEM");
    if (describe(pkey, &alg, &size) < 0) {
        EVP_PKEY_free(pkey);
        return sf_error_field(err, "key", "private key is neither RSA nor EC");
    }
    *out = pkey;
    return 0;
}

void sf_csr_info_free(sf_csr_info *info)
{
    if (info == NULL)
        return;
    free(info->cn);
    for (size_t i = 0; i < info->nsans; i++)
        free(info->sans[i]);
    free(info->sans);
    OPENSSL_free(info->spki_der);
    free(info);
}

/* Text of a GEN_DNS or GEN_IPADD general name; NULL for other types or
 * unusable values (embedded NUL). *skip is set for other types. */
static char *general_name_text(const GENERAL_NAME *gn, bool *skip)
{
    int type = 0;
    const ASN1_STRING *s = GENERAL_NAME_get0_value(gn, &type);

    *skip = false;
    if (type == GEN_DNS) {
        const unsigned char *d = ASN1_STRING_get0_data(s);
        int n = ASN1_STRING_length(s);
        char *t;

        if (n <= 0 || memchr(d, '\0', (size_t)n) != NULL)
            return NULL;
        t = malloc((size_t)n + 1);
        if (t == NULL)
            return NULL;
        memcpy(t, d, (size_t)n);
        t[n] = '\0';
        return t;
    }
    if (type == GEN_IPADD) {
        char buf[64];
        int n = ASN1_STRING_length(s);
        const unsigned char *d = ASN1_STRING_get0_data(s);

        if ((n == 4 && inet_ntop(AF_INET, d, buf, sizeof(buf)) != NULL) ||
            (n == 16 && inet_ntop(AF_INET6, d, buf, sizeof(buf)) != NULL))
            return sf_strdup(buf);
        return NULL;
    }
    *skip = true;
    return NULL;
}

/* Subject CN as a fresh UTF-8 string ("" when absent); NULL on bad data. */
static char *subject_cn(const X509_NAME *name)
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
        ERR_clear_error();
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

int sf_csr_parse(const char *pem, size_t len, sf_csr_info **info, sf_error *err)
{
    BIO *bio = NULL;
    X509_REQ *req = NULL, *extra = NULL;
    EVP_PKEY *pkey = NULL;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    GENERAL_NAMES *gens = NULL;
    sf_csr_info *ci = NULL;
    const char *alg = NULL;
    int size = 0, rc = -1;
    unsigned char md[32];
    unsigned int mdlen = 0;

    if (pem == NULL || info == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_csr_parse: NULL argument");
    if (len == 0)
        return sf_error_field(err, "csr", "certificate request is empty");
    if (len > SF_CSR_MAX_BYTES)
        return sf_error_field(err, "csr", "certificate request is larger than %d bytes",
                              SF_CSR_MAX_BYTES);
    bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
    if (req == NULL) {
        sf_error_field(err, "csr", "could not parse certificate request PEM");
        goto out;
    }
    extra = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
    if (extra != NULL) {
        sf_error_field(err, "csr", "more than one certificate request");
        goto out;
    }
    pkey = X509_REQ_get_pubkey(req);
    if (pkey == NULL) {
        sf_error_field(err, "csr", "certificate request has no usable public key");
        goto out;
    }
    if (X509_REQ_verify(req, pkey) != 1) {
        sf_error_field(err, "csr", "certificate request signature does not verify");
        goto out;
    }
    if (describe(pkey, &alg, &size) < 0) {
        sf_error_field(err, "csr", "certificate request key is neither RSA nor EC");
        goto out;
    }
    if ((strcmp(alg, "RSA") == 0 && (size < 2048 || size > 8192)) ||
        (strcmp(alg, "EC") == 0 && size != 256 && size != 384)) {
        sf_error_field(err, "csr", "certificate request key %s-%d is not allowed", alg, size);
        goto out;
    }
    ci = calloc(1, sizeof(*ci));
    if (ci == NULL)
        goto oom;
    ci->cn = subject_cn(X509_REQ_get_subject_name(req));
    if (ci->cn == NULL) {
        sf_error_field(err, "csr", "certificate request common name is not valid text");
        goto out;
    }
    snprintf(ci->key_alg, sizeof(ci->key_alg), "%s", alg);
    ci->key_size = size;
    if (spki_der(pkey, &ci->spki_der, &ci->spki_der_len) < 0 ||
        EVP_Digest(ci->spki_der, ci->spki_der_len, md, &mdlen, EVP_sha256(), NULL) != 1) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "could not encode public key");
        goto out;
    }
    to_hex_lower(md, 32, ci->spki_sha256);

    exts = X509_REQ_get_extensions(req);
    if (exts != NULL) {
        int idx = X509v3_get_ext_by_NID(exts, NID_subject_alt_name, -1);

        if (idx >= 0) {
            int count;

            gens = X509V3_EXT_d2i(sk_X509_EXTENSION_value(exts, idx));
            if (gens == NULL) {
                sf_error_field(err, "csr", "certificate request subjectAltName is malformed");
                goto out;
            }
            count = sk_GENERAL_NAME_num(gens);
            if (count > SF_CSR_MAX_SANS) {
                sf_error_field(err, "csr", "certificate request has %d alternative names (limit %d)",
                               count, SF_CSR_MAX_SANS);
                goto out;
            }
            ci->sans = calloc((size_t)count + 1, sizeof(char *));
            if (ci->sans == NULL)
                goto oom;
            for (int i = 0; i < count; i++) {
                bool skip;
                char *t = general_name_text(sk_GENERAL_NAME_value(gens, i), &skip);

                if (skip)
                    continue;
                if (t == NULL) {
                    sf_error_field(err, "csr", "certificate request alternative name %d is not valid",
                                   i);
                    goto out;
                }
                ci->sans[ci->nsans++] = t;
            }
        }
    }
    *info = ci;
    ci = NULL;
    rc = 0;
    goto out;
oom:
    sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
out:
    ERR_clear_error();
    sf_csr_info_free(ci);
    GENERAL_NAMES_free(gens);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    EVP_PKEY_free(pkey);
    X509_REQ_free(extra);
    X509_REQ_free(req);
    BIO_free(bio);
    return rc;
}
