/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The frame codec as a peer drives it: the first byte picks a payload
 * maximum and a chunk size, the rest arrives in chunks. Every frame the
 * reader yields respects the maximum, rebuilds to the same bytes, and an
 * ERROR payload that parses rebuilds to the same payload. CHECK, not
 * CHECK(): release builds define NDEBUG.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                               \
        do {                                                                   \
                if (!(x)) {                                                    \
                        fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #x); \
                        abort();                                               \
                }                                                              \
        } while (0)

static void check_error(const FrameHeader *h, const uint8_t *payload) {
        uint16_t code;
        char *msg = NULL;
        uint8_t *f = NULL;
        size_t fsize;

        if (frame_error_parse(payload, h->length, &code, &msg) < 0)
                return;
        CHECK(strlen(msg) == h->length - 2);
        (void) frame_error_to_string(code);
        CHECK(frame_build_error(h->request_id, code, msg, &f, &fsize) == 0);
        CHECK(fsize == FRAME_HEADER_SIZE + h->length);
        CHECK(memcmp(f + FRAME_HEADER_SIZE, payload, h->length) == 0);
        free(f);
        free(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        FrameReader *r = NULL;
        uint32_t max;
        size_t chunk, off = 1;

        if (size < 1)
                return 0;
        max = (uint32_t) (data[0] & 0x0F) * 64;       /* 0..960: small, so oversize is reachable */
        chunk = (size_t) (data[0] >> 4) + 1;
        if (frame_reader_new(max, &r) < 0)
                return 0;

        while (off < size) {
                size_t n = MIN(chunk, size - off), consumed = 0;
                int k = frame_reader_feed(r, data + off, n, &consumed);

                CHECK(consumed <= n);
                off += consumed;
                if (k < 0) {
                        CHECK(k == -EBADMSG || k == -EPROTONOSUPPORT || k == -EMSGSIZE);
                        break;
                }
                if (k == 1) {
                        FrameHeader h;
                        const uint8_t *payload;
                        uint8_t *f = NULL;
                        size_t fsize;

                        frame_reader_frame(r, &h, &payload);
                        CHECK(h.length <= max);
                        CHECK(frame_build(h.type, h.request_id, payload, h.length, &f, &fsize) == 0);
                        CHECK(fsize == FRAME_HEADER_SIZE + h.length);
                        free(f);
                        if (h.type == FRAME_ERROR)
                                check_error(&h, payload);
                        frame_reader_reset(r);
                } else
                        CHECK(consumed == n);
        }
        (void) frame_reader_partial(r);
        frame_reader_free(r);
        return 0;
}
