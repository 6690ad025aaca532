/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "ca.h"
#include "control.h"
#include "data.h"
#include "endpoint.h"
#include "hash-pool.h"
#include "log.h"
#include "manager.h"
#include "relay.h"
#include "secd-messages.h"
#include "tls.h"

/* Trim the audit table every this many appends (a DELETE over an index, cheap). */
#define MANAGER_AUDIT_TRIM_EVERY 256
/* At most one warning about dropped audit rows per this interval. */
#define MANAGER_AUDIT_DROP_LOG_INTERVAL_USEC (10 * 1000 * 1000)

int manager_new(Manager **ret) {
        _cleanup_(manager_freep) Manager *m = NULL;
        int r;

        m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        m->admin_gid = (gid_t) -1;
        r = config_init(&m->config);
        if (r < 0)
                return r;
        r = sd_event_default(&m->event);
        if (r < 0)
                return r;
        m->start_usec = now_usec(CLOCK_MONOTONIC);
        *ret = TAKE_PTR(m);
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        /* First: the last completions (relay acks, audit rows) still find their connections. */
        m->writer = writer_free(m->writer);
        while (m->connections)
                control_connection_free(m->connections);
        data_free_all(m);
        /* After the writer (its last completions count into the relay) and the sessions. */
        m->relay = relay_free(m->relay);
        hash_pool_free(m->hash_pool);
        tls_server_free(m->tls);
        ca_free(m->ca);
        for (size_t i = 0; i < ELEMENTSOF(m->endpoints); i++)
                m->endpoints[i] = endpoint_free(m->endpoints[i]);
        sd_event_source_disable_unref(m->sigterm_source);
        sd_event_source_disable_unref(m->sigint_source);
        sd_event_source_disable_unref(m->sighup_source);
        sd_event_source_disable_unref(m->watchdog_source);
        sd_event_source_disable_unref(m->drain_source);
        policy_snapshot_unref(m->policy);
        exe_hash_cache_free(m->hash_cache);
        db_close(m->db);
        sd_event_unref(m->event);
        for (size_t i = 0; i < m->n_cmdline; i++) {
                free(m->cmdline_keys[i]);
                free(m->cmdline_values[i]);
        }
        free(m->cmdline_keys);
        free(m->cmdline_values);
        free(m->config_file);
        config_done(&m->config);
        free(m);
        return NULL;
}

int manager_open_store(Manager *m) {
        _cleanup_free_ char *path = NULL;
        int r;

        r = mkdir_p(m->config.state_dir, 0700);
        if (r < 0)
                return log_error_errno(r, "Cannot create the state directory %s: %m", m->config.state_dir);
        if (asprintf(&path, "%s/secd.db", m->config.state_dir) < 0)
                return log_oom();
        r = db_open(path, DB_OPEN_CREATE, &m->db);
        if (r < 0)
                return log_error_errno(r, "Cannot open the store %s: %m (%s)", path, db_last_error(NULL));
        /* Created and migrated now: the writer thread opens the same file. */
        r = writer_new(m->event, path, 0, &m->writer);
        if (r < 0)
                return log_error_errno(r, "Cannot start the store's writer thread: %m");
        r = relay_new(m, &m->relay);
        if (r < 0)
                return log_error_errno(r, "Cannot set up the relay: %m");
        log_debug("Store %s open.", path);
        return 0;
}

int manager_policy_reload(Manager *m) {
        PolicyRule *rules = NULL;
        size_t n = 0;
        uint64_t generation;
        PolicyMode mode;
        PolicySnapshot *s;
        int r;

        r = db_policy_generation(m->db, &generation);
        if (r < 0)
                return log_error_errno(r, "Cannot read the policy generation: %m (%s)", db_last_error(m->db));
        r = db_policy_mode(m->db, &mode);
        if (r < 0)
                return log_error_errno(r, "Cannot read the policy mode: %m (%s)", db_last_error(m->db));
        r = db_rules_load(m->db, &rules, &n);
        if (r < 0)
                return log_error_errno(r, "Cannot load the policy rules: %m (%s)", db_last_error(m->db));
        r = policy_snapshot_new(rules, n, generation, mode, &s);
        if (r < 0) {
                policy_rules_free(rules, n);
                return log_error_errno(r, "Cannot build a policy snapshot from the store: %m");
        }

        /* Swap: whoever holds the old snapshot keeps it alive until done. */
        policy_snapshot_unref(m->policy);
        m->policy = s;
        log_debug("Policy generation %" PRIu64 " loaded: %zu rules, mode %s.", generation, n,
                  policy_mode_to_string(mode));
        manager_send_status(m);
        return 0;
}

int manager_hash_cache_setup(Manager *m) {
        ExeHashCache *c;
        ExeHashCacheStats st;
        int r;

        if (m->hash_cache) {
                exe_hash_cache_stats(m->hash_cache, &st);
                if (st.capacity == m->config.hash_cache_entries && m->hash_max_size_running == m->config.hash_max_size)
                        return 0;
        }
        r = exe_hash_cache_new((size_t) m->config.hash_cache_entries, m->config.hash_max_size, &c);
        if (r < 0)
                return log_error_errno(r, "Cannot create the executable hash cache: %m");
        /* Workers hash through the cache: hand them the new one before the old one goes. */
        if (m->hash_pool)
                hash_pool_set_cache(m->hash_pool, c);
        exe_hash_cache_free(m->hash_cache);
        m->hash_cache = c;
        m->hash_max_size_running = m->config.hash_max_size;
        return 0;
}

static json_object *audit_entry_to_json(int64_t id, int64_t time_usec, const char *kind, const char *message,
                                        json_object *fields) {
        json_object *o = json_object_new_object();

        if (!o)
                return NULL;
        if (json_object_object_add(o, "id", json_object_new_int64(id)) < 0 ||
            json_object_object_add(o, "time_usec", json_object_new_int64(time_usec)) < 0 ||
            json_object_object_add(o, "kind", json_object_new_string(kind)) < 0 ||
            json_object_object_add(o, "message", json_object_new_string(message)) < 0 ||
            (fields && json_object_object_add(o, "fields", json_object_get(fields)) < 0)) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

/*
 * The store bounds messages; a long path or comment must not make the change
 * fail: cut at a character boundary. *ret is NULL when message fits.
 */
static int audit_message_truncate(const char *message, char **ret) {
        size_t l = DB_AUDIT_MESSAGE_MAX - 3;

        *ret = NULL;
        if (strlen(message) <= DB_AUDIT_MESSAGE_MAX)
                return 0;
        while (l > 0 && ((unsigned char) message[l] & 0xc0) == 0x80)
                l--;
        *ret = strdup_printf("%.*s...", (int) l, message);
        return *ret ? 0 : -ENOMEM;
}

static const char *audit_fields_string(json_object *fields) {
        return fields ? json_object_to_json_string_ext(fields, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
                      : NULL;
}

int manager_audit_append(Manager *m, const char *kind, const char *message, json_object *fields,
                         int64_t *ret_id, int64_t *ret_time) {
        _cleanup_free_ char *truncated = NULL;
        DbAuditEntry e = {
                .time_usec = (int64_t) now_usec(CLOCK_REALTIME),
                .kind = (char *) kind,
                .message = (char *) message,
                .fields_json = (char *) audit_fields_string(fields),
        };
        int64_t id;
        int r;

        r = audit_message_truncate(message, &truncated);
        if (r < 0)
                return r;
        if (truncated)
                e.message = truncated;

        r = db_audit_append(m->db, &e, &id);
        if (r < 0)
                return r;
        if (ret_id)
                *ret_id = id;
        if (ret_time)
                *ret_time = e.time_usec;
        return 0;
}

/* The trim as a writer job: the bound travels with it (a reload may change it meanwhile). */
typedef struct AuditTrimJob {
        size_t max_rows;
} AuditTrimJob;

static int audit_trim_run(Db *db, void *userdata) {
        AuditTrimJob *t = userdata;
        int r;

        r = db_audit_trim(db, t->max_rows);
        if (r < 0)
                /* Logged here, where db_last_error() belongs to this thread's handle. */
                log_warning_errno(r, "Cannot trim the audit trail: %m (%s)", db_last_error(db));
        return r;
}

static void audit_trim_done(void *userdata, int r) {
        free(userdata);
}

static void manager_audit_trim(Manager *m) {
        AuditTrimJob *t;
        int r;

        t = malloc(sizeof *t);
        if (!t) {
                log_oom();
                return;
        }
        t->max_rows = (size_t) m->config.audit_max_rows;
        r = writer_submit(m->writer, audit_trim_run, audit_trim_done, t);
        if (r >= 0)
                return;
        free(t);
        if (r != -ESHUTDOWN && r != -EINVAL) {
                /* Queue full: the next MANAGER_AUDIT_TRIM_EVERY appends try again. */
                log_debug_errno(r, "Cannot queue the audit trim: %m");
                return;
        }
        /* No writer (any more): the loop is not serving, do it here. */
        r = db_audit_trim(m->db, (size_t) m->config.audit_max_rows);
        if (r < 0)
                log_warning_errno(r, "Cannot trim the audit trail: %m (%s)", db_last_error(m->db));
}

static bool manager_audit_has_followers(Manager *m) {
        for (ControlConnection *c = m->connections; c; c = c->next)
                if (c->following && !c->dead)
                        return true;
        return false;
}

void manager_audit_publish(Manager *m, int64_t id, int64_t time_usec, const char *kind, const char *message,
                           json_object *fields) {
        _cleanup_(json_object_unrefp) json_object *entry = NULL;

        if (++m->audit_appends >= MANAGER_AUDIT_TRIM_EVERY) {
                m->audit_appends = 0;
                manager_audit_trim(m);
        }

        if (!manager_audit_has_followers(m))
                return;
        entry = audit_entry_to_json(id, time_usec, kind, message, fields);
        if (!entry) {
                log_oom();
                return;
        }
        control_audit_broadcast(m, entry);
}

/* One audit row on its way through the writer: everything the row and its publication need. */
typedef struct AuditJob {
        Manager *manager;
        DbAuditEntry entry;             /* owned strings; id filled in by the writer thread */
        json_object *fields;            /* a reference, for the followers */
} AuditJob;

static AuditJob *audit_job_free(AuditJob *j) {
        if (!j)
                return NULL;
        free(j->entry.kind);
        free(j->entry.message);
        free(j->entry.fields_json);
        json_object_put(j->fields);
        free(j);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(AuditJob *, audit_job_free);

static int audit_job_run(Db *db, void *userdata) {
        AuditJob *j = userdata;

        return db_audit_append(db, &j->entry, &j->entry.id);
}

static void manager_audit_dropped(Manager *m, int r, const char *why) {
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        char message[256];

        m->audit_dropped++;
        if (m->audit_drop_logged_usec != 0 && now - m->audit_drop_logged_usec < MANAGER_AUDIT_DROP_LOG_INTERVAL_USEC)
                return;
        m->audit_drop_logged_usec = now;
        (void) snprintf(message, sizeof message, "%s (%" PRIu64 " audit entries dropped since start; "
                        "this warning is rate-limited)", why, m->audit_dropped);
        log_struct_errno(LOG_WARNING, r, message, SECD_MESSAGE_ERROR, NULL);
}

static void audit_job_done(void *userdata, int r) {
        _cleanup_(audit_job_freep) AuditJob *j = userdata;
        Manager *m = j->manager;

        if (r < 0) {
                manager_audit_dropped(m, r, "Cannot append to the audit trail; the entry is lost.");
                return;
        }
        manager_audit_publish(m, j->entry.id, j->entry.time_usec, j->entry.kind, j->entry.message, j->fields);
}

void manager_audit(Manager *m, const char *kind, const char *message, json_object *fields) {
        _cleanup_(audit_job_freep) AuditJob *j = NULL;
        _cleanup_free_ char *truncated = NULL;
        const char *fields_json = audit_fields_string(fields);
        int64_t id, t;
        int r;

        if (m->writer) {
                r = audit_message_truncate(message, &truncated);
                if (r < 0) {
                        manager_audit_dropped(m, r, "Cannot queue an audit entry: out of memory.");
                        return;
                }
                j = calloc(1, sizeof *j);
                if (!j) {
                        manager_audit_dropped(m, -ENOMEM, "Cannot queue an audit entry: out of memory.");
                        return;
                }
                *j = (AuditJob) {
                        .manager = m,
                        .entry = {
                                .time_usec = (int64_t) now_usec(CLOCK_REALTIME),
                                .kind = strdup(kind),
                                .message = truncated ? TAKE_PTR(truncated) : strdup(message),
                                .fields_json = fields_json ? strdup(fields_json) : NULL,
                        },
                        .fields = fields ? json_object_get(fields) : NULL,
                };
                if (!j->entry.kind || !j->entry.message || (fields_json && !j->entry.fields_json)) {
                        manager_audit_dropped(m, -ENOMEM, "Cannot queue an audit entry: out of memory.");
                        return;
                }
                r = writer_submit(m->writer, audit_job_run, audit_job_done, j);
                if (r >= 0) {
                        TAKE_PTR(j);
                        return;
                }
                if (r != -ESHUTDOWN) {
                        /* Never wait for the disk on the loop: the decision goes on without its row. */
                        manager_audit_dropped(m, r, r == -EAGAIN ? "The store's writer queue is full; an audit entry is dropped."
                                                                 : "Cannot queue an audit entry; it is dropped.");
                        return;
                }
                /* The writer stopped (shutdown): nothing is served any more, write it here. */
        }

        r = manager_audit_append(m, kind, message, fields, &id, &t);
        if (r < 0) {
                manager_audit_dropped(m, r, "Cannot append to the audit trail; the entry is lost.");
                return;
        }
        manager_audit_publish(m, id, t, kind, message, fields);
}

bool manager_peer_is_admin(Manager *m, uid_t uid, gid_t gid, const gid_t *groups, size_t n_groups) {
        if (uid == 0)
                return true;
        if (m->dev)
                return uid == m->dev_uid;
        if (m->admin_gid == (gid_t) -1)
                return false;
        if (gid == m->admin_gid)
                return true;
        for (size_t i = 0; i < n_groups; i++)
                if (groups[i] == m->admin_gid)
                        return true;
        return false;
}

void manager_send_status(Manager *m) {
        uint64_t control = m->n_control_connections;

        if (!m->policy)
                return;
        (void) sd_notifyf(false, "STATUS=%s, mode %s, %zu rules, generation %" PRIu64 ", %" PRIu64
                                 " control connections; decisions: %" PRIu64 " allowed, %" PRIu64 " denied, %" PRIu64
                                 " permissive",
                          m->stopping ? "Stopping" : "Running", policy_mode_to_string(policy_snapshot_mode(m->policy)),
                          policy_snapshot_n_rules(m->policy), policy_snapshot_generation(m->policy), control,
                          m->decisions.allowed, m->decisions.denied, m->decisions.permissive);
}

int manager_load_config(Manager *m, Config *ret, char **ret_error) {
        _cleanup_(config_done) Config c = {};
        int r;

        r = config_init(&c);
        if (r < 0)
                return r;
        if (m->dev) {
                /* --dev: every path under one folder in the working directory. */
                r = config_set(&c, "state_dir", SECD_DEV_DIR_DEFAULT "/state", NULL);
                if (r >= 0)
                        r = config_set(&c, "runtime_dir", SECD_DEV_DIR_DEFAULT "/run", NULL);
                if (r < 0)
                        return r;
        }
        if (m->config_file || !m->dev) {
                const char *path = m->config_file ?: SECD_CONFIG_FILE_DEFAULT;

                r = config_load_file(&c, path, ret_error);
                if (r == -ENOENT && !m->config_file_explicit)
                        log_debug("No configuration file %s, using the defaults.", path);
                else if (r == -ENOENT) {
                        if (ret_error)
                                *ret_error = strdup_printf("%s: no such file", path);
                        return r;
                } else if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < m->n_cmdline; i++) {
                _cleanup_free_ char *why = NULL;

                r = config_set(&c, m->cmdline_keys[i], m->cmdline_values[i], &why);
                if (r < 0) {
                        if (ret_error)
                                *ret_error = strdup_printf("Invalid command-line option: %s", why ?: strerror(-r));
                        return r;
                }
        }
        r = config_check(&c, ret_error);
        if (r < 0)
                return r;
        *ret = c;
        c = (Config) {};
        return 0;
}

int manager_reload(Manager *m, const char ***ret_restart_needed, char **ret_error) {
        _cleanup_(config_done) Config c = {};
        _cleanup_free_ const char **restart = NULL;
        _cleanup_free_ char *error = NULL;
        int r, n;

        r = manager_load_config(m, &c, &error);
        if (r < 0) {
                log_struct_errno(LOG_ERR, r, error ?: "The configuration is invalid; keeping the running one.",
                                 SECD_MESSAGE_ERROR, NULL);
                if (ret_error)
                        *ret_error = TAKE_PTR(error);
                return r;
        }
        n = config_keep_restart_only(&m->config, &c, &restart);
        if (n < 0)
                return log_oom();
        for (int i = 0; i < n; i++)
                log_warning("%s changed in the configuration; it takes effect at the next restart.", restart[i]);

        config_done(&m->config);
        m->config = c;
        c = (Config) {};
        log_set_max_level(m->config.log_level);

        r = manager_hash_cache_setup(m);
        if (r < 0)
                return r;
        r = manager_policy_reload(m);
        if (r < 0)
                return r;
        r = manager_ca_reload(m);
        if (r < 0)
                return r;

        if (ret_restart_needed)
                *ret_restart_needed = TAKE_PTR(restart);
        return 0;
}
