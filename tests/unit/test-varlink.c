/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "varlink.h"

#define S(lit) (lit), (sizeof(lit) - 1)

static int call_parse_str(const char *s, VarlinkCall *ret) {
        return varlink_call_parse(s, strlen(s), ret);
}

static int reply_parse_str(const char *s, VarlinkReply *ret) {
        return varlink_reply_parse(s, strlen(s), ret);
}

/* ---- names --------------------------------------------------------------- */

static void test_names(void **state) {
        assert_true(varlink_interface_name_is_valid("io.secd.Policy"));
        assert_true(varlink_interface_name_is_valid("org.varlink.service"));
        assert_true(varlink_interface_name_is_valid("a.b"));
        assert_true(varlink_interface_name_is_valid("a-b.c--d.0e"));
        assert_false(varlink_interface_name_is_valid("io"));
        assert_false(varlink_interface_name_is_valid(""));
        assert_false(varlink_interface_name_is_valid(NULL));
        assert_false(varlink_interface_name_is_valid("0io.secd"));
        assert_false(varlink_interface_name_is_valid("io..secd"));
        assert_false(varlink_interface_name_is_valid("io.secd."));
        assert_false(varlink_interface_name_is_valid(".io.secd"));
        assert_false(varlink_interface_name_is_valid("io.-secd"));
        assert_false(varlink_interface_name_is_valid("io.secd-"));
        assert_false(varlink_interface_name_is_valid("io.se_cd"));
        assert_false(varlink_interface_name_is_valid("io.se cd"));

        assert_true(varlink_member_name_is_valid("Add"));
        assert_true(varlink_member_name_is_valid("GetInfo2"));
        assert_false(varlink_member_name_is_valid("add"));
        assert_false(varlink_member_name_is_valid("Get_Info"));
        assert_false(varlink_member_name_is_valid(""));
        assert_false(varlink_member_name_is_valid("A-b"));

        assert_true(varlink_qualified_name_is_valid("io.secd.Policy.Add"));
        assert_true(varlink_qualified_name_is_valid(VARLINK_ERROR_INVALID_PARAMETER));
        assert_false(varlink_qualified_name_is_valid("io.secd.Policy.add"));
        assert_false(varlink_qualified_name_is_valid("Policy.Add"));
        assert_false(varlink_qualified_name_is_valid("io.secd.Policy."));
        assert_false(varlink_qualified_name_is_valid("Add"));
        assert_false(varlink_qualified_name_is_valid(NULL));

        char longname[VARLINK_NAME_MAX + 10];
        memset(longname, 'a', sizeof longname);
        memcpy(longname + sizeof longname - 6, ".Meth", 6); /* includes the NUL */
        assert_false(varlink_qualified_name_is_valid(longname));
}

/* ---- buffer -------------------------------------------------------------- */

static void test_buffer_split_reads(void **state) {
        _cleanup_(varlink_buffer_freep) VarlinkBuffer *b = NULL;
        static const char msg[] = "{\"method\":\"io.secd.Status.Get\"}";
        const char *m;
        size_t size;

        assert_int_equal(varlink_buffer_new(0, &b), 0);
        /* One byte at a time, NUL included. */
        for (size_t i = 0; i < sizeof msg; i++) {
                assert_int_equal(varlink_buffer_next(b, &m, &size), 0);
                assert_int_equal(varlink_buffer_feed(b, msg + i, 1), 0);
        }
        assert_int_equal(varlink_buffer_partial(b), 0);
        assert_true(varlink_buffer_has_message(b));
        assert_int_equal(varlink_buffer_next(b, &m, &size), 1);
        assert_int_equal(size, sizeof msg - 1);
        assert_string_equal(m, msg);
        assert_int_equal(varlink_buffer_next(b, &m, &size), 0);
        assert_false(varlink_buffer_has_message(b));
}

static void test_buffer_many_in_one(void **state) {
        _cleanup_(varlink_buffer_freep) VarlinkBuffer *b = NULL;
        static const char data[] = "{\"a\":1}\0{\"b\":2}\0\0{\"c\":"; /* + implicit NUL? no: size below */
        const char *m;
        size_t size;

        assert_int_equal(varlink_buffer_new(0, &b), 0);
        assert_int_equal(varlink_buffer_feed(b, data, sizeof data - 1), 0);
        assert_int_equal(varlink_buffer_partial(b), strlen("{\"c\":"));

        assert_int_equal(varlink_buffer_next(b, &m, &size), 1);
        assert_string_equal(m, "{\"a\":1}");
        assert_int_equal(varlink_buffer_next(b, &m, &size), 1);
        assert_string_equal(m, "{\"b\":2}");
        /* An empty message is a message; the parser refuses it. */
        assert_int_equal(varlink_buffer_next(b, &m, &size), 1);
        assert_int_equal(size, 0);
        assert_int_equal(varlink_buffer_next(b, &m, &size), 0);

        assert_int_equal(varlink_buffer_feed(b, "3}\0", 3), 0);
        assert_int_equal(varlink_buffer_next(b, &m, NULL), 1);
        assert_string_equal(m, "{\"c\":3}");
        assert_int_equal(varlink_buffer_partial(b), 0);
}

static void test_buffer_oversize(void **state) {
        _cleanup_(varlink_buffer_freep) VarlinkBuffer *b = NULL;
        const char *m;
        char big[64];

        /* 16 bytes, NUL included: 15 characters fit. */
        assert_int_equal(varlink_buffer_new(16, &b), 0);
        memset(big, 'x', sizeof big);

        /* Exactly at the limit. */
        assert_int_equal(varlink_buffer_feed(b, big, 15), 0);
        assert_int_equal(varlink_buffer_feed(b, "", 1), 0);
        assert_int_equal(varlink_buffer_next(b, &m, NULL), 1);
        assert_int_equal(strlen(m), 15);

        /* 16 characters can never take their NUL: refused before they are stored. */
        assert_int_equal(varlink_buffer_feed(b, big, 16), -EMSGSIZE);
        assert_int_equal(varlink_buffer_partial(b), 0);

        /* Growing across feeds. */
        b = varlink_buffer_free(b);
        assert_int_equal(varlink_buffer_new(16, &b), 0);
        assert_int_equal(varlink_buffer_feed(b, big, 10), 0);
        assert_int_equal(varlink_buffer_feed(b, big, 6), -EMSGSIZE);
        assert_int_equal(varlink_buffer_partial(b), 10);

        /* A complete but oversize message in the middle of a read: nothing is stored. */
        b = varlink_buffer_free(b);
        assert_int_equal(varlink_buffer_new(16, &b), 0);
        char data[40] = "{}";
        memset(data + 3, 'y', 20);
        data[23] = '\0';
        assert_int_equal(varlink_buffer_feed(b, data, 24), -EMSGSIZE);
        assert_false(varlink_buffer_has_message(b));

        assert_int_equal(varlink_buffer_new(1, &b), -EINVAL);
        assert_null(varlink_buffer_free(NULL));
}

static void test_buffer_missing_nul_at_eof(void **state) {
        _cleanup_(varlink_buffer_freep) VarlinkBuffer *b = NULL;
        const char *m;

        assert_int_equal(varlink_buffer_new(0, &b), 0);
        assert_int_equal(varlink_buffer_feed(b, S("{\"method\":\"a.b.C\"}")), 0);
        assert_int_equal(varlink_buffer_next(b, &m, NULL), 0);
        /* The peer hangs up here: the caller sees a truncated message. */
        assert_int_equal(varlink_buffer_partial(b), strlen("{\"method\":\"a.b.C\"}"));
}

static void test_buffer_compacts(void **state) {
        _cleanup_(varlink_buffer_freep) VarlinkBuffer *b = NULL;
        const char *m;

        /* Many messages through a small limit: consumed space is reused. */
        assert_int_equal(varlink_buffer_new(32, &b), 0);
        for (unsigned i = 0; i < 10000; i++) {
                char msg[32];
                int n = snprintf(msg, sizeof msg, "{\"i\":%u}", i);

                assert_int_equal(varlink_buffer_feed(b, msg, (size_t) n + 1), 0);
                assert_int_equal(varlink_buffer_next(b, &m, NULL), 1);
                assert_string_equal(m, msg);
        }
}

/* ---- calls --------------------------------------------------------------- */

static void test_call_parse_ok(void **state) {
        _cleanup_(varlink_call_done) VarlinkCall c = {};

        assert_int_equal(call_parse_str(
                "  {\"method\": \"io.secd.Policy.Add\", \"parameters\": {\"uid\": 1000},"
                " \"more\": false, \"oneway\": true, \"upgrade\": false}\n", &c), 0);
        assert_string_equal(c.method, "io.secd.Policy.Add");
        assert_string_equal(c.interface, "io.secd.Policy");
        assert_string_equal(c.member, "Add");
        assert_true(c.oneway);
        assert_false(c.more);
        assert_false(c.upgrade);
        assert_true(json_object_is_type(c.parameters, json_type_object));
        assert_int_equal(json_object_get_int(json_object_object_get(c.parameters, "uid")), 1000);
        varlink_call_done(&c);
        assert_null(c.method);

        /* No parameters, or null: an empty object. */
        assert_int_equal(call_parse_str("{\"method\":\"io.secd.Status.Get\",\"more\":true}", &c), 0);
        assert_true(json_object_is_type(c.parameters, json_type_object));
        assert_int_equal(json_object_object_length(c.parameters), 0);
        assert_true(c.more);
        varlink_call_done(&c);
        assert_int_equal(call_parse_str("{\"method\":\"org.varlink.service.GetInfo\",\"parameters\":null}", &c), 0);
        assert_true(json_object_is_type(c.parameters, json_type_object));
        varlink_call_done(&c);

        /* Non-ASCII UTF-8 and escapes in strings are fine. */
        assert_int_equal(call_parse_str("{\"method\":\"a.b.C\",\"parameters\":{\"s\":\"\xc3\xa9\xe2\x82\xac\\u00e9\\n\"}}", &c), 0);
        assert_string_equal(json_object_get_string(json_object_object_get(c.parameters, "s")),
                            "\xc3\xa9\xe2\x82\xac\xc3\xa9\n");
        varlink_call_done(&c);

        /* Every form of JSON number, literal and nesting; the same key in sibling objects. */
        assert_int_equal(call_parse_str("{\"method\":\"a.b.C\",\"parameters\":{\"n\":[0,-0,12,-12,1.5,"
                                        "0.5e-3,1E+2,-2e5],\"l\":[true,false,null],"
                                        "\"o\":[{\"a\":1},{\"a\":{\"a\":[]}}]}}", &c), 0);
        assert_int_equal(json_object_array_length(json_object_object_get(c.parameters, "n")), 8);
}

static void test_call_parse_malformed(void **state) {
        static const char *const bad[] = {
                "",
                " ",
                "{",
                "{\"method\":\"a.b.C\"",
                "{\"method\":\"a.b.C\",}",            /* trailing comma */
                "{'method':'a.b.C'}",
                "{method:\"a.b.C\"}",
                "[\"a.b.C\"]",
                "\"a.b.C\"",
                "42",
                "null",
                "true",
                "{}",                                 /* no method */
                "{\"parameters\":{}}",
                "{\"method\":42}",
                "{\"method\":null}",
                "{\"method\":\"\"}",
                "{\"method\":\"Get\"}",
                "{\"method\":\"Status.Get\"}",
                "{\"method\":\"io.secd.Status.get\"}",
                "{\"method\":\"io.secd..Get\"}",
                "{\"method\":\"io.secd.Status.Get \"}",
                "{\"method\":\"io.secd.Status.Get\",\"parameters\":[]}",
                "{\"method\":\"io.secd.Status.Get\",\"parameters\":\"x\"}",
                "{\"method\":\"io.secd.Status.Get\",\"parameters\":1}",
                "{\"method\":\"io.secd.Status.Get\",\"more\":1}",
                "{\"method\":\"io.secd.Status.Get\",\"more\":\"true\"}",
                "{\"method\":\"io.secd.Status.Get\",\"oneway\":null}",
                "{\"method\":\"io.secd.Status.Get\",\"upgrade\":0}",
                "{\"method\":\"io.secd.Status.Get\",\"oneway\":true,\"more\":true}",
                "{\"method\":\"io.secd.Status.Get\",\"error\":\"a.b.C\"}",   /* unknown key */
                "{\"method\":\"io.secd.Status.Get\",\"Method\":\"a.b.C\"}",
                "{\"method\":\"io.secd.Status.Get\"}{}",                     /* trailing garbage */
                "{\"method\":\"io.secd.Status.Get\"} x",
                "{\"method\":\"io.secd.Status.Get\"}]",
                "{\"method\":\"io.secd.Status.\\u0047et\"x}",
                /* NUL as an escape, in a value and in a key */
                "{\"method\":\"io.secd.Status.Get\\u0000\"}",
                "{\"method\":\"io.secd.Status.Get\",\"parameters\":{\"a\\u0000b\":1}}",
                "{\"method\":\"io.secd.Status.Get\",\"parameters\":{\"a\":\"x\\u0000\"}}",
                /* raw control character inside a string */
                "{\"method\":\"io.secd.Status.Get\",\"parameters\":{\"a\":\"x\ty\"}}",
                /* invalid UTF-8: lone continuation, overlong, surrogate, truncated, > U+10FFFF */
                "{\"method\":\"io.secd.Status.Get\",\"parameters\":{\"a\":\"\x80\"}}",
                "{\"method\":\"io.secd.Status.Get\",\"parameters\":{\"a\":\"\xc0\xaf\"}}",
                "{\"method\":\"io.secd.Status.Get\",\"parameters\":{\"a\":\"\xed\xa0\x80\"}}",
                "{\"method\":\"io.secd.Status.Get\",\"parameters\":{\"a\":\"\xe2\x82\"}}",
                "{\"method\":\"io.secd.Status.Get\",\"parameters\":{\"a\":\"\xf4\x90\x80\x80\"}}",
                "{\"method\":\"io.secd.Status.Get\",\"parameters\":{\"a\":\"\xff\"}}",
                "{\"method\":\"io.secd.Status.Get\"}\xc3",
                /* bad escapes, unterminated string */
                "{\"method\":\"io.secd.Status.Get\",\"parameters\":{\"a\":\"\\u12\"}}",
                "{\"method\":\"io.secd.Status.Get\",\"parameters\":{\"a\":\"\\",
                "{\"method\":\"io.secd.Status.Get",
                /* literals json-c would take without STRICT */
                "{\"method\":\"io.secd.Status.Get\",\"parameters\":{\"a\":NaN}}",
                "{\"method\":\"io.secd.Status.Get\",\"parameters\":{\"a\":Infinity}}",
                "{\"method\":\"io.secd.Status.Get\",\"parameters\":{\"a\":True}}",
                "{\"method\":\"io.secd.Status.Get\",\"parameters\":{\"a\":01}}",
                "{\"method\":\"io.secd.Status.Get\" /* c */}",
                /* numbers outside JSON's grammar that json-c takes */
                "{\"method\":\"io.secd.Status.Get\",\"parameters\":{\"a\":1.}}",
                "{\"method\":\"io.secd.Status.Get\",\"parameters\":{\"a\":00}}",
                "{\"method\":\"io.secd.Status.Get\",\"parameters\":{\"a\":-01}}",
                "{\"method\":\"io.secd.Status.Get\",\"parameters\":{\"a\":+1}}",
                "{\"method\":\"io.secd.Status.Get\",\"parameters\":{\"a\":.5}}",
                "{\"method\":\"io.secd.Status.Get\",\"parameters\":{\"a\":1e}}",
                "{\"method\":\"io.secd.Status.Get\",\"parameters\":{\"a\":1-2}}",
                "{\"method\":\"io.secd.Status.Get\",\"parameters\":{\"a\":truex}}",
                /* duplicate keys, top level and nested */
                "{\"method\":\"io.secd.Status.Get\",\"method\":\"io.secd.Policy.Add\"}",
                "{\"method\":\"io.secd.Status.Get\",\"parameters\":{\"a\":1,\"a\":2}}",
                "{\"method\":\"io.secd.Status.Get\",\"parameters\":{\"a\":[{\"b\":1,\"b\":1}]}}",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                VarlinkCall c = {};
                int r = call_parse_str(bad[i], &c);

                if (r != -EBADMSG)
                        fail_msg("accepted or wrong error %d for [%zu] %s", r, i, bad[i]);
                assert_null(c.method);
                assert_null(c.parameters);
        }

        /* A raw NUL inside the message (the buffer never yields one, but the parser is standalone). */
        VarlinkCall c = {};
        assert_int_equal(varlink_call_parse(S("{\"method\":\"a.b.C\"}\0"), &c), -EBADMSG);
        assert_int_equal(varlink_call_parse(S("{\"method\":\"a.b\0.C\"}"), &c), -EBADMSG);
        assert_int_equal(varlink_call_parse(NULL, 0, &c), -EBADMSG);
        assert_int_equal(varlink_call_parse(S("{}"), NULL), -EINVAL);
}

static void test_call_deep_nesting(void **state) {
        VarlinkCall c = {};
        size_t depth = 100000, n = 0;
        char *s = malloc(depth * 2 + 128);

        assert_non_null(s);
        n += (size_t) sprintf(s, "{\"method\":\"a.b.C\",\"parameters\":{\"x\":");
        for (size_t i = 0; i < depth; i++)
                s[n++] = '[';
        for (size_t i = 0; i < depth; i++)
                s[n++] = ']';
        s[n++] = '}';
        s[n++] = '}';
        assert_int_equal(varlink_call_parse(s, n, &c), -EBADMSG);

        /* Just inside the limit: the top object and parameters count as two levels. */
        n = (size_t) sprintf(s, "{\"method\":\"a.b.C\",\"parameters\":{\"x\":");
        for (size_t i = 0; i < VARLINK_JSON_DEPTH_MAX - 2; i++)
                s[n++] = '[';
        for (size_t i = 0; i < VARLINK_JSON_DEPTH_MAX - 2; i++)
                s[n++] = ']';
        s[n++] = '}';
        s[n++] = '}';
        assert_int_equal(varlink_call_parse(s, n, &c), 0);
        varlink_call_done(&c);
        free(s);
}

static void test_call_roundtrip(void **state) {
        _cleanup_(varlink_call_done) VarlinkCall c = {};
        _cleanup_free_ char *m = NULL;
        json_object *p = json_object_new_object();
        size_t size;

        json_object_object_add(p, "path", json_object_new_string("/usr/bin/\"quoted\"/\xc3\xa9"));
        json_object_object_add(p, "uid", json_object_new_int64(4294967295LL));
        json_object_object_add(p, "neg", json_object_new_int64(INT64_MIN));

        assert_int_equal(varlink_call_format("io.secd.Policy.Test", p, VARLINK_CALL_MORE, &m, &size), 0);
        assert_int_equal(size, strlen(m) + 1);
        assert_int_equal(m[size - 1], '\0');
        assert_int_equal(varlink_call_parse(m, size - 1, &c), 0);
        assert_string_equal(c.method, "io.secd.Policy.Test");
        assert_true(c.more);
        assert_false(c.oneway);
        assert_true(json_object_equal(c.parameters, p));
        json_object_put(p);

        free(m);
        m = NULL;
        assert_int_equal(varlink_call_format("io.secd.Status.Get", NULL, VARLINK_CALL_ONEWAY, &m, NULL), 0);
        assert_string_equal(m, "{\"method\":\"io.secd.Status.Get\",\"parameters\":{},\"oneway\":true}");

        char *x = NULL;
        json_object *arr = json_object_new_array();
        assert_int_equal(varlink_call_format("io.secd.Status.get", NULL, 0, &x, NULL), -EINVAL);
        assert_int_equal(varlink_call_format("io.secd.Status.Get", arr, 0, &x, NULL), -EINVAL);
        assert_int_equal(varlink_call_format("io.secd.Status.Get", NULL,
                                             VARLINK_CALL_ONEWAY | VARLINK_CALL_MORE, &x, NULL), -EINVAL);
        assert_null(x);
        json_object_put(arr);
}

/* ---- replies ------------------------------------------------------------- */

static void test_reply_parse(void **state) {
        _cleanup_(varlink_reply_done) VarlinkReply r = {};

        assert_int_equal(reply_parse_str("{\"parameters\":{\"version\":\"0.1.0\"}}", &r), 0);
        assert_null(r.error);
        assert_false(r.continues);
        assert_string_equal(json_object_get_string(json_object_object_get(r.parameters, "version")), "0.1.0");
        varlink_reply_done(&r);

        assert_int_equal(reply_parse_str("{\"continues\":true,\"parameters\":{}}", &r), 0);
        assert_true(r.continues);
        varlink_reply_done(&r);

        assert_int_equal(reply_parse_str("{}", &r), 0);
        assert_int_equal(json_object_object_length(r.parameters), 0);
        varlink_reply_done(&r);

        assert_int_equal(reply_parse_str("{\"error\":\"io.secd.Policy.NoSuchRule\",\"parameters\":{\"id\":7}}", &r), 0);
        assert_string_equal(r.error, "io.secd.Policy.NoSuchRule");
        assert_int_equal(json_object_get_int(json_object_object_get(r.parameters, "id")), 7);
        varlink_reply_done(&r);

        static const char *const bad[] = {
                "{\"error\":\"nope\"}",
                "{\"error\":42}",
                "{\"error\":\"a.b.C\",\"continues\":true}",
                "{\"continues\":\"yes\"}",
                "{\"parameters\":[]}",
                "{\"parameters\":{},\"method\":\"a.b.C\"}",
                "{\"parameters\":{}} {}",
                "[]",
                "{\"error\":\"a.b.C\\u0000\"}",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                VarlinkReply x = {};
                if (reply_parse_str(bad[i], &x) != -EBADMSG)
                        fail_msg("accepted [%zu] %s", i, bad[i]);
                assert_null(x.parameters);
        }
}

static void test_reply_roundtrip(void **state) {
        _cleanup_(varlink_reply_done) VarlinkReply r = {};
        _cleanup_free_ char *m = NULL;
        json_object *p = json_object_new_object();
        size_t size;

        json_object_object_add(p, "entries", json_object_new_array());
        assert_int_equal(varlink_reply_format(p, true, &m, &size), 0);
        assert_int_equal(varlink_reply_parse(m, size - 1, &r), 0);
        assert_true(r.continues);
        assert_true(json_object_equal(r.parameters, p));
        varlink_reply_done(&r);
        free(m);

        assert_int_equal(varlink_error_format(VARLINK_ERROR_METHOD_NOT_FOUND, NULL, &m, &size), 0);
        assert_string_equal(m, "{\"error\":\"org.varlink.service.MethodNotFound\",\"parameters\":{}}");
        assert_int_equal(varlink_reply_parse(m, size - 1, &r), 0);
        assert_string_equal(r.error, VARLINK_ERROR_METHOD_NOT_FOUND);
        varlink_reply_done(&r);
        free(m);

        assert_int_equal(varlink_error_invalid_parameter_format("uid", &m, &size), 0);
        assert_string_equal(m, "{\"error\":\"org.varlink.service.InvalidParameter\",\"parameters\":{\"parameter\":\"uid\"}}");
        free(m);
        m = NULL;

        assert_int_equal(varlink_reply_format(NULL, false, &m, NULL), 0);
        assert_string_equal(m, "{\"parameters\":{}}");

        char *x = NULL;
        assert_int_equal(varlink_error_format("NoDots", NULL, &x, NULL), -EINVAL);
        assert_int_equal(varlink_error_format(NULL, NULL, &x, NULL), -EINVAL);
        assert_null(x);
        json_object_put(p);
}

/* ---- parameter extraction ------------------------------------------------ */

static json_object *params(const char *text) {
        VarlinkCall c = {};
        json_object *p;
        char *m;

        assert_int_equal(asprintf(&m, "{\"method\":\"a.b.C\",\"parameters\":%s}", text) > 0, 1);
        if (varlink_call_parse(m, strlen(m), &c) < 0)
                fail_msg("cannot parse %s", text);
        free(m);
        p = json_object_get(c.parameters);
        varlink_call_done(&c);
        return p;
}

static void test_params_extract(void **state) {
        const char *path = NULL, *bad = NULL;
        int64_t limit = -1;
        uint32_t uid = 7;
        bool follow = false;
        double weight = 0;
        json_object *gids = NULL, *fields = NULL, *any = NULL;
        const VarlinkField table[] = {
                { "path", VARLINK_FIELD_STRING, VARLINK_FIELD_REQUIRED, &path },
                { "limit", VARLINK_FIELD_INT, 0, &limit },
                { "uid", VARLINK_FIELD_UINT32, 0, &uid },
                { "follow", VARLINK_FIELD_BOOL, 0, &follow },
                { "weight", VARLINK_FIELD_FLOAT, 0, &weight },
                { "gids", VARLINK_FIELD_ARRAY, 0, &gids },
                { "fields", VARLINK_FIELD_OBJECT, 0, &fields },
                { "any", VARLINK_FIELD_ANY, 0, &any },
                { "ignored", VARLINK_FIELD_STRING, 0, NULL },
                {}
        };
        json_object *p;

        p = params("{\"path\":\"/bin/sh\",\"limit\":-5,\"uid\":4294967295,\"follow\":true,"
                   "\"weight\":2,\"gids\":[1,2],\"fields\":{},\"any\":\"x\",\"ignored\":\"y\"}");
        assert_int_equal(varlink_params_extract(p, table, &bad), 0);
        assert_null(bad);
        assert_string_equal(path, "/bin/sh");
        assert_int_equal(limit, -5);
        assert_int_equal(uid, 4294967295u);
        assert_true(follow);
        assert_true(weight == 2.0);
        assert_int_equal(json_object_array_length(gids), 2);
        assert_non_null(fields);
        assert_string_equal(json_object_get_string(any), "x");
        json_object_put(p);

        /* Optional fields absent or null leave outputs alone. */
        limit = 99;
        uid = 7;
        p = params("{\"path\":\"/bin/sh\",\"limit\":null}");
        assert_int_equal(varlink_params_extract(p, table, &bad), 0);
        assert_int_equal(limit, 99);
        assert_int_equal(uid, 7);
        json_object_put(p);

        /* Limits of int64 are fine. */
        p = params("{\"path\":\"x\",\"limit\":9223372036854775807}");
        assert_int_equal(varlink_params_extract(p, table, NULL), 0);
        assert_true(limit == INT64_MAX);
        json_object_put(p);
        p = params("{\"path\":\"x\",\"limit\":-9223372036854775807}");
        assert_int_equal(varlink_params_extract(p, table, NULL), 0);
        assert_true(limit == INT64_MIN + 1);
        json_object_put(p);

        static const struct {
                const char *json;
                const char *bad;
        } cases[] = {
                { "{}", "path" },
                { "{\"path\":null}", "path" },
                { "{\"path\":1}", "path" },
                { "{\"path\":[\"x\"]}", "path" },
                { "{\"path\":\"x\",\"unknown\":1}", "unknown" },
                { "{\"path\":\"x\",\"limit\":\"5\"}", "limit" },
                { "{\"path\":\"x\",\"limit\":1.0}", "limit" },
                { "{\"path\":\"x\",\"limit\":1e3}", "limit" },
                { "{\"path\":\"x\",\"limit\":true}", "limit" },
                { "{\"path\":\"x\",\"limit\":9223372036854775808}", "limit" },
                { "{\"path\":\"x\",\"limit\":18446744073709551615}", "limit" },
                { "{\"path\":\"x\",\"limit\":-9223372036854775809}", "limit" },
                { "{\"path\":\"x\",\"limit\":-9223372036854775808}", "limit" }, /* json-c's saturation value */
                { "{\"path\":\"x\",\"limit\":-99999999999999999999999}", "limit" },
                { "{\"path\":\"x\",\"limit\":123456789012345678901234567890}", "limit" },
                { "{\"path\":\"x\",\"uid\":-1}", "uid" },
                { "{\"path\":\"x\",\"uid\":4294967296}", "uid" },
                { "{\"path\":\"x\",\"follow\":1}", "follow" },
                { "{\"path\":\"x\",\"follow\":\"true\"}", "follow" },
                { "{\"path\":\"x\",\"weight\":\"1\"}", "weight" },
                { "{\"path\":\"x\",\"gids\":{}}", "gids" },
                { "{\"path\":\"x\",\"fields\":[]}", "fields" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const char *before = path;

                limit = 42;
                bad = NULL;
                p = params(cases[i].json);
                if (varlink_params_extract(p, table, &bad) != -EINVAL)
                        fail_msg("accepted %s", cases[i].json);
                if (!bad || !streq(bad, cases[i].bad))
                        fail_msg("%s: blamed %s, expected %s", cases[i].json, bad ?: "(null)", cases[i].bad);
                /* Nothing written on failure. */
                assert_int_equal(limit, 42);
                assert_ptr_equal(path, before);
                json_object_put(p);
        }

        /* A string with a NUL inside, built directly (the wire parser refuses \u0000). */
        p = json_object_new_object();
        json_object_object_add(p, "path", json_object_new_string_len("a\0b", 3));
        assert_int_equal(varlink_params_extract(p, table, &bad), -EINVAL);
        assert_string_equal(bad, "path");
        json_object_put(p);

        /* Not an object. */
        p = json_object_new_array();
        assert_int_equal(varlink_params_extract(p, table, &bad), -EINVAL);
        json_object_put(p);
}

static void test_huge_numbers(void **state) {
        VarlinkCall c = {};
        char *s;

        /* Parses (json-c keeps it as a double or saturates); extraction refuses it. */
        const char *text = "{\"method\":\"a.b.C\",\"parameters\":{\"n\":"
                           "1234567890123456789012345678901234567890123456789012345678901234567890"
                           "e999999}}";
        int r = call_parse_str(text, &c);
        if (r == 0) {
                int64_t n;
                const char *bad = NULL;
                const VarlinkField t[] = { { "n", VARLINK_FIELD_INT, 0, &n }, {} };
                assert_int_equal(varlink_params_extract(c.parameters, t, &bad), -EINVAL);
                assert_string_equal(bad, "n");
                varlink_call_done(&c);
        } else
                assert_int_equal(r, -EBADMSG);

        /* A very long digit string does not blow anything up. */
        s = malloc(70000);
        assert_non_null(s);
        size_t n = (size_t) sprintf(s, "{\"method\":\"a.b.C\",\"parameters\":{\"n\":");
        memset(s + n, '9', 60000);
        n += 60000;
        memcpy(s + n, "}}", 2);
        n += 2;
        r = varlink_call_parse(s, n, &c);
        if (r == 0) {
                int64_t v;
                const char *bad = NULL;
                const VarlinkField t[] = { { "n", VARLINK_FIELD_INT, 0, &v }, {} };
                assert_int_equal(varlink_params_extract(c.parameters, t, &bad), -EINVAL);
                varlink_call_done(&c);
        } else
                assert_int_equal(r, -EBADMSG);
        free(s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_buffer_split_reads),
                cmocka_unit_test(test_buffer_many_in_one),
                cmocka_unit_test(test_buffer_oversize),
                cmocka_unit_test(test_buffer_missing_nul_at_eof),
                cmocka_unit_test(test_buffer_compacts),
                cmocka_unit_test(test_call_parse_ok),
                cmocka_unit_test(test_call_parse_malformed),
                cmocka_unit_test(test_call_deep_nesting),
                cmocka_unit_test(test_call_roundtrip),
                cmocka_unit_test(test_reply_parse),
                cmocka_unit_test(test_reply_roundtrip),
                cmocka_unit_test(test_params_extract),
                cmocka_unit_test(test_huge_numbers),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
