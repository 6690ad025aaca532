/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The relay and key-server payload codec as a peer drives it: the first
 * byte picks a parser, the rest is the payload. Whatever parses must
 * rebuild to exactly the same bytes (the encoding is canonical) and parse
 * again to the same values; whatever fails must fail with -EBADMSG. CHECK,
 * not assert(): release builds define NDEBUG.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "frame.h"
#include "relay-proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                               \
        do {                                                                   \
                if (!(x)) {                                                    \
                        fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #x); \
                        abort();                                               \
                }                                                              \
        } while (0)

enum {
        SEL_REGISTER,
        SEL_REGISTER_REPLY,
        SEL_SEND,
        SEL_SEND_REPLY,
        SEL_FETCH,
        SEL_FETCH_REPLY,
        SEL_ACK,
        SEL_ACK_REPLY,
        SEL_PUBLISH,
        SEL_PUBLISH_REPLY,
        SEL_BUNDLE_REQUEST,
        SEL_BUNDLE,
        SEL_COUNT_REQUEST,
        SEL_COUNT_REPLY,
        SEL_SIGNED,
        _SEL_MAX,
};

/* A parse result is either success or -EBADMSG: nothing else from well-formed arguments. */
static bool parsed(int r) {
        CHECK(r == 0 || r == -EBADMSG);
        return r == 0;
}

static void same_bytes(const uint8_t *a, size_t a_n, const uint8_t *b, size_t b_n) {
        CHECK(a_n == b_n);
        CHECK(a_n == 0 || memcmp(a, b, a_n) == 0);
}

static void fuzz_register(const uint8_t *p, size_t n) {
        RelayRegister r, r2;
        uint8_t out[RELAY_REGISTER_SIZE];

        if (!parsed(relay_register_parse(p, n, &r)))
                return;
        CHECK(relay_register_build(&r, out) == 0);
        same_bytes(out, sizeof out, p, n);
        CHECK(relay_register_parse(out, sizeof out, &r2) == 0);
        CHECK(memcmp(&r, &r2, sizeof r) == 0);  /* two byte arrays: no padding */
}

static void fuzz_register_reply(const uint8_t *p, size_t n) {
        uint8_t out[RELAY_REGISTER_REPLY_SIZE];
        bool created, created2;

        if (!parsed(relay_register_reply_parse(p, n, &created)))
                return;
        relay_register_reply_build(created, out);
        same_bytes(out, sizeof out, p, n);
        CHECK(relay_register_reply_parse(out, sizeof out, &created2) == 0);
        CHECK(created == created2);
}

static void fuzz_send(const uint8_t *p, size_t n) {
        RelaySend s, s2;
        uint8_t *out = NULL;
        size_t out_n;

        if (!parsed(relay_send_parse(p, n, &s)))
                return;
        CHECK(s.blob_size >= 1);
        CHECK(s.blob >= p && s.blob + s.blob_size == p + n);
        CHECK(relay_send_build(&s, n - 1, &out, &out_n) == -E2BIG);
        CHECK(!out);
        CHECK(relay_send_build(&s, n, &out, &out_n) == 0);
        same_bytes(out, out_n, p, n);
        CHECK(relay_send_parse(out, out_n, &s2) == 0);
        CHECK(memcmp(s.recipient, s2.recipient, RELAY_KEY_SIZE) == 0);
        CHECK(memcmp(s.client_msg_id, s2.client_msg_id, RELAY_MSG_ID_SIZE) == 0);
        CHECK(s.blob_size == s2.blob_size);
        CHECK(memcmp(s.blob, s2.blob, s.blob_size) == 0);
        free(out);
}

static void fuzz_send_reply(const uint8_t *p, size_t n) {
        RelaySendReply r, r2;
        uint8_t out[RELAY_SEND_REPLY_SIZE];

        if (!parsed(relay_send_reply_parse(p, n, &r)))
                return;
        relay_send_reply_build(&r, out);
        same_bytes(out, sizeof out, p, n);
        CHECK(relay_send_reply_parse(out, sizeof out, &r2) == 0);
        CHECK(r.server_id == r2.server_id && r.duplicate == r2.duplicate);
}

static void fuzz_fetch(const uint8_t *p, size_t n) {
        RelayFetch f, f2;
        uint8_t out[RELAY_FETCH_SIZE];

        if (!parsed(relay_fetch_parse(p, n, &f)))
                return;
        CHECK(f.max_count >= 1 && f.max_count <= RELAY_FETCH_COUNT_MAX && f.max_bytes >= 1);
        CHECK(relay_fetch_build(&f, out) == 0);
        same_bytes(out, sizeof out, p, n);
        CHECK(relay_fetch_parse(out, sizeof out, &f2) == 0);
        CHECK(f.max_count == f2.max_count && f.max_bytes == f2.max_bytes && f.wait_ms == f2.wait_ms &&
              f.after_id == f2.after_id);
}

static void fuzz_fetch_reply(const uint8_t *p, size_t n) {
        RelayMessage *m = NULL, *m2 = NULL;
        uint8_t *out = NULL;
        size_t k, k2, out_n;

        if (!parsed(relay_fetch_reply_parse(p, n, &m, &k)))
                return;
        CHECK(k <= RELAY_FETCH_COUNT_MAX);
        CHECK((k == 0) == (m == NULL));
        for (size_t i = 0; i < k; i++) {
                CHECK(m[i].blob_size >= 1);
                CHECK(m[i].blob >= p && m[i].blob_size <= (size_t) (p + n - m[i].blob));
                CHECK(i == 0 || m[i].server_id > m[i - 1].server_id);
        }
        CHECK(relay_fetch_reply_size(m, k) == n);
        CHECK(relay_fetch_reply_build(m, k, n - 1, &out, &out_n) == -E2BIG);
        CHECK(relay_fetch_reply_build(m, k, n, &out, &out_n) == 0);
        same_bytes(out, out_n, p, n);
        CHECK(relay_fetch_reply_parse(out, out_n, &m2, &k2) == 0);
        CHECK(k == k2);
        for (size_t i = 0; i < k; i++) {
                CHECK(m[i].server_id == m2[i].server_id);
                CHECK(m[i].received_usec == m2[i].received_usec);
                CHECK(memcmp(m[i].client_msg_id, m2[i].client_msg_id, RELAY_MSG_ID_SIZE) == 0);
                CHECK(m[i].blob_size == m2[i].blob_size);
                CHECK(memcmp(m[i].blob, m2[i].blob, m[i].blob_size) == 0);
        }
        free(m2);
        free(out);
        free(m);
}

static void fuzz_ack(const uint8_t *p, size_t n) {
        uint64_t *ids = NULL, *ids2 = NULL;
        uint8_t *out = NULL;
        size_t k, k2, out_n;

        if (!parsed(relay_ack_parse(p, n, &ids, &k)))
                return;
        CHECK(k >= 1 && k <= RELAY_ACK_MAX);
        CHECK(relay_ack_build(ids, k, &out, &out_n) == 0);
        same_bytes(out, out_n, p, n);
        CHECK(relay_ack_parse(out, out_n, &ids2, &k2) == 0);
        CHECK(k == k2 && memcmp(ids, ids2, k * sizeof *ids) == 0);
        free(ids2);
        free(out);
        free(ids);
}

static void fuzz_ack_reply(const uint8_t *p, size_t n) {
        uint8_t out[RELAY_ACK_REPLY_SIZE];
        uint16_t d, d2;

        if (!parsed(relay_ack_reply_parse(p, n, &d)))
                return;
        CHECK(d <= RELAY_ACK_MAX);
        relay_ack_reply_build(d, out);
        same_bytes(out, sizeof out, p, n);
        CHECK(relay_ack_reply_parse(out, sizeof out, &d2) == 0 && d == d2);
}

static void fuzz_publish(const uint8_t *p, size_t n) {
        RelayPublish *pub, *pub2;
        uint8_t *out = NULL;
        size_t out_n;

        pub = malloc(sizeof *pub);
        pub2 = malloc(sizeof *pub2);
        CHECK(pub && pub2);
        if (parsed(relay_publish_parse(p, n, pub))) {
                CHECK(pub->n_otks <= RELAY_OTK_MAX);
                for (size_t i = 0; i < pub->n_otks; i++)
                        for (size_t j = 0; j < i; j++)
                                CHECK(pub->otks[i].id != pub->otks[j].id);
                CHECK(relay_publish_build(pub, &out, &out_n) == 0);
                same_bytes(out, out_n, p, n);
                CHECK(relay_publish_parse(out, out_n, pub2) == 0);
                CHECK(memcmp(pub->identity_dh, pub2->identity_dh, RELAY_DH_KEY_SIZE) == 0);
                CHECK(memcmp(pub->identity_dh_sig, pub2->identity_dh_sig, RELAY_SIGNATURE_SIZE) == 0);
                CHECK(pub->spk_id == pub2->spk_id);
                CHECK(memcmp(pub->spk, pub2->spk, RELAY_DH_KEY_SIZE) == 0);
                CHECK(memcmp(pub->spk_sig, pub2->spk_sig, RELAY_SIGNATURE_SIZE) == 0);
                CHECK(pub->n_otks == pub2->n_otks);
                CHECK(memcmp(pub->otks, pub2->otks, sizeof pub->otks) == 0);        /* packed: u32 + bytes */
                free(out);
        }
        free(pub2);
        free(pub);
}

static void fuzz_publish_reply(const uint8_t *p, size_t n) {
        uint8_t out[RELAY_PUBLISH_REPLY_SIZE];
        uint16_t s, s2;

        if (!parsed(relay_publish_reply_parse(p, n, &s)))
                return;
        CHECK(s <= RELAY_OTK_MAX);
        relay_publish_reply_build(s, out);
        same_bytes(out, sizeof out, p, n);
        CHECK(relay_publish_reply_parse(out, sizeof out, &s2) == 0 && s == s2);
}

static void fuzz_bundle_request(const uint8_t *p, size_t n) {
        uint8_t key[RELAY_KEY_SIZE];

        if (!parsed(relay_bundle_request_parse(p, n, key)))
                return;
        same_bytes(key, sizeof key, p, n);
}

static void fuzz_bundle(const uint8_t *p, size_t n) {
        RelayBundle b, b2;
        uint8_t out[RELAY_BUNDLE_REPLY_MAX];
        size_t out_n;

        if (!parsed(relay_bundle_parse(p, n, &b)))
                return;
        out_n = relay_bundle_build(&b, out);
        same_bytes(out, out_n, p, n);
        CHECK(relay_bundle_parse(out, out_n, &b2) == 0);
        CHECK(memcmp(b.identity_key, b2.identity_key, RELAY_KEY_SIZE) == 0);
        CHECK(memcmp(b.identity_dh, b2.identity_dh, RELAY_DH_KEY_SIZE) == 0);
        CHECK(memcmp(b.identity_dh_sig, b2.identity_dh_sig, RELAY_SIGNATURE_SIZE) == 0);
        CHECK(b.spk_id == b2.spk_id);
        CHECK(memcmp(b.spk, b2.spk, RELAY_DH_KEY_SIZE) == 0);
        CHECK(memcmp(b.spk_sig, b2.spk_sig, RELAY_SIGNATURE_SIZE) == 0);
        CHECK(b.has_otk == b2.has_otk);
        CHECK(b.otk.id == b2.otk.id && memcmp(b.otk.key, b2.otk.key, RELAY_DH_KEY_SIZE) == 0);
}

static void fuzz_count(const uint8_t *p, size_t n, bool reply) {
        uint8_t out[RELAY_COUNT_REPLY_SIZE];
        uint32_t c, c2;

        if (!reply) {
                CHECK(parsed(relay_count_request_parse(p, n)) == (n == 0));
                return;
        }
        if (!parsed(relay_count_reply_parse(p, n, &c)))
                return;
        relay_count_reply_build(c, out);
        same_bytes(out, sizeof out, p, n);
        CHECK(relay_count_reply_parse(out, sizeof out, &c2) == 0 && c == c2);
}

/* The signed messages: domain, then exactly the value, never past RELAY_SIGNED_MAX. */
static void fuzz_signed(const uint8_t *p, size_t n) {
        uint8_t v[4 + 32] = {}, out[RELAY_SIGNED_MAX];
        size_t k;
        uint32_t id;

        memcpy(v, p, MIN(n, sizeof v));
        id = (uint32_t) v[0] << 24 | (uint32_t) v[1] << 16 | (uint32_t) v[2] << 8 | v[3];

        k = relay_signed_register(out, v + 4);
        CHECK(k == strlen(RELAY_DOMAIN_REGISTER) + 32);
        CHECK(memcmp(out, RELAY_DOMAIN_REGISTER, k - 32) == 0 && memcmp(out + k - 32, v + 4, 32) == 0);
        k = relay_signed_identity_dh(out, v + 4);
        CHECK(k == strlen(RELAY_DOMAIN_IDENTITY_DH) + 32);
        CHECK(memcmp(out, RELAY_DOMAIN_IDENTITY_DH, k - 32) == 0 && memcmp(out + k - 32, v + 4, 32) == 0);
        k = relay_signed_prekey(out, id, v + 4);
        CHECK(k == strlen(RELAY_DOMAIN_SIGNED_PREKEY) + 36 && k <= RELAY_SIGNED_MAX);
        CHECK(memcmp(out, RELAY_DOMAIN_SIGNED_PREKEY, k - 36) == 0 && memcmp(out + k - 36, v, 36) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const uint8_t *p;
        size_t n;

        if (size < 1)
                return 0;
        /* A payload is never larger on the wire; this also caps what a builder allocates. */
        if (size - 1 > FRAME_PAYLOAD_MAX_HARD)
                return 0;
        p = data + 1;
        n = size - 1;

        switch (data[0] % _SEL_MAX) {
        case SEL_REGISTER:
                fuzz_register(p, n);
                break;
        case SEL_REGISTER_REPLY:
                fuzz_register_reply(p, n);
                break;
        case SEL_SEND:
                fuzz_send(p, n);
                break;
        case SEL_SEND_REPLY:
                fuzz_send_reply(p, n);
                break;
        case SEL_FETCH:
                fuzz_fetch(p, n);
                break;
        case SEL_FETCH_REPLY:
                fuzz_fetch_reply(p, n);
                break;
        case SEL_ACK:
                fuzz_ack(p, n);
                break;
        case SEL_ACK_REPLY:
                fuzz_ack_reply(p, n);
                break;
        case SEL_PUBLISH:
                fuzz_publish(p, n);
                break;
        case SEL_PUBLISH_REPLY:
                fuzz_publish_reply(p, n);
                break;
        case SEL_BUNDLE_REQUEST:
                fuzz_bundle_request(p, n);
                break;
        case SEL_BUNDLE:
                fuzz_bundle(p, n);
                break;
        case SEL_COUNT_REQUEST:
                fuzz_count(p, n, false);
                break;
        case SEL_COUNT_REPLY:
                fuzz_count(p, n, true);
                break;
        case SEL_SIGNED:
                fuzz_signed(p, n);
                break;
        }
        return 0;
}
