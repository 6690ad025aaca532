/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * secctl: the verb table, the option table, option parsing and dispatch.
 * --help is generated from the two tables; docs/man/secctl.8 uses the same
 * words (a unit test checks that every verb and option appears there).
 */
#include <getopt.h>
#include <stdarg.h>

#include "log.h"
#include "secctl.h"

const CtlOption ctl_options[] = {
        { "help",      'h', CTL_OPT_HELP,      NULL,   "Show this help and exit" },
        { "version",   0,   CTL_OPT_VERSION,   NULL,   "Show the version and exit" },
        { "socket",    0,   CTL_OPT_SOCKET,    "PATH", "Control socket of secd (default $SECCTL_SOCKET, then " CTL_SOCKET_DEFAULT ")" },
        { "json",      0,   CTL_OPT_JSON,      NULL,   "Print secd's reply as JSON instead of a human table" },
        { "no-legend", 0,   CTL_OPT_NO_LEGEND, NULL,   "Omit table headers and the summary line" },
        { "full",      0,   CTL_OPT_FULL,      NULL,   "policy list: show SHA-256 hashes in full" },
        { "user",      0,   CTL_OPT_USER,      "NAME", "Selector: the user NAME" },
        { "uid",       0,   CTL_OPT_UID,       "UID",  "Selector: the numeric user id UID" },
        { "group",     0,   CTL_OPT_GROUP,     "NAME", "Selector: the group NAME (primary or supplementary)" },
        { "gid",       0,   CTL_OPT_GID,       "GID",  "Selector: the numeric group id GID" },
        { "path",      0,   CTL_OPT_PATH,      "PATH", "Selector: the executable's absolute, normalised PATH" },
        { "sha256",    0,   CTL_OPT_SHA256,    "HASH", "Selector: the executable's SHA-256, 64 hexadecimal characters" },
        { "binary",    0,   CTL_OPT_BINARY,    "FILE", "Selector: hash FILE and use its hash and absolute path" },
        { "endpoint",  0,   CTL_OPT_ENDPOINT,  "NAME", "Selector: data, tcp, enroll or control" },
        { "cert",      0,   CTL_OPT_CERT,      "NAME", "Selector: the remote certificate NAME (tcp clients, see 'cert issue')" },
        { "comment",   0,   CTL_OPT_COMMENT,   "TEXT", "policy allow/deny: a comment stored with the rule" },
        { "follow",    0,   CTL_OPT_FOLLOW,    NULL,   "audit: keep printing new entries until interrupted" },
        { "limit",     0,   CTL_OPT_LIMIT,     "N",    "audit: show the newest N entries (1-1000, default 20)" },
        { "out",       0,   CTL_OPT_OUT,       "DIR",  "cert issue: write NAME.key, NAME.crt and ca.crt into DIR" },
        { "valid",     0,   CTL_OPT_VALID,     "DURATION", "cert issue: validity, e.g. 30d (default) or 12h, at most 825d" },
        { "all",       0,   CTL_OPT_ALL,       NULL,   "cert list: include expired certificates" },
};
const size_t ctl_options_count = ELEMENTSOF(ctl_options);

const CtlVerb ctl_verbs[] = {
        { "status", NULL,      0, 0, 0,                      ctl_verb_status,
          "", "Show secd's version, uptime, mode, rules and counters" },
        { "policy", "list",    0, 0, CTL_OPT(CTL_OPT_FULL),  ctl_verb_policy_list,
          "[--full]", "List the rules with the mode and the policy generation" },
        { "policy", "allow",   0, 0, CTL_OPTS_RULE,          ctl_verb_policy_allow,
          "SELECTOR... [--comment TEXT]", "Add a rule that allows what matches; prints its id" },
        { "policy", "deny",    0, 0, CTL_OPTS_RULE,          ctl_verb_policy_deny,
          "SELECTOR... [--comment TEXT]", "Add a rule that denies what matches; prints its id" },
        { "policy", "remove",  1, 1, 0,                      ctl_verb_policy_remove,
          "ID", "Remove the rule with this id" },
        { "policy", "mode",    1, 1, 0,                      ctl_verb_policy_mode,
          "enforce|permissive", "Set the mode; permissive decides and logs but admits" },
        { "policy", "test",    0, 0, CTL_OPTS_QUERY,         ctl_verb_policy_test,
          "--uid UID|--user NAME [SELECTOR...]", "Would this client be admitted? Exit 0 if allowed, 3 if denied" },
        { "policy", "export",  0, 1, 0,                      ctl_verb_policy_export,
          "[FILE]", "Write the policy as a JSON document to FILE or standard output" },
        { "policy", "import",  1, 1, 0,                      ctl_verb_policy_import,
          "FILE", "Replace the whole policy with an exported document, atomically" },
        { "audit",  NULL,      0, 0, CTL_OPT(CTL_OPT_FOLLOW) | CTL_OPT(CTL_OPT_LIMIT), ctl_verb_audit,
          "[--follow] [--limit N]", "Show the newest audit entries; --follow waits for more" },
        { "reload", NULL,      0, 0, 0,                      ctl_verb_reload,
          "", "Make secd re-read its configuration and policy" },
        { "hash",   NULL,      1, CTL_ARGS_MAX, 0,           ctl_verb_hash,
          "FILE...", "Print the SHA-256 of each FILE exactly like sha256sum" },
        { "version", NULL,     0, 0, 0,                      ctl_verb_version,
          "", "Show the versions of secctl and libsecclient" },
        { "cert",   "issue",   1, 1, CTL_OPT(CTL_OPT_OUT) | CTL_OPT(CTL_OPT_VALID), ctl_verb_cert_issue,
          "NAME --out DIR [--valid DURATION]", "Issue a key and certificate for remote client NAME into DIR" },
        { "cert",   "list",    0, 0, CTL_OPT(CTL_OPT_ALL),   ctl_verb_cert_list,
          "[--all]", "List issued certificates, newest first" },
        { "cert",   "revoke",  1, 1, 0,                      ctl_verb_cert_revoke,
          "SERIAL|NAME", "Revoke a certificate, or every certificate of a remote NAME" },
        { "cert",   "crl",     0, 0, 0,                      ctl_verb_cert_crl,
          "", "Print the certificate revocation list (PEM)" },
        { "ca",     "show",    0, 0, 0,                      ctl_verb_ca_show,
          "", "Show the CA certificate and its facts" },
        { "relay",  "stats",   0, 0, 0,                      ctl_verb_relay_stats,
          "", "Show the relay's mailboxes, queued messages and counters" },
        { "keys",   "stats",   0, 0, 0,                      ctl_verb_keys_stats,
          "", "Show the key server's published keys and counters" },
};
const size_t ctl_verbs_count = ELEMENTSOF(ctl_verbs);

static const struct {
        CtlExit code;
        const char *help;
} exit_statuses[] = {
        { CTL_EXIT_SUCCESS,     "success (policy test: the policy allows)" },
        { CTL_EXIT_FAILURE,     "failure, for example no rule with that id" },
        { CTL_EXIT_USAGE,       "invalid usage or argument (the message names it)" },
        { CTL_EXIT_DENIED,      "policy test: the policy denies" },
        { CTL_EXIT_UNREACHABLE, "cannot reach secd (not running, wrong socket)" },
        { CTL_EXIT_PERMISSION,  "permission denied: run as root or a member of " CTL_ADMIN_GROUP },
};

const char *ctl_verb_full_name(const CtlVerb *v, char *buf, size_t n) {
        if (v->sub)
                (void) snprintf(buf, n, "%s %s", v->name, v->sub);
        else
                (void) snprintf(buf, n, "%s", v->name);
        return buf;
}

void ctl_help(FILE *f) {
        char name[64], left[128];

        fprintf(f,
                "Usage: secctl [OPTIONS...] VERB [ARGS...]\n"
                "\n"
                "Administer secd, the local security daemon, through its control socket.\n"
                "\n"
                "Verbs:\n");
        for (size_t i = 0; i < ctl_verbs_count; i++) {
                const CtlVerb *v = &ctl_verbs[i];

                (void) snprintf(left, sizeof left, "%s%s%s", ctl_verb_full_name(v, name, sizeof name),
                                isempty(v->synopsis) ? "" : " ", v->synopsis);
                if (strlen(left) > 36)
                        fprintf(f, "  %s\n  %-36s  %s\n", left, "", v->help);
                else
                        fprintf(f, "  %-36s  %s\n", left, v->help);
        }

        fprintf(f, "\nOptions:\n");
        for (size_t i = 0; i < ctl_options_count; i++) {
                const CtlOption *o = &ctl_options[i];

                if (o->short_name)
                        (void) snprintf(left, sizeof left, "-%c --%s%s%s", o->short_name, o->name,
                                        o->metavar ? " " : "", o->metavar ?: "");
                else
                        (void) snprintf(left, sizeof left, "   --%s%s%s", o->name,
                                        o->metavar ? " " : "", o->metavar ?: "");
                fprintf(f, "  %-20s  %s\n", left, o->help);
        }

        fprintf(f,
                "\nA SELECTOR is one of --user, --uid, --group, --gid, --path, --sha256,\n"
                "--binary, --endpoint or --cert; a rule needs at least one, and all must match.\n"
                "\nExit status:\n");
        for (size_t i = 0; i < ELEMENTSOF(exit_statuses); i++)
                fprintf(f, "  %d  %s\n", exit_statuses[i].code, exit_statuses[i].help);
        fprintf(f, "\nSee secctl(8) for details.\n");
}

static const CtlOption *option_by_id(CtlOptionId id) {
        for (size_t i = 0; i < ctl_options_count; i++)
                if (ctl_options[i].id == id)
                        return &ctl_options[i];
        return NULL;
}

const char *ctl_socket_path(const CtlContext *ctx) {
        const char *e;

        if (ctx->socket)
                return ctx->socket;
        e = getenv(CTL_SOCKET_ENV);
        if (!isempty(e))
                return e;
        return CTL_SOCKET_DEFAULT;
}

/* Absolute, normalised (no "//", ".", ".." components, no trailing "/"), bounded, printable. */
int ctl_validate_path(const char *s) {
        size_t len;

        if (!s || s[0] != '/')
                return -EINVAL;
        len = strnlen(s, CTL_PATH_MAX + 1);
        if (len > CTL_PATH_MAX)
                return -ENAMETOOLONG;
        if (!string_is_printable_utf8(s, len))
                return -EINVAL;
        if (len > 1 && s[len - 1] == '/')
                return -EINVAL;
        for (const char *p = s; *p; ) {
                const char *c = p + 1, *e = strchrnul(c, '/');
                size_t n = (size_t) (e - c);

                if (len > 1 && (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.')))
                        return -EINVAL;
                p = e;
        }
        return 0;
}

int ctl_validate_name(const char *s) {
        size_t len;

        if (isempty(s))
                return -EINVAL;
        len = strnlen(s, CTL_NAME_MAX + 1);
        if (len > CTL_NAME_MAX)
                return -ENAMETOOLONG;
        if (!string_is_printable_utf8(s, len) || strpbrk(s, " \t:/") || s[0] == '-')
                return -EINVAL;
        return 0;
}

int ctl_parse_sha256(const char *s, char ret[SHA256_HEX_LEN + 1]) {
        uint8_t digest[SHA256_DIGEST_LEN];
        int r;

        r = hex_decode_exact(s, digest, sizeof digest);
        if (r < 0)
                return r;
        hex_encode(digest, sizeof digest, ret);
        return 0;
}

bool ctl_cert_name_valid(const char *s) {
        size_t len;

        if (isempty(s))
                return false;
        len = strnlen(s, CTL_CERT_NAME_MAX + 1);
        if (len > CTL_CERT_NAME_MAX)
                return false;
        for (size_t i = 0; i < len; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                      (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' || s[i] == '-'))
                        return false;
        return true;
}

bool ctl_endpoint_valid(const char *s) {
        return streq_ptr(s, "data") || streq_ptr(s, "tcp") || streq_ptr(s, "enroll") ||
               streq_ptr(s, "control");
}

void ctl_context_done(CtlContext *ctx) {
        free(ctx->sel.binary_path);
        ctx->sel.binary_path = NULL;
        free(ctx->words);
        ctx->words = NULL;
}

static int usage_error(const char *fmt, ...) _printf_(1, 2);
static int usage_error(const char *fmt, ...) {
        char buf[1024];
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        log_error("%s", buf);
        return CTL_EXIT_USAGE;
}

static int parse_option_value(CtlContext *ctx, const CtlOption *o, const char *arg) {
        CtlSelectors *sel = &ctx->sel;
        uint32_t u32;
        int r;

        switch (o->id) {
        case CTL_OPT_HELP:
        case CTL_OPT_VERSION:
                return 0;
        case CTL_OPT_SOCKET:
                if (isempty(arg) || strnlen(arg, CTL_PATH_MAX + 1) > CTL_PATH_MAX)
                        return usage_error("Invalid --socket: expected a path of 1 to %d bytes.", CTL_PATH_MAX);
                ctx->socket = arg;
                return 0;
        case CTL_OPT_JSON:
                ctx->json = true;
                return 0;
        case CTL_OPT_NO_LEGEND:
                ctx->legend = false;
                return 0;
        case CTL_OPT_FULL:
                ctx->full = true;
                return 0;
        case CTL_OPT_FOLLOW:
                ctx->follow = true;
                return 0;
        case CTL_OPT_LIMIT:
                r = parse_uint32(arg, &u32);
                if (r < 0 || u32 < 1 || u32 > CTL_AUDIT_LIMIT_MAX)
                        return usage_error("Invalid --limit '%s': expected a number from 1 to %d.", arg,
                                           CTL_AUDIT_LIMIT_MAX);
                ctx->limit = u32;
                return 0;
        case CTL_OPT_USER:
        case CTL_OPT_GROUP:
                r = ctl_validate_name(arg);
                if (r < 0)
                        return usage_error("Invalid --%s '%s': expected a %s name of at most %d bytes.",
                                           o->name, arg, o->id == CTL_OPT_USER ? "user" : "group",
                                           CTL_NAME_MAX);
                if (o->id == CTL_OPT_USER)
                        sel->user = arg;
                else
                        sel->group = arg;
                return 0;
        case CTL_OPT_UID:
        case CTL_OPT_GID:
                r = parse_uid(arg, &u32);
                if (r < 0)
                        return usage_error("Invalid --%s '%s': expected a decimal number from 0 to %u.",
                                           o->name, arg, UINT32_MAX - 1);
                if (o->id == CTL_OPT_UID) {
                        sel->uid = u32;
                        sel->has_uid = true;
                } else {
                        sel->gid = u32;
                        sel->has_gid = true;
                }
                return 0;
        case CTL_OPT_PATH:
                r = ctl_validate_path(arg);
                if (r < 0)
                        return usage_error("Invalid --path '%s': expected an absolute, normalised path "
                                           "(no '.', '..', '//' or trailing '/') of at most %d bytes.",
                                           arg, CTL_PATH_MAX);
                sel->path = arg;
                return 0;
        case CTL_OPT_SHA256:
                r = ctl_parse_sha256(arg, sel->sha256);
                if (r < 0)
                        return usage_error("Invalid --sha256 '%s': expected 64 hexadecimal characters "
                                           "(see 'secctl hash FILE').", arg);
                return 0;
        case CTL_OPT_BINARY:
                if (isempty(arg) || strnlen(arg, CTL_PATH_MAX + 1) > CTL_PATH_MAX)
                        return usage_error("Invalid --binary: expected a file name of 1 to %d bytes.",
                                           CTL_PATH_MAX);
                sel->binary = arg;
                return 0;
        case CTL_OPT_ENDPOINT:
                if (!ctl_endpoint_valid(arg))
                        return usage_error("Invalid --endpoint '%s': expected data, tcp, enroll or control.", arg);
                sel->endpoint = arg;
                return 0;
        case CTL_OPT_OUT:
                if (isempty(arg) || strnlen(arg, CTL_PATH_MAX + 1) > CTL_PATH_MAX)
                        return usage_error("Invalid --out: expected a directory of 1 to %d bytes.", CTL_PATH_MAX);
                ctx->cert_out = arg;
                return 0;
        case CTL_OPT_VALID: {
                uint64_t usec;

                if (ctl_cert_parse_validity(arg, &usec) < 0)
                        return usage_error("Invalid --valid '%s': expected a duration such as 30d, 12h or 1d12h, "
                                           "from 1s to 825d.", arg);
                ctx->cert_valid = arg;
                return 0;
        }
        case CTL_OPT_ALL:
                ctx->all = true;
                return 0;
        case CTL_OPT_CERT:
                if (!ctl_cert_name_valid(arg))
                        return usage_error("Invalid --cert '%s': expected a certificate name of 1 to %d "
                                           "characters A-Z a-z 0-9 . _ -.", arg, CTL_CERT_NAME_MAX);
                sel->cert = arg;
                return 0;
        case CTL_OPT_COMMENT: {
                size_t len = strnlen(arg, CTL_COMMENT_MAX + 1);

                if (len > CTL_COMMENT_MAX || !string_is_printable_utf8(arg, len))
                        return usage_error("Invalid --comment: expected printable UTF-8 text of at most %d bytes.",
                                           CTL_COMMENT_MAX);
                sel->comment = arg;
                return 0;
        }
        case _CTL_OPT_MAX:
                break;
        }
        return usage_error("Internal error: unhandled option --%s.", o->name);
}

static void print_version(FILE *f) {
        fprintf(f, "secctl %s\n", SECD_VERSION);
}

int ctl_verb_find(char **words, int n, const CtlVerb **ret_verb, int *ret_taken) {
        bool group = false;

        if (n <= 0)
                return -ENOENT;
        for (size_t i = 0; i < ctl_verbs_count; i++) {
                const CtlVerb *v = &ctl_verbs[i];

                if (!streq(v->name, words[0]))
                        continue;
                if (!v->sub) {
                        *ret_verb = v;
                        *ret_taken = 1;
                        return 0;
                }
                group = true;
                if (n >= 2 && streq(v->sub, words[1])) {
                        *ret_verb = v;
                        *ret_taken = 2;
                        return 0;
                }
        }
        return group ? -ENXIO : -ENOENT;
}

static void list_subverbs(const char *group, char *buf, size_t n) {
        size_t used = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < ctl_verbs_count && used < n; i++)
                if (ctl_verbs[i].sub && streq(ctl_verbs[i].name, group)) {
                        int k = snprintf(buf + used, n - used, "%s%s", used ? ", " : "", ctl_verbs[i].sub);
                        if (k < 0)
                                break;
                        used += (size_t) k;
                }
}

static int check_verb_usage(const CtlContext *ctx) {
        const CtlVerb *v = ctx->verb;
        uint64_t extra = ctx->seen & ~(CTL_OPTS_GLOBAL | v->options);
        char name[64];

        ctl_verb_full_name(v, name, sizeof name);
        for (int id = 0; id < _CTL_OPT_MAX; id++)
                if (extra & CTL_OPT(id))
                        return usage_error("Option --%s does not apply to '%s'. See 'secctl --help'.",
                                           option_by_id(id)->name, name);

        if (v->max_args == 0 && ctx->n_args > 0)
                return usage_error("'%s' takes no arguments, got '%s'. Usage: secctl %s%s%s", name,
                                   ctx->args[0], name, isempty(v->synopsis) ? "" : " ", v->synopsis);
        if ((unsigned) ctx->n_args < v->min_args)
                return usage_error("'%s' needs %s%u argument%s. Usage: secctl %s %s", name,
                                   v->min_args == v->max_args ? "" : "at least ", v->min_args,
                                   v->min_args == 1 ? "" : "s", name, v->synopsis);
        if ((unsigned) ctx->n_args > v->max_args)
                return usage_error("'%s' takes at most %u argument%s, got %d. Usage: secctl %s %s", name,
                                   v->max_args, v->max_args == 1 ? "" : "s", ctx->n_args, name, v->synopsis);
        return 0;
}

int ctl_parse_argv(int argc, char **argv, CtlContext *ctx, FILE *out) {
        struct option longopts[ELEMENTSOF(ctl_options) + 1] = {};
        /* "-": words come back in order as 1, whatever POSIXLY_CORRECT says. */
        char optstring[4 + 2 * ELEMENTSOF(ctl_options)] = "-:";
        size_t k = 2;
        int n_words = 0;
        int c, r, taken;

        *ctx = (CtlContext) {
                .legend = true,
                .out = out ?: stdout,
        };

        for (size_t i = 0; i < ctl_options_count; i++) {
                const CtlOption *o = &ctl_options[i];

                longopts[i] = (struct option) {
                        .name = o->name,
                        .has_arg = o->metavar ? required_argument : no_argument,
                        .val = 0x100 + (int) o->id,
                };
                if (o->short_name) {
                        optstring[k++] = o->short_name;
                        if (o->metavar)
                                optstring[k++] = ':';
                }
        }
        optstring[k] = '\0';

        if (argc < 1)
                return usage_error("Missing verb. See 'secctl --help' for the list of verbs.");
        ctx->words = calloc((size_t) argc, sizeof(char *));
        if (!ctx->words)
                return log_oom(), CTL_EXIT_FAILURE;

        /* Options may follow the verb ("secctl policy allow --uid 0"); "--" ends them. */
        optind = 0;
        opterr = 0;
        while ((c = getopt_long(argc, argv, optstring, longopts, NULL)) >= 0) {
                const CtlOption *o = NULL;

                if (c == 1) {
                        ctx->words[n_words++] = optarg;
                        continue;
                }

                if (c == '?') {
                        if (optopt >= 0x100)
                                return usage_error("Option --%s takes no argument. See 'secctl --help'.",
                                                   option_by_id(optopt - 0x100)->name);
                        if (optopt > 0)
                                return usage_error("Unknown option '-%c'. See 'secctl --help'.", optopt);
                        return usage_error("Unknown option '%s'. See 'secctl --help'.", argv[optind - 1]);
                }
                if (c == ':') {
                        o = optopt >= 0x100 ? option_by_id(optopt - 0x100) : NULL;
                        if (o)
                                return usage_error("Option --%s needs an argument (%s).", o->name, o->metavar);
                        return usage_error("Option '-%c' needs an argument.", optopt);
                }
                if (c >= 0x100)
                        o = option_by_id(c - 0x100);
                else
                        for (size_t i = 0; i < ctl_options_count; i++)
                                if (ctl_options[i].short_name == c)
                                        o = &ctl_options[i];
                if (!o)
                        return usage_error("Internal error: unexpected option %d.", c);

                if (ctx->seen & CTL_OPT(o->id))
                        return usage_error("Option --%s given twice.", o->name);
                ctx->seen |= CTL_OPT(o->id);

                r = parse_option_value(ctx, o, optarg);
                if (r != 0)
                        return r;
        }

        if (ctx->seen & CTL_OPT(CTL_OPT_HELP)) {
                ctl_help(ctx->out);
                return 1;
        }
        if (ctx->seen & CTL_OPT(CTL_OPT_VERSION)) {
                print_version(ctx->out);
                return 1;
        }

        /* Whatever follows "--" is a word too, even if it starts with '-'. */
        while (optind < argc)
                ctx->words[n_words++] = argv[optind++];

        if (n_words == 0)
                return usage_error("Missing verb. See 'secctl --help' for the list of verbs.");

        r = ctl_verb_find(ctx->words, n_words, &ctx->verb, &taken);
        if (r == -ENXIO) {
                char subs[256];

                list_subverbs(ctx->words[0], subs, sizeof subs);
                if (n_words < 2)
                        return usage_error("'%s' needs a verb: %s.", ctx->words[0], subs);
                return usage_error("Unknown verb '%s %s'; expected one of: %s.", ctx->words[0],
                                   ctx->words[1], subs);
        }
        if (r < 0)
                return usage_error("Unknown verb '%s'. See 'secctl --help' for the list of verbs.",
                                   ctx->words[0]);

        ctx->args = ctx->words + taken;
        ctx->n_args = n_words - taken;
        return check_verb_usage(ctx);
}

int ctl_run_to(int argc, char **argv, FILE *out) {
        _cleanup_(ctl_context_done) CtlContext ctx = {};
        int r;

        r = ctl_parse_argv(argc, argv, &ctx, out);
        if (r == 1)
                return CTL_EXIT_SUCCESS;
        if (r != 0)
                return r;

        r = ctx.verb->handler(&ctx);
        if (fflush(ctx.out) != 0 && r == CTL_EXIT_SUCCESS) {
                log_error("Cannot write the output: %m");
                return CTL_EXIT_FAILURE;
        }
        return r;
}

int ctl_run(int argc, char **argv) {
        return ctl_run_to(argc, argv, NULL);
}
