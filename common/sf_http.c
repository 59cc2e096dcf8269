/*
 * sf_http.c - /healthz, /readyz, /metrics on libmicrohttpd, one thread per
 * connection: a slow readiness check (a hung database) must never delay
 * /healthz, or the orchestrator would kill a live process. The ready
 * callback is serialised by a mutex (at most one call at a time).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "sf_http.h"
#include "sf_metrics.h"
#include "sf_util.h"

/* /metrics bodies are bounded: a runaway label set must not eat memory. */
#define METRICS_MAX_BYTES (16u * 1024 * 1024)
#define WHY_MAX 512

struct sf_http {
    struct MHD_Daemon *mhd;
    sf_http_ready_fn ready;
    void *ud;
    pthread_mutex_t ready_lock;
    int port;
};

static enum MHD_Result send_text(struct MHD_Connection *conn, unsigned status,
                                 const char *ctype, char *body, size_t len, int owned)
{
    struct MHD_Response *r;
    enum MHD_Result ret;

    r = MHD_create_response_from_buffer(len, body,
                                        owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_MUST_COPY);
    if (!r) {
        if (owned)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", ctype);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_static(struct MHD_Connection *conn, unsigned status, const char *text)
{
    return send_text(conn, status, "text/plain; charset=utf-8", (char *)(uintptr_t)text,
                     strlen(text), 0);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version,
                              const char *upload_data, size_t *upload_data_size,
                              void **con_cls)
{
    sf_http *h = cls;

    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)con_cls;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return send_static(conn, 405, "method not allowed\n");

    if (strcmp(url, "/healthz") == 0)
        return send_static(conn, 200, "ok\n");

    if (strcmp(url, "/readyz") == 0) {
        char why[WHY_MAX];
        char *body;
        int ok = 1;
        why[0] = '\0';
        if (h->ready) {
            pthread_mutex_lock(&h->ready_lock);
            ok = h->ready(h->ud, why, sizeof(why)) == 1;
            pthread_mutex_unlock(&h->ready_lock);
        }
        if (ok)
            return send_static(conn, 200, "ready\n");
        why[sizeof(why) - 1] = '\0';
        body = sf_asprintf("not ready: %s\n", why[0] ? why : "unknown reason");
        if (!body)
            return send_static(conn, 503, "not ready\n");
        return send_text(conn, 503, "text/plain; charset=utf-8", body, strlen(body), 1);
    }

    if (strcmp(url, "/metrics") == 0) {
        sf_buf b;
        size_t len;
        char *body;
        sf_buf_init(&b, METRICS_MAX_BYTES);
        if (sf_metrics_render(&b) < 0) {
            sf_buf_release(&b);
            return send_static(conn, 500, "metrics too large\n");
        }
        body = sf_buf_detach(&b, &len);
        if (!body)
            return send_static(conn, 200, "");
        return send_text(conn, 200, "text/plain; version=0.0.4; charset=utf-8", body, len, 1);
    }
    return send_static(conn, 404, "not found\n");
}

static int parse_listen(const char *s, struct sockaddr_in *sa)
{
    char host[64];
    const char *colon;
    int64_t port;
    size_t hl;

    if (!s || !(colon = strrchr(s, ':')))
        return -1;
    hl = (size_t)(colon - s);
    if (hl == 0 || hl >= sizeof(host))
        return -1;
    memcpy(host, s, hl);
    host[hl] = '\0';
    if (strcmp(host, "localhost") == 0)
        sf_snprintf(host, sizeof(host), "127.0.0.1");
    if (sf_str_to_i64(colon + 1, 0, 65535, &port) < 0)
        return -1;
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

sf_http *sf_http_start(const char *listen, sf_http_ready_fn ready, void *ud, sf_error *err)
{
    struct sockaddr_in sa;
    const union MHD_DaemonInfo *info;
    sf_http *h = NULL, *ret = NULL;

    if (parse_listen(listen, &sa) < 0) {
        sf_error_field(err, "SCMFLOW_HTTP_LISTEN",
                       "invalid listen address \"%s\" (want IPv4:port)", listen ? listen : "");
        goto out;
    }
    h = calloc(1, sizeof(*h));
    if (!h) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    h->ready = ready;
    h->ud = ud;
    pthread_mutex_init(&h->ready_lock, NULL);
    errno = 0;
    h->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION,
                              0, NULL, NULL, handle, h,
                              MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)65536,
                              MHD_OPTION_END);
    if (!h->mhd) {
        sf_error_set(err, SF_ERR_FATAL, errno, "could not listen on \"%s\": %s", listen,
                     errno ? strerror(errno) : "libmicrohttpd failed to start");
        goto out;
    }
    info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
    if (!info || info->port == 0) {
        sf_error_set(err, SF_ERR_FATAL, 0, "could not read the bound port of \"%s\"", listen);
        goto out;
    }
    h->port = info->port;
    ret = h;
    h = NULL;
out:
    sf_http_stop(h);
    return ret;
}

int sf_http_port(const sf_http *h)
{
    return h ? h->port : 0;
}

void sf_http_stop(sf_http *h)
{
    if (!h)
        return;
    if (h->mhd)
        MHD_stop_daemon(h->mhd);
    pthread_mutex_destroy(&h->ready_lock);
    free(h);
}
