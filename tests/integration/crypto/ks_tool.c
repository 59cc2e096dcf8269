/*
 * ks_tool - writes keystores for the crypto integration test, which opens
 * them with `openssl pkcs12` and Java's keytool.
 *
 *   ks_tool OUTDIR PASSWORD
 *
 * For each case writes OUTDIR/<case>.{pem,enc.pem,p12,jks} and
 * OUTDIR/<case>.info ("chain=<n> alg=<alg> sha256=<leaf fingerprint>").
 * Cases: rsa3 (RSA-2048 leaf, chain with root: 3 certs), ec2 (EC P-256 leaf,
 * chain without root: 2 certs), ec384 (P-384 leaf, 3 certs).
 *
 *   ks_tool parse-jks|parse-p12 FILE PASSWORD
 *
 * Opens a keystore (e.g. one keytool wrote) with sf_keystore_parse_*; prints
 * "key=<alg>-<size> chain=<n> match=<yes|no>". Exit 0 ok, 3 wrong password
 * (SF_ERR_AUTH), 1 other errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testca.h"
#include "sf_keystore.h"
#include "sf_seal.h"
#include "sf_x509.h"
#include "sf_util.h"

static int write_out(const char *dir, const char *name, const char *ext, const unsigned char *d,
                     size_t n)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s.%s", dir, name, ext);
    f = fopen(path, "wb");
    if (f == NULL || fwrite(d, 1, n, f) != n) {
        fprintf(stderr, "ks_tool: could not write \"%s\"\n", path);
        if (f)
            fclose(f);
        return -1;
    }
    return fclose(f) == 0 ? 0 : -1;
}

static int one_case(const char *dir, const char *pw, const char *name, const char *alg, int size,
                    bool with_root)
{
    tca_chain c;
    X509 *certs[3];
    sf_chain *ch = NULL;
    sf_cert_info *ci = NULL;
    unsigned char *out = NULL;
    size_t len = 0;
    sf_error err;
    int rc = -1;
    char info[256];
    static const struct {
        sf_keystore_type t;
        const char *ext;
        bool pw;
    } kinds[] = {{SF_KEYSTORE_PEM, "pem", false},
                 {SF_KEYSTORE_PEM, "enc.pem", true},
                 {SF_KEYSTORE_PKCS12, "p12", true},
                 {SF_KEYSTORE_JKS, "jks", true}};

    memset(&err, 0, sizeof(err));
    tca_chain_make(&c, alg, size, "ks.example.com", "DNS:ks.example.com,DNS:alt.example.com");
    /* hand them over out of order: the library orders */
    certs[0] = c.inter;
    certs[1] = c.leaf;
    certs[2] = c.root;
    if (sf_chain_from_certs(certs, with_root ? 3 : 2, &ch, &err) < 0 ||
        sf_chain_order(ch, &err) < 0 || sf_cert_info_get(sf_chain_cert(ch, 0), &ci, &err) < 0)
        goto out;
    for (size_t i = 0; i < SF_ARRAY_LEN(kinds); i++) {
        if (sf_keystore_build(kinds[i].t, c.leaf_key, ch, kinds[i].pw ? pw : NULL, "Server-Cert",
                              &out, &len, &err) < 0)
            goto out;
        if (write_out(dir, name, kinds[i].ext, out, len) < 0)
            goto out;
        sf_secret_free(out, len);
        out = NULL;
    }
    snprintf(info, sizeof(info), "chain=%zu alg=%s sha256=%s\n", sf_chain_count(ch), alg,
             ci->sha256_fp);
    if (write_out(dir, name, "info", (const unsigned char *)info, strlen(info)) < 0)
        goto out;
    rc = 0;
out:
    if (rc < 0 && err.msg[0])
        fprintf(stderr, "ks_tool: %s: %s\n", name, err.msg);
    sf_secret_free(out, len);
    sf_cert_info_free(ci);
    sf_chain_free(ch);
    tca_chain_free(&c);
    return rc;
}

static int parse_mode(const char *mode, const char *path, const char *pw)
{
    char *data = NULL;
    size_t len = 0;
    EVP_PKEY *key = NULL;
    sf_chain *ch = NULL;
    sf_error err;
    const char *alg = "?";
    int size = 0, r;

    memset(&err, 0, sizeof(err));
    if (sf_read_file(path, SF_KEYSTORE_MAX_BYTES, &data, &len) < 0) {
        fprintf(stderr, "ks_tool: could not read \"%s\"\n", path);
        return 1;
    }
    if (strcmp(mode, "parse-jks") == 0)
        r = sf_keystore_parse_jks(data, len, pw, &key, &ch, &err);
    else
        r = sf_keystore_parse_pkcs12(data, len, pw, &key, &ch, &err);
    free(data);
    if (r < 0) {
        fprintf(stderr, "ks_tool: %s: %s (%s)\n", path, err.msg, sf_err_class_name(err.cls));
        return err.cls == SF_ERR_AUTH ? 3 : 1;
    }
    sf_key_describe(key, &alg, &size, NULL);
    printf("key=%s-%d chain=%zu match=%s\n", alg, size, sf_chain_count(ch),
           sf_cert_matches_key(sf_chain_cert(ch, 0), key, NULL) == 0 ? "yes" : "no");
    EVP_PKEY_free(key);
    sf_chain_free(ch);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strncmp(argv[1], "parse-", 6) == 0)
        return parse_mode(argv[1], argv[2], argv[3]);
    if (argc != 3) {
        fprintf(stderr, "usage: ks_tool OUTDIR PASSWORD\n");
        return 2;
    }
    if (one_case(argv[1], argv[2], "rsa3", "RSA", 2048, true) < 0 ||
        one_case(argv[1], argv[2], "ec2", "EC", 256, false) < 0 ||
        one_case(argv[1], argv[2], "ec384", "EC", 384, true) < 0)
        return 1;
    return 0;
}
