/*
 * status-poller - scheduled and on-demand status checks of SCM orders;
 * collects issued certificates for repo-ingest (see README.md, sp.h).
 */
#include <stdlib.h>
#include <string.h>

#include "sp.h"
#include "sf_cmd.h"
#include "sf_db.h"
#include "sf_log.h"
#include "sf_metrics.h"
#include "sf_msg.h"
#include "sf_scm.h"
#include "sf_seal.h"
#include "sf_worker.h"
#include "sf_util.h"

static const sf_cfg_def settings[] = {
    {"SCMFLOW_STATUS_POLL_INTERVAL", SF_CFG_DURATION, "1d", 1000, 0, NULL,
     "every open order is checked this often (once across replicas)", false},
    {"SCMFLOW_STATUS_LADDER", SF_CFG_STRING, "30s,1m,2m,5m,10m,30m,1h,2h,4h,8h,12h", 0, 0, NULL,
     "delays between the checks of a newly submitted order (comma-separated durations, "
     "capped at SCMFLOW_STATUS_POLL_INTERVAL; the last one repeats)", false},
    {"SCMFLOW_STATUS_TICK", SF_CFG_DURATION, "200ms", 5, 3600000, NULL,
     "how often each replica looks for due orders", false},
    {"SCMFLOW_STATUS_BATCH", SF_CFG_INT, "500", 1, 10000, NULL,
     "orders claimed per round", false},
    {"SCMFLOW_STATUS_INFLIGHT", SF_CFG_INT, "32", 1, 1024, NULL,
     "SCM requests in flight per replica", false},
    {"SCMFLOW_STATUS_LEASE", SF_CFG_DURATION, "5m", 1000, 86400000, NULL,
     "lease on claimed orders; a dead replica's orders are checked by others after it", false},
    {"SCMFLOW_STATUS_SLICE", SF_CFG_DURATION, "60s", 10, 600000, NULL,
     "one run of the poll task (on its own thread) claims new rounds for at most this long, "
     "then drains, closes its connections and starts again", false},
    {"SCMFLOW_STATUS_PIPELINE", SF_CFG_INT, "1", 0, 1, NULL,
     "1 = record a round on a second DB connection while the next round is checked at SCM "
     "(higher throughput; 0 = claim, check, record one after another)", false},
    {"SCMFLOW_STATUS_COLLECT_FORMAT", SF_CFG_ENUM, "x509", 0, 0,
     "x509|x509CO|x509IO|x509IOR|x509R|base64|pem|pemco|pemia",
     "SCM collect format of issued certificates (repo-ingest orders the chain)", false},
    {"SCMFLOW_STATUS_ATTENTION_AFTER", SF_CFG_INT, "20", 1, 100000, NULL,
     "failed checks in a row after which an order is flagged needs_attention", false},
    {"SCMFLOW_SCM_RATE_LIMIT", SF_CFG_INT, "0", 0, 100000, NULL,
     "SCM requests per second per account from one replica (0 = unlimited)", false},
    {"SCMFLOW_SCM_CA_BUNDLE", SF_CFG_STRING, "", 0, 0, NULL,
     "PEM file of CAs trusted for SCM's TLS (empty = system)", false},
    {"SCMFLOW_SCM_TIMEOUT", SF_CFG_DURATION, "60s", 100, 600000, NULL,
     "timeout of one SCM request", false},
};

static const char *const topics[] = {SF_TOPIC_STATUS_COMMANDS, NULL};

static int task_daily(sf_worker *w, void *ud, sf_error *err);

static const sf_worker_task tasks[] = {
    {"status.daily", 86400000, task_daily, "SCMFLOW_STATUS_POLL_INTERVAL", true, false},
    /* its own thread (and database connection): a run streams SCM checks
     * for up to SCMFLOW_STATUS_SLICE while the main loop keeps relaying the
     * events they produce and taking in check commands. On the main loop,
     * every slice ended by draining SCM and waiting for the relay: with 2 s
     * slices that cost 13% of the checks per second. */
    {"status.poll", 200, sp_task_poll, "SCMFLOW_STATUS_TICK", false, true},
};

typedef struct sp_client {
    char *account;
    sf_scm_client *c;
} sp_client;

struct sp_runner {
    sf_worker *w;
    sf_sealer *seal;
    char topic_events[256];
    char topic_collected[256];
    int64_t ladder[SP_MAX_LADDER];
    int nladder;
    sp_client clients[SP_MAX_CLIENTS];
    size_t nclients;
};

sf_worker *sp_worker(sp_runner *r) { return r->w; }
const char *sp_events_topic(sp_runner *r) { return r->topic_events; }
const char *sp_collected_topic(sp_runner *r) { return r->topic_collected; }

int64_t sp_setting_ms(sp_runner *r, const char *name)
{
    return sf_config_duration_ms(sf_worker_config(r->w), name);
}

int64_t sp_setting_int(sp_runner *r, const char *name)
{
    return sf_config_int(sf_worker_config(r->w), name);
}

const char *sp_setting_str(sp_runner *r, const char *name)
{
    return sf_config_str(sf_worker_config(r->w), name);
}

int64_t sp_ladder_ms(sp_runner *r, int step)
{
    if (step < 0)
        step = 0;
    if (step >= r->nladder)
        step = r->nladder - 1;
    return r->ladder[step];
}

/* Parse "30s,1m,..." into r->ladder, each rung capped at cap_ms. */
static int parse_ladder(sp_runner *r, const char *s, int64_t cap_ms, sf_error *err)
{
    char tok[64];
    const char *p = s;

    r->nladder = 0;
    while (*p) {
        size_t n = strcspn(p, ",");
        int64_t ms;

        if (n == 0 || n >= sizeof(tok))
            return sf_error_field(err, "SCMFLOW_STATUS_LADDER", "bad duration list \"%s\"", s);
        memcpy(tok, p, n);
        tok[n] = '\0';
        if (sf_parse_duration_ms(tok, &ms) < 0 || ms < 1)
            return sf_error_field(err, "SCMFLOW_STATUS_LADDER", "bad duration \"%s\"", tok);
        if (r->nladder == SP_MAX_LADDER)
            return sf_error_field(err, "SCMFLOW_STATUS_LADDER", "at most %d durations",
                                  SP_MAX_LADDER);
        r->ladder[r->nladder++] = ms < cap_ms ? ms : cap_ms;
        p += n;
        if (*p == ',')
            p++;
    }
    if (r->nladder == 0)
        return sf_error_field(err, "SCMFLOW_STATUS_LADDER", "at least one duration is required");
    return 0;
}

void sp_scm_drop(sp_runner *r, const char *account)
{
    for (size_t i = 0; i < r->nclients; i++) {
        if (strcmp(r->clients[i].account, account) == 0) {
            sf_scm_client_free(r->clients[i].c);
            free(r->clients[i].account);
            r->clients[i] = r->clients[--r->nclients];
            return;
        }
    }
}

sf_scm_client *sp_scm_for_account(sp_runner *r, const char *account, sf_error *err)
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
    sf_scm_client *c = NULL;
    const char *ca;

    for (size_t i = 0; i < r->nclients; i++)
        if (strcmp(r->clients[i].account, account) == 0)
            return r->clients[i].c;
    if (sf_db_exec(sf_worker_dbh(r->w), sql, 1, params, &res, err) < 0)
        goto out;
    if (PQntuples(res) != 1) {
        sf_error_set(err, SF_ERR_TRANSIENT, 0,
                     "SCM account \"%s\" is not configured (scmctl account set)", account);
        goto out;
    }
    (void)sf_snprintf(aad, sizeof(aad), SP_ACCOUNT_PASSWORD_AAD_FMT, account);
    if (sf_unseal(r->seal, PQgetvalue(res, 0, 3), aad, &pw, &pwlen, err) < 0)
        goto out;
    (void)sf_log_register_secret((const char *)pw);
    acct.base_url = PQgetvalue(res, 0, 0);
    acct.login = PQgetvalue(res, 0, 1);
    acct.customer_uri = PQgetvalue(res, 0, 2);
    acct.password = (const char *)pw;
    acct.auth = strcmp(PQgetvalue(res, 0, 4), "client_cert") == 0 ? SF_SCM_AUTH_CLIENT_CERT
                                                                   : SF_SCM_AUTH_PASSWORD;
    ca = sp_setting_str(r, "SCMFLOW_SCM_CA_BUNDLE");
    acct.ca_bundle = ca[0] ? ca : NULL;
    acct.total_timeout_ms = (long)sp_setting_ms(r, "SCMFLOW_SCM_TIMEOUT");
    acct.rate_per_sec = (double)sp_setting_int(r, "SCMFLOW_SCM_RATE_LIMIT");
    /* A status check is cheap to redo at the next round: keep the retry
     * budget short so one slow order does not hold a whole batch. */
    acct.retry_max_attempts = 3;
    acct.retry_max_total_ms = 10000;
    if ((c = sf_scm_client_new(&acct, err)) == NULL)
        goto out;
    if (r->nclients == SP_MAX_CLIENTS) {
        sf_scm_client_free(r->clients[0].c);
        free(r->clients[0].account);
        r->clients[0] = r->clients[--r->nclients];
    }
    r->clients[r->nclients].account = sf_strdup(account);
    if (r->clients[r->nclients].account == NULL) {
        sf_scm_client_free(c);
        c = NULL;
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    r->clients[r->nclients++].c = c;
out:
    sf_secret_free(pw, pwlen);
    PQclear(res);
    return c;
}

int sp_outbox_tx(sp_runner *r, const char *topic, const char *type, const char *key,
                 const cJSON *data, const char *correlationid, sf_error *err)
{
    char source[160], *payload = NULL;
    size_t len = 0;
    int rc;

    (void)sf_snprintf(source, sizeof(source), "scmflow/%s", sf_worker_name(r->w));
    if (sf_event_encode(type, source, NULL, correlationid, data, &payload, &len, err) < 0)
        return -1;
    rc = sf_db_outbox_add(sf_worker_dbh(r->w), topic, key, payload, len, err);
    free(payload);
    return rc;
}

/* ---- the daily schedule: every open order due now ---- */

static int task_daily(sf_worker *w, void *ud, sf_error *err)
{
    static const char sql[] =
        "UPDATE orders SET next_check_at = now()"
        " WHERE state = 'submitted' AND ssl_id IS NOT NULL"
        " AND (next_check_at IS NULL OR next_check_at > now())";
    PGresult *res = NULL;

    (void)ud;
    if (sf_db_exec(sf_worker_dbh(w), sql, 0, NULL, &res, err) < 0)
        return -1;
    sf_log_info("daily status check: %lld open orders due", (long long)sf_db_affected(res));
    PQclear(res);
    return 0;
}

/* ---- the status.commands handler: record the request, never call SCM ---- */

static int handle(sf_worker_ctx *ctx, const sf_event *ev, sf_error *err)
{
    static const char sql_one[] =
        "UPDATE orders SET next_check_at = now(), check_requested = true,"
        " check_command_id = $2, updated_at = now()"
        " WHERE id = $1 AND ssl_id IS NOT NULL RETURNING state";
    static const char sql_all[] =
        "UPDATE orders SET next_check_at = now(), updated_at = now()"
        " WHERE state = 'submitted' AND ssl_id IS NOT NULL";
    sf_cmd_check_status c = {0};
    PGresult *res = NULL;
    cJSON *d = NULL, *e;
    int rc = -1;

    if (strcmp(sf_event_type(ev), SF_CMD_ORDER_CHECK_STATUS) != 0) {
        sf_error_field(err, "type", "status.commands accepts only %s, not \"%.128s\"",
                       SF_CMD_ORDER_CHECK_STATUS, sf_event_type(ev));
        err->cls = SF_ERR_INVALID;
        return -1;
    }
    if (sf_cmd_check_status_parse(sf_event_data(ev), &c, err) < 0)
        goto out;
    if (c.all) {
        if (sf_db_exec(sf_worker_db(ctx), sql_all, 0, NULL, &res, err) < 0)
            goto out;
        sf_log_info("check of all open orders requested: %lld due",
                    (long long)sf_db_affected(res));
        rc = 0;
        goto out;
    }
    {
        const char *p[2] = {c.order_id, sf_event_id(ev)};

        if (sf_db_exec(sf_worker_db(ctx), sql_one, 2, p, &res, err) < 0)
            goto out;
    }
    if (PQntuples(res) == 0) {
        /* Unknown order, or not (yet) in SCM: answer so the caller is not
         * left waiting. */
        if ((d = cJSON_CreateObject()) == NULL || (e = cJSON_CreateObject()) == NULL) {
            sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
            goto out;
        }
        cJSON_AddStringToObject(d, "order_id", c.order_id);
        cJSON_AddStringToObject(d, "action", "check_status");
        cJSON_AddItemToObject(d, "error", e);
        cJSON_AddStringToObject(e, "code", "not_found");
        cJSON_AddStringToObject(e, "message", "no order with this id has been submitted to SCM");
        cJSON_AddStringToObject(e, "field", "data.order_id");
        if (sf_worker_emit(ctx, SF_EV_ORDER_FAILED, c.order_id, d, sf_event_id(ev), err) < 0)
            goto out;
    }
    rc = 0;
out:
    cJSON_Delete(d);
    PQclear(res);
    sf_cmd_check_status_release(&c);
    return rc;
}

/* ---- lifecycle ---- */

static int init(sf_worker *w, void **ud, sf_error *err)
{
    sp_runner *r = calloc(1, sizeof(*r));
    const sf_config *cfg = sf_worker_config(w);
    const char *keyfile;

    if (r == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    r->w = w;
    if (parse_ladder(r, sf_config_str(cfg, "SCMFLOW_STATUS_LADDER"),
                     sf_config_duration_ms(cfg, "SCMFLOW_STATUS_POLL_INTERVAL"), err) < 0) {
        free(r);
        return -1;
    }
    keyfile = sf_config_str(cfg, "SCMFLOW_MASTER_KEY_FILE");
    if (keyfile == NULL || keyfile[0] == '\0') {
        free(r);
        return sf_error_field(err, "SCMFLOW_MASTER_KEY_FILE",
                              "SCMFLOW_MASTER_KEY_FILE is required (the SCM password is sealed)");
    }
    if ((r->seal = sf_sealer_from_config(cfg, err)) == NULL) {
        free(r);
        return -1;
    }
    (void)sf_worker_topic(w, SF_TOPIC_EVENTS, r->topic_events, sizeof(r->topic_events));
    (void)sf_worker_topic(w, SF_TOPIC_CERTS_COLLECTED, r->topic_collected,
                          sizeof(r->topic_collected));
    sf_metrics_describe("scmflow_status_checks_total", "counter",
                        "order status checks by outcome (SCM status or error class)");
    sf_metrics_describe("scmflow_status_collects_total", "counter",
                        "certificate collects by outcome");
    *ud = r;
    return 0;
}

static void fini(sf_worker *w, void *ud)
{
    sp_runner *r = ud;

    (void)w;
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->nclients; i++) {
        sf_scm_client_free(r->clients[i].c);
        free(r->clients[i].account);
    }
    sf_sealer_free(r->seal);
    free(r);
}

static const sf_worker_def def = {
    .name = "status-poller",
    .settings = settings,
    .nsettings = sizeof(settings) / sizeof(settings[0]),
    .topics = topics,
    .handler = handle,
    .tasks = tasks,
    .ntasks = sizeof(tasks) / sizeof(tasks[0]),
    .init = init,
    .fini = fini,
};

int main(int argc, char **argv)
{
    return sf_worker_main(argc, argv, &def);
}
