/*
 * sf-test-worker: the smallest real worker, for the delivery tests and the
 * benchmark. Consumes <prefix>test.in events of type "scmflow.test.item"
 * with data {"n": <integer>}, writes one row per message into test_items
 * (no unique constraint on purpose: a double-processed message shows up as
 * a duplicate row) and emits one "scmflow.test.done" event per message with
 * correlationid = the message id.
 *
 * Extra settings (test only):
 *   SCMFLOW_TEST_TRANSIENT_EVERY  messages whose n is a multiple of N fail
 *                                 TRANSIENT once (exercises the batch
 *                                 retry); 0 = off
 *   SCMFLOW_WORKER_DIRECT         benchmark: no DB write, produce directly
 *   SCMFLOW_TEST_ROW_BATCH        true (default): rows are buffered and written
 *                                 with one statement per batch (batch_end
 *                                 hook); false: one INSERT per message
 *   SCMFLOW_TEST_TICK             true: the periodic task "test-tick"
 *                                 (once_across_replicas, interval
 *                                 SCMFLOW_TEST_TICK_INTERVAL) inserts a row
 *                                 into test_ticks and emits a
 *                                 "scmflow.test.tick" event with
 *                                 sf_worker_emit_db + sf_worker_kick_relay
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <libpq-fe.h>

#include "sf_db.h"
#include "sf_msg.h"
#include "sf_worker.h"
#include "sf_util.h"

#define TEST_TYPE "scmflow.test.item"

static const sf_cfg_def test_settings[] = {
    {"SCMFLOW_TEST_ROW_BATCH", SF_CFG_BOOL, "true", 0, 0, NULL,
     "test only: write the rows of a batch with one statement", false},
    {"SCMFLOW_TEST_TRANSIENT_EVERY", SF_CFG_INT, "0", 0, 1000000, NULL,
     "test only: a message whose n is a multiple of this fails once, transiently (0 = never)", false},
    {"SCMFLOW_TEST_TICK", SF_CFG_BOOL, "false", 0, 0, NULL,
     "test only: the test-tick task writes a row and emits an event per run", false},
    {"SCMFLOW_TEST_TICK_INTERVAL", SF_CFG_DURATION, "1h", 10, 86400000, NULL,
     "test only: interval of the test-tick task", false},
};

typedef struct test_state {
    bool direct;
    int64_t transient_every;
    int64_t last_failed; /* n of the last injected failure */
    bool row_batch;
    bool tick;
    /* Rows of the current batch attempt as PostgreSQL array literals. */
    sf_buf ids, ns, keys, parts, offs;
} test_state;

static int arr_add(sf_buf *b, const char *v)
{
    if (sf_buf_appendc(b, b->len == 0 ? '{' : ',') < 0)
        return -1;
    if (!v)
        return sf_buf_append(b, "NULL", 4);
    if (sf_buf_appendc(b, '"') < 0)
        return -1;
    for (const char *p = v; *p; p++)
        if (((*p == '"' || *p == '\\') && sf_buf_appendc(b, '\\') < 0) || sf_buf_appendc(b, *p) < 0)
            return -1;
    return sf_buf_appendc(b, '"');
}

static void test_batch_begin(sf_worker *w, void *ud)
{
    test_state *st = ud;

    (void)w;
    sf_buf_reset(&st->ids);
    sf_buf_reset(&st->ns);
    sf_buf_reset(&st->keys);
    sf_buf_reset(&st->parts);
    sf_buf_reset(&st->offs);
}

static int test_batch_end(sf_worker *w, void *ud, sf_error *err)
{
    test_state *st = ud;
    const char *params[5];

    if (!st->row_batch || st->ids.len == 0)
        return 0;
    if (sf_buf_appendc(&st->ids, '}') < 0 || sf_buf_appendc(&st->ns, '}') < 0 ||
        sf_buf_appendc(&st->keys, '}') < 0 || sf_buf_appendc(&st->parts, '}') < 0 ||
        sf_buf_appendc(&st->offs, '}') < 0)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "batch too large");
    params[0] = st->ids.data;
    params[1] = st->ns.data;
    params[2] = st->keys.data;
    params[3] = st->parts.data;
    params[4] = st->offs.data;
    return sf_db_exec(sf_worker_dbh(w),
                      "INSERT INTO test_items (msg_id, n, msg_key, src_partition, src_offset)"
                      " SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::int[], $5::bigint[])",
                      5, params, NULL, err);
}

static int test_init(sf_worker *w, void **ud, sf_error *err)
{
    test_state *st = calloc(1, sizeof(*st));
    const sf_config *cfg = sf_worker_config(w);

    if (!st)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    st->direct = sf_config_bool(cfg, "SCMFLOW_WORKER_DIRECT");
    st->transient_every = sf_config_int(cfg, "SCMFLOW_TEST_TRANSIENT_EVERY");
    st->row_batch = sf_config_bool(cfg, "SCMFLOW_TEST_ROW_BATCH");
    st->tick = sf_config_bool(cfg, "SCMFLOW_TEST_TICK");
    sf_buf_init(&st->ids, 64 * 1024 * 1024);
    sf_buf_init(&st->ns, 64 * 1024 * 1024);
    sf_buf_init(&st->keys, 64 * 1024 * 1024);
    sf_buf_init(&st->parts, 64 * 1024 * 1024);
    sf_buf_init(&st->offs, 64 * 1024 * 1024);
    *ud = st;
    if (st->direct)
        return 0;
    /* Instances start together: CREATE TABLE IF NOT EXISTS races in
     * PostgreSQL (unique violation on pg_type), so serialise it. */
    if (sf_db_begin(sf_worker_dbh(w), err) < 0)
        return -1;
    if (sf_db_exec(sf_worker_dbh(w), "SELECT pg_advisory_xact_lock(hashtext('sf-test-worker'))", 0, NULL, NULL,
                   err) < 0 ||
        sf_db_exec(sf_worker_dbh(w),
                   "CREATE TABLE IF NOT EXISTS test_items ("
                   " id bigserial PRIMARY KEY, msg_id text NOT NULL, n bigint NOT NULL,"
                   " msg_key text, src_partition int, src_offset bigint,"
                   " created_at timestamptz NOT NULL DEFAULT now())",
                   0, NULL, NULL, err) < 0 ||
        sf_db_exec(sf_worker_dbh(w),
                   "CREATE TABLE IF NOT EXISTS test_ticks ("
                   " id bigserial PRIMARY KEY, instance text NOT NULL,"
                   " created_at timestamptz NOT NULL DEFAULT clock_timestamp())",
                   0, NULL, NULL, err) < 0) {
        sf_db_rollback(sf_worker_dbh(w), NULL);
        return -1;
    }
    return sf_db_commit(sf_worker_dbh(w), err);
}

static void test_fini(sf_worker *w, void *ud)
{
    test_state *st = ud;

    (void)w;
    if (!st)
        return;
    sf_buf_release(&st->ids);
    sf_buf_release(&st->ns);
    sf_buf_release(&st->keys);
    sf_buf_release(&st->parts);
    sf_buf_release(&st->offs);
    free(st);
}

static int test_handle(sf_worker_ctx *ctx, const sf_event *ev, sf_error *err)
{
    sf_worker *w = sf_worker_ctx_worker(ctx);
    test_state *st = sf_worker_ud(w);
    const cJSON *data = sf_event_data(ev);
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(data, "n");
    cJSON *out = NULL;
    char nbuf[32], pbuf[16], obuf[32];
    int rc = -1;

    if (strcmp(sf_event_type(ev), TEST_TYPE) != 0)
        return sf_error_field(err, "type", "unexpected event type \"%s\" (want %s)", sf_event_type(ev), TEST_TYPE);
    if (!cJSON_IsNumber(n))
        return sf_error_field(err, "data.n", "data.n: %s", n ? "must be an integer" : "required");
    if (n->valuedouble != (double)(int64_t)n->valuedouble)
        return sf_error_field(err, "data.n", "data.n: must be an integer");
    /* Once per qualifying n (a retried batch must then succeed). */
    if (st->transient_every > 0 && (int64_t)n->valuedouble % st->transient_every == 0 &&
        (int64_t)n->valuedouble > st->last_failed) {
        st->last_failed = (int64_t)n->valuedouble;
        return sf_error_set(err, SF_ERR_TRANSIENT, 0, "injected transient failure (n = %lld)",
                            (long long)st->last_failed);
    }
    (void)sf_snprintf(nbuf, sizeof(nbuf), "%lld", (long long)n->valuedouble);
    if (!st->direct) {
        const char *params[5];

        (void)sf_snprintf(pbuf, sizeof(pbuf), "%d", (int)sf_worker_event_partition(ctx));
        (void)sf_snprintf(obuf, sizeof(obuf), "%lld", (long long)sf_worker_event_offset(ctx));
        params[0] = sf_event_id(ev);
        params[1] = nbuf;
        params[2] = sf_worker_event_key(ctx);
        params[3] = pbuf;
        params[4] = obuf;
        if (st->row_batch) {
            if (arr_add(&st->ids, params[0]) < 0 || arr_add(&st->ns, nbuf) < 0 ||
                arr_add(&st->keys, params[2]) < 0 || arr_add(&st->parts, pbuf) < 0 ||
                arr_add(&st->offs, obuf) < 0) {
                sf_error_set(err, SF_ERR_INTERNAL, 0, "batch too large");
                goto out;
            }
        } else if (sf_db_exec(sf_worker_db(ctx),
                       "INSERT INTO test_items (msg_id, n, msg_key, src_partition, src_offset)"
                       " VALUES ($1, $2::bigint, $3, $4::int, $5::bigint)",
                       5, params, NULL, err) < 0)
            goto out;
    }
    out = cJSON_CreateObject();
    if (!out || !cJSON_AddNumberToObject(out, "n", n->valuedouble)) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    if (sf_worker_emit(ctx, "scmflow.test.done", sf_worker_event_key(ctx), out, sf_event_id(ev), err) < 0)
        goto out;
    rc = 0;
out:
    cJSON_Delete(out);
    return rc;
}

/* One row + one event per run, in one transaction, then wake the relay. */
static int test_tick(sf_worker *w, void *ud, sf_error *err)
{
    test_state *st = ud;
    sf_db *db = sf_worker_dbh(w);
    const char *params[1];
    PGresult *res = NULL;
    const char *id = NULL;
    cJSON *data = NULL;
    int rc = -1;

    if (!st || !st->tick || st->direct)
        return 0;
    params[0] = sf_worker_instance_id(w);
    if (sf_db_begin(db, err) < 0)
        return -1;
    if (sf_db_exec(db, "INSERT INTO test_ticks (instance) VALUES ($1) RETURNING id::text", 1, params, &res, err) < 0 ||
        sf_db_get_str(res, 0, 0, &id, err) < 0)
        goto out;
    data = cJSON_CreateObject();
    if (!data || !cJSON_AddStringToObject(data, "tick", id) ||
        !cJSON_AddStringToObject(data, "instance", sf_worker_instance_id(w))) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    if (sf_worker_emit_db(w, db, "scmflow.test.tick", id, data, id, err) < 0)
        goto out;
    if (sf_db_commit(db, err) < 0)
        goto out;
    sf_worker_kick_relay(w);
    rc = 0;
out:
    if (rc < 0 && sf_db_in_transaction(db))
        sf_db_rollback(db, NULL);
    if (res)
        PQclear(res);
    cJSON_Delete(data);
    return rc;
}

static const sf_worker_task test_tasks[] = {
    {"test-tick", 3600000, test_tick, "SCMFLOW_TEST_TICK_INTERVAL", true, false},
};

static const char *const test_topics[] = {"test.in", NULL};

static const sf_worker_def test_def = {
    .name = "test-worker",
    .settings = test_settings,
    .nsettings = SF_ARRAY_LEN(test_settings),
    .topics = test_topics,
    .handler = test_handle,
    .tasks = test_tasks,
    .ntasks = 1,
    .init = test_init,
    .fini = test_fini,
    .allow_direct = true,
    .batch_begin = test_batch_begin,
    .batch_end = test_batch_end,
};

int main(int argc, char **argv)
{
    return sf_worker_main(argc, argv, &test_def);
}
