/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What admission costs (bench/README.md):
 *   (a) per connection: process identity of a real peer (another process on
 *       a connected AF_UNIX socket) + warm-cache executable hash lookup +
 *       policy_evaluate() on a 1,000-rule snapshot whose matching rule is
 *       near the end; median µs per op;
 *   (b) cold hashing throughput of a 64 MiB file (page cache warm) through
 *       exe_hash_cache_get() against nettle's raw SHA-256 in the same run.
 * Prints numbers only; never fails on timing. Exit status is non-zero only
 * if something did not work (for example the verdict was not "allow").
 */

#include <fcntl.h>
#include <ftw.h>
#include <nettle/sha2.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include "exe-hash.h"
#include "identity.h"
#include "policy.h"
#include "strutil.h"

#define N_RULES 1000
#define MATCH_RULE_ID 990               /* near the end of the evaluation order */
#define OPS_MAX 20000
#define OPS_TIME_BUDGET_NS (UINT64_C(3) * 1000 * 1000 * 1000)
#define BIG_FILE_SIZE ((size_t) 64 << 20)
#define THROUGHPUT_RUNS 9

static char tmpdir[] = "/tmp/bench-admission-XXXXXX";

static uint64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

static _noreturn_ void die(const char *what, int r) {
        fprintf(stderr, "bench-admission: %s: %s\n", what, strerror(r < 0 ? -r : r));
        exit(EXIT_FAILURE);
}

/* ---- (a) per connection ---------------------------------------------- */

typedef struct Samples {
        uint64_t ns[OPS_MAX];
        size_t n;
} Samples;

static void samples_print(const char *label, Samples *s) {
        qsort(s->ns, s->n, sizeof s->ns[0], cmp_u64);
        printf("  %-36s median %8.2f µs   p90 %8.2f µs   p99 %8.2f µs   (n=%zu)\n",
               label,
               s->ns[s->n / 2] / 1000.0,
               s->ns[s->n * 9 / 10] / 1000.0,
               s->ns[s->n * 99 / 100] / 1000.0,
               s->n);
}

static pid_t spawn_peer(const char *sock_path, int *ret_conn) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct pollfd p;
        int lfd, cfd;
        pid_t pid;

        if (strlen(sock_path) >= sizeof sa.sun_path)
                die("socket path", ENAMETOOLONG);
        strcpy(sa.sun_path, sock_path);

        lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (lfd < 0 || bind(lfd, (struct sockaddr *) &sa, sizeof sa) < 0 || listen(lfd, 1) < 0)
                die("listen", errno);

        pid = fork();
        if (pid < 0)
                die("fork", errno);
        if (pid == 0) {
                int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                char c;

                if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                        _exit(1);
                while (read(fd, &c, 1) > 0)
                        ;
                _exit(0);
        }

        p = (struct pollfd) { .fd = lfd, .events = POLLIN };
        if (poll(&p, 1, 10000) != 1)
                die("peer did not connect", ETIMEDOUT);
        cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (cfd < 0)
                die("accept", errno);
        safe_close(lfd);
        *ret_conn = cfd;
        return pid;
}

static void random_bytes(void *p, size_t n) {
        uint8_t *b = p;

        while (n > 0) {
                ssize_t k = getrandom(b, n, 0);
                if (k < 0)
                        die("getrandom", errno);
                b += k;
                n -= (size_t) k;
        }
}

/*
 * 1,000 rules: 100 deny rules for other uids, then allow rules on other
 * uids/hashes/paths, and at id MATCH_RULE_ID the one that allows the peer
 * (uid + sha256 + endpoint). Deny rules come first in evaluation order, so
 * the pass crosses ~990 rules before it matches.
 */
static PolicySnapshot *build_policy(uint32_t uid, const uint8_t sha256[SHA256_DIGEST_LEN]) {
        PolicySnapshot *s = NULL;
        PolicyRule *rules;
        int r;

        rules = calloc(N_RULES, sizeof *rules);
        if (!rules)
                die("calloc", ENOMEM);

        for (size_t i = 0; i < N_RULES; i++) {
                PolicyRule *rule = &rules[i];
                int64_t id = (int64_t) i + 1;

                rule->id = id;
                rule->endpoint = POLICY_ENDPOINT_DATA;
                if (id <= 100) {
                        rule->action = POLICY_ACTION_DENY;
                        rule->selectors = POLICY_SEL_UID;
                        rule->uid = 100000 + (uint32_t) id;
                } else if (id == MATCH_RULE_ID) {
                        rule->action = POLICY_ACTION_ALLOW;
                        rule->selectors = POLICY_SEL_UID | POLICY_SEL_SHA256 | POLICY_SEL_ENDPOINT;
                        rule->uid = uid;
                        memcpy(rule->sha256, sha256, SHA256_DIGEST_LEN);
                } else if (id % 3 == 0) {
                        /* Same uid as the peer, another binary: must not match. */
                        rule->action = POLICY_ACTION_ALLOW;
                        rule->selectors = POLICY_SEL_UID | POLICY_SEL_SHA256;
                        rule->uid = uid;
                        random_bytes(rule->sha256, SHA256_DIGEST_LEN);
                } else if (id % 3 == 1) {
                        char path[64];

                        rule->action = POLICY_ACTION_ALLOW;
                        rule->selectors = POLICY_SEL_PATH;
                        snprintf(path, sizeof path, "/usr/lib/bench/app-%lld", (long long) id);
                        rule->path = strdup(path);
                        if (!rule->path)
                                die("strdup", ENOMEM);
                } else {
                        rule->action = POLICY_ACTION_ALLOW;
                        rule->selectors = POLICY_SEL_GID | POLICY_SEL_ENDPOINT;
                        rule->gid = 200000 + (uint32_t) id;
                        rule->endpoint = POLICY_ENDPOINT_ENROLL;
                }
        }

        r = policy_snapshot_new(rules, N_RULES, 1, POLICY_MODE_ENFORCE, &s);
        if (r < 0)
                die("policy_snapshot_new", r);
        return s;
}

static bool budget_left(size_t n, uint64_t start) {
        return n < OPS_MAX && now_ns() - start < OPS_TIME_BUDGET_NS;
}

static int bench_per_connection(void) {
        _cleanup_(exe_hash_cache_freep) ExeHashCache *cache = NULL;
        _cleanup_(policy_snapshot_unrefp) PolicySnapshot *snapshot = NULL;
        _cleanup_(process_identity_freep) ProcessIdentity *first = NULL;
        static Samples all, identity, lookup, evaluate;
        uint8_t digest[SHA256_DIGEST_LEN];
        char sock_path[256];
        PolicyVerdict verdict;
        uint64_t start;
        int conn, r;
        pid_t pid;

        snprintf(sock_path, sizeof sock_path, "%s/admission.sock", tmpdir);
        pid = spawn_peer(sock_path, &conn);

        r = exe_hash_cache_new(EXE_HASH_CACHE_ENTRIES_DEFAULT, EXE_HASH_MAX_SIZE_DEFAULT, &cache);
        if (r < 0)
                die("exe_hash_cache_new", r);
        r = process_identity_from_socket(conn, &first);
        if (r < 0)
                die("process_identity_from_socket", r);
        r = exe_hash_cache_get(cache, first->exe_fd, &first->exe_stat, digest); /* warm the cache */
        if (r < 0)
                die("exe_hash_cache_get", r);
        snapshot = build_policy(first->uid, digest);

        printf("(a) per connection: peer pid %d (%s), %d rules, match at id %d\n",
               (int) pid, first->exe_path, N_RULES, MATCH_RULE_ID);

        /* Warm-up, untimed. */
        for (unsigned i = 0; i < 200; i++) {
                _cleanup_(process_identity_freep) ProcessIdentity *id = NULL;
                if (process_identity_from_socket(conn, &id) < 0)
                        die("warm-up", EIO);
        }

        /* The whole per-connection admission path, as one op. */
        start = now_ns();
        while (budget_left(all.n, start)) {
                ProcessIdentity *id = NULL;
                uint64_t t0 = now_ns();

                r = process_identity_from_socket(conn, &id);
                if (r < 0)
                        die("process_identity_from_socket", r);
                r = exe_hash_cache_get(cache, id->exe_fd, &id->exe_stat, digest);
                if (r < 0)
                        die("exe_hash_cache_get", r);
                policy_evaluate(snapshot, &(PolicyQuery) {
                                        .uid = id->uid,
                                        .gid = id->gid,
                                        .supplementary_gids = id->supplementary_gids,
                                        .n_supplementary_gids = id->n_supplementary_gids,
                                        .exe_path = id->exe_path,
                                        .exe_sha256 = digest,
                                        .endpoint = POLICY_ENDPOINT_DATA,
                                }, &verdict);
                all.ns[all.n++] = now_ns() - t0;
                process_identity_free(id);

                if (!verdict.allow || !verdict.rule || verdict.rule->id != MATCH_RULE_ID) {
                        fprintf(stderr, "bench-admission: unexpected verdict (%s)\n",
                                policy_reason_to_string(verdict.reason));
                        return -EPROTO;
                }
        }

        /* The parts alone, to see where the time goes. */
        start = now_ns();
        while (budget_left(identity.n, start)) {
                ProcessIdentity *id = NULL;
                uint64_t t0 = now_ns();

                r = process_identity_from_socket(conn, &id);
                identity.ns[identity.n++] = now_ns() - t0;
                if (r < 0)
                        die("process_identity_from_socket", r);
                process_identity_free(id);
        }

        start = now_ns();
        while (budget_left(lookup.n, start)) {
                uint64_t t0 = now_ns();

                r = exe_hash_cache_get(cache, first->exe_fd, &first->exe_stat, digest);
                lookup.ns[lookup.n++] = now_ns() - t0;
                if (r < 0)
                        die("exe_hash_cache_get", r);
        }

        start = now_ns();
        while (budget_left(evaluate.n, start)) {
                uint64_t t0 = now_ns();

                policy_evaluate(snapshot, &(PolicyQuery) {
                                        .uid = first->uid,
                                        .gid = first->gid,
                                        .supplementary_gids = first->supplementary_gids,
                                        .n_supplementary_gids = first->n_supplementary_gids,
                                        .exe_path = first->exe_path,
                                        .exe_sha256 = digest,
                                        .endpoint = POLICY_ENDPOINT_DATA,
                                }, &verdict);
                evaluate.ns[evaluate.n++] = now_ns() - t0;
        }

        samples_print("identity + lookup + evaluate", &all);
        samples_print("  process_identity_from_socket", &identity);
        samples_print("  exe_hash_cache_get (warm)", &lookup);
        samples_print("  policy_evaluate (1000 rules)", &evaluate);
        printf("  target: identity + lookup + evaluate <= 20 µs (median)\n");

        safe_close(conn);
        (void) waitpid(pid, NULL, 0);
        return 0;
}

/* ---- (b) cold hashing throughput --------------------------------------- */

static double mb_per_s(size_t bytes, uint64_t ns) {
        return (double) bytes / (1024.0 * 1024.0) / ((double) ns / 1e9);
}

/* The policy code: a fresh cache, so the file is hashed (a miss). */
static uint64_t run_policy(int fd, const struct stat *st, uint8_t out[SHA256_DIGEST_LEN]) {
        _cleanup_(exe_hash_cache_freep) ExeHashCache *cache = NULL;
        uint64_t t0;
        int r;

        r = exe_hash_cache_new(EXE_HASH_CACHE_ENTRIES_DEFAULT, EXE_HASH_MAX_SIZE_DEFAULT, &cache);
        if (r < 0)
                die("exe_hash_cache_new", r);
        t0 = now_ns();
        r = exe_hash_cache_get(cache, fd, st, out);
        if (r < 0)
                die("exe_hash_cache_get", r);
        return now_ns() - t0;
}

/* Raw nettle over the file read the simplest way: read() into 64 KiB, update. */
static uint64_t run_raw_read(const char *path, uint8_t out[SHA256_DIGEST_LEN]) {
        static uint8_t buf[64 * 1024];
        struct sha256_ctx ctx;
        uint64_t t0 = now_ns();
        ssize_t n;
        int fd;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                die("open", errno);
        sha256_init(&ctx);
        while ((n = read(fd, buf, sizeof buf)) > 0)
                sha256_update(&ctx, (size_t) n, buf);
        if (n < 0)
                die("read", errno);
        sha256_digest(&ctx, SHA256_DIGEST_SIZE, out);
        safe_close(fd);
        return now_ns() - t0;
}

/* Raw nettle over the same bytes already in memory: the ceiling, no I/O at all. */
static uint64_t run_raw_memory(const uint8_t *data, size_t size, uint8_t out[SHA256_DIGEST_LEN]) {
        struct sha256_ctx ctx;
        uint64_t t0 = now_ns();

        sha256_init(&ctx);
        sha256_update(&ctx, size, data);
        sha256_digest(&ctx, SHA256_DIGEST_SIZE, out);
        return now_ns() - t0;
}

/* The alternative exe-hash.c did not take: mmap() the file and hash the map. */
static uint64_t run_mmap(int fd, size_t size, uint8_t out[SHA256_DIGEST_LEN]) {
        struct sha256_ctx ctx;
        uint64_t t0 = now_ns();
        void *p;

        p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED)
                die("mmap", errno);
        (void) madvise(p, size, MADV_SEQUENTIAL);
        sha256_init(&ctx);
        sha256_update(&ctx, size, p);
        sha256_digest(&ctx, SHA256_DIGEST_SIZE, out);
        munmap(p, size);
        return now_ns() - t0;
}

static double median(double *v, size_t n) {
        qsort(v, n, sizeof v[0], cmp_double);
        return v[n / 2];
}

static int bench_throughput(void) {
        double policy[THROUGHPUT_RUNS], raw_read[THROUGHPUT_RUNS], raw_mem[THROUGHPUT_RUNS], mapped[THROUGHPUT_RUNS];
        uint8_t d_policy[SHA256_DIGEST_LEN], d_read[SHA256_DIGEST_LEN], d_mem[SHA256_DIGEST_LEN], d_map[SHA256_DIGEST_LEN];
        _cleanup_free_ uint8_t *data = NULL;
        _cleanup_close_ int fd = -EBADF;
        char path[256];
        struct stat st;
        double m_policy, m_read, m_mem, m_map;

        snprintf(path, sizeof path, "%s/big", tmpdir);
        data = malloc(BIG_FILE_SIZE);
        if (!data)
                die("malloc", ENOMEM);
        random_bytes(data, BIG_FILE_SIZE);

        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
                die("open", errno);
        for (size_t off = 0; off < BIG_FILE_SIZE;) {
                ssize_t n = pwrite(fd, data + off, BIG_FILE_SIZE - off, (off_t) off);
                if (n <= 0)
                        die("pwrite", n < 0 ? errno : EIO);
                off += (size_t) n;
        }
        if (fstat(fd, &st) < 0)
                die("fstat", errno);

        /* Page cache warm: one untimed pass of each. */
        (void) run_raw_read(path, d_read);
        (void) run_policy(fd, &st, d_policy);

        /* Interleaved, so drift (frequency, neighbours) hits every variant alike. */
        for (unsigned i = 0; i < THROUGHPUT_RUNS; i++) {
                policy[i] = mb_per_s(BIG_FILE_SIZE, run_policy(fd, &st, d_policy));
                raw_read[i] = mb_per_s(BIG_FILE_SIZE, run_raw_read(path, d_read));
                raw_mem[i] = mb_per_s(BIG_FILE_SIZE, run_raw_memory(data, BIG_FILE_SIZE, d_mem));
                mapped[i] = mb_per_s(BIG_FILE_SIZE, run_mmap(fd, BIG_FILE_SIZE, d_map));
        }
        if (memcmp(d_policy, d_read, sizeof d_policy) != 0 || memcmp(d_policy, d_mem, sizeof d_policy) != 0 ||
            memcmp(d_policy, d_map, sizeof d_policy) != 0) {
                fprintf(stderr, "bench-admission: digests differ\n");
                return -EPROTO;
        }

        m_policy = median(policy, THROUGHPUT_RUNS);
        m_read = median(raw_read, THROUGHPUT_RUNS);
        m_mem = median(raw_mem, THROUGHPUT_RUNS);
        m_map = median(mapped, THROUGHPUT_RUNS);

        printf("(b) cold hashing of a 64 MiB file, page cache warm, median of %d runs\n", THROUGHPUT_RUNS);
        printf("  %-44s %8.1f MB/s\n", "exe_hash_cache_get (miss; pread 1 MiB)", m_policy);
        printf("  %-44s %8.1f MB/s\n", "raw nettle, read() 64 KiB chunks", m_read);
        printf("  %-44s %8.1f MB/s\n", "raw nettle, bytes already in memory", m_mem);
        printf("  %-44s %8.1f MB/s\n", "(alternative) mmap + nettle", m_map);
        printf("  ratio policy / raw nettle (read):    %.3f   (target >= 0.9)\n", m_policy / m_read);
        printf("  ratio policy / raw nettle (memory):  %.3f\n", m_policy / m_mem);
        return 0;
}

static int rm_entry(const char *p, const struct stat *st, int type, struct FTW *ftw) {
        return remove(p);
}

int main(int argc, char *argv[]) {
        int r, k;

        if (!mkdtemp(tmpdir))
                die("mkdtemp", errno);

        r = bench_per_connection();
        printf("\n");
        k = bench_throughput();

        (void) nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        return r < 0 || k < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
