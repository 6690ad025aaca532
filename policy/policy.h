/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Pure policy logic: the rule model, an immutable refcounted rule snapshot,
 * and evaluation. Nothing here does I/O except policy_rule_resolve_names(),
 * which turns user/group names into ids when a rule is added (evaluation
 * uses ids only, never NSS).
 *
 * Semantics (docs/architecture.md):
 *   - a rule has an action (allow|deny) and at least one selector;
 *   - all selectors of a rule must match (AND);
 *   - any matching deny rule wins over every allow rule;
 *   - no matching rule is deny (default deny);
 *   - mode permissive admits what would be denied but still reports the
 *     deny verdict; it never applies to the control endpoint.
 */

#include <sys/types.h>

#include "macro.h"
#include "strutil.h"

typedef enum PolicyAction {
        POLICY_ACTION_DENY = 0,
        POLICY_ACTION_ALLOW = 1,
        _POLICY_ACTION_MAX,
        _POLICY_ACTION_INVALID = -EINVAL,
} PolicyAction;

typedef enum PolicyEndpoint {
        POLICY_ENDPOINT_DATA = 0,
        POLICY_ENDPOINT_TCP,
        POLICY_ENDPOINT_ENROLL,
        POLICY_ENDPOINT_CONTROL,
        _POLICY_ENDPOINT_MAX,
        _POLICY_ENDPOINT_INVALID = -EINVAL,
} PolicyEndpoint;

typedef enum PolicyMode {
        POLICY_MODE_ENFORCE = 0,
        POLICY_MODE_PERMISSIVE,
        _POLICY_MODE_MAX,
        _POLICY_MODE_INVALID = -EINVAL,
} PolicyMode;

/* Which selectors a rule carries (bit set in PolicyRule.selectors). */
enum {
        POLICY_SEL_UID = 1u << 0,      /* uid (user name kept for display) */
        POLICY_SEL_GID = 1u << 1,      /* gid: primary or supplementary (group name kept for display) */
        POLICY_SEL_PATH = 1u << 2,     /* exact executable path as /proc/<pid>/exe reports it */
        POLICY_SEL_SHA256 = 1u << 3,   /* SHA-256 of the executable */
        POLICY_SEL_ENDPOINT = 1u << 4, /* endpoint name */
        POLICY_SEL_CERT = 1u << 5,     /* name of a remote client certificate (secd://remote/<name>) */
        _POLICY_SEL_ALL = (1u << 6) - 1,
};

#define POLICY_PATH_MAX 4096
#define POLICY_COMMENT_MAX 1024
#define POLICY_NAME_MAX 256 /* user or group name */
#define POLICY_RULES_MAX 100000
/* A remote certificate name, [A-Za-z0-9._-]{1,64}: the same as secd/ca.h CA_REMOTE_NAME_MAX. */
#define POLICY_CERT_NAME_MAX 64
/* A uid/gid selector whose id is not known yet (named, not resolved); (uid_t) -1 is never an id. */
#define POLICY_ID_UNSET UINT32_MAX

typedef struct PolicyRule {
        int64_t id;             /* store row id; 0 until stored */
        PolicyAction action;
        unsigned selectors;     /* POLICY_SEL_* */
        uint32_t uid;
        char *user;             /* optional display name of uid, NULL if given by number */
        uint32_t gid;
        char *group;            /* optional display name of gid */
        char *path;
        uint8_t sha256[SHA256_DIGEST_LEN];
        PolicyEndpoint endpoint;
        char *cert;             /* remote certificate name (POLICY_SEL_CERT) */
        char *comment;          /* may be NULL */
} PolicyRule;

const char *policy_action_to_string(PolicyAction a) _const_;
PolicyAction policy_action_from_string(const char *s) _pure_;
const char *policy_endpoint_to_string(PolicyEndpoint e) _const_;
PolicyEndpoint policy_endpoint_from_string(const char *s) _pure_;
const char *policy_mode_to_string(PolicyMode m) _const_;
PolicyMode policy_mode_from_string(const char *s) _pure_;

/* Free the strings a rule owns (not the rule itself) and zero it. */
void policy_rule_done(PolicyRule *rule);

/* Free an array of n rules and the strings they own; NULL-safe. */
void policy_rules_free(PolicyRule *rules, size_t n);

/* Deep copy. */
int policy_rule_copy(const PolicyRule *src, PolicyRule *ret);

/*
 * Same rule: id, action, selectors, comment, and the values of the selectors
 * that are set (fields of unset selectors are ignored).
 */
bool policy_rule_equal(const PolicyRule *a, const PolicyRule *b) _pure_;

/*
 * A plausible user or group name: 1..POLICY_NAME_MAX bytes of [A-Za-z0-9_.@-]
 * (a final '$' allowed), not starting with '-' or '.', not all digits.
 */
bool policy_name_is_valid(const char *name) _pure_;

/* A remote certificate name: 1..POLICY_CERT_NAME_MAX bytes of [A-Za-z0-9._-]. */
bool policy_cert_name_is_valid(const char *name) _pure_;

/*
 * An absolute, normalised path shorter than POLICY_PATH_MAX: no empty, "."
 * or ".." segment (so no "//", "/./", "/../"), no trailing '/', printable
 * UTF-8.
 */
bool policy_path_is_valid(const char *path) _pure_;

/* True if every uid/gid selector of the rule carries its id (names resolved). */
bool policy_rule_is_resolved(const PolicyRule *rule) _pure_;

/*
 * Check a rule's shape: valid action, at least one selector, absolute
 * normalised path within POLICY_PATH_MAX, printable UTF-8 comment within
 * POLICY_COMMENT_MAX, valid endpoint. -EINVAL on failure; *ret_field (if
 * non-NULL) names the offending field ("action", "path", ...).
 *
 * Fields: "action", "id" (negative), "selectors" (none, or unknown bits),
 * "user"/"group" (not policy_name_is_valid(), or a name without its
 * selector bit), "uid"/"gid" (selector with neither a name nor an id),
 * "path" (invalid, or present without POLICY_SEL_PATH or vice versa),
 * "endpoint", "cert" (not policy_cert_name_is_valid(), or present without
 * POLICY_SEL_CERT or vice versa), "comment". A rule that names a user but whose uid is still
 * POLICY_ID_UNSET is valid (not yet resolved); a snapshot refuses it.
 */
int policy_rule_validate(const PolicyRule *rule, const char **ret_field);

/*
 * Resolve rule->user/rule->group names to ids (NSS) when the rule carries a
 * name and POLICY_SEL_UID/GID. If the rule also carries an explicit id that
 * disagrees with the name, -EINVAL with *ret_field "uid"/"gid". Unknown name:
 * -ESRCH with *ret_field "user"/"group". Called when a rule is added, never
 * during evaluation. A rule that carries only ids is left alone (no reverse
 * look-up: user/group stay NULL). A rule given by name only must carry
 * uid/gid POLICY_ID_UNSET (any other value is an explicit id to check
 * against). On failure the rule is unchanged.
 * NSS buffers grow on ERANGE up to 1 MiB, then -ERANGE.
 */
int policy_rule_resolve_names(PolicyRule *rule, const char **ret_field);

/* An immutable, refcounted set of rules (thread-safe refcount). */
typedef struct PolicySnapshot PolicySnapshot;

/*
 * Take ownership of rules[0..n_rules) (the array and their strings; the
 * array must come from malloc) into a new snapshot. On failure the rules are
 * still owned by the caller. Every rule must pass policy_rule_validate() and
 * be resolved (policy_rule_is_resolved()), else -EINVAL. The snapshot keeps
 * the rules in evaluation order: deny rules first, then ascending id, then
 * input order; policy_snapshot_rule(s, i) walks that order. The refcount is
 * atomic: ref/unref from any thread; the rules are never modified.
 */
int policy_snapshot_new(PolicyRule *rules, size_t n_rules, uint64_t generation,
                        PolicyMode mode, PolicySnapshot **ret);
PolicySnapshot *policy_snapshot_ref(PolicySnapshot *s);
PolicySnapshot *policy_snapshot_unref(PolicySnapshot *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(PolicySnapshot *, policy_snapshot_unref);

uint64_t policy_snapshot_generation(const PolicySnapshot *s) _pure_;
/* True if a rule selects by gid (then a query needs the client's supplementary groups); true for NULL. */
bool policy_snapshot_uses_gids(const PolicySnapshot *s) _pure_;
PolicyMode policy_snapshot_mode(const PolicySnapshot *s) _pure_;
size_t policy_snapshot_n_rules(const PolicySnapshot *s) _pure_;
const PolicyRule *policy_snapshot_rule(const PolicySnapshot *s, size_t i) _pure_;

/* What is known about a client when it is judged. */
typedef struct PolicyQuery {
        uint32_t uid;
        uint32_t gid;
        const uint32_t *supplementary_gids;
        size_t n_supplementary_gids;
        const char *exe_path;           /* NULL if unknown: a path selector never matches */
        const uint8_t *exe_sha256;      /* NULL if unknown: a sha256 selector never matches */
        PolicyEndpoint endpoint;
        const char *cert_name;          /* remote certificate name (TCP endpoint); NULL for local
                                         * peers: a cert selector never matches */
} PolicyQuery;

typedef enum PolicyReason {
        POLICY_REASON_ALLOW_RULE,       /* an allow rule matched and no deny rule did */
        POLICY_REASON_DENY_RULE,        /* a deny rule matched */
        POLICY_REASON_NO_MATCH,         /* default deny */
        POLICY_REASON_INVALID_QUERY,    /* the query itself was unusable */
} PolicyReason;

typedef struct PolicyVerdict {
        bool allow;                     /* the policy's decision */
        bool admit;                     /* what to do: allow, or permissive mode on a non-control endpoint */
        PolicyReason reason;
        const PolicyRule *rule;         /* the deciding rule (points into the snapshot), NULL on no match */
        uint64_t generation;
} PolicyVerdict;

/*
 * Judge a query against a snapshot. Pure: no I/O, no allocation. The
 * verdict's rule pointer is valid as long as the caller holds the snapshot.
 * With several matching rules of the deciding action, the one with the
 * lowest id decides (stable, explainable).
 *
 * A NULL snapshot or query, an invalid endpoint, a uid or gid of
 * POLICY_ID_UNSET, or supplementary gids counted but NULL give reason
 * POLICY_REASON_INVALID_QUERY with allow = admit = false in every mode.
 * Cost: one linear pass over the rules, stopping at the first match.
 */
void policy_evaluate(const PolicySnapshot *s, const PolicyQuery *q, PolicyVerdict *ret);

const char *policy_reason_to_string(PolicyReason r) _const_;
