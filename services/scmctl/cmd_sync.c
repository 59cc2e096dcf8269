/*
 * scmctl sync - publish scmflow.catalog.sync and wait for catalog-sync's
 * answer (catalog.synced, or catalog.sync_failed without a retry left).
 */
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "sf_msg.h"
#include "sf_util.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: scmctl sync [--scope organizations|domains|profiles|all]... [--no-wait]\n\n"
            "Asks catalog-sync to sync the catalog of the account (--account or the default)\n"
            "from SCM and waits for the result (--timeout). --scope may be repeated or\n"
            "comma-separated; default all. Exit 0 when synced, 1 when the sync failed or no\n"
            "answer came in time (a failed sync is retried by the worker with backoff).\n\n");
    ctl_print_common_help(out);
}

typedef struct sync_wait {
    ctl_ctx *c;
    int failures;
} sync_wait;

static int on_event(void *ud, const sf_event *ev)
{
    sync_wait *w = ud;
    const char *type = sf_event_type(ev);
    const cJSON *d = sf_event_data(ev);

    if (strcmp(type, SF_EV_CATALOG_SYNC_PROGRESS) == 0) {
        const cJSON *ph = cJSON_GetObjectItemCaseSensitive(d, "phase");
        const cJSON *dn = cJSON_GetObjectItemCaseSensitive(d, "done");
        const cJSON *tt = cJSON_GetObjectItemCaseSensitive(d, "total");

        ctl_progress(w->c, cJSON_IsString(ph) ? ph->valuestring : "syncing",
                     cJSON_IsNumber(dn) ? (int64_t)dn->valuedouble : 0,
                     cJSON_IsNumber(tt) ? (int64_t)tt->valuedouble : 0);
        return 0;
    }
    if (strcmp(type, SF_EV_CATALOG_SYNC_FAILED) == 0) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(d, "error");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
        const cJSON *retry = cJSON_GetObjectItemCaseSensitive(d, "will_retry");

        w->failures++;
        ctl_progress_done(w->c);
        if (cJSON_IsTrue(retry)) {
            if (!ctl_quiet(w->c))
                fprintf(stderr, "sync attempt failed: %s (catalog-sync retries with backoff)\n",
                        cJSON_IsString(m) ? m->valuestring : "unknown reason");
            return 0;
        }
        return 1;
    }
    return strcmp(type, SF_EV_CATALOG_SYNCED) == 0;
}

static void print_result(ctl_ctx *c, const sf_event *ev)
{
    const cJSON *d = sf_event_data(ev);

    if (ctl_json(c)) {
        cJSON *o = cJSON_CreateObject();

        cJSON_AddStringToObject(o, "type", sf_event_type(ev));
        cJSON_AddItemToObject(o, "data", cJSON_Duplicate(d, true));
        ctl_print_json(o);
        cJSON_Delete(o);
        return;
    }
    if (strcmp(sf_event_type(ev), SF_EV_CATALOG_SYNCED) == 0) {
        static const char *const kinds[] = {"organizations", "domains", "profiles", "custom_fields"};
        static const char *const h[] = {"KIND", "TOTAL", "ADDED", "CHANGED", "REMOVED"};
        const cJSON *counts = cJSON_GetObjectItemCaseSensitive(d, "counts");
        ctl_table *t = ctl_table_new(5, h);

        for (size_t i = 0; t != NULL && i < SF_ARRAY_LEN(kinds); i++) {
            const cJSON *k = cJSON_GetObjectItemCaseSensitive(counts, kinds[i]);
            const cJSON *tot = cJSON_GetObjectItemCaseSensitive(d, kinds[i]);
            char a[4][32];
            const char *row[5];

            if (k == NULL)
                continue;
            (void)sf_snprintf(a[0], 32, "%.0f", cJSON_IsNumber(tot) ? tot->valuedouble : 0);
            if (!cJSON_IsNumber(tot))
                (void)sf_snprintf(a[0], 32, "-");
            (void)sf_snprintf(a[1], 32, "%.0f", cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(k, "added")));
            (void)sf_snprintf(a[2], 32, "%.0f", cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(k, "changed")));
            (void)sf_snprintf(a[3], 32, "%.0f", cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(k, "removed")));
            row[0] = kinds[i];
            row[1] = a[0];
            row[2] = a[1];
            row[3] = a[2];
            row[4] = a[3];
            (void)ctl_table_add(t, row);
        }
        printf("catalog synced\n");
        if (t != NULL)
            ctl_table_print(t, stdout);
        ctl_table_free(t);
    } else {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(d, "error");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");

        fprintf(stderr, "scmctl sync: the sync failed: %s\n",
                cJSON_IsString(m) ? m->valuestring : "unknown reason");
    }
}

int ctl_cmd_sync(int argc, char **argv)
{
    static const char *const finals[] = {SF_EV_CATALOG_SYNCED, NULL};
    sf_error err = {0};
    ctl_ctx *c = NULL;
    cJSON *data = NULL, *scope;
    char *account = NULL, *id = NULL;
    bool no_wait = false, any = false;
    sf_event *ev = NULL;
    sync_wait w = {0};
    int rc = CTL_EXIT_FAIL;

    if (ctl_wants_help(argc, argv)) {
        usage(stdout);
        return CTL_EXIT_OK;
    }
    data = cJSON_CreateObject();
    scope = cJSON_AddArrayToObject(data, "scope");
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;

        if (ctl_common_opt(argc, argv, &i))
            continue;
        if (strcmp(argv[i], "--no-wait") == 0) {
            no_wait = true;
            continue;
        }
        if (strcmp(argv[i], "--scope") == 0 && i + 1 < argc)
            v = argv[++i];
        else if (strncmp(argv[i], "--scope=", 8) == 0)
            v = argv[i] + 8;
        if (v == NULL) {
            fprintf(stderr, "scmctl sync: unknown option \"%s\" (see --help)\n", argv[i]);
            rc = CTL_EXIT_USAGE;
            goto out;
        }
        {
            char buf[128], *save = NULL;

            (void)sf_snprintf(buf, sizeof(buf), "%s", v);
            for (char *s = strtok_r(buf, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
                if (strcmp(s, "all") == 0) {
                    any = true;
                    continue;
                }
                if (strcmp(s, "organizations") && strcmp(s, "domains") && strcmp(s, "profiles")) {
                    fprintf(stderr, "scmctl sync: --scope \"%s\" is not one of organizations, domains, profiles, all\n", s);
                    rc = CTL_EXIT_USAGE;
                    goto out;
                }
                cJSON_AddItemToArray(scope, cJSON_CreateString(s));
            }
        }
    }
    if (any)
        cJSON_DeleteItemFromObject(data, "scope");
    if ((c = ctl_ctx_new(argc, argv, &err)) == NULL) {
        ctl_report("sync", &err);
        rc = CTL_EXIT_USAGE;
        goto out;
    }
    if (ctl_resolve_account(c, &account, &err) < 0)
        goto fail;
    cJSON_AddStringToObject(data, "account", account);
    if (ctl_publish(c, SF_TOPIC_CATALOG_COMMANDS, account, SF_CMD_CATALOG_SYNC, data, &id, &err) < 0)
        goto fail;
    if (no_wait) {
        if (ctl_json(c))
            printf("{\"command_id\": \"%s\"}\n", id);
        else
            printf("sync requested (command %s)\n", id);
        rc = CTL_EXIT_OK;
        goto out;
    }
    w.c = c;
    if (!ctl_quiet(c) && !ctl_json(c))
        fprintf(stderr, "sync of account \"%s\" requested (command %s), waiting...\n", account, id);
    if (ctl_wait_answer(c, id, finals, 0, on_event, &w, &ev, &err) < 0)
        goto fail;
    print_result(c, ev);
    rc = strcmp(sf_event_type(ev), SF_EV_CATALOG_SYNCED) == 0 ? CTL_EXIT_OK : CTL_EXIT_FAIL;
    goto out;
fail:
    ctl_report("sync", &err);
out:
    sf_event_free(ev);
    free(id);
    free(account);
    cJSON_Delete(data);
    ctl_ctx_free(c);
    return rc;
}
