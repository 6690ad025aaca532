/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The Varlink codec as a peer drives it: bytes arrive in arbitrary chunks,
 * through the size-limited buffer, into the call and reply parsers and the
 * parameter extractor. Whatever parses must format and parse back to the
 * same thing.
 */
#include <assert.h>
#include <stdint.h>

#include "varlink.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_call(const char *m, size_t n) {
        VarlinkCall c = {}, again = {};
        VarlinkCallFlags flags = 0;
        char *text = NULL, *err = NULL;
        size_t text_size;
        const char *s = NULL, *bad = NULL;
        int64_t i = 0;
        uint32_t u = 0;
        bool b = false;
        double d = 0;
        json_object *o = NULL, *a = NULL, *any = NULL;
        const VarlinkField fields[] = {
                { "s", VARLINK_FIELD_STRING, VARLINK_FIELD_REQUIRED, &s },
                { "i", VARLINK_FIELD_INT, 0, &i },
                { "u", VARLINK_FIELD_UINT32, 0, &u },
                { "b", VARLINK_FIELD_BOOL, 0, &b },
                { "d", VARLINK_FIELD_FLOAT, 0, &d },
                { "o", VARLINK_FIELD_OBJECT, 0, &o },
                { "a", VARLINK_FIELD_ARRAY, 0, &a },
                { "x", VARLINK_FIELD_ANY, 0, &any },
                {}
        };

        if (varlink_call_parse(m, n, &c) < 0)
                return;

        assert(varlink_qualified_name_is_valid(c.method));
        assert(varlink_interface_name_is_valid(c.interface));
        assert(varlink_member_name_is_valid(c.member));
        assert(json_object_is_type(c.parameters, json_type_object));

        if (varlink_params_extract(c.parameters, fields, &bad) < 0) {
                assert(bad);
                if (varlink_error_invalid_parameter_format(bad, &err, NULL) == 0)
                        free(err);
        } else
                assert(s);

        if (c.oneway)
                flags |= VARLINK_CALL_ONEWAY;
        if (c.more)
                flags |= VARLINK_CALL_MORE;
        if (c.upgrade)
                flags |= VARLINK_CALL_UPGRADE;
        if (varlink_call_format(c.method, c.parameters, flags, &text, &text_size) == 0) {
                assert(text_size == strlen(text) + 1);
                /* Deeper than the limit only by json-c's float re-spelling? Never: same depth. */
                assert(varlink_call_parse(text, text_size - 1, &again) == 0);
                assert(streq(again.method, c.method));
                assert(again.oneway == c.oneway && again.more == c.more && again.upgrade == c.upgrade);
                assert(json_object_equal(again.parameters, c.parameters));
                varlink_call_done(&again);
                free(text);
        }
        varlink_call_done(&c);
}

static void check_reply(const char *m, size_t n) {
        VarlinkReply r = {}, again = {};
        char *text = NULL;
        size_t text_size;
        int k;

        if (varlink_reply_parse(m, n, &r) < 0)
                return;

        assert(json_object_is_type(r.parameters, json_type_object));
        if (r.error)
                k = varlink_error_format(r.error, r.parameters, &text, &text_size);
        else
                k = varlink_reply_format(r.parameters, r.continues, &text, &text_size);
        if (k == 0) {
                assert(varlink_reply_parse(text, text_size - 1, &again) == 0);
                assert(streq_ptr(again.error, r.error));
                assert(again.continues == r.continues);
                assert(json_object_equal(again.parameters, r.parameters));
                varlink_reply_done(&again);
                free(text);
        }
        varlink_reply_done(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        VarlinkBuffer *b = NULL;
        size_t chunk, max;

        if (size < 2)
                return 0;
        /* First byte: read size; second: message limit (small limits hit -EMSGSIZE). */
        chunk = (size_t) data[0] + 1;
        max = data[1] < 8 ? (size_t) data[1] * 512 + 2 : 0;
        data += 2;
        size -= 2;

        if (varlink_buffer_new(max, &b) < 0)
                return 0;

        while (size > 0) {
                size_t n = MIN(chunk, size);
                const char *m;
                size_t msize;

                if (varlink_buffer_feed(b, data, n) < 0)
                        break;
                data += n;
                size -= n;
                while (varlink_buffer_next(b, &m, &msize) > 0) {
                        assert(strlen(m) == msize);
                        check_call(m, msize);
                        check_reply(m, msize);
                }
        }
        varlink_buffer_free(b);
        return 0;
}
