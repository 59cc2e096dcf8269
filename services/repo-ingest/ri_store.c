/*
 * ri_store.c - one collected chain into the repository (see ri.h).
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "ri.h"
#include "sf_db.h"
#include "sf_keygen.h"
#include "sf_keystore.h"
#include "sf_log.h"
#include "sf_metrics.h"
#include "sf_msg.h"
#include "sf_seal.h"
#include "sf_worker.h"
#include "sf_x509.h"
#include "sf_util.h"

/* The order as the repository needs it. */
typedef struct order_row {
    char *id, *state, *cn, *ks_type, *renewed_from;
    char *key_sealed, *kspw_sealed;  /* sealed tokens (not secret themselves) */
    char **sans;
    size_t nsans;
} order_row;

static void order_release(order_row *o)
{
    free(o->id);
    free(o->state);
    free(o->cn);
    free(o->ks_type);
    free(o->renewed_from);
    free(o->key_sealed);
    free(o->kspw_sealed);
    for (size_t i = 0; i < o->nsans; i++)
        free(o->sans[i]);
    free(o->sans);
    memset(o, 0, sizeof(*o));
}

static char *dup_opt(const PGresult *res, int col)
{
    return PQgetisnull(res, 0, col) ? NULL : sf_strdup(PQgetvalue(res, 0, col));
}

/* 1 found, 0 not found, -1 error. */
static int load_order(sf_db *db, const char *id, order_row *o, sf_error *err)
{
    static const char sql[] =
        "SELECT id, state, common_name, array_to_json(sans)::text, keystore_type,"
        " renewed_from, private_key_sealed, keystore_password_sealed"
        " FROM orders WHERE id = $1 FOR UPDATE";
    const char *p[1] = {id};
    PGresult *res = NULL;
    cJSON *arr = NULL, *it;
    int rc = -1;

    if (sf_db_exec(db, sql, 1, p, &res, err) < 0)
        return -1;
    if (PQntuples(res) == 0) {
        rc = 0;
        goto out;
    }
    o->id = dup_opt(res, 0);
    o->state = dup_opt(res, 1);
    o->cn = dup_opt(res, 2);
    o->ks_type = dup_opt(res, 4);
    o->renewed_from = dup_opt(res, 5);
    o->key_sealed = dup_opt(res, 6);
    o->kspw_sealed = dup_opt(res, 7);
    arr = cJSON_Parse(PQgetvalue(res, 0, 3));
    if (o->id == NULL || o->state == NULL || o->cn == NULL || !cJSON_IsArray(arr)) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "could not read order \"%s\"", id);
        goto out;
    }
    if (cJSON_GetArraySize(arr) > 0 &&
        (o->sans = calloc((size_t)cJSON_GetArraySize(arr), sizeof(char *))) == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    cJSON_ArrayForEach(it, arr) {
        if (!cJSON_IsString(it) || (o->sans[o->nsans] = sf_strdup(it->valuestring)) == NULL) {
            sf_error_set(err, SF_ERR_INTERNAL, 0, "could not read the SANs of order \"%s\"", id);
            goto out;
        }
        o->nsans++;
    }
    rc = 1;
out:
    cJSON_Delete(arr);
    PQclear(res);
    return rc;
}

/* "AB:CD:.." -> "abcd.." */
static void fp_hex(const char *colon, char *out, size_t size)
{
    size_t k = 0;

    for (size_t i = 0; colon[i] && k + 1 < size; i++)
        if (colon[i] != ':')
            out[k++] = (char)tolower((unsigned char)colon[i]);
    out[k] = '\0';
}

/* ---- events ---- */

static int emit(ri_out *o, const char *type, const char *key, cJSON *d, sf_error *err)
{
    char source[160], *payload = NULL;
    size_t len = 0;
    int rc;

    if (d == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    if (o->ctx) {
        rc = sf_worker_emit(o->ctx, type, key, d, o->correlationid, err);
        cJSON_Delete(d);
        return rc;
    }
    (void)sf_snprintf(source, sizeof(source), "scmflow/%s", sf_worker_name(ri_worker(o->r)));
    rc = sf_event_encode(type, source, NULL, o->correlationid, d, &payload, &len, err);
    cJSON_Delete(d);
    if (rc < 0)
        return -1;
    rc = sf_db_outbox_add(o->db, ri_events_topic(o->r), key, payload, len, err);
    free(payload);
    return rc;
}

static cJSON *ev_base(const char *order_id, int64_t ssl_id)
{
    cJSON *d = cJSON_CreateObject();

    if (d) {
        cJSON_AddStringToObject(d, "order_id", order_id);
        if (ssl_id > 0)
            cJSON_AddNumberToObject(d, "ssl_id", (double)ssl_id);
    }
    return d;
}

static void metric(const char *outcome)
{
    char lbl[64];

    (void)sf_snprintf(lbl, sizeof(lbl), "outcome=\"%s\"", outcome);
    sf_metrics_counter_add("scmflow_ingest_total", lbl, 1);
}

/* The chain is bad or does not belong to the order: record why, flag the
 * order, answer certificate.rejected, and put a copy of the message on the
 * dead-letter topic (through the outbox, so it commits with the rest). */
static int reject(ri_out *o, int64_t chain_id, const char *order_id, int64_t ssl_id,
                  const char *code, const sf_error *why, sf_error *err)
{
    static const char sql_chain[] =
        "UPDATE collected_chains SET state = 'rejected', reason = $2, updated_at = now()"
        " WHERE id = $1::bigint";
    static const char sql_order[] =
        "UPDATE orders SET needs_attention = true, attention_reason = $2, updated_at = now()"
        " WHERE id = $1";
    char idb[32], reason[600];
    cJSON *d, *e;

    (void)sf_snprintf(idb, sizeof(idb), "%lld", (long long)chain_id);
    (void)sf_snprintf(reason, sizeof(reason), "collected certificate rejected (%s): %s", code,
                      why->msg[0] ? why->msg : "invalid");
    {
        const char *p[2] = {idb, reason};

        if (sf_db_exec(o->db, sql_chain, 2, p, NULL, err) < 0)
            return -1;
    }
    {
        const char *p[2] = {order_id, reason};

        if (sf_db_exec(o->db, sql_order, 2, p, NULL, err) < 0)
            return -1;
    }
    d = ev_base(order_id, ssl_id);
    if (d && (e = cJSON_AddObjectToObject(d, "error")) != NULL) {
        cJSON_AddStringToObject(e, "code", code);
        cJSON_AddStringToObject(e, "message", why->msg[0] ? why->msg : "invalid certificate");
        if (why->field[0])
            cJSON_AddStringToObject(e, "field", why->field);
    }
    if (emit(o, SF_EV_CERT_REJECTED, order_id, d, err) < 0)
        return -1;
    if (o->original) {
        char *txt = cJSON_PrintUnformatted(o->original);
        int rc;

        if (txt == NULL)
            return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        rc = sf_db_outbox_add(o->db, ri_deadletter_topic(o->r), order_id, txt, strlen(txt), err);
        free(txt);
        if (rc < 0)
            return -1;
    }
    sf_log_warn("order %s: %s", order_id, reason);
    metric("rejected");
    return 0;
}

/* Names: the leaf must carry the order's CN and SANs. SCM adds the CN to
 * the SANs, so the expected SAN set is the order's SANs plus the CN; an
 * order whose SANs already list the CN compares the same. */
static int check_names(const order_row *ord, const sf_cert_info *info, sf_error *err)
{
    const char **want = calloc(ord->nsans + 1, sizeof(char *));
    size_t n = 0;
    int rc;

    if (want == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    for (size_t i = 0; i < ord->nsans; i++)
        want[n++] = ord->sans[i];
    want[n++] = ord->cn;
    rc = sf_cert_names_match(info, ord->cn, want, n, err);
    if (rc < 0 && info->nsans == ord->nsans)
        rc = sf_cert_names_match(info, ord->cn, (const char *const *)ord->sans, ord->nsans, err);
    free(want);
    return rc;
}

/* Build and seal the keystore of the order's type. *sealed NULL when the
 * order has no key (imported, or bring-your-own CSR). 1 = done, 0 = reject
 * with why, -1 = error. */
static int build_keystore(ri_out *o, const order_row *ord, const sf_chain *chain,
                          const char *fp, char **sealed, const char **type_name,
                          sf_error *why, sf_error *err)
{
    sf_sealer *seal = ri_sealer(o->r);
    unsigned char *keypem = NULL, *pw = NULL, *ks = NULL;
    size_t keylen = 0, pwlen = 0, kslen = 0;
    EVP_PKEY *key = NULL;
    sf_keystore_type t = SF_KEYSTORE_PEM;
    char aad[300];
    int rc = -1;

    *sealed = NULL;
    *type_name = NULL;
    if (ord->key_sealed == NULL)
        return 1;
    (void)sf_snprintf(aad, sizeof(aad), RI_AAD_KEY_FMT, ord->id);
    if (sf_unseal(seal, ord->key_sealed, aad, &keypem, &keylen, err) < 0)
        goto out;
    if (sf_key_from_pem((const char *)keypem, keylen, &key, err) < 0)
        goto out;
    if (sf_cert_matches_key(sf_chain_cert(chain, 0), key, why) < 0) {
        rc = 0;
        goto out;
    }
    if (ord->ks_type && sf_keystore_type_parse(ord->ks_type, &t) < 0)
        t = SF_KEYSTORE_PEM;
    if (ord->kspw_sealed) {
        (void)sf_snprintf(aad, sizeof(aad), RI_AAD_KSPW_FMT, ord->id);
        if (sf_unseal(seal, ord->kspw_sealed, aad, &pw, &pwlen, err) < 0)
            goto out;
        (void)sf_log_register_secret((const char *)pw);
    } else if (t != SF_KEYSTORE_PEM) {
        sf_error_field(why, "keystore_password", "the order has no keystore password for %s",
                       sf_keystore_type_name(t));
        rc = 0;
        goto out;
    }
    if (sf_keystore_build(t, key, chain, (const char *)pw, NULL, &ks, &kslen, err) < 0)
        goto out;
    (void)sf_snprintf(aad, sizeof(aad), RI_AAD_KEYSTORE_FMT, fp);
    if (sf_seal(seal, ks, kslen, aad, sealed, err) < 0)
        goto out;
    *type_name = sf_keystore_type_name(t);
    rc = 1;
out:
    sf_secret_free(keypem, keylen);
    sf_secret_free(pw, pwlen);
    sf_secret_free(ks, kslen);
    EVP_PKEY_free(key);
    return rc;
}

static int set_chain_state(sf_db *db, int64_t chain_id, const char *state, const char *reason,
                           sf_error *err)
{
    static const char sql[] =
        "UPDATE collected_chains SET state = $2, reason = $3, attempts = attempts + 1,"
        " updated_at = now() WHERE id = $1::bigint";
    char idb[32];
    const char *p[3] = {idb, state, reason};

    (void)sf_snprintf(idb, sizeof(idb), "%lld", (long long)chain_id);
    return sf_db_exec(db, sql, 3, p, NULL, err);
}

static int order_state(sf_db *db, const order_row *ord, const char *state, const char *reason,
                       sf_error *err)
{
    static const char sql[] =
        "UPDATE orders SET state = $2, updated_at = now(), next_check_at = NULL,"
        " stored_at = CASE WHEN $2 = 'stored' THEN now() ELSE stored_at END,"
        " issued_at = coalesce(issued_at, now()) WHERE id = $1";
    static const char sql_h[] =
        "INSERT INTO order_status_history (order_id, old_state, new_state, reason)"
        " VALUES ($1, $2, $3, $4)";
    const char *p[2] = {ord->id, state};
    const char *h[4] = {ord->id, ord->state, state, reason};

    if (strcmp(ord->state, state) == 0)
        return 0;
    if (sf_db_exec(db, sql, 2, p, NULL, err) < 0)
        return -1;
    return sf_db_exec(db, sql_h, 4, h, NULL, err);
}

static char *sans_json(const sf_cert_info *info)
{
    cJSON *a = cJSON_CreateArray();
    char *s;

    if (a == NULL)
        return NULL;
    for (size_t i = 0; i < info->nsans; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(info->sans[i]));
    s = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    return s;
}

int ri_store_chain(ri_out *o, int64_t chain_id, const char *order_id, int64_t ssl_id,
                   const char *chain_txt, size_t chain_len, ri_result *result, sf_error *err)
{
    static const char sql_dup[] =
        "SELECT id FROM certificates WHERE sha256_fingerprint = $1";
    static const char sql_license[] =
        "SELECT license_max, (SELECT count(*) FROM certificates WHERE status = 'active'"
        "  AND order_id <> $1) FROM repo_settings WHERE id = 1 FOR UPDATE";
    static const char sql_supersede[] =
        "UPDATE certificates SET status = 'superseded', updated_at = now()"
        " WHERE order_id = $1 AND status = 'active'";
    static const char sql_insert[] =
        "INSERT INTO certificates (order_id, ssl_id, serial, issuer, subject, common_name, sans,"
        " not_before, not_after, sha256_fingerprint, sha1_fingerprint, key_type, key_size,"
        " leaf_pem, chain_pem, keystore_type, keystore_sealed, renews_certificate_id)"
        " VALUES ($1, $2::bigint, $3, $4, $5, $6, ARRAY(SELECT jsonb_array_elements_text($7::jsonb)),"
        " to_timestamp($8::bigint), to_timestamp($9::bigint), $10, $11, nullif($12, ''),"
        " nullif($13::int, 0), $14, $15, $16, $17,"
        " (SELECT id FROM certificates WHERE order_id = $18 ORDER BY id DESC LIMIT 1))"
        " ON CONFLICT (sha256_fingerprint) DO NOTHING RETURNING id";
    order_row ord = {0};
    sf_chain *chain = NULL;
    sf_cert_info *info = NULL;
    sf_error why = {0};
    char fp[80], fp1[48], sslb[32], nb[32], na[32], ksz[16], not_after[40], certid[32];
    char *chain_pem = NULL, *leaf_pem = NULL, *sans = NULL, *sealed = NULL;
    const char *ks_type = NULL;
    PGresult *res = NULL;
    int rc = -1, k;

    if ((k = load_order(o->db, order_id, &ord, err)) < 0)
        goto out;
    if (k == 0) {
        sf_error_field(err, "data.order_id", "unknown order \"%.128s\"", order_id);
        err->cls = SF_ERR_REJECTED;
        goto out;
    }
    /* parse, order, facts */
    if (sf_chain_parse(chain_txt, chain_len, &chain, &why) < 0 ||
        sf_chain_order(chain, &why) < 0) {
        if (reject(o, chain_id, order_id, ssl_id, "chain_invalid", &why, err) < 0)
            goto out;
        *result = RI_REJECTED;
        rc = 0;
        goto out;
    }
    if (sf_cert_info_get(sf_chain_cert(chain, 0), &info, &why) < 0) {
        if (reject(o, chain_id, order_id, ssl_id, "certificate_invalid", &why, err) < 0)
            goto out;
        *result = RI_REJECTED;
        rc = 0;
        goto out;
    }
    if (check_names(&ord, info, &why) < 0) {
        if (reject(o, chain_id, order_id, ssl_id, "name_mismatch", &why, err) < 0)
            goto out;
        *result = RI_REJECTED;
        rc = 0;
        goto out;
    }
    fp_hex(info->sha256_fp, fp, sizeof(fp));
    fp_hex(info->sha1_fp, fp1, sizeof(fp1));

    /* the same certificate again (replayed message, re-collect): one row */
    {
        const char *p[1] = {fp};

        if (sf_db_exec(o->db, sql_dup, 1, p, &res, err) < 0)
            goto out;
    }
    if (PQntuples(res) > 0) {
        PQclear(res);
        res = NULL;
        if (set_chain_state(o->db, chain_id, "stored", "already in the repository", err) < 0)
            goto out;
        metric("duplicate");
        *result = RI_ALREADY_STORED;
        rc = 0;
        goto out;
    }
    PQclear(res);
    res = NULL;

    /* license count (the row lock serializes concurrent ingests) */
    {
        const char *p[1] = {order_id};
        int64_t max, count;

        if (sf_db_exec(o->db, sql_license, 1, p, &res, err) < 0 ||
            sf_db_get_i64(res, 0, 0, &max, err) < 0 || sf_db_get_i64(res, 0, 1, &count, err) < 0)
            goto out;
        PQclear(res);
        res = NULL;
        if (count >= max) {
            char reason[200];
            cJSON *d;

            (void)sf_snprintf(reason, sizeof(reason),
                              "license count reached: %lld of %lld certificates in the repository",
                              (long long)count, (long long)max);
            if (set_chain_state(o->db, chain_id, "not_stored", reason, err) < 0 ||
                order_state(o->db, &ord, "not_stored", reason, err) < 0)
                goto out;
            if (strcmp(ord.state, "not_stored") != 0) {
                d = ev_base(order_id, ssl_id);
                if (d) {
                    cJSON_AddStringToObject(d, "reason", reason);
                    cJSON_AddNumberToObject(d, "license_count", (double)count);
                    cJSON_AddNumberToObject(d, "license_limit", (double)max);
                }
                if (emit(o, SF_EV_CERT_NOT_STORED, order_id, d, err) < 0)
                    goto out;
            }
            metric("not_stored");
            *result = RI_NOT_STORED;
            rc = 0;
            goto out;
        }
    }

    /* keystore (needs the order's key; checks the key matches the leaf) */
    if ((k = build_keystore(o, &ord, chain, fp, &sealed, &ks_type, &why, err)) < 0)
        goto out;
    if (k == 0) {
        if (reject(o, chain_id, order_id, ssl_id, "key_mismatch", &why, err) < 0)
            goto out;
        *result = RI_REJECTED;
        rc = 0;
        goto out;
    }

    /* rows */
    if (sf_chain_to_pem(chain, true, &chain_pem, NULL, err) < 0 ||
        sf_cert_to_pem(sf_chain_cert(chain, 0), &leaf_pem, err) < 0)
        goto out;
    if ((sans = sans_json(info)) == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    {
        const char *p[1] = {order_id};

        /* a reissue: the new certificate supersedes the order's old one */
        if (sf_db_exec(o->db, sql_supersede, 1, p, NULL, err) < 0)
            goto out;
    }
    (void)sf_snprintf(sslb, sizeof(sslb), "%lld", (long long)ssl_id);
    (void)sf_snprintf(nb, sizeof(nb), "%lld", (long long)info->not_before);
    (void)sf_snprintf(na, sizeof(na), "%lld", (long long)info->not_after);
    (void)sf_snprintf(ksz, sizeof(ksz), "%d", info->key_size);
    {
        const char *p[18] = {order_id,      ssl_id > 0 ? sslb : NULL,
                             info->serial_hex, info->issuer,
                             info->subject, info->cn,
                             sans,          nb,
                             na,            fp,
                             fp1,           info->key_alg,
                             ksz,           leaf_pem,
                             chain_pem,     ks_type,
                             sealed,        ord.renewed_from};

        if (sf_db_exec(o->db, sql_insert, 18, p, &res, err) < 0)
            goto out;
    }
    if (PQntuples(res) == 0) {
        /* raced with an identical certificate: it is stored */
        if (set_chain_state(o->db, chain_id, "stored", "already in the repository", err) < 0)
            goto out;
        *result = RI_ALREADY_STORED;
        rc = 0;
        goto out;
    }
    (void)sf_snprintf(certid, sizeof(certid), "%s", PQgetvalue(res, 0, 0));
    if (set_chain_state(o->db, chain_id, "stored", NULL, err) < 0 ||
        order_state(o->db, &ord, "stored", "certificate stored", err) < 0)
        goto out;
    {
        static const char sql_clear[] =
            "UPDATE orders SET needs_attention = false, attention_reason = NULL"
            " WHERE id = $1 AND attention_reason LIKE 'collected certificate rejected%'";
        const char *p[1] = {order_id};

        if (sf_db_exec(o->db, sql_clear, 1, p, NULL, err) < 0)
            goto out;
    }
    sf_format_rfc3339(info->not_after * 1000, not_after, sizeof(not_after));
    {
        cJSON *d = ev_base(order_id, ssl_id);

        if (d) {
            cJSON_AddStringToObject(d, "certificate_id", certid);
            cJSON_AddStringToObject(d, "serial_number", info->serial_hex);
            cJSON_AddStringToObject(d, "fingerprint_sha256", fp);
            cJSON_AddStringToObject(d, "not_after", not_after);
            if (ks_type)
                cJSON_AddStringToObject(d, "keystore_type", ks_type);
        }
        if (emit(o, SF_EV_CERT_STORED, order_id, d, err) < 0)
            goto out;
        if ((d = ev_base(order_id, ssl_id)) != NULL) {
            cJSON_AddStringToObject(d, "serial_number", info->serial_hex);
            cJSON_AddStringToObject(d, "not_after", not_after);
        }
        if (ssl_id > 0 && emit(o, SF_EV_ORDER_ISSUED, order_id, d, err) < 0)
            goto out;
        if (ssl_id <= 0)
            cJSON_Delete(d);
    }
    metric("stored");
    sf_log_info("order %s: certificate %s stored (serial %s)", order_id, certid, info->serial_hex);
    *result = RI_STORED;
    rc = 0;
out:
    PQclear(res);
    free(chain_pem);
    free(leaf_pem);
    free(sans);
    free(sealed);
    sf_cert_info_free(info);
    sf_chain_free(chain);
    order_release(&ord);
    return rc;
}
