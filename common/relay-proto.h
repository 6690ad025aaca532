/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Payloads of the relay (0x10-0x13) and key-server (0x20-0x22) frames, and
 * the byte strings their signatures cover. Pure codec, no I/O, no crypto:
 * secd (secd/relay.c) and libsecclient both use it; docs/protocol.md is the
 * normative text and must say the same thing byte for byte.
 *
 * Every integer is big-endian. Every parser checks the exact length before
 * reading a field and refuses trailing bytes: -EBADMSG for anything
 * malformed (truncated, too long, a count out of bounds, duplicate ids),
 * never a partial result. Builders return -E2BIG when the payload would
 * exceed max (the caller's frame payload maximum), -ENOMEM, -EINVAL for
 * arguments out of the documented bounds.
 *
 * Payloads (requests; the reply type is the request type | 0x80):
 *
 * REGISTER 0x10   key[32] proof[64]
 *   proof = Ed25519 signature by key over
 *           RELAY_DOMAIN_REGISTER (without NUL) || exporter[32]
 *   where exporter is this TLS session's RFC 9266 channel binding
 *   (TLS-Exporter("EXPORTER-Channel-Binding", "", 32),
 *   gnutls_session_channel_binding(GNUTLS_CB_TLS_EXPORTER)).
 *   reply: created[1]   1 if this REGISTER created the mailbox, 0 if it existed
 *
 * SEND 0x11       recipient[32] client_msg_id[16] blob[n], 1 <= n
 *   reply: server_id u64, duplicate[1] (1: a resend, nothing new stored)
 *
 * FETCH 0x12      max_count u16 (1..RELAY_FETCH_COUNT_MAX),
 *                 max_bytes u32 (>= 1; secd clamps it to what one reply frame holds),
 *                 wait_ms u32 (0: answer now; secd clamps it to relay_fetch_wait_max),
 *                 after_id u64 (a cursor: only messages with server_id > after_id;
 *                 0: every pending one; any value is valid)
 *   reply: count u16, then count times
 *          { server_id u64, client_msg_id[16], received_usec u64 (CLOCK_REALTIME),
 *            length u32, blob[length] }
 *   Messages in strictly increasing server_id order (a reply that is not:
 *   -EBADMSG; the builder refuses it with -EINVAL), all > the request's
 *   after_id (secd's side of the contract; the codec cannot see it). The first message is always included when
 *   one is pending, whatever max_bytes says; each further one only while the
 *   blobs' total stays <= max_bytes.
 *
 * ACK 0x13        count u16 (1..RELAY_ACK_MAX), count times server_id u64 (duplicates allowed)
 *   reply: deleted u16 (ids that were pending in this connection's mailbox)
 *
 * KEYS_PUBLISH 0x20
 *                 identity_dh[32] identity_dh_sig[64]
 *                 spk_id u32 spk[32] spk_sig[64]
 *                 n u16 (0..RELAY_OTK_MAX), n times { otk_id u32, otk[32] } (ids distinct)
 *   identity_dh_sig = Ed25519 by the mailbox key over RELAY_DOMAIN_IDENTITY_DH || identity_dh
 *   spk_sig         = Ed25519 by the mailbox key over RELAY_DOMAIN_SIGNED_PREKEY || spk_id || spk
 *   reply: stored u16 (one-time pre-keys now held = n)
 *
 * KEYS_BUNDLE 0x21  mailbox[32]
 *   reply: identity_key[32] identity_dh[32] identity_dh_sig[64]
 *          spk_id u32 spk[32] spk_sig[64]
 *          has_otk[1] (0 or 1), then, if 1: otk_id u32 otk[32]
 *
 * KEYS_COUNT 0x22   (empty)
 *   reply: count u32 (one-time pre-keys left in this connection's mailbox)
 */

#include "macro.h"

#define RELAY_KEY_SIZE 32               /* Ed25519 public key = mailbox address */
#define RELAY_SIGNATURE_SIZE 64         /* Ed25519 */
#define RELAY_DH_KEY_SIZE 32            /* X25519 public key */
#define RELAY_MSG_ID_SIZE 16
#define RELAY_EXPORTER_SIZE 32

#define RELAY_FETCH_COUNT_MAX 1000
#define RELAY_ACK_MAX 1000
#define RELAY_OTK_MAX 100

/* Fixed parts of the payloads. */
#define RELAY_REGISTER_SIZE (RELAY_KEY_SIZE + RELAY_SIGNATURE_SIZE)                  /* 96 */
#define RELAY_SEND_HEADER_SIZE (RELAY_KEY_SIZE + RELAY_MSG_ID_SIZE)                  /* 48 */
#define RELAY_FETCH_SIZE (2 + 4 + 4 + 8)                                             /* 18 */
#define RELAY_FETCH_REPLY_HEADER_SIZE 2
#define RELAY_FETCH_ITEM_HEADER_SIZE (8 + RELAY_MSG_ID_SIZE + 8 + 4)                 /* 36 */
#define RELAY_PUBLISH_HEADER_SIZE (32 + 64 + 4 + 32 + 64 + 2)                        /* 198 */
#define RELAY_PREKEY_SIZE (4 + 32)                                                   /* 36 */
#define RELAY_BUNDLE_REPLY_MIN (32 + 32 + 64 + 4 + 32 + 64 + 1)                      /* 229 */
#define RELAY_BUNDLE_REPLY_MAX (RELAY_BUNDLE_REPLY_MIN + RELAY_PREKEY_SIZE)          /* 265 */

/* Domain-separation prefixes of the signed messages (ASCII, signed without a NUL). */
#define RELAY_DOMAIN_REGISTER "secd relay register v1"
#define RELAY_DOMAIN_IDENTITY_DH "secd keys identity-dh v1"
#define RELAY_DOMAIN_SIGNED_PREKEY "secd keys signed-prekey v1"

/* The largest signed message (signed-prekey: domain + 4 + 32). */
#define RELAY_SIGNED_MAX 128

/*
 * The exact bytes a signature covers, written to out (RELAY_SIGNED_MAX
 * bytes); returns the length. Both sides use these, so they cannot drift.
 */
size_t relay_signed_register(uint8_t out[RELAY_SIGNED_MAX], const uint8_t exporter[RELAY_EXPORTER_SIZE]);
size_t relay_signed_identity_dh(uint8_t out[RELAY_SIGNED_MAX], const uint8_t dh[RELAY_DH_KEY_SIZE]);
size_t relay_signed_prekey(uint8_t out[RELAY_SIGNED_MAX], uint32_t spk_id, const uint8_t spk[RELAY_DH_KEY_SIZE]);

/* REGISTER */
typedef struct RelayRegister {
        uint8_t key[RELAY_KEY_SIZE];
        uint8_t proof[RELAY_SIGNATURE_SIZE];
} RelayRegister;
int relay_register_parse(const uint8_t *p, size_t n, RelayRegister *ret);
int relay_register_build(const RelayRegister *r, uint8_t out[RELAY_REGISTER_SIZE]);
/* REGISTER reply: created is 0 or 1 (anything else: -EBADMSG). */
#define RELAY_REGISTER_REPLY_SIZE 1
int relay_register_reply_parse(const uint8_t *p, size_t n, bool *ret_created);
void relay_register_reply_build(bool created, uint8_t out[RELAY_REGISTER_REPLY_SIZE]);

/* SEND: blob points into p (not copied); ret->blob_size >= 1. */
typedef struct RelaySend {
        uint8_t recipient[RELAY_KEY_SIZE];
        uint8_t client_msg_id[RELAY_MSG_ID_SIZE];
        const uint8_t *blob;
        size_t blob_size;
} RelaySend;
int relay_send_parse(const uint8_t *p, size_t n, RelaySend *ret);
/* A malloc'd SEND payload. */
int relay_send_build(const RelaySend *s, size_t max, uint8_t **ret, size_t *ret_size);

typedef struct RelaySendReply {
        uint64_t server_id;
        bool duplicate;
} RelaySendReply;
#define RELAY_SEND_REPLY_SIZE 9
int relay_send_reply_parse(const uint8_t *p, size_t n, RelaySendReply *ret);
void relay_send_reply_build(const RelaySendReply *r, uint8_t out[RELAY_SEND_REPLY_SIZE]);

/* FETCH */
typedef struct RelayFetch {
        uint16_t max_count;     /* 1..RELAY_FETCH_COUNT_MAX */
        uint32_t max_bytes;     /* >= 1 */
        uint32_t wait_ms;
        uint64_t after_id;      /* only server ids > after_id; 0: all */
} RelayFetch;
int relay_fetch_parse(const uint8_t *p, size_t n, RelayFetch *ret);
int relay_fetch_build(const RelayFetch *f, uint8_t out[RELAY_FETCH_SIZE]);

/* One message of a FETCH reply; blob points into the parsed payload. */
typedef struct RelayMessage {
        uint64_t server_id;
        uint8_t client_msg_id[RELAY_MSG_ID_SIZE];
        uint64_t received_usec;
        const uint8_t *blob;
        size_t blob_size;       /* >= 1 */
} RelayMessage;
/*
 * A malloc'd FETCH reply with all n messages (n <= RELAY_FETCH_COUNT_MAX),
 * -E2BIG if they do not fit in max: the caller picks how many fit with
 * relay_fetch_reply_size().
 */
size_t relay_fetch_reply_size(const RelayMessage *m, size_t n);
int relay_fetch_reply_build(const RelayMessage *m, size_t n, size_t max, uint8_t **ret, size_t *ret_size);
/* *ret is a malloc'd array of n entries whose blobs point into p (n may be 0; then *ret is NULL). */
int relay_fetch_reply_parse(const uint8_t *p, size_t n, RelayMessage **ret, size_t *ret_n);

/* ACK: *ret_ids malloc'd, 1..RELAY_ACK_MAX ids. */
int relay_ack_parse(const uint8_t *p, size_t n, uint64_t **ret_ids, size_t *ret_n);
int relay_ack_build(const uint64_t *ids, size_t n, uint8_t **ret, size_t *ret_size);
#define RELAY_ACK_REPLY_SIZE 2
int relay_ack_reply_parse(const uint8_t *p, size_t n, uint16_t *ret_deleted);
void relay_ack_reply_build(uint16_t deleted, uint8_t out[RELAY_ACK_REPLY_SIZE]);

/* KEYS_PUBLISH */
typedef struct RelayPrekey {
        uint32_t id;
        uint8_t key[RELAY_DH_KEY_SIZE];
} RelayPrekey;

typedef struct RelayPublish {
        uint8_t identity_dh[RELAY_DH_KEY_SIZE];
        uint8_t identity_dh_sig[RELAY_SIGNATURE_SIZE];
        uint32_t spk_id;
        uint8_t spk[RELAY_DH_KEY_SIZE];
        uint8_t spk_sig[RELAY_SIGNATURE_SIZE];
        size_t n_otks;                          /* 0..RELAY_OTK_MAX */
        RelayPrekey otks[RELAY_OTK_MAX];        /* ids distinct */
} RelayPublish;
int relay_publish_parse(const uint8_t *p, size_t n, RelayPublish *ret);
int relay_publish_build(const RelayPublish *pub, uint8_t **ret, size_t *ret_size);
#define RELAY_PUBLISH_REPLY_SIZE 2
int relay_publish_reply_parse(const uint8_t *p, size_t n, uint16_t *ret_stored);
void relay_publish_reply_build(uint16_t stored, uint8_t out[RELAY_PUBLISH_REPLY_SIZE]);

/* KEYS_BUNDLE: request is the 32-byte mailbox key, nothing else. */
int relay_bundle_request_parse(const uint8_t *p, size_t n, uint8_t ret_key[RELAY_KEY_SIZE]);

typedef struct RelayBundle {
        uint8_t identity_key[RELAY_KEY_SIZE];
        uint8_t identity_dh[RELAY_DH_KEY_SIZE];
        uint8_t identity_dh_sig[RELAY_SIGNATURE_SIZE];
        uint32_t spk_id;
        uint8_t spk[RELAY_DH_KEY_SIZE];
        uint8_t spk_sig[RELAY_SIGNATURE_SIZE];
        bool has_otk;
        RelayPrekey otk;
} RelayBundle;
int relay_bundle_parse(const uint8_t *p, size_t n, RelayBundle *ret);
/* Returns the length written (RELAY_BUNDLE_REPLY_MIN or _MAX). */
size_t relay_bundle_build(const RelayBundle *b, uint8_t out[RELAY_BUNDLE_REPLY_MAX]);

/* KEYS_COUNT: request payload must be empty. */
int relay_count_request_parse(const uint8_t *p, size_t n);
#define RELAY_COUNT_REPLY_SIZE 4
int relay_count_reply_parse(const uint8_t *p, size_t n, uint32_t *ret_count);
void relay_count_reply_build(uint32_t count, uint8_t out[RELAY_COUNT_REPLY_SIZE]);
