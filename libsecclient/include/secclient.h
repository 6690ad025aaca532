/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef SECCLIENT_H
#define SECCLIENT_H

/*
 * libsecclient: the C library for talking to secd.
 *
 * Conventions: every handle is opaque; every function returns 0 (or a
 * positive value where documented) on success and a negative errno on
 * failure; every _free() accepts NULL and returns NULL; strings handed back
 * are malloc'd and owned by the caller (free()).
 */

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SECCLIENT_CONTROL_SOCKET_DEFAULT "/run/secd/control.sock"

/* Maximum size of one Varlink message this library sends or accepts. */
#define SECCLIENT_CONTROL_MESSAGE_MAX (64u * 1024u * 1024u)

/* Human-readable text for a negative errno returned by this library. */
const char *secclient_strerror(int error);

/* The library's version string, e.g. "0.1.0". */
const char *secclient_version(void);

/*
 * Control client: a Varlink connection to secd's control socket (or any
 * Varlink service). One call in flight at a time; not thread-safe.
 */
typedef struct secclient_control secclient_control;

/*
 * Connect to the Varlink socket at path (NULL: the default above).
 * Errors: -ENOENT (no socket at path), -ECONNREFUSED (nobody listening),
 * -EACCES (no permission on the socket), -ENAMETOOLONG, other -errno.
 */
int secclient_control_open(const char *path, secclient_control **ret);

/* Close and free; NULL-safe; returns NULL. */
secclient_control *secclient_control_free(secclient_control *c);

/* Set the timeout for each reply in milliseconds (default 30000; 0 = none). */
int secclient_control_set_timeout(secclient_control *c, unsigned timeout_ms);

/*
 * Call method with parameters, a JSON object as text (NULL means {}).
 * On success returns 0 and *ret_reply is the reply's "parameters" object as
 * JSON text. If the service answers with a Varlink error, returns
 * -EREMOTEIO, *ret_error is the error name (for example
 * "io.secd.Policy.NoSuchRule") and *ret_reply its parameters as JSON text.
 * Other errors: -EINVAL (parameters not a JSON object, method malformed),
 * -ETIMEDOUT, -ECONNRESET (service hung up), -EBADMSG (malformed reply),
 * -EMSGSIZE (reply over SECCLIENT_CONTROL_MESSAGE_MAX).
 * ret_reply and ret_error may be NULL when the caller does not want them.
 */
int secclient_control_call(secclient_control *c, const char *method, const char *parameters,
                           char **ret_reply, char **ret_error);

/*
 * Start a call with "more": the service may answer with several replies.
 * Read them with secclient_control_next() until *ret_continues is 0.
 */
int secclient_control_call_more(secclient_control *c, const char *method, const char *parameters);

/*
 * Next reply of a call_more() stream. Returns as secclient_control_call()
 * does; *ret_continues is 1 while more replies will follow. timeout_ms
 * overrides the handle's timeout for this read (-1: use the handle's).
 */
int secclient_control_next(secclient_control *c, int timeout_ms, char **ret_reply,
                           char **ret_error, int *ret_continues);

/* The connection's file descriptor, for poll() in streaming callers. */
int secclient_control_fd(const secclient_control *c);

/*
 * ---------------------------------------------------------------------------
 * Connections to secd's data endpoints over mutual TLS (TLS 1.3 only).
 *
 * A secclient holds credentials (CA, client certificate, client key) and at
 * most one connection. Credentials come from enrollment (an Ed25519 key pair
 * and CSR made in memory, never written anywhere), from secclient_creds_recv(),
 * or from PEM files of `secctl cert issue` (remote clients). The private key
 * lives only in the handle's memory and is wiped when it is replaced or the
 * handle is freed. Not thread-safe: use one secclient per thread.
 *
 * Every wait (enroll, connect, ping, send, recv, creds_*) is bounded by the
 * handle's timeout (secclient_set_timeout()); an automatic reconnection
 * (below) applies it to each of its attempts.
 * ---------------------------------------------------------------------------
 */

#define SECCLIENT_SOCKET_DEFAULT "/run/secd/secd.sock"
#define SECCLIENT_ENROLL_SOCKET_DEFAULT "/run/secd/enroll.sock"

/* Largest PING payload secclient_ping() sends. */
#define SECCLIENT_PING_MAX 1024u

/* The ERROR frame type; a reply has its request's type | SECCLIENT_REPLY_BIT. */
#define SECCLIENT_FRAME_ERROR 0xFFu
#define SECCLIENT_REPLY_BIT 0x80u

typedef struct secclient secclient;

/*
 * New client, without credentials or connection. The data endpoint defaults
 * to $SECD_SOCKET, the enroll socket to $SECD_ENROLL_SOCKET (both read with
 * secure_getenv()), then to the defaults above. -ENOMEM.
 */
int secclient_new(secclient **ret);
/* Disconnect (without close_notify), wipe the key, free; NULL-safe; returns NULL. */
secclient *secclient_free(secclient *c);

/*
 * The data endpoint: a Unix socket path (anything containing '/', or
 * "@name" in the abstract namespace) or "host:port" / "[v6]:port" (TCP, the
 * port numeric). -EINVAL for other forms, -ENAMETOOLONG. Takes effect at the
 * next connect; forgets the saved TLS session.
 */
int secclient_set_endpoint(secclient *c, const char *endpoint);
/* The enroll socket's path. -EINVAL, -ENAMETOOLONG. */
int secclient_set_enroll_socket(secclient *c, const char *path);
/* Timeout of each operation in milliseconds (default 10000; 0 = wait for ever). */
int secclient_set_timeout(secclient *c, unsigned timeout_ms);

/*
 * Enroll over the enroll socket (io.secd.Enroll.Issue): generate an Ed25519
 * key pair in memory, send a CSR, keep the returned certificate and CA,
 * replacing any credentials held before. Enrolled credentials are renewed
 * (by enrolling again) at half of their lifetime, at the next connect or
 * reconnect. Errors: -EACCES secd refused (policy; secclient_last_error()
 * names the reason class), -EAGAIN rate limited (retry later), -EPROTO a
 * malformed request or answer, -ENOENT/-ECONNREFUSED no enroll socket or
 * nobody listening, -ETIMEDOUT. The credentials held before stay on error.
 */
int secclient_enroll(secclient *c);

/*
 * Load PEM credentials (remote clients, `secctl cert issue`): the CA that
 * signed secd's server certificate, the client certificate, and its key
 * (PKCS#8 or the key type's PEM, unencrypted). The library keeps its own
 * copy of the key (wiped on replacement and free); the caller wipes theirs.
 * Loaded credentials are never renewed. -EINVAL, -EBADMSG (unparsable),
 * -EKEYREJECTED (the key is not the certificate's).
 */
int secclient_load_credentials(secclient *c, const char *ca_pem, const char *cert_pem, const char *key_pem);

/* Expiry of the current certificate, microseconds since the epoch; 0 if none. */
uint64_t secclient_cert_expiry(const secclient *c);

/*
 * Connect with mTLS to the data endpoint. Without credentials and with a
 * Unix endpoint, enroll first; with enrolled credentials past half-life,
 * enroll again first (keeping the old certificate while it is valid if that
 * fails). The server must present a certificate chaining to the CA with the
 * TLS server key purpose. The handshake resumes the previous session when
 * secd's ticket is still held. connect then does one PING round trip: with
 * TLS 1.3 the handshake completes before secd has admitted the process, and
 * the round trip turns a refusal into an error here. An open connection is
 * closed first. One attempt, no retries.
 * Errors: -ECONNREFUSED/-ENOENT secd not there; -EACCES refused by secd
 * (its ERROR frame's message, or the enrollment refusal, in
 * secclient_last_error()); -EKEYREJECTED secd's certificate did not
 * verify; -EKEYEXPIRED/-EKEYREVOKED our certificate; -ENOKEY no credentials
 * for a TCP endpoint; -ETIMEDOUT; errors of secclient_enroll().
 */
int secclient_connect(secclient *c);
/* Close the connection (best-effort close_notify); no automatic reconnect until the next connect. */
void secclient_disconnect(secclient *c);

/*
 * A human-readable note on the last failure (secd's ERROR message, an
 * enrollment refusal, a TLS error), or NULL. Valid until the next call on c.
 */
const char *secclient_last_error(const secclient *c);

/*
 * Reconnection. After a successful secclient_connect(), a dropped
 * connection is noticed by the call that meets it: secclient_ping() and
 * secclient_send() first read, without waiting, what secd already sent, so
 * a hang-up or a connection-level ERROR (request id 0) that arrived while
 * the program was idle is seen before they write. Replies that arrived
 * before the drop are still returned by secclient_recv(); requests left
 * unanswered by it are lost. Then:
 *   - A drop for a transient reason (hang-up, ERROR IDLE_TIMEOUT or
 *     SHUTTING_DOWN, CERT_EXPIRED with enrolled credentials): secclient_ping()
 *     and secclient_send() reconnect automatically before using the
 *     connection (renewing the certificate if due, resuming the TLS
 *     session): up to 5 attempts, the first at once, then after delays
 *     doubling from 100 ms and capped at 5 s, each with equal jitter (half
 *     fixed, half random). Attempts stop early on a non-transient failure.
 *   - secclient_ping() also retries once on a fresh connection when the
 *     drop happens during its own round trip (PING is idempotent). A frame
 *     given to secclient_send() is never sent twice.
 *   - A drop for a refusal (ERROR NOT_ADMITTED, CERT_REVOKED, an expired
 *     loaded certificate) or a refused reconnect: no automatic reconnection;
 *     ping and send return that errno until the next secclient_connect().
 *   - secclient_recv() never reconnects: it returns -ENOTCONN once the
 *     connection is gone and no reply is left.
 * secclient_connect() itself makes one attempt.
 */

/*
 * PING round trip with payload (≤ SECCLIENT_PING_MAX bytes) echoed back: 0
 * when the echo matched, -EBADMSG if not.
 */
int secclient_ping(secclient *c, const void *payload, size_t len);

/*
 * Pipelined requests: send one frame of type (a request type, below
 * SECCLIENT_REPLY_BIT), getting its request id (ids are unique per handle,
 * never 0); receive replies in any order. secclient_recv() returns the
 * reply's type, its request id and a malloc'd payload (the caller frees it;
 * never NULL, even when *ret_len is 0). Replies that arrived while
 * secclient_ping() waited for its PONG are kept and returned first.
 * An ERROR reply (type SECCLIENT_FRAME_ERROR) is returned like any other,
 * its message also in secclient_last_error(); secclient_error_parse()
 * decodes it. An ERROR with request id 0 concerns the connection, which
 * secd then closes. Payloads over 16 MiB: -EMSGSIZE; -ENOTCONN without a
 * connection; -ETIMEDOUT when no reply came in time (the connection stays
 * usable).
 */
int secclient_send(secclient *c, uint8_t type, const void *payload, size_t len, uint32_t *ret_request_id);
int secclient_recv(secclient *c, uint8_t *ret_type, uint32_t *ret_request_id, void **ret_payload,
                   size_t *ret_len);
/*
 * Decode an ERROR payload: its code (docs/protocol.md) and its message
 * (malloc'd; ret_message may be NULL if unwanted). -EBADMSG if malformed.
 */
int secclient_error_parse(const void *payload, size_t len, uint16_t *ret_code, char **ret_message);

/*
 * Credential hand-over to a child over an inherited socketpair fd (either
 * SOCK_SEQPACKET, one message, or SOCK_STREAM): a 4-byte big-endian length
 * and a JSON bundle {"ca_cert","client_cert","client_key"} (PEM), at most
 * 64 KiB, every copy wiped after use, never through argv, the environment or
 * a file. The receiver's credentials are not renewed (they name the
 * sender's identity); the sender may send again after renewing.
 * send: -ENOKEY without credentials. recv: -EMSGSIZE over 64 KiB, -EBADMSG
 * truncated or malformed (nothing installed), -ETIMEDOUT.
 * Both: -ESOCKTNOSUPPORT for other socket types, -EBADF.
 */
int secclient_creds_send(const secclient *c, int fd);
int secclient_creds_recv(secclient *c, int fd);

/*
 * ---------------------------------------------------------------------------
 * Relay and key server (docs/protocol.md). A mailbox is addressed by a
 * 32-byte Ed25519 public key; the caller holds the identity's 32-byte
 * private seed (secclient_identity_generate()). These calls need a
 * connection (secclient_connect()) and reconnect like secclient_send()
 * does; after an automatic reconnection the library registers the mailbox
 * again by itself. They must not be mixed with secclient_send()/recv()
 * requests still in flight on the same handle.
 * Errors of secd map to: -EPERM NOT_OWNER, -EBUSY MAILBOX_BUSY or BUSY,
 * -ENXIO NO_SUCH_MAILBOX, -EDQUOT QUOTA_EXCEEDED, -EAGAIN RATE_LIMITED,
 * -EMSGSIZE MESSAGE_TOO_LARGE, -ENODATA NO_KEYS, -EBADMSG BAD_SIGNATURE
 * or a malformed reply, -ENOTCONN NOT_REGISTERED, -EEXIST ALREADY_REGISTERED
 * (this connection serves another mailbox); the message is in
 * secclient_last_error().
 * ---------------------------------------------------------------------------
 */

#define SECCLIENT_KEY_SIZE 32           /* Ed25519 and X25519 public keys, Ed25519 seeds */
#define SECCLIENT_SIGNATURE_SIZE 64
#define SECCLIENT_MSG_ID_SIZE 16
#define SECCLIENT_FETCH_MAX 1000        /* messages per fetch */
#define SECCLIENT_ONE_TIME_MAX 100      /* one-time pre-keys per publish */

/* A new Ed25519 identity: random seed (keep it secret; wipe it) and its public key. */
int secclient_identity_generate(uint8_t seed[SECCLIENT_KEY_SIZE], uint8_t public_key[SECCLIENT_KEY_SIZE]);
/* The public key (mailbox address) of a seed. */
int secclient_identity_public(const uint8_t seed[SECCLIENT_KEY_SIZE], uint8_t public_key[SECCLIENT_KEY_SIZE]);

/*
 * REGISTER this connection as the consumer of the seed's mailbox (created on
 * first use, owned by this certificate's identity): signs this TLS
 * session's channel binding. The library keeps a copy of the seed (wiped on
 * free) to register again after a reconnection. *ret_created (may be NULL)
 * is 1 when the mailbox was created now.
 */
int secclient_register(secclient *c, const uint8_t seed[SECCLIENT_KEY_SIZE], int *ret_created);

/*
 * A new client message id: the current time (microseconds since the Unix
 * epoch, 8 bytes big-endian), then 8 random bytes. Unique for a sender, and
 * ordered by time: secd keeps (sender, client_msg_id) in an index for the
 * message's TTL, and ids that grow go to its end, where one page takes a
 * whole batch of them (random ids cost secd one random page write per
 * message). The time is no secret from secd, which records when each
 * message arrived. Returns 0, or -EIO if the random generator failed.
 */
int secclient_msg_id_generate(uint8_t client_msg_id[SECCLIENT_MSG_ID_SIZE]);

/*
 * SEND one message (1 byte .. secd's relay_message_max) to recipient.
 * client_msg_id NULL: a new one from secclient_msg_id_generate(); pass your
 * own (from it) to be able to retry. Returns 0 only once secd stored it
 * durably; *ret_server_id (may be NULL) is its server id. Sending the same
 * client_msg_id again (after an error or a lost reply) never stores it
 * twice: secd answers with the first one's id, and *ret_duplicate (may be
 * NULL) is 1. A send that failed with a transport error can be retried
 * with the same client_msg_id.
 */
int secclient_relay_send(secclient *c, const uint8_t recipient[SECCLIENT_KEY_SIZE],
                         const uint8_t client_msg_id[SECCLIENT_MSG_ID_SIZE], const void *data, size_t len,
                         uint64_t *ret_server_id, int *ret_duplicate);

typedef struct secclient_message {
        uint64_t id;                                    /* server id: order of arrival */
        uint8_t client_msg_id[SECCLIENT_MSG_ID_SIZE];
        uint64_t received_usec;                         /* CLOCK_REALTIME */
        size_t len;                                     /* >= 1 */
        uint8_t *data;
} secclient_message;

/*
 * FETCH pending messages of the registered mailbox, in order: at most
 * max_count (1..SECCLIENT_FETCH_MAX), about max_bytes (0: as many as one
 * reply holds; the first message always comes), waiting up to wait_ms for
 * one to arrive when none is pending (0: do not wait; secd caps the wait).
 * Messages already returned by an earlier fetch on this handle (the
 * handle sends the highest server id it returned as a cursor, kept across
 * reconnections, reset when another mailbox is registered) are not
 * returned again, even when they are not acknowledged yet: a fetch waits
 * up to wait_ms for a new message instead (at-least-once on the wire, once
 * to the caller). A new handle starts again with every unacknowledged
 * message. *ret is a malloc'd array (NULL when *ret_n is 0): free it with
 * secclient_messages_free().
 */
int secclient_relay_fetch(secclient *c, unsigned max_count, size_t max_bytes, unsigned wait_ms,
                          secclient_message **ret, size_t *ret_n);
void secclient_messages_free(secclient_message *m, size_t n);

/* ACK (delete) messages by server id, 1..SECCLIENT_FETCH_MAX ids; *ret_deleted (may be NULL). */
int secclient_relay_ack(secclient *c, const uint64_t *ids, size_t n, unsigned *ret_deleted);

/* X25519 key pair for pre-keys (private part: wipe it after use). */
int secclient_x25519_generate(uint8_t private_key[SECCLIENT_KEY_SIZE], uint8_t public_key[SECCLIENT_KEY_SIZE]);

typedef struct secclient_prekey {
        uint32_t id;
        uint8_t public_key[SECCLIENT_KEY_SIZE];
} secclient_prekey;

/*
 * KEYS_PUBLISH for the registered mailbox: the identity X25519 key, the
 * signed pre-key (id, X25519 public key) and 0..SECCLIENT_ONE_TIME_MAX
 * one-time pre-keys, which replace what secd held. The library signs with
 * the registered seed. *ret_stored (may be NULL) is the one-time count stored.
 */
int secclient_keys_publish(secclient *c, const uint8_t identity_dh[SECCLIENT_KEY_SIZE], uint32_t signed_prekey_id,
                           const uint8_t signed_prekey[SECCLIENT_KEY_SIZE], const secclient_prekey *one_time,
                           size_t n_one_time, unsigned *ret_stored);

typedef struct secclient_bundle {
        uint8_t identity_key[SECCLIENT_KEY_SIZE];       /* Ed25519, = the mailbox address */
        uint8_t identity_dh[SECCLIENT_KEY_SIZE];        /* X25519 */
        uint32_t signed_prekey_id;
        uint8_t signed_prekey[SECCLIENT_KEY_SIZE];      /* X25519 */
        int has_one_time;                               /* 0 when the mailbox ran out */
        secclient_prekey one_time;
} secclient_bundle;

/*
 * KEYS_BUNDLE for mailbox: the library checks that it is the mailbox asked
 * for and verifies both signatures (-EBADMSG otherwise: never use such a
 * bundle). The one-time pre-key handed out is gone from secd.
 */
int secclient_keys_bundle(secclient *c, const uint8_t mailbox[SECCLIENT_KEY_SIZE], secclient_bundle *ret);
/* KEYS_COUNT: one-time pre-keys left for the registered mailbox. */
int secclient_keys_count(secclient *c, unsigned *ret_count);

#ifdef __cplusplus
}
#endif

#endif
