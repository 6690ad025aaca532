/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include "admission.h"
#include "ca.h"
#include "data-internal.h"
#include "frame.h"
#include "log.h"
#include "relay.h"
#include "tls.h"

/*
 * One mTLS session on the data or tcp endpoint, driven by the loop:
 *
 *   HANDSHAKE  gnutls_handshake() until done or handshake_timeout
 *   ADMITTING  certificate checked; the live process is being judged (Unix)
 *   OPEN       frames in, replies out; data_idle_timeout between frames
 *   CLOSING    the last frames (an ERROR) are flushed, then close_notify
 *   LINGER     our side is shut; read and drop until the peer closes, so
 *              the ERROR frame is not destroyed by a reset
 */
typedef enum DataState {
        DATA_HANDSHAKE,
        DATA_ADMITTING,
        DATA_OPEN,
        DATA_CLOSING,
        DATA_LINGER,
} DataState;

#define DATA_CONNECTIONS_MAX 4096
#define DATA_LINGER_USEC (UINT64_C(2) * 1000000)
#define DATA_READ_BATCH 64              /* records per wake-up before yielding to others */
#define DATA_RECORD_MAX 16384
#define DATA_OUTPUT_SLACK (UINT64_C(256) * 1024)
#define DATA_RX_SIZE 4096               /* read-ahead for GnuTLS's small reads (record header, then body) */
#define DATA_TX_SIZE 4096               /* what one step's small records gather before one send */

struct DataConnection {
        Manager *manager;
        DataConnection *prev, *next;
        uint64_t id;
        PolicyEndpoint kind;
        int fd;
        gnutls_session_t session;
        TlsCredentials *creds;          /* the server credentials this session uses (ref) */
        DataState state;
        sd_event_source *io_source, *timer_source, *defer_source;
        DataConnection *kicked_prev, *kicked_next;      /* on m->data_kicked while kicked */
        bool kicked;
        uint32_t want;                  /* EPOLLIN/EPOLLOUT a blocked GnuTLS call waits for */
        uint32_t io_events;             /* what io_source is set to (0: disabled) */
        bool ticket_pending;            /* admitted: one session ticket goes out before anything else */
        bool shut_wr;                   /* LINGER: shutdown(SHUT_WR) done */
        /*
         * GnuTLS's transport (data_pull(), data_push()): bytes read ahead of it, and its
         * small writes during one step, sent together at the end of the step. Fewer system
         * calls and fewer wake-ups of the peer (each flight and each record was a send).
         */
        size_t rx_off, rx_len;
        bool rx_drained;                /* the last recv() came back short: the socket is empty */
        size_t tx_len;
        uint8_t rx[DATA_RX_SIZE];
        uint8_t tx[DATA_TX_SIZE];
        AdmissionRequest *admission;
        FrameReader *reader;
        uint8_t *out;
        size_t out_size, out_offset, out_alloc;
        size_t send_pending;            /* length of a gnutls_record_send() that returned AGAIN */
        CertIdentity cert;
        bool have_cert;
        uid_t peer_uid;                 /* SO_PEERCRED at accept (Unix data endpoint only) */
        struct ucred peer_cred;         /* the same, whole, for admission */
        bool resumed;
        uint64_t frames_in;
        RelaySession *relay;            /* relay and key-server state (relay.c), NULL until used */
};

static uint64_t data_next_id = 1;

/*
 * Per-connection failures (handshake errors and timeouts, refusals) are
 * caused by peers: anyone who can connect could otherwise write to the
 * journal as fast as they can connect. At most DATA_LOG_BURST such lines per
 * DATA_LOG_INTERVAL_USEC, then one line saying how many were left out; the
 * counters in Status.Get count every one.
 */
#define DATA_LOG_INTERVAL_USEC (UINT64_C(10) * 1000000)
#define DATA_LOG_BURST 20

static struct {
        uint64_t begin;
        unsigned n;
        uint64_t suppressed;
} data_log_limit;

static bool data_log_allowed(void) {
        uint64_t now = now_usec(CLOCK_MONOTONIC);

        if (data_log_limit.begin == 0 || now - data_log_limit.begin >= DATA_LOG_INTERVAL_USEC) {
                if (data_log_limit.suppressed > 0)
                        log_notice("data: %" PRIu64 " connection failure messages suppressed in the last %" PRIu64
                                   " s (see the counters of secctl status).",
                                   data_log_limit.suppressed, DATA_LOG_INTERVAL_USEC / 1000000);
                data_log_limit.begin = now;
                data_log_limit.n = 0;
                data_log_limit.suppressed = 0;
        }
        if (data_log_limit.n >= DATA_LOG_BURST) {
                data_log_limit.suppressed++;
                return false;
        }
        data_log_limit.n++;
        return true;
}

static int data_step(DataConnection *c);
static void data_update(DataConnection *c);
static void data_run(DataConnection *c);

static const char *data_ep(const DataConnection *c) {
        return policy_endpoint_to_string(c->kind);
}

/* Off m->data_kicked (data_connection_kick()), if on it. */
static void data_unkick(DataConnection *c) {
        Manager *m = c->manager;

        if (!c->kicked)
                return;
        if (c->kicked_prev)
                c->kicked_prev->kicked_next = c->kicked_next;
        else
                m->data_kicked = c->kicked_next;
        if (c->kicked_next)
                c->kicked_next->kicked_prev = c->kicked_prev;
        c->kicked = false;
        c->kicked_prev = c->kicked_next = NULL;
}

static DataConnection *data_connection_free(DataConnection *c) {
        Manager *m;

        if (!c)
                return NULL;
        m = c->manager;
        /* First: the relay detaches its jobs in flight and gives up the mailbox. */
        c->relay = relay_session_free(c->relay);
        if (c->prev)
                c->prev->next = c->next;
        else
                m->data_connections = c->next;
        if (c->next)
                c->next->prev = c->prev;
        if (m->n_connections[c->kind] > 0)
                m->n_connections[c->kind]--;

        admission_request_free(c->admission);
        sd_event_source_disable_unref(c->io_source);
        sd_event_source_disable_unref(c->timer_source);
        sd_event_source_disable_unref(c->defer_source);
        data_unkick(c);
        if (c->session)
                gnutls_deinit(c->session);
        tls_credentials_unref(c->creds);
        safe_close(c->fd);
        frame_reader_free(c->reader);
        free(c->out);
        log_debug("%s #%" PRIu64 ": closed.", data_ep(c), c->id);
        free(c);
        return NULL;
}

static int data_timer_set(DataConnection *c, uint64_t usec_from_now) {
        uint64_t when = now_usec(CLOCK_MONOTONIC) + usec_from_now;
        int r;

        r = sd_event_source_set_time(c->timer_source, when);
        if (r >= 0)
                r = sd_event_source_set_enabled(c->timer_source, SD_EVENT_ONESHOT);
        return r;
}

/* 1 when tx is empty, 0 when the socket is full, negative on error. */
static int data_tx_flush(DataConnection *c) {
        size_t off = 0;

        while (off < c->tx_len) {
                ssize_t n = send(c->fd, c->tx + off, c->tx_len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                return -errno;
                        break;
                }
                off += (size_t) n;
        }
        if (off > 0) {
                memmove(c->tx, c->tx + off, c->tx_len - off);
                c->tx_len -= off;
        }
        return c->tx_len == 0;
}

static ssize_t data_push(gnutls_transport_ptr_t ptr, const giovec_t *iov, int iovcnt) {
        DataConnection *c = ptr;
        size_t total = 0;
        int r;

        for (int i = 0; i < iovcnt; i++)
                total += iov[i].iov_len;
        if (c->tx_len + total <= sizeof c->tx) {
                for (int i = 0; i < iovcnt; i++) {
                        memcpy(c->tx + c->tx_len, iov[i].iov_base, iov[i].iov_len);
                        c->tx_len += iov[i].iov_len;
                }
                return (ssize_t) total;
        }
        /* Large: what is gathered goes first, then this directly (GnuTLS retries it after EAGAIN). */
        r = data_tx_flush(c);
        if (r <= 0) {
                errno = r < 0 ? -r : EAGAIN;
                return -1;
        }
        return sendmsg(c->fd, &(struct msghdr) { .msg_iov = (struct iovec *) iov, .msg_iovlen = iovcnt },
                       MSG_NOSIGNAL | MSG_DONTWAIT);
}

static ssize_t data_pull(gnutls_transport_ptr_t ptr, void *buf, size_t len) {
        DataConnection *c = ptr;
        ssize_t n;

        if (c->rx_off == c->rx_len) {
                /*
                 * A short read emptied the socket: until epoll says otherwise (data_on_io()),
                 * a recv() would only say EAGAIN (one per step: after each flight and request).
                 * Safe because every EAGAIN goes back to the loop waiting for EPOLLIN, which
                 * is level-triggered: bytes that arrived meanwhile wake it at once.
                 */
                if (c->rx_drained) {
                        errno = EAGAIN;
                        return -1;
                }
                if (len >= sizeof c->rx) {
                        n = recv(c->fd, buf, len, MSG_DONTWAIT);
                        c->rx_drained = n >= 0 && (size_t) n < len;
                        return n;
                }
                n = recv(c->fd, c->rx, sizeof c->rx, MSG_DONTWAIT);
                if (n <= 0)
                        return n;
                c->rx_drained = (size_t) n < sizeof c->rx;
                c->rx_off = 0;
                c->rx_len = (size_t) n;
        }
        n = (ssize_t) MIN(len, c->rx_len - c->rx_off);
        memcpy(buf, c->rx + c->rx_off, (size_t) n);
        c->rx_off += (size_t) n;
        return n;
}

static int data_pull_timeout(gnutls_transport_ptr_t ptr, unsigned ms) {
        DataConnection *c = ptr;
        int r;

        if (c->rx_off < c->rx_len)
                return 1;
        r = poll(&(struct pollfd) { .fd = c->fd, .events = POLLIN }, 1, ms == GNUTLS_INDEFINITE_TIMEOUT ? -1 : (int) ms);
        if (r > 0)
                c->rx_drained = false;
        return r;
}

/* Queue a whole frame for sending. */
static int data_queue(DataConnection *c, const uint8_t *buf, size_t size) {
        size_t need;

        if (c->out_offset == c->out_size && c->send_pending == 0)
                c->out_offset = c->out_size = 0;
        if (!size_add_ok(c->out_size, size, &need))
                return -ENOMEM;
        if (need > c->out_alloc) {
                size_t n = MAX(need, c->out_alloc * 2);
                uint8_t *p = realloc(c->out, n);
                if (!p)
                        return -ENOMEM;
                c->out = p;
                c->out_alloc = n;
        }
        memcpy(c->out + c->out_size, buf, size);
        c->out_size += size;
        return 0;
}

static int data_queue_frame(DataConnection *c, uint8_t type, uint32_t request_id, const void *payload, uint32_t len) {
        uint8_t header[FRAME_HEADER_SIZE];
        int r;

        frame_header_write(header, type, request_id, len);
        r = data_queue(c, header, sizeof header);
        if (r >= 0 && len > 0)
                r = data_queue(c, payload, len);
        return r;
}

static void data_queue_error(DataConnection *c, uint32_t request_id, uint16_t code, const char *message) {
        _cleanup_free_ uint8_t *f = NULL;
        size_t size;

        if (frame_build_error(request_id, code, message, &f, &size) >= 0)
                (void) data_queue(c, f, size);
}

/* Send an ERROR frame, then close: the session takes no more frames. */
static void data_fail(DataConnection *c, uint32_t request_id, uint16_t code, const char *message) {
        if (c->state >= DATA_CLOSING)
                return;
        log_debug("%s #%" PRIu64 ": closing with %s: %s", data_ep(c), c->id, frame_error_to_string(code) ?: "?",
                  message);
        data_queue_error(c, request_id, code, message);
        c->state = DATA_CLOSING;
        c->ticket_pending = false;
        c->admission = admission_request_free(c->admission);
        (void) data_timer_set(c, DATA_LINGER_USEC);
}

/* 1 when everything queued has been sent, 0 when blocked, negative on error. */
static int data_flush(DataConnection *c) {
        while (c->out_offset < c->out_size) {
                size_t len = c->send_pending ?: MIN(c->out_size - c->out_offset, (size_t) DATA_RECORD_MAX);
                ssize_t n = gnutls_record_send(c->session, c->out + c->out_offset, len);

                if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
                        c->send_pending = len;
                        c->want |= gnutls_record_get_direction(c->session) ? EPOLLOUT : EPOLLIN;
                        return 0;
                }
                if (n < 0) {
                        log_debug("%s #%" PRIu64 ": send failed: %s", data_ep(c), c->id, gnutls_strerror((int) n));
                        return -ECONNRESET;
                }
                c->send_pending = 0;
                c->out_offset += (size_t) n;
        }
        c->out_offset = c->out_size = 0;
        return 1;
}

static void data_handle_frame(DataConnection *c, const FrameHeader *h, const uint8_t *payload) {
        c->frames_in++;
        switch (h->type) {
        case FRAME_PING:
                if (data_queue_frame(c, FRAME_PONG, h->request_id, payload, h->length) < 0)
                        data_fail(c, h->request_id, FRAME_ERROR_INTERNAL, "out of memory");
                return;
        case FRAME_REGISTER:
        case FRAME_SEND:
        case FRAME_FETCH:
        case FRAME_ACK:
        case FRAME_KEYS_PUBLISH:
        case FRAME_KEYS_BUNDLE:
        case FRAME_KEYS_COUNT:
                relay_handle_frame(c, h, payload);
                return;
        default: {
                char msg[64];
                (void) snprintf(msg, sizeof msg, "unknown frame type 0x%02x", h->type);
                data_queue_error(c, h->request_id, FRAME_ERROR_UNKNOWN_TYPE, msg);
                return;
        }
        }
}

/* Bytes of plaintext from the peer: frames out of them. */
static void data_consume(DataConnection *c, const uint8_t *buf, size_t n) {
        size_t off = 0;

        while (off < n && c->state == DATA_OPEN) {
                size_t used = 0;
                FrameHeader h;
                const uint8_t *payload;
                int r;

                r = frame_reader_feed(c->reader, buf + off, n - off, &used);
                off += used;
                if (r == -EMSGSIZE) {
                        char msg[96];
                        frame_reader_frame(c->reader, &h, NULL);
                        (void) snprintf(msg, sizeof msg, "payload of %" PRIu32 " bytes is over the maximum of %" PRIu64,
                                        h.length, MIN(c->manager->config.frame_payload_max, (uint64_t) FRAME_PAYLOAD_MAX_HARD));
                        data_fail(c, h.request_id, FRAME_ERROR_TOO_LARGE, msg);
                        return;
                }
                if (r == -EPROTONOSUPPORT) {
                        data_fail(c, 0, FRAME_ERROR_BAD_FRAME, "unsupported frame version");
                        return;
                }
                if (r < 0) {
                        data_fail(c, 0, FRAME_ERROR_BAD_FRAME, r == -EBADMSG ? "bad frame magic" : "cannot read frame");
                        return;
                }
                if (r == 0)
                        continue;
                frame_reader_frame(c->reader, &h, &payload);
                data_handle_frame(c, &h, payload);
                frame_reader_reset(c->reader);
                (void) data_timer_set(c, c->manager->config.data_idle_timeout);
        }
}

static int data_read(DataConnection *c) {
        uint8_t buf[DATA_RECORD_MAX];

        for (unsigned i = 0; i < DATA_READ_BATCH; i++) {
                ssize_t n;

                if (c->state != DATA_OPEN)
                        return 0;
                /* Back-pressure: a peer that does not read its replies stops being read. */
                if (c->out_size - c->out_offset > c->manager->config.frame_payload_max + DATA_OUTPUT_SLACK)
                        return 0;
                n = gnutls_record_recv(c->session, buf, sizeof buf);
                if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
                        c->want |= gnutls_record_get_direction(c->session) ? EPOLLOUT : EPOLLIN;
                        return 0;
                }
                if (n == 0) {
                        if (frame_reader_partial(c->reader))
                                log_debug("%s #%" PRIu64 ": peer closed in the middle of a frame (truncated).",
                                          data_ep(c), c->id);
                        return -ECONNRESET;
                }
                if (n < 0) {
                        if (!gnutls_error_is_fatal((int) n))
                                continue;
                        log_debug("%s #%" PRIu64 ": receive failed: %s", data_ep(c), c->id, gnutls_strerror((int) n));
                        return -ECONNRESET;
                }
                data_consume(c, buf, (size_t) n);
        }
        /*
         * Batch used up: let other connections run. Bytes still in the socket wake us
         * through epoll (level-triggered); records GnuTLS already decrypted and buffers
         * do not, so come back for those on the next iteration.
         */
        if (gnutls_record_check_pending(c->session) > 0 || c->rx_off < c->rx_len)
                return sd_event_source_set_enabled(c->defer_source, SD_EVENT_ONESHOT);
        return 0;
}

/*
 * Certificate expiry of open sessions: one CLOCK_REALTIME timer for the
 * manager, set to the earliest not_after among them (not one per
 * connection: adding and removing a connection's own timer re-armed the
 * timerfd twice per connection). It may fire early (the session that set
 * it has closed); then it only moves on to the next earliest.
 */
static int data_expiry_arm(Manager *m, uint64_t when);

static int data_on_expiry(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        uint64_t now = now_usec(CLOCK_REALTIME), next = UINT64_MAX;
        DataConnection *c, *n;

        for (c = m->data_connections; c; c = n) {
                n = c->next;
                if (c->state != DATA_OPEN || !c->have_cert)
                        continue;
                if (c->cert.not_after_usec > now) {
                        next = MIN(next, c->cert.not_after_usec);
                        continue;
                }
                log_info("%s #%" PRIu64 ": client certificate %s expired, closing the session.", data_ep(c), c->id,
                         c->cert.serial);
                data_fail(c, 0, FRAME_ERROR_CERT_EXPIRED, "certificate expired");
                data_run(c);
        }
        if (next != UINT64_MAX && data_expiry_arm(m, next) < 0)
                log_warning("data: cannot re-arm the certificate expiry timer.");
        return 0;
}

/* Make sure the expiry timer fires at `when` or earlier. */
static int data_expiry_arm(Manager *m, uint64_t when) {
        uint64_t armed;
        int enabled = SD_EVENT_OFF, r;

        if (!m->data_expiry_source)
                return sd_event_add_time(m->event, &m->data_expiry_source, CLOCK_REALTIME, when, UINT64_C(1000000),
                                         data_on_expiry, m);
        r = sd_event_source_get_enabled(m->data_expiry_source, &enabled);
        if (r < 0)
                return r;
        if (enabled != SD_EVENT_OFF && sd_event_source_get_time(m->data_expiry_source, &armed) >= 0 && armed <= when)
                return 0;
        r = sd_event_source_set_time(m->data_expiry_source, when);
        if (r >= 0)
                r = sd_event_source_set_enabled(m->data_expiry_source, SD_EVENT_ONESHOT);
        return r;
}

static void data_refuse(DataConnection *c, const char *reason) {
        c->manager->data_counters.refused++;
        if (data_log_allowed())
                log_info("%s #%" PRIu64 ": not admitted: %s", data_ep(c), c->id, reason);
        data_fail(c, 0, FRAME_ERROR_NOT_ADMITTED, reason);
}

/* The caller runs data_step() next: the ticket, then requests already in GnuTLS's buffer. */
static void data_admit(DataConnection *c) {
        Manager *m = c->manager;
        int r;

        c->state = DATA_OPEN;
        c->ticket_pending = true;
        (void) data_timer_set(c, m->config.data_idle_timeout);
        r = data_expiry_arm(m, c->cert.not_after_usec);
        if (r < 0) {
                data_fail(c, 0, FRAME_ERROR_INTERNAL, "cannot watch the certificate's expiry");
                return;
        }
        log_debug("%s #%" PRIu64 ": admitted (%s%s, certificate %s).", data_ep(c), c->id, tls_session_cipher(c->session),
                  c->resumed ? ", resumed" : "", c->cert.serial);
}

/*
 * Inline (from admission_check_async() inside data_handshake_done(), inside
 * data_step(): c->admission is not set yet) or later, from the loop.
 */
static void data_on_admission(Manager *m, const AdmissionResult *result, void *userdata) {
        DataConnection *c = userdata;
        bool later = c->admission;

        c->admission = NULL;
        if (!result->admitted)
                data_refuse(c, result->reason ?: "refused by policy");
        else
                data_admit(c);
        if (later)
                data_run(c);
}

static void data_handshake_done(DataConnection *c) {
        Manager *m = c->manager;
        const char *reason = NULL;
        int r;

        c->resumed = gnutls_session_is_resumed(c->session);
        m->data_counters.handshakes++;
        if (c->resumed)
                m->data_counters.resumed++;
        r = tls_session_peer_identity(c->session, &c->cert, &reason);
        if (r < 0) {
                data_refuse(c, reason);
                return;
        }
        c->have_cert = true;

        /* Full and resumed handshakes alike: a ticket never outlives a revocation. */
        r = m->ca ? ca_is_revoked(m->ca, c->cert.serial) : -ENXIO;
        if (r != 0) {
                data_refuse(c, r > 0 ? "certificate revoked" : "cannot check revocation");
                return;
        }

        c->state = DATA_ADMITTING;
        if (c->kind == POLICY_ENDPOINT_TCP) {
                if (c->cert.local) {
                        data_refuse(c, "a local certificate is not accepted on the tcp endpoint");
                        return;
                }
                if (!admission_check_remote(m, c->cert.name, c->cert.serial, &reason)) {
                        data_refuse(c, reason);
                        return;
                }
                data_admit(c);
                return;
        }

        if (!c->cert.local) {
                data_refuse(c, "a remote certificate is not accepted on the local endpoint");
                return;
        }
        AdmissionCert ac = { .uid = c->cert.uid, .serial = c->cert.serial };
        memcpy(ac.sha256, c->cert.sha256, sizeof ac.sha256);
        /* The credentials read at accept: the same socket, fixed at connect(). */
        r = admission_check_async(m, c->kind, c->fd, c->kind == POLICY_ENDPOINT_DATA ? &c->peer_cred : NULL, &ac,
                                  ADMISSION_DONE_INLINE, data_on_admission, c, &c->admission);
        if (r < 0)
                data_refuse(c, "cannot judge the peer");
}

static int data_step(DataConnection *c) {
        int r;

        c->want = 0;
        /* What the last step gathered and the socket did not take goes first. */
        if (c->tx_len > 0) {
                r = data_tx_flush(c);
                if (r < 0)
                        return -ECONNRESET;
                if (r == 0) {
                        c->want = EPOLLOUT;
                        return 0;
                }
        }
        switch (c->state) {
        case DATA_HANDSHAKE:
                r = gnutls_handshake(c->session);
                if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
                        c->want = gnutls_record_get_direction(c->session) ? EPOLLOUT : EPOLLIN;
                        return 0;
                }
                if (r < 0) {
                        if (data_log_allowed())
                                log_info("%s #%" PRIu64 ": TLS handshake failed: %s", data_ep(c), c->id,
                                         gnutls_strerror(r));
                        c->manager->data_counters.handshake_failures++;
                        (void) gnutls_alert_send_appropriate(c->session, r);
                        (void) data_tx_flush(c);
                        return -EPROTO;
                }
                data_handshake_done(c);
                return data_step(c);

        case DATA_ADMITTING:
                return 0;

        case DATA_OPEN:
                /* One ticket per admitted session, before any reply: GnuTLS wants it repeated after AGAIN. */
                if (c->ticket_pending) {
                        r = gnutls_session_ticket_send(c->session, 1, 0);
                        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
                                c->want = gnutls_record_get_direction(c->session) ? EPOLLOUT : EPOLLIN;
                                return 0;
                        }
                        if (r < 0) {
                                log_debug("%s #%" PRIu64 ": cannot send a session ticket: %s", data_ep(c), c->id,
                                          gnutls_strerror(r));
                                return -ECONNRESET;
                        }
                        c->ticket_pending = false;
                }
                r = data_flush(c);
                if (r < 0)
                        return r;
                r = data_read(c);
                if (r < 0)
                        return r;
                if (c->state == DATA_OPEN)
                        return data_flush(c) < 0 ? -ECONNRESET : 0;
                __attribute__((fallthrough));

        case DATA_CLOSING:
                r = data_flush(c);
                if (r <= 0)
                        return r;
                r = gnutls_bye(c->session, GNUTLS_SHUT_WR);
                if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
                        c->want = gnutls_record_get_direction(c->session) ? EPOLLOUT : EPOLLIN;
                        return 0;
                }
                if (r < 0)
                        return -ECONNRESET;
                c->state = DATA_LINGER;
                r = data_tx_flush(c);   /* close_notify before the FIN */
                if (r <= 0) {
                        c->want = EPOLLOUT;
                        return r < 0 ? -ECONNRESET : 0;
                }
                __attribute__((fallthrough));

        case DATA_LINGER:
                if (!c->shut_wr) {
                        (void) shutdown(c->fd, SHUT_WR);
                        c->shut_wr = true;
                }
                for (unsigned i = 0; i < DATA_READ_BATCH; i++) {
                        uint8_t buf[4096];
                        ssize_t n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
                        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                                return -ECONNRESET;
                        if (n < 0)
                                break;
                }
                c->want = EPOLLIN;
                return 0;
        }
        return 0;
}

static void data_update(DataConnection *c) {
        uint32_t events = c->want;
        int r;

        if (c->state == DATA_OPEN && c->out_size - c->out_offset <= c->manager->config.frame_payload_max + DATA_OUTPUT_SLACK)
                events |= EPOLLIN;
        if (c->out_offset < c->out_size)
                events |= EPOLLOUT;
        if (c->state == DATA_ADMITTING)
                events = 0;
        if (c->tx_len > 0)
                events = EPOLLOUT;      /* nothing more is read until the gathered bytes are out */
        if (events == c->io_events)
                return;
        r = events ? sd_event_source_set_io_events(c->io_source, events) : 0;
        if (r >= 0)
                r = sd_event_source_set_enabled(c->io_source, events ? SD_EVENT_ON : SD_EVENT_OFF);
        if (r < 0) {
                data_connection_free(c);
                return;
        }
        c->io_events = events;
}

static void data_run(DataConnection *c) {
        int r;

        r = data_step(c);
        if (r >= 0 && c->tx_len > 0)
                r = data_tx_flush(c);
        if (r < 0) {
                data_connection_free(c);
                return;
        }
        data_update(c);
}

static int data_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        DataConnection *c = userdata;

        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))
                c->rx_drained = false;
        data_run(c);
        return 0;
}

static int data_on_defer(sd_event_source *s, void *userdata) {
        data_run(userdata);
        return 0;
}

static int data_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        DataConnection *c = userdata;

        switch (c->state) {
        case DATA_HANDSHAKE:
        case DATA_ADMITTING:
                if (data_log_allowed())
                        log_info("%s #%" PRIu64 ": handshake not completed within handshake_timeout, closing.",
                                 data_ep(c), c->id);
                c->manager->data_counters.handshake_timeouts++;
                data_connection_free(c);
                return 0;
        case DATA_OPEN:
                /* A waiting FETCH or a request in the writer is activity, not idleness. */
                if (relay_session_busy(c->relay)) {
                        (void) data_timer_set(c, c->manager->config.data_idle_timeout);
                        return 0;
                }
                data_fail(c, 0, FRAME_ERROR_IDLE_TIMEOUT, "idle timeout");
                data_run(c);
                return 0;
        default:
                data_connection_free(c);
                return 0;
        }
}

int data_connection_new(Manager *m, PolicyEndpoint kind, int fd) {
        _cleanup_close_ int cfd = fd;
        uid_t peer_uid = (uid_t) -1;
        struct ucred peer_cred = {};
        DataConnection *c;
        int r;

        if (!m->ca || !m->tls)
                return log_debug_errno(-ENXIO, "%s: no TLS credentials, connection closed.",
                                       policy_endpoint_to_string(kind));
        if (m->n_connections[POLICY_ENDPOINT_DATA] + m->n_connections[POLICY_ENDPOINT_TCP] >= DATA_CONNECTIONS_MAX)
                return log_debug_errno(-EBUSY, "%s: too many data connections, connection closed.",
                                       policy_endpoint_to_string(kind));
        if (kind == POLICY_ENDPOINT_TCP) {
                int one = 1;
                (void) setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        } else {
                /*
                 * The session cap is shared by everybody on the machine: one local user
                 * must not be able to hold all of it (connect, and never finish the
                 * handshake, again and again). Counted at accept, before any TLS work.
                 */
                struct ucred cred;
                socklen_t len = sizeof cred;
                uint64_t n = 0;

                if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || len != sizeof cred)
                        return log_debug_errno(negative_errno(), "%s: cannot read the peer's credentials, "
                                               "connection closed: %m", policy_endpoint_to_string(kind));
                for (DataConnection *o = m->data_connections; o; o = o->next)
                        if (o->kind == kind && o->peer_uid == cred.uid)
                                n++;
                if (n >= m->config.data_sessions_per_uid) {
                        m->data_counters.uid_limit++;
                        if (data_log_allowed())
                                log_notice("%s: uid %u has %" PRIu64 " sessions open "
                                           "(data_sessions_per_uid), connection closed.",
                                           policy_endpoint_to_string(kind), (unsigned) cred.uid, n);
                        return -EUSERS;
                }
                peer_uid = cred.uid;
                peer_cred = cred;
        }

        c = calloc(1, sizeof *c);
        if (!c)
                return log_oom();
        *c = (DataConnection) {
                .manager = m,
                .id = data_next_id++,
                .kind = kind,
                .fd = TAKE_FD(cfd),
                .state = DATA_HANDSHAKE,
                .io_events = EPOLLIN,
                .peer_uid = peer_uid,
                .peer_cred = peer_cred,
                .next = m->data_connections,
        };
        if (m->data_connections)
                m->data_connections->prev = c;
        m->data_connections = c;
        m->n_connections[kind]++;

        r = ca_credentials(m->ca, &c->creds);
        if (r < 0) {
                log_warning_errno(r, "%s: no server credentials: %m", data_ep(c));
                goto fail;
        }
        r = tls_session_new(m->tls, tls_credentials_get(c->creds), c->fd, &c->session);
        if (r < 0)
                goto fail;
        gnutls_transport_set_ptr(c->session, c);
        gnutls_transport_set_pull_function(c->session, data_pull);
        gnutls_transport_set_pull_timeout_function(c->session, data_pull_timeout);
        gnutls_transport_set_vec_push_function(c->session, data_push);
        r = frame_reader_new((uint32_t) MIN(m->config.frame_payload_max, (uint64_t) FRAME_PAYLOAD_MAX_HARD), &c->reader);
        if (r < 0)
                goto fail;
        r = sd_event_add_io(m->event, &c->io_source, c->fd, EPOLLIN, data_on_io, c);
        if (r < 0)
                goto fail;
        r = sd_event_add_time_relative(m->event, &c->timer_source, CLOCK_MONOTONIC, m->config.handshake_timeout, 0,
                                       data_on_timer, c);
        if (r < 0)
                goto fail;
        r = sd_event_add_defer(m->event, &c->defer_source, data_on_defer, c);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_enabled(c->defer_source, SD_EVENT_OFF);
        log_debug("%s #%" PRIu64 ": connection accepted.", data_ep(c), c->id);
        return 0;

fail:
        data_connection_free(c);
        return log_debug_errno(r, "%s: cannot set up a connection: %m", policy_endpoint_to_string(kind));
}

void data_connections_revoked(Manager *m, const char *serial_hex) {
        DataConnection *c, *next;

        if (isempty(serial_hex))
                return;
        for (c = m->data_connections; c; c = next) {
                next = c->next;
                if (!c->have_cert || strcasecmp(c->cert.serial, serial_hex) != 0)
                        continue;
                log_info("%s #%" PRIu64 ": certificate %s revoked, closing the session.", data_ep(c), c->id,
                         c->cert.serial);
                data_fail(c, 0, FRAME_ERROR_CERT_REVOKED, "certificate revoked");
                data_run(c);
        }
}

void data_stop(Manager *m) {
        /* Best effort, now: the loop is about to end and will not wait for slow peers. */
        while (m->data_connections) {
                DataConnection *c = m->data_connections;

                if (c->state == DATA_OPEN) {
                        data_queue_error(c, 0, FRAME_ERROR_SHUTTING_DOWN, "secd is shutting down");
                        c->state = DATA_CLOSING;
                        if (data_flush(c) > 0)
                                (void) gnutls_bye(c->session, GNUTLS_SHUT_WR);
                        (void) data_tx_flush(c);
                }
                data_connection_free(c);
        }
}

void data_free_all(Manager *m) {
        while (m->data_connections)
                data_connection_free(m->data_connections);
        m->data_expiry_source = sd_event_source_disable_unref(m->data_expiry_source);
        m->data_flush_source = sd_event_source_disable_unref(m->data_flush_source);
}

/* data-internal.h: what the relay and the key server see of a connection. */

Manager *data_connection_manager(const DataConnection *c) {
        return c->manager;
}

uint64_t data_connection_id(const DataConnection *c) {
        return c->id;
}

const char *data_connection_endpoint(const DataConnection *c) {
        return data_ep(c);
}

const CertIdentity *data_connection_cert(const DataConnection *c) {
        return &c->cert;
}

gnutls_session_t data_connection_session(const DataConnection *c) {
        return c->session;
}

RelaySession **data_connection_relay(DataConnection *c) {
        return &c->relay;
}

bool data_connection_is_open(const DataConnection *c) {
        return c->state == DATA_OPEN;
}

/*
 * Replies queued outside a connection's own callbacks (writer completions:
 * a batch answers many connections at once) are flushed together, in one
 * loop iteration: a defer source per connection cost an iteration each,
 * and every iteration of sd-event is an epoll_wait() that polls every
 * ready socket again, plus a gettid().
 */
static int data_on_flush(sd_event_source *s, void *userdata) {
        Manager *m = userdata;

        /* Connections kicked meanwhile are taken too. */
        while (m->data_kicked) {
                DataConnection *c = m->data_kicked;

                data_unkick(c);
                data_run(c);
        }
        return 0;
}

/* Flush from the loop's next iteration: the caller may be a writer completion, outside our I/O callback. */
static void data_connection_kick(DataConnection *c) {
        Manager *m = c->manager;

        if (c->kicked)
                return;
        if (!m->data_flush_source && sd_event_add_defer(m->event, &m->data_flush_source, data_on_flush, m) < 0) {
                data_fail(c, 0, FRAME_ERROR_INTERNAL, "cannot schedule a reply");
                return;
        }
        c->kicked = true;
        c->kicked_prev = NULL;
        c->kicked_next = m->data_kicked;
        if (m->data_kicked)
                m->data_kicked->kicked_prev = c;
        m->data_kicked = c;
        if (sd_event_source_set_enabled(m->data_flush_source, SD_EVENT_ONESHOT) < 0)
                data_fail(c, 0, FRAME_ERROR_INTERNAL, "cannot schedule a reply");
}

int data_connection_reply(DataConnection *c, uint8_t type, uint32_t request_id, const void *payload, uint32_t len) {
        int r;

        if (c->state != DATA_OPEN)
                return 0;
        r = data_queue_frame(c, type, request_id, payload, len);
        if (r < 0) {
                data_fail(c, request_id, FRAME_ERROR_INTERNAL, "out of memory");
                data_connection_kick(c);
                return r;
        }
        data_connection_kick(c);
        return 0;
}

void data_connection_error(DataConnection *c, uint32_t request_id, uint16_t code, const char *message) {
        if (c->state != DATA_OPEN)
                return;
        data_queue_error(c, request_id, code, message);
        data_connection_kick(c);
}

void data_connection_touch(DataConnection *c) {
        if (c->state == DATA_OPEN)
                (void) data_timer_set(c, c->manager->config.data_idle_timeout);
}
