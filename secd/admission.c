/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <json-c/json.h>

#include "admission.h"
#include "identity.h"
#include "log.h"
#include "secd-messages.h"

typedef struct AdmissionFacts {
        const ProcessIdentity *id;      /* NULL when the identity could not be established */
        const char *sha256_hex;         /* "" when not hashed */
        PolicyVerdict verdict;
        bool evaluated;
        const char *reason;
} AdmissionFacts;

static void admission_record(Manager *m, PolicyEndpoint kind, const AdmissionFacts *f) {
        _cleanup_free_ char *uid = NULL, *gid = NULL, *pid = NULL, *exe = NULL, *sha = NULL, *rule = NULL,
                *gen = NULL, *verdict = NULL, *reason = NULL, *endpoint = NULL, *admit_s = NULL, *message = NULL;
        _cleanup_(json_object_unrefp) json_object *fields = NULL;
        const char *ep = policy_endpoint_to_string(kind);
        const char *vs = f->verdict.allow ? "allow" : "deny";
        int64_t rule_id = f->evaluated && f->verdict.rule ? f->verdict.rule->id : 0;
        uint64_t generation = f->verdict.generation;
        bool admit = f->verdict.admit;

        if (f->verdict.allow)
                m->decisions.allowed++;
        else if (admit)
                m->decisions.permissive++;
        else
                m->decisions.denied++;

        if (f->id) {
                uid = strdup_printf("UID=%" PRIu32, f->id->uid);
                gid = strdup_printf("GID=%" PRIu32, f->id->gid);
                pid = strdup_printf("PID=%d", (int) f->id->pid);
                exe = strdup_printf("EXE=%s", f->id->exe_path ?: "");
        } else {
                uid = strdup("UID=");
                gid = strdup("GID=");
                pid = strdup("PID=");
                exe = strdup("EXE=");
        }
        sha = strdup_printf("EXE_SHA256=%s", f->sha256_hex);
        if (rule_id > 0)
                rule = strdup_printf("RULE_ID=%" PRIi64, rule_id);
        else
                rule = strdup("RULE_ID=");
        gen = strdup_printf("POLICY_GENERATION=%" PRIu64, generation);
        verdict = strdup_printf("VERDICT=%s", vs);
        reason = strdup_printf("REASON=%s", f->reason);
        endpoint = strdup_printf("ENDPOINT=%s", ep);
        admit_s = strdup_printf("ADMIT=%s", admit ? "yes" : "no");
        if (f->id)
                message = strdup_printf("%s: %s uid=%" PRIu32 " pid=%d exe=%s (%s%s, rule %s, generation %" PRIu64 ")",
                                ep, vs, f->id->uid, (int) f->id->pid, f->id->exe_path ?: "?", f->reason,
                                !f->verdict.allow && admit ? ", admitted: permissive" : "",
                                rule_id > 0 ? rule + strlen("RULE_ID=") : "none", generation);
        else
                message = strdup_printf("%s: deny unidentified peer (%s, generation %" PRIu64 ")", ep, f->reason,
                                generation);

        if (uid && gid && pid && exe && sha && rule && gen && verdict && reason && endpoint && admit_s && message)
                log_struct(f->verdict.allow ? LOG_INFO : LOG_NOTICE, message,
                           f->verdict.allow ? SECD_MESSAGE_ADMISSION_ALLOWED : SECD_MESSAGE_ADMISSION_DENIED,
                           uid, gid, pid, exe, sha, rule, gen, verdict, reason, endpoint, admit_s, NULL);
        else
                log_oom();

        fields = json_object_new_object();
        if (!fields)
                return;
        if (f->id) {
                (void) json_object_object_add(fields, "uid", json_object_new_int64(f->id->uid));
                (void) json_object_object_add(fields, "gid", json_object_new_int64(f->id->gid));
                (void) json_object_object_add(fields, "pid", json_object_new_int64(f->id->pid));
                if (f->id->exe_path)
                        (void) json_object_object_add(fields, "exe", json_object_new_string(f->id->exe_path));
        }
        if (!isempty(f->sha256_hex))
                (void) json_object_object_add(fields, "sha256", json_object_new_string(f->sha256_hex));
        if (rule_id > 0)
                (void) json_object_object_add(fields, "rule", json_object_new_int64(rule_id));
        (void) json_object_object_add(fields, "generation", json_object_new_int64((int64_t) generation));
        (void) json_object_object_add(fields, "endpoint", json_object_new_string(ep));
        (void) json_object_object_add(fields, "verdict", json_object_new_string(vs));
        (void) json_object_object_add(fields, "admit", json_object_new_boolean(admit));
        (void) json_object_object_add(fields, "reason", json_object_new_string(f->reason));
        manager_audit(m, "decision", message ?: vs, fields);
}

bool admission_check(Manager *m, PolicyEndpoint kind, int fd) {
        _cleanup_(process_identity_freep) ProcessIdentity *id = NULL;
        _cleanup_(policy_snapshot_unrefp) PolicySnapshot *snapshot = policy_snapshot_ref(m->policy);
        uint8_t sha256[SHA256_DIGEST_LEN];
        char sha256_hex[SHA256_HEX_LEN + 1] = "";
        char reason[128];
        AdmissionFacts f = {
                .sha256_hex = sha256_hex,
                .verdict = { .generation = policy_snapshot_generation(snapshot) },
                .reason = reason,
        };
        int r;

        r = process_identity_from_socket(fd, &id);
        if (r < 0) {
                (void) snprintf(reason, sizeof reason, "identity-error: %s", strerror(-r));
                goto decided;
        }
        f.id = id;

        /* Before evaluation: nothing a rule says can vouch for a traced or namespaced peer. */
        if (id->tracer_pid != 0) {
                (void) snprintf(reason, sizeof reason, "traced (tracer pid %d)", (int) id->tracer_pid);
                goto decided;
        }
        if (!id->initial_userns) {
                (void) snprintf(reason, sizeof reason, "foreign-user-namespace");
                goto decided;
        }

        /*
         * Hashed synchronously on the loop for now, bounded by hash_max_size and
         * cached by (dev, ino, size, mtime, ctime); issue 4 moves cold hashing to a
         * worker pool so a big executable never stalls other connections.
         */
        r = exe_hash_cache_get(m->hash_cache, id->exe_fd, &id->exe_stat, sha256);
        if (r < 0) {
                if (r == -EFBIG)
                        (void) snprintf(reason, sizeof reason, "hash-error: executable larger than hash_max_size");
                else
                        (void) snprintf(reason, sizeof reason, "hash-error: %s", strerror(-r));
                goto decided;
        }
        hex_encode(sha256, sizeof sha256, sha256_hex);

        /* The hash took time: make sure the pid still names the process we inspected. */
        r = process_identity_verify_alive(id);
        if (r < 0) {
                (void) snprintf(reason, sizeof reason, "identity-error: %s", strerror(-r));
                goto decided;
        }

        PolicyQuery q = {
                .uid = id->uid,
                .gid = id->gid,
                .supplementary_gids = id->supplementary_gids,
                .n_supplementary_gids = id->n_supplementary_gids,
                .exe_path = id->exe_path,
                .exe_sha256 = sha256,
                .endpoint = kind,
        };
        policy_evaluate(snapshot, &q, &f.verdict);
        f.evaluated = true;
        (void) snprintf(reason, sizeof reason, "%s", policy_reason_to_string(f.verdict.reason));

decided:
        if (!f.evaluated) {
                f.verdict.allow = false;
                f.verdict.admit = false;
                f.verdict.rule = NULL;
        }
        admission_record(m, kind, &f);
        return f.verdict.admit;
}
