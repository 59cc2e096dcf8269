/*
 * sf_worker.c - the worker run loop (see sf_worker.h for the contract).
 */
#include "sf_worker.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "sf_db.h"
#include "sf_kafka.h"
#include "sf_log.h"
#include "sf_msg.h"
#include "sf_relay.h"
#include "sf_topics.h"

#if defined(__has_include)
#if __has_include("sf_metrics.h")
#include "sf_metrics.h"
#define HAVE_METRICS 1
#endif
#if __has_include("sf_http.h")
#include "sf_http.h"
#define HAVE_HTTP 1
#endif
#endif

#include "sf_util.h"

#define MAX_BATCH 1000
#define DLQ_TIMEOUT_MS 15000

static const sf_cfg_def worker_settings[] = {
    {"SCMFLOW_CONSUMER_GROUP", SF_CFG_STRING, "", 0, 0, NULL,
     "Kafka consumer group id (empty = scmflow-<service>)", false},
    {"SCMFLOW_KAFKA_MAX_MESSAGE_BYTES", SF_CFG_INT, "1048576", 1024, 64 * 1024 * 1024, NULL,
     "hard limit on a consumed message; larger ones go to the dead-letter topic", false},
    {"SCMFLOW_WORKER_BATCH", SF_CFG_INT, "100", 1, MAX_BATCH, NULL,
     "messages handled per DB transaction", false},
    {"SCMFLOW_WORKER_BATCH_WAIT", SF_CFG_DURATION, "5ms", 0, 10000, NULL,
     "longest wait to fill a batch", false},
    {"SCMFLOW_DB_CONNECT_TIMEOUT", SF_CFG_DURATION, "60s", 0, 3600000, NULL,
     "how long to retry the first database connection", false},
    {"SCMFLOW_RELAY_INTERVAL", SF_CFG_DURATION, "50ms", 1, 60000, NULL,
     "outbox relay period", false},
    {"SCMFLOW_KAFKA_SESSION_TIMEOUT", SF_CFG_DURATION, "0", 0, 3600000, NULL,
     "consumer group session timeout (failover time after a silent crash); 0 = librdkafka's 45s; "
     "consumer only", false},
    {"SCMFLOW_WORKER_DIRECT", SF_CFG_BOOL, "false", 0, 0, NULL,
     "benchmark only: handle without DB transaction, produce directly (at least once)", false},
};

/* The only process-wide state: set from the signal handler. */
static volatile sig_atomic_t g_signalled;

struct sf_worker {
    const sf_worker_def *def;
    sf_config *cfg;
    sf_cfg_def *defs;
    sf_db *db;
    sf_kafka_producer *prod;
    sf_kafka_consumer *cons;
    sf_relay *relay;
    sf_kafka_opts kopts;
    void *ud;
    char prefix[128];
    char group[192];
    char instance[192];
    char source[160];
    char dlq_topic[256];
    char events_topic[256];
    bool direct;
    _Atomic bool stop;     /* atomic: own-thread tasks read it */
    _Atomic bool kick;     /* run the relay at the next chance (task emitted) */
    int64_t last_domain_gauges; /* mono ms of the last domain gauge refresh */
    bool listening;        /* LISTEN on the outbox channel is active */
    atomic_bool db_ok;
    int64_t max_messages;  /* 0 = unlimited */
    int64_t idle_ms;       /* 0 = never */
    int64_t consumed;
    int direct_failed;     /* direct mode: failed deliveries in the batch */
    /* Outbox rows emitted by handlers of the current batch, written with
     * one statement just before COMMIT (one round trip per batch). */
    sf_buf ob_topic, ob_key, ob_payload;
    size_t ob_n;
#ifdef HAVE_HTTP
    sf_http *http;
#endif
};

/* One consumed message in a batch. */
typedef struct item {
    sf_kafka_msg *msg;
    sf_event *ev;     /* NULL: dead-lettered already */
    char *key;        /* NUL-terminated copy of the key */
    bool dlq_done;
    bool claimed;     /* new in the inbox in the current transaction */
    bool bad_pending; /* data invalid, dead-lettered, on_invalid_data not yet done */
    sf_error bad;     /* why the data is invalid (when bad_pending) */
} item;

/* An item the batch transaction still has to claim and handle. */
static bool item_live(const item *it)
{
    return it->ev != NULL && (!it->dlq_done || it->bad_pending);
}

struct sf_worker_ctx {
    sf_worker *w;
    item *it;
};

/* ------------------------------------------------------------ failpoints */

void sf_failpoint(const char *name)
{
    static _Atomic int hits[8];
    static const char *names[8];
    const char *fp = getenv("SCMFLOW_FAILPOINT");
    size_t nl;
    int64_t want = 1;
    int slot = -1;

    if (!fp || !*fp || !name)
        return;
    nl = strlen(name);
    if (strncmp(fp, name, nl) != 0 || (fp[nl] != '\0' && fp[nl] != ':'))
        return;
    if (fp[nl] == ':' && sf_str_to_i64(fp + nl + 1, 1, INT32_MAX, &want) < 0)
        return;
    /* A handful of distinct names per process is plenty for tests. */
    for (int i = 0; i < 8; i++) {
        if (names[i] == NULL || strcmp(names[i], name) == 0) {
            names[i] = name;
            slot = i;
            break;
        }
    }
    if (slot < 0)
        return;
    if (atomic_fetch_add(&hits[slot], 1) + 1 == want) {
        fprintf(stderr, "failpoint %s hit: killing the process\n", name);
        raise(SIGKILL);
    }
}

/* --------------------------------------------------------------- helpers */

static void metric_add(const char *name, const char *labels, double v)
{
#ifdef HAVE_METRICS
    sf_metrics_counter_add(name, labels, v);
#else
    (void)name;
    (void)labels;
    (void)v;
#endif
}

static void metric_gauge(const char *name, const char *labels, double v)
{
#ifdef HAVE_METRICS
    sf_metrics_gauge_set(name, labels, v);
#else
    (void)name;
    (void)labels;
    (void)v;
#endif
}

static void metrics_describe_all(void)
{
#ifdef HAVE_METRICS
    sf_metrics_describe("scmflow_messages_consumed_total", "counter", "messages consumed, by topic");
    sf_metrics_describe("scmflow_messages_deadlettered_total", "counter", "messages sent to the dead-letter topic");
    sf_metrics_describe("scmflow_messages_produced_total", "counter", "outbox rows published to Kafka");
    sf_metrics_describe("scmflow_outbox_backlog", "gauge", "unsent outbox rows");
    sf_metrics_describe("scmflow_consumer_lag", "gauge", "messages behind the high watermark (best effort)");
    sf_metrics_describe("scmflow_batch_duration_seconds", "histogram", "time to handle and commit one batch");
    sf_metrics_describe("scmflow_orders", "gauge", "orders by scmflow state (whole database)");
    sf_metrics_describe("scmflow_repository_certificates", "gauge", "active certificates in the repository");
    sf_metrics_describe("scmflow_repository_license_max", "gauge", "license count: maximum certificates in the repository");
#endif
}

static void on_signal(int sig)
{
    (void)sig;
    g_signalled = 1;
}

static bool stopping(const sf_worker *w)
{
    return w->stop || g_signalled;
}

/* Sleep in small steps so a signal ends it early. Used for retry backoff
 * only (waiting for a dependency), never to let things settle. */
static void backoff_sleep(const sf_worker *w, int64_t ms)
{
    int64_t end = sf_now_mono_ms() + ms;

    while (!stopping(w) && sf_now_mono_ms() < end) {
        struct timespec ts = {0, 20 * 1000 * 1000};

        nanosleep(&ts, NULL);
    }
}

static int64_t next_backoff(int64_t cur)
{
    int64_t nxt = cur * 2;

    if (nxt > 5000)
        nxt = 5000;
    /* Jitter so replicas do not retry in lockstep. */
    return nxt / 2 + (int64_t)(rand() % (int)(nxt / 2 + 1));
}

static char *dup_key(const sf_kafka_msg *m)
{
    size_t len = 0;
    const void *k = sf_kafka_msg_key(m, &len);
    char *s;

    if (!k)
        return NULL;
    s = malloc(len + 1);
    if (!s)
        return NULL;
    memcpy(s, k, len);
    s[len] = '\0';
    return s;
}

/* ------------------------------------------------------------- accessors */

sf_worker *sf_worker_ctx_worker(sf_worker_ctx *ctx) { return ctx->w; }
struct sf_db *sf_worker_db(sf_worker_ctx *ctx) { return ctx->w->db; }
const char *sf_worker_event_topic(sf_worker_ctx *ctx) { return sf_kafka_msg_topic(ctx->it->msg); }
int32_t sf_worker_event_partition(sf_worker_ctx *ctx) { return sf_kafka_msg_partition(ctx->it->msg); }
int64_t sf_worker_event_offset(sf_worker_ctx *ctx) { return sf_kafka_msg_offset(ctx->it->msg); }
const char *sf_worker_event_key(sf_worker_ctx *ctx) { return ctx->it->key; }
const sf_config *sf_worker_config(const sf_worker *w) { return w->cfg; }
/* The connection of an own-thread task, on that thread (see sf_worker_task). */
static _Thread_local sf_db *tls_task_db;

struct sf_db *sf_worker_dbh(sf_worker *w) { return tls_task_db ? tls_task_db : w->db; }
struct sf_kafka_producer *sf_worker_producer(sf_worker *w) { return w->prod; }
const char *sf_worker_topic_prefix(const sf_worker *w) { return w->prefix; }
const char *sf_worker_name(const sf_worker *w) { return w->def->name; }
const char *sf_worker_instance_id(const sf_worker *w) { return w->instance; }
const char *sf_worker_group_id(const sf_worker *w) { return w->group; }
void *sf_worker_ud(const sf_worker *w) { return w->ud; }
bool sf_worker_stop_requested(const sf_worker *w) { return stopping(w); }
void sf_worker_request_stop(sf_worker *w) { w->stop = true; }

const char *sf_worker_topic(const sf_worker *w, const char *suffix, char *buf, size_t size)
{
    (void)sf_snprintf(buf, size, "%s%s", w->prefix, suffix);
    return buf;
}

/* ------------------------------------------------------------------ emit */

static void direct_dr(void *opaque, const sf_error *e)
{
    sf_worker *w = opaque;

    if (e)
        w->direct_failed++;
}

static int outbox_buffer(sf_worker *w, const char *topic, const char *key, const char *payload, sf_error *err);

static int publish_full(sf_worker *w, const char *topic, const char *key, const char *type,
                        const cJSON *data, const char *correlationid, sf_error *err)
{
    char *buf = NULL;
    size_t len = 0;
    int rc;

    if (sf_event_encode(type, w->source, NULL, correlationid, data, &buf, &len, err) < 0)
        return -1;
    if (w->direct)
        rc = sf_kafka_produce(w->prod, topic, key, buf, len, NULL, 0, direct_dr, w, err);
    else
        rc = outbox_buffer(w, topic, key, buf, err);
    free(buf);
    return rc;
}

int sf_worker_emit(sf_worker_ctx *ctx, const char *type, const char *key, const cJSON *data,
                   const char *correlationid, sf_error *err)
{
    return publish_full(ctx->w, ctx->w->events_topic, key, type, data, correlationid, err);
}

int sf_worker_publish(sf_worker_ctx *ctx, const char *topic_suffix, const char *key,
                      const char *type, const cJSON *data, const char *correlationid,
                      sf_error *err)
{
    char topic[256];

    if (sf_snprintf(topic, sizeof(topic), "%s%s", ctx->w->prefix, topic_suffix) < 0)
        return sf_error_field(err, "topic", "topic name too long");
    return publish_full(ctx->w, topic, key, type, data, correlationid, err);
}

/* Task-side helpers: the row goes into the caller's open transaction on db
 * (sf_db_outbox_add refuses outside one). */
static int publish_db_full(sf_worker *w, sf_db *db, const char *topic, const char *key, const char *type,
                           const cJSON *data, const char *correlationid, sf_error *err)
{
    char *buf = NULL;
    size_t len = 0;
    int rc;

    if (!w || !db || !type)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_worker_emit_db: worker, db and type are required");
    if (sf_event_encode(type, w->source, NULL, correlationid, data, &buf, &len, err) < 0)
        return -1;
    if (w->direct)
        rc = sf_kafka_produce(w->prod, topic, key, buf, len, NULL, 0, direct_dr, w, err);
    else
        rc = sf_db_outbox_add(db, topic, key, buf, len, err);
    free(buf);
    return rc;
}

int sf_worker_emit_db(sf_worker *w, struct sf_db *db, const char *type, const char *key, const cJSON *data,
                      const char *correlationid, sf_error *err)
{
    if (!w)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_worker_emit_db: no worker");
    return publish_db_full(w, db, w->events_topic, key, type, data, correlationid, err);
}

int sf_worker_publish_db(sf_worker *w, struct sf_db *db, const char *topic_suffix, const char *key,
                         const char *type, const cJSON *data, const char *correlationid, sf_error *err)
{
    char topic[256];

    if (!w || !topic_suffix)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_worker_publish_db: worker and topic are required");
    if (sf_snprintf(topic, sizeof(topic), "%s%s", w->prefix, topic_suffix) < 0)
        return sf_error_field(err, "topic", "topic name too long");
    return publish_db_full(w, db, topic, key, type, data, correlationid, err);
}

void sf_worker_kick_relay(sf_worker *w)
{
    if (w)
        w->kick = true;
}

/* ---------------------------------------------------------------- outbox */

/* Append s to a PostgreSQL array literal as one element ("..." with " and
 * \ escaped; NULL -> NULL). */
static int array_elem(sf_buf *b, const char *v)
{
    if (sf_buf_appendc(b, b->len == 0 ? '{' : ',') < 0)
        return -1;
    if (!v)
        return sf_buf_append(b, "NULL", 4);
    if (sf_buf_appendc(b, '"') < 0)
        return -1;
    for (const char *p = v; *p; p++) {
        if ((*p == '"' || *p == '\\') && sf_buf_appendc(b, '\\') < 0)
            return -1;
        if (sf_buf_appendc(b, *p) < 0)
            return -1;
    }
    return sf_buf_appendc(b, '"');
}

static void outbox_reset(sf_worker *w)
{
    sf_buf_reset(&w->ob_topic);
    sf_buf_reset(&w->ob_key);
    sf_buf_reset(&w->ob_payload);
    w->ob_n = 0;
}

/* The payload is the encoded event: UTF-8 JSON without NUL. */
static int outbox_buffer(sf_worker *w, const char *topic, const char *key, const char *payload, sf_error *err)
{
    if (array_elem(&w->ob_topic, topic) < 0 || array_elem(&w->ob_key, key) < 0 ||
        array_elem(&w->ob_payload, payload) < 0)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "outbox: the events of one batch exceed %zu bytes",
                            w->ob_payload.limit);
    w->ob_n++;
    return 0;
}

/* Write the buffered rows (same table and notification as
 * sf_db_outbox_add, in emit order). */
static int outbox_flush(sf_worker *w, sf_error *err)
{
    const char *params[4];
    int rc;

    if (w->ob_n == 0)
        return 0;
    if (sf_buf_appendc(&w->ob_topic, '}') < 0 || sf_buf_appendc(&w->ob_key, '}') < 0 ||
        sf_buf_appendc(&w->ob_payload, '}') < 0)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "outbox: batch too large");
    params[0] = w->ob_topic.data;
    params[1] = w->ob_key.data;
    params[2] = w->ob_payload.data;
    params[3] = SF_DB_OUTBOX_CHANNEL;
    rc = sf_db_exec(w->db,
                    "WITH ins AS (INSERT INTO outbox (topic, msg_key, payload)"
                    " SELECT t, k, convert_to(p, 'UTF8')"
                    " FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS u(t, k, p, o)"
                    " ORDER BY o RETURNING id)"
                    " SELECT pg_notify($4, '') FROM (SELECT count(*) FROM ins) c",
                    4, params, NULL, err);
    outbox_reset(w);
    return rc;
}

/* Claim the inbox for every live item with one statement; sets claimed on
 * the first item of each id that was new. */
static int claim_batch(sf_worker *w, item *items, size_t n, sf_error *err)
{
    sf_buf ids;
    PGresult *res = NULL;
    const char *params[2];
    int rc = -1;
    size_t live = 0;

    sf_buf_init(&ids, 64 * 1024 * 1024);
    for (size_t i = 0; i < n; i++) {
        items[i].claimed = false;
        if (!item_live(&items[i]))
            continue;
        if (array_elem(&ids, sf_event_id(items[i].ev)) < 0) {
            sf_error_set(err, SF_ERR_INTERNAL, 0, "inbox: batch too large");
            goto out;
        }
        live++;
    }
    if (live == 0) {
        rc = 0;
        goto out;
    }
    if (sf_buf_appendc(&ids, '}') < 0) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "inbox: batch too large");
        goto out;
    }
    params[0] = w->group;
    params[1] = ids.data;
    if (sf_db_exec(w->db,
                   "INSERT INTO inbox (consumer, message_id) SELECT $1, unnest($2::text[])"
                   " ON CONFLICT DO NOTHING RETURNING message_id",
                   2, params, &res, err) < 0)
        goto out;
    for (int r = 0; r < PQntuples(res); r++) {
        const char *id = NULL;

        if (sf_db_get_str(res, r, 0, &id, err) < 0)
            goto out;
        for (size_t i = 0; i < n; i++) {
            if (item_live(&items[i]) && !items[i].claimed && strcmp(sf_event_id(items[i].ev), id) == 0) {
                items[i].claimed = true;
                break;
            }
        }
    }
    rc = 0;
out:
    if (res)
        PQclear(res);
    sf_buf_release(&ids);
    return rc;
}

/* ------------------------------------------------------------ dead-letter */

/* Dead-letter one message; retries until it succeeds or we are stopping.
 * Returns 0 when acknowledged, -1 when stopping (offset must not be stored). */
static int deadletter(sf_worker *w, item *it, const char *reason)
{
    int64_t wait = 100;

    for (;;) {
        sf_error e;

        sf_error_clear(&e);
        if (sf_kafka_deadletter(w->prod, w->dlq_topic, it->msg, w->def->name, reason, DLQ_TIMEOUT_MS, &e) == 0)
            break;
        sf_log_warn("could not dead-letter message: %s", e.msg);
        if (e.cls == SF_ERR_FATAL || stopping(w))
            return -1;
        backoff_sleep(w, wait);
        wait = next_backoff(wait);
    }
    it->dlq_done = true;
    metric_add("scmflow_messages_deadlettered_total", NULL, 1);
    sf_log_info("message dead-lettered: %s", reason);
    return 0;
}

/* Reason text from a decode/handler error: "<field>: <msg>" (messages from
 * our decoders never contain values of secret fields). */
static void reason_of(const sf_error *e, char *buf, size_t size)
{
    if (e->field[0] && strncmp(e->msg, e->field, strlen(e->field)) != 0)
        (void)sf_snprintf(buf, size, "%s: %s", e->field, e->msg);
    else
        (void)sf_snprintf(buf, size, "%s", e->msg[0] ? e->msg : sf_err_class_name(e->cls));
}

/* Decode a freshly polled message; dead-letter it when it is unusable.
 * Returns 0 (usable or dead-lettered), -1 when the dead-letter failed. */
static int prepare_item(sf_worker *w, item *it)
{
    size_t len = 0;
    const void *v = sf_kafka_msg_value(it->msg, &len);
    sf_error e;
    char reason[700];

    sf_error_clear(&e);
    it->key = dup_key(it->msg);
    if (sf_kafka_msg_too_big(it->msg)) {
        (void)sf_snprintf(reason, sizeof(reason), "message: %zu bytes exceeds the limit of %" PRId64 " bytes",
                          len, sf_config_int(w->cfg, "SCMFLOW_KAFKA_MAX_MESSAGE_BYTES"));
        return deadletter(w, it, reason);
    }
    if (!v || len == 0) {
        (void)sf_snprintf(reason, sizeof(reason), "message: empty value");
        return deadletter(w, it, reason);
    }
    if (w->def->on_invalid_data && !w->direct) {
        int r;

        sf_error_clear(&it->bad);
        r = sf_event_decode_envelope(v, len, &it->ev, &it->bad, &e);
        if (r < 0) {
            it->ev = NULL;
            reason_of(&e, reason, sizeof(reason));
            return deadletter(w, it, reason);
        }
        if (r == 1) {
            /* Operators see it in the dead-letter topic; the hook then
             * answers the requester in the batch transaction. */
            reason_of(&it->bad, reason, sizeof(reason));
            if (deadletter(w, it, reason) < 0)
                return -1;
            it->bad_pending = true;
        }
        return 0;
    }
    if (sf_event_decode(v, len, &it->ev, &e) < 0) {
        it->ev = NULL;
        reason_of(&e, reason, sizeof(reason));
        return deadletter(w, it, reason);
    }
    return 0;
}

/* ------------------------------------------------------------ processing */

typedef enum { BATCH_OK, BATCH_REDO, BATCH_RETRY, BATCH_FATAL } batch_result;

/*
 * Handle the live items of a batch in one transaction: one statement claims
 * the inbox for all of them, the handlers run, one statement writes their
 * outbox rows, COMMIT. No savepoint per message (two round trips each):
 * when a handler refuses its message (INVALID/REJECTED), the transaction is
 * rolled back, that message is dead-lettered and the batch is redone
 * without it (BATCH_REDO, no backoff). Handlers therefore must keep their
 * side effects inside the transaction (see sf_worker_def.max_batch).
 */
static batch_result run_batch_tx(sf_worker *w, item *items, size_t n, sf_error *err)
{
    sf_worker_ctx ctx = {w, NULL};

    outbox_reset(w);
    if (sf_db_begin(w->db, err) < 0) {
        /* Between batches nothing may hold a transaction on w->db (the
         * relay, on this thread, always ends its own): one left open by a
         * failure path is ended here, or every later batch would fail. */
        (void)sf_db_rollback(w->db, NULL);
        return err && err->cls == SF_ERR_FATAL ? BATCH_FATAL : BATCH_RETRY;
    }
    if (w->def->batch_begin)
        w->def->batch_begin(w, w->ud);
    if (claim_batch(w, items, n, err) < 0)
        goto retry;
    for (size_t i = 0; i < n; i++) {
        item *it = &items[i];
        sf_error he;

        if (!item_live(it))
            continue;
        if (!it->claimed) {
            sf_log_debug("duplicate message %s skipped", sf_event_id(it->ev));
            continue;
        }
        sf_log_ctx_set(sf_kafka_msg_topic(it->msg), sf_kafka_msg_partition(it->msg),
                       sf_kafka_msg_offset(it->msg), it->key);
        sf_error_clear(&he);
        ctx.it = it;
        if (it->bad_pending) {
            if (w->def->on_invalid_data(&ctx, it->ev, &it->bad, &he) == 0)
                continue;
        } else if (w->def->handler(&ctx, it->ev, &he) == 0) {
            sf_failpoint("worker.after_handler");
            continue;
        }
        sf_log_ctx_clear();
        sf_db_rollback(w->db, NULL);
        outbox_reset(w);
        if (it->bad_pending && (he.cls == SF_ERR_INVALID || he.cls == SF_ERR_REJECTED)) {
            /* Already dead-lettered: just stop trying to answer it. */
            sf_log_info("no answer for invalid message %s: %s", sf_event_id(it->ev), he.msg);
            it->bad_pending = false;
            return BATCH_REDO;
        }
        if (he.cls == SF_ERR_INVALID || he.cls == SF_ERR_REJECTED) {
            char reason[700];

            reason_of(&he, reason, sizeof(reason));
            if (deadletter(w, it, reason) < 0) {
                sf_error_set(err, SF_ERR_TRANSIENT, 0, "dead-letter failed");
                return BATCH_RETRY;
            }
            return BATCH_REDO;
        }
        if (err)
            *err = he;
        return he.cls == SF_ERR_FATAL ? BATCH_FATAL : BATCH_RETRY;
    }
    sf_log_ctx_clear();
    if (w->def->batch_end && w->def->batch_end(w, w->ud, err) < 0) {
        if (err && err->cls == SF_ERR_FATAL) {
            sf_db_rollback(w->db, NULL);
            outbox_reset(w);
            return BATCH_FATAL;
        }
        goto retry;
    }
    if (outbox_flush(w, err) < 0)
        goto retry;
    if (sf_db_commit(w->db, err) < 0)
        return BATCH_RETRY;
    return BATCH_OK;
retry:
    sf_log_ctx_clear();
    sf_db_rollback(w->db, NULL);
    outbox_reset(w);
    return BATCH_RETRY;
}

/* Direct (benchmark) mode: no DB; produce and wait for the reports. */
static batch_result run_batch_direct(sf_worker *w, item *items, size_t n, sf_error *err)
{
    sf_worker_ctx ctx = {w, NULL};

    w->direct_failed = 0;
    for (size_t i = 0; i < n; i++) {
        if (!items[i].ev || items[i].dlq_done)
            continue;
        ctx.it = &items[i];
        if (w->def->handler(&ctx, items[i].ev, err) < 0) {
            if (err && (err->cls == SF_ERR_INVALID || err->cls == SF_ERR_REJECTED)) {
                char reason[700];

                reason_of(err, reason, sizeof(reason));
                if (deadletter(w, &items[i], reason) < 0)
                    return BATCH_RETRY;
                sf_error_clear(err);
                continue;
            }
            return err && err->cls == SF_ERR_FATAL ? BATCH_FATAL : BATCH_RETRY;
        }
    }
    if (sf_kafka_flush(w->prod, 30000, err) < 0 || w->direct_failed)
        return BATCH_RETRY;
    return BATCH_OK;
}

static void relay_pass(sf_worker *w, int rounds)
{
    for (int i = 0; i < rounds && !w->direct; i++) {
        sf_error e;
        int sent = 0;
        int r;

        sf_error_clear(&e);
        r = sf_relay_run_once(w->relay, &sent, &e);
        if (r < 0) {
            sf_log_info("outbox relay: %s", e.msg);
            if (e.cls == SF_ERR_TRANSIENT)
                atomic_store(&w->db_ok, false);
            if (e.cls == SF_ERR_FATAL)
                w->stop = true;
            return;
        }
        atomic_store(&w->db_ok, true);
        if (sent > 0)
            metric_add("scmflow_messages_produced_total", NULL, sent);
        if (r == 0)
            return;
    }
}

/* Process one batch until it is committed (retrying transient failures
 * with backoff, from the messages in hand). Returns 0, or -1 on a fatal
 * error or when stopping before the batch committed (offsets not stored:
 * the messages come back after restart). */
static int process_batch(sf_worker *w, item *items, size_t n)
{
    int64_t wait = 100;
    int64_t t0 = sf_now_mono_ms();

    for (;;) {
        sf_error e;
        batch_result br;

        sf_error_clear(&e);
        br = w->direct ? run_batch_direct(w, items, n, &e) : run_batch_tx(w, items, n, &e);
        if (br == BATCH_OK)
            break;
        if (br == BATCH_REDO)
            continue; /* one message dead-lettered: the rest again, now */
        if (br == BATCH_FATAL) {
            sf_log_error("fatal error while handling messages: %s", e.msg);
            return -1;
        }
        if (e.cls == SF_ERR_TRANSIENT)
            atomic_store(&w->db_ok, false);
        sf_log_warn("batch of %zu message(s) not committed, retrying in %" PRId64 " ms: %s (%s)", n, wait, e.msg,
                    sf_err_class_name(e.cls));
        if (stopping(w))
            return -1;
        backoff_sleep(w, wait);
        if (stopping(w))
            return -1;
        if (!w->direct)
            sf_db_ensure(w->db, 5000, NULL);
        wait = next_backoff(wait);
    }
    atomic_store(&w->db_ok, true);
    sf_failpoint("worker.after_commit_before_offset");
    for (size_t i = 0; i < n; i++) {
        sf_error e;

        sf_error_clear(&e);
        /* A partition revoked meanwhile refuses the store: the new owner
         * re-reads the message and the inbox skips it. */
        if (sf_kafka_store_offset(w->cons, items[i].msg, &e) < 0)
            sf_log_debug("offset not stored: %s", e.msg);
    }
#ifdef HAVE_METRICS
    sf_metrics_observe("scmflow_batch_duration_seconds", NULL, (double)(sf_now_mono_ms() - t0) / 1000.0);
#else
    (void)t0;
#endif
    return 0;
}

static void free_items(item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        sf_event_free(items[i].ev);
        sf_kafka_msg_free(items[i].msg);
        free(items[i].key);
    }
}

/* ----------------------------------------------------------------- tasks */

typedef struct task_state {
    int64_t next_ms;
    int64_t interval_ms;
} task_state;

/* ---- own-thread tasks ---- */

typedef struct task_thread {
    sf_worker *w;
    const sf_worker_task *t;
    int64_t interval_ms;
    pthread_t tid;
} task_thread;

/* Sleep up to ms, waking early when the worker stops. */
static void task_sleep(sf_worker *w, int64_t ms)
{
    int64_t end = sf_now_mono_ms() + ms;

    while (!stopping(w)) {
        int64_t left = end - sf_now_mono_ms();

        if (left <= 0)
            break;
        (void)poll(NULL, 0, (int)(left < 50 ? left : 50));
    }
}

static void *task_thread_main(void *arg)
{
    task_thread *tt = arg;
    sf_worker *w = tt->w;
    sf_db *db = NULL;
    sf_db_opts o;
    int64_t fail_wait = 0;

    memset(&o, 0, sizeof(o));
    o.application_name = w->def->name;
    while (!stopping(w) && db == NULL) {
        sf_error e;

        sf_error_clear(&e);
        if ((db = sf_db_open_opts(sf_config_str(w->cfg, "SCMFLOW_DATABASE_URL"), &o, &e)) == NULL) {
            sf_log_warn("task %s: could not connect to the database: %s", tt->t->name, e.msg);
            task_sleep(w, 1000);
        }
    }
    tls_task_db = db;
    while (!stopping(w)) {
        sf_error e;
        int64_t wait = tt->interval_ms;

        sf_error_clear(&e);
        if (tt->t->fn(w, w->ud, &e) < 0) {
            /* back off while it keeps failing (a database outage would
             * otherwise log a warning every interval) */
            fail_wait = fail_wait ? (fail_wait * 2 > 5000 ? 5000 : fail_wait * 2) : 250;
            if (wait < fail_wait)
                wait = fail_wait;
            sf_log_warn("task %s failed: %s (next attempt in %lld ms)", tt->t->name, e.msg,
                        (long long)wait);
        } else {
            fail_wait = 0;
        }
        task_sleep(w, wait);
    }
    sf_log_ctx_clear();
    tls_task_db = NULL;
    sf_db_close(db);
    return NULL;
}

static void run_tasks(sf_worker *w, task_state *ts)
{
    int64_t now = sf_now_mono_ms();

    for (size_t i = 0; i < w->def->ntasks && !stopping(w); i++) {
        const sf_worker_task *t = &w->def->tasks[i];
        sf_error e;
        bool fire = true;

        if (t->own_thread || now < ts[i].next_ms)
            continue;
        sf_error_clear(&e);
        if (t->once_across_replicas) {
            /* Ask the DB at most every 5 s (or every interval if shorter). */
            ts[i].next_ms = now + (ts[i].interval_ms < 5000 ? ts[i].interval_ms : 5000);
            fire = false;
            if (sf_db_schedule_due(w->db, t->name, ts[i].interval_ms, w->instance, &fire, &e) < 0) {
                sf_log_info("task %s: could not check schedule: %s", t->name, e.msg);
                continue;
            }
        } else {
            ts[i].next_ms = now + ts[i].interval_ms;
        }
        if (!fire)
            continue;
        sf_log_debug("task %s: running", t->name);
        if (t->fn(w, w->ud, &e) < 0)
            sf_log_warn("task %s failed: %s", t->name, e.msg);
    }
}

/* ------------------------------------------------------------- readiness */

/* sf_http contract: 1 ready, 0 not ready (why filled). Runs on the HTTP
 * thread, so it reads only atomics (and the worker's own hook). */
static int ready_cb(void *ud, char *why, size_t why_len)
{
    sf_worker *w = ud;

    if (!atomic_load(&w->db_ok)) {
        (void)sf_snprintf(why, why_len, "database not reachable");
        return 0;
    }
    if (w->def->topics && w->def->topics[0] && !sf_kafka_consumer_assigned(w->cons)) {
        (void)sf_snprintf(why, why_len, "no Kafka partitions assigned");
        return 0;
    }
    if (w->def->ready && w->def->ready(w, w->ud, why, why_len) < 0)
        return 0;
    return 1;
}

/* ------------------------------------------------------------------ main */

static void usage(const sf_worker_def *def, FILE *out)
{
    fprintf(out,
            "usage: %s [--config FILE] [--set NAME=VALUE]... [--max-messages N] [--exit-on-idle MS]\n"
            "       %s --help | --version\n\n",
            def->name, def->name);
}

/* Parse our own flags. Returns 0 to continue, 1 to exit 0, 2 usage error. */
static int parse_flags(sf_worker *w, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(w->def, stdout);
            sf_config_print_help(w->cfg, stdout);
            return 1;
        }
        if (strcmp(a, "--version") == 0) {
            printf("%s %s\n", w->def->name, w->def->version ? w->def->version : SCMFLOW_VERSION);
            return 1;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (strcmp(a, "--config") == 0 || strcmp(a, "--set") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s: %s needs a value\n", w->def->name, a);
                return 2;
            }
            i++;
        } else if (strcmp(a, "--max-messages") == 0 || strcmp(a, "--exit-on-idle") == 0) {
            int64_t v;

            if (i + 1 >= argc || sf_str_to_i64(argv[i + 1], 0, INT64_MAX / 2, &v) < 0) {
                fprintf(stderr, "%s: %s takes a non-negative integer\n", w->def->name, a);
                return 2;
            }
            if (a[2] == 'm')
                w->max_messages = v;
            else
                w->idle_ms = v;
            i++;
        } else {
            fprintf(stderr, "%s: unknown option \"%s\" (try --help)\n", w->def->name, a);
            return 2;
        }
    }
    return 0;
}

static int build_config(sf_worker *w)
{
    size_t n = sf_cfg_common_len + SF_ARRAY_LEN(worker_settings) + w->def->nsettings;
    size_t k = 0;

    w->defs = calloc(n, sizeof(*w->defs));
    if (!w->defs)
        return -1;
    for (size_t i = 0; i < sf_cfg_common_len; i++)
        w->defs[k++] = sf_cfg_common[i];
    for (size_t i = 0; i < SF_ARRAY_LEN(worker_settings); i++)
        w->defs[k++] = worker_settings[i];
    for (size_t i = 0; i < w->def->nsettings; i++)
        w->defs[k++] = w->def->settings[i];
    w->cfg = sf_config_new(w->defs, k, NULL, 0);
    return w->cfg ? 0 : -1;
}

static int open_db(sf_worker *w, sf_error *err)
{
    int64_t deadline = sf_now_mono_ms() + sf_config_duration_ms(w->cfg, "SCMFLOW_DB_CONNECT_TIMEOUT");
    int64_t wait = 200;

    for (;;) {
        sf_error_clear(err);
        sf_db_opts o;

        memset(&o, 0, sizeof(o));
        /* pg_stat_activity shows which service holds a connection. */
        o.application_name = w->def->name;
        w->db = sf_db_open_opts(sf_config_str(w->cfg, "SCMFLOW_DATABASE_URL"), &o, err);
        if (w->db)
            return 0;
        if (err->cls == SF_ERR_FATAL || stopping(w) || sf_now_mono_ms() + wait > deadline)
            return -1;
        sf_log_warn("could not connect to the database, retrying in %" PRId64 " ms: %s", wait, err->msg);
        backoff_sleep(w, wait);
        wait = next_backoff(wait);
    }
}

/* Collect up to `max` messages: wait up to first_ms for the first, then
 * up to wait_ms in total for the rest. Returns count, or -1 on fatal. */
static int collect(sf_worker *w, item *items, size_t max, int first_ms, int64_t wait_ms, sf_error *err)
{
    size_t n = 0;
    int64_t end = 0;

    while (n < max && !stopping(w)) {
        sf_kafka_msg *m = NULL;
        int timeout = n == 0 ? first_ms : (int)(end - sf_now_mono_ms());
        int r;

        if (n > 0 && timeout < 0)
            timeout = 0;
        r = sf_kafka_poll(w->cons, timeout, &m, err);
        if (r < 0)
            return -1;
        if (r == 0) {
            if (n == 0 || sf_now_mono_ms() >= end)
                break;
            continue;
        }
        if (n == 0)
            end = sf_now_mono_ms() + wait_ms;
        memset(&items[n], 0, sizeof(items[n]));
        items[n].msg = m;
        n++;
        w->consumed++;
        {
            char lbl[300];

            (void)sf_snprintf(lbl, sizeof(lbl), "topic=\"%s\"", sf_kafka_msg_topic(m));
            metric_add("scmflow_messages_consumed_total", lbl, 1);
        }
        if (w->max_messages > 0 && w->consumed >= w->max_messages)
            break;
    }
    return (int)n;
}

/*
 * Domain gauges (orders by state, repository size, license maximum): every
 * worker shares one database, so any replica can report them; dashboards
 * take max() across replicas. Cheap aggregate queries, every 15 s, and only
 * once the domain tables exist (the test worker has none).
 */
static void update_domain_gauges(sf_worker *w)
{
    static const char *const states[] = {"accepted", "submitting", "submitted", "issued",
                                         "stored", "not_stored", "rejected", "failed",
                                         "revoked", "imported"};
    PGresult *res = NULL;
    char labels[96];

    if (sf_db_exec(w->db, "SELECT to_regclass('orders') IS NOT NULL AND"
                          " to_regclass('certificates') IS NOT NULL", 0, NULL, &res, NULL) < 0)
        return;
    if (PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 0), "t") != 0)
        goto out;
    PQclear(res);
    res = NULL;
    if (sf_db_exec(w->db, "SELECT state, count(*) FROM orders GROUP BY state", 0, NULL, &res,
                   NULL) < 0)
        return;
    /* Known states first at 0, so a state that empties drops to 0. */
    for (size_t i = 0; i < SF_ARRAY_LEN(states); i++) {
        if (sf_snprintf(labels, sizeof(labels), "state=\"%s\"", states[i]) == 0)
            metric_gauge("scmflow_orders", labels, 0);
    }
    for (int i = 0; i < PQntuples(res); i++) {
        const char *st = NULL;
        int64_t n = 0;

        if (sf_db_get_str(res, i, 0, &st, NULL) < 0 || sf_db_get_i64(res, i, 1, &n, NULL) < 0)
            continue;
        /* States come from our own CHECKed code paths, but escape anyway. */
        if (strpbrk(st, "\"\\\n") == NULL &&
            sf_snprintf(labels, sizeof(labels), "state=\"%s\"", st) == 0)
            metric_gauge("scmflow_orders", labels, (double)n);
    }
    PQclear(res);
    res = NULL;
    if (sf_db_exec(w->db, "SELECT (SELECT count(*) FROM certificates WHERE status = 'active'),"
                          " (SELECT license_max FROM repo_settings WHERE id = 1)",
                   0, NULL, &res, NULL) < 0)
        return;
    if (PQntuples(res) == 1) {
        int64_t n = 0, max = 0;

        if (sf_db_get_i64(res, 0, 0, &n, NULL) == 0)
            metric_gauge("scmflow_repository_certificates", NULL, (double)n);
        if (sf_db_get_i64(res, 0, 1, &max, NULL) == 0)
            metric_gauge("scmflow_repository_license_max", NULL, (double)max);
    }
out:
    PQclear(res);
}

static void update_gauges(sf_worker *w)
{
    int64_t lag = 0;
    int64_t backlog = 0;
    int64_t now = sf_now_mono_ms();

    if (!w->direct && now - w->last_domain_gauges >= 15000) {
        w->last_domain_gauges = now;
        update_domain_gauges(w);
    }

    if (w->cons && sf_kafka_consumer_lag(w->cons, &lag) == 0)
        metric_gauge("scmflow_consumer_lag", NULL, (double)lag);
    if (!w->direct && sf_db_outbox_backlog(w->db, &backlog, NULL) == 0)
        metric_gauge("scmflow_outbox_backlog", NULL, (double)backlog);
}

int sf_worker_main(int argc, char **argv, const sf_worker_def *def)
{
    sf_worker *w = calloc(1, sizeof(*w));
    sf_error err;
    int status = 1;
    int r;
    size_t ntopics = 0;
    char **topics = NULL;
    const char *all_topics[16];
    size_t nall = 0;
    item *items = NULL;
    task_state *ts = NULL;
    task_thread *tth = NULL;
    size_t ntth = 0;
    bool inited = false;
    sf_log_level lvl = SF_LOG_INFO;
    sf_log_format fmt = SF_LOG_JSON;
    char host[128];
    int64_t last_activity, started, last_relay = 0, last_gauges = 0;
    size_t batch_max;
    int64_t batch_wait, relay_iv;
    struct sigaction sa;

    sf_error_clear(&err);
    if (!w) {
        fprintf(stderr, "%s: out of memory\n", def->name);
        return 1;
    }
    w->def = def;
    atomic_store(&w->db_ok, false);
    sf_buf_init(&w->ob_topic, 16 * 1024 * 1024);
    sf_buf_init(&w->ob_key, 16 * 1024 * 1024);
    sf_buf_init(&w->ob_payload, 256 * 1024 * 1024);
    if (build_config(w) < 0) {
        fprintf(stderr, "%s: out of memory\n", def->name);
        goto out;
    }
    r = parse_flags(w, argc, argv);
    if (r != 0) {
        status = r == 1 ? 0 : 2;
        goto out;
    }
    if (sf_config_load(w->cfg, argc, argv, &err) < 0) {
        fprintf(stderr, "%s: %s\n", def->name, err.msg);
        status = 2;
        goto out;
    }
    sf_log_parse_level(sf_config_str(w->cfg, "SCMFLOW_LOG_LEVEL"), &lvl);
    sf_log_parse_format(sf_config_str(w->cfg, "SCMFLOW_LOG_FORMAT"), &fmt);
    sf_log_init(def->name, lvl, fmt);

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (gethostname(host, sizeof(host)) != 0)
        (void)sf_snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    (void)sf_snprintf(w->instance, sizeof(w->instance), "%s-%ld", host, (long)getpid());
    srand((unsigned)(getpid() ^ sf_now_wall_ms()));
    if (sf_snprintf(w->prefix, sizeof(w->prefix), "%s", sf_config_str(w->cfg, "SCMFLOW_TOPIC_PREFIX")) < 0) {
        fprintf(stderr, "%s: SCMFLOW_TOPIC_PREFIX: too long\n", def->name);
        status = 2;
        goto out;
    }
    if (*sf_config_str(w->cfg, "SCMFLOW_CONSUMER_GROUP"))
        (void)sf_snprintf(w->group, sizeof(w->group), "%s", sf_config_str(w->cfg, "SCMFLOW_CONSUMER_GROUP"));
    else
        (void)sf_snprintf(w->group, sizeof(w->group), "scmflow-%s", def->name);
    (void)sf_snprintf(w->source, sizeof(w->source), "scmflow/%s", def->name);
    sf_worker_topic(w, SF_TOPIC_DEADLETTER, w->dlq_topic, sizeof(w->dlq_topic));
    sf_worker_topic(w, SF_TOPIC_EVENTS, w->events_topic, sizeof(w->events_topic));
    w->direct = def->allow_direct && sf_config_bool(w->cfg, "SCMFLOW_WORKER_DIRECT");
    batch_max = (size_t)sf_config_int(w->cfg, "SCMFLOW_WORKER_BATCH");
    if (def->max_batch > 0 && batch_max > (size_t)def->max_batch)
        batch_max = (size_t)def->max_batch;
    batch_wait = sf_config_duration_ms(w->cfg, "SCMFLOW_WORKER_BATCH_WAIT");
    relay_iv = sf_config_duration_ms(w->cfg, "SCMFLOW_RELAY_INTERVAL");
    w->kopts.brokers = sf_config_str(w->cfg, "SCMFLOW_KAFKA_BROKERS");
    w->kopts.config_file = sf_config_str(w->cfg, "SCMFLOW_KAFKA_CONFIG");
    w->kopts.client_id = w->instance;
    w->kopts.max_message_bytes = (size_t)sf_config_int(w->cfg, "SCMFLOW_KAFKA_MAX_MESSAGE_BYTES");
    metrics_describe_all();

    /* Database + migrations. */
    if (open_db(w, &err) < 0) {
        sf_log_error("could not connect to the database: %s", err.msg);
        goto out;
    }
    if (sf_db_migrate(w->db, &err) < 0) {
        sf_log_error("could not migrate the database: %s", err.msg);
        goto out;
    }
    atomic_store(&w->db_ok, true);

    /* Topics. */
    for (ntopics = 0; def->topics && def->topics[ntopics]; ntopics++)
        ;
    topics = calloc(ntopics + 1, sizeof(*topics));
    if (!topics)
        goto out;
    for (size_t i = 0; i < ntopics; i++) {
        topics[i] = sf_asprintf("%s%s", w->prefix, def->topics[i]);
        if (!topics[i])
            goto out;
        if (nall < SF_ARRAY_LEN(all_topics) - 3)
            all_topics[nall++] = topics[i];
    }
    all_topics[nall++] = w->events_topic;
    all_topics[nall++] = w->dlq_topic;
    all_topics[nall] = NULL;
    {
        int64_t wait = 200, deadline = sf_now_mono_ms() + 60000;

        while (sf_kafka_ensure_topics(&w->kopts, all_topics, (int)sf_config_int(w->cfg, "SCMFLOW_TOPIC_PARTITIONS"),
                                      10000, &err) < 0) {
            if (err.cls != SF_ERR_TRANSIENT || stopping(w) || sf_now_mono_ms() > deadline) {
                sf_log_error("could not create topics: %s", err.msg);
                goto out;
            }
            sf_log_warn("could not create topics, retrying: %s", err.msg);
            backoff_sleep(w, wait);
            wait = next_backoff(wait);
        }
    }
    if (!(w->prod = sf_kafka_producer_new(&w->kopts, &err))) {
        sf_log_error("%s", err.msg);
        goto out;
    }
    {
        sf_relay_opts ro = {0, 0, &w->kopts};

        w->relay = sf_relay_new(w->db, w->prod, &ro, &err);
    }
    if (!w->relay) {
        sf_log_error("%s", err.msg);
        goto out;
    }

    if (def->init) {
        if (def->init(w, &w->ud, &err) < 0) {
            sf_log_error("initialisation failed: %s", err.msg);
            inited = true;
            goto out;
        }
    }
    inited = true;

    if (ntopics > 0) {
        if (!def->handler) {
            sf_log_error("worker %s consumes topics but has no handler", def->name);
            goto out;
        }
        if (!(w->cons = sf_kafka_consumer_new_ex(&w->kopts, w->group, (const char *const *)topics,
                                                sf_config_duration_ms(w->cfg, "SCMFLOW_KAFKA_SESSION_TIMEOUT"), &err))) {
            sf_log_error("%s", err.msg);
            goto out;
        }
    }
#ifdef HAVE_HTTP
    {
        const char *listen = sf_config_str(w->cfg, "SCMFLOW_HTTP_LISTEN");
        const char *colon = strrchr(listen, ':');

        if (*listen && colon && strcmp(colon + 1, "0") != 0) {
            if (!(w->http = sf_http_start(listen, ready_cb, w, &err))) {
                sf_log_error("could not start the HTTP endpoint: %s", err.msg);
                goto out;
            }
        }
    }
#else
    (void)ready_cb;
#endif
    items = calloc(batch_max, sizeof(*items));
    ts = calloc(def->ntasks + 1, sizeof(*ts));
    tth = calloc(def->ntasks + 1, sizeof(*tth));
    if (!items || !ts || !tth)
        goto out;
    for (size_t i = 0; i < def->ntasks; i++) {
        ts[i].interval_ms = def->tasks[i].interval_ms;
        if (def->tasks[i].interval_setting)
            ts[i].interval_ms = sf_config_duration_ms(w->cfg, def->tasks[i].interval_setting);
        if (ts[i].interval_ms <= 0)
            ts[i].interval_ms = 60000;
        ts[i].next_ms = 0; /* first check right away */
        if (def->tasks[i].own_thread && !def->tasks[i].once_across_replicas) {
            task_thread *tt = &tth[ntth];

            tt->w = w;
            tt->t = &def->tasks[i];
            tt->interval_ms = ts[i].interval_ms;
            if (pthread_create(&tt->tid, NULL, task_thread_main, tt) != 0) {
                sf_log_error("task %s: could not start its thread", def->tasks[i].name);
                goto out;
            }
            ntth++;
        }
    }
    sf_log_info("worker started (instance %s, group %s, prefix %s%s)", w->instance, w->group, w->prefix,
                w->direct ? ", DIRECT benchmark mode" : "");

    last_activity = started = sf_now_mono_ms();
    status = 0;
    while (!stopping(w)) {
        int64_t now;
        int n = 0;
        bool busy = false;

        run_tasks(w, ts);
        if (w->cons) {
            /* A task just committed outbox rows: do not wait for messages
             * before relaying them. */
            n = collect(w, items, batch_max, w->kick ? 0 : (int)(relay_iv < 100 ? relay_iv : 100), batch_wait,
                        &err);
            if (n < 0) {
                sf_log_error("%s", err.msg);
                status = 1;
                break;
            }
        } else if (!w->direct && w->listening) {
            /* No consumer: sleep until the relay interval or until a
             * replica's transaction adds outbox rows (NOTIFY at commit). */
            sf_error ne;

            sf_error_clear(&ne);
            r = sf_db_wait_notify(w->db, (int)relay_iv, &ne);
            if (r > 0)
                w->kick = true;
            else if (r < 0) {
                w->listening = false; /* connection lost: plain sleeps until re-LISTEN */
                backoff_sleep(w, relay_iv);
            }
        } else {
            if (!w->direct && w->def->ntasks > 0 && sf_db_listen(w->db, SF_DB_OUTBOX_CHANNEL, NULL) == 0)
                w->listening = true;
            backoff_sleep(w, relay_iv);
        }
        if (n > 0) {
            int prc = 0;

            busy = true;
            for (int i = 0; i < n && prc == 0; i++)
                prc = prepare_item(w, &items[i]);
            if (prc == 0)
                prc = process_batch(w, items, (size_t)n);
            free_items(items, (size_t)n);
            if (prc < 0) {
                /* Not stored: redelivered after restart. */
                if (!g_signalled && !w->stop)
                    status = 1;
                break;
            }
            /* Right after a commit: publish what it produced. */
            relay_pass(w, 4);
            last_relay = sf_now_mono_ms();
        }
        now = sf_now_mono_ms();
        if (w->kick || now - last_relay >= relay_iv) {
            uint64_t before = sf_relay_sent_total(w->relay);

            w->kick = false;
            relay_pass(w, 20);
            last_relay = now;
            if (sf_relay_sent_total(w->relay) != before)
                busy = true;
        }
        if (w->direct)
            sf_kafka_producer_poll(w->prod, 0);
        if (now - last_gauges >= 1000) {
            update_gauges(w);
            last_gauges = now;
        }
        if (sf_kafka_producer_fatal(w->prod, &err)) {
            sf_log_error("%s", err.msg);
            status = 1;
            break;
        }
        /* Waiting for the first assignment (a group join takes seconds)
         * is not idleness; capped so a worker without partitions stops. */
        if (w->cons && !sf_kafka_consumer_assigned(w->cons) && now - started < 60000)
            busy = true;
        if (busy)
            last_activity = sf_now_mono_ms();
        if (w->max_messages > 0 && w->consumed >= w->max_messages) {
            sf_log_info("stopping after %" PRId64 " message(s) (--max-messages)", w->consumed);
            w->stop = true;
        }
        if (w->idle_ms > 0 && sf_now_mono_ms() - last_activity >= w->idle_ms) {
            sf_log_info("stopping: idle for %" PRId64 " ms (--exit-on-idle)", w->idle_ms);
            w->stop = true;
        }
    }
    /* Own-thread tasks finish their round first: what they wrote to the
     * outbox is drained below. */
    w->stop = true;
    for (size_t i = 0; i < ntth; i++)
        pthread_join(tth[i].tid, NULL);
    ntth = 0;
    /* Drain the outbox before leaving (bounded). */
    if (w->relay && !w->direct) {
        int64_t end = sf_now_mono_ms() + 10000;
        int sent = 1;

        while (sent > 0 && sf_now_mono_ms() < end) {
            sf_error e;

            sf_error_clear(&e);
            if (sf_relay_run_once(w->relay, &sent, &e) < 0)
                break;
        }
    }
    sf_log_info("worker stopping (%" PRId64 " message(s) consumed, %" PRIu64 " event(s) published)", w->consumed,
                sf_relay_sent_total(w->relay));
out:
    w->stop = true;
    for (size_t i = 0; i < ntth; i++)
        pthread_join(tth[i].tid, NULL);
    free(tth);
    if (inited && def->fini)
        def->fini(w, w->ud);
#ifdef HAVE_HTTP
    sf_http_stop(w->http);
#endif
    /* Consumer first (commits the stored offsets), then the producer. */
    sf_kafka_consumer_free(w->cons);
    sf_relay_free(w->relay);
    sf_kafka_producer_free(w->prod);
    sf_db_close(w->db);
    if (topics) {
        for (size_t i = 0; i < ntopics; i++)
            free(topics[i]);
        free(topics);
    }
    free(items);
    free(ts);
    sf_config_free(w->cfg);
    free(w->defs);
    sf_buf_release(&w->ob_topic);
    sf_buf_release(&w->ob_key);
    sf_buf_release(&w->ob_payload);
    free(w);
    return status;
}
