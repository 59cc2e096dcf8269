/*
 * sf_config.h - table-driven settings. Each binary declares a table of
 * sf_cfg_def (name = environment variable, type, default, bounds, help);
 * the same table parses, validates, prints --help and documents.
 *
 * Sources, later ones win: built-in default < file < environment < --set
 * NAME=VALUE on the command line. The file is named by --config FILE or
 * SCMFLOW_CONFIG_FILE and holds NAME=VALUE lines ('#' comments, blank lines,
 * optional surrounding double quotes).
 */
#ifndef SF_CONFIG_H
#define SF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sf_error.h"

typedef enum sf_cfg_type {
    SF_CFG_STRING,
    SF_CFG_INT,      /* int64 within [min, max] */
    SF_CFG_DURATION, /* "30s", "7d", ...; stored in ms within [min, max] */
    SF_CFG_BOOL,     /* true/false/1/0/yes/no/on/off */
    SF_CFG_ENUM,     /* one of choices, '|'-separated */
    SF_CFG_ADDR,     /* host:port (port 0..65535), "" = off */
} sf_cfg_type;

typedef struct sf_cfg_def {
    const char *name;    /* environment variable, e.g. "SCMFLOW_DATABASE_URL" */
    sf_cfg_type type;
    const char *def;     /* default as text; NULL = required */
    int64_t min, max;    /* INT: bounds; DURATION: bounds in ms (max 0 = no upper bound) */
    const char *choices; /* ENUM: "debug|info|warn|error" */
    const char *help;
    bool secret;         /* never printed (values are masked in dumps) */
} sf_cfg_def;

/* Settings every worker shares (DESIGN.md "Configuration"). */
extern const sf_cfg_def sf_cfg_common[];
extern const size_t sf_cfg_common_len;

typedef struct sf_config sf_config;

/* Build a config from up to two tables (the second may be NULL). */
sf_config *sf_config_new(const sf_cfg_def *a, size_t na, const sf_cfg_def *b, size_t nb);
void sf_config_free(sf_config *cfg);

/*
 * Parse argv (--config FILE, --set NAME=VALUE, --help, --version and the
 * binary's own flags are left to the caller: unknown arguments are returned
 * in *rest / *nrest, which point into argv), the file and the environment,
 * then validate everything. On error, err names the setting and what is
 * allowed, e.g. 'SCMFLOW_LOG_LEVEL: "loud" is not one of debug|info|warn|error'.
 * Returns 0, or -1.
 */
int sf_config_load(sf_config *cfg, int argc, char **argv, sf_error *err);
/* Load from an explicit environment (NULL-terminated "NAME=VALUE" strings,
 * for tests) instead of the process environment. */
int sf_config_load_env(sf_config *cfg, const char *const *envp, const char *file, sf_error *err);
/* Set one value (as if from the command line), validated. */
int sf_config_set(sf_config *cfg, const char *name, const char *value, sf_error *err);

const char *sf_config_str(const sf_config *cfg, const char *name);
int64_t sf_config_int(const sf_config *cfg, const char *name);
int64_t sf_config_duration_ms(const sf_config *cfg, const char *name);
bool sf_config_bool(const sf_config *cfg, const char *name);

/* --help text from the tables: one block per setting. */
void sf_config_print_help(const sf_config *cfg, FILE *out);
/* NAME=value lines for every setting, secrets masked. */
void sf_config_dump(const sf_config *cfg, FILE *out);

#endif
