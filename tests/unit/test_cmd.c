/*
 * test_cmd.c - typed command parsing (proto/sf_cmd.h): every command's
 * fields, defaults, id-or-name unions, failure leaves *out zeroed, release
 * is idempotent and wipes the keystore password.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sf_cmd.h"
#include "sf_msg.h"
#include "sf_util.h"

static cJSON *J(const char *text)
{
    cJSON *j = cJSON_Parse(text);
    if (j == NULL)
        fail_msg("bad test JSON: %s", text);
    return j;
}

static bool all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

static void test_enroll(void **state)
{
    cJSON *d = J("{\"order_id\":\"ord-7\",\"account\":\"acme\",\"common_name\":\"www.example.com\","
                 "\"sans\":[\"www.example.com\",\"*.example.com\"],\"organization\":42,"
                 "\"profile\":\"OV Multi-Domain\",\"term_days\":397,\"key_algorithm\":\"RSA\","
                 "\"key_size\":3072,\"keystore_type\":\"PKCS12\",\"keystore_password\":\"pa55word\","
                 "\"comments\":\"hi\",\"external_requesters\":[\"a@example.com\",\"b@example.com\"],"
                 "\"custom_fields\":[{\"name\":\"cc\",\"value\":\"1\"},{\"name\":\"env\",\"value\":\"\"}]}");
    sf_cmd_enroll e = {0};
    sf_error err;

    (void)state;
    if (sf_cmd_enroll_parse(d, &e, &err) != 0)
        fail_msg("%s: %s", err.field, err.msg);
    assert_string_equal(e.order_id, "ord-7");
    assert_string_equal(e.account, "acme");
    assert_string_equal(e.common_name, "www.example.com");
    assert_int_equal(e.n_sans, 2);
    assert_string_equal(e.sans[1], "*.example.com");
    assert_int_equal(e.org_id, 42);
    assert_null(e.org_name);
    assert_int_equal(e.profile_id, 0);
    assert_string_equal(e.profile_name, "OV Multi-Domain");
    assert_int_equal(e.term_days, 397);
    assert_int_equal(e.key_alg, SF_KEY_ALG_RSA);
    assert_string_equal(sf_key_alg_name(e.key_alg), "RSA");
    assert_int_equal(e.key_size, 3072);
    assert_int_equal(e.keystore_type, SF_KEYSTORE_PKCS12);
    assert_string_equal(sf_keystore_type_name(e.keystore_type), "PKCS12");
    assert_string_equal(e.keystore_password, "pa55word");
    assert_string_equal(e.comments, "hi");
    assert_int_equal(e.n_external_requesters, 2);
    assert_string_equal(e.external_requesters[1], "b@example.com");
    assert_int_equal(e.n_custom_fields, 2);
    assert_string_equal(e.custom_fields[0].name, "cc");
    assert_string_equal(e.custom_fields[1].value, "");
    assert_null(e.csr);
    sf_cmd_enroll_release(&e);
    assert_true(all_zero(&e, sizeof(e)));
    sf_cmd_enroll_release(&e); /* idempotent */
    sf_cmd_enroll_release(NULL);
    cJSON_Delete(d);
}

static void test_enroll_minimal_ec(void **state)
{
    cJSON *d = J("{\"common_name\":\"a.example\",\"sans\":[],\"organization\":\"Acme\","
                 "\"profile\":9,\"term_days\":90,\"key_algorithm\":\"EC\",\"key_size\":256,"
                 "\"keystore_type\":\"JKS\",\"keystore_password\":\"changeit\","
                 "\"csr\":\"-----BEGIN CERTIFICATE REQUEST-----\\nAA\\n-----END CERTIFICATE REQUEST-----\\n\"}");
    sf_cmd_enroll e = {0};
    sf_error err;

    (void)state;
    assert_int_equal(sf_cmd_enroll_parse(d, &e, &err), 0);
    assert_null(e.order_id);
    assert_null(e.account);
    assert_int_equal(e.n_sans, 0);
    assert_null(e.sans);
    assert_int_equal(e.org_id, 0);
    assert_string_equal(e.org_name, "Acme");
    assert_int_equal(e.profile_id, 9);
    assert_int_equal(e.key_alg, SF_KEY_ALG_EC);
    assert_int_equal(e.keystore_type, SF_KEYSTORE_JKS);
    assert_non_null(e.csr);
    assert_null(e.comments);
    assert_int_equal(e.n_custom_fields, 0);
    sf_cmd_enroll_release(&e);
    cJSON_Delete(d);
}

static void test_enroll_failure_leaves_zeroed(void **state)
{
    cJSON *d = J("{\"common_name\":\"a.example\",\"sans\":[],\"organization\":1,\"profile\":1,"
                 "\"term_days\":1,\"key_algorithm\":\"RSA\",\"key_size\":2048,"
                 "\"keystore_type\":\"PKCS12\"}");
    sf_cmd_enroll e;
    sf_error err;

    (void)state;
    memset(&e, 0xAB, sizeof(e));
    assert_int_equal(sf_cmd_enroll_parse(d, &e, &err), -1);
    assert_string_equal(err.field, "data.keystore_password");
    assert_int_equal(err.cls, SF_ERR_INVALID);
    assert_true(all_zero(&e, sizeof(e)));
    assert_int_equal(sf_cmd_enroll_parse(NULL, &e, &err), -1);
    assert_string_equal(err.field, "data");
    sf_cmd_enroll_release(&e);
    cJSON_Delete(d);
}

static void test_renew_reissue_defaults(void **state)
{
    cJSON *d1 = J("{\"order_id\":\"o\"}");
    cJSON *d2 = J("{\"order_id\":\"o\",\"reason\":\"why\"}");
    cJSON *d3 = J("{\"order_id\":\"o\",\"reason\":\"why\",\"sans\":[],\"new_key\":false}");
    sf_cmd_renew r = {0};
    sf_cmd_reissue x = {0};
    sf_error err;

    (void)state;
    assert_int_equal(sf_cmd_renew_parse(d1, &r, &err), 0);
    assert_string_equal(r.order_id, "o");
    assert_false(r.new_key);
    assert_null(r.csr);
    sf_cmd_renew_release(&r);

    assert_int_equal(sf_cmd_reissue_parse(d2, &x, &err), 0);
    assert_true(x.new_key);
    assert_false(x.has_sans);
    assert_string_equal(x.reason, "why");
    sf_cmd_reissue_release(&x);
    assert_int_equal(sf_cmd_reissue_parse(d3, &x, &err), 0);
    assert_false(x.new_key);
    assert_true(x.has_sans);
    assert_int_equal(x.n_sans, 0);
    sf_cmd_reissue_release(&x);
    assert_int_equal(sf_cmd_reissue_parse(d1, &x, &err), -1);
    assert_string_equal(err.field, "data.reason");
    cJSON_Delete(d1);
    cJSON_Delete(d2);
    cJSON_Delete(d3);
}

static void test_revoke_delete_check(void **state)
{
    cJSON *rv = J("{\"order_id\":\"o\",\"reason_code\":5,\"reason\":\"gone\"}");
    cJSON *dl = J("{\"order_id\":\"o\"}");
    cJSON *all = J("{\"all\":true}");
    sf_cmd_revoke r = {0};
    sf_cmd_delete d = {0};
    sf_cmd_check_status c = {0};
    sf_error err;

    (void)state;
    assert_int_equal(sf_cmd_revoke_parse(rv, &r, &err), 0);
    assert_int_equal(r.reason_code, 5);
    assert_string_equal(r.reason, "gone");
    sf_cmd_revoke_release(&r);
    assert_int_equal(sf_cmd_delete_parse(dl, &d, &err), 0);
    assert_string_equal(d.order_id, "o");
    sf_cmd_delete_release(&d);
    assert_int_equal(sf_cmd_check_status_parse(dl, &c, &err), 0);
    assert_string_equal(c.order_id, "o");
    assert_false(c.all);
    sf_cmd_check_status_release(&c);
    assert_int_equal(sf_cmd_check_status_parse(all, &c, &err), 0);
    assert_null(c.order_id);
    assert_true(c.all);
    sf_cmd_check_status_release(&c);
    /* the wrong command's data is refused with a path */
    assert_int_equal(sf_cmd_revoke_parse(dl, &r, &err), -1);
    assert_string_equal(err.field, "data.reason_code");
    cJSON_Delete(rv);
    cJSON_Delete(dl);
    cJSON_Delete(all);
}

static void test_catalog_and_import(void **state)
{
    cJSON *s0 = J("{}");
    cJSON *s1 = J("{\"account\":\"acme\",\"scope\":[\"profiles\"]}");
    cJSON *im = J("{\"status\":[\"Issued\",\"Expired\"],\"from\":\"2026-01-01\"}");
    sf_cmd_catalog_sync c = {0};
    sf_cmd_orders_import i = {0};
    sf_error err;

    (void)state;
    assert_int_equal(sf_cmd_catalog_sync_parse(s0, &c, &err), 0);
    assert_true(c.organizations && c.domains && c.profiles);
    assert_null(c.account);
    sf_cmd_catalog_sync_release(&c);
    assert_int_equal(sf_cmd_catalog_sync_parse(s1, &c, &err), 0);
    assert_false(c.organizations || c.domains);
    assert_true(c.profiles);
    assert_string_equal(c.account, "acme");
    sf_cmd_catalog_sync_release(&c);
    assert_int_equal(sf_cmd_orders_import_parse(im, &i, &err), 0);
    assert_int_equal(i.n_status, 2);
    assert_string_equal(i.status[1], "Expired");
    assert_string_equal(i.from, "2026-01-01");
    assert_null(i.to);
    sf_cmd_orders_import_release(&i);
    assert_int_equal(sf_cmd_orders_import_parse(s0, &i, &err), 0);
    assert_int_equal(i.n_status, 0);
    sf_cmd_orders_import_release(&i);
    cJSON_Delete(s0);
    cJSON_Delete(s1);
    cJSON_Delete(im);
}

static void test_certificate_collected(void **state)
{
    cJSON *d = J("{\"order_id\":\"o\",\"ssl_id\":123456789012,\"format\":\"x509CO\","
                 "\"chain_pem\":\"-----BEGIN CERTIFICATE-----\\nAA\\n-----END CERTIFICATE-----\\n\","
                 "\"collected_at\":\"2026-11-26T23:02:10.123Z\"}");
    sf_cmd_certificate_collected c = {0};
    sf_error err;

    (void)state;
    assert_int_equal(sf_cmd_certificate_collected_parse(d, &c, &err), 0);
    assert_int_equal(c.ssl_id, 123456789012LL);
    assert_string_equal(c.format, "x509CO");
    assert_int_equal(c.chain_pem_len, strlen(c.chain_pem));
    assert_int_equal(c.chain_pem_len, 57);
    assert_string_equal(c.collected_at, "2026-11-26T23:02:10.123Z");
    sf_cmd_certificate_collected_release(&c);
    cJSON_Delete(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enroll),
        cmocka_unit_test(test_enroll_minimal_ec),
        cmocka_unit_test(test_enroll_failure_leaves_zeroed),
        cmocka_unit_test(test_renew_reissue_defaults),
        cmocka_unit_test(test_revoke_delete_check),
        cmocka_unit_test(test_catalog_and_import),
        cmocka_unit_test(test_certificate_collected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
