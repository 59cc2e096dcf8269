/*
 * sf_keystore.c - PEM, PKCS#12 and JKS keystores (see sf_keystore.h).
 *
 * JKS layout (OpenJDK sun.security.provider.JavaKeyStore, version 2), all
 * integers big-endian:
 *   u32 0xFEEDFEED, u32 2, u32 entry count,
 *   per private-key entry: u32 1, u16-length alias (modified UTF-8), u64
 *     creation time in ms, u32 length + EncryptedPrivateKeyInfo DER, u32
 *     chain length, per certificate: u16-length "X.509", u32 length + DER;
 *   20-byte SHA-1 over password (UTF-16BE) | "Mighty Aphrodite" | all of the
 *     above.
 * The key is protected by Sun's KeyProtector (OID 1.3.6.1.4.1.42.2.17.1.1):
 *   salt (20 random bytes) | PKCS#8 XOR keystream | SHA-1(password | PKCS#8)
 * where keystream block i = SHA-1(password | previous block), block 0 seeded
 * with the salt. It is weak (that is why JKS is legacy) but it is what
 * keytool reads.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "sf_keystore.h"
#include "sf_seal.h"
#include "sf_util.h"

#define JKS_MAGIC 0xFEEDFEEDu
#define JKS_VERSION 2u
#define JKS_KEY_PROTECTOR_OID "1.3.6.1.4.1.42.2.17.1.1"
#define JKS_SALT_LEN 20
#define SHA1_LEN 20
#define ALIAS_MAX 64
#define OUT_MAX (4 * 1024 * 1024)

int sf_keystore_type_parse(const char *s, sf_keystore_type *out)
{
    if (s == NULL || out == NULL)
        return -1;
    if (strcasecmp(s, "PEM") == 0)
        *out = SF_KEYSTORE_PEM;
    else if (strcasecmp(s, "PKCS12") == 0 || strcasecmp(s, "P12") == 0 ||
             strcasecmp(s, "PFX") == 0)
        *out = SF_KEYSTORE_PKCS12;
    else if (strcasecmp(s, "JKS") == 0)
        *out = SF_KEYSTORE_JKS;
    else
        return -1;
    return 0;
}

const char *sf_keystore_type_name(sf_keystore_type t)
{
    switch (t) {
    case SF_KEYSTORE_PEM: return "PEM";
    case SF_KEYSTORE_PKCS12: return "PKCS12";
    case SF_KEYSTORE_JKS: return "JKS";
    }
    return "?";
}

const char *sf_keystore_file_ext(sf_keystore_type t)
{
    switch (t) {
    case SF_KEYSTORE_PEM: return "pem";
    case SF_KEYSTORE_PKCS12: return "p12";
    case SF_KEYSTORE_JKS: return "jks";
    }
    return "bin";
}

/* Decode UTF-8 into code points; returns the count or -1 when invalid. */
static long utf8_decode(const char *s, uint32_t *cps, size_t max)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = 0;

    while (*p) {
        uint32_t c;
        int extra;

        if (*p < 0x80) {
            c = *p;
            extra = 0;
        } else if ((*p & 0xE0) == 0xC0) {
            c = *p & 0x1F;
            extra = 1;
        } else if ((*p & 0xF0) == 0xE0) {
            c = *p & 0x0F;
            extra = 2;
        } else if ((*p & 0xF8) == 0xF0) {
            c = *p & 0x07;
            extra = 3;
        } else {
            return -1;
        }
        p++;
        for (int i = 0; i < extra; i++, p++) {
            if ((*p & 0xC0) != 0x80)
                return -1;
            c = c << 6 | (*p & 0x3F);
        }
        if ((extra == 1 && c < 0x80) || (extra == 2 && c < 0x800) ||
            (extra == 3 && (c < 0x10000 || c > 0x10FFFF)) || (c >= 0xD800 && c <= 0xDFFF))
            return -1;
        if (n >= max)
            return (long)max + 1;
        if (cps)
            cps[n] = c;
        n++;
    }
    return (long)n;
}

int sf_keystore_check_password(const char *password, sf_error *err)
{
    long n;

    if (password == NULL)
        return sf_error_field(err, "keystore_password", "keystore password is required");
    if (strlen(password) > 4 * SF_KEYSTORE_PASSWORD_MAX)
        return sf_error_field(err, "keystore_password",
                              "keystore password must be %d..%d characters",
                              SF_KEYSTORE_PASSWORD_MIN, SF_KEYSTORE_PASSWORD_MAX);
    n = utf8_decode(password, NULL, SF_KEYSTORE_PASSWORD_MAX);
    if (n < 0)
        return sf_error_field(err, "keystore_password", "keystore password is not valid UTF-8");
    /* Java opens PKCS#12 only with ASCII passwords (see the header). */
    for (const char *p = password; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            return sf_error_field(err, "keystore_password",
                                  "keystore password must be printable ASCII");
    if (n < SF_KEYSTORE_PASSWORD_MIN || n > SF_KEYSTORE_PASSWORD_MAX)
        return sf_error_field(err, "keystore_password",
                              "keystore password must be %d..%d characters",
                              SF_KEYSTORE_PASSWORD_MIN, SF_KEYSTORE_PASSWORD_MAX);
    return 0;
}

static int check_alias(const char *alias, sf_error *err)
{
    size_t n = strlen(alias);

    if (n == 0 || n > ALIAS_MAX)
        return sf_error_field(err, "alias", "alias must be 1..%d characters", ALIAS_MAX);
    for (size_t i = 0; i < n; i++) {
        char c = alias[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return sf_error_field(err, "alias", "alias may hold only letters, digits, '.', '_', '-'");
    }
    return 0;
}

/* Common checks: chain present, key matches the leaf. */
static int check_inputs(const EVP_PKEY *key, const sf_chain *chain, unsigned char **out,
                        size_t *out_len, sf_error *err)
{
    if (key == NULL || chain == NULL || out == NULL || out_len == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "keystore: NULL argument");
    if (sf_chain_count(chain) == 0)
        return sf_error_field(err, "certificate", "keystore needs at least the leaf certificate");
    return sf_cert_matches_key(sf_chain_cert(chain, 0), key, err);
}

/* Copy a (secure) memory BIO's contents out once, NUL-terminated. */
static int bio_to_out(BIO *bio, unsigned char **out, size_t *out_len, sf_error *err)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    unsigned char *buf;

    if (n <= 0)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "keystore: empty output");
    buf = malloc((size_t)n + 1);
    if (buf == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    memcpy(buf, data, (size_t)n);
    buf[n] = '\0';
    OPENSSL_cleanse(data, (size_t)n);
    *out = buf;
    *out_len = (size_t)n;
    return 0;
}

static BIO *secure_bio(void)
{
    BIO *bio = BIO_new(BIO_s_secmem());

    if (bio == NULL) {
        ERR_clear_error();
        bio = BIO_new(BIO_s_mem());
    }
    return bio;
}

int sf_keystore_pem(const EVP_PKEY *key, const sf_chain *chain, const char *password,
                    unsigned char **out, size_t *out_len, sf_error *err)
{
    BIO *bio = NULL;
    int rc = -1;

    if (check_inputs(key, chain, out, out_len, err) < 0)
        return -1;
    if (password != NULL && sf_keystore_check_password(password, err) < 0)
        return -1;
    bio = secure_bio();
    if (bio == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    if (password != NULL) {
        if (PEM_write_bio_PKCS8PrivateKey(bio, key, EVP_aes_256_cbc(), password,
                                          (int)strlen(password), NULL, NULL) != 1)
            goto ossl;
    } else if (PEM_write_bio_PKCS8PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1) {
        goto ossl;
    }
    for (size_t i = 0; i < sf_chain_count(chain); i++)
        if (PEM_write_bio_X509(bio, sf_chain_cert(chain, i)) != 1)
            goto ossl;
    rc = bio_to_out(bio, out, out_len, err);
    goto out;
ossl:
    ERR_clear_error();
    sf_error_set(err, SF_ERR_INTERNAL, 0, "could not write PEM keystore");
out:
    BIO_free(bio);
    return rc;
}

int sf_keystore_pkcs12(const EVP_PKEY *key, const sf_chain *chain, const char *password,
                       const char *alias, unsigned char **out, size_t *out_len, sf_error *err)
{
    STACK_OF(X509) *ca = NULL;
    PKCS12 *p12 = NULL;
    unsigned char *der = NULL;
    int len, rc = -1;

    if (check_inputs(key, chain, out, out_len, err) < 0)
        return -1;
    if (sf_keystore_check_password(password, err) < 0)
        return -1;
    if (alias == NULL)
        alias = SF_KEYSTORE_DEFAULT_ALIAS;
    if (check_alias(alias, err) < 0)
        return -1;
    ca = sk_X509_new_null();
    if (ca == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    for (size_t i = 1; i < sf_chain_count(chain); i++)
        if (sk_X509_push(ca, sf_chain_cert(chain, i)) <= 0)
            goto ossl;
    /* PKCS12_create does not modify the key; its prototype predates const. */
    p12 = PKCS12_create(password, alias, (EVP_PKEY *)key, sf_chain_cert(chain, 0), ca,
                        NID_aes_256_cbc, NID_aes_256_cbc, SF_KEYSTORE_PBE_ITER, -1, 0);
    if (p12 == NULL)
        goto ossl;
    /* Set the MAC ourselves so the digest is SHA-256 whatever the defaults. */
    if (PKCS12_set_mac(p12, password, -1, NULL, 0, SF_KEYSTORE_PBE_ITER, EVP_sha256()) != 1)
        goto ossl;
    len = i2d_PKCS12(p12, &der);
    if (len <= 0)
        goto ossl;
    *out = malloc((size_t)len);
    if (*out == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    memcpy(*out, der, (size_t)len);
    *out_len = (size_t)len;
    rc = 0;
    goto out;
ossl:
    ERR_clear_error();
    sf_error_set(err, SF_ERR_INTERNAL, 0, "could not build PKCS#12 keystore");
out:
    OPENSSL_free(der);
    PKCS12_free(p12);
    sk_X509_free(ca); /* the certificates belong to the chain */
    return rc;
}

/* Password as Java chars, big-endian (what JKS hashes). */
static int password_utf16be(const char *password, unsigned char **out, size_t *out_len,
                            sf_error *err)
{
    uint32_t cps[SF_KEYSTORE_PASSWORD_MAX];
    long n = utf8_decode(password, cps, SF_KEYSTORE_PASSWORD_MAX);
    unsigned char *b;
    size_t o = 0;

    if (n < 0 || n > SF_KEYSTORE_PASSWORD_MAX)
        return sf_error_field(err, "keystore_password", "keystore password is not valid");
    b = malloc((size_t)n * 4 + 1);
    if (b == NULL) {
        OPENSSL_cleanse(cps, sizeof(cps));
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    }
    for (long i = 0; i < n; i++) {
        uint32_t c = cps[i];

        if (c >= 0x10000) {
            uint32_t v = c - 0x10000;
            uint32_t hi = 0xD800 | (v >> 10), lo = 0xDC00 | (v & 0x3FF);

            b[o++] = (unsigned char)(hi >> 8);
            b[o++] = (unsigned char)hi;
            b[o++] = (unsigned char)(lo >> 8);
            b[o++] = (unsigned char)lo;
        } else {
            b[o++] = (unsigned char)(c >> 8);
            b[o++] = (unsigned char)c;
        }
    }
    OPENSSL_cleanse(cps, sizeof(cps));
    *out = b;
    *out_len = o;
    return 0;
}

static int sha1_parts(const unsigned char *a, size_t alen, const unsigned char *b, size_t blen,
                      unsigned char md[SHA1_LEN])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, a, alen) == 1 && EVP_DigestUpdate(ctx, b, blen) == 1 &&
             EVP_DigestFinal_ex(ctx, md, NULL) == 1;

    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -1;
}

/* XOR data with Sun's SHA-1 keystream (protect and recover are the same). */
static int jks_keystream_xor(const unsigned char *pw, size_t pwlen,
                             const unsigned char salt[JKS_SALT_LEN], const unsigned char *in,
                             size_t len, unsigned char *outbuf)
{
    unsigned char block[SHA1_LEN];
    size_t off = 0;

    memcpy(block, salt, SHA1_LEN);
    while (off < len) {
        size_t take;

        if (sha1_parts(pw, pwlen, block, SHA1_LEN, block) < 0)
            return -1;
        take = len - off < SHA1_LEN ? len - off : SHA1_LEN;
        for (size_t i = 0; i < take; i++)
            outbuf[off + i] = in[off + i] ^ block[i];
        off += take;
    }
    OPENSSL_cleanse(block, sizeof(block));
    return 0;
}

static int put_u16(sf_buf *b, uint32_t v)
{
    unsigned char x[2] = {(unsigned char)(v >> 8), (unsigned char)v};

    return sf_buf_append(b, x, 2);
}

static int put_u32(sf_buf *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};

    return sf_buf_append(b, x, 4);
}

static int put_u64(sf_buf *b, uint64_t v)
{
    return put_u32(b, (uint32_t)(v >> 32)) < 0 ? -1 : put_u32(b, (uint32_t)v);
}

static int put_utf(sf_buf *b, const char *s)
{
    size_t n = strlen(s); /* ASCII only (aliases are checked), so UTF-8 == modified UTF-8 */

    return put_u16(b, (uint32_t)n) < 0 ? -1 : sf_buf_append(b, s, n);
}

/* Protect PKCS#8 DER with Sun's key protector; *epki is
 * EncryptedPrivateKeyInfo DER (OPENSSL_free). */
static int jks_protect(const unsigned char *pw, size_t pwlen, const unsigned char *p8,
                       size_t p8len, unsigned char **epki, int *epki_len)
{
    size_t blob_len = JKS_SALT_LEN + p8len + SHA1_LEN;
    unsigned char *blob = malloc(blob_len);
    X509_SIG *sig = NULL;
    X509_ALGOR *alg = NULL;
    ASN1_OCTET_STRING *data = NULL;
    ASN1_OBJECT *oid = NULL;
    int rc = -1;

    if (blob == NULL)
        return -1;
    if (RAND_bytes(blob, JKS_SALT_LEN) != 1)
        goto out;
    if (jks_keystream_xor(pw, pwlen, blob, p8, p8len, blob + JKS_SALT_LEN) < 0)
        goto out;
    if (sha1_parts(pw, pwlen, p8, p8len, blob + JKS_SALT_LEN + p8len) < 0)
        goto out;
    sig = X509_SIG_new();
    oid = OBJ_txt2obj(JKS_KEY_PROTECTOR_OID, 1);
    if (sig == NULL || oid == NULL)
        goto out;
    X509_SIG_getm(sig, &alg, &data);
    /* AlgorithmId with explicit NULL parameters, as Java writes it. */
    if (X509_ALGOR_set0(alg, oid, V_ASN1_NULL, NULL) != 1)
        goto out;
    oid = NULL;
    if (ASN1_OCTET_STRING_set(data, blob, (int)blob_len) != 1)
        goto out;
    *epki = NULL;
    *epki_len = i2d_X509_SIG(sig, epki);
    if (*epki_len <= 0)
        goto out;
    rc = 0;
out:
    ERR_clear_error();
    ASN1_OBJECT_free(oid);
    X509_SIG_free(sig);
    OPENSSL_cleanse(blob, blob_len);
    free(blob);
    return rc;
}

int sf_keystore_jks(const EVP_PKEY *key, const sf_chain *chain, const char *password,
                    const char *alias, unsigned char **out, size_t *out_len, sf_error *err)
{
    char lalias[ALIAS_MAX + 1];
    unsigned char *pw = NULL, *p8 = NULL, *epki = NULL, md[SHA1_LEN];
    size_t pwlen = 0;
    int p8len = 0, epki_len = 0, rc = -1;
    PKCS8_PRIV_KEY_INFO *p8inf = NULL;
    EVP_MD_CTX *ctx = NULL;
    sf_buf b;
    static const char whitener[] = "Mighty Aphrodite";

    sf_buf_init(&b, OUT_MAX);
    if (check_inputs(key, chain, out, out_len, err) < 0)
        return -1;
    if (sf_keystore_check_password(password, err) < 0)
        return -1;
    if (alias == NULL)
        alias = SF_KEYSTORE_DEFAULT_ALIAS;
    if (check_alias(alias, err) < 0)
        return -1;
    /* JKS aliases are case-insensitive; Java stores them lower-cased. */
    for (size_t i = 0; i <= strlen(alias); i++)
        lalias[i] = (alias[i] >= 'A' && alias[i] <= 'Z') ? (char)(alias[i] + 32) : alias[i];
    if (password_utf16be(password, &pw, &pwlen, err) < 0)
        return -1;
    p8inf = EVP_PKEY2PKCS8(key);
    if (p8inf == NULL || (p8len = i2d_PKCS8_PRIV_KEY_INFO(p8inf, &p8)) <= 0)
        goto ossl;
    if (jks_protect(pw, pwlen, p8, (size_t)p8len, &epki, &epki_len) < 0)
        goto ossl;
    if (put_u32(&b, JKS_MAGIC) < 0 || put_u32(&b, JKS_VERSION) < 0 || put_u32(&b, 1) < 0 ||
        put_u32(&b, 1) < 0 || put_utf(&b, lalias) < 0 ||
        put_u64(&b, (uint64_t)sf_now_wall_ms()) < 0 || put_u32(&b, (uint32_t)epki_len) < 0 ||
        sf_buf_append(&b, epki, (size_t)epki_len) < 0 ||
        put_u32(&b, (uint32_t)sf_chain_count(chain)) < 0)
        goto toobig;
    for (size_t i = 0; i < sf_chain_count(chain); i++) {
        unsigned char *der = NULL;
        int dlen = i2d_X509(sf_chain_cert(chain, i), &der);

        if (dlen <= 0)
            goto ossl;
        if (put_utf(&b, "X.509") < 0 || put_u32(&b, (uint32_t)dlen) < 0 ||
            sf_buf_append(&b, der, (size_t)dlen) < 0) {
            OPENSSL_free(der);
            goto toobig;
        }
        OPENSSL_free(der);
    }
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, pw, pwlen) != 1 ||
        EVP_DigestUpdate(ctx, whitener, sizeof(whitener) - 1) != 1 ||
        EVP_DigestUpdate(ctx, b.data, b.len) != 1 || EVP_DigestFinal_ex(ctx, md, NULL) != 1)
        goto ossl;
    if (sf_buf_append(&b, md, SHA1_LEN) < 0)
        goto toobig;
    *out = (unsigned char *)sf_buf_detach(&b, out_len);
    rc = 0;
    goto out;
toobig:
    sf_error_set(err, SF_ERR_INTERNAL, 0, "JKS keystore too large or out of memory");
    goto out;
ossl:
    sf_error_set(err, SF_ERR_INTERNAL, 0, "could not build JKS keystore");
out:
    ERR_clear_error();
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(epki);
    if (p8 != NULL)
        OPENSSL_clear_free(p8, (size_t)p8len);
    PKCS8_PRIV_KEY_INFO_free(p8inf);
    sf_secret_free(pw, pwlen);
    sf_buf_release(&b);
    return rc;
}

int sf_keystore_build(sf_keystore_type type, const EVP_PKEY *key, const sf_chain *chain,
                      const char *password, const char *alias, unsigned char **out,
                      size_t *out_len, sf_error *err)
{
    switch (type) {
    case SF_KEYSTORE_PEM: return sf_keystore_pem(key, chain, password, out, out_len, err);
    case SF_KEYSTORE_PKCS12:
        return sf_keystore_pkcs12(key, chain, password, alias, out, out_len, err);
    case SF_KEYSTORE_JKS: return sf_keystore_jks(key, chain, password, alias, out, out_len, err);
    }
    return sf_error_field(err, "keystore_type", "unknown keystore type");
}

/* Chain from a leaf and the rest; ordered when the set orders. */
static int make_chain(X509 *leaf, STACK_OF(X509) *rest, sf_chain **out, sf_error *err)
{
    X509 *certs[SF_CHAIN_MAX_CERTS];
    size_t n = 0;
    sf_chain *c = NULL;

    if (leaf != NULL)
        certs[n++] = leaf;
    for (int i = 0; rest != NULL && i < sk_X509_num(rest); i++) {
        if (n >= SF_CHAIN_MAX_CERTS)
            return sf_error_field(err, "keystore", "keystore holds more than %d certificates",
                                  SF_CHAIN_MAX_CERTS);
        certs[n++] = sk_X509_value(rest, i);
    }
    if (sf_chain_from_certs(certs, n, &c, err) < 0)
        return -1;
    (void)sf_chain_order(c, NULL); /* best effort: keep file order otherwise */
    *out = c;
    return 0;
}

int sf_keystore_parse_pkcs12(const void *der, size_t len, const char *password, EVP_PKEY **key,
                             sf_chain **chain, sf_error *err)
{
    const unsigned char *p = der;
    PKCS12 *p12 = NULL;
    EVP_PKEY *pk = NULL;
    X509 *leaf = NULL;
    STACK_OF(X509) *ca = NULL;
    sf_chain *c = NULL;
    int rc = -1;

    if (der == NULL || password == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_keystore_parse_pkcs12: NULL argument");
    if (len == 0 || len > SF_KEYSTORE_MAX_BYTES)
        return sf_error_field(err, "keystore", "PKCS#12 data is empty or larger than %d bytes",
                              SF_KEYSTORE_MAX_BYTES);
    p12 = d2i_PKCS12(NULL, &p, (long)len);
    if (p12 == NULL || p != (const unsigned char *)der + len) {
        sf_error_field(err, "keystore", "could not parse PKCS#12 data");
        goto out;
    }
    if (!PKCS12_mac_present(p12) || PKCS12_verify_mac(p12, password, -1) != 1) {
        sf_error_set(err, SF_ERR_AUTH, 0, "PKCS#12 password is wrong or the MAC is missing");
        goto out;
    }
    if (PKCS12_parse(p12, password, &pk, &leaf, &ca) != 1) {
        sf_error_field(err, "keystore", "could not decrypt PKCS#12 contents");
        goto out;
    }
    if (pk == NULL || leaf == NULL) {
        sf_error_field(err, "keystore", "PKCS#12 holds no private key with its certificate");
        goto out;
    }
    if (chain != NULL && make_chain(leaf, ca, &c, err) < 0)
        goto out;
    if (key != NULL) {
        *key = pk;
        pk = NULL;
    }
    if (chain != NULL) {
        *chain = c;
        c = NULL;
    }
    rc = 0;
out:
    ERR_clear_error();
    sf_chain_free(c);
    EVP_PKEY_free(pk);
    X509_free(leaf);
    sk_X509_pop_free(ca, X509_free);
    PKCS12_free(p12);
    return rc;
}

/* Bounds-checked big-endian reader over the JKS bytes. */
typedef struct rd {
    const unsigned char *p;
    size_t len, off;
} rd;

static int rd_bytes(rd *r, size_t n, const unsigned char **out)
{
    if (n > r->len - r->off)
        return -1;
    *out = r->p + r->off;
    r->off += n;
    return 0;
}

static int rd_u32(rd *r, uint32_t *v)
{
    const unsigned char *b;

    if (rd_bytes(r, 4, &b) < 0)
        return -1;
    *v = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    return 0;
}

static int rd_u16(rd *r, uint32_t *v)
{
    const unsigned char *b;

    if (rd_bytes(r, 2, &b) < 0)
        return -1;
    *v = (uint32_t)b[0] << 8 | b[1];
    return 0;
}

static int rd_utf(rd *r, const unsigned char **s, uint32_t *n)
{
    return rd_u16(r, n) < 0 ? -1 : rd_bytes(r, *n, s);
}

/* Recover PKCS#8 DER from a Sun-protected EncryptedPrivateKeyInfo. */
static int jks_recover(const unsigned char *pw, size_t pwlen, const unsigned char *epki,
                       size_t epki_len, EVP_PKEY **out, sf_error *err)
{
    const unsigned char *p = epki;
    X509_SIG *sig = d2i_X509_SIG(NULL, &p, (long)epki_len);
    const X509_ALGOR *alg = NULL;
    const ASN1_OCTET_STRING *data = NULL;
    const ASN1_OBJECT *oid = NULL;
    char oidtxt[64];
    unsigned char *plain = NULL, md[SHA1_LEN];
    const unsigned char *blob, *pp;
    size_t blen, plen = 0;
    PKCS8_PRIV_KEY_INFO *p8inf = NULL;
    EVP_PKEY *pk = NULL;
    int rc = -1;

    if (sig == NULL) {
        sf_error_field(err, "keystore", "JKS key entry is malformed");
        goto out;
    }
    X509_SIG_get0(sig, &alg, &data);
    X509_ALGOR_get0(&oid, NULL, NULL, alg);
    if (OBJ_obj2txt(oidtxt, sizeof(oidtxt), oid, 1) <= 0 ||
        strcmp(oidtxt, JKS_KEY_PROTECTOR_OID) != 0) {
        sf_error_field(err, "keystore", "JKS key entry uses an unsupported protection");
        goto out;
    }
    blob = ASN1_STRING_get0_data(data);
    blen = (size_t)ASN1_STRING_length(data);
    if (blen <= JKS_SALT_LEN + SHA1_LEN) {
        sf_error_field(err, "keystore", "JKS key entry is too short");
        goto out;
    }
    plen = blen - JKS_SALT_LEN - SHA1_LEN;
    plain = malloc(plen);
    if (plain == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    if (jks_keystream_xor(pw, pwlen, blob, blob + JKS_SALT_LEN, plen, plain) < 0 ||
        sha1_parts(pw, pwlen, plain, plen, md) < 0) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "could not recover JKS key");
        goto out;
    }
    if (CRYPTO_memcmp(md, blob + JKS_SALT_LEN + plen, SHA1_LEN) != 0) {
        sf_error_set(err, SF_ERR_AUTH, 0, "JKS key password is wrong");
        goto out;
    }
    pp = plain;
    p8inf = d2i_PKCS8_PRIV_KEY_INFO(NULL, &pp, (long)plen);
    if (p8inf == NULL || (pk = EVP_PKCS82PKEY(p8inf)) == NULL) {
        sf_error_field(err, "keystore", "JKS private key is malformed");
        goto out;
    }
    *out = pk;
    rc = 0;
out:
    ERR_clear_error();
    PKCS8_PRIV_KEY_INFO_free(p8inf);
    if (plain != NULL)
        sf_secret_free(plain, plen);
    X509_SIG_free(sig);
    return rc;
}

int sf_keystore_parse_jks(const void *data, size_t len, const char *password, EVP_PKEY **key,
                          sf_chain **chain, sf_error *err)
{
    rd r = {data, len, 0};
    uint32_t magic, version, count, tag, n, ncerts;
    const unsigned char *s, *epki = NULL;
    uint32_t epki_len = 0;
    unsigned char *pw = NULL, md[SHA1_LEN];
    size_t pwlen = 0;
    EVP_MD_CTX *ctx = NULL;
    STACK_OF(X509) *certs = NULL;
    EVP_PKEY *pk = NULL;
    sf_chain *c = NULL;
    bool found = false;
    int rc = -1;
    static const char whitener[] = "Mighty Aphrodite";

    if (data == NULL || password == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_keystore_parse_jks: NULL argument");
    if (len < 12 + SHA1_LEN || len > SF_KEYSTORE_MAX_BYTES)
        return sf_error_field(err, "keystore", "JKS data is too short or larger than %d bytes",
                              SF_KEYSTORE_MAX_BYTES);
    if (sf_keystore_check_password(password, err) < 0)
        return -1;
    if (password_utf16be(password, &pw, &pwlen, err) < 0)
        return -1;
    /* Integrity first: a wrong password is reported as such. */
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, pw, pwlen) != 1 ||
        EVP_DigestUpdate(ctx, whitener, sizeof(whitener) - 1) != 1 ||
        EVP_DigestUpdate(ctx, data, len - SHA1_LEN) != 1 ||
        EVP_DigestFinal_ex(ctx, md, NULL) != 1) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "could not hash JKS data");
        goto out;
    }
    if (CRYPTO_memcmp(md, (const unsigned char *)data + len - SHA1_LEN, SHA1_LEN) != 0) {
        sf_error_set(err, SF_ERR_AUTH, 0, "JKS password is wrong or the keystore was modified");
        goto out;
    }
    r.len = len - SHA1_LEN;
    if (rd_u32(&r, &magic) < 0 || magic != JKS_MAGIC || rd_u32(&r, &version) < 0 ||
        (version != 1 && version != 2) || rd_u32(&r, &count) < 0 || count > 64)
        goto bad;
    certs = sk_X509_new_null();
    if (certs == NULL)
        goto bad;
    for (uint32_t e = 0; e < count; e++) {
        if (rd_u32(&r, &tag) < 0 || rd_utf(&r, &s, &n) < 0 || rd_bytes(&r, 8, &s) < 0)
            goto bad;
        if (tag == 1) {
            const unsigned char *ek;
            uint32_t eklen;

            if (rd_u32(&r, &eklen) < 0 || rd_bytes(&r, eklen, &ek) < 0 ||
                rd_u32(&r, &ncerts) < 0 || ncerts > SF_CHAIN_MAX_CERTS)
                goto bad;
            for (uint32_t i = 0; i < ncerts; i++) {
                const unsigned char *der, *p;
                uint32_t dlen;
                X509 *x;

                if (version == 2 && rd_utf(&r, &s, &n) < 0)
                    goto bad;
                if (rd_u32(&r, &dlen) < 0 || rd_bytes(&r, dlen, &der) < 0)
                    goto bad;
                if (found)
                    continue; /* only the first key entry is returned */
                p = der;
                x = d2i_X509(NULL, &p, (long)dlen);
                if (x == NULL || sk_X509_push(certs, x) <= 0) {
                    X509_free(x);
                    goto bad;
                }
            }
            if (!found) {
                epki = ek;
                epki_len = eklen;
                found = true;
            }
        } else if (tag == 2) {
            const unsigned char *der;
            uint32_t dlen;

            if ((version == 2 && rd_utf(&r, &s, &n) < 0) || rd_u32(&r, &dlen) < 0 ||
                rd_bytes(&r, dlen, &der) < 0)
                goto bad;
        } else {
            goto bad;
        }
    }
    if (r.off != r.len || !found || sk_X509_num(certs) == 0) {
        sf_error_field(err, "keystore", "JKS keystore holds no private key entry");
        goto out;
    }
    if (jks_recover(pw, pwlen, epki, epki_len, &pk, err) < 0)
        goto out;
    if (chain != NULL) {
        X509 *leaf = sk_X509_shift(certs);

        rc = make_chain(leaf, certs, &c, err);
        X509_free(leaf);
        if (rc < 0)
            goto out;
        rc = -1;
    }
    if (key != NULL) {
        *key = pk;
        pk = NULL;
    }
    if (chain != NULL) {
        *chain = c;
        c = NULL;
    }
    rc = 0;
    goto out;
bad:
    sf_error_field(err, "keystore", "JKS data is malformed");
out:
    ERR_clear_error();
    sf_chain_free(c);
    EVP_PKEY_free(pk);
    sk_X509_pop_free(certs, X509_free);
    EVP_MD_CTX_free(ctx);
    sf_secret_free(pw, pwlen);
    return rc;
}
