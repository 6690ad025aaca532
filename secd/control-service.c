/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * io.secd.Status, io.secd.Audit, io.secd.Service and the org.varlink.service
 * introspection methods.
 */
#include <inttypes.h>

#include "control.h"
#include "hash-pool.h"
#include "interfaces.h"
#include "log.h"
#include "relay.h"
#include "secd-messages.h"
#include "writer.h"

#define AUDIT_TAIL_DEFAULT 20
#define AUDIT_TAIL_MAX 1000
/* No web site yet: point at the manual, as systemd units do. */
#define SECD_URL "man:secd(8)"

static int add_int(json_object *o, const char *k, int64_t v) {
        json_object *i = json_object_new_int64(v);

        if (!i || json_object_object_add(o, k, i) < 0) {
                json_object_put(i);
                return -ENOMEM;
        }
        return 0;
}

static int add_obj(json_object *o, const char *k, json_object *v) {
        if (!v || json_object_object_add(o, k, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

/* The data and tcp endpoints' TLS counters and the hashing pool (issue 4). */
static int control_status_add_tls(Manager *m, json_object *reply) {
        const DataCounters *d = &m->data_counters;
        HashPoolStats hp = {};
        json_object *tls, *pool;

        if (m->hash_pool)
                hash_pool_stats(m->hash_pool, &hp);
        tls = json_object_new_object();
        pool = json_object_new_object();
        if (!tls || !pool || add_int(tls, "handshakes", (int64_t) d->handshakes) < 0 ||
            add_int(tls, "resumed", (int64_t) d->resumed) < 0 ||
            add_int(tls, "handshake_failures", (int64_t) d->handshake_failures) < 0 ||
            add_int(tls, "handshake_timeouts", (int64_t) d->handshake_timeouts) < 0 ||
            add_int(tls, "refused", (int64_t) d->refused) < 0 ||
            add_int(tls, "uid_limit", (int64_t) d->uid_limit) < 0 || add_int(pool, "queued", (int64_t) hp.queued) < 0 ||
            add_int(pool, "submitted", (int64_t) hp.submitted) < 0 ||
            add_int(pool, "completed", (int64_t) hp.completed) < 0 ||
            add_int(pool, "rejected_busy", (int64_t) hp.rejected_busy) < 0 ||
            add_int(pool, "rejected_uid", (int64_t) hp.rejected_uid) < 0 ||
            add_int(pool, "rejected_budget", (int64_t) hp.rejected_budget) < 0 ||
            add_int(pool, "coalesced", (int64_t) hp.coalesced) < 0) {
                json_object_put(tls);
                json_object_put(pool);
                return -ENOMEM;
        }
        if (add_obj(reply, "tls", tls) < 0) {
                json_object_put(pool);
                return -ENOMEM;
        }
        return add_obj(reply, "hash_pool", pool) < 0 ? -ENOMEM : 0;
}

static json_object *status_refusals(const RelayRefusals *f) {
        const struct {
                const char *name;
                uint64_t value;
        } fields[] = {
                { "bad_payload", f->bad_payload },
                { "not_registered", f->not_registered },
                { "bad_signature", f->bad_signature },
                { "not_owner", f->not_owner },
                { "mailbox_busy", f->mailbox_busy },
                { "no_such_mailbox", f->no_such_mailbox },
                { "quota_exceeded", f->quota_exceeded },
                { "rate_limited", f->rate_limited },
                { "message_too_large", f->message_too_large },
                { "no_keys", f->no_keys },
                { "busy", f->busy },
                { "already_registered", f->already_registered },
                { "internal", f->internal },
        };
        json_object *o = json_object_new_object();

        for (size_t i = 0; o && i < ELEMENTSOF(fields); i++)
                if (add_int(o, fields[i].name, (int64_t) fields[i].value) < 0) {
                        json_object_put(o);
                        return NULL;
                }
        return o;
}

/*
 * The relay and key server (issue 5): counters since start, and what the
 * store holds now. The store numbers are read on the loop's own handle
 * (admin path, a few aggregate queries); when that fails they are left out
 * and the counters are still reported.
 */
static int control_status_add_relay(Manager *m, json_object *reply) {
        _cleanup_(json_object_unrefp) json_object *relay = NULL, *keys = NULL;
        const RelayCounters *rc;
        const KeysCounters *kc;
        DbRelayStats rs;
        DbKeysStats ks;
        int r;

        if (!m->relay)
                return 0;
        rc = relay_get_counters(m->relay);
        kc = relay_get_keys_counters(m->relay);
        relay = json_object_new_object();
        keys = json_object_new_object();
        if (!relay || !keys)
                return -ENOMEM;

        r = db_relay_stats(m->db, &rs);
        if (r < 0)
                log_warning_errno(r, "Status: cannot read the relay's store statistics: %m (%s)", db_last_error(m->db));
        else if (add_int(relay, "mailboxes", (int64_t) rs.mailboxes) < 0 ||
                 add_int(relay, "messages", (int64_t) rs.messages) < 0 ||
                 add_int(relay, "bytes", (int64_t) rs.bytes) < 0 || add_int(relay, "oldest_usec", rs.oldest_usec) < 0)
                return -ENOMEM;
        if (add_int(relay, "store_max_bytes", (int64_t) MIN(m->config.relay_store_max_bytes, (uint64_t) INT64_MAX)) < 0)
                return -ENOMEM;
        if (add_int(relay, "registered", (int64_t) rc->registered) < 0 ||
            add_int(relay, "mailboxes_created", (int64_t) rc->mailboxes_created) < 0 ||
            add_int(relay, "stored", (int64_t) rc->stored) < 0 ||
            add_int(relay, "duplicates", (int64_t) rc->duplicates) < 0 ||
            add_int(relay, "fetched", (int64_t) rc->fetched) < 0 || add_int(relay, "acked", (int64_t) rc->acked) < 0 ||
            add_int(relay, "expired", (int64_t) rc->expired) < 0 ||
            add_int(relay, "fetch_waits", (int64_t) rc->fetch_waits) < 0 ||
            add_obj(relay, "refused", status_refusals(&rc->refused)) < 0)
                return -ENOMEM;

        r = db_keys_stats(m->db, &ks);
        if (r < 0)
                log_warning_errno(r, "Status: cannot read the key server's store statistics: %m (%s)",
                                  db_last_error(m->db));
        else if (add_int(keys, "published", (int64_t) ks.published) < 0 ||
                 add_int(keys, "one_time_prekeys", (int64_t) ks.one_time_prekeys) < 0 ||
                 add_int(keys, "exhausted", (int64_t) ks.exhausted) < 0)
                return -ENOMEM;
        if (add_int(keys, "publishes", (int64_t) kc->published) < 0 ||
            add_int(keys, "bundles_served", (int64_t) kc->bundles) < 0 ||
            add_int(keys, "bundles_without_one_time", (int64_t) kc->bundles_without_otk) < 0 ||
            add_obj(keys, "refused", status_refusals(&kc->refused)) < 0)
                return -ENOMEM;

        if (add_obj(reply, "relay", TAKE_PTR(relay)) < 0 || add_obj(reply, "keys", TAKE_PTR(keys)) < 0)
                return -ENOMEM;
        return 0;
}

/* The store's writer thread (group commit) and the audit rows it could not take. */
static int control_status_add_store(Manager *m, json_object *reply) {
        _cleanup_(json_object_unrefp) json_object *store = NULL;
        WriterStats ws;

        writer_get_stats(m->writer, &ws);
        store = json_object_new_object();
        if (!store)
                return -ENOMEM;
        if (add_int(store, "jobs", (int64_t) ws.jobs) < 0 || add_int(store, "commits", (int64_t) ws.commits) < 0 ||
            add_int(store, "commit_failures", (int64_t) ws.commit_failures) < 0 ||
            add_int(store, "max_batch", (int64_t) ws.max_batch) < 0 || add_int(store, "queued", (int64_t) ws.queued) < 0 ||
            add_int(store, "commit_usec_total", (int64_t) ws.commit_usec_total) < 0 ||
            add_int(store, "checkpoints", (int64_t) ws.checkpoints) < 0 ||
            add_int(store, "audit_dropped", (int64_t) m->audit_dropped) < 0)
                return -ENOMEM;
        return add_obj(reply, "store", TAKE_PTR(store)) < 0 ? -ENOMEM : 0;
}

int control_status_get(ControlConnection *c, const VarlinkCall *call) {
        Manager *m = c->manager;
        static const VarlinkField fields[] = { {} };
        _cleanup_(json_object_unrefp) json_object *reply = NULL;
        json_object *conn, *dec, *hc;
        ExeHashCacheStats st;
        const char *bad = NULL;
        int r;

        if (varlink_params_extract(call->parameters, fields, &bad) < 0)
                return control_error_invalid_parameter(c, bad);

        exe_hash_cache_stats(m->hash_cache, &st);
        reply = json_object_new_object();
        conn = json_object_new_object();
        dec = json_object_new_object();
        hc = json_object_new_object();
        if (!reply || !conn || !dec || !hc) {
                json_object_put(conn);
                json_object_put(dec);
                json_object_put(hc);
                return -ENOMEM;
        }
        if (add_int(conn, "data", (int64_t) m->n_connections[POLICY_ENDPOINT_DATA]) < 0 ||
            add_int(conn, "tcp", (int64_t) m->n_connections[POLICY_ENDPOINT_TCP]) < 0 ||
            add_int(conn, "enroll", (int64_t) m->n_connections[POLICY_ENDPOINT_ENROLL]) < 0 ||
            add_int(conn, "control", (int64_t) m->n_connections[POLICY_ENDPOINT_CONTROL]) < 0 ||
            add_int(dec, "allowed", (int64_t) m->decisions.allowed) < 0 ||
            add_int(dec, "denied", (int64_t) m->decisions.denied) < 0 ||
            add_int(dec, "permissive", (int64_t) m->decisions.permissive) < 0 ||
            add_int(hc, "hits", (int64_t) st.hits) < 0 || add_int(hc, "misses", (int64_t) st.misses) < 0 ||
            add_int(hc, "evictions", (int64_t) st.evictions) < 0 ||
            add_int(hc, "too_large", (int64_t) st.too_large) < 0 ||
            add_int(hc, "entries", (int64_t) st.entries) < 0 || add_int(hc, "capacity", (int64_t) st.capacity) < 0) {
                json_object_put(conn);
                json_object_put(dec);
                json_object_put(hc);
                return -ENOMEM;
        }
        if (add_obj(reply, "version", json_object_new_string(SECD_VERSION)) < 0 ||
            add_int(reply, "uptime_usec", (int64_t) (now_usec(CLOCK_MONOTONIC) - m->start_usec)) < 0 ||
            add_obj(reply, "mode", json_object_new_string(policy_mode_to_string(policy_snapshot_mode(m->policy)))) < 0 ||
            add_int(reply, "generation", (int64_t) policy_snapshot_generation(m->policy)) < 0 ||
            add_int(reply, "rules", (int64_t) policy_snapshot_n_rules(m->policy)) < 0) {
                json_object_put(conn);
                json_object_put(dec);
                json_object_put(hc);
                return -ENOMEM;
        }
        if (add_obj(reply, "connections", conn) < 0) {
                json_object_put(dec);
                json_object_put(hc);
                return -ENOMEM;
        }
        if (add_obj(reply, "decisions", dec) < 0) {
                json_object_put(hc);
                return -ENOMEM;
        }
        if (add_obj(reply, "hash_cache", hc) < 0)
                return -ENOMEM;
        r = control_status_add_tls(m, reply);
        if (r < 0)
                return r;
        r = control_status_add_relay(m, reply);
        if (r < 0)
                return r;
        r = control_status_add_store(m, reply);
        if (r < 0)
                return r;
        return control_reply(c, TAKE_PTR(reply), false);
}

int control_service_reload(ControlConnection *c, const VarlinkCall *call) {
        Manager *m = c->manager;
        static const VarlinkField fields[] = { {} };
        _cleanup_free_ const char **restart = NULL;
        _cleanup_free_ char *error = NULL, *message = NULL, *uid = NULL;
        _cleanup_(json_object_unrefp) json_object *reply = NULL, *names = NULL, *audit = NULL;
        const char *bad = NULL;
        int r;

        if (varlink_params_extract(call->parameters, fields, &bad) < 0)
                return control_error_invalid_parameter(c, bad);

        r = manager_reload(m, &restart, &error);
        if (r < 0 && error) {
                json_object *p = json_object_new_object();
                if (add_obj(p, "reason", json_object_new_string(error)) < 0) {
                        json_object_put(p);
                        return -ENOMEM;
                }
                return control_error(c, "io.secd.Service.InvalidConfiguration", p);
        }
        if (r < 0)
                return r;

        names = json_object_new_array();
        if (!names)
                return -ENOMEM;
        for (size_t i = 0; restart && restart[i]; i++)
                if (json_object_array_add(names, json_object_new_string(restart[i])) < 0)
                        return -ENOMEM;

        message = strdup_printf("uid %u reloaded the configuration and policy (generation %" PRIu64 ").",
                        (unsigned) control_peer_uid(c), policy_snapshot_generation(m->policy));
        uid = strdup_printf("ADMIN_UID=%u", (unsigned) control_peer_uid(c));
        if (message && uid)
                log_struct(LOG_INFO, message, SECD_MESSAGE_RELOAD, uid, NULL);
        audit = json_object_new_object();
        if (audit && add_int(audit, "admin_uid", control_peer_uid(c)) >= 0 &&
            add_obj(audit, "restart_needed", json_object_get(names)) >= 0)
                manager_audit(m, "service", message ?: "reload", audit);

        reply = json_object_new_object();
        if (!reply || add_int(reply, "generation", (int64_t) policy_snapshot_generation(m->policy)) < 0 ||
            add_obj(reply, "restart_needed", TAKE_PTR(names)) < 0)
                return -ENOMEM;
        return control_reply(c, TAKE_PTR(reply), false);
}

int control_audit_tail(ControlConnection *c, const VarlinkCall *call) {
        Manager *m = c->manager;
        int64_t limit = AUDIT_TAIL_DEFAULT;
        const VarlinkField fields[] = {
                { "limit", VARLINK_FIELD_INT, 0, &limit },
                {},
        };
        _cleanup_(json_object_unrefp) json_object *reply = NULL, *entries = NULL;
        DbAuditEntry *list = NULL;
        int64_t tail_last_id = -1;
        size_t n = 0;
        const char *bad = NULL;
        int r;

        if (varlink_params_extract(call->parameters, fields, &bad) < 0)
                return control_error_invalid_parameter(c, bad);
        if (limit < 0 || limit > AUDIT_TAIL_MAX)
                return control_error_invalid_parameter(c, "limit");

        if (limit > 0) {
                r = db_audit_list(m->db, -1, (size_t) limit, &list, &n);
                if (r < 0)
                        return log_error_errno(r, "Cannot read the audit trail: %m (%s)", db_last_error(m->db));
        }

        entries = json_object_new_array();
        if (!entries) {
                db_audit_entries_free(list, n);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                json_object *e = json_object_new_object(), *f = NULL;

                if (list[i].fields_json) {
                        f = json_tokener_parse(list[i].fields_json);
                        if (f && !json_object_is_type(f, json_type_object)) {
                                json_object_put(f);
                                f = NULL;
                        }
                }
                if (!e || add_int(e, "id", list[i].id) < 0 || add_int(e, "time_usec", list[i].time_usec) < 0 ||
                    add_obj(e, "kind", json_object_new_string(list[i].kind ?: "")) < 0 ||
                    add_obj(e, "message", json_object_new_string(list[i].message ?: "")) < 0 ||
                    (f && add_obj(e, "fields", TAKE_PTR(f)) < 0) || json_object_array_add(entries, e) < 0) {
                        json_object_put(e);
                        json_object_put(f);
                        db_audit_entries_free(list, n);
                        return -ENOMEM;
                }
        }
        if (n > 0)
                tail_last_id = list[n - 1].id;
        db_audit_entries_free(list, n);

        reply = json_object_new_object();
        if (!reply || add_obj(reply, "entries", TAKE_PTR(entries)) < 0)
                return -ENOMEM;

        /* With "more": the tail now, then every new entry as it is written (control_audit_broadcast()). */
        if (call->more && !call->oneway) {
                r = control_reply(c, TAKE_PTR(reply), true);
                if (r < 0)
                        return r;
                c->following = true;
                /*
                 * The writer commits a row before the loop publishes it: one committed
                 * just before the tail was read is in the tail and must not come again.
                 */
                c->follow_after_id = tail_last_id;
                log_debug("control #%" PRIu64 ": following the audit trail.", c->serial);
                return 0;
        }
        return control_reply(c, TAKE_PTR(reply), false);
}

int control_service_get_info(ControlConnection *c, const VarlinkCall *call) {
        static const VarlinkField fields[] = { {} };
        _cleanup_(json_object_unrefp) json_object *reply = NULL, *names = NULL;
        const char *bad = NULL;

        if (varlink_params_extract(call->parameters, fields, &bad) < 0)
                return control_error_invalid_parameter(c, bad);

        names = json_object_new_array();
        if (!names)
                return -ENOMEM;
        for (size_t i = 0; i < secd_n_interfaces; i++)
                if (json_object_array_add(names, json_object_new_string(secd_interfaces[i].name)) < 0)
                        return -ENOMEM;

        reply = json_object_new_object();
        if (!reply || add_obj(reply, "vendor", json_object_new_string("secd")) < 0 ||
            add_obj(reply, "product", json_object_new_string("secd")) < 0 ||
            add_obj(reply, "version", json_object_new_string(SECD_VERSION)) < 0 ||
            add_obj(reply, "url", json_object_new_string(SECD_URL)) < 0 ||
            add_obj(reply, "interfaces", TAKE_PTR(names)) < 0)
                return -ENOMEM;
        return control_reply(c, TAKE_PTR(reply), false);
}

int control_service_get_interface_description(ControlConnection *c, const VarlinkCall *call) {
        const char *name = NULL;
        const VarlinkField fields[] = {
                { "interface", VARLINK_FIELD_STRING, VARLINK_FIELD_REQUIRED, &name },
                {},
        };
        _cleanup_(json_object_unrefp) json_object *reply = NULL;
        const char *bad = NULL;

        if (varlink_params_extract(call->parameters, fields, &bad) < 0)
                return control_error_invalid_parameter(c, bad);

        for (size_t i = 0; i < secd_n_interfaces; i++) {
                if (!streq(secd_interfaces[i].name, name))
                        continue;
                reply = json_object_new_object();
                if (!reply || add_obj(reply, "description", json_object_new_string(secd_interfaces[i].description)) < 0)
                        return -ENOMEM;
                return control_reply(c, TAKE_PTR(reply), false);
        }

        reply = json_object_new_object();
        if (!reply || add_obj(reply, "interface", json_object_new_string(name)) < 0)
                return -ENOMEM;
        return control_error(c, VARLINK_ERROR_INTERFACE_NOT_FOUND, TAKE_PTR(reply));
}
