/*
 * scmctl catalog - the mirrored SCM catalog: organizations (with
 * departments), domains, profiles. Reads the database only.
 */
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "ctl.h"
#include "sf_db.h"
#include "sf_util.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: scmctl catalog organizations|domains|profiles [--all] [--json]\n\n"
            "Prints the mirrored catalog of the account (--account or the default): id,\n"
            "name, status and the time of the last sync, plus a few columns per kind.\n"
            "Entries removed from SCM are shown only with --all.\n\n");
    ctl_print_common_help(out);
}

#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

typedef struct kind {
    const char *name;
    const char *sql;
    int ncols;
    const char *const *headers;
    const char *const *keys; /* JSON keys */
} kind;

static const char *const org_h[] = {"ID", "NAME", "PARENT", "CERT TYPES", "STATUS", "LAST SYNC"};
static const char *const org_k[] = {"id", "name", "parent_id", "cert_types", "status", "last_synced_at"};
static const char *const dom_h[] = {"ID", "NAME", "STATE", "VALIDATION", "DCV EXPIRES", "DELEGATED TO",
                                    "STATUS", "LAST SYNC"};
static const char *const dom_k[] = {"id", "name", "state", "validation_status", "dcv_expiration",
                                    "delegated_to", "status", "last_synced_at"};
static const char *const pro_h[] = {"ID", "NAME", "TERMS", "KEY TYPES", "ORGS", "STATUS", "LAST SYNC"};
static const char *const pro_k[] = {"id", "name", "terms", "key_types", "org_ids", "status",
                                    "last_synced_at"};

static const kind kinds[] = {
    {"organizations",
     "SELECT id::text, name, coalesce(parent_id::text, ''), array_to_string(cert_types, ','), status, "
     TS("last_synced_at") " FROM catalog_organizations WHERE account = $1 AND ($2 OR status = 'active')"
     " ORDER BY coalesce(parent_id, id), parent_id NULLS FIRST, id",
     6, org_h, org_k},
    {"domains",
     "SELECT d.id::text, d.name, coalesce(d.state, ''), coalesce(d.validation_status, ''),"
     " coalesce(d.dcv_expiration::text, ''),"
     " coalesce((SELECT string_agg(org_id::text, ',' ORDER BY org_id) FROM catalog_domain_delegations g"
     "   WHERE g.account = d.account AND g.domain_id = d.id), ''), d.status, " TS("d.last_synced_at")
     " FROM catalog_domains d WHERE d.account = $1 AND ($2 OR d.status = 'active') ORDER BY d.name, d.id",
     8, dom_h, dom_k},
    {"profiles",
     "SELECT p.id::text, p.name, array_to_string(p.terms, ','),"
     " coalesce((SELECT string_agg(k || ':' || (SELECT string_agg(x, '/') FROM"
     "   jsonb_array_elements_text(p.key_types->k) x), ' ' ORDER BY k) FROM jsonb_object_keys(p.key_types) k), ''),"
     " coalesce((SELECT string_agg(org_id::text, ',' ORDER BY org_id) FROM catalog_profile_orgs o"
     "   WHERE o.account = p.account AND o.profile_id = p.id), ''), p.status, " TS("p.last_synced_at")
     " FROM catalog_profiles p WHERE p.account = $1 AND ($2 OR p.status = 'active') ORDER BY p.id",
     7, pro_h, pro_k},
};

int ctl_cmd_catalog(int argc, char **argv)
{
    sf_error err = {0};
    ctl_ctx *c = NULL;
    const kind *k = NULL;
    bool all = false;
    char *account = NULL;
    sf_db *db;
    PGresult *res = NULL;
    int rc = CTL_EXIT_FAIL;

    if (ctl_wants_help(argc, argv)) {
        usage(stdout);
        return CTL_EXIT_OK;
    }
    for (int i = 1; i < argc; i++) {
        if (ctl_common_opt(argc, argv, &i))
            continue;
        if (strcmp(argv[i], "--all") == 0) {
            all = true;
            continue;
        }
        for (size_t j = 0; k == NULL && j < SF_ARRAY_LEN(kinds); j++)
            if (strcmp(argv[i], kinds[j].name) == 0 ||
                (strlen(argv[i]) >= 3 && strncmp(argv[i], kinds[j].name, strlen(argv[i])) == 0))
                k = &kinds[j];
        if (k == NULL) {
            fprintf(stderr, "scmctl catalog: unknown argument \"%s\" (see --help)\n", argv[i]);
            return CTL_EXIT_USAGE;
        }
    }
    if (k == NULL) {
        usage(stderr);
        return CTL_EXIT_USAGE;
    }
    if ((c = ctl_ctx_new(argc, argv, &err)) == NULL) {
        ctl_report("catalog", &err);
        return CTL_EXIT_USAGE;
    }
    if ((db = ctl_db(c, &err)) == NULL || ctl_resolve_account(c, &account, &err) < 0)
        goto fail;
    {
        const char *p[2] = {account, all ? "true" : "false"};

        if (sf_db_exec(db, k->sql, 2, p, &res, &err) < 0)
            goto fail;
    }
    if (ctl_json(c)) {
        cJSON *arr = cJSON_CreateArray();

        for (int r = 0; r < PQntuples(res); r++) {
            cJSON *o = cJSON_CreateObject();

            for (int col = 0; col < k->ncols; col++) {
                const char *v = PQgetvalue(res, r, col);
                int64_t n;

                if (strcmp(k->keys[col], "id") == 0 && sf_str_to_i64(v, 0, INT64_MAX, &n) == 0)
                    cJSON_AddNumberToObject(o, "id", (double)n);
                else if (v[0] == '\0')
                    cJSON_AddNullToObject(o, k->keys[col]);
                else
                    cJSON_AddStringToObject(o, k->keys[col], v);
            }
            cJSON_AddItemToArray(arr, o);
        }
        ctl_print_json(arr);
        cJSON_Delete(arr);
    } else {
        ctl_table *t = ctl_table_new((size_t)k->ncols, k->headers);
        const char *row[8];

        for (int r = 0; t != NULL && r < PQntuples(res); r++) {
            for (int col = 0; col < k->ncols; col++)
                row[col] = PQgetvalue(res, r, col)[0] ? PQgetvalue(res, r, col) : NULL;
            (void)ctl_table_add(t, row);
        }
        if (t != NULL)
            ctl_table_print(t, stdout);
        ctl_table_free(t);
        if (PQntuples(res) == 0)
            fprintf(stderr, "(no %s mirrored for account \"%s\" yet: run scmctl sync)\n", k->name, account);
    }
    rc = CTL_EXIT_OK;
    goto out;
fail:
    ctl_report("catalog", &err);
out:
    PQclear(res);
    free(account);
    ctl_ctx_free(c);
    return rc;
}
