/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <stdarg.h>

#include "policy-json.h"

#define POLICY_JSON_FORMAT "secd-policy"
#define POLICY_JSON_VERSION 1
/* document -> "rules" array -> rule object -> value: anything deeper is hostile. */
#define POLICY_JSON_DEPTH_MAX 8
/* How much of an unknown key a message quotes. */
#define KEY_QUOTE_MAX 64

#define STR_IN_SET(s, ...) strv_contains((const char *const[]) { __VA_ARGS__, NULL }, (s))

static bool strv_contains(const char *const *strv, const char *s) {
        for (; *strv; strv++)
                if (streq(*strv, s))
                        return true;
        return false;
}

static void json_object_unrefp(json_object **o) {
        if (*o)
                json_object_put(*o);
}

static void json_tokener_freep(json_tokener **t) {
        if (*t)
                json_tokener_free(*t);
}

static void rule_array_free(PolicyRule *rules, size_t n) {
        if (!rules)
                return;
        for (size_t i = 0; i < n; i++)
                policy_rule_done(&rules[i]);
        free(rules);
}

/*
 * Store "<prefix>.<field>: <message>" in *ret_error (if non-NULL) and return
 * r, or -ENOMEM when even the message cannot be allocated.
 */
_printf_(5, 6)
static int json_error(char **ret_error, int r, const char *prefix, const char *field, const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL;
        char *full;
        va_list ap;
        int k;

        if (!ret_error)
                return r;

        va_start(ap, fmt);
        k = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (k < 0)
                return -ENOMEM;

        if (prefix && field)
                k = asprintf(&full, "%s.%s: %s", prefix, field, msg);
        else
                k = asprintf(&full, "%s: %s", prefix ?: field ?: "rule", msg);
        if (k < 0)
                return -ENOMEM;

        *ret_error = full;
        return r;
}

/* A key from the input, made safe to quote in a message: printable ASCII, bounded. */
static void quote_key(const char *key, char out[static KEY_QUOTE_MAX + 4]) {
        size_t i;

        if (!key[0]) {
                strcpy(out, "\"\"");
                return;
        }
        for (i = 0; key[i] && i < KEY_QUOTE_MAX; i++)
                out[i] = key[i] >= 0x20 && key[i] < 0x7f && key[i] != '"' && key[i] != '\\' ? key[i] : '?';
        if (key[i])
                out[i++] = '.', out[i++] = '.', out[i++] = '.';
        out[i] = '\0';
}

static int json_get_string(json_object *v, const char *prefix, const char *field, size_t max,
                           const char **ret, char **ret_error) {
        const char *s;
        int len;

        if (!json_object_is_type(v, json_type_string))
                return json_error(ret_error, -EINVAL, prefix, field, "expected a string");
        s = json_object_get_string(v);
        len = json_object_get_string_len(v);
        if (!s || len < 0)
                return json_error(ret_error, -EINVAL, prefix, field, "expected a string");
        /* json-c keeps "\u0000" inside the string: a C string would silently end there. */
        if (memchr(s, 0, (size_t) len))
                return json_error(ret_error, -EINVAL, prefix, field, "contains a NUL character");
        if ((size_t) len > max)
                return json_error(ret_error, -EINVAL, prefix, field, "longer than %zu bytes", max);
        *ret = s;
        return 0;
}

static int json_get_id32(json_object *v, const char *prefix, const char *field, uint32_t *ret,
                         char **ret_error) {
        int64_t i;

        /* json-c keeps integers above INT64_MAX as uint64; get_int64 clamps them to INT64_MAX. */
        if (!json_object_is_type(v, json_type_int))
                return json_error(ret_error, -EINVAL, prefix, field,
                                  "expected an integer between 0 and %" PRIu32, POLICY_ID_UNSET - 1);
        i = json_object_get_int64(v);
        if (i < 0 || i >= (int64_t) POLICY_ID_UNSET)
                return json_error(ret_error, -EINVAL, prefix, field,
                                  "expected an integer between 0 and %" PRIu32, POLICY_ID_UNSET - 1);
        *ret = (uint32_t) i;
        return 0;
}

static int json_dup_string(json_object *v, const char *prefix, const char *field, size_t max,
                           char **ret, char **ret_error) {
        const char *s;
        char *c;
        int r;

        r = json_get_string(v, prefix, field, max, &s, ret_error);
        if (r < 0)
                return r;
        c = strdup(s);
        if (!c)
                return -ENOMEM;
        free(*ret);
        *ret = c;
        return 0;
}

static const char *validate_field_message(const char *field) {
        static const struct {
                const char *field;
                const char *message;
        } table[] = {
                { "action", "expected \"allow\" or \"deny\"" },
                { "id", "expected a positive integer" },
                { "user", "expected a user name: 1-" STRINGIFY(POLICY_NAME_MAX) " characters of A-Z a-z 0-9 _ . @ -, not all digits" },
                { "group", "expected a group name: 1-" STRINGIFY(POLICY_NAME_MAX) " characters of A-Z a-z 0-9 _ . @ -, not all digits" },
                { "uid", "expected a user id" },
                { "gid", "expected a group id" },
                { "path", "expected an absolute, normalised path (no \"//\", \"/./\", \"/../\" or trailing \"/\") shorter than " STRINGIFY(POLICY_PATH_MAX) " bytes, printable UTF-8" },
                { "endpoint", "expected \"data\", \"tcp\", \"enroll\" or \"control\"" },
                { "cert", "expected a certificate name: 1-" STRINGIFY(POLICY_CERT_NAME_MAX) " characters of A-Z a-z 0-9 . _ -" },
                { "comment", "expected printable UTF-8 of at most " STRINGIFY(POLICY_COMMENT_MAX) " bytes" },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (streq(table[i].field, field))
                        return table[i].message;
        return "invalid value";
}

int policy_rule_from_json(json_object *o, bool allow_id, const char *prefix, PolicyRule *ret,
                          char **ret_error) {
        _cleanup_(policy_rule_done) PolicyRule rule = {
                .uid = POLICY_ID_UNSET,
                .gid = POLICY_ID_UNSET,
        };
        bool have_action = false;
        const char *field;
        int r;

        if (!ret)
                return -EINVAL;
        if (!json_object_is_type(o, json_type_object))
                return json_error(ret_error, -EINVAL, prefix, NULL, "expected an object");

        json_object_object_foreach(o, key, v) {
                const char *s;

                if (streq(key, "id")) {
                        int64_t id;

                        if (!allow_id)
                                return json_error(ret_error, -EINVAL, prefix, key, "not accepted here (ids are assigned by secd)");
                        /* INT64_MAX is also what json-c reports for anything larger. */
                        if (!json_object_is_type(v, json_type_int) ||
                            (id = json_object_get_int64(v)) <= 0 || id == INT64_MAX)
                                return json_error(ret_error, -EINVAL, prefix, key, "expected a positive integer");
                        rule.id = id;

                } else if (streq(key, "action")) {
                        r = json_get_string(v, prefix, key, 16, &s, ret_error);
                        if (r < 0)
                                return r;
                        rule.action = policy_action_from_string(s);
                        if (rule.action < 0)
                                return json_error(ret_error, -EINVAL, prefix, key, "%s", validate_field_message(key));
                        have_action = true;

                } else if (streq(key, "user") || streq(key, "group")) {
                        bool user = key[0] == 'u';
                        char **name = user ? &rule.user : &rule.group;

                        r = json_dup_string(v, prefix, key, POLICY_NAME_MAX, name, ret_error);
                        if (r < 0)
                                return r;
                        if (!policy_name_is_valid(*name))
                                return json_error(ret_error, -EINVAL, prefix, key, "%s", validate_field_message(key));
                        rule.selectors |= user ? POLICY_SEL_UID : POLICY_SEL_GID;

                } else if (streq(key, "uid") || streq(key, "gid")) {
                        bool uid = key[0] == 'u';

                        r = json_get_id32(v, prefix, key, uid ? &rule.uid : &rule.gid, ret_error);
                        if (r < 0)
                                return r;
                        rule.selectors |= uid ? POLICY_SEL_UID : POLICY_SEL_GID;

                } else if (streq(key, "path")) {
                        r = json_dup_string(v, prefix, key, POLICY_PATH_MAX - 1, &rule.path, ret_error);
                        if (r < 0)
                                return r;
                        if (!policy_path_is_valid(rule.path))
                                return json_error(ret_error, -EINVAL, prefix, key, "%s", validate_field_message(key));
                        rule.selectors |= POLICY_SEL_PATH;

                } else if (streq(key, "sha256")) {
                        if (!json_object_is_type(v, json_type_string))
                                return json_error(ret_error, -EINVAL, prefix, key, "expected a string");
                        /* hex_decode_exact() wants exactly 64 characters: an embedded NUL fails the length. */
                        if (json_object_get_string_len(v) != SHA256_HEX_LEN ||
                            hex_decode_exact(json_object_get_string(v), rule.sha256, sizeof rule.sha256) < 0)
                                return json_error(ret_error, -EINVAL, prefix, key, "expected 64 hexadecimal characters");
                        rule.selectors |= POLICY_SEL_SHA256;

                } else if (streq(key, "endpoint")) {
                        r = json_get_string(v, prefix, key, 16, &s, ret_error);
                        if (r < 0)
                                return r;
                        rule.endpoint = policy_endpoint_from_string(s);
                        if (rule.endpoint < 0)
                                return json_error(ret_error, -EINVAL, prefix, key, "%s", validate_field_message(key));
                        rule.selectors |= POLICY_SEL_ENDPOINT;

                } else if (streq(key, "cert")) {
                        r = json_dup_string(v, prefix, key, POLICY_CERT_NAME_MAX, &rule.cert, ret_error);
                        if (r < 0)
                                return r;
                        if (!policy_cert_name_is_valid(rule.cert))
                                return json_error(ret_error, -EINVAL, prefix, key, "%s", validate_field_message(key));
                        rule.selectors |= POLICY_SEL_CERT;

                } else if (streq(key, "comment")) {
                        r = json_dup_string(v, prefix, key, POLICY_COMMENT_MAX, &rule.comment, ret_error);
                        if (r < 0)
                                return r;
                        if (!string_is_printable_utf8(rule.comment, strlen(rule.comment)))
                                return json_error(ret_error, -EINVAL, prefix, key, "%s", validate_field_message(key));

                } else {
                        char q[KEY_QUOTE_MAX + 4];

                        quote_key(key, q);
                        return json_error(ret_error, -EINVAL, prefix, q, "unknown field");
                }
        }

        if (!have_action)
                return json_error(ret_error, -EINVAL, prefix, "action", "missing");
        if (rule.selectors == 0)
                return json_error(ret_error, -EINVAL, prefix, NULL,
                                  "a rule needs at least one selector (user, uid, group, gid, path, sha256, endpoint, cert)");

        /* The same checks as for rules built in C, so both paths agree. */
        r = policy_rule_validate(&rule, &field);
        if (r < 0)
                return json_error(ret_error, r, prefix, field, "%s", validate_field_message(field));

        *ret = rule;
        rule = (PolicyRule) {};
        return 0;
}

static int json_add(json_object *o, const char *key, json_object *v) {
        if (!v)
                return -ENOMEM;
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

int policy_rule_to_json(const PolicyRule *rule, json_object **ret) {
        _cleanup_(json_object_unrefp) json_object *o = NULL;
        int r;

        if (!rule || !ret)
                return -EINVAL;
        r = policy_rule_validate(rule, NULL);
        if (r < 0)
                return r;

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;

        if (rule->id > 0 && json_add(o, "id", json_object_new_int64(rule->id)) < 0)
                return -ENOMEM;
        if (json_add(o, "action", json_object_new_string(policy_action_to_string(rule->action))) < 0)
                return -ENOMEM;
        if (rule->selectors & POLICY_SEL_UID) {
                if (rule->user && json_add(o, "user", json_object_new_string(rule->user)) < 0)
                        return -ENOMEM;
                if (rule->uid != POLICY_ID_UNSET && json_add(o, "uid", json_object_new_int64(rule->uid)) < 0)
                        return -ENOMEM;
        }
        if (rule->selectors & POLICY_SEL_GID) {
                if (rule->group && json_add(o, "group", json_object_new_string(rule->group)) < 0)
                        return -ENOMEM;
                if (rule->gid != POLICY_ID_UNSET && json_add(o, "gid", json_object_new_int64(rule->gid)) < 0)
                        return -ENOMEM;
        }
        if ((rule->selectors & POLICY_SEL_PATH) && json_add(o, "path", json_object_new_string(rule->path)) < 0)
                return -ENOMEM;
        if (rule->selectors & POLICY_SEL_SHA256) {
                char hex[SHA256_HEX_LEN + 1];

                hex_encode(rule->sha256, sizeof rule->sha256, hex);
                if (json_add(o, "sha256", json_object_new_string(hex)) < 0)
                        return -ENOMEM;
        }
        if ((rule->selectors & POLICY_SEL_ENDPOINT) &&
            json_add(o, "endpoint", json_object_new_string(policy_endpoint_to_string(rule->endpoint))) < 0)
                return -ENOMEM;
        if ((rule->selectors & POLICY_SEL_CERT) && json_add(o, "cert", json_object_new_string(rule->cert)) < 0)
                return -ENOMEM;
        if (rule->comment && json_add(o, "comment", json_object_new_string(rule->comment)) < 0)
                return -ENOMEM;

        *ret = TAKE_PTR(o);
        return 0;
}

int policy_json_export(const PolicyRule *rules, size_t n, PolicyMode mode, char **ret) {
        _cleanup_(json_object_unrefp) json_object *doc = NULL;
        json_object *array;
        const char *text;
        size_t len;
        char *copy;
        int r;

        if (!ret || (!rules && n > 0) || mode < 0 || mode >= _POLICY_MODE_MAX)
                return -EINVAL;
        if (n > POLICY_RULES_MAX)
                return -E2BIG;

        doc = json_object_new_object();
        if (!doc)
                return -ENOMEM;
        if (json_add(doc, "format", json_object_new_string(POLICY_JSON_FORMAT)) < 0 ||
            json_add(doc, "version", json_object_new_int(POLICY_JSON_VERSION)) < 0 ||
            json_add(doc, "mode", json_object_new_string(policy_mode_to_string(mode))) < 0)
                return -ENOMEM;
        array = json_object_new_array_ext((int) MAX(n, (size_t) 1));
        r = json_add(doc, "rules", array);
        if (r < 0)
                return r;

        for (size_t i = 0; i < n; i++) {
                json_object *o;

                r = policy_rule_to_json(&rules[i], &o);
                if (r < 0)
                        return r;
                if (json_object_array_add(array, o) < 0) {
                        json_object_put(o);
                        return -ENOMEM;
                }
        }

        text = json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                                   JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!text)
                return -ENOMEM;
        len = strlen(text);
        /* Never write a document that import would refuse. */
        if (len + 1 > POLICY_JSON_MAX)
                return -E2BIG;
        copy = malloc(len + 2);
        if (!copy)
                return -ENOMEM;
        memcpy(copy, text, len);
        copy[len] = '\n';
        copy[len + 1] = '\0';
        *ret = copy;
        return 0;
}

/*
 * What json-c would let through even in strict mode: it keeps object keys as
 * C strings, so "act\u0000junk" would silently become "act", and it accepts
 * single-quoted strings. A small scan outside json-c refuses both; *ret_offset
 * is where.
 */
static const char *json_text_precheck(const char *text, size_t len, size_t *ret_offset) {
        bool in_string = false;

        for (size_t i = 0; i < len; i++) {
                char c = text[i];

                if (!in_string) {
                        if (c == '"')
                                in_string = true;
                        else if (c == '\'') {
                                *ret_offset = i;
                                return "single-quoted strings are not JSON";
                        }
                        continue;
                }
                if (c == '"')
                        in_string = false;
                else if (c == '\\') {
                        if (i + 5 < len && text[i + 1] == 'u' && memcmp(text + i + 2, "0000", 4) == 0) {
                                *ret_offset = i;
                                return "escaped NUL character (\\u0000)";
                        }
                        i++; /* skip the escaped character, '"' and '\\' included */
                }
        }
        return NULL;
}

static bool is_json_space(char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int policy_json_import(const char *text, size_t len, PolicyRule **ret_rules, size_t *ret_n,
                       PolicyMode *ret_mode, char **ret_error) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        _cleanup_(json_object_unrefp) json_object *doc = NULL;
        json_object *format = NULL, *version = NULL, *mode_json = NULL, *rules_json = NULL;
        PolicyRule *rules = NULL;
        PolicyMode mode;
        const char *s, *nul, *bad;
        size_t end, n, offset = 0;
        int r;

        if ((!text && len > 0) || !ret_rules || !ret_n)
                return -EINVAL;
        if (len > POLICY_JSON_MAX)
                return json_error(ret_error, -E2BIG, "document", NULL, "larger than %" PRIu64 " bytes",
                                  POLICY_JSON_MAX);
        nul = len > 0 ? memchr(text, 0, len) : NULL;
        if (nul)
                return json_error(ret_error, -EINVAL, "document", NULL, "contains a NUL byte at offset %zu",
                                  (size_t) (nul - text));
        bad = json_text_precheck(text, len, &offset);
        if (bad)
                return json_error(ret_error, -EINVAL, "document", NULL, "%s at offset %zu", bad, offset);

        /* Only an object is a policy; json-c would also wait for more after "null" or "42". */
        for (end = 0; end < len && is_json_space(text[end]); end++)
                ;
        if (end < len && text[end] != '{')
                return json_error(ret_error, -EINVAL, "document", NULL, "expected an object");

        tok = json_tokener_new_ex(POLICY_JSON_DEPTH_MAX);
        if (!tok)
                return -ENOMEM;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);

        /* POLICY_JSON_MAX fits an int, which is what json-c takes. */
        doc = json_tokener_parse_ex(tok, len > 0 ? text : "", (int) len);
        if (!doc) {
                enum json_tokener_error jerr = json_tokener_get_error(tok);

                if (jerr == json_tokener_continue)
                        return json_error(ret_error, -EINVAL, "document", NULL, "truncated JSON");
                return json_error(ret_error, -EINVAL, "document", NULL, "invalid JSON at offset %zu: %s",
                                  json_tokener_get_parse_end(tok), json_tokener_error_desc(jerr));
        }
        end = json_tokener_get_parse_end(tok);
        while (end < len && is_json_space(text[end]))
                end++;
        if (end != len)
                return json_error(ret_error, -EINVAL, "document", NULL, "trailing data at offset %zu", end);
        if (!json_object_is_type(doc, json_type_object))
                return json_error(ret_error, -EINVAL, "document", NULL, "expected an object");

        json_object_object_foreach(doc, key, v) {
                (void) v;
                if (!STR_IN_SET(key, "format", "version", "mode", "rules")) {
                        char q[KEY_QUOTE_MAX + 4];

                        quote_key(key, q);
                        return json_error(ret_error, -EINVAL, q, NULL, "unknown field");
                }
        }

        /* get_ex() tells a present null (NULL value) from a missing key. */
        if (!json_object_object_get_ex(doc, "format", &format))
                return json_error(ret_error, -EINVAL, "format", NULL, "missing");
        if (!json_object_is_type(format, json_type_string) ||
            !streq(json_object_get_string(format), POLICY_JSON_FORMAT))
                return json_error(ret_error, -EINVAL, "format", NULL, "expected \"" POLICY_JSON_FORMAT "\"");
        if (!json_object_object_get_ex(doc, "version", &version))
                return json_error(ret_error, -EINVAL, "version", NULL, "missing");
        if (!json_object_is_type(version, json_type_int) || json_object_get_int64(version) != POLICY_JSON_VERSION)
                return json_error(ret_error, -EINVAL, "version", NULL, "unsupported, expected %d", POLICY_JSON_VERSION);
        if (!json_object_object_get_ex(doc, "mode", &mode_json))
                return json_error(ret_error, -EINVAL, "mode", NULL, "missing");
        r = json_get_string(mode_json, "mode", NULL, 16, &s, ret_error);
        if (r < 0)
                return r;
        mode = policy_mode_from_string(s);
        if (mode < 0)
                return json_error(ret_error, -EINVAL, "mode", NULL, "expected \"enforce\" or \"permissive\"");
        if (!json_object_object_get_ex(doc, "rules", &rules_json))
                return json_error(ret_error, -EINVAL, "rules", NULL, "missing");
        if (!json_object_is_type(rules_json, json_type_array))
                return json_error(ret_error, -EINVAL, "rules", NULL, "expected an array");

        n = json_object_array_length(rules_json);
        if (n > POLICY_RULES_MAX)
                return json_error(ret_error, -E2BIG, "rules", NULL, "more than %d rules", POLICY_RULES_MAX);

        rules = calloc(MAX(n, (size_t) 1), sizeof(PolicyRule));
        if (!rules)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                char prefix[32];

                (void) snprintf(prefix, sizeof prefix, "rules[%zu]", i);
                r = policy_rule_from_json(json_object_array_get_idx(rules_json, i), true, prefix, &rules[i],
                                          ret_error);
                if (r < 0) {
                        rule_array_free(rules, i);
                        return r;
                }
                rules[i].id = 0; /* ids are the store's: an import gets new ones */
        }

        *ret_rules = rules;
        *ret_n = n;
        if (ret_mode)
                *ret_mode = mode;
        return 0;
}

int policy_json_resolve_names(PolicyRule *rules, size_t n, char **ret_error) {
        if (!rules && n > 0)
                return -EINVAL;

        for (size_t i = 0; i < n; i++) {
                const char *field = NULL;
                char prefix[32];
                int r;

                r = policy_rule_resolve_names(&rules[i], &field);
                if (r >= 0)
                        continue;

                (void) snprintf(prefix, sizeof prefix, "rules[%zu]", i);
                if (r == -ENOMEM)
                        return r;
                if (!field)
                        return json_error(ret_error, r, prefix, NULL, "cannot resolve names: %s", strerror(-r));
                if (r == -ESRCH)
                        return json_error(ret_error, r, prefix, field, "unknown %s \"%s\"", field,
                                          streq(field, "user") ? rules[i].user : rules[i].group);
                if (r == -EINVAL && streq(field, "uid"))
                        return json_error(ret_error, r, prefix, field, "%" PRIu32 " is not the uid of user \"%s\"",
                                          rules[i].uid, rules[i].user);
                if (r == -EINVAL && streq(field, "gid"))
                        return json_error(ret_error, r, prefix, field, "%" PRIu32 " is not the gid of group \"%s\"",
                                          rules[i].gid, rules[i].group);
                return json_error(ret_error, r, prefix, field, "cannot resolve: %s", strerror(-r));
        }
        return 0;
}
