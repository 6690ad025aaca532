/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The relay: REGISTER, SEND, FETCH, ACK (docs/protocol.md,
 * docs/architecture.md "Relay and key server").
 *
 * The principal of a connection is "uid:<n>" for an enrolled local
 * certificate (secd://local/uid/<n>/...) and "cert:<name>" for a remote one.
 * It owns the mailboxes it registers and is the sender of what it sends.
 * The executable hash is left out on purpose: an upgraded application
 * keeps its mailbox (the policy still decides which binaries connect).
 *
 * Every store access is a writer job (writer.h). A reply that reports
 * something stored or deleted is queued only in the job's completion, which
 * runs after the batch's COMMIT returned: an acknowledged message is on
 * disk. A connection that closes with jobs in flight detaches them; their
 * completions then only free them.
 */
#include <inttypes.h>
#include <nettle/eddsa.h>
#include <sys/random.h>

#include "log.h"
#include "relay-internal.h"

static inline Config *relay_config(Relay *r) {
        return &r->manager->config;
}

static RelayRate relay_rate(uint64_t interval_usec, uint64_t burst) {
        return (RelayRate) { .interval_usec = interval_usec, .burst = burst };
}

bool relay_frame_type(uint8_t type) {
        switch (type) {
        case FRAME_REGISTER:
        case FRAME_SEND:
        case FRAME_FETCH:
        case FRAME_ACK:
        case FRAME_KEYS_PUBLISH:
        case FRAME_KEYS_BUNDLE:
        case FRAME_KEYS_COUNT:
                return true;
        default:
                return false;
        }
}

static const char *relay_type_name(uint8_t type) {
        switch (type) {
        case FRAME_REGISTER:
                return "REGISTER";
        case FRAME_SEND:
                return "SEND";
        case FRAME_FETCH:
                return "FETCH";
        case FRAME_ACK:
                return "ACK";
        case FRAME_KEYS_PUBLISH:
                return "KEYS_PUBLISH";
        case FRAME_KEYS_BUNDLE:
                return "KEYS_BUNDLE";
        case FRAME_KEYS_COUNT:
                return "KEYS_COUNT";
        default:
                return "?";
        }
}

static uint64_t *relay_refusal_counter(RelayRefusals *f, uint16_t code) {
        switch (code) {
        case FRAME_ERROR_BAD_PAYLOAD:
                return &f->bad_payload;
        case FRAME_ERROR_NOT_REGISTERED:
                return &f->not_registered;
        case FRAME_ERROR_BAD_SIGNATURE:
                return &f->bad_signature;
        case FRAME_ERROR_NOT_OWNER:
                return &f->not_owner;
        case FRAME_ERROR_MAILBOX_BUSY:
                return &f->mailbox_busy;
        case FRAME_ERROR_NO_SUCH_MAILBOX:
                return &f->no_such_mailbox;
        case FRAME_ERROR_QUOTA_EXCEEDED:
                return &f->quota_exceeded;
        case FRAME_ERROR_RATE_LIMITED:
                return &f->rate_limited;
        case FRAME_ERROR_MESSAGE_TOO_LARGE:
                return &f->message_too_large;
        case FRAME_ERROR_NO_KEYS:
                return &f->no_keys;
        case FRAME_ERROR_BUSY:
                return &f->busy;
        case FRAME_ERROR_ALREADY_REGISTERED:
                return &f->already_registered;
        default:
                return &f->internal;
        }
}

int relay_refuse(RelaySession *s, uint8_t type, uint32_t request_id, uint16_t code, const char *message) {
        Relay *r = s->relay;
        RelayRefusals *f = type >= FRAME_KEYS_PUBLISH ? &r->keys.refused : &r->counters.refused;

        (*relay_refusal_counter(f, code))++;
        log_debug("%s #%" PRIu64 ": %s %" PRIu32 " of %s refused: %s: %s", data_connection_endpoint(s->conn),
                  data_connection_id(s->conn), relay_type_name(type), request_id, s->principal,
                  frame_error_to_string(code) ?: "?", message);
        data_connection_error(s->conn, request_id, code, message);
        return 0;
}

int relay_reply(RelaySession *s, uint8_t type, uint32_t request_id, const void *payload, uint32_t len) {
        (void) data_connection_reply(s->conn, type | FRAME_REPLY_BIT, request_id, payload, len);
        return 0;
}

/* An unexpected store or writer error: logged, at most a few times a minute, and answered INTERNAL. */
int relay_internal_error(RelaySession *s, uint8_t type, uint32_t request_id, int error) {
        static uint64_t window_start;
        static unsigned in_window;
        uint64_t now = now_usec(CLOCK_MONOTONIC);

        if (now - window_start > 60 * UINT64_C(1000000)) {
                window_start = now;
                in_window = 0;
        }
        if (++in_window <= 10)
                log_warning_errno(error, "Relay: %s failed in the store: %m", relay_type_name(type));
        if (s)
                relay_refuse(s, type, request_id, error == -ESHUTDOWN ? FRAME_ERROR_SHUTTING_DOWN : FRAME_ERROR_INTERNAL,
                             error == -ESHUTDOWN ? "secd is shutting down" : "the store failed");
        return 0;
}

bool relay_ed25519_verify(const uint8_t key[RELAY_KEY_SIZE], const uint8_t *msg, size_t len,
                          const uint8_t sig[RELAY_SIGNATURE_SIZE]) {
        /* A small-order key "verifies" R = identity, S = 0 for any message: no proof at all. */
        if (relay_ed25519_key_is_weak(key))
                return false;
        return ed25519_sha512_verify(key, len, msg, sig) == 1;
}

int relay_rate_check2(RelayRateTable *a, const void *ka, size_t la, const RelayRate *ra, RelayRateTable *b,
                      const void *kb, size_t lb, const RelayRate *rb, uint64_t *ret_retry_usec) {
        uint64_t now = now_usec(CLOCK_MONOTONIC), retry_a = 0, retry_b = 0;
        int r1, r2;

        /* Look at both first: a request refused by one limit must not use up the other. */
        r1 = relay_rate_check(a, ka, la, ra, now, false, &retry_a);
        if (r1 < 0)
                return r1;
        r2 = relay_rate_check(b, kb, lb, rb, now, false, &retry_b);
        if (r2 < 0)
                return r2;
        if (r1 == 0 || r2 == 0) {
                if (ret_retry_usec)
                        *ret_retry_usec = MAX(r1 == 0 ? retry_a : 0, r2 == 0 ? retry_b : 0);
                return 0;
        }
        r1 = relay_rate_check(a, ka, la, ra, now, true, NULL);
        if (r1 < 0)
                return r1;
        r2 = relay_rate_check(b, kb, lb, rb, now, true, NULL);
        return r2 < 0 ? r2 : 1;
}

bool relay_verify_allowed(RelaySession *s, uint8_t type, uint32_t request_id) {
        const RelayRate rate = { .interval_usec = RELAY_VERIFY_INTERVAL_USEC, .burst = RELAY_VERIFY_BURST };
        int r;

        r = relay_rate_check(s->relay->verify, s->principal, strlen(s->principal), &rate, now_usec(CLOCK_MONOTONIC),
                             true, NULL);
        if (r > 0)
                return true;
        relay_refuse(s, type, request_id, r < 0 ? FRAME_ERROR_INTERNAL : FRAME_ERROR_RATE_LIMITED,
                     r < 0 ? "out of memory" : "too many signatures to check for this identity, retry later");
        return false;
}

bool relay_work_allowed(RelaySession *s, uint8_t type, uint32_t request_id, unsigned cost) {
        const RelayRate rate = { .interval_usec = RELAY_WORK_INTERVAL_USEC, .burst = RELAY_WORK_BURST };
        int r;

        r = relay_rate_check_n(s->relay->work, s->principal, strlen(s->principal), &rate, cost,
                               now_usec(CLOCK_MONOTONIC), true, NULL);
        if (r > 0)
                return true;
        relay_refuse(s, type, request_id, r < 0 ? FRAME_ERROR_INTERNAL : FRAME_ERROR_RATE_LIMITED,
                     r < 0 ? "out of memory" : "too many store requests for this identity, retry later");
        return false;
}

/* The consumer map: mailbox key -> the connection registered (or registering) for it. */

static size_t relay_consumer_bucket(Relay *r, const uint8_t key[RELAY_KEY_SIZE]) {
        return (size_t) (relay_siphash24(r->hash_key, key, RELAY_KEY_SIZE) % RELAY_CONSUMER_BUCKETS);
}

static RelaySession *relay_consumer_find(Relay *r, const uint8_t key[RELAY_KEY_SIZE]) {
        for (RelaySession *s = r->consumers[relay_consumer_bucket(r, key)]; s; s = s->consumer_next)
                if (memcmp(s->key, key, RELAY_KEY_SIZE) == 0)
                        return s;
        return NULL;
}

static void relay_consumer_add(RelaySession *s) {
        size_t b = relay_consumer_bucket(s->relay, s->key);

        s->consumer_next = s->relay->consumers[b];
        s->relay->consumers[b] = s;
        s->in_map = true;
}

static void relay_consumer_remove(RelaySession *s) {
        RelaySession **pp;

        if (!s->in_map)
                return;
        for (pp = &s->relay->consumers[relay_consumer_bucket(s->relay, s->key)]; *pp; pp = &(*pp)->consumer_next)
                if (*pp == s) {
                        *pp = s->consumer_next;
                        break;
                }
        s->consumer_next = NULL;
        s->in_map = false;
}

/* Jobs */

bool relay_session_has_room(const RelaySession *s, uint64_t bytes) {
        return s->n_jobs < RELAY_INFLIGHT_MAX && s->bytes + bytes <= RELAY_INFLIGHT_BYTES_MAX &&
               s->relay->inflight_bytes + bytes <= RELAY_INFLIGHT_BYTES_TOTAL_MAX;
}

static int relay_job_run(Db *db, void *userdata) {
        RelayJob *j = userdata;

        return j->run(db, j);
}

static void relay_job_unlink(RelayJob *j) {
        RelaySession *s = j->session;

        if (!s)
                return;
        if (j->prev)
                j->prev->next = j->next;
        else
                s->jobs = j->next;
        if (j->next)
                j->next->prev = j->prev;
        j->prev = j->next = NULL;
        s->n_jobs--;
        s->bytes -= j->bytes;
}

static void relay_job_done(void *userdata, int r) {
        RelayJob *j = userdata;

        relay_job_unlink(j);
        j->relay->inflight_bytes -= j->bytes;
        j->done(j, r);
        free(j);
}

static int relay_job_queue(Relay *relay, RelaySession *s, RelayJob *j) {
        Writer *w = relay->manager->writer;
        int r;

        j->relay = relay;
        j->session = s;
        r = w ? writer_submit(w, relay_job_run, relay_job_done, j) : -ESHUTDOWN;
        if (r < 0)
                return r;
        relay->inflight_bytes += j->bytes;
        if (s) {
                j->next = s->jobs;
                if (s->jobs)
                        s->jobs->prev = j;
                s->jobs = j;
                s->n_jobs++;
                s->bytes += j->bytes;
        }
        return 0;
}

int relay_job_submit(RelaySession *s, RelayJob *j) {
        int r;

        if (!relay_session_has_room(s, j->bytes)) {
                relay_refuse(s, j->type, j->request_id, FRAME_ERROR_BUSY, "too many requests in flight");
                free(j);
                return -EBUSY;
        }
        r = relay_job_queue(s->relay, s, j);
        if (r == -EAGAIN)
                relay_refuse(s, j->type, j->request_id, FRAME_ERROR_BUSY, "the store's queue is full, retry later");
        else if (r < 0)
                relay_internal_error(s, j->type, j->request_id, r);
        if (r < 0)
                free(j);
        return r;
}

/* Sessions */

static RelaySession *relay_session_get(Relay *relay, DataConnection *c) {
        RelaySession **slot = data_connection_relay(c);
        const CertIdentity *cert = data_connection_cert(c);
        RelaySession *s;

        if (*slot)
                return *slot;
        s = calloc(1, sizeof *s);
        if (!s)
                return NULL;
        s->relay = relay;
        s->conn = c;
        if (cert->local)
                (void) snprintf(s->principal, sizeof s->principal, "uid:%" PRIu32, cert->uid);
        else
                (void) snprintf(s->principal, sizeof s->principal, "cert:%s", cert->name);
        *slot = s;
        return s;
}

RelaySession *relay_session_free(RelaySession *s) {
        if (!s)
                return NULL;
        /* Jobs in flight stay with the writer; their completions see no session and only free. */
        while (s->jobs) {
                RelayJob *j = s->jobs;

                s->jobs = j->next;
                j->prev = j->next = NULL;
                j->session = NULL;
        }
        relay_consumer_remove(s);
        sd_event_source_disable_unref(s->fetch_timer);
        free(s);
        return NULL;
}

bool relay_session_busy(const RelaySession *s) {
        return s && (s->n_jobs > 0 || s->fetch_parked || s->fetch_running);
}

/* REGISTER */

typedef struct RegisterJob {
        RelayJob base;
        uint8_t key[RELAY_KEY_SIZE];
        char owner[RELAY_PRINCIPAL_MAX];
        int64_t now_usec;
        uint64_t max_owned;
        int64_t mailbox_id;
        bool created;
} RegisterJob;

static int relay_register_run(Db *db, RelayJob *base) {
        RegisterJob *j = (RegisterJob *) base;
        uint64_t owned;
        int r;

        /* A new mailbox only while its owner holds fewer than relay_mailboxes_per_owner (one writer: no race). */
        r = db_mailbox_lookup(db, j->key, NULL, NULL);
        if (r == -ENOENT) {
                r = db_mailboxes_owned(db, j->owner, &owned);
                if (r < 0)
                        return r;
                if (owned >= j->max_owned)
                        return -EDQUOT;
        } else if (r < 0)
                return r;
        return db_mailbox_register(db, j->key, j->owner, j->now_usec, &j->mailbox_id, &j->created);
}

static void relay_register_done(RelayJob *base, int r) {
        RegisterJob *j = (RegisterJob *) base;
        RelaySession *s = base->session;
        uint8_t reply[RELAY_REGISTER_REPLY_SIZE];

        if (r >= 0 && j->created)
                j->base.relay->counters.mailboxes_created++;
        if (!s)
                return;
        s->registering = false;
        if (r < 0) {
                relay_consumer_remove(s);
                if (r == -EPERM)
                        relay_refuse(s, base->type, base->request_id, FRAME_ERROR_NOT_OWNER,
                                     "the mailbox belongs to another certificate identity");
                else if (r == -EDQUOT)
                        relay_refuse(s, base->type, base->request_id, FRAME_ERROR_QUOTA_EXCEEDED,
                                     "this identity owns relay_mailboxes_per_owner mailboxes already");
                else
                        relay_internal_error(s, base->type, base->request_id, r);
                return;
        }
        s->registered = true;
        s->mailbox_id = j->mailbox_id;
        s->relay->counters.registered++;
        relay_register_reply_build(j->created, reply);
        relay_reply(s, base->type, base->request_id, reply, sizeof reply);
}

/* The RFC 9266 channel binding of this TLS session: what a REGISTER proof signs. */
static int relay_session_exporter(RelaySession *s, uint8_t ret[RELAY_EXPORTER_SIZE]) {
        gnutls_datum_t cb = {};
        int r;

        r = gnutls_session_channel_binding(data_connection_session(s->conn), GNUTLS_CB_TLS_EXPORTER, &cb);
        if (r < 0) {
                log_warning("%s #%" PRIu64 ": no TLS exporter for REGISTER: %s", data_connection_endpoint(s->conn),
                            data_connection_id(s->conn), gnutls_strerror(r));
                return -EIO;
        }
        /* Derived from the session's secrets: wiped, though a proof over it is no secret. */
        if (cb.size != RELAY_EXPORTER_SIZE) {
                gnutls_memset(cb.data, 0, cb.size);
                gnutls_free(cb.data);
                return -EIO;
        }
        memcpy(ret, cb.data, RELAY_EXPORTER_SIZE);
        gnutls_memset(cb.data, 0, cb.size);
        gnutls_free(cb.data);
        return 0;
}

static int relay_register(RelaySession *s, const FrameHeader *h, const uint8_t *payload) {
        uint8_t exporter[RELAY_EXPORTER_SIZE], signed_msg[RELAY_SIGNED_MAX], reply[RELAY_REGISTER_REPLY_SIZE];
        RelayRegister req;
        RegisterJob *j;
        RelaySession *other;
        bool verified;
        size_t len;

        if (relay_register_parse(payload, h->length, &req) < 0)
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_BAD_PAYLOAD, "malformed REGISTER");
        if (s->registering)
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_BUSY, "a REGISTER is in progress");
        if (s->registered && memcmp(s->key, req.key, RELAY_KEY_SIZE) != 0)
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_ALREADY_REGISTERED,
                                    "this connection is registered for another mailbox");

        if (relay_session_exporter(s, exporter) < 0)
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_INTERNAL, "no channel binding");
        if (relay_ed25519_key_is_weak(req.key))
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_BAD_SIGNATURE,
                                    "the key is a point of small order: nobody holds its private key");
        if (!relay_verify_allowed(s, h->type, h->request_id)) {
                explicit_bzero(exporter, sizeof exporter);
                return 0;
        }
        len = relay_signed_register(signed_msg, exporter);
        verified = relay_ed25519_verify(req.key, signed_msg, len, req.proof);
        explicit_bzero(exporter, sizeof exporter);
        explicit_bzero(signed_msg, sizeof signed_msg);
        if (!verified)
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_BAD_SIGNATURE,
                                    "the proof does not verify for this key and this TLS session");

        if (s->registered) {
                /* The same key again on the same connection: nothing to do. */
                relay_register_reply_build(false, reply);
                return relay_reply(s, h->type, h->request_id, reply, sizeof reply);
        }

        /* One consumer per mailbox: reserve the key now, so two REGISTERs racing cannot both win. */
        other = relay_consumer_find(s->relay, req.key);
        if (other)
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_MAILBOX_BUSY,
                                    "another connection is this mailbox's consumer");

        j = calloc(1, sizeof *j);
        if (!j)
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_INTERNAL, "out of memory");
        j->base.run = relay_register_run;
        j->base.done = relay_register_done;
        j->base.type = h->type;
        j->base.request_id = h->request_id;
        memcpy(j->key, req.key, RELAY_KEY_SIZE);
        memcpy(j->owner, s->principal, sizeof j->owner);
        j->now_usec = (int64_t) now_usec(CLOCK_REALTIME);
        j->max_owned = relay_config(s->relay)->relay_mailboxes_per_owner;

        memcpy(s->key, req.key, RELAY_KEY_SIZE);
        relay_consumer_add(s);
        s->registering = true;
        if (relay_job_submit(s, &j->base) < 0) {
                s->registering = false;
                relay_consumer_remove(s);
        }
        return 0;
}

/* FETCH */

typedef struct FetchJob {
        RelayJob base;
        int64_t mailbox_id;
        int64_t after_id;
        int64_t now_usec;
        size_t max_count, max_bytes;
        DbMessage *messages;
        size_t n_messages;
} FetchJob;

static int relay_fetch_start(RelaySession *s);

static int relay_fetch_run(Db *db, RelayJob *base) {
        FetchJob *j = (FetchJob *) base;

        return db_messages_fetch(db, j->mailbox_id, j->after_id, j->now_usec, j->max_count, j->max_bytes,
                                 &j->messages, &j->n_messages);
}

static int relay_fetch_reply(RelaySession *s, const DbMessage *msgs, size_t n) {
        uint64_t frame_max = MIN(relay_config(s->relay)->frame_payload_max, (uint64_t) FRAME_PAYLOAD_MAX_HARD);
        _cleanup_free_ RelayMessage *items = NULL;
        _cleanup_free_ size_t *sizes = NULL;
        _cleanup_free_ uint8_t *payload = NULL;
        size_t fit, size;
        int r;

        data_connection_touch(s->conn);
        if (n == 0) {
                uint8_t empty[RELAY_FETCH_REPLY_HEADER_SIZE] = {};
                return relay_reply(s, FRAME_FETCH, s->fetch_request_id, empty, sizeof empty);
        }

        sizes = calloc(n, sizeof *sizes);
        items = calloc(n, sizeof *items);
        if (!sizes || !items)
                return relay_refuse(s, FRAME_FETCH, s->fetch_request_id, FRAME_ERROR_INTERNAL, "out of memory");
        for (size_t i = 0; i < n; i++)
                sizes[i] = msgs[i].size;
        /* The store bounded the blobs by max_bytes; the headers are counted here. */
        fit = relay_fetch_fit(sizes, n, frame_max);
        if (fit == 0) {
                char why[128];

                /* Only after frame_payload_max was lowered below a stored message (config_check() forbids it otherwise). */
                (void) snprintf(why, sizeof why, "pending message %" PRIi64 " (%zu bytes) is larger than one frame holds",
                                msgs[0].id, msgs[0].size);
                return relay_refuse(s, FRAME_FETCH, s->fetch_request_id, FRAME_ERROR_MESSAGE_TOO_LARGE, why);
        }
        for (size_t i = 0; i < fit; i++) {
                items[i] = (RelayMessage) {
                        .server_id = (uint64_t) msgs[i].id,
                        .received_usec = (uint64_t) MAX(msgs[i].received_usec, (int64_t) 0),
                        .blob = msgs[i].body,
                        .blob_size = msgs[i].size,
                };
                memcpy(items[i].client_msg_id, msgs[i].client_msg_id, RELAY_MSG_ID_SIZE);
        }
        r = relay_fetch_reply_build(items, fit, frame_max, &payload, &size);
        if (r < 0) {
                log_warning_errno(r, "Relay: cannot build a FETCH reply of %zu messages: %m", fit);
                return relay_refuse(s, FRAME_FETCH, s->fetch_request_id, FRAME_ERROR_INTERNAL,
                                    "cannot build the reply");
        }
        s->relay->counters.fetched += fit;
        return relay_reply(s, FRAME_FETCH, s->fetch_request_id, payload, (uint32_t) size);
}

static int relay_fetch_on_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        RelaySession *s = userdata;

        /* Nothing arrived in time: the empty answer. */
        if (!s->fetch_parked)
                return 0;
        s->fetch_parked = false;
        relay_fetch_reply(s, NULL, 0);
        return 0;
}

static void relay_fetch_park(RelaySession *s) {
        Manager *m = s->relay->manager;
        int r;

        if (!s->fetch_timer)
                r = sd_event_add_time(m->event, &s->fetch_timer, CLOCK_MONOTONIC, s->fetch_deadline, 1000,
                                      relay_fetch_on_timer, s);
        else {
                r = sd_event_source_set_time(s->fetch_timer, s->fetch_deadline);
                if (r >= 0)
                        r = sd_event_source_set_enabled(s->fetch_timer, SD_EVENT_ONESHOT);
        }
        if (r < 0) {
                /* Cannot wait: answer now, empty, which the protocol allows. */
                log_debug_errno(r, "Relay: cannot arm a FETCH timer: %m");
                (void) relay_fetch_reply(s, NULL, 0);
                return;
        }
        if (!s->fetch_waited) {
                s->fetch_waited = true;
                s->relay->counters.fetch_waits++;
        }
        s->fetch_parked = true;
}

static void relay_fetch_done(RelayJob *base, int r) {
        FetchJob *j = (FetchJob *) base;
        RelaySession *s = base->session;

        if (!s)
                goto finish;
        s->fetch_running = false;
        if (r < 0) {
                relay_internal_error(s, FRAME_FETCH, s->fetch_request_id, r);
                goto finish;
        }
        /* Nothing above the cursor (also after a wake-up whose message was acknowledged meanwhile): wait on. */
        if (j->n_messages == 0 && s->fetch.wait_usec > 0 && now_usec(CLOCK_MONOTONIC) < s->fetch_deadline) {
                if (s->fetch_woken) {
                        /* A message was stored while this job ran after its read: look again. */
                        relay_fetch_start(s);
                        goto finish;
                }
                relay_fetch_park(s);
                goto finish;
        }
        relay_fetch_reply(s, j->messages, j->n_messages);
finish:
        db_messages_free(j->messages, j->n_messages);
}

/* Run (or re-run, after a wake-up) the connection's FETCH as a writer job. */
static int relay_fetch_start(RelaySession *s) {
        FetchJob *j;
        int r;

        s->fetch_woken = false;
        j = calloc(1, sizeof *j);
        if (!j)
                return relay_refuse(s, FRAME_FETCH, s->fetch_request_id, FRAME_ERROR_INTERNAL, "out of memory");
        j->base.run = relay_fetch_run;
        j->base.done = relay_fetch_done;
        j->base.type = FRAME_FETCH;
        j->base.request_id = s->fetch_request_id;
        j->mailbox_id = s->mailbox_id;
        j->after_id = s->fetch_after_id;
        j->now_usec = (int64_t) now_usec(CLOCK_REALTIME);
        j->max_count = s->fetch.max_count;
        j->max_bytes = s->fetch.max_bytes;
        j->base.bytes = s->fetch.max_bytes;
        /* The re-run of a waiting FETCH is the same request: not held to the in-flight bound again. */
        r = relay_job_queue(s->relay, s, &j->base);
        if (r < 0) {
                free(j);
                if (r == -EAGAIN)
                        return relay_refuse(s, FRAME_FETCH, s->fetch_request_id, FRAME_ERROR_BUSY,
                                            "the store's queue is full, retry later");
                return relay_internal_error(s, FRAME_FETCH, s->fetch_request_id, r);
        }
        s->fetch_running = true;
        return 0;
}

static int relay_fetch(RelaySession *s, const FrameHeader *h, const uint8_t *payload) {
        const Config *c = relay_config(s->relay);
        RelayFetch req;

        if (!s->registered)
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_NOT_REGISTERED, "REGISTER first");
        if (relay_fetch_parse(payload, h->length, &req) < 0)
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_BAD_PAYLOAD, "malformed FETCH");
        if (s->fetch_running || s->fetch_parked)
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_BUSY,
                                    "a FETCH of this connection is already waiting");
        relay_fetch_clamp(req.max_count, req.max_bytes, req.wait_ms, DB_FETCH_MAX,
                          MIN(c->frame_payload_max, (uint64_t) FRAME_PAYLOAD_MAX_HARD), c->relay_fetch_wait_max,
                          &s->fetch);
        /* What the reply may hold is held in memory until it is sent: it counts against the budgets. */
        if (!relay_session_has_room(s, s->fetch.max_bytes))
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_BUSY, "too many requests in flight");
        if (!relay_work_allowed(s, h->type, h->request_id, 1))
                return 0;
        s->fetch_request_id = h->request_id;
        /* Server ids are SQLite rowids (<= INT64_MAX): a cursor above that matches nothing, as INT64_MAX does. */
        s->fetch_after_id = req.after_id > (uint64_t) INT64_MAX ? INT64_MAX : (int64_t) req.after_id;
        s->fetch_deadline = now_usec(CLOCK_MONOTONIC) + s->fetch.wait_usec;
        s->fetch_waited = false;
        return relay_fetch_start(s);
}

/*
 * Message server_id was stored for key: its consumer's waiting FETCH looks
 * again, unless the id is at or below that FETCH's cursor (it would not be
 * returned, and must not end the wait).
 */
static void relay_wake(Relay *relay, const uint8_t key[RELAY_KEY_SIZE], int64_t server_id) {
        RelaySession *s = relay_consumer_find(relay, key);

        if (!s || !s->registered)
                return;
        if ((s->fetch_parked || s->fetch_running) && server_id <= s->fetch_after_id)
                return;
        if (s->fetch_parked) {
                s->fetch_parked = false;
                (void) sd_event_source_set_enabled(s->fetch_timer, SD_EVENT_OFF);
                relay_fetch_start(s);
        } else if (s->fetch_running)
                s->fetch_woken = true;
}

/* SEND */

typedef struct SendJob {
        RelayJob base;
        uint8_t recipient[RELAY_KEY_SIZE];
        uint8_t client_msg_id[RELAY_MSG_ID_SIZE];
        char sender[RELAY_PRINCIPAL_MAX];
        int64_t received_usec, expires_usec;
        DbQuota quota;
        bool mailbox_found;
        int64_t server_id;
        bool duplicate;
        size_t size;
        uint8_t blob[];
} SendJob;

static int relay_send_run(Db *db, RelayJob *base) {
        SendJob *j = (SendJob *) base;
        int64_t mailbox_id;
        int r;

        r = db_mailbox_lookup(db, j->recipient, &mailbox_id, NULL);
        if (r < 0)
                return r;
        j->mailbox_found = true;
        return db_message_insert(db, mailbox_id, j->sender, j->client_msg_id, j->blob, j->size, j->received_usec,
                                 j->expires_usec, &j->quota, &j->server_id, &j->duplicate);
}

static void relay_send_done(RelayJob *base, int r) {
        SendJob *j = (SendJob *) base;
        RelaySession *s = base->session;
        uint8_t reply[RELAY_SEND_REPLY_SIZE];

        if (r >= 0) {
                if (j->duplicate)
                        base->relay->counters.duplicates++;
                else {
                        base->relay->counters.stored++;
                        relay_wake(base->relay, j->recipient, j->server_id);
                }
        }
        if (!s)
                return;
        if (r == -ENOENT && !j->mailbox_found)
                relay_refuse(s, base->type, base->request_id, FRAME_ERROR_NO_SUCH_MAILBOX,
                             "nobody registered that mailbox");
        else if (r == -EDQUOT)
                relay_refuse(s, base->type, base->request_id, FRAME_ERROR_QUOTA_EXCEEDED,
                             "the recipient's mailbox is full");
        else if (r == -ENOSPC) {
                static uint64_t logged_usec;
                uint64_t now = now_usec(CLOCK_MONOTONIC);

                /* The operator's business (every sender is refused now): a warning, at most once a minute. */
                if (logged_usec == 0 || now - logged_usec >= 60 * UINT64_C(1000000)) {
                        logged_usec = now;
                        log_warning("Relay: the store holds relay_store_max_bytes (%" PRIu64 ") of queued messages; "
                                    "SENDs are refused with QUOTA_EXCEEDED until messages are fetched or expire.",
                                    relay_config(base->relay)->relay_store_max_bytes);
                }
                relay_refuse(s, base->type, base->request_id, FRAME_ERROR_QUOTA_EXCEEDED,
                             "the relay's store is full (relay_store_max_bytes)");
        }
        else if (r < 0)
                relay_internal_error(s, base->type, base->request_id, r);
        else {
                relay_send_reply_build(&(RelaySendReply) { .server_id = (uint64_t) j->server_id,
                                                           .duplicate = j->duplicate },
                                       reply);
                relay_reply(s, base->type, base->request_id, reply, sizeof reply);
        }
}

static int relay_send(RelaySession *s, const FrameHeader *h, const uint8_t *payload) {
        const Config *c = relay_config(s->relay);
        RelayRate sender_rate = relay_rate(c->relay_send_rate, c->relay_send_burst),
                  recipient_rate = relay_rate(c->relay_recipient_rate, c->relay_recipient_burst);
        uint64_t now = now_usec(CLOCK_REALTIME), retry = 0, ttl;
        RelaySend req;
        SendJob *j;
        int r;

        if (relay_send_parse(payload, h->length, &req) < 0)
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_BAD_PAYLOAD, "malformed SEND");
        if (req.blob_size > c->relay_message_max) {
                char why[96];
                (void) snprintf(why, sizeof why, "the message is over the relay's maximum of %" PRIu64 " bytes",
                                c->relay_message_max);
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_MESSAGE_TOO_LARGE, why);
        }
        /* Bounds before rates: a request refused as BUSY must not use up tokens. */
        if (!relay_session_has_room(s, req.blob_size))
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_BUSY, "too many requests in flight");

        r = relay_rate_check2(s->relay->send_sender, s->principal, strlen(s->principal), &sender_rate,
                              s->relay->send_recipient, req.recipient, RELAY_KEY_SIZE, &recipient_rate, &retry);
        if (r < 0)
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_INTERNAL, "out of memory");
        if (r == 0) {
                char why[96];
                (void) snprintf(why, sizeof why, "send rate limit reached, retry in %" PRIu64 " ms",
                                (retry + 999) / 1000);
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_RATE_LIMITED, why);
        }

        j = calloc(1, sizeof *j + req.blob_size);
        if (!j)
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_INTERNAL, "out of memory");
        j->base.run = relay_send_run;
        j->base.done = relay_send_done;
        j->base.type = h->type;
        j->base.request_id = h->request_id;
        j->base.bytes = req.blob_size;
        memcpy(j->recipient, req.recipient, RELAY_KEY_SIZE);
        memcpy(j->client_msg_id, req.client_msg_id, RELAY_MSG_ID_SIZE);
        memcpy(j->sender, s->principal, sizeof j->sender);
        ttl = MIN(c->relay_ttl, (uint64_t) INT64_MAX - now);
        j->received_usec = (int64_t) now;
        j->expires_usec = (int64_t) (now + ttl);
        j->quota = (DbQuota) {
                .max_messages = c->relay_mailbox_max_messages,
                .max_bytes = c->relay_mailbox_max_bytes,
                .store_max_bytes = c->relay_store_max_bytes,
        };
        j->size = req.blob_size;
        memcpy(j->blob, req.blob, req.blob_size);
        (void) relay_job_submit(s, &j->base);
        return 0;
}

/* ACK */

typedef struct AckJob {
        RelayJob base;
        int64_t mailbox_id;
        size_t deleted;
        size_t n_ids;
        int64_t ids[];
} AckJob;

static int relay_ack_run(Db *db, RelayJob *base) {
        AckJob *j = (AckJob *) base;

        return db_messages_ack(db, j->mailbox_id, j->ids, j->n_ids, &j->deleted);
}

static void relay_ack_done(RelayJob *base, int r) {
        AckJob *j = (AckJob *) base;
        RelaySession *s = base->session;
        uint8_t reply[RELAY_ACK_REPLY_SIZE];

        if (r >= 0)
                base->relay->counters.acked += j->deleted;
        if (!s)
                return;
        if (r < 0) {
                relay_internal_error(s, base->type, base->request_id, r);
                return;
        }
        relay_ack_reply_build((uint16_t) MIN(j->deleted, (size_t) UINT16_MAX), reply);
        relay_reply(s, base->type, base->request_id, reply, sizeof reply);
}

static int relay_ack(RelaySession *s, const FrameHeader *h, const uint8_t *payload) {
        _cleanup_free_ uint64_t *ids = NULL;
        size_t n = 0;
        AckJob *j;

        if (!s->registered)
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_NOT_REGISTERED, "REGISTER first");
        if (relay_ack_parse(payload, h->length, &ids, &n) < 0 || n == 0 || n > RELAY_ACK_MAX)
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_BAD_PAYLOAD, "malformed ACK");
        if (!relay_work_allowed(s, h->type, h->request_id, 1 + (unsigned) (n / RELAY_WORK_ACK_IDS)))
                return 0;

        j = calloc(1, sizeof *j + n * sizeof j->ids[0]);
        if (!j)
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_INTERNAL, "out of memory");
        j->base.run = relay_ack_run;
        j->base.done = relay_ack_done;
        j->base.type = h->type;
        j->base.request_id = h->request_id;
        j->mailbox_id = s->mailbox_id;
        j->n_ids = n;
        j->base.bytes = sizeof *j + n * sizeof j->ids[0];
        /* Ids above INT64_MAX were never handed out; as negative values they match nothing. */
        for (size_t i = 0; i < n; i++)
                j->ids[i] = (int64_t) ids[i];
        (void) relay_job_submit(s, &j->base);
        return 0;
}

/*
 * Expiry sweep: expired messages and dedup keys, and the records of
 * certificates that expired more than cert_retention ago (the store's other
 * table that only grows: every enrollment adds a row). One writer job per
 * chunk; a full chunk of either continues, a bounded number per interval.
 */

typedef struct SweepJob {
        RelayJob base;
        int64_t now_usec;
        int64_t cert_before_sec;        /* certificates expired before this are forgotten */
        size_t deleted;
        size_t certs_removed;
        bool more;              /* db_messages_expire() or db_cert_prune() hit its limit */
} SweepJob;

static int relay_sweep_submit(Relay *relay);

static int relay_sweep_run(Db *db, RelayJob *base) {
        SweepJob *j = (SweepJob *) base;

        int r;

        r = db_messages_expire(db, j->now_usec, RELAY_SWEEP_CHUNK, &j->deleted);
        if (r < 0)
                return r;
        j->more = r > 0;
        r = db_cert_prune(db, j->cert_before_sec, RELAY_SWEEP_CHUNK, &j->certs_removed);
        if (r < 0)
                return r;
        j->more = j->more || r > 0;
        return 0;
}

static void relay_sweep_done(RelayJob *base, int r) {
        SweepJob *j = (SweepJob *) base;
        Relay *relay = base->relay;

        if (r < 0) {
                relay_internal_error(NULL, 0, 0, r);
                relay->sweep_running = false;
                return;
        }
        relay->counters.expired += j->deleted;
        if (j->certs_removed > 0)
                log_info("Removed the records of %zu certificates that expired more than cert_retention ago.",
                         j->certs_removed);
        /* A full chunk: more may be waiting; go on, a bounded number of chunks per interval. */
        if (j->more && relay->sweep_chunks < RELAY_SWEEP_CHUNKS_MAX &&
            relay_sweep_submit(relay) >= 0)
                return;
        if (j->deleted > 0)
                log_debug("Relay: expiry sweep done, %" PRIu64 " expired since start.", relay->counters.expired);
        relay->sweep_running = false;
}

static int relay_sweep_submit(Relay *relay) {
        SweepJob *j;
        int r;

        j = calloc(1, sizeof *j);
        if (!j)
                return -ENOMEM;
        j->base.run = relay_sweep_run;
        j->base.done = relay_sweep_done;
        j->now_usec = (int64_t) now_usec(CLOCK_REALTIME);
        j->cert_before_sec = (j->now_usec - (int64_t) MIN(relay_config(relay)->cert_retention, (uint64_t) INT64_MAX / 2)) /
                             INT64_C(1000000);
        r = relay_job_queue(relay, NULL, &j->base);
        if (r < 0) {
                free(j);
                return r;
        }
        relay->sweep_running = true;
        relay->sweep_chunks++;
        return 0;
}

static int relay_on_sweep_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        Relay *relay = userdata;
        int r;

        if (!relay->sweep_running && relay->manager->writer) {
                relay->sweep_chunks = 0;
                r = relay_sweep_submit(relay);
                if (r < 0)
                        log_debug_errno(r, "Relay: expiry sweep not started this time: %m");
        }
        /* The interval is read each time: a reload changes it from the next sweep on. */
        (void) sd_event_source_set_time(source, now_usec(CLOCK_MONOTONIC) + relay_config(relay)->relay_sweep_interval);
        return sd_event_source_set_enabled(source, SD_EVENT_ONESHOT);
}

/* Setup and dispatch */

int relay_new(Manager *m, Relay **ret) {
        _cleanup_(relay_freep) Relay *relay = NULL;
        int r;

        relay = calloc(1, sizeof *relay);
        if (!relay)
                return -ENOMEM;
        relay->manager = m;
        if (getrandom(relay->hash_key, sizeof relay->hash_key, 0) != (ssize_t) sizeof relay->hash_key)
                return -EIO;
        r = relay_rate_table_new(RELAY_RATE_TABLE_ENTRIES, &relay->send_sender);
        if (r >= 0)
                r = relay_rate_table_new(RELAY_RATE_TABLE_ENTRIES, &relay->send_recipient);
        if (r >= 0)
                r = relay_rate_table_new(RELAY_RATE_TABLE_ENTRIES, &relay->bundle_requester);
        if (r >= 0)
                r = relay_rate_table_new(RELAY_RATE_TABLE_ENTRIES, &relay->bundle_pair);
        if (r >= 0)
                r = relay_rate_table_new(RELAY_RATE_TABLE_ENTRIES, &relay->verify);
        if (r >= 0)
                r = relay_rate_table_new(RELAY_RATE_TABLE_ENTRIES, &relay->work);
        if (r >= 0)
                r = relay_rate_table_new(RELAY_RATE_TABLE_ENTRIES, &relay->bundle_mailbox);
        if (r < 0)
                return r;
        /* The first sweep soon after start: messages may have expired while secd was down. */
        r = sd_event_add_time_relative(m->event, &relay->sweep_timer, CLOCK_MONOTONIC,
                                       MIN(m->config.relay_sweep_interval, 5 * UINT64_C(1000000)),
                                       100 * 1000, relay_on_sweep_timer, relay);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(relay);
        return 0;
}

Relay *relay_free(Relay *relay) {
        if (!relay)
                return NULL;
        sd_event_source_disable_unref(relay->sweep_timer);
        relay_rate_table_free(relay->send_sender);
        relay_rate_table_free(relay->send_recipient);
        relay_rate_table_free(relay->bundle_requester);
        relay_rate_table_free(relay->bundle_pair);
        relay_rate_table_free(relay->verify);
        relay_rate_table_free(relay->work);
        relay_rate_table_free(relay->bundle_mailbox);
        free(relay);
        return NULL;
}

const RelayCounters *relay_get_counters(const Relay *r) {
        return &r->counters;
}

const KeysCounters *relay_get_keys_counters(const Relay *r) {
        return &r->keys;
}

void relay_handle_frame(DataConnection *c, const FrameHeader *h, const uint8_t *payload) {
        Manager *m = data_connection_manager(c);
        RelaySession *s;

        if (!m->relay) {
                data_connection_error(c, h->request_id, FRAME_ERROR_INTERNAL, "the relay is not available");
                return;
        }
        s = relay_session_get(m->relay, c);
        if (!s) {
                data_connection_error(c, h->request_id, FRAME_ERROR_INTERNAL, "out of memory");
                return;
        }

        switch (h->type) {
        case FRAME_REGISTER:
                (void) relay_register(s, h, payload);
                break;
        case FRAME_SEND:
                (void) relay_send(s, h, payload);
                break;
        case FRAME_FETCH:
                (void) relay_fetch(s, h, payload);
                break;
        case FRAME_ACK:
                (void) relay_ack(s, h, payload);
                break;
        default:
                keys_handle_frame(s, h, payload);
                break;
        }
}
