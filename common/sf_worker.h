/*
 * sf_worker.h - the run loop every worker uses (DESIGN.md "Delivery and
 * consistency"): configuration, logging, PostgreSQL (+ migrations), topic
 * creation, the Kafka consumer, the idempotent producer, the outbox relay,
 * dead-letter, signals, periodic tasks and /healthz /readyz /metrics.
 *
 * A worker's main() is:
 *     int main(int argc, char **argv) { return sf_worker_main(argc, argv, &my_def); }
 *
 * Processing of consumed messages:
 *   poll -> size limit -> sf_event_decode; undecodable/invalid -> dead-letter
 *   (reason = err->field + err->msg), offset stored. With def->on_invalid_data
 *   a message whose envelope is valid but whose data is not is dead-lettered
 *   AND handed to that hook in the batch transaction (to answer it).
 *   Good messages are handled in small batches in ONE DB transaction: one
 *   statement claims the inbox for the whole batch (consumer = the group id;
 *   a duplicate id is skipped), then def->handler runs per message, then
 *   one statement writes the outbox rows the handlers emitted, COMMIT.
 *   Handler result:
 *     0                     -> kept;
 *     INVALID / REJECTED    -> the transaction is rolled back, the message is
 *                              dead-lettered and the batch is redone at once
 *                              without it (a handler that wants to answer with
 *                              order.rejected emits it itself and returns 0);
 *     anything else         -> the whole batch is rolled back and retried
 *                              with backoff from the messages in hand
 *                              (TRANSIENT, UNKNOWN, PENDING, ...); FATAL stops
 *                              the worker (exit 1) without storing offsets.
 *   So a handler may run more than once for one message, with every DB
 *   effect of the earlier runs rolled back. A handler with effects OUTSIDE
 *   the transaction (an SCM call) must set max_batch = 1 and commit its
 *   intent itself as DESIGN.md requires.
 *   After COMMIT the offsets of every message of the batch are stored; the
 *   relay then publishes the outbox. Offsets of uncommitted work are never
 *   stored.
 *
 * Command line: --help, --version, --config FILE, --set NAME=VALUE,
 * --max-messages N (stop after N consumed messages), --exit-on-idle MS (stop
 * after MS with no message, no outbox row and nothing in flight). A bad
 * option or value exits 2 with a message naming the setting.
 * Exit status: 0 clean stop (SIGTERM/SIGINT/limits), 1 fatal error, 2 usage.
 */
#ifndef SF_WORKER_H
#define SF_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "sf_config.h"
#include "sf_error.h"

struct sf_db;
struct sf_event;
struct sf_kafka_producer;

typedef struct sf_worker sf_worker;
/* Per-message context handed to the handler (valid during the call only). */
typedef struct sf_worker_ctx sf_worker_ctx;

/* Handle one decoded event inside the open transaction (see above). */
typedef int (*sf_worker_handler_fn)(sf_worker_ctx *ctx, const struct sf_event *ev, sf_error *err);

/* A periodic task. It runs between polls, outside any transaction: it
 * opens its own transactions on sf_worker_dbh(w). Return -1 + err to log
 * the failure (the task is retried at its next due time). */
typedef int (*sf_worker_task_fn)(sf_worker *w, void *ud, sf_error *err);

typedef struct sf_worker_task {
    const char *name;            /* unique; also the sf_db_schedule_due name */
    int64_t interval_ms;         /* default interval */
    sf_worker_task_fn fn;
    const char *interval_setting;/* nullable: DURATION setting overriding interval_ms */
    bool once_across_replicas;   /* fire through sf_db_schedule_due (one replica per
                                    interval); false = every replica, local clock */
    bool own_thread;             /* run on a thread of its own, every interval, with
                                    its own database connection: on that thread
                                    sf_worker_dbh() returns it. For a task that would
                                    otherwise hold up consumption (the submitter's
                                    SCM calls). Not with once_across_replicas; its
                                    work does not count against --exit-on-idle. A
                                    task that wrote outbox rows calls
                                    sf_worker_kick_relay(). The thread is joined
                                    before the outbox is drained at stop. */
} sf_worker_task;

typedef struct sf_worker_def {
    const char *name;            /* service name: logs, source "scmflow/<name>",
                                    default group id "scmflow-<name>" */
    const char *version;         /* --version; NULL = SCMFLOW_VERSION */
    const sf_cfg_def *settings;  /* the worker's own settings (nullable) */
    size_t nsettings;
    const char *const *topics;   /* consumed topic suffixes, NULL-terminated
                                    (prefix added); NULL/empty = no consumer */
    sf_worker_handler_fn handler;/* required when topics are given */
    const sf_worker_task *tasks; /* nullable */
    size_t ntasks;
    /* Called after the DB is open and migrated, before consuming. May set
     * *ud (passed to tasks, fini and readiness; sf_worker_ud()). -1 = exit 1. */
    int (*init)(sf_worker *w, void **ud, sf_error *err);
    /* Called once at the end (also after a failed init). Frees ud. */
    void (*fini)(sf_worker *w, void *ud);
    /* Extra readiness check for /readyz: 0 ready, -1 not ready with why set. */
    int (*ready)(sf_worker *w, void *ud, char *why, size_t why_len);
    /* Settings for the "no DB" benchmark mode: when true and the setting
     * SCMFLOW_WORKER_DIRECT is on, messages are handled without DB
     * transaction or inbox and sf_worker_emit/publish produce straight to
     * Kafka (at-least-once; used by bench_delivery only). */
    bool allow_direct;
    /* Upper bound on messages per transaction (0 = SCMFLOW_WORKER_BATCH);
     * 1 for handlers with side effects outside the database. */
    int max_batch;
    /* Optional batch hooks for handlers that buffer their writes (one
     * multi-row statement per batch instead of one per message):
     * batch_begin runs after BEGIN of every attempt of a batch (drop what
     * an earlier, rolled-back attempt buffered); batch_end runs after the
     * last handler, before the outbox rows and COMMIT, in the same
     * transaction (sf_worker_dbh(w)). batch_end returning -1 rolls the batch
     * back and retries it like a handler error of that class. */
    void (*batch_begin)(sf_worker *w, void *ud);
    int (*batch_end)(sf_worker *w, void *ud, sf_error *err);
    /* Optional: a message whose envelope is valid but whose data breaks its
     * type's schema (sf_event_decode_envelope returned 1) is dead-lettered
     * as before AND then handed to this hook inside the batch transaction,
     * after its inbox claim (a duplicate id is skipped), so the worker can
     * answer the requester (e.g. order.rejected with sf_worker_emit,
     * correlationid = sf_event_id(ev)). why = the data validation error
     * (field "data..." + msg; never a secret value). The data of ev is
     * UNCHECKED: type-check every member read. Return 0 to commit; INVALID
     * or REJECTED = give up answering (the batch is redone without it);
     * other classes roll the batch back and retry it like a handler error.
     * Not called in direct (benchmark) mode. NULL = dead-letter only. */
    int (*on_invalid_data)(sf_worker_ctx *ctx, const struct sf_event *ev, const sf_error *why,
                           sf_error *err);
} sf_worker_def;

/* Settings the run loop adds to sf_cfg_common (shown by --help):
 *   SCMFLOW_CONSUMER_GROUP          group id (default "scmflow-<name>")
 *   SCMFLOW_KAFKA_MAX_MESSAGE_BYTES consumed message hard limit (1 MiB)
 *   SCMFLOW_WORKER_BATCH            messages per DB transaction (100)
 *   SCMFLOW_WORKER_BATCH_WAIT       max time to fill a batch (5ms)
 *   SCMFLOW_DB_CONNECT_TIMEOUT      how long to retry the first DB connect (60s)
 *   SCMFLOW_RELAY_INTERVAL          outbox relay period (50ms)
 *   SCMFLOW_WORKER_DIRECT           benchmark mode, see allow_direct (false) */

/* Run the worker; returns the process exit status (see top of file). */
int sf_worker_main(int argc, char **argv, const sf_worker_def *def);

/* ---- inside a handler ---- */

sf_worker *sf_worker_ctx_worker(sf_worker_ctx *ctx);
/* The DB handle with the batch transaction open. Do not COMMIT/ROLLBACK it. */
struct sf_db *sf_worker_db(sf_worker_ctx *ctx);
/* Source topic (full name), partition, offset, key (NUL-terminated copy,
 * NULL when the message had none) of the message being handled. */
const char *sf_worker_event_topic(sf_worker_ctx *ctx);
int32_t sf_worker_event_partition(sf_worker_ctx *ctx);
int64_t sf_worker_event_offset(sf_worker_ctx *ctx);
const char *sf_worker_event_key(sf_worker_ctx *ctx);

/*
 * Emit an event to <prefix>events: encodes a CloudEvent (source
 * "scmflow/<name>", new id, correlationid nullable) and queues it for the
 * outbox; the rows are written in the batch transaction just before COMMIT
 * (published after commit by the relay; dropped if the batch rolls back).
 * key = Kafka key (order id or account; nullable). data is borrowed.
 */
int sf_worker_emit(sf_worker_ctx *ctx, const char *type, const char *key, const cJSON *data,
                   const char *correlationid, sf_error *err);
/* Same for another topic (suffix, e.g. SF_TOPIC_CERTS_COLLECTED). */
int sf_worker_publish(sf_worker_ctx *ctx, const char *topic_suffix, const char *key,
                      const char *type, const cJSON *data, const char *correlationid,
                      sf_error *err);

/* ---- periodic tasks (outside a handler) ---- */

/*
 * Emit / publish from a periodic task (or init): encodes a CloudEvent
 * (source "scmflow/<name>", new id, correlationid nullable) and adds it to
 * the outbox with sf_db_outbox_add INSIDE THE CALLER'S OPEN TRANSACTION on
 * db (normally sf_worker_dbh(w)); it is published after that transaction
 * commits. Call sf_worker_kick_relay(w) after the COMMIT so the relay runs
 * at once instead of at its next interval (the outbox NOTIFY also wakes
 * the relays of the other replicas). data is borrowed. In direct
 * (benchmark) mode the event is produced straight to Kafka instead.
 * Returns 0, or -1 with err (INVALID for a bad event, DB errors as
 * classified by sf_db).
 */
int sf_worker_emit_db(sf_worker *w, struct sf_db *db, const char *type, const char *key,
                      const cJSON *data, const char *correlationid, sf_error *err);
/* Same for another topic (suffix, e.g. SF_TOPIC_STATUS_COMMANDS). */
int sf_worker_publish_db(sf_worker *w, struct sf_db *db, const char *topic_suffix, const char *key,
                         const char *type, const cJSON *data, const char *correlationid,
                         sf_error *err);
/* Ask the loop to run the outbox relay right after the current task/batch
 * (call after the COMMIT of rows added with the helpers above). Cheap;
 * may be called from the loop's thread only. */
void sf_worker_kick_relay(sf_worker *w);

/* ---- anywhere ---- */

const sf_config *sf_worker_config(const sf_worker *w);
/* A DB handle for init, tasks and fini (no transaction open between calls). */
struct sf_db *sf_worker_dbh(sf_worker *w);
/* The idempotent producer (e.g. for a task that must publish directly). */
struct sf_kafka_producer *sf_worker_producer(sf_worker *w);
const char *sf_worker_topic_prefix(const sf_worker *w);
/* prefix + suffix into buf; returns buf (truncated names cannot happen for
 * the fixed suffixes with a 256-byte buf). */
const char *sf_worker_topic(const sf_worker *w, const char *suffix, char *buf, size_t size);
const char *sf_worker_name(const sf_worker *w);
/* "hostname-pid", unique per process. */
const char *sf_worker_instance_id(const sf_worker *w);
const char *sf_worker_group_id(const sf_worker *w);
void *sf_worker_ud(const sf_worker *w);
/* True after SIGTERM/SIGINT or a --max-messages/--exit-on-idle stop:
 * long tasks should return early. */
bool sf_worker_stop_requested(const sf_worker *w);
/* Ask the loop to stop after the current message/batch. */
void sf_worker_request_stop(sf_worker *w);

/*
 * Test failpoint: when env SCMFLOW_FAILPOINT equals name, or "name:N" and
 * this is the N-th hit of name in this process, the process SIGKILLs
 * itself. Cheap when unset. Points in the loop: "worker.after_handler",
 * "worker.after_commit_before_offset", "relay.after_produce_before_mark".
 */
void sf_failpoint(const char *name);

#endif
