/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The SQLite store: one database file, WAL, foreign keys on, STRICT tables,
 * schema versioned by PRAGMA user_version and applied by ordered
 * migrations, each in its own transaction. Returns rows, never verdicts.
 * SQLite errors are translated to negative errno here, at the module edge:
 *   -ENOENT   no such row
 *   -EEXIST   constraint violation (duplicate)
 *   -EBUSY    database locked beyond the busy timeout
 *   -EBADMSG  not a database / corrupt file (never overwritten)
 *   -EPROTONOSUPPORT  schema newer than this code
 *   -EROFS/-EACCES/-ENOSPC/-EIO  as the file system says
 * The SQLite message for the last failure is kept: db_last_error().
 *
 * A Db handle is used by one thread at a time (the daemon's writer owns
 * one; readers open their own).
 */

#include "macro.h"
#include "policy.h"

typedef struct Db Db;

#define DB_SCHEMA_VERSION_LATEST 1  /* bumped by each migration that lands */

typedef enum DbOpenFlags {
        DB_OPEN_CREATE = 1 << 0,        /* create the file and schema if missing */
        DB_OPEN_READONLY = 1 << 1,
} DbOpenFlags;

/* Open (and migrate) path; ":memory:" for tests. */
int db_open(const char *path, DbOpenFlags flags, Db **ret);
Db *db_close(Db *db);
DEFINE_TRIVIAL_CLEANUP_FUNC(Db *, db_close);

/* SQLite's message for the last failure on this handle (never NULL). */
const char *db_last_error(Db *db);
int db_schema_version(Db *db, int *ret);

/* Explicit transactions (BEGIN IMMEDIATE / COMMIT / ROLLBACK). */
int db_begin(Db *db);
int db_commit(Db *db);
int db_rollback(Db *db);

/* Settings: small key/value strings. -ENOENT if unset. */
int db_setting_get(Db *db, const char *key, char **ret);
int db_setting_set(Db *db, const char *key, const char *value);

/*
 * Policy. Each mutating call bumps the policy generation in the same
 * transaction (its own, unless the caller has one open).
 */
int db_policy_generation(Db *db, uint64_t *ret);
int db_policy_mode(Db *db, PolicyMode *ret);               /* default enforce */
int db_policy_set_mode(Db *db, PolicyMode mode);
int db_rule_insert(Db *db, const PolicyRule *rule, int64_t *ret_id);
int db_rule_delete(Db *db, int64_t id);                     /* -ENOENT if absent */
/* Replace every rule (policy import), atomically. */
int db_rules_replace(Db *db, const PolicyRule *rules, size_t n, PolicyMode mode);
/* All rules ordered by id; caller frees with policy_rules_free(). */
int db_rules_load(Db *db, PolicyRule **ret_rules, size_t *ret_n);
void policy_rules_free(PolicyRule *rules, size_t n);

/* Audit trail (decisions and admin actions), append-only with a bound. */
typedef struct DbAuditEntry {
        int64_t id;
        int64_t time_usec;      /* CLOCK_REALTIME */
        char *kind;             /* "decision", "policy", "service", ... */
        char *message;          /* human-readable summary */
        char *fields_json;      /* JSON object with the attested facts, may be NULL */
} DbAuditEntry;

int db_audit_append(Db *db, const DbAuditEntry *e, int64_t *ret_id);
/* Entries with id > after_id, oldest first, at most limit; or the newest limit if after_id < 0. */
int db_audit_list(Db *db, int64_t after_id, size_t limit, DbAuditEntry **ret, size_t *ret_n);
/* Keep at most max_rows newest entries. */
int db_audit_trim(Db *db, size_t max_rows);
void db_audit_entries_free(DbAuditEntry *e, size_t n);
