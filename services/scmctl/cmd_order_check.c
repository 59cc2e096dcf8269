/*
 * scmctl order check ID|--all - ask status-poller for a status check now
 * (scmflow.order.check_status on <prefix>status.commands). For one order it
 * waits for the answer: order.status_changed (the status SCM reports, also
 * when unchanged) or order.failed (unknown order, SCM error).
 */
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "sf_msg.h"
#include "sf_util.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: scmctl order check ORDER_ID [--no-wait]\n"
            "       scmctl order check --all\n\n"
            "Asks status-poller to check the order's status in SCM now (and to collect the\n"
            "certificate when SCM has issued it) and prints the status SCM reports. --all\n"
            "makes every open order due now and returns at once. Exit 0 when answered, 1 on\n"
            "a failure or when no answer came within --timeout.\n\n");
    ctl_print_common_help(out);
}

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int ctl_cmd_order_check(int argc, char **argv)
{
    static const char *const finals[] = {SF_EV_ORDER_STATUS_CHANGED, SF_EV_ORDER_FAILED, NULL};
    sf_error err = {0};
    ctl_ctx *c = NULL;
    cJSON *data = NULL;
    const char *order_id = NULL;
    char *id = NULL;
    bool all = false, no_wait = false;
    sf_event *ev = NULL;
    int rc = CTL_EXIT_FAIL;

    if (ctl_wants_help(argc, argv)) {
        usage(stdout);
        return CTL_EXIT_OK;
    }
    for (int i = 1; i < argc; i++) {
        if (ctl_common_opt(argc, argv, &i))
            continue;
        if (strcmp(argv[i], "--all") == 0)
            all = true;
        else if (strcmp(argv[i], "--no-wait") == 0)
            no_wait = true;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "scmctl order check: unknown option \"%s\" (see --help)\n", argv[i]);
            return CTL_EXIT_USAGE;
        } else if (order_id == NULL)
            order_id = argv[i];
        else {
            fprintf(stderr, "scmctl order check: one order id only (see --help)\n");
            return CTL_EXIT_USAGE;
        }
    }
    if ((order_id == NULL) == !all) {
        fprintf(stderr, "scmctl order check: give an order id or --all (see --help)\n");
        return CTL_EXIT_USAGE;
    }
    if ((data = cJSON_CreateObject()) == NULL)
        return CTL_EXIT_FAIL;
    if (all)
        cJSON_AddBoolToObject(data, "all", true);
    else
        cJSON_AddStringToObject(data, "order_id", order_id);
    if (sf_event_validate_data(SF_CMD_ORDER_CHECK_STATUS, data, &err) < 0) {
        ctl_report("order check", &err);
        rc = CTL_EXIT_USAGE;
        goto out;
    }
    if ((c = ctl_ctx_new(argc, argv, &err)) == NULL) {
        ctl_report("order check", &err);
        rc = CTL_EXIT_USAGE;
        goto out;
    }
    if (ctl_publish(c, SF_TOPIC_STATUS_COMMANDS, all ? "all" : order_id,
                    SF_CMD_ORDER_CHECK_STATUS, data, &id, &err) < 0)
        goto fail;
    if (all || no_wait) {
        if (ctl_json(c))
            printf("{\"command_id\": \"%s\"}\n", id);
        else
            printf("status check of %s requested (command %s)\n", all ? "all open orders" : order_id, id);
        rc = CTL_EXIT_OK;
        goto out;
    }
    if (!ctl_quiet(c) && !ctl_json(c))
        fprintf(stderr, "status check of order %s requested (command %s), waiting...\n", order_id, id);
    if (ctl_wait_answer(c, id, finals, 0, NULL, NULL, &ev, &err) < 0)
        goto fail;
    {
        const cJSON *d = sf_event_data(ev);
        bool ok = strcmp(sf_event_type(ev), SF_EV_ORDER_STATUS_CHANGED) == 0;

        if (ctl_json(c)) {
            cJSON *o = cJSON_CreateObject();

            cJSON_AddStringToObject(o, "type", sf_event_type(ev));
            cJSON_AddItemToObject(o, "data", cJSON_Duplicate(d, true));
            ctl_print_json(o);
            cJSON_Delete(o);
        } else if (ok) {
            const char *old = str(d, "old_status"), *st = str(d, "status");

            if (old && st && strcmp(old, st) != 0)
                printf("order %s: status %s (was %s)\n", order_id, st, old);
            else
                printf("order %s: status %s\n", order_id, st ? st : "?");
        } else {
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(d, "error");

            fprintf(stderr, "scmctl order check: order %s: %s (%s)\n", order_id,
                    str(e, "message") ? str(e, "message") : "check failed",
                    str(e, "code") ? str(e, "code") : "error");
        }
        rc = ok ? CTL_EXIT_OK : CTL_EXIT_FAIL;
    }
    goto out;
fail:
    ctl_report("order check", &err);
out:
    sf_event_free(ev);
    free(id);
    cJSON_Delete(data);
    ctl_ctx_free(c);
    return rc;
}
