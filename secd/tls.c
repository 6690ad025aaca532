/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <gnutls/x509.h>

#include "log.h"
#include "tls.h"
#include "util.h"

struct TlsServer {
        sd_event *event;
        gnutls_priority_t priority;
        gnutls_datum_t ticket_key;      /* secret: wiped before it is freed */
        sd_event_source *rotate_source;
        uint64_t rotations;
};

static gnutls_typed_vdata_st tls_client_purpose[] = {
        { .type = GNUTLS_DT_KEY_PURPOSE_OID, .data = (unsigned char *) GNUTLS_KP_TLS_WWW_CLIENT },
};

int tls_error_to_errno(int e) {
        switch (e) {
        case GNUTLS_E_SUCCESS:
                return 0;
        case GNUTLS_E_AGAIN:
                return -EAGAIN;
        case GNUTLS_E_INTERRUPTED:
                return -EINTR;
        case GNUTLS_E_MEMORY_ERROR:
                return -ENOMEM;
        case GNUTLS_E_PREMATURE_TERMINATION:
        case GNUTLS_E_PUSH_ERROR:
        case GNUTLS_E_PULL_ERROR:
                return -ECONNRESET;
        case GNUTLS_E_CERTIFICATE_ERROR:
        case GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR:
        case GNUTLS_E_NO_CERTIFICATE_FOUND:
                return -EPERM;
        case GNUTLS_E_RECORD_OVERFLOW:
                return -EMSGSIZE;
        default:
                return -EPROTO;
        }
}

static void ticket_key_wipe(gnutls_datum_t *k) {
        if (!k->data)
                return;
        gnutls_memset(k->data, 0, k->size);
        gnutls_free(k->data);
        *k = (gnutls_datum_t) {};
}

int tls_server_rotate_ticket_key(TlsServer *s) {
        gnutls_datum_t k = {};
        int r;

        r = gnutls_session_ticket_key_generate(&k);
        if (r < 0)
                return tls_error_to_errno(r);
        /* Sessions copy the key when they enable tickets: the old one can go now. */
        ticket_key_wipe(&s->ticket_key);
        s->ticket_key = k;
        s->rotations++;
        return 0;
}

static int tls_on_rotate(sd_event_source *source, uint64_t usec, void *userdata) {
        TlsServer *s = userdata;
        int r;

        r = tls_server_rotate_ticket_key(s);
        if (r < 0)
                log_warning_errno(r, "Cannot replace the session ticket key, keeping the old one: %m");
        else
                log_debug("Session ticket key replaced (rotation %" PRIu64 ").", s->rotations);
        (void) sd_event_source_set_time(source, usec + TLS_TICKET_KEY_ROTATE_USEC);
        return sd_event_source_set_enabled(source, SD_EVENT_ON);
}

TlsServer *tls_server_free(TlsServer *s) {
        if (!s)
                return NULL;
        sd_event_source_disable_unref(s->rotate_source);
        if (s->priority)
                gnutls_priority_deinit(s->priority);
        ticket_key_wipe(&s->ticket_key);
        sd_event_unref(s->event);
        free(s);
        return NULL;
}

int tls_server_new(sd_event *event, TlsServer **ret) {
        _cleanup_(tls_server_freep) TlsServer *s = NULL;
        const char *err_pos = NULL;
        int r;

        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->event = sd_event_ref(event);

        r = gnutls_priority_init2(&s->priority, TLS_PRIORITY, &err_pos, 0);
        if (r < 0)
                return log_error_errno(tls_error_to_errno(r), "Bad TLS priority string at \"%s\": %s",
                                       err_pos ?: "?", gnutls_strerror(r));
        r = tls_server_rotate_ticket_key(s);
        if (r < 0)
                return log_error_errno(r, "Cannot make a session ticket key: %m");
        r = sd_event_add_time_relative(event, &s->rotate_source, CLOCK_MONOTONIC, TLS_TICKET_KEY_ROTATE_USEC,
                                       TLS_TICKET_KEY_ROTATE_USEC / 60, tls_on_rotate, s);
        if (r < 0)
                return log_error_errno(r, "Cannot arm the ticket key timer: %m");
        (void) sd_event_source_set_description(s->rotate_source, "tls-ticket-key");
        *ret = TAKE_PTR(s);
        return 0;
}

int tls_session_new(TlsServer *s, gnutls_certificate_credentials_t creds, int fd, gnutls_session_t *ret) {
        gnutls_session_t session = NULL;
        int r;

        r = gnutls_init(&session, GNUTLS_SERVER | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL);
        if (r < 0)
                return tls_error_to_errno(r);
        r = gnutls_priority_set(session, s->priority);
        if (r >= 0)
                r = gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, creds);
        if (r < 0)
                goto fail;
        gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUIRE);
        /*
         * The chain, its times and the TLS client purpose, checked inside the handshake:
         * a bad certificate ends it with an alert. tls_session_peer_identity() checks
         * again afterwards (and for resumed sessions, which carry no certificate message).
         */
        gnutls_session_set_verify_cert2(session, tls_client_purpose, ELEMENTSOF(tls_client_purpose), 0);
        gnutls_db_set_cache_expiration(session, TLS_TICKET_LIFETIME_SEC);
        r = gnutls_session_ticket_enable_server(session, &s->ticket_key);
        if (r < 0)
                goto fail;
        gnutls_handshake_set_timeout(session, 0); /* ours is an event-loop timer */
        gnutls_transport_set_int(session, fd);
        *ret = session;
        return 0;
fail:
        gnutls_deinit(session);
        return tls_error_to_errno(r);
}

int tls_session_peer_identity(gnutls_session_t s, CertIdentity *ret, const char **ret_reason) {
        const gnutls_datum_t *peers;
        unsigned n = 0, status = 0;
        gnutls_typed_vdata_st purpose = {
                .type = GNUTLS_DT_KEY_PURPOSE_OID,
                .data = (void *) GNUTLS_KP_TLS_WWW_CLIENT,
        };
        int r;

        if (gnutls_certificate_type_get2(s, GNUTLS_CTYPE_CLIENT) != GNUTLS_CRT_X509) {
                *ret_reason = "client certificate is not X.509";
                return -EPERM;
        }
        peers = gnutls_certificate_get_peers(s, &n);
        if (!peers || n == 0) {
                *ret_reason = "no client certificate";
                return -EPERM;
        }
        /* The chain against the CA, validity times, and the TLS client key purpose. */
        r = gnutls_certificate_verify_peers(s, &purpose, 1, &status);
        if (r < 0) {
                *ret_reason = "client certificate cannot be verified";
                return -EPERM;
        }
        if (status != 0) {
                if (status & GNUTLS_CERT_REVOKED)
                        *ret_reason = "client certificate revoked (CRL)";
                else if (status & GNUTLS_CERT_EXPIRED)
                        *ret_reason = "client certificate expired";
                else if (status & GNUTLS_CERT_NOT_ACTIVATED)
                        *ret_reason = "client certificate not yet valid";
                else if (status & GNUTLS_CERT_PURPOSE_MISMATCH)
                        *ret_reason = "certificate is not for TLS clients";
                else if (status & (GNUTLS_CERT_SIGNER_NOT_FOUND | GNUTLS_CERT_SIGNER_NOT_CA))
                        *ret_reason = "client certificate not issued by this CA";
                else
                        *ret_reason = "client certificate does not verify";
                return -EPERM;
        }
        r = ca_cert_identity(&peers[0], ret);
        if (r < 0) {
                *ret_reason = "client certificate carries no secd identity";
                return -EBADMSG;
        }
        *ret_reason = NULL;
        return 0;
}

const char *tls_session_cipher(gnutls_session_t s) {
        return gnutls_cipher_get_name(gnutls_cipher_get(s)) ?: "?";
}
