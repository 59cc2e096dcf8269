/*
 * os_task.c - the submit task: everything that talks to SCM.
 *
 * One round:
 *   1. claim (one transaction): due scm_operations (state intent/unknown,
 *      next_attempt_at <= now, no live lease) FOR UPDATE SKIP LOCKED; take
 *      the lease; generate the key + CSR where needed (a key generated once
 *      is kept in the row, so a retry re-sends the same CSR); set
 *      call_started = true. COMMIT. From here on SCM may see the request.
 *   2. outside any transaction, per operation: if call_started was already
 *      true when claimed, an earlier attempt may have reached SCM (crash,
 *      timeout, reset): reconcile first (enroll: list by commonName and look
 *      for "scmflow-ref:<ref>" in the details' comments; renew: old order
 *      renewed?; reissue: status left Issued?; revoke: status Revoked?) and
 *      call SCM only when it has not happened.
 *   3. record (one transaction): results, state of the orders, events in the
 *      outbox. COMMIT.
 * A crash between 1 and 3 leaves leased rows with call_started = true: they
 * come back when the lease expires (or when the owner is found to be a dead
 * process of this host) and are reconciled. Never twice, never lost.
 *
 * A request SCM has received may still be acted on after its sender stopped
 * waiting: the worker was killed with the request in flight, or it timed
 * out. A reconcile in that window finds nothing and enrolls again: two SCM
 * orders (seen in fault.order.kill_storm). So an operation whose call may
 * have reached SCM is reconciled only SCMFLOW_SUBMIT_INFLIGHT_GRACE after
 * its lease ended (lease_until is left at the end time, not NULL, for
 * outcome unknown and for freed leases), and the holder never starts a call
 * so late in its lease that the call (with its retries) could outlast it
 * (op.send_by).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "os.h"
#include "sf_db.h"
#include "sf_keygen.h"
#include "sf_log.h"
#include "sf_metrics.h"
#include "sf_msg.h"
#include "sf_scm.h"
#include "sf_seal.h"
#include "sf_worker.h"
#include "sf_util.h"

#define OS_RECONCILE_PAGES 5

typedef enum { OUT_NONE, OUT_DONE, OUT_REFUSED, OUT_RETRY, OUT_UNKNOWN, OUT_SKIPPED } outcome;

typedef struct op {
    int64_t id;
    char *order_id, *kind, *account, *ref, *command_id, *request_txt;
    char *cn, *sans_json, *comments, *requesters_json, *custom_json;
    char *key_alg;
    int key_size;
    int64_t org_id, profile_id, term, ssl_id, attempt;
    char *renew_id;
    bool was_started;
    int64_t send_by;      /* monotonic ms: no SCM call for this op after it */
    char *csr;            /* operation CSR (BYO or generated) */
    char *key_sealed;     /* operation key (sealed) or NULL */
    char *order_key_sealed; /* the order's current key (reissue keeping the key) */
    char *from_order;     /* renew */
    int64_t from_ssl_id;  /* renew */
    cJSON *request;
    /* result */
    outcome out;
    int64_t new_ssl_id;
    char new_renew_id[64];
    sf_error err;
} op;

static void op_release(op *o)
{
    free(o->order_id); free(o->kind); free(o->account); free(o->ref); free(o->command_id);
    free(o->request_txt); free(o->cn); free(o->sans_json); free(o->comments);
    free(o->requesters_json); free(o->custom_json); free(o->key_alg); free(o->renew_id);
    free(o->csr); free(o->key_sealed); free(o->from_order); free(o->order_key_sealed);
    cJSON_Delete(o->request);
    memset(o, 0, sizeof(*o));
}

static char *col_dup(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : sf_strdup(PQgetvalue(res, row, col));
}

static int64_t col_i64(const PGresult *res, int row, int col)
{
    int64_t v = 0;

    if (!PQgetisnull(res, row, col))
        (void)sf_str_to_i64(PQgetvalue(res, row, col), INT64_MIN, INT64_MAX, &v);
    return v;
}

int os_emit_tx(os_runner *r, const char *type, const char *key, const cJSON *data,
               const char *correlationid, sf_error *err)
{
    char source[160], *payload = NULL;
    size_t len = 0;
    int rc;

    (void)sf_snprintf(source, sizeof(source), "scmflow/%s", sf_worker_name(os_worker(r)));
    if (sf_event_encode(type, source, NULL, correlationid, data, &payload, &len, err) < 0)
        return -1;
    rc = sf_db_outbox_add(sf_worker_dbh(os_worker(r)), os_events_topic(r), key, payload, len, err);
    free(payload);
    return rc;
}

/* ---- step 0: leases of dead processes of this host come back at once ---- */

static void free_dead_leases(os_runner *r)
{
    static const char sql[] =
        "SELECT DISTINCT lease_owner FROM scm_operations WHERE state IN ('intent', 'unknown')"
        " AND lease_until > now() AND lease_owner LIKE $1 AND lease_owner <> $2";
    static const char sql_free[] =
        /* ended now, not NULL: the grace of the claim starts here */
        "UPDATE scm_operations SET lease_until = now() WHERE lease_owner = $1"
        " AND state IN ('intent', 'unknown') AND lease_until > now()";
    const char *me = sf_worker_instance_id(os_worker(r));
    const char *dash = strrchr(me, '-');
    char like[300];
    PGresult *res = NULL;
    sf_db *db = sf_worker_dbh(os_worker(r));

    if (dash == NULL)
        return;
    (void)sf_snprintf(like, sizeof(like), "%.*s-%%", (int)(dash - me), me);
    {
        const char *p[2] = {like, me};

        if (sf_db_exec(db, sql, 2, p, &res, NULL) < 0)
            return;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        const char *owner = PQgetvalue(res, i, 0), *d = strrchr(owner, '-');
        int64_t pid;

        if (d == NULL || (size_t)(d - owner) != (size_t)(dash - me) ||
            sf_str_to_i64(d + 1, 1, INT32_MAX, &pid) < 0)
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        {
            const char *p[1] = {owner};

            if (sf_db_exec(db, sql_free, 1, p, NULL, NULL) == 0)
                sf_log_info("took back the leases of dead process %s", owner);
        }
    }
    PQclear(res);
}

/* ---- step 1: claim ---- */

static int claim(os_runner *r, op *ops, int max, int *n, sf_error *err)
{
    static const char sql[] =
        "WITH due AS ("
        "  SELECT s.id, s.call_started FROM scm_operations s"
        "  WHERE s.state IN ('intent', 'unknown') AND s.next_attempt_at <= now()"
        "    AND (s.lease_until IS NULL OR s.lease_until < now() - CASE WHEN s.call_started"
        "         THEN $4::bigint * interval '1 millisecond' ELSE interval '0' END)"
        "  ORDER BY s.next_attempt_at, s.id LIMIT $2::int FOR UPDATE SKIP LOCKED)"
        " UPDATE scm_operations s SET lease_owner = $1,"
        "   lease_until = now() + $3::bigint * interval '1 millisecond',"
        "   attempt = CASE WHEN s.lease_owner IS NULL THEN s.attempt ELSE s.attempt + 1 END,"
        "   updated_at = now()"
        " FROM due, orders o WHERE s.id = due.id AND o.id = s.order_id"
        " RETURNING s.id, s.order_id, s.kind, o.account, s.correlation_ref, s.command_id,"
        "   s.request::text, o.common_name, to_jsonb(o.sans)::text, o.comments,"
        "   to_jsonb(o.external_requesters)::text, o.custom_fields::text, o.key_algorithm,"
        "   coalesce(o.key_size, 0), coalesce(o.org_id, 0), coalesce(o.profile_id, 0),"
        "   coalesce(o.term_days, 0), coalesce(o.ssl_id, 0), o.renew_id, due.call_started,"
        "   s.csr_pem, s.private_key_sealed, s.attempt, o.private_key_sealed";
    char maxb[16], leaseb[32], graceb[32];
    const char *p[4] = {sf_worker_instance_id(os_worker(r)), maxb, leaseb, graceb};
    PGresult *res = NULL;
    int k = 0;

    (void)sf_snprintf(maxb, sizeof(maxb), "%d", max);
    (void)sf_snprintf(leaseb, sizeof(leaseb), "%lld",
                      (long long)os_setting_ms(r, "SCMFLOW_SUBMIT_LEASE"));
    (void)sf_snprintf(graceb, sizeof(graceb), "%lld",
                      (long long)os_setting_ms(r, "SCMFLOW_SUBMIT_INFLIGHT_GRACE"));
    if (sf_db_exec(sf_worker_dbh(os_worker(r)), sql, 4, p, &res, err) < 0)
        return -1;
    for (int i = 0; i < PQntuples(res) && k < max; i++, k++) {
        op *o = &ops[k];

        memset(o, 0, sizeof(*o));
        o->id = col_i64(res, i, 0);
        o->order_id = col_dup(res, i, 1);
        o->kind = col_dup(res, i, 2);
        o->account = col_dup(res, i, 3);
        o->ref = col_dup(res, i, 4);
        o->command_id = col_dup(res, i, 5);
        o->request_txt = col_dup(res, i, 6);
        o->cn = col_dup(res, i, 7);
        o->sans_json = col_dup(res, i, 8);
        o->comments = col_dup(res, i, 9);
        o->requesters_json = col_dup(res, i, 10);
        o->custom_json = col_dup(res, i, 11);
        o->key_alg = col_dup(res, i, 12);
        o->key_size = (int)col_i64(res, i, 13);
        o->org_id = col_i64(res, i, 14);
        o->profile_id = col_i64(res, i, 15);
        o->term = col_i64(res, i, 16);
        o->ssl_id = col_i64(res, i, 17);
        o->renew_id = col_dup(res, i, 18);
        o->was_started = strcmp(PQgetvalue(res, i, 19), "t") == 0;
        o->csr = col_dup(res, i, 20);
        o->key_sealed = col_dup(res, i, 21);
        o->attempt = col_i64(res, i, 22);
        o->order_key_sealed = col_dup(res, i, 23);
        o->request = o->request_txt ? cJSON_Parse(o->request_txt) : NULL;
        if (o->request == NULL)
            o->request = cJSON_CreateObject();
        {
            const cJSON *f = cJSON_GetObjectItemCaseSensitive(o->request, "from_order");
            const cJSON *s = cJSON_GetObjectItemCaseSensitive(o->request, "from_ssl_id");

            if (cJSON_IsString(f))
                o->from_order = sf_strdup(f->valuestring);
            if (cJSON_IsNumber(s))
                o->from_ssl_id = (int64_t)s->valuedouble;
        }
    }
    *n = k;
    PQclear(res);
    return 0;
}

static bool req_bool(const op *o, const char *name, bool def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o->request, name);

    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

/* Names for the CSR: the order's SANs (or a reissue's new ones). */
static char **names_of(const op *o, size_t *n)
{
    const cJSON *src = NULL, *e;
    cJSON *parsed = NULL;
    char **v;
    size_t k = 0;

    if (strcmp(o->kind, "reissue") == 0)
        src = cJSON_GetObjectItemCaseSensitive(o->request, "sans");
    if (!cJSON_IsArray(src))
        src = parsed = cJSON_Parse(o->sans_json ? o->sans_json : "[]");
    v = calloc((size_t)cJSON_GetArraySize(src) + 1, sizeof(*v));
    cJSON_ArrayForEach(e, src)
        if (v && cJSON_IsString(e) && k < SF_CSR_MAX_SANS)
            v[k++] = sf_strdup(e->valuestring);
    cJSON_Delete(parsed);
    *n = k;
    return v;
}

static void names_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

/* Generate the key and CSR of an operation that needs one. */
static int prepare_key(os_runner *r, op *o, sf_error *err)
{
    EVP_PKEY *pk = NULL;
    char *pem = NULL, *csr = NULL, aad[200];
    char **names = NULL;
    size_t nn = 0;
    int rc = -1;

    if (o->csr)
        return 0; /* BYO, or generated by an earlier attempt: re-send the same */
    if (strcmp(o->kind, "revoke") == 0)
        return 0;
    if (strcmp(o->kind, "renew") == 0 && !req_bool(o, "new_key", false))
        return 0; /* SCM reuses the old CSR; the key is carried over on success */
    if (strcmp(o->kind, "reissue") == 0 && !req_bool(o, "new_key", true)) {
        /* keep the key: a new CSR (new names) signed by the order's key */
        unsigned char *kp = NULL;
        size_t kl = 0;
        int x;

        if (o->order_key_sealed == NULL)
            return sf_error_field(err, "new_key",
                                  "the order has no key of its own (own CSR): give a CSR");
        (void)sf_snprintf(aad, sizeof(aad), OS_AAD_KEY_FMT, o->order_id);
        if (sf_unseal(os_sealer(r), o->order_key_sealed, aad, &kp, &kl, err) < 0)
            return -1;
        x = sf_key_from_pem((const char *)kp, kl, &pk, err);
        sf_secret_free(kp, kl);
        if (x < 0)
            return -1;
        if ((names = names_of(o, &nn)) == NULL ||
            sf_csr_build(pk, o->cn, (const char *const *)names, nn, &csr, err) < 0)
            goto out;
        o->csr = csr;
        csr = NULL;
        rc = 0;
        goto out;
    }
    if (sf_keygen_generate(o->key_alg ? o->key_alg : "RSA", o->key_size ? o->key_size : 2048,
                           &pk, err) < 0)
        goto out;
    names = names_of(o, &nn);
    if (names == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    if (sf_csr_build(pk, o->cn, (const char *const *)names, nn, &csr, err) < 0 ||
        sf_key_to_pem(pk, &pem, err) < 0)
        goto out;
    (void)sf_snprintf(aad, sizeof(aad), OS_AAD_KEY_FMT, o->order_id);
    if (sf_seal(os_sealer(r), pem, strlen(pem), aad, &o->key_sealed, err) < 0)
        goto out;
    o->csr = csr;
    csr = NULL;
    rc = 0;
out:
    names_free(names, nn);
    sf_secret_str_free(pem);
    free(csr);
    EVP_PKEY_free(pk);
    return rc;
}

/* ---- parallel key preparation ----
 * Key generation (RSA above all) is the CPU cost of an order: the keys of a
 * claimed round are generated by several threads at once so a replica uses
 * every core. prepare_key touches only its own op, the sealer (thread-safe
 * after setup) and OpenSSL (reentrant). */
typedef struct kg_pool {
    os_runner *r;
    op *ops;
    int n;
    atomic_int next;
} kg_pool;

static void *kg_main(void *arg)
{
    kg_pool *p = arg;
    int i;

    while ((i = atomic_fetch_add(&p->next, 1)) < p->n) {
        op *o = &p->ops[i];

        sf_error_clear(&o->err);
        if (prepare_key(p->r, o, &o->err) < 0)
            o->out = OUT_REFUSED; /* cannot build the request: definite failure */
    }
    return NULL;
}

static int keygen_threads(os_runner *r)
{
    int64_t want = os_setting_int(r, "SCMFLOW_SUBMIT_KEYGEN_THREADS");

    if (want <= 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);

        want = cpus > 0 ? cpus : 1;
        if (want > 8)
            want = 8;
    }
    return (int)want;
}

static void prepare_keys(os_runner *r, op *ops, int n)
{
    kg_pool p = {r, ops, n, 0};
    pthread_t th[64];
    int want = keygen_threads(r), nt = 0, gen = 0;

    for (int i = 0; i < n; i++)
        if (ops[i].csr == NULL && strcmp(ops[i].kind, "revoke") != 0)
            gen++;
    if (want > gen)
        want = gen;
    if (want > 64)
        want = 64;
    /* The calling thread works too: want - 1 extra threads. */
    for (int k = 0; k + 1 < want; k++) {
        if (pthread_create(&th[nt], NULL, kg_main, &p) != 0)
            break;
        nt++;
    }
    (void)kg_main(&p);
    for (int k = 0; k < nt; k++)
        pthread_join(th[k], NULL);
}

/* Claim, prepare keys and mark call_started, in one transaction. */
static int claim_and_prepare(os_runner *r, op *ops, int max, int *n, sf_error *err)
{
    static const char sql_start[] =
        /* Renew the lease from the wall clock now that the keys exist: the
         * claim's now() is the transaction start, and key generation for a
         * batch can outlast the lease; another replica would then claim
         * and reconcile while we enroll (two SCM orders). The claim set
         * lease_until - updated_at = the lease length. */
        "UPDATE scm_operations s SET call_started = true, csr_pem = x.csr,"
        " private_key_sealed = x.key,"
        " lease_until = clock_timestamp() + (s.lease_until - s.updated_at),"
        " updated_at = now()"
        " FROM jsonb_to_recordset($1::jsonb) AS x(id bigint, csr text, key text)"
        " WHERE s.id = x.id";
    static const char sql_order[] =
        "UPDATE orders o SET state = 'submitting', csr_pem = coalesce(x.csr, o.csr_pem),"
        " private_key_sealed = coalesce(x.key, o.private_key_sealed), updated_at = now()"
        " FROM jsonb_to_recordset($1::jsonb) AS x(order_id text, csr text, key text)"
        " WHERE o.id = x.order_id AND o.state IN ('accepted', 'submitting')";
    sf_db *db = sf_worker_dbh(os_worker(r));
    int k = 0;

    *n = 0;
    if (sf_db_begin(db, err) < 0)
        return -1;
    if (claim(r, ops, max, &k, err) < 0)
        goto fail;
    prepare_keys(r, ops, k);
    /* One statement per table for the whole round (not two per operation):
     * round trips were the cost of an EC order. */
    {
        cJSON *sa = cJSON_CreateArray(), *oa = cJSON_CreateArray();
        char *st = NULL, *ot = NULL;
        int ns = 0, no = 0, x = 0;

        for (int i = 0; sa && oa && i < k; i++) {
            op *o = &ops[i];
            cJSON *e;

            if (o->out == OUT_REFUSED)
                continue; /* prepare_keys could not build the request */
            if ((e = cJSON_CreateObject()) == NULL)
                break;
            cJSON_AddNumberToObject(e, "id", (double)o->id);
            cJSON_AddItemToObject(e, "csr", o->csr ? cJSON_CreateString(o->csr) : cJSON_CreateNull());
            cJSON_AddItemToObject(e, "key", o->key_sealed ? cJSON_CreateString(o->key_sealed)
                                                          : cJSON_CreateNull());
            cJSON_AddItemToArray(sa, e);
            ns++;
            if (strcmp(o->kind, "enroll") == 0) {
                if ((e = cJSON_CreateObject()) == NULL)
                    break;
                cJSON_AddStringToObject(e, "order_id", o->order_id);
                cJSON_AddItemToObject(e, "csr", o->csr ? cJSON_CreateString(o->csr)
                                                       : cJSON_CreateNull());
                cJSON_AddItemToObject(e, "key", o->key_sealed ? cJSON_CreateString(o->key_sealed)
                                                              : cJSON_CreateNull());
                cJSON_AddItemToArray(oa, e);
                no++;
            }
        }
        st = sa ? cJSON_PrintUnformatted(sa) : NULL;
        ot = oa ? cJSON_PrintUnformatted(oa) : NULL;
        if (st == NULL || ot == NULL) {
            sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
            x = -1;
        }
        if (x == 0 && ns > 0) {
            const char *p[1] = {st};
            /* the lease runs from sql_start's clock_timestamp(), after this;
             * a call (budget 2 x timeout, the last attempt 1 x) started by
             * send_by ends within it */
            int64_t send_by = sf_now_mono_ms() + os_setting_ms(r, "SCMFLOW_SUBMIT_LEASE") -
                              3 * os_setting_ms(r, "SCMFLOW_SCM_TIMEOUT");

            for (int i = 0; i < k; i++)
                ops[i].send_by = send_by;
            x = sf_db_exec(db, sql_start, 1, p, NULL, err);
        }
        if (x == 0 && no > 0) {
            const char *p[1] = {ot};

            x = sf_db_exec(db, sql_order, 1, p, NULL, err);
        }
        /* the JSON holds sealed keys only (ciphertext), never plain keys */
        free(st);
        free(ot);
        cJSON_Delete(sa);
        cJSON_Delete(oa);
        if (x < 0)
            goto fail;
    }
    if (sf_db_commit(db, err) < 0)
        goto fail_nr;
    *n = k;
    return 0;
fail:
    (void)sf_db_rollback(db, NULL);
fail_nr:
    for (int i = 0; i < k; i++)
        op_release(&ops[i]);
    return -1;
}

/* ---- step 2: SCM ---- */

static int json_strv(const char *txt, char ***out, size_t *n)
{
    cJSON *a = cJSON_Parse(txt ? txt : "[]"), *e;
    char **v;
    size_t k = 0;

    v = calloc((size_t)(a ? cJSON_GetArraySize(a) : 0) + 1, sizeof(*v));
    if (v == NULL) {
        cJSON_Delete(a);
        return -1;
    }
    cJSON_ArrayForEach(e, a)
        if (cJSON_IsString(e))
            v[k++] = sf_strdup(e->valuestring);
    cJSON_Delete(a);
    *out = v;
    *n = k;
    return 0;
}

/* Comments sent to SCM: the order's comments + the reconcile marker. */
static char *enroll_comments(const op *o)
{
    if (o->comments && o->comments[0])
        return sf_asprintf("%s " OS_REF_MARK "%s", o->comments, o->ref);
    return sf_asprintf(OS_REF_MARK "%s", o->ref);
}

static int do_enroll(sf_scm_client *scm, op *o, sf_error *err)
{
    sf_scm_enroll_req req;
    sf_scm_enroll_resp resp;
    char **sans = NULL, **reqs = NULL, *comments = NULL, *requester = NULL;
    size_t nsans = 0, nreqs = 0;
    sf_scm_name_value *cf = NULL;
    size_t ncf = 0;
    cJSON *cfj = NULL, *e;
    sf_buf b;
    int rc = -1;

    sf_buf_init(&b, 4096);
    memset(&req, 0, sizeof(req));
    memset(&resp, 0, sizeof(resp));
    if (json_strv(o->sans_json, &sans, &nsans) < 0 ||
        json_strv(o->requesters_json, &reqs, &nreqs) < 0 ||
        (comments = enroll_comments(o)) == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nreqs; i++)
        if ((i && sf_buf_appendc(&b, ',') < 0) || sf_buf_append(&b, reqs[i], strlen(reqs[i])) < 0) {
            sf_error_field(err, "external_requesters", "too long");
            goto out;
        }
    requester = nreqs ? b.data : NULL;
    cfj = cJSON_Parse(o->custom_json ? o->custom_json : "[]");
    if (cJSON_GetArraySize(cfj) > 0) {
        cf = calloc((size_t)cJSON_GetArraySize(cfj), sizeof(*cf));
        cJSON_ArrayForEach(e, cfj) {
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name");
            const cJSON *vl = cJSON_GetObjectItemCaseSensitive(e, "value");

            if (cf && cJSON_IsString(nm) && cJSON_IsString(vl)) {
                cf[ncf].name = nm->valuestring;
                cf[ncf++].value = vl->valuestring;
            }
        }
    }
    req.org_id = o->org_id;
    req.csr = o->csr;
    req.cert_type = o->profile_id;
    req.term = o->term;
    req.sans = (const char *const *)sans;
    req.n_sans = nsans;
    req.comments = comments;
    req.external_requester = requester;
    req.custom_fields = cf;
    req.n_custom_fields = ncf;
    if (sf_scm_enroll(scm, &req, &resp, err) < 0)
        goto out;
    o->new_ssl_id = resp.ssl_id;
    (void)sf_snprintf(o->new_renew_id, sizeof(o->new_renew_id), "%s", resp.renew_id);
    rc = 0;
out:
    free(cf);
    cJSON_Delete(cfj);
    names_free(sans, nsans);
    names_free(reqs, nreqs);
    free(comments);
    sf_buf_release(&b);
    return rc;
}

/* Is there an SCM order carrying our marker? 1 found (*ssl_id), 0 not, -1 error. */
static int find_enrollment(sf_scm_client *scm, const op *o, int64_t *ssl_id, sf_error *err)
{
    char mark[96];

    (void)sf_snprintf(mark, sizeof(mark), OS_REF_MARK "%s", o->ref);
    for (int page = 0; page < OS_RECONCILE_PAGES; page++) {
        sf_scm_cert_filter f = SF_SCM_CERT_FILTER_INIT;
        sf_scm_cert_page *pg = NULL;
        size_t n;

        f.common_name = o->cn;
        f.position = (int64_t)page * 200;
        f.size = 200;
        if (sf_scm_list_certs(scm, &f, &pg, err) < 0)
            return -1;
        n = pg->n;
        /* newest (highest sslId) first: our order is most likely recent */
        for (size_t i = n; i-- > 0;) {
            sf_scm_cert *c = NULL;
            int found;

            if (sf_scm_get_cert(scm, pg->items[i].ssl_id, &c, err) < 0) {
                if (err && err->cls == SF_ERR_NOT_FOUND)
                    continue;
                sf_scm_cert_page_free(pg);
                return -1;
            }
            found = c->comments && strstr(c->comments, mark) != NULL;
            if (found)
                *ssl_id = pg->items[i].ssl_id;
            sf_scm_cert_free(c);
            if (found) {
                sf_scm_cert_page_free(pg);
                return 1;
            }
        }
        sf_scm_cert_page_free(pg);
        if (n < 200)
            break;
    }
    return 0;
}

/* Renew reconcile: the renewal of from_ssl_id, when SCM shows one. */
static int find_renewal(os_runner *r, sf_scm_client *scm, const op *o, int64_t *ssl_id,
                        sf_error *err)
{
    static const char sql_known[] =
        "SELECT 1 FROM orders WHERE account = $1 AND ssl_id = $2::bigint";
    sf_scm_cert *old = NULL;
    sf_scm_cert_filter f = SF_SCM_CERT_FILTER_INIT;
    sf_scm_cert_page *pg = NULL;
    int rc = -1;
    int64_t best = 0;

    if (sf_scm_get_cert(scm, o->from_ssl_id, &old, err) < 0)
        return -1;
    if (!old->renewed) {
        rc = 0;
        goto out;
    }
    f.common_name = o->cn;
    f.size = 200;
    if (sf_scm_list_certs(scm, &f, &pg, err) < 0)
        goto out;
    for (size_t i = 0; i < pg->n; i++) {
        char idb[32];
        PGresult *res = NULL;
        const char *p[2] = {o->account, idb};

        if (pg->items[i].ssl_id <= o->from_ssl_id || pg->items[i].ssl_id <= best)
            continue;
        (void)sf_snprintf(idb, sizeof(idb), "%lld", (long long)pg->items[i].ssl_id);
        if (sf_db_exec(sf_worker_dbh(os_worker(r)), sql_known, 2, p, &res, err) < 0)
            goto out;
        if (PQntuples(res) == 0)
            best = pg->items[i].ssl_id;
        PQclear(res);
    }
    if (best > 0) {
        *ssl_id = best;
        rc = 1;
    } else {
        rc = sf_error_set(err, SF_ERR_UNKNOWN, 0,
                          "SCM shows sslId %lld renewed but the renewal was not found",
                          (long long)o->from_ssl_id);
    }
out:
    sf_scm_cert_page_free(pg);
    sf_scm_cert_free(old);
    return rc;
}

/* Status of an order in SCM (reissue/revoke reconcile). Caller frees. */
static int scm_status(sf_scm_client *scm, int64_t ssl_id, char **status, sf_error *err)
{
    sf_scm_cert *c = NULL;

    if (sf_scm_get_cert(scm, ssl_id, &c, err) < 0)
        return -1;
    *status = sf_strdup(c->status ? c->status : "");
    sf_scm_cert_free(c);
    return 0;
}

/* False when the op's lease is too far gone to start a call that could
 * reach SCM (op.send_by): the op is given back unrun and reconciled by
 * whoever takes it. */
static bool may_send(op *o)
{
    if (sf_now_mono_ms() <= o->send_by)
        return true;
    sf_log_warn("%s of order %s not sent: too little of the lease left for an SCM call "
                "(given back)", o->kind, o->order_id);
    o->out = OUT_SKIPPED;
    return false;
}

static void run_one(os_runner *r, op *o, sf_scm_client *own)
{
    sf_scm_client *scm = own;
    sf_error *err = &o->err;
    int found = 0;

    sf_error_clear(err);
    sf_log_ctx_order(o->order_id);
    if (scm == NULL && (scm = os_scm_for_account(r, o->account, err)) == NULL) {
        o->out = OUT_RETRY;
        return;
    }
    if (strcmp(o->kind, "enroll") == 0) {
        if (o->was_started) {
            found = find_enrollment(scm, o, &o->new_ssl_id, err);
            if (found < 0)
                goto failed;
            sf_log_info("reconciled enroll of order %s: %s", o->order_id,
                        found ? "SCM has it" : "SCM does not have it, enrolling");
            if (found) {
                o->out = OUT_DONE;
                return;
            }
        }
        if (!may_send(o))
            return;
        sf_failpoint("submit.before_scm_call");
        if (do_enroll(scm, o, err) < 0)
            goto failed;
        sf_failpoint("submit.after_scm_call_before_commit");
    } else if (strcmp(o->kind, "renew") == 0) {
        if (o->was_started) {
            found = find_renewal(r, scm, o, &o->new_ssl_id, err);
            if (found < 0)
                goto failed;
            if (found) {
                o->out = OUT_DONE;
                return;
            }
        }
        if (!may_send(o))
            return;
        sf_failpoint("submit.before_scm_call");
        if (sf_scm_renew_by_id(scm, o->from_ssl_id, o->csr, &o->new_ssl_id, err) < 0)
            goto failed;
        sf_failpoint("submit.after_scm_call_before_commit");
    } else if (strcmp(o->kind, "reissue") == 0) {
        if (o->was_started) {
            char *st = NULL;

            if (scm_status(scm, o->ssl_id, &st, err) < 0)
                goto failed;
            found = strcasecmp(st, "Issued") != 0;
            free(st);
            if (found) {
                o->out = OUT_DONE;
                return;
            }
        }
        {
            sf_scm_replace_req rq;
            const cJSON *reason = cJSON_GetObjectItemCaseSensitive(o->request, "reason");
            char **sans = NULL;
            size_t nsans = 0;
            int rc;

            memset(&rq, 0, sizeof(rq));
            rq.csr = o->csr;
            rq.reason = cJSON_IsString(reason) ? reason->valuestring : "reissue";
            rq.common_name = o->cn;
            sans = names_of(o, &nsans);
            rq.sans = (const char *const *)sans;
            rq.n_sans = nsans;
            if (!may_send(o)) {
                names_free(sans, nsans);
                return;
            }
            sf_failpoint("submit.before_scm_call");
            rc = sf_scm_replace(scm, o->ssl_id, &rq, err);
            names_free(sans, nsans);
            if (rc < 0)
                goto failed;
            sf_failpoint("submit.after_scm_call_before_commit");
        }
    } else if (strcmp(o->kind, "revoke") == 0) {
        const cJSON *rc_ = cJSON_GetObjectItemCaseSensitive(o->request, "reason_code");
        const cJSON *rs = cJSON_GetObjectItemCaseSensitive(o->request, "reason");

        if (o->was_started) {
            char *st = NULL;

            if (scm_status(scm, o->ssl_id, &st, err) < 0)
                goto failed;
            found = strcasecmp(st, "Revoked") == 0;
            free(st);
            if (found) {
                o->out = OUT_DONE;
                return;
            }
        }
        if (!may_send(o))
            return;
        sf_failpoint("submit.before_scm_call");
        if (sf_scm_revoke(scm, o->ssl_id, cJSON_IsNumber(rc_) ? (int)rc_->valuedouble : 0,
                          cJSON_IsString(rs) ? rs->valuestring : "revoked", err) < 0) {
            /* -159: already revoked = what we wanted */
            if (err->cls == SF_ERR_REJECTED && err->code == -159) {
                o->out = OUT_DONE;
                return;
            }
            goto failed;
        }
        sf_failpoint("submit.after_scm_call_before_commit");
    } else {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "unknown operation kind \"%s\"", o->kind);
        o->out = OUT_REFUSED;
        return;
    }
    o->out = OUT_DONE;
    return;
failed:
    switch (err->cls) {
    case SF_ERR_REJECTED:
    case SF_ERR_NOT_FOUND:
    case SF_ERR_INVALID:
        o->out = OUT_REFUSED;
        break;
    case SF_ERR_UNKNOWN:
        o->out = OUT_UNKNOWN;
        break;
    case SF_ERR_AUTH:
        if (own == NULL)
            os_scm_drop(r, o->account);
        o->out = OUT_RETRY;
        break;
    default:
        o->out = OUT_RETRY;
        break;
    }
    sf_log_warn("%s of order %s: %s (%s)", o->kind, o->order_id, err->msg,
                sf_err_class_name(err->cls));
}

/* ---- step 3: record ---- */

static cJSON *error_json(const sf_error *e, const char *code)
{
    cJSON *j = cJSON_CreateObject();
    char msg[600];

    (void)sf_snprintf(msg, sizeof(msg), "%s", e->msg[0] ? e->msg : sf_err_class_name(e->cls));
    cJSON_AddStringToObject(j, "code", code);
    cJSON_AddStringToObject(j, "message", msg);
    if (e->cls == SF_ERR_REJECTED && e->code >= -1000000 && e->code <= 1000000)
        cJSON_AddNumberToObject(j, "scm_code", e->code);
    return j;
}

static int64_t backoff_ms(os_runner *r, int64_t attempt)
{
    int64_t base = os_setting_ms(r, "SCMFLOW_SUBMIT_RETRY_BASE");
    int64_t cap = os_setting_ms(r, "SCMFLOW_SUBMIT_RETRY_MAX"), d = base;
    unsigned char rnd[2] = {0, 0};

    for (int64_t i = 1; i < attempt && d < cap; i++)
        d *= 2;
    if (d > cap)
        d = cap;
    (void)RAND_bytes(rnd, 2);
    /* +-25% jitter */
    return d * 3 / 4 + (d / 2) * (int64_t)(rnd[0] | rnd[1] << 8) / 65536;
}

static int emit_ev(os_runner *r, const char *type, const char *order_id, cJSON *d,
                   const char *corr, sf_error *err)
{
    int rc;

    if (d == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    rc = os_emit_tx(r, type, order_id, d, corr, err);
    cJSON_Delete(d);
    return rc;
}

static cJSON *ev_base(const char *order_id)
{
    cJSON *d = cJSON_CreateObject();

    if (d)
        cJSON_AddStringToObject(d, "order_id", order_id);
    return d;
}

static int record_done(os_runner *r, op *o, sf_error *err)
{
    static const char sql_op[] =
        "UPDATE scm_operations SET state = 'done', result = $2::jsonb, finished_at = now(),"
        " lease_owner = NULL, lease_until = NULL, last_error = NULL, updated_at = now()"
        " WHERE id = $1::bigint";
    static const char sql_renew[] =
        "UPDATE orders SET state = 'submitted', ssl_id = $2::bigint,"
        " csr_pem = coalesce($4, (SELECT csr_pem FROM orders WHERE id = $5)),"
        " private_key_sealed = $6, submitted_at = now(),"
        " next_check_at = now() + $3::bigint * interval '1 millisecond', check_step = 0,"
        " last_error = NULL, updated_at = now() WHERE id = $1";
    static const char sql_reissue[] =
        "UPDATE orders SET state = 'submitted', scm_status = NULL, issued_at = NULL,"
        " csr_pem = coalesce($2, csr_pem), private_key_sealed = coalesce($3, private_key_sealed),"
        " sans = CASE WHEN $4::jsonb IS NULL THEN sans"
        "        ELSE ARRAY(SELECT jsonb_array_elements_text($4::jsonb)) END,"
        " next_check_at = now() + $5::bigint * interval '1 millisecond', check_step = 0,"
        " last_error = NULL, updated_at = now() WHERE id = $1";
    static const char sql_revoke[] =
        "UPDATE orders SET state = 'revoked', scm_status = 'Revoked', next_check_at = NULL,"
        " last_error = NULL, updated_at = now() WHERE id = $1";
    static const char sql_cert_revoked[] =
        "UPDATE certificates SET status = 'revoked', updated_at = now() WHERE order_id = $1";
    sf_db *db = sf_worker_dbh(os_worker(r));
    char idb[32], sslb[32], firstb[32], *res_txt = NULL, *carried = NULL;
    cJSON *res = cJSON_CreateObject(), *d;
    int rc = -1;

    (void)sf_snprintf(idb, sizeof(idb), "%lld", (long long)o->id);
    (void)sf_snprintf(sslb, sizeof(sslb), "%lld", (long long)o->new_ssl_id);
    (void)sf_snprintf(firstb, sizeof(firstb), "%lld",
                      (long long)os_setting_ms(r, "SCMFLOW_SUBMIT_FIRST_CHECK"));
    if (o->new_ssl_id > 0)
        cJSON_AddNumberToObject(res, "ssl_id", (double)o->new_ssl_id);
    if ((res_txt = cJSON_PrintUnformatted(res)) == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    /* enrolls are recorded in bulk (record_enrolls_done) */
    {
        const char *p[2] = {idb, res_txt};

        if (sf_db_exec(db, sql_op, 2, p, NULL, err) < 0)
            goto out;
    }
    if (strcmp(o->kind, "renew") == 0) {
        const char *key = o->key_sealed;

        if (key == NULL && o->from_order) {
            /* no new key: the renewal keeps the old key, re-bound to the new order id */
            static const char sql_old[] = "SELECT private_key_sealed FROM orders WHERE id = $1";
            const char *p1[1] = {o->from_order};
            PGresult *kr = NULL;

            if (sf_db_exec(db, sql_old, 1, p1, &kr, err) < 0)
                goto out;
            if (PQntuples(kr) == 1 && !PQgetisnull(kr, 0, 0)) {
                char aad[200], aad2[200];
                unsigned char *pl = NULL;
                size_t pll = 0;

                (void)sf_snprintf(aad, sizeof(aad), OS_AAD_KEY_FMT, o->from_order);
                (void)sf_snprintf(aad2, sizeof(aad2), OS_AAD_KEY_FMT, o->order_id);
                if (sf_unseal(os_sealer(r), PQgetvalue(kr, 0, 0), aad, &pl, &pll, err) < 0 ||
                    sf_seal(os_sealer(r), pl, pll, aad2, &carried, err) < 0) {
                    sf_secret_free(pl, pll);
                    PQclear(kr);
                    goto out;
                }
                sf_secret_free(pl, pll);
            }
            PQclear(kr);
            key = carried;
        }
        {
            const char *p[6] = {o->order_id, sslb, firstb, o->csr, o->from_order, key};

            if (sf_db_exec(db, sql_renew, 6, p, NULL, err) < 0)
                goto out;
        }
        d = ev_base(o->order_id);
        cJSON_AddNumberToObject(d, "ssl_id", (double)o->new_ssl_id);
        if (o->from_ssl_id > 0)
            cJSON_AddNumberToObject(d, "previous_ssl_id", (double)o->from_ssl_id);
        if (o->from_order)
            cJSON_AddStringToObject(d, "renewed_from", o->from_order);
        if (emit_ev(r, SF_EV_ORDER_RENEWED, o->order_id, d, o->command_id, err) < 0)
            goto out;
    } else if (strcmp(o->kind, "reissue") == 0) {
        const cJSON *sans = cJSON_GetObjectItemCaseSensitive(o->request, "sans");
        char *sans_txt = cJSON_IsArray(sans) ? cJSON_PrintUnformatted(sans) : NULL;
        const char *p[5] = {o->order_id, o->csr, o->key_sealed, sans_txt, firstb};
        int x = sf_db_exec(db, sql_reissue, 5, p, NULL, err);

        cJSON_free(sans_txt);
        if (x < 0)
            goto out;
        d = ev_base(o->order_id);
        cJSON_AddNumberToObject(d, "ssl_id", (double)o->ssl_id);
        if (emit_ev(r, SF_EV_ORDER_REISSUED, o->order_id, d, o->command_id, err) < 0)
            goto out;
    } else if (strcmp(o->kind, "revoke") == 0) {
        const cJSON *rcode = cJSON_GetObjectItemCaseSensitive(o->request, "reason_code");
        const char *p[1] = {o->order_id};

        if (sf_db_exec(db, sql_revoke, 1, p, NULL, err) < 0 ||
            sf_db_exec(db, sql_cert_revoked, 1, p, NULL, err) < 0)
            goto out;
        d = ev_base(o->order_id);
        cJSON_AddNumberToObject(d, "ssl_id", (double)o->ssl_id);
        if (cJSON_IsNumber(rcode))
            cJSON_AddNumberToObject(d, "reason_code", rcode->valuedouble);
        if (emit_ev(r, SF_EV_ORDER_REVOKED, o->order_id, d, o->command_id, err) < 0)
            goto out;
    } else {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "record_done: kind \"%s\" is recorded elsewhere",
                     o->kind);
        goto out;
    }
    rc = 0;
out:
    free(carried);
    cJSON_free(res_txt);
    cJSON_Delete(res);
    return rc;
}

static int record_refused(os_runner *r, op *o, sf_error *err)
{
    static const char sql_op[] =
        "UPDATE scm_operations SET state = 'failed', result = $2::jsonb, last_error = $2::jsonb,"
        " finished_at = now(), lease_owner = NULL, lease_until = NULL, updated_at = now()"
        " WHERE id = $1::bigint";
    static const char sql_fail_order[] =
        "UPDATE orders SET state = 'failed', last_error = $2::jsonb, next_check_at = NULL,"
        " updated_at = now() WHERE id = $1";
    static const char sql_note_order[] =
        "UPDATE orders SET last_error = $2::jsonb, updated_at = now() WHERE id = $1";
    sf_db *db = sf_worker_dbh(os_worker(r));
    bool creates = strcmp(o->kind, "enroll") == 0 || strcmp(o->kind, "renew") == 0;
    cJSON *ej = error_json(&o->err, o->err.cls == SF_ERR_REJECTED ? "scm_rejected"
                                    : o->err.cls == SF_ERR_NOT_FOUND ? "scm_not_found"
                                                                     : "request_invalid");
    char idb[32], *ej_txt = cJSON_PrintUnformatted(ej);
    cJSON *d;
    int rc = -1;

    (void)sf_snprintf(idb, sizeof(idb), "%lld", (long long)o->id);
    if (ej_txt == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    {
        const char *p[2] = {idb, ej_txt};
        const char *q[2] = {o->order_id, ej_txt};

        if (sf_db_exec(db, sql_op, 2, p, NULL, err) < 0 ||
            sf_db_exec(db, creates ? sql_fail_order : sql_note_order, 2, q, NULL, err) < 0)
            goto out;
    }
    d = ev_base(o->order_id);
    cJSON_AddStringToObject(d, "action", o->kind);
    if (o->ssl_id > 0)
        cJSON_AddNumberToObject(d, "ssl_id", (double)o->ssl_id);
    cJSON_AddItemToObject(d, "error", ej);
    ej = NULL;
    if (!creates) {
        /* the order itself is unchanged: the command is refused */
        cJSON_DeleteItemFromObject(d, "ssl_id");
    }
    if (emit_ev(r, creates ? SF_EV_ORDER_FAILED : SF_EV_ORDER_REJECTED, o->order_id, d,
                o->command_id, err) < 0)
        goto out;
    sf_log_warn("%s of order %s refused: %s", o->kind, o->order_id, o->err.msg);
    rc = 0;
out:
    cJSON_free(ej_txt);
    cJSON_Delete(ej);
    return rc;
}

static int record_retry(os_runner *r, op *o, bool unknown, sf_error *err)
{
    static const char sql[] =
        "UPDATE scm_operations SET state = $2, call_started = $3::boolean,"
        " next_attempt_at = now() + $4::bigint * interval '1 millisecond',"
        /* outcome unknown: SCM may still act on the request; the claim's
         * grace runs from the end of this lease */
        " lease_owner = NULL, lease_until = CASE WHEN $2 = 'unknown' THEN now() END,"
        " last_error = $5::jsonb,"
        " attempt = attempt + 1, updated_at = now() WHERE id = $1::bigint";
    static const char sql_attn[] =
        "UPDATE orders SET needs_attention = true, attention_reason = $2, updated_at = now()"
        " WHERE id = $1";
    sf_db *db = sf_worker_dbh(os_worker(r));
    char idb[32], waitb[32], *ej_txt;
    int64_t wait = o->err.retry_after_ms > 0 ? o->err.retry_after_ms
                                             : backoff_ms(r, o->attempt);
    cJSON *ej = error_json(&o->err, unknown ? "scm_outcome_unknown" : "scm_unavailable");
    int rc = -1;

    (void)sf_snprintf(idb, sizeof(idb), "%lld", (long long)o->id);
    (void)sf_snprintf(waitb, sizeof(waitb), "%lld", (long long)wait);
    if ((ej_txt = cJSON_PrintUnformatted(ej)) == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    {
        /* TRANSIENT from a POST means it surely did not take effect (the
         * client only says so for connect failures, 429 and 503) */
        const char *p[5] = {idb, unknown ? "unknown" : "intent",
                            unknown || o->was_started ? "true" : "false", waitb, ej_txt};

        if (sf_db_exec(db, sql, 5, p, NULL, err) < 0)
            goto out;
    }
    if (o->attempt + 1 >= os_setting_int(r, "SCMFLOW_SUBMIT_ATTENTION_AFTER")) {
        const char *q[2] = {o->order_id, o->err.msg};

        if (sf_db_exec(db, sql_attn, 2, q, NULL, err) < 0)
            goto out;
    }
    rc = 0;
out:
    cJSON_free(ej_txt);
    cJSON_Delete(ej);
    return rc;
}

static int release_unrun(os_runner *r, op *o, sf_error *err)
{
    /* not called (stopping): give the row back; call_started stays as it
     * was before this claim */
    static const char sql[] =
        "UPDATE scm_operations SET call_started = $2::boolean, lease_owner = NULL,"
        " lease_until = NULL WHERE id = $1::bigint";
    char idb[32];
    const char *p[2] = {idb, o->was_started ? "true" : "false"};

    (void)sf_snprintf(idb, sizeof(idb), "%lld", (long long)o->id);
    (void)r;
    return sf_db_exec(sf_worker_dbh(os_worker(r)), sql, 2, p, NULL, err);
}

/* Lock the round's operations that are still ours (leased by this
 * instance, not finished) and mark the others skipped. This makes recording
 * safe to repeat: after a COMMIT whose answer was lost with the connection,
 * a second attempt finds the rows already finished and writes nothing twice;
 * and if our lease ran out and another replica took an operation, its
 * result is not overwritten by ours. */
static int lock_owned(os_runner *r, op *ops, int n, bool *owned, sf_error *err)
{
    static const char sql[] =
        "SELECT id FROM scm_operations WHERE id = ANY($1::bigint[]) AND lease_owner = $2"
        " AND state IN ('intent', 'unknown') FOR UPDATE";
    sf_buf ids;
    PGresult *res = NULL;
    int rc = -1;

    sf_buf_init(&ids, (size_t)n * 24 + 16);
    if (sf_buf_appendc(&ids, '{') < 0)
        goto oom;
    for (int i = 0; i < n; i++) {
        char b[32];

        (void)sf_snprintf(b, sizeof(b), "%s%lld", i ? "," : "", (long long)ops[i].id);
        if (sf_buf_append(&ids, b, strlen(b)) < 0)
            goto oom;
        owned[i] = false;
    }
    if (sf_buf_appendc(&ids, '}') < 0)
        goto oom;
    {
        const char *p[2] = {ids.data, sf_worker_instance_id(os_worker(r))};

        if (sf_db_exec(sf_worker_dbh(os_worker(r)), sql, 2, p, &res, err) < 0)
            goto out;
    }
    for (int k = 0; k < PQntuples(res); k++) {
        int64_t id = col_i64(res, k, 0);

        for (int i = 0; i < n; i++)
            if (ops[i].id == id)
                owned[i] = true;
    }
    rc = 0;
    goto out;
oom:
    sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
out:
    PQclear(res);
    sf_buf_release(&ids);
    return rc;
}

static bool is_enroll_done(const op *o)
{
    return o->out == OUT_DONE && strcmp(o->kind, "enroll") == 0;
}

/* The enrolls a round completed (the bulk of the work), recorded with one
 * statement for operations, orders and history and one for the events,
 * instead of two round trips per order: recording was a third of an EC
 * order's time. sel[i] selects ops[i]. */
static int record_enrolls_done(os_runner *r, op *ops, int n, const bool *sel, sf_error *err)
{
    static const char sql[] =
        "WITH x AS (SELECT * FROM jsonb_to_recordset($1::jsonb)"
        "   AS x(id bigint, order_id text, ssl_id bigint, renew_id text)),"
        " op AS (UPDATE scm_operations s SET state = 'done',"
        "   result = jsonb_build_object('ssl_id', x.ssl_id), finished_at = now(),"
        "   lease_owner = NULL, lease_until = NULL, last_error = NULL, updated_at = now()"
        "   FROM x WHERE s.id = x.id RETURNING 1),"
        " ord AS (UPDATE orders o SET state = 'submitted', ssl_id = x.ssl_id,"
        "   renew_id = nullif(x.renew_id, ''), submitted_at = now(),"
        "   next_check_at = now() + $2::bigint * interval '1 millisecond', check_step = 0,"
        "   last_error = NULL, updated_at = now() FROM x WHERE o.id = x.order_id RETURNING 1)"
        " INSERT INTO order_status_history (order_id, old_state, new_state, reason)"
        " SELECT order_id, 'submitting', 'submitted', 'enrolled' FROM x";
    cJSON *rows = cJSON_CreateArray();
    char **payloads = calloc((size_t)n + 1, sizeof(*payloads));
    const char **keys = calloc((size_t)n + 1, sizeof(*keys));
    char *rows_txt = NULL, source[160], firstb[32];
    size_t ne = 0;
    int rc = -1;

    if (rows == NULL || payloads == NULL || keys == NULL)
        goto oom;
    (void)sf_snprintf(source, sizeof(source), "scmflow/%s", sf_worker_name(os_worker(r)));
    (void)sf_snprintf(firstb, sizeof(firstb), "%lld",
                      (long long)os_setting_ms(r, "SCMFLOW_SUBMIT_FIRST_CHECK"));
    for (int i = 0; i < n; i++) {
        op *o = &ops[i];
        cJSON *e, *d;
        size_t len = 0;
        int x;

        if (!sel[i])
            continue;
        if ((e = cJSON_CreateObject()) == NULL)
            goto oom;
        cJSON_AddItemToArray(rows, e);
        if (cJSON_AddNumberToObject(e, "id", (double)o->id) == NULL ||
            cJSON_AddStringToObject(e, "order_id", o->order_id) == NULL ||
            cJSON_AddNumberToObject(e, "ssl_id", (double)o->new_ssl_id) == NULL ||
            cJSON_AddStringToObject(e, "renew_id", o->new_renew_id) == NULL ||
            (d = ev_base(o->order_id)) == NULL)
            goto oom;
        cJSON_AddNumberToObject(d, "ssl_id", (double)o->new_ssl_id);
        cJSON_AddStringToObject(d, "action", "enroll");
        x = sf_event_encode(SF_EV_ORDER_SUBMITTED, source, NULL, o->command_id, d,
                            &payloads[ne], &len, err);
        cJSON_Delete(d);
        if (x < 0)
            goto out;
        keys[ne++] = o->order_id;
    }
    if ((rows_txt = cJSON_PrintUnformatted(rows)) == NULL)
        goto oom;
    {
        const char *p[2] = {rows_txt, firstb};

        if (sf_db_exec(sf_worker_dbh(os_worker(r)), sql, 2, p, NULL, err) < 0)
            goto out;
    }
    if (sf_db_outbox_add_many(sf_worker_dbh(os_worker(r)), os_events_topic(r), ne, keys,
                              (const char *const *)payloads, err) < 0)
        goto out;
    for (int i = 0; i < n; i++) {
        if (!sel[i])
            continue;
        sf_log_ctx_order(ops[i].order_id);
        sf_log_info("order %s submitted: sslId %lld", ops[i].order_id,
                    (long long)ops[i].new_ssl_id);
    }
    sf_log_ctx_order(NULL);
    rc = 0;
    goto out;
oom:
    sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
out:
    for (size_t i = 0; payloads && i < ne; i++)
        free(payloads[i]);
    free(payloads);
    free(keys);
    cJSON_free(rows_txt);
    cJSON_Delete(rows);
    return rc;
}

static int record_all(os_runner *r, op *ops, int n, sf_error *err)
{
    sf_db *db = sf_worker_dbh(os_worker(r));
    bool *owned = calloc(2 * (size_t)n + 1, sizeof(*owned)), *bulk = owned + n;
    int nbulk = 0;

    if (owned == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    if (sf_db_begin(db, err) < 0) {
        free(owned);
        return -1;
    }
    if (lock_owned(r, ops, n, owned, err) < 0) {
        (void)sf_db_rollback(db, NULL);
        free(owned);
        return -1;
    }
    for (int i = 0; i < n; i++)
        if ((bulk[i] = owned[i] && is_enroll_done(&ops[i])))
            nbulk++;
    if (nbulk > 0 && record_enrolls_done(r, ops, n, bulk, err) < 0) {
        (void)sf_db_rollback(db, NULL);
        free(owned);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        op *o = &ops[i];
        int x = 0;

        if (bulk[i])
            continue;
        if (!owned[i]) {
            /* recorded by an earlier attempt, or taken over after our lease ran out */
            sf_log_info("operation %lld of order %s is no longer leased by this worker: "
                        "result not recorded again", (long long)o->id, o->order_id);
            continue;
        }
        sf_log_ctx_order(o->order_id);
        switch (o->out) {
        case OUT_DONE: x = record_done(r, o, err); break;
        case OUT_REFUSED: x = record_refused(r, o, err); break;
        case OUT_RETRY: x = record_retry(r, o, false, err); break;
        case OUT_UNKNOWN: x = record_retry(r, o, true, err); break;
        case OUT_NONE:
        case OUT_SKIPPED: x = release_unrun(r, o, err); break;
        }
        if (x < 0) {
            (void)sf_db_rollback(db, NULL);
            sf_log_ctx_order(NULL);
            free(owned);
            return -1;
        }
    }
    sf_log_ctx_order(NULL);
    free(owned);
    if (sf_db_commit(db, err) < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        static const char *const names[] = {"none", "done", "refused", "retry", "unknown",
                                            "skipped"};
        char labels[96];

        (void)sf_snprintf(labels, sizeof(labels), "kind=\"%s\",outcome=\"%s\"", ops[i].kind,
                          names[ops[i].out]);
        sf_metrics_counter_add("scmflow_submit_operations_total", labels, 1);
    }
    return 0;
}

/* Enroll calls in parallel: SCM latency, not CPU, bounds a sequential
 * submitter. Each thread has its own SCM client (one per thread, sf_scm.h)
 * and touches only its ops (no DB: enroll reconcile needs none). */
typedef struct par {
    os_runner *r;
    op *ops;
    int n;
    const char *account;
    atomic_int next;
} par;

typedef struct par_thread {
    par *p;
    sf_scm_client *scm;
    pthread_t tid;
} par_thread;

static bool par_eligible(const par *p, const op *o)
{
    return o->out == OUT_NONE && strcmp(o->kind, "enroll") == 0 &&
           strcmp(o->account, p->account) == 0;
}

static void *par_main(void *arg)
{
    par_thread *t = arg;
    par *p = t->p;
    int i;

    while ((i = atomic_fetch_add(&p->next, 1)) < p->n) {
        op *o = &p->ops[i];

        if (par_eligible(p, o) && !sf_worker_stop_requested(os_worker(p->r)))
            run_one(p->r, o, t->scm);
    }
    sf_log_ctx_clear();
    return NULL;
}

/* Enroll calls of a round running on their threads (par_start/par_join):
 * the task thread claims and prepares the next round meanwhile. */
typedef struct par_run {
    par p;
    par_thread th[64];
    int nt;
} par_run;

static void par_start(os_runner *r, op *ops, int n, par_run *pr)
{
    int want = (int)os_setting_int(r, "SCMFLOW_SUBMIT_PARALLEL"), elig = 0;

    memset(pr, 0, sizeof(*pr));
    pr->p.r = r;
    pr->p.ops = ops;
    pr->p.n = n;
    for (int i = 0; i < n; i++)
        if (ops[i].out == OUT_NONE && strcmp(ops[i].kind, "enroll") == 0 && pr->p.account == NULL)
            pr->p.account = ops[i].account;
    if (pr->p.account == NULL || want <= 1)
        return;
    for (int i = 0; i < n; i++)
        if (par_eligible(&pr->p, &ops[i]))
            elig++;
    if (want > elig)
        want = elig;
    if (want > 64)
        want = 64;
    if (want <= 1)
        return;
    for (int k = 0; k < want; k++) {
        par_thread *t = &pr->th[pr->nt];
        sf_error e;

        sf_error_clear(&e);
        t->p = &pr->p;
        if ((t->scm = os_scm_new_client(r, pr->p.account, &e)) == NULL)
            break;
        if (pthread_create(&t->tid, NULL, par_main, t) != 0) {
            sf_scm_client_free(t->scm);
            break;
        }
        pr->nt++;
    }
}

static void par_join(par_run *pr)
{
    for (int k = 0; k < pr->nt; k++) {
        pthread_join(pr->th[k].tid, NULL);
        sf_scm_client_free(pr->th[k].scm);
    }
    pr->nt = 0;
}

/* Leases this instance may still hold for rounds it could not record (the
 * database went away): taken back at the next round, so those operations
 * are reconciled after SCMFLOW_SUBMIT_INFLIGHT_GRACE instead of after
 * SCMFLOW_SUBMIT_LEASE plus the grace. Only the
 * task thread touches it, and no round is in flight between task calls. */
static bool own_leases_orphaned;

static void free_own_leases(os_runner *r)
{
    static const char sql[] =
        /* ended now (not NULL): a call of such a round may have timed out
         * with SCM still acting on it; the claim's grace runs from here */
        "UPDATE scm_operations SET lease_until = now() WHERE lease_owner = $1"
        " AND state IN ('intent', 'unknown') AND lease_until > now()";
    const char *p[1] = {sf_worker_instance_id(os_worker(r))};
    PGresult *res = NULL;

    if (sf_db_exec(sf_worker_dbh(os_worker(r)), sql, 1, p, &res, NULL) < 0)
        return;
    own_leases_orphaned = false;
    if (sf_db_affected(res) > 0)
        sf_log_info("took back %lld lease(s) of rounds not recorded: they are reconciled now",
                    (long long)sf_db_affected(res));
    PQclear(res);
}

/* Record a round, retrying while the database is away. Once SCM has been
 * called, the results (orders placed!) exist only in memory until they are
 * recorded: dropping them would leave the orders "submitting" until the
 * lease runs out. Repeating record_all is safe (lock_owned). Gives up on a
 * non-transient error, at half the lease (another replica may take the
 * operations after it), or soon after a stop was requested. */
static int record_round(os_runner *r, sf_worker *w, op *ops, int n, sf_error *err)
{
    int64_t start = sf_now_mono_ms();
    int64_t until = start + os_setting_ms(r, "SCMFLOW_SUBMIT_LEASE") / 2;
    int64_t stop_until = 0, next_log = 0;
    int tries = 0;

    for (;;) {
        sf_error e;
        int64_t now;

        sf_error_clear(&e);
        if (record_all(r, ops, n, &e) == 0) {
            if (tries > 0)
                sf_log_info("recorded a round of %d operation(s) after %d failed attempt(s) "
                            "in %lld ms", n, tries, (long long)(sf_now_mono_ms() - start));
            return 0;
        }
        tries++;
        now = sf_now_mono_ms();
        if (sf_worker_stop_requested(w) && stop_until == 0)
            stop_until = now + 5000;
        if (e.cls != SF_ERR_TRANSIENT || now >= until || (stop_until && now >= stop_until)) {
            sf_log_error("could not record a round of %d operation(s): %s (the leases bring "
                         "them back, reconciled)", n, e.msg);
            own_leases_orphaned = true;
            if (err)
                *err = e;
            return -1;
        }
        if (now >= next_log) {
            sf_log_warn("recording a round of %d operation(s) failed: %s; keeping the results "
                        "and retrying", n, e.msg);
            next_log = now + 10000;
        }
        if (sf_db_ensure(sf_worker_dbh(w), 1000, NULL) < 0)
            (void)poll(NULL, 0, 200);
    }
}

/*
 * Rounds overlap: while round k's enroll calls run on their threads, this
 * thread records round k-1 and then claims round k+1 and generates its keys
 * (the claim takes only unleased rows, so never round k's). Then round k's
 * remaining operations run here. For EC orders the phases took about 75
 * (claim and keys), 105 (SCM) and 55 (record, before it was batched) ms per
 * 100 operations one after another; now a round costs about the longest of
 * SCM and claim + record. Results of a round stay in memory one round
 * longer (record_round keeps them through a lost database connection).
 */
static void release_ops(op *ops, int n)
{
    for (int i = 0; i < n; i++)
        op_release(&ops[i]);
}

/* Claim a round; a failed claim whose COMMIT answer may have been lost
 * may still have taken leases: they are taken back at the next task. */
static int claim_round(os_runner *r, op *ops, int max, int *n, sf_error *err)
{
    if (claim_and_prepare(r, ops, max, n, err) == 0)
        return 0;
    if (err && err->cls == SF_ERR_TRANSIENT)
        own_leases_orphaned = true;
    *n = 0;
    return -1;
}

/* Record a round, announce its events to the relay, free it. */
static int record_and_release(os_runner *r, sf_worker *w, op *ops, int n, sf_error *err)
{
    int rc = record_round(r, w, ops, n, err);

    if (rc == 0)
        sf_worker_kick_relay(w); /* events in the outbox */
    release_ops(ops, n);
    return rc;
}

int os_task_submit(sf_worker *w, void *ud, sf_error *err)
{
    os_runner *r = ud;
    int max = (int)os_setting_int(r, "SCMFLOW_SUBMIT_BATCH");
    int64_t deadline = sf_now_mono_ms() + os_setting_ms(r, "SCMFLOW_SUBMIT_SLICE");
    static int64_t next_dead_check;
    op *cur = calloc((size_t)max, sizeof(*cur)), *next = calloc((size_t)max, sizeof(*next));
    op *prev = calloc((size_t)max, sizeof(*prev));
    int64_t t0 = sf_now_mono_ms(), t, t_claim = 0, t_scm = 0, t_record = 0;
    int total = 0, rc = 0, ncur = 0, nprev = 0;

    if (cur == NULL || next == NULL || prev == NULL) {
        free(cur);
        free(next);
        free(prev);
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    }
    if (own_leases_orphaned)
        free_own_leases(r);
    if (sf_now_mono_ms() >= next_dead_check) {
        free_dead_leases(r);
        next_dead_check = sf_now_mono_ms() + 2000;
    }
    t = sf_now_mono_ms();
    if (claim_round(r, cur, max, &ncur, err) < 0)
        rc = -1;
    t_claim += sf_now_mono_ms() - t;
    while (ncur > 0) {
        par_run pr;
        int nnext = 0;
        int64_t t_phase = sf_now_mono_ms(), t_here = 0;
        op *swap;

        par_start(r, cur, ncur, &pr);
        if (nprev > 0) {
            t = sf_now_mono_ms();
            /* on failure: no new claims; the rounds in hand are still recorded */
            if (record_and_release(r, w, prev, nprev, err) < 0)
                rc = -1;
            nprev = 0;
            t_record += sf_now_mono_ms() - t;
            t_here += sf_now_mono_ms() - t;
        }
        if (rc == 0 && ncur == max && !sf_worker_stop_requested(w) &&
            sf_now_mono_ms() < deadline) {
            t = sf_now_mono_ms();
            if (claim_round(r, next, max, &nnext, err) < 0)
                rc = -1;
            t_claim += sf_now_mono_ms() - t;
            t_here += sf_now_mono_ms() - t;
        }
        par_join(&pr);
        for (int i = 0; i < ncur; i++) {
            if (cur[i].out != OUT_NONE)
                continue; /* refused before the call, or done by a thread */
            if (sf_worker_stop_requested(w)) {
                cur[i].out = OUT_SKIPPED;
                continue;
            }
            run_one(r, &cur[i], NULL);
        }
        /* SCM time = this phase less what this thread did meanwhile */
        t_scm += sf_now_mono_ms() - t_phase - t_here;
        total += ncur;
        swap = prev;
        prev = cur;
        nprev = ncur;
        cur = next;
        ncur = nnext;
        next = swap;
    }
    if (nprev > 0) {
        t = sf_now_mono_ms();
        if (record_and_release(r, w, prev, nprev, err) < 0)
            rc = -1;
        t_record += sf_now_mono_ms() - t;
    }
    free(cur);
    free(next);
    free(prev);
    if (total > 0)
        sf_log_info("ran %d SCM operation(s) in %lld ms (claim and keys %lld ms, SCM %lld ms, "
                    "record %lld ms; the first two overlap, and record with SCM)", total,
                    (long long)(sf_now_mono_ms() - t0), (long long)t_claim, (long long)t_scm,
                    (long long)t_record);
    return rc;
}
