/*
 * sp_poll.c - the poll task of status-poller (see sp.h).
 *
 * One round: claim up to SCMFLOW_STATUS_BATCH due orders with FOR UPDATE
 * SKIP LOCKED and a lease (committed at once, so other replicas skip them),
 * ask SCM for the details of every order through sf_scm_batch (many in
 * flight, within the account's rate limit), collect the certificates SCM
 * says are issued, then record every outcome in ONE transaction with its
 * history rows and events (outbox). Every UPDATE is guarded by
 * lease_owner = me: if our lease expired and another replica took the order
 * meanwhile, our stale result is dropped instead of overwriting theirs.
 * A crash anywhere leaves the orders leased; they come back when the lease
 * expires (no SCM call of the poller has side effects, so a re-check is
 * harmless).
 */
#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "sp.h"
#include "sf_db.h"
#include "sf_log.h"
#include "sf_metrics.h"
#include "sf_msg.h"
#include "sf_scm.h"
#include "sf_worker.h"
#include "sf_util.h"

/* What recording one check does to its order (NULL strings keep the column). */
typedef struct upd {
    const char *state;
    bool has_next;
    int64_t next_ms;
    int step;
    char *last_error;          /* owned */
    bool attention;
    const char *attention_reason;
} upd;

struct sround;

typedef struct item {
    struct sround *rd;         /* its round while streamed (pipelined mode) */
    /* claimed */
    char *id, *account, *state, *old_status, *cmd_id, *last_error_code;
    int64_t ssl_id;
    int step;
    bool requested;
    /* details */
    int rc;
    sf_error err;
    char *status;         /* SCM status on success */
    char *details_json;   /* small summary kept in orders.scm_details */
    /* collect */
    bool want_collect;
    int crc;
    sf_error cerr;
    char *chain;
    size_t chain_len;
    /* the plan of the record step */
    upd u;
    bool hist;
    char hist_reason[96];
    bool revoke_certs;
    cJSON *events;             /* [{topic, type, data}] in order */
    bool updated;              /* the lease was still ours */
} item;

static void item_release(item *it)
{
    free(it->id);
    free(it->account);
    free(it->state);
    free(it->old_status);
    free(it->cmd_id);
    free(it->last_error_code);
    free(it->status);
    free(it->details_json);
    free(it->chain);
    free(it->u.last_error);
    cJSON_Delete(it->events);
    memset(it, 0, sizeof(*it));
}

static bool is_final_failure(const char *s)
{
    return strcmp(s, "Declined") == 0 || strcmp(s, "Rejected") == 0 || strcmp(s, "Invalid") == 0;
}

/* ---- batch callbacks ---- */

static char *details_summary(const sf_scm_cert *c)
{
    cJSON *o = cJSON_CreateObject();
    char *s = NULL;

    if (o == NULL)
        return NULL;
    cJSON_AddStringToObject(o, "status", c->status);
    if (c->serial_number)
        cJSON_AddStringToObject(o, "serialNumber", c->serial_number);
    if (c->issued)
        cJSON_AddStringToObject(o, "issued", c->issued);
    if (c->expires)
        cJSON_AddStringToObject(o, "expires", c->expires);
    if (c->revoked)
        cJSON_AddStringToObject(o, "revoked", c->revoked);
    if (c->declined)
        cJSON_AddStringToObject(o, "declined", c->declined);
    if (c->common_name)
        cJSON_AddStringToObject(o, "commonName", c->common_name);
    s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static void on_details(sf_scm_result *res, void *ud)
{
    item *it = ud;

    it->rc = res->rc;
    if (res->rc < 0) {
        it->err = res->err;
        return;
    }
    if (res->cert == NULL || res->cert->status == NULL || res->cert->status[0] == '\0' ||
        strlen(res->cert->status) > 64) {
        it->rc = -1;
        sf_error_field(&it->err, "status", "SCM details of sslId %lld carry no usable status",
                       (long long)it->ssl_id);
        return;
    }
    it->status = sf_strdup(res->cert->status);
    it->details_json = details_summary(res->cert);
    if (it->status == NULL) {
        it->rc = -1;
        sf_error_set(&it->err, SF_ERR_INTERNAL, 0, "out of memory");
    }
}

static void on_collect(sf_scm_result *res, void *ud)
{
    item *it = ud;

    it->crc = res->rc;
    if (res->rc < 0) {
        it->cerr = res->err;
        return;
    }
    it->chain = res->body;
    it->chain_len = res->body_len;
    res->body = NULL;
}

/* Collect only what this check moves from "submitted" to issued. */
static bool wants_collect(const item *it)
{
    return it->rc == 0 && strcmp(it->status, "Issued") == 0 && strcmp(it->state, "submitted") == 0;
}

/* ---- claim ---- */

static int claim(sp_runner *r, sf_db *db, item **out, size_t *n, sf_error *err)
{
    /* Orders whose check was asked for (scmctl order check ID) come first:
     * in a daily cycle of 100,000 due orders they would otherwise wait for
     * the whole cycle (orders_check_requested keeps that scan small). The
     * ids come as an array, not a joined subquery: for a join of 2,000 ids
     * the planner hashes them and scans the whole table (131 ms a round at
     * 100,000 open orders, the largest database cost of a check). */
    static const char sql[] =
        "WITH req AS (SELECT id FROM orders WHERE check_requested AND next_check_at <= now()"
        "       AND ssl_id IS NOT NULL AND (lease_until IS NULL OR lease_until < now())"
        "       ORDER BY next_check_at LIMIT $3::int FOR UPDATE SKIP LOCKED),"
        " due AS (SELECT id FROM orders WHERE next_check_at <= now() AND NOT check_requested"
        "       AND ssl_id IS NOT NULL AND (lease_until IS NULL OR lease_until < now())"
        "       ORDER BY next_check_at LIMIT (SELECT $3::int - count(*) FROM req)"
        "       FOR UPDATE SKIP LOCKED)"
        " UPDATE orders o SET lease_owner = $1,"
        " lease_until = now() + $2::bigint * interval '1 millisecond'"
        " WHERE o.id = ANY(ARRAY(SELECT id FROM req UNION ALL SELECT id FROM due))"
        " RETURNING o.id, o.account, o.ssl_id, o.state, o.scm_status, o.check_step,"
        " o.check_requested, o.check_command_id, o.last_error->>'code'";
    char lease[32], lim[32];
    PGresult *res = NULL;
    item *items = NULL;
    int rows, rc = -1;

    (void)sf_snprintf(lease, sizeof(lease), "%lld",
                      (long long)sp_setting_ms(r, "SCMFLOW_STATUS_LEASE"));
    (void)sf_snprintf(lim, sizeof(lim), "%lld", (long long)sp_setting_int(r, "SCMFLOW_STATUS_BATCH"));
    {
        const char *p[3] = {sf_worker_instance_id(sp_worker(r)), lease, lim};

        if (sf_db_exec(db, sql, 3, p, &res, err) < 0)
            return -1;
    }
    rows = PQntuples(res);
    if (rows == 0) {
        *out = NULL;
        *n = 0;
        rc = 0;
        goto out;
    }
    if ((items = calloc((size_t)rows, sizeof(*items))) == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    for (int i = 0; i < rows; i++) {
        item *it = &items[i];
        const char *s;
        int32_t step;
        bool b;

        if (sf_db_get_i64(res, i, 2, &it->ssl_id, err) < 0 ||
            sf_db_get_i32(res, i, 5, &step, err) < 0 || sf_db_get_bool(res, i, 6, &b, err) < 0)
            goto out;
        it->step = step;
        it->requested = b;
        it->id = sf_strdup(PQgetvalue(res, i, 0));
        it->account = sf_strdup(PQgetvalue(res, i, 1));
        it->state = sf_strdup(PQgetvalue(res, i, 3));
        (void)sf_db_get_str_opt(res, i, 4, &s, NULL);
        it->old_status = s ? sf_strdup(s) : NULL;
        if (!sf_db_is_null(res, i, 7))
            it->cmd_id = sf_strdup(PQgetvalue(res, i, 7));
        if (!sf_db_is_null(res, i, 8))
            it->last_error_code = sf_strdup(PQgetvalue(res, i, 8));
        if (it->id == NULL || it->account == NULL || it->state == NULL) {
            sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
            goto out;
        }
    }
    *out = items;
    *n = (size_t)rows;
    items = NULL;
    rc = 0;
out:
    if (items) {
        for (int i = 0; i < rows; i++)
            item_release(&items[i]);
        free(items);
    }
    PQclear(res);
    return rc;
}

/* ---- SCM ---- */

static int cmp_account(const void *a, const void *b)
{
    return strcmp(((const item *)a)->account, ((const item *)b)->account);
}

/* Run details (and collect where issued) for items[0..n) of one account.
 * Per-item outcomes land in the items; -1 only for a whole-group failure
 * (no client), which is recorded in every item. */
static void run_group(sp_runner *r, item *items, size_t n)
{
    sf_error e = {0};
    sf_scm_client *c = sp_scm_for_account(r, items[0].account, &e);
    sf_scm_batch *b = NULL;
    const char *fmt = sp_setting_str(r, "SCMFLOW_STATUS_COLLECT_FORMAT");
    int64_t deadline = sf_now_mono_ms() + sp_setting_ms(r, "SCMFLOW_STATUS_LEASE") / 2;
    size_t ncollect = 0;

    if (c == NULL || (b = sf_scm_batch_new(c, (int)sp_setting_int(r, "SCMFLOW_STATUS_INFLIGHT"),
                                           &e)) == NULL)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        if (sf_scm_batch_add_details(b, items[i].ssl_id, on_details, &items[i], &e) < 0)
            goto fail;
    }
    (void)sf_scm_batch_run(b, deadline, NULL);
    for (size_t i = 0; i < n; i++) {
        item *it = &items[i];

        if (wants_collect(it)) {
            it->want_collect = true;
            if (sf_scm_batch_add_collect(b, it->ssl_id, fmt, on_collect, it, &it->cerr) < 0) {
                it->crc = -1;
                continue;
            }
            ncollect++;
        }
    }
    if (ncollect)
        (void)sf_scm_batch_run(b, deadline, NULL);
    sf_scm_batch_free(b);
    for (size_t i = 0; i < n; i++)
        if (items[i].rc < 0 && items[i].err.cls == SF_ERR_AUTH) {
            sp_scm_drop(r, items[i].account);
            break;
        }
    return;
fail:
    sf_scm_batch_free(b);
    if (e.cls == SF_ERR_AUTH)
        sp_scm_drop(r, items[0].account);
    for (size_t i = 0; i < n; i++) {
        if (items[i].status == NULL && items[i].rc == 0) {
            items[i].rc = -1;
            items[i].err = e;
        }
    }
}

/* Check a claimed round with SCM: one batch per account. */
static void check_round(sp_runner *r, item *items, size_t n)
{
    qsort(items, n, sizeof(*items), cmp_account);
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;

        while (j < n && strcmp(items[j].account, items[i].account) == 0)
            j++;
        run_group(r, &items[i], j - i);
        i = j;
    }
}

/* ---- record ----
 *
 * Recording is planned per order in memory (plan_one: no I/O), then applied
 * for the whole round with a handful of statements: one UPDATE of every
 * order (jsonb_to_recordset; guarded by lease_owner = me), one INSERT of the
 * history rows, one INSERT of the outbox rows. One statement per order would
 * cost a round trip each and cap a replica at a few hundred checks per
 * second whatever SCM's latency. If the round's transaction fails, each
 * order is recorded in its own transaction so one bad row cannot hold back
 * the others. */

static cJSON *ev_base(const item *it)
{
    cJSON *d = cJSON_CreateObject();

    if (d) {
        cJSON_AddStringToObject(d, "order_id", it->id);
        if (it->ssl_id > 0)
            cJSON_AddNumberToObject(d, "ssl_id", (double)it->ssl_id);
    }
    return d;
}

/* Queue an event (data is taken over). -1 on out of memory. */
static int plan_event(item *it, const char *topic, const char *type, cJSON *d)
{
    cJSON *e;

    if (d == NULL)
        return -1;
    if ((it->events == NULL && (it->events = cJSON_CreateArray()) == NULL) ||
        (e = cJSON_CreateObject()) == NULL) {
        cJSON_Delete(d);
        return -1;
    }
    cJSON_AddStringToObject(e, "topic", topic);
    cJSON_AddStringToObject(e, "type", type);
    cJSON_AddItemToObject(e, "data", d);
    cJSON_AddItemToArray(it->events, e);
    return 0;
}

static char *error_json(const char *code, const sf_error *e)
{
    cJSON *o = cJSON_CreateObject();
    char *s;

    if (o == NULL)
        return NULL;
    cJSON_AddStringToObject(o, "code", code);
    cJSON_AddStringToObject(o, "message", e->msg[0] ? e->msg : sf_err_class_name(e->cls));
    if (e->code)
        cJSON_AddNumberToObject(o, "scm_code", e->code);
    s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* The collected chain as text that validates ("-----BEGIN"): every format
 * the setting allows is PEM text; anything else is refused here. */
static cJSON *collected_data(const item *it, const char *fmt)
{
    cJSON *d;
    char now[40];

    if (it->chain_len == 0 || !sf_utf8_valid(it->chain, it->chain_len) ||
        strstr(it->chain, "-----BEGIN ") == NULL || (d = cJSON_CreateObject()) == NULL)
        return NULL;
    sf_format_rfc3339(sf_now_wall_ms(), now, sizeof(now));
    cJSON_AddStringToObject(d, "order_id", it->id);
    cJSON_AddNumberToObject(d, "ssl_id", (double)it->ssl_id);
    cJSON_AddStringToObject(d, "format", fmt);
    cJSON_AddStringToObject(d, "chain_pem", it->chain);
    cJSON_AddStringToObject(d, "collected_at", now);
    return d;
}

static void metric(const char *name, const char *outcome)
{
    char lbl[96];

    (void)sf_snprintf(lbl, sizeof(lbl), "outcome=\"%s\"", outcome);
    sf_metrics_counter_add(name, lbl, 1);
}

static void lower_code(const char *prefix, const char *s, char *buf, size_t size)
{
    size_t k = 0, pl = strlen(prefix);

    for (size_t i = 0; i < pl && k + 1 < size; i++)
        buf[k++] = prefix[i];
    for (size_t i = 0; s[i] && k + 1 < size; i++) {
        unsigned char ch = (unsigned char)s[i];
        buf[k++] = isalnum(ch) ? (char)tolower(ch) : '_';
    }
    buf[k] = '\0';
}

/* Decide what recording this check does (no I/O). -1 on out of memory. */
static int plan_one(sp_runner *r, item *it)
{
    const char *fmt = sp_setting_str(r, "SCMFLOW_STATUS_COLLECT_FORMAT");
    const char *ev = sp_events_topic(r);
    int64_t attention_after = sp_setting_int(r, "SCMFLOW_STATUS_ATTENTION_AFTER");
    int64_t daily = sp_setting_ms(r, "SCMFLOW_STATUS_POLL_INTERVAL");
    bool open = strcmp(it->state, "submitted") == 0;
    upd *u = &it->u;
    bool changed;
    char code[96];

    if (it->rc < 0) {
        /* The check failed: again later, on the ladder (at least what SCM
         * asked for with Retry-After). */
        bool nf = it->err.cls == SF_ERR_NOT_FOUND;

        metric("scmflow_status_checks_total", sf_err_class_name(it->err.cls));
        u->step = it->step + 1;
        u->has_next = !(nf && !open);
        u->next_ms = nf ? daily : sp_ladder_ms(r, it->step);
        if (it->err.retry_after_ms > u->next_ms)
            u->next_ms = it->err.retry_after_ms;
        if ((u->last_error = error_json(nf ? "scm_not_found" : "status_check_failed", &it->err)) == NULL)
            return -1;
        if (nf || u->step >= attention_after) {
            u->attention = true;
            u->attention_reason = nf ? "SCM does not know this sslId"
                                     : "status checks keep failing (see last_error)";
        }
        if (it->requested) {
            cJSON *d = ev_base(it), *e = cJSON_CreateObject();

            if (d == NULL || e == NULL) {
                cJSON_Delete(d);
                cJSON_Delete(e);
                return -1;
            }
            cJSON_AddStringToObject(d, "action", "check_status");
            cJSON_AddItemToObject(d, "error", e);
            cJSON_AddStringToObject(e, "code", nf ? "scm_not_found" : "status_check_failed");
            cJSON_AddStringToObject(e, "message", it->err.msg[0] ? it->err.msg : "status check failed");
            if (it->err.code)
                cJSON_AddNumberToObject(e, "scm_code", it->err.code);
            if (plan_event(it, ev, SF_EV_ORDER_FAILED, d) < 0)
                return -1;
        }
        return 0;
    }

    metric("scmflow_status_checks_total", it->status);
    changed = it->old_status == NULL || strcmp(it->old_status, it->status) != 0;
    u->step = it->step;
    if (is_final_failure(it->status) && strcmp(it->state, "failed") != 0 &&
        strcmp(it->state, "revoked") != 0) {
        u->state = "failed";
    } else if (strcmp(it->status, "Revoked") == 0 && strcmp(it->state, "revoked") != 0) {
        u->state = "revoked";
        it->revoke_certs = true;
    } else if (it->want_collect) {
        cJSON *cd = it->crc == 0 && it->chain ? collected_data(it, fmt) : NULL;

        if (cd) {
            u->state = "issued";
            u->step = 0;
            metric("scmflow_status_collects_total", "ok");
            if (plan_event(it, sp_collected_topic(r), SF_MSG_CERT_COLLECTED, cd) < 0)
                return -1;
        } else {
            /* Issued but not downloadable yet (PENDING), or the collect
             * failed: keep the order open and retry on the ladder. */
            bool pending = it->crc < 0 && it->cerr.cls == SF_ERR_PENDING;

            if (it->crc == 0) /* a body that is no PEM text */
                sf_error_field(&it->cerr, "chain", "collect of sslId %lld returned no PEM text",
                               (long long)it->ssl_id);
            metric("scmflow_status_collects_total",
                   pending ? "pending" : sf_err_class_name(it->cerr.cls));
            u->has_next = true;
            u->next_ms = sp_ladder_ms(r, it->step);
            if (it->cerr.retry_after_ms > u->next_ms)
                u->next_ms = it->cerr.retry_after_ms;
            u->step = it->step + 1;
            if (!pending) {
                if ((u->last_error = error_json("collect_failed", &it->cerr)) == NULL)
                    return -1;
                if (u->step >= attention_after || it->cerr.cls == SF_ERR_REJECTED ||
                    it->cerr.cls == SF_ERR_INVALID) {
                    u->attention = true;
                    u->attention_reason = "the issued certificate cannot be collected (see last_error)";
                }
            }
        }
    } else if (open && strcmp(it->status, "Expired") != 0) {
        /* Still in progress at SCM: next rung of the ladder. */
        u->has_next = true;
        u->next_ms = sp_ladder_ms(r, it->step);
        u->step = it->step + 1;
    }
    /* else: a closed order checked on demand, or Expired: no next check */

    if (changed || u->state) {
        it->hist = true;
        (void)sf_snprintf(it->hist_reason, sizeof(it->hist_reason), "status check: %s", it->status);
    }
    if (changed || it->requested) {
        /* A requested check is answered even when nothing changed. */
        cJSON *d = ev_base(it);

        if (d) {
            if (it->old_status)
                cJSON_AddStringToObject(d, "old_status", it->old_status);
            cJSON_AddStringToObject(d, "status", it->status);
        }
        /* the status change goes before the collected message's events */
        if (plan_event(it, ev, SF_EV_ORDER_STATUS_CHANGED, d) < 0)
            return -1;
        if (cJSON_GetArraySize(it->events) > 1) {
            cJSON *last = cJSON_DetachItemFromArray(it->events, cJSON_GetArraySize(it->events) - 1);

            cJSON_InsertItemInArray(it->events, 0, last);
        }
    }
    if (u->state && strcmp(u->state, "failed") == 0) {
        cJSON *d = ev_base(it), *e = cJSON_CreateObject();

        if (d == NULL || e == NULL) {
            cJSON_Delete(d);
            cJSON_Delete(e);
            return -1;
        }
        lower_code("scm_", it->status, code, sizeof(code));
        cJSON_AddStringToObject(d, "action", "check_status");
        cJSON_AddStringToObject(d, "status", it->status);
        cJSON_AddItemToObject(d, "error", e);
        cJSON_AddStringToObject(e, "code", code);
        cJSON_AddStringToObject(e, "message", it->status);
        if (plan_event(it, ev, SF_EV_ORDER_FAILED, d) < 0)
            return -1;
    } else if (u->state && strcmp(u->state, "revoked") == 0) {
        if (plan_event(it, ev, SF_EV_ORDER_REVOKED, ev_base(it)) < 0)
            return -1;
    }
    return 0;
}

/* A round's events by topic (a round has two topics at most: events and
 * collected), each in the order planned; keys borrowed, payloads owned. */
#define EV_MAX_TOPICS 4

typedef struct ev_group {
    const char *topic;
    const char **keys;
    char **payloads;
    size_t n, cap;
} ev_group;

typedef struct ev_groups {
    ev_group g[EV_MAX_TOPICS];
    size_t n;
} ev_groups;

/* Takes payload (freed on failure too). */
static int ev_groups_add(ev_groups *gs, const char *topic, const char *key, char *payload)
{
    ev_group *g = NULL;

    for (size_t i = 0; i < gs->n && g == NULL; i++)
        if (strcmp(gs->g[i].topic, topic) == 0)
            g = &gs->g[i];
    if (g == NULL && gs->n < EV_MAX_TOPICS) {
        g = &gs->g[gs->n++];
        g->topic = topic;
    }
    if (g == NULL)
        goto fail;
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 64;
        const char **k = realloc(g->keys, cap * sizeof(*k));

        if (k == NULL)
            goto fail;
        g->keys = k;
        char **p = realloc(g->payloads, cap * sizeof(*p));
        if (p == NULL)
            goto fail;
        g->payloads = p;
        g->cap = cap;
    }
    g->keys[g->n] = key;
    g->payloads[g->n++] = payload;
    return 0;
fail:
    free(payload);
    return -1;
}

static void ev_groups_free(ev_groups *gs)
{
    for (size_t i = 0; i < gs->n; i++) {
        for (size_t k = 0; k < gs->g[i].n; k++)
            free(gs->g[i].payloads[k]);
        free(gs->g[i].keys);
        free(gs->g[i].payloads);
    }
    gs->n = 0;
}

/* Apply the plans of items[0..n) in the open transaction. */
static int apply(sp_runner *r, sf_db *db, item *items, size_t n, sf_error *err)
{
    static const char sql_upd[] =
        "UPDATE orders o SET scm_status = coalesce(u.status, o.scm_status),"
        " state = coalesce(u.state, o.state),"
        " next_check_at = CASE WHEN u.next_ms IS NULL THEN NULL"
        "   ELSE now() + u.next_ms * interval '1 millisecond' END,"
        " check_step = u.step, lease_owner = NULL, lease_until = NULL,"
        " check_requested = false, check_command_id = NULL,"
        " scm_details = coalesce(u.details, o.scm_details), last_error = u.last_error,"
        " needs_attention = o.needs_attention OR u.attention,"
        " attention_reason = CASE WHEN u.attention THEN u.reason ELSE o.attention_reason END,"
        " issued_at = CASE WHEN u.state = 'issued' THEN now() ELSE o.issued_at END,"
        " updated_at = now()"
        " FROM jsonb_to_recordset($1::jsonb) AS u(i int, id text, status text, state text,"
        "   next_ms bigint, step int, details jsonb, last_error jsonb, attention bool, reason text)"
        " WHERE o.id = u.id AND o.lease_owner = $2"
        " RETURNING u.i";
    static const char sql_hist[] =
        "INSERT INTO order_status_history (order_id, old_state, new_state, old_status, new_status, reason)"
        " SELECT h->>'order_id', h->>'old_state', h->>'new_state', h->>'old_status', h->>'new_status',"
        " h->>'reason' FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS t(h, n) ORDER BY n";
    static const char sql_revoke[] =
        "UPDATE certificates SET status = 'revoked', updated_at = now()"
        " WHERE order_id = ANY(ARRAY(SELECT jsonb_array_elements_text($1::jsonb)))"
        " AND status IN ('active', 'superseded')";
    cJSON *rows = cJSON_CreateArray(), *hist = cJSON_CreateArray(), *rev = cJSON_CreateArray();
    ev_groups out;
    char *txt = NULL, source[160];
    PGresult *res = NULL;
    int rc = -1;

    memset(&out, 0, sizeof(out));
    (void)sf_snprintf(source, sizeof(source), "scmflow/%s", sf_worker_name(sp_worker(r)));
    if (rows == NULL || hist == NULL || rev == NULL)
        goto oom;
    for (size_t i = 0; i < n; i++) {
        item *it = &items[i];
        cJSON *o = cJSON_CreateObject();

        if (o == NULL)
            goto oom;
        cJSON_AddItemToArray(rows, o);
        cJSON_AddNumberToObject(o, "i", (double)i);
        cJSON_AddStringToObject(o, "id", it->id);
        if (it->rc == 0)
            cJSON_AddStringToObject(o, "status", it->status);
        if (it->u.state)
            cJSON_AddStringToObject(o, "state", it->u.state);
        if (it->u.has_next)
            cJSON_AddNumberToObject(o, "next_ms", (double)it->u.next_ms);
        cJSON_AddNumberToObject(o, "step", it->u.step);
        if (it->rc == 0 && it->details_json)
            cJSON_AddRawToObject(o, "details", it->details_json);
        if (it->u.last_error)
            cJSON_AddRawToObject(o, "last_error", it->u.last_error);
        cJSON_AddBoolToObject(o, "attention", it->u.attention);
        if (it->u.attention_reason)
            cJSON_AddStringToObject(o, "reason", it->u.attention_reason);
        it->updated = false;
    }
    if ((txt = cJSON_PrintUnformatted(rows)) == NULL)
        goto oom;
    {
        const char *p[2] = {txt, sf_worker_instance_id(sp_worker(r))};

        if (sf_db_exec(db, sql_upd, 2, p, &res, err) < 0)
            goto out;
    }
    /* which orders were still ours: the rows name their item's index (a
     * search by id was O(n^2) strcmp per round: 2 million for 2,000) */
    for (int k = 0; k < PQntuples(res); k++) {
        int64_t i = -1;

        if (sf_str_to_i64(PQgetvalue(res, k, 0), 0, (int64_t)n - 1, &i) == 0)
            items[i].updated = true;
    }
    PQclear(res);
    res = NULL;
    free(txt);
    txt = NULL;
    for (size_t i = 0; i < n; i++) {
        item *it = &items[i];
        const cJSON *e;

        if (!it->updated)
            continue;
        if (it->hist) {
            cJSON *h = cJSON_CreateObject();

            if (h == NULL)
                goto oom;
            cJSON_AddItemToArray(hist, h);
            cJSON_AddStringToObject(h, "order_id", it->id);
            cJSON_AddStringToObject(h, "old_state", it->state);
            cJSON_AddStringToObject(h, "new_state", it->u.state ? it->u.state : it->state);
            if (it->old_status)
                cJSON_AddStringToObject(h, "old_status", it->old_status);
            cJSON_AddStringToObject(h, "new_status", it->status);
            cJSON_AddStringToObject(h, "reason", it->hist_reason);
        }
        if (it->revoke_certs)
            cJSON_AddItemToArray(rev, cJSON_CreateString(it->id));
        cJSON_ArrayForEach(e, it->events) {
            const char *topic = cJSON_GetObjectItemCaseSensitive(e, "topic")->valuestring;
            const char *type = cJSON_GetObjectItemCaseSensitive(e, "type")->valuestring;
            char *payload = NULL;

            if (sf_event_encode(type, source, NULL, it->cmd_id,
                                cJSON_GetObjectItemCaseSensitive(e, "data"), &payload, NULL, err) < 0)
                goto out;
            if (ev_groups_add(&out, topic, it->id, payload) < 0)
                goto oom;
        }
    }
    if (cJSON_GetArraySize(hist) > 0) {
        if ((txt = cJSON_PrintUnformatted(hist)) == NULL)
            goto oom;
        {
            const char *p[1] = {txt};

            if (sf_db_exec(db, sql_hist, 1, p, NULL, err) < 0)
                goto out;
        }
        free(txt);
        txt = NULL;
    }
    if (cJSON_GetArraySize(rev) > 0) {
        if ((txt = cJSON_PrintUnformatted(rev)) == NULL)
            goto oom;
        {
            const char *p[1] = {txt};

            if (sf_db_exec(db, sql_revoke, 1, p, NULL, err) < 0)
                goto out;
        }
        free(txt);
        txt = NULL;
    }
    /* one statement per topic; within a topic the events keep their order
     * (status change first, then what follows from it) */
    for (size_t g = 0; g < out.n; g++)
        if (sf_db_outbox_add_many(db, out.g[g].topic, out.g[g].n, (const char *const *)out.g[g].keys,
                                  (const char *const *)out.g[g].payloads, err) < 0)
            goto out;
    rc = 0;
    goto out;
oom:
    sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
out:
    PQclear(res);
    free(txt);
    cJSON_Delete(rows);
    cJSON_Delete(hist);
    cJSON_Delete(rev);
    ev_groups_free(&out);
    return rc;
}

/* Record every item: one transaction for the round; if it fails, each
 * order in its own transaction. */
static int record_all(sp_runner *r, sf_db *db, item *items, size_t n, sf_error *err)
{
    sf_error e = {0};

    for (size_t i = 0; i < n; i++)
        if (plan_one(r, &items[i]) < 0)
            return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    if (sf_db_begin(db, err) < 0)
        return -1;
    if (apply(r, db, items, n, &e) == 0 && sf_db_commit(db, &e) == 0)
        return 0;
    (void)sf_db_rollback(db, NULL);
    sf_log_warn("recording %zu status checks failed (%s); recording them one by one", n, e.msg);
    for (size_t i = 0; i < n; i++) {
        sf_error_clear(&e);
        if (sf_db_begin(db, err) < 0)
            return -1;
        if (apply(r, db, &items[i], 1, &e) < 0 || sf_db_commit(db, &e) < 0) {
            (void)sf_db_rollback(db, NULL);
            sf_log_ctx_order(items[i].id);
            sf_log_error("could not record the status check of order \"%s\": %s", items[i].id,
                         e.msg);
            sf_log_ctx_order(NULL);
            if (e.cls == SF_ERR_TRANSIENT) {
                *err = e;
                return -1; /* the lease brings the rest back */
            }
        }
    }
    return 0;
}

/* ---- the task ---- */

static int task_poll_serial(sf_worker *w, sp_runner *r, sf_error *err)
{
    int64_t start = sf_now_mono_ms();
    int64_t until = start + sp_setting_ms(r, "SCMFLOW_STATUS_SLICE");
    size_t total = 0;
    int64_t t_claim = 0, t_scm = 0, t_record = 0, t;
    int rc = 0;

    while (!sf_worker_stop_requested(w)) {
        item *items = NULL;
        size_t n = 0;
        t = sf_now_mono_ms();
        if (claim(r, sf_worker_dbh(w), &items, &n, err) < 0) {
            rc = -1;
            break;
        }
        if (n == 0)
            break;
        /* test failpoint: die holding the leases (fault.poller.lease) */
        sf_failpoint("poller.after_claim");
        t_claim += sf_now_mono_ms() - t;
        t = sf_now_mono_ms();
        check_round(r, items, n);
        t_scm += sf_now_mono_ms() - t;
        t = sf_now_mono_ms();
        rc = record_all(r, sf_worker_dbh(w), items, n, err);
        t_record += sf_now_mono_ms() - t;
        total += n;
        for (size_t i = 0; i < n; i++)
            item_release(&items[i]);
        free(items);
        if (rc < 0 || sf_now_mono_ms() >= until)
            break;
    }
    if (total > 0)
        sf_log_info("checked %zu orders in %lld ms (claim %lld ms, SCM %lld ms, record %lld ms)",
                    total, (long long)(sf_now_mono_ms() - start), (long long)t_claim,
                    (long long)t_scm, (long long)t_record);
    return rc;
}

/* ---- pipelined rounds (SCMFLOW_STATUS_PIPELINE=1) ----
 *
 * The serial loop above runs claim, SCM and record one after another, so
 * SCM sits idle while a round is recorded. Here a recorder thread with its
 * own DB connection records round k (same record_all: one transaction,
 * lease-guarded, history + outbox in it) while the task thread checks the
 * following rounds (streamed, see below). The slot takes REC_DEPTH rounds
 * (the one being recorded and one waiting); with the claimer's slot, the
 * rounds in the batch (about two, while one's tail overlaps the next) and
 * a held one, memory stays at a handful of rounds. Correctness is
 * unchanged: a round's
 * orders stay leased until the recorder's transaction commits, so no other
 * claim (ours or another replica's) can take them meanwhile. */

#define REC_DEPTH 2

typedef struct rec_slot {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sp_runner *r;
    sf_db *db;              /* the recorder's own connection */
    /* Handed-over rounds (owned), oldest first: the one being recorded and
     * one waiting, so that the task thread does not stop checking when a
     * round completes while the previous one is still being recorded. */
    item *items[REC_DEPTH];
    size_t n[REC_DEPTH];
    size_t count;           /* rounds in the slot, the one in work included */
    bool done;              /* no more rounds */
    bool failed;            /* recording failed: stop claiming */
    sf_error err;
    int64_t t_record;
} rec_slot;

static void free_items(item *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        item_release(&items[i]);
    free(items);
}

static void *recorder_main(void *arg)
{
    rec_slot *q = arg;

    for (;;) {
        item *items;
        size_t n;
        int64_t t;
        sf_error e = {0};
        int rc;

        pthread_mutex_lock(&q->mu);
        while (q->count == 0 && !q->done)
            pthread_cond_wait(&q->cv, &q->mu);
        if (q->count == 0) { /* done and drained */
            pthread_mutex_unlock(&q->mu);
            break;
        }
        items = q->items[0];
        n = q->n[0];
        pthread_mutex_unlock(&q->mu);

        t = sf_now_mono_ms();
        rc = q->failed ? -1 : record_all(q->r, q->db, items, n, &e);
        free_items(items, n);

        if (rc == 0) /* publish its events now, not at the next relay period */
            sf_worker_kick_relay(sp_worker(q->r));
        pthread_mutex_lock(&q->mu);
        q->t_record += sf_now_mono_ms() - t;
        if (rc < 0 && !q->failed) {
            q->failed = true;
            q->err = e;
        }
        /* its place is free only after the round is recorded */
        for (size_t k = 1; k < q->count; k++) {
            q->items[k - 1] = q->items[k];
            q->n[k - 1] = q->n[k];
        }
        q->count--;
        q->items[q->count] = NULL;
        pthread_cond_broadcast(&q->cv);
        pthread_mutex_unlock(&q->mu);
    }
    return NULL;
}

/* Hand a round to the recorder (waits while REC_DEPTH rounds are there:
 * the back-pressure). Takes ownership of items. */
static bool rec_put(rec_slot *q, item *items, size_t n)
{
    bool ok;

    pthread_mutex_lock(&q->mu);
    while (q->count == REC_DEPTH)
        pthread_cond_wait(&q->cv, &q->mu);
    ok = !q->failed;
    if (ok) {
        q->items[q->count] = items;
        q->n[q->count] = n;
        q->count++;
        pthread_cond_broadcast(&q->cv);
    }
    pthread_mutex_unlock(&q->mu);
    if (!ok)
        free_items(items, n); /* still leased: they come back with the lease */
    return ok;
}

/* Set when a task may have left orders leased by this instance with nobody
 * working on them (see sp_task_poll). Task thread only. */
static bool own_leases_orphaned;

static void sp_leases_orphaned(void)
{
    own_leases_orphaned = true;
}

/* ---- the claimer (pipelined mode) ----
 * A claim of SCMFLOW_STATUS_BATCH orders costs a hundred milliseconds or
 * more of database time; done between rounds on the task thread it left
 * SCM idle for about an eighth of the run. A claimer thread with its own
 * connection (the task thread still uses the worker's, e.g. to load an
 * account) claims round k+1 while the task thread checks round k. One claimed round waits
 * at most (the slot): its leases are taken a round early, far inside
 * SCMFLOW_STATUS_LEASE. A round still waiting when the task ends (stop
 * requested) is given back at once. */

typedef struct claim_slot {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sp_runner *r;
    sf_worker *w;
    sf_db *db;              /* the claimer's own connection */
    int64_t until;          /* no new claim after this (the task's slice) */
    item *items;            /* a claimed round waiting (owned), NULL = none */
    size_t n;
    bool finished;          /* the claimer has exited */
    bool stop;              /* the task thread asks it to exit */
    bool failed;
    sf_error err;
    int64_t t_claim;
} claim_slot;

static void *claimer_main(void *arg)
{
    claim_slot *c = arg;

    for (;;) {
        item *items = NULL;
        size_t n = 0;
        sf_error e = {0};
        int64_t t;
        bool go;

        pthread_mutex_lock(&c->mu);
        while (c->items != NULL && !c->stop)
            pthread_cond_wait(&c->cv, &c->mu);
        go = !c->stop;
        pthread_mutex_unlock(&c->mu);
        if (!go || sf_now_mono_ms() >= c->until || sf_worker_stop_requested(c->w))
            break;
        t = sf_now_mono_ms();
        if (claim(c->r, c->db, &items, &n, &e) < 0) {
            pthread_mutex_lock(&c->mu);
            c->failed = true;
            c->err = e;
            pthread_mutex_unlock(&c->mu);
            break;
        }
        if (n == 0)
            break;
        sf_failpoint("poller.after_claim");
        pthread_mutex_lock(&c->mu);
        c->items = items;
        c->n = n;
        c->t_claim += sf_now_mono_ms() - t;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
    }
    pthread_mutex_lock(&c->mu);
    c->finished = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* The next claimed round: waiting for the claimer (wait; false when it is
 * done) or only if one is there now (never blocks). */
static bool claim_get(claim_slot *c, bool wait, item **items, size_t *n)
{
    bool got;

    pthread_mutex_lock(&c->mu);
    while (wait && c->items == NULL && !c->finished)
        pthread_cond_wait(&c->cv, &c->mu);
    got = c->items != NULL;
    if (got) {
        *items = c->items;
        *n = c->n;
        c->items = NULL;
        pthread_cond_broadcast(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
    return got;
}

static bool claim_take(claim_slot *c, item **items, size_t *n)
{
    return claim_get(c, true, items, n);
}

/* Give back the leases of a claimed round that will not be checked. */
static void release_round(sp_runner *r, sf_db *db, item *items, size_t n)
{
    static const char sql[] =
        "UPDATE orders SET lease_owner = NULL, lease_until = NULL"
        " WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb)) AND lease_owner = $2";
    cJSON *ids = cJSON_CreateArray();
    char *txt = NULL;

    for (size_t i = 0; ids && i < n; i++)
        cJSON_AddItemToArray(ids, cJSON_CreateString(items[i].id));
    if (ids && (txt = cJSON_PrintUnformatted(ids)) != NULL) {
        const char *p[2] = {txt, sf_worker_instance_id(sp_worker(r))};

        if (sf_db_exec(db, sql, 2, p, NULL, NULL) < 0)
            sp_leases_orphaned();
    } else {
        sp_leases_orphaned();
    }
    cJSON_free(txt);
    cJSON_Delete(ids);
}

static bool claim_try(claim_slot *c, item **items, size_t *n)
{
    return claim_get(c, false, items, n);
}

/* ---- streaming rounds (pipelined mode) ----
 * Checking round by round drains SCM at the end of every round (the last
 * requests of a round run with the in-flight count falling to 0, then the
 * collects of its Issued orders run as a second, smaller wave). Instead one
 * sf_scm_batch per account stays fed: the details callback of an order
 * that moved to Issued queues its collect at once, and the batch's refill
 * hook takes the claimer's next round (without waiting) as soon as fewer
 * than SCMFLOW_STATUS_INFLIGHT requests are left, so the next round's
 * requests start while the last ones of the previous round are in flight.
 * A round goes to the recorder (rec_put, from the callback that completes
 * it: it waits there when the recorder is behind, which is the
 * back-pressure) when every one of its orders is checked. Each round keeps
 * its own deadline (half the lease, as run_group): its requests still
 * running then complete as transient failures.
 * Only rounds of one account are streamed, in the batch of that account; a
 * round of another account ends the stream (the batch drains, then a batch
 * of the new account starts), and a round mixing accounts is checked the
 * old way (check_round) between streams. Deployments have one account as a
 * rule, where rounds never mix. */

typedef struct stream stream;

typedef struct sround {
    stream *s;
    item *items;            /* owned until handed to the recorder */
    size_t n;
    size_t left;            /* orders whose check has not completed */
    int64_t deadline;
} sround;

struct stream {
    sp_runner *r;
    sf_worker *w;
    claim_slot *c;
    rec_slot *q;
    const char *fmt;
    int inflight;
    int64_t round_ms;       /* deadline of a round after it starts */
    char *account;          /* of the batch (owned), NULL = none */
    sf_scm_batch *b;
    item *held;             /* taken from the claimer, not for this batch */
    size_t held_n;
    bool stop;              /* stop requested or the recorder failed */
    bool auth_failed;       /* this account's client was refused */
    size_t active;          /* rounds in the batch */
    size_t total;           /* orders handed to the recorder */
    int64_t t_wait;         /* in rec_put */
};

static void round_finish(sround *rd)
{
    stream *s = rd->s;
    int64_t t = sf_now_mono_ms();

    s->total += rd->n;
    for (size_t i = 0; i < rd->n; i++)
        rd->items[i].rd = NULL; /* the round ends here */
    if (!rec_put(s->q, rd->items, rd->n))
        s->stop = true; /* the recorder failed: its error ends the task */
    s->t_wait += sf_now_mono_ms() - t;
    s->active--;
    free(rd);
}

static void round_item_done(sround *rd)
{
    if (--rd->left == 0)
        round_finish(rd);
}

static void on_collect_stream(sf_scm_result *res, void *ud)
{
    item *it = ud;

    on_collect(res, ud);
    round_item_done(it->rd);
}

static void on_details_stream(sf_scm_result *res, void *ud)
{
    item *it = ud;
    sround *rd = it->rd;
    stream *s = rd->s;

    on_details(res, ud);
    if (it->rc < 0 && it->err.cls == SF_ERR_AUTH)
        s->auth_failed = true;
    if (wants_collect(it)) {
        sf_scm_batch_req q = SF_SCM_BATCH_REQ_INIT;

        it->want_collect = true;
        q.kind = SF_SCM_REQ_COLLECT;
        q.ssl_id = it->ssl_id;
        q.format = s->fmt;
        q.deadline_ms = rd->deadline;
        q.cb = on_collect_stream;
        q.ud = it;
        if (sf_scm_batch_add(s->b, &q, &it->cerr) == 0)
            return; /* the round waits for the collect */
        it->crc = -1;
    }
    round_item_done(rd);
}

/* Queue the details of a round (ownership of items moves to the stream).
 * Returns the number of requests queued. */
static int stream_add_round(stream *s, item *items, size_t n)
{
    sround *rd = calloc(1, sizeof(*rd));
    size_t added = 0;

    if (rd == NULL) {
        for (size_t i = 0; i < n; i++) {
            items[i].rc = -1;
            sf_error_set(&items[i].err, SF_ERR_INTERNAL, 0, "out of memory");
        }
        s->total += n;
        if (!rec_put(s->q, items, n))
            s->stop = true;
        return 0;
    }
    rd->s = s;
    rd->items = items;
    rd->n = n;
    rd->left = n;
    rd->deadline = sf_now_mono_ms() + s->round_ms;
    s->active++;
    for (size_t i = 0; i < n; i++) {
        sf_scm_batch_req q = SF_SCM_BATCH_REQ_INIT;

        items[i].rd = rd;
        q.kind = SF_SCM_REQ_DETAILS;
        q.ssl_id = items[i].ssl_id;
        q.deadline_ms = rd->deadline;
        q.cb = on_details_stream;
        q.ud = &items[i];
        if (sf_scm_batch_add(s->b, &q, &items[i].err) < 0) {
            items[i].rc = -1;
            rd->left--;
        } else {
            added++;
        }
    }
    if (rd->left == 0) /* nothing could be queued */
        round_finish(rd);
    return (int)added;
}

static bool one_account(const item *items, size_t n, const char *account)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(items[i].account, account) != 0)
            return false;
    return true;
}

/* The refill hook: the claimer's next round, if it is ready and fits. */
static int stream_refill(sf_scm_batch *b, size_t room, void *ud)
{
    stream *s = ud;
    item *items;
    size_t n;

    (void)b;
    (void)room;
    if (s->stop || s->auth_failed || s->held != NULL)
        return 0;
    if (sf_worker_stop_requested(s->w)) {
        s->stop = true; /* finish what is in the batch, record it, end */
        return 0;
    }
    if (!claim_try(s->c, &items, &n))
        return 0;
    if (!one_account(items, n, s->account)) {
        s->held = items;
        s->held_n = n;
        return 0;
    }
    return stream_add_round(s, items, n);
}

static void stream_close(stream *s)
{
    sf_scm_batch_free(s->b); /* empty: every round was handed over */
    s->b = NULL;
    free(s->account);
    s->account = NULL;
}

/* Check a claimed round (ownership moves) and, through the refill hook,
 * every round the claimer has ready meanwhile; returns when the batch is
 * empty: every round taken was handed to the recorder. */
static void stream_rounds(stream *s, item *items, size_t n)
{
    const char *account = items[0].account;
    sf_error e = {0};
    sf_scm_client *cl;

    if (!one_account(items, n, account)) {
        /* check_round may evict or drop the client the batch borrows */
        stream_close(s);
        check_round(s->r, items, n);
        s->total += n;
        if (!rec_put(s->q, items, n))
            s->stop = true;
        return;
    }
    if (s->account != NULL && strcmp(s->account, account) != 0)
        stream_close(s);
    if (s->b == NULL) {
        if ((cl = sp_scm_for_account(s->r, account, &e)) == NULL ||
            (s->account = sf_strdup(account)) == NULL ||
            (s->b = sf_scm_batch_new(cl, s->inflight, &e)) == NULL) {
            free(s->account);
            s->account = NULL;
            /* the old way records the same failure in every order */
            check_round(s->r, items, n);
            s->total += n;
            if (!rec_put(s->q, items, n))
                s->stop = true;
            return;
        }
        sf_scm_batch_set_refill(s->b, stream_refill, s);
    }
    s->auth_failed = false;
    (void)stream_add_round(s, items, n);
    (void)sf_scm_batch_run(s->b, 0, NULL);
    if (s->auth_failed) {
        char *acc = s->account;

        s->account = NULL;
        stream_close(s);
        sp_scm_drop(s->r, acc);
        free(acc);
    }
}

static int task_poll_pipelined(sf_worker *w, sp_runner *r, sf_error *err)
{
    int64_t start = sf_now_mono_ms();
    int64_t until = start + sp_setting_ms(r, "SCMFLOW_STATUS_SLICE");
    int64_t t_claim = 0, t_scm = 0, t;
    rec_slot q;
    claim_slot c;
    stream s;
    pthread_t th, cth;
    bool started = false, claiming = false;
    item *items = NULL;
    size_t n = 0;
    int rc = 0;

    /* The first claim on this thread: a slice without work starts no thread. */
    t = sf_now_mono_ms();
    if (claim(r, sf_worker_dbh(w), &items, &n, err) < 0)
        return -1;
    if (n == 0)
        return 0;
    sf_failpoint("poller.after_claim");
    t_claim += sf_now_mono_ms() - t;

    memset(&q, 0, sizeof(q));
    q.r = r;
    pthread_mutex_init(&q.mu, NULL);
    pthread_cond_init(&q.cv, NULL);
    memset(&c, 0, sizeof(c));
    c.r = r;
    c.w = w;
    c.until = until;
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    memset(&s, 0, sizeof(s));
    s.r = r;
    s.w = w;
    s.c = &c;
    s.q = &q;
    s.fmt = sp_setting_str(r, "SCMFLOW_STATUS_COLLECT_FORMAT");
    s.inflight = (int)sp_setting_int(r, "SCMFLOW_STATUS_INFLIGHT");
    s.round_ms = sp_setting_ms(r, "SCMFLOW_STATUS_LEASE") / 2;
    if ((q.db = sf_db_open(sp_setting_str(r, "SCMFLOW_DATABASE_URL"), err)) == NULL ||
        pthread_create(&th, NULL, recorder_main, &q) != 0) {
        if (q.db != NULL)
            sf_error_set(err, SF_ERR_INTERNAL, 0, "cannot start the recorder thread");
        free_items(items, n);
        rc = -1;
        goto out;
    }
    started = true;
    /* without a claimer the task checks this one round and ends its slice */
    claiming = (c.db = sf_db_open(sp_setting_str(r, "SCMFLOW_DATABASE_URL"), NULL)) != NULL &&
               pthread_create(&cth, NULL, claimer_main, &c) == 0;
    if (!claiming)
        c.finished = true;
    for (;;) {
        int64_t waited = s.t_wait;

        t = sf_now_mono_ms();
        stream_rounds(&s, items, n);
        items = NULL;
        t_scm += sf_now_mono_ms() - t - (s.t_wait - waited);
        if (s.stop || sf_worker_stop_requested(w))
            break;
        if (s.held != NULL) {
            items = s.held;
            n = s.held_n;
            s.held = NULL;
            continue;
        }
        if (!claim_take(&c, &items, &n))
            break;
    }
out:
    stream_close(&s);
    if (s.held != NULL) { /* taken from the claimer, not checked: give it back */
        release_round(r, sf_worker_dbh(w), s.held, s.held_n);
        free_items(s.held, s.held_n);
        s.held = NULL;
    }
    if (claiming) {
        pthread_mutex_lock(&c.mu);
        c.stop = true;
        pthread_cond_broadcast(&c.cv);
        pthread_mutex_unlock(&c.mu);
        pthread_join(cth, NULL);
        if (c.items != NULL) { /* claimed, not checked: give it back now */
            release_round(r, sf_worker_dbh(w), c.items, c.n);
            free_items(c.items, c.n);
            c.items = NULL;
        }
        t_claim += c.t_claim;
        if (c.failed && rc == 0) {
            if (err)
                *err = c.err;
            rc = -1;
        }
    }
    if (started) {
        pthread_mutex_lock(&q.mu);
        q.done = true;
        pthread_cond_broadcast(&q.cv);
        pthread_mutex_unlock(&q.mu);
        pthread_join(th, NULL);
        if (q.failed && rc == 0) {
            if (err)
                *err = q.err;
            rc = -1;
        }
    }
    sf_db_close(q.db);
    sf_db_close(c.db);
    pthread_cond_destroy(&q.cv);
    pthread_mutex_destroy(&q.mu);
    pthread_cond_destroy(&c.cv);
    pthread_mutex_destroy(&c.mu);
    if (s.total > 0)
        sf_log_info("checked %zu orders in %lld ms pipelined (claim %lld ms in parallel, SCM %lld ms, "
                    "record %lld ms in parallel, waited for the recorder %lld ms)",
                    s.total, (long long)(sf_now_mono_ms() - start), (long long)t_claim,
                    (long long)t_scm, (long long)q.t_record, (long long)s.t_wait);
    return rc;
}

/* A poll task that failed (the database went away mid-round, or a claim's
 * COMMIT answer was lost) may leave orders leased by this instance with
 * nobody working on them; without this they would wait for
 * SCMFLOW_STATUS_LEASE. The next task call, when no round is in flight
 * (the recorder is joined before a task returns), gives them back. Only the
 * task thread touches the flag. */

static void free_own_leases(sp_runner *r)
{
    static const char sql[] =
        "UPDATE orders SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1";
    const char *p[1] = {sf_worker_instance_id(sp_worker(r))};
    PGresult *res = NULL;

    if (sf_db_exec(sf_worker_dbh(sp_worker(r)), sql, 1, p, &res, NULL) < 0)
        return;
    own_leases_orphaned = false;
    if (sf_db_affected(res) > 0)
        sf_log_info("took back %lld lease(s) of a round not recorded: checked again now",
                    (long long)sf_db_affected(res));
    PQclear(res);
}

int sp_task_poll(sf_worker *w, void *ud, sf_error *err)
{
    sp_runner *r = ud;
    int rc;

    if (own_leases_orphaned)
        free_own_leases(r);
    if (sp_setting_int(r, "SCMFLOW_STATUS_PIPELINE") != 0)
        rc = task_poll_pipelined(w, r, err);
    else
        rc = task_poll_serial(w, r, err);
    if (rc < 0)
        own_leases_orphaned = true;
    return rc;
}
