/*
 * fuzz_msg.c - fuzz target for sf_event_decode (proto/sf_msg.h).
 *
 * Oracles beyond "no crash, no leak, no UB":
 *  - a failure always names a field and says why, and is SF_ERR_INVALID;
 *  - a decoded known event re-encodes (same id/time/source/subject/
 *    correlationid) and decodes again to equal data: what we accept, we can
 *    also emit;
 *  - a decoded command parses with its typed sf_cmd_*_parse (decode and the
 *    typed parsers accept exactly the same data).
 *
 * Two builds:
 *  - libFuzzer (clang -fsanitize=fuzzer,address,undefined): the usual
 *    LLVMFuzzerTestOneInput entry point.
 *  - SF_FUZZ_STANDALONE (any compiler): main() feeds every file given on the
 *    command line (or files of given directories), then a bounded number of
 *    deterministic random mutations of them:
 *        fuzz_msg_standalone [-n ITERATIONS] [-s SEED] PATH...
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sf_cmd.h"
#include "sf_msg.h"
#include "sf_topics.h"
#include "sf_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_typed(const sf_event *ev)
{
    const char *t = sf_event_type(ev);
    const cJSON *d = sf_event_data(ev);
    sf_error err;
    int rc = 0;

#define TRY(kind)                                                                            \
    do {                                                                                     \
        sf_cmd_##kind c = {0};                                                               \
        rc = sf_cmd_##kind##_parse(d, &c, &err);                                             \
        sf_cmd_##kind##_release(&c);                                                         \
    } while (0)
    if (strcmp(t, SF_CMD_CATALOG_SYNC) == 0)
        TRY(catalog_sync);
    else if (strcmp(t, SF_CMD_ORDERS_IMPORT) == 0)
        TRY(orders_import);
    else if (strcmp(t, SF_CMD_ORDER_ENROLL) == 0)
        TRY(enroll);
    else if (strcmp(t, SF_CMD_ORDER_RENEW) == 0)
        TRY(renew);
    else if (strcmp(t, SF_CMD_ORDER_REISSUE) == 0)
        TRY(reissue);
    else if (strcmp(t, SF_CMD_ORDER_REVOKE) == 0)
        TRY(revoke);
    else if (strcmp(t, SF_CMD_ORDER_DELETE) == 0)
        TRY(delete);
    else if (strcmp(t, SF_CMD_ORDER_CHECK_STATUS) == 0)
        TRY(check_status);
    else if (strcmp(t, SF_MSG_CERT_COLLECTED) == 0)
        TRY(certificate_collected);
#undef TRY
    if (rc != 0) {
        fprintf(stderr, "decoded %s but typed parse failed: %s: %s\n", t, err.field, err.msg);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sf_event *ev = NULL, *ev2 = NULL;
    sf_error err;
    char *out = NULL;
    size_t len = 0;

    sf_error_clear(&err);
    if (sf_event_decode(data, size, &ev, &err) != 0) {
        if (err.cls != SF_ERR_INVALID || err.field[0] == '\0' || err.msg[0] == '\0') {
            fprintf(stderr, "failure without a field/reason: class %d\n", (int)err.cls);
            abort();
        }
        return 0;
    }
    if (sf_event_is_known(ev)) {
        check_typed(ev);
        if (sf_event_encode_ex(sf_event_type(ev), sf_event_source(ev), sf_event_id(ev),
                               sf_event_correlationid(ev), sf_event_subject(ev), sf_event_time(ev),
                               sf_event_data(ev), &out, &len, &err) != 0) {
            /* re-encoding can only grow through escaping (e.g. "\/" -> "/" shrinks,
             * raw control characters are never accepted), so only the size
             * limit may legitimately refuse it */
            if (strcmp(err.field, "message") != 0) {
                fprintf(stderr, "decoded but cannot re-encode: %s: %s\n", err.field, err.msg);
                abort();
            }
        } else {
            if (sf_event_decode(out, len, &ev2, &err) != 0 ||
                !cJSON_Compare(sf_event_data(ev), sf_event_data(ev2), 1)) {
                fprintf(stderr, "re-encoded event does not decode equal: %s: %s\n", err.field,
                        err.msg);
                abort();
            }
        }
    }
    sf_event_free(ev2);
    sf_event_free(ev);
    free(out);
    return 0;
}

#ifdef SF_FUZZ_STANDALONE

typedef struct seed {
    char *data;
    size_t len;
} seed;

static seed *seeds;
static size_t nseeds, capseeds;

static void add_file(const char *path)
{
    char *buf = NULL;
    size_t len = 0;

    if (sf_read_file(path, 16u * 1024 * 1024, &buf, &len) != 0) {
        fprintf(stderr, "could not read \"%s\"\n", path);
        exit(2);
    }
    if (nseeds == capseeds) {
        capseeds = capseeds ? capseeds * 2 : 64;
        seeds = realloc(seeds, capseeds * sizeof(*seeds));
        if (seeds == NULL)
            exit(2);
    }
    seeds[nseeds].data = buf;
    seeds[nseeds].len = len;
    nseeds++;
}

static void add_path(const char *path)
{
    struct stat st;
    DIR *d;
    struct dirent *de;

    if (stat(path, &st) != 0) {
        fprintf(stderr, "no such path \"%s\"\n", path);
        exit(2);
    }
    if (!S_ISDIR(st.st_mode)) {
        add_file(path);
        return;
    }
    d = opendir(path);
    if (d == NULL)
        exit(2);
    while ((de = readdir(d)) != NULL) {
        char *p;
        if (de->d_name[0] == '.')
            continue;
        p = sf_asprintf("%s/%s", path, de->d_name);
        if (p == NULL)
            exit(2);
        add_path(p);
        free(p);
    }
    closedir(d);
}

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* xorshift64*: deterministic for a given seed, so failures reproduce */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static const char *const tokens[] = {"{", "}", "[", "]", "\"", ",", ":", "null", "true", "-1",
                                     "1e999", "0.5", "\\u0000", "\\ud800", "\xc3\xa9", "\xff",
                                     "\"data\":{}", "\"type\":\"scmflow.order.enroll\"",
                                     "\"key_algorithm\":\"EC\"", "\"keystore_type\":\"JKS\""};

/* One mutated copy of a seed (caller frees). */
static char *mutate(const seed *s, size_t *out_len)
{
    size_t cap = s->len + 256, len = s->len;
    char *b = malloc(cap);
    int rounds = 1 + (int)(rnd() % 8);

    if (b == NULL)
        exit(2);
    memcpy(b, s->data, s->len);
    for (int r = 0; r < rounds; r++) {
        size_t pos = len ? (size_t)(rnd() % len) : 0;
        switch (rnd() % 6) {
        case 0: /* flip a bit */
            if (len)
                b[pos] = (char)(b[pos] ^ (1 << (rnd() % 8)));
            break;
        case 1: /* random byte */
            if (len)
                b[pos] = (char)rnd();
            break;
        case 2: /* truncate */
            len = pos;
            break;
        case 3: /* delete a run */
            if (len) {
                size_t n = 1 + (size_t)(rnd() % 16);
                if (n > len - pos)
                    n = len - pos;
                memmove(b + pos, b + pos + n, len - pos - n);
                len -= n;
            }
            break;
        default: { /* insert a token */
            const char *t = tokens[rnd() % SF_ARRAY_LEN(tokens)];
            size_t n = strlen(t);
            if (len + n > cap) {
                cap = (len + n) * 2;
                b = realloc(b, cap);
                if (b == NULL)
                    exit(2);
            }
            memmove(b + pos + n, b + pos, len - pos);
            memcpy(b + pos, t, n);
            len += n;
            break;
        }
        }
    }
    *out_len = len;
    return b;
}

int main(int argc, char **argv)
{
    int64_t iterations = 100000, seedv = 1;
    int i = 1;

    for (; i < argc && argv[i][0] == '-'; i += 2) {
        if (i + 1 >= argc) {
            fprintf(stderr, "usage: %s [-n ITERATIONS] [-s SEED] PATH...\n", argv[0]);
            return 2;
        }
        if (strcmp(argv[i], "-n") == 0 &&
            sf_str_to_i64(argv[i + 1], 0, INT64_MAX, &iterations) == 0)
            continue;
        if (strcmp(argv[i], "-s") == 0 && sf_str_to_i64(argv[i + 1], 1, INT64_MAX, &seedv) == 0)
            continue;
        fprintf(stderr, "bad option \"%s\"\n", argv[i]);
        return 2;
    }
    for (; i < argc; i++)
        add_path(argv[i]);
    if (nseeds == 0) {
        fprintf(stderr, "no corpus files\n");
        return 2;
    }
    rng_state = (uint64_t)seedv * 0x9E3779B97F4A7C15ULL;
    for (size_t k = 0; k < nseeds; k++)
        LLVMFuzzerTestOneInput((const uint8_t *)seeds[k].data, seeds[k].len);
    for (int64_t n = 0; n < iterations; n++) {
        size_t len;
        char *m = mutate(&seeds[rnd() % nseeds], &len);
        LLVMFuzzerTestOneInput((const uint8_t *)m, len);
        free(m);
    }
    printf("fuzz_msg: %zu corpus files, %lld mutations, seed %lld: ok\n", nseeds,
           (long long)iterations, (long long)seedv);
    for (size_t k = 0; k < nseeds; k++)
        free(seeds[k].data);
    free(seeds);
    return 0;
}
#endif
