/*
 * sf_db.c - PostgreSQL access: connection with reconnect/backoff, classified
 * errors, transactions, embedded migrations, inbox, outbox, schedules,
 * LISTEN/NOTIFY. See sf_db.h for the contract.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "sf_db.h"
#include "sf_log.h"
#include "sf_util.h"

/* Advisory lock keys: fixed so that every replica of every worker agrees.
 * ASCII "scmflowM" / "scmflowO" so they cannot collide with small ids other
 * modules might lock. */
#define MIGRATE_LOCK_KEY "8314026339524622157"
#define OUTBOX_LOCK_KEY "8314026339524622159"

#define MAX_IDENT_LEN 512      /* consumer, message id, schedule name, topic */
#define MAX_FETCH 10000
#define SQL_SNIPPET_LEN 60     /* how much of the statement an error quotes */

struct sf_db {
    PGconn *conn;
    char *conninfo;            /* may hold a password: zeroed on close */
    char *appname;
    int connect_timeout_ms;
    int backoff_initial_ms;
    int backoff_max_ms;
    int backoff_ms;            /* delay after the next failed attempt */
    int64_t next_attempt_ms;   /* monotonic; 0 = attempt now */
    bool in_txn;               /* sf_db_begin .. commit/rollback */
    bool txn_lost;             /* connection died inside the transaction */
    bool ever_connected;
    uint64_t reconnects;
    unsigned int rand_state;
    char sqlstate[6];
    /* Statements prepared on this connection (see run()): gone with it. */
    struct {
        char *sql;
        int nparams;
    } stmts[SF_DB_STMT_CACHE];
    int nstmts;
    unsigned stmt_gen;         /* part of the names: bumped when the cache is dropped */
    bool no_prepare;
};

/* ---------------------------------------------------------------------- */
/* classification                                                          */

static bool sqlstate_ok(const char *s)
{
    size_t i;

    if (s == NULL)
        return false;
    for (i = 0; i < 5; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z')))
            return false;
    }
    return s[5] == '\0';
}

sf_err_class sf_db_classify_sqlstate(const char *s, int *code)
{
    if (!sqlstate_ok(s)) {
        if (code)
            *code = 0;
        return SF_ERR_INTERNAL;
    }
    if (code)
        *code = SF_DB_SQLSTATE(s[0], s[1], s[2], s[3], s[4]);
    if (strncmp(s, "08", 2) == 0)                 /* connection exception */
        return SF_ERR_TRANSIENT;
    if (strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0)
        return SF_ERR_TRANSIENT;                  /* serialization, deadlock */
    if (strcmp(s, "57P01") == 0 || strcmp(s, "57P02") == 0 || strcmp(s, "57P03") == 0)
        return SF_ERR_TRANSIENT;                  /* admin shutdown, crash, cannot connect now */
    if (strncmp(s, "53", 2) == 0)                 /* out of resources (too many connections) */
        return SF_ERR_TRANSIENT;
    if (strcmp(s, "55P03") == 0 || strcmp(s, "57014") == 0)
        return SF_ERR_TRANSIENT;                  /* lock timeout, statement timeout */
    if (strcmp(s, "23505") == 0)
        return SF_ERR_INVALID;                    /* code SF_DB_UNIQUE_VIOLATION */
    return SF_ERR_INTERNAL;
}

const char *sf_db_last_sqlstate(const sf_db *db)
{
    return db ? db->sqlstate : "";
}

/* A short, single-line quote of our own SQL text (never of parameter
 * values, which travel separately). */
static void sql_snippet(const char *sql, char *buf, size_t size)
{
    size_t o = 0;
    bool space = false;

    for (; sql && *sql && o + 4 < size && o < SQL_SNIPPET_LEN; sql++) {
        unsigned char c = (unsigned char)*sql;
        if (c == '\n' || c == '\t' || c == '\r' || c == ' ') {
            space = o > 0;
            continue;
        }
        if (space) {
            buf[o++] = ' ';
            space = false;
        }
        buf[o++] = (c < 0x20 || c == '"') ? '?' : (char)c;
    }
    if (sql && *sql && o + 4 <= size) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
}

/* Copy a libpq message onto one line without the trailing newline. */
static void one_line(const char *in, char *buf, size_t size)
{
    size_t o = 0;

    for (; in && *in && o + 1 < size; in++)
        buf[o++] = (*in == '\n' || *in == '\r') ? ' ' : *in;
    while (o > 0 && buf[o - 1] == ' ')
        o--;
    buf[o] = '\0';
}

/* one_line() that also replaces every "quoted" fragment with "***":
 * libpq's connection-string parse errors quote the offending text, which
 * may be (part of) a password. */
static void one_line_redacted(const char *in, char *buf, size_t size)
{
    size_t o = 0;
    bool quoted = false;

    for (; in && *in && o + 4 < size; in++) {
        if (*in == '"') {
            quoted = !quoted;
            buf[o++] = '"';
            if (quoted) {
                buf[o++] = '*';
                buf[o++] = '*';
                buf[o++] = '*';
            }
            continue;
        }
        if (quoted)
            continue;
        buf[o++] = (*in == '\n' || *in == '\r') ? ' ' : *in;
    }
    while (o > 0 && buf[o - 1] == ' ')
        o--;
    buf[o] = '\0';
}

/* ---------------------------------------------------------------------- */
/* connection                                                              */

static int jitter(sf_db *db, int ms)
{
    /* +-25%: replicas that lost the server together do not retry in step. */
    int span = ms / 2;
    int r;

    if (span <= 0)
        return ms;
    r = rand_r(&db->rand_state) % (span + 1);
    return ms - span / 2 + r;
}

/* Forget the prepared statements (the connection that held them is gone,
 * or they must be re-planned). */
static void stmts_clear(sf_db *db)
{
    for (int i = 0; i < db->nstmts; i++)
        free(db->stmts[i].sql);
    db->nstmts = 0;
}

static void drop_conn(sf_db *db)
{
    stmts_clear(db);
    if (db->conn) {
        PQfinish(db->conn);
        db->conn = NULL;
    }
    if (db->in_txn)
        db->txn_lost = true;
}

static sf_err_class classify_connect_failure(const char *msg)
{
    if (msg && (strstr(msg, "authentication failed") || strstr(msg, "no pg_hba.conf entry") ||
                strstr(msg, "password is required") || strstr(msg, "permission denied")))
        return SF_ERR_AUTH;
    return SF_ERR_TRANSIENT;
}

/* One connection attempt that gives up at the monotonic deadline. */
static int connect_once(sf_db *db, int64_t deadline, sf_error *err)
{
    const char *kw[] = {"fallback_application_name", "dbname", NULL};
    const char *val[] = {db->appname, db->conninfo, NULL};
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    PGconn *c;
    char line[400];

    c = PQconnectStartParams(kw, val, 1);
    if (c == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "could not connect to database: out of memory");
    if (PQstatus(c) == CONNECTION_BAD)
        goto failed;
    for (;;) {
        struct pollfd pfd;
        int64_t left;
        int rc;

        if (st == PGRES_POLLING_OK)
            break;
        if (st == PGRES_POLLING_FAILED)
            goto failed;
        left = deadline - sf_now_mono_ms();
        if (left <= 0) {
            PQfinish(c);
            return sf_error_set(err, SF_ERR_TRANSIENT, SF_DB_CONNECTION_FAILURE,
                                "could not connect to database: timeout");
        }
        pfd.fd = PQsocket(c);
        pfd.events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT;
        pfd.revents = 0;
        if (pfd.fd < 0)
            goto failed;
        rc = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (rc < 0 && errno != EINTR)
            goto failed;
        if (rc <= 0)
            continue;
        st = PQconnectPoll(c);
    }
    PQsetNoticeProcessor(c, sf_log_pq_notice, NULL);
    stmts_clear(db);
    db->conn = c;
    return 0;

failed:
    one_line(PQerrorMessage(c), line, sizeof(line));
    {
        sf_err_class cls = classify_connect_failure(line);
        PQfinish(c);
        return sf_error_set(err, cls, SF_DB_CONNECTION_FAILURE, "could not connect to database: %s",
                            line[0] ? line : "unknown error");
    }
}

int sf_db_ensure(sf_db *db, int timeout_ms, sf_error *err)
{
    int64_t start, deadline;

    if (db == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_db_ensure: no handle");
    if (db->conn && PQstatus(db->conn) == CONNECTION_OK)
        return 0;
    drop_conn(db);
    if (timeout_ms < 0)
        timeout_ms = 0;
    start = sf_now_mono_ms();
    deadline = start + timeout_ms;
    for (;;) {
        int64_t now = sf_now_mono_ms();
        int64_t attempt_deadline;
        sf_error e1;

        if (now < db->next_attempt_ms) {
            if (db->next_attempt_ms > deadline)
                return sf_error_set(err, SF_ERR_TRANSIENT, SF_DB_CONNECTION_FAILURE,
                                    "not connected to database (next attempt in %" PRId64 " ms)",
                                    db->next_attempt_ms - now);
            /* A bounded wait for the backoff delay, never past the caller's deadline. */
            (void)poll(NULL, 0, (int)(db->next_attempt_ms - now));
            continue;
        }
        attempt_deadline = now + db->connect_timeout_ms;
        if (timeout_ms > 0 && deadline > now && deadline < attempt_deadline)
            attempt_deadline = deadline;
        sf_error_clear(&e1);
        if (connect_once(db, attempt_deadline, &e1) == 0) {
            if (db->ever_connected) {
                db->reconnects++;
                sf_log_info("reconnected to database");
            }
            db->ever_connected = true;
            db->backoff_ms = db->backoff_initial_ms;
            db->next_attempt_ms = 0;
            return 0;
        }
        now = sf_now_mono_ms();
        db->next_attempt_ms = now + jitter(db, db->backoff_ms);
        db->backoff_ms = db->backoff_ms >= db->backoff_max_ms / 2 ? db->backoff_max_ms
                                                                   : db->backoff_ms * 2;
        sf_log_debug("database connection attempt failed: %s", e1.msg);
        if (e1.cls != SF_ERR_TRANSIENT || now >= deadline) {
            if (err)
                *err = e1;
            return -1;
        }
    }
}

sf_db *sf_db_open_opts(const char *url, const sf_db_opts *opts, sf_error *err)
{
    sf_db *db = NULL;
    PQconninfoOption *parsed;
    char *perr = NULL;

    if (url == NULL) {
        sf_error_set(err, SF_ERR_FATAL, 0, "database URL is not set");
        return NULL;
    }
    /* Parse first so a malformed string is a configuration error, not a
     * transient one that would be retried forever. */
    parsed = PQconninfoParse(url, &perr);
    if (parsed == NULL) {
        char line[300];
        one_line_redacted(perr ? perr : "out of memory", line, sizeof(line));
        sf_error_set(err, perr ? SF_ERR_FATAL : SF_ERR_INTERNAL, 0,
                     "invalid database connection string: %s", line);
        PQfreemem(perr);
        return NULL;
    }
    PQconninfoFree(parsed);
    db = calloc(1, sizeof(*db));
    if (db == NULL)
        goto oom;
    db->conninfo = sf_strdup(url);
    db->appname = sf_strdup(opts && opts->application_name ? opts->application_name : "scmflow");
    if (db->conninfo == NULL || db->appname == NULL)
        goto oom;
    db->connect_timeout_ms = opts && opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : 5000;
    db->backoff_initial_ms = opts && opts->backoff_initial_ms > 0 ? opts->backoff_initial_ms : 100;
    db->backoff_max_ms = opts && opts->backoff_max_ms > 0 ? opts->backoff_max_ms : 5000;
    db->no_prepare = opts && opts->no_prepare;
    if (db->backoff_initial_ms > db->backoff_max_ms)
        db->backoff_initial_ms = db->backoff_max_ms;
    db->backoff_ms = db->backoff_initial_ms;
    db->rand_state = (unsigned int)sf_now_wall_ms() ^ (unsigned int)getpid() ^
                     (unsigned int)(uintptr_t)db;
    if (sf_db_ensure(db, 0, err) < 0) {
        sf_db_close(db);
        return NULL;
    }
    return db;
oom:
    sf_db_close(db);
    sf_error_set(err, SF_ERR_INTERNAL, 0, "could not open database handle: out of memory");
    return NULL;
}

sf_db *sf_db_open(const char *url, sf_error *err)
{
    return sf_db_open_opts(url, NULL, err);
}

void sf_db_close(sf_db *db)
{
    if (db == NULL)
        return;
    if (db->conn)
        PQfinish(db->conn);
    stmts_clear(db);
    if (db->conninfo) {
        sf_memzero(db->conninfo, strlen(db->conninfo));
        free(db->conninfo);
    }
    free(db->appname);
    free(db);
}

bool sf_db_connected(const sf_db *db)
{
    return db && db->conn && PQstatus(db->conn) == CONNECTION_OK;
}

uint64_t sf_db_reconnects(const sf_db *db)
{
    return db ? db->reconnects : 0;
}

PGconn *sf_db_pgconn(sf_db *db)
{
    return sf_db_connected(db) ? db->conn : NULL;
}

int sf_db_backend_pid(const sf_db *db)
{
    return sf_db_connected(db) ? PQbackendPID(db->conn) : 0;
}

/* ---------------------------------------------------------------------- */
/* statements                                                              */

static bool txn_open_on_server(const sf_db *db)
{
    PGTransactionStatusType t;

    if (db->conn == NULL)
        return false;
    t = PQtransactionStatus(db->conn);
    return t == PQTRANS_INTRANS || t == PQTRANS_INERROR || t == PQTRANS_ACTIVE;
}

/* Turn a failed result into err. Server messages of class 22 (data
 * exceptions) quote the offending value, which may be a secret: those are
 * replaced by a generic text naming only the column. */
static int result_error(sf_db *db, const char *sql, const PGresult *r, sf_error *err)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    char snip[SQL_SNIPPET_LEN + 8];
    char line[300];
    sf_err_class cls;
    int code = 0;

    sql_snippet(sql, snip, sizeof(snip));
    if (!sqlstate_ok(state) || db->conn == NULL || PQstatus(db->conn) != CONNECTION_OK) {
        if (db->conn == NULL || PQstatus(db->conn) != CONNECTION_OK) {
            /* The connection broke: anything in flight is lost. */
            one_line(primary ? primary : (db->conn ? PQerrorMessage(db->conn) : ""), line,
                     sizeof(line));
            if (sqlstate_ok(state))
                (void)sf_snprintf(db->sqlstate, sizeof(db->sqlstate), "%s", state);
            drop_conn(db);
            db->next_attempt_ms = 0; /* the first reconnect is immediate */
            return sf_error_set(err, SF_ERR_TRANSIENT,
                                sqlstate_ok(state) ? SF_DB_SQLSTATE(state[0], state[1], state[2],
                                                                    state[3], state[4])
                                                   : SF_DB_CONNECTION_FAILURE,
                                "lost database connection during \"%s\": %s [SQLSTATE %s]", snip,
                                line[0] ? line : "connection closed",
                                sqlstate_ok(state) ? state : "08006");
        }
        one_line(db->conn ? PQerrorMessage(db->conn) : "", line, sizeof(line));
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "could not execute \"%s\": %s", snip,
                            line[0] ? line : "unknown error");
    }
    (void)sf_snprintf(db->sqlstate, sizeof(db->sqlstate), "%s", state);
    cls = sf_db_classify_sqlstate(state, &code);
    if (strncmp(state, "22", 2) == 0) {
        const char *col = PQresultErrorField(r, PG_DIAG_COLUMN_NAME);
        (void)sf_snprintf(line, sizeof(line), "invalid data value%s%s", col ? " for column " : "",
                          col ? col : "");
    } else {
        one_line(primary ? primary : "unknown error", line, sizeof(line));
    }
    sf_error_set(err, cls, code, "could not execute \"%s\": %s [SQLSTATE %s]", snip, line, state);
    if (err && code == SF_DB_UNIQUE_VIOLATION) {
        const char *cons = PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME);
        (void)sf_snprintf(err->field, sizeof(err->field), "%s", cons ? cons : "");
    }
    return -1;
}

/*
 * A statement with parameters is prepared once per connection (named
 * "sf<N>") and then executed with PQexecPrepared: parsing and planning the
 * same CTEs again on every call was a third of the server's CPU in the
 * order benchmark. Statements are recognised by their text (dynamic SQL
 * gets its own entries until the cache is full; later ones run unprepared).
 * Returns the index, or -1 to run unprepared (r set when PREPARE itself
 * failed: its error is the statement's error).
 */
static int stmt_prepared(sf_db *db, const char *sql, int nparams, PGresult **r)
{
    char name[32];
    PGresult *pr;

    *r = NULL;
    for (int i = 0; i < db->nstmts; i++)
        if (db->stmts[i].nparams == nparams && strcmp(db->stmts[i].sql, sql) == 0)
            return i;
    if (db->no_prepare || db->nstmts >= SF_DB_STMT_CACHE)
        return -1;
    (void)sf_snprintf(name, sizeof(name), "sf%u_%d", db->stmt_gen, db->nstmts);
    pr = PQprepare(db->conn, name, sql, nparams, NULL);
    if (pr == NULL || PQresultStatus(pr) != PGRES_COMMAND_OK) {
        *r = pr;
        return -1;
    }
    PQclear(pr);
    if ((db->stmts[db->nstmts].sql = sf_strdup(sql)) == NULL) {
        /* prepared but not remembered: the name is taken, stop caching */
        db->no_prepare = true;
        return -1;
    }
    db->stmts[db->nstmts].nparams = nparams;
    return db->nstmts++;
}

/*
 * The one way statements reach the server. nparams < 0 runs `sql` with
 * PQexec (several statements, no parameters: embedded migrations only).
 */
static int run(sf_db *db, const char *sql, int nparams, const char *const *params,
               const int *lengths, const int *formats, int result_format, PGresult **res,
               sf_error *err)
{
    PGresult *r = NULL;
    ExecStatusType st;

    if (db == NULL || sql == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_db: no handle or statement");
    db->sqlstate[0] = '\0';
    if (db->txn_lost)
        return sf_error_set(err, SF_ERR_TRANSIENT, SF_DB_CONNECTION_FAILURE,
                            "database transaction lost with the connection: roll back and retry");
    if (db->conn == NULL || PQstatus(db->conn) != CONNECTION_OK) {
        if (db->in_txn) {
            drop_conn(db);
            return sf_error_set(err, SF_ERR_TRANSIENT, SF_DB_CONNECTION_FAILURE,
                                "database transaction lost with the connection: roll back and retry");
        }
        if (sf_db_ensure(db, 0, err) < 0)
            return -1;
    }
    /* Also covers a transaction opened with a raw "BEGIN": its loss must
     * not let later statements run in autocommit either. */
    if (txn_open_on_server(db))
        db->in_txn = true;
    if (nparams < 0) {
        r = PQexec(db->conn, sql);
    } else {
        /* statements without parameters (BEGIN, COMMIT, LISTEN) are cheap
         * to parse and are not cached */
        int k = nparams > 0 ? stmt_prepared(db, sql, nparams, &r) : -1;

        if (k >= 0) {
            char name[32];

            (void)sf_snprintf(name, sizeof(name), "sf%u_%d", db->stmt_gen, k);
            r = PQexecPrepared(db->conn, name, nparams, params, lengths, formats, result_format);
        } else if (r == NULL) {
            r = PQexecParams(db->conn, sql, nparams, NULL, nparams > 0 ? params : NULL,
                             nparams > 0 ? lengths : NULL, nparams > 0 ? formats : NULL,
                             result_format);
        }
    }
    st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        db->in_txn = txn_open_on_server(db);
        if (res)
            *res = r;
        else
            PQclear(r);
        return 0;
    }
    if (st == PGRES_EMPTY_QUERY) {
        PQclear(r);
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_db: empty statement");
    }
    result_error(db, sql, r, err);
    /* A schema change under a running worker: the server refuses a
     * prepared plan whose result type changed (0A000, "cached plan must not
     * change result type"). Forget the prepared statements (new names: the
     * old ones stay on the server, unused) so that the caller's retry of
     * its unit of work prepares them again. */
    if (db->nstmts > 0 && strcmp(db->sqlstate, "0A000") == 0) {
        stmts_clear(db);
        db->stmt_gen++;
        if (err)
            err->cls = SF_ERR_TRANSIENT;
    }
    PQclear(r);
    return -1;
}

int sf_db_exec(sf_db *db, const char *sql, int nparams, const char *const *params,
               PGresult **res, sf_error *err)
{
    if (nparams < 0 || (nparams > 0 && params == NULL))
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_db_exec: bad parameter list");
    return run(db, sql, nparams, params, NULL, NULL, 0, res, err);
}

int sf_db_exec_bin(sf_db *db, const char *sql, int nparams, const char *const *params,
                   const int *lengths, const int *formats, PGresult **res, sf_error *err)
{
    if (nparams < 0 || (nparams > 0 && params == NULL))
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_db_exec_bin: bad parameter list");
    return run(db, sql, nparams, params, lengths, formats, 0, res, err);
}

int sf_db_ping(sf_db *db, sf_error *err)
{
    return run(db, "SELECT 1", 0, NULL, NULL, NULL, 0, NULL, err);
}

int64_t sf_db_affected(const PGresult *res)
{
    int64_t v;
    const char *s = res ? PQcmdTuples((PGresult *)res) : NULL;

    if (s == NULL || *s == '\0' || sf_str_to_i64(s, 0, INT64_MAX, &v) < 0)
        return -1;
    return v;
}

/* ---------------------------------------------------------------------- */
/* cell readers                                                            */

static int cell_error(sf_error *err, const PGresult *res, int col, const char *what)
{
    const char *name = NULL;

    if (res && col >= 0 && col < PQnfields(res))
        name = PQfname(res, col);
    sf_error_set(err, SF_ERR_INTERNAL, 0, "database column %s%s%s: %s", name ? "\"" : "",
                 name ? name : "?", name ? "\"" : "", what);
    if (err && name)
        (void)sf_snprintf(err->field, sizeof(err->field), "%s", name);
    return -1;
}

/* Common checks; returns the cell text (never NULL) or NULL after setting err. */
static const char *cell(const PGresult *res, int row, int col, bool allow_null, bool *is_null,
                        sf_error *err)
{
    *is_null = false;
    if (res == NULL) {
        cell_error(err, res, col, "no result");
        return NULL;
    }
    if (row < 0 || row >= PQntuples(res) || col < 0 || col >= PQnfields(res)) {
        cell_error(err, res, col, "row or column out of range");
        return NULL;
    }
    if (PQgetisnull(res, row, col)) {
        *is_null = true;
        if (!allow_null)
            cell_error(err, res, col, "unexpected NULL");
        return NULL;
    }
    if (PQfformat(res, col) != 0) {
        cell_error(err, res, col, "binary format not supported");
        return NULL;
    }
    return PQgetvalue(res, row, col);
}

bool sf_db_is_null(const PGresult *res, int row, int col)
{
    if (res == NULL || row < 0 || row >= PQntuples(res) || col < 0 || col >= PQnfields(res))
        return true;
    return PQgetisnull(res, row, col) != 0;
}

int sf_db_get_str(const PGresult *res, int row, int col, const char **out, sf_error *err)
{
    bool isnull;
    const char *v = cell(res, row, col, false, &isnull, err);

    if (v == NULL)
        return -1;
    *out = v;
    return 0;
}

int sf_db_get_str_opt(const PGresult *res, int row, int col, const char **out, sf_error *err)
{
    bool isnull;
    const char *v = cell(res, row, col, true, &isnull, err);

    if (v == NULL && !isnull)
        return -1;
    *out = v;
    return 0;
}

int sf_db_get_i64(const PGresult *res, int row, int col, int64_t *out, sf_error *err)
{
    bool isnull;
    int64_t v;
    const char *s = cell(res, row, col, false, &isnull, err);

    if (s == NULL)
        return -1;
    if (sf_str_to_i64(s, INT64_MIN, INT64_MAX, &v) < 0)
        return cell_error(err, res, col, "not an integer");
    *out = v;
    return 0;
}

int sf_db_get_i32(const PGresult *res, int row, int col, int32_t *out, sf_error *err)
{
    bool isnull;
    int64_t v;
    const char *s = cell(res, row, col, false, &isnull, err);

    if (s == NULL)
        return -1;
    if (sf_str_to_i64(s, INT32_MIN, INT32_MAX, &v) < 0)
        return cell_error(err, res, col, "not a 32-bit integer");
    *out = (int32_t)v;
    return 0;
}

int sf_db_get_bool(const PGresult *res, int row, int col, bool *out, sf_error *err)
{
    bool isnull;
    const char *s = cell(res, row, col, false, &isnull, err);

    if (s == NULL)
        return -1;
    if (strcmp(s, "t") == 0 || strcmp(s, "true") == 0) {
        *out = true;
        return 0;
    }
    if (strcmp(s, "f") == 0 || strcmp(s, "false") == 0) {
        *out = false;
        return 0;
    }
    return cell_error(err, res, col, "not a boolean");
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int sf_db_get_bytea(const PGresult *res, int row, int col, unsigned char **out, size_t *len,
                    sf_error *err)
{
    bool isnull;
    const char *s = cell(res, row, col, false, &isnull, err);
    size_t n, i;
    unsigned char *buf;

    if (s == NULL)
        return -1;
    /* Only the hex output format (the default since PostgreSQL 9.0). */
    n = (size_t)PQgetlength(res, row, col);
    if (n < 2 || s[0] != '\\' || s[1] != 'x' || (n - 2) % 2 != 0)
        return cell_error(err, res, col, "not a bytea in hex format");
    if ((n - 2) / 2 > SF_DB_MAX_BYTEA)
        return cell_error(err, res, col, "bytea value too large");
    buf = malloc((n - 2) / 2 + 1);
    if (buf == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    for (i = 0; i < (n - 2) / 2; i++) {
        int hi = hexval(s[2 + 2 * i]), lo = hexval(s[3 + 2 * i]);
        if (hi < 0 || lo < 0) {
            free(buf);
            return cell_error(err, res, col, "not a bytea in hex format");
        }
        buf[i] = (unsigned char)(hi << 4 | lo);
    }
    buf[i] = '\0';
    *out = buf;
    *len = i;
    return 0;
}

/* ---------------------------------------------------------------------- */
/* transactions                                                            */

static int begin_sql(sf_db *db, const char *sql, sf_error *err)
{
    if (db == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_db_begin: no handle");
    if (db->in_txn || db->txn_lost)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_db_begin: a transaction is already open");
    /* The server holds a transaction (or an unfinished command) that no
     * caller owns: left by a failure path (seen once in repo-ingest after
     * its backend was terminated: every later batch failed here). Nobody
     * can finish it on this connection, so start over on a new one. */
    if (txn_open_on_server(db))
        drop_conn(db);
    if (run(db, sql, 0, NULL, NULL, NULL, 0, NULL, err) < 0)
        return -1;
    db->in_txn = true;
    return 0;
}

int sf_db_begin(sf_db *db, sf_error *err)
{
    return begin_sql(db, "BEGIN", err);
}

int sf_db_begin_isolation(sf_db *db, const char *mode, sf_error *err)
{
    if (mode && strcmp(mode, "serializable") == 0)
        return begin_sql(db, "BEGIN ISOLATION LEVEL SERIALIZABLE", err);
    if (mode && strcmp(mode, "repeatable read") == 0)
        return begin_sql(db, "BEGIN ISOLATION LEVEL REPEATABLE READ", err);
    if (mode && strcmp(mode, "read committed") == 0)
        return begin_sql(db, "BEGIN ISOLATION LEVEL READ COMMITTED", err);
    return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_db_begin_isolation: unknown mode");
}

int sf_db_commit(sf_db *db, sf_error *err)
{
    PGresult *r = NULL;
    int rc;

    if (db == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_db_commit: no handle");
    if (db->txn_lost) {
        db->txn_lost = false;
        db->in_txn = false;
        return sf_error_set(err, SF_ERR_TRANSIENT, SF_DB_CONNECTION_FAILURE,
                            "database transaction lost with the connection: retry");
    }
    rc = run(db, "COMMIT", 0, NULL, NULL, NULL, 0, &r, err);
    db->in_txn = false;
    db->txn_lost = false;
    if (rc < 0)
        return -1;
    /* COMMIT of an aborted transaction "succeeds" with the tag ROLLBACK. */
    if (strcmp(PQcmdStatus(r), "ROLLBACK") == 0) {
        PQclear(r);
        return sf_error_set(err, SF_ERR_INTERNAL, 0,
                            "could not commit: the transaction had failed and was rolled back");
    }
    PQclear(r);
    return 0;
}

int sf_db_rollback(sf_db *db, sf_error *err)
{
    bool lost;

    if (db == NULL)
        return 0;
    lost = db->txn_lost;
    db->in_txn = false;
    db->txn_lost = false;
    if (lost || db->conn == NULL || PQstatus(db->conn) != CONNECTION_OK ||
        !txn_open_on_server(db))
        return 0;
    if (run(db, "ROLLBACK", 0, NULL, NULL, NULL, 0, NULL, err) < 0) {
        /* A connection that died under the ROLLBACK took the transaction
         * with it; run() saw the server's transaction and marked it lost,
         * which would fail every later BEGIN. A ROLLBACK refused on a live
         * connection: end the transaction by closing the connection. Either
         * way no transaction is left. */
        if (db->conn != NULL)
            drop_conn(db);
        db->in_txn = false;
        db->txn_lost = false;
        return 0;
    }
    return 0;
}

bool sf_db_in_transaction(const sf_db *db)
{
    return db && (db->in_txn || db->txn_lost || txn_open_on_server(db));
}

static bool ident_ok(const char *name)
{
    size_t i;

    if (name == NULL || !((name[0] >= 'A' && name[0] <= 'Z') || (name[0] >= 'a' && name[0] <= 'z') ||
                          name[0] == '_'))
        return false;
    for (i = 1; name[i]; i++) {
        char c = name[i];
        if (i >= 63 || !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                         (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

static int savepoint_cmd(sf_db *db, const char *verb, const char *name, sf_error *err)
{
    char sql[128];

    if (!ident_ok(name))
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "invalid savepoint name");
    if (db == NULL || !sf_db_in_transaction(db))
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "%s outside a transaction", verb);
    if (sf_snprintf(sql, sizeof(sql), "%s %s", verb, name) < 0)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "savepoint name too long");
    return run(db, sql, 0, NULL, NULL, NULL, 0, NULL, err);
}

int sf_db_savepoint(sf_db *db, const char *name, sf_error *err)
{
    return savepoint_cmd(db, "SAVEPOINT", name, err);
}

int sf_db_release(sf_db *db, const char *name, sf_error *err)
{
    return savepoint_cmd(db, "RELEASE SAVEPOINT", name, err);
}

int sf_db_rollback_to(sf_db *db, const char *name, sf_error *err)
{
    return savepoint_cmd(db, "ROLLBACK TO SAVEPOINT", name, err);
}

/* ---------------------------------------------------------------------- */
/* migrations                                                              */

static int query_i64(sf_db *db, const char *sql, int nparams, const char *const *params,
                     int64_t *out, sf_error *err)
{
    PGresult *r = NULL;
    int rc = -1;

    if (sf_db_exec(db, sql, nparams, params, &r, err) < 0)
        return -1;
    if (PQntuples(r) != 1) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "expected one row, got %d", PQntuples(r));
        goto out;
    }
    rc = sf_db_get_i64(r, 0, 0, out, err);
out:
    PQclear(r);
    return rc;
}

int sf_db_schema_version(sf_db *db, int *version, sf_error *err)
{
    int64_t present, v;

    if (query_i64(db, "SELECT (to_regclass('schema_migrations') IS NOT NULL)::int", 0, NULL,
                  &present, err) < 0)
        return -1;
    if (!present) {
        *version = 0;
        return 0;
    }
    if (query_i64(db, "SELECT coalesce(max(version), 0) FROM schema_migrations", 0, NULL, &v,
                  err) < 0)
        return -1;
    *version = (int)v;
    return 0;
}

static bool applied_has(const PGresult *r, int version)
{
    int i;

    for (i = 0; i < PQntuples(r); i++) {
        int32_t v;
        if (sf_db_get_i32(r, i, 0, &v, NULL) == 0 && v == version)
            return true;
    }
    return false;
}

static int apply_one(sf_db *db, const sf_db_migration *m, sf_error *err)
{
    char vbuf[16];
    const char *params[2];
    sf_error e1;

    sf_error_clear(&e1);
    (void)sf_snprintf(vbuf, sizeof(vbuf), "%d", m->version);
    params[0] = vbuf;
    params[1] = m->name;
    if (sf_db_begin(db, &e1) < 0 ||
        run(db, m->sql, -1, NULL, NULL, NULL, 0, NULL, &e1) < 0 ||
        sf_db_exec(db, "INSERT INTO schema_migrations (version, name) VALUES ($1::int, $2)", 2,
                   params, NULL, &e1) < 0 ||
        sf_db_commit(db, &e1) < 0) {
        (void)sf_db_rollback(db, NULL);
        sf_error_set(err, e1.cls, e1.code, "migration %s failed: %s", m->name, e1.msg);
        return -1;
    }
    sf_log_info("applied database migration %s", m->name);
    return 0;
}

int sf_db_migrate(sf_db *db, sf_error *err)
{
    const char *lock[] = {MIGRATE_LOCK_KEY};
    const sf_db_migration *ms;
    size_t count, i;
    PGresult *applied = NULL;
    int64_t present;
    int max_known = 0, max_applied = 0;
    bool locked = false;
    int rc = -1;

    if (db == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_db_migrate: no handle");
    if (sf_db_in_transaction(db))
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_db_migrate: called inside a transaction");
    ms = sf_db_migrations(&count);
    for (i = 0; i < count; i++) {
        if (ms[i].version <= max_known)
            return sf_error_set(err, SF_ERR_INTERNAL, 0,
                                "embedded migrations out of order at %s", ms[i].name);
        max_known = ms[i].version;
    }
    /* Session lock: concurrent starters queue here, so each migration is
     * applied exactly once and nobody reads a half-migrated schema. */
    if (sf_db_exec(db, "SELECT pg_advisory_lock($1::bigint)", 1, lock, NULL, err) < 0)
        goto out;
    locked = true;
    /* Checked first so the IF NOT EXISTS notice does not log on every start. */
    if (query_i64(db, "SELECT (to_regclass('schema_migrations') IS NOT NULL)::int", 0, NULL,
                  &present, err) < 0)
        goto out;
    if (!present &&
        sf_db_exec(db,
                   "CREATE TABLE IF NOT EXISTS schema_migrations ("
                   " version int PRIMARY KEY, name text NOT NULL,"
                   " applied_at timestamptz NOT NULL DEFAULT now())",
                   0, NULL, NULL, err) < 0)
        goto out;
    if (sf_db_exec(db, "SELECT version FROM schema_migrations ORDER BY version", 0, NULL, &applied,
                   err) < 0)
        goto out;
    for (i = 0; i < (size_t)PQntuples(applied); i++) {
        int32_t v;
        if (sf_db_get_i32(applied, (int)i, 0, &v, err) < 0)
            goto out;
        if (v > max_applied)
            max_applied = v;
    }
    if (max_applied > max_known) {
        sf_error_set(err, SF_ERR_FATAL, 0,
                     "database schema version %d is newer than this program knows (%d): "
                     "run a newer version of the program",
                     max_applied, max_known);
        goto out;
    }
    for (i = 0; i < count; i++) {
        if (applied_has(applied, ms[i].version))
            continue;
        if (apply_one(db, &ms[i], err) < 0)
            goto out;
    }
    rc = 0;
out:
    PQclear(applied);
    if (locked && sf_db_connected(db))
        (void)sf_db_exec(db, "SELECT pg_advisory_unlock($1::bigint)", 1, lock, NULL, NULL);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* inbox                                                                   */

static int need_txn(sf_db *db, const char *what, sf_error *err)
{
    if (db == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "%s: no handle", what);
    if (db->txn_lost)
        return sf_error_set(err, SF_ERR_TRANSIENT, SF_DB_CONNECTION_FAILURE,
                            "database transaction lost with the connection: roll back and retry");
    if (db->conn && PQtransactionStatus(db->conn) == PQTRANS_INERROR)
        return sf_error_set(err, SF_ERR_INTERNAL, 0,
                            "%s: the transaction has already failed: roll back", what);
    if (db->conn == NULL || PQtransactionStatus(db->conn) != PQTRANS_INTRANS)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "%s: must run inside an open transaction",
                            what);
    return 0;
}

static int check_text(const char *v, const char *field, bool required, sf_error *err)
{
    size_t n;

    if (v == NULL)
        return required ? sf_error_field(err, field, "%s is required", field) : 0;
    n = strlen(v);
    if (required && n == 0)
        return sf_error_field(err, field, "%s is empty", field);
    if (n > MAX_IDENT_LEN)
        return sf_error_field(err, field, "%s is longer than %d bytes", field, MAX_IDENT_LEN);
    if (!sf_utf8_valid(v, n))
        return sf_error_field(err, field, "%s is not valid UTF-8", field);
    return 0;
}

int sf_db_inbox_claim(sf_db *db, const char *consumer, const char *message_id, sf_error *err)
{
    const char *params[2] = {consumer, message_id};
    PGresult *r = NULL;
    int64_t n;

    if (need_txn(db, "sf_db_inbox_claim", err) < 0 ||
        check_text(consumer, "consumer", true, err) < 0 ||
        check_text(message_id, "id", true, err) < 0)
        return -1;
    if (sf_db_exec(db,
                   "INSERT INTO inbox (consumer, message_id) VALUES ($1, $2)"
                   " ON CONFLICT (consumer, message_id) DO NOTHING",
                   2, params, &r, err) < 0)
        return -1;
    n = sf_db_affected(r);
    PQclear(r);
    if (n < 0 || n > 1)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "inbox claim: unexpected row count");
    return (int)n;
}

static int delete_older(sf_db *db, const char *sql, int64_t older_than_ms, int64_t *deleted,
                        sf_error *err)
{
    char buf[24];
    const char *params[1] = {buf};
    PGresult *r = NULL;
    int64_t n;

    if (older_than_ms < 0)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "cleanup: negative age");
    (void)sf_snprintf(buf, sizeof(buf), "%" PRId64, older_than_ms);
    if (sf_db_exec(db, sql, 1, params, &r, err) < 0)
        return -1;
    n = sf_db_affected(r);
    PQclear(r);
    if (deleted)
        *deleted = n < 0 ? 0 : n;
    return 0;
}

int sf_db_inbox_cleanup(sf_db *db, int64_t older_than_ms, int64_t *deleted, sf_error *err)
{
    return delete_older(db,
                        "DELETE FROM inbox WHERE processed_at < now() - $1::bigint * interval '1 millisecond'",
                        older_than_ms, deleted, err);
}

/* ---------------------------------------------------------------------- */
/* outbox                                                                  */

int sf_db_outbox_add(sf_db *db, const char *topic, const char *key, const void *payload,
                     size_t len, sf_error *err)
{
    const char *params[4];
    int lengths[4] = {0, 0, 0, 0};
    int formats[4] = {0, 0, 1, 0};
    PGresult *r = NULL;
    int rc;

    if (need_txn(db, "sf_db_outbox_add", err) < 0 || check_text(topic, "topic", true, err) < 0 ||
        check_text(key, "key", false, err) < 0)
        return -1;
    if (payload == NULL && len > 0)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_db_outbox_add: no payload");
    if (len > SF_DB_MAX_BYTEA)
        return sf_error_field(err, "payload", "payload larger than %u bytes", SF_DB_MAX_BYTEA);
    params[0] = topic;
    params[1] = key;
    params[2] = payload ? (const char *)payload : "";
    params[3] = SF_DB_OUTBOX_CHANNEL;
    lengths[2] = (int)len;
    /* The NOTIFY rides on the same statement (no extra round trip) and is
     * delivered only if the transaction commits; PostgreSQL folds the
     * identical notifications of one transaction into one. */
    rc = sf_db_exec_bin(db,
                        "WITH ins AS (INSERT INTO outbox (topic, msg_key, payload)"
                        " VALUES ($1, $2, $3::bytea) RETURNING id)"
                        " SELECT id, pg_notify($4, '') FROM ins",
                        4, params, lengths, formats, &r, err);
    if (rc < 0)
        return -1;
    if (PQntuples(r) != 1)
        rc = sf_error_set(err, SF_ERR_INTERNAL, 0, "outbox insert returned %d rows", PQntuples(r));
    PQclear(r);
    return rc;
}

/* Append v as an element of a PostgreSQL array literal ("..." with " and
 * backslash escaped; NULL unquoted). */
static int array_elem(sf_buf *b, const char *v, bool first)
{
    const char *p = v;

    if (!first && sf_buf_appendc(b, ',') < 0)
        return -1;
    if (v == NULL)
        return sf_buf_append(b, "NULL", 4);
    if (sf_buf_appendc(b, '"') < 0)
        return -1;
    while (*p) {
        size_t span = strcspn(p, "\"\\");

        if (sf_buf_append(b, p, span) < 0)
            return -1;
        p += span;
        if (*p && (sf_buf_appendc(b, '\\') < 0 || sf_buf_appendc(b, *p++) < 0))
            return -1;
    }
    return sf_buf_appendc(b, '"');
}

int sf_db_outbox_add_many(sf_db *db, const char *topic, size_t n, const char *const *keys,
                          const char *const *payloads, sf_error *err)
{
    /* unnest keeps the order (WITH ORDINALITY + ORDER BY): ids, and so the
     * relay's publishing order, follow the caller's order */
    static const char sql[] =
        "WITH ins AS (INSERT INTO outbox (topic, msg_key, payload)"
        " SELECT $1, u.k, convert_to(u.p, 'UTF8')"
        " FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS u(k, p, ord) ORDER BY u.ord"
        " RETURNING id)"
        " SELECT (SELECT count(*) FROM ins), pg_notify($4, '')";
    sf_buf kb, pb;
    PGresult *r = NULL;
    int rc = -1;

    if (n == 0)
        return 0;
    if (need_txn(db, "sf_db_outbox_add_many", err) < 0 ||
        check_text(topic, "topic", true, err) < 0)
        return -1;
    /* a round is at most a few thousand events of a few KiB */
    sf_buf_init(&kb, (size_t)1 << 30);
    sf_buf_init(&pb, (size_t)1 << 30);
    for (size_t i = 0; i < n; i++) {
        char field[32];
        size_t len = payloads[i] ? strlen(payloads[i]) : 0;

        (void)sf_snprintf(field, sizeof(field), "payloads[%zu]", i);
        if (payloads[i] == NULL || !sf_utf8_valid(payloads[i], len)) {
            sf_error_field(err, field, "%s is missing or not valid UTF-8", field);
            goto out;
        }
        if (len > SF_DB_MAX_BYTEA) {
            sf_error_field(err, field, "%s is larger than %u bytes", field, SF_DB_MAX_BYTEA);
            goto out;
        }
        (void)sf_snprintf(field, sizeof(field), "keys[%zu]", i);
        if (check_text(keys ? keys[i] : NULL, field, false, err) < 0)
            goto out;
        if ((i == 0 && (sf_buf_appendc(&kb, '{') < 0 || sf_buf_appendc(&pb, '{') < 0)) ||
            array_elem(&kb, keys ? keys[i] : NULL, i == 0) < 0 ||
            array_elem(&pb, payloads[i], i == 0) < 0) {
            sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
            goto out;
        }
    }
    if (sf_buf_appendc(&kb, '}') < 0 || sf_buf_appendc(&pb, '}') < 0) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    {
        const char *params[4] = {topic, kb.data, pb.data, SF_DB_OUTBOX_CHANNEL};
        int64_t got = -1;

        if (sf_db_exec(db, sql, 4, params, &r, err) < 0)
            goto out;
        if (PQntuples(r) != 1 || sf_str_to_i64(PQgetvalue(r, 0, 0), 0, INT64_MAX, &got) < 0 ||
            (size_t)got != n) {
            sf_error_set(err, SF_ERR_INTERNAL, 0, "outbox insert of %zu rows stored %lld", n,
                         (long long)got);
            goto out;
        }
    }
    rc = 0;
out:
    PQclear(r);
    sf_buf_release(&kb);
    sf_buf_release(&pb);
    return rc;
}

void sf_db_outbox_rows_free(sf_outbox_row *rows, size_t n)
{
    size_t i;

    if (rows == NULL)
        return;
    for (i = 0; i < n; i++) {
        free(rows[i].topic);
        free(rows[i].key);
        free(rows[i].payload);
    }
    free(rows);
}

/* Copy a binary-format cell into a fresh NUL-terminated buffer. */
static void *dup_cell(const PGresult *r, int row, int col, size_t *len)
{
    size_t n = (size_t)PQgetlength(r, row, col);
    char *p = malloc(n + 1);

    if (p == NULL)
        return NULL;
    memcpy(p, PQgetvalue(r, row, col), n);
    p[n] = '\0';
    *len = n;
    return p;
}

int sf_db_outbox_fetch(sf_db *db, int max, sf_outbox_row **rows, size_t *n, sf_error *err)
{
    const char *lock[] = {OUTBOX_LOCK_KEY};
    char mbuf[16], bbuf[24];
    const char *params[2] = {mbuf, bbuf};
    PGresult *r = NULL;
    sf_outbox_row *out = NULL;
    size_t cnt = 0, i;
    bool got;
    int rc = -1;

    if (db == NULL || rows == NULL || n == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_db_outbox_fetch: bad arguments");
    if (max < 1)
        max = 1;
    if (max > MAX_FETCH)
        max = MAX_FETCH;
    if (!sf_db_in_transaction(db) && sf_db_begin(db, err) < 0)
        return -1;
    if (need_txn(db, "sf_db_outbox_fetch", err) < 0)
        return -1;
    /* Transaction-scoped: released by the caller's COMMIT/ROLLBACK, or by
     * the server if this relay dies, so a dead relay never blocks others. */
    if (sf_db_exec(db, "SELECT pg_try_advisory_xact_lock($1::bigint)", 1, lock, &r, err) < 0)
        return -1;
    if (sf_db_get_bool(r, 0, 0, &got, err) < 0)
        goto out;
    PQclear(r);
    r = NULL;
    if (!got) {
        *rows = NULL;
        *n = 0;
        rc = 0;
        goto out;
    }
    (void)sf_snprintf(mbuf, sizeof(mbuf), "%d", max);
    (void)sf_snprintf(bbuf, sizeof(bbuf), "%u", SF_DB_OUTBOX_FETCH_BYTES);
    /* Binary results: the payload arrives as raw bytes, not hex. */
    /* Bounded in bytes too (a hard limit on what one fetch buffers): stop
     * before the row that would pass the budget, but always take the first. */
    if (run(db,
            "SELECT id, topic, msg_key, payload FROM ("
            " SELECT id, topic, msg_key, payload,"
            "  sum(octet_length(payload)) OVER (ORDER BY id) - octet_length(payload) AS before"
            " FROM (SELECT id, topic, msg_key, payload FROM outbox WHERE sent_at IS NULL"
            "       ORDER BY id LIMIT $1::int) f) s"
            " WHERE before < $2::bigint ORDER BY id",
            2, params, NULL, NULL, 1, &r, err) < 0)
        goto out;
    cnt = (size_t)PQntuples(r);
    if (cnt > 0) {
        if (PQnfields(r) != 4 || PQftype(r, 0) != 20 /* int8 */) {
            sf_error_set(err, SF_ERR_INTERNAL, 0, "outbox: unexpected result shape");
            goto out;
        }
        out = calloc(cnt, sizeof(*out));
        if (out == NULL) {
            sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
            goto out;
        }
        for (i = 0; i < cnt; i++) {
            const unsigned char *p = (const unsigned char *)PQgetvalue(r, (int)i, 0);
            uint64_t id = 0;
            size_t k, l;

            if (PQgetlength(r, (int)i, 0) != 8 || PQgetisnull(r, (int)i, 1) ||
                PQgetisnull(r, (int)i, 3)) {
                sf_error_set(err, SF_ERR_INTERNAL, 0, "outbox: malformed row");
                goto out;
            }
            for (k = 0; k < 8; k++)
                id = id << 8 | p[k];
            out[i].id = (int64_t)id;
            out[i].topic = dup_cell(r, (int)i, 1, &l);
            out[i].key = PQgetisnull(r, (int)i, 2) ? NULL : dup_cell(r, (int)i, 2, &l);
            out[i].payload = dup_cell(r, (int)i, 3, &out[i].len);
            if (out[i].topic == NULL || out[i].payload == NULL ||
                (out[i].key == NULL && !PQgetisnull(r, (int)i, 2))) {
                sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
                goto out;
            }
        }
    }
    *rows = out;
    *n = cnt;
    out = NULL;
    rc = 0;
out:
    PQclear(r);
    sf_db_outbox_rows_free(out, cnt);
    return rc;
}

int sf_db_outbox_mark_sent(sf_db *db, const int64_t *ids, size_t n, sf_error *err)
{
    sf_buf b;
    const char *params[1];
    size_t i;
    int rc = -1;

    if (n == 0)
        return 0;
    if (ids == NULL || n > MAX_FETCH)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_db_outbox_mark_sent: bad id list");
    sf_buf_init(&b, (size_t)MAX_FETCH * 22 + 4);
    if (sf_buf_appendc(&b, '{') < 0)
        goto oom;
    for (i = 0; i < n; i++)
        if (sf_buf_appendf(&b, "%s%" PRId64, i ? "," : "", ids[i]) < 0)
            goto oom;
    if (sf_buf_appendc(&b, '}') < 0)
        goto oom;
    params[0] = b.data;
    rc = sf_db_exec(db, "UPDATE outbox SET sent_at = now() WHERE id = ANY ($1::bigint[])"
                        " AND sent_at IS NULL",
                    1, params, NULL, err);
    sf_buf_release(&b);
    return rc;
oom:
    sf_buf_release(&b);
    return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
}

int sf_db_outbox_backlog(sf_db *db, int64_t *count, sf_error *err)
{
    return query_i64(db, "SELECT count(*) FROM outbox WHERE sent_at IS NULL", 0, NULL, count, err);
}

int sf_db_outbox_cleanup(sf_db *db, int64_t older_than_ms, int64_t *deleted, sf_error *err)
{
    return delete_older(db,
                        "DELETE FROM outbox WHERE sent_at IS NOT NULL"
                        " AND sent_at < now() - $1::bigint * interval '1 millisecond'",
                        older_than_ms, deleted, err);
}

/* ---------------------------------------------------------------------- */
/* schedules                                                               */

int sf_db_schedule_due(sf_db *db, const char *name, int64_t interval_ms, const char *owner,
                       bool *fired, sf_error *err)
{
    char ibuf[24];
    const char *p1[1] = {name};
    const char *p3[3];
    PGresult *r = NULL;

    if (check_text(name, "name", true, err) < 0 || check_text(owner, "owner", false, err) < 0)
        return -1;
    if (interval_ms < 1)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "schedule %s: interval must be positive",
                            name);
    if (fired == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_db_schedule_due: fired is NULL");
    /* First use: due at once, so a fresh system runs the task at start. */
    if (sf_db_exec(db,
                   "INSERT INTO schedules (name, next_run) VALUES ($1, now())"
                   " ON CONFLICT (name) DO NOTHING",
                   1, p1, NULL, err) < 0)
        return -1;
    (void)sf_snprintf(ibuf, sizeof(ibuf), "%" PRId64, interval_ms);
    p3[0] = name;
    p3[1] = ibuf;
    p3[2] = owner;
    /* Racing replicas serialize on the row lock; READ COMMITTED re-checks
     * the WHERE clause against the winner's new next_run, so the losers see
     * no row. Keep the cadence (next_run + interval) unless that is already
     * past (the system was down): then start again from now. */
    if (sf_db_exec(db,
                   "UPDATE schedules SET"
                   " next_run = CASE WHEN next_run + $2::bigint * interval '1 millisecond' > now()"
                   "   THEN next_run + $2::bigint * interval '1 millisecond'"
                   "   ELSE now() + $2::bigint * interval '1 millisecond' END,"
                   " last_run = now(), last_owner = $3"
                   " WHERE name = $1 AND next_run <= now() RETURNING name",
                   3, p3, &r, err) < 0)
        return -1;
    *fired = PQntuples(r) == 1;
    PQclear(r);
    return 0;
}

int sf_db_schedule_trigger_now(sf_db *db, const char *name, sf_error *err)
{
    const char *p1[1] = {name};

    if (check_text(name, "name", true, err) < 0)
        return -1;
    return sf_db_exec(db,
                      "INSERT INTO schedules (name, next_run) VALUES ($1, now())"
                      " ON CONFLICT (name) DO UPDATE SET next_run = now()",
                      1, p1, NULL, err);
}

int sf_db_schedule_next_in(sf_db *db, const char *name, int64_t *ms, sf_error *err)
{
    const char *p1[1] = {name};
    PGresult *r = NULL;
    int rc = -1;

    if (check_text(name, "name", true, err) < 0)
        return -1;
    if (sf_db_exec(db,
                   "SELECT floor(extract(epoch FROM (next_run - now())) * 1000)::bigint"
                   " FROM schedules WHERE name = $1",
                   1, p1, &r, err) < 0)
        return -1;
    if (PQntuples(r) == 0) {
        *ms = 0;
        rc = 0;
    } else {
        rc = sf_db_get_i64(r, 0, 0, ms, err);
    }
    PQclear(r);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* LISTEN / NOTIFY                                                         */

int sf_db_listen(sf_db *db, const char *channel, sf_error *err)
{
    char *ident = NULL;
    char *sql = NULL;
    int rc = -1;

    if (check_text(channel, "channel", true, err) < 0)
        return -1;
    if (db == NULL || sf_db_ensure(db, 0, err) < 0)
        return db ? -1 : sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_db_listen: no handle");
    ident = PQescapeIdentifier(db->conn, channel, strlen(channel));
    if (ident == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "could not quote channel name");
        goto out;
    }
    sql = sf_asprintf("LISTEN %s", ident);
    if (sql == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    rc = sf_db_exec(db, sql, 0, NULL, NULL, err);
out:
    PQfreemem(ident);
    free(sql);
    return rc;
}

int sf_db_notify(sf_db *db, const char *channel, const char *payload, sf_error *err)
{
    const char *params[2] = {channel, payload ? payload : ""};

    if (check_text(channel, "channel", true, err) < 0)
        return -1;
    return sf_db_exec(db, "SELECT pg_notify($1, $2)", 2, params, NULL, err);
}

static int drain_notifies(sf_db *db)
{
    PGnotify *n;
    int got = 0;

    while ((n = PQnotifies(db->conn)) != NULL) {
        got = 1;
        PQfreemem(n);
    }
    return got;
}

int sf_db_wait_notify(sf_db *db, int timeout_ms, sf_error *err)
{
    int64_t deadline;

    if (db == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_db_wait_notify: no handle");
    if (!sf_db_connected(db)) {
        /* Notifications sent while we were away are gone: after a
         * reconnect report a wake-up so the caller re-listens and looks. */
        if (sf_db_ensure(db, 0, err) < 0)
            return -1;
        return 1;
    }
    deadline = sf_now_mono_ms() + (timeout_ms < 0 ? 0 : timeout_ms);
    for (;;) {
        struct pollfd pfd;
        int64_t left;
        int rc;

        if (PQconsumeInput(db->conn) == 0)
            goto lost;
        if (drain_notifies(db))
            return 1;
        left = deadline - sf_now_mono_ms();
        if (left <= 0)
            return 0;
        pfd.fd = PQsocket(db->conn);
        pfd.events = POLLIN;
        pfd.revents = 0;
        if (pfd.fd < 0)
            goto lost;
        rc = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (rc < 0 && errno != EINTR)
            return sf_error_set(err, SF_ERR_INTERNAL, 0, "could not wait for notifications: %s",
                                strerror(errno));
    }
lost:
    {
        char line[300];
        one_line(PQerrorMessage(db->conn), line, sizeof(line));
        drop_conn(db);
        db->next_attempt_ms = 0;
        return sf_error_set(err, SF_ERR_TRANSIENT, SF_DB_CONNECTION_FAILURE,
                            "lost database connection while waiting for notifications: %s", line);
    }
}
