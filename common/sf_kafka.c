/*
 * sf_kafka.c - librdkafka 2.0.2 wrappers: idempotent producer, cooperative
 * consumer with manual offset store, topic creation, dead-letter.
 */
#include "sf_kafka.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "sf_log.h"
#include "sf_util.h"

/* Extra property files are small; anything bigger is a mistake. */
#define KAFKA_CONFIG_FILE_MAX (64 * 1024)
/* What the dead-letter path sends at most as the value (the default
 * message.max.bytes of producer and broker is 1000000, headers included). */
#define DLQ_VALUE_MAX (900 * 1000)
#define DLQ_REASON_MAX 1024

struct sf_kafka_producer {
    rd_kafka_t *rk;
    atomic_uint_fast64_t delivered;
};

struct sf_kafka_consumer {
    rd_kafka_t *rk;
    size_t max_bytes;
    atomic_int assigned;
    atomic_bool rebalanced; /* the rebalance callback ran at least once */
};

struct sf_kafka_msg {
    rd_kafka_message_t *m;
    bool too_big;
};

/* Per-message delivery state handed to librdkafka as msg_opaque. */
typedef struct dr_slot {
    sf_kafka_dr_fn fn;
    void *opaque;
} dr_slot;

/* State of one synchronous produce. */
typedef struct sync_state {
    bool done;
    sf_error err;
    bool failed;
    bool abandoned; /* the waiter gave up: the callback frees the state */
} sync_state;

/* Classify a librdkafka error into our classes. */
static sf_err_class classify(rd_kafka_resp_err_t e)
{
    switch (e) {
    case RD_KAFKA_RESP_ERR__FATAL:
        return SF_ERR_FATAL;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
        return SF_ERR_INVALID;
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR__AUTHENTICATION:
    case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
        return SF_ERR_AUTH;
    default:
        return SF_ERR_TRANSIENT;
    }
}

static int kerr(sf_error *err, rd_kafka_resp_err_t e, const char *what)
{
    return sf_error_set(err, classify(e), (int)e, "%s: %s", what, rd_kafka_err2str(e));
}

/* Apply key=value lines of an extra properties file. Values are not echoed
 * in errors: they may be SASL passwords or key passphrases. */
static int conf_apply_file(rd_kafka_conf_t *conf, const char *path, sf_error *err)
{
    char *text = NULL;
    size_t len = 0;
    int rc = -1;
    char *save = NULL;
    int lineno = 0;

    if (sf_read_file(path, KAFKA_CONFIG_FILE_MAX, &text, &len) < 0) {
        sf_error_field(err, "SCMFLOW_KAFKA_CONFIG", "could not read Kafka configuration file \"%s\": %s",
                       path, errno == EFBIG ? "file too large" : strerror(errno));
        err ? (void)(err->cls = SF_ERR_FATAL) : (void)0;
        return -1;
    }
    for (char *line = text; line; line = save) {
        char *eq, *k, *v, *end;
        char errstr[512];

        /* Split by hand: strtok_r would skip blank lines and the line
         * numbers in errors would be wrong. */
        save = strchr(line, '\n');
        if (save)
            *save++ = '\0';
        lineno++;
        while (*line == ' ' || *line == '\t')
            line++;
        end = line + strlen(line);
        while (end > line && (end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        if (*line == '\0' || *line == '#')
            continue;
        eq = strchr(line, '=');
        if (!eq) {
            sf_error_set(err, SF_ERR_FATAL, 0, "%s: expected key=value in Kafka configuration file \"%s\"",
                         "SCMFLOW_KAFKA_CONFIG", path);
            goto out;
        }
        *eq = '\0';
        k = line;
        v = eq + 1;
        end = k + strlen(k);
        while (end > k && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        while (*v == ' ' || *v == '\t')
            v++;
        if (rd_kafka_conf_set(conf, k, v, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
            sf_error_set(err, SF_ERR_FATAL, 0, "SCMFLOW_KAFKA_CONFIG: \"%s\" line %d: property \"%s\": %s",
                         path, lineno, k, errstr);
            if (err)
                sf_snprintf(err->field, sizeof(err->field), "%s", k);
            goto out;
        }
    }
    rc = 0;
out:
    if (text) {
        sf_memzero(text, len);
        free(text);
    }
    return rc;
}

static int conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, sf_error *err)
{
    char errstr[512];

    if (rd_kafka_conf_set(conf, k, v, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
        return sf_error_set(err, SF_ERR_FATAL, 0, "could not set Kafka property \"%s\": %s", k, errstr);
    return 0;
}

/* Common base configuration. Our defaults first, then the file (operators
 * may override tuning), then the settings we must own. */
static rd_kafka_conf_t *conf_base(const sf_kafka_opts *opts, sf_error *err)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    if (!conf) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        return NULL;
    }
    if (!opts || !opts->brokers || !*opts->brokers) {
        sf_error_field(err, "SCMFLOW_KAFKA_BROKERS", "SCMFLOW_KAFKA_BROKERS: empty");
        goto fail;
    }
    rd_kafka_conf_set_log_cb(conf, sf_log_rdkafka_cb);
    if (conf_set(conf, "bootstrap.servers", opts->brokers, err) < 0 ||
        conf_set(conf, "client.id", opts->client_id ? opts->client_id : "scmflow", err) < 0)
        goto fail;
    if (opts->config_file && *opts->config_file && conf_apply_file(conf, opts->config_file, err) < 0)
        goto fail;
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* ---------------------------------------------------------------- topics */

/* Topics from `topics` missing in the cluster-wide metadata (no
 * auto-creation: all_topics listing). Returns count of missing, -1 error. */
static int missing_topics(rd_kafka_t *rk, const char *const *topics, size_t n, bool *missing, int timeout_ms,
                          sf_error *err)
{
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms);
    int cnt = 0;

    if (e)
        return kerr(err, e, "could not list topics");
    for (size_t i = 0; i < n; i++) {
        missing[i] = true;
        for (int t = 0; t < md->topic_cnt; t++)
            if (strcmp(md->topics[t].topic, topics[i]) == 0 && md->topics[t].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
                md->topics[t].partition_cnt > 0)
                missing[i] = false;
        cnt += missing[i];
    }
    rd_kafka_metadata_destroy(md);
    return cnt;
}

/* Fallback for clusters without a controller in their metadata (the
 * librdkafka 2.0.2 mock cluster, i.e. the dev broker): a metadata request
 * for the topic lets a broker with auto-creation create it. */
static int autocreate_topic(rd_kafka_t *rk, const char *topic, int timeout_ms, sf_error *err)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    int64_t end = sf_now_mono_ms() + timeout_ms;
    int rc = -1;

    if (!rkt)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "could not create topic handle \"%s\"", topic);
    while (sf_now_mono_ms() < end) {
        const rd_kafka_metadata_t *md = NULL;
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
        bool ok = !e && md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
                  md->topics[0].partition_cnt > 0;

        if (md)
            rd_kafka_metadata_destroy(md);
        if (ok) {
            rc = 0;
            break;
        }
        rd_kafka_poll(rk, 100);
    }
    if (rc < 0)
        sf_error_set(err, SF_ERR_TRANSIENT, 0, "could not create topic \"%s\": no controller and no auto-creation",
                     topic);
    rd_kafka_topic_destroy(rkt);
    return rc;
}

/* True when the metadata names a controller that is one of the brokers
 * (the 2.0.2 mock cluster answers controller id 0, which is no broker, and
 * an admin request would wait for it forever). */
static bool controller_known(rd_kafka_t *rk, int timeout_ms)
{
    int32_t cid = rd_kafka_controllerid(rk, timeout_ms < 2000 ? timeout_ms : 2000);
    const rd_kafka_metadata_t *md = NULL;
    bool found = false;

    if (cid < 0 || rd_kafka_metadata(rk, 0, NULL, &md, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return false;
    for (int i = 0; i < md->broker_cnt; i++)
        if (md->brokers[i].id == cid)
            found = true;
    rd_kafka_metadata_destroy(md);
    return found;
}

int sf_kafka_ensure_topics(const sf_kafka_opts *opts, const char *const *topics, int partitions,
                           int timeout_ms, sf_error *err)
{
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_t *rk = NULL;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_NewTopic_t **nt = NULL;
    rd_kafka_AdminOptions_t *ao = NULL;
    rd_kafka_event_t *ev = NULL;
    size_t n = 0;
    int rc = -1;
    char errstr[512];

    for (n = 0; topics && topics[n]; n++)
        ;
    if (n == 0)
        return 0;
    if (!(conf = conf_base(opts, err)))
        goto out;
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        sf_error_set(err, SF_ERR_FATAL, 0, "could not create Kafka admin client: %s", errstr);
        goto out;
    }
    conf = NULL; /* owned by rk now */
    {
        bool *miss = calloc(n, sizeof(*miss));
        int nmiss;

        if (!miss) {
            sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
            goto out;
        }
        nmiss = missing_topics(rk, topics, n, miss, timeout_ms, err);
        if (nmiss <= 0) {
            free(miss);
            rc = nmiss == 0 ? 0 : -1;
            goto out;
        }
        if (!controller_known(rk, timeout_ms)) {
            rc = 0;
            for (size_t i = 0; i < n && rc == 0; i++)
                if (miss[i])
                    rc = autocreate_topic(rk, topics[i], timeout_ms, err);
            free(miss);
            goto out;
        }
        free(miss);
    }
    q = rd_kafka_queue_new(rk);
    nt = calloc(n, sizeof(*nt));
    if (!q || !nt) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        /* -1: the broker's default replication factor (KIP-464). */
        nt[i] = rd_kafka_NewTopic_new(topics[i], partitions, -1, errstr, sizeof(errstr));
        if (!nt[i]) {
            sf_error_set(err, SF_ERR_INVALID, 0, "invalid topic \"%s\": %s", topics[i], errstr);
            goto out;
        }
    }
    ao = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    if (ao && rd_kafka_AdminOptions_set_operation_timeout(ao, timeout_ms, errstr, sizeof(errstr)))
        sf_log_debug("kafka: could not set admin operation timeout: %s", errstr);
    if (ao && rd_kafka_AdminOptions_set_request_timeout(ao, timeout_ms, errstr, sizeof(errstr)))
        sf_log_debug("kafka: could not set admin request timeout: %s", errstr);
    rd_kafka_CreateTopics(rk, nt, n, ao, q);
    ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
    if (!ev) {
        sf_error_set(err, SF_ERR_TRANSIENT, 0, "could not create topics: no answer from Kafka within %d ms",
                     timeout_ms);
        goto out;
    }
    if (rd_kafka_event_error(ev)) {
        kerr(err, rd_kafka_event_error(ev), "could not create topics");
        goto out;
    }
    {
        const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
        size_t cnt = 0;
        const rd_kafka_topic_result_t **tr = res ? rd_kafka_CreateTopics_result_topics(res, &cnt) : NULL;

        for (size_t i = 0; i < cnt; i++) {
            rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tr[i]);

            if (e == RD_KAFKA_RESP_ERR_NO_ERROR || e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
                continue;
            sf_error_set(err, classify(e), (int)e, "could not create topic \"%s\": %s",
                         rd_kafka_topic_result_name(tr[i]),
                         rd_kafka_topic_result_error_string(tr[i])
                             ? rd_kafka_topic_result_error_string(tr[i])
                             : rd_kafka_err2str(e));
            goto out;
        }
    }
    rc = 0;
out:
    if (ev)
        rd_kafka_event_destroy(ev);
    if (ao)
        rd_kafka_AdminOptions_destroy(ao);
    if (nt) {
        for (size_t i = 0; i < n; i++)
            if (nt[i])
                rd_kafka_NewTopic_destroy(nt[i]);
        free(nt);
    }
    if (q)
        rd_kafka_queue_destroy(q);
    if (rk)
        rd_kafka_destroy(rk);
    if (conf)
        rd_kafka_conf_destroy(conf);
    return rc;
}

/* -------------------------------------------------------------- producer */

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *ud)
{
    sf_kafka_producer *p = ud;
    dr_slot *slot = m->_private;

    (void)rk;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
        atomic_fetch_add(&p->delivered, 1);
    if (!slot)
        return;
    if (slot->fn) {
        if (m->err) {
            sf_error e;

            sf_error_clear(&e);
            kerr(&e, m->err, "delivery failed");
            slot->fn(slot->opaque, &e);
        } else {
            slot->fn(slot->opaque, NULL);
        }
    }
    free(slot);
}

static void error_cb(rd_kafka_t *rk, int code, const char *reason, void *ud)
{
    (void)ud;
    (void)rk;
    /* Library code: the worker decides what is loud. Fatal errors are
     * picked up by sf_kafka_producer_fatal()/sf_kafka_poll(). */
    sf_log_info("kafka: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)code), reason);
}

sf_kafka_producer *sf_kafka_producer_new(const sf_kafka_opts *opts, sf_error *err)
{
    sf_kafka_producer *p = calloc(1, sizeof(*p));
    rd_kafka_conf_t *conf = NULL;
    char errstr[512];

    if (!p) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        return NULL;
    }
    if (!(conf = conf_base(opts, err)))
        goto fail;
    if (conf_set(conf, "enable.idempotence", "true", err) < 0 || conf_set(conf, "acks", "all", err) < 0 ||
        conf_set(conf, "linger.ms", "5", err) < 0 ||
        /* Bounded, so a flush of 60 s always ends with every report. */
        conf_set(conf, "message.timeout.ms", "30000", err) < 0)
        goto fail;
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_opaque(conf, p);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!p->rk) {
        sf_error_set(err, SF_ERR_FATAL, 0, "could not create Kafka producer: %s", errstr);
        goto fail;
    }
    return p;
fail:
    if (conf)
        rd_kafka_conf_destroy(conf);
    free(p);
    return NULL;
}

void sf_kafka_producer_free(sf_kafka_producer *p)
{
    if (!p)
        return;
    if (rd_kafka_flush(p->rk, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* Fail the rest so every delivery callback runs (and frees its slot). */
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(p->rk, 100);
    }
    rd_kafka_destroy(p->rk);
    free(p);
}

bool sf_kafka_producer_fatal(sf_kafka_producer *p, sf_error *err)
{
    char buf[512];
    rd_kafka_resp_err_t e;

    if (!p)
        return false;
    e = rd_kafka_fatal_error(p->rk, buf, sizeof(buf));
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
        return false;
    sf_error_set(err, SF_ERR_FATAL, (int)e, "fatal Kafka producer error: %s: %s", rd_kafka_err2name(e), buf);
    return true;
}

uint64_t sf_kafka_producer_delivered(const sf_kafka_producer *p)
{
    return p ? (uint64_t)atomic_load(&((sf_kafka_producer *)p)->delivered) : 0;
}

int sf_kafka_produce(sf_kafka_producer *p, const char *topic, const char *key, const void *value,
                     size_t len, const sf_kafka_header *headers, size_t nheaders, sf_kafka_dr_fn dr,
                     void *opaque, sf_error *err)
{
    dr_slot *slot = NULL;
    rd_kafka_headers_t *hdrs = NULL;
    rd_kafka_resp_err_t e;
    int64_t deadline = sf_now_mono_ms() + 1000;

    if (sf_kafka_producer_fatal(p, err))
        return -1;
    slot = calloc(1, sizeof(*slot));
    if (!slot)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    slot->fn = dr;
    slot->opaque = opaque;
    for (;;) {
        if (nheaders > 0) {
            hdrs = rd_kafka_headers_new(nheaders);
            for (size_t i = 0; i < nheaders; i++)
                rd_kafka_header_add(hdrs, headers[i].name, -1, headers[i].value,
                                    headers[i].value ? (ssize_t)headers[i].len : 0);
        }
        e = rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(topic),
                              RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                              RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(slot), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            return 0; /* headers and slot now belong to librdkafka */
        if (hdrs) {
            rd_kafka_headers_destroy(hdrs);
            hdrs = NULL;
        }
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || sf_now_mono_ms() >= deadline)
            break;
        /* Backpressure: serve delivery reports to make room. */
        rd_kafka_poll(p->rk, 50);
    }
    free(slot);
    return kerr(err, e, "could not produce");
}

int sf_kafka_producer_poll(sf_kafka_producer *p, int timeout_ms)
{
    return p ? rd_kafka_poll(p->rk, timeout_ms) : 0;
}

int sf_kafka_flush(sf_kafka_producer *p, int timeout_ms, sf_error *err)
{
    rd_kafka_resp_err_t e = rd_kafka_flush(p->rk, timeout_ms);

    if (sf_kafka_producer_fatal(p, err))
        return -1;
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        return sf_error_set(err, SF_ERR_TRANSIENT, (int)e, "could not flush Kafka producer within %d ms: %d left",
                            timeout_ms, rd_kafka_outq_len(p->rk));
    return 0;
}

static void sync_dr(void *opaque, const sf_error *e)
{
    sync_state *st = opaque;

    if (st->abandoned) {
        free(st);
        return;
    }
    st->done = true;
    if (e) {
        st->failed = true;
        st->err = *e;
    }
}

int sf_kafka_produce_sync(sf_kafka_producer *p, const char *topic, const char *key,
                          const void *value, size_t len, const sf_kafka_header *headers,
                          size_t nheaders, int timeout_ms, sf_error *err)
{
    sync_state *st = calloc(1, sizeof(*st));
    int64_t deadline = sf_now_mono_ms() + timeout_ms;

    if (!st)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    if (sf_kafka_produce(p, topic, key, value, len, headers, nheaders, sync_dr, st, err) < 0) {
        free(st);
        return -1;
    }
    while (!st->done) {
        int64_t left = deadline - sf_now_mono_ms();

        if (left <= 0) {
            /* The report will still come later: hand the state to the
             * callback, which frees it (callbacks run on polling threads
             * only, i.e. ours). */
            st->abandoned = true;
            return sf_error_set(err, SF_ERR_TRANSIENT, 0,
                                "no delivery report from Kafka within %d ms for topic \"%s\"", timeout_ms,
                                topic);
        }
        rd_kafka_poll(p->rk, (int)(left < 100 ? left : 100));
    }
    if (st->failed) {
        if (err)
            *err = st->err;
        free(st);
        return -1;
    }
    free(st);
    return 0;
}

/* -------------------------------------------------------------- consumer */

static void update_assigned(sf_kafka_consumer *c, rd_kafka_t *rk)
{
    rd_kafka_topic_partition_list_t *a = NULL;

    if (rd_kafka_assignment(rk, &a) == RD_KAFKA_RESP_ERR_NO_ERROR && a) {
        atomic_store(&c->assigned, a->cnt);
        rd_kafka_topic_partition_list_destroy(a);
    }
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t e, rd_kafka_topic_partition_list_t *parts,
                         void *ud)
{
    sf_kafka_consumer *c = ud;
    bool coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t *kerror = NULL;
    rd_kafka_resp_err_t ret = RD_KAFKA_RESP_ERR_NO_ERROR;

    if (e == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        sf_log_info("kafka: %d partition(s) assigned", parts->cnt);
        if (coop)
            kerror = rd_kafka_incremental_assign(rk, parts);
        else
            ret = rd_kafka_assign(rk, parts);
    } else {
        sf_log_info("kafka: %d partition(s) revoked (%s)", parts->cnt, rd_kafka_err2name(e));
        if (coop)
            kerror = rd_kafka_incremental_unassign(rk, parts);
        else
            ret = rd_kafka_assign(rk, NULL);
    }
    if (kerror) {
        sf_log_info("kafka: rebalance: %s", rd_kafka_error_string(kerror));
        rd_kafka_error_destroy(kerror);
    } else if (ret) {
        sf_log_info("kafka: rebalance: %s", rd_kafka_err2str(ret));
    }
    atomic_store(&c->rebalanced, true);
    update_assigned(c, rk);
}

sf_kafka_consumer *sf_kafka_consumer_new(const sf_kafka_opts *opts, const char *group_id,
                                         const char *const *topics, sf_error *err)
{
    return sf_kafka_consumer_new_ex(opts, group_id, topics, 0, err);
}

sf_kafka_consumer *sf_kafka_consumer_new_ex(const sf_kafka_opts *opts, const char *group_id,
                                            const char *const *topics,
                                            int64_t session_timeout_ms, sf_error *err)
{
    sf_kafka_consumer *c = calloc(1, sizeof(*c));
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_topic_partition_list_t *subs = NULL;
    rd_kafka_resp_err_t e;
    char errstr[512];
    char maxb[32];

    if (!c) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        return NULL;
    }
    c->max_bytes = opts && opts->max_message_bytes ? opts->max_message_bytes : SF_KAFKA_DEFAULT_MAX_MESSAGE;
    if (!(conf = conf_base(opts, err)))
        goto fail;
    /* librdkafka must still be able to receive an over-limit message so it
     * can be dead-lettered instead of blocking the partition. */
    sf_snprintf(maxb, sizeof(maxb), "%zu", c->max_bytes * 2 + 100000 > 100000000 ? c->max_bytes * 2 + 100000 : 100000000);
    if (conf_set(conf, "group.id", group_id, err) < 0 ||
        conf_set(conf, "enable.auto.offset.store", "false", err) < 0 ||
        conf_set(conf, "enable.auto.commit", "true", err) < 0 ||
        conf_set(conf, "auto.commit.interval.ms", "1000", err) < 0 ||
        conf_set(conf, "auto.offset.reset", "earliest", err) < 0 ||
        conf_set(conf, "enable.partition.eof", "false", err) < 0 ||
        conf_set(conf, "receive.message.max.bytes", maxb, err) < 0 ||
        conf_set(conf, "partition.assignment.strategy", "cooperative-sticky", err) < 0)
        goto fail;
    if (session_timeout_ms > 0) {
        char st[32], hb[32];
        int64_t hbms = session_timeout_ms / 3;

        /* The heartbeat must be well below the session timeout or the
         * member is evicted while healthy. */
        if (hbms > 3000)
            hbms = 3000;
        if (hbms < 1)
            hbms = 1;
        (void)sf_snprintf(st, sizeof(st), "%" PRId64, session_timeout_ms);
        (void)sf_snprintf(hb, sizeof(hb), "%" PRId64, hbms);
        if (conf_set(conf, "session.timeout.ms", st, err) < 0 ||
            conf_set(conf, "heartbeat.interval.ms", hb, err) < 0)
            goto fail;
    }
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_opaque(conf, c);
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!c->rk) {
        sf_error_set(err, SF_ERR_FATAL, 0, "could not create Kafka consumer: %s", errstr);
        goto fail;
    }
    conf = NULL;
    rd_kafka_poll_set_consumer(c->rk);
    subs = rd_kafka_topic_partition_list_new(4);
    for (size_t i = 0; topics && topics[i]; i++)
        rd_kafka_topic_partition_list_add(subs, topics[i], RD_KAFKA_PARTITION_UA);
    e = rd_kafka_subscribe(c->rk, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (e) {
        kerr(err, e, "could not subscribe");
        goto fail;
    }
    return c;
fail:
    if (conf)
        rd_kafka_conf_destroy(conf);
    if (c->rk)
        rd_kafka_destroy(c->rk);
    free(c);
    return NULL;
}

int sf_kafka_poll(sf_kafka_consumer *c, int timeout_ms, sf_kafka_msg **out, sf_error *err)
{
    rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, timeout_ms);
    sf_kafka_msg *km;

    if (!m)
        return 0;
    if (m->err) {
        rd_kafka_resp_err_t e = m->err;

        if (e == RD_KAFKA_RESP_ERR__FATAL) {
            char buf[512];
            rd_kafka_resp_err_t fe = rd_kafka_fatal_error(c->rk, buf, sizeof(buf));

            rd_kafka_message_destroy(m);
            return sf_error_set(err, SF_ERR_FATAL, (int)fe, "fatal Kafka consumer error: %s: %s",
                                rd_kafka_err2name(fe), buf);
        }
        if (e != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            sf_log_debug("kafka: consumer: %s", rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
        return 0;
    }
    km = calloc(1, sizeof(*km));
    if (!km) {
        /* Not stored, so it comes back after a restart or rebalance. */
        rd_kafka_message_destroy(m);
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    }
    km->m = m;
    km->too_big = m->len > c->max_bytes;
    *out = km;
    return 1;
}

int sf_kafka_store_offset(sf_kafka_consumer *c, const sf_kafka_msg *msg, sf_error *err)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_t *tp;
    rd_kafka_resp_err_t e;

    if (!l)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    tp = rd_kafka_topic_partition_list_add(l, rd_kafka_topic_name(msg->m->rkt), msg->m->partition);
    tp->offset = msg->m->offset + 1;
    e = rd_kafka_offsets_store(c->rk, l);
    if (!e && tp->err)
        e = tp->err;
    /* Always freed: a leaked list can make rd_kafka_destroy() hang. */
    rd_kafka_topic_partition_list_destroy(l);
    if (e)
        return kerr(err, e, "could not store offset");
    return 0;
}

int sf_kafka_commit(sf_kafka_consumer *c, sf_error *err)
{
    rd_kafka_resp_err_t e = rd_kafka_commit(c->rk, NULL, 0);

    if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
        return kerr(err, e, "could not commit offsets");
    return 0;
}

bool sf_kafka_consumer_assigned(sf_kafka_consumer *c)
{
    return c && atomic_load(&c->assigned) > 0;
}

int sf_kafka_consumer_assignment_count(sf_kafka_consumer *c)
{
    return c ? atomic_load(&c->assigned) : 0;
}

int sf_kafka_consumer_lag(sf_kafka_consumer *c, int64_t *lag)
{
    rd_kafka_topic_partition_list_t *a = NULL;
    int64_t total = 0;

    if (!c || rd_kafka_assignment(c->rk, &a) != RD_KAFKA_RESP_ERR_NO_ERROR || !a)
        return -1;
    rd_kafka_position(c->rk, a);
    for (int i = 0; i < a->cnt; i++) {
        int64_t lo = 0, hi = 0;

        if (rd_kafka_get_watermark_offsets(c->rk, a->elems[i].topic, a->elems[i].partition, &lo, &hi) ||
            hi < 0)
            continue;
        if (a->elems[i].offset >= 0 && hi > a->elems[i].offset)
            total += hi - a->elems[i].offset;
        else if (a->elems[i].offset < 0 && hi > lo)
            total += hi - lo;
    }
    rd_kafka_topic_partition_list_destroy(a);
    *lag = total;
    return 0;
}

void sf_kafka_consumer_free(sf_kafka_consumer *c)
{
    rd_kafka_resp_err_t e;

    if (!c)
        return;
    /* librdkafka < 2.3.0 aborts in rd_kafka_destroy() when a
     * cooperative-sticky member is destroyed before its first assignment
     * (assertion `assignor_state' in rdkafka_sticky_assignor.c, librdkafka
     * issue #4312). Let the join finish first (bounded); messages polled
     * meanwhile are dropped unstored, so they are redelivered. */
    if (!atomic_load(&c->rebalanced)) {
        int64_t end = sf_now_mono_ms() + 15000;

        while (!atomic_load(&c->rebalanced) && sf_now_mono_ms() < end) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, 100);

            if (m)
                rd_kafka_message_destroy(m);
        }
        if (!atomic_load(&c->rebalanced)) {
            /* Leak the handle rather than abort the process: it is
             * exiting anyway (documented in sf_kafka.h). */
            sf_log_info("kafka: consumer never joined its group; not destroying it (librdkafka #4312)");
            rd_kafka_unsubscribe(c->rk);
            free(c);
            return;
        }
    }
    e = rd_kafka_commit(c->rk, NULL, 0);
    if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
        sf_log_debug("kafka: final commit: %s", rd_kafka_err2str(e));
    rd_kafka_consumer_close(c->rk);
    rd_kafka_destroy(c->rk);
    free(c);
}

/* -------------------------------------------------------------- messages */

const char *sf_kafka_msg_topic(const sf_kafka_msg *m)
{
    return rd_kafka_topic_name(m->m->rkt);
}

int32_t sf_kafka_msg_partition(const sf_kafka_msg *m)
{
    return m->m->partition;
}

int64_t sf_kafka_msg_offset(const sf_kafka_msg *m)
{
    return m->m->offset;
}

const void *sf_kafka_msg_key(const sf_kafka_msg *m, size_t *len)
{
    if (len)
        *len = m->m->key ? m->m->key_len : 0;
    return m->m->key;
}

const void *sf_kafka_msg_value(const sf_kafka_msg *m, size_t *len)
{
    if (len)
        *len = m->m->payload ? m->m->len : 0;
    return m->m->payload;
}

bool sf_kafka_msg_too_big(const sf_kafka_msg *m)
{
    return m->too_big;
}

void sf_kafka_msg_free(sf_kafka_msg *m)
{
    if (!m)
        return;
    rd_kafka_message_destroy(m->m);
    free(m);
}

/* ------------------------------------------------------------ dead-letter */

int sf_kafka_deadletter(sf_kafka_producer *p, const char *dlq_topic, const sf_kafka_msg *msg,
                        const char *service, const char *reason, int timeout_ms, sf_error *err)
{
    char part[16], off[32], olen[32], why[DLQ_REASON_MAX + 1];
    char *key = NULL;
    size_t klen = 0, vlen = 0;
    const void *kb = sf_kafka_msg_key(msg, &klen);
    const void *vb = sf_kafka_msg_value(msg, &vlen);
    const char *topic = sf_kafka_msg_topic(msg);
    bool cut = vlen > DLQ_VALUE_MAX;
    sf_kafka_header h[7];
    size_t nh = 0;
    int rc;

    sf_snprintf(part, sizeof(part), "%" PRId32, sf_kafka_msg_partition(msg));
    sf_snprintf(off, sizeof(off), "%" PRId64, sf_kafka_msg_offset(msg));
    sf_snprintf(olen, sizeof(olen), "%zu", vlen);
    /* Cut silently: an over-long reason is still a reason. */
    (void)sf_snprintf(why, sizeof(why), "%s", reason ? reason : "unspecified");
    if (kb) {
        key = malloc(klen + 1);
        if (!key)
            return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        memcpy(key, kb, klen);
        key[klen] = '\0';
    }
    h[nh++] = (sf_kafka_header){SF_KAFKA_HDR_REASON, why, strlen(why)};
    h[nh++] = (sf_kafka_header){SF_KAFKA_HDR_SOURCE_TOPIC, topic, strlen(topic)};
    h[nh++] = (sf_kafka_header){SF_KAFKA_HDR_SOURCE_PARTITION, part, strlen(part)};
    h[nh++] = (sf_kafka_header){SF_KAFKA_HDR_SOURCE_OFFSET, off, strlen(off)};
    h[nh++] = (sf_kafka_header){SF_KAFKA_HDR_SERVICE, service ? service : "", service ? strlen(service) : 0};
    if (cut) {
        h[nh++] = (sf_kafka_header){SF_KAFKA_HDR_TRUNCATED, "true", 4};
        h[nh++] = (sf_kafka_header){SF_KAFKA_HDR_ORIGINAL_LENGTH, olen, strlen(olen)};
    }
    /* A key with a NUL inside would be cut by the producer's strlen: such
     * keys are kept only up to the NUL (the value carries the original). */
    rc = sf_kafka_produce_sync(p, dlq_topic, key, vb, cut ? DLQ_VALUE_MAX : vlen, h, nh, timeout_ms, err);
    free(key);
    return rc;
}

/* -------------------------------------------------------------- read back */

int sf_kafka_scan_tail(const sf_kafka_opts *opts, const char *topic, int per_partition,
                       const char *header, sf_kafka_header_fn fn, void *ud, int timeout_ms,
                       sf_error *err)
{
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_t *rkt = NULL;
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_partition_list_t *asg = NULL;
    int64_t *hi = NULL;
    int32_t *ids = NULL;
    int nparts = 0, left = 0, rc = -1;
    int64_t deadline = sf_now_mono_ms() + timeout_ms;
    rd_kafka_resp_err_t e;
    char errstr[512];

    if (!(conf = conf_base(opts, err)))
        goto out;
    if (conf_set(conf, "group.id", "scmflow-scan", err) < 0 || conf_set(conf, "enable.auto.commit", "false", err) < 0 ||
        conf_set(conf, "enable.auto.offset.store", "false", err) < 0 ||
        conf_set(conf, "receive.message.max.bytes", "100000000", err) < 0)
        goto out;
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!rk) {
        sf_error_set(err, SF_ERR_FATAL, 0, "could not create Kafka consumer: %s", errstr);
        goto out;
    }
    conf = NULL;
    rkt = rd_kafka_topic_new(rk, topic, NULL);
    e = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
    if (e) {
        kerr(err, e, "could not read topic metadata");
        goto out;
    }
    if (md->topic_cnt != 1 || md->topics[0].err) {
        rc = 0; /* no such topic yet: nothing was published */
        goto out;
    }
    nparts = md->topics[0].partition_cnt;
    hi = calloc((size_t)nparts + 1, sizeof(*hi));
    ids = calloc((size_t)nparts + 1, sizeof(*ids));
    asg = rd_kafka_topic_partition_list_new(nparts > 0 ? nparts : 1);
    if (!hi || !ids || !asg) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    for (int p = 0; p < nparts; p++) {
        int64_t lo = 0;

        ids[p] = md->topics[0].partitions[p].id;
        e = rd_kafka_query_watermark_offsets(rk, topic, ids[p], &lo, &hi[p], timeout_ms);
        if (e) {
            kerr(err, e, "could not read watermarks");
            goto out;
        }
        if (hi[p] > lo) {
            int64_t from = hi[p] - per_partition > lo ? hi[p] - per_partition : lo;

            rd_kafka_topic_partition_list_add(asg, topic, ids[p])->offset = from;
            left++;
        } else {
            hi[p] = -1;
        }
    }
    if (left > 0 && (e = rd_kafka_assign(rk, asg)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        kerr(err, e, "could not assign partitions");
        goto out;
    }
    while (left > 0) {
        int64_t now = sf_now_mono_ms();
        rd_kafka_message_t *m;
        int idx = -1;

        if (now >= deadline) {
            sf_error_set(err, SF_ERR_TRANSIENT, 0, "could not read the end of topic \"%s\" within %d ms", topic,
                         timeout_ms);
            goto out;
        }
        m = rd_kafka_consumer_poll(rk, (int)(deadline - now < 200 ? deadline - now : 200));
        if (!m)
            continue;
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        for (int p = 0; p < nparts; p++)
            if (ids[p] == m->partition)
                idx = p;
        if (idx >= 0 && hi[idx] >= 0 && m->offset < hi[idx]) {
            rd_kafka_headers_t *h = NULL;
            const void *v = NULL;
            size_t len = 0;

            if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR &&
                rd_kafka_header_get_last(h, header, &v, &len) == RD_KAFKA_RESP_ERR_NO_ERROR && v)
                fn(ud, v, len);
            if (m->offset >= hi[idx] - 1) {
                hi[idx] = -1;
                left--;
            }
        }
        rd_kafka_message_destroy(m);
    }
    rc = 0;
out:
    if (asg)
        rd_kafka_topic_partition_list_destroy(asg);
    free(hi);
    free(ids);
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    if (conf)
        rd_kafka_conf_destroy(conf);
    return rc;
}
