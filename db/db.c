/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The handle: opening (with the checks that keep us from ever writing to a
 * file that is not ours), errno translation, the statement cache and
 * transactions.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "db-internal.h"

/* Message of the last failed db_open() in this thread (handle is gone by then). */
static _Thread_local char db_open_error[512];

static const char *const db_statement_sql[_DB_STMT_MAX] = {
        [DB_STMT_BEGIN] = "BEGIN",
        [DB_STMT_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
        [DB_STMT_COMMIT] = "COMMIT",
        [DB_STMT_ROLLBACK] = "ROLLBACK",
        [DB_STMT_SAVEPOINT] = "SAVEPOINT secd_op",
        [DB_STMT_RELEASE] = "RELEASE secd_op",
        [DB_STMT_ROLLBACK_TO] = "ROLLBACK TO secd_op",
        [DB_STMT_USER_VERSION] = "PRAGMA user_version",
        [DB_STMT_SETTING_GET] = "SELECT value FROM settings WHERE key = ?1",
        [DB_STMT_SETTING_SET] =
                "INSERT INTO settings(key, value) VALUES (?1, ?2) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [DB_STMT_GENERATION_BUMP] =
                "INSERT INTO settings(key, value) VALUES ('policy.generation', '1') "
                "ON CONFLICT(key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)",
        [DB_STMT_RULE_INSERT] =
                "INSERT INTO rules(action, uid, user_name, gid, group_name, path, sha256, "
                "endpoint, comment, created_usec, cert) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        [DB_STMT_RULE_DELETE] = "DELETE FROM rules WHERE id = ?1",
        [DB_STMT_RULES_DELETE_ALL] = "DELETE FROM rules",
        [DB_STMT_RULES_SELECT] =
                "SELECT id, action, uid, user_name, gid, group_name, path, sha256, endpoint, comment, cert "
                "FROM rules ORDER BY id LIMIT ?1",
        [DB_STMT_AUDIT_INSERT] =
                "INSERT INTO audit(time_usec, kind, message, fields_json) SELECT ?1, ?2, ?3, ?4 "
                "WHERE ?4 IS NULL OR (json_valid(?4) AND json_type(?4) = 'object')",
        [DB_STMT_AUDIT_AFTER] =
                "SELECT id, time_usec, kind, message, fields_json FROM audit "
                "WHERE id > ?1 ORDER BY id LIMIT ?2",
        [DB_STMT_AUDIT_NEWEST] =
                "SELECT id, time_usec, kind, message, fields_json FROM "
                "(SELECT * FROM audit ORDER BY id DESC LIMIT ?1) ORDER BY id",
        /*
         * Ids are dense (AUTOINCREMENT, rows leave only from the old end): the newest
         * ?1 are the ids above max - ?1. Two rowid lookups, not a walk over ?1 rows
         * (OFFSET stepped through up to audit_max_rows rows every trim).
         */
        [DB_STMT_AUDIT_TRIM] =
                "DELETE FROM audit WHERE id <= (SELECT max(id) FROM audit) - ?1",
};

int db_errno_from_sqlite(sqlite3 *sqlite, int rc) {
        int sys;

        switch (rc & 0xff) {
        case SQLITE_OK:
        case SQLITE_ROW:
        case SQLITE_DONE:
                return 0;
        case SQLITE_CONSTRAINT:
                switch (rc) {
                case SQLITE_CONSTRAINT_UNIQUE:
                case SQLITE_CONSTRAINT_PRIMARYKEY:
                case SQLITE_CONSTRAINT_ROWID:
                        return -EEXIST;
                default:
                        return -EINVAL;
                }
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
        case SQLITE_PROTOCOL:
                return -EBUSY;
        case SQLITE_NOTADB:
        case SQLITE_CORRUPT:
        case SQLITE_FORMAT:
                return -EBADMSG;
        case SQLITE_READONLY:
                return -EROFS;
        case SQLITE_PERM:
        case SQLITE_AUTH:
                return -EACCES;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_NOTFOUND:
                return -ENOENT;
        case SQLITE_TOOBIG:
                return -E2BIG;
        case SQLITE_RANGE:
        case SQLITE_MISMATCH:
        case SQLITE_MISUSE:
                return -EINVAL;
        case SQLITE_INTERRUPT:
                return -EINTR;
        case SQLITE_SCHEMA:
                return -EAGAIN;
        case SQLITE_CANTOPEN:
        case SQLITE_IOERR:
                /* The file system knows better than "I/O error": ENOENT, EACCES, ENOSPC, ... */
                sys = sqlite ? sqlite3_system_errno(sqlite) : 0;
                if (rc == SQLITE_IOERR_NOMEM)
                        return -ENOMEM;
                return sys > 0 ? -sys : -EIO;
        default:
                return -EIO;
        }
}

static void db_set_last_error(Db *db, char *message) {
        free(db->last_error);
        db->last_error = message;
}

int db_error(Db *db, int rc) {
        int r = db_errno_from_sqlite(db->sqlite, rc);

        if (r == 0)
                r = -EIO;       /* a caller treats rc as a failure: never report success */
        db_set_last_error(db, strdup(sqlite3_errmsg(db->sqlite)));
        return r;
}

int db_errorf(Db *db, int r, const char *format, ...) {
        va_list ap;
        char *m = NULL;

        va_start(ap, format);
        if (vasprintf(&m, format, ap) < 0)
                m = NULL;
        va_end(ap);
        db_set_last_error(db, m);
        return r;
}

const char *db_last_error(Db *db) {
        if (!db)
                return db_open_error[0] ? db_open_error : "no error";
        if (db->last_error)
                return db->last_error;
        /* strdup() failed, or nothing failed yet. */
        return sqlite3_errcode(db->sqlite) == SQLITE_OK ? "no error" : sqlite3_errmsg(db->sqlite);
}

int64_t db_now_usec(void) {
        struct timespec ts;

        if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
                return 0;
        return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int db_stmt(Db *db, DbStatement id, sqlite3_stmt **ret) {
        int rc;

        assert(id >= 0 && id < _DB_STMT_MAX);

        if (!db->stmts[id]) {
                rc = sqlite3_prepare_v3(db->sqlite, db_statement_sql[id], -1,
                                        SQLITE_PREPARE_PERSISTENT, &db->stmts[id], NULL);
                if (rc != SQLITE_OK)
                        return db_error(db, rc);
        }
        (void) sqlite3_reset(db->stmts[id]);
        (void) sqlite3_clear_bindings(db->stmts[id]);
        *ret = db->stmts[id];
        return 0;
}

int db_stmt_exec(Db *db, DbStatement id) {
        _cleanup_db_stmt_ sqlite3_stmt *stmt = NULL;
        int r, rc;

        r = db_stmt(db, id, &stmt);
        if (r < 0)
                return r;
        rc = sqlite3_step(stmt);
        if (rc != SQLITE_DONE && rc != SQLITE_ROW)
                return db_error(db, rc);
        return 0;
}

int db_column_strdup(sqlite3_stmt *stmt, int col, size_t max_len, char **ret) {
        const unsigned char *t;
        int n;
        char *s;

        if (sqlite3_column_type(stmt, col) == SQLITE_NULL) {
                *ret = NULL;
                return 0;
        }
        t = sqlite3_column_text(stmt, col);
        n = sqlite3_column_bytes(stmt, col);
        if (!t)
                return -ENOMEM;
        if (n < 0 || (size_t) n > max_len)
                return -EBADMSG;        /* the schema bounds it: the file was changed behind our back */
        s = strndup((const char *) t, (size_t) n);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int db_txn_begin(Db *db, DbTxn *txn) {
        bool savepoint = !sqlite3_get_autocommit(db->sqlite);
        int r;

        r = db_stmt_exec(db, savepoint ? DB_STMT_SAVEPOINT : DB_STMT_BEGIN_IMMEDIATE);
        if (r < 0)
                return r;
        *txn = (DbTxn) {
                .db = db,
                .savepoint = savepoint,
                .active = true,
        };
        return 0;
}

int db_txn_commit(DbTxn *txn) {
        int r;

        assert(txn->active);
        r = db_stmt_exec(txn->db, txn->savepoint ? DB_STMT_RELEASE : DB_STMT_COMMIT);
        if (r < 0)
                return r;       /* still active: the cleanup rolls back */
        txn->active = false;
        return 0;
}

void db_txn_abort(DbTxn *txn) {
        char *saved;

        if (!txn->active)
                return;
        txn->active = false;

        /* SQLite may already have rolled everything back after an I/O or disk-full error. */
        if (sqlite3_get_autocommit(txn->db->sqlite))
                return;

        /* Keep the error that made us roll back, not one from rolling back. */
        saved = TAKE_PTR(txn->db->last_error);
        if (txn->savepoint) {
                (void) db_stmt_exec(txn->db, DB_STMT_ROLLBACK_TO);
                (void) db_stmt_exec(txn->db, DB_STMT_RELEASE);
        } else
                (void) db_stmt_exec(txn->db, DB_STMT_ROLLBACK);
        db_set_last_error(txn->db, saved);
}

int db_begin(Db *db) {
        int r;

        if (!db)
                return -EINVAL;
        if (!sqlite3_get_autocommit(db->sqlite))
                return db_errorf(db, -EALREADY, "a transaction is already open");
        r = db_stmt_exec(db, db->readonly ? DB_STMT_BEGIN : DB_STMT_BEGIN_IMMEDIATE);
        if (r < 0)
                return r;
        db->in_txn = true;
        return 0;
}

int db_commit(Db *db) {
        int r;

        if (!db)
                return -EINVAL;
        if (sqlite3_get_autocommit(db->sqlite)) {
                if (db->in_txn) {
                        db->in_txn = false;
                        return db_errorf(db, -ECANCELED,
                                         "the transaction was rolled back after an earlier error");
                }
                return db_errorf(db, -EINVAL, "no transaction is open");
        }
        r = db_stmt_exec(db, DB_STMT_COMMIT);
        if (r < 0)
                return r;
        db->in_txn = false;
        return 0;
}

int db_rollback(Db *db) {
        int r;

        if (!db)
                return -EINVAL;
        if (sqlite3_get_autocommit(db->sqlite)) {
                if (db->in_txn) {
                        db->in_txn = false;
                        return 0;       /* SQLite already did */
                }
                return db_errorf(db, -EINVAL, "no transaction is open");
        }
        r = db_stmt_exec(db, DB_STMT_ROLLBACK);
        if (r < 0)
                return r;
        db->in_txn = false;
        return 0;
}

int db_set_busy_timeout(Db *db, uint64_t usec) {
        uint64_t ms = usec / 1000;
        int rc;

        if (!db)
                return -EINVAL;
        rc = sqlite3_busy_timeout(db->sqlite, (int) MIN(ms, (uint64_t) INT32_MAX));
        if (rc != SQLITE_OK)
                return db_error(db, rc);
        return 0;
}

int db_schema_version(Db *db, int *ret) {
        _cleanup_db_stmt_ sqlite3_stmt *stmt = NULL;
        int r, rc;

        if (!db || !ret)
                return -EINVAL;
        r = db_stmt(db, DB_STMT_USER_VERSION, &stmt);
        if (r < 0)
                return r;
        rc = sqlite3_step(stmt);
        if (rc != SQLITE_ROW)
                return db_error(db, rc);
        *ret = sqlite3_column_int(stmt, 0);
        return 0;
}

Db *db_close(Db *db) {
        if (!db)
                return NULL;
        for (size_t i = 0; i < _DB_STMT_MAX; i++)
                (void) sqlite3_finalize(db->stmts[i]);
        /* Nothing is pending (statements finalised), so this cannot be SQLITE_BUSY. */
        (void) sqlite3_close(db->sqlite);
        free(db->last_error);
        free(db);
        return NULL;
}

/* A one-shot query returning a single integer (PRAGMAs and counts during open). */
static int db_query_int(Db *db, const char *sql, int64_t *ret) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        int rc;

        rc = sqlite3_prepare_v2(db->sqlite, sql, -1, &stmt, NULL);
        if (rc != SQLITE_OK)
                return db_error(db, rc);
        rc = sqlite3_step(stmt);
        if (rc != SQLITE_ROW)
                return db_error(db, rc == SQLITE_DONE ? SQLITE_NOTFOUND : rc);
        *ret = sqlite3_column_int64(stmt, 0);
        return 0;
}

static int db_exec(Db *db, const char *sql) {
        int rc;

        rc = sqlite3_exec(db->sqlite, sql, NULL, NULL, NULL);
        if (rc != SQLITE_OK)
                return db_error(db, rc);
        return 0;
}

/*
 * Apply the missing steps in order, each in its own transaction with its
 * user_version bump, so a failure leaves the last good version in place.
 * The version is re-read under the write lock: another process may have
 * migrated meanwhile.
 */
static int db_migrate(Db *db, const DbMigration *migrations, size_t n_migrations) {
        int r;

        for (size_t i = 0; i < n_migrations; i++) {
                const DbMigration *m = migrations + i;
                _cleanup_free_ char *bump = NULL;
                int64_t version;

                r = db_exec(db, "BEGIN IMMEDIATE");
                if (r < 0)
                        return r;

                r = db_query_int(db, "PRAGMA user_version", &version);
                if (r < 0)
                        goto rollback;
                if (version >= m->version) {
                        r = db_exec(db, "COMMIT");
                        if (r < 0)
                                goto rollback;
                        continue;
                }

                r = db_exec(db, m->sql);
                if (r < 0) {
                        r = db_errorf(db, r, "migration %d (%s) failed: %s", m->version,
                                      m->description, db_last_error(db));
                        goto rollback;
                }
                if (asprintf(&bump, "PRAGMA user_version = %d", m->version) < 0) {
                        r = db_errorf(db, -ENOMEM, "out of memory");
                        goto rollback;
                }
                r = db_exec(db, bump);
                if (r < 0)
                        goto rollback;
                /* A migration must not leave dangling references behind. */
                r = db_query_int(db, "SELECT count(*) FROM pragma_foreign_key_check", &version);
                if (r < 0)
                        goto rollback;
                if (version != 0) {
                        r = db_errorf(db, -EINVAL, "migration %d (%s) violates foreign keys",
                                      m->version, m->description);
                        goto rollback;
                }
                r = db_exec(db, "COMMIT");
                if (r < 0)
                        goto rollback;
                continue;

        rollback:
                if (!sqlite3_get_autocommit(db->sqlite)) {
                        char *saved = TAKE_PTR(db->last_error);

                        (void) sqlite3_exec(db->sqlite, "ROLLBACK", NULL, NULL, NULL);
                        db_set_last_error(db, saved);
                }
                return r;
        }
        return 0;
}

/*
 * Decide, by reading only, whether this file may be used. Returns the
 * current user_version, or -EBADMSG/-EPROTONOSUPPORT/-ENOENT/-EROFS.
 */
static int db_check(Db *db, const char *path, DbOpenFlags flags, int latest, int *ret_version) {
        int64_t app_id = 0, version = 0, n_objects = 0; /* gcc -O3 cannot see db_error() < 0 */
        int r;

        /* The first read parses the header: a non-SQLite file fails here with SQLITE_NOTADB. */
        r = db_query_int(db, "SELECT count(*) FROM sqlite_schema", &n_objects);
        if (r < 0)
                goto fail;
        r = db_query_int(db, "PRAGMA application_id", &app_id);
        if (r < 0)
                goto fail;
        r = db_query_int(db, "PRAGMA user_version", &version);
        if (r < 0)
                goto fail;

        if (app_id != 0 && app_id != DB_APPLICATION_ID)
                return db_errorf(db, -EBADMSG,
                                 "%s: SQLite database of another application (application_id 0x%08" PRIx32
                                 "), refusing to touch it",
                                 path, (uint32_t) app_id);
        if (app_id == 0 && (n_objects > 0 || version != 0))
                return db_errorf(db, -EBADMSG,
                                 "%s: SQLite database without the secd marker, refusing to touch it", path);
        if (version > latest)
                return db_errorf(db, -EPROTONOSUPPORT,
                                 "%s: schema version %" PRIi64 " is newer than this secd supports (%d); "
                                 "refusing to open it",
                                 path, version, latest);
        if (version < 0)
                return db_errorf(db, -EBADMSG, "%s: invalid schema version %" PRIi64, path, version);
        if (app_id == 0 && !(flags & DB_OPEN_CREATE))
                return db_errorf(db, -ENOENT, "%s: empty database and no DB_OPEN_CREATE", path);
        if (version < latest && (flags & DB_OPEN_READONLY))
                return db_errorf(db, -EROFS,
                                 "%s: schema version %" PRIi64 " needs migration to %d, but opened read-only",
                                 path, version, latest);

        *ret_version = (int) version;
        return 0;

fail:
        if (r == -EBADMSG)
                return db_errorf(db, r, "%s: not a database or corrupt: %s", path, db_last_error(db));
        return r;
}

static bool path_is_memory(const char *path) {
        return streq(path, ":memory:") || isempty(path);
}

/* Open path into db->sqlite and apply the settings every connection gets. */
static int db_connect(Db *db, const char *path, int open_flags) {
        int r, rc;

        rc = sqlite3_open_v2(path, &db->sqlite, open_flags | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE, NULL);
        if (rc != SQLITE_OK) {
                if (!db->sqlite)
                        return db_errorf(db, -ENOMEM, "out of memory");
                r = db_error(db, rc);
                return db_errorf(db, r, "%s: cannot open: %s", path, db_last_error(db));
        }

        (void) sqlite3_extended_result_codes(db->sqlite, 1);
        (void) sqlite3_busy_timeout(db->sqlite, DB_BUSY_TIMEOUT_USEC_DEFAULT / 1000);
        /* Hardening: no schema tricks, no double-quoted string literals, no untrusted functions in the schema. */
        (void) sqlite3_db_config(db->sqlite, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
        (void) sqlite3_db_config(db->sqlite, SQLITE_DBCONFIG_DQS_DML, 0, NULL);
        (void) sqlite3_db_config(db->sqlite, SQLITE_DBCONFIG_DQS_DDL, 0, NULL);
        (void) sqlite3_db_config(db->sqlite, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
        (void) sqlite3_db_config(db->sqlite, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, NULL);
        return 0;
}

static int db_open_checked(const char *path, DbOpenFlags flags, const DbMigration *migrations,
                           size_t n_migrations, Db *db) {
        int version = 0, r, rc;
        bool exists = false;

        if (path_is_memory(path)) {
                if (flags & DB_OPEN_READONLY)
                        return db_errorf(db, -EINVAL, "a read-only in-memory database makes no sense");
                flags |= DB_OPEN_CREATE;
        } else {
                struct stat st;

                if (stat(path, &st) < 0) {
                        if (errno != ENOENT || !(flags & DB_OPEN_CREATE))
                                return db_errorf(db, negative_errno(), "%s: %m", path);
                } else if (!S_ISREG(st.st_mode))
                        return db_errorf(db, S_ISDIR(st.st_mode) ? -EISDIR : -EBADMSG,
                                         "%s: not a regular file", path);
                else
                        exists = true;
        }

        /*
         * Judge an existing file through a read-only connection first, so a
         * refusal cannot have written a byte: no hot-journal rollback, no WAL
         * checkpoint on close, no journal-mode change.
         */
        if (exists && !(flags & DB_OPEN_READONLY)) {
                r = db_connect(db, path, SQLITE_OPEN_READONLY);
                if (r >= 0) {
                        (void) sqlite3_db_config(db->sqlite, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
                        r = db_check(db, path, flags, (int) n_migrations, &version);
                }
                (void) sqlite3_close(db->sqlite);
                db->sqlite = NULL;
                if (r < 0)
                        return r;
        }

        r = db_connect(db, path,
                       (flags & DB_OPEN_READONLY) ? SQLITE_OPEN_READONLY
                                                  : SQLITE_OPEN_READWRITE |
                                                            ((flags & DB_OPEN_CREATE) ? SQLITE_OPEN_CREATE : 0));
        if (r < 0)
                return r;

        /* Again on this connection (the file may have changed), still before any write. */
        r = db_check(db, path, flags, (int) n_migrations, &version);
        if (r < 0)
                return r;

        r = db_exec(db, "PRAGMA foreign_keys = ON");
        if (r < 0)
                return r;

        if (!db->readonly) {
                if (!path_is_memory(path)) {
                        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
                        const unsigned char *mode;

                        rc = sqlite3_prepare_v2(db->sqlite, "PRAGMA journal_mode = WAL", -1, &stmt, NULL);
                        if (rc != SQLITE_OK)
                                return db_error(db, rc);
                        rc = sqlite3_step(stmt);
                        if (rc != SQLITE_ROW)
                                return db_error(db, rc);
                        mode = sqlite3_column_text(stmt, 0);
                        if (!mode || strcasecmp((const char *) mode, "wal") != 0)
                                return db_errorf(db, -EOPNOTSUPP, "%s: cannot switch to WAL mode (got %s)",
                                                 path, mode ? (const char *) mode : "nothing");
                }
                /* Every acknowledged commit is on disk. */
                r = db_exec(db, "PRAGMA synchronous = FULL");
                if (r < 0)
                        return r;

                if (version < (int) n_migrations) {
                        r = db_migrate(db, migrations, n_migrations);
                        if (r < 0)
                                return r;
                }
        }

        return 0;
}

/* Keep (a bounded copy of) why db_open() failed, for db_last_error(NULL). */
static int db_open_fail(int r, const char *message) {
        size_t n = strnlen(message, sizeof db_open_error - 1);

        memcpy(db_open_error, message, n);
        db_open_error[n] = '\0';
        return r;
}

int db_open_with_migrations(const char *path, DbOpenFlags flags, const DbMigration *migrations,
                            size_t n_migrations, Db **ret) {
        _cleanup_(db_closep) Db *db = NULL;
        int r;

        db_open_error[0] = '\0';

        if (!path || !ret || (flags & ~(DB_OPEN_CREATE | DB_OPEN_READONLY)) ||
            ((flags & DB_OPEN_CREATE) && (flags & DB_OPEN_READONLY)))
                return db_open_fail(-EINVAL, "invalid arguments to db_open()");
        if (!migrations || n_migrations == 0 || n_migrations > INT32_MAX)
                return db_open_fail(-EINVAL, "no migrations");
        for (size_t i = 0; i < n_migrations; i++)
                if (migrations[i].version != (int) i + 1 || !migrations[i].sql)
                        return db_open_fail(-EINVAL, "migrations must be numbered 1..n in order");

        db = calloc(1, sizeof *db);
        if (!db)
                return -ENOMEM;
        db->readonly = flags & DB_OPEN_READONLY;

        r = db_open_checked(path, flags, migrations, n_migrations, db);
        if (r < 0)
                return db_open_fail(r, db_last_error(db));

        free(db->last_error);
        db->last_error = NULL;
        *ret = TAKE_PTR(db);
        return 0;
}

int db_open(const char *path, DbOpenFlags flags, Db **ret) {
        return db_open_with_migrations(path, flags, db_migrations, db_n_migrations, ret);
}
