/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <grp.h>
#include <pwd.h>
#include <limits.h>
#include <stdatomic.h>

#include "policy.h"

/* NSS buffers grow on ERANGE up to this size; a larger entry is refused. */
#define NSS_BUFFER_MAX (UINT64_C(1) << 20)

static const char *const policy_action_table[_POLICY_ACTION_MAX] = {
        [POLICY_ACTION_DENY] = "deny",
        [POLICY_ACTION_ALLOW] = "allow",
};

static const char *const policy_endpoint_table[_POLICY_ENDPOINT_MAX] = {
        [POLICY_ENDPOINT_DATA] = "data",
        [POLICY_ENDPOINT_TCP] = "tcp",
        [POLICY_ENDPOINT_ENROLL] = "enroll",
        [POLICY_ENDPOINT_CONTROL] = "control",
};

static const char *const policy_mode_table[_POLICY_MODE_MAX] = {
        [POLICY_MODE_ENFORCE] = "enforce",
        [POLICY_MODE_PERMISSIVE] = "permissive",
};

static int string_table_lookup(const char *const *table, size_t n, const char *s) {
        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                if (table[i] && streq(table[i], s))
                        return (int) i;
        return -EINVAL;
}

const char *policy_action_to_string(PolicyAction a) {
        if (a < 0 || a >= _POLICY_ACTION_MAX)
                return NULL;
        return policy_action_table[a];
}

PolicyAction policy_action_from_string(const char *s) {
        return (PolicyAction) string_table_lookup(policy_action_table, ELEMENTSOF(policy_action_table), s);
}

const char *policy_endpoint_to_string(PolicyEndpoint e) {
        if (e < 0 || e >= _POLICY_ENDPOINT_MAX)
                return NULL;
        return policy_endpoint_table[e];
}

PolicyEndpoint policy_endpoint_from_string(const char *s) {
        return (PolicyEndpoint) string_table_lookup(policy_endpoint_table, ELEMENTSOF(policy_endpoint_table), s);
}

const char *policy_mode_to_string(PolicyMode m) {
        if (m < 0 || m >= _POLICY_MODE_MAX)
                return NULL;
        return policy_mode_table[m];
}

PolicyMode policy_mode_from_string(const char *s) {
        return (PolicyMode) string_table_lookup(policy_mode_table, ELEMENTSOF(policy_mode_table), s);
}

const char *policy_reason_to_string(PolicyReason r) {
        switch (r) {
        case POLICY_REASON_ALLOW_RULE:
                return "allow-rule";
        case POLICY_REASON_DENY_RULE:
                return "deny-rule";
        case POLICY_REASON_NO_MATCH:
                return "no-match";
        case POLICY_REASON_INVALID_QUERY:
                return "invalid-query";
        }
        return NULL;
}

void policy_rule_done(PolicyRule *rule) {
        if (!rule)
                return;
        free(rule->user);
        free(rule->group);
        free(rule->path);
        free(rule->cert);
        free(rule->comment);
        *rule = (PolicyRule) {};
}

void policy_rules_free(PolicyRule *rules, size_t n) {
        if (!rules)
                return;
        for (size_t i = 0; i < n; i++)
                policy_rule_done(rules + i);
        free(rules);
}

static int strdup_optional(const char *s, char **ret) {
        char *c = NULL;

        if (s) {
                c = strdup(s);
                if (!c)
                        return -ENOMEM;
        }
        *ret = c;
        return 0;
}

int policy_rule_copy(const PolicyRule *src, PolicyRule *ret) {
        _cleanup_(policy_rule_done) PolicyRule copy = {};

        if (!src || !ret)
                return -EINVAL;

        copy = *src;
        copy.user = copy.group = copy.path = copy.cert = copy.comment = NULL;
        if (strdup_optional(src->user, &copy.user) < 0 ||
            strdup_optional(src->group, &copy.group) < 0 ||
            strdup_optional(src->path, &copy.path) < 0 ||
            strdup_optional(src->cert, &copy.cert) < 0 ||
            strdup_optional(src->comment, &copy.comment) < 0)
                return -ENOMEM;

        *ret = copy;
        copy = (PolicyRule) {};
        return 0;
}

bool policy_rule_equal(const PolicyRule *a, const PolicyRule *b) {
        if (a == b)
                return true;
        if (!a || !b)
                return false;
        if (a->id != b->id || a->action != b->action || a->selectors != b->selectors ||
            !streq_ptr(a->comment, b->comment))
                return false;
        if ((a->selectors & POLICY_SEL_UID) && (a->uid != b->uid || !streq_ptr(a->user, b->user)))
                return false;
        if ((a->selectors & POLICY_SEL_GID) && (a->gid != b->gid || !streq_ptr(a->group, b->group)))
                return false;
        if ((a->selectors & POLICY_SEL_PATH) && !streq_ptr(a->path, b->path))
                return false;
        if ((a->selectors & POLICY_SEL_SHA256) && memcmp(a->sha256, b->sha256, sizeof a->sha256) != 0)
                return false;
        if ((a->selectors & POLICY_SEL_ENDPOINT) && a->endpoint != b->endpoint)
                return false;
        if ((a->selectors & POLICY_SEL_CERT) && !streq_ptr(a->cert, b->cert))
                return false;
        return true;
}

bool policy_name_is_valid(const char *name) {
        size_t n;
        bool all_digits = true;

        if (isempty(name))
                return false;
        n = strnlen(name, POLICY_NAME_MAX + 1);
        if (n > POLICY_NAME_MAX)
                return false;
        /* "-x" looks like an option, "." and ".." like paths. */
        if (name[0] == '-' || name[0] == '.')
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = name[i];

                if (c >= '0' && c <= '9')
                        continue;
                all_digits = false;
                if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '-' ||
                    c == '.' || c == '@')
                        continue;
                /* Samba machine accounts end in '$'. */
                if (c == '$' && i == n - 1 && i > 0)
                        continue;
                return false;
        }
        /* An all-digit name would be read as a number by too many tools. */
        return !all_digits;
}

bool policy_cert_name_is_valid(const char *name) {
        size_t n;

        if (isempty(name))
                return false;
        n = strnlen(name, POLICY_CERT_NAME_MAX + 1);
        if (n > POLICY_CERT_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = name[i];

                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-'))
                        return false;
        }
        return true;
}

bool policy_path_is_valid(const char *path) {
        size_t n;

        if (!path || path[0] != '/')
                return false;
        n = strnlen(path, POLICY_PATH_MAX);
        if (n >= POLICY_PATH_MAX) /* must fit a PATH_MAX buffer with its NUL */
                return false;
        if (path[n - 1] == '/') /* also refuses "/" itself */
                return false;
        if (!string_is_printable_utf8(path, n))
                return false;
        /* Walk the segments: none may be empty, "." or "..". */
        for (const char *p = path; *p;) {
                const char *seg = p + 1, *e = strchrnul(seg, '/');
                size_t l = (size_t) (e - seg);

                if (l == 0 || (l == 1 && seg[0] == '.') || (l == 2 && seg[0] == '.' && seg[1] == '.'))
                        return false;
                p = e;
        }
        return true;
}

int policy_rule_validate(const PolicyRule *rule, const char **ret_field) {
        const char *field = NULL;

        if (!rule)
                return -EINVAL;

        if (rule->action < 0 || rule->action >= _POLICY_ACTION_MAX)
                field = "action";
        else if (rule->id < 0)
                field = "id";
        else if (rule->selectors == 0 || (rule->selectors & ~(unsigned) _POLICY_SEL_ALL))
                field = "selectors";
        else if (rule->user && (!(rule->selectors & POLICY_SEL_UID) || !policy_name_is_valid(rule->user)))
                field = "user";
        else if ((rule->selectors & POLICY_SEL_UID) && !rule->user && rule->uid == POLICY_ID_UNSET)
                field = "uid";
        else if (rule->group && (!(rule->selectors & POLICY_SEL_GID) || !policy_name_is_valid(rule->group)))
                field = "group";
        else if ((rule->selectors & POLICY_SEL_GID) && !rule->group && rule->gid == POLICY_ID_UNSET)
                field = "gid";
        else if (!!(rule->selectors & POLICY_SEL_PATH) != !!rule->path ||
                 (rule->path && !policy_path_is_valid(rule->path)))
                field = "path";
        else if ((rule->selectors & POLICY_SEL_ENDPOINT) &&
                 (rule->endpoint < 0 || rule->endpoint >= _POLICY_ENDPOINT_MAX))
                field = "endpoint";
        else if (!!(rule->selectors & POLICY_SEL_CERT) != !!rule->cert ||
                 (rule->cert && !policy_cert_name_is_valid(rule->cert)))
                field = "cert";
        else if (rule->comment) {
                size_t n = strnlen(rule->comment, POLICY_COMMENT_MAX + 1);

                if (n > POLICY_COMMENT_MAX || !string_is_printable_utf8(rule->comment, n))
                        field = "comment";
        }

        if (field) {
                if (ret_field)
                        *ret_field = field;
                return -EINVAL;
        }
        return 0;
}

bool policy_rule_is_resolved(const PolicyRule *rule) {
        return rule &&
                (!(rule->selectors & POLICY_SEL_UID) || rule->uid != POLICY_ID_UNSET) &&
                (!(rule->selectors & POLICY_SEL_GID) || rule->gid != POLICY_ID_UNSET);
}

static size_t nss_initial_buffer_size(int which) {
        long l = sysconf(which);

        return l > 0 && (uint64_t) l <= NSS_BUFFER_MAX ? (size_t) l : 1024;
}

static int nss_user_to_uid(const char *name, uint32_t *ret) {
        size_t size = nss_initial_buffer_size(_SC_GETPW_R_SIZE_MAX);

        for (;;) {
                _cleanup_free_ char *buf = malloc(size);
                struct passwd pw, *result = NULL;
                int r;

                if (!buf)
                        return -ENOMEM;
                r = getpwnam_r(name, &pw, buf, size, &result);
                if (r == ERANGE) {
                        if (size >= NSS_BUFFER_MAX)
                                return -ERANGE;
                        size *= 2;
                        continue;
                }
                /* Several "not found" spellings are documented for getpwnam_r(). */
                if ((r == 0 && !result) || r == ENOENT || r == ESRCH)
                        return -ESRCH;
                if (r != 0)
                        return r > 0 ? -r : -EIO;
                if ((uint32_t) pw.pw_uid == POLICY_ID_UNSET)
                        return -EINVAL;
                *ret = (uint32_t) pw.pw_uid;
                return 0;
        }
}

static int nss_group_to_gid(const char *name, uint32_t *ret) {
        size_t size = nss_initial_buffer_size(_SC_GETGR_R_SIZE_MAX);

        for (;;) {
                _cleanup_free_ char *buf = malloc(size);
                struct group gr, *result = NULL;
                int r;

                if (!buf)
                        return -ENOMEM;
                r = getgrnam_r(name, &gr, buf, size, &result);
                if (r == ERANGE) {
                        if (size >= NSS_BUFFER_MAX)
                                return -ERANGE;
                        size *= 2;
                        continue;
                }
                if ((r == 0 && !result) || r == ENOENT || r == ESRCH)
                        return -ESRCH;
                if (r != 0)
                        return r > 0 ? -r : -EIO;
                if ((uint32_t) gr.gr_gid == POLICY_ID_UNSET)
                        return -EINVAL;
                *ret = (uint32_t) gr.gr_gid;
                return 0;
        }
}

int policy_rule_resolve_names(PolicyRule *rule, const char **ret_field) {
        uint32_t uid, gid;
        const char *field = NULL;
        int r = 0;

        if (!rule)
                return -EINVAL;

        uid = rule->uid;
        gid = rule->gid;

        if ((rule->selectors & POLICY_SEL_UID) && rule->user) {
                uint32_t u = POLICY_ID_UNSET;

                if (!policy_name_is_valid(rule->user)) {
                        field = "user";
                        r = -EINVAL;
                        goto fail;
                }
                r = nss_user_to_uid(rule->user, &u);
                if (r < 0) {
                        field = "user";
                        goto fail;
                }
                if (uid != POLICY_ID_UNSET && uid != u) {
                        field = "uid";
                        r = -EINVAL;
                        goto fail;
                }
                uid = u;
        }

        if ((rule->selectors & POLICY_SEL_GID) && rule->group) {
                uint32_t g = POLICY_ID_UNSET;

                if (!policy_name_is_valid(rule->group)) {
                        field = "group";
                        r = -EINVAL;
                        goto fail;
                }
                r = nss_group_to_gid(rule->group, &g);
                if (r < 0) {
                        field = "group";
                        goto fail;
                }
                if (gid != POLICY_ID_UNSET && gid != g) {
                        field = "gid";
                        r = -EINVAL;
                        goto fail;
                }
                gid = g;
        }

        /* Only now, so a failure leaves the rule as it was. */
        rule->uid = uid;
        rule->gid = gid;
        return 0;

fail:
        if (ret_field)
                *ret_field = field;
        return r;
}

/*
 * A compact, cache-friendly digest of one rule for a branch-light first
 * pass: a rule whose digest does not fit the query cannot match; one that
 * fits is then checked exactly (path compare, supplementary gids).
 */
typedef struct PolicyRuleDigest {
        uint32_t selectors;
        uint32_t uid;
        uint32_t gid;
        uint32_t endpoint;
        uint64_t path_hash;     /* path_hash() of the path */
        uint64_t sha256_head;   /* first 8 bytes of the hash */
        uint64_t cert_hash;     /* path_hash() of the certificate name */
} PolicyRuleDigest;

struct PolicySnapshot {
        atomic_uint n_ref;
        uint64_t generation;
        PolicyMode mode;
        bool uses_gids;         /* some rule has a gid selector */
        size_t n_rules;
        PolicyRuleDigest *digests; /* n_rules, same order, in the same allocation */
        PolicyRule rules[]; /* evaluation order: deny before allow, then ascending id */
};

/* FNV-1a: only a filter, equality is always confirmed by strcmp() (paths and cert names). */
static uint64_t path_hash(const char *p) {
        uint64_t h = UINT64_C(0xcbf29ce484222325);

        for (; *p; p++)
                h = (h ^ (uint8_t) *p) * UINT64_C(0x100000001b3);
        return h;
}

static uint64_t sha256_head(const uint8_t *sha256) {
        uint64_t h;

        memcpy(&h, sha256, sizeof h);
        return h;
}

/* One bit per gid (mod 64): a gid whose bit is clear is certainly not among the query's. */
static uint64_t gid_bit(uint32_t gid) {
        return UINT64_C(1) << (gid & 63);
}

/* Deny first, then lowest id, then input order: the first match decides. */
static int rule_order_cmp(const PolicyRule *a, size_t ia, const PolicyRule *b, size_t ib) {
        if (a->action != b->action)
                return a->action == POLICY_ACTION_DENY ? -1 : 1;
        if (a->id != b->id)
                return a->id < b->id ? -1 : 1;
        return ia < ib ? -1 : ia > ib;
}

int policy_snapshot_new(PolicyRule *rules, size_t n_rules, uint64_t generation, PolicyMode mode,
                        PolicySnapshot **ret) {
        _cleanup_free_ size_t *order = NULL;
        PolicySnapshot *s;
        size_t size;

        if (!ret || (!rules && n_rules > 0) || n_rules > POLICY_RULES_MAX)
                return -EINVAL;
        if (mode < 0 || mode >= _POLICY_MODE_MAX)
                return -EINVAL;
        for (size_t i = 0; i < n_rules; i++)
                if (policy_rule_validate(&rules[i], NULL) < 0 || !policy_rule_is_resolved(&rules[i]))
                        return -EINVAL;

        if (!size_mul_ok(n_rules, sizeof(PolicyRule) + sizeof(PolicyRuleDigest), &size) ||
            !size_add_ok(size, sizeof(PolicySnapshot), &size))
                return -ENOMEM;

        /* Insertion sort of indices would be quadratic at POLICY_RULES_MAX: use a merge sort. */
        if (n_rules > 0) {
                _cleanup_free_ size_t *tmp = NULL;

                order = malloc(n_rules * sizeof(size_t));
                tmp = malloc(n_rules * sizeof(size_t));
                if (!order || !tmp)
                        return -ENOMEM;
                for (size_t i = 0; i < n_rules; i++)
                        order[i] = i;
                for (size_t width = 1; width < n_rules; width *= 2) {
                        for (size_t lo = 0; lo < n_rules; lo += 2 * width) {
                                size_t mid = MIN(lo + width, n_rules), hi = MIN(lo + 2 * width, n_rules);
                                size_t i = lo, j = mid, k = lo;

                                while (i < mid && j < hi)
                                        tmp[k++] = rule_order_cmp(&rules[order[i]], order[i],
                                                                  &rules[order[j]], order[j]) <= 0
                                                ? order[i++] : order[j++];
                                while (i < mid)
                                        tmp[k++] = order[i++];
                                while (j < hi)
                                        tmp[k++] = order[j++];
                        }
                        memcpy(order, tmp, n_rules * sizeof(size_t));
                }
        }

        s = malloc(size);
        if (!s)
                return -ENOMEM;
        *s = (PolicySnapshot) {
                .generation = generation,
                .mode = mode,
                .n_rules = n_rules,
        };
        atomic_init(&s->n_ref, 1);
        /* sizeof(PolicyRule) is a multiple of 8, so the digests that follow are aligned. */
        s->digests = (PolicyRuleDigest *) (void *) &s->rules[n_rules];
        for (size_t i = 0; i < n_rules; i++) {
                const PolicyRule *r = &rules[order[i]];

                s->rules[i] = *r;
                if (r->selectors & POLICY_SEL_GID)
                        s->uses_gids = true;
                s->digests[i] = (PolicyRuleDigest) {
                        .selectors = r->selectors,
                        .uid = r->uid,
                        .gid = r->gid,
                        .endpoint = (uint32_t) r->endpoint,
                        .path_hash = (r->selectors & POLICY_SEL_PATH) ? path_hash(r->path) : 0,
                        .sha256_head = sha256_head(r->sha256),
                        .cert_hash = (r->selectors & POLICY_SEL_CERT) ? path_hash(r->cert) : 0,
                };
        }

        /* The strings now belong to the snapshot; the array itself is no longer needed. */
        free(rules);
        *ret = s;
        return 0;
}

PolicySnapshot *policy_snapshot_ref(PolicySnapshot *s) {
        if (!s)
                return NULL;
        unsigned prev = atomic_fetch_add_explicit(&s->n_ref, 1, memory_order_relaxed);
        if (_unlikely_(prev == 0 || prev == UINT_MAX))
                abort(); /* use after free or overflow: never continue */
        return s;
}

PolicySnapshot *policy_snapshot_unref(PolicySnapshot *s) {
        if (!s)
                return NULL;
        unsigned prev = atomic_fetch_sub_explicit(&s->n_ref, 1, memory_order_release);
        if (_unlikely_(prev == 0))
                abort();
        if (prev > 1)
                return NULL;
        /* Pairs with the release above: see every write made before other unrefs. */
        atomic_thread_fence(memory_order_acquire);
        for (size_t i = 0; i < s->n_rules; i++)
                policy_rule_done(&s->rules[i]);
        free(s);
        return NULL;
}

bool policy_snapshot_uses_gids(const PolicySnapshot *s) {
        /* Unknown: assume the groups matter. */
        return !s || s->uses_gids;
}

uint64_t policy_snapshot_generation(const PolicySnapshot *s) {
        return s ? s->generation : 0;
}

PolicyMode policy_snapshot_mode(const PolicySnapshot *s) {
        return s ? s->mode : POLICY_MODE_ENFORCE;
}

size_t policy_snapshot_n_rules(const PolicySnapshot *s) {
        return s ? s->n_rules : 0;
}

const PolicyRule *policy_snapshot_rule(const PolicySnapshot *s, size_t i) {
        if (!s || i >= s->n_rules)
                return NULL;
        return &s->rules[i];
}

static bool query_has_gid(const PolicyQuery *q, uint32_t gid) {
        if (q->gid == gid)
                return true;
        for (size_t i = 0; i < q->n_supplementary_gids; i++)
                if (q->supplementary_gids[i] == gid)
                        return true;
        return false;
}

static bool rule_matches(const PolicyRule *r, const PolicyQuery *q) {
        unsigned sel = r->selectors;

        /* Cheap integer selectors first, the string compare last. */
        if ((sel & POLICY_SEL_UID) && r->uid != q->uid)
                return false;
        if ((sel & POLICY_SEL_ENDPOINT) && r->endpoint != q->endpoint)
                return false;
        if ((sel & POLICY_SEL_SHA256) &&
            (!q->exe_sha256 || memcmp(r->sha256, q->exe_sha256, SHA256_DIGEST_LEN) != 0))
                return false;
        if ((sel & POLICY_SEL_GID) && !query_has_gid(q, r->gid))
                return false;
        if ((sel & POLICY_SEL_PATH) && (!q->exe_path || strcmp(r->path, q->exe_path) != 0))
                return false;
        if ((sel & POLICY_SEL_CERT) && (!q->cert_name || strcmp(r->cert, q->cert_name) != 0))
                return false;
        return true;
}

void policy_evaluate(const PolicySnapshot *s, const PolicyQuery *q, PolicyVerdict *ret) {
        PolicyVerdict v = {
                .allow = false,
                .admit = false,
                .reason = POLICY_REASON_INVALID_QUERY,
                .generation = s ? s->generation : 0,
        };
        uint64_t q_path_hash = 0, q_sha256_head = 0, q_cert_hash = 0, q_gids;
        uint32_t unknown = 0;

        if (!ret)
                return;

        /* An unusable query is a doubt, and a doubt is a denial in every mode. */
        if (!s || !q || q->endpoint < 0 || q->endpoint >= _POLICY_ENDPOINT_MAX ||
            q->uid == POLICY_ID_UNSET || q->gid == POLICY_ID_UNSET ||
            (q->n_supplementary_gids > 0 && !q->supplementary_gids)) {
                *ret = v;
                return;
        }

        /* Per query, once: what the digests are compared with. */
        if (q->exe_path)
                q_path_hash = path_hash(q->exe_path);
        else
                unknown |= POLICY_SEL_PATH;
        if (q->exe_sha256)
                q_sha256_head = sha256_head(q->exe_sha256);
        else
                unknown |= POLICY_SEL_SHA256;
        if (q->cert_name)
                q_cert_hash = path_hash(q->cert_name);
        else
                unknown |= POLICY_SEL_CERT;
        q_gids = gid_bit(q->gid);
        for (size_t i = 0; i < q->n_supplementary_gids; i++)
                q_gids |= gid_bit(q->supplementary_gids[i]);

        v.reason = POLICY_REASON_NO_MATCH;
        /* Rules are stored deny-first and by ascending id, so the first match decides. */
        for (size_t i = 0; i < s->n_rules; i++) {
                const PolicyRuleDigest *d = &s->digests[i];
                uint64_t miss;

                /*
                 * Non-zero if a selector certainly fails. Masks from the selector bits
                 * instead of ifs: a branch per selector mispredicts on mixed rule sets.
                 */
                uint64_t sel = d->selectors;
#define SEL_MASK(bit) (-(uint64_t) !!(sel & (bit)))
                miss = (sel & unknown) |
                        ((uint64_t) (d->uid ^ q->uid) & SEL_MASK(POLICY_SEL_UID)) |
                        ((uint64_t) (d->endpoint ^ (uint32_t) q->endpoint) & SEL_MASK(POLICY_SEL_ENDPOINT)) |
                        (gid_bit(d->gid) & ~q_gids & SEL_MASK(POLICY_SEL_GID)) |
                        ((d->path_hash ^ q_path_hash) & SEL_MASK(POLICY_SEL_PATH)) |
                        ((d->sha256_head ^ q_sha256_head) & SEL_MASK(POLICY_SEL_SHA256)) |
                        ((d->cert_hash ^ q_cert_hash) & SEL_MASK(POLICY_SEL_CERT));
#undef SEL_MASK
                if (_likely_(miss != 0))
                        continue;

                const PolicyRule *r = &s->rules[i];
                if (!rule_matches(r, q))
                        continue;
                v.rule = r;
                v.allow = r->action == POLICY_ACTION_ALLOW;
                v.reason = v.allow ? POLICY_REASON_ALLOW_RULE : POLICY_REASON_DENY_RULE;
                break;
        }

        v.admit = v.allow ||
                (s->mode == POLICY_MODE_PERMISSIVE && q->endpoint != POLICY_ENDPOINT_CONTROL);
        *ret = v;
}
