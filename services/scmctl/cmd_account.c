/*
 * scmctl account - the SCM accounts stored in scm_accounts.
 *
 *   set      check the credentials and the MRAO role against SCM, then save
 *            (password sealed with the master key; nothing saved on failure)
 *   show     one account, without the password
 *   list     every account
 *   default  make an account the default
 *   delete   remove an account (refused while orders refer to it)
 */
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "ctl.h"
#include "sf_db.h"
#include "sf_log.h"
#include "sf_scm.h"
#include "sf_seal.h"
#include "sf_util.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: scmctl account set [--name NAME] --login LOGIN --customer-uri URI [--base-url URL]\n"
            "                          [--password-file FILE | --password-stdin] [--default]\n"
            "                          [--allow-non-mrao] [--ca-bundle FILE]\n"
            "       scmctl account show [NAME]\n"
            "       scmctl account list\n"
            "       scmctl account default NAME\n"
            "       scmctl account delete NAME\n\n"
            "set checks the credentials and the MRAO role against SCM before saving; the\n"
            "password is prompted (no echo) unless --password-file or --password-stdin is\n"
            "given, and is stored sealed (AES-256-GCM, SCMFLOW_MASTER_KEY_FILE). NAME defaults\n"
            "to \"default\"; the first account saved becomes the default. --base-url defaults\n"
            "to SCMFLOW_SCM_BASE_URL.\n\n");
    ctl_print_common_help(out);
}

static bool name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');

        if (!alnum && (i == 0 || strchr("._:@-", ch) == NULL))
            return false;
    }
    return true;
}

static const char *val(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);

    if (strcmp(argv[*i], name) == 0) {
        if (*i + 1 >= argc)
            return NULL;
        return argv[++*i];
    }
    if (strncmp(argv[*i], name, n) == 0 && argv[*i][n] == '=')
        return argv[*i] + n + 1;
    return NULL;
}

static int account_set(ctl_ctx *c, int argc, char **argv)
{
    const char *name = "default", *login = NULL, *uri = NULL, *base = NULL, *pwfile = NULL,
               *ca = NULL;
    bool pwstdin = false, make_default = false, allow_non_mrao = false;
    char *password = NULL, *sealed = NULL, aad[200], *roles_text = NULL;
    sf_scm_account acct = {0};
    sf_scm_client *scm = NULL;
    sf_scm_roles *roles = NULL;
    sf_sealer *seal;
    sf_db *db;
    sf_error err = {0};
    int rc = CTL_EXIT_FAIL;

    for (int i = 2; i < argc; i++) {
        const char *v;

        if (ctl_common_opt(argc, argv, &i))
            continue;
        if ((v = val(argc, argv, &i, "--name")) != NULL)
            name = v;
        else if ((v = val(argc, argv, &i, "--login")) != NULL)
            login = v;
        else if ((v = val(argc, argv, &i, "--customer-uri")) != NULL)
            uri = v;
        else if ((v = val(argc, argv, &i, "--base-url")) != NULL)
            base = v;
        else if ((v = val(argc, argv, &i, "--password-file")) != NULL)
            pwfile = v;
        else if ((v = val(argc, argv, &i, "--ca-bundle")) != NULL)
            ca = v;
        else if (strcmp(argv[i], "--password-stdin") == 0)
            pwstdin = true;
        else if (strcmp(argv[i], "--default") == 0)
            make_default = true;
        else if (strcmp(argv[i], "--allow-non-mrao") == 0)
            allow_non_mrao = true;
        else if (strcmp(argv[i], "--password") == 0 || strncmp(argv[i], "--password=", 11) == 0) {
            fprintf(stderr, "scmctl account set: passwords are never taken from the command line "
                            "(use the prompt, --password-file or --password-stdin)\n");
            return CTL_EXIT_USAGE;
        } else {
            fprintf(stderr, "scmctl account set: unknown or incomplete option \"%s\" (see --help)\n", argv[i]);
            return CTL_EXIT_USAGE;
        }
    }
    if (login == NULL || uri == NULL) {
        fprintf(stderr, "scmctl account set: --login and --customer-uri are required (see --help)\n");
        return CTL_EXIT_USAGE;
    }
    if (!name_ok(name)) {
        fprintf(stderr, "scmctl account set: --name must be 1..128 of [A-Za-z0-9._:@-], starting alphanumeric\n");
        return CTL_EXIT_USAGE;
    }
    if (base == NULL)
        base = sf_config_str(ctl_config(c), "SCMFLOW_SCM_BASE_URL");
    /* Everything local first (key, database), so a bad setup does not cost
     * a round trip to SCM. */
    if ((seal = ctl_sealer(c, &err)) == NULL || (db = ctl_db(c, &err)) == NULL) {
        ctl_report("account set", &err);
        return CTL_EXIT_FAIL;
    }
    if (ctl_read_secret("SCM password: ", pwfile, pwstdin, &password, &err) < 0) {
        ctl_report("account set", &err);
        return CTL_EXIT_FAIL;
    }
    acct.base_url = base;
    acct.login = login;
    acct.password = password;
    acct.customer_uri = uri;
    acct.ca_bundle = ca;
    acct.retry_max_attempts = 3;
    acct.retry_max_total_ms = 30000;
    if ((scm = sf_scm_client_new(&acct, &err)) == NULL) {
        ctl_report("account set", &err);
        goto out;
    }
    if (sf_scm_check_roles(scm, &roles, &err) < 0) {
        if (err.cls == SF_ERR_AUTH)
            fprintf(stderr, "scmctl account set: SCM refused the credentials: %s (nothing saved)\n", err.msg);
        else
            fprintf(stderr, "scmctl account set: could not check the account with SCM: %s (nothing saved)\n",
                    err.msg);
        goto out;
    }
    if (!roles->is_mrao && !allow_non_mrao) {
        fprintf(stderr, "scmctl account set: the SCM account \"%s\" is not an MRAO administrator "
                        "(scmflow needs MRAO; --allow-non-mrao to save it anyway); nothing saved\n", login);
        goto out;
    }
    (void)sf_snprintf(aad, sizeof(aad), CTL_ACCOUNT_PASSWORD_AAD_FMT, name);
    if (sf_seal(seal, password, strlen(password), aad, &sealed, &err) < 0) {
        ctl_report("account set", &err);
        goto out;
    }
    {
        cJSON *ra = cJSON_CreateArray();

        for (size_t i = 0; i < roles->roles.n; i++)
            cJSON_AddItemToArray(ra, cJSON_CreateString(roles->roles.v[i]));
        roles_text = cJSON_PrintUnformatted(ra);
        cJSON_Delete(ra);
    }
    {
        static const char sql_clear[] = "UPDATE scm_accounts SET is_default = false WHERE is_default AND name <> $1";
        static const char sql_up[] =
            "INSERT INTO scm_accounts AS a (name, base_url, login, customer_uri, password_sealed,"
            " is_default, is_mrao, roles)"
            " VALUES ($1, $2, $3, $4, $5, $6::boolean OR NOT EXISTS (SELECT 1 FROM scm_accounts"
            "   WHERE is_default AND name <> $1), $7::boolean,"
            " ARRAY(SELECT jsonb_array_elements_text($8::jsonb)))"
            " ON CONFLICT (name) DO UPDATE SET base_url = EXCLUDED.base_url, login = EXCLUDED.login,"
            " customer_uri = EXCLUDED.customer_uri, password_sealed = EXCLUDED.password_sealed,"
            " is_default = a.is_default OR EXCLUDED.is_default, is_mrao = EXCLUDED.is_mrao,"
            " roles = EXCLUDED.roles, updated_at = now()"
            " RETURNING is_default";
        const char *p1[1] = {name};
        const char *p[8] = {name, base, login, uri, sealed, make_default ? "true" : "false",
                            roles->is_mrao ? "true" : "false", roles_text ? roles_text : "[]"};
        PGresult *res = NULL;
        bool is_def = false;

        if (sf_db_begin(db, &err) < 0)
            goto db_fail;
        if ((make_default && sf_db_exec(db, sql_clear, 1, p1, NULL, &err) < 0) ||
            sf_db_exec(db, sql_up, 8, p, &res, &err) < 0) {
            (void)sf_db_rollback(db, NULL);
            goto db_fail;
        }
        (void)sf_db_get_bool(res, 0, 0, &is_def, NULL);
        PQclear(res);
        if (sf_db_commit(db, &err) < 0)
            goto db_fail;
        {
            char kid[SF_SEAL_KEY_ID_LEN + 1] = "";

            (void)sf_seal_key_id(sealed, kid);
            printf("account \"%s\" saved (%s, %s%s; password sealed with key %s)\n", name, login,
                   roles->is_mrao ? "MRAO" : "not MRAO", is_def ? ", default" : "", kid);
        }
        rc = CTL_EXIT_OK;
        goto out;
    db_fail:
        ctl_report("account set", &err);
    }
out:
    cJSON_free(roles_text);
    free(sealed);
    sf_scm_roles_free(roles);
    sf_scm_client_free(scm);
    sf_secret_str_free(password);
    return rc;
}

static int account_show(ctl_ctx *c, const char *name, bool all)
{
    static const char sql[] =
        "SELECT name, base_url, login, customer_uri, auth_mode, is_default, coalesce(is_mrao::text, ''),"
        " array_to_string(roles, ','), split_part(password_sealed, '.', 2),"
        " to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
        " to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
        " FROM scm_accounts WHERE $1::text IS NULL OR name = $1 ORDER BY name";
    static const char *const cols[] = {"name", "base_url", "login", "customer_uri", "auth_mode",
                                       "default", "mrao", "roles", "key_id", "created", "updated"};
    sf_error err = {0};
    sf_db *db = ctl_db(c, &err);
    char *def = NULL;
    const char *p[1] = {NULL};
    PGresult *res = NULL;
    int rc = CTL_EXIT_FAIL;

    if (db == NULL) {
        ctl_report("account", &err);
        return CTL_EXIT_FAIL;
    }
    if (!all) {
        if (name == NULL) {
            if (ctl_resolve_account(c, &def, &err) < 0) {
                ctl_report("account show", &err);
                return CTL_EXIT_FAIL;
            }
            name = def;
        }
        p[0] = name;
    }
    if (sf_db_exec(db, sql, 1, p, &res, &err) < 0) {
        ctl_report("account", &err);
        goto out;
    }
    if (!all && PQntuples(res) == 0) {
        fprintf(stderr, "scmctl account show: no account named \"%s\"\n", name);
        goto out;
    }
    if (ctl_json(c)) {
        cJSON *arr = cJSON_CreateArray();

        for (int r = 0; r < PQntuples(res); r++) {
            cJSON *o = cJSON_CreateObject();

            for (int k = 0; k < (int)SF_ARRAY_LEN(cols); k++) {
                const char *v = PQgetvalue(res, r, k);

                if (k == 5)
                    cJSON_AddBoolToObject(o, cols[k], v[0] == 't');
                else if (k == 6)
                    v[0] ? (void)cJSON_AddBoolToObject(o, cols[k], v[0] == 't')
                         : (void)cJSON_AddNullToObject(o, cols[k]);
                else
                    cJSON_AddStringToObject(o, cols[k], v);
            }
            cJSON_AddItemToArray(arr, o);
        }
        if (all)
            ctl_print_json(arr);
        else
            ctl_print_json(cJSON_GetArrayItem(arr, 0));
        cJSON_Delete(arr);
    } else if (all) {
        static const char *const h[] = {"NAME", "LOGIN", "CUSTOMER URI", "BASE URL", "DEFAULT", "MRAO"};
        ctl_table *t = ctl_table_new(6, h);

        for (int r = 0; t != NULL && r < PQntuples(res); r++) {
            const char *row[6] = {PQgetvalue(res, r, 0), PQgetvalue(res, r, 2), PQgetvalue(res, r, 3),
                                  PQgetvalue(res, r, 1), PQgetvalue(res, r, 5)[0] == 't' ? "yes" : "",
                                  PQgetvalue(res, r, 6)[0] == 't' ? "yes" : "no"};
            (void)ctl_table_add(t, row);
        }
        if (t != NULL)
            ctl_table_print(t, stdout);
        ctl_table_free(t);
    } else {
        for (int k = 0; k < (int)SF_ARRAY_LEN(cols); k++)
            printf("%-13s %s\n", cols[k], PQgetvalue(res, 0, k));
        printf("%-13s %s\n", "password", "(sealed, not shown)");
    }
    rc = CTL_EXIT_OK;
out:
    PQclear(res);
    free(def);
    return rc;
}

static int account_simple(ctl_ctx *c, const char *what, const char *name)
{
    sf_error err = {0};
    sf_db *db = ctl_db(c, &err);
    const char *p[1] = {name};
    PGresult *res = NULL;

    if (db == NULL)
        goto fail;
    if (strcmp(what, "default") == 0) {
        if (sf_db_begin(db, &err) < 0)
            goto fail;
        if (sf_db_exec(db, "UPDATE scm_accounts SET is_default = false WHERE is_default AND name <> $1",
                       1, p, NULL, &err) < 0 ||
            sf_db_exec(db, "UPDATE scm_accounts SET is_default = true, updated_at = now() WHERE name = $1",
                       1, p, &res, &err) < 0) {
            (void)sf_db_rollback(db, NULL);
            goto fail;
        }
        if (sf_db_affected(res) != 1) {
            (void)sf_db_rollback(db, NULL);
            PQclear(res);
            fprintf(stderr, "scmctl account default: no account named \"%s\"\n", name);
            return CTL_EXIT_FAIL;
        }
        PQclear(res);
        if (sf_db_commit(db, &err) < 0)
            goto fail;
        printf("account \"%s\" is now the default\n", name);
        return CTL_EXIT_OK;
    }
    if (sf_db_exec(db, "DELETE FROM scm_accounts WHERE name = $1", 1, p, &res, &err) < 0) {
        if (err.code == SF_DB_SQLSTATE('2', '3', '5', '0', '3'))
            sf_error_set(&err, SF_ERR_REJECTED, 0, "orders refer to account \"%s\": not deleted", name);
        goto fail;
    }
    if (sf_db_affected(res) != 1) {
        PQclear(res);
        fprintf(stderr, "scmctl account delete: no account named \"%s\"\n", name);
        return CTL_EXIT_FAIL;
    }
    PQclear(res);
    printf("account \"%s\" deleted\n", name);
    return CTL_EXIT_OK;
fail:
    ctl_report("account", &err);
    return CTL_EXIT_FAIL;
}

int ctl_cmd_account(int argc, char **argv)
{
    sf_error err = {0};
    ctl_ctx *c;
    const char *sub = NULL, *arg = NULL;
    int rc;

    if (ctl_wants_help(argc, argv)) {
        usage(stdout);
        return CTL_EXIT_OK;
    }
    for (int i = 1; i < argc; i++) {
        if (ctl_common_opt(argc, argv, &i))
            continue;
        if (sub == NULL)
            sub = argv[i];
        else if (arg == NULL && argv[i][0] != '-')
            arg = argv[i];
    }
    if (sub == NULL) {
        usage(stderr);
        return CTL_EXIT_USAGE;
    }
    if ((c = ctl_ctx_new(argc, argv, &err)) == NULL) {
        ctl_report("account", &err);
        return CTL_EXIT_USAGE;
    }
    if (strcmp(sub, "set") == 0) {
        /* argv[1] is "set": options start after it */
        int k = 1;

        while (k < argc && strcmp(argv[k], "set") != 0)
            k++;
        rc = account_set(c, argc - (k - 1), argv + (k - 1));
    } else if (strcmp(sub, "show") == 0) {
        rc = account_show(c, arg, false);
    } else if (strcmp(sub, "list") == 0) {
        rc = account_show(c, NULL, true);
    } else if ((strcmp(sub, "default") == 0 || strcmp(sub, "delete") == 0) && arg != NULL) {
        rc = account_simple(c, sub, arg);
    } else {
        fprintf(stderr, "scmctl account: unknown subcommand \"%s\" or missing NAME (see --help)\n", sub);
        rc = CTL_EXIT_USAGE;
    }
    ctl_ctx_free(c);
    return rc;
}
