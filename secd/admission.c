/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <json-c/json.h>

#include "admission.h"
#include "ca.h"
#include "hash-pool.h"
#include "identity.h"
#include "log.h"
#include "secd-messages.h"

typedef struct AdmissionFacts {
        const ProcessIdentity *id;      /* NULL when the identity could not be established */
        const char *sha256_hex;         /* "" when not hashed */
        PolicyVerdict verdict;
        bool evaluated;
        const char *reason;
        const char *cert_serial;        /* client certificate (data, tcp), or NULL */
        const char *cert_name;          /* remote certificate name (tcp), or NULL */
} AdmissionFacts;

static void admission_record(Manager *m, PolicyEndpoint kind, const AdmissionFacts *f) {
        _cleanup_free_ char *uid = NULL, *gid = NULL, *pid = NULL, *exe = NULL, *sha = NULL, *rule = NULL,
                *gen = NULL, *verdict = NULL, *reason = NULL, *endpoint = NULL, *admit_s = NULL, *message = NULL,
                *serial = NULL;
        _cleanup_(json_object_unrefp) json_object *fields = NULL;
        const char *ep = policy_endpoint_to_string(kind);
        const char *vs = f->verdict.allow ? "allow" : "deny";
        int64_t rule_id = f->evaluated && f->verdict.rule ? f->verdict.rule->id : 0;
        uint64_t generation = f->verdict.generation;
        bool admit = f->verdict.admit;
        int level = f->verdict.allow ? LOG_INFO : LOG_NOTICE;
        /* The journal's fields are built only when the entry is written (the audit row always is). */
        bool journal = log_get_max_level() >= level;

        if (f->verdict.allow)
                m->decisions.allowed++;
        else if (admit)
                m->decisions.permissive++;
        else
                m->decisions.denied++;

        if (!journal)
                ;
        else if (f->id) {
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
        if (journal) {
                sha = strdup_printf("EXE_SHA256=%s", f->sha256_hex);
                gen = strdup_printf("POLICY_GENERATION=%" PRIu64, generation);
                verdict = strdup_printf("VERDICT=%s", vs);
                reason = strdup_printf("REASON=%s", f->reason);
                endpoint = strdup_printf("ENDPOINT=%s", ep);
                admit_s = strdup_printf("ADMIT=%s", admit ? "yes" : "no");
                serial = strdup_printf("CERT_SERIAL=%s", f->cert_serial ?: "");
        }
        if (rule_id > 0)
                rule = strdup_printf("RULE_ID=%" PRIi64, rule_id);
        else
                rule = strdup("RULE_ID=");
        if (!rule)
                ;
        else if (f->cert_name)
                message = strdup_printf("%s: %s certificate %s serial %s (%s, rule %s, generation %" PRIu64 ")", ep, vs,
                                f->cert_name, f->cert_serial ?: "?", f->reason,
                                rule_id > 0 ? rule + strlen("RULE_ID=") : "none", generation);
        else if (f->id)
                message = strdup_printf("%s: %s uid=%" PRIu32 " pid=%d exe=%s (%s%s, rule %s, generation %" PRIu64 ")",
                                ep, vs, f->id->uid, (int) f->id->pid, f->id->exe_path ?: "?", f->reason,
                                !f->verdict.allow && admit ? ", admitted: permissive" : "",
                                rule_id > 0 ? rule + strlen("RULE_ID=") : "none", generation);
        else
                message = strdup_printf("%s: deny unidentified peer (%s, generation %" PRIu64 ")", ep, f->reason,
                                generation);

        if (!journal)
                ;
        else if (uid && gid && pid && exe && sha && rule && gen && verdict && reason && endpoint && admit_s && message &&
                 serial)
                log_struct(level, message,
                           f->verdict.allow ? SECD_MESSAGE_ADMISSION_ALLOWED : SECD_MESSAGE_ADMISSION_DENIED,
                           uid, gid, pid, exe, sha, rule, gen, verdict, reason, endpoint, admit_s, serial, NULL);
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
        if (f->cert_serial)
                (void) json_object_object_add(fields, "cert_serial", json_object_new_string(f->cert_serial));
        if (f->cert_name)
                (void) json_object_object_add(fields, "cert_name", json_object_new_string(f->cert_name));
        manager_audit(m, "decision", message ?: vs, fields);
}

/* Admission: the facts, a cold hash on the pool (never on the loop), the decision. */

struct AdmissionRequest {
        Manager *manager;
        PolicyEndpoint kind;
        ProcessIdentity *id;
        PolicySnapshot *snapshot;       /* the policy in force when the peer connected */
        AdmissionCert cert;
        bool has_cert;
        AdmissionDone done;
        void *userdata;
        HashJob *job;
        sd_event_source *defer;
        int hash_result;
        uint8_t sha256[SHA256_DIGEST_LEN];
        AdmissionFacts facts;
        char cert_serial[CA_SERIAL_HEX_LEN + 1];
        char sha256_hex[SHA256_HEX_LEN + 1];
        char reason[160];
        bool decided;                   /* facts are final (denied before hashing) */
        bool warm;                      /* hash from the cache: liveness was just proven by the facts */
};

AdmissionRequest *admission_request_free(AdmissionRequest *r) {
        if (!r)
                return NULL;
        hash_job_cancel(r->job);
        sd_event_source_disable_unref(r->defer);
        process_identity_free(r->id);
        policy_snapshot_unref(r->snapshot);
        free(r);
        return NULL;
}

static void admission_request_finish(AdmissionRequest *r) {
        AdmissionFacts *f = &r->facts;
        AdmissionResult result = {};
        int k;

        if (r->decided)
                goto decided;

        if (r->hash_result < 0) {
                if (r->hash_result == -EFBIG)
                        (void) snprintf(r->reason, sizeof r->reason, "hash-error: executable larger than hash_max_size");
                else
                        (void) snprintf(r->reason, sizeof r->reason, "hash-error: %s", strerror(-r->hash_result));
                goto decided;
        }
        hex_encode(r->sha256, sizeof r->sha256, r->sha256_hex);

        /*
         * After a cold hash (time has passed) the peer must still be the process whose
         * facts were read. A warm answer comes right after process_identity_from_socket()
         * proved exactly that, on the same loop iteration: no second check then.
         */
        k = r->warm ? 0 : process_identity_verify_alive(r->id);
        if (k < 0) {
                (void) snprintf(r->reason, sizeof r->reason, "identity-error: %s", strerror(-k));
                goto decided;
        }
        /* A certificate is bound to one executable: a stolen one used by another binary is refused. */
        if (r->has_cert && memcmp(r->cert.sha256, r->sha256, SHA256_DIGEST_LEN) != 0) {
                (void) snprintf(r->reason, sizeof r->reason, "certificate-exe-mismatch");
                goto decided;
        }

        PolicyQuery q = {
                .uid = r->id->uid,
                .gid = r->id->gid,
                .supplementary_gids = r->id->supplementary_gids,
                .n_supplementary_gids = r->id->n_supplementary_gids,
                .exe_path = r->id->exe_path,
                .exe_sha256 = r->sha256,
                .endpoint = r->kind,
        };
        policy_evaluate(r->snapshot, &q, &f->verdict);
        f->evaluated = true;
        (void) snprintf(r->reason, sizeof r->reason, "%s", policy_reason_to_string(f->verdict.reason));

decided:
        if (!f->evaluated) {
                f->verdict.allow = false;
                f->verdict.admit = false;
                f->verdict.rule = NULL;
        }
        admission_record(r->manager, r->kind, f);

        result.admitted = f->verdict.admit;
        result.reason = r->reason;
        if (r->id && r->hash_result >= 0 && !r->decided) {
                result.identified = true;
                result.uid = r->id->uid;
                result.gid = r->id->gid;
                result.pid = r->id->pid;
                memcpy(result.sha256, r->sha256, SHA256_DIGEST_LEN);
        }
        r->done(r->manager, &result, r->userdata);
        admission_request_free(r);
}

static void admission_on_hash(int k, const uint8_t sha256[SHA256_DIGEST_LEN], void *userdata) {
        AdmissionRequest *r = userdata;

        r->job = NULL;
        r->hash_result = k;
        if (k >= 0)
                memcpy(r->sha256, sha256, SHA256_DIGEST_LEN);
        admission_request_finish(r);
}

static int admission_on_defer(sd_event_source *s, void *userdata) {
        AdmissionRequest *r = userdata;

        r->defer = sd_event_source_disable_unref(r->defer);
        admission_request_finish(r);
        return 0;
}

int admission_check_async(Manager *m, PolicyEndpoint kind, int fd, const struct ucred *peer, const AdmissionCert *cert,
                          AdmissionFlags flags, AdmissionDone done, void *userdata, AdmissionRequest **ret_request) {
        AdmissionRequest *r;
        int k;

        r = calloc(1, sizeof *r);
        if (!r)
                return -ENOMEM;
        *r = (AdmissionRequest) {
                .manager = m,
                .kind = kind,
                .snapshot = policy_snapshot_ref(m->policy),
                .done = done,
                .userdata = userdata,
        };
        r->facts = (AdmissionFacts) {
                .sha256_hex = r->sha256_hex,
                .verdict = { .generation = policy_snapshot_generation(r->snapshot) },
                .reason = r->reason,
        };
        if (cert) {
                r->cert = *cert;
                r->cert.serial = NULL;
                r->has_cert = true;
                r->facts.cert_serial = cert->serial ? strncpy(r->cert_serial, cert->serial, CA_SERIAL_HEX_LEN) : NULL;
        }

        /* Supplementary groups (a syscall and an allocation) only when a rule could select by them. */
        k = process_identity_from_socket_full(fd, peer, policy_snapshot_uses_gids(r->snapshot), &r->id);
        if (k < 0) {
                (void) snprintf(r->reason, sizeof r->reason, "identity-error: %s", strerror(-k));
                r->decided = true;
                goto later;
        }
        r->facts.id = r->id;
        if (r->id->tracer_pid != 0) {
                (void) snprintf(r->reason, sizeof r->reason, "traced (tracer pid %d)", (int) r->id->tracer_pid);
                r->decided = true;
                goto later;
        }
        if (!r->id->initial_userns) {
                (void) snprintf(r->reason, sizeof r->reason, "foreign-user-namespace");
                r->decided = true;
                goto later;
        }
        if (r->has_cert && r->cert.uid != r->id->uid) {
                (void) snprintf(r->reason, sizeof r->reason, "certificate-uid-mismatch (certificate uid %" PRIu32 ")",
                                r->cert.uid);
                r->decided = true;
                goto later;
        }

        /* Warm: the cache answers at once. Cold: a worker hashes, the loop goes on. */
        k = exe_hash_cache_lookup(m->hash_cache, &r->id->exe_stat, r->sha256);
        if (k > 0) {
                r->warm = (flags & ADMISSION_DONE_INLINE) != 0;
                goto later;
        }
        /* Never hashed on the loop: without the pool there is no cold hashing at all. */
        if (!m->hash_pool) {
                (void) snprintf(r->reason, sizeof r->reason, "hash-error: no hashing threads");
                r->decided = true;
        } else {
                hash_pool_set_uid_budget(m->hash_pool, m->config.hash_uid_rate, m->config.hash_uid_burst);
                k = hash_pool_submit(m->hash_pool, r->id->exe_fd, &r->id->exe_stat, r->id->uid, admission_on_hash, r,
                                     &r->job);
                if (k >= 0)
                        goto submitted;
                if (k == -EDQUOT)
                        (void) snprintf(r->reason, sizeof r->reason,
                                        "busy: this uid's hashing budget is used up (hash_uid_rate)");
                else if (k == -EUSERS)
                        (void) snprintf(r->reason, sizeof r->reason, "busy: too many hashes in flight for this uid");
                else if (k == -EBUSY)
                        (void) snprintf(r->reason, sizeof r->reason, "busy: hash queue full");
                else
                        (void) snprintf(r->reason, sizeof r->reason, "hash-error: %s", strerror(-k));
                r->decided = true;
        }

later:
        if (flags & ADMISSION_DONE_INLINE) {
                *ret_request = NULL;
                admission_request_finish(r);    /* runs done, frees r */
                return 1;
        }
        k = sd_event_add_defer(m->event, &r->defer, admission_on_defer, r);
        if (k < 0) {
                admission_request_free(r);
                return k;
        }
submitted:
        *ret_request = r;
        return 0;
}

bool admission_check_remote(Manager *m, const char *cert_name, const char *serial, const char **ret_reason) {
        _cleanup_(policy_snapshot_unrefp) PolicySnapshot *snapshot = policy_snapshot_ref(m->policy);
        AdmissionFacts f = {
                .sha256_hex = "",
                .verdict = { .generation = policy_snapshot_generation(snapshot) },
                .cert_serial = serial,
                .cert_name = cert_name,
        };
        /*
         * No process to inspect: the certificate's name is the identity (rule selector
         * "cert"). A remote peer has no local uid or gid: the query carries ids that
         * no local account has (-2, the kernel's overflow ids are 65534), so a uid or
         * group rule never matches it; only cert and endpoint selectors can.
         */
        PolicyQuery q = {
                .uid = UINT32_MAX - 1,
                .gid = UINT32_MAX - 1,
                .endpoint = POLICY_ENDPOINT_TCP,
                .cert_name = cert_name,
        };

        policy_evaluate(snapshot, &q, &f.verdict);
        f.evaluated = true;
        f.reason = policy_reason_to_string(f.verdict.reason);
        admission_record(m, POLICY_ENDPOINT_TCP, &f);
        *ret_reason = f.verdict.admit ? NULL : "refused by policy";
        return f.verdict.admit;
}
