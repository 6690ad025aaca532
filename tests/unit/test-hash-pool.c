/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "hash-pool.h"

typedef struct Result {
        unsigned calls;
        int r;
        uint8_t sha256[SHA256_DIGEST_LEN];
} Result;

static void on_done(int r, const uint8_t sha256[SHA256_DIGEST_LEN], void *userdata) {
        Result *res = userdata;

        res->calls++;
        res->r = r;
        if (r >= 0)
                memcpy(res->sha256, sha256, SHA256_DIGEST_LEN);
}

static int make_file(size_t size, struct stat *st) {
        char path[] = "/tmp/test-hash-pool-XXXXXX";
        int fd = mkstemp(path);
        uint8_t buf[4096];

        assert_true(fd >= 0);
        (void) unlink(path);
        for (size_t i = 0; i < sizeof buf; i++)
                buf[i] = (uint8_t) (i * 7);
        for (size_t done = 0; done < size; done += sizeof buf)
                assert_int_equal(write(fd, buf, MIN(sizeof buf, size - done)), (ssize_t) MIN(sizeof buf, size - done));
        assert_int_equal(fstat(fd, st), 0);
        return fd;
}

/* Run the loop until every result has its callback, at most ~10 s. */
static void run_until(sd_event *e, Result *res, size_t n) {
        for (unsigned i = 0; i < 1000; i++) {
                bool all = true;
                for (size_t k = 0; k < n; k++)
                        if (res[k].calls == 0)
                                all = false;
                if (all)
                        return;
                assert_true(sd_event_run(e, 10 * 1000) >= 0);
        }
        fail_msg("hash pool callbacks did not arrive");
}

static void test_hash_matches(void **state) {
        sd_event *e = NULL;
        ExeHashCache *cache = NULL;
        HashPool *p = NULL;
        struct stat st;
        uint8_t expect[SHA256_DIGEST_LEN];
        Result res = {};
        int fd = make_file(100000, &st);

        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(exe_hash_cache_new(16, UINT64_C(1) << 30, &cache), 0);
        assert_int_equal(hash_pool_new(e, cache, &p), 0);
        assert_int_equal(exe_hash_fd(fd, &st, UINT64_C(1) << 30, expect), 0);

        assert_int_equal(hash_pool_submit(p, fd, &st, 1000, on_done, &res, NULL), 0);
        assert_int_equal(res.calls, 0);         /* never from inside submit */
        run_until(e, &res, 1);
        assert_int_equal(res.calls, 1);
        assert_int_equal(res.r, 0);
        assert_memory_equal(res.sha256, expect, SHA256_DIGEST_LEN);
        /* Now warm: the cache answers. */
        assert_int_equal(exe_hash_cache_lookup(cache, &st, res.sha256), 1);

        hash_pool_free(p);
        exe_hash_cache_free(cache);
        sd_event_unref(e);
        close(fd);
}

static void test_too_large(void **state) {
        sd_event *e = NULL;
        ExeHashCache *cache = NULL;
        HashPool *p = NULL;
        struct stat st;
        Result res = {};
        int fd = make_file(20000, &st);

        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(exe_hash_cache_new(16, 10000, &cache), 0);
        assert_int_equal(hash_pool_new(e, cache, &p), 0);
        assert_int_equal(hash_pool_submit(p, fd, &st, 1000, on_done, &res, NULL), 0);
        run_until(e, &res, 1);
        assert_int_equal(res.r, -EFBIG);
        hash_pool_free(p);
        exe_hash_cache_free(cache);
        sd_event_unref(e);
        close(fd);
}

/*
 * The per-uid hashing budget: bytes are charged at submit, refused with
 * -EDQUOT once used up (for that uid only), a file larger than the burst
 * only from a full bucket, coalesced jobs free, and new terms start over.
 * A rate of 1 byte/s refills nothing within the test.
 */
static void test_uid_budget(void **state) {
        enum { KIB = 1024 };
        sd_event *e = NULL;
        ExeHashCache *cache = NULL;
        HashPool *p = NULL;
        HashPoolStats stats;
        Result res[8] = {};
        struct stat st[6];
        int fd[6];

        (void) state;
        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(exe_hash_cache_new(16, UINT64_C(1) << 30, &cache), 0);
        assert_int_equal(hash_pool_new(e, cache, &p), 0);
        fd[0] = make_file(600 * KIB, &st[0]);
        fd[1] = make_file(600 * KIB + 1, &st[1]);
        fd[2] = make_file(300 * KIB, &st[2]);
        fd[3] = make_file(3000 * KIB, &st[3]);       /* larger than the burst */
        fd[4] = make_file(4 * KIB, &st[4]);
        fd[5] = make_file(400 * KIB, &st[5]);

        hash_pool_set_uid_budget(p, 1, 1000 * KIB);
        /* Nothing is hashed until every submit below is in: "on its way" must not depend on timing. */
        hash_pool_hold(p, true);
        assert_int_equal(hash_pool_submit(p, fd[0], &st[0], 7, on_done, &res[0], NULL), 0);   /* 400K left */
        /* The same file while it is on its way: shared, free. */
        assert_int_equal(hash_pool_submit(p, fd[0], &st[0], 7, on_done, &res[1], NULL), 0);
        assert_int_equal(hash_pool_submit(p, fd[1], &st[1], 7, on_done, &res[7], NULL), -EDQUOT);
        assert_int_equal(hash_pool_submit(p, fd[2], &st[2], 7, on_done, &res[2], NULL), 0);   /* 100K left */
        /* Another uid has its own budget; a file over the burst empties a full bucket. */
        assert_int_equal(hash_pool_submit(p, fd[3], &st[3], 8, on_done, &res[3], NULL), 0);
        assert_int_equal(hash_pool_submit(p, fd[4], &st[4], 8, on_done, &res[7], NULL), -EDQUOT);
        /* uid 7 asking for the big file while it is on its way: shared, free. */
        assert_int_equal(hash_pool_submit(p, fd[3], &st[3], 7, on_done, &res[6], NULL), 0);
        hash_pool_hold(p, false);
        run_until(e, res, 4);
        run_until(e, &res[6], 1);
        for (size_t i = 0; i < 4; i++)
                assert_int_equal(res[i].r, 0);
        assert_int_equal(res[6].r, 0);
        assert_int_equal(hash_pool_submit(p, fd[5], &st[5], 7, on_done, &res[7], NULL), -EDQUOT);
        /* Once it is done, hashing it again is charged: over the burst, and uid 7's bucket is not full. */
        assert_int_equal(hash_pool_submit(p, fd[3], &st[3], 7, on_done, &res[7], NULL), -EDQUOT);
        hash_pool_stats(p, &stats);
        assert_int_equal(stats.rejected_budget, 4);
        assert_int_equal(stats.rejected_uid, 0);

        /* New terms: a full bucket again; rate 0: no limit at all. */
        hash_pool_set_uid_budget(p, 1, 500 * KIB);
        assert_int_equal(hash_pool_submit(p, fd[5], &st[5], 7, on_done, &res[4], NULL), 0);
        assert_int_equal(hash_pool_submit(p, fd[1], &st[1], 7, on_done, &res[7], NULL), -EDQUOT);
        hash_pool_set_uid_budget(p, 0, 500 * KIB);
        assert_int_equal(hash_pool_submit(p, fd[1], &st[1], 7, on_done, &res[5], NULL), 0);
        run_until(e, &res[4], 2);
        assert_int_equal(res[4].r, 0);
        assert_int_equal(res[5].r, 0);
        hash_pool_stats(p, &stats);
        assert_int_equal(stats.rejected_budget, 5);

        hash_pool_free(p);
        exe_hash_cache_free(cache);
        sd_event_unref(e);
        for (size_t i = 0; i < 6; i++)
                close(fd[i]);
}

static void test_per_uid_limit_and_cancel(void **state) {
        sd_event *e = NULL;
        ExeHashCache *cache = NULL, *cache2 = NULL;
        HashPool *p = NULL;
        HashJob *jobs[HASH_POOL_PER_UID_MAX];
        Result res[HASH_POOL_PER_UID_MAX + 1] = {}, other = {};
        HashPoolStats stats;
        struct stat st, sts[HASH_POOL_PER_UID_MAX + 1];
        int fd = make_file(8192, &st), fds[HASH_POOL_PER_UID_MAX + 1];

        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(exe_hash_cache_new(16, UINT64_C(1) << 30, &cache), 0);
        assert_int_equal(hash_pool_new(e, cache, &p), 0);

        /* Jobs for different files count against their uid until the loop has delivered them. */
        for (size_t i = 0; i <= HASH_POOL_PER_UID_MAX; i++)
                fds[i] = make_file(4096 + i, &sts[i]);
        for (size_t i = 0; i < HASH_POOL_PER_UID_MAX; i++)
                assert_int_equal(hash_pool_submit(p, fds[i], &sts[i], 7, on_done, &res[i], &jobs[i]), 0);
        assert_int_equal(hash_pool_submit(p, fds[HASH_POOL_PER_UID_MAX], &sts[HASH_POOL_PER_UID_MAX], 7, on_done,
                                          &res[HASH_POOL_PER_UID_MAX], NULL), -EUSERS);
        /* Another uid is not affected. */
        assert_int_equal(hash_pool_submit(p, fd, &st, 8, on_done, &other, NULL), 0);
        /* A cancelled job never calls back, and frees its uid's slot. */
        hash_job_cancel(jobs[0]);
        res[0].calls = 1; /* so run_until does not wait for it */
        run_until(e, res, HASH_POOL_PER_UID_MAX);
        run_until(e, &other, 1);
        assert_int_equal(res[0].calls, 1);
        for (size_t i = 1; i < HASH_POOL_PER_UID_MAX; i++)
                assert_int_equal(res[i].calls, 1);
        hash_pool_stats(p, &stats);
        assert_int_equal(stats.rejected_uid, 1);
        assert_int_equal(stats.queued, 0);

        /* Swapping the cache (reload with new limits) while idle. */
        assert_int_equal(exe_hash_cache_new(4, UINT64_C(1) << 30, &cache2), 0);
        hash_pool_set_cache(p, cache2);
        exe_hash_cache_free(cache);
        Result again = {};
        assert_int_equal(hash_pool_submit(p, fd, &st, 7, on_done, &again, NULL), 0);
        run_until(e, &again, 1);
        assert_int_equal(again.r, 0);

        /* Freed with jobs pending: no callback, no leak. */
        Result pending = {};
        assert_int_equal(hash_pool_submit(p, fd, &st, 9, on_done, &pending, NULL), 0);
        hash_pool_free(p);
        assert_int_equal(pending.calls, 0);
        exe_hash_cache_free(cache2);
        sd_event_unref(e);
        close(fd);
        for (size_t i = 0; i <= HASH_POOL_PER_UID_MAX; i++)
                close(fds[i]);
}

static void test_same_file_coalesced(void **state) {
        sd_event *e = NULL;
        ExeHashCache *cache = NULL;
        HashPool *p = NULL;
        HashJob *jobs[3 * HASH_POOL_PER_UID_MAX];
        Result res[3 * HASH_POOL_PER_UID_MAX] = {};
        HashPoolStats stats;
        uint8_t expect[SHA256_DIGEST_LEN];
        struct stat st;
        int fd = make_file(1 << 20, &st);

        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(exe_hash_cache_new(16, UINT64_C(1) << 30, &cache), 0);
        assert_int_equal(hash_pool_new(e, cache, &p), 0);
        assert_int_equal(exe_hash_fd(fd, &st, UINT64_C(1) << 30, expect), 0);

        /*
         * Many clients of one program at once: one hash, every caller answered, no limit hit.
         * The pool is held so that the first job is still on its way when the last one arrives.
         */
        hash_pool_hold(p, true);
        for (size_t i = 0; i < ELEMENTSOF(res); i++)
                assert_int_equal(hash_pool_submit(p, fd, &st, 7, on_done, &res[i], &jobs[i]), 0);
        /* Cancelling the leader does not take the answer away from the others. */
        hash_job_cancel(jobs[0]);
        hash_job_cancel(jobs[5]);
        res[0].calls = res[5].calls = 1;
        hash_pool_hold(p, false);
        run_until(e, res, ELEMENTSOF(res));
        for (size_t i = 0; i < ELEMENTSOF(res); i++) {
                assert_int_equal(res[i].calls, 1);
                if (i != 0 && i != 5) {
                        assert_int_equal(res[i].r, 0);
                        assert_memory_equal(res[i].sha256, expect, SHA256_DIGEST_LEN);
                }
        }
        hash_pool_stats(p, &stats);
        assert_int_equal(stats.submitted, 1);
        assert_int_equal(stats.coalesced, ELEMENTSOF(res) - 1);
        assert_int_equal(stats.rejected_uid, 0);
        hash_pool_free(p);
        exe_hash_cache_free(cache);
        sd_event_unref(e);
        close(fd);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_hash_matches),
                cmocka_unit_test(test_too_large),
                cmocka_unit_test(test_uid_budget),
                cmocka_unit_test(test_per_uid_limit_and_cancel),
                cmocka_unit_test(test_same_file_coalesced),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
