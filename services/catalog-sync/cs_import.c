/*
 * cs_import.c - import of the orders that already exist in SCM.
 *
 * SCM's list (GET /ssl/v1) carries no status, so the import pages through
 * the list once per status (?status=X&size=200&position=P) and knows each
 * certificate's status from the filter. Every page is written in ONE
 * transaction together with the job's new position (catalog_jobs.status_idx
 * / position) and a renewed lease: a worker killed midway resumes at the
 * first page not committed, so there are neither duplicates (upsert on
 * (account, ssl_id)) nor gaps. Orders deleted locally (deleted_orders) are
 * skipped, and so is, for now, a certificate whose name has an enroll or
 * renew of ours in flight (see sql_upsert). Progress events (orders.import_progress) go out at most every
 * SCMFLOW_CATALOG_PROGRESS_INTERVAL.
 */
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cs.h"
#include "sf_db.h"
#include "sf_log.h"
#include "sf_msg.h"
#include "sf_scm.h"
#include "sf_worker.h"
#include "sf_util.h"

static const char *const all_statuses[] = {
    "Issued", "Requested", "Approved", "SAApproved", "Applied", "Init",
    "Declined", "Rejected", "Invalid", "Revoked", "Expired", "Replaced",
    /* deprecated (real SCM returns none); listed so that nothing a
     * simulator or an old tenant still reports falls through the gaps */
    "Unmanaged",
};

/*
 * State per 002_domain.sql: Issued (and still-moving ones) become
 * 'submitted' with next_check_at = now() so the status poller collects or
 * follows them; ended ones keep their SCM status in a final state. A
 * re-import updates SCM status/details and moves the state only while
 * scmflow has not taken the order further itself.
 */
static const char sql_upsert[] =
    "WITH input AS (SELECT DISTINCT ON (ssl_id) * FROM jsonb_to_recordset($2::jsonb)"
    "   AS r(ssl_id bigint, common_name text, sans text[], status text, raw jsonb) ORDER BY ssl_id),"
    " fresh AS (SELECT i.*, CASE i.status WHEN 'Issued' THEN 'submitted'"
    "     WHEN 'Requested' THEN 'submitted' WHEN 'Approved' THEN 'submitted'"
    "     WHEN 'SAApproved' THEN 'submitted' WHEN 'Applied' THEN 'submitted'"
    "     WHEN 'Init' THEN 'submitted' WHEN 'Revoked' THEN 'revoked'"
    "     WHEN 'Declined' THEN 'failed' WHEN 'Rejected' THEN 'failed' WHEN 'Invalid' THEN 'failed'"
    "     ELSE 'imported' END AS state"
    "   FROM input i WHERE NOT EXISTS (SELECT 1 FROM deleted_orders d"
    "     WHERE (d.account = $1 AND d.ssl_id = i.ssl_id) OR d.order_id = 'scm:' || $1 || ':' || i.ssl_id)"
    /* An enroll/renew of ours in flight for this name may be this very
     * certificate, its sslId not recorded yet: importing it would take the
     * (account, ssl_id) the submitter is about to record. Skip it now; once
     * recorded, the next import updates our order instead. */
    "   AND NOT EXISTS (SELECT 1 FROM scm_operations s JOIN orders so ON so.id = s.order_id"
    "     WHERE s.state IN ('intent', 'unknown') AND s.call_started AND s.kind IN ('enroll', 'renew')"
    "       AND so.account = $1 AND so.common_name = i.common_name)),"
    " up AS (INSERT INTO orders AS o (id, account, origin, state, scm_status, ssl_id, common_name,"
    "   sans, scm_details, next_check_at, submitted_at)"
    "   SELECT 'scm:' || $1 || ':' || ssl_id, $1, 'imported', state, status, ssl_id,"
    "   coalesce(common_name, ''), coalesce(sans, '{}'), raw,"
    "   CASE WHEN state = 'submitted' THEN now() END, now() FROM fresh"
    "   ON CONFLICT (account, ssl_id) DO UPDATE SET scm_status = EXCLUDED.scm_status,"
    "   scm_details = EXCLUDED.scm_details, updated_at = now(),"
    "   state = CASE WHEN o.origin = 'imported' AND o.state IN ('imported', 'submitted', 'failed')"
    "     THEN EXCLUDED.state ELSE o.state END,"
    "   next_check_at = CASE WHEN o.origin = 'imported' AND EXCLUDED.state = 'submitted'"
    "     AND o.state IN ('imported', 'failed') THEN now() ELSE o.next_check_at END"
    "   WHERE o.scm_status IS DISTINCT FROM EXCLUDED.scm_status"
    "     OR o.scm_details IS DISTINCT FROM EXCLUDED.scm_details"
    "   RETURNING (xmax = 0) AS inserted)"
    " SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted),"
    "  (SELECT count(*) FROM input) - (SELECT count(*) FROM fresh) FROM up";

static const char sql_advance[] =
    "UPDATE catalog_jobs SET status_idx = $3::int, position = $4::int, done = done + $5::bigint,"
    " counts = jsonb_build_object("
    "   'imported', coalesce((counts->>'imported')::bigint, 0) + $6::bigint,"
    "   'updated', coalesce((counts->>'updated')::bigint, 0) + $7::bigint,"
    "   'skipped', coalesce((counts->>'skipped')::bigint, 0) + $8::bigint),"
    " lease_until = now() + ($9::bigint * interval '1 millisecond'), updated_at = now()"
    " WHERE id = $1 AND lease_owner = $2 RETURNING done, total, counts::text";

typedef struct imp {
    cs_runner *r;
    int64_t job_id;
    const char *account;
    const char *command_id;
    const char **statuses;
    size_t n_statuses;
    int64_t status_idx, position, total, done;
    int64_t imported, updated, skipped;
    int64_t last_progress_ms, progress_every_ms, lease_ms;
    cJSON *status_totals; /* {"Issued": n, ...} */
} imp;

static int load_state(imp *im, sf_error *err)
{
    static const char sql[] =
        "SELECT status_idx, position, coalesce(total, -1), done,"
        " coalesce((counts->>'imported')::bigint, 0), coalesce((counts->>'updated')::bigint, 0),"
        " coalesce((counts->>'skipped')::bigint, 0), coalesce(status_totals::text, '')"
        " FROM catalog_jobs WHERE id = $1";
    char id[32];
    const char *p[1] = {id};
    PGresult *res = NULL;
    int rc = -1;

    (void)sf_snprintf(id, sizeof(id), "%lld", (long long)im->job_id);
    if (sf_db_exec(cs_runner_db(im->r), sql, 1, p, &res, err) < 0)
        return -1;
    if (PQntuples(res) != 1 || sf_db_get_i64(res, 0, 0, &im->status_idx, err) < 0 ||
        sf_db_get_i64(res, 0, 1, &im->position, err) < 0 ||
        sf_db_get_i64(res, 0, 2, &im->total, err) < 0 || sf_db_get_i64(res, 0, 3, &im->done, err) < 0 ||
        sf_db_get_i64(res, 0, 4, &im->imported, err) < 0 ||
        sf_db_get_i64(res, 0, 5, &im->updated, err) < 0 ||
        sf_db_get_i64(res, 0, 6, &im->skipped, err) < 0) {
        if (PQntuples(res) != 1)
            sf_error_set(err, SF_ERR_NOT_FOUND, 0, "import job %lld vanished", (long long)im->job_id);
        goto out;
    }
    if (PQgetvalue(res, 0, 7)[0] != '\0')
        im->status_totals = cJSON_Parse(PQgetvalue(res, 0, 7));
    rc = 0;
out:
    PQclear(res);
    return rc;
}

static int count_total(imp *im, sf_scm_client *scm, sf_error *err)
{
    static const char sql[] =
        "UPDATE catalog_jobs SET total = $2::bigint, status_totals = $3::jsonb WHERE id = $1";
    int64_t sum = 0;
    char id[32], tot[32], *st_text;
    const char *p[3] = {id, tot, NULL};
    cJSON *totals = cJSON_CreateObject();
    int rc;

    if (totals == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");

    for (size_t i = 0; i < im->n_statuses; i++) {
        sf_scm_cert_filter f = SF_SCM_CERT_FILTER_INIT;
        int64_t n = 0;

        f.status = im->statuses[i];
        if (sf_scm_count_certs(scm, &f, &n, err) < 0) {
            cJSON_Delete(totals);
            return -1;
        }
        cJSON_AddNumberToObject(totals, im->statuses[i], (double)n);
        sum += n;
    }
    im->total = sum;
    (void)sf_snprintf(id, sizeof(id), "%lld", (long long)im->job_id);
    (void)sf_snprintf(tot, sizeof(tot), "%lld", (long long)sum);
    if ((st_text = cJSON_PrintUnformatted(totals)) == NULL) {
        cJSON_Delete(totals);
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    }
    p[2] = st_text;
    rc = sf_db_exec(cs_runner_db(im->r), sql, 3, p, NULL, err);
    cJSON_free(st_text);
    cJSON_Delete(im->status_totals);
    im->status_totals = totals;
    return rc;
}

/* Expected number of certificates of a status (-1 unknown). */
static int64_t status_total(const imp *im, const char *status)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(im->status_totals, status);

    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
}

/* Pages fetched in parallel (the list is slow on big tenants). */
#define CS_PAGES_IN_FLIGHT 4

typedef struct page_slot {
    int64_t position;
    cJSON *doc;
    sf_error err;
    bool failed;
    bool done;
} page_slot;

static void page_cb(sf_scm_result *res, void *ud)
{
    page_slot *s = ud;

    s->done = true;
    if (res->rc < 0) {
        s->err = res->err;
        s->failed = true;
        return;
    }
    s->doc = res->json;
    res->json = NULL;
}

/* Normalize one page of the list into rows for sql_upsert. */
static int page_rows(const cJSON *doc, const char *status, int64_t position, cJSON **out,
                     sf_error *err)
{
    cJSON *rows;
    const cJSON *e;
    int i = 0;

    if (!cJSON_IsArray(doc))
        return sf_error_field(err, "certificates", "malformed SCM response: certificates must be an array");
    if ((rows = cJSON_CreateArray()) == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    cJSON_ArrayForEach(e, doc) {
        char path[64];
        const cJSON *id, *cn, *sans, *s;
        cJSON *row, *sa;

        (void)sf_snprintf(path, sizeof(path), "certificates[%lld]", (long long)(position + i++));
        id = cJSON_GetObjectItemCaseSensitive(e, "sslId");
        if (id == NULL)
            id = cJSON_GetObjectItemCaseSensitive(e, "id");
        if (!cJSON_IsObject(e) || !cJSON_IsNumber(id) || id->valuedouble < 1 ||
            id->valuedouble > 9007199254740991.0 || id->valuedouble != (double)(int64_t)id->valuedouble) {
            cJSON_Delete(rows);
            return sf_error_field(err, path, "malformed SCM response: %s.sslId must be a positive integer",
                                  path);
        }
        cn = cJSON_GetObjectItemCaseSensitive(e, "commonName");
        if (cn != NULL && !cJSON_IsNull(cn) &&
            (!cJSON_IsString(cn) || strlen(cn->valuestring) > 1024 ||
             !sf_utf8_valid(cn->valuestring, strlen(cn->valuestring)))) {
            cJSON_Delete(rows);
            return sf_error_field(err, path, "malformed SCM response: %s.commonName must be a string", path);
        }
        sans = cJSON_GetObjectItemCaseSensitive(e, "subjectAlternativeNames");
        if (sans != NULL && !cJSON_IsNull(sans) && !cJSON_IsArray(sans)) {
            cJSON_Delete(rows);
            return sf_error_field(err, path,
                                  "malformed SCM response: %s.subjectAlternativeNames must be an array", path);
        }
        row = cJSON_CreateObject();
        cJSON_AddNumberToObject(row, "ssl_id", id->valuedouble);
        if (cJSON_IsString(cn))
            cJSON_AddStringToObject(row, "common_name", cn->valuestring);
        sa = cJSON_AddArrayToObject(row, "sans");
        cJSON_ArrayForEach(s, sans) {
            if (!cJSON_IsString(s) || strlen(s->valuestring) > 1024 ||
                !sf_utf8_valid(s->valuestring, strlen(s->valuestring))) {
                cJSON_Delete(row);
                cJSON_Delete(rows);
                return sf_error_field(err, path,
                                      "malformed SCM response: %s.subjectAlternativeNames must hold strings",
                                      path);
            }
            cJSON_AddItemToArray(sa, cJSON_CreateString(s->valuestring));
        }
        cJSON_AddStringToObject(row, "status", status);
        cJSON_AddItemToObject(row, "raw", cJSON_Duplicate(e, true));
        cJSON_AddItemToArray(rows, row);
    }
    *out = rows;
    return 0;
}

static int emit_progress(imp *im, sf_error *err)
{
    cJSON *d = cJSON_CreateObject();
    int rc;

    if (d == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    cJSON_AddStringToObject(d, "account", im->account);
    cJSON_AddNumberToObject(d, "done", (double)im->done);
    if (im->total >= 0)
        cJSON_AddNumberToObject(d, "total", (double)(im->total > im->done ? im->total : im->done));
    cJSON_AddNumberToObject(d, "imported", (double)im->imported);
    cJSON_AddNumberToObject(d, "updated", (double)im->updated);
    rc = cs_emit(im->r, SF_EV_ORDERS_IMPORT_PROGRESS, im->account, d, im->command_id, err);
    cJSON_Delete(d);
    return rc;
}

/* Write one page + the new position. 1 = ok, 0 = lease lost, -1 = error. */
static int commit_page(imp *im, const cJSON *rows, int64_t n, int64_t next_idx, int64_t next_pos,
                       sf_error *err)
{
    sf_db *db = cs_runner_db(im->r);
    char *text = cJSON_PrintUnformatted(rows);
    const char *pu[2] = {im->account, text};
    char id[32], sidx[32], spos[32], sn[32], si[32], su[32], ss[32], lease[32];
    const char *pa[9] = {id, cs_runner_owner(im->r), sidx, spos, sn, si, su, ss, lease};
    int64_t ins = 0, upd = 0, skp = 0;
    PGresult *res = NULL;
    int rc = -1;

    if (text == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    if (sf_db_begin(db, err) < 0)
        goto out;
    if (n > 0) {
        if (sf_db_exec(db, sql_upsert, 2, pu, &res, err) < 0)
            goto rollback;
        if (sf_db_get_i64(res, 0, 0, &ins, err) < 0 || sf_db_get_i64(res, 0, 1, &upd, err) < 0 ||
            sf_db_get_i64(res, 0, 2, &skp, err) < 0)
            goto rollback;
        PQclear(res);
        res = NULL;
    }
    (void)sf_snprintf(id, sizeof(id), "%lld", (long long)im->job_id);
    (void)sf_snprintf(sidx, sizeof(sidx), "%lld", (long long)next_idx);
    (void)sf_snprintf(spos, sizeof(spos), "%lld", (long long)next_pos);
    (void)sf_snprintf(sn, sizeof(sn), "%lld", (long long)n);
    (void)sf_snprintf(si, sizeof(si), "%lld", (long long)ins);
    (void)sf_snprintf(su, sizeof(su), "%lld", (long long)upd);
    (void)sf_snprintf(ss, sizeof(ss), "%lld", (long long)skp);
    (void)sf_snprintf(lease, sizeof(lease), "%lld", (long long)im->lease_ms);
    if (sf_db_exec(db, sql_advance, 9, pa, &res, err) < 0)
        goto rollback;
    if (PQntuples(res) != 1) {
        sf_log_warn("import job %lld: lease lost, stopping here", (long long)im->job_id);
        (void)sf_db_rollback(db, NULL);
        rc = 0;
        goto out;
    }
    im->done += n;
    im->imported += ins;
    im->updated += upd;
    im->skipped += skp;
    if (sf_now_mono_ms() - im->last_progress_ms >= im->progress_every_ms) {
        if (emit_progress(im, err) < 0)
            goto rollback;
        im->last_progress_ms = sf_now_mono_ms();
    }
    sf_failpoint("import.before_page_commit");
    if (sf_db_commit(db, err) < 0)
        goto out;
    im->status_idx = next_idx;
    im->position = next_pos;
    rc = 1;
    goto out;
rollback:
    (void)sf_db_rollback(db, NULL);
    /* the counters above are only advanced after the statements succeeded */
out:
    PQclear(res);
    cJSON_free(text);
    return rc;
}

static int finish(imp *im, int64_t started_ms, const char *error_text, bool retry,
                  int64_t delay_ms, sf_error *err)
{
    static const char sql_ok[] =
        "UPDATE catalog_jobs SET state = 'succeeded', finished_at = now(), updated_at = now(),"
        " lease_owner = NULL, lease_until = NULL, last_error = NULL WHERE id = $1 AND lease_owner = $2"
        " RETURNING (extract(epoch from now() - created_at) * 1000)::bigint";
    static const char sql_fail[] =
        "UPDATE catalog_jobs SET state = $3, last_error = $4, lease_owner = NULL, lease_until = NULL,"
        " next_attempt_at = now() + ($5::bigint * interval '1 millisecond'), updated_at = now(),"
        " finished_at = CASE WHEN $3 = 'failed' THEN now() END WHERE id = $1 AND lease_owner = $2"
        " RETURNING (extract(epoch from now() - created_at) * 1000)::bigint";
    sf_db *db = cs_runner_db(im->r);
    char id[32], delay[32];
    const char *pok[2] = {id, cs_runner_owner(im->r)};
    const char *pf[5] = {id, cs_runner_owner(im->r), retry ? "pending" : "failed", error_text, delay};
    cJSON *d = NULL;
    PGresult *res = NULL;
    int64_t job_ms = 0;
    int rc = -1;

    (void)sf_snprintf(id, sizeof(id), "%lld", (long long)im->job_id);
    (void)sf_snprintf(delay, sizeof(delay), "%lld", (long long)delay_ms);
    if (sf_db_begin(db, err) < 0)
        return -1;
    if (error_text == NULL ? sf_db_exec(db, sql_ok, 2, pok, &res, err) < 0
                           : sf_db_exec(db, sql_fail, 5, pf, &res, err) < 0)
        goto rollback;
    if (PQntuples(res) != 1) {
        (void)sf_db_rollback(db, NULL);
        rc = 0;
        goto out;
    }
    /* The whole job (all slices and restarts), not just this run. */
    (void)sf_db_get_i64(res, 0, 0, &job_ms, NULL);
    if (error_text == NULL || !retry) {
        d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "account", im->account);
        cJSON_AddNumberToObject(d, "imported", (double)im->imported);
        cJSON_AddNumberToObject(d, "updated", (double)im->updated);
        cJSON_AddNumberToObject(d, "skipped", (double)im->skipped);
        cJSON_AddNumberToObject(d, "total", (double)im->done);
        cJSON_AddNumberToObject(d, "duration_ms", (double)(job_ms > 0 ? job_ms : sf_now_mono_ms() - started_ms));
        if (error_text != NULL)
            cJSON_AddStringToObject(d, "error", error_text);
        if (cs_emit(im->r, SF_EV_ORDERS_IMPORTED, im->account, d, im->command_id, err) < 0)
            goto rollback;
    } else if (emit_progress(im, err) < 0) {
        goto rollback;
    }
    if (sf_db_commit(db, err) < 0)
        goto out;
    rc = 0;
    goto out;
rollback:
    (void)sf_db_rollback(db, NULL);
out:
    PQclear(res);
    cJSON_Delete(d);
    return rc;
}

int cs_import_run(cs_runner *r, int64_t job_id, const char *account, const char *command_id,
                  const cJSON *params, int64_t attempts, sf_error *err)
{
    imp im = {0};
    const char *sts[SF_ARRAY_LEN(all_statuses)];
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(params, "status"), *e;
    sf_scm_client *scm = NULL;
    sf_scm_batch *batch = NULL;
    sf_error cause = {0};
    int64_t started = sf_now_mono_ms(), slice_end;
    int rc = -1;

    im.r = r;
    im.job_id = job_id;
    im.account = account;
    im.command_id = command_id;
    im.statuses = sts;
    im.progress_every_ms = cs_runner_progress_ms(r);
    im.lease_ms = cs_runner_lease_ms(r);
    im.last_progress_ms = 0;
    cJSON_ArrayForEach(e, st)
        if (cJSON_IsString(e) && im.n_statuses < SF_ARRAY_LEN(sts))
            sts[im.n_statuses++] = e->valuestring;
    if (im.n_statuses == 0)
        for (size_t i = 0; i < SF_ARRAY_LEN(all_statuses); i++)
            sts[im.n_statuses++] = all_statuses[i];
    if (load_state(&im, &cause) < 0)
        goto failed;
    if (cs_scm_for_account(r, account, &scm, &cause) < 0)
        goto failed;
    if (im.total < 0 && count_total(&im, scm, &cause) < 0)
        goto failed;
    sf_log_info("import job %lld: account \"%s\", %lld certificates, resuming at status %lld position %lld",
                (long long)job_id, account, (long long)im.total, (long long)im.status_idx,
                (long long)im.position);
    slice_end = sf_now_mono_ms() + cs_runner_slice_ms(r);
    while (im.status_idx < (int64_t)im.n_statuses) {
        page_slot slots[CS_PAGES_IN_FLIGHT];
        const char *status = im.statuses[im.status_idx];
        int64_t expect = status_total(&im, status);
        int nslots = 0;
        bool status_done = false;

        if (cs_runner_stopping(r) || sf_now_mono_ms() >= slice_end) {
            /* Keep the lease: the next run of the task (this replica)
             * continues; meanwhile the loop serves Kafka and the relay. */
            rc = 0;
            goto out;
        }
        memset(slots, 0, sizeof(slots));
        if (batch == NULL && (batch = sf_scm_batch_new(scm, CS_PAGES_IN_FLIGHT, &cause)) == NULL)
            goto failed;
        for (int k = 0; k < CS_PAGES_IN_FLIGHT; k++) {
            char path[160];
            int64_t pos = im.position + (int64_t)k * CS_PAGE_SIZE;

            if (k > 0 && (expect < 0 || pos >= expect))
                break;
            slots[k].position = pos;
            (void)sf_snprintf(path, sizeof(path), "/ssl/v1?status=%s&size=%d&position=%lld", status,
                              CS_PAGE_SIZE, (long long)pos);
            if (sf_scm_batch_add_get(batch, path, page_cb, &slots[k], &cause) < 0)
                goto failed_slots;
            nslots++;
        }
        if (sf_scm_batch_run(batch, sf_now_mono_ms() + 300000, &cause) < 0)
            goto failed_slots;
        /* Commit in position order; stop at the first failure or short page. */
        for (int k = 0; k < nslots && !status_done; k++) {
            cJSON *rows = NULL;
            int64_t n, next_idx, next_pos;
            int got;

            if (slots[k].failed) {
                cause = slots[k].err;
                goto failed_slots;
            }
            if (page_rows(slots[k].doc, status, slots[k].position, &rows, &cause) < 0)
                goto failed_slots;
            n = cJSON_GetArraySize(rows);
            if (n < CS_PAGE_SIZE) {
                next_idx = im.status_idx + 1;
                next_pos = 0;
                status_done = true;
            } else {
                next_idx = im.status_idx;
                next_pos = slots[k].position + n;
            }
            got = commit_page(&im, rows, n, next_idx, next_pos, &cause);
            cJSON_Delete(rows);
            if (got < 0)
                goto failed_slots;
            if (got == 0) {
                for (int j = 0; j < nslots; j++)
                    cJSON_Delete(slots[j].doc);
                rc = 0;
                goto out;
            }
        }
        for (int j = 0; j < nslots; j++)
            cJSON_Delete(slots[j].doc);
        continue;
    failed_slots:
        for (int j = 0; j < nslots; j++)
            cJSON_Delete(slots[j].doc);
        goto failed;
    }
    sf_log_info("import job %lld done: %lld imported, %lld updated, %lld skipped in %lld ms",
                (long long)job_id, (long long)im.imported, (long long)im.updated,
                (long long)im.skipped, (long long)(sf_now_mono_ms() - started));
    rc = finish(&im, started, NULL, false, 0, err);
    goto out;
failed:
    {
        char msg[700];
        bool retry = cause.cls != SF_ERR_AUTH && cause.cls != SF_ERR_FATAL &&
                     attempts < cs_runner_max_attempts(r);

        (void)sf_snprintf(msg, sizeof(msg), "%s%s%s", cause.msg[0] ? cause.msg : "failed",
                          cause.field[0] ? " field=" : "", cause.field);
        sf_log_warn("import job %lld (account \"%s\") failed at status %lld position %lld: %s",
                    (long long)job_id, account, (long long)im.status_idx, (long long)im.position, msg);
        rc = finish(&im, started, msg, retry, cs_runner_backoff_ms(r, attempts), err);
    }
out:
    sf_scm_batch_free(batch);
    sf_scm_client_free(scm);
    cJSON_Delete(im.status_totals);
    return rc;
}
