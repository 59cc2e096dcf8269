/*
 * scmctl license set N|show - the repository's license count
 * (repo_settings.license_max = most certificates counted active). Raising
 * it lets repo-ingest store the certificates it kept back as not_stored
 * (its ingest.retry task, SCMFLOW_INGEST_RETRY_INTERVAL).
 */
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "sf_db.h"
#include "sf_util.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: scmctl license show\n"
            "       scmctl license set N\n\n"
            "show: the license count (most active certificates in the repository), the\n"
            "number of active certificates, and the collected certificates waiting for room\n"
            "(not_stored). set: change the count (0..10^15). Certificates kept back are stored\n"
            "by repo-ingest shortly after the count is raised.\n\n");
    ctl_print_common_help(out);
}

static int show(ctl_ctx *c, sf_db *db, sf_error *err)
{
    static const char sql[] =
        "SELECT license_max, (SELECT count(*) FROM certificates WHERE status = 'active'),"
        " (SELECT count(*) FROM collected_chains WHERE state = 'not_stored'),"
        " to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
        " FROM repo_settings WHERE id = 1";
    PGresult *res = NULL;
    int64_t max, active, waiting;

    if (sf_db_exec(db, sql, 0, NULL, &res, err) < 0)
        return -1;
    if (PQntuples(res) != 1 || sf_db_get_i64(res, 0, 0, &max, err) < 0 ||
        sf_db_get_i64(res, 0, 1, &active, err) < 0 || sf_db_get_i64(res, 0, 2, &waiting, err) < 0) {
        if (PQntuples(res) != 1)
            sf_error_set(err, SF_ERR_INTERNAL, 0, "repo_settings has no row");
        PQclear(res);
        return -1;
    }
    if (ctl_json(c)) {
        cJSON *o = cJSON_CreateObject();

        cJSON_AddNumberToObject(o, "license_max", (double)max);
        cJSON_AddNumberToObject(o, "active", (double)active);
        cJSON_AddNumberToObject(o, "not_stored", (double)waiting);
        cJSON_AddStringToObject(o, "updated_at", PQgetvalue(res, 0, 3));
        ctl_print_json(o);
        cJSON_Delete(o);
    } else {
        printf("license count:        %lld\n", (long long)max);
        printf("active certificates:  %lld\n", (long long)active);
        printf("waiting (not_stored): %lld\n", (long long)waiting);
        printf("updated:              %s\n", PQgetvalue(res, 0, 3));
    }
    PQclear(res);
    return 0;
}

int ctl_cmd_license(int argc, char **argv)
{
    static const char sql_set[] =
        "UPDATE repo_settings SET license_max = $1::bigint, updated_at = now() WHERE id = 1";
    sf_error err = {0};
    ctl_ctx *c = NULL;
    sf_db *db;
    const char *sub = NULL, *val = NULL;
    int64_t n = 0;
    int rc = CTL_EXIT_FAIL;

    if (ctl_wants_help(argc, argv)) {
        usage(stdout);
        return CTL_EXIT_OK;
    }
    for (int i = 1; i < argc; i++) {
        if (ctl_common_opt(argc, argv, &i))
            continue;
        if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "scmctl license: unknown option \"%s\" (see --help)\n", argv[i]);
            return CTL_EXIT_USAGE;
        }
        if (sub == NULL)
            sub = argv[i];
        else if (val == NULL)
            val = argv[i];
        else {
            fprintf(stderr, "scmctl license: unexpected argument \"%s\" (see --help)\n", argv[i]);
            return CTL_EXIT_USAGE;
        }
    }
    if (sub == NULL || (strcmp(sub, "show") && strcmp(sub, "set")) ||
        (strcmp(sub, "set") == 0 && val == NULL) || (strcmp(sub, "show") == 0 && val)) {
        fprintf(stderr, "scmctl license: expected \"show\" or \"set N\" (see --help)\n");
        return CTL_EXIT_USAGE;
    }
    if (val && sf_str_to_i64(val, 0, 999999999999999LL, &n) < 0) {
        fprintf(stderr, "scmctl license set: \"%s\" is not a count (0..10^15)\n", val);
        return CTL_EXIT_USAGE;
    }
    if ((c = ctl_ctx_new(argc, argv, &err)) == NULL) {
        ctl_report("license", &err);
        return CTL_EXIT_USAGE;
    }
    if ((db = ctl_db(c, &err)) == NULL)
        goto fail;
    if (val) {
        char b[32];
        const char *p[1] = {b};

        (void)sf_snprintf(b, sizeof(b), "%lld", (long long)n);
        if (sf_db_exec(db, sql_set, 1, p, NULL, &err) < 0)
            goto fail;
        if (!ctl_json(c))
            printf("license count set to %lld\n", (long long)n);
    }
    if ((val == NULL || ctl_json(c)) && show(c, db, &err) < 0)
        goto fail;
    rc = CTL_EXIT_OK;
    goto out;
fail:
    ctl_report("license", &err);
out:
    ctl_ctx_free(c);
    return rc;
}
