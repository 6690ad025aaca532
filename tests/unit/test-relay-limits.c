/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <nettle/eddsa.h>

#include "relay-limits.h"
#include "relay-proto.h"

#define SEC UINT64_C(1000000)

static void test_siphash_vectors(void **state) {
        uint8_t key[16], msg[64];

        for (unsigned i = 0; i < sizeof key; i++)
                key[i] = (uint8_t) i;
        for (unsigned i = 0; i < sizeof msg; i++)
                msg[i] = (uint8_t) i;
        /* The reference implementation's vectors (empty input, 8 bytes) and the paper's 15-byte example. */
        assert_true(relay_siphash24(key, msg, 0) == UINT64_C(0x726fdb47dd0e0e31));
        assert_true(relay_siphash24(key, msg, 8) == UINT64_C(0x93f5f5799a932462));
        assert_true(relay_siphash24(key, msg, 15) == UINT64_C(0xa129ca6149be45e5));
        /* Different key, different hash. */
        key[0] ^= 1;
        assert_true(relay_siphash24(key, msg, 15) != UINT64_C(0xa129ca6149be45e5));
}

static void test_ed25519_weak_keys(void **state) {
        static const char *const small_order[] = {
                "0000000000000000000000000000000000000000000000000000000000000000",
                "0100000000000000000000000000000000000000000000000000000000000000",
                "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
                "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
                "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
                "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
                "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        };
        uint8_t key[32], seed[32], sig[64] = {}, msg[] = "secd relay register v1 anything";

        for (size_t i = 0; i < ELEMENTSOF(small_order); i++) {
                for (unsigned k = 0; k < 32; k++) {
                        unsigned v;
                        assert_int_equal(sscanf(small_order[i] + 2 * k, "%2x", &v), 1);
                        key[k] = (uint8_t) v;
                }
                assert_true(relay_ed25519_key_is_weak(key));
                key[31] |= 0x80;        /* the other sign of x */
                assert_true(relay_ed25519_key_is_weak(key));
        }

        /* Why: the identity with R = identity, S = 0 passes nettle's check for any message. */
        memset(key, 0, sizeof key);
        key[0] = 1;
        sig[0] = 1;
        if (ed25519_sha512_verify(key, sizeof msg, msg, sig) == 1)
                print_message("nettle accepts the forged signature for the identity key, as expected\n");

        /* Real keys are not weak; nor are near misses. */
        for (unsigned i = 0; i < 64; i++) {
                memset(seed, (int) i, sizeof seed);
                ed25519_sha512_public_key(key, seed);
                assert_false(relay_ed25519_key_is_weak(key));
        }
        memset(key, 0, sizeof key);
        key[0] = 2;
        assert_false(relay_ed25519_key_is_weak(key));
        memset(key, 0xff, sizeof key);
        key[0] = 0xef;
        key[31] = 0x7f;
        assert_false(relay_ed25519_key_is_weak(key));
}

static void test_rate_burst_and_refill(void **state) {
        _cleanup_(relay_rate_table_freep) RelayRateTable *t = NULL;
        RelayRate rate = { .interval_usec = SEC, .burst = 3 };
        uint64_t now = 1000 * SEC, retry = 0;

        assert_int_equal(relay_rate_table_new(16, &t), 0);
        for (int i = 0; i < 3; i++)
                assert_int_equal(relay_rate_check(t, "alice", 5, &rate, now, true, NULL), 1);
        assert_int_equal(relay_rate_check(t, "alice", 5, &rate, now, true, &retry), 0);
        assert_true(retry == SEC);
        /* Another key has its own bucket. */
        assert_int_equal(relay_rate_check(t, "bob", 3, &rate, now, true, NULL), 1);
        /* Half an interval later: still nothing; a whole one: exactly one token. */
        assert_int_equal(relay_rate_check(t, "alice", 5, &rate, now + SEC / 2, true, &retry), 0);
        assert_true(retry == SEC / 2);
        assert_int_equal(relay_rate_check(t, "alice", 5, &rate, now + SEC, true, NULL), 1);
        assert_int_equal(relay_rate_check(t, "alice", 5, &rate, now + SEC, true, NULL), 0);
        /* Long idle: back to a full burst, never more. */
        now += 100 * SEC;
        for (int i = 0; i < 3; i++)
                assert_int_equal(relay_rate_check(t, "alice", 5, &rate, now, true, NULL), 1);
        assert_int_equal(relay_rate_check(t, "alice", 5, &rate, now, true, NULL), 0);
}

static void test_rate_weighted(void **state) {
        _cleanup_(relay_rate_table_freep) RelayRateTable *t = NULL;
        RelayRate rate = { .interval_usec = SEC, .burst = 10 };
        uint64_t now = 1000 * SEC, retry = 0;

        assert_int_equal(relay_rate_table_new(16, &t), 0);
        assert_int_equal(relay_rate_check_n(t, "a", 1, &rate, 0, now, true, NULL), -EINVAL);
        /* 4 + 4 of 10: allowed; 4 more: not, and a refused request takes nothing. */
        assert_int_equal(relay_rate_check_n(t, "a", 1, &rate, 4, now, true, NULL), 1);
        assert_int_equal(relay_rate_check_n(t, "a", 1, &rate, 4, now, true, NULL), 1);
        assert_int_equal(relay_rate_check_n(t, "a", 1, &rate, 4, now, true, &retry), 0);
        assert_true(retry == 2 * SEC);
        assert_int_equal(relay_rate_check_n(t, "a", 1, &rate, 2, now, true, NULL), 1);
        assert_int_equal(relay_rate_check(t, "a", 1, &rate, now, true, NULL), 0);
        /* Refilled after 4 intervals: exactly 4 tokens. */
        assert_int_equal(relay_rate_check_n(t, "a", 1, &rate, 5, now + 4 * SEC, true, NULL), 0);
        assert_int_equal(relay_rate_check_n(t, "a", 1, &rate, 4, now + 4 * SEC, true, NULL), 1);
        /* A cost above the burst never passes, even on a fresh bucket; huge costs saturate. */
        assert_int_equal(relay_rate_check_n(t, "b", 1, &rate, 11, now, true, NULL), 0);
        assert_int_equal(relay_rate_check_n(t, "b", 1, &rate, UINT64_MAX, now, true, &retry), 0);
        assert_int_equal(relay_rate_check_n(t, "b", 1, &rate, 10, now, true, NULL), 1);
}

static void test_rate_peek_does_not_take(void **state) {
        _cleanup_(relay_rate_table_freep) RelayRateTable *t = NULL;
        RelayRate rate = { .interval_usec = SEC, .burst = 1 };
        RelayRateTableStats st;

        assert_int_equal(relay_rate_table_new(4, &t), 0);
        for (int i = 0; i < 10; i++)
                assert_int_equal(relay_rate_check(t, "k", 1, &rate, 5 * SEC, false, NULL), 1);
        relay_rate_table_stats(t, &st);
        assert_int_equal(st.entries, 0);
        assert_int_equal(relay_rate_check(t, "k", 1, &rate, 5 * SEC, true, NULL), 1);
        assert_int_equal(relay_rate_check(t, "k", 1, &rate, 5 * SEC, false, NULL), 0);
        assert_int_equal(relay_rate_check(t, "k", 1, &rate, 5 * SEC, true, NULL), 0);
}

static void test_rate_unlimited(void **state) {
        _cleanup_(relay_rate_table_freep) RelayRateTable *t = NULL;
        RelayRate off = { .interval_usec = 0, .burst = 1 };
        RelayRateTableStats st;

        assert_int_equal(relay_rate_table_new(4, &t), 0);
        for (int i = 0; i < 10000; i++)
                assert_int_equal(relay_rate_check(t, "k", 1, &off, 0, true, NULL), 1);
        relay_rate_table_stats(t, &st);
        assert_int_equal(st.entries, 0);
}

static void test_rate_bad_keys(void **state) {
        _cleanup_(relay_rate_table_freep) RelayRateTable *t = NULL;
        RelayRate rate = { .interval_usec = SEC, .burst = 1 };
        _cleanup_free_ uint8_t *big = calloc(1, RELAY_RATE_KEY_MAX + 1);
        RelayRateTable *none = NULL;

        assert_non_null(big);
        assert_int_equal(relay_rate_table_new(0, &none), -EINVAL);
        assert_int_equal(relay_rate_table_new(RELAY_RATE_TABLE_CAPACITY_MAX + 1, &none), -EINVAL);
        assert_null(none);
        assert_int_equal(relay_rate_table_new(4, &t), 0);
        assert_int_equal(relay_rate_check(t, "", 0, &rate, 0, true, NULL), -EINVAL);
        assert_int_equal(relay_rate_check(t, NULL, 3, &rate, 0, true, NULL), -EINVAL);
        assert_int_equal(relay_rate_check(t, big, RELAY_RATE_KEY_MAX + 1, &rate, 0, true, NULL), -EINVAL);
        assert_int_equal(relay_rate_check(t, big, RELAY_RATE_KEY_MAX, &rate, 0, true, NULL), 1);
}

static void test_rate_lru_eviction(void **state) {
        _cleanup_(relay_rate_table_freep) RelayRateTable *t = NULL;
        RelayRate rate = { .interval_usec = 60 * SEC, .burst = 1 };
        RelayRateTableStats st;

        assert_int_equal(relay_rate_table_new(2, &t), 0);
        assert_int_equal(relay_rate_check(t, "a", 1, &rate, SEC, true, NULL), 1);
        assert_int_equal(relay_rate_check(t, "b", 1, &rate, SEC, true, NULL), 1);
        /* "a" used last (a refused request counts as use): "b" is the one evicted for "c". */
        assert_int_equal(relay_rate_check(t, "a", 1, &rate, SEC, true, NULL), 0);
        assert_int_equal(relay_rate_check(t, "c", 1, &rate, SEC, true, NULL), 1);
        relay_rate_table_stats(t, &st);
        assert_int_equal(st.entries, 2);
        assert_int_equal(st.evictions, 1);
        assert_int_equal(relay_rate_check(t, "a", 1, &rate, SEC, true, NULL), 0);
        assert_int_equal(relay_rate_check(t, "c", 1, &rate, SEC, true, NULL), 0);
        /* "b" forgotten: a fresh bucket (the price of a bounded table). */
        assert_int_equal(relay_rate_check(t, "b", 1, &rate, SEC, true, NULL), 1);
}

static void test_rate_table_stays_bounded(void **state) {
        _cleanup_(relay_rate_table_freep) RelayRateTable *t = NULL;
        RelayRate rate = { .interval_usec = SEC, .burst = 5 };
        RelayRateTableStats st;
        uint8_t key[32] = {};

        assert_int_equal(relay_rate_table_new(1000, &t), 0);
        for (uint32_t i = 0; i < 100000; i++) {
                memcpy(key, &i, sizeof i);
                assert_int_equal(relay_rate_check(t, key, sizeof key, &rate, SEC, true, NULL), 1);
        }
        relay_rate_table_stats(t, &st);
        assert_int_equal(st.entries, 1000);
        assert_int_equal(st.capacity, 1000);
        assert_true(st.evictions == 99000);
        /* The newest 1000 are remembered. */
        for (uint32_t i = 99000; i < 100000; i++) {
                memcpy(key, &i, sizeof i);
                for (int k = 0; k < 4; k++)
                        assert_int_equal(relay_rate_check(t, key, sizeof key, &rate, SEC, true, NULL), 1);
                assert_int_equal(relay_rate_check(t, key, sizeof key, &rate, SEC, true, NULL), 0);
        }
}

static void test_rate_saturates(void **state) {
        _cleanup_(relay_rate_table_freep) RelayRateTable *t = NULL;
        RelayRate huge = { .interval_usec = UINT64_MAX / 2, .burst = UINT64_MAX };
        RelayRate slow = { .interval_usec = UINT64_MAX, .burst = 1 };

        assert_int_equal(relay_rate_table_new(4, &t), 0);
        for (int i = 0; i < 5; i++)
                assert_int_equal(relay_rate_check(t, "h", 1, &huge, UINT64_MAX - 10, true, NULL), 1);
        assert_int_equal(relay_rate_check(t, "s", 1, &slow, 5, true, NULL), 1);
        assert_int_equal(relay_rate_check(t, "s", 1, &slow, UINT64_MAX - 1, true, NULL), 0);
}

static void test_fetch_clamp(void **state) {
        RelayFetchLimits l;
        uint64_t frame = 1 << 20;

        relay_fetch_clamp(10, 4096, 500, 1000, frame, 30 * SEC, &l);
        assert_int_equal(l.max_count, 10);
        assert_int_equal(l.max_bytes, 4096);
        assert_true(l.wait_usec == 500 * 1000);

        /* Bytes over one frame and a wait over the maximum are clamped; so is the count. */
        relay_fetch_clamp(1000, UINT32_MAX, UINT32_MAX, 100, frame, 30 * SEC, &l);
        assert_int_equal(l.max_count, 100);
        assert_int_equal(l.max_bytes, frame - RELAY_FETCH_REPLY_HEADER_SIZE - RELAY_FETCH_ITEM_HEADER_SIZE);
        assert_true(l.wait_usec == 30 * SEC);

        /* Wait 0 stays 0; a 0 maximum disables waiting. */
        relay_fetch_clamp(1, 1, 0, 1000, frame, 30 * SEC, &l);
        assert_true(l.wait_usec == 0);
        assert_int_equal(l.max_bytes, 1);
        relay_fetch_clamp(1, 1, 1000, 1000, frame, 0, &l);
        assert_true(l.wait_usec == 0);

        /* A frame too small for anything still asks for one message (trimmed later). */
        relay_fetch_clamp(5, 100, 0, 1000, 10, 0, &l);
        assert_int_equal(l.max_bytes, 1);
        assert_int_equal(l.max_count, 5);
}

static void test_fetch_fit(void **state) {
        const size_t h = RELAY_FETCH_ITEM_HEADER_SIZE, hdr = RELAY_FETCH_REPLY_HEADER_SIZE;
        size_t sizes[] = { 100, 200, 300 };

        assert_int_equal(relay_fetch_fit(sizes, 3, 1 << 20), 3);
        assert_int_equal(relay_fetch_fit(sizes, 0, 1 << 20), 0);
        /* Exactly the first two. */
        assert_int_equal(relay_fetch_fit(sizes, 3, hdr + 2 * h + 300), 2);
        assert_int_equal(relay_fetch_fit(sizes, 3, hdr + 2 * h + 299), 1);
        assert_int_equal(relay_fetch_fit(sizes, 3, hdr + h + 100), 1);
        /* Not even the first. */
        assert_int_equal(relay_fetch_fit(sizes, 3, hdr + h + 99), 0);
        /* Stops at the first that does not fit, in order. */
        size_t big_first[] = { 5000, 1, 1 };
        assert_int_equal(relay_fetch_fit(big_first, 3, 1024), 0);
        size_t huge[] = { SIZE_MAX - 10 };
        assert_int_equal(relay_fetch_fit(huge, 1, UINT64_MAX), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_siphash_vectors),
                cmocka_unit_test(test_ed25519_weak_keys),
                cmocka_unit_test(test_rate_burst_and_refill),
                cmocka_unit_test(test_rate_weighted),
                cmocka_unit_test(test_rate_peek_does_not_take),
                cmocka_unit_test(test_rate_unlimited),
                cmocka_unit_test(test_rate_bad_keys),
                cmocka_unit_test(test_rate_lru_eviction),
                cmocka_unit_test(test_rate_table_stays_bounded),
                cmocka_unit_test(test_rate_saturates),
                cmocka_unit_test(test_fetch_clamp),
                cmocka_unit_test(test_fetch_fit),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
