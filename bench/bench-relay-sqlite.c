/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The SQLite limit for the relay's durability (bench/README.md, "Relay";
 * run by bench/run-relay-bench.sh):
 *
 *   bench-relay-sqlite --dir DIR [--seconds S] [--rows N] [--size BYTES]
 *                      [--batches 1,64,512|none] [--db-batches 64|none]
 *
 * Each series gets a fresh store made by db_open() in DIR (so the schema,
 * its triggers, WAL and synchronous = FULL are exactly secd's), one
 * mailbox, and then inserts messages of --size bytes (distinct client
 * message ids) until --rows rows or --seconds seconds, whichever comes
 * first, committing every B rows:
 *
 *   raw  a prepared INSERT INTO messages on the store's own connection,
 *        BEGIN IMMEDIATE ... COMMIT around every B rows;
 *   db   what secd's writer does for a batch of B SEND jobs: db_begin(), a
 *        savepoint per job around db_message_insert() (duplicate check and
 *        quota against the mailbox counters), db_commit().
 *
 * Prints one line per series (key=value); exits non-zero only if something
 * did not work (an error from SQLite, rows missing afterwards), never on
 * timing. Files are removed after each series.
 */

#include <getopt.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <time.h>

#include "db-internal.h"
#include "db.h"
#include "macro.h"

#define SECONDS_DEFAULT 5
#define SECONDS_MAX 600
#define ROWS_DEFAULT 200000
#define ROWS_MAX 10000000
#define SIZE_DEFAULT 1024
#define BATCH_MAX 100000
#define BATCHES_MAX 16
#define TTL_USEC (INT64_C(30) * 24 * 3600 * 1000000)
#define SENDER "uid:4242"

static const char *arg_dir;
static unsigned arg_seconds = SECONDS_DEFAULT;
static uint64_t arg_rows = ROWS_DEFAULT;
static size_t arg_size = SIZE_DEFAULT;
static unsigned arg_batches[BATCHES_MAX] = { 1, 64, 512 };
static size_t arg_n_batches = 3;
static unsigned arg_db_batches[BATCHES_MAX] = { 64 };
static size_t arg_n_db_batches = 1;

static _noreturn_ void die(const char *fmt, ...) _printf_(1, 2);
static _noreturn_ void die(const char *fmt, ...) {
        va_list ap;

        fputs("bench-relay-sqlite: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        exit(EXIT_FAILURE);
}

static uint64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static int64_t realtime_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint64_t parse_u64(const char *s, uint64_t min, uint64_t max, const char *what) {
        char *end;
        unsigned long long v;

        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || end == s || *end || s[0] == '-' || v < min || v > max)
                die("%s: expected a number in %" PRIu64 "..%" PRIu64 ", got '%s'", what, min, max, s);
        return v;
}

/* "1,64,512", or "none" */
static size_t parse_list(const char *s, unsigned out[BATCHES_MAX], const char *what) {
        size_t n = 0;
        const char *p = s;

        if (strcmp(s, "none") == 0)
                return 0;

        for (;;) {
                char buf[16];
                size_t len = strcspn(p, ",");

                if (len == 0 || len >= sizeof buf)
                        die("%s: bad list '%s'", what, s);
                if (n >= BATCHES_MAX)
                        die("%s: at most %d sizes", what, BATCHES_MAX);
                memcpy(buf, p, len);
                buf[len] = 0;
                out[n++] = (unsigned) parse_u64(buf, 1, BATCH_MAX, what);
                if (!p[len])
                        return n;
                p += len + 1;
        }
}

/* The 16-byte client message id of row i: distinct per row and per series. */
static void client_msg_id(uint64_t series, uint64_t i, uint8_t out[DB_MSG_ID_SIZE]) {
        for (size_t k = 0; k < 8; k++) {
                out[k] = (uint8_t) (series >> (56 - 8 * k));
                out[8 + k] = (uint8_t) (i >> (56 - 8 * k));
        }
}

static void store_remove(const char *path) {
        static const char *const suffixes[] = { "", "-wal", "-shm", "-journal" };

        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                char p[4096];
                int n = snprintf(p, sizeof p, "%s%s", path, suffixes[i]);

                if (n < 0 || (size_t) n >= sizeof p)
                        die("path too long: %s", path);
                if (unlink(p) < 0 && errno != ENOENT)
                        die("unlink %s: %m", p);
        }
}

static void sql_exec(Db *db, sqlite3_stmt *stmt, const char *what) {
        int rc = sqlite3_step(stmt);

        if (rc != SQLITE_DONE)
                die("%s: %s", what, sqlite3_errmsg(db->sqlite));
        sqlite3_reset(stmt);
}

static sqlite3_stmt *sql_prepare(Db *db, const char *sql) {
        sqlite3_stmt *stmt = NULL;

        if (sqlite3_prepare_v3(db->sqlite, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL) != SQLITE_OK)
                die("prepare '%s': %s", sql, sqlite3_errmsg(db->sqlite));
        return stmt;
}

static uint64_t count_messages(Db *db, int64_t mailbox_id) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = sql_prepare(db, "SELECT count(*) FROM messages WHERE mailbox_id = ?");

        sqlite3_bind_int64(stmt, 1, mailbox_id);
        if (sqlite3_step(stmt) != SQLITE_ROW)
                die("count: %s", sqlite3_errmsg(db->sqlite));
        return (uint64_t) sqlite3_column_int64(stmt, 0);
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return (x > y) - (x < y);
}

static double percentile_us(const uint64_t *sorted, size_t n, double p) {
        size_t i;

        if (n == 0)
                return 0;
        i = (size_t) (p * (double) (n - 1) + 0.5);
        return (double) sorted[MIN(i, n - 1)] / 1e3;
}

typedef enum Path { PATH_RAW, PATH_DB } Path;

static void series(Path path, unsigned batch, uint64_t series_no, const uint8_t *body) {
        char file[4096];
        _cleanup_(db_closep) Db *db = NULL;
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *begin = NULL, *commit = NULL, *insert = NULL;
        uint8_t key[DB_MAILBOX_KEY_SIZE];
        const DbQuota quota = { .max_messages = UINT64_C(1) << 40, .max_bytes = UINT64_C(1) << 60 };
        uint64_t rows = 0, commits = 0, t0, t1, budget_ns = (uint64_t) arg_seconds * 1000000000u;
        uint64_t commit_ns = 0, commit_max_ns = 0;
        /* Every commit's duration, for its percentiles: at most one per row. */
        _cleanup_free_ uint64_t *commit_times = calloc(arg_rows, sizeof(uint64_t));
        int64_t mailbox_id;
        int n, r;

        if (!commit_times)
                die("out of memory");
        n = snprintf(file, sizeof file, "%s/relay-sqlite-%" PRIu64 ".db", arg_dir, series_no);
        if (n < 0 || (size_t) n >= sizeof file)
                die("--dir too long");
        store_remove(file);
        r = db_open(file, DB_OPEN_CREATE, &db);
        if (r < 0)
                die("db_open %s: %s", file, strerror(-r));

        /* One mailbox, registered the way secd registers one. */
        for (size_t i = 0; i < sizeof key; i++)
                key[i] = (uint8_t) (series_no * 31 + i);
        {
                bool created;

                r = db_mailbox_register(db, key, SENDER, realtime_usec(), &mailbox_id, &created);
                if (r < 0)
                        die("db_mailbox_register: %s (%s)", strerror(-r), db_last_error(db));
        }

        begin = sql_prepare(db, "BEGIN IMMEDIATE");
        commit = sql_prepare(db, "COMMIT");
        insert = sql_prepare(db, "INSERT INTO messages (mailbox_id, sender, client_msg_id, received_usec, "
                                 "expires_usec, body) VALUES (?, ?, ?, ?, ?, ?)");

        t0 = now_ns();
        t1 = t0;
        while (rows < arg_rows && t1 - t0 < budget_ns) {
                uint64_t c0;

                if (path == PATH_RAW)
                        sql_exec(db, begin, "BEGIN IMMEDIATE");
                else {
                        r = db_begin(db);
                        if (r < 0)
                                die("db_begin: %s (%s)", strerror(-r), db_last_error(db));
                }
                for (unsigned b = 0; b < batch && rows < arg_rows; b++, rows++) {
                        uint8_t id[DB_MSG_ID_SIZE];
                        int64_t now = realtime_usec();

                        client_msg_id(series_no, rows, id);
                        if (path == PATH_RAW) {
                                int rc;

                                sqlite3_bind_int64(insert, 1, mailbox_id);
                                sqlite3_bind_text(insert, 2, SENDER, -1, SQLITE_STATIC);
                                sqlite3_bind_blob(insert, 3, id, sizeof id, SQLITE_TRANSIENT);
                                sqlite3_bind_int64(insert, 4, now);
                                sqlite3_bind_int64(insert, 5, now + TTL_USEC);
                                sqlite3_bind_blob(insert, 6, body, (int) arg_size, SQLITE_STATIC);
                                rc = sqlite3_step(insert);
                                if (rc != SQLITE_DONE)
                                        die("INSERT: %s", sqlite3_errmsg(db->sqlite));
                                sqlite3_reset(insert);
                        } else {
                                /* As the writer runs one SEND job: in a savepoint of its own. */
                                _cleanup_db_txn_ DbTxn txn = {};
                                int64_t server_id;
                                bool duplicate;

                                r = db_txn_begin(db, &txn);
                                if (r >= 0)
                                        r = db_message_insert(db, mailbox_id, SENDER, id, body, arg_size, now,
                                                              now + TTL_USEC, &quota, &server_id, &duplicate);
                                if (r >= 0)
                                        r = db_txn_commit(&txn);
                                if (r < 0)
                                        die("db_message_insert: %s (%s)", strerror(-r), db_last_error(db));
                                if (duplicate)
                                        die("db_message_insert: a fresh client message id was a duplicate");
                        }
                }
                c0 = now_ns();
                if (path == PATH_RAW)
                        sql_exec(db, commit, "COMMIT");
                else {
                        r = db_commit(db);
                        if (r < 0)
                                die("db_commit: %s (%s)", strerror(-r), db_last_error(db));
                }
                t1 = now_ns();
                commit_ns += t1 - c0;
                commit_max_ns = MAX(commit_max_ns, t1 - c0);
                commit_times[commits++] = t1 - c0;
        }

        if (count_messages(db, mailbox_id) != rows)
                die("%" PRIu64 " rows inserted but %" PRIu64 " stored", rows, count_messages(db, mailbox_id));
        {
                uint64_t m, bytes;

                r = db_mailbox_usage(db, mailbox_id, &m, &bytes);
                if (r < 0)
                        die("db_mailbox_usage: %s (%s)", strerror(-r), db_last_error(db));
                if (m != rows || bytes != rows * arg_size)
                        die("mailbox counters say %" PRIu64 " messages, %" PRIu64 " bytes; expected %" PRIu64,
                            m, bytes, rows);
        }

        qsort(commit_times, commits, sizeof *commit_times, cmp_u64);
        printf("sqlite path=%s batch=%u rows=%" PRIu64 " commits=%" PRIu64 " seconds=%.3f inserts_per_s=%.0f "
               "commit_mean_us=%.0f commit_p50_us=%.0f commit_p99_us=%.0f commit_max_us=%.0f size=%zu\n",
               path == PATH_RAW ? "raw" : "db", batch, rows, commits, (double) (t1 - t0) / 1e9,
               rows * 1e9 / (double) MAX(t1 - t0, 1u), commits ? commit_ns / 1e3 / (double) commits : 0.0,
               percentile_us(commit_times, commits, 0.50), percentile_us(commit_times, commits, 0.99),
               commit_max_ns / 1e3, arg_size);
        fflush(stdout);

        /* Statements first: the store closes only without any. */
        sqlite3_finalize(TAKE_PTR(begin));
        sqlite3_finalize(TAKE_PTR(commit));
        sqlite3_finalize(TAKE_PTR(insert));
        db = db_close(db);
        store_remove(file);
}

static void help(void) {
        printf("usage: bench-relay-sqlite --dir DIR [--seconds S] [--rows N] [--size BYTES]\n"
               "                          [--batches 1,64,512|none] [--db-batches 64|none]\n");
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "dir", required_argument, NULL, 'd' },
                { "seconds", required_argument, NULL, 's' },
                { "rows", required_argument, NULL, 'n' },
                { "size", required_argument, NULL, 'z' },
                { "batches", required_argument, NULL, 'b' },
                { "db-batches", required_argument, NULL, 'B' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        _cleanup_free_ uint8_t *body = NULL;
        struct stat st;
        uint64_t series_no = 0;
        int c;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'd': arg_dir = optarg; break;
                case 's': arg_seconds = (unsigned) parse_u64(optarg, 1, SECONDS_MAX, "--seconds"); break;
                case 'n': arg_rows = parse_u64(optarg, 1, ROWS_MAX, "--rows"); break;
                case 'z': arg_size = (size_t) parse_u64(optarg, 1, 1u << 20, "--size"); break;
                case 'b': arg_n_batches = parse_list(optarg, arg_batches, "--batches"); break;
                case 'B': arg_n_db_batches = parse_list(optarg, arg_db_batches, "--db-batches"); break;
                case 'h': help(); return EXIT_SUCCESS;
                default: help(); return 2;
                }
        if (optind != argc || !arg_dir) {
                help();
                return 2;
        }
        if (stat(arg_dir, &st) < 0 || !S_ISDIR(st.st_mode))
                die("--dir %s: not a directory", arg_dir);

        /* Incompressible bytes, as an end-to-end-encrypted blob is. */
        body = malloc(arg_size);
        if (!body)
                die("out of memory");
        {
                FILE *f = fopen("/dev/urandom", "re");

                if (!f || fread(body, 1, arg_size, f) != arg_size)
                        die("/dev/urandom: %m");
                fclose(f);
        }

        for (size_t i = 0; i < arg_n_batches; i++)
                series(PATH_RAW, arg_batches[i], ++series_no, body);
        for (size_t i = 0; i < arg_n_db_batches; i++)
                series(PATH_DB, arg_db_batches[i], ++series_no, body);
        return EXIT_SUCCESS;
}
