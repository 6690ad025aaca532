/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * secctl internals: the verb table, the option table, the parsed command
 * line, and the helpers the verb files share. Everything except main()
 * lives in the secctl-internal library so the unit tests drive it directly.
 *
 * Conventions: verb handlers and everything that talks to secd return an
 * exit status (CtlExit) after printing what went wrong; pure helpers
 * (parsing, JSON construction, formatting) return 0 or a negative errno.
 */

#include <json-c/json.h>
#include <stdio.h>

#include "macro.h"
#include "secclient.h"
#include "strutil.h"

static inline void ctl_control_freep(secclient_control **c) {
        (void) secclient_control_free(*c);
}
#define _cleanup_control_ _cleanup_(ctl_control_freep)

/* Exit statuses, documented in secctl(8) and --help. */
typedef enum CtlExit {
        CTL_EXIT_SUCCESS = 0,
        CTL_EXIT_FAILURE = 1,     /* the operation failed (secd said why) */
        CTL_EXIT_USAGE = 2,       /* invalid usage or argument */
        CTL_EXIT_DENIED = 3,      /* policy test: the policy denies */
        CTL_EXIT_UNREACHABLE = 4, /* cannot reach secd */
        CTL_EXIT_PERMISSION = 5,  /* permission denied by secd or the socket */
} CtlExit;

#define CTL_PATH_MAX 4096
#define CTL_NAME_MAX 256     /* user or group name */
#define CTL_COMMENT_MAX 1024
#define CTL_CERT_NAME_MAX 64 /* remote certificate name, [A-Za-z0-9._-] */
#define CTL_AUDIT_LIMIT_MAX 1000
#define CTL_RULE_ID_MAX ((uint64_t) INT64_MAX)
#define CTL_IMPORT_MAX (UINT64_C(16) << 20)
#define CTL_SOCKET_DEFAULT "/run/secd/control.sock"
#define CTL_SOCKET_ENV "SECCTL_SOCKET"
#define CTL_ADMIN_GROUP "secd-admin"

/* Options; the value is the bit index in CtlContext.seen. */
typedef enum CtlOptionId {
        CTL_OPT_HELP,
        CTL_OPT_VERSION,
        CTL_OPT_SOCKET,
        CTL_OPT_JSON,
        CTL_OPT_NO_LEGEND,
        CTL_OPT_FULL,
        CTL_OPT_USER,
        CTL_OPT_UID,
        CTL_OPT_GROUP,
        CTL_OPT_GID,
        CTL_OPT_PATH,
        CTL_OPT_SHA256,
        CTL_OPT_BINARY,
        CTL_OPT_ENDPOINT,
        CTL_OPT_CERT,
        CTL_OPT_COMMENT,
        CTL_OPT_FOLLOW,
        CTL_OPT_LIMIT,
        CTL_OPT_OUT,
        CTL_OPT_VALID,
        CTL_OPT_ALL,
        _CTL_OPT_MAX,
} CtlOptionId;

#define CTL_OPT(id) (UINT64_C(1) << (id))
#define CTL_OPTS_GLOBAL                                                                        \
        (CTL_OPT(CTL_OPT_HELP) | CTL_OPT(CTL_OPT_VERSION) | CTL_OPT(CTL_OPT_SOCKET) |            \
         CTL_OPT(CTL_OPT_JSON) | CTL_OPT(CTL_OPT_NO_LEGEND))
#define CTL_OPTS_QUERY                                                                         \
        (CTL_OPT(CTL_OPT_USER) | CTL_OPT(CTL_OPT_UID) | CTL_OPT(CTL_OPT_GROUP) |                 \
         CTL_OPT(CTL_OPT_GID) | CTL_OPT(CTL_OPT_PATH) | CTL_OPT(CTL_OPT_SHA256) |                \
         CTL_OPT(CTL_OPT_BINARY) | CTL_OPT(CTL_OPT_ENDPOINT) | CTL_OPT(CTL_OPT_CERT))
#define CTL_OPTS_RULE (CTL_OPTS_QUERY | CTL_OPT(CTL_OPT_COMMENT))

typedef struct CtlOption {
        const char *name;    /* long name without "--" */
        char short_name;     /* 0 if none */
        CtlOptionId id;
        const char *metavar; /* NULL: takes no argument */
        const char *help;
} CtlOption;

extern const CtlOption ctl_options[];
extern const size_t ctl_options_count;

/* Selectors of a rule (allow/deny) or the facts of a test query, validated. */
typedef struct CtlSelectors {
        const char *user;
        const char *group;
        uint32_t uid, gid;
        bool has_uid, has_gid;
        bool no_supplementary;       /* policy test: send "gids": [] (uid without passwd entry) */
        const char *path;            /* --path, or the normalised --binary path */
        char sha256[SHA256_HEX_LEN + 1]; /* lower case; "" if none */
        const char *binary;          /* as given */
        const char *endpoint;
        const char *cert;            /* remote certificate name */
        const char *comment;
        char *binary_path;           /* owned: absolute, normalised --binary path */
} CtlSelectors;

/* The parsed command line. Strings point into argv unless noted. */
typedef struct CtlContext {
        uint64_t seen;              /* CTL_OPT() bits of the options given */
        const char *socket;         /* NULL: $SECCTL_SOCKET, then the default */
        bool json;
        bool legend;
        bool full;
        bool follow;
        unsigned limit;             /* 0: secd's default */
        const char *cert_out;       /* cert issue --out DIR */
        const char *cert_valid;     /* cert issue --valid DURATION, as given (checked) */
        bool all;                   /* cert list --all */
        CtlSelectors sel;
        char **words;               /* owned array: the words of argv that are not options */
        char **args;                /* positional arguments after the verb words (into words) */
        int n_args;
        const struct CtlVerb *verb;
        FILE *out;                  /* stdout unless a test says otherwise */
} CtlContext;

typedef int (*CtlVerbHandler)(CtlContext *ctx);

typedef struct CtlVerb {
        const char *name;       /* "policy" */
        const char *sub;        /* "allow", or NULL for a one-word verb */
        unsigned min_args;      /* positional arguments after the verb words */
        unsigned max_args;      /* CTL_ARGS_MAX: no limit */
        uint64_t options;       /* verb options accepted, CTL_OPT() bits */
        CtlVerbHandler handler;
        const char *synopsis;   /* arguments as shown in --help, "" if none */
        const char *help;       /* one line */
} CtlVerb;

#define CTL_ARGS_MAX UINT32_MAX

extern const CtlVerb ctl_verbs[];
extern const size_t ctl_verbs_count;

/* secctl.c */

/* Parse argv, dispatch to the verb, return the exit status. */
int ctl_run(int argc, char **argv);

/* Like ctl_run() but printing results to out (stdout when NULL). */
int ctl_run_to(int argc, char **argv, FILE *out);

/*
 * Parse argv into ctx (zeroed and initialised here; release with
 * ctl_context_done()). Returns 0, 1 if --help or --version was handled
 * (printed to ctx->out), or a CtlExit after printing the problem.
 */
int ctl_parse_argv(int argc, char **argv, CtlContext *ctx, FILE *out);
void ctl_context_done(CtlContext *ctx);

/*
 * Find the verb for the positional words words[0..n). On success returns 0,
 * the verb and how many words it took (1 or 2). -ENOENT: no such verb,
 * -ENXIO: the first word is a verb group and the second is missing or not
 * one of its subverbs.
 */
int ctl_verb_find(char **words, int n, const CtlVerb **ret_verb, int *ret_taken);

/* "policy allow" (static buffer-free: written into buf of size n). */
const char *ctl_verb_full_name(const CtlVerb *v, char *buf, size_t n);

void ctl_help(FILE *f);

/* Which socket: --socket, then $SECCTL_SOCKET, then the default. */
const char *ctl_socket_path(const CtlContext *ctx);

/* Option value validation shared with the unit tests. */
int ctl_validate_path(const char *s);
int ctl_validate_name(const char *s);
int ctl_parse_sha256(const char *s, char ret[SHA256_HEX_LEN + 1]);
bool ctl_endpoint_valid(const char *s);
/* A remote certificate name: 1..CTL_CERT_NAME_MAX bytes of [A-Za-z0-9._-]. */
bool ctl_cert_name_valid(const char *s);

/* output.c: talking to secd, errors, JSON */

/* Open the control connection; prints the problem and returns a CtlExit on failure. */
int ctl_connect(const CtlContext *ctx, secclient_control **ret);

/*
 * Call method with params (may be NULL) and parse the reply into a JSON
 * object. On a Varlink error or a transport failure prints what went wrong
 * and returns the matching CtlExit; 0 on success.
 */
int ctl_call(const CtlContext *ctx, secclient_control *c, const char *method, json_object *params,
             json_object **ret_reply);

/* Connect and call in one go. */
int ctl_call_once(const CtlContext *ctx, const char *method, json_object *params,
                  json_object **ret_reply);

/* Map a transport error from libsecclient to a message and CtlExit. */
int ctl_transport_error(const CtlContext *ctx, int error, const char *method);

/* Map a Varlink error (name + parameters as text) to a message and CtlExit. */
int ctl_varlink_error(const CtlContext *ctx, const char *error, const char *params_text);

/* Pretty JSON of o on f, newline-terminated. */
void ctl_json_print(FILE *f, json_object *o);
/* One line JSON of o on f, newline-terminated and flushed. */
void ctl_json_print_line(FILE *f, json_object *o);

/* Typed field access; -EBADMSG when missing or of the wrong type. */
int ctl_json_get_int(json_object *o, const char *key, int64_t *ret);
int ctl_json_get_string(json_object *o, const char *key, const char **ret);
int ctl_json_get_bool(json_object *o, const char *key, bool *ret);
/* Like the above but absent or null is fine: returns 0 and leaves *ret alone. */
int ctl_json_get_int_opt(json_object *o, const char *key, bool *ret_present, int64_t *ret);
int ctl_json_get_string_opt(json_object *o, const char *key, const char **ret);

/* Report a malformed reply from secd; returns CTL_EXIT_FAILURE. */
int ctl_bad_reply(const char *method);

static inline void ctl_json_putp(json_object **o) {
        if (*o)
                (void) json_object_put(*o);
}
#define _cleanup_json_ _cleanup_(ctl_json_putp)

/* table.c: aligned human tables */

typedef struct CtlTable CtlTable;

int ctl_table_new(size_t n_columns, const char *const *headers, CtlTable **ret);
CtlTable *ctl_table_free(CtlTable *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(CtlTable *, ctl_table_free);
/* Append one row of n_columns cells (copied; NULL or "" prints "-"). */
int ctl_table_add_row(CtlTable *t, const char *const *cells);
size_t ctl_table_rows(const CtlTable *t);
/* Header line (if legend), rows; columns separated by two spaces, no trailing blanks. */
int ctl_table_print(const CtlTable *t, FILE *f, bool legend);
/* Display width of UTF-8 text (code points; control bytes count as one '?'). */
size_t ctl_utf8_width(const char *s);

/* verb-*.c */
int ctl_verb_status(CtlContext *ctx);
int ctl_verb_policy_list(CtlContext *ctx);
int ctl_verb_policy_allow(CtlContext *ctx);
int ctl_verb_policy_deny(CtlContext *ctx);
int ctl_verb_policy_remove(CtlContext *ctx);
int ctl_verb_policy_mode(CtlContext *ctx);
int ctl_verb_policy_test(CtlContext *ctx);
int ctl_verb_policy_export(CtlContext *ctx);
int ctl_verb_policy_import(CtlContext *ctx);
int ctl_verb_audit(CtlContext *ctx);
int ctl_verb_reload(CtlContext *ctx);
int ctl_verb_hash(CtlContext *ctx);
int ctl_verb_version(CtlContext *ctx);
int ctl_verb_cert_issue(CtlContext *ctx);
int ctl_verb_cert_list(CtlContext *ctx);
int ctl_verb_cert_revoke(CtlContext *ctx);
int ctl_verb_cert_crl(CtlContext *ctx);
int ctl_verb_ca_show(CtlContext *ctx);
int ctl_verb_relay_stats(CtlContext *ctx);
int ctl_verb_keys_stats(CtlContext *ctx);

/* verb-relay.c: the relay and keys parts of a Status.Get reply as lines; -ENODATA if absent, -EBADMSG if malformed. */
int ctl_relay_stats_print(FILE *f, json_object *reply, int64_t now_usec);
int ctl_keys_stats_print(FILE *f, json_object *reply);

/* verb-cert.c helpers, exposed for the tests */

/* A certificate serial: exactly 32 hexadecimal characters (either case). */
bool ctl_cert_serial_valid(const char *s);
/* --valid: a duration from 1s to 825d (what secd accepts); -EINVAL malformed, -ERANGE out of range. */
int ctl_cert_parse_validity(const char *s, uint64_t *ret);
/* Certs.Revoke parameters for "SERIAL|NAME": a serial (lower-cased) if 32 hex characters, else a name; -EINVAL if neither. */
int ctl_cert_revoke_params(const char *arg, json_object **ret);
/* Table of a Certs.List reply's certificates. */
int ctl_certs_table(json_object *certs, CtlTable **ret);

/* verb-policy.c helpers, exposed for the tests */

/*
 * Resolve --binary (hash it, record its absolute normalised path) into
 * ctx->sel. Prints the problem; returns 0 or a CtlExit.
 */
int ctl_selectors_resolve_binary(CtlSelectors *sel);
/* Build the Policy.Add parameters {"rule": {...}} for action. */
int ctl_policy_add_params(const CtlSelectors *sel, const char *action, json_object **ret);
/* Build the Policy.Test parameters; uid/gid already resolved into sel. */
int ctl_policy_test_params(const CtlSelectors *sel, uint64_t seen, json_object **ret);
/* Add the rules of a Policy.List reply to a table (sha256 abbreviated unless full). */
int ctl_policy_rules_table(json_object *rules, bool full, CtlTable **ret);
/* One-line description of a rule object: "7 allow uid=1000(alice) sha256=..." */
int ctl_policy_rule_describe(json_object *rule, char **ret);

/* verb-hash.c: the sha256sum line for path and its digest (escaped like sha256sum). */
void ctl_hash_print_line(FILE *f, const char *path, const char hex[SHA256_HEX_LEN + 1]);
/* SHA-256 of the regular file at path as lower-case hex; negative errno on failure. */
int ctl_hash_file(const char *path, char ret[SHA256_HEX_LEN + 1]);

/* verb-status.c / verb-audit.c formatting, exposed for the tests */
int ctl_status_print(FILE *f, json_object *reply);
int ctl_audit_print_entry(FILE *f, json_object *entry);
/* "2024-05-01T12:00:00+02:00" in local time; buf at least 32 bytes. */
void ctl_format_time(int64_t usec, char *buf, size_t n);
/* "1d 2h 3min 4s" */
void ctl_format_duration(uint64_t usec, char *buf, size_t n);
