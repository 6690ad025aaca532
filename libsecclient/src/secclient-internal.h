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
