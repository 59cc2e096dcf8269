/*
 * sf_scm.h - the Sectigo Certificate Manager (SCM) REST client
 * (/work/shared/scm-api.md is the spec).
 *
 * One sf_scm_client per thread: it owns one CURL easy handle for the
 * synchronous calls (connection reuse), shares DNS/TLS sessions/connections
 * with the other clients of the process through a CURLSH, and takes tokens
 * from the rate-limit bucket of its account (keyed by customer_uri + login,
 * shared by every client of that account in the process).
 *
 * Errors (sf_error):
 *   SF_ERR_TRANSIENT  timeout / connection error / 5xx / 429 / 503 / SCM code
 *                     -195 or -140; retry_after_ms is set when the server
 *                     sent Retry-After. Already retried within the budget.
 *   SF_ERR_AUTH       401, or SCM code -16 / -970.
 *   SF_ERR_REJECTED   4xx with a negative SCM code: a definite "no"
 *                     (code = SCM code, msg = SCM description). Never retried.
 *   SF_ERR_NOT_FOUND  404.
 *   SF_ERR_PENDING    collect: certificate not ready (400 with code 0, -1400,
 *                     -183, -109; or an empty 200 body).
 *   SF_ERR_UNKNOWN    a non-idempotent call (enroll, renew, replace, revoke,
 *                     approve, decline) timed out or lost its connection
 *                     AFTER the request was sent, or got a 5xx other than
 *                     503, or a 200 whose body could not be read: it may
 *                     have taken effect. Not retried; the caller reconciles
 *                     (e.g. list by commonName) before calling again.
 *   SF_ERR_INVALID    the response did not have the documented shape
 *                     (field names the JSON path, e.g. "orgs[2].name"), or
 *                     was larger than the response limit; or a bad argument.
 *   SF_ERR_FATAL      TLS verification of the server failed, bad client
 *                     certificate or CA bundle: configuration, not weather.
 *   SF_ERR_INTERNAL   out of memory, libcurl failure.
 * http_status is the HTTP status when there was one; code is the SCM code
 * when the body carried one, else the HTTP status (or the curl code for
 * transport errors). Errors never contain the password or the headers.
 *
 * Retries: idempotent calls (GET/HEAD) are retried on TRANSIENT errors;
 * non-idempotent calls (POST) only when the request surely did not reach
 * the server (connect failure) or was explicitly refused (429, 503).
 * Backoff is exponential with full jitter, bounded by retry_max_attempts and
 * retry_max_total_ms; Retry-After (seconds or HTTP date) is honoured, but
 * never beyond the budget (then the TRANSIENT error is returned at once,
 * with retry_after_ms set).
 *
 * Non-idempotent calls always go out on a fresh connection: libcurl would
 * otherwise silently re-send a request whose reused keep-alive connection
 * died before any answer, which could enroll twice.
 *
 * Metrics (sf_metrics): scmflow_scm_requests_total{endpoint,outcome}
 * (outcome "ok" or the error class name, per attempt),
 * scmflow_scm_request_seconds{endpoint} (histogram, per attempt),
 * scmflow_scm_retries_total{endpoint}. endpoint is a fixed name ("enroll",
 * "details", "collect", "list", "count", ...), never an id.
 *
 * Strings in result structs are heap-owned by the struct and freed with its
 * free function. Output parameters are set only on success.
 */
#ifndef SF_SCM_H
#define SF_SCM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sf_error.h"

struct cJSON;

typedef enum sf_scm_auth {
    SF_SCM_AUTH_PASSWORD = 0,   /* headers login, password, customerUri */
    SF_SCM_AUTH_CLIENT_CERT,    /* login, customerUri + TLS client cert;
                                   "/private" is inserted before "/api" */
} sf_scm_auth;

/* The account and the client's knobs. Strings are copied by
 * sf_scm_client_new(); zero numeric fields take the defaults shown. */
typedef struct sf_scm_account {
    const char *base_url;      /* e.g. "https://cert-manager.com/api"
                                  (must end in "/api"; a trailing "/" ok) */
    const char *login;         /* required */
    const char *password;      /* required for PASSWORD; registered with
                                  sf_log_register_secret */
    const char *customer_uri;  /* required */
    sf_scm_auth auth;
    const char *client_cert_file; /* PEM, CLIENT_CERT only */
    const char *client_key_file;  /* PEM, CLIENT_CERT only */
    const char *ca_bundle;     /* PEM file of trusted CAs; NULL = system */
    long connect_timeout_ms;   /* default 10000 */
    long total_timeout_ms;     /* per attempt; default 60000 */
    int retry_max_attempts;    /* attempts in all (1 = no retry); default 5 */
    long retry_max_total_ms;   /* whole call incl. waits; default 120000 */
    long retry_base_ms;        /* first backoff ceiling; default 200 */
    long retry_cap_ms;         /* backoff ceiling; default 10000 */
    double rate_per_sec;       /* token bucket rate; 0 = unlimited */
    double rate_burst;         /* bucket size; default max(1, rate_per_sec) */
    size_t max_response_bytes; /* default 1 MiB */
    size_t max_list_response_bytes; /* lists; default 4 MiB */
} sf_scm_account;

typedef struct sf_scm_client sf_scm_client;

/* Create a client. Validates the account (missing login etc. =>
 * SF_ERR_INVALID naming the field). Returns NULL on error. */
sf_scm_client *sf_scm_client_new(const sf_scm_account *acct, sf_error *err);
void sf_scm_client_free(sf_scm_client *c);

/* ---- results ----------------------------------------------------------- */

typedef struct sf_scm_strv {    /* a string array */
    char **v;
    size_t n;
} sf_scm_strv;

typedef struct sf_scm_department {
    int64_t id;
    char *name;
    char *parent_name;          /* NULL when absent */
} sf_scm_department;

typedef struct sf_scm_org {
    int64_t id;
    char *name;
    sf_scm_strv cert_types;     /* may be empty */
    sf_scm_department *departments;
    size_t n_departments;
} sf_scm_org;

typedef struct sf_scm_org_list {
    sf_scm_org *orgs;
    size_t n;
} sf_scm_org_list;

typedef struct sf_scm_domain_ref {
    int64_t id;
    char *name;
} sf_scm_domain_ref;

typedef struct sf_scm_domain_page {
    sf_scm_domain_ref *items;
    size_t n;
    int64_t total;              /* X-Total-Count, -1 when absent */
} sf_scm_domain_page;

typedef struct sf_scm_delegation {
    int64_t org_id;
    sf_scm_strv cert_types;
    sf_scm_strv privileges;     /* domainCertificateRequestPrivileges */
    char *status;               /* NULL when absent */
} sf_scm_delegation;

typedef struct sf_scm_domain {
    int64_t id;
    char *name;
    char *delegation_status;    /* every char* below: NULL when absent */
    char *state;                /* ACTIVE | SUSPENDED */
    char *validation_status;    /* VALIDATED | NOT_VALIDATED | EXPIRED */
    char *validation_method;
    char *dcv_validation;       /* yyyy-MM-dd */
    char *dcv_expiration;       /* yyyy-MM-dd */
    sf_scm_delegation *delegations;
    size_t n_delegations;
} sf_scm_domain;

typedef struct sf_scm_key_type {
    char *alg;                  /* "RSA", "EC", ... */
    sf_scm_strv sizes;          /* "2048", "P-256", ... (strings) */
} sf_scm_key_type;

typedef struct sf_scm_profile {
    int64_t id;
    char *name;
    char *description;          /* NULL when absent */
    int64_t *terms;             /* days */
    size_t n_terms;
    sf_scm_key_type *key_types;
    size_t n_key_types;
    bool use_secondary_org_name;
} sf_scm_profile;

typedef struct sf_scm_profile_list {
    sf_scm_profile *profiles;
    size_t n;
} sf_scm_profile_list;

typedef struct sf_scm_custom_field {
    int64_t id;
    char *name;
    bool mandatory;
} sf_scm_custom_field;

typedef struct sf_scm_custom_field_list {
    sf_scm_custom_field *fields;
    size_t n;
} sf_scm_custom_field_list;

typedef struct sf_scm_name_value {
    const char *name;
    const char *value;
} sf_scm_name_value;

/* Enroll request; pointers are borrowed for the call. */
typedef struct sf_scm_enroll_req {
    int64_t org_id;             /* required (org or department id) */
    const char *csr;            /* required, PEM */
    int64_t cert_type;          /* required, profile id */
    int64_t term;               /* required, days */
    const char *const *sans;    /* sent as ONE comma-separated string */
    size_t n_sans;
    const char *comments;       /* optional, <= 1024 chars */
    const char *external_requester; /* optional, comma-separated e-mails */
    const sf_scm_name_value *custom_fields;
    size_t n_custom_fields;
    const char *dcv_mode;       /* optional */
    const char *dcv_email;      /* optional */
} sf_scm_enroll_req;

typedef struct sf_scm_enroll_resp {
    int64_t ssl_id;
    char renew_id[64];          /* "" when absent */
} sf_scm_enroll_resp;

/* Certificate details (GET /ssl/v1/{id}). Dates are kept as SCM sent them
 * (MM/dd/yyyy); parse with sf_scm_parse_date(). Absent => NULL / 0. */
typedef struct sf_scm_cert {
    int64_t id;                 /* "id", else "sslId" */
    char *common_name;
    int64_t org_id;
    char *status;               /* "Issued", "Requested", ... */
    int64_t order_number;
    char *backend_cert_id;
    char *vendor;
    int64_t cert_type_id;       /* certType.id */
    char *cert_type_name;       /* certType.name */
    char *validation_type;
    int64_t term;
    char *owner;
    char *requester;
    char *requested_via;
    char *external_requester;
    char *comments;
    char *requested, *approved, *issued, *declined, *expires,
         *replaced, *revoked, *renewed_date;
    char *reason_code;          /* revocation reason, as text (number or string) */
    bool renewed;
    char *serial_number;        /* colon hex */
    char *signature_alg;
    char *key_algorithm;
    int64_t key_size;
    char *key_type;             /* "RSA - 2048" */
    sf_scm_strv sans;           /* subjectAlternativeNames */
    char *subject;              /* certificateDetails.subject */
    char *issuer;               /* certificateDetails.issuer */
    char *sha1_hash;            /* certificateDetails.sha1Hash */
} sf_scm_cert;

typedef struct sf_scm_cert_ref {
    int64_t ssl_id;
    char *common_name;          /* NULL when absent */
    sf_scm_strv sans;
    char *serial_number;        /* NULL when absent */
} sf_scm_cert_ref;

typedef struct sf_scm_cert_page {
    sf_scm_cert_ref *items;
    size_t n;
    int64_t total;              /* X-Total-Count, -1 when absent */
} sf_scm_cert_page;

/* Filter for list/count; NULL / 0 / -1 fields are not sent. */
typedef struct sf_scm_cert_filter {
    int64_t position;           /* 0-based; < 0 = not sent */
    int64_t size;               /* <= 200; 0 = not sent */
    const char *common_name;
    const char *status;
    int64_t org_id;             /* 0 = not sent */
    int64_t ssl_type_id;        /* 0 = not sent */
    const char *serial_number;
    const char *san;            /* subjectAlternativeName */
    const char *requester;
    const char *external_requester;
} sf_scm_cert_filter;
#define SF_SCM_CERT_FILTER_INIT { -1, 0, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL }

typedef struct sf_scm_replace_req {
    const char *csr;            /* required */
    const char *reason;         /* required, 1..512 */
    const char *common_name;    /* optional */
    const char *const *sans;    /* sent as a JSON ARRAY; optional */
    size_t n_sans;
    const char *dcv_mode;
    const char *dcv_email;
} sf_scm_replace_req;

typedef struct sf_scm_roles {
    bool is_mrao;
    sf_scm_strv roles;          /* the roles seen (own credentials, or the
                                   assignable roles for the fallback) */
    int64_t admin_id;           /* own admin id, 0 when not found */
    const char *method;         /* static: "admin" or "roles" */
} sf_scm_roles;

/* Free functions accept NULL. */
void sf_scm_org_list_free(sf_scm_org_list *l);
void sf_scm_domain_page_free(sf_scm_domain_page *p);
void sf_scm_domain_free(sf_scm_domain *d);
void sf_scm_profile_list_free(sf_scm_profile_list *l);
void sf_scm_custom_field_list_free(sf_scm_custom_field_list *l);
void sf_scm_cert_free(sf_scm_cert *c);
void sf_scm_cert_page_free(sf_scm_cert_page *p);
void sf_scm_roles_free(sf_scm_roles *r);

/* ---- calls (each blocks; retries and rate limit included) -------------- */

/* GET /organization/v1 */
int sf_scm_list_orgs(sf_scm_client *c, sf_scm_org_list **out, sf_error *err);
/* GET /domain/v1?position=&size= (size <= 200) */
int sf_scm_list_domains(sf_scm_client *c, int64_t position, int64_t size,
                        sf_scm_domain_page **out, sf_error *err);
/* GET /domain/v1/{id} */
int sf_scm_get_domain(sf_scm_client *c, int64_t id, sf_scm_domain **out, sf_error *err);
/* GET /ssl/v1/types[?organizationId=] (org_id 0 = all) */
int sf_scm_list_profiles(sf_scm_client *c, int64_t org_id, sf_scm_profile_list **out,
                         sf_error *err);
/* GET /ssl/v1/customFields */
int sf_scm_list_custom_fields(sf_scm_client *c, sf_scm_custom_field_list **out,
                              sf_error *err);
/* POST /ssl/v1/enroll. NOT idempotent: SF_ERR_UNKNOWN means reconcile. */
int sf_scm_enroll(sf_scm_client *c, const sf_scm_enroll_req *req,
                  sf_scm_enroll_resp *out, sf_error *err);
/* GET /ssl/v1/{id} */
int sf_scm_get_cert(sf_scm_client *c, int64_t ssl_id, sf_scm_cert **out, sf_error *err);
/* GET /ssl/v1?filters (+ X-Total-Count) */
int sf_scm_list_certs(sf_scm_client *c, const sf_scm_cert_filter *f,
                      sf_scm_cert_page **out, sf_error *err);
/* HEAD /ssl/v1?filters => X-Total-Count (position/size ignored) */
int sf_scm_count_certs(sf_scm_client *c, const sf_scm_cert_filter *f, int64_t *out,
                       sf_error *err);
/* GET /ssl/v1/collect/{id}/{format}: the raw bytes (NUL-terminated for
 * convenience; *len excludes the NUL; caller frees *out). Formats: x509,
 * x509CO, x509IO, x509IOR, x509R, base64, bin, pem, pemco, pemia (other =>
 * SF_ERR_INVALID without a call). Not ready => SF_ERR_PENDING. */
int sf_scm_collect(sf_scm_client *c, int64_t ssl_id, const char *format, char **out,
                   size_t *len, sf_error *err);
/* POST /ssl/v1/renewById/{id} with {"csr"?: ...}; *new_ssl_id on success. */
int sf_scm_renew_by_id(sf_scm_client *c, int64_t ssl_id, const char *csr /*nullable*/,
                       int64_t *new_ssl_id, sf_error *err);
/* POST /ssl/v1/renew/{renewId} with {"csr"?: ...} => 204 */
int sf_scm_renew(sf_scm_client *c, const char *renew_id, const char *csr /*nullable*/,
                 sf_error *err);
/* POST /ssl/v1/replace/{id} => 204 */
int sf_scm_replace(sf_scm_client *c, int64_t ssl_id, const sf_scm_replace_req *req,
                   sf_error *err);
/* POST /ssl/v1/revoke/{id} {reasonCode, reason} => 204.
 * reason_code: 0,1,3,4,5 or -1 = not sent. */
int sf_scm_revoke(sf_scm_client *c, int64_t ssl_id, int reason_code, const char *reason,
                  sf_error *err);
/* POST /ssl/v1/revoke/serial/{serial} {reasonCode, reason} => 204 */
int sf_scm_revoke_serial(sf_scm_client *c, const char *serial, int reason_code,
                         const char *reason, sf_error *err);
/* POST /ssl/v1/approve/{id} and /decline/{id} {message} => 204 */
int sf_scm_approve(sf_scm_client *c, int64_t ssl_id, const char *message, sf_error *err);
int sf_scm_decline(sf_scm_client *c, int64_t ssl_id, const char *message, sf_error *err);
/* Is the account MRAO? GET /admin/v1?login=<login> then /admin/v1/{id}
 * (credentials[].role); falls back to GET /admin/v1/roles containing "MRAO"
 * when the admin lookup is refused or finds nothing. AUTH errors are
 * returned as such (the credentials check of `scmctl account set`). */
int sf_scm_check_roles(sf_scm_client *c, sf_scm_roles **out, sf_error *err);

/* Generic GET of a JSON document at path (relative to the base, starting
 * with "/", query included, values already URL-encoded). *out is the parsed
 * document (caller frees with cJSON_Delete); *total = X-Total-Count or -1
 * (total may be NULL). */
int sf_scm_get_json(sf_scm_client *c, const char *path, struct cJSON **out,
                    int64_t *total, sf_error *err);

/* Parse an SCM MM/dd/yyyy date into seconds since the epoch at 00:00 UTC.
 * Returns 0 or -1 (SF_ERR_INVALID). */
int sf_scm_parse_date(const char *mmddyyyy, int64_t *epoch_s, sf_error *err);
/* True for a valid collect format name. */
bool sf_scm_format_valid(const char *format);

/* ---- parsers (exposed for tests and the fuzzer; no I/O) ---------------- */
/* Each parses a complete response body (not NUL-terminated necessarily). */
int sf_scm_parse_orgs(const char *body, size_t len, sf_scm_org_list **out, sf_error *err);
int sf_scm_parse_domains(const char *body, size_t len, sf_scm_domain_page **out,
                         sf_error *err);
int sf_scm_parse_domain(const char *body, size_t len, sf_scm_domain **out, sf_error *err);
int sf_scm_parse_profiles(const char *body, size_t len, sf_scm_profile_list **out,
                          sf_error *err);
int sf_scm_parse_custom_fields(const char *body, size_t len, sf_scm_custom_field_list **out,
                               sf_error *err);
int sf_scm_parse_enroll(const char *body, size_t len, sf_scm_enroll_resp *out, sf_error *err);
int sf_scm_parse_cert(const char *body, size_t len, sf_scm_cert **out, sf_error *err);
int sf_scm_parse_cert_list(const char *body, size_t len, sf_scm_cert_page **out,
                           sf_error *err);
/* Turn an HTTP error response into err (class per the table above; collect
 * selects the pending rules). Always returns -1. */
int sf_scm_error_from_response(int http_status, const char *body, size_t len,
                               bool collect, int retry_after_ms, sf_error *err);

/* ---- batch (libcurl multi; one thread) --------------------------------- */

typedef struct sf_scm_batch sf_scm_batch;

typedef enum sf_scm_req_kind {
    SF_SCM_REQ_DETAILS = 1,     /* GET /ssl/v1/{id} => cert */
    SF_SCM_REQ_COLLECT,         /* GET /ssl/v1/collect/{id}/{fmt} => body */
    SF_SCM_REQ_GET,             /* GET path => json (+ body) */
} sf_scm_req_kind;

/* Passed to the completion callback. The callback may take ownership of
 * cert, body or json by copying the pointer and setting the field to NULL
 * (the batch frees whatever is left after the callback returns). */
typedef struct sf_scm_result {
    sf_scm_req_kind kind;
    int64_t ssl_id;             /* DETAILS / COLLECT */
    int rc;                     /* 0 ok, -1 error (see err) */
    sf_error err;               /* when rc < 0 */
    int http_status;
    int attempts;               /* attempts made */
    sf_scm_cert *cert;          /* DETAILS ok */
    char *body;                 /* COLLECT / GET ok: NUL-terminated */
    size_t body_len;
    struct cJSON *json;         /* GET ok */
    int64_t total;              /* GET: X-Total-Count or -1 */
} sf_scm_result;

/* Completion callback, called on the thread of sf_scm_batch_run() (or of
 * sf_scm_batch_free()). It may add requests to the same batch (they are
 * run by the same run() call: the queue may grow while run() loops), but
 * must not call sf_scm_batch_run() or sf_scm_batch_free(). */
typedef void (*sf_scm_batch_cb)(sf_scm_result *res, void *ud);

/* Refill hook: called by sf_scm_batch_run() (same thread, never from inside
 * a callback) whenever fewer than max_in_flight requests are queued or in
 * flight (room = how many more would fit; the hook may add fewer or more).
 * Returns the number of requests it added; 0 = nothing right now (run()
 * asks again when requests complete, and ends when everything queued has
 * completed and the hook still has nothing). It must not call run() or
 * free(). */
typedef int (*sf_scm_batch_refill_fn)(sf_scm_batch *b, size_t room, void *ud);

/* A batch borrows the client (which must outlive it and not be used by
 * another call while sf_scm_batch_run() runs). max_in_flight 1..1024. */
sf_scm_batch *sf_scm_batch_new(sf_scm_client *c, int max_in_flight, sf_error *err);

/* One request. deadline_ms (absolute, sf_now_mono_ms() clock; 0 = none) is
 * the request's own deadline: when it passes before the request completed
 * (queued, waiting for a retry or in flight), the request completes with
 * SF_ERR_TRANSIENT "deadline exceeded" while the others go on. */
typedef struct sf_scm_batch_req {
    sf_scm_req_kind kind;
    int64_t ssl_id;             /* DETAILS, COLLECT */
    const char *format;         /* COLLECT (see sf_scm_collect), copied */
    const char *path;           /* GET, copied */
    int64_t deadline_ms;
    sf_scm_batch_cb cb;         /* required */
    void *ud;
} sf_scm_batch_req;
#define SF_SCM_BATCH_REQ_INIT { SF_SCM_REQ_DETAILS, 0, NULL, NULL, 0, NULL, NULL }

/* Queue a request: before sf_scm_batch_run(), from a callback, or from the
 * refill hook. Nothing is sent outside sf_scm_batch_run(). */
int sf_scm_batch_add(sf_scm_batch *b, const sf_scm_batch_req *req, sf_error *err);
/* Shorthands without a request deadline. */
int sf_scm_batch_add_details(sf_scm_batch *b, int64_t ssl_id, sf_scm_batch_cb cb, void *ud,
                             sf_error *err);
int sf_scm_batch_add_collect(sf_scm_batch *b, int64_t ssl_id, const char *format,
                             sf_scm_batch_cb cb, void *ud, sf_error *err);
int sf_scm_batch_add_get(sf_scm_batch *b, const char *path, sf_scm_batch_cb cb, void *ud,
                         sf_error *err);
/* Install (fn NULL: remove) the refill hook; it stays for later runs. */
void sf_scm_batch_set_refill(sf_scm_batch *b, sf_scm_batch_refill_fn fn, void *ud);
/* Number of queued, not yet completed requests. */
size_t sf_scm_batch_pending(const sf_scm_batch *b);
/* Run until every queued request completed (each callback called exactly
 * once, including requests added meanwhile by callbacks or the refill hook)
 * and the refill hook (if any) adds nothing more, or until deadline_ms
 * (absolute, sf_now_mono_ms() clock; 0 = none) passed: then the remaining
 * requests (and any a callback adds meanwhile) complete with
 * SF_ERR_TRANSIENT "deadline exceeded", the hook is not called again, and
 * -1 is returned. Retries transient failures within the client's budget
 * and respects the rate limit. Returns 0 when every request completed
 * (whatever their individual outcome, request deadlines included). The
 * batch can be reused. Calling it from a callback or the hook is an error
 * (-1, SF_ERR_INVALID). */
int sf_scm_batch_run(sf_scm_batch *b, int64_t deadline_ms, sf_error *err);
/* Completes whatever is still queued with SF_ERR_TRANSIENT (callbacks run;
 * what they add fails too). Not from a callback or the hook. */
void sf_scm_batch_free(sf_scm_batch *b);

#endif
