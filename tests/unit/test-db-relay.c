/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The relay's and key server's rows (db-relay.c, db-keys.c) and migration 3:
 * mailboxes and ownership, messages with de-duplication (dedup keys that
 * outlive the ACK), quotas, FETCH's count/bytes rule, TTL, counters kept by triggers,
 * pre-key publish/bundle, and the query plans (no full scans).
 */
#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "db-internal.h"
#include "db.h"

#define T0 1000000LL                    /* received_usec of most test messages */
#define TTL 1000000LL

/* ---- fixtures ---- */

typedef struct Fixture {
        char *dir;
        char *path;     /* dir/secd.db, not created */
        Db *db;         /* :memory: */
} Fixture;

static int fixture_setup(void **state) {
        Fixture *f = calloc(1, sizeof *f);
        char template[] = "/tmp/test-db-relay-XXXXXX";

        assert_non_null(f);
        assert_non_null(mkdtemp(template));
        f->dir = strdup(template);
        assert_non_null(f->dir);
        assert_true(asprintf(&f->path, "%s/secd.db", f->dir) > 0);
        assert_int_equal(db_open(":memory:", DB_OPEN_CREATE, &f->db), 0);
        *state = f;
        return 0;
}

static int fixture_teardown(void **state) {
        Fixture *f = *state;
        DIR *d = opendir(f->dir);
        struct dirent *de;

        db_close(f->db);
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

static int64_t handle_int(Db *db, const char *sql) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;

        if (sqlite3_prepare_v2(db->sqlite, sql, -1, &stmt, NULL) != SQLITE_OK)
                fail_msg("%s: %s", sql, sqlite3_errmsg(db->sqlite));
        assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
        return sqlite3_column_int64(stmt, 0);
}

static void handle_exec(Db *db, const char *sql) {
        char *err = NULL;

        if (sqlite3_exec(db->sqlite, sql, NULL, NULL, &err) != SQLITE_OK)
                fail_msg("%s: %s", sql, err);
}

static void raw_exec(const char *path, const char *sql) {
        sqlite3 *s = NULL;
        char *err = NULL;

        assert_int_equal(sqlite3_open_v2(path, &s, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
        if (sqlite3_exec(s, sql, NULL, NULL, &err) != SQLITE_OK)
                fail_msg("%s: %s", sql, err);
        assert_int_equal(sqlite3_close(s), SQLITE_OK);
}

static void key_make(uint8_t key[DB_MAILBOX_KEY_SIZE], uint8_t seed) {
        for (size_t i = 0; i < DB_MAILBOX_KEY_SIZE; i++)
                key[i] = (uint8_t) (seed * 31 + i);
}

static void msgid_make(uint8_t id[DB_MSG_ID_SIZE], uint32_t n) {
        memset(id, 0xa5, DB_MSG_ID_SIZE);
        memcpy(id, &n, sizeof n);
}

static int64_t mailbox_new(Db *db, uint8_t seed, const char *owner) {
        uint8_t key[DB_MAILBOX_KEY_SIZE];
        int64_t id;
        bool created;

        key_make(key, seed);
        assert_int_equal(db_mailbox_register(db, key, owner, T0, &id, &created), 0);
        assert_true(created);
        return id;
}

/* Insert a message of size bytes filled with (n & 0xff); returns the db_message_insert() result. */
static int msg_put(Db *db, int64_t mailbox, const char *sender, uint32_t n, size_t size, int64_t received,
                   int64_t expires, const DbQuota *quota, int64_t *ret_id, bool *ret_dup) {
        _cleanup_free_ uint8_t *body = malloc(size ? size : 1);
        uint8_t cmid[DB_MSG_ID_SIZE];

        assert_non_null(body);
        memset(body, (int) (n & 0xff), size ? size : 1);
        msgid_make(cmid, n);
        return db_message_insert(db, mailbox, sender, cmid, body, size, received, expires, quota, ret_id, ret_dup);
}

static int64_t msg_put_ok(Db *db, int64_t mailbox, const char *sender, uint32_t n, size_t size) {
        int64_t id = -1;
        bool dup = true;

        assert_int_equal(msg_put(db, mailbox, sender, n, size, T0, T0 + TTL, NULL, &id, &dup), 0);
        assert_false(dup);
        assert_true(id > 0);
        return id;
}

static int64_t count_rows(Db *db, const char *table) {
        _cleanup_free_ char *sql = NULL;

        assert_true(asprintf(&sql, "SELECT count(*) FROM %s", table) > 0);
        return handle_int(db, sql);
}

/* Dedup keys whose message is gone (acknowledged): what tombstones were. */
static int64_t count_acked_keys(Db *db) {
        return handle_int(db, "SELECT count(*) FROM dedup WHERE server_id NOT IN (SELECT id FROM messages)");
}

/* Every queued message has its dedup key, with its own id and expiry. */
static void assert_dedup_covers_messages(Db *db) {
        assert_int_equal(handle_int(db,
                                    "SELECT count(*) FROM messages m WHERE NOT EXISTS (SELECT 1 FROM dedup d WHERE "
                                    "d.sender = m.sender AND d.client_msg_id = m.client_msg_id AND "
                                    "d.server_id = m.id AND d.expires_usec = m.expires_usec)"),
                         0);
}

/* Every mailbox's counters equal a recount of its messages. */
static void assert_counters_recount(Db *db) {
        assert_int_equal(handle_int(db,
                                    "SELECT count(*) FROM mailboxes mb WHERE "
                                    "queued_messages <> (SELECT count(*) FROM messages m WHERE m.mailbox_id = mb.id) OR "
                                    "queued_bytes <> (SELECT coalesce(sum(length(body)), 0) FROM messages m "
                                    "WHERE m.mailbox_id = mb.id)"),
                         0);
        /* The store-wide totals (migration 4): one row, equal to a recount of every message. */
        assert_int_equal(handle_int(db, "SELECT count(*) FROM relay_totals"), 1);
        assert_int_equal(handle_int(db,
                                    "SELECT count(*) FROM relay_totals WHERE "
                                    "queued_messages <> (SELECT count(*) FROM messages) OR "
                                    "queued_bytes <> (SELECT coalesce(sum(length(body)), 0) FROM messages)"),
                         0);
}

static void assert_usage(Db *db, int64_t mailbox, uint64_t messages, uint64_t bytes) {
        uint64_t m = UINT64_MAX, b = UINT64_MAX;

        assert_int_equal(db_mailbox_usage(db, mailbox, &m, &b), 0);
        assert_int_equal(m, messages);
        assert_int_equal(b, bytes);
}

static void prekey_make(DbPrekey *k, uint32_t id) {
        k->id = id;
        for (size_t i = 0; i < sizeof k->key; i++)
                k->key[i] = (uint8_t) (id + i);
}

static int publish(Db *db, int64_t mailbox, uint8_t tag, uint32_t spk_id, const DbPrekey *otks, size_t n) {
        uint8_t dh[32], dh_sig[64], spk[32], spk_sig[64];

        memset(dh, tag, sizeof dh);
        memset(dh_sig, tag + 1, sizeof dh_sig);
        memset(spk, tag + 2, sizeof spk);
        memset(spk_sig, tag + 3, sizeof spk_sig);
        return db_keys_publish(db, mailbox, dh, dh_sig, spk_id, spk, spk_sig, otks, n, T0);
}

/* ---- mailboxes ---- */

static void test_register_and_lookup(void **state) {
        Fixture *f = *state;
        uint8_t key[DB_MAILBOX_KEY_SIZE], other[DB_MAILBOX_KEY_SIZE];
        char long_owner[DB_PRINCIPAL_MAX + 2];
        int64_t id = -1, id2 = -1, looked = -1;
        bool created = false;
        char *owner = NULL;

        key_make(key, 1);
        key_make(other, 2);
        assert_int_equal(db_mailbox_lookup(f->db, key, &looked, NULL), -ENOENT);

        assert_int_equal(db_mailbox_register(f->db, key, "uid:1000", T0, &id, &created), 0);
        assert_true(created);
        assert_true(id > 0);

        /* The owner again: found, not created. */
        created = true;
        assert_int_equal(db_mailbox_register(f->db, key, "uid:1000", T0 + 5, &id2, &created), 0);
        assert_false(created);
        assert_int_equal(id2, id);

        /* Anyone else: -EPERM, nothing changes, outputs untouched. */
        id2 = -7;
        assert_int_equal(db_mailbox_register(f->db, key, "uid:1001", T0, &id2, &created), -EPERM);
        assert_int_equal(id2, -7);
        assert_int_equal(db_mailbox_register(f->db, key, "cert:uid:1000", T0, &id2, &created), -EPERM);
        assert_int_equal(db_mailbox_register(f->db, key, "uid:100", T0, &id2, &created), -EPERM);

        assert_int_equal(db_mailbox_lookup(f->db, key, &looked, &owner), 0);
        assert_int_equal(looked, id);
        assert_string_equal(owner, "uid:1000");
        free(owner);
        assert_int_equal(db_mailbox_lookup(f->db, other, &looked, NULL), -ENOENT);
        assert_int_equal(count_rows(f->db, "mailboxes"), 1);

        /* Owner bounds: 1..DB_PRINCIPAL_MAX bytes. */
        memset(long_owner, 'x', sizeof long_owner - 1);
        long_owner[sizeof long_owner - 1] = '\0';
        assert_int_equal(db_mailbox_register(f->db, other, long_owner, T0, &id2, &created), -EINVAL);
        long_owner[DB_PRINCIPAL_MAX] = '\0';
        assert_int_equal(db_mailbox_register(f->db, other, long_owner, T0, &id2, &created), 0);
        assert_true(created);
        assert_int_equal(db_mailbox_register(f->db, other, "", T0, &id2, &created), -EINVAL);
        assert_int_equal(db_mailbox_register(f->db, other, NULL, T0, &id2, &created), -EINVAL);
        assert_int_equal(db_mailbox_register(f->db, NULL, "uid:1", T0, &id2, &created), -EINVAL);
        assert_int_equal(db_mailbox_register(f->db, key, "uid:1000", -1, &id2, &created), -EINVAL);
        assert_int_equal(db_mailbox_register(NULL, key, "uid:1000", T0, &id2, &created), -EINVAL);
        assert_int_equal(db_mailbox_lookup(f->db, NULL, &looked, NULL), -EINVAL);
        assert_int_equal(count_rows(f->db, "mailboxes"), 2);

        /* Mailboxes per owner (secd caps them): only the owner's count, exact owner strings. */
        {
                uint8_t third[DB_MAILBOX_KEY_SIZE];
                uint64_t owned = 99;

                key_make(third, 3);

                assert_int_equal(db_mailboxes_owned(f->db, "uid:1000", &owned), 0);
                assert_int_equal(owned, 1);
                assert_int_equal(db_mailbox_register(f->db, third, "uid:1000", T0, NULL, NULL), 0);
                assert_int_equal(db_mailboxes_owned(f->db, "uid:1000", &owned), 0);
                assert_int_equal(owned, 2);
                assert_int_equal(db_mailboxes_owned(f->db, "uid:100", &owned), 0);
                assert_int_equal(owned, 0);
                assert_int_equal(db_mailboxes_owned(f->db, NULL, &owned), -EINVAL);
        }
}

/* ---- messages ---- */

static void test_insert_and_dedup(void **state) {
        Fixture *f = *state;
        int64_t a = mailbox_new(f->db, 1, "uid:1"), b = mailbox_new(f->db, 2, "uid:2");
        int64_t id1, id2, id3, id = -1;
        bool dup = false;
        size_t deleted = 0;

        id1 = msg_put_ok(f->db, a, "uid:9", 1, 100);
        assert_usage(f->db, a, 1, 100);

        /* Same (sender, client id): the same server id, stored once, even with another body size. */
        assert_int_equal(msg_put(f->db, a, "uid:9", 1, 50, T0 + 1, T0 + TTL, NULL, &id, &dup), 0);
        assert_true(dup);
        assert_int_equal(id, id1);
        assert_usage(f->db, a, 1, 100);

        /* ... also when sent to another mailbox: never stored twice. */
        dup = false;
        assert_int_equal(msg_put(f->db, b, "uid:9", 1, 100, T0 + 1, T0 + TTL, NULL, &id, &dup), 0);
        assert_true(dup);
        assert_int_equal(id, id1);
        assert_usage(f->db, b, 0, 0);

        /* The same client id from another sender is another message. */
        id2 = msg_put_ok(f->db, a, "uid:8", 1, 10);
        assert_true(id2 > id1);
        id3 = msg_put_ok(f->db, b, "uid:9", 2, 10);
        assert_true(id3 > id2);
        assert_int_equal(count_rows(f->db, "messages"), 3);

        /* After the ACK its dedup key answers the resend: same id, nothing stored. */
        assert_int_equal(db_messages_ack(f->db, a, &id1, 1, &deleted), 0);
        assert_int_equal(deleted, 1);
        assert_int_equal(count_acked_keys(f->db), 1);
        assert_usage(f->db, a, 1, 10);
        dup = false;
        assert_int_equal(msg_put(f->db, a, "uid:9", 1, 100, T0 + 2, T0 + TTL, NULL, &id, &dup), 0);
        assert_true(dup);
        assert_int_equal(id, id1);
        dup = false;
        assert_int_equal(msg_put(f->db, b, "uid:9", 1, 100, T0 + 2, T0 + TTL, NULL, &id, &dup), 0);
        assert_true(dup);
        assert_int_equal(id, id1);
        assert_usage(f->db, a, 1, 10);
        assert_usage(f->db, b, 1, 10);
        assert_int_equal(count_rows(f->db, "messages"), 2);

        /* Past the original's expiry the dedup key no longer counts: a new message with a new id. */
        dup = true;
        assert_int_equal(msg_put(f->db, a, "uid:9", 1, 100, T0 + TTL, T0 + 2 * TTL, NULL, &id, &dup), 0);
        assert_false(dup);
        assert_true(id > id3);
        assert_int_equal(count_acked_keys(f->db), 0);
        assert_usage(f->db, a, 2, 110);

        /* Likewise an expired message not swept yet is replaced, and the counters follow. */
        dup = true;
        assert_int_equal(msg_put(f->db, b, "uid:9", 2, 30, T0 + TTL, T0 + 2 * TTL, NULL, &id2, &dup), 0);
        assert_false(dup);
        assert_true(id2 > id);
        assert_usage(f->db, b, 1, 30);
        assert_counters_recount(f->db);
}

static void test_insert_bad_arguments(void **state) {
        Fixture *f = *state;
        int64_t a = mailbox_new(f->db, 1, "uid:1"), id = -5;
        uint8_t cmid[DB_MSG_ID_SIZE] = {}, body[4] = { 1, 2, 3, 4 };
        char long_sender[DB_PRINCIPAL_MAX + 2];
        bool dup = true;

        memset(long_sender, 's', sizeof long_sender - 1);
        long_sender[sizeof long_sender - 1] = '\0';

        assert_int_equal(msg_put(f->db, a, "uid:2", 1, 0, T0, T0 + TTL, NULL, &id, &dup), -EINVAL);
        assert_int_equal(msg_put(f->db, a, "uid:2", 1, (size_t) DB_MESSAGE_MAX + 1, T0, T0 + TTL, NULL, &id, &dup),
                         -EINVAL);
        assert_int_equal(db_message_insert(f->db, a, "uid:2", cmid, NULL, 4, T0, T0 + TTL, NULL, &id, &dup), -EINVAL);
        assert_int_equal(db_message_insert(f->db, a, "uid:2", NULL, body, 4, T0, T0 + TTL, NULL, &id, &dup), -EINVAL);
        assert_int_equal(db_message_insert(f->db, a, "", cmid, body, 4, T0, T0 + TTL, NULL, &id, &dup), -EINVAL);
        assert_int_equal(db_message_insert(f->db, a, NULL, cmid, body, 4, T0, T0 + TTL, NULL, &id, &dup), -EINVAL);
        assert_int_equal(db_message_insert(f->db, a, long_sender, cmid, body, 4, T0, T0 + TTL, NULL, &id, &dup),
                         -EINVAL);
        assert_int_equal(db_message_insert(f->db, a, "uid:2", cmid, body, 4, T0, T0, NULL, &id, &dup), -EINVAL);
        assert_int_equal(db_message_insert(f->db, a, "uid:2", cmid, body, 4, -1, T0, NULL, &id, &dup), -EINVAL);
        assert_int_equal(db_message_insert(NULL, a, "uid:2", cmid, body, 4, T0, T0 + TTL, NULL, &id, &dup), -EINVAL);
        /* No such mailbox. */
        assert_int_equal(db_message_insert(f->db, a + 100, "uid:2", cmid, body, 4, T0, T0 + TTL, NULL, &id, &dup),
                         -ENOENT);
        assert_int_equal(id, -5);
        assert_true(dup);
        assert_int_equal(count_rows(f->db, "messages"), 0);

        /* The largest sender and a one-byte body are fine. */
        long_sender[DB_PRINCIPAL_MAX] = '\0';
        assert_int_equal(db_message_insert(f->db, a, long_sender, cmid, body, 1, T0, T0 + 1, NULL, &id, &dup), 0);
        assert_false(dup);
        assert_usage(f->db, a, 1, 1);
}

static void test_max_size_message(void **state) {
        Fixture *f = *state;
        int64_t a = mailbox_new(f->db, 1, "uid:1"), id;
        DbMessage *m = NULL;
        size_t n = 0;

        id = msg_put_ok(f->db, a, "uid:2", 7, DB_MESSAGE_MAX);
        assert_usage(f->db, a, 1, DB_MESSAGE_MAX);
        /* The first message is returned whatever max_bytes says. */
        assert_int_equal(db_messages_fetch(f->db, a, 0, T0, 10, 1, &m, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(m[0].id, id);
        assert_int_equal(m[0].size, DB_MESSAGE_MAX);
        assert_int_equal(m[0].body[0], 7);
        assert_int_equal(m[0].body[DB_MESSAGE_MAX - 1], 7);
        db_messages_free(m, n);
}

/* relay_store_max_bytes: all mailboxes together, up to exactly the cap; freed space counts again. */
static void test_store_cap(void **state) {
        Fixture *f = *state;
        int64_t a = mailbox_new(f->db, 1, "uid:1"), b = mailbox_new(f->db, 2, "uid:2"), id = -3, first = -1;
        DbQuota q = { .max_bytes = 1000, .store_max_bytes = 300 };
        size_t deleted;
        bool dup = true;

        assert_int_equal(msg_put(f->db, a, "s", 1, 200, T0, T0 + TTL, &q, &first, &dup), 0);
        assert_int_equal(msg_put(f->db, b, "s", 2, 101, T0, T0 + TTL, &q, &id, &dup), -ENOSPC);
        assert_non_null(strstr(db_last_error(f->db), "relay store"));
        assert_int_equal(msg_put(f->db, b, "s", 2, 100, T0, T0 + TTL, &q, &id, &dup), 0);
        id = -3;
        assert_int_equal(msg_put(f->db, a, "s", 3, 1, T0, T0 + TTL, &q, &id, &dup), -ENOSPC);
        assert_int_equal(msg_put(f->db, b, "s", 3, 1, T0, T0 + TTL, &q, &id, &dup), -ENOSPC);
        assert_int_equal(id, -3);
        assert_int_equal(count_rows(f->db, "messages"), 2);
        /* A resend of a stored one is answered even when full. */
        dup = false;
        assert_int_equal(msg_put(f->db, a, "s", 1, 200, T0, T0 + TTL, &q, &id, &dup), 0);
        assert_true(dup);
        assert_int_equal(id, first);
        /* The mailbox quota is judged first. */
        q.max_bytes = 150;
        assert_int_equal(msg_put(f->db, a, "s", 4, 1, T0, T0 + TTL, &q, &id, &dup), -EDQUOT);
        q.max_bytes = 1000;
        /* Acknowledged: the space is free again, for any mailbox. */
        assert_int_equal(db_messages_ack(f->db, a, &first, 1, &deleted), 0);
        assert_int_equal(deleted, 1);
        assert_int_equal(msg_put(f->db, b, "s", 5, 200, T0, T0 + TTL, &q, &id, &dup), 0);
        assert_int_equal(msg_put(f->db, b, "s", 6, 1, T0, T0 + TTL, &q, &id, &dup), -ENOSPC);
        /* No cap: 0. */
        q.store_max_bytes = 0;
        assert_int_equal(msg_put(f->db, b, "s", 6, 1, T0, T0 + TTL, &q, &id, &dup), 0);
        assert_counters_recount(f->db);
}

static void test_quota(void **state) {
        Fixture *f = *state;
        int64_t a = mailbox_new(f->db, 1, "uid:1"), b = mailbox_new(f->db, 2, "uid:2"), id = -3, first;
        DbQuota q = { .max_messages = 2 };
        bool dup = true;

        first = -1;
        assert_int_equal(msg_put(f->db, a, "s", 1, 10, T0, T0 + TTL, &q, &first, &dup), 0);
        assert_int_equal(msg_put(f->db, a, "s", 2, 10, T0, T0 + TTL, &q, &id, &dup), 0);
        id = -3;
        assert_int_equal(msg_put(f->db, a, "s", 3, 10, T0, T0 + TTL, &q, &id, &dup), -EDQUOT);
        assert_int_equal(id, -3);
        assert_non_null(strstr(db_last_error(f->db), "quota"));
        assert_usage(f->db, a, 2, 20);
        assert_int_equal(count_rows(f->db, "messages"), 2);
        /* A resend of a stored one is still answered (a duplicate costs no quota). */
        dup = false;
        assert_int_equal(msg_put(f->db, a, "s", 1, 10, T0, T0 + TTL, &q, &id, &dup), 0);
        assert_true(dup);
        assert_int_equal(id, first);
        /* Quotas are per mailbox. */
        assert_int_equal(msg_put(f->db, b, "s", 3, 10, T0, T0 + TTL, &q, &id, &dup), 0);

        /* Bytes: up to exactly the limit. */
        q = (DbQuota) { .max_bytes = 100 };
        assert_int_equal(msg_put(f->db, b, "s", 4, 60, T0, T0 + TTL, &q, &id, &dup), 0);
        assert_int_equal(msg_put(f->db, b, "s", 5, 31, T0, T0 + TTL, &q, &id, &dup), -EDQUOT);
        assert_int_equal(msg_put(f->db, b, "s", 5, 30, T0, T0 + TTL, &q, &id, &dup), 0);
        assert_usage(f->db, b, 3, 100);
        assert_int_equal(msg_put(f->db, b, "s", 6, 1, T0, T0 + TTL, &q, &id, &dup), -EDQUOT);
        /* One message larger than the whole quota. */
        assert_int_equal(msg_put(f->db, a, "s", 7, 101, T0, T0 + TTL, &q, &id, &dup), -EDQUOT);
        /* No limit (0) means none. */
        q = (DbQuota) {};
        assert_int_equal(msg_put(f->db, b, "s", 6, 1000, T0, T0 + TTL, &q, &id, &dup), 0);
        assert_int_equal(count_rows(f->db, "messages"), 6);
        assert_counters_recount(f->db);
}

static void test_fetch_rules(void **state) {
        Fixture *f = *state;
        int64_t a = mailbox_new(f->db, 1, "uid:1"), b = mailbox_new(f->db, 2, "uid:2"), ids[4];
        const size_t sizes[4] = { 10, 20, 30, 40 };
        DbMessage *m = NULL;
        size_t n = 99;

        for (size_t i = 0; i < 4; i++) {
                ids[i] = msg_put_ok(f->db, a, "s", (uint32_t) i + 1, sizes[i]);
                if (i == 1)
                        (void) msg_put_ok(f->db, b, "s", 100, 5);       /* interleaved, another mailbox */
        }

        assert_int_equal(db_messages_fetch(f->db, a, 0, T0, 100, SIZE_MAX, &m, &n), 0);
        assert_int_equal(n, 4);
        for (size_t i = 0; i < 4; i++) {
                uint8_t cmid[DB_MSG_ID_SIZE];

                msgid_make(cmid, (uint32_t) i + 1);
                assert_int_equal(m[i].id, ids[i]);
                assert_int_equal(m[i].size, sizes[i]);
                assert_memory_equal(m[i].client_msg_id, cmid, DB_MSG_ID_SIZE);
                assert_int_equal(m[i].received_usec, T0);
                assert_int_equal(m[i].expires_usec, T0 + TTL);
                for (size_t k = 0; k < sizes[i]; k++)
                        assert_int_equal(m[i].body[k], i + 1);
        }
        db_messages_free(m, n);

        /* Count bound. */
        assert_int_equal(db_messages_fetch(f->db, a, 0, T0, 3, SIZE_MAX, &m, &n), 0);
        assert_int_equal(n, 3);
        assert_int_equal(m[2].id, ids[2]);
        db_messages_free(m, n);

        /* Bytes: the first always, then while the total stays <= max_bytes. */
        const struct {
                size_t max_bytes, n;
        } cases[] = {
                { 0, 1 }, { 5, 1 }, { 29, 1 }, { 30, 2 }, { 59, 2 }, { 60, 3 }, { 99, 3 }, { 100, 4 },
        };
        for (size_t c = 0; c < ELEMENTSOF(cases); c++) {
                assert_int_equal(db_messages_fetch(f->db, a, 0, T0, 100, cases[c].max_bytes, &m, &n), 0);
                assert_int_equal(n, cases[c].n);
                assert_int_equal(m[0].id, ids[0]);
                db_messages_free(m, n);
        }

        /* Nothing: an empty result. */
        assert_int_equal(db_messages_fetch(f->db, a + 100, 0, T0, 100, SIZE_MAX, &m, &n), 0);
        assert_int_equal(n, 0);
        db_messages_free(m, n);
        assert_int_equal(db_messages_fetch(f->db, a, 0, T0, 0, SIZE_MAX, &m, &n), 0);
        assert_int_equal(n, 0);
        db_messages_free(m, n);
        assert_int_equal(db_messages_fetch(f->db, a, 0, T0, 10, 10, NULL, &n), -EINVAL);
        assert_int_equal(db_messages_fetch(f->db, a, 0, T0, 10, 10, &m, NULL), -EINVAL);

        /* The other mailbox sees only its own. */
        assert_int_equal(db_messages_fetch(f->db, b, 0, T0, 100, SIZE_MAX, &m, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(m[0].size, 5);
        db_messages_free(m, n);
}

static void test_fetch_count_cap(void **state) {
        Fixture *f = *state;
        int64_t a = mailbox_new(f->db, 1, "uid:1"), prev = 0;
        DbMessage *m = NULL;
        size_t n = 0;

        assert_int_equal(db_begin(f->db), 0);
        for (uint32_t i = 0; i < DB_FETCH_MAX + 5; i++)
                (void) msg_put_ok(f->db, a, "s", i, 1);
        assert_int_equal(db_commit(f->db), 0);
        assert_usage(f->db, a, DB_FETCH_MAX + 5, DB_FETCH_MAX + 5);

        assert_int_equal(db_messages_fetch(f->db, a, 0, T0, SIZE_MAX, SIZE_MAX, &m, &n), 0);
        assert_int_equal(n, DB_FETCH_MAX);
        for (size_t i = 0; i < n; i++) {
                assert_true(m[i].id > prev);
                prev = m[i].id;
        }
        db_messages_free(m, n);
}

/* FETCH's cursor: only ids above after_id, with the same count and byte bounds, through the index. */
static void test_fetch_cursor(void **state) {
        Fixture *f = *state;
        int64_t a = mailbox_new(f->db, 1, "uid:1"), b = mailbox_new(f->db, 2, "uid:2"), ids[5], other = 0, late = 0;
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *plan = NULL;
        _cleanup_free_ char *sql = NULL;
        DbMessage *m = NULL;
        size_t n = 99, deleted = 0;
        bool dup, indexed = false;

        for (size_t i = 0; i < 5; i++) {
                ids[i] = msg_put_ok(f->db, a, "s", (uint32_t) i + 1, 10);
                if (i == 1)
                        other = msg_put_ok(f->db, b, "s", 100, 5);      /* between ids[1] and ids[2] */
        }
        assert_true(other > ids[1] && other < ids[2]);

        /* 0: everything pending. */
        assert_int_equal(db_messages_fetch(f->db, a, 0, T0, 100, SIZE_MAX, &m, &n), 0);
        assert_int_equal(n, 5);
        db_messages_free(m, n);

        /* Strictly above the cursor, whether the cursor is one of ours or another mailbox's id. */
        assert_int_equal(db_messages_fetch(f->db, a, ids[1], T0, 100, SIZE_MAX, &m, &n), 0);
        assert_int_equal(n, 3);
        for (size_t i = 0; i < 3; i++)
                assert_int_equal(m[i].id, ids[i + 2]);
        db_messages_free(m, n);
        assert_int_equal(db_messages_fetch(f->db, a, other, T0, 100, SIZE_MAX, &m, &n), 0);
        assert_int_equal(n, 3);
        assert_int_equal(m[0].id, ids[2]);
        db_messages_free(m, n);
        assert_int_equal(db_messages_fetch(f->db, a, ids[2] - 1, T0, 100, SIZE_MAX, &m, &n), 0);
        assert_int_equal(n, 3);
        assert_int_equal(m[0].id, ids[2]);
        db_messages_free(m, n);

        /* The count and byte bounds start at the cursor: the first message above it always comes. */
        assert_int_equal(db_messages_fetch(f->db, a, ids[0], T0, 2, SIZE_MAX, &m, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(m[0].id, ids[1]);
        assert_int_equal(m[1].id, ids[2]);
        db_messages_free(m, n);
        assert_int_equal(db_messages_fetch(f->db, a, ids[0], T0, 100, 0, &m, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(m[0].id, ids[1]);
        db_messages_free(m, n);
        assert_int_equal(db_messages_fetch(f->db, a, ids[0], T0, 100, 20, &m, &n), 0);
        assert_int_equal(n, 2);
        db_messages_free(m, n);

        /* At or above the newest: nothing, up to the largest id; the other mailbox is untouched. */
        m = (DbMessage *) 1;
        assert_int_equal(db_messages_fetch(f->db, a, ids[4], T0, 100, SIZE_MAX, &m, &n), 0);
        assert_int_equal(n, 0);
        assert_null(m);
        assert_int_equal(db_messages_fetch(f->db, a, INT64_MAX, T0, 100, SIZE_MAX, &m, &n), 0);
        assert_int_equal(n, 0);
        assert_int_equal(db_messages_fetch(f->db, b, ids[1], T0, 100, SIZE_MAX, &m, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(m[0].id, other);
        db_messages_free(m, n);
        assert_int_equal(db_messages_fetch(f->db, b, other, T0, 100, SIZE_MAX, &m, &n), 0);
        assert_int_equal(n, 0);

        /* A negative cursor is a caller's bug, not "everything". */
        m = NULL;
        n = 99;
        assert_int_equal(db_messages_fetch(f->db, a, -1, T0, 100, SIZE_MAX, &m, &n), -EINVAL);
        assert_int_equal(db_messages_fetch(f->db, a, INT64_MIN, T0, 100, SIZE_MAX, &m, &n), -EINVAL);
        assert_null(m);
        assert_int_equal(n, 99);

        /* Acknowledged and expired messages above the cursor are skipped; a new one is found. */
        assert_int_equal(db_messages_ack(f->db, a, &ids[2], 1, &deleted), 0);
        assert_int_equal(deleted, 1);
        assert_int_equal(msg_put(f->db, a, "s", 50, 10, T0, T0 + 1, NULL, &late, &dup), 0);
        assert_int_equal(db_messages_fetch(f->db, a, ids[1], T0 + 1, 100, SIZE_MAX, &m, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(m[0].id, ids[3]);
        assert_int_equal(m[1].id, ids[4]);
        db_messages_free(m, n);
        assert_int_equal(db_messages_fetch(f->db, a, ids[4], T0, 100, SIZE_MAX, &m, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(m[0].id, late);
        db_messages_free(m, n);

        /* The plan: a range on the (mailbox_id, id) index, no sort. */
        assert_non_null(f->db->stmts[DB_STMT_MESSAGES_FETCH]);
        assert_true(asprintf(&sql, "EXPLAIN QUERY PLAN %s", sqlite3_sql(f->db->stmts[DB_STMT_MESSAGES_FETCH])) > 0);
        assert_int_equal(sqlite3_prepare_v2(f->db->sqlite, sql, -1, &plan, NULL), SQLITE_OK);
        while (sqlite3_step(plan) == SQLITE_ROW) {
                const char *detail = (const char *) sqlite3_column_text(plan, 3);

                assert_non_null(detail);
                if (strstr(detail, "messages_mailbox") && strstr(detail, "mailbox_id=?") &&
                    (strstr(detail, "rowid>?") || strstr(detail, "id>?")))
                        indexed = true;
                if (strstr(detail, "TEMP B-TREE") || strncmp(detail, "SCAN ", 5) == 0)
                        fail_msg("FETCH: %s", detail);
        }
        if (!indexed)
                fail_msg("FETCH does not use a range on messages_mailbox");
}

static void test_expiry(void **state) {
        Fixture *f = *state;
        int64_t a = mailbox_new(f->db, 1, "uid:1"), id_short, id_long, id_acked, id;
        DbMessage *m = NULL;
        size_t n = 0, deleted = 99;
        bool dup;

        assert_int_equal(msg_put(f->db, a, "s", 1, 10, T0, T0 + 100, NULL, &id_short, &dup), 0);
        assert_int_equal(msg_put(f->db, a, "s", 2, 20, T0, T0 + 300, NULL, &id_long, &dup), 0);
        assert_int_equal(msg_put(f->db, a, "s", 3, 40, T0, T0 + 200, NULL, &id_acked, &dup), 0);
        assert_int_equal(db_messages_ack(f->db, a, &id_acked, 1, &deleted), 0);
        assert_int_equal(deleted, 1);

        /* Expired messages are hidden before they are swept. */
        assert_int_equal(db_messages_fetch(f->db, a, 0, T0 + 99, 10, SIZE_MAX, &m, &n), 0);
        assert_int_equal(n, 2);
        db_messages_free(m, n);
        assert_int_equal(db_messages_fetch(f->db, a, 0, T0 + 100, 10, SIZE_MAX, &m, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(m[0].id, id_long);
        db_messages_free(m, n);

        /* The sweep deletes the message and fixes the counters. */
        assert_int_equal(db_messages_expire(f->db, T0 + 100, 100, &deleted), 0);
        assert_int_equal(deleted, 1);
        assert_usage(f->db, a, 1, 20);
        assert_int_equal(count_acked_keys(f->db), 1);

        /* The dedup key lives until the acknowledged message's own expiry, then goes. */
        assert_int_equal(msg_put(f->db, a, "s", 3, 40, T0 + 150, T0 + 1000, NULL, &id, &dup), 0);
        assert_true(dup);
        assert_int_equal(id, id_acked);
        assert_int_equal(db_messages_expire(f->db, T0 + 200, 100, &deleted), 0);
        assert_int_equal(deleted, 0);
        assert_int_equal(count_acked_keys(f->db), 0);
        assert_int_equal(db_messages_expire(f->db, T0 + 300, 100, &deleted), 0);
        assert_int_equal(deleted, 1);
        assert_usage(f->db, a, 0, 0);
        assert_int_equal(count_rows(f->db, "messages"), 0);

        /* Bounded: limit messages per call, oldest expiry first. */
        for (uint32_t i = 0; i < 5; i++)
                assert_int_equal(msg_put(f->db, a, "t", i, 1, T0, T0 + 10 + i, NULL, &id, &dup), 0);
        assert_int_equal(db_messages_expire(f->db, T0 + 1000, 2, &deleted), 1);
        assert_int_equal(deleted, 2);
        assert_int_equal(handle_int(f->db, "SELECT min(expires_usec) FROM messages"), T0 + 12);
        assert_int_equal(db_messages_expire(f->db, T0 + 1000, 0, &deleted), 0);
        assert_int_equal(deleted, 0);
        assert_int_equal(db_messages_expire(f->db, T0 + 1000, 100, &deleted), 0);
        assert_int_equal(deleted, 3);
        assert_usage(f->db, a, 0, 0);
        assert_int_equal(db_messages_expire(NULL, T0, 1, &deleted), -EINVAL);
        assert_counters_recount(f->db);

        /*
         * Everything acknowledged in time: no message expires, but dedup
         * keys do, and the sweep says "call again" until they are all gone.
         */
        for (uint32_t i = 0; i < 7; i++) {
                assert_int_equal(msg_put(f->db, a, "u", i, 1, T0, T0 + 50, NULL, &id, &dup), 0);
                assert_int_equal(db_messages_ack(f->db, a, &id, 1, NULL), 0);
        }
        assert_int_equal(count_acked_keys(f->db), 7);
        {
                unsigned calls = 0;
                int r;

                do {
                        r = db_messages_expire(f->db, T0 + 50, 3, &deleted);
                        assert_true(r >= 0);
                        assert_int_equal(deleted, 0);
                        calls++;
                } while (r > 0 && calls < 10);
                assert_int_equal(r, 0);
                assert_int_equal(calls, 3);     /* 3 + 3 + 1 */
        }
        assert_int_equal(count_acked_keys(f->db), 0);
}

static void test_ack_own_mailbox(void **state) {
        Fixture *f = *state;
        int64_t a = mailbox_new(f->db, 1, "uid:1"), b = mailbox_new(f->db, 2, "uid:2"), ia, ib, ids[5];
        size_t deleted = 99;

        ia = msg_put_ok(f->db, a, "s", 1, 10);
        ib = msg_put_ok(f->db, b, "s", 2, 20);

        /* b cannot acknowledge a's message. */
        assert_int_equal(db_messages_ack(f->db, b, &ia, 1, &deleted), 0);
        assert_int_equal(deleted, 0);
        assert_usage(f->db, a, 1, 10);
        assert_int_equal(count_acked_keys(f->db), 0);

        /* Unknown ids are ignored, duplicates count once, other mailboxes' ids are left alone. */
        ids[0] = ia;
        ids[1] = 999999;
        ids[2] = ia;
        ids[3] = ib;
        ids[4] = -1;
        assert_int_equal(db_messages_ack(f->db, a, ids, ELEMENTSOF(ids), &deleted), 0);
        assert_int_equal(deleted, 1);
        assert_usage(f->db, a, 0, 0);
        assert_usage(f->db, b, 1, 20);
        assert_int_equal(count_acked_keys(f->db), 1);
        assert_int_equal(handle_int(f->db, "SELECT server_id FROM dedup WHERE server_id NOT IN (SELECT id FROM messages)"),
                         ia);

        assert_int_equal(db_messages_ack(f->db, a, NULL, 0, &deleted), 0);
        assert_int_equal(deleted, 0);
        assert_int_equal(db_messages_ack(f->db, a, NULL, 1, &deleted), -EINVAL);
}

/* A failed call inside the writer's transaction undoes only itself; a rollback undoes everything. */
static void test_inside_transaction(void **state) {
        Fixture *f = *state;
        int64_t a = mailbox_new(f->db, 1, "uid:1"), b, id;
        DbQuota q = { .max_messages = 1 };
        bool dup;

        assert_int_equal(db_begin(f->db), 0);
        assert_int_equal(msg_put(f->db, a, "s", 1, 10, T0, T0 + TTL, &q, &id, &dup), 0);
        assert_int_equal(msg_put(f->db, a, "s", 2, 10, T0, T0 + TTL, &q, &id, &dup), -EDQUOT);
        assert_int_equal(msg_put(f->db, a, "s", 3, 0, T0, T0 + TTL, &q, &id, &dup), -EINVAL);
        assert_usage(f->db, a, 1, 10);
        assert_int_equal(db_commit(f->db), 0);
        assert_usage(f->db, a, 1, 10);

        assert_int_equal(db_begin(f->db), 0);
        assert_int_equal(db_messages_ack(f->db, a, &id, 1, NULL), 0);
        assert_int_equal(msg_put(f->db, a, "s", 4, 10, T0, T0 + TTL, NULL, &id, &dup), 0);
        assert_int_equal(db_rollback(f->db), 0);
        assert_usage(f->db, a, 1, 10);
        assert_int_equal(count_acked_keys(f->db), 0);
        assert_counters_recount(f->db);

        /*
         * A resend that replaces an expired copy and then fails the quota:
         * the copy's deletion is undone with it, the caller's work stays.
         */
        b = mailbox_new(f->db, 2, "uid:2");
        assert_int_equal(msg_put(f->db, b, "s", 10, 10, T0, T0 + 10, NULL, &id, &dup), 0);
        assert_int_equal(msg_put(f->db, b, "s", 11, 20, T0, T0 + TTL, NULL, &id, &dup), 0);
        assert_int_equal(db_begin(f->db), 0);
        assert_int_equal(msg_put(f->db, b, "s", 12, 5, T0, T0 + TTL, NULL, &id, &dup), 0);
        assert_int_equal(msg_put(f->db, b, "s", 10, 10, T0 + 20, T0 + TTL, &q, &id, &dup), -EDQUOT);
        assert_usage(f->db, b, 3, 35);
        assert_int_equal(handle_int(f->db, "SELECT count(*) FROM messages WHERE expires_usec = 1000010"), 1);
        assert_int_equal(db_commit(f->db), 0);
        assert_usage(f->db, b, 3, 35);
        assert_counters_recount(f->db);
}

/* Counters equal a recount after a random mix of every way messages come and go. */
static void test_counters_after_mix(void **state) {
        Fixture *f = *state;
        int64_t boxes[4];
        uint32_t seed = 12345, next_id = 0;
        DbQuota q = { .max_messages = 50, .max_bytes = 20000 };

        for (uint8_t i = 0; i < ELEMENTSOF(boxes); i++) {
                char owner[16];

                snprintf(owner, sizeof owner, "uid:%u", i);
                boxes[i] = mailbox_new(f->db, i + 1, owner);
        }

        for (unsigned round = 0; round < 2000; round++) {
                int64_t box, id;
                uint32_t op;
                bool dup;
                int r;

                seed = seed * 1103515245u + 12345u;
                op = (seed >> 16) % 10;
                box = boxes[(seed >> 8) % ELEMENTSOF(boxes)];
                if (op < 6) {
                        /* New or resent (about 1 in 4 reuses an earlier id). */
                        uint32_t n = (op == 0 && next_id > 0) ? (seed >> 4) % next_id : next_id++;

                        r = msg_put(f->db, box, (seed & 1) ? "a" : "b", n, 1 + (seed >> 20) % 900,
                                    T0 + round, T0 + round + 500 + (seed % 300), &q, &id, &dup);
                        assert_true(r == 0 || r == -EDQUOT);
                } else if (op < 8) {
                        DbMessage *m = NULL;
                        int64_t ids[8];
                        size_t n = 0, k;

                        assert_int_equal(db_messages_fetch(f->db, box, 0, T0 + round, 8, SIZE_MAX, &m, &n), 0);
                        for (k = 0; k < n; k++)
                                ids[k] = m[k].id;
                        db_messages_free(m, n);
                        assert_int_equal(db_messages_ack(f->db, box, ids, n, NULL), 0);
                } else if (op < 9)
                        assert_true(db_messages_expire(f->db, T0 + round, 7, NULL) >= 0);
                else if (round % 500 == 0) {
                        /* A mailbox goes: its messages cascade; their dedup keys stay until expiry. */
                        _cleanup_free_ char *sql = NULL;

                        assert_true(asprintf(&sql, "DELETE FROM mailboxes WHERE id = %" PRIi64, box) > 0);
                        handle_exec(f->db, sql);
                        assert_int_equal(handle_int(f->db, "SELECT count(*) FROM messages WHERE mailbox_id "
                                                           "NOT IN (SELECT id FROM mailboxes)"),
                                         0);
                        for (size_t i = 0; i < ELEMENTSOF(boxes); i++)
                                if (boxes[i] == box) {
                                        char owner[16];

                                        snprintf(owner, sizeof owner, "uid:%zu", 100 + i + round);
                                        boxes[i] = mailbox_new(f->db, (uint8_t) (100 + i + round / 500), owner);
                                }
                }
                if (round % 100 == 0) {
                        assert_counters_recount(f->db);
                        assert_dedup_covers_messages(f->db);
                }
        }
        assert_counters_recount(f->db);
        assert_dedup_covers_messages(f->db);
        assert_true(count_acked_keys(f->db) > 0);
        assert_int_equal(handle_int(f->db, "SELECT count(*) FROM pragma_foreign_key_check"), 0);
}

static void test_relay_stats(void **state) {
        Fixture *f = *state;
        DbRelayStats s = { .mailboxes = 99 };
        int64_t a, b, id;
        bool dup;

        assert_int_equal(db_relay_stats(f->db, &s), 0);
        assert_int_equal(s.mailboxes, 0);
        assert_int_equal(s.messages, 0);
        assert_int_equal(s.bytes, 0);
        assert_int_equal(s.oldest_usec, 0);

        a = mailbox_new(f->db, 1, "uid:1");
        b = mailbox_new(f->db, 2, "uid:2");
        (void) mailbox_new(f->db, 3, "uid:3");
        assert_int_equal(msg_put(f->db, a, "s", 1, 10, T0 + 5, T0 + TTL, NULL, &id, &dup), 0);
        assert_int_equal(msg_put(f->db, b, "s", 2, 20, T0 + 7, T0 + TTL, NULL, &id, &dup), 0);
        assert_int_equal(msg_put(f->db, b, "s", 3, 30, T0 + 9, T0 + TTL, NULL, &id, &dup), 0);
        assert_int_equal(db_relay_stats(f->db, &s), 0);
        assert_int_equal(s.mailboxes, 3);
        assert_int_equal(s.messages, 3);
        assert_int_equal(s.bytes, 60);
        assert_int_equal(s.oldest_usec, T0 + 5);

        assert_int_equal(db_messages_ack(f->db, a, (int64_t[]) { 1 }, 1, NULL), 0);
        assert_int_equal(db_relay_stats(f->db, &s), 0);
        assert_int_equal(s.messages, 2);
        assert_int_equal(s.bytes, 50);
        assert_int_equal(s.oldest_usec, T0 + 7);
        assert_int_equal(db_relay_stats(f->db, NULL), -EINVAL);
        assert_int_equal(db_mailbox_usage(f->db, 999, NULL, NULL), -ENOENT);
}

/* The schema refuses what the API never writes: negative counters, malformed or duplicate dedup keys. */
static void test_schema_checks(void **state) {
        Fixture *f = *state;
        int64_t a = mailbox_new(f->db, 1, "uid:1");
        _cleanup_free_ char *sql = NULL;

        (void) a;
        assert_int_equal(sqlite3_exec(f->db->sqlite, "UPDATE mailboxes SET queued_messages = -1", NULL, NULL, NULL),
                         SQLITE_CONSTRAINT_CHECK);
        assert_int_equal(sqlite3_exec(f->db->sqlite, "UPDATE mailboxes SET queued_bytes = -1", NULL, NULL, NULL),
                         SQLITE_CONSTRAINT_CHECK);
        assert_int_equal(sqlite3_exec(f->db->sqlite,
                                      "INSERT INTO dedup(sender, client_msg_id, server_id, expires_usec) "
                                      "VALUES ('s', x'00', 1, 5)",
                                      NULL, NULL, NULL),
                         SQLITE_CONSTRAINT_CHECK);
        assert_int_equal(sqlite3_exec(f->db->sqlite,
                                      "INSERT INTO dedup(sender, client_msg_id, server_id, expires_usec) "
                                      "VALUES ('s', zeroblob(16), 0, 5)",
                                      NULL, NULL, NULL),
                         SQLITE_CONSTRAINT_CHECK);
        /* A message updated behind our back still keeps the counters and its dedup key right. */
        (void) msg_put_ok(f->db, a, "s", 1, 10);
        handle_exec(f->db, "UPDATE messages SET body = zeroblob(25)");
        assert_usage(f->db, a, 1, 25);
        assert_counters_recount(f->db);
        handle_exec(f->db, "UPDATE messages SET expires_usec = expires_usec + 1, client_msg_id = zeroblob(16)");
        assert_dedup_covers_messages(f->db);
        assert_int_equal(count_rows(f->db, "dedup"), 1);
        /* Nor can a raw INSERT store a second message under a live key (it was the UNIQUE index's job). */
        assert_true(asprintf(&sql,
                             "INSERT INTO messages(mailbox_id, sender, client_msg_id, received_usec, expires_usec, body) "
                             "VALUES (%" PRIi64 ", 's', zeroblob(16), 1, 2, x'01')",
                             a) > 0);
        assert_int_equal(sqlite3_exec(f->db->sqlite, sql, NULL, NULL, NULL), SQLITE_CONSTRAINT_PRIMARYKEY);
        assert_usage(f->db, a, 1, 25);
        assert_int_equal(count_rows(f->db, "messages"), 1);
}

/* Rows that the schema would refuse (the file changed behind our back) are reported, not trusted. */
static void test_corrupt_rows_refused(void **state) {
        Fixture *f = *state;
        int64_t a = mailbox_new(f->db, 1, "uid:1"), b = mailbox_new(f->db, 2, "uid:2");
        _cleanup_free_ char *sql = NULL;
        DbMessage *m = (DbMessage *) 0x1;
        DbKeyBundle bundle;
        DbPrekey otk;
        size_t n = 77;

        (void) msg_put_ok(f->db, a, "s", 1, 10);
        prekey_make(&otk, 1);
        assert_int_equal(publish(f->db, b, 1, 1, &otk, 1), 0);
        handle_exec(f->db, "PRAGMA ignore_check_constraints = 1");
        assert_true(asprintf(&sql,
                             "INSERT INTO messages(mailbox_id, sender, client_msg_id, received_usec, expires_usec, body) "
                             "VALUES (%" PRIi64 ", 's', x'0102', %lld, %lld, x'00');"
                             "UPDATE identity_keys SET dh_key = zeroblob(31) WHERE mailbox_id = %" PRIi64,
                             a, T0, T0 + TTL, b) > 0);
        handle_exec(f->db, sql);
        handle_exec(f->db, "PRAGMA ignore_check_constraints = 0");

        assert_int_equal(db_messages_fetch(f->db, a, 0, T0, 10, SIZE_MAX, &m, &n), -EBADMSG);
        assert_ptr_equal(m, (DbMessage *) 0x1);
        assert_int_equal(n, 77);
        assert_int_equal(db_keys_bundle(f->db, b, &bundle), -EBADMSG);
        /* The one-time key was not taken for a bundle that was never handed out. */
        assert_int_equal(count_rows(f->db, "one_time_prekeys"), 1);
}

/* Run every statement once, then check that none of them scans a table. */
static void test_query_plans(void **state) {
        Fixture *f = *state;
        int64_t a = mailbox_new(f->db, 1, "uid:1"), id;
        uint8_t key[DB_MAILBOX_KEY_SIZE];
        DbQuota q = { .max_messages = 10, .max_bytes = 1000 };
        DbMessage *m = NULL;
        DbRelayStats s;
        char *owner = NULL;
        size_t n;
        bool dup;

        key_make(key, 1);
        assert_int_equal(db_mailbox_lookup(f->db, key, &id, &owner), 0);
        free(owner);
        assert_int_equal(msg_put(f->db, a, "s", 1, 10, T0, T0 + 10, &q, &id, &dup), 0);
        assert_int_equal(msg_put(f->db, a, "s", 1, 10, T0 + 20, T0 + 30, &q, &id, &dup), 0);   /* expired copy */
        assert_int_equal(db_messages_ack(f->db, a, &id, 1, NULL), 0);
        assert_int_equal(msg_put(f->db, a, "s", 1, 10, T0 + 40, T0 + 50, &q, &id, &dup), 0);   /* expired acknowledged key */
        assert_int_equal(db_messages_fetch(f->db, a, 0, T0, 10, 100, &m, &n), 0);
        db_messages_free(m, n);
        assert_int_equal(db_messages_expire(f->db, T0 + 100, 10, NULL), 0);
        assert_int_equal(db_relay_stats(f->db, &s), 0);
        assert_int_equal(db_mailbox_usage(f->db, a, NULL, NULL), 0);
        {
                DbPrekey otks[2];
                DbKeyBundle bundle;
                DbKeysStats ks;
                uint64_t count;

                prekey_make(&otks[0], 5);
                prekey_make(&otks[1], 6);
                assert_int_equal(publish(f->db, a, 1, 1, otks, 2), 0);
                assert_int_equal(publish(f->db, a, 1, 2, otks, 2), 0);
                assert_int_equal(db_keys_bundle(f->db, a, &bundle), 0);
                assert_int_equal(db_keys_count(f->db, a, &count), 0);
                assert_int_equal(db_keys_stats(f->db, &ks), 0);
        }
        /* The cascade when a mailbox goes reaches every child table through an index too. */
        handle_exec(f->db, "DELETE FROM mailboxes");

        for (int i = DB_STMT_MAILBOX_BY_KEY; i < _DB_STMT_MAX; i++) {
                _cleanup_(sqlite3_finalizep) sqlite3_stmt *plan = NULL;
                _cleanup_free_ char *sql = NULL;

                if (!f->db->stmts[i])
                        continue;
                assert_true(asprintf(&sql, "EXPLAIN QUERY PLAN %s", sqlite3_sql(f->db->stmts[i])) > 0);
                assert_int_equal(sqlite3_prepare_v2(f->db->sqlite, sql, -1, &plan, NULL), SQLITE_OK);
                while (sqlite3_step(plan) == SQLITE_ROW) {
                        const char *detail = (const char *) sqlite3_column_text(plan, 3);

                        assert_non_null(detail);
                        /* Stats read every mailbox row (the counters) and the first message by id; nothing else scans. */
                        if (i == DB_STMT_RELAY_STATS &&
                            (streq(detail, "SCAN mailboxes") || streq(detail, "SCAN messages")))
                                continue;
                        if (i == DB_STMT_KEYS_STATS)
                                continue;
                        if (strncmp(detail, "SCAN ", 5) == 0 || strstr(detail, "TEMP B-TREE"))
                                fail_msg("statement %d scans: %s\n  %s", i, detail, sqlite3_sql(f->db->stmts[i]));
                }
        }
        assert_non_null(f->db->stmts[DB_STMT_MESSAGE_INSERT]);
        assert_non_null(f->db->stmts[DB_STMT_DEDUP_DELETE]);
        assert_non_null(f->db->stmts[DB_STMT_MESSAGE_DELETE]);
        assert_non_null(f->db->stmts[DB_STMT_KEYS_OTK_DELETE]);

        /* Deleting a mailbox: the foreign-key lookups in the child tables use an index (mailbox_id first). */
        {
                static const char *const children[] = { "messages", "identity_keys", "signed_prekeys",
                                                        "one_time_prekeys" };

                for (size_t c = 0; c < ELEMENTSOF(children); c++) {
                        _cleanup_(sqlite3_finalizep) sqlite3_stmt *plan = NULL;
                        _cleanup_free_ char *sql = NULL;
                        bool indexed = false;

                        assert_true(asprintf(&sql, "EXPLAIN QUERY PLAN SELECT 1 FROM %s WHERE mailbox_id = 1",
                                             children[c]) > 0);
                        assert_int_equal(sqlite3_prepare_v2(f->db->sqlite, sql, -1, &plan, NULL), SQLITE_OK);
                        while (sqlite3_step(plan) == SQLITE_ROW) {
                                const char *detail = (const char *) sqlite3_column_text(plan, 3);

                                if (detail && strncmp(detail, "SEARCH ", 7) == 0)
                                        indexed = true;
                        }
                        if (!indexed)
                                fail_msg("%s: no index on mailbox_id", children[c]);
                }
        }
}

/* ---- migration 2 -> 3 ---- */

static void test_migration_2_to_3(void **state) {
        Fixture *f = *state;
        Db *db = NULL;
        uint8_t key[DB_MAILBOX_KEY_SIZE], cmid[DB_MSG_ID_SIZE];
        int64_t id, box1, box2;
        DbMessage *m = NULL;
        size_t n, deleted;
        bool dup, created;
        int version;

        /* A version-2 store with mailboxes, queued messages and pre-keys. */
        assert_int_equal(db_open_with_migrations(f->path, DB_OPEN_CREATE, db_migrations, 2, &db), 0);
        assert_int_equal(db_schema_version(db, &version), 0);
        assert_int_equal(version, 2);
        db_close(db);
        db = NULL;
        key_make(key, 1);
        msgid_make(cmid, 1);
        raw_exec(f->path,
                 "INSERT INTO mailboxes(identity_key, owner, created_usec) VALUES "
                 "  (zeroblob(32), 'uid:1000', 1), (randomblob(32), 'uid:1001', 2), (randomblob(32), 'uid:1002', 3);"
                 "INSERT INTO messages(mailbox_id, sender, client_msg_id, received_usec, expires_usec, body) VALUES "
                 "  (1, 'uid:7', x'01000000a5a5a5a5a5a5a5a5a5a5a5a5', 10, 4000000000000000, zeroblob(100)),"
                 "  (1, 'uid:7', x'02000000a5a5a5a5a5a5a5a5a5a5a5a5', 11, 4000000000000000, zeroblob(5)),"
                 "  (2, 'uid:7', x'03000000a5a5a5a5a5a5a5a5a5a5a5a5', 12, 4000000000000000, zeroblob(7)),"
                 "  (2, 'uid:7', x'09000000a5a5a5a5a5a5a5a5a5a5a5a5', 13, 4000000000000000, zeroblob(9));"
                 /* Id 4 is retired: the rebuilt table must not hand it out again. */
                 "DELETE FROM messages WHERE id = 4;"
                 "INSERT INTO identity_keys(mailbox_id, dh_key, signature, published_usec) VALUES "
                 "  (1, zeroblob(32), zeroblob(64), 1);"
                 "INSERT INTO signed_prekeys(mailbox_id, key_id, public_key, signature, published_usec) VALUES "
                 "  (1, 7, zeroblob(32), zeroblob(64), 1);"
                 "INSERT INTO one_time_prekeys(mailbox_id, key_id, public_key, published_usec) VALUES "
                 "  (1, 1, zeroblob(32), 1), (1, 2, zeroblob(32), 1);");

        /* Opening migrates (through 4: the totals); the counters start from a recount. */
        assert_int_equal(db_open(f->path, 0, &db), 0);
        assert_int_equal(db_schema_version(db, &version), 0);
        assert_int_equal(version, DB_SCHEMA_VERSION_LATEST);
        assert_counters_recount(db);
        memset(key, 0, sizeof key);
        assert_int_equal(db_mailbox_lookup(db, key, &box1, NULL), 0);
        assert_int_equal(box1, 1);
        box2 = 2;
        assert_usage(db, box1, 2, 105);
        assert_usage(db, box2, 1, 7);
        assert_usage(db, 3, 0, 0);
        /* Every old message got its dedup key; the UNIQUE and expiry indexes of version 2 are gone. */
        assert_dedup_covers_messages(db);
        assert_int_equal(count_rows(db, "dedup"), 3);
        assert_int_equal(handle_int(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND "
                                        "tbl_name = 'messages'"),
                         1);

        /* Old rows take part in everything: ownership, dedup, fetch, ack, acknowledged keys. */
        assert_int_equal(db_mailbox_register(db, key, "uid:1000", T0, &id, &created), 0);
        assert_false(created);
        assert_int_equal(db_mailbox_register(db, key, "uid:1001", T0, &id, &created), -EPERM);
        assert_int_equal(msg_put(db, box1, "uid:7", 1, 100, T0, T0 + TTL, NULL, &id, &dup), 0);
        assert_true(dup);
        assert_int_equal(id, 1);
        assert_int_equal(db_messages_fetch(db, box1, 0, T0, 10, SIZE_MAX, &m, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(m[0].id, 1);
        assert_int_equal(m[0].size, 100);
        db_messages_free(m, n);
        assert_int_equal(db_messages_ack(db, box1, (int64_t[]) { 1 }, 1, &deleted), 0);
        assert_int_equal(deleted, 1);
        assert_int_equal(msg_put(db, box1, "uid:7", 1, 100, T0, T0 + TTL, NULL, &id, &dup), 0);
        assert_true(dup);
        assert_int_equal(id, 1);
        /* AUTOINCREMENT carried on past the retired id 4. */
        id = msg_put_ok(db, box2, "uid:7", 4, 3);
        assert_int_equal(id, 5);
        assert_usage(db, box1, 1, 5);
        assert_usage(db, box2, 2, 10);
        assert_counters_recount(db);

        /* Pre-keys published at version 2 are served. */
        {
                DbKeyBundle bundle;
                uint64_t count;

                assert_int_equal(db_keys_count(db, box1, &count), 0);
                assert_int_equal(count, 2);
                assert_int_equal(db_keys_bundle(db, box1, &bundle), 0);
                assert_true(bundle.has_otk);
                assert_int_equal(bundle.otk.id, 1);
                assert_int_equal(bundle.spk_id, 7);
        }
        db_close(db);
        db = NULL;

        /* Reopening does not migrate again; the file is sound. */
        assert_int_equal(db_open(f->path, 0, &db), 0);
        assert_int_equal(handle_int(db, "SELECT count(*) FROM pragma_integrity_check WHERE integrity_check <> 'ok'"), 0);
        assert_int_equal(handle_int(db, "SELECT count(*) FROM pragma_foreign_key_check"), 0);
        assert_int_equal(handle_int(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger'"), 7);   /* 4 of migration 3, 3 of 4 */
        assert_usage(db, box1, 1, 5);
        db_close(db);
}

/* ---- key server ---- */

static void test_keys_publish_and_bundle(void **state) {
        Fixture *f = *state;
        int64_t a = mailbox_new(f->db, 1, "uid:1"), b = mailbox_new(f->db, 2, "uid:2");
        DbPrekey otks[DB_OTK_MAX];
        uint8_t key[DB_MAILBOX_KEY_SIZE], expect[64];
        DbKeyBundle bundle;
        uint64_t count = 99;
        bool seen[DB_OTK_MAX] = {};

        assert_int_equal(db_keys_count(f->db, a, &count), 0);
        assert_int_equal(count, 0);
        assert_int_equal(db_keys_bundle(f->db, a, &bundle), -ENOENT);

        for (uint32_t i = 0; i < 5; i++)
                prekey_make(&otks[i], 100 + i);
        assert_int_equal(publish(f->db, a, 0x10, 1, otks, 5), 0);
        assert_int_equal(db_keys_count(f->db, a, &count), 0);
        assert_int_equal(count, 5);
        assert_int_equal(db_keys_count(f->db, b, &count), 0);
        assert_int_equal(count, 0);

        /* Replace: old one-time keys gone, only the new signed pre-key kept. */
        for (uint32_t i = 0; i < 3; i++)
                prekey_make(&otks[i], 10 + 3 - i);      /* 13, 12, 11: taken lowest first */
        assert_int_equal(publish(f->db, a, 0x20, 2, otks, 3), 0);
        assert_int_equal(db_keys_count(f->db, a, &count), 0);
        assert_int_equal(count, 3);
        assert_int_equal(handle_int(f->db, "SELECT count(*) FROM signed_prekeys"), 1);
        assert_int_equal(handle_int(f->db, "SELECT key_id FROM signed_prekeys"), 2);
        assert_int_equal(handle_int(f->db, "SELECT count(*) FROM one_time_prekeys WHERE key_id >= 100"), 0);
        assert_int_equal(handle_int(f->db, "SELECT count(*) FROM identity_keys"), 1);

        key_make(key, 1);
        for (uint32_t i = 0; i < 3; i++) {
                DbPrekey want;

                memset(&bundle, 0xff, sizeof bundle);
                assert_int_equal(db_keys_bundle(f->db, a, &bundle), 0);
                assert_memory_equal(bundle.identity_key, key, sizeof key);
                memset(expect, 0x20, 32);
                assert_memory_equal(bundle.identity_dh, expect, 32);
                memset(expect, 0x21, 64);
                assert_memory_equal(bundle.identity_dh_sig, expect, 64);
                assert_int_equal(bundle.spk_id, 2);
                memset(expect, 0x22, 32);
                assert_memory_equal(bundle.spk, expect, 32);
                memset(expect, 0x23, 64);
                assert_memory_equal(bundle.spk_sig, expect, 64);
                assert_true(bundle.has_otk);
                prekey_make(&want, 11 + i);
                assert_int_equal(bundle.otk.id, want.id);
                assert_memory_equal(bundle.otk.key, want.key, sizeof want.key);
                assert_int_equal(db_keys_count(f->db, a, &count), 0);
                assert_int_equal(count, 2 - i);
        }
        /* Exhausted: the bundle still comes, flagged without a one-time key. */
        memset(&bundle, 0xff, sizeof bundle);
        assert_int_equal(db_keys_bundle(f->db, a, &bundle), 0);
        assert_false(bundle.has_otk);
        assert_int_equal(bundle.spk_id, 2);
        assert_int_equal(db_keys_bundle(f->db, b, &bundle), -ENOENT);

        /* The full batch: every key served once, distinct, then none. */
        for (uint32_t i = 0; i < DB_OTK_MAX; i++)
                prekey_make(&otks[i], 4000000000u - 7 * i);
        assert_int_equal(publish(f->db, b, 0x30, UINT32_MAX, otks, DB_OTK_MAX), 0);
        for (uint32_t i = 0; i < DB_OTK_MAX; i++) {
                uint32_t k;

                assert_int_equal(db_keys_bundle(f->db, b, &bundle), 0);
                assert_true(bundle.has_otk);
                assert_int_equal(bundle.spk_id, UINT32_MAX);
                k = (4000000000u - bundle.otk.id) / 7;
                assert_true(k < DB_OTK_MAX);
                assert_false(seen[k]);
                seen[k] = true;
        }
        assert_int_equal(db_keys_bundle(f->db, b, &bundle), 0);
        assert_false(bundle.has_otk);

        /* Publishing with no one-time keys at all is fine. */
        assert_int_equal(publish(f->db, a, 0x40, 3, NULL, 0), 0);
        assert_int_equal(db_keys_bundle(f->db, a, &bundle), 0);
        assert_false(bundle.has_otk);
        assert_int_equal(bundle.spk_id, 3);
}

static void test_keys_bad_arguments(void **state) {
        Fixture *f = *state;
        int64_t a = mailbox_new(f->db, 1, "uid:1");
        DbPrekey otks[DB_OTK_MAX + 1];
        uint8_t k32[32] = {}, k64[64] = {};
        DbKeyBundle bundle;
        uint64_t count;

        for (uint32_t i = 0; i <= DB_OTK_MAX; i++)
                prekey_make(&otks[i], i);
        assert_int_equal(publish(f->db, a, 1, 1, otks, 2), 0);

        /* Each refusal leaves the published set as it was. */
        assert_int_equal(publish(f->db, a, 1, 2, otks, DB_OTK_MAX + 1), -EINVAL);
        otks[50].id = otks[3].id;
        assert_int_equal(publish(f->db, a, 1, 2, otks, DB_OTK_MAX), -EINVAL);
        otks[50].id = 50;
        assert_int_equal(publish(f->db, a, 1, 2, NULL, 3), -EINVAL);
        assert_int_equal(db_keys_publish(f->db, a, NULL, k64, 1, k32, k64, otks, 1, T0), -EINVAL);
        assert_int_equal(db_keys_publish(f->db, a, k32, NULL, 1, k32, k64, otks, 1, T0), -EINVAL);
        assert_int_equal(db_keys_publish(f->db, a, k32, k64, 1, NULL, k64, otks, 1, T0), -EINVAL);
        assert_int_equal(db_keys_publish(f->db, a, k32, k64, 1, k32, NULL, otks, 1, T0), -EINVAL);
        assert_int_equal(db_keys_publish(f->db, a, k32, k64, 1, k32, k64, otks, 1, -1), -EINVAL);
        assert_int_equal(db_keys_publish(NULL, a, k32, k64, 1, k32, k64, otks, 1, T0), -EINVAL);
        /* No such mailbox. */
        assert_int_equal(publish(f->db, a + 100, 1, 2, otks, 3), -ENOENT);

        assert_int_equal(db_keys_count(f->db, a, &count), 0);
        assert_int_equal(count, 2);
        assert_int_equal(handle_int(f->db, "SELECT key_id FROM signed_prekeys"), 1);
        assert_int_equal(handle_int(f->db, "SELECT count(*) FROM signed_prekeys"), 1);
        assert_int_equal(count_rows(f->db, "identity_keys"), 1);

        assert_int_equal(db_keys_bundle(f->db, a, NULL), -EINVAL);
        assert_int_equal(db_keys_bundle(NULL, a, &bundle), -EINVAL);
        assert_int_equal(db_keys_count(f->db, a, NULL), -EINVAL);
        assert_int_equal(db_keys_stats(f->db, NULL), -EINVAL);

        /* Exactly DB_OTK_MAX is fine. */
        assert_int_equal(publish(f->db, a, 1, 2, otks, DB_OTK_MAX), 0);
        assert_int_equal(db_keys_count(f->db, a, &count), 0);
        assert_int_equal(count, DB_OTK_MAX);
}

/* Bundles inside the writer's transaction: each its own savepoint; a rollback gives the keys back. */
static void test_keys_in_transaction(void **state) {
        Fixture *f = *state;
        int64_t a = mailbox_new(f->db, 1, "uid:1");
        DbPrekey otks[4];
        DbKeyBundle b1, b2;
        uint64_t count;

        for (uint32_t i = 0; i < 4; i++)
                prekey_make(&otks[i], i + 1);
        assert_int_equal(db_begin(f->db), 0);
        assert_int_equal(publish(f->db, a, 1, 1, otks, 3), 0);
        assert_int_equal(db_keys_bundle(f->db, a, &b1), 0);
        assert_int_equal(db_keys_bundle(f->db, a, &b2), 0);
        assert_int_not_equal(b1.otk.id, b2.otk.id);
        otks[3].id = otks[0].id;
        assert_int_equal(publish(f->db, a, 1, 2, otks, 4), -EINVAL);   /* refused before any write */
        /* A failure halfway (after the old keys were deleted) undoes only that publish. */
        handle_exec(f->db, "CREATE TEMP TRIGGER otk_refuse BEFORE INSERT ON one_time_prekeys "
                           "WHEN NEW.key_id = 99 BEGIN SELECT RAISE(ABORT, 'refused by test'); END");
        otks[3].id = 99;
        assert_int_equal(publish(f->db, a, 1, 2, otks, 4), -EINVAL);
        assert_non_null(strstr(db_last_error(f->db), "refused by test"));
        handle_exec(f->db, "DROP TRIGGER temp.otk_refuse");
        assert_int_equal(db_keys_count(f->db, a, &count), 0);
        assert_int_equal(count, 1);
        assert_int_equal(handle_int(f->db, "SELECT key_id FROM signed_prekeys"), 1);
        assert_int_equal(db_commit(f->db), 0);

        assert_int_equal(db_begin(f->db), 0);
        assert_int_equal(db_keys_bundle(f->db, a, &b1), 0);
        assert_true(b1.has_otk);
        assert_int_equal(b1.otk.id, 3);
        assert_int_equal(db_rollback(f->db), 0);
        assert_int_equal(db_keys_count(f->db, a, &count), 0);
        assert_int_equal(count, 1);
}

/* Two handles on one file: bundles from both never share a one-time key. */
static void test_keys_two_handles(void **state) {
        Fixture *f = *state;
        _cleanup_(db_closep) Db *h1 = NULL, *h2 = NULL;
        DbPrekey otks[DB_OTK_MAX];
        bool seen[DB_OTK_MAX + 1] = {};
        int64_t a;
        size_t got = 0;

        assert_int_equal(db_open(f->path, DB_OPEN_CREATE, &h1), 0);
        assert_int_equal(db_open(f->path, 0, &h2), 0);
        a = mailbox_new(h1, 1, "uid:1");
        for (uint32_t i = 0; i < DB_OTK_MAX; i++)
                prekey_make(&otks[i], i + 1);
        assert_int_equal(publish(h1, a, 1, 1, otks, DB_OTK_MAX), 0);

        for (size_t i = 0; i < DB_OTK_MAX + 4; i++) {
                DbKeyBundle b;

                assert_int_equal(db_keys_bundle(i % 2 ? h1 : h2, a, &b), 0);
                if (!b.has_otk)
                        continue;
                assert_true(b.otk.id >= 1 && b.otk.id <= DB_OTK_MAX);
                assert_false(seen[b.otk.id]);
                seen[b.otk.id] = true;
                got++;
        }
        assert_int_equal(got, DB_OTK_MAX);
}

typedef struct BundleThread {
        const char *path;
        int64_t mailbox;
        uint32_t got[DB_OTK_MAX];
        size_t n_got, n_without;
        int error;
} BundleThread;

static void *bundle_thread(void *userdata) {
        BundleThread *t = userdata;
        _cleanup_(db_closep) Db *db = NULL;

        t->error = db_open(t->path, 0, &db);
        if (t->error < 0)
                return NULL;
        /* Bounded: never more attempts than keys plus a few exhausted answers. */
        for (size_t i = 0; i < DB_OTK_MAX + 8 && t->n_without < 4; i++) {
                DbKeyBundle b;

                t->error = db_keys_bundle(db, t->mailbox, &b);
                if (t->error < 0)
                        return NULL;
                if (!b.has_otk)
                        t->n_without++;
                else if (t->n_got < DB_OTK_MAX)
                        t->got[t->n_got++] = b.otk.id;
                else {
                        t->error = -E2BIG;
                        return NULL;
                }
        }
        return NULL;
}

/* Four threads, each with its own handle on one file, bundling at once: every key goes to exactly one. */
static void test_keys_concurrent_handles(void **state) {
        Fixture *f = *state;
        _cleanup_(db_closep) Db *db = NULL;
        BundleThread t[4] = {};
        pthread_t tid[ELEMENTSOF(t)];
        DbPrekey otks[DB_OTK_MAX];
        bool seen[DB_OTK_MAX + 1] = {};
        size_t total = 0;
        int64_t a;

        assert_int_equal(db_open(f->path, DB_OPEN_CREATE, &db), 0);
        a = mailbox_new(db, 1, "uid:1");
        for (uint32_t i = 0; i < DB_OTK_MAX; i++)
                prekey_make(&otks[i], i + 1);
        assert_int_equal(publish(db, a, 1, 1, otks, DB_OTK_MAX), 0);

        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                t[i] = (BundleThread) { .path = f->path, .mailbox = a };
                assert_int_equal(pthread_create(&tid[i], NULL, bundle_thread, &t[i]), 0);
        }
        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                assert_int_equal(pthread_join(tid[i], NULL), 0);
                assert_int_equal(t[i].error, 0);
                for (size_t k = 0; k < t[i].n_got; k++) {
                        assert_true(t[i].got[k] >= 1 && t[i].got[k] <= DB_OTK_MAX);
                        assert_false(seen[t[i].got[k]]);
                        seen[t[i].got[k]] = true;
                }
                total += t[i].n_got;
        }
        assert_int_equal(total, DB_OTK_MAX);
        assert_int_equal(count_rows(db, "one_time_prekeys"), 0);
}

static void test_keys_stats(void **state) {
        Fixture *f = *state;
        int64_t a = mailbox_new(f->db, 1, "uid:1"), b = mailbox_new(f->db, 2, "uid:2");
        DbKeysStats s = { .published = 99 };
        DbKeyBundle bundle;
        DbPrekey otks[4];

        (void) mailbox_new(f->db, 3, "uid:3");
        assert_int_equal(db_keys_stats(f->db, &s), 0);
        assert_int_equal(s.published, 0);
        assert_int_equal(s.one_time_prekeys, 0);
        assert_int_equal(s.exhausted, 0);

        for (uint32_t i = 0; i < 4; i++)
                prekey_make(&otks[i], i);
        assert_int_equal(publish(f->db, a, 1, 1, otks, 4), 0);
        assert_int_equal(publish(f->db, b, 1, 1, otks, 1), 0);
        assert_int_equal(db_keys_stats(f->db, &s), 0);
        assert_int_equal(s.published, 2);
        assert_int_equal(s.one_time_prekeys, 5);
        assert_int_equal(s.exhausted, 0);

        assert_int_equal(db_keys_bundle(f->db, b, &bundle), 0);
        assert_int_equal(db_keys_stats(f->db, &s), 0);
        assert_int_equal(s.published, 2);
        assert_int_equal(s.one_time_prekeys, 4);
        assert_int_equal(s.exhausted, 1);
}

#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)

int main(void) {
        const struct CMUnitTest tests[] = {
                T(test_register_and_lookup),
                T(test_insert_and_dedup),
                T(test_insert_bad_arguments),
                T(test_max_size_message),
                T(test_store_cap),
                T(test_quota),
                T(test_fetch_rules),
                T(test_fetch_count_cap),
                T(test_fetch_cursor),
                T(test_expiry),
                T(test_ack_own_mailbox),
                T(test_inside_transaction),
                T(test_counters_after_mix),
                T(test_relay_stats),
                T(test_schema_checks),
                T(test_corrupt_rows_refused),
                T(test_query_plans),
                T(test_migration_2_to_3),
                T(test_keys_publish_and_bundle),
                T(test_keys_bad_arguments),
                T(test_keys_in_transaction),
                T(test_keys_two_handles),
                T(test_keys_concurrent_handles),
                T(test_keys_stats),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
