/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The mTLS client: credentials (enrollment, PEM, hand-over), one blocking
 * connection to a data endpoint with every wait bounded by poll(), frames
 * through common/frame, reconnect with backoff, renewal at half-life.
 */
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "frame.h"
#include "secclient-internal.h"

#define CLIENT_TIMEOUT_MS_DEFAULT 10000u
#define CLIENT_READ_CHUNK 16384u
/* Replies received while waiting for another one (ping in the middle of a pipeline). */
#define CLIENT_STASH_MAX 1024u
/* Requests of the library's own calls that timed out: their late replies are dropped, not stashed. */
#define CLIENT_ABANDONED_MAX 64u
#define CLIENT_TLS_PRIORITY "NORMAL:-VERS-ALL:+VERS-TLS1.3"

#define SUN_PATH_MAX sizeof(((struct sockaddr_un *) NULL)->sun_path)

static inline void *mfree(void *p) {
        free(p);
        return NULL;
}

typedef struct Frame {
        struct Frame *next;
        uint8_t type;
        uint32_t request_id;
        uint32_t len;
        uint8_t *payload;
} Frame;

struct secclient {
        char *endpoint;
        char *enroll_socket;
        unsigned timeout_ms;

        /* Credentials. The key PEM lives only here, wiped on replacement and free. */
        char *ca_pem, *cert_pem, *key_pem;
        gnutls_certificate_credentials_t cred;
        /* The credentials the live session was set up with (may be older than cred after a renewal). */
        gnutls_certificate_credentials_t session_cred;
        uint64_t not_before_usec, not_after_usec;
        bool renewable;         /* made by our own enrollment: renew by enrolling again */

        /* Connection. */
        int fd;
        gnutls_session_t session;
        bool connected;         /* handshake and admission probe done, no error since */
        bool want_connected;    /* secclient_connect() succeeded and no disconnect(): reconnect on a drop */
        int drop_error;         /* why secd closed the connection for good (no automatic reconnect) */
        gnutls_datum_t session_data; /* for resumption on the next connect (same credentials) */
        FrameReader *reader;
        uint8_t rbuf[CLIENT_READ_CHUNK];
        size_t rpos, rlen;
        Frame *stash_head, *stash_tail;
        size_t stash_n;
        uint32_t next_request_id;
        uint32_t abandoned[CLIENT_ABANDONED_MAX];       /* ring; 0 = free slot (ids are never 0) */
        size_t abandoned_next;

        /* Relay: the registered identity's seed (wiped on replace and free), delivered ids. */
        uint8_t identity_seed[SECCLIENT_KEY_SIZE];
        bool has_identity;
        bool registered;        /* this connection is registered for identity_seed's mailbox */
        SeenSet *seen;

        char *last_error;
};

DEFINE_TRIVIAL_CLEANUP_FUNC(json_object *, json_object_put);

/* ---------------------------------------------------------------------- */
/* Pure helpers */

int endpoint_parse(const char *s, SecclientEndpoint *ret) {
        _cleanup_free_ char *host = NULL, *port = NULL, *path = NULL;
        const char *colon, *host_start, *host_end;
        unsigned long p;
        char *end;

        if (!s || !ret)
                return -EINVAL;
        if (isempty(s))
                return -EINVAL;

        if (s[0] == '@' || strchr(s, '/')) {
                if (strlen(s) >= SUN_PATH_MAX)
                        return -ENAMETOOLONG;
                if (s[0] == '@' && s[1] == '\0')
                        return -EINVAL;
                path = strdup(s);
                if (!path)
                        return -ENOMEM;
                *ret = (SecclientEndpoint) { .unix_socket = true, .path = TAKE_PTR(path) };
                return 0;
        }

        if (s[0] == '[') {
                host_start = s + 1;
                host_end = strchr(host_start, ']');
                if (!host_end || host_end[1] != ':')
                        return -EINVAL;
                colon = host_end + 1;
                if (memchr(host_start, '[', (size_t) (host_end - host_start)) ||
                    !memchr(host_start, ':', (size_t) (host_end - host_start)))
                        return -EINVAL; /* brackets are for IPv6 addresses */
        } else {
                host_start = s;
                colon = strchr(s, ':');
                if (!colon || strchr(colon + 1, ':'))
                        return -EINVAL; /* no port, or an unbracketed IPv6 address */
                host_end = colon;
        }
        if (host_end == host_start)
                return -EINVAL;
        for (const char *c = host_start; c < host_end; c++)
                if ((unsigned char) *c <= 0x20 || (unsigned char) *c >= 0x7f || *c == ']' || *c == '[')
                        return -EINVAL;

        /* Digits only, 1-65535, no sign, no spaces. */
        if (colon[1] < '0' || colon[1] > '9' || strlen(colon + 1) > 5)
                return -EINVAL;
        errno = 0;
        p = strtoul(colon + 1, &end, 10);
        if (errno != 0 || *end != '\0' || p == 0 || p > 65535)
                return -EINVAL;

        host = strndup(host_start, (size_t) (host_end - host_start));
        port = strdup(colon + 1);
        if (!host || !port)
                return -ENOMEM;
        *ret = (SecclientEndpoint) { .host = TAKE_PTR(host), .port = TAKE_PTR(port) };
        return 0;
}

void endpoint_done(SecclientEndpoint *e) {
        if (!e)
                return;
        free(e->path);
        free(e->host);
        free(e->port);
        *e = (SecclientEndpoint) {};
}

unsigned backoff_delay_ms(unsigned attempt, uint32_t random) {
        uint64_t d;

        if (attempt == 0)
                return 0;
        d = SECCLIENT_RECONNECT_BASE_MS;
        for (unsigned i = 1; i < attempt && d < SECCLIENT_RECONNECT_CAP_MS; i++)
                d *= 2;
        d = MIN(d, (uint64_t) SECCLIENT_RECONNECT_CAP_MS);
        /* Equal jitter: [d/2, d]. */
        return (unsigned) (d / 2 + random % (d / 2 + 1));
}

bool renew_due(uint64_t now_usec, uint64_t not_before_usec, uint64_t not_after_usec) {
        if (not_after_usec <= not_before_usec)
                return true;
        return now_usec >= not_before_usec + (not_after_usec - not_before_usec) / 2;
}

int enroll_error_to_errno(const char *error) {
        if (streq_ptr(error, "io.secd.Enroll.NotAdmitted"))
                return -EACCES;
        if (streq_ptr(error, "io.secd.Enroll.RateLimited"))
                return -EAGAIN;
        return -EPROTO; /* InvalidRequest, or anything we do not know */
}

int frame_error_to_errno(uint16_t code) {
        switch (code) {
        case FRAME_ERROR_NOT_ADMITTED:
                return -EACCES;
        case FRAME_ERROR_CERT_REVOKED:
                return -EKEYREVOKED;
        case FRAME_ERROR_CERT_EXPIRED:
                return -EKEYEXPIRED;
        case FRAME_ERROR_SHUTTING_DOWN:
                return -ESHUTDOWN;
        case FRAME_ERROR_IDLE_TIMEOUT:
                return -ETIMEDOUT;
        case FRAME_ERROR_TOO_LARGE:
                return -EMSGSIZE;
        case FRAME_ERROR_UNKNOWN_TYPE:
                return -EOPNOTSUPP;
        case FRAME_ERROR_BAD_FRAME:
        case FRAME_ERROR_BAD_PAYLOAD:
                return -EBADMSG;
        /* Relay and key server (secclient.h) */
        case FRAME_ERROR_NOT_REGISTERED:
                return -ENOTCONN;
        case FRAME_ERROR_BAD_SIGNATURE:
                return -EBADMSG;
        case FRAME_ERROR_NOT_OWNER:
                return -EPERM;
        case FRAME_ERROR_MAILBOX_BUSY:
        case FRAME_ERROR_BUSY:
                return -EBUSY;
        case FRAME_ERROR_NO_SUCH_MAILBOX:
                return -ENXIO;
        case FRAME_ERROR_QUOTA_EXCEEDED:
                return -EDQUOT;
        case FRAME_ERROR_RATE_LIMITED:
                return -EAGAIN;
        case FRAME_ERROR_MESSAGE_TOO_LARGE:
                return -EMSGSIZE;
        case FRAME_ERROR_NO_KEYS:
                return -ENODATA;
        case FRAME_ERROR_ALREADY_REGISTERED:
                return -EEXIST;
        default:
                return -EPROTO;
        }
}

/* ---------------------------------------------------------------------- */
/* Time */

static uint64_t mono_ms(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

static uint64_t real_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static uint64_t deadline_after(unsigned timeout_ms) {
        return timeout_ms == 0 ? UINT64_MAX : mono_ms() + timeout_ms;
}

static int remaining_ms(uint64_t deadline) {
        uint64_t n;

        if (deadline == UINT64_MAX)
                return -1;
        n = mono_ms();
        if (n >= deadline)
                return 0;
        return (int) MIN(deadline - n, (uint64_t) INT_MAX);
}

static int wait_fd(int fd, short events, uint64_t deadline) {
        for (;;) {
                struct pollfd p = { .fd = fd, .events = events };
                int r = poll(&p, 1, remaining_ms(deadline));

                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (r == 0)
                        return -ETIMEDOUT;
                return 0;
        }
}

/* ---------------------------------------------------------------------- */
/* Handle */

static int set_last_error(secclient *c, const char *fmt, ...) _printf_(2, 3);
static int set_last_error(secclient *c, const char *fmt, ...) {
        va_list ap;
        char *s = NULL;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&s, fmt, ap);
        va_end(ap);
        free(c->last_error);
        c->last_error = r < 0 ? NULL : s;
        return 0;
}

static void clear_last_error(secclient *c) {
        c->last_error = mfree(c->last_error);
}

_public_ int secclient_new(secclient **ret) {
        _cleanup_(secclient_freep) secclient *c = NULL;
        const char *e;
        int r;

        if (!ret)
                return -EINVAL;
        if (gnutls_check_version("3.7.0") == NULL)
                return -EOPNOTSUPP;

        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->fd = -EBADF;
        c->timeout_ms = CLIENT_TIMEOUT_MS_DEFAULT;
        c->next_request_id = 1;

        e = secure_getenv("SECD_SOCKET");
        c->endpoint = strdup(isempty(e) ? SECCLIENT_SOCKET_DEFAULT : e);
        e = secure_getenv("SECD_ENROLL_SOCKET");
        c->enroll_socket = strdup(isempty(e) ? SECCLIENT_ENROLL_SOCKET_DEFAULT : e);
        if (!c->endpoint || !c->enroll_socket)
                return -ENOMEM;

        r = frame_reader_new(FRAME_PAYLOAD_MAX_HARD, &c->reader);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(c);
        return 0;
}

static void stash_clear(secclient *c) {
        while (c->stash_head) {
                Frame *f = c->stash_head;

                c->stash_head = f->next;
                free(f->payload);
                free(f);
        }
        c->stash_tail = NULL;
        c->stash_n = 0;
}

static void session_data_forget(secclient *c) {
        if (c->session_data.data) {
                gnutls_memset(c->session_data.data, 0, c->session_data.size);
                gnutls_free(c->session_data.data);
        }
        c->session_data = (gnutls_datum_t) {};
}

/* Drop the connection (no close_notify: the peer may be gone). */
static void connection_close(secclient *c) {
        if (c->session) {
                gnutls_deinit(c->session);
                c->session = NULL;
        }
        if (c->session_cred && c->session_cred != c->cred)
                gnutls_certificate_free_credentials(c->session_cred);
        c->session_cred = NULL;
        c->fd = safe_close(c->fd);
        c->connected = false;
        c->registered = false;
        frame_reader_reset(c->reader);
        c->rpos = c->rlen = 0;
        /* No reply to an abandoned request can arrive on another connection. */
        memset(c->abandoned, 0, sizeof c->abandoned);
        /* Replies already received stay for secclient_recv(): their request ids are unique per handle. */
}

static void credentials_clear(secclient *c) {
        /* A live session keeps using its credentials until it is closed. */
        if (c->cred && c->cred != c->session_cred)
                gnutls_certificate_free_credentials(c->cred);
        c->cred = NULL;
        c->ca_pem = mfree(c->ca_pem);
        c->cert_pem = mfree(c->cert_pem);
        erase_and_free(c->key_pem);
        c->key_pem = NULL;
        c->not_before_usec = c->not_after_usec = 0;
        c->renewable = false;
        /* A ticket names the old certificate's identity. */
        session_data_forget(c);
}

_public_ secclient *secclient_free(secclient *c) {
        if (!c)
                return NULL;
        connection_close(c);
        stash_clear(c);
        credentials_clear(c);
        client_identity_clear(c);
        free(c->seen);
        frame_reader_free(c->reader);
        free(c->endpoint);
        free(c->enroll_socket);
        free(c->last_error);
        free(c);
        return NULL;
}

_public_ int secclient_set_endpoint(secclient *c, const char *endpoint) {
        SecclientEndpoint e = {};
        char *s;
        int r;

        if (!c || !endpoint)
                return -EINVAL;
        r = endpoint_parse(endpoint, &e);
        if (r < 0)
                return r;
        endpoint_done(&e);
        s = strdup(endpoint);
        if (!s)
                return -ENOMEM;
        free(c->endpoint);
        c->endpoint = s;
        /* A ticket belongs to one server. */
        session_data_forget(c);
        return 0;
}

_public_ int secclient_set_enroll_socket(secclient *c, const char *path) {
        char *s;

        if (!c || isempty(path))
                return -EINVAL;
        if (strlen(path) >= SUN_PATH_MAX)
                return -ENAMETOOLONG;
        s = strdup(path);
        if (!s)
                return -ENOMEM;
        free(c->enroll_socket);
        c->enroll_socket = s;
        return 0;
}

_public_ int secclient_set_timeout(secclient *c, unsigned timeout_ms) {
        if (!c)
                return -EINVAL;
        c->timeout_ms = timeout_ms;
        return 0;
}

_public_ const char *secclient_last_error(const secclient *c) {
        return c ? c->last_error : NULL;
}

_public_ uint64_t secclient_cert_expiry(const secclient *c) {
        return c && c->cred ? c->not_after_usec : 0;
}

int client_session_resumed(const secclient *c) {
        if (!c || !c->session || !c->connected)
                return -ENOTCONN;
        return gnutls_session_is_resumed(c->session) ? 1 : 0;
}

/* ---------------------------------------------------------------------- */
/* Credentials */

static int gnutls_to_errno(int g) {
        switch (g) {
        case GNUTLS_E_MEMORY_ERROR:
                return -ENOMEM;
        case GNUTLS_E_CERTIFICATE_KEY_MISMATCH:
                return -EKEYREJECTED;
        case GNUTLS_E_BASE64_DECODING_ERROR:
        case GNUTLS_E_ASN1_DER_ERROR:
        case GNUTLS_E_ASN1_TAG_ERROR:
        case GNUTLS_E_BASE64_UNEXPECTED_HEADER_ERROR:
        case GNUTLS_E_NO_CERTIFICATE_FOUND:
        case GNUTLS_E_PARSING_ERROR:
                return -EBADMSG;
        case GNUTLS_E_PUSH_ERROR:
        case GNUTLS_E_PULL_ERROR:
        case GNUTLS_E_PREMATURE_TERMINATION:
        case GNUTLS_E_SESSION_EOF:
                return -ECONNRESET;
        case GNUTLS_E_CERTIFICATE_ERROR:
        case GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR:
                return -EKEYREJECTED;
        default:
                return -EPROTO;
        }
}

/* The certificate's validity, and -EKEYREJECTED unless key_pem is the key of its public key. */
static int cert_check(const char *cert_pem, const char *key_pem, uint64_t *ret_not_before,
                      uint64_t *ret_not_after) {
        gnutls_x509_crt_t crt;
        gnutls_x509_privkey_t key;
        gnutls_datum_t d = { .data = (unsigned char *) cert_pem, .size = (unsigned) strlen(cert_pem) };
        gnutls_datum_t kd = { .data = (unsigned char *) key_pem, .size = (unsigned) strlen(key_pem) };
        unsigned char id_crt[64], id_key[64];
        size_t n_crt = sizeof id_crt, n_key = sizeof id_key;
        time_t nb, na;
        int g;

        g = gnutls_x509_privkey_init(&key);
        if (g < 0)
                return -ENOMEM;
        g = gnutls_x509_privkey_import2(key, &kd, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN);
        if (g >= 0)
                g = gnutls_x509_privkey_get_key_id(key, GNUTLS_KEYID_USE_SHA256, id_key, &n_key);
        /* Zeroises the key parameters. */
        gnutls_x509_privkey_deinit(key);
        if (g < 0)
                return -EBADMSG;

        g = gnutls_x509_crt_init(&crt);
        if (g < 0)
                return -ENOMEM;
        g = gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM);
        if (g < 0) {
                gnutls_x509_crt_deinit(crt);
                return -EBADMSG;
        }
        g = gnutls_x509_crt_get_key_id(crt, GNUTLS_KEYID_USE_SHA256, id_crt, &n_crt);
        nb = gnutls_x509_crt_get_activation_time(crt);
        na = gnutls_x509_crt_get_expiration_time(crt);
        gnutls_x509_crt_deinit(crt);
        if (g < 0)
                return -EBADMSG;
        if (n_crt != n_key || memcmp(id_crt, id_key, n_crt) != 0)
                return -EKEYREJECTED;
        if (nb == (time_t) -1 || na == (time_t) -1 || nb < 0 || na < nb)
                return -EBADMSG;
        *ret_not_before = (uint64_t) nb * 1000000u;
        *ret_not_after = (uint64_t) na * 1000000u;
        return 0;
}

/*
 * Take over the three PEMs (on success only; the key is the caller's to wipe
 * on failure), build the GnuTLS credentials: trust exactly the CA.
 */
static int credentials_install(secclient *c, char *ca, char *cert, char *key, bool renewable) {
        gnutls_certificate_credentials_t cred = NULL;
        gnutls_datum_t ca_d, cert_d, key_d;
        uint64_t nb, na;
        int g, r;

        if (isempty(ca) || isempty(cert) || isempty(key))
                return -EINVAL;
        r = cert_check(cert, key, &nb, &na);
        if (r < 0)
                return r;

        ca_d = (gnutls_datum_t) { .data = (unsigned char *) ca, .size = (unsigned) strlen(ca) };
        cert_d = (gnutls_datum_t) { .data = (unsigned char *) cert, .size = (unsigned) strlen(cert) };
        key_d = (gnutls_datum_t) { .data = (unsigned char *) key, .size = (unsigned) strlen(key) };

        g = gnutls_certificate_allocate_credentials(&cred);
        if (g < 0)
                return -ENOMEM;
        g = gnutls_certificate_set_x509_trust_mem(cred, &ca_d, GNUTLS_X509_FMT_PEM);
        if (g <= 0) {
                gnutls_certificate_free_credentials(cred);
                return g == 0 ? -EBADMSG : gnutls_to_errno(g);
        }
        g = gnutls_certificate_set_x509_key_mem2(cred, &cert_d, &key_d, GNUTLS_X509_FMT_PEM, NULL, 0);
        if (g < 0) {
                gnutls_certificate_free_credentials(cred);
                return gnutls_to_errno(g);
        }

        credentials_clear(c);
        c->cred = cred;
        c->ca_pem = ca;
        c->cert_pem = cert;
        c->key_pem = key;
        c->not_before_usec = nb;
        c->not_after_usec = na;
        c->renewable = renewable;
        return 0;
}

_public_ int secclient_load_credentials(secclient *c, const char *ca_pem, const char *cert_pem,
                                        const char *key_pem) {
        _cleanup_free_ char *ca = NULL, *cert = NULL;
        _cleanup_erase_ char *key = NULL;
        int r;

        if (!c || isempty(ca_pem) || isempty(cert_pem) || isempty(key_pem))
                return -EINVAL;
        ca = strdup(ca_pem);
        cert = strdup(cert_pem);
        key = strdup(key_pem);
        if (!ca || !cert || !key)
                return -ENOMEM;
        r = credentials_install(c, ca, cert, key, false);
        if (r < 0)
                return r;
        TAKE_PTR(ca);
        TAKE_PTR(cert);
        TAKE_PTR(key);
        return 0;
}

/* Copy a GnuTLS datum into a NUL-terminated string, wiping and freeing the datum. */
static int datum_to_secret_string(gnutls_datum_t *d, char **ret) {
        char *s = malloc((size_t) d->size + 1);

        if (s) {
                memcpy(s, d->data, d->size);
                s[d->size] = '\0';
        }
        gnutls_memset(d->data, 0, d->size);
        gnutls_free(d->data);
        *d = (gnutls_datum_t) {};
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

/*
 * A fresh key pair and a CSR signed by it. The key pair is Ed25519, the
 * type secd's CA uses (docs/certificates.md); the key leaves this function
 * only as PEM in memory (ret_key, for the caller to wipe).
 */
static int csr_make(char **ret_csr, char **ret_key) {
        gnutls_x509_privkey_t key = NULL;
        gnutls_x509_crq_t crq = NULL;
        gnutls_datum_t d = {};
        _cleanup_free_ char *csr = NULL;
        _cleanup_erase_ char *key_pem = NULL;
        int g, r;

        g = gnutls_x509_privkey_init(&key);
        if (g < 0)
                return -ENOMEM;
        g = gnutls_x509_crq_init(&crq);
        if (g < 0) {
                r = -ENOMEM;
                goto finish;
        }

        g = gnutls_x509_privkey_generate2(key, GNUTLS_PK_EDDSA_ED25519, 256, 0, NULL, 0);
        if (g >= 0)
                g = gnutls_x509_crq_set_version(crq, 1);
        if (g >= 0)
                g = gnutls_x509_crq_set_dn_by_oid(crq, GNUTLS_OID_X520_COMMON_NAME, 0, "secclient",
                                                  strlen("secclient"));
        if (g >= 0)
                g = gnutls_x509_crq_set_key(crq, key);
        if (g >= 0)
                g = gnutls_x509_crq_sign2(crq, key, GNUTLS_DIG_SHA512, 0);
        if (g < 0) {
                r = gnutls_to_errno(g);
                goto finish;
        }

        g = gnutls_x509_crq_export2(crq, GNUTLS_X509_FMT_PEM, &d);
        if (g < 0) {
                r = gnutls_to_errno(g);
                goto finish;
        }
        r = datum_to_secret_string(&d, &csr);
        if (r < 0)
                goto finish;

        g = gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN, &d);
        if (g < 0) {
                r = gnutls_to_errno(g);
                goto finish;
        }
        r = datum_to_secret_string(&d, &key_pem);
        if (r < 0)
                goto finish;

        *ret_csr = TAKE_PTR(csr);
        *ret_key = TAKE_PTR(key_pem);
        r = 0;
finish:
        if (crq)
                gnutls_x509_crq_deinit(crq);
        /* gnutls_x509_privkey_deinit() zeroises the key parameters. */
        gnutls_x509_privkey_deinit(key);
        return r;
}

static int json_get_string(json_object *o, const char *field, const char **ret) {
        json_object *v;

        if (!json_object_object_get_ex(o, field, &v) || !json_object_is_type(v, json_type_string))
                return -EPROTO;
        *ret = json_object_get_string(v);
        return 0;
}

_public_ int secclient_enroll(secclient *c) {
        _cleanup_(secclient_control_freep) secclient_control *ctl = NULL;
        _cleanup_(json_object_putp) json_object *params = NULL, *reply = NULL;
        _cleanup_free_ char *csr = NULL, *reply_text = NULL, *error = NULL, *ca = NULL, *cert = NULL;
        _cleanup_erase_ char *key = NULL;
        const char *ca_s, *cert_s, *text;
        int r;

        if (!c)
                return -EINVAL;
        clear_last_error(c);

        r = csr_make(&csr, &key);
        if (r < 0)
                return r;

        params = json_object_new_object();
        if (!params || json_object_object_add(params, "csr", json_object_new_string(csr)) < 0)
                return -ENOMEM;
        text = json_object_to_json_string_ext(params, JSON_C_TO_STRING_PLAIN);
        if (!text)
                return -ENOMEM;

        r = secclient_control_open(c->enroll_socket, &ctl);
        if (r < 0) {
                set_last_error(c, "cannot reach the enroll socket %s: %s", c->enroll_socket,
                               secclient_strerror(r));
                return r;
        }
        (void) secclient_control_set_timeout(ctl, c->timeout_ms);
        /* A certificate chain is a few KiB: nothing near the Varlink maximum. */
        (void) control_set_message_max(ctl, 1024u * 1024u);

        r = secclient_control_call(ctl, "io.secd.Enroll.Issue", text, &reply_text, &error);
        if (r == -EREMOTEIO) {
                _cleanup_(json_object_putp) json_object *ep = NULL;
                const char *reason = NULL;

                ep = reply_text ? json_tokener_parse(reply_text) : NULL;
                if (ep && json_get_string(ep, "reason", &reason) < 0)
                        reason = NULL;
                r = enroll_error_to_errno(error);
                if (r == -EAGAIN && ep) {
                        json_object *v;

                        if (json_object_object_get_ex(ep, "retry_after_usec", &v))
                                set_last_error(c, "enrollment rate limited; retry after %" PRId64 " us",
                                               json_object_get_int64(v));
                        else
                                set_last_error(c, "enrollment rate limited");
                } else
                        set_last_error(c, "enrollment refused: %s%s%s", error ?: "unknown error",
                                       reason ? ": " : "", reason ?: "");
                return r;
        }
        if (r < 0) {
                set_last_error(c, "enrollment failed: %s", secclient_strerror(r));
                return r;
        }

        reply = json_tokener_parse(reply_text);
        if (!reply || !json_object_is_type(reply, json_type_object) ||
            json_get_string(reply, "certificate", &cert_s) < 0 || json_get_string(reply, "ca", &ca_s) < 0) {
                set_last_error(c, "enrollment: malformed answer from secd");
                return -EPROTO;
        }
        ca = strdup(ca_s);
        cert = strdup(cert_s);
        if (!ca || !cert)
                return -ENOMEM;

        r = credentials_install(c, ca, cert, key, true);
        if (r < 0) {
                set_last_error(c, "enrollment: unusable certificate from secd: %s", secclient_strerror(r));
                return r == -ENOMEM ? r : -EPROTO;
        }
        TAKE_PTR(ca);
        TAKE_PTR(cert);
        TAKE_PTR(key);
        return 0;
}

/* ---------------------------------------------------------------------- */
/* Transport */

/* A non-blocking connect finished within the deadline, or its error. */
static int connect_fd(int domain, const struct sockaddr *sa, socklen_t salen, uint64_t deadline, int *ret) {
        _cleanup_close_ int fd = -EBADF;
        int r, err = 0;
        socklen_t errlen = sizeof err;

        fd = socket(domain, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return negative_errno();
        if (domain != AF_UNIX) {
                int one = 1;

                /* TLS 1.3 tickets and small frames must not wait for Nagle. */
                if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
                        return negative_errno();
        }
        if (connect(fd, sa, salen) < 0) {
                if (errno != EINPROGRESS && errno != EAGAIN && errno != EINTR)
                        return negative_errno();
                r = wait_fd(fd, POLLOUT, deadline);
                if (r < 0)
                        return r;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) < 0)
                        return negative_errno();
                if (err != 0)
                        return -err;
        }
        *ret = TAKE_FD(fd);
        return 0;
}

static int transport_open(const SecclientEndpoint *e, uint64_t deadline, int *ret) {
        if (e->unix_socket) {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };
                size_t n = strlen(e->path);
                socklen_t salen;

                memcpy(sa.sun_path, e->path, n);
                if (e->path[0] == '@') {
                        sa.sun_path[0] = '\0';
                        salen = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + n);
                } else
                        salen = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + n + 1);
                return connect_fd(AF_UNIX, (const struct sockaddr *) &sa, salen, deadline, ret);
        }

        struct addrinfo hints = {
                .ai_family = AF_UNSPEC,
                .ai_socktype = SOCK_STREAM,
                .ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG,
        }, *res = NULL;
        int g, r = -EHOSTUNREACH;

        g = getaddrinfo(e->host, e->port, &hints, &res);
        if (g != 0) {
                if (g == EAI_SYSTEM)
                        return negative_errno();
                return g == EAI_MEMORY ? -ENOMEM : -EHOSTUNREACH;
        }
        for (struct addrinfo *a = res; a; a = a->ai_next) {
                r = connect_fd(a->ai_family, a->ai_addr, a->ai_addrlen, deadline, ret);
                if (r >= 0 || r == -ETIMEDOUT)
                        break;
        }
        freeaddrinfo(res);
        return r;
}

/* Wait for the direction GnuTLS is blocked on. */
static int tls_wait(secclient *c, uint64_t deadline) {
        return wait_fd(c->fd, gnutls_record_get_direction(c->session) ? POLLOUT : POLLIN, deadline);
}

static int tls_send_all(secclient *c, const uint8_t *data, size_t size, uint64_t deadline) {
        while (size > 0) {
                ssize_t n = gnutls_record_send(c->session, data, size);

                if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
                        int r = tls_wait(c, deadline);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (n < 0)
                        return gnutls_to_errno((int) n);
                data += n;
                size -= (size_t) n;
        }
        return 0;
}

/* Read more decrypted bytes into rbuf. 0 on progress; -ECONNRESET on EOF. */
static int tls_fill(secclient *c, uint64_t deadline) {
        for (;;) {
                ssize_t n = gnutls_record_recv(c->session, c->rbuf, sizeof c->rbuf);

                if (n > 0) {
                        c->rpos = 0;
                        c->rlen = (size_t) n;
                        return 0;
                }
                if (n == 0)
                        return -ECONNRESET;
                if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
                        int r = tls_wait(c, deadline);
                        if (r < 0)
                                return r;
                        continue;
                }
                /* A warning alert or a post-handshake message: read on, within the deadline. */
                if (!gnutls_error_is_fatal((int) n)) {
                        if (remaining_ms(deadline) == 0)
                                return -ETIMEDOUT;
                        continue;
                }
                return gnutls_to_errno((int) n);
        }
}

/*
 * The next frame from the wire. On any error but a timeout the connection
 * is unusable and closed (a timeout leaves the reader mid-frame, which is
 * fine: the next call continues it).
 */
static int frame_read(secclient *c, uint64_t deadline, Frame **ret) {
        for (;;) {
                if (c->rpos < c->rlen) {
                        size_t used = 0;
                        int r;

                        r = frame_reader_feed(c->reader, c->rbuf + c->rpos, c->rlen - c->rpos, &used);
                        c->rpos += used;
                        if (r < 0) {
                                set_last_error(c, "malformed frame from secd");
                                connection_close(c);
                                return r == -EMSGSIZE ? r : -EBADMSG;
                        }
                        if (r > 0) {
                                FrameHeader h;
                                const uint8_t *payload;
                                Frame *f;

                                frame_reader_frame(c->reader, &h, &payload);
                                f = calloc(1, sizeof *f);
                                if (!f)
                                        return -ENOMEM;
                                f->type = h.type;
                                f->request_id = h.request_id;
                                f->len = h.length;
                                f->payload = malloc(MAX(h.length, 1u));
                                if (!f->payload) {
                                        free(f);
                                        return -ENOMEM;
                                }
                                if (h.length > 0)
                                        memcpy(f->payload, payload, h.length);
                                frame_reader_reset(c->reader);
                                *ret = f;
                                return 0;
                        }
                        continue;
                }

                int r = tls_fill(c, deadline);
                if (r < 0) {
                        if (r != -ETIMEDOUT)
                                connection_close(c);
                        return r;
                }
        }
}

static void frame_free(Frame *f) {
        if (!f)
                return;
        free(f->payload);
        free(f);
}

static uint32_t request_id_next(secclient *c) {
        uint32_t id = c->next_request_id++;

        if (c->next_request_id == 0)
                c->next_request_id = 1;
        return id;
}

static int frame_write(secclient *c, uint8_t type, uint32_t request_id, const void *payload, size_t len,
                       uint64_t deadline) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t size;
        int r;

        if (len > FRAME_PAYLOAD_MAX_HARD)
                return -EMSGSIZE;
        r = frame_build(type, request_id, payload, (uint32_t) len, &buf, &size);
        if (r < 0)
                return r;
        /* On failure part of the frame may be on the wire: the caller closes the connection. */
        return tls_send_all(c, buf, size, deadline);
}

/* An ERROR frame as the failure of a call: last_error = the server's message. */
static int frame_error_report(secclient *c, const Frame *f) {
        _cleanup_free_ char *msg = NULL;
        uint16_t code;
        int r;

        r = frame_error_parse(f->payload, f->len, &code, &msg);
        if (r < 0) {
                set_last_error(c, "malformed ERROR frame from secd");
                return -EBADMSG;
        }
        set_last_error(c, "%s", isempty(msg) ? frame_error_to_string(code) : msg);
        return frame_error_to_errno(code);
}

static int stash_push(secclient *c, Frame *f) {
        if (c->stash_n >= CLIENT_STASH_MAX) {
                frame_free(f);
                return -ENOBUFS;
        }
        if (c->stash_tail)
                c->stash_tail->next = f;
        else
                c->stash_head = f;
        c->stash_tail = f;
        c->stash_n++;
        return 0;
}

/*
 * secd closed the connection with an ERROR. Idle timeouts, shutdowns and
 * (with renewable credentials) expiry are transient: the next call
 * reconnects. A refusal or revocation is not: calls return its errno until
 * the next secclient_connect().
 */
static void connection_drop(secclient *c, int r) {
        connection_close(c);
        if (r == -ETIMEDOUT || r == -ESHUTDOWN || r == -ECONNRESET || (r == -EKEYEXPIRED && c->renewable))
                return;
        c->want_connected = false;
        c->drop_error = r;
}

/*
 * Wait for the reply to request_id, stashing other replies for
 * secclient_recv(). An ERROR with request id 0 concerns the connection and
 * is returned for any request.
 */
static bool abandoned_take(secclient *c, uint32_t request_id) {
        if (request_id == 0)
                return false;
        for (size_t i = 0; i < CLIENT_ABANDONED_MAX; i++)
                if (c->abandoned[i] == request_id) {
                        c->abandoned[i] = 0;
                        return true;
                }
        return false;
}

static int reply_wait(secclient *c, uint32_t request_id, uint64_t deadline, Frame **ret) {
        for (;;) {
                Frame *f = NULL;
                int r;

                r = frame_read(c, deadline, &f);
                if (r == -ETIMEDOUT && c->connected) {
                        /*
                         * The caller gives up on this request; its reply may still come.
                         * Nobody would ever take it from the stash, so drop it when it
                         * does (the oldest abandoned id is forgotten beyond the ring).
                         */
                        c->abandoned[c->abandoned_next] = request_id;
                        c->abandoned_next = (c->abandoned_next + 1) % CLIENT_ABANDONED_MAX;
                }
                if (r < 0)
                        return r;
                if (f->request_id == request_id || (f->type == FRAME_ERROR && f->request_id == 0)) {
                        *ret = f;
                        return 0;
                }
                if (abandoned_take(c, f->request_id)) {
                        frame_free(f);
                        continue;
                }
                r = stash_push(c, f);
                if (r < 0)
                        return r;
        }
}

/* PING round trip on the current connection. */
static int ping_once(secclient *c, const void *payload, size_t len, uint64_t deadline) {
        Frame *f = NULL;
        uint32_t id;
        int r;

        id = request_id_next(c);
        r = frame_write(c, FRAME_PING, id, payload, len, deadline);
        if (r < 0) {
                int k;

                /*
                 * secd may have sent an ERROR (NOT_ADMITTED, CERT_REVOKED, …)
                 * and hung up before our frame arrived: its words are still
                 * in our receive buffer and explain the failure better.
                 */
                if (r != -ETIMEDOUT && reply_wait(c, id, deadline, &f) >= 0 && f->type == FRAME_ERROR) {
                        k = frame_error_report(c, f);
                        frame_free(f);
                        connection_drop(c, k);
                        return k;
                }
                frame_free(f);
                connection_close(c);
                return r;
        }
        r = reply_wait(c, id, deadline, &f);
        if (r < 0)
                return r;
        if (f->type == FRAME_ERROR) {
                r = frame_error_report(c, f);
                /* The server closes after these: so do we. */
                if (f->request_id == 0 || r == -EACCES || r == -EKEYREVOKED || r == -EKEYEXPIRED ||
                    r == -ESHUTDOWN || r == -EBADMSG || r == -ETIMEDOUT)
                        connection_drop(c, r);
        } else if (f->type != FRAME_PONG)
                r = -EPROTO;
        else if (f->len != len || (len > 0 && memcmp(f->payload, payload, len) != 0))
                r = -EBADMSG;
        else
                r = 0;
        frame_free(f);
        return r;
}

/* ---------------------------------------------------------------------- */
/* Connect */

/* Fresh or renewed credentials before a handshake. */
static int credentials_ensure(secclient *c, const SecclientEndpoint *e) {
        uint64_t now = real_usec();
        int r;

        if (!c->cred) {
                if (!e->unix_socket) {
                        set_last_error(c,
                                       "no credentials for a TCP endpoint (secclient_load_credentials())");
                        return -ENOKEY;
                }
                return secclient_enroll(c);
        }
        if (c->renewable && renew_due(now, c->not_before_usec, c->not_after_usec)) {
                r = secclient_enroll(c);
                if (r >= 0)
                        return 0;
                /* Keep using the old certificate while it is valid. */
                if (now < c->not_after_usec)
                        return 0;
                return r;
        }
        if (now >= c->not_after_usec) {
                set_last_error(c, "the client certificate has expired");
                return -EKEYEXPIRED;
        }
        return 0;
}

static int connect_once(secclient *c) {
        _cleanup_(endpoint_done) SecclientEndpoint e = {};
        gnutls_session_t s = NULL;
        uint64_t deadline;
        int r, g;

        connection_close(c);
        clear_last_error(c);

        /* A reader that met a bad frame stays unusable: each connection gets a fresh one. */
        {
                FrameReader *reader = NULL;

                r = frame_reader_new(FRAME_PAYLOAD_MAX_HARD, &reader);
                if (r < 0)
                        return r;
                frame_reader_free(c->reader);
                c->reader = reader;
        }

        r = endpoint_parse(c->endpoint, &e);
        if (r < 0)
                return r;
        r = credentials_ensure(c, &e);
        if (r < 0)
                return r;

        deadline = deadline_after(c->timeout_ms);
        r = transport_open(&e, deadline, &c->fd);
        if (r < 0) {
                set_last_error(c, "cannot connect to %s: %s", c->endpoint, secclient_strerror(r));
                return r;
        }

        g = gnutls_init(&s, GNUTLS_CLIENT | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL);
        if (g < 0) {
                connection_close(c);
                return -ENOMEM;
        }
        c->session = s;

        gnutls_typed_vdata_st vdata[] = {
                { .type = GNUTLS_DT_KEY_PURPOSE_OID, .data = (unsigned char *) GNUTLS_KP_TLS_WWW_SERVER },
        };
        g = gnutls_priority_set_direct(s, CLIENT_TLS_PRIORITY, NULL);
        if (g >= 0) {
                g = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, c->cred);
                c->session_cred = c->cred;
        }
        if (g >= 0) {
                /* The chain must lead to secd's CA (the only trust anchor) and carry the server purpose. */
                gnutls_session_set_verify_cert2(s, vdata, ELEMENTSOF(vdata), 0);
                if (c->session_data.data)
                        g = gnutls_session_set_data(s, c->session_data.data, c->session_data.size);
        }
        if (g < 0) {
                connection_close(c);
                return gnutls_to_errno(g);
        }
        gnutls_transport_set_int(s, c->fd);

        for (;;) {
                g = gnutls_handshake(s);
                if (g >= 0)
                        break;
                if (g == GNUTLS_E_AGAIN || g == GNUTLS_E_INTERRUPTED) {
                        r = tls_wait(c, deadline);
                        if (r < 0) {
                                set_last_error(c, "TLS handshake with %s timed out", c->endpoint);
                                connection_close(c);
                                return r;
                        }
                        continue;
                }
                if (!gnutls_error_is_fatal(g) && remaining_ms(deadline) != 0)
                        continue;
                set_last_error(c, "TLS handshake with %s failed: %s", c->endpoint, gnutls_strerror(g));
                if (g == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR || g == GNUTLS_E_CERTIFICATE_ERROR)
                        r = -EKEYREJECTED;
                else if (g == GNUTLS_E_FATAL_ALERT_RECEIVED)
                        r = -EACCES; /* secd refused our certificate */
                else
                        r = gnutls_to_errno(g);
                connection_close(c);
                return r;
        }

        /*
         * With TLS 1.3 the handshake completes before secd has checked our
         * certificate and admitted the process: one PING round trip proves
         * admission, and turns a refusal (ERROR NOT_ADMITTED) into -EACCES.
         */
        c->connected = true;
        r = ping_once(c, NULL, 0, deadline);
        if (r < 0) {
                if (r == -ECONNRESET && !c->last_error)
                        set_last_error(c, "secd closed the connection after the handshake");
                connection_close(c);
                return r;
        }

        /*
         * secd sends one session ticket per connection, full or resumed, once
         * it has admitted us and before the PONG: keep the newest for a
         * resumed handshake on the next connect (dropped whenever the
         * credentials change).
         */
        if (gnutls_session_get_flags(s) & GNUTLS_SFLAGS_SESSION_TICKET) {
                gnutls_datum_t d = {};

                if (gnutls_session_get_data2(s, &d) >= 0 && d.size > 0) {
                        session_data_forget(c);
                        c->session_data = d;
                } else if (d.data)
                        gnutls_free(d.data);
        }
        return 0;
}

_public_ int secclient_connect(secclient *c) {
        int r;

        if (!c)
                return -EINVAL;
        r = connect_once(c);
        c->want_connected = r >= 0;
        c->drop_error = 0;
        return r;
}

static bool reconnect_worth_trying(int r) {
        switch (r) {
        case -ECONNREFUSED: case -ENOENT: case -ECONNRESET: case -ETIMEDOUT: case -EAGAIN:
        case -EPIPE: case -ESHUTDOWN: case -ENETUNREACH: case -EHOSTUNREACH: case -ECONNABORTED:
                return true;
        default:
                return false;
        }
}

/* After a drop: bounded attempts with exponential backoff and jitter. */
static int reconnect(secclient *c) {
        int r = -ENOTCONN;

        for (unsigned attempt = 0; attempt < SECCLIENT_RECONNECT_ATTEMPTS; attempt++) {
                uint32_t rnd = 0;
                unsigned delay;

                if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != sizeof rnd)
                        rnd = (uint32_t) mono_ms();
                delay = backoff_delay_ms(attempt, rnd);
                if (delay > 0) {
                        struct timespec ts = {.tv_sec = delay / 1000,
                                              .tv_nsec = (long) (delay % 1000) * 1000000L};
                        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                                ;
                }
                r = connect_once(c);
                if (r >= 0 || !reconnect_worth_trying(r))
                        break;
        }
        if (r < 0 && !reconnect_worth_trying(r)) {
                c->want_connected = false;
                c->drop_error = r;
        }
        /* The new session needs its own proof before the call that reconnected goes on. */
        if (r >= 0 && c->has_identity)
                r = mailbox_register(c, c->identity_seed, NULL);
        return r;
}

/*
 * Read what secd already sent, without waiting, so that a hang-up or a
 * connection-level ERROR (idle timeout, shutdown, revocation) is noticed
 * before we write on a dead connection. Replies go to the stash.
 */
static void connection_poll(secclient *c) {
        while (c->connected && c->stash_n < CLIENT_STASH_MAX) {
                Frame *f = NULL;

                if (c->rpos >= c->rlen && gnutls_record_check_pending(c->session) == 0) {
                        struct pollfd p = { .fd = c->fd, .events = POLLIN };

                        if (poll(&p, 1, 0) <= 0)
                                return;
                }
                if (frame_read(c, mono_ms(), &f) < 0)
                        return; /* nothing whole yet (the connection lives), or closed */
                if (f->type == FRAME_ERROR && f->request_id == 0) {
                        int r = frame_error_report(c, f);

                        frame_free(f);
                        connection_drop(c, r);
                        return;
                }
                if (abandoned_take(c, f->request_id)) {
                        frame_free(f);
                        continue;
                }
                (void) stash_push(c, f);
        }
}

/* Connected, or reconnected if a previous connection dropped; -ENOTCONN if never connected. */
static int connection_ensure(secclient *c) {
        if (c->connected)
                connection_poll(c);
        if (c->connected)
                return 0;
        if (!c->want_connected)
                return c->drop_error < 0 ? c->drop_error : -ENOTCONN;
        return reconnect(c);
}

_public_ void secclient_disconnect(secclient *c) {
        if (!c)
                return;
        if (c->session && c->connected) {
                /* Best effort close_notify, never blocking. */
                (void) gnutls_bye(c->session, GNUTLS_SHUT_WR);
        }
        connection_close(c);
        stash_clear(c);
        c->want_connected = false;
        c->drop_error = 0;
}

/* ---------------------------------------------------------------------- */
/* Requests */

_public_ int secclient_ping(secclient *c, const void *payload, size_t len) {
        int r;

        if (!c || (len > 0 && !payload))
                return -EINVAL;
        if (len > SECCLIENT_PING_MAX)
                return -EMSGSIZE;

        r = connection_ensure(c);
        if (r < 0)
                return r;
        r = ping_once(c, payload, len, deadline_after(c->timeout_ms));
        if (r < 0 && !c->connected && c->want_connected &&
            (reconnect_worth_trying(r) || r == -EKEYEXPIRED)) {
                /* PING is idempotent: one more try on a fresh connection. */
                r = reconnect(c);
                if (r >= 0)
                        r = ping_once(c, payload, len, deadline_after(c->timeout_ms));
        }
        return r;
}

_public_ int secclient_send(secclient *c, uint8_t type, const void *payload, size_t len,
                            uint32_t *ret_request_id) {
        uint32_t id;
        int r;

        if (!c || (len > 0 && !payload))
                return -EINVAL;
        if (type & FRAME_REPLY_BIT)
                return -EINVAL; /* replies (and ERROR) come from secd */
        if (len > FRAME_PAYLOAD_MAX_HARD)
                return -EMSGSIZE;

        r = connection_ensure(c);
        if (r < 0)
                return r;
        id = request_id_next(c);
        r = frame_write(c, type, id, payload, len, deadline_after(c->timeout_ms));
        if (r < 0) {
                connection_close(c);
                return r;
        }
        if (ret_request_id)
                *ret_request_id = id;
        return 0;
}

_public_ int secclient_recv(secclient *c, uint8_t *ret_type, uint32_t *ret_request_id, void **ret_payload,
                            size_t *ret_len) {
        Frame *f = NULL;
        int r;

        if (!c || !ret_type || !ret_payload || !ret_len)
                return -EINVAL;

        if (c->stash_head) {
                f = c->stash_head;
                c->stash_head = f->next;
                if (!c->stash_head)
                        c->stash_tail = NULL;
                c->stash_n--;
        } else {
                if (!c->connected)
                        return -ENOTCONN;
                r = frame_read(c, deadline_after(c->timeout_ms), &f);
                if (r < 0)
                        return r;
        }

        if (f->type == FRAME_ERROR) {
                /* Keep the server's words; secclient_error_parse() decodes the payload. */
                int k = frame_error_report(c, f);

                if (f->request_id == 0)
                        connection_drop(c, k);
        }
        *ret_type = f->type;
        if (ret_request_id)
                *ret_request_id = f->request_id;
        *ret_payload = TAKE_PTR(f->payload);
        *ret_len = f->len;
        free(f);
        return 0;
}

_public_ int secclient_error_parse(const void *payload, size_t len, uint16_t *ret_code, char **ret_message) {
        _cleanup_free_ char *msg = NULL;
        uint16_t code;
        int r;

        if ((!payload && len > 0) || !ret_code)
                return -EINVAL;
        if (len > UINT32_MAX)
                return -EBADMSG;
        r = frame_error_parse(payload, (uint32_t) len, &code, &msg);
        if (r < 0)
                return r;
        *ret_code = code;
        if (ret_message)
                *ret_message = TAKE_PTR(msg);
        return 0;
}

/* ---------------------------------------------------------------------- */
/* Relay and key-server plumbing (relay.c, keys.c) */

void client_identity_set(secclient *c, const uint8_t seed[SECCLIENT_KEY_SIZE]) {
        /* Another mailbox: the ids delivered for the previous one mean nothing there. */
        if (c->has_identity && gnutls_memcmp(c->identity_seed, seed, SECCLIENT_KEY_SIZE) != 0 && c->seen)
                seen_set_clear(c->seen);
        memcpy(c->identity_seed, seed, SECCLIENT_KEY_SIZE);
        c->has_identity = true;
}

void client_identity_clear(secclient *c) {
        explicit_bzero(c->identity_seed, sizeof c->identity_seed);
        c->has_identity = false;
        if (c->seen)
                seen_set_clear(c->seen);
}

const uint8_t *client_identity(const secclient *c) {
        return c->has_identity ? c->identity_seed : NULL;
}

bool client_registered(const secclient *c) {
        return c->connected && c->registered;
}

void client_set_registered(secclient *c) {
        c->registered = c->connected;
}

SeenSet *client_seen(secclient *c) {
        if (!c->seen)
                c->seen = calloc(1, sizeof *c->seen);
        return c->seen;
}

void client_set_last_error(secclient *c, const char *message) {
        set_last_error(c, "%s", message);
}

int client_connection_ensure(secclient *c) {
        int r = connection_ensure(c);

        /* On failure the note explains it (a refusal that stopped reconnection, a failed reconnect). */
        if (r >= 0)
                clear_last_error(c);
        return r;
}

int client_channel_binding(secclient *c, uint8_t ret[SECCLIENT_KEY_SIZE]) {
        gnutls_datum_t cb = {};
        int g;

        if (!c->connected || !c->session)
                return -ENOTCONN;
        g = gnutls_session_channel_binding(c->session, GNUTLS_CB_TLS_EXPORTER, &cb);
        if (g < 0) {
                set_last_error(c, "no TLS exporter for this session: %s", gnutls_strerror(g));
                return -EPROTO;
        }
        if (cb.size != SECCLIENT_KEY_SIZE) {
                g = -EPROTO;
                set_last_error(c, "TLS exporter of unexpected size %u", cb.size);
        } else {
                memcpy(ret, cb.data, SECCLIENT_KEY_SIZE);
                g = 0;
        }
        gnutls_memset(cb.data, 0, cb.size);
        gnutls_free(cb.data);
        return g;
}

/* ERROR codes after which secd closes the connection (docs/protocol.md). */
static bool frame_error_closes(uint16_t code) {
        switch (code) {
        case FRAME_ERROR_BAD_FRAME: case FRAME_ERROR_TOO_LARGE: case FRAME_ERROR_NOT_ADMITTED:
        case FRAME_ERROR_CERT_REVOKED: case FRAME_ERROR_CERT_EXPIRED: case FRAME_ERROR_SHUTTING_DOWN:
        case FRAME_ERROR_IDLE_TIMEOUT:
                return true;
        default:
                return false;
        }
}

int client_request_now(secclient *c, uint8_t type, const void *payload, size_t len, unsigned extra_wait_ms,
                       uint8_t **ret_payload, size_t *ret_len) {
        Frame *f = NULL;
        uint64_t deadline;
        uint32_t id;
        int r;

        if (len > FRAME_PAYLOAD_MAX_HARD)
                return -EMSGSIZE;
        if (!c->connected)
                return -ENOTCONN;

        /* A long poll may legitimately keep the reply back for extra_wait_ms. */
        deadline = c->timeout_ms == 0 ? UINT64_MAX : mono_ms() + c->timeout_ms + extra_wait_ms;
        id = request_id_next(c);
        r = frame_write(c, type, id, payload, len, deadline);
        if (r < 0) {
                /* As in ping_once(): an ERROR secd sent before hanging up explains it better. */
                if (r != -ETIMEDOUT && reply_wait(c, id, deadline, &f) >= 0 && f->type == FRAME_ERROR) {
                        int k = frame_error_report(c, f);

                        frame_free(f);
                        connection_drop(c, k);
                        return k;
                }
                frame_free(f);
                connection_close(c);
                return r;
        }
        r = reply_wait(c, id, deadline, &f);
        if (r < 0)
                return r;
        if (f->type == FRAME_ERROR) {
                uint16_t code = 0;

                r = frame_error_report(c, f);
                if (f->request_id == 0 ||
                    (frame_error_parse(f->payload, f->len, &code, NULL) >= 0 && frame_error_closes(code)))
                        connection_drop(c, r);
                frame_free(f);
                return r;
        }
        if (f->type != (type | FRAME_REPLY_BIT)) {
                set_last_error(c, "reply of type 0x%02x to a request of type 0x%02x", f->type, type);
                frame_free(f);
                return -EBADMSG;
        }
        *ret_payload = TAKE_PTR(f->payload);
        *ret_len = f->len;
        free(f);
        return 0;
}

int client_request(secclient *c, uint8_t type, const void *payload, size_t len, unsigned extra_wait_ms,
                   uint8_t **ret_payload, size_t *ret_len) {
        int r;

        r = client_connection_ensure(c);
        if (r < 0)
                return r;
        /* A registration that failed after a reconnection (or after secclient_connect()) is retried first. */
        if (c->has_identity && !c->registered) {
                r = mailbox_register(c, c->identity_seed, NULL);
                if (r < 0)
                        return r;
        }
        return client_request_now(c, type, payload, len, extra_wait_ms, ret_payload, ret_len);
}

/* ---------------------------------------------------------------------- */
/* Credential hand-over */

static int socket_type(int fd) {
        int type = 0;
        socklen_t len = sizeof type;

        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
                return negative_errno();
        return type;
}

static int send_all_fd(int fd, const uint8_t *p, size_t n, uint64_t deadline) {
        while (n > 0) {
                ssize_t k;
                int r = wait_fd(fd, POLLOUT, deadline);

                if (r < 0)
                        return r;
                k = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (k < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        return negative_errno();
                }
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

static int recv_exact_fd(int fd, uint8_t *p, size_t n, uint64_t deadline) {
        while (n > 0) {
                ssize_t k;
                int r = wait_fd(fd, POLLIN, deadline);

                if (r < 0)
                        return r;
                k = recv(fd, p, n, MSG_DONTWAIT);
                if (k < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        return negative_errno();
                }
                if (k == 0)
                        return -EBADMSG; /* truncated */
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

_public_ int secclient_creds_send(const secclient *c, int fd) {
        _cleanup_erase_ char *json = NULL;
        uint8_t *msg = NULL;
        size_t len, size;
        int type, r;

        if (!c || fd < 0)
                return fd < 0 ? -EBADF : -EINVAL;
        if (!c->cred)
                return -ENOKEY;
        type = socket_type(fd);
        if (type < 0)
                return type;
        if (type != SOCK_STREAM && type != SOCK_SEQPACKET)
                return -ESOCKTNOSUPPORT;

        r = creds_bundle_format(c->ca_pem, c->cert_pem, c->key_pem, &json, &len);
        if (r < 0)
                return r;
        size = len + 4;
        msg = malloc(size);
        if (!msg)
                return -ENOMEM;
        msg[0] = (uint8_t) (len >> 24);
        msg[1] = (uint8_t) (len >> 16);
        msg[2] = (uint8_t) (len >> 8);
        msg[3] = (uint8_t) len;
        memcpy(msg + 4, json, len);

        if (type == SOCK_SEQPACKET) {
                /* One message: the receiver sees all of it or nothing. */
                r = wait_fd(fd, POLLOUT, deadline_after(c->timeout_ms));
                if (r >= 0 && send(fd, msg, size, MSG_NOSIGNAL) != (ssize_t) size)
                        r = errno > 0 ? -errno : -EIO;
        } else
                r = send_all_fd(fd, msg, size, deadline_after(c->timeout_ms));

        explicit_bzero(msg, size);
        free(msg);
        return r;
}

_public_ int secclient_creds_recv(secclient *c, int fd) {
        const size_t bufsize = SECCLIENT_CREDS_BUNDLE_MAX + 4;
        _cleanup_free_ char *ca = NULL, *cert = NULL;
        _cleanup_erase_ char *key = NULL;
        uint64_t deadline;
        uint8_t *buf;
        size_t len = 0;
        int type, r;

        if (!c || fd < 0)
                return fd < 0 ? -EBADF : -EINVAL;
        type = socket_type(fd);
        if (type < 0)
                return type;
        if (type != SOCK_STREAM && type != SOCK_SEQPACKET)
                return -ESOCKTNOSUPPORT;

        buf = malloc(bufsize);
        if (!buf)
                return -ENOMEM;
        deadline = deadline_after(c->timeout_ms);

        if (type == SOCK_SEQPACKET) {
                ssize_t n;

                for (;;) {
                        r = wait_fd(fd, POLLIN, deadline);
                        if (r < 0)
                                goto finish;
                        n = recv(fd, buf, bufsize, MSG_TRUNC | MSG_DONTWAIT);
                        if (n < 0 && (errno == EINTR || errno == EAGAIN))
                                continue;
                        break;
                }
                if (n < 0) {
                        r = negative_errno();
                        goto finish;
                }
                if ((size_t) n > bufsize) {
                        r = -EMSGSIZE;
                        goto finish;
                }
                if (n < 4) {
                        r = -EBADMSG;
                        goto finish;
                }
                len = (size_t) buf[0] << 24 | (size_t) buf[1] << 16 | (size_t) buf[2] << 8 | buf[3];
                if (len > SECCLIENT_CREDS_BUNDLE_MAX) {
                        r = -EMSGSIZE;
                        goto finish;
                }
                if (len != (size_t) n - 4) {
                        r = -EBADMSG;
                        goto finish;
                }
        } else {
                r = recv_exact_fd(fd, buf, 4, deadline);
                if (r < 0)
                        goto finish;
                len = (size_t) buf[0] << 24 | (size_t) buf[1] << 16 | (size_t) buf[2] << 8 | buf[3];
                if (len > SECCLIENT_CREDS_BUNDLE_MAX) {
                        r = -EMSGSIZE;
                        goto finish;
                }
                r = recv_exact_fd(fd, buf + 4, len, deadline);
                if (r < 0)
                        goto finish;
        }

        r = creds_bundle_parse((const char *) buf + 4, len, &ca, &cert, &key);
        if (r < 0)
                goto finish;
        /* A handed-over certificate names the parent's identity: not renewed by enrolling here. */
        r = credentials_install(c, ca, cert, key, false);
        if (r >= 0) {
                TAKE_PTR(ca);
                TAKE_PTR(cert);
                TAKE_PTR(key);
        } else if (r != -ENOMEM)
                r = -EBADMSG;
finish:
        explicit_bzero(buf, bufsize);
        free(buf);
        return r;
}
