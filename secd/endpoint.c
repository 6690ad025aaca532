/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>

#include "admission.h"
#include "control.h"
#include "enroll.h"
#include "data.h"
#include "endpoint.h"
#include "log.h"

/* The kernel caps it at net.core.somaxconn: a burst of clients must not get EAGAIN on a Unix socket. */
#define ENDPOINT_BACKLOG SOMAXCONN
#define ENDPOINT_ACCEPT_BATCH 32
#define ENDPOINT_ACCEPT_BACKOFF_USEC (UINT64_C(250) * 1000)

static const char *endpoint_socket_name(PolicyEndpoint kind) {
        switch (kind) {
        case POLICY_ENDPOINT_DATA:
                return ENDPOINT_DATA_SOCKET;
        case POLICY_ENDPOINT_ENROLL:
                return ENDPOINT_ENROLL_SOCKET;
        case POLICY_ENDPOINT_CONTROL:
                return ENDPOINT_CONTROL_SOCKET;
        default:
                return NULL;
        }
}

int endpoint_socket_path(const Manager *m, PolicyEndpoint kind, char **ret) {
        const char *name = endpoint_socket_name(kind);
        char *p;

        if (!name)
                return -EINVAL;
        if (asprintf(&p, "%s/%s", m->config.runtime_dir, name) < 0)
                return -ENOMEM;
        *ret = p;
        return 0;
}

Endpoint *endpoint_free(Endpoint *e) {
        if (!e)
                return NULL;
        sd_event_source_disable_unref(e->source);
        sd_event_source_disable_unref(e->backoff_source);
        if (e->path) {
                /* Only our own socket files; one passed by systemd belongs to its unit. */
                (void) unlink(e->path);
                free(e->path);
        }
        safe_close(e->fd);
        free(e->address);
        free(e);
        return NULL;
}

void endpoint_disable_all(Manager *m) {
        for (size_t i = 0; i < ELEMENTSOF(m->endpoints); i++) {
                Endpoint *e = m->endpoints[i];
                if (!e)
                        continue;
                (void) sd_event_source_set_enabled(e->source, SD_EVENT_OFF);
                (void) sd_event_source_set_enabled(e->backoff_source, SD_EVENT_OFF);
        }
}

static int endpoint_backoff_done(sd_event_source *s, uint64_t usec, void *userdata) {
        Endpoint *e = userdata;

        if (!e->manager->stopping)
                (void) sd_event_source_set_enabled(e->source, SD_EVENT_ON);
        return 0;
}

/* Out of file descriptors: the listening socket stays readable, so pause it instead of spinning. */
static void endpoint_backoff(Endpoint *e) {
        uint64_t when = now_usec(CLOCK_MONOTONIC) + ENDPOINT_ACCEPT_BACKOFF_USEC;
        int r;

        (void) sd_event_source_set_enabled(e->source, SD_EVENT_OFF);
        if (e->backoff_source) {
                (void) sd_event_source_set_time(e->backoff_source, when);
                (void) sd_event_source_set_enabled(e->backoff_source, SD_EVENT_ONESHOT);
                return;
        }
        r = sd_event_add_time(e->manager->event, &e->backoff_source, CLOCK_MONOTONIC, when, 0,
                              endpoint_backoff_done, e);
        if (r < 0) {
                log_error_errno(r, "Cannot pause the %s endpoint: %m", policy_endpoint_to_string(e->kind));
                (void) sd_event_source_set_enabled(e->source, SD_EVENT_ON);
        }
}

static int endpoint_on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Endpoint *e = userdata;
        Manager *m = e->manager;
        _cleanup_close_ int cfd = -EBADF;

        cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
                int r = negative_errno();
                if (r == -EAGAIN || r == -EINTR || r == -ECONNABORTED || r == -EPROTO || r == -EPERM)
                        return 0;
                if (r == -EMFILE || r == -ENFILE || r == -ENOBUFS || r == -ENOMEM) {
                        log_warning_errno(r, "%s: cannot accept, pausing: %m", policy_endpoint_to_string(e->kind));
                        endpoint_backoff(e);
                        return 0;
                }
                log_warning_errno(r, "%s: accept failed: %m", policy_endpoint_to_string(e->kind));
                return 0;
        }

        switch (e->kind) {
        case POLICY_ENDPOINT_DATA:
        case POLICY_ENDPOINT_TCP:
                /* mTLS, then admission by certificate and (Unix) the live process: data.c. */
                (void) data_connection_new(m, e->kind, TAKE_FD(cfd));
                return 0;
        case POLICY_ENDPOINT_ENROLL:
                /* io.secd.Enroll: admission per Issue call, on the live peer (enroll.c). */
                (void) enroll_connection_new(m, TAKE_FD(cfd));
                return 0;
        case POLICY_ENDPOINT_CONTROL:
                (void) control_connection_new(m, TAKE_FD(cfd));
                return 0;
        default:
                return 0;
        }
}

/* Several connections per wake-up, so a burst is taken in while earlier handshakes run. */
static int endpoint_on_accept_batch(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        for (unsigned i = 0; i < ENDPOINT_ACCEPT_BATCH; i++) {
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                int enabled = SD_EVENT_OFF;

                if (i > 0 && (poll(&pfd, 1, 0) <= 0 || sd_event_source_get_enabled(s, &enabled) < 0 ||
                              enabled == SD_EVENT_OFF))
                        break;
                (void) endpoint_on_accept(s, fd, revents, userdata);
        }
        return 0;
}

static int endpoint_attach(Manager *m, PolicyEndpoint kind, int fd, char *path, bool activated) {
        Endpoint *e;
        int r, flags;

        flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return log_error_errno(negative_errno(), "%s: cannot make the socket non-blocking: %m",
                                       policy_endpoint_to_string(kind));

        e = calloc(1, sizeof *e);
        if (!e)
                return log_oom();
        *e = (Endpoint) { .manager = m, .kind = kind, .fd = fd, .path = path, .activated = activated };
        if (kind != POLICY_ENDPOINT_TCP) {
                struct sockaddr_un sa = {};
                socklen_t len = sizeof sa;

                /* Only a filesystem socket has a path to show; an abstract one starts with NUL. */
                if (getsockname(fd, (struct sockaddr *) &sa, &len) >= 0 && len > offsetof(struct sockaddr_un, sun_path) &&
                    sa.sun_path[0] != '\0')
                        e->address = strndup(sa.sun_path, len - offsetof(struct sockaddr_un, sun_path));
        }

        r = sd_event_add_io(m->event, &e->source, fd, EPOLLIN, endpoint_on_accept_batch, e);
        if (r < 0) {
                e->fd = -EBADF;
                e->path = NULL;
                endpoint_free(e);
                return log_error_errno(r, "%s: cannot watch the socket: %m", policy_endpoint_to_string(kind));
        }
        m->endpoints[kind] = e;
        return 0;
}

static int endpoint_adopt(Manager *m, int n_fds, char **names) {
        for (int i = 0; i < n_fds; i++) {
                int fd = SD_LISTEN_FDS_START + i, r;
                const char *name = names && names[i] ? names[i] : "unknown";
                PolicyEndpoint kind = policy_endpoint_from_string(name);

                if (kind < 0)
                        return log_error_errno(-EINVAL,
                                               "Socket %d passed by the service manager has the unknown name \"%s\" "
                                               "(expected data, tcp, enroll or control; FileDescriptorName=).",
                                               fd, name);
                if (m->endpoints[kind])
                        return log_error_errno(-EINVAL, "More than one socket named \"%s\" was passed.", name);

                if (kind == POLICY_ENDPOINT_TCP)
                        r = sd_is_socket_inet(fd, AF_UNSPEC, SOCK_STREAM, 1, 0);
                else
                        r = sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0);
                if (r < 0)
                        return log_error_errno(r, "Cannot inspect the socket named \"%s\": %m", name);
                if (r == 0)
                        return log_error_errno(-EINVAL, "The socket named \"%s\" is not a listening %s stream socket.",
                                               name, kind == POLICY_ENDPOINT_TCP ? "TCP" : "AF_UNIX");

                r = endpoint_attach(m, kind, fd, NULL, true);
                if (r < 0)
                        return r;
                log_debug("Adopted the %s endpoint from the service manager (fd %d).", name, fd);
        }
        return 0;
}

/* 1 if something accepts connections on path, 0 if the file is stale or absent. */
static int endpoint_socket_in_use(const char *path, const struct sockaddr_un *sa, socklen_t salen) {
        _cleanup_close_ int fd = -EBADF;

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        if (connect(fd, (const struct sockaddr *) sa, salen) >= 0)
                return 1;
        if (errno == ECONNREFUSED || errno == ENOENT)
                return 0;
        /* EAGAIN: a listener with a full backlog is still a listener. */
        if (errno == EAGAIN)
                return 1;
        return negative_errno();
}

static int endpoint_bind_unix(Manager *m, PolicyEndpoint kind) {
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct stat st;
        socklen_t salen;
        mode_t mode, old_umask;
        int r;

        r = endpoint_socket_path(m, kind, &path);
        if (r < 0)
                return log_oom();
        if (strlen(path) >= sizeof sa.sun_path)
                return log_error_errno(-ENAMETOOLONG, "Socket path %s is too long (at most %zu bytes).", path,
                                       sizeof sa.sun_path - 1);
        memcpy(sa.sun_path, path, strlen(path) + 1);
        salen = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);

        if (lstat(path, &st) >= 0) {
                if (!S_ISSOCK(st.st_mode))
                        return log_error_errno(-EEXIST, "%s exists and is not a socket; not touching it.", path);
                r = endpoint_socket_in_use(path, &sa, salen);
                if (r < 0)
                        return log_error_errno(r, "Cannot check whether %s is in use: %m", path);
                if (r > 0)
                        return log_error_errno(-EADDRINUSE, "Another secd is listening on %s.", path);
                log_info("Replacing the stale socket %s.", path);
                if (unlink(path) < 0 && errno != ENOENT)
                        return log_error_errno(negative_errno(), "Cannot remove the stale socket %s: %m", path);
        }

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return log_error_errno(negative_errno(), "Cannot create a socket: %m");

        /* Bind owner-only, then open up: nobody can connect before the mode is right. */
        old_umask = umask(0177);
        r = bind(fd, (const struct sockaddr *) &sa, salen) < 0 ? negative_errno() : 0;
        umask(old_umask);
        if (r < 0)
                return log_error_errno(r, "Cannot bind %s: %m", path);

        if (kind == POLICY_ENDPOINT_CONTROL) {
                if (m->dev)
                        mode = 0600;
                else {
                        mode = 0660;
                        if (chown(path, (uid_t) -1, m->admin_gid) < 0) {
                                r = log_error_errno(negative_errno(), "Cannot give %s to group %s: %m", path,
                                                    m->config.admin_group);
                                (void) unlink(path);
                                return r;
                        }
                }
        } else
                mode = 0666;
        if (chmod(path, mode) < 0) {
                r = log_error_errno(negative_errno(), "Cannot set the mode of %s: %m", path);
                (void) unlink(path);
                return r;
        }

        if (listen(fd, ENDPOINT_BACKLOG) < 0) {
                r = log_error_errno(negative_errno(), "Cannot listen on %s: %m", path);
                (void) unlink(path);
                return r;
        }

        r = endpoint_attach(m, kind, fd, path, false);
        if (r < 0) {
                (void) unlink(path);
                return r;
        }
        TAKE_FD(fd);
        log_debug("Listening on %s (%s endpoint, mode %04o).", path, policy_endpoint_to_string(kind), mode);
        TAKE_PTR(path);
        return 0;
}

static int endpoint_bind_tcp(Manager *m) {
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_storage ss;
        socklen_t len;
        int r, one = 1;

        r = config_parse_inet_address(m->config.tcp_listen, &ss, &len);
        if (r < 0)
                return log_error_errno(r, "tcp_listen=%s is not a valid address.", m->config.tcp_listen);

        fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return log_error_errno(negative_errno(), "Cannot create a TCP socket: %m");
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (ss.ss_family == AF_INET6)
                (void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        if (bind(fd, (struct sockaddr *) &ss, len) < 0)
                return log_error_errno(negative_errno(), "Cannot bind %s: %m", m->config.tcp_listen);
        if (listen(fd, ENDPOINT_BACKLOG) < 0)
                return log_error_errno(negative_errno(), "Cannot listen on %s: %m", m->config.tcp_listen);

        r = endpoint_attach(m, POLICY_ENDPOINT_TCP, fd, NULL, false);
        if (r < 0)
                return r;
        TAKE_FD(fd);
        log_debug("Listening on %s (tcp endpoint).", m->config.tcp_listen);
        return 0;
}

int endpoint_setup_all(Manager *m) {
        char **names = NULL;
        int n, r;

        n = sd_listen_fds_with_names(true, &names);
        if (n < 0)
                return log_error_errno(n, "Cannot get the sockets passed by the service manager: %m");
        r = endpoint_adopt(m, n, names);
        for (int i = 0; names && i < n; i++)
                free(names[i]);
        free(names);
        if (r < 0) {
                /* Close what we did not adopt, so nothing leaks into children. */
                for (int i = 0; i < n; i++) {
                        bool adopted = false;
                        for (size_t k = 0; k < ELEMENTSOF(m->endpoints); k++)
                                if (m->endpoints[k] && m->endpoints[k]->fd == SD_LISTEN_FDS_START + i)
                                        adopted = true;
                        if (!adopted)
                                (void) close(SD_LISTEN_FDS_START + i);
                }
                return r;
        }

        if (!m->endpoints[POLICY_ENDPOINT_DATA] || !m->endpoints[POLICY_ENDPOINT_ENROLL] ||
            !m->endpoints[POLICY_ENDPOINT_CONTROL]) {
                r = mkdir_p(m->config.runtime_dir, 0755);
                if (r < 0)
                        return log_error_errno(r, "Cannot create the runtime directory %s: %m", m->config.runtime_dir);
        }

        static const PolicyEndpoint local[] = { POLICY_ENDPOINT_DATA, POLICY_ENDPOINT_ENROLL, POLICY_ENDPOINT_CONTROL };
        for (size_t i = 0; i < ELEMENTSOF(local); i++) {
                if (m->endpoints[local[i]])
                        continue;
                r = endpoint_bind_unix(m, local[i]);
                if (r < 0)
                        return r;
        }
        if (!m->endpoints[POLICY_ENDPOINT_TCP] && m->config.tcp_listen) {
                r = endpoint_bind_tcp(m);
                if (r < 0)
                        return r;
        }
        return 0;
}
