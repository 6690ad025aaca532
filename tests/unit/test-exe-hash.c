/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "exe-hash.h"
#include "strutil.h"

static char tmpdir[] = "/tmp/test-exe-hash-XXXXXX";

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        return remove(path);
}

static int setup(void **state) {
        return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
        return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void tmp_path(const char *name, char *buf, size_t size) {
        int n = snprintf(buf, size, "%s/%s", tmpdir, name);
        assert_true(n > 0 && (size_t) n < size);
}

static void write_file(const char *path, const void *data, size_t len) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        const uint8_t *p = data;

        assert_true(fd >= 0);
        while (len > 0) {
                ssize_t n = write(fd, p, len);
                assert_true(n > 0);
                p += n;
                len -= (size_t) n;
        }
}

static void random_bytes(uint8_t *buf, size_t len) {
        while (len > 0) {
                ssize_t n = getrandom(buf, len, 0);
                assert_true(n > 0);
                buf += n;
                len -= (size_t) n;
        }
}

/* What coreutils says: the reference for "the hash equals sha256sum's". */
static void sha256sum_hex(const char *path, char out[SHA256_HEX_LEN + 1]) {
        char cmd[512], line[256];
        FILE *f;

        /* Our temp paths contain no shell metacharacters. */
        assert_true(strspn(path, "/abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") == strlen(path));
        assert_true((size_t) snprintf(cmd, sizeof cmd, "sha256sum -- %s", path) < sizeof cmd);
        f = popen(cmd, "r");
        assert_non_null(f);
        assert_non_null(fgets(line, sizeof line, f));
        assert_int_equal(pclose(f), 0);
        assert_true(strlen(line) > SHA256_HEX_LEN && line[SHA256_HEX_LEN] == ' ');
        memcpy(out, line, SHA256_HEX_LEN);
        out[SHA256_HEX_LEN] = 0;
}

static int hash_path_hex(const char *path, uint64_t max, char out[SHA256_HEX_LEN + 1]) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        uint8_t digest[SHA256_DIGEST_LEN];
        struct stat st;
        int r;

        assert_true(fd >= 0);
        assert_int_equal(fstat(fd, &st), 0);
        r = exe_hash_fd(fd, &st, max, digest);
        if (r < 0)
                return r;
        hex_encode(digest, sizeof digest, out);
        return 0;
}

static void assert_hash_matches_sha256sum(const char *path) {
        char ours[SHA256_HEX_LEN + 1], theirs[SHA256_HEX_LEN + 1];

        assert_int_equal(hash_path_hex(path, EXE_HASH_MAX_SIZE_DEFAULT, ours), 0);
        sha256sum_hex(path, theirs);
        assert_string_equal(ours, theirs);
}

static void test_hash_equals_sha256sum(void **state) {
        static const size_t sizes[] = {
                0, 1, 3, 55, 56, 64, 4096,
                (1U << 20) - 1, 1U << 20, (1U << 20) + 1,    /* around one chunk */
                (3U << 20) + 7,                                 /* several chunks */
        };
        _cleanup_free_ uint8_t *data = malloc((3U << 20) + 7);
        char path[256];

        assert_non_null(data);
        random_bytes(data, (3U << 20) + 7);

        for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
                char name[64];

                snprintf(name, sizeof name, "size-%zu", sizes[i]);
                tmp_path(name, path, sizeof path);
                write_file(path, data, sizes[i]);
                assert_hash_matches_sha256sum(path);
        }

        /* Known answer for "abc" (FIPS 180-2), independent of any tool. */
        {
                char hex[SHA256_HEX_LEN + 1];

                tmp_path("abc", path, sizeof path);
                write_file(path, "abc", 3);
                assert_int_equal(hash_path_hex(path, 3, hex), 0);
                assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        }

        /* A real executable: this test (by name: sha256sum's /proc/self is sha256sum). */
        {
                _cleanup_free_ char *self = realpath("/proc/self/exe", NULL);

                assert_non_null(self);
                assert_hash_matches_sha256sum(self);
        }
}

static void test_hash_refuses(void **state) {
        uint8_t digest[SHA256_DIGEST_LEN];
        char path[256];
        struct stat st;
        int fd;

        /* Over the limit, by one byte. */
        tmp_path("limit", path, sizeof path);
        write_file(path, "0123456789", 10);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(fstat(fd, &st), 0);
        assert_int_equal(exe_hash_fd(fd, &st, 9, digest), -EFBIG);
        assert_int_equal(exe_hash_fd(fd, &st, 10, digest), 0);
        safe_close(fd);

        /* Not regular files. */
        fd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(fstat(fd, &st), 0);
        assert_int_equal(exe_hash_fd(fd, &st, EXE_HASH_MAX_SIZE_DEFAULT, digest), -EISDIR);
        safe_close(fd);

        fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(fstat(fd, &st), 0);
        assert_int_equal(exe_hash_fd(fd, &st, EXE_HASH_MAX_SIZE_DEFAULT, digest), -EINVAL);
        safe_close(fd);

        assert_int_equal(exe_hash_fd(-1, &st, EXE_HASH_MAX_SIZE_DEFAULT, digest), -EBADF);
}

static void test_hash_detects_size_change(void **state) {
        uint8_t digest[SHA256_DIGEST_LEN];
        char path[256];
        struct stat st;
        int fd, wfd;

        tmp_path("changing", path, sizeof path);
        write_file(path, "0123456789", 10);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);

        /* Grew after fstat(). */
        assert_int_equal(fstat(fd, &st), 0);
        wfd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
        assert_true(wfd >= 0);
        assert_int_equal(write(wfd, "x", 1), 1);
        assert_int_equal(exe_hash_fd(fd, &st, EXE_HASH_MAX_SIZE_DEFAULT, digest), -ESTALE);

        /* Shrank after fstat(). */
        assert_int_equal(fstat(fd, &st), 0);
        assert_int_equal(ftruncate(wfd, 4), 0);
        assert_int_equal(exe_hash_fd(fd, &st, EXE_HASH_MAX_SIZE_DEFAULT, digest), -ESTALE);

        /* Consistent again. */
        assert_int_equal(fstat(fd, &st), 0);
        assert_int_equal(exe_hash_fd(fd, &st, EXE_HASH_MAX_SIZE_DEFAULT, digest), 0);
        safe_close(wfd);
        safe_close(fd);
}

static void cache_get_hex(ExeHashCache *c, const char *path, char out[SHA256_HEX_LEN + 1], int expect) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        uint8_t digest[SHA256_DIGEST_LEN];
        struct stat st;

        assert_true(fd >= 0);
        assert_int_equal(fstat(fd, &st), 0);
        assert_int_equal(exe_hash_cache_get(c, fd, &st, digest), expect);
        if (expect == 0 && out)
                hex_encode(digest, sizeof digest, out);
}

static int cache_lookup_path(ExeHashCache *c, const char *path) {
        uint8_t digest[SHA256_DIGEST_LEN];
        struct stat st;

        assert_int_equal(stat(path, &st), 0);
        return exe_hash_cache_lookup(c, &st, digest);
}

static void test_cache_rewrite_in_place(void **state) {
        _cleanup_(exe_hash_cache_freep) ExeHashCache *c = NULL;
        char path[256], h1[SHA256_HEX_LEN + 1], h2[SHA256_HEX_LEN + 1], ref[SHA256_HEX_LEN + 1];
        struct stat before, after;
        ExeHashCacheStats stats;
        unsigned tries = 0;

        assert_int_equal(exe_hash_cache_new(16, EXE_HASH_MAX_SIZE_DEFAULT, &c), 0);
        tmp_path("rewritten", path, sizeof path);
        write_file(path, "#!/bin/sh\necho good\n", 20);
        assert_int_equal(stat(path, &before), 0);

        cache_get_hex(c, path, h1, 0);
        cache_get_hex(c, path, h2, 0);
        assert_string_equal(h1, h2);
        exe_hash_cache_stats(c, &stats);
        assert_int_equal(stats.misses, 1);
        assert_int_equal(stats.hits, 1);

        /*
         * Same size, same inode, mtime put back: only ctime tells. Its
         * granularity is the kernel's timestamp tick, so rewrite until it
         * moves (bounded).
         */
        for (;;) {
                _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
                const struct timespec ts[2] = { before.st_atim, before.st_mtim };

                assert_true(fd >= 0);
                assert_int_equal(pwrite(fd, "#!/bin/sh\necho evil\n", 20, 0), 20);
                assert_int_equal(futimens(fd, ts), 0);
                assert_int_equal(fstat(fd, &after), 0);
                if (after.st_ctim.tv_sec != before.st_ctim.tv_sec ||
                    after.st_ctim.tv_nsec != before.st_ctim.tv_nsec)
                        break;
                assert_true(++tries < 500);
                (void) nanosleep(&(struct timespec) { .tv_nsec = 10 * 1000 * 1000 }, NULL);
        }
        /* Everything but ctime looks the same. */
        assert_int_equal(after.st_ino, before.st_ino);
        assert_int_equal(after.st_size, before.st_size);
        assert_int_equal(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
        assert_int_equal(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);

        cache_get_hex(c, path, h2, 0);
        sha256sum_hex(path, ref);
        assert_string_equal(h2, ref);
        assert_string_not_equal(h1, h2);
        exe_hash_cache_stats(c, &stats);
        assert_int_equal(stats.misses, 2);
        assert_int_equal(stats.hits, 1);

        /* And the new version is cached in turn. */
        cache_get_hex(c, path, h1, 0);
        assert_string_equal(h1, h2);
        exe_hash_cache_stats(c, &stats);
        assert_int_equal(stats.hits, 2);
}

static void test_cache_too_large(void **state) {
        _cleanup_(exe_hash_cache_freep) ExeHashCache *c = NULL;
        char path[256];
        ExeHashCacheStats stats;

        assert_int_equal(exe_hash_cache_new(4, 10, &c), 0);
        tmp_path("big", path, sizeof path);
        write_file(path, "01234567890", 11);
        cache_get_hex(c, path, NULL, -EFBIG);
        cache_get_hex(c, path, NULL, -EFBIG);
        tmp_path("fits", path, sizeof path);
        write_file(path, "0123456789", 10);
        cache_get_hex(c, path, NULL, 0);

        exe_hash_cache_stats(c, &stats);
        assert_int_equal(stats.too_large, 2);
        assert_int_equal(stats.misses, 1);
        assert_int_equal(stats.hits, 0);
        assert_int_equal(stats.entries, 1);
        assert_int_equal(stats.capacity, 4);
}

/* A cold executable is one miss: lookup counts it, fill (the worker's hash) does not again. */
static void test_cache_fill_counts_once(void **state) {
        _cleanup_(exe_hash_cache_freep) ExeHashCache *c = NULL;
        _cleanup_close_ int fd = -EBADF;
        uint8_t d1[SHA256_DIGEST_LEN], d2[SHA256_DIGEST_LEN], d3[SHA256_DIGEST_LEN];
        ExeHashCacheStats stats;
        struct stat st;
        char path[256];

        assert_int_equal(exe_hash_cache_new(4, EXE_HASH_MAX_SIZE_DEFAULT, &c), 0);
        tmp_path("fill", path, sizeof path);
        write_file(path, "fill me", 7);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(fstat(fd, &st), 0);

        assert_int_equal(exe_hash_cache_lookup(c, &st, d1), 0);        /* miss, counted */
        assert_int_equal(exe_hash_cache_fill(c, fd, &st, d1), 0);      /* hashed, not counted */
        assert_int_equal(exe_hash_cache_fill(c, fd, &st, d2), 0);      /* racing fill: cached, not counted */
        assert_memory_equal(d1, d2, sizeof d1);
        exe_hash_cache_stats(c, &stats);
        assert_int_equal(stats.misses, 1);
        assert_int_equal(stats.hits, 0);
        assert_int_equal(stats.entries, 1);

        assert_int_equal(exe_hash_cache_lookup(c, &st, d3), 1);        /* warm: a counted hit */
        assert_memory_equal(d1, d3, sizeof d1);
        exe_hash_cache_stats(c, &stats);
        assert_int_equal(stats.misses, 1);
        assert_int_equal(stats.hits, 1);
}

static void test_cache_lru(void **state) {
        _cleanup_(exe_hash_cache_freep) ExeHashCache *c = NULL;
        char a[256], b[256], d[256];
        ExeHashCacheStats stats;

        assert_int_equal(exe_hash_cache_new(2, EXE_HASH_MAX_SIZE_DEFAULT, &c), 0);
        tmp_path("lru-a", a, sizeof a);
        tmp_path("lru-b", b, sizeof b);
        tmp_path("lru-d", d, sizeof d);
        write_file(a, "a", 1);
        write_file(b, "b", 1);
        write_file(d, "d", 1);

        cache_get_hex(c, a, NULL, 0);                   /* miss */
        cache_get_hex(c, b, NULL, 0);                   /* miss */
        assert_int_equal(cache_lookup_path(c, a), 1);  /* hit: a is now the most recent */
        cache_get_hex(c, d, NULL, 0);                   /* miss: evicts b, the least recent */

        exe_hash_cache_stats(c, &stats);
        assert_int_equal(stats.evictions, 1);
        assert_int_equal(stats.entries, 2);

        assert_int_equal(cache_lookup_path(c, a), 1);
        assert_int_equal(cache_lookup_path(c, d), 1);
        assert_int_equal(cache_lookup_path(c, b), 0);

        exe_hash_cache_stats(c, &stats);
        assert_int_equal(stats.hits, 3);
        assert_int_equal(stats.misses, 4);
        assert_int_equal(stats.evictions, 1);
}

/* Many files through a small cache: every answer right, counters add up. */
static void test_cache_churn(void **state) {
        _cleanup_(exe_hash_cache_freep) ExeHashCache *c = NULL;
        enum { N_FILES = 200, CAPACITY = 16, ROUNDS = 3 };
        static char hexes[N_FILES][SHA256_HEX_LEN + 1];
        ExeHashCacheStats stats;
        char path[256];
        uint64_t calls = 0;

        assert_int_equal(exe_hash_cache_new(CAPACITY, EXE_HASH_MAX_SIZE_DEFAULT, &c), 0);
        for (unsigned i = 0; i < N_FILES; i++) {
                char name[64], content[64];
                int n;

                snprintf(name, sizeof name, "churn-%u", i);
                n = snprintf(content, sizeof content, "file %u", i);
                tmp_path(name, path, sizeof path);
                write_file(path, content, (size_t) n);
                assert_int_equal(hash_path_hex(path, EXE_HASH_MAX_SIZE_DEFAULT, hexes[i]), 0);
        }

        for (unsigned round = 0; round < ROUNDS; round++)
                for (unsigned i = 0; i < N_FILES; i++) {
                        /* A hot set that stays cached, plus a sweep that keeps evicting. */
                        unsigned idx = (i % 2) ? i % 4 : i;
                        char name[64], hex[SHA256_HEX_LEN + 1];

                        snprintf(name, sizeof name, "churn-%u", idx);
                        tmp_path(name, path, sizeof path);
                        cache_get_hex(c, path, hex, 0);
                        assert_string_equal(hex, hexes[idx]);
                        calls++;
                }

        exe_hash_cache_stats(c, &stats);
        assert_int_equal(stats.hits + stats.misses, calls);
        assert_true(stats.hits > 0);
        assert_int_equal(stats.entries, CAPACITY);
        assert_int_equal(stats.evictions, stats.misses - CAPACITY);
}

typedef struct ThreadArg {
        ExeHashCache *cache;
        unsigned seed;
        unsigned calls;
        int failures;
} ThreadArg;

static char thread_hexes[8][SHA256_HEX_LEN + 1];

static void *thread_main(void *p) {
        ThreadArg *arg = p;

        for (unsigned i = 0; i < arg->calls; i++) {
                unsigned idx = (unsigned) rand_r(&arg->seed) % ELEMENTSOF(thread_hexes);
                char name[64], path[256], hex[SHA256_HEX_LEN + 1];
                uint8_t digest[SHA256_DIGEST_LEN];
                struct stat st;
                int fd;

                snprintf(name, sizeof name, "thread-%u", idx);
                snprintf(path, sizeof path, "%s/%s", tmpdir, name);
                fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0 || fstat(fd, &st) < 0 || exe_hash_cache_get(arg->cache, fd, &st, digest) < 0) {
                        arg->failures++;
                        safe_close(fd);
                        continue;
                }
                safe_close(fd);
                hex_encode(digest, sizeof digest, hex);
                if (!streq(hex, thread_hexes[idx]))
                        arg->failures++;
        }
        return NULL;
}

static void test_cache_threads(void **state) {
        _cleanup_(exe_hash_cache_freep) ExeHashCache *c = NULL;
        pthread_t threads[4];
        ThreadArg args[ELEMENTSOF(threads)];
        ExeHashCacheStats stats;
        uint64_t calls = 0;

        assert_int_equal(exe_hash_cache_new(4, EXE_HASH_MAX_SIZE_DEFAULT, &c), 0);
        for (unsigned i = 0; i < ELEMENTSOF(thread_hexes); i++) {
                uint8_t data[4096];
                char name[64], path[256];

                random_bytes(data, sizeof data);
                snprintf(name, sizeof name, "thread-%u", i);
                tmp_path(name, path, sizeof path);
                write_file(path, data, sizeof data);
                assert_int_equal(hash_path_hex(path, EXE_HASH_MAX_SIZE_DEFAULT, thread_hexes[i]), 0);
        }

        for (unsigned i = 0; i < ELEMENTSOF(threads); i++) {
                args[i] = (ThreadArg) { .cache = c, .seed = i + 1, .calls = 500 };
                assert_int_equal(pthread_create(&threads[i], NULL, thread_main, &args[i]), 0);
        }
        for (unsigned i = 0; i < ELEMENTSOF(threads); i++) {
                assert_int_equal(pthread_join(threads[i], NULL), 0);
                assert_int_equal(args[i].failures, 0);
                calls += args[i].calls;
        }

        exe_hash_cache_stats(c, &stats);
        assert_int_equal(stats.hits + stats.misses, calls);
        assert_true(stats.entries <= 4);
}

static void test_cache_new_refuses(void **state) {
        ExeHashCache *c = NULL;
        uint8_t digest[SHA256_DIGEST_LEN];
        struct stat st = {};

        assert_int_equal(exe_hash_cache_new(0, 1, &c), -EINVAL);
        assert_int_equal(exe_hash_cache_new(EXE_HASH_CACHE_ENTRIES_MAX + 1, 1, &c), -EINVAL);
        assert_null(c);
        assert_int_equal(exe_hash_cache_new(EXE_HASH_CACHE_ENTRIES_MAX, 1, &c), 0);
        assert_int_equal(exe_hash_cache_lookup(c, &st, digest), 0);
        assert_null(exe_hash_cache_free(c));
        assert_null(exe_hash_cache_free(NULL));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_hash_equals_sha256sum),
                cmocka_unit_test(test_hash_refuses),
                cmocka_unit_test(test_hash_detects_size_change),
                cmocka_unit_test(test_cache_rewrite_in_place),
                cmocka_unit_test(test_cache_too_large),
                cmocka_unit_test(test_cache_fill_counts_once),
                cmocka_unit_test(test_cache_lru),
                cmocka_unit_test(test_cache_churn),
                cmocka_unit_test(test_cache_threads),
                cmocka_unit_test(test_cache_new_refuses),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
