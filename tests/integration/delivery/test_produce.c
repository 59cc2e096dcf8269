/*
 * sf-test-produce: writes test input for the delivery tests.
 *
 *   sf-test-produce --brokers B --topic T --count N [--start S]
 *                   [--dup-every K] [--poison-every K] [--big-bytes B]
 *                   [--timeout-ms MS] [--poison-log FILE]
 *
 * Message i (S <= i < S+N) is a CloudEvent "scmflow.test.item" with id
 * "item-<i>", key "k<i>", data {"n": i}. --dup-every K sends every K-th
 * message twice (same id). --poison-every K inserts, after every K-th
 * message, one poison message cycling through: garbage bytes, missing
 * data.n, wrong type of data.n, invalid UTF-8, and (when --big-bytes > 0)
 * one message of that many bytes. Each poison's key and the SHA-256 of its
 * bytes are written to --poison-log ("<key>\t<sha256>\t<len>\t<kind>").
 * Exits 0 when every message was acknowledged within the timeout.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <openssl/sha.h>

#include "sf_log.h"
#include "sf_util.h"

static int g_failed;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *ud)
{
    (void)rk;
    (void)ud;
    if (m->err) {
        g_failed++;
        fprintf(stderr, "sf-test-produce: delivery failed: %s\n", rd_kafka_err2str(m->err));
    }
}

static int produce(rd_kafka_t *rk, const char *topic, const char *key, const void *v, size_t len)
{
    for (;;) {
        rd_kafka_resp_err_t e =
            rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
                              RD_KAFKA_V_VALUE((void *)v, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_END);

        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            return 0;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fprintf(stderr, "sf-test-produce: %s\n", rd_kafka_err2str(e));
            return -1;
        }
        rd_kafka_poll(rk, 50);
    }
}

static void log_poison(FILE *f, const char *key, const void *v, size_t len, const char *kind)
{
    unsigned char d[SHA256_DIGEST_LENGTH];

    if (!f)
        return;
    SHA256(v, len, d);
    fprintf(f, "%s\t", key);
    for (size_t i = 0; i < sizeof(d); i++)
        fprintf(f, "%02x", d[i]);
    fprintf(f, "\t%zu\t%s\n", len, kind);
}

int main(int argc, char **argv)
{
    const char *brokers = NULL, *topic = NULL, *plog = NULL;
    int64_t count = 0, start = 0, dup = 0, poison = 0, big = 0, timeout = 60000;
    char errstr[512], maxb[32];
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;
    FILE *pf = NULL;
    int npoison = 0;
    int rc = 1;

    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        int bad = 0;

        if (!strcmp(a, "--brokers")) brokers = v;
        else if (!strcmp(a, "--topic")) topic = v;
        else if (!strcmp(a, "--poison-log")) plog = v;
        else if (!strcmp(a, "--count")) bad = sf_str_to_i64(v, 0, INT32_MAX, &count);
        else if (!strcmp(a, "--start")) bad = sf_str_to_i64(v, 0, INT32_MAX, &start);
        else if (!strcmp(a, "--dup-every")) bad = sf_str_to_i64(v, 0, INT32_MAX, &dup);
        else if (!strcmp(a, "--poison-every")) bad = sf_str_to_i64(v, 0, INT32_MAX, &poison);
        else if (!strcmp(a, "--big-bytes")) bad = sf_str_to_i64(v, 0, 64 * 1024 * 1024, &big);
        else if (!strcmp(a, "--timeout-ms")) bad = sf_str_to_i64(v, 1, INT32_MAX, &timeout);
        else bad = -1;
        if (bad) {
            fprintf(stderr, "sf-test-produce: bad option %s %s\n", a, v);
            return 2;
        }
    }
    if (!brokers || !topic) {
        fprintf(stderr, "usage: sf-test-produce --brokers B --topic T --count N [options]\n");
        return 2;
    }
    if (plog && !(pf = fopen(plog, "w"))) {
        perror(plog);
        return 1;
    }
    conf = rd_kafka_conf_new();
    /* librdkafka logs through sf_log: whole lines, never raw stderr. */
    rd_kafka_conf_set_log_cb(conf, sf_log_rdkafka_cb);
    (void)sf_snprintf(maxb, sizeof(maxb), "%lld", (long long)(big + 1000000));
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr)) ||
        rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, sizeof(errstr)) ||
        rd_kafka_conf_set(conf, "linger.ms", "5", errstr, sizeof(errstr)) ||
        rd_kafka_conf_set(conf, "message.max.bytes", maxb, errstr, sizeof(errstr))) {
        fprintf(stderr, "sf-test-produce: %s\n", errstr);
        return 1;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "sf-test-produce: %s\n", errstr);
        return 1;
    }
    for (int64_t i = start; i < start + count; i++) {
        char key[32], msg[512];
        int len = snprintf(msg, sizeof(msg),
                           "{\"specversion\":\"1.0\",\"id\":\"item-%lld\",\"source\":\"sf-test-produce\","
                           "\"type\":\"scmflow.test.item\",\"time\":\"2026-11-26T23:00:00Z\","
                           "\"datacontenttype\":\"application/json\",\"data\":{\"n\":%lld}}",
                           (long long)i, (long long)i);

        (void)sf_snprintf(key, sizeof(key), "k%lld", (long long)i);
        if (produce(rk, topic, key, msg, (size_t)len) < 0)
            goto out;
        if (dup > 0 && (i - start) % dup == dup - 1 && produce(rk, topic, key, msg, (size_t)len) < 0)
            goto out;
        if (poison > 0 && (i - start) % poison == poison - 1) {
            char pkey[32];
            int kind = npoison % (big > 0 ? 5 : 4);

            (void)sf_snprintf(pkey, sizeof(pkey), "poison-%d", npoison++);
            if (kind == 0) {
                static const unsigned char garbage[] = {0x00, 0xff, 0x13, 0x37, '{', 'x', 0x80, 0x01};

                log_poison(pf, pkey, garbage, sizeof(garbage), "garbage");
                if (produce(rk, topic, pkey, garbage, sizeof(garbage)) < 0)
                    goto out;
            } else if (kind == 1 || kind == 2) {
                len = snprintf(msg, sizeof(msg),
                               "{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"sf-test-produce\","
                               "\"type\":\"scmflow.test.item\",\"time\":\"2026-11-26T23:00:00Z\","
                               "\"datacontenttype\":\"application/json\",\"data\":{%s}}",
                               pkey, kind == 1 ? "\"m\":1" : "\"n\":\"seven\"");
                log_poison(pf, pkey, msg, (size_t)len, kind == 1 ? "missing-field" : "wrong-type");
                if (produce(rk, topic, pkey, msg, (size_t)len) < 0)
                    goto out;
            } else if (kind == 3) {
                len = snprintf(msg, sizeof(msg),
                               "{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"sf-test-produce\","
                               "\"type\":\"scmflow.test.item\",\"time\":\"2026-11-26T23:00:00Z\","
                               "\"datacontenttype\":\"application/json\",\"data\":{\"n\":1,\"s\":\"\xc3\x28\"}}",
                               pkey);
                log_poison(pf, pkey, msg, (size_t)len, "invalid-utf8");
                if (produce(rk, topic, pkey, msg, (size_t)len) < 0)
                    goto out;
            } else {
                char *b = malloc((size_t)big);

                if (!b)
                    goto out;
                memset(b, 'A', (size_t)big);
                b[0] = '{';
                log_poison(pf, pkey, b, (size_t)big, "big");
                if (produce(rk, topic, pkey, b, (size_t)big) < 0) {
                    free(b);
                    goto out;
                }
                free(b);
            }
        }
        rd_kafka_poll(rk, 0);
    }
    if (rd_kafka_flush(rk, (int)timeout) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "sf-test-produce: not all messages delivered within %lld ms\n", (long long)timeout);
        goto out;
    }
    rc = g_failed ? 1 : 0;
out:
    if (pf)
        fclose(pf);
    rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(rk, 100);
    rd_kafka_destroy(rk);
    return rc;
}
