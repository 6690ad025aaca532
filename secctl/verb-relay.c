/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * secctl relay stats, secctl keys stats: the "relay" and "keys" parts of
 * io.secd.Status.Get as "key: value" lines (format in secctl(8)), or the
 * parts themselves as JSON with --json.
 */
#include <inttypes.h>
#include <time.h>

#include "log.h"
#include "secctl.h"

static const char *const refusal_names[] = {
        "bad_payload", "not_registered", "bad_signature", "not_owner", "mailbox_busy",
        "no_such_mailbox", "quota_exceeded", "rate_limited", "message_too_large", "no_keys",
        "busy", "already_registered", "internal",
};

/* "rate-limited 3, busy 1", or "none". */
static int print_refusals(FILE *f, json_object *part) {
        json_object *refused;
        bool any = false;

        if (!json_object_object_get_ex(part, "refused", &refused) || !json_object_is_type(refused, json_type_object))
                return -EBADMSG;
        fputs("refused:", f);
        for (size_t i = 0; i < ELEMENTSOF(refusal_names); i++) {
                int64_t v;

                if (ctl_json_get_int(refused, refusal_names[i], &v) < 0 || v < 0)
                        return -EBADMSG;
                if (v == 0)
                        continue;
                fprintf(f, "%s ", any ? "," : "");
                for (const char *p = refusal_names[i]; *p; p++)
                        fputc(*p == '_' ? '-' : *p, f);
                fprintf(f, " %" PRId64, v);
                any = true;
        }
        fputs(any ? "\n" : " none\n", f);
        return 0;
}

/* The store's numbers are absent when secd could not read them. */
static int get_store_int(json_object *o, const char *key, bool *ret_present, int64_t *ret) {
        if (ctl_json_get_int_opt(o, key, ret_present, ret) < 0 || (*ret_present && *ret < 0))
                return -EBADMSG;
        return 0;
}

static int get_counters(json_object *o, const char *const *names, size_t n, int64_t *values) {
        for (size_t i = 0; i < n; i++)
                if (ctl_json_get_int(o, names[i], &values[i]) < 0 || values[i] < 0)
                        return -EBADMSG;
        return 0;
}

int ctl_relay_stats_print(FILE *f, json_object *reply, int64_t now_usec) {
        static const char *const names[] = { "registered", "mailboxes_created", "stored", "duplicates",
                                             "fetched",    "acked",             "expired", "fetch_waits" };
        int64_t mailboxes = 0, messages = 0, bytes = 0, oldest = 0, cap = 0, v[ELEMENTSOF(names)];
        bool have_mailboxes = false, have_messages = false, have_bytes = false, have_oldest = false, have_cap = false;
        json_object *relay;

        if (!json_object_object_get_ex(reply, "relay", &relay) || !json_object_is_type(relay, json_type_object))
                return -ENODATA;
        if (get_store_int(relay, "mailboxes", &have_mailboxes, &mailboxes) < 0 ||
            get_store_int(relay, "messages", &have_messages, &messages) < 0 ||
            get_store_int(relay, "bytes", &have_bytes, &bytes) < 0 ||
            get_store_int(relay, "oldest_usec", &have_oldest, &oldest) < 0 ||
            get_store_int(relay, "store_max_bytes", &have_cap, &cap) < 0 ||
            get_counters(relay, names, ELEMENTSOF(names), v) < 0)
                return -EBADMSG;

        if (have_mailboxes && have_messages && have_bytes) {
                fprintf(f, "mailboxes: %" PRId64 "\n", mailboxes);
                fprintf(f, "queued: %" PRId64 " messages, %" PRId64 " bytes\n", messages, bytes);
        } else
                fputs("mailboxes: unknown (secd could not read its store)\nqueued: unknown\n", f);
        /* Older secd: no such field, no line. */
        if (have_cap && cap > 0 && have_bytes)
                fprintf(f, "store cap: %" PRId64 " bytes (%.1f%% used)\n", cap, 100.0 * (double) bytes / (double) cap);
        else if (have_cap && cap > 0)
                fprintf(f, "store cap: %" PRId64 " bytes\n", cap);
        if (have_oldest && oldest > 0) {
                char when[64], age[64];

                ctl_format_time(oldest, when, sizeof when);
                ctl_format_duration(now_usec > oldest ? (uint64_t) (now_usec - oldest) : 0, age, sizeof age);
                fprintf(f, "oldest: %s (%s ago)\n", when, age);
        } else
                fprintf(f, "oldest: %s\n", have_oldest ? "none" : "unknown");
        fprintf(f,
                "registered: %" PRId64 " (new mailboxes %" PRId64 ")\n"
                "stored: %" PRId64 ", duplicates %" PRId64 "\n"
                "fetched: %" PRId64 ", acked %" PRId64 ", expired %" PRId64 "\n"
                "fetch-waits: %" PRId64 "\n",
                v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]);
        return print_refusals(f, relay);
}

int ctl_keys_stats_print(FILE *f, json_object *reply) {
        static const char *const names[] = { "publishes", "bundles_served", "bundles_without_one_time" };
        int64_t published = 0, otks = 0, exhausted = 0, v[ELEMENTSOF(names)];
        bool have_published = false, have_otks = false, have_exhausted = false;
        json_object *keys;

        if (!json_object_object_get_ex(reply, "keys", &keys) || !json_object_is_type(keys, json_type_object))
                return -ENODATA;
        if (get_store_int(keys, "published", &have_published, &published) < 0 ||
            get_store_int(keys, "one_time_prekeys", &have_otks, &otks) < 0 ||
            get_store_int(keys, "exhausted", &have_exhausted, &exhausted) < 0 ||
            get_counters(keys, names, ELEMENTSOF(names), v) < 0)
                return -EBADMSG;

        if (have_published && have_otks && have_exhausted)
                fprintf(f,
                        "published: %" PRId64 " mailboxes\n"
                        "one-time-prekeys: %" PRId64 "\n"
                        "exhausted: %" PRId64 " mailboxes\n",
                        published, otks, exhausted);
        else
                fputs("published: unknown (secd could not read its store)\n", f);
        fprintf(f,
                "publishes: %" PRId64 "\n"
                "bundles: %" PRId64 " served, %" PRId64 " without a one-time pre-key\n",
                v[0], v[1], v[2]);
        return print_refusals(f, keys);
}

static int stats_verb(CtlContext *ctx, const char *part) {
        _cleanup_json_ json_object *reply = NULL;
        json_object *o;
        int r;

        r = ctl_call_once(ctx, "io.secd.Status.Get", NULL, &reply);
        if (r != 0)
                return r;
        if (!json_object_object_get_ex(reply, part, &o) || !json_object_is_type(o, json_type_object)) {
                log_error("secd reports no %s statistics (is it older than secctl?).", part);
                return CTL_EXIT_FAILURE;
        }
        if (ctx->json) {
                ctl_json_print(ctx->out, o);
                return 0;
        }
        r = streq(part, "relay") ? ctl_relay_stats_print(ctx->out, reply, (int64_t) (time(NULL) * INT64_C(1000000)))
                                 : ctl_keys_stats_print(ctx->out, reply);
        if (r < 0)
                return ctl_bad_reply("io.secd.Status.Get");
        return 0;
}

int ctl_verb_relay_stats(CtlContext *ctx) {
        return stats_verb(ctx, "relay");
}

int ctl_verb_keys_stats(CtlContext *ctx) {
        return stats_verb(ctx, "keys");
}
