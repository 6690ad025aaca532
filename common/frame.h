/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The data protocol's frames (spoken inside mTLS on the data and tcp
 * endpoints). Pure codec: no I/O. docs/protocol.md is the normative text.
 *
 *   bytes 0-1   magic 'S' 'D' (0x53 0x44)
 *   byte  2     version (1)
 *   byte  3     type
 *   bytes 4-7   request id, uint32 big-endian
 *   bytes 8-11  payload length, uint32 big-endian
 *   bytes 12-   payload
 *
 * A reply has its request's type | 0x80 and the same request id. ERROR
 * (0xFF) carries a uint16 big-endian code and a UTF-8 message (the rest of
 * the payload, not NUL-terminated, at most FRAME_ERROR_MESSAGE_MAX bytes).
 */

#include "macro.h"

#define FRAME_MAGIC_0 0x53
#define FRAME_MAGIC_1 0x44
#define FRAME_VERSION 1
#define FRAME_HEADER_SIZE 12
#define FRAME_REPLY_BIT 0x80

#define FRAME_PAYLOAD_MAX_DEFAULT (UINT32_C(1) << 20)   /* 1 MiB */
#define FRAME_PAYLOAD_MAX_HARD (UINT32_C(16) << 20)     /* 16 MiB: no configuration goes above */
#define FRAME_ERROR_MESSAGE_MAX 1024

typedef enum FrameType {
        FRAME_PING = 0x01,
        FRAME_PONG = 0x81,
        /* Relay (payloads: relay-proto.h, docs/protocol.md) */
        FRAME_REGISTER = 0x10,
        FRAME_SEND = 0x11,
        FRAME_FETCH = 0x12,
        FRAME_ACK = 0x13,
        /* Key server */
        FRAME_KEYS_PUBLISH = 0x20,
        FRAME_KEYS_BUNDLE = 0x21,
        FRAME_KEYS_COUNT = 0x22,
        FRAME_ERROR = 0xFF,
} FrameType;

typedef enum FrameError {
        FRAME_ERROR_BAD_FRAME = 1,        /* bad magic or version: the connection is closed */
        FRAME_ERROR_UNKNOWN_TYPE = 2,     /* the connection lives */
        FRAME_ERROR_TOO_LARGE = 3,        /* payload over the maximum: the connection is closed */
        FRAME_ERROR_BAD_PAYLOAD = 4,      /* malformed payload for its type */
        FRAME_ERROR_NOT_ADMITTED = 5,     /* policy or certificate refused: closed */
        FRAME_ERROR_CERT_REVOKED = 6,     /* closed */
        FRAME_ERROR_CERT_EXPIRED = 7,     /* closed */
        FRAME_ERROR_INTERNAL = 8,
        FRAME_ERROR_SHUTTING_DOWN = 9,    /* closed */
        FRAME_ERROR_IDLE_TIMEOUT = 10,    /* closed */
        /* Relay and key server: the connection lives after each of these. */
        FRAME_ERROR_NOT_REGISTERED = 11,  /* FETCH/ACK/KEYS_PUBLISH/KEYS_COUNT before REGISTER */
        FRAME_ERROR_BAD_SIGNATURE = 12,   /* a REGISTER proof or a published key's signature */
        FRAME_ERROR_NOT_OWNER = 13,       /* the mailbox belongs to another certificate identity */
        FRAME_ERROR_MAILBOX_BUSY = 14,    /* another connection is the mailbox's consumer */
        FRAME_ERROR_NO_SUCH_MAILBOX = 15, /* nobody registered that key */
        FRAME_ERROR_QUOTA_EXCEEDED = 16,  /* the recipient's mailbox is full (messages or bytes) */
        FRAME_ERROR_RATE_LIMITED = 17,    /* per-sender/recipient or bundle rate limit: retry later */
        FRAME_ERROR_MESSAGE_TOO_LARGE = 18, /* blob over relay_message_max */
        FRAME_ERROR_NO_KEYS = 19,         /* the mailbox has published no keys */
        FRAME_ERROR_BUSY = 20,            /* too many requests in flight, or a FETCH already waits */
        FRAME_ERROR_ALREADY_REGISTERED = 21, /* this connection registered another mailbox */
} FrameError;

typedef struct FrameHeader {
        uint8_t version;
        uint8_t type;
        uint32_t request_id;
        uint32_t length;
} FrameHeader;

/*
 * Parse a header from at least FRAME_HEADER_SIZE bytes.
 *   0        ok (the payload length is NOT yet checked against a maximum)
 *  -EBADMSG  bad magic
 *  -EPROTONOSUPPORT  unknown version
 * Call frame_header_check_length() before allocating anything for the payload.
 */
int frame_header_parse(const uint8_t *buf, size_t len, FrameHeader *ret);

/* -EMSGSIZE if h->length > payload_max (payload_max is clamped to FRAME_PAYLOAD_MAX_HARD). */
int frame_header_check_length(const FrameHeader *h, uint32_t payload_max);

/* Write a header into out (FRAME_HEADER_SIZE bytes). */
void frame_header_write(uint8_t out[FRAME_HEADER_SIZE], uint8_t type, uint32_t request_id, uint32_t length);

/*
 * Incremental reader: feed bytes as they arrive; it yields whole frames.
 * The payload buffer is allocated only after the header passed the length
 * check, so a peer cannot make it allocate more than payload_max.
 */
typedef struct FrameReader FrameReader;

int frame_reader_new(uint32_t payload_max, FrameReader **ret);
FrameReader *frame_reader_free(FrameReader *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(FrameReader *, frame_reader_free);

/*
 * Consume up to len bytes from data; *ret_consumed says how many were used.
 * Returns 1 when a whole frame is ready (read it with frame_reader_frame(),
 * then call frame_reader_reset() before feeding more), 0 when more bytes are
 * needed, or a negative error from frame_header_parse()/check_length()
 * (after which the reader is unusable and the connection should be closed).
 */
int frame_reader_feed(FrameReader *r, const uint8_t *data, size_t len, size_t *ret_consumed);
void frame_reader_frame(const FrameReader *r, FrameHeader *ret_header, const uint8_t **ret_payload);
void frame_reader_reset(FrameReader *r);
/* True if a frame has been started but not completed (truncated at EOF). */
bool frame_reader_partial(const FrameReader *r);

/* A whole frame (header + payload) in a new buffer. */
int frame_build(uint8_t type, uint32_t request_id, const void *payload, uint32_t length,
                uint8_t **ret, size_t *ret_size);

/* An ERROR frame; the message is truncated to FRAME_ERROR_MESSAGE_MAX bytes at a UTF-8 boundary. */
int frame_build_error(uint32_t request_id, uint16_t code, const char *message, uint8_t **ret,
                      size_t *ret_size);

/* Parse an ERROR payload; *ret_message is malloc'd and NUL-terminated. -EBADMSG if malformed. */
int frame_error_parse(const uint8_t *payload, uint32_t length, uint16_t *ret_code, char **ret_message);

const char *frame_error_to_string(uint16_t code) _const_;
