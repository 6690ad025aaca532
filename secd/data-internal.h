/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What the relay and the key server (relay.c, keys.c) need from a data or
 * tcp session (data.c), and nothing more: who the peer is, its TLS session
 * (for the channel binding), a slot for the per-connection relay state, and
 * a way to queue replies, also later, from a writer completion. Loop
 * thread only.
 */

#include <gnutls/gnutls.h>

#include "ca.h"
#include "data.h"

typedef struct RelaySession RelaySession;

Manager *data_connection_manager(const DataConnection *c);
/* The number in log lines ("data #12"). */
uint64_t data_connection_id(const DataConnection *c);
/* "data" or "tcp". */
const char *data_connection_endpoint(const DataConnection *c);
/* The verified client certificate's identity (an open session always has one). */
const CertIdentity *data_connection_cert(const DataConnection *c);
gnutls_session_t data_connection_session(const DataConnection *c);

/*
 * The connection's relay state, NULL until its first relay frame; owned by
 * the relay (relay_session_free() is called when the connection goes).
 */
RelaySession **data_connection_relay(DataConnection *c);

/* True while replies can still be sent (not closing). */
bool data_connection_is_open(const DataConnection *c);

/*
 * Queue a reply frame (type: the request's | FRAME_REPLY_BIT) and make
 * sure it is flushed soon, also when called outside the connection's own
 * I/O callback (a writer completion). Nothing is sent once the connection
 * is closing. Never frees c: safe to call from anywhere on the loop.
 * -ENOMEM: the connection is failed (closed with INTERNAL).
 */
int data_connection_reply(DataConnection *c, uint8_t type, uint32_t request_id, const void *payload, uint32_t len);
/* The same with an ERROR frame; the connection lives. */
void data_connection_error(DataConnection *c, uint32_t request_id, uint16_t code, const char *message);

/* Restart the idle timeout: the connection is doing something (a long poll answered). */
void data_connection_touch(DataConnection *c);
