/*
 * sf-test-consume: reads a whole topic (every partition, from the beginning
 * up to the high watermark taken at start) and prints one line per message.
 *
 *   sf-test-consume --brokers B --topic T [--format cid|key|dlq]
 *                   [--timeout-ms MS] [--summary FILE]
 *
 * --summary FILE: writes "high=H low=L read=R": the sum of the partitions'
 * high and low watermarks and the messages printed. L > 0 means the broker
 * no longer has the first L messages (the dev broker, librdkafka's mock
 * cluster, keeps at most 5 MB per partition and evicts older data); they
 * are also reported on stderr, so a short count is never mistaken for loss.
 *
 * cid: the event's correlationid (or "-" when the value is not such JSON)
 * key: the message key
 * ts:  the message timestamp (ms since the epoch)
 * dlq: key \t sha256(value) \t len \t reason \t source-topic \t
 *      source-offset \t service \t truncated
 * Exits 0 when the end was reached within the timeout, else 1.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <librdkafka/rdkafka.h>
#include <openssl/sha.h>

#include "sf_log.h"
#include "sf_util.h"

static void print_header(rd_kafka_message_t *m, const char *name)
{
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL;
    size_t len = 0;

    if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get_last(h, name, &v, &len) == RD_KAFKA_RESP_ERR_NO_ERROR && v)
        fwrite(v, 1, len, stdout);
    else
        fputs("-", stdout);
}

static void print_msg(rd_kafka_message_t *m, const char *format)
{
    if (!strcmp(format, "ts")) {
        rd_kafka_timestamp_type_t tt;

        printf("%" PRId64 "\n", (int64_t)rd_kafka_message_timestamp(m, &tt));
    } else if (!strcmp(format, "key")) {
        if (m->key)
            fwrite(m->key, 1, m->key_len, stdout);
        fputc('\n', stdout);
    } else if (!strcmp(format, "dlq")) {
        unsigned char d[SHA256_DIGEST_LENGTH];

        if (m->key)
            fwrite(m->key, 1, m->key_len, stdout);
        SHA256(m->payload ? m->payload : (const void *)"", m->len, d);
        fputc('\t', stdout);
        for (size_t i = 0; i < sizeof(d); i++)
            printf("%02x", d[i]);
        printf("\t%zu\t", m->len);
        print_header(m, "scmflow-reason");
        fputc('\t', stdout);
        print_header(m, "scmflow-source-topic");
        fputc('\t', stdout);
        print_header(m, "scmflow-source-offset");
        fputc('\t', stdout);
        print_header(m, "scmflow-service");
        fputc('\t', stdout);
        print_header(m, "scmflow-truncated");
        fputc('\n', stdout);
    } else {
        cJSON *j = cJSON_ParseWithLength(m->payload, m->len);
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "correlationid");

        puts(cJSON_IsString(c) ? c->valuestring : "-");
        cJSON_Delete(j);
    }
}

int main(int argc, char **argv)
{
    const char *brokers = NULL, *topic = NULL, *format = "cid", *summary = NULL;
    int64_t low_sum = 0, high_sum = 0, nread = 0;
    int64_t timeout = 60000;
    char errstr[512];
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk = NULL;
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_t *rkt = NULL;
    rd_kafka_topic_partition_list_t *asg = NULL;
    int64_t *hi = NULL;
    int nparts = 0, left = 0, rc = 1;
    int64_t deadline;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--brokers")) brokers = argv[i + 1];
        else if (!strcmp(argv[i], "--topic")) topic = argv[i + 1];
        else if (!strcmp(argv[i], "--format")) format = argv[i + 1];
        else if (!strcmp(argv[i], "--summary")) summary = argv[i + 1];
        else if (!strcmp(argv[i], "--timeout-ms") && sf_str_to_i64(argv[i + 1], 1, INT32_MAX, &timeout) == 0) ;
        else {
            fprintf(stderr, "sf-test-consume: bad option %s\n", argv[i]);
            return 2;
        }
    }
    if (!brokers || !topic)
        return 2;
    deadline = sf_now_mono_ms() + timeout;
    conf = rd_kafka_conf_new();
    /* librdkafka logs through sf_log: whole lines, never raw stderr. */
    rd_kafka_conf_set_log_cb(conf, sf_log_rdkafka_cb);
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr)) ||
        rd_kafka_conf_set(conf, "group.id", "sf-test-consume", errstr, sizeof(errstr)) ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr)) ||
        rd_kafka_conf_set(conf, "receive.message.max.bytes", "200000000", errstr, sizeof(errstr))) {
        fprintf(stderr, "sf-test-consume: %s\n", errstr);
        return 1;
    }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "sf-test-consume: %s\n", errstr);
        return 1;
    }
    rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) || md->topic_cnt != 1 || md->topics[0].err) {
        fprintf(stderr, "sf-test-consume: no metadata for topic %s\n", topic);
        goto out;
    }
    nparts = md->topics[0].partition_cnt;
    hi = calloc((size_t)nparts + 1, sizeof(*hi));
    asg = rd_kafka_topic_partition_list_new(nparts);
    for (int p = 0; p < nparts; p++) {
        int64_t lo = 0;
        int32_t id = md->topics[0].partitions[p].id;

        if (rd_kafka_query_watermark_offsets(rk, topic, id, &lo, &hi[p], 10000)) {
            fprintf(stderr, "sf-test-consume: no watermarks for %s [%d]\n", topic, (int)id);
            goto out;
        }
        low_sum += lo;
        high_sum += hi[p];
        if (hi[p] > lo) {
            rd_kafka_topic_partition_list_add(asg, topic, id)->offset = RD_KAFKA_OFFSET_BEGINNING;
            left++;
        } else {
            hi[p] = -1; /* empty: nothing to read */
        }
    }
    if (left > 0 && rd_kafka_assign(rk, asg)) {
        fprintf(stderr, "sf-test-consume: assign failed\n");
        goto out;
    }
    while (left > 0 && sf_now_mono_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        int idx = -1;

        if (!m)
            continue;
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        for (int p = 0; p < nparts; p++)
            if (md->topics[0].partitions[p].id == m->partition)
                idx = p;
        if (idx >= 0 && hi[idx] >= 0 && m->offset < hi[idx]) {
            print_msg(m, format);
            nread++;
            if (m->offset >= hi[idx] - 1) {
                hi[idx] = -1;
                left--;
            }
        }
        rd_kafka_message_destroy(m);
    }
    if (left > 0) {
        fprintf(stderr, "sf-test-consume: timed out with %d partition(s) unread\n", left);
        goto out;
    }
    rc = 0;
out:
    fflush(stdout);
    if (low_sum > 0)
        fprintf(stderr, "sf-test-consume: %s: %" PRId64 " message(s) evicted by the broker before reading (low watermarks > 0)\n",
                topic, low_sum);
    if (summary) {
        FILE *sf = fopen(summary, "w");

        if (!sf || fprintf(sf, "high=%" PRId64 " low=%" PRId64 " read=%" PRId64 "\n", high_sum, low_sum, nread) < 0)
            rc = 1;
        if (sf && fclose(sf) != 0)
            rc = 1;
    }
    if (asg)
        rd_kafka_topic_partition_list_destroy(asg);
    free(hi);
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    return rc;
}
