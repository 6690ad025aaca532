/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Cold executable hashing off the event loop: a fixed pool of worker
 * threads with a bounded queue and a per-uid limit on jobs in flight, so
 * one user with a huge binary (or many connections) cannot starve others
 * or grow memory. Workers hash through the shared ExeHashCache (locked,
 * bounded by hash_max_size); completions are posted back to the loop
 * through an eventfd. Everything but the workers runs on the loop thread.
 */

#include <sys/stat.h>
#include <systemd/sd-event.h>

#include "exe-hash.h"
#include "macro.h"

#define HASH_POOL_THREADS 2
#define HASH_POOL_QUEUE_MAX 64          /* jobs waiting, all users */
#define HASH_POOL_PER_UID_MAX 8         /* jobs queued or running for one uid */

typedef struct HashPool HashPool;
typedef struct HashJob HashJob;

/* r: 0 and the digest, or a negative errno (-EFBIG over hash_max_size). */
typedef void (*HashPoolDone)(int r, const uint8_t sha256[SHA256_DIGEST_LEN], void *userdata);

int hash_pool_new(sd_event *event, ExeHashCache *cache, HashPool **ret);
/* Waits for running jobs (bounded by hash_max_size); callbacks of pending jobs do not run. */
HashPool *hash_pool_free(HashPool *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(HashPool *, hash_pool_free);

/*
 * Use a new cache from now on. Waits until no worker uses the old one, so
 * the caller may free it after this returns (reload with new limits only).
 */
void hash_pool_set_cache(HashPool *p, ExeHashCache *cache);

/*
 * Hash the file open as fd (duplicated; the caller keeps its own) with
 * stat st, for uid. done runs later on the loop. A file already being
 * hashed (same dev, inode, size, mtime, ctime) is not hashed again: the
 * new job waits for that result and counts against no limit. Otherwise
 * -EBUSY if the queue is full, -EUSERS if uid has HASH_POOL_PER_UID_MAX
 * jobs in flight, -EDQUOT if uid's hashing budget (hash_pool_set_uid_budget())
 * cannot pay for st->st_size bytes now.
 */
int hash_pool_submit(HashPool *p, int fd, const struct stat *st, uint32_t uid, HashPoolDone done, void *userdata,
                     HashJob **ret);

/* done will not run for this job. NULL-safe. */
void hash_job_cancel(HashJob *j);

/*
 * The bytes of cold hashing one uid may cause: a token bucket refilled at
 * rate bytes per second up to burst (rate 0: no limit, the default). A file
 * larger than burst is hashed only from a full bucket, which it empties.
 * Changing either starts every uid with a full bucket. Loop thread only.
 */
void hash_pool_set_uid_budget(HashPool *p, uint64_t rate, uint64_t burst);

/*
 * While held, workers start no new job (jobs already hashing finish): queued
 * jobs stay on their way, for tests that need a job to be still in flight.
 */
void hash_pool_hold(HashPool *p, bool hold);

typedef struct HashPoolStats {
        uint64_t submitted, completed, rejected_busy, rejected_uid, rejected_budget;
        uint64_t coalesced;             /* waited for a job hashing the same file */
        size_t queued;
} HashPoolStats;
void hash_pool_stats(HashPool *p, HashPoolStats *ret);
