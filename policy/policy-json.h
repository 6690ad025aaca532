/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * JSON form of rules, shared by policy export/import and the Varlink
 * io.secd.Policy methods, so there is one strict parser.
 *
 * A rule object:
 *   { "id": 7, "action": "allow", "user": "alice", "uid": 1000,
 *     "group": "staff", "gid": 50, "path": "/usr/bin/app",
 *     "sha256": "<64 hex>", "endpoint": "data", "cert": "backup-1",
 *     "comment": "..." }
 * "id" is output only: rejected on input unless the caller allows it.
 * An export document:
 *   { "format": "secd-policy", "version": 1, "mode": "enforce", "rules": [ ... ] }
 *
 * Parsing is strict: unknown fields, wrong types, malformed hashes, names
 * over POLICY_NAME_MAX, certificate names that are not [A-Za-z0-9._-]{1,64},
 * selector conflicts, and documents over
 * POLICY_JSON_MAX bytes are errors. Errors come back as -EINVAL (or -E2BIG
 * for size) plus a malloc'd message naming the field, e.g.
 * "rules[3].sha256: expected 64 hexadecimal characters".
 *
 * Precisely: -E2BIG for a document over POLICY_JSON_MAX bytes or with more
 * than POLICY_RULES_MAX rules; a string field over its own bound (name,
 * path, cert, comment) is a shape error, -EINVAL. Also -EINVAL: invalid JSON,
 * invalid UTF-8, nesting deeper than a policy needs, trailing data after
 * the document, a NUL byte or an escaped NUL ("\u0000") anywhere (in
 * policy_json_import(); policy_rule_from_json() sees parsed objects and
 * refuses NULs in values), single-quoted strings (which json-c alone
 * accepts), a missing "action", a rule without selectors, "uid"/"gid" that are not
 * integers in 0..4294967294 (strings, fractions, negatives), values of the
 * wrong type (null included). "user" with "uid" (or "group" with "gid") is
 * allowed here; whether they agree is checked when names are resolved.
 * Known limit: json-c keeps only the last of duplicate keys in an object,
 * so a repeated key is not reported.
 *
 * Names are never resolved here (no NSS in a parser): a rule given as
 * {"user": "alice"} comes back with uid POLICY_ID_UNSET, and the daemon must
 * call policy_rule_resolve_names() (or policy_json_resolve_names()) before
 * the rule is stored or put in a snapshot (which refuses unresolved rules).
 *
 * ret_error may be NULL; it is written only on failure, and not on
 * -ENOMEM.
 */

#include <json-c/json.h>

#include "policy.h"

#define POLICY_JSON_MAX (UINT64_C(16) << 20)

/* Rule -> new JSON object (with "id" if rule->id > 0). */
int policy_rule_to_json(const PolicyRule *rule, json_object **ret);

/*
 * JSON object -> rule. Names are not resolved here (see
 * policy_rule_resolve_names()). If allow_id is false an "id" field is an
 * error. *ret_error is set (malloc'd) on -EINVAL; prefix is prepended to
 * the field name in it (may be NULL).
 */
int policy_rule_from_json(json_object *o, bool allow_id, const char *prefix,
                          PolicyRule *ret, char **ret_error);

/* Export document for rules[0..n) in mode, pretty-printed, NUL-terminated. */
int policy_json_export(const PolicyRule *rules, size_t n, PolicyMode mode, char **ret);

/*
 * Parse an export document of len bytes. Returns the rules (malloc'd array,
 * caller frees each with policy_rule_done() and the array with free()), and
 * the mode. Rule ids in the document are ignored (new ids on import).
 */
int policy_json_import(const char *text, size_t len, PolicyRule **ret_rules, size_t *ret_n,
                       PolicyMode *ret_mode, char **ret_error);

/*
 * Resolve the names of rules[0..n) with policy_rule_resolve_names() (NSS,
 * so not pure: the daemon calls it after policy_json_import() or
 * policy_rule_from_json(), which never resolve). On failure *ret_error
 * (malloc'd) names the rule and field, e.g. "rules[2].user: unknown user
 * \"bob\"" (-ESRCH) or "rules[0].uid: 5 is not the uid of user \"root\""
 * (-EINVAL); rules before the failing one are already resolved.
 */
int policy_json_resolve_names(PolicyRule *rules, size_t n, char **ret_error);
