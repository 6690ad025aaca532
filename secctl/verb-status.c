/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * secctl status: io.secd.Status.Get as "key: value" lines (format
 * documented in secctl(8); integration tests read it).
 */
#include <inttypes.h>
#include <time.h>

#include "log.h"
#include "secctl.h"

void ctl_format_duration(uint64_t usec, char *buf, size_t n) {
        static const struct {
                const char *suffix;
                uint64_t usec;
        } units[] = {
                { "d",   UINT64_C(86400000000) },
                { "h",   UINT64_C(3600000000) },
                { "min", UINT64_C(60000000) },
                { "s",   UINT64_C(1000000) },
        };
        size_t used = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < ELEMENTSOF(units) && used < n; i++) {
                uint64_t v = usec / units[i].usec;
                int k;

                if (v == 0 && !(i + 1 == ELEMENTSOF(units) && used == 0))
                        continue;
                usec %= units[i].usec;
                k = snprintf(buf + used, n - used, "%s%" PRIu64 "%s", used ? " " : "", v, units[i].suffix);
                if (k < 0)
                        break;
                used += (size_t) k;
        }
}

void ctl_format_time(int64_t usec, char *buf, size_t n) {
        time_t t = (time_t) (usec / 1000000);
        struct tm tm;
        char zone[8];
        size_t k;

        if (usec < 0 || !localtime_r(&t, &tm) || (k = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm)) == 0 ||
            strftime(zone, sizeof zone, "%z", &tm) != 5) {
                (void) snprintf(buf, n, "@%" PRId64, usec);
                return;
        }
        /* RFC 3339: "+0200" -> "+02:00". */
        (void) snprintf(buf + k, n - k, "%.3s:%.2s", zone, zone + 3);
}

static int get_counters(json_object *reply, const char *key, const char *const *names, size_t n_names,
                        int64_t *values) {
        json_object *o;

        if (!json_object_object_get_ex(reply, key, &o) || !json_object_is_type(o, json_type_object))
                return -EBADMSG;
        for (size_t i = 0; i < n_names; i++)
                if (ctl_json_get_int(o, names[i], &values[i]) < 0)
                        return -EBADMSG;
        return 0;
}

int ctl_status_print(FILE *f, json_object *reply) {
        static const char *const conn_names[] = { "data", "tcp", "enroll", "control" };
        static const char *const dec_names[] = { "allowed", "denied", "permissive" };
        static const char *const cache_names[] = { "entries", "capacity", "hits", "misses", "evictions", "too_large" };
        static const char *const tls_names[] = { "handshakes", "resumed", "handshake_failures", "handshake_timeouts",
                                                 "refused", "uid_limit" };
        static const char *const pool_names[] = { "queued", "submitted", "coalesced", "rejected_busy", "rejected_uid",
                                                   "rejected_budget" };
        int64_t uptime, generation, rules, conn[4], dec[3], cache[6], tls[6] = { -1 }, pool[6] = { -1 };
        const char *version, *mode;
        char up[64];

        if (ctl_json_get_string(reply, "version", &version) < 0 ||
            ctl_json_get_int(reply, "uptime_usec", &uptime) < 0 || uptime < 0 ||
            ctl_json_get_string(reply, "mode", &mode) < 0 ||
            ctl_json_get_int(reply, "generation", &generation) < 0 ||
            ctl_json_get_int(reply, "rules", &rules) < 0 ||
            get_counters(reply, "connections", conn_names, ELEMENTSOF(conn_names), conn) < 0 ||
            get_counters(reply, "decisions", dec_names, ELEMENTSOF(dec_names), dec) < 0 ||
            get_counters(reply, "hash_cache", cache_names, ELEMENTSOF(cache_names), cache) < 0)
                return -EBADMSG;

        /* Issue 4's TLS and hashing counters: printed when secd sends them. */
        if (json_object_object_get_ex(reply, "tls", NULL) &&
            get_counters(reply, "tls", tls_names, ELEMENTSOF(tls_names), tls) < 0)
                return -EBADMSG;
        if (json_object_object_get_ex(reply, "hash_pool", NULL) &&
            get_counters(reply, "hash_pool", pool_names, ELEMENTSOF(pool_names), pool) < 0)
                return -EBADMSG;

        ctl_format_duration((uint64_t) uptime, up, sizeof up);
        fprintf(f,
                "version: %s\n"
                "uptime: %s\n"
                "mode: %s\n"
                "generation: %" PRId64 "\n"
                "rules: %" PRId64 "\n"
                "connections: data %" PRId64 ", tcp %" PRId64 ", enroll %" PRId64 ", control %" PRId64 "\n"
                "decisions: allowed %" PRId64 ", denied %" PRId64 ", permissive %" PRId64 "\n"
                "hash-cache: entries %" PRId64 "/%" PRId64 ", hits %" PRId64 ", misses %" PRId64
                ", evictions %" PRId64 ", too-large %" PRId64 "\n",
                version, up, mode, generation, rules, conn[0], conn[1], conn[2], conn[3], dec[0], dec[1],
                dec[2], cache[0], cache[1], cache[2], cache[3], cache[4], cache[5]);
        if (tls[0] >= 0)
                fprintf(f, "tls: handshakes %" PRId64 " (resumed %" PRId64 "), failed %" PRId64 ", timed out %" PRId64
                        ", refused %" PRId64 ", over the per-uid session limit %" PRId64 "\n", tls[0], tls[1], tls[2],
                        tls[3], tls[4], tls[5]);
        if (pool[0] >= 0)
                fprintf(f, "hash-pool: queued %" PRId64 ", hashed %" PRId64 ", shared %" PRId64 ", busy %" PRId64
                        ", per-uid limit %" PRId64 ", per-uid budget %" PRId64 "\n", pool[0], pool[1], pool[2],
                        pool[3], pool[4], pool[5]);
        return 0;
}

int ctl_verb_status(CtlContext *ctx) {
        _cleanup_json_ json_object *reply = NULL;
        int r;

        r = ctl_call_once(ctx, "io.secd.Status.Get", NULL, &reply);
        if (r != 0)
                return r;
        if (ctx->json) {
                ctl_json_print(ctx->out, reply);
                return 0;
        }
        if (ctl_status_print(ctx->out, reply) < 0)
                return ctl_bad_reply("io.secd.Status.Get");
        return 0;
}
