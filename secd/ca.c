/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * secd's certificate authority. Decisions about who gets a certificate are
 * made elsewhere (admission, control authorisation): this file only makes,
 * parses and records certificates. See docs/certificates.md.
 */
#include <fcntl.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ca.h"
#include "log.h"

#define CA_KEY_FILE "ca.key"
#define CA_CERT_FILE "ca.crt"
#define CA_FILE_MAX (64u * 1024u)
#define CA_SERIAL_LEN 16
#define CA_CLOCK_SKEW_SEC 60
#define CA_CRL_LIFETIME_SEC (7 * 24 * 3600)
#define CA_SAN_MAX 64                   /* SAN entries looked at in a client certificate */
#define CA_URI_MAX 1024

#define CA_CLIENT_LIFETIME_DEFAULT (UINT64_C(3600) * 1000000)
#define CA_SERVER_LIFETIME_DEFAULT (UINT64_C(30) * 24 * 3600 * 1000000)
#define CA_CA_LIFETIME_DEFAULT (UINT64_C(10) * 365 * 24 * 3600 * 1000000)

/* The CA, server and remote-client key type: see docs/certificates.md for the measurements. */
#define CA_KEY_ALGORITHM GNUTLS_PK_EDDSA_ED25519

typedef char RevokedSerial[2 * DB_CERT_SERIAL_MAX + 1];

struct TlsCredentials {
        unsigned n_ref;
        gnutls_certificate_credentials_t cred;
};

struct SecdCA {
        Db *db;
        CaSettings settings;

        gnutls_x509_privkey_t ca_x509_key;
        gnutls_privkey_t ca_key;        /* signs; wraps ca_x509_key */
        gnutls_x509_crt_t ca_crt;
        char *ca_pem;
        uint8_t ca_key_id[64];
        size_t ca_key_id_len;
        time_t ca_not_after;

        gnutls_x509_privkey_t server_key;       /* in memory only, new at each start and renewal */
        gnutls_x509_crt_t server_crt;
        time_t server_not_before, server_not_after;

        gnutls_x509_crl_t crl;
        char *crl_pem;
        time_t crl_this_update;

        RevokedSerial *revoked;         /* sorted, for bsearch */
        size_t n_revoked;

        TlsCredentials *credentials;
};

/* ---- small helpers ---- */

static const char *startswith(const char *s, const char *prefix) {
        size_t n = strlen(prefix);

        return strncmp(s, prefix, n) == 0 ? s + n : NULL;
}

static int ca_errno(int gnutls_r) {
        switch (gnutls_r) {
        case GNUTLS_E_MEMORY_ERROR:
                return -ENOMEM;
        case GNUTLS_E_BASE64_DECODING_ERROR:
        case GNUTLS_E_BASE64_UNEXPECTED_HEADER_ERROR:
        case GNUTLS_E_ASN1_DER_ERROR:
        case GNUTLS_E_ASN1_GENERIC_ERROR:
        case GNUTLS_E_ASN1_TAG_ERROR:
        case GNUTLS_E_ASN1_DER_OVERFLOW:
        case GNUTLS_E_ASN1_VALUE_NOT_FOUND:
        case GNUTLS_E_ASN1_ELEMENT_NOT_FOUND:
        case GNUTLS_E_ASN1_TYPE_ANY_ERROR:
        case GNUTLS_E_ASN1_SYNTAX_ERROR:
        case GNUTLS_E_PARSING_ERROR:
        case GNUTLS_E_UNKNOWN_PK_ALGORITHM:
                return -EBADMSG;
        default:
                return -EIO;
        }
}

static void gnutls_datum_erase(gnutls_datum_t *d) {
        if (d->data) {
                gnutls_memset(d->data, 0, d->size);
                gnutls_free(d->data);
        }
        *d = (gnutls_datum_t) {};
}

static void gnutls_datum_release(gnutls_datum_t *d) {
        gnutls_free(d->data);
        *d = (gnutls_datum_t) {};
}

static void x509_crt_deinitp(gnutls_x509_crt_t *c) {
        if (*c)
                gnutls_x509_crt_deinit(*c);
}
static void x509_privkey_deinitp(gnutls_x509_privkey_t *k) {
        if (*k)
                gnutls_x509_privkey_deinit(*k);
}
static void x509_crq_deinitp(gnutls_x509_crq_t *q) {
        if (*q)
                gnutls_x509_crq_deinit(*q);
}
static void x509_crl_deinitp(gnutls_x509_crl_t *c) {
        if (*c)
                gnutls_x509_crl_deinit(*c);
}
static void privkey_deinitp(gnutls_privkey_t *k) {
        if (*k)
                gnutls_privkey_deinit(*k);
}
static void pubkey_deinitp(gnutls_pubkey_t *p) {
        if (*p)
                gnutls_pubkey_deinit(*p);
}

static gnutls_digest_algorithm_t ca_sign_digest(void) {
        /* Ed25519 hashes internally (SHA-512); GnuTLS wants that digest named. */
        return CA_KEY_ALGORITHM == GNUTLS_PK_EDDSA_ED25519 ? GNUTLS_DIG_SHA512 : GNUTLS_DIG_SHA256;
}

static int ca_generate_key(gnutls_x509_privkey_t *ret) {
        _cleanup_(x509_privkey_deinitp) gnutls_x509_privkey_t key = NULL;
        unsigned bits = CA_KEY_ALGORITHM == GNUTLS_PK_EDDSA_ED25519
                                ? 256
                                : GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1);
        int g;

        g = gnutls_x509_privkey_init(&key);
        if (g >= 0)
                g = gnutls_x509_privkey_generate(key, CA_KEY_ALGORITHM, bits, 0);
        if (g < 0)
                return ca_errno(g);
        *ret = TAKE_PTR(key);
        return 0;
}

static int ca_random_serial(uint8_t serial[CA_SERIAL_LEN]) {
        if (gnutls_rnd(GNUTLS_RND_NONCE, serial, CA_SERIAL_LEN) < 0)
                return -EIO;
        /* Positive, and 16 bytes in DER (no leading zero byte to strip). */
        serial[0] &= 0x7f;
        if (serial[0] == 0)
                serial[0] = 0x40;
        return 0;
}

static time_t ca_now(void) {
        return time(NULL);
}

static time_t ca_add_usec(time_t t, uint64_t usec) {
        uint64_t sec = usec / 1000000;

        if (sec > (uint64_t) (INT64_MAX / 2))
                sec = INT64_MAX / 2;
        return t + (time_t) sec;
}

static int crt_export_pem(gnutls_x509_crt_t crt, char **ret) {
        gnutls_datum_t d = {};
        char *s;
        int g;

        g = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &d);
        if (g < 0)
                return ca_errno(g);
        s = strndup((const char *) d.data, d.size);
        gnutls_datum_release(&d);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

/* ---- files ---- */

static int write_file_atomic(int dir_fd, const char *name, const void *data, size_t size, mode_t mode) {
        uint8_t rnd[8];
        char hex[2 * sizeof rnd + 1], tmp[128];
        const uint8_t *p = data;
        _cleanup_close_ int fd = -EBADF;
        int r;

        if (gnutls_rnd(GNUTLS_RND_NONCE, rnd, sizeof rnd) < 0)
                return -EIO;
        hex_encode(rnd, sizeof rnd, hex);
        (void) snprintf(tmp, sizeof tmp, ".%s.%s.tmp", name, hex);

        fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return negative_errno();
        if (fchmod(fd, mode) < 0)
                goto fail;
        while (size > 0) {
                ssize_t n = write(fd, p, size);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        goto fail;
                }
                p += n;
                size -= (size_t) n;
        }
        if (fsync(fd) < 0)
                goto fail;
        fd = safe_close(fd);
        /* Never replace a file someone else made meanwhile. */
        if (renameat2(dir_fd, tmp, dir_fd, name, RENAME_NOREPLACE) < 0)
                goto fail;
        (void) fsync(dir_fd);
        return 0;

fail:
        r = negative_errno();
        (void) unlinkat(dir_fd, tmp, 0);
        return r;
}

/*
 * Read a file of at most CA_FILE_MAX bytes. With secret, refuse a file that
 * is not ours or that group or others may access. The buffer is
 * NUL-terminated; the caller wipes it if secret.
 */
static int read_file_checked(int dir_fd, const char *name, bool secret, char **ret, size_t *ret_size) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_erase_ char *buf = NULL;
        struct stat st;
        size_t size = 0;

        fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0)
                return negative_errno();
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode)) {
                log_error("CA: %s is not a regular file.", name);
                return -EBADMSG;
        }
        if (secret && st.st_uid != geteuid()) {
                log_error("CA: %s is owned by uid %u, not by secd's uid %u; refusing to use it.", name,
                          (unsigned) st.st_uid, (unsigned) geteuid());
                return -EPERM;
        }
        if (secret && (st.st_mode & 0077) != 0) {
                log_error("CA: %s has mode %04o; a private key must not be accessible to group or others "
                          "(chmod 0600). Refusing to use it.",
                          name, (unsigned) (st.st_mode & 07777));
                return -EPERM;
        }
        if (st.st_size <= 0 || (uint64_t) st.st_size > CA_FILE_MAX) {
                log_error("CA: %s is empty or larger than %u bytes.", name, CA_FILE_MAX);
                return -EBADMSG;
        }
        buf = calloc(1, (size_t) st.st_size + 1);
        if (!buf)
                return -ENOMEM;
        while (size < (size_t) st.st_size) {
                ssize_t n = read(fd, buf + size, (size_t) st.st_size - size);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (n == 0)
                        break;
                size += (size_t) n;
        }
        *ret = TAKE_PTR(buf);
        *ret_size = size;
        return 0;
}

/* ---- certificate making ---- */

typedef enum CertKind {
        CERT_CLIENT,
        CERT_SERVER,
} CertKind;

static int ca_make_cert(SecdCA *ca, gnutls_pubkey_t pub, CertKind kind, const char *cn, const char *uri,
                        time_t not_after, uint8_t serial[CA_SERIAL_LEN], gnutls_x509_crt_t *ret) {
        _cleanup_(x509_crt_deinitp) gnutls_x509_crt_t crt = NULL;
        uint8_t key_id[64];
        size_t key_id_len = sizeof key_id;
        time_t now = ca_now();
        int r, g;

        r = ca_random_serial(serial);
        if (r < 0)
                return r;
        if (not_after > ca->ca_not_after)
                not_after = ca->ca_not_after;
        if (not_after <= now)
                return -ERANGE;

        g = gnutls_x509_crt_init(&crt);
        if (g >= 0)
                g = gnutls_x509_crt_set_version(crt, 3);
        if (g >= 0)
                g = gnutls_x509_crt_set_serial(crt, serial, CA_SERIAL_LEN);
        if (g >= 0)
                g = gnutls_x509_crt_set_activation_time(crt, now - CA_CLOCK_SKEW_SEC);
        if (g >= 0)
                g = gnutls_x509_crt_set_expiration_time(crt, not_after);
        if (g >= 0)
                g = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, cn, strlen(cn));
        if (g >= 0)
                g = gnutls_x509_crt_set_pubkey(crt, pub);
        if (g >= 0)
                g = gnutls_x509_crt_set_basic_constraints(crt, 0, -1);
        if (g >= 0)
                g = gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE);
        if (g >= 0)
                g = gnutls_x509_crt_set_key_purpose_oid(
                        crt, kind == CERT_SERVER ? GNUTLS_KP_TLS_WWW_SERVER : GNUTLS_KP_TLS_WWW_CLIENT, 0);
        if (g >= 0)
                g = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_URI, uri, strlen(uri), GNUTLS_FSAN_APPEND);
        if (g >= 0 && kind == CERT_SERVER) {
                static const uint8_t v4[4] = { 127, 0, 0, 1 };
                static const uint8_t v6[16] = { [15] = 1 };

                g = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, "localhost", strlen("localhost"),
                                                         GNUTLS_FSAN_APPEND);
                if (g >= 0)
                        g = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, v4, sizeof v4,
                                                                 GNUTLS_FSAN_APPEND);
                if (g >= 0)
                        g = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, v6, sizeof v6,
                                                                 GNUTLS_FSAN_APPEND);
        }
        if (g >= 0)
                g = gnutls_pubkey_get_key_id(pub, GNUTLS_KEYID_USE_SHA1, key_id, &key_id_len);
        if (g >= 0)
                g = gnutls_x509_crt_set_subject_key_id(crt, key_id, key_id_len);
        if (g >= 0)
                g = gnutls_x509_crt_set_authority_key_id(crt, ca->ca_key_id, ca->ca_key_id_len);
        if (g >= 0)
                g = gnutls_x509_crt_privkey_sign(crt, ca->ca_crt, ca->ca_key, ca_sign_digest(), 0);
        if (g < 0)
                return ca_errno(g);
        *ret = TAKE_PTR(crt);
        return 0;
}

/* Record an issued client certificate in the store. */
static int ca_record(SecdCA *ca, gnutls_x509_crt_t crt, const uint8_t serial[CA_SERIAL_LEN], const char *uri,
                     const uint32_t *uid, const uint8_t *sha256, const char *pem) {
        DbCert rec = {
                .serial_len = CA_SERIAL_LEN,
                .name = (char *) uri,
                .has_uid = !!uid,
                .uid = uid ? *uid : 0,
                .has_sha256 = !!sha256,
                .not_before_sec = (int64_t) gnutls_x509_crt_get_activation_time(crt),
                .not_after_sec = (int64_t) gnutls_x509_crt_get_expiration_time(crt),
                .pem = (char *) pem,
        };
        size_t fp_len = sizeof rec.fingerprint;
        int g;

        memcpy(rec.serial, serial, CA_SERIAL_LEN);
        if (sha256)
                memcpy(rec.sha256, sha256, SHA256_DIGEST_LEN);
        g = gnutls_x509_crt_get_fingerprint(crt, GNUTLS_DIG_SHA256, rec.fingerprint, &fp_len);
        if (g < 0 || fp_len != SHA256_DIGEST_LEN)
                return -EIO;
        return db_cert_insert(ca->db, &rec);
}

/* ---- revocation set and CRL ---- */

static int revoked_cmp(const void *a, const void *b) {
        return strcmp(a, b);
}

static int ca_revoked_add(SecdCA *ca, const char *hex) {
        RevokedSerial *n;
        size_t bytes;

        if (strlen(hex) >= sizeof(RevokedSerial))
                return -EINVAL;
        if (ca->n_revoked > 0 && bsearch(hex, ca->revoked, ca->n_revoked, sizeof(RevokedSerial), revoked_cmp))
                return 0;
        if (!size_mul_ok(ca->n_revoked + 1, sizeof(RevokedSerial), &bytes))
                return -ENOMEM;
        n = realloc(ca->revoked, bytes);
        if (!n)
                return -ENOMEM;
        ca->revoked = n;
        (void) snprintf(ca->revoked[ca->n_revoked], sizeof(RevokedSerial), "%s", hex);
        ca->n_revoked++;
        qsort(ca->revoked, ca->n_revoked, sizeof(RevokedSerial), revoked_cmp);
        return 1;
}

#define CA_REVOCATION_SLACK_SEC (24 * 3600)

static int ca_make_crl(SecdCA *ca) {
        _cleanup_(x509_crl_deinitp) gnutls_x509_crl_t crl = NULL;
        _cleanup_free_ DbRevocation *list = NULL;
        gnutls_datum_t d = {};
        size_t n = 0;
        time_t now = ca_now();
        uint8_t number[8];
        uint64_t usec = (uint64_t) now * 1000000;
        char *pem;
        int r, g;

        /*
         * Expired certificates are refused at the handshake, so their revocations need not be
         * held; a day of slack keeps a clock stepped back from bringing one back to life.
         */
        r = db_revocations_list(ca->db, (int64_t) now - CA_REVOCATION_SLACK_SEC, &list, &n);
        if (r < 0)
                return r;

        for (size_t i = 0; i < n; i++) {
                char hex[2 * DB_CERT_SERIAL_MAX + 1];

                hex_encode(list[i].serial, list[i].serial_len, hex);
                r = ca_revoked_add(ca, hex);
                if (r < 0)
                        return r;
        }

        /* CRL numbers only grow: the issue time in microseconds. */
        for (size_t i = 0; i < sizeof number; i++)
                number[i] = (uint8_t) (usec >> (8 * (sizeof number - 1 - i)));

        g = gnutls_x509_crl_init(&crl);
        if (g >= 0)
                g = gnutls_x509_crl_set_version(crl, 2);
        if (g >= 0)
                g = gnutls_x509_crl_set_this_update(crl, now);
        if (g >= 0)
                g = gnutls_x509_crl_set_next_update(crl, now + CA_CRL_LIFETIME_SEC);
        if (g >= 0)
                g = gnutls_x509_crl_set_number(crl, number, sizeof number);
        if (g >= 0)
                g = gnutls_x509_crl_set_authority_key_id(crl, ca->ca_key_id, ca->ca_key_id_len);
        for (size_t i = 0; g >= 0 && i < n; i++) {
                /* Expired certificates fail verification anyway; keep the CRL small. */
                if (list[i].not_after_sec < (int64_t) now - CA_CLOCK_SKEW_SEC)
                        continue;
                g = gnutls_x509_crl_set_crt_serial(crl, list[i].serial, list[i].serial_len,
                                                   (time_t) (list[i].revoked_usec / 1000000));
        }
        if (g >= 0)
                g = gnutls_x509_crl_privkey_sign(crl, ca->ca_crt, ca->ca_key, ca_sign_digest(), 0);
        if (g >= 0)
                g = gnutls_x509_crl_export2(crl, GNUTLS_X509_FMT_PEM, &d);
        if (g < 0)
                return ca_errno(g);
        pem = strndup((const char *) d.data, d.size);
        gnutls_datum_release(&d);
        if (!pem)
                return -ENOMEM;

        free(ca->crl_pem);
        ca->crl_pem = pem;
        if (ca->crl)
                gnutls_x509_crl_deinit(ca->crl);
        ca->crl = TAKE_PTR(crl);
        ca->crl_this_update = now;
        return 0;
}

/* ---- credentials ---- */

TlsCredentials *tls_credentials_ref(TlsCredentials *t) {
        if (t)
                t->n_ref++;
        return t;
}

TlsCredentials *tls_credentials_unref(TlsCredentials *t) {
        if (!t || --t->n_ref > 0)
                return NULL;
        gnutls_certificate_free_credentials(t->cred);
        free(t);
        return NULL;
}

gnutls_certificate_credentials_t tls_credentials_get(const TlsCredentials *t) {
        return t ? t->cred : NULL;
}

static _Atomic uint64_t ca_credentials_generation_counter = 1;

uint64_t ca_credentials_generation(void) {
        return ca_credentials_generation_counter;
}

static int ca_make_credentials(SecdCA *ca) {
        TlsCredentials *t;
        int g;

        t = calloc(1, sizeof *t);
        if (!t)
                return -ENOMEM;
        t->n_ref = 1;
        g = gnutls_certificate_allocate_credentials(&t->cred);
        if (g >= 0)
                g = gnutls_certificate_set_x509_key(t->cred, &ca->server_crt, 1, ca->server_key);
        if (g >= 0)
                g = gnutls_certificate_set_x509_trust(t->cred, &ca->ca_crt, 1);
        if (g >= 0)
                g = gnutls_certificate_set_x509_crl(t->cred, &ca->crl, 1);
        if (g < 0) {
                if (t->cred)
                        gnutls_certificate_free_credentials(t->cred);
                free(t);
                return ca_errno(g);
        }
        tls_credentials_unref(ca->credentials);
        ca->credentials = t;
        ca_credentials_generation_counter++;    /* verdicts remembered by tls.c were made under the old CA/CRL */
        return 0;
}

int ca_credentials(SecdCA *ca, TlsCredentials **ret) {
        if (!ca || !ret || !ca->credentials)
                return -EINVAL;
        *ret = tls_credentials_ref(ca->credentials);
        return 0;
}

/* ---- the server certificate ---- */

static int ca_make_server(SecdCA *ca) {
        _cleanup_(x509_privkey_deinitp) gnutls_x509_privkey_t key = NULL;
        _cleanup_(x509_crt_deinitp) gnutls_x509_crt_t crt = NULL;
        _cleanup_(pubkey_deinitp) gnutls_pubkey_t pub = NULL;
        _cleanup_(privkey_deinitp) gnutls_privkey_t priv = NULL;
        uint8_t serial[CA_SERIAL_LEN];
        int r, g;

        r = ca_generate_key(&key);
        if (r < 0)
                return r;
        g = gnutls_privkey_init(&priv);
        if (g >= 0)
                g = gnutls_privkey_import_x509(priv, key, 0);
        if (g >= 0)
                g = gnutls_pubkey_init(&pub);
        if (g >= 0)
                g = gnutls_pubkey_import_privkey(pub, priv, 0, 0);
        if (g < 0)
                return ca_errno(g);
        r = ca_make_cert(ca, pub, CERT_SERVER, "secd server", "secd://server",
                         ca_add_usec(ca_now(), ca->settings.server_lifetime_usec), serial, &crt);
        if (r < 0)
                return r;

        if (ca->server_crt)
                gnutls_x509_crt_deinit(ca->server_crt);
        if (ca->server_key)
                gnutls_x509_privkey_deinit(ca->server_key);
        ca->server_not_before = gnutls_x509_crt_get_activation_time(crt) + CA_CLOCK_SKEW_SEC;
        ca->server_not_after = gnutls_x509_crt_get_expiration_time(crt);
        ca->server_crt = TAKE_PTR(crt);
        ca->server_key = TAKE_PTR(key);
        return 0;
}

int ca_maybe_renew_server(SecdCA *ca) {
        time_t now = ca_now();
        bool server, crl;
        int r;

        if (!ca)
                return -EINVAL;
        server = now >= ca->server_not_before + (ca->server_not_after - ca->server_not_before) * 2 / 3;
        crl = now >= ca->crl_this_update + CA_CRL_LIFETIME_SEC / 2;
        if (!server && !crl)
                return 0;
        if (server) {
                r = ca_make_server(ca);
                if (r < 0)
                        return r;
        }
        if (crl) {
                r = ca_make_crl(ca);
                if (r < 0)
                        return r;
        }
        r = ca_make_credentials(ca);
        if (r < 0)
                return r;
        return 1;
}

/* ---- the CA itself ---- */

static int ca_set_signer(SecdCA *ca) {
        size_t len = sizeof ca->ca_key_id;
        int g;

        g = gnutls_privkey_init(&ca->ca_key);
        if (g >= 0)
                g = gnutls_privkey_import_x509(ca->ca_key, ca->ca_x509_key, 0);
        if (g < 0)
                return ca_errno(g);
        g = gnutls_x509_crt_get_subject_key_id(ca->ca_crt, ca->ca_key_id, &len, NULL);
        if (g < 0) {
                len = sizeof ca->ca_key_id;
                g = gnutls_x509_crt_get_key_id(ca->ca_crt, GNUTLS_KEYID_USE_SHA1, ca->ca_key_id, &len);
        }
        if (g < 0)
                return ca_errno(g);
        ca->ca_key_id_len = len;
        ca->ca_not_after = gnutls_x509_crt_get_expiration_time(ca->ca_crt);
        return crt_export_pem(ca->ca_crt, &ca->ca_pem);
}

/* A self-signed CA certificate for ca->ca_x509_key. */
static int ca_make_ca_cert(SecdCA *ca) {
        _cleanup_(x509_crt_deinitp) gnutls_x509_crt_t crt = NULL;
        _cleanup_(privkey_deinitp) gnutls_privkey_t priv = NULL;
        uint8_t serial[CA_SERIAL_LEN], key_id[64];
        size_t key_id_len = sizeof key_id;
        time_t now = ca_now();
        int r, g;

        r = ca_random_serial(serial);
        if (r < 0)
                return r;
        g = gnutls_privkey_init(&priv);
        if (g >= 0)
                g = gnutls_privkey_import_x509(priv, ca->ca_x509_key, 0);
        if (g >= 0)
                g = gnutls_x509_crt_init(&crt);
        if (g >= 0)
                g = gnutls_x509_crt_set_version(crt, 3);
        if (g >= 0)
                g = gnutls_x509_crt_set_serial(crt, serial, sizeof serial);
        if (g >= 0)
                g = gnutls_x509_crt_set_activation_time(crt, now - CA_CLOCK_SKEW_SEC);
        if (g >= 0)
                g = gnutls_x509_crt_set_expiration_time(crt, ca_add_usec(now, ca->settings.ca_lifetime_usec));
        if (g >= 0)
                g = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, "secd CA", strlen("secd CA"));
        if (g >= 0)
                g = gnutls_x509_crt_set_key(crt, ca->ca_x509_key);
        if (g >= 0)
                g = gnutls_x509_crt_set_basic_constraints(crt, 1, 0);
        if (g >= 0)
                g = gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN);
        if (g >= 0)
                g = gnutls_x509_crt_get_key_id(crt, GNUTLS_KEYID_USE_SHA1, key_id, &key_id_len);
        if (g >= 0)
                g = gnutls_x509_crt_set_subject_key_id(crt, key_id, key_id_len);
        if (g >= 0)
                g = gnutls_x509_crt_privkey_sign(crt, crt, priv, ca_sign_digest(), 0);
        if (g < 0)
                return ca_errno(g);
        ca->ca_crt = TAKE_PTR(crt);
        return 0;
}

static int ca_write_cert(SecdCA *ca, int dir_fd) {
        gnutls_datum_t d = {};
        int r, g;

        g = gnutls_x509_crt_export2(ca->ca_crt, GNUTLS_X509_FMT_PEM, &d);
        if (g < 0)
                return ca_errno(g);
        r = write_file_atomic(dir_fd, CA_CERT_FILE, d.data, d.size, 0644);
        gnutls_datum_release(&d);
        if (r < 0)
                return log_error_errno(r, "CA: cannot write %s: %m", CA_CERT_FILE);
        return 0;
}

static int ca_create(SecdCA *ca, int dir_fd) {
        gnutls_datum_t d = {};
        int r, g;

        r = ca_generate_key(&ca->ca_x509_key);
        if (r < 0)
                return log_error_errno(r, "CA: cannot generate the CA key: %m");
        g = gnutls_x509_privkey_export2_pkcs8(ca->ca_x509_key, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN, &d);
        if (g < 0)
                return ca_errno(g);
        r = write_file_atomic(dir_fd, CA_KEY_FILE, d.data, d.size, 0600);
        gnutls_datum_erase(&d);
        if (r < 0)
                return log_error_errno(r, "CA: cannot write %s: %m", CA_KEY_FILE);
        r = ca_make_ca_cert(ca);
        if (r < 0)
                return log_error_errno(r, "CA: cannot make the CA certificate: %m");
        r = ca_write_cert(ca, dir_fd);
        if (r < 0)
                return r;
        log_info("CA: created a new CA in the state directory (%s, %s).", CA_KEY_FILE, CA_CERT_FILE);
        return 0;
}

static int ca_load(SecdCA *ca, int dir_fd) {
        _cleanup_erase_ char *key_pem = NULL;
        _cleanup_free_ char *crt_pem = NULL;
        size_t key_size = 0, crt_size = 0;
        uint8_t id_key[64], id_crt[64];
        size_t id_key_len = sizeof id_key, id_crt_len = sizeof id_crt;
        gnutls_datum_t d;
        int r, g;

        r = read_file_checked(dir_fd, CA_KEY_FILE, true, &key_pem, &key_size);
        if (r < 0)
                return r == -EPERM || r == -EBADMSG ? r : log_error_errno(r, "CA: cannot read %s: %m", CA_KEY_FILE);
        d = (gnutls_datum_t) { .data = (unsigned char *) key_pem, .size = (unsigned) key_size };
        g = gnutls_x509_privkey_init(&ca->ca_x509_key);
        if (g >= 0)
                g = gnutls_x509_privkey_import2(ca->ca_x509_key, &d, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN);
        if (g < 0) {
                log_error("CA: %s is not a usable private key: %s", CA_KEY_FILE, gnutls_strerror(g));
                return -EBADMSG;
        }

        r = read_file_checked(dir_fd, CA_CERT_FILE, false, &crt_pem, &crt_size);
        if (r == -ENOENT) {
                /* A start that died between writing the key and the certificate. */
                log_notice("CA: %s exists without %s; making a certificate for the existing key.", CA_KEY_FILE,
                           CA_CERT_FILE);
                r = ca_make_ca_cert(ca);
                if (r < 0)
                        return log_error_errno(r, "CA: cannot make the CA certificate: %m");
                return ca_write_cert(ca, dir_fd);
        }
        if (r < 0)
                return r == -EBADMSG ? r : log_error_errno(r, "CA: cannot read %s: %m", CA_CERT_FILE);
        d = (gnutls_datum_t) { .data = (unsigned char *) crt_pem, .size = (unsigned) crt_size };
        g = gnutls_x509_crt_init(&ca->ca_crt);
        if (g >= 0)
                g = gnutls_x509_crt_import(ca->ca_crt, &d, GNUTLS_X509_FMT_PEM);
        if (g < 0) {
                log_error("CA: %s is not a usable certificate: %s", CA_CERT_FILE, gnutls_strerror(g));
                return -EBADMSG;
        }
        g = gnutls_x509_privkey_get_key_id(ca->ca_x509_key, GNUTLS_KEYID_USE_SHA1, id_key, &id_key_len);
        if (g >= 0)
                g = gnutls_x509_crt_get_key_id(ca->ca_crt, GNUTLS_KEYID_USE_SHA1, id_crt, &id_crt_len);
        if (g < 0 || id_key_len != id_crt_len || memcmp(id_key, id_crt, id_key_len) != 0) {
                log_error("CA: %s does not belong to the key in %s.", CA_CERT_FILE, CA_KEY_FILE);
                return -EBADMSG;
        }
        if (gnutls_x509_crt_get_expiration_time(ca->ca_crt) <= ca_now()) {
                log_error("CA: the CA certificate %s has expired.", CA_CERT_FILE);
                return -EKEYEXPIRED;
        }
        return 0;
}

SecdCA *ca_free(SecdCA *ca) {
        if (!ca)
                return NULL;
        tls_credentials_unref(ca->credentials);
        if (ca->crl)
                gnutls_x509_crl_deinit(ca->crl);
        if (ca->server_crt)
                gnutls_x509_crt_deinit(ca->server_crt);
        if (ca->server_key)
                gnutls_x509_privkey_deinit(ca->server_key);
        if (ca->ca_key)
                gnutls_privkey_deinit(ca->ca_key);
        if (ca->ca_x509_key)
                gnutls_x509_privkey_deinit(ca->ca_x509_key);
        if (ca->ca_crt)
                gnutls_x509_crt_deinit(ca->ca_crt);
        free(ca->ca_pem);
        free(ca->crl_pem);
        free(ca->revoked);
        free(ca);
        return NULL;
}

int ca_open(const char *state_dir, Db *db, const CaSettings *settings, SecdCA **ret) {
        _cleanup_(ca_freep) SecdCA *ca = NULL;
        _cleanup_close_ int dir_fd = -EBADF;
        int r;

        if (!state_dir || !db || !ret)
                return -EINVAL;

        ca = calloc(1, sizeof *ca);
        if (!ca)
                return -ENOMEM;
        ca->db = db;
        if (settings)
                ca->settings = *settings;
        if (ca->settings.client_lifetime_usec == 0)
                ca->settings.client_lifetime_usec = CA_CLIENT_LIFETIME_DEFAULT;
        if (ca->settings.server_lifetime_usec == 0)
                ca->settings.server_lifetime_usec = CA_SERVER_LIFETIME_DEFAULT;
        if (ca->settings.ca_lifetime_usec == 0)
                ca->settings.ca_lifetime_usec = CA_CA_LIFETIME_DEFAULT;

        dir_fd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir_fd < 0)
                return log_error_errno(negative_errno(), "CA: cannot open the state directory %s: %m", state_dir);

        if (faccessat(dir_fd, CA_KEY_FILE, F_OK, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno != ENOENT)
                        return log_error_errno(negative_errno(), "CA: cannot look at %s/%s: %m", state_dir,
                                               CA_KEY_FILE);
                if (faccessat(dir_fd, CA_CERT_FILE, F_OK, AT_SYMLINK_NOFOLLOW) >= 0) {
                        log_error("CA: %s/%s exists but its key %s does not; refusing to make a new CA over it.",
                                  state_dir, CA_CERT_FILE, CA_KEY_FILE);
                        return -ENOKEY;
                }
                r = ca_create(ca, dir_fd);
        } else
                r = ca_load(ca, dir_fd);
        if (r < 0)
                return r;

        r = ca_set_signer(ca);
        if (r < 0)
                return log_error_errno(r, "CA: cannot use the CA key: %m");
        r = ca_make_server(ca);
        if (r < 0)
                return log_error_errno(r, "CA: cannot make the server certificate: %m");
        r = ca_make_crl(ca);
        if (r < 0)
                return log_error_errno(r, "CA: cannot make the CRL: %m");
        r = ca_make_credentials(ca);
        if (r < 0)
                return log_error_errno(r, "CA: cannot make the TLS credentials: %m");

        *ret = TAKE_PTR(ca);
        return 0;
}

int ca_pem(SecdCA *ca, char **ret) {
        char *s;

        if (!ca || !ret)
                return -EINVAL;
        s = strdup(ca->ca_pem);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int ca_crl_pem(SecdCA *ca, char **ret) {
        char *s;

        if (!ca || !ret)
                return -EINVAL;
        s = strdup(ca->crl_pem);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

/* ---- issuing ---- */

static bool ca_key_type_ok(gnutls_pubkey_t pub) {
        gnutls_ecc_curve_t curve = GNUTLS_ECC_CURVE_INVALID;
        int pk = gnutls_pubkey_get_pk_algorithm(pub, NULL);

        if (pk == GNUTLS_PK_EDDSA_ED25519)
                return true;
        if (pk == GNUTLS_PK_ECDSA)
                return gnutls_pubkey_export_ecc_raw(pub, &curve, NULL, NULL) >= 0 &&
                       curve == GNUTLS_ECC_CURVE_SECP256R1;
        return false;
}

static int ca_finish_issue(SecdCA *ca, gnutls_x509_crt_t crt, const uint8_t serial[CA_SERIAL_LEN],
                           const char *uri, const uint32_t *uid, const uint8_t *sha256, char **ret_cert_pem,
                           uint64_t *ret_not_after_usec, char ret_serial[CA_SERIAL_HEX_LEN + 1]) {
        _cleanup_free_ char *pem = NULL;
        int r;

        r = crt_export_pem(crt, &pem);
        if (r < 0)
                return r;
        r = ca_record(ca, crt, serial, uri, uid, sha256, pem);
        if (r < 0)
                return r;
        if (ret_not_after_usec)
                *ret_not_after_usec = (uint64_t) gnutls_x509_crt_get_expiration_time(crt) * 1000000;
        if (ret_serial)
                hex_encode(serial, CA_SERIAL_LEN, ret_serial);
        *ret_cert_pem = TAKE_PTR(pem);
        return 0;
}

int ca_issue_local(SecdCA *ca, const char *csr_pem, size_t csr_len, uint32_t uid,
                   const uint8_t sha256[SHA256_DIGEST_LEN], char **ret_cert_pem, uint64_t *ret_not_after_usec,
                   char ret_serial[CA_SERIAL_HEX_LEN + 1]) {
        _cleanup_(x509_crq_deinitp) gnutls_x509_crq_t crq = NULL;
        _cleanup_(pubkey_deinitp) gnutls_pubkey_t pub = NULL;
        _cleanup_(x509_crt_deinitp) gnutls_x509_crt_t crt = NULL;
        char sha_hex[SHA256_HEX_LEN + 1], uri[128], cn[32];
        uint8_t serial[CA_SERIAL_LEN];
        gnutls_datum_t d;
        int r, g;

        if (!ca || !csr_pem || !sha256 || !ret_cert_pem || uid == UINT32_MAX)
                return -EINVAL;
        if (csr_len == 0 || csr_len > CA_CSR_MAX || memchr(csr_pem, '\0', csr_len))
                return -EBADMSG;

        d = (gnutls_datum_t) { .data = (unsigned char *) csr_pem, .size = (unsigned) csr_len };
        g = gnutls_x509_crq_init(&crq);
        if (g < 0)
                return ca_errno(g);
        g = gnutls_x509_crq_import(crq, &d, GNUTLS_X509_FMT_PEM);
        if (g < 0)
                return -EBADMSG;
        if (gnutls_x509_crq_verify(crq, 0) < 0)
                return -EKEYREJECTED;
        g = gnutls_pubkey_init(&pub);
        if (g >= 0)
                g = gnutls_pubkey_import_x509_crq(pub, crq, 0);
        if (g < 0)
                return -EBADMSG;
        if (!ca_key_type_ok(pub))
                return -EKEYREJECTED;

        /* Only the public key is taken from the request: its subject and extensions are ignored. */
        hex_encode(sha256, SHA256_DIGEST_LEN, sha_hex);
        (void) snprintf(uri, sizeof uri, "secd://local/uid/%" PRIu32 "/sha256/%s", uid, sha_hex);
        (void) snprintf(cn, sizeof cn, "uid %" PRIu32, uid);
        r = ca_make_cert(ca, pub, CERT_CLIENT, cn, uri, ca_add_usec(ca_now(), ca->settings.client_lifetime_usec),
                         serial, &crt);
        if (r < 0)
                return r;
        return ca_finish_issue(ca, crt, serial, uri, &uid, sha256, ret_cert_pem, ret_not_after_usec, ret_serial);
}

bool ca_remote_name_is_valid(const char *name) {
        size_t n;

        if (!name)
                return false;
        n = strlen(name);
        if (n < 1 || n > CA_REMOTE_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = name[i];
                if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                      c == '_' || c == '-'))
                        return false;
        }
        return true;
}

int ca_issue_remote(SecdCA *ca, const char *name, uint64_t validity_usec, char **ret_key_pem, char **ret_cert_pem,
                    uint64_t *ret_not_after_usec, char ret_serial[CA_SERIAL_HEX_LEN + 1]) {
        _cleanup_(x509_privkey_deinitp) gnutls_x509_privkey_t key = NULL;
        _cleanup_(privkey_deinitp) gnutls_privkey_t priv = NULL;
        _cleanup_(pubkey_deinitp) gnutls_pubkey_t pub = NULL;
        _cleanup_(x509_crt_deinitp) gnutls_x509_crt_t crt = NULL;
        _cleanup_erase_ char *key_pem = NULL;
        gnutls_datum_t d = {};
        uint8_t serial[CA_SERIAL_LEN];
        char uri[sizeof "secd://remote/" + CA_REMOTE_NAME_MAX];
        time_t now = ca_now();
        int r, g;

        if (!ca || !ret_key_pem || !ret_cert_pem)
                return -EINVAL;
        if (!ca_remote_name_is_valid(name))
                return -EINVAL;
        if (validity_usec < 1000000 || ca_add_usec(now, validity_usec) > ca->ca_not_after)
                return -ERANGE;

        r = ca_generate_key(&key);
        if (r < 0)
                return r;
        g = gnutls_privkey_init(&priv);
        if (g >= 0)
                g = gnutls_privkey_import_x509(priv, key, 0);
        if (g >= 0)
                g = gnutls_pubkey_init(&pub);
        if (g >= 0)
                g = gnutls_pubkey_import_privkey(pub, priv, 0, 0);
        if (g >= 0)
                g = gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN, &d);
        if (g < 0) {
                gnutls_datum_erase(&d);
                return ca_errno(g);
        }
        key_pem = strndup((const char *) d.data, d.size);
        gnutls_datum_erase(&d);
        if (!key_pem)
                return -ENOMEM;

        (void) snprintf(uri, sizeof uri, "secd://remote/%s", name);
        r = ca_make_cert(ca, pub, CERT_CLIENT, name, uri, ca_add_usec(now, validity_usec), serial, &crt);
        if (r < 0)
                return r;
        r = ca_finish_issue(ca, crt, serial, uri, NULL, NULL, ret_cert_pem, ret_not_after_usec, ret_serial);
        if (r < 0)
                return r;
        *ret_key_pem = TAKE_PTR(key_pem);
        return 0;
}

/* ---- revocation ---- */

static int ca_serial_parse(const char *serial_hex, uint8_t serial[CA_SERIAL_LEN], char normalized[CA_SERIAL_HEX_LEN + 1]) {
        if (!serial_hex || strlen(serial_hex) != CA_SERIAL_HEX_LEN)
                return -EINVAL;
        if (hex_decode_exact(serial_hex, serial, CA_SERIAL_LEN) < 0)
                return -EINVAL;
        hex_encode(serial, CA_SERIAL_LEN, normalized);
        return 0;
}

int ca_revoke(SecdCA *ca, const char *serial_hex) {
        uint8_t serial[CA_SERIAL_LEN];
        char hex[CA_SERIAL_HEX_LEN + 1];
        int r;

        if (!ca)
                return -EINVAL;
        r = ca_serial_parse(serial_hex, serial, hex);
        if (r < 0)
                return r;
        r = db_cert_revoke(ca->db, serial, CA_SERIAL_LEN, 0, 0);
        if (r == -EEXIST) {
                (void) ca_revoked_add(ca, hex);
                return 0;
        }
        if (r < 0)
                return r;
        r = ca_revoked_add(ca, hex);
        if (r < 0)
                return r;
        r = ca_make_crl(ca);
        if (r >= 0)
                r = ca_make_credentials(ca);
        if (r < 0)
                /* Stored and in the set, so refused at every handshake; only the CRL is stale. */
                log_error_errno(r, "CA: revoked %s, but cannot remake the CRL: %m", hex);
        return 1;
}

int ca_is_revoked(SecdCA *ca, const char *serial_hex) {
        char hex[sizeof(RevokedSerial)];
        size_t n;

        if (!ca || !serial_hex)
                return -EINVAL;
        n = strlen(serial_hex);
        if (n == 0 || n >= sizeof hex)
                return -EINVAL;
        for (size_t i = 0; i <= n; i++)
                hex[i] = (char) (serial_hex[i] >= 'A' && serial_hex[i] <= 'F' ? serial_hex[i] - 'A' + 'a' : serial_hex[i]);
        if (ca->n_revoked == 0)
                return 0;
        return bsearch(hex, ca->revoked, ca->n_revoked, sizeof(RevokedSerial), revoked_cmp) ? 1 : 0;
}

/* ---- identity ---- */

static int ca_uri_parse(const char *uri, CertIdentity *id) {
        const char *p;

        if ((p = startswith(uri, "secd://local/uid/"))) {
                const char *slash = strchr(p, '/'), *hex;
                char digits[11];
                size_t n;
                uint32_t uid;

                if (!slash)
                        return -EBADMSG;
                n = (size_t) (slash - p);
                if (n < 1 || n > 10 || (p[0] == '0' && n > 1))
                        return -EBADMSG;
                for (size_t i = 0; i < n; i++)
                        if (p[i] < '0' || p[i] > '9')
                                return -EBADMSG;
                memcpy(digits, p, n);
                digits[n] = '\0';
                if (parse_uid(digits, &uid) < 0)
                        return -EBADMSG;
                hex = startswith(slash, "/sha256/");
                if (!hex || strlen(hex) != SHA256_HEX_LEN)
                        return -EBADMSG;
                for (size_t i = 0; i < SHA256_HEX_LEN; i++)
                        if (!((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f')))
                                return -EBADMSG;
                if (hex_decode_exact(hex, id->sha256, SHA256_DIGEST_LEN) < 0)
                        return -EBADMSG;
                id->local = true;
                id->uid = uid;
                return 0;
        }
        if ((p = startswith(uri, "secd://remote/"))) {
                if (!ca_remote_name_is_valid(p))
                        return -EBADMSG;
                id->local = false;
                memcpy(id->name, p, strlen(p) + 1);     /* at most CA_REMOTE_NAME_MAX, checked above */
                return 0;
        }
        return -EBADMSG;
}

int ca_cert_identity(const gnutls_datum_t *der, CertIdentity *ret) {
        _cleanup_(x509_crt_deinitp) gnutls_x509_crt_t crt = NULL;
        CertIdentity id = {};
        uint8_t serial[DB_CERT_SERIAL_MAX];
        size_t serial_len = sizeof serial;
        unsigned n_uri = 0;
        int r, g;

        if (!der || !der->data || !ret)
                return -EINVAL;
        g = gnutls_x509_crt_init(&crt);
        if (g < 0)
                return ca_errno(g);
        if (gnutls_x509_crt_import(crt, der, GNUTLS_X509_FMT_DER) < 0)
                return -EBADMSG;

        for (unsigned i = 0; i < CA_SAN_MAX; i++) {
                char buf[CA_URI_MAX + 1];
                size_t size = sizeof buf - 1;

                memset(buf, 0, sizeof buf);
                g = gnutls_x509_crt_get_subject_alt_name(crt, i, buf, &size, NULL);
                if (g == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
                        break;
                if (g == GNUTLS_E_SHORT_MEMORY_BUFFER)
                        return -EBADMSG;
                if (g < 0)
                        return -EBADMSG;
                if (g != GNUTLS_SAN_URI)
                        continue;
                if (++n_uri > 1)
                        return -EBADMSG;
                if (size >= sizeof buf || strlen(buf) != size)
                        return -EBADMSG;
                r = ca_uri_parse(buf, &id);
                if (r < 0)
                        return r;
        }
        if (n_uri != 1)
                return -EBADMSG;

        g = gnutls_x509_crt_get_serial(crt, serial, &serial_len);
        if (g < 0 || serial_len != CA_SERIAL_LEN)
                return -EBADMSG;
        hex_encode(serial, serial_len, id.serial);
        id.not_after_usec = (uint64_t) gnutls_x509_crt_get_expiration_time(crt) * 1000000;

        *ret = id;
        return 0;
}
