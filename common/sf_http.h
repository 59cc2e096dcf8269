/*
 * sf_http.h - the operational HTTP endpoint of a worker (libmicrohttpd,
 * its own thread):
 *   GET /healthz  200 "ok\n" - liveness; touches no dependency.
 *   GET /readyz   calls ready(); 200 "ready\n", or 503 with the reason the
 *                 callback wrote into why (e.g. "database: connection refused").
 *   GET /metrics  200 sf_metrics_render() as text/plain; version=0.0.4
 *   anything else 404; a method other than GET/HEAD 405.
 *
 * Each connection has its own thread, so a slow ready callback never delays
 * /healthz. The ready callback runs on an HTTP thread, at most one call at a
 * time, and must be thread-safe with respect to the worker's own state;
 * return 1 when ready, 0 when not (fill why, NUL-terminated, at most why_len
 * bytes). Keep it bounded in time (e.g. a DB ping with a timeout).
 */
#ifndef SF_HTTP_H
#define SF_HTTP_H

#include <stddef.h>

#include "sf_error.h"

typedef struct sf_http sf_http;

typedef int (*sf_http_ready_fn)(void *ud, char *why, size_t why_len);

/* Start serving on listen = "host:port" (IPv4 address or "localhost"; port 0
 * picks a free port, see sf_http_port). ready may be NULL (always ready).
 * Returns the server, or NULL with err filled (SF_ERR_INVALID for a bad
 * address, SF_ERR_FATAL when the port cannot be bound). Caller frees with
 * sf_http_stop. */
sf_http *sf_http_start(const char *listen, sf_http_ready_fn ready, void *ud,
                       sf_error *err);

/* The TCP port actually bound (useful with port 0). */
int sf_http_port(const sf_http *h);

/* Stop serving, join the thread and free. Accepts NULL. */
void sf_http_stop(sf_http *h);

#endif
