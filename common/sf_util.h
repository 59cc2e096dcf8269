/*
 * sf_util.h - small checked helpers every module uses, and the list of C
 * library functions the project bans (see ../shared/STYLE.md, practice 7).
 *
 * Include this header last in a .c file: it poisons the banned names so a
 * later use is a compile error.
 */
#ifndef SF_UTIL_H
#define SF_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SF_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Parse a whole string as a base-10 integer within [min, max].
 * Returns 0 and sets *out, or -1 (empty, junk, overflow, out of range). */
int sf_str_to_i64(const char *s, int64_t min, int64_t max, int64_t *out);

/* Parse a duration: "250ms", "30s", "5m", "2h", "7d" or a bare number of
 * seconds. Returns 0 and sets *out_ms, or -1. */
int sf_parse_duration_ms(const char *s, int64_t *out_ms);

/* snprintf that reports truncation: returns 0 when everything fit, -1 when
 * the output was truncated or formatting failed (dst is still terminated). */
int sf_snprintf(char *dst, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* strdup that returns NULL for NULL. Caller frees. */
char *sf_strdup(const char *s);
/* printf into a fresh heap string. Caller frees; NULL on allocation failure. */
char *sf_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Overwrite memory in a way the compiler may not elide (secrets). */
void sf_memzero(void *p, size_t n);

/* Milliseconds from a monotonic clock (for deadlines and durations). */
int64_t sf_now_mono_ms(void);
/* Milliseconds since the Unix epoch (for timestamps). */
int64_t sf_now_wall_ms(void);
/* Format a UTC time as RFC 3339 with milliseconds ("2026-11-26T23:02:10.123Z").
 * buf must hold at least 32 bytes. */
void sf_format_rfc3339(int64_t wall_ms, char *buf, size_t size);

/* True when s is valid UTF-8 of exactly len bytes with no NUL. */
bool sf_utf8_valid(const char *s, size_t len);

/* Read a whole file into a NUL-terminated heap buffer of at most max bytes.
 * Returns 0 and sets *out (caller frees) and *len, or -1 with errno set
 * (EFBIG when the file is larger than max). */
int sf_read_file(const char *path, size_t max, char **out, size_t *len);

/*
 * sf_buf: a growable byte buffer with a hard limit. Appending past the limit
 * fails with -1 and leaves the buffer unchanged (curl's DYNBUF "toobig").
 * The data is always NUL-terminated (the terminator is not counted in len).
 */
typedef struct sf_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t limit;
} sf_buf;

void sf_buf_init(sf_buf *b, size_t limit);
int sf_buf_append(sf_buf *b, const void *data, size_t len);
int sf_buf_appendf(sf_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int sf_buf_appendc(sf_buf *b, char c);
void sf_buf_reset(sf_buf *b);
/* Hand the data to the caller (who frees it) and reinitialise the buffer. */
char *sf_buf_detach(sf_buf *b, size_t *len);
void sf_buf_release(sf_buf *b);

/* Banned: unbounded or unchecked functions. Use the helpers above. */
#ifndef SF_UTIL_ALLOW_BANNED
#undef strcpy
#define strcpy(a, b) sf_banned_function_strcpy_use_snprintf
#undef strcat
#define strcat(a, b) sf_banned_function_strcat_use_sf_buf
#undef sprintf
#define sprintf(...) sf_banned_function_sprintf_use_snprintf
#undef vsprintf
#define vsprintf(...) sf_banned_function_vsprintf_use_vsnprintf
#undef strtok
#define strtok(a, b) sf_banned_function_strtok_use_strtok_r
#undef atoi
#define atoi(a) sf_banned_function_atoi_use_sf_str_to_i64
#undef atol
#define atol(a) sf_banned_function_atol_use_sf_str_to_i64
#undef gmtime
#define gmtime(a) sf_banned_function_gmtime_use_gmtime_r
#undef localtime
#define localtime(a) sf_banned_function_localtime_use_localtime_r
#endif

#endif
