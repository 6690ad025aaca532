/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The audit trail: append, list (follow by id, or the newest N), trim to a bound. */
#include "db-internal.h"

int db_audit_append(Db *db, const DbAuditEntry *e, int64_t *ret_id) {
        _cleanup_db_txn_ DbTxn txn = {};
        _cleanup_db_stmt_ sqlite3_stmt *stmt = NULL;
        int64_t id;
        int r, rc;

        if (!db || !e)
                return -EINVAL;
        if (!e->kind || !e->message)
                return db_errorf(db, -EINVAL, "audit entry without kind or message");

        r = db_txn_begin(db, &txn);
        if (r < 0)
                return r;
        r = db_stmt(db, DB_STMT_AUDIT_INSERT, &stmt);
        if (r < 0)
                return r;
        rc = sqlite3_bind_int64(stmt, 1, e->time_usec > 0 ? e->time_usec : db_now_usec());
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(stmt, 2, e->kind, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(stmt, 3, e->message, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = e->fields_json ? sqlite3_bind_text(stmt, 4, e->fields_json, -1, SQLITE_STATIC)
                                    : sqlite3_bind_null(stmt, 4);
        if (rc != SQLITE_OK)
                return db_error(db, rc);
        rc = sqlite3_step(stmt);
        if (rc != SQLITE_DONE)
                return db_error(db, rc);
        if (sqlite3_changes(db->sqlite) != 1)
                return db_errorf(db, -EINVAL, "audit entry: fields are not a JSON object");
        id = sqlite3_last_insert_rowid(db->sqlite);

        r = db_txn_commit(&txn);
        if (r < 0)
                return r;
        if (ret_id)
                *ret_id = id;
        return 0;
}

static void db_audit_entry_done(DbAuditEntry *e) {
        free(e->kind);
        free(e->message);
        free(e->fields_json);
        *e = (DbAuditEntry) {};
}

void db_audit_entries_free(DbAuditEntry *e, size_t n) {
        if (!e)
                return;
        for (size_t i = 0; i < n; i++)
                db_audit_entry_done(e + i);
        free(e);
}

static int audit_entry_from_row(Db *db, sqlite3_stmt *stmt, DbAuditEntry *ret) {
        _cleanup_(db_audit_entry_done) DbAuditEntry e = {};
        int r;

        e.id = sqlite3_column_int64(stmt, 0);
        e.time_usec = sqlite3_column_int64(stmt, 1);
        r = db_column_strdup(stmt, 2, DB_AUDIT_KIND_MAX, &e.kind);
        if (r >= 0)
                r = db_column_strdup(stmt, 3, DB_AUDIT_MESSAGE_MAX, &e.message);
        if (r >= 0)
                r = db_column_strdup(stmt, 4, DB_AUDIT_FIELDS_MAX, &e.fields_json);
        if (r < 0)
                return db_errorf(db, r, "audit entry %" PRIi64 ": cannot read it", e.id);
        if (!e.kind || !e.message)
                return db_errorf(db, -EBADMSG, "audit entry %" PRIi64 ": missing kind or message", e.id);

        *ret = e;
        e = (DbAuditEntry) {};
        return 0;
}

int db_audit_list(Db *db, int64_t after_id, size_t limit, DbAuditEntry **ret, size_t *ret_n) {
        _cleanup_db_stmt_ sqlite3_stmt *stmt = NULL;
        DbAuditEntry *entries = NULL;
        size_t n = 0, bytes;
        int r, rc;

        if (!db || !ret || !ret_n)
                return -EINVAL;

        limit = MIN(limit, (size_t) DB_AUDIT_LIST_MAX);
        if (limit == 0) {
                *ret = NULL;
                *ret_n = 0;
                return 0;
        }

        if (after_id >= 0) {
                r = db_stmt(db, DB_STMT_AUDIT_AFTER, &stmt);
                if (r < 0)
                        return r;
                rc = sqlite3_bind_int64(stmt, 1, after_id);
                if (rc == SQLITE_OK)
                        rc = sqlite3_bind_int64(stmt, 2, (sqlite3_int64) limit);
        } else {
                r = db_stmt(db, DB_STMT_AUDIT_NEWEST, &stmt);
                if (r < 0)
                        return r;
                rc = sqlite3_bind_int64(stmt, 1, (sqlite3_int64) limit);
        }
        if (rc != SQLITE_OK)
                return db_error(db, rc);

        /* limit is bounded, so one allocation of the worst case is bounded too. */
        if (!size_mul_ok(limit, sizeof *entries, &bytes))
                return db_errorf(db, -ENOMEM, "out of memory");
        entries = calloc(1, bytes);
        if (!entries)
                return db_errorf(db, -ENOMEM, "out of memory");

        while (n < limit) {
                rc = sqlite3_step(stmt);
                if (rc == SQLITE_DONE)
                        break;
                if (rc != SQLITE_ROW) {
                        r = db_error(db, rc);
                        goto fail;
                }
                r = audit_entry_from_row(db, stmt, entries + n);
                if (r < 0)
                        goto fail;
                n++;
        }

        if (n == 0) {
                free(entries);
                entries = NULL;
        }
        *ret = entries;
        *ret_n = n;
        return 0;

fail:
        db_audit_entries_free(entries, n);
        return r;
}

int db_audit_trim(Db *db, size_t max_rows) {
        _cleanup_db_txn_ DbTxn txn = {};
        _cleanup_db_stmt_ sqlite3_stmt *stmt = NULL;
        int changes, r, rc;

        if (!db)
                return -EINVAL;
        if (max_rows > INT64_MAX)
                max_rows = INT64_MAX;

        r = db_txn_begin(db, &txn);
        if (r < 0)
                return r;
        r = db_stmt(db, DB_STMT_AUDIT_TRIM, &stmt);
        if (r < 0)
                return r;
        rc = sqlite3_bind_int64(stmt, 1, (sqlite3_int64) max_rows);
        if (rc != SQLITE_OK)
                return db_error(db, rc);
        rc = sqlite3_step(stmt);
        if (rc != SQLITE_DONE)
                return db_error(db, rc);
        changes = sqlite3_changes(db->sqlite);
        r = db_txn_commit(&txn);
        if (r < 0)
                return r;
        return changes;
}
