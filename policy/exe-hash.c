/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * SHA-256 of executables and the bounded LRU cache in front of it.
 *
 * The file is read with pread() in chunks of up to 1 MiB rather than
 * mmap()ed: the throughput is the same within noise (bench/README.md), and a
 * file truncated under an mmap() would kill the daemon with SIGBUS, while a
 * short pread() is just -ESTALE.
 */

#include <assert.h>
#include <fcntl.h>
#include <nettle/sha2.h>
#include <pthread.h>
#include <sys/random.h>

#include "exe-hash.h"

#define EXE_HASH_CHUNK_SIZE (1U << 20)

typedef struct ExeHashKey {
        uint64_t dev;
        uint64_t ino;
        uint64_t size;
        int64_t mtime_sec;
        int64_t mtime_nsec;
        int64_t ctime_sec;
        int64_t ctime_nsec;
} ExeHashKey;

typedef struct ExeHashEntry {
        ExeHashKey key;
        uint8_t digest[SHA256_DIGEST_LEN];
        uint32_t bucket_next;   /* chain in the hash table */
        uint32_t lru_prev;      /* towards the most recently used */
        uint32_t lru_next;      /* towards the least recently used */
} ExeHashEntry;

#define IDX_NONE UINT32_MAX

struct ExeHashCache {
        pthread_mutex_t lock;
        uint64_t max_file_size;
        uint64_t seed;                  /* keys are partly chosen by users: keep chains random */

        ExeHashEntry *entries;          /* capacity slots; [0, n_entries) are in use */
        size_t capacity;
        size_t n_entries;
        uint32_t *buckets;              /* heads of chains, IDX_NONE if empty */
        size_t n_buckets;               /* power of two */
        uint32_t lru_head;              /* most recently used */
        uint32_t lru_tail;              /* least recently used: evicted first */

        uint64_t hits;
        uint64_t misses;
        uint64_t evictions;
        uint64_t too_large;
};

static int stat_check_regular(const struct stat *st) {
        if (S_ISDIR(st->st_mode))
                return -EISDIR;
        if (!S_ISREG(st->st_mode))
                return -EINVAL;
        if (st->st_size < 0)
                return -EINVAL;
        return 0;
}

static bool stat_same_file_version(const struct stat *a, const struct stat *b) {
        return a->st_dev == b->st_dev &&
                a->st_ino == b->st_ino &&
                a->st_size == b->st_size &&
                a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
                a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
                a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
                a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

int exe_hash_fd(int fd, const struct stat *st, uint64_t max_size, uint8_t ret[SHA256_DIGEST_LEN]) {
        _cleanup_free_ uint8_t *buf = NULL;
        struct sha256_ctx ctx;
        struct stat st_after;
        uint64_t size, offset = 0;
        size_t buf_size;
        uint8_t probe;
        ssize_t n;
        int r;

        if (fd < 0)
                return -EBADF;
        if (!st || !ret)
                return -EINVAL;

        r = stat_check_regular(st);
        if (r < 0)
                return r;
        size = (uint64_t) st->st_size;
        if (size > max_size)
                return -EFBIG;

        /* Small files do not need a 1 MiB buffer; +1 leaves room to notice growth. */
        buf_size = size < EXE_HASH_CHUNK_SIZE ? (size_t) size + 1 : EXE_HASH_CHUNK_SIZE;
        buf = malloc(buf_size);
        if (!buf)
                return -ENOMEM;

        (void) posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);

        sha256_init(&ctx);
        while (offset < size) {
                size_t want = (size_t) MIN((uint64_t) buf_size, size - offset);

                n = pread(fd, buf, want, (off_t) offset);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (n == 0)
                        return -ESTALE;         /* shrank under us */
                sha256_update(&ctx, (size_t) n, buf);
                offset += (uint64_t) n;
        }

        /* One byte past the expected end must be EOF, else the file grew. */
        do
                n = pread(fd, &probe, 1, (off_t) size);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return negative_errno();
        if (n > 0)
                return -ESTALE;

        /* Rewritten in place while we read (same size): the digest would be a mix. */
        if (fstat(fd, &st_after) < 0)
                return negative_errno();
        if (!stat_same_file_version(st, &st_after))
                return -ESTALE;

        sha256_digest(&ctx, SHA256_DIGEST_SIZE, ret);
        return 0;
}

static void key_from_stat(const struct stat *st, ExeHashKey *ret) {
        *ret = (ExeHashKey) {
                .dev = (uint64_t) st->st_dev,
                .ino = (uint64_t) st->st_ino,
                .size = (uint64_t) st->st_size,
                .mtime_sec = (int64_t) st->st_mtim.tv_sec,
                .mtime_nsec = (int64_t) st->st_mtim.tv_nsec,
                .ctime_sec = (int64_t) st->st_ctim.tv_sec,
                .ctime_nsec = (int64_t) st->st_ctim.tv_nsec,
        };
}

static bool key_equal(const ExeHashKey *a, const ExeHashKey *b) {
        return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
                a->mtime_sec == b->mtime_sec && a->mtime_nsec == b->mtime_nsec &&
                a->ctime_sec == b->ctime_sec && a->ctime_nsec == b->ctime_nsec;
}

static uint64_t mix64(uint64_t h, uint64_t v) {
        /* splitmix64 finaliser over a running xor: cheap and well distributed */
        h ^= v + UINT64_C(0x9e3779b97f4a7c15) + (h << 6) + (h >> 2);
        h ^= h >> 30;
        h *= UINT64_C(0xbf58476d1ce4e5b9);
        h ^= h >> 27;
        h *= UINT64_C(0x94d049bb133111eb);
        h ^= h >> 31;
        return h;
}

static size_t key_bucket(const ExeHashCache *c, const ExeHashKey *k) {
        uint64_t h = c->seed;

        h = mix64(h, k->dev);
        h = mix64(h, k->ino);
        h = mix64(h, k->size);
        h = mix64(h, (uint64_t) k->mtime_sec);
        h = mix64(h, (uint64_t) k->mtime_nsec);
        h = mix64(h, (uint64_t) k->ctime_sec);
        h = mix64(h, (uint64_t) k->ctime_nsec);
        return (size_t) (h & (c->n_buckets - 1));
}

int exe_hash_cache_new(size_t capacity, uint64_t max_file_size, ExeHashCache **ret) {
        _cleanup_(exe_hash_cache_freep) ExeHashCache *c = NULL;
        size_t n_buckets = 1;

        if (!ret)
                return -EINVAL;
        if (capacity == 0 || capacity > EXE_HASH_CACHE_ENTRIES_MAX)
                return -EINVAL;

        /* Load factor at most 1/2. */
        while (n_buckets < capacity * 2)
                n_buckets <<= 1;

        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->entries = calloc(capacity, sizeof *c->entries);
        c->buckets = malloc(n_buckets * sizeof *c->buckets);
        if (!c->entries || !c->buckets)
                return -ENOMEM;
        if (getrandom(&c->seed, sizeof c->seed, GRND_NONBLOCK) != (ssize_t) sizeof c->seed)
                c->seed = (uint64_t) (uintptr_t) c ^ UINT64_C(0x5ecd5ecd5ecd5ecd);

        for (size_t i = 0; i < n_buckets; i++)
                c->buckets[i] = IDX_NONE;
        c->capacity = capacity;
        c->n_buckets = n_buckets;
        c->max_file_size = max_file_size;
        c->lru_head = c->lru_tail = IDX_NONE;
        pthread_mutex_init(&c->lock, NULL);

        *ret = TAKE_PTR(c);
        return 0;
}

ExeHashCache *exe_hash_cache_free(ExeHashCache *c) {
        if (!c)
                return NULL;
        /* A half-built cache from exe_hash_cache_new() never initialised the mutex. */
        if (c->capacity > 0)
                pthread_mutex_destroy(&c->lock);
        free(c->entries);
        free(c->buckets);
        free(c);
        return NULL;
}

static void lru_unlink(ExeHashCache *c, uint32_t i) {
        ExeHashEntry *e = &c->entries[i];

        if (e->lru_prev != IDX_NONE)
                c->entries[e->lru_prev].lru_next = e->lru_next;
        else
                c->lru_head = e->lru_next;
        if (e->lru_next != IDX_NONE)
                c->entries[e->lru_next].lru_prev = e->lru_prev;
        else
                c->lru_tail = e->lru_prev;
        e->lru_prev = e->lru_next = IDX_NONE;
}

static void lru_push_front(ExeHashCache *c, uint32_t i) {
        ExeHashEntry *e = &c->entries[i];

        e->lru_prev = IDX_NONE;
        e->lru_next = c->lru_head;
        if (c->lru_head != IDX_NONE)
                c->entries[c->lru_head].lru_prev = i;
        c->lru_head = i;
        if (c->lru_tail == IDX_NONE)
                c->lru_tail = i;
}

static void bucket_unlink(ExeHashCache *c, uint32_t i) {
        uint32_t *p = &c->buckets[key_bucket(c, &c->entries[i].key)];

        while (*p != IDX_NONE) {
                if (*p == i) {
                        *p = c->entries[i].bucket_next;
                        return;
                }
                p = &c->entries[*p].bucket_next;
        }
        assert(false); /* every live entry is on its chain */
}

/* Called with the lock held. */
static uint32_t cache_find(ExeHashCache *c, const ExeHashKey *k) {
        for (uint32_t i = c->buckets[key_bucket(c, k)]; i != IDX_NONE; i = c->entries[i].bucket_next)
                if (key_equal(&c->entries[i].key, k))
                        return i;
        return IDX_NONE;
}

/* Called with the lock held. Moves the slot 'from' (the last in use) into 'to'. */
static void cache_move_slot(ExeHashCache *c, uint32_t from, uint32_t to) {
        ExeHashEntry *e;
        uint32_t *p;

        if (from == to)
                return;
        c->entries[to] = c->entries[from];
        e = &c->entries[to];

        for (p = &c->buckets[key_bucket(c, &e->key)]; *p != from; p = &c->entries[*p].bucket_next)
                assert(*p != IDX_NONE);
        *p = to;

        if (e->lru_prev != IDX_NONE)
                c->entries[e->lru_prev].lru_next = to;
        else
                c->lru_head = to;
        if (e->lru_next != IDX_NONE)
                c->entries[e->lru_next].lru_prev = to;
        else
                c->lru_tail = to;
}

/* Called with the lock held. */
static void cache_insert(ExeHashCache *c, const ExeHashKey *k, const uint8_t digest[SHA256_DIGEST_LEN]) {
        uint32_t i;
        size_t b;

        i = cache_find(c, k);
        if (i != IDX_NONE) {
                /* Another thread hashed the same file meanwhile: same bytes, same digest. */
                memcpy(c->entries[i].digest, digest, SHA256_DIGEST_LEN);
                lru_unlink(c, i);
                lru_push_front(c, i);
                return;
        }

        if (c->n_entries == c->capacity) {
                uint32_t victim = c->lru_tail, last = (uint32_t) (c->n_entries - 1);

                lru_unlink(c, victim);
                bucket_unlink(c, victim);
                cache_move_slot(c, last, victim);
                c->n_entries--;
                c->evictions++;
        }

        i = (uint32_t) c->n_entries++;
        c->entries[i] = (ExeHashEntry) { .key = *k };
        memcpy(c->entries[i].digest, digest, SHA256_DIGEST_LEN);
        b = key_bucket(c, k);
        c->entries[i].bucket_next = c->buckets[b];
        c->buckets[b] = i;
        lru_push_front(c, i);
}

/* Called with the lock held. Counts a hit or a miss. */
static bool cache_lookup_locked(ExeHashCache *c, const ExeHashKey *k, bool count,
                                uint8_t ret[SHA256_DIGEST_LEN]) {
        uint32_t i = cache_find(c, k);

        if (i == IDX_NONE) {
                if (count)
                        c->misses++;
                return false;
        }
        if (count)
                c->hits++;
        lru_unlink(c, i);
        lru_push_front(c, i);
        memcpy(ret, c->entries[i].digest, SHA256_DIGEST_LEN);
        return true;
}

int exe_hash_cache_lookup(ExeHashCache *c, const struct stat *st, uint8_t ret[SHA256_DIGEST_LEN]) {
        uint8_t digest[SHA256_DIGEST_LEN];
        ExeHashKey k;
        bool hit;

        if (!c || !st || !ret)
                return -EINVAL;

        key_from_stat(st, &k);
        pthread_mutex_lock(&c->lock);
        hit = cache_lookup_locked(c, &k, true, digest);
        pthread_mutex_unlock(&c->lock);
        if (!hit)
                return 0;
        memcpy(ret, digest, SHA256_DIGEST_LEN);
        return 1;
}

static int cache_get(ExeHashCache *c, int fd, const struct stat *st, bool count,
                     uint8_t ret[SHA256_DIGEST_LEN]) {
        uint8_t digest[SHA256_DIGEST_LEN];
        ExeHashKey k;
        bool hit;
        int r;

        if (!c || !st || !ret)
                return -EINVAL;
        if (fd < 0)
                return -EBADF;

        r = stat_check_regular(st);
        if (r < 0)
                return r;

        pthread_mutex_lock(&c->lock);
        if ((uint64_t) st->st_size > c->max_file_size) {
                /* Refused before the cache: a file this large is never in it. */
                c->too_large++;
                pthread_mutex_unlock(&c->lock);
                return -EFBIG;
        }
        key_from_stat(st, &k);
        hit = cache_lookup_locked(c, &k, count, digest);
        pthread_mutex_unlock(&c->lock);

        if (!hit) {
                r = exe_hash_fd(fd, st, c->max_file_size, digest);
                if (r < 0)
                        return r;

                pthread_mutex_lock(&c->lock);
                cache_insert(c, &k, digest);
                pthread_mutex_unlock(&c->lock);
        }

        memcpy(ret, digest, SHA256_DIGEST_LEN);
        return 0;
}

int exe_hash_cache_get(ExeHashCache *c, int fd, const struct stat *st, uint8_t ret[SHA256_DIGEST_LEN]) {
        return cache_get(c, fd, st, true, ret);
}

int exe_hash_cache_fill(ExeHashCache *c, int fd, const struct stat *st, uint8_t ret[SHA256_DIGEST_LEN]) {
        /* The caller's lookup already counted this miss; a racing fill is used, uncounted. */
        return cache_get(c, fd, st, false, ret);
}

void exe_hash_cache_stats(ExeHashCache *c, ExeHashCacheStats *ret) {
        if (!ret)
                return;
        if (!c) {
                *ret = (ExeHashCacheStats) {};
                return;
        }

        pthread_mutex_lock(&c->lock);
        *ret = (ExeHashCacheStats) {
                .hits = c->hits,
                .misses = c->misses,
                .evictions = c->evictions,
                .too_large = c->too_large,
                .entries = c->n_entries,
                .capacity = c->capacity,
        };
        pthread_mutex_unlock(&c->lock);
}
