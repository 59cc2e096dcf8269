/*
 * sf_cmd.h - typed views of the data of every command (and of
 * scmflow.certificate.collected), parsed from the `data` object of a decoded
 * event (sf_event_data()).
 *
 * Each sf_cmd_<x>_parse() first runs sf_event_validate_data() for the type
 * (so it accepts exactly what the schema accepts and reports the same field
 * paths, "data.sans[3]"), then copies the fields into *out.
 *
 * Ownership: *out owns heap copies of every string/array; release with
 * sf_cmd_<x>_release() (accepts NULL and a zeroed struct; zeroes secrets
 * before freeing and leaves the struct zeroed). On failure *out is left
 * zeroed (callers may release it anyway). Absent optional strings are NULL,
 * absent arrays have n = 0 and a NULL pointer.
 *
 * Declare as `sf_cmd_enroll e = {0};`.
 */
#ifndef SF_CMD_H
#define SF_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "sf_error.h"
#include "sf_keystore.h"

/* Limits of the contract (also in proto/schemas/). */
#define SF_CMD_ORDER_ID_MAX 128       /* [A-Za-z0-9][A-Za-z0-9._:@-]* */
#define SF_CMD_ACCOUNT_MAX 128
#define SF_CMD_NAME_MAX 256           /* organization / profile names */
#define SF_CMD_COMMON_NAME_MAX 64     /* SCM commonName 1..64 */
#define SF_CMD_SAN_MAX 253            /* a DNS name */
#define SF_CMD_SANS_MAX 100
#define SF_CMD_COMMENTS_MAX 1024      /* characters (code points), not bytes */
#define SF_CMD_EMAIL_MAX 254
#define SF_CMD_REQUESTERS_MAX 20
#define SF_CMD_CUSTOM_FIELDS_MAX 50
#define SF_CMD_CUSTOM_NAME_MAX 128
#define SF_CMD_CUSTOM_VALUE_MAX 1024
#define SF_CMD_CSR_MAX 16384
#define SF_CMD_PASSWORD_MIN SF_KEYSTORE_PASSWORD_MIN /* 6 */
#define SF_CMD_PASSWORD_MAX SF_KEYSTORE_PASSWORD_MAX /* 128 */
#define SF_CMD_REASON_MAX 512         /* SCM reason 1..512 */
#define SF_CMD_TERM_DAYS_MIN 1
#define SF_CMD_TERM_DAYS_MAX 3650
#define SF_CMD_CHAIN_MAX (1024 * 1024 - 16384) /* chain_pem bytes; fits SF_MSG_MAX_BYTES */

typedef enum sf_key_alg { SF_KEY_ALG_NONE = 0, SF_KEY_ALG_RSA, SF_KEY_ALG_EC } sf_key_alg;

/* "RSA"/"EC"; NULL for NONE/out of range. */
const char *sf_key_alg_name(sf_key_alg a);

/* The keystore type is sf_keystore_type from common/sf_keystore.h
 * (SF_KEYSTORE_PEM = 0, SF_KEYSTORE_PKCS12, SF_KEYSTORE_JKS; names with
 * sf_keystore_type_name()), so a parsed enroll feeds sf_keystore_build()
 * directly. */

/* scmflow.catalog.sync: {account?, scope?: ["organizations","domains","profiles"]}
 * (scope absent or empty = all three) */
typedef struct sf_cmd_catalog_sync {
    char *account;            /* NULL = the default account */
    bool organizations;
    bool domains;
    bool profiles;
} sf_cmd_catalog_sync;
int sf_cmd_catalog_sync_parse(const cJSON *data, sf_cmd_catalog_sync *out, sf_error *err);
void sf_cmd_catalog_sync_release(sf_cmd_catalog_sync *c);

/* scmflow.orders.import: {account?, status?: [SCM status names],
 * from?, to?: "YYYY-MM-DD"} (from <= to when both given) */
typedef struct sf_cmd_orders_import {
    char *account;
    char **status;            /* SCM status strings ("Issued", ...) */
    size_t n_status;
    char *from;               /* "YYYY-MM-DD" or NULL */
    char *to;
} sf_cmd_orders_import;
int sf_cmd_orders_import_parse(const cJSON *data, sf_cmd_orders_import *out, sf_error *err);
void sf_cmd_orders_import_release(sf_cmd_orders_import *c);

typedef struct sf_cmd_custom_field {
    char *name;
    char *value;
} sf_cmd_custom_field;

/* scmflow.order.enroll (see proto/schemas/scmflow.order.enroll.schema.json) */
typedef struct sf_cmd_enroll {
    char *order_id;           /* NULL: the caller uses the event id */
    char *account;            /* NULL: the default account */
    char *common_name;
    char **sans;              /* DNS names, may be empty */
    size_t n_sans;
    int64_t org_id;           /* > 0 when given as a number, else 0 */
    char *org_name;           /* when given as a string, else NULL */
    int64_t profile_id;       /* > 0 when given as a number, else 0 */
    char *profile_name;
    int term_days;
    sf_key_alg key_alg;
    int key_size;             /* RSA 2048/3072/4096, EC 256/384 */
    sf_keystore_type keystore_type; /* sf_keystore.h */
    char *keystore_password;  /* SECRET: NULL for PEM (optional there);
                                 zeroed on release; never log */
    char *comments;           /* NULL when absent */
    char **external_requesters; /* e-mail addresses */
    size_t n_external_requesters;
    sf_cmd_custom_field *custom_fields;
    size_t n_custom_fields;
    char *csr;                /* PEM CSR (bring your own key) or NULL */
} sf_cmd_enroll;
int sf_cmd_enroll_parse(const cJSON *data, sf_cmd_enroll *out, sf_error *err);
void sf_cmd_enroll_release(sf_cmd_enroll *c);

/* scmflow.order.renew: {order_id, new_key? (default false), csr?} */
typedef struct sf_cmd_renew {
    char *order_id;
    bool new_key;
    char *csr;
} sf_cmd_renew;
int sf_cmd_renew_parse(const cJSON *data, sf_cmd_renew *out, sf_error *err);
void sf_cmd_renew_release(sf_cmd_renew *c);

/* scmflow.order.reissue: {order_id, reason, sans?[], new_key? (default
 * true), csr?}. has_sans distinguishes "keep SANs" (absent) from "[]". */
typedef struct sf_cmd_reissue {
    char *order_id;
    char *reason;
    bool has_sans;
    char **sans;
    size_t n_sans;
    bool new_key;
    char *csr;
} sf_cmd_reissue;
int sf_cmd_reissue_parse(const cJSON *data, sf_cmd_reissue *out, sf_error *err);
void sf_cmd_reissue_release(sf_cmd_reissue *c);

/* scmflow.order.revoke: {order_id, reason_code: 0|1|3|4|5, reason} */
typedef struct sf_cmd_revoke {
    char *order_id;
    int reason_code;
    char *reason;
} sf_cmd_revoke;
int sf_cmd_revoke_parse(const cJSON *data, sf_cmd_revoke *out, sf_error *err);
void sf_cmd_revoke_release(sf_cmd_revoke *c);

/* scmflow.order.delete: {order_id} */
typedef struct sf_cmd_delete {
    char *order_id;
} sf_cmd_delete;
int sf_cmd_delete_parse(const cJSON *data, sf_cmd_delete *out, sf_error *err);
void sf_cmd_delete_release(sf_cmd_delete *c);

/* scmflow.order.check_status: exactly one of {order_id} or {all: true} */
typedef struct sf_cmd_check_status {
    char *order_id;           /* NULL when all */
    bool all;
} sf_cmd_check_status;
int sf_cmd_check_status_parse(const cJSON *data, sf_cmd_check_status *out, sf_error *err);
void sf_cmd_check_status_release(sf_cmd_check_status *c);

/* scmflow.certificate.collected: {order_id, ssl_id (>0), format (SCM collect
 * format, e.g. "x509"), chain_pem (<= SF_CMD_CHAIN_MAX bytes), collected_at
 * (RFC 3339)} */
typedef struct sf_cmd_certificate_collected {
    char *order_id;
    int64_t ssl_id;
    char *format;
    char *chain_pem;
    size_t chain_pem_len;
    char *collected_at;
} sf_cmd_certificate_collected;
int sf_cmd_certificate_collected_parse(const cJSON *data, sf_cmd_certificate_collected *out,
                                       sf_error *err);
void sf_cmd_certificate_collected_release(sf_cmd_certificate_collected *c);

#endif
