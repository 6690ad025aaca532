/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The Varlink control client: one blocking connection, one call in flight,
 * every wait bounded by poll(). Framing and parsing are common/varlink's.
 */
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "secclient-internal.h"
#include "varlink.h"

#define CONTROL_TIMEOUT_MS_DEFAULT 30000u
#define CONTROL_READ_CHUNK 16384

struct secclient_control {
        int fd;
        unsigned timeout_ms;   /* 0: wait for ever */
        size_t message_max;
        VarlinkBuffer *input;
        bool streaming;        /* a call_more() is waiting for its last reply */
        bool broken;           /* a reply may still be on its way, or framing is lost */
};

DEFINE_TRIVIAL_CLEANUP_FUNC(json_object *, json_object_put);

static uint64_t now_ms(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

/* Milliseconds left until deadline for poll(); -1 without a deadline. */
static int remaining_ms(uint64_t deadline) {
        uint64_t n;

        if (deadline == UINT64_MAX)
                return -1;
        n = now_ms();
        if (n >= deadline)
                return 0;
        return (int) MIN(deadline - n, (uint64_t) INT_MAX);
}

static uint64_t deadline_after(unsigned timeout_ms) {
        return timeout_ms == 0 ? UINT64_MAX : now_ms() + timeout_ms;
}

static int control_new(int fd, secclient_control **ret) {
        _cleanup_free_ secclient_control *c = NULL;
        int r;

        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->fd = fd;
        c->timeout_ms = CONTROL_TIMEOUT_MS_DEFAULT;
        c->message_max = SECCLIENT_CONTROL_MESSAGE_MAX;
        r = varlink_buffer_new(c->message_max, &c->input);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(c);
        return 0;
}

static int fd_set_nonblock(int fd) {
        int flags = fcntl(fd, F_GETFL);

        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return negative_errno();
        return 0;
}

int control_adopt_fd(int fd, secclient_control **ret) {
        int r;

        if (fd < 0 || !ret)
                return fd < 0 ? -EBADF : -EINVAL;
        r = fd_set_nonblock(fd);
        if (r < 0)
                return r;
        return control_new(fd, ret);
}

int control_set_message_max(secclient_control *c, size_t message_max) {
        VarlinkBuffer *b;
        int r;

        if (!c || message_max < 2)
                return -EINVAL;
        if (c->streaming || varlink_buffer_partial(c->input) > 0 ||
            varlink_buffer_has_message(c->input))
                return -EBUSY;
        r = varlink_buffer_new(message_max, &b);
        if (r < 0)
                return r;
        varlink_buffer_free(c->input);
        c->input = b;
        c->message_max = message_max;
        return 0;
}

_public_ int secclient_control_open(const char *path, secclient_control **ret) {
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        socklen_t salen;
        size_t n;
        int r;

        if (!ret)
                return -EINVAL;
        if (!path)
                path = SECCLIENT_CONTROL_SOCKET_DEFAULT;
        n = strlen(path);
        if (n == 0)
                return -EINVAL;
        if (n >= sizeof sa.sun_path)
                return -ENAMETOOLONG;

        /* "@name" is a socket in the abstract namespace, as systemd spells it. */
        memcpy(sa.sun_path, path, n);
        if (path[0] == '@') {
                sa.sun_path[0] = '\0';
                salen = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + n);
        } else
                salen = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + n + 1);

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        /* A blocking connect: on AF_UNIX it completes at once unless the backlog is full. */
        if (connect(fd, (const struct sockaddr *) &sa, salen) < 0)
                return negative_errno();

        r = fd_set_nonblock(fd);
        if (r < 0)
                return r;
        r = control_new(fd, ret);
        if (r < 0)
                return r;
        TAKE_FD(fd);
        return 0;
}

_public_ secclient_control *secclient_control_free(secclient_control *c) {
        if (!c)
                return NULL;
        safe_close(c->fd);
        varlink_buffer_free(c->input);
        free(c);
        return NULL;
}

_public_ int secclient_control_set_timeout(secclient_control *c, unsigned timeout_ms) {
        if (!c)
                return -EINVAL;
        c->timeout_ms = timeout_ms;
        return 0;
}

_public_ int secclient_control_fd(const secclient_control *c) {
        if (!c)
                return -EINVAL;
        return c->fd;
}

/* NULL or "" means {}; anything but one JSON object is -EINVAL. */
static int parameters_parse(const char *text, json_object **ret) {
        json_tokener *tok;
        json_object *o;
        size_t len, end;

        if (isempty(text)) {
                o = json_object_new_object();
                if (!o)
                        return -ENOMEM;
                *ret = o;
                return 0;
        }

        len = strlen(text);
        if (len > INT_MAX)
                return -EMSGSIZE;
        tok = json_tokener_new_ex(VARLINK_JSON_DEPTH_MAX);
        if (!tok)
                return -ENOMEM;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS |
                                            JSON_TOKENER_VALIDATE_UTF8);
        o = json_tokener_parse_ex(tok, text, (int) len);
        end = json_tokener_get_parse_end(tok);
        json_tokener_free(tok);
        if (!o)
                return -EINVAL;
        if (!json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                return -EINVAL;
        }
        for (; end < len; end++)
                if (!strchr(" \t\r\n", text[end])) {
                        json_object_put(o);
                        return -EINVAL;
                }
        *ret = o;
        return 0;
}

static int send_all(secclient_control *c, const char *data, size_t size, uint64_t deadline) {
        while (size > 0) {
                struct pollfd p = { .fd = c->fd, .events = POLLOUT };
                ssize_t n;
                int r;

                r = poll(&p, 1, remaining_ms(deadline));
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (r == 0)
                        return -ETIMEDOUT;

                n = send(c->fd, data, size, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        if (errno == EPIPE || errno == ECONNRESET)
                                return -ECONNRESET;
                        return negative_errno();
                }
                data += n;
                size -= (size_t) n;
        }
        return 0;
}

/* Receive and parse the next reply; any failure but a timeout loses the framing. */
static int reply_read(secclient_control *c, uint64_t deadline, VarlinkReply *ret) {
        for (;;) {
                char buf[CONTROL_READ_CHUNK];
                const char *m;
                size_t size;
                ssize_t n;
                int r;

                r = varlink_buffer_next(c->input, &m, &size);
                if (r < 0)
                        return r;
                if (r > 0)
                        return varlink_reply_parse(m, size, ret);

                struct pollfd p = { .fd = c->fd, .events = POLLIN };
                r = poll(&p, 1, remaining_ms(deadline));
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (r == 0)
                        return -ETIMEDOUT;

                n = recv(c->fd, buf, sizeof buf, 0);
                if (n < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        if (errno == ECONNRESET || errno == EPIPE)
                                return -ECONNRESET;
                        return negative_errno();
                }
                /* EOF, with or without a truncated message before it. */
                if (n == 0)
                        return -ECONNRESET;

                r = varlink_buffer_feed(c->input, buf, (size_t) n);
                if (r < 0)
                        return r;
        }
}

static int json_text(json_object *o, char **ret) {
        const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                                  JSON_C_TO_STRING_NOSLASHESCAPE);
        char *d;

        if (!s)
                return -ENOMEM;
        d = strdup(s);
        if (!d)
                return -ENOMEM;
        *ret = d;
        return 0;
}

/* Hand a parsed reply to the caller: 0, or -EREMOTEIO with the error's name. */
static int reply_deliver(VarlinkReply *reply, char **ret_reply, char **ret_error) {
        _cleanup_free_ char *text = NULL, *error = NULL;
        int r;

        if (ret_reply) {
                r = json_text(reply->parameters, &text);
                if (r < 0)
                        return r;
        }
        if (reply->error && ret_error) {
                error = strdup(reply->error);
                if (!error)
                        return -ENOMEM;
        }

        if (ret_reply)
                *ret_reply = TAKE_PTR(text);
        if (reply->error) {
                if (ret_error)
                        *ret_error = TAKE_PTR(error);
                return -EREMOTEIO;
        }
        return 0;
}

static int call_send(secclient_control *c, const char *method, const char *parameters,
                     VarlinkCallFlags flags, uint64_t deadline) {
        _cleanup_(json_object_putp) json_object *p = NULL;
        _cleanup_free_ char *m = NULL;
        size_t size;
        int r;

        if (!c || !varlink_qualified_name_is_valid(method))
                return -EINVAL;
        if (c->broken)
                return -ENOTCONN;
        if (c->streaming)
                return -EBUSY;

        r = parameters_parse(parameters, &p);
        if (r < 0)
                return r;
        r = varlink_call_format(method, p, flags, &m, &size);
        if (r < 0)
                return r;
        if (size > SECCLIENT_CONTROL_MESSAGE_MAX)
                return -EMSGSIZE;

        r = send_all(c, m, size, deadline);
        if (r < 0) {
                /* Part of the call may be on the wire: the stream is no longer framed. */
                c->broken = true;
                return r;
        }
        return 0;
}

_public_ int secclient_control_call(secclient_control *c, const char *method, const char *parameters,
                                    char **ret_reply, char **ret_error) {
        _cleanup_(varlink_reply_done) VarlinkReply reply = {};
        uint64_t deadline;
        int r;

        if (!c)
                return -EINVAL;
        deadline = deadline_after(c->timeout_ms);

        r = call_send(c, method, parameters, 0, deadline);
        if (r < 0)
                return r;

        r = reply_read(c, deadline, &reply);
        if (r < 0) {
                /* A late reply would be taken for the next call's: give up on the connection. */
                c->broken = true;
                return r;
        }
        if (reply.continues) {
                /* We did not ask for "more". */
                c->broken = true;
                return -EBADMSG;
        }
        return reply_deliver(&reply, ret_reply, ret_error);
}

_public_ int secclient_control_call_more(secclient_control *c, const char *method, const char *parameters) {
        int r;

        if (!c)
                return -EINVAL;
        r = call_send(c, method, parameters, VARLINK_CALL_MORE, deadline_after(c->timeout_ms));
        if (r < 0)
                return r;
        c->streaming = true;
        return 0;
}

_public_ int secclient_control_next(secclient_control *c, int timeout_ms, char **ret_reply,
                                    char **ret_error, int *ret_continues) {
        _cleanup_(varlink_reply_done) VarlinkReply reply = {};
        int r;

        if (!c || timeout_ms < -1)
                return -EINVAL;
        if (c->broken)
                return -ENOTCONN;
        if (!c->streaming)
                return -EINVAL;

        /* A timeout here leaves the stream intact: the caller may simply wait again. */
        r = reply_read(c, deadline_after(timeout_ms < 0 ? c->timeout_ms : (unsigned) timeout_ms),
                       &reply);
        if (r == -ETIMEDOUT)
                return r;
        if (r < 0) {
                c->broken = true;
                c->streaming = false;
                return r;
        }

        c->streaming = reply.continues;
        r = reply_deliver(&reply, ret_reply, ret_error);
        if (ret_continues && (r >= 0 || r == -EREMOTEIO))
                *ret_continues = reply.continues;
        return r;
}
