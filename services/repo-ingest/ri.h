/*
 * ri.h - internals of the repo-ingest worker (not a library API).
 *
 *   main.c      settings, worker definition, runner (init/fini), the
 *               certificates.collected handler and the not_stored retry task
 *   ri_store.c  one collected chain -> the repository: parse, order, verify
 *               (signatures, names, key), license count, keystore, rows and
 *               events, all in the caller's transaction
 *
 * Secrets at rest (sf_seal under SCMFLOW_MASTER_KEY_FILE), AADs shared with
 * order-submitter and scmctl:
 *   orders.private_key_sealed          "order:<order id>:key" (PKCS#8 PEM)
 *   orders.keystore_password_sealed    "order:<order id>:keystore_password"
 *   certificates.keystore_sealed       "certificate:<sha256 hex>:keystore"
 *                                      (the keystore bytes; sha256 hex =
 *                                      certificates.sha256_fingerprint)
 * certificates.sha256_fingerprint / sha1_fingerprint are lowercase hex
 * without separators (as in the certificate.stored event).
 */
#ifndef RI_H
#define RI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "sf_error.h"

struct sf_db;
struct sf_worker;
struct sf_worker_ctx;
struct sf_sealer;

#define RI_AAD_KEY_FMT "order:%s:key"
#define RI_AAD_KSPW_FMT "order:%s:keystore_password"
#define RI_AAD_KEYSTORE_FMT "certificate:%s:keystore"

typedef struct ri_runner ri_runner;

struct sf_worker *ri_worker(ri_runner *r);
struct sf_sealer *ri_sealer(ri_runner *r);
const char *ri_events_topic(ri_runner *r);
const char *ri_deadletter_topic(ri_runner *r);

/* Where events go: through the handler context (ctx non-NULL) or straight
 * into the outbox of db (a task's own transaction). */
typedef struct ri_out {
    ri_runner *r;
    struct sf_worker_ctx *ctx;
    struct sf_db *db;
    const char *correlationid;    /* nullable */
    const cJSON *original;        /* the consumed envelope (dead-letter copy), nullable */
} ri_out;

typedef enum ri_result {
    RI_STORED = 0,
    RI_ALREADY_STORED,
    RI_NOT_STORED,    /* license count reached: kept as not_stored */
    RI_REJECTED,      /* bad chain / mismatch: certificate.rejected + attention */
} ri_result;

/*
 * Ingest collected chain row chain_id (collected_chains, already inserted,
 * locked by the caller) of order_id inside the open transaction of o->db.
 * Returns 0 with *result, or -1 with err for infrastructure failures (DB,
 * sealing, out of memory): the caller rolls back and retries.
 */
int ri_store_chain(ri_out *o, int64_t chain_id, const char *order_id, int64_t ssl_id,
                   const char *chain, size_t chain_len, ri_result *result, sf_error *err);

#endif
