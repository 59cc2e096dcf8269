/* scm-sim: the issuing CA (root -> intermediate), CSR parsing, leaf issuance,
 * collect formats and the self-signed HTTPS certificate. OpenSSL 3.0. */
#include "sim.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static X509 *g_root, *g_int;
static EVP_PKEY *g_root_key, *g_int_key;
static char *g_root_pem, *g_int_pem;
static char g_int_name[256];

static pthread_mutex_t g_keys_mu = PTHREAD_MUTEX_INITIALIZER;
static struct { char type[16]; EVP_PKEY *key; } g_keys[8];
static int g_nkeys;

const char *ca_root_pem(void) { return g_root_pem; }
const char *ca_intermediate_pem(void) { return g_int_pem; }
const char *ca_intermediate_name(void) { return g_int_name; }

static char *bio_to_str(BIO *b, size_t *len_out)
{
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s)
        return NULL;
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    if (len_out)
        *len_out = (size_t)n;
    return s;
}

static char *x509_to_pem(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *s = NULL;
    if (b && PEM_write_bio_X509(b, x) == 1)
        s = bio_to_str(b, NULL);
    BIO_free(b);
    return s;
}

static char *name_to_str(const X509_NAME *n)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *s = NULL;
    if (b && X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0)
        s = bio_to_str(b, NULL);
    BIO_free(b);
    return s;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ex)
        return -1;
    int ok = X509_add_ext(cert, ex, -1);
    X509_EXTENSION_free(ex);
    return ok == 1 ? 0 : -1;
}

static int hex_to_serial(const char *colon_hex, ASN1_INTEGER **out)
{
    char buf[128];
    size_t j = 0;
    for (const char *p = colon_hex; *p && j + 1 < sizeof buf; p++)
        if (*p != ':')
            buf[j++] = *p;
    buf[j] = '\0';
    BIGNUM *bn = NULL;
    if (!BN_hex2bn(&bn, buf))
        return -1;
    *out = BN_to_ASN1_INTEGER(bn, NULL);
    BN_free(bn);
    return *out ? 0 : -1;
}

static char *serial_to_colon(const ASN1_INTEGER *ai)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(ai, NULL);
    if (!bn)
        return NULL;
    char *hex = BN_bn2hex(bn);
    BN_free(bn);
    if (!hex)
        return NULL;
    size_t n = strlen(hex);
    /* pad to an even number of digits, then pairs joined by ':' */
    size_t digits = n + (n % 2);
    char *out = malloc(digits / 2 * 3 + 1);
    if (out) {
        size_t o = 0, k = 0;
        for (size_t i = 0; i < digits; i++) {
            char ch = (n % 2 && i == 0) ? '0' : hex[k++];
            out[o++] = ch;
            if (i % 2 == 1 && i + 1 < digits)
                out[o++] = ':';
        }
        out[o] = '\0';
    }
    OPENSSL_free(hex);
    return out;
}

char *ca_random_serial(void)
{
    unsigned char r[16];
    if (RAND_bytes(r, sizeof r) != 1)
        return NULL;
    r[0] &= 0x7f;
    r[0] |= 0x10;   /* positive, always 16 significant bytes */
    char *out = malloc(16 * 3);
    if (!out)
        return NULL;
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        o += (size_t)snprintf(out + o, 4, i ? ":%02X" : "%02X", r[i]);
    }
    return out;
}

/* Build a certificate signed by issuer_key; issuer NULL => self-signed. */
static X509 *make_cert(EVP_PKEY *pub, X509_NAME *subj, X509 *issuer, EVP_PKEY *issuer_key,
                       ASN1_INTEGER *serial, int64_t nb, int64_t na, bool is_ca,
                       const char *pathlen, const char *san, bool ec_leaf)
{
    X509 *x = X509_new();
    if (!x)
        return NULL;
    bool ok = X509_set_version(x, 2) == 1;
    ok = ok && X509_set_serialNumber(x, serial) == 1;
    ok = ok && X509_set_subject_name(x, subj) == 1;
    ok = ok && X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : subj) == 1;
    ok = ok && ASN1_TIME_set(X509_getm_notBefore(x), (time_t)nb) != NULL;
    ok = ok && ASN1_TIME_set(X509_getm_notAfter(x), (time_t)na) != NULL;
    ok = ok && X509_set_pubkey(x, pub) == 1;
    X509 *iss = issuer ? issuer : x;
    if (ok && is_ca) {
        char bc[64];
        snprintf(bc, sizeof bc, "critical,CA:TRUE%s%s", pathlen ? ",pathlen:" : "", pathlen ? pathlen : "");
        ok = add_ext(x, iss, NID_basic_constraints, bc) == 0 &&
             add_ext(x, iss, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature") == 0;
    } else if (ok) {
        ok = add_ext(x, iss, NID_basic_constraints, "critical,CA:FALSE") == 0 &&
             add_ext(x, iss, NID_key_usage, ec_leaf ? "critical,digitalSignature"
                                                    : "critical,digitalSignature,keyEncipherment") == 0 &&
             add_ext(x, iss, NID_ext_key_usage, "serverAuth,clientAuth") == 0;
        if (ok && san && *san)
            ok = add_ext(x, iss, NID_subject_alt_name, san) == 0;
    }
    ok = ok && add_ext(x, iss, NID_subject_key_identifier, "hash") == 0;
    if (ok && issuer)
        ok = add_ext(x, iss, NID_authority_key_identifier, "keyid:always") == 0;
    ok = ok && X509_sign(x, issuer_key, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static X509_NAME *mk_name(const char *o, const char *cn)
{
    X509_NAME *n = X509_NAME_new();
    if (!n)
        return NULL;
    if (o && *o &&
        X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)o, -1, -1, 0) != 1)
        goto fail;
    if (X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) != 1)
        goto fail;
    return n;
fail:
    X509_NAME_free(n);
    return NULL;
}

static int write_file(const char *dir, const char *name, const char *data, mode_t mode)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    chmod(path, mode);
    size_t n = strlen(data);
    int rc = fwrite(data, 1, n, f) == n ? 0 : -1;
    if (fclose(f) != 0)
        rc = -1;
    return rc;
}

static char *key_to_pem(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *s = NULL;
    if (b && PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) == 1)
        s = bio_to_str(b, NULL);
    BIO_free(b);
    return s;
}

static X509 *load_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    return x;
}

static EVP_PKEY *load_key(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    return k;
}

static int ca_generate(void)
{
    int rc = -1;
    ASN1_INTEGER *s1 = NULL, *s2 = NULL;
    X509_NAME *rn = NULL, *in = NULL;
    char *sr = ca_random_serial(), *si = ca_random_serial();
    int64_t now = (int64_t)time(NULL);
    g_root_key = EVP_RSA_gen(2048);
    g_int_key = EVP_RSA_gen(2048);
    if (!g_root_key || !g_int_key || !sr || !si || hex_to_serial(sr, &s1) || hex_to_serial(si, &s2))
        goto out;
    rn = mk_name("scm-sim", "SCM Simulator Root CA");
    in = mk_name("scm-sim", "SCM Simulator RSA Organization Validation Secure Server CA");
    if (!rn || !in)
        goto out;
    g_root = make_cert(g_root_key, rn, NULL, g_root_key, s1, now - 86400 * 3650, now + 86400 * 3650 * 2,
                       true, NULL, NULL, false);
    if (!g_root)
        goto out;
    g_int = make_cert(g_int_key, in, g_root, g_root_key, s2, now - 86400 * 3650, now + 86400 * 3650 * 2,
                      true, "0", NULL, false);
    if (!g_int)
        goto out;
    rc = 0;
out:
    free(sr);
    free(si);
    ASN1_INTEGER_free(s1);
    ASN1_INTEGER_free(s2);
    X509_NAME_free(rn);
    X509_NAME_free(in);
    return rc;
}

int ca_init(const char *dir, char *err, size_t errlen)
{
    char p[4][1024];
    if (dir) {
        snprintf(p[0], sizeof p[0], "%s/root.pem", dir);
        snprintf(p[1], sizeof p[1], "%s/root.key", dir);
        snprintf(p[2], sizeof p[2], "%s/intermediate.pem", dir);
        snprintf(p[3], sizeof p[3], "%s/intermediate.key", dir);
        g_root = load_cert(p[0]);
        g_root_key = load_key(p[1]);
        g_int = load_cert(p[2]);
        g_int_key = load_key(p[3]);
    }
    if (!g_root || !g_root_key || !g_int || !g_int_key) {
        X509_free(g_root);
        X509_free(g_int);
        EVP_PKEY_free(g_root_key);
        EVP_PKEY_free(g_int_key);
        g_root = g_int = NULL;
        g_root_key = g_int_key = NULL;
        if (ca_generate() != 0) {
            snprintf(err, errlen, "could not generate the issuing CA");
            return -1;
        }
        if (dir) {
            mkdir(dir, 0700);
            char *a = x509_to_pem(g_root), *b = key_to_pem(g_root_key);
            char *c = x509_to_pem(g_int), *d = key_to_pem(g_int_key);
            int w = (a && b && c && d) ? 0 : -1;
            if (!w)
                w = write_file(dir, "root.pem", a, 0644) | write_file(dir, "root.key", b, 0600) |
                    write_file(dir, "intermediate.pem", c, 0644) |
                    write_file(dir, "intermediate.key", d, 0600);
            free(a);
            free(b);
            free(c);
            free(d);
            if (w) {
                snprintf(err, errlen, "could not save the CA into \"%s\": %s", dir, strerror(errno));
                return -1;
            }
        }
    }
    g_root_pem = x509_to_pem(g_root);
    g_int_pem = x509_to_pem(g_int);
    char *n = name_to_str(X509_get_subject_name(g_int));
    if (!g_root_pem || !g_int_pem || !n) {
        free(n);
        snprintf(err, errlen, "could not encode the CA");
        return -1;
    }
    snprintf(g_int_name, sizeof g_int_name, "%s", n);
    free(n);
    return 0;
}

void ca_shutdown(void)
{
    X509_free(g_root);
    X509_free(g_int);
    EVP_PKEY_free(g_root_key);
    EVP_PKEY_free(g_int_key);
    free(g_root_pem);
    free(g_int_pem);
    for (int i = 0; i < g_nkeys; i++)
        EVP_PKEY_free(g_keys[i].key);
    g_nkeys = 0;
}

EVP_PKEY *ca_shared_key(const char *key_type)
{
    const char *kt = key_type && *key_type ? key_type : "RSA - 2048";
    EVP_PKEY *k = NULL;
    pthread_mutex_lock(&g_keys_mu);
    for (int i = 0; i < g_nkeys; i++)
        if (strcmp(g_keys[i].type, kt) == 0) {
            k = g_keys[i].key;
            goto out;
        }
    if (strncmp(kt, "EC - ", 5) == 0) {
        const char *curve = strcmp(kt + 5, "P-384") == 0 ? "P-384"
                          : strcmp(kt + 5, "P-521") == 0 ? "P-521" : "P-256";
        k = EVP_EC_gen(curve);
    } else {
        char *end = NULL;
        long bits = strncmp(kt, "RSA - ", 6) == 0 ? strtol(kt + 6, &end, 10) : 2048;
        if (bits != 2048 && bits != 3072 && bits != 4096)
            bits = 2048;
        k = EVP_RSA_gen((unsigned int)bits);
    }
    if (k && g_nkeys < (int)(sizeof g_keys / sizeof g_keys[0])) {
        snprintf(g_keys[g_nkeys].type, sizeof g_keys[0].type, "%s", kt);
        g_keys[g_nkeys++].key = k;
    } else if (k) {
        EVP_PKEY_free(k);   /* table full: should not happen with the few key types we know */
        k = NULL;
    }
out:
    pthread_mutex_unlock(&g_keys_mu);
    return k;
}

void sim_csr_free(sim_csr *c)
{
    if (c) {
        EVP_PKEY_free(c->pub);
        c->pub = NULL;
    }
}

int ca_parse_csr(const char *text, sim_csr *out)
{
    int rc = -10;
    X509_REQ *req = NULL;
    EVP_PKEY *pk = NULL;
    unsigned char *der = NULL, *spki = NULL;
    char *b64 = NULL;
    memset(out, 0, sizeof *out);

    for (const char *p = text; *p; p++) {
        char ch = *p;
        bool okc = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                   ch == '-' || ch == '+' || ch == '=' || ch == '/' || ch == ' ' || ch == '\n' ||
                   ch == '\r' || ch == '\t';
        if (!okc)
            return -9;
    }
    /* Take the body between the BEGIN/END lines when present. */
    const char *start = text, *end = text + strlen(text);
    const char *b = strstr(text, "-----BEGIN");
    if (b) {
        const char *eol = strstr(b + 10, "-----");
        if (!eol)
            return -10;
        start = eol + 5;
        const char *e = strstr(start, "-----END");
        if (!e)
            return -10;
        end = e;
    }
    size_t n = (size_t)(end - start);
    b64 = malloc(n + 1);
    if (!b64)
        return -10;
    size_t m = 0;
    for (const char *p = start; p < end; p++)
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t')
            b64[m++] = *p;
    b64[m] = '\0';
    if (m == 0 || m % 4 != 0) {
        rc = m == 0 ? -10 : -9;
        goto out;
    }
    der = malloc(m / 4 * 3 + 1);
    if (!der)
        goto out;
    int dl = EVP_DecodeBlock(der, (const unsigned char *)b64, (int)m);
    if (dl < 0) {
        rc = -9;
        goto out;
    }
    if (m >= 1 && b64[m - 1] == '=')
        dl--;
    if (m >= 2 && b64[m - 2] == '=')
        dl--;
    const unsigned char *dp = der;
    req = d2i_X509_REQ(NULL, &dp, dl);
    if (!req) {
        rc = -10;
        goto out;
    }
    pk = X509_REQ_get_pubkey(req);
    if (!pk) {
        rc = -10;
        goto out;
    }
    if (X509_REQ_verify(req, pk) != 1) {
        rc = -138;
        goto out;
    }
    int base = EVP_PKEY_get_base_id(pk);
    if (base == EVP_PKEY_RSA) {
        snprintf(out->alg, sizeof out->alg, "RSA");
        snprintf(out->param, sizeof out->param, "%d", EVP_PKEY_get_bits(pk));
    } else if (base == EVP_PKEY_EC) {
        char grp[64] = "";
        size_t gl = 0;
        if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, grp, sizeof grp, &gl) != 1) {
            rc = -11;
            goto out;
        }
        const char *c = strcmp(grp, "prime256v1") == 0 ? "P-256"
                      : strcmp(grp, "secp384r1") == 0 ? "P-384"
                      : strcmp(grp, "secp521r1") == 0 ? "P-521" : grp;
        snprintf(out->alg, sizeof out->alg, "EC");
        snprintf(out->param, sizeof out->param, "%.15s", c);
    } else {
        rc = -11;
        goto out;
    }
    const X509_NAME *subj = X509_REQ_get_subject_name(req);
    int idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    if (idx < 0) {
        rc = -138;
        goto out;
    }
    const ASN1_STRING *cs = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
    unsigned char *utf = NULL;
    int ul = ASN1_STRING_to_UTF8(&utf, cs);
    if (ul <= 0 || (size_t)ul >= sizeof out->cn || memchr(utf, 0, (size_t)ul)) {
        OPENSSL_free(utf);
        rc = -138;
        goto out;
    }
    memcpy(out->cn, utf, (size_t)ul);
    out->cn[ul] = '\0';
    OPENSSL_free(utf);
    /* the SPKI as it arrived, re-encoded from the parsed structure: same
     * bytes as i2d_PUBKEY(pk) without OpenSSL 3.0's encoder search (128 of
     * the ~500 us this function took per enroll) */
    int sl = i2d_X509_PUBKEY(X509_REQ_get_X509_PUBKEY(req), &spki);
    if (sl <= 0)
        goto out;
    unsigned char md[32];
    unsigned int mdl = 0;
    if (EVP_Digest(spki, (size_t)sl, md, &mdl, EVP_sha256(), NULL) != 1)
        goto out;
    for (unsigned i = 0; i < 32; i++)
        snprintf(out->pub_sha256 + i * 2, 3, "%02x", md[i]);
    out->pub = pk;
    pk = NULL;
    rc = 0;
out:
    EVP_PKEY_free(pk);
    X509_REQ_free(req);
    OPENSSL_free(spki);
    free(der);
    free(b64);
    return rc;
}

void sim_leaf_free(sim_leaf *l)
{
    if (!l)
        return;
    free(l->pem);
    free(l->subject);
    free(l->issuer);
    free(l->sha1);
    free(l->md5);
    free(l->sig_alg);
    free(l);
}

static char *digest_hex(X509 *x, const EVP_MD *md)
{
    unsigned char buf[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (X509_digest(x, md, buf, &n) != 1)
        return NULL;
    char *s = malloc(n * 2 + 1);
    if (!s)
        return NULL;
    for (unsigned i = 0; i < n; i++)
        snprintf(s + i * 2, 3, "%02X", buf[i]);
    return s;
}

sim_leaf *ca_issue(EVP_PKEY *pub, const char *cn, const char *org, const char *sans_csv,
                   int64_t not_before, int64_t not_after, const char *serial_colon,
                   char **serial_out)
{
    sim_leaf *l = NULL;
    X509 *x = NULL;
    X509_NAME *subj = NULL;
    ASN1_INTEGER *ser = NULL;
    char *rs = NULL, *san = NULL;
    *serial_out = NULL;

    if (!serial_colon)
        serial_colon = rs = ca_random_serial();
    if (!serial_colon || hex_to_serial(serial_colon, &ser))
        goto out;
    /* SAN = CN first, then every SAN not equal to it */
    size_t cap = strlen(cn) + (sans_csv ? strlen(sans_csv) : 0) * 2 + 64;
    san = malloc(cap);
    if (!san)
        goto out;
    size_t o = (size_t)snprintf(san, cap, "DNS:%s", cn);
    if (sans_csv) {
        const char *p = sans_csv;
        while (*p) {
            const char *c = strchr(p, ',');
            size_t len = c ? (size_t)(c - p) : strlen(p);
            if (len && !(len == strlen(cn) && strncmp(p, cn, len) == 0))
                o += (size_t)snprintf(san + o, cap - o, ",DNS:%.*s", (int)len, p);
            if (!c)
                break;
            p = c + 1;
        }
    }
    subj = mk_name(org, cn);
    if (!subj)
        goto out;
    x = make_cert(pub, subj, g_int, g_int_key, ser, not_before, not_after, false, NULL, san,
                  EVP_PKEY_get_base_id(pub) == EVP_PKEY_EC);
    if (!x)
        goto out;
    l = calloc(1, sizeof *l);
    if (!l)
        goto out;
    l->pem = x509_to_pem(x);
    l->subject = name_to_str(X509_get_subject_name(x));
    l->issuer = name_to_str(X509_get_issuer_name(x));
    l->sha1 = digest_hex(x, EVP_sha1());
    l->md5 = digest_hex(x, EVP_md5());
    l->sig_alg = strdup(EVP_PKEY_get_base_id(g_int_key) == EVP_PKEY_EC ? "SHA256WITHECDSA" : "SHA256WITHRSA");
    *serial_out = serial_to_colon(X509_get0_serialNumber(x));
    if (!l->pem || !l->subject || !l->issuer || !l->sha1 || !l->md5 || !l->sig_alg || !*serial_out) {
        sim_leaf_free(l);
        l = NULL;
        free(*serial_out);
        *serial_out = NULL;
    }
out:
    X509_free(x);
    X509_NAME_free(subj);
    ASN1_INTEGER_free(ser);
    free(rs);
    free(san);
    return l;
}

static int append(char **buf, size_t *len, const char *s)
{
    size_t n = strlen(s);
    char *nb = realloc(*buf, *len + n + 1);
    if (!nb)
        return -1;
    memcpy(nb + *len, s, n + 1);
    *buf = nb;
    *len += n;
    return 0;
}

int ca_collect(const char *leaf_pem, const char *fmt, char **out, size_t *out_len,
               const char **disp_ext)
{
    /* order strings: L = leaf, I = intermediate, R = root */
    static const struct { const char *fmt, *order, *ext; } tab[] = {
        {"x509", "RIL", "crt"},  {"x509CO", "L", "crt"}, {"x509IO", "RI", "crt"},
        {"x509IOR", "IR", "crt"}, {"x509R", "LIR", "crt"}, {"pem", "RIL", "pem"},
        {"pemco", "L", "pem"},   {"pemia", "LIR", "pem"},
    };
    *out = NULL;
    *out_len = 0;
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
        if (strcmp(fmt, tab[i].fmt) != 0)
            continue;
        char *buf = NULL;
        size_t len = 0;
        for (const char *o = tab[i].order; *o; o++) {
            const char *pem = *o == 'L' ? leaf_pem : *o == 'I' ? g_int_pem : g_root_pem;
            if (append(&buf, &len, pem)) {
                free(buf);
                return -1;
            }
        }
        *out = buf;
        *out_len = len;
        *disp_ext = tab[i].ext;
        return 0;
    }
    bool pem7 = strcmp(fmt, "base64") == 0, der7 = strcmp(fmt, "bin") == 0;
    if (!pem7 && !der7)
        return -126;
    int rc = -1;
    PKCS7 *p7 = PKCS7_new();
    BIO *lb = BIO_new_mem_buf(leaf_pem, -1);
    X509 *leaf = lb ? PEM_read_bio_X509(lb, NULL, NULL, NULL) : NULL;
    BIO *ob = BIO_new(BIO_s_mem());
    if (!p7 || !leaf || !ob || PKCS7_set_type(p7, NID_pkcs7_signed) != 1 ||
        PKCS7_content_new(p7, NID_pkcs7_data) != 1 || PKCS7_add_certificate(p7, leaf) != 1 ||
        PKCS7_add_certificate(p7, g_int) != 1 || PKCS7_add_certificate(p7, g_root) != 1)
        goto out;
    if ((pem7 ? PEM_write_bio_PKCS7(ob, p7) : i2d_PKCS7_bio(ob, p7)) != 1)
        goto out;
    *out = bio_to_str(ob, out_len);
    if (!*out)
        goto out;
    *disp_ext = "p7b";
    rc = 0;
out:
    PKCS7_free(p7);
    X509_free(leaf);
    BIO_free(lb);
    BIO_free(ob);
    return rc;
}

int ca_tls_self_signed(const char *dir, char *err, size_t errlen)
{
    char p1[1024], p2[1024], p3[1024];
    snprintf(p1, sizeof p1, "%s/ca.pem", dir);
    snprintf(p2, sizeof p2, "%s/server.pem", dir);
    snprintf(p3, sizeof p3, "%s/server.key", dir);
    struct stat st;
    if (stat(p1, &st) == 0 && stat(p2, &st) == 0 && stat(p3, &st) == 0)
        return 0;
    int rc = -1;
    EVP_PKEY *ck = EVP_EC_gen("P-256"), *sk = EVP_EC_gen("P-256");
    X509_NAME *cn = mk_name("scm-sim", "scm-sim TLS test CA"), *sn = mk_name("scm-sim", "localhost");
    char *s1 = ca_random_serial(), *s2 = ca_random_serial();
    ASN1_INTEGER *a1 = NULL, *a2 = NULL;
    X509 *cx = NULL, *sx = NULL;
    char *cp = NULL, *sp = NULL, *kp = NULL;
    int64_t now = (int64_t)time(NULL);
    if (!ck || !sk || !cn || !sn || !s1 || !s2 || hex_to_serial(s1, &a1) || hex_to_serial(s2, &a2))
        goto out;
    cx = make_cert(ck, cn, NULL, ck, a1, now - 86400, now + 86400 * 3650, true, NULL, NULL, false);
    if (!cx)
        goto out;
    sx = make_cert(sk, sn, cx, ck, a2, now - 86400, now + 86400 * 825, false, NULL,
                   "DNS:localhost,IP:127.0.0.1,IP:::1", true);
    cp = cx ? x509_to_pem(cx) : NULL;
    sp = sx ? x509_to_pem(sx) : NULL;
    kp = key_to_pem(sk);
    if (!cp || !sp || !kp)
        goto out;
    mkdir(dir, 0700);
    if (write_file(dir, "ca.pem", cp, 0644) || write_file(dir, "server.pem", sp, 0644) ||
        write_file(dir, "server.key", kp, 0600)) {
        snprintf(err, errlen, "could not write TLS files into \"%s\": %s", dir, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (rc && !err[0])
        snprintf(err, errlen, "could not generate the TLS certificate");
    EVP_PKEY_free(ck);
    EVP_PKEY_free(sk);
    X509_NAME_free(cn);
    X509_NAME_free(sn);
    free(s1);
    free(s2);
    ASN1_INTEGER_free(a1);
    ASN1_INTEGER_free(a2);
    X509_free(cx);
    X509_free(sx);
    free(cp);
    free(sp);
    free(kp);
    return rc;
}
