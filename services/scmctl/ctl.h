/*
 * ctl.h - scmctl, the operator's command line: the subcommand entry points
 * and the helpers they share (ctl_common.c).
 *
 * One binary, one file per area: services/scmctl/cmd_<area>.c defines
 * `int ctl_cmd_<name>(int argc, char **argv)` (argv[0] = the subcommand
 * name). The declarations below are weak so scmctl links before a file
 * exists; main.c prints "not available in this build" for a missing one.
 * Every subcommand handles --help (ctl_wants_help) and returns an exit
 * status: CTL_EXIT_OK, CTL_EXIT_FAIL (the operation failed or timed out),
 * CTL_EXIT_USAGE (bad option; print a one-line reason + "see --help").
 *
 * Common options, accepted by every subcommand anywhere on its command line
 * (ctl_common_opt recognises them; ctl_ctx_new applies them):
 *   --config FILE       settings file (NAME=VALUE lines, as for workers)
 *   --set NAME=VALUE    override one setting
 *   --account NAME      SCM account to use (default: the default account)
 *   --json              machine-readable output on stdout
 *   --timeout DURATION  how long to wait for an answering event (default 60s,
 *                       setting SCMCTL_TIMEOUT)
 *   --quiet             no progress output on stderr
 *
 * Settings (environment, file, --set): SCMFLOW_DATABASE_URL,
 * SCMFLOW_KAFKA_BROKERS, SCMFLOW_KAFKA_CONFIG, SCMFLOW_TOPIC_PREFIX,
 * SCMFLOW_SCM_BASE_URL, SCMFLOW_MASTER_KEY_FILE (only needed by commands
 * that seal/unseal), SCMFLOW_MASTER_KEY_OLD_FILES (older keys that only
 * unseal, see sf_sealer_from_config), SCMFLOW_LOG_LEVEL (default warn), SCMFLOW_LOG_FORMAT
 * (default text), SCMCTL_TIMEOUT.
 *
 * Passwords never come from argv: ctl_read_secret reads a prompt without
 * echo, --password-file FILE or --password-stdin.
 */
#ifndef SCMCTL_CTL_H
#define SCMCTL_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "sf_config.h"
#include "sf_error.h"

struct sf_db;
struct sf_sealer;
struct sf_event;

/*
 * The SCM password of account NAME is stored in scm_accounts.password_sealed
 * as an sf_seal token sealed under the master key with this AAD (format
 * argument: the account name). Every worker that talks to SCM unseals it
 * with the same string.
 */
#define CTL_ACCOUNT_PASSWORD_AAD_FMT "account:%s:password"

#define CTL_EXIT_OK 0
#define CTL_EXIT_FAIL 1
#define CTL_EXIT_USAGE 2

/* ---- subcommands (weak: a missing file = "not available in this build") ---- */

/* catalog engineer */
int ctl_cmd_account(int argc, char **argv) __attribute__((weak)); /* set|show|list|default|delete */
int ctl_cmd_sync(int argc, char **argv) __attribute__((weak));    /* [--scope S] [--no-wait] */
int ctl_cmd_catalog(int argc, char **argv) __attribute__((weak)); /* organizations|domains|profiles */
int ctl_cmd_import(int argc, char **argv) __attribute__((weak));  /* [--status S] [--no-wait] */
/* order engineer: create|renew|reissue|revoke|delete|check|list|show */
int ctl_cmd_order(int argc, char **argv) __attribute__((weak));
/* poller engineer: `order check`, dispatched by cmd_order.c when present */
int ctl_cmd_order_check(int argc, char **argv) __attribute__((weak));
/* poller/ingest engineer */
int ctl_cmd_cert(int argc, char **argv) __attribute__((weak));
int ctl_cmd_license(int argc, char **argv) __attribute__((weak));
/* master key rotation: re-seal every secret under the primary key */
int ctl_cmd_rekey(int argc, char **argv) __attribute__((weak)); /* [--dry-run] [--batch N] */

/* ---- the context: settings + lazily opened DB, sealer, Kafka ---- */

typedef struct ctl_ctx ctl_ctx;

/*
 * Load the settings (built-in defaults < file < environment < --set, as for
 * workers) and the common options from argv (argv is not modified), set up
 * logging (text to stderr, level SCMFLOW_LOG_LEVEL, default warn).
 * Returns NULL and fills err on a bad setting/option (exit CTL_EXIT_USAGE).
 * Free with ctl_ctx_free.
 */
ctl_ctx *ctl_ctx_new(int argc, char **argv, sf_error *err);
/* Closes everything it opened. Accepts NULL. */
void ctl_ctx_free(ctl_ctx *c);

const sf_config *ctl_config(const ctl_ctx *c);
bool ctl_json(const ctl_ctx *c);           /* --json given */
bool ctl_quiet(const ctl_ctx *c);          /* --quiet given, or stderr is not a tty for bars */
const char *ctl_account_opt(const ctl_ctx *c); /* --account value or NULL */
int64_t ctl_timeout_ms(const ctl_ctx *c);  /* --timeout / SCMCTL_TIMEOUT */

/* The database, opened (and migrated: sf_db_migrate) on first use. Borrowed:
 * owned by the context. NULL + err on failure. */
struct sf_db *ctl_db(ctl_ctx *c, sf_error *err);
/* The sealer from SCMFLOW_MASTER_KEY_FILE (+ SCMFLOW_MASTER_KEY_OLD_FILES),
 * opened on first use (sf_sealer_from_config). Borrowed.
 * NULL + err when the setting is empty or the key cannot be loaded. */
struct sf_sealer *ctl_sealer(ctl_ctx *c, sf_error *err);

/* Full topic name: prefix + suffix into buf; returns buf. */
const char *ctl_topic(const ctl_ctx *c, const char *suffix, char *buf, size_t size);

/*
 * The account to act on: --account if given (must exist), else the default
 * account (scm_accounts.is_default), else the only account. *out is a heap
 * copy (caller frees). NOT_FOUND error with a hint when there is none.
 */
int ctl_resolve_account(ctl_ctx *c, char **out, sf_error *err);

/* ---- commands over Kafka ---- */

/*
 * Publish one command event to <prefix><topic_suffix> with Kafka key `key`
 * and wait for the broker's acknowledgement. Before publishing, a reader is
 * positioned at the end of <prefix>events so that ctl_wait_answer sees every
 * event published afterwards. *out_id (nullable) receives a heap copy of the
 * command's event id (the correlation id of the answer; caller frees).
 * data is borrowed.
 */
int ctl_publish(ctl_ctx *c, const char *topic_suffix, const char *key, const char *type,
                const cJSON *data, char **out_id, sf_error *err);

/*
 * Called for every event on <prefix>events whose correlationid matches,
 * before final-type checking. Return 1 if ev is the final answer, 0 to keep
 * waiting, -1 to stop with an error. ev is borrowed.
 */
typedef int (*ctl_event_fn)(void *ud, const struct sf_event *ev);

/*
 * Wait up to timeout_ms (<= 0: ctl_timeout_ms) for an event on
 * <prefix>events whose correlationid == correlationid and whose type is one
 * of final_types (NULL-terminated; NULL = any type). on_event (nullable) sees
 * every matching event first (progress) and may itself declare one final.
 * On success *out (nullable) receives the final event (caller frees with
 * sf_event_free). Timeout = SF_ERR_TRANSIENT "no answer within ...".
 * Shows a spinner on stderr unless quiet or on_event prints progress itself.
 */
int ctl_wait_answer(ctl_ctx *c, const char *correlationid, const char *const *final_types,
                    int64_t timeout_ms, ctl_event_fn on_event, void *ud,
                    struct sf_event **out, sf_error *err);

/* ---- argument helpers ---- */

/* True when argv has -h or --help. */
bool ctl_wants_help(int argc, char **argv);
/*
 * If argv[*i] is a common option (see top), skip it and its value (advance
 * *i past them) and return 1; return 0 otherwise. Use in a subcommand's own
 * option loop: `if (ctl_common_opt(argc, argv, &i)) continue;`.
 */
int ctl_common_opt(int argc, char **argv, int *i);
/* Help text for the common options, for a subcommand's --help. */
void ctl_print_common_help(FILE *out);

/*
 * Read a secret (password) without it ever being in argv:
 *   file != NULL       -> first line of that file
 *   from_stdin         -> first line of stdin
 *   else               -> prompt on /dev/tty with echo off (fails when there
 *                         is no terminal)
 * The trailing newline is removed. *out is a heap string (caller wipes with
 * sf_memzero + frees); it is registered with sf_log_register_secret.
 * Max 4096 bytes.
 */
int ctl_read_secret(const char *prompt, const char *file, bool from_stdin, char **out,
                    sf_error *err);

/* ---- output ---- */

/* Print "scmctl <what>: <msg> [(field)]" to stderr. */
void ctl_report(const char *what, const sf_error *err);

/* A text table: columns sized to content, header row, no borders. */
typedef struct ctl_table ctl_table;
ctl_table *ctl_table_new(size_t ncols, const char *const *headers);
/* Append a row of ncols cells (copied; NULL prints as "-"). Returns 0 or -1. */
int ctl_table_add(ctl_table *t, const char *const *cells);
void ctl_table_print(const ctl_table *t, FILE *out);
void ctl_table_free(ctl_table *t);

/*
 * Progress bar on stderr ("label [#####     ] 42% 4200/10000"), redrawn in
 * place on a tty; on a non-tty a line at most every 2 s. total <= 0 shows
 * a count only. ctl_progress_done ends the line.
 */
void ctl_progress(const ctl_ctx *c, const char *label, int64_t done, int64_t total);
void ctl_progress_done(const ctl_ctx *c);

/* Print a cJSON value on stdout (pretty) followed by a newline. */
void ctl_print_json(const cJSON *v);

#endif
