/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Relay and key-server payloads (relay-proto.h has the wire format). Every
 * parser checks the whole length first, then reads; a count is bounded
 * before anything is allocated from it; results are written only on
 * success.
 */
#include "relay-proto.h"

static uint16_t be16(const uint8_t *p) {
        return (uint16_t) (p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | (uint32_t) p[3];
}

static uint64_t be64(const uint8_t *p) {
        return (uint64_t) be32(p) << 32 | be32(p + 4);
}

static void put_be16(uint8_t *p, uint16_t v) {
        p[0] = (uint8_t) (v >> 8);
        p[1] = (uint8_t) v;
}

static void put_be32(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t) (v >> 24);
        p[1] = (uint8_t) (v >> 16);
        p[2] = (uint8_t) (v >> 8);
        p[3] = (uint8_t) v;
}

static void put_be64(uint8_t *p, uint64_t v) {
        put_be32(p, (uint32_t) (v >> 32));
        put_be32(p + 4, (uint32_t) v);
}

/* A parser's arguments: a NULL buffer is only fine when it is empty. */
static bool args_ok(const uint8_t *p, size_t n, const void *ret) {
        return ret && (p || n == 0);
}

/* Domain string (without its NUL) followed by the signed value. */
static size_t signed_message(uint8_t out[RELAY_SIGNED_MAX], const char *domain, const uint8_t *v, size_t v_size) {
        size_t d = strlen(domain);

        /* The domains are compile-time constants that fit; this only guards edits. */
        if (d + v_size > RELAY_SIGNED_MAX)
                abort();
        memcpy(out, domain, d);
        memcpy(out + d, v, v_size);
        return d + v_size;
}

size_t relay_signed_register(uint8_t out[RELAY_SIGNED_MAX], const uint8_t exporter[RELAY_EXPORTER_SIZE]) {
        return signed_message(out, RELAY_DOMAIN_REGISTER, exporter, RELAY_EXPORTER_SIZE);
}

size_t relay_signed_identity_dh(uint8_t out[RELAY_SIGNED_MAX], const uint8_t dh[RELAY_DH_KEY_SIZE]) {
        return signed_message(out, RELAY_DOMAIN_IDENTITY_DH, dh, RELAY_DH_KEY_SIZE);
}

size_t relay_signed_prekey(uint8_t out[RELAY_SIGNED_MAX], uint32_t spk_id, const uint8_t spk[RELAY_DH_KEY_SIZE]) {
        uint8_t v[4 + RELAY_DH_KEY_SIZE];

        put_be32(v, spk_id);
        memcpy(v + 4, spk, RELAY_DH_KEY_SIZE);
        return signed_message(out, RELAY_DOMAIN_SIGNED_PREKEY, v, sizeof v);
}

/* REGISTER */

int relay_register_parse(const uint8_t *p, size_t n, RelayRegister *ret) {
        if (!args_ok(p, n, ret))
                return -EINVAL;
        if (n != RELAY_REGISTER_SIZE)
                return -EBADMSG;
        memcpy(ret->key, p, RELAY_KEY_SIZE);
        memcpy(ret->proof, p + RELAY_KEY_SIZE, RELAY_SIGNATURE_SIZE);
        return 0;
}

int relay_register_build(const RelayRegister *r, uint8_t out[RELAY_REGISTER_SIZE]) {
        if (!r || !out)
                return -EINVAL;
        memcpy(out, r->key, RELAY_KEY_SIZE);
        memcpy(out + RELAY_KEY_SIZE, r->proof, RELAY_SIGNATURE_SIZE);
        return 0;
}

int relay_register_reply_parse(const uint8_t *p, size_t n, bool *ret_created) {
        if (!args_ok(p, n, ret_created))
                return -EINVAL;
        if (n != RELAY_REGISTER_REPLY_SIZE || p[0] > 1)
                return -EBADMSG;
        *ret_created = p[0] == 1;
        return 0;
}

void relay_register_reply_build(bool created, uint8_t out[RELAY_REGISTER_REPLY_SIZE]) {
        out[0] = created ? 1 : 0;
}

/* SEND */

int relay_send_parse(const uint8_t *p, size_t n, RelaySend *ret) {
        if (!args_ok(p, n, ret))
                return -EINVAL;
        if (n <= RELAY_SEND_HEADER_SIZE)        /* the blob has at least one byte */
                return -EBADMSG;
        memcpy(ret->recipient, p, RELAY_KEY_SIZE);
        memcpy(ret->client_msg_id, p + RELAY_KEY_SIZE, RELAY_MSG_ID_SIZE);
        ret->blob = p + RELAY_SEND_HEADER_SIZE;
        ret->blob_size = n - RELAY_SEND_HEADER_SIZE;
        return 0;
}

int relay_send_build(const RelaySend *s, size_t max, uint8_t **ret, size_t *ret_size) {
        uint8_t *buf;
        size_t size;

        if (!s || !ret || !ret_size || !s->blob || s->blob_size < 1)
                return -EINVAL;
        if (!size_add_ok(RELAY_SEND_HEADER_SIZE, s->blob_size, &size))
                return -E2BIG;
        if (size > max)
                return -E2BIG;
        buf = malloc(size);
        if (!buf)
                return -ENOMEM;
        memcpy(buf, s->recipient, RELAY_KEY_SIZE);
        memcpy(buf + RELAY_KEY_SIZE, s->client_msg_id, RELAY_MSG_ID_SIZE);
        memcpy(buf + RELAY_SEND_HEADER_SIZE, s->blob, s->blob_size);
        *ret = buf;
        *ret_size = size;
        return 0;
}

int relay_send_reply_parse(const uint8_t *p, size_t n, RelaySendReply *ret) {
        if (!args_ok(p, n, ret))
                return -EINVAL;
        if (n != RELAY_SEND_REPLY_SIZE || p[8] > 1)
                return -EBADMSG;
        *ret = (RelaySendReply) {
                .server_id = be64(p),
                .duplicate = p[8] == 1,
        };
        return 0;
}

void relay_send_reply_build(const RelaySendReply *r, uint8_t out[RELAY_SEND_REPLY_SIZE]) {
        put_be64(out, r->server_id);
        out[8] = r->duplicate ? 1 : 0;
}

/* FETCH */

static bool fetch_ok(const RelayFetch *f) {
        return f->max_count >= 1 && f->max_count <= RELAY_FETCH_COUNT_MAX && f->max_bytes >= 1;
}

int relay_fetch_parse(const uint8_t *p, size_t n, RelayFetch *ret) {
        RelayFetch f;

        if (!args_ok(p, n, ret))
                return -EINVAL;
        if (n != RELAY_FETCH_SIZE)
                return -EBADMSG;
        f = (RelayFetch) {
                .max_count = be16(p),
                .max_bytes = be32(p + 2),
                .wait_ms = be32(p + 6),
                .after_id = be64(p + 10),
        };
        if (!fetch_ok(&f))
                return -EBADMSG;
        *ret = f;
        return 0;
}

int relay_fetch_build(const RelayFetch *f, uint8_t out[RELAY_FETCH_SIZE]) {
        if (!f || !out)
                return -EINVAL;
        if (!fetch_ok(f))
                return -EINVAL;
        put_be16(out, f->max_count);
        put_be32(out + 2, f->max_bytes);
        put_be32(out + 6, f->wait_ms);
        put_be64(out + 10, f->after_id);
        return 0;
}

size_t relay_fetch_reply_size(const RelayMessage *m, size_t n) {
        size_t size = RELAY_FETCH_REPLY_HEADER_SIZE;

        for (size_t i = 0; i < n; i++)
                if (!size_add_ok(size, RELAY_FETCH_ITEM_HEADER_SIZE, &size) ||
                    !size_add_ok(size, m[i].blob_size, &size))
                        return SIZE_MAX;        /* never fits */
        return size;
}

int relay_fetch_reply_build(const RelayMessage *m, size_t n, size_t max, uint8_t **ret, size_t *ret_size) {
        uint8_t *buf, *q;
        size_t size;

        if (!ret || !ret_size || (n > 0 && !m) || n > RELAY_FETCH_COUNT_MAX)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                if (!m[i].blob || m[i].blob_size < 1 || m[i].blob_size > UINT32_MAX)
                        return -EINVAL;
                /* The reader relies on the order (and refuses anything else). */
                if (i > 0 && m[i].server_id <= m[i - 1].server_id)
                        return -EINVAL;
        }
        size = relay_fetch_reply_size(m, n);
        if (size > max)
                return -E2BIG;
        buf = malloc(size);
        if (!buf)
                return -ENOMEM;
        put_be16(buf, (uint16_t) n);
        q = buf + RELAY_FETCH_REPLY_HEADER_SIZE;
        for (size_t i = 0; i < n; i++) {
                put_be64(q, m[i].server_id);
                memcpy(q + 8, m[i].client_msg_id, RELAY_MSG_ID_SIZE);
                put_be64(q + 8 + RELAY_MSG_ID_SIZE, m[i].received_usec);
                put_be32(q + 8 + RELAY_MSG_ID_SIZE + 8, (uint32_t) m[i].blob_size);
                memcpy(q + RELAY_FETCH_ITEM_HEADER_SIZE, m[i].blob, m[i].blob_size);
                q += RELAY_FETCH_ITEM_HEADER_SIZE + m[i].blob_size;
        }
        *ret = buf;
        *ret_size = size;
        return 0;
}

int relay_fetch_reply_parse(const uint8_t *p, size_t n, RelayMessage **ret, size_t *ret_n) {
        _cleanup_free_ RelayMessage *m = NULL;
        size_t count, off;

        if (!args_ok(p, n, ret) || !ret_n)
                return -EINVAL;
        if (n < RELAY_FETCH_REPLY_HEADER_SIZE)
                return -EBADMSG;
        count = be16(p);
        if (count > RELAY_FETCH_COUNT_MAX)
                return -EBADMSG;
        /* Each item takes at least its header and one blob byte: bound the count before allocating. */
        if (count > (n - RELAY_FETCH_REPLY_HEADER_SIZE) / (RELAY_FETCH_ITEM_HEADER_SIZE + 1))
                return -EBADMSG;
        if (count == 0) {
                if (n != RELAY_FETCH_REPLY_HEADER_SIZE)
                        return -EBADMSG;
                *ret = NULL;
                *ret_n = 0;
                return 0;
        }

        m = calloc(count, sizeof *m);
        if (!m)
                return -ENOMEM;
        off = RELAY_FETCH_REPLY_HEADER_SIZE;
        for (size_t i = 0; i < count; i++) {
                const uint8_t *q;
                uint32_t length;

                if (n - off < RELAY_FETCH_ITEM_HEADER_SIZE)
                        return -EBADMSG;
                q = p + off;
                length = be32(q + 8 + RELAY_MSG_ID_SIZE + 8);
                off += RELAY_FETCH_ITEM_HEADER_SIZE;
                if (length < 1 || length > n - off)
                        return -EBADMSG;
                m[i] = (RelayMessage) {
                        .server_id = be64(q),
                        .received_usec = be64(q + 8 + RELAY_MSG_ID_SIZE),
                        .blob = p + off,
                        .blob_size = length,
                };
                memcpy(m[i].client_msg_id, q + 8, RELAY_MSG_ID_SIZE);
                if (i > 0 && m[i].server_id <= m[i - 1].server_id)
                        return -EBADMSG;
                off += length;
        }
        if (off != n)
                return -EBADMSG;
        *ret = TAKE_PTR(m);
        *ret_n = count;
        return 0;
}

/* ACK */

int relay_ack_parse(const uint8_t *p, size_t n, uint64_t **ret_ids, size_t *ret_n) {
        uint64_t *ids;
        size_t count;

        if (!args_ok(p, n, ret_ids) || !ret_n)
                return -EINVAL;
        if (n < 2)
                return -EBADMSG;
        count = be16(p);
        if (count < 1 || count > RELAY_ACK_MAX || n != 2 + 8 * count)
                return -EBADMSG;
        ids = calloc(count, sizeof *ids);
        if (!ids)
                return -ENOMEM;
        for (size_t i = 0; i < count; i++)
                ids[i] = be64(p + 2 + 8 * i);
        *ret_ids = ids;
        *ret_n = count;
        return 0;
}

int relay_ack_build(const uint64_t *ids, size_t n, uint8_t **ret, size_t *ret_size) {
        uint8_t *buf;
        size_t size;

        if (!ids || !ret || !ret_size || n < 1 || n > RELAY_ACK_MAX)
                return -EINVAL;
        size = 2 + 8 * n;
        buf = malloc(size);
        if (!buf)
                return -ENOMEM;
        put_be16(buf, (uint16_t) n);
        for (size_t i = 0; i < n; i++)
                put_be64(buf + 2 + 8 * i, ids[i]);
        *ret = buf;
        *ret_size = size;
        return 0;
}

int relay_ack_reply_parse(const uint8_t *p, size_t n, uint16_t *ret_deleted) {
        uint16_t deleted;

        if (!args_ok(p, n, ret_deleted))
                return -EINVAL;
        if (n != RELAY_ACK_REPLY_SIZE)
                return -EBADMSG;
        deleted = be16(p);
        /* One ACK names at most RELAY_ACK_MAX ids, so it cannot delete more. */
        if (deleted > RELAY_ACK_MAX)
                return -EBADMSG;
        *ret_deleted = deleted;
        return 0;
}

void relay_ack_reply_build(uint16_t deleted, uint8_t out[RELAY_ACK_REPLY_SIZE]) {
        put_be16(out, deleted);
}

/* KEYS_PUBLISH */

static bool prekey_ids_distinct(const RelayPrekey *k, size_t n) {
        /* n <= RELAY_OTK_MAX: the quadratic walk is at most 4950 comparisons. */
        for (size_t i = 1; i < n; i++)
                for (size_t j = 0; j < i; j++)
                        if (k[i].id == k[j].id)
                                return false;
        return true;
}

int relay_publish_parse(const uint8_t *p, size_t n, RelayPublish *ret) {
        const uint8_t *q;
        size_t n_otks;

        if (!args_ok(p, n, ret))
                return -EINVAL;
        if (n < RELAY_PUBLISH_HEADER_SIZE)
                return -EBADMSG;
        n_otks = be16(p + RELAY_PUBLISH_HEADER_SIZE - 2);
        if (n_otks > RELAY_OTK_MAX || n != RELAY_PUBLISH_HEADER_SIZE + RELAY_PREKEY_SIZE * n_otks)
                return -EBADMSG;

        /* Ids first: nothing is written to *ret unless the whole payload is good. */
        q = p + RELAY_PUBLISH_HEADER_SIZE;
        for (size_t i = 1; i < n_otks; i++)
                for (size_t j = 0; j < i; j++)
                        if (be32(q + RELAY_PREKEY_SIZE * i) == be32(q + RELAY_PREKEY_SIZE * j))
                                return -EBADMSG;

        q = p;
        memcpy(ret->identity_dh, q, RELAY_DH_KEY_SIZE);
        q += RELAY_DH_KEY_SIZE;
        memcpy(ret->identity_dh_sig, q, RELAY_SIGNATURE_SIZE);
        q += RELAY_SIGNATURE_SIZE;
        ret->spk_id = be32(q);
        q += 4;
        memcpy(ret->spk, q, RELAY_DH_KEY_SIZE);
        q += RELAY_DH_KEY_SIZE;
        memcpy(ret->spk_sig, q, RELAY_SIGNATURE_SIZE);
        q += RELAY_SIGNATURE_SIZE + 2;
        ret->n_otks = n_otks;
        for (size_t i = 0; i < n_otks; i++) {
                ret->otks[i].id = be32(q);
                memcpy(ret->otks[i].key, q + 4, RELAY_DH_KEY_SIZE);
                q += RELAY_PREKEY_SIZE;
        }
        /* Unused slots hold no stale keys from an earlier parse. */
        memset(ret->otks + n_otks, 0, sizeof(ret->otks[0]) * (RELAY_OTK_MAX - n_otks));
        return 0;
}

int relay_publish_build(const RelayPublish *pub, uint8_t **ret, size_t *ret_size) {
        uint8_t *buf, *q;
        size_t size;

        if (!pub || !ret || !ret_size || pub->n_otks > RELAY_OTK_MAX)
                return -EINVAL;
        if (!prekey_ids_distinct(pub->otks, pub->n_otks))
                return -EINVAL;
        size = RELAY_PUBLISH_HEADER_SIZE + RELAY_PREKEY_SIZE * pub->n_otks;
        buf = malloc(size);
        if (!buf)
                return -ENOMEM;
        q = buf;
        memcpy(q, pub->identity_dh, RELAY_DH_KEY_SIZE);
        q += RELAY_DH_KEY_SIZE;
        memcpy(q, pub->identity_dh_sig, RELAY_SIGNATURE_SIZE);
        q += RELAY_SIGNATURE_SIZE;
        put_be32(q, pub->spk_id);
        q += 4;
        memcpy(q, pub->spk, RELAY_DH_KEY_SIZE);
        q += RELAY_DH_KEY_SIZE;
        memcpy(q, pub->spk_sig, RELAY_SIGNATURE_SIZE);
        q += RELAY_SIGNATURE_SIZE;
        put_be16(q, (uint16_t) pub->n_otks);
        q += 2;
        for (size_t i = 0; i < pub->n_otks; i++) {
                put_be32(q, pub->otks[i].id);
                memcpy(q + 4, pub->otks[i].key, RELAY_DH_KEY_SIZE);
                q += RELAY_PREKEY_SIZE;
        }
        *ret = buf;
        *ret_size = size;
        return 0;
}

int relay_publish_reply_parse(const uint8_t *p, size_t n, uint16_t *ret_stored) {
        uint16_t stored;

        if (!args_ok(p, n, ret_stored))
                return -EINVAL;
        if (n != RELAY_PUBLISH_REPLY_SIZE)
                return -EBADMSG;
        stored = be16(p);
        if (stored > RELAY_OTK_MAX)
                return -EBADMSG;
        *ret_stored = stored;
        return 0;
}

void relay_publish_reply_build(uint16_t stored, uint8_t out[RELAY_PUBLISH_REPLY_SIZE]) {
        put_be16(out, stored);
}

/* KEYS_BUNDLE */

int relay_bundle_request_parse(const uint8_t *p, size_t n, uint8_t ret_key[RELAY_KEY_SIZE]) {
        if (!args_ok(p, n, ret_key))
                return -EINVAL;
        if (n != RELAY_KEY_SIZE)
                return -EBADMSG;
        memcpy(ret_key, p, RELAY_KEY_SIZE);
        return 0;
}

int relay_bundle_parse(const uint8_t *p, size_t n, RelayBundle *ret) {
        const uint8_t *q = p;
        uint8_t has_otk;

        if (!args_ok(p, n, ret))
                return -EINVAL;
        if (n != RELAY_BUNDLE_REPLY_MIN && n != RELAY_BUNDLE_REPLY_MAX)
                return -EBADMSG;
        has_otk = p[RELAY_BUNDLE_REPLY_MIN - 1];
        if (has_otk > 1 || n != (has_otk ? RELAY_BUNDLE_REPLY_MAX : RELAY_BUNDLE_REPLY_MIN))
                return -EBADMSG;

        *ret = (RelayBundle) {};
        memcpy(ret->identity_key, q, RELAY_KEY_SIZE);
        q += RELAY_KEY_SIZE;
        memcpy(ret->identity_dh, q, RELAY_DH_KEY_SIZE);
        q += RELAY_DH_KEY_SIZE;
        memcpy(ret->identity_dh_sig, q, RELAY_SIGNATURE_SIZE);
        q += RELAY_SIGNATURE_SIZE;
        ret->spk_id = be32(q);
        q += 4;
        memcpy(ret->spk, q, RELAY_DH_KEY_SIZE);
        q += RELAY_DH_KEY_SIZE;
        memcpy(ret->spk_sig, q, RELAY_SIGNATURE_SIZE);
        q += RELAY_SIGNATURE_SIZE + 1;
        ret->has_otk = has_otk == 1;
        if (ret->has_otk) {
                ret->otk.id = be32(q);
                memcpy(ret->otk.key, q + 4, RELAY_DH_KEY_SIZE);
        }
        return 0;
}

size_t relay_bundle_build(const RelayBundle *b, uint8_t out[RELAY_BUNDLE_REPLY_MAX]) {
        uint8_t *q = out;

        memcpy(q, b->identity_key, RELAY_KEY_SIZE);
        q += RELAY_KEY_SIZE;
        memcpy(q, b->identity_dh, RELAY_DH_KEY_SIZE);
        q += RELAY_DH_KEY_SIZE;
        memcpy(q, b->identity_dh_sig, RELAY_SIGNATURE_SIZE);
        q += RELAY_SIGNATURE_SIZE;
        put_be32(q, b->spk_id);
        q += 4;
        memcpy(q, b->spk, RELAY_DH_KEY_SIZE);
        q += RELAY_DH_KEY_SIZE;
        memcpy(q, b->spk_sig, RELAY_SIGNATURE_SIZE);
        q += RELAY_SIGNATURE_SIZE;
        *q++ = b->has_otk ? 1 : 0;
        if (!b->has_otk)
                return RELAY_BUNDLE_REPLY_MIN;
        put_be32(q, b->otk.id);
        memcpy(q + 4, b->otk.key, RELAY_DH_KEY_SIZE);
        return RELAY_BUNDLE_REPLY_MAX;
}

/* KEYS_COUNT */

int relay_count_request_parse(const uint8_t *p, size_t n) {
        return n == 0 ? 0 : -EBADMSG;
}

int relay_count_reply_parse(const uint8_t *p, size_t n, uint32_t *ret_count) {
        if (!args_ok(p, n, ret_count))
                return -EINVAL;
        if (n != RELAY_COUNT_REPLY_SIZE)
                return -EBADMSG;
        *ret_count = be32(p);
        return 0;
}

void relay_count_reply_build(uint32_t count, uint8_t out[RELAY_COUNT_REPLY_SIZE]) {
        put_be32(out, count);
}
