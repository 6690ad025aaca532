/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "policy-json.h"

#define HASH_A "aa0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define DOC_HEAD "{\"format\":\"secd-policy\",\"version\":1,\"mode\":\"enforce\",\"rules\":["
#define DOC(rules) DOC_HEAD rules "]}"
#define GOOD_RULE "{\"action\":\"allow\",\"uid\":1000}"

static void rules_free(PolicyRule *rules, size_t n) {
        for (size_t i = 0; i < n; i++)
                policy_rule_done(&rules[i]);
        free(rules);
}

/* Import must fail with r and a message starting with the field path. */
static void assert_import_fails_len(const char *text, size_t len, int r, const char *prefix) {
        PolicyRule *rules = (PolicyRule *) 0x1;
        size_t n = 77;
        PolicyMode mode = 77;
        char *error = NULL;

        assert_int_equal(policy_json_import(text, len, &rules, &n, &mode, &error), r);
        /* ret_* untouched on failure. */
        assert_ptr_equal(rules, (PolicyRule *) 0x1);
        assert_int_equal(n, 77);
        assert_int_equal(mode, 77);
        assert_non_null(error);
        if (strncmp(error, prefix, strlen(prefix)) != 0)
                fail_msg("expected an error starting with \"%s\", got \"%s\"", prefix, error);
        free(error);
        /* And the same without a message buffer. */
        assert_int_equal(policy_json_import(text, len, &rules, &n, &mode, NULL), r);
}

static void assert_import_fails(const char *text, int r, const char *prefix) {
        assert_import_fails_len(text, strlen(text), r, prefix);
}

static void import_ok(const char *text, PolicyRule **ret, size_t *ret_n, PolicyMode *ret_mode) {
        char *error = NULL;
        int r = policy_json_import(text, strlen(text), ret, ret_n, ret_mode, &error);

        if (r < 0)
                fail_msg("import failed: %d %s", r, error ?: "(no message)");
        assert_null(error);
}

static void test_rule_json_roundtrip(void **state) {
        PolicyRule r = {
                .id = 12,
                .action = POLICY_ACTION_DENY,
                .selectors = _POLICY_SEL_ALL,
                .uid = 1000, .user = strdup("alice"),
                .gid = 50, .group = strdup("staff"),
                .path = strdup("/usr/bin/app"),
                .endpoint = POLICY_ENDPOINT_ENROLL,
                .cert = strdup("backup-1.example"),
                .comment = strdup("say \"hi\" \\ caf\xc3\xa9\ttab"),
        }, back = {};
        json_object *o = NULL, *v;
        char *error = NULL;

        assert_int_equal(hex_decode_exact(HASH_A, r.sha256, sizeof r.sha256), 0);
        assert_int_equal(policy_rule_to_json(&r, &o), 0);
        assert_true(json_object_object_get_ex(o, "id", &v));
        assert_int_equal(json_object_get_int64(v), 12);
        assert_true(json_object_object_get_ex(o, "sha256", &v));
        assert_string_equal(json_object_get_string(v), HASH_A);
        assert_true(json_object_object_get_ex(o, "endpoint", &v));
        assert_string_equal(json_object_get_string(v), "enroll");
        assert_true(json_object_object_get_ex(o, "cert", &v));
        assert_string_equal(json_object_get_string(v), "backup-1.example");

        /* "id" only where the caller allows it. */
        assert_int_equal(policy_rule_from_json(o, false, NULL, &back, &error), -EINVAL);
        assert_string_equal(error, "id: not accepted here (ids are assigned by secd)");
        free(error);
        error = NULL;
        assert_int_equal(policy_rule_from_json(o, true, "rule", &back, &error), 0);
        assert_null(error);
        assert_true(policy_rule_equal(&r, &back));

        json_object_put(o);
        policy_rule_done(&back);

        /* No id when not stored; a name without its id (unresolved) has no "uid". */
        r.id = 0;
        r.uid = POLICY_ID_UNSET;
        assert_int_equal(policy_rule_to_json(&r, &o), 0);
        assert_false(json_object_object_get_ex(o, "id", NULL));
        assert_false(json_object_object_get_ex(o, "uid", NULL));
        assert_int_equal(policy_rule_from_json(o, false, NULL, &back, NULL), 0);
        assert_true(policy_rule_equal(&r, &back));
        assert_int_equal(back.uid, POLICY_ID_UNSET);
        json_object_put(o);
        policy_rule_done(&back);

        /* An invalid rule does not become JSON. */
        free(r.path);
        r.path = strdup("relative/path");
        assert_int_equal(policy_rule_to_json(&r, &o), -EINVAL);
        policy_rule_done(&r);
}

static void test_document_roundtrip(void **state) {
        PolicyRule in[6] = {
                { .id = 5, .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_UID | POLICY_SEL_SHA256,
                  .uid = 1000, .comment = strdup("app, staged upgrade") },
                { .action = POLICY_ACTION_DENY, .selectors = POLICY_SEL_PATH,
                  .path = strdup("/opt/caf\xc3\xa9/bin/x y"), .comment = strdup("") },
                { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_GID | POLICY_SEL_ENDPOINT,
                  .gid = 27, .group = strdup("sudo"), .endpoint = POLICY_ENDPOINT_CONTROL },
                { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_UID, .uid = POLICY_ID_UNSET,
                  .user = strdup("root"), .comment = strdup("literal \\u0000 and ' and \" and \\ and /") },
                { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_UID, .uid = 0 },
                { .action = POLICY_ACTION_DENY, .selectors = POLICY_SEL_UID, .uid = POLICY_ID_UNSET - 1,
                  .comment = strdup("\xf0\x9f\x94\x92 emoji") },
        };
        PolicyRule *out = NULL;
        size_t n = 0;
        PolicyMode mode = POLICY_MODE_ENFORCE;
        char *text = NULL, *again = NULL;

        assert_int_equal(hex_decode_exact(HASH_A, in[0].sha256, sizeof in[0].sha256), 0);
        assert_int_equal(policy_json_export(in, ELEMENTSOF(in), POLICY_MODE_PERMISSIVE, &text), 0);
        assert_non_null(strstr(text, "\"format\": \"secd-policy\""));
        assert_non_null(strstr(text, "\"id\": 5"));

        import_ok(text, &out, &n, &mode);
        assert_int_equal(n, ELEMENTSOF(in));
        assert_int_equal(mode, POLICY_MODE_PERMISSIVE);
        in[0].id = 0; /* import ignores ids */
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(out[i].id, 0);
                if (!policy_rule_equal(&in[i], &out[i]))
                        fail_msg("rule %zu differs after the round trip", i);
        }

        /* Export of the import is the same text (without the id that import dropped). */
        assert_int_equal(policy_json_export(out, n, mode, &again), 0);
        free(text);
        assert_int_equal(policy_json_export(in, ELEMENTSOF(in), POLICY_MODE_PERMISSIVE, &text), 0);
        assert_string_equal(text, again);

        free(text);
        free(again);
        rules_free(out, n);
        for (size_t i = 0; i < ELEMENTSOF(in); i++)
                policy_rule_done(&in[i]);
}

static void test_empty_document(void **state) {
        PolicyRule *out = NULL;
        size_t n = 1;
        PolicyMode mode;
        char *text = NULL;

        assert_int_equal(policy_json_export(NULL, 0, POLICY_MODE_ENFORCE, &text), 0);
        import_ok(text, &out, &n, &mode);
        assert_int_equal(n, 0);
        assert_int_equal(mode, POLICY_MODE_ENFORCE);
        free(out);
        free(text);

        /* Whitespace around the document is fine. */
        import_ok(" \n\t" DOC("") "\r\n  ", &out, &n, &mode);
        free(out);
}

static void test_import_ignores_ids(void **state) {
        PolicyRule *out = NULL;
        size_t n = 0;

        import_ok(DOC("{\"id\":99,\"action\":\"deny\",\"uid\":1},{\"id\":3,\"action\":\"allow\",\"uid\":2}"),
                  &out, &n, NULL);
        assert_int_equal(n, 2);
        assert_int_equal(out[0].id, 0);
        assert_int_equal(out[1].id, 0);
        assert_int_equal(out[0].action, POLICY_ACTION_DENY);
        assert_int_equal(out[1].uid, 2);
        rules_free(out, n);
}

static void test_import_rejects_rules(void **state) {
        static const struct {
                const char *rules;
                const char *prefix;
        } cases[] = {
                /* uid/gid: strings, fractions, negatives, out of range, other types */
                { "{\"action\":\"allow\",\"uid\":\"1000\"}", "rules[0].uid: expected an integer" },
                { "{\"action\":\"allow\",\"uid\":1.5}", "rules[0].uid: expected an integer" },
                { "{\"action\":\"allow\",\"uid\":1.0}", "rules[0].uid: expected an integer" },
                { "{\"action\":\"allow\",\"uid\":1e3}", "rules[0].uid: expected an integer" },
                { "{\"action\":\"allow\",\"uid\":-1}", "rules[0].uid: expected an integer" },
                { "{\"action\":\"allow\",\"uid\":-0.0}", "rules[0].uid: expected an integer" },
                { "{\"action\":\"allow\",\"uid\":4294967295}", "rules[0].uid: expected an integer" },
                { "{\"action\":\"allow\",\"uid\":4294967296}", "rules[0].uid: expected an integer" },
                { "{\"action\":\"allow\",\"uid\":9223372036854775807}", "rules[0].uid" },
                { "{\"action\":\"allow\",\"uid\":99999999999999999999999999}", "rules[0].uid" },
                { "{\"action\":\"allow\",\"uid\":-99999999999999999999999999}", "rules[0].uid" },
                { "{\"action\":\"allow\",\"uid\":NaN}", "rules[0].uid" },
                { "{\"action\":\"allow\",\"uid\":null}", "rules[0].uid" },
                { "{\"action\":\"allow\",\"uid\":[1000]}", "rules[0].uid" },
                { "{\"action\":\"allow\",\"gid\":true}", "rules[0].gid: expected an integer" },
                { "{\"action\":\"allow\",\"gid\":{}}", "rules[0].gid" },
                /* sha256 */
                { "{\"action\":\"allow\",\"sha256\":\"abc\"}", "rules[0].sha256: expected 64 hexadecimal characters" },
                { "{\"action\":\"allow\",\"sha256\":\"" HASH_A "0\"}", "rules[0].sha256: expected 64 hexadecimal characters" },
                { "{\"action\":\"allow\",\"sha256\":\"" "g" HASH_A "\"}", "rules[0].sha256: expected 64 hexadecimal characters" },
                { "{\"action\":\"allow\",\"sha256\":\"aa01020304050607 8090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\"}",
                  "rules[0].sha256: expected 64 hexadecimal characters" },
                { "{\"action\":\"allow\",\"sha256\":\"\"}", "rules[0].sha256: expected 64 hexadecimal characters" },
                { "{\"action\":\"allow\",\"sha256\":42}", "rules[0].sha256: expected a string" },
                { "{\"action\":\"allow\",\"sha256\":null}", "rules[0].sha256: expected a string" },
                /* names */
                { "{\"action\":\"allow\",\"user\":\"a:b\"}", "rules[0].user: expected a user name" },
                { "{\"action\":\"allow\",\"user\":\"\"}", "rules[0].user: expected a user name" },
                { "{\"action\":\"allow\",\"user\":\"1000\"}", "rules[0].user: expected a user name" },
                { "{\"action\":\"allow\",\"group\":\"-x\"}", "rules[0].group: expected a group name" },
                { "{\"action\":\"allow\",\"user\":1000}", "rules[0].user: expected a string" },
                /* path */
                { "{\"action\":\"allow\",\"path\":\"usr/bin/app\"}", "rules[0].path: expected an absolute" },
                { "{\"action\":\"allow\",\"path\":\"/usr//bin/app\"}", "rules[0].path: expected an absolute" },
                { "{\"action\":\"allow\",\"path\":\"/usr/./bin\"}", "rules[0].path" },
                { "{\"action\":\"allow\",\"path\":\"/usr/../bin\"}", "rules[0].path" },
                { "{\"action\":\"allow\",\"path\":\"/usr/bin/\"}", "rules[0].path" },
                { "{\"action\":\"allow\",\"path\":\"/\"}", "rules[0].path" },
                { "{\"action\":\"allow\",\"path\":\"/usr/bin/a\\nb\"}", "rules[0].path" },
                /* action, endpoint, comment */
                { "{\"action\":\"maybe\",\"uid\":1}", "rules[0].action: expected \"allow\" or \"deny\"" },
                { "{\"action\":\"ALLOW\",\"uid\":1}", "rules[0].action" },
                { "{\"action\":true,\"uid\":1}", "rules[0].action: expected a string" },
                { "{\"uid\":1}", "rules[0].action: missing" },
                { "{\"action\":\"allow\",\"endpoint\":\"ssh\"}", "rules[0].endpoint: expected" },
                /* cert */
                { "{\"action\":\"allow\",\"cert\":\"\"}", "rules[0].cert: expected a certificate name" },
                { "{\"action\":\"allow\",\"cert\":\"a b\"}", "rules[0].cert: expected a certificate name" },
                { "{\"action\":\"allow\",\"cert\":\"secd://remote/x\"}", "rules[0].cert: expected a certificate name" },
                { "{\"action\":\"allow\",\"cert\":\"caf\u00e9\"}", "rules[0].cert: expected a certificate name" },
                { "{\"action\":\"allow\",\"cert\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}", "rules[0].cert" },
                { "{\"action\":\"allow\",\"cert\":7}", "rules[0].cert: expected a string" },
                { "{\"action\":\"allow\",\"cert\":null}", "rules[0].cert" },
                { "{\"action\":\"allow\",\"uid\":1,\"comment\":\"\\u001b[31mred\"}", "rules[0].comment: expected printable" },
                { "{\"action\":\"allow\",\"uid\":1,\"comment\":\"a\\nb\"}", "rules[0].comment" },
                { "{\"action\":\"allow\",\"uid\":1,\"comment\":7}", "rules[0].comment: expected a string" },
                /* selectors */
                { "{\"action\":\"allow\"}", "rules[0]: a rule needs at least one selector" },
                { "{\"action\":\"allow\",\"comment\":\"only a comment\"}", "rules[0]: a rule needs at least one selector" },
                /* unknown fields, ids, shapes */
                { "{\"action\":\"allow\",\"uid\":1,\"pid\":5}", "rules[0].pid: unknown field" },
                { "{\"action\":\"allow\",\"uid\":1,\"Uid\":5}", "rules[0].Uid: unknown field" },
                { "{\"action\":\"allow\",\"uid\":1,\"\":5}", "rules[0].\"\": unknown field" },
                { "{\"action\":\"allow\",\"uid\":1,\"id\":\"7\"}", "rules[0].id: expected a positive integer" },
                { "{\"action\":\"allow\",\"uid\":1,\"id\":-7}", "rules[0].id: expected a positive integer" },
                { "{\"action\":\"allow\",\"uid\":1,\"id\":0}", "rules[0].id: expected a positive integer" },
                { "{\"action\":\"allow\",\"uid\":1,\"id\":18446744073709551615}", "rules[0].id" },
                { "[]", "rules[0]: expected an object" },
                { "\"allow\"", "rules[0]: expected an object" },
                { "null", "rules[0]: expected an object" },
                /* the index is the failing rule's */
                { GOOD_RULE "," GOOD_RULE "," GOOD_RULE ",{\"action\":\"allow\",\"sha256\":\"zz\"}",
                  "rules[3].sha256: expected 64 hexadecimal characters" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char doc[1024];

                assert_true(snprintf(doc, sizeof doc, DOC_HEAD "%s]}", cases[i].rules) < (int) sizeof doc);
                assert_import_fails(doc, -EINVAL, cases[i].prefix);
        }
}

static void test_import_rejects_document(void **state) {
        static const struct {
                const char *doc;
                const char *prefix;
        } cases[] = {
                { "", "document: truncated" },
                { "   \n", "document: truncated" },
                { DOC_HEAD GOOD_RULE, "document: truncated" },
                { "{\"format\":\"secd-pol", "document: truncated" },
                { "null", "document: expected an object" },
                { "[]", "document: expected an object" },
                { "42", "document:" },
                { DOC(GOOD_RULE) " x", "document:" },
                { DOC(GOOD_RULE) DOC(GOOD_RULE), "document:" },
                { DOC(GOOD_RULE ","), "document: invalid JSON" },
                { "{'format':'secd-policy'}", "document: single-quoted strings" },
                { DOC("{\"action\":\"allow\",\"uid\":1,\"comment\":'x'}"), "document: single-quoted strings" },
                { DOC("{\"act\\u0000ion\":\"allow\",\"uid\":1}"), "document: escaped NUL character" },
                { DOC("{\"action\":\"allow\",\"uid\":1,\"comment\":\"a\\u0000b\"}"), "document: escaped NUL" },
                { DOC("{\"action\":\"allow\",\"uid\":1,\"comment\":\"caf\xc3\"}"), "document: invalid JSON" },
                { DOC("{\"action\":\"allow\",\"uid\":1,\"comment\":\"\xff\"}"), "document: invalid JSON" },
                { DOC("{\"action\":\"allow\",\"uid\":1,\"comment\":[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]}"),
                  "document: invalid JSON" },
                /* top-level fields */
                { "{\"format\":\"secd-policy\",\"version\":1,\"mode\":\"enforce\",\"rules\":[],\"x\":1}", "x: unknown field" },
                { "{\"version\":1,\"mode\":\"enforce\",\"rules\":[]}", "format: missing" },
                { "{\"format\":\"other\",\"version\":1,\"mode\":\"enforce\",\"rules\":[]}", "format: expected \"secd-policy\"" },
                { "{\"format\":1,\"version\":1,\"mode\":\"enforce\",\"rules\":[]}", "format: expected" },
                { "{\"format\":\"secd-policy\",\"mode\":\"enforce\",\"rules\":[]}", "version: missing" },
                { "{\"format\":\"secd-policy\",\"version\":2,\"mode\":\"enforce\",\"rules\":[]}", "version: unsupported" },
                { "{\"format\":\"secd-policy\",\"version\":\"1\",\"mode\":\"enforce\",\"rules\":[]}", "version: unsupported" },
                { "{\"format\":\"secd-policy\",\"version\":1.0,\"mode\":\"enforce\",\"rules\":[]}", "version: unsupported" },
                { "{\"format\":\"secd-policy\",\"version\":1,\"rules\":[]}", "mode: missing" },
                { "{\"format\":\"secd-policy\",\"version\":1,\"mode\":\"audit\",\"rules\":[]}", "mode: expected" },
                { "{\"format\":\"secd-policy\",\"version\":1,\"mode\":null,\"rules\":[]}", "mode: expected a string" },
                { "{\"format\":\"secd-policy\",\"version\":1,\"mode\":\"enforce\"}", "rules: missing" },
                { "{\"format\":\"secd-policy\",\"version\":1,\"mode\":\"enforce\",\"rules\":{}}", "rules: expected an array" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                assert_import_fails(cases[i].doc, -EINVAL, cases[i].prefix);

        /* A raw NUL byte inside the input. */
        static const char with_nul[] = DOC("{\"action\":\"allow\",\"uid\":1,\"comment\":\"a\0b\"}");
        assert_import_fails_len(with_nul, sizeof with_nul - 1, -EINVAL, "document: contains a NUL byte at offset");

        /* A literal backslash followed by "u0000" is text, not a NUL. */
        PolicyRule *out = NULL;
        size_t n;
        import_ok(DOC("{\"action\":\"allow\",\"uid\":1,\"comment\":\"C:\\\\u0000\"}"), &out, &n, NULL);
        assert_string_equal(out[0].comment, "C:\\u0000");
        rules_free(out, n);
}

static void test_oversize(void **state) {
        char *doc, *p;
        size_t size;

        /* Strings over their bounds: -EINVAL naming the field. */
        size = 2 * POLICY_PATH_MAX + 256;
        doc = malloc(size);
        assert_non_null(doc);
        p = doc + sprintf(doc, DOC_HEAD "{\"action\":\"allow\",\"path\":\"");
        for (int i = 0; i < POLICY_PATH_MAX / 2; i++)
                p += sprintf(p, "/a");
        strcpy(p, "\"}]}");
        assert_import_fails(doc, -EINVAL, "rules[0].path: longer than 4095 bytes");

        p = doc + sprintf(doc, DOC_HEAD "{\"action\":\"allow\",\"uid\":1,\"comment\":\"");
        memset(p, 'c', POLICY_COMMENT_MAX + 1);
        strcpy(p + POLICY_COMMENT_MAX + 1, "\"}]}");
        assert_import_fails(doc, -EINVAL, "rules[0].comment: longer than 1024 bytes");

        p = doc + sprintf(doc, DOC_HEAD "{\"action\":\"allow\",\"user\":\"");
        memset(p, 'u', POLICY_NAME_MAX + 1);
        strcpy(p + POLICY_NAME_MAX + 1, "\"}]}");
        assert_import_fails(doc, -EINVAL, "rules[0].user: longer than 256 bytes");
        free(doc);

        /* A document over POLICY_JSON_MAX: -E2BIG before any parsing. */
        size = POLICY_JSON_MAX + 1;
        doc = malloc(size);
        assert_non_null(doc);
        memset(doc, ' ', size);
        assert_import_fails_len(doc, size, -E2BIG, "document: larger than 16777216 bytes");
        free(doc);

        /* More than POLICY_RULES_MAX rules: -E2BIG naming "rules". */
        size = strlen(DOC_HEAD) + (size_t) (POLICY_RULES_MAX + 1) * (strlen(GOOD_RULE) + 1) + 8;
        doc = malloc(size);
        assert_non_null(doc);
        p = stpcpy(doc, DOC_HEAD);
        for (int i = 0; i <= POLICY_RULES_MAX; i++) {
                p = stpcpy(p, GOOD_RULE);
                *p++ = i < POLICY_RULES_MAX ? ',' : ']';
        }
        strcpy(p, "}");
        assert_import_fails(doc, -E2BIG, "rules: more than 100000 rules");

        /* Exactly POLICY_RULES_MAX is fine (drop the last rule). */
        p -= strlen(GOOD_RULE) + 2;
        strcpy(p, "]}");
        PolicyRule *out = NULL;
        size_t n = 0;
        import_ok(doc, &out, &n, NULL);
        assert_int_equal(n, POLICY_RULES_MAX);
        rules_free(out, n);
        free(doc);

        /* Export refuses what import would refuse. */
        char *text = NULL;
        PolicyRule r = { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_UID, .uid = 1 };
        assert_int_equal(policy_json_export(&r, POLICY_RULES_MAX + 1, POLICY_MODE_ENFORCE, &text), -E2BIG);
        assert_null(text);
        assert_int_equal(policy_json_export(&r, 1, 7, &text), -EINVAL);
        r.selectors = 0;
        assert_int_equal(policy_json_export(&r, 1, POLICY_MODE_ENFORCE, &text), -EINVAL);
        assert_null(text);
}

static void test_rule_from_json_direct(void **state) {
        json_object *o = json_object_new_object();
        PolicyRule r = {};
        char *error = NULL;

        /* A NUL inside a value (possible when the object comes from another parser). */
        json_object_object_add(o, "action", json_object_new_string("allow"));
        json_object_object_add(o, "uid", json_object_new_int(1));
        json_object_object_add(o, "comment", json_object_new_string_len("a\0b", 3));
        assert_int_equal(policy_rule_from_json(o, false, NULL, &r, &error), -EINVAL);
        assert_string_equal(error, "comment: contains a NUL character");
        free(error);
        error = NULL;
        json_object_object_add(o, "comment", json_object_new_string("ok"));
        json_object_object_add(o, "sha256", json_object_new_string_len(HASH_A "\0", 65));
        assert_int_equal(policy_rule_from_json(o, false, "p", &r, &error), -EINVAL);
        assert_string_equal(error, "p.sha256: expected 64 hexadecimal characters");
        free(error);
        error = NULL;
        json_object_object_del(o, "sha256");
        assert_int_equal(policy_rule_from_json(o, false, "p", &r, &error), 0);
        assert_null(error);
        assert_int_equal(r.uid, 1);
        assert_int_equal(r.gid, POLICY_ID_UNSET);
        assert_string_equal(r.comment, "ok");
        policy_rule_done(&r);
        json_object_put(o);

        /* Not an object, with and without prefix; an unprintable unknown key is quoted safely. */
        o = json_object_new_array();
        assert_int_equal(policy_rule_from_json(o, false, NULL, &r, &error), -EINVAL);
        assert_string_equal(error, "rule: expected an object");
        free(error);
        error = NULL;
        assert_int_equal(policy_rule_from_json(NULL, false, "x", &r, &error), -EINVAL);
        assert_string_equal(error, "x: expected an object");
        free(error);
        error = NULL;
        json_object_put(o);

        o = json_object_new_object();
        json_object_object_add(o, "bad\x1bkey\"", json_object_new_int(1));
        assert_int_equal(policy_rule_from_json(o, false, NULL, &r, &error), -EINVAL);
        assert_string_equal(error, "bad?key?: unknown field");
        free(error);
        json_object_put(o);
}

static void test_resolve_names_json(void **state) {
        PolicyRule *out = NULL;
        size_t n = 0;
        char *error = NULL;

        import_ok(DOC("{\"action\":\"allow\",\"user\":\"root\",\"group\":\"root\"},"
                      "{\"action\":\"allow\",\"user\":\"root\",\"uid\":0}"), &out, &n, NULL);
        assert_int_equal(out[0].uid, POLICY_ID_UNSET); /* import does not resolve */
        assert_int_equal(policy_json_resolve_names(out, n, &error), 0);
        assert_null(error);
        assert_int_equal(out[0].uid, 0);
        assert_int_equal(out[0].gid, 0);
        rules_free(out, n);

        import_ok(DOC(GOOD_RULE ",{\"action\":\"allow\",\"user\":\"nonexistent-user-xyz\"}"), &out, &n, NULL);
        assert_int_equal(policy_json_resolve_names(out, n, &error), -ESRCH);
        assert_string_equal(error, "rules[1].user: unknown user \"nonexistent-user-xyz\"");
        free(error);
        error = NULL;
        rules_free(out, n);

        import_ok(DOC("{\"action\":\"allow\",\"user\":\"root\",\"uid\":5}"), &out, &n, NULL);
        assert_int_equal(policy_json_resolve_names(out, n, &error), -EINVAL);
        assert_string_equal(error, "rules[0].uid: 5 is not the uid of user \"root\"");
        free(error);
        error = NULL;
        rules_free(out, n);

        import_ok(DOC("{\"action\":\"allow\",\"group\":\"nonexistent-group-xyz\"}"), &out, &n, NULL);
        assert_int_equal(policy_json_resolve_names(out, n, &error), -ESRCH);
        assert_string_equal(error, "rules[0].group: unknown group \"nonexistent-group-xyz\"");
        free(error);
        rules_free(out, n);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_rule_json_roundtrip),
                cmocka_unit_test(test_document_roundtrip),
                cmocka_unit_test(test_empty_document),
                cmocka_unit_test(test_import_ignores_ids),
                cmocka_unit_test(test_import_rejects_rules),
                cmocka_unit_test(test_import_rejects_document),
                cmocka_unit_test(test_oversize),
                cmocka_unit_test(test_rule_from_json_direct),
                cmocka_unit_test(test_resolve_names_json),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
