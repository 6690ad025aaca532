/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * GnuTLS for the data and tcp endpoints: one priority cache (TLS 1.3 only,
 * AES-128-GCM first), a session ticket key replaced on a timer, server
 * sessions that require and verify a client certificate with the TLS
 * client key purpose. The I/O itself (non-blocking, driven by the event
 * loop) is data.c's; docs/protocol.md states the parameters for clients.
 */

#include <gnutls/gnutls.h>
#include <systemd/sd-event.h>

#include "ca.h"

/*
 * TLS 1.3 only. AES-128-GCM before AES-256-GCM before ChaCha20-Poly1305,
 * and the server's order wins (clients with AES instructions and without
 * ask differently; on our hosts AES-GCM is the fast one).
 */
#define TLS_PRIORITY                                                                           \
        "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:" \
        "%SERVER_PRECEDENCE"

/* Lifetime of a session ticket (GnuTLS also rotates its internal ticket keys on this period). */
#define TLS_TICKET_LIFETIME_SEC 3600
/* How often secd replaces the master ticket key: tickets older than this stop resuming. */
#ifndef TLS_TICKET_KEY_ROTATE_USEC /* a test build may shorten it */
#define TLS_TICKET_KEY_ROTATE_USEC (UINT64_C(6) * 3600 * 1000000)
#endif

typedef struct TlsServer TlsServer;

int tls_server_new(sd_event *event, TlsServer **ret);
TlsServer *tls_server_free(TlsServer *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(TlsServer *, tls_server_free);

/* Replace the ticket key now (the timer does this every TLS_TICKET_KEY_ROTATE_USEC). */
int tls_server_rotate_ticket_key(TlsServer *s);

/*
 * A server session on the connected, non-blocking fd with these
 * credentials (the caller keeps creds referenced for the session's life).
 * It sends no session ticket by itself: the caller sends one with
 * gnutls_session_ticket_send() once the client is admitted.
 */
int tls_session_new(TlsServer *s, gnutls_certificate_credentials_t creds, int fd, gnutls_session_t *ret);

/*
 * After the handshake (full or resumed): the client certificate's secd
 * identity. A full handshake's certificate was verified by GnuTLS inside
 * the handshake (chain to the CA, validity, TLS client purpose) and its
 * verdict is read here; a resumed session's came from a ticket only this
 * process can make, and only its expiry is checked again. -EPERM with a
 * reason if it does not verify; -EBADMSG if it carries no secd identity.
 */
int tls_session_peer_identity(gnutls_session_t s, CertIdentity *ret, const char **ret_reason);

/* "TLS1.3 AES-128-GCM" and the like, for logs. Static or session-owned. */
const char *tls_session_cipher(gnutls_session_t s);

/* A GnuTLS error as a negative errno (the caller logs gnutls_strerror()). */
int tls_error_to_errno(int gnutls_error);
