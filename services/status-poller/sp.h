/*
 * sp.h - internals of the status-poller worker (not a library API).
 *
 *   main.c     settings, worker definition, runner state (init/fini), the
 *              status.commands handler (never talks to SCM) and the daily
 *              schedule (every open order due now, once across replicas)
 *   sp_poll.c  the poll task: claims due orders (FOR UPDATE SKIP LOCKED +
 *              lease), asks SCM for their status through sf_scm_batch,
 *              collects issued certificates, records every result with
 *              its events in one transaction per claimed batch
 *
 * Open order: state 'submitted' (SCM has it, no certificate collected yet).
 * An order whose certificate SCM says is issued but whose collect still
 * answers "being processed" stays 'submitted' (scm_status 'Issued') and is
 * retried on its ladder. Orders in other states with an ssl_id are checked
 * on demand only (scmflow.order.check_status for that order), e.g. to learn
 * that SCM revoked a stored certificate.
 */
#ifndef SP_H
#define SP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "sf_error.h"

struct sf_worker;
struct sf_scm_client;

#define SP_ACCOUNT_PASSWORD_AAD_FMT "account:%s:password" /* = scmctl's */
#define SP_MAX_LADDER 32
#define SP_MAX_CLIENTS 16

typedef struct sp_runner sp_runner;

struct sf_worker *sp_worker(sp_runner *r);
const char *sp_events_topic(sp_runner *r);
const char *sp_collected_topic(sp_runner *r);
/* Delay before check number step+1 of an order (the ladder, capped at the
 * daily interval; steps past the end repeat the last rung). */
int64_t sp_ladder_ms(sp_runner *r, int step);
int64_t sp_setting_ms(sp_runner *r, const char *name);
int64_t sp_setting_int(sp_runner *r, const char *name);
const char *sp_setting_str(sp_runner *r, const char *name);
/* Cached SCM client of an account (borrowed); sp_scm_drop forgets it. */
struct sf_scm_client *sp_scm_for_account(sp_runner *r, const char *account, sf_error *err);
void sp_scm_drop(sp_runner *r, const char *account);
/* Encode an event and add it to the outbox of topic (full name) in the
 * caller's open transaction on the worker's DB handle. */
int sp_outbox_tx(sp_runner *r, const char *topic, const char *type, const char *key,
                 const cJSON *data, const char *correlationid, sf_error *err);

/* The poll task (sp_poll.c). */
int sp_task_poll(struct sf_worker *w, void *ud, sf_error *err);

#endif
