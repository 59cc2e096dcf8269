/*
 * order-submitter - enrolls, renews, reissues, revokes and deletes orders
 * (see README.md).
 *
 * Consumes <prefix>order.commands. The handler (os_handle.c) validates and
 * records intent in PostgreSQL; the task "submit.run" (os_task.c, every
 * replica) does the SCM calls outside any transaction.
 */
#include <stdlib.h>
#include <string.h>

#include "os.h"
#include "sf_log.h"
#include "sf_metrics.h"
#include "sf_msg.h"
#include "sf_scm.h"
#include "sf_seal.h"
#include "sf_db.h"
#include "sf_worker.h"
#include "sf_util.h"

/* Same AAD as services/scmctl/ctl.h CTL_ACCOUNT_PASSWORD_AAD_FMT. */
#define OS_ACCOUNT_PASSWORD_AAD_FMT "account:%s:password"
#define OS_MAX_CLIENTS 16

static const sf_cfg_def settings[] = {
    {"SCMFLOW_SUBMIT_POLL", SF_CFG_DURATION, "50ms", 5, 3600000, NULL,
     "how often each replica looks for due SCM operations", false},
    {"SCMFLOW_SUBMIT_BATCH", SF_CFG_INT, "50", 1, 1000, NULL,
     "SCM operations claimed per round", false},
    {"SCMFLOW_SUBMIT_SLICE", SF_CFG_DURATION, "1s", 10, 600000, NULL,
     "one run of the submit task works at most this long, then lets the loop serve Kafka",
     false},
    {"SCMFLOW_SUBMIT_LEASE", SF_CFG_DURATION, "5m", 1000, 86400000, NULL,
     "lease on a claimed operation; a dead replica's work is taken over after it (at least "
     "3 x SCMFLOW_SCM_TIMEOUT + 1s: no SCM call may still run when it ends)", false},
    {"SCMFLOW_SUBMIT_INFLIGHT_GRACE", SF_CFG_DURATION, "60s", 0, 86400000, NULL,
     "how long SCM may still act on a request scmflow stopped waiting for (timeout, reset, "
     "killed or stuck worker): only after it is such an operation reconciled",
     false},
    {"SCMFLOW_SUBMIT_RETRY_BASE", SF_CFG_DURATION, "1s", 10, 86400000, NULL,
     "first retry delay after a transient SCM failure (doubles per attempt)", false},
    {"SCMFLOW_SUBMIT_RETRY_MAX", SF_CFG_DURATION, "5m", 10, 86400000, NULL,
     "cap of the retry delay", false},
    {"SCMFLOW_SUBMIT_ATTENTION_AFTER", SF_CFG_INT, "10", 1, 100000, NULL,
     "attempts after which an order is flagged needs_attention (it keeps being retried)",
     false},
    {"SCMFLOW_SUBMIT_FIRST_CHECK", SF_CFG_DURATION, "60s", 0, 86400000, NULL,
     "delay from submission to the first status check (next_check_at)", false},
    {"SCMFLOW_SUBMIT_PARALLEL", SF_CFG_INT, "8", 1, 64, NULL,
     "enroll calls to SCM in flight at once per replica (threads, one SCM client each)",
     false},
    {"SCMFLOW_SUBMIT_KEYGEN_THREADS", SF_CFG_INT, "0", 0, 64, NULL,
     "threads generating keys + CSRs of a claimed round (0 = one per online CPU, at most 8)",
     false},
    {"SCMFLOW_SCM_CA_BUNDLE", SF_CFG_STRING, "", 0, 0, NULL,
     "PEM file of CAs trusted for SCM's TLS (empty = system)", false},
    {"SCMFLOW_SCM_TIMEOUT", SF_CFG_DURATION, "60s", 100, 600000, NULL,
     "timeout of one SCM request", false},
};

static const char *const topics[] = {SF_TOPIC_ORDER_COMMANDS, NULL};

static const sf_worker_task tasks[] = {
    /* its own thread: enrolling (key generation, SCM calls) must not hold
     * up taking in commands, nor the other way round */
    {"submit.run", 50, os_task_submit, "SCMFLOW_SUBMIT_POLL", false, true},
};

typedef struct os_client {
    char *account;
    sf_scm_client *c;
} os_client;

struct os_runner {
    sf_worker *w;
    sf_sealer *seal;
    char topic_events[256];
    os_client clients[OS_MAX_CLIENTS];
    size_t nclients;
};

sf_sealer *os_sealer(os_runner *r) { return r->seal; }
sf_worker *os_worker(os_runner *r) { return r->w; }
const char *os_events_topic(os_runner *r) { return r->topic_events; }

int64_t os_setting_ms(os_runner *r, const char *name)
{
    return sf_config_duration_ms(sf_worker_config(r->w), name);
}

int64_t os_setting_int(os_runner *r, const char *name)
{
    return sf_config_int(sf_worker_config(r->w), name);
}

const char *os_setting_str(os_runner *r, const char *name)
{
    return sf_config_str(sf_worker_config(r->w), name);
}

void os_scm_drop(os_runner *r, const char *account)
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

static sf_scm_client *new_client(os_runner *r, const char *account, sf_error *err);

sf_scm_client *os_scm_new_client(os_runner *r, const char *account, sf_error *err)
{
    return new_client(r, account, err);
}

sf_scm_client *os_scm_for_account(os_runner *r, const char *account, sf_error *err)
{
    sf_scm_client *c;

    for (size_t i = 0; i < r->nclients; i++)
        if (strcmp(r->clients[i].account, account) == 0)
            return r->clients[i].c;
    if ((c = new_client(r, account, err)) == NULL)
        return NULL;
    if (r->nclients == OS_MAX_CLIENTS) {
        sf_scm_client_free(r->clients[0].c);
        free(r->clients[0].account);
        r->clients[0] = r->clients[--r->nclients];
    }
    r->clients[r->nclients].account = sf_strdup(account);
    if (r->clients[r->nclients].account == NULL) {
        sf_scm_client_free(c);
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        return NULL;
    }
    r->clients[r->nclients++].c = c;
    return c;
}

static sf_scm_client *new_client(os_runner *r, const char *account, sf_error *err)
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

    if (sf_db_exec(sf_worker_dbh(r->w), sql, 1, params, &res, err) < 0)
        goto out;
    if (PQntuples(res) != 1) {
        sf_error_set(err, SF_ERR_TRANSIENT, 0,
                     "SCM account \"%s\" is not configured (scmctl account set)", account);
        goto out;
    }
    (void)sf_snprintf(aad, sizeof(aad), OS_ACCOUNT_PASSWORD_AAD_FMT, account);
    if (sf_unseal(r->seal, PQgetvalue(res, 0, 3), aad, &pw, &pwlen, err) < 0)
        goto out;
    (void)sf_log_register_secret((const char *)pw);
    acct.base_url = PQgetvalue(res, 0, 0);
    acct.login = PQgetvalue(res, 0, 1);
    acct.customer_uri = PQgetvalue(res, 0, 2);
    acct.password = (const char *)pw;
    acct.auth = strcmp(PQgetvalue(res, 0, 4), "client_cert") == 0 ? SF_SCM_AUTH_CLIENT_CERT
                                                                   : SF_SCM_AUTH_PASSWORD;
    ca = os_setting_str(r, "SCMFLOW_SCM_CA_BUNDLE");
    acct.ca_bundle = ca[0] ? ca : NULL;
    acct.total_timeout_ms = (long)os_setting_ms(r, "SCMFLOW_SCM_TIMEOUT");
    /* bounded so that a call started within the lease ends within it
     * (os_task.c: an operation is not sent after its send-by time) */
    acct.retry_max_total_ms = 2 * acct.total_timeout_ms;
    c = sf_scm_client_new(&acct, err);
out:
    sf_secret_free(pw, pwlen);
    PQclear(res);
    return c;
}

static int init(sf_worker *w, void **ud, sf_error *err)
{
    os_runner *r = calloc(1, sizeof(*r));
    const char *keyfile;

    if (r == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    r->w = w;
    if (sf_config_duration_ms(sf_worker_config(w), "SCMFLOW_SUBMIT_LEASE") <
        3 * sf_config_duration_ms(sf_worker_config(w), "SCMFLOW_SCM_TIMEOUT") + 1000) {
        free(r);
        return sf_error_field(err, "SCMFLOW_SUBMIT_LEASE",
                              "SCMFLOW_SUBMIT_LEASE must be at least 3 x SCMFLOW_SCM_TIMEOUT + 1s "
                              "(an SCM call with its retries must end within the lease)");
    }
    keyfile = sf_config_str(sf_worker_config(w), "SCMFLOW_MASTER_KEY_FILE");
    if (keyfile == NULL || keyfile[0] == '\0') {
        free(r);
        return sf_error_field(err, "SCMFLOW_MASTER_KEY_FILE",
                              "SCMFLOW_MASTER_KEY_FILE is required (keys are sealed at rest)");
    }
    if ((r->seal = sf_sealer_from_config(sf_worker_config(w), err)) == NULL) {
        free(r);
        return -1;
    }
    (void)sf_worker_topic(w, SF_TOPIC_EVENTS, r->topic_events, sizeof(r->topic_events));
    sf_metrics_describe("scmflow_submit_operations_total", "counter",
                        "SCM operations of the submitter by kind and outcome");
    *ud = r;
    return 0;
}

/* Catalog results are cached for one batch attempt only (os_validate.c). */
static void batch_begin(sf_worker *w, void *ud)
{
    (void)w;
    (void)ud;
    os_validate_cache_reset();
}

static void fini(sf_worker *w, void *ud)
{
    os_runner *r = ud;

    (void)w;
    os_validate_cache_reset();
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
    .name = "order-submitter",
    .settings = settings,
    .nsettings = SF_ARRAY_LEN(settings),
    .topics = topics,
    .handler = os_handle,
    .on_invalid_data = os_on_invalid_data,
    .tasks = tasks,
    .ntasks = SF_ARRAY_LEN(tasks),
    .init = init,
    .fini = fini,
    .batch_begin = batch_begin,
};

int main(int argc, char **argv)
{
    return sf_worker_main(argc, argv, &def);
}
