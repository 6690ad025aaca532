/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The Varlink control server on the control endpoint. Per connection: an
 * input buffer bounded by control_message_max (a bigger message closes the
 * connection), a bounded output queue written non-blocking (a client that
 * does not read is dropped), an idle timeout and a per-request deadline.
 * Every io.secd.* request is authorised from the connect-time peer
 * credentials (SO_PEERCRED, SO_PEERGROUPS): uid 0, the admin group (gid
 * resolved at start, never NSS at request time), or in --dev the invoking
 * user. org.varlink.service introspection is answered to anyone who can
 * connect.
 */

#include "manager.h"
#include "varlink.h"

/* Method handlers (control-*.c, enroll.c). Return 0 after replying, or negative errno to drop the client. */
typedef int (*ControlMethodHandler)(ControlConnection *c, const VarlinkCall *call);

typedef struct ControlMethod {
        const char *method;
        ControlMethodHandler handler;
} ControlMethod;

/*
 * One Varlink server on this connection machinery: the control endpoint
 * (control_server) and the enroll endpoint (enroll.c) each have one, with
 * their own methods, interfaces and authorisation.
 */
typedef struct ControlServer {
        const char *name;               /* "control", "enroll": for log messages */
        PolicyEndpoint endpoint;        /* counted in Manager.n_connections[] */
        const ControlMethod *methods;
        size_t n_methods;
        const char *const *interfaces;  /* served interfaces (InterfaceNotFound for others) */
        size_t n_interfaces;
        /*
         * Called before every method outside org.varlink.service; false means
         * it already answered the call (an error). NULL: everyone may call.
         */
        bool (*authorize)(ControlConnection *c, const VarlinkCall *call);
        /* Called when a connection is freed (cancel work it started). May be NULL. */
        void (*connection_done)(ControlConnection *c);
} ControlServer;

extern const ControlServer control_server;

struct ControlConnection {
        Manager *manager;
        const ControlServer *server;
        ControlConnection *prev, *next;
        uint64_t serial;                /* for log messages */
        void *userdata;                 /* the server's per-connection state */

        int fd;
        sd_event_source *io_source;
        sd_event_source *timer_source;

        uid_t uid;                      /* connect-time credentials */
        gid_t gid;
        pid_t pid;
        gid_t *groups;
        size_t n_groups;

        VarlinkBuffer *input;
        uint64_t partial_since;         /* when the unterminated message started, 0 if none */
        uint64_t last_activity;

        char *output;                   /* queued reply bytes [output_offset, output_size) */
        size_t output_size, output_offset, output_allocated;
        uint64_t output_since;          /* when the queue became non-empty */

        bool oneway;                    /* the call being dispatched wants no reply */
        bool busy;                      /* a call is answered asynchronously: see control_resume() */
        uint64_t busy_since;
        bool following;                 /* Audit.Tail with "more": receives new entries */
        int64_t follow_after_id;        /* the newest entry it has: the writer may publish a row the tail already read */
        bool eof;                       /* the peer shut down its side */
        bool dead;                      /* close at the end of the current callback */
};

/* Take over an accepted connection on the control endpoint (closes fd on failure). */
int control_connection_new(Manager *m, int fd);
/* The same for another server (enroll). */
int control_connection_new_server(Manager *m, const ControlServer *server, int fd);

/*
 * Asynchronous answers: a handler sets c->busy and returns 0; nothing more
 * is read from the client until the answer is queued (the request deadline
 * still runs). Once it has replied, the owner of the work calls
 * control_resume(), which clears busy, serves what the client sent
 * meanwhile, and may free the connection.
 */
void control_resume(ControlConnection *c);
ControlConnection *control_connection_free(ControlConnection *c);

/* SIGTERM: close idle connections, let in-flight requests finish. */
void control_stop(Manager *m);

/*
 * Replies to the call being dispatched; parameters (may be NULL) are
 * consumed. Nothing is sent for a oneway call. Negative errno means the
 * connection is broken and will be closed.
 */
int control_reply(ControlConnection *c, json_object *parameters, bool continues);
int control_error(ControlConnection *c, const char *error, json_object *parameters);
int control_error_invalid_parameter(ControlConnection *c, const char *parameter);

/*
 * Queue a reply the caller serialised itself: a complete Varlink message of
 * size bytes, its terminating NUL included. message is consumed and wiped.
 * For replies that carry a secret (Certs.Issue): every copy the output
 * queue makes is wiped too, when sent, moved, grown or freed.
 */
int control_reply_secret(ControlConnection *c, char *message, size_t size);

/* Queue an unsolicited message (audit follow); drops the client when its queue is full. */
int control_push(ControlConnection *c, json_object *parameters, bool continues);

/* Uid of the client, for audit rows and journal entries. */
static inline uid_t control_peer_uid(const ControlConnection *c) {
        return c->uid;
}

int control_policy_list(ControlConnection *c, const VarlinkCall *call);
int control_policy_add(ControlConnection *c, const VarlinkCall *call);
int control_policy_remove(ControlConnection *c, const VarlinkCall *call);
int control_policy_set_mode(ControlConnection *c, const VarlinkCall *call);
int control_policy_test(ControlConnection *c, const VarlinkCall *call);
int control_policy_export(ControlConnection *c, const VarlinkCall *call);
int control_policy_import(ControlConnection *c, const VarlinkCall *call);
int control_status_get(ControlConnection *c, const VarlinkCall *call);
int control_service_reload(ControlConnection *c, const VarlinkCall *call);
int control_audit_tail(ControlConnection *c, const VarlinkCall *call);
int control_service_get_info(ControlConnection *c, const VarlinkCall *call);
int control_certs_issue(ControlConnection *c, const VarlinkCall *call);
int control_certs_list(ControlConnection *c, const VarlinkCall *call);
int control_certs_revoke(ControlConnection *c, const VarlinkCall *call);
int control_certs_crl(ControlConnection *c, const VarlinkCall *call);
int control_ca_get(ControlConnection *c, const VarlinkCall *call);
int control_service_get_interface_description(ControlConnection *c, const VarlinkCall *call);

/* Push a newly written audit entry to every follower. */
void control_audit_broadcast(Manager *m, json_object *entry);
