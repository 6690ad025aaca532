/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* db/db-certs.c: issued certificates and revocations in the store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "db.h"

static DbCert cert_make(uint8_t tag, bool local) {
        static char pem[] = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        DbCert c = {
                .serial_len = 16,
                .name = (char *) (local ? "secd://local/uid/1000/sha256/00" : "secd://remote/host"),
                .has_uid = local,
                .uid = 1000,
                .has_sha256 = local,
                .not_before_sec = 100,
                .not_after_sec = 200,
                .issued_usec = 1000 + tag,
                .pem = pem,
        };

        memset(c.serial, tag, c.serial_len);
        memset(c.fingerprint, tag, sizeof c.fingerprint);
        memset(c.sha256, 0xab, sizeof c.sha256);
        return c;
}

static void test_insert_get_list(void **state) {
        Db *db = NULL;
        DbCert a = cert_make(1, true), b = cert_make(2, false), got = {}, *list = NULL;
        size_t n = 0;

        (void) state;
        assert_int_equal(db_open(":memory:", DB_OPEN_CREATE, &db), 0);
        assert_int_equal(db_cert_list(db, &list, &n), 0);
        assert_int_equal(n, 0);
        assert_null(list);

        assert_int_equal(db_cert_insert(db, &a), 0);
        assert_int_equal(db_cert_insert(db, &b), 0);
        assert_int_equal(db_cert_insert(db, &a), -EEXIST);
        {
                DbCert c = cert_make(3, true);
                memset(c.fingerprint, 1, sizeof c.fingerprint);    /* same DER as a */
                assert_int_equal(db_cert_insert(db, &c), -EEXIST);
                c = cert_make(4, true);
                c.not_after_sec = c.not_before_sec;
                assert_int_equal(db_cert_insert(db, &c), -EINVAL);
                c = cert_make(5, true);
                c.pem = (char *) "not a certificate";
                assert_int_equal(db_cert_insert(db, &c), -EINVAL);
                c = cert_make(6, true);
                c.serial_len = 0;
                assert_int_equal(db_cert_insert(db, &c), -EINVAL);
        }

        assert_int_equal(db_cert_get(db, a.serial, a.serial_len, &got), 0);
        assert_string_equal(got.name, a.name);
        assert_true(got.has_uid);
        assert_int_equal(got.uid, 1000);
        assert_true(got.has_sha256);
        assert_memory_equal(got.sha256, a.sha256, 32);
        assert_memory_equal(got.fingerprint, a.fingerprint, 32);
        assert_int_equal(got.not_before_sec, 100);
        assert_int_equal(got.not_after_sec, 200);
        assert_int_equal(got.issued_usec, 1001);
        assert_false(got.revoked);
        db_cert_done(&got);

        assert_int_equal(db_cert_get(db, b.serial, b.serial_len, &got), 0);
        assert_false(got.has_uid);
        assert_false(got.has_sha256);
        db_cert_done(&got);
        {
                uint8_t none[16] = { 9 };
                assert_int_equal(db_cert_get(db, none, sizeof none, &got), -ENOENT);
        }

        assert_int_equal(db_cert_list(db, &list, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(list[0].serial[0], 1);
        assert_int_equal(list[1].serial[0], 2);
        db_certs_free(list, n);
        db_close(db);
}

static void test_revoke(void **state) {
        Db *db = NULL;
        DbCert a = cert_make(1, true), b = cert_make(2, false), got = {};
        DbRevocation *rl = NULL;
        size_t n = 0;
        uint8_t none[16] = { 9 };

        (void) state;
        assert_int_equal(db_open(":memory:", DB_OPEN_CREATE, &db), 0);
        assert_int_equal(db_cert_insert(db, &a), 0);
        assert_int_equal(db_cert_insert(db, &b), 0);

        assert_int_equal(db_cert_revoke(db, none, sizeof none, 0, 0), -ENOENT);
        assert_int_equal(db_cert_revoke(db, a.serial, a.serial_len, 7, 0), -EINVAL);
        assert_int_equal(db_cert_revoke(db, a.serial, a.serial_len, 11, 0), -EINVAL);
        assert_int_equal(db_revocations_list(db, 0, &rl, &n), 0);
        assert_int_equal(n, 0);

        assert_int_equal(db_cert_revoke(db, a.serial, a.serial_len, 1, 5000), 0);
        assert_int_equal(db_cert_revoke(db, a.serial, a.serial_len, 0, 0), -EEXIST);

        assert_int_equal(db_cert_get(db, a.serial, a.serial_len, &got), 0);
        assert_true(got.revoked);
        assert_int_equal(got.revoked_usec, 5000);
        assert_int_equal(got.revocation_reason, 1);
        db_cert_done(&got);

        assert_int_equal(db_revocations_list(db, 0, &rl, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(rl[0].serial_len, 16);
        assert_memory_equal(rl[0].serial, a.serial, 16);
        assert_int_equal(rl[0].revoked_usec, 5000);
        assert_int_equal(rl[0].not_after_sec, 200);
        free(rl);

        /* Inside a caller's transaction, a failed revoke leaves the caller's work alone. */
        assert_int_equal(db_begin(db), 0);
        assert_int_equal(db_cert_revoke(db, b.serial, b.serial_len, 0, 0), 0);
        assert_int_equal(db_cert_revoke(db, none, sizeof none, 0, 0), -ENOENT);
        assert_int_equal(db_commit(db), 0);
        assert_int_equal(db_revocations_list(db, 0, &rl, &n), 0);
        assert_int_equal(n, 2);
        free(rl);

        /* Only revocations of certificates valid after the cut-off (not_after 200 here). */
        assert_int_equal(db_revocations_list(db, 199, &rl, &n), 0);
        assert_int_equal(n, 2);
        free(rl);
        rl = NULL;
        assert_int_equal(db_revocations_list(db, 200, &rl, &n), 0);
        assert_int_equal(n, 0);
        assert_null(rl);
        db_close(db);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_insert_get_list),
                cmocka_unit_test(test_revoke),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
