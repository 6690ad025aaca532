/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Internal to libsecclient: not installed, not exported from the shared
 * library (hidden visibility, absent from secclient.sym). secctl and the
 * unit tests reach these through the static secclient-internal library.
 */

#include "macro.h"
#include "secclient.h"

/* Marks a function exported from libsecclient.so (also listed in secclient.sym). */
#define _public_ __attribute__((visibility("default")))

DEFINE_TRIVIAL_CLEANUP_FUNC(secclient_control *, secclient_control_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(secclient *, secclient_free);

/*
 * Wrap an already connected stream socket (a socketpair end, an inherited
 * fd). Takes ownership of fd on success only. -EBADF, -ENOMEM.
 */
int control_adopt_fd(int fd, secclient_control **ret);

/*
 * Change the largest reply accepted (terminating NUL included; default
 * SECCLIENT_CONTROL_MESSAGE_MAX). Only between calls: -EBUSY while a
 * stream is open or a reply is partly received.
 */
int control_set_message_max(secclient_control *c, size_t message_max);

/* ------------------------------------------------------------------------
 * mTLS client internals (client.c, creds.c). Pure helpers first: the unit
 * tests drive them directly.
 * ------------------------------------------------------------------------ */

/* Largest credential bundle accepted by secclient_creds_recv() (JSON, without the length prefix). */
#define SECCLIENT_CREDS_BUNDLE_MAX (64u * 1024u)

/* Reconnect policy: attempts after a drop, first delay, cap (milliseconds). */
#define SECCLIENT_RECONNECT_ATTEMPTS 5u
#define SECCLIENT_RECONNECT_BASE_MS 100u
#define SECCLIENT_RECONNECT_CAP_MS 5000u

typedef struct SecclientEndpoint {
        bool unix_socket;
        char *path;   /* unix_socket: the path ("@name": abstract) */
        char *host;   /* TCP: host name or address, without brackets */
        char *port;   /* TCP: decimal port 1-65535 */
} SecclientEndpoint;

/*
 * "…/path" (anything containing '/') or "@abstract" is a Unix socket;
 * "host:port" and "[v6]:port" are TCP. -EINVAL for anything else (empty,
 * missing or bad port, an unbracketed IPv6 address, empty host).
 */
int endpoint_parse(const char *s, SecclientEndpoint *ret);
void endpoint_done(SecclientEndpoint *e);

/*
 * Delay before reconnect attempt `attempt` (1-based: attempt 0 is the
 * immediate first try and waits 0): exponential from
 * SECCLIENT_RECONNECT_BASE_MS, capped at SECCLIENT_RECONNECT_CAP_MS, with
 * "equal jitter": half fixed, half from random.
 */
unsigned backoff_delay_ms(unsigned attempt, uint32_t random);

/* True when a certificate valid from not_before to not_after should be renewed at now (half-life). */
bool renew_due(uint64_t now_usec, uint64_t not_before_usec, uint64_t not_after_usec);

/* io.secd.Enroll error name → negative errno (NotAdmitted -EACCES, RateLimited -EAGAIN, else -EPROTO). */
int enroll_error_to_errno(const char *error);

/* ERROR frame code → negative errno (NOT_ADMITTED -EACCES, CERT_REVOKED -EKEYREVOKED, …). */
int frame_error_to_errno(uint16_t code);

/*
 * The hand-over bundle: {"ca_cert":…,"client_cert":…,"client_key":…}.
 * format: a malloc'd JSON text (the caller wipes it: it contains the key).
 * parse: strict (one object, exactly these three string keys, no
 * duplicates, nothing after it); the outputs are malloc'd, the key wiped by
 * the caller. Every intermediate copy is wiped. -EBADMSG if malformed.
 */
int creds_bundle_format(const char *ca, const char *cert, const char *key, char **ret, size_t *ret_len);
int creds_bundle_parse(const char *text, size_t len, char **ret_ca, char **ret_cert, char **ret_key);

/* For the unit tests: 1 if the current connection's TLS session was resumed, 0 if not, -ENOTCONN. */
int client_session_resumed(const secclient *c);

/* ------------------------------------------------------------------------
 * Relay and key server (relay.c, keys.c) on top of the connection
 * (client.c).
 * ------------------------------------------------------------------------ */

/*
 * What a fetch already handed to the caller for the registered mailbox.
 * cursor: the highest server id returned, sent as FETCH after_id, so secd
 * neither returns those again nor answers a waiting fetch with them
 * (kept across reconnections of the handle). ids: those returned and not
 * acknowledged yet, so a redelivery is dropped all the same (a second line
 * of defence). Bounded: when full, the smallest (oldest) id is forgotten
 * first. Sorted, no duplicates. Both reset with seen_set_clear() when the
 * handle's mailbox changes.
 */
#define SECCLIENT_SEEN_MAX 4096u
typedef struct SeenSet {
        uint64_t cursor;
        size_t n;
        uint64_t ids[SECCLIENT_SEEN_MAX];
} SeenSet;

bool seen_set_contains(const SeenSet *s, uint64_t id);
/* Adds id: 1 if added, 0 if it was there already (or is older than all of a full set). */
int seen_set_add(SeenSet *s, uint64_t id);
void seen_set_remove(SeenSet *s, uint64_t id);
void seen_set_clear(SeenSet *s);

/* Ed25519 (nettle): sign msg with the key of seed; verify: 0 or -EBADMSG. */
int identity_sign(const uint8_t seed[SECCLIENT_KEY_SIZE], const uint8_t *msg, size_t len,
                  uint8_t ret_signature[SECCLIENT_SIGNATURE_SIZE]);
int identity_verify(const uint8_t public_key[SECCLIENT_KEY_SIZE], const uint8_t *msg, size_t len,
                    const uint8_t signature[SECCLIENT_SIGNATURE_SIZE]);

/* X25519 public key of a private one (RFC 7748 base-point multiplication, nettle). */
int x25519_public(const uint8_t private_key[SECCLIENT_KEY_SIZE], uint8_t ret_public_key[SECCLIENT_KEY_SIZE]);

/*
 * A parsed KEYS_BUNDLE reply (relay-proto.h) checked: its identity key is
 * mailbox, identity_dh_sig and spk_sig verify under it. 0 or -EBADMSG.
 */
struct RelayBundle;
int bundle_verify(const struct RelayBundle *b, const uint8_t mailbox[SECCLIENT_KEY_SIZE]);

/*
 * REGISTER seed's mailbox on the current connection (no reconnection);
 * on success the handle keeps a copy of the seed. relay.c.
 */
int mailbox_register(secclient *c, const uint8_t seed[SECCLIENT_KEY_SIZE], int *ret_created);

/* client.c: the held identity (a copy of the registered seed, wiped on replace, clear and free). */
void client_identity_set(secclient *c, const uint8_t seed[SECCLIENT_KEY_SIZE]);
void client_identity_clear(secclient *c);
const uint8_t *client_identity(const secclient *c);     /* NULL if none */
bool client_registered(const secclient *c);             /* on the current connection */
void client_set_registered(secclient *c);
SeenSet *client_seen(secclient *c);                     /* allocated on first use; NULL: -ENOMEM */
void client_set_last_error(secclient *c, const char *message);
/* Connected, or reconnected (registering the held identity again) like secclient_send(). */
int client_connection_ensure(secclient *c);
/* This session's RFC 9266 tls-exporter channel binding (32 bytes). -ENOTCONN, -EPROTO. */
int client_channel_binding(secclient *c, uint8_t ret[SECCLIENT_KEY_SIZE]);

/*
 * One request and its reply, waited for by request id within the handle's
 * timeout plus extra_wait_ms (a long poll). An ERROR reply becomes its
 * errno (frame_error_to_errno(), message in secclient_last_error()); a
 * reply of another type -EBADMSG. *ret_payload is malloc'd (never NULL).
 * client_request() first ensures the connection (reconnecting like
 * secclient_send(), never sending the frame twice) and registers the held
 * identity if this connection is not registered yet; client_request_now()
 * uses the current connection only (-ENOTCONN).
 */
int client_request(secclient *c, uint8_t type, const void *payload, size_t len, unsigned extra_wait_ms,
                   uint8_t **ret_payload, size_t *ret_len);
int client_request_now(secclient *c, uint8_t type, const void *payload, size_t len, unsigned extra_wait_ms,
                       uint8_t **ret_payload, size_t *ret_len);
