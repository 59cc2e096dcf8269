/*
 * sf_log.h - the one logger. JSON lines (default) or text, level-gated before
 * formatting, every line carrying the service name and, where set, the
 * thread's message context (topic, partition, offset, order id).
 *
 * Secrets: never pass a secret to a log call. As a second line of defence,
 * values registered with sf_log_register_secret() are replaced by "[redacted]"
 * in every line before it is written, whatever path they took.
 *
 * Library code (common/) logs at debug/info only; the decision to complain
 * loudly belongs to a worker's main.c.
 */
#ifndef SF_LOG_H
#define SF_LOG_H

#include <stdint.h>
#include <stdio.h>

typedef enum sf_log_level {
    SF_LOG_DEBUG = 0,
    SF_LOG_INFO,
    SF_LOG_WARN,
    SF_LOG_ERROR,
} sf_log_level;

typedef enum sf_log_format { SF_LOG_JSON = 0, SF_LOG_TEXT } sf_log_format;

/* Set once at start-up, before threads (not thread-safe). */
void sf_log_init(const char *service, sf_log_level level, sf_log_format format);
/* Where lines go (default stderr). */
void sf_log_set_stream(FILE *f);
int sf_log_parse_level(const char *s, sf_log_level *out);
int sf_log_parse_format(const char *s, sf_log_format *out);
int sf_log_enabled(sf_log_level level);

/* Register a secret value to scrub from every line (copied; at most 64
 * values of 4..4096 bytes; shorter ones would redact ordinary words). */
int sf_log_register_secret(const char *value);
void sf_log_clear_secrets(void);

/* Thread-local context attached to every line until cleared. NULL / -1
 * means "not set". Strings are copied. */
void sf_log_ctx_set(const char *topic, int32_t partition, int64_t offset, const char *order_id);
void sf_log_ctx_order(const char *order_id);
void sf_log_ctx_clear(void);

void sf_log_write(sf_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A line with extra "key":"value" string fields (kv is NULL-terminated pairs). */
void sf_log_kv(sf_log_level level, const char *const *kv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define sf_log_debug(...) do { if (sf_log_enabled(SF_LOG_DEBUG)) sf_log_write(SF_LOG_DEBUG, __VA_ARGS__); } while (0)
#define sf_log_info(...)  do { if (sf_log_enabled(SF_LOG_INFO))  sf_log_write(SF_LOG_INFO, __VA_ARGS__); } while (0)
#define sf_log_warn(...)  do { if (sf_log_enabled(SF_LOG_WARN))  sf_log_write(SF_LOG_WARN, __VA_ARGS__); } while (0)
#define sf_log_error(...) do { if (sf_log_enabled(SF_LOG_ERROR)) sf_log_write(SF_LOG_ERROR, __VA_ARGS__); } while (0)

/* Routers for the libraries' own messages (install with their APIs):
 * librdkafka: rd_kafka_conf_set_log_cb(conf, sf_log_rdkafka_cb)
 * libpq:      PQsetNoticeProcessor(conn, sf_log_pq_notice, NULL)
 * libcurl:    CURLOPT_DEBUGFUNCTION is not used (it would carry headers
 *             with the SCM password); curl errors reach the log through
 *             sf_error instead. */
struct rd_kafka_s;
void sf_log_rdkafka_cb(const struct rd_kafka_s *rk, int level, const char *fac, const char *buf);
void sf_log_pq_notice(void *arg, const char *message);

#endif
