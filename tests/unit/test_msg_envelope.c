/*
 * test_msg_envelope.c - sf_event_decode_envelope (proto/sf_msg.h): a valid
 * envelope with invalid data is returned with the data error (so a worker
 * can answer order.rejected), an invalid envelope is not, and the value of a
 * secret field never reaches the error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sf_msg.h"
#include "sf_util.h"

#define ENROLL_DATA(extra)                                                                     \
    "{\"order_id\":\"o-1\",\"common_name\":\"www.example.com\",\"organization\":1001,"           \
    "\"sans\":[],\"profile\":501,\"term_days\":365,\"key_algorithm\":\"EC\",\"key_size\":256" extra "}"
#define ENVELOPE(data)                                                                         \
    "{\"specversion\":\"1.0\",\"id\":\"cmd-1\",\"source\":\"t\",\"type\":\"scmflow.order.enroll\"," \
    "\"time\":\"2026-01-01T00:00:00Z\",\"data\":" data "}"

static void test_valid(void **state)
{
    static const char m[] = ENVELOPE(ENROLL_DATA(",\"keystore_type\":\"PEM\""));
    sf_event *ev = NULL;
    sf_error de, e;

    (void)state;
    sf_error_clear(&de);
    sf_error_clear(&e);
    assert_int_equal(sf_event_decode_envelope(m, strlen(m), &ev, &de, &e), 0);
    assert_non_null(ev);
    assert_string_equal(de.field, "");
    assert_string_equal(sf_event_id(ev), "cmd-1");
    sf_event_free(ev);
}

static void test_bad_data(void **state)
{
    static const char m[] = ENVELOPE(ENROLL_DATA(",\"keystore_type\":\"PKCS12\","
                                                  "\"keystore_password\":\"Qz!7%\""));
    sf_event *ev = NULL;
    sf_error de, e;

    (void)state;
    sf_error_clear(&de);
    sf_error_clear(&e);
    assert_int_equal(sf_event_decode_envelope(m, strlen(m), &ev, &de, &e), 1);
    assert_non_null(ev);
    assert_int_equal(de.cls, SF_ERR_INVALID);
    assert_string_equal(de.field, "data.keystore_password");
    assert_null(strstr(de.msg, "Qz!7%"));
    assert_string_equal(sf_event_id(ev), "cmd-1");
    assert_non_null(sf_event_data(ev));
    sf_event_free(ev);
    /* the strict decoder still refuses it */
    ev = NULL;
    assert_int_equal(sf_event_decode(m, strlen(m), &ev, &e), -1);
    assert_null(ev);
    assert_string_equal(e.field, "data.keystore_password");
}

static void test_data_not_object(void **state)
{
    static const char m[] = ENVELOPE("[1]");
    sf_event *ev = NULL;
    sf_error de, e;

    (void)state;
    sf_error_clear(&de);
    sf_error_clear(&e);
    assert_int_equal(sf_event_decode_envelope(m, strlen(m), &ev, &de, &e), 1);
    assert_non_null(ev);
    assert_string_equal(de.field, "data");
    sf_event_free(ev);
}

static void test_bad_envelope(void **state)
{
    static const char m[] = "{\"specversion\":\"0.3\",\"id\":\"x\",\"source\":\"t\","
                            "\"type\":\"scmflow.order.enroll\",\"data\":{}}";
    sf_event *ev = NULL;
    sf_error de, e;

    (void)state;
    sf_error_clear(&de);
    sf_error_clear(&e);
    assert_int_equal(sf_event_decode_envelope(m, strlen(m), &ev, &de, &e), -1);
    assert_null(ev);
    assert_string_equal(e.field, "specversion");
    assert_int_equal(sf_event_decode_envelope("{}", 2, &ev, NULL, &e), -1);
    assert_int_equal(e.cls, SF_ERR_INTERNAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_bad_data),
        cmocka_unit_test(test_data_not_object),
        cmocka_unit_test(test_bad_envelope),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
