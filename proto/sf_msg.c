/*
 * sf_msg.c - CloudEvents envelope codec and table-driven validation of the
 * data of every message type (see sf_msg.h).
 *
 * Each type's contract is one table of fields (name, JSON type, required,
 * length/range bounds, enum, pattern, format). The same table validates
 * messages and generates the JSON Schema (sf_msg_schema), and a unit test
 * compares that with the files in proto/schemas/, so code and schema files
 * cannot drift. Patterns are written in the subset common to POSIX ERE and
 * ECMA-262 (no \d, no escapes inside brackets) so both engines agree.
 */
#include <math.h>
#include <pthread.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "sf_cmd.h"
#include "sf_msg.h"
#include "sf_util.h"

#define SCHEMA_BASE "https://scmflow.example/schemas/"
#define MAX_SAFE_INT 9007199254740991LL /* 2^53 - 1: exact in a JSON double */
/* Upper bound of ids and counts: 15 digits print exactly in the schemas. */
#define MAX_ID 999999999999999LL

/* ------------------------------------------------------------------ */
/* contract tables                                                     */

typedef enum fkind {
    K_STRING = 1,
    K_INT,
    K_BOOL,
    K_INT_OR_STRING,
    K_STRING_ARRAY,
    K_OBJECT,        /* sub == NULL: any object */
    K_OBJECT_ARRAY,
    K_ANY,           /* any JSON value (envelope data of unknown types) */
} fkind;

typedef enum ffmt { F_NONE = 0, F_DATE_TIME, F_DATE } ffmt;

struct tdef;

typedef struct fdef {
    const char *name;
    fkind kind;
    bool required;
    /* strings (and items of string arrays, string branch of int-or-string);
     * lengths count code points like JSON Schema. max_len 0 = unbounded
     * (never used for strings: every string has a limit). */
    int min_len, max_len;
    const char *const *enum_s;  /* NULL-terminated */
    const char *pattern;        /* ERE and ECMA-262 */
    const char *pattern_what;   /* "a DNS name": for messages */
    ffmt format;
    /* integers (and the integer branch of int-or-string) */
    bool has_range;
    int64_t min, max;
    const int64_t *enum_i;      /* terminated by INT64_MIN */
    /* booleans */
    bool only_true;
    bool has_default;
    bool default_bool;
    /* arrays */
    int min_items, max_items;
    bool unique;
    /* objects */
    const struct tdef *sub;
    const char *desc;
} fdef;

/* if <if_field> is one of <if_values> then <then_required> is required
 * and/or <then_field> must be one of <then_ints>. */
typedef struct cdef {
    const char *if_field;
    const char *const *if_values;
    const char *then_required;
    const char *then_field;
    const int64_t *then_ints;
} cdef;

typedef int (*extra_fn)(const cJSON *obj, const char *prefix, sf_error *err);

typedef struct tdef {
    const char *type;
    const char *desc;
    const fdef *fields;
    size_t nfields;
    const cdef *conds;
    size_t nconds;
    const char *const *one_of;  /* exactly one of these fields present */
    extra_fn extra;             /* checks a schema cannot state (documented) */
} tdef;

#define END_I INT64_MIN

/* patterns */
#define P_ID "^[A-Za-z0-9][A-Za-z0-9._:@-]*$"
#define P_LABEL "[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
#define P_DNS "^(\\*\\.)?" P_LABEL "(\\." P_LABEL ")*$"
#define P_EMAIL "^[^@ ]+@[^@ ]+\\.[^@ ]+$"
#define P_CSR "^-----BEGIN (NEW )?CERTIFICATE REQUEST-----"
#define P_PEM "-----BEGIN [A-Z0-9 ]+-----"
#define P_DATE "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
#define P_ERRCODE "^[a-z0-9][a-z0-9_.]*$"

static const char *const scope_enum[] = {"organizations", "domains", "profiles", NULL};
static const char *const status_enum[] = {"Invalid", "Requested", "Approved", "Declined",
                                          "Applied", "Issued", "Revoked", "Expired",
                                          "Replaced", "Rejected", "SAApproved", "Init", NULL};
static const char *const keyalg_enum[] = {"RSA", "EC", NULL};
static const int64_t keysize_enum[] = {256, 384, 2048, 3072, 4096, END_I};
static const int64_t keysize_rsa[] = {2048, 3072, 4096, END_I};
static const int64_t keysize_ec[] = {256, 384, END_I};
static const char *const kstype_enum[] = {"PEM", "PKCS12", "JKS", NULL};
static const char *const kstype_pw[] = {"PKCS12", "JKS", NULL};
static const char *const rsa_only[] = {"RSA", NULL};
static const char *const ec_only[] = {"EC", NULL};
static const int64_t revoke_codes[] = {0, 1, 3, 4, 5, END_I};
static const char *const collect_formats[] = {"x509",   "x509CO", "x509IO", "x509IOR", "x509R",
                                              "base64", "pem",    "pemco",  "pemia",   NULL};
static const char *const action_enum[] = {"enroll", "renew", "reissue", "revoke", "delete",
                                          "check_status", NULL};
static const char *const phase_enum[] = {"organizations", "domains", "profiles", NULL};
static const char *const specversion_enum[] = {"1.0", NULL};
static const char *const dct_enum[] = {"application/json", NULL};

/* common field shapes */
#define FD_ORDER_ID(req)                                                                     \
    {.name = "order_id", .kind = K_STRING, .required = (req), .min_len = 1,                 \
     .max_len = SF_CMD_ORDER_ID_MAX, .pattern = P_ID,                                        \
     .pattern_what = "letters, digits and ._:@- starting with a letter or digit",           \
     .desc = "scmflow order id (Kafka key)"}
#define FD_ACCOUNT                                                                           \
    {.name = "account", .kind = K_STRING, .min_len = 1, .max_len = SF_CMD_ACCOUNT_MAX,       \
     .pattern = P_ID, .pattern_what = "letters, digits and ._:@- starting with a letter or digit", \
     .desc = "SCM account name; absent = the default account"}
#define FD_SSL_ID(req)                                                                       \
    {.name = "ssl_id", .kind = K_INT, .required = (req), .has_range = true, .min = 1,        \
     .max = MAX_ID, .desc = "SCM sslId"}
#define FD_STATUS(nm, req)                                                                   \
    {.name = nm, .kind = K_STRING, .required = (req), .min_len = 1, .max_len = 64,           \
     .desc = "order status"}
#define FD_COUNT(nm, req)                                                                    \
    {.name = nm, .kind = K_INT, .required = (req), .has_range = true, .min = 0,              \
     .max = MAX_ID}
#define FD_CSR                                                                               \
    {.name = "csr", .kind = K_STRING, .min_len = 1, .max_len = SF_CMD_CSR_MAX,               \
     .pattern = P_CSR, .pattern_what = "a PEM certificate request",                          \
     .desc = "PEM PKCS#10 CSR (bring your own key)"}
#define FD_SANS(req)                                                                         \
    {.name = "sans", .kind = K_STRING_ARRAY, .required = (req), .min_len = 1,                \
     .max_len = SF_CMD_SAN_MAX, .pattern = P_DNS, .pattern_what = "a DNS name",              \
     .max_items = SF_CMD_SANS_MAX, .unique = true, .desc = "subject alternative DNS names"}
#define FD_DATETIME(nm, req)                                                                 \
    {.name = nm, .kind = K_STRING, .required = (req), .min_len = 1, .max_len = 64,           \
     .format = F_DATE_TIME}

/* {code, message, field?, scm_code?}: a machine-readable failure */
static const fdef error_fields[] = {
    {.name = "code", .kind = K_STRING, .required = true, .min_len = 1, .max_len = 64,
     .pattern = P_ERRCODE, .pattern_what = "lowercase letters, digits, _ and .",
     .desc = "machine-readable code, e.g. invalid_field, scm_rejected"},
    {.name = "message", .kind = K_STRING, .required = true, .min_len = 1, .max_len = 1024},
    {.name = "field", .kind = K_STRING, .min_len = 1, .max_len = 128,
     .desc = "offending field path, e.g. data.sans[3]"},
    {.name = "scm_code", .kind = K_INT, .has_range = true, .min = -1000000, .max = 1000000,
     .desc = "SCM error code when SCM answered"},
};
static const tdef error_def = {"error", "a failure", error_fields, SF_ARRAY_LEN(error_fields),
                               NULL, 0, NULL, NULL};
#define FD_ERROR(req) {.name = "error", .kind = K_OBJECT, .required = (req), .sub = &error_def}

static const fdef custom_field_fields[] = {
    {.name = "name", .kind = K_STRING, .required = true, .min_len = 1,
     .max_len = SF_CMD_CUSTOM_NAME_MAX},
    {.name = "value", .kind = K_STRING, .required = true, .min_len = 0,
     .max_len = SF_CMD_CUSTOM_VALUE_MAX},
};
static const tdef custom_field_def = {"custom_field", "an SCM custom field", custom_field_fields,
                                      SF_ARRAY_LEN(custom_field_fields), NULL, 0, NULL, NULL};

/* ---- envelope ---- */
static const fdef envelope_fields[] = {
    {.name = "specversion", .kind = K_STRING, .required = true, .min_len = 1, .max_len = 8,
     .enum_s = specversion_enum},
    {.name = "id", .kind = K_STRING, .required = true, .min_len = 1, .max_len = SF_MSG_ID_MAX,
     .desc = "unique; a command's id is its idempotency key"},
    {.name = "source", .kind = K_STRING, .required = true, .min_len = 1,
     .max_len = SF_MSG_SOURCE_MAX},
    {.name = "type", .kind = K_STRING, .required = true, .min_len = 1,
     .max_len = SF_MSG_TYPE_MAX},
    FD_DATETIME("time", true),
    {.name = "datacontenttype", .kind = K_STRING, .min_len = 1, .max_len = 64,
     .enum_s = dct_enum},
    {.name = "subject", .kind = K_STRING, .min_len = 1, .max_len = SF_MSG_SUBJECT_MAX},
    {.name = "correlationid", .kind = K_STRING, .min_len = 1, .max_len = SF_MSG_ID_MAX,
     .desc = "the id of the command this event answers"},
    {.name = "data", .kind = K_ANY,
     .desc = "the type's data: a JSON object, required and validated for known types"},
};
static const tdef envelope_def = {SF_MSG_ENVELOPE, "CloudEvents 1.0 structured JSON envelope",
                                  envelope_fields, SF_ARRAY_LEN(envelope_fields),
                                  NULL, 0, NULL, NULL};

/* ---- commands ---- */
static const fdef catalog_sync_fields[] = {
    FD_ACCOUNT,
    {.name = "scope", .kind = K_STRING_ARRAY, .min_len = 1, .max_len = 32, .enum_s = scope_enum,
     .max_items = 3, .unique = true, .desc = "what to sync; absent or empty = all"},
};

static int date_order_check(const cJSON *obj, const char *prefix, sf_error *err);

static const fdef orders_import_fields[] = {
    FD_ACCOUNT,
    {.name = "status", .kind = K_STRING_ARRAY, .min_len = 1, .max_len = 32,
     .enum_s = status_enum, .max_items = 12, .unique = true,
     .desc = "SCM statuses to import; absent = all"},
    {.name = "from", .kind = K_STRING, .min_len = 10, .max_len = 10, .pattern = P_DATE,
     .pattern_what = "a date YYYY-MM-DD", .format = F_DATE},
    {.name = "to", .kind = K_STRING, .min_len = 10, .max_len = 10, .pattern = P_DATE,
     .pattern_what = "a date YYYY-MM-DD", .format = F_DATE,
     .desc = "inclusive; not before from"},
};

static const fdef enroll_fields[] = {
    FD_ORDER_ID(false),
    FD_ACCOUNT,
    {.name = "common_name", .kind = K_STRING, .required = true, .min_len = 1,
     .max_len = SF_CMD_COMMON_NAME_MAX, .pattern = P_DNS, .pattern_what = "a DNS name"},
    FD_SANS(true),
    {.name = "organization", .kind = K_INT_OR_STRING, .required = true, .min_len = 1,
     .max_len = SF_CMD_NAME_MAX, .has_range = true, .min = 1, .max = MAX_ID,
     .desc = "SCM organization id or name"},
    {.name = "profile", .kind = K_INT_OR_STRING, .required = true, .min_len = 1,
     .max_len = SF_CMD_NAME_MAX, .has_range = true, .min = 1, .max = MAX_ID,
     .desc = "SCM certificate profile (type) id or name"},
    {.name = "term_days", .kind = K_INT, .required = true, .has_range = true,
     .min = SF_CMD_TERM_DAYS_MIN, .max = SF_CMD_TERM_DAYS_MAX},
    {.name = "key_algorithm", .kind = K_STRING, .required = true, .min_len = 1, .max_len = 8,
     .enum_s = keyalg_enum},
    {.name = "key_size", .kind = K_INT, .required = true, .enum_i = keysize_enum,
     .desc = "RSA: 2048, 3072, 4096; EC: 256 (P-256), 384 (P-384)"},
    {.name = "keystore_type", .kind = K_STRING, .required = true, .min_len = 1, .max_len = 8,
     .enum_s = kstype_enum},
    {.name = "keystore_password", .kind = K_STRING, .min_len = SF_CMD_PASSWORD_MIN,
     .max_len = SF_CMD_PASSWORD_MAX, .pattern = "^[ -~]*$",
     .pattern_what = "printable ASCII (Java keystores refuse anything else)",
     .desc = "secret; required for PKCS12 and JKS; printable ASCII"},
    {.name = "comments", .kind = K_STRING, .min_len = 0, .max_len = SF_CMD_COMMENTS_MAX,
     .desc = "at most 1024 characters"},
    {.name = "external_requesters", .kind = K_STRING_ARRAY, .min_len = 3,
     .max_len = SF_CMD_EMAIL_MAX, .pattern = P_EMAIL, .pattern_what = "an e-mail address",
     .max_items = SF_CMD_REQUESTERS_MAX, .unique = true},
    {.name = "custom_fields", .kind = K_OBJECT_ARRAY, .max_items = SF_CMD_CUSTOM_FIELDS_MAX,
     .sub = &custom_field_def},
    FD_CSR,
};
static const cdef enroll_conds[] = {
    {.if_field = "keystore_type", .if_values = kstype_pw, .then_required = "keystore_password"},
    {.if_field = "key_algorithm", .if_values = rsa_only, .then_field = "key_size",
     .then_ints = keysize_rsa},
    {.if_field = "key_algorithm", .if_values = ec_only, .then_field = "key_size",
     .then_ints = keysize_ec},
};

static const fdef renew_fields[] = {
    FD_ORDER_ID(true),
    {.name = "new_key", .kind = K_BOOL, .has_default = true, .default_bool = false,
     .desc = "generate a new key (default: reuse the old CSR)"},
    FD_CSR,
};

static const fdef reissue_fields[] = {
    FD_ORDER_ID(true),
    {.name = "reason", .kind = K_STRING, .required = true, .min_len = 1,
     .max_len = SF_CMD_REASON_MAX},
    FD_SANS(false),
    {.name = "new_key", .kind = K_BOOL, .has_default = true, .default_bool = true},
    FD_CSR,
};

static const fdef revoke_fields[] = {
    FD_ORDER_ID(true),
    {.name = "reason_code", .kind = K_INT, .required = true, .enum_i = revoke_codes,
     .desc = "0 unspecified, 1 keyCompromise, 3 affiliationChanged, 4 superseded, "
             "5 cessationOfOperation"},
    {.name = "reason", .kind = K_STRING, .required = true, .min_len = 1,
     .max_len = SF_CMD_REASON_MAX},
};

static const fdef delete_fields[] = {FD_ORDER_ID(true)};

static const fdef check_status_fields[] = {
    FD_ORDER_ID(false),
    {.name = "all", .kind = K_BOOL, .only_true = true, .desc = "check every open order"},
};
static const char *const check_status_one_of[] = {"order_id", "all", NULL};

static const fdef collected_fields[] = {
    FD_ORDER_ID(true),
    FD_SSL_ID(true),
    {.name = "format", .kind = K_STRING, .required = true, .min_len = 1, .max_len = 16,
     .enum_s = collect_formats, .desc = "SCM collect format"},
    {.name = "chain_pem", .kind = K_STRING, .required = true, .min_len = 1,
     .max_len = SF_CMD_CHAIN_MAX, .pattern = P_PEM, .pattern_what = "PEM text",
     .desc = "the collected bytes as text"},
    FD_DATETIME("collected_at", true),
};

/* ---- events ---- */
static const fdef ev_catalog_synced[] = {
    FD_ACCOUNT, FD_COUNT("organizations", true), FD_COUNT("domains", true),
    FD_COUNT("profiles", true), FD_COUNT("duration_ms", false),
    FD_COUNT("added", false), FD_COUNT("changed", false), FD_COUNT("removed", false),
    {.name = "counts", .kind = K_OBJECT,
     .desc = "per kind: {added, changed, removed, ...} (informational)"},
};
static const fdef ev_catalog_sync_failed[] = {
    FD_ACCOUNT, FD_ERROR(true), FD_COUNT("attempt", false),
    {.name = "will_retry", .kind = K_BOOL, .desc = "the worker retries the sync by itself"},
};
static const fdef ev_catalog_sync_progress[] = {
    FD_ACCOUNT,
    {.name = "phase", .kind = K_STRING, .required = true, .min_len = 1, .max_len = 32,
     .enum_s = phase_enum},
    FD_COUNT("done", true), FD_COUNT("total", false),
};
static const fdef ev_orders_imported[] = {
    FD_ACCOUNT, FD_COUNT("imported", true), FD_COUNT("updated", false),
    FD_COUNT("skipped", false), FD_COUNT("total", false), FD_COUNT("duration_ms", false),
};
static const fdef ev_orders_import_progress[] = {
    FD_ACCOUNT, FD_COUNT("done", true), FD_COUNT("total", false),
    FD_COUNT("imported", false), FD_COUNT("updated", false),
};
#define FD_ACTION(req)                                                                       \
    {.name = "action", .kind = K_STRING, .required = (req), .min_len = 1, .max_len = 32,     \
     .enum_s = action_enum}
static const fdef ev_order_accepted[] = {FD_ORDER_ID(true), FD_ACTION(true), FD_ACCOUNT};
static const fdef ev_order_rejected[] = {
    FD_ORDER_ID(true), FD_ACTION(false), FD_ERROR(true),
    {.name = "errors", .kind = K_OBJECT_ARRAY, .max_items = 100, .sub = &error_def,
     .desc = "every failure found (error is the first)"},
};
static const fdef ev_order_submitted[] = {
    FD_ORDER_ID(true), FD_SSL_ID(true), FD_ACTION(false), FD_STATUS("status", false),
};
static const fdef ev_order_status_changed[] = {
    FD_ORDER_ID(true), FD_SSL_ID(false), FD_STATUS("old_status", false),
    FD_STATUS("status", true),
};
static const fdef ev_order_issued[] = {
    FD_ORDER_ID(true), FD_SSL_ID(true),
    {.name = "serial_number", .kind = K_STRING, .min_len = 1, .max_len = 128},
    FD_DATETIME("not_after", false),
};
static const fdef ev_order_failed[] = {
    FD_ORDER_ID(true), FD_SSL_ID(false), FD_ACTION(false), FD_STATUS("status", false),
    FD_ERROR(true),
};
static const fdef ev_order_renewed[] = {
    FD_ORDER_ID(true), FD_SSL_ID(false),
    {.name = "previous_ssl_id", .kind = K_INT, .has_range = true, .min = 1,
     .max = MAX_ID},
    {.name = "renewed_from", .kind = K_STRING, .min_len = 1, .max_len = SF_CMD_ORDER_ID_MAX,
     .desc = "order id of the renewed order when the renewal is a new order"},
};
static const fdef ev_order_reissued[] = {FD_ORDER_ID(true), FD_SSL_ID(false)};
static const fdef ev_order_revoked[] = {
    FD_ORDER_ID(true), FD_SSL_ID(false),
    {.name = "reason_code", .kind = K_INT, .enum_i = revoke_codes},
};
static const fdef ev_order_deleted[] = {FD_ORDER_ID(true), FD_SSL_ID(false)};
static const fdef ev_cert_stored[] = {
    FD_ORDER_ID(true), FD_SSL_ID(false),
    {.name = "certificate_id", .kind = K_STRING, .min_len = 1, .max_len = 128},
    {.name = "serial_number", .kind = K_STRING, .min_len = 1, .max_len = 128},
    {.name = "fingerprint_sha256", .kind = K_STRING, .min_len = 64, .max_len = 64,
     .pattern = "^[0-9a-f]{64}$", .pattern_what = "64 lowercase hex digits"},
    FD_DATETIME("not_after", false),
    {.name = "keystore_type", .kind = K_STRING, .min_len = 1, .max_len = 8,
     .enum_s = kstype_enum},
};
static const fdef ev_cert_not_stored[] = {
    FD_ORDER_ID(true), FD_SSL_ID(false),
    {.name = "reason", .kind = K_STRING, .required = true, .min_len = 1, .max_len = 512},
    FD_COUNT("license_count", false), FD_COUNT("license_limit", false),
};
static const fdef ev_cert_rejected[] = {FD_ORDER_ID(true), FD_SSL_ID(false), FD_ERROR(true)};

#define T(type, desc, f) {type, desc, f, SF_ARRAY_LEN(f), NULL, 0, NULL, NULL}
static const tdef types[] = {
    T(SF_CMD_CATALOG_SYNC, "command: sync the SCM catalog", catalog_sync_fields),
    {SF_CMD_ORDERS_IMPORT, "command: import existing SCM orders", orders_import_fields,
     SF_ARRAY_LEN(orders_import_fields), NULL, 0, NULL, date_order_check},
    {SF_CMD_ORDER_ENROLL, "command: enroll a new certificate", enroll_fields,
     SF_ARRAY_LEN(enroll_fields), enroll_conds, SF_ARRAY_LEN(enroll_conds), NULL, NULL},
    T(SF_CMD_ORDER_RENEW, "command: renew an order", renew_fields),
    T(SF_CMD_ORDER_REISSUE, "command: reissue (replace) an order", reissue_fields),
    T(SF_CMD_ORDER_REVOKE, "command: revoke an order", revoke_fields),
    T(SF_CMD_ORDER_DELETE, "command: delete an order locally (SCM keeps it)", delete_fields),
    {SF_CMD_ORDER_CHECK_STATUS, "command: check one order or all open orders",
     check_status_fields, SF_ARRAY_LEN(check_status_fields), NULL, 0, check_status_one_of,
     NULL},
    T(SF_MSG_CERT_COLLECTED, "a certificate collected from SCM", collected_fields),
    T(SF_EV_CATALOG_SYNCED, "event: catalog synced", ev_catalog_synced),
    T(SF_EV_CATALOG_SYNC_FAILED, "event: catalog sync failed", ev_catalog_sync_failed),
    T(SF_EV_CATALOG_SYNC_PROGRESS, "event: catalog sync progress", ev_catalog_sync_progress),
    T(SF_EV_ORDERS_IMPORTED, "event: orders imported", ev_orders_imported),
    T(SF_EV_ORDERS_IMPORT_PROGRESS, "event: order import progress", ev_orders_import_progress),
    T(SF_EV_ORDER_ACCEPTED, "event: command accepted", ev_order_accepted),
    T(SF_EV_ORDER_REJECTED, "event: command rejected", ev_order_rejected),
    T(SF_EV_ORDER_SUBMITTED, "event: order submitted to SCM", ev_order_submitted),
    T(SF_EV_ORDER_STATUS_CHANGED, "event: SCM status changed", ev_order_status_changed),
    T(SF_EV_ORDER_ISSUED, "event: certificate issued", ev_order_issued),
    T(SF_EV_ORDER_FAILED, "event: order failed", ev_order_failed),
    T(SF_EV_ORDER_RENEWED, "event: order renewed", ev_order_renewed),
    T(SF_EV_ORDER_REISSUED, "event: order reissued", ev_order_reissued),
    T(SF_EV_ORDER_REVOKED, "event: order revoked", ev_order_revoked),
    T(SF_EV_ORDER_DELETED, "event: order deleted", ev_order_deleted),
    T(SF_EV_CERT_STORED, "event: certificate stored in the repository", ev_cert_stored),
    T(SF_EV_CERT_NOT_STORED, "event: certificate not stored (license count)",
      ev_cert_not_stored),
    T(SF_EV_CERT_REJECTED, "event: collected certificate rejected", ev_cert_rejected),
};

static const char *const known_types[] = {
    SF_CMD_CATALOG_SYNC,         SF_CMD_ORDERS_IMPORT,        SF_CMD_ORDER_ENROLL,
    SF_CMD_ORDER_RENEW,          SF_CMD_ORDER_REISSUE,        SF_CMD_ORDER_REVOKE,
    SF_CMD_ORDER_DELETE,         SF_CMD_ORDER_CHECK_STATUS,   SF_MSG_CERT_COLLECTED,
    SF_EV_CATALOG_SYNCED,        SF_EV_CATALOG_SYNC_FAILED,   SF_EV_CATALOG_SYNC_PROGRESS,
    SF_EV_ORDERS_IMPORTED,       SF_EV_ORDERS_IMPORT_PROGRESS, SF_EV_ORDER_ACCEPTED,
    SF_EV_ORDER_REJECTED,        SF_EV_ORDER_SUBMITTED,       SF_EV_ORDER_STATUS_CHANGED,
    SF_EV_ORDER_ISSUED,          SF_EV_ORDER_FAILED,          SF_EV_ORDER_RENEWED,
    SF_EV_ORDER_REISSUED,        SF_EV_ORDER_REVOKED,         SF_EV_ORDER_DELETED,
    SF_EV_CERT_STORED,           SF_EV_CERT_NOT_STORED,       SF_EV_CERT_REJECTED,
    NULL,
};

const char *const *sf_msg_known_types(void)
{
    return known_types;
}

static const tdef *find_type(const char *type)
{
    if (type == NULL)
        return NULL;
    for (size_t i = 0; i < SF_ARRAY_LEN(types); i++)
        if (strcmp(types[i].type, type) == 0)
            return &types[i];
    return NULL;
}

bool sf_event_type_known(const char *type)
{
    return find_type(type) != NULL;
}

/* ------------------------------------------------------------------ */
/* compiled patterns: compiled once, read-only afterwards              */

#define MAX_PATTERNS 16
static struct {
    const char *src;
    regex_t re;
    bool ok;
} pattern_cache[MAX_PATTERNS];
static size_t pattern_count;
static pthread_once_t pattern_once = PTHREAD_ONCE_INIT;

static void add_pattern(const char *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < pattern_count; i++)
        if (strcmp(pattern_cache[i].src, p) == 0)
            return;
    if (pattern_count == MAX_PATTERNS)
        return; /* find_pattern() then reports an internal error */
    pattern_cache[pattern_count].src = p;
    pattern_cache[pattern_count].ok = regcomp(&pattern_cache[pattern_count].re, p,
                                              REG_EXTENDED | REG_NOSUB) == 0;
    pattern_count++;
}

static void add_table_patterns(const tdef *t)
{
    for (size_t i = 0; i < t->nfields; i++) {
        add_pattern(t->fields[i].pattern);
        if (t->fields[i].sub)
            add_table_patterns(t->fields[i].sub);
    }
}

static void compile_patterns(void)
{
    add_table_patterns(&envelope_def);
    for (size_t i = 0; i < SF_ARRAY_LEN(types); i++)
        add_table_patterns(&types[i]);
}

/* Hand-written matchers for the patterns on the hot path (a SAN list is up
 * to 100 names; glibc regexec costs ~6 us per name for P_DNS). Each accepts
 * exactly the language of its pattern; test_msg checks them against
 * regcomp() of the pattern in the schema file on random strings. */
static bool id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool match_id(const char *s)
{
    if (!id_char(*s))
        return false;
    for (s++; *s; s++)
        if (!id_char(*s) && !strchr("._:@-", *s))
            return false;
    return true;
}

static bool label_char(char c)
{
    return id_char(c) || c == '_';
}

static bool match_dns(const char *s)
{
    if (s[0] == '*' && s[1] == '.')
        s += 2;
    for (;;) {
        size_t n = 0;
        while (label_char(s[n]) || s[n] == '-')
            n++;
        if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
            return false;
        s += n;
        if (*s == '\0')
            return true;
        if (*s != '.')
            return false;
        s++;
    }
}

static bool match_email(const char *s)
{
    const char *at = strchr(s, '@'), *d, *dot;
    size_t dl;

    if (at == NULL || at == s || strchr(at + 1, '@'))
        return false;
    for (const char *p = s; *p; p++)
        if (*p == ' ')
            return false;
    d = at + 1;
    dl = strlen(d);
    /* a '.' with at least one character on each side inside the domain */
    for (dot = d + 1; dot < d + dl - 1; dot++)
        if (*dot == '.')
            return true;
    return false;
}

static const struct {
    const char *pattern;
    bool (*match)(const char *s);
} fast_matchers[] = {{P_ID, match_id}, {P_DNS, match_dns}, {P_EMAIL, match_email}};

static const regex_t *find_pattern(const char *p)
{
    pthread_once(&pattern_once, compile_patterns);
    for (size_t i = 0; i < pattern_count; i++)
        if (pattern_cache[i].src == p || strcmp(pattern_cache[i].src, p) == 0)
            return pattern_cache[i].ok ? &pattern_cache[i].re : NULL;
    return NULL;
}

/* ------------------------------------------------------------------ */
/* value checks                                                        */

/* Code points of a valid UTF-8 string (JSON Schema counts characters). */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;

    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

static bool is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
    static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : d[m - 1];
}

static int digits(const char *s, int n)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static bool date_valid(const char *s)
{
    int y, m, d;

    if (strlen(s) < 10 || s[4] != '-' || s[7] != '-')
        return false;
    y = digits(s, 4);
    m = digits(s + 5, 2);
    d = digits(s + 8, 2);
    return y >= 0 && m >= 1 && m <= 12 && d >= 1 && d <= days_in_month(y, m);
}

bool sf_rfc3339_valid(const char *s)
{
    const char *p;
    int hh, mi, ss;

    if (s == NULL || strlen(s) < 20 || !date_valid(s) || (s[10] != 'T' && s[10] != 't'))
        return false;
    p = s + 11;
    if (p[2] != ':' || p[5] != ':')
        return false;
    hh = digits(p, 2);
    mi = digits(p + 3, 2);
    ss = digits(p + 6, 2);
    if (hh < 0 || hh > 23 || mi < 0 || mi > 59 || ss < 0 || ss > 60)
        return false;
    p += 8;
    if (*p == '.') {
        const char *f = ++p;
        while (*p >= '0' && *p <= '9')
            p++;
        if (p == f || p - f > 9)
            return false;
    }
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
        return true;
    if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
        int oh = digits(p + 1, 2), om = digits(p + 4, 2);
        return oh >= 0 && oh <= 23 && om >= 0 && om <= 59;
    }
    return false;
}

static void list_enum_s(const char *const *e, char *buf, size_t n)
{
    sf_buf b;
    char *s;
    size_t len;

    sf_buf_init(&b, n > 0 ? n - 1 : 0);
    for (size_t i = 0; e[i]; i++)
        if (sf_buf_appendf(&b, "%s%s", i ? ", " : "", e[i]) < 0)
            break;
    s = sf_buf_detach(&b, &len);
    sf_snprintf(buf, n, "%s", s ? s : "");
    free(s);
}

static void list_enum_i(const int64_t *e, char *buf, size_t n)
{
    size_t off = 0;

    buf[0] = '\0';
    for (size_t i = 0; e[i] != END_I && off < n; i++) {
        int w = snprintf(buf + off, n - off, "%s%lld", i ? ", " : "", (long long)e[i]);
        if (w < 0)
            break;
        off += (size_t)w;
    }
}

/* Values are never copied into messages: some fields are secrets, and the
 * dead-letter reason must not echo input. */
static int check_string(const fdef *f, const cJSON *v, const char *path, sf_error *err)
{
    const char *s;
    size_t nch;

    if (!cJSON_IsString(v) || v->valuestring == NULL)
        return sf_error_field(err, path, "%s: must be a string", path);
    s = v->valuestring;
    nch = utf8_chars(s);
    if ((int64_t)nch < f->min_len || (f->max_len > 0 && (int64_t)nch > f->max_len)) {
        if (f->min_len == f->max_len)
            return sf_error_field(err, path, "%s: must be exactly %d characters", path,
                                  f->max_len);
        if (f->min_len > 0)
            return sf_error_field(err, path, "%s: must be %d..%d characters", path, f->min_len,
                                  f->max_len);
        return sf_error_field(err, path, "%s: must be at most %d characters", path,
                              f->max_len);
    }
    if (f->enum_s) {
        bool found = false;
        for (size_t i = 0; f->enum_s[i] && !found; i++)
            found = strcmp(f->enum_s[i], s) == 0;
        if (!found) {
            char list[256];
            list_enum_s(f->enum_s, list, sizeof(list));
            return sf_error_field(err, path, "%s: must be one of %s", path, list);
        }
    }
    if (f->pattern) {
        const regex_t *re;
        bool matched = false, fast = false;

        for (size_t i = 0; i < SF_ARRAY_LEN(fast_matchers) && !fast; i++)
            if (fast_matchers[i].pattern == f->pattern ||
                strcmp(fast_matchers[i].pattern, f->pattern) == 0) {
                fast = true;
                matched = fast_matchers[i].match(s);
            }
        if (fast) {
            if (!matched)
                return sf_error_field(err, path, "%s: must be %s", path,
                                      f->pattern_what ? f->pattern_what : "well-formed");
            goto format;
        }
        re = find_pattern(f->pattern);
        if (re == NULL)
            return sf_error_set(err, SF_ERR_INTERNAL, 0, "pattern of %s did not compile", path);
        if (regexec(re, s, 0, NULL, 0) != 0)
            return sf_error_field(err, path, "%s: must be %s", path,
                                  f->pattern_what ? f->pattern_what : "well-formed");
    }
format:
    if (f->format == F_DATE_TIME && !sf_rfc3339_valid(s))
        return sf_error_field(err, path, "%s: must be an RFC 3339 date-time", path);
    if (f->format == F_DATE && !date_valid(s))
        return sf_error_field(err, path, "%s: must be a valid date YYYY-MM-DD", path);
    return 0;
}

/* An integral JSON number within [-2^53+1, 2^53-1] (exact as a double). */
static bool json_int(const cJSON *v, int64_t *out)
{
    double d;

    if (!cJSON_IsNumber(v))
        return false;
    d = v->valuedouble;
    if (!isfinite(d) || d != floor(d) || d > (double)MAX_SAFE_INT || d < -(double)MAX_SAFE_INT)
        return false;
    *out = (int64_t)d;
    return true;
}

static int check_int(const fdef *f, const cJSON *v, const char *path, sf_error *err)
{
    int64_t x;

    if (!json_int(v, &x))
        return sf_error_field(err, path, "%s: must be an integer", path);
    if (f->has_range && (x < f->min || x > f->max))
        return sf_error_field(err, path, "%s: must be %lld..%lld", path, (long long)f->min,
                              (long long)f->max);
    if (f->enum_i) {
        bool found = false;
        for (size_t i = 0; f->enum_i[i] != END_I && !found; i++)
            found = f->enum_i[i] == x;
        if (!found) {
            char list[128];
            list_enum_i(f->enum_i, list, sizeof(list));
            return sf_error_field(err, path, "%s: must be one of %s", path, list);
        }
    }
    return 0;
}

static int check_object(const tdef *t, const cJSON *obj, const char *prefix, sf_error *err);

static int cmp_strp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* uniqueItems for an array of strings (already type-checked): sort a copy
 * (n log n); only when a duplicate exists, find its position for the path. */
static int check_unique(const cJSON *arr, const char *path, sf_error *err)
{
    int n = cJSON_GetArraySize(arr), i = 0;
    const char **v;
    const cJSON *it;
    bool dup = false;
    char ipath[96];

    if (n < 2)
        return 0;
    v = malloc((size_t)n * sizeof(*v));
    if (v == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    cJSON_ArrayForEach(it, arr)
        v[i++] = it->valuestring;
    qsort(v, (size_t)n, sizeof(*v), cmp_strp);
    for (i = 1; i < n && !dup; i++)
        dup = strcmp(v[i - 1], v[i]) == 0;
    free(v);
    if (!dup)
        return 0;
    i = 0;
    cJSON_ArrayForEach(it, arr) {
        int j = 0;
        for (const cJSON *p = arr->child; p != it; p = p->next, j++)
            if (strcmp(p->valuestring, it->valuestring) == 0) {
                (void)sf_snprintf(ipath, sizeof(ipath), "%s[%d]", path, i);
                return sf_error_field(err, ipath, "%s: duplicate of %s[%d]", ipath, path, j);
            }
        i++;
    }
    return sf_error_set(err, SF_ERR_INTERNAL, 0, "inconsistent duplicate check");
}

static int check_value(const fdef *f, const cJSON *v, const char *path, sf_error *err)
{
    char ipath[96];
    int i = 0;
    const cJSON *it;

    switch (f->kind) {
    case K_STRING:
        return check_string(f, v, path, err);
    case K_INT:
        return check_int(f, v, path, err);
    case K_BOOL:
        if (!cJSON_IsBool(v))
            return sf_error_field(err, path, "%s: must be true or false", path);
        if (f->only_true && !cJSON_IsTrue(v))
            return sf_error_field(err, path, "%s: must be true when present", path);
        return 0;
    case K_INT_OR_STRING:
        if (cJSON_IsNumber(v))
            return check_int(f, v, path, err);
        if (cJSON_IsString(v))
            return check_string(f, v, path, err);
        return sf_error_field(err, path, "%s: must be an integer id or a name", path);
    case K_STRING_ARRAY:
    case K_OBJECT_ARRAY:
        if (!cJSON_IsArray(v))
            return sf_error_field(err, path, "%s: must be an array", path);
        if (cJSON_GetArraySize(v) > f->max_items || cJSON_GetArraySize(v) < f->min_items)
            return sf_error_field(err, path, "%s: must have %d..%d items", path, f->min_items,
                                  f->max_items);
        /* Item paths are formatted only on failure (re-run with err). */
        cJSON_ArrayForEach(it, v) {
            int rc = f->kind == K_STRING_ARRAY ? check_string(f, it, path, NULL)
                                               : check_object(f->sub, it, path, NULL);
            if (rc < 0) {
                (void)sf_snprintf(ipath, sizeof(ipath), "%s[%d]", path, i);
                if (f->kind == K_STRING_ARRAY)
                    return check_string(f, it, ipath, err);
                return check_object(f->sub, it, ipath, err) < 0
                           ? -1
                           : sf_error_set(err, SF_ERR_INTERNAL, 0, "inconsistent check");
            }
            i++;
        }
        if (f->kind == K_STRING_ARRAY && f->unique)
            return check_unique(v, path, err);
        return 0;
    case K_OBJECT:
        if (!cJSON_IsObject(v))
            return sf_error_field(err, path, "%s: must be an object", path);
        return f->sub ? check_object(f->sub, v, path, err) : 0;
    case K_ANY:
        return 0;
    }
    return sf_error_set(err, SF_ERR_INTERNAL, 0, "bad contract table for %s", path);
}

/* prefix.name into buf, truncated to fit (paths only feed err->field). */
static void join_path(char *buf, size_t n, const char *prefix, const char *name)
{
    size_t pl = prefix ? strlen(prefix) : 0, nl = strlen(name), off = 0;

    if (n == 0)
        return;
    if (pl) {
        if (pl > n - 1)
            pl = n - 1;
        memcpy(buf, prefix, pl);
        off = pl;
        if (off < n - 1)
            buf[off++] = '.';
    }
    if (nl > n - 1 - off)
        nl = n - 1 - off;
    memcpy(buf + off, name, nl);
    buf[off + nl] = '\0';
}

/* prefix "" for the envelope, "data" for data, "data.error" nested. */
static int check_object(const tdef *t, const cJSON *obj, const char *prefix, sf_error *err)
{
    char path[96];

    if (!cJSON_IsObject(obj))
        return sf_error_field(err, prefix[0] ? prefix : "message", "%s: must be a JSON object",
                              prefix[0] ? prefix : "message");
    for (size_t i = 0; i < t->nfields; i++) {
        const fdef *f = &t->fields[i];
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, f->name);

        join_path(path, sizeof(path), prefix, f->name);
        if (v == NULL) {
            if (f->required)
                return sf_error_field(err, path, "%s: is required", path);
            continue;
        }
        if (check_value(f, v, path, err) < 0)
            return -1;
    }
    for (size_t i = 0; i < t->nconds; i++) {
        const cdef *c = &t->conds[i];
        const cJSON *iv = cJSON_GetObjectItemCaseSensitive(obj, c->if_field);
        bool match = false;

        if (!cJSON_IsString(iv))
            continue;
        for (size_t j = 0; c->if_values[j] && !match; j++)
            match = strcmp(c->if_values[j], iv->valuestring) == 0;
        if (!match)
            continue;
        if (c->then_required && !cJSON_GetObjectItemCaseSensitive(obj, c->then_required)) {
            join_path(path, sizeof(path), prefix, c->then_required);
            return sf_error_field(err, path, "%s: is required when %s is %s", path, c->if_field,
                                  iv->valuestring);
        }
        if (c->then_field) {
            const cJSON *tv = cJSON_GetObjectItemCaseSensitive(obj, c->then_field);
            int64_t x;
            bool found = false;

            if (tv == NULL || !json_int(tv, &x))
                continue; /* required/type already checked */
            for (size_t j = 0; c->then_ints[j] != END_I && !found; j++)
                found = c->then_ints[j] == x;
            if (!found) {
                char list[128];
                list_enum_i(c->then_ints, list, sizeof(list));
                join_path(path, sizeof(path), prefix, c->then_field);
                return sf_error_field(err, path, "%s: must be one of %s when %s is %s", path,
                                      list, c->if_field, iv->valuestring);
            }
        }
    }
    if (t->one_of) {
        int present = 0;
        for (size_t i = 0; t->one_of[i]; i++)
            if (cJSON_GetObjectItemCaseSensitive(obj, t->one_of[i]))
                present++;
        if (present != 1) {
            join_path(path, sizeof(path), prefix, t->one_of[0]);
            return sf_error_field(err, path, "%s: exactly one of %s, %s is required", path,
                                  t->one_of[0], t->one_of[1]);
        }
    }
    if (t->extra)
        return t->extra(obj, prefix, err);
    return 0;
}

/* orders.import: from <= to (a schema cannot compare two fields). */
static int date_order_check(const cJSON *obj, const char *prefix, sf_error *err)
{
    const cJSON *from = cJSON_GetObjectItemCaseSensitive(obj, "from");
    const cJSON *to = cJSON_GetObjectItemCaseSensitive(obj, "to");
    char path[96];

    if (cJSON_IsString(from) && cJSON_IsString(to) &&
        strcmp(from->valuestring, to->valuestring) > 0) {
        join_path(path, sizeof(path), prefix, "to");
        return sf_error_field(err, path, "%s: must not be before from", path);
    }
    return 0;
}

int sf_event_validate_data(const char *type, const cJSON *data, sf_error *err)
{
    const tdef *t = find_type(type);

    if (t == NULL)
        return sf_error_field(err, "type", "type: unknown message type");
    if (data == NULL)
        return sf_error_field(err, "data", "data: is required");
    if (!cJSON_IsObject(data))
        return sf_error_field(err, "data", "data: must be a JSON object");
    return check_object(t, data, "data", err);
}

/* ------------------------------------------------------------------ */
/* duplicate keys                                                      */

/* RFC 8259 leaves duplicate names to the parser (first wins in cJSON, last
 * in many others): a message that means different things to different
 * consumers is refused. Names are compared bytewise. */
static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static const char *dup_name(const cJSON *obj, bool *oom)
{
    const cJSON *c;
    const char **names;
    const char *dup = NULL;
    size_t n = 0, i = 0;

    for (c = obj->child; c; c = c->next)
        n++;
    if (n < 2)
        return NULL;
    if (n <= 16) {
        for (c = obj->child; c && !dup; c = c->next)
            for (const cJSON *d = c->next; d && !dup; d = d->next)
                if (strcmp(c->string, d->string) == 0)
                    dup = c->string;
        return dup;
    }
    names = malloc(n * sizeof(*names));
    if (names == NULL) {
        *oom = true;
        return NULL;
    }
    for (c = obj->child; c; c = c->next)
        names[i++] = c->string;
    qsort(names, n, sizeof(*names), cmp_names);
    for (i = 1; i < n && !dup; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            dup = names[i];
    free(names);
    return dup;
}

/* path: the JSON path of node in a buffer of cap bytes (len used); NULL
 * = only detect (fast), without reporting. */
static int check_dup_keys(const cJSON *node, char *path, size_t len, size_t cap, sf_error *err)
{
    const cJSON *c;
    bool oom = false;
    size_t i = 0;

    if (cJSON_IsObject(node)) {
        const char *dup = dup_name(node, &oom);
        if (oom)
            return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        if (dup && path == NULL)
            return -1; /* the caller re-runs with a path to report it */
        if (dup) {
            char field[96];
            /* An empty name still needs a visible field: write it as "". */
            (void)sf_snprintf(field, sizeof(field), "%s%s%.40s", path, len ? "." : "",
                              dup[0] ? dup : "\"\"");
            return sf_error_field(err, field, "%s: duplicate key", field);
        }
    }
    if (!cJSON_IsObject(node) && !cJSON_IsArray(node))
        return 0;
    for (c = node->child; c; c = c->next, i++) {
        if (path == NULL) {
            if (check_dup_keys(c, NULL, 0, 0, err) < 0)
                return -1;
            continue;
        }
        if (cJSON_IsObject(node))
            (void)sf_snprintf(path + len, cap - len, "%s%.40s", len ? "." : "", c->string);
        else
            (void)sf_snprintf(path + len, cap - len, "[%zu]", i);
        if (check_dup_keys(c, path, strlen(path), cap, err) < 0)
            return -1;
        path[len] = '\0';
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* events                                                              */

struct sf_event {
    cJSON *root;
    const char *id, *type, *source, *time, *subject, *correlationid;
    const cJSON *data;
    bool known;
};

static const char *str_member(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int decode_impl(const void *bytes, size_t len, sf_event **out, sf_error *data_err,
                       sf_error *err);

int sf_event_decode(const void *bytes, size_t len, sf_event **out, sf_error *err)
{
    return decode_impl(bytes, len, out, NULL, err);
}

int sf_event_decode_envelope(const void *bytes, size_t len, sf_event **out, sf_error *data_err,
                             sf_error *err)
{
    if (data_err == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_event_decode_envelope: bad arguments");
    return decode_impl(bytes, len, out, data_err, err);
}

/* data_err NULL: invalid data fails the decode (into err). Else an event
 * with a valid envelope but invalid data is returned (rc 1, why in
 * data_err). */
static int decode_impl(const void *bytes, size_t len, sf_event **out, sf_error *data_err,
                       sf_error *err)
{
    int rc = -1;
    bool data_bad = false;
    char *copy = NULL;
    cJSON *root = NULL;
    const char *end = NULL;
    sf_event *ev = NULL;
    const cJSON *data;
    char path[256];

    if (out == NULL || (bytes == NULL && len > 0))
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_event_decode: bad arguments");
    if (len == 0) {
        sf_error_field(err, "message", "message: is empty");
        goto out;
    }
    if (len > SF_MSG_MAX_BYTES) {
        sf_error_field(err, "message", "message: %zu bytes exceeds the limit of %u bytes", len,
                       SF_MSG_MAX_BYTES);
        goto out;
    }
    if (!sf_utf8_valid(bytes, len)) {
        sf_error_field(err, "message", "message: is not valid UTF-8 (or contains NUL)");
        goto out;
    }
    /* A NUL-terminated private copy: cJSON must never read past our bytes. */
    copy = malloc(len + 1);
    if (copy == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    memcpy(copy, bytes, len);
    copy[len] = '\0';
    root = cJSON_ParseWithLengthOpts(copy, len + 1, &end, 0);
    if (root == NULL) {
        size_t at = end && end >= copy && end <= copy + len ? (size_t)(end - copy) : 0;
        sf_error_field(err, "message",
                       "message: is not valid JSON (error near byte %zu; nesting limit %d)", at,
                       CJSON_NESTING_LIMIT);
        goto out;
    }
    while (end && *end && strchr(" \t\r\n", *end))
        end++;
    if (end == NULL || end != copy + len) {
        sf_error_field(err, "message", "message: trailing bytes after the JSON value");
        goto out;
    }
    if (!cJSON_IsObject(root)) {
        sf_error_field(err, "message", "message: must be a JSON object");
        goto out;
    }
    path[0] = '\0';
    if (check_dup_keys(root, NULL, 0, 0, NULL) < 0 &&
        check_dup_keys(root, path, 0, sizeof(path), err) < 0)
        goto out;
    if (check_object(&envelope_def, root, "", err) < 0)
        goto out;
    ev = calloc(1, sizeof(*ev));
    if (ev == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    ev->type = str_member(root, "type");
    data = cJSON_GetObjectItemCaseSensitive(root, "data");
    ev->known = find_type(ev->type) != NULL;
    if (ev->known && data_err == NULL && sf_event_validate_data(ev->type, data, err) < 0)
        goto out;
    if (ev->known && data_err != NULL && sf_event_validate_data(ev->type, data, data_err) < 0) {
        /* An internal failure (allocation) is not a verdict on the data. */
        if (data_err->cls == SF_ERR_INTERNAL) {
            if (err)
                *err = *data_err;
            goto out;
        }
        data_bad = true;
    }
    ev->root = root;
    root = NULL;
    ev->id = str_member(ev->root, "id");
    ev->source = str_member(ev->root, "source");
    ev->time = str_member(ev->root, "time");
    ev->subject = str_member(ev->root, "subject");
    ev->correlationid = str_member(ev->root, "correlationid");
    ev->data = data;
    *out = ev;
    ev = NULL;
    rc = data_bad ? 1 : 0;
out:
    sf_event_free(ev);
    cJSON_Delete(root);
    free(copy);
    return rc;
}

void sf_event_free(sf_event *ev)
{
    if (ev == NULL)
        return;
    cJSON_Delete(ev->root);
    free(ev);
}

const char *sf_event_id(const sf_event *ev) { return ev ? ev->id : NULL; }
const char *sf_event_type(const sf_event *ev) { return ev ? ev->type : NULL; }
const char *sf_event_source(const sf_event *ev) { return ev ? ev->source : NULL; }
const char *sf_event_time(const sf_event *ev) { return ev ? ev->time : NULL; }
const char *sf_event_subject(const sf_event *ev) { return ev ? ev->subject : NULL; }
const char *sf_event_correlationid(const sf_event *ev) { return ev ? ev->correlationid : NULL; }
const cJSON *sf_event_data(const sf_event *ev) { return ev ? ev->data : NULL; }
const cJSON *sf_event_json(const sf_event *ev) { return ev ? ev->root : NULL; }
bool sf_event_is_known(const sf_event *ev) { return ev && ev->known; }

int sf_uuid4(char *buf, size_t n)
{
    unsigned char b[16];

    if (buf == NULL || n < 37 || RAND_bytes(b, sizeof(b)) != 1)
        return -1;
    b[6] = (unsigned char)((b[6] & 0x0F) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3F) | 0x80);
    snprintf(buf, n,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
    return 0;
}

static int add_str(cJSON *o, const char *name, const char *val, sf_error *err)
{
    if (val == NULL)
        return 0;
    if (cJSON_AddStringToObject(o, name, val) == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    return 0;
}

int sf_event_encode_ex(const char *type, const char *source, const char *id,
                       const char *correlationid, const char *subject, const char *time,
                       const cJSON *data, char **out, size_t *out_len, sf_error *err)
{
    int rc = -1;
    cJSON *root = NULL, *dup = NULL;
    char idbuf[40], timebuf[40];
    char *text = NULL;
    size_t len;

    if (out == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_event_encode: bad arguments");
    if (type == NULL || type[0] == '\0') {
        sf_error_field(err, "type", "type: is required");
        goto out;
    }
    if (source == NULL || source[0] == '\0') {
        sf_error_field(err, "source", "source: is required");
        goto out;
    }
    if (find_type(type) != NULL && sf_event_validate_data(type, data, err) < 0)
        goto out;
    if (data != NULL && !cJSON_IsObject(data)) {
        sf_error_field(err, "data", "data: must be a JSON object");
        goto out;
    }
    if (id == NULL) {
        if (sf_uuid4(idbuf, sizeof(idbuf)) < 0) {
            sf_error_set(err, SF_ERR_INTERNAL, 0, "could not generate an event id");
            goto out;
        }
        id = idbuf;
    }
    if (time == NULL) {
        sf_format_rfc3339(sf_now_wall_ms(), timebuf, sizeof(timebuf));
        time = timebuf;
    }
    root = cJSON_CreateObject();
    if (root == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    if (add_str(root, "specversion", SF_MSG_SPECVERSION, err) < 0 ||
        add_str(root, "id", id, err) < 0 || add_str(root, "source", source, err) < 0 ||
        add_str(root, "type", type, err) < 0 || add_str(root, "time", time, err) < 0 ||
        add_str(root, "datacontenttype", SF_MSG_DATA_CONTENT_TYPE, err) < 0 ||
        add_str(root, "subject", subject, err) < 0 ||
        add_str(root, "correlationid", correlationid, err) < 0)
        goto out;
    if (data != NULL) {
        dup = cJSON_Duplicate(data, 1);
        if (dup == NULL) {
            sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
            goto out;
        }
        if (!cJSON_AddItemToObject(root, "data", dup)) {
            cJSON_Delete(dup);
            sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
            goto out;
        }
    }
    /* The envelope rules apply to what we write as much as to what we read. */
    if (check_object(&envelope_def, root, "", err) < 0)
        goto out;
    text = cJSON_PrintUnformatted(root);
    if (text == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    len = strlen(text);
    if (len > SF_MSG_MAX_BYTES) {
        sf_error_field(err, "message", "message: %zu bytes exceeds the limit of %u bytes", len,
                       SF_MSG_MAX_BYTES);
        goto out;
    }
    if (!sf_utf8_valid(text, len)) {
        sf_error_field(err, "message", "message: is not valid UTF-8");
        goto out;
    }
    *out = text;
    text = NULL;
    if (out_len)
        *out_len = len;
    rc = 0;
out:
    free(text);
    cJSON_Delete(root);
    return rc;
}

int sf_event_encode(const char *type, const char *source, const char *id,
                    const char *correlationid, const cJSON *data, char **out, size_t *out_len,
                    sf_error *err)
{
    return sf_event_encode_ex(type, source, id, correlationid, NULL, NULL, data, out, out_len,
                              err);
}

/* ------------------------------------------------------------------ */
/* schema generation                                                   */

static cJSON *enum_s_json(const char *const *e)
{
    cJSON *a = cJSON_CreateArray();

    for (size_t i = 0; a && e[i]; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(e[i]));
    return a;
}

static cJSON *enum_i_json(const int64_t *e)
{
    cJSON *a = cJSON_CreateArray();

    for (size_t i = 0; a && e[i] != END_I; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber((double)e[i]));
    return a;
}

static void add_string_rules(cJSON *s, const fdef *f)
{
    cJSON_AddNumberToObject(s, "minLength", f->min_len);
    cJSON_AddNumberToObject(s, "maxLength", f->max_len);
    if (f->enum_s)
        cJSON_AddItemToObject(s, "enum", enum_s_json(f->enum_s));
    if (f->pattern)
        cJSON_AddStringToObject(s, "pattern", f->pattern);
    if (f->format == F_DATE_TIME)
        cJSON_AddStringToObject(s, "format", "date-time");
    if (f->format == F_DATE)
        cJSON_AddStringToObject(s, "format", "date");
}

static void add_int_rules(cJSON *s, const fdef *f)
{
    if (f->has_range) {
        cJSON_AddNumberToObject(s, "minimum", (double)f->min);
        cJSON_AddNumberToObject(s, "maximum", (double)f->max);
    }
    if (f->enum_i)
        cJSON_AddItemToObject(s, "enum", enum_i_json(f->enum_i));
}

static cJSON *object_schema(const tdef *t);

static cJSON *field_schema(const fdef *f)
{
    cJSON *s = cJSON_CreateObject(), *items, *types_arr;

    if (s == NULL)
        return NULL;
    if (f->desc)
        cJSON_AddStringToObject(s, "description", f->desc);
    switch (f->kind) {
    case K_STRING:
        cJSON_AddStringToObject(s, "type", "string");
        add_string_rules(s, f);
        break;
    case K_INT:
        cJSON_AddStringToObject(s, "type", "integer");
        add_int_rules(s, f);
        break;
    case K_BOOL:
        cJSON_AddStringToObject(s, "type", "boolean");
        if (f->only_true)
            cJSON_AddTrueToObject(s, "const");
        if (f->has_default)
            cJSON_AddBoolToObject(s, "default", f->default_bool);
        break;
    case K_INT_OR_STRING:
        types_arr = cJSON_CreateArray();
        cJSON_AddItemToArray(types_arr, cJSON_CreateString("integer"));
        cJSON_AddItemToArray(types_arr, cJSON_CreateString("string"));
        cJSON_AddItemToObject(s, "type", types_arr);
        add_int_rules(s, f);
        add_string_rules(s, f);
        break;
    case K_STRING_ARRAY:
        cJSON_AddStringToObject(s, "type", "array");
        cJSON_AddNumberToObject(s, "minItems", f->min_items);
        cJSON_AddNumberToObject(s, "maxItems", f->max_items);
        if (f->unique)
            cJSON_AddTrueToObject(s, "uniqueItems");
        items = cJSON_CreateObject();
        cJSON_AddStringToObject(items, "type", "string");
        add_string_rules(items, f);
        cJSON_AddItemToObject(s, "items", items);
        break;
    case K_OBJECT_ARRAY:
        cJSON_AddStringToObject(s, "type", "array");
        cJSON_AddNumberToObject(s, "minItems", f->min_items);
        cJSON_AddNumberToObject(s, "maxItems", f->max_items);
        cJSON_AddItemToObject(s, "items", object_schema(f->sub));
        break;
    case K_OBJECT:
        if (f->sub) {
            cJSON *o = object_schema(f->sub);
            cJSON *d = cJSON_DetachItemFromObjectCaseSensitive(s, "description");
            cJSON_Delete(s);
            s = o;
            if (d && s)
                cJSON_ReplaceItemInObjectCaseSensitive(s, "description", d);
            else
                cJSON_Delete(d);
        } else {
            cJSON_AddStringToObject(s, "type", "object");
        }
        break;
    case K_ANY:
        break;
    }
    return s;
}

static cJSON *object_schema(const tdef *t)
{
    cJSON *s = cJSON_CreateObject(), *props, *req;

    if (s == NULL)
        return NULL;
    cJSON_AddStringToObject(s, "description", t->desc);
    cJSON_AddStringToObject(s, "type", "object");
    props = cJSON_AddObjectToObject(s, "properties");
    req = cJSON_AddArrayToObject(s, "required");
    for (size_t i = 0; i < t->nfields; i++) {
        cJSON_AddItemToObject(props, t->fields[i].name, field_schema(&t->fields[i]));
        if (t->fields[i].required)
            cJSON_AddItemToArray(req, cJSON_CreateString(t->fields[i].name));
    }
    if (t->nconds) {
        cJSON *all = cJSON_AddArrayToObject(s, "allOf");
        for (size_t i = 0; i < t->nconds; i++) {
            const cdef *c = &t->conds[i];
            cJSON *rule = cJSON_CreateObject(), *ifs, *ifp, *then;
            cJSON *ifreq = cJSON_CreateArray();

            ifs = cJSON_AddObjectToObject(rule, "if");
            ifp = cJSON_AddObjectToObject(cJSON_AddObjectToObject(ifs, "properties"), c->if_field);
            cJSON_AddItemToObject(ifp, "enum", enum_s_json(c->if_values));
            cJSON_AddItemToArray(ifreq, cJSON_CreateString(c->if_field));
            cJSON_AddItemToObject(ifs, "required", ifreq);
            then = cJSON_AddObjectToObject(rule, "then");
            if (c->then_required) {
                cJSON *r = cJSON_AddArrayToObject(then, "required");
                cJSON_AddItemToArray(r, cJSON_CreateString(c->then_required));
            }
            if (c->then_field) {
                cJSON *p = cJSON_AddObjectToObject(cJSON_AddObjectToObject(then, "properties"),
                                                   c->then_field);
                cJSON_AddItemToObject(p, "enum", enum_i_json(c->then_ints));
            }
            cJSON_AddItemToArray(all, rule);
        }
    }
    if (t->one_of) {
        cJSON *one = cJSON_AddArrayToObject(s, "oneOf");
        for (size_t i = 0; t->one_of[i]; i++) {
            cJSON *alt = cJSON_CreateObject();
            cJSON *r = cJSON_AddArrayToObject(alt, "required");
            cJSON_AddItemToArray(r, cJSON_CreateString(t->one_of[i]));
            cJSON_AddItemToArray(one, alt);
        }
    }
    return s;
}

int sf_msg_schema(const char *type, cJSON **out, sf_error *err)
{
    const tdef *t;
    cJSON *s, *body;
    char *id;

    if (out == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "sf_msg_schema: bad arguments");
    t = type && strcmp(type, SF_MSG_ENVELOPE) == 0 ? &envelope_def : find_type(type);
    if (t == NULL)
        return sf_error_field(err, "type", "type: unknown message type");
    body = object_schema(t);
    id = sf_asprintf(SCHEMA_BASE "%s.schema.json", t->type);
    s = cJSON_CreateObject();
    if (body == NULL || id == NULL || s == NULL) {
        cJSON_Delete(body);
        cJSON_Delete(s);
        free(id);
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    }
    /* $schema/$id/title first, for readable files. */
    cJSON_AddStringToObject(s, "$schema", "https://json-schema.org/draft/2020-12/schema");
    cJSON_AddStringToObject(s, "$id", id);
    cJSON_AddStringToObject(s, "title", t->type);
    free(id);
    while (body->child) {
        cJSON *c = cJSON_DetachItemViaPointer(body, body->child);
        cJSON_AddItemToObject(s, c->string, c);
    }
    cJSON_Delete(body);
    *out = s;
    return 0;
}
