/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* secd/config.c: the relay and key-server keys (rates, sizes) and the check across keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config.h"

#define SEC UINT64_C(1000000)

static void test_relay_defaults(void **state) {
        Config c;

        assert_int_equal(config_init(&c), 0);
        assert_true(c.relay_message_max == 96 * 1024);
        assert_true(c.relay_ttl == 30 * 24 * 3600 * SEC);
        assert_true(c.relay_send_rate == SEC / 1000);
        assert_true(c.keys_bundle_target_rate == 6 * SEC);
        assert_false(c.relay_message_max_set);
        assert_int_equal(config_check(&c, NULL), 0);
        assert_true(c.relay_message_max == 96 * 1024);
        config_done(&c);
}

static void test_rates(void **state) {
        static const struct {
                const char *value;
                int r;
                uint64_t interval;
        } cases[] = {
                { "1000/s", 0, 1000 },        { "1000", 0, 1000 },          { "10/min", 0, 6 * SEC },
                { "10/m", 0, 6 * SEC },       { "2/h", 0, 1800 * SEC },     { "1/d", 0, 24 * 3600 * SEC },
                { "1000000/s", 0, 1 },        { "3/sec", 0, SEC / 3 },      { "off", 0, 0 },
                { "0", 0, 0 },                { "0/s", -ERANGE, 0 },        { "1000001/s", -ERANGE, 0 },
                { "5/fortnight", -EINVAL, 0 }, { "/s", -EINVAL, 0 },        { "", -EINVAL, 0 },
                { "-1/s", -EINVAL, 0 },       { "1/s/s", -EINVAL, 0 },      { "1 /s", -EINVAL, 0 },
                { "99999999999999999999999999999999/s", -EINVAL, 0 },
                { "18446744073709551616/s", -ERANGE, 0 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *why = NULL;
                Config c;
                int r;

                assert_int_equal(config_init(&c), 0);
                r = config_set(&c, "relay_send_rate", cases[i].value, &why);
                if (cases[i].r == 0) {
                        assert_int_equal(r, 0);
                        assert_true(c.relay_send_rate == cases[i].interval);
                } else {
                        if (r != cases[i].r)
                                fail_msg("\"%s\": %d, expected %d", cases[i].value, r, cases[i].r);
                        assert_non_null(why);
                        assert_non_null(strstr(why, "relay_send_rate"));
                        assert_true(c.relay_send_rate == SEC / 1000);   /* unchanged */
                }
                config_done(&c);
        }
}

static void test_relay_ranges(void **state) {
        Config c;

        assert_int_equal(config_init(&c), 0);
        assert_int_equal(config_set(&c, "relay_message_max", "0", NULL), -ERANGE);
        assert_int_equal(config_set(&c, "relay_message_max", "17M", NULL), -ERANGE);
        assert_int_equal(config_set(&c, "relay_ttl", "30s", NULL), -ERANGE);
        assert_int_equal(config_set(&c, "relay_mailbox_max_messages", "0", NULL), -ERANGE);
        assert_int_equal(config_set(&c, "relay_send_burst", "0", NULL), -ERANGE);
        assert_int_equal(config_set(&c, "relay_fetch_wait_max", "2h", NULL), -ERANGE);
        assert_int_equal(config_set(&c, "relay_fetch_wait_max", "0", NULL), 0);
        assert_int_equal(config_set(&c, "relay_sweep_interval", "500ms", NULL), -ERANGE);
        assert_int_equal(config_set(&c, "keys_bundle_target_burst", "5", NULL), 0);
        assert_int_equal(config_set(&c, "keys_bundle_target_rate", "10/min", NULL), 0);
        config_done(&c);
}

/* cert_retention: 30 days by default, 1 hour to 100 years. */
static void test_cert_retention(void **state) {
        Config c;

        assert_int_equal(config_init(&c), 0);
        assert_true(c.cert_retention == UINT64_C(30) * 24 * 3600 * 1000000);
        assert_int_equal(config_set(&c, "cert_retention", "1h", NULL), 0);
        assert_true(c.cert_retention == UINT64_C(3600) * 1000000);
        assert_int_equal(config_set(&c, "cert_retention", "59min", NULL), -ERANGE);
        assert_int_equal(config_set(&c, "cert_retention", "365d", NULL), 0);
        assert_int_equal(config_set(&c, "cert_retention", "forever", NULL), -EINVAL);
        assert_true(c.cert_retention == UINT64_C(365) * 24 * 3600 * 1000000);
        config_done(&c);
}

static void test_check_message_fits_frame(void **state) {
        _cleanup_free_ char *why = NULL;
        Config c;

        /* A default message maximum follows a smaller frame. */
        assert_int_equal(config_init(&c), 0);
        assert_int_equal(config_set(&c, "frame_payload_max", "4K", NULL), 0);
        assert_int_equal(config_check(&c, NULL), 0);
        assert_true(c.relay_message_max == 4096 - 48);
        config_done(&c);

        /* A configured one must fit: exactly 48 bytes of room is enough, 47 is not. */
        assert_int_equal(config_init(&c), 0);
        assert_int_equal(config_set(&c, "frame_payload_max", "64K", NULL), 0);
        assert_int_equal(config_set(&c, "relay_message_max", "65488", NULL), 0);
        assert_int_equal(config_check(&c, NULL), 0);
        assert_int_equal(config_set(&c, "relay_message_max", "65489", NULL), 0);
        assert_int_equal(config_check(&c, &why), -EINVAL);
        assert_non_null(why);
        assert_non_null(strstr(why, "relay_message_max"));
        assert_true(c.relay_message_max == 65489);
        config_done(&c);
}

static void test_file_names_the_line(void **state) {
        char path[] = "/tmp/test-config-XXXXXX";
        _cleanup_free_ char *error = NULL;
        Config c;
        FILE *f;
        int fd;

        fd = mkstemp(path);
        assert_true(fd >= 0);
        f = fdopen(fd, "w");
        assert_non_null(f);
        fputs("# relay\nframe_payload_max = 64K\n\nrelay_message_max = 96K\nlog_level = info\n", f);
        assert_int_equal(fclose(f), 0);

        assert_int_equal(config_init(&c), 0);
        assert_int_equal(config_load_file(&c, path, &error), -EINVAL);
        assert_non_null(error);
        assert_non_null(strstr(error, ":4: relay_message_max"));
        config_done(&c);
        free(TAKE_PTR(error));

        /* Only frame_payload_max in the file: fine, the default maximum is fitted later. */
        f = fopen(path, "we");
        assert_non_null(f);
        fputs("frame_payload_max = 4K\nrelay_send_rate = 5/fortnight\n", f);
        assert_int_equal(fclose(f), 0);
        assert_int_equal(config_init(&c), 0);
        assert_true(config_load_file(&c, path, &error) < 0);
        assert_non_null(strstr(error, ":2: relay_send_rate"));
        config_done(&c);
        free(TAKE_PTR(error));

        f = fopen(path, "we");
        assert_non_null(f);
        fputs("frame_payload_max = 4K\nrelay_send_rate = off\n", f);
        assert_int_equal(fclose(f), 0);
        assert_int_equal(config_init(&c), 0);
        assert_int_equal(config_load_file(&c, path, &error), 0);
        assert_int_equal(config_check(&c, NULL), 0);
        assert_true(c.relay_send_rate == 0);
        assert_true(c.relay_message_max == 4096 - 48);
        config_done(&c);
        (void) unlink(path);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_relay_defaults),
                cmocka_unit_test(test_rates),
                cmocka_unit_test(test_relay_ranges),
                cmocka_unit_test(test_cert_retention),
                cmocka_unit_test(test_check_message_fits_frame),
                cmocka_unit_test(test_file_names_the_line),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
