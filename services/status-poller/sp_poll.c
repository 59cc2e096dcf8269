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

typedef struct item {
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

/* ---- claim ---- */

static int claim(sp_runner *r, item **out, size_t *n, sf_error *err)
{
    static const char sql[] =
        "UPDATE orders o SET lease_owner = $1,"
        " lease_until = now() + $2::bigint * interval '1 millisecond'"
        " FROM (SELECT id FROM orders WHERE next_check_at <= now() AND ssl_id IS NOT NULL"
        "       AND (lease_until IS NULL OR lease_until < now())"
        "       ORDER BY next_check_at LIMIT $3::int FOR UPDATE SKIP LOCKED) d"
        " WHERE o.id = d.id"
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

        if (sf_db_exec(sf_worker_dbh(sp_worker(r)), sql, 3, p, &res, err) < 0)
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

        /* Collect only what this check moves from "submitted" to issued. */
        if (it->rc == 0 && strcmp(it->status, "Issued") == 0 &&
            strcmp(it->state, "submitted") == 0) {
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

/* ---- record ---- */

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

static int emit(sp_runner *r, const item *it, const char *type, cJSON *d, sf_error *err)
{
    int rc;

    if (d == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    rc = sp_outbox_tx(r, sp_events_topic(r), type, it->id, d, it->cmd_id, err);
    cJSON_Delete(d);
    return rc;
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

/* The update of one order; NULL params keep the column. */
typedef struct upd {
    const char *state;
    bool has_next;
    int64_t next_ms;
    int step;
    char *last_error;          /* owned */
    bool attention;
    const char *attention_reason;
} upd;

/* 1 = updated, 0 = lease lost (skip the rest), -1 error. */
static int update_order(sp_runner *r, const item *it, const upd *u, sf_error *err)
{
    static const char sql[] =
        "UPDATE orders SET scm_status = coalesce($2, scm_status), state = coalesce($3, state),"
        " next_check_at = CASE WHEN $4::bigint IS NULL THEN NULL"
        "   ELSE now() + $4::bigint * interval '1 millisecond' END,"
        " check_step = $5::int, lease_owner = NULL, lease_until = NULL,"
        " check_requested = false, check_command_id = NULL,"
        " scm_details = coalesce($6::jsonb, scm_details), last_error = $7::jsonb,"
        " needs_attention = needs_attention OR $8::bool,"
        " attention_reason = CASE WHEN $8::bool THEN $9 ELSE attention_reason END,"
        " issued_at = CASE WHEN $3 = 'issued' THEN now() ELSE issued_at END,"
        " updated_at = now()"
        " WHERE id = $1 AND lease_owner = $10";
    char next[32], step[16];
    PGresult *res = NULL;
    int64_t n;

    (void)sf_snprintf(next, sizeof(next), "%lld", (long long)u->next_ms);
    (void)sf_snprintf(step, sizeof(step), "%d", u->step);
    {
        const char *p[10] = {it->id,
                             it->rc == 0 ? it->status : NULL,
                             u->state,
                             u->has_next ? next : NULL,
                             step,
                             it->rc == 0 ? it->details_json : NULL,
                             u->last_error,
                             u->attention ? "true" : "false",
                             u->attention_reason,
                             sf_worker_instance_id(sp_worker(r))};

        if (sf_db_exec(sf_worker_dbh(sp_worker(r)), sql, 10, p, &res, err) < 0)
            return -1;
    }
    n = sf_db_affected(res);
    PQclear(res);
    return n > 0 ? 1 : 0;
}

static int history(sp_runner *r, const item *it, const char *new_state, const char *reason,
                   sf_error *err)
{
    static const char sql[] =
        "INSERT INTO order_status_history (order_id, old_state, new_state, old_status,"
        " new_status, reason) VALUES ($1, $2, $3, $4, $5, $6)";
    const char *p[6] = {it->id, it->state, new_state ? new_state : it->state, it->old_status,
                        it->status, reason};

    return sf_db_exec(sf_worker_dbh(sp_worker(r)), sql, 6, p, NULL, err);
}

/* The collected chain as text that validates ("-----BEGIN"): the PEM
 * formats already are; anything else SCM might answer is wrapped so
 * repo-ingest sees it (and refuses it with a reason if it is garbage). */
static char *chain_text(const item *it)
{
    if (it->chain_len > 0 && sf_utf8_valid(it->chain, it->chain_len) &&
        strstr(it->chain, "-----BEGIN ") != NULL)
        return sf_strdup(it->chain);
    return NULL;
}

static int publish_collected(sp_runner *r, const item *it, const char *fmt, sf_error *err)
{
    cJSON *d = cJSON_CreateObject();
    char now[40], *txt = chain_text(it);
    int rc = -1;

    if (d == NULL || txt == NULL) {
        if (d && txt == NULL)
            sf_error_field(err, "chain", "collected certificate of sslId %lld is not PEM text",
                           (long long)it->ssl_id);
        else
            sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    sf_format_rfc3339(sf_now_wall_ms(), now, sizeof(now));
    cJSON_AddStringToObject(d, "order_id", it->id);
    cJSON_AddNumberToObject(d, "ssl_id", (double)it->ssl_id);
    cJSON_AddStringToObject(d, "format", fmt);
    cJSON_AddStringToObject(d, "chain_pem", txt);
    cJSON_AddStringToObject(d, "collected_at", now);
    rc = sp_outbox_tx(r, sp_collected_topic(r), SF_MSG_CERT_COLLECTED, it->id, d, it->cmd_id, err);
out:
    cJSON_Delete(d);
    free(txt);
    return rc;
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

/* Record one order's outcome inside the open transaction. */
static int record_one(sp_runner *r, item *it, sf_error *err)
{
    const char *fmt = sp_setting_str(r, "SCMFLOW_STATUS_COLLECT_FORMAT");
    int64_t attention_after = sp_setting_int(r, "SCMFLOW_STATUS_ATTENTION_AFTER");
    int64_t daily = sp_setting_ms(r, "SCMFLOW_STATUS_POLL_INTERVAL");
    bool open = strcmp(it->state, "submitted") == 0;
    upd u = {0};
    bool changed;
    int rc = -1, k;
    char code[96];

    if (it->rc < 0) {
        /* The check failed: try again later, on the ladder (at least what
         * SCM asked for with Retry-After). */
        bool nf = it->err.cls == SF_ERR_NOT_FOUND;

        metric("scmflow_status_checks_total", sf_err_class_name(it->err.cls));
        u.step = it->step + 1;
        u.has_next = open || it->requested;
        u.next_ms = nf ? daily : sp_ladder_ms(r, it->step);
        if (it->err.retry_after_ms > u.next_ms)
            u.next_ms = it->err.retry_after_ms;
        if (!open && !nf)
            u.has_next = true; /* an on-demand check of a closed order: retry it too */
        if (!open && nf)
            u.has_next = false;
        u.last_error = error_json(nf ? "scm_not_found" : "status_check_failed", &it->err);
        if (nf || u.step >= attention_after) {
            u.attention = true;
            u.attention_reason = nf ? "SCM does not know this sslId"
                                    : "status checks keep failing (see last_error)";
        }
        if ((k = update_order(r, it, &u, err)) <= 0) {
            rc = k;
            goto out;
        }
        if (it->requested) {
            cJSON *d = ev_base(it), *e = cJSON_CreateObject();

            if (d && e) {
                cJSON_AddStringToObject(d, "action", "check_status");
                cJSON_AddItemToObject(d, "error", e);
                cJSON_AddStringToObject(e, "code", nf ? "scm_not_found" : "status_check_failed");
                cJSON_AddStringToObject(e, "message",
                                        it->err.msg[0] ? it->err.msg : "status check failed");
                if (it->err.code)
                    cJSON_AddNumberToObject(e, "scm_code", it->err.code);
                e = NULL;
            }
            cJSON_Delete(e);
            if (emit(r, it, SF_EV_ORDER_FAILED, d, err) < 0)
                goto out;
        }
        rc = 1;
        goto out;
    }

    metric("scmflow_status_checks_total", it->status);
    changed = it->old_status == NULL || strcmp(it->old_status, it->status) != 0;
    u.step = it->step;

    if (is_final_failure(it->status) && strcmp(it->state, "failed") != 0 &&
        strcmp(it->state, "revoked") != 0) {
        u.state = "failed";
    } else if (strcmp(it->status, "Revoked") == 0 && strcmp(it->state, "revoked") != 0) {
        u.state = "revoked";
    } else if (it->want_collect) {
        if (it->crc == 0 && it->chain != NULL) {
            u.state = "issued";
            u.step = 0;
            metric("scmflow_status_collects_total", "ok");
        } else {
            /* Issued but not downloadable yet (PENDING), or the collect
             * failed: keep the order open and retry on the ladder. */
            bool pending = it->cerr.cls == SF_ERR_PENDING;

            metric("scmflow_status_collects_total", sf_err_class_name(it->cerr.cls));
            u.has_next = true;
            u.next_ms = sp_ladder_ms(r, it->step);
            if (it->cerr.retry_after_ms > u.next_ms)
                u.next_ms = it->cerr.retry_after_ms;
            u.step = it->step + 1;
            if (!pending) {
                u.last_error = error_json("collect_failed", &it->cerr);
                if (u.step >= attention_after || it->cerr.cls == SF_ERR_REJECTED) {
                    u.attention = true;
                    u.attention_reason = "the issued certificate cannot be collected (see last_error)";
                }
            }
        }
    } else if (open && strcmp(it->status, "Expired") != 0) {
        /* Still in progress at SCM: next rung of the ladder. */
        u.has_next = true;
        u.next_ms = sp_ladder_ms(r, it->step);
        u.step = it->step + 1;
    }
    /* else: a closed order checked on demand, or Expired: no next check */

    if ((k = update_order(r, it, &u, err)) <= 0) {
        rc = k;
        goto out;
    }
    if (changed || u.state) {
        (void)sf_snprintf(code, sizeof(code), "status check: %s", it->status);
        if (history(r, it, u.state, code, err) < 0)
            goto out;
    }
    if (changed || it->requested) {
        /* A requested check is answered even when nothing changed. */
        cJSON *d = ev_base(it);

        if (d) {
            if (it->old_status)
                cJSON_AddStringToObject(d, "old_status", it->old_status);
            cJSON_AddStringToObject(d, "status", it->status);
        }
        if (emit(r, it, SF_EV_ORDER_STATUS_CHANGED, d, err) < 0)
            goto out;
    }
    if (u.state && strcmp(u.state, "failed") == 0) {
        cJSON *d = ev_base(it), *e = cJSON_CreateObject();

        lower_code("scm_", it->status, code, sizeof(code));
        if (d && e) {
            cJSON_AddStringToObject(d, "action", "check_status");
            cJSON_AddStringToObject(d, "status", it->status);
            cJSON_AddItemToObject(d, "error", e);
            cJSON_AddStringToObject(e, "code", code);
            cJSON_AddStringToObject(e, "message", it->status);
            e = NULL;
        }
        cJSON_Delete(e);
        if (emit(r, it, SF_EV_ORDER_FAILED, d, err) < 0)
            goto out;
    } else if (u.state && strcmp(u.state, "revoked") == 0) {
        static const char sql[] =
            "UPDATE certificates SET status = 'revoked', updated_at = now()"
            " WHERE order_id = $1 AND status IN ('active', 'superseded')";
        const char *p[1] = {it->id};

        if (sf_db_exec(sf_worker_dbh(sp_worker(r)), sql, 1, p, NULL, err) < 0)
            goto out;
        if (emit(r, it, SF_EV_ORDER_REVOKED, ev_base(it), err) < 0)
            goto out;
    } else if (u.state && strcmp(u.state, "issued") == 0) {
        if (publish_collected(r, it, fmt, err) < 0)
            goto out;
    }
    rc = 1;
out:
    free(u.last_error);
    return rc;
}

/* Record every item: one transaction for the round; if it fails (one bad
 * row), each order in its own transaction so the others are not held
 * back. */
static int record_all(sp_runner *r, item *items, size_t n, sf_error *err)
{
    sf_db *db = sf_worker_dbh(sp_worker(r));
    sf_error e = {0};

    if (sf_db_begin(db, err) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (record_one(r, &items[i], &e) < 0)
            goto one_by_one;
    }
    if (sf_db_commit(db, &e) == 0)
        return 0;
one_by_one:
    (void)sf_db_rollback(db, NULL);
    sf_log_warn("recording %zu status checks failed (%s); recording them one by one", n, e.msg);
    for (size_t i = 0; i < n; i++) {
        sf_error_clear(&e);
        if (sf_db_begin(db, err) < 0)
            return -1;
        if (record_one(r, &items[i], &e) < 0 || sf_db_commit(db, &e) < 0) {
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

int sp_task_poll(sf_worker *w, void *ud, sf_error *err)
{
    sp_runner *r = ud;
    int64_t start = sf_now_mono_ms();
    int64_t until = start + sp_setting_ms(r, "SCMFLOW_STATUS_SLICE");
    size_t total = 0;
    int rc = 0;

    while (!sf_worker_stop_requested(w)) {
        item *items = NULL;
        size_t n = 0;
        if (claim(r, &items, &n, err) < 0) {
            rc = -1;
            break;
        }
        if (n == 0)
            break;
        /* test failpoint: die holding the leases (fault.poller.lease) */
        sf_failpoint("poller.after_claim");
        qsort(items, n, sizeof(*items), cmp_account);
        for (size_t i = 0; i < n;) {
            size_t j = i + 1;

            while (j < n && strcmp(items[j].account, items[i].account) == 0)
                j++;
            run_group(r, &items[i], j - i);
            i = j;
        }
        rc = record_all(r, items, n, err);
        total += n;
        for (size_t i = 0; i < n; i++)
            item_release(&items[i]);
        free(items);
        if (rc < 0 || sf_now_mono_ms() >= until)
            break;
    }
    if (total > 0)
        sf_log_info("checked %zu orders in %lld ms", total, (long long)(sf_now_mono_ms() - start));
    return rc;
}
