/*
 * sf_msg.h - the CloudEvents 1.0 envelope (structured JSON mode) every
 * scmflow message uses, and validation of the data of every known type
 * against the contract in proto/schemas/ (DESIGN.md "Message contract").
 *
 * Envelope: specversion "1.0", id (1..128 chars), source (1..256), type
 * (1..128), time (RFC 3339), datacontenttype "application/json" (optional on
 * decode, always written on encode), optional subject (<=256) and
 * correlationid (<=128, the id of the command an event answers), data
 * (a JSON object; required for known types).
 *
 * Decoding treats the bytes as untrusted: whole message <= SF_MSG_MAX_BYTES,
 * valid UTF-8, exactly one JSON value (no trailing bytes), nesting limited by
 * cJSON (CJSON_NESTING_LIMIT, 1000), no duplicate object keys anywhere (field
 * = the path of the duplicate), then the envelope, then the data of known
 * types. Unknown fields are ignored; JSON null is a value, not "absent"
 * (omit optional fields instead). Unknown types are accepted with their
 * data unchecked so pass-through consumers work; check sf_event_type_known().
 * Cost (measured, -O2): ~3 us for a small command, ~80 us for an enroll
 * with 100 SANs.
 *
 * Errors are SF_ERR_INVALID with err->field naming the failure:
 *   "message"          size, UTF-8, not JSON, not an object, trailing bytes
 *   "specversion", "id", "type", "source", "time", "datacontenttype",
 *   "subject", "correlationid", "data"
 *   "data.<path>"      e.g. "data.sans[3]", "data.custom_fields[0].name"
 * and err->msg saying what is allowed. Values of secret fields
 * (keystore_password) are never copied into err. Allocation failure is
 * SF_ERR_INTERNAL.
 *
 * Thread-safety: all functions are reentrant; an sf_event is immutable after
 * decode and may be read from several threads.
 */
#ifndef SF_MSG_H
#define SF_MSG_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "sf_error.h"
#include "sf_topics.h"

#define SF_MSG_MAX_BYTES (1024u * 1024u)       /* whole encoded message */
#define SF_MSG_SPECVERSION "1.0"
#define SF_MSG_CONTENT_TYPE "application/cloudevents+json" /* Kafka header value */
#define SF_MSG_DATA_CONTENT_TYPE "application/json"
#define SF_MSG_ID_MAX 128           /* id, correlationid (characters) */
#define SF_MSG_TYPE_MAX 128
#define SF_MSG_SOURCE_MAX 256
#define SF_MSG_SUBJECT_MAX 256

typedef struct sf_event sf_event;

/*
 * Decode and validate one message. bytes need not be NUL-terminated.
 * On success *out is a new event the caller frees with sf_event_free().
 * On failure *out is untouched and err (nullable) says why (see above).
 */
int sf_event_decode(const void *bytes, size_t len, sf_event **out, sf_error *err);
/*
 * Like sf_event_decode, but a message whose envelope is valid while the data
 * of its (known) type is not is still returned, so a consumer can answer the
 * requester (e.g. order.rejected naming data_err->field) instead of only
 * dead-lettering it. data_err is required.
 * Returns 0: all valid (*out set, data_err untouched); 1: envelope valid,
 * data invalid (*out set; data_err says why, field "data" or "data.<path>",
 * never a secret value; sf_event_data() may then be NULL or not an object and
 * its members are UNCHECKED: type-check everything read from it);
 * -1: the envelope (or the message) is invalid, *out untouched, err set.
 */
int sf_event_decode_envelope(const void *bytes, size_t len, sf_event **out, sf_error *data_err,
                             sf_error *err);
/* Accepts NULL. */
void sf_event_free(sf_event *ev);

/* Accessors: borrowed strings owned by ev, NULL when absent. */
const char *sf_event_id(const sf_event *ev);
const char *sf_event_type(const sf_event *ev);
const char *sf_event_source(const sf_event *ev);
const char *sf_event_time(const sf_event *ev);
const char *sf_event_subject(const sf_event *ev);
const char *sf_event_correlationid(const sf_event *ev);
/* The data object (borrowed, owned by ev; NULL only for an unknown type
 * without data). Do not modify. */
const cJSON *sf_event_data(const sf_event *ev);
/* The whole decoded envelope (borrowed), e.g. to forward it unchanged. */
const cJSON *sf_event_json(const sf_event *ev);
/* True when the event's type is one of the types in sf_topics.h (its data
 * was validated). */
bool sf_event_is_known(const sf_event *ev);

/* True when type is one of the command/message/event types in sf_topics.h. */
bool sf_event_type_known(const char *type);

/*
 * Validate data against the contract of type. Unknown type: -1, field
 * "type". data NULL or not an object: -1, field "data". Field paths in err
 * start with "data.".
 */
int sf_event_validate_data(const char *type, const cJSON *data, sf_error *err);

/*
 * Encode a message. type and source are required; id NULL = a new random
 * UUIDv4 (RAND_bytes); correlationid nullable; data is borrowed (not
 * modified) and, for known types, validated first: a worker must never emit
 * an invalid message. data NULL is allowed only for unknown types.
 * time = now (RFC 3339, UTC, milliseconds).
 * On success *out is a NUL-terminated compact JSON string the caller frees
 * with free() and *out_len (nullable) its length without the NUL.
 * Fails (field "message") when the result would exceed SF_MSG_MAX_BYTES.
 */
int sf_event_encode(const char *type, const char *source, const char *id,
                    const char *correlationid, const cJSON *data, char **out, size_t *out_len,
                    sf_error *err);

/* Same with an optional subject (nullable) and time (nullable = now; else an
 * RFC 3339 string, validated). */
int sf_event_encode_ex(const char *type, const char *source, const char *id,
                       const char *correlationid, const char *subject, const char *time,
                       const cJSON *data, char **out, size_t *out_len, sf_error *err);

/* A new random UUIDv4 in canonical lowercase form into buf (>= 37 bytes).
 * Returns 0, or -1 (buf too small, RAND_bytes failure). */
int sf_uuid4(char *buf, size_t n);

/* True when s is an RFC 3339 date-time ("2026-11-26T23:02:10.123Z",
 * "...+01:00"; 'T'/'Z' case-insensitive per RFC 3339), with a valid calendar
 * date. */
bool sf_rfc3339_valid(const char *s);

/*
 * The JSON Schema (draft 2020-12) the C validator implements for type
 * (a type from sf_topics.h, or SF_MSG_ENVELOPE), generated from the same
 * tables the validator uses. The unit tests compare it with
 * proto/schemas/<type>.schema.json so the two cannot drift.
 * On success *out is a new cJSON the caller frees with cJSON_Delete().
 */
int sf_msg_schema(const char *type, cJSON **out, sf_error *err);

/* The known types, NULL-terminated (for tests and tools). */
const char *const *sf_msg_known_types(void);

#endif
