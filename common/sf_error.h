/*
 * sf_error.h - the one error object that crosses a boundary (HTTP, Kafka,
 * PostgreSQL, SCM). Functions return int (0 ok, negative error) and, when the
 * caller passed an sf_error, fill it so the caller can choose between retry,
 * reject and dead-letter without parsing strings.
 */
#ifndef SF_ERROR_H
#define SF_ERROR_H

#include <stdbool.h>

typedef enum sf_err_class {
    SF_ERR_NONE = 0,
    SF_ERR_INVALID,    /* bad input: named field, never retried */
    SF_ERR_TRANSIENT,  /* timeout, connection, 5xx, 429: retry with backoff */
    SF_ERR_REJECTED,   /* a definite answer "no" from a peer (SCM negative code) */
    SF_ERR_AUTH,       /* credentials refused */
    SF_ERR_NOT_FOUND,  /* the thing asked for does not exist */
    SF_ERR_PENDING,    /* not ready yet (certificate being processed) */
    SF_ERR_UNKNOWN,    /* outcome unknown: the request may have taken effect */
    SF_ERR_FATAL,      /* cannot continue (configuration, fatal Kafka error) */
    SF_ERR_INTERNAL,   /* out of memory, bug */
} sf_err_class;

typedef struct sf_error {
    sf_err_class cls;
    int code;          /* peer code: SCM code, HTTP status, SQLSTATE-derived, ... */
    int http_status;   /* HTTP status when the error came from HTTP, else 0 */
    int retry_after_ms;/* Retry-After from the peer, 0 when absent */
    char field[64];    /* the offending field for SF_ERR_INVALID, "" otherwise */
    char msg[512];     /* human text; truncated with "..." if longer */
} sf_error;

void sf_error_clear(sf_error *e);
/* Set an error; e may be NULL (then nothing is recorded). Always returns -1
 * so callers can write `return sf_error_set(e, ...);`. */
int sf_error_set(sf_error *e, sf_err_class cls, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Same, naming the offending field. */
int sf_error_field(sf_error *e, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
bool sf_error_is_retriable(const sf_error *e);
const char *sf_err_class_name(sf_err_class cls);

#endif
