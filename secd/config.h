/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * secd's configuration: one table of keys (config.c) serves the file
 * (/etc/secd/secd.conf, "key = value" lines) and the command line (one
 * --key-with-dashes option per key), so both always agree. Documented in
 * secd.conf(5).
 */

#include <sys/socket.h>

#include "macro.h"

#define SECD_CONFIG_FILE_DEFAULT "/etc/secd/secd.conf"
#define SECD_STATE_DIR_DEFAULT "/var/lib/secd"
#define SECD_RUNTIME_DIR_DEFAULT "/run/secd"
#define SECD_ADMIN_GROUP_DEFAULT "secd-admin"
#define SECD_DEV_DIR_DEFAULT "secd-dev"

typedef struct Config {
        char *state_dir;
        char *runtime_dir;
        char *admin_group;
        char *tcp_listen;               /* NULL: the tcp endpoint is off */
        uint64_t max_connections;       /* concurrent control connections */
        uint64_t control_message_max;   /* bytes of one Varlink message, NUL included */
        uint64_t control_output_max;    /* bytes queued for one slow control client */
        uint64_t idle_timeout;          /* usec */
        uint64_t request_timeout;       /* usec */
        uint64_t hash_max_size;         /* bytes */
        uint64_t hash_cache_entries;
        uint64_t hash_uid_rate;         /* bytes per second of cold hashing per uid; 0: no limit */
        uint64_t hash_uid_burst;        /* bytes */
        uint64_t audit_max_rows;
        uint64_t drain_timeout;         /* usec */
        uint64_t handshake_timeout;     /* usec: TLS handshake and admission on data/tcp */
        uint64_t data_idle_timeout;     /* usec: between frames on data/tcp */
        uint64_t data_sessions_per_uid; /* open sessions of one peer uid on the Unix data endpoint */
        uint64_t frame_payload_max;     /* bytes of one frame's payload (hard cap 16 MiB) */
        uint64_t client_cert_lifetime;  /* usec: enrollment certificates */
        uint64_t cert_retention;        /* usec the record of an expired certificate is kept */
        uint64_t server_cert_lifetime;  /* usec: the endpoints' server certificate */
        uint64_t enroll_rate_limit;     /* Enroll.Issue calls per uid per enroll_rate_interval */
        uint64_t enroll_rate_interval;  /* usec */
        /* Relay and key server (relay.c, keys.c). Rates: usec per request, 0 = no limit. */
        uint64_t relay_message_max;     /* bytes of one SEND blob; + 48 must fit frame_payload_max */
        bool relay_message_max_set;     /* configured, not the default (config_check()) */
        uint64_t relay_ttl;             /* usec a message is kept undelivered */
        uint64_t relay_mailbox_max_messages; /* queued per mailbox */
        uint64_t relay_mailboxes_per_owner;  /* mailboxes one principal may own */
        uint64_t relay_mailbox_max_bytes;    /* queued blob bytes per mailbox */
        uint64_t relay_store_max_bytes;      /* queued blob bytes in all mailboxes together */
        uint64_t relay_send_rate;       /* per sender principal */
        uint64_t relay_send_burst;
        uint64_t relay_recipient_rate;  /* per recipient mailbox */
        uint64_t relay_recipient_burst;
        uint64_t relay_fetch_wait_max;  /* usec a FETCH may wait (long poll) */
        uint64_t relay_sweep_interval;  /* usec between expiry sweeps */
        uint64_t keys_bundle_rate;      /* KEYS_BUNDLE per requester principal */
        uint64_t keys_bundle_burst;
        uint64_t keys_bundle_target_rate; /* KEYS_BUNDLE per (requester, mailbox) */
        uint64_t keys_bundle_target_burst;
        uint64_t keys_bundle_mailbox_rate; /* KEYS_BUNDLE per mailbox, all requesters together */
        uint64_t keys_bundle_mailbox_burst;
        int log_level;                  /* LOG_* */
} Config;

/* Fill in the built-in defaults. */
int config_init(Config *c);
void config_done(Config *c);
int config_copy(const Config *src, Config *ret);

/*
 * Set key to value (as written in the file or given on the command line).
 * -ENOENT for an unknown key; -EINVAL/-ERANGE for a bad value, with a
 * malloc'd reason in *ret_reason (may be NULL).
 */
int config_set(Config *c, const char *key, const char *value, char **ret_reason);

/*
 * Read "key = value" lines from path. A missing file is -ENOENT (the caller
 * decides whether that is fine). Any other problem: negative errno and a
 * malloc'd "path:line: reason" in *ret_error.
 */
int config_load_file(Config *c, const char *path, char **ret_error);

/*
 * Checks across keys, once the file and the command line are applied: a
 * SEND of relay_message_max must fit in frame_payload_max. A configured
 * relay_message_max that does not is -EINVAL with a malloc'd reason in
 * *ret_error (may be NULL); the default one is lowered to fit, so a small
 * frame_payload_max alone stays a valid configuration.
 */
int config_check(Config *c, char **ret_error);

/*
 * Restart-only keys whose value differs between running and loaded; for
 * those, loaded gets the running value back. Returns the number of keys
 * and (if ret_names) a NULL-terminated malloc'd array of static key names.
 */
int config_keep_restart_only(const Config *running, Config *loaded, const char ***ret_names);

/* The table, for getopt and --help. */
typedef struct ConfigKeyInfo {
        const char *name;
        const char *metavar;
        const char *help;
} ConfigKeyInfo;
size_t config_n_keys(void);
const ConfigKeyInfo *config_key_info(size_t i);

/* "[::1]:7443", "127.0.0.1:7443", "[::]:7443" -> socket address. */
int config_parse_inet_address(const char *s, struct sockaddr_storage *ret, socklen_t *ret_len);

const char *config_log_level_to_string(int level);
