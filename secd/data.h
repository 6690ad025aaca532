/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The data protocol on the data (Unix) and tcp endpoints: mTLS sessions
 * (tls.c) carrying frames (common/frame.h, docs/protocol.md), admitted
 * after the handshake by the certificate and, on the Unix endpoint, by the
 * live process behind the socket.
 */

#include "manager.h"

/*
 * Close every live session whose client certificate has this serial (32
 * lower-case hex characters), with an ERROR CERT_REVOKED frame. Call after
 * a revocation has been committed.
 */
void data_connections_revoked(Manager *m, const char *serial_hex);

/* A connection accepted on the data or tcp endpoint (fd is consumed). */
int data_connection_new(Manager *m, PolicyEndpoint kind, int fd);

/* SIGTERM: send SHUTTING_DOWN to every open session and close them all. */
void data_stop(Manager *m);

/* Free every session (manager_free()). */
void data_free_all(Manager *m);
