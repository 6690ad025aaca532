/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The relay and key-server payload codec against the wire format written
 * out by hand (docs/protocol.md): known-answer layouts, round trips, every
 * truncation, one byte too many, counts and ids out of bounds. Inputs are
 * copied into exact-size heap buffers so the sanitizer build sees any read
 * past the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "frame.h"
#include "relay-proto.h"

/*
 * Hex as written in the tests: whitespace-separated bytes, "xx*N" repeats a
 * byte N times (a 32-byte key of 0x11 is "11*32").
 */
static uint8_t *unhex(const char *s, size_t *ret_n) {
        uint8_t *buf = NULL;
        size_t n = 0;

        while (*s) {
                unsigned byte, count = 1;
                int used = 0;

                if (*s == ' ' || *s == '\n') {
                        s++;
                        continue;
                }
                assert_int_equal(sscanf(s, "%2x%n", &byte, &used), 1);
                assert_int_equal(used, 2);
                s += used;
                if (*s == '*') {
                        assert_int_equal(sscanf(s + 1, "%u%n", &count, &used), 1);
                        s += 1 + used;
                }
                buf = realloc(buf, n + count);
                assert_non_null(buf);
                memset(buf + n, (int) byte, count);
                n += count;
        }
        *ret_n = n;
        return buf;
}

/* A heap copy of exactly n bytes (at least one allocated), so ASan catches p[n]. */
static uint8_t *exact(const uint8_t *p, size_t n) {
        uint8_t *c = malloc(n ? n : 1);

        assert_non_null(c);
        if (n)
                memcpy(c, p, n);
        return c;
}

/* p plus one byte. */
static uint8_t *plus_one(const uint8_t *p, size_t n, size_t *ret_n) {
        uint8_t *c = malloc(n + 1);

        assert_non_null(c);
        memcpy(c, p, n);
        c[n] = 0;
        *ret_n = n + 1;
        return c;
}

typedef int (*parse_fn)(const uint8_t *p, size_t n);

/* Every proper prefix of p (including the empty one) is refused. */
static void assert_truncations_refused(parse_fn parse, const uint8_t *p, size_t n) {
        for (size_t k = 0; k < n; k++) {
                uint8_t *c = exact(p, k);

                if (parse(c, k) != -EBADMSG)
                        fail_msg("prefix of %zu of %zu bytes not refused", k, n);
                free(c);
        }
}

static void assert_refused(parse_fn parse, const uint8_t *p, size_t n) {
        uint8_t *c = exact(p, n);

        assert_int_equal(parse(c, n), -EBADMSG);
        free(c);
}

static void assert_extra_refused(parse_fn parse, const uint8_t *p, size_t n) {
        size_t m;
        uint8_t *c = plus_one(p, n, &m);

        assert_int_equal(parse(c, m), -EBADMSG);
        free(c);
}

/* Parser wrappers with one signature, freeing whatever they returned. */
static int parse_register(const uint8_t *p, size_t n) {
        RelayRegister r;
        return relay_register_parse(p, n, &r);
}
static int parse_register_reply(const uint8_t *p, size_t n) {
        bool created;
        return relay_register_reply_parse(p, n, &created);
}
static int parse_send(const uint8_t *p, size_t n) {
        RelaySend s;
        return relay_send_parse(p, n, &s);
}
static int parse_send_reply(const uint8_t *p, size_t n) {
        RelaySendReply r;
        return relay_send_reply_parse(p, n, &r);
}
static int parse_fetch(const uint8_t *p, size_t n) {
        RelayFetch f;
        return relay_fetch_parse(p, n, &f);
}
static int parse_fetch_reply(const uint8_t *p, size_t n) {
        RelayMessage *m = NULL;
        size_t k = 0;
        int r = relay_fetch_reply_parse(p, n, &m, &k);
        free(m);
        return r;
}
static int parse_ack(const uint8_t *p, size_t n) {
        uint64_t *ids = NULL;
        size_t k = 0;
        int r = relay_ack_parse(p, n, &ids, &k);
        free(ids);
        return r;
}
static int parse_ack_reply(const uint8_t *p, size_t n) {
        uint16_t d;
        return relay_ack_reply_parse(p, n, &d);
}
static int parse_publish(const uint8_t *p, size_t n) {
        RelayPublish *pub = malloc(sizeof *pub);
        int r;

        assert_non_null(pub);
        r = relay_publish_parse(p, n, pub);
        free(pub);
        return r;
}
static int parse_publish_reply(const uint8_t *p, size_t n) {
        uint16_t s;
        return relay_publish_reply_parse(p, n, &s);
}
static int parse_bundle_request(const uint8_t *p, size_t n) {
        uint8_t key[RELAY_KEY_SIZE];
        return relay_bundle_request_parse(p, n, key);
}
static int parse_bundle(const uint8_t *p, size_t n) {
        RelayBundle b;
        return relay_bundle_parse(p, n, &b);
}
static int parse_count_reply(const uint8_t *p, size_t n) {
        uint32_t c;
        return relay_count_reply_parse(p, n, &c);
}

/* Truncations, one byte extra, and the full payload accepted. */
static void assert_exact_length(parse_fn parse, const char *hex) {
        size_t n;
        uint8_t *p = unhex(hex, &n), *c = exact(p, n);

        assert_int_equal(parse(c, n), 0);
        assert_truncations_refused(parse, p, n);
        assert_extra_refused(parse, p, n);
        free(c);
        free(p);
}

static void test_sizes(void **state) {
        /* The header's arithmetic, against the layout counted by hand. */
        assert_int_equal(RELAY_REGISTER_SIZE, 96);
        assert_int_equal(RELAY_SEND_HEADER_SIZE, 48);
        assert_int_equal(RELAY_FETCH_SIZE, 18);
        assert_int_equal(RELAY_FETCH_ITEM_HEADER_SIZE, 36);
        assert_int_equal(RELAY_PUBLISH_HEADER_SIZE, 198);
        assert_int_equal(RELAY_PREKEY_SIZE, 36);
        assert_int_equal(RELAY_BUNDLE_REPLY_MIN, 229);
        assert_int_equal(RELAY_BUNDLE_REPLY_MAX, 265);
}

static void test_signed_messages(void **state) {
        uint8_t out[RELAY_SIGNED_MAX], v[RELAY_EXPORTER_SIZE];
        uint8_t *want;
        size_t n, want_n;

        for (size_t i = 0; i < sizeof v; i++)
                v[i] = (uint8_t) i;

        /* "secd relay register v1", no NUL, then the 32-byte exporter. */
        want = unhex("73 65 63 64 20 72 65 6c 61 79 20 72 65 67 69 73 74 65 72 20 76 31"
                     " 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f"
                     " 10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f", &want_n);
        n = relay_signed_register(out, v);
        assert_int_equal(n, 22 + 32);
        assert_int_equal(n, want_n);
        assert_memory_equal(out, want, n);
        free(want);

        /* "secd keys identity-dh v1" then the X25519 key. */
        memset(v, 0x33, sizeof v);
        want = unhex("73 65 63 64 20 6b 65 79 73 20 69 64 65 6e 74 69 74 79 2d 64 68 20 76 31"
                     " 33*32", &want_n);
        n = relay_signed_identity_dh(out, v);
        assert_int_equal(n, 24 + 32);
        assert_int_equal(n, want_n);
        assert_memory_equal(out, want, n);
        free(want);

        /* "secd keys signed-prekey v1", the id big-endian, the key. */
        memset(v, 0x55, sizeof v);
        want = unhex("73 65 63 64 20 6b 65 79 73 20 73 69 67 6e 65 64 2d 70 72 65 6b 65 79 20 76 31"
                     " 01 02 03 04 55*32", &want_n);
        n = relay_signed_prekey(out, 0x01020304, v);
        assert_int_equal(n, 26 + 4 + 32);
        assert_int_equal(n, want_n);
        assert_true(n <= RELAY_SIGNED_MAX);
        assert_memory_equal(out, want, n);
        free(want);

        /* Another id, another message: the id is covered. */
        assert_int_equal(relay_signed_prekey(out, 0x01020305, v), 62);
        assert_int_equal(out[26 + 3], 0x05);
}

#define REGISTER_HEX "11*32 22*64"

static void test_register(void **state) {
        RelayRegister r = {}, r2;
        uint8_t out[RELAY_REGISTER_SIZE], *p, *c;
        size_t n;
        bool created;

        memset(r.key, 0x11, sizeof r.key);
        memset(r.proof, 0x22, sizeof r.proof);
        assert_int_equal(relay_register_build(&r, out), 0);
        p = unhex(REGISTER_HEX, &n);
        assert_int_equal(n, sizeof out);
        assert_memory_equal(out, p, n);

        c = exact(p, n);
        assert_int_equal(relay_register_parse(c, n, &r2), 0);
        assert_memory_equal(&r, &r2, sizeof r);
        free(c);
        free(p);
        assert_exact_length(parse_register, REGISTER_HEX);

        /* Reply: one byte, 0 or 1. */
        relay_register_reply_build(true, out);
        assert_int_equal(out[0], 1);
        relay_register_reply_build(false, out);
        assert_int_equal(out[0], 0);
        assert_int_equal(relay_register_reply_parse((const uint8_t *) "\x01", 1, &created), 0);
        assert_true(created);
        assert_int_equal(relay_register_reply_parse((const uint8_t *) "\x00", 1, &created), 0);
        assert_false(created);
        assert_exact_length(parse_register_reply, "01");
        assert_refused(parse_register_reply, (const uint8_t *) "\x02", 1);
        assert_refused(parse_register_reply, (const uint8_t *) "\xff", 1);

        assert_int_equal(relay_register_parse(NULL, 96, &r2), -EINVAL);
        assert_int_equal(relay_register_parse(out, 96, NULL), -EINVAL);
}

static void test_send(void **state) {
        RelaySend s = { .blob = (const uint8_t *) "hi", .blob_size = 2 }, s2;
        uint8_t *out = NULL, *p, *c;
        size_t n, out_n;

        memset(s.recipient, 0xaa, sizeof s.recipient);
        for (size_t i = 0; i < sizeof s.client_msg_id; i++)
                s.client_msg_id[i] = (uint8_t) i;
        assert_int_equal(relay_send_build(&s, 1024, &out, &out_n), 0);
        p = unhex("aa*32"
                  " 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f"
                  " 68 69", &n);
        assert_int_equal(out_n, 50);
        assert_int_equal(n, out_n);
        assert_memory_equal(out, p, n);
        free(out);

        c = exact(p, n);
        assert_int_equal(relay_send_parse(c, n, &s2), 0);
        assert_memory_equal(s2.recipient, s.recipient, RELAY_KEY_SIZE);
        assert_memory_equal(s2.client_msg_id, s.client_msg_id, RELAY_MSG_ID_SIZE);
        /* The blob is not copied: it points into the payload. */
        assert_ptr_equal(s2.blob, c + 48);
        assert_int_equal(s2.blob_size, 2);
        free(c);

        /* Up to and including 48 bytes there is no blob: refused. */
        assert_truncations_refused(parse_send, p, 49);
        free(p);

        /* One blob byte is the minimum. */
        p = unhex("aa*32 bb*16 00", &n);
        c = exact(p, n);
        assert_int_equal(relay_send_parse(c, n, &s2), 0);
        assert_int_equal(s2.blob_size, 1);
        assert_int_equal(s2.blob[0], 0);
        free(c);
        free(p);

        /* Builder bounds: the maximum is inclusive. */
        assert_int_equal(relay_send_build(&s, 50, &out, &out_n), 0);
        free(out);
        out = NULL;
        assert_int_equal(relay_send_build(&s, 49, &out, &out_n), -E2BIG);
        assert_null(out);
        assert_int_equal(relay_send_build(&s, 0, &out, &out_n), -E2BIG);
        s.blob_size = SIZE_MAX - 10;      /* header + blob overflows size_t */
        assert_int_equal(relay_send_build(&s, SIZE_MAX, &out, &out_n), -E2BIG);
        s.blob_size = 0;
        assert_int_equal(relay_send_build(&s, 1024, &out, &out_n), -EINVAL);
        s.blob_size = 2;
        s.blob = NULL;
        assert_int_equal(relay_send_build(&s, 1024, &out, &out_n), -EINVAL);
        assert_null(out);
}

static void test_send_reply(void **state) {
        RelaySendReply r = { .server_id = 0x0102030405060708, .duplicate = true }, r2;
        uint8_t out[RELAY_SEND_REPLY_SIZE], *p;
        size_t n;

        relay_send_reply_build(&r, out);
        p = unhex("01 02 03 04 05 06 07 08 01", &n);
        assert_int_equal(n, sizeof out);
        assert_memory_equal(out, p, n);
        free(p);
        assert_int_equal(relay_send_reply_parse(out, sizeof out, &r2), 0);
        assert_int_equal(r2.server_id, 0x0102030405060708);
        assert_true(r2.duplicate);

        r = (RelaySendReply) { .server_id = UINT64_MAX };
        relay_send_reply_build(&r, out);
        assert_int_equal(relay_send_reply_parse(out, sizeof out, &r2), 0);
        assert_int_equal(r2.server_id, UINT64_MAX);
        assert_false(r2.duplicate);

        assert_exact_length(parse_send_reply, "00*8 00");
        p = unhex("00*8 02", &n);
        assert_refused(parse_send_reply, p, n);
        free(p);
}

static void test_fetch(void **state) {
        RelayFetch f = { .max_count = 1000, .max_bytes = 0x00010000, .wait_ms = 30000,
                         .after_id = 0x0102030405060708 }, f2;
        uint8_t out[RELAY_FETCH_SIZE], *p;
        size_t n;

        assert_int_equal(relay_fetch_build(&f, out), 0);
        p = unhex("03 e8  00 01 00 00  00 00 75 30  01 02 03 04 05 06 07 08", &n);
        assert_int_equal(n, sizeof out);
        assert_memory_equal(out, p, n);
        free(p);
        assert_int_equal(relay_fetch_parse(out, sizeof out, &f2), 0);
        assert_int_equal(f2.max_count, 1000);
        assert_int_equal(f2.max_bytes, 0x10000);
        assert_int_equal(f2.wait_ms, 30000);
        assert_int_equal(f2.after_id, 0x0102030405060708);

        /* The cursor is read as one big-endian u64, whatever its top bit. */
        f.after_id = UINT64_MAX - 1;
        assert_int_equal(relay_fetch_build(&f, out), 0);
        p = unhex("03 e8  00 01 00 00  00 00 75 30  ff ff ff ff ff ff ff fe", &n);
        assert_memory_equal(out, p, n);
        free(p);
        assert_int_equal(relay_fetch_parse(out, sizeof out, &f2), 0);
        assert_true(f2.after_id == UINT64_MAX - 1);

        /* after_id 0 (everything pending), and extremes that are valid. */
        assert_exact_length(parse_fetch, "00 01 00 00 00 01 00 00 00 00  00*8");
        assert_exact_length(parse_fetch, "00 01 ff ff ff ff ff ff ff ff  ff*8");
        assert_exact_length(parse_fetch, "03 e8 00 00 00 01 00 00 00 00  80 00 00 00 00 00 00 00");

        /* The old 10-byte layout is refused, not read with a cursor of 0. */
        p = unhex("03 e8  00 01 00 00  00 00 75 30", &n);
        assert_refused(parse_fetch, p, n);
        free(p);

        /* max_count 0 and 1001, max_bytes 0: refused whatever the cursor. */
        p = unhex("00 00 00 00 00 01 00 00 00 00  00*8", &n);
        assert_refused(parse_fetch, p, n);
        free(p);
        p = unhex("03 e9 00 00 00 01 00 00 00 00  00*7 01", &n);
        assert_refused(parse_fetch, p, n);
        free(p);
        p = unhex("ff ff 00 00 00 01 00 00 00 00  ff*8", &n);
        assert_refused(parse_fetch, p, n);
        free(p);
        p = unhex("00 01 00 00 00 00 00 00 00 00  00*8", &n);
        assert_refused(parse_fetch, p, n);
        free(p);

        f.max_count = 0;
        assert_int_equal(relay_fetch_build(&f, out), -EINVAL);
        f.max_count = RELAY_FETCH_COUNT_MAX + 1;
        assert_int_equal(relay_fetch_build(&f, out), -EINVAL);
        f.max_count = 1;
        f.max_bytes = 0;
        assert_int_equal(relay_fetch_build(&f, out), -EINVAL);
        assert_int_equal(relay_fetch_build(NULL, out), -EINVAL);
}

/* Two messages: "abc" (server id 7) and one 0xff byte (server id 256). */
#define FETCH_REPLY_HEX                                                        \
        "00 02"                                                                \
        " 00 00 00 00 00 00 00 07  a1*16  01 02 03 04 05 06 07 08  00 00 00 03  61 62 63" \
        " 00 00 00 00 00 00 01 00  b2*16  11 12 13 14 15 16 17 18  00 00 00 01  ff"

static void test_fetch_reply(void **state) {
        RelayMessage m[2] = {
                { .server_id = 7, .received_usec = 0x0102030405060708,
                  .blob = (const uint8_t *) "abc", .blob_size = 3 },
                { .server_id = 256, .received_usec = 0x1112131415161718,
                  .blob = (const uint8_t *) "\xff", .blob_size = 1 },
        };
        RelayMessage *got = NULL;
        uint8_t *out = NULL, *p, *c;
        size_t n, out_n, got_n = 99;

        memset(m[0].client_msg_id, 0xa1, RELAY_MSG_ID_SIZE);
        memset(m[1].client_msg_id, 0xb2, RELAY_MSG_ID_SIZE);
        p = unhex(FETCH_REPLY_HEX, &n);
        assert_int_equal(n, 2 + 36 + 3 + 36 + 1);
        assert_int_equal(relay_fetch_reply_size(m, 2), n);
        assert_int_equal(relay_fetch_reply_size(m, 1), 2 + 36 + 3);
        assert_int_equal(relay_fetch_reply_size(m, 0), 2);

        assert_int_equal(relay_fetch_reply_build(m, 2, n, &out, &out_n), 0);
        assert_int_equal(out_n, n);
        assert_memory_equal(out, p, n);
        free(out);
        out = NULL;
        assert_int_equal(relay_fetch_reply_build(m, 2, n - 1, &out, &out_n), -E2BIG);
        assert_null(out);

        c = exact(p, n);
        assert_int_equal(relay_fetch_reply_parse(c, n, &got, &got_n), 0);
        assert_int_equal(got_n, 2);
        for (size_t i = 0; i < 2; i++) {
                assert_int_equal(got[i].server_id, m[i].server_id);
                assert_memory_equal(got[i].client_msg_id, m[i].client_msg_id, RELAY_MSG_ID_SIZE);
                assert_int_equal(got[i].received_usec, m[i].received_usec);
                assert_int_equal(got[i].blob_size, m[i].blob_size);
                assert_memory_equal(got[i].blob, m[i].blob, m[i].blob_size);
                assert_true(got[i].blob >= c && got[i].blob + got[i].blob_size <= c + n);
        }
        free(got);
        free(c);

        assert_truncations_refused(parse_fetch_reply, p, n);
        assert_extra_refused(parse_fetch_reply, p, n);

        /* The count says 3 (or 1) but the bytes hold 2. */
        p[1] = 3;
        assert_refused(parse_fetch_reply, p, n);
        p[1] = 1;
        assert_refused(parse_fetch_reply, p, n);
        p[1] = 2;

        /* Second item's length 2 (past the end) and 0 (an empty blob). */
        p[2 + 36 + 3 + 35] = 2;
        assert_refused(parse_fetch_reply, p, n);
        p[2 + 36 + 3 + 35] = 0;
        assert_refused(parse_fetch_reply, p, n);
        p[2 + 36 + 3 + 35] = 1;
        /* First item's length 0xffffffff. */
        memset(p + 2 + 8 + 16 + 8, 0xff, 4);
        assert_refused(parse_fetch_reply, p, n);
        free(p);

        /* An empty blob even where the bytes add up: item 1 length 0, item 2 length 2. */
        p = unhex("00 02"
                  " 00*7 05  a1*16  00*8  00 00 00 00"
                  " 00*7 06  b2*16  00*8  00 00 00 02  61 62", &n);
        assert_refused(parse_fetch_reply, p, n);
        free(p);

        /* Server ids must increase: equal and decreasing are refused. */
        p = unhex("00 02"
                  " 00*7 05  a1*16  00*8  00 00 00 01  61"
                  " 00*7 05  b2*16  00*8  00 00 00 01  62", &n);
        assert_refused(parse_fetch_reply, p, n);
        p[2 + 37 + 7] = 4;
        assert_refused(parse_fetch_reply, p, n);
        p[2 + 37 + 7] = 6;
        assert_int_equal(parse_fetch_reply(p, n), 0);
        free(p);
        m[1].server_id = 7;
        assert_int_equal(relay_fetch_reply_build(m, 2, 4096, &out, &out_n), -EINVAL);
        m[1].server_id = 6;
        assert_int_equal(relay_fetch_reply_build(m, 2, 4096, &out, &out_n), -EINVAL);
        m[1].server_id = 256;

        /* Nothing pending: count 0, no array. */
        assert_int_equal(relay_fetch_reply_build(NULL, 0, 2, &out, &out_n), 0);
        assert_int_equal(out_n, 2);
        assert_int_equal(out[0], 0);
        assert_int_equal(out[1], 0);
        got = (RelayMessage *) 0x1;
        assert_int_equal(relay_fetch_reply_parse(out, out_n, &got, &got_n), 0);
        assert_null(got);
        assert_int_equal(got_n, 0);
        free(out);
        out = NULL;
        assert_exact_length(parse_fetch_reply, "00 00");

        /* A count over the maximum, and a huge count behind a tiny payload (nothing allocated from it). */
        p = unhex("03 e9", &n);
        assert_refused(parse_fetch_reply, p, n);
        free(p);
        p = unhex("ff ff  00*32 00 00 00 01 61", &n);
        assert_refused(parse_fetch_reply, p, n);
        free(p);
        p = unhex("03 e8  00*32 00 00 00 01 61", &n);
        assert_refused(parse_fetch_reply, p, n);
        free(p);

        /* Builder arguments. */
        m[0].blob_size = 0;
        assert_int_equal(relay_fetch_reply_build(m, 2, 4096, &out, &out_n), -EINVAL);
        m[0].blob_size = 3;
        m[0].blob = NULL;
        assert_int_equal(relay_fetch_reply_build(m, 2, 4096, &out, &out_n), -EINVAL);
        m[0].blob = (const uint8_t *) "abc";
        assert_int_equal(relay_fetch_reply_build(NULL, 1, 4096, &out, &out_n), -EINVAL);
        assert_null(out);
}

static void test_fetch_reply_max_count(void **state) {
        RelayMessage *m, *got = NULL;
        uint8_t *out = NULL, *c;
        size_t out_n, got_n;
        uint8_t blob = 0x5a;

        m = calloc(RELAY_FETCH_COUNT_MAX + 1, sizeof *m);
        assert_non_null(m);
        for (size_t i = 0; i <= RELAY_FETCH_COUNT_MAX; i++)
                m[i] = (RelayMessage) { .server_id = i + 1, .blob = &blob, .blob_size = 1 };

        assert_int_equal(relay_fetch_reply_build(m, RELAY_FETCH_COUNT_MAX, SIZE_MAX, &out, &out_n), 0);
        assert_int_equal(out_n, 2 + (size_t) RELAY_FETCH_COUNT_MAX * 37);
        c = exact(out, out_n);
        assert_int_equal(relay_fetch_reply_parse(c, out_n, &got, &got_n), 0);
        assert_int_equal(got_n, RELAY_FETCH_COUNT_MAX);
        assert_int_equal(got[RELAY_FETCH_COUNT_MAX - 1].server_id, RELAY_FETCH_COUNT_MAX);
        free(got);
        free(c);
        free(out);
        out = NULL;

        assert_int_equal(relay_fetch_reply_build(m, RELAY_FETCH_COUNT_MAX + 1, SIZE_MAX, &out, &out_n), -EINVAL);
        assert_null(out);
        free(m);
}

#define ACK_HEX "00 02  00 00 00 00 00 00 00 07  ff ff ff ff ff ff ff fe"

static void test_ack(void **state) {
        uint64_t ids[] = { 7, UINT64_MAX - 1 }, *got = NULL, *many;
        uint8_t *out = NULL, *p, *c;
        size_t n, out_n, got_n;
        uint16_t deleted;

        assert_int_equal(relay_ack_build(ids, 2, &out, &out_n), 0);
        p = unhex(ACK_HEX, &n);
        assert_int_equal(out_n, n);
        assert_memory_equal(out, p, n);
        free(out);
        out = NULL;
        c = exact(p, n);
        assert_int_equal(relay_ack_parse(c, n, &got, &got_n), 0);
        assert_int_equal(got_n, 2);
        assert_int_equal(got[0], 7);
        assert_int_equal(got[1], UINT64_MAX - 1);
        free(got);
        got = NULL;
        free(c);
        free(p);
        assert_exact_length(parse_ack, ACK_HEX);

        /* Duplicates are allowed. */
        assert_exact_length(parse_ack, "00 02 00*7 09 00*7 09");
        /* Count 0 (with nothing or an id behind it). */
        assert_exact_length(parse_ack, "00 01 00*8");
        p = unhex("00 00", &n);
        assert_refused(parse_ack, p, n);
        free(p);
        p = unhex("00 00 00*8", &n);
        assert_refused(parse_ack, p, n);
        free(p);

        /* 1000 ids is the maximum; 1001, even with all its bytes, is refused. */
        many = calloc(RELAY_ACK_MAX + 1, sizeof *many);
        assert_non_null(many);
        assert_int_equal(relay_ack_build(many, RELAY_ACK_MAX, &out, &out_n), 0);
        assert_int_equal(out_n, 2 + 8 * RELAY_ACK_MAX);
        assert_int_equal(parse_ack(out, out_n), 0);
        free(out);
        out = NULL;
        p = calloc(1, 2 + 8 * (RELAY_ACK_MAX + 1));
        assert_non_null(p);
        p[0] = (RELAY_ACK_MAX + 1) >> 8;
        p[1] = (RELAY_ACK_MAX + 1) & 0xff;
        assert_refused(parse_ack, p, 2 + 8 * (RELAY_ACK_MAX + 1));
        free(p);
        assert_int_equal(relay_ack_build(many, RELAY_ACK_MAX + 1, &out, &out_n), -EINVAL);
        assert_int_equal(relay_ack_build(many, 0, &out, &out_n), -EINVAL);
        assert_null(out);
        free(many);

        /* Reply. */
        relay_ack_reply_build(0x0102, (uint8_t *) &deleted);
        assert_memory_equal(&deleted, "\x01\x02", 2);
        assert_int_equal(relay_ack_reply_parse((const uint8_t *) "\x03\xe8", 2, &deleted), 0);
        assert_int_equal(deleted, 1000);
        assert_exact_length(parse_ack_reply, "00 02");
        assert_refused(parse_ack_reply, (const uint8_t *) "\x03\xe9", 2);
}

/* Two one-time pre-keys, ids 1 and 0xfffffffe. */
#define PUBLISH_HEX                                                            \
        "33*32  44*64  00 00 00 2a  55*32  66*64  00 02"                       \
        "  00 00 00 01  77*32"                                                 \
        "  ff ff ff fe  88*32"

static void assert_publish_equal(const RelayPublish *a, const RelayPublish *b) {
        assert_memory_equal(a->identity_dh, b->identity_dh, RELAY_DH_KEY_SIZE);
        assert_memory_equal(a->identity_dh_sig, b->identity_dh_sig, RELAY_SIGNATURE_SIZE);
        assert_int_equal(a->spk_id, b->spk_id);
        assert_memory_equal(a->spk, b->spk, RELAY_DH_KEY_SIZE);
        assert_memory_equal(a->spk_sig, b->spk_sig, RELAY_SIGNATURE_SIZE);
        assert_int_equal(a->n_otks, b->n_otks);
        /* All RELAY_OTK_MAX slots: the unused ones are zero on both sides. */
        for (size_t i = 0; i < RELAY_OTK_MAX; i++) {
                assert_int_equal(a->otks[i].id, b->otks[i].id);
                assert_memory_equal(a->otks[i].key, b->otks[i].key, RELAY_DH_KEY_SIZE);
        }
}

static void fill_publish(RelayPublish *pub, size_t n_otks) {
        *pub = (RelayPublish) { .spk_id = 42, .n_otks = n_otks };
        memset(pub->identity_dh, 0x33, RELAY_DH_KEY_SIZE);
        memset(pub->identity_dh_sig, 0x44, RELAY_SIGNATURE_SIZE);
        memset(pub->spk, 0x55, RELAY_DH_KEY_SIZE);
        memset(pub->spk_sig, 0x66, RELAY_SIGNATURE_SIZE);
        for (size_t i = 0; i < n_otks; i++) {
                pub->otks[i].id = (uint32_t) i + 1;
                memset(pub->otks[i].key, (int) (0x77 + 0x11 * i), RELAY_DH_KEY_SIZE);
        }
}

static void test_publish(void **state) {
        _cleanup_free_ RelayPublish *pub = malloc(sizeof *pub), *got = malloc(sizeof *got);
        uint8_t *out = NULL, *p, *c;
        size_t n, out_n;
        uint16_t stored;

        assert_non_null(pub);
        assert_non_null(got);
        fill_publish(pub, 2);
        pub->otks[1].id = 0xfffffffe;
        assert_int_equal(relay_publish_build(pub, &out, &out_n), 0);
        p = unhex(PUBLISH_HEX, &n);
        assert_int_equal(n, 198 + 2 * 36);
        assert_int_equal(out_n, n);
        assert_memory_equal(out, p, n);
        free(out);
        out = NULL;

        c = exact(p, n);
        memset(got, 0xee, sizeof *got);
        assert_int_equal(relay_publish_parse(c, n, got), 0);
        assert_publish_equal(got, pub);
        free(c);
        assert_truncations_refused(parse_publish, p, n);
        assert_extra_refused(parse_publish, p, n);

        /* Duplicate one-time ids. */
        memcpy(p + 198 + 36, "\x00\x00\x00\x01", 4);
        assert_refused(parse_publish, p, n);
        free(p);
        pub->otks[1].id = 1;
        assert_int_equal(relay_publish_build(pub, &out, &out_n), -EINVAL);
        assert_null(out);

        /* No one-time pre-keys at all is fine. */
        assert_exact_length(parse_publish, "33*32 44*64 00 00 00 2a 55*32 66*64 00 00");

        /* 100 round-trips; 101 is refused both ways. */
        fill_publish(pub, RELAY_OTK_MAX);
        assert_int_equal(relay_publish_build(pub, &out, &out_n), 0);
        assert_int_equal(out_n, 198 + 36 * RELAY_OTK_MAX);
        c = exact(out, out_n);
        assert_int_equal(relay_publish_parse(c, out_n, got), 0);
        assert_publish_equal(got, pub);
        free(c);
        free(out);
        out = NULL;
        pub->n_otks = RELAY_OTK_MAX + 1;
        assert_int_equal(relay_publish_build(pub, &out, &out_n), -EINVAL);
        assert_null(out);
        p = calloc(1, 198 + 36 * (RELAY_OTK_MAX + 1));
        assert_non_null(p);
        p[197] = RELAY_OTK_MAX + 1;
        for (size_t i = 0; i <= RELAY_OTK_MAX; i++)
                p[198 + 36 * i + 3] = (uint8_t) i;      /* distinct ids: only the count is wrong */
        assert_refused(parse_publish, p, 198 + 36 * (RELAY_OTK_MAX + 1));
        p[197] = 0xff;
        p[196] = 0xff;
        assert_refused(parse_publish, p, 198 + 36 * (RELAY_OTK_MAX + 1));
        free(p);

        /* A failed parse leaves *ret as it was. */
        p = unhex("33*32 44*64 00 00 00 2a 55*32 66*64 00 02 00 00 00 05 77*32 00 00 00 05 88*32", &n);
        memset(got, 0xee, sizeof *got);
        assert_int_equal(relay_publish_parse(p, n, got), -EBADMSG);
        assert_int_equal(((uint8_t *) got)[0], 0xee);
        assert_int_equal(got->n_otks, (size_t) 0xeeeeeeeeeeeeeeee);
        free(p);

        /* Reply. */
        relay_publish_reply_build(100, (uint8_t *) &stored);
        assert_memory_equal(&stored, "\x00\x64", 2);
        assert_int_equal(relay_publish_reply_parse((const uint8_t *) "\x00\x02", 2, &stored), 0);
        assert_int_equal(stored, 2);
        assert_exact_length(parse_publish_reply, "00 64");
        assert_refused(parse_publish_reply, (const uint8_t *) "\x00\x65", 2);
}

#define BUNDLE_HEAD_HEX "11*32  33*32  44*64  00 00 00 2a  55*32  66*64"

static void test_bundle(void **state) {
        RelayBundle b = { .spk_id = 42, .has_otk = true, .otk = { .id = 9 } }, got;
        uint8_t out[RELAY_BUNDLE_REPLY_MAX], key[RELAY_KEY_SIZE], *p, *c;
        size_t n;

        memset(b.identity_key, 0x11, RELAY_KEY_SIZE);
        memset(b.identity_dh, 0x33, RELAY_DH_KEY_SIZE);
        memset(b.identity_dh_sig, 0x44, RELAY_SIGNATURE_SIZE);
        memset(b.spk, 0x55, RELAY_DH_KEY_SIZE);
        memset(b.spk_sig, 0x66, RELAY_SIGNATURE_SIZE);
        memset(b.otk.key, 0x77, RELAY_DH_KEY_SIZE);

        /* With a one-time pre-key. */
        assert_int_equal(relay_bundle_build(&b, out), RELAY_BUNDLE_REPLY_MAX);
        p = unhex(BUNDLE_HEAD_HEX "  01  00 00 00 09  77*32", &n);
        assert_int_equal(n, 265);
        assert_memory_equal(out, p, n);
        c = exact(p, n);
        assert_int_equal(relay_bundle_parse(c, n, &got), 0);
        assert_memory_equal(got.identity_key, b.identity_key, RELAY_KEY_SIZE);
        assert_memory_equal(got.identity_dh, b.identity_dh, RELAY_DH_KEY_SIZE);
        assert_memory_equal(got.identity_dh_sig, b.identity_dh_sig, RELAY_SIGNATURE_SIZE);
        assert_int_equal(got.spk_id, 42);
        assert_memory_equal(got.spk, b.spk, RELAY_DH_KEY_SIZE);
        assert_memory_equal(got.spk_sig, b.spk_sig, RELAY_SIGNATURE_SIZE);
        assert_true(got.has_otk);
        assert_int_equal(got.otk.id, 9);
        assert_memory_equal(got.otk.key, b.otk.key, RELAY_DH_KEY_SIZE);
        free(c);
        assert_truncations_refused(parse_bundle, p, n);
        assert_extra_refused(parse_bundle, p, n);
        /* The flag says none but the key is there; the flag is 2. */
        p[228] = 0;
        assert_refused(parse_bundle, p, n);
        p[228] = 2;
        assert_refused(parse_bundle, p, n);
        free(p);

        /* Without: 229 bytes, the otk fields come back zero whatever b held. */
        b.has_otk = false;
        assert_int_equal(relay_bundle_build(&b, out), RELAY_BUNDLE_REPLY_MIN);
        p = unhex(BUNDLE_HEAD_HEX "  00", &n);
        assert_int_equal(n, 229);
        assert_memory_equal(out, p, n);
        c = exact(p, n);
        assert_int_equal(relay_bundle_parse(c, n, &got), 0);
        assert_false(got.has_otk);
        assert_int_equal(got.otk.id, 0);
        assert_memory_equal(got.spk_sig, b.spk_sig, RELAY_SIGNATURE_SIZE);
        free(c);
        assert_truncations_refused(parse_bundle, p, n);
        /* 229 bytes that claim a one-time key; 230 bytes. */
        p[228] = 1;
        assert_refused(parse_bundle, p, n);
        p[228] = 0;
        assert_extra_refused(parse_bundle, p, n);
        free(p);

        /* Request: exactly the 32-byte mailbox key. */
        p = unhex("11*32", &n);
        c = exact(p, n);
        assert_int_equal(relay_bundle_request_parse(c, n, key), 0);
        assert_memory_equal(key, p, n);
        free(c);
        free(p);
        assert_exact_length(parse_bundle_request, "11*32");
}

static void test_count(void **state) {
        uint8_t out[RELAY_COUNT_REPLY_SIZE];
        uint32_t count;

        assert_int_equal(relay_count_request_parse(NULL, 0), 0);
        assert_int_equal(relay_count_request_parse((const uint8_t *) "", 0), 0);
        assert_int_equal(relay_count_request_parse((const uint8_t *) "\x00", 1), -EBADMSG);

        relay_count_reply_build(0x01020304, out);
        assert_memory_equal(out, "\x01\x02\x03\x04", 4);
        assert_int_equal(relay_count_reply_parse(out, sizeof out, &count), 0);
        assert_int_equal(count, 0x01020304);
        assert_exact_length(parse_count_reply, "00 00 00 64");
}

/*
 * docs/protocol.md §9 is normative: every example frame there must have a
 * header length equal to its payload and a payload this codec accepts for
 * its type, so the page and the code cannot drift apart. The page is found
 * next to this source file.
 */
static int parse_by_type(uint8_t type, const uint8_t *p, size_t n) {
        switch (type) {
        case FRAME_REGISTER: return parse_register(p, n);
        case FRAME_REGISTER | FRAME_REPLY_BIT: return parse_register_reply(p, n);
        case FRAME_SEND: return parse_send(p, n);
        case FRAME_SEND | FRAME_REPLY_BIT: return parse_send_reply(p, n);
        case FRAME_FETCH: return parse_fetch(p, n);
        case FRAME_FETCH | FRAME_REPLY_BIT: return parse_fetch_reply(p, n);
        case FRAME_ACK: return parse_ack(p, n);
        case FRAME_ACK | FRAME_REPLY_BIT: return parse_ack_reply(p, n);
        case FRAME_KEYS_PUBLISH: return parse_publish(p, n);
        case FRAME_KEYS_PUBLISH | FRAME_REPLY_BIT: return parse_publish_reply(p, n);
        case FRAME_KEYS_BUNDLE: return parse_bundle_request(p, n);
        case FRAME_KEYS_BUNDLE | FRAME_REPLY_BIT: return parse_bundle(p, n);
        case FRAME_KEYS_COUNT: return relay_count_request_parse(p, n);
        case FRAME_KEYS_COUNT | FRAME_REPLY_BIT: return parse_count_reply(p, n);
        case FRAME_ERROR: return frame_error_parse(p, (uint32_t) n, NULL, NULL);
        default: return -ENOENT;
        }
}

/* One example frame: "xx" or "xx×n" tokens (× in UTF-8) into a buffer. */
static size_t example_bytes(const char *text, uint8_t *out, size_t max) {
        size_t n = 0;

        for (const char *t = text; *t;) {
                unsigned byte, count = 1;
                int used = 0;

                if (*t == ' ' || *t == '\n') {
                        t++;
                        continue;
                }
                if (sscanf(t, "%2x%n", &byte, &used) != 1 || used != 2)
                        fail_msg("docs/protocol.md §9: cannot read \"%.20s\"", t);
                t += used;
                if (strncmp(t, "\xc3\x97", 2) == 0) {
                        if (sscanf(t + 2, "%u%n", &count, &used) != 1)
                                fail_msg("docs/protocol.md §9: bad repeat at \"%.20s\"", t);
                        t += 2 + used;
                }
                assert_true(count <= max - n);
                memset(out + n, (int) byte, count);
                n += count;
        }
        return n;
}

static void test_protocol_md_examples(void **state) {
        char path[4096], *doc = NULL, *line, *save = NULL, frame[8192] = "";
        const char *src = __FILE__, *slash = strrchr(src, '/');
        uint8_t buf[4096];
        unsigned frames = 0, types = 0;
        bool seen[256] = {};
        FILE *f;
        long size;

        if (!slash || src[0] != '/')
                skip();
        assert_true(snprintf(path, sizeof path, "%.*s/../../docs/protocol.md", (int) (slash - src), src) <
                    (int) sizeof path);
        f = fopen(path, "re");
        if (!f)
                skip();
        assert_int_equal(fseek(f, 0, SEEK_END), 0);
        size = ftell(f);
        assert_true(size > 0 && size < (1 << 20));
        rewind(f);
        doc = calloc(1, (size_t) size + 1);
        assert_non_null(doc);
        assert_int_equal(fread(doc, 1, (size_t) size, f), (size_t) size);
        fclose(f);

        line = strstr(doc, "\n## 9. Examples");
        assert_non_null(line);
        /* Frames start with the magic; indented lines continue them; anything else ends them. */
        for (line = strtok_r(line, "\n", &save);; line = strtok_r(NULL, "\n", &save)) {
                bool cont = line && strncmp(line, "    ", 4) == 0 && frame[0];

                if (cont) {
                        assert_true(strlen(frame) + strlen(line) + 2 < sizeof frame);
                        strcat(frame, " ");
                        strcat(frame, line);
                        continue;
                }
                if (frame[0]) {
                        size_t n = example_bytes(frame, buf, sizeof buf);
                        uint32_t len;

                        assert_true(n >= FRAME_HEADER_SIZE);
                        len = (uint32_t) buf[8] << 24 | (uint32_t) buf[9] << 16 | (uint32_t) buf[10] << 8 | buf[11];
                        if (len != n - FRAME_HEADER_SIZE)
                                fail_msg("docs example \"%.40s\": length field %u, payload %zu", frame, len,
                                         n - FRAME_HEADER_SIZE);
                        if (parse_by_type(buf[3], buf + FRAME_HEADER_SIZE, len) != 0)
                                fail_msg("docs example \"%.40s\" does not parse as type 0x%02x", frame, buf[3]);
                        frames++;
                        if (!seen[buf[3]])
                                types++;
                        seen[buf[3]] = true;
                        frame[0] = '\0';
                }
                if (!line || (strncmp(line, "## ", 3) == 0 && frames > 0))
                        break;
                if (strncmp(line, "53 44 ", 6) == 0) {
                        assert_true(strlen(line) < sizeof frame);
                        strcpy(frame, line);
                }
        }
        /* Every relay and key-server request and reply, and an ERROR. */
        assert_int_equal(types, 15);
        assert_true(frames >= 15);
        free(doc);
}

/* Every empty payload is refused except KEYS_COUNT's; NULL with n = 0 reads nothing. */
static void test_empty(void **state) {
        parse_fn all[] = {
                parse_register, parse_register_reply, parse_send, parse_send_reply, parse_fetch,
                parse_fetch_reply, parse_ack, parse_ack_reply, parse_publish, parse_publish_reply,
                parse_bundle_request, parse_bundle, parse_count_reply,
        };

        for (size_t i = 0; i < ELEMENTSOF(all); i++)
                assert_int_equal(all[i](NULL, 0), -EBADMSG);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sizes),
                cmocka_unit_test(test_signed_messages),
                cmocka_unit_test(test_register),
                cmocka_unit_test(test_send),
                cmocka_unit_test(test_send_reply),
                cmocka_unit_test(test_fetch),
                cmocka_unit_test(test_fetch_reply),
                cmocka_unit_test(test_fetch_reply_max_count),
                cmocka_unit_test(test_ack),
                cmocka_unit_test(test_publish),
                cmocka_unit_test(test_bundle),
                cmocka_unit_test(test_count),
                cmocka_unit_test(test_empty),
                cmocka_unit_test(test_protocol_md_examples),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
