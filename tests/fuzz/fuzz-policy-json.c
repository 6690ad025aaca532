/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz the policy JSON parser: policy_json_import() on the raw input, and
 * policy_rule_from_json() on whatever json-c makes of it. Beyond "no
 * crash, no leak", whatever is accepted must survive export and re-import
 * unchanged, and must be usable in a snapshot. Property failures abort()
 * (not assert(): release builds define NDEBUG).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "policy-json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what) {
        if (!ok) {
                fprintf(stderr, "fuzz-policy-json: property violated: %s\n", what);
                abort();
        }
}

static void rules_free(PolicyRule *rules, size_t n) {
        for (size_t i = 0; i < n; i++)
                policy_rule_done(&rules[i]);
        free(rules);
}

static void evaluate_some(PolicyRule *rules, size_t n, PolicyMode mode) {
        static const uint8_t hash[SHA256_DIGEST_LEN] = { 1 };
        static const uint32_t groups[] = { 0, 27, 1000 };
        PolicyRule *copy = calloc(n ? n : 1, sizeof(PolicyRule));
        PolicySnapshot *s = NULL;
        size_t n_copied = 0;

        if (!copy)
                return;
        for (; n_copied < n; n_copied++) {
                if (policy_rule_copy(&rules[n_copied], &copy[n_copied]) < 0)
                        goto fail;
                /* Pretend names resolved, without NSS. */
                if (copy[n_copied].uid == POLICY_ID_UNSET)
                        copy[n_copied].uid = 1000;
                if (copy[n_copied].gid == POLICY_ID_UNSET)
                        copy[n_copied].gid = 27;
        }
        check(policy_snapshot_new(copy, n, 1, mode, &s) == 0, "imported rules make a snapshot");

        for (PolicyEndpoint e = 0; e < _POLICY_ENDPOINT_MAX; e++) {
                PolicyQuery q = {
                        .uid = 1000, .gid = 1000,
                        .supplementary_gids = groups, .n_supplementary_gids = 3,
                        .exe_path = "/usr/bin/app", .exe_sha256 = hash, .endpoint = e,
                };
                PolicyVerdict v;

                policy_evaluate(s, &q, &v);
                check(v.reason != POLICY_REASON_INVALID_QUERY, "valid query judged");
                check(!v.allow || v.rule, "an allow names its rule");
                check(!(e == POLICY_ENDPOINT_CONTROL && v.admit && !v.allow), "permissive never on control");
                q.exe_sha256 = NULL;
                q.exe_path = NULL;
                policy_evaluate(s, &q, &v);
                check(!v.rule || !(v.rule->selectors & (POLICY_SEL_SHA256 | POLICY_SEL_PATH)),
                      "unknown hash/path never matches");
        }
        policy_snapshot_unref(s);
        return;
fail:
        rules_free(copy, n_copied);
}

static void fuzz_import(const char *text, size_t size) {
        PolicyRule *rules = NULL, *again = NULL;
        size_t n = 0, n_again = 0;
        PolicyMode mode = _POLICY_MODE_INVALID, mode_again = _POLICY_MODE_INVALID;
        char *error = NULL, *exported = NULL;
        int r;

        r = policy_json_import(text, size, &rules, &n, &mode, &error);
        if (r < 0) {
                check(error || r == -ENOMEM, "a refusal says why");
                check(r == -EINVAL || r == -E2BIG || r == -ENOMEM, "refusal errno");
                free(error);
                return;
        }
        check(!error, "no message on success");

        r = policy_json_export(rules, n, mode, &exported);
        if (r == -ENOMEM || r == -E2BIG) /* pretty-printing can grow a dense document */
                goto out;
        check(r == 0, "accepted rules export");

        r = policy_json_import(exported, strlen(exported), &again, &n_again, &mode_again, &error);
        if (r < 0)
                fprintf(stderr, "re-import failed: %s\n", error ?: "?");
        check(r == 0, "export re-imports");
        check(n_again == n && mode_again == mode, "same count and mode");
        for (size_t i = 0; i < n; i++)
                check(policy_rule_equal(&rules[i], &again[i]), "same rules after round trip");

        evaluate_some(rules, n, mode);
out:
        free(exported);
        rules_free(again, n_again);
        rules_free(rules, n);
}

static void fuzz_rule(const char *text, size_t size) {
        json_tokener *tok;
        json_object *o;

        if (size > INT32_MAX || memchr(text, 0, size))
                return;
        tok = json_tokener_new_ex(16);
        if (!tok)
                return;
        o = json_tokener_parse_ex(tok, text, (int) size);
        json_tokener_free(tok);
        if (!o)
                return;

        for (int allow_id = 0; allow_id < 2; allow_id++) {
                PolicyRule rule = {}, back = {};
                json_object *j = NULL;
                char *error = NULL;
                int r;

                r = policy_rule_from_json(o, allow_id, allow_id ? "rule" : NULL, &rule, &error);
                if (r < 0) {
                        check(error || r == -ENOMEM, "a refusal says why");
                        free(error);
                        continue;
                }
                check(policy_rule_validate(&rule, NULL) == 0, "accepted rule validates");
                check(allow_id || rule.id == 0, "no id unless allowed");
                r = policy_rule_to_json(&rule, &j);
                if (r == 0) {
                        r = policy_rule_from_json(j, true, NULL, &back, NULL);
                        check(r == 0 || r == -ENOMEM, "rule JSON re-parses");
                        check(r < 0 || policy_rule_equal(&rule, &back), "same rule after round trip");
                        json_object_put(j);
                } else
                        check(r == -ENOMEM, "valid rule becomes JSON");
                policy_rule_done(&back);
                policy_rule_done(&rule);
        }
        json_object_put(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        fuzz_import((const char *) data, size);
        fuzz_rule((const char *) data, size);
        return 0;
}
