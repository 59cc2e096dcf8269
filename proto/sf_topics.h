/*
 * sf_topics.h - topic names and message type names of the scmflow message
 * contract (DESIGN.md "Topics" and "Message contract").
 *
 * Topic constants are suffixes: the full Kafka topic name is
 * SCMFLOW_TOPIC_PREFIX (default "scm.") + suffix; build it with
 * sf_topic_name().
 *
 * Command types carry the "scmflow." prefix; event types on <prefix>events
 * are written exactly as DESIGN.md writes them ("order.issued", ...).
 * One JSON Schema per type lives in proto/schemas/<type>.schema.json.
 */
#ifndef SF_TOPICS_H
#define SF_TOPICS_H

#include <stddef.h>

/* ---- topic suffixes ---- */
#define SF_TOPIC_DEFAULT_PREFIX "scm."
#define SF_TOPIC_CATALOG_COMMANDS "catalog.commands"       /* key: account */
#define SF_TOPIC_ORDER_COMMANDS "order.commands"           /* key: order id */
#define SF_TOPIC_STATUS_COMMANDS "status.commands"         /* key: order id */
#define SF_TOPIC_CERTS_COLLECTED "certificates.collected"  /* key: order id */
#define SF_TOPIC_EVENTS "events"                           /* key: order id or account */
#define SF_TOPIC_DEADLETTER "deadletter"                   /* key: original key */

/* ---- command types ---- */
#define SF_CMD_CATALOG_SYNC "scmflow.catalog.sync"         /* catalog.commands */
#define SF_CMD_ORDERS_IMPORT "scmflow.orders.import"       /* catalog.commands */
#define SF_CMD_ORDER_ENROLL "scmflow.order.enroll"         /* order.commands */
#define SF_CMD_ORDER_RENEW "scmflow.order.renew"           /* order.commands */
#define SF_CMD_ORDER_REISSUE "scmflow.order.reissue"       /* order.commands */
#define SF_CMD_ORDER_REVOKE "scmflow.order.revoke"         /* order.commands */
#define SF_CMD_ORDER_DELETE "scmflow.order.delete"         /* order.commands */
#define SF_CMD_ORDER_CHECK_STATUS "scmflow.order.check_status" /* status.commands */

/* ---- the collected certificate (status-poller -> repo-ingest) ---- */
#define SF_MSG_CERT_COLLECTED "scmflow.certificate.collected" /* certificates.collected */

/* ---- events on <prefix>events ---- */
#define SF_EV_CATALOG_SYNCED "catalog.synced"
#define SF_EV_CATALOG_SYNC_FAILED "catalog.sync_failed"
#define SF_EV_CATALOG_SYNC_PROGRESS "catalog.sync_progress"
#define SF_EV_ORDERS_IMPORTED "orders.imported"
#define SF_EV_ORDERS_IMPORT_PROGRESS "orders.import_progress"
#define SF_EV_ORDER_ACCEPTED "order.accepted"
#define SF_EV_ORDER_REJECTED "order.rejected"
#define SF_EV_ORDER_SUBMITTED "order.submitted"
#define SF_EV_ORDER_STATUS_CHANGED "order.status_changed"
#define SF_EV_ORDER_ISSUED "order.issued"
#define SF_EV_ORDER_FAILED "order.failed"
#define SF_EV_ORDER_RENEWED "order.renewed"
#define SF_EV_ORDER_REISSUED "order.reissued"
#define SF_EV_ORDER_REVOKED "order.revoked"
#define SF_EV_ORDER_DELETED "order.deleted"
#define SF_EV_CERT_STORED "certificate.stored"
#define SF_EV_CERT_NOT_STORED "certificate.not_stored"
#define SF_EV_CERT_REJECTED "certificate.rejected"

/* The envelope itself (schema proto/schemas/cloudevent.schema.json). */
#define SF_MSG_ENVELOPE "cloudevent"

/*
 * Write prefix + suffix into buf (size n). prefix NULL = the default "scm.".
 * Returns 0, or -1 when an argument is NULL/empty suffix, the result does not
 * fit, or the name is not a legal Kafka topic name (1..249 of [A-Za-z0-9._-]).
 * buf is left unchanged on failure.
 */
int sf_topic_name(const char *prefix, const char *suffix, char *buf, size_t n);

/* The topic suffix a command/message type is published to, e.g.
 * SF_CMD_ORDER_ENROLL -> SF_TOPIC_ORDER_COMMANDS; event types -> SF_TOPIC_EVENTS
 * for every known event; NULL for unknown types. */
const char *sf_topic_for_type(const char *type);

#endif
