/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <arpa/inet.h>
#include <ctype.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <syslog.h>

#include "config.h"
#include "exe-hash.h"
#include "relay-proto.h"
#include "strutil.h"
#include "util.h"

typedef enum ConfigType {
        CONFIG_PATH,            /* absolute, or made absolute against the working directory */
        CONFIG_GROUP_NAME,
        CONFIG_INET_ADDRESS,    /* "" or "off" clears it */
        CONFIG_COUNT,
        CONFIG_SIZE,
        CONFIG_DURATION,
        CONFIG_LOG_LEVEL,
        CONFIG_RATE,            /* "100/s", "10/min", "off"; stored as usec per request, 0 = off */
} ConfigType;

typedef struct ConfigKey {
        ConfigKeyInfo info;
        ConfigType type;
        size_t offset;
        bool restart_only;
        uint64_t min, max;      /* for counts, sizes and durations */
} ConfigKey;

#define USEC_PER_SEC UINT64_C(1000000)

static bool config_type_is_string(ConfigType t) {
        return t == CONFIG_PATH || t == CONFIG_GROUP_NAME || t == CONFIG_INET_ADDRESS;
}

static const ConfigKey config_keys[] = {
        { { "state_dir", "DIR", "Directory of the store (secd.db)" },
          CONFIG_PATH, offsetof(Config, state_dir), true, 0, 0 },
        { { "runtime_dir", "DIR", "Directory of the sockets secd binds itself" },
          CONFIG_PATH, offsetof(Config, runtime_dir), true, 0, 0 },
        { { "admin_group", "GROUP", "Group whose members may use the control socket" },
          CONFIG_GROUP_NAME, offsetof(Config, admin_group), true, 0, 0 },
        { { "tcp_listen", "ADDR:PORT", "Address of the tcp endpoint, e.g. [::1]:7443 (off by default)" },
          CONFIG_INET_ADDRESS, offsetof(Config, tcp_listen), true, 0, 0 },
        { { "max_connections", "N", "Concurrent control connections" },
          CONFIG_COUNT, offsetof(Config, max_connections), false, 1, 65536 },
        { { "control_message_max", "SIZE", "Largest control message (Varlink), e.g. 64K" },
          CONFIG_SIZE, offsetof(Config, control_message_max), false, 1024, UINT64_C(16) << 20 },
        { { "control_output_max", "SIZE", "Reply bytes queued for one control client before it is dropped" },
          CONFIG_SIZE, offsetof(Config, control_output_max), false, 64 * 1024, UINT64_C(256) << 20 },
        { { "idle_timeout", "DURATION", "Close an idle control connection after this long" },
          CONFIG_DURATION, offsetof(Config, idle_timeout), false, 100 * 1000, 7 * 24 * 3600 * USEC_PER_SEC },
        { { "request_timeout", "DURATION", "A started request must arrive, and its reply be read, within this" },
          CONFIG_DURATION, offsetof(Config, request_timeout), false, 100 * 1000, 3600 * USEC_PER_SEC },
        { { "hash_max_size", "SIZE", "Largest executable secd hashes" },
          CONFIG_SIZE, offsetof(Config, hash_max_size), false, 4096, UINT64_C(1) << 40 },
        { { "hash_cache_entries", "N", "Entries of the executable hash cache" },
          CONFIG_COUNT, offsetof(Config, hash_cache_entries), false, 1, EXE_HASH_CACHE_ENTRIES_MAX },
        { { "hash_uid_rate", "SIZE", "Bytes per second of cold executables one uid may have hashed (0: no limit)" },
          CONFIG_SIZE, offsetof(Config, hash_uid_rate), false, 0, UINT64_C(1) << 40 },
        { { "hash_uid_burst", "SIZE", "Bytes one uid may have hashed at once above hash_uid_rate" },
          CONFIG_SIZE, offsetof(Config, hash_uid_burst), false, UINT64_C(1) << 20, UINT64_C(1) << 40 },
        { { "audit_max_rows", "N", "Audit entries kept in the store" },
          CONFIG_COUNT, offsetof(Config, audit_max_rows), false, 100, UINT64_C(100000000) },
        { { "drain_timeout", "DURATION", "How long SIGTERM waits for in-flight requests" },
          CONFIG_DURATION, offsetof(Config, drain_timeout), false, 0, 3600 * USEC_PER_SEC },
        { { "handshake_timeout", "DURATION", "A data or tcp client must finish the TLS handshake and admission within this" },
          CONFIG_DURATION, offsetof(Config, handshake_timeout), false, 100 * 1000, 600 * USEC_PER_SEC },
        { { "data_idle_timeout", "DURATION", "Close a data or tcp session without frames for this long" },
          CONFIG_DURATION, offsetof(Config, data_idle_timeout), false, 100 * 1000, 7 * 24 * 3600 * USEC_PER_SEC },
        { { "data_sessions_per_uid", "N", "Open sessions one local uid may have on the data endpoint" },
          CONFIG_COUNT, offsetof(Config, data_sessions_per_uid), false, 1, 4096 },
        { { "frame_payload_max", "SIZE", "Largest frame payload on data and tcp (at most 16M)" },
          CONFIG_SIZE, offsetof(Config, frame_payload_max), false, 1024, UINT64_C(16) << 20 },
        { { "client_cert_lifetime", "DURATION", "Lifetime of a certificate issued by enrollment" },
          CONFIG_DURATION, offsetof(Config, client_cert_lifetime), false, 60 * USEC_PER_SEC, 30 * 24 * 3600 * USEC_PER_SEC },
        { { "cert_retention", "DURATION", "How long the record of an expired certificate is kept" },
          CONFIG_DURATION, offsetof(Config, cert_retention), false, 3600 * USEC_PER_SEC,
          UINT64_C(100) * 365 * 24 * 3600 * USEC_PER_SEC },
        { { "server_cert_lifetime", "DURATION", "Lifetime of the endpoints' server certificate (renewed at 2/3)" },
          CONFIG_DURATION, offsetof(Config, server_cert_lifetime), false, 3600 * USEC_PER_SEC, 397 * 24 * 3600 * USEC_PER_SEC },
        { { "enroll_rate_limit", "N", "Enroll.Issue calls one uid may make per enroll_rate_interval" },
          CONFIG_COUNT, offsetof(Config, enroll_rate_limit), false, 1, 1000000 },
        { { "enroll_rate_interval", "DURATION", "Window of enroll_rate_limit" },
          CONFIG_DURATION, offsetof(Config, enroll_rate_interval), false, USEC_PER_SEC, 24 * 3600 * USEC_PER_SEC },
        { { "relay_message_max", "SIZE", "Largest relay message (SEND blob); with 48 bytes it must fit frame_payload_max" },
          CONFIG_SIZE, offsetof(Config, relay_message_max), false, 1, (UINT64_C(16) << 20) - 48 },
        { { "relay_ttl", "DURATION", "How long the relay keeps a message nobody fetched and acknowledged" },
          CONFIG_DURATION, offsetof(Config, relay_ttl), false, 60 * USEC_PER_SEC, 3650 * 24 * 3600 * USEC_PER_SEC },
        { { "relay_mailbox_max_messages", "N", "Messages queued in one mailbox; more are refused (QUOTA_EXCEEDED)" },
          CONFIG_COUNT, offsetof(Config, relay_mailbox_max_messages), false, 1, UINT64_C(1000000000) },
        { { "relay_mailboxes_per_owner", "N", "Mailboxes one certificate identity may own; more REGISTERs are refused (QUOTA_EXCEEDED)" },
          CONFIG_COUNT, offsetof(Config, relay_mailboxes_per_owner), false, 1, UINT64_C(1000000) },
        { { "relay_mailbox_max_bytes", "SIZE", "Message bytes queued in one mailbox; more are refused (QUOTA_EXCEEDED)" },
          CONFIG_SIZE, offsetof(Config, relay_mailbox_max_bytes), false, 1024, UINT64_C(1) << 40 },
        { { "relay_store_max_bytes", "SIZE", "Message bytes queued in all mailboxes together; more are refused (QUOTA_EXCEEDED)" },
          CONFIG_SIZE, offsetof(Config, relay_store_max_bytes), false, 1024, UINT64_C(1) << 44 },
        { { "relay_send_rate", "RATE", "SENDs per sender identity, e.g. 1000/s, 60/min, or off" },
          CONFIG_RATE, offsetof(Config, relay_send_rate), false, 0, 0 },
        { { "relay_send_burst", "N", "SENDs one sender may make at once above relay_send_rate" },
          CONFIG_COUNT, offsetof(Config, relay_send_burst), false, 1, 1000000 },
        { { "relay_recipient_rate", "RATE", "SENDs to one mailbox, from all senders together, or off" },
          CONFIG_RATE, offsetof(Config, relay_recipient_rate), false, 0, 0 },
        { { "relay_recipient_burst", "N", "SENDs to one mailbox at once above relay_recipient_rate" },
          CONFIG_COUNT, offsetof(Config, relay_recipient_burst), false, 1, 1000000 },
        { { "relay_fetch_wait_max", "DURATION", "Longest a FETCH waits for a message (long poll); 0 never waits" },
          CONFIG_DURATION, offsetof(Config, relay_fetch_wait_max), false, 0, 3600 * USEC_PER_SEC },
        { { "relay_sweep_interval", "DURATION", "How often expired messages are deleted" },
          CONFIG_DURATION, offsetof(Config, relay_sweep_interval), false, USEC_PER_SEC, 24 * 3600 * USEC_PER_SEC },
        { { "keys_bundle_rate", "RATE", "KEYS_BUNDLE requests per requester identity, or off" },
          CONFIG_RATE, offsetof(Config, keys_bundle_rate), false, 0, 0 },
        { { "keys_bundle_burst", "N", "KEYS_BUNDLE requests one requester may make at once above keys_bundle_rate" },
          CONFIG_COUNT, offsetof(Config, keys_bundle_burst), false, 1, 1000000 },
        { { "keys_bundle_target_rate", "RATE", "KEYS_BUNDLE requests per requester for one mailbox, or off" },
          CONFIG_RATE, offsetof(Config, keys_bundle_target_rate), false, 0, 0 },
        { { "keys_bundle_target_burst", "N", "KEYS_BUNDLE requests for one mailbox at once above keys_bundle_target_rate" },
          CONFIG_COUNT, offsetof(Config, keys_bundle_target_burst), false, 1, 1000000 },
        { { "keys_bundle_mailbox_rate", "RATE", "KEYS_BUNDLE requests for one mailbox from all requesters together, or off" },
          CONFIG_RATE, offsetof(Config, keys_bundle_mailbox_rate), false, 0, 0 },
        { { "keys_bundle_mailbox_burst", "N", "KEYS_BUNDLE requests for one mailbox at once above keys_bundle_mailbox_rate" },
          CONFIG_COUNT, offsetof(Config, keys_bundle_mailbox_burst), false, 1, 1000000 },
        { { "log_level", "LEVEL", "debug, info, notice, warning or err" },
          CONFIG_LOG_LEVEL, offsetof(Config, log_level), false, 0, 0 },
};

static const char *const log_level_names[] = {
        [LOG_EMERG] = "emerg", [LOG_ALERT] = "alert", [LOG_CRIT] = "crit", [LOG_ERR] = "err",
        [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice", [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

const char *config_log_level_to_string(int level) {
        if (level < 0 || (size_t) level >= ELEMENTSOF(log_level_names))
                return NULL;
        return log_level_names[level];
}

static int log_level_from_string(const char *s) {
        for (size_t i = 0; i < ELEMENTSOF(log_level_names); i++)
                if (streq(s, log_level_names[i]))
                        return (int) i;
        if (streq(s, "error"))
                return LOG_ERR;
        if (streq(s, "warn"))
                return LOG_WARNING;
        return -EINVAL;
}

size_t config_n_keys(void) {
        return ELEMENTSOF(config_keys);
}

const ConfigKeyInfo *config_key_info(size_t i) {
        return i < ELEMENTSOF(config_keys) ? &config_keys[i].info : NULL;
}

static const ConfigKey *config_key_find(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(config_keys); i++)
                if (streq(config_keys[i].info.name, name))
                        return &config_keys[i];
        return NULL;
}

#define FIELD(c, k, type) ((type *) ((uint8_t *) (c) + (k)->offset))

int config_init(Config *c) {
        *c = (Config) {
                .max_connections = 64,
                .control_message_max = 64 * 1024,
                .control_output_max = UINT64_C(4) << 20,
                .idle_timeout = 60 * USEC_PER_SEC,
                .request_timeout = 10 * USEC_PER_SEC,
                .hash_max_size = UINT64_C(512) << 20,
                .hash_cache_entries = 1024,
                .hash_uid_rate = UINT64_C(64) << 20,
                .hash_uid_burst = UINT64_C(4) << 30,
                .audit_max_rows = 100000,
                .drain_timeout = 10 * USEC_PER_SEC,
                .handshake_timeout = 10 * USEC_PER_SEC,
                .data_idle_timeout = 300 * USEC_PER_SEC,
                .data_sessions_per_uid = 256,
                .frame_payload_max = UINT64_C(1) << 20,
                .client_cert_lifetime = 3600 * USEC_PER_SEC,
                .cert_retention = 30 * 24 * 3600 * USEC_PER_SEC,
                .server_cert_lifetime = 30 * 24 * 3600 * USEC_PER_SEC,
                .enroll_rate_limit = 10,
                .enroll_rate_interval = 60 * USEC_PER_SEC,
                .relay_message_max = 96 * 1024,
                .relay_ttl = 30 * 24 * 3600 * USEC_PER_SEC,
                .relay_mailbox_max_messages = 10000,
                .relay_mailboxes_per_owner = 64,
                .relay_mailbox_max_bytes = UINT64_C(256) << 20,
                .relay_store_max_bytes = UINT64_C(4) << 30,
                .relay_send_rate = USEC_PER_SEC / 1000,         /* 1000/s */
                .relay_send_burst = 1000,
                .relay_recipient_rate = USEC_PER_SEC / 2000,    /* 2000/s */
                .relay_recipient_burst = 4000,
                .relay_fetch_wait_max = 60 * USEC_PER_SEC,
                .relay_sweep_interval = 60 * USEC_PER_SEC,
                .keys_bundle_rate = USEC_PER_SEC / 10,          /* 10/s */
                .keys_bundle_burst = 50,
                .keys_bundle_target_rate = 6 * USEC_PER_SEC,    /* 10/min */
                .keys_bundle_target_burst = 5,
                .keys_bundle_mailbox_rate = USEC_PER_SEC,       /* 60/min */
                .keys_bundle_mailbox_burst = 30,
                .log_level = LOG_INFO,
        };
        c->state_dir = strdup(SECD_STATE_DIR_DEFAULT);
        c->runtime_dir = strdup(SECD_RUNTIME_DIR_DEFAULT);
        c->admin_group = strdup(SECD_ADMIN_GROUP_DEFAULT);
        if (!c->state_dir || !c->runtime_dir || !c->admin_group) {
                config_done(c);
                return -ENOMEM;
        }
        return 0;
}

void config_done(Config *c) {
        free(c->state_dir);
        free(c->runtime_dir);
        free(c->admin_group);
        free(c->tcp_listen);
        *c = (Config) {};
}

int config_copy(const Config *src, Config *ret) {
        Config c = *src;

        c.state_dir = c.runtime_dir = c.admin_group = c.tcp_listen = NULL;
        for (size_t i = 0; i < ELEMENTSOF(config_keys); i++) {
                const ConfigKey *k = &config_keys[i];
                const char *s;

                if (!config_type_is_string(k->type))
                        continue;
                s = *FIELD(src, k, char *);
                if (s && !(*FIELD(&c, k, char *) = strdup(s))) {
                        config_done(&c);
                        return -ENOMEM;
                }
        }
        *ret = c;
        return 0;
}

static _printf_(2, 3) int reason(char **ret_reason, const char *fmt, ...) {
        va_list ap;

        if (!ret_reason)
                return 0;
        va_start(ap, fmt);
        if (vasprintf(ret_reason, fmt, ap) < 0)
                *ret_reason = NULL;
        va_end(ap);
        return 0;
}

int config_parse_inet_address(const char *s, struct sockaddr_storage *ret, socklen_t *ret_len) {
        char host[INET6_ADDRSTRLEN + 1];
        const char *port_s, *host_end;
        uint32_t port;
        size_t l;
        int r;

        if (isempty(s))
                return -EINVAL;
        if (s[0] == '[') {
                host_end = strchr(s, ']');
                if (!host_end || host_end[1] != ':')
                        return -EINVAL;
                l = (size_t) (host_end - s - 1);
                if (l == 0 || l >= sizeof host)
                        return -EINVAL;
                memcpy(host, s + 1, l);
                port_s = host_end + 2;
        } else {
                host_end = strrchr(s, ':');
                if (!host_end)
                        return -EINVAL;
                l = (size_t) (host_end - s);
                if (l == 0 || l >= sizeof host)
                        return -EINVAL;
                memcpy(host, s, l);
                port_s = host_end + 1;
        }
        host[l] = '\0';

        r = parse_uint32(port_s, &port);
        if (r < 0 || port == 0 || port > 65535)
                return -EINVAL;

        struct sockaddr_storage ss = {};
        if (s[0] == '[') {
                struct sockaddr_in6 *sa6 = (struct sockaddr_in6 *) &ss;
                sa6->sin6_family = AF_INET6;
                sa6->sin6_port = htons((uint16_t) port);
                if (inet_pton(AF_INET6, host, &sa6->sin6_addr) != 1)
                        return -EINVAL;
                *ret_len = sizeof *sa6;
        } else {
                struct sockaddr_in *sa4 = (struct sockaddr_in *) &ss;
                sa4->sin_family = AF_INET;
                sa4->sin_port = htons((uint16_t) port);
                if (inet_pton(AF_INET, host, &sa4->sin_addr) != 1)
                        return -EINVAL;
                *ret_len = sizeof *sa4;
        }
        *ret = ss;
        return 0;
}

static int path_make_absolute(const char *p, char **ret) {
        _cleanup_free_ char *cwd = NULL;
        char *s;
        size_t l;

        if (p[0] == '/')
                s = strdup(p);
        else {
                cwd = getcwd(NULL, 0);
                if (!cwd)
                        return negative_errno();
                if (asprintf(&s, "%s/%s", cwd, p) < 0)
                        s = NULL;
        }
        if (!s)
                return -ENOMEM;
        /* Drop trailing slashes (but keep "/"): the socket paths are built from it. */
        l = strlen(s);
        while (l > 1 && s[l - 1] == '/')
                s[--l] = '\0';
        *ret = s;
        return 0;
}

/*
 * "N/s", "N/min", "N/h", "N/d" or a bare N (per second), N in 1..1000000;
 * "off" or "0" for no limit. The result is the usec between two requests.
 */
static int parse_rate(const char *s, uint64_t *ret) {
        static const struct {
                const char *unit;
                uint64_t usec;
        } units[] = {
                { "s", USEC_PER_SEC }, { "sec", USEC_PER_SEC }, { "min", 60 * USEC_PER_SEC },
                { "m", 60 * USEC_PER_SEC }, { "h", 3600 * USEC_PER_SEC }, { "d", 24 * 3600 * USEC_PER_SEC },
        };
        char number[32];
        const char *slash;
        uint64_t n, per = USEC_PER_SEC;
        size_t l;
        int r;

        if (streq(s, "off") || streq(s, "0")) {
                *ret = 0;
                return 0;
        }
        slash = strchr(s, '/');
        l = slash ? (size_t) (slash - s) : strlen(s);
        if (l == 0 || l >= sizeof number)
                return -EINVAL;
        memcpy(number, s, l);
        number[l] = '\0';
        r = parse_uint64(number, &n);
        if (r < 0)
                return r;
        if (n < 1 || n > 1000000)
                return -ERANGE;
        if (slash) {
                size_t i;

                for (i = 0; i < ELEMENTSOF(units); i++)
                        if (streq(slash + 1, units[i].unit))
                                break;
                if (i >= ELEMENTSOF(units))
                        return -EINVAL;
                per = units[i].usec;
        }
        *ret = per / n;
        return 0;
}

int config_set(Config *c, const char *key, const char *value, char **ret_reason) {
        const ConfigKey *k = config_key_find(key);
        uint64_t v;
        int r;

        if (!k) {
                reason(ret_reason, "unknown key \"%s\"", key);
                return -ENOENT;
        }

        switch (k->type) {
        case CONFIG_PATH: {
                char *p;

                if (isempty(value) || strlen(value) > 4000) {
                        reason(ret_reason, "%s: expected a directory path", key);
                        return -EINVAL;
                }
                r = path_make_absolute(value, &p);
                if (r < 0)
                        return r;
                free(*FIELD(c, k, char *));
                *FIELD(c, k, char *) = p;
                return 0;
        }

        case CONFIG_GROUP_NAME: {
                char *p;

                /* Only the shape here; existence is checked at start (secd.c). */
                if (isempty(value) || strlen(value) > 256 || !string_is_printable_utf8(value, strlen(value)) ||
                    strpbrk(value, " \t:,/")) {
                        reason(ret_reason, "%s: \"%s\" is not a valid group name", key, value);
                        return -EINVAL;
                }
                p = strdup(value);
                if (!p)
                        return -ENOMEM;
                free(*FIELD(c, k, char *));
                *FIELD(c, k, char *) = p;
                return 0;
        }

        case CONFIG_INET_ADDRESS: {
                struct sockaddr_storage ss;
                socklen_t len;
                char *p = NULL;

                if (!isempty(value) && !streq(value, "off")) {
                        if (config_parse_inet_address(value, &ss, &len) < 0) {
                                reason(ret_reason, "%s: \"%s\" is not an address such as [::1]:7443 or 127.0.0.1:7443",
                                       key, value);
                                return -EINVAL;
                        }
                        p = strdup(value);
                        if (!p)
                                return -ENOMEM;
                }
                free(*FIELD(c, k, char *));
                *FIELD(c, k, char *) = p;
                return 0;
        }

        case CONFIG_COUNT:
                r = parse_uint64(value, &v);
                if (r < 0) {
                        reason(ret_reason, "%s: \"%s\" is not a number", key, value);
                        return r;
                }
                break;

        case CONFIG_SIZE:
                r = parse_size(value, &v);
                if (r < 0) {
                        reason(ret_reason, "%s: \"%s\" is not a size such as 65536, 64K or 1M", key, value);
                        return r;
                }
                break;

        case CONFIG_DURATION:
                r = parse_duration_usec(value, &v);
                if (r < 0) {
                        reason(ret_reason, "%s: \"%s\" is not a duration such as 30s, 500ms or 5min", key, value);
                        return r;
                }
                break;

        case CONFIG_RATE:
                r = parse_rate(value, &v);
                if (r < 0) {
                        reason(ret_reason, "%s: \"%s\" is not a rate such as 100/s, 10/min or off (1 to 1000000 per unit)",
                               key, value);
                        return r;
                }
                *FIELD(c, k, uint64_t) = v;
                return 0;

        case CONFIG_LOG_LEVEL:
                r = log_level_from_string(value);
                if (r < 0) {
                        reason(ret_reason, "%s: \"%s\" is not one of debug, info, notice, warning, err", key, value);
                        return r;
                }
                *FIELD(c, k, int) = r;
                return 0;

        default:
                return -EINVAL;
        }

        if (v < k->min || v > k->max) {
                reason(ret_reason, "%s: %s is out of range (%" PRIu64 "..%" PRIu64 "%s)", key, value, k->min,
                       k->max, k->type == CONFIG_DURATION ? " usec" : k->type == CONFIG_SIZE ? " bytes" : "");
                return -ERANGE;
        }
        *FIELD(c, k, uint64_t) = v;
        if (k->offset == offsetof(Config, relay_message_max))
                c->relay_message_max_set = true;
        return 0;
}

static char *strip(char *s) {
        char *e;

        while (*s == ' ' || *s == '\t')
                s++;
        e = s + strlen(s);
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
                *--e = '\0';
        return s;
}

#define CONFIG_LINE_MAX 4096
#define CONFIG_FILE_LINES_MAX 10000

int config_load_file(Config *c, const char *path, char **ret_error) {
        _cleanup_fclose_ FILE *f = NULL;
        char buf[CONFIG_LINE_MAX + 2];
        unsigned line = 0, frame_line = 0;
        int r;

        f = fopen(path, "re");
        if (!f) {
                r = negative_errno();
                if (r != -ENOENT && ret_error)
                        *ret_error = strdup_printf("%s: cannot open: %s", path, strerror(-r));
                return r;
        }

        while (fgets(buf, sizeof buf, f)) {
                _cleanup_free_ char *why = NULL;
                char *s, *eq, *key, *value;

                line++;
                if (line > CONFIG_FILE_LINES_MAX || (strlen(buf) > CONFIG_LINE_MAX && !strchr(buf, '\n'))) {
                        if (ret_error)
                                *ret_error = strdup_printf("%s:%u: line too long or too many lines", path, line);
                        return -E2BIG;
                }
                if (!string_is_printable_utf8(buf, strcspn(buf, "\r\n"))) {
                        if (ret_error)
                                *ret_error = strdup_printf("%s:%u: not printable UTF-8", path, line);
                        return -EINVAL;
                }
                s = strip(buf);
                if (*s == '\0' || *s == '#' || *s == ';')
                        continue;
                eq = strchr(s, '=');
                if (!eq) {
                        if (ret_error)
                                *ret_error = strdup_printf("%s:%u: expected \"key = value\"", path, line);
                        return -EINVAL;
                }
                *eq = '\0';
                key = strip(s);
                value = strip(eq + 1);
                /* Optional double quotes around the whole value. */
                size_t l = strlen(value);
                if (l >= 2 && value[0] == '"' && value[l - 1] == '"') {
                        value[l - 1] = '\0';
                        value++;
                }

                r = config_set(c, key, value, &why);
                if (r < 0) {
                        if (ret_error)
                                *ret_error = strdup_printf("%s:%u: %s", path, line, why ?: strerror(-r));
                        return r == -ENOENT ? -EINVAL : r;
                }
                if (streq(key, "relay_message_max") || streq(key, "frame_payload_max"))
                        frame_line = line;
        }
        if (ferror(f)) {
                r = -EIO;
                if (ret_error)
                        *ret_error = strdup_printf("%s: read error", path);
                return r;
        }
        /*
         * A relay_message_max set here is judged here, where the line can be named
         * (a default one is fitted later, once the command line is applied too).
         */
        if (frame_line > 0 && c->relay_message_max_set) {
                _cleanup_free_ char *why = NULL;

                r = config_check(c, &why);
                if (r < 0) {
                        if (ret_error)
                                *ret_error = strdup_printf("%s:%u: %s", path, frame_line, why ?: strerror(-r));
                        return r;
                }
        }
        return 0;
}

/* A SEND carries the recipient and the client message id besides its blob. */
#define CONFIG_SEND_OVERHEAD RELAY_SEND_HEADER_SIZE

int config_check(Config *c, char **ret_error) {
        /* A message that can be sent must also come back in one FETCH reply (38 bytes of headers). */
        if (c->relay_message_max + CONFIG_SEND_OVERHEAD <= c->frame_payload_max)
                return 0;
        if (!c->relay_message_max_set) {
                /* frame_payload_max is at least 1K: this stays >= 976. */
                c->relay_message_max = c->frame_payload_max - CONFIG_SEND_OVERHEAD;
                return 0;
        }
        reason(ret_error,
               "relay_message_max (%" PRIu64 " bytes) does not fit in a frame: frame_payload_max (%" PRIu64
               " bytes) must be at least %" PRIu64 " bytes, or relay_message_max at most %" PRIu64 " bytes",
               c->relay_message_max, c->frame_payload_max, c->relay_message_max + CONFIG_SEND_OVERHEAD,
               c->frame_payload_max > CONFIG_SEND_OVERHEAD ? c->frame_payload_max - CONFIG_SEND_OVERHEAD : 0);
        return -EINVAL;
}

int config_keep_restart_only(const Config *running, Config *loaded, const char ***ret_names) {
        _cleanup_free_ const char **names = NULL;
        size_t n = 0;

        names = calloc(ELEMENTSOF(config_keys) + 1, sizeof *names);
        if (!names)
                return -ENOMEM;

        for (size_t i = 0; i < ELEMENTSOF(config_keys); i++) {
                const ConfigKey *k = &config_keys[i];
                bool same;

                if (!k->restart_only)
                        continue;
                if (config_type_is_string(k->type)) {
                        const char *a = *FIELD(running, k, char *), *b = *FIELD(loaded, k, char *);
                        same = streq_ptr(a, b);
                        if (!same) {
                                char *copy = NULL;
                                if (a && !(copy = strdup(a)))
                                        return -ENOMEM;
                                free(*FIELD(loaded, k, char *));
                                *FIELD(loaded, k, char *) = copy;
                        }
                } else {
                        same = *FIELD(running, k, uint64_t) == *FIELD(loaded, k, uint64_t);
                        *FIELD(loaded, k, uint64_t) = *FIELD(running, k, uint64_t);
                }
                if (!same)
                        names[n++] = k->info.name;
        }

        if (ret_names)
                *ret_names = TAKE_PTR(names);
        return (int) n;
}
