/*
 * scmctl cert list|show|export - the certificate repository (certificates
 * table, filled by repo-ingest).
 *
 * export: the keystore repo-ingest built and sealed is used when its type is
 * the one asked for and (PKCS12/JKS) the password given is the order's
 * keystore password; otherwise the keystore is built here from the order's
 * sealed private key with the password given. Secrets are unsealed only in
 * memory, wiped after use, never printed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "ctl.h"
#include "sf_db.h"
#include "sf_keygen.h"
#include "sf_keystore.h"
#include "sf_seal.h"
#include "sf_x509.h"
#include "sf_util.h"

/* Same AADs as services/repo-ingest/ri.h and order-submitter. */
#define CERT_AAD_KEY_FMT "order:%s:key"
#define CERT_AAD_KSPW_FMT "order:%s:keystore_password"
#define CERT_AAD_KEYSTORE_FMT "certificate:%s:keystore"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: scmctl cert list [--cn TEXT] [--status active|revoked|superseded|expired]\n"
            "                        [--expiring-within DURATION] [--limit N]\n"
            "       scmctl cert show ID\n"
            "       scmctl cert export ID --format pem|p12|jks --out FILE\n"
            "                        [--password-file FILE | --password-stdin]\n\n"
            "list: certificates of the repository (--cn matches part of the common name,\n"
            "case-insensitive; --expiring-within 30d: not_after within that time from now).\n"
            "show: details and the chain as PEM (leaf first).\n"
            "export: writes a keystore (mode 0600). p12 and jks need a password (prompted,\n"
            "or --password-file / --password-stdin); the file is protected with it. pem\n"
            "takes an optional password (file/stdin only) that encrypts the key; without a\n"
            "private key (imported orders, your own CSR) pem exports the chain only.\n\n");
    ctl_print_common_help(out);
}

static int list(ctl_ctx *c, sf_db *db, const char *cn, const char *status, const char *within,
                const char *limit, sf_error *err)
{
    static const char sql[] =
        "SELECT id, coalesce(common_name, ''), array_to_string(sans, ','), issuer, serial,"
        " to_char(not_after AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), status, order_id,"
        " coalesce(keystore_type, '')"
        " FROM certificates"
        " WHERE ($1::text IS NULL OR common_name ILIKE '%' || $1 || '%')"
        " AND ($2::text IS NULL OR status = $2)"
        " AND ($3::bigint IS NULL OR not_after <= now() + $3::bigint * interval '1 millisecond')"
        " ORDER BY id LIMIT $4::bigint";
    const char *p[4] = {cn, status, within, limit};
    PGresult *res = NULL;
    int n;

    if (sf_db_exec(db, sql, 4, p, &res, err) < 0)
        return -1;
    n = PQntuples(res);
    if (ctl_json(c)) {
        cJSON *a = cJSON_CreateArray();

        for (int i = 0; a && i < n; i++) {
            cJSON *o = cJSON_CreateObject(), *s = cJSON_CreateArray();
            char *sans = sf_strdup(PQgetvalue(res, i, 2)), *save = NULL;

            cJSON_AddNumberToObject(o, "id", atof(PQgetvalue(res, i, 0)));
            cJSON_AddStringToObject(o, "order_id", PQgetvalue(res, i, 7));
            cJSON_AddStringToObject(o, "common_name", PQgetvalue(res, i, 1));
            for (char *t = sans ? strtok_r(sans, ",", &save) : NULL; t; t = strtok_r(NULL, ",", &save))
                cJSON_AddItemToArray(s, cJSON_CreateString(t));
            free(sans);
            cJSON_AddItemToObject(o, "sans", s);
            cJSON_AddStringToObject(o, "issuer", PQgetvalue(res, i, 3));
            cJSON_AddStringToObject(o, "serial", PQgetvalue(res, i, 4));
            cJSON_AddStringToObject(o, "not_after", PQgetvalue(res, i, 5));
            cJSON_AddStringToObject(o, "status", PQgetvalue(res, i, 6));
            if (PQgetvalue(res, i, 8)[0])
                cJSON_AddStringToObject(o, "keystore_type", PQgetvalue(res, i, 8));
            cJSON_AddItemToArray(a, o);
        }
        ctl_print_json(a);
        cJSON_Delete(a);
    } else {
        static const char *const h[] = {"ID", "CN", "SANS", "ISSUER", "SERIAL", "EXPIRES", "STATUS"};
        ctl_table *t = ctl_table_new(7, h);

        for (int i = 0; t && i < n; i++) {
            const char *row[7] = {PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
                                  PQgetvalue(res, i, 3), PQgetvalue(res, i, 4), PQgetvalue(res, i, 5),
                                  PQgetvalue(res, i, 6)};

            (void)ctl_table_add(t, row);
        }
        if (t)
            ctl_table_print(t, stdout);
        ctl_table_free(t);
        if (n == 0)
            fprintf(stderr, "no certificates match\n");
    }
    PQclear(res);
    return 0;
}

static int show(ctl_ctx *c, sf_db *db, const char *id, sf_error *err)
{
    static const char sql[] =
        "SELECT c.id, c.order_id, coalesce(c.ssl_id::text, ''), c.serial, c.issuer, c.subject,"
        " coalesce(c.common_name, ''), array_to_string(c.sans, ', '),"
        " to_char(c.not_before AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
        " to_char(c.not_after AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
        " c.sha256_fingerprint, c.sha1_fingerprint, coalesce(c.key_type, ''),"
        " coalesce(c.key_size::text, ''), coalesce(c.keystore_type, ''), c.status,"
        " coalesce(c.renews_certificate_id::text, ''), c.chain_pem,"
        " to_char(c.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
        " FROM certificates c WHERE c.id = $1::bigint";
    static const char *const names[] = {
        "id", "order_id", "ssl_id", "serial", "issuer", "subject", "common_name", "sans",
        "not_before", "not_after", "sha256_fingerprint", "sha1_fingerprint", "key_type",
        "key_size", "keystore_type", "status", "renews_certificate_id", "chain_pem", "stored_at"};
    const char *p[1] = {id};
    PGresult *res = NULL;

    if (sf_db_exec(db, sql, 1, p, &res, err) < 0)
        return -1;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return sf_error_set(err, SF_ERR_NOT_FOUND, 0, "no certificate with id %s (see scmctl cert list)", id);
    }
    if (ctl_json(c)) {
        cJSON *o = cJSON_CreateObject();

        for (size_t i = 0; i < SF_ARRAY_LEN(names); i++)
            if (PQgetvalue(res, 0, (int)i)[0])
                cJSON_AddStringToObject(o, names[i], PQgetvalue(res, 0, (int)i));
        ctl_print_json(o);
        cJSON_Delete(o);
    } else {
        for (size_t i = 0; i < SF_ARRAY_LEN(names); i++) {
            if (strcmp(names[i], "chain_pem") == 0)
                continue;
            printf("%-22s %s\n", names[i], PQgetvalue(res, 0, (int)i)[0] ? PQgetvalue(res, 0, (int)i) : "-");
        }
        printf("\n%s", PQgetvalue(res, 0, 17));
    }
    PQclear(res);
    return 0;
}

static int write_file(const char *path, const void *data, size_t len, sf_error *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    const unsigned char *p = data;

    if (fd < 0)
        return sf_error_set(err, SF_ERR_INVALID, errno, "could not open \"%s\": %s", path, strerror(errno));
    while (len > 0) {
        ssize_t w = write(fd, p, len);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = errno;

            close(fd);
            return sf_error_set(err, SF_ERR_INTERNAL, e, "could not write \"%s\": %s", path, strerror(e));
        }
        p += w;
        len -= (size_t)w;
    }
    if (close(fd) < 0)
        return sf_error_set(err, SF_ERR_INTERNAL, errno, "could not write \"%s\": %s", path, strerror(errno));
    return 0;
}

static int export(ctl_ctx *c, sf_db *db, const char *id, const char *fmt, const char *outpath,
                  const char *pwfile, bool pwstdin, sf_error *err)
{
    static const char sql[] =
        "SELECT c.order_id, c.sha256_fingerprint, c.chain_pem, c.keystore_type, c.keystore_sealed,"
        " o.private_key_sealed, o.keystore_password_sealed"
        " FROM certificates c JOIN orders o ON o.id = c.order_id WHERE c.id = $1::bigint";
    const char *p[1] = {id};
    PGresult *res = NULL;
    sf_keystore_type t;
    sf_sealer *seal;
    char *pw = NULL, aad[300];
    unsigned char *out = NULL, *opw = NULL, *keypem = NULL;
    size_t outlen = 0, opwlen = 0, keylen = 0;
    EVP_PKEY *key = NULL;
    sf_chain *chain = NULL;
    const char *order_id, *chain_pem;
    bool use_stored = false;
    int rc = -1;

    if (strcmp(fmt, "pem") == 0)
        t = SF_KEYSTORE_PEM;
    else if (strcmp(fmt, "p12") == 0)
        t = SF_KEYSTORE_PKCS12;
    else if (strcmp(fmt, "jks") == 0)
        t = SF_KEYSTORE_JKS;
    else
        return sf_error_field(err, "--format", "format must be pem, p12 or jks, not \"%s\"", fmt);
    if (sf_db_exec(db, sql, 1, p, &res, err) < 0)
        return -1;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return sf_error_set(err, SF_ERR_NOT_FOUND, 0, "no certificate with id %s (see scmctl cert list)", id);
    }
    order_id = PQgetvalue(res, 0, 0);
    chain_pem = PQgetvalue(res, 0, 2);
    if (PQgetisnull(res, 0, 5)) {
        /* no private key: only a PEM chain can be exported */
        if (t != SF_KEYSTORE_PEM) {
            sf_error_set(err, SF_ERR_INVALID, 0,
                         "certificate %s has no private key in scmflow (imported or own CSR): only --format pem (the chain) is possible", id);
            goto out;
        }
        rc = write_file(outpath, chain_pem, strlen(chain_pem), err);
        goto done;
    }
    if (t != SF_KEYSTORE_PEM || pwfile || pwstdin) {
        if (ctl_read_secret(t == SF_KEYSTORE_PEM ? "Key password: " : "Keystore password: ", pwfile,
                            pwstdin, &pw, err) < 0)
            goto out;
        if (sf_keystore_check_password(pw, err) < 0)
            goto out;
    }
    if ((seal = ctl_sealer(c, err)) == NULL)
        goto out;
    if (!PQgetisnull(res, 0, 4) && sf_keystore_type_parse(PQgetvalue(res, 0, 3), &(sf_keystore_type){0}) == 0) {
        sf_keystore_type st;

        (void)sf_keystore_type_parse(PQgetvalue(res, 0, 3), &st);
        if (st == t) {
            if (PQgetisnull(res, 0, 6))
                use_stored = pw == NULL;
            else if (pw) {
                (void)sf_snprintf(aad, sizeof(aad), CERT_AAD_KSPW_FMT, order_id);
                if (sf_unseal(seal, PQgetvalue(res, 0, 6), aad, &opw, &opwlen, err) < 0)
                    goto out;
                use_stored = strcmp((const char *)opw, pw) == 0;
            }
        }
    }
    if (use_stored) {
        (void)sf_snprintf(aad, sizeof(aad), CERT_AAD_KEYSTORE_FMT, PQgetvalue(res, 0, 1));
        if (sf_unseal(seal, PQgetvalue(res, 0, 4), aad, &out, &outlen, err) < 0)
            goto out;
    } else {
        (void)sf_snprintf(aad, sizeof(aad), CERT_AAD_KEY_FMT, order_id);
        if (sf_unseal(seal, PQgetvalue(res, 0, 5), aad, &keypem, &keylen, err) < 0 ||
            sf_key_from_pem((const char *)keypem, keylen, &key, err) < 0 ||
            sf_chain_parse(chain_pem, strlen(chain_pem), &chain, err) < 0 ||
            sf_chain_order(chain, err) < 0 ||
            sf_keystore_build(t, key, chain, pw, NULL, &out, &outlen, err) < 0)
            goto out;
    }
    if (write_file(outpath, out, outlen, err) < 0)
        goto out;
    rc = 0;
done:
    if (rc == 0 && !ctl_quiet(c))
        fprintf(stderr, "certificate %s exported as %s to %s%s\n", id, fmt, outpath,
                use_stored ? "" : (PQgetisnull(res, 0, 5) ? " (chain only: no private key)" : " (built from the sealed key)"));
out:
    sf_secret_free(out, outlen);
    sf_secret_free(opw, opwlen);
    sf_secret_free(keypem, keylen);
    if (pw) {
        sf_memzero(pw, strlen(pw));
        free(pw);
    }
    EVP_PKEY_free(key);
    sf_chain_free(chain);
    PQclear(res);
    return rc;
}

int ctl_cmd_cert(int argc, char **argv)
{
    sf_error err = {0};
    ctl_ctx *c = NULL;
    sf_db *db;
    const char *sub = NULL, *id = NULL, *cn = NULL, *status = NULL, *within = NULL;
    const char *limit = "1000", *fmt = NULL, *outpath = NULL, *pwfile = NULL;
    char withinb[32];
    bool pwstdin = false;
    int rc = CTL_EXIT_FAIL;

    if (ctl_wants_help(argc, argv)) {
        usage(stdout);
        return CTL_EXIT_OK;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;

        if (ctl_common_opt(argc, argv, &i))
            continue;
        if (strcmp(a, "--cn") == 0)
            slot = &cn;
        else if (strcmp(a, "--status") == 0)
            slot = &status;
        else if (strcmp(a, "--expiring-within") == 0)
            slot = &within;
        else if (strcmp(a, "--limit") == 0)
            slot = &limit;
        else if (strcmp(a, "--format") == 0)
            slot = &fmt;
        else if (strcmp(a, "--out") == 0)
            slot = &outpath;
        else if (strcmp(a, "--password-file") == 0)
            slot = &pwfile;
        else if (strcmp(a, "--password-stdin") == 0) {
            pwstdin = true;
            continue;
        } else if (a[0] == '-') {
            fprintf(stderr, "scmctl cert: unknown option \"%s\" (see --help)\n", a);
            return CTL_EXIT_USAGE;
        } else if (sub == NULL) {
            sub = a;
            continue;
        } else if (id == NULL) {
            id = a;
            continue;
        } else {
            fprintf(stderr, "scmctl cert: unexpected argument \"%s\" (see --help)\n", a);
            return CTL_EXIT_USAGE;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "scmctl cert: %s needs a value (see --help)\n", a);
            return CTL_EXIT_USAGE;
        }
        *slot = argv[++i];
    }
    if (sub == NULL || (strcmp(sub, "list") && strcmp(sub, "show") && strcmp(sub, "export"))) {
        fprintf(stderr, "scmctl cert: expected list, show or export (see --help)\n");
        return CTL_EXIT_USAGE;
    }
    if (strcmp(sub, "list") != 0) {
        int64_t v;

        if (id == NULL || sf_str_to_i64(id, 1, INT64_MAX, &v) < 0) {
            fprintf(stderr, "scmctl cert %s: a certificate id (a number, see cert list) is required\n", sub);
            return CTL_EXIT_USAGE;
        }
    } else if (id) {
        fprintf(stderr, "scmctl cert list: unexpected argument \"%s\"\n", id);
        return CTL_EXIT_USAGE;
    }
    if (strcmp(sub, "export") == 0 && (fmt == NULL || outpath == NULL)) {
        fprintf(stderr, "scmctl cert export: --format and --out are required (see --help)\n");
        return CTL_EXIT_USAGE;
    }
    if (pwfile && pwstdin) {
        fprintf(stderr, "scmctl cert: --password-file and --password-stdin exclude each other\n");
        return CTL_EXIT_USAGE;
    }
    if (status && strcmp(status, "active") && strcmp(status, "revoked") && strcmp(status, "superseded") &&
        strcmp(status, "expired")) {
        fprintf(stderr, "scmctl cert list: --status must be active, revoked, superseded or expired\n");
        return CTL_EXIT_USAGE;
    }
    if (within) {
        int64_t ms;

        if (sf_parse_duration_ms(within, &ms) < 0) {
            fprintf(stderr, "scmctl cert list: --expiring-within \"%s\" is not a duration (e.g. 30d)\n", within);
            return CTL_EXIT_USAGE;
        }
        (void)sf_snprintf(withinb, sizeof(withinb), "%lld", (long long)ms);
        within = withinb;
    }
    {
        int64_t v;

        if (sf_str_to_i64(limit, 1, 1000000, &v) < 0) {
            fprintf(stderr, "scmctl cert list: --limit must be 1..1000000\n");
            return CTL_EXIT_USAGE;
        }
    }
    if ((c = ctl_ctx_new(argc, argv, &err)) == NULL) {
        ctl_report("cert", &err);
        return CTL_EXIT_USAGE;
    }
    if ((db = ctl_db(c, &err)) == NULL)
        goto fail;
    if (strcmp(sub, "list") == 0) {
        if (list(c, db, cn, status, within, limit, &err) < 0)
            goto fail;
    } else if (strcmp(sub, "show") == 0) {
        if (show(c, db, id, &err) < 0)
            goto fail;
    } else if (export(c, db, id, fmt, outpath, pwfile, pwstdin, &err) < 0) {
        goto fail;
    }
    rc = CTL_EXIT_OK;
    goto out;
fail:
    ctl_report("cert", &err);
out:
    ctl_ctx_free(c);
    return rc;
}
