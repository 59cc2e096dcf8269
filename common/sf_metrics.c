/*
 * sf_metrics.c - process-wide metrics registry (see sf_metrics.h for why it
 * is a global). One mutex guards everything: recording is a short critical
 * section (lookup + add) and rendering happens a few times a minute.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "sf_metrics.h"
#include "sf_util.h"

#define NAME_MAX_LEN 128
#define LABELS_MAX_LEN 512
#define HELP_MAX_LEN 1024
#define DROPPED_NAME "scmflow_metrics_dropped_total"

typedef enum mtype { MT_UNTYPED = 0, MT_COUNTER, MT_GAUGE, MT_HISTOGRAM } mtype;

static const double default_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                         1,     2.5,  5,     10,   30,  60};
#define NBUCKETS SF_ARRAY_LEN(default_buckets)

typedef struct series {
    char *labels;          /* "" when none */
    double value;          /* counter / gauge */
    uint64_t buckets[NBUCKETS]; /* histogram: per bucket, not cumulative */
    uint64_t count;
    double sum;
} series;

typedef struct family {
    char *name;
    char *help;            /* NULL when never described */
    mtype type;
    series **series;
    size_t nseries, capseries;
} family;

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static family **fams;          /* sorted by name */
static size_t nfams, capfams;
static size_t total_series;
static double dropped;

static int valid_name(const char *n)
{
    size_t i;
    if (!n || !*n)
        return 0;
    for (i = 0; n[i]; i++) {
        char c = n[i];
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (i >= NAME_MAX_LEN || !(alpha || (i > 0 && c >= '0' && c <= '9')))
            return 0;
    }
    return 1;
}

static int valid_labels(const char *l)
{
    size_t n = strlen(l);
    return n <= LABELS_MAX_LEN && !memchr(l, '\n', n) && !memchr(l, '{', n) && !memchr(l, '}', n) ? 1
                                                                                                  : 0;
}

/* Binary search; returns the index of name or where it would be inserted. */
static size_t fam_pos(const char *name, int *found)
{
    size_t lo = 0, hi = nfams;
    *found = 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(fams[mid]->name, name);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Find or create the family; NULL on a type clash, a bad name or no memory. */
static family *fam_get(const char *name, mtype type)
{
    int found;
    size_t pos;
    family *f;

    if (!valid_name(name))
        return NULL;
    pos = fam_pos(name, &found);
    if (found) {
        f = fams[pos];
        if (f->type == MT_UNTYPED)
            f->type = type;
        return f->type == type || type == MT_UNTYPED ? f : NULL;
    }
    if (nfams == capfams) {
        size_t ncap = capfams ? capfams * 2 : 32;
        family **nf = realloc(fams, ncap * sizeof(*nf));
        if (!nf)
            return NULL;
        fams = nf;
        capfams = ncap;
    }
    f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->name = sf_strdup(name);
    if (!f->name) {
        free(f);
        return NULL;
    }
    f->type = type;
    memmove(&fams[pos + 1], &fams[pos], (nfams - pos) * sizeof(*fams));
    fams[pos] = f;
    nfams++;
    return f;
}

static series *series_get(family *f, const char *labels)
{
    size_t i;
    series *s;

    if (!labels)
        labels = "";
    for (i = 0; i < f->nseries; i++)
        if (strcmp(f->series[i]->labels, labels) == 0)
            return f->series[i];
    if (!valid_labels(labels) || total_series >= SF_METRICS_MAX_SERIES) {
        dropped += 1;
        return NULL;
    }
    if (f->nseries == f->capseries) {
        size_t ncap = f->capseries ? f->capseries * 2 : 4;
        series **ns = realloc(f->series, ncap * sizeof(*ns));
        if (!ns)
            return NULL;
        f->series = ns;
        f->capseries = ncap;
    }
    s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->labels = sf_strdup(labels);
    if (!s->labels) {
        free(s);
        return NULL;
    }
    f->series[f->nseries++] = s;
    total_series++;
    return s;
}

void sf_metrics_describe(const char *name, const char *type, const char *help)
{
    mtype t;
    family *f;
    char *h;

    if (!type || !help)
        return;
    if (strcmp(type, "counter") == 0)
        t = MT_COUNTER;
    else if (strcmp(type, "gauge") == 0)
        t = MT_GAUGE;
    else if (strcmp(type, "histogram") == 0)
        t = MT_HISTOGRAM;
    else
        return;
    if (strlen(help) > HELP_MAX_LEN)
        return;
    pthread_mutex_lock(&reg_lock);
    f = fam_get(name, t);
    if (f && (h = sf_strdup(help)) != NULL) {
        free(f->help);
        f->help = h;
    }
    pthread_mutex_unlock(&reg_lock);
}

static void record(const char *name, const char *labels, mtype t, double v, int set)
{
    family *f;
    series *s;

    if (isnan(v))
        return;
    pthread_mutex_lock(&reg_lock);
    f = fam_get(name, t);
    if (f && (s = series_get(f, labels)) != NULL) {
        if (t == MT_HISTOGRAM) {
            size_t i;
            for (i = 0; i < NBUCKETS; i++) {
                if (v <= default_buckets[i]) {
                    s->buckets[i]++;
                    break;
                }
            }
            s->count++;
            s->sum += v;
        } else if (set) {
            s->value = v;
        } else {
            s->value += v;
        }
    }
    pthread_mutex_unlock(&reg_lock);
}

void sf_metrics_counter_add(const char *name, const char *labels, double v)
{
    if (v >= 0)
        record(name, labels, MT_COUNTER, v, 0);
}

void sf_metrics_gauge_set(const char *name, const char *labels, double v)
{
    record(name, labels, MT_GAUGE, v, 1);
}

void sf_metrics_gauge_add(const char *name, const char *labels, double v)
{
    record(name, labels, MT_GAUGE, v, 0);
}

void sf_metrics_observe(const char *name, const char *labels, double seconds)
{
    record(name, labels, MT_HISTOGRAM, seconds, 0);
}

/* Shortest text that reads back as the same double; Prometheus spellings
 * for the special values. */
static void fmt_value(double v, char *buf, size_t size)
{
    if (isnan(v)) {
        sf_snprintf(buf, size, "NaN");
    } else if (isinf(v)) {
        sf_snprintf(buf, size, "%s", v > 0 ? "+Inf" : "-Inf");
    } else {
        sf_snprintf(buf, size, "%.15g", v);
        if (strtod(buf, NULL) != v)
            sf_snprintf(buf, size, "%.17g", v);
    }
}

static const char *type_name(mtype t)
{
    switch (t) {
    case MT_COUNTER:
        return "counter";
    case MT_GAUGE:
        return "gauge";
    case MT_HISTOGRAM:
        return "histogram";
    default:
        return "untyped";
    }
}

/* HELP text escaping: backslash and newline. */
static int append_help(sf_buf *out, const char *help)
{
    int rc = 0;
    for (; *help && rc == 0; help++) {
        if (*help == '\\')
            rc = sf_buf_append(out, "\\\\", 2);
        else if (*help == '\n')
            rc = sf_buf_append(out, "\\n", 2);
        else
            rc = sf_buf_appendc(out, *help);
    }
    return rc;
}

static int render_family(sf_buf *out, const family *f)
{
    char v[64];
    size_t i, b;

    if (f->help) {
        if (sf_buf_appendf(out, "# HELP %s ", f->name) < 0 || append_help(out, f->help) < 0 ||
            sf_buf_appendc(out, '\n') < 0)
            return -1;
    }
    if (sf_buf_appendf(out, "# TYPE %s %s\n", f->name, type_name(f->type)) < 0)
        return -1;
    for (i = 0; i < f->nseries; i++) {
        const series *s = f->series[i];
        const char *l = s->labels;
        int has = *l != '\0';
        if (f->type != MT_HISTOGRAM) {
            fmt_value(s->value, v, sizeof(v));
            if (sf_buf_appendf(out, "%s%s%s%s %s\n", f->name, has ? "{" : "", l, has ? "}" : "",
                               v) < 0)
                return -1;
            continue;
        }
        uint64_t cum = 0;
        for (b = 0; b < NBUCKETS; b++) {
            cum += s->buckets[b];
            fmt_value(default_buckets[b], v, sizeof(v));
            if (sf_buf_appendf(out, "%s_bucket{%s%sle=\"%s\"} %llu\n", f->name, l, has ? "," : "",
                               v, (unsigned long long)cum) < 0)
                return -1;
        }
        if (sf_buf_appendf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", f->name, l, has ? "," : "",
                           (unsigned long long)s->count) < 0)
            return -1;
        fmt_value(s->sum, v, sizeof(v));
        if (sf_buf_appendf(out, "%s_sum%s%s%s %s\n", f->name, has ? "{" : "", l, has ? "}" : "",
                           v) < 0 ||
            sf_buf_appendf(out, "%s_count%s%s%s %llu\n", f->name, has ? "{" : "", l,
                           has ? "}" : "", (unsigned long long)s->count) < 0)
            return -1;
    }
    return 0;
}

int sf_metrics_render(sf_buf *out)
{
    int rc = 0;
    size_t i;
    int dropped_done = 0;
    char v[64];

    pthread_mutex_lock(&reg_lock);
    for (i = 0; i < nfams && rc == 0; i++) {
        /* The drop counter is rendered in its sorted place, outside the
         * registry so recording it can never itself be dropped. */
        if (!dropped_done && strcmp(fams[i]->name, DROPPED_NAME) > 0 && dropped > 0) {
            fmt_value(dropped, v, sizeof(v));
            rc = sf_buf_appendf(out, "# TYPE %s counter\n%s %s\n", DROPPED_NAME, DROPPED_NAME, v);
            dropped_done = 1;
        }
        if (rc == 0)
            rc = render_family(out, fams[i]);
    }
    if (rc == 0 && !dropped_done && dropped > 0) {
        fmt_value(dropped, v, sizeof(v));
        rc = sf_buf_appendf(out, "# TYPE %s counter\n%s %s\n", DROPPED_NAME, DROPPED_NAME, v);
    }
    pthread_mutex_unlock(&reg_lock);
    return rc < 0 ? -1 : 0;
}

int sf_metrics_label_escape(const char *value, char *dst, size_t size)
{
    size_t o = 0;
    const char *p;

    if (!dst || size == 0)
        return -1;
    for (p = value ? value : ""; *p; p++) {
        const char *rep = NULL;
        char one[2] = {*p, '\0'};
        size_t n;
        if (*p == '\\')
            rep = "\\\\";
        else if (*p == '"')
            rep = "\\\"";
        else if (*p == '\n')
            rep = "\\n";
        else
            rep = one;
        n = strlen(rep);
        if (o + n >= size) {
            dst[o] = '\0';
            return -1;
        }
        memcpy(dst + o, rep, n);
        o += n;
    }
    dst[o] = '\0';
    return 0;
}

void sf_metrics_reset(void)
{
    size_t i, j;
    pthread_mutex_lock(&reg_lock);
    for (i = 0; i < nfams; i++) {
        for (j = 0; j < fams[i]->nseries; j++) {
            free(fams[i]->series[j]->labels);
            free(fams[i]->series[j]);
        }
        free(fams[i]->series);
        free(fams[i]->name);
        free(fams[i]->help);
        free(fams[i]);
    }
    free(fams);
    fams = NULL;
    nfams = capfams = 0;
    total_series = 0;
    dropped = 0;
    pthread_mutex_unlock(&reg_lock);
}
