/*
 * scmctl order - publish order commands to <prefix>order.commands and wait
 * for order-submitter's answer:
 *   create   scmflow.order.enroll   -> order.submitted | order.rejected | order.failed
 *   renew    scmflow.order.renew    -> order.renewed   | order.rejected | order.failed
 *   reissue  scmflow.order.reissue  -> order.reissued  | order.rejected | order.failed
 *   revoke   scmflow.order.revoke   -> order.revoked   | order.rejected | order.failed
 *   delete   scmflow.order.delete   -> order.deleted   | order.rejected
 *   check    dispatched to ctl_cmd_order_check (status-poller's file) when present
 * The keystore password comes from a prompt, --keystore-password-file or
 * --keystore-password-stdin, never from argv.
 */
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "sf_msg.h"
#include "sf_seal.h"
#include "sf_util.h"

#define ORDER_JSON_MAX (1024 * 1024)

static void usage(FILE *out)
{
    fprintf(out,
            "usage: scmctl order create [--file ORDER.json] [--order-id ID] --cn NAME [--san NAME]...\n"
            "                           --org ID|NAME --profile ID|NAME --term DAYS\n"
            "                           [--key RSA|EC] [--key-size N] [--keystore PEM|PKCS12|JKS]\n"
            "                           [--keystore-password-file F | --keystore-password-stdin]\n"
            "                           [--comments TEXT] [--requester EMAIL]... [--custom NAME=VALUE]...\n"
            "                           [--csr FILE] [--no-wait]\n"
            "       scmctl order renew ID [--new-key] [--csr FILE] [--no-wait]\n"
            "       scmctl order reissue ID --reason TEXT [--san NAME]... [--keep-key] [--csr FILE] [--no-wait]\n"
            "       scmctl order revoke ID --reason-code 0|1|3|4|5 --reason TEXT [--no-wait]\n"
            "       scmctl order delete ID [--no-wait]\n"
            "       scmctl order check ...   (see scmctl order check --help)\n\n"
            "Publishes the command to <prefix>order.commands and waits (--timeout) for the\n"
            "answering event, which is printed (--json: the whole event). Exit 0 when the\n"
            "command succeeded, 1 when it was rejected/failed or no answer came in time.\n"
            "create: --file gives the data of scmflow.order.enroll as JSON; flags override\n"
            "its fields. Without --order-id a random order id is chosen and printed.\n"
            "PKCS12/JKS need a keystore password: prompted (no echo) unless a file or\n"
            "stdin is named. delete removes the order locally only (SCM keeps it).\n\n");
    ctl_print_common_help(out);
}

static int need_value(int argc, char **argv, int i)
{
    if (i + 1 >= argc) {
        fprintf(stderr, "scmctl order: %s needs a value (see --help)\n", argv[i]);
        return -1;
    }
    return 0;
}

static int add_str_array(cJSON *o, const char *name, const char *v)
{
    cJSON *a = cJSON_GetObjectItemCaseSensitive(o, name);

    if (!cJSON_IsArray(a)) {
        cJSON_DeleteItemFromObjectCaseSensitive(o, name);
        if ((a = cJSON_AddArrayToObject(o, name)) == NULL)
            return -1;
    }
    cJSON_AddItemToArray(a, cJSON_CreateString(v));
    return 0;
}

static void set_str(cJSON *o, const char *name, const char *v)
{
    cJSON_DeleteItemFromObjectCaseSensitive(o, name);
    cJSON_AddStringToObject(o, name, v);
}

/* an id when all digits, else a name */
static void set_id_or_name(cJSON *o, const char *name, const char *v)
{
    int64_t n;

    cJSON_DeleteItemFromObjectCaseSensitive(o, name);
    if (sf_str_to_i64(v, 1, 999999999999999LL, &n) == 0)
        cJSON_AddNumberToObject(o, name, (double)n);
    else
        cJSON_AddStringToObject(o, name, v);
}

static int set_int(cJSON *o, const char *name, const char *v, int64_t min, int64_t max)
{
    int64_t n;

    if (sf_str_to_i64(v, min, max, &n) < 0) {
        fprintf(stderr, "scmctl order: %s: \"%s\" is not a number in %lld..%lld\n", name, v,
                (long long)min, (long long)max);
        return -1;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(o, name);
    cJSON_AddNumberToObject(o, name, (double)n);
    return 0;
}

static int read_csr(const char *path, cJSON *o)
{
    char *buf = NULL;
    size_t len = 0;

    if (sf_read_file(path, 64 * 1024, &buf, &len) < 0) {
        fprintf(stderr, "scmctl order: could not read CSR file \"%s\"\n", path);
        return -1;
    }
    set_str(o, "csr", buf);
    free(buf);
    return 0;
}

typedef struct wait_ud {
    ctl_ctx *c;
} wait_ud;

static int on_event(void *ud, const sf_event *ev)
{
    wait_ud *w = ud;

    if (strcmp(sf_event_type(ev), SF_EV_ORDER_ACCEPTED) == 0 && !ctl_quiet(w->c)) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(sf_event_data(ev), "order_id");

        fprintf(stderr, "accepted: order %s, waiting for SCM...\n",
                cJSON_IsString(id) ? id->valuestring : "?");
    }
    return 0;
}

/* Print the answer; returns the exit status. */
static int print_answer(ctl_ctx *c, const sf_event *ev)
{
    const char *type = sf_event_type(ev);
    const cJSON *d = sf_event_data(ev);
    bool bad = strcmp(type, SF_EV_ORDER_REJECTED) == 0 || strcmp(type, SF_EV_ORDER_FAILED) == 0;

    if (ctl_json(c)) {
        ctl_print_json(sf_event_json(ev));
    } else {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(d, "order_id");
        const cJSON *ssl = cJSON_GetObjectItemCaseSensitive(d, "ssl_id");

        printf("%s: order %s", type, cJSON_IsString(id) ? id->valuestring : "?");
        if (cJSON_IsNumber(ssl))
            printf(" sslId %.0f", ssl->valuedouble);
        printf("\n");
        if (bad) {
            const cJSON *errs = cJSON_GetObjectItemCaseSensitive(d, "errors"), *e;
            const cJSON *one = cJSON_GetObjectItemCaseSensitive(d, "error");

            if (!cJSON_IsArray(errs) || cJSON_GetArraySize(errs) == 0) {
                e = one;
                goto print_one;
            }
            cJSON_ArrayForEach(e, errs) {
                const cJSON *f, *m, *cd, *sc;
print_one:
                f = cJSON_GetObjectItemCaseSensitive(e, "field");
                m = cJSON_GetObjectItemCaseSensitive(e, "message");
                cd = cJSON_GetObjectItemCaseSensitive(e, "code");
                sc = cJSON_GetObjectItemCaseSensitive(e, "scm_code");
                printf("  %s%s%s: %s", cJSON_IsString(f) ? f->valuestring : "",
                       cJSON_IsString(f) ? " " : "", cJSON_IsString(cd) ? cd->valuestring : "error",
                       cJSON_IsString(m) ? m->valuestring : "");
                if (cJSON_IsNumber(sc))
                    printf(" (SCM code %.0f)", sc->valuedouble);
                printf("\n");
                if (e == one)
                    break;
            }
        }
    }
    return bad ? CTL_EXIT_FAIL : CTL_EXIT_OK;
}

static int publish_and_wait(ctl_ctx *c, const char *type, const char *key, const cJSON *data,
                            const char *const *finals, bool nowait)
{
    sf_error err;
    char *id = NULL;
    sf_event *ans = NULL;
    wait_ud w = {c};
    int rc;

    sf_error_clear(&err);
    if (ctl_publish(c, SF_TOPIC_ORDER_COMMANDS, key, type, data, &id, &err) < 0) {
        ctl_report("order", &err);
        return CTL_EXIT_FAIL;
    }
    if (nowait) {
        if (ctl_json(c)) {
            cJSON *o = cJSON_CreateObject();

            cJSON_AddStringToObject(o, "command_id", id);
            cJSON_AddStringToObject(o, "order_id", key);
            ctl_print_json(o);
            cJSON_Delete(o);
        } else {
            printf("published %s for order %s (command id %s)\n", type, key, id);
        }
        free(id);
        return CTL_EXIT_OK;
    }
    if (ctl_wait_answer(c, id, finals, 0, on_event, &w, &ans, &err) < 0) {
        ctl_report("order", &err);
        free(id);
        return CTL_EXIT_FAIL;
    }
    rc = print_answer(c, ans);
    sf_event_free(ans);
    free(id);
    return rc;
}

static int cmd_create(ctl_ctx *c, int argc, char **argv)
{
    static const char *const finals[] = {SF_EV_ORDER_SUBMITTED, SF_EV_ORDER_REJECTED,
                                         SF_EV_ORDER_FAILED, NULL};
    cJSON *d = NULL;
    const char *pwfile = NULL;
    bool pwstdin = false, nowait = false;
    char *pw = NULL, oid[40];
    const cJSON *ks, *id;
    int rc = CTL_EXIT_USAGE;

    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--file") == 0) {
            char *buf = NULL;
            size_t len = 0;

            if (need_value(argc, argv, i) < 0)
                goto out;
            if (sf_read_file(argv[++i], ORDER_JSON_MAX, &buf, &len) < 0 ||
                (cJSON_Delete(d), d = cJSON_ParseWithLength(buf, len)) == NULL ||
                !cJSON_IsObject(d)) {
                fprintf(stderr, "scmctl order: \"%s\" is not a readable JSON object\n", argv[i]);
                free(buf);
                goto out;
            }
            free(buf);
        }
    }
    if (d == NULL && (d = cJSON_CreateObject()) == NULL)
        goto out;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];

        if (ctl_common_opt(argc, argv, &i))
            continue;
        if (strcmp(a, "--no-wait") == 0) { nowait = true; continue; }
        if (strcmp(a, "--keystore-password-stdin") == 0) { pwstdin = true; continue; }
        if (need_value(argc, argv, i) < 0)
            goto out;
        if (strcmp(a, "--file") == 0) i++;
        else if (strcmp(a, "--order-id") == 0) set_str(d, "order_id", argv[++i]);
        else if (strcmp(a, "--cn") == 0) set_str(d, "common_name", argv[++i]);
        else if (strcmp(a, "--san") == 0) add_str_array(d, "sans", argv[++i]);
        else if (strcmp(a, "--org") == 0) set_id_or_name(d, "organization", argv[++i]);
        else if (strcmp(a, "--profile") == 0) set_id_or_name(d, "profile", argv[++i]);
        else if (strcmp(a, "--term") == 0) { if (set_int(d, "term_days", argv[++i], 1, 3650) < 0) goto out; }
        else if (strcmp(a, "--key") == 0) set_str(d, "key_algorithm", argv[++i]);
        else if (strcmp(a, "--key-size") == 0) { if (set_int(d, "key_size", argv[++i], 1, 8192) < 0) goto out; }
        else if (strcmp(a, "--keystore") == 0) set_str(d, "keystore_type", argv[++i]);
        else if (strcmp(a, "--keystore-password-file") == 0) pwfile = argv[++i];
        else if (strcmp(a, "--comments") == 0) set_str(d, "comments", argv[++i]);
        else if (strcmp(a, "--requester") == 0) add_str_array(d, "external_requesters", argv[++i]);
        else if (strcmp(a, "--custom") == 0) {
            const char *eq = strchr(argv[++i], '=');
            cJSON *a2 = cJSON_GetObjectItemCaseSensitive(d, "custom_fields"), *o;
            char *name;

            if (eq == NULL || eq == argv[i]) {
                fprintf(stderr, "scmctl order: --custom takes NAME=VALUE\n");
                goto out;
            }
            if (!cJSON_IsArray(a2))
                a2 = cJSON_AddArrayToObject(d, "custom_fields");
            name = sf_asprintf("%.*s", (int)(eq - argv[i]), argv[i]);
            o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", name ? name : "");
            cJSON_AddStringToObject(o, "value", eq + 1);
            cJSON_AddItemToArray(a2, o);
            free(name);
        } else if (strcmp(a, "--csr") == 0) { if (read_csr(argv[++i], d) < 0) goto out; }
        else {
            fprintf(stderr, "scmctl order create: unknown option \"%s\" (see --help)\n", a);
            goto out;
        }
    }
    if (ctl_account_opt(c) && !cJSON_HasObjectItem(d, "account"))
        set_str(d, "account", ctl_account_opt(c));
    /* required by the contract even with --csr (the worker then checks the
     * CSR's own key against the profile) */
    if (!cJSON_HasObjectItem(d, "key_algorithm"))
        set_str(d, "key_algorithm", "RSA");
    if (!cJSON_HasObjectItem(d, "key_size")) {
        const cJSON *alg = cJSON_GetObjectItemCaseSensitive(d, "key_algorithm");

        cJSON_AddNumberToObject(d, "key_size",
                                cJSON_IsString(alg) && strcmp(alg->valuestring, "EC") == 0 ? 256 : 2048);
    }
    if (!cJSON_HasObjectItem(d, "sans")) {
        /* the contract requires the list; the CN is the usual only SAN */
        const cJSON *cn = cJSON_GetObjectItemCaseSensitive(d, "common_name");

        if (cJSON_IsString(cn))
            add_str_array(d, "sans", cn->valuestring);
    }
    if (!cJSON_HasObjectItem(d, "keystore_type"))
        set_str(d, "keystore_type", "PEM");
    ks = cJSON_GetObjectItemCaseSensitive(d, "keystore_type");
    if ((cJSON_IsString(ks) && strcmp(ks->valuestring, "PEM") != 0 &&
         !cJSON_HasObjectItem(d, "keystore_password")) || pwfile || pwstdin) {
        sf_error err;

        sf_error_clear(&err);
        if (ctl_read_secret("keystore password: ", pwfile, pwstdin, &pw, &err) < 0) {
            ctl_report("order create", &err);
            rc = CTL_EXIT_FAIL;
            goto out;
        }
        set_str(d, "keystore_password", pw);
    }
    if (!cJSON_HasObjectItem(d, "order_id")) {
        if (sf_uuid4(oid, sizeof(oid)) < 0)
            goto out;
        set_str(d, "order_id", oid);
        if (!ctl_quiet(c))
            fprintf(stderr, "order id: %s\n", oid);
    }
    {
        sf_error err;

        sf_error_clear(&err);
        if (sf_event_validate_data(SF_CMD_ORDER_ENROLL, d, &err) < 0) {
            /* the message never holds the keystore password (sf_msg.h) */
            fprintf(stderr, "scmctl order create: %s: %s\n", err.field, err.msg);
            goto out;
        }
    }
    id = cJSON_GetObjectItemCaseSensitive(d, "order_id");
    rc = publish_and_wait(c, SF_CMD_ORDER_ENROLL, id->valuestring, d, finals, nowait);
out:
    if (pw) {
        sf_secret_str_free(pw);
    }
    cJSON_Delete(d);
    return rc;
}

static int cmd_lifecycle(ctl_ctx *c, const char *sub, int argc, char **argv)
{
    static const char *const f_renew[] = {SF_EV_ORDER_RENEWED, SF_EV_ORDER_REJECTED,
                                          SF_EV_ORDER_FAILED, NULL};
    static const char *const f_reissue[] = {SF_EV_ORDER_REISSUED, SF_EV_ORDER_REJECTED,
                                            SF_EV_ORDER_FAILED, NULL};
    static const char *const f_revoke[] = {SF_EV_ORDER_REVOKED, SF_EV_ORDER_REJECTED,
                                           SF_EV_ORDER_FAILED, NULL};
    static const char *const f_delete[] = {SF_EV_ORDER_DELETED, SF_EV_ORDER_REJECTED, NULL};
    const char *type, *const *finals, *order_id = NULL;
    cJSON *d = cJSON_CreateObject();
    bool nowait = false;
    int rc = CTL_EXIT_USAGE;

    if (d == NULL)
        return CTL_EXIT_FAIL;
    if (strcmp(sub, "renew") == 0) { type = SF_CMD_ORDER_RENEW; finals = f_renew; }
    else if (strcmp(sub, "reissue") == 0) { type = SF_CMD_ORDER_REISSUE; finals = f_reissue; }
    else if (strcmp(sub, "revoke") == 0) { type = SF_CMD_ORDER_REVOKE; finals = f_revoke; }
    else { type = SF_CMD_ORDER_DELETE; finals = f_delete; }
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];

        if (ctl_common_opt(argc, argv, &i))
            continue;
        if (strcmp(a, "--no-wait") == 0) nowait = true;
        else if (strcmp(a, "--new-key") == 0 && strcmp(sub, "renew") == 0)
            cJSON_AddBoolToObject(d, "new_key", true);
        else if (strcmp(a, "--keep-key") == 0 && strcmp(sub, "reissue") == 0)
            cJSON_AddBoolToObject(d, "new_key", false);
        else if (a[0] != '-' && order_id == NULL) order_id = a;
        else {
            if (a[0] != '-' || need_value(argc, argv, i) < 0) {
                fprintf(stderr, "scmctl order %s: unexpected \"%s\" (see --help)\n", sub, a);
                goto out;
            }
            if (strcmp(a, "--csr") == 0 && strcmp(sub, "revoke") && strcmp(sub, "delete")) {
                if (read_csr(argv[++i], d) < 0)
                    goto out;
            } else if (strcmp(a, "--reason") == 0 && (!strcmp(sub, "reissue") || !strcmp(sub, "revoke")))
                set_str(d, "reason", argv[++i]);
            else if (strcmp(a, "--reason-code") == 0 && strcmp(sub, "revoke") == 0) {
                if (set_int(d, "reason_code", argv[++i], 0, 5) < 0)
                    goto out;
            } else if (strcmp(a, "--san") == 0 && strcmp(sub, "reissue") == 0)
                add_str_array(d, "sans", argv[++i]);
            else {
                fprintf(stderr, "scmctl order %s: unknown option \"%s\" (see --help)\n", sub, a);
                goto out;
            }
        }
    }
    if (order_id == NULL) {
        fprintf(stderr, "scmctl order %s: the order ID is required (see --help)\n", sub);
        goto out;
    }
    set_str(d, "order_id", order_id);
    if (strcmp(sub, "revoke") == 0 && !cJSON_HasObjectItem(d, "reason_code"))
        cJSON_AddNumberToObject(d, "reason_code", 0);
    {
        sf_error err;

        sf_error_clear(&err);
        if (sf_event_validate_data(type, d, &err) < 0) {
            fprintf(stderr, "scmctl order %s: %s: %s\n", sub, err.field, err.msg);
            goto out;
        }
    }
    rc = publish_and_wait(c, type, order_id, d, finals, nowait);
out:
    cJSON_Delete(d);
    return rc;
}

int ctl_cmd_order(int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : NULL;
    ctl_ctx *c;
    sf_error err;
    int rc;

    if (sub && strcmp(sub, "check") == 0) {
        if (ctl_cmd_order_check)
            return ctl_cmd_order_check(argc - 1, argv + 1);
        fprintf(stderr, "scmctl: order check is not available in this build\n");
        return CTL_EXIT_FAIL;
    }
    if (sub == NULL || ctl_wants_help(argc, argv) ||
        (strcmp(sub, "create") && strcmp(sub, "renew") && strcmp(sub, "reissue") &&
         strcmp(sub, "revoke") && strcmp(sub, "delete"))) {
        usage(sub && ctl_wants_help(argc, argv) ? stdout : stderr);
        return sub && ctl_wants_help(argc, argv) ? CTL_EXIT_OK : CTL_EXIT_USAGE;
    }
    sf_error_clear(&err);
    if ((c = ctl_ctx_new(argc, argv, &err)) == NULL) {
        ctl_report("order", &err);
        return CTL_EXIT_USAGE;
    }
    if (strcmp(sub, "create") == 0)
        rc = cmd_create(c, argc, argv);
    else
        rc = cmd_lifecycle(c, sub, argc, argv);
    ctl_ctx_free(c);
    return rc;
}
