/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Identity and pre-keys (nettle: Ed25519, X25519; randomness from
 * gnutls_rnd(GNUTLS_RND_KEY)) and the key-server calls: KEYS_PUBLISH
 * (signed with the registered seed), KEYS_BUNDLE (verified before it is
 * handed out), KEYS_COUNT. Every copy of a seed or private key is wiped.
 */
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <nettle/curve25519.h>
#include <nettle/eddsa.h>
#include <stdlib.h>
#include <string.h>

#include "ed25519-order.h"
#include "frame.h"
#include "relay-proto.h"
#include "secclient-internal.h"

/* ---------------------------------------------------------------------- */
/* Keys */

int identity_sign(const uint8_t seed[SECCLIENT_KEY_SIZE], const uint8_t *msg, size_t len,
                  uint8_t ret_signature[SECCLIENT_SIGNATURE_SIZE]) {
        uint8_t pub[ED25519_KEY_SIZE];

        if (!seed || (!msg && len > 0) || !ret_signature)
                return -EINVAL;
        ed25519_sha512_public_key(pub, seed);
        ed25519_sha512_sign(pub, seed, len, msg, ret_signature);
        return 0;
}

int identity_verify(const uint8_t public_key[SECCLIENT_KEY_SIZE], const uint8_t *msg, size_t len,
                    const uint8_t signature[SECCLIENT_SIGNATURE_SIZE]) {
        if (!public_key || (!msg && len > 0) || !signature)
                return -EINVAL;
        /* A small-order key "signs" anything (R = identity, S = 0): such a signature proves nothing. */
        if (ed25519_key_is_small_order(public_key))
                return -EBADMSG;
        return ed25519_sha512_verify(public_key, len, msg, signature) == 1 ? 0 : -EBADMSG;
}

_public_ int secclient_identity_public(const uint8_t seed[SECCLIENT_KEY_SIZE],
                                       uint8_t public_key[SECCLIENT_KEY_SIZE]) {
        if (!seed || !public_key)
                return -EINVAL;
        ed25519_sha512_public_key(public_key, seed);
        return 0;
}

_public_ int secclient_identity_generate(uint8_t seed[SECCLIENT_KEY_SIZE], uint8_t public_key[SECCLIENT_KEY_SIZE]) {
        uint8_t s[SECCLIENT_KEY_SIZE];

        if (!seed || !public_key)
                return -EINVAL;
        if (gnutls_rnd(GNUTLS_RND_KEY, s, sizeof s) < 0) {
                explicit_bzero(s, sizeof s);
                return -EIO;
        }
        ed25519_sha512_public_key(public_key, s);
        memcpy(seed, s, sizeof s);
        explicit_bzero(s, sizeof s);
        return 0;
}

int x25519_public(const uint8_t private_key[SECCLIENT_KEY_SIZE], uint8_t ret_public_key[SECCLIENT_KEY_SIZE]) {
        if (!private_key || !ret_public_key)
                return -EINVAL;
        /* RFC 7748 clamping is part of the scalar multiplication (nettle clamps). */
        curve25519_mul_g(ret_public_key, private_key);
        return 0;
}

_public_ int secclient_x25519_generate(uint8_t private_key[SECCLIENT_KEY_SIZE], uint8_t public_key[SECCLIENT_KEY_SIZE]) {
        uint8_t k[CURVE25519_SIZE];

        if (!private_key || !public_key)
                return -EINVAL;
        if (gnutls_rnd(GNUTLS_RND_KEY, k, sizeof k) < 0) {
                explicit_bzero(k, sizeof k);
                return -EIO;
        }
        (void) x25519_public(k, public_key);
        memcpy(private_key, k, sizeof k);
        explicit_bzero(k, sizeof k);
        return 0;
}

int bundle_verify(const RelayBundle *b, const uint8_t mailbox[SECCLIENT_KEY_SIZE]) {
        uint8_t msg[RELAY_SIGNED_MAX];
        size_t n;

        if (!b || !mailbox)
                return -EINVAL;
        if (gnutls_memcmp(b->identity_key, mailbox, SECCLIENT_KEY_SIZE) != 0)
                return -EBADMSG;
        n = relay_signed_identity_dh(msg, b->identity_dh);
        if (identity_verify(b->identity_key, msg, n, b->identity_dh_sig) < 0)
                return -EBADMSG;
        n = relay_signed_prekey(msg, b->spk_id, b->spk);
        if (identity_verify(b->identity_key, msg, n, b->spk_sig) < 0)
                return -EBADMSG;
        return 0;
}

/* ---------------------------------------------------------------------- */
/* KEYS_PUBLISH, KEYS_BUNDLE, KEYS_COUNT */

_public_ int secclient_keys_publish(secclient *c, const uint8_t identity_dh[SECCLIENT_KEY_SIZE],
                                    uint32_t signed_prekey_id, const uint8_t signed_prekey[SECCLIENT_KEY_SIZE],
                                    const secclient_prekey *one_time, size_t n_one_time, unsigned *ret_stored) {
        _cleanup_free_ uint8_t *payload = NULL, *reply = NULL;
        _cleanup_free_ RelayPublish *pub = NULL;
        uint8_t msg[RELAY_SIGNED_MAX], seed[SECCLIENT_KEY_SIZE];
        size_t n, payload_len = 0, reply_len = 0;
        const uint8_t *held;
        uint16_t stored = 0;
        int r;

        if (!c || !identity_dh || !signed_prekey || (n_one_time > 0 && !one_time))
                return -EINVAL;
        if (n_one_time > SECCLIENT_ONE_TIME_MAX)
                return -EINVAL;
        for (size_t i = 0; i < n_one_time; i++)
                for (size_t j = 0; j < i; j++)
                        if (one_time[i].id == one_time[j].id)
                                return -EINVAL; /* secd refuses duplicate ids */

        held = client_identity(c);
        if (!held) {
                client_set_last_error(c, "no mailbox registered on this handle (secclient_register())");
                return -ENOTCONN;
        }

        pub = calloc(1, sizeof *pub);
        if (!pub)
                return -ENOMEM;
        memcpy(pub->identity_dh, identity_dh, RELAY_DH_KEY_SIZE);
        pub->spk_id = signed_prekey_id;
        memcpy(pub->spk, signed_prekey, RELAY_DH_KEY_SIZE);
        pub->n_otks = n_one_time;
        for (size_t i = 0; i < n_one_time; i++) {
                pub->otks[i].id = one_time[i].id;
                memcpy(pub->otks[i].key, one_time[i].public_key, RELAY_DH_KEY_SIZE);
        }

        /* A local copy: the held seed may be replaced by a re-registration below. */
        memcpy(seed, held, sizeof seed);
        n = relay_signed_identity_dh(msg, pub->identity_dh);
        r = identity_sign(seed, msg, n, pub->identity_dh_sig);
        if (r >= 0) {
                n = relay_signed_prekey(msg, pub->spk_id, pub->spk);
                r = identity_sign(seed, msg, n, pub->spk_sig);
        }
        explicit_bzero(seed, sizeof seed);
        if (r < 0)
                return r;

        r = relay_publish_build(pub, &payload, &payload_len);
        if (r < 0)
                return r;
        r = client_request(c, FRAME_KEYS_PUBLISH, payload, payload_len, 0, &reply, &reply_len);
        if (r < 0)
                return r;
        if (relay_publish_reply_parse(reply, reply_len, &stored) < 0) {
                client_set_last_error(c, "malformed KEYS_PUBLISH reply from secd");
                return -EBADMSG;
        }
        if (ret_stored)
                *ret_stored = stored;
        return 0;
}

_public_ int secclient_keys_bundle(secclient *c, const uint8_t mailbox[SECCLIENT_KEY_SIZE], secclient_bundle *ret) {
        _cleanup_free_ uint8_t *reply = NULL;
        size_t reply_len = 0;
        RelayBundle b = {};
        int r;

        if (!c || !mailbox || !ret)
                return -EINVAL;

        r = client_request(c, FRAME_KEYS_BUNDLE, mailbox, SECCLIENT_KEY_SIZE, 0, &reply, &reply_len);
        if (r < 0)
                return r;
        if (relay_bundle_parse(reply, reply_len, &b) < 0) {
                client_set_last_error(c, "malformed KEYS_BUNDLE reply from secd");
                return -EBADMSG;
        }
        if (bundle_verify(&b, mailbox) < 0) {
                client_set_last_error(c, "the key bundle from secd is not the mailbox's or its signatures "
                                         "do not verify: refused");
                return -EBADMSG;
        }

        *ret = (secclient_bundle) {
                .signed_prekey_id = b.spk_id,
                .has_one_time = b.has_otk,
        };
        memcpy(ret->identity_key, b.identity_key, SECCLIENT_KEY_SIZE);
        memcpy(ret->identity_dh, b.identity_dh, SECCLIENT_KEY_SIZE);
        memcpy(ret->signed_prekey, b.spk, SECCLIENT_KEY_SIZE);
        if (b.has_otk) {
                ret->one_time.id = b.otk.id;
                memcpy(ret->one_time.public_key, b.otk.key, SECCLIENT_KEY_SIZE);
        }
        return 0;
}

_public_ int secclient_keys_count(secclient *c, unsigned *ret_count) {
        _cleanup_free_ uint8_t *reply = NULL;
        size_t reply_len = 0;
        uint32_t count = 0;
        int r;

        if (!c || !ret_count)
                return -EINVAL;

        r = client_request(c, FRAME_KEYS_COUNT, NULL, 0, 0, &reply, &reply_len);
        if (r < 0)
                return r;
        if (relay_count_reply_parse(reply, reply_len, &count) < 0) {
                client_set_last_error(c, "malformed KEYS_COUNT reply from secd");
                return -EBADMSG;
        }
        *ret_count = (unsigned) count;
        return 0;
}
