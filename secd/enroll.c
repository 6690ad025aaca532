/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <time.h>

#include "admission.h"
#include "ca.h"
#include "control.h"
#include "enroll.h"
#include "interfaces.h"
#include "log.h"
#include "secd-messages.h"

/* Uids whose request counts are remembered at once; the oldest window is forgotten first. */
#define ENROLL_RATE_SLOTS 1024

typedef struct EnrollRate {
        uint32_t uid;
        bool used;
        uint64_t window_start;          /* CLOCK_MONOTONIC */
        uint64_t count;
} EnrollRate;

/* One Manager per process: the table lives as long as the process. */
static EnrollRate enroll_rates[ENROLL_RATE_SLOTS];

/* The call waiting for admission on a connection. */
typedef struct EnrollPending {
        AdmissionRequest *request;
        char *csr;
        size_t csr_len;
} EnrollPending;

static int enroll_issue(ControlConnection *c, const VarlinkCall *call);
static int enroll_get_info(ControlConnection *c, const VarlinkCall *call);
static int enroll_get_interface_description(ControlConnection *c, const VarlinkCall *call);
static void enroll_connection_done(ControlConnection *c);

static const ControlMethod enroll_methods[] = {
        { "io.secd.Enroll.Issue", enroll_issue },
        { "org.varlink.service.GetInfo", enroll_get_info },
        { "org.varlink.service.GetInterfaceDescription", enroll_get_interface_description },
};

static const char *const enroll_interfaces[] = { "io.secd.Enroll", "org.varlink.service" };

/* Anyone who can connect may call: admission judges each Issue call. */
static const ControlServer enroll_server = {
        .name = "enroll",
        .endpoint = POLICY_ENDPOINT_ENROLL,
        .methods = enroll_methods,
        .n_methods = ELEMENTSOF(enroll_methods),
        .interfaces = enroll_interfaces,
        .n_interfaces = ELEMENTSOF(enroll_interfaces),
        .connection_done = enroll_connection_done,
};

int enroll_connection_new(Manager *m, int fd) {
        return control_connection_new_server(m, &enroll_server, fd);
}

static EnrollPending *enroll_pending_free(EnrollPending *p) {
        if (!p)
                return NULL;
        admission_request_free(p->request);
        free(p->csr);
        free(p);
        return NULL;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(EnrollPending *, enroll_pending_free);

static void enroll_connection_done(ControlConnection *c) {
        c->userdata = enroll_pending_free(c->userdata);
}

static int add_string(json_object *o, const char *k, const char *v) {
        json_object *s = json_object_new_string(v);

        if (!s || json_object_object_add(o, k, s) < 0) {
                json_object_put(s);
                return -ENOMEM;
        }
        return 0;
}

static int enroll_error_string(ControlConnection *c, const char *error, const char *key, const char *value) {
        json_object *p = json_object_new_object();

        if (!p || add_string(p, key, value) < 0) {
                json_object_put(p);
                return -ENOMEM;
        }
        return control_error(c, error, p);
}

/*
 * Fixed window per uid: at most enroll_rate_limit calls per
 * enroll_rate_interval. 0 if the call may go on, otherwise the time until
 * the window ends.
 */
static uint64_t enroll_rate_check(Manager *m, uint32_t uid) {
        uint64_t now = now_usec(CLOCK_MONOTONIC), interval = m->config.enroll_rate_interval;
        EnrollRate *slot = NULL, *oldest = NULL;

        for (size_t i = 0; i < ELEMENTSOF(enroll_rates); i++) {
                EnrollRate *e = &enroll_rates[i];

                if (e->used && e->uid == uid) {
                        slot = e;
                        break;
                }
                if (!oldest || !e->used || (oldest->used && e->window_start < oldest->window_start))
                        oldest = e;
        }
        if (!slot) {
                slot = oldest;
                *slot = (EnrollRate) { .uid = uid, .used = true, .window_start = now };
        }
        if (now - slot->window_start >= interval) {
                slot->window_start = now;
                slot->count = 0;
        }
        if (slot->count >= m->config.enroll_rate_limit)
                return MAX(slot->window_start + interval - now, (uint64_t) 1);
        slot->count++;
        return 0;
}

/* The reason class a refused client sees: never the rule or the policy's words. */
static const char *enroll_reason_class(const AdmissionResult *result) {
        const char *r = result->reason ?: "";

        if (!result->identified || strncmp(r, "identity", 8) == 0)
                return "identity";
        if (strncmp(r, "traced", 6) == 0)
                return "traced";
        if (strncmp(r, "foreign-user-namespace", 22) == 0)
                return "namespace";
        if (strncmp(r, "hash", 4) == 0)
                return "hash";
        if (strncmp(r, "busy", 4) == 0)
                return "busy";
        return "policy";
}

static void enroll_record(Manager *m, const ControlConnection *c, const AdmissionResult *result, const char *serial,
                          uint64_t not_after_usec) {
        _cleanup_free_ char *message = NULL, *uid = NULL, *pid = NULL, *sha = NULL, *ser = NULL, *na = NULL;
        _cleanup_(json_object_unrefp) json_object *fields = NULL;
        char sha_hex[SHA256_HEX_LEN + 1];

        hex_encode(result->sha256, SHA256_DIGEST_LEN, sha_hex);
        message = strdup_printf("enroll: issued certificate %s to uid %" PRIu32 " pid %d (sha256 %s), valid until %" PRIu64
                                " (enroll #%" PRIu64 ").",
                                serial, result->uid, (int) result->pid, sha_hex, not_after_usec / 1000000, c->serial);
        uid = strdup_printf("UID=%" PRIu32, result->uid);
        pid = strdup_printf("PID=%d", (int) result->pid);
        sha = strdup_printf("EXE_SHA256=%s", sha_hex);
        ser = strdup_printf("CERT_SERIAL=%s", serial);
        na = strdup_printf("CERT_NOT_AFTER_USEC=%" PRIu64, not_after_usec);
        if (message && uid && pid && sha && ser && na)
                log_struct(LOG_INFO, message, SECD_MESSAGE_ENROLL_ISSUED, uid, pid, sha, ser, na, "ENDPOINT=enroll",
                           NULL);
        else
                log_oom();

        fields = json_object_new_object();
        if (!fields)
                return;
        (void) json_object_object_add(fields, "uid", json_object_new_int64(result->uid));
        (void) json_object_object_add(fields, "pid", json_object_new_int64(result->pid));
        (void) json_object_object_add(fields, "sha256", json_object_new_string(sha_hex));
        (void) json_object_object_add(fields, "serial", json_object_new_string(serial));
        (void) json_object_object_add(fields, "not_after_usec", json_object_new_int64((int64_t) not_after_usec));
        manager_audit(m, "enroll", message ?: "enroll: certificate issued", fields);
}

/* Answer the pending Issue call; 0 after replying, negative errno to drop the client. */
static int enroll_answer(ControlConnection *c, const AdmissionResult *result) {
        Manager *m = c->manager;
        EnrollPending *p = c->userdata;
        _cleanup_free_ char *cert = NULL, *ca_cert = NULL;
        _cleanup_(json_object_unrefp) json_object *reply = NULL;
        char serial[CA_SERIAL_HEX_LEN + 1], expires[sizeof "2026-11-22T05:00:00Z" + 8];
        uint64_t not_after = 0;
        struct tm tm;
        time_t t;
        int r;

        /* Admission already logged and audited the decision; the client learns only its class. */
        if (!result->admitted || !result->identified)
                return enroll_error_string(c, "io.secd.Enroll.NotAdmitted", "reason", enroll_reason_class(result));
        if (!m->ca) {
                log_error("enroll: no certificate authority, cannot issue.");
                return -ENOKEY;
        }

        r = ca_issue_local(m->ca, p->csr, p->csr_len, result->uid, result->sha256, &cert, &not_after, serial);
        if (r == -EBADMSG)
                return enroll_error_string(c, "io.secd.Enroll.InvalidRequest", "reason",
                                           "not a PEM certificate signing request");
        if (r == -EKEYREJECTED)
                return enroll_error_string(c, "io.secd.Enroll.InvalidRequest", "reason",
                                           "bad self-signature, or key type not Ed25519 or ECDSA P-256");
        if (r < 0)
                return log_error_errno(r, "enroll #%" PRIu64 ": cannot issue a certificate: %m", c->serial);

        r = ca_pem(m->ca, &ca_cert);
        if (r < 0)
                return r;
        t = (time_t) (not_after / 1000000);
        if (!gmtime_r(&t, &tm) || strftime(expires, sizeof expires, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                return -EINVAL;

        enroll_record(m, c, result, serial, not_after);

        reply = json_object_new_object();
        if (!reply || add_string(reply, "certificate", cert) < 0 || add_string(reply, "ca", ca_cert) < 0 ||
            add_string(reply, "expires", expires) < 0)
                return -ENOMEM;
        return control_reply(c, TAKE_PTR(reply), false);
}

static void enroll_admitted(Manager *m, const AdmissionResult *result, void *userdata) {
        ControlConnection *c = userdata;
        EnrollPending *p = c->userdata;
        int r;

        (void) m;
        p->request = NULL;      /* admission frees it after this callback */
        r = enroll_answer(c, result);
        if (r < 0 && !c->dead) {
                log_struct_errno(LOG_ERR, r, "enroll: a request failed inside secd; closing that connection.",
                                 SECD_MESSAGE_ERROR, NULL);
                c->dead = true;
        }
        c->userdata = enroll_pending_free(c->userdata);
        control_resume(c);
}

static int enroll_issue(ControlConnection *c, const VarlinkCall *call) {
        Manager *m = c->manager;
        const char *csr = NULL, *bad = NULL;
        const VarlinkField fields[] = {
                { "csr", VARLINK_FIELD_STRING, VARLINK_FIELD_REQUIRED, &csr },
                {},
        };
        _cleanup_(enroll_pending_freep) EnrollPending *p = NULL;
        uint64_t retry;
        int r;

        if (varlink_params_extract(call->parameters, fields, &bad) < 0)
                return control_error_invalid_parameter(c, bad);

        retry = enroll_rate_check(m, (uint32_t) c->uid);
        if (retry > 0) {
                json_object *params = json_object_new_object(), *v = json_object_new_int64((int64_t) retry);

                if (!params || !v || json_object_object_add(params, "retry_after_usec", v) < 0) {
                        json_object_put(v);
                        json_object_put(params);
                        return -ENOMEM;
                }
                log_debug("enroll #%" PRIu64 " (uid %u): rate limited.", c->serial, (unsigned) c->uid);
                return control_error(c, "io.secd.Enroll.RateLimited", params);
        }

        if (strlen(csr) > CA_CSR_MAX)
                return enroll_error_string(c, "io.secd.Enroll.InvalidRequest", "reason", "request too large");

        p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        p->csr_len = strlen(csr);
        p->csr = strdup(csr);
        if (!p->csr)
                return -ENOMEM;

        /* The live peer, judged now (not at connect): hashing a cold executable runs off the loop. */
        r = admission_check_async(m, POLICY_ENDPOINT_ENROLL, c->fd, NULL, NULL, 0, enroll_admitted, c, &p->request);
        if (r < 0)
                return log_error_errno(r, "enroll #%" PRIu64 ": cannot start admission: %m", c->serial);
        c->userdata = TAKE_PTR(p);
        c->busy = true;
        c->busy_since = now_usec(CLOCK_MONOTONIC);
        return 0;
}

static int enroll_get_info(ControlConnection *c, const VarlinkCall *call) {
        static const VarlinkField fields[] = { {} };
        _cleanup_(json_object_unrefp) json_object *reply = NULL;
        json_object *names;
        const char *bad = NULL;

        if (varlink_params_extract(call->parameters, fields, &bad) < 0)
                return control_error_invalid_parameter(c, bad);

        reply = json_object_new_object();
        names = json_object_new_array();
        if (!reply || !names || json_object_object_add(reply, "interfaces", names) < 0) {
                json_object_put(names);
                return -ENOMEM;
        }
        for (size_t i = 0; i < secd_enroll_n_interfaces; i++)
                if (json_object_array_add(names, json_object_new_string(secd_enroll_interfaces[i].name)) < 0)
                        return -ENOMEM;
        if (add_string(reply, "vendor", "secd") < 0 || add_string(reply, "product", "secd") < 0 ||
            add_string(reply, "version", SECD_VERSION) < 0 || add_string(reply, "url", "man:secd(8)") < 0)
                return -ENOMEM;
        return control_reply(c, TAKE_PTR(reply), false);
}

static int enroll_get_interface_description(ControlConnection *c, const VarlinkCall *call) {
        const char *name = NULL, *bad = NULL;
        const VarlinkField fields[] = {
                { "interface", VARLINK_FIELD_STRING, VARLINK_FIELD_REQUIRED, &name },
                {},
        };
        _cleanup_(json_object_unrefp) json_object *reply = NULL;

        if (varlink_params_extract(call->parameters, fields, &bad) < 0)
                return control_error_invalid_parameter(c, bad);

        for (size_t i = 0; i < secd_enroll_n_interfaces; i++) {
                if (!streq(secd_enroll_interfaces[i].name, name))
                        continue;
                reply = json_object_new_object();
                if (!reply || add_string(reply, "description", secd_enroll_interfaces[i].description) < 0)
                        return -ENOMEM;
                return control_reply(c, TAKE_PTR(reply), false);
        }
        return enroll_error_string(c, VARLINK_ERROR_INTERFACE_NOT_FOUND, "interface", name);
}
