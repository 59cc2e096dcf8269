/*
 * cs_jobs.c - durable jobs of catalog-sync (catalog_jobs, migration 010):
 * the command handler and the weekly schedule only insert a job; the
 * runner task claims a due job with FOR UPDATE SKIP LOCKED and a lease,
 * commits, talks to SCM outside any transaction and records the outcome
 * plus its events (outbox) in a new transaction. Failed syncs are retried
 * at next_attempt_at with exponential backoff; nothing is half-written
 * because a sync is applied in one transaction only after a complete fetch.
 */
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cs.h"
#include "sf_cmd.h"
#include "sf_db.h"
#include "sf_log.h"
#include "sf_msg.h"
#include "sf_scm.h"
#include "sf_seal.h"
#include "sf_worker.h"
#include "sf_util.h"

/* AAD of the sealed SCM password (scmctl account set seals with it). */
#define CS_PASSWORD_AAD_FMT "account:%s:password"

struct cs_runner {
    sf_worker *w;
    sf_db *db;
    sf_sealer *seal;
    char owner[128];
    char topic_events[256];
    int64_t lease_ms;
    int64_t retry_base_ms;
    int64_t retry_max_ms;
    int64_t max_attempts;
    int64_t progress_ms;
    int64_t slice_ms;
};

cs_runner *cs_runner_new(sf_worker *w, sf_error *err)
{
    const sf_config *cfg = sf_worker_config(w);
    cs_runner *r = calloc(1, sizeof(*r));

    if (r == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        return NULL;
    }
    r->w = w;
    r->db = sf_worker_dbh(w);
    (void)sf_snprintf(r->owner, sizeof(r->owner), "%s", sf_worker_instance_id(w));
    sf_worker_topic(w, SF_TOPIC_EVENTS, r->topic_events, sizeof(r->topic_events));
    r->lease_ms = sf_config_duration_ms(cfg, "SCMFLOW_CATALOG_LEASE");
    r->retry_base_ms = sf_config_duration_ms(cfg, "SCMFLOW_CATALOG_RETRY_BASE");
    r->retry_max_ms = sf_config_duration_ms(cfg, "SCMFLOW_CATALOG_RETRY_MAX");
    r->max_attempts = sf_config_int(cfg, "SCMFLOW_CATALOG_MAX_ATTEMPTS");
    r->progress_ms = sf_config_duration_ms(cfg, "SCMFLOW_CATALOG_PROGRESS_INTERVAL");
    r->slice_ms = sf_config_duration_ms(cfg, "SCMFLOW_CATALOG_SLICE");
    if ((r->seal = sf_sealer_from_config(cfg, err)) == NULL) {
        cs_runner_free(r);
        return NULL;
    }
    return r;
}

void cs_runner_free(cs_runner *r)
{
    if (r == NULL)
        return;
    sf_sealer_free(r->seal);
    free(r);
}

const char *cs_runner_owner(const cs_runner *r) { return r->owner; }
sf_db *cs_runner_db(cs_runner *r) { return r->db; }
bool cs_runner_stopping(const cs_runner *r) { return sf_worker_stop_requested(r->w); }
int64_t cs_runner_progress_ms(const cs_runner *r) { return r->progress_ms; }
int64_t cs_runner_lease_ms(const cs_runner *r) { return r->lease_ms; }
int64_t cs_runner_slice_ms(const cs_runner *r) { return r->slice_ms; }
int64_t cs_runner_max_attempts(const cs_runner *r) { return r->max_attempts; }

int cs_emit(cs_runner *r, const char *type, const char *key, const cJSON *data,
            const char *correlationid, sf_error *err)
{
    char source[160], *payload = NULL;
    size_t len = 0;
    int rc;

    (void)sf_snprintf(source, sizeof(source), "scmflow/%s", sf_worker_name(r->w));
    if (sf_event_encode(type, source, NULL, correlationid, data, &payload, &len, err) < 0)
        return -1;
    rc = sf_db_outbox_add(r->db, r->topic_events, key, payload, len, err);
    free(payload);
    return rc;
}

/* ---- accounts ---- */

int cs_scm_for_account(cs_runner *r, const char *account, sf_scm_client **out, sf_error *err)
{
    static const char sql[] =
        "SELECT base_url, login, customer_uri, password_sealed, auth_mode"
        " FROM scm_accounts WHERE name = $1";
    const char *params[1] = {account};
    PGresult *res = NULL;
    unsigned char *pw = NULL;
    size_t pwlen = 0;
    char aad[200];
    sf_scm_account acct = {0};
    sf_scm_client *c;
    int rc = -1;

    if (sf_db_exec(r->db, sql, 1, params, &res, err) < 0)
        goto out;
    if (PQntuples(res) != 1) {
        sf_error_set(err, SF_ERR_NOT_FOUND, 0, "SCM account \"%s\" is not configured (scmctl account set)",
                     account);
        goto out;
    }
    (void)sf_snprintf(aad, sizeof(aad), CS_PASSWORD_AAD_FMT, account);
    if (sf_unseal(r->seal, PQgetvalue(res, 0, 3), aad, &pw, &pwlen, err) < 0)
        goto out;
    (void)sf_log_register_secret((const char *)pw);
    acct.base_url = PQgetvalue(res, 0, 0);
    acct.login = PQgetvalue(res, 0, 1);
    acct.customer_uri = PQgetvalue(res, 0, 2);
    acct.password = (const char *)pw;
    acct.auth = strcmp(PQgetvalue(res, 0, 4), "client_cert") == 0 ? SF_SCM_AUTH_CLIENT_CERT
                                                                    : SF_SCM_AUTH_PASSWORD;
    {
        const char *ca = sf_config_str(sf_worker_config(r->w), "SCMFLOW_SCM_CA_BUNDLE");
        acct.ca_bundle = ca[0] ? ca : NULL;
    }
    if ((c = sf_scm_client_new(&acct, err)) == NULL)
        goto out;
    *out = c;
    rc = 0;
out:
    sf_secret_free(pw, pwlen);
    PQclear(res);
    return rc;
}

/* ---- the command handler ---- */

/* The account a command names, else the default one, else the only one. */
static int pick_account(sf_db *db, const char *named, char *buf, size_t size, sf_error *err)
{
    static const char sql[] =
        "SELECT name FROM scm_accounts WHERE ($1::text IS NULL AND (is_default OR"
        " (SELECT count(*) FROM scm_accounts) = 1)) OR name = $1 ORDER BY is_default DESC LIMIT 1";
    const char *params[1] = {named};
    PGresult *res = NULL;
    int rc = -1;

    if (sf_db_exec(db, sql, 1, params, &res, err) < 0)
        return -1;
    if (PQntuples(res) == 1) {
        (void)sf_snprintf(buf, size, "%s", PQgetvalue(res, 0, 0));
        rc = 0;
    } else {
        rc = 1;
    }
    PQclear(res);
    return rc;
}

static int answer_failure(sf_worker_ctx *ctx, const char *type, const char *account,
                          const char *code, const char *msg, const char *correlationid,
                          sf_error *err)
{
    cJSON *data = cJSON_CreateObject(), *e;
    int rc;

    if (data == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    if (account != NULL)
        cJSON_AddStringToObject(data, "account", account);
    e = cJSON_AddObjectToObject(data, "error");
    cJSON_AddStringToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddBoolToObject(data, "will_retry", false);
    rc = sf_worker_emit(ctx, type, account, data, correlationid, err);
    cJSON_Delete(data);
    return rc;
}

static int insert_job(sf_db *db, const char *kind, const char *account, const char *trigger,
                      const char *command_id, const cJSON *params, sf_error *err)
{
    static const char sql[] =
        "INSERT INTO catalog_jobs (kind, account, trigger, command_id, params)"
        " VALUES ($1, $2, $3, $4, $5::jsonb)"
        " ON CONFLICT (kind, command_id) WHERE command_id IS NOT NULL DO NOTHING";
    char *p = cJSON_PrintUnformatted(params);
    const char *v[5] = {kind, account, trigger, command_id, p};
    int rc;

    if (p == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    rc = sf_db_exec(db, sql, 5, v, NULL, err);
    cJSON_free(p);
    return rc;
}

int cs_handle(sf_worker_ctx *ctx, const sf_event *ev, sf_error *err)
{
    const char *type = sf_event_type(ev);
    const char *key = sf_worker_event_key(ctx);
    sf_db *db = sf_worker_db(ctx);
    char account[160];
    cJSON *params = NULL;
    int rc = -1, found;

    if (type != NULL && strcmp(type, SF_CMD_CATALOG_SYNC) == 0) {
        sf_cmd_catalog_sync c = {0};
        cJSON *scope;

        if (sf_cmd_catalog_sync_parse(sf_event_data(ev), &c, err) < 0)
            return -1; /* INVALID: dead-lettered by the loop */
        found = pick_account(db, c.account ? c.account : (key && key[0] ? key : NULL), account,
                             sizeof(account), err);
        if (found < 0) {
            sf_cmd_catalog_sync_release(&c);
            return -1;
        }
        if (found == 1) {
            rc = answer_failure(ctx, SF_EV_CATALOG_SYNC_FAILED, c.account, "unknown_account",
                                "no such SCM account (set one with scmctl account set)",
                                sf_event_id(ev), err);
            sf_cmd_catalog_sync_release(&c);
            return rc;
        }
        params = cJSON_CreateObject();
        scope = cJSON_AddArrayToObject(params, "scope");
        if (c.organizations || (!c.domains && !c.profiles))
            cJSON_AddItemToArray(scope, cJSON_CreateString("organizations"));
        if (c.domains || (!c.organizations && !c.profiles))
            cJSON_AddItemToArray(scope, cJSON_CreateString("domains"));
        if (c.profiles || (!c.organizations && !c.domains))
            cJSON_AddItemToArray(scope, cJSON_CreateString("profiles"));
        sf_cmd_catalog_sync_release(&c);
        rc = insert_job(db, "sync", account, "command", sf_event_id(ev), params, err);
        sf_log_info("catalog sync of account \"%s\" queued (command %s)", account, sf_event_id(ev));
    } else if (type != NULL && strcmp(type, SF_CMD_ORDERS_IMPORT) == 0) {
        sf_cmd_orders_import c = {0};
        cJSON *st;

        if (sf_cmd_orders_import_parse(sf_event_data(ev), &c, err) < 0)
            return -1;
        found = pick_account(db, c.account ? c.account : (key && key[0] ? key : NULL), account,
                             sizeof(account), err);
        if (found != 0) {
            sf_cmd_orders_import_release(&c);
            if (found < 0)
                return -1;
            /* orders.imported has no failure twin: answer with an import
             * of nothing plus the reason, so callers never wait forever. */
            params = cJSON_CreateObject();
            if (c.account)
                cJSON_AddStringToObject(params, "account", c.account);
            cJSON_AddNumberToObject(params, "imported", 0);
            cJSON_AddStringToObject(params, "error", "no such SCM account (set one with scmctl account set)");
            rc = sf_worker_emit(ctx, SF_EV_ORDERS_IMPORTED, key, params, sf_event_id(ev), err);
            cJSON_Delete(params);
            return rc;
        }
        params = cJSON_CreateObject();
        st = cJSON_AddArrayToObject(params, "status");
        for (size_t i = 0; i < c.n_status; i++)
            cJSON_AddItemToArray(st, cJSON_CreateString(c.status[i]));
        if (c.from)
            cJSON_AddStringToObject(params, "from", c.from);
        if (c.to)
            cJSON_AddStringToObject(params, "to", c.to);
        sf_cmd_orders_import_release(&c);
        rc = insert_job(db, "import", account, "command", sf_event_id(ev), params, err);
        sf_log_info("order import of account \"%s\" queued (command %s)", account, sf_event_id(ev));
    } else {
        return sf_error_field(err, "type", "catalog-sync does not handle \"%s\"",
                              type ? type : "(none)");
    }
    cJSON_Delete(params);
    return rc;
}

/* ---- the schedule ---- */

int cs_task_schedule_sync(sf_worker *w, void *ud, sf_error *err)
{
    static const char sql[] =
        "INSERT INTO catalog_jobs (kind, account, trigger, params)"
        " SELECT 'sync', name, 'schedule', '{\"scope\":[\"organizations\",\"domains\",\"profiles\"]}'"
        " FROM scm_accounts";
    cs_runner *r = ud;
    PGresult *res = NULL;

    (void)w;
    if (sf_db_exec(r->db, sql, 0, NULL, &res, err) < 0)
        return -1;
    sf_log_info("scheduled catalog sync queued for %s account(s)", PQcmdTuples(res));
    PQclear(res);
    return 0;
}

/* ---- running jobs ---- */

typedef struct cs_job {
    int64_t id;
    char kind[16];
    char account[160];
    char *command_id; /* NULL for scheduled */
    cJSON *params;
    int64_t attempts;
    char trigger[16];
} cs_job;

static void job_release(cs_job *j)
{
    free(j->command_id);
    cJSON_Delete(j->params);
    memset(j, 0, sizeof(*j));
}

/* 1 = claimed, 0 = nothing due, -1 = error. */
static int claim(cs_runner *r, cs_job *j, sf_error *err)
{
    static const char sql[] =
        "UPDATE catalog_jobs SET state = 'running', lease_owner = $1,"
        " lease_until = now() + ($2::bigint * interval '1 millisecond'),"
        " attempts = attempts + CASE WHEN state = 'running' AND lease_owner = $1"
        "   AND lease_until >= now() THEN 0 ELSE 1 END, updated_at = now()"
        " WHERE id = (SELECT id FROM catalog_jobs WHERE state IN ('pending', 'running')"
        "   AND next_attempt_at <= now() AND (lease_until IS NULL OR lease_until < now()"
        "     OR lease_owner = $1)"
        "   ORDER BY next_attempt_at, id FOR UPDATE SKIP LOCKED LIMIT 1)"
        " RETURNING id, kind, account, command_id, params::text, attempts, trigger";
    char lease[32];
    const char *params[2] = {r->owner, lease};
    PGresult *res = NULL;
    int rc = -1;

    (void)sf_snprintf(lease, sizeof(lease), "%lld", (long long)r->lease_ms);
    if (sf_db_exec(r->db, sql, 2, params, &res, err) < 0)
        return -1;
    if (PQntuples(res) == 0) {
        rc = 0;
        goto out;
    }
    memset(j, 0, sizeof(*j));
    if (sf_str_to_i64(PQgetvalue(res, 0, 0), 1, INT64_MAX, &j->id) < 0 ||
        sf_str_to_i64(PQgetvalue(res, 0, 5), 0, INT64_MAX, &j->attempts) < 0) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "unexpected job row");
        goto out;
    }
    (void)sf_snprintf(j->kind, sizeof(j->kind), "%s", PQgetvalue(res, 0, 1));
    (void)sf_snprintf(j->account, sizeof(j->account), "%s", PQgetvalue(res, 0, 2));
    (void)sf_snprintf(j->trigger, sizeof(j->trigger), "%s", PQgetvalue(res, 0, 6));
    if (!PQgetisnull(res, 0, 3))
        j->command_id = sf_strdup(PQgetvalue(res, 0, 3));
    j->params = cJSON_Parse(PQgetvalue(res, 0, 4));
    rc = 1;
out:
    PQclear(res);
    return rc;
}

int64_t cs_runner_backoff_ms(const cs_runner *r, int64_t attempts)
{
    int64_t d = r->retry_base_ms;

    for (int64_t i = 1; i < attempts && d < r->retry_max_ms; i++)
        d *= 2;
    return d > r->retry_max_ms ? r->retry_max_ms : d;
}

static const char *err_code(const sf_error *e)
{
    switch (e->cls) {
    case SF_ERR_TRANSIENT: return "scm_unavailable";
    case SF_ERR_AUTH: return "scm_auth";
    case SF_ERR_REJECTED: return "scm_rejected";
    case SF_ERR_INVALID: return "scm_malformed_response";
    case SF_ERR_NOT_FOUND: return "not_found";
    default: return "internal";
    }
}

/* Record a failed attempt (new transaction): job back to pending with
 * backoff, or failed for good; catalog_syncs row; catalog.sync_failed. */
static int sync_failed(cs_runner *r, const cs_job *j, int64_t started_ms, const sf_error *cause,
                       sf_error *err)
{
    static const char sql_job[] =
        "UPDATE catalog_jobs SET state = $3, next_attempt_at = now() + ($4::bigint * interval '1 millisecond'),"
        " last_error = $5, lease_owner = NULL, lease_until = NULL, updated_at = now(),"
        " finished_at = CASE WHEN $3 = 'failed' THEN now() END"
        " WHERE id = $1 AND lease_owner = $2";
    static const char sql_sync[] =
        "INSERT INTO catalog_syncs (account, scope, trigger, command_id, started_at, finished_at, status, error)"
        " VALUES ($1, ARRAY(SELECT jsonb_array_elements_text($2::jsonb->'scope')), $3, $4,"
        " now() - ($5::bigint * interval '1 millisecond'), now(), 'failed', $6)";
    bool retry = (cause->cls == SF_ERR_TRANSIENT || cause->cls == SF_ERR_INVALID ||
                  cause->cls == SF_ERR_INTERNAL || cause->cls == SF_ERR_UNKNOWN) &&
                 j->attempts < r->max_attempts;
    char id[32], delay[32], dur[32], msg[700];
    char *params_text = cJSON_PrintUnformatted(j->params);
    const char *pj[5] = {id, r->owner, retry ? "pending" : "failed", delay, msg};
    const char *ps[6] = {j->account, params_text, j->trigger, j->command_id, dur, msg};
    cJSON *data = NULL, *e;
    PGresult *res = NULL;
    int rc = -1;

    (void)sf_snprintf(id, sizeof(id), "%lld", (long long)j->id);
    (void)sf_snprintf(delay, sizeof(delay), "%lld", (long long)(retry ? cs_runner_backoff_ms(r, j->attempts) : 0));
    (void)sf_snprintf(dur, sizeof(dur), "%lld", (long long)(sf_now_mono_ms() - started_ms));
    (void)sf_snprintf(msg, sizeof(msg), "%s%s%s", cause->msg[0] ? cause->msg : "failed",
                      cause->field[0] ? " (field " : "", cause->field[0] ? cause->field : "");
    if (cause->field[0])
        (void)sf_snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg), ")");
    if (params_text == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    if (sf_db_begin(r->db, err) < 0)
        goto out;
    if (sf_db_exec(r->db, sql_job, 5, pj, &res, err) < 0)
        goto rollback;
    if (PQcmdTuples(res)[0] == '0') {
        sf_log_warn("catalog job %lld: lease lost, result not recorded", (long long)j->id);
        goto rollback_ok;
    }
    if (sf_db_exec(r->db, sql_sync, 6, ps, NULL, err) < 0)
        goto rollback;
    if ((data = cJSON_CreateObject()) == NULL)
        goto rollback;
    cJSON_AddStringToObject(data, "account", j->account);
    e = cJSON_AddObjectToObject(data, "error");
    cJSON_AddStringToObject(e, "code", err_code(cause));
    cJSON_AddStringToObject(e, "message", msg);
    if (cause->field[0])
        cJSON_AddStringToObject(e, "field", cause->field);
    if (cause->cls == SF_ERR_REJECTED || cause->cls == SF_ERR_AUTH)
        cJSON_AddNumberToObject(e, "scm_code", cause->code);
    cJSON_AddNumberToObject(data, "attempt", (double)j->attempts);
    cJSON_AddBoolToObject(data, "will_retry", retry);
    if (cs_emit(r, SF_EV_CATALOG_SYNC_FAILED, j->account, data, j->command_id, err) < 0)
        goto rollback;
    if (sf_db_commit(r->db, err) < 0)
        goto out;
    rc = 0;
    goto out;
rollback_ok:
    rc = 0;
rollback:
    (void)sf_db_rollback(r->db, NULL);
out:
    PQclear(res);
    cJSON_Delete(data);
    cJSON_free(params_text);
    return rc;
}

static bool scope_has(const cJSON *params, const char *what)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(params, "scope"), *e;

    if (!cJSON_IsArray(s) || cJSON_GetArraySize(s) == 0)
        return true;
    cJSON_ArrayForEach(e, s)
        if (cJSON_IsString(e) && strcmp(e->valuestring, what) == 0)
            return true;
    return false;
}

static int64_t count_of(const cJSON *counts, const char *kind, const char *what)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(counts, kind), what);

    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
}

static int run_sync(cs_runner *r, const cs_job *j, sf_error *err)
{
    static const char sql_job[] =
        "UPDATE catalog_jobs SET state = 'succeeded', finished_at = now(), updated_at = now(),"
        " counts = $3::jsonb, last_error = NULL, lease_owner = NULL, lease_until = NULL,"
        " sync_id = $4::bigint WHERE id = $1 AND lease_owner = $2";
    static const char sql_sync[] =
        "INSERT INTO catalog_syncs (account, scope, trigger, command_id, started_at, finished_at,"
        " status, counts) VALUES ($1, ARRAY(SELECT jsonb_array_elements_text($2::jsonb->'scope')),"
        " $3, $4, now() - ($5::bigint * interval '1 millisecond'), now(), 'succeeded', $6::jsonb)"
        " RETURNING id";
    static const char sql_totals[] =
        "SELECT (SELECT count(*) FROM catalog_organizations WHERE account = $1 AND status = 'active'),"
        " (SELECT count(*) FROM catalog_domains WHERE account = $1 AND status = 'active'),"
        " (SELECT count(*) FROM catalog_profiles WHERE account = $1 AND status = 'active')";
    int64_t started = sf_now_mono_ms();
    cs_catalog cat = {0};
    sf_scm_client *scm = NULL;
    sf_error cause = {0};
    cJSON *counts = NULL, *data = NULL, *ch;
    char *counts_text = NULL, *params_text = NULL, dur[32], id[32], sync_id[32];
    PGresult *res = NULL;
    int rc = -1;

    cat.want_orgs = scope_has(j->params, "organizations");
    cat.want_domains = scope_has(j->params, "domains");
    cat.want_profiles = scope_has(j->params, "profiles");
    if (cs_scm_for_account(r, j->account, &scm, &cause) < 0 ||
        cs_catalog_fetch(scm, &cat, &cause) < 0)
        goto failed;
    if ((params_text = cJSON_PrintUnformatted(j->params)) == NULL) {
        sf_error_set(&cause, SF_ERR_INTERNAL, 0, "out of memory");
        goto failed;
    }
    if (sf_db_begin(r->db, &cause) < 0)
        goto failed;
    if (cs_catalog_apply(r->db, j->account, &cat, &counts, &cause) < 0)
        goto failed_rollback;
    if ((counts_text = cJSON_PrintUnformatted(counts)) == NULL)
        goto failed_rollback;
    (void)sf_snprintf(dur, sizeof(dur), "%lld", (long long)(sf_now_mono_ms() - started));
    {
        const char *ps[6] = {j->account, params_text, j->trigger, j->command_id, dur, counts_text};

        if (sf_db_exec(r->db, sql_sync, 6, ps, &res, &cause) < 0 || PQntuples(res) != 1)
            goto failed_rollback;
        (void)sf_snprintf(sync_id, sizeof(sync_id), "%s", PQgetvalue(res, 0, 0));
        PQclear(res);
        res = NULL;
    }
    (void)sf_snprintf(id, sizeof(id), "%lld", (long long)j->id);
    {
        const char *pj[4] = {id, r->owner, counts_text, sync_id};

        if (sf_db_exec(r->db, sql_job, 4, pj, &res, &cause) < 0)
            goto failed_rollback;
        if (PQcmdTuples(res)[0] == '0') {
            sf_log_warn("catalog job %lld: lease lost, sync result discarded", (long long)j->id);
            (void)sf_db_rollback(r->db, NULL);
            rc = 0;
            goto out;
        }
        PQclear(res);
        res = NULL;
    }
    {
        const char *pt[1] = {j->account};

        if (sf_db_exec(r->db, sql_totals, 1, pt, &res, &cause) < 0)
            goto failed_rollback;
    }
    data = cJSON_CreateObject();
    cJSON_AddStringToObject(data, "account", j->account);
    for (int i = 0; i < 3; i++) {
        static const char *const names[3] = {"organizations", "domains", "profiles"};
        int64_t v = 0;

        (void)sf_str_to_i64(PQgetvalue(res, 0, i), 0, INT64_MAX, &v);
        cJSON_AddNumberToObject(data, names[i], (double)v);
    }
    {
        static const char *const kinds[4] = {"organizations", "domains", "profiles", "custom_fields"};
        int64_t a = 0, c = 0, d = 0;

        for (int i = 0; i < 4; i++) {
            a += count_of(counts, kinds[i], "added");
            c += count_of(counts, kinds[i], "changed");
            d += count_of(counts, kinds[i], "removed");
        }
        cJSON_AddNumberToObject(data, "added", (double)a);
        cJSON_AddNumberToObject(data, "changed", (double)c);
        cJSON_AddNumberToObject(data, "removed", (double)d);
    }
    ch = cJSON_Duplicate(counts, true);
    cJSON_AddItemToObject(data, "counts", ch);
    cJSON_AddNumberToObject(data, "duration_ms", (double)(sf_now_mono_ms() - started));
    if (cs_emit(r, SF_EV_CATALOG_SYNCED, j->account, data, j->command_id, &cause) < 0)
        goto failed_rollback;
    if (sf_db_commit(r->db, &cause) < 0)
        goto failed;
    sf_log_info("catalog of account \"%s\" synced: %s", j->account, counts_text);
    rc = 0;
    goto out;
failed_rollback:
    (void)sf_db_rollback(r->db, NULL);
failed:
    if (cause.msg[0] == '\0')
        sf_error_set(&cause, SF_ERR_INTERNAL, 0, "out of memory");
    sf_log_warn("catalog sync of account \"%s\" failed (attempt %lld): %s%s%s", j->account,
                (long long)j->attempts, cause.msg, cause.field[0] ? " field=" : "", cause.field);
    rc = sync_failed(r, j, started, &cause, err);
out:
    PQclear(res);
    cJSON_Delete(data);
    cJSON_Delete(counts);
    cJSON_free(counts_text);
    cJSON_free(params_text);
    cs_catalog_release(&cat);
    sf_scm_client_free(scm);
    return rc;
}

int cs_task_run_jobs(sf_worker *w, void *ud, sf_error *err)
{
    cs_runner *r = ud;

    while (!sf_worker_stop_requested(w)) {
        cs_job j = {0};
        int got = claim(r, &j, err);

        if (got <= 0)
            return got;
        sf_log_info("running catalog job %lld (%s, account \"%s\", attempt %lld)", (long long)j.id,
                    j.kind, j.account, (long long)j.attempts);
        if (strcmp(j.kind, "sync") == 0) {
            if (run_sync(r, &j, err) < 0) {
                job_release(&j);
                return -1;
            }
        } else {
            int rc = cs_import_run(r, j.id, j.account, j.command_id, j.params, j.attempts, err);

            /* An import works in slices: return to the loop (Kafka, relay)
             * and continue at the next run of this task. */
            job_release(&j);
            return rc;
        }
        job_release(&j);
    }
    return 0;
}
