/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* secctl relay stats / keys stats: formatting of io.secd.Status.Get's relay and keys parts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "secctl.h"

#define REFUSED_ZERO                                                                                    \
        "\"refused\": {\"bad_payload\": 0, \"not_registered\": 0, \"bad_signature\": 0, \"not_owner\": 0," \
        " \"mailbox_busy\": 0, \"no_such_mailbox\": 0, \"quota_exceeded\": 0, \"rate_limited\": 0,"       \
        " \"message_too_large\": 0, \"no_keys\": 0, \"busy\": 0, \"already_registered\": 0, \"internal\": 0}"

static char *print_to_string(int (*fn)(FILE *, json_object *, int64_t), json_object *o, int64_t now, int *ret_r) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        assert_non_null(f);
        *ret_r = fn(f, o, now);
        assert_int_equal(fclose(f), 0);
        return buf;
}

static int keys_print(FILE *f, json_object *o, int64_t now) {
        return ctl_keys_stats_print(f, o);
}

static void test_relay_stats(void **state) {
        json_object *o = json_tokener_parse(
                "{\"relay\": {\"mailboxes\": 12, \"messages\": 40, \"bytes\": 81920, \"oldest_usec\": 1000000,"
                " \"store_max_bytes\": 819200,"
                " \"registered\": 30, \"mailboxes_created\": 2, \"stored\": 1200, \"duplicates\": 3,"
                " \"fetched\": 1185, \"acked\": 1160, \"expired\": 0, \"fetch_waits\": 57,"
                " \"refused\": {\"bad_payload\": 0, \"not_registered\": 0, \"bad_signature\": 0, \"not_owner\": 0,"
                " \"mailbox_busy\": 0, \"no_such_mailbox\": 0, \"quota_exceeded\": 1, \"rate_limited\": 4,"
                " \"message_too_large\": 0, \"no_keys\": 0, \"busy\": 0, \"already_registered\": 0, \"internal\": 0}}}");
        _cleanup_free_ char *out = NULL;
        int r;

        assert_non_null(o);
        out = print_to_string(ctl_relay_stats_print, o, 1000000 + 3600 * INT64_C(1000000) + 5 * 60 * INT64_C(1000000), &r);
        assert_int_equal(r, 0);
        assert_non_null(strstr(out, "mailboxes: 12\nqueued: 40 messages, 81920 bytes\nstore cap: 819200 bytes (10.0% used)\n"
                                    "oldest: "));
        assert_non_null(strstr(out, " (1h 5min ago)\n"));
        assert_non_null(strstr(out, "registered: 30 (new mailboxes 2)\nstored: 1200, duplicates 3\n"
                                    "fetched: 1185, acked 1160, expired 0\nfetch-waits: 57\n"
                                    "refused: quota-exceeded 1, rate-limited 4\n"));
        json_object_put(o);
}

static void test_relay_stats_store_unknown(void **state) {
        json_object *o = json_tokener_parse(
                "{\"relay\": {\"registered\": 0, \"mailboxes_created\": 0, \"stored\": 0, \"duplicates\": 0,"
                " \"fetched\": 0, \"acked\": 0, \"expired\": 0, \"fetch_waits\": 0, " REFUSED_ZERO "}}");
        _cleanup_free_ char *out = NULL;
        int r;

        assert_non_null(o);
        out = print_to_string(ctl_relay_stats_print, o, 0, &r);
        assert_int_equal(r, 0);
        assert_non_null(strstr(out, "mailboxes: unknown"));
        assert_non_null(strstr(out, "oldest: unknown\n"));
        assert_non_null(strstr(out, "refused: none\n"));
        json_object_put(o);
}

static void test_relay_stats_malformed(void **state) {
        static const char *const bad[] = {
                "{}",                                                   /* no relay part: -ENODATA */
                "{\"relay\": 5}",
                "{\"relay\": {\"mailboxes\": 1}}",                      /* counters missing */
                "{\"relay\": {\"store_max_bytes\": -5, \"registered\": 0, \"mailboxes_created\": 0, \"stored\": 0,"
                " \"duplicates\": 0, \"fetched\": 0, \"acked\": 0, \"expired\": 0, \"fetch_waits\": 0, " REFUSED_ZERO "}}",
                "{\"relay\": {\"mailboxes\": -1, \"registered\": 0, \"mailboxes_created\": 0, \"stored\": 0,"
                " \"duplicates\": 0, \"fetched\": 0, \"acked\": 0, \"expired\": 0, \"fetch_waits\": 0, " REFUSED_ZERO "}}",
                "{\"relay\": {\"registered\": \"x\", \"mailboxes_created\": 0, \"stored\": 0, \"duplicates\": 0,"
                " \"fetched\": 0, \"acked\": 0, \"expired\": 0, \"fetch_waits\": 0, " REFUSED_ZERO "}}",
                "{\"relay\": {\"registered\": 0, \"mailboxes_created\": 0, \"stored\": 0, \"duplicates\": 0,"
                " \"fetched\": 0, \"acked\": 0, \"expired\": 0, \"fetch_waits\": 0, \"refused\": {}}}",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                json_object *o = json_tokener_parse(bad[i]);
                _cleanup_free_ char *out = NULL;
                int r;

                assert_non_null(o);
                out = print_to_string(ctl_relay_stats_print, o, 0, &r);
                assert_int_equal(r, i < 2 ? -ENODATA : -EBADMSG);
                json_object_put(o);
        }
}

static void test_keys_stats(void **state) {
        json_object *o = json_tokener_parse(
                "{\"keys\": {\"published\": 12, \"one_time_prekeys\": 830, \"exhausted\": 1, \"publishes\": 14,"
                " \"bundles_served\": 370, \"bundles_without_one_time\": 2, " REFUSED_ZERO "}}");
        json_object *missing = json_tokener_parse("{\"keys\": {\"publishes\": 1}}");
        _cleanup_free_ char *out = NULL, *out2 = NULL;
        int r;

        assert_non_null(o);
        out = print_to_string(keys_print, o, 0, &r);
        assert_int_equal(r, 0);
        assert_string_equal(out, "published: 12 mailboxes\none-time-prekeys: 830\nexhausted: 1 mailboxes\n"
                                 "publishes: 14\nbundles: 370 served, 2 without a one-time pre-key\nrefused: none\n");
        assert_non_null(missing);
        out2 = print_to_string(keys_print, missing, 0, &r);
        assert_int_equal(r, -EBADMSG);
        json_object_put(o);
        json_object_put(missing);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_relay_stats),
                cmocka_unit_test(test_relay_stats_store_unknown),
                cmocka_unit_test(test_relay_stats_malformed),
                cmocka_unit_test(test_keys_stats),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
