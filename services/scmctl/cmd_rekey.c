/*
 * scmctl rekey [--dry-run] [--batch N] - master key rotation: re-seal, under
 * the primary key (SCMFLOW_MASTER_KEY_FILE), every sealed value whose token
 * names another key. The old keys come from SCMFLOW_MASTER_KEY_OLD_FILES
 * (sf_sealer_from_config).
 *
 * Concurrency: workers keep running. Each batch is one transaction that
 * takes the rows it reads with FOR NO KEY UPDATE SKIP LOCKED (a worker
 * holding a row is never waited for, so rekey cannot deadlock with it, and
 * NO KEY does not block foreign-key checks of rows referring to it), and the
 * UPDATE is a compare-and-set on the token read, so a value written by a
 * worker meanwhile is never overwritten. Rows skipped because a worker held
 * them are taken by another pass; whatever is still left is reported as
 * busy (run again).
 *
 * Plaintext lives only between sf_unseal and sf_seal and is wiped with
 * sf_secret_free; tokens and plaintext are never printed (failures name the
 * table, row id, column and the key id the token needs).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "ctl.h"
#include "sf_db.h"
#include "sf_seal.h"
#include "sf_util.h"

#define RK_BATCH_DEFAULT 500
#define RK_BATCH_MAX 10000
/* Passes over a column while rows remain that a worker held (SKIP LOCKED). */
#define RK_MAX_PASSES 5
/* Failures kept for the report (all are counted). */
#define RK_MAX_FAILURES_LISTED 1000

/*
 * One sealed column. The SQL is spelled out per column from constant
 * identifiers (values are always parameters):
 *   select: $1 LIKE pattern of the primary's tokens, $2 last id seen (keyset
 *           pagination; NULL = from the start), $3 batch size. Returns id,
 *           the value the AAD is made of, the token.
 *   update: $1 id, $2 token read (compare-and-set), $3 new token.
 *   count:  $1 LIKE pattern: (current, not current) among non-NULL tokens.
 */
typedef struct rk_column {
    const char *table;
    const char *column;
    const char *aad_pre, *aad_post; /* AAD = aad_pre + value + aad_post */
    const char *sql_select;
    const char *sql_select_lock;
    const char *sql_update;
    const char *sql_count;
} rk_column;

#define RK_SELECT(tbl, idc, idtype, aadc, col)                                                   \
    "SELECT " idc "::text, " aadc "::text, " col " FROM " tbl " WHERE " col " IS NOT NULL AND " \
    col " NOT LIKE $1 AND ($2::text IS NULL OR " idc " > ($2::text)::" idtype ") ORDER BY " idc \
    " LIMIT $3::int"
#define RK_COLUMN(tbl, idc, idtype, aadc, col, pre, post)                                       \
    {tbl, col, pre, post, RK_SELECT(tbl, idc, idtype, aadc, col),                                     \
     RK_SELECT(tbl, idc, idtype, aadc, col) " FOR NO KEY UPDATE SKIP LOCKED",                   \
     "UPDATE " tbl " SET " col " = $3 WHERE " idc " = ($1::text)::" idtype " AND " col " = $2", \
     "SELECT count(*) FILTER (WHERE " col " LIKE $1), count(*) FILTER (WHERE " col              \
     " NOT LIKE $1) FROM " tbl " WHERE " col " IS NOT NULL"}

/* Every sealed column and its AAD; keep in step with the sf_seal callers
 * (scmctl account/cert, order-submitter, repo-ingest). */
static const rk_column rk_columns[] = {
    RK_COLUMN("scm_accounts", "name", "text", "name", "password_sealed", "account:", ":password"),
    RK_COLUMN("orders", "id", "text", "id", "private_key_sealed", "order:", ":key"),
    RK_COLUMN("orders", "id", "text", "id", "keystore_password_sealed", "order:",
              ":keystore_password"),
    RK_COLUMN("scm_operations", "id", "bigint", "order_id", "private_key_sealed", "order:",
              ":key"),
    RK_COLUMN("certificates", "id", "bigint", "sha256_fingerprint", "keystore_sealed",
              "certificate:", ":keystore"),
};

typedef struct rk_failure {
    size_t col;                        /* index in rk_columns */
    char *id;
    char key_id[SF_SEAL_KEY_ID_LEN + 1]; /* "" when the token is malformed */
    char reason[160];
} rk_failure;

typedef struct rk_counts {
    int64_t resealed; /* or, with --dry-run, would be re-sealed */
    int64_t current;  /* already under the primary key when the run started */
    int64_t failed;
    int64_t busy;     /* left because a worker held or changed the row */
} rk_counts;

typedef struct rk_run {
    ctl_ctx *c;
    sf_db *db;
    const sf_sealer *seal;
    char pattern[sizeof("v1..%") + SF_SEAL_KEY_ID_LEN];
    bool dry_run;
    int batch;
    rk_counts counts[SF_ARRAY_LEN(rk_columns)];
    rk_failure *fails;
    size_t nfails;
    bool fails_truncated;
} rk_run;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: scmctl rekey [--dry-run] [--batch N]\n\n"
            "Master key rotation: re-seal, under the primary key (SCMFLOW_MASTER_KEY_FILE),\n"
            "every stored secret sealed with another key (SCM account passwords, private\n"
            "keys, keystore passwords, keystores). The older keys must be configured in\n"
            "SCMFLOW_MASTER_KEY_OLD_FILES (comma-separated files). Workers may keep running:\n"
            "rows are taken in batches (--batch, default %d) with FOR NO KEY UPDATE SKIP\n"
            "LOCKED and updated only if they still hold the value read.\n\n"
            "Prints per column how many values were re-sealed, were already current, could\n"
            "not be unsealed (each named by table, row id, column and the key id it needs)\n"
            "and were busy (held by a worker: run again). Running it again re-seals nothing.\n"
            "--dry-run unseals (to check the keys) and counts, but writes nothing.\n\n"
            "Exit status: 0 every value is under the primary key (or would be), 1 a value\n"
            "could not be unsealed, a row stayed busy, or an error.\n\n",
            RK_BATCH_DEFAULT);
    ctl_print_common_help(out);
}

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    (void)nanosleep(&ts, NULL);
}

static bool already_failed(const rk_run *run, size_t col, const char *id)
{
    for (size_t i = 0; i < run->nfails; i++)
        if (run->fails[i].col == col && strcmp(run->fails[i].id, id) == 0)
            return true;
    return false;
}

/* Count and (up to RK_MAX_FAILURES_LISTED) remember a value that did not unseal. */
static int add_failure(rk_run *run, size_t col, const char *id, const char *token,
                       const sf_error *why, sf_error *err)
{
    rk_failure *f;

    run->counts[col].failed++;
    if (run->nfails >= RK_MAX_FAILURES_LISTED) {
        run->fails_truncated = true;
        return 0;
    }
    if (run->nfails % 64 == 0) {
        rk_failure *n = realloc(run->fails, (run->nfails + 64) * sizeof(*n));

        if (n == NULL)
            return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        run->fails = n;
    }
    f = &run->fails[run->nfails];
    memset(f, 0, sizeof(*f));
    f->col = col;
    if ((f->id = sf_strdup(id)) == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    if (sf_seal_key_id(token, f->key_id) < 0)
        f->key_id[0] = '\0';
    /* sf_unseal's messages name the key id at most, never key or plaintext. */
    (void)sf_snprintf(f->reason, sizeof(f->reason), "%s", why->msg);
    run->nfails++;
    return 0;
}

/*
 * One row: unseal with the old key, seal under the primary, compare-and-set.
 * Returns 0 (counted in run->counts, including failures to unseal) or -1 on
 * an error that stops the run (database, sealing).
 */
static int rekey_row(rk_run *run, size_t col, const char *id, const char *aad_value,
                     const char *token, int64_t *raced, sf_error *err)
{
    const rk_column *rc = &rk_columns[col];
    char aad[SF_SEAL_MAX_AAD + 1];
    unsigned char *plain = NULL;
    size_t len = 0;
    char *fresh = NULL;
    PGresult *res = NULL;
    sf_error why = {0};
    int rv = -1;

    if (sf_snprintf(aad, sizeof(aad), "%s%s%s", rc->aad_pre, aad_value, rc->aad_post) < 0) {
        sf_error_set(&why, SF_ERR_INVALID, 0, "seal context too long");
        return add_failure(run, col, id, token, &why, err);
    }
    if (sf_unseal(run->seal, token, aad, &plain, &len, &why) < 0)
        return add_failure(run, col, id, token, &why, err);
    if (run->dry_run) {
        run->counts[col].resealed++;
        rv = 0;
        goto out;
    }
    if (sf_seal(run->seal, plain, len, aad, &fresh, err) < 0)
        goto out;
    {
        const char *p[3] = {id, token, fresh};

        if (sf_db_exec(run->db, rc->sql_update, 3, p, &res, err) < 0)
            goto out;
    }
    if (sf_db_affected(res) == 1)
        run->counts[col].resealed++;
    else
        (*raced)++; /* a worker wrote the row since it was read: theirs stands */
    rv = 0;
out:
    PQclear(res);
    free(fresh);
    sf_secret_free(plain, len);
    return rv;
}

/* One pass over a column in keyset order; *raced counts compare-and-set misses. */
static int rekey_pass(rk_run *run, size_t col, int pass, int64_t *raced, sf_error *err)
{
    const rk_column *rc = &rk_columns[col];
    char batch[16], label[96];
    char *last = NULL;
    PGresult *res = NULL;
    int64_t done = 0;
    int rv = -1, n;

    (void)sf_snprintf(batch, sizeof(batch), "%d", run->batch);
    (void)sf_snprintf(label, sizeof(label), "%s.%s", rc->table, rc->column);
    do {
        const char *p[3] = {run->pattern, last, batch};

        if (!run->dry_run && sf_db_begin(run->db, err) < 0)
            goto out;
        if (sf_db_exec(run->db, run->dry_run ? rc->sql_select : rc->sql_select_lock, 3, p, &res,
                       err) < 0)
            goto out;
        n = PQntuples(res);
        for (int i = 0; i < n; i++) {
            const char *id, *aadv, *token;

            if (sf_db_get_str(res, i, 0, &id, err) < 0 || sf_db_get_str(res, i, 1, &aadv, err) < 0 ||
                sf_db_get_str(res, i, 2, &token, err) < 0)
                goto out;
            /* Later passes look again at rows that failed: count them once. */
            if (pass > 1 && already_failed(run, col, id))
                continue;
            if (rekey_row(run, col, id, aadv, token, raced, err) < 0)
                goto out;
        }
        if (!run->dry_run && sf_db_commit(run->db, err) < 0)
            goto out;
        done += n;
        ctl_progress(run->c, label, done, 0);
        free(last);
        last = NULL;
        if (n > 0 && (last = sf_strdup(PQgetvalue(res, n - 1, 0))) == NULL) {
            sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
            goto out;
        }
        PQclear(res);
        res = NULL;
    } while (n == run->batch);
    rv = 0;
out:
    if (rv < 0 && sf_db_in_transaction(run->db))
        (void)sf_db_rollback(run->db, NULL);
    PQclear(res);
    free(last);
    return rv;
}

/* Tokens of a column: *current under the primary, *other under another key. */
static int count_tokens(rk_run *run, size_t col, int64_t *current, int64_t *other, sf_error *err)
{
    const char *p[1] = {run->pattern};
    PGresult *res = NULL;
    int rv = -1;

    if (sf_db_exec(run->db, rk_columns[col].sql_count, 1, p, &res, err) < 0)
        return -1;
    if (PQntuples(res) == 1 && sf_db_get_i64(res, 0, 0, current, err) == 0 &&
        sf_db_get_i64(res, 0, 1, other, err) == 0)
        rv = 0;
    else if (PQntuples(res) != 1)
        sf_error_set(err, SF_ERR_INTERNAL, 0, "count of %s returned no row", rk_columns[col].table);
    PQclear(res);
    return rv;
}

static int rekey_column(rk_run *run, size_t col, sf_error *err)
{
    rk_counts *k = &run->counts[col];
    int64_t current = 0, other = 0;

    if (count_tokens(run, col, &current, &other, err) < 0)
        return -1;
    k->current = current;
    for (int pass = 1; other > 0 && pass <= RK_MAX_PASSES; pass++) {
        int64_t raced = 0;

        if (rekey_pass(run, col, pass, &raced, err) < 0)
            return -1;
        ctl_progress_done(run->c);
        if (run->dry_run)
            return 0;
        if (count_tokens(run, col, &current, &other, err) < 0)
            return -1;
        /* What is left beyond the values that do not unseal was held by a
         * worker (skipped) or rewritten under us; new rows sealed by a worker
         * still on the old key also land here. Another pass takes them. */
        k->busy = other > k->failed ? other - k->failed : 0;
        if (k->busy == 0 || run->fails_truncated || pass == RK_MAX_PASSES)
            break;
        /* Workers hold rows for one short transaction: give them that. */
        pause_ms(200L * pass);
    }
    return 0;
}

static void print_text(const rk_run *run)
{
    static const char *const hdr[] = {"column", "re-sealed", "current", "failed", "busy"};
    ctl_table *t = ctl_table_new(5, hdr);

    if (run->dry_run)
        printf("dry run: nothing written; re-sealed = would be re-sealed\n");
    printf("primary master key: %s\n", sf_sealer_primary_id(run->seal));
    for (size_t i = 0; t && i < SF_ARRAY_LEN(rk_columns); i++) {
        char name[96], a[24], b[24], c[24], d[24];
        const char *cells[5] = {name, a, b, c, d};

        (void)sf_snprintf(name, sizeof(name), "%s.%s", rk_columns[i].table, rk_columns[i].column);
        (void)sf_snprintf(a, sizeof(a), "%lld", (long long)run->counts[i].resealed);
        (void)sf_snprintf(b, sizeof(b), "%lld", (long long)run->counts[i].current);
        (void)sf_snprintf(c, sizeof(c), "%lld", (long long)run->counts[i].failed);
        (void)sf_snprintf(d, sizeof(d), "%lld", (long long)run->counts[i].busy);
        (void)ctl_table_add(t, cells);
    }
    ctl_table_print(t, stdout);
    ctl_table_free(t);
}

static void print_json(const rk_run *run)
{
    cJSON *o = cJSON_CreateObject(), *cols = cJSON_CreateArray(), *fails = cJSON_CreateArray();
    rk_counts tot = {0};

    if (o == NULL || cols == NULL || fails == NULL) {
        cJSON_Delete(o);
        cJSON_Delete(cols);
        cJSON_Delete(fails);
        return;
    }
    cJSON_AddStringToObject(o, "primary_key_id", sf_sealer_primary_id(run->seal));
    cJSON_AddBoolToObject(o, "dry_run", run->dry_run);
    for (size_t i = 0; i < SF_ARRAY_LEN(rk_columns); i++) {
        const rk_counts *k = &run->counts[i];
        cJSON *e = cJSON_CreateObject();

        cJSON_AddStringToObject(e, "table", rk_columns[i].table);
        cJSON_AddStringToObject(e, "column", rk_columns[i].column);
        cJSON_AddNumberToObject(e, "resealed", (double)k->resealed);
        cJSON_AddNumberToObject(e, "current", (double)k->current);
        cJSON_AddNumberToObject(e, "failed", (double)k->failed);
        cJSON_AddNumberToObject(e, "busy", (double)k->busy);
        cJSON_AddItemToArray(cols, e);
        tot.resealed += k->resealed;
        tot.current += k->current;
        tot.failed += k->failed;
        tot.busy += k->busy;
    }
    cJSON_AddItemToObject(o, "columns", cols);
    cJSON_AddNumberToObject(o, "resealed", (double)tot.resealed);
    cJSON_AddNumberToObject(o, "current", (double)tot.current);
    cJSON_AddNumberToObject(o, "failed", (double)tot.failed);
    cJSON_AddNumberToObject(o, "busy", (double)tot.busy);
    for (size_t i = 0; i < run->nfails; i++) {
        const rk_failure *f = &run->fails[i];
        cJSON *e = cJSON_CreateObject();

        cJSON_AddStringToObject(e, "table", rk_columns[f->col].table);
        cJSON_AddStringToObject(e, "id", f->id);
        cJSON_AddStringToObject(e, "column", rk_columns[f->col].column);
        if (f->key_id[0] != '\0')
            cJSON_AddStringToObject(e, "key_id", f->key_id);
        else
            cJSON_AddNullToObject(e, "key_id");
        cJSON_AddStringToObject(e, "error", f->reason);
        cJSON_AddItemToArray(fails, e);
    }
    cJSON_AddItemToObject(o, "failures", fails);
    cJSON_AddBoolToObject(o, "failures_truncated", run->fails_truncated);
    ctl_print_json(o);
    cJSON_Delete(o);
}

/* One line per failure on stderr (text mode). */
static void print_failures(const rk_run *run)
{
    int64_t failed = 0;

    for (size_t i = 0; i < run->nfails; i++) {
        const rk_failure *f = &run->fails[i];

        if (f->key_id[0] != '\0')
            fprintf(stderr, "scmctl rekey: cannot unseal %s.%s of row id \"%s\": needs master key %s (%s)\n",
                    rk_columns[f->col].table, rk_columns[f->col].column, f->id, f->key_id,
                    f->reason);
        else
            fprintf(stderr, "scmctl rekey: cannot unseal %s.%s of row id \"%s\": %s\n",
                    rk_columns[f->col].table, rk_columns[f->col].column, f->id, f->reason);
    }
    for (size_t i = 0; i < SF_ARRAY_LEN(rk_columns); i++)
        failed += run->counts[i].failed;
    if (run->fails_truncated)
        fprintf(stderr, "scmctl rekey: ... %lld failures in all, first %zu listed\n",
                (long long)failed, run->nfails);
}

int ctl_cmd_rekey(int argc, char **argv)
{
    sf_error err = {0};
    rk_run run = {0};
    int64_t failed = 0, busy = 0, n = RK_BATCH_DEFAULT;
    int rc = CTL_EXIT_FAIL;

    if (ctl_wants_help(argc, argv)) {
        usage(stdout);
        return CTL_EXIT_OK;
    }
    for (int i = 1; i < argc; i++) {
        if (ctl_common_opt(argc, argv, &i))
            continue;
        if (strcmp(argv[i], "--dry-run") == 0) {
            run.dry_run = true;
        } else if (strcmp(argv[i], "--batch") == 0 || strncmp(argv[i], "--batch=", 8) == 0) {
            const char *v = argv[i][7] == '=' ? argv[i] + 8 : (i + 1 < argc ? argv[++i] : "");

            if (sf_str_to_i64(v, 1, RK_BATCH_MAX, &n) < 0) {
                fprintf(stderr, "scmctl rekey: --batch \"%s\" is not a count from 1 to %d\n", v,
                        RK_BATCH_MAX);
                return CTL_EXIT_USAGE;
            }
        } else {
            fprintf(stderr, "scmctl rekey: unexpected argument \"%s\" (see --help)\n", argv[i]);
            return CTL_EXIT_USAGE;
        }
    }
    run.batch = (int)n;
    if ((run.c = ctl_ctx_new(argc, argv, &err)) == NULL) {
        ctl_report("rekey", &err);
        return CTL_EXIT_USAGE;
    }
    if ((run.seal = ctl_sealer(run.c, &err)) == NULL || (run.db = ctl_db(run.c, &err)) == NULL)
        goto fail;
    /* Key ids are lowercase hex: nothing in the pattern is a LIKE wildcard. */
    (void)sf_snprintf(run.pattern, sizeof(run.pattern), "v1.%s.%%", sf_sealer_primary_id(run.seal));
    for (size_t i = 0; i < SF_ARRAY_LEN(rk_columns); i++) {
        if (rekey_column(&run, i, &err) < 0)
            goto fail;
        failed += run.counts[i].failed;
        busy += run.counts[i].busy;
    }
    if (ctl_json(run.c)) {
        print_json(&run);
    } else {
        print_text(&run);
        print_failures(&run);
        if (busy > 0)
            fprintf(stderr, "scmctl rekey: %lld values were busy (held by a worker): run again\n",
                    (long long)busy);
    }
    rc = failed > 0 || busy > 0 ? CTL_EXIT_FAIL : CTL_EXIT_OK;
    goto out;
fail:
    ctl_progress_done(run.c);
    ctl_report("rekey", &err);
out:
    for (size_t i = 0; i < run.nfails; i++)
        free(run.fails[i].id);
    free(run.fails);
    ctl_ctx_free(run.c);
    return rc;
}
