/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <sys/socket.h>

#include "control.h"
#include "log.h"
#include "secd-messages.h"

#define CONTROL_READ_CHUNK (16u * 1024u)
#define CONTROL_GROUPS_MAX 65536

/* Every io.secd.* method requires an administrator; org.varlink.service does not. */
static const ControlMethod control_methods[] = {
        { "io.secd.Policy.List", control_policy_list },
        { "io.secd.Policy.Add", control_policy_add },
        { "io.secd.Policy.Remove", control_policy_remove },
        { "io.secd.Policy.SetMode", control_policy_set_mode },
        { "io.secd.Policy.Test", control_policy_test },
        { "io.secd.Policy.Export", control_policy_export },
        { "io.secd.Policy.Import", control_policy_import },
        { "io.secd.Status.Get", control_status_get },
        { "io.secd.Audit.Tail", control_audit_tail },
        { "io.secd.Service.Reload", control_service_reload },
        { "io.secd.Certs.Issue", control_certs_issue },
        { "io.secd.Certs.List", control_certs_list },
        { "io.secd.Certs.Revoke", control_certs_revoke },
        { "io.secd.Certs.Crl", control_certs_crl },
        { "io.secd.CA.Get", control_ca_get },
        { "org.varlink.service.GetInfo", control_service_get_info },
        { "org.varlink.service.GetInterfaceDescription", control_service_get_interface_description },
};

static const char *const control_interfaces[] = {
        "io.secd.Policy", "io.secd.Status", "io.secd.Audit", "io.secd.Service", "io.secd.Certs", "io.secd.CA",
        "org.varlink.service",
};

static bool control_authorize(ControlConnection *c, const VarlinkCall *call);

const ControlServer control_server = {
        .name = "control",
        .endpoint = POLICY_ENDPOINT_CONTROL,
        .methods = control_methods,
        .n_methods = ELEMENTSOF(control_methods),
        .interfaces = control_interfaces,
        .n_interfaces = ELEMENTSOF(control_interfaces),
        .authorize = control_authorize,
};

static int control_connection_update(ControlConnection *c);

static void control_drained_check(Manager *m) {
        if (m->stopping && !m->connections)
                (void) sd_event_exit(m->event, m->exit_code);
}

ControlConnection *control_connection_free(ControlConnection *c) {
        Manager *m;

        if (!c)
                return NULL;
        m = c->manager;
        if (c->server->connection_done)
                c->server->connection_done(c);
        if (c->prev)
                c->prev->next = c->next;
        else
                m->connections = c->next;
        if (c->next)
                c->next->prev = c->prev;
        if (c->server->endpoint == POLICY_ENDPOINT_CONTROL)
                m->n_control_connections--;
        m->n_connections[c->server->endpoint]--;

        sd_event_source_disable_unref(c->io_source);
        sd_event_source_disable_unref(c->timer_source);
        safe_close(c->fd);
        varlink_buffer_free(c->input);
        /* Replies may have carried a private key (Certs.Issue): no copy outlives the connection. */
        if (c->output)
                explicit_bzero(c->output, c->output_allocated);
        free(c->output);
        free(c->groups);
        log_debug("control #%" PRIu64 ": closed.", c->serial);
        free(c);

        control_drained_check(m);
        return NULL;
}

static void control_connection_kill(ControlConnection *c) {
        c->dead = true;
}

/* Read the connect-time credentials: the kernel's facts, never NSS. */
static int control_peer_credentials(ControlConnection *c) {
        struct ucred cred;
        socklen_t len = sizeof cred;
        _cleanup_free_ gid_t *groups = NULL;

        if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return negative_errno();
        if (len != sizeof cred)
                return -EIO;

        len = 64 * sizeof(gid_t);
        for (;;) {
                gid_t *n = realloc(groups, len ? len : 1);
                if (!n)
                        return -ENOMEM;
                groups = n;
                if (getsockopt(c->fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) >= 0)
                        break;
                if (errno != ERANGE || len > CONTROL_GROUPS_MAX * sizeof(gid_t))
                        return negative_errno();
        }

        c->uid = cred.uid;
        c->gid = cred.gid;
        c->pid = cred.pid;
        c->n_groups = len / sizeof(gid_t);
        c->groups = TAKE_PTR(groups);
        return 0;
}

static uint64_t control_deadline(const ControlConnection *c) {
        const Config *cfg = &c->manager->config;

        if (c->output_size > c->output_offset)
                return c->output_since + cfg->request_timeout;
        if (c->busy)
                return c->busy_since + cfg->request_timeout;
        if (c->partial_since > 0)
                return c->partial_since + cfg->request_timeout;
        if (c->eof)
                return now_usec(CLOCK_MONOTONIC);
        /* A follower waits for us, not we for it; its queue is bounded instead. */
        if (c->following)
                return UINT64_MAX;
        return c->last_activity + cfg->idle_timeout;
}

static int control_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        ControlConnection *c = userdata;

        if (c->output_size > c->output_offset)
                log_debug("control #%" PRIu64 ": client does not read its replies, dropping it.", c->serial);
        else if (c->partial_since > 0)
                log_debug("control #%" PRIu64 ": request not completed in time, dropping it.", c->serial);
        else
                log_debug("control #%" PRIu64 ": idle, closing.", c->serial);
        control_connection_free(c);
        return 0;
}

/* Write what can be written now. */
static int control_flush(ControlConnection *c) {
        while (c->output_offset < c->output_size) {
                ssize_t n = send(c->fd, c->output + c->output_offset, c->output_size - c->output_offset,
                                 MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return 0;
                        return negative_errno();
                }
                c->output_offset += (size_t) n;
        }
        /* Sent: wipe it (see control_reply_secret()). */
        if (c->output_size > 0)
                explicit_bzero(c->output, c->output_size);
        c->output_offset = c->output_size = 0;
        return 0;
}

static int control_queue(ControlConnection *c, char *message, size_t size) {
        size_t pending = c->output_size - c->output_offset, need;

        if (!size_add_ok(pending, size, &need) || need > c->manager->config.control_output_max) {
                log_warning("control #%" PRIu64 " (uid %u): output queue over control_output_max, dropping the client.",
                            c->serial, (unsigned) c->uid);
                return -ENOBUFS;
        }
        if (c->output_offset > 0) {
                memmove(c->output, c->output + c->output_offset, pending);
                /* The bytes behind the moved data are stale copies: wipe them. */
                explicit_bzero(c->output + pending, c->output_size - pending);
                c->output_size = pending;
                c->output_offset = 0;
        }
        if (need > c->output_allocated) {
                size_t a = MAX(need, MIN(c->output_allocated * 2, (size_t) c->manager->config.control_output_max));
                /* Not realloc(): it could leave a copy of queued bytes in freed memory. */
                char *n = malloc(a);
                if (!n)
                        return -ENOMEM;
                if (c->output) {
                        memcpy(n, c->output, c->output_size);
                        explicit_bzero(c->output, c->output_allocated);
                        free(c->output);
                }
                c->output = n;
                c->output_allocated = a;
        }
        if (pending == 0)
                c->output_since = now_usec(CLOCK_MONOTONIC);
        memcpy(c->output + c->output_size, message, size);
        c->output_size += size;
        return control_flush(c);
}

static int control_send(ControlConnection *c, int r, char *message, size_t size) {
        if (r < 0) {
                log_error_errno(r, "control #%" PRIu64 ": cannot format a reply: %m", c->serial);
                control_connection_kill(c);
                return r;
        }
        r = control_queue(c, message, size);
        /* The formatted message is wiped whatever it held (see control_reply_secret()). */
        explicit_bzero(message, size);
        free(message);
        if (r < 0)
                control_connection_kill(c);
        return r;
}

int control_reply_secret(ControlConnection *c, char *message, size_t size) {
        if (!message)
                return -EINVAL;
        if (c->oneway) {
                explicit_bzero(message, size);
                free(message);
                return 0;
        }
        return control_send(c, 0, message, size);
}

int control_reply(ControlConnection *c, json_object *parameters, bool continues) {
        _cleanup_(json_object_unrefp) json_object *p = parameters;
        char *message = NULL;
        size_t size = 0;
        int r;

        if (c->oneway)
                return 0;
        r = varlink_reply_format(p, continues, &message, &size);
        return control_send(c, r, message, size);
}

int control_push(ControlConnection *c, json_object *parameters, bool continues) {
        int r;

        if (c->dead)
                return -ENOTCONN;
        r = control_reply(c, parameters, continues);
        if (r >= 0)
                r = control_connection_update(c);
        return r;
}

int control_error(ControlConnection *c, const char *error, json_object *parameters) {
        _cleanup_(json_object_unrefp) json_object *p = parameters;
        char *message = NULL;
        size_t size = 0;
        int r;

        if (c->oneway)
                return 0;
        r = varlink_error_format(error, p, &message, &size);
        return control_send(c, r, message, size);
}

int control_error_invalid_parameter(ControlConnection *c, const char *parameter) {
        char *message = NULL;
        size_t size = 0;
        int r;

        if (c->oneway)
                return 0;
        r = varlink_error_invalid_parameter_format(parameter, &message, &size);
        return control_send(c, r, message, size);
}

static int control_error_string(ControlConnection *c, const char *error, const char *key, const char *value) {
        json_object *p = json_object_new_object();

        if (!p || json_object_object_add(p, key, json_object_new_string(value)) < 0) {
                json_object_put(p);
                control_connection_kill(c);
                return -ENOMEM;
        }
        return control_error(c, error, p);
}

static bool control_interface_known(const ControlServer *server, const char *interface) {
        for (size_t i = 0; i < server->n_interfaces; i++)
                if (streq(server->interfaces[i], interface))
                        return true;
        return false;
}

/* io.secd.* on the control endpoint requires an administrator. */
static bool control_authorize(ControlConnection *c, const VarlinkCall *call) {
        Manager *m = c->manager;
        _cleanup_free_ char *msg = NULL, *uid = NULL, *pid = NULL, *meth = NULL, *error = NULL;

        if (manager_peer_is_admin(m, c->uid, c->gid, c->groups, c->n_groups))
                return true;

        msg = strdup_printf("control: %s refused for uid %u (pid %d): not an administrator.", call->method,
                        (unsigned) c->uid, (int) c->pid);
        uid = strdup_printf("UID=%u", (unsigned) c->uid);
        pid = strdup_printf("PID=%d", (int) c->pid);
        meth = strdup_printf("METHOD=%s", call->method);
        if (msg && uid && pid && meth)
                log_struct(LOG_NOTICE, msg, SECD_MESSAGE_CONTROL_DENIED, uid, pid, meth, NULL);
        if (asprintf(&error, "%s.PermissionDenied", call->interface) < 0) {
                control_connection_kill(c);
                return false;
        }
        (void) control_error(c, error, NULL);
        return false;
}

static int control_dispatch(ControlConnection *c, const char *message, size_t size) {
        _cleanup_(varlink_call_done) VarlinkCall call = {};
        const ControlMethod *method = NULL;
        int r;

        r = varlink_call_parse(message, size, &call);
        if (r == -EBADMSG) {
                log_debug("control #%" PRIu64 " (uid %u): malformed message, closing.", c->serial, (unsigned) c->uid);
                control_connection_kill(c);
                return r;
        }
        if (r < 0) {
                log_error_errno(r, "control #%" PRIu64 ": cannot parse a call: %m", c->serial);
                control_connection_kill(c);
                return r;
        }

        c->oneway = call.oneway;
        log_debug("control #%" PRIu64 " (uid %u): %s%s%s", c->serial, (unsigned) c->uid, call.method,
                  call.more ? " (more)" : "", call.oneway ? " (oneway)" : "");

        if (!control_interface_known(c->server, call.interface))
                return control_error_string(c, VARLINK_ERROR_INTERFACE_NOT_FOUND, "interface", call.interface);

        /* Authorisation comes before anything else about an io.secd.* method. */
        if (!streq(call.interface, VARLINK_SERVICE_INTERFACE) && c->server->authorize &&
            !c->server->authorize(c, &call))
                return c->dead ? -ENOTCONN : 0;

        for (size_t i = 0; i < c->server->n_methods; i++)
                if (streq(c->server->methods[i].method, call.method)) {
                        method = &c->server->methods[i];
                        break;
                }
        if (!method)
                return control_error_string(c, VARLINK_ERROR_METHOD_NOT_FOUND, "method", call.method);

        r = method->handler(c, &call);
        if (r < 0 && !c->dead) {
                /* Handlers answer what the client got wrong; this is our failure. */
                log_struct_errno(LOG_ERR, r, "control: a request failed inside secd; closing that connection.",
                                 SECD_MESSAGE_ERROR, NULL);
                control_connection_kill(c);
        }
        return r;
}

/* Re-arm the io and timer sources for the connection's state. */
static int control_connection_update(ControlConnection *c) {
        uint32_t events = 0;
        uint64_t deadline;
        bool pending = c->output_size > c->output_offset;
        int r;

        if (c->dead)
                return -ENOTCONN;
        if (c->eof && !pending) {
                control_connection_kill(c);
                return -ENOTCONN;
        }
        /* Backpressure: read the next request only when the last reply is out (followers: to see EOF). */
        if (!c->eof && !c->busy && (!pending || c->following))
                events |= EPOLLIN;
        if (pending)
                events |= EPOLLOUT;
        r = sd_event_source_set_io_events(c->io_source, events);
        if (r < 0)
                return r;

        deadline = control_deadline(c);
        if (deadline == UINT64_MAX)
                return sd_event_source_set_enabled(c->timer_source, SD_EVENT_OFF);
        r = sd_event_source_set_time(c->timer_source, deadline);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(c->timer_source, SD_EVENT_ONESHOT);
}

static void control_process(ControlConnection *c) {
        Manager *m = c->manager;
        const char *message;
        size_t size;

        while (!c->dead && !c->busy) {
                /* In-flight work finishes while stopping; nothing new starts once the reply is queued. */
                if (m->stopping && c->output_size > c->output_offset)
                        break;
                if (varlink_buffer_next(c->input, &message, &size) <= 0)
                        break;
                if (c->following) {
                        /* A follow never ends from our side; anything after it is a protocol error. */
                        log_debug("control #%" PRIu64 ": request after Audit.Tail follow, closing.", c->serial);
                        control_connection_kill(c);
                        break;
                }
                c->last_activity = now_usec(CLOCK_MONOTONIC);
                (void) control_dispatch(c, message, size);
        }
        if (varlink_buffer_partial(c->input) == 0)
                c->partial_since = 0;
        else if (c->partial_since == 0)
                c->partial_since = now_usec(CLOCK_MONOTONIC);
}

static int control_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        ControlConnection *c = userdata;
        Manager *m = c->manager;
        char buf[CONTROL_READ_CHUNK];
        int r;

        if (revents & EPOLLOUT) {
                r = control_flush(c);
                if (r < 0) {
                        log_debug_errno(r, "control #%" PRIu64 ": write failed: %m", c->serial);
                        control_connection_kill(c);
                }
        }

        if (!c->dead && (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->eof) {
                ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);

                if (n < 0) {
                        if (errno != EAGAIN && errno != EINTR) {
                                log_debug_errno(negative_errno(), "control #%" PRIu64 ": read failed: %m", c->serial);
                                control_connection_kill(c);
                        }
                } else if (n == 0) {
                        if (varlink_buffer_partial(c->input) > 0) {
                                log_debug("control #%" PRIu64 ": message without its NUL before EOF, closing.",
                                          c->serial);
                                control_connection_kill(c);
                        } else
                                c->eof = true;
                } else {
                        r = varlink_buffer_feed(c->input, buf, (size_t) n);
                        if (r == -EMSGSIZE) {
                                log_debug("control #%" PRIu64 " (uid %u): message over control_message_max, closing.",
                                          c->serial, (unsigned) c->uid);
                                control_connection_kill(c);
                        } else if (r < 0) {
                                log_error_errno(r, "control #%" PRIu64 ": cannot buffer input: %m", c->serial);
                                control_connection_kill(c);
                        }
                }
        } else if (!c->dead && (revents & (EPOLLHUP | EPOLLERR)) && !(revents & EPOLLOUT))
                control_connection_kill(c);

        if (!c->dead)
                control_process(c);

        /* Stopping: a connection with nothing in flight is done. */
        if (!c->dead && m->stopping && !c->busy && c->output_size == c->output_offset && c->partial_since == 0 &&
            !varlink_buffer_has_message(c->input))
                control_connection_kill(c);

        if (!c->dead && control_connection_update(c) < 0)
                control_connection_kill(c);
        if (c->dead)
                control_connection_free(c);
        return 0;
}

int control_connection_new(Manager *m, int fd) {
        return control_connection_new_server(m, &control_server, fd);
}

void control_resume(ControlConnection *c) {
        c->busy = false;
        if (!c->dead) {
                control_process(c);
                if (!c->dead && c->manager->stopping && c->output_size == c->output_offset &&
                    c->partial_since == 0 && !varlink_buffer_has_message(c->input))
                        control_connection_kill(c);
        }
        if (!c->dead && control_connection_update(c) < 0)
                control_connection_kill(c);
        if (c->dead)
                control_connection_free(c);
}

int control_connection_new_server(Manager *m, const ControlServer *server, int fd) {
        static uint64_t serial = 0;
        ControlConnection *c;
        int r;

        if (m->n_connections[server->endpoint] >= m->config.max_connections) {
                static uint64_t last_log = 0, suppressed = 0;
                uint64_t now = now_usec(CLOCK_MONOTONIC);

                /* Accept and close at once; log at most once a second so a flood cannot fill the journal. */
                safe_close(fd);
                if (now - last_log >= UINT64_C(1000000)) {
                        log_warning("%s: %" PRIu64 " connections open (max_connections), refusing new ones "
                                    "(%" PRIu64 " more refused since the last message).",
                                    server->name, m->n_connections[server->endpoint], suppressed);
                        last_log = now;
                        suppressed = 0;
                } else
                        suppressed++;
                return -EBUSY;
        }

        c = calloc(1, sizeof *c);
        if (!c) {
                safe_close(fd);
                return log_oom();
        }
        c->manager = m;
        c->server = server;
        c->fd = fd;
        c->serial = ++serial;
        c->last_activity = now_usec(CLOCK_MONOTONIC);
        c->next = m->connections;
        if (c->next)
                c->next->prev = c;
        m->connections = c;
        if (server->endpoint == POLICY_ENDPOINT_CONTROL)
                m->n_control_connections++;
        m->n_connections[server->endpoint]++;

        r = control_peer_credentials(c);
        if (r < 0) {
                log_warning_errno(r, "control: cannot read the peer credentials, closing: %m");
                goto fail;
        }
        r = varlink_buffer_new((size_t) m->config.control_message_max, &c->input);
        if (r < 0)
                goto fail;
        r = sd_event_add_io(m->event, &c->io_source, fd, EPOLLIN, control_on_io, c);
        if (r < 0)
                goto fail;
        r = sd_event_add_time(m->event, &c->timer_source, CLOCK_MONOTONIC, UINT64_MAX, 0, control_on_timer, c);
        if (r < 0)
                goto fail;
        r = control_connection_update(c);
        if (r < 0)
                goto fail;
        log_debug("control #%" PRIu64 ": connected, uid %u gid %u pid %d.", c->serial, (unsigned) c->uid,
                  (unsigned) c->gid, (int) c->pid);
        return 0;

fail:
        if (r != -ENOTCONN)
                log_debug_errno(r, "control: cannot set up a connection: %m");
        control_connection_free(c);
        return r;
}

void control_stop(Manager *m) {
        ControlConnection *c, *next;

        for (c = m->connections; c; c = next) {
                next = c->next;
                if (c->following || (!c->busy && c->output_size == c->output_offset && c->partial_since == 0 &&
                                     !varlink_buffer_has_message(c->input)))
                        control_connection_free(c);
        }
        control_drained_check(m);
}

void control_audit_broadcast(Manager *m, json_object *entry) {
        ControlConnection *c, *next;

        for (c = m->connections; c; c = next) {
                _cleanup_(json_object_unrefp) json_object *p = NULL, *entries = NULL;
                json_object *id_obj;

                next = c->next;
                if (!c->following || c->dead)
                        continue;
                if (json_object_object_get_ex(entry, "id", &id_obj)) {
                        int64_t id = json_object_get_int64(id_obj);

                        if (id <= c->follow_after_id)
                                continue;       /* already in its tail */
                        c->follow_after_id = id;
                }
                p = json_object_new_object();
                entries = json_object_new_array();
                if (!p || !entries || json_object_array_add(entries, json_object_get(entry)) < 0 ||
                    json_object_object_add(p, "entries", TAKE_PTR(entries)) < 0) {
                        log_oom();
                        continue;
                }
                if (control_push(c, TAKE_PTR(p), true) < 0)
                        control_connection_free(c);
        }
}
