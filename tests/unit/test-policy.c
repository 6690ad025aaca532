/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <time.h>

#include "policy.h"

static const uint8_t hash_a[SHA256_DIGEST_LEN] = { 0xaa, 1, 2, 3 };
static const uint8_t hash_b[SHA256_DIGEST_LEN] = { 0xbb, 1, 2, 3 };

/* Rule builders: every string is malloc'd so the snapshot can own it. */
static PolicyRule rule_uid(PolicyAction action, int64_t id, uint32_t uid) {
        return (PolicyRule) { .id = id, .action = action, .selectors = POLICY_SEL_UID, .uid = uid };
}

static PolicyRule rule_gid(PolicyAction action, int64_t id, uint32_t gid) {
        return (PolicyRule) { .id = id, .action = action, .selectors = POLICY_SEL_GID, .gid = gid };
}

static PolicyRule rule_path(PolicyAction action, int64_t id, const char *path) {
        PolicyRule r = { .id = id, .action = action, .selectors = POLICY_SEL_PATH, .path = strdup(path) };

        assert_non_null(r.path);
        return r;
}

static PolicyRule rule_sha(PolicyAction action, int64_t id, const uint8_t h[SHA256_DIGEST_LEN]) {
        PolicyRule r = { .id = id, .action = action, .selectors = POLICY_SEL_SHA256 };

        memcpy(r.sha256, h, SHA256_DIGEST_LEN);
        return r;
}

static PolicyRule rule_endpoint(PolicyAction action, int64_t id, PolicyEndpoint e) {
        return (PolicyRule) { .id = id, .action = action, .selectors = POLICY_SEL_ENDPOINT, .endpoint = e };
}

/* Snapshot from a list of rules (copied into a malloc'd array the snapshot takes). */
static PolicySnapshot *snapshot_of(const PolicyRule *rules, size_t n, uint64_t gen, PolicyMode mode) {
        PolicyRule *array = calloc(MAX(n, (size_t) 1), sizeof(PolicyRule));
        PolicySnapshot *s = NULL;

        assert_non_null(array);
        memcpy(array, rules, n * sizeof(PolicyRule));
        assert_int_equal(policy_snapshot_new(array, n, gen, mode, &s), 0);
        assert_non_null(s);
        return s;
}

static PolicyQuery query_default(void) {
        return (PolicyQuery) {
                .uid = 1000,
                .gid = 1000,
                .exe_path = "/usr/bin/app",
                .exe_sha256 = hash_a,
                .endpoint = POLICY_ENDPOINT_DATA,
        };
}

static void test_string_tables(void **state) {
        for (PolicyAction a = 0; a < _POLICY_ACTION_MAX; a++)
                assert_int_equal(policy_action_from_string(policy_action_to_string(a)), a);
        for (PolicyEndpoint e = 0; e < _POLICY_ENDPOINT_MAX; e++)
                assert_int_equal(policy_endpoint_from_string(policy_endpoint_to_string(e)), e);
        for (PolicyMode m = 0; m < _POLICY_MODE_MAX; m++)
                assert_int_equal(policy_mode_from_string(policy_mode_to_string(m)), m);
        assert_string_equal(policy_endpoint_to_string(POLICY_ENDPOINT_CONTROL), "control");
        assert_int_equal(policy_action_from_string("Allow"), _POLICY_ACTION_INVALID);
        assert_int_equal(policy_action_from_string(NULL), _POLICY_ACTION_INVALID);
        assert_int_equal(policy_endpoint_from_string("ctl"), _POLICY_ENDPOINT_INVALID);
        assert_int_equal(policy_mode_from_string(""), _POLICY_MODE_INVALID);
        assert_null(policy_action_to_string(_POLICY_ACTION_MAX));
        assert_null(policy_endpoint_to_string(-1));
        assert_string_equal(policy_reason_to_string(POLICY_REASON_NO_MATCH), "no-match");
}

static void assert_invalid_field(const PolicyRule *r, const char *expected) {
        const char *field = NULL;

        assert_int_equal(policy_rule_validate(r, &field), -EINVAL);
        assert_non_null(field);
        assert_string_equal(field, expected);
}

static void test_validate_accepts(void **state) {
        PolicyRule r = {
                .action = POLICY_ACTION_ALLOW,
                .selectors = _POLICY_SEL_ALL,
                .uid = 1000, .user = (char *) "alice.b-1@example_",
                .gid = 50, .group = (char *) "machine$",
                .path = (char *) "/usr/lib/app/bin.d/a..b/.hidden",
                .endpoint = POLICY_ENDPOINT_CONTROL,
                .cert = (char *) "Backup_1.example-host",
                .comment = (char *) "caf\xc3\xa9\tstaged upgrade",
        };
        const char *field = "untouched";

        assert_int_equal(policy_rule_validate(&r, &field), 0);
        assert_string_equal(field, "untouched"); /* ret_* written only on failure */

        /* A name without its id yet is a valid (unresolved) rule. */
        PolicyRule named = { .action = POLICY_ACTION_DENY, .selectors = POLICY_SEL_UID,
                             .uid = POLICY_ID_UNSET, .user = (char *) "root" };
        assert_int_equal(policy_rule_validate(&named, NULL), 0);
        assert_false(policy_rule_is_resolved(&named));

        /* An empty comment is fine; the longest path and comment are fine. */
        char path[POLICY_PATH_MAX], comment[POLICY_COMMENT_MAX + 1];
        memset(path, 'a', sizeof path - 1);
        path[0] = '/';
        path[sizeof path - 1] = '\0';
        memset(comment, 'c', sizeof comment - 1);
        comment[sizeof comment - 1] = '\0';
        PolicyRule big = { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_PATH, .path = path, .comment = comment };
        assert_int_equal(policy_rule_validate(&big, NULL), 0);
        big.comment = (char *) "";
        assert_int_equal(policy_rule_validate(&big, NULL), 0);
}

static void test_validate_rejects(void **state) {
        const PolicyRule good = { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_UID, .uid = 1000 };
        PolicyRule r;
        char long_name[POLICY_NAME_MAX + 2], long_path[POLICY_PATH_MAX + 1], long_comment[POLICY_COMMENT_MAX + 2];

        assert_int_equal(policy_rule_validate(NULL, NULL), -EINVAL);

        r = good, r.action = 7;
        assert_invalid_field(&r, "action");
        r = good, r.action = -1;
        assert_invalid_field(&r, "action");
        r = good, r.id = -5;
        assert_invalid_field(&r, "id");
        r = good, r.selectors = 0;
        assert_invalid_field(&r, "selectors");
        r = good, r.selectors |= 1u << 9;
        assert_invalid_field(&r, "selectors");

        /* Names. */
        memset(long_name, 'a', sizeof long_name - 1);
        long_name[sizeof long_name - 1] = '\0';
        const char *bad_names[] = { "", "-rf", ".", "..", "1234", "a b", "a:b", "a/b", "a\nb", "$", "a$b",
                                    "\xc3\xa9t\xc3\xa9", long_name };
        for (size_t i = 0; i < ELEMENTSOF(bad_names); i++) {
                r = good, r.user = (char *) bad_names[i];
                assert_invalid_field(&r, "user");
                r = (PolicyRule) { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_GID,
                                   .group = (char *) bad_names[i] };
                assert_invalid_field(&r, "group");
        }
        long_name[POLICY_NAME_MAX] = '\0'; /* exactly POLICY_NAME_MAX: fine */
        r = good, r.user = long_name;
        assert_int_equal(policy_rule_validate(&r, NULL), 0);

        /* A name without its selector bit, a selector with neither name nor id. */
        r = good, r.group = (char *) "staff";
        assert_invalid_field(&r, "group");
        r = (PolicyRule) { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_GID, .user = (char *) "alice", .gid = 5 };
        assert_invalid_field(&r, "user");
        r = good, r.uid = POLICY_ID_UNSET;
        assert_invalid_field(&r, "uid");
        r = (PolicyRule) { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_GID, .gid = POLICY_ID_UNSET };
        assert_invalid_field(&r, "gid");

        /* Paths. */
        memset(long_path, 'p', sizeof long_path - 1);
        long_path[0] = '/';
        long_path[sizeof long_path - 1] = '\0'; /* POLICY_PATH_MAX bytes: one too many */
        const char *bad_paths[] = { "usr/bin/app", "", "/", "//usr/bin", "/usr//bin/app", "/usr/./bin",
                                    "/usr/../bin", "/usr/bin/", "/usr/bin/.", "/usr/bin/..", "/./x", "/../x",
                                    "/usr/bin/a\001", "/usr/bin/\xff", "/usr/bin/\x7f", long_path };
        for (size_t i = 0; i < ELEMENTSOF(bad_paths); i++) {
                r = (PolicyRule) { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_PATH,
                                   .path = (char *) bad_paths[i] };
                assert_invalid_field(&r, "path");
        }
        r = (PolicyRule) { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_PATH };
        assert_invalid_field(&r, "path");
        r = good, r.path = (char *) "/usr/bin/app"; /* path without its selector bit */
        assert_invalid_field(&r, "path");

        /* Endpoint. */
        r = (PolicyRule) { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_ENDPOINT, .endpoint = 99 };
        assert_invalid_field(&r, "endpoint");
        r.endpoint = -1;
        assert_invalid_field(&r, "endpoint");

        /* Certificate names. */
        char long_cert[POLICY_CERT_NAME_MAX + 2];
        memset(long_cert, 'n', sizeof long_cert - 1);
        long_cert[sizeof long_cert - 1] = '\0'; /* 65 bytes: one too many */
        const char *bad_certs[] = { "", "a b", "a/b", "secd://remote/x", "a:b", "a@b", "caf\xc3\xa9", "a\nb",
                                    long_cert };
        for (size_t i = 0; i < ELEMENTSOF(bad_certs); i++) {
                r = (PolicyRule) { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_CERT,
                                   .cert = (char *) bad_certs[i] };
                assert_invalid_field(&r, "cert");
                assert_false(policy_cert_name_is_valid(bad_certs[i]));
        }
        assert_false(policy_cert_name_is_valid(NULL));
        long_cert[POLICY_CERT_NAME_MAX] = '\0'; /* exactly 64: fine */
        assert_true(policy_cert_name_is_valid(long_cert));
        assert_true(policy_cert_name_is_valid("-"));
        assert_true(policy_cert_name_is_valid("..")); /* a name, never a path */
        r = (PolicyRule) { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_CERT };
        assert_invalid_field(&r, "cert");
        r = good, r.cert = (char *) "host-1"; /* cert without its selector bit */
        assert_invalid_field(&r, "cert");

        /* Comments. */
        memset(long_comment, 'c', sizeof long_comment - 1);
        long_comment[sizeof long_comment - 1] = '\0';
        const char *bad_comments[] = { "line\nbreak", "esc\x1b[31m", "\xc3", "\xed\xa0\x80" /* surrogate */,
                                       "\xc0\xaf" /* overlong */, long_comment };
        for (size_t i = 0; i < ELEMENTSOF(bad_comments); i++) {
                r = good, r.comment = (char *) bad_comments[i];
                assert_invalid_field(&r, "comment");
        }
}

static void test_copy_equal(void **state) {
        PolicyRule a = rule_path(POLICY_ACTION_ALLOW, 3, "/usr/bin/app"), b = {}, c = {};

        a.selectors |= POLICY_SEL_UID | POLICY_SEL_SHA256;
        a.uid = 7;
        a.user = strdup("alice");
        a.comment = strdup("hello");
        memcpy(a.sha256, hash_a, sizeof hash_a);
        assert_int_equal(policy_rule_copy(&a, &b), 0);
        assert_true(policy_rule_equal(&a, &b));
        assert_ptr_not_equal(a.path, b.path);
        assert_ptr_not_equal(a.user, b.user);

        assert_int_equal(policy_rule_copy(&a, &c), 0);
        c.sha256[31] ^= 1;
        assert_false(policy_rule_equal(&a, &c));
        c.sha256[31] ^= 1;
        free(c.comment);
        c.comment = NULL;
        assert_false(policy_rule_equal(&a, &c));
        /* Fields of selectors that are not set do not count. */
        c.comment = strdup("hello");
        c.gid = 12345;
        assert_true(policy_rule_equal(&a, &c));
        /* The cert selector is copied and compared. */
        a.selectors |= POLICY_SEL_CERT;
        a.cert = strdup("host-1");
        assert_false(policy_rule_equal(&a, &c));
        policy_rule_done(&c);
        assert_int_equal(policy_rule_copy(&a, &c), 0);
        assert_ptr_not_equal(a.cert, c.cert);
        assert_true(policy_rule_equal(&a, &c));
        free(c.cert);
        c.cert = strdup("host-2");
        assert_false(policy_rule_equal(&a, &c));

        policy_rule_done(&a);
        policy_rule_done(&b);
        policy_rule_done(&c);
        assert_null(a.path);
        assert_int_equal(a.selectors, 0);
        policy_rule_done(NULL);
}

static void test_resolve_names(void **state) {
        const char *field = NULL;
        PolicyRule r = { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_UID | POLICY_SEL_GID,
                         .uid = POLICY_ID_UNSET, .user = (char *) "root",
                         .gid = POLICY_ID_UNSET, .group = (char *) "root" };

        assert_int_equal(policy_rule_resolve_names(&r, &field), 0);
        assert_int_equal(r.uid, 0);
        assert_int_equal(r.gid, 0);
        assert_true(policy_rule_is_resolved(&r));
        /* Agreeing name and id: fine, and idempotent. */
        assert_int_equal(policy_rule_resolve_names(&r, &field), 0);

        /* Unknown user: -ESRCH naming "user", rule unchanged. */
        r = (PolicyRule) { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_UID | POLICY_SEL_GID,
                           .uid = POLICY_ID_UNSET, .user = (char *) "nonexistent-user-xyz",
                           .gid = POLICY_ID_UNSET, .group = (char *) "root" };
        assert_int_equal(policy_rule_resolve_names(&r, &field), -ESRCH);
        assert_string_equal(field, "user");
        assert_int_equal(r.uid, POLICY_ID_UNSET);
        assert_int_equal(r.gid, POLICY_ID_UNSET);

        /* Unknown group, after a good user: nothing written either. */
        field = NULL;
        r = (PolicyRule) { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_UID | POLICY_SEL_GID,
                           .uid = POLICY_ID_UNSET, .user = (char *) "root",
                           .gid = POLICY_ID_UNSET, .group = (char *) "nonexistent-group-xyz" };
        assert_int_equal(policy_rule_resolve_names(&r, &field), -ESRCH);
        assert_string_equal(field, "group");
        assert_int_equal(r.uid, POLICY_ID_UNSET);

        /* Name and id that disagree. */
        r = (PolicyRule) { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_UID, .uid = 5, .user = (char *) "root" };
        assert_int_equal(policy_rule_resolve_names(&r, &field), -EINVAL);
        assert_string_equal(field, "uid");
        assert_int_equal(r.uid, 5);
        r = (PolicyRule) { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_GID, .gid = 5, .group = (char *) "root" };
        assert_int_equal(policy_rule_resolve_names(&r, &field), -EINVAL);
        assert_string_equal(field, "gid");

        /* Only ids: nothing looked up, nothing filled in. */
        r = (PolicyRule) { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_UID | POLICY_SEL_GID, .uid = 0, .gid = 0 };
        assert_int_equal(policy_rule_resolve_names(&r, &field), 0);
        assert_null(r.user);
        assert_null(r.group);
        assert_int_equal(r.uid, 0);

        /* A name that cannot be a name is not handed to NSS. */
        r = (PolicyRule) { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_UID, .uid = POLICY_ID_UNSET,
                           .user = (char *) "root:x" };
        assert_int_equal(policy_rule_resolve_names(&r, &field), -EINVAL);
        assert_string_equal(field, "user");
}

static void test_snapshot_basics(void **state) {
        PolicyRule rules[] = {
                rule_uid(POLICY_ACTION_ALLOW, 9, 1000),
                rule_path(POLICY_ACTION_DENY, 20, "/usr/bin/evil"),
                rule_uid(POLICY_ACTION_ALLOW, 2, 1001),
                rule_sha(POLICY_ACTION_DENY, 4, hash_b),
        };
        PolicySnapshot *s = snapshot_of(rules, ELEMENTSOF(rules), 42, POLICY_MODE_PERMISSIVE);

        assert_int_equal(policy_snapshot_generation(s), 42);
        assert_int_equal(policy_snapshot_mode(s), POLICY_MODE_PERMISSIVE);
        assert_int_equal(policy_snapshot_n_rules(s), 4);
        /* Evaluation order: deny rules by id, then allow rules by id. */
        assert_int_equal(policy_snapshot_rule(s, 0)->id, 4);
        assert_int_equal(policy_snapshot_rule(s, 1)->id, 20);
        assert_int_equal(policy_snapshot_rule(s, 2)->id, 2);
        assert_int_equal(policy_snapshot_rule(s, 3)->id, 9);
        assert_string_equal(policy_snapshot_rule(s, 1)->path, "/usr/bin/evil");
        assert_null(policy_snapshot_rule(s, 4));

        assert_ptr_equal(policy_snapshot_ref(s), s);
        assert_null(policy_snapshot_unref(s));
        assert_int_equal(policy_snapshot_n_rules(s), 4); /* still held once */
        assert_null(policy_snapshot_unref(s));
        assert_null(policy_snapshot_unref(NULL));
        assert_null(policy_snapshot_ref(NULL));

        /* An empty snapshot (NULL array) is fine. */
        _cleanup_(policy_snapshot_unrefp) PolicySnapshot *empty = NULL;
        assert_int_equal(policy_snapshot_new(NULL, 0, 1, POLICY_MODE_ENFORCE, &empty), 0);
        assert_int_equal(policy_snapshot_n_rules(empty), 0);
}

/* Whether a query needs the client's supplementary groups: only if some rule selects by gid. */
static void test_snapshot_uses_gids(void **state) {
        PolicyRule rules[] = {
                rule_sha(POLICY_ACTION_ALLOW, 1, hash_a),
                rule_endpoint(POLICY_ACTION_DENY, 2, POLICY_ENDPOINT_TCP),
                { .id = 3, .action = POLICY_ACTION_DENY, .selectors = POLICY_SEL_GID | POLICY_SEL_ENDPOINT,
                  .gid = 4243, .endpoint = POLICY_ENDPOINT_DATA },
        };
        PolicySnapshot *without = snapshot_of(rules, 2, 1, POLICY_MODE_ENFORCE);
        PolicySnapshot *with = snapshot_of(rules, 3, 2, POLICY_MODE_ENFORCE);

        assert_false(policy_snapshot_uses_gids(without));
        assert_true(policy_snapshot_uses_gids(with));
        assert_true(policy_snapshot_uses_gids(NULL));
        policy_snapshot_unref(without);
        policy_snapshot_unref(with);
}

static void test_snapshot_rejects(void **state) {
        PolicySnapshot *s = NULL;
        PolicyRule *array = calloc(2, sizeof(PolicyRule));

        assert_non_null(array);
        array[0] = rule_path(POLICY_ACTION_ALLOW, 1, "/usr/bin/app");
        array[1] = (PolicyRule) { .action = POLICY_ACTION_ALLOW, .selectors = POLICY_SEL_UID,
                                  .uid = POLICY_ID_UNSET, .user = strdup("root") };

        /* Unresolved rule: refused, and the caller still owns everything. */
        assert_int_equal(policy_snapshot_new(array, 2, 1, POLICY_MODE_ENFORCE, &s), -EINVAL);
        assert_null(s);
        /* Invalid mode. */
        array[1].uid = 0;
        assert_int_equal(policy_snapshot_new(array, 2, 1, 5, &s), -EINVAL);
        assert_null(s);
        /* Invalid rule. */
        array[1].selectors = 0;
        assert_int_equal(policy_snapshot_new(array, 2, 1, POLICY_MODE_ENFORCE, &s), -EINVAL);
        assert_int_equal(policy_snapshot_new(NULL, 1, 1, POLICY_MODE_ENFORCE, &s), -EINVAL);
        assert_null(s);

        policy_rule_done(&array[0]);
        policy_rule_done(&array[1]);
        free(array);
}

static void test_default_deny(void **state) {
        PolicyQuery q = query_default();
        PolicyVerdict v;
        _cleanup_(policy_snapshot_unrefp) PolicySnapshot *empty = NULL, *other = NULL;

        assert_int_equal(policy_snapshot_new(NULL, 0, 3, POLICY_MODE_ENFORCE, &empty), 0);
        policy_evaluate(empty, &q, &v);
        assert_false(v.allow);
        assert_false(v.admit);
        assert_int_equal(v.reason, POLICY_REASON_NO_MATCH);
        assert_null(v.rule);
        assert_int_equal(v.generation, 3);

        PolicyRule rules[] = { rule_uid(POLICY_ACTION_ALLOW, 1, 1001), rule_sha(POLICY_ACTION_ALLOW, 2, hash_b) };
        other = snapshot_of(rules, ELEMENTSOF(rules), 4, POLICY_MODE_ENFORCE);
        policy_evaluate(other, &q, &v);
        assert_false(v.allow);
        assert_false(v.admit);
        assert_int_equal(v.reason, POLICY_REASON_NO_MATCH);
        assert_int_equal(v.generation, 4);
}

static void test_deny_wins(void **state) {
        PolicyQuery q = query_default();
        PolicyVerdict v;

        /* Whatever the order and whatever the ids, a matching deny wins. */
        for (int order = 0; order < 2; order++) {
                PolicyRule allow = rule_uid(POLICY_ACTION_ALLOW, 1, 1000);
                PolicyRule deny = rule_sha(POLICY_ACTION_DENY, 100, hash_a);
                PolicyRule rules[2] = { order ? deny : allow, order ? allow : deny };
                _cleanup_(policy_snapshot_unrefp) PolicySnapshot *s = snapshot_of(rules, 2, 1, POLICY_MODE_ENFORCE);

                policy_evaluate(s, &q, &v);
                assert_false(v.allow);
                assert_false(v.admit);
                assert_int_equal(v.reason, POLICY_REASON_DENY_RULE);
                assert_non_null(v.rule);
                assert_int_equal(v.rule->id, 100);
                assert_int_equal(v.rule->action, POLICY_ACTION_DENY);

                /* A different binary escapes the deny and is allowed by uid. */
                q.exe_sha256 = hash_b;
                policy_evaluate(s, &q, &v);
                assert_true(v.allow);
                assert_true(v.admit);
                assert_int_equal(v.reason, POLICY_REASON_ALLOW_RULE);
                assert_int_equal(v.rule->id, 1);
                q.exe_sha256 = hash_a;
        }
}

static void test_and_semantics(void **state) {
        PolicyRule r = rule_sha(POLICY_ACTION_ALLOW, 1, hash_a);
        PolicyQuery q = query_default();
        PolicyVerdict v;

        r.selectors |= POLICY_SEL_UID;
        r.uid = 1000;
        _cleanup_(policy_snapshot_unrefp) PolicySnapshot *s = snapshot_of(&r, 1, 1, POLICY_MODE_ENFORCE);

        policy_evaluate(s, &q, &v);
        assert_true(v.allow);

        q.exe_sha256 = hash_b; /* right uid, wrong hash */
        policy_evaluate(s, &q, &v);
        assert_false(v.allow);
        assert_int_equal(v.reason, POLICY_REASON_NO_MATCH);

        q = query_default();
        q.uid = 1001; /* right hash, wrong uid */
        policy_evaluate(s, &q, &v);
        assert_false(v.allow);

        /* Unknown hash never matches a sha256 selector, even an all-zero one. */
        PolicyRule zero = rule_sha(POLICY_ACTION_ALLOW, 2, (const uint8_t[SHA256_DIGEST_LEN]) {});
        _cleanup_(policy_snapshot_unrefp) PolicySnapshot *z = snapshot_of(&zero, 1, 1, POLICY_MODE_ENFORCE);
        q = query_default();
        q.exe_sha256 = NULL;
        policy_evaluate(z, &q, &v);
        assert_false(v.allow);
        assert_int_equal(v.reason, POLICY_REASON_NO_MATCH);
        /* And a hash differing in the last byte only does not match either. */
        uint8_t almost[SHA256_DIGEST_LEN] = {};
        almost[31] = 1;
        q.exe_sha256 = almost;
        policy_evaluate(z, &q, &v);
        assert_false(v.allow);
        q.exe_sha256 = (const uint8_t[SHA256_DIGEST_LEN]) {};
        policy_evaluate(z, &q, &v);
        assert_true(v.allow);
}

static void test_path_selector(void **state) {
        PolicyRule r = rule_path(POLICY_ACTION_ALLOW, 1, "/usr/bin/app");
        _cleanup_(policy_snapshot_unrefp) PolicySnapshot *s = snapshot_of(&r, 1, 1, POLICY_MODE_ENFORCE);
        PolicyQuery q = query_default();
        PolicyVerdict v;

        policy_evaluate(s, &q, &v);
        assert_true(v.allow);
        const char *others[] = { "/usr/bin/app2", "/usr/bin/ap", "/usr/bin/app (deleted)", "/usr/bin/App", "" };
        for (size_t i = 0; i < ELEMENTSOF(others); i++) {
                q.exe_path = others[i];
                policy_evaluate(s, &q, &v);
                assert_false(v.allow);
        }
        q.exe_path = NULL;
        policy_evaluate(s, &q, &v);
        assert_false(v.allow);
        assert_int_equal(v.reason, POLICY_REASON_NO_MATCH);
}

static void test_supplementary_gid(void **state) {
        PolicyRule r = rule_gid(POLICY_ACTION_ALLOW, 1, 27);
        _cleanup_(policy_snapshot_unrefp) PolicySnapshot *s = snapshot_of(&r, 1, 1, POLICY_MODE_ENFORCE);
        const uint32_t groups[] = { 4, 24, 27, 100 };
        PolicyQuery q = query_default();
        PolicyVerdict v;

        policy_evaluate(s, &q, &v); /* primary 1000, no supplementary */
        assert_false(v.allow);

        q.supplementary_gids = groups;
        q.n_supplementary_gids = ELEMENTSOF(groups);
        policy_evaluate(s, &q, &v);
        assert_true(v.allow);
        assert_int_equal(v.rule->gid, 27);

        q.n_supplementary_gids = 2; /* 27 not among the first two */
        policy_evaluate(s, &q, &v);
        assert_false(v.allow);

        q.n_supplementary_gids = 0;
        q.gid = 27; /* primary */
        policy_evaluate(s, &q, &v);
        assert_true(v.allow);

        /* Gids equal modulo 64 share a filter bit: the exact check must still tell them apart. */
        PolicyRule alias = rule_gid(POLICY_ACTION_ALLOW, 1, 27 + 64);
        _cleanup_(policy_snapshot_unrefp) PolicySnapshot *a = snapshot_of(&alias, 1, 1, POLICY_MODE_ENFORCE);
        policy_evaluate(a, &q, &v);
        assert_false(v.allow);
        q.gid = 1000;
        q.supplementary_gids = groups;
        q.n_supplementary_gids = ELEMENTSOF(groups);
        policy_evaluate(a, &q, &v);
        assert_false(v.allow);
}

static void test_endpoint_selector(void **state) {
        PolicyRule rules[] = {
                rule_endpoint(POLICY_ACTION_ALLOW, 1, POLICY_ENDPOINT_ENROLL),
                rule_endpoint(POLICY_ACTION_DENY, 2, POLICY_ENDPOINT_TCP),
        };
        _cleanup_(policy_snapshot_unrefp) PolicySnapshot *s = snapshot_of(rules, 2, 1, POLICY_MODE_ENFORCE);
        PolicyQuery q = query_default();
        PolicyVerdict v;

        q.endpoint = POLICY_ENDPOINT_ENROLL;
        policy_evaluate(s, &q, &v);
        assert_true(v.allow);
        assert_int_equal(v.rule->id, 1);
        q.endpoint = POLICY_ENDPOINT_DATA;
        policy_evaluate(s, &q, &v);
        assert_false(v.allow);
        assert_int_equal(v.reason, POLICY_REASON_NO_MATCH);
        q.endpoint = POLICY_ENDPOINT_TCP;
        policy_evaluate(s, &q, &v);
        assert_false(v.allow);
        assert_int_equal(v.reason, POLICY_REASON_DENY_RULE);
}

static PolicyRule rule_cert(PolicyAction action, int64_t id, const char *name) {
        PolicyRule r = { .id = id, .action = action, .selectors = POLICY_SEL_CERT, .cert = strdup(name) };

        assert_non_null(r.cert);
        return r;
}

static void test_cert_selector(void **state) {
        PolicyRule rules[] = {
                rule_cert(POLICY_ACTION_ALLOW, 1, "backup-1"),
                rule_cert(POLICY_ACTION_DENY, 2, "stolen"),
                rule_cert(POLICY_ACTION_ALLOW, 3, "tcp-only"),
                rule_uid(POLICY_ACTION_ALLOW, 4, 1000),
        };
        rules[2].selectors |= POLICY_SEL_ENDPOINT;
        rules[2].endpoint = POLICY_ENDPOINT_TCP;
        _cleanup_(policy_snapshot_unrefp) PolicySnapshot *s = snapshot_of(rules, 4, 1, POLICY_MODE_ENFORCE);
        PolicyQuery q = query_default();
        PolicyVerdict v;
        /* Same length and different bytes: only strcmp() tells them apart, whatever the digest says. */
        char name[] = "backup-1";

        q.uid = 2000;
        q.endpoint = POLICY_ENDPOINT_TCP;

        /* Local peers (no cert name) never match a cert selector. */
        q.cert_name = NULL;
        policy_evaluate(s, &q, &v);
        assert_false(v.allow);
        assert_int_equal(v.reason, POLICY_REASON_NO_MATCH);

        q.cert_name = name;
        policy_evaluate(s, &q, &v);
        assert_true(v.allow);
        assert_int_equal(v.rule->id, 1);

        name[7] = '2';
        policy_evaluate(s, &q, &v);
        assert_int_equal(v.reason, POLICY_REASON_NO_MATCH);
        q.cert_name = "backup-10";
        policy_evaluate(s, &q, &v);
        assert_int_equal(v.reason, POLICY_REASON_NO_MATCH);
        q.cert_name = "Backup-1";       /* case matters */
        policy_evaluate(s, &q, &v);
        assert_int_equal(v.reason, POLICY_REASON_NO_MATCH);
        q.cert_name = "";
        policy_evaluate(s, &q, &v);
        assert_int_equal(v.reason, POLICY_REASON_NO_MATCH);

        q.cert_name = "stolen";
        policy_evaluate(s, &q, &v);
        assert_false(v.allow);
        assert_int_equal(v.reason, POLICY_REASON_DENY_RULE);
        assert_int_equal(v.rule->id, 2);

        /* AND with the endpoint selector. */
        q.cert_name = "tcp-only";
        policy_evaluate(s, &q, &v);
        assert_true(v.allow);
        assert_int_equal(v.rule->id, 3);
        q.endpoint = POLICY_ENDPOINT_DATA;
        policy_evaluate(s, &q, &v);
        assert_int_equal(v.reason, POLICY_REASON_NO_MATCH);

        /* A cert name does not hide the other selectors: the uid rule still matches. */
        q.uid = 1000;
        policy_evaluate(s, &q, &v);
        assert_true(v.allow);
        assert_int_equal(v.rule->id, 4);
}

static void test_permissive(void **state) {
        PolicyRule rules[] = {
                rule_uid(POLICY_ACTION_ALLOW, 1, 1000),
                rule_uid(POLICY_ACTION_DENY, 2, 666),
        };
        _cleanup_(policy_snapshot_unrefp) PolicySnapshot *s = snapshot_of(rules, 2, 8, POLICY_MODE_PERMISSIVE);
        PolicyQuery q = query_default();
        PolicyVerdict v;

        /* Allowed stays allowed. */
        policy_evaluate(s, &q, &v);
        assert_true(v.allow);
        assert_true(v.admit);

        /* No match and deny rule: admitted, but the verdict says deny. */
        q.uid = 1001;
        policy_evaluate(s, &q, &v);
        assert_false(v.allow);
        assert_true(v.admit);
        assert_int_equal(v.reason, POLICY_REASON_NO_MATCH);
        assert_int_equal(v.generation, 8);
        q.uid = 666;
        policy_evaluate(s, &q, &v);
        assert_false(v.allow);
        assert_true(v.admit);
        assert_int_equal(v.reason, POLICY_REASON_DENY_RULE);
        assert_int_equal(v.rule->id, 2);

        /* Never on the control endpoint. */
        q.endpoint = POLICY_ENDPOINT_CONTROL;
        policy_evaluate(s, &q, &v);
        assert_false(v.allow);
        assert_false(v.admit);
        q.uid = 1001;
        policy_evaluate(s, &q, &v);
        assert_false(v.admit);
        q.uid = 1000;
        policy_evaluate(s, &q, &v);
        assert_true(v.allow);
        assert_true(v.admit);
}

static void test_lowest_id_decides(void **state) {
        PolicyRule rules[] = {
                rule_uid(POLICY_ACTION_ALLOW, 7, 1000),
                rule_sha(POLICY_ACTION_ALLOW, 3, hash_a),
                rule_path(POLICY_ACTION_ALLOW, 5, "/usr/bin/app"),
        };
        _cleanup_(policy_snapshot_unrefp) PolicySnapshot *s = snapshot_of(rules, 3, 1, POLICY_MODE_ENFORCE);
        PolicyQuery q = query_default();
        PolicyVerdict v;

        policy_evaluate(s, &q, &v);
        assert_true(v.allow);
        assert_int_equal(v.rule->id, 3);
        q.exe_sha256 = hash_b;
        policy_evaluate(s, &q, &v);
        assert_int_equal(v.rule->id, 5);

        /* Among deny rules too. */
        PolicyRule denies[] = {
                rule_uid(POLICY_ACTION_DENY, 12, 1000),
                rule_uid(POLICY_ACTION_ALLOW, 1, 1000),
                rule_endpoint(POLICY_ACTION_DENY, 11, POLICY_ENDPOINT_DATA),
        };
        _cleanup_(policy_snapshot_unrefp) PolicySnapshot *d = snapshot_of(denies, 3, 1, POLICY_MODE_ENFORCE);
        policy_evaluate(d, &q, &v);
        assert_false(v.allow);
        assert_int_equal(v.rule->id, 11);
}

static void test_invalid_query(void **state) {
        PolicyRule r = rule_uid(POLICY_ACTION_ALLOW, 1, 1000);
        _cleanup_(policy_snapshot_unrefp) PolicySnapshot *s = snapshot_of(&r, 1, 9, POLICY_MODE_PERMISSIVE);
        PolicyQuery q = query_default();
        PolicyVerdict v;

        policy_evaluate(s, NULL, &v);
        assert_int_equal(v.reason, POLICY_REASON_INVALID_QUERY);
        assert_false(v.allow);
        assert_false(v.admit); /* a doubt is never admitted, even in permissive mode */
        assert_int_equal(v.generation, 9);

        policy_evaluate(NULL, &q, &v);
        assert_int_equal(v.reason, POLICY_REASON_INVALID_QUERY);
        assert_false(v.admit);

        q.endpoint = _POLICY_ENDPOINT_MAX;
        policy_evaluate(s, &q, &v);
        assert_int_equal(v.reason, POLICY_REASON_INVALID_QUERY);
        q = query_default();
        q.uid = POLICY_ID_UNSET;
        policy_evaluate(s, &q, &v);
        assert_int_equal(v.reason, POLICY_REASON_INVALID_QUERY);
        q = query_default();
        q.n_supplementary_gids = 3;
        policy_evaluate(s, &q, &v);
        assert_int_equal(v.reason, POLICY_REASON_INVALID_QUERY);
        policy_evaluate(s, &q, NULL); /* must not crash */
}

#define N_THREADS 4
#define N_ITERATIONS 100000

static void *hammer(void *arg) {
        PolicySnapshot *s = arg;
        PolicyQuery q = query_default();

        for (int i = 0; i < N_ITERATIONS; i++) {
                PolicySnapshot *t = policy_snapshot_ref(s);
                PolicyVerdict v;

                policy_evaluate(t, &q, &v);
                if (!v.allow)
                        return (void *) 1;
                policy_snapshot_unref(t);
        }
        /* Each thread was handed its own reference. */
        policy_snapshot_unref(s);
        return NULL;
}

static void test_snapshot_threads(void **state) {
        PolicyRule r = rule_uid(POLICY_ACTION_ALLOW, 1, 1000);
        PolicySnapshot *s = snapshot_of(&r, 1, 1, POLICY_MODE_ENFORCE);
        pthread_t threads[N_THREADS];

        for (int i = 0; i < N_THREADS; i++)
                assert_int_equal(pthread_create(&threads[i], NULL, hammer, policy_snapshot_ref(s)), 0);
        /* Drop ours while the threads run: the last of them frees it. */
        assert_null(policy_snapshot_unref(s));
        for (int i = 0; i < N_THREADS; i++) {
                void *ret;

                assert_int_equal(pthread_join(threads[i], &ret), 0);
                assert_null(ret);
        }
}

static uint64_t now_ns(void) {
        struct timespec ts;

        assert_int_equal(clock_gettime(CLOCK_MONOTONIC, &ts), 0);
        return (uint64_t) ts.tv_sec * UINT64_C(1000000000) + (uint64_t) ts.tv_nsec;
}

static void test_thousand_rules(void **state) {
        PolicyRule *rules = calloc(1000, sizeof(PolicyRule));
        PolicySnapshot *s = NULL;
        PolicyQuery q = query_default();
        PolicyVerdict v;
        char path[64];
        uint64_t t0, t1;
        const int rounds = 2000;

        assert_non_null(rules);
        /* Realistic mix, none matching, the one allow rule last: the worst case is a full pass. */
        for (size_t i = 0; i < 999; i++) {
                switch (i % 4) {
                case 0:
                        rules[i] = rule_uid(POLICY_ACTION_ALLOW, (int64_t) i + 1, 2000 + (uint32_t) i);
                        break;
                case 1:
                        snprintf(path, sizeof path, "/usr/bin/app%zu", i);
                        rules[i] = rule_path(POLICY_ACTION_ALLOW, (int64_t) i + 1, path);
                        break;
                case 2: {
                        uint8_t h[SHA256_DIGEST_LEN] = { (uint8_t) i, (uint8_t) (i >> 8), 0x42 };
                        rules[i] = rule_sha(POLICY_ACTION_ALLOW, (int64_t) i + 1, h);
                        rules[i].selectors |= POLICY_SEL_UID;
                        rules[i].uid = 1000;
                        break;
                }
                default:
                        rules[i] = rule_gid(POLICY_ACTION_DENY, (int64_t) i + 1, 5000 + (uint32_t) i);
                }
        }
        rules[999] = rule_sha(POLICY_ACTION_ALLOW, 1000, hash_a);
        assert_int_equal(policy_snapshot_new(rules, 1000, 1, POLICY_MODE_ENFORCE, &s), 0);

        t0 = now_ns();
        for (int i = 0; i < rounds; i++)
                policy_evaluate(s, &q, &v);
        t1 = now_ns();
        assert_true(v.allow);
        assert_int_equal(v.rule->id, 1000);
        /* Informational only: sanitizers and valgrind make timing meaningless here; bench/ measures. */
        print_message("1000 rules, full pass: %.2f us per evaluation\n", (double) (t1 - t0) / rounds / 1000.0);
        policy_snapshot_unref(s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_string_tables),
                cmocka_unit_test(test_validate_accepts),
                cmocka_unit_test(test_validate_rejects),
                cmocka_unit_test(test_copy_equal),
                cmocka_unit_test(test_resolve_names),
                cmocka_unit_test(test_snapshot_basics),
                cmocka_unit_test(test_snapshot_rejects),
                cmocka_unit_test(test_default_deny),
                cmocka_unit_test(test_deny_wins),
                cmocka_unit_test(test_and_semantics),
                cmocka_unit_test(test_path_selector),
                cmocka_unit_test(test_supplementary_gid),
                cmocka_unit_test(test_endpoint_selector),
                cmocka_unit_test(test_cert_selector),
                cmocka_unit_test(test_permissive),
                cmocka_unit_test(test_lowest_id_decides),
                cmocka_unit_test(test_invalid_query),
                cmocka_unit_test(test_snapshot_threads),
                cmocka_unit_test(test_thousand_rules),
                cmocka_unit_test(test_snapshot_uses_gids),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
