/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <cmocka.h>

#include "db-internal.h"
#include "db.h"

/* ---- fixture: a fresh temp dir per test, removed with everything in it ---- */

typedef struct Fixture {
        char *dir;
        char *path;     /* dir/secd.db, not created */
} Fixture;

static int fixture_setup(void **state) {
        Fixture *f = calloc(1, sizeof *f);
        char template[] = "/tmp/test-db-XXXXXX";

        assert_non_null(f);
        assert_non_null(mkdtemp(template));
        f->dir = strdup(template);
        assert_non_null(f->dir);
        assert_true(asprintf(&f->path, "%s/secd.db", f->dir) > 0);
        *state = f;
        return 0;
}

static int fixture_teardown(void **state) {
        Fixture *f = *state;
        DIR *d = opendir(f->dir);
        struct dirent *de;

        assert_non_null(d);
        while ((de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                assert_int_equal(unlinkat(dirfd(d), de->d_name, 0), 0);
        }
        closedir(d);
        assert_int_equal(rmdir(f->dir), 0);
        free(f->path);
        free(f->dir);
        free(f);
        return 0;
}

/* ---- helpers ---- */

static void *file_read(const char *path, size_t *ret_len) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        uint8_t *buf;
        size_t done = 0;

        assert_true(fd >= 0);
        assert_int_equal(fstat(fd, &st), 0);
        assert_true(st.st_size < 64 * 1024 * 1024);
        buf = malloc((size_t) st.st_size + 1);
        assert_non_null(buf);
        while (done < (size_t) st.st_size) {
                ssize_t n = read(fd, buf + done, (size_t) st.st_size - done);
                assert_true(n > 0);
                done += (size_t) n;
        }
        *ret_len = done;
        return buf;
}

static void file_write(const char *path, const void *data, size_t len) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

        assert_true(fd >= 0);
        assert_true(write(fd, data, len) == (ssize_t) len);
}

static bool file_exists(const char *path) {
        return access(path, F_OK) == 0;
}

static void raw_exec(const char *path, const char *sql) {
        sqlite3 *s = NULL;
        char *err = NULL;

        assert_int_equal(sqlite3_open_v2(path, &s, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL), SQLITE_OK);
        if (sqlite3_exec(s, sql, NULL, NULL, &err) != SQLITE_OK)
                fail_msg("%s: %s", sql, err);
        assert_int_equal(sqlite3_close(s), SQLITE_OK);
}

static int64_t raw_int(const char *path, const char *sql) {
        sqlite3 *s = NULL;
        sqlite3_stmt *stmt = NULL;
        int64_t v;

        assert_int_equal(sqlite3_open_v2(path, &s, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(s, sql, -1, &stmt, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
        v = sqlite3_column_int64(stmt, 0);
        sqlite3_finalize(stmt);
        assert_int_equal(sqlite3_close(s), SQLITE_OK);
        return v;
}

/* Run SQL on the handle's own connection (checks what the handle is configured with). */
static int64_t handle_int(Db *db, const char *sql) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;

        assert_int_equal(sqlite3_prepare_v2(db->sqlite, sql, -1, &stmt, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
        return sqlite3_column_int64(stmt, 0);
}

static char *string_of(size_t n, char c) {
        char *s = malloc(n + 1);

        assert_non_null(s);
        memset(s, c, n);
        s[n] = '\0';
        return s;
}

static uint64_t generation(Db *db) {
        uint64_t g;

        assert_int_equal(db_policy_generation(db, &g), 0);
        return g;
}

static size_t rule_count(Db *db) {
        PolicyRule *rules = NULL;
        size_t n = 0;

        assert_int_equal(db_rules_load(db, &rules, &n), 0);
        policy_rules_free(rules, n);
        return n;
}

static PolicyRule rule_uid(PolicyAction action, uint32_t uid) {
        return (PolicyRule) {
                .action = action,
                .selectors = POLICY_SEL_UID,
                .uid = uid,
        };
}

static void assert_rule_equal(const PolicyRule *a, const PolicyRule *b) {
        assert_int_equal(a->action, b->action);
        assert_int_equal(a->selectors, b->selectors);
        if (a->selectors & POLICY_SEL_UID) {
                assert_int_equal(a->uid, b->uid);
                assert_true(streq_ptr(a->user, b->user));
        }
        if (a->selectors & POLICY_SEL_GID) {
                assert_int_equal(a->gid, b->gid);
                assert_true(streq_ptr(a->group, b->group));
        }
        if (a->selectors & POLICY_SEL_PATH)
                assert_string_equal(a->path, b->path);
        if (a->selectors & POLICY_SEL_SHA256)
                assert_memory_equal(a->sha256, b->sha256, SHA256_DIGEST_LEN);
        if (a->selectors & POLICY_SEL_ENDPOINT)
                assert_int_equal(a->endpoint, b->endpoint);
        if (a->selectors & POLICY_SEL_CERT)
                assert_string_equal(a->cert, b->cert);
        assert_true(streq_ptr(a->comment, b->comment));
}

static Db *open_new(const char *path) {
        Db *db = NULL;
        int r;

        r = db_open(path, DB_OPEN_CREATE, &db);
        if (r < 0)
                fail_msg("db_open(%s): %d: %s", path, r, db_last_error(NULL));
        assert_non_null(db);
        return db;
}

/* Open must fail with `expected` and leave every byte of the file as it was. */
static void assert_open_refused_unchanged(const char *path, DbOpenFlags flags, int expected, const char *needle) {
        _cleanup_free_ void *before = NULL, *after = NULL;
        size_t n_before, n_after;
        Db *db = NULL;
        int r;

        before = file_read(path, &n_before);
        r = db_open(path, flags, &db);
        assert_int_equal(r, expected);
        assert_null(db);
        assert_non_null(strstr(db_last_error(NULL), needle));
        after = file_read(path, &n_after);
        assert_int_equal(n_before, n_after);
        assert_memory_equal(before, after, n_before);
}

static uint64_t now_monotonic_usec(void) {
        struct timespec ts;

        assert_int_equal(clock_gettime(CLOCK_MONOTONIC, &ts), 0);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

/* ---- open, schema, migrations ---- */

static void test_create_reopen(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *value = NULL;
        PolicyRule r = rule_uid(POLICY_ACTION_ALLOW, 1000);
        PolicyRule *rules = NULL;
        size_t n;
        int64_t id;
        int version;
        Db *db;

        db = open_new(f->path);
        assert_int_equal(db_schema_version(db, &version), 0);
        assert_int_equal(version, DB_SCHEMA_VERSION_LATEST);
        /* The handle runs as the design says. */
        assert_int_equal(handle_int(db, "PRAGMA foreign_keys"), 1);
        assert_int_equal(handle_int(db, "PRAGMA application_id"), DB_APPLICATION_ID);
        assert_int_equal(handle_int(db, "PRAGMA synchronous"), 2);    /* FULL */
        assert_int_equal(handle_int(db,
                                    "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND "
                                    "name IN ('settings', 'rules', 'certificates', 'revocations', "
                                    "'mailboxes', 'messages', 'identity_keys', 'signed_prekeys', "
                                    "'one_time_prekeys', 'audit')"),
                         10);
        /* Every table of ours is STRICT. */
        assert_int_equal(handle_int(db,
                                    "SELECT count(*) FROM pragma_table_list WHERE schema = 'main' AND "
                                    "name NOT LIKE 'sqlite_%' AND strict = 0"),
                         0);

        assert_int_equal(db_rule_insert(db, &r, &id), 0);
        assert_true(id > 0);
        assert_int_equal(db_setting_set(db, "ca.validity", "1h"), 0);
        assert_int_equal(db_policy_set_mode(db, POLICY_MODE_PERMISSIVE), 0);
        assert_int_equal(db_audit_append(db, &(DbAuditEntry) { .kind = (char *) "policy",
                                                               .message = (char *) "rule added" },
                                         NULL),
                         0);
        db = db_close(db);
        assert_null(db);

        assert_int_equal(raw_int(f->path, "SELECT journal_mode = 'wal' FROM pragma_journal_mode"), 1);
        assert_int_equal(raw_int(f->path, "PRAGMA user_version"), DB_SCHEMA_VERSION_LATEST);

        /* Reopen without DB_OPEN_CREATE: same data. */
        assert_int_equal(db_open(f->path, 0, &db), 0);
        assert_int_equal(db_schema_version(db, &version), 0);
        assert_int_equal(version, DB_SCHEMA_VERSION_LATEST);
        assert_int_equal(db_rules_load(db, &rules, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(rules[0].id, id);
        assert_rule_equal(&rules[0], &r);
        policy_rules_free(rules, n);
        assert_int_equal(db_setting_get(db, "ca.validity", &value), 0);
        assert_string_equal(value, "1h");
        assert_int_equal(generation(db), 2);
        {
                PolicyMode m;

                assert_int_equal(db_policy_mode(db, &m), 0);
                assert_int_equal(m, POLICY_MODE_PERMISSIVE);
        }
        db_close(db);
}

static void test_memory(void **state) {
        _cleanup_(db_closep) Db *db = NULL;
        PolicyRule r = rule_uid(POLICY_ACTION_DENY, 0);
        PolicyMode m;

        assert_int_equal(db_open(":memory:", 0, &db), 0);
        assert_int_equal(db_policy_mode(db, &m), 0);
        assert_int_equal(m, POLICY_MODE_ENFORCE);
        assert_int_equal(generation(db), 0);
        assert_int_equal(db_rule_insert(db, &r, NULL), 0);
        assert_int_equal(rule_count(db), 1);
}

static void test_open_missing(void **state) {
        Fixture *f = *state;
        Db *db = NULL;

        assert_int_equal(db_open(f->path, DB_OPEN_READONLY, &db), -ENOENT);
        assert_null(db);
        assert_non_null(strstr(db_last_error(NULL), f->path));
        assert_int_equal(db_open(f->path, 0, &db), -ENOENT);
        assert_null(db);
        assert_false(file_exists(f->path));

        assert_int_equal(db_open(f->path, DB_OPEN_READONLY | DB_OPEN_CREATE, &db), -EINVAL);
        assert_int_equal(db_open(NULL, DB_OPEN_CREATE, &db), -EINVAL);
        assert_int_equal(db_open(f->path, 1 << 7, &db), -EINVAL);
        assert_false(file_exists(f->path));

        /* A directory is not a database. */
        assert_int_equal(db_open(f->dir, 0, &db), -EISDIR);
}

static void test_readonly(void **state) {
        Fixture *f = *state;
        PolicyRule r = rule_uid(POLICY_ACTION_ALLOW, 1000);
        Db *db = open_new(f->path), *ro = NULL;

        assert_int_equal(db_rule_insert(db, &r, NULL), 0);
        db_close(db);

        assert_int_equal(db_open(f->path, DB_OPEN_READONLY, &ro), 0);
        assert_int_equal(rule_count(ro), 1);
        assert_int_equal(db_rule_insert(ro, &r, NULL), -EROFS);
        assert_int_equal(db_setting_set(ro, "a", "b"), -EROFS);
        /* A read transaction works on a read-only handle. */
        assert_int_equal(db_begin(ro), 0);
        assert_int_equal(rule_count(ro), 1);
        assert_int_equal(db_commit(ro), 0);
        db_close(ro);
}

static void test_newer_schema_refused(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *sql = NULL;

        db_close(open_new(f->path));
        assert_true(asprintf(&sql, "PRAGMA user_version = %d", DB_SCHEMA_VERSION_LATEST + 1) > 0);
        raw_exec(f->path, sql);

        assert_open_refused_unchanged(f->path, 0, -EPROTONOSUPPORT, "newer");
        assert_open_refused_unchanged(f->path, DB_OPEN_CREATE, -EPROTONOSUPPORT, "newer");
        assert_open_refused_unchanged(f->path, DB_OPEN_READONLY, -EPROTONOSUPPORT, "newer");
        assert_int_equal(raw_int(f->path, "PRAGMA user_version"), DB_SCHEMA_VERSION_LATEST + 1);
}

static void test_random_bytes_refused(void **state) {
        Fixture *f = *state;
        uint8_t junk[16384];

        assert_int_equal(getrandom(junk, sizeof junk, 0), (ssize_t) sizeof junk);
        file_write(f->path, junk, sizeof junk);

        assert_open_refused_unchanged(f->path, 0, -EBADMSG, "not a database");
        assert_open_refused_unchanged(f->path, DB_OPEN_CREATE, -EBADMSG, "not a database");
        assert_open_refused_unchanged(f->path, DB_OPEN_READONLY, -EBADMSG, "not a database");
}

static void test_text_file_refused(void **state) {
        Fixture *f = *state;
        static const char text[] =
                "# this is someone's notes file, not a database\n"
                "secd should never write here.\n";

        file_write(f->path, text, strlen(text));
        assert_open_refused_unchanged(f->path, 0, -EBADMSG, "not a database");
        assert_open_refused_unchanged(f->path, DB_OPEN_CREATE, -EBADMSG, "not a database");
}

static void test_corrupt_database_refused(void **state) {
        Fixture *f = *state;
        _cleanup_free_ uint8_t *data = NULL;
        size_t n;
        Db *db;

        /* A real secd store whose pages after the header are overwritten. */
        db = open_new(f->path);
        for (unsigned i = 0; i < 50; i++) {
                PolicyRule r = rule_uid(POLICY_ACTION_ALLOW, i);
                assert_int_equal(db_rule_insert(db, &r, NULL), 0);
        }
        db_close(db);
        data = file_read(f->path, &n);
        assert_true(n > 4096);
        memset(data + 100, 0xa5, n - 100);
        file_write(f->path, data, n);

        assert_open_refused_unchanged(f->path, 0, -EBADMSG, "corrupt");
}

static void test_foreign_sqlite_refused(void **state) {
        Fixture *f = *state;

        /* Another application's database. */
        raw_exec(f->path, "PRAGMA application_id = 305419896; CREATE TABLE t(x); INSERT INTO t VALUES (1);");
        assert_open_refused_unchanged(f->path, 0, -EBADMSG, "another application");
        assert_open_refused_unchanged(f->path, DB_OPEN_CREATE, -EBADMSG, "another application");
        assert_open_refused_unchanged(f->path, DB_OPEN_READONLY, -EBADMSG, "another application");
        assert_int_equal(unlink(f->path), 0);

        /* ... even an empty one: its id says it is not ours. */
        raw_exec(f->path, "PRAGMA application_id = 305419896;");
        assert_open_refused_unchanged(f->path, DB_OPEN_CREATE, -EBADMSG, "another application");
        assert_int_equal(unlink(f->path), 0);

        /* No marker but tables: not ours either. */
        raw_exec(f->path, "CREATE TABLE rules(x); INSERT INTO rules VALUES ('mine');");
        assert_open_refused_unchanged(f->path, 0, -EBADMSG, "without the secd marker");
        assert_open_refused_unchanged(f->path, DB_OPEN_CREATE, -EBADMSG, "without the secd marker");
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM rules"), 1);
}

static void copy_file(const char *from, const char *to) {
        _cleanup_free_ void *data = NULL;
        size_t n;

        data = file_read(from, &n);
        file_write(to, data, n);
}

static void test_foreign_wal_not_checkpointed(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *src = NULL, *src_wal = NULL, *wal = NULL;
        _cleanup_free_ void *wal_before = NULL, *wal_after = NULL;
        size_t n_before, n_after;
        sqlite3 *s = NULL;

        /*
         * A foreign WAL database whose committed data still sits in its -wal
         * file (as after a crash): refusing it must not checkpoint that into
         * the main file, nor remove the -wal.
         */
        assert_true(asprintf(&src, "%s/src.db", f->dir) > 0);
        assert_true(asprintf(&src_wal, "%s-wal", src) > 0);
        assert_true(asprintf(&wal, "%s-wal", f->path) > 0);
        assert_int_equal(sqlite3_open(src, &s), SQLITE_OK);
        assert_int_equal(sqlite3_exec(s,
                                      "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;"
                                      "CREATE TABLE t(x); INSERT INTO t VALUES (1), (2), (3);",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
        copy_file(src, f->path);
        copy_file(src_wal, wal);
        assert_int_equal(sqlite3_close(s), SQLITE_OK);

        wal_before = file_read(wal, &n_before);
        assert_true(n_before > 0);
        assert_open_refused_unchanged(f->path, DB_OPEN_CREATE, -EBADMSG, "without the secd marker");
        assert_true(file_exists(wal));
        wal_after = file_read(wal, &n_after);
        assert_int_equal(n_before, n_after);
        assert_memory_equal(wal_before, wal_after, n_before);
}

static void test_empty_file(void **state) {
        Fixture *f = *state;
        Db *db = NULL;
        int version;

        /* A zero-length file holds nothing to lose: SQLite calls it an empty database. */
        file_write(f->path, "", 0);
        assert_int_equal(db_open(f->path, 0, &db), -ENOENT);
        assert_int_equal(db_open(f->path, DB_OPEN_CREATE, &db), 0);
        assert_int_equal(db_schema_version(db, &version), 0);
        assert_int_equal(version, DB_SCHEMA_VERSION_LATEST);
        db_close(db);
}

static void test_migration_failure_keeps_version(void **state) {
        Fixture *f = *state;
        /* The real steps, then one more: LATEST + 1. */
        DbMigration good[DB_SCHEMA_VERSION_LATEST + 1], bad[DB_SCHEMA_VERSION_LATEST + 1];
        PolicyRule r = rule_uid(POLICY_ACTION_ALLOW, 42);
        _cleanup_free_ char *step = NULL;
        Db *db = NULL;
        int version;

        for (size_t i = 0; i < DB_SCHEMA_VERSION_LATEST; i++)
                good[i] = bad[i] = db_migrations[i];
        good[DB_SCHEMA_VERSION_LATEST] = (DbMigration) {
                DB_SCHEMA_VERSION_LATEST + 1, "add a table", "CREATE TABLE extra(x INTEGER) STRICT;"
        };
        bad[DB_SCHEMA_VERSION_LATEST] = (DbMigration) {
                DB_SCHEMA_VERSION_LATEST + 1, "half-broken step",
                "CREATE TABLE extra(x INTEGER) STRICT; INSERT INTO no_such_table VALUES (1);"
        };
        assert_true(asprintf(&step, "migration %d", DB_SCHEMA_VERSION_LATEST + 1) > 0);

        assert_int_equal(db_open_with_migrations(f->path, DB_OPEN_CREATE, db_migrations, DB_SCHEMA_VERSION_LATEST, &db), 0);
        assert_int_equal(db_rule_insert(db, &r, NULL), 0);
        db_close(db);

        db = NULL;
        assert_true(db_open_with_migrations(f->path, 0, bad, ELEMENTSOF(bad), &db) < 0);
        assert_null(db);
        assert_non_null(strstr(db_last_error(NULL), step));
        assert_non_null(strstr(db_last_error(NULL), "no_such_table"));

        /* The latest version intact, the half-done step gone, data kept. */
        assert_int_equal(raw_int(f->path, "PRAGMA user_version"), DB_SCHEMA_VERSION_LATEST);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_schema WHERE name = 'extra'"), 0);
        assert_int_equal(db_open(f->path, 0, &db), 0);
        assert_int_equal(rule_count(db), 1);
        db_close(db);

        /* The step fixed: it applies, and older code then refuses the newer store. */
        assert_int_equal(db_open_with_migrations(f->path, 0, good, ELEMENTSOF(good), &db), 0);
        assert_int_equal(db_schema_version(db, &version), 0);
        assert_int_equal(version, DB_SCHEMA_VERSION_LATEST + 1);
        assert_int_equal(rule_count(db), 1);
        db_close(db);
        db = NULL;
        assert_int_equal(db_open(f->path, 0, &db), -EPROTONOSUPPORT);
        assert_null(db);

        /* Migration lists must be numbered 1..n. */
        assert_int_equal(db_open_with_migrations(f->path, 0, good + DB_SCHEMA_VERSION_LATEST, 1, &db), -EINVAL);
}

static void test_migration_conflicting_table(void **state) {
        Fixture *f = *state;
        Db *db = NULL;

        /* Marked as ours at version 0, but a table is in the way of migration 1. */
        raw_exec(f->path,
                 "PRAGMA application_id = 1936024420;"
                 "CREATE TABLE audit(x); INSERT INTO audit VALUES ('keep me');");
        assert_true(db_open(f->path, DB_OPEN_CREATE, &db) < 0);
        assert_null(db);
        assert_non_null(strstr(db_last_error(NULL), "migration 1"));

        assert_int_equal(raw_int(f->path, "PRAGMA user_version"), 0);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM audit WHERE x = 'keep me'"), 1);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_schema WHERE name IN ('rules', 'settings')"), 0);
}

/* Migration 2 rebuilds the rules table: a store with rules made at version 1 keeps them, ids included. */
static void test_migration_2_cert_selector(void **state) {
        Fixture *f = *state;
        PolicyRule *rules = NULL;
        PolicyRule cert_rule = {
                .action = POLICY_ACTION_ALLOW,
                .selectors = POLICY_SEL_CERT | POLICY_SEL_ENDPOINT,
                .endpoint = POLICY_ENDPOINT_TCP,
                .cert = (char *) "backup-host.example_1",
        };
        PolicyRule r1 = rule_uid(POLICY_ACTION_ALLOW, 1000), r2 = rule_uid(POLICY_ACTION_DENY, 666);
        int64_t id1, id2, id3, id4;
        size_t n;
        Db *db = NULL;

        /* A version-1 store with three rules, the last deleted (its id must stay retired). */
        assert_int_equal(db_open_with_migrations(f->path, DB_OPEN_CREATE, db_migrations, 1, &db), 0);
        db_close(db);
        db = NULL;
        raw_exec(f->path,
                 "INSERT INTO rules(action, uid, created_usec) VALUES ('allow', 1000, 6);"
                 "INSERT INTO rules(action, uid, comment, created_usec) VALUES ('deny', 666, 'second', 7);"
                 "INSERT INTO rules(action, path, created_usec) VALUES ('allow', '/usr/bin/gone', 8);"
                 "DELETE FROM rules WHERE path = '/usr/bin/gone';");
        assert_int_equal(raw_int(f->path, "PRAGMA user_version"), 1);
        assert_int_equal(raw_int(f->path, "SELECT seq FROM sqlite_sequence WHERE name = 'rules'"), 3);
        id1 = raw_int(f->path, "SELECT id FROM rules WHERE uid = 1000");
        id2 = raw_int(f->path, "SELECT id FROM rules WHERE uid = 666");

        /* Opening migrates; the rules come back as they were. */
        assert_int_equal(db_open(f->path, 0, &db), 0);
        assert_int_equal(db_rules_load(db, &rules, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(rules[0].id, id1);
        assert_rule_equal(&rules[0], &r1);
        assert_int_equal(rules[1].id, id2);
        r2.comment = (char *) "second";
        assert_rule_equal(&rules[1], &r2);
        assert_null(rules[1].cert);
        policy_rules_free(rules, n);
        rules = NULL;

        /* AUTOINCREMENT survived: the deleted rule's id is not reused. */
        assert_int_equal(db_rule_insert(db, &cert_rule, &id3), 0);
        assert_int_equal(id3, 4);
        assert_int_equal(db_rules_load(db, &rules, &n), 0);
        assert_int_equal(n, 3);
        assert_int_equal(rules[2].id, id3);
        assert_rule_equal(&rules[2], &cert_rule);
        assert_string_equal(rules[2].cert, "backup-host.example_1");
        policy_rules_free(rules, n);

        /* A cert-only rule is enough of a selector; a bad name is refused by the schema too. */
        cert_rule.selectors = POLICY_SEL_CERT;
        assert_int_equal(db_rule_insert(db, &cert_rule, &id4), 0);
        assert_int_equal(sqlite3_exec(db->sqlite, "INSERT INTO rules(action, cert, created_usec) VALUES ('allow', 'a/b', 0)",
                                      NULL, NULL, NULL) & 0xff, SQLITE_CONSTRAINT);
        assert_int_equal(handle_int(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'rules_new'"), 0);
        assert_int_equal(handle_int(db, "PRAGMA user_version"), DB_SCHEMA_VERSION_LATEST);
        db_close(db);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM pragma_integrity_check WHERE integrity_check <> 'ok'"), 0);
}

/* ---- transactions and concurrency ---- */

static void test_reader_during_write(void **state) {
        Fixture *f = *state;
        PolicyRule a = rule_uid(POLICY_ACTION_ALLOW, 1), b = rule_uid(POLICY_ACTION_ALLOW, 2);
        Db *writer = open_new(f->path), *reader = NULL, *ro = NULL;
        uint64_t t0, elapsed;

        assert_int_equal(db_rule_insert(writer, &a, NULL), 0);
        assert_int_equal(generation(writer), 1);

        assert_int_equal(db_begin(writer), 0);
        assert_int_equal(db_rule_insert(writer, &b, NULL), 0);
        assert_int_equal(db_policy_set_mode(writer, POLICY_MODE_PERMISSIVE), 0);
        assert_int_equal(rule_count(writer), 2);       /* the writer sees its own changes */

        /* Opening and reading while the write transaction is open neither blocks nor sees it. */
        t0 = now_monotonic_usec();
        assert_int_equal(db_open(f->path, 0, &reader), 0);
        assert_int_equal(db_open(f->path, DB_OPEN_READONLY, &ro), 0);
        assert_int_equal(rule_count(reader), 1);
        assert_int_equal(rule_count(ro), 1);
        assert_int_equal(generation(reader), 1);
        {
                PolicyMode m;

                assert_int_equal(db_policy_mode(ro, &m), 0);
                assert_int_equal(m, POLICY_MODE_ENFORCE);
        }
        elapsed = now_monotonic_usec() - t0;
        assert_true(elapsed < DB_BUSY_TIMEOUT_USEC_DEFAULT / 5);

        /* A second writer waits for the busy timeout, then gets -EBUSY and changes nothing. */
        assert_int_equal(db_set_busy_timeout(reader, 50 * 1000), 0);
        t0 = now_monotonic_usec();
        assert_int_equal(db_rule_insert(reader, &b, NULL), -EBUSY);
        elapsed = now_monotonic_usec() - t0;
        assert_true(elapsed >= 40 * 1000);
        assert_non_null(strstr(db_last_error(reader), "locked"));

        assert_int_equal(db_commit(writer), 0);
        assert_int_equal(rule_count(reader), 2);
        assert_int_equal(rule_count(ro), 2);
        assert_int_equal(generation(ro), 3);

        /* Now the second writer gets through. */
        assert_int_equal(db_rule_insert(reader, &b, NULL), 0);
        assert_int_equal(rule_count(writer), 3);

        db_close(ro);
        db_close(reader);
        db_close(writer);
}

static void test_rollback_changes_nothing(void **state) {
        Fixture *f = *state;
        _cleanup_(db_closep) Db *db = open_new(f->path);
        PolicyRule a = rule_uid(POLICY_ACTION_ALLOW, 1), b = rule_uid(POLICY_ACTION_DENY, 2);
        _cleanup_free_ char *v = NULL;
        PolicyMode m;
        int64_t id;

        assert_int_equal(db_rule_insert(db, &a, &id), 0);
        assert_int_equal(generation(db), 1);

        assert_int_equal(db_begin(db), 0);
        assert_int_equal(db_begin(db), -EALREADY);
        assert_int_equal(db_rule_insert(db, &b, NULL), 0);
        assert_int_equal(db_rule_delete(db, id), 0);
        assert_int_equal(db_policy_set_mode(db, POLICY_MODE_PERMISSIVE), 0);
        assert_int_equal(db_setting_set(db, "k", "v"), 0);
        assert_int_equal(generation(db), 4);
        assert_int_equal(db_rollback(db), 0);

        assert_int_equal(rule_count(db), 1);
        assert_int_equal(generation(db), 1);
        assert_int_equal(db_policy_mode(db, &m), 0);
        assert_int_equal(m, POLICY_MODE_ENFORCE);
        assert_int_equal(db_setting_get(db, "k", &v), -ENOENT);

        assert_int_equal(db_commit(db), -EINVAL);
        assert_int_equal(db_rollback(db), -EINVAL);
}

static void test_nested_failure_undoes_only_itself(void **state) {
        Fixture *f = *state;
        _cleanup_(db_closep) Db *db = open_new(f->path);
        PolicyRule a = rule_uid(POLICY_ACTION_ALLOW, 1), c = rule_uid(POLICY_ACTION_ALLOW, 3);
        PolicyRule bad = { .action = POLICY_ACTION_ALLOW, .selectors = 0 };

        assert_int_equal(db_begin(db), 0);
        assert_int_equal(db_rule_insert(db, &a, NULL), 0);
        assert_int_equal(db_rule_insert(db, &bad, NULL), -EINVAL);
        assert_non_null(strstr(db_last_error(db), "CHECK constraint failed"));
        assert_int_equal(db_rule_delete(db, 999), -ENOENT);
        assert_int_equal(db_rule_insert(db, &c, NULL), 0);
        assert_int_equal(db_commit(db), 0);

        assert_int_equal(rule_count(db), 2);
        assert_int_equal(generation(db), 2);    /* one bump per successful change */
}

static void test_replace_failure_midway(void **state) {
        Fixture *f = *state;
        _cleanup_(db_closep) Db *db = open_new(f->path);
        _cleanup_free_ char *long_comment = string_of(POLICY_COMMENT_MAX + 1, 'c');
        PolicyRule old[] = { rule_uid(POLICY_ACTION_ALLOW, 1), rule_uid(POLICY_ACTION_DENY, 2) };
        PolicyRule next[] = {
                rule_uid(POLICY_ACTION_ALLOW, 10),
                rule_uid(POLICY_ACTION_ALLOW, 11),
                rule_uid(POLICY_ACTION_ALLOW, 12),
        };
        PolicyRule *rules = NULL;
        PolicyMode m;
        int64_t ids[2];
        uint64_t g;
        size_t n;

        for (size_t i = 0; i < ELEMENTSOF(old); i++)
                assert_int_equal(db_rule_insert(db, &old[i], &ids[i]), 0);
        g = generation(db);

        /* A constraint violation in the middle: nothing changes, generation included. */
        next[1].comment = long_comment;
        assert_int_equal(db_rules_replace(db, next, ELEMENTSOF(next), POLICY_MODE_PERMISSIVE), -EINVAL);
        assert_non_null(strstr(db_last_error(db), "rule 1"));
        next[1].comment = NULL;
        next[2].selectors = 0;
        assert_int_equal(db_rules_replace(db, next, ELEMENTSOF(next), POLICY_MODE_PERMISSIVE), -EINVAL);
        assert_int_equal(db_rules_replace(db, next, 2, (PolicyMode) 7), -EINVAL);
        assert_int_equal(db_rules_replace(db, next, POLICY_RULES_MAX + 1, POLICY_MODE_ENFORCE), -E2BIG);

        assert_int_equal(generation(db), g);
        assert_int_equal(db_policy_mode(db, &m), 0);
        assert_int_equal(m, POLICY_MODE_ENFORCE);
        assert_int_equal(db_rules_load(db, &rules, &n), 0);
        assert_int_equal(n, 2);
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(rules[i].id, ids[i]);
                assert_rule_equal(&rules[i], &old[i]);
        }
        policy_rules_free(rules, n);

        /* And the good import replaces everything at once. */
        assert_int_equal(db_rules_replace(db, next, 2, POLICY_MODE_PERMISSIVE), 0);
        assert_int_equal(generation(db), g + 1);
        assert_int_equal(db_policy_mode(db, &m), 0);
        assert_int_equal(m, POLICY_MODE_PERMISSIVE);
        assert_int_equal(db_rules_load(db, &rules, &n), 0);
        assert_int_equal(n, 2);
        for (size_t i = 0; i < n; i++) {
                assert_true(rules[i].id > ids[1]);      /* ids are never reused */
                assert_rule_equal(&rules[i], &next[i]);
        }
        policy_rules_free(rules, n);

        /* Importing an empty policy is allowed. */
        assert_int_equal(db_rules_replace(db, NULL, 0, POLICY_MODE_ENFORCE), 0);
        assert_int_equal(rule_count(db), 0);
        assert_int_equal(generation(db), g + 2);
}

/* ---- policy rows ---- */

static void test_generation_bumps(void **state) {
        Fixture *f = *state;
        _cleanup_(db_closep) Db *db = open_new(f->path);
        PolicyRule a = rule_uid(POLICY_ACTION_ALLOW, 1), bad = { .action = POLICY_ACTION_ALLOW };
        int64_t id;

        assert_int_equal(generation(db), 0);
        assert_int_equal(db_rule_insert(db, &a, &id), 0);
        assert_int_equal(generation(db), 1);
        assert_int_equal(db_policy_set_mode(db, POLICY_MODE_PERMISSIVE), 0);
        assert_int_equal(generation(db), 2);
        assert_int_equal(db_policy_set_mode(db, POLICY_MODE_PERMISSIVE), 0);   /* same mode: still a change request */
        assert_int_equal(generation(db), 3);
        assert_int_equal(db_rule_delete(db, id), 0);
        assert_int_equal(generation(db), 4);
        assert_int_equal(db_rules_replace(db, &a, 1, POLICY_MODE_ENFORCE), 0);
        assert_int_equal(generation(db), 5);

        /* Failures and unrelated writes do not bump it. */
        assert_int_equal(db_rule_delete(db, id), -ENOENT);
        assert_int_equal(db_rule_insert(db, &bad, NULL), -EINVAL);
        assert_int_equal(db_policy_set_mode(db, _POLICY_MODE_MAX), -EINVAL);
        assert_int_equal(db_setting_set(db, "other", "x"), 0);
        assert_int_equal(db_audit_append(db, &(DbAuditEntry) { .kind = (char *) "k", .message = (char *) "m" }, NULL), 0);
        assert_int_equal(generation(db), 5);

        /* Nobody moves it behind the policy calls' back. */
        assert_int_equal(db_setting_set(db, "policy.generation", "0"), -EPERM);
        assert_int_equal(db_setting_set(db, "policy.mode", "permissive"), -EPERM);
        assert_int_equal(generation(db), 5);
}

static void test_rule_roundtrip(void **state) {
        Fixture *f = *state;
        _cleanup_(db_closep) Db *db = open_new(f->path);
        _cleanup_free_ char *longest_path = string_of(POLICY_PATH_MAX - 1, 'p');
        _cleanup_free_ char *longest_comment = string_of(POLICY_COMMENT_MAX, 'c');
        PolicyRule rules[] = {
                { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_UID, .uid = 0 },
                { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_UID, .uid = 4294967294u, .user = (char *) "nobody" },
                { .action = POLICY_ACTION_DENY, .selectors = POLICY_SEL_GID, .gid = 100, .group = (char *) "users" },
                { .action = POLICY_ACTION_DENY, .selectors = POLICY_SEL_GID, .gid = 0 },
                { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_PATH, .path = (char *) "/usr/bin/app",
                  .comment = (char *) "ünïcödé comment ✓" },
                { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_PATH, .path = longest_path },
                { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_SHA256,
                  .sha256 = { 0x00, 0xff, 0x10, 0x20, [31] = 0x7f }, .comment = longest_comment },
                { .action = POLICY_ACTION_DENY, .selectors = POLICY_SEL_ENDPOINT, .endpoint = POLICY_ENDPOINT_DATA },
                { .action = POLICY_ACTION_DENY, .selectors = POLICY_SEL_ENDPOINT, .endpoint = POLICY_ENDPOINT_TCP },
                { .action = POLICY_ACTION_DENY, .selectors = POLICY_SEL_ENDPOINT, .endpoint = POLICY_ENDPOINT_ENROLL },
                { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_ENDPOINT, .endpoint = POLICY_ENDPOINT_CONTROL },
                { .action = POLICY_ACTION_ALLOW, .selectors = _POLICY_SEL_ALL,
                  .uid = 1000, .user = (char *) "alice", .gid = 1000, .group = (char *) "alice",
                  .path = (char *) "/opt/app/bin/app", .sha256 = { [0 ... 31] = 0xab },
                  .endpoint = POLICY_ENDPOINT_ENROLL, .cert = (char *) "everything-1",
                  .comment = (char *) "everything" },
                { .action = POLICY_ACTION_DENY, .selectors = POLICY_SEL_CERT, .cert = (char *) "A.b_c-9" },
        };
        /* Values of unset selectors are not stored. */
        PolicyRule partial = {
                .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_GID, .gid = 7,
                .uid = 5, .user = (char *) "ignored", .path = (char *) "/ignored", .sha256 = { 1 },
                .cert = (char *) "ignored",
                .endpoint = POLICY_ENDPOINT_TCP,
        };
        PolicyRule *loaded = NULL;
        int64_t ids[ELEMENTSOF(rules) + 1];
        size_t n;

        /* Make the longest path a valid absolute path. */
        longest_path[0] = '/';

        for (size_t i = 0; i < ELEMENTSOF(rules); i++)
                assert_int_equal(db_rule_insert(db, &rules[i], &ids[i]), 0);
        assert_int_equal(db_rule_insert(db, &partial, &ids[ELEMENTSOF(rules)]), 0);

        assert_int_equal(db_rules_load(db, &loaded, &n), 0);
        assert_int_equal(n, ELEMENTSOF(rules) + 1);
        for (size_t i = 0; i < ELEMENTSOF(rules); i++) {
                assert_int_equal(loaded[i].id, ids[i]);
                assert_rule_equal(&loaded[i], &rules[i]);
                assert_int_equal(policy_rule_validate(&loaded[i], NULL), 0);
        }
        assert_int_equal(loaded[n - 1].selectors, POLICY_SEL_GID);
        assert_int_equal(loaded[n - 1].gid, 7);
        assert_int_equal(loaded[n - 1].uid, 0);
        assert_null(loaded[n - 1].user);
        assert_null(loaded[n - 1].path);
        /* Ordered by id. */
        for (size_t i = 1; i < n; i++)
                assert_true(loaded[i - 1].id < loaded[i].id);
        policy_rules_free(loaded, n);

        policy_rules_free(NULL, 0);
}

static void test_rule_delete(void **state) {
        Fixture *f = *state;
        _cleanup_(db_closep) Db *db = open_new(f->path);
        PolicyRule a = rule_uid(POLICY_ACTION_ALLOW, 1);
        int64_t id;

        assert_int_equal(db_rule_delete(db, 1), -ENOENT);
        assert_non_null(strstr(db_last_error(db), "no rule"));
        assert_int_equal(db_rule_insert(db, &a, &id), 0);
        assert_int_equal(db_rule_delete(db, id + 1), -ENOENT);
        assert_int_equal(db_rule_delete(db, -1), -ENOENT);
        assert_int_equal(db_rule_delete(db, id), 0);
        assert_int_equal(db_rule_delete(db, id), -ENOENT);
        assert_int_equal(rule_count(db), 0);
}

static void test_rule_rejects(void **state) {
        Fixture *f = *state;
        _cleanup_(db_closep) Db *db = open_new(f->path);
        _cleanup_free_ char *path_too_long = string_of(POLICY_PATH_MAX, 'p');
        _cleanup_free_ char *comment_too_long = string_of(POLICY_COMMENT_MAX + 1, 'c');
        _cleanup_free_ char *name_too_long = string_of(POLICY_NAME_MAX + 1, 'n');
        _cleanup_free_ char *wide = NULL;
        PolicyRule bad[] = {
                { .action = POLICY_ACTION_ALLOW, .selectors = 0, .comment = (char *) "no selector" },
                { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_PATH },        /* path missing */
                { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_UID | (1u << 9), .uid = 1 },
                { .action = (PolicyAction) 2, .selectors = POLICY_SEL_UID, .uid = 1 },
                { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_ENDPOINT, .endpoint = (PolicyEndpoint) 9 },
                { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_PATH, .path = path_too_long },
                { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_PATH, .path = (char *) "relative/path" },
                { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_PATH, .path = (char *) "" },
                { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_UID, .uid = 1, .comment = comment_too_long },
                { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_UID, .uid = 1, .user = name_too_long },
                { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_UID, .uid = 1, .user = (char *) "" },
                { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_GID, .gid = 1, .group = name_too_long },
                /* A name that was never resolved to an id is not stored. */
                { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_UID, .uid = UINT32_MAX, .user = (char *) "alice" },
                { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_GID, .gid = UINT32_MAX },
                { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_UID, .uid = 1, .comment = NULL },  /* placeholder: wide */
        };
        size_t wide_len = 0;
        int64_t id;

        /* Bounds are bytes, not characters: 513 two-byte characters are 1026 bytes. */
        wide = malloc(2 * 513 + 1);
        assert_non_null(wide);
        for (size_t i = 0; i < 513; i++) {
                wide[wide_len++] = (char) 0xc3;
                wide[wide_len++] = (char) 0xa9;
        }
        wide[wide_len] = '\0';
        bad[ELEMENTSOF(bad) - 1].comment = wide;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                int r = db_rule_insert(db, &bad[i], &id);
                if (r != -EINVAL)
                        fail_msg("bad rule %zu: got %d (%s)", i, r, db_last_error(db));
        }
        assert_int_equal(rule_count(db), 0);
        assert_int_equal(generation(db), 0);
        assert_int_equal(db_rule_insert(db, NULL, &id), -EINVAL);
        assert_int_equal(db_rule_insert(NULL, &bad[0], &id), -EINVAL);
}

static void test_schema_checks_direct(void **state) {
        Fixture *f = *state;
        _cleanup_(db_closep) Db *db = open_new(f->path);
        static const char *const bad_sql[] = {
                /* The schema itself refuses what the API would never send. */
                "INSERT INTO rules(action, created_usec) VALUES ('allow', 0)",
                "INSERT INTO rules(action, uid, created_usec) VALUES ('maybe', 1, 0)",
                "INSERT INTO rules(action, uid, created_usec) VALUES ('allow', 'abc', 0)",      /* STRICT */
                "INSERT INTO rules(action, uid, created_usec) VALUES ('allow', 4294967295, 0)",
                "INSERT INTO rules(action, sha256, created_usec) VALUES ('allow', zeroblob(31), 0)",
                "INSERT INTO rules(action, user_name, path, created_usec) VALUES ('allow', 'alice', '/x', 0)",
                "INSERT INTO rules(action, endpoint, created_usec) VALUES ('allow', 'smtp', 0)",
                "INSERT INTO rules(action, cert, created_usec) VALUES ('allow', '', 0)",
                "INSERT INTO rules(action, cert, created_usec) VALUES ('allow', 'a b', 0)",
                "INSERT INTO rules(action, cert, created_usec) VALUES ('allow', 'secd://remote/x', 0)",
                "INSERT INTO rules(action, cert, created_usec) VALUES ('allow', printf('%.65c', 'a'), 0)",
                "INSERT INTO settings(key, value) VALUES ('policy.generation', 'x1')",
                "UPDATE settings SET value = 'lenient' WHERE key = 'policy.mode'",
                "INSERT INTO audit(time_usec, kind, message) VALUES (-1, 'k', 'm')",
                "INSERT INTO audit(time_usec, kind, message) VALUES (1, '', 'm')",
                "INSERT INTO certificates(serial, fingerprint, name, not_before_sec, not_after_sec, issued_usec, pem) "
                "VALUES (x'01', zeroblob(32), 'n', 10, 5, 0, '-----BEGIN CERTIFICATE-----')",
                "INSERT INTO revocations(serial, revoked_usec) VALUES (x'99', 0)",              /* foreign key */
                "INSERT INTO messages(mailbox_id, sender, client_msg_id, received_usec, expires_usec, body) "
                "VALUES (12345, 's', zeroblob(16), 1, 2, x'00')",                               /* foreign key */
                "INSERT INTO mailboxes(identity_key, owner, created_usec) VALUES (zeroblob(31), 'o', 0)",
        };
        static const char *const good_sql[] = {
                "INSERT INTO mailboxes(identity_key, owner, created_usec) VALUES (zeroblob(32), 'o', 0)",
                "INSERT INTO messages(mailbox_id, sender, client_msg_id, received_usec, expires_usec, body) "
                "VALUES (1, 's', zeroblob(16), 1, 2, x'00')",
                "INSERT INTO one_time_prekeys(mailbox_id, key_id, public_key, published_usec) VALUES (1, 1, zeroblob(32), 0)",
                "DELETE FROM mailboxes",        /* cascades */
        };

        for (size_t i = 0; i < ELEMENTSOF(bad_sql); i++) {
                int rc = sqlite3_exec(db->sqlite, bad_sql[i], NULL, NULL, NULL);
                if ((rc & 0xff) != SQLITE_CONSTRAINT)
                        fail_msg("accepted or wrong error %d: %s", rc, bad_sql[i]);
        }
        for (size_t i = 0; i < ELEMENTSOF(good_sql); i++)
                assert_int_equal(sqlite3_exec(db->sqlite, good_sql[i], NULL, NULL, NULL), SQLITE_OK);
        assert_int_equal(handle_int(db, "SELECT count(*) FROM messages"), 0);
        assert_int_equal(handle_int(db, "SELECT count(*) FROM one_time_prekeys"), 0);
}

static void test_errno_mapping(void **state) {
        assert_int_equal(db_errno_from_sqlite(NULL, SQLITE_OK), 0);
        assert_int_equal(db_errno_from_sqlite(NULL, SQLITE_CONSTRAINT_UNIQUE), -EEXIST);
        assert_int_equal(db_errno_from_sqlite(NULL, SQLITE_CONSTRAINT_PRIMARYKEY), -EEXIST);
        assert_int_equal(db_errno_from_sqlite(NULL, SQLITE_CONSTRAINT_CHECK), -EINVAL);
        assert_int_equal(db_errno_from_sqlite(NULL, SQLITE_BUSY), -EBUSY);
        assert_int_equal(db_errno_from_sqlite(NULL, SQLITE_BUSY_SNAPSHOT), -EBUSY);
        assert_int_equal(db_errno_from_sqlite(NULL, SQLITE_NOTADB), -EBADMSG);
        assert_int_equal(db_errno_from_sqlite(NULL, SQLITE_CORRUPT), -EBADMSG);
        assert_int_equal(db_errno_from_sqlite(NULL, SQLITE_READONLY), -EROFS);
        assert_int_equal(db_errno_from_sqlite(NULL, SQLITE_PERM), -EACCES);
        assert_int_equal(db_errno_from_sqlite(NULL, SQLITE_FULL), -ENOSPC);
        assert_int_equal(db_errno_from_sqlite(NULL, SQLITE_IOERR), -EIO);
        assert_int_equal(db_errno_from_sqlite(NULL, SQLITE_NOMEM), -ENOMEM);
        assert_int_equal(db_errno_from_sqlite(NULL, SQLITE_TOOBIG), -E2BIG);
}

/* ---- settings ---- */

static void test_settings(void **state) {
        Fixture *f = *state;
        _cleanup_(db_closep) Db *db = open_new(f->path);
        _cleanup_free_ char *long_key = string_of(DB_SETTING_KEY_MAX + 1, 'k');
        _cleanup_free_ char *long_value = string_of(DB_SETTING_VALUE_MAX + 1, 'v');
        _cleanup_free_ char *max_value = string_of(DB_SETTING_VALUE_MAX, 'v');
        char *v = NULL;

        assert_int_equal(db_setting_get(db, "missing", &v), -ENOENT);
        assert_null(v);
        assert_int_equal(db_setting_set(db, "relay.ttl", "30d"), 0);
        assert_int_equal(db_setting_get(db, "relay.ttl", &v), 0);
        assert_string_equal(v, "30d");
        free(v);
        v = NULL;
        assert_int_equal(db_setting_set(db, "relay.ttl", "7d"), 0);
        assert_int_equal(db_setting_get(db, "relay.ttl", &v), 0);
        assert_string_equal(v, "7d");
        free(v);
        v = NULL;

        assert_int_equal(db_setting_set(db, "big", max_value), 0);
        assert_int_equal(db_setting_set(db, "big", long_value), -EINVAL);
        assert_int_equal(db_setting_set(db, long_key, "x"), -EINVAL);
        assert_int_equal(db_setting_set(db, "", "x"), -EINVAL);
        assert_int_equal(db_setting_set(db, "k", NULL), -EINVAL);

        /* The policy keys can be read. */
        assert_int_equal(db_setting_get(db, "policy.mode", &v), 0);
        assert_string_equal(v, "enforce");
        free(v);
}

/* ---- audit ---- */

static void test_audit(void **state) {
        Fixture *f = *state;
        _cleanup_(db_closep) Db *db = open_new(f->path);
        _cleanup_free_ char *long_kind = string_of(DB_AUDIT_KIND_MAX + 1, 'k');
        _cleanup_free_ char *long_message = string_of(DB_AUDIT_MESSAGE_MAX + 1, 'm');
        DbAuditEntry *e = NULL;
        int64_t ids[10], id;
        size_t n;

        assert_int_equal(db_audit_list(db, -1, 10, &e, &n), 0);
        assert_int_equal(n, 0);
        assert_null(e);

        for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
                _cleanup_free_ char *msg = NULL, *json = NULL;

                assert_true(asprintf(&msg, "entry %zu", i) > 0);
                assert_true(asprintf(&json, "{\"uid\": %zu, \"exe\": \"/usr/bin/x\"}", i) > 0);
                assert_int_equal(db_audit_append(db,
                                                 &(DbAuditEntry) {
                                                         .time_usec = i == 0 ? 0 : (int64_t) (1000 + i),
                                                         .kind = (char *) "decision",
                                                         .message = msg,
                                                         .fields_json = i % 2 ? json : NULL,
                                                 },
                                                 &ids[i]),
                                 0);
                if (i > 0)
                        assert_true(ids[i] > ids[i - 1]);
        }

        /* Newest N, oldest first. */
        assert_int_equal(db_audit_list(db, -1, 3, &e, &n), 0);
        assert_int_equal(n, 3);
        for (size_t i = 0; i < 3; i++)
                assert_int_equal(e[i].id, ids[7 + i]);
        assert_string_equal(e[2].message, "entry 9");
        assert_string_equal(e[2].kind, "decision");
        assert_int_equal(e[2].time_usec, 1009);
        assert_non_null(strstr(e[2].fields_json, "\"uid\": 9"));
        assert_null(e[1].fields_json);
        db_audit_entries_free(e, n);

        /* Following: after an id, bounded. */
        assert_int_equal(db_audit_list(db, 0, 100, &e, &n), 0);
        assert_int_equal(n, 10);
        assert_true(e[0].time_usec > 1000000000000000);     /* 0 meant "now" */
        db_audit_entries_free(e, n);
        assert_int_equal(db_audit_list(db, ids[4], 2, &e, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(e[0].id, ids[5]);
        assert_int_equal(e[1].id, ids[6]);
        db_audit_entries_free(e, n);
        assert_int_equal(db_audit_list(db, ids[9], 100, &e, &n), 0);
        assert_int_equal(n, 0);
        assert_int_equal(db_audit_list(db, -1, 0, &e, &n), 0);
        assert_int_equal(n, 0);

        /* Trim keeps the newest. */
        assert_int_equal(db_audit_trim(db, 4), 6);
        assert_int_equal(db_audit_trim(db, 4), 0);
        assert_int_equal(db_audit_list(db, 0, 100, &e, &n), 0);
        assert_int_equal(n, 4);
        assert_int_equal(e[0].id, ids[6]);
        assert_int_equal(e[3].id, ids[9]);
        db_audit_entries_free(e, n);

        /* Ids are not reused, even after everything is trimmed. */
        assert_int_equal(db_audit_trim(db, 0), 4);
        assert_int_equal(db_audit_append(db, &(DbAuditEntry) { .kind = (char *) "service", .message = (char *) "" }, &id), 0);
        assert_true(id > ids[9]);

        /* Bounds and shape. */
        assert_int_equal(db_audit_append(db, &(DbAuditEntry) { .kind = long_kind, .message = (char *) "m" }, NULL), -EINVAL);
        assert_int_equal(db_audit_append(db, &(DbAuditEntry) { .kind = (char *) "", .message = (char *) "m" }, NULL), -EINVAL);
        assert_int_equal(db_audit_append(db, &(DbAuditEntry) { .kind = (char *) "k", .message = long_message }, NULL), -EINVAL);
        assert_int_equal(db_audit_append(db, &(DbAuditEntry) { .kind = NULL, .message = (char *) "m" }, NULL), -EINVAL);
        assert_int_equal(db_audit_append(db, &(DbAuditEntry) { .kind = (char *) "k", .message = NULL }, NULL), -EINVAL);
        assert_int_equal(db_audit_append(db, &(DbAuditEntry) { .kind = (char *) "k", .message = (char *) "m",
                                                               .fields_json = (char *) "not json" }, NULL),
                         -EINVAL);
        assert_int_equal(db_audit_append(db, &(DbAuditEntry) { .kind = (char *) "k", .message = (char *) "m",
                                                               .fields_json = (char *) "[1, 2]" }, NULL),
                         -EINVAL);
        assert_int_equal(db_audit_list(db, -1, 100, &e, &n), 0);
        assert_int_equal(n, 1);
        db_audit_entries_free(e, n);
        db_audit_entries_free(NULL, 0);
}

static void test_audit_list_bounded(void **state) {
        _cleanup_(db_closep) Db *db = NULL;
        DbAuditEntry *e = NULL;
        size_t n;

        assert_int_equal(db_open(":memory:", DB_OPEN_CREATE, &db), 0);
        assert_int_equal(db_begin(db), 0);
        for (size_t i = 0; i < DB_AUDIT_LIST_MAX + 5; i++)
                assert_int_equal(db_audit_append(db, &(DbAuditEntry) { .kind = (char *) "k", .message = (char *) "m" }, NULL), 0);
        assert_int_equal(db_commit(db), 0);
        assert_int_equal(db_audit_list(db, -1, SIZE_MAX, &e, &n), 0);
        assert_int_equal(n, DB_AUDIT_LIST_MAX);
        assert_int_equal(e[n - 1].id, DB_AUDIT_LIST_MAX + 5);
        db_audit_entries_free(e, n);
}

/*
 * Trimming a big trail costs what it removes, not what it keeps: counted in
 * SQLite's virtual-machine steps (deterministic), not in time. Keeping the
 * newest 5,990 of 6,000 used to step through all 5,990 (OFFSET).
 */
static void test_audit_trim_bounded_work(void **state) {
        _cleanup_(db_closep) Db *db = NULL;
        DbAuditEntry *e = NULL;
        sqlite3_stmt *trim;
        size_t n;
        int steps;

        assert_int_equal(db_open(":memory:", DB_OPEN_CREATE, &db), 0);
        assert_int_equal(db_begin(db), 0);
        for (size_t i = 0; i < 6000; i++)
                assert_int_equal(db_audit_append(db, &(DbAuditEntry) { .kind = (char *) "k", .message = (char *) "m" }, NULL), 0);
        assert_int_equal(db_commit(db), 0);

        assert_int_equal(db_audit_trim(db, 5990), 10);
        trim = db->stmts[DB_STMT_AUDIT_TRIM];
        assert_non_null(trim);
        steps = sqlite3_stmt_status(trim, SQLITE_STMTSTATUS_VM_STEP, 1);
        assert_true(steps > 0);
        assert_true(steps < 1000);

        /* Exactly the newest stay. */
        assert_int_equal(db_audit_list(db, 0, 1, &e, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(e[0].id, 11);
        db_audit_entries_free(e, n);
        assert_int_equal(db_audit_trim(db, 5990), 0);
        assert_int_equal(db_audit_trim(db, 6000), 0);
        assert_int_equal(db_audit_trim(db, 1), 5989);
        assert_int_equal(db_audit_list(db, -1, 10, &e, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(e[0].id, 6000);
        db_audit_entries_free(e, n);
}

#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)

int main(void) {
        const struct CMUnitTest tests[] = {
                T(test_create_reopen),
                cmocka_unit_test(test_memory),
                T(test_open_missing),
                T(test_readonly),
                T(test_newer_schema_refused),
                T(test_random_bytes_refused),
                T(test_text_file_refused),
                T(test_corrupt_database_refused),
                T(test_foreign_sqlite_refused),
                T(test_foreign_wal_not_checkpointed),
                T(test_empty_file),
                T(test_migration_failure_keeps_version),
                T(test_migration_conflicting_table),
                T(test_migration_2_cert_selector),
                T(test_reader_during_write),
                T(test_rollback_changes_nothing),
                T(test_nested_failure_undoes_only_itself),
                T(test_replace_failure_midway),
                T(test_generation_bumps),
                T(test_rule_roundtrip),
                T(test_rule_delete),
                T(test_rule_rejects),
                T(test_schema_checks_direct),
                cmocka_unit_test(test_errno_mapping),
                T(test_settings),
                T(test_audit),
                cmocka_unit_test(test_audit_list_bounded),
                cmocka_unit_test(test_audit_trim_bounded_work),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
