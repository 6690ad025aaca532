/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Certificates issued by the CA and their revocations. Not on a hot path
 * (revocation checks use the CA's in-memory set), so the statements are
 * prepared per call rather than cached.
 */
#include "db-internal.h"

#define CERT_COLUMNS                                                                            \
        "c.serial, c.fingerprint, c.name, c.uid, c.sha256, c.not_before_sec, c.not_after_sec, " \
        "c.issued_usec, c.pem, r.revoked_usec, r.reason"

static int db_prepare(Db *db, const char *sql, sqlite3_stmt **ret) {
        int rc = sqlite3_prepare_v2(db->sqlite, sql, -1, ret, NULL);

        if (rc != SQLITE_OK)
                return db_error(db, rc);
        return 0;
}

static bool serial_ok(const uint8_t *serial, size_t len) {
        return serial && len >= 1 && len <= DB_CERT_SERIAL_MAX;
}

int db_cert_insert(Db *db, const DbCert *c) {
        _cleanup_db_txn_ DbTxn txn = {};
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        int r, rc;

        if (!db || !c)
                return -EINVAL;
        if (!serial_ok(c->serial, c->serial_len) || isempty(c->name) || isempty(c->pem))
                return db_errorf(db, -EINVAL, "certificate without serial, name or PEM");

        r = db_txn_begin(db, &txn);
        if (r < 0)
                return r;
        r = db_prepare(db,
                       "INSERT INTO certificates(serial, fingerprint, name, uid, sha256, not_before_sec, "
                       "not_after_sec, issued_usec, pem) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       &stmt);
        if (r < 0)
                return r;
        rc = sqlite3_bind_blob(stmt, 1, c->serial, (int) c->serial_len, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_blob(stmt, 2, c->fingerprint, sizeof c->fingerprint, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(stmt, 3, c->name, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = c->has_uid ? sqlite3_bind_int64(stmt, 4, c->uid) : sqlite3_bind_null(stmt, 4);
        if (rc == SQLITE_OK)
                rc = c->has_sha256 ? sqlite3_bind_blob(stmt, 5, c->sha256, sizeof c->sha256, SQLITE_STATIC)
                                   : sqlite3_bind_null(stmt, 5);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(stmt, 6, c->not_before_sec);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(stmt, 7, c->not_after_sec);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(stmt, 8, c->issued_usec > 0 ? c->issued_usec : db_now_usec());
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(stmt, 9, c->pem, -1, SQLITE_STATIC);
        if (rc != SQLITE_OK)
                return db_error(db, rc);
        rc = sqlite3_step(stmt);
        if (rc != SQLITE_DONE)
                return db_error(db, rc);
        return db_txn_commit(&txn);
}

void db_cert_done(DbCert *c) {
        if (!c)
                return;
        free(c->name);
        free(c->pem);
        *c = (DbCert) {};
}

void db_certs_free(DbCert *c, size_t n) {
        if (!c)
                return;
        for (size_t i = 0; i < n; i++)
                db_cert_done(c + i);
        free(c);
}

static int blob_copy(sqlite3_stmt *stmt, int col, uint8_t *out, size_t min, size_t max, size_t *ret_len) {
        const void *b = sqlite3_column_blob(stmt, col);
        int n = sqlite3_column_bytes(stmt, col);

        if (!b || n < 0 || (size_t) n < min || (size_t) n > max)
                return -EBADMSG;
        memcpy(out, b, (size_t) n);
        if (ret_len)
                *ret_len = (size_t) n;
        return 0;
}

static int cert_from_row(Db *db, sqlite3_stmt *stmt, DbCert *ret) {
        _cleanup_(db_cert_done) DbCert c = {};
        int r;

        r = blob_copy(stmt, 0, c.serial, 1, DB_CERT_SERIAL_MAX, &c.serial_len);
        if (r >= 0)
                r = blob_copy(stmt, 1, c.fingerprint, SHA256_DIGEST_LEN, SHA256_DIGEST_LEN, NULL);
        if (r >= 0)
                r = db_column_strdup(stmt, 2, DB_CERT_NAME_MAX, &c.name);
        if (r >= 0 && sqlite3_column_type(stmt, 3) != SQLITE_NULL) {
                c.has_uid = true;
                c.uid = (uint32_t) sqlite3_column_int64(stmt, 3);
        }
        if (r >= 0 && sqlite3_column_type(stmt, 4) != SQLITE_NULL) {
                c.has_sha256 = true;
                r = blob_copy(stmt, 4, c.sha256, SHA256_DIGEST_LEN, SHA256_DIGEST_LEN, NULL);
        }
        c.not_before_sec = sqlite3_column_int64(stmt, 5);
        c.not_after_sec = sqlite3_column_int64(stmt, 6);
        c.issued_usec = sqlite3_column_int64(stmt, 7);
        if (r >= 0)
                r = db_column_strdup(stmt, 8, DB_CERT_PEM_MAX, &c.pem);
        if (r >= 0 && sqlite3_column_type(stmt, 9) != SQLITE_NULL) {
                c.revoked = true;
                c.revoked_usec = sqlite3_column_int64(stmt, 9);
                c.revocation_reason = sqlite3_column_int(stmt, 10);
        }
        if (r < 0 || !c.name || !c.pem)
                return db_errorf(db, r < 0 ? r : -EBADMSG, "certificate row: cannot read it");
        *ret = c;
        c = (DbCert) {};
        return 0;
}

int db_cert_get(Db *db, const uint8_t *serial, size_t serial_len, DbCert *ret) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        int r, rc;

        if (!db || !ret || !serial_ok(serial, serial_len))
                return -EINVAL;
        r = db_prepare(db,
                       "SELECT " CERT_COLUMNS " FROM certificates c "
                       "LEFT JOIN revocations r ON r.serial = c.serial WHERE c.serial = ?",
                       &stmt);
        if (r < 0)
                return r;
        rc = sqlite3_bind_blob(stmt, 1, serial, (int) serial_len, SQLITE_STATIC);
        if (rc != SQLITE_OK)
                return db_error(db, rc);
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_DONE)
                return db_errorf(db, -ENOENT, "no such certificate");
        if (rc != SQLITE_ROW)
                return db_error(db, rc);
        return cert_from_row(db, stmt, ret);
}

int db_cert_list(Db *db, DbCert **ret, size_t *ret_n) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        DbCert *certs = NULL;
        size_t n = 0, allocated = 0;
        int r, rc;

        if (!db || !ret || !ret_n)
                return -EINVAL;
        r = db_prepare(db,
                       "SELECT * FROM (SELECT " CERT_COLUMNS ", c.rowid AS id FROM certificates c "
                       "LEFT JOIN revocations r ON r.serial = c.serial ORDER BY c.issued_usec DESC, c.rowid DESC "
                       "LIMIT ?) ORDER BY issued_usec, id",
                       &stmt);
        if (r < 0)
                return r;
        rc = sqlite3_bind_int64(stmt, 1, DB_CERT_LIST_MAX);
        if (rc != SQLITE_OK)
                return db_error(db, rc);

        for (;;) {
                rc = sqlite3_step(stmt);
                if (rc == SQLITE_DONE)
                        break;
                if (rc != SQLITE_ROW) {
                        r = db_error(db, rc);
                        goto fail;
                }
                if (n >= DB_CERT_LIST_MAX) {
                        r = db_errorf(db, -E2BIG, "too many certificates");
                        goto fail;
                }
                if (n == allocated) {
                        size_t a = MAX((size_t) 16, allocated * 2), bytes;
                        DbCert *p;

                        if (!size_mul_ok(a, sizeof *certs, &bytes) || !(p = realloc(certs, bytes))) {
                                r = db_errorf(db, -ENOMEM, "out of memory");
                                goto fail;
                        }
                        certs = p;
                        allocated = a;
                }
                r = cert_from_row(db, stmt, certs + n);
                if (r < 0)
                        goto fail;
                n++;
        }
        if (n == 0) {
                free(certs);
                certs = NULL;
        }
        *ret = certs;
        *ret_n = n;
        return 0;

fail:
        db_certs_free(certs, n);
        return r;
}

int db_cert_prune(Db *db, int64_t before_sec, size_t limit, size_t *ret_removed) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        int changes, r, rc;

        if (!db || !ret_removed || limit == 0 || limit > INT64_MAX)
                return -EINVAL;
        /* Through certificates_not_after; the revocations follow by ON DELETE CASCADE. */
        r = db_prepare(db,
                       "DELETE FROM certificates WHERE serial IN (SELECT serial FROM certificates "
                       "WHERE not_after_sec < ?1 ORDER BY not_after_sec LIMIT ?2)",
                       &stmt);
        if (r < 0)
                return r;
        rc = sqlite3_bind_int64(stmt, 1, before_sec);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(stmt, 2, (sqlite3_int64) limit);
        if (rc != SQLITE_OK)
                return db_error(db, rc);
        rc = sqlite3_step(stmt);
        if (rc != SQLITE_DONE)
                return db_error(db, rc);
        changes = sqlite3_changes(db->sqlite);
        *ret_removed = (size_t) MAX(changes, 0);
        return (size_t) changes >= limit ? 1 : 0;
}

int db_cert_revoke(Db *db, const uint8_t *serial, size_t serial_len, int reason, int64_t revoked_usec) {
        _cleanup_db_txn_ DbTxn txn = {};
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *check = NULL, *stmt = NULL;
        int r, rc;

        if (!db || !serial_ok(serial, serial_len) || reason < 0 || reason > 10 || reason == 7)
                return -EINVAL;

        r = db_txn_begin(db, &txn);
        if (r < 0)
                return r;
        r = db_prepare(db, "SELECT 1 FROM certificates WHERE serial = ?", &check);
        if (r < 0)
                return r;
        rc = sqlite3_bind_blob(check, 1, serial, (int) serial_len, SQLITE_STATIC);
        if (rc != SQLITE_OK)
                return db_error(db, rc);
        rc = sqlite3_step(check);
        if (rc == SQLITE_DONE)
                return db_errorf(db, -ENOENT, "no such certificate");
        if (rc != SQLITE_ROW)
                return db_error(db, rc);

        r = db_prepare(db, "INSERT INTO revocations(serial, revoked_usec, reason) VALUES (?, ?, ?)", &stmt);
        if (r < 0)
                return r;
        rc = sqlite3_bind_blob(stmt, 1, serial, (int) serial_len, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(stmt, 2, revoked_usec > 0 ? revoked_usec : db_now_usec());
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int(stmt, 3, reason);
        if (rc != SQLITE_OK)
                return db_error(db, rc);
        rc = sqlite3_step(stmt);
        if (rc != SQLITE_DONE)
                return db_error(db, rc);
        return db_txn_commit(&txn);
}

int db_revocations_list(Db *db, int64_t not_after_min_sec, DbRevocation **ret, size_t *ret_n) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        DbRevocation *list = NULL;
        size_t n = 0, allocated = 0;
        int r, rc;

        if (!db || !ret || !ret_n)
                return -EINVAL;
        r = db_prepare(db,
                       "SELECT r.serial, r.revoked_usec, r.reason, c.not_after_sec FROM revocations r "
                       "JOIN certificates c ON c.serial = r.serial WHERE c.not_after_sec > ? "
                       "ORDER BY r.revoked_usec, r.rowid LIMIT ?",
                       &stmt);
        if (r < 0)
                return r;
        rc = sqlite3_bind_int64(stmt, 1, not_after_min_sec);
        if (rc == SQLITE_OK)
                /* One past the cap, so that more than it is an error, never a silent cut. */
                rc = sqlite3_bind_int64(stmt, 2, (int64_t) DB_CERT_LIST_MAX + 1);
        if (rc != SQLITE_OK)
                return db_error(db, rc);

        for (;;) {
                rc = sqlite3_step(stmt);
                if (rc == SQLITE_DONE)
                        break;
                if (rc != SQLITE_ROW) {
                        r = db_error(db, rc);
                        goto fail;
                }
                if (n >= DB_CERT_LIST_MAX) {
                        /* A revocation set that does not fit must not be used partly: fail closed. */
                        r = db_errorf(db, -E2BIG, "more than %d revocations of unexpired certificates",
                                      DB_CERT_LIST_MAX);
                        goto fail;
                }
                if (n == allocated) {
                        size_t a = MAX((size_t) 16, allocated * 2), bytes;
                        DbRevocation *p;

                        if (!size_mul_ok(a, sizeof *list, &bytes) || !(p = realloc(list, bytes))) {
                                r = db_errorf(db, -ENOMEM, "out of memory");
                                goto fail;
                        }
                        list = p;
                        allocated = a;
                }
                r = blob_copy(stmt, 0, list[n].serial, 1, DB_CERT_SERIAL_MAX, &list[n].serial_len);
                if (r < 0) {
                        r = db_errorf(db, r, "revocation row: bad serial");
                        goto fail;
                }
                list[n].revoked_usec = sqlite3_column_int64(stmt, 1);
                list[n].reason = sqlite3_column_int(stmt, 2);
                list[n].not_after_sec = sqlite3_column_int64(stmt, 3);
                n++;
        }
        if (n == 0) {
                free(list);
                list = NULL;
        }
        *ret = list;
        *ret_n = n;
        return 0;

fail:
        free(list);
        return r;
}
