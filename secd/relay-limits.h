/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The relay's and key server's pure limits (no I/O, no clock of their own,
 * no logging), so the unit tests drive them directly
 * (tests/unit/test-relay-limits.c):
 *
 *  - RelayRateTable: token buckets keyed by bytes (a principal, a mailbox
 *    key, a requester-target pair) in a table of bounded size. When it is
 *    full the least recently used bucket is evicted, so memory stays
 *    bounded whatever the peers send. Lookups hash with SipHash-2-4 under
 *    a random key, so peer-chosen keys (recipient mailboxes) cannot be
 *    picked to collide.
 *  - The clamping of a FETCH request to what one reply frame holds and to
 *    relay_fetch_wait_max.
 */

#include "macro.h"

/*
 * A rate: one token every interval_usec, at most burst tokens saved up.
 * interval_usec == 0 means no limit.
 */
typedef struct RelayRate {
        uint64_t interval_usec;
        uint64_t burst;                 /* >= 1 */
} RelayRate;

#define RELAY_RATE_KEY_MAX 2048         /* bytes of one bucket's key */
#define RELAY_RATE_TABLE_CAPACITY_MAX (UINT64_C(1) << 20)

typedef struct RelayRateTable RelayRateTable;

/* capacity: 1..RELAY_RATE_TABLE_CAPACITY_MAX buckets (-EINVAL otherwise). */
int relay_rate_table_new(size_t capacity, RelayRateTable **ret);
RelayRateTable *relay_rate_table_free(RelayRateTable *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(RelayRateTable *, relay_rate_table_free);

/*
 * Would a request under key be allowed at now_usec (a monotonic clock)?
 * With take, an allowed request also takes its token (creating the bucket,
 * evicting the least recently used one when the table is full); without,
 * nothing changes. Returns 1 allowed, 0 limited (then *ret_retry_usec, if
 * not NULL, says when a token is due), -EINVAL for an empty or oversized
 * key, -ENOMEM.
 */
int relay_rate_check(RelayRateTable *t, const void *key, size_t key_len, const RelayRate *rate, uint64_t now_usec,
                     bool take, uint64_t *ret_retry_usec);
/*
 * The same for a request worth cost tokens (>= 1, -EINVAL for 0): allowed
 * only if all of them are there; a refused request takes none. A cost above
 * the burst is never allowed.
 */
int relay_rate_check_n(RelayRateTable *t, const void *key, size_t key_len, const RelayRate *rate, uint64_t cost,
                       uint64_t now_usec, bool take, uint64_t *ret_retry_usec);

typedef struct RelayRateTableStats {
        size_t entries;
        size_t capacity;
        uint64_t evictions;
} RelayRateTableStats;
void relay_rate_table_stats(const RelayRateTable *t, RelayRateTableStats *ret);

/*
 * Is this Ed25519 public key one of the points of small order (order 1, 2,
 * 4 or 8), in any encoding (canonical or y >= p, either sign bit)? For
 * a key signatures can be forged without any private key (for the
 * identity, R = identity and S = 0 verifies every message under nettle's
 * check): a proof by it proves nothing, so the relay refuses these keys.
 */
bool relay_ed25519_key_is_weak(const uint8_t key[32]);

/* SipHash-2-4 (Aumasson, Bernstein) of data under a 16-byte key. */
uint64_t relay_siphash24(const uint8_t key[16], const void *data, size_t len);

/*
 * FETCH limits. From what the client asked (max_count 1..1000, max_bytes
 * >= 1, wait_ms), the frame payload maximum and relay_fetch_wait_max:
 * the count for the store (at most limit_count), the blob bytes (at most
 * what one reply frame can carry next to its headers; never below 1, the
 * first pending message always comes) and the wait in usec.
 */
typedef struct RelayFetchLimits {
        size_t max_count;
        size_t max_bytes;
        uint64_t wait_usec;
} RelayFetchLimits;
void relay_fetch_clamp(uint16_t max_count, uint32_t max_bytes, uint32_t wait_ms, size_t limit_count,
                       uint64_t frame_payload_max, uint64_t wait_max_usec, RelayFetchLimits *ret);

/*
 * How many of n messages (blob sizes in order) fit in one FETCH reply of
 * at most frame_payload_max bytes (count header and item headers
 * included): 0 when not even the first does.
 */
size_t relay_fetch_fit(const size_t *blob_sizes, size_t n, uint64_t frame_payload_max);
