/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libsecclient's relay and key-server calls, without secd: the Ed25519 and
 * X25519 helpers against RFC 8032 and RFC 7748, argument checks, -ENOTCONN
 * without a connection, the delivered-id set that drops redeliveries, and
 * the bundle check that refuses a tampered key bundle.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "relay-proto.h"
#include "secclient-internal.h"
#include "strutil.h"

static void unhex(const char *s, uint8_t *out, size_t len) {
        assert_int_equal(hex_decode_exact(s, out, len), 0);
}

/* ---------------------------------------------------------------------- */
/* Known answers */

/* RFC 8032 section 7.1, TEST 1: empty message. */
#define RFC8032_T1_SECRET "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
#define RFC8032_T1_PUBLIC "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
#define RFC8032_T1_SIGNATURE                                                                        \
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"

static void test_ed25519_rfc8032_test1(void **state) {
        uint8_t seed[32], pub_expected[32], sig_expected[64], pub[32], sig[64];

        unhex(RFC8032_T1_SECRET, seed, sizeof seed);
        unhex(RFC8032_T1_PUBLIC, pub_expected, sizeof pub_expected);
        unhex(RFC8032_T1_SIGNATURE, sig_expected, sizeof sig_expected);

        assert_int_equal(secclient_identity_public(seed, pub), 0);
        assert_memory_equal(pub, pub_expected, 32);

        memset(sig, 0, sizeof sig);
        assert_int_equal(identity_sign(seed, (const uint8_t *) "", 0, sig), 0);
        assert_memory_equal(sig, sig_expected, 64);
        assert_int_equal(identity_verify(pub, (const uint8_t *) "", 0, sig), 0);

        /* One bit anywhere in the signature, the key or the message: refused. */
        for (size_t i = 0; i < sizeof sig; i++) {
                sig[i] ^= 0x01;
                assert_int_equal(identity_verify(pub, (const uint8_t *) "", 0, sig), -EBADMSG);
                sig[i] ^= 0x01;
        }
        pub[0] ^= 0x80;
        assert_int_equal(identity_verify(pub, (const uint8_t *) "", 0, sig), -EBADMSG);
        pub[0] ^= 0x80;
        assert_int_equal(identity_verify(pub, (const uint8_t *) "x", 1, sig), -EBADMSG);
}

/* RFC 7748 section 6.1: Alice's and Bob's key pairs. */
static void test_x25519_rfc7748(void **state) {
        uint8_t priv[32], expected[32], pub[32];

        unhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a", priv, 32);
        unhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a", expected, 32);
        assert_int_equal(x25519_public(priv, pub), 0);
        assert_memory_equal(pub, expected, 32);

        unhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb", priv, 32);
        unhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f", expected, 32);
        assert_int_equal(x25519_public(priv, pub), 0);
        assert_memory_equal(pub, expected, 32);
}

static void test_generate(void **state) {
        uint8_t seed1[32], pub1[32], seed2[32], pub2[32], pub[32], sig[64];
        const uint8_t msg[] = "hello";

        assert_int_equal(secclient_identity_generate(seed1, pub1), 0);
        assert_int_equal(secclient_identity_generate(seed2, pub2), 0);
        assert_memory_not_equal(seed1, seed2, 32);
        assert_memory_not_equal(pub1, pub2, 32);
        assert_int_equal(secclient_identity_public(seed1, pub), 0);
        assert_memory_equal(pub, pub1, 32);

        assert_int_equal(identity_sign(seed1, msg, sizeof msg, sig), 0);
        assert_int_equal(identity_verify(pub1, msg, sizeof msg, sig), 0);
        assert_int_equal(identity_verify(pub2, msg, sizeof msg, sig), -EBADMSG);

        assert_int_equal(secclient_x25519_generate(seed1, pub1), 0);
        assert_int_equal(x25519_public(seed1, pub), 0);
        assert_memory_equal(pub, pub1, 32);
        assert_int_equal(secclient_x25519_generate(seed2, pub2), 0);
        assert_memory_not_equal(pub1, pub2, 32);
}

/* ---------------------------------------------------------------------- */
/* Arguments and connection */

static void test_arguments(void **state) {
        secclient *c = NULL;
        uint8_t key[32] = { 1 }, id[16] = { 2 }, data[1] = { 3 };
        uint64_t ids[SECCLIENT_FETCH_MAX + 1] = { 1 };
        secclient_prekey otk[SECCLIENT_ONE_TIME_MAX + 1] = {};
        secclient_message *m = NULL;
        secclient_bundle b;
        size_t n = 0;
        unsigned u;

        assert_int_equal(secclient_new(&c), 0);

        assert_int_equal(secclient_identity_generate(NULL, key), -EINVAL);
        assert_int_equal(secclient_identity_generate(key, NULL), -EINVAL);
        assert_int_equal(secclient_identity_public(NULL, key), -EINVAL);
        assert_int_equal(secclient_identity_public(key, NULL), -EINVAL);
        assert_int_equal(secclient_x25519_generate(NULL, key), -EINVAL);
        assert_int_equal(secclient_x25519_generate(key, NULL), -EINVAL);

        assert_int_equal(secclient_register(NULL, key, NULL), -EINVAL);
        assert_int_equal(secclient_register(c, NULL, NULL), -EINVAL);

        assert_int_equal(secclient_relay_send(NULL, key, id, data, 1, NULL, NULL), -EINVAL);
        assert_int_equal(secclient_relay_send(c, NULL, id, data, 1, NULL, NULL), -EINVAL);
        assert_int_equal(secclient_relay_send(c, key, id, NULL, 1, NULL, NULL), -EINVAL);
        assert_int_equal(secclient_relay_send(c, key, id, data, 0, NULL, NULL), -EINVAL);
        assert_int_equal(secclient_relay_send(c, key, id, data, (size_t) FRAME_PAYLOAD_MAX_HARD, NULL, NULL),
                         -EMSGSIZE);

        assert_int_equal(secclient_relay_fetch(NULL, 1, 0, 0, &m, &n), -EINVAL);
        assert_int_equal(secclient_relay_fetch(c, 1, 0, 0, NULL, &n), -EINVAL);
        assert_int_equal(secclient_relay_fetch(c, 1, 0, 0, &m, NULL), -EINVAL);
        assert_int_equal(secclient_relay_fetch(c, 0, 0, 0, &m, &n), -EINVAL);
        assert_int_equal(secclient_relay_fetch(c, SECCLIENT_FETCH_MAX + 1, 0, 0, &m, &n), -EINVAL);

        assert_int_equal(secclient_relay_ack(NULL, ids, 1, NULL), -EINVAL);
        assert_int_equal(secclient_relay_ack(c, NULL, 1, NULL), -EINVAL);
        assert_int_equal(secclient_relay_ack(c, ids, 0, NULL), -EINVAL);
        assert_int_equal(secclient_relay_ack(c, ids, SECCLIENT_FETCH_MAX + 1, NULL), -EINVAL);

        assert_int_equal(secclient_keys_publish(NULL, key, 1, key, NULL, 0, NULL), -EINVAL);
        assert_int_equal(secclient_keys_publish(c, NULL, 1, key, NULL, 0, NULL), -EINVAL);
        assert_int_equal(secclient_keys_publish(c, key, 1, NULL, NULL, 0, NULL), -EINVAL);
        assert_int_equal(secclient_keys_publish(c, key, 1, key, NULL, 1, NULL), -EINVAL);
        for (unsigned i = 0; i < ELEMENTSOF(otk); i++)
                otk[i].id = i;
        assert_int_equal(secclient_keys_publish(c, key, 1, key, otk, SECCLIENT_ONE_TIME_MAX + 1, NULL), -EINVAL);
        otk[1].id = otk[0].id; /* duplicate one-time ids: secd would refuse them */
        assert_int_equal(secclient_keys_publish(c, key, 1, key, otk, 2, NULL), -EINVAL);

        assert_int_equal(secclient_keys_bundle(NULL, key, &b), -EINVAL);
        assert_int_equal(secclient_keys_bundle(c, NULL, &b), -EINVAL);
        assert_int_equal(secclient_keys_bundle(c, key, NULL), -EINVAL);
        assert_int_equal(secclient_keys_count(NULL, &u), -EINVAL);
        assert_int_equal(secclient_keys_count(c, NULL), -EINVAL);

        /* NULL-safe. */
        secclient_messages_free(NULL, 5);
        secclient_free(c);
}

static void test_not_connected(void **state) {
        secclient *c = NULL;
        uint8_t seed[32], key[32], id[16] = {}, data[4] = "abc";
        uint64_t ids[1] = { 7 };
        secclient_message *m = NULL;
        secclient_bundle b;
        size_t n = 99;
        unsigned u = 99;
        int created = 99;

        assert_int_equal(secclient_new(&c), 0);
        assert_int_equal(secclient_identity_generate(seed, key), 0);

        assert_int_equal(secclient_register(c, seed, &created), -ENOTCONN);
        assert_int_equal(created, 99); /* outputs untouched on failure */
        assert_int_equal(secclient_relay_send(c, key, id, data, sizeof data, NULL, NULL), -ENOTCONN);
        assert_int_equal(secclient_relay_send(c, key, NULL, data, sizeof data, NULL, NULL), -ENOTCONN);
        assert_int_equal(secclient_relay_fetch(c, 10, 0, 0, &m, &n), -ENOTCONN);
        assert_null(m);
        assert_int_equal(n, 99);
        assert_int_equal(secclient_relay_ack(c, ids, 1, NULL), -ENOTCONN);
        assert_int_equal(secclient_keys_bundle(c, key, &b), -ENOTCONN);
        assert_int_equal(secclient_keys_count(c, &u), -ENOTCONN);
        assert_int_equal(u, 99);
        /* Without a registered identity there is nothing to sign with. */
        assert_int_equal(secclient_keys_publish(c, key, 1, key, NULL, 0, NULL), -ENOTCONN);
        assert_non_null(secclient_last_error(c));

        explicit_bzero(seed, sizeof seed);
        secclient_free(c);
}

static void test_error_codes(void **state) {
        assert_int_equal(frame_error_to_errno(FRAME_ERROR_NOT_REGISTERED), -ENOTCONN);
        assert_int_equal(frame_error_to_errno(FRAME_ERROR_BAD_SIGNATURE), -EBADMSG);
        assert_int_equal(frame_error_to_errno(FRAME_ERROR_NOT_OWNER), -EPERM);
        assert_int_equal(frame_error_to_errno(FRAME_ERROR_MAILBOX_BUSY), -EBUSY);
        assert_int_equal(frame_error_to_errno(FRAME_ERROR_BUSY), -EBUSY);
        assert_int_equal(frame_error_to_errno(FRAME_ERROR_NO_SUCH_MAILBOX), -ENXIO);
        assert_int_equal(frame_error_to_errno(FRAME_ERROR_QUOTA_EXCEEDED), -EDQUOT);
        assert_int_equal(frame_error_to_errno(FRAME_ERROR_RATE_LIMITED), -EAGAIN);
        assert_int_equal(frame_error_to_errno(FRAME_ERROR_MESSAGE_TOO_LARGE), -EMSGSIZE);
        assert_int_equal(frame_error_to_errno(FRAME_ERROR_NO_KEYS), -ENODATA);
        assert_int_equal(frame_error_to_errno(FRAME_ERROR_ALREADY_REGISTERED), -EEXIST);
}

/* ---------------------------------------------------------------------- */
/* De-duplication */

static void test_seen_set(void **state) {
        SeenSet *s = calloc(1, sizeof *s);

        assert_non_null(s);
        assert_false(seen_set_contains(s, 1));
        assert_int_equal(seen_set_add(s, 5), 1);
        assert_int_equal(seen_set_add(s, 3), 1);
        assert_int_equal(seen_set_add(s, 9), 1);
        assert_int_equal(seen_set_add(s, 5), 0); /* a redelivery */
        assert_int_equal(s->n, 3);
        assert_true(seen_set_contains(s, 3));
        assert_true(seen_set_contains(s, 5));
        assert_true(seen_set_contains(s, 9));
        assert_false(seen_set_contains(s, 4));
        assert_false(seen_set_contains(s, 10));
        assert_false(seen_set_contains(s, 0));
        assert_false(seen_set_contains(s, UINT64_MAX));

        /* Acknowledged ids leave; removing an absent one changes nothing. */
        seen_set_remove(s, 5);
        seen_set_remove(s, 5);
        seen_set_remove(s, 42);
        assert_int_equal(s->n, 2);
        assert_false(seen_set_contains(s, 5));
        assert_true(seen_set_contains(s, 3));
        assert_true(seen_set_contains(s, 9));
        assert_int_equal(seen_set_add(s, 5), 1);

        /* Bounded: a full set forgets its oldest (smallest) id first. */
        seen_set_clear(s);
        assert_int_equal(s->n, 0);
        for (uint64_t i = 1; i <= SECCLIENT_SEEN_MAX; i++)
                assert_int_equal(seen_set_add(s, i * 2), 1);
        assert_int_equal(s->n, SECCLIENT_SEEN_MAX);
        assert_int_equal(seen_set_add(s, 1), 0);         /* older than everything: not kept */
        assert_false(seen_set_contains(s, 1));
        assert_int_equal(seen_set_add(s, 7), 1);          /* evicts 2 */
        assert_int_equal(s->n, SECCLIENT_SEEN_MAX);
        assert_false(seen_set_contains(s, 2));
        assert_true(seen_set_contains(s, 4));
        assert_true(seen_set_contains(s, 7));
        assert_int_equal(seen_set_add(s, UINT64_MAX), 1); /* evicts 4 */
        assert_false(seen_set_contains(s, 4));
        assert_true(seen_set_contains(s, UINT64_MAX));
        for (size_t i = 1; i < s->n; i++)
                assert_true(s->ids[i - 1] < s->ids[i]);

        free(s);
}

/* ---------------------------------------------------------------------- */
/* Bundles */

/* A bundle signed by seed, as secd would return it, serialised with the codec. */
static size_t bundle_make(const uint8_t seed[32], bool with_otk, uint8_t out[RELAY_BUNDLE_REPLY_MAX]) {
        uint8_t msg[RELAY_SIGNED_MAX], priv[32];
        RelayBundle b = {};
        size_t n;

        assert_int_equal(secclient_identity_public(seed, b.identity_key), 0);
        assert_int_equal(secclient_x25519_generate(priv, b.identity_dh), 0);
        n = relay_signed_identity_dh(msg, b.identity_dh);
        assert_int_equal(identity_sign(seed, msg, n, b.identity_dh_sig), 0);
        b.spk_id = 0x01020304;
        assert_int_equal(secclient_x25519_generate(priv, b.spk), 0);
        n = relay_signed_prekey(msg, b.spk_id, b.spk);
        assert_int_equal(identity_sign(seed, msg, n, b.spk_sig), 0);
        b.has_otk = with_otk;
        if (with_otk) {
                b.otk.id = 77;
                assert_int_equal(secclient_x25519_generate(priv, b.otk.key), 0);
        }
        explicit_bzero(priv, sizeof priv);
        return relay_bundle_build(&b, out);
}

static int bundle_check(const uint8_t *p, size_t n, const uint8_t mailbox[32]) {
        RelayBundle b;
        int r;

        r = relay_bundle_parse(p, n, &b);
        if (r < 0)
                return r;
        return bundle_verify(&b, mailbox);
}

static void test_bundle_verify(void **state) {
        uint8_t seed[32], mailbox[32], other_seed[32], other[32], buf[RELAY_BUNDLE_REPLY_MAX + 1];
        /* Offsets of the signed fields in a KEYS_BUNDLE reply (relay-proto.h). */
        static const struct {
                const char *name;
                size_t offset, size;
        } signed_fields[] = {
                { "identity_key",    0,   32 },
                { "identity_dh",     32,  32 },
                { "identity_dh_sig", 64,  64 },
                { "spk_id",          128, 4 },
                { "spk",             132, 32 },
                { "spk_sig",         164, 64 },
        };
        size_t n;

        assert_int_equal(secclient_identity_generate(seed, mailbox), 0);
        assert_int_equal(secclient_identity_generate(other_seed, other), 0);

        for (int with_otk = 0; with_otk <= 1; with_otk++) {
                n = bundle_make(seed, with_otk, buf);
                assert_int_equal(n, with_otk ? RELAY_BUNDLE_REPLY_MAX : RELAY_BUNDLE_REPLY_MIN);
                assert_int_equal(bundle_check(buf, n, mailbox), 0);

                /* Not the mailbox asked for. */
                assert_int_equal(bundle_check(buf, n, other), -EBADMSG);

                /* Every bit of every signed field matters. */
                for (size_t f = 0; f < ELEMENTSOF(signed_fields); f++)
                        for (size_t i = 0; i < signed_fields[f].size; i++)
                                for (unsigned bit = 0; bit < 8; bit++) {
                                        size_t at = signed_fields[f].offset + i;

                                        buf[at] ^= (uint8_t) (1u << bit);
                                        if (bundle_check(buf, n, mailbox) != -EBADMSG)
                                                fail_msg("a flipped bit %u in %s byte %zu was accepted", bit,
                                                         signed_fields[f].name, i);
                                        buf[at] ^= (uint8_t) (1u << bit);
                                }
                assert_int_equal(bundle_check(buf, n, mailbox), 0);

                /* Truncated anywhere, or with a byte too many: malformed. */
                for (size_t len = 0; len < n; len++)
                        assert_int_equal(bundle_check(buf, len, mailbox), -EBADMSG);
                buf[n] = 0;
                assert_int_equal(bundle_check(buf, n + 1, mailbox), -EBADMSG);

                /* has_otk other than 0/1, or contradicting the length. */
                buf[228] = 2;
                assert_int_equal(bundle_check(buf, n, mailbox), -EBADMSG);
                buf[228] = (uint8_t) !with_otk;
                assert_int_equal(bundle_check(buf, n, mailbox), -EBADMSG);
                buf[228] = (uint8_t) with_otk;

                /*
                 * A bundle signed by another identity but naming this
                 * mailbox: the signatures do not verify under its key.
                 */
                n = bundle_make(other_seed, with_otk, buf);
                memcpy(buf, mailbox, 32);
                assert_int_equal(bundle_check(buf, n, mailbox), -EBADMSG);
        }

        /*
         * The one-time pre-key is not signed (as in X3DH): a change there is
         * not detectable by the client, only by the failed key agreement.
         */
        n = bundle_make(seed, true, buf);
        buf[n - 1] ^= 0x01;
        assert_int_equal(bundle_check(buf, n, mailbox), 0);

        explicit_bzero(seed, sizeof seed);
        explicit_bzero(other_seed, sizeof other_seed);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_ed25519_rfc8032_test1),
                cmocka_unit_test(test_x25519_rfc7748),
                cmocka_unit_test(test_generate),
                cmocka_unit_test(test_arguments),
                cmocka_unit_test(test_not_connected),
                cmocka_unit_test(test_error_codes),
                cmocka_unit_test(test_seen_set),
                cmocka_unit_test(test_bundle_verify),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
