/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Shared by relay.c and keys.c only: the per-connection relay state, the
 * writer jobs and their bookkeeping. Loop thread only, except a job's
 * run(), which runs on the writer thread and must touch nothing but the
 * job's own fields (copied in at submission).
 */

#include "data-internal.h"
#include "relay-limits.h"
#include "relay-proto.h"
#include "relay.h"
#include "writer.h"

/* Requests one connection may have in flight (jobs queued or running); over: BUSY. */
#define RELAY_INFLIGHT_MAX 256
/* SEND blobs one connection, and all together, may hold in memory waiting for the writer; over: BUSY. */
#define RELAY_INFLIGHT_BYTES_MAX (UINT64_C(16) << 20)
#define RELAY_INFLIGHT_BYTES_TOTAL_MAX (UINT64_C(256) << 20)
/* Buckets of each rate-limit table (LRU beyond). */
#define RELAY_RATE_TABLE_ENTRIES 16384
/*
 * Requests with Ed25519 checks (REGISTER: one, KEYS_PUBLISH: two) one
 * principal may make: a check costs the loop tens of microseconds for a
 * 96-byte frame, so a cheap flood of bad proofs must not take the loop.
 * Generous for real clients (one REGISTER per connection, hundreds of
 * connections at once).
 */
#define RELAY_VERIFY_INTERVAL_USEC (UINT64_C(1000000) / 500)
#define RELAY_VERIFY_BURST 1000
/*
 * Store work one principal may ask for with FETCH, ACK and KEYS_COUNT
 * (SEND and KEYS_BUNDLE have rates of their own): every request costs a
 * token, an ACK one more per RELAY_WORK_ACK_IDS ids. The writer is one
 * thread shared by everybody: without this, one principal with many
 * connections could keep it busy with ACKs of made-up ids and stall every
 * other client's durable replies. Far above what a real consumer needs
 * (the relay bench's consumers use a few hundred per second).
 */
#define RELAY_WORK_INTERVAL_USEC (UINT64_C(1000000) / 5000)
#define RELAY_WORK_BURST 10000
#define RELAY_WORK_ACK_IDS 64
/* Hash buckets of the consumer map (DATA_CONNECTIONS_MAX is 4096). */
#define RELAY_CONSUMER_BUCKETS 4096
/* The expiry sweep deletes this many per job, and at most this many jobs per run. */
#define RELAY_SWEEP_CHUNK 1000
#define RELAY_SWEEP_CHUNKS_MAX 100
/* "uid:4294967295" or "cert:" + a 64-character remote name. */
#define RELAY_PRINCIPAL_MAX 80

typedef struct RelayJob RelayJob;

/* Writer thread: the store calls of the job, on its own fields only. */
typedef int (*RelayJobRun)(Db *db, RelayJob *j);
/*
 * Loop thread, after the commit: r is run()'s result or the commit's
 * error. j->session is NULL when the connection went away meanwhile (then
 * reply to nobody; shared effects such as counters still apply). Must
 * free what the job owns besides itself; the job is freed afterwards.
 */
typedef void (*RelayJobDone)(RelayJob *j, int r);

struct RelayJob {
        Relay *relay;
        RelaySession *session;          /* NULL: detached (closed connection, or the sweep) */
        RelayJob *prev, *next;          /* in session->jobs */
        RelayJobRun run;
        RelayJobDone done;
        uint8_t type;                   /* the request's frame type */
        uint32_t request_id;
        size_t bytes;                   /* in-flight budget held (SEND blob) */
};

struct RelaySession {
        Relay *relay;
        DataConnection *conn;
        char principal[RELAY_PRINCIPAL_MAX];

        /* REGISTER: the key is in the consumer map from the moment it is reserved. */
        bool registering, registered, in_map;
        uint8_t key[RELAY_KEY_SIZE];
        int64_t mailbox_id;
        RelaySession *consumer_next;

        RelayJob *jobs;
        size_t n_jobs;
        uint64_t bytes;

        /* At most one FETCH per connection: running (a job), or parked (waiting for a message). */
        bool fetch_running, fetch_parked, fetch_woken, fetch_waited;
        uint32_t fetch_request_id;
        RelayFetchLimits fetch;
        int64_t fetch_after_id;         /* the FETCH's cursor: only server ids above it */
        uint64_t fetch_deadline;        /* CLOCK_MONOTONIC */
        sd_event_source *fetch_timer;
};

struct Relay {
        Manager *manager;
        RelaySession *consumers[RELAY_CONSUMER_BUCKETS];
        uint8_t hash_key[16];
        RelayRateTable *send_sender, *send_recipient, *bundle_requester, *bundle_pair, *bundle_mailbox, *verify, *work;
        sd_event_source *sweep_timer;
        bool sweep_running;
        unsigned sweep_chunks;
        uint64_t inflight_bytes;
        RelayCounters counters;
        KeysCounters keys;
};

/*
 * Refuse a request with an ERROR frame (the connection lives), counted by
 * reason under the relay's or the key server's refusals (by type), and
 * logged at debug level only: a peer must not be able to flood the journal.
 */
int relay_refuse(RelaySession *s, uint8_t type, uint32_t request_id, uint16_t code, const char *message);
/* Queue a reply (type | FRAME_REPLY_BIT) for request_id. Both return 0: the request is answered. */
int relay_reply(RelaySession *s, uint8_t type, uint32_t request_id, const void *payload, uint32_t len);

/*
 * An unexpected store or writer error for a request: logged as a warning
 * (at most 10 a minute) and answered INTERNAL (SHUTTING_DOWN after the
 * writer stopped). s may be NULL (the sweep): then only logged.
 */
int relay_internal_error(RelaySession *s, uint8_t type, uint32_t request_id, int error);

/*
 * Take ownership of j (calloc'd by the caller, run/done/type/request_id
 * filled in, bytes set for a SEND) and queue it on the writer. On failure
 * j is freed, done() is not called, the peer got its ERROR (BUSY when over
 * a bound or the writer's queue is full) and a negative errno is returned,
 * so the caller only undoes its own state.
 */
int relay_job_submit(RelaySession *s, RelayJob *j);

/* May this connection queue another job holding bytes? (Checked by relay_job_submit() too.) */
bool relay_session_has_room(const RelaySession *s, uint64_t bytes);

/* Ed25519 signature check (nettle); false for anything that does not verify. */
bool relay_ed25519_verify(const uint8_t key[RELAY_KEY_SIZE], const uint8_t *msg, size_t len,
                          const uint8_t sig[RELAY_SIGNATURE_SIZE]);

/* Rate check of two buckets together: both allowed, then both taken. 1, 0 (limited, *ret_retry_usec), <0. */
int relay_rate_check2(RelayRateTable *a, const void *ka, size_t la, const RelayRate *ra, RelayRateTable *b,
                      const void *kb, size_t lb, const RelayRate *rb, uint64_t *ret_retry_usec);

/* May this connection's principal have its signatures checked now? If not: refused (RATE_LIMITED), false. */
bool relay_verify_allowed(RelaySession *s, uint8_t type, uint32_t request_id);
/* Take cost store-work tokens of this principal, or answer RATE_LIMITED (false). */
bool relay_work_allowed(RelaySession *s, uint8_t type, uint32_t request_id, unsigned cost);

/* keys.c: KEYS_PUBLISH, KEYS_BUNDLE, KEYS_COUNT. */
void keys_handle_frame(RelaySession *s, const FrameHeader *h, const uint8_t *payload);
