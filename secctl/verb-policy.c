/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * secctl policy list|allow|deny|remove|mode|test|export|import: the
 * io.secd.Policy interface (secd/interfaces/io.secd.Policy.varlink).
 */
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>

#include "log.h"
#include "secctl.h"

#define SHA256_SHORT_LEN 12

/* ---- selectors ---- */

int ctl_selectors_resolve_binary(CtlSelectors *sel) {
        _cleanup_free_ char *abs = NULL;
        int r;

        if (!sel->binary || sel->binary_path)
                return 0;

        /* The kernel reports /proc/<pid>/exe with symlinks resolved: record that path. */
        abs = realpath(sel->binary, NULL);
        if (!abs) {
                log_error("Cannot use --binary %s: %m.", sel->binary);
                return CTL_EXIT_USAGE;
        }
        r = ctl_validate_path(abs);
        if (r < 0) {
                log_error("Cannot use --binary %s: its path %s is not usable in a rule.", sel->binary, abs);
                return CTL_EXIT_USAGE;
        }
        r = ctl_hash_file(abs, sel->sha256);
        if (r < 0) {
                log_error("Cannot hash --binary %s: %s.", sel->binary,
                          r == -EBADFD ? "not a regular file" : strerror(-r));
                return CTL_EXIT_USAGE;
        }
        sel->binary_path = TAKE_PTR(abs);
        sel->path = sel->binary_path;
        return 0;
}

static int add_string(json_object *o, const char *key, const char *value) {
        json_object *v;

        if (!value)
                return 0;
        v = json_object_new_string(value);
        if (!v)
                return -ENOMEM;
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static int add_int(json_object *o, const char *key, int64_t value) {
        json_object *v = json_object_new_int64(value);

        if (!v)
                return -ENOMEM;
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static int add_object(json_object *o, const char *key, json_object **value) {
        if (json_object_object_add(o, key, *value) < 0)
                return -ENOMEM;
        *value = NULL;
        return 0;
}

int ctl_policy_add_params(const CtlSelectors *sel, const char *action, json_object **ret) {
        _cleanup_json_ json_object *params = NULL, *rule = NULL;
        int r;

        params = json_object_new_object();
        rule = json_object_new_object();
        if (!params || !rule)
                return -ENOMEM;

        /* Field order follows the Rule type of io.secd.Policy. */
        r = add_string(rule, "action", action);
        if (r >= 0)
                r = add_string(rule, "user", sel->user);
        if (r >= 0 && sel->has_uid)
                r = add_int(rule, "uid", sel->uid);
        if (r >= 0)
                r = add_string(rule, "group", sel->group);
        if (r >= 0 && sel->has_gid)
                r = add_int(rule, "gid", sel->gid);
        if (r >= 0)
                r = add_string(rule, "path", sel->path);
        if (r >= 0 && sel->sha256[0])
                r = add_string(rule, "sha256", sel->sha256);
        if (r >= 0)
                r = add_string(rule, "endpoint", sel->endpoint);
        if (r >= 0)
                r = add_string(rule, "cert", sel->cert);
        if (r >= 0)
                r = add_string(rule, "comment", sel->comment);
        if (r >= 0)
                r = add_object(params, "rule", &rule);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(params);
        return 0;
}

static int check_binary_conflicts(const CtlContext *ctx) {
        if ((ctx->seen & CTL_OPT(CTL_OPT_BINARY)) &&
            (ctx->seen & (CTL_OPT(CTL_OPT_PATH) | CTL_OPT(CTL_OPT_SHA256)))) {
                log_error("--binary sets both the path and the hash; do not combine it with --path or --sha256.");
                return CTL_EXIT_USAGE;
        }
        return 0;
}

static int policy_add(CtlContext *ctx, const char *action) {
        _cleanup_json_ json_object *params = NULL, *reply = NULL;
        const uint64_t selectors = CTL_OPTS_QUERY;
        int64_t id;
        int r;

        if (!(ctx->seen & selectors)) {
                log_error("'policy %s' needs at least one selector: --user, --uid, --group, --gid, --path, "
                          "--sha256, --binary, --endpoint or --cert.", action);
                return CTL_EXIT_USAGE;
        }
        r = check_binary_conflicts(ctx);
        if (r != 0)
                return r;
        r = ctl_selectors_resolve_binary(&ctx->sel);
        if (r != 0)
                return r;

        r = ctl_policy_add_params(&ctx->sel, action, &params);
        if (r < 0)
                return log_oom(), CTL_EXIT_FAILURE;

        r = ctl_call_once(ctx, "io.secd.Policy.Add", params, &reply);
        if (r != 0)
                return r;

        if (ctx->json) {
                ctl_json_print(ctx->out, reply);
                return 0;
        }
        if (ctl_json_get_int(reply, "id", &id) < 0)
                return ctl_bad_reply("io.secd.Policy.Add");
        /* Only the id, so scripts can write id=$(secctl policy allow ...). */
        fprintf(ctx->out, "%" PRId64 "\n", id);
        return 0;
}

int ctl_verb_policy_allow(CtlContext *ctx) {
        return policy_add(ctx, "allow");
}

int ctl_verb_policy_deny(CtlContext *ctx) {
        return policy_add(ctx, "deny");
}

/* ---- list ---- */

static int format_id_name(json_object *rule, const char *name_key, const char *id_key, char *buf, size_t n) {
        const char *name = NULL;
        bool has_id;
        int64_t id;

        if (ctl_json_get_string_opt(rule, name_key, &name) < 0 ||
            ctl_json_get_int_opt(rule, id_key, &has_id, &id) < 0)
                return -EBADMSG;
        if (name && has_id)
                (void) snprintf(buf, n, "%s(%" PRId64 ")", name, id);
        else if (name)
                (void) snprintf(buf, n, "%s", name);
        else if (has_id)
                (void) snprintf(buf, n, "%" PRId64, id);
        else
                buf[0] = '\0';
        return 0;
}

int ctl_policy_rules_table(json_object *rules, bool full, CtlTable **ret) {
        static const char *const headers[] = {
                "ID", "ACTION", "USER/UID", "GROUP/GID", "PATH", "SHA256", "ENDPOINT", "CERT", "COMMENT",
        };
        _cleanup_(ctl_table_freep) CtlTable *t = NULL;
        size_t n;
        int r;

        if (!json_object_is_type(rules, json_type_array))
                return -EBADMSG;
        r = ctl_table_new(ELEMENTSOF(headers), headers, &t);
        if (r < 0)
                return r;

        n = json_object_array_length(rules);
        for (size_t i = 0; i < n; i++) {
                json_object *rule = json_object_array_get_idx(rules, i);
                const char *action = NULL, *path = NULL, *sha256 = NULL, *endpoint = NULL, *cert = NULL,
                           *comment = NULL;
                char id[32], user[CTL_NAME_MAX + 32], group[CTL_NAME_MAX + 32], hash[SHA256_HEX_LEN + 8];
                int64_t v;
                bool has_id;

                if (!json_object_is_type(rule, json_type_object) ||
                    ctl_json_get_int_opt(rule, "id", &has_id, &v) < 0 ||
                    ctl_json_get_string(rule, "action", &action) < 0 ||
                    ctl_json_get_string_opt(rule, "path", &path) < 0 ||
                    ctl_json_get_string_opt(rule, "sha256", &sha256) < 0 ||
                    ctl_json_get_string_opt(rule, "endpoint", &endpoint) < 0 ||
                    ctl_json_get_string_opt(rule, "cert", &cert) < 0 ||
                    ctl_json_get_string_opt(rule, "comment", &comment) < 0 ||
                    format_id_name(rule, "user", "uid", user, sizeof user) < 0 ||
                    format_id_name(rule, "group", "gid", group, sizeof group) < 0)
                        return -EBADMSG;

                if (has_id)
                        (void) snprintf(id, sizeof id, "%" PRId64, v);
                else
                        id[0] = '\0';
                if (!sha256)
                        hash[0] = '\0';
                else if (full || strlen(sha256) <= SHA256_SHORT_LEN)
                        (void) snprintf(hash, sizeof hash, "%.*s", SHA256_HEX_LEN, sha256);
                else
                        (void) snprintf(hash, sizeof hash, "%.*s…", SHA256_SHORT_LEN, sha256);

                r = ctl_table_add_row(t, (const char *const[]) {
                        id, action, user, group, path, hash, endpoint, cert, comment,
                });
                if (r < 0)
                        return r;
        }

        *ret = TAKE_PTR(t);
        return 0;
}

int ctl_verb_policy_list(CtlContext *ctx) {
        _cleanup_json_ json_object *reply = NULL;
        _cleanup_(ctl_table_freep) CtlTable *t = NULL;
        json_object *rules;
        const char *mode;
        int64_t generation;
        size_t n;
        int r;

        r = ctl_call_once(ctx, "io.secd.Policy.List", NULL, &reply);
        if (r != 0)
                return r;
        if (ctx->json) {
                ctl_json_print(ctx->out, reply);
                return 0;
        }

        if (!json_object_object_get_ex(reply, "rules", &rules) ||
            ctl_json_get_string(reply, "mode", &mode) < 0 ||
            ctl_json_get_int(reply, "generation", &generation) < 0)
                return ctl_bad_reply("io.secd.Policy.List");
        r = ctl_policy_rules_table(rules, ctx->full, &t);
        if (r == -ENOMEM)
                return log_oom(), CTL_EXIT_FAILURE;
        if (r < 0)
                return ctl_bad_reply("io.secd.Policy.List");

        (void) ctl_table_print(t, ctx->out, ctx->legend);
        n = ctl_table_rows(t);
        if (ctx->legend)
                fprintf(ctx->out, "\n%zu rule%s, mode %s, generation %" PRId64 "\n", n, n == 1 ? "" : "s",
                        mode, generation);
        return 0;
}

/* ---- remove, mode ---- */

int ctl_verb_policy_remove(CtlContext *ctx) {
        _cleanup_json_ json_object *params = NULL, *reply = NULL;
        uint64_t id;
        int r;

        r = parse_uint64(ctx->args[0], &id);
        if (r < 0 || id == 0 || id > CTL_RULE_ID_MAX) {
                log_error("Invalid rule id '%s': expected a positive decimal number (see 'secctl policy list').",
                          ctx->args[0]);
                return CTL_EXIT_USAGE;
        }

        params = json_object_new_object();
        if (!params || add_int(params, "id", (int64_t) id) < 0)
                return log_oom(), CTL_EXIT_FAILURE;

        r = ctl_call_once(ctx, "io.secd.Policy.Remove", params, &reply);
        if (r != 0)
                return r;
        if (ctx->json)
                ctl_json_print(ctx->out, reply);
        return 0;
}

int ctl_verb_policy_mode(CtlContext *ctx) {
        _cleanup_json_ json_object *params = NULL, *reply = NULL;
        const char *mode = ctx->args[0];
        int r;

        if (!streq(mode, "enforce") && !streq(mode, "permissive")) {
                log_error("Invalid mode '%s': expected enforce or permissive.", mode);
                return CTL_EXIT_USAGE;
        }

        params = json_object_new_object();
        if (!params || add_string(params, "mode", mode) < 0)
                return log_oom(), CTL_EXIT_FAILURE;

        r = ctl_call_once(ctx, "io.secd.Policy.SetMode", params, &reply);
        if (r != 0)
                return r;
        if (ctx->json)
                ctl_json_print(ctx->out, reply);
        return 0;
}

/* ---- test ---- */

/* Does uid have a passwd entry? 1 yes, 0 no, negative errno if NSS failed. */
static int uid_has_passwd_entry(uint32_t uid) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 16384;

        for (;;) {
                struct passwd pw, *pwp = NULL;
                int r;

                free(buf);
                buf = malloc(size);
                if (!buf)
                        return -ENOMEM;
                r = getpwuid_r((uid_t) uid, &pw, buf, size, &pwp);
                if (r == ERANGE && size < (1u << 24)) {
                        size *= 2;
                        continue;
                }
                if (r != 0)
                        return -r;
                return !!pwp;
        }
}

/* Look a user or group name up with the bounded reentrant calls. */
static int lookup_name(bool user, const char *name, uint32_t *ret) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 16384;
        int r;

        for (;;) {
                struct passwd pw, *pwp = NULL;
                struct group gr, *grp = NULL;

                free(buf);
                buf = malloc(size);
                if (!buf)
                        return -ENOMEM;
                if (user)
                        r = getpwnam_r(name, &pw, buf, size, &pwp);
                else
                        r = getgrnam_r(name, &gr, buf, size, &grp);
                if (r == ERANGE && size < (1u << 24)) {
                        size *= 2;
                        continue;
                }
                if (r != 0)
                        return -r;
                if (user ? !pwp : !grp)
                        return -ESRCH;
                *ret = user ? pwp->pw_uid : grp->gr_gid;
                return 0;
        }
}

static int resolve_test_ids(CtlContext *ctx) {
        CtlSelectors *sel = &ctx->sel;
        uint32_t id;
        int r;

        if (!sel->user && !sel->has_uid) {
                log_error("'policy test' needs the client's user: --uid UID or --user NAME.");
                return CTL_EXIT_USAGE;
        }

        if (sel->user) {
                r = lookup_name(true, sel->user, &id);
                if (r < 0) {
                        log_error("Cannot resolve --user %s: %s.", sel->user,
                                  r == -ESRCH ? "no such user" : strerror(-r));
                        return CTL_EXIT_USAGE;
                }
                if (sel->has_uid && sel->uid != id) {
                        log_error("--user %s is uid %" PRIu32 ", but --uid says %" PRIu32 ".", sel->user, id,
                                  sel->uid);
                        return CTL_EXIT_USAGE;
                }
                sel->uid = id;
                sel->has_uid = true;
        }
        if (sel->group) {
                r = lookup_name(false, sel->group, &id);
                if (r < 0) {
                        log_error("Cannot resolve --group %s: %s.", sel->group,
                                  r == -ESRCH ? "no such group" : strerror(-r));
                        return CTL_EXIT_USAGE;
                }
                if (sel->has_gid && sel->gid != id) {
                        log_error("--group %s is gid %" PRIu32 ", but --gid says %" PRIu32 ".", sel->group, id,
                                  sel->gid);
                        return CTL_EXIT_USAGE;
                }
                sel->gid = id;
                sel->has_gid = true;
        }

        /*
         * secd takes a client's supplementary groups from the uid's passwd
         * entry. A uid without one (admission judges kernel credentials, not
         * NSS) is tested with the given group only.
         */
        if (sel->has_gid && !sel->user) {
                r = uid_has_passwd_entry(sel->uid);
                if (r == 0)
                        sel->no_supplementary = true;
        }
        return 0;
}

int ctl_policy_test_params(const CtlSelectors *sel, uint64_t seen, json_object **ret) {
        _cleanup_json_ json_object *params = NULL;
        int r;

        if (!sel->has_uid)
                return -EINVAL;
        params = json_object_new_object();
        if (!params)
                return -ENOMEM;
        r = add_int(params, "uid", sel->uid);
        if (r >= 0 && sel->has_gid)
                r = add_int(params, "gid", sel->gid);
        if (r >= 0 && sel->has_gid && sel->no_supplementary) {
                json_object *gids = json_object_new_array();

                r = gids ? add_object(params, "gids", &gids) : -ENOMEM;
                json_object_put(gids);
        }
        if (r >= 0)
                r = add_string(params, "path", sel->path);
        if (r >= 0 && sel->sha256[0])
                r = add_string(params, "sha256", sel->sha256);
        if (r >= 0)
                r = add_string(params, "endpoint", sel->endpoint);
        if (r >= 0)
                r = add_string(params, "cert", sel->cert);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(params);
        return 0;
}

static void describe_append(FILE *f, const char *key, const char *value, bool quote) {
        if (!value)
                return;
        if (quote) {
                fprintf(f, " %s=\"", key);
                for (const char *p = value; *p; p++)
                        if (*p == '"' || *p == '\\')
                                fprintf(f, "\\%c", *p);
                        else if ((unsigned char) *p < 0x20 || *p == 0x7f)
                                fputc('?', f);
                        else
                                fputc(*p, f);
                fputc('"', f);
        } else
                fprintf(f, " %s=%s", key, value);
}

int ctl_policy_rule_describe(json_object *rule, char **ret) {
        static const char *const string_keys[] = { "user", "group", "path", "sha256", "endpoint", "cert" };
        _cleanup_free_ char *buf = NULL;
        _cleanup_fclose_ FILE *f = NULL;
        const char *action = NULL, *s, *comment = NULL;
        size_t len = 0;
        bool has;
        int64_t v;

        if (!json_object_is_type(rule, json_type_object) || ctl_json_get_string(rule, "action", &action) < 0)
                return -EBADMSG;
        f = open_memstream(&buf, &len);
        if (!f)
                return -ENOMEM;

        if (ctl_json_get_int_opt(rule, "id", &has, &v) < 0)
                return -EBADMSG;
        if (has)
                fprintf(f, "%" PRId64 " ", v);
        fputs(action, f);
        for (size_t i = 0; i < ELEMENTSOF(string_keys); i++) {
                s = NULL;
                if (ctl_json_get_string_opt(rule, string_keys[i], &s) < 0)
                        return -EBADMSG;
                describe_append(f, string_keys[i], s, false);
                if (i < 2) {
                        const char *idkey = i == 0 ? "uid" : "gid";

                        if (ctl_json_get_int_opt(rule, idkey, &has, &v) < 0)
                                return -EBADMSG;
                        if (has)
                                fprintf(f, " %s=%" PRId64, idkey, v);
                }
        }
        if (ctl_json_get_string_opt(rule, "comment", &comment) < 0)
                return -EBADMSG;
        describe_append(f, "comment", comment, true);

        if (fflush(f) != 0 || ferror(f))
                return -ENOMEM;
        f = (fclose(f), NULL);
        *ret = TAKE_PTR(buf);
        return 0;
}

int ctl_verb_policy_test(CtlContext *ctx) {
        _cleanup_json_ json_object *params = NULL, *reply = NULL;
        _cleanup_free_ char *desc = NULL;
        const char *reason = NULL, *mode = NULL;
        json_object *rule = NULL;
        bool allow, admit;
        int64_t generation;
        int r;

        if ((ctx->seen & CTL_OPT(CTL_OPT_BINARY)) && (ctx->seen & CTL_OPT(CTL_OPT_SHA256))) {
                log_error("Give the executable as --binary FILE or as --sha256 HASH, not both.");
                return CTL_EXIT_USAGE;
        }
        r = check_binary_conflicts(ctx);
        if (r != 0)
                return r;
        r = resolve_test_ids(ctx);
        if (r != 0)
                return r;
        r = ctl_selectors_resolve_binary(&ctx->sel);
        if (r != 0)
                return r;

        r = ctl_policy_test_params(&ctx->sel, ctx->seen, &params);
        if (r < 0)
                return log_oom(), CTL_EXIT_FAILURE;
        r = ctl_call_once(ctx, "io.secd.Policy.Test", params, &reply);
        if (r != 0)
                return r;

        if (ctl_json_get_bool(reply, "allow", &allow) < 0 || ctl_json_get_bool(reply, "admit", &admit) < 0 ||
            ctl_json_get_string(reply, "reason", &reason) < 0 || ctl_json_get_string(reply, "mode", &mode) < 0 ||
            ctl_json_get_int(reply, "generation", &generation) < 0)
                return ctl_bad_reply("io.secd.Policy.Test");
        if (json_object_object_get_ex(reply, "rule", &rule) && rule &&
            ctl_policy_rule_describe(rule, &desc) < 0)
                return ctl_bad_reply("io.secd.Policy.Test");

        if (ctx->json)
                ctl_json_print(ctx->out, reply);
        else
                fprintf(ctx->out,
                        "verdict: %s\n"
                        "reason: %s\n"
                        "rule: %s\n"
                        "admit: %s\n"
                        "mode: %s\n"
                        "generation: %" PRId64 "\n",
                        allow ? "allow" : "deny", reason, desc ?: "-", admit ? "yes" : "no", mode, generation);

        /* The exit status follows the policy's decision, also in permissive mode. */
        return allow ? CTL_EXIT_SUCCESS : CTL_EXIT_DENIED;
}

/* ---- export, import ---- */

static bool is_stdio(const char *name) {
        return !name || streq(name, "-");
}

int ctl_verb_policy_export(CtlContext *ctx) {
        _cleanup_json_ json_object *reply = NULL;
        _cleanup_fclose_ FILE *f = NULL;
        const char *file = ctx->n_args > 0 ? ctx->args[0] : NULL;
        json_object *doc;
        int r;

        if (!is_stdio(file) && strnlen(file, CTL_PATH_MAX + 1) > CTL_PATH_MAX) {
                log_error("Invalid FILE: longer than %d bytes.", CTL_PATH_MAX);
                return CTL_EXIT_USAGE;
        }

        r = ctl_call_once(ctx, "io.secd.Policy.Export", NULL, &reply);
        if (r != 0)
                return r;
        if (!json_object_object_get_ex(reply, "policy", &doc) || !json_object_is_type(doc, json_type_object))
                return ctl_bad_reply("io.secd.Policy.Export");

        /* Always the document itself (also with --json), so "policy import" takes it back. */
        if (is_stdio(file)) {
                ctl_json_print(ctx->out, doc);
                return 0;
        }
        f = fopen(file, "we");
        if (!f) {
                log_error("Cannot create %s: %m.", file);
                return CTL_EXIT_FAILURE;
        }
        ctl_json_print(f, doc);
        r = fflush(f) != 0 || ferror(f) ? negative_errno() : 0;
        if (fclose(TAKE_PTR(f)) != 0 && r == 0)
                r = negative_errno();
        if (r < 0) {
                log_error_errno(r, "Cannot write %s: %m.", file);
                return CTL_EXIT_FAILURE;
        }
        return 0;
}

static int read_bounded(const char *file, char **ret, size_t *ret_len) {
        _cleanup_fclose_ FILE *opened = NULL;
        _cleanup_free_ char *buf = NULL;
        FILE *f = stdin;
        size_t len = 0, size = 0;

        if (!is_stdio(file)) {
                f = opened = fopen(file, "re");
                if (!opened)
                        return negative_errno();
        }
        for (;;) {
                size_t n;

                if (size - len < 4096) {
                        size_t want = MAX(size * 2, (size_t) 65536);
                        char *p;

                        if (size >= CTL_IMPORT_MAX + 1)
                                return -EFBIG;
                        want = MIN(want, (size_t) CTL_IMPORT_MAX + 2);
                        p = realloc(buf, want);
                        if (!p)
                                return -ENOMEM;
                        buf = p;
                        size = want;
                }
                n = fread(buf + len, 1, size - len - 1, f);
                len += n;
                if (len > CTL_IMPORT_MAX)
                        return -EFBIG;
                if (n == 0) {
                        if (ferror(f))
                                return -EIO;
                        break;
                }
        }
        buf[len] = '\0';
        *ret = TAKE_PTR(buf);
        *ret_len = len;
        return 0;
}

int ctl_verb_policy_import(CtlContext *ctx) {
        _cleanup_json_ json_object *doc = NULL, *params = NULL, *reply = NULL;
        _cleanup_free_ char *text = NULL;
        const char *file = ctx->args[0];
        json_tokener *tok;
        enum json_tokener_error jerr;
        int64_t rules, generation;
        size_t len;
        int r;

        if (strnlen(file, CTL_PATH_MAX + 1) > CTL_PATH_MAX) {
                log_error("Invalid FILE: longer than %d bytes.", CTL_PATH_MAX);
                return CTL_EXIT_USAGE;
        }
        r = read_bounded(file, &text, &len);
        if (r < 0) {
                if (r == -EFBIG)
                        log_error("Cannot import %s: larger than %" PRIu64 " bytes.", file, CTL_IMPORT_MAX);
                else
                        log_error_errno(r, "Cannot read %s: %m.", file);
                return CTL_EXIT_USAGE;
        }
        if (strlen(text) != len) {
                log_error("Cannot import %s: it contains a NUL byte; expected a JSON document from 'secctl policy export'.",
                          file);
                return CTL_EXIT_USAGE;
        }

        tok = json_tokener_new();
        if (!tok)
                return log_oom(), CTL_EXIT_FAILURE;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
        doc = json_tokener_parse_ex(tok, text, (int) MIN(len, (size_t) INT32_MAX));
        jerr = json_tokener_get_error(tok);
        if (!doc && jerr == json_tokener_continue)
                jerr = json_tokener_error_parse_eof;
        if (doc && jerr == json_tokener_success && json_tokener_get_parse_end(tok) < len) {
                /* Anything but whitespace after the document is an error. */
                for (size_t i = json_tokener_get_parse_end(tok); i < len; i++)
                        if (!strchr(" \t\r\n", text[i])) {
                                jerr = json_tokener_error_parse_unexpected;
                                break;
                        }
        }
        json_tokener_free(tok);
        if (!doc || jerr != json_tokener_success) {
                log_error("Cannot parse %s: %s. Expected a JSON document from 'secctl policy export'.", file,
                          json_tokener_error_desc(jerr));
                return CTL_EXIT_USAGE;
        }
        if (!json_object_is_type(doc, json_type_object)) {
                log_error("Cannot import %s: expected a JSON object from 'secctl policy export'.", file);
                return CTL_EXIT_USAGE;
        }

        params = json_object_new_object();
        if (!params || add_object(params, "policy", &doc) < 0)
                return log_oom(), CTL_EXIT_FAILURE;

        r = ctl_call_once(ctx, "io.secd.Policy.Import", params, &reply);
        if (r != 0)
                return r;
        if (ctx->json) {
                ctl_json_print(ctx->out, reply);
                return 0;
        }
        if (ctl_json_get_int(reply, "rules", &rules) < 0 || ctl_json_get_int(reply, "generation", &generation) < 0)
                return ctl_bad_reply("io.secd.Policy.Import");
        fprintf(ctx->out, "Imported %" PRId64 " rule%s, policy generation %" PRId64 ".\n", rules,
                rules == 1 ? "" : "s", generation);
        return 0;
}
