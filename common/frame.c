/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "frame.h"

struct FrameReader {
        uint32_t payload_max;
        uint8_t header_buf[FRAME_HEADER_SIZE];
        size_t header_got;
        FrameHeader header;
        bool have_header;
        uint8_t *payload;
        uint32_t payload_got;
        bool ready;
        int error;              /* sticky: the reader is unusable after an error */
};

static uint32_t be32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | (uint32_t) p[3];
}

static void put_be32(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t) (v >> 24);
        p[1] = (uint8_t) (v >> 16);
        p[2] = (uint8_t) (v >> 8);
        p[3] = (uint8_t) v;
}

int frame_header_parse(const uint8_t *buf, size_t len, FrameHeader *ret) {
        if (!buf || !ret || len < FRAME_HEADER_SIZE)
                return -EINVAL;
        if (buf[0] != FRAME_MAGIC_0 || buf[1] != FRAME_MAGIC_1)
                return -EBADMSG;
        if (buf[2] != FRAME_VERSION)
                return -EPROTONOSUPPORT;
        *ret = (FrameHeader) {
                .version = buf[2],
                .type = buf[3],
                .request_id = be32(buf + 4),
                .length = be32(buf + 8),
        };
        return 0;
}

int frame_header_check_length(const FrameHeader *h, uint32_t payload_max) {
        if (payload_max > FRAME_PAYLOAD_MAX_HARD)
                payload_max = FRAME_PAYLOAD_MAX_HARD;
        return h->length > payload_max ? -EMSGSIZE : 0;
}

void frame_header_write(uint8_t out[FRAME_HEADER_SIZE], uint8_t type, uint32_t request_id, uint32_t length) {
        out[0] = FRAME_MAGIC_0;
        out[1] = FRAME_MAGIC_1;
        out[2] = FRAME_VERSION;
        out[3] = type;
        put_be32(out + 4, request_id);
        put_be32(out + 8, length);
}

int frame_reader_new(uint32_t payload_max, FrameReader **ret) {
        FrameReader *r;

        r = calloc(1, sizeof *r);
        if (!r)
                return -ENOMEM;
        r->payload_max = MIN(payload_max, FRAME_PAYLOAD_MAX_HARD);
        *ret = r;
        return 0;
}

FrameReader *frame_reader_free(FrameReader *r) {
        if (!r)
                return NULL;
        free(r->payload);
        free(r);
        return NULL;
}

void frame_reader_reset(FrameReader *r) {
        if (!r || r->error < 0)
                return;
        free(r->payload);
        r->payload = NULL;
        r->payload_got = 0;
        r->header_got = 0;
        r->have_header = false;
        r->ready = false;
        r->header = (FrameHeader) {};
}

int frame_reader_feed(FrameReader *r, const uint8_t *data, size_t len, size_t *ret_consumed) {
        size_t used = 0;
        int k;

        if (!r || (!data && len > 0))
                return -EINVAL;
        if (r->error < 0)
                return r->error;
        if (r->ready) {
                /* The caller must take the frame and reset first. */
                if (ret_consumed)
                        *ret_consumed = 0;
                return 1;
        }

        if (!r->have_header) {
                size_t n = MIN(len, FRAME_HEADER_SIZE - r->header_got);

                memcpy(r->header_buf + r->header_got, data, n);
                r->header_got += n;
                used += n;
                if (r->header_got < FRAME_HEADER_SIZE)
                        goto more;

                k = frame_header_parse(r->header_buf, sizeof r->header_buf, &r->header);
                if (k >= 0)
                        k = frame_header_check_length(&r->header, r->payload_max);
                if (k < 0) {
                        r->error = k;
                        if (ret_consumed)
                                *ret_consumed = used;
                        return k;
                }
                r->have_header = true;
                if (r->header.length > 0) {
                        /* Only now, with the length checked against the maximum. */
                        r->payload = malloc(r->header.length);
                        if (!r->payload) {
                                r->error = -ENOMEM;
                                if (ret_consumed)
                                        *ret_consumed = used;
                                return -ENOMEM;
                        }
                }
        }

        if (r->payload_got < r->header.length) {
                size_t n = MIN(len - used, (size_t) (r->header.length - r->payload_got));

                if (n > 0)
                        memcpy(r->payload + r->payload_got, data + used, n);
                r->payload_got += (uint32_t) n;
                used += n;
        }
        if (r->payload_got == r->header.length) {
                r->ready = true;
                if (ret_consumed)
                        *ret_consumed = used;
                return 1;
        }

more:
        if (ret_consumed)
                *ret_consumed = used;
        return 0;
}

void frame_reader_frame(const FrameReader *r, FrameHeader *ret_header, const uint8_t **ret_payload) {
        if (ret_header)
                *ret_header = r->header;
        if (ret_payload)
                *ret_payload = r->payload;
}

bool frame_reader_partial(const FrameReader *r) {
        return r && !r->ready && (r->header_got > 0 || r->have_header);
}

int frame_build(uint8_t type, uint32_t request_id, const void *payload, uint32_t length, uint8_t **ret,
                size_t *ret_size) {
        uint8_t *buf;
        size_t size;

        if (!ret || !ret_size || (length > 0 && !payload))
                return -EINVAL;
        if (length > FRAME_PAYLOAD_MAX_HARD)
                return -EMSGSIZE;
        size = FRAME_HEADER_SIZE + (size_t) length;
        buf = malloc(size);
        if (!buf)
                return -ENOMEM;
        frame_header_write(buf, type, request_id, length);
        if (length > 0)
                memcpy(buf + FRAME_HEADER_SIZE, payload, length);
        *ret = buf;
        *ret_size = size;
        return 0;
}

/* Length of the longest prefix of s (at most max bytes) that ends at a UTF-8 character boundary. */
static size_t utf8_truncate(const char *s, size_t len, size_t max) {
        size_t n;

        if (len <= max)
                return len;
        n = max;
        /* Step back over continuation bytes so we never cut a character in half. */
        while (n > 0 && ((unsigned char) s[n] & 0xC0) == 0x80)
                n--;
        return n;
}

int frame_build_error(uint32_t request_id, uint16_t code, const char *message, uint8_t **ret, size_t *ret_size) {
        size_t mlen = message ? strlen(message) : 0;
        uint8_t payload[2 + FRAME_ERROR_MESSAGE_MAX];

        mlen = utf8_truncate(message ?: "", mlen, FRAME_ERROR_MESSAGE_MAX);
        payload[0] = (uint8_t) (code >> 8);
        payload[1] = (uint8_t) code;
        if (mlen > 0)
                memcpy(payload + 2, message, mlen);
        return frame_build(FRAME_ERROR, request_id, payload, (uint32_t) (2 + mlen), ret, ret_size);
}

/* Strict UTF-8: no overlongs, no surrogates, nothing above U+10FFFF, no NUL. */
static bool utf8_valid(const uint8_t *s, size_t len) {
        size_t i = 0;

        while (i < len) {
                uint8_t c = s[i];
                uint32_t cp;
                size_t n;

                if (c == 0)
                        return false;
                if (c < 0x80) {
                        i++;
                        continue;
                }
                if ((c & 0xE0) == 0xC0) {
                        n = 1;
                        cp = c & 0x1F;
                } else if ((c & 0xF0) == 0xE0) {
                        n = 2;
                        cp = c & 0x0F;
                } else if ((c & 0xF8) == 0xF0) {
                        n = 3;
                        cp = c & 0x07;
                } else
                        return false;
                if (len - i <= n)
                        return false;
                for (size_t k = 1; k <= n; k++) {
                        if ((s[i + k] & 0xC0) != 0x80)
                                return false;
                        cp = cp << 6 | (s[i + k] & 0x3F);
                }
                if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000))
                        return false;
                if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                        return false;
                i += n + 1;
        }
        return true;
}

int frame_error_parse(const uint8_t *payload, uint32_t length, uint16_t *ret_code, char **ret_message) {
        size_t mlen;
        char *msg;

        if (length < 2 || (!payload))
                return -EBADMSG;
        mlen = length - 2;
        if (mlen > FRAME_ERROR_MESSAGE_MAX)
                return -EBADMSG;
        if (!utf8_valid(payload + 2, mlen))
                return -EBADMSG;
        if (ret_message) {
                msg = malloc(mlen + 1);
                if (!msg)
                        return -ENOMEM;
                if (mlen > 0)
                        memcpy(msg, payload + 2, mlen);
                msg[mlen] = '\0';
                *ret_message = msg;
        }
        if (ret_code)
                *ret_code = (uint16_t) (payload[0] << 8 | payload[1]);
        return 0;
}

const char *frame_error_to_string(uint16_t code) {
        switch (code) {
        case FRAME_ERROR_BAD_FRAME:
                return "BAD_FRAME";
        case FRAME_ERROR_UNKNOWN_TYPE:
                return "UNKNOWN_TYPE";
        case FRAME_ERROR_TOO_LARGE:
                return "TOO_LARGE";
        case FRAME_ERROR_BAD_PAYLOAD:
                return "BAD_PAYLOAD";
        case FRAME_ERROR_NOT_ADMITTED:
                return "NOT_ADMITTED";
        case FRAME_ERROR_CERT_REVOKED:
                return "CERT_REVOKED";
        case FRAME_ERROR_CERT_EXPIRED:
                return "CERT_EXPIRED";
        case FRAME_ERROR_INTERNAL:
                return "INTERNAL";
        case FRAME_ERROR_SHUTTING_DOWN:
                return "SHUTTING_DOWN";
        case FRAME_ERROR_IDLE_TIMEOUT:
                return "IDLE_TIMEOUT";
        case FRAME_ERROR_NOT_REGISTERED:
                return "NOT_REGISTERED";
        case FRAME_ERROR_BAD_SIGNATURE:
                return "BAD_SIGNATURE";
        case FRAME_ERROR_NOT_OWNER:
                return "NOT_OWNER";
        case FRAME_ERROR_MAILBOX_BUSY:
                return "MAILBOX_BUSY";
        case FRAME_ERROR_NO_SUCH_MAILBOX:
                return "NO_SUCH_MAILBOX";
        case FRAME_ERROR_QUOTA_EXCEEDED:
                return "QUOTA_EXCEEDED";
        case FRAME_ERROR_RATE_LIMITED:
                return "RATE_LIMITED";
        case FRAME_ERROR_MESSAGE_TOO_LARGE:
                return "MESSAGE_TOO_LARGE";
        case FRAME_ERROR_NO_KEYS:
                return "NO_KEYS";
        case FRAME_ERROR_BUSY:
                return "BUSY";
        case FRAME_ERROR_ALREADY_REGISTERED:
                return "ALREADY_REGISTERED";
        default:
                return NULL;
        }
}
