/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Settings, policy rules, mode and generation. Rows in, rows out: what the
 * rules mean is policy/'s business.
 */
#include "db-internal.h"
#include "strutil.h"

#define SETTING_POLICY_PREFIX "policy."
#define SETTING_POLICY_GENERATION "policy.generation"
#define SETTING_POLICY_MODE "policy.mode"

/*
 * The words stored in the database. They are a file format, so they are
 * spelled out here rather than borrowed from policy/'s display strings.
 */
static const char *const db_action_table[_POLICY_ACTION_MAX] = {
        [POLICY_ACTION_DENY] = "deny",
        [POLICY_ACTION_ALLOW] = "allow",
};

static const char *const db_endpoint_table[_POLICY_ENDPOINT_MAX] = {
        [POLICY_ENDPOINT_DATA] = "data",
        [POLICY_ENDPOINT_TCP] = "tcp",
        [POLICY_ENDPOINT_ENROLL] = "enroll",
        [POLICY_ENDPOINT_CONTROL] = "control",
};

static const char *const db_mode_table[_POLICY_MODE_MAX] = {
        [POLICY_MODE_ENFORCE] = "enforce",
        [POLICY_MODE_PERMISSIVE] = "permissive",
};

static int table_lookup(const char *const *table, size_t n, const char *s) {
        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                if (table[i] && streq(table[i], s))
                        return (int) i;
        return -EINVAL;
}

static int setting_get_internal(Db *db, const char *key, char **ret) {
        _cleanup_db_stmt_ sqlite3_stmt *stmt = NULL;
        int r, rc;

        r = db_stmt(db, DB_STMT_SETTING_GET, &stmt);
        if (r < 0)
                return r;
        rc = sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
        if (rc != SQLITE_OK)
                return db_error(db, rc);
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_DONE)
                return db_errorf(db, -ENOENT, "no setting '%s'", key);
        if (rc != SQLITE_ROW)
                return db_error(db, rc);
        r = db_column_strdup(stmt, 0, DB_SETTING_VALUE_MAX, ret);
        if (r < 0)
                return db_errorf(db, r, "cannot read setting '%s'", key);
        if (!*ret)
                return db_errorf(db, -EBADMSG, "setting '%s' is NULL", key);
        return 0;
}

static int setting_set_internal(Db *db, const char *key, const char *value) {
        _cleanup_db_stmt_ sqlite3_stmt *stmt = NULL;
        int r, rc;

        r = db_stmt(db, DB_STMT_SETTING_SET, &stmt);
        if (r < 0)
                return r;
        rc = sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(stmt, 2, value, -1, SQLITE_STATIC);
        if (rc != SQLITE_OK)
                return db_error(db, rc);
        rc = sqlite3_step(stmt);
        if (rc != SQLITE_DONE)
                return db_error(db, rc);
        return 0;
}

int db_setting_get(Db *db, const char *key, char **ret) {
        if (!db || !key || !ret)
                return -EINVAL;
        return setting_get_internal(db, key, ret);
}

int db_setting_set(Db *db, const char *key, const char *value) {
        _cleanup_db_txn_ DbTxn txn = {};
        int r;

        if (!db || !key || !value)
                return -EINVAL;
        if (strncmp(key, SETTING_POLICY_PREFIX, strlen(SETTING_POLICY_PREFIX)) == 0)
                return db_errorf(db, -EPERM, "setting '%s' is changed only through the policy calls", key);

        r = db_txn_begin(db, &txn);
        if (r < 0)
                return r;
        r = setting_set_internal(db, key, value);
        if (r < 0)
                return r;
        return db_txn_commit(&txn);
}

int db_policy_generation_bump(Db *db) {
        return db_stmt_exec(db, DB_STMT_GENERATION_BUMP);
}

int db_policy_generation(Db *db, uint64_t *ret) {
        _cleanup_free_ char *value = NULL;
        uint64_t g;
        int r;

        if (!db || !ret)
                return -EINVAL;
        r = setting_get_internal(db, SETTING_POLICY_GENERATION, &value);
        if (r == -ENOENT) {
                *ret = 0;
                return 0;
        }
        if (r < 0)
                return r;
        r = parse_uint64(value, &g);
        if (r < 0)
                return db_errorf(db, -EBADMSG, "invalid policy generation '%s'", value);
        *ret = g;
        return 0;
}

int db_policy_mode(Db *db, PolicyMode *ret) {
        _cleanup_free_ char *value = NULL;
        int r, m;

        if (!db || !ret)
                return -EINVAL;
        r = setting_get_internal(db, SETTING_POLICY_MODE, &value);
        if (r == -ENOENT) {
                *ret = POLICY_MODE_ENFORCE;
                return 0;
        }
        if (r < 0)
                return r;
        m = table_lookup(db_mode_table, ELEMENTSOF(db_mode_table), value);
        if (m < 0)
                return db_errorf(db, -EBADMSG, "invalid policy mode '%s'", value);
        *ret = (PolicyMode) m;
        return 0;
}

static int policy_set_mode_internal(Db *db, PolicyMode mode) {
        if (mode < 0 || mode >= _POLICY_MODE_MAX)
                return db_errorf(db, -EINVAL, "invalid policy mode %d", (int) mode);
        return setting_set_internal(db, SETTING_POLICY_MODE, db_mode_table[mode]);
}

int db_policy_set_mode(Db *db, PolicyMode mode) {
        _cleanup_db_txn_ DbTxn txn = {};
        int r;

        if (!db)
                return -EINVAL;
        r = db_txn_begin(db, &txn);
        if (r < 0)
                return r;
        r = policy_set_mode_internal(db, mode);
        if (r < 0)
                return r;
        r = db_policy_generation_bump(db);
        if (r < 0)
                return r;
        return db_txn_commit(&txn);
}

static int bind_text_or_null(sqlite3_stmt *stmt, int i, bool set, const char *s) {
        if (!set || !s)
                return sqlite3_bind_null(stmt, i);
        return sqlite3_bind_text(stmt, i, s, -1, SQLITE_STATIC);
}

static int bind_id_or_null(sqlite3_stmt *stmt, int i, bool set, uint32_t id) {
        if (!set)
                return sqlite3_bind_null(stmt, i);
        return sqlite3_bind_int64(stmt, i, (sqlite3_int64) id);
}

static int rule_insert_internal(Db *db, const PolicyRule *rule, int64_t now, int64_t *ret_id) {
        _cleanup_db_stmt_ sqlite3_stmt *stmt = NULL;
        unsigned sel;
        int r, rc;

        if (!rule)
                return db_errorf(db, -EINVAL, "no rule");
        sel = rule->selectors;
        if (rule->action < 0 || rule->action >= _POLICY_ACTION_MAX)
                return db_errorf(db, -EINVAL, "rule: invalid action %d", (int) rule->action);
        if (sel & ~(unsigned) _POLICY_SEL_ALL)
                return db_errorf(db, -EINVAL, "rule: unknown selector bits 0x%x", sel);
        /* A selector whose value went missing would silently widen the rule. */
        if ((sel & POLICY_SEL_PATH) && !rule->path)
                return db_errorf(db, -EINVAL, "rule: path selector without a path");
        if ((sel & POLICY_SEL_ENDPOINT) && (rule->endpoint < 0 || rule->endpoint >= _POLICY_ENDPOINT_MAX))
                return db_errorf(db, -EINVAL, "rule: invalid endpoint %d", (int) rule->endpoint);
        if ((sel & POLICY_SEL_CERT) && !policy_cert_name_is_valid(rule->cert))
                return db_errorf(db, -EINVAL, "rule: cert selector without a valid certificate name");

        r = db_stmt(db, DB_STMT_RULE_INSERT, &stmt);
        if (r < 0)
                return r;

        rc = sqlite3_bind_text(stmt, 1, db_action_table[rule->action], -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = bind_id_or_null(stmt, 2, sel & POLICY_SEL_UID, rule->uid);
        if (rc == SQLITE_OK)
                rc = bind_text_or_null(stmt, 3, sel & POLICY_SEL_UID, rule->user);
        if (rc == SQLITE_OK)
                rc = bind_id_or_null(stmt, 4, sel & POLICY_SEL_GID, rule->gid);
        if (rc == SQLITE_OK)
                rc = bind_text_or_null(stmt, 5, sel & POLICY_SEL_GID, rule->group);
        if (rc == SQLITE_OK)
                rc = bind_text_or_null(stmt, 6, sel & POLICY_SEL_PATH, rule->path);
        if (rc == SQLITE_OK)
                rc = (sel & POLICY_SEL_SHA256)
                             ? sqlite3_bind_blob(stmt, 7, rule->sha256, sizeof rule->sha256, SQLITE_STATIC)
                             : sqlite3_bind_null(stmt, 7);
        if (rc == SQLITE_OK)
                rc = bind_text_or_null(stmt, 8, sel & POLICY_SEL_ENDPOINT,
                                       (sel & POLICY_SEL_ENDPOINT) ? db_endpoint_table[rule->endpoint] : NULL);
        if (rc == SQLITE_OK)
                rc = bind_text_or_null(stmt, 9, true, rule->comment);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(stmt, 10, now);
        if (rc == SQLITE_OK)
                rc = bind_text_or_null(stmt, 11, sel & POLICY_SEL_CERT, rule->cert);
        if (rc != SQLITE_OK)
                return db_error(db, rc);

        rc = sqlite3_step(stmt);
        if (rc != SQLITE_DONE)
                return db_error(db, rc);
        if (ret_id)
                *ret_id = sqlite3_last_insert_rowid(db->sqlite);
        return 0;
}

int db_rule_insert(Db *db, const PolicyRule *rule, int64_t *ret_id) {
        _cleanup_db_txn_ DbTxn txn = {};
        int64_t id;
        int r;

        if (!db || !rule)
                return -EINVAL;
        r = db_txn_begin(db, &txn);
        if (r < 0)
                return r;
        r = rule_insert_internal(db, rule, db_now_usec(), &id);
        if (r < 0)
                return r;
        r = db_policy_generation_bump(db);
        if (r < 0)
                return r;
        r = db_txn_commit(&txn);
        if (r < 0)
                return r;
        if (ret_id)
                *ret_id = id;
        return 0;
}

int db_rule_delete(Db *db, int64_t id) {
        _cleanup_db_txn_ DbTxn txn = {};
        _cleanup_db_stmt_ sqlite3_stmt *stmt = NULL;
        int r, rc;

        if (!db)
                return -EINVAL;
        r = db_txn_begin(db, &txn);
        if (r < 0)
                return r;
        r = db_stmt(db, DB_STMT_RULE_DELETE, &stmt);
        if (r < 0)
                return r;
        rc = sqlite3_bind_int64(stmt, 1, id);
        if (rc != SQLITE_OK)
                return db_error(db, rc);
        rc = sqlite3_step(stmt);
        if (rc != SQLITE_DONE)
                return db_error(db, rc);
        if (sqlite3_changes(db->sqlite) == 0)
                return db_errorf(db, -ENOENT, "no rule with id %" PRIi64, id);
        r = db_policy_generation_bump(db);
        if (r < 0)
                return r;
        return db_txn_commit(&txn);
}

int db_rules_replace(Db *db, const PolicyRule *rules, size_t n, PolicyMode mode) {
        _cleanup_db_txn_ DbTxn txn = {};
        int64_t now = db_now_usec();
        int r;

        if (!db || (!rules && n > 0))
                return -EINVAL;
        if (n > POLICY_RULES_MAX)
                return db_errorf(db, -E2BIG, "%zu rules, at most %d", n, POLICY_RULES_MAX);

        r = db_txn_begin(db, &txn);
        if (r < 0)
                return r;
        r = db_stmt_exec(db, DB_STMT_RULES_DELETE_ALL);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                r = rule_insert_internal(db, rules + i, now, NULL);
                if (r < 0)
                        return db_errorf(db, r, "rule %zu: %s", i, db_last_error(db));
        }
        r = policy_set_mode_internal(db, mode);
        if (r < 0)
                return r;
        r = db_policy_generation_bump(db);
        if (r < 0)
                return r;
        return db_txn_commit(&txn);
}

static int rule_from_row(Db *db, sqlite3_stmt *stmt, PolicyRule *ret) {
        _cleanup_(policy_rule_done) PolicyRule rule = {};
        const char *s;
        int r, v;

        rule.id = sqlite3_column_int64(stmt, 0);

        s = (const char *) sqlite3_column_text(stmt, 1);
        v = table_lookup(db_action_table, ELEMENTSOF(db_action_table), s);
        if (v < 0)
                return db_errorf(db, -EBADMSG, "rule %" PRIi64 ": invalid action", rule.id);
        rule.action = (PolicyAction) v;

        if (sqlite3_column_type(stmt, 2) != SQLITE_NULL) {
                rule.selectors |= POLICY_SEL_UID;
                rule.uid = (uint32_t) sqlite3_column_int64(stmt, 2);
                r = db_column_strdup(stmt, 3, POLICY_NAME_MAX, &rule.user);
                if (r < 0)
                        return db_errorf(db, r, "rule %" PRIi64 ": cannot read user name", rule.id);
        }
        if (sqlite3_column_type(stmt, 4) != SQLITE_NULL) {
                rule.selectors |= POLICY_SEL_GID;
                rule.gid = (uint32_t) sqlite3_column_int64(stmt, 4);
                r = db_column_strdup(stmt, 5, POLICY_NAME_MAX, &rule.group);
                if (r < 0)
                        return db_errorf(db, r, "rule %" PRIi64 ": cannot read group name", rule.id);
        }
        if (sqlite3_column_type(stmt, 6) != SQLITE_NULL) {
                rule.selectors |= POLICY_SEL_PATH;
                r = db_column_strdup(stmt, 6, POLICY_PATH_MAX - 1, &rule.path);
                if (r < 0)
                        return db_errorf(db, r, "rule %" PRIi64 ": cannot read path", rule.id);
        }
        if (sqlite3_column_type(stmt, 7) != SQLITE_NULL) {
                const void *blob = sqlite3_column_blob(stmt, 7);

                if (!blob || sqlite3_column_bytes(stmt, 7) != SHA256_DIGEST_LEN)
                        return db_errorf(db, -EBADMSG, "rule %" PRIi64 ": invalid sha256", rule.id);
                rule.selectors |= POLICY_SEL_SHA256;
                memcpy(rule.sha256, blob, SHA256_DIGEST_LEN);
        }
        if (sqlite3_column_type(stmt, 8) != SQLITE_NULL) {
                s = (const char *) sqlite3_column_text(stmt, 8);
                v = table_lookup(db_endpoint_table, ELEMENTSOF(db_endpoint_table), s);
                if (v < 0)
                        return db_errorf(db, -EBADMSG, "rule %" PRIi64 ": invalid endpoint", rule.id);
                rule.selectors |= POLICY_SEL_ENDPOINT;
                rule.endpoint = (PolicyEndpoint) v;
        }
        r = db_column_strdup(stmt, 9, POLICY_COMMENT_MAX, &rule.comment);
        if (r < 0)
                return db_errorf(db, r, "rule %" PRIi64 ": cannot read comment", rule.id);
        if (sqlite3_column_type(stmt, 10) != SQLITE_NULL) {
                r = db_column_strdup(stmt, 10, POLICY_CERT_NAME_MAX, &rule.cert);
                if (r < 0 || !policy_cert_name_is_valid(rule.cert))
                        return db_errorf(db, r < 0 ? r : -EBADMSG, "rule %" PRIi64 ": cannot read cert", rule.id);
                rule.selectors |= POLICY_SEL_CERT;
        }

        if (rule.selectors == 0)
                return db_errorf(db, -EBADMSG, "rule %" PRIi64 ": no selector", rule.id);

        *ret = rule;
        rule = (PolicyRule) {};
        return 0;
}


int db_rules_load(Db *db, PolicyRule **ret_rules, size_t *ret_n) {
        _cleanup_db_stmt_ sqlite3_stmt *stmt = NULL;
        PolicyRule *rules = NULL;
        size_t n = 0, allocated = 0;
        int r, rc;

        if (!db || !ret_rules || !ret_n)
                return -EINVAL;

        r = db_stmt(db, DB_STMT_RULES_SELECT, &stmt);
        if (r < 0)
                return r;
        /* One more than allowed, to tell "exactly the maximum" from "too many". */
        rc = sqlite3_bind_int64(stmt, 1, (sqlite3_int64) POLICY_RULES_MAX + 1);
        if (rc != SQLITE_OK)
                return db_error(db, rc);

        for (;;) {
                rc = sqlite3_step(stmt);
                if (rc == SQLITE_DONE)
                        break;
                if (rc != SQLITE_ROW) {
                        r = db_error(db, rc);
                        goto fail;
                }
                if (n >= POLICY_RULES_MAX) {
                        r = db_errorf(db, -E2BIG, "more than %d rules stored", POLICY_RULES_MAX);
                        goto fail;
                }
                if (n == allocated) {
                        size_t new_allocated = MAX(allocated * 2, (size_t) 16), bytes;
                        PolicyRule *p;

                        if (!size_mul_ok(new_allocated, sizeof *rules, &bytes)) {
                                r = db_errorf(db, -ENOMEM, "out of memory");
                                goto fail;
                        }
                        p = realloc(rules, bytes);
                        if (!p) {
                                r = db_errorf(db, -ENOMEM, "out of memory");
                                goto fail;
                        }
                        rules = p;
                        allocated = new_allocated;
                }
                r = rule_from_row(db, stmt, rules + n);
                if (r < 0)
                        goto fail;
                n++;
        }

        *ret_rules = rules;
        *ret_n = n;
        return 0;

fail:
        policy_rules_free(rules, n);
        return r;
}
