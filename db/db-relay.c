/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The relay's rows: mailboxes, queued messages and their dedup keys
 * ((sender, client_msg_id) -> server id, written by migration 3's insert
 * trigger and kept until the message's expiry, acknowledged or not). Every
 * query goes through an index (dedup's primary key for de-duplication,
 * messages(mailbox_id, id) for FETCH, dedup's expiry index for the sweep of
 * both tables); quotas and stats read the per-mailbox counters that
 * migration 3's triggers keep, never the messages themselves. Per message
 * the writer runs, for a SEND, the dedup lookup, the counter read and one
 * INSERT (its trigger adds the dedup row and the counters), for an ACK one
 * DELETE (its trigger takes the counters down).
 */
#include <assert.h>

#include "db-internal.h"

static const char *const relay_statement_sql[_DB_STMT_MAX] = {
        [DB_STMT_MAILBOX_BY_KEY] = "SELECT id, owner FROM mailboxes WHERE identity_key = ?1",
        [DB_STMT_MAILBOX_INSERT] = "INSERT INTO mailboxes(identity_key, owner, created_usec) VALUES (?1, ?2, ?3)",
        [DB_STMT_MAILBOX_USAGE] = "SELECT queued_messages, queued_bytes, "
                                  "(SELECT queued_bytes FROM relay_totals WHERE id = 1) FROM mailboxes WHERE id = ?1",
        [DB_STMT_MAILBOXES_OWNED] = "SELECT count(*) FROM mailboxes WHERE owner = ?1",
        [DB_STMT_DEDUP_LOOKUP] = "SELECT server_id, expires_usec FROM dedup WHERE sender = ?1 AND client_msg_id = ?2",
        [DB_STMT_MESSAGE_DELETE] = "DELETE FROM messages WHERE id = ?1",
        [DB_STMT_MESSAGE_INSERT] =
                "INSERT INTO messages(mailbox_id, sender, client_msg_id, received_usec, expires_usec, body) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        [DB_STMT_MESSAGES_FETCH] =
                "SELECT id, client_msg_id, received_usec, expires_usec, body FROM messages "
                "WHERE mailbox_id = ?1 AND id > ?4 AND expires_usec > ?2 ORDER BY id LIMIT ?3",
        [DB_STMT_MESSAGE_ACK_DELETE] = "DELETE FROM messages WHERE id = ?1 AND mailbox_id = ?2",
        /*
         * The sweep: the same first limit expired dedup rows (dedup_expires
         * holds this whole order, so both statements pick the same rows),
         * first their still queued messages, then the rows themselves.
         */
        [DB_STMT_MESSAGES_EXPIRE] =
                "DELETE FROM messages WHERE id IN "
                "(SELECT server_id FROM dedup WHERE expires_usec <= ?1 "
                "ORDER BY expires_usec, sender, client_msg_id LIMIT ?2)",
        [DB_STMT_DEDUP_DELETE] = "DELETE FROM dedup WHERE sender = ?1 AND client_msg_id = ?2",
        [DB_STMT_DEDUP_EXPIRE] =
                "DELETE FROM dedup WHERE (sender, client_msg_id) IN "
                "(SELECT sender, client_msg_id FROM dedup WHERE expires_usec <= ?1 "
                "ORDER BY expires_usec, sender, client_msg_id LIMIT ?2)",
        /* The oldest queued message is the lowest id: ids are handed out in arrival order. */
        [DB_STMT_RELAY_STATS] =
                "SELECT count(*), coalesce(sum(queued_messages), 0), coalesce(sum(queued_bytes), 0), "
                "coalesce((SELECT received_usec FROM messages ORDER BY id LIMIT 1), 0) FROM mailboxes",
};

static int relay_stmt(Db *db, DbStatement id, sqlite3_stmt **ret) {
        assert(relay_statement_sql[id]);
        return db_stmt_sql(db, id, relay_statement_sql[id], ret);
}

static bool principal_ok(const char *p) {
        return p && p[0] != '\0' && strnlen(p, DB_PRINCIPAL_MAX + 1) <= DB_PRINCIPAL_MAX;
}

int db_mailbox_register(Db *db, const uint8_t key[DB_MAILBOX_KEY_SIZE], const char *owner, int64_t now_usec,
                        int64_t *ret_id, bool *ret_created) {
        _cleanup_db_txn_ DbTxn txn = {};
        _cleanup_db_stmt_ sqlite3_stmt *stmt = NULL;
        int64_t id;
        bool created;
        int r, rc;

        if (!db)
                return -EINVAL;
        if (!key || !principal_ok(owner) || now_usec < 0)
                return db_errorf(db, -EINVAL, "mailbox: missing key, bad owner or negative time");

        r = db_txn_begin(db, &txn);
        if (r < 0)
                return r;

        r = relay_stmt(db, DB_STMT_MAILBOX_BY_KEY, &stmt);
        if (r < 0)
                return r;
        rc = sqlite3_bind_blob(stmt, 1, key, DB_MAILBOX_KEY_SIZE, SQLITE_STATIC);
        if (rc != SQLITE_OK)
                return db_error(db, rc);
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW) {
                const unsigned char *stored = sqlite3_column_text(stmt, 1);

                if (!stored)
                        return db_errorf(db, -ENOMEM, "out of memory");
                if (!streq((const char *) stored, owner))
                        return db_errorf(db, -EPERM, "mailbox belongs to another owner");
                id = sqlite3_column_int64(stmt, 0);
                created = false;
        } else if (rc == SQLITE_DONE) {
                db_stmt_resetp(&stmt);
                stmt = NULL;
                r = relay_stmt(db, DB_STMT_MAILBOX_INSERT, &stmt);
                if (r < 0)
                        return r;
                rc = sqlite3_bind_blob(stmt, 1, key, DB_MAILBOX_KEY_SIZE, SQLITE_STATIC);
                if (rc == SQLITE_OK)
                        rc = sqlite3_bind_text(stmt, 2, owner, -1, SQLITE_STATIC);
                if (rc == SQLITE_OK)
                        rc = sqlite3_bind_int64(stmt, 3, now_usec);
                if (rc != SQLITE_OK)
                        return db_error(db, rc);
                rc = sqlite3_step(stmt);
                if (rc != SQLITE_DONE)
                        return db_error(db, rc);
                id = sqlite3_last_insert_rowid(db->sqlite);
                created = true;
        } else
                return db_error(db, rc);

        db_stmt_resetp(&stmt);
        r = db_txn_commit(&txn);
        if (r < 0)
                return r;
        if (ret_id)
                *ret_id = id;
        if (ret_created)
                *ret_created = created;
        return 0;
}

int db_mailboxes_owned(Db *db, const char *owner, uint64_t *ret) {
        _cleanup_db_stmt_ sqlite3_stmt *stmt = NULL;
        int r, rc;

        if (!db || !owner || !ret)
                return -EINVAL;
        r = relay_stmt(db, DB_STMT_MAILBOXES_OWNED, &stmt);
        if (r < 0)
                return r;
        rc = sqlite3_bind_text(stmt, 1, owner, -1, SQLITE_STATIC);
        if (rc != SQLITE_OK)
                return db_error(db, rc);
        rc = sqlite3_step(stmt);
        if (rc != SQLITE_ROW)
                return db_error(db, rc == SQLITE_DONE ? SQLITE_INTERNAL : rc);
        *ret = (uint64_t) sqlite3_column_int64(stmt, 0);
        return 0;
}

int db_mailbox_lookup(Db *db, const uint8_t key[DB_MAILBOX_KEY_SIZE], int64_t *ret_id, char **ret_owner) {
        _cleanup_db_stmt_ sqlite3_stmt *stmt = NULL;
        _cleanup_free_ char *owner = NULL;
        int r, rc;

        if (!db || !key)
                return -EINVAL;
        r = relay_stmt(db, DB_STMT_MAILBOX_BY_KEY, &stmt);
        if (r < 0)
                return r;
        rc = sqlite3_bind_blob(stmt, 1, key, DB_MAILBOX_KEY_SIZE, SQLITE_STATIC);
        if (rc != SQLITE_OK)
                return db_error(db, rc);
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_DONE)
                return db_errorf(db, -ENOENT, "no such mailbox");
        if (rc != SQLITE_ROW)
                return db_error(db, rc);
        if (ret_owner) {
                r = db_column_strdup(stmt, 1, DB_PRINCIPAL_MAX, &owner);
                if (r < 0 || !owner)
                        return db_errorf(db, r < 0 ? r : -EBADMSG, "mailbox: cannot read owner");
                *ret_owner = TAKE_PTR(owner);
        }
        if (ret_id)
                *ret_id = sqlite3_column_int64(stmt, 0);
        return 0;
}

static int mailbox_usage_internal(Db *db, int64_t mailbox_id, uint64_t *ret_messages, uint64_t *ret_bytes,
                                  uint64_t *ret_store_bytes) {
        _cleanup_db_stmt_ sqlite3_stmt *stmt = NULL;
        int64_t messages, bytes, store_bytes;
        int r, rc;

        r = relay_stmt(db, DB_STMT_MAILBOX_USAGE, &stmt);
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
        messages = sqlite3_column_int64(stmt, 0);
        bytes = sqlite3_column_int64(stmt, 1);
        store_bytes = sqlite3_column_int64(stmt, 2);   /* the one relay_totals row (migration 4) */
        if (messages < 0 || bytes < 0 || store_bytes < 0 || sqlite3_column_type(stmt, 2) != SQLITE_INTEGER)
                return db_errorf(db, -EBADMSG, "mailbox %" PRIi64 ": bad counters", mailbox_id);
        *ret_messages = (uint64_t) messages;
        *ret_bytes = (uint64_t) bytes;
        if (ret_store_bytes)
                *ret_store_bytes = (uint64_t) store_bytes;
        return 0;
}

int db_mailbox_usage(Db *db, int64_t mailbox_id, uint64_t *ret_messages, uint64_t *ret_bytes) {
        uint64_t messages = 0, bytes = 0;      /* gcc -O3 cannot see that r < 0 returns */
        int r;

        if (!db)
                return -EINVAL;
        r = mailbox_usage_internal(db, mailbox_id, &messages, &bytes, NULL);
        if (r < 0)
                return r;
        if (ret_messages)
                *ret_messages = messages;
        if (ret_bytes)
                *ret_bytes = bytes;
        return 0;
}

/*
 * Look (sender, client_msg_id) up in dedup. Returns 1 with the server id if
 * a live one is found (the message queued or acknowledged), 0 if none is.
 * One already expired at now_usec but not swept yet no longer counts: it
 * and its message, if still queued, are deleted here (it is gone for the
 * recipient, and the dedup key would refuse the new copy), inside txn,
 * opened for that if needed.
 */
static int dedup_lookup(Db *db, DbTxn *txn, const char *sender, const uint8_t client_msg_id[DB_MSG_ID_SIZE],
                        int64_t now_usec, int64_t *ret_server_id) {
        int64_t expired_id;
        int r, rc;

        {
                _cleanup_db_stmt_ sqlite3_stmt *stmt = NULL;

                r = relay_stmt(db, DB_STMT_DEDUP_LOOKUP, &stmt);
                if (r < 0)
                        return r;
                rc = sqlite3_bind_text(stmt, 1, sender, -1, SQLITE_STATIC);
                if (rc == SQLITE_OK)
                        rc = sqlite3_bind_blob(stmt, 2, client_msg_id, DB_MSG_ID_SIZE, SQLITE_STATIC);
                if (rc != SQLITE_OK)
                        return db_error(db, rc);
                rc = sqlite3_step(stmt);
                if (rc == SQLITE_DONE)
                        return 0;
                if (rc != SQLITE_ROW)
                        return db_error(db, rc);
                if (sqlite3_column_int64(stmt, 1) > now_usec) {
                        *ret_server_id = sqlite3_column_int64(stmt, 0);
                        return 1;
                }
                expired_id = sqlite3_column_int64(stmt, 0);
        }

        if (!txn->active) {
                r = db_txn_begin(db, txn);
                if (r < 0)
                        return r;
        }
        for (int s = 0; s < 2; s++) {
                _cleanup_db_stmt_ sqlite3_stmt *stmt = NULL;

                r = relay_stmt(db, s == 0 ? DB_STMT_MESSAGE_DELETE : DB_STMT_DEDUP_DELETE, &stmt);
                if (r < 0)
                        return r;
                if (s == 0)
                        rc = sqlite3_bind_int64(stmt, 1, expired_id);
                else {
                        rc = sqlite3_bind_text(stmt, 1, sender, -1, SQLITE_STATIC);
                        if (rc == SQLITE_OK)
                                rc = sqlite3_bind_blob(stmt, 2, client_msg_id, DB_MSG_ID_SIZE, SQLITE_STATIC);
                }
                if (rc != SQLITE_OK)
                        return db_error(db, rc);
                rc = sqlite3_step(stmt);
                if (rc != SQLITE_DONE)
                        return db_error(db, rc);
        }
        return 0;
}

int db_message_insert(Db *db, int64_t mailbox_id, const char *sender, const uint8_t client_msg_id[DB_MSG_ID_SIZE],
                      const void *body, size_t size, int64_t received_usec, int64_t expires_usec,
                      const DbQuota *quota, int64_t *ret_server_id, bool *ret_duplicate) {
        _cleanup_db_txn_ DbTxn txn = {};
        _cleanup_db_stmt_ sqlite3_stmt *stmt = NULL;
        uint64_t queued_messages = 0, queued_bytes = 0, store_bytes = 0;  /* for gcc -O3, as above */
        int64_t server_id = 0;
        int r, rc;

        if (!db)
                return -EINVAL;
        if (!principal_ok(sender) || !client_msg_id)
                return db_errorf(db, -EINVAL, "message: bad sender or no client message id");
        if (!body || size < 1 || size > DB_MESSAGE_MAX)
                return db_errorf(db, -EINVAL, "message: size %zu out of 1..%u", body ? size : 0, DB_MESSAGE_MAX);
        if (received_usec < 0 || expires_usec <= received_usec)
                return db_errorf(db, -EINVAL, "message: bad received/expiry times");

        /*
         * Without a transaction of the caller's, the lookups, the quota check
         * and the INSERT need one of their own. Inside one (the writer's
         * batch), reads need no savepoint and the INSERT, trigger included,
         * is one statement and atomic by itself: a savepoint is opened only
         * when an expired copy has to be deleted first (dedup_lookup()).
         */
        if (sqlite3_get_autocommit(db->sqlite)) {
                r = db_txn_begin(db, &txn);
                if (r < 0)
                        return r;
        }

        r = dedup_lookup(db, &txn, sender, client_msg_id, received_usec, &server_id);
        if (r < 0)
                return r;
        if (r > 0) {
                r = txn.active ? db_txn_commit(&txn) : 0;
                if (r < 0)
                        return r;
                if (ret_server_id)
                        *ret_server_id = server_id;
                if (ret_duplicate)
                        *ret_duplicate = true;
                return 0;
        }

        r = mailbox_usage_internal(db, mailbox_id, &queued_messages, &queued_bytes, &store_bytes);
        if (r < 0)
                return r;
        if (quota && quota->max_messages > 0 && queued_messages >= quota->max_messages)
                return db_errorf(db, -EDQUOT, "mailbox %" PRIi64 ": %" PRIu64 " messages queued, quota %" PRIu64,
                                 mailbox_id, queued_messages, quota->max_messages);
        if (quota && quota->max_bytes > 0 &&
            (queued_bytes > quota->max_bytes || size > quota->max_bytes - queued_bytes))
                return db_errorf(db, -EDQUOT, "mailbox %" PRIi64 ": %" PRIu64 " + %zu bytes over quota %" PRIu64,
                                 mailbox_id, queued_bytes, size, quota->max_bytes);
        if (quota && quota->store_max_bytes > 0 &&
            (store_bytes > quota->store_max_bytes || size > quota->store_max_bytes - store_bytes))
                return db_errorf(db, -ENOSPC, "relay store: %" PRIu64 " + %zu bytes over %" PRIu64, store_bytes,
                                 size, quota->store_max_bytes);

        r = relay_stmt(db, DB_STMT_MESSAGE_INSERT, &stmt);
        if (r < 0)
                return r;
        rc = sqlite3_bind_int64(stmt, 1, mailbox_id);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(stmt, 2, sender, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_blob(stmt, 3, client_msg_id, DB_MSG_ID_SIZE, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(stmt, 4, received_usec);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(stmt, 5, expires_usec);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_blob64(stmt, 6, body, (sqlite3_uint64) size, SQLITE_STATIC);
        if (rc != SQLITE_OK)
                return db_error(db, rc);
        rc = sqlite3_step(stmt);
        if (rc != SQLITE_DONE)
                return db_error(db, rc);
        server_id = sqlite3_last_insert_rowid(db->sqlite);
        db_stmt_resetp(&stmt);

        r = txn.active ? db_txn_commit(&txn) : 0;
        if (r < 0)
                return r;
        if (ret_server_id)
                *ret_server_id = server_id;
        if (ret_duplicate)
                *ret_duplicate = false;
        return 0;
}

void db_messages_free(DbMessage *m, size_t n) {
        if (!m)
                return;
        for (size_t i = 0; i < n; i++)
                free(m[i].body);
        free(m);
}

static int message_from_row(Db *db, sqlite3_stmt *stmt, DbMessage *ret) {
        const void *cmid, *body;
        int cmid_len, size;
        uint8_t *copy;

        cmid = sqlite3_column_blob(stmt, 1);
        cmid_len = sqlite3_column_bytes(stmt, 1);
        body = sqlite3_column_blob(stmt, 4);
        size = sqlite3_column_bytes(stmt, 4);
        if (!cmid || cmid_len != DB_MSG_ID_SIZE)
                return db_errorf(db, sqlite3_errcode(db->sqlite) == SQLITE_NOMEM ? -ENOMEM : -EBADMSG,
                                 "message: cannot read client message id");
        if (!body || size < 1 || (size_t) size > DB_MESSAGE_MAX)
                return db_errorf(db, sqlite3_errcode(db->sqlite) == SQLITE_NOMEM ? -ENOMEM : -EBADMSG,
                                 "message: cannot read body");
        copy = malloc((size_t) size);
        if (!copy)
                return db_errorf(db, -ENOMEM, "out of memory");
        memcpy(copy, body, (size_t) size);

        *ret = (DbMessage) {
                .id = sqlite3_column_int64(stmt, 0),
                .received_usec = sqlite3_column_int64(stmt, 2),
                .expires_usec = sqlite3_column_int64(stmt, 3),
                .body = copy,
                .size = (size_t) size,
        };
        memcpy(ret->client_msg_id, cmid, DB_MSG_ID_SIZE);
        return 0;
}

int db_messages_fetch(Db *db, int64_t mailbox_id, int64_t after_id, int64_t now_usec, size_t max_count,
                      size_t max_bytes, DbMessage **ret, size_t *ret_n) {
        _cleanup_db_stmt_ sqlite3_stmt *stmt = NULL;
        DbMessage *m = NULL;
        size_t n = 0, allocated = 0, total = 0;
        int r, rc;

        if (!db || !ret || !ret_n || after_id < 0)
                return -EINVAL;
        max_count = MIN(max_count, (size_t) DB_FETCH_MAX);

        r = relay_stmt(db, DB_STMT_MESSAGES_FETCH, &stmt);
        if (r < 0)
                return r;
        rc = sqlite3_bind_int64(stmt, 1, mailbox_id);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(stmt, 2, now_usec);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(stmt, 3, (sqlite3_int64) max_count);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(stmt, 4, after_id);
        if (rc != SQLITE_OK)
                return db_error(db, rc);

        while (n < max_count) {
                int size;

                rc = sqlite3_step(stmt);
                if (rc == SQLITE_DONE)
                        break;
                if (rc != SQLITE_ROW) {
                        r = db_error(db, rc);
                        goto fail;
                }
                /* The first always (whatever its size), then only while the total stays within max_bytes. */
                size = sqlite3_column_bytes(stmt, 4);
                if (n > 0 && (size < 0 || total > max_bytes || (size_t) size > max_bytes - total))
                        break;
                if (n == allocated) {
                        size_t new_allocated = MIN(MAX(allocated * 2, (size_t) 16), max_count), bytes;
                        DbMessage *p;

                        if (!size_mul_ok(new_allocated, sizeof *m, &bytes)) {
                                r = db_errorf(db, -ENOMEM, "out of memory");
                                goto fail;
                        }
                        p = realloc(m, bytes);
                        if (!p) {
                                r = db_errorf(db, -ENOMEM, "out of memory");
                                goto fail;
                        }
                        m = p;
                        allocated = new_allocated;
                }
                r = message_from_row(db, stmt, m + n);
                if (r < 0)
                        goto fail;
                total += m[n].size;
                n++;
        }

        *ret = m;
        *ret_n = n;
        return 0;

fail:
        db_messages_free(m, n);
        return r;
}

int db_messages_ack(Db *db, int64_t mailbox_id, const int64_t *ids, size_t n, size_t *ret_deleted) {
        _cleanup_db_txn_ DbTxn txn = {};
        size_t deleted = 0;
        int r;

        if (!db || (!ids && n > 0))
                return -EINVAL;

        r = db_txn_begin(db, &txn);
        if (r < 0)
                return r;

        /* One DELETE per id: the message's dedup row stays until its expiry, the trigger keeps the counters. */
        for (size_t i = 0; i < n; i++) {
                _cleanup_db_stmt_ sqlite3_stmt *stmt = NULL;
                int rc;

                r = relay_stmt(db, DB_STMT_MESSAGE_ACK_DELETE, &stmt);
                if (r < 0)
                        return r;
                rc = sqlite3_bind_int64(stmt, 1, ids[i]);
                if (rc == SQLITE_OK)
                        rc = sqlite3_bind_int64(stmt, 2, mailbox_id);
                if (rc != SQLITE_OK)
                        return db_error(db, rc);
                rc = sqlite3_step(stmt);
                if (rc != SQLITE_DONE)
                        return db_error(db, rc);
                deleted += (size_t) sqlite3_changes(db->sqlite);
        }

        r = db_txn_commit(&txn);
        if (r < 0)
                return r;
        if (ret_deleted)
                *ret_deleted = deleted;
        return 0;
}

int db_messages_expire(Db *db, int64_t now_usec, size_t limit, size_t *ret_deleted) {
        _cleanup_db_txn_ DbTxn txn = {};
        sqlite3_int64 bound = (sqlite3_int64) MIN(limit, (size_t) INT64_MAX);
        size_t deleted = 0;
        bool more = false;
        int r;

        if (!db)
                return -EINVAL;

        r = db_txn_begin(db, &txn);
        if (r < 0)
                return r;

        for (int s = 0; s < 2; s++) {
                _cleanup_db_stmt_ sqlite3_stmt *stmt = NULL;
                size_t n;
                int rc;

                r = relay_stmt(db, s == 0 ? DB_STMT_MESSAGES_EXPIRE : DB_STMT_DEDUP_EXPIRE, &stmt);
                if (r < 0)
                        return r;
                rc = sqlite3_bind_int64(stmt, 1, now_usec);
                if (rc == SQLITE_OK)
                        rc = sqlite3_bind_int64(stmt, 2, bound);
                if (rc != SQLITE_OK)
                        return db_error(db, rc);
                rc = sqlite3_step(stmt);
                if (rc != SQLITE_DONE)
                        return db_error(db, rc);
                /* changes() counts the statement's own rows, not the counter triggers' updates. */
                n = (size_t) sqlite3_changes64(db->sqlite);
                if (s == 0)
                        deleted = n;
                /*
                 * The dedup rows at their limit: more may be waiting. They
                 * count here even though *ret_deleted leaves them out, or a
                 * relay whose messages are all acknowledged in time would
                 * never catch up with its dedup rows. (The messages deleted
                 * are among those rows' messages, never more.)
                 */
                if (s == 1 && limit > 0 && n >= limit)
                        more = true;
        }

        r = db_txn_commit(&txn);
        if (r < 0)
                return r;
        if (ret_deleted)
                *ret_deleted = deleted;
        return more;
}

int db_relay_stats(Db *db, DbRelayStats *ret) {
        _cleanup_db_stmt_ sqlite3_stmt *stmt = NULL;
        int64_t mailboxes, messages, bytes;
        int r, rc;

        if (!db || !ret)
                return -EINVAL;
        r = relay_stmt(db, DB_STMT_RELAY_STATS, &stmt);
        if (r < 0)
                return r;
        rc = sqlite3_step(stmt);
        if (rc != SQLITE_ROW)
                return db_error(db, rc);
        mailboxes = sqlite3_column_int64(stmt, 0);
        messages = sqlite3_column_int64(stmt, 1);
        bytes = sqlite3_column_int64(stmt, 2);
        if (mailboxes < 0 || messages < 0 || bytes < 0)
                return db_errorf(db, -EBADMSG, "relay stats: negative counters");
        *ret = (DbRelayStats) {
                .mailboxes = (uint64_t) mailboxes,
                .messages = (uint64_t) messages,
                .bytes = (uint64_t) bytes,
                .oldest_usec = sqlite3_column_int64(stmt, 3),
        };
        return 0;
}
