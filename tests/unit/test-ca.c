/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* secd/ca.c: the CA on disk, issuing, revocation, the CRL and certificate identities. */
#include <dirent.h>
#include <fcntl.h>
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "ca.h"

typedef struct Fixture {
        char *dir;
        Db *db;
        SecdCA *ca;
} Fixture;

static const uint8_t test_sha[SHA256_DIGEST_LEN] = {
        0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
        0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10,
};

static int fixture_setup(void **state) {
        Fixture *f = calloc(1, sizeof *f);
        char template[] = "/tmp/test-ca-XXXXXX";

        assert_non_null(f);
        assert_non_null(mkdtemp(template));
        f->dir = strdup(template);
        assert_non_null(f->dir);
        assert_int_equal(db_open(":memory:", DB_OPEN_CREATE, &f->db), 0);
        assert_int_equal(ca_open(f->dir, f->db, NULL, &f->ca), 0);
        *state = f;
        return 0;
}

static int fixture_teardown(void **state) {
        Fixture *f = *state;
        DIR *d = opendir(f->dir);
        struct dirent *de;

        ca_free(f->ca);
        db_close(f->db);
        assert_non_null(d);
        while ((de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                assert_int_equal(unlinkat(dirfd(d), de->d_name, 0), 0);
        }
        closedir(d);
        assert_int_equal(rmdir(f->dir), 0);
        free(f->dir);
        free(f);
        return 0;
}

/* ---- helpers ---- */

static char *path_in(const Fixture *f, const char *name) {
        char *p = NULL;

        assert_true(asprintf(&p, "%s/%s", f->dir, name) > 0);
        return p;
}

static gnutls_x509_privkey_t key_new(gnutls_pk_algorithm_t pk, unsigned bits) {
        gnutls_x509_privkey_t key;

        assert_int_equal(gnutls_x509_privkey_init(&key), 0);
        assert_int_equal(gnutls_x509_privkey_generate(key, pk, bits, 0), 0);
        return key;
}

/* A PEM CSR for key; with hostile set, it asks for everything a client must never get. */
static char *csr_new(gnutls_x509_privkey_t key, bool hostile) {
        gnutls_x509_crq_t crq;
        gnutls_privkey_t priv;
        gnutls_datum_t d = {};
        gnutls_pk_algorithm_t pk = gnutls_x509_privkey_get_pk_algorithm(key);
        char *s;

        assert_int_equal(gnutls_x509_crq_init(&crq), 0);
        assert_int_equal(gnutls_privkey_init(&priv), 0);
        assert_int_equal(gnutls_privkey_import_x509(priv, key, 0), 0);
        assert_int_equal(gnutls_x509_crq_set_key(crq, key), 0);
        assert_int_equal(gnutls_x509_crq_set_dn_by_oid(crq, GNUTLS_OID_X520_COMMON_NAME, 0, hostile ? "root" : "client",
                                                       hostile ? 4 : 6),
                         0);
        if (hostile) {
                assert_int_equal(gnutls_x509_crq_set_basic_constraints(crq, 1, -1), 0);
                assert_int_equal(gnutls_x509_crq_set_key_purpose_oid(crq, GNUTLS_KP_TLS_WWW_SERVER, 0), 0);
                assert_int_equal(gnutls_x509_crq_set_key_usage(crq, GNUTLS_KEY_KEY_CERT_SIGN), 0);
                assert_int_equal(gnutls_x509_crq_set_subject_alt_name(crq, GNUTLS_SAN_DNSNAME, "evil.example", 12,
                                                                      GNUTLS_FSAN_APPEND),
                                 0);
                assert_int_equal(gnutls_x509_crq_set_subject_alt_name(crq, GNUTLS_SAN_URI, "secd://remote/admin", 19,
                                                                      GNUTLS_FSAN_APPEND),
                                 0);
        }
        assert_int_equal(gnutls_x509_crq_privkey_sign(crq, priv,
                                                      pk == GNUTLS_PK_EDDSA_ED25519 ? GNUTLS_DIG_SHA512
                                                                                     : GNUTLS_DIG_SHA256,
                                                      0),
                         0);
        assert_int_equal(gnutls_x509_crq_export2(crq, GNUTLS_X509_FMT_PEM, &d), 0);
        s = strndup((const char *) d.data, d.size);
        assert_non_null(s);
        gnutls_free(d.data);
        gnutls_privkey_deinit(priv);
        gnutls_x509_crq_deinit(crq);
        return s;
}

static gnutls_x509_crt_t crt_from_pem(const char *pem) {
        gnutls_x509_crt_t crt;
        gnutls_datum_t d = { .data = (unsigned char *) pem, .size = (unsigned) strlen(pem) };

        assert_int_equal(gnutls_x509_crt_init(&crt), 0);
        assert_int_equal(gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM), 0);
        return crt;
}

static gnutls_x509_crt_t ca_crt(SecdCA *ca) {
        _cleanup_free_ char *pem = NULL;

        assert_int_equal(ca_pem(ca, &pem), 0);
        return crt_from_pem(pem);
}

static CertIdentity identity_of(gnutls_x509_crt_t crt, int expect) {
        gnutls_datum_t der = {};
        CertIdentity id = {};

        assert_int_equal(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &der), 0);
        assert_int_equal(ca_cert_identity(&der, &id), expect);
        gnutls_free(der.data);
        return id;
}

static char *issue(Fixture *f, uint32_t uid, char serial[CA_SERIAL_HEX_LEN + 1]) {
        gnutls_x509_privkey_t key = key_new(GNUTLS_PK_EDDSA_ED25519, 256);
        _cleanup_free_ char *csr = csr_new(key, false);
        char *cert = NULL;
        uint64_t not_after = 0;

        assert_int_equal(ca_issue_local(f->ca, csr, strlen(csr), uid, test_sha, &cert, &not_after, serial), 0);
        assert_non_null(cert);
        gnutls_x509_privkey_deinit(key);
        return cert;
}

/* ---- tests ---- */

static void test_create_and_reload(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *key_path = path_in(f, "ca.key"), *crt_path = path_in(f, "ca.crt");
        _cleanup_free_ char *pem1 = NULL, *pem2 = NULL;
        SecdCA *again = NULL;
        struct stat st;

        assert_int_equal(stat(key_path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        assert_int_equal(stat(crt_path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0644);

        assert_int_equal(ca_pem(f->ca, &pem1), 0);
        assert_non_null(strstr(pem1, "-----BEGIN CERTIFICATE-----"));
        assert_int_equal(ca_open(f->dir, f->db, NULL, &again), 0);
        assert_int_equal(ca_pem(again, &pem2), 0);
        assert_string_equal(pem1, pem2);
        ca_free(again);

        /* No temp files left behind. */
        {
                DIR *d = opendir(f->dir);
                struct dirent *de;
                unsigned n = 0;

                assert_non_null(d);
                while ((de = readdir(d)))
                        if (de->d_name[0] != '.')
                                n++;
                        else
                                assert_true(streq(de->d_name, ".") || streq(de->d_name, ".."));
                closedir(d);
                assert_int_equal(n, 2);
        }
}

static void test_key_permissions(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *key_path = path_in(f, "ca.key"), *crt_path = path_in(f, "ca.crt");
        SecdCA *again = NULL;

        assert_int_equal(chmod(key_path, 0640), 0);
        assert_int_equal(ca_open(f->dir, f->db, NULL, &again), -EPERM);
        assert_int_equal(chmod(key_path, 0604), 0);
        assert_int_equal(ca_open(f->dir, f->db, NULL, &again), -EPERM);
        assert_int_equal(chmod(key_path, 0600), 0);

        if (geteuid() == 0) {
                assert_int_equal(chown(key_path, 65534, 65534), 0);
                assert_int_equal(ca_open(f->dir, f->db, NULL, &again), -EPERM);
                assert_int_equal(chown(key_path, 0, 0), 0);
        }
        assert_int_equal(ca_open(f->dir, f->db, NULL, &again), 0);
        again = ca_free(again);

        /* A symlink instead of the key is not followed. */
        {
                _cleanup_free_ char *moved = path_in(f, "key.real");

                assert_int_equal(rename(key_path, moved), 0);
                assert_int_equal(symlink(moved, key_path), 0);
                assert_true(ca_open(f->dir, f->db, NULL, &again) < 0);
                assert_int_equal(unlink(key_path), 0);
                assert_int_equal(rename(moved, key_path), 0);
        }

        /* A certificate without its key is never replaced by a new CA. */
        {
                _cleanup_free_ char *moved = path_in(f, "key.real");

                assert_int_equal(rename(key_path, moved), 0);
                assert_int_equal(ca_open(f->dir, f->db, NULL, &again), -ENOKEY);
                assert_int_equal(rename(moved, key_path), 0);
        }

        /* A key without its certificate (a start that died in between) gets one. */
        assert_int_equal(unlink(crt_path), 0);
        assert_int_equal(ca_open(f->dir, f->db, NULL, &again), 0);
        ca_free(again);
        assert_int_equal(access(crt_path, F_OK), 0);
}

static void test_issue_local(void **state) {
        Fixture *f = *state;
        char serial[CA_SERIAL_HEX_LEN + 1];
        _cleanup_free_ char *cert = issue(f, 1000, serial);
        gnutls_x509_crt_t crt = crt_from_pem(cert), ca = ca_crt(f->ca);
        char oid[128], san[256];
        size_t size;
        unsigned status = 1, critical = 0;
        CertIdentity id;
        DbCert rec = {};
        uint8_t raw[CA_SERIAL_HEX_LEN / 2];

        assert_int_equal(gnutls_x509_crt_verify(crt, &ca, 1, 0, &status), 0);
        assert_int_equal(status, 0);

        /* TLS client purpose, and nothing else. */
        size = sizeof oid;
        assert_int_equal(gnutls_x509_crt_get_key_purpose_oid(crt, 0, oid, &size, NULL), 0);
        assert_string_equal(oid, GNUTLS_KP_TLS_WWW_CLIENT);
        size = sizeof oid;
        assert_int_equal(gnutls_x509_crt_get_key_purpose_oid(crt, 1, oid, &size, NULL),
                         GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE);
        assert_int_equal(gnutls_x509_crt_get_basic_constraints(crt, &critical, NULL, NULL), 0);
        assert_int_equal(gnutls_x509_crt_get_key_usage(crt, &status, NULL), 0);
        assert_int_equal(status, GNUTLS_KEY_DIGITAL_SIGNATURE);

        size = sizeof san;
        assert_int_equal(gnutls_x509_crt_get_subject_alt_name(crt, 0, san, &size, NULL), GNUTLS_SAN_URI);
        assert_string_equal(san,
                            "secd://local/uid/1000/sha256/0123456789abcdef0123456789abcdeffedcba9876543210fedcba9876543210");

        id = identity_of(crt, 0);
        assert_true(id.local);
        assert_int_equal(id.uid, 1000);
        assert_memory_equal(id.sha256, test_sha, SHA256_DIGEST_LEN);
        assert_string_equal(id.serial, serial);
        assert_int_equal(strlen(serial), CA_SERIAL_HEX_LEN);
        /* Default lifetime: one hour (and not before now - 60 s). */
        assert_true(gnutls_x509_crt_get_expiration_time(crt) - time(NULL) <= 3600);
        assert_true(gnutls_x509_crt_get_expiration_time(crt) - time(NULL) >= 3590);
        assert_true(time(NULL) - gnutls_x509_crt_get_activation_time(crt) >= 59);

        /* Recorded in the store. */
        assert_int_equal(hex_decode_exact(serial, raw, sizeof raw), 0);
        assert_int_equal(db_cert_get(f->db, raw, sizeof raw, &rec), 0);
        assert_true(rec.has_uid);
        assert_int_equal(rec.uid, 1000);
        assert_true(rec.has_sha256);
        assert_memory_equal(rec.sha256, test_sha, SHA256_DIGEST_LEN);
        assert_string_equal(rec.pem, cert);
        assert_false(rec.revoked);
        db_cert_done(&rec);

        gnutls_x509_crt_deinit(crt);
        gnutls_x509_crt_deinit(ca);
}

static void test_csr_extensions_ignored(void **state) {
        Fixture *f = *state;
        gnutls_x509_privkey_t key = key_new(GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1));
        _cleanup_free_ char *csr = csr_new(key, true), *cert = NULL;
        gnutls_x509_crt_t crt;
        char buf[256];
        size_t size;
        unsigned ca_flag = 0, usage = 0;
        int n_san = 0;

        assert_int_equal(ca_issue_local(f->ca, csr, strlen(csr), 42, test_sha, &cert, NULL, NULL), 0);
        crt = crt_from_pem(cert);

        size = sizeof buf;
        assert_int_equal(gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, buf, &size), 0);
        assert_string_equal(buf, "uid 42");
        assert_int_equal(gnutls_x509_crt_get_basic_constraints(crt, NULL, &ca_flag, NULL), 0);
        assert_int_equal(ca_flag, 0);
        assert_int_equal(gnutls_x509_crt_get_key_usage(crt, &usage, NULL), 0);
        assert_int_equal(usage, GNUTLS_KEY_DIGITAL_SIGNATURE);
        size = sizeof buf;
        assert_int_equal(gnutls_x509_crt_get_key_purpose_oid(crt, 0, buf, &size, NULL), 0);
        assert_string_equal(buf, GNUTLS_KP_TLS_WWW_CLIENT);
        for (unsigned i = 0;; i++) {
                size = sizeof buf;
                int t = gnutls_x509_crt_get_subject_alt_name(crt, i, buf, &size, NULL);
                if (t == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
                        break;
                assert_int_equal(t, GNUTLS_SAN_URI);
                assert_non_null(strstr(buf, "secd://local/uid/42/"));
                n_san++;
        }
        assert_int_equal(n_san, 1);
        assert_true(identity_of(crt, 0).local);

        gnutls_x509_crt_deinit(crt);
        gnutls_x509_privkey_deinit(key);
}

static void test_csr_rejected(void **state) {
        Fixture *f = *state;
        gnutls_x509_privkey_t key = key_new(GNUTLS_PK_EDDSA_ED25519, 256);
        gnutls_x509_privkey_t p384 = key_new(GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP384R1));
        _cleanup_free_ char *csr = csr_new(key, false), *csr384 = csr_new(p384, false), *big = NULL;
        gnutls_datum_t pem = { .data = (unsigned char *) csr, .size = (unsigned) strlen(csr) }, der = {}, bad = {};
        char *cert = NULL;
        size_t n;

        /* A flipped bit in the signature. */
        assert_int_equal(gnutls_pem_base64_decode2("NEW CERTIFICATE REQUEST", &pem, &der), 0);
        der.data[der.size - 1] ^= 0x01;
        assert_int_equal(gnutls_pem_base64_encode2("NEW CERTIFICATE REQUEST", &der, &bad), 0);
        assert_int_equal(ca_issue_local(f->ca, (const char *) bad.data, bad.size, 1000, test_sha, &cert, NULL, NULL),
                         -EKEYREJECTED);
        /* A flipped bit in the signed part (the subject). */
        der.data[der.size - 1] ^= 0x01;
        gnutls_free(bad.data);
        {
                uint8_t *p = memmem(der.data, der.size, "client", 6);
                assert_non_null(p);
                p[0] = 'C';
        }
        assert_int_equal(gnutls_pem_base64_encode2("NEW CERTIFICATE REQUEST", &der, &bad), 0);
        assert_int_equal(ca_issue_local(f->ca, (const char *) bad.data, bad.size, 1000, test_sha, &cert, NULL, NULL),
                         -EKEYREJECTED);
        gnutls_free(bad.data);
        gnutls_free(der.data);

        /* A key type we do not accept. */
        assert_int_equal(ca_issue_local(f->ca, csr384, strlen(csr384), 1000, test_sha, &cert, NULL, NULL),
                         -EKEYREJECTED);

        /* Garbage, empty, embedded NUL, oversized. */
        assert_int_equal(ca_issue_local(f->ca, "hello", 5, 1000, test_sha, &cert, NULL, NULL), -EBADMSG);
        assert_int_equal(ca_issue_local(f->ca, "", 0, 1000, test_sha, &cert, NULL, NULL), -EBADMSG);
        assert_int_equal(ca_issue_local(f->ca, "-----BEGIN NEW CERTIFICATE REQUEST-----\nAAAA\n"
                                               "-----END NEW CERTIFICATE REQUEST-----\n",
                                        strlen("-----BEGIN NEW CERTIFICATE REQUEST-----\nAAAA\n"
                                               "-----END NEW CERTIFICATE REQUEST-----\n"),
                                        1000, test_sha, &cert, NULL, NULL),
                         -EBADMSG);
        assert_int_equal(ca_issue_local(f->ca, csr, strlen(csr) + 1, 1000, test_sha, &cert, NULL, NULL), -EBADMSG);
        n = CA_CSR_MAX + 1;
        big = malloc(n + 1);
        assert_non_null(big);
        memcpy(big, csr, strlen(csr));
        memset(big + strlen(csr), '\n', n - strlen(csr));
        big[n] = '\0';
        assert_int_equal(ca_issue_local(f->ca, big, n, 1000, test_sha, &cert, NULL, NULL), -EBADMSG);
        /* Just under the limit is still read. */
        assert_int_equal(ca_issue_local(f->ca, big, CA_CSR_MAX, 1000, test_sha, &cert, NULL, NULL), 0);
        free(cert);
        cert = NULL;
        /* A uid the kernel never uses. */
        assert_int_equal(ca_issue_local(f->ca, csr, strlen(csr), UINT32_MAX, test_sha, &cert, NULL, NULL), -EINVAL);
        assert_null(cert);

        gnutls_x509_privkey_deinit(key);
        gnutls_x509_privkey_deinit(p384);
}

static int str_cmp(const void *a, const void *b) {
        return strcmp(a, b);
}

static void test_serials(void **state) {
        Fixture *f = *state;
        char serials[40][CA_SERIAL_HEX_LEN + 1];

        for (size_t i = 0; i < ELEMENTSOF(serials); i++) {
                _cleanup_free_ char *cert = issue(f, (uint32_t) i, serials[i]);
                gnutls_x509_crt_t crt = crt_from_pem(cert);
                uint8_t raw[32];
                size_t size = sizeof raw;

                assert_int_equal(strlen(serials[i]), CA_SERIAL_HEX_LEN);
                assert_int_equal(gnutls_x509_crt_get_serial(crt, raw, &size), 0);
                assert_int_equal(size, 16);
                assert_true(raw[0] > 0 && raw[0] < 0x80);  /* positive, 128 bits on the wire */
                gnutls_x509_crt_deinit(crt);
        }
        qsort(serials, ELEMENTSOF(serials), sizeof serials[0], str_cmp);
        for (size_t i = 1; i < ELEMENTSOF(serials); i++)
                assert_string_not_equal(serials[i - 1], serials[i]);
}

static void test_revoke(void **state) {
        Fixture *f = *state;
        char serial[CA_SERIAL_HEX_LEN + 1], other[CA_SERIAL_HEX_LEN + 1], upper[CA_SERIAL_HEX_LEN + 1];
        _cleanup_free_ char *cert = issue(f, 1000, serial), *cert2 = issue(f, 1001, other), *crl_pem = NULL;
        TlsCredentials *before = NULL, *after = NULL;
        gnutls_x509_crl_t crl;
        gnutls_x509_crt_t ca = ca_crt(f->ca), crt = crt_from_pem(cert), crt2 = crt_from_pem(cert2);
        gnutls_datum_t d;
        uint8_t raw[32];
        size_t size = sizeof raw;
        unsigned status = 0;
        SecdCA *again = NULL;

        assert_int_equal(ca_credentials(f->ca, &before), 0);
        assert_int_equal(ca_is_revoked(f->ca, serial), 0);
        assert_int_equal(ca_revoke(f->ca, serial), 1);
        assert_int_equal(ca_revoke(f->ca, serial), 0);
        assert_int_equal(ca_is_revoked(f->ca, serial), 1);
        for (size_t i = 0; i <= CA_SERIAL_HEX_LEN; i++)
                upper[i] = (char) (serial[i] >= 'a' && serial[i] <= 'f' ? serial[i] - 'a' + 'A' : serial[i]);
        assert_int_equal(ca_is_revoked(f->ca, upper), 1);
        assert_int_equal(ca_is_revoked(f->ca, other), 0);
        assert_int_equal(ca_revoke(f->ca, "00112233445566778899aabbccddeeff"), -ENOENT);
        assert_int_equal(ca_revoke(f->ca, "0011"), -EINVAL);
        assert_int_equal(ca_revoke(f->ca, "zz112233445566778899aabbccddeeff"), -EINVAL);

        /* New credentials; the old ones stay usable for whoever holds them. */
        assert_int_equal(ca_credentials(f->ca, &after), 0);
        assert_ptr_not_equal(tls_credentials_get(before), tls_credentials_get(after));
        assert_non_null(tls_credentials_get(before));
        tls_credentials_unref(before);
        tls_credentials_unref(after);

        /* The CRL lists it, and only it, and is signed by the CA. */
        assert_int_equal(ca_crl_pem(f->ca, &crl_pem), 0);
        d = (gnutls_datum_t) { .data = (unsigned char *) crl_pem, .size = (unsigned) strlen(crl_pem) };
        assert_int_equal(gnutls_x509_crl_init(&crl), 0);
        assert_int_equal(gnutls_x509_crl_import(crl, &d, GNUTLS_X509_FMT_PEM), 0);
        assert_int_equal(gnutls_x509_crl_verify(crl, &ca, 1, 0, &status), 0);
        assert_int_equal(status, 0);
        assert_int_equal(gnutls_x509_crl_get_crt_count(crl), 1);
        assert_int_equal(gnutls_x509_crl_get_crt_serial(crl, 0, raw, &size, NULL), 0);
        {
                char hex[65];
                hex_encode(raw, size, hex);
                assert_string_equal(hex, serial);
        }
        assert_int_equal(gnutls_x509_crt_check_revocation(crt, &crl, 1), 1);
        assert_int_equal(gnutls_x509_crt_check_revocation(crt2, &crl, 1), 0);
        gnutls_x509_crl_deinit(crl);

        /* The set is loaded from the store at start. */
        assert_int_equal(ca_open(f->dir, f->db, NULL, &again), 0);
        assert_int_equal(ca_is_revoked(again, serial), 1);
        assert_int_equal(ca_is_revoked(again, other), 0);
        ca_free(again);

        gnutls_x509_crt_deinit(ca);
        gnutls_x509_crt_deinit(crt);
        gnutls_x509_crt_deinit(crt2);
}

static void test_issue_remote(void **state) {
        Fixture *f = *state;
        char serial[CA_SERIAL_HEX_LEN + 1];
        char *key_pem = NULL, *cert = NULL;
        uint64_t not_after = 0;
        gnutls_x509_crt_t crt, ca = ca_crt(f->ca);
        gnutls_x509_privkey_t key;
        gnutls_datum_t d;
        unsigned status = 1;
        CertIdentity id;

        assert_int_equal(ca_issue_remote(f->ca, "bad name", 3600 * UINT64_C(1000000), &key_pem, &cert, NULL, NULL),
                         -EINVAL);
        assert_int_equal(ca_issue_remote(f->ca, "", 3600 * UINT64_C(1000000), &key_pem, &cert, NULL, NULL), -EINVAL);
        assert_int_equal(ca_issue_remote(f->ca, "a/b", 3600 * UINT64_C(1000000), &key_pem, &cert, NULL, NULL),
                         -EINVAL);
        assert_int_equal(ca_issue_remote(f->ca, "host-1", 0, &key_pem, &cert, NULL, NULL), -ERANGE);
        assert_int_equal(ca_issue_remote(f->ca, "host-1", UINT64_C(100) * 365 * 24 * 3600 * 1000000, &key_pem, &cert,
                                         NULL, NULL),
                         -ERANGE);
        assert_int_equal(ca_issue_remote(f->ca, "host-1.example_x", 7200 * UINT64_C(1000000), &key_pem, &cert,
                                         &not_after, serial),
                         0);
        assert_true(not_after / 1000000 > (uint64_t) time(NULL) + 7100);

        crt = crt_from_pem(cert);
        assert_int_equal(gnutls_x509_crt_verify(crt, &ca, 1, 0, &status), 0);
        assert_int_equal(status, 0);
        id = identity_of(crt, 0);
        assert_false(id.local);
        assert_string_equal(id.name, "host-1.example_x");
        assert_string_equal(id.serial, serial);

        /* The key belongs to the certificate. */
        d = (gnutls_datum_t) { .data = (unsigned char *) key_pem, .size = (unsigned) strlen(key_pem) };
        assert_int_equal(gnutls_x509_privkey_init(&key), 0);
        assert_int_equal(gnutls_x509_privkey_import(key, &d, GNUTLS_X509_FMT_PEM), 0);
        {
                uint8_t a[64], b[64];
                size_t la = sizeof a, lb = sizeof b;
                assert_int_equal(gnutls_x509_privkey_get_key_id(key, 0, a, &la), 0);
                assert_int_equal(gnutls_x509_crt_get_key_id(crt, 0, b, &lb), 0);
                assert_memory_equal(a, b, la);
        }
        gnutls_x509_privkey_deinit(key);
        erase_and_free(key_pem);
        free(cert);
        gnutls_x509_crt_deinit(crt);
        gnutls_x509_crt_deinit(ca);
}

/* A certificate with these URI SANs, signed by a throwaway key: ca_cert_identity() only parses. */
static int identity_of_uris(const char *const *uris, size_t n, CertIdentity *ret) {
        gnutls_x509_privkey_t key = key_new(GNUTLS_PK_EDDSA_ED25519, 256);
        gnutls_x509_crt_t crt;
        gnutls_datum_t der = {};
        static const uint8_t serial[16] = { 0x11, 0x22 };
        int r;

        assert_int_equal(gnutls_x509_crt_init(&crt), 0);
        assert_int_equal(gnutls_x509_crt_set_version(crt, 3), 0);
        assert_int_equal(gnutls_x509_crt_set_serial(crt, serial, sizeof serial), 0);
        assert_int_equal(gnutls_x509_crt_set_activation_time(crt, time(NULL)), 0);
        assert_int_equal(gnutls_x509_crt_set_expiration_time(crt, time(NULL) + 60), 0);
        assert_int_equal(gnutls_x509_crt_set_key(crt, key), 0);
        for (size_t i = 0; i < n; i++)
                assert_int_equal(gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_URI, uris[i], strlen(uris[i]),
                                                                      GNUTLS_FSAN_APPEND),
                                 0);
        assert_int_equal(gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA512, 0), 0);
        assert_int_equal(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &der), 0);
        r = ca_cert_identity(&der, ret);
        gnutls_free(der.data);
        gnutls_x509_crt_deinit(crt);
        gnutls_x509_privkey_deinit(key);
        return r;
}

static void test_identity_strict(void **state) {
        static const char good_local[] =
                "secd://local/uid/0/sha256/0123456789abcdef0123456789abcdeffedcba9876543210fedcba9876543210";
        static const char *const bad[] = {
                "secd://local/uid/01/sha256/0123456789abcdef0123456789abcdeffedcba9876543210fedcba9876543210",
                "secd://local/uid/4294967295/sha256/0123456789abcdef0123456789abcdeffedcba9876543210fedcba9876543210",
                "secd://local/uid/-1/sha256/0123456789abcdef0123456789abcdeffedcba9876543210fedcba9876543210",
                "secd://local/uid//sha256/0123456789abcdef0123456789abcdeffedcba9876543210fedcba9876543210",
                "secd://local/uid/1/sha256/0123456789ABCDEF0123456789abcdeffedcba9876543210fedcba9876543210",
                "secd://local/uid/1/sha256/0123456789abcdef0123456789abcdeffedcba9876543210fedcba987654321",
                "secd://local/uid/1/sha256/0123456789abcdef0123456789abcdeffedcba9876543210fedcba98765432100",
                "secd://local/uid/1/sha1/0123456789abcdef0123456789abcdeffedcba98",
                "secd://remote/",
                "secd://remote/a/b",
                "secd://remote/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "secd://server",
                "https://example.com/",
        };
        CertIdentity id;
        const char *two[] = { good_local, "secd://remote/x" };
        const char *one[1];

        (void) state;
        one[0] = good_local;
        assert_int_equal(identity_of_uris(one, 1, &id), 0);
        assert_true(id.local);
        assert_int_equal(id.uid, 0);
        assert_string_equal(id.serial, "11220000000000000000000000000000");
        one[0] = "secd://remote/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        assert_int_equal(identity_of_uris(one, 1, &id), 0);
        assert_false(id.local);
        assert_int_equal(strlen(id.name), 64);

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                one[0] = bad[i];
                assert_int_equal(identity_of_uris(one, 1, &id), -EBADMSG);
        }
        assert_int_equal(identity_of_uris(two, 2, &id), -EBADMSG);
        assert_int_equal(identity_of_uris(NULL, 0, &id), -EBADMSG);

        {
                gnutls_datum_t junk = { .data = (unsigned char *) "junk", .size = 4 };
                assert_int_equal(ca_cert_identity(&junk, &id), -EBADMSG);
        }
}

static void test_server_credentials(void **state) {
        Fixture *f = *state;
        TlsCredentials *t = NULL;

        assert_int_equal(ca_credentials(f->ca, &t), 0);
        assert_non_null(tls_credentials_get(t));
        /* Fresh: nothing to renew. */
        assert_int_equal(ca_maybe_renew_server(f->ca), 0);
        tls_credentials_unref(t);
}

/* A short server lifetime: past 2/3 of it the server certificate and credentials are renewed. */
static void test_server_renewal(void **state) {
        Fixture *f = *state;
        CaSettings settings = { .server_lifetime_usec = 3 * UINT64_C(1000000) };
        SecdCA *ca = NULL;
        TlsCredentials *before = NULL, *after = NULL;
        struct timespec ts = { .tv_sec = 2, .tv_nsec = 200 * 1000 * 1000 };

        assert_int_equal(ca_open(f->dir, f->db, &settings, &ca), 0);
        assert_int_equal(ca_credentials(ca, &before), 0);
        assert_int_equal(ca_maybe_renew_server(ca), 0);
        assert_int_equal(nanosleep(&ts, NULL), 0);
        assert_int_equal(ca_maybe_renew_server(ca), 1);
        assert_int_equal(ca_credentials(ca, &after), 0);
        assert_ptr_not_equal(tls_credentials_get(before), tls_credentials_get(after));
        assert_int_equal(ca_maybe_renew_server(ca), 0);
        /* The old credentials outlive the CA for whoever still holds them. */
        ca_free(ca);
        assert_non_null(tls_credentials_get(before));
        tls_credentials_unref(before);
        tls_credentials_unref(after);
}

#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)

int main(void) {
        const struct CMUnitTest tests[] = {
                T(test_create_and_reload),
                T(test_key_permissions),
                T(test_issue_local),
                T(test_csr_extensions_ignored),
                T(test_csr_rejected),
                T(test_serials),
                T(test_revoke),
                T(test_issue_remote),
                cmocka_unit_test(test_identity_strict),
                T(test_server_credentials),
                T(test_server_renewal),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
