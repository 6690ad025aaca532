/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * secctl audit [--follow] [--limit N]: io.secd.Audit.Tail. One line per
 * entry, "TIME KIND MESSAGE"; with --follow the call is made with "more"
 * and entries are printed as they arrive until SIGINT or SIGTERM, which
 * end it cleanly with exit status 0.
 */
#include <inttypes.h>
#include <signal.h>

#include "log.h"
#include "secctl.h"

/* How often a follow loop looks at the signal flag while secd is quiet. */
#define FOLLOW_POLL_MS 200

static volatile sig_atomic_t follow_stop = 0;

static void on_stop_signal(int sig) {
        follow_stop = 1;
}

int ctl_audit_print_entry(FILE *f, json_object *entry) {
        const char *kind, *message;
        int64_t t;
        char when[64];

        if (!json_object_is_type(entry, json_type_object) || ctl_json_get_int(entry, "time_usec", &t) < 0 ||
            ctl_json_get_string(entry, "kind", &kind) < 0 || ctl_json_get_string(entry, "message", &message) < 0)
                return -EBADMSG;

        ctl_format_time(t, when, sizeof when);
        fprintf(f, "%s %s ", when, kind);
        /* One entry, one line: control characters never reach the terminal. */
        for (const char *p = message; *p; p++)
                fputc((unsigned char) *p < 0x20 || *p == 0x7f ? '?' : *p, f);
        fputc('\n', f);
        return 0;
}

static int print_entries(const CtlContext *ctx, json_object *reply) {
        json_object *entries;
        size_t n;

        if (!json_object_object_get_ex(reply, "entries", &entries) ||
            !json_object_is_type(entries, json_type_array))
                return -EBADMSG;
        n = json_object_array_length(entries);
        for (size_t i = 0; i < n; i++) {
                json_object *e = json_object_array_get_idx(entries, i);

                if (ctx->json) {
                        if (!json_object_is_type(e, json_type_object))
                                return -EBADMSG;
                        ctl_json_print_line(ctx->out, e);
                } else if (ctl_audit_print_entry(ctx->out, e) < 0)
                        return -EBADMSG;
        }
        (void) fflush(ctx->out);
        return 0;
}

static int make_params(const CtlContext *ctx, json_object **ret) {
        json_object *params = NULL, *limit;

        if (ctx->limit == 0) {
                *ret = NULL;
                return 0;
        }
        params = json_object_new_object();
        limit = json_object_new_int64(ctx->limit);
        if (!params || !limit || json_object_object_add(params, "limit", limit) < 0) {
                json_object_put(params);
                json_object_put(limit);
                return -ENOMEM;
        }
        *ret = params;
        return 0;
}

static int audit_follow(const CtlContext *ctx, json_object *params) {
        static const char method[] = "io.secd.Audit.Tail";
        _cleanup_control_ secclient_control *c = NULL;
        struct sigaction sa = { .sa_handler = on_stop_signal }, old_int, old_term;
        int r, ret = CTL_EXIT_SUCCESS, continues = 1;

        r = ctl_connect(ctx, &c);
        if (r != 0)
                return r;
        r = secclient_control_call_more(c, method,
                                        params ? json_object_to_json_string_ext(params, JSON_C_TO_STRING_PLAIN) : NULL);
        if (r < 0)
                return ctl_transport_error(ctx, r, method);

        /* No SA_RESTART; the library retries EINTR, so the flag is checked between bounded waits. */
        follow_stop = 0;
        sigemptyset(&sa.sa_mask);
        (void) sigaction(SIGINT, &sa, &old_int);
        (void) sigaction(SIGTERM, &sa, &old_term);

        while (!follow_stop && continues) {
                _cleanup_free_ char *reply = NULL, *error = NULL;
                _cleanup_json_ json_object *o = NULL;

                r = secclient_control_next(c, FOLLOW_POLL_MS, &reply, &error, &continues);
                if (r == -ETIMEDOUT)
                        continue;
                if (r == -EREMOTEIO) {
                        ret = ctl_varlink_error(ctx, error, reply);
                        break;
                }
                if (r < 0) {
                        if (r == -ECONNRESET) {
                                log_error("secd closed the audit stream (stopped or restarted?).");
                                ret = CTL_EXIT_UNREACHABLE;
                        } else
                                ret = ctl_transport_error(ctx, r, method);
                        break;
                }
                o = json_tokener_parse(reply ?: "{}");
                if (!o || !json_object_is_type(o, json_type_object) || print_entries(ctx, o) < 0) {
                        ret = ctl_bad_reply(method);
                        break;
                }
        }

        (void) sigaction(SIGINT, &old_int, NULL);
        (void) sigaction(SIGTERM, &old_term, NULL);
        return ret;
}

int ctl_verb_audit(CtlContext *ctx) {
        _cleanup_json_ json_object *params = NULL, *reply = NULL;
        int r;

        if (make_params(ctx, &params) < 0)
                return log_oom(), CTL_EXIT_FAILURE;
        if (ctx->follow)
                return audit_follow(ctx, params);

        r = ctl_call_once(ctx, "io.secd.Audit.Tail", params, &reply);
        if (r != 0)
                return r;
        if (ctx->json) {
                ctl_json_print(ctx->out, reply);
                return 0;
        }
        if (print_entries(ctx, reply) < 0)
                return ctl_bad_reply("io.secd.Audit.Tail");
        return 0;
}
