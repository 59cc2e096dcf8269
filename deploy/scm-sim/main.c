/* scm-sim: command line, HTTP(S) server (libmicrohttpd), request record,
 * fault injection and rate limiting. */
#include "sim.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <microhttpd.h>
#include <openssl/rand.h>

volatile int g_stopping;
static volatile sig_atomic_t g_signal;

typedef struct conn_ctx {
    char *body;
    size_t len, cap;
    bool too_big;
    bool api;               /* an /api request: timed for /__sim/state */
    int64_t t_arrive_us;    /* request headers parsed */
    int64_t t_answer_us;    /* response queued (after latency and handling) */
} conn_ctx;

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ------------------------------------------------------------ helpers */

const char *req_query(const sim_req *r, const char *key)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *req_header(const sim_req *r, const char *key)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, key);
}

void resp_json(sim_resp *r, int status, cJSON *body)
{
    r->status = status;
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
    if (body) {
        r->body = cJSON_PrintUnformatted(body);
        r->body_len = r->body ? strlen(r->body) : 0;
        cJSON_Delete(body);
    }
}

void resp_error(sim_resp *r, int status, int code, const char *fmt, ...)
{
    char desc[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(desc, sizeof desc, fmt, ap);
    va_end(ap);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "code", code);
    cJSON_AddStringToObject(o, "description", desc);
    resp_json(r, status, o);
}

static void sleep_ms_interruptible(long ms)
{
    int64_t end = sim_now_ms() + ms;
    while (!g_stopping) {
        int64_t left = end - sim_now_ms();
        if (left <= 0)
            break;
        struct timespec ts = {0, (left > 20 ? 20 : left) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static double rand01(void)
{
    uint32_t v;
    if (RAND_bytes((unsigned char *)&v, sizeof v) != 1)
        return 0.5;
    return (double)v / 4294967296.0;
}

/* ------------------------------------------------------------- record */

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    (void)kind;
    cJSON *o = cls;
    const char *v = value ? value : "";
    if (strcasecmp(key, "password") == 0)
        v = "***";
    cJSON_AddStringToObject(o, key, v);
    return MHD_YES;
}

typedef struct qbuf { char s[2048]; size_t n; } qbuf;

static enum MHD_Result collect_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    (void)kind;
    qbuf *q = cls;
    if (q->n < sizeof q->s) {
        int w = snprintf(q->s + q->n, sizeof q->s - q->n, "%s%s%s%s", q->n ? "&" : "", key,
                         value ? "=" : "", value ? value : "");
        if (w > 0)
            q->n += (size_t)w;
        if (q->n >= sizeof q->s)
            q->n = sizeof q->s - 1;
    }
    return MHD_YES;
}

static void record_free(sim_record *e)
{
    free(e->path);
    free(e->query);
    free(e->headers);
    free(e->body);
    memset(e, 0, sizeof *e);
}

void record_clear(void)
{
    for (size_t i = 0; i < g_sim.rec_count; i++)
        record_free(&g_sim.records[(g_sim.rec_head + i) % g_sim.rec_max]);
    g_sim.rec_count = 0;
    g_sim.rec_head = 0;
}

/* Build an entry outside the lock (the costly part), insert it under the lock. */
static void record_prepare(sim_record *e, struct MHD_Connection *c, const char *method, const char *path,
                           const char *body, size_t body_len, int status, const char *fault)
{
    memset(e, 0, sizeof *e);
    e->time_ms = sim_now_ms();
    snprintf(e->method, sizeof e->method, "%s", method);
    e->path = strdup(path);
    qbuf q = {.n = 0};
    q.s[0] = '\0';
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_query, &q);
    e->query = strdup(q.s);
    cJSON *h = cJSON_CreateObject();
    MHD_get_connection_values(c, MHD_HEADER_KIND, collect_header, h);
    if (fault)
        cJSON_AddStringToObject(h, "x-sim-fault", fault);
    e->headers = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    size_t bl = body_len > SIM_RECORD_BODY_MAX ? SIM_RECORD_BODY_MAX : body_len;
    e->body = malloc(bl + 1);
    if (e->body) {
        memcpy(e->body, body ? body : "", bl);
        e->body[bl] = '\0';
    }
    e->status = status;
}

/* Caller holds the lock; takes over the strings of *src. */
static void record_insert(sim_record *src)
{
    if (!g_sim.records || g_sim.rec_max == 0) {
        record_free(src);
        return;
    }
    sim_record *e;
    if (g_sim.rec_count == g_sim.rec_max) {
        e = &g_sim.records[g_sim.rec_head];
        record_free(e);
        g_sim.rec_head = (g_sim.rec_head + 1) % g_sim.rec_max;
    } else {
        e = &g_sim.records[(g_sim.rec_head + g_sim.rec_count) % g_sim.rec_max];
        g_sim.rec_count++;
    }
    *e = *src;
    e->seq = ++g_sim.rec_seq;
    memset(src, 0, sizeof *src);
}

/* ------------------------------------------------------------- faults */

void faults_clear(void)
{
    for (size_t i = 0; i < g_sim.nrules; i++)
        free(g_sim.rules[i].path_prefix);
    free(g_sim.rules);
    g_sim.rules = NULL;
    g_sim.nrules = 0;
    g_sim.latency_ms = g_sim.jitter_ms = 0;
    g_sim.rl_rps = g_sim.rl_burst = 0;
    free(g_sim.buckets);
    g_sim.buckets = NULL;
    g_sim.nbuckets = 0;
    cJSON_Delete(g_sim.faults_json);
    g_sim.faults_json = NULL;
}

static int kind_parse(const cJSON *k)
{
    char buf[32];
    if (cJSON_IsNumber(k))
        snprintf(buf, sizeof buf, "%d", k->valueint);
    else if (cJSON_IsString(k))
        snprintf(buf, sizeof buf, "%s", k->valuestring);
    else
        return -1;
    static const struct { const char *n; int k; } t[] = {
        {"500", SIM_FK_500}, {"503", SIM_FK_503}, {"429", SIM_FK_429}, {"reset", SIM_FK_RESET},
        {"hang", SIM_FK_HANG}, {"timeout_after_commit", SIM_FK_TAC}, {"pending", SIM_FK_PENDING},
        {"delay", SIM_FK_DELAY},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(buf, t[i].n) == 0)
            return t[i].k;
    return -1;
}

/* Caller holds the lock. */
int faults_set(const cJSON *j, char *err, size_t errlen)
{
    if (!cJSON_IsObject(j)) {
        snprintf(err, errlen, "faults must be a JSON object");
        return -1;
    }
    const cJSON *rules = cJSON_GetObjectItemCaseSensitive(j, "rules");
    if (rules && !cJSON_IsArray(rules)) {
        snprintf(err, errlen, "rules must be an array");
        return -1;
    }
    int n = cJSON_GetArraySize(rules);
    sim_fault_rule *nr = n ? calloc((size_t)n, sizeof *nr) : NULL;
    if (n && !nr)
        return -1;
    int i = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, rules) {
        sim_fault_rule *x = &nr[i++];
        const char *pp = store_json_str(r, "path_prefix", "/");
        x->path_prefix = strdup(pp);
        snprintf(x->method, sizeof x->method, "%s", store_json_str(r, "method", ""));
        x->kind = kind_parse(cJSON_GetObjectItemCaseSensitive(r, "kind"));
        const cJSON *cnt = cJSON_GetObjectItemCaseSensitive(r, "count");
        const cJSON *rate = cJSON_GetObjectItemCaseSensitive(r, "error_rate");
        x->count = cJSON_IsNumber(cnt) ? (cnt->valuedouble < 0 ? 0 : cnt->valuedouble > 1e9 ? 1000000000L
                                                                   : (long)cnt->valuedouble)
                                        : -1;
        x->error_rate = cJSON_IsNumber(rate) ? rate->valuedouble : (cJSON_IsNumber(cnt) ? 0 : 1.0);
        const cJSON *ra = cJSON_GetObjectItemCaseSensitive(r, "retry_after_s");
        x->retry_after_s = cJSON_IsNumber(ra) ? ra->valueint : -1;
        const cJSON *hm = cJSON_GetObjectItemCaseSensitive(r, "hang_ms");
        x->hang_ms = cJSON_IsNumber(hm) && hm->valuedouble >= 0 && hm->valuedouble <= 3600000
                         ? (long)hm->valuedouble : 30000;
        if (!x->path_prefix || x->kind < 0 || x->error_rate < 0 || x->error_rate > 1) {
            snprintf(err, errlen, "rule %d: needs path_prefix, a known kind (500|503|429|reset|hang|"
                     "timeout_after_commit|pending|delay) and error_rate in 0..1 or count", i - 1);
            for (int k = 0; k < i; k++)
                free(nr[k].path_prefix);
            free(nr);
            return -1;
        }
    }
    faults_clear();
    g_sim.rules = nr;
    g_sim.nrules = (size_t)n;
    const cJSON *v;
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(j, "latency_ms")) && v->valuedouble >= 0 &&
        v->valuedouble <= 600000)
        g_sim.latency_ms = (long)v->valuedouble;
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(j, "latency_jitter_ms")) && v->valuedouble >= 0 &&
        v->valuedouble <= 600000)
        g_sim.jitter_ms = (long)v->valuedouble;
    const cJSON *rl = cJSON_GetObjectItemCaseSensitive(j, "rate_limit");
    if (cJSON_IsObject(rl)) {
        if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(rl, "per_account_rps")))
            g_sim.rl_rps = v->valuedouble;
        g_sim.rl_burst = g_sim.rl_rps;
        if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(rl, "burst")))
            g_sim.rl_burst = v->valuedouble;
        if (g_sim.rl_burst < 1)
            g_sim.rl_burst = 1;
    }
    g_sim.faults_json = cJSON_Duplicate(j, 1);
    return 0;
}

/* Caller holds the lock. Returns the rule that fires, or NULL. */
static sim_fault_rule *fault_match(const char *method, const char *path)
{
    /* rules see the path with /private stripped */
    const char *p = strncmp(path, "/private/", 9) == 0 ? path + 8 : path;
    for (size_t i = 0; i < g_sim.nrules; i++) {
        sim_fault_rule *x = &g_sim.rules[i];
        if (strncmp(p, x->path_prefix, strlen(x->path_prefix)) != 0)
            continue;
        if (x->method[0] && strcasecmp(x->method, method) != 0)
            continue;
        if (x->count >= 0) {
            if (x->count == 0)
                continue;
            x->count--;
            return x;
        }
        if (rand01() < x->error_rate)
            return x;
    }
    return NULL;
}

/* Token bucket per login. Caller holds the lock. Returns seconds to wait (>0) when over. */
static int rate_limited(const char *login)
{
    if (g_sim.rl_rps <= 0)
        return 0;
    if (!login)
        login = "";
    sim_bucket *b = NULL;
    for (size_t i = 0; i < g_sim.nbuckets; i++)
        if (strcmp(g_sim.buckets[i].login, login) == 0)
            b = &g_sim.buckets[i];
    int64_t now = sim_now_ms();
    if (!b) {
        if (g_sim.nbuckets >= 1024)
            return 0;
        sim_bucket *nb = realloc(g_sim.buckets, (g_sim.nbuckets + 1) * sizeof *nb);
        if (!nb)
            return 0;
        g_sim.buckets = nb;
        b = &g_sim.buckets[g_sim.nbuckets++];
        snprintf(b->login, sizeof b->login, "%s", login);
        b->tokens = g_sim.rl_burst;
        b->last_ms = now;
    }
    b->tokens += (double)(now - b->last_ms) / 1000.0 * g_sim.rl_rps;
    if (b->tokens > g_sim.rl_burst)
        b->tokens = g_sim.rl_burst;
    b->last_ms = now;
    if (b->tokens >= 1) {
        b->tokens -= 1;
        return 0;
    }
    double wait = (1 - b->tokens) / g_sim.rl_rps;
    int s = (int)wait + 1;
    return s;
}

/* ------------------------------------------------------------ serving */

static void reset_connection(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci) {
        struct linger lg = {1, 0};
        setsockopt(ci->connect_fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
}

static enum MHD_Result send_resp(struct MHD_Connection *c, sim_resp *r)
{
    struct MHD_Response *mr = MHD_create_response_from_buffer(r->body_len, r->body ? r->body : (void *)"",
                                                              r->body ? MHD_RESPMEM_MUST_FREE
                                                                      : MHD_RESPMEM_PERSISTENT);
    if (!mr) {
        free(r->body);
        r->body = NULL;
        return MHD_NO;
    }
    r->body = NULL; /* owned by the response now */
    MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE,
                            r->ctype ? r->ctype : "application/json;charset=UTF-8");
    if (r->disposition[0])
        MHD_add_response_header(mr, "Content-Disposition", r->disposition);
    if (r->location[0])
        MHD_add_response_header(mr, MHD_HTTP_HEADER_LOCATION, r->location);
    char num[32];
    if (r->total_count >= 0) {
        snprintf(num, sizeof num, "%lld", r->total_count);
        MHD_add_response_header(mr, "X-Total-Count", num);
    }
    if (r->retry_after_s >= 0) {
        snprintf(num, sizeof num, "%d", r->retry_after_s);
        MHD_add_response_header(mr, MHD_HTTP_HEADER_RETRY_AFTER, num);
    }
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)r->status, mr);
    MHD_destroy_response(mr);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)cls;
    (void)version;
    conn_ctx *cc = *con_cls;
    if (!cc) {
        cc = calloc(1, sizeof *cc);
        if (!cc)
            return MHD_NO;
        cc->t_arrive_us = mono_us();
        *con_cls = cc;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        if (!cc->too_big) {
            if (cc->len + n > SIM_MAX_BODY) {
                cc->too_big = true;
            } else {
                if (cc->len + n + 1 > cc->cap) {
                    size_t nc = (cc->len + n + 1) * 2;
                    char *nb = realloc(cc->body, nc);
                    if (!nb)
                        return MHD_NO;
                    cc->body = nb;
                    cc->cap = nc;
                }
                memcpy(cc->body + cc->len, upload_data, n);
                cc->len += n;
                cc->body[cc->len] = '\0';
            }
        }
        *upload_data_size = 0;
        return MHD_YES;
    }

    sim_resp resp = {.status = 200, .total_count = -1, .retry_after_s = -1};
    sim_req req = {.conn = c, .method = method, .path = url, .body = cc->body ? cc->body : "",
                   .body_len = cc->len};

    if (strncmp(url, "/__sim/", 7) == 0 || strcmp(url, "/__sim") == 0) {
        req.sub = url + 6;
        pthread_mutex_lock(&g_sim.mu);
        if (cc->too_big)
            resp_error(&resp, 413, -1, "request body too large");
        else
            admin_handle(&req, &resp);
        pthread_mutex_unlock(&g_sim.mu);
        return send_resp(c, &resp);
    }

    if (strncmp(url, "/api/", 5) == 0 || strcmp(url, "/api") == 0) {
        req.sub = url + 4;
    } else if (strncmp(url, "/private/api/", 13) == 0) {
        req.sub = url + 12;
        req.private_api = true;
    }

    const char *login = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "login");
    int fault_kind = 0;
    long hang_ms = 30000;
    int retry_after = -1;
    int limited;
    pthread_mutex_lock(&g_sim.mu);
    long lat = g_sim.latency_ms;
    if (g_sim.jitter_ms > 0)
        lat += (long)(rand01() * (double)(2 * g_sim.jitter_ms + 1)) - g_sim.jitter_ms;
    limited = rate_limited(login);
    if (!limited) {
        sim_fault_rule *fr = fault_match(method, url);
        if (fr) {
            fault_kind = fr->kind;
            hang_ms = fr->hang_ms;
            retry_after = fr->retry_after_s;
        }
    }
    static const char *const fk_names[] = {"", "500", "503", "429", "reset", "hang",
                                           "timeout_after_commit", "pending", "delay"};
    pthread_mutex_unlock(&g_sim.mu);

    if (lat > 0)
        sleep_ms_interruptible(lat);
    /* delay: SCM acting on a request long after it arrived (a sender that
     * timed out or died meanwhile does not stop it) */
    if (fault_kind == SIM_FK_DELAY) {
        sleep_ms_interruptible(hang_ms);
        fault_kind = 0;
    }

    if (limited) {
        resp_error(&resp, 429, -1, "Too many requests");
        resp.retry_after_s = limited;
    } else if (fault_kind == SIM_FK_500) {
        resp_error(&resp, 500, -2, "Internal error. Please contact Support for details.");
    } else if (fault_kind == SIM_FK_503) {
        resp_error(&resp, 503, -195, "CA is not available now. Please try again later.");
        resp.retry_after_s = retry_after;
    } else if (fault_kind == SIM_FK_429) {
        resp_error(&resp, 429, -1, "Too many requests");
        resp.retry_after_s = retry_after >= 0 ? retry_after : 1;
    } else if (fault_kind == SIM_FK_RESET || fault_kind == SIM_FK_HANG) {
        sim_record rec;
        record_prepare(&rec, c, method, url, req.body, req.body_len, 0, fk_names[fault_kind]);
        pthread_mutex_lock(&g_sim.mu);
        record_insert(&rec);
        pthread_mutex_unlock(&g_sim.mu);
        if (fault_kind == SIM_FK_HANG)
            sleep_ms_interruptible(hang_ms);
        reset_connection(c);
        return MHD_NO;
    } else if (fault_kind == SIM_FK_PENDING) {
        api_pending(&resp);
        if (resp.body == NULL) /* empty200: an empty body, not "go on and answer" */
            resp.body = calloc(1, 1);
    } else if (cc->too_big) {
        resp_error(&resp, 413, -1, "request body too large");
    }

    pthread_mutex_lock(&g_sim.mu);
    if (resp.status == 200 && !resp.body) {
        if (!req.sub)
            resp_error(&resp, 404, -1, "Not Found: %s", url);
        else
            api_handle(&req, &resp);
    }
    pthread_mutex_unlock(&g_sim.mu);
    cc->api = req.sub != NULL;
    sim_record rec;
    record_prepare(&rec, c, method, url, req.body, req.body_len, fault_kind == SIM_FK_TAC ? 0 : resp.status,
                   fault_kind ? fk_names[fault_kind] : (limited ? "rate_limit" : NULL));
    pthread_mutex_lock(&g_sim.mu);
    record_insert(&rec);
    pthread_mutex_unlock(&g_sim.mu);

    if (fault_kind == SIM_FK_TAC) {
        /* the action happened; the client never learns the outcome */
        free(resp.body);
        sleep_ms_interruptible(hang_ms);
        reset_connection(c);
        return MHD_NO;
    }
    cc->t_answer_us = mono_us();
    return send_resp(c, &resp);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    conn_ctx *cc = *con_cls;
    if (cc) {
        if (cc->api && cc->t_answer_us > 0 && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK) {
            int64_t now = mono_us();
            pthread_mutex_lock(&g_sim.mu);
            g_sim.timed_n++;
            g_sim.timed_answer_us += cc->t_answer_us - cc->t_arrive_us;
            g_sim.timed_done_us += now - cc->t_arrive_us;
            pthread_mutex_unlock(&g_sim.mu);
        }
        free(cc->body);
        free(cc);
        *con_cls = NULL;
    }
}

/* ---------------------------------------------------------------- main */

static void on_signal(int sig) { g_signal = sig; }

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(1024 * 1024 + 1);
    size_t n = buf ? fread(buf, 1, 1024 * 1024, f) : 0;
    fclose(f);
    if (!buf)
        return NULL;
    buf[n] = '\0';
    return buf;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: scm-sim --seed FILE.json [--listen 127.0.0.1:PORT] [--port-file FILE]\n"
            "               [--tls-cert F --tls-key F | --tls-self-signed DIR] [--ca-dir DIR]\n"
            "               [--issue-after-polls N | --issue-delay-ms N] [--manual-approval]\n"
            "               [--pending-style code0|1400|183|109|empty200] [--generate-certs N]\n"
            "               [--faults FILE.json] [--threads N] [--record-max N] [--quiet]\n"
            "A Sectigo Certificate Manager REST simulator; see deploy/scm-sim/README.md.\n");
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || !end || *end || end == s || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}


int pending_style_parse(const char *s)
{
    if (strcmp(s, "code0") == 0 || strcmp(s, "0") == 0)
        return PEND_CODE0;
    if (strcmp(s, "1400") == 0 || strcmp(s, "-1400") == 0)
        return PEND_1400;
    if (strcmp(s, "183") == 0 || strcmp(s, "-183") == 0)
        return PEND_183;
    if (strcmp(s, "109") == 0 || strcmp(s, "-109") == 0)
        return PEND_109;
    if (strcmp(s, "empty200") == 0)
        return PEND_EMPTY200;
    return -1;
}

int main(int argc, char **argv)
{
    const char *listen_s = "127.0.0.1:0", *port_file = NULL, *seed = NULL, *tls_cert = NULL,
               *tls_key = NULL, *tls_dir = NULL, *ca_dir = NULL, *faults_file = NULL;
    long threads = 0, v;
    char err[512] = "";
    int rc = 1;
    struct MHD_Daemon *d = NULL;
    char *cert_pem = NULL, *key_pem = NULL;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VAL() do { if (!val) { fprintf(stderr, "scm-sim: %s needs a value\n", a); return 2; } i++; } while (0)
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--version") == 0) {
            printf("scm-sim %s\n", SCMFLOW_VERSION);
            return 0;
        } else if (strcmp(a, "--listen") == 0) {
            NEED_VAL();
            listen_s = val;
        } else if (strcmp(a, "--port-file") == 0) {
            NEED_VAL();
            port_file = val;
        } else if (strcmp(a, "--seed") == 0) {
            NEED_VAL();
            seed = val;
        } else if (strcmp(a, "--tls-cert") == 0) {
            NEED_VAL();
            tls_cert = val;
        } else if (strcmp(a, "--tls-key") == 0) {
            NEED_VAL();
            tls_key = val;
        } else if (strcmp(a, "--tls-self-signed") == 0) {
            NEED_VAL();
            tls_dir = val;
        } else if (strcmp(a, "--ca-dir") == 0) {
            NEED_VAL();
            ca_dir = val;
        } else if (strcmp(a, "--faults") == 0) {
            NEED_VAL();
            faults_file = val;
        } else if (strcmp(a, "--manual-approval") == 0) {
            g_sim.manual_approval = true;
        } else if (strcmp(a, "--quiet") == 0) {
            g_sim.quiet = true;
        } else if (strcmp(a, "--issue-after-polls") == 0 || strcmp(a, "--issue-delay-ms") == 0 ||
                   strcmp(a, "--generate-certs") == 0 || strcmp(a, "--threads") == 0 ||
                   strcmp(a, "--record-max") == 0) {
            NEED_VAL();
            long hi = strcmp(a, "--generate-certs") == 0 ? SIM_MAX_GENERATED
                    : strcmp(a, "--threads") == 0        ? 256
                    : strcmp(a, "--record-max") == 0     ? 10000000 : 1000000000L;
            if (parse_long(val, 0, hi, &v)) {
                fprintf(stderr, "scm-sim: %s: invalid value \"%s\" (0..%ld)\n", a, val, hi);
                return 2;
            }
            if (strcmp(a, "--issue-after-polls") == 0)
                g_sim.issue_after_polls = (int)v;
            else if (strcmp(a, "--issue-delay-ms") == 0)
                g_sim.issue_delay_ms = v;
            else if (strcmp(a, "--generate-certs") == 0)
                g_sim.generate_certs = (int)v;
            else if (strcmp(a, "--threads") == 0)
                threads = v;
            else
                g_sim.rec_max = (size_t)v;
        } else if (strcmp(a, "--pending-style") == 0) {
            NEED_VAL();
            int ps = pending_style_parse(val);
            if (ps < 0) {
                fprintf(stderr, "scm-sim: --pending-style: unknown style \"%s\"\n", val);
                return 2;
            }
            g_sim.pending_style = ps;
        } else {
            fprintf(stderr, "scm-sim: unknown option \"%s\"\n", a);
            usage(stderr);
            return 2;
        }
#undef NEED_VAL
    }
    if (!seed) {
        fprintf(stderr, "scm-sim: --seed is required\n");
        usage(stderr);
        return 2;
    }
    if ((tls_cert == NULL) != (tls_key == NULL)) {
        fprintf(stderr, "scm-sim: --tls-cert and --tls-key go together\n");
        return 2;
    }
    const char *colon = strrchr(listen_s, ':');
    long port = 0;
    char host[128];
    if (!colon || parse_long(colon + 1, 0, 65535, &port) || (size_t)(colon - listen_s) >= sizeof host) {
        fprintf(stderr, "scm-sim: --listen wants HOST:PORT, got \"%s\"\n", listen_s);
        return 2;
    }
    snprintf(host, sizeof host, "%.*s", (int)(colon - listen_s), listen_s);

    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    if (g_sim.rec_max) {
        g_sim.records = calloc(g_sim.rec_max, sizeof *g_sim.records);
        if (!g_sim.records) {
            fprintf(stderr, "scm-sim: out of memory for the request record\n");
            return 1;
        }
    }
    if (ca_init(ca_dir, err, sizeof err)) {
        fprintf(stderr, "scm-sim: %s\n", err);
        goto out;
    }
    if (store_load_seed(seed, err, sizeof err)) {
        fprintf(stderr, "scm-sim: %s\n", err);
        goto out;
    }
    if (faults_file) {
        char *fj = slurp(faults_file);
        cJSON *j = fj ? cJSON_Parse(fj) : NULL;
        free(fj);
        int frc = j ? faults_set(j, err, sizeof err) : -1;
        cJSON_Delete(j);
        if (frc) {
            fprintf(stderr, "scm-sim: --faults \"%s\": %s\n", faults_file, err[0] ? err : "not JSON");
            goto out;
        }
    }
    if (tls_dir) {
        if (ca_tls_self_signed(tls_dir, err, sizeof err)) {
            fprintf(stderr, "scm-sim: %s\n", err);
            goto out;
        }
        static char pc[1024], pk[1024];
        snprintf(pc, sizeof pc, "%s/server.pem", tls_dir);
        snprintf(pk, sizeof pk, "%s/server.key", tls_dir);
        tls_cert = pc;
        tls_key = pk;
    }
    if (tls_cert) {
        cert_pem = slurp(tls_cert);
        key_pem = slurp(tls_key);
        if (!cert_pem || !key_pem) {
            fprintf(stderr, "scm-sim: could not read \"%s\" / \"%s\"\n", tls_cert, tls_key);
            goto out;
        }
    }

    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, strcmp(host, "localhost") == 0 ? "127.0.0.1" : host, &sin.sin_addr) != 1) {
        fprintf(stderr, "scm-sim: --listen: \"%s\" is not an IPv4 address\n", host);
        goto out;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (threads == 0)
        flags |= MHD_USE_THREAD_PER_CONNECTION;
    else
        flags |= MHD_USE_EPOLL;
    if (cert_pem)
        flags |= MHD_USE_TLS;
    struct MHD_OptionItem opts[12];
    int no = 0;
    opts[no++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &sin};
    opts[no++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, NULL};
    opts[no++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, 4096, NULL};
    opts[no++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, 300, NULL};
    opts[no++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024, NULL};
    if (threads > 0)
        opts[no++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, threads, NULL};
    if (cert_pem) {
        opts[no++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, cert_pem};
        opts[no++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, key_pem};
    }
    opts[no++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, NULL, MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "scm-sim: could not listen on %s\n", listen_s);
        goto out;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    unsigned bound = di ? di->port : (unsigned)port;
    if (port_file) {
        char tmp[1100];
        snprintf(tmp, sizeof tmp, "%s.tmp.%d", port_file, (int)getpid());
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%u\n", bound) < 0 || fclose(f) != 0 || rename(tmp, port_file) != 0) {
            fprintf(stderr, "scm-sim: could not write port file \"%s\": %s\n", port_file, strerror(errno));
            goto out;
        }
    }
    printf("scm-sim listening on %s://%s:%u\n", cert_pem ? "https" : "http", host, bound);
    fflush(stdout);
    if (!g_sim.quiet)
        fprintf(stderr, "scm-sim: seed \"%s\": %zu certificates, customerUri \"%s\"\n", seed, g_sim.ncerts,
                g_sim.customer_uri);

    while (!g_signal)
        pause();
    g_stopping = 1;
    if (!g_sim.quiet)
        fprintf(stderr, "scm-sim: stopping on signal %d\n", (int)g_signal);
    rc = 0;
out:
    if (d)
        MHD_stop_daemon(d);
    pthread_mutex_lock(&g_sim.mu);
    faults_clear();
    record_clear();
    free(g_sim.records);
    g_sim.records = NULL;
    char e2[16];
    cJSON_DeleteItemFromObject(g_sim.seed, "certificates");
    cJSON *empty = cJSON_CreateObject();
    cJSON *saved = g_sim.seed;
    g_sim.seed = empty;
    g_sim.generate_certs = 0;
    store_reset(e2, sizeof e2); /* frees certificates */
    cJSON_Delete(saved);
    cJSON_Delete(g_sim.seed);
    cJSON_Delete(g_sim.orgs);
    cJSON_Delete(g_sim.domains);
    cJSON_Delete(g_sim.profiles);
    cJSON_Delete(g_sim.custom_fields);
    cJSON_Delete(g_sim.admins);
    free(g_sim.customer_uri);
    pthread_mutex_unlock(&g_sim.mu);
    ca_shutdown();
    free(cert_pem);
    free(key_pem);
    return rc;
}
