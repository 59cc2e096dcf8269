#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sf_error.h"
#include "sf_util.h"

void sf_error_clear(sf_error *e)
{
    if (e)
        memset(e, 0, sizeof(*e));
}

static void set_msg(sf_error *e, const char *fmt, va_list ap)
{
    int n = vsnprintf(e->msg, sizeof(e->msg), fmt, ap);

    /* Mark truncation visibly instead of cutting silently. */
    if (n >= (int)sizeof(e->msg))
        memcpy(e->msg + sizeof(e->msg) - 4, "...", 4);
}

int sf_error_set(sf_error *e, sf_err_class cls, int code, const char *fmt, ...)
{
    va_list ap;

    if (e == NULL)
        return -1;
    e->cls = cls;
    e->code = code;
    e->field[0] = '\0';
    va_start(ap, fmt);
    set_msg(e, fmt, ap);
    va_end(ap);
    return -1;
}

int sf_error_field(sf_error *e, const char *field, const char *fmt, ...)
{
    va_list ap;

    if (e == NULL)
        return -1;
    e->cls = SF_ERR_INVALID;
    e->code = 0;
    snprintf(e->field, sizeof(e->field), "%s", field ? field : "");
    va_start(ap, fmt);
    set_msg(e, fmt, ap);
    va_end(ap);
    return -1;
}

bool sf_error_is_retriable(const sf_error *e)
{
    return e && (e->cls == SF_ERR_TRANSIENT || e->cls == SF_ERR_PENDING);
}

const char *sf_err_class_name(sf_err_class cls)
{
    switch (cls) {
    case SF_ERR_NONE: return "none";
    case SF_ERR_INVALID: return "invalid";
    case SF_ERR_TRANSIENT: return "transient";
    case SF_ERR_REJECTED: return "rejected";
    case SF_ERR_AUTH: return "auth";
    case SF_ERR_NOT_FOUND: return "not_found";
    case SF_ERR_PENDING: return "pending";
    case SF_ERR_UNKNOWN: return "unknown";
    case SF_ERR_FATAL: return "fatal";
    case SF_ERR_INTERNAL: return "internal";
    }
    return "unknown";
}
