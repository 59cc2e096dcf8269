/*
 * sf_seal.c - AES-256-GCM sealing of secrets at rest (see sf_seal.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "sf_seal.h"
#include "sf_util.h"

#define SEAL_NONCE_LEN 12
#define SEAL_TAG_LEN 16
#define SEAL_PREFIX "v1."
/* A key file is 32 raw bytes or 64 hex + newline; anything bigger is wrong. */
#define KEY_FILE_MAX 128

typedef struct seal_key {
    unsigned char key[SF_SEAL_KEY_LEN];
    char id[SF_SEAL_KEY_ID_LEN + 1];
} seal_key;

struct sf_sealer {
    seal_key keys[SF_SEAL_MAX_KEYS];
    size_t nkeys;
    size_t primary;
};

sf_sealer *sf_sealer_new(sf_error *err)
{
    sf_sealer *s = calloc(1, sizeof(*s));

    if (s == NULL)
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    return s;
}

void sf_sealer_free(sf_sealer *s)
{
    if (s == NULL)
        return;
    OPENSSL_cleanse(s, sizeof(*s));
    free(s);
}

void sf_seal_compute_key_id(const unsigned char key[SF_SEAL_KEY_LEN], char *buf)
{
    unsigned char md[32];
    static const char hex[] = "0123456789abcdef";
    unsigned int mdlen = 0;

    /* EVP_Digest cannot fail for SHA-256 on a valid buffer short of OOM;
     * a zeroed digest still yields a well-formed id in that case. */
    memset(md, 0, sizeof(md));
    EVP_Digest(key, SF_SEAL_KEY_LEN, md, &mdlen, EVP_sha256(), NULL);
    for (size_t i = 0; i < SF_SEAL_KEY_ID_LEN / 2; i++) {
        buf[2 * i] = hex[md[i] >> 4];
        buf[2 * i + 1] = hex[md[i] & 0xf];
    }
    buf[SF_SEAL_KEY_ID_LEN] = '\0';
}

static const seal_key *find_key(const sf_sealer *s, const char *id)
{
    for (size_t i = 0; i < s->nkeys; i++)
        if (strcmp(s->keys[i].id, id) == 0)
            return &s->keys[i];
    return NULL;
}

int sf_sealer_add_key(sf_sealer *s, const unsigned char key[SF_SEAL_KEY_LEN], sf_error *err)
{
    char id[SF_SEAL_KEY_ID_LEN + 1];

    if (s == NULL || key == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_sealer_add_key: NULL argument");
    sf_seal_compute_key_id(key, id);
    for (size_t i = 0; i < s->nkeys; i++)
        if (CRYPTO_memcmp(s->keys[i].key, key, SF_SEAL_KEY_LEN) == 0)
            return 0;
    if (find_key(s, id) != NULL)
        /* Two different keys with the same 32-bit id: refuse rather than
         * let tokens name an ambiguous key. */
        return sf_error_field(err, "master_key", "master key id %s collides with another key", id);
    if (s->nkeys >= SF_SEAL_MAX_KEYS)
        return sf_error_field(err, "master_key", "too many master keys (at most %d)",
                              SF_SEAL_MAX_KEYS);
    memcpy(s->keys[s->nkeys].key, key, SF_SEAL_KEY_LEN);
    memcpy(s->keys[s->nkeys].id, id, sizeof(id));
    s->nkeys++;
    return 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int sf_sealer_add_key_file(sf_sealer *s, const char *path, sf_error *err)
{
    char *data = NULL;
    size_t len = 0;
    unsigned char key[SF_SEAL_KEY_LEN];
    int rc = -1;

    if (s == NULL || path == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_sealer_add_key_file: NULL argument");
    if (sf_read_file(path, KEY_FILE_MAX, &data, &len) < 0) {
        if (errno == EFBIG)
            return sf_error_field(err, "master_key",
                                  "master key file \"%s\" is not 32 bytes or 64 hex characters",
                                  path);
        return sf_error_set(err, SF_ERR_FATAL, errno, "could not read master key file \"%s\": %s",
                            path, strerror(errno));
    }
    if (len == SF_SEAL_KEY_LEN) {
        memcpy(key, data, SF_SEAL_KEY_LEN);
    } else {
        size_t hexlen = len;

        if (hexlen > 0 && data[hexlen - 1] == '\n')
            hexlen--;
        if (hexlen > 0 && data[hexlen - 1] == '\r')
            hexlen--;
        if (hexlen != 2 * SF_SEAL_KEY_LEN) {
            sf_error_field(err, "master_key",
                           "master key file \"%s\" is not 32 bytes or 64 hex characters", path);
            goto out;
        }
        for (size_t i = 0; i < SF_SEAL_KEY_LEN; i++) {
            int hi = hexval((unsigned char)data[2 * i]);
            int lo = hexval((unsigned char)data[2 * i + 1]);

            if (hi < 0 || lo < 0) {
                sf_error_field(err, "master_key",
                               "master key file \"%s\" is not 32 bytes or 64 hex characters",
                               path);
                goto out;
            }
            key[i] = (unsigned char)(hi << 4 | lo);
        }
    }
    rc = sf_sealer_add_key(s, key, err);
out:
    OPENSSL_cleanse(key, sizeof(key));
    sf_secret_free(data, len);
    return rc;
}

/* Restate an sf_sealer_add_key_file error in terms of the setting that named
 * the file (the operator knows settings, not "master_key"); keeps the class. */
static void key_setting_error(sf_error *err, const sf_error *inner, const char *setting,
                              size_t entry)
{
    if (err == NULL)
        return;
    if (entry == 0)
        sf_error_set(err, inner->cls, inner->code, "%s: %s", setting, inner->msg);
    else
        sf_error_set(err, inner->cls, inner->code, "%s entry %zu: %s", setting, entry, inner->msg);
    (void)sf_snprintf(err->field, sizeof(err->field), "%s", setting);
}

static bool list_blank(char c)
{
    return c == ' ' || c == '\t';
}

sf_sealer *sf_sealer_from_config(const sf_config *cfg, sf_error *err)
{
    static const char primary_name[] = "SCMFLOW_MASTER_KEY_FILE";
    static const char old_name[] = "SCMFLOW_MASTER_KEY_OLD_FILES";
    const char *primary, *p;
    sf_sealer *s = NULL;
    sf_error inner = {0};
    char *path = NULL;
    size_t entry = 0;

    if (cfg == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_sealer_from_config: NULL argument");
        return NULL;
    }
    primary = sf_config_str(cfg, primary_name);
    if (primary[0] == '\0') {
        sf_error_field(err, primary_name, "%s is required (secrets are sealed at rest)",
                       primary_name);
        return NULL;
    }
    if ((s = sf_sealer_new(err)) == NULL)
        return NULL;
    /* Added first, so it is the primary whatever the old list holds (an old
     * entry equal to it is a no-op in sf_sealer_add_key). */
    if (sf_sealer_add_key_file(s, primary, &inner) < 0) {
        key_setting_error(err, &inner, primary_name, 0);
        goto fail;
    }
    /* sf_config_str gives "" for a setting the binary's table lacks. */
    for (p = sf_config_str(cfg, old_name); *p != '\0';) {
        const char *end = strchr(p, ',');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        const char *next = end != NULL ? end + 1 : p + n;

        entry++;
        while (n > 0 && list_blank(*p)) {
            p++;
            n--;
        }
        while (n > 0 && list_blank(p[n - 1]))
            n--;
        if (n > 0) {
            if ((path = malloc(n + 1)) == NULL) {
                sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
                goto fail;
            }
            memcpy(path, p, n);
            path[n] = '\0';
            if (sf_sealer_add_key_file(s, path, &inner) < 0) {
                key_setting_error(err, &inner, old_name, entry);
                goto fail;
            }
            free(path);
            path = NULL;
        }
        p = next;
    }
    return s;
fail:
    free(path);
    sf_sealer_free(s);
    return NULL;
}

int sf_sealer_set_primary(sf_sealer *s, const char *key_id, sf_error *err)
{
    if (s == NULL || key_id == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_sealer_set_primary: NULL argument");
    for (size_t i = 0; i < s->nkeys; i++) {
        if (strcmp(s->keys[i].id, key_id) == 0) {
            s->primary = i;
            return 0;
        }
    }
    return sf_error_set(err, SF_ERR_NOT_FOUND, 0, "no master key with id \"%.16s\"", key_id);
}

const char *sf_sealer_primary_id(const sf_sealer *s)
{
    if (s == NULL || s->nkeys == 0)
        return NULL;
    return s->keys[s->primary].id;
}

int sf_seal_check_key_file_mode(const char *path, sf_error *err)
{
    struct stat st;

    if (stat(path, &st) < 0)
        return sf_error_set(err, SF_ERR_FATAL, errno, "could not stat master key file \"%s\": %s",
                            path, strerror(errno));
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        sf_error_set(err, SF_ERR_INVALID, 0,
                     "master key file \"%s\" is accessible by group or others (mode %03o)", path,
                     (unsigned)(st.st_mode & 0777));
        return 1;
    }
    return 0;
}

/* GCM with one key and fresh 96-bit nonce; dir 1 = encrypt, 0 = decrypt.
 * For decryption, tag is input; for encryption it is output. */
static int gcm_run(int enc, const unsigned char *key, const unsigned char *nonce,
                   const char *aad, const unsigned char *in, size_t inlen, unsigned char *outbuf,
                   unsigned char *tag)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int rc = -1, n = 0, fin = 0;
    size_t aadlen = strlen(aad);

    if (ctx == NULL)
        return -1;
    if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1)
        goto out;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, SEAL_NONCE_LEN, NULL) != 1)
        goto out;
    if (EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, enc) != 1)
        goto out;
    if (aadlen > 0 && EVP_CipherUpdate(ctx, NULL, &n, (const unsigned char *)aad, (int)aadlen) != 1)
        goto out;
    if (inlen > 0 && EVP_CipherUpdate(ctx, outbuf, &n, in, (int)inlen) != 1)
        goto out;
    if (!enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_LEN, tag) != 1)
        goto out;
    if (EVP_CipherFinal_ex(ctx, outbuf + (inlen > 0 ? n : 0), &fin) != 1)
        goto out;
    if (enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_LEN, tag) != 1)
        goto out;
    rc = 0;
out:
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

int sf_seal(const sf_sealer *s, const void *plain, size_t len, const char *aad, char **out_text,
            sf_error *err)
{
    unsigned char *raw = NULL;
    char *text = NULL;
    size_t rawlen = SEAL_NONCE_LEN + len + SEAL_TAG_LEN;
    size_t b64len = 4 * ((rawlen + 2) / 3);
    size_t prefix = strlen(SEAL_PREFIX) + SF_SEAL_KEY_ID_LEN + 1;
    const seal_key *k;
    int rc = -1;

    if (s == NULL || (plain == NULL && len > 0) || aad == NULL || out_text == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_seal: NULL argument");
    if (s->nkeys == 0)
        return sf_error_set(err, SF_ERR_FATAL, 0, "no master key configured");
    if (len > SF_SEAL_MAX_PLAINTEXT)
        return sf_error_field(err, "secret", "secret too large to seal (%zu bytes, limit %d)", len,
                              SF_SEAL_MAX_PLAINTEXT);
    if (strlen(aad) > SF_SEAL_MAX_AAD)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "seal context too long");
    k = &s->keys[s->primary];
    raw = malloc(rawlen);
    text = malloc(prefix + b64len + 1);
    if (raw == NULL || text == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    if (RAND_bytes(raw, SEAL_NONCE_LEN) != 1) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "could not generate a nonce");
        goto out;
    }
    if (gcm_run(1, k->key, raw, aad, plain, len, raw + SEAL_NONCE_LEN,
                raw + SEAL_NONCE_LEN + len) < 0) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "could not seal secret");
        goto out;
    }
    memcpy(text, SEAL_PREFIX, strlen(SEAL_PREFIX));
    memcpy(text + strlen(SEAL_PREFIX), k->id, SF_SEAL_KEY_ID_LEN);
    text[prefix - 1] = '.';
    if (EVP_EncodeBlock((unsigned char *)text + prefix, raw, (int)rawlen) != (int)b64len) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "could not encode sealed secret");
        goto out;
    }
    text[prefix + b64len] = '\0';
    *out_text = text;
    text = NULL;
    rc = 0;
out:
    free(raw); /* nonce + ciphertext + tag only: nothing secret */
    free(text);
    return rc;
}

int sf_seal_key_id(const char *token, char *buf)
{
    size_t pl = strlen(SEAL_PREFIX);

    if (token == NULL || strncmp(token, SEAL_PREFIX, pl) != 0)
        return -1;
    for (size_t i = 0; i < SF_SEAL_KEY_ID_LEN; i++)
        if (hexval((unsigned char)token[pl + i]) < 0)
            return -1;
    if (token[pl + SF_SEAL_KEY_ID_LEN] != '.')
        return -1;
    if (buf != NULL) {
        memcpy(buf, token + pl, SF_SEAL_KEY_ID_LEN);
        buf[SF_SEAL_KEY_ID_LEN] = '\0';
    }
    return 0;
}

bool sf_seal_needs_reseal(const sf_sealer *s, const char *token)
{
    char id[SF_SEAL_KEY_ID_LEN + 1];
    const char *primary = sf_sealer_primary_id(s);

    if (primary == NULL || sf_seal_key_id(token, id) < 0)
        return false;
    return strcmp(id, primary) != 0;
}

static bool b64_char(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
}

int sf_unseal(const sf_sealer *s, const char *token, const char *aad, unsigned char **plain,
              size_t *len, sf_error *err)
{
    char id[SF_SEAL_KEY_ID_LEN + 1];
    const seal_key *k;
    const char *b64;
    size_t b64len, pad = 0, rawlen, ctlen;
    unsigned char *raw = NULL, *pt = NULL;
    int rc = -1;

    if (s == NULL || token == NULL || aad == NULL || plain == NULL || len == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_unseal: NULL argument");
    if (sf_seal_key_id(token, id) < 0)
        return sf_error_field(err, "sealed", "sealed value is not a v1 token");
    k = find_key(s, id);
    if (k == NULL)
        return sf_error_set(err, SF_ERR_NOT_FOUND, 0,
                            "sealed value uses master key %s which is not configured", id);
    b64 = token + strlen(SEAL_PREFIX) + SF_SEAL_KEY_ID_LEN + 1;
    b64len = strlen(b64);
    if (b64len % 4 != 0 || b64len > 4 * ((SF_SEAL_MAX_PLAINTEXT + 28 + 2) / 3))
        return sf_error_field(err, "sealed", "sealed value is malformed");
    /* EVP_DecodeBlock accepts whitespace and does not report padding:
     * check the alphabet ourselves and subtract the padding. */
    for (size_t i = 0; i < b64len; i++) {
        int c = (unsigned char)b64[i];

        if (c == '=' && i >= b64len - 2) {
            pad++;
            continue;
        }
        if (!b64_char(c) || pad > 0)
            return sf_error_field(err, "sealed", "sealed value is malformed");
    }
    rawlen = b64len / 4 * 3;
    raw = malloc(rawlen + 1);
    if (raw == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    if (EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)b64len) != (int)rawlen) {
        sf_error_field(err, "sealed", "sealed value is malformed");
        goto out;
    }
    rawlen -= pad;
    if (rawlen < SEAL_NONCE_LEN + SEAL_TAG_LEN) {
        sf_error_field(err, "sealed", "sealed value is too short");
        goto out;
    }
    ctlen = rawlen - SEAL_NONCE_LEN - SEAL_TAG_LEN;
    pt = malloc(ctlen + 1);
    if (pt == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    if (gcm_run(0, k->key, raw, aad, raw + SEAL_NONCE_LEN, ctlen, pt,
                raw + SEAL_NONCE_LEN + ctlen) < 0) {
        sf_error_field(err, "sealed",
                       "could not unseal secret: wrong key or context, or value tampered with");
        goto out;
    }
    pt[ctlen] = '\0';
    *plain = pt;
    *len = ctlen;
    pt = NULL;
    rc = 0;
out:
    free(raw);
    if (pt != NULL)
        sf_secret_free(pt, ctlen + 1);
    return rc;
}

void sf_secret_free(void *p, size_t len)
{
    if (p == NULL)
        return;
    OPENSSL_cleanse(p, len);
    free(p);
}

void sf_secret_str_free(char *s)
{
    if (s == NULL)
        return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}
