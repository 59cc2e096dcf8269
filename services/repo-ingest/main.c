/*
 * repo-ingest - stores collected certificates in the repository, builds
 * keystores, enforces the license count (see README.md, ri.h).
 *
 * Consumes <prefix>certificates.collected. The handler runs in the worker
 * loop's transaction (inbox checked): it records the chain in
 * collected_chains and ingests it (ri_store.c). The task "ingest.retry"
 * stores not_stored chains once the license count leaves room.
 */
#include <stdlib.h>
#include <string.h>

#include "ri.h"
#include "sf_cmd.h"
#include "sf_db.h"
#include "sf_log.h"
#include "sf_metrics.h"
#include "sf_msg.h"
#include "sf_seal.h"
#include "sf_worker.h"
#include "sf_util.h"

static const sf_cfg_def settings[] = {
    {"SCMFLOW_INGEST_RETRY_INTERVAL", SF_CFG_DURATION, "10s", 10, 86400000, NULL,
     "how often each replica retries chains kept as not_stored (license count)", false},
    {"SCMFLOW_INGEST_RETRY_BATCH", SF_CFG_INT, "100", 1, 10000, NULL,
     "not_stored chains retried per transaction", false},
};

static const char *const topics[] = {SF_TOPIC_CERTS_COLLECTED, NULL};

static int task_retry(sf_worker *w, void *ud, sf_error *err);

static const sf_worker_task tasks[] = {
    {"ingest.retry", 10000, task_retry, "SCMFLOW_INGEST_RETRY_INTERVAL", false, false},
};

struct ri_runner {
    sf_worker *w;
    sf_sealer *seal;
    char topic_events[256];
    char topic_dlq[256];
};

sf_worker *ri_worker(ri_runner *r) { return r->w; }
sf_sealer *ri_sealer(ri_runner *r) { return r->seal; }
const char *ri_events_topic(ri_runner *r) { return r->topic_events; }
const char *ri_deadletter_topic(ri_runner *r) { return r->topic_dlq; }

static int handle(sf_worker_ctx *ctx, const sf_event *ev, sf_error *err)
{
    static const char sql_order[] = "SELECT 1 FROM orders WHERE id = $1";
    static const char sql_chain[] =
        "INSERT INTO collected_chains (order_id, ssl_id, format, chain_pem, message_id)"
        " VALUES ($1, $2::bigint, $3, $4, $5)"
        " ON CONFLICT (message_id) DO UPDATE SET updated_at = now()"
        " RETURNING id, state";
    ri_runner *r = sf_worker_ud(sf_worker_ctx_worker(ctx));
    sf_db *db = sf_worker_db(ctx);
    sf_cmd_certificate_collected c = {0};
    PGresult *res = NULL;
    ri_out o = {0};
    ri_result result;
    int64_t chain_id;
    char sslb[32];
    int rc = -1;

    if (strcmp(sf_event_type(ev), SF_MSG_CERT_COLLECTED) != 0) {
        sf_error_field(err, "type", "certificates.collected accepts only %s, not \"%.128s\"",
                       SF_MSG_CERT_COLLECTED, sf_event_type(ev));
        return -1;
    }
    if (sf_cmd_certificate_collected_parse(sf_event_data(ev), &c, err) < 0)
        goto out;
    sf_log_ctx_order(c.order_id);
    {
        const char *p[1] = {c.order_id};

        if (sf_db_exec(db, sql_order, 1, p, &res, err) < 0)
            goto out;
    }
    if (PQntuples(res) == 0) {
        /* Nothing to attach it to: the dead-letter topic keeps it. */
        sf_error_field(err, "data.order_id", "unknown order \"%.128s\"", c.order_id);
        err->cls = SF_ERR_REJECTED;
        goto out;
    }
    PQclear(res);
    res = NULL;
    (void)sf_snprintf(sslb, sizeof(sslb), "%lld", (long long)c.ssl_id);
    {
        const char *p[5] = {c.order_id, sslb, c.format, c.chain_pem, sf_event_id(ev)};

        if (sf_db_exec(db, sql_chain, 5, p, &res, err) < 0 ||
            sf_db_get_i64(res, 0, 0, &chain_id, err) < 0)
            goto out;
    }
    if (strcmp(PQgetvalue(res, 0, 1), "pending") != 0) {
        rc = 0; /* this message was ingested before */
        goto out;
    }
    o.r = r;
    o.ctx = ctx;
    o.db = db;
    o.correlationid = sf_event_id(ev);
    o.original = sf_event_json(ev);
    rc = ri_store_chain(&o, chain_id, c.order_id, c.ssl_id, c.chain_pem, c.chain_pem_len, &result,
                        err);
out:
    sf_log_ctx_order(NULL);
    PQclear(res);
    sf_cmd_certificate_collected_release(&c);
    return rc;
}

/* Store not_stored chains while the license count has room. */
static int task_retry(sf_worker *w, void *ud, sf_error *err)
{
    static const char sql_room[] =
        "SELECT license_max - (SELECT count(*) FROM certificates WHERE status = 'active')"
        " FROM repo_settings WHERE id = 1";
    static const char sql_pick[] =
        "SELECT id, order_id, coalesce(ssl_id, 0), chain_pem FROM collected_chains"
        " WHERE state = 'not_stored' ORDER BY id LIMIT $1::bigint FOR UPDATE SKIP LOCKED";
    ri_runner *r = ud;
    sf_db *db = sf_worker_dbh(w);
    PGresult *res = NULL;
    int64_t room, lim = sf_config_int(sf_worker_config(w), "SCMFLOW_INGEST_RETRY_BATCH");
    int stored = 0, rc = -1;
    char limb[32];

    if (sf_db_exec(db, sql_room, 0, NULL, &res, err) < 0 ||
        sf_db_get_i64(res, 0, 0, &room, err) < 0) {
        PQclear(res);
        return -1;
    }
    PQclear(res);
    res = NULL;
    if (room <= 0)
        return 0;
    if (room < lim)
        lim = room;
    (void)sf_snprintf(limb, sizeof(limb), "%lld", (long long)lim);
    if (sf_db_begin(db, err) < 0)
        return -1;
    {
        const char *p[1] = {limb};

        if (sf_db_exec(db, sql_pick, 1, p, &res, err) < 0)
            goto out;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        ri_out o = {r, NULL, db, NULL, NULL};
        ri_result result;
        int64_t id, ssl;

        if (sf_db_get_i64(res, i, 0, &id, err) < 0 || sf_db_get_i64(res, i, 2, &ssl, err) < 0)
            goto out;
        sf_log_ctx_order(PQgetvalue(res, i, 1));
        if (ri_store_chain(&o, id, PQgetvalue(res, i, 1), ssl, PQgetvalue(res, i, 3),
                           (size_t)PQgetlength(res, i, 3), &result, err) < 0) {
            sf_log_ctx_order(NULL);
            goto out;
        }
        sf_log_ctx_order(NULL);
        if (result == RI_STORED)
            stored++;
        if (result == RI_NOT_STORED)
            break; /* full again */
    }
    if (sf_db_commit(db, err) < 0)
        goto out;
    if (stored)
        sf_log_info("stored %d certificates kept back by the license count", stored);
    rc = 0;
out:
    if (rc < 0)
        (void)sf_db_rollback(db, NULL);
    PQclear(res);
    return rc;
}

static int init(sf_worker *w, void **ud, sf_error *err)
{
    ri_runner *r = calloc(1, sizeof(*r));
    const char *keyfile;

    if (r == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    r->w = w;
    keyfile = sf_config_str(sf_worker_config(w), "SCMFLOW_MASTER_KEY_FILE");
    if (keyfile == NULL || keyfile[0] == '\0') {
        free(r);
        return sf_error_field(err, "SCMFLOW_MASTER_KEY_FILE",
                              "SCMFLOW_MASTER_KEY_FILE is required (keys and keystores are sealed)");
    }
    if ((r->seal = sf_sealer_from_config(sf_worker_config(w), err)) == NULL) {
        free(r);
        return -1;
    }
    (void)sf_worker_topic(w, SF_TOPIC_EVENTS, r->topic_events, sizeof(r->topic_events));
    (void)sf_worker_topic(w, SF_TOPIC_DEADLETTER, r->topic_dlq, sizeof(r->topic_dlq));
    sf_metrics_describe("scmflow_ingest_total", "counter",
                        "collected certificates by outcome (stored, duplicate, not_stored, rejected)");
    *ud = r;
    return 0;
}

static void fini(sf_worker *w, void *ud)
{
    ri_runner *r = ud;

    (void)w;
    if (r == NULL)
        return;
    sf_sealer_free(r->seal);
    free(r);
}

static const sf_worker_def def = {
    .name = "repo-ingest",
    .settings = settings,
    .nsettings = sizeof(settings) / sizeof(settings[0]),
    .topics = topics,
    .handler = handle,
    .tasks = tasks,
    .ntasks = sizeof(tasks) / sizeof(tasks[0]),
    .init = init,
    .fini = fini,
    .max_batch = 20,
};

int main(int argc, char **argv)
{
    return sf_worker_main(argc, argv, &def);
}
