/*
 * kafka-devbroker - the dev/test Kafka broker: librdkafka's in-memory mock
 * cluster (rdkafka_mock.h) owned by this process and reached by every worker
 * over TCP exactly as it reaches Apache Kafka.
 *
 * Fault injection on the mock cluster only works from the owning process, so
 * this program exposes it over a tiny HTTP control API (libmicrohttpd):
 *   POST /broker/{id}/down | /broker/{id}/up
 *   POST /partition/leader?topic=T&partition=P&broker=B
 *   POST /errors?api=Produce|<ApiKey>&code=<rd_kafka_resp_err_t>&count=N
 *   POST /errors/clear?api=...
 *   POST /rtt?broker=B&ms=N
 *   POST /topic?name=T&partitions=N
 *   GET  /health
 * Answers are JSON; bad requests are 400 {"error": "..."}.
 *
 * Runs until SIGTERM/SIGINT, then destroys the cluster and exits 0.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <microhttpd.h>

#include "sf_util.h"

/* Largest body we accept on the control API (requests carry no body). */
#define CTL_MAX_BODY 4096

typedef struct devbroker {
    rd_kafka_t *rk;
    rd_kafka_mock_cluster_t *mc;
    int broker_cnt;
    int partitions;
} devbroker;

static const struct {
    const char *name;
    int16_t key;
} api_keys[] = {
    {"Produce", 0},         {"Fetch", 1},           {"ListOffsets", 2},
    {"Metadata", 3},        {"OffsetCommit", 8},    {"OffsetFetch", 9},
    {"FindCoordinator", 10}, {"JoinGroup", 11},      {"Heartbeat", 12},
    {"LeaveGroup", 13},     {"SyncGroup", 14},      {"DescribeGroups", 15},
    {"ListGroups", 16},     {"SaslHandshake", 17},  {"ApiVersions", 18},
    {"CreateTopics", 19},   {"DeleteTopics", 20},   {"InitProducerId", 22},
    {"AddPartitionsToTxn", 24}, {"AddOffsetsToTxn", 25}, {"EndTxn", 26},
    {"TxnOffsetCommit", 28},
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kafka-devbroker [options]\n"
            "  --brokers N               number of mock brokers (default 3)\n"
            "  --partitions N            partitions of topics created with --topic (default 4;\n"
            "                            auto-created topics always get 4, a mock limitation)\n"
            "  --topic NAME              create topic NAME at start (repeatable)\n"
            "  --bootstrap-file FILE     write the bootstrap list to FILE\n"
            "  --control-listen H:P      control API address (default 127.0.0.1:0 = pick)\n"
            "  --control-port-file FILE  write the control API port to FILE\n"
            "  --help, --version\n");
}

static int write_file_atomic(const char *path, const char *text)
{
    char tmp[4096];
    FILE *f;
    if (sf_snprintf(tmp, sizeof(tmp), "%s.tmp", path) < 0)
        return -1;
    f = fopen(tmp, "w");
    if (!f)
        return -1;
    if (fputs(text, f) < 0 || fputc('\n', f) < 0) {
        fclose(f);
        return -1;
    }
    if (fclose(f) != 0)
        return -1;
    return rename(tmp, path);
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *fmt, ...)
{
    char body[1024];
    va_list ap;
    struct MHD_Response *r;
    enum MHD_Result ret;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(body, sizeof(body), fmt, ap);
    va_end(ap);
    if (n < 0)
        body[0] = '\0';
    r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "application/json");
    ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Only names made of safe characters are echoed back, so JSON answers need
 * no escaping. */
static int safe_name(const char *s)
{
    if (!s || !*s || strlen(s) > 249)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || *s == '.' || *s == '_' || *s == '-'))
            return 0;
    return 1;
}

static int arg_int(struct MHD_Connection *conn, const char *name, int64_t min,
                   int64_t max, int64_t *out)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, name);
    if (!v)
        return -1;
    return sf_str_to_i64(v, min, max, out);
}

static int api_key_of(const char *s, int16_t *out)
{
    int64_t v;
    size_t i;
    if (!s)
        return -1;
    for (i = 0; i < SF_ARRAY_LEN(api_keys); i++) {
        if (strcmp(s, api_keys[i].name) == 0) {
            *out = api_keys[i].key;
            return 0;
        }
    }
    if (sf_str_to_i64(s, 0, 100, &v) == 0) {
        *out = (int16_t)v;
        return 0;
    }
    return -1;
}

static enum MHD_Result mock_result(struct MHD_Connection *conn, rd_kafka_resp_err_t e)
{
    if (e)
        return reply(conn, 400, "{\"error\":\"%s\"}", rd_kafka_err2name(e));
    return reply(conn, 200, "{\"ok\":true}");
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version,
                              const char *upload_data, size_t *upload_data_size,
                              void **con_cls)
{
    static int first_call_marker;
    devbroker *db = cls;
    int64_t id, p, n;
    int is_post = strcmp(method, "POST") == 0;

    (void)version;
    (void)upload_data;
    /* libmicrohttpd calls once for the headers, then for each body chunk,
     * then once more with an empty chunk: act on the last call. */
    if (*con_cls == NULL) {
        *con_cls = &first_call_marker;
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        *upload_data_size = 0; /* bodies are ignored */
        return MHD_YES;
    }

    if (strcmp(url, "/health") == 0)
        return reply(conn, 200, "{\"ok\":true,\"brokers\":%d,\"bootstrap\":\"%s\"}",
                     db->broker_cnt, rd_kafka_mock_cluster_bootstraps(db->mc));
    if (!is_post)
        return reply(conn, strncmp(url, "/broker/", 8) == 0 ? 405 : 404,
                     "{\"error\":\"use POST on %s\"}",
                     safe_name(url + 1) ? url + 1 : "this path");

    if (strncmp(url, "/broker/", 8) == 0) {
        char idbuf[16];
        const char *slash = strchr(url + 8, '/');
        size_t idlen = slash ? (size_t)(slash - (url + 8)) : 0;
        if (!slash || idlen == 0 || idlen >= sizeof(idbuf))
            return reply(conn, 400, "{\"error\":\"expected /broker/{id}/down|up\"}");
        memcpy(idbuf, url + 8, idlen);
        idbuf[idlen] = '\0';
        if (sf_str_to_i64(idbuf, 1, db->broker_cnt, &id) < 0)
            return reply(conn, 400, "{\"error\":\"broker id must be 1..%d\"}", db->broker_cnt);
        if (strcmp(slash, "/down") == 0)
            return mock_result(conn, rd_kafka_mock_broker_set_down(db->mc, (int32_t)id));
        if (strcmp(slash, "/up") == 0)
            return mock_result(conn, rd_kafka_mock_broker_set_up(db->mc, (int32_t)id));
        return reply(conn, 400, "{\"error\":\"expected /broker/{id}/down|up\"}");
    }
    if (strcmp(url, "/partition/leader") == 0) {
        const char *topic = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "topic");
        if (!safe_name(topic))
            return reply(conn, 400, "{\"error\":\"topic missing or invalid\"}");
        if (arg_int(conn, "partition", 0, 100000, &p) < 0)
            return reply(conn, 400, "{\"error\":\"partition missing or invalid\"}");
        /* -1 = no leader (partition unavailable) */
        if (arg_int(conn, "broker", -1, db->broker_cnt, &id) < 0)
            return reply(conn, 400, "{\"error\":\"broker must be -1..%d\"}", db->broker_cnt);
        return mock_result(conn, rd_kafka_mock_partition_set_leader(db->mc, topic, (int32_t)p,
                                                                    (int32_t)id));
    }
    if (strcmp(url, "/errors") == 0 || strcmp(url, "/errors/clear") == 0) {
        int16_t key;
        size_t i;
        rd_kafka_resp_err_t *errs;
        if (api_key_of(MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "api"), &key) < 0)
            return reply(conn, 400, "{\"error\":\"api missing or unknown (name like Produce or ApiKey number)\"}");
        if (strcmp(url, "/errors/clear") == 0) {
            rd_kafka_mock_clear_request_errors(db->mc, key);
            return reply(conn, 200, "{\"ok\":true}");
        }
        if (arg_int(conn, "code", -200, 200, &id) < 0)
            return reply(conn, 400, "{\"error\":\"code missing or invalid (rd_kafka_resp_err_t)\"}");
        if (!MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "count"))
            n = 1;
        else if (arg_int(conn, "count", 1, 10000, &n) < 0)
            return reply(conn, 400, "{\"error\":\"count must be 1..10000\"}");
        errs = calloc((size_t)n, sizeof(*errs));
        if (!errs)
            return reply(conn, 500, "{\"error\":\"out of memory\"}");
        for (i = 0; i < (size_t)n; i++)
            errs[i] = (rd_kafka_resp_err_t)id;
        rd_kafka_mock_push_request_errors_array(db->mc, key, (size_t)n, errs);
        free(errs);
        return reply(conn, 200, "{\"ok\":true,\"api\":%d,\"code\":%" PRId64 ",\"count\":%" PRId64 "}",
                     key, id, n);
    }
    if (strcmp(url, "/rtt") == 0) {
        if (arg_int(conn, "broker", 1, db->broker_cnt, &id) < 0)
            return reply(conn, 400, "{\"error\":\"broker must be 1..%d\"}", db->broker_cnt);
        if (arg_int(conn, "ms", 0, 600000, &n) < 0)
            return reply(conn, 400, "{\"error\":\"ms must be 0..600000\"}");
        return mock_result(conn, rd_kafka_mock_broker_set_rtt(db->mc, (int32_t)id, (int)n));
    }
    if (strcmp(url, "/topic") == 0) {
        const char *name = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "name");
        if (!safe_name(name))
            return reply(conn, 400, "{\"error\":\"name missing or invalid\"}");
        if (!MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "partitions"))
            p = db->partitions;
        else if (arg_int(conn, "partitions", 1, 1000, &p) < 0)
            return reply(conn, 400, "{\"error\":\"partitions must be 1..1000\"}");
        return mock_result(conn, rd_kafka_mock_topic_create(db->mc, name, (int)p,
                                                            db->broker_cnt < 3 ? db->broker_cnt : 3));
    }
    return reply(conn, 404, "{\"error\":\"not found\"}");
}

static int parse_listen(const char *s, struct sockaddr_in *sa)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    int64_t port;
    size_t hl;

    if (!colon)
        return -1;
    hl = (size_t)(colon - s);
    if (hl == 0 || hl >= sizeof(host))
        return -1;
    memcpy(host, s, hl);
    host[hl] = '\0';
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    if (sf_str_to_i64(colon + 1, 0, 65535, &port) < 0)
        return -1;
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

int main(int argc, char **argv)
{
    devbroker db = {.broker_cnt = 3, .partitions = 4};
    const char *bootstrap_file = NULL, *port_file = NULL, *listen = "127.0.0.1:0";
    const char *topics[64];
    size_t ntopics = 0;
    struct sockaddr_in sa;
    struct MHD_Daemon *mhd = NULL;
    const union MHD_DaemonInfo *info;
    rd_kafka_conf_t *conf;
    char errstr[512], portbuf[16];
    sigset_t sigs;
    int sig, i, rc = 1;
    int64_t v;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--version") == 0) {
            printf("kafka-devbroker %s (librdkafka %s)\n", SCMFLOW_VERSION, rd_kafka_version_str());
            return 0;
        } else if (!val) {
            fprintf(stderr, "kafka-devbroker: %s needs a value\n", a);
            usage(stderr);
            return 2;
        } else if (strcmp(a, "--brokers") == 0) {
            if (sf_str_to_i64(val, 1, 16, &v) < 0) {
                fprintf(stderr, "kafka-devbroker: --brokers must be 1..16\n");
                return 2;
            }
            db.broker_cnt = (int)v;
        } else if (strcmp(a, "--partitions") == 0) {
            if (sf_str_to_i64(val, 1, 1000, &v) < 0) {
                fprintf(stderr, "kafka-devbroker: --partitions must be 1..1000\n");
                return 2;
            }
            db.partitions = (int)v;
        } else if (strcmp(a, "--topic") == 0) {
            if (!safe_name(val) || ntopics >= SF_ARRAY_LEN(topics)) {
                fprintf(stderr, "kafka-devbroker: bad or too many --topic\n");
                return 2;
            }
            topics[ntopics++] = val;
        } else if (strcmp(a, "--bootstrap-file") == 0) {
            bootstrap_file = val;
        } else if (strcmp(a, "--control-listen") == 0) {
            listen = val;
        } else if (strcmp(a, "--control-port-file") == 0) {
            port_file = val;
        } else {
            fprintf(stderr, "kafka-devbroker: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
        i++;
    }
    if (parse_listen(listen, &sa) < 0) {
        fprintf(stderr, "kafka-devbroker: bad --control-listen \"%s\" (want IPv4:port)\n", listen);
        return 2;
    }

    /* Block the stop signals before any thread exists so every librdkafka
     * and libmicrohttpd thread inherits the mask and sigwait() gets them. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "log_level", "4", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "kafka-devbroker: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    /* The dummy producer only owns the mock cluster; it never produces. */
    db.rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!db.rk) {
        fprintf(stderr, "kafka-devbroker: could not create handle: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    db.mc = rd_kafka_mock_cluster_new(db.rk, db.broker_cnt);
    if (!db.mc) {
        fprintf(stderr, "kafka-devbroker: could not create mock cluster\n");
        goto out;
    }
    for (size_t t = 0; t < ntopics; t++) {
        rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(
            db.mc, topics[t], db.partitions, db.broker_cnt < 3 ? db.broker_cnt : 3);
        if (e) {
            fprintf(stderr, "kafka-devbroker: could not create topic \"%s\": %s\n", topics[t],
                    rd_kafka_err2str(e));
            goto out;
        }
    }

    mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                           handle, &db, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                           MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                           MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                           MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(CTL_MAX_BODY * 8),
                           MHD_OPTION_END);
    if (!mhd) {
        fprintf(stderr, "kafka-devbroker: could not listen on %s: %s\n", listen, strerror(errno));
        goto out;
    }
    info = MHD_get_daemon_info(mhd, MHD_DAEMON_INFO_BIND_PORT);
    if (!info || info->port == 0) {
        fprintf(stderr, "kafka-devbroker: could not read the control port\n");
        goto out;
    }
    snprintf(portbuf, sizeof(portbuf), "%u", (unsigned)info->port);

    /* The bootstrap file is written last-but-one and the port file last:
     * a waiter that sees the port file can rely on both. */
    if (bootstrap_file &&
        write_file_atomic(bootstrap_file, rd_kafka_mock_cluster_bootstraps(db.mc)) < 0) {
        fprintf(stderr, "kafka-devbroker: could not write \"%s\": %s\n", bootstrap_file,
                strerror(errno));
        goto out;
    }
    if (port_file && write_file_atomic(port_file, portbuf) < 0) {
        fprintf(stderr, "kafka-devbroker: could not write \"%s\": %s\n", port_file,
                strerror(errno));
        goto out;
    }
    printf("kafka-devbroker bootstrap=%s control=http://%s:%s\n",
           rd_kafka_mock_cluster_bootstraps(db.mc), inet_ntoa(sa.sin_addr), portbuf);
    fflush(stdout);

    for (;;) {
        if (sigwait(&sigs, &sig) == 0 && (sig == SIGTERM || sig == SIGINT))
            break;
    }
    fprintf(stderr, "kafka-devbroker: signal %d, stopping\n", sig);
    rc = 0;
out:
    if (mhd)
        MHD_stop_daemon(mhd);
    if (db.mc)
        rd_kafka_mock_cluster_destroy(db.mc);
    rd_kafka_destroy(db.rk);
    return rc;
}
