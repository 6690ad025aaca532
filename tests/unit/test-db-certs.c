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

/* Expired records go, earliest expiry first, bounded; revocations with them; valid ones stay. */
static void test_prune(void **state) {
        Db *db = NULL;
        DbCert c[5], got = {}, *list = NULL;
        DbRevocation *rl = NULL;
        size_t n = 0, removed = 99;

        (void) state;
        assert_int_equal(db_open(":memory:", DB_OPEN_CREATE, &db), 0);
        for (uint8_t i = 0; i < 5; i++) {
                c[i] = cert_make(i + 1, i % 2 == 0);
                c[i].not_after_sec = 200 + 100 * i;     /* 200, 300, 400, 500, 600 */
                assert_int_equal(db_cert_insert(db, &c[i]), 0);
        }
        assert_int_equal(db_cert_revoke(db, c[0].serial, c[0].serial_len, 0, 0), 0);
        assert_int_equal(db_cert_revoke(db, c[4].serial, c[4].serial_len, 0, 0), 0);

        assert_int_equal(db_cert_prune(db, 150, 10, &removed), 0);
        assert_int_equal(removed, 0);
        /* Limit reached: 1 (more may wait); the earliest expiry went first. */
        assert_int_equal(db_cert_prune(db, 450, 1, &removed), 1);
        assert_int_equal(removed, 1);
        assert_int_equal(db_cert_get(db, c[0].serial, c[0].serial_len, &got), -ENOENT);
        assert_int_equal(db_cert_prune(db, 450, 10, &removed), 0);
        assert_int_equal(removed, 2);
        /* Strictly before: not_after 500 is kept at 500. */
        assert_int_equal(db_cert_prune(db, 500, 10, &removed), 0);
        assert_int_equal(removed, 0);

        assert_int_equal(db_cert_list(db, &list, &n), 0);
        assert_int_equal(n, 2);
        assert_memory_equal(list[0].serial, c[3].serial, 16);
        assert_memory_equal(list[1].serial, c[4].serial, 16);
        db_certs_free(list, n);
        /* The pruned revocation went with its certificate, the other stays. */
        assert_int_equal(db_revocations_list(db, 0, &rl, &n), 0);
        assert_int_equal(n, 1);
        assert_memory_equal(rl[0].serial, c[4].serial, 16);
        free(rl);

        assert_int_equal(db_cert_prune(db, 1000, 0, &removed), -EINVAL);
        assert_int_equal(db_cert_prune(NULL, 1000, 1, &removed), -EINVAL);
        assert_int_equal(db_cert_prune(db, 1000, 1, NULL), -EINVAL);
        db_close(db);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_insert_get_list),
                cmocka_unit_test(test_revoke),
                cmocka_unit_test(test_prune),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
