/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * io.secd.Certs and io.secd.CA: certificates for remote clients of the tcp
 * endpoint, the list of issued certificates, revocation, the CRL, and the
 * facts about the CA. The CA itself (keys, signing, the store) is ca.c;
 * this file checks what an administrator asked for, calls it, and reports.
 *
 * Certs.Issue is the only reply secd ever sends with a private key in it.
 * That reply is serialised here by hand into one buffer (no json-c object
 * or print buffer ever holds the key), queued with control_reply_secret()
 * (which wipes every copy it makes), and the key is wiped as soon as the
 * reply is queued.
 */
#include <assert.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "ca.h"
#include "control.h"
#include "data.h"
#include "log.h"
#include "secd-messages.h"

#define CERTS_ERROR(name) "io.secd.Certs." name
#define CERTS_VALIDITY_DEFAULT_USEC (UINT64_C(30) * 24 * 3600 * 1000000)
#define CERTS_VALIDITY_MAX_USEC (UINT64_C(825) * 24 * 3600 * 1000000)
#define CERTS_VALIDITY_TEXT_MAX 64
#define CERTS_REMOTE_PREFIX "secd://remote/"
#define CERTS_LOCAL_PREFIX "secd://local/"
#define RFC3339_MAX 32
#define USEC_PER_SEC UINT64_C(1000000)

static int add_obj(json_object *o, const char *k, json_object *v) {
        if (!v || json_object_object_add(o, k, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static int add_str(json_object *o, const char *k, const char *v) {
        return add_obj(o, k, json_object_new_string(v));
}

static int add_int(json_object *o, const char *k, int64_t v) {
        return add_obj(o, k, json_object_new_int64(v));
}

/* "2026-11-22T04:23:51Z" */
static void format_rfc3339(int64_t sec, char buf[static RFC3339_MAX]) {
        struct tm tm;
        time_t t = (time_t) sec;

        if (!gmtime_r(&t, &tm) || strftime(buf, RFC3339_MAX, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                (void) snprintf(buf, RFC3339_MAX, "@%" PRIi64, sec);
}

static int add_time(json_object *o, const char *k, int64_t sec) {
        char buf[RFC3339_MAX];

        format_rfc3339(sec, buf);
        return add_str(o, k, buf);
}

static int reply_invalid_name(ControlConnection *c, const char *reason) {
        json_object *p = json_object_new_object();

        if (!p || add_str(p, "reason", reason) < 0) {
                json_object_put(p);
                return -ENOMEM;
        }
        return control_error(c, CERTS_ERROR("InvalidName"), p);
}

static int reply_not_available(ControlConnection *c, const char *method) {
        json_object *p = json_object_new_object();

        /* The CA is opened at start; without it (it failed to open) nothing here can work. */
        if (!p || add_str(p, "method", method) < 0) {
                json_object_put(p);
                return -ENOMEM;
        }
        return control_error(c, "org.varlink.service.MethodNotImplemented", p);
}

/* Journal and audit trail: one entry per certificate event. */
static void certs_log_event(ControlConnection *c, const char *message_id, const char *kind, const char *message,
                            const char *serial, const char *name, int64_t not_after_sec) {
        Manager *m = c->manager;
        _cleanup_free_ char *f_serial = NULL, *f_name = NULL, *f_uid = NULL;
        _cleanup_(json_object_unrefp) json_object *fields = NULL;

        f_serial = strdup_printf("CERT_SERIAL=%s", serial);
        f_name = strdup_printf("CERT_NAME=%s", name ?: "");
        f_uid = strdup_printf("ADMIN_UID=%u", (unsigned) control_peer_uid(c));
        if (f_serial && f_name && f_uid)
                log_struct(LOG_NOTICE, message, message_id, f_serial, f_name, f_uid, NULL);
        else
                (void) log_oom();

        fields = json_object_new_object();
        if (!fields || add_int(fields, "admin_uid", control_peer_uid(c)) < 0 || add_str(fields, "serial", serial) < 0 ||
            (name && add_str(fields, "name", name) < 0) ||
            (not_after_sec > 0 && add_time(fields, "not_after", not_after_sec) < 0)) {
                (void) log_oom();
                return;
        }
        manager_audit(m, kind, message, fields);
}

/* ---- a reply serialised by hand, for the one that carries a private key ---- */

/* Bytes of s as a JSON string, quotes included; every byte below 0x20 is escaped. */
static size_t json_quoted_len(const char *s) {
        size_t n = 2;

        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if (*p == '"' || *p == '\\' || *p == '\n' || *p == '\r' || *p == '\t')
                        n += 2;
                else if (*p < 0x20 || *p == 0x7f)
                        n += 6;
                else
                        n += 1;
        return n;
}

static char *json_quoted_put(char *out, const char *s) {
        static const char hex[] = "0123456789abcdef";

        *out++ = '"';
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                switch (*p) {
                case '"':
                case '\\':
                        *out++ = '\\';
                        *out++ = (char) *p;
                        break;
                case '\n':
                        *out++ = '\\';
                        *out++ = 'n';
                        break;
                case '\r':
                        *out++ = '\\';
                        *out++ = 'r';
                        break;
                case '\t':
                        *out++ = '\\';
                        *out++ = 't';
                        break;
                default:
                        if (*p < 0x20 || *p == 0x7f) {
                                memcpy(out, "\\u00", 4);
                                out[4] = hex[*p >> 4];
                                out[5] = hex[*p & 15];
                                out += 6;
                        } else
                                *out++ = (char) *p;
                }
        *out++ = '"';
        return out;
}

typedef struct SecretField {
        const char *key;
        const char *value;
} SecretField;

/*
 * {"parameters":{"k1":"v1",...}} and its NUL in one exactly sized buffer:
 * nothing is reallocated, so no copy of a value is left behind in freed
 * memory. The caller wipes the result (control_reply_secret() does).
 */
static int secret_reply_format(const SecretField *fields, size_t n_fields, char **ret, size_t *ret_size) {
        static const char head[] = "{\"parameters\":{", tail[] = "}}";
        size_t size = sizeof head - 1 + sizeof tail - 1 + 1;
        char *buf, *p;

        for (size_t i = 0; i < n_fields; i++) {
                size_t k = json_quoted_len(fields[i].key), v = json_quoted_len(fields[i].value);

                /* key, ':', value, and ',' between fields */
                if (!size_add_ok(size, k, &size) || !size_add_ok(size, v, &size) ||
                    !size_add_ok(size, 1 + (i > 0), &size))
                        return -ENOMEM;
        }
        buf = malloc(size);
        if (!buf)
                return -ENOMEM;
        p = mempcpy(buf, head, sizeof head - 1);
        for (size_t i = 0; i < n_fields; i++) {
                if (i > 0)
                        *p++ = ',';
                p = json_quoted_put(p, fields[i].key);
                *p++ = ':';
                p = json_quoted_put(p, fields[i].value);
        }
        p = mempcpy(p, tail, sizeof tail - 1);
        *p++ = '\0';
        assert((size_t) (p - buf) == size);
        *ret = buf;
        *ret_size = size;
        return 0;
}

/* ---- io.secd.Certs ---- */

int control_certs_issue(ControlConnection *c, const VarlinkCall *call) {
        Manager *m = c->manager;
        const char *name = NULL, *validity_s = NULL;
        const VarlinkField fields[] = {
                { "name", VARLINK_FIELD_STRING, VARLINK_FIELD_REQUIRED, &name },
                { "validity", VARLINK_FIELD_STRING, 0, &validity_s },
                {},
        };
        _cleanup_erase_ char *key_pem = NULL;
        _cleanup_free_ char *cert_pem = NULL, *ca = NULL, *message = NULL;
        char serial[CA_SERIAL_HEX_LEN + 1] = "", expires[RFC3339_MAX];
        uint64_t validity = CERTS_VALIDITY_DEFAULT_USEC, not_after_usec = 0;
        char *reply = NULL;
        size_t reply_size = 0;
        const char *bad = NULL;
        int r;

        if (varlink_params_extract(call->parameters, fields, &bad) < 0)
                return control_error_invalid_parameter(c, bad);
        if (!policy_cert_name_is_valid(name))
                return reply_invalid_name(c, "expected 1 to 64 characters of A-Z a-z 0-9 . _ -");
        if (validity_s) {
                if (strnlen(validity_s, CERTS_VALIDITY_TEXT_MAX + 1) > CERTS_VALIDITY_TEXT_MAX ||
                    parse_duration_usec(validity_s, &validity) < 0 || validity < USEC_PER_SEC ||
                    validity > CERTS_VALIDITY_MAX_USEC)
                        return control_error_invalid_parameter(c, "validity");
        }
        if (!m->ca)
                return reply_not_available(c, call->method);

        r = ca_issue_remote(m->ca, name, validity, &key_pem, &cert_pem, &not_after_usec, serial);
        if (r == -EINVAL)
                return reply_invalid_name(c, "not a valid certificate name");
        if (r == -ERANGE) /* would outlive the CA certificate */
                return control_error_invalid_parameter(c, "validity");
        if (r < 0)
                return log_error_errno(r, "Cannot issue a certificate for %s: %m", name);
        r = ca_pem(m->ca, &ca);
        if (r < 0)
                return r;

        format_rfc3339((int64_t) (not_after_usec / USEC_PER_SEC), expires);
        r = secret_reply_format((const SecretField[]) {
                                        { "key", key_pem },
                                        { "certificate", cert_pem },
                                        { "ca", ca },
                                        { "serial", serial },
                                        { "expires", expires },
                                },
                                5, &reply, &reply_size);
        if (r < 0)
                return r;
        r = control_reply_secret(c, reply, reply_size);
        /* Queued (or failed): either way the key has no business in memory any more. */
        key_pem = (erase_and_free(key_pem), NULL);

        message = strdup_printf("uid %u issued certificate %s for remote client \"%s\", valid until %s.",
                                (unsigned) control_peer_uid(c), serial, name, expires);
        certs_log_event(c, SECD_MESSAGE_CERT_ISSUED, "certs", message ?: "certificate issued", serial, name,
                        (int64_t) (not_after_usec / USEC_PER_SEC));
        return r;
}

static int cert_to_json(const DbCert *cert, json_object **ret) {
        _cleanup_(json_object_unrefp) json_object *o = NULL;
        char serial[2 * DB_CERT_SERIAL_MAX + 1], sha[SHA256_HEX_LEN + 1];
        const char *remote;

        hex_encode(cert->serial, MIN(cert->serial_len, (size_t) DB_CERT_SERIAL_MAX), serial);
        remote = cert->name && strncmp(cert->name, CERTS_REMOTE_PREFIX, strlen(CERTS_REMOTE_PREFIX)) == 0
                ? cert->name + strlen(CERTS_REMOTE_PREFIX) : NULL;

        o = json_object_new_object();
        if (!o || add_str(o, "serial", serial) < 0 || add_str(o, "kind", remote ? "remote" : "local") < 0)
                return -ENOMEM;
        if (remote && add_str(o, "name", remote) < 0)
                return -ENOMEM;
        if (cert->has_uid && add_int(o, "uid", cert->uid) < 0)
                return -ENOMEM;
        if (cert->has_sha256) {
                hex_encode(cert->sha256, SHA256_DIGEST_LEN, sha);
                if (add_str(o, "sha256", sha) < 0)
                        return -ENOMEM;
        }
        if (add_time(o, "not_before", cert->not_before_sec) < 0 || add_time(o, "not_after", cert->not_after_sec) < 0 ||
            add_obj(o, "revoked", json_object_new_boolean(cert->revoked)) < 0)
                return -ENOMEM;
        if (cert->revoked && add_time(o, "revoked_at", cert->revoked_usec / (int64_t) USEC_PER_SEC) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(o);
        return 0;
}

static void db_certs_freep(DbCert **certs, size_t n) {
        db_certs_free(*certs, n);
        *certs = NULL;
}

int control_certs_list(ControlConnection *c, const VarlinkCall *call) {
        Manager *m = c->manager;
        bool all = false;
        const VarlinkField fields[] = {
                { "all", VARLINK_FIELD_BOOL, 0, &all },
                {},
        };
        _cleanup_(json_object_unrefp) json_object *reply = NULL, *list = NULL;
        DbCert *certs = NULL;
        size_t n = 0;
        const char *bad = NULL;
        int64_t now = (int64_t) (now_usec(CLOCK_REALTIME) / USEC_PER_SEC);
        int r;

        if (varlink_params_extract(call->parameters, fields, &bad) < 0)
                return control_error_invalid_parameter(c, bad);

        r = db_cert_list(m->db, &certs, &n);
        if (r < 0)
                return log_error_errno(r, "Cannot list certificates: %m (%s)", db_last_error(m->db));

        list = json_object_new_array();
        if (!list) {
                db_certs_freep(&certs, n);
                return -ENOMEM;
        }
        /* The store gives the oldest first; newest first here. */
        for (size_t i = n; i > 0; i--) {
                const DbCert *cert = &certs[i - 1];
                json_object *o = NULL;

                if (!all && cert->not_after_sec <= now)
                        continue;
                r = cert_to_json(cert, &o);
                if (r >= 0 && json_object_array_add(list, o) < 0) {
                        json_object_put(o);
                        r = -ENOMEM;
                }
                if (r < 0) {
                        db_certs_freep(&certs, n);
                        return r;
                }
        }
        db_certs_freep(&certs, n);

        reply = json_object_new_object();
        if (!reply || add_obj(reply, "certificates", TAKE_PTR(list)) < 0)
                return -ENOMEM;
        return control_reply(c, TAKE_PTR(reply), false);
}

/* Revoke one serial; reports it, closes its sessions. 1 newly revoked, 0 already, negative errno. */
static int certs_revoke_one(ControlConnection *c, const char *serial, const char *name, int64_t not_after_sec) {
        Manager *m = c->manager;
        _cleanup_free_ char *message = NULL;
        int r;

        r = ca_revoke(m->ca, serial);
        if (r < 0)
                return r;
        /* Live sessions with this certificate end now (already revoked: nothing should be left, but be sure). */
        data_connections_revoked(m, serial);
        if (r == 0)
                return 0;

        if (name)
                message = strdup_printf("uid %u revoked certificate %s of remote client \"%s\".",
                                        (unsigned) control_peer_uid(c), serial, name);
        else
                message = strdup_printf("uid %u revoked certificate %s.", (unsigned) control_peer_uid(c), serial);
        certs_log_event(c, SECD_MESSAGE_CERT_REVOKED, "certs", message ?: "certificate revoked", serial, name,
                        not_after_sec);
        return 1;
}

static bool serial_is_valid(const char *s) {
        if (!s || strlen(s) != CA_SERIAL_HEX_LEN)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))
                        return false;
        return true;
}

int control_certs_revoke(ControlConnection *c, const VarlinkCall *call) {
        Manager *m = c->manager;
        const char *serial = NULL, *name = NULL;
        const VarlinkField fields[] = {
                { "serial", VARLINK_FIELD_STRING, 0, &serial },
                { "name", VARLINK_FIELD_STRING, 0, &name },
                {},
        };
        _cleanup_(json_object_unrefp) json_object *reply = NULL, *revoked = NULL;
        const char *bad = NULL;
        int r;

        if (varlink_params_extract(call->parameters, fields, &bad) < 0)
                return control_error_invalid_parameter(c, bad);
        /* Exactly one of the two. */
        if (!!serial == !!name)
                return control_error_invalid_parameter(c, serial ? "name" : "serial");
        if (serial && !serial_is_valid(serial))
                return control_error_invalid_parameter(c, "serial");
        if (name && !policy_cert_name_is_valid(name))
                return reply_invalid_name(c, "expected 1 to 64 characters of A-Z a-z 0-9 . _ -");
        if (!m->ca)
                return reply_not_available(c, call->method);

        revoked = json_object_new_array();
        if (!revoked)
                return -ENOMEM;

        if (serial) {
                char lower[CA_SERIAL_HEX_LEN + 1];

                for (size_t i = 0; i <= CA_SERIAL_HEX_LEN; i++)
                        lower[i] = (char) (serial[i] >= 'A' && serial[i] <= 'F' ? serial[i] - 'A' + 'a' : serial[i]);
                r = certs_revoke_one(c, lower, NULL, 0);
                if (r == -ENOENT)
                        return control_error(c, CERTS_ERROR("NoSuchCertificate"), NULL);
                if (r < 0)
                        return log_error_errno(r, "Cannot revoke certificate %s: %m", lower);
                if (json_object_array_add(revoked, json_object_new_string(lower)) < 0)
                        return -ENOMEM;
        } else {
                _cleanup_free_ char *uri = strdup_printf(CERTS_REMOTE_PREFIX "%s", name);
                DbCert *certs = NULL;
                size_t n = 0, matched = 0;

                if (!uri)
                        return -ENOMEM;
                r = db_cert_list(m->db, &certs, &n);
                if (r < 0)
                        return log_error_errno(r, "Cannot list certificates: %m (%s)", db_last_error(m->db));
                for (size_t i = n; i > 0; i--) {
                        const DbCert *cert = &certs[i - 1];
                        char hex[2 * DB_CERT_SERIAL_MAX + 1];

                        if (!streq_ptr(cert->name, uri) || cert->serial_len != CA_SERIAL_HEX_LEN / 2)
                                continue;
                        matched++;
                        hex_encode(cert->serial, cert->serial_len, hex);
                        r = certs_revoke_one(c, hex, name, cert->not_after_sec);
                        if (r < 0) {
                                log_error_errno(r, "Cannot revoke certificate %s of \"%s\": %m", hex, name);
                                db_certs_freep(&certs, n);
                                return r;
                        }
                        if (json_object_array_add(revoked, json_object_new_string(hex)) < 0) {
                                db_certs_freep(&certs, n);
                                return -ENOMEM;
                        }
                }
                db_certs_freep(&certs, n);
                if (matched == 0)
                        return control_error(c, CERTS_ERROR("NoSuchCertificate"), NULL);
        }

        reply = json_object_new_object();
        if (!reply || add_obj(reply, "revoked", TAKE_PTR(revoked)) < 0)
                return -ENOMEM;
        return control_reply(c, TAKE_PTR(reply), false);
}

int control_certs_crl(ControlConnection *c, const VarlinkCall *call) {
        Manager *m = c->manager;
        static const VarlinkField fields[] = { {} };
        _cleanup_(json_object_unrefp) json_object *reply = NULL;
        _cleanup_free_ char *crl = NULL;
        const char *bad = NULL;
        int r;

        if (varlink_params_extract(call->parameters, fields, &bad) < 0)
                return control_error_invalid_parameter(c, bad);
        if (!m->ca)
                return reply_not_available(c, call->method);
        r = ca_crl_pem(m->ca, &crl);
        if (r < 0)
                return log_error_errno(r, "Cannot get the CRL: %m");
        reply = json_object_new_object();
        if (!reply || add_str(reply, "crl", crl) < 0)
                return -ENOMEM;
        return control_reply(c, TAKE_PTR(reply), false);
}

/* ---- io.secd.CA ---- */

static void x509_crt_list_free(gnutls_x509_crt_t *crts, unsigned n) {
        for (unsigned i = 0; i < n; i++)
                gnutls_x509_crt_deinit(crts[i]);
        gnutls_free(crts);
}

static const char *ca_algorithm_name(gnutls_x509_crt_t crt) {
        gnutls_ecc_curve_t curve = GNUTLS_ECC_CURVE_INVALID;
        gnutls_datum_t x = {}, y = {};
        int pk = gnutls_x509_crt_get_pk_algorithm(crt, NULL);

        if (pk == GNUTLS_PK_EDDSA_ED25519)
                return "ed25519";
        if (pk == GNUTLS_PK_ECDSA && gnutls_x509_crt_get_pk_ecc_raw(crt, &curve, &x, &y) >= 0) {
                gnutls_free(x.data);
                gnutls_free(y.data);
                if (curve == GNUTLS_ECC_CURVE_SECP256R1)
                        return "ecdsa-p256";
        }
        return gnutls_pk_get_name((gnutls_pk_algorithm_t) pk) ?: "unknown";
}

int control_ca_get(ControlConnection *c, const VarlinkCall *call) {
        Manager *m = c->manager;
        static const VarlinkField fields[] = { {} };
        _cleanup_(json_object_unrefp) json_object *reply = NULL;
        _cleanup_free_ char *pem = NULL;
        gnutls_x509_crt_t *crts = NULL;
        unsigned n_crts = 0;
        gnutls_datum_t d, dn = {};
        uint8_t fp[SHA256_DIGEST_LEN];
        char fp_hex[SHA256_HEX_LEN + 1];
        size_t fp_size = sizeof fp;
        const char *bad = NULL;
        int r, g;

        if (varlink_params_extract(call->parameters, fields, &bad) < 0)
                return control_error_invalid_parameter(c, bad);
        if (!m->ca)
                return reply_not_available(c, call->method);
        r = ca_pem(m->ca, &pem);
        if (r < 0)
                return log_error_errno(r, "Cannot get the CA certificate: %m");

        /* The facts are about the first certificate of the bundle: the current one. */
        d = (gnutls_datum_t) { .data = (unsigned char *) pem, .size = (unsigned) strlen(pem) };
        g = gnutls_x509_crt_list_import2(&crts, &n_crts, &d, GNUTLS_X509_FMT_PEM, 0);
        if (g < 0 || n_crts == 0) {
                if (g >= 0)
                        x509_crt_list_free(crts, n_crts);
                return log_error_errno(-EBADMSG, "Cannot parse the CA certificate: %s",
                                       g < 0 ? gnutls_strerror(g) : "empty");
        }
        g = gnutls_x509_crt_get_fingerprint(crts[0], GNUTLS_DIG_SHA256, fp, &fp_size);
        if (g >= 0 && fp_size != sizeof fp)
                g = GNUTLS_E_INTERNAL_ERROR;
        if (g >= 0)
                g = gnutls_x509_crt_get_dn3(crts[0], &dn, 0);
        if (g < 0) {
                x509_crt_list_free(crts, n_crts);
                return log_error_errno(-EBADMSG, "Cannot read the CA certificate: %s", gnutls_strerror(g));
        }
        hex_encode(fp, sizeof fp, fp_hex);

        reply = json_object_new_object();
        r = reply ? 0 : -ENOMEM;
        if (r >= 0)
                r = add_str(reply, "ca", pem);
        if (r >= 0)
                r = add_str(reply, "algorithm", ca_algorithm_name(crts[0]));
        if (r >= 0)
                r = add_obj(reply, "subject", json_object_new_string_len((const char *) dn.data, (int) dn.size));
        if (r >= 0)
                r = add_time(reply, "not_before", (int64_t) gnutls_x509_crt_get_activation_time(crts[0]));
        if (r >= 0)
                r = add_time(reply, "not_after", (int64_t) gnutls_x509_crt_get_expiration_time(crts[0]));
        if (r >= 0)
                r = add_str(reply, "fingerprint", fp_hex);
        gnutls_free(dn.data);
        x509_crt_list_free(crts, n_crts);
        if (r < 0)
                return r;
        return control_reply(c, TAKE_PTR(reply), false);
}
