/*
 * bench_keygen - key + CSR generations per second for EC P-256, EC P-384,
 * RSA-2048 and RSA-3072, on one thread and on two threads, and PKCS#12
 * builds per second. Prints one line per measurement:
 *   keygen+csr EC-256 threads=1: 1234.5/s (n=..., ...s)
 *
 *   bench_keygen [SECONDS_PER_CASE]   (default 3)
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testca.h"
#include "sf_keygen.h"
#include "sf_keystore.h"
#include "sf_seal.h"
#include "sf_x509.h"
#include "sf_util.h"

typedef struct job {
    const char *alg;
    int size;
    int64_t deadline_ms;
    long count;
    int failed;
    /* PKCS#12 case */
    const EVP_PKEY *key;
    const sf_chain *chain;
} job;

static void *keygen_worker(void *arg)
{
    job *j = arg;
    const char *sans[] = {"www.example.com", "api.example.com"};

    while (sf_now_mono_ms() < j->deadline_ms) {
        EVP_PKEY *k = NULL;
        char *csr = NULL;

        if (sf_keygen_generate(j->alg, j->size, &k, NULL) < 0 ||
            sf_csr_build(k, "www.example.com", sans, 2, &csr, NULL) < 0) {
            j->failed = 1;
            EVP_PKEY_free(k);
            break;
        }
        free(csr);
        EVP_PKEY_free(k);
        j->count++;
    }
    return NULL;
}

static void *p12_worker(void *arg)
{
    job *j = arg;

    while (sf_now_mono_ms() < j->deadline_ms) {
        unsigned char *out = NULL;
        size_t len = 0;

        if (sf_keystore_pkcs12(j->key, j->chain, "changeit-bench", NULL, &out, &len, NULL) < 0) {
            j->failed = 1;
            break;
        }
        sf_secret_free(out, len);
        j->count++;
    }
    return NULL;
}

static int run(const char *label, void *(*fn)(void *), job *proto, int threads, int seconds)
{
    pthread_t th[2];
    job jobs[2];
    int64_t start = sf_now_mono_ms(), elapsed;
    long total = 0;

    for (int i = 0; i < threads; i++) {
        jobs[i] = *proto;
        jobs[i].deadline_ms = start + seconds * 1000L;
        if (pthread_create(&th[i], NULL, fn, &jobs[i]) != 0)
            return -1;
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        if (jobs[i].failed) {
            fprintf(stderr, "bench_keygen: %s failed\n", label);
            return -1;
        }
        total += jobs[i].count;
    }
    elapsed = sf_now_mono_ms() - start;
    printf("%-22s threads=%d: %9.1f/s (n=%ld, %.2fs)\n", label, threads,
           (double)total * 1000.0 / (double)elapsed, total, (double)elapsed / 1000.0);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    int64_t secs = 3;
    static const struct {
        const char *alg;
        int size;
    } cases[] = {{"EC", 256}, {"EC", 384}, {"RSA", 2048}, {"RSA", 3072}};
    tca_chain c;
    X509 *certs[3];
    sf_chain *ch = NULL;
    int rc = 0;

    if (argc > 1 && sf_str_to_i64(argv[1], 1, 600, &secs) < 0) {
        fprintf(stderr, "usage: bench_keygen [SECONDS_PER_CASE]\n");
        return 2;
    }
    for (size_t i = 0; i < SF_ARRAY_LEN(cases); i++) {
        for (int t = 1; t <= 2; t++) {
            char label[64];
            job j;

            memset(&j, 0, sizeof(j));
            j.alg = cases[i].alg;
            j.size = cases[i].size;
            snprintf(label, sizeof(label), "keygen+csr %s-%d", j.alg, j.size);
            if (run(label, keygen_worker, &j, t, (int)secs) < 0)
                rc = 1;
        }
    }
    tca_chain_make(&c, "RSA", 2048, "bench.example.com", "DNS:bench.example.com");
    certs[0] = c.leaf;
    certs[1] = c.inter;
    certs[2] = c.root;
    if (sf_chain_from_certs(certs, 3, &ch, NULL) < 0 || sf_chain_order(ch, NULL) < 0) {
        rc = 1;
    } else {
        for (int t = 1; t <= 2; t++) {
            job j;

            memset(&j, 0, sizeof(j));
            j.key = c.leaf_key;
            j.chain = ch;
            if (run("pkcs12 build RSA-2048", p12_worker, &j, t, (int)secs) < 0)
                rc = 1;
        }
    }
    sf_chain_free(ch);
    tca_chain_free(&c);
    return rc;
}
