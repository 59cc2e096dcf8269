/*
 * scmctl import - publish scmflow.orders.import and follow the import
 * (orders.import_progress events drive a progress bar) until
 * orders.imported.
 */
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "sf_msg.h"
#include "sf_util.h"

static const char *const statuses[] = {"Invalid", "Requested", "Approved", "Declined", "Applied", "Issued",
                                       "Revoked", "Expired", "Replaced", "Rejected", "SAApproved", "Init"};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: scmctl import [--status STATUS]... [--no-wait]\n\n"
            "Asks catalog-sync to import every existing SCM certificate of the account as an\n"
            "order (id scm:<account>:<sslId>), and shows the progress until it is done.\n"
            "Running it again adds no duplicates and updates what changed. --status (may\n"
            "be repeated or comma-separated) limits the import to these SCM statuses:\n"
            "Invalid Requested Approved Declined Applied Issued Revoked Expired Replaced\n"
            "Rejected SAApproved Init. Imports can be long: use --timeout (default 60s).\n\n");
    ctl_print_common_help(out);
}

static int on_event(void *ud, const sf_event *ev)
{
    ctl_ctx *c = ud;
    const cJSON *d = sf_event_data(ev);

    if (strcmp(sf_event_type(ev), SF_EV_ORDERS_IMPORT_PROGRESS) == 0) {
        const cJSON *dn = cJSON_GetObjectItemCaseSensitive(d, "done");
        const cJSON *tt = cJSON_GetObjectItemCaseSensitive(d, "total");

        if (!ctl_json(c))
            ctl_progress(c, "importing", cJSON_IsNumber(dn) ? (int64_t)dn->valuedouble : 0,
                         cJSON_IsNumber(tt) ? (int64_t)tt->valuedouble : 0);
        return 0;
    }
    return strcmp(sf_event_type(ev), SF_EV_ORDERS_IMPORTED) == 0;
}

int ctl_cmd_import(int argc, char **argv)
{
    sf_error err = {0};
    ctl_ctx *c = NULL;
    cJSON *data = cJSON_CreateObject(), *st = NULL;
    char *account = NULL, *id = NULL;
    bool no_wait = false;
    sf_event *ev = NULL;
    int rc = CTL_EXIT_FAIL;

    if (ctl_wants_help(argc, argv)) {
        usage(stdout);
        cJSON_Delete(data);
        return CTL_EXIT_OK;
    }
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        char buf[256], *save = NULL;

        if (ctl_common_opt(argc, argv, &i))
            continue;
        if (strcmp(argv[i], "--no-wait") == 0) {
            no_wait = true;
            continue;
        }
        if (strcmp(argv[i], "--status") == 0 && i + 1 < argc)
            v = argv[++i];
        else if (strncmp(argv[i], "--status=", 9) == 0)
            v = argv[i] + 9;
        if (v == NULL) {
            fprintf(stderr, "scmctl import: unknown option \"%s\" (see --help)\n", argv[i]);
            rc = CTL_EXIT_USAGE;
            goto out;
        }
        if (st == NULL)
            st = cJSON_AddArrayToObject(data, "status");
        (void)sf_snprintf(buf, sizeof(buf), "%s", v);
        for (char *s = strtok_r(buf, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
            bool ok = false, dup = false;
            const cJSON *e;

            for (size_t k = 0; k < SF_ARRAY_LEN(statuses); k++)
                ok = ok || strcmp(s, statuses[k]) == 0;
            if (!ok) {
                fprintf(stderr, "scmctl import: --status \"%s\" is not an SCM status (see --help)\n", s);
                rc = CTL_EXIT_USAGE;
                goto out;
            }
            cJSON_ArrayForEach(e, st)
                dup = dup || strcmp(e->valuestring, s) == 0;
            if (!dup)
                cJSON_AddItemToArray(st, cJSON_CreateString(s));
        }
    }
    if ((c = ctl_ctx_new(argc, argv, &err)) == NULL) {
        ctl_report("import", &err);
        rc = CTL_EXIT_USAGE;
        goto out;
    }
    if (ctl_resolve_account(c, &account, &err) < 0)
        goto fail;
    cJSON_AddStringToObject(data, "account", account);
    if (ctl_publish(c, SF_TOPIC_CATALOG_COMMANDS, account, SF_CMD_ORDERS_IMPORT, data, &id, &err) < 0)
        goto fail;
    if (no_wait) {
        if (ctl_json(c))
            printf("{\"command_id\": \"%s\"}\n", id);
        else
            printf("import requested (command %s)\n", id);
        rc = CTL_EXIT_OK;
        goto out;
    }
    if (!ctl_quiet(c) && !ctl_json(c))
        fprintf(stderr, "import of account \"%s\" requested (command %s), waiting...\n", account, id);
    if (ctl_wait_answer(c, id, NULL, 0, on_event, c, &ev, &err) < 0)
        goto fail;
    {
        const cJSON *d = sf_event_data(ev);
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(d, "error");

        if (ctl_json(c)) {
            ctl_print_json(d);
        } else {
            printf("imported %.0f new, %.0f updated, %.0f skipped (deleted locally) of %.0f in %.1f s\n",
                   cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(d, "imported")),
                   cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(d, "updated"))
                       ? cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(d, "updated")) : 0.0,
                   cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(d, "skipped"))
                       ? cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(d, "skipped")) : 0.0,
                   cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(d, "total"))
                       ? cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(d, "total")) : 0.0,
                   cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(d, "duration_ms"))
                       ? cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(d, "duration_ms")) / 1000.0 : 0.0);
        }
        if (cJSON_IsString(e)) {
            fprintf(stderr, "scmctl import: the import failed: %s\n", e->valuestring);
            goto out;
        }
    }
    rc = CTL_EXIT_OK;
    goto out;
fail:
    ctl_report("import", &err);
out:
    sf_event_free(ev);
    free(id);
    free(account);
    cJSON_Delete(data);
    ctl_ctx_free(c);
    return rc;
}
