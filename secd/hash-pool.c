/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <pthread.h>
#include <sys/eventfd.h>

#include "hash-pool.h"
#include "log.h"
#include "util.h"

/*
 * What one uid may still have hashed: a token bucket of bytes (refilled at
 * budget_rate bytes per second up to budget_burst). The table is small and
 * bounded; a uid that finds no entry takes a free one, else one whose bucket
 * is full again (forgetting it loses nothing), else the least recently used
 * (whose owner then starts with a full bucket: with HASH_POOL_UID_BUDGETS
 * uids hashing at once, the concurrency limits still hold).
 */
#define HASH_POOL_UID_BUDGETS 64

typedef struct HashBudget {
        bool used;
        uint32_t uid;
        uint64_t tokens;                /* bytes */
        uint64_t refilled_usec;         /* CLOCK_MONOTONIC */
        uint64_t last_use;              /* LRU clock */
} HashBudget;

struct HashJob {
        HashJob *next;                  /* in the queue or the done list */
        HashJob *all_prev, *all_next;   /* every job not yet freed */
        HashJob *leader;                /* a follower waits for this job's result (no fd, never queued) */
        HashJob *followers;             /* a leader's followers, linked through follower_next */
        HashJob *follower_next;
        HashPool *pool;
        int fd;
        struct stat st;
        uint32_t uid;
        int result;
        uint8_t sha256[SHA256_DIGEST_LEN];
        HashPoolDone done;
        void *userdata;
        bool cancelled;                 /* under lock */
        bool queued;                    /* under lock: still in the queue */
        bool finished;                  /* under lock: hashed, result on its way to the loop */
};

struct HashPool {
        pthread_mutex_t lock;
        pthread_cond_t work;            /* a job was queued, or stopping */
        pthread_cond_t cache_idle;      /* cache_users dropped to 0 */
        pthread_t threads[HASH_POOL_THREADS];
        size_t n_threads;
        bool stopping;
        bool held;                      /* workers take no new job (hash_pool_hold()) */

        HashJob *queue_head, *queue_tail;
        size_t n_queued;
        HashJob *done_head;             /* finished, for the loop */
        HashJob *all;                   /* every live job (for the per-uid count) */

        ExeHashCache *cache;
        unsigned cache_users;

        int event_fd;
        sd_event_source *event_source;

        HashPoolStats stats;

        /* Loop thread only (hash_pool_submit() and hash_pool_set_uid_budget()). */
        uint64_t budget_rate;           /* bytes per second; 0: no limit */
        uint64_t budget_burst;
        HashBudget budgets[HASH_POOL_UID_BUDGETS];
        uint64_t budget_clock;
};

static void hash_budget_refill(const HashPool *p, HashBudget *b, uint64_t now) {
        uint64_t elapsed = now > b->refilled_usec ? now - b->refilled_usec : 0, add;

        /* An hour refills any bucket (burst <= 1T, rate >= 1 byte/s would not, but then it is the rate's). */
        if (elapsed >= UINT64_C(3600) * 1000000)
                add = p->budget_burst;
        else
                add = (uint64_t) ((unsigned __int128) elapsed * p->budget_rate / 1000000);
        b->tokens = add >= p->budget_burst - MIN(b->tokens, p->budget_burst) ? p->budget_burst : b->tokens + add;
        b->refilled_usec = now;
}

/* The bucket of uid, made (full) if it has none. */
static HashBudget *hash_budget_get(HashPool *p, uint32_t uid, uint64_t now) {
        HashBudget *victim = NULL;

        for (size_t i = 0; i < HASH_POOL_UID_BUDGETS; i++) {
                HashBudget *b = &p->budgets[i];

                if (b->used && b->uid == uid) {
                        hash_budget_refill(p, b, now);
                        b->last_use = ++p->budget_clock;
                        return b;
                }
        }
        for (size_t i = 0; i < HASH_POOL_UID_BUDGETS && !victim; i++)
                if (!p->budgets[i].used)
                        victim = &p->budgets[i];
        for (size_t i = 0; i < HASH_POOL_UID_BUDGETS && !victim; i++) {
                hash_budget_refill(p, &p->budgets[i], now);
                if (p->budgets[i].tokens >= p->budget_burst)
                        victim = &p->budgets[i];
        }
        if (!victim) {
                victim = &p->budgets[0];
                for (size_t i = 1; i < HASH_POOL_UID_BUDGETS; i++)
                        if (p->budgets[i].last_use < victim->last_use)
                                victim = &p->budgets[i];
        }
        *victim = (HashBudget) {
                .used = true,
                .uid = uid,
                .tokens = p->budget_burst,
                .refilled_usec = now,
                .last_use = ++p->budget_clock,
        };
        return victim;
}

/*
 * Charge uid for hashing size bytes: 0, or -EDQUOT if its budget is used up.
 * A file larger than the whole burst is hashed only from a full bucket.
 */
static int hash_budget_charge(HashPool *p, uint32_t uid, uint64_t size) {
        HashBudget *b;

        if (p->budget_rate == 0)
                return 0;
        b = hash_budget_get(p, uid, now_usec(CLOCK_MONOTONIC));
        if (b->tokens >= size)
                b->tokens -= size;
        else if (b->tokens >= p->budget_burst)
                b->tokens = 0;
        else
                return -EDQUOT;
        return 0;
}

void hash_pool_set_uid_budget(HashPool *p, uint64_t rate, uint64_t burst) {
        if (!p || (p->budget_rate == rate && p->budget_burst == burst))
                return;
        p->budget_rate = rate;
        p->budget_burst = MAX(burst, (uint64_t) 1);
        /* New terms: every uid starts again with a full bucket. */
        memset(p->budgets, 0, sizeof p->budgets);
}

static bool stat_same_file(const struct stat *a, const struct stat *b) {
        return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
                a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
                a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Someone still wants this job's result: itself or one of its followers. */
static bool hash_job_wanted_locked(const HashJob *j) {
        if (!j->cancelled)
                return true;
        for (const HashJob *f = j->followers; f; f = f->follower_next)
                if (!f->cancelled)
                        return true;
        return false;
}

static void hash_job_free_locked(HashPool *p, HashJob *j) {
        if (j->all_prev)
                j->all_prev->all_next = j->all_next;
        else
                p->all = j->all_next;
        if (j->all_next)
                j->all_next->all_prev = j->all_prev;
        safe_close(j->fd);
        free(j);
}

static void *hash_pool_worker(void *userdata) {
        HashPool *p = userdata;

        (void) pthread_mutex_lock(&p->lock);
        for (;;) {
                HashJob *j;
                ExeHashCache *cache;
                uint64_t one = 1;
                bool skip;

                while (!p->stopping && (p->held || !p->queue_head))
                        (void) pthread_cond_wait(&p->work, &p->lock);
                if (p->stopping)
                        break;
                j = p->queue_head;
                p->queue_head = j->next;
                if (!p->queue_head)
                        p->queue_tail = NULL;
                p->n_queued--;
                j->next = NULL;
                j->queued = false;
                cache = p->cache;
                p->cache_users++;
                skip = !hash_job_wanted_locked(j);
                (void) pthread_mutex_unlock(&p->lock);

                /* The slow part, unlocked. The cache has its own lock. */
                /* The loop's exe_hash_cache_lookup() already counted the miss. */
                j->result = skip ? -ECANCELED : exe_hash_cache_fill(cache, j->fd, &j->st, j->sha256);

                (void) pthread_mutex_lock(&p->lock);
                if (--p->cache_users == 0)
                        (void) pthread_cond_broadcast(&p->cache_idle);
                j->fd = safe_close(j->fd);
                j->finished = true;
                j->next = p->done_head;
                p->done_head = j;
                (void) !write(p->event_fd, &one, sizeof one);
        }
        (void) pthread_mutex_unlock(&p->lock);
        return NULL;
}

static int hash_pool_on_event(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        HashPool *p = userdata;
        HashJob *list, *rev = NULL;
        uint64_t n;

        (void) !read(fd, &n, sizeof n);
        (void) pthread_mutex_lock(&p->lock);
        list = TAKE_PTR(p->done_head);
        (void) pthread_mutex_unlock(&p->lock);

        /* The done list is newest first: restore completion order. */
        while (list) {
                HashJob *next = list->next;
                list->next = rev;
                rev = list;
                list = next;
        }
        while (rev) {
                HashJob *j = rev, *f;
                bool cancelled;

                rev = j->next;
                (void) pthread_mutex_lock(&p->lock);
                cancelled = j->cancelled;
                p->stats.completed++;
                (void) pthread_mutex_unlock(&p->lock);
                /* A callback may cancel other jobs (checked under the lock right before each call). */
                if (!cancelled && j->done)
                        j->done(j->result, j->result >= 0 ? j->sha256 : NULL, j->userdata);
                for (f = j->followers; f; f = f->follower_next) {
                        (void) pthread_mutex_lock(&p->lock);
                        cancelled = f->cancelled;
                        (void) pthread_mutex_unlock(&p->lock);
                        if (!cancelled && f->done)
                                f->done(j->result, j->result >= 0 ? j->sha256 : NULL, f->userdata);
                }
                (void) pthread_mutex_lock(&p->lock);
                while (j->followers) {
                        f = j->followers;
                        j->followers = f->follower_next;
                        hash_job_free_locked(p, f);
                }
                hash_job_free_locked(p, j);
                (void) pthread_mutex_unlock(&p->lock);
        }
        return 0;
}

HashPool *hash_pool_free(HashPool *p) {
        if (!p)
                return NULL;
        (void) pthread_mutex_lock(&p->lock);
        p->stopping = true;
        (void) pthread_cond_broadcast(&p->work);
        (void) pthread_mutex_unlock(&p->lock);
        for (size_t i = 0; i < p->n_threads; i++)
                (void) pthread_join(p->threads[i], NULL);
        while (p->all)
                hash_job_free_locked(p, p->all);
        sd_event_source_disable_unref(p->event_source);
        safe_close(p->event_fd);
        (void) pthread_cond_destroy(&p->work);
        (void) pthread_cond_destroy(&p->cache_idle);
        (void) pthread_mutex_destroy(&p->lock);
        free(p);
        return NULL;
}

int hash_pool_new(sd_event *event, ExeHashCache *cache, HashPool **ret) {
        _cleanup_(hash_pool_freep) HashPool *p = NULL;
        int r;

        p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        (void) pthread_mutex_init(&p->lock, NULL);
        (void) pthread_cond_init(&p->work, NULL);
        (void) pthread_cond_init(&p->cache_idle, NULL);
        p->cache = cache;
        p->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (p->event_fd < 0)
                return negative_errno();
        r = sd_event_add_io(event, &p->event_source, p->event_fd, EPOLLIN, hash_pool_on_event, p);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(p->event_source, "hash-pool");

        for (size_t i = 0; i < HASH_POOL_THREADS; i++) {
                r = -pthread_create(&p->threads[i], NULL, hash_pool_worker, p);
                if (r < 0)
                        return r;
                p->n_threads++;
        }
        *ret = TAKE_PTR(p);
        return 0;
}

void hash_pool_set_cache(HashPool *p, ExeHashCache *cache) {
        (void) pthread_mutex_lock(&p->lock);
        p->cache = cache;
        while (p->cache_users > 0)
                (void) pthread_cond_wait(&p->cache_idle, &p->lock);
        (void) pthread_mutex_unlock(&p->lock);
}

void hash_pool_hold(HashPool *p, bool hold) {
        (void) pthread_mutex_lock(&p->lock);
        p->held = hold;
        if (!hold)
                (void) pthread_cond_broadcast(&p->work);
        (void) pthread_mutex_unlock(&p->lock);
}

int hash_pool_submit(HashPool *p, int fd, const struct stat *st, uint32_t uid, HashPoolDone done, void *userdata,
                     HashJob **ret) {
        _cleanup_close_ int copy = -EBADF;
        size_t per_uid = 0;
        HashJob *j;

        copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (copy < 0)
                return negative_errno();
        j = calloc(1, sizeof *j);
        if (!j)
                return -ENOMEM;

        (void) pthread_mutex_lock(&p->lock);
        /*
         * The same file already on its way (many clients of one program connecting at
         * once): wait for that result instead of hashing again or using up a slot.
         */
        for (HashJob *k = p->all; k; k = k->all_next) {
                if (k->leader || k->finished || !stat_same_file(&k->st, st))
                        continue;
                *j = (HashJob) {
                        .pool = p,
                        .fd = -EBADF,
                        .st = *st,
                        .uid = uid,
                        .done = done,
                        .userdata = userdata,
                        .leader = k,
                        .follower_next = k->followers,
                        .all_next = p->all,
                };
                k->followers = j;
                if (p->all)
                        p->all->all_prev = j;
                p->all = j;
                p->stats.coalesced++;
                (void) pthread_mutex_unlock(&p->lock);
                if (ret)
                        *ret = j;
                return 0;
        }
        for (HashJob *k = p->all; k; k = k->all_next)
                if (k->uid == uid && !k->cancelled && !k->leader)
                        per_uid++;
        if (per_uid >= HASH_POOL_PER_UID_MAX) {
                p->stats.rejected_uid++;
                (void) pthread_mutex_unlock(&p->lock);
                free(j);
                return -EUSERS;
        }
        if (p->n_queued >= HASH_POOL_QUEUE_MAX) {
                p->stats.rejected_busy++;
                (void) pthread_mutex_unlock(&p->lock);
                free(j);
                return -EBUSY;
        }
        /* Last, so a job refused for another reason costs no budget. */
        if (hash_budget_charge(p, uid, st->st_size > 0 ? (uint64_t) st->st_size : 0) < 0) {
                p->stats.rejected_budget++;
                (void) pthread_mutex_unlock(&p->lock);
                free(j);
                return -EDQUOT;
        }
        *j = (HashJob) {
                .pool = p,
                .fd = TAKE_FD(copy),
                .st = *st,
                .uid = uid,
                .done = done,
                .userdata = userdata,
                .queued = true,
                .all_next = p->all,
        };
        if (p->all)
                p->all->all_prev = j;
        p->all = j;
        if (p->queue_tail)
                p->queue_tail->next = j;
        else
                p->queue_head = j;
        p->queue_tail = j;
        p->n_queued++;
        p->stats.submitted++;
        (void) pthread_cond_signal(&p->work);
        (void) pthread_mutex_unlock(&p->lock);
        if (ret)
                *ret = j;
        return 0;
}

void hash_job_cancel(HashJob *j) {
        HashPool *p;

        if (!j)
                return;
        p = j->pool;
        (void) pthread_mutex_lock(&p->lock);
        j->cancelled = true;
        /* A follower goes with its leader; a leader others wait for still runs. */
        if (j->queued && !hash_job_wanted_locked(j)) {
                /* Not started: take it out and free it now. */
                HashJob **pp = &p->queue_head, *prev = NULL;
                while (*pp && *pp != j) {
                        prev = *pp;
                        pp = &(*pp)->next;
                }
                if (*pp) {
                        *pp = j->next;
                        if (p->queue_tail == j)
                                p->queue_tail = prev;
                        p->n_queued--;
                        while (j->followers) {
                                HashJob *f = j->followers;
                                j->followers = f->follower_next;
                                hash_job_free_locked(p, f);
                        }
                        hash_job_free_locked(p, j);
                }
        }
        /* Running or done: the completion frees it without calling back. */
        (void) pthread_mutex_unlock(&p->lock);
}

void hash_pool_stats(HashPool *p, HashPoolStats *ret) {
        (void) pthread_mutex_lock(&p->lock);
        *ret = p->stats;
        ret->queued = p->n_queued;
        (void) pthread_mutex_unlock(&p->lock);
}
