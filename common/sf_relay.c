/*
 * sf_relay.c - outbox relay: DB rows -> idempotent producer -> mark sent.
 */
#include "sf_relay.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "sf_db.h"
#include "sf_kafka.h"
#include "sf_log.h"
#include "sf_worker.h"
#include "sf_util.h"

struct sf_relay {
    sf_db *db;
    sf_kafka_producer *p;
    int batch;
    int timeout_ms;
    uint64_t sent_total;
    uint64_t failed_total;
    const sf_kafka_opts *kafka;
    bool need_scan; /* rows may have been published without the mark */
};

/* Ids found in the topic tails during a recovery scan. */
typedef struct id_set {
    int64_t *ids;
    size_t n, cap;
    bool oom;
} id_set;

/* Delivery state of one row during a run. */
typedef struct row_state {
    bool done;
    bool ok;
} row_state;

sf_relay *sf_relay_new(sf_db *db, sf_kafka_producer *p, const sf_relay_opts *opts, sf_error *err)
{
    sf_relay *r = calloc(1, sizeof(*r));

    if (!r) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        return NULL;
    }
    r->db = db;
    r->p = p;
    r->batch = opts && opts->batch > 0 ? opts->batch : 500;
    r->timeout_ms = opts && opts->timeout_ms > 0 ? opts->timeout_ms : 10000;
    r->kafka = opts ? opts->kafka : NULL;
    r->need_scan = r->kafka != NULL;
    return r;
}

void sf_relay_free(sf_relay *r)
{
    free(r);
}

uint64_t sf_relay_sent_total(const sf_relay *r)
{
    return r ? r->sent_total : 0;
}

uint64_t sf_relay_failed_total(const sf_relay *r)
{
    return r ? r->failed_total : 0;
}

static void row_dr(void *opaque, const sf_error *e)
{
    row_state *st = opaque;

    st->done = true;
    st->ok = e == NULL;
    if (e)
        sf_log_debug("relay: delivery failed: %s", e->msg);
}

static void collect_id(void *ud, const void *v, size_t len)
{
    id_set *s = ud;
    char buf[32];
    int64_t id;

    if (len == 0 || len >= sizeof(buf))
        return;
    memcpy(buf, v, len);
    buf[len] = '\0';
    if (sf_str_to_i64(buf, 1, INT64_MAX, &id) < 0)
        return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        int64_t *nids = realloc(s->ids, cap * sizeof(*nids));

        if (!nids) {
            s->oom = true;
            return;
        }
        s->ids = nids;
        s->cap = cap;
    }
    s->ids[s->n++] = id;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

/* Recovery scan: mark rows already present in their topic as done. */
static int recover_rows(sf_relay *r, const sf_outbox_row *rows, size_t n, row_state *st, sf_error *err)
{
    id_set set = {NULL, 0, 0, false};
    int rc = -1;
    size_t found = 0;

    for (size_t i = 0; i < n; i++) {
        bool seen = false;

        for (size_t j = 0; j < i; j++)
            if (strcmp(rows[j].topic, rows[i].topic) == 0)
                seen = true;
        if (seen)
            continue;
        if (sf_kafka_scan_tail(r->kafka, rows[i].topic, 2 * r->batch, SF_RELAY_HDR_OUTBOX_ID, collect_id, &set,
                               15000, err) < 0)
            goto out;
    }
    if (set.oom) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    if (set.n > 0)
        qsort(set.ids, set.n, sizeof(*set.ids), cmp_i64);
    for (size_t i = 0; i < n; i++) {
        if (set.n > 0 && bsearch(&rows[i].id, set.ids, set.n, sizeof(*set.ids), cmp_i64)) {
            st[i].done = true;
            st[i].ok = true;
            found++;
        }
    }
    if (found > 0)
        sf_log_info("relay: %zu outbox row(s) were already published before a crash; marking them sent", found);
    rc = 0;
out:
    free(set.ids);
    return rc;
}

int sf_relay_run_once(sf_relay *r, int *sent, sf_error *err)
{
    sf_outbox_row *rows = NULL;
    size_t n = 0, queued = 0, nok = 0;
    row_state *st = NULL;
    int64_t *ids = NULL;
    int rc = -1;
    bool in_tx = false;
    int64_t deadline;

    if (sf_db_begin(r->db, err) < 0) {
        /* nothing of ours is open here: end whatever a failure path left
         * (the next pass starts clean) */
        (void)sf_db_rollback(r->db, NULL);
        goto out;
    }
    in_tx = true;
    /* Takes the single-relay lock for this transaction; 0 rows when another
     * replica's relay holds it. */
    if (sf_db_outbox_fetch(r->db, r->batch, &rows, &n, err) < 0)
        goto out;
    if (n == 0) {
        rc = 0;
        goto out;
    }
    st = calloc(n, sizeof(*st));
    ids = calloc(n, sizeof(*ids));
    if (!st || !ids) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    if (r->need_scan) {
        if (recover_rows(r, rows, n, st, err) < 0)
            goto out;
        r->need_scan = false;
    }
    /* Rows come oldest first; the idempotent producer keeps their order per
     * partition, so one key's events stay in order. */
    for (size_t i = 0; i < n; i++) {
        char idbuf[24];
        sf_kafka_header h;

        if (st[i].done) {
            queued = i + 1;
            continue;
        }
        (void)sf_snprintf(idbuf, sizeof(idbuf), "%lld", (long long)rows[i].id);
        h.name = SF_RELAY_HDR_OUTBOX_ID;
        h.value = idbuf;
        h.len = strlen(idbuf);
        /* From here until the mark commits, a failure may leave published
         * rows unmarked: scan before the next publication. */
        r->need_scan = r->kafka != NULL;
        if (sf_kafka_produce(r->p, rows[i].topic, rows[i].key, rows[i].payload, rows[i].len, &h, 1, row_dr,
                             &st[i], err) < 0) {
            if (err && err->cls == SF_ERR_INVALID) {
                /* Never deliverable (too large): leave it unsent, and say so. */
                sf_log_info("relay: outbox row %lld cannot be produced: %s", (long long)rows[i].id,
                            err->msg);
                st[i].done = true;
                continue;
            }
            break; /* later rows wait for the next run, keeping order */
        }
        queued = i + 1;
    }
    deadline = sf_now_mono_ms() + r->timeout_ms;
    for (;;) {
        bool all = true;

        for (size_t i = 0; i < queued; i++)
            if (!st[i].done) {
                all = false;
                break;
            }
        if (all)
            break;
        if (sf_now_mono_ms() >= deadline) {
            /* The reports still reference st: wait them out with flush. */
            sf_kafka_flush(r->p, 30000, NULL);
            break;
        }
        sf_kafka_producer_poll(r->p, 10);
    }
    sf_failpoint("relay.after_produce_before_mark");
    for (size_t i = 0; i < queued; i++) {
        if (st[i].done && st[i].ok)
            ids[nok++] = rows[i].id;
        else
            r->failed_total++;
    }
    if (nok > 0 && sf_db_outbox_mark_sent(r->db, ids, nok, err) < 0)
        goto out;
    if (sf_db_commit(r->db, err) < 0) {
        in_tx = false;
        goto out;
    }
    in_tx = false;
    r->need_scan = false;
    r->sent_total += nok;
    if (sent)
        *sent = (int)nok;
    rc = n >= (size_t)r->batch && nok == n ? 1 : 0;
out:
    if (in_tx)
        sf_db_rollback(r->db, NULL);
    if (rc < 0 && sent)
        *sent = 0;
    else if (rc == 0 && n == 0 && sent)
        *sent = 0;
    /* Every queued row's report must have arrived before st is freed. */
    if (st) {
        for (size_t i = 0; i < queued; i++)
            if (!st[i].done) {
                sf_kafka_flush(r->p, 60000, NULL);
                break;
            }
    }
    free(st);
    free(ids);
    sf_db_outbox_rows_free(rows, n);
    return rc;
}
