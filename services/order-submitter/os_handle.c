/*
 * os_handle.c - the order.commands handler. Runs inside the worker loop's
 * transaction (after the inbox check); it validates, persists the order and
 * the SCM intent (scm_operations, state 'intent') and answers through the
 * outbox. It never calls SCM: the submit task (os_task.c) does.
 *
 * A command that cannot be honoured is answered with order.rejected naming
 * the field(s) and returns 0 (the command is done). Only a command whose
 * order id cannot be expressed in an event goes to the dead-letter topic.
 * A command whose data breaks the schema never reaches os_handle: the loop
 * dead-letters it and calls os_on_invalid_data, which answers order.rejected
 * (field = the JSON path from proto's validator).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "os.h"
#include "sf_cmd.h"
#include "sf_db.h"
#include "sf_keygen.h"
#include "sf_log.h"
#include "sf_msg.h"
#include "sf_seal.h"
#include "sf_worker.h"
#include "sf_util.h"

static bool order_id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    if (n == 0 || n > SF_CMD_ORDER_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');

        if (!alnum && (i == 0 || strchr("._:@-", c) == NULL))
            return false;
    }
    return true;
}

/* order.rejected with every failure of errs (the first is data.error). */
static int emit_rejected_errs(sf_worker_ctx *ctx, const char *order_id, const char *action,
                              os_errors *errs, const char *corr, sf_error *err)
{
    cJSON *d = cJSON_CreateObject();
    int rc = -1;

    if (d == NULL || errs->arr == NULL || cJSON_GetArraySize(errs->arr) == 0)
        goto out;
    cJSON_AddStringToObject(d, "order_id", order_id);
    cJSON_AddStringToObject(d, "action", action);
    cJSON_AddItemToObject(d, "error", cJSON_Duplicate(cJSON_GetArrayItem(errs->arr, 0), 1));
    cJSON_AddItemReferenceToObject(d, "errors", errs->arr);
    rc = sf_worker_emit(ctx, SF_EV_ORDER_REJECTED, order_id, d, corr, err);
out:
    if (rc < 0 && d == NULL)
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    cJSON_Delete(d);
    return rc;
}

static int emit_rejected(sf_worker_ctx *ctx, const char *order_id, const char *action,
                         const char *code, const char *field, const char *msg, const char *corr,
                         sf_error *err)
{
    os_errors errs = {NULL};
    int rc;

    os_errors_add(&errs, code, field, "%s", msg);
    rc = emit_rejected_errs(ctx, order_id, action, &errs, corr, err);
    cJSON_Delete(errs.arr);
    sf_log_info("%s of order %s rejected: %s", action, order_id, msg);
    return rc;
}

static int emit_simple(sf_worker_ctx *ctx, const char *type, const char *order_id,
                       const char *action, const char *account, int64_t ssl_id,
                       const char *corr, sf_error *err)
{
    cJSON *d = cJSON_CreateObject();
    int rc;

    if (d == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    cJSON_AddStringToObject(d, "order_id", order_id);
    if (action)
        cJSON_AddStringToObject(d, "action", action);
    if (account)
        cJSON_AddStringToObject(d, "account", account);
    if (ssl_id > 0)
        cJSON_AddNumberToObject(d, "ssl_id", (double)ssl_id);
    rc = sf_worker_emit(ctx, type, order_id, d, corr, err);
    cJSON_Delete(d);
    return rc;
}

static cJSON *strv_json(char *const *v, size_t n)
{
    cJSON *a = cJSON_CreateArray();

    for (size_t i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(v[i]));
    return a;
}

/* Answer a new enroll command for an order that already exists with that
 * order's outcome (no second order). */
static int answer_existing(sf_worker_ctx *ctx, const PGresult *res, const char *order_id,
                           const char *corr, sf_error *err)
{
    const char *state = PQgetvalue(res, 0, 0);
    int64_t ssl_id = 0;
    cJSON *d = NULL, *le = NULL;
    int rc;

    if (!PQgetisnull(res, 0, 1))
        (void)sf_str_to_i64(PQgetvalue(res, 0, 1), 1, INT64_MAX, &ssl_id);
    if (ssl_id > 0) {
        if ((d = cJSON_CreateObject()) == NULL)
            return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        cJSON_AddStringToObject(d, "order_id", order_id);
        cJSON_AddNumberToObject(d, "ssl_id", (double)ssl_id);
        cJSON_AddStringToObject(d, "action", "enroll");
        cJSON_AddStringToObject(d, "status", PQgetisnull(res, 0, 2) ? state : PQgetvalue(res, 0, 2));
        rc = sf_worker_emit(ctx, SF_EV_ORDER_SUBMITTED, order_id, d, corr, err);
        cJSON_Delete(d);
        return rc;
    }
    if (strcmp(state, "failed") == 0) {
        if ((d = cJSON_CreateObject()) == NULL)
            return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        cJSON_AddStringToObject(d, "order_id", order_id);
        cJSON_AddStringToObject(d, "action", "enroll");
        le = PQgetisnull(res, 0, 3) ? NULL : cJSON_Parse(PQgetvalue(res, 0, 3));
        if (le == NULL || sf_event_validate_data(SF_EV_ORDER_FAILED, le, NULL) < 0) {
            cJSON_Delete(le);
            le = cJSON_CreateObject();
            cJSON_AddStringToObject(le, "code", "failed");
            cJSON_AddStringToObject(le, "message", "the order failed");
        }
        cJSON_AddItemToObject(d, "error", le);
        if (sf_event_validate_data(SF_EV_ORDER_FAILED, d, NULL) < 0) {
            cJSON_DeleteItemFromObject(d, "error");
            le = cJSON_CreateObject();
            cJSON_AddStringToObject(le, "code", "failed");
            cJSON_AddStringToObject(le, "message", "the order failed");
            cJSON_AddItemToObject(d, "error", le);
        }
        rc = sf_worker_emit(ctx, SF_EV_ORDER_FAILED, order_id, d, corr, err);
        cJSON_Delete(d);
        return rc;
    }
    /* Still in flight (accepted/submitting): order.accepted correlated to
     * THIS command, with the current state, so a requester waiting on the
     * new command id gets an answer. order.submitted later correlates to
     * the command that created the order (documented in the README). */
    if ((d = cJSON_CreateObject()) == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    cJSON_AddStringToObject(d, "order_id", order_id);
    cJSON_AddStringToObject(d, "action", "enroll");
    cJSON_AddStringToObject(d, "state", state);
    rc = sf_worker_emit(ctx, SF_EV_ORDER_ACCEPTED, order_id, d, corr, err);
    cJSON_Delete(d);
    return rc;
}

static int seal_kspw(os_runner *r, const char *plain, const char *order_id, char **out,
                     sf_error *err)
{
    char aad[200];

    (void)sf_snprintf(aad, sizeof(aad), OS_AAD_KSPW_FMT, order_id);
    return sf_seal(os_sealer(r), plain, strlen(plain), aad, out, err);
}

static int handle_enroll(sf_worker_ctx *ctx, os_runner *r, const sf_event *ev, sf_error *err)
{
    /* one round trip: the order (locked) if it exists, and whether an order
     * of that id was deleted; always one row */
    static const char sql_existing[] =
        "SELECT o.state, o.ssl_id, o.scm_status, o.last_error,"
        " EXISTS (SELECT 1 FROM deleted_orders WHERE order_id = $1)"
        " FROM (SELECT 1) AS one LEFT JOIN LATERAL (SELECT state, ssl_id, scm_status,"
        " last_error::text FROM orders WHERE id = $1 FOR UPDATE) o ON true";
#define OS_ORDER_INSERT \
        "INSERT INTO orders (id, account, origin, command_id, state, common_name, sans, org_id," \
        " profile_id, term_days, key_algorithm, key_size, keystore_type, keystore_password_sealed," \
        " csr_pem, byo_csr, comments, external_requesters, custom_fields, correlation_ref," \
        " last_error)" \
        " VALUES ($1, $2, 'enroll', $3, $4, $5," \
        " ARRAY(SELECT jsonb_array_elements_text($6::jsonb)), $7::bigint, $8::bigint, $9::int," \
        " $10, $11::int, $12, $13, $14, $15::boolean, $16," \
        " ARRAY(SELECT jsonb_array_elements_text($17::jsonb)), $18::jsonb, $19, $20::jsonb)"
    static const char sql_insert[] = OS_ORDER_INSERT;
    /* an accepted order and its intent in one round trip: committed with
     * the order, before any SCM call; $21 = the intent's request */
    static const char sql_insert_op[] =
        "WITH ord AS (" OS_ORDER_INSERT " RETURNING id, command_id, correlation_ref, csr_pem)"
        " INSERT INTO scm_operations (order_id, command_id, kind, state, correlation_ref, request,"
        " csr_pem) SELECT id, command_id, 'enroll', 'intent', correlation_ref, $21::jsonb, csr_pem"
        " FROM ord";
#undef OS_ORDER_INSERT
    sf_cmd_enroll e = {0};
    sf_db *db = sf_worker_db(ctx);
    const char *corr = sf_event_id(ev), *order_id;
    char account[160], ref[40], orgbuf[32] = "", profbuf[32] = "", termbuf[16], sizebuf[16];
    sf_csr_info *ci = NULL;
    os_errors errs = {NULL};
    os_resolved rs;
    PGresult *res = NULL;
    char *kspw_sealed = NULL, *sans_txt = NULL, *req_txt = NULL, *cf_txt = NULL,
         *err_txt = NULL, *summary = NULL;
    cJSON *cf = NULL, *req = NULL;
    int rc = -1, acc;

    memset(&rs, 0, sizeof(rs));
    if (sf_cmd_enroll_parse(sf_event_data(ev), &e, err) < 0)
        goto out;
    order_id = e.order_id ? e.order_id : corr;
    if (!order_id_ok(order_id)) {
        sf_error_field(err, "id", "the event id cannot serve as order id: give data.order_id");
        goto out;
    }
    sf_log_ctx_order(order_id);
    {
        const char *p[1] = {order_id};

        if (sf_db_exec(db, sql_existing, 1, p, &res, err) < 0)
            goto out;
        if (PQntuples(res) != 1 || PQnfields(res) != 5) {
            sf_error_set(err, SF_ERR_INTERNAL, 0, "order lookup returned %d rows", PQntuples(res));
            goto out;
        }
        if (!PQgetisnull(res, 0, 0)) {
            if (strcmp(PQgetvalue(res, 0, 0), "rejected") != 0) {
                sf_log_info("enroll of existing order %s: answering with its state %s", order_id,
                            PQgetvalue(res, 0, 0));
                rc = answer_existing(ctx, res, order_id, corr, err);
                goto out;
            }
            /* a rejected order never reached SCM: validate the new command afresh */
            if (sf_db_exec(db, "DELETE FROM orders WHERE id = $1", 1, p, NULL, err) < 0)
                goto out;
        }
        if (strcmp(PQgetvalue(res, 0, 4), "t") == 0) {
            rc = emit_rejected(ctx, order_id, "enroll", "order_deleted", "data.order_id",
                               "an order with this id was deleted; use a new order id", corr, err);
            goto out;
        }
        PQclear(res);
        res = NULL;
    }
    acc = os_resolve_account(db, e.account, account, sizeof(account), err);
    if (acc < 0)
        goto out;
    if (acc > 0) {
        rc = emit_rejected(ctx, order_id, "enroll", "unknown_account", "data.account",
                           e.account ? "the SCM account is not configured"
                                     : "no default SCM account is configured (scmctl account set)",
                           corr, err);
        goto out;
    }
    (void)sf_snprintf(rs.account, sizeof(rs.account), "%s", account);
    if (e.csr) {
        sf_error ce;

        sf_error_clear(&ce);
        if (sf_csr_parse(e.csr, strlen(e.csr), &ci, &ce) < 0)
            os_errors_add(&errs, "invalid_csr", "data.csr", "%s", ce.msg);
    }
    if (os_validate_enroll(db, &e, ci, &rs, &errs, err) < 0)
        goto out;
    if (os_errors_count(&errs) > 0 || (e.csr && ci == NULL)) {
        /* remember the rejection (the order never reaches SCM) */
        if ((err_txt = cJSON_PrintUnformatted(cJSON_GetArrayItem(errs.arr, 0))) == NULL)
            goto oom;
        sans_txt = NULL;
        {
            cJSON *sv = strv_json(e.sans, e.n_sans), *rv = strv_json(e.external_requesters,
                                                                      e.n_external_requesters);
            char *sv_t = sv ? cJSON_PrintUnformatted(sv) : NULL;
            char *rv_t = rv ? cJSON_PrintUnformatted(rv) : NULL;
            const char *p[20] = {order_id, account, corr, "rejected", e.common_name, sv_t, NULL,
                                 NULL, NULL, NULL, NULL, NULL, NULL, NULL, "false", NULL, rv_t,
                                 NULL, NULL, err_txt};
            int xr = (sv_t && rv_t) ? sf_db_exec(db, sql_insert, 20, p, NULL, err) : -1;

            cJSON_Delete(sv);
            cJSON_Delete(rv);
            cJSON_free(sv_t);
            cJSON_free(rv_t);
            if (xr < 0) {
                if (err && err->cls == SF_ERR_NONE)
                    goto oom;
                goto out;
            }
        }
        sf_log_info("enroll of order %s rejected: %d problem(s)", order_id,
                    os_errors_count(&errs));
        rc = emit_rejected_errs(ctx, order_id, "enroll", &errs, corr, err);
        goto out;
    }
    if (e.keystore_password &&
        seal_kspw(r, e.keystore_password, order_id, &kspw_sealed, err) < 0)
        goto out;
    if (sf_uuid4(ref, sizeof(ref)) < 0) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "could not make a correlation reference");
        goto out;
    }
    if ((req = cJSON_CreateObject()) == NULL)
        goto oom;
    cJSON_AddStringToObject(req, "common_name", e.common_name);
    cJSON_AddNumberToObject(req, "org_id", (double)rs.org_id);
    cJSON_AddNumberToObject(req, "profile_id", (double)rs.profile_id);
    cJSON_AddNumberToObject(req, "term_days", e.term_days);
    cJSON_AddNumberToObject(req, "n_sans", (double)e.n_sans);
    if ((req_txt = cJSON_PrintUnformatted(req)) == NULL)
        goto oom;
    {
        cJSON *sv = strv_json(e.sans, e.n_sans), *rv = strv_json(e.external_requesters,
                                                                  e.n_external_requesters);
        char *rv_t;

        cf = cJSON_CreateArray();
        for (size_t i = 0; cf && i < e.n_custom_fields; i++) {
            cJSON *o = cJSON_CreateObject();

            cJSON_AddStringToObject(o, "name", e.custom_fields[i].name);
            cJSON_AddStringToObject(o, "value", e.custom_fields[i].value);
            cJSON_AddItemToArray(cf, o);
        }
        sans_txt = sv ? cJSON_PrintUnformatted(sv) : NULL;
        rv_t = rv ? cJSON_PrintUnformatted(rv) : NULL;
        cf_txt = cf ? cJSON_PrintUnformatted(cf) : NULL;
        (void)sf_snprintf(orgbuf, sizeof(orgbuf), "%lld", (long long)rs.org_id);
        (void)sf_snprintf(profbuf, sizeof(profbuf), "%lld", (long long)rs.profile_id);
        (void)sf_snprintf(termbuf, sizeof(termbuf), "%d", e.term_days);
        (void)sf_snprintf(sizebuf, sizeof(sizebuf), "%d", ci ? ci->key_size : e.key_size);
        {
            const char *p[21] = {order_id, account, corr, "accepted", e.common_name, sans_txt,
                                 orgbuf, profbuf, termbuf,
                                 ci ? ci->key_alg : sf_key_alg_name(e.key_alg), sizebuf,
                                 sf_keystore_type_name(e.keystore_type), kspw_sealed,
                                 e.csr, e.csr ? "true" : "false", e.comments, rv_t, cf_txt, ref,
                                 NULL, req_txt};
            int xr = (sans_txt && rv_t && cf_txt)
                         ? sf_db_exec(db, sql_insert_op, 21, p, NULL, err) : -1;

            cJSON_Delete(sv);
            cJSON_Delete(rv);
            cJSON_free(rv_t);
            if (xr < 0) {
                if (err && err->cls == SF_ERR_NONE)
                    goto oom;
                goto out;
            }
        }
    }
    if (emit_simple(ctx, SF_EV_ORDER_ACCEPTED, order_id, "enroll", account, 0, corr, err) < 0)
        goto out;
    sf_log_info("order %s accepted (account %s, profile %lld, %s)", order_id, account,
                (long long)rs.profile_id, e.csr ? "own CSR" : "key to generate");
    rc = 0;
    goto out;
oom:
    sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
out:
    free(summary);
    cJSON_free(err_txt);
    cJSON_free(sans_txt);
    cJSON_free(req_txt);
    cJSON_free(cf_txt);
    cJSON_Delete(req);
    cJSON_Delete(cf);
    cJSON_Delete(errs.arr);
    free(kspw_sealed);
    sf_csr_info_free(ci);
    PQclear(res);
    sf_cmd_enroll_release(&e);
    return rc;
}

/* The order a lifecycle command acts on, locked. */
typedef struct lc_order {
    PGresult *res;
    const char *account, *state, *cn, *profile_name, *sans_json, *kspw_sealed;
    int64_t ssl_id, org_id;
} lc_order;

static int load_order(sf_db *db, const char *order_id, lc_order *o, sf_error *err)
{
    static const char sql[] =
        "SELECT o.account, o.state, o.ssl_id, o.common_name, coalesce(o.org_id, 0),"
        " coalesce(p.name, ''), to_jsonb(o.sans)::text, o.keystore_password_sealed,"
        " EXISTS (SELECT 1 FROM scm_operations s WHERE s.order_id = o.id"
        "         AND s.state IN ('intent', 'unknown'))"
        " FROM orders o LEFT JOIN catalog_profiles p ON p.account = o.account AND p.id = o.profile_id"
        " WHERE o.id = $1 FOR UPDATE OF o";
    const char *p[1] = {order_id};

    memset(o, 0, sizeof(*o));
    if (sf_db_exec(db, sql, 1, p, &o->res, err) < 0)
        return -1;
    if (PQntuples(o->res) != 1)
        return 1;
    o->account = PQgetvalue(o->res, 0, 0);
    o->state = PQgetvalue(o->res, 0, 1);
    if (!PQgetisnull(o->res, 0, 2))
        (void)sf_str_to_i64(PQgetvalue(o->res, 0, 2), 1, INT64_MAX, &o->ssl_id);
    o->cn = PQgetvalue(o->res, 0, 3);
    (void)sf_str_to_i64(PQgetvalue(o->res, 0, 4), 0, INT64_MAX, &o->org_id);
    o->profile_name = PQgetvalue(o->res, 0, 5);
    o->sans_json = PQgetvalue(o->res, 0, 6);
    o->kspw_sealed = PQgetisnull(o->res, 0, 7) ? NULL : PQgetvalue(o->res, 0, 7);
    return strcmp(PQgetvalue(o->res, 0, 8), "t") == 0 ? 2 : 0;
}

static bool state_issued(const char *s)
{
    return strcmp(s, "issued") == 0 || strcmp(s, "stored") == 0 || strcmp(s, "not_stored") == 0;
}

static int insert_op(sf_db *db, const char *order_id, const char *corr, const char *kind,
                     const cJSON *req, const char *csr, sf_error *err)
{
    static const char sql[] =
        "INSERT INTO scm_operations (order_id, command_id, kind, state, correlation_ref, request,"
        " csr_pem) VALUES ($1, $2, $3, 'intent', $2, $4::jsonb, $5)";
    char *t = cJSON_PrintUnformatted(req);
    int rc;

    if (t == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    {
        const char *p[5] = {order_id, corr, kind, t, csr};

        rc = sf_db_exec(db, sql, 5, p, NULL, err);
    }
    cJSON_free(t);
    return rc;
}

/* Common checks of renew/reissue/revoke; returns 0 to proceed, 1 answered. */
static int lc_common(sf_worker_ctx *ctx, const char *order_id, const char *action, int lr,
                     const lc_order *o, bool need_issued, const char *corr, sf_error *err,
                     int *rc)
{
    if (lr == 1) {
        *rc = emit_rejected(ctx, order_id, action, "not_found", "data.order_id",
                            "no such order", corr, err);
        return 1;
    }
    if (lr == 2) {
        *rc = emit_rejected(ctx, order_id, action, "operation_in_progress", "data.order_id",
                            "another SCM operation of this order is in progress; retry later",
                            corr, err);
        return 1;
    }
    if (o->ssl_id <= 0) {
        *rc = emit_rejected(ctx, order_id, action, "not_submitted", "data.order_id",
                            "the order has no SCM order yet", corr, err);
        return 1;
    }
    if (need_issued && !state_issued(o->state)) {
        char msg[200];

        (void)sf_snprintf(msg, sizeof(msg), "the certificate is not issued (order state %s)",
                          o->state);
        *rc = emit_rejected(ctx, order_id, action, "not_issued", "data.order_id", msg, corr, err);
        return 1;
    }
    return 0;
}

static int check_lc_csr(const char *csr, const char *cn, os_errors *errs)
{
    sf_csr_info *ci = NULL;
    sf_error ce;

    sf_error_clear(&ce);
    if (sf_csr_parse(csr, strlen(csr), &ci, &ce) < 0) {
        os_errors_add(errs, "invalid_csr", "data.csr", "%s", ce.msg);
        return 0;
    }
    if (strcasecmp(ci->cn, cn) != 0)
        os_errors_add(errs, "csr_mismatch", "data.csr",
                      "the CSR's common name \"%s\" differs from the order's \"%s\"", ci->cn, cn);
    sf_csr_info_free(ci);
    return 0;
}

static int handle_renew(sf_worker_ctx *ctx, os_runner *r, const sf_event *ev, sf_error *err)
{
    static const char sql_new[] =
        "INSERT INTO orders (id, account, origin, command_id, renewed_from, state, common_name,"
        " sans, org_id, profile_id, term_days, key_algorithm, key_size, keystore_type,"
        " keystore_password_sealed, byo_csr, comments, external_requesters, custom_fields,"
        " correlation_ref)"
        " SELECT $1, account, 'renewal', $2, id, 'accepted', common_name, sans, org_id, profile_id,"
        " term_days, key_algorithm, key_size, keystore_type, $4, $5::boolean, comments,"
        " external_requesters, custom_fields, $2 FROM orders WHERE id = $3";
    sf_cmd_renew c = {0};
    sf_db *db = sf_worker_db(ctx);
    const char *corr = sf_event_id(ev);
    char new_id[SF_CMD_ORDER_ID_MAX + 1];
    lc_order o;
    os_errors errs = {NULL};
    cJSON *req = NULL;
    char *kspw = NULL;
    unsigned char *pw = NULL;
    size_t pwlen = 0;
    int rc = -1, lr;

    memset(&o, 0, sizeof(o));
    if (sf_cmd_renew_parse(sf_event_data(ev), &c, err) < 0)
        goto out;
    sf_log_ctx_order(c.order_id);
    if ((lr = load_order(db, c.order_id, &o, err)) < 0)
        goto out;
    if (lc_common(ctx, c.order_id, "renew", lr, &o, false, corr, err, &rc))
        goto out;
    if (c.csr) {
        check_lc_csr(c.csr, o.cn, &errs);
        if (os_errors_count(&errs) > 0) {
            rc = emit_rejected_errs(ctx, c.order_id, "renew", &errs, corr, err);
            goto out;
        }
    }
    /* the renewal is a new order: its id is the command's id when usable */
    if (order_id_ok(corr) && strcmp(corr, c.order_id) != 0)
        (void)sf_snprintf(new_id, sizeof(new_id), "%s", corr);
    else if (sf_uuid4(new_id, sizeof(new_id)) < 0) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "could not make an order id");
        goto out;
    }
    if (o.kspw_sealed) {
        /* re-bind the keystore password to the new order id */
        char aad[200];

        (void)sf_snprintf(aad, sizeof(aad), OS_AAD_KSPW_FMT, c.order_id);
        if (sf_unseal(os_sealer(r), o.kspw_sealed, aad, &pw, &pwlen, err) < 0 ||
            seal_kspw(r, (const char *)pw, new_id, &kspw, err) < 0)
            goto out;
    }
    {
        const char *p[5] = {new_id, corr, c.order_id, kspw, c.csr ? "true" : "false"};

        if (sf_db_exec(db, sql_new, 5, p, NULL, err) < 0)
            goto out;
    }
    if ((req = cJSON_CreateObject()) == NULL)
        goto oom;
    cJSON_AddStringToObject(req, "from_order", c.order_id);
    cJSON_AddNumberToObject(req, "from_ssl_id", (double)o.ssl_id);
    cJSON_AddBoolToObject(req, "new_key", c.new_key);
    if (insert_op(db, new_id, corr, "renew", req, c.csr, err) < 0)
        goto out;
    if (emit_simple(ctx, SF_EV_ORDER_ACCEPTED, new_id, "renew", o.account, 0, corr, err) < 0)
        goto out;
    sf_log_info("renewal of order %s accepted as order %s", c.order_id, new_id);
    rc = 0;
    goto out;
oom:
    sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
out:
    sf_secret_free(pw, pwlen);
    free(kspw);
    cJSON_Delete(req);
    cJSON_Delete(errs.arr);
    PQclear(o.res);
    sf_cmd_renew_release(&c);
    return rc;
}

static int handle_reissue(sf_worker_ctx *ctx, const sf_event *ev, sf_error *err)
{
    sf_cmd_reissue c = {0};
    sf_db *db = sf_worker_db(ctx);
    const char *corr = sf_event_id(ev);
    lc_order o;
    os_errors errs = {NULL};
    cJSON *req = NULL;
    int rc = -1, lr;

    memset(&o, 0, sizeof(o));
    if (sf_cmd_reissue_parse(sf_event_data(ev), &c, err) < 0)
        goto out;
    sf_log_ctx_order(c.order_id);
    if ((lr = load_order(db, c.order_id, &o, err)) < 0)
        goto out;
    if (lc_common(ctx, c.order_id, "reissue", lr, &o, true, corr, err, &rc))
        goto out;
    if (c.has_sans && os_validate_names(db, o.account, o.org_id, o.profile_name, o.cn, c.sans,
                                        c.n_sans, "data.sans", &errs, err) < 0)
        goto out;
    if (c.csr)
        check_lc_csr(c.csr, o.cn, &errs);
    if (os_errors_count(&errs) > 0) {
        rc = emit_rejected_errs(ctx, c.order_id, "reissue", &errs, corr, err);
        goto out;
    }
    if ((req = cJSON_CreateObject()) == NULL)
        goto oom;
    cJSON_AddStringToObject(req, "reason", c.reason);
    cJSON_AddBoolToObject(req, "new_key", c.csr ? false : c.new_key);
    if (c.has_sans)
        cJSON_AddItemToObject(req, "sans", strv_json(c.sans, c.n_sans));
    if (insert_op(db, c.order_id, corr, "reissue", req, c.csr, err) < 0)
        goto out;
    if (emit_simple(ctx, SF_EV_ORDER_ACCEPTED, c.order_id, "reissue", o.account, 0, corr, err) < 0)
        goto out;
    rc = 0;
    goto out;
oom:
    sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
out:
    cJSON_Delete(req);
    cJSON_Delete(errs.arr);
    PQclear(o.res);
    sf_cmd_reissue_release(&c);
    return rc;
}

static int handle_revoke(sf_worker_ctx *ctx, const sf_event *ev, sf_error *err)
{
    sf_cmd_revoke c = {0};
    sf_db *db = sf_worker_db(ctx);
    const char *corr = sf_event_id(ev);
    lc_order o;
    cJSON *req = NULL;
    int rc = -1, lr;

    memset(&o, 0, sizeof(o));
    if (sf_cmd_revoke_parse(sf_event_data(ev), &c, err) < 0)
        goto out;
    sf_log_ctx_order(c.order_id);
    if ((lr = load_order(db, c.order_id, &o, err)) < 0)
        goto out;
    if (lr == 0 && strcmp(o.state, "revoked") == 0) {
        rc = emit_simple(ctx, SF_EV_ORDER_REVOKED, c.order_id, NULL, NULL, o.ssl_id, corr, err);
        goto out;
    }
    if (lc_common(ctx, c.order_id, "revoke", lr, &o, true, corr, err, &rc))
        goto out;
    if ((req = cJSON_CreateObject()) == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    cJSON_AddNumberToObject(req, "reason_code", c.reason_code);
    cJSON_AddStringToObject(req, "reason", c.reason);
    if (insert_op(db, c.order_id, corr, "revoke", req, NULL, err) < 0)
        goto out;
    if (emit_simple(ctx, SF_EV_ORDER_ACCEPTED, c.order_id, "revoke", o.account, 0, corr, err) < 0)
        goto out;
    rc = 0;
out:
    cJSON_Delete(req);
    PQclear(o.res);
    sf_cmd_revoke_release(&c);
    return rc;
}

/* Local only: SCM keeps the order. The DELETE cascades to the certificate,
 * the collected chains and the operations; the sealed key goes with the
 * row. deleted_orders remembers it. */
static int handle_delete(sf_worker_ctx *ctx, const sf_event *ev, sf_error *err)
{
    static const char sql_gone[] = "SELECT ssl_id FROM deleted_orders WHERE order_id = $1";
    static const char sql_remember[] =
        "INSERT INTO deleted_orders (order_id, account, ssl_id, command_id)"
        " SELECT id, account, ssl_id, $2 FROM orders WHERE id = $1"
        " ON CONFLICT (order_id) DO NOTHING";
    sf_cmd_delete c = {0};
    sf_db *db = sf_worker_db(ctx);
    const char *corr = sf_event_id(ev);
    lc_order o;
    PGresult *res = NULL;
    int64_t ssl_id = 0;
    int rc = -1, lr;

    memset(&o, 0, sizeof(o));
    if (sf_cmd_delete_parse(sf_event_data(ev), &c, err) < 0)
        goto out;
    sf_log_ctx_order(c.order_id);
    if ((lr = load_order(db, c.order_id, &o, err)) < 0)
        goto out;
    if (lr == 1) {
        const char *p[1] = {c.order_id};

        if (sf_db_exec(db, sql_gone, 1, p, &res, err) < 0)
            goto out;
        if (PQntuples(res) == 1) {
            if (!PQgetisnull(res, 0, 0))
                (void)sf_str_to_i64(PQgetvalue(res, 0, 0), 1, INT64_MAX, &ssl_id);
            rc = emit_simple(ctx, SF_EV_ORDER_DELETED, c.order_id, NULL, NULL, ssl_id, corr, err);
        } else {
            rc = emit_rejected(ctx, c.order_id, "delete", "not_found", "data.order_id",
                               "no such order", corr, err);
        }
        goto out;
    }
    {
        const char *p[2] = {c.order_id, corr};

        if (sf_db_exec(db, sql_remember, 2, p, NULL, err) < 0 ||
            sf_db_exec(db, "DELETE FROM orders WHERE id = $1", 1, p, NULL, err) < 0)
            goto out;
    }
    if (emit_simple(ctx, SF_EV_ORDER_DELETED, c.order_id, NULL, NULL, o.ssl_id, corr, err) < 0)
        goto out;
    sf_log_info("order %s deleted locally (SCM keeps sslId %lld)", c.order_id,
                (long long)o.ssl_id);
    rc = 0;
out:
    PQclear(res);
    PQclear(o.res);
    sf_cmd_delete_release(&c);
    return rc;
}

/* The action name of an order command type ("scmflow.order.<action>"). */
static const char *action_of(const char *type)
{
    static const char *const actions[] = {"enroll", "renew", "reissue", "revoke", "delete"};
    static const char prefix[] = "scmflow.order.";

    if (type == NULL || strncmp(type, prefix, sizeof(prefix) - 1) != 0)
        return NULL;
    for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++)
        if (strcmp(type + sizeof(prefix) - 1, actions[i]) == 0)
            return actions[i];
    return NULL;
}

int os_on_invalid_data(sf_worker_ctx *ctx, const sf_event *ev, const sf_error *why,
                       sf_error *err)
{
    const cJSON *data = sf_event_data(ev);
    const cJSON *oid = cJSON_IsObject(data) ? cJSON_GetObjectItemCaseSensitive(data, "order_id")
                                            : NULL;
    const char *corr = sf_event_id(ev);
    const char *action = action_of(sf_event_type(ev));
    const char *order_id = corr;
    char field[129];
    os_errors errs = {NULL};
    int rc;

    /* The data is unchecked: only a well-formed order_id string is used. */
    if (cJSON_IsString(oid) && order_id_ok(oid->valuestring))
        order_id = oid->valuestring;
    if (action == NULL)
        return sf_error_field(err, "type", "not an order command: no order.rejected");
    if (!order_id_ok(order_id))
        return sf_error_field(err, "id", "no usable order id: no order.rejected");
    (void)sf_snprintf(field, sizeof(field), "%s", why->field[0] ? why->field : "data");
    /* why->msg comes from proto's validator, which never copies the value
     * of a secret field (keystore_password). */
    os_errors_add(&errs, "invalid_field", field, "%s", why->msg[0] ? why->msg : "invalid value");
    sf_log_ctx_order(order_id);
    rc = emit_rejected_errs(ctx, order_id, action, &errs, corr, err);
    cJSON_Delete(errs.arr);
    if (rc == 0)
        sf_log_info("%s of order %s rejected: %s invalid", action, order_id, field);
    return rc;
}

int os_handle(sf_worker_ctx *ctx, const sf_event *ev, sf_error *err)
{
    os_runner *r = sf_worker_ud(sf_worker_ctx_worker(ctx));
    const char *type = sf_event_type(ev);

    if (strcmp(type, SF_CMD_ORDER_ENROLL) == 0)
        return handle_enroll(ctx, r, ev, err);
    if (strcmp(type, SF_CMD_ORDER_RENEW) == 0)
        return handle_renew(ctx, r, ev, err);
    if (strcmp(type, SF_CMD_ORDER_REISSUE) == 0)
        return handle_reissue(ctx, ev, err);
    if (strcmp(type, SF_CMD_ORDER_REVOKE) == 0)
        return handle_revoke(ctx, ev, err);
    if (strcmp(type, SF_CMD_ORDER_DELETE) == 0)
        return handle_delete(ctx, ev, err);
    return sf_error_field(err, "type", "\"%s\" is not a command of order.commands", type);
}
