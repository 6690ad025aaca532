/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "frame.h"

static void test_header_roundtrip(void **state) {
        uint8_t buf[FRAME_HEADER_SIZE];
        FrameHeader h;

        frame_header_write(buf, FRAME_PING, 0xA1B2C3D4, 0x01020304);
        assert_int_equal(buf[0], 0x53);
        assert_int_equal(buf[1], 0x44);
        assert_int_equal(buf[2], 1);
        assert_int_equal(buf[3], 0x01);
        assert_int_equal(buf[4], 0xA1);
        assert_int_equal(buf[7], 0xD4);
        assert_int_equal(buf[8], 0x01);
        assert_int_equal(buf[11], 0x04);
        assert_int_equal(frame_header_parse(buf, sizeof buf, &h), 0);
        assert_int_equal(h.version, 1);
        assert_int_equal(h.type, FRAME_PING);
        assert_int_equal(h.request_id, 0xA1B2C3D4);
        assert_int_equal(h.length, 0x01020304);
}

static void test_header_rejects(void **state) {
        uint8_t buf[FRAME_HEADER_SIZE];
        FrameHeader h = {};

        frame_header_write(buf, FRAME_PING, 1, 0);
        assert_int_equal(frame_header_parse(buf, FRAME_HEADER_SIZE - 1, &h), -EINVAL);
        buf[0] = 'X';
        assert_int_equal(frame_header_parse(buf, sizeof buf, &h), -EBADMSG);
        buf[0] = 0x53;
        buf[1] = 0x45;
        assert_int_equal(frame_header_parse(buf, sizeof buf, &h), -EBADMSG);
        buf[1] = 0x44;
        buf[2] = 2;
        assert_int_equal(frame_header_parse(buf, sizeof buf, &h), -EPROTONOSUPPORT);
        buf[2] = 0;
        assert_int_equal(frame_header_parse(buf, sizeof buf, &h), -EPROTONOSUPPORT);
}

static void test_check_length(void **state) {
        FrameHeader h = { .length = FRAME_PAYLOAD_MAX_DEFAULT };

        assert_int_equal(frame_header_check_length(&h, FRAME_PAYLOAD_MAX_DEFAULT), 0);
        h.length++;
        assert_int_equal(frame_header_check_length(&h, FRAME_PAYLOAD_MAX_DEFAULT), -EMSGSIZE);
        h.length = FRAME_PAYLOAD_MAX_HARD + 1;
        /* The hard cap holds whatever the configuration says. */
        assert_int_equal(frame_header_check_length(&h, UINT32_MAX), -EMSGSIZE);
        h.length = FRAME_PAYLOAD_MAX_HARD;
        assert_int_equal(frame_header_check_length(&h, UINT32_MAX), 0);
        h.length = 0;
        assert_int_equal(frame_header_check_length(&h, 0), 0);
}

static void test_reader_byte_by_byte(void **state) {
        FrameReader *r = NULL;
        uint8_t *f = NULL;
        size_t size, consumed;
        FrameHeader h;
        const uint8_t *p;

        assert_int_equal(frame_build(FRAME_PING, 7, "hello", 5, &f, &size), 0);
        assert_int_equal(size, FRAME_HEADER_SIZE + 5);
        assert_int_equal(frame_reader_new(1024, &r), 0);
        assert_false(frame_reader_partial(r));
        for (size_t i = 0; i < size; i++) {
                int k = frame_reader_feed(r, f + i, 1, &consumed);
                assert_int_equal(consumed, 1);
                assert_int_equal(k, i == size - 1 ? 1 : 0);
                if (i < size - 1)
                        assert_true(frame_reader_partial(r));
        }
        assert_false(frame_reader_partial(r));
        frame_reader_frame(r, &h, &p);
        assert_int_equal(h.type, FRAME_PING);
        assert_int_equal(h.request_id, 7);
        assert_int_equal(h.length, 5);
        assert_memory_equal(p, "hello", 5);
        frame_reader_reset(r);
        assert_false(frame_reader_partial(r));
        free(f);
        frame_reader_free(r);
}

static void test_reader_pipelined(void **state) {
        FrameReader *r = NULL;
        uint8_t buf[3 * FRAME_HEADER_SIZE + 4];
        size_t off = 0, consumed;
        FrameHeader h;
        const uint8_t *p;
        unsigned n = 0;

        frame_header_write(buf, FRAME_PING, 1, 0);
        frame_header_write(buf + FRAME_HEADER_SIZE, FRAME_PING, 2, 4);
        memcpy(buf + 2 * FRAME_HEADER_SIZE, "abcd", 4);
        frame_header_write(buf + 2 * FRAME_HEADER_SIZE + 4, 0x42, 3, 0);
        assert_int_equal(frame_reader_new(16, &r), 0);
        while (off < sizeof buf) {
                int k = frame_reader_feed(r, buf + off, sizeof buf - off, &consumed);
                assert_true(k >= 0);
                off += consumed;
                if (k == 1) {
                        frame_reader_frame(r, &h, &p);
                        n++;
                        assert_int_equal(h.request_id, n);
                        if (n == 2)
                                assert_memory_equal(p, "abcd", 4);
                        if (n == 3)
                                assert_int_equal(h.type, 0x42);
                        frame_reader_reset(r);
                }
        }
        assert_int_equal(n, 3);
        frame_reader_free(r);
}

static void test_reader_too_large(void **state) {
        FrameReader *r = NULL;
        uint8_t buf[FRAME_HEADER_SIZE];
        size_t consumed;

        frame_header_write(buf, FRAME_PING, 1, 17);
        assert_int_equal(frame_reader_new(16, &r), 0);
        assert_int_equal(frame_reader_feed(r, buf, sizeof buf, &consumed), -EMSGSIZE);
        /* Sticky. */
        assert_int_equal(frame_reader_feed(r, buf, sizeof buf, &consumed), -EMSGSIZE);
        frame_reader_free(r);

        /* 4 GiB - 1 announced: refused before anything is allocated. */
        frame_header_write(buf, FRAME_PING, 1, UINT32_MAX);
        assert_int_equal(frame_reader_new(UINT32_MAX, &r), 0);
        assert_int_equal(frame_reader_feed(r, buf, sizeof buf, &consumed), -EMSGSIZE);
        frame_reader_free(r);
}

static void test_reader_bad_magic(void **state) {
        FrameReader *r = NULL;
        size_t consumed;

        assert_int_equal(frame_reader_new(16, &r), 0);
        assert_int_equal(frame_reader_feed(r, (const uint8_t *) "GET / HTTP/1.1\r\n", 16, &consumed), -EBADMSG);
        assert_int_equal(consumed, FRAME_HEADER_SIZE);
        frame_reader_free(r);
}

static void test_error_frames(void **state) {
        uint8_t *f = NULL;
        size_t size;
        FrameHeader h;
        uint16_t code;
        char *msg = NULL, big[FRAME_ERROR_MESSAGE_MAX + 10];

        assert_int_equal(frame_build_error(9, FRAME_ERROR_NOT_ADMITTED, "no", &f, &size), 0);
        assert_int_equal(size, FRAME_HEADER_SIZE + 4);
        assert_int_equal(frame_header_parse(f, size, &h), 0);
        assert_int_equal(h.type, FRAME_ERROR);
        assert_int_equal(h.request_id, 9);
        assert_int_equal(frame_error_parse(f + FRAME_HEADER_SIZE, h.length, &code, &msg), 0);
        assert_int_equal(code, FRAME_ERROR_NOT_ADMITTED);
        assert_string_equal(msg, "no");
        free(msg);
        free(f);

        /* Truncated at a character boundary: 1023 ASCII then a 2-byte character. */
        memset(big, 'a', sizeof big);
        big[FRAME_ERROR_MESSAGE_MAX - 1] = (char) 0xC3;
        big[FRAME_ERROR_MESSAGE_MAX] = (char) 0xA9;
        big[sizeof big - 1] = '\0';
        assert_int_equal(frame_build_error(1, FRAME_ERROR_INTERNAL, big, &f, &size), 0);
        assert_int_equal(size, FRAME_HEADER_SIZE + 2 + FRAME_ERROR_MESSAGE_MAX - 1);
        assert_int_equal(frame_error_parse(f + FRAME_HEADER_SIZE, (uint32_t) (size - FRAME_HEADER_SIZE), &code, &msg), 0);
        assert_int_equal(strlen(msg), FRAME_ERROR_MESSAGE_MAX - 1);
        free(msg);
        free(f);

        assert_int_equal(frame_build_error(1, FRAME_ERROR_INTERNAL, NULL, &f, &size), 0);
        assert_int_equal(size, FRAME_HEADER_SIZE + 2);
        free(f);

        assert_int_equal(frame_error_parse((const uint8_t *) "\x00", 1, &code, &msg), -EBADMSG);
        assert_int_equal(frame_error_parse((const uint8_t *) "\x00\x01\xff", 3, &code, &msg), -EBADMSG);
        assert_int_equal(frame_error_parse((const uint8_t *) "\x00\x01\xc0\x80", 4, &code, &msg), -EBADMSG); /* overlong */
        assert_int_equal(frame_error_parse((const uint8_t *) "\x00\x01\xed\xa0\x80", 5, &code, &msg), -EBADMSG); /* surrogate */
        assert_int_equal(frame_error_parse((const uint8_t *) "\x00\x01\xc3", 3, &code, &msg), -EBADMSG); /* cut */
        assert_int_equal(frame_error_parse((const uint8_t *) "\x00\x01" "a\0b", 5, &code, &msg), -EBADMSG); /* NUL */
        assert_int_equal(frame_error_parse((const uint8_t *) "\x00\x02\xf0\x9f\x98\x80", 6, &code, &msg), 0);
        assert_int_equal(code, 2);
        free(msg);
}

static void test_error_names(void **state) {
        /* Every code by number, as docs/protocol.md lists them: a renumbered enum fails here. */
        static const char *const names[] = {
                [1] = "BAD_FRAME",         [2] = "UNKNOWN_TYPE",     [3] = "TOO_LARGE",
                [4] = "BAD_PAYLOAD",       [5] = "NOT_ADMITTED",     [6] = "CERT_REVOKED",
                [7] = "CERT_EXPIRED",      [8] = "INTERNAL",         [9] = "SHUTTING_DOWN",
                [10] = "IDLE_TIMEOUT",     [11] = "NOT_REGISTERED",  [12] = "BAD_SIGNATURE",
                [13] = "NOT_OWNER",        [14] = "MAILBOX_BUSY",    [15] = "NO_SUCH_MAILBOX",
                [16] = "QUOTA_EXCEEDED",   [17] = "RATE_LIMITED",    [18] = "MESSAGE_TOO_LARGE",
                [19] = "NO_KEYS",          [20] = "BUSY",            [21] = "ALREADY_REGISTERED",
        };

        for (uint16_t code = 1; code < ELEMENTSOF(names); code++)
                assert_string_equal(frame_error_to_string(code), names[code]);
        assert_int_equal(FRAME_ERROR_NOT_REGISTERED, 11);
        assert_int_equal(FRAME_ERROR_ALREADY_REGISTERED, 21);
        assert_string_equal(frame_error_to_string(FRAME_ERROR_MESSAGE_TOO_LARGE), "MESSAGE_TOO_LARGE");
        assert_null(frame_error_to_string(0));
        assert_null(frame_error_to_string(ELEMENTSOF(names)));
        assert_null(frame_error_to_string(999));
        assert_null(frame_error_to_string(UINT16_MAX));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_header_roundtrip),
                cmocka_unit_test(test_header_rejects),
                cmocka_unit_test(test_check_length),
                cmocka_unit_test(test_reader_byte_by_byte),
                cmocka_unit_test(test_reader_pipelined),
                cmocka_unit_test(test_reader_too_large),
                cmocka_unit_test(test_reader_bad_magic),
                cmocka_unit_test(test_error_frames),
                cmocka_unit_test(test_error_names),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
