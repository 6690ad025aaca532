/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "strutil.h"

static void test_hex_roundtrip(void **state) {
        const uint8_t in[] = { 0x00, 0x01, 0x7f, 0x80, 0xab, 0xff };
        char hex[2 * sizeof in + 1];
        uint8_t out[sizeof in];

        hex_encode(in, sizeof in, hex);
        assert_string_equal(hex, "00017f80abff");
        assert_int_equal(hex_decode_exact(hex, out, sizeof out), 0);
        assert_memory_equal(in, out, sizeof in);
        assert_int_equal(hex_decode_exact("00017F80ABFF", out, sizeof out), 0);
        assert_memory_equal(in, out, sizeof in);
}

static void test_hex_rejects(void **state) {
        uint8_t out[3];

        assert_int_equal(hex_decode_exact(NULL, out, 3), -EINVAL);
        assert_int_equal(hex_decode_exact("", out, 3), -EINVAL);
        assert_int_equal(hex_decode_exact("abcde", out, 3), -EINVAL);    /* short */
        assert_int_equal(hex_decode_exact("abcdef0", out, 3), -EINVAL);  /* long */
        assert_int_equal(hex_decode_exact("abcdeg", out, 3), -EINVAL);   /* non-hex */
        assert_int_equal(hex_decode_exact("ab cde", out, 3), -EINVAL);
        assert_int_equal(hex_decode_exact("+bcdef", out, 3), -EINVAL);
}

static void test_parse_uint(void **state) {
        uint64_t v64;
        uint32_t v32;

        assert_int_equal(parse_uint64("0", &v64), 0);
        assert_int_equal(v64, 0);
        assert_int_equal(parse_uint64("18446744073709551615", &v64), 0);
        assert_true(v64 == UINT64_MAX);
        assert_int_equal(parse_uint64("18446744073709551616", &v64), -ERANGE);
        assert_int_equal(parse_uint64("", &v64), -EINVAL);
        assert_int_equal(parse_uint64(NULL, &v64), -EINVAL);
        assert_int_equal(parse_uint64("-1", &v64), -EINVAL);
        assert_int_equal(parse_uint64(" 1", &v64), -EINVAL);
        assert_int_equal(parse_uint64("1 ", &v64), -EINVAL);
        assert_int_equal(parse_uint64("0x10", &v64), -EINVAL);
        assert_int_equal(parse_uint32("4294967295", &v32), 0);
        assert_true(v32 == UINT32_MAX);
        assert_int_equal(parse_uint32("4294967296", &v32), -ERANGE);
        assert_int_equal(parse_uid("4294967295", &v32), -ERANGE);  /* (uid_t) -1 */
        assert_int_equal(parse_uid("65534", &v32), 0);
        assert_int_equal(v32, 65534);
}

static void test_parse_duration(void **state) {
        uint64_t u;

        assert_int_equal(parse_duration_usec("90", &u), 0);
        assert_true(u == UINT64_C(90000000));
        assert_int_equal(parse_duration_usec("90s", &u), 0);
        assert_true(u == UINT64_C(90000000));
        assert_int_equal(parse_duration_usec("250ms", &u), 0);
        assert_true(u == UINT64_C(250000));
        assert_int_equal(parse_duration_usec("15m", &u), 0);
        assert_true(u == UINT64_C(900000000));
        assert_int_equal(parse_duration_usec("15min", &u), 0);
        assert_true(u == UINT64_C(900000000));
        assert_int_equal(parse_duration_usec("1h30m", &u), 0);
        assert_true(u == UINT64_C(5400000000));
        assert_int_equal(parse_duration_usec("7d", &u), 0);
        assert_true(u == UINT64_C(604800000000));
        assert_int_equal(parse_duration_usec("", &u), -EINVAL);
        assert_int_equal(parse_duration_usec("h", &u), -EINVAL);
        assert_int_equal(parse_duration_usec("1x", &u), -EINVAL);
        assert_int_equal(parse_duration_usec("1hours", &u), -EINVAL);
        assert_int_equal(parse_duration_usec("-1s", &u), -EINVAL);
        assert_int_equal(parse_duration_usec("99999999999999999999d", &u), -ERANGE);
        assert_int_equal(parse_duration_usec("999999999999d", &u), -ERANGE);
}

static void test_parse_size(void **state) {
        uint64_t u;

        assert_int_equal(parse_size("4096", &u), 0);
        assert_true(u == 4096);
        assert_int_equal(parse_size("64K", &u), 0);
        assert_true(u == 65536);
        assert_int_equal(parse_size("1M", &u), 0);
        assert_true(u == 1048576);
        assert_int_equal(parse_size("2G", &u), 0);
        assert_true(u == UINT64_C(2147483648));
        assert_int_equal(parse_size("1M1K", &u), -EINVAL);
        assert_int_equal(parse_size("1T", &u), -EINVAL);
        assert_int_equal(parse_size("K", &u), -EINVAL);
        assert_int_equal(parse_size("99999999999999999999G", &u), -ERANGE);
}

static void test_utf8(void **state) {
        const char ok[] = "plain \t text h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80";

        assert_true(string_is_printable_utf8(ok, strlen(ok)));
        assert_true(string_is_printable_utf8("", 0));
        assert_false(string_is_printable_utf8("a\nb", 3));               /* control */
        assert_false(string_is_printable_utf8("a\0b", 3));               /* NUL */
        assert_false(string_is_printable_utf8("\x7f", 1));               /* DEL */
        assert_false(string_is_printable_utf8("\xc3", 1));               /* truncated */
        assert_false(string_is_printable_utf8("\xc0\xaf", 2));           /* overlong '/' */
        assert_false(string_is_printable_utf8("\xe0\x80\xaf", 3));       /* overlong */
        assert_false(string_is_printable_utf8("\xed\xa0\x80", 3));       /* surrogate */
        assert_false(string_is_printable_utf8("\xf4\x90\x80\x80", 4));   /* > U+10FFFF */
        assert_false(string_is_printable_utf8("\xff", 1));
        assert_false(string_is_printable_utf8("\xe2\x28\xa1", 3));       /* bad continuation */
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_hex_roundtrip),
                cmocka_unit_test(test_hex_rejects),
                cmocka_unit_test(test_parse_uint),
                cmocka_unit_test(test_parse_duration),
                cmocka_unit_test(test_parse_size),
                cmocka_unit_test(test_utf8),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
