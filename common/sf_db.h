/*
 * sf_db.h - PostgreSQL access for every worker: one connection per handle,
 * reconnect with backoff, parameterized queries with classified errors,
 * transactions and savepoints, embedded schema migrations, and the three
 * infrastructure tables of deploy/migrations/001_core.sql: inbox (dedup of
 * consumed messages), outbox (events to publish) and schedules (periodic work
 * that fires once across replicas).
 *
 * Threads: an sf_db handle is used by one thread at a time (like a PGconn).
 * Give each thread its own handle.
 *
 * Errors: every function that takes an sf_error fills it on failure:
 *   - SF_ERR_TRANSIENT: connection lost or refused, serialization failure
 *     (40001), deadlock (40P01), server shutdown/crash (57P01/57P02/57P03),
 *     out of resources (class 53), lock not available (55P03), statement
 *     timeout / cancel (57014). Retry the whole unit of work (the whole
 *     transaction) after sf_db_rollback().
 *   - SF_ERR_INVALID with code SF_DB_UNIQUE_VIOLATION: 23505, so callers can
 *     detect duplicates.
 *   - SF_ERR_FATAL: the database schema is newer than this binary, or the
 *     connection string cannot be parsed.
 *   - SF_ERR_INTERNAL: anything else (SQL errors, bad use of the API).
 * err->code is the SQLSTATE packed with SF_DB_SQLSTATE (0 when there is
 * none); err->msg starts with the server's primary message and ends with
 * "[SQLSTATE xxxxx]". Parameter values are NEVER put into messages (they
 * may be secrets).
 *
 * Connection loss: when a call finds the connection broken it fails with
 * SF_ERR_TRANSIENT; a transaction open at that moment is lost (the caller
 * retries the whole unit of work). Until the caller calls sf_db_rollback(),
 * every sf_db_exec() on the handle keeps failing with SF_ERR_TRANSIENT
 * ("transaction lost"), so the remaining statements of the lost transaction
 * can never run in autocommit on a new connection. Outside a transaction the
 * next call reconnects by itself (one attempt, only when the backoff delay
 * has elapsed; otherwise it fails at once with SF_ERR_TRANSIENT, never
 * blocking); sf_db_ensure() waits for a connection up to a timeout.
 */
#ifndef SF_DB_H
#define SF_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "sf_error.h"

typedef struct sf_db sf_db;

/* SQLSTATE packed into an int (err->code), PostgreSQL's own packing. */
#define SF_DB_SIXBIT(ch) (((ch) - '0') & 0x3F)
#define SF_DB_SQLSTATE(c1, c2, c3, c4, c5) \
    (SF_DB_SIXBIT(c1) + (SF_DB_SIXBIT(c2) << 6) + (SF_DB_SIXBIT(c3) << 12) + \
     (SF_DB_SIXBIT(c4) << 18) + (SF_DB_SIXBIT(c5) << 24))
#define SF_DB_UNIQUE_VIOLATION     SF_DB_SQLSTATE('2', '3', '5', '0', '5')
#define SF_DB_SERIALIZATION_FAILURE SF_DB_SQLSTATE('4', '0', '0', '0', '1')
#define SF_DB_DEADLOCK_DETECTED    SF_DB_SQLSTATE('4', '0', 'P', '0', '1')
/* Used when libpq reports a broken connection without a SQLSTATE. */
#define SF_DB_CONNECTION_FAILURE   SF_DB_SQLSTATE('0', '8', '0', '0', '6')

/* Hard limit on one bytea read by sf_db_get_bytea and on one outbox payload. */
#define SF_DB_MAX_BYTEA (64u * 1024u * 1024u)

/* ---- connection ---- */

typedef struct sf_db_opts {
    const char *application_name; /* fallback_application_name; NULL = "scmflow"
                                     (an application_name in the URL wins) */
    int connect_timeout_ms;       /* one connection attempt; 0 = 5000 */
    int backoff_initial_ms;       /* first reconnect delay; 0 = 100 */
    int backoff_max_ms;           /* cap of the doubling delay (+-25% jitter); 0 = 5000 */
    bool no_prepare;              /* never prepare statements (a pooler in transaction
                                     mode, e.g. PgBouncer < 1.21, cannot keep them) */
} sf_db_opts;

/* Statements with parameters prepared per connection (see sf_db.c run()). */
#define SF_DB_STMT_CACHE 128

/*
 * Connect to `url` (a libpq URL or key=value string). Notices go to
 * sf_log_pq_notice. Returns a handle (free with sf_db_close) or NULL with
 * err: SF_ERR_TRANSIENT when the server could not be reached or refused
 * (retry), SF_ERR_FATAL when the string cannot be parsed, SF_ERR_AUTH on an
 * authentication failure. The URL is never copied into err (it may hold a
 * password). opts may be NULL (defaults above).
 */
sf_db *sf_db_open(const char *url, sf_error *err);
sf_db *sf_db_open_opts(const char *url, const sf_db_opts *opts, sf_error *err);
/* Closes the connection (an open transaction is rolled back by the server). NULL ok. */
void sf_db_close(sf_db *db);

/*
 * Make sure the handle has a working connection, reconnecting with
 * exponential backoff + jitter (capped, see sf_db_opts). Waits at most
 * timeout_ms in total (a relative timeout; 0 = a single attempt if the
 * backoff delay has elapsed, no waiting). Returns 0 when connected, -1 with
 * SF_ERR_TRANSIENT when the timeout passed first. Does not run a query: use
 * sf_db_ping() to prove the server answers.
 */
int sf_db_ensure(sf_db *db, int timeout_ms, sf_error *err);
/* SELECT 1 (for /readyz). Reconnects like sf_db_exec. */
int sf_db_ping(sf_db *db, sf_error *err);
/* True when the last known connection state is OK (no round trip). */
bool sf_db_connected(const sf_db *db);
/* Number of successful reconnects since open (tests, metrics). */
uint64_t sf_db_reconnects(const sf_db *db);
/* The underlying connection, borrowed; NULL while disconnected. For things
 * this module does not wrap; do not close it, and do not keep it across
 * calls that may reconnect. */
PGconn *sf_db_pgconn(sf_db *db);
/* Backend process id of the current connection (0 when disconnected). */
int sf_db_backend_pid(const sf_db *db);

/* ---- queries ---- */

/*
 * Run one parameterized statement: params[i] is the text of $i+1, NULL =
 * SQL NULL (give types in the SQL: "$1::bigint"). nparams may be 0 with
 * params NULL. On success *res (if res is not NULL) receives the result,
 * which the caller frees with PQclear(); with res NULL the result is
 * discarded. On failure *res is untouched. Only one statement per call.
 */
int sf_db_exec(sf_db *db, const char *sql, int nparams, const char *const *params,
               PGresult **res, sf_error *err);
/*
 * Same with binary parameters: lengths[i]/formats[i] as in PQexecParams
 * (format 1 = binary, e.g. a bytea value of lengths[i] bytes; lengths and
 * formats may be NULL = all text). The result is in text format.
 */
int sf_db_exec_bin(sf_db *db, const char *sql, int nparams, const char *const *params,
                   const int *lengths, const int *formats, PGresult **res, sf_error *err);
/* Rows affected by an INSERT/UPDATE/DELETE result (PQcmdTuples), -1 if none. */
int64_t sf_db_affected(const PGresult *res);

/*
 * Cell readers: type-checked, never crash on bad data. row/col out of range,
 * SQL NULL, or text that is not the expected type is an error (-1 +
 * SF_ERR_INTERNAL naming the column in err->field); outputs are set only on
 * success. Strings are borrowed from res (valid until PQclear).
 */
int sf_db_get_str(const PGresult *res, int row, int col, const char **out, sf_error *err);
/* Like sf_db_get_str but SQL NULL is allowed: *out = NULL. */
int sf_db_get_str_opt(const PGresult *res, int row, int col, const char **out, sf_error *err);
int sf_db_get_i64(const PGresult *res, int row, int col, int64_t *out, sf_error *err);
int sf_db_get_i32(const PGresult *res, int row, int col, int32_t *out, sf_error *err);
/* Accepts PostgreSQL's text booleans "t"/"f" (also "true"/"false"). */
int sf_db_get_bool(const PGresult *res, int row, int col, bool *out, sf_error *err);
/* A bytea column in text (hex) format: *out is a fresh buffer the caller
 * frees (NUL-terminated for convenience, not counted in *len); limit
 * SF_DB_MAX_BYTEA. */
int sf_db_get_bytea(const PGresult *res, int row, int col, unsigned char **out, size_t *len,
                    sf_error *err);
bool sf_db_is_null(const PGresult *res, int row, int col);

/*
 * Error classification from a SQLSTATE (pure; exposed for tests and for
 * callers that run libpq themselves). Sets *code to the packed SQLSTATE
 * (0 when sqlstate is NULL or malformed). NULL/malformed -> SF_ERR_INTERNAL.
 */
sf_err_class sf_db_classify_sqlstate(const char *sqlstate, int *code);
/* SQLSTATE of the last failed call on this handle ("" when none / not a
 * server error). Valid until the next call. */
const char *sf_db_last_sqlstate(const sf_db *db);

/* ---- transactions ---- */

/* BEGIN (READ COMMITTED). Fails with SF_ERR_INTERNAL if one is open. */
int sf_db_begin(sf_db *db, sf_error *err);
/* BEGIN ISOLATION LEVEL SERIALIZABLE / REPEATABLE READ etc.: `mode` is one
 * of "serializable", "repeatable read", "read committed" (others refused). */
int sf_db_begin_isolation(sf_db *db, const char *mode, sf_error *err);
/* COMMIT. A commit that fails (serialization failure at commit, connection
 * lost) returns -1; the transaction is then over (rolled back or unknown:
 * with a connection loss the outcome is unknown, err is TRANSIENT). */
int sf_db_commit(sf_db *db, sf_error *err);
/* ROLLBACK. Always safe to call (no transaction open, connection dead, lost
 * transaction): clears the handle's transaction state. Returns -1 only when
 * the server refused a ROLLBACK on a live connection. */
int sf_db_rollback(sf_db *db, sf_error *err);
/* True between sf_db_begin and commit/rollback (also when lost). */
bool sf_db_in_transaction(const sf_db *db);
/* Savepoints inside a transaction. name: [A-Za-z_][A-Za-z0-9_]{0,62}. */
int sf_db_savepoint(sf_db *db, const char *name, sf_error *err);
int sf_db_release(sf_db *db, const char *name, sf_error *err);
int sf_db_rollback_to(sf_db *db, const char *name, sf_error *err);

/* ---- migrations ---- */

/* One embedded migration (deploy/migrations/NNN_name.sql, compiled in). */
typedef struct sf_db_migration {
    int version;       /* NNN */
    const char *name;  /* "NNN_name" */
    const char *sql;   /* the file's text */
} sf_db_migration;

/* The embedded migrations in ascending version order (generated at build
 * time into the library; static storage). */
const sf_db_migration *sf_db_migrations(size_t *count);

/*
 * Bring the schema up to date. Takes a session advisory lock (fixed key, so
 * concurrent starters wait for each other), creates schema_migrations if
 * needed, refuses (SF_ERR_FATAL) when the database records a version newer
 * than every embedded one (an old binary against a new schema), then applies
 * each missing version in its own transaction, in order, recording it in
 * schema_migrations. Must be called outside a transaction. Migration files
 * must not contain BEGIN/COMMIT nor statements that cannot run in a
 * transaction (CREATE INDEX CONCURRENTLY). Idempotent.
 */
int sf_db_migrate(sf_db *db, sf_error *err);
/* Highest applied version (0 when schema_migrations is absent or empty). */
int sf_db_schema_version(sf_db *db, int *version, sf_error *err);

/* ---- inbox (dedup of consumed messages) ---- */

/*
 * Record that `consumer` (e.g. the worker name) processes message_id.
 * Returns 1 when this is the first time (row inserted), 0 when it was
 * already processed (skip the message), -1 on error. Must run inside the
 * caller's transaction (SF_ERR_INTERNAL otherwise), so the claim commits or
 * rolls back together with the work. consumer and message_id: non-empty
 * UTF-8 of at most 512 bytes (else SF_ERR_INVALID, field "consumer"/"id").
 * A concurrent claim of the same id in another open transaction waits for
 * that transaction and then returns 0 (or 1 if it rolled back).
 */
int sf_db_inbox_claim(sf_db *db, const char *consumer, const char *message_id, sf_error *err);
/* Delete inbox rows older than older_than_ms (the dedup window). *deleted
 * may be NULL. */
int sf_db_inbox_cleanup(sf_db *db, int64_t older_than_ms, int64_t *deleted, sf_error *err);

/* ---- outbox (events to publish, written in the same transaction) ---- */

/* NOTIFY channel signalled (at commit) by every sf_db_outbox_add. */
#define SF_DB_OUTBOX_CHANNEL "scmflow_outbox"

/*
 * Queue a message for the relay: topic (full name), key (nullable), payload
 * of len bytes (binary safe, stored as bytea). Must run inside the caller's
 * transaction (SF_ERR_INTERNAL otherwise). Also notifies
 * SF_DB_OUTBOX_CHANNEL, delivered to listeners when the transaction commits.
 */
int sf_db_outbox_add(sf_db *db, const char *topic, const char *key, const void *payload,
                     size_t len, sf_error *err);

/*
 * Queue n text messages (events: JSON) for one topic in one statement, in
 * order: a round of results costs one round trip instead of n. keys[i] may
 * be NULL; payloads[i] must be valid UTF-8 without NUL (SF_ERR_INVALID
 * naming "payloads[i]" otherwise; nothing is queued then). Same transaction
 * rule and notification as sf_db_outbox_add. n = 0 does nothing.
 */
int sf_db_outbox_add_many(sf_db *db, const char *topic, size_t n, const char *const *keys,
                          const char *const *payloads, sf_error *err);

/* One fetch returns at most this many payload bytes in total (but always
 * at least one row). */
#define SF_DB_OUTBOX_FETCH_BYTES (16u * 1024u * 1024u)

typedef struct sf_outbox_row {
    int64_t id;
    char *topic;              /* owned by the array */
    char *key;                /* owned by the array; NULL when the row has none */
    unsigned char *payload;   /* owned by the array; NUL-terminated, not counted */
    size_t len;
} sf_outbox_row;

/*
 * Relay side. Fetch the oldest unsent rows (ascending id = insert order), at
 * most max. Only one relay may publish at a time across all replicas, or two
 * relays could publish rows of one key out of order: fetch takes
 * pg_try_advisory_xact_lock (fixed key) in a transaction. If the handle has
 * no transaction open, fetch begins one. In every case the transaction is
 * LEFT OPEN and the lock is held until the caller ends it: publish the rows,
 * call sf_db_outbox_mark_sent for the delivered ones, then sf_db_commit (or
 * sf_db_rollback). When another relay holds the lock, returns 0 with *n = 0
 * (the transaction is still open: end it too). On success *rows is an array
 * of *n rows (NULL when *n = 0) that the caller frees with
 * sf_db_outbox_rows_free. max is clamped to [1, 10000]; the total payload
 * of one fetch to SF_DB_OUTBOX_FETCH_BYTES (always at least one row).
 *
 * Order: ids are taken at INSERT time, not at commit. Rows of one key come
 * from the consumer of one partition, which handles its messages one
 * transaction after another, so for one key id order is commit order. Two
 * different workers emitting for the same key at the same instant have no
 * order between them anyway.
 */
int sf_db_outbox_fetch(sf_db *db, int max, sf_outbox_row **rows, size_t *n, sf_error *err);
/* Mark rows sent (sent_at = now()). Inside the fetch transaction or on its
 * own (autocommit). ids may be NULL when n = 0. */
int sf_db_outbox_mark_sent(sf_db *db, const int64_t *ids, size_t n, sf_error *err);
void sf_db_outbox_rows_free(sf_outbox_row *rows, size_t n);
/* Number of unsent rows. */
int sf_db_outbox_backlog(sf_db *db, int64_t *count, sf_error *err);
/* Delete sent rows whose sent_at is older than older_than_ms. *deleted may
 * be NULL. */
int sf_db_outbox_cleanup(sf_db *db, int64_t older_than_ms, int64_t *deleted, sf_error *err);

/* ---- schedules (periodic work that fires once across replicas) ---- */

/*
 * Decide whether this replica runs schedule `name` now. On first use the
 * row is created with next_run = now() (a fresh system runs once at start).
 * Then one atomic UPDATE ... WHERE next_run <= now() RETURNING claims the
 * run: exactly one of any number of racing replicas gets *fired = true; the
 * row's next_run moves to the previous next_run + interval (or now() +
 * interval when that is already past: no burst of catch-up runs after a
 * long stop), last_run = now(), last_owner = owner (nullable, e.g. host/pid).
 * The next run time lives in the database, so restarts neither skip nor
 * repeat a run. Call outside a transaction (each statement commits on its
 * own) or inside one (the claim then commits with it). interval_ms >= 1.
 */
int sf_db_schedule_due(sf_db *db, const char *name, int64_t interval_ms, const char *owner,
                       bool *fired, sf_error *err);
/* Make the schedule due now (next_run = now(); creates the row if absent):
 * the next sf_db_schedule_due of any replica fires. */
int sf_db_schedule_trigger_now(sf_db *db, const char *name, sf_error *err);
/* Milliseconds until the next run (<= 0: due now; the row absent counts as
 * due). */
int sf_db_schedule_next_in(sf_db *db, const char *name, int64_t *ms, sf_error *err);

/* ---- LISTEN / NOTIFY ---- */

/* LISTEN channel (an identifier, quoted safely). Listens are per
 * connection: after a reconnect, call it again (sf_db_reconnects tells). */
int sf_db_listen(sf_db *db, const char *channel, sf_error *err);
/* pg_notify(channel, payload) (payload nullable); delivered at commit. */
int sf_db_notify(sf_db *db, const char *channel, const char *payload, sf_error *err);
/* Wait up to timeout_ms for a notification on any listened channel (call
 * outside a transaction). Returns 1 when one or more arrived (all pending
 * ones are consumed), 0 on timeout, -1 on error (TRANSIENT on connection
 * loss). */
int sf_db_wait_notify(sf_db *db, int timeout_ms, sf_error *err);

#endif
