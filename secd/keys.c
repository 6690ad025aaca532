/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The key server: X3DH-style pre-keys of a mailbox (docs/protocol.md).
 *
 * KEYS_PUBLISH: only on a connection registered for the mailbox (REGISTER
 * proved the Ed25519 identity key and bound the mailbox to this principal);
 * both signatures are verified against that key before anything is
 * stored, so a bad one stores nothing. KEYS_BUNDLE: any admitted connection,
 * rate-limited per requester principal and per (requester, mailbox), so
 * nobody drains another mailbox's one-time pre-keys; the store takes the
 * one-time pre-key in the same savepoint that reads it, so two bundles never
 * carry the same one. KEYS_COUNT: the registered mailbox's one-time pre-keys.
 */
#include <inttypes.h>

#include "relay-internal.h"

/* KEYS_PUBLISH */

typedef struct PublishJob {
        RelayJob base;
        int64_t mailbox_id;
        int64_t now_usec;
        RelayPublish pub;
        DbPrekey otks[RELAY_OTK_MAX];
} PublishJob;

static int keys_publish_run(Db *db, RelayJob *base) {
        PublishJob *j = (PublishJob *) base;

        return db_keys_publish(db, j->mailbox_id, j->pub.identity_dh, j->pub.identity_dh_sig, j->pub.spk_id,
                               j->pub.spk, j->pub.spk_sig, j->otks, j->pub.n_otks, j->now_usec);
}

static void keys_publish_done(RelayJob *base, int r) {
        PublishJob *j = (PublishJob *) base;
        RelaySession *s = base->session;
        uint8_t reply[RELAY_PUBLISH_REPLY_SIZE];

        if (r >= 0)
                base->relay->keys.published++;
        if (!s)
                return;
        if (r < 0) {
                relay_internal_error(s, base->type, base->request_id, r);
                return;
        }
        relay_publish_reply_build((uint16_t) j->pub.n_otks, reply);
        relay_reply(s, base->type, base->request_id, reply, sizeof reply);
}

static int keys_publish(RelaySession *s, const FrameHeader *h, const uint8_t *payload) {
        uint8_t msg[RELAY_SIGNED_MAX];
        _cleanup_free_ PublishJob *j = NULL;
        size_t len;

        if (!s->registered)
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_NOT_REGISTERED,
                                    "REGISTER the mailbox whose keys these are first");

        /* The job is large (100 pre-keys): parse straight into it. */
        j = calloc(1, sizeof *j);
        if (!j)
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_INTERNAL, "out of memory");
        if (relay_publish_parse(payload, h->length, &j->pub) < 0 || j->pub.n_otks > RELAY_OTK_MAX)
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_BAD_PAYLOAD, "malformed KEYS_PUBLISH");

        /* Both signatures by the registered mailbox key, or nothing is stored. */
        if (!relay_verify_allowed(s, h->type, h->request_id))
                return 0;
        len = relay_signed_identity_dh(msg, j->pub.identity_dh);
        if (!relay_ed25519_verify(s->key, msg, len, j->pub.identity_dh_sig))
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_BAD_SIGNATURE,
                                    "identity_dh_sig does not verify with the mailbox key");
        len = relay_signed_prekey(msg, j->pub.spk_id, j->pub.spk);
        if (!relay_ed25519_verify(s->key, msg, len, j->pub.spk_sig))
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_BAD_SIGNATURE,
                                    "spk_sig does not verify with the mailbox key");

        j->base.run = keys_publish_run;
        j->base.done = keys_publish_done;
        j->base.type = h->type;
        j->base.request_id = h->request_id;
        j->mailbox_id = s->mailbox_id;
        j->now_usec = (int64_t) now_usec(CLOCK_REALTIME);
        j->base.bytes = sizeof *j;      /* 7.5 KiB: held to the in-flight budgets like a SEND's blob */
        for (size_t i = 0; i < j->pub.n_otks; i++) {
                j->otks[i].id = j->pub.otks[i].id;
                memcpy(j->otks[i].key, j->pub.otks[i].key, sizeof j->otks[i].key);
        }
        (void) relay_job_submit(s, &TAKE_PTR(j)->base);
        return 0;
}

/* KEYS_BUNDLE */

typedef struct BundleJob {
        RelayJob base;
        uint8_t mailbox[RELAY_KEY_SIZE];
        bool mailbox_found;
        DbKeyBundle bundle;
} BundleJob;

static int keys_bundle_run(Db *db, RelayJob *base) {
        BundleJob *j = (BundleJob *) base;
        int64_t id;
        int r;

        r = db_mailbox_lookup(db, j->mailbox, &id, NULL);
        if (r < 0)
                return r;
        j->mailbox_found = true;
        return db_keys_bundle(db, id, &j->bundle);
}

static void keys_bundle_done(RelayJob *base, int r) {
        BundleJob *j = (BundleJob *) base;
        RelaySession *s = base->session;
        uint8_t reply[RELAY_BUNDLE_REPLY_MAX];
        RelayBundle b;
        size_t len;

        /* Counted even when the requester is gone: the one-time pre-key was taken all the same. */
        if (r >= 0) {
                base->relay->keys.bundles++;
                if (!j->bundle.has_otk)
                        base->relay->keys.bundles_without_otk++;
        }
        if (!s)
                return;
        if (r == -ENOENT && !j->mailbox_found) {
                relay_refuse(s, base->type, base->request_id, FRAME_ERROR_NO_SUCH_MAILBOX, "nobody registered that mailbox");
                return;
        }
        if (r == -ENOENT) {
                relay_refuse(s, base->type, base->request_id, FRAME_ERROR_NO_KEYS, "the mailbox has published no keys");
                return;
        }
        if (r < 0) {
                relay_internal_error(s, base->type, base->request_id, r);
                return;
        }

        b = (RelayBundle) {
                .spk_id = j->bundle.spk_id,
                .has_otk = j->bundle.has_otk,
        };
        memcpy(b.identity_key, j->bundle.identity_key, sizeof b.identity_key);
        memcpy(b.identity_dh, j->bundle.identity_dh, sizeof b.identity_dh);
        memcpy(b.identity_dh_sig, j->bundle.identity_dh_sig, sizeof b.identity_dh_sig);
        memcpy(b.spk, j->bundle.spk, sizeof b.spk);
        memcpy(b.spk_sig, j->bundle.spk_sig, sizeof b.spk_sig);
        if (b.has_otk) {
                b.otk.id = j->bundle.otk.id;
                memcpy(b.otk.key, j->bundle.otk.key, sizeof b.otk.key);
        }
        len = relay_bundle_build(&b, reply);
        relay_reply(s, base->type, base->request_id, reply, (uint32_t) len);
}

static int keys_bundle(RelaySession *s, const FrameHeader *h, const uint8_t *payload) {
        const Config *c = &s->relay->manager->config;
        RelayRate per_requester = { c->keys_bundle_rate, c->keys_bundle_burst },
                  per_target = { c->keys_bundle_target_rate, c->keys_bundle_target_burst },
                  per_mailbox = { c->keys_bundle_mailbox_rate, c->keys_bundle_mailbox_burst };
        uint8_t mailbox[RELAY_KEY_SIZE], pair[RELAY_PRINCIPAL_MAX + 1 + RELAY_KEY_SIZE];
        size_t plen = strlen(s->principal);
        uint64_t retry = 0;
        BundleJob *j;
        int r;

        if (relay_bundle_request_parse(payload, h->length, mailbox) < 0)
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_BAD_PAYLOAD, "malformed KEYS_BUNDLE");
        if (!relay_session_has_room(s, 0))
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_BUSY, "too many requests in flight");

        /* The pair key: principal, a NUL (never inside a principal), the target mailbox. */
        memcpy(pair, s->principal, plen);
        pair[plen] = 0;
        memcpy(pair + plen + 1, mailbox, RELAY_KEY_SIZE);
        /*
         * Three limits: this requester, this requester for this mailbox, and this mailbox
         * from everybody (many identities together must not drain it either). The last is
         * looked at first and taken only when the other two allow the request, so a refused
         * request uses up none of them.
         */
        r = relay_rate_check(s->relay->bundle_mailbox, mailbox, RELAY_KEY_SIZE, &per_mailbox,
                             now_usec(CLOCK_MONOTONIC), false, &retry);
        if (r > 0)
                r = relay_rate_check2(s->relay->bundle_requester, s->principal, plen, &per_requester,
                                      s->relay->bundle_pair, pair, plen + 1 + RELAY_KEY_SIZE, &per_target, &retry);
        if (r > 0)
                r = relay_rate_check(s->relay->bundle_mailbox, mailbox, RELAY_KEY_SIZE, &per_mailbox,
                                     now_usec(CLOCK_MONOTONIC), true, NULL);
        if (r < 0)
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_INTERNAL, "out of memory");
        if (r == 0) {
                char why[96];
                (void) snprintf(why, sizeof why, "bundle rate limit reached, retry in %" PRIu64 " ms", (retry + 999) / 1000);
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_RATE_LIMITED, why);
        }

        j = calloc(1, sizeof *j);
        if (!j)
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_INTERNAL, "out of memory");
        j->base.run = keys_bundle_run;
        j->base.done = keys_bundle_done;
        j->base.type = h->type;
        j->base.request_id = h->request_id;
        memcpy(j->mailbox, mailbox, RELAY_KEY_SIZE);
        (void) relay_job_submit(s, &j->base);
        return 0;
}

/* KEYS_COUNT */

typedef struct CountJob {
        RelayJob base;
        int64_t mailbox_id;
        uint64_t count;
} CountJob;

static int keys_count_run(Db *db, RelayJob *base) {
        CountJob *j = (CountJob *) base;

        return db_keys_count(db, j->mailbox_id, &j->count);
}

static void keys_count_done(RelayJob *base, int r) {
        CountJob *j = (CountJob *) base;
        RelaySession *s = base->session;
        uint8_t reply[RELAY_COUNT_REPLY_SIZE];

        if (!s)
                return;
        if (r < 0) {
                relay_internal_error(s, base->type, base->request_id, r);
                return;
        }
        relay_count_reply_build((uint32_t) MIN(j->count, (uint64_t) UINT32_MAX), reply);
        relay_reply(s, base->type, base->request_id, reply, sizeof reply);
}

static int keys_count(RelaySession *s, const FrameHeader *h, const uint8_t *payload) {
        CountJob *j;

        if (!s->registered)
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_NOT_REGISTERED, "REGISTER first");
        if (relay_count_request_parse(payload, h->length) < 0)
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_BAD_PAYLOAD, "malformed KEYS_COUNT");
        if (!relay_work_allowed(s, h->type, h->request_id, 1))
                return 0;

        j = calloc(1, sizeof *j);
        if (!j)
                return relay_refuse(s, h->type, h->request_id, FRAME_ERROR_INTERNAL, "out of memory");
        j->base.run = keys_count_run;
        j->base.done = keys_count_done;
        j->base.type = h->type;
        j->base.request_id = h->request_id;
        j->mailbox_id = s->mailbox_id;
        (void) relay_job_submit(s, &j->base);
        return 0;
}

void keys_handle_frame(RelaySession *s, const FrameHeader *h, const uint8_t *payload) {
        switch (h->type) {
        case FRAME_KEYS_PUBLISH:
                (void) keys_publish(s, h, payload);
                break;
        case FRAME_KEYS_BUNDLE:
                (void) keys_bundle(s, h, payload);
                break;
        case FRAME_KEYS_COUNT:
                (void) keys_count(s, h, payload);
                break;
        default:
                relay_refuse(s, h->type, h->request_id, FRAME_ERROR_UNKNOWN_TYPE, "not a relay frame");
                break;
        }
}
