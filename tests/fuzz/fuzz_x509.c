/*
 * fuzz_x509 - a self-contained mutation fuzzer for sf_chain_parse,
 * sf_chain_order, sf_cert_info_get and sf_csr_parse (no libFuzzer needed, so
 * it runs in every build; under ASan+UBSan it finds memory errors).
 *
 *   fuzz_x509 [ITERATIONS] [SEED]
 *
 * Seeds: a PEM chain, its DER leaf, a PKCS#7 bag (DER and bare base64) and a
 * CSR made at start-up;
 * each iteration flips, inserts, deletes or truncates bytes of one seed.
 * Every call must return 0 or -1 with a message; the run fails on a crash,
 * a sanitizer report, or an error without a message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pkcs7.h>

#include "testca.h"
#include "sf_keygen.h"
#include "sf_x509.h"
#include "sf_util.h"

static uint64_t rng_state;

static uint32_t rnd(void)
{
    /* xorshift64*: reproducible from the seed */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 2685821657736338717ULL) >> 32);
}

typedef struct seed {
    unsigned char *d;
    size_t n;
    int csr;
} seed;

static int check_err(const sf_error *err, const char *what)
{
    if (err->msg[0] == '\0') {
        fprintf(stderr, "fuzz_x509: %s failed without a message\n", what);
        return -1;
    }
    return 0;
}

static int one(const unsigned char *d, size_t n, int csr)
{
    sf_error err;
    sf_chain *ch = NULL;

    memset(&err, 0, sizeof(err));
    if (csr) {
        sf_csr_info *ci = NULL;

        if (sf_csr_parse((const char *)d, n, &ci, &err) < 0)
            return check_err(&err, "sf_csr_parse");
        sf_csr_info_free(ci);
        return 0;
    }
    if (sf_chain_parse(d, n, &ch, &err) < 0)
        return check_err(&err, "sf_chain_parse");
    for (size_t i = 0; i < sf_chain_count(ch); i++) {
        sf_cert_info *ci = NULL;

        memset(&err, 0, sizeof(err));
        if (sf_cert_info_get(sf_chain_cert(ch, i), &ci, &err) < 0 &&
            check_err(&err, "sf_cert_info_get") < 0) {
            sf_chain_free(ch);
            return -1;
        }
        sf_cert_info_free(ci);
    }
    memset(&err, 0, sizeof(err));
    if (sf_chain_order(ch, &err) < 0 && check_err(&err, "sf_chain_order") < 0) {
        sf_chain_free(ch);
        return -1;
    }
    sf_chain_free(ch);
    return 0;
}

int main(int argc, char **argv)
{
    int64_t iters = 20000, s = 1;
    tca_chain c;
    seed seeds[5];
    char *pem = NULL, *csr = NULL, *b64 = NULL;
    unsigned char *der = NULL, *p7der = NULL, *buf;
    int derlen, p7len;
    PKCS7 *p7;
    const char *sans[] = {"a.example.com", "10.0.0.1"};
    int rc = 0;

    if ((argc > 1 && sf_str_to_i64(argv[1], 1, INT64_MAX, &iters) < 0) ||
        (argc > 2 && sf_str_to_i64(argv[2], 1, INT64_MAX, &s) < 0)) {
        fprintf(stderr, "usage: fuzz_x509 [ITERATIONS] [SEED]\n");
        return 2;
    }
    rng_state = (uint64_t)s * 0x9E3779B97F4A7C15ULL + 1;
    tca_chain_make(&c, "EC", 256, "fuzz.example.com", "DNS:fuzz.example.com,IP:10.0.0.1");
    pem = tca_pem_append(pem, c.inter);
    pem = tca_pem_append(pem, c.leaf);
    pem = tca_pem_append(pem, c.root);
    derlen = i2d_X509(c.leaf, &der);
    p7 = PKCS7_new();
    TCA_CHECK(p7 && PKCS7_set_type(p7, NID_pkcs7_signed) == 1 &&
              PKCS7_content_new(p7, NID_pkcs7_data) == 1 && PKCS7_add_certificate(p7, c.leaf) == 1 &&
              PKCS7_add_certificate(p7, c.inter) == 1);
    p7len = i2d_PKCS7(p7, &p7der);
    TCA_CHECK(sf_csr_build(c.leaf_key, "fuzz.example.com", sans, 2, &csr, NULL) == 0);
    seeds[0] = (seed){(unsigned char *)pem, strlen(pem), 0};
    seeds[1] = (seed){der, (size_t)derlen, 0};
    seeds[2] = (seed){p7der, (size_t)p7len, 0};
    seeds[3] = (seed){(unsigned char *)csr, strlen(csr), 1};
    {
        /* bare base64 of the PKCS#7 (SCM collect format "base64") */
        BIO *b = BIO_new(BIO_s_mem());
        char *body;
        long bl;

        TCA_CHECK(b != NULL && PEM_write_bio_PKCS7(b, p7) == 1);
        bl = BIO_get_mem_data(b, &body);
        b64 = malloc((size_t)bl + 1);
        TCA_CHECK(b64 != NULL);
        memcpy(b64, body, (size_t)bl);
        b64[bl] = '\0';
        BIO_free(b);
        body = strchr(b64, '\n') + 1;
        *strstr(body, "-----END") = '\0';
        seeds[4] = (seed){(unsigned char *)body, strlen(body), 0};
    }
    /* unmutated seeds must parse */
    for (int i = 0; i < 5; i++)
        TCA_CHECK(one(seeds[i].d, seeds[i].n, seeds[i].csr) == 0);
    buf = malloc(16384);
    TCA_CHECK(buf != NULL);
    for (int64_t it = 0; it < iters && rc == 0; it++) {
        const seed *sd = &seeds[rnd() % 5];
        size_t n = sd->n < 16000 ? sd->n : 16000;
        int muts = 1 + (int)(rnd() % 8);

        memcpy(buf, sd->d, n);
        for (int m = 0; m < muts && n > 0; m++) {
            size_t pos = rnd() % n;

            switch (rnd() % 5) {
            case 0: buf[pos] ^= (unsigned char)(1u << (rnd() % 8)); break;
            case 1: buf[pos] = (unsigned char)rnd(); break;
            case 2: n = pos; break; /* truncate */
            case 3: /* delete one byte */
                memmove(buf + pos, buf + pos + 1, n - pos - 1);
                n--;
                break;
            default: /* duplicate a run */
                if (n < 16000) {
                    size_t len = 1 + rnd() % 64;

                    if (len > n - pos)
                        len = n - pos;
                    if (n + len <= 16384) {
                        memmove(buf + pos + len, buf + pos, n - pos);
                        n += len;
                    }
                }
            }
        }
        if (one(buf, n, sd->csr) < 0) {
            fprintf(stderr, "fuzz_x509: iteration %lld (seed %lld)\n", (long long)it, (long long)s);
            rc = 1;
        }
    }
    printf("fuzz_x509: %lld iterations, %s\n", (long long)iters, rc ? "FAILED" : "ok");
    free(buf);
    free(csr);
    free(b64);
    OPENSSL_free(p7der);
    PKCS7_free(p7);
    OPENSSL_free(der);
    free(pem);
    tca_chain_free(&c);
    return rc;
}
