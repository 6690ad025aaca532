/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <gnutls/x509.h>
#include <nettle/sha2.h>

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

/*
 * What secd remembers of the last client certificates seen, per loop
 * thread (no lock), by the SHA-256 of their DER: a client that comes back
 * (every resumed session, a full handshake with the same certificate)
 * presents the same bytes.
 *
 *  - The chain verdict. A full handshake verifies the client's chain (the
 *    CA's signature over the certificate, its key purpose, its times, the
 *    CRL): one Ed25519 verification and a trust-list walk, ~140 µs, a
 *    quarter of secd's CPU per full handshake (bench/README.md). The verdict
 *    on signature and purpose is a function of the bytes and the trusted CA
 *    alone, so a certificate that verified under the same credentials
 *    verifies again; its validity times are kept and checked on every hit.
 *    Revocation is checked by data.c on every handshake (ca_is_revoked()),
 *    full or resumed, and the client's CertificateVerify (proof of its
 *    private key) is GnuTLS's on every full handshake, untouched. New
 *    credentials (start, reload, a CRL update: ca.c) void every verdict:
 *    ca_credentials_generation() changes.
 *  - The secd identity (the URI SAN), a function of the bytes alone:
 *    parsing it again was ~11 % of a resumed handshake.
 */
#define TLS_CERT_CACHE_SIZE 64

typedef struct TlsCertCacheEntry {
        uint8_t digest[SHA256_DIGEST_SIZE];
        uint64_t used;                  /* LRU clock; 0: empty */
        uint64_t verified_generation;   /* credentials the chain verified under; 0: not verified */
        time_t not_before, not_after;   /* with verified_generation */
        bool has_id;
        CertIdentity id;
} TlsCertCacheEntry;

static _Thread_local TlsCertCacheEntry tls_cert_cache[TLS_CERT_CACHE_SIZE];
static _Thread_local uint64_t tls_cert_cache_clock;

static void tls_der_digest(const gnutls_datum_t *der, uint8_t digest[SHA256_DIGEST_SIZE]) {
        struct sha256_ctx ctx;

        sha256_init(&ctx);
        sha256_update(&ctx, der->size, der->data);
        sha256_digest(&ctx, SHA256_DIGEST_SIZE, digest);
}

/* The entry of digest, or NULL (then *ret_victim is the entry to reuse: empty, else least recently used). */
static TlsCertCacheEntry *tls_cert_cache_find(const uint8_t digest[SHA256_DIGEST_SIZE],
                                              TlsCertCacheEntry **ret_victim) {
        TlsCertCacheEntry *victim = &tls_cert_cache[0];

        for (size_t i = 0; i < TLS_CERT_CACHE_SIZE; i++) {
                TlsCertCacheEntry *e = &tls_cert_cache[i];

                if (e->used != 0 && memcmp(e->digest, digest, SHA256_DIGEST_SIZE) == 0) {
                        e->used = ++tls_cert_cache_clock;
                        return e;
                }
                if (e->used < victim->used)
                        victim = e;
        }
        *ret_victim = victim;
        return NULL;
}

static TlsCertCacheEntry *tls_cert_cache_claim(TlsCertCacheEntry *victim, const uint8_t digest[SHA256_DIGEST_SIZE]) {
        *victim = (TlsCertCacheEntry) { .used = ++tls_cert_cache_clock };
        memcpy(victim->digest, digest, SHA256_DIGEST_SIZE);
        return victim;
}

static const char *tls_status_reason(unsigned status);

/* Installed per session: 0 lets the handshake go on, anything else ends it with an alert. */
static int tls_verify_peer(gnutls_session_t session) {
        uint8_t digest[SHA256_DIGEST_SIZE];
        uint64_t generation = ca_credentials_generation();
        const gnutls_datum_t *peers;
        TlsCertCacheEntry *e, *victim = NULL;
        gnutls_x509_crt_t crt = NULL;
        unsigned n = 0, status = 0;
        time_t now = time(NULL), nb, na;
        int r;

        peers = gnutls_certificate_get_peers(session, &n);
        if (!peers || n == 0)
                return GNUTLS_E_NO_CERTIFICATE_FOUND;
        tls_der_digest(&peers[0], digest);

        e = tls_cert_cache_find(digest, &victim);
        /* Outside its validity times: verify again, so that GnuTLS names the reason. */
        if (e && e->verified_generation == generation && now >= e->not_before && now <= e->not_after)
                return 0;

        r = gnutls_certificate_verify_peers(session, tls_client_purpose, ELEMENTSOF(tls_client_purpose), &status);
        if (r < 0)
                return r;
        if (status != 0) {
                log_debug("TLS: %s (verification status 0x%x).", tls_status_reason(status), status);
                return GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR;
        }

        /* Remember the verdict with the validity times (checked again on every hit). */
        if (gnutls_x509_crt_init(&crt) < 0)
                return 0;
        if (gnutls_x509_crt_import(crt, &peers[0], GNUTLS_X509_FMT_DER) >= 0) {
                nb = gnutls_x509_crt_get_activation_time(crt);
                na = gnutls_x509_crt_get_expiration_time(crt);
                if (nb != (time_t) -1 && na != (time_t) -1) {
                        if (!e)
                                e = tls_cert_cache_claim(victim, digest);
                        e->verified_generation = generation;
                        e->not_before = nb;
                        e->not_after = na;
                }
        }
        gnutls_x509_crt_deinit(crt);
        return 0;
}

/* The secd identity of a certificate GnuTLS verified (or that a resumed session carries). */
static int tls_cert_identity_cached(const gnutls_datum_t *der, CertIdentity *ret) {
        uint8_t digest[SHA256_DIGEST_SIZE];
        TlsCertCacheEntry *e, *victim = NULL;
        int r;

        tls_der_digest(der, digest);
        e = tls_cert_cache_find(digest, &victim);
        if (e && e->has_id) {
                *ret = e->id;
                return 0;
        }
        r = ca_cert_identity(der, ret);
        if (r < 0)
                return r;       /* not cached: a bad certificate is parsed (and refused) every time */
        if (!e)
                e = tls_cert_cache_claim(victim, digest);
        e->id = *ret;
        e->has_id = true;
        return 0;
}

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

        /*
         * No tickets at the end of the handshake (GnuTLS 3.7 would send two after every
         * one, full or resumed): data.c sends exactly one, and only once the client has
         * been admitted, so a refused client never holds a ticket.
         */
        r = gnutls_init(&session, GNUTLS_SERVER | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL | GNUTLS_NO_AUTO_SEND_TICKET);
        if (r < 0)
                return tls_error_to_errno(r);
        r = gnutls_priority_set(session, s->priority);
        if (r >= 0)
                r = gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, creds);
        if (r < 0)
                goto fail;
        gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUIRE);
        /*
         * The chain, its times and the TLS client purpose, checked inside the handshake
         * (tls_verify_peer(): GnuTLS's verification, or its remembered verdict for these
         * very bytes under these credentials): a bad certificate ends it with an alert.
         * Resumed sessions carry no certificate message; see tls_session_peer_identity().
         */
        gnutls_session_set_verify_function(session, tls_verify_peer);
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

static const char *tls_status_reason(unsigned status) {
        if (status & GNUTLS_CERT_REVOKED)
                return "client certificate revoked (CRL)";
        if (status & GNUTLS_CERT_EXPIRED)
                return "client certificate expired";
        if (status & GNUTLS_CERT_NOT_ACTIVATED)
                return "client certificate not yet valid";
        if (status & GNUTLS_CERT_PURPOSE_MISMATCH)
                return "certificate is not for TLS clients";
        if (status & (GNUTLS_CERT_SIGNER_NOT_FOUND | GNUTLS_CERT_SIGNER_NOT_CA))
                return "client certificate not issued by this CA";
        return "client certificate does not verify";
}

int tls_session_peer_identity(gnutls_session_t s, CertIdentity *ret, const char **ret_reason) {
        const gnutls_datum_t *peers;
        bool resumed = gnutls_session_is_resumed(s);
        CertIdentity id;
        unsigned n = 0;
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
        /*
         * Full handshake: the chain against the CA, the validity times and the TLS
         * client purpose were checked inside the handshake (tls_verify_peer()), and a
         * failure ended it with an alert: a completed handshake passed. Not verified a
         * second time (one more signature check and trust-list walk per connection).
         */
        r = tls_cert_identity_cached(&peers[0], &id);
        if (r < 0) {
                *ret_reason = "client certificate carries no secd identity";
                return -EBADMSG;
        }
        /*
         * Resumed: GnuTLS verifies nothing, and need not: the ticket is sealed with a key
         * that exists only in this process's memory and is sent only after a handshake
         * whose verification passed. What can have changed since is time (checked here)
         * and revocation (the caller asks ca_is_revoked() on every handshake).
         */
        if (resumed && id.not_after_usec <= now_usec(CLOCK_REALTIME)) {
                *ret_reason = "client certificate expired";
                return -EPERM;
        }
        *ret = id;
        *ret_reason = NULL;
        return 0;
}

const char *tls_session_cipher(gnutls_session_t s) {
        return gnutls_cipher_get_name(gnutls_cipher_get(s)) ?: "?";
}
