#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sf_log.h"
#include "sf_util.h"

#define SF_LOG_MAX_SECRETS 64
#define SF_LOG_LINE_LIMIT (64 * 1024)

static char g_service[64] = "scmflow";
static sf_log_level g_level = SF_LOG_INFO;
static sf_log_format g_format = SF_LOG_JSON;
static FILE *g_stream;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static char *g_secrets[SF_LOG_MAX_SECRETS];
static size_t g_nsecrets;

static _Thread_local char t_topic[128];
static _Thread_local int32_t t_partition = -1;
static _Thread_local int64_t t_offset = -1;
static _Thread_local char t_order[128];

static const char *level_name[] = {"debug", "info", "warn", "error"};

void sf_log_init(const char *service, sf_log_level level, sf_log_format format)
{
    snprintf(g_service, sizeof(g_service), "%s", service ? service : "scmflow");
    g_level = level;
    g_format = format;
}

void sf_log_set_stream(FILE *f)
{
    g_stream = f;
}

int sf_log_parse_level(const char *s, sf_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (s && strcmp(s, level_name[i]) == 0) {
            *out = (sf_log_level)i;
            return 0;
        }
    }
    return -1;
}

int sf_log_parse_format(const char *s, sf_log_format *out)
{
    if (s && strcmp(s, "json") == 0) {
        *out = SF_LOG_JSON;
        return 0;
    }
    if (s && strcmp(s, "text") == 0) {
        *out = SF_LOG_TEXT;
        return 0;
    }
    return -1;
}

int sf_log_enabled(sf_log_level level)
{
    return level >= g_level;
}

int sf_log_register_secret(const char *value)
{
    size_t n = value ? strlen(value) : 0;
    int rc = -1;

    if (n < 4 || n > 4096)
        return -1;
    pthread_mutex_lock(&g_lock);
    for (size_t i = 0; i < g_nsecrets; i++) {
        if (strcmp(g_secrets[i], value) == 0) {
            rc = 0;
            goto out;
        }
    }
    if (g_nsecrets < SF_LOG_MAX_SECRETS && (g_secrets[g_nsecrets] = strdup(value)) != NULL) {
        g_nsecrets++;
        rc = 0;
    }
out:
    pthread_mutex_unlock(&g_lock);
    return rc;
}

void sf_log_clear_secrets(void)
{
    pthread_mutex_lock(&g_lock);
    for (size_t i = 0; i < g_nsecrets; i++) {
        sf_memzero(g_secrets[i], strlen(g_secrets[i]));
        free(g_secrets[i]);
        g_secrets[i] = NULL;
    }
    g_nsecrets = 0;
    pthread_mutex_unlock(&g_lock);
}

void sf_log_ctx_set(const char *topic, int32_t partition, int64_t offset, const char *order_id)
{
    snprintf(t_topic, sizeof(t_topic), "%s", topic ? topic : "");
    t_partition = partition;
    t_offset = offset;
    snprintf(t_order, sizeof(t_order), "%s", order_id ? order_id : "");
}

void sf_log_ctx_order(const char *order_id)
{
    snprintf(t_order, sizeof(t_order), "%s", order_id ? order_id : "");
}

void sf_log_ctx_clear(void)
{
    t_topic[0] = '\0';
    t_partition = -1;
    t_offset = -1;
    t_order[0] = '\0';
}

/* JSON-escape s into b. Control bytes become \u00XX. */
static void append_json_str(sf_buf *b, const char *s)
{
    sf_buf_appendc(b, '"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\') {
            sf_buf_appendc(b, '\\');
            sf_buf_appendc(b, (char)c);
        } else if (c == '\n') {
            sf_buf_append(b, "\\n", 2);
        } else if (c == '\t') {
            sf_buf_append(b, "\\t", 2);
        } else if (c < 0x20) {
            sf_buf_appendf(b, "\\u%04x", c);
        } else {
            sf_buf_appendc(b, (char)c);
        }
    }
    sf_buf_appendc(b, '"');
}

static void append_field(sf_buf *b, const char *key, const char *val)
{
    if (g_format == SF_LOG_JSON) {
        sf_buf_appendc(b, ',');
        append_json_str(b, key);
        sf_buf_appendc(b, ':');
        append_json_str(b, val);
    } else {
        sf_buf_appendf(b, " %s=%s", key, val);
    }
}

/* Replace each registered secret in line by "[redacted]". Called with the
 * lock held. */
static void scrub(sf_buf *line)
{
    for (size_t i = 0; i < g_nsecrets; i++) {
        const char *sec = g_secrets[i];
        size_t sl = strlen(sec);
        size_t from = 0;
        char *hit;

        /* Search on after each replacement: a secret that occurs inside
         * "[redacted]" (e.g. "dact") must not be replaced forever. */
        while (from <= line->len && (hit = strstr(line->data + from, sec)) != NULL) {
            static const char red[] = "[redacted]";
            size_t pos = (size_t)(hit - line->data);
            size_t tail = line->len - pos - sl;
            sf_buf out;

            sf_buf_init(&out, line->limit + sizeof(red));
            sf_buf_append(&out, line->data, pos);
            sf_buf_append(&out, red, sizeof(red) - 1);
            sf_buf_append(&out, hit + sl, tail);
            sf_buf_release(line);
            *line = out;
            if (line->data == NULL)
                return;
            from = pos + sizeof(red) - 1;
        }
    }
}

static void emit(sf_log_level level, const char *const *kv, const char *fmt, va_list ap)
{
    char msg[4096];
    char ts[40];
    char num[32];
    sf_buf b;
    FILE *out = g_stream ? g_stream : stderr;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    sf_format_rfc3339(sf_now_wall_ms(), ts, sizeof(ts));
    sf_buf_init(&b, SF_LOG_LINE_LIMIT);
    if (g_format == SF_LOG_JSON) {
        sf_buf_append(&b, "{\"time\":", 8);
        append_json_str(&b, ts);
        append_field(&b, "level", level_name[level]);
        append_field(&b, "service", g_service);
        append_field(&b, "msg", msg);
    } else {
        sf_buf_appendf(&b, "%s %-5s %s: %s", ts, level_name[level], g_service, msg);
    }
    if (t_topic[0]) {
        append_field(&b, "topic", t_topic);
        snprintf(num, sizeof(num), "%d", (int)t_partition);
        append_field(&b, "partition", num);
        snprintf(num, sizeof(num), "%lld", (long long)t_offset);
        append_field(&b, "offset", num);
    }
    if (t_order[0])
        append_field(&b, "order_id", t_order);
    for (; kv && kv[0] && kv[1]; kv += 2)
        append_field(&b, kv[0], kv[1]);
    if (g_format == SF_LOG_JSON)
        sf_buf_appendc(&b, '}');
    sf_buf_appendc(&b, '\n');
    pthread_mutex_lock(&g_lock);
    if (b.data) {
        scrub(&b);
        if (b.data) {
            fwrite(b.data, 1, b.len, out);
            fflush(out);
        }
    }
    pthread_mutex_unlock(&g_lock);
    sf_buf_release(&b);
}

void sf_log_write(sf_log_level level, const char *fmt, ...)
{
    va_list ap;

    if (!sf_log_enabled(level))
        return;
    va_start(ap, fmt);
    emit(level, NULL, fmt, ap);
    va_end(ap);
}

void sf_log_kv(sf_log_level level, const char *const *kv, const char *fmt, ...)
{
    va_list ap;

    if (!sf_log_enabled(level))
        return;
    va_start(ap, fmt);
    emit(level, kv, fmt, ap);
    va_end(ap);
}

void sf_log_rdkafka_cb(const struct rd_kafka_s *rk, int level, const char *fac, const char *buf)
{
    /* syslog levels: 0..3 error, 4 warning, 5..6 info, 7 debug */
    sf_log_level l = level <= 3 ? SF_LOG_ERROR : level == 4 ? SF_LOG_WARN
                   : level <= 6 ? SF_LOG_INFO : SF_LOG_DEBUG;
    const char *kv[] = {"component", "librdkafka", "facility", fac, NULL};

    (void)rk;
    /* One SCMFLOW_KAFKA_CONFIG file serves producer and consumer, so
     * "X is a consumer property and will be ignored by this producer" is
     * expected, not worth a warning per handle. */
    if (l == SF_LOG_WARN && fac && strcmp(fac, "CONFWARN") == 0 && buf &&
        (strstr(buf, "is a consumer property") || strstr(buf, "is a producer property")))
        l = SF_LOG_INFO;
    if (sf_log_enabled(l))
        sf_log_kv(l, kv, "%s", buf);
}

void sf_log_pq_notice(void *arg, const char *message)
{
    const char *kv[] = {"component", "libpq", NULL};
    char msg[1024];
    size_t n;

    (void)arg;
    snprintf(msg, sizeof(msg), "%s", message);
    n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n')
        msg[--n] = '\0';
    if (sf_log_enabled(SF_LOG_INFO))
        sf_log_kv(SF_LOG_INFO, kv, "%s", msg);
}
