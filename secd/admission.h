/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Admission: who is this process (or certificate), and may it use this endpoint?
 * Gathers the facts (policy/identity.h, policy/exe-hash.h), asks
 * policy_evaluate() and acts: journal entry, audit row, counters. It never
 * decides on its own, except that a traced peer, a peer outside the initial
 * user namespace, and any failure to establish the facts are denials.
 */

#include "manager.h"

/*
 * Asynchronous admission: a cold executable hash runs on the hash pool
 * (hash-pool.c), never on the loop. The enroll and data endpoints use this.
 */
typedef struct AdmissionRequest AdmissionRequest;

typedef struct AdmissionResult {
        bool admitted;                  /* the policy admits the process (allow, or permissive) */
        bool identified;                /* uid/gid/pid/sha256 below are valid */
        uint32_t uid;
        uint32_t gid;
        pid_t pid;
        uint8_t sha256[SHA256_DIGEST_LEN]; /* of the live executable */
        const char *reason;             /* valid during the callback only */
} AdmissionResult;

/*
 * Called exactly once per request, always from the event loop, unless the
 * request is freed first. Without ADMISSION_DONE_INLINE never from inside
 * admission_check_async(); with it, from inside when no hashing is needed
 * (the executable's hash is in the cache, or the peer is refused before
 * hashing). The request is freed by admission after the callback returns.
 */
typedef void (*AdmissionDone)(Manager *m, const AdmissionResult *result, void *userdata);

typedef enum AdmissionFlags {
        /*
         * The caller can take done() before admission_check_async() returns:
         * a warm admission then costs no loop iteration (a deferred event
         * source and its wake-up per connection on the data endpoint).
         */
        ADMISSION_DONE_INLINE = 1 << 0,
} AdmissionFlags;

/*
 * Facts from a verified client certificate, judged together with the live
 * process (data endpoint): its uid must equal the peer's SO_PEERCRED uid
 * and its sha256 the live executable's hash. NULL on the enroll endpoint.
 */
typedef struct AdmissionCert {
        uint32_t uid;
        uint8_t sha256[SHA256_DIGEST_LEN];
        const char *serial;             /* 32 hex, recorded in the journal and audit entry */
} AdmissionCert;

/*
 * Start judging the peer of fd (which the caller keeps open until done
 * runs). peer: SO_PEERCRED as the caller read it from fd, an accepted
 * AF_UNIX socket (then not read again), or NULL. Returns 0 when the decision is pending: *ret_request is the
 * caller's handle for cancelling (admission_request_free()); it becomes
 * invalid once done has run. Returns 1 (only with ADMISSION_DONE_INLINE)
 * when done has already run: *ret_request is NULL. Negative errno: done
 * will not run.
 */
int admission_check_async(Manager *m, PolicyEndpoint kind, int fd, const struct ucred *peer, const AdmissionCert *cert,
                          AdmissionFlags flags, AdmissionDone done, void *userdata, AdmissionRequest **ret_request);

/* Cancel: done will not run. NULL-safe. */
AdmissionRequest *admission_request_free(AdmissionRequest *r);

/*
 * A remote client on the tcp endpoint: no process to inspect, the
 * certificate's name decides (PolicyQuery.cert_name). Synchronous.
 */
bool admission_check_remote(Manager *m, const char *cert_name, const char *serial, const char **ret_reason);
