/*
 * sf_relay.h - the outbox relay: publishes rows that handlers wrote to the
 * outbox table (sf_db_outbox_add, inside their transaction) with the
 * idempotent producer, waits for the delivery reports and marks the
 * delivered rows sent. A row whose delivery failed stays unsent and is
 * retried on a later run, so an event is published at least once and, with
 * the idempotent producer and the recovery scan below, exactly once in the
 * usual cases.
 *
 * Only one relay publishes at a time across replicas: sf_db_outbox_fetch
 * takes the DB lock (rows are locked for the duration of the relay's own
 * short transaction).
 *
 * The relay uses its own DB handle state: call sf_relay_run_once() only
 * when no transaction is open on that handle.
 */
#ifndef SF_RELAY_H
#define SF_RELAY_H

#include <stdint.h>

#include "sf_error.h"

struct sf_db;
struct sf_kafka_producer;

typedef struct sf_relay sf_relay;

/* Header carrying the outbox row id on every relayed message. */
#define SF_RELAY_HDR_OUTBOX_ID "scmflow-outbox-id"

struct sf_kafka_opts;

typedef struct sf_relay_opts {
    int batch;          /* rows fetched per run; 0 = 500 */
    int timeout_ms;     /* wait for delivery reports per run; 0 = 10000 */
    /* Recovery scan (nullable = off; borrowed, must outlive the relay):
     * on its first run, and after a run that failed between producing and
     * marking, the relay reads the tail of the target topics (2 x batch
     * messages per partition) and marks rows whose id it finds in the
     * scmflow-outbox-id header as sent instead of publishing them again.
     * This makes a crash between the broker's acknowledgement and the
     * "sent" mark invisible to readers when the same process restarts.
     * Gap: if ANOTHER replica's relay picks up the crashed relay's rows
     * first, it republishes them (at most one batch); readers dedup by
     * event id. */
    const struct sf_kafka_opts *kafka;
} sf_relay_opts;

/* Borrowed db and producer must outlive the relay. opts may be NULL. */
sf_relay *sf_relay_new(struct sf_db *db, struct sf_kafka_producer *p, const sf_relay_opts *opts,
                       sf_error *err);
void sf_relay_free(sf_relay *r);

/*
 * One pass: fetch up to `batch` unsent rows, produce them, wait for their
 * reports, mark the delivered ones sent (one transaction). Sets *sent (may be
 * NULL) to the number marked sent; returns 1 when the batch was full (more
 * rows probably wait), 0 when it was not, -1 on error (TRANSIENT: retry
 * later; FATAL: producer unusable). Failpoint "relay.after_produce_before_mark".
 */
int sf_relay_run_once(sf_relay *r, int *sent, sf_error *err);

/* Rows sent and delivery failures since start. */
uint64_t sf_relay_sent_total(const sf_relay *r);
uint64_t sf_relay_failed_total(const sf_relay *r);

#endif
