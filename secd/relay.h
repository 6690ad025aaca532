/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The relay (REGISTER, SEND, FETCH, ACK; relay.c) and the key server
 * (KEYS_PUBLISH, KEYS_BUNDLE, KEYS_COUNT; keys.c) on the data and tcp
 * endpoints. Payloads: common/relay-proto.h and docs/protocol.md; the
 * design is in docs/architecture.md ("Relay and key server").
 *
 * Every store access is a job of the group-commit writer (writer.h): a
 * reply that says "stored" or "deleted" is sent only from the job's
 * completion, after its COMMIT returned. Per-connection state (the
 * registered mailbox, jobs in flight, a waiting FETCH) lives in a
 * RelaySession that the connection owns; the Relay holds what is shared
 * on the loop: the map of mailbox consumers, the rate limiters, the
 * expiry sweep and the counters. Loop thread only.
 */

#include "frame.h"
#include "manager.h"

typedef struct Relay Relay;
typedef struct RelaySession RelaySession;

/* Refusals (ERROR replies to relay and key-server frames), by reason. */
typedef struct RelayRefusals {
        uint64_t bad_payload;
        uint64_t not_registered;
        uint64_t bad_signature;
        uint64_t not_owner;
        uint64_t mailbox_busy;
        uint64_t no_such_mailbox;
        uint64_t quota_exceeded;
        uint64_t rate_limited;
        uint64_t message_too_large;
        uint64_t no_keys;
        uint64_t busy;
        uint64_t already_registered;
        uint64_t internal;
} RelayRefusals;

/* Since start. */
typedef struct RelayCounters {
        uint64_t registered;            /* REGISTERs accepted */
        uint64_t mailboxes_created;
        uint64_t stored;                /* messages stored (durable) */
        uint64_t duplicates;            /* resends answered with the stored id */
        uint64_t fetched;               /* messages handed out by FETCH (again after a re-fetch) */
        uint64_t acked;                 /* messages deleted by ACK */
        uint64_t expired;               /* messages deleted by the TTL sweep */
        uint64_t fetch_waits;           /* FETCHes that waited for a message */
        RelayRefusals refused;
} RelayCounters;

typedef struct KeysCounters {
        uint64_t published;             /* KEYS_PUBLISH stored */
        uint64_t bundles;               /* KEYS_BUNDLE served */
        uint64_t bundles_without_otk;   /* of those, without a one-time pre-key (exhausted) */
        RelayRefusals refused;
} KeysCounters;

/* Set up the shared state and arm the expiry sweep (it runs on m->writer). */
int relay_new(Manager *m, Relay **ret);
/*
 * Call after every connection and the writer are gone (writer_free()
 * dispatches the last completions, which still count into the relay).
 */
Relay *relay_free(Relay *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(Relay *, relay_free);

/* Is this request type one of the relay's or key server's (0x10-0x13, 0x20-0x22)? */
bool relay_frame_type(uint8_t type);

/*
 * Handle one request frame of such a type on an open connection. Replies
 * (or ERROR frames) are queued on the connection now or from a writer
 * completion later; the connection always lives on.
 */
void relay_handle_frame(DataConnection *c, const FrameHeader *h, const uint8_t *payload);

/*
 * The connection is going away: give up its mailbox, cancel its waiting
 * FETCH and detach its jobs in flight (their completions then only free
 * them). NULL-safe; returns NULL.
 */
RelaySession *relay_session_free(RelaySession *s);

/* A FETCH is waiting or requests are in flight: the idle timeout does not apply. */
bool relay_session_busy(const RelaySession *s);

const RelayCounters *relay_get_counters(const Relay *r);
const KeysCounters *relay_get_keys_counters(const Relay *r);
