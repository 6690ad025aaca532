/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * JSON form of rules, shared by policy export/import and the Varlink
 * io.secd.Policy methods, so there is one strict parser.
 *
 * A rule object:
 *   { "id": 7, "action": "allow", "user": "alice", "uid": 1000,
 *     "group": "staff", "gid": 50, "path": "/usr/bin/app",
 *     "sha256": "<64 hex>", "endpoint": "data", "comment": "..." }
 * "id" is output only: rejected on input unless the caller allows it.
 * An export document:
 *   { "format": "secd-policy", "version": 1, "mode": "enforce", "rules": [ ... ] }
 *
 * Parsing is strict: unknown fields, wrong types, malformed hashes, names
 * over POLICY_NAME_MAX, selector conflicts, and documents over
 * POLICY_JSON_MAX bytes are errors. Errors come back as -EINVAL (or -E2BIG
 * for size) plus a malloc'd message naming the field, e.g.
 * "rules[3].sha256: expected 64 hexadecimal characters".
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
