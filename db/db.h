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
 *   -EINVAL   a CHECK, NOT NULL, type or foreign-key constraint failed (a value
 *             out of bounds, a rule without selector, ...), or a bad argument
 *   -E2BIG    a value or a result larger than the store accepts
 * The SQLite message for the last failure is kept: db_last_error().
 *
 * A Db handle is used by one thread at a time (the daemon's writer owns
 * one; readers open their own).
 */

#include "macro.h"
#include "policy.h"

typedef struct Db Db;

#define DB_SCHEMA_VERSION_LATEST 4  /* bumped by each migration that lands */

/* PRAGMA application_id of a secd store ("secd"); other non-zero ids are refused. */
#define DB_APPLICATION_ID 0x73656364

/* Bounds enforced by the schema (bytes, without the NUL). */
#define DB_SETTING_KEY_MAX 128
#define DB_SETTING_VALUE_MAX 4096
#define DB_AUDIT_KIND_MAX 64
#define DB_AUDIT_MESSAGE_MAX 4096
#define DB_AUDIT_FIELDS_MAX 65536
/* db_audit_list() returns at most this many entries per call. */
#define DB_AUDIT_LIST_MAX 10000

#define DB_BUSY_TIMEOUT_USEC_DEFAULT (5 * 1000 * 1000)

typedef enum DbOpenFlags {
        DB_OPEN_CREATE = 1 << 0,        /* create the file and schema if missing */
        DB_OPEN_READONLY = 1 << 1,
} DbOpenFlags;

/*
 * Open (and migrate) path; ":memory:" for tests. Nothing is written to a
 * file before it is known to be a secd store (or empty): a file that is not
 * SQLite, is corrupt, carries another application_id, or has tables but no
 * secd marker gives -EBADMSG and is left untouched. A missing file without
 * DB_OPEN_CREATE is -ENOENT. A store older than the code is migrated (with
 * DB_OPEN_READONLY that is -EROFS instead). DB_OPEN_READONLY and
 * DB_OPEN_CREATE together are -EINVAL.
 */
int db_open(const char *path, DbOpenFlags flags, Db **ret);
Db *db_close(Db *db);
DEFINE_TRIVIAL_CLEANUP_FUNC(Db *, db_close);

/*
 * SQLite's (or our) message for the last failure on this handle, never NULL.
 * db_last_error(NULL) is the message of the last failed db_open() in the
 * calling thread.
 */
const char *db_last_error(Db *db);
int db_schema_version(Db *db, int *ret);

/* How long a statement waits for another connection's lock before -EBUSY. */
int db_set_busy_timeout(Db *db, uint64_t usec);

/*
 * Explicit transactions (BEGIN IMMEDIATE / COMMIT / ROLLBACK; a plain BEGIN,
 * i.e. a consistent read snapshot, on a read-only handle). db_begin() while
 * one is open is -EALREADY; db_commit()/db_rollback() without one is -EINVAL.
 * If SQLite had to roll the transaction back itself after an error (disk
 * full, I/O error), db_commit() is -ECANCELED. After a failed db_commit()
 * the transaction is still open: call db_rollback().
 */
int db_begin(Db *db);
int db_commit(Db *db);
int db_rollback(Db *db);

/*
 * Settings: small key/value strings. -ENOENT if unset. Keys starting with
 * "policy." belong to the policy calls below: db_setting_set() refuses them
 * with -EPERM (so the generation cannot be changed behind their back).
 */
int db_setting_get(Db *db, const char *key, char **ret);
int db_setting_set(Db *db, const char *key, const char *value);

/*
 * Policy. Each mutating call bumps the policy generation in the same
 * transaction (its own, unless the caller has one open, in which case it
 * runs in a savepoint: a failed call undoes only itself). A failed call
 * changes nothing, the generation included.
 *
 * db_rule_insert() stores the selectors named by rule->selectors (a set
 * selector with a missing value, or an unknown bit, is -EINVAL; values of
 * unset selectors are ignored); the schema refuses a rule without selector
 * and out-of-bounds strings (-EINVAL). ret_id may be NULL. Validating the
 * rule's meaning is the caller's job (policy_rule_validate()).
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

/* Audit trail (decisions and admin actions), append-only with a bound. */
typedef struct DbAuditEntry {
        int64_t id;
        int64_t time_usec;      /* CLOCK_REALTIME */
        char *kind;             /* "decision", "policy", "service", ... */
        char *message;          /* human-readable summary */
        char *fields_json;      /* JSON object with the attested facts, may be NULL */
} DbAuditEntry;

/*
 * e->id is ignored; e->time_usec <= 0 means now. kind and message are
 * required, fields_json must be a JSON object if set. Ids only grow (never
 * reused after a trim), so a follower can resume with after_id.
 */
int db_audit_append(Db *db, const DbAuditEntry *e, int64_t *ret_id);
/*
 * Entries with id > after_id, oldest first, at most limit; or the newest limit
 * if after_id < 0 (still oldest first). limit is capped at DB_AUDIT_LIST_MAX.
 * The caller frees the array with db_audit_entries_free().
 */
int db_audit_list(Db *db, int64_t after_id, size_t limit, DbAuditEntry **ret, size_t *ret_n);
/* Keep at most max_rows newest entries. Returns the number of entries removed. */
int db_audit_trim(Db *db, size_t max_rows);
void db_audit_entries_free(DbAuditEntry *e, size_t n);

/*
 * Certificates issued by secd's CA (db-certs.c) and their revocations.
 * Serials are the certificate's serial bytes (big-endian, 1..20 bytes).
 */
#define DB_CERT_SERIAL_MAX 20
#define DB_CERT_NAME_MAX 1024
#define DB_CERT_PEM_MAX 65536
/* db_cert_list() and db_revocations_list() return at most this many rows. */
#define DB_CERT_LIST_MAX 100000

typedef struct DbCert {
        uint8_t serial[DB_CERT_SERIAL_MAX];
        size_t serial_len;
        uint8_t fingerprint[SHA256_DIGEST_LEN];  /* SHA-256 of the DER */
        char *name;                     /* identity: the URI SAN */
        bool has_uid;
        uint32_t uid;                   /* local holders only */
        bool has_sha256;
        uint8_t sha256[SHA256_DIGEST_LEN];       /* executable hash, local holders only */
        int64_t not_before_sec;
        int64_t not_after_sec;
        int64_t issued_usec;            /* <= 0 on insert: now */
        char *pem;
        /* Read side only (ignored by db_cert_insert()): */
        bool revoked;
        int64_t revoked_usec;
        int revocation_reason;          /* RFC 5280 CRLReason */
} DbCert;

typedef struct DbRevocation {
        uint8_t serial[DB_CERT_SERIAL_MAX];
        size_t serial_len;
        int64_t revoked_usec;
        int reason;
        int64_t not_after_sec;          /* of the revoked certificate */
} DbRevocation;

/* Record an issued certificate. -EEXIST for a serial or fingerprint already stored. */
int db_cert_insert(Db *db, const DbCert *cert);
/* One certificate by serial, with its revocation state. -ENOENT if never issued. */
int db_cert_get(Db *db, const uint8_t *serial, size_t serial_len, DbCert *ret);
/*
 * Certificates, oldest issued first, at most DB_CERT_LIST_MAX (the newest
 * ones if there are more). Free with db_certs_free().
 */
int db_cert_list(Db *db, DbCert **ret, size_t *ret_n);
/*
 * Remove the records of certificates that expired before before_sec (their
 * revocations go with them: an expired certificate is refused anyway), at
 * most limit, earliest expiry first. *ret_removed: how many. Returns 1 if
 * the limit was reached (more may be waiting), else 0, or negative errno.
 */
int db_cert_prune(Db *db, int64_t before_sec, size_t limit, size_t *ret_removed);
void db_cert_done(DbCert *c);
void db_certs_free(DbCert *c, size_t n);
/*
 * Revoke (reason: RFC 5280 CRLReason, 0..10 but not 7; revoked_usec <= 0:
 * now). -ENOENT if the serial was never issued, -EEXIST if already revoked.
 */
int db_cert_revoke(Db *db, const uint8_t *serial, size_t serial_len, int reason, int64_t revoked_usec);
/*
 * The revocations of certificates whose not_after_sec is later than
 * not_after_min_sec (an expired certificate is refused anyway), oldest first.
 * -E2BIG if there are more than DB_CERT_LIST_MAX: a revocation set is used
 * whole or not at all. Caller frees *ret (free()).
 */
int db_revocations_list(Db *db, int64_t not_after_min_sec, DbRevocation **ret, size_t *ret_n);

/*
 * Relay (db-relay.c). A mailbox is addressed by its 32-byte Ed25519 key and
 * owned by the certificate principal that registered it first ("uid:<n>"
 * for enrolled local clients, "cert:<name>" for remote certificates; the
 * executable hash is left out so an upgraded application keeps its
 * mailbox). Senders are principals too. Migration 3 keeps per-mailbox
 * counters (queued messages and bytes) up to date with triggers, so quota
 * checks and stats never scan the messages.
 *
 * These calls are made by secd's store writer inside its group-commit
 * transaction (each job in a savepoint); outside a transaction each runs in
 * its own. Nothing here syncs by itself beyond what COMMIT does.
 */
#define DB_MAILBOX_KEY_SIZE 32
#define DB_MSG_ID_SIZE 16
#define DB_PRINCIPAL_MAX 1024
#define DB_MESSAGE_MAX (16u << 20)      /* schema bound on one blob */
#define DB_FETCH_MAX 1000               /* messages per db_messages_fetch() */
#define DB_OTK_MAX 100

/*
 * Create the mailbox for key, owned by owner, or find it. *ret_created says
 * which. -EPERM if it exists and belongs to another owner (nothing changes).
 */
int db_mailbox_register(Db *db, const uint8_t key[DB_MAILBOX_KEY_SIZE], const char *owner,
                        int64_t now_usec, int64_t *ret_id, bool *ret_created);
/* How many mailboxes owner owns (through the owner index). */
int db_mailboxes_owned(Db *db, const char *owner, uint64_t *ret);
/* The mailbox id of key; -ENOENT if nobody registered it. ret_owner (malloc'd) may be NULL. */
int db_mailbox_lookup(Db *db, const uint8_t key[DB_MAILBOX_KEY_SIZE], int64_t *ret_id, char **ret_owner);

typedef struct DbQuota {
        uint64_t max_messages;          /* queued per mailbox; 0: no limit */
        uint64_t max_bytes;             /* queued blob bytes per mailbox; 0: no limit */
        uint64_t store_max_bytes;       /* queued blob bytes in all mailboxes together; 0: no limit */
} DbQuota;

/*
 * Store one message for mailbox_id. A message with the same (sender,
 * client_msg_id) already stored, for any mailbox, is not stored again:
 * *ret_duplicate = true and *ret_server_id is the stored one's id. This
 * holds after the message was acknowledged too: its dedup key (sender,
 * client_msg_id) -> (server id, expiry), stored with it, stays until the
 * message's own expiry, so a sender that resends after a lost reply never
 * makes the recipient see it twice. A dedup key already expired at
 * received_usec (not swept yet) no longer counts: it and its message, if
 * still queued, are deleted and the new one stored. Otherwise the quota is checked against the
 * mailbox's counters: -EDQUOT if this message would exceed it (nothing
 * stored), then store_max_bytes against the totals of all mailboxes:
 * -ENOSPC (nothing stored); -ENOENT if there is no such mailbox. size is 1..DB_MESSAGE_MAX,
 * sender 1..DB_PRINCIPAL_MAX bytes, expires_usec > received_usec >= 0
 * (-EINVAL otherwise). ret_server_id and ret_duplicate may be NULL.
 */
int db_message_insert(Db *db, int64_t mailbox_id, const char *sender,
                      const uint8_t client_msg_id[DB_MSG_ID_SIZE], const void *body, size_t size,
                      int64_t received_usec, int64_t expires_usec, const DbQuota *quota,
                      int64_t *ret_server_id, bool *ret_duplicate);

typedef struct DbMessage {
        int64_t id;                     /* server id */
        uint8_t client_msg_id[DB_MSG_ID_SIZE];
        int64_t received_usec;
        int64_t expires_usec;
        uint8_t *body;
        size_t size;
} DbMessage;

/*
 * Pending (not expired at now_usec) messages of a mailbox with an id above
 * after_id (a FETCH cursor, >= 0; 0: all), in id order through the
 * (mailbox_id, id) index: at most max_count (capped at DB_FETCH_MAX); the
 * first always, each further one while the bodies' total stays <=
 * max_bytes. None (*ret NULL, *ret_n 0) if nothing is pending above
 * after_id or max_count is 0. -EINVAL for a negative after_id. Free with
 * db_messages_free().
 */
int db_messages_fetch(Db *db, int64_t mailbox_id, int64_t after_id, int64_t now_usec, size_t max_count,
                      size_t max_bytes, DbMessage **ret, size_t *ret_n);
void db_messages_free(DbMessage *m, size_t n);
/*
 * Delete those of ids that are queued in mailbox_id (others are ignored),
 * in one DELETE each (their dedup keys stay until the messages' expiry);
 * *ret_deleted counts them.
 */
int db_messages_ack(Db *db, int64_t mailbox_id, const int64_t *ids, size_t n, size_t *ret_deleted);
/*
 * Delete at most limit dedup keys with expires_usec <= now_usec (soonest
 * expiry first) and those of their messages that are still queued;
 * *ret_deleted counts the messages. Returns 1 if limit keys were deleted
 * (call again: more may be waiting), 0 if everything expired is gone.
 */
int db_messages_expire(Db *db, int64_t now_usec, size_t limit, size_t *ret_deleted);

/* Queued messages and bytes of one mailbox (from the counters). */
int db_mailbox_usage(Db *db, int64_t mailbox_id, uint64_t *ret_messages, uint64_t *ret_bytes);

typedef struct DbRelayStats {
        uint64_t mailboxes;
        uint64_t messages;              /* queued */
        uint64_t bytes;                 /* queued blob bytes */
        int64_t oldest_usec;            /* received_usec of the oldest queued message; 0 if none */
} DbRelayStats;
int db_relay_stats(Db *db, DbRelayStats *ret);

/*
 * Key server (db-keys.c): X3DH public keys of a mailbox. Signatures are
 * verified by the caller before anything is stored.
 */
typedef struct DbPrekey {
        uint32_t id;
        uint8_t key[32];
} DbPrekey;

typedef struct DbKeyBundle {
        uint8_t identity_key[DB_MAILBOX_KEY_SIZE];      /* the mailbox key (Ed25519) */
        uint8_t identity_dh[32];
        uint8_t identity_dh_sig[64];
        uint32_t spk_id;
        uint8_t spk[32];
        uint8_t spk_sig[64];
        bool has_otk;
        DbPrekey otk;
} DbKeyBundle;

/*
 * Replace the mailbox's identity X25519 key, signed pre-key (only this one
 * is kept) and one-time pre-keys (the whole set, n_otks 0..DB_OTK_MAX, ids
 * distinct: -EINVAL otherwise), atomically. -ENOENT if there is no such
 * mailbox.
 */
int db_keys_publish(Db *db, int64_t mailbox_id, const uint8_t identity_dh[32], const uint8_t identity_dh_sig[64],
                    uint32_t spk_id, const uint8_t spk[32], const uint8_t spk_sig[64],
                    const DbPrekey *otks, size_t n_otks, int64_t now_usec);
/*
 * The mailbox's bundle, taking (deleting) its one-time pre-key with the
 * lowest id, if any is left (has_otk false otherwise). -ENOENT if the
 * mailbox published no keys. Runs in a savepoint of its own, so two
 * bundles never carry the same one-time pre-key.
 */
int db_keys_bundle(Db *db, int64_t mailbox_id, DbKeyBundle *ret);
/* One-time pre-keys left; 0 if none published. */
int db_keys_count(Db *db, int64_t mailbox_id, uint64_t *ret);

typedef struct DbKeysStats {
        uint64_t published;             /* mailboxes with an identity key and signed pre-key */
        uint64_t one_time_prekeys;      /* held, all mailboxes */
        uint64_t exhausted;             /* published mailboxes without one-time pre-keys */
} DbKeysStats;
int db_keys_stats(Db *db, DbKeysStats *ret);
