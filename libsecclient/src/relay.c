/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Relay calls: REGISTER (proof over the session's channel binding), SEND,
 * FETCH (with de-duplication of redelivered ids), ACK. Payloads through
 * common/relay-proto; frames through client.c's request plumbing.
 */
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "relay-proto.h"
#include "secclient-internal.h"

/* ---------------------------------------------------------------------- */
/* Delivered ids: a sorted array, binary search */

/* Index of the first element >= id. */
static size_t seen_set_lower_bound(const SeenSet *s, uint64_t id) {
        size_t lo = 0, hi = s->n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (s->ids[mid] < id)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

bool seen_set_contains(const SeenSet *s, uint64_t id) {
        size_t i = seen_set_lower_bound(s, id);

        return i < s->n && s->ids[i] == id;
}

int seen_set_add(SeenSet *s, uint64_t id) {
        size_t i = seen_set_lower_bound(s, id);

        if (i < s->n && s->ids[i] == id)
                return 0;
        if (s->n >= SECCLIENT_SEEN_MAX) {
                /* Full: forget the oldest id. An id below all of them is that id itself. */
                if (i == 0)
                        return 0;
                memmove(s->ids, s->ids + 1, (s->n - 1) * sizeof s->ids[0]);
                s->n--;
                i--;
        }
        memmove(s->ids + i + 1, s->ids + i, (s->n - i) * sizeof s->ids[0]);
        s->ids[i] = id;
        s->n++;
        return 1;
}

void seen_set_remove(SeenSet *s, uint64_t id) {
        size_t i = seen_set_lower_bound(s, id);

        if (i >= s->n || s->ids[i] != id)
                return;
        memmove(s->ids + i, s->ids + i + 1, (s->n - i - 1) * sizeof s->ids[0]);
        s->n--;
}

void seen_set_clear(SeenSet *s) {
        s->cursor = 0;
        s->n = 0;
}

/* ---------------------------------------------------------------------- */
/* REGISTER */

int mailbox_register(secclient *c, const uint8_t seed[SECCLIENT_KEY_SIZE], int *ret_created) {
        uint8_t exporter[RELAY_EXPORTER_SIZE], signed_msg[RELAY_SIGNED_MAX], payload[RELAY_REGISTER_SIZE];
        _cleanup_free_ uint8_t *reply = NULL;
        RelayRegister reg = {};
        size_t n, reply_len = 0;
        bool created = false;
        int r;

        r = client_channel_binding(c, exporter);
        if (r < 0)
                return r;
        n = relay_signed_register(signed_msg, exporter);
        r = secclient_identity_public(seed, reg.key);
        if (r >= 0)
                r = identity_sign(seed, signed_msg, n, reg.proof);
        if (r >= 0)
                r = relay_register_build(&reg, payload);
        if (r < 0)
                return r;

        r = client_request_now(c, FRAME_REGISTER, payload, sizeof payload, 0, &reply, &reply_len);
        if (r < 0)
                return r;
        if (relay_register_reply_parse(reply, reply_len, &created) < 0) {
                client_set_last_error(c, "malformed REGISTER reply from secd");
                return -EBADMSG;
        }
        client_identity_set(c, seed);
        client_set_registered(c);
        if (ret_created)
                *ret_created = created;
        return 0;
}

_public_ int secclient_register(secclient *c, const uint8_t seed[SECCLIENT_KEY_SIZE], int *ret_created) {
        const uint8_t *held;
        int r;

        if (!c || !seed)
                return -EINVAL;

        held = client_identity(c);
        if (held && gnutls_memcmp(held, seed, SECCLIENT_KEY_SIZE) != 0) {
                /*
                 * Another mailbox. A connection serves one: the caller
                 * reconnects (secclient_connect()) to switch, and an
                 * automatic reconnection must not register the old one.
                 */
                if (client_registered(c)) {
                        client_set_last_error(c, "this connection is registered for another mailbox");
                        return -EEXIST;
                }
                client_identity_clear(c);
        } else if (held && client_registered(c)) {
                if (ret_created)
                        *ret_created = 0;
                return 0;
        }

        r = client_connection_ensure(c);
        if (r < 0)
                return r;
        /* The reconnection may have registered the held seed, which is this one. */
        if (client_registered(c)) {
                if (ret_created)
                        *ret_created = 0;
                return 0;
        }
        return mailbox_register(c, seed, ret_created);
}

/* ---------------------------------------------------------------------- */
/* SEND, FETCH, ACK */

_public_ int secclient_msg_id_generate(uint8_t client_msg_id[SECCLIENT_MSG_ID_SIZE]) {
        struct timespec ts;
        uint64_t usec;

        if (!client_msg_id)
                return -EINVAL;
        if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
                return -errno;
        usec = (uint64_t) ts.tv_sec * UINT64_C(1000000) + (uint64_t) ts.tv_nsec / 1000;
        for (size_t i = 0; i < 8; i++)
                client_msg_id[i] = (uint8_t) (usec >> (56 - 8 * i));
        if (gnutls_rnd(GNUTLS_RND_NONCE, client_msg_id + 8, SECCLIENT_MSG_ID_SIZE - 8) < 0)
                return -EIO;
        return 0;
}

_public_ int secclient_relay_send(secclient *c, const uint8_t recipient[SECCLIENT_KEY_SIZE],
                                  const uint8_t client_msg_id[SECCLIENT_MSG_ID_SIZE], const void *data, size_t len,
                                  uint64_t *ret_server_id, int *ret_duplicate) {
        _cleanup_free_ uint8_t *payload = NULL, *reply = NULL;
        size_t payload_len = 0, reply_len = 0;
        RelaySendReply sr = {};
        RelaySend s = {};
        int r;

        if (!c || !recipient || !data || len == 0)
                return -EINVAL;
        if (len > FRAME_PAYLOAD_MAX_HARD - RELAY_SEND_HEADER_SIZE) {
                client_set_last_error(c, "the message is over the largest frame (16 MiB with its header)");
                return -EMSGSIZE;
        }

        memcpy(s.recipient, recipient, RELAY_KEY_SIZE);
        if (client_msg_id)
                memcpy(s.client_msg_id, client_msg_id, RELAY_MSG_ID_SIZE);
        else {
                r = secclient_msg_id_generate(s.client_msg_id);
                if (r < 0)
                        return r;
        }
        s.blob = data;
        s.blob_size = len;
        r = relay_send_build(&s, FRAME_PAYLOAD_MAX_HARD, &payload, &payload_len);
        if (r == -E2BIG)
                return -EMSGSIZE;
        if (r < 0)
                return r;

        r = client_request(c, FRAME_SEND, payload, payload_len, 0, &reply, &reply_len);
        if (r < 0)
                return r;
        if (relay_send_reply_parse(reply, reply_len, &sr) < 0) {
                client_set_last_error(c, "malformed SEND reply from secd");
                return -EBADMSG;
        }
        if (ret_server_id)
                *ret_server_id = sr.server_id;
        if (ret_duplicate)
                *ret_duplicate = sr.duplicate;
        return 0;
}

_public_ void secclient_messages_free(secclient_message *m, size_t n) {
        if (!m)
                return;
        for (size_t i = 0; i < n; i++)
                free(m[i].data);
        free(m);
}

_public_ int secclient_relay_fetch(secclient *c, unsigned max_count, size_t max_bytes, unsigned wait_ms,
                                   secclient_message **ret, size_t *ret_n) {
        _cleanup_free_ uint8_t *reply = NULL;
        _cleanup_free_ RelayMessage *msgs = NULL;
        uint8_t payload[RELAY_FETCH_SIZE];
        secclient_message *out = NULL;
        size_t reply_len = 0, n = 0, k = 0;
        SeenSet *seen;
        RelayFetch f;
        int r;

        if (!c || !ret || !ret_n)
                return -EINVAL;
        if (max_count == 0 || max_count > SECCLIENT_FETCH_MAX)
                return -EINVAL;

        seen = client_seen(c);
        if (!seen)
                return -ENOMEM;

        f = (RelayFetch) {
                .max_count = (uint16_t) max_count,
                .max_bytes = max_bytes == 0 || max_bytes > UINT32_MAX ? UINT32_MAX : (uint32_t) max_bytes,
                .wait_ms = wait_ms,
                .after_id = seen->cursor,
        };
        r = relay_fetch_build(&f, payload);
        if (r < 0)
                return r;

        r = client_request(c, FRAME_FETCH, payload, sizeof payload, wait_ms, &reply, &reply_len);
        if (r < 0)
                return r;
        r = relay_fetch_reply_parse(reply, reply_len, &msgs, &n);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || n > max_count) {
                client_set_last_error(c, "malformed FETCH reply from secd");
                return -EBADMSG;
        }
        for (size_t i = 1; i < n; i++)
                if (msgs[i].server_id <= msgs[i - 1].server_id) {
                        client_set_last_error(c, "FETCH reply from secd out of order");
                        return -EBADMSG;
                }

        if (n > 0) {
                out = calloc(n, sizeof *out);
                if (!out)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                if (seen_set_contains(seen, msgs[i].server_id))
                        continue; /* redelivered: the caller has it */
                out[k] = (secclient_message) {
                        .id = msgs[i].server_id,
                        .received_usec = msgs[i].received_usec,
                        .len = msgs[i].blob_size,
                };
                memcpy(out[k].client_msg_id, msgs[i].client_msg_id, SECCLIENT_MSG_ID_SIZE);
                out[k].data = malloc(msgs[i].blob_size);
                if (!out[k].data) {
                        secclient_messages_free(out, k);
                        return -ENOMEM;
                }
                memcpy(out[k].data, msgs[i].blob, msgs[i].blob_size);
                k++;
        }
        /*
         * Only now that nothing can fail: these ids count as delivered, and
         * the cursor moves to the last id of the reply. secd returned the
         * lowest pending ids above the cursor we sent, so everything pending
         * up to that id is with the caller now. Should a reply still carry
         * ids at or below the cursor (a relay ignoring it), the set above
         * drops those handed out before and delivers the rest: no loss.
         * The cursor only grows; a reconnection to the same mailbox keeps it.
         */
        for (size_t i = 0; i < k; i++)
                (void) seen_set_add(seen, out[i].id);
        if (n > 0 && msgs[n - 1].server_id > seen->cursor)
                seen->cursor = msgs[n - 1].server_id;

        if (k == 0) {
                free(out);
                out = NULL;
        }
        *ret = out;
        *ret_n = k;
        return 0;
}

_public_ int secclient_relay_ack(secclient *c, const uint64_t *ids, size_t n, unsigned *ret_deleted) {
        _cleanup_free_ uint8_t *payload = NULL, *reply = NULL;
        size_t payload_len = 0, reply_len = 0;
        uint16_t deleted = 0;
        SeenSet *seen;
        int r;

        if (!c || !ids || n == 0 || n > SECCLIENT_FETCH_MAX || n > RELAY_ACK_MAX)
                return -EINVAL;

        r = relay_ack_build(ids, n, &payload, &payload_len);
        if (r < 0)
                return r;
        r = client_request(c, FRAME_ACK, payload, payload_len, 0, &reply, &reply_len);
        if (r < 0)
                return r;
        if (relay_ack_reply_parse(reply, reply_len, &deleted) < 0 || deleted > n) {
                client_set_last_error(c, "malformed ACK reply from secd");
                return -EBADMSG;
        }
        /* Deleted on secd: they cannot come back, so they need no place in the set. */
        seen = client_seen(c);
        if (seen)
                for (size_t i = 0; i < n; i++)
                        seen_set_remove(seen, ids[i]);
        if (ret_deleted)
                *ret_deleted = deleted;
        return 0;
}
