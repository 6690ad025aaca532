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
/*
 * Audit rows wait at most this long to be committed together (a crash loses
 * at most this window of rows; a clean stop loses none)...
 */
#define MANAGER_AUDIT_FLUSH_USEC (20 * 1000)
/* ...or until this many are waiting. */
#define MANAGER_AUDIT_BATCH_MAX 256

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
        manager_audit_shutdown(m);
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

/* One audit row waiting for its batch: everything the row and its publication need. */
typedef struct AuditRow {
        DbAuditEntry entry;             /* owned strings; id filled in on the writer thread */
        json_object *fields;            /* a reference, for the followers */
        int result;                     /* of the append, on the writer thread */
} AuditRow;

/*
 * Rows recorded within MANAGER_AUDIT_FLUSH_USEC go to the writer as one job:
 * one transaction, one sync, one wake-up of the writer for all of them,
 * instead of a commit per connection (bench/README.md, "Handshake").
 */
struct AuditBatch {
        Manager *manager;
        size_t n;
        AuditRow rows[MANAGER_AUDIT_BATCH_MAX];
};

static AuditBatch *audit_batch_free(AuditBatch *b) {
        if (!b)
                return NULL;
        for (size_t i = 0; i < b->n; i++) {
                free(b->rows[i].entry.kind);
                free(b->rows[i].entry.message);
                free(b->rows[i].entry.fields_json);
                json_object_put(b->rows[i].fields);
        }
        free(b);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(AuditBatch *, audit_batch_free);

static int audit_batch_run(Db *db, void *userdata) {
        AuditBatch *b = userdata;

        for (size_t i = 0; i < b->n; i++) {
                if (b->rows[i].result < 0)
                        continue;       /* could not even be copied */
                /* Each append is a savepoint of its own: a row the store refuses goes alone... */
                b->rows[i].result = db_audit_append(db, &b->rows[i].entry, &b->rows[i].entry.id);
                /* ...but when the store itself fails (disk full, I/O), the batch fails. */
                if (b->rows[i].result < 0 && b->rows[i].result != -EINVAL && b->rows[i].result != -E2BIG)
                        return b->rows[i].result;
        }
        return 0;
}

static void manager_audit_dropped(Manager *m, size_t n, int r, const char *why) {
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        char message[256];

        m->audit_dropped += n;
        if (m->audit_drop_logged_usec != 0 && now - m->audit_drop_logged_usec < MANAGER_AUDIT_DROP_LOG_INTERVAL_USEC)
                return;
        m->audit_drop_logged_usec = now;
        (void) snprintf(message, sizeof message, "%s (%" PRIu64 " audit entries dropped since start; "
                        "this warning is rate-limited)", why, m->audit_dropped);
        log_struct_errno(LOG_WARNING, r, message, SECD_MESSAGE_ERROR, NULL);
}

static void audit_batch_done(void *userdata, int r) {
        _cleanup_(audit_batch_freep) AuditBatch *b = userdata;
        Manager *m = b->manager;
        size_t lost = 0;
        int why = r;

        for (size_t i = 0; i < b->n; i++) {
                AuditRow *row = &b->rows[i];

                if (r < 0 || row->result < 0) {
                        lost++;
                        if (why >= 0)
                                why = row->result;
                        continue;
                }
                manager_audit_publish(m, row->entry.id, row->entry.time_usec, row->entry.kind, row->entry.message,
                                      row->fields);
        }
        if (lost > 0)
                manager_audit_dropped(m, lost, why, "Cannot append to the audit trail; entries are lost.");
}

/* Hand the rows waiting for their batch to the writer (or, without one or when here, write them now). */
static void manager_audit_flush(Manager *m, bool here) {
        _cleanup_(audit_batch_freep) AuditBatch *b = TAKE_PTR(m->audit_batch);
        int r;

        if (!b)
                return;
        if (m->audit_flush_source)
                (void) sd_event_source_set_enabled(m->audit_flush_source, SD_EVENT_OFF);
        if (m->writer && !here) {
                r = writer_submit(m->writer, audit_batch_run, audit_batch_done, b);
                if (r >= 0) {
                        TAKE_PTR(b);
                        return;
                }
                if (r != -ESHUTDOWN) {
                        /* Never wait for the disk on the loop: the decisions go on without their rows. */
                        manager_audit_dropped(m, b->n, r,
                                              r == -EAGAIN ? "The store's writer queue is full; audit entries are dropped."
                                                           : "Cannot queue audit entries; they are dropped.");
                        return;
                }
        }
        /* Before the loop runs, or after the writer stopped: nothing is served, write them here. */
        r = db_begin(m->db);
        if (r >= 0) {
                r = audit_batch_run(m->db, b);
                if (r >= 0)
                        r = db_commit(m->db);
                if (r < 0)
                        (void) db_rollback(m->db);
        }
        audit_batch_done(TAKE_PTR(b), r);
}

static int manager_on_audit_flush(sd_event_source *s, uint64_t usec, void *userdata) {
        manager_audit_flush(userdata, false);
        return 0;
}

/* The first row of a batch: flush in MANAGER_AUDIT_FLUSH_USEC. */
static int manager_audit_arm_flush(Manager *m) {
        uint64_t when = now_usec(CLOCK_MONOTONIC) + MANAGER_AUDIT_FLUSH_USEC;
        int r;

        if (!m->audit_flush_source) {
                r = sd_event_add_time(m->event, &m->audit_flush_source, CLOCK_MONOTONIC, when,
                                      MANAGER_AUDIT_FLUSH_USEC / 4, manager_on_audit_flush, m);
                if (r >= 0)
                        (void) sd_event_source_set_description(m->audit_flush_source, "audit-flush");
                return r;
        }
        r = sd_event_source_set_time(m->audit_flush_source, when);
        if (r >= 0)
                r = sd_event_source_set_enabled(m->audit_flush_source, SD_EVENT_ONESHOT);
        return r;
}

void manager_audit(Manager *m, const char *kind, const char *message, json_object *fields) {
        _cleanup_free_ char *truncated = NULL;
        const char *fields_json = audit_fields_string(fields);
        AuditBatch *b;
        AuditRow *row;
        uint64_t iteration = 0;
        bool now = false, here;
        int r;

        /*
         * Until the loop first runs (start-up: the --dev rule) nothing is served and
         * nothing waits: the row is committed before READY=1, as an administrator
         * reading the trail right after the start expects.
         */
        here = !m->writer || (sd_event_get_iteration(m->event, &iteration) >= 0 && iteration == 0);

        r = audit_message_truncate(message, &truncated);
        if (r < 0) {
                manager_audit_dropped(m, 1, r, "Cannot record an audit entry: out of memory.");
                return;
        }
        if (!m->audit_batch) {
                m->audit_batch = calloc(1, sizeof *m->audit_batch);
                if (!m->audit_batch) {
                        manager_audit_dropped(m, 1, -ENOMEM, "Cannot record an audit entry: out of memory.");
                        return;
                }
                m->audit_batch->manager = m;
                /* Without a writer (or a timer) there is nothing to wait for. */
                now = here || manager_audit_arm_flush(m) < 0;
        }
        b = m->audit_batch;
        row = &b->rows[b->n];
        *row = (AuditRow) {
                .entry = {
                        .time_usec = (int64_t) now_usec(CLOCK_REALTIME),
                        .kind = strdup(kind),
                        .message = truncated ? TAKE_PTR(truncated) : strdup(message),
                        .fields_json = fields_json ? strdup(fields_json) : NULL,
                },
                .fields = fields ? json_object_get(fields) : NULL,
        };
        /* Counted in the batch even when a copy failed, so that it is freed with it. */
        b->n++;
        if (!row->entry.kind || !row->entry.message || (fields_json && !row->entry.fields_json))
                row->result = -ENOMEM;
        if (now || b->n == MANAGER_AUDIT_BATCH_MAX)
                manager_audit_flush(m, here);
}

void manager_audit_shutdown(Manager *m) {
        /* Rows waiting for their batch: to the writer, which commits them as it stops... */
        manager_audit_flush(m, false);
        m->writer = writer_free(m->writer);
        /* ...and those the last completions recorded: written here. */
        manager_audit_flush(m, true);
        m->audit_flush_source = sd_event_source_disable_unref(m->audit_flush_source);
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
