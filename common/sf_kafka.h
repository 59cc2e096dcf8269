/*
 * sf_kafka.h - Kafka producer, consumer, topic creation and dead-letter on
 * top of librdkafka 2.0.2 (see DESIGN.md "Delivery and consistency" and
 * "Known pitfalls").
 *
 * Producer: idempotent (enable.idempotence=true, acks=all). Two ways to send:
 *   - sf_kafka_produce_sync(): one message, waits for its delivery report
 *     (dead-letter path, tools);
 *   - sf_kafka_produce() + sf_kafka_producer_poll()/sf_kafka_flush(): async
 *     with a per-message delivery callback (outbox relay).
 * Consumer: cooperative-sticky group member with enable.auto.offset.store=false
 * and enable.auto.commit=true: an offset is committed only after the caller
 * stored it with sf_kafka_store_offset(), i.e. after its work committed.
 *
 * Extra librdkafka properties come from a key=value file (SCMFLOW_KAFKA_CONFIG:
 * SASL, TLS, tuning); a bad key or value is an SF_ERR_FATAL error naming the
 * key and carrying librdkafka's text (values are never echoed: they may be
 * passwords). librdkafka's own log lines go to sf_log_rdkafka_cb.
 *
 * Threading: one producer may be used from several threads; a consumer and
 * its messages belong to one thread.
 */
#ifndef SF_KAFKA_H
#define SF_KAFKA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sf_error.h"

/* Default hard limit on a consumed message value (bytes). */
#define SF_KAFKA_DEFAULT_MAX_MESSAGE (1024 * 1024)

/* Dead-letter headers (DESIGN.md: reason + where the message came from). */
#define SF_KAFKA_HDR_REASON "scmflow-reason"
#define SF_KAFKA_HDR_SOURCE_TOPIC "scmflow-source-topic"
#define SF_KAFKA_HDR_SOURCE_PARTITION "scmflow-source-partition"
#define SF_KAFKA_HDR_SOURCE_OFFSET "scmflow-source-offset"
#define SF_KAFKA_HDR_SERVICE "scmflow-service"
/* Present (value "true") when the dead-lettered value had to be cut to what
 * the broker accepts; the original length is in scmflow-original-length. */
#define SF_KAFKA_HDR_TRUNCATED "scmflow-truncated"
#define SF_KAFKA_HDR_ORIGINAL_LENGTH "scmflow-original-length"

typedef struct sf_kafka_opts {
    const char *brokers;       /* bootstrap servers (required) */
    const char *config_file;   /* extra properties file; NULL or "" = none */
    const char *client_id;     /* NULL = "scmflow" */
    size_t max_message_bytes;  /* consumer hard limit; 0 = SF_KAFKA_DEFAULT_MAX_MESSAGE */
} sf_kafka_opts;

/* A message header to send. value may be NULL (null header). Borrowed. */
typedef struct sf_kafka_header {
    const char *name;
    const void *value;
    size_t len;
} sf_kafka_header;

typedef struct sf_kafka_producer sf_kafka_producer;
typedef struct sf_kafka_consumer sf_kafka_consumer;
/* One consumed message (owns librdkafka's message). */
typedef struct sf_kafka_msg sf_kafka_msg;

/*
 * Delivery callback of sf_kafka_produce(): called exactly once per accepted
 * message from sf_kafka_producer_poll()/sf_kafka_flush() (on the calling
 * thread), with err == NULL on success or the classified failure
 * (TRANSIENT: retry later; FATAL: the producer is unusable).
 */
typedef void (*sf_kafka_dr_fn)(void *opaque, const sf_error *err);

/* ---- topics ---- */

/*
 * Create each topic that does not exist yet (Admin API), with `partitions`
 * partitions and the broker's default replication. "Already exists" is
 * success. Waits at most timeout_ms. topics is NULL-terminated (full names).
 */
int sf_kafka_ensure_topics(const sf_kafka_opts *opts, const char *const *topics, int partitions,
                           int timeout_ms, sf_error *err);

/* ---- producer ---- */

/* New idempotent producer. Returns NULL and fills err (FATAL for bad config). */
sf_kafka_producer *sf_kafka_producer_new(const sf_kafka_opts *opts, sf_error *err);
/* Flushes (bounded, 10 s) and destroys. Accepts NULL. Undelivered messages
 * get their delivery callback with a TRANSIENT error before it returns. */
void sf_kafka_producer_free(sf_kafka_producer *p);

/*
 * Queue one message. key may be NULL; key/value/headers are copied.
 * dr (nullable) is called later with opaque. Returns 0, or -1 (queue full =
 * TRANSIENT after serving callbacks for up to 1 s; fatal producer = FATAL;
 * message too large = INVALID). When -1 is returned dr is NOT called.
 */
int sf_kafka_produce(sf_kafka_producer *p, const char *topic, const char *key, const void *value,
                     size_t len, const sf_kafka_header *headers, size_t nheaders, sf_kafka_dr_fn dr,
                     void *opaque, sf_error *err);

/* Serve delivery callbacks for up to timeout_ms. Returns number served. */
int sf_kafka_producer_poll(sf_kafka_producer *p, int timeout_ms);

/* Wait until every queued message has its delivery callback, at most
 * timeout_ms. Returns 0, or -1 (TRANSIENT timeout / FATAL). */
int sf_kafka_flush(sf_kafka_producer *p, int timeout_ms, sf_error *err);

/* Produce one message and wait for its delivery report (at most timeout_ms).
 * Returns 0 once the broker acknowledged it (acks=all), else -1. */
int sf_kafka_produce_sync(sf_kafka_producer *p, const char *topic, const char *key,
                          const void *value, size_t len, const sf_kafka_header *headers,
                          size_t nheaders, int timeout_ms, sf_error *err);

/* True once librdkafka raised a fatal error (idempotence broken); fills err. */
bool sf_kafka_producer_fatal(sf_kafka_producer *p, sf_error *err);

/* Messages produced successfully since start (for metrics/tests). */
uint64_t sf_kafka_producer_delivered(const sf_kafka_producer *p);

/* ---- consumer ---- */

/*
 * New consumer in group group_id subscribed to topics (NULL-terminated full
 * names): cooperative-sticky assignment, auto.offset.reset=earliest,
 * offsets stored only by sf_kafka_store_offset(). NULL + err on failure.
 */
sf_kafka_consumer *sf_kafka_consumer_new(const sf_kafka_opts *opts, const char *group_id,
                                         const char *const *topics, sf_error *err);

/*
 * Wait up to timeout_ms for one message. Returns 1 and sets *out (caller
 * frees with sf_kafka_msg_free), 0 when there was none (including benign
 * consumer events such as partition EOF), or -1 on a fatal consumer error
 * (err class FATAL: the caller should flush its producer and stop).
 * A message whose value exceeds the limit IS returned (so it can be
 * dead-lettered); check sf_kafka_msg_too_big().
 */
int sf_kafka_poll(sf_kafka_consumer *c, int timeout_ms, sf_kafka_msg **out, sf_error *err);

/* Mark msg's offset+1 as consumed; the auto-commit sends it to the broker.
 * Call only after the message's work is durable. Returns 0 or -1. */
int sf_kafka_store_offset(sf_kafka_consumer *c, const sf_kafka_msg *msg, sf_error *err);

/* Commit the stored offsets now (synchronously). Returns 0 or -1. */
int sf_kafka_commit(sf_kafka_consumer *c, sf_error *err);

/* True while the consumer holds at least one partition (readiness). */
bool sf_kafka_consumer_assigned(sf_kafka_consumer *c);
/* Number of partitions currently assigned. */
int sf_kafka_consumer_assignment_count(sf_kafka_consumer *c);

/* Best effort total lag over the assigned partitions (high watermark minus
 * current position, from cached watermarks). Returns 0 and sets *lag, or -1. */
int sf_kafka_consumer_lag(sf_kafka_consumer *c, int64_t *lag);

/* Commit stored offsets, leave the group, destroy. Accepts NULL.
 * librdkafka 2.0.2 aborts when a cooperative-sticky member is destroyed
 * before its first assignment (issue #4312, fixed in 2.3.0): if the group
 * join has not completed, this first waits for it (at most 15 s), and if it
 * still has not, leaves the handle allocated instead (call only at exit). */
void sf_kafka_consumer_free(sf_kafka_consumer *c);

/* ---- messages ---- */

const char *sf_kafka_msg_topic(const sf_kafka_msg *m);
int32_t sf_kafka_msg_partition(const sf_kafka_msg *m);
int64_t sf_kafka_msg_offset(const sf_kafka_msg *m);
/* Key bytes (not NUL-terminated; NULL when absent) and length. */
const void *sf_kafka_msg_key(const sf_kafka_msg *m, size_t *len);
/* Value bytes (not NUL-terminated; NULL when absent) and length. */
const void *sf_kafka_msg_value(const sf_kafka_msg *m, size_t *len);
/* True when the value is larger than the consumer's max_message_bytes. */
bool sf_kafka_msg_too_big(const sf_kafka_msg *m);
void sf_kafka_msg_free(sf_kafka_msg *m);

/* ---- dead-letter ---- */

/*
 * Produce msg's ORIGINAL key and value to dlq_topic with the dead-letter
 * headers (reason, source topic/partition/offset, service) and wait for the
 * broker's acknowledgement. reason must name the field and must not contain
 * secrets (it is cut to 1024 bytes). If the broker refuses the size, the
 * value is cut to what it accepts and scmflow-truncated is set.
 * Returns 0 when acknowledged; on -1 the caller must NOT store the offset
 * (retry later: nothing is lost).
 */
int sf_kafka_deadletter(sf_kafka_producer *p, const char *dlq_topic, const sf_kafka_msg *msg,
                        const char *service, const char *reason, int timeout_ms, sf_error *err);

/* ---- reading back (relay recovery, tools) ---- */

/* Called by sf_kafka_scan_tail for each message carrying the header. */
typedef void (*sf_kafka_header_fn)(void *ud, const void *value, size_t len);

/*
 * Read the last `per_partition` messages of every partition of topic (a
 * temporary consumer without group, from max(low, high - per_partition) up
 * to the high watermark taken at start) and call fn with the value of the
 * last `header` of each message that has one. Waits at most timeout_ms in
 * total. Returns 0 when every partition was read to its end, else -1
 * (TRANSIENT). A topic that does not exist yet counts as empty.
 */
int sf_kafka_scan_tail(const sf_kafka_opts *opts, const char *topic, int per_partition,
                       const char *header, sf_kafka_header_fn fn, void *ud, int timeout_ms,
                       sf_error *err);

/*
 * sf_kafka_consumer_new() with a consumer-only session timeout:
 * session_timeout_ms > 0 sets librdkafka's session.timeout.ms (how long the
 * group coordinator waits before a silent member's partitions move to
 * another member; 45 s by default) and a heartbeat.interval.ms of a third of
 * it (at most 3 s); 0 = librdkafka's defaults. Applied after
 * opts->config_file, so it wins over the same key there. Producers are not
 * affected. Same ownership and errors as sf_kafka_consumer_new().
 */
sf_kafka_consumer *sf_kafka_consumer_new_ex(const sf_kafka_opts *opts, const char *group_id,
                                            const char *const *topics,
                                            int64_t session_timeout_ms, sf_error *err);


#endif
