/*
 * ctl_common.c - helpers shared by the scmctl subcommands (see ctl.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include <libpq-fe.h>

#include "ctl.h"
#include "sf_db.h"
#include "sf_kafka.h"
#include "sf_log.h"
#include "sf_msg.h"
#include "sf_seal.h"
#include "sf_util.h"

static const sf_cfg_def ctl_settings[] = {
    {"SCMFLOW_DATABASE_URL", SF_CFG_STRING, "postgresql://localhost/scmflow", 0, 0, NULL,
     "libpq connection string", true},
    {"SCMFLOW_KAFKA_BROKERS", SF_CFG_STRING, "localhost:9092", 0, 0, NULL,
     "Kafka bootstrap servers", false},
    {"SCMFLOW_KAFKA_CONFIG", SF_CFG_STRING, "", 0, 0, NULL,
     "optional file of extra librdkafka properties (SASL, TLS)", false},
    {"SCMFLOW_TOPIC_PREFIX", SF_CFG_STRING, "scm.", 0, 0, NULL, "prefix of every topic name",
     false},
    {"SCMFLOW_SCM_BASE_URL", SF_CFG_STRING, "https://cert-manager.com/api", 0, 0, NULL,
     "SCM API base (default for `account set --base-url`)", false},
    {"SCMFLOW_MASTER_KEY_FILE", SF_CFG_STRING, "", 0, 0, NULL,
     "32-byte master key for sealing secrets (needed by account set)", false},
    {"SCMFLOW_MASTER_KEY_OLD_FILES", SF_CFG_STRING, "", 0, 0, NULL,
     "comma-separated files of older master keys, used only to unseal (rekey)", false},
    {"SCMFLOW_LOG_LEVEL", SF_CFG_ENUM, "warn", 0, 0, "debug|info|warn|error", "log level",
     false},
    {"SCMFLOW_LOG_FORMAT", SF_CFG_ENUM, "text", 0, 0, "json|text", "log format", false},
    {"SCMCTL_TIMEOUT", SF_CFG_DURATION, "60s", 100, 86400000, NULL,
     "how long to wait for a worker's answer", false},
};

static void reader_close(ctl_ctx *c);

struct ctl_ctx {
    sf_config *cfg;
    bool json;
    bool quiet;
    bool tty;
    const char *account;
    int64_t timeout_ms;
    struct sf_db *db;
    struct sf_sealer *seal;
    rd_kafka_t *reader; /* events reader, see ctl_publish */
    int64_t last_progress_ms;
    bool progress_open;
};

/* Options that take a value. */
static const char *const common_valued[] = {"--config", "--set", "--account", "--timeout"};
static const char *const common_flags[] = {"--json", "--quiet"};

int ctl_common_opt(int argc, char **argv, int *i)
{
    for (size_t k = 0; k < SF_ARRAY_LEN(common_valued); k++) {
        size_t n = strlen(common_valued[k]);

        if (strcmp(argv[*i], common_valued[k]) == 0 && *i + 1 < argc) {
            *i += 1;
            return 1;
        }
        if (strncmp(argv[*i], common_valued[k], n) == 0 && argv[*i][n] == '=')
            return 1;
    }
    for (size_t k = 0; k < SF_ARRAY_LEN(common_flags); k++)
        if (strcmp(argv[*i], common_flags[k]) == 0)
            return 1;
    return 0;
}

void ctl_print_common_help(FILE *out)
{
    fprintf(out,
            "common options:\n"
            "  --config FILE       settings file (NAME=VALUE lines)\n"
            "  --set NAME=VALUE    override a setting (SCMFLOW_DATABASE_URL, SCMFLOW_KAFKA_BROKERS,\n"
            "                      SCMFLOW_TOPIC_PREFIX, SCMFLOW_MASTER_KEY_FILE, SCMCTL_TIMEOUT, ...)\n"
            "  --account NAME      SCM account (default: the default account)\n"
            "  --json              machine-readable output\n"
            "  --timeout DURATION  wait at most this long for a worker's answer (default 60s)\n"
            "  --quiet             no progress output\n"
            "settings also come from the environment (same names) and SCMFLOW_CONFIG_FILE.\n");
}

bool ctl_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    return false;
}

static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);

    if (strcmp(argv[*i], name) == 0 && *i + 1 < argc)
        return argv[++*i];
    if (strncmp(argv[*i], name, n) == 0 && argv[*i][n] == '=')
        return argv[*i] + n + 1;
    return NULL;
}

ctl_ctx *ctl_ctx_new(int argc, char **argv, sf_error *err)
{
    ctl_ctx *c = calloc(1, sizeof(*c));
    const char *timeout = NULL;
    sf_log_level lvl = SF_LOG_WARN;
    sf_log_format fmt = SF_LOG_TEXT;

    if (c == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        return NULL;
    }
    c->cfg = sf_config_new(ctl_settings, SF_ARRAY_LEN(ctl_settings), NULL, 0);
    if (c->cfg == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto fail;
    }
    if (sf_config_load(c->cfg, argc, argv, err) < 0)
        goto fail;
    for (int i = 1; i < argc; i++) {
        const char *v;

        if (strcmp(argv[i], "--json") == 0)
            c->json = true;
        else if (strcmp(argv[i], "--quiet") == 0)
            c->quiet = true;
        else if ((v = opt_value(argc, argv, &i, "--account")) != NULL)
            c->account = v;
        else if ((v = opt_value(argc, argv, &i, "--timeout")) != NULL)
            timeout = v;
        else if (strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "--set") == 0)
            i++;
    }
    c->timeout_ms = sf_config_duration_ms(c->cfg, "SCMCTL_TIMEOUT");
    if (timeout != NULL && (sf_parse_duration_ms(timeout, &c->timeout_ms) < 0 || c->timeout_ms <= 0)) {
        sf_error_field(err, "--timeout", "--timeout: \"%s\" is not a duration (e.g. 90s, 5m)", timeout);
        goto fail;
    }
    if (c->account != NULL && c->account[0] == '\0') {
        sf_error_field(err, "--account", "--account must not be empty");
        goto fail;
    }
    c->tty = isatty(STDERR_FILENO) == 1;
    (void)sf_log_parse_level(sf_config_str(c->cfg, "SCMFLOW_LOG_LEVEL"), &lvl);
    (void)sf_log_parse_format(sf_config_str(c->cfg, "SCMFLOW_LOG_FORMAT"), &fmt);
    sf_log_init("scmctl", lvl, fmt);
    return c;
fail:
    ctl_ctx_free(c);
    return NULL;
}

const sf_config *ctl_config(const ctl_ctx *c) { return c->cfg; }
bool ctl_json(const ctl_ctx *c) { return c->json; }
bool ctl_quiet(const ctl_ctx *c) { return c->quiet; }
const char *ctl_account_opt(const ctl_ctx *c) { return c->account; }
int64_t ctl_timeout_ms(const ctl_ctx *c) { return c->timeout_ms; }

const char *ctl_topic(const ctl_ctx *c, const char *suffix, char *buf, size_t size)
{
    (void)sf_snprintf(buf, size, "%s%s", sf_config_str(c->cfg, "SCMFLOW_TOPIC_PREFIX"), suffix);
    return buf;
}

/* ---- DB, sealer, Kafka: filled in once libscmflow's modules land ---- */

void ctl_ctx_free(ctl_ctx *c)
{
    if (c == NULL)
        return;
    ctl_progress_done(c);
    reader_close(c);
    sf_sealer_free(c->seal);
    sf_db_close(c->db);
    sf_config_free(c->cfg);
    free(c);
}

struct sf_db *ctl_db(ctl_ctx *c, sf_error *err)
{
    sf_db_opts o = {.application_name = "scmctl"};

    if (c->db != NULL)
        return c->db;
    if ((c->db = sf_db_open_opts(sf_config_str(c->cfg, "SCMFLOW_DATABASE_URL"), &o, err)) == NULL)
        return NULL;
    /* The schema may be new (no worker started yet): migrations are
     * advisory-locked and idempotent. */
    if (sf_db_migrate(c->db, err) < 0) {
        sf_db_close(c->db);
        c->db = NULL;
        return NULL;
    }
    return c->db;
}

struct sf_sealer *ctl_sealer(ctl_ctx *c, sf_error *err)
{
    const char *path = sf_config_str(c->cfg, "SCMFLOW_MASTER_KEY_FILE");
    sf_sealer *s;

    if (c->seal != NULL)
        return c->seal;
    if (path[0] == '\0') {
        sf_error_field(err, "SCMFLOW_MASTER_KEY_FILE",
                       "SCMFLOW_MASTER_KEY_FILE is not set (needed to seal the SCM password)");
        return NULL;
    }
    if ((s = sf_sealer_from_config(c->cfg, err)) == NULL)
        return NULL;
    c->seal = s;
    return s;
}

int ctl_resolve_account(ctl_ctx *c, char **out, sf_error *err)
{
    static const char sql[] =
        "SELECT name FROM scm_accounts WHERE ($1::text IS NULL AND (is_default OR"
        " (SELECT count(*) FROM scm_accounts) = 1)) OR name = $1 ORDER BY is_default DESC LIMIT 1";
    const char *params[1] = {c->account};
    sf_db *db = ctl_db(c, err);
    PGresult *res = NULL;
    char *name;

    if (db == NULL || sf_db_exec(db, sql, 1, params, &res, err) < 0)
        return -1;
    if (PQntuples(res) != 1) {
        PQclear(res);
        if (c->account != NULL)
            return sf_error_set(err, SF_ERR_NOT_FOUND, 0, "no SCM account named \"%s\" (see scmctl account list)",
                                c->account);
        return sf_error_set(err, SF_ERR_NOT_FOUND, 0,
                            "no default SCM account: set one with scmctl account set, or name one with --account");
    }
    name = sf_strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    if (name == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
    *out = name;
    return 0;
}

/* ---- Kafka: producer for commands, reader of <prefix>events ---- */

/* Apply SCMFLOW_KAFKA_CONFIG (key=value lines) to a librdkafka conf. Values
 * are never echoed in errors: they may be passwords. */
static int apply_kafka_file(rd_kafka_conf_t *conf, const char *path, sf_error *err)
{
    char *text = NULL, *save = NULL;
    size_t len = 0;
    int rc = -1, lineno = 0;

    if (path == NULL || path[0] == '\0')
        return 0;
    if (sf_read_file(path, 1024 * 1024, &text, &len) < 0)
        return sf_error_field(err, "SCMFLOW_KAFKA_CONFIG", "could not read \"%s\": %s", path,
                              strerror(errno));
    for (char *line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        char *eq, *k, *v, errstr[256];
        size_t n;

        lineno++;
        while (*line == ' ' || *line == '\t')
            line++;
        n = strlen(line);
        while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == ' '))
            line[--n] = '\0';
        if (line[0] == '\0' || line[0] == '#')
            continue;
        if ((eq = strchr(line, '=')) == NULL) {
            sf_error_field(err, "SCMFLOW_KAFKA_CONFIG", "%s:%d: expected key=value", path, lineno);
            goto out;
        }
        *eq = '\0';
        k = line;
        v = eq + 1;
        if (rd_kafka_conf_set(conf, k, v, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
            sf_error_field(err, "SCMFLOW_KAFKA_CONFIG", "%s:%d: %s: %s", path, lineno, k, errstr);
            goto out;
        }
    }
    rc = 0;
out:
    if (text != NULL) {
        sf_memzero(text, len);
        free(text);
    }
    return rc;
}

/* Open a reader positioned at the current end of every partition of the
 * events topic, so that everything published afterwards is seen. */
static int reader_open(ctl_ctx *c, sf_error *err)
{
    char topic[256], errstr[512], group[96];
    const char *topics[2] = {topic, NULL};
    sf_kafka_opts ko = {0};
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_t *rk = NULL;
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_t *rkt = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    rd_kafka_resp_err_t kerr;
    int rc = -1;

    if (c->reader != NULL)
        return 0;
    ctl_topic(c, SF_TOPIC_EVENTS, topic, sizeof(topic));
    ko.brokers = sf_config_str(c->cfg, "SCMFLOW_KAFKA_BROKERS");
    ko.config_file = sf_config_str(c->cfg, "SCMFLOW_KAFKA_CONFIG");
    ko.client_id = "scmctl";
    if (sf_kafka_ensure_topics(&ko, topics, 4, 10000, err) < 0)
        goto out;
    conf = rd_kafka_conf_new();
    (void)sf_snprintf(group, sizeof(group), "scmctl-%ld-%lld", (long)getpid(),
                      (long long)sf_now_wall_ms());
    if (rd_kafka_conf_set(conf, "bootstrap.servers", ko.brokers, errstr, sizeof(errstr)) ||
        rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof(errstr)) ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr)) ||
        rd_kafka_conf_set(conf, "client.id", "scmctl", errstr, sizeof(errstr)) ||
        rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr))) {
        sf_error_set(err, SF_ERR_FATAL, 0, "kafka configuration: %s", errstr);
        goto out;
    }
    if (apply_kafka_file(conf, ko.config_file, err) < 0)
        goto out;
    rd_kafka_conf_set_log_cb(conf, sf_log_rdkafka_cb);
    if ((rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr))) == NULL) {
        sf_error_set(err, SF_ERR_FATAL, 0, "could not create the Kafka reader: %s", errstr);
        goto out;
    }
    conf = NULL; /* owned by rk */
    rkt = rd_kafka_topic_new(rk, topic, NULL);
    kerr = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1 || md->topics[0].err) {
        sf_error_set(err, SF_ERR_TRANSIENT, 0, "could not read the partitions of \"%s\": %s", topic,
                     rd_kafka_err2str(kerr ? kerr : md->topics[0].err));
        goto out;
    }
    parts = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
    for (int i = 0; i < md->topics[0].partition_cnt; i++) {
        int64_t lo = 0, hi = 0;
        int32_t p = md->topics[0].partitions[i].id;

        kerr = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000);
        if (kerr) {
            sf_error_set(err, SF_ERR_TRANSIENT, 0, "could not read the end of \"%s\" [%d]: %s",
                         topic, (int)p, rd_kafka_err2str(kerr));
            goto out;
        }
        rd_kafka_topic_partition_list_add(parts, topic, p)->offset = hi;
    }
    if ((kerr = rd_kafka_assign(rk, parts)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        sf_error_set(err, SF_ERR_TRANSIENT, 0, "could not read \"%s\": %s", topic,
                     rd_kafka_err2str(kerr));
        goto out;
    }
    c->reader = rk;
    rk = NULL;
    rc = 0;
out:
    if (parts != NULL)
        rd_kafka_topic_partition_list_destroy(parts);
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    if (rkt != NULL)
        rd_kafka_topic_destroy(rkt);
    if (rk != NULL)
        rd_kafka_destroy(rk);
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    return rc;
}

static void reader_close(ctl_ctx *c)
{
    rd_kafka_t *rk = c->reader;

    if (rk == NULL)
        return;
    (void)rd_kafka_assign(rk, NULL);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    c->reader = NULL;
}

int ctl_publish(ctl_ctx *c, const char *topic_suffix, const char *key, const char *type,
                const cJSON *data, char **out_id, sf_error *err)
{
    char topic[256];
    char *payload = NULL, *id = NULL;
    size_t len = 0;
    sf_kafka_opts ko = {0};
    const char *topics[2] = {topic, NULL};
    sf_kafka_producer *p = NULL;
    sf_event *ev = NULL;
    int rc = -1;

    if (reader_open(c, err) < 0)
        goto out;
    if (sf_event_encode(type, "scmflow/scmctl", NULL, NULL, data, &payload, &len, err) < 0)
        goto out;
    /* Our own id back from what we encoded: it is the answer's correlation id. */
    if (sf_event_decode(payload, len, &ev, err) < 0)
        goto out;
    if ((id = sf_strdup(sf_event_id(ev))) == NULL) {
        sf_error_set(err, SF_ERR_INTERNAL, 0, "out of memory");
        goto out;
    }
    ctl_topic(c, topic_suffix, topic, sizeof(topic));
    ko.brokers = sf_config_str(c->cfg, "SCMFLOW_KAFKA_BROKERS");
    ko.config_file = sf_config_str(c->cfg, "SCMFLOW_KAFKA_CONFIG");
    ko.client_id = "scmctl";
    if (sf_kafka_ensure_topics(&ko, topics, 4, 10000, err) < 0)
        goto out;
    if ((p = sf_kafka_producer_new(&ko, err)) == NULL)
        goto out;
    if (sf_kafka_produce_sync(p, topic, key, payload, len, NULL, 0, 15000, err) < 0)
        goto out;
    if (out_id != NULL) {
        *out_id = id;
        id = NULL;
    }
    rc = 0;
out:
    sf_kafka_producer_free(p);
    sf_event_free(ev);
    free(payload);
    free(id);
    return rc;
}

static bool type_in(const char *type, const char *const *types)
{
    if (types == NULL)
        return true;
    for (size_t i = 0; types[i] != NULL; i++)
        if (type != NULL && strcmp(type, types[i]) == 0)
            return true;
    return false;
}

int ctl_wait_answer(ctl_ctx *c, const char *correlationid, const char *const *final_types,
                    int64_t timeout_ms, ctl_event_fn on_event, void *ud,
                    struct sf_event **out, sf_error *err)
{
    int64_t deadline, started = sf_now_mono_ms();
    int64_t matched = 0;

    if (reader_open(c, err) < 0)
        return -1;
    if (timeout_ms <= 0)
        timeout_ms = c->timeout_ms;
    deadline = sf_now_mono_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - sf_now_mono_ms();
        rd_kafka_message_t *m;
        sf_event *ev = NULL;
        const char *corr;
        int fin = 0;

        if (left <= 0) {
            ctl_progress_done(c);
            return sf_error_set(err, SF_ERR_TRANSIENT, 0,
                                "no answer within %lld ms (is the worker running?)",
                                (long long)timeout_ms);
        }
        /* A spinner with the seconds waited until the worker reports
         * progress of its own (matching events drive the callback's bar). */
        if (matched == 0)
            ctl_progress(c, "waiting for the worker (s)", (sf_now_mono_ms() - started) / 1000, 0);
        m = rd_kafka_consumer_poll(c->reader, left < 250 ? (int)left : 250);
        if (m == NULL)
            continue;
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->len > 1024 * 1024 || sf_event_decode(m->payload, m->len, &ev, NULL) < 0) {
            rd_kafka_message_destroy(m);
            continue;
        }
        rd_kafka_message_destroy(m);
        corr = sf_event_correlationid(ev);
        if (corr == NULL || strcmp(corr, correlationid) != 0) {
            sf_event_free(ev);
            continue;
        }
        matched++;
        if (on_event != NULL && (fin = on_event(ud, ev)) < 0) {
            sf_event_free(ev);
            ev = NULL;
            ctl_progress_done(c);
            return sf_error_set(err, SF_ERR_REJECTED, 0, "stopped by a failure event");
        }
        if (fin == 1 || (final_types != NULL && type_in(sf_event_type(ev), final_types)) ||
            (final_types == NULL && on_event == NULL)) {
            ctl_progress_done(c);
            if (out != NULL)
                *out = ev;
            else
                sf_event_free(ev);
            return 0;
        }
        sf_event_free(ev);
    }
}

/* ---- secrets ---- */

#define CTL_SECRET_MAX 4096

static int read_line_fd(int fd, char **out, sf_error *err)
{
    sf_buf b;
    int rc = -1;

    sf_buf_init(&b, CTL_SECRET_MAX);
    for (;;) {
        char ch;
        ssize_t n = read(fd, &ch, 1);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            sf_error_set(err, SF_ERR_INVALID, 0, "could not read the password: %s", strerror(errno));
            goto out;
        }
        if (n == 0 || ch == '\n')
            break;
        if (sf_buf_appendc(&b, ch) < 0) {
            sf_error_set(err, SF_ERR_INVALID, 0, "password longer than %d bytes", CTL_SECRET_MAX);
            goto out;
        }
    }
    if (b.len > 0 && b.data[b.len - 1] == '\r')
        b.data[--b.len] = '\0';
    if (b.len == 0) {
        sf_error_set(err, SF_ERR_INVALID, 0, "empty password");
        goto out;
    }
    *out = sf_buf_detach(&b, NULL);
    rc = 0;
out:
    if (b.data != NULL)
        sf_memzero(b.data, b.cap);
    sf_buf_release(&b);
    return rc;
}

int ctl_read_secret(const char *prompt, const char *file, bool from_stdin, char **out,
                    sf_error *err)
{
    char *s = NULL;
    int rc = -1;

    if (file != NULL) {
        int fd = open(file, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
            return sf_error_set(err, SF_ERR_INVALID, 0, "could not open password file \"%s\": %s",
                                file, strerror(errno));
        rc = read_line_fd(fd, &s, err);
        close(fd);
    } else if (from_stdin) {
        rc = read_line_fd(STDIN_FILENO, &s, err);
    } else {
        int fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
        struct termios old, noecho;

        if (fd < 0)
            return sf_error_set(err, SF_ERR_INVALID, 0,
                                "no terminal to prompt for the password: use --password-file or --password-stdin");
        if (tcgetattr(fd, &old) < 0) {
            close(fd);
            return sf_error_set(err, SF_ERR_INVALID, 0, "could not read the terminal settings: %s",
                                strerror(errno));
        }
        noecho = old;
        noecho.c_lflag &= ~(tcflag_t)ECHO;
        if (write(fd, prompt, strlen(prompt)) < 0) {
            /* the prompt is cosmetic */
        }
        (void)tcsetattr(fd, TCSAFLUSH, &noecho);
        rc = read_line_fd(fd, &s, err);
        (void)tcsetattr(fd, TCSAFLUSH, &old);
        if (write(fd, "\n", 1) < 0) {
            /* cosmetic */
        }
        close(fd);
    }
    if (rc < 0)
        return -1;
    (void)sf_log_register_secret(s);
    *out = s;
    return 0;
}

/* ---- output ---- */

void ctl_report(const char *what, const sf_error *err)
{
    if (err == NULL || err->msg[0] == '\0') {
        fprintf(stderr, "scmctl %s: failed\n", what);
        return;
    }
    if (err->field[0] != '\0' && strstr(err->msg, err->field) == NULL)
        fprintf(stderr, "scmctl %s: %s (%s)\n", what, err->msg, err->field);
    else
        fprintf(stderr, "scmctl %s: %s\n", what, err->msg);
}

struct ctl_table {
    size_t ncols;
    size_t nrows, caprows;
    char **cells; /* nrows+1 rows (row 0 = headers) of ncols */
};

static int table_row(ctl_table *t, const char *const *cells)
{
    if (t->nrows + 1 >= t->caprows) {
        size_t cap = t->caprows ? t->caprows * 2 : 16;
        char **n = realloc(t->cells, cap * t->ncols * sizeof(*n));

        if (n == NULL)
            return -1;
        t->cells = n;
        t->caprows = cap;
    }
    for (size_t i = 0; i < t->ncols; i++) {
        char *s = sf_strdup(cells[i] ? cells[i] : "-");

        if (s == NULL) {
            for (size_t k = 0; k < i; k++)
                free(t->cells[t->nrows * t->ncols + k]);
            return -1;
        }
        t->cells[t->nrows * t->ncols + i] = s;
    }
    t->nrows++;
    return 0;
}

ctl_table *ctl_table_new(size_t ncols, const char *const *headers)
{
    ctl_table *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return NULL;
    t->ncols = ncols;
    if (table_row(t, headers) < 0) {
        ctl_table_free(t);
        return NULL;
    }
    return t;
}

int ctl_table_add(ctl_table *t, const char *const *cells)
{
    return table_row(t, cells);
}

void ctl_table_print(const ctl_table *t, FILE *out)
{
    size_t *w = calloc(t->ncols, sizeof(*w));

    if (w == NULL)
        return;
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t i = 0; i < t->ncols; i++) {
            size_t l = strlen(t->cells[r * t->ncols + i]);
            if (l > w[i])
                w[i] = l;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t i = 0; i < t->ncols; i++) {
            const char *s = t->cells[r * t->ncols + i];

            if (i + 1 == t->ncols)
                fprintf(out, "%s", s);
            else
                fprintf(out, "%-*s  ", (int)w[i], s);
        }
        fputc('\n', out);
    }
    free(w);
}

void ctl_table_free(ctl_table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t);
}

void ctl_progress(const ctl_ctx *c_in, const char *label, int64_t done, int64_t total)
{
    /* The context tracks the bar's state; progress output is cosmetic and
     * takes a const context so callers can use it from read-only paths. */
    ctl_ctx *c = (ctl_ctx *)(uintptr_t)c_in;
    int64_t now = sf_now_mono_ms();

    if (c == NULL || c->quiet)
        return;
    if (!c->tty) {
        if (now - c->last_progress_ms < 2000)
            return;
        c->last_progress_ms = now;
        if (total > 0)
            fprintf(stderr, "%s: %lld/%lld\n", label, (long long)done, (long long)total);
        else
            fprintf(stderr, "%s: %lld\n", label, (long long)done);
        return;
    }
    if (total > 0) {
        char bar[31];
        int64_t pct = done >= total ? 100 : done * 100 / total;
        int fill = (int)(pct * 30 / 100);

        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : ' ';
        bar[30] = '\0';
        fprintf(stderr, "\r%s [%s] %3lld%% %lld/%lld", label, bar, (long long)pct,
                (long long)done, (long long)total);
    } else {
        static const char spin[] = "|/-\\";
        fprintf(stderr, "\r%s %c %lld", label, spin[(now / 250) % 4], (long long)done);
    }
    fflush(stderr);
    c->progress_open = true;
}

void ctl_progress_done(const ctl_ctx *c_in)
{
    ctl_ctx *c = (ctl_ctx *)(uintptr_t)c_in;

    if (c != NULL && c->progress_open) {
        fputc('\n', stderr);
        c->progress_open = false;
    }
}

void ctl_print_json(const cJSON *v)
{
    char *s = cJSON_Print(v);

    if (s != NULL) {
        fputs(s, stdout);
        fputc('\n', stdout);
        cJSON_free(s);
    }
}
