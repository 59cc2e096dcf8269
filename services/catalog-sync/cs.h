/*
 * cs.h - internals of the catalog-sync worker (not a library API).
 *
 *   cs_catalog.c  fetch the catalog from SCM (outside any transaction) into
 *                 normalized, type-checked JSON rows; apply them to the
 *                 catalog tables in the caller's transaction
 *   cs_jobs.c     the durable jobs (catalog_jobs, migration 010): command
 *                 handler inserts them, the runner task claims them with a
 *                 lease and runs syncs and imports
 *   cs_import.c   import of existing SCM orders, page by page, resumable
 */
#ifndef CS_H
#define CS_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "sf_error.h"

struct sf_db;
struct sf_scm_client;
struct sf_worker;
struct sf_sealer;

/* Hard limits on what one sync accepts from SCM. */
#define CS_MAX_ORGS 20000
#define CS_MAX_DOMAINS 100000
#define CS_MAX_PROFILES 5000
#define CS_MAX_CUSTOM_FIELDS 1000
#define CS_PAGE_SIZE 200

/* The catalog as fetched: arrays of normalized rows (see cs_catalog.c).
 * NULL arrays were not fetched (outside the scope). Owned; release with
 * cs_catalog_release. */
typedef struct cs_catalog {
    bool want_orgs, want_domains, want_profiles;
    cJSON *orgs;          /* [{id, parent_id, name, cert_types[], raw}] */
    cJSON *domains;       /* [{id, name, state, ..., delegations[], raw}] */
    cJSON *profiles;      /* [{id, name, description, terms[], key_types{}, use_secondary_org_name, raw}] */
    cJSON *profile_orgs;  /* [{profile_id, org_id}] */
    cJSON *custom_fields; /* [{id, name, mandatory}] */
} cs_catalog;

/* Fetch everything in scope. On error nothing is kept and err says why
 * (SF_ERR_INVALID with err->field = JSON path for a malformed response). */
int cs_catalog_fetch(struct sf_scm_client *scm, cs_catalog *cat, sf_error *err);
void cs_catalog_release(cs_catalog *cat);

/* Apply the fetched catalog for account inside the caller's open
 * transaction. *counts (caller frees) = {"organizations":{"added","changed",
 * "removed"}, "domains":{...}, "profiles":{...}, "custom_fields":{...}}. */
int cs_catalog_apply(struct sf_db *db, const char *account, const cs_catalog *cat,
                     cJSON **counts, sf_error *err);

/* Job runner state (one per process). */
typedef struct cs_runner cs_runner;

cs_runner *cs_runner_new(struct sf_worker *w, sf_error *err);
void cs_runner_free(cs_runner *r);

/* Periodic task: claim and run due jobs until none is due (or stop). */
int cs_task_run_jobs(struct sf_worker *w, void *ud, sf_error *err);
/* Periodic task (once across replicas): queue a scheduled sync for every
 * account. */
int cs_task_schedule_sync(struct sf_worker *w, void *ud, sf_error *err);

/* The SCM client of an account (password unsealed for the call only).
 * Caller frees with sf_scm_client_free. */
int cs_scm_for_account(cs_runner *r, const char *account, struct sf_scm_client **out,
                       sf_error *err);

/* Write an event to the outbox inside the caller's transaction (tasks have
 * no handler context). data borrowed; correlationid/key nullable. */
int cs_emit(cs_runner *r, const char *type, const char *key, const cJSON *data,
            const char *correlationid, sf_error *err);

/* Run one claimed import job (see cs_import.c). Returns 0 when finished or
 * paused cleanly (stop requested / lease lost), -1 with err on failure. */
int cs_import_run(cs_runner *r, int64_t job_id, const char *account, const char *command_id,
                  const cJSON *params, int64_t attempts, sf_error *err);

/* Instance id used as lease owner. */
const char *cs_runner_owner(const cs_runner *r);
struct sf_db *cs_runner_db(cs_runner *r);
bool cs_runner_stopping(const cs_runner *r);
int64_t cs_runner_progress_ms(const cs_runner *r);
int64_t cs_runner_lease_ms(const cs_runner *r);
/* How long one task run may work on an import before yielding. */
int64_t cs_runner_slice_ms(const cs_runner *r);
int64_t cs_runner_max_attempts(const cs_runner *r);
/* Delay before attempt attempts+1 (exponential, capped). */
int64_t cs_runner_backoff_ms(const cs_runner *r, int64_t attempts);

/* The command handler (catalog.commands). */
struct sf_worker_ctx;
struct sf_event;
int cs_handle(struct sf_worker_ctx *ctx, const struct sf_event *ev, sf_error *err);

#endif
