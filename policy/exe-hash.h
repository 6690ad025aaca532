/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * SHA-256 of an executable (nettle), through a bounded, locked cache keyed
 * by (st_dev, st_ino, st_size, st_mtim, st_ctim). ctime is in the key
 * because a user can reset mtime with utimensat() but never ctime, so a
 * file rewritten in place always misses the cache.
 */

#include <sys/stat.h>

#include "macro.h"
#include "strutil.h"

#define EXE_HASH_MAX_SIZE_DEFAULT (UINT64_C(512) << 20) /* 512 MiB */
#define EXE_HASH_CACHE_ENTRIES_DEFAULT 1024
#define EXE_HASH_CACHE_ENTRIES_MAX 65536

/*
 * Hash the open file fd from offset 0 (pread, so the file offset is not
 * used), expecting the size in st. Fails with -EFBIG if st->st_size exceeds
 * max_size, -EBADF/-EISDIR/-EINVAL if it is not a regular file, and -ESTALE
 * if the file changed size while being read, or if fstat(fd) afterwards no
 * longer matches st (dev, ino, size, mtime, ctime): the digest then belongs
 * to no single version of the file.
 */
int exe_hash_fd(int fd, const struct stat *st, uint64_t max_size, uint8_t ret[SHA256_DIGEST_LEN]);

typedef struct ExeHashCache ExeHashCache;

typedef struct ExeHashCacheStats {
        uint64_t hits;
        uint64_t misses;
        uint64_t evictions;
        uint64_t too_large;     /* files refused for exceeding max_size */
        size_t entries;
        size_t capacity;
} ExeHashCacheStats;

/*
 * capacity entries (LRU, 1..EXE_HASH_CACHE_ENTRIES_MAX, else -EINVAL), files
 * larger than max_file_size are refused.
 */
int exe_hash_cache_new(size_t capacity, uint64_t max_file_size, ExeHashCache **ret);
ExeHashCache *exe_hash_cache_free(ExeHashCache *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(ExeHashCache *, exe_hash_cache_free);

/* Cache only: 1 and the digest on a hit, 0 on a miss. Thread-safe. */
int exe_hash_cache_lookup(ExeHashCache *c, const struct stat *st, uint8_t ret[SHA256_DIGEST_LEN]);

/*
 * Look up, and on a miss hash fd and insert. Returns 0 and the digest, or
 * a negative errno from exe_hash_fd(). The file is hashed without holding
 * the lock. Thread-safe. A file over max_file_size is refused with -EFBIG
 * before the lookup: it counts as too_large, not as a miss.
 */
int exe_hash_cache_get(ExeHashCache *c, int fd, const struct stat *st, uint8_t ret[SHA256_DIGEST_LEN]);

/*
 * For a caller whose exe_hash_cache_lookup() already missed (and counted the
 * miss): like exe_hash_cache_get(), but neither the re-check of the cache
 * (another thread may have filled it meanwhile) nor the hash counts again,
 * so one cold executable is one miss in the statistics. Thread-safe.
 */
int exe_hash_cache_fill(ExeHashCache *c, int fd, const struct stat *st, uint8_t ret[SHA256_DIGEST_LEN]);

void exe_hash_cache_stats(ExeHashCache *c, ExeHashCacheStats *ret);
