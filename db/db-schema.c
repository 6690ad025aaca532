/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The schema, as ordered migrations. A step that has shipped is never
 * edited: later changes are new steps appended below (and
 * DB_SCHEMA_VERSION_LATEST bumped with them). Bounds are literal numbers
 * here on purpose, so changing a C constant cannot silently change what an
 * old step creates; the asserts tie the two together.
 */
#include "db-internal.h"

_Static_assert(POLICY_NAME_MAX == 256, "migration 1 bounds user/group names by 256 bytes");
_Static_assert(POLICY_PATH_MAX == 4096, "migration 1 bounds paths to fewer than 4096 bytes");
_Static_assert(POLICY_COMMENT_MAX == 1024, "migration 1 bounds comments by 1024 bytes");
_Static_assert(SHA256_DIGEST_LEN == 32, "migration 1 stores 32-byte digests");
_Static_assert(DB_SETTING_KEY_MAX == 128 && DB_SETTING_VALUE_MAX == 4096, "migration 1 settings bounds");
_Static_assert(DB_AUDIT_KIND_MAX == 64 && DB_AUDIT_MESSAGE_MAX == 4096 && DB_AUDIT_FIELDS_MAX == 65536,
               "migration 1 audit bounds");
_Static_assert(DB_APPLICATION_ID == 1936024420, "migration 1 writes application_id 1936024420");

/*
 * Conventions: times are CLOCK_REALTIME microseconds in *_usec columns
 * (certificate validity in whole seconds, *_sec, as X.509 has it); text is
 * bounded in bytes (length(CAST(x AS BLOB))), since length() of TEXT counts
 * characters; keys and digests are BLOBs of exact size.
 */
static const char migration_1_sql[] =
        "PRAGMA application_id = 1936024420;\n"

        /* Small key/value state. The policy.* keys belong to db-policy.c. */
        "CREATE TABLE settings (\n"
        "  key TEXT PRIMARY KEY NOT NULL\n"
        "    CHECK (length(CAST(key AS BLOB)) BETWEEN 1 AND 128),\n"
        "  value TEXT NOT NULL\n"
        "    CHECK (length(CAST(value AS BLOB)) <= 4096),\n"
        "  CHECK (key <> 'policy.generation' OR\n"
        "         (value <> '' AND value NOT GLOB '*[^0-9]*' AND length(value) <= 19)),\n"
        "  CHECK (key <> 'policy.mode' OR value IN ('enforce', 'permissive'))\n"
        ") STRICT;\n"
        "INSERT INTO settings(key, value) VALUES ('policy.generation', '0'), ('policy.mode', 'enforce');\n"

        /* Policy rules: each selector a nullable column; at least one is set. */
        "CREATE TABLE rules (\n"
        "  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "  action TEXT NOT NULL CHECK (action IN ('allow', 'deny')),\n"
        "  uid INTEGER CHECK (uid BETWEEN 0 AND 4294967294),\n"
        "  user_name TEXT CHECK (user_name IS NULL OR\n"
        "                        (uid IS NOT NULL AND length(CAST(user_name AS BLOB)) BETWEEN 1 AND 256)),\n"
        "  gid INTEGER CHECK (gid BETWEEN 0 AND 4294967294),\n"
        "  group_name TEXT CHECK (group_name IS NULL OR\n"
        "                         (gid IS NOT NULL AND length(CAST(group_name AS BLOB)) BETWEEN 1 AND 256)),\n"
        "  path TEXT CHECK (path IS NULL OR (substr(path, 1, 1) = '/' AND length(CAST(path AS BLOB)) < 4096)),\n"
        "  sha256 BLOB CHECK (length(sha256) = 32),\n"
        "  endpoint TEXT CHECK (endpoint IN ('data', 'tcp', 'enroll', 'control')),\n"
        "  comment TEXT CHECK (length(CAST(comment AS BLOB)) <= 1024),\n"
        "  created_usec INTEGER NOT NULL CHECK (created_usec >= 0),\n"
        "  CHECK (uid IS NOT NULL OR gid IS NOT NULL OR path IS NOT NULL OR\n"
        "         sha256 IS NOT NULL OR endpoint IS NOT NULL)\n"
        ") STRICT;\n"

        /* Certificates issued by our CA (enrollment and secctl cert issue). */
        "CREATE TABLE certificates (\n"
        "  serial BLOB PRIMARY KEY NOT NULL CHECK (length(serial) BETWEEN 1 AND 20),\n"
        "  fingerprint BLOB NOT NULL UNIQUE CHECK (length(fingerprint) = 32),\n"     /* SHA-256 of the DER */
        "  name TEXT NOT NULL CHECK (length(CAST(name AS BLOB)) BETWEEN 1 AND 1024),\n" /* identity (URI SAN) */
        "  uid INTEGER CHECK (uid BETWEEN 0 AND 4294967294),\n"   /* NULL for remote holders */
        "  sha256 BLOB CHECK (length(sha256) = 32),\n"             /* executable hash, if local */
        "  not_before_sec INTEGER NOT NULL,\n"
        "  not_after_sec INTEGER NOT NULL,\n"
        "  issued_usec INTEGER NOT NULL CHECK (issued_usec >= 0),\n"
        "  pem TEXT NOT NULL CHECK (length(CAST(pem AS BLOB)) BETWEEN 1 AND 65536 AND\n"
        "                           pem GLOB '-----BEGIN CERTIFICATE-----*'),\n"
        "  CHECK (not_after_sec > not_before_sec)\n"
        ") STRICT;\n"
        "CREATE INDEX certificates_not_after ON certificates(not_after_sec);\n"
        "CREATE INDEX certificates_uid ON certificates(uid) WHERE uid IS NOT NULL;\n"

        "CREATE TABLE revocations (\n"
        "  serial BLOB PRIMARY KEY NOT NULL REFERENCES certificates(serial) ON DELETE CASCADE,\n"
        "  revoked_usec INTEGER NOT NULL CHECK (revoked_usec >= 0),\n"
        "  reason INTEGER NOT NULL DEFAULT 0 CHECK (reason BETWEEN 0 AND 10 AND reason <> 7),\n" /* RFC 5280 CRLReason */
        "  comment TEXT CHECK (length(CAST(comment AS BLOB)) <= 1024)\n"
        ") STRICT;\n"

        /* Relay: a mailbox is addressed by an Ed25519 identity public key. */
        "CREATE TABLE mailboxes (\n"
        "  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "  identity_key BLOB NOT NULL UNIQUE CHECK (length(identity_key) = 32),\n"
        "  owner TEXT NOT NULL CHECK (length(CAST(owner AS BLOB)) BETWEEN 1 AND 1024),\n" /* certificate identity */
        "  created_usec INTEGER NOT NULL CHECK (created_usec >= 0)\n"
        ") STRICT;\n"

        "CREATE TABLE messages (\n"
        "  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"                 /* server id: delivery order */
        "  mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,\n"
        "  sender TEXT NOT NULL CHECK (length(CAST(sender AS BLOB)) BETWEEN 1 AND 1024),\n"
        "  client_msg_id BLOB NOT NULL CHECK (length(client_msg_id) = 16),\n"
        "  received_usec INTEGER NOT NULL CHECK (received_usec >= 0),\n"
        "  expires_usec INTEGER NOT NULL,\n"
        "  body BLOB NOT NULL CHECK (length(body) BETWEEN 1 AND 16777216),\n"
        "  UNIQUE (sender, client_msg_id),\n"
        "  CHECK (expires_usec > received_usec)\n"
        ") STRICT;\n"
        "CREATE INDEX messages_mailbox ON messages(mailbox_id, id);\n"
        "CREATE INDEX messages_expires ON messages(expires_usec);\n"

        /* Key server (X3DH). Owned by a mailbox: the Ed25519 key signs the X25519 keys. */
        "CREATE TABLE identity_keys (\n"
        "  mailbox_id INTEGER PRIMARY KEY NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,\n"
        "  dh_key BLOB NOT NULL CHECK (length(dh_key) = 32),\n"      /* X25519 */
        "  signature BLOB NOT NULL CHECK (length(signature) = 64),\n"
        "  published_usec INTEGER NOT NULL CHECK (published_usec >= 0)\n"
        ") STRICT;\n"

        "CREATE TABLE signed_prekeys (\n"
        "  mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,\n"
        "  key_id INTEGER NOT NULL CHECK (key_id BETWEEN 0 AND 4294967295),\n"
        "  public_key BLOB NOT NULL CHECK (length(public_key) = 32),\n"
        "  signature BLOB NOT NULL CHECK (length(signature) = 64),\n"
        "  published_usec INTEGER NOT NULL CHECK (published_usec >= 0),\n"
        "  PRIMARY KEY (mailbox_id, key_id)\n"
        ") STRICT;\n"

        "CREATE TABLE one_time_prekeys (\n"
        "  mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,\n"
        "  key_id INTEGER NOT NULL CHECK (key_id BETWEEN 0 AND 4294967295),\n"
        "  public_key BLOB NOT NULL CHECK (length(public_key) = 32),\n"
        "  published_usec INTEGER NOT NULL CHECK (published_usec >= 0),\n"
        "  PRIMARY KEY (mailbox_id, key_id)\n"
        ") STRICT;\n"

        /* Audit trail; AUTOINCREMENT so ids are never reused after a trim (followers resume by id). */
        "CREATE TABLE audit (\n"
        "  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "  time_usec INTEGER NOT NULL CHECK (time_usec >= 0),\n"
        "  kind TEXT NOT NULL CHECK (length(CAST(kind AS BLOB)) BETWEEN 1 AND 64),\n"
        "  message TEXT NOT NULL CHECK (length(CAST(message AS BLOB)) <= 4096),\n"
        /* JSON shape is checked by the insert: json_valid() is not usable in a CHECK
         * under trusted_schema=OFF (SQLite 3.40 does not mark it innocuous). */
        "  fields_json TEXT CHECK (length(CAST(fields_json AS BLOB)) <= 65536)\n"
        ") STRICT;\n";

_Static_assert(POLICY_CERT_NAME_MAX == 64, "migration 2 bounds certificate names by 64 bytes");

/*
 * Rules gain a "cert" selector: the name of a remote client certificate
 * (secd://remote/<name>, [A-Za-z0-9._-]{1,64}). SQLite cannot change a
 * table's CHECK constraints, and "at least one selector" must include the
 * new column, so the table is rebuilt (the standard 12-step procedure, all
 * inside the migration's transaction): same ids, and the AUTOINCREMENT
 * counter carried over so ids of deleted rules are never handed out again.
 */
static const char migration_2_sql[] =
        "CREATE TABLE rules_new (\n"
        "  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "  action TEXT NOT NULL CHECK (action IN ('allow', 'deny')),\n"
        "  uid INTEGER CHECK (uid BETWEEN 0 AND 4294967294),\n"
        "  user_name TEXT CHECK (user_name IS NULL OR\n"
        "                        (uid IS NOT NULL AND length(CAST(user_name AS BLOB)) BETWEEN 1 AND 256)),\n"
        "  gid INTEGER CHECK (gid BETWEEN 0 AND 4294967294),\n"
        "  group_name TEXT CHECK (group_name IS NULL OR\n"
        "                         (gid IS NOT NULL AND length(CAST(group_name AS BLOB)) BETWEEN 1 AND 256)),\n"
        "  path TEXT CHECK (path IS NULL OR (substr(path, 1, 1) = '/' AND length(CAST(path AS BLOB)) < 4096)),\n"
        "  sha256 BLOB CHECK (length(sha256) = 32),\n"
        "  endpoint TEXT CHECK (endpoint IN ('data', 'tcp', 'enroll', 'control')),\n"
        "  cert TEXT CHECK (cert IS NULL OR\n"
        "                   (length(CAST(cert AS BLOB)) BETWEEN 1 AND 64 AND cert NOT GLOB '*[^A-Za-z0-9._-]*')),\n"
        "  comment TEXT CHECK (length(CAST(comment AS BLOB)) <= 1024),\n"
        "  created_usec INTEGER NOT NULL CHECK (created_usec >= 0),\n"
        "  CHECK (uid IS NOT NULL OR gid IS NOT NULL OR path IS NOT NULL OR\n"
        "         sha256 IS NOT NULL OR endpoint IS NOT NULL OR cert IS NOT NULL)\n"
        ") STRICT;\n"
        "INSERT INTO rules_new(id, action, uid, user_name, gid, group_name, path, sha256, endpoint,\n"
        "                      comment, created_usec)\n"
        "  SELECT id, action, uid, user_name, gid, group_name, path, sha256, endpoint, comment, created_usec\n"
        "  FROM rules ORDER BY id;\n"
        /* Keep the high-water mark, not just max(id): deleted ids stay retired. */
        "DELETE FROM sqlite_sequence WHERE name = 'rules_new';\n"
        "INSERT INTO sqlite_sequence(name, seq) SELECT 'rules_new', seq FROM sqlite_sequence WHERE name = 'rules';\n"
        "DROP TABLE rules;\n"
        "ALTER TABLE rules_new RENAME TO rules;\n";

_Static_assert(DB_MAILBOX_KEY_SIZE == 32 && DB_MSG_ID_SIZE == 16, "migration 3 key and message id sizes");
_Static_assert(DB_PRINCIPAL_MAX == 1024, "migration 3 bounds senders by 1024 bytes");

/*
 * Relay bookkeeping. Each mailbox carries the count and blob bytes of its
 * queued messages, kept by triggers on every way a message comes and goes
 * (insert, ACK, TTL sweep, cascade from its mailbox), so quota checks and
 * stats read one row instead of scanning messages. Every stored message
 * records its (sender, client_msg_id) -> server id in dedup when it is
 * inserted (the same trigger), and that row stays until the message's own
 * expiry, acknowledged or not: a resend after a lost reply is recognised,
 * not stored again, and an ACK is one DELETE. dedup's expiry index is also
 * the TTL sweep's way to the expired messages, so messages keeps a single
 * secondary index (mailbox_id, id) for FETCH: the table is rebuilt without
 * its UNIQUE (sender, client_msg_id) and expiry indexes, its AUTOINCREMENT
 * high-water mark carried over (server ids are never handed out twice).
 * Not shipped before this version: rewritten in place rather than followed
 * by a migration 4.
 */
static const char migration_3_sql[] =
        "CREATE TABLE messages_new (\n"
        "  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "  mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,\n"
        "  sender TEXT NOT NULL CHECK (length(CAST(sender AS BLOB)) BETWEEN 1 AND 1024),\n"
        "  client_msg_id BLOB NOT NULL CHECK (length(client_msg_id) = 16),\n"
        "  received_usec INTEGER NOT NULL CHECK (received_usec >= 0),\n"
        "  expires_usec INTEGER NOT NULL,\n"
        "  body BLOB NOT NULL CHECK (length(body) BETWEEN 1 AND 16777216),\n"
        "  CHECK (expires_usec > received_usec)\n"
        ") STRICT;\n"
        "INSERT INTO messages_new(id, mailbox_id, sender, client_msg_id, received_usec, expires_usec, body)\n"
        "  SELECT id, mailbox_id, sender, client_msg_id, received_usec, expires_usec, body\n"
        "  FROM messages ORDER BY id;\n"
        "DELETE FROM sqlite_sequence WHERE name = 'messages_new';\n"
        "INSERT INTO sqlite_sequence(name, seq)\n"
        "  SELECT 'messages_new', seq FROM sqlite_sequence WHERE name = 'messages';\n"
        "DROP TABLE messages;\n"
        "ALTER TABLE messages_new RENAME TO messages;\n"
        "CREATE INDEX messages_mailbox ON messages(mailbox_id, id);\n"

        "CREATE TABLE dedup (\n"
        "  sender TEXT NOT NULL CHECK (length(CAST(sender AS BLOB)) BETWEEN 1 AND 1024),\n"
        "  client_msg_id BLOB NOT NULL CHECK (length(client_msg_id) = 16),\n"
        "  server_id INTEGER NOT NULL CHECK (server_id > 0),\n"      /* the message's id, queued or not */
        "  expires_usec INTEGER NOT NULL,\n"
        "  PRIMARY KEY (sender, client_msg_id)\n"
        ") STRICT, WITHOUT ROWID;\n"
        /* Holds (expires_usec, sender, client_msg_id): the sweep's order. */
        "CREATE INDEX dedup_expires ON dedup(expires_usec);\n"
        /* Version 2 had UNIQUE (sender, client_msg_id) on messages: no conflict here. */
        "INSERT INTO dedup(sender, client_msg_id, server_id, expires_usec)\n"
        "  SELECT sender, client_msg_id, id, expires_usec FROM messages;\n"

        /* secd caps the mailboxes one principal owns (relay_mailboxes_per_owner): counted through this. */
        "CREATE INDEX mailboxes_owner ON mailboxes(owner);\n"
        "ALTER TABLE mailboxes ADD COLUMN queued_messages INTEGER NOT NULL DEFAULT 0\n"
        "  CHECK (queued_messages >= 0);\n"
        "ALTER TABLE mailboxes ADD COLUMN queued_bytes INTEGER NOT NULL DEFAULT 0\n"
        "  CHECK (queued_bytes >= 0);\n"
        /* A store with messages queued at version 2 starts from a recount. */
        "UPDATE mailboxes SET\n"
        "  queued_messages = (SELECT count(*) FROM messages m WHERE m.mailbox_id = mailboxes.id),\n"
        "  queued_bytes = (SELECT coalesce(sum(length(m.body)), 0) FROM messages m\n"
        "                  WHERE m.mailbox_id = mailboxes.id);\n"

        /*
         * The dedup row is part of the INSERT statement: a message can never
         * be stored without one (the sweep finds messages through it), and a
         * (sender, client_msg_id) that has one fails the whole INSERT.
         */
        "CREATE TRIGGER messages_queued_insert AFTER INSERT ON messages BEGIN\n"
        "  UPDATE mailboxes SET queued_messages = queued_messages + 1,\n"
        "                       queued_bytes = queued_bytes + length(NEW.body)\n"
        "  WHERE id = NEW.mailbox_id;\n"
        "  INSERT INTO dedup(sender, client_msg_id, server_id, expires_usec)\n"
        "  VALUES (NEW.sender, NEW.client_msg_id, NEW.id, NEW.expires_usec);\n"
        "END;\n"
        /* Fires for cascaded deletes too (foreign key actions run delete triggers). */
        "CREATE TRIGGER messages_queued_delete AFTER DELETE ON messages BEGIN\n"
        "  UPDATE mailboxes SET queued_messages = queued_messages - 1,\n"
        "                       queued_bytes = queued_bytes - length(OLD.body)\n"
        "  WHERE id = OLD.mailbox_id;\n"
        "END;\n"
        /* Nothing updates a queued message today; if something ever does, counters and dedup follow. */
        "CREATE TRIGGER messages_queued_update AFTER UPDATE OF mailbox_id, body ON messages BEGIN\n"
        "  UPDATE mailboxes SET queued_messages = queued_messages - 1,\n"
        "                       queued_bytes = queued_bytes - length(OLD.body)\n"
        "  WHERE id = OLD.mailbox_id;\n"
        "  UPDATE mailboxes SET queued_messages = queued_messages + 1,\n"
        "                       queued_bytes = queued_bytes + length(NEW.body)\n"
        "  WHERE id = NEW.mailbox_id;\n"
        "END;\n"
        "CREATE TRIGGER messages_dedup_update AFTER UPDATE OF id, sender, client_msg_id, expires_usec ON messages\n"
        "BEGIN\n"
        "  UPDATE dedup SET sender = NEW.sender, client_msg_id = NEW.client_msg_id, server_id = NEW.id,\n"
        "                   expires_usec = NEW.expires_usec\n"
        "  WHERE sender = OLD.sender AND client_msg_id = OLD.client_msg_id;\n"
        "END;\n";

/*
 * The relay's totals over all mailboxes, kept by triggers beside the
 * per-mailbox counters of migration 3 (every way a message comes and goes,
 * cascades included): the store-wide cap (relay_store_max_bytes) reads one
 * row instead of summing every mailbox on each SEND.
 */
static const char migration_4_sql[] =
        "CREATE TABLE relay_totals (\n"
        "  id INTEGER PRIMARY KEY CHECK (id = 1),\n"
        "  queued_messages INTEGER NOT NULL CHECK (queued_messages >= 0),\n"
        "  queued_bytes INTEGER NOT NULL CHECK (queued_bytes >= 0)\n"
        ") STRICT;\n"
        "INSERT INTO relay_totals(id, queued_messages, queued_bytes)\n"
        "  SELECT 1, coalesce(sum(queued_messages), 0), coalesce(sum(queued_bytes), 0) FROM mailboxes;\n"
        "CREATE TRIGGER messages_totals_insert AFTER INSERT ON messages BEGIN\n"
        "  UPDATE relay_totals SET queued_messages = queued_messages + 1,\n"
        "                          queued_bytes = queued_bytes + length(NEW.body) WHERE id = 1;\n"
        "END;\n"
        "CREATE TRIGGER messages_totals_delete AFTER DELETE ON messages BEGIN\n"
        "  UPDATE relay_totals SET queued_messages = queued_messages - 1,\n"
        "                          queued_bytes = queued_bytes - length(OLD.body) WHERE id = 1;\n"
        "END;\n"
        "CREATE TRIGGER messages_totals_update AFTER UPDATE OF body ON messages BEGIN\n"
        "  UPDATE relay_totals SET queued_bytes = queued_bytes - length(OLD.body) + length(NEW.body)\n"
        "  WHERE id = 1;\n"
        "END;\n";

const DbMigration db_migrations[] = {
        { 1, "initial schema", migration_1_sql },
        { 2, "rules: cert selector", migration_2_sql },
        { 3, "relay: queue counters, dedup keys", migration_3_sql },
        { 4, "relay: totals over all mailboxes", migration_4_sql },
};
const size_t db_n_migrations = ELEMENTSOF(db_migrations);

_Static_assert(ELEMENTSOF(db_migrations) == DB_SCHEMA_VERSION_LATEST,
               "DB_SCHEMA_VERSION_LATEST must equal the number of migrations");
