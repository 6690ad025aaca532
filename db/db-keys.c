/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The key server's rows: a mailbox's identity X25519 key, its signed
 * pre-key and its one-time pre-keys. Signatures are the caller's business
 * (checked before anything gets here); this file keeps the sets whole: a
 * publish replaces everything at once, and a bundle takes its one-time
 * pre-key in the same savepoint that reads it, so two bundles never share
 * one (the writer runs them one after the other; another handle waits for
 * the write lock).
 */
#include <assert.h>

#include "db-internal.h"

static const char *const keys_statement_sql[_DB_STMT_MAX] = {
        [DB_STMT_KEYS_MAILBOX_EXISTS] = "SELECT 1 FROM mailboxes WHERE id = ?1",
        [DB_STMT_KEYS_IDENTITY_SET] =
                "INSERT INTO identity_keys(mailbox_id, dh_key, signature, published_usec) VALUES (?1, ?2, ?3, ?4) "
                "ON CONFLICT(mailbox_id) DO UPDATE SET dh_key = excluded.dh_key, signature = excluded.signature, "
                "published_usec = excluded.published_usec",
        [DB_STMT_KEYS_SPKS_DELETE] = "DELETE FROM signed_prekeys WHERE mailbox_id = ?1",
        [DB_STMT_KEYS_SPK_INSERT] =
                "INSERT INTO signed_prekeys(mailbox_id, key_id, public_key, signature, published_usec) "
                "VALUES (?1, ?2, ?3, ?4, ?5)",
        [DB_STMT_KEYS_OTKS_DELETE] = "DELETE FROM one_time_prekeys WHERE mailbox_id = ?1",
        [DB_STMT_KEYS_OTK_INSERT] =
                "INSERT INTO one_time_prekeys(mailbox_id, key_id, public_key, published_usec) VALUES (?1, ?2, ?3, ?4)",
        /* Only one signed pre-key is kept; should there ever be more, the highest id wins (index order). */
        [DB_STMT_KEYS_BUNDLE] =
                "SELECT mb.identity_key, i.dh_key, i.signature, s.key_id, s.public_key, s.signature "
                "FROM mailboxes mb JOIN identity_keys i ON i.mailbox_id = mb.id "
                "JOIN signed_prekeys s ON s.mailbox_id = mb.id "
                "WHERE mb.id = ?1 ORDER BY s.key_id DESC LIMIT 1",
        [DB_STMT_KEYS_OTK_FIRST] =
                "SELECT key_id, public_key FROM one_time_prekeys WHERE mailbox_id = ?1 ORDER BY key_id LIMIT 1",
        [DB_STMT_KEYS_OTK_DELETE] = "DELETE FROM one_time_prekeys WHERE mailbox_id = ?1 AND key_id = ?2",
        [DB_STMT_KEYS_OTK_COUNT] = "SELECT count(*) FROM one_time_prekeys WHERE mailbox_id = ?1",
        /* Admin path: reads every published mailbox and every one-time key once. */
        [DB_STMT_KEYS_STATS] =
                "SELECT (SELECT count(*) FROM identity_keys i "
                "        WHERE EXISTS (SELECT 1 FROM signed_prekeys s WHERE s.mailbox_id = i.mailbox_id)), "
                "       (SELECT count(*) FROM one_time_prekeys), "
                "       (SELECT count(*) FROM identity_keys i "
                "        WHERE EXISTS (SELECT 1 FROM signed_prekeys s WHERE s.mailbox_id = i.mailbox_id) "
                "        AND NOT EXISTS (SELECT 1 FROM one_time_prekeys o WHERE o.mailbox_id = i.mailbox_id))",
};

static int keys_stmt(Db *db, DbStatement id, sqlite3_stmt **ret) {
        assert(keys_statement_sql[id]);
        return db_stmt_sql(db, id, keys_statement_sql[id], ret);
}

static int blob_exact(sqlite3_stmt *stmt, int col, void *out, size_t size) {
        const void *b = sqlite3_column_blob(stmt, col);

        if (!b || sqlite3_column_bytes(stmt, col) != (int) size)
                return -EBADMSG;
        memcpy(out, b, size);
        return 0;
}

static int keys_step_done(Db *db, sqlite3_stmt *stmt) {
        int rc = sqlite3_step(stmt);

        if (rc != SQLITE_DONE)
                return db_error(db, rc);
        return 0;
}

static int keys_delete_all(Db *db, DbStatement id, int64_t mailbox_id) {
        _cleanup_db_stmt_ sqlite3_stmt *stmt = NULL;
        int r, rc;

        r = keys_stmt(db, id, &stmt);
        if (r < 0)
                return r;
        rc = sqlite3_bind_int64(stmt, 1, mailbox_id);
        if (rc != SQLITE_OK)
                return db_error(db, rc);
        return keys_step_done(db, stmt);
}

static int mailbox_exists(Db *db, int64_t mailbox_id) {
        _cleanup_db_stmt_ sqlite3_stmt *stmt = NULL;
        int r, rc;

        r = keys_stmt(db, DB_STMT_KEYS_MAILBOX_EXISTS, &stmt);
        if (r < 0)
                return r;
        rc = sqlite3_bind_int64(stmt, 1, mailbox_id);
        if (rc != SQLITE_OK)
                return db_error(db, rc);
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_DONE)
                return db_errorf(db, -ENOENT, "no mailbox with id %" PRIi64, mailbox_id);
        if (rc != SQLITE_ROW)
                return db_error(db, rc);
        return 0;
}

int db_keys_publish(Db *db, int64_t mailbox_id, const uint8_t identity_dh[32], const uint8_t identity_dh_sig[64],
                    uint32_t spk_id, const uint8_t spk[32], const uint8_t spk_sig[64], const DbPrekey *otks,
                    size_t n_otks, int64_t now_usec) {
        _cleanup_db_txn_ DbTxn txn = {};
        int r, rc;

        if (!db)
                return -EINVAL;
        if (!identity_dh || !identity_dh_sig || !spk || !spk_sig || now_usec < 0)
                return db_errorf(db, -EINVAL, "keys: missing key or signature, or negative time");
        if (n_otks > DB_OTK_MAX || (!otks && n_otks > 0))
                return db_errorf(db, -EINVAL, "keys: %zu one-time pre-keys, at most %d", n_otks, DB_OTK_MAX);
        /* At most 100: the quadratic check is cheaper than anything else here. */
        for (size_t i = 1; i < n_otks; i++)
                for (size_t j = 0; j < i; j++)
                        if (otks[i].id == otks[j].id)
                                return db_errorf(db, -EINVAL, "keys: one-time pre-key id %" PRIu32 " twice",
                                                 otks[i].id);

        r = db_txn_begin(db, &txn);
        if (r < 0)
                return r;
        r = mailbox_exists(db, mailbox_id);
        if (r < 0)
                return r;

        {
                _cleanup_db_stmt_ sqlite3_stmt *stmt = NULL;

                r = keys_stmt(db, DB_STMT_KEYS_IDENTITY_SET, &stmt);
                if (r < 0)
                        return r;
                rc = sqlite3_bind_int64(stmt, 1, mailbox_id);
                if (rc == SQLITE_OK)
                        rc = sqlite3_bind_blob(stmt, 2, identity_dh, 32, SQLITE_STATIC);
                if (rc == SQLITE_OK)
                        rc = sqlite3_bind_blob(stmt, 3, identity_dh_sig, 64, SQLITE_STATIC);
                if (rc == SQLITE_OK)
                        rc = sqlite3_bind_int64(stmt, 4, now_usec);
                if (rc != SQLITE_OK)
                        return db_error(db, rc);
                r = keys_step_done(db, stmt);
                if (r < 0)
                        return r;
        }

        r = keys_delete_all(db, DB_STMT_KEYS_SPKS_DELETE, mailbox_id);
        if (r < 0)
                return r;
        {
                _cleanup_db_stmt_ sqlite3_stmt *stmt = NULL;

                r = keys_stmt(db, DB_STMT_KEYS_SPK_INSERT, &stmt);
                if (r < 0)
                        return r;
                rc = sqlite3_bind_int64(stmt, 1, mailbox_id);
                if (rc == SQLITE_OK)
                        rc = sqlite3_bind_int64(stmt, 2, (sqlite3_int64) spk_id);
                if (rc == SQLITE_OK)
                        rc = sqlite3_bind_blob(stmt, 3, spk, 32, SQLITE_STATIC);
                if (rc == SQLITE_OK)
                        rc = sqlite3_bind_blob(stmt, 4, spk_sig, 64, SQLITE_STATIC);
                if (rc == SQLITE_OK)
                        rc = sqlite3_bind_int64(stmt, 5, now_usec);
                if (rc != SQLITE_OK)
                        return db_error(db, rc);
                r = keys_step_done(db, stmt);
                if (r < 0)
                        return r;
        }

        r = keys_delete_all(db, DB_STMT_KEYS_OTKS_DELETE, mailbox_id);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n_otks; i++) {
                _cleanup_db_stmt_ sqlite3_stmt *stmt = NULL;

                r = keys_stmt(db, DB_STMT_KEYS_OTK_INSERT, &stmt);
                if (r < 0)
                        return r;
                rc = sqlite3_bind_int64(stmt, 1, mailbox_id);
                if (rc == SQLITE_OK)
                        rc = sqlite3_bind_int64(stmt, 2, (sqlite3_int64) otks[i].id);
                if (rc == SQLITE_OK)
                        rc = sqlite3_bind_blob(stmt, 3, otks[i].key, sizeof otks[i].key, SQLITE_STATIC);
                if (rc == SQLITE_OK)
                        rc = sqlite3_bind_int64(stmt, 4, now_usec);
                if (rc != SQLITE_OK)
                        return db_error(db, rc);
                r = keys_step_done(db, stmt);
                if (r < 0)
                        return r;
        }

        return db_txn_commit(&txn);
}

int db_keys_bundle(Db *db, int64_t mailbox_id, DbKeyBundle *ret) {
        _cleanup_db_txn_ DbTxn txn = {};
        DbKeyBundle b = {};
        int64_t key_id;
        int r, rc;

        if (!db || !ret)
                return -EINVAL;

        /* A write transaction from the start: the read and the delete of the one-time key are one step. */
        r = db_txn_begin(db, &txn);
        if (r < 0)
                return r;

        {
                _cleanup_db_stmt_ sqlite3_stmt *stmt = NULL;

                r = keys_stmt(db, DB_STMT_KEYS_BUNDLE, &stmt);
                if (r < 0)
                        return r;
                rc = sqlite3_bind_int64(stmt, 1, mailbox_id);
                if (rc != SQLITE_OK)
                        return db_error(db, rc);
                rc = sqlite3_step(stmt);
                if (rc == SQLITE_DONE)
                        return db_errorf(db, -ENOENT, "mailbox %" PRIi64 " published no keys", mailbox_id);
                if (rc != SQLITE_ROW)
                        return db_error(db, rc);
                r = blob_exact(stmt, 0, b.identity_key, sizeof b.identity_key);
                if (r >= 0)
                        r = blob_exact(stmt, 1, b.identity_dh, sizeof b.identity_dh);
                if (r >= 0)
                        r = blob_exact(stmt, 2, b.identity_dh_sig, sizeof b.identity_dh_sig);
                key_id = sqlite3_column_int64(stmt, 3);
                if (r >= 0 && (key_id < 0 || key_id > UINT32_MAX))
                        r = -EBADMSG;
                if (r >= 0)
                        r = blob_exact(stmt, 4, b.spk, sizeof b.spk);
                if (r >= 0)
                        r = blob_exact(stmt, 5, b.spk_sig, sizeof b.spk_sig);
                if (r < 0)
                        return db_errorf(db, sqlite3_errcode(db->sqlite) == SQLITE_NOMEM ? -ENOMEM : r,
                                         "mailbox %" PRIi64 ": cannot read its keys", mailbox_id);
                b.spk_id = (uint32_t) key_id;
        }

        {
                _cleanup_db_stmt_ sqlite3_stmt *stmt = NULL;

                r = keys_stmt(db, DB_STMT_KEYS_OTK_FIRST, &stmt);
                if (r < 0)
                        return r;
                rc = sqlite3_bind_int64(stmt, 1, mailbox_id);
                if (rc != SQLITE_OK)
                        return db_error(db, rc);
                rc = sqlite3_step(stmt);
                if (rc == SQLITE_ROW) {
                        key_id = sqlite3_column_int64(stmt, 0);
                        if (key_id < 0 || key_id > UINT32_MAX ||
                            blob_exact(stmt, 1, b.otk.key, sizeof b.otk.key) < 0)
                                return db_errorf(db, -EBADMSG, "mailbox %" PRIi64 ": cannot read a one-time pre-key",
                                                 mailbox_id);
                        b.otk.id = (uint32_t) key_id;
                        b.has_otk = true;
                } else if (rc != SQLITE_DONE)
                        return db_error(db, rc);
        }

        if (b.has_otk) {
                _cleanup_db_stmt_ sqlite3_stmt *stmt = NULL;

                r = keys_stmt(db, DB_STMT_KEYS_OTK_DELETE, &stmt);
                if (r < 0)
                        return r;
                rc = sqlite3_bind_int64(stmt, 1, mailbox_id);
                if (rc == SQLITE_OK)
                        rc = sqlite3_bind_int64(stmt, 2, (sqlite3_int64) b.otk.id);
                if (rc != SQLITE_OK)
                        return db_error(db, rc);
                r = keys_step_done(db, stmt);
                if (r < 0)
                        return r;
                if (sqlite3_changes(db->sqlite) != 1)
                        return db_errorf(db, -EIO, "mailbox %" PRIi64 ": one-time pre-key vanished", mailbox_id);
        }

        r = db_txn_commit(&txn);
        if (r < 0)
                return r;
        *ret = b;
        return 0;
}

int db_keys_count(Db *db, int64_t mailbox_id, uint64_t *ret) {
        _cleanup_db_stmt_ sqlite3_stmt *stmt = NULL;
        int64_t n;
        int r, rc;

        if (!db || !ret)
                return -EINVAL;
        r = keys_stmt(db, DB_STMT_KEYS_OTK_COUNT, &stmt);
        if (r < 0)
                return r;
        rc = sqlite3_bind_int64(stmt, 1, mailbox_id);
        if (rc != SQLITE_OK)
                return db_error(db, rc);
        rc = sqlite3_step(stmt);
        if (rc != SQLITE_ROW)
                return db_error(db, rc);
        n = sqlite3_column_int64(stmt, 0);
        if (n < 0)
                return db_errorf(db, -EBADMSG, "negative count");
        *ret = (uint64_t) n;
        return 0;
}

int db_keys_stats(Db *db, DbKeysStats *ret) {
        _cleanup_db_stmt_ sqlite3_stmt *stmt = NULL;
        int64_t published, otks, exhausted;
        int r, rc;

        if (!db || !ret)
                return -EINVAL;
        r = keys_stmt(db, DB_STMT_KEYS_STATS, &stmt);
        if (r < 0)
                return r;
        rc = sqlite3_step(stmt);
        if (rc != SQLITE_ROW)
                return db_error(db, rc);
        published = sqlite3_column_int64(stmt, 0);
        otks = sqlite3_column_int64(stmt, 1);
        exhausted = sqlite3_column_int64(stmt, 2);
        if (published < 0 || otks < 0 || exhausted < 0)
                return db_errorf(db, -EBADMSG, "negative count");
        *ret = (DbKeysStats) {
                .published = (uint64_t) published,
                .one_time_prekeys = (uint64_t) otks,
                .exhausted = (uint64_t) exhausted,
        };
        return 0;
}
