/*
 * sf_scm.c - SCM REST client: transport (libcurl), error classification,
 * retries with full-jitter backoff, the per-account token bucket, the typed
 * calls and the multi-handle batch. Response parsing lives in sf_scm_parse.c.
 *
 * Secrets: the password only ever lives in the client's header list (and the
 * copy in the client, wiped on free). CURLOPT_VERBOSE and DEBUGFUNCTION are
 * never set, and errors name the method and path, never headers.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "sf_log.h"
#include "sf_metrics.h"
#include "sf_scm.h"
#include "sf_util.h"

#define DEF_CONNECT_MS 10000L
#define DEF_TOTAL_MS 60000L
#define DEF_ATTEMPTS 5
#define DEF_BUDGET_MS 120000L
#define DEF_BASE_MS 200L
#define DEF_CAP_MS 10000L
#define DEF_MAX_RESP ((size_t)1 << 20)
#define DEF_MAX_LIST ((size_t)4 << 20)

/* ---- rate limit: one token bucket per account, process-wide ------------- */

/* The one registry of the module: several clients (threads) of the same
 * account must share the account's budget, so the buckets cannot live in a
 * client. Keyed by customer_uri + login; refcounted. */
typedef struct rl_bucket {
    char *key;
    double rate;      /* tokens per second */
    double burst;
    double tokens;
    int64_t last_ms;
    int refs;
    struct rl_bucket *next;
} rl_bucket;

static pthread_mutex_t g_rl_mu = PTHREAD_MUTEX_INITIALIZER;
static rl_bucket *g_rl_head;

static rl_bucket *rl_acquire(const char *key, double rate, double burst)
{
    rl_bucket *b;

    pthread_mutex_lock(&g_rl_mu);
    for (b = g_rl_head; b; b = b->next)
        if (strcmp(b->key, key) == 0)
            break;
    if (b == NULL && (b = calloc(1, sizeof(*b))) != NULL) {
        if ((b->key = sf_strdup(key)) == NULL) {
            free(b);
            b = NULL;
        } else {
            b->tokens = burst;
            b->last_ms = sf_now_mono_ms();
            b->next = g_rl_head;
            g_rl_head = b;
        }
    }
    if (b) {
        /* The latest configuration wins (an account's limit changed). */
        b->rate = rate;
        b->burst = burst;
        if (b->tokens > burst)
            b->tokens = burst;
        b->refs++;
    }
    pthread_mutex_unlock(&g_rl_mu);
    return b;
}

static void rl_release(rl_bucket *b)
{
    rl_bucket **pp;

    if (b == NULL)
        return;
    pthread_mutex_lock(&g_rl_mu);
    if (--b->refs == 0) {
        for (pp = &g_rl_head; *pp; pp = &(*pp)->next)
            if (*pp == b) {
                *pp = b->next;
                break;
            }
        free(b->key);
        free(b);
    }
    pthread_mutex_unlock(&g_rl_mu);
}

/* Take one token if there is one: returns 0; else the ms until one will be
 * there (nothing taken). */
static int64_t rl_try_take(rl_bucket *b)
{
    int64_t now, wait = 0;

    if (b == NULL)
        return 0;
    pthread_mutex_lock(&g_rl_mu);
    now = sf_now_mono_ms();
    b->tokens += (double)(now - b->last_ms) * b->rate / 1000.0;
    if (b->tokens > b->burst)
        b->tokens = b->burst;
    b->last_ms = now;
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
    } else {
        wait = (int64_t)((1.0 - b->tokens) * 1000.0 / b->rate) + 1;
    }
    pthread_mutex_unlock(&g_rl_mu);
    return wait;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts;

    if (ms <= 0)
        return;
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Block until a token is taken or deadline (mono ms) would pass. */
static int rl_wait(rl_bucket *b, int64_t deadline_ms, sf_error *err)
{
    for (;;) {
        int64_t wait = rl_try_take(b), now;

        if (wait == 0)
            return 0;
        now = sf_now_mono_ms();
        if (now + wait > deadline_ms)
            return sf_error_set(err, SF_ERR_TRANSIENT, 0,
                                "scm: rate limit: no request slot within the retry budget");
        sleep_ms(wait);
    }
}

/* ---- client ------------------------------------------------------------ */

struct sf_scm_client {
    char *base;             /* ".../api" or ".../private/api", no trailing / */
    char *login;
    char *password;
    char *customer_uri;
    char *cert_file, *key_file, *ca_bundle;
    sf_scm_auth auth;
    long connect_ms, total_ms;
    int max_attempts;
    long budget_ms, base_ms, cap_ms;
    size_t max_resp, max_list;
    CURL *easy;
    CURLSH *share;
    pthread_mutex_t share_mu;
    struct curl_slist *hdrs;
    rl_bucket *rl;
    uint64_t rng;
};

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static CURLcode g_curl_init_rc;

static void curl_init_once(void)
{
    g_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void share_lock(CURL *h, curl_lock_data d, curl_lock_access a, void *ud)
{
    (void)h;
    (void)d;
    (void)a;
    pthread_mutex_lock(&((sf_scm_client *)ud)->share_mu);
}

static void share_unlock(CURL *h, curl_lock_data d, void *ud)
{
    (void)h;
    (void)d;
    pthread_mutex_unlock(&((sf_scm_client *)ud)->share_mu);
}

static uint64_t rng_next(sf_scm_client *c)
{
    /* xorshift64*: jitter only, not security. */
    c->rng ^= c->rng >> 12;
    c->rng ^= c->rng << 25;
    c->rng ^= c->rng >> 27;
    return c->rng * 2685821657736338717ULL;
}

/* Header values go on the wire verbatim: refuse anything that could split
 * a header. */
static bool header_safe(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

static int add_header(struct curl_slist **l, const char *name, const char *value)
{
    char *h = sf_asprintf("%s: %s", name, value);
    struct curl_slist *n;

    if (h == NULL)
        return -1;
    n = curl_slist_append(*l, h);
    sf_memzero(h, strlen(h));
    free(h);
    if (n == NULL)
        return -1;
    *l = n;
    return 0;
}

static void free_headers(struct curl_slist *l)
{
    for (struct curl_slist *p = l; p; p = p->next)
        if (p->data)
            sf_memzero(p->data, strlen(p->data));
    curl_slist_free_all(l);
}

static char *make_base(const char *url, sf_scm_auth auth)
{
    size_t n = strlen(url);

    while (n > 0 && url[n - 1] == '/')
        n--;
    if (n < 4 || strncmp(url + n - 4, "/api", 4) != 0)
        return NULL;
    if (auth == SF_SCM_AUTH_CLIENT_CERT &&
        !(n >= 12 && strncmp(url + n - 12, "/private/api", 12) == 0))
        return sf_asprintf("%.*s/private/api", (int)(n - 4), url);
    return sf_asprintf("%.*s", (int)n, url);
}

void sf_scm_client_free(sf_scm_client *c)
{
    if (c == NULL)
        return;
    if (c->easy)
        curl_easy_cleanup(c->easy);
    if (c->share) {
        curl_share_cleanup(c->share);
        pthread_mutex_destroy(&c->share_mu);
    }
    free_headers(c->hdrs);
    rl_release(c->rl);
    if (c->password) {
        sf_memzero(c->password, strlen(c->password));
        free(c->password);
    }
    free(c->base);
    free(c->login);
    free(c->customer_uri);
    free(c->cert_file);
    free(c->key_file);
    free(c->ca_bundle);
    free(c);
}

sf_scm_client *sf_scm_client_new(const sf_scm_account *a, sf_error *err)
{
    sf_scm_client *c = NULL;
    char *key = NULL;

    pthread_once(&g_curl_once, curl_init_once);
    if (g_curl_init_rc != CURLE_OK) {
        sf_error_set(err, SF_ERR_INTERNAL, (int)g_curl_init_rc, "could not initialise libcurl");
        return NULL;
    }
    if (a == NULL || a->base_url == NULL || a->base_url[0] == '\0') {
        sf_error_field(err, "base_url", "scm account: base_url is required");
        return NULL;
    }
    if (a->login == NULL || a->login[0] == '\0' || !header_safe(a->login)) {
        sf_error_field(err, "login", "scm account: login is required (printable)");
        return NULL;
    }
    if (a->customer_uri == NULL || a->customer_uri[0] == '\0' || !header_safe(a->customer_uri)) {
        sf_error_field(err, "customer_uri", "scm account: customer_uri is required (printable)");
        return NULL;
    }
    if (a->auth == SF_SCM_AUTH_PASSWORD &&
        (a->password == NULL || a->password[0] == '\0' || !header_safe(a->password))) {
        sf_error_field(err, "password", "scm account: password is required (printable)");
        return NULL;
    }
    if (a->auth == SF_SCM_AUTH_CLIENT_CERT && (a->client_cert_file == NULL || a->client_key_file == NULL)) {
        sf_error_field(err, "client_cert_file",
                       "scm account: client certificate and key files are required");
        return NULL;
    }
    if (a->rate_per_sec < 0 || a->rate_burst < 0 || a->retry_max_attempts < 0) {
        sf_error_field(err, "rate_per_sec", "scm account: negative limits");
        return NULL;
    }
    if ((c = calloc(1, sizeof(*c))) == NULL)
        goto oom;
    c->auth = a->auth;
    if ((c->base = make_base(a->base_url, a->auth)) == NULL) {
        sf_error_field(err, "base_url", "scm account: base_url must end in /api");
        goto fail;
    }
    if ((c->login = sf_strdup(a->login)) == NULL ||
        (c->customer_uri = sf_strdup(a->customer_uri)) == NULL)
        goto oom;
    if (a->auth == SF_SCM_AUTH_PASSWORD) {
        if ((c->password = sf_strdup(a->password)) == NULL)
            goto oom;
        (void)sf_log_register_secret(c->password);
    }
    if ((a->client_cert_file && (c->cert_file = sf_strdup(a->client_cert_file)) == NULL) ||
        (a->client_key_file && (c->key_file = sf_strdup(a->client_key_file)) == NULL) ||
        (a->ca_bundle && (c->ca_bundle = sf_strdup(a->ca_bundle)) == NULL))
        goto oom;
    c->connect_ms = a->connect_timeout_ms > 0 ? a->connect_timeout_ms : DEF_CONNECT_MS;
    c->total_ms = a->total_timeout_ms > 0 ? a->total_timeout_ms : DEF_TOTAL_MS;
    c->max_attempts = a->retry_max_attempts > 0 ? a->retry_max_attempts : DEF_ATTEMPTS;
    c->budget_ms = a->retry_max_total_ms > 0 ? a->retry_max_total_ms : DEF_BUDGET_MS;
    c->base_ms = a->retry_base_ms > 0 ? a->retry_base_ms : DEF_BASE_MS;
    c->cap_ms = a->retry_cap_ms > 0 ? a->retry_cap_ms : DEF_CAP_MS;
    c->max_resp = a->max_response_bytes > 0 ? a->max_response_bytes : DEF_MAX_RESP;
    c->max_list = a->max_list_response_bytes > 0 ? a->max_list_response_bytes : DEF_MAX_LIST;
    c->rng = (uint64_t)sf_now_wall_ms() ^ ((uint64_t)(uintptr_t)c << 16) ^ (uint64_t)getpid();
    if (c->rng == 0)
        c->rng = 0x9e3779b97f4a7c15ULL;

    if (add_header(&c->hdrs, "login", c->login) < 0 ||
        add_header(&c->hdrs, "customerUri", c->customer_uri) < 0 ||
        (c->password && add_header(&c->hdrs, "password", c->password) < 0) ||
        add_header(&c->hdrs, "Content-Type", "application/json;charset=UTF-8") < 0 ||
        /* No 100-continue round trip for CSR-sized bodies. */
        (c->hdrs = curl_slist_append(c->hdrs, "Expect:")) == NULL)
        goto oom;

    if ((c->easy = curl_easy_init()) == NULL || (c->share = curl_share_init()) == NULL)
        goto oom;
    pthread_mutex_init(&c->share_mu, NULL);
    curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock);
    curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
    curl_share_setopt(c->share, CURLSHOPT_USERDATA, c);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);

    sf_metrics_describe("scmflow_scm_requests_total", "counter",
                        "SCM HTTP attempts by endpoint and outcome (ok or error class)");
    sf_metrics_describe("scmflow_scm_request_seconds", "histogram",
                        "SCM HTTP attempt duration by endpoint");
    sf_metrics_describe("scmflow_scm_retries_total", "counter",
                        "SCM attempts that failed and were retried, by endpoint");
    if (a->rate_per_sec > 0) {
        double burst = a->rate_burst >= 1.0 ? a->rate_burst
                                            : (a->rate_per_sec > 1.0 ? a->rate_per_sec : 1.0);
        if ((key = sf_asprintf("%s\n%s", c->customer_uri, c->login)) == NULL ||
            (c->rl = rl_acquire(key, a->rate_per_sec, burst)) == NULL)
            goto oom;
    }
    free(key);
    return c;
oom:
    sf_error_set(err, SF_ERR_INTERNAL, 0, "scm client: out of memory");
fail:
    free(key);
    sf_scm_client_free(c);
    return NULL;
}

/* ---- metrics ------------------------------------------------------------ */

static bool has_prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

/* A fixed, low-cardinality label for a request path (ids never become
 * label values). */
static const char *endpoint_of(const char *method, const char *path)
{
    static const struct {
        const char *prefix, *name;
    } map[] = {
        { "/organization/v1", "orgs" },   { "/domain/v1/", "domain" },
        { "/domain/v1", "domains" },      { "/ssl/v1/types", "profiles" },
        { "/ssl/v1/customFields", "custom_fields" }, { "/ssl/v1/enroll", "enroll" },
        { "/ssl/v1/collect/", "collect" }, { "/ssl/v1/renewById/", "renew_by_id" },
        { "/ssl/v1/renew/", "renew" },    { "/ssl/v1/replace/", "replace" },
        { "/ssl/v1/revoke/serial/", "revoke_serial" }, { "/ssl/v1/revoke/", "revoke" },
        { "/ssl/v1/approve/", "approve" }, { "/ssl/v1/decline/", "decline" },
        { "/admin/", "admin" },
    };

    for (size_t i = 0; i < SF_ARRAY_LEN(map); i++)
        if (has_prefix(path, map[i].prefix))
            return map[i].name;
    if (strcmp(path, "/ssl/v1") == 0 || has_prefix(path, "/ssl/v1?"))
        return strcmp(method, "HEAD") == 0 ? "count" : "list";
    if (has_prefix(path, "/ssl/v1/") && path[8] >= '0' && path[8] <= '9')
        return "details";
    return "other";
}

static void record_attempt(const char *method, const char *path, int64_t t0, const sf_error *e,
                           bool retrying)
{
    const char *ep = endpoint_of(method, path);
    char labels[128];

    (void)sf_snprintf(labels, sizeof(labels), "endpoint=\"%s\"", ep);
    sf_metrics_observe("scmflow_scm_request_seconds", labels,
                       (double)(sf_now_mono_ms() - t0) / 1000.0);
    if (retrying)
        sf_metrics_counter_add("scmflow_scm_retries_total", labels, 1);
    (void)sf_snprintf(labels, sizeof(labels), "endpoint=\"%s\",outcome=\"%s\"", ep,
                      e ? sf_err_class_name(e->cls) : "ok");
    sf_metrics_counter_add("scmflow_scm_requests_total", labels, 1);
}

/* ---- one HTTP exchange --------------------------------------------------- */

typedef struct sf_scm_resp {
    int status;
    sf_buf body;
    bool too_big;
    int64_t total;          /* X-Total-Count or -1 */
    int retry_after_ms;
    char errbuf[CURL_ERROR_SIZE];
} sf_scm_resp;

typedef struct sf_scm_reqspec {
    const char *method;     /* "GET", "HEAD", "POST" */
    const char *url;
    const char *path;       /* for messages */
    const char *body;       /* POST */
    size_t body_len;
    bool idempotent;
    bool collect;
    size_t limit;
} sf_scm_reqspec;

static void resp_reset(sf_scm_resp *r)
{
    r->status = 0;
    sf_buf_reset(&r->body);
    r->too_big = false;
    r->total = -1;
    r->retry_after_ms = 0;
    r->errbuf[0] = '\0';
}

static size_t on_write(char *p, size_t sz, size_t n, void *ud)
{
    sf_scm_resp *r = ud;
    size_t len = sz * n;

    if (sf_buf_append(&r->body, p, len) < 0) {
        r->too_big = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    return len;
}

static void trim_value(const char *v, size_t n, char *dst, size_t size)
{
    size_t k = 0;

    while (n > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    while (n > 0 && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' '))
        n--;
    for (; k < n && k + 1 < size; k++)
        dst[k] = v[k];
    dst[k] = '\0';
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
    sf_scm_resp *r = ud;
    size_t len = sz * n;
    char val[128];
    int64_t v;

    if (len > 14 && strncasecmp(p, "X-Total-Count:", 14) == 0) {
        trim_value(p + 14, len - 14, val, sizeof(val));
        if (sf_str_to_i64(val, 0, INT64_MAX, &v) == 0)
            r->total = v;
    } else if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
        trim_value(p + 12, len - 12, val, sizeof(val));
        if (sf_str_to_i64(val, 0, 86400, &v) == 0) {
            r->retry_after_ms = (int)(v * 1000);
        } else {
            time_t t = curl_getdate(val, NULL);
            int64_t d = (int64_t)t * 1000 - sf_now_wall_ms();
            if (t > 0)
                r->retry_after_ms = d <= 0 ? 0 : (d > 86400000 ? 86400000 : (int)d);
        }
    }
    return len;
}

static void setup_easy(sf_scm_client *c, CURL *e, const sf_scm_reqspec *q, sf_scm_resp *r)
{
    curl_easy_setopt(e, CURLOPT_URL, q->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->hdrs);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, c->connect_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, c->total_ms);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (c->ca_bundle)
        curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_bundle);
    if (c->auth == SF_SCM_AUTH_CLIENT_CERT) {
        curl_easy_setopt(e, CURLOPT_SSLCERT, c->cert_file);
        curl_easy_setopt(e, CURLOPT_SSLKEY, c->key_file);
    }
    curl_easy_setopt(e, CURLOPT_SHARE, c->share);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)q->limit);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
    /* libcurl silently re-sends a request when a REUSED connection dies
     * before any answer (it assumes the peer had closed it idle). For a
     * non-idempotent call that could enroll twice, so those always use a
     * fresh connection, where libcurl never re-sends. */
    curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, q->idempotent ? 0L : 1L);
    if (strcmp(q->method, "POST") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)q->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, q->body);
    } else if (strcmp(q->method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
    }
    /* The body buffer was initialised by the caller; keep its memory across
     * attempts and only (re)apply the limit. */
    r->body.limit = q->limit;
    resp_reset(r);
}

/* Classify one finished attempt. Returns 0 on success; else -1 with err
 * filled and *retry telling whether another attempt is allowed. */
static int classify(const sf_scm_reqspec *q, CURL *e, CURLcode cc, sf_scm_resp *r,
                    sf_error *err, bool *retry)
{
    long status = 0, reqsize = 0;
    curl_off_t pre = 0;
    bool sent;

    *retry = false;
    if (r->too_big || cc == CURLE_FILESIZE_EXCEEDED) {
        sf_error_set(err, SF_ERR_INVALID, 0, "scm: %s %s: response larger than %zu bytes",
                     q->method, q->path, q->limit);
        if (err) {
            (void)sf_snprintf(err->field, sizeof(err->field), "body");
            err->http_status = 0;
            err->retry_after_ms = 0;
        }
        return -1;
    }
    if (cc != CURLE_OK) {
        const char *why = r->errbuf[0] ? r->errbuf : curl_easy_strerror(cc);
        sf_err_class cls;

        curl_easy_getinfo(e, CURLINFO_REQUEST_SIZE, &reqsize);
        curl_easy_getinfo(e, CURLINFO_PRETRANSFER_TIME_T, &pre);
        sent = reqsize > 0 || pre > 0;
        switch (cc) {
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_CRL_BADFILE:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_URL_MALFORMAT:
        case CURLE_UNSUPPORTED_PROTOCOL:
            cls = SF_ERR_FATAL;
            break;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_COULDNT_CONNECT:
        case CURLE_SSL_CONNECT_ERROR:
            /* The request never left: safe to retry any method. */
            cls = SF_ERR_TRANSIENT;
            *retry = true;
            break;
        default:
            if (sent && !q->idempotent) {
                cls = SF_ERR_UNKNOWN;
            } else {
                cls = SF_ERR_TRANSIENT;
                *retry = true;
            }
            break;
        }
        if (cls == SF_ERR_UNKNOWN)
            sf_error_set(err, cls, (int)cc,
                         "scm: %s %s: %s after the request was sent: outcome unknown",
                         q->method, q->path, why);
        else if (cls == SF_ERR_FATAL)
            sf_error_set(err, cls, (int)cc, "scm: %s %s: %s (check the CA bundle / TLS settings)",
                         q->method, q->path, why);
        else
            sf_error_set(err, cls, (int)cc, "scm: %s %s: %s", q->method, q->path, why);
        if (err) {
            err->http_status = 0;
            err->retry_after_ms = 0;
        }
        return -1;
    }
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    r->status = (int)status;
    if (status >= 200 && status < 300) {
        if (q->collect && status == 200 && r->body.len == 0)
            return sf_scm_error_from_response(200, NULL, 0, true, 0, err);
        return 0;
    }
    sf_scm_error_from_response((int)status, r->body.data, r->body.len, q->collect,
                               r->retry_after_ms, err);
    if (err == NULL || err->cls != SF_ERR_TRANSIENT)
        return -1;
    if (q->idempotent || status == 429 || status == 503 || status == 408) {
        /* 429/503 are explicit refusals and 408 says the request was not
         * (completely) received: nothing was done, even for a POST. */
        *retry = true;
    } else if (status >= 500) {
        /* The server got the request and failed somewhere: it may have
         * acted (an enroll may exist). The caller must reconcile. */
        err->cls = SF_ERR_UNKNOWN;
    } else {
        /* SCM codes -195/-140: an explicit "try later", nothing done. */
        *retry = true;
    }
    return -1;
}

static int64_t backoff_ms(sf_scm_client *c, int attempt)
{
    int64_t ceil = c->base_ms;

    for (int i = 1; i < attempt && ceil < c->cap_ms; i++)
        ceil *= 2;
    if (ceil > c->cap_ms)
        ceil = c->cap_ms;
    /* Full jitter: uniform in [0, ceil]. */
    return (int64_t)(rng_next(c) % (uint64_t)(ceil + 1));
}

/* Run a request with retries. On success r holds the final response (the
 * caller releases r->body). */
static int do_request(sf_scm_client *c, const sf_scm_reqspec *q, sf_scm_resp *r, sf_error *err)
{
    int64_t start = sf_now_mono_ms(), deadline = start + c->budget_ms;
    int attempt = 0;
    sf_error e;

    for (;;) {
        CURLcode cc;
        bool retry;
        int64_t delay, t0;

        attempt++;
        sf_error_clear(&e);
        if (rl_wait(c->rl, deadline, &e) < 0)
            goto fail;
        setup_easy(c, c->easy, q, r);
        t0 = sf_now_mono_ms();
        /* An idempotent attempt never runs past the budget. (A POST keeps
         * its full timeout: cutting it short would only manufacture
         * "outcome unknown".) */
        if (q->idempotent && deadline - t0 < c->total_ms)
            curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS,
                             (long)(deadline - t0 > 1 ? deadline - t0 : 1));
        cc = curl_easy_perform(c->easy);
        if (classify(q, c->easy, cc, r, &e, &retry) == 0) {
            record_attempt(q->method, q->path, t0, NULL, false);
            sf_log_debug("scm %s %s: HTTP %d in %lld ms (attempt %d)", q->method, q->path,
                         r->status, (long long)(sf_now_mono_ms() - t0), attempt);
            return 0;
        }
        sf_log_debug("scm %s %s: attempt %d failed: %s", q->method, q->path, attempt, e.msg);
        delay = backoff_ms(c, attempt);
        if (e.retry_after_ms > delay)
            delay = e.retry_after_ms;
        if (!retry || attempt >= c->max_attempts || sf_now_mono_ms() + delay > deadline) {
            record_attempt(q->method, q->path, t0, &e, false);
            goto fail;
        }
        record_attempt(q->method, q->path, t0, &e, true);
        sleep_ms(delay);
    }
fail:
    sf_buf_release(&r->body);
    if (err)
        *err = e;
    return -1;
}

static char *make_url(sf_scm_client *c, const char *path)
{
    return sf_asprintf("%s%s", c->base, path);
}

/* GET/HEAD/POST path; on success *body (NUL-terminated, caller frees; may be
 * NULL when empty) and *total. */
static int call(sf_scm_client *c, const char *method, const char *path, const char *body,
                bool collect, size_t limit, char **out, size_t *out_len, int64_t *total,
                int *status, sf_error *err)
{
    sf_scm_reqspec q;
    sf_scm_resp r;
    char *url = make_url(c, path);
    int rc;

    if (url == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    memset(&q, 0, sizeof(q));
    memset(&r, 0, sizeof(r));
    sf_buf_init(&r.body, limit);
    q.method = method;
    q.url = url;
    q.path = path;
    q.body = body ? body : "";
    q.body_len = body ? strlen(body) : 0;
    q.idempotent = strcmp(method, "POST") != 0;
    q.collect = collect;
    q.limit = limit;
    rc = do_request(c, &q, &r, err);
    free(url);
    if (rc < 0)
        return -1;
    if (total)
        *total = r.total;
    if (status)
        *status = r.status;
    if (out) {
        size_t n;
        char *d = sf_buf_detach(&r.body, &n);
        if (d == NULL) {
            d = sf_strdup("");
            n = 0;
            if (d == NULL)
                return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        }
        *out = d;
        if (out_len)
            *out_len = n;
    }
    sf_buf_release(&r.body);
    return 0;
}

static int get_body(sf_scm_client *c, const char *path, bool list, char **out, size_t *len,
                    int64_t *total, sf_error *err)
{
    return call(c, "GET", path, NULL, false, list ? c->max_list : c->max_resp, out, len, total,
                NULL, err);
}

/* POST a cJSON body; optional response body. */
static int post_json(sf_scm_client *c, const char *path, const cJSON *body, char **out,
                     size_t *len, sf_error *err)
{
    char *txt = cJSON_PrintUnformatted(body);
    int rc;

    if (txt == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    rc = call(c, "POST", path, txt, false, c->max_resp, out, len, NULL, NULL, err);
    sf_memzero(txt, strlen(txt));
    free(txt);
    return rc;
}

/* ---- typed calls ------------------------------------------------------- */

int sf_scm_list_orgs(sf_scm_client *c, sf_scm_org_list **out, sf_error *err)
{
    char *b = NULL;
    size_t n = 0;
    int rc;

    if (get_body(c, "/organization/v1", true, &b, &n, NULL, err) < 0)
        return -1;
    rc = sf_scm_parse_orgs(b, n, out, err);
    free(b);
    return rc;
}

int sf_scm_list_domains(sf_scm_client *c, int64_t position, int64_t size,
                        sf_scm_domain_page **out, sf_error *err)
{
    char path[128], *b = NULL;
    size_t n = 0;
    int64_t total = -1;
    sf_scm_domain_page *p = NULL;

    if (position < 0 || size < 1 || size > 200)
        return sf_error_field(err, "size", "scm: domain page: position >= 0, size 1..200");
    (void)sf_snprintf(path, sizeof(path), "/domain/v1?position=%lld&size=%lld",
                      (long long)position, (long long)size);
    if (get_body(c, path, true, &b, &n, &total, err) < 0)
        return -1;
    if (sf_scm_parse_domains(b, n, &p, err) < 0) {
        free(b);
        return -1;
    }
    free(b);
    p->total = total;
    *out = p;
    return 0;
}

int sf_scm_get_domain(sf_scm_client *c, int64_t id, sf_scm_domain **out, sf_error *err)
{
    char path[64], *b = NULL;
    size_t n = 0;
    int rc;

    (void)sf_snprintf(path, sizeof(path), "/domain/v1/%lld", (long long)id);
    if (get_body(c, path, false, &b, &n, NULL, err) < 0)
        return -1;
    rc = sf_scm_parse_domain(b, n, out, err);
    free(b);
    return rc;
}

int sf_scm_list_profiles(sf_scm_client *c, int64_t org_id, sf_scm_profile_list **out,
                         sf_error *err)
{
    char path[96], *b = NULL;
    size_t n = 0;
    int rc;

    if (org_id > 0)
        (void)sf_snprintf(path, sizeof(path), "/ssl/v1/types?organizationId=%lld",
                          (long long)org_id);
    else
        (void)sf_snprintf(path, sizeof(path), "/ssl/v1/types");
    if (get_body(c, path, true, &b, &n, NULL, err) < 0)
        return -1;
    rc = sf_scm_parse_profiles(b, n, out, err);
    free(b);
    return rc;
}

int sf_scm_list_custom_fields(sf_scm_client *c, sf_scm_custom_field_list **out, sf_error *err)
{
    char *b = NULL;
    size_t n = 0;
    int rc;

    if (get_body(c, "/ssl/v1/customFields", true, &b, &n, NULL, err) < 0)
        return -1;
    rc = sf_scm_parse_custom_fields(b, n, out, err);
    free(b);
    return rc;
}

static int add_opt_str(cJSON *o, const char *name, const char *v)
{
    if (v == NULL)
        return 0;
    return cJSON_AddStringToObject(o, name, v) ? 0 : -1;
}

int sf_scm_enroll(sf_scm_client *c, const sf_scm_enroll_req *req, sf_scm_enroll_resp *out,
                  sf_error *err)
{
    int rc = -1;
    cJSON *o = NULL, *cf;
    sf_buf sans;
    char *b = NULL;
    size_t n = 0;

    sf_buf_init(&sans, 65536);
    if (req == NULL || req->org_id <= 0) {
        sf_error_field(err, "orgId", "scm enroll: orgId is required");
        goto out;
    }
    if (req->csr == NULL || req->csr[0] == '\0') {
        sf_error_field(err, "csr", "scm enroll: csr is required");
        goto out;
    }
    if (req->cert_type <= 0 || req->term <= 0) {
        sf_error_field(err, req->cert_type <= 0 ? "certType" : "term",
                       "scm enroll: certType and term are required");
        goto out;
    }
    /* subjAltNames is ONE comma-separated string: an array is answered
     * with -1002 "Cannot parse message body". */
    for (size_t i = 0; i < req->n_sans; i++) {
        if (req->sans[i] == NULL || strchr(req->sans[i], ',') != NULL) {
            sf_error_field(err, "subjAltNames", "scm enroll: SAN %zu is empty or has a comma", i);
            goto out;
        }
        if ((i > 0 && sf_buf_appendc(&sans, ',') < 0) ||
            sf_buf_append(&sans, req->sans[i], strlen(req->sans[i])) < 0) {
            sf_error_field(err, "subjAltNames", "scm enroll: too many SANs");
            goto out;
        }
    }
    if ((o = cJSON_CreateObject()) == NULL ||
        cJSON_AddNumberToObject(o, "orgId", (double)req->org_id) == NULL ||
        cJSON_AddStringToObject(o, "csr", req->csr) == NULL ||
        cJSON_AddNumberToObject(o, "certType", (double)req->cert_type) == NULL ||
        cJSON_AddNumberToObject(o, "term", (double)req->term) == NULL ||
        (req->n_sans > 0 && cJSON_AddStringToObject(o, "subjAltNames", sans.data) == NULL) ||
        add_opt_str(o, "comments", req->comments) < 0 ||
        add_opt_str(o, "externalRequester", req->external_requester) < 0 ||
        add_opt_str(o, "dcvMode", req->dcv_mode) < 0 ||
        add_opt_str(o, "dcvEmail", req->dcv_email) < 0)
        goto oom;
    if (req->n_custom_fields > 0) {
        if ((cf = cJSON_AddArrayToObject(o, "customFields")) == NULL)
            goto oom;
        for (size_t i = 0; i < req->n_custom_fields; i++) {
            cJSON *f = cJSON_CreateObject();
            if (f == NULL)
                goto oom;
            cJSON_AddItemToArray(cf, f);
            if (add_opt_str(f, "name", req->custom_fields[i].name) < 0 ||
                add_opt_str(f, "value", req->custom_fields[i].value) < 0)
                goto oom;
        }
    }
    if (post_json(c, "/ssl/v1/enroll", o, &b, &n, err) < 0)
        goto out;
    rc = sf_scm_parse_enroll(b, n, out, err);
    if (rc < 0 && err) {
        /* The order exists (200) even though we cannot read its id. */
        err->cls = SF_ERR_UNKNOWN;
    }
    goto out;
oom:
    sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
out:
    free(b);
    cJSON_Delete(o);
    sf_buf_release(&sans);
    return rc;
}

int sf_scm_get_cert(sf_scm_client *c, int64_t ssl_id, sf_scm_cert **out, sf_error *err)
{
    char path[64], *b = NULL;
    size_t n = 0;
    int rc;

    (void)sf_snprintf(path, sizeof(path), "/ssl/v1/%lld", (long long)ssl_id);
    if (get_body(c, path, false, &b, &n, NULL, err) < 0)
        return -1;
    rc = sf_scm_parse_cert(b, n, out, err);
    free(b);
    return rc;
}

static int add_q(CURL *e, sf_buf *q, const char *name, const char *v)
{
    char *esc;
    int rc;

    if (v == NULL)
        return 0;
    if ((esc = curl_easy_escape(e, v, 0)) == NULL)
        return -1;
    rc = sf_buf_appendf(q, "%s%s=%s", q->len ? "&" : "?", name, esc);
    curl_free(esc);
    return rc;
}

static int add_qi(sf_buf *q, const char *name, int64_t v)
{
    return sf_buf_appendf(q, "%s%s=%lld", q->len ? "&" : "?", name, (long long)v);
}

static int filter_query(sf_scm_client *c, const sf_scm_cert_filter *f, bool paging, sf_buf *q,
                        sf_error *err)
{
    sf_buf_init(q, 8192);
    if (sf_buf_append(q, "", 0) < 0)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    if (f == NULL)
        return 0;
    if (paging && (f->size < 0 || f->size > 200))
        return sf_error_field(err, "size", "scm: certificate page size 1..200");
    if ((paging && f->position >= 0 && add_qi(q, "position", f->position) < 0) ||
        (paging && f->size > 0 && add_qi(q, "size", f->size) < 0) ||
        add_q(c->easy, q, "commonName", f->common_name) < 0 ||
        add_q(c->easy, q, "status", f->status) < 0 ||
        (f->org_id > 0 && add_qi(q, "orgId", f->org_id) < 0) ||
        (f->ssl_type_id > 0 && add_qi(q, "sslTypeId", f->ssl_type_id) < 0) ||
        add_q(c->easy, q, "serialNumber", f->serial_number) < 0 ||
        add_q(c->easy, q, "subjectAlternativeName", f->san) < 0 ||
        add_q(c->easy, q, "requester", f->requester) < 0 ||
        add_q(c->easy, q, "externalRequester", f->external_requester) < 0) {
        sf_buf_release(q);
        return sf_error_field(err, "filter", "scm: certificate filter too long");
    }
    return 0;
}

int sf_scm_list_certs(sf_scm_client *c, const sf_scm_cert_filter *f, sf_scm_cert_page **out,
                      sf_error *err)
{
    sf_buf q;
    char *path = NULL, *b = NULL;
    size_t n = 0;
    int64_t total = -1;
    sf_scm_cert_page *p = NULL;
    int rc = -1;

    if (filter_query(c, f, true, &q, err) < 0)
        return -1;
    if ((path = sf_asprintf("/ssl/v1%s", q.data)) == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    if (get_body(c, path, true, &b, &n, &total, err) < 0 ||
        sf_scm_parse_cert_list(b, n, &p, err) < 0)
        goto out;
    p->total = total;
    *out = p;
    rc = 0;
out:
    free(b);
    free(path);
    sf_buf_release(&q);
    return rc;
}

int sf_scm_count_certs(sf_scm_client *c, const sf_scm_cert_filter *f, int64_t *out,
                       sf_error *err)
{
    sf_buf q;
    char *path = NULL;
    int64_t total = -1;
    int rc = -1;

    if (filter_query(c, f, false, &q, err) < 0)
        return -1;
    if ((path = sf_asprintf("/ssl/v1%s", q.data)) == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    if (call(c, "HEAD", path, NULL, false, c->max_resp, NULL, NULL, &total, NULL, err) < 0)
        goto out;
    if (total < 0) {
        sf_error_field(err, "X-Total-Count", "scm response: header X-Total-Count missing");
        goto out;
    }
    *out = total;
    rc = 0;
out:
    free(path);
    sf_buf_release(&q);
    return rc;
}

int sf_scm_collect(sf_scm_client *c, int64_t ssl_id, const char *format, char **out,
                   size_t *len, sf_error *err)
{
    char path[96];

    if (!sf_scm_format_valid(format))
        return sf_error_field(err, "format", "scm collect: unknown format \"%.32s\"",
                              format ? format : "(null)");
    (void)sf_snprintf(path, sizeof(path), "/ssl/v1/collect/%lld/%s", (long long)ssl_id, format);
    return call(c, "GET", path, NULL, true, c->max_resp, out, len, NULL, NULL, err);
}

int sf_scm_renew_by_id(sf_scm_client *c, int64_t ssl_id, const char *csr, int64_t *new_ssl_id,
                       sf_error *err)
{
    char path[64], *b = NULL;
    size_t n = 0;
    int rc = -1;
    cJSON *o = cJSON_CreateObject();   /* always an OBJECT: "" => -1002 */
    sf_scm_enroll_resp r;

    if (o == NULL || add_opt_str(o, "csr", csr) < 0) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    (void)sf_snprintf(path, sizeof(path), "/ssl/v1/renewById/%lld", (long long)ssl_id);
    if (post_json(c, path, o, &b, &n, err) < 0)
        goto out;
    if (sf_scm_parse_enroll(b, n, &r, err) < 0) {
        if (err)
            err->cls = SF_ERR_UNKNOWN;
        goto out;
    }
    *new_ssl_id = r.ssl_id;
    rc = 0;
out:
    free(b);
    cJSON_Delete(o);
    return rc;
}

/* POST expecting 204 (any 2xx accepted, body ignored). */
static int post_void(sf_scm_client *c, const char *path, cJSON *o, sf_error *err)
{
    char *b = NULL;
    size_t n = 0;
    int rc = post_json(c, path, o, &b, &n, err);

    free(b);
    return rc;
}

int sf_scm_renew(sf_scm_client *c, const char *renew_id, const char *csr, sf_error *err)
{
    char *path = NULL, *esc = NULL;
    cJSON *o = NULL;
    int rc = -1;

    if (renew_id == NULL || renew_id[0] == '\0' || strlen(renew_id) > 64)
        return sf_error_field(err, "renewId", "scm renew: renewId required (<= 64 chars)");
    if ((o = cJSON_CreateObject()) == NULL || add_opt_str(o, "csr", csr) < 0 ||
        (esc = curl_easy_escape(c->easy, renew_id, 0)) == NULL ||
        (path = sf_asprintf("/ssl/v1/renew/%s", esc)) == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    rc = post_void(c, path, o, err);
out:
    curl_free(esc);
    free(path);
    cJSON_Delete(o);
    return rc;
}

int sf_scm_replace(sf_scm_client *c, int64_t ssl_id, const sf_scm_replace_req *req,
                   sf_error *err)
{
    char path[64];
    cJSON *o = NULL, *arr;
    int rc = -1;

    if (req == NULL || req->csr == NULL || req->csr[0] == '\0')
        return sf_error_field(err, "csr", "scm replace: csr is required");
    if (req->reason == NULL || req->reason[0] == '\0' || strlen(req->reason) > 512)
        return sf_error_field(err, "reason", "scm replace: reason is required (1..512)");
    if ((o = cJSON_CreateObject()) == NULL || add_opt_str(o, "csr", req->csr) < 0 ||
        add_opt_str(o, "reason", req->reason) < 0 ||
        add_opt_str(o, "commonName", req->common_name) < 0 ||
        add_opt_str(o, "dcvMode", req->dcv_mode) < 0 ||
        add_opt_str(o, "dcvEmail", req->dcv_email) < 0)
        goto oom;
    if (req->n_sans > 0) {
        /* Replace takes an ARRAY, unlike enroll's comma string. */
        if ((arr = cJSON_AddArrayToObject(o, "subjectAlternativeNames")) == NULL)
            goto oom;
        for (size_t i = 0; i < req->n_sans; i++) {
            cJSON *s = cJSON_CreateString(req->sans[i] ? req->sans[i] : "");
            if (s == NULL)
                goto oom;
            cJSON_AddItemToArray(arr, s);
        }
    }
    (void)sf_snprintf(path, sizeof(path), "/ssl/v1/replace/%lld", (long long)ssl_id);
    rc = post_void(c, path, o, err);
    cJSON_Delete(o);
    return rc;
oom:
    cJSON_Delete(o);
    return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
}

static cJSON *revoke_body(int reason_code, const char *reason, sf_error *err)
{
    cJSON *o;

    if (reason_code != -1 && reason_code != 0 && reason_code != 1 && reason_code != 3 &&
        reason_code != 4 && reason_code != 5) {
        sf_error_field(err, "reasonCode", "scm revoke: reasonCode must be 0, 1, 3, 4 or 5");
        return NULL;
    }
    if (reason == NULL || reason[0] == '\0' || strlen(reason) > 512) {
        sf_error_field(err, "reason", "scm revoke: reason is required (1..512)");
        return NULL;
    }
    if ((o = cJSON_CreateObject()) == NULL ||
        (reason_code >= 0 && cJSON_AddNumberToObject(o, "reasonCode", reason_code) == NULL) ||
        cJSON_AddStringToObject(o, "reason", reason) == NULL) {
        cJSON_Delete(o);
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        return NULL;
    }
    return o;
}

int sf_scm_revoke(sf_scm_client *c, int64_t ssl_id, int reason_code, const char *reason,
                  sf_error *err)
{
    char path[64];
    cJSON *o = revoke_body(reason_code, reason, err);
    int rc;

    if (o == NULL)
        return -1;
    (void)sf_snprintf(path, sizeof(path), "/ssl/v1/revoke/%lld", (long long)ssl_id);
    rc = post_void(c, path, o, err);
    cJSON_Delete(o);
    return rc;
}

int sf_scm_revoke_serial(sf_scm_client *c, const char *serial, int reason_code,
                         const char *reason, sf_error *err)
{
    char *path = NULL, *esc = NULL;
    cJSON *o;
    int rc = -1;

    if (serial == NULL || serial[0] == '\0' || strlen(serial) > 256)
        return sf_error_field(err, "serialNumber", "scm revoke: serial number required");
    if ((o = revoke_body(reason_code, reason, err)) == NULL)
        return -1;
    /* Colons are legal in a path segment: keep the documented form. */
    for (const char *s = serial; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f') || (*s >= 'A' && *s <= 'F') ||
              *s == ':')) {
            sf_error_field(err, "serialNumber", "scm revoke: serial must be hex (colons allowed)");
            goto out;
        }
    if ((esc = sf_strdup(serial)) == NULL ||
        (path = sf_asprintf("/ssl/v1/revoke/serial/%s", esc)) == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    rc = post_void(c, path, o, err);
out:
    free(esc);
    free(path);
    cJSON_Delete(o);
    return rc;
}

static int approve_decline(sf_scm_client *c, const char *verb, int64_t ssl_id,
                           const char *message, sf_error *err)
{
    char path[64];
    cJSON *o;
    int rc;

    if (message == NULL || message[0] == '\0' || strlen(message) > 512)
        return sf_error_field(err, "message", "scm %s: message is required (1..512)", verb);
    if ((o = cJSON_CreateObject()) == NULL || cJSON_AddStringToObject(o, "message", message) == NULL) {
        cJSON_Delete(o);
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    }
    (void)sf_snprintf(path, sizeof(path), "/ssl/v1/%s/%lld", verb, (long long)ssl_id);
    rc = post_void(c, path, o, err);
    cJSON_Delete(o);
    return rc;
}

int sf_scm_approve(sf_scm_client *c, int64_t ssl_id, const char *message, sf_error *err)
{
    return approve_decline(c, "approve", ssl_id, message, err);
}

int sf_scm_decline(sf_scm_client *c, int64_t ssl_id, const char *message, sf_error *err)
{
    return approve_decline(c, "decline", ssl_id, message, err);
}

int sf_scm_get_json(sf_scm_client *c, const char *path, cJSON **out, int64_t *total,
                    sf_error *err)
{
    char *b = NULL;
    size_t n = 0;
    int64_t t = -1;
    cJSON *doc;

    if (path == NULL || path[0] != '/')
        return sf_error_field(err, "path", "scm: path must start with /");
    if (get_body(c, path, true, &b, &n, &t, err) < 0)
        return -1;
    doc = cJSON_ParseWithLength(b, n);
    free(b);
    if (doc == NULL)
        return sf_error_field(err, "", "scm response: not valid JSON");
    *out = doc;
    if (total)
        *total = t;
    return 0;
}

/* ---- role check -------------------------------------------------------- */

static int strv_push(sf_scm_strv *v, const char *s)
{
    char **nv = realloc(v->v, (v->n + 1) * sizeof(*nv));

    if (nv == NULL)
        return -1;
    v->v = nv;
    if ((v->v[v->n] = sf_strdup(s)) == NULL)
        return -1;
    v->n++;
    return 0;
}

/* Own admin id from GET /admin/v1?login=: 0 when not listed. */
static int find_admin_id(sf_scm_client *c, int64_t *id, sf_error *err)
{
    char *esc, *path;
    cJSON *doc = NULL;
    const cJSON *el;
    int rc;

    *id = 0;
    if ((esc = curl_easy_escape(c->easy, c->login, 0)) == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    path = sf_asprintf("/admin/v1?login=%s&size=200", esc);
    curl_free(esc);
    if (path == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    rc = sf_scm_get_json(c, path, &doc, NULL, err);
    free(path);
    if (rc < 0)
        return -1;
    if (!cJSON_IsArray(doc)) {
        cJSON_Delete(doc);
        return sf_error_field(err, "admins", "scm response: field admins: expected array");
    }
    cJSON_ArrayForEach(el, doc) {
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(el, "login");
        const cJSON *i = cJSON_GetObjectItemCaseSensitive(el, "id");
        if (cJSON_IsString(l) && l->valuestring && strcmp(l->valuestring, c->login) == 0 &&
            cJSON_IsNumber(i) && i->valuedouble >= 1 && i->valuedouble < 9007199254740992.0) {
            *id = (int64_t)i->valuedouble;
            break;
        }
    }
    cJSON_Delete(doc);
    return 0;
}

static bool fallback_ok(const sf_error *e)
{
    return e->cls == SF_ERR_REJECTED || e->cls == SF_ERR_NOT_FOUND || e->cls == SF_ERR_INVALID;
}

int sf_scm_check_roles(sf_scm_client *c, sf_scm_roles **out, sf_error *err)
{
    sf_scm_roles *r = calloc(1, sizeof(*r));
    sf_error e;
    cJSON *doc = NULL;
    const cJSON *el, *creds;
    char path[64];
    int rc = -1;

    if (r == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    sf_error_clear(&e);
    if (find_admin_id(c, &r->admin_id, &e) < 0) {
        if (!fallback_ok(&e))
            goto fail;
    } else if (r->admin_id > 0) {
        (void)sf_snprintf(path, sizeof(path), "/admin/v1/%lld", (long long)r->admin_id);
        if (sf_scm_get_json(c, path, &doc, NULL, &e) < 0) {
            if (!fallback_ok(&e))
                goto fail;
        } else {
            creds = cJSON_GetObjectItemCaseSensitive(doc, "credentials");
            if (cJSON_IsArray(creds)) {
                cJSON_ArrayForEach(el, creds) {
                    const cJSON *role = cJSON_GetObjectItemCaseSensitive(el, "role");
                    if (!cJSON_IsString(role) || role->valuestring == NULL)
                        continue;
                    if (strv_push(&r->roles, role->valuestring) < 0) {
                        sf_error_set(&e, SF_ERR_INTERNAL, 0, "out of memory");
                        goto fail;
                    }
                    if (strcmp(role->valuestring, "MRAO") == 0)
                        r->is_mrao = true;
                }
                r->method = "admin";
                goto done;
            }
        }
    }
    /* Fallback: only an MRAO may assign MRAO. */
    cJSON_Delete(doc);
    doc = NULL;
    if (sf_scm_get_json(c, "/admin/v1/roles", &doc, NULL, &e) < 0)
        goto fail;
    if (!cJSON_IsArray(doc)) {
        sf_error_field(&e, "roles", "scm response: field roles: expected array");
        goto fail;
    }
    cJSON_ArrayForEach(el, doc) {
        if (!cJSON_IsString(el) || el->valuestring == NULL) {
            sf_error_field(&e, "roles", "scm response: field roles[]: expected string");
            goto fail;
        }
        if (strv_push(&r->roles, el->valuestring) < 0) {
            sf_error_set(&e, SF_ERR_INTERNAL, 0, "out of memory");
            goto fail;
        }
        if (strcmp(el->valuestring, "MRAO") == 0)
            r->is_mrao = true;
    }
    r->method = "roles";
done:
    *out = r;
    r = NULL;
    rc = 0;
fail:
    if (rc < 0 && err)
        *err = e;
    cJSON_Delete(doc);
    sf_scm_roles_free(r);
    return rc;
}

/* ---- batch ------------------------------------------------------------- */

typedef struct bitem {
    sf_scm_req_kind kind;
    int64_t ssl_id;
    char *url;
    char *path;
    bool collect;
    size_t limit;
    sf_scm_batch_cb cb;
    void *ud;
    int attempts;
    int64_t first_ms;       /* start of the first attempt, 0 before */
    int64_t start_ms;       /* start of the current attempt */
    int64_t not_before_ms;  /* retry backoff */
    int64_t deadline_ms;    /* the request's own deadline, 0 = none */
    CURL *easy;
    sf_scm_resp resp;
    struct bitem *next;
} bitem;

struct sf_scm_batch {
    sf_scm_client *c;
    CURLM *multi;
    int max_in_flight;
    int in_flight;
    bitem *ready_head, *ready_tail;   /* FIFO of requests to start */
    bitem *delayed;                   /* waiting for their backoff */
    bitem *running;                   /* in the multi handle */
    CURL **idle;                      /* reusable easy handles */
    int n_idle;
    size_t pending;
    uint64_t completed;               /* callbacks called so far */
    int64_t next_deadline;            /* earliest request deadline, 0 = none
                                         (may be stale-early: only costs a scan) */
    sf_scm_batch_refill_fn refill;
    void *refill_ud;
    bool in_run;
    /* curl's socket interface: curl tells which sockets to watch and when it
     * wants a timeout action, and only sockets with activity are serviced.
     * curl_multi_perform walked every transfer on every pass: at 64 in
     * flight and 20 ms that cost 156 us of CPU per call, now 118
     * (bench_scm_client), and the status-poller got 1% nearer its bound. */
    int epfd;
    int64_t timer_at;                 /* mono ms of curl's timeout action, -1 none */
};

/* curl: watch socket s for `what` (or stop watching it). socketp is what
 * curl_multi_assign stored: non-NULL once s is in the epoll set. */
static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    sf_scm_batch *b = userp;
    struct epoll_event ev;

    (void)e;
    if (what == CURL_POLL_REMOVE) {
        if (socketp != NULL) {
            (void)epoll_ctl(b->epfd, EPOLL_CTL_DEL, s, NULL);
            curl_multi_assign(b->multi, s, NULL);
        }
        return 0;
    }
    memset(&ev, 0, sizeof(ev));
    ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u);
    ev.data.fd = s;
    if (socketp == NULL) {
        /* a reused descriptor number may still be in the set */
        if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, s, &ev) < 0 &&
            (errno != EEXIST || epoll_ctl(b->epfd, EPOLL_CTL_MOD, s, &ev) < 0))
            return -1; /* curl fails the transfers on this socket */
        curl_multi_assign(b->multi, s, b);
    } else if (epoll_ctl(b->epfd, EPOLL_CTL_MOD, s, &ev) < 0) {
        return -1;
    }
    return 0;
}

/* curl: call curl_multi_socket_action(CURL_SOCKET_TIMEOUT) in timeout_ms
 * (0: as soon as possible; -1: no timeout wanted). */
static int on_timer(CURLM *m, long timeout_ms, void *userp)
{
    sf_scm_batch *b = userp;

    (void)m;
    b->timer_at = timeout_ms < 0 ? -1 : sf_now_mono_ms() + timeout_ms;
    return 0;
}

/* Run curl's timeout action if it is due (new transfers start here). */
static void drive_timer(sf_scm_batch *b)
{
    int still;

    if (b->timer_at >= 0 && sf_now_mono_ms() >= b->timer_at) {
        b->timer_at = -1; /* curl sets the next one from inside the call */
        curl_multi_socket_action(b->multi, CURL_SOCKET_TIMEOUT, 0, &still);
    }
}

/* Wait up to timeout_ms for socket activity and hand it to curl. */
static void wait_sockets(sf_scm_batch *b, int timeout_ms)
{
    struct epoll_event evs[64];
    int n, still;

    n = epoll_wait(b->epfd, evs, (int)SF_ARRAY_LEN(evs), timeout_ms);
    for (int i = 0; i < n; i++) {
        int bits = 0;

        if (evs[i].events & EPOLLIN)
            bits |= CURL_CSELECT_IN;
        if (evs[i].events & EPOLLOUT)
            bits |= CURL_CSELECT_OUT;
        if (evs[i].events & (EPOLLERR | EPOLLHUP))
            bits |= CURL_CSELECT_ERR;
        curl_multi_socket_action(b->multi, evs[i].data.fd, bits, &still);
    }
}

sf_scm_batch *sf_scm_batch_new(sf_scm_client *c, int max_in_flight, sf_error *err)
{
    sf_scm_batch *b;

    if (c == NULL || max_in_flight < 1 || max_in_flight > 1024) {
        sf_error_field(err, "max_in_flight", "scm batch: max_in_flight must be 1..1024");
        return NULL;
    }
    if ((b = calloc(1, sizeof(*b))) == NULL ||
        (b->idle = calloc((size_t)max_in_flight, sizeof(*b->idle))) == NULL ||
        (b->multi = curl_multi_init()) == NULL) {
        if (b)
            free(b->idle);
        free(b);
        sf_error_set(err, SF_ERR_INTERNAL, 0, "scm batch: out of memory");
        return NULL;
    }
    b->c = c;
    b->max_in_flight = max_in_flight;
    b->timer_at = -1;
    if ((b->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        sf_error_set(err, SF_ERR_INTERNAL, errno, "scm batch: epoll_create1: %s", strerror(errno));
        curl_multi_cleanup(b->multi);
        free(b->idle);
        free(b);
        return NULL;
    }
    curl_multi_setopt(b->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)max_in_flight);
    curl_multi_setopt(b->multi, CURLMOPT_MAXCONNECTS, (long)max_in_flight);
    curl_multi_setopt(b->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(b->multi, CURLMOPT_SOCKETDATA, b);
    curl_multi_setopt(b->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(b->multi, CURLMOPT_TIMERDATA, b);
    return b;
}

static void item_free(bitem *it)
{
    if (it == NULL)
        return;
    sf_buf_release(&it->resp.body);
    free(it->url);
    free(it->path);
    free(it);
}

static void ready_push(sf_scm_batch *b, bitem *it)
{
    it->next = NULL;
    if (b->ready_tail)
        b->ready_tail->next = it;
    else
        b->ready_head = it;
    b->ready_tail = it;
}

static int batch_add(sf_scm_batch *b, sf_scm_req_kind kind, int64_t ssl_id, char *path,
                     bool collect, size_t limit, int64_t deadline_ms, sf_scm_batch_cb cb,
                     void *ud, sf_error *err)
{
    bitem *it;

    if (path == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    if ((it = calloc(1, sizeof(*it))) == NULL || (it->url = make_url(b->c, path)) == NULL) {
        free(it);
        free(path);
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    }
    it->kind = kind;
    it->ssl_id = ssl_id;
    it->path = path;
    it->collect = collect;
    it->limit = limit;
    it->cb = cb;
    it->ud = ud;
    it->deadline_ms = deadline_ms > 0 ? deadline_ms : 0;
    if (it->deadline_ms > 0 && (b->next_deadline == 0 || it->deadline_ms < b->next_deadline))
        b->next_deadline = it->deadline_ms;
    sf_buf_init(&it->resp.body, limit);
    ready_push(b, it);
    b->pending++;
    return 0;
}

int sf_scm_batch_add(sf_scm_batch *b, const sf_scm_batch_req *req, sf_error *err)
{
    if (b == NULL || req == NULL || req->cb == NULL)
        return sf_error_field(err, "cb", "scm batch: callback required");
    switch (req->kind) {
    case SF_SCM_REQ_DETAILS:
        return batch_add(b, SF_SCM_REQ_DETAILS, req->ssl_id,
                         sf_asprintf("/ssl/v1/%lld", (long long)req->ssl_id), false,
                         b->c->max_resp, req->deadline_ms, req->cb, req->ud, err);
    case SF_SCM_REQ_COLLECT:
        if (!sf_scm_format_valid(req->format))
            return sf_error_field(err, "format", "scm collect: unknown format");
        return batch_add(b, SF_SCM_REQ_COLLECT, req->ssl_id,
                         sf_asprintf("/ssl/v1/collect/%lld/%s", (long long)req->ssl_id,
                                     req->format),
                         true, b->c->max_resp, req->deadline_ms, req->cb, req->ud, err);
    case SF_SCM_REQ_GET:
        if (req->path == NULL || req->path[0] != '/')
            return sf_error_field(err, "path", "scm: path must start with /");
        return batch_add(b, SF_SCM_REQ_GET, 0, sf_strdup(req->path), false, b->c->max_list,
                         req->deadline_ms, req->cb, req->ud, err);
    }
    return sf_error_field(err, "kind", "scm batch: unknown request kind");
}

int sf_scm_batch_add_details(sf_scm_batch *b, int64_t ssl_id, sf_scm_batch_cb cb, void *ud,
                             sf_error *err)
{
    sf_scm_batch_req q = SF_SCM_BATCH_REQ_INIT;

    q.kind = SF_SCM_REQ_DETAILS;
    q.ssl_id = ssl_id;
    q.cb = cb;
    q.ud = ud;
    return sf_scm_batch_add(b, &q, err);
}

int sf_scm_batch_add_collect(sf_scm_batch *b, int64_t ssl_id, const char *format,
                             sf_scm_batch_cb cb, void *ud, sf_error *err)
{
    sf_scm_batch_req q = SF_SCM_BATCH_REQ_INIT;

    q.kind = SF_SCM_REQ_COLLECT;
    q.ssl_id = ssl_id;
    q.format = format;
    q.cb = cb;
    q.ud = ud;
    return sf_scm_batch_add(b, &q, err);
}

int sf_scm_batch_add_get(sf_scm_batch *b, const char *path, sf_scm_batch_cb cb, void *ud,
                         sf_error *err)
{
    sf_scm_batch_req q = SF_SCM_BATCH_REQ_INIT;

    q.kind = SF_SCM_REQ_GET;
    q.path = path;
    q.cb = cb;
    q.ud = ud;
    return sf_scm_batch_add(b, &q, err);
}

void sf_scm_batch_set_refill(sf_scm_batch *b, sf_scm_batch_refill_fn fn, void *ud)
{
    if (b == NULL)
        return;
    b->refill = fn;
    b->refill_ud = fn ? ud : NULL;
}

size_t sf_scm_batch_pending(const sf_scm_batch *b)
{
    return b ? b->pending : 0;
}

/* Deliver the outcome of an item and free it. */
static void complete(sf_scm_batch *b, bitem *it, int rc, const sf_error *e)
{
    sf_scm_result res;

    memset(&res, 0, sizeof(res));
    res.kind = it->kind;
    res.ssl_id = it->ssl_id;
    res.http_status = it->resp.status;
    res.attempts = it->attempts;
    res.total = it->resp.total;
    if (rc == 0) {
        size_t n = 0;
        char *body = sf_buf_detach(&it->resp.body, &n);

        if (body == NULL && (body = sf_strdup("")) == NULL) {
            rc = sf_error_set(&res.err, SF_ERR_INTERNAL, 0, "out of memory");
        } else if (it->kind == SF_SCM_REQ_DETAILS) {
            rc = sf_scm_parse_cert(body, n, &res.cert, &res.err);
            free(body);
        } else if (it->kind == SF_SCM_REQ_GET) {
            res.json = cJSON_ParseWithLength(body, n);
            if (res.json == NULL) {
                rc = sf_error_field(&res.err, "", "scm response: not valid JSON");
                free(body);
            } else {
                res.body = body;
                res.body_len = n;
            }
        } else {
            res.body = body;
            res.body_len = n;
        }
    } else {
        res.err = *e;
    }
    res.rc = rc < 0 ? -1 : 0;
    /* The callback may add requests (pending grows before it shrinks). */
    it->cb(&res, it->ud);
    sf_scm_cert_free(res.cert);
    free(res.body);
    cJSON_Delete(res.json);
    b->pending--;
    b->completed++;
    item_free(it);
}

static int start_item(sf_scm_batch *b, bitem *it, sf_error *err)
{
    sf_scm_reqspec q;
    CURL *e = b->n_idle > 0 ? b->idle[--b->n_idle] : curl_easy_init();

    if (e == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "scm batch: out of memory");
    memset(&q, 0, sizeof(q));
    q.method = "GET";
    q.url = it->url;
    q.path = it->path;
    q.idempotent = true;
    q.collect = it->collect;
    q.limit = it->limit;
    setup_easy(b->c, e, &q, &it->resp);
    if (it->first_ms > 0) {
        /* A retry never runs past the item's budget. */
        int64_t left = it->first_ms + b->c->budget_ms - sf_now_mono_ms();
        if (left < b->c->total_ms)
            curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(left > 1 ? left : 1));
    }
    curl_easy_setopt(e, CURLOPT_PRIVATE, it);
    if (curl_multi_add_handle(b->multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "scm batch: could not add a request");
    }
    it->easy = e;
    it->attempts++;
    it->start_ms = sf_now_mono_ms();
    if (it->first_ms == 0)
        it->first_ms = sf_now_mono_ms();
    b->in_flight++;
    return 0;
}

static void release_easy(sf_scm_batch *b, bitem *it)
{
    if (it->easy == NULL)
        return;
    curl_multi_remove_handle(b->multi, it->easy);
    if (b->n_idle < b->max_in_flight)
        b->idle[b->n_idle++] = it->easy;
    else
        curl_easy_cleanup(it->easy);
    it->easy = NULL;
    b->in_flight--;
}

static void finish_transfer(sf_scm_batch *b, bitem *it, CURLcode cc)
{
    sf_scm_client *c = b->c;
    sf_scm_reqspec q;
    sf_error e;
    bool retry;
    int64_t now, delay;

    memset(&q, 0, sizeof(q));
    q.method = "GET";
    q.path = it->path;
    q.idempotent = true;
    q.collect = it->collect;
    q.limit = it->limit;
    sf_error_clear(&e);
    if (classify(&q, it->easy, cc, &it->resp, &e, &retry) == 0) {
        record_attempt("GET", it->path, it->start_ms, NULL, false);
        release_easy(b, it);
        complete(b, it, 0, NULL);
        return;
    }
    release_easy(b, it);
    now = sf_now_mono_ms();
    delay = backoff_ms(c, it->attempts);
    if (e.retry_after_ms > delay)
        delay = e.retry_after_ms;
    if (!retry || it->attempts >= c->max_attempts || now + delay > it->first_ms + c->budget_ms) {
        record_attempt("GET", it->path, it->start_ms, &e, false);
        complete(b, it, -1, &e);
        return;
    }
    record_attempt("GET", it->path, it->start_ms, &e, true);
    sf_log_debug("scm batch GET %s: attempt %d failed (%s), retry in %lld ms", it->path,
                 it->attempts, e.msg, (long long)delay);
    it->not_before_ms = now + delay;
    it->next = b->delayed;
    b->delayed = it;
}

static bool batch_busy(const sf_scm_batch *b)
{
    return b->ready_head || b->delayed || b->running;
}

static bitem *ready_pop(sf_scm_batch *b)
{
    bitem *it = b->ready_head;

    if (it) {
        b->ready_head = it->next;
        if (b->ready_head == NULL)
            b->ready_tail = NULL;
        it->next = NULL;
    }
    return it;
}

static void fail_all(sf_scm_batch *b, const char *why)
{
    sf_error e;
    bitem *it;
    CURLMsg *m;
    int left;

    sf_error_set(&e, SF_ERR_TRANSIENT, 0, "scm batch: %s", why);
    /* A callback may add requests: they fail too, until nothing is left. */
    while (batch_busy(b)) {
        while ((it = b->running) != NULL) {
            b->running = it->next;
            release_easy(b, it);
            complete(b, it, -1, &e);
        }
        while ((m = curl_multi_info_read(b->multi, &left)) != NULL)
            ;
        while ((it = ready_pop(b)) != NULL)
            complete(b, it, -1, &e);
        while ((it = b->delayed) != NULL) {
            b->delayed = it->next;
            complete(b, it, -1, &e);
        }
    }
}

static int64_t earlier_deadline(int64_t next, const bitem *it)
{
    if (it->deadline_ms > 0 && (next == 0 || it->deadline_ms < next))
        return it->deadline_ms;
    return next;
}

/* Complete every request whose own deadline passed (queued, waiting for a
 * retry, or in flight) with SF_ERR_TRANSIENT "deadline exceeded". The
 * expired ones are unlinked first and completed afterwards, so that a
 * callback adding a request does not disturb the scan. */
static void expire_requests(sf_scm_batch *b, int64_t now)
{
    bitem *expired = NULL, *it, **pp;
    bitem **lists[2] = {&b->delayed, &b->running};
    int64_t next = 0;
    sf_error e;

    if (b->next_deadline == 0 || now < b->next_deadline)
        return;
    /* the ready FIFO keeps its order and its tail */
    {
        bitem *keep_head = NULL, *keep_tail = NULL;

        while ((it = ready_pop(b)) != NULL) {
            if (it->deadline_ms > 0 && it->deadline_ms <= now) {
                it->next = expired;
                expired = it;
                continue;
            }
            next = earlier_deadline(next, it);
            if (keep_tail)
                keep_tail->next = it;
            else
                keep_head = it;
            keep_tail = it;
        }
        b->ready_head = keep_head;
        b->ready_tail = keep_tail;
    }
    for (int l = 0; l < 2; l++) {
        for (pp = lists[l]; (it = *pp) != NULL;) {
            if (it->deadline_ms > 0 && it->deadline_ms <= now) {
                *pp = it->next;
                release_easy(b, it); /* no-op unless in flight */
                it->next = expired;
                expired = it;
            } else {
                next = earlier_deadline(next, it);
                pp = &it->next;
            }
        }
    }
    b->next_deadline = next;
    sf_error_set(&e, SF_ERR_TRANSIENT, 0, "scm batch: deadline exceeded");
    while ((it = expired) != NULL) {
        expired = it->next;
        complete(b, it, -1, &e);
    }
}

/* Let the owner add requests while fewer than max_in_flight are queued or
 * in flight. Stops when the hook adds nothing. */
static void refill(sf_scm_batch *b)
{
    while (b->refill != NULL && b->pending < (size_t)b->max_in_flight) {
        size_t before = b->pending;

        if (b->refill(b, (size_t)b->max_in_flight - b->pending, b->refill_ud) <= 0 ||
            b->pending <= before)
            break;
    }
}

static void running_remove(sf_scm_batch *b, bitem *it)
{
    for (bitem **pp = &b->running; *pp; pp = &(*pp)->next)
        if (*pp == it) {
            *pp = it->next;
            return;
        }
}

int sf_scm_batch_run(sf_scm_batch *b, int64_t deadline_ms, sf_error *err)
{
    int rc = 0;

    if (b == NULL)
        return sf_error_field(err, "batch", "scm batch: NULL");
    if (b->in_run)
        return sf_error_field(err, "batch", "scm batch: run called from its own callback");
    b->in_run = true;
    for (;;) {
        int64_t now = sf_now_mono_ms(), wake = now + 200, rl_wait_ms = 0;
        uint64_t completed;
        CURLMsg *m;
        int left;

        if (deadline_ms > 0 && now >= deadline_ms) {
            if (batch_busy(b)) {
                fail_all(b, "deadline exceeded");
                rc = sf_error_set(err, SF_ERR_TRANSIENT, 0, "scm batch: deadline exceeded");
            }
            break;
        }
        expire_requests(b, now);
        refill(b);
        if (!batch_busy(b))
            break;
        /* Due retries go back to the front of the line. */
        for (bitem **pp = &b->delayed; *pp;) {
            bitem *it = *pp;
            if (it->not_before_ms <= now) {
                *pp = it->next;
                it->next = b->ready_head;
                b->ready_head = it;
                if (b->ready_tail == NULL)
                    b->ready_tail = it;
            } else {
                if (it->not_before_ms < wake)
                    wake = it->not_before_ms;
                pp = &it->next;
            }
        }
        while (b->ready_head && b->in_flight < b->max_in_flight) {
            bitem *it;
            sf_error e;

            if ((rl_wait_ms = rl_try_take(b->c->rl)) > 0) {
                if (now + rl_wait_ms < wake)
                    wake = now + rl_wait_ms;
                break;
            }
            it = ready_pop(b);
            sf_error_clear(&e);
            if (start_item(b, it, &e) < 0) {
                complete(b, it, -1, &e);
                continue;
            }
            it->next = b->running;
            b->running = it;
        }
        completed = b->completed;
        drive_timer(b);
        while ((m = curl_multi_info_read(b->multi, &left)) != NULL) {
            bitem *it = NULL;

            if (m->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&it);
            if (it == NULL)
                continue;
            running_remove(b, it);
            finish_transfer(b, it, m->data.result);
        }
        /* Nothing left, or room freed that the owner may fill: back to the
         * top (refill, or the end) without waiting. */
        if (!batch_busy(b) ||
            (b->refill && b->completed != completed && b->pending < (size_t)b->max_in_flight))
            continue;
        now = sf_now_mono_ms();
        if (b->ready_head && b->in_flight < b->max_in_flight && rl_wait_ms == 0)
            continue;
        if (deadline_ms > 0 && deadline_ms < wake)
            wake = deadline_ms;
        if (b->next_deadline > 0 && b->next_deadline < wake)
            wake = b->next_deadline;
        if (b->timer_at >= 0 && b->timer_at < wake)
            wake = b->timer_at;
        {
            int64_t t = wake - now;
            if (t < 0)
                t = 0;
            if (t > 1000)
                t = 1000;
            wait_sockets(b, (int)t);
        }
    }
    b->in_run = false;
    return rc;
}

void sf_scm_batch_free(sf_scm_batch *b)
{
    if (b == NULL)
        return;
    if (batch_busy(b))
        fail_all(b, "batch freed before completion");
    for (int i = 0; i < b->n_idle; i++)
        curl_easy_cleanup(b->idle[i]);
    free(b->idle);
    curl_multi_cleanup(b->multi); /* may still call on_socket: epfd after */
    close(b->epfd);
    free(b);
}
