/*
 * os.h - internals of the order-submitter worker (not a library API).
 *
 *   main.c         settings, worker definition, runner state (init/fini)
 *   os_validate.c  validation of an enroll against the synced catalog,
 *                  collecting EVERY failure (order.rejected data.errors[])
 *   os_handle.c    the order.commands handler: validates, persists the
 *                  order and the SCM intent (scm_operations), emits events;
 *                  never talks to SCM
 *   os_task.c      the submit task: claims due scm_operations (SKIP LOCKED +
 *                  lease), generates keys/CSRs, calls SCM outside any
 *                  transaction, reconciles unknown outcomes, records results
 *
 * Secrets at rest (sf_seal, master key SCMFLOW_MASTER_KEY_FILE):
 *   orders.private_key_sealed / scm_operations.private_key_sealed:
 *       PKCS#8 PEM of the key, aad OS_AAD_KEY_FMT ("order:<id>:key")
 *   orders.keystore_password_sealed: aad OS_AAD_KSPW_FMT
 *       ("order:<id>:keystore_password")
 */
#ifndef OS_H
#define OS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "sf_error.h"

struct sf_db;
struct sf_worker;
struct sf_worker_ctx;
struct sf_event;
struct sf_sealer;
struct sf_cmd_enroll;
struct sf_csr_info;

#define OS_AAD_KEY_FMT "order:%s:key"
#define OS_AAD_KSPW_FMT "order:%s:keystore_password"
/* Marker put in the SCM comments of every enrollment, used to find an
 * enrollment whose outcome was unknown. */
#define OS_REF_MARK "scmflow-ref:"
#define OS_MAX_ERRORS 100

typedef struct os_runner os_runner;

/* Runner accessors (main.c). */
struct sf_sealer *os_sealer(os_runner *r);
struct sf_worker *os_worker(os_runner *r);
const char *os_events_topic(os_runner *r);
int64_t os_setting_ms(os_runner *r, const char *name);
int64_t os_setting_int(os_runner *r, const char *name);
const char *os_setting_str(os_runner *r, const char *name);
/* Cached SCM client of an account (password unsealed only to build it).
 * Borrowed; os_scm_drop forgets it (after an AUTH error). */
struct sf_scm_client *os_scm_for_account(os_runner *r, const char *account, sf_error *err);
void os_scm_drop(os_runner *r, const char *account);
/* A new, uncached client (for a worker thread; caller frees). */
struct sf_scm_client *os_scm_new_client(os_runner *r, const char *account, sf_error *err);

/* ---- validation (os_validate.c) ---- */

/* Collected failures: cJSON array of {code, message, field}. */
typedef struct os_errors {
    cJSON *arr;
} os_errors;
void os_errors_add(os_errors *e, const char *code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int os_errors_count(const os_errors *e);

/* What validation resolved (ids from the catalog). */
typedef struct os_resolved {
    char account[160];
    int64_t org_id;
    int64_t org_parent_id;   /* 0 when not a department */
    int64_t profile_id;
    char profile_name[260];
} os_resolved;

/*
 * Validate an enroll against the catalog (account given or default), and a
 * BYO CSR (csr_info non-NULL) against the order. Adds every failure to errs.
 * Returns 0 (check os_errors_count) or -1 with err for a DB failure.
 */
int os_validate_enroll(struct sf_db *db, const struct sf_cmd_enroll *e,
                       const struct sf_csr_info *csr_info, os_resolved *res, os_errors *errs,
                       sf_error *err);
/* Check names of a reissue (new SANs) against the catalog for the order's
 * organization; a name equal to cn is skipped. */
int os_validate_names(struct sf_db *db, const char *account, int64_t org_id,
                      const char *profile_name, const char *cn, char *const *sans,
                      size_t n_sans, const char *sans_field, os_errors *errs, sf_error *err);
/* The account to use: given, else the default, else the only one. 0 ok
 * (out filled), 1 not found, -1 DB error. */
int os_resolve_account(struct sf_db *db, const char *given, char *out, size_t size,
                       sf_error *err);
/* Forget the catalog query results cached for the current batch (call at
 * the start of every batch attempt: sf_worker_def.batch_begin). */
void os_validate_cache_reset(void);
/* Syntactic checks usable without the catalog. */
bool os_dns_name_valid(const char *name, bool allow_wildcard);
bool os_email_valid(const char *s);

/* ---- handler (os_handle.c) ---- */
int os_handle(struct sf_worker_ctx *ctx, const struct sf_event *ev, sf_error *err);
/* sf_worker_def.on_invalid_data: answer a command whose data breaks the
 * schema with order.rejected naming the field (it is dead-lettered too). */
int os_on_invalid_data(struct sf_worker_ctx *ctx, const struct sf_event *ev, const sf_error *why,
                       sf_error *err);

/* ---- task (os_task.c) ---- */
int os_task_submit(struct sf_worker *w, void *ud, sf_error *err);
/* Write an event to the outbox in the caller's open transaction. */
int os_emit_tx(os_runner *r, const char *type, const char *key, const cJSON *data,
               const char *correlationid, sf_error *err);

#endif
