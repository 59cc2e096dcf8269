/* scm-sim internal interfaces (one program; not part of libscmflow).
 *
 * Threading: every handler runs on a libmicrohttpd thread; all simulator
 * state (catalog, certificates, record, faults) is guarded by g_sim.mu,
 * taken by the dispatcher around a handler. The CA module is thread-safe on
 * its own (its lazily made keys have their own lock). */
#ifndef SCM_SIM_H
#define SCM_SIM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#define SIM_MAX_BODY (1024 * 1024)   /* request bodies over this => 413 */
#define SIM_MAX_GENERATED 100000
#define SIM_RECORD_BODY_MAX 8192     /* request body bytes kept per record entry */

/* ---------------------------------------------------------------- CA */

typedef struct sim_csr {
    EVP_PKEY *pub;          /* owned */
    char alg[8];            /* "RSA" | "EC" */
    char param[16];         /* "2048" | "P-256" */
    char cn[256];
    char pub_sha256[65];    /* lowercase hex of SHA-256(DER SubjectPublicKeyInfo) */
} sim_csr;

typedef struct sim_leaf {
    char *pem;              /* leaf certificate, PEM */
    char *subject;          /* "CN=a,O=b" */
    char *issuer;
    char *sha1;             /* uppercase hex, no colons */
    char *md5;
    char *sig_alg;          /* "SHA256WITHRSA" */
} sim_leaf;

/* Load the issuing root+intermediate from dir (NULL = in memory only), or
 * generate them (and save into dir). 0 ok, -1 with a message in err. */
int ca_init(const char *dir, char *err, size_t errlen);
void ca_shutdown(void);
const char *ca_root_pem(void);
const char *ca_intermediate_pem(void);
const char *ca_intermediate_name(void);

/* Parse + verify a CSR (PEM or bare base64). Returns 0 or a negative SCM
 * error code (-9 bad base64, -10 undecodable, -138 bad signature / no CN,
 * -11 unsupported algorithm). On success fills *out (sim_csr_free it). */
int ca_parse_csr(const char *text, sim_csr *out);
void sim_csr_free(sim_csr *c);

/* A shared key for seeded certificates of a key type ("RSA - 2048",
 * "EC - P-256"; unknown => RSA 2048). Borrowed; lives until ca_shutdown. */
EVP_PKEY *ca_shared_key(const char *key_type);

/* Issue a leaf for pub: subject CN=cn,O=org, SAN = cn + sans_csv,
 * validity [not_before, not_after] (epoch seconds), serial = serial_hex
 * (no colons) or random when NULL. Returns a new sim_leaf (sim_leaf_free)
 * and the serial in colon hex (*serial_colon, malloc'd) or NULL. */
sim_leaf *ca_issue(EVP_PKEY *pub, const char *cn, const char *org, const char *sans_csv,
                   int64_t not_before, int64_t not_after, const char *serial_colon,
                   char **serial_out);
void sim_leaf_free(sim_leaf *l);

/* Random serial in colon hex (16 bytes, positive). malloc'd. */
char *ca_random_serial(void);

/* Build a collect body for format fmt. 0 ok (*out malloc'd), -126 unknown format,
 * -1 internal. *disp_ext gets a file extension. */
int ca_collect(const char *leaf_pem, const char *fmt, char **out, size_t *out_len,
               const char **disp_ext);

/* Make (or reuse) DIR/ca.pem, DIR/server.pem, DIR/server.key for HTTPS. */
int ca_tls_self_signed(const char *dir, char *err, size_t errlen);

/* ------------------------------------------------------------ state */

typedef enum {
    ST_INVALID = 0, ST_REQUESTED, ST_APPROVED, ST_DECLINED, ST_APPLIED, ST_ISSUED,
    ST_REVOKED, ST_EXPIRED, ST_REPLACED, ST_REJECTED, ST_UNMANAGED, ST_SAAPPROVED,
    ST_INIT, ST__COUNT
} sim_status;

const char *sim_status_name(int st);
int sim_status_parse(const char *s); /* -1 unknown; case-insensitive */

typedef struct sim_cert {
    int id;
    char renew_id[21];
    int org_id, cert_type, term;
    uint8_t status;
    bool renewed;
    int polls;
    int reason_code;               /* -1 = none */
    char *cn;
    char *sans;                    /* comma-joined, no spaces; NULL = none */
    char *comments, *ext_req;
    cJSON *custom_fields;          /* array or NULL */
    char *csr_pem;                 /* NULL for seeded certificates */
    char key_type[32];             /* "RSA - 2048" */
    char pub_sha256[65];
    char *serial;                  /* colon hex; NULL until issued */
    sim_leaf *leaf;                /* NULL until made */
    int64_t t_requested, t_approved, t_issued, t_declined, t_expires, t_revoked,
            t_replaced, t_renewed; /* epoch seconds; 0 = absent */
    int64_t progress_start_ms;     /* monotonic-ish wall ms when polls/delay started */
    int requester_id;
    char *revoke_reason;
} sim_cert;

typedef struct sim_enrollment {
    int ssl_id;
    char pub_sha256[65];
    char *cn;
    char *comments;
    const char *kind;              /* "enroll" | "renew" | "replace" */
} sim_enrollment;

typedef struct sim_record {
    uint64_t seq;
    int64_t time_ms;
    char method[8];
    char *path, *query, *headers, *body; /* headers = compact JSON object */
    int status;
} sim_record;

typedef struct sim_fault_rule {
    char *path_prefix;
    char method[8];                /* "" = any */
    double error_rate;             /* used when count < 0 */
    long count;                    /* -1 = rate based */
    int kind;                      /* SIM_FK_* */
    int retry_after_s;             /* -1 = none */
    long hang_ms;
} sim_fault_rule;

enum { SIM_FK_500 = 1, SIM_FK_503, SIM_FK_429, SIM_FK_RESET, SIM_FK_HANG, SIM_FK_TAC, SIM_FK_PENDING,
       SIM_FK_DELAY };
enum { PEND_CODE0 = 0, PEND_1400, PEND_183, PEND_109, PEND_EMPTY200 };

typedef struct sim_bucket {
    char login[64];
    double tokens;
    int64_t last_ms;
} sim_bucket;

typedef struct sim_state {
    pthread_mutex_t mu;
    cJSON *seed;                   /* pristine seed (for reset) */
    char *customer_uri;
    cJSON *orgs, *domains, *profiles, *custom_fields, *admins; /* live catalog, seed format */

    sim_cert **certs;              /* sorted by id */
    size_t ncerts, cap_certs;
    int next_id;

    sim_enrollment *enrolls;
    size_t nenrolls, cap_enrolls;

    sim_record *records;           /* ring */
    size_t rec_max, rec_count, rec_head;
    uint64_t rec_seq;

    /* config */
    int issue_after_polls;
    long issue_delay_ms;           /* -1 = poll based */
    bool manual_approval;
    int pending_style;
    int generate_certs;

    /* faults */
    long latency_ms, jitter_ms;
    sim_fault_rule *rules;
    size_t nrules;
    double rl_rps, rl_burst;       /* rps <= 0: off */
    sim_bucket *buckets;
    size_t nbuckets;
    cJSON *faults_json;            /* as last set, for GET */

    /* API requests answered: from headers parsed to response queued, and to
     * response sent (what the simulator itself adds on top of latency_ms) */
    uint64_t timed_n;
    int64_t timed_answer_us, timed_done_us;

    bool quiet;
} sim_state;

extern sim_state g_sim;
extern volatile int g_stopping;

/* store.c (caller holds g_sim.mu unless noted) */
int store_load_seed(const char *path, char *err, size_t errlen); /* at start, no lock needed */
int store_reset(char *err, size_t errlen);
sim_cert *store_cert(int id);
sim_cert *store_cert_by_renew_id(const char *rid);
sim_cert *store_cert_by_serial(const char *serial);
sim_cert *store_new_cert(void);      /* appended with next id */
void store_add_enrollment(const sim_cert *c, const char *kind);
const cJSON *store_org(int id, const cJSON **parent); /* org or department; parent set for a department */
const cJSON *store_profile(int id);
const cJSON *store_admin_by_login(const char *login);
int64_t sim_now_s(void);
int64_t sim_now_ms(void);
int sim_parse_date(const char *s, int64_t *out);  /* yyyy-MM-dd -> epoch s; 0 ok */
void sim_fmt_date(int64_t t, char *buf, size_t n, bool us); /* us: MM/dd/yyyy else yyyy-MM-dd */
void sim_random_renew_id(char out[21]);
void store_status_check(sim_cert *c);  /* one poll: maybe advance */
int store_issue(sim_cert *c);          /* make the leaf now; 0 ok */
void store_start_progress(sim_cert *c);
int store_catalog_patch(const cJSON *patch, char *err, size_t errlen);
int store_json_int(const cJSON *o, const char *key, int dflt);
const char *store_json_str(const cJSON *o, const char *key, const char *dflt);

/* -------------------------------------------------------- requests */

struct MHD_Connection;

typedef struct sim_req {
    struct MHD_Connection *conn;
    const char *method;
    const char *path;              /* full URL path, no query */
    const char *sub;               /* after "/api" or "/private/api" (API) or "/__sim" (admin) */
    bool private_api;
    const char *body;              /* NUL-terminated; body_len bytes */
    size_t body_len;
    const cJSON *admin;            /* authenticated admin (API calls) */
} sim_req;

typedef struct sim_resp {
    int status;
    char *body;                    /* malloc'd or NULL */
    size_t body_len;
    const char *ctype;             /* NULL = application/json;charset=UTF-8 */
    char disposition[160];
    char location[256];
    long long total_count;         /* < 0: no X-Total-Count */
    int retry_after_s;             /* < 0: none */
} sim_resp;

const char *req_query(const sim_req *r, const char *key);
const char *req_header(const sim_req *r, const char *key);
void resp_json(sim_resp *r, int status, cJSON *body);          /* consumes body */
void resp_error(sim_resp *r, int status, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

void api_handle(sim_req *req, sim_resp *resp);   /* g_sim.mu held */
void admin_handle(sim_req *req, sim_resp *resp); /* g_sim.mu held */

int pending_style_parse(const char *s); /* -1 unknown */
/* The "still being processed" answer of collect, in the configured style
 * (also the "pending" fault: SCM says Issued but cannot hand it out yet). */
void api_pending(sim_resp *resp);

/* faults (main.c) */
int faults_set(const cJSON *j, char *err, size_t errlen);
void faults_clear(void);

/* record (http.c) */
void record_clear(void);

#endif
