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
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "sf_db.h"
#include "sf_msg.h"
#include "sf_worker.h"
#include "sf_util.h"

#define TEST_TYPE "scmflow.test.item"

static const sf_cfg_def test_settings[] = {
    {"SCMFLOW_TEST_TRANSIENT_EVERY", SF_CFG_INT, "0", 0, 1000000, NULL,
     "test only: a message whose n is a multiple of this fails once, transiently (0 = never)", false},
};

typedef struct test_state {
    bool direct;
    int64_t transient_every;
    int64_t last_failed; /* n of the last injected failure */
} test_state;

static int test_init(sf_worker *w, void **ud, sf_error *err)
{
    test_state *st = calloc(1, sizeof(*st));
    const sf_config *cfg = sf_worker_config(w);

    if (!st)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    st->direct = sf_config_bool(cfg, "SCMFLOW_WORKER_DIRECT");
    st->transient_every = sf_config_int(cfg, "SCMFLOW_TEST_TRANSIENT_EVERY");
    *ud = st;
    if (st->direct)
        return 0;
    return sf_db_exec(sf_worker_dbh(w),
                      "CREATE TABLE IF NOT EXISTS test_items ("
                      " id bigserial PRIMARY KEY, msg_id text NOT NULL, n bigint NOT NULL,"
                      " msg_key text, src_partition int, src_offset bigint,"
                      " created_at timestamptz NOT NULL DEFAULT now())",
                      0, NULL, NULL, err);
}

static void test_fini(sf_worker *w, void *ud)
{
    (void)w;
    free(ud);
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
        if (sf_db_exec(sf_worker_db(ctx),
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

static const char *const test_topics[] = {"test.in", NULL};

static const sf_worker_def test_def = {
    .name = "test-worker",
    .settings = test_settings,
    .nsettings = SF_ARRAY_LEN(test_settings),
    .topics = test_topics,
    .handler = test_handle,
    .init = test_init,
    .fini = test_fini,
    .allow_direct = true,
};

int main(int argc, char **argv)
{
    return sf_worker_main(argc, argv, &test_def);
}
