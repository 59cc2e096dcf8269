/*
 * test_msg.c - the message codec (proto/sf_msg.h, sf_topics.h):
 * fixture table (tests/fixtures/messages/manifest.tsv), round trips of every
 * type, schema files vs the C contract tables, limits, secrets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <regex.h>

#include "sf_cmd.h"
#include "sf_msg.h"
#include "sf_topics.h"
#include "sf_util.h"

static const char *src_dir(void)
{
    const char *d = getenv("SCMFLOW_SOURCE_DIR");
    return d && d[0] ? d : SCMFLOW_SOURCE_DIR;
}

static char *read_rel(const char *rel, size_t *len)
{
    char path[1024];
    char *buf = NULL;

    assert_int_equal(sf_snprintf(path, sizeof(path), "%s/%s", src_dir(), rel), 0);
    if (sf_read_file(path, 64u * 1024 * 1024, &buf, len) != 0)
        fail_msg("could not read \"%s\"", path);
    return buf;
}

/* ---- fixture table ---- */

static void test_fixtures(void **state)
{
    size_t mlen, ngood = 0, nbad = 0;
    char *manifest = read_rel("tests/fixtures/messages/manifest.tsv", &mlen);
    char *save = NULL, *line;

    (void)state;
    for (line = strtok_r(manifest, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char rel[512], *tab, *bytes;
        const char *expect;
        size_t len;
        sf_event *ev = NULL;
        sf_error err;
        int rc;

        if (line[0] == '#' || line[0] == '\0')
            continue;
        tab = strchr(line, '\t');
        assert_non_null(tab);
        *tab = '\0';
        expect = tab + 1;
        assert_int_equal(sf_snprintf(rel, sizeof(rel), "tests/fixtures/messages/%s", line), 0);
        bytes = read_rel(rel, &len);
        sf_error_clear(&err);
        rc = sf_event_decode(bytes, len, &ev, &err);
        if (strcmp(expect, "ok") == 0) {
            if (rc != 0)
                fail_msg("%s: expected ok, got field \"%s\": %s", line, err.field, err.msg);
            assert_non_null(ev);
            ngood++;
        } else {
            if (rc == 0)
                fail_msg("%s: expected failure on \"%s\", decoded ok", line, expect);
            assert_null(ev);
            if (strcmp(err.field, expect) != 0)
                fail_msg("%s: expected field \"%s\", got \"%s\": %s", line, expect, err.field,
                         err.msg);
            assert_int_equal(err.cls, SF_ERR_INVALID);
            assert_true(err.msg[0] != '\0');
            nbad++;
        }
        sf_event_free(ev);
        free(bytes);
    }
    assert_true(ngood >= 15);
    assert_true(nbad >= 60);
    free(manifest);
}

/* ---- round trips ---- */

struct sample {
    const char *type;
    const char *data;
};

static const struct sample samples[] = {
    {SF_CMD_CATALOG_SYNC, "{\"account\":\"acme\",\"scope\":[\"organizations\"]}"},
    {SF_CMD_ORDERS_IMPORT, "{\"status\":[\"Issued\"],\"from\":\"2025-01-01\",\"to\":\"2025-12-31\"}"},
    {SF_CMD_ORDER_ENROLL,
     "{\"order_id\":\"o1\",\"common_name\":\"a.example.com\",\"sans\":[\"a.example.com\"],"
     "\"organization\":\"Acme\",\"profile\":12,\"term_days\":365,\"key_algorithm\":\"EC\","
     "\"key_size\":256,\"keystore_type\":\"JKS\",\"keystore_password\":\"changeit\","
     "\"comments\":\"\",\"external_requesters\":[\"a@b.example\"],"
     "\"custom_fields\":[{\"name\":\"n\",\"value\":\"v\"}]}"},
    {SF_CMD_ORDER_RENEW, "{\"order_id\":\"o1\"}"},
    {SF_CMD_ORDER_REISSUE, "{\"order_id\":\"o1\",\"reason\":\"r\",\"sans\":[],\"new_key\":false}"},
    {SF_CMD_ORDER_REVOKE, "{\"order_id\":\"o1\",\"reason_code\":0,\"reason\":\"r\"}"},
    {SF_CMD_ORDER_DELETE, "{\"order_id\":\"o1\"}"},
    {SF_CMD_ORDER_CHECK_STATUS, "{\"all\":true}"},
    {SF_MSG_CERT_COLLECTED,
     "{\"order_id\":\"o1\",\"ssl_id\":99,\"format\":\"pemia\",\"chain_pem\":\"-----BEGIN "
     "CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----\\n\",\"collected_at\":\"2026-01-01T00:00:00Z\"}"},
    {SF_EV_CATALOG_SYNCED, "{\"organizations\":1,\"domains\":2,\"profiles\":3,\"duration_ms\":10}"},
    {SF_EV_CATALOG_SYNC_FAILED, "{\"account\":\"acme\",\"error\":{\"code\":\"scm_auth\",\"message\":\"m\",\"scm_code\":-16}}"},
    {SF_EV_CATALOG_SYNC_PROGRESS, "{\"phase\":\"domains\",\"done\":5,\"total\":10}"},
    {SF_EV_ORDERS_IMPORTED, "{\"imported\":3,\"updated\":1,\"skipped\":0}"},
    {SF_EV_ORDERS_IMPORT_PROGRESS, "{\"done\":200}"},
    {SF_EV_ORDER_ACCEPTED, "{\"order_id\":\"o1\",\"action\":\"revoke\"}"},
    {SF_EV_ORDER_REJECTED, "{\"order_id\":\"o1\",\"error\":{\"code\":\"invalid_field\",\"message\":\"m\",\"field\":\"data.comments\"}}"},
    {SF_EV_ORDER_SUBMITTED, "{\"order_id\":\"o1\",\"ssl_id\":5,\"action\":\"enroll\",\"status\":\"Requested\"}"},
    {SF_EV_ORDER_STATUS_CHANGED, "{\"order_id\":\"o1\",\"ssl_id\":5,\"old_status\":\"Requested\",\"status\":\"Applied\"}"},
    {SF_EV_ORDER_ISSUED, "{\"order_id\":\"o1\",\"ssl_id\":5}"},
    {SF_EV_ORDER_FAILED, "{\"order_id\":\"o1\",\"status\":\"Declined\",\"error\":{\"code\":\"declined\",\"message\":\"m\"}}"},
    {SF_EV_ORDER_RENEWED, "{\"order_id\":\"o2\",\"ssl_id\":6,\"previous_ssl_id\":5,\"renewed_from\":\"o1\"}"},
    {SF_EV_ORDER_REISSUED, "{\"order_id\":\"o1\",\"ssl_id\":5}"},
    {SF_EV_ORDER_REVOKED, "{\"order_id\":\"o1\",\"reason_code\":1}"},
    {SF_EV_ORDER_DELETED, "{\"order_id\":\"o1\"}"},
    {SF_EV_CERT_STORED,
     "{\"order_id\":\"o1\",\"certificate_id\":\"c1\",\"fingerprint_sha256\":"
     "\"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\","
     "\"not_after\":\"2027-01-01T00:00:00Z\",\"keystore_type\":\"PKCS12\"}"},
    {SF_EV_CERT_NOT_STORED, "{\"order_id\":\"o1\",\"reason\":\"license count reached\"}"},
    {SF_EV_CERT_REJECTED, "{\"order_id\":\"o1\",\"error\":{\"code\":\"chain_invalid\",\"message\":\"m\"}}"},
};

static void test_round_trip_every_type(void **state)
{
    const char *const *k;

    (void)state;
    /* every known type has a sample, and every sample type is known */
    for (k = sf_msg_known_types(); *k; k++) {
        bool found = false;
        for (size_t i = 0; i < SF_ARRAY_LEN(samples) && !found; i++)
            found = strcmp(samples[i].type, *k) == 0;
        if (!found)
            fail_msg("no round-trip sample for %s", *k);
        assert_non_null(sf_topic_for_type(*k));
    }
    for (size_t i = 0; i < SF_ARRAY_LEN(samples); i++) {
        cJSON *data = cJSON_Parse(samples[i].data);
        char *text = NULL, *text2 = NULL;
        size_t len = 0, len2 = 0;
        sf_event *ev = NULL, *ev2 = NULL;
        sf_error err;

        assert_non_null(data);
        assert_true(sf_event_type_known(samples[i].type));
        if (sf_event_encode(samples[i].type, "scmflow/test", NULL, "corr-1", data, &text, &len,
                            &err) != 0)
            fail_msg("%s: encode: %s: %s", samples[i].type, err.field, err.msg);
        assert_int_equal(len, strlen(text));
        if (sf_event_decode(text, len, &ev, &err) != 0)
            fail_msg("%s: decode: %s: %s", samples[i].type, err.field, err.msg);
        assert_string_equal(sf_event_type(ev), samples[i].type);
        assert_string_equal(sf_event_source(ev), "scmflow/test");
        assert_string_equal(sf_event_correlationid(ev), "corr-1");
        assert_null(sf_event_subject(ev));
        assert_true(sf_rfc3339_valid(sf_event_time(ev)));
        assert_int_equal(strlen(sf_event_id(ev)), 36);
        assert_true(sf_event_is_known(ev));
        assert_true(cJSON_Compare(sf_event_data(ev), data, 1));
        /* re-encode with the same id/time/subject: byte-identical */
        assert_int_equal(sf_event_encode_ex(sf_event_type(ev), sf_event_source(ev), sf_event_id(ev),
                                            sf_event_correlationid(ev), "subj", sf_event_time(ev),
                                            sf_event_data(ev), &text2, &len2, &err),
                         0);
        assert_int_equal(sf_event_decode(text2, len2, &ev2, &err), 0);
        assert_string_equal(sf_event_id(ev2), sf_event_id(ev));
        assert_string_equal(sf_event_time(ev2), sf_event_time(ev));
        assert_string_equal(sf_event_subject(ev2), "subj");
        assert_true(cJSON_Compare(sf_event_data(ev2), data, 1));
        sf_event_free(ev);
        sf_event_free(ev2);
        free(text);
        free(text2);
        cJSON_Delete(data);
    }
}

static void test_unknown_type_passthrough(void **state)
{
    const char *msg = "{\"specversion\":\"1.0\",\"id\":\"x\",\"source\":\"s\",\"type\":\"com.x\","
                      "\"time\":\"2026-01-01T00:00:00Z\",\"data\":\"text\"}";
    sf_event *ev = NULL;
    sf_error err;
    char *out = NULL;

    (void)state;
    assert_int_equal(sf_event_decode(msg, strlen(msg), &ev, &err), 0);
    assert_false(sf_event_is_known(ev));
    assert_false(sf_event_type_known("com.x"));
    assert_true(cJSON_IsString(sf_event_data(ev)));
    assert_non_null(sf_event_json(ev));
    sf_event_free(ev);
    /* unknown type without data: ok to encode; validate_data refuses */
    assert_int_equal(sf_event_encode("com.x", "s", "id", NULL, NULL, &out, NULL, &err), 0);
    free(out);
    assert_int_equal(sf_event_validate_data("com.x", NULL, &err), -1);
    assert_string_equal(err.field, "type");
}

/* ---- schema files vs C tables ---- */

/* Annotations do not constrain; everything else must match exactly. */
static void strip_annotations(cJSON *s, bool is_properties_map)
{
    static const char *const ann[] = {"description", "title", "$comment", "examples",
                                      "$schema", "$id"};
    cJSON *c;

    if (s == NULL)
        return;
    /* inside "properties" the keys are field names, not keywords */
    if (cJSON_IsObject(s) && !is_properties_map)
        for (size_t i = 0; i < SF_ARRAY_LEN(ann); i++)
            cJSON_DeleteItemFromObjectCaseSensitive(s, ann[i]);
    for (c = s->child; c; c = c->next)
        strip_annotations(c, !is_properties_map && cJSON_IsObject(s) && c->string &&
                                 strcmp(c->string, "properties") == 0);
}

static void check_schema_file(const char *type)
{
    char rel[256], *text, *want_s, *have_s;
    size_t len;
    cJSON *file, *gen;
    sf_error err;

    assert_int_equal(sf_snprintf(rel, sizeof(rel), "proto/schemas/%s.schema.json", type), 0);
    text = read_rel(rel, &len);
    file = cJSON_Parse(text);
    if (file == NULL)
        fail_msg("%s: not valid JSON", rel);
    assert_string_equal(cJSON_GetObjectItem(file, "$schema")->valuestring,
                        "https://json-schema.org/draft/2020-12/schema");
    assert_int_equal(sf_msg_schema(type, &gen, &err), 0);
    strip_annotations(file, false);
    strip_annotations(gen, false);
    if (!cJSON_Compare(file, gen, 1)) {
        want_s = cJSON_PrintUnformatted(gen);
        have_s = cJSON_PrintUnformatted(file);
        print_error("C tables: %s\nfile:     %s\n", want_s, have_s);
        free(want_s);
        free(have_s);
        fail_msg("%s disagrees with the C contract table (sf_msg.c)", rel);
    }
    cJSON_Delete(file);
    cJSON_Delete(gen);
    free(text);
}

/* Pretty-print like Python's json.dumps(indent=2, ensure_ascii=False), the
 * format of the files in proto/schemas/. */
static void pretty(sf_buf *b, const cJSON *j, int ind)
{
    const cJSON *c;

    if ((cJSON_IsObject(j) || cJSON_IsArray(j)) && j->child) {
        sf_buf_appendc(b, cJSON_IsObject(j) ? '{' : '[');
        for (c = j->child; c; c = c->next) {
            sf_buf_appendf(b, "\n%*s", ind + 2, "");
            if (cJSON_IsObject(j)) {
                cJSON *k = cJSON_CreateString(c->string);
                char *ks = cJSON_PrintUnformatted(k);
                sf_buf_appendf(b, "%s: ", ks);
                free(ks);
                cJSON_Delete(k);
            }
            pretty(b, c, ind + 2);
            if (c->next)
                sf_buf_appendc(b, ',');
        }
        sf_buf_appendf(b, "\n%*s%c", ind, "", cJSON_IsObject(j) ? '}' : ']');
    } else {
        char *v = cJSON_PrintUnformatted(j);
        sf_buf_appendf(b, "%s", v);
        free(v);
    }
}

/* SCMFLOW_WRITE_SCHEMAS=DIR: write the schemas generated from the C tables
 * into DIR (how proto/schemas/ is regenerated after a table change). */
static void write_schemas(const char *dir)
{
    const char *const *k = sf_msg_known_types();

    for (int i = -1; i < 0 || k[i]; i++) {
        const char *type = i < 0 ? SF_MSG_ENVELOPE : k[i];
        cJSON *gen;
        sf_error err;
        sf_buf b;
        char path[1024];
        FILE *f;

        assert_int_equal(sf_msg_schema(type, &gen, &err), 0);
        sf_buf_init(&b, 1u << 20);
        pretty(&b, gen, 0);
        sf_buf_appendc(&b, '\n');
        assert_int_equal(sf_snprintf(path, sizeof(path), "%s/%s.schema.json", dir, type), 0);
        f = fopen(path, "w");
        assert_non_null(f);
        assert_int_equal(fwrite(b.data, 1, b.len, f), b.len);
        fclose(f);
        sf_buf_release(&b);
        cJSON_Delete(gen);
    }
}

static void test_schema_files_agree(void **state)
{
    char path[1024];
    DIR *d;
    struct dirent *de;
    size_t nfiles = 0, ntypes = 1;

    (void)state;
    if (getenv("SCMFLOW_WRITE_SCHEMAS")) {
        write_schemas(getenv("SCMFLOW_WRITE_SCHEMAS"));
        return;
    }
    check_schema_file(SF_MSG_ENVELOPE);
    for (const char *const *k = sf_msg_known_types(); *k; k++, ntypes++)
        check_schema_file(*k);
    /* no stray schema file without a C table */
    assert_int_equal(sf_snprintf(path, sizeof(path), "%s/proto/schemas", src_dir()), 0);
    d = opendir(path);
    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n > 12 && strcmp(de->d_name + n - 12, ".schema.json") == 0)
            nfiles++;
    }
    closedir(d);
    assert_int_equal(nfiles, ntypes);
}

/* ---- the hand-written matchers agree with the schema patterns ---- */

static const cJSON *schema_prop(cJSON *schema, const char *prop, bool items)
{
    const cJSON *p = cJSON_GetObjectItem(cJSON_GetObjectItem(schema, "properties"), prop);
    return items ? cJSON_GetObjectItem(p, "items") : p;
}

static void differential(const char *type, const char *prop, bool items, const char *tmpl)
{
    static const char alphabet[] = "aZ09_-.*@ \xc3\xa9:xy";
    char rel[256], *text;
    size_t len;
    cJSON *schema;
    const cJSON *p;
    regex_t re;
    int maxlen, minlen, agree = 0;
    uint64_t st = 0x12345678;

    assert_int_equal(sf_snprintf(rel, sizeof(rel), "proto/schemas/%s.schema.json", type), 0);
    text = read_rel(rel, &len);
    schema = cJSON_Parse(text);
    p = schema_prop(schema, prop, items);
    assert_non_null(p);
    assert_int_equal(regcomp(&re, cJSON_GetObjectItem(p, "pattern")->valuestring,
                             REG_EXTENDED | REG_NOSUB), 0);
    minlen = cJSON_GetObjectItem(p, "minLength")->valueint;
    maxlen = cJSON_GetObjectItem(p, "maxLength")->valueint;
    for (int n = 0; n < 20000; n++) {
        char s[200], *data_text;
        size_t l;
        cJSON *data;
        sf_error err;
        bool c_ok, re_ok;

        st = st * 6364136223846793005ULL + 1442695040888963407ULL;
        l = (size_t)((st >> 33) % (n % 10 == 0 ? 150 : 24));
        for (size_t i = 0; i < l; i++) {
            st = st * 6364136223846793005ULL + 1442695040888963407ULL;
            /* mostly letters so that long valid names occur */
            s[i] = (st >> 60) < 10 ? 'a' : alphabet[(st >> 33) % (sizeof(alphabet) - 1)];
        }
        s[l] = '\0';
        if (n % 10 == 1) {
            /* boundary labels: 62..65 characters, optional hyphen at the edges */
            static const size_t lens[] = {62, 63, 64, 65};
            size_t l1 = lens[(st >> 40) % 4], l2 = 1 + (st >> 44) % 3;
            memset(s, 'a', l1);
            s[l1] = '.';
            memset(s + l1 + 1, 'b', l2);
            l = l1 + 1 + l2;
            s[l] = '\0';
            if ((st >> 50) % 4 == 0)
                s[0] = '-';
            if ((st >> 52) % 4 == 0)
                s[l1 - 1] = '-';
        }
        if (!sf_utf8_valid(s, l))
            continue;
        {
            const char *at = strstr(tmpl, "%s");
            data_text = sf_asprintf("%.*s%s%s", (int)(at - tmpl), tmpl, s, at + 2);
        }
        data = cJSON_Parse(data_text);
        assert_non_null(data);
        c_ok = sf_event_validate_data(type, data, &err) == 0;
        {
            size_t chars = 0;
            for (size_t i = 0; i < l; i++)
                chars += ((unsigned char)s[i] & 0xC0) != 0x80;
            re_ok = regexec(&re, s, 0, NULL, 0) == 0 && (int)chars >= minlen &&
                    (int)chars <= maxlen;
        }
        if (c_ok != re_ok)
            fail_msg("%s.%s: \"%s\": C says %d, regex of the schema says %d (%s)", type, prop, s,
                     c_ok, re_ok, err.msg);
        agree += re_ok;
        cJSON_Delete(data);
        free(data_text);
    }
    assert_true(agree > 50); /* the generator does produce valid strings */
    regfree(&re);
    cJSON_Delete(schema);
    free(text);
}

static void test_fast_matchers_agree_with_patterns(void **state)
{
    (void)state;
    differential(SF_CMD_ORDER_REISSUE, "sans", true,
                 "{\"order_id\":\"o\",\"reason\":\"r\",\"sans\":[\"%s\"]}");
    differential(SF_CMD_ORDER_DELETE, "order_id", false, "{\"order_id\":\"%s\"}");
    differential(SF_CMD_CATALOG_SYNC, "account", false, "{\"account\":\"%s\"}");
    differential(SF_CMD_ORDER_ENROLL, "external_requesters", true,
                 "{\"common_name\":\"a.example\",\"sans\":[],\"organization\":1,"
                 "\"profile\":1,\"term_days\":1,\"key_algorithm\":\"RSA\",\"key_size\":2048,"
                 "\"keystore_type\":\"PEM\",\"external_requesters\":[\"%s\"]}");
}

/* ---- limits and hostile input ---- */

static char *envelope_with(const char *type, const char *data_json)
{
    return sf_asprintf("{\"specversion\":\"1.0\",\"id\":\"i\",\"source\":\"s\",\"type\":\"%s\","
                       "\"time\":\"2026-01-01T00:00:00Z\",\"data\":%s}",
                       type, data_json);
}

static void test_size_limits(void **state)
{
    size_t big = 10u * 1024 * 1024;
    char *buf = malloc(big);
    sf_event *ev = NULL;
    sf_error err;
    char *chain, *msg;
    size_t n;
    cJSON *data;
    char *out = NULL;

    (void)state;
    assert_non_null(buf);
    memset(buf, ' ', big);
    buf[0] = '{';
    buf[big - 1] = '}';
    assert_int_equal(sf_event_decode(buf, big, &ev, &err), -1);
    assert_string_equal(err.field, "message");
    assert_non_null(strstr(err.msg, "limit"));
    assert_int_equal(sf_event_decode(buf, SF_MSG_MAX_BYTES + 1, &ev, &err), -1);
    assert_string_equal(err.field, "message");
    free(buf);

    /* a chain of the maximum size with PEM lines (each "\n" escapes to two
     * bytes) still fits the message limit ... */
    n = SF_CMD_CHAIN_MAX;
    chain = malloc(n + 1);
    memset(chain, 'A', n);
    for (size_t i = 64; i < n; i += 65)
        chain[i] = '\n';
    memcpy(chain, "-----BEGIN CERTIFICATE-----", 27);
    chain[n] = '\0';
    data = cJSON_CreateObject();
    cJSON_AddStringToObject(data, "order_id", "o");
    cJSON_AddNumberToObject(data, "ssl_id", 1);
    cJSON_AddStringToObject(data, "format", "x509");
    cJSON_AddStringToObject(data, "chain_pem", chain);
    cJSON_AddStringToObject(data, "collected_at", "2026-01-01T00:00:00Z");
    if (sf_event_encode(SF_MSG_CERT_COLLECTED, "s", NULL, NULL, data, &out, &n, &err) != 0)
        fail_msg("%s: %s", err.field, err.msg);
    assert_true(n <= SF_MSG_MAX_BYTES);
    assert_int_equal(sf_event_decode(out, n, &ev, &err), 0);
    sf_event_free(ev);
    free(out);
    out = NULL;
    /* ... over the field limit is refused before encoding */
    free(chain);
    chain = malloc(SF_CMD_CHAIN_MAX + 2);
    memset(chain, 'A', SF_CMD_CHAIN_MAX + 1);
    memcpy(chain, "-----BEGIN CERTIFICATE-----", 27);
    chain[SF_CMD_CHAIN_MAX + 1] = '\0';
    cJSON_ReplaceItemInObjectCaseSensitive(data, "chain_pem", cJSON_CreateString(chain));
    assert_int_equal(sf_event_encode(SF_MSG_CERT_COLLECTED, "s", NULL, NULL, data, &out, &n, &err),
                     -1);
    assert_string_equal(err.field, "data.chain_pem");
    assert_null(out);
    cJSON_Delete(data);
    free(chain);

    /* an unknown type whose encoding exceeds the limit */
    chain = malloc(SF_MSG_MAX_BYTES + 10);
    memset(chain, 'x', SF_MSG_MAX_BYTES + 9);
    chain[SF_MSG_MAX_BYTES + 9] = '\0';
    data = cJSON_CreateObject();
    cJSON_AddStringToObject(data, "blob", chain);
    assert_int_equal(sf_event_encode("com.x", "s", NULL, NULL, data, &out, &n, &err), -1);
    assert_string_equal(err.field, "message");
    cJSON_Delete(data);
    free(chain);

    /* deep nesting inside data of an unknown type: refused, no crash */
    msg = NULL;
    {
        sf_buf b;
        sf_buf_init(&b, 1u << 20);
        for (int i = 0; i < 10000; i++)
            sf_buf_append(&b, "[", 1);
        for (int i = 0; i < 10000; i++)
            sf_buf_append(&b, "]", 1);
        msg = envelope_with("com.x", b.data);
        sf_buf_release(&b);
    }
    assert_int_equal(sf_event_decode(msg, strlen(msg), &ev, &err), -1);
    assert_string_equal(err.field, "message");
    free(msg);
}

static void test_comments_count_characters(void **state)
{
    sf_buf b;
    char *msg;
    sf_event *ev = NULL;
    sf_error err;

    (void)state;
    sf_buf_init(&b, 1u << 20);
    sf_buf_appendf(&b, "{\"common_name\":\"a.example\",\"sans\":[],\"organization\":1,"
                       "\"profile\":1,\"term_days\":1,\"key_algorithm\":\"RSA\",\"key_size\":2048,"
                       "\"keystore_type\":\"PEM\",\"comments\":\"");
    for (int i = 0; i < 1024; i++)
        sf_buf_append(&b, "\xc3\xa9", 2); /* é: 2 bytes, 1 character */
    sf_buf_append(&b, "\"}", 2);
    msg = envelope_with(SF_CMD_ORDER_ENROLL, b.data);
    if (sf_event_decode(msg, strlen(msg), &ev, &err) != 0)
        fail_msg("1024 characters (2048 bytes) refused: %s: %s", err.field, err.msg);
    sf_event_free(ev);
    free(msg);
    /* 4-byte characters: 1024 of them still fit */
    sf_buf_reset(&b);
    sf_buf_appendf(&b, "{\"common_name\":\"a.example\",\"sans\":[],\"organization\":1,"
                       "\"profile\":1,\"term_days\":1,\"key_algorithm\":\"RSA\",\"key_size\":2048,"
                       "\"keystore_type\":\"PEM\",\"comments\":\"");
    for (int i = 0; i < 1025; i++)
        sf_buf_append(&b, "\xf0\x9f\x98\x80", 4);
    sf_buf_append(&b, "\"}", 2);
    msg = envelope_with(SF_CMD_ORDER_ENROLL, b.data);
    assert_int_equal(sf_event_decode(msg, strlen(msg), &ev, &err), -1);
    assert_string_equal(err.field, "data.comments");
    assert_non_null(strstr(err.msg, "1024 characters"));
    free(msg);
    sf_buf_release(&b);
}

static void test_secret_never_echoed(void **state)
{
    static const char *const bad_pw[] = {
        "\"abc\"",                                                 /* too short */
        "\"SECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRET\"",
        "12345678",                                                /* wrong type */
    };

    (void)state;
    for (size_t i = 0; i < SF_ARRAY_LEN(bad_pw); i++) {
        char *data = sf_asprintf(
            "{\"common_name\":\"a.example\",\"sans\":[],\"organization\":1,\"profile\":1,"
            "\"term_days\":1,\"key_algorithm\":\"RSA\",\"key_size\":2048,"
            "\"keystore_type\":\"PKCS12\",\"keystore_password\":%s}",
            bad_pw[i]);
        char *msg = envelope_with(SF_CMD_ORDER_ENROLL, data);
        sf_event *ev = NULL;
        sf_error err;

        assert_int_equal(sf_event_decode(msg, strlen(msg), &ev, &err), -1);
        assert_string_equal(err.field, "data.keystore_password");
        assert_null(strstr(err.msg, "abc"));
        assert_null(strstr(err.msg, "SECRET"));
        assert_null(strstr(err.msg, "12345678"));
        free(msg);
        free(data);
    }
}

static void test_encode_refuses_invalid(void **state)
{
    cJSON *data = cJSON_Parse("{\"order_id\":\"o\",\"reason_code\":2,\"reason\":\"r\"}");
    char *out = NULL;
    sf_error err;

    (void)state;
    assert_int_equal(sf_event_encode(SF_CMD_ORDER_REVOKE, "s", NULL, NULL, data, &out, NULL, &err),
                     -1);
    assert_string_equal(err.field, "data.reason_code");
    assert_non_null(strstr(err.msg, "0, 1, 3, 4, 5"));
    assert_null(out);
    assert_int_equal(sf_event_encode(SF_CMD_ORDER_REVOKE, "s", NULL, NULL, NULL, &out, NULL, &err),
                     -1);
    assert_string_equal(err.field, "data");
    assert_int_equal(sf_event_encode(NULL, "s", NULL, NULL, data, &out, NULL, &err), -1);
    assert_string_equal(err.field, "type");
    assert_int_equal(sf_event_encode("com.x", "", NULL, NULL, data, &out, NULL, &err), -1);
    assert_string_equal(err.field, "source");
    assert_int_equal(sf_event_encode_ex("com.x", "s", NULL, NULL, NULL, "yesterday", data, &out,
                                        NULL, &err),
                     -1);
    assert_string_equal(err.field, "time");
    cJSON_Delete(data);
}

static void test_uuid_and_time(void **state)
{
    char a[37], b[37];
    static const char *const good[] = {"2026-11-26T23:02:10Z", "2024-02-29T00:00:00.1+14:00",
                                       "2026-12-31t23:59:60.123456789z", "2026-01-01T00:00:00-05:30"};
    static const char *const bad[] = {"2026-11-26",          "2025-02-29T00:00:00Z",
                                      "2026-11-26T24:00:00Z", "2026-11-26T23:02:10",
                                      "2026-11-26T23:02:10.Z", "2026-11-26 23:02:10Z",
                                      "2026-11-26T23:02:10+0100", "2026-11-26T23:02:10Zjunk", ""};

    (void)state;
    assert_int_equal(sf_uuid4(a, sizeof(a)), 0);
    assert_int_equal(sf_uuid4(b, sizeof(b)), 0);
    assert_int_equal(strlen(a), 36);
    assert_true(a[14] == '4');
    assert_true(strchr("89ab", a[19]) != NULL);
    assert_string_not_equal(a, b);
    assert_int_equal(sf_uuid4(a, 36), -1);
    for (size_t i = 0; i < SF_ARRAY_LEN(good); i++)
        if (!sf_rfc3339_valid(good[i]))
            fail_msg("refused %s", good[i]);
    for (size_t i = 0; i < SF_ARRAY_LEN(bad); i++)
        if (sf_rfc3339_valid(bad[i]))
            fail_msg("accepted %s", bad[i]);
    assert_false(sf_rfc3339_valid(NULL));
}

static void test_topic_names(void **state)
{
    char buf[64];

    (void)state;
    strncpy(buf, "unchanged", sizeof(buf));
    assert_int_equal(sf_topic_name(NULL, SF_TOPIC_ORDER_COMMANDS, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "scm.order.commands");
    assert_int_equal(sf_topic_name("t-1.", SF_TOPIC_EVENTS, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "t-1.events");
    assert_int_equal(sf_topic_name("", SF_TOPIC_DEADLETTER, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "deadletter");
    assert_int_equal(sf_topic_name("bad prefix", SF_TOPIC_EVENTS, buf, sizeof(buf)), -1);
    assert_string_equal(buf, "deadletter");
    assert_int_equal(sf_topic_name("scm.", SF_TOPIC_CERTS_COLLECTED, buf, 10), -1);
    assert_int_equal(sf_topic_name("scm.", NULL, buf, sizeof(buf)), -1);
    assert_int_equal(sf_topic_name("scm.", "", buf, sizeof(buf)), -1);
    assert_string_equal(sf_topic_for_type(SF_CMD_ORDER_ENROLL), SF_TOPIC_ORDER_COMMANDS);
    assert_string_equal(sf_topic_for_type(SF_CMD_ORDERS_IMPORT), SF_TOPIC_CATALOG_COMMANDS);
    assert_string_equal(sf_topic_for_type(SF_CMD_ORDER_CHECK_STATUS), SF_TOPIC_STATUS_COMMANDS);
    assert_string_equal(sf_topic_for_type(SF_MSG_CERT_COLLECTED), SF_TOPIC_CERTS_COLLECTED);
    assert_string_equal(sf_topic_for_type(SF_EV_CERT_NOT_STORED), SF_TOPIC_EVENTS);
    assert_null(sf_topic_for_type("com.x"));
    assert_null(sf_topic_for_type(NULL));
}

static void test_decode_bad_args(void **state)
{
    sf_event *ev = (sf_event *)0x1;
    sf_error err;

    (void)state;
    assert_int_equal(sf_event_decode(NULL, 5, &ev, &err), -1);
    assert_ptr_equal(ev, (sf_event *)0x1);
    assert_int_equal(sf_event_decode("{}", 2, NULL, &err), -1);
    assert_int_equal(sf_event_decode("{}", 2, &ev, NULL), -1); /* err may be NULL */
    sf_event_free(NULL);
    assert_null(sf_event_id(NULL));
    assert_null(sf_event_data(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures),
        cmocka_unit_test(test_round_trip_every_type),
        cmocka_unit_test(test_unknown_type_passthrough),
        cmocka_unit_test(test_schema_files_agree),
        cmocka_unit_test(test_fast_matchers_agree_with_patterns),
        cmocka_unit_test(test_size_limits),
        cmocka_unit_test(test_comments_count_characters),
        cmocka_unit_test(test_secret_never_echoed),
        cmocka_unit_test(test_encode_refuses_invalid),
        cmocka_unit_test(test_uuid_and_time),
        cmocka_unit_test(test_topic_names),
        cmocka_unit_test(test_decode_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
