/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The daemon's state: one Manager per process, owned by run() in secd.c and
 * driven by one sd_event loop. Everything here runs on that loop's thread.
 *
 * Shared, swappable state follows the design: the policy snapshot is
 * immutable and replaced as a whole (manager_policy_reload()), the hash
 * cache is the locked, bounded ExeHashCache.
 */

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "db.h"
#include "exe-hash.h"
#include "policy.h"
#include "util.h"
#include "writer.h"

static inline void json_object_unrefp(json_object **o) {
        if (*o)
                (void) json_object_put(*o);
}

typedef struct Endpoint Endpoint;
typedef struct ControlConnection ControlConnection;
typedef struct SecdCA SecdCA;
typedef struct TlsServer TlsServer;
typedef struct DataConnection DataConnection;
typedef struct HashPool HashPool;
typedef struct AuditBatch AuditBatch;
typedef struct Relay Relay;

typedef struct DecisionCounters {
        uint64_t allowed;       /* the policy allowed */
        uint64_t denied;        /* refused (enforce mode, or before evaluation) */
        uint64_t permissive;    /* the policy denied, permissive mode admitted */
} DecisionCounters;

/* The data and tcp endpoints' TLS sessions since start (data.c). */
typedef struct DataCounters {
        uint64_t handshakes;            /* completed, full or resumed */
        uint64_t resumed;               /* of those, resumed from a session ticket */
        uint64_t handshake_failures;    /* alert, bad or missing certificate, not TLS */
        uint64_t handshake_timeouts;    /* handshake_timeout reached */
        uint64_t refused;               /* completed, then not admitted (NOT_ADMITTED) */
        uint64_t uid_limit;             /* closed at accept: the peer uid had data_sessions_per_uid open */
} DataCounters;

typedef struct Manager {
        sd_event *event;

        Config config;                  /* running configuration */
        char *config_file;              /* explicit --config, or NULL */
        bool config_file_explicit;
        char **cmdline_keys;            /* command-line overrides, re-applied on reload */
        char **cmdline_values;
        size_t n_cmdline;

        bool dev;                       /* --dev: the invoking user is admin */
        uid_t dev_uid;
        gid_t admin_gid;                /* resolved at start (not in --dev) */

        Db *db;
        Writer *writer;                 /* the store's group-commit thread (writer.c): relay and audit writes */
        Relay *relay;                   /* relay and key server, shared state (relay.c) */
        PolicySnapshot *policy;
        ExeHashCache *hash_cache;
        uint64_t hash_max_size_running; /* the limit hash_cache was made with */

        Endpoint *endpoints[4];         /* by PolicyEndpoint */
        ControlConnection *connections; /* control connections, linked list */
        size_t n_control_connections;
        uint64_t n_connections[4];      /* open now, by PolicyEndpoint */
        DecisionCounters decisions;

        SecdCA *ca;                     /* certificate authority and server credentials (ca.c) */
        TlsServer *tls;                 /* TLS priorities and session ticket key (tls.c) */
        DataConnection *data_connections; /* mTLS sessions on data and tcp, linked list (data.c) */
        sd_event_source *data_expiry_source; /* their earliest certificate expiry (data.c) */
        sd_event_source *data_flush_source;  /* flushes every kicked connection in one iteration (data.c) */
        DataConnection *data_kicked;         /* those connections (data.c) */
        HashPool *hash_pool;            /* worker threads for cold executable hashing (hash-pool.c) */
        DataCounters data_counters;

        uint64_t start_usec;            /* CLOCK_MONOTONIC */
        unsigned audit_appends;         /* since the last trim */
        uint64_t audit_dropped;         /* audit rows lost: writer queue full, or the write failed */
        uint64_t audit_drop_logged_usec; /* CLOCK_MONOTONIC, rate-limits the warning */
        AuditBatch *audit_batch;        /* rows waiting to go to the writer together (manager.c) */
        sd_event_source *audit_flush_source;

        sd_event_source *sigterm_source, *sigint_source, *sighup_source;
        sd_event_source *watchdog_source, *drain_source;
        uint64_t watchdog_usec;
        bool stopping;
        int exit_code;
} Manager;

int manager_new(Manager **ret);
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);

/* Open (create) the store under state_dir, and start its writer thread (m->writer) on the same file. */
int manager_open_store(Manager *m);

/*
 * Open (on first start: create) the CA in state_dir with the configured
 * lifetimes, and arm the timer that renews the server certificate and the
 * CRL (manager-ca.c).
 */
int manager_ca_open(Manager *m);
/* Re-read the CA files (reload); on failure the running CA stays. */
int manager_ca_reload(Manager *m);

/* Make a new snapshot from the store and swap it in. */
int manager_policy_reload(Manager *m);

/* (Re)create the hash cache from the running config when its limits changed. */
int manager_hash_cache_setup(Manager *m);

/*
 * Record an audit entry (kind, message, fields: a JSON object or NULL; a
 * reference is kept until the entry is published, so the caller must not
 * change it afterwards) without waiting for the disk: rows recorded within
 * a few milliseconds are appended together by the writer thread, and once
 * committed pushed to Audit.Tail followers (so an entry shows up there, and
 * in the store, a moment later). If the writer's queue is full the rows are
 * dropped, counted in audit_dropped and logged (rate-limited): the audit
 * trail never blocks nor decides anything. Without a writer (before the
 * store opened, after shutdown) rows are written synchronously.
 */
void manager_audit(Manager *m, const char *kind, const char *message, json_object *fields);
/* Commit the rows still waiting and stop the writer (manager_free() does it; idempotent). */
void manager_audit_shutdown(Manager *m);

/* Append synchronously on m->db, inside the caller's open transaction (admin path): the caller commits. */
int manager_audit_append(Manager *m, const char *kind, const char *message, json_object *fields,
                         int64_t *ret_id, int64_t *ret_time);
/* Push an entry already committed to the store to the followers (and trim the trail now and then, on the writer). */
void manager_audit_publish(Manager *m, int64_t id, int64_t time_usec, const char *kind,
                           const char *message, json_object *fields);

/*
 * Build a configuration: defaults, --dev paths, the file (the default one
 * may be missing, an explicit one may not), then the command-line options.
 */
int manager_load_config(Manager *m, Config *ret, char **ret_error);

/* Re-read config and policy (SIGHUP and Service.Reload). */
int manager_reload(Manager *m, const char ***ret_restart_needed, char **ret_error);

/* Send STATUS= with a live summary. */
void manager_send_status(Manager *m);

/* Is the peer with these connect-time credentials an administrator? */
bool manager_peer_is_admin(Manager *m, uid_t uid, gid_t gid, const gid_t *groups, size_t n_groups);
