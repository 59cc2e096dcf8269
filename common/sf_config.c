#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sf_config.h"
#include "sf_util.h"

extern char **environ;

#define SF_CFG_FILE_MAX (1024 * 1024)
#define SF_CFG_VALUE_MAX 4096

const sf_cfg_def sf_cfg_common[] = {
    {"SCMFLOW_DATABASE_URL", SF_CFG_STRING, "postgresql://localhost/scmflow", 0, 0, NULL,
     "libpq connection string", false},
    {"SCMFLOW_KAFKA_BROKERS", SF_CFG_STRING, "localhost:9092", 0, 0, NULL,
     "Kafka bootstrap servers (comma-separated host:port)", false},
    {"SCMFLOW_KAFKA_CONFIG", SF_CFG_STRING, "", 0, 0, NULL,
     "optional file of extra librdkafka properties (key=value lines: SASL, TLS)", false},
    {"SCMFLOW_TOPIC_PREFIX", SF_CFG_STRING, "scm.", 0, 0, NULL,
     "prefix of every topic name", false},
    {"SCMFLOW_TOPIC_PARTITIONS", SF_CFG_INT, "4", 1, 1024, NULL,
     "partitions of each topic created at start when missing", false},
    {"SCMFLOW_SCM_BASE_URL", SF_CFG_STRING, "https://cert-manager.com/api", 0, 0, NULL,
     "SCM REST API base URL", false},
    {"SCMFLOW_MASTER_KEY_FILE", SF_CFG_STRING, NULL, 0, 0, NULL,
     "file holding the 32-byte master key for sealing secrets (required)", false},
    {"SCMFLOW_MASTER_KEY_OLD_FILES", SF_CFG_STRING, "", 0, 0, NULL,
     "comma-separated files of older master keys, used only to unseal (key rotation)", false},
    {"SCMFLOW_HTTP_LISTEN", SF_CFG_ADDR, "127.0.0.1:0", 0, 0, NULL,
     "address of /metrics, /healthz, /readyz (port 0 = off)", false},
    {"SCMFLOW_LOG_LEVEL", SF_CFG_ENUM, "info", 0, 0, "debug|info|warn|error",
     "lowest level written", false},
    {"SCMFLOW_LOG_FORMAT", SF_CFG_ENUM, "json", 0, 0, "json|text",
     "log line format", false},
};
const size_t sf_cfg_common_len = SF_ARRAY_LEN(sf_cfg_common);

typedef struct cfg_entry {
    const sf_cfg_def *def;
    char *value;    /* validated text, or NULL when unset and no default */
    int64_t num;    /* INT, DURATION (ms), BOOL (0/1) */
} cfg_entry;

struct sf_config {
    cfg_entry *e;
    size_t n;
};

sf_config *sf_config_new(const sf_cfg_def *a, size_t na, const sf_cfg_def *b, size_t nb)
{
    sf_config *cfg = calloc(1, sizeof(*cfg));

    if (cfg == NULL)
        return NULL;
    cfg->e = calloc(na + nb + 1, sizeof(cfg_entry));
    if (cfg->e == NULL) {
        free(cfg);
        return NULL;
    }
    for (size_t i = 0; i < na; i++)
        cfg->e[cfg->n++].def = &a[i];
    for (size_t i = 0; b && i < nb; i++)
        cfg->e[cfg->n++].def = &b[i];
    return cfg;
}

void sf_config_free(sf_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->n; i++) {
        if (cfg->e[i].value) {
            sf_memzero(cfg->e[i].value, strlen(cfg->e[i].value));
            free(cfg->e[i].value);
        }
    }
    free(cfg->e);
    free(cfg);
}

static cfg_entry *find(const sf_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n; i++)
        if (strcmp(cfg->e[i].def->name, name) == 0)
            return &cfg->e[i];
    return NULL;
}

static int parse_bool(const char *v, int64_t *out)
{
    static const char *yes[] = {"1", "true", "yes", "on"};
    static const char *no[] = {"0", "false", "no", "off"};

    for (size_t i = 0; i < 4; i++) {
        if (strcmp(v, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcmp(v, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

static int choice_ok(const char *choices, const char *v)
{
    size_t vl = strlen(v);
    const char *p = choices;

    while (p && *p) {
        const char *bar = strchr(p, '|');
        size_t l = bar ? (size_t)(bar - p) : strlen(p);

        if (l == vl && strncmp(p, v, l) == 0)
            return 1;
        p = bar ? bar + 1 : NULL;
    }
    return 0;
}

static int parse_addr(const char *v)
{
    const char *colon = strrchr(v, ':');
    int64_t port;

    if (*v == '\0')
        return 0;
    if (colon == NULL || colon == v)
        return -1;
    return sf_str_to_i64(colon + 1, 0, 65535, &port);
}

/* Validate value against the entry's definition and store it. */
static int entry_set(cfg_entry *en, const char *v, const char *origin, sf_error *err)
{
    const sf_cfg_def *d = en->def;
    int64_t num = 0;
    char *copy;
    /* A secret's value never goes into an error (errors get logged). */
    const char *shown = d->secret ? "***" : v;

    if (strlen(v) > SF_CFG_VALUE_MAX)
        return sf_error_field(err, d->name, "%s: value from %s is longer than %d bytes",
                              d->name, origin, SF_CFG_VALUE_MAX);
    switch (d->type) {
    case SF_CFG_STRING:
        break;
    case SF_CFG_INT:
        if (sf_str_to_i64(v, d->min, d->max, &num) < 0)
            return sf_error_field(err, d->name,
                                  "%s: \"%s\" (from %s) is not a whole number from %lld to %lld",
                                  d->name, shown, origin,
                                  (long long)d->min, (long long)d->max);
        break;
    case SF_CFG_DURATION:
        /* max 0 means no upper bound (a table giving only a minimum, e.g.
         * {1000, 0}, must not reject every duration above zero). */
        if (sf_parse_duration_ms(v, &num) < 0 || num < d->min || (d->max > 0 && num > d->max)) {
            if (d->max > 0)
                return sf_error_field(err, d->name,
                                      "%s: \"%s\" (from %s) is not a duration from %lldms to %lldms "
                                      "(write e.g. 500ms, 30s, 5m, 2h, 7d)",
                                      d->name, shown, origin, (long long)d->min, (long long)d->max);
            return sf_error_field(err, d->name,
                                  "%s: \"%s\" (from %s) is not a duration of at least %lldms "
                                  "(write e.g. 500ms, 30s, 5m, 2h, 7d)",
                                  d->name, shown, origin, (long long)d->min);
        }
        break;
    case SF_CFG_BOOL:
        if (parse_bool(v, &num) < 0)
            return sf_error_field(err, d->name,
                                  "%s: \"%s\" (from %s) is not a boolean (true/false, 1/0, yes/no, on/off)",
                                  d->name, shown, origin);
        break;
    case SF_CFG_ENUM:
        if (!choice_ok(d->choices, v))
            return sf_error_field(err, d->name, "%s: \"%s\" (from %s) is not one of %s",
                                  d->name, shown, origin, d->choices);
        break;
    case SF_CFG_ADDR:
        if (parse_addr(v) < 0)
            return sf_error_field(err, d->name,
                                  "%s: \"%s\" (from %s) is not host:port with a port from 0 to 65535",
                                  d->name, shown, origin);
        break;
    }
    copy = strdup(v);
    if (copy == NULL)
        return sf_error_set(err, SF_ERR_INTERNAL, ENOMEM, "out of memory");
    if (en->value) {
        sf_memzero(en->value, strlen(en->value));
        free(en->value);
    }
    en->value = copy;
    en->num = num;
    return 0;
}

int sf_config_set(sf_config *cfg, const char *name, const char *value, sf_error *err)
{
    cfg_entry *en = find(cfg, name);

    if (en == NULL)
        return sf_error_field(err, name, "%s: unknown setting", name);
    return entry_set(en, value, "the command line", err);
}

static void strip(char **s)
{
    char *p = *s;
    size_t n;

    while (*p == ' ' || *p == '\t')
        p++;
    n = strlen(p);
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r' || p[n - 1] == '\n'))
        p[--n] = '\0';
    if (n >= 2 && p[0] == '"' && p[n - 1] == '"') {
        p[n - 1] = '\0';
        p++;
    }
    *s = p;
}

static int load_file(sf_config *cfg, const char *path, sf_error *err)
{
    char *text = NULL, *save = NULL, *line;
    size_t len;
    int lineno = 0, rc = -1;

    if (sf_read_file(path, SF_CFG_FILE_MAX, &text, &len) < 0)
        return sf_error_field(err, "SCMFLOW_CONFIG_FILE", "could not read configuration file \"%s\": %s",
                              path, strerror(errno));
    /* Split by hand: strtok_r would skip blank lines and make the line
     * numbers in error messages wrong. */
    for (line = text; line; line = save) {
        char *name = line, *eq, *value;
        cfg_entry *en;
        char origin[300];

        save = strchr(line, '\n');
        if (save)
            *save++ = '\0';
        lineno++;
        strip(&name);
        if (*name == '\0' || *name == '#')
            continue;
        eq = strchr(name, '=');
        if (eq == NULL) {
            sf_error_field(err, "SCMFLOW_CONFIG_FILE", "%s:%d: expected NAME=VALUE", path, lineno);
            goto out;
        }
        *eq = '\0';
        value = eq + 1;
        strip(&name);
        strip(&value);
        en = find(cfg, name);
        if (en == NULL) {
            sf_error_field(err, name, "%s:%d: unknown setting %s", path, lineno, name);
            goto out;
        }
        snprintf(origin, sizeof(origin), "%s:%d", path, lineno);
        if (entry_set(en, value, origin, err) < 0)
            goto out;
    }
    rc = 0;
out:
    if (text) {
        sf_memzero(text, len);
        free(text);
    }
    return rc;
}

static const char *env_lookup(const char *const *envp, const char *name)
{
    size_t nl = strlen(name);

    for (; envp && *envp; envp++)
        if (strncmp(*envp, name, nl) == 0 && (*envp)[nl] == '=')
            return *envp + nl + 1;
    return NULL;
}

static int finish(sf_config *cfg, const char *const *envp, const char *file, sf_error *err)
{
    /* Defaults first, then file, then environment. */
    for (size_t i = 0; i < cfg->n; i++) {
        cfg_entry *en = &cfg->e[i];

        if (en->value == NULL && en->def->def != NULL &&
            entry_set(en, en->def->def, "the default", err) < 0)
            return -1;
    }
    if (file && *file && load_file(cfg, file, err) < 0)
        return -1;
    for (size_t i = 0; i < cfg->n; i++) {
        const char *v = env_lookup(envp, cfg->e[i].def->name);

        if (v && entry_set(&cfg->e[i], v, "the environment", err) < 0)
            return -1;
    }
    return 0;
}

int sf_config_load_env(sf_config *cfg, const char *const *envp, const char *file, sf_error *err)
{
    if (finish(cfg, envp, file, err) < 0)
        return -1;
    for (size_t i = 0; i < cfg->n; i++)
        if (cfg->e[i].value == NULL)
            return sf_error_field(err, cfg->e[i].def->name, "%s: required but not set (%s)",
                                  cfg->e[i].def->name, cfg->e[i].def->help);
    return 0;
}

int sf_config_load(sf_config *cfg, int argc, char **argv, sf_error *err)
{
    const char *file = getenv("SCMFLOW_CONFIG_FILE");

    /* --config FILE is looked for first so the file loads before --set. */
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            file = argv[i + 1];
    if (finish(cfg, (const char *const *)environ, file, err) < 0)
        return -1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--set") == 0) {
            char name[128];
            const char *eq;

            if (i + 1 >= argc || (eq = strchr(argv[i + 1], '=')) == NULL ||
                (size_t)(eq - argv[i + 1]) >= sizeof(name))
                return sf_error_field(err, "--set", "--set takes NAME=VALUE");
            memcpy(name, argv[i + 1], (size_t)(eq - argv[i + 1]));
            name[eq - argv[i + 1]] = '\0';
            if (sf_config_set(cfg, name, eq + 1, err) < 0)
                return -1;
            i++;
        }
    }
    for (size_t i = 0; i < cfg->n; i++)
        if (cfg->e[i].value == NULL)
            return sf_error_field(err, cfg->e[i].def->name, "%s: required but not set (%s)",
                                  cfg->e[i].def->name, cfg->e[i].def->help);
    return 0;
}

const char *sf_config_str(const sf_config *cfg, const char *name)
{
    cfg_entry *en = find(cfg, name);

    return en && en->value ? en->value : "";
}

int64_t sf_config_int(const sf_config *cfg, const char *name)
{
    cfg_entry *en = find(cfg, name);

    return en ? en->num : 0;
}

int64_t sf_config_duration_ms(const sf_config *cfg, const char *name)
{
    return sf_config_int(cfg, name);
}

bool sf_config_bool(const sf_config *cfg, const char *name)
{
    return sf_config_int(cfg, name) != 0;
}

static const char *type_name(const sf_cfg_def *d)
{
    switch (d->type) {
    case SF_CFG_STRING: return "string";
    case SF_CFG_INT: return "integer";
    case SF_CFG_DURATION: return "duration";
    case SF_CFG_BOOL: return "boolean";
    case SF_CFG_ENUM: return d->choices;
    case SF_CFG_ADDR: return "host:port";
    }
    return "?";
}

void sf_config_print_help(const sf_config *cfg, FILE *out)
{
    fprintf(out, "Settings (environment variables; a file named by --config FILE or\n"
                 "SCMFLOW_CONFIG_FILE may set the same names; --set NAME=VALUE overrides):\n");
    for (size_t i = 0; i < cfg->n; i++) {
        const sf_cfg_def *d = cfg->e[i].def;

        fprintf(out, "  %-34s %s\n      %s", d->name, type_name(d), d->help);
        if (d->def == NULL)
            fprintf(out, " [required]");
        else if (d->secret)
            fprintf(out, " [default: ***]");
        else
            fprintf(out, " [default: \"%s\"]", d->def);
        if (d->type == SF_CFG_INT)
            fprintf(out, " [%lld..%lld]", (long long)d->min, (long long)d->max);
        fputc('\n', out);
    }
}

void sf_config_dump(const sf_config *cfg, FILE *out)
{
    for (size_t i = 0; i < cfg->n; i++) {
        const cfg_entry *en = &cfg->e[i];

        fprintf(out, "%s=%s\n", en->def->name,
                en->def->secret ? "***" : (en->value ? en->value : ""));
    }
}
