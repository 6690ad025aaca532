/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* io.secd.Policy: list, change and test the admission policy. */
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <sys/stat.h>

#include "control.h"
#include "exe-hash.h"
#include "log.h"
#include "policy-json.h"
#include "secd-messages.h"

#define POLICY_ERROR(name) "io.secd.Policy." name
#define NSS_BUFFER_MAX (UINT64_C(1) << 20)
#define TEST_GROUPS_MAX 65536

static json_object *json_pair(const char *k1, json_object *v1, const char *k2, json_object *v2) {
        json_object *o = json_object_new_object();

        if (!o || !v1 || (k2 && !v2) || json_object_object_add(o, k1, v1) < 0 ||
            (k2 && json_object_object_add(o, k2, v2) < 0)) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

static int reply_invalid_rule(ControlConnection *c, const char *error_text) {
        _cleanup_free_ char *field = NULL;
        const char *reason = error_text ?: "invalid";
        const char *sep = error_text ? strstr(error_text, ": ") : NULL;

        if (sep) {
                field = strndup(error_text, (size_t) (sep - error_text));
                reason = sep + 2;
        } else
                field = strdup("rule");
        if (!field)
                return -ENOMEM;
        return control_error(c, POLICY_ERROR("InvalidRule"),
                             json_pair("field", json_object_new_string(field), "reason", json_object_new_string(reason)));
}

/*
 * Resolve names and check a rule coming from a client; replies with the
 * error and returns 0 when the rule is unusable, 1 when it is good.
 * prefix names the rule in the document ("rules[3]") or is NULL.
 */
static int check_client_rule(ControlConnection *c, PolicyRule *rule, const char *prefix) {
        _cleanup_free_ char *qualified = NULL;
        const char *field = NULL;
        int r;

        r = policy_rule_resolve_names(rule, &field);
        if (r == -ESRCH) {
                const char *name = field && streq(field, "group") ? rule->group : rule->user;
                if (prefix && asprintf(&qualified, "%s.%s", prefix, field) < 0)
                        return -ENOMEM;
                r = control_error(c, POLICY_ERROR("UnknownName"),
                                  json_pair("field", json_object_new_string(qualified ?: field ?: "user"), "name",
                                            json_object_new_string(name ?: "")));
                return r < 0 ? r : 0;
        }
        if (r == -EINVAL) {
                if (asprintf(&qualified, "%s%s%s: does not match the %s name given", prefix ?: "", prefix ? "." : "",
                             field ?: "uid", field && streq(field, "gid") ? "group" : "user") < 0)
                        return -ENOMEM;
                r = reply_invalid_rule(c, qualified);
                return r < 0 ? r : 0;
        }
        if (r < 0) {
                if (asprintf(&qualified, "%s%s%s: cannot resolve the name: %s", prefix ?: "", prefix ? "." : "",
                             field ?: "user", strerror(-r)) < 0)
                        return -ENOMEM;
                r = reply_invalid_rule(c, qualified);
                return r < 0 ? r : 0;
        }

        r = policy_rule_validate(rule, &field);
        if (r < 0) {
                if (asprintf(&qualified, "%s%s%s: invalid value", prefix ?: "", prefix ? "." : "", field ?: "rule") < 0)
                        return -ENOMEM;
                r = reply_invalid_rule(c, qualified);
                return r < 0 ? r : 0;
        }
        return 1;
}

/* Journal entry for a committed policy change; the audit row went in with the change. */
static void log_policy_change(ControlConnection *c, const char *action, int64_t rule_id, uint64_t generation,
                              const char *message) {
        _cleanup_free_ char *uid = NULL, *gen = NULL, *act = NULL, *rule = NULL;

        uid = strdup_printf("ADMIN_UID=%u", (unsigned) control_peer_uid(c));
        gen = strdup_printf("POLICY_GENERATION=%" PRIu64, generation);
        act = strdup_printf("POLICY_ACTION=%s", action);
        if (rule_id > 0)
                rule = strdup_printf("RULE_ID=%" PRIi64, rule_id);
        else
                rule = strdup("RULE_ID=");
        if (uid && gen && act && rule)
                log_struct(LOG_NOTICE, message, SECD_MESSAGE_POLICY_CHANGED, uid, gen, act, rule, NULL);
}

/*
 * The tail of every change: the store transaction is open and the change
 * made; add the audit row, commit, load the new snapshot (so the very next
 * admission is judged by it), log, and tell followers.
 */
static int commit_policy_change(ControlConnection *c, const char *action, int64_t rule_id, json_object *details,
                                const char *message, uint64_t *ret_generation) {
        Manager *m = c->manager;
        _cleanup_(json_object_unrefp) json_object *fields = NULL;
        uint64_t generation;
        int64_t audit_id, audit_time;
        int r;

        r = db_policy_generation(m->db, &generation);
        if (r < 0)
                goto rollback;

        fields = json_object_new_object();
        if (!fields || json_object_object_add(fields, "admin_uid", json_object_new_int64(control_peer_uid(c))) < 0 ||
            json_object_object_add(fields, "action", json_object_new_string(action)) < 0 ||
            json_object_object_add(fields, "generation", json_object_new_int64((int64_t) generation)) < 0 ||
            (rule_id > 0 && json_object_object_add(fields, "rule_id", json_object_new_int64(rule_id)) < 0) ||
            (details && json_object_object_add(fields, "rule", json_object_get(details)) < 0)) {
                r = -ENOMEM;
                goto rollback;
        }

        r = manager_audit_append(m, "policy", message, fields, &audit_id, &audit_time);
        if (r < 0)
                goto rollback;
        r = db_commit(m->db);
        if (r < 0)
                goto rollback;

        r = manager_policy_reload(m);
        if (r < 0)
                return r;
        log_policy_change(c, action, rule_id, generation, message);
        manager_audit_publish(m, audit_id, audit_time, "policy", message, fields);
        *ret_generation = policy_snapshot_generation(m->policy);
        return 0;

rollback:
        log_error_errno(r, "Policy change (%s) failed: %m (%s)", action, db_last_error(m->db));
        (void) db_rollback(m->db);
        return r;
}

static int rule_cmp_id(const void *a, const void *b) {
        const PolicyRule *x = a, *y = b;
        return x->id < y->id ? -1 : x->id > y->id;
}

int control_policy_list(ControlConnection *c, const VarlinkCall *call) {
        Manager *m = c->manager;
        static const VarlinkField fields[] = { {} };
        PolicyRule *rules = NULL;
        size_t n = 0;
        _cleanup_(json_object_unrefp) json_object *reply = NULL, *array = NULL;
        const char *bad = NULL;
        uint64_t generation;
        PolicyMode mode;
        int r;

        if (varlink_params_extract(call->parameters, fields, &bad) < 0)
                return control_error_invalid_parameter(c, bad);

        r = db_policy_generation(m->db, &generation);
        if (r >= 0)
                r = db_policy_mode(m->db, &mode);
        if (r >= 0)
                r = db_rules_load(m->db, &rules, &n);
        if (r < 0)
                return log_error_errno(r, "Cannot read the policy: %m (%s)", db_last_error(m->db));

        array = json_object_new_array();
        if (!array) {
                policy_rules_free(rules, n);
                return -ENOMEM;
        }
        if (n > 1)
                qsort(rules, n, sizeof *rules, rule_cmp_id);
        for (size_t i = 0; i < n; i++) {
                json_object *o;

                r = policy_rule_to_json(&rules[i], &o);
                if (r < 0 || json_object_array_add(array, o) < 0) {
                        policy_rules_free(rules, n);
                        return r < 0 ? r : -ENOMEM;
                }
        }
        policy_rules_free(rules, n);

        reply = json_object_new_object();
        if (!reply || json_object_object_add(reply, "mode", json_object_new_string(policy_mode_to_string(mode))) < 0 ||
            json_object_object_add(reply, "generation", json_object_new_int64((int64_t) generation)) < 0 ||
            json_object_object_add(reply, "rules", TAKE_PTR(array)) < 0)
                return -ENOMEM;
        return control_reply(c, TAKE_PTR(reply), false);
}

int control_policy_add(ControlConnection *c, const VarlinkCall *call) {
        Manager *m = c->manager;
        json_object *rule_json = NULL;
        const VarlinkField fields[] = {
                { "rule", VARLINK_FIELD_OBJECT, VARLINK_FIELD_REQUIRED, &rule_json },
                {},
        };
        _cleanup_(policy_rule_done) PolicyRule rule = {};
        _cleanup_(json_object_unrefp) json_object *details = NULL;
        _cleanup_free_ char *error = NULL, *message = NULL;
        const char *bad = NULL;
        uint64_t generation;
        int64_t id;
        int r;

        if (varlink_params_extract(call->parameters, fields, &bad) < 0)
                return control_error_invalid_parameter(c, bad);

        r = policy_rule_from_json(rule_json, false, NULL, &rule, &error);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return reply_invalid_rule(c, error);
        r = check_client_rule(c, &rule, NULL);
        if (r <= 0)
                return r;

        r = db_begin(m->db);
        if (r < 0)
                return log_error_errno(r, "Cannot start a store transaction: %m (%s)", db_last_error(m->db));
        r = db_rule_insert(m->db, &rule, &id);
        if (r < 0) {
                log_error_errno(r, "Cannot store the rule: %m (%s)", db_last_error(m->db));
                (void) db_rollback(m->db);
                return r;
        }
        rule.id = id;
        r = policy_rule_to_json(&rule, &details);
        if (r < 0) {
                (void) db_rollback(m->db);
                return r;
        }
        if (asprintf(&message, "uid %u added rule %" PRIi64 ": %s", (unsigned) control_peer_uid(c), id,
                     json_object_to_json_string_ext(details, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)) < 0) {
                (void) db_rollback(m->db);
                return -ENOMEM;
        }
        r = commit_policy_change(c, "add", id, details, message, &generation);
        if (r < 0)
                return r;

        return control_reply(c, json_pair("id", json_object_new_int64(id), "generation",
                                          json_object_new_int64((int64_t) generation)),
                             false);
}

int control_policy_remove(ControlConnection *c, const VarlinkCall *call) {
        Manager *m = c->manager;
        int64_t id = 0;
        const VarlinkField fields[] = {
                { "id", VARLINK_FIELD_INT, VARLINK_FIELD_REQUIRED, &id },
                {},
        };
        _cleanup_free_ char *message = NULL;
        const char *bad = NULL;
        uint64_t generation;
        int r;

        if (varlink_params_extract(call->parameters, fields, &bad) < 0)
                return control_error_invalid_parameter(c, bad);
        if (id <= 0)
                return control_error(c, POLICY_ERROR("NoSuchRule"), json_pair("id", json_object_new_int64(id), NULL, NULL));

        r = db_begin(m->db);
        if (r < 0)
                return log_error_errno(r, "Cannot start a store transaction: %m (%s)", db_last_error(m->db));
        r = db_rule_delete(m->db, id);
        if (r == -ENOENT) {
                (void) db_rollback(m->db);
                return control_error(c, POLICY_ERROR("NoSuchRule"), json_pair("id", json_object_new_int64(id), NULL, NULL));
        }
        if (r < 0) {
                log_error_errno(r, "Cannot remove rule %" PRIi64 ": %m (%s)", id, db_last_error(m->db));
                (void) db_rollback(m->db);
                return r;
        }
        if (asprintf(&message, "uid %u removed rule %" PRIi64, (unsigned) control_peer_uid(c), id) < 0) {
                (void) db_rollback(m->db);
                return -ENOMEM;
        }
        r = commit_policy_change(c, "remove", id, NULL, message, &generation);
        if (r < 0)
                return r;
        return control_reply(c, json_pair("generation", json_object_new_int64((int64_t) generation), NULL, NULL), false);
}

int control_policy_set_mode(ControlConnection *c, const VarlinkCall *call) {
        Manager *m = c->manager;
        const char *mode_s = NULL;
        const VarlinkField fields[] = {
                { "mode", VARLINK_FIELD_STRING, VARLINK_FIELD_REQUIRED, &mode_s },
                {},
        };
        _cleanup_free_ char *message = NULL;
        const char *bad = NULL;
        uint64_t generation;
        PolicyMode mode;
        int r;

        if (varlink_params_extract(call->parameters, fields, &bad) < 0)
                return control_error_invalid_parameter(c, bad);
        mode = policy_mode_from_string(mode_s);
        if (mode < 0)
                return control_error_invalid_parameter(c, "mode");

        r = db_begin(m->db);
        if (r < 0)
                return log_error_errno(r, "Cannot start a store transaction: %m (%s)", db_last_error(m->db));
        r = db_policy_set_mode(m->db, mode);
        if (r < 0) {
                log_error_errno(r, "Cannot set the policy mode: %m (%s)", db_last_error(m->db));
                (void) db_rollback(m->db);
                return r;
        }
        if (asprintf(&message, "uid %u set the policy mode to %s", (unsigned) control_peer_uid(c),
                     policy_mode_to_string(mode)) < 0) {
                (void) db_rollback(m->db);
                return -ENOMEM;
        }
        r = commit_policy_change(c, "set-mode", 0, NULL, message, &generation);
        if (r < 0)
                return r;
        return control_reply(c, json_pair("generation", json_object_new_int64((int64_t) generation), NULL, NULL), false);
}

/* The user's primary gid and supplementary groups from NSS: an admin question, not an authorisation. */
static int lookup_user_groups(uid_t uid, gid_t *ret_gid, gid_t **ret_groups, size_t *ret_n) {
        _cleanup_free_ char *buf = NULL;
        _cleanup_free_ gid_t *groups = NULL;
        struct passwd pw, *result = NULL;
        size_t size = 4096;
        int n, r;

        for (;;) {
                char *b = realloc(buf, size);
                if (!b)
                        return -ENOMEM;
                buf = b;
                r = getpwuid_r(uid, &pw, buf, size, &result);
                if (r != ERANGE)
                        break;
                if (size >= NSS_BUFFER_MAX)
                        return -ERANGE;
                size *= 2;
        }
        if (r > 0)
                return -r;
        if (!result)
                return -ESRCH;

        n = 64;
        for (;;) {
                int want = n;
                gid_t *g = realloc(groups, sizeof(gid_t) * (size_t) n);
                if (!g)
                        return -ENOMEM;
                groups = g;
                if (getgrouplist(pw.pw_name, pw.pw_gid, groups, &n) >= 0)
                        break;
                if (n <= want)
                        n = want * 2;
                if (n > TEST_GROUPS_MAX)
                        return -E2BIG;
        }
        *ret_gid = pw.pw_gid;
        *ret_groups = TAKE_PTR(groups);
        *ret_n = (size_t) n;
        return 0;
}

static int reply_cannot_hash(ControlConnection *c, const char *path, const char *reason) {
        return control_error(c, POLICY_ERROR("CannotHash"),
                             json_pair("path", json_object_new_string(path), "reason", json_object_new_string(reason)));
}

int control_policy_test(ControlConnection *c, const VarlinkCall *call) {
        Manager *m = c->manager;
        uint32_t uid = 0, gid = POLICY_ID_UNSET;
        json_object *gids_json = NULL;
        const char *path = NULL, *sha256_s = NULL, *endpoint_s = NULL, *cert = NULL;
        const VarlinkField fields[] = {
                { "uid", VARLINK_FIELD_UINT32, VARLINK_FIELD_REQUIRED, &uid },
                { "gid", VARLINK_FIELD_UINT32, 0, &gid },
                { "gids", VARLINK_FIELD_ARRAY, 0, &gids_json },
                { "path", VARLINK_FIELD_STRING, 0, &path },
                { "sha256", VARLINK_FIELD_STRING, 0, &sha256_s },
                { "endpoint", VARLINK_FIELD_STRING, 0, &endpoint_s },
                { "cert", VARLINK_FIELD_STRING, 0, &cert },
                {},
        };
        _cleanup_(policy_snapshot_unrefp) PolicySnapshot *snapshot = NULL;
        _cleanup_free_ gid_t *nss_groups = NULL;
        _cleanup_free_ uint32_t *groups = NULL;
        _cleanup_free_ char *real = NULL;
        _cleanup_(json_object_unrefp) json_object *reply = NULL;
        size_t n_groups = 0, n_nss = 0;
        gid_t nss_gid = 0;
        uint8_t sha256[SHA256_DIGEST_LEN];
        bool have_sha256 = false, have_nss = false;
        PolicyEndpoint endpoint = POLICY_ENDPOINT_DATA;
        PolicyVerdict v;
        const char *bad = NULL;
        int r;

        if (varlink_params_extract(call->parameters, fields, &bad) < 0)
                return control_error_invalid_parameter(c, bad);
        if (uid == POLICY_ID_UNSET)
                return control_error_invalid_parameter(c, "uid");
        if (gid == POLICY_ID_UNSET && json_object_object_get_ex(call->parameters, "gid", NULL) &&
            json_object_get_type(json_object_object_get(call->parameters, "gid")) != json_type_null)
                return control_error_invalid_parameter(c, "gid");
        if (endpoint_s) {
                endpoint = policy_endpoint_from_string(endpoint_s);
                if (endpoint < 0)
                        return control_error_invalid_parameter(c, "endpoint");
        }
        if (sha256_s) {
                if (hex_decode_exact(sha256_s, sha256, sizeof sha256) < 0)
                        return control_error_invalid_parameter(c, "sha256");
                have_sha256 = true;
        }
        if (path && (path[0] != '/' || strlen(path) >= POLICY_PATH_MAX))
                return control_error_invalid_parameter(c, "path");
        if (cert && !policy_cert_name_is_valid(cert))
                return control_error_invalid_parameter(c, "cert");

        if (gids_json) {
                size_t n = json_object_array_length(gids_json);

                if (n > TEST_GROUPS_MAX)
                        return control_error_invalid_parameter(c, "gids");
                groups = calloc(MAX(n, (size_t) 1), sizeof *groups);
                if (!groups)
                        return -ENOMEM;
                for (size_t i = 0; i < n; i++) {
                        json_object *g = json_object_array_get_idx(gids_json, i);
                        int64_t x;

                        if (!json_object_is_type(g, json_type_int))
                                return control_error_invalid_parameter(c, "gids");
                        errno = 0;
                        x = json_object_get_int64(g);
                        if (errno != 0 || x < 0 || x >= (int64_t) POLICY_ID_UNSET)
                                return control_error_invalid_parameter(c, "gids");
                        groups[i] = (uint32_t) x;
                }
                n_groups = n;
        }

        if (gid == POLICY_ID_UNSET || !gids_json) {
                r = lookup_user_groups(uid, &nss_gid, &nss_groups, &n_nss);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        _cleanup_free_ char *name = NULL;
                        if (asprintf(&name, "%" PRIu32, uid) < 0)
                                return -ENOMEM;
                        /* Without a passwd entry there is nothing to default gid/gids from. */
                        return control_error(c, POLICY_ERROR("UnknownName"),
                                             json_pair("field", json_object_new_string("uid"), "name",
                                                       json_object_new_string(name)));
                }
                have_nss = true;
        }
        if (gid == POLICY_ID_UNSET)
                gid = nss_gid;
        if (!gids_json && have_nss) {
                groups = calloc(MAX(n_nss, (size_t) 1), sizeof *groups);
                if (!groups)
                        return -ENOMEM;
                for (size_t i = 0; i < n_nss; i++)
                        groups[i] = nss_groups[i];
                n_groups = n_nss;
        }

        if (path) {
                _cleanup_close_ int fd = -EBADF;
                struct stat st;

                /* The kernel reports the resolved path of an executable; so does Test. */
                real = realpath(path, NULL);
                if (!real)
                        return reply_cannot_hash(c, path, strerror(errno));
                if (!have_sha256) {
                        _cleanup_close_ int pfd = -EBADF;
                        char proc[64];

                        /* Look before opening for reading: opening a device or FIFO can have effects. */
                        pfd = open(real, O_PATH | O_CLOEXEC);
                        if (pfd < 0)
                                return reply_cannot_hash(c, path, strerror(errno));
                        if (fstat(pfd, &st) < 0)
                                return reply_cannot_hash(c, path, strerror(errno));
                        if (!S_ISREG(st.st_mode))
                                return reply_cannot_hash(c, path, "not a regular file");
                        (void) snprintf(proc, sizeof proc, "/proc/self/fd/%d", pfd);
                        fd = open(proc, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
                        if (fd < 0)
                                return reply_cannot_hash(c, path, strerror(errno));
                        if (fstat(fd, &st) < 0)
                                return reply_cannot_hash(c, path, strerror(errno));
                        /* Bounded like admission: hash_max_size. */
                        r = exe_hash_fd(fd, &st, m->config.hash_max_size, sha256);
                        if (r == -EFBIG)
                                return reply_cannot_hash(c, path, "larger than hash_max_size");
                        if (r < 0)
                                return reply_cannot_hash(c, path, strerror(-r));
                        have_sha256 = true;
                }
        }

        snapshot = policy_snapshot_ref(m->policy);
        PolicyQuery q = {
                .uid = uid,
                .gid = gid,
                .supplementary_gids = groups,
                .n_supplementary_gids = n_groups,
                .exe_path = real,
                .exe_sha256 = have_sha256 ? sha256 : NULL,
                .endpoint = endpoint,
                .cert_name = cert,
        };
        policy_evaluate(snapshot, &q, &v);

        reply = json_object_new_object();
        if (!reply)
                return -ENOMEM;
        if (json_object_object_add(reply, "allow", json_object_new_boolean(v.allow)) < 0 ||
            json_object_object_add(reply, "admit", json_object_new_boolean(v.admit)) < 0 ||
            json_object_object_add(reply, "reason", json_object_new_string(policy_reason_to_string(v.reason))) < 0 ||
            json_object_object_add(reply, "mode",
                                   json_object_new_string(policy_mode_to_string(policy_snapshot_mode(snapshot)))) < 0 ||
            json_object_object_add(reply, "generation", json_object_new_int64((int64_t) v.generation)) < 0)
                return -ENOMEM;
        if (v.rule) {
                json_object *o;
                r = policy_rule_to_json(v.rule, &o);
                if (r < 0)
                        return r;
                if (json_object_object_add(reply, "rule", o) < 0)
                        return -ENOMEM;
        }
        return control_reply(c, TAKE_PTR(reply), false);
}

int control_policy_export(ControlConnection *c, const VarlinkCall *call) {
        Manager *m = c->manager;
        static const VarlinkField fields[] = { {} };
        _cleanup_free_ char *text = NULL;
        PolicyRule *rules = NULL;
        size_t n = 0;
        PolicyMode mode;
        json_object *doc;
        const char *bad = NULL;
        int r;

        if (varlink_params_extract(call->parameters, fields, &bad) < 0)
                return control_error_invalid_parameter(c, bad);

        r = db_policy_mode(m->db, &mode);
        if (r >= 0)
                r = db_rules_load(m->db, &rules, &n);
        if (r < 0)
                return log_error_errno(r, "Cannot read the policy: %m (%s)", db_last_error(m->db));
        if (n > 1)
                qsort(rules, n, sizeof *rules, rule_cmp_id);
        r = policy_json_export(rules, n, mode, &text);
        policy_rules_free(rules, n);
        if (r < 0)
                return r;

        doc = json_tokener_parse(text);
        if (!doc)
                return -EIO;
        return control_reply(c, json_pair("policy", doc, NULL, NULL), false);
}

int control_policy_import(ControlConnection *c, const VarlinkCall *call) {
        Manager *m = c->manager;
        json_object *doc = NULL;
        const VarlinkField fields[] = {
                { "policy", VARLINK_FIELD_OBJECT, VARLINK_FIELD_REQUIRED, &doc },
                {},
        };
        _cleanup_free_ char *error = NULL, *message = NULL;
        PolicyRule *rules = NULL;
        size_t n = 0;
        PolicyMode mode;
        const char *bad = NULL, *text;
        size_t len;
        uint64_t generation;
        int r;

        if (varlink_params_extract(call->parameters, fields, &bad) < 0)
                return control_error_invalid_parameter(c, bad);

        text = json_object_to_json_string_length(doc, JSON_C_TO_STRING_PLAIN, &len);
        if (!text)
                return -ENOMEM;
        r = policy_json_import(text, len, &rules, &n, &mode, &error);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return reply_invalid_rule(c, error ?: "policy: not a secd policy document");

        for (size_t i = 0; i < n; i++) {
                char prefix[32];

                (void) snprintf(prefix, sizeof prefix, "rules[%zu]", i);
                r = check_client_rule(c, &rules[i], prefix);
                if (r <= 0) {
                        policy_rules_free(rules, n);
                        return r;
                }
        }

        r = db_begin(m->db);
        if (r < 0) {
                policy_rules_free(rules, n);
                return log_error_errno(r, "Cannot start a store transaction: %m (%s)", db_last_error(m->db));
        }
        r = db_rules_replace(m->db, rules, n, mode);
        policy_rules_free(rules, n);
        if (r < 0) {
                log_error_errno(r, "Cannot replace the policy: %m (%s)", db_last_error(m->db));
                (void) db_rollback(m->db);
                return r;
        }
        if (asprintf(&message, "uid %u imported a policy: %zu rules, mode %s", (unsigned) control_peer_uid(c), n,
                     policy_mode_to_string(mode)) < 0) {
                (void) db_rollback(m->db);
                return -ENOMEM;
        }
        r = commit_policy_change(c, "import", 0, NULL, message, &generation);
        if (r < 0)
                return r;
        return control_reply(c, json_pair("rules", json_object_new_int64((int64_t) n), "generation",
                                          json_object_new_int64((int64_t) generation)),
                             false);
}
