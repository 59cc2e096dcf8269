#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "sf_util.h"

int sf_str_to_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end = NULL;
    long long v;

    if (s == NULL || *s == '\0')
        return -1;
    /* strtoll accepts leading white space of every kind (also \r, \v, \f);
     * a setting with any of it is a typo: only a sign or a digit may start. */
    if (!((*s >= '0' && *s <= '9') || *s == '-' || *s == '+'))
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return -1;
    if (v < min || v > max)
        return -1;
    *out = (int64_t)v;
    return 0;
}

int sf_parse_duration_ms(const char *s, int64_t *out_ms)
{
    static const struct {
        const char *suffix;
        int64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    char num[32];
    size_t n, i, digits = 0;
    int64_t v;

    if (s == NULL)
        return -1;
    n = strlen(s);
    while (digits < n && s[digits] >= '0' && s[digits] <= '9')
        digits++;
    if (digits == 0 || digits >= sizeof(num))
        return -1;
    memcpy(num, s, digits);
    num[digits] = '\0';
    if (sf_str_to_i64(num, 0, INT64_MAX / 86400000, &v) < 0)
        return -1;
    if (digits == n) {
        *out_ms = v * 1000;
        return 0;
    }
    for (i = 0; i < SF_ARRAY_LEN(units); i++) {
        if (strcmp(s + digits, units[i].suffix) == 0) {
            *out_ms = v * units[i].ms;
            return 0;
        }
    }
    return -1;
}

int sf_snprintf(char *dst, size_t size, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(dst, size, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size)
        return -1;
    return 0;
}

char *sf_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

char *sf_asprintf(const char *fmt, ...)
{
    va_list ap;
    char *out;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    out = malloc((size_t)n + 1);
    if (out == NULL)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(out, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return out;
}

void sf_memzero(void *p, size_t n)
{
    volatile unsigned char *v = p;

    while (n--)
        *v++ = 0;
}

int64_t sf_now_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sf_now_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sf_format_rfc3339(int64_t wall_ms, char *buf, size_t size)
{
    time_t secs = (time_t)(wall_ms / 1000);
    struct tm tm;

    gmtime_r(&secs, &tm);
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(wall_ms % 1000));
}

bool sf_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;

    while (i < len) {
        unsigned char c = s[i];
        size_t extra;
        uint32_t cp;

        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            extra = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            extra = 2;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            extra = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + extra >= len)
            return false;
        for (size_t k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        /* Reject overlong forms, surrogates and values past U+10FFFF. */
        if ((extra == 1 && cp < 0x80) || (extra == 2 && cp < 0x800) ||
            (extra == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += extra + 1;
    }
    return true;
}

int sf_read_file(const char *path, size_t max, char **out, size_t *len)
{
    FILE *f = NULL;
    sf_buf b;
    char chunk[8192];
    size_t n;
    int rc = -1;

    sf_buf_init(&b, max);
    f = fopen(path, "rb");
    if (f == NULL)
        goto out;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (sf_buf_append(&b, chunk, n) < 0) {
            errno = EFBIG;
            goto out;
        }
    }
    if (ferror(f)) {
        errno = EIO;
        goto out;
    }
    if (b.data == NULL && sf_buf_append(&b, "", 0) < 0)
        goto out;
    *out = sf_buf_detach(&b, len);
    rc = 0;
out:
    if (f)
        fclose(f);
    sf_buf_release(&b);
    return rc;
}

void sf_buf_init(sf_buf *b, size_t limit)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->limit = limit;
}

int sf_buf_append(sf_buf *b, const void *data, size_t len)
{
    size_t need;

    if (len > b->limit || b->len > b->limit - len)
        return -1;
    need = b->len + len + 1;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *p;

        while (cap < need)
            cap *= 2;
        p = realloc(b->data, cap);
        if (p == NULL)
            return -1;
        b->data = p;
        b->cap = cap;
    }
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int sf_buf_appendc(sf_buf *b, char c)
{
    return sf_buf_append(b, &c, 1);
}

int sf_buf_appendf(sf_buf *b, const char *fmt, ...)
{
    va_list ap;
    char small[256];
    char *big;
    int n, rc;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n < sizeof(small))
        return sf_buf_append(b, small, (size_t)n);
    big = malloc((size_t)n + 1);
    if (big == NULL)
        return -1;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    rc = sf_buf_append(b, big, (size_t)n);
    free(big);
    return rc;
}

void sf_buf_reset(sf_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

char *sf_buf_detach(sf_buf *b, size_t *len)
{
    char *d = b->data;

    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return d;
}

void sf_buf_release(sf_buf *b)
{
    free(b->data);
    sf_buf_init(b, b->limit);
}
