/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libsecclient's relay and key-server calls, without secd: the Ed25519 and
 * X25519 helpers against RFC 8032 and RFC 7748, argument checks, -ENOTCONN
 * without a connection, the delivered-id set that drops redeliveries, the
 * FETCH cursor the library sends (kept across reconnections, reset for
 * another mailbox, 0 on a new handle), the
 * bundle check that refuses a tampered key bundle, and the calls on the
 * wire against an in-test relay (a GnuTLS server thread with certificates
 * made at test time) that checks REGISTER proofs against its own view of
 * the TLS exporter.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <nettle/eddsa.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

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

static uint64_t realtime_usec(void) {
        struct timespec ts;

        assert_int_equal(clock_gettime(CLOCK_REALTIME, &ts), 0);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

/* Client message ids: the time in microseconds (big-endian) then 8 random bytes; distinct, growing. */
static void test_msg_id(void **state) {
        enum { N = 1000 };
        static uint8_t ids[N][SECCLIENT_MSG_ID_SIZE];
        uint64_t before, after, prev = 0;
        unsigned tails_equal = 0;

        (void) state;
        assert_int_equal(secclient_msg_id_generate(NULL), -EINVAL);
        before = realtime_usec();
        for (unsigned i = 0; i < N; i++)
                assert_int_equal(secclient_msg_id_generate(ids[i]), 0);
        after = realtime_usec();
        for (unsigned i = 0; i < N; i++) {
                uint64_t t = 0;

                for (unsigned k = 0; k < 8; k++)
                        t = (t << 8) | ids[i][k];
                assert_true(t >= before && t <= after);
                assert_true(t >= prev);         /* the index order is the time order */
                prev = t;
                for (unsigned j = 0; j < i; j++)
                        assert_memory_not_equal(ids[i], ids[j], SECCLIENT_MSG_ID_SIZE);
                if (i > 0 && memcmp(ids[i] + 8, ids[i - 1] + 8, 8) == 0)
                        tails_equal++;
        }
        assert_int_equal(tails_equal, 0);
}

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

        /*
         * A malicious relay's bundle for a small-order address: R = identity
         * (01 00..00), S = 0 verifies every message under such a key with
         * nettle's check, so both signatures "verify". Refused.
         */
        {
                uint8_t weak[32] = { 0x01 }, forged[64] = { 0x01 };

                n = bundle_make(seed, false, buf);
                memcpy(buf, weak, sizeof weak);
                memcpy(buf + 64, forged, sizeof forged);
                memcpy(buf + 164, forged, sizeof forged);
                assert_int_equal(ed25519_sha512_verify(weak, 3, (const uint8_t *) "any", forged), 1);
                assert_int_equal(bundle_check(buf, n, weak), -EBADMSG);
        }

        explicit_bzero(seed, sizeof seed);
        explicit_bzero(other_seed, sizeof other_seed);
}

/* ---------------------------------------------------------------------- */
/* Certificates made at test time */

typedef struct Pki {
        gnutls_x509_privkey_t ca_key;
        gnutls_x509_crt_t ca_crt;
        char *ca_pem;
} Pki;

static char *datum_string(gnutls_datum_t *d) {
        char *s = strndup((const char *) d->data, d->size);

        assert_non_null(s);
        gnutls_free(d->data);
        return s;
}

static gnutls_x509_privkey_t key_new(void) {
        gnutls_x509_privkey_t k;

        assert_int_equal(gnutls_x509_privkey_init(&k), 0);
        assert_int_equal(gnutls_x509_privkey_generate2(k, GNUTLS_PK_EDDSA_ED25519, 256, 0, NULL, 0), 0);
        return k;
}

static void crt_common(gnutls_x509_crt_t crt, const char *cn, unsigned char serial) {
        unsigned char s[16] = { 0x01 };
        time_t now = time(NULL);

        s[15] = serial;
        assert_int_equal(gnutls_x509_crt_set_version(crt, 3), 0);
        assert_int_equal(gnutls_x509_crt_set_serial(crt, s, sizeof s), 0);
        assert_int_equal(gnutls_x509_crt_set_activation_time(crt, now - 60), 0);
        assert_int_equal(gnutls_x509_crt_set_expiration_time(crt, now + 3600), 0);
        assert_int_equal(gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, cn, strlen(cn)), 0);
}

static void pki_init(Pki *p) {
        gnutls_datum_t d;

        p->ca_key = key_new();
        assert_int_equal(gnutls_x509_crt_init(&p->ca_crt), 0);
        crt_common(p->ca_crt, "test CA", 1);
        assert_int_equal(gnutls_x509_crt_set_key(p->ca_crt, p->ca_key), 0);
        assert_int_equal(gnutls_x509_crt_set_basic_constraints(p->ca_crt, 1, -1), 0);
        assert_int_equal(gnutls_x509_crt_set_key_usage(p->ca_crt, GNUTLS_KEY_KEY_CERT_SIGN), 0);
        assert_int_equal(gnutls_x509_crt_sign2(p->ca_crt, p->ca_crt, p->ca_key, GNUTLS_DIG_SHA512, 0), 0);
        assert_int_equal(gnutls_x509_crt_export2(p->ca_crt, GNUTLS_X509_FMT_PEM, &d), 0);
        p->ca_pem = datum_string(&d);
}

static void pki_done(Pki *p) {
        gnutls_x509_crt_deinit(p->ca_crt);
        gnutls_x509_privkey_deinit(p->ca_key);
        free(p->ca_pem);
}

/* A certificate and its key (PEM) with one key purpose. */
static void pki_issue(Pki *p, const char *purpose, unsigned char serial, char **ret_cert, char **ret_key) {
        gnutls_x509_privkey_t k = key_new();
        gnutls_x509_crt_t crt;
        gnutls_datum_t d;

        assert_int_equal(gnutls_x509_crt_init(&crt), 0);
        crt_common(crt, "test", serial);
        assert_int_equal(gnutls_x509_crt_set_key(crt, k), 0);
        assert_int_equal(gnutls_x509_crt_set_basic_constraints(crt, 0, -1), 0);
        assert_int_equal(gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE), 0);
        assert_int_equal(gnutls_x509_crt_set_key_purpose_oid(crt, purpose, 1), 0);
        assert_int_equal(gnutls_x509_crt_sign2(crt, p->ca_crt, p->ca_key, GNUTLS_DIG_SHA512, 0), 0);
        assert_int_equal(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &d), 0);
        *ret_cert = datum_string(&d);
        assert_int_equal(gnutls_x509_privkey_export2_pkcs8(k, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN, &d), 0);
        *ret_key = datum_string(&d);
        gnutls_x509_crt_deinit(crt);
        gnutls_x509_privkey_deinit(k);
}

/* ---------------------------------------------------------------------- */
/* The in-test relay: one connection at a time, state kept across connections */

#define T_MESSAGES_MAX 16
#define T_RECIPIENT_FULL 0xF0    /* SEND to a key of these bytes: ERROR QUOTA_EXCEEDED */
#define T_RECIPIENT_SHORT 0xF1   /* SEND to a key of these bytes: a truncated SEND reply */
#define T_RECIPIENT_SLOW 0xF2    /* SEND to a key of these bytes: the reply comes after 300 ms */

typedef struct TMessage {
        uint64_t id;
        uint8_t client_msg_id[RELAY_MSG_ID_SIZE];
        uint8_t *blob;
        size_t size;
} TMessage;

/* How the next FETCH is answered (then back to T_FETCH_NORMAL). */
typedef enum TFetchMode {
        T_FETCH_NORMAL,
        T_FETCH_WRONG_TYPE,     /* a KEYS_COUNT reply */
        T_FETCH_OUT_OF_ORDER,   /* ids 5 then 3 */
        T_FETCH_TOO_MANY,       /* one more message than max_count */
        T_FETCH_TRUNCATED,      /* a valid reply without its last byte */
        T_FETCH_IDLE_CLOSE,     /* ERROR IDLE_TIMEOUT with request id 0, then close */
        T_FETCH_NO_CURSOR,      /* everything pending, ignoring after_id (a relay before the cursor) */
} TFetchMode;

#define T_FETCHES_MAX 64

typedef struct Relay {
        char dir[64], path[128];
        int listen_fd, stop_pipe[2];
        pthread_t thread;
        gnutls_certificate_credentials_t cred;

        /* Scripted behaviour (set before the client acts). */
        bool drop_first_after_register; /* close the first connection right after its REGISTER reply */
        bool tamper_bundle;             /* flip a bit of spk_sig in KEYS_BUNDLE replies */
        bool any_mailbox;               /* REGISTER for another key switches the mailbox */
        TFetchMode fetch_mode;

        /* State (the server thread's; the test reads it once the server is idle). */
        bool has_mailbox;
        uint8_t mailbox[RELAY_KEY_SIZE];
        TMessage msgs[T_MESSAGES_MAX];
        size_t n_msgs;
        uint64_t next_id;
        bool has_keys;
        RelayPublish keys;
        int n_registers, n_bad_proofs, n_closed, n_connections;
        uint64_t fetch_after[T_FETCHES_MAX];    /* after_id of every well-formed FETCH, in order */
        size_t n_fetches;
} Relay;

static int t_send_frame(gnutls_session_t s, uint8_t type, uint32_t id, const void *p, uint32_t len) {
        uint8_t *buf;
        size_t size, off = 0;

        if (frame_build(type, id, p, len, &buf, &size) < 0)
                return -1;
        while (off < size) {
                ssize_t n = gnutls_record_send(s, buf + off, size - off);

                if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
                        continue;
                if (n <= 0)
                        break;
                off += (size_t) n;
        }
        free(buf);
        return off == size ? 0 : -1;
}

static void t_send_error(gnutls_session_t s, uint32_t id, uint16_t code, const char *msg) {
        uint8_t *buf;
        size_t size;

        if (frame_build_error(id, code, msg, &buf, &size) < 0)
                return;
        (void) gnutls_record_send(s, buf, size);
        free(buf);
}

/* A scripted recipient: all 32 bytes the same (a generated key starting with 0xF0 is not one). */
static bool t_key_is(const uint8_t key[RELAY_KEY_SIZE], uint8_t byte) {
        for (size_t i = 0; i < RELAY_KEY_SIZE; i++)
                if (key[i] != byte)
                        return false;
        return true;
}

/* One FETCH reply item, written by hand (the codec refuses to build bad replies). */
static size_t t_item(uint8_t *out, uint64_t id, const char *blob) {
        size_t len = strlen(blob), o = 0;

        for (int i = 7; i >= 0; i--)
                out[o++] = (uint8_t) (id >> (8 * i));
        memset(out + o, 0xAB, RELAY_MSG_ID_SIZE);
        o += RELAY_MSG_ID_SIZE;
        memset(out + o, 0, 8);
        o += 8;
        for (int i = 3; i >= 0; i--)
                out[o++] = (uint8_t) (len >> (8 * i));
        memcpy(out + o, blob, len);
        return o + len;
}

/* A hostile answer to FETCH; false: close the connection. */
static bool t_fetch_hostile(gnutls_session_t s, uint32_t request_id, TFetchMode mode, unsigned max_count) {
        uint8_t buf[4096];
        size_t n = 2;
        unsigned count = 0;

        switch (mode) {
        case T_FETCH_WRONG_TYPE:
                memset(buf, 0, 4);
                return t_send_frame(s, FRAME_KEYS_COUNT | FRAME_REPLY_BIT, request_id, buf, 4) == 0;
        case T_FETCH_OUT_OF_ORDER:
                n += t_item(buf + n, 5, "five");
                n += t_item(buf + n, 3, "three");
                count = 2;
                break;
        case T_FETCH_TOO_MANY:
                for (unsigned i = 0; i <= max_count && i < 50; i++)
                        n += t_item(buf + n, 100 + i, "m");
                count = MIN(max_count + 1, 50u);
                break;
        case T_FETCH_TRUNCATED:
                n += t_item(buf + n, 7, "seven");
                count = 1;
                n--;
                break;
        case T_FETCH_IDLE_CLOSE:
                t_send_error(s, 0, FRAME_ERROR_IDLE_TIMEOUT, "idle (test)");
                return false;
        case T_FETCH_NORMAL:
        case T_FETCH_NO_CURSOR:
                break;
        }
        buf[0] = (uint8_t) (count >> 8);
        buf[1] = (uint8_t) count;
        return t_send_frame(s, FRAME_FETCH | FRAME_REPLY_BIT, request_id, buf, (uint32_t) n) == 0;
}

/* Handle one request; false: close the connection. */
static bool t_handle(Relay *rl, gnutls_session_t s, bool *registered, const FrameHeader *h, const uint8_t *p) {
        uint8_t small[RELAY_BUNDLE_REPLY_MAX];

        switch (h->type) {
        case FRAME_PING:
                return t_send_frame(s, FRAME_PONG, h->request_id, p, h->length) == 0;

        case FRAME_REGISTER: {
                uint8_t msg[RELAY_SIGNED_MAX];
                gnutls_datum_t cb = {};
                RelayRegister reg;
                size_t n;
                bool ok;

                if (relay_register_parse(p, h->length, &reg) < 0) {
                        t_send_error(s, h->request_id, FRAME_ERROR_BAD_PAYLOAD, "bad REGISTER");
                        return true;
                }
                assert_int_equal(gnutls_session_channel_binding(s, GNUTLS_CB_TLS_EXPORTER, &cb), 0);
                assert_int_equal(cb.size, RELAY_EXPORTER_SIZE);
                n = relay_signed_register(msg, cb.data);
                gnutls_free(cb.data);
                ok = ed25519_sha512_verify(reg.key, n, msg, reg.proof) == 1;
                if (!ok) {
                        rl->n_bad_proofs++;
                        t_send_error(s, h->request_id, FRAME_ERROR_BAD_SIGNATURE, "bad proof");
                        return true;
                }
                if (rl->has_mailbox && memcmp(rl->mailbox, reg.key, RELAY_KEY_SIZE) != 0 && !rl->any_mailbox) {
                        t_send_error(s, h->request_id, FRAME_ERROR_NOT_OWNER, "one mailbox in this test");
                        return true;
                }
                small[0] = !rl->has_mailbox;
                rl->has_mailbox = true;
                memcpy(rl->mailbox, reg.key, RELAY_KEY_SIZE);
                *registered = true;
                rl->n_registers++;
                if (t_send_frame(s, FRAME_REGISTER | FRAME_REPLY_BIT, h->request_id, small, 1) < 0)
                        return false;
                return !(rl->drop_first_after_register && rl->n_connections == 1);
        }

        case FRAME_SEND: {
                RelaySendReply sr = {};
                RelaySend snd;

                if (relay_send_parse(p, h->length, &snd) < 0) {
                        t_send_error(s, h->request_id, FRAME_ERROR_BAD_PAYLOAD, "bad SEND");
                        return true;
                }
                if (t_key_is(snd.recipient, T_RECIPIENT_FULL)) {
                        t_send_error(s, h->request_id, FRAME_ERROR_QUOTA_EXCEEDED, "mailbox full (test)");
                        return true;
                }
                if (t_key_is(snd.recipient, T_RECIPIENT_SHORT))
                        return t_send_frame(s, FRAME_SEND | FRAME_REPLY_BIT, h->request_id, small, 8) == 0;
                if (t_key_is(snd.recipient, T_RECIPIENT_SLOW)) {
                        struct timespec ts = { .tv_nsec = 300 * 1000 * 1000 };

                        (void) nanosleep(&ts, NULL);
                        relay_send_reply_build(&(RelaySendReply) { .server_id = 999999 }, small);
                        return t_send_frame(s, FRAME_SEND | FRAME_REPLY_BIT, h->request_id, small,
                                            RELAY_SEND_REPLY_SIZE) == 0;
                }
                for (size_t i = 0; i < rl->n_msgs; i++)
                        if (memcmp(rl->msgs[i].client_msg_id, snd.client_msg_id, RELAY_MSG_ID_SIZE) == 0) {
                                sr = (RelaySendReply) { .server_id = rl->msgs[i].id, .duplicate = true };
                                break;
                        }
                if (!sr.duplicate) {
                        TMessage *m = &rl->msgs[rl->n_msgs++];

                        assert_true(rl->n_msgs <= T_MESSAGES_MAX);
                        m->id = ++rl->next_id;
                        memcpy(m->client_msg_id, snd.client_msg_id, RELAY_MSG_ID_SIZE);
                        m->blob = malloc(snd.blob_size);
                        assert_non_null(m->blob);
                        memcpy(m->blob, snd.blob, snd.blob_size);
                        m->size = snd.blob_size;
                        sr.server_id = m->id;
                }
                relay_send_reply_build(&sr, small);
                return t_send_frame(s, FRAME_SEND | FRAME_REPLY_BIT, h->request_id, small, RELAY_SEND_REPLY_SIZE) == 0;
        }

        case FRAME_FETCH: {
                RelayMessage out[T_MESSAGES_MAX];
                uint8_t *reply = NULL;
                size_t size = 0, n;
                TFetchMode mode;
                RelayFetch f;
                bool ok;

                if (relay_fetch_parse(p, h->length, &f) < 0) {
                        t_send_error(s, h->request_id, FRAME_ERROR_BAD_PAYLOAD, "bad FETCH");
                        return true;
                }
                if (!*registered) {
                        t_send_error(s, h->request_id, FRAME_ERROR_NOT_REGISTERED, "register first");
                        return true;
                }
                assert_true(rl->n_fetches < T_FETCHES_MAX);
                rl->fetch_after[rl->n_fetches++] = f.after_id;
                mode = __atomic_exchange_n(&rl->fetch_mode, T_FETCH_NORMAL, __ATOMIC_SEQ_CST);
                if (mode == T_FETCH_NO_CURSOR)
                        f.after_id = 0;
                else if (mode != T_FETCH_NORMAL)
                        return t_fetch_hostile(s, h->request_id, mode, f.max_count);
                /* Everything not acknowledged above the cursor, every time: at-least-once on the wire. */
                n = 0;
                for (size_t i = 0; i < rl->n_msgs && n < f.max_count; i++) {
                        if (rl->msgs[i].id <= f.after_id)
                                continue;
                        out[n] = (RelayMessage) { .server_id = rl->msgs[i].id, .received_usec = 1,
                                                  .blob = rl->msgs[i].blob, .blob_size = rl->msgs[i].size };
                        memcpy(out[n].client_msg_id, rl->msgs[i].client_msg_id, RELAY_MSG_ID_SIZE);
                        n++;
                }
                assert_int_equal(relay_fetch_reply_build(out, n, FRAME_PAYLOAD_MAX_DEFAULT, &reply, &size), 0);
                ok = t_send_frame(s, FRAME_FETCH | FRAME_REPLY_BIT, h->request_id, reply, (uint32_t) size) == 0;
                free(reply);
                return ok;
        }

        case FRAME_ACK: {
                uint64_t *ids = NULL;
                size_t n = 0;
                uint16_t deleted = 0;

                if (!*registered) {
                        t_send_error(s, h->request_id, FRAME_ERROR_NOT_REGISTERED, "register first");
                        return true;
                }
                if (relay_ack_parse(p, h->length, &ids, &n) < 0) {
                        t_send_error(s, h->request_id, FRAME_ERROR_BAD_PAYLOAD, "bad ACK");
                        return true;
                }
                for (size_t i = 0; i < n; i++)
                        for (size_t j = 0; j < rl->n_msgs; j++)
                                if (rl->msgs[j].id == ids[i]) {
                                        free(rl->msgs[j].blob);
                                        memmove(&rl->msgs[j], &rl->msgs[j + 1], (rl->n_msgs - j - 1) * sizeof rl->msgs[0]);
                                        rl->n_msgs--;
                                        deleted++;
                                        break;
                                }
                free(ids);
                relay_ack_reply_build(deleted, small);
                return t_send_frame(s, FRAME_ACK | FRAME_REPLY_BIT, h->request_id, small, RELAY_ACK_REPLY_SIZE) == 0;
        }

        case FRAME_KEYS_PUBLISH: {
                uint8_t msg[RELAY_SIGNED_MAX];
                RelayPublish *pub = calloc(1, sizeof *pub);
                size_t n;
                bool ok;

                assert_non_null(pub);
                if (!*registered) {
                        free(pub);
                        t_send_error(s, h->request_id, FRAME_ERROR_NOT_REGISTERED, "register first");
                        return true;
                }
                if (relay_publish_parse(p, h->length, pub) < 0) {
                        free(pub);
                        t_send_error(s, h->request_id, FRAME_ERROR_BAD_PAYLOAD, "bad KEYS_PUBLISH");
                        return true;
                }
                n = relay_signed_identity_dh(msg, pub->identity_dh);
                ok = ed25519_sha512_verify(rl->mailbox, n, msg, pub->identity_dh_sig) == 1;
                n = relay_signed_prekey(msg, pub->spk_id, pub->spk);
                ok = ok && ed25519_sha512_verify(rl->mailbox, n, msg, pub->spk_sig) == 1;
                if (!ok) {
                        free(pub);
                        t_send_error(s, h->request_id, FRAME_ERROR_BAD_SIGNATURE, "bad key signature");
                        return true;
                }
                rl->keys = *pub;
                rl->has_keys = true;
                free(pub);
                relay_publish_reply_build((uint16_t) rl->keys.n_otks, small);
                return t_send_frame(s, FRAME_KEYS_PUBLISH | FRAME_REPLY_BIT, h->request_id, small,
                                    RELAY_PUBLISH_REPLY_SIZE) == 0;
        }

        case FRAME_KEYS_BUNDLE: {
                RelayBundle b = {};
                size_t n;

                if (!rl->has_keys) {
                        t_send_error(s, h->request_id, FRAME_ERROR_NO_KEYS, "no keys published");
                        return true;
                }
                /* Whatever mailbox was asked: the client must notice a wrong one. */
                memcpy(b.identity_key, rl->mailbox, RELAY_KEY_SIZE);
                memcpy(b.identity_dh, rl->keys.identity_dh, RELAY_DH_KEY_SIZE);
                memcpy(b.identity_dh_sig, rl->keys.identity_dh_sig, RELAY_SIGNATURE_SIZE);
                b.spk_id = rl->keys.spk_id;
                memcpy(b.spk, rl->keys.spk, RELAY_DH_KEY_SIZE);
                memcpy(b.spk_sig, rl->keys.spk_sig, RELAY_SIGNATURE_SIZE);
                if (rl->keys.n_otks > 0) {
                        b.has_otk = true;
                        b.otk = rl->keys.otks[--rl->keys.n_otks];
                }
                if (__atomic_load_n(&rl->tamper_bundle, __ATOMIC_SEQ_CST))
                        b.spk_sig[10] ^= 0x04;
                n = relay_bundle_build(&b, small);
                return t_send_frame(s, FRAME_KEYS_BUNDLE | FRAME_REPLY_BIT, h->request_id, small, (uint32_t) n) == 0;
        }

        case FRAME_KEYS_COUNT:
                if (!*registered) {
                        t_send_error(s, h->request_id, FRAME_ERROR_NOT_REGISTERED, "register first");
                        return true;
                }
                relay_count_reply_build((uint32_t) rl->keys.n_otks, small);
                return t_send_frame(s, FRAME_KEYS_COUNT | FRAME_REPLY_BIT, h->request_id, small,
                                    RELAY_COUNT_REPLY_SIZE) == 0;

        default:
                t_send_error(s, h->request_id, FRAME_ERROR_UNKNOWN_TYPE, "unknown type");
                return true;
        }
}

static void t_serve(Relay *rl, int fd) {
        FrameReader *reader = NULL;
        bool registered = false, open = true;
        gnutls_session_t s;
        uint8_t buf[16384];
        int g;

        assert_int_equal(gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NO_SIGNAL), 0);
        assert_int_equal(gnutls_priority_set_direct(s, "NORMAL:-VERS-ALL:+VERS-TLS1.3", NULL), 0);
        assert_int_equal(gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, rl->cred), 0);
        gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
        gnutls_transport_set_int(s, fd);
        gnutls_handshake_set_timeout(s, 5000);
        gnutls_record_set_timeout(s, 5000);
        do
                g = gnutls_handshake(s);
        while (g < 0 && !gnutls_error_is_fatal(g));
        if (g < 0)
                goto out;
        rl->n_connections++;

        assert_int_equal(frame_reader_new(FRAME_PAYLOAD_MAX_DEFAULT, &reader), 0);
        while (open) {
                ssize_t n = gnutls_record_recv(s, buf, sizeof buf);
                size_t off = 0;

                if (n <= 0)
                        break;
                while (open && off < (size_t) n) {
                        const uint8_t *payload;
                        FrameHeader h;
                        size_t used;
                        int r = frame_reader_feed(reader, buf + off, (size_t) n - off, &used);

                        off += used;
                        if (r < 0)
                                open = false;
                        if (r <= 0)
                                continue;
                        frame_reader_frame(reader, &h, &payload);
                        open = t_handle(rl, s, &registered, &h, payload);
                        frame_reader_reset(reader);
                }
        }
out:
        frame_reader_free(reader);
        gnutls_deinit(s);
}

static void *t_run(void *userdata) {
        Relay *rl = userdata;

        for (unsigned i = 0; i < 32; i++) {
                struct pollfd p[2] = { { .fd = rl->listen_fd, .events = POLLIN },
                                       { .fd = rl->stop_pipe[0], .events = POLLIN } };
                int fd;

                if (poll(p, 2, 10000) <= 0 || (p[1].revents & POLLIN))
                        break;
                fd = accept4(rl->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0)
                        break;
                t_serve(rl, fd);
                close(fd);
                __atomic_add_fetch(&rl->n_closed, 1, __ATOMIC_SEQ_CST);
        }
        return NULL;
}

static void relay_start(Relay *rl, Pki *pki) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        gnutls_datum_t ca = { (unsigned char *) pki->ca_pem, (unsigned) strlen(pki->ca_pem) };
        char *cert, *key;

        pki_issue(pki, GNUTLS_KP_TLS_WWW_SERVER, 2, &cert, &key);
        gnutls_datum_t cd = { (unsigned char *) cert, (unsigned) strlen(cert) };
        gnutls_datum_t kd = { (unsigned char *) key, (unsigned) strlen(key) };

        strcpy(rl->dir, "/tmp/test-secclient-relay-XXXXXX");
        assert_non_null(mkdtemp(rl->dir));
        snprintf(rl->path, sizeof rl->path, "%s/secd.sock", rl->dir);
        assert_int_equal(gnutls_certificate_allocate_credentials(&rl->cred), 0);
        assert_true(gnutls_certificate_set_x509_trust_mem(rl->cred, &ca, GNUTLS_X509_FMT_PEM) > 0);
        assert_int_equal(gnutls_certificate_set_x509_key_mem(rl->cred, &cd, &kd, GNUTLS_X509_FMT_PEM), 0);
        free(cert);
        free(key);

        rl->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(rl->listen_fd >= 0);
        strcpy(sa.sun_path, rl->path);
        assert_int_equal(bind(rl->listen_fd, (struct sockaddr *) &sa, sizeof sa), 0);
        assert_int_equal(listen(rl->listen_fd, 8), 0);
        assert_int_equal(pipe2(rl->stop_pipe, O_CLOEXEC), 0);
        assert_int_equal(pthread_create(&rl->thread, NULL, t_run, rl), 0);
}

static void relay_stop(Relay *rl) {
        assert_int_equal(write(rl->stop_pipe[1], "x", 1), 1);
        assert_int_equal(pthread_join(rl->thread, NULL), 0);
        close(rl->stop_pipe[0]);
        close(rl->stop_pipe[1]);
        close(rl->listen_fd);
        unlink(rl->path);
        rmdir(rl->dir);
        gnutls_certificate_free_credentials(rl->cred);
        for (size_t i = 0; i < rl->n_msgs; i++)
                free(rl->msgs[i].blob);
}

static secclient *relay_client(Relay *rl, Pki *pki, unsigned char serial) {
        secclient *c = NULL;
        char *cert, *key;

        pki_issue(pki, GNUTLS_KP_TLS_WWW_CLIENT, serial, &cert, &key);
        assert_int_equal(secclient_new(&c), 0);
        assert_int_equal(secclient_set_endpoint(c, rl->path), 0);
        assert_int_equal(secclient_set_timeout(c, 5000), 0);
        assert_int_equal(secclient_load_credentials(c, pki->ca_pem, cert, key), 0);
        free(cert);
        explicit_bzero(key, strlen(key));
        free(key);
        assert_int_equal(secclient_connect(c), 0);
        return c;
}

static void test_wire_messages(void **state) {
        uint8_t seed[32], other_seed[32], me[32], other[32], id1[16] = { 1 }, full[32], short_reply[32];
        uint64_t sid1 = 0, sid2 = 0, sid = 0;
        secclient_message *m = NULL;
        secclient *c, *c2;
        int created = -1, dup = -1;
        unsigned deleted = 99;
        size_t n = 99;
        Relay rl = {};
        Pki pki;

        pki_init(&pki);
        relay_start(&rl, &pki);
        assert_int_equal(secclient_identity_generate(seed, me), 0);
        assert_int_equal(secclient_identity_generate(other_seed, other), 0);
        c = relay_client(&rl, &pki, 10);

        /* Not registered yet: secd's NOT_REGISTERED is -ENOTCONN. */
        assert_int_equal(secclient_relay_fetch(c, 10, 0, 0, &m, &n), -ENOTCONN);
        assert_string_equal(secclient_last_error(c), "register first");

        /* The proof verifies against the server's own view of the TLS exporter. */
        assert_int_equal(secclient_register(c, seed, &created), 0);
        assert_int_equal(created, 1);
        assert_int_equal(secclient_register(c, seed, &created), 0);
        assert_int_equal(created, 0);
        /* One mailbox per connection. */
        assert_int_equal(secclient_register(c, other_seed, NULL), -EEXIST);
        assert_int_equal(rl.n_bad_proofs, 0);

        assert_int_equal(secclient_relay_send(c, me, id1, "one", 3, &sid1, &dup), 0);
        assert_int_equal(dup, 0);
        assert_int_equal(secclient_relay_send(c, me, id1, "one", 3, &sid, &dup), 0);
        assert_int_equal(dup, 1);
        assert_int_equal(sid, sid1);
        assert_int_equal(secclient_relay_send(c, me, NULL, "two!", 4, &sid2, &dup), 0);
        assert_true(sid2 > sid1);

        memset(full, T_RECIPIENT_FULL, sizeof full);
        assert_int_equal(secclient_relay_send(c, full, NULL, "x", 1, &sid, NULL), -EDQUOT);
        assert_string_equal(secclient_last_error(c), "mailbox full (test)");
        memset(short_reply, T_RECIPIENT_SHORT, sizeof short_reply);
        assert_int_equal(secclient_relay_send(c, short_reply, NULL, "x", 1, &sid, NULL), -EBADMSG);

        /*
         * A call that timed out: its late reply is dropped when it comes, not kept for
         * secclient_recv() (where nobody would take it, and 1024 of them made every call fail).
         */
        {
                uint8_t slow[SECCLIENT_KEY_SIZE], *payload = NULL;
                struct timespec ts = { .tv_nsec = 400 * 1000 * 1000 };
                uint32_t rid = 0;
                uint8_t type = 0;
                size_t len = 0;

                memset(slow, T_RECIPIENT_SLOW, sizeof slow);
                assert_int_equal(secclient_set_timeout(c, 100), 0);
                assert_int_equal(secclient_relay_send(c, slow, NULL, "x", 1, &sid, NULL), -ETIMEDOUT);
                (void) nanosleep(&ts, NULL);
                assert_int_equal(secclient_ping(c, "p", 1), 0);
                assert_int_equal(secclient_recv(c, &type, &rid, (void **) &payload, &len), -ETIMEDOUT);
                assert_null(payload);
                assert_int_equal(secclient_set_timeout(c, 5000), 0);
        }

        assert_int_equal(secclient_relay_fetch(c, 10, 0, 0, &m, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(m[0].id, sid1);
        assert_int_equal(m[0].len, 3);
        assert_memory_equal(m[0].data, "one", 3);
        assert_memory_equal(m[0].client_msg_id, id1, 16);
        assert_int_equal(m[1].id, sid2);
        assert_memory_equal(m[1].data, "two!", 4);
        secclient_messages_free(m, n);

        /* Not acknowledged, but at or below the cursor the library sends now: not returned again. */
        m = (void *) 1;
        assert_int_equal(secclient_relay_fetch(c, 10, 0, 0, &m, &n), 0);
        assert_int_equal(n, 0);
        assert_null(m);

        assert_int_equal(secclient_relay_ack(c, &sid1, 1, &deleted), 0);
        assert_int_equal(deleted, 1);
        assert_int_equal(secclient_relay_fetch(c, 10, 0, 0, &m, &n), 0);
        assert_int_equal(n, 0); /* sid2 is still delivered-and-pending */

        /* A new message after the acknowledged ones arrives once. */
        assert_int_equal(secclient_relay_send(c, me, NULL, "three", 5, &sid, NULL), 0);
        assert_int_equal(secclient_relay_fetch(c, 10, 0, 0, &m, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(m[0].id, sid);
        secclient_messages_free(m, n);
        assert_int_equal(secclient_relay_ack(c, &sid, 1, &deleted), 0);

        /* The cursors on the wire (the unregistered FETCH was refused before): 0, then the highest id so far. */
        assert_int_equal(rl.n_fetches, 4);
        assert_int_equal(rl.fetch_after[0], 0);
        assert_int_equal(rl.fetch_after[1], sid2);
        assert_int_equal(rl.fetch_after[2], sid2);
        assert_int_equal(rl.fetch_after[3], sid2);

        /* Another consumer handle has seen nothing: it starts at 0 and gets what is pending again. */
        secclient_free(c);
        c2 = relay_client(&rl, &pki, 11);
        assert_int_equal(secclient_register(c2, seed, &created), 0);
        assert_int_equal(created, 0);
        assert_int_equal(secclient_relay_fetch(c2, 10, 0, 0, &m, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(m[0].id, sid2);
        secclient_messages_free(m, n);
        secclient_free(c2);
        assert_int_equal(rl.n_fetches, 5);
        assert_int_equal(rl.fetch_after[4], 0);

        relay_stop(&rl);
        pki_done(&pki);
        explicit_bzero(seed, sizeof seed);
        explicit_bzero(other_seed, sizeof other_seed);
}

static void test_wire_reconnect_registers_again(void **state) {
        uint8_t seed[32], me[32];
        secclient_message *m = NULL;
        uint64_t sid = 0;
        Relay rl = { .drop_first_after_register = true };
        size_t n = 0;
        secclient *c;
        Pki pki;

        pki_init(&pki);
        relay_start(&rl, &pki);
        assert_int_equal(secclient_identity_generate(seed, me), 0);
        c = relay_client(&rl, &pki, 12);
        assert_int_equal(secclient_register(c, seed, NULL), 0);
        explicit_bzero(seed, sizeof seed); /* the library keeps its own copy */

        /* The relay hung up after the REGISTER reply; wait until it did. */
        for (unsigned i = 0; i < 500 && __atomic_load_n(&rl.n_closed, __ATOMIC_SEQ_CST) < 1; i++)
                usleep(10000);
        assert_int_equal(__atomic_load_n(&rl.n_closed, __ATOMIC_SEQ_CST), 1);

        /* The next call reconnects and proves the mailbox on the new session before it goes on. */
        assert_int_equal(secclient_relay_send(c, me, NULL, "after", 5, &sid, NULL), 0);
        assert_int_equal(secclient_relay_fetch(c, 10, 0, 0, &m, &n), 0);
        assert_int_equal(n, 1);
        assert_memory_equal(m[0].data, "after", 5);
        secclient_messages_free(m, n);
        secclient_free(c);

        relay_stop(&rl);
        assert_int_equal(rl.n_connections, 2);
        assert_int_equal(rl.n_registers, 2);
        assert_int_equal(rl.n_bad_proofs, 0);
        pki_done(&pki);
}

/* Fetch one message (max_count 1) and return its id; the relay must have one above the cursor. */
static uint64_t fetch_one(secclient *c, const char *want) {
        secclient_message *m = NULL;
        size_t n = 0;
        uint64_t id;

        assert_int_equal(secclient_relay_fetch(c, 1, 0, 0, &m, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(m[0].len, strlen(want));
        assert_memory_equal(m[0].data, want, strlen(want));
        id = m[0].id;
        secclient_messages_free(m, n);
        return id;
}

/*
 * The FETCH cursor: the highest id returned so far goes out as after_id,
 * survives an automatic reconnection, is reset when another mailbox is
 * registered, and the delivered-id set still drops what a relay ignoring
 * the cursor sends again.
 */
static void test_wire_cursor(void **state) {
        uint8_t seed[32], me[32], seed2[32], me2[32];
        uint64_t a, b, c3, d, e, f;
        secclient_message *m = NULL;
        Relay rl = { .any_mailbox = true };
        size_t n = 0;
        secclient *c;
        Pki pki;

        pki_init(&pki);
        relay_start(&rl, &pki);
        assert_int_equal(secclient_identity_generate(seed, me), 0);
        assert_int_equal(secclient_identity_generate(seed2, me2), 0);
        c = relay_client(&rl, &pki, 15);
        assert_int_equal(secclient_register(c, seed, NULL), 0);
        assert_int_equal(secclient_relay_send(c, me, NULL, "a", 1, NULL, NULL), 0);
        assert_int_equal(secclient_relay_send(c, me, NULL, "b", 1, NULL, NULL), 0);

        /* One at a time, nothing acknowledged: each fetch moves the cursor past the last one. */
        a = fetch_one(c, "a");
        b = fetch_one(c, "b");
        assert_true(b > a);
        assert_int_equal(secclient_relay_fetch(c, 10, 0, 0, &m, &n), 0);
        assert_int_equal(n, 0);
        assert_int_equal(rl.n_fetches, 3);
        assert_int_equal(rl.fetch_after[0], 0);
        assert_int_equal(rl.fetch_after[1], a);
        assert_int_equal(rl.fetch_after[2], b);

        /* The relay drops the connection on the next FETCH; the call after it reconnects. */
        __atomic_store_n(&rl.fetch_mode, T_FETCH_IDLE_CLOSE, __ATOMIC_SEQ_CST);
        assert_int_equal(secclient_relay_fetch(c, 10, 0, 0, &m, &n), -ETIMEDOUT);
        assert_int_equal(rl.fetch_after[3], b);
        assert_int_equal(secclient_relay_send(c, me, NULL, "c", 1, NULL, NULL), 0);
        assert_int_equal(rl.n_connections, 2);
        assert_int_equal(rl.n_registers, 2);
        /* The same handle after the reconnection: still past a and b, so only c comes. */
        c3 = fetch_one(c, "c");
        assert_int_equal(rl.fetch_after[4], b);
        assert_true(c3 > b);

        /* A relay that ignores the cursor: the delivered set drops a, b and c, d comes once. */
        assert_int_equal(secclient_relay_send(c, me, NULL, "d", 1, NULL, NULL), 0);
        __atomic_store_n(&rl.fetch_mode, T_FETCH_NO_CURSOR, __ATOMIC_SEQ_CST);
        assert_int_equal(secclient_relay_fetch(c, 10, 0, 0, &m, &n), 0);
        assert_int_equal(n, 1);
        assert_memory_equal(m[0].data, "d", 1);
        d = m[0].id;
        secclient_messages_free(m, n);
        assert_int_equal(rl.fetch_after[5], c3);
        assert_int_equal(secclient_relay_fetch(c, 10, 0, 0, &m, &n), 0);
        assert_int_equal(n, 0);
        assert_int_equal(rl.fetch_after[6], d);

        /*
         * Acknowledging moves nothing back: e, sent after, is above the cursor.
         * Then another mailbox on the same handle (a new connection, as
         * secclient_register() requires): its first FETCH starts at 0.
         */
        assert_int_equal(secclient_relay_ack(c, (uint64_t[]) { a, b }, 2, NULL), 0);
        assert_int_equal(secclient_relay_send(c, me, NULL, "e", 1, NULL, NULL), 0);
        e = fetch_one(c, "e");
        assert_int_equal(rl.fetch_after[7], d);
        assert_int_equal(secclient_connect(c), 0);
        assert_int_equal(secclient_register(c, seed2, NULL), 0);
        assert_int_equal(secclient_relay_fetch(c, 10, 0, 0, &m, &n), 0);
        assert_int_equal(rl.fetch_after[8], 0);
        /* The in-test relay keeps one queue: c, d, e again, as new for this mailbox. */
        assert_int_equal(n, 3);
        assert_int_equal(m[0].id, c3);
        assert_int_equal(m[2].id, e);
        secclient_messages_free(m, n);
        assert_int_equal(secclient_relay_send(c, me2, NULL, "f", 1, NULL, NULL), 0);
        f = fetch_one(c, "f");
        assert_int_equal(rl.fetch_after[9], e);
        assert_true(f > e);
        secclient_free(c);

        relay_stop(&rl);
        assert_int_equal(rl.n_fetches, 10);
        pki_done(&pki);
        explicit_bzero(seed, sizeof seed);
        explicit_bzero(seed2, sizeof seed2);
}

static void test_wire_hostile_fetch(void **state) {
        static const struct {
                TFetchMode mode;
                int expect;
        } cases[] = {
                { T_FETCH_WRONG_TYPE,   -EBADMSG },
                { T_FETCH_OUT_OF_ORDER, -EBADMSG },
                { T_FETCH_TOO_MANY,     -EBADMSG },
                { T_FETCH_TRUNCATED,    -EBADMSG },
                { T_FETCH_IDLE_CLOSE,   -ETIMEDOUT },
        };
        uint8_t seed[32], me[32];
        secclient_message *m = NULL;
        Relay rl = {};
        size_t n = 0;
        secclient *c;
        Pki pki;

        pki_init(&pki);
        relay_start(&rl, &pki);
        assert_int_equal(secclient_identity_generate(seed, me), 0);
        c = relay_client(&rl, &pki, 14);
        assert_int_equal(secclient_register(c, seed, NULL), 0);
        assert_int_equal(secclient_relay_send(c, me, NULL, "kept", 4, NULL, NULL), 0);

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                __atomic_store_n(&rl.fetch_mode, cases[i].mode, __ATOMIC_SEQ_CST);
                m = (void *) 1;
                n = 99;
                assert_int_equal(secclient_relay_fetch(c, 2, 0, 0, &m, &n), cases[i].expect);
                /* Nothing handed out from a bad reply, and the outputs are untouched. */
                assert_ptr_equal(m, (void *) 1);
                assert_int_equal(n, 99);
                assert_non_null(secclient_last_error(c));
        }

        /*
         * After the idle close, the next call reconnects and registers again;
         * the message pending all along arrives once: no bad reply marked it.
         */
        assert_int_equal(secclient_relay_fetch(c, 10, 0, 0, &m, &n), 0);
        assert_int_equal(n, 1);
        assert_memory_equal(m[0].data, "kept", 4);
        secclient_messages_free(m, n);
        secclient_free(c);

        relay_stop(&rl);
        assert_int_equal(rl.n_connections, 2);
        assert_int_equal(rl.n_registers, 2);
        pki_done(&pki);
        explicit_bzero(seed, sizeof seed);
}

static void test_wire_keys(void **state) {
        uint8_t seed[32], me[32], other_seed[32], other[32], dh_priv[32], dh[32], spk_priv[32], spk[32];
        secclient_prekey otk[3];
        secclient_bundle b;
        unsigned stored = 0, count = 0;
        Relay rl = {};
        secclient *c;
        Pki pki;

        pki_init(&pki);
        relay_start(&rl, &pki);
        assert_int_equal(secclient_identity_generate(seed, me), 0);
        assert_int_equal(secclient_identity_generate(other_seed, other), 0);
        assert_int_equal(secclient_x25519_generate(dh_priv, dh), 0);
        assert_int_equal(secclient_x25519_generate(spk_priv, spk), 0);
        for (unsigned i = 0; i < ELEMENTSOF(otk); i++) {
                uint8_t priv[32];

                otk[i].id = 100 + i;
                assert_int_equal(secclient_x25519_generate(priv, otk[i].public_key), 0);
                explicit_bzero(priv, sizeof priv);
        }
        c = relay_client(&rl, &pki, 13);

        /* No keys yet: NO_KEYS is -ENODATA. Publishing needs a registered seed. */
        assert_int_equal(secclient_keys_bundle(c, me, &b), -ENODATA);
        assert_int_equal(secclient_keys_publish(c, dh, 1, spk, otk, 3, &stored), -ENOTCONN);

        assert_int_equal(secclient_register(c, seed, NULL), 0);
        assert_int_equal(secclient_keys_publish(c, dh, 7, spk, otk, 3, &stored), 0);
        assert_int_equal(stored, 3);
        assert_int_equal(secclient_keys_count(c, &count), 0);
        assert_int_equal(count, 3);

        assert_int_equal(secclient_keys_bundle(c, me, &b), 0);
        assert_memory_equal(b.identity_key, me, 32);
        assert_memory_equal(b.identity_dh, dh, 32);
        assert_int_equal(b.signed_prekey_id, 7);
        assert_memory_equal(b.signed_prekey, spk, 32);
        assert_true(b.has_one_time);
        assert_int_equal(b.one_time.id, 102);
        assert_memory_equal(b.one_time.public_key, otk[2].public_key, 32);
        assert_int_equal(secclient_keys_count(c, &count), 0);
        assert_int_equal(count, 2);

        /* The relay answers with this mailbox's bundle when another was asked: refused. */
        assert_int_equal(secclient_keys_bundle(c, other, &b), -EBADMSG);
        /* A signature that does not verify: refused. */
        __atomic_store_n(&rl.tamper_bundle, true, __ATOMIC_SEQ_CST);
        assert_int_equal(secclient_keys_bundle(c, me, &b), -EBADMSG);
        assert_non_null(secclient_last_error(c));
        __atomic_store_n(&rl.tamper_bundle, false, __ATOMIC_SEQ_CST);
        assert_int_equal(secclient_keys_bundle(c, me, &b), 0);
        assert_false(b.has_one_time); /* the three are gone */

        secclient_free(c);
        relay_stop(&rl);
        pki_done(&pki);
        explicit_bzero(seed, sizeof seed);
        explicit_bzero(other_seed, sizeof other_seed);
        explicit_bzero(dh_priv, sizeof dh_priv);
        explicit_bzero(spk_priv, sizeof spk_priv);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_ed25519_rfc8032_test1),
                cmocka_unit_test(test_x25519_rfc7748),
                cmocka_unit_test(test_generate),
                cmocka_unit_test(test_msg_id),
                cmocka_unit_test(test_arguments),
                cmocka_unit_test(test_not_connected),
                cmocka_unit_test(test_error_codes),
                cmocka_unit_test(test_seen_set),
                cmocka_unit_test(test_bundle_verify),
                cmocka_unit_test(test_wire_messages),
                cmocka_unit_test(test_wire_reconnect_registers_again),
                cmocka_unit_test(test_wire_cursor),
                cmocka_unit_test(test_wire_hostile_fetch),
                cmocka_unit_test(test_wire_keys),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
