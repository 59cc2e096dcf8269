/*
 * fuzz_scm_parse.c - fuzz target for the SCM response parsers
 * (common/sf_scm_parse.c): every typed parser, the error-body mapping and
 * the date parser get the same bytes.
 *
 * Oracles beyond "no crash, no leak, no UB":
 *  - a parser either succeeds with an output, or fails with SF_ERR_INVALID
 *    (SF_ERR_INTERNAL only for out of memory) and a message, and leaves the
 *    output untouched;
 *  - a parsed certificate always has a positive id and a status;
 *  - an error response always maps to a class other than NONE and keeps the
 *    HTTP status and Retry-After it was given.
 *
 * Two builds:
 *  - libFuzzer (clang -fsanitize=fuzzer,address,undefined):
 *    LLVMFuzzerTestOneInput.
 *  - SF_FUZZ_STANDALONE (any compiler): main() feeds every file given on the
 *    command line, then a bounded number of deterministic mutations of them:
 *        fuzz_scm_parse_standalone [-n ITERATIONS] [-s SEED] FILE...
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sf_scm.h"
#include "sf_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_fail(int rc, const sf_error *e)
{
    if (rc != -1)
        abort();
    if (e->cls != SF_ERR_INVALID && e->cls != SF_ERR_INTERNAL)
        abort();
    if (e->msg[0] == '\0')
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *b = (const char *)data;
    sf_error e;
    int rc;

    {
        sf_scm_org_list *o = NULL;
        sf_error_clear(&e);
        rc = sf_scm_parse_orgs(b, size, &o, &e);
        if (rc == 0) {
            if (o == NULL)
                abort();
            for (size_t i = 0; i < o->n; i++)
                if (o->orgs[i].name == NULL)
                    abort();
            sf_scm_org_list_free(o);
        } else {
            check_fail(rc, &e);
            if (o != NULL)
                abort();
        }
    }
    {
        sf_scm_domain_page *p = NULL;
        sf_error_clear(&e);
        rc = sf_scm_parse_domains(b, size, &p, &e);
        if (rc == 0)
            sf_scm_domain_page_free(p);
        else
            check_fail(rc, &e);
    }
    {
        sf_scm_domain *d = NULL;
        sf_error_clear(&e);
        rc = sf_scm_parse_domain(b, size, &d, &e);
        if (rc == 0)
            sf_scm_domain_free(d);
        else
            check_fail(rc, &e);
    }
    {
        sf_scm_profile_list *p = NULL;
        sf_error_clear(&e);
        rc = sf_scm_parse_profiles(b, size, &p, &e);
        if (rc == 0) {
            for (size_t i = 0; i < p->n; i++)
                for (size_t k = 0; k < p->profiles[i].n_key_types; k++)
                    if (p->profiles[i].key_types[k].alg == NULL)
                        abort();
            sf_scm_profile_list_free(p);
        } else {
            check_fail(rc, &e);
        }
    }
    {
        sf_scm_custom_field_list *l = NULL;
        sf_error_clear(&e);
        rc = sf_scm_parse_custom_fields(b, size, &l, &e);
        if (rc == 0)
            sf_scm_custom_field_list_free(l);
        else
            check_fail(rc, &e);
    }
    {
        sf_scm_enroll_resp r;
        memset(&r, 0x5a, sizeof(r));
        sf_error_clear(&e);
        rc = sf_scm_parse_enroll(b, size, &r, &e);
        if (rc == 0) {
            if (r.ssl_id <= 0 || memchr(r.renew_id, '\0', sizeof(r.renew_id)) == NULL)
                abort();
        } else {
            check_fail(rc, &e);
        }
    }
    {
        sf_scm_cert *c = NULL;
        sf_error_clear(&e);
        rc = sf_scm_parse_cert(b, size, &c, &e);
        if (rc == 0) {
            if (c->id <= 0 || c->status == NULL)
                abort();
            sf_scm_cert_free(c);
        } else {
            check_fail(rc, &e);
        }
    }
    {
        sf_scm_cert_page *p = NULL;
        sf_error_clear(&e);
        rc = sf_scm_parse_cert_list(b, size, &p, &e);
        if (rc == 0)
            sf_scm_cert_page_free(p);
        else
            check_fail(rc, &e);
    }
    {
        static const int statuses[] = { 200, 400, 401, 403, 404, 429, 500, 503 };
        int st = statuses[size > 0 ? data[0] % 8 : 0];
        sf_error_clear(&e);
        if (sf_scm_error_from_response(st, b, size, size > 1 && (data[1] & 1), 777, &e) != -1)
            abort();
        if (e.cls == SF_ERR_NONE || e.http_status != st || e.retry_after_ms != 777)
            abort();
    }
    if (size < 64) {
        char s[64];
        int64_t t;
        memcpy(s, data, size);
        s[size] = '\0';
        sf_error_clear(&e);
        if (sf_scm_parse_date(s, &t, &e) < 0 && e.cls != SF_ERR_INVALID)
            abort();
    }
    return 0;
}

#ifdef SF_FUZZ_STANDALONE
static uint64_t g_rng = 88172645463325252ULL;

static uint64_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

/* A few byte-level mutations, plus JSON-aware ones (swap a value's type). */
static size_t mutate(uint8_t *buf, size_t len, size_t cap)
{
    static const char *const tokens[] = { "null", "1", "\"x\"", "[]", "{}", "true", "-1.5",
                                          "1e400", "\"\\u0000\"", "[[[[[[", "}", "," };
    int steps = 1 + (int)(rnd() % 4);

    for (int s = 0; s < steps; s++) {
        switch (rnd() % 5) {
        case 0: /* flip a byte */
            if (len > 0)
                buf[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8));
            break;
        case 1: /* truncate */
            if (len > 0)
                len = (size_t)(rnd() % len);
            break;
        case 2: /* delete a range */
            if (len > 2) {
                size_t a = (size_t)(rnd() % len), n = (size_t)(rnd() % (len - a));
                memmove(buf + a, buf + a + n, len - a - n);
                len -= n;
            }
            break;
        default: { /* insert a token */
            const char *t = tokens[rnd() % SF_ARRAY_LEN(tokens)];
            size_t tl = strlen(t), at = len ? (size_t)(rnd() % len) : 0;
            if (len + tl <= cap) {
                memmove(buf + at + tl, buf + at, len - at);
                memcpy(buf + at, t, tl);
                len += tl;
            }
            break;
        }
        }
    }
    return len;
}

int main(int argc, char **argv)
{
    long iters = 20000;
    int i = 1, nfiles = 0;
    char *files[256];
    size_t lens[256];

    for (; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
            int64_t v;
            if (sf_str_to_i64(argv[++i], 0, 100000000, &v) < 0)
                return 2;
            iters = (long)v;
        } else if (strcmp(argv[i], "-s") == 0 && i + 1 < argc) {
            int64_t v;
            if (sf_str_to_i64(argv[++i], 1, INT64_MAX, &v) < 0)
                return 2;
            g_rng = (uint64_t)v;
        } else if (nfiles < 256) {
            if (sf_read_file(argv[i], 1 << 20, &files[nfiles], &lens[nfiles]) < 0) {
                fprintf(stderr, "could not read \"%s\"\n", argv[i]);
                return 2;
            }
            LLVMFuzzerTestOneInput((const uint8_t *)files[nfiles], lens[nfiles]);
            nfiles++;
        }
    }
    if (nfiles == 0) {
        fprintf(stderr, "usage: %s [-n ITER] [-s SEED] FILE...\n", argv[0]);
        return 2;
    }
    {
        size_t cap = 1 << 17;
        uint8_t *buf = malloc(cap);
        if (buf == NULL)
            return 2;
        for (long k = 0; k < iters; k++) {
            int f = (int)(rnd() % (uint64_t)nfiles);
            size_t len = lens[f] < cap ? lens[f] : cap;
            memcpy(buf, files[f], len);
            len = mutate(buf, len, cap);
            LLVMFuzzerTestOneInput(buf, len);
        }
        free(buf);
    }
    for (int k = 0; k < nfiles; k++)
        free(files[k]);
    printf("fuzz_scm_parse: %d seeds, %ld mutated inputs, no failure\n", nfiles, iters);
    return 0;
}
#endif
