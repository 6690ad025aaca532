/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <sys/random.h>

#include "ed25519-order.h"
#include "relay-limits.h"
#include "relay-proto.h"

/*
 * A bucket is kept as its "theoretical arrival time" (GCRA, the form of a
 * token bucket that needs one integer): tat is when the bucket would be
 * full again. A request at now is allowed when tat - now <= (burst - 1) *
 * interval, and then moves tat one interval further.
 */
typedef struct RateEntry RateEntry;
struct RateEntry {
        RateEntry *chain;               /* next in the hash bucket */
        RateEntry *lru_prev, *lru_next; /* most recently used first */
        uint64_t hash;
        uint64_t tat_usec;
        size_t key_len;
        uint8_t key[];
};

struct RelayRateTable {
        RateEntry **buckets;
        size_t n_buckets;               /* power of two */
        size_t n_entries, capacity;
        RateEntry *lru_head, *lru_tail;
        uint64_t evictions;
        uint8_t hash_key[16];
};

static inline uint64_t rotl64(uint64_t x, unsigned b) {
        return (x << b) | (x >> (64 - b));
}

static inline uint64_t load_le64(const uint8_t *p) {
        uint64_t v = 0;

        for (unsigned i = 0; i < 8; i++)
                v |= (uint64_t) p[i] << (8 * i);
        return v;
}

#define SIP_ROUND(v0, v1, v2, v3)                                                            \
        do {                                                                                 \
                v0 += v1; v1 = rotl64(v1, 13); v1 ^= v0; v0 = rotl64(v0, 32);                \
                v2 += v3; v3 = rotl64(v3, 16); v3 ^= v2;                                     \
                v0 += v3; v3 = rotl64(v3, 21); v3 ^= v0;                                     \
                v2 += v1; v1 = rotl64(v1, 17); v1 ^= v2; v2 = rotl64(v2, 32);                \
        } while (0)

uint64_t relay_siphash24(const uint8_t key[16], const void *data, size_t len) {
        const uint8_t *p = data;
        uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
        uint64_t v0 = k0 ^ UINT64_C(0x736f6d6570736575), v1 = k1 ^ UINT64_C(0x646f72616e646f6d);
        uint64_t v2 = k0 ^ UINT64_C(0x6c7967656e657261), v3 = k1 ^ UINT64_C(0x7465646279746573);
        uint64_t m, last = (uint64_t) (len & 0xff) << 56;
        size_t whole = len - (len % 8);

        for (size_t i = 0; i < whole; i += 8) {
                m = load_le64(p + i);
                v3 ^= m;
                SIP_ROUND(v0, v1, v2, v3);
                SIP_ROUND(v0, v1, v2, v3);
                v0 ^= m;
        }
        for (size_t i = 0; i < len % 8; i++)
                last |= (uint64_t) p[whole + i] << (8 * i);
        v3 ^= last;
        SIP_ROUND(v0, v1, v2, v3);
        SIP_ROUND(v0, v1, v2, v3);
        v0 ^= last;
        v2 ^= 0xff;
        for (unsigned i = 0; i < 4; i++)
                SIP_ROUND(v0, v1, v2, v3);
        return v0 ^ v1 ^ v2 ^ v3;
}

bool relay_ed25519_key_is_weak(const uint8_t key[32]) {
        return ed25519_key_is_small_order(key);
}

int relay_rate_table_new(size_t capacity, RelayRateTable **ret) {
        RelayRateTable *t;
        size_t n = 16;

        if (capacity < 1 || capacity > RELAY_RATE_TABLE_CAPACITY_MAX)
                return -EINVAL;
        while (n < capacity)
                n *= 2;
        t = calloc(1, sizeof *t);
        if (!t)
                return -ENOMEM;
        t->buckets = calloc(n, sizeof *t->buckets);
        if (!t->buckets) {
                free(t);
                return -ENOMEM;
        }
        t->n_buckets = n;
        t->capacity = capacity;
        /* Not secret for long, but unknown to peers: enough against chosen collisions. */
        if (getrandom(t->hash_key, sizeof t->hash_key, 0) != (ssize_t) sizeof t->hash_key) {
                free(t->buckets);
                free(t);
                return -EIO;
        }
        *ret = t;
        return 0;
}

RelayRateTable *relay_rate_table_free(RelayRateTable *t) {
        RateEntry *e, *next;

        if (!t)
                return NULL;
        for (e = t->lru_head; e; e = next) {
                next = e->lru_next;
                free(e);
        }
        free(t->buckets);
        free(t);
        return NULL;
}

static void lru_unlink(RelayRateTable *t, RateEntry *e) {
        if (e->lru_prev)
                e->lru_prev->lru_next = e->lru_next;
        else
                t->lru_head = e->lru_next;
        if (e->lru_next)
                e->lru_next->lru_prev = e->lru_prev;
        else
                t->lru_tail = e->lru_prev;
        e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(RelayRateTable *t, RateEntry *e) {
        e->lru_prev = NULL;
        e->lru_next = t->lru_head;
        if (t->lru_head)
                t->lru_head->lru_prev = e;
        t->lru_head = e;
        if (!t->lru_tail)
                t->lru_tail = e;
}

static void entry_remove(RelayRateTable *t, RateEntry *e) {
        RateEntry **pp = &t->buckets[e->hash & (t->n_buckets - 1)];

        while (*pp && *pp != e)
                pp = &(*pp)->chain;
        if (*pp)
                *pp = e->chain;
        lru_unlink(t, e);
        t->n_entries--;
        free(e);
}

static RateEntry *entry_find(RelayRateTable *t, uint64_t hash, const void *key, size_t key_len) {
        for (RateEntry *e = t->buckets[hash & (t->n_buckets - 1)]; e; e = e->chain)
                if (e->hash == hash && e->key_len == key_len && memcmp(e->key, key, key_len) == 0)
                        return e;
        return NULL;
}

int relay_rate_check(RelayRateTable *t, const void *key, size_t key_len, const RelayRate *rate, uint64_t now_usec,
                     bool take, uint64_t *ret_retry_usec) {
        return relay_rate_check_n(t, key, key_len, rate, 1, now_usec, take, ret_retry_usec);
}

int relay_rate_check_n(RelayRateTable *t, const void *key, size_t key_len, const RelayRate *rate, uint64_t cost,
                       uint64_t now_usec, bool take, uint64_t *ret_retry_usec) {
        uint64_t hash, tat, tolerance, extra, need;
        RateEntry *e;

        if (!key || key_len == 0 || key_len > RELAY_RATE_KEY_MAX || cost == 0)
                return -EINVAL;
        if (rate->interval_usec == 0)
                return 1;

        hash = relay_siphash24(t->hash_key, key, key_len);
        e = entry_find(t, hash, key, key_len);
        tat = e ? MAX(e->tat_usec, now_usec) : now_usec;
        /* Saturate: a huge burst, interval or cost must not wrap. */
        if (__builtin_mul_overflow(MAX(rate->burst, UINT64_C(1)) - 1, rate->interval_usec, &tolerance))
                tolerance = UINT64_MAX;
        /* cost tokens at once: the last of them must conform (GCRA with a weight). */
        if (__builtin_mul_overflow(cost - 1, rate->interval_usec, &extra) ||
            __builtin_add_overflow(tat - now_usec, extra, &need))
                need = UINT64_MAX;
        if (need > tolerance) {
                if (ret_retry_usec)
                        *ret_retry_usec = need == UINT64_MAX ? UINT64_MAX : need - tolerance;
                if (e) {
                        lru_unlink(t, e);
                        lru_push_front(t, e);
                }
                return 0;
        }
        if (!take)
                return 1;

        if (!e) {
                if (t->n_entries >= t->capacity) {
                        entry_remove(t, t->lru_tail);
                        t->evictions++;
                }
                e = calloc(1, sizeof *e + key_len);
                if (!e)
                        return -ENOMEM;
                e->hash = hash;
                e->key_len = key_len;
                memcpy(e->key, key, key_len);
                e->chain = t->buckets[hash & (t->n_buckets - 1)];
                t->buckets[hash & (t->n_buckets - 1)] = e;
                t->n_entries++;
        } else
                lru_unlink(t, e);
        lru_push_front(t, e);
        if (__builtin_mul_overflow(cost, rate->interval_usec, &extra) || tat > UINT64_MAX - extra)
                e->tat_usec = UINT64_MAX;
        else
                e->tat_usec = tat + extra;
        return 1;
}

void relay_rate_table_stats(const RelayRateTable *t, RelayRateTableStats *ret) {
        *ret = (RelayRateTableStats) {
                .entries = t->n_entries,
                .capacity = t->capacity,
                .evictions = t->evictions,
        };
}

void relay_fetch_clamp(uint16_t max_count, uint32_t max_bytes, uint32_t wait_ms, size_t limit_count,
                       uint64_t frame_payload_max, uint64_t wait_max_usec, RelayFetchLimits *ret) {
        uint64_t room = 1, wait;

        /* Blob bytes one reply can carry next to the count and one item header. */
        if (frame_payload_max > RELAY_FETCH_REPLY_HEADER_SIZE + RELAY_FETCH_ITEM_HEADER_SIZE)
                room = frame_payload_max - RELAY_FETCH_REPLY_HEADER_SIZE - RELAY_FETCH_ITEM_HEADER_SIZE;
        wait = (uint64_t) wait_ms * 1000;
        *ret = (RelayFetchLimits) {
                .max_count = MAX(MIN((size_t) max_count, limit_count), (size_t) 1),
                .max_bytes = (size_t) MAX(MIN((uint64_t) max_bytes, room), UINT64_C(1)),
                .wait_usec = MIN(wait, wait_max_usec),
        };
}

size_t relay_fetch_fit(const size_t *blob_sizes, size_t n, uint64_t frame_payload_max) {
        uint64_t total = RELAY_FETCH_REPLY_HEADER_SIZE;
        size_t i;

        if (frame_payload_max < total)
                return 0;
        for (i = 0; i < n; i++) {
                uint64_t item;

                /* Compare before adding: a size near the top of the range must not wrap. */
                if (frame_payload_max < RELAY_FETCH_ITEM_HEADER_SIZE ||
                    (uint64_t) blob_sizes[i] > frame_payload_max - RELAY_FETCH_ITEM_HEADER_SIZE)
                        break;
                item = RELAY_FETCH_ITEM_HEADER_SIZE + (uint64_t) blob_sizes[i];
                if (item > frame_payload_max - total)
                        break;
                total += item;
        }
        return i;
}
