/*
 * catalog-sync - mirrors the SCM catalog (organizations, departments,
 * domains, profiles, custom fields) and imports the orders that already
 * exist in SCM. See README.md.
 *
 * Consumes <prefix>catalog.commands (scmflow.catalog.sync,
 * scmflow.orders.import): the handler only records a job (catalog_jobs).
 * Tasks: "catalog.jobs" runs due jobs on every replica (claimed with SKIP
 * LOCKED + lease); "catalog.sync_schedule" queues the weekly sync once
 * across replicas (sf_db_schedule_due: the next run lives in the DB).
 */
#include <stdlib.h>

#include "cs.h"
#include "sf_msg.h"
#include "sf_worker.h"
#include "sf_util.h"

static const sf_cfg_def settings[] = {
    {"SCMFLOW_CATALOG_SYNC_INTERVAL", SF_CFG_DURATION, "7d", 1000, 315360000000LL, NULL,
     "how often the whole catalog is synced (once across replicas)", false},
    {"SCMFLOW_CATALOG_JOB_POLL", SF_CFG_DURATION, "1s", 10, 3600000, NULL,
     "how often each replica looks for due sync/import jobs", false},
    {"SCMFLOW_CATALOG_LEASE", SF_CFG_DURATION, "120s", 1000, 86400000, NULL,
     "lease on a running job; a dead replica's job is taken over after it", false},
    {"SCMFLOW_CATALOG_RETRY_BASE", SF_CFG_DURATION, "30s", 10, 86400000, NULL,
     "first retry delay of a failed sync/import (doubles per attempt)", false},
    {"SCMFLOW_CATALOG_RETRY_MAX", SF_CFG_DURATION, "1h", 10, 604800000, NULL,
     "cap of the retry delay", false},
    {"SCMFLOW_CATALOG_MAX_ATTEMPTS", SF_CFG_INT, "10", 1, 1000, NULL,
     "attempts of a sync/import before it is given up", false},
    {"SCMFLOW_CATALOG_PROGRESS_INTERVAL", SF_CFG_DURATION, "2s", 100, 3600000, NULL,
     "at most one orders.import_progress event per interval", false},
    {"SCMFLOW_CATALOG_SLICE", SF_CFG_DURATION, "1s", 50, 600000, NULL,
     "an import works at most this long per run of the job task, then lets the loop serve "
     "Kafka and the outbox relay (progress events) before continuing", false},
    {"SCMFLOW_SCM_CA_BUNDLE", SF_CFG_STRING, "", 0, 0, NULL,
     "PEM file of CAs trusted for SCM's TLS (empty = system)", false},
};

static const char *const topics[] = {SF_TOPIC_CATALOG_COMMANDS, NULL};

static const sf_worker_task tasks[] = {
    {"catalog.sync_schedule", 7LL * 24 * 3600 * 1000, cs_task_schedule_sync,
     "SCMFLOW_CATALOG_SYNC_INTERVAL", true, false},
    {"catalog.jobs", 1000, cs_task_run_jobs, "SCMFLOW_CATALOG_JOB_POLL", false, false},
};

static int init(sf_worker *w, void **ud, sf_error *err)
{
    cs_runner *r = cs_runner_new(w, err);

    if (r == NULL)
        return -1;
    *ud = r;
    return 0;
}

static void fini(sf_worker *w, void *ud)
{
    (void)w;
    cs_runner_free(ud);
}

static const sf_worker_def def = {
    .name = "catalog-sync",
    .settings = settings,
    .nsettings = SF_ARRAY_LEN(settings),
    .topics = topics,
    .handler = cs_handle,
    .tasks = tasks,
    .ntasks = SF_ARRAY_LEN(tasks),
    .init = init,
    .fini = fini,
};

int main(int argc, char **argv)
{
    return sf_worker_main(argc, argv, &def);
}
