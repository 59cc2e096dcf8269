/*
 * sf_metrics.h - process-wide metrics registry rendered in the Prometheus
 * text exposition format (version 0.0.4), served by sf_http on /metrics.
 *
 * The registry is the one global the project allows: metrics are written
 * from every layer (SCM client, Kafka, DB, handlers) and read by one HTTP
 * thread, and threading a registry handle through every call would add a
 * parameter to every function for no isolation gain (a process has exactly
 * one /metrics). All functions are thread-safe (one mutex).
 *
 * Names: [a-zA-Z_:][a-zA-Z0-9_:]*, at most 128 bytes, e.g.
 * "scmflow_scm_requests_total". A series is (name, labels). Labels are given
 * pre-formatted in Prometheus syntax without braces, e.g.
 *   "endpoint=\"enroll\",outcome=\"ok\""      or NULL / "" for none.
 * Use sf_metrics_label_escape() on label values that come from outside.
 * Limits: at most SF_METRICS_MAX_SERIES series in all (further new series
 * are dropped silently and counted in scmflow_metrics_dropped_total);
 * labels at most 512 bytes.
 *
 * Recording functions never fail visibly (metrics must not break the work):
 * bad names or limits reached are ignored. A name's type is fixed by the
 * first use (or by sf_metrics_describe); a later use with another type is
 * ignored.
 */
#ifndef SF_METRICS_H
#define SF_METRICS_H

#include <stddef.h>

#include "sf_error.h"
#include "sf_util.h"

#define SF_METRICS_MAX_SERIES 4096

/* Declare a metric's type ("counter", "gauge" or "histogram") and help text
 * (copied). Optional; a described metric with no series yet still renders
 * its # HELP / # TYPE lines. Describing again updates the help text. */
void sf_metrics_describe(const char *name, const char *type, const char *help);

/* Add v (>= 0; negative is ignored) to a counter. Counters should end in
 * "_total". */
void sf_metrics_counter_add(const char *name, const char *labels, double v);

/* Set a gauge. */
void sf_metrics_gauge_set(const char *name, const char *labels, double v);
/* Add v (may be negative) to a gauge. */
void sf_metrics_gauge_add(const char *name, const char *labels, double v);

/* Record one observation in a histogram (in seconds, the Prometheus base
 * unit). Default buckets: 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10 30 60
 * and +Inf. Histogram names should end in "_seconds". */
void sf_metrics_observe(const char *name, const char *labels, double seconds);

/* Render every metric (sorted by name, series in creation order) into out
 * (appended). Returns 0, or -1 when out's limit was reached (out then holds
 * a truncated rendering). */
int sf_metrics_render(sf_buf *out);

/* Escape a label value for use inside "..." (backslash, double quote and
 * newline escaped). Writes at most size bytes including the NUL; returns 0,
 * or -1 if truncated (dst still terminated). */
int sf_metrics_label_escape(const char *value, char *dst, size_t size);

/* Forget every metric (tests only). */
void sf_metrics_reset(void);

#endif
