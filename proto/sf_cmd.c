/*
 * sf_cmd.c - typed command data (see sf_cmd.h). Validation is done by
 * sf_event_validate_data() (the contract tables in sf_msg.c); this file only
 * copies already-validated fields, so types and bounds are known here.
 */
#include <stdlib.h>
#include <string.h>

#include "sf_cmd.h"
#include "sf_msg.h"
#include "sf_topics.h"
#include "sf_util.h"

const char *sf_key_alg_name(sf_key_alg a)
{
    switch (a) {
    case SF_KEY_ALG_RSA: return "RSA";
    case SF_KEY_ALG_EC: return "EC";
    case SF_KEY_ALG_NONE: break;
    }
    return NULL;
}

static int oom(sf_error *err)
{
    return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
}

/* Copy an optional string member: absent -> *out = NULL. */
static int get_str(const cJSON *o, const char *name, char **out, sf_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    *out = NULL;
    if (!cJSON_IsString(v))
        return 0;
    *out = sf_strdup(v->valuestring);
    return *out ? 0 : oom(err);
}

static int64_t get_int(const cJSON *o, const char *name, int64_t dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : dflt;
}

static bool get_bool(const cJSON *o, const char *name, bool dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static void free_strv(char **v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Copy an optional array of strings: absent or empty -> NULL, 0. */
static int get_strv(const cJSON *o, const char *name, char ***out, size_t *n, sf_error *err)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, name), *it;
    char **v;
    size_t cnt, i = 0;

    *out = NULL;
    *n = 0;
    if (!cJSON_IsArray(a) || (cnt = (size_t)cJSON_GetArraySize(a)) == 0)
        return 0;
    v = calloc(cnt, sizeof(*v));
    if (v == NULL)
        return oom(err);
    cJSON_ArrayForEach(it, a) {
        v[i] = sf_strdup(cJSON_IsString(it) ? it->valuestring : "");
        if (v[i] == NULL) {
            free_strv(v, i);
            return oom(err);
        }
        i++;
    }
    *out = v;
    *n = cnt;
    return 0;
}

static char *secret_dup(const char *s)
{
    return sf_strdup(s);
}

static void secret_free(char *s)
{
    if (s) {
        sf_memzero(s, strlen(s));
        free(s);
    }
}

/* ---- catalog.sync ---- */

int sf_cmd_catalog_sync_parse(const cJSON *data, sf_cmd_catalog_sync *out, sf_error *err)
{
    sf_cmd_catalog_sync c = {0};
    const cJSON *scope, *it;

    if (out == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "bad arguments");
    memset(out, 0, sizeof(*out));
    if (sf_event_validate_data(SF_CMD_CATALOG_SYNC, data, err) < 0)
        return -1;
    if (get_str(data, "account", &c.account, err) < 0)
        return -1;
    scope = cJSON_GetObjectItemCaseSensitive(data, "scope");
    if (!cJSON_IsArray(scope) || cJSON_GetArraySize(scope) == 0) {
        c.organizations = c.domains = c.profiles = true;
    } else {
        cJSON_ArrayForEach(it, scope) {
            if (strcmp(it->valuestring, "organizations") == 0)
                c.organizations = true;
            else if (strcmp(it->valuestring, "domains") == 0)
                c.domains = true;
            else if (strcmp(it->valuestring, "profiles") == 0)
                c.profiles = true;
        }
    }
    *out = c;
    return 0;
}

void sf_cmd_catalog_sync_release(sf_cmd_catalog_sync *c)
{
    if (c == NULL)
        return;
    free(c->account);
    memset(c, 0, sizeof(*c));
}

/* ---- orders.import ---- */

int sf_cmd_orders_import_parse(const cJSON *data, sf_cmd_orders_import *out, sf_error *err)
{
    sf_cmd_orders_import c = {0};

    if (out == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "bad arguments");
    memset(out, 0, sizeof(*out));
    if (sf_event_validate_data(SF_CMD_ORDERS_IMPORT, data, err) < 0)
        return -1;
    if (get_str(data, "account", &c.account, err) < 0 ||
        get_strv(data, "status", &c.status, &c.n_status, err) < 0 ||
        get_str(data, "from", &c.from, err) < 0 || get_str(data, "to", &c.to, err) < 0) {
        sf_cmd_orders_import_release(&c);
        return -1;
    }
    *out = c;
    return 0;
}

void sf_cmd_orders_import_release(sf_cmd_orders_import *c)
{
    if (c == NULL)
        return;
    free(c->account);
    free_strv(c->status, c->n_status);
    free(c->from);
    free(c->to);
    memset(c, 0, sizeof(*c));
}

/* ---- order.enroll ---- */

/* organization/profile: integer id or name */
static int get_id_or_name(const cJSON *o, const char *name, int64_t *id, char **str,
                          sf_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    *id = 0;
    *str = NULL;
    if (cJSON_IsNumber(v)) {
        *id = (int64_t)v->valuedouble;
        return 0;
    }
    return get_str(o, name, str, err);
}

static void free_custom(sf_cmd_custom_field *cf, size_t n)
{
    if (cf == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        free(cf[i].name);
        free(cf[i].value);
    }
    free(cf);
}

int sf_cmd_enroll_parse(const cJSON *data, sf_cmd_enroll *out, sf_error *err)
{
    sf_cmd_enroll c = {0};
    const cJSON *v, *it;

    if (out == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "bad arguments");
    memset(out, 0, sizeof(*out));
    if (sf_event_validate_data(SF_CMD_ORDER_ENROLL, data, err) < 0)
        return -1;
    if (get_str(data, "order_id", &c.order_id, err) < 0 ||
        get_str(data, "account", &c.account, err) < 0 ||
        get_str(data, "common_name", &c.common_name, err) < 0 ||
        get_strv(data, "sans", &c.sans, &c.n_sans, err) < 0 ||
        get_id_or_name(data, "organization", &c.org_id, &c.org_name, err) < 0 ||
        get_id_or_name(data, "profile", &c.profile_id, &c.profile_name, err) < 0 ||
        get_str(data, "comments", &c.comments, err) < 0 ||
        get_strv(data, "external_requesters", &c.external_requesters,
                 &c.n_external_requesters, err) < 0 ||
        get_str(data, "csr", &c.csr, err) < 0)
        goto fail;
    c.term_days = (int)get_int(data, "term_days", 0);
    c.key_size = (int)get_int(data, "key_size", 0);
    v = cJSON_GetObjectItemCaseSensitive(data, "key_algorithm");
    c.key_alg = strcmp(v->valuestring, "RSA") == 0 ? SF_KEY_ALG_RSA : SF_KEY_ALG_EC;
    v = cJSON_GetObjectItemCaseSensitive(data, "keystore_type");
    c.keystore_type = strcmp(v->valuestring, "PKCS12") == 0 ? SF_KEYSTORE_PKCS12
                      : strcmp(v->valuestring, "JKS") == 0  ? SF_KEYSTORE_JKS
                                                            : SF_KEYSTORE_PEM;
    v = cJSON_GetObjectItemCaseSensitive(data, "keystore_password");
    if (cJSON_IsString(v)) {
        c.keystore_password = secret_dup(v->valuestring);
        if (c.keystore_password == NULL) {
            oom(err);
            goto fail;
        }
    }
    v = cJSON_GetObjectItemCaseSensitive(data, "custom_fields");
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) > 0) {
        size_t n = (size_t)cJSON_GetArraySize(v);
        c.custom_fields = calloc(n, sizeof(*c.custom_fields));
        if (c.custom_fields == NULL) {
            oom(err);
            goto fail;
        }
        c.n_custom_fields = n;
        n = 0;
        cJSON_ArrayForEach(it, v) {
            if (get_str(it, "name", &c.custom_fields[n].name, err) < 0 ||
                get_str(it, "value", &c.custom_fields[n].value, err) < 0)
                goto fail;
            n++;
        }
    }
    *out = c;
    return 0;
fail:
    sf_cmd_enroll_release(&c);
    return -1;
}

void sf_cmd_enroll_release(sf_cmd_enroll *c)
{
    if (c == NULL)
        return;
    free(c->order_id);
    free(c->account);
    free(c->common_name);
    free_strv(c->sans, c->n_sans);
    free(c->org_name);
    free(c->profile_name);
    secret_free(c->keystore_password);
    free(c->comments);
    free_strv(c->external_requesters, c->n_external_requesters);
    free_custom(c->custom_fields, c->n_custom_fields);
    free(c->csr);
    sf_memzero(c, sizeof(*c));
}

/* ---- order.renew ---- */

int sf_cmd_renew_parse(const cJSON *data, sf_cmd_renew *out, sf_error *err)
{
    sf_cmd_renew c = {0};

    if (out == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "bad arguments");
    memset(out, 0, sizeof(*out));
    if (sf_event_validate_data(SF_CMD_ORDER_RENEW, data, err) < 0)
        return -1;
    if (get_str(data, "order_id", &c.order_id, err) < 0 ||
        get_str(data, "csr", &c.csr, err) < 0) {
        sf_cmd_renew_release(&c);
        return -1;
    }
    c.new_key = get_bool(data, "new_key", false);
    *out = c;
    return 0;
}

void sf_cmd_renew_release(sf_cmd_renew *c)
{
    if (c == NULL)
        return;
    free(c->order_id);
    free(c->csr);
    memset(c, 0, sizeof(*c));
}

/* ---- order.reissue ---- */

int sf_cmd_reissue_parse(const cJSON *data, sf_cmd_reissue *out, sf_error *err)
{
    sf_cmd_reissue c = {0};

    if (out == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "bad arguments");
    memset(out, 0, sizeof(*out));
    if (sf_event_validate_data(SF_CMD_ORDER_REISSUE, data, err) < 0)
        return -1;
    if (get_str(data, "order_id", &c.order_id, err) < 0 ||
        get_str(data, "reason", &c.reason, err) < 0 ||
        get_strv(data, "sans", &c.sans, &c.n_sans, err) < 0 ||
        get_str(data, "csr", &c.csr, err) < 0) {
        sf_cmd_reissue_release(&c);
        return -1;
    }
    c.has_sans = cJSON_GetObjectItemCaseSensitive(data, "sans") != NULL;
    c.new_key = get_bool(data, "new_key", true);
    *out = c;
    return 0;
}

void sf_cmd_reissue_release(sf_cmd_reissue *c)
{
    if (c == NULL)
        return;
    free(c->order_id);
    free(c->reason);
    free_strv(c->sans, c->n_sans);
    free(c->csr);
    memset(c, 0, sizeof(*c));
}

/* ---- order.revoke ---- */

int sf_cmd_revoke_parse(const cJSON *data, sf_cmd_revoke *out, sf_error *err)
{
    sf_cmd_revoke c = {0};

    if (out == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "bad arguments");
    memset(out, 0, sizeof(*out));
    if (sf_event_validate_data(SF_CMD_ORDER_REVOKE, data, err) < 0)
        return -1;
    if (get_str(data, "order_id", &c.order_id, err) < 0 ||
        get_str(data, "reason", &c.reason, err) < 0) {
        sf_cmd_revoke_release(&c);
        return -1;
    }
    c.reason_code = (int)get_int(data, "reason_code", 0);
    *out = c;
    return 0;
}

void sf_cmd_revoke_release(sf_cmd_revoke *c)
{
    if (c == NULL)
        return;
    free(c->order_id);
    free(c->reason);
    memset(c, 0, sizeof(*c));
}

/* ---- order.delete ---- */

int sf_cmd_delete_parse(const cJSON *data, sf_cmd_delete *out, sf_error *err)
{
    sf_cmd_delete c = {0};

    if (out == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "bad arguments");
    memset(out, 0, sizeof(*out));
    if (sf_event_validate_data(SF_CMD_ORDER_DELETE, data, err) < 0)
        return -1;
    if (get_str(data, "order_id", &c.order_id, err) < 0)
        return -1;
    *out = c;
    return 0;
}

void sf_cmd_delete_release(sf_cmd_delete *c)
{
    if (c == NULL)
        return;
    free(c->order_id);
    memset(c, 0, sizeof(*c));
}

/* ---- order.check_status ---- */

int sf_cmd_check_status_parse(const cJSON *data, sf_cmd_check_status *out, sf_error *err)
{
    sf_cmd_check_status c = {0};

    if (out == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "bad arguments");
    memset(out, 0, sizeof(*out));
    if (sf_event_validate_data(SF_CMD_ORDER_CHECK_STATUS, data, err) < 0)
        return -1;
    if (get_str(data, "order_id", &c.order_id, err) < 0)
        return -1;
    c.all = get_bool(data, "all", false);
    *out = c;
    return 0;
}

void sf_cmd_check_status_release(sf_cmd_check_status *c)
{
    if (c == NULL)
        return;
    free(c->order_id);
    memset(c, 0, sizeof(*c));
}

/* ---- certificate.collected ---- */

int sf_cmd_certificate_collected_parse(const cJSON *data, sf_cmd_certificate_collected *out,
                                       sf_error *err)
{
    sf_cmd_certificate_collected c = {0};

    if (out == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "bad arguments");
    memset(out, 0, sizeof(*out));
    if (sf_event_validate_data(SF_MSG_CERT_COLLECTED, data, err) < 0)
        return -1;
    if (get_str(data, "order_id", &c.order_id, err) < 0 ||
        get_str(data, "format", &c.format, err) < 0 ||
        get_str(data, "chain_pem", &c.chain_pem, err) < 0 ||
        get_str(data, "collected_at", &c.collected_at, err) < 0) {
        sf_cmd_certificate_collected_release(&c);
        return -1;
    }
    c.ssl_id = get_int(data, "ssl_id", 0);
    c.chain_pem_len = strlen(c.chain_pem);
    *out = c;
    return 0;
}

void sf_cmd_certificate_collected_release(sf_cmd_certificate_collected *c)
{
    if (c == NULL)
        return;
    free(c->order_id);
    free(c->format);
    free(c->chain_pem);
    free(c->collected_at);
    memset(c, 0, sizeof(*c));
}
