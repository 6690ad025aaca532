/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Internals shared by the db/ sources (and the db unit test): the handle,
 * the per-handle cache of prepared statements, error recording, and
 * transactions that nest inside a caller's db_begin().
 */

#include <inttypes.h>
#include <sqlite3.h>

#include "db.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(sqlite3_stmt *, sqlite3_finalize);

typedef enum DbStatement {
        DB_STMT_BEGIN,                  /* deferred: read-only handles */
        DB_STMT_BEGIN_IMMEDIATE,
        DB_STMT_COMMIT,
        DB_STMT_ROLLBACK,
        DB_STMT_SAVEPOINT,
        DB_STMT_RELEASE,
        DB_STMT_ROLLBACK_TO,
        DB_STMT_USER_VERSION,
        DB_STMT_SETTING_GET,
        DB_STMT_SETTING_SET,
        DB_STMT_GENERATION_BUMP,
        DB_STMT_RULE_INSERT,
        DB_STMT_RULE_DELETE,
        DB_STMT_RULES_DELETE_ALL,
        DB_STMT_RULES_SELECT,
        DB_STMT_AUDIT_INSERT,
        DB_STMT_AUDIT_AFTER,
        DB_STMT_AUDIT_NEWEST,
        DB_STMT_AUDIT_TRIM,
        /* db-relay.c and db-keys.c: their SQL lives there, prepared with db_stmt_sql() */
        DB_STMT_MAILBOX_BY_KEY,
        DB_STMT_MAILBOX_INSERT,
        DB_STMT_MAILBOX_USAGE,
        DB_STMT_MAILBOXES_OWNED,
        DB_STMT_DEDUP_LOOKUP,
        DB_STMT_MESSAGE_DELETE,
        DB_STMT_MESSAGE_INSERT,
        DB_STMT_MESSAGES_FETCH,
        DB_STMT_MESSAGE_ACK_DELETE,
        DB_STMT_MESSAGES_EXPIRE,
        DB_STMT_DEDUP_DELETE,
        DB_STMT_DEDUP_EXPIRE,
        DB_STMT_RELAY_STATS,
        DB_STMT_KEYS_MAILBOX_EXISTS,
        DB_STMT_KEYS_IDENTITY_SET,
        DB_STMT_KEYS_SPKS_DELETE,
        DB_STMT_KEYS_SPK_INSERT,
        DB_STMT_KEYS_OTKS_DELETE,
        DB_STMT_KEYS_OTK_INSERT,
        DB_STMT_KEYS_BUNDLE,
        DB_STMT_KEYS_OTK_FIRST,
        DB_STMT_KEYS_OTK_DELETE,
        DB_STMT_KEYS_OTK_COUNT,
        DB_STMT_KEYS_STATS,
        _DB_STMT_MAX,
} DbStatement;

struct Db {
        sqlite3 *sqlite;
        bool readonly;
        bool in_txn;                    /* the caller opened a transaction with db_begin() */
        char *last_error;
        sqlite3_stmt *stmts[_DB_STMT_MAX];
};

/* One schema step: applied in its own transaction together with the user_version bump. */
typedef struct DbMigration {
        int version;                    /* the user_version this step produces: 1, 2, ... */
        const char *description;
        const char *sql;                /* one or more statements */
} DbMigration;

extern const DbMigration db_migrations[];
extern const size_t db_n_migrations;

/*
 * db_open() with an explicit list of migrations (which must be numbered
 * 1..n in order); the newest version the code knows is then n. For tests
 * that need to inject a failing step.
 */
int db_open_with_migrations(const char *path, DbOpenFlags flags, const DbMigration *migrations,
                            size_t n_migrations, Db **ret);

/* Map an SQLite result code to a negative errno. */
int db_errno_from_sqlite(sqlite3 *sqlite, int rc);

/* Record SQLite's message for rc as the last error; return the negative errno. */
int db_error(Db *db, int rc);
/* Record a message of our own as the last error; return r (a negative errno). */
int db_errorf(Db *db, int r, const char *format, ...) _printf_(3, 4);

/*
 * The cached, prepared statement for id, reset and with bindings cleared.
 * The handle keeps ownership; callers hold it in a _cleanup_db_stmt_
 * variable so it is reset (releasing its read snapshot) on every path.
 */
int db_stmt(Db *db, DbStatement id, sqlite3_stmt **ret);

static inline void db_stmt_resetp(sqlite3_stmt **stmt) {
        if (*stmt) {
                (void) sqlite3_reset(*stmt);
                (void) sqlite3_clear_bindings(*stmt);
        }
}
#define _cleanup_db_stmt_ _cleanup_(db_stmt_resetp)

/*
 * db_stmt() for a statement whose SQL is kept by the module that uses it
 * (db-relay.c, db-keys.c): prepared from sql on first use into the same
 * cache, so db_close() finalises it with the others.
 */
static inline int db_stmt_sql(Db *db, DbStatement id, const char *sql, sqlite3_stmt **ret) {
        if (!db->stmts[id]) {
                int rc = sqlite3_prepare_v3(db->sqlite, sql, -1, SQLITE_PREPARE_PERSISTENT, &db->stmts[id], NULL);

                if (rc != SQLITE_OK)
                        return db_error(db, rc);
        }
        return db_stmt(db, id, ret);
}

/* Run a cached statement that returns no rows. */
int db_stmt_exec(Db *db, DbStatement id);

/*
 * A write transaction for one API call: BEGIN IMMEDIATE when the handle has
 * none open, otherwise a SAVEPOINT inside the caller's transaction (so a
 * failed call undoes only its own changes and leaves the caller's in place).
 * Declare with "_cleanup_db_txn_ DbTxn txn = {};": anything not committed
 * with db_txn_commit() is rolled back on every exit path.
 */
typedef struct DbTxn {
        Db *db;
        bool savepoint;
        bool active;
} DbTxn;

int db_txn_begin(Db *db, DbTxn *txn);
int db_txn_commit(DbTxn *txn);
void db_txn_abort(DbTxn *txn);
static inline void db_txn_abortp(DbTxn *txn) {
        db_txn_abort(txn);
}
#define _cleanup_db_txn_ _cleanup_(db_txn_abortp)

/* Bounded copies of result columns; NULL column gives NULL. */
int db_column_strdup(sqlite3_stmt *stmt, int col, size_t max_len, char **ret);

/* CLOCK_REALTIME in microseconds. */
int64_t db_now_usec(void);

/* Bump the policy generation (inside an open DbTxn). */
int db_policy_generation_bump(Db *db);
