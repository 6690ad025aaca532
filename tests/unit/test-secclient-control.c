/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The control client against a tiny scripted Varlink server running in a
 * thread on the other end of a socketpair (or on a socket in a temp dir).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "secclient-internal.h"
#include "varlink.h"

#define RAW(lit) { (lit), sizeof(lit) - 1 }

typedef struct Chunk {
        const char *data;
        size_t size;
} Chunk;

typedef struct Server {
        int fd;              /* server end (socketpair) or listening socket */
        bool listening;      /* accept() one connection on fd first */
        Chunk replies[4];    /* replies[i] is written after the i-th call arrives */
        bool close_after;    /* hang up after the last scripted reply */
        /* What the server saw. */
        unsigned n_calls;
        char method[VARLINK_NAME_MAX + 1];
        bool more;
        char *parameters;
        pthread_t thread;
} Server;

static int write_all(int fd, const char *p, size_t n) {
        while (n > 0) {
                ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

static void *server_run(void *userdata) {
        Server *s = userdata;
        _cleanup_(varlink_buffer_freep) VarlinkBuffer *b = NULL;
        int fd = s->fd;

        if (s->listening) {
                fd = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0)
                        return NULL;
        }
        if (varlink_buffer_new(0, &b) < 0)
                goto out;

        for (;;) {
                char buf[4096];
                const char *m;
                size_t size;
                ssize_t n;

                while (varlink_buffer_next(b, &m, &size) > 0) {
                        VarlinkCall c = {};
                        unsigned i = s->n_calls++;

                        if (varlink_call_parse(m, size, &c) == 0) {
                                snprintf(s->method, sizeof s->method, "%s", c.method);
                                s->more = c.more;
                                free(s->parameters);
                                s->parameters = strdup(json_object_to_json_string_ext(
                                        c.parameters, JSON_C_TO_STRING_PLAIN));
                                varlink_call_done(&c);
                        }
                        if (i < ELEMENTSOF(s->replies) && s->replies[i].data)
                                (void) write_all(fd, s->replies[i].data, s->replies[i].size);
                        if (s->close_after &&
                            (i + 1 >= ELEMENTSOF(s->replies) || !s->replies[i + 1].data))
                                goto out;
                }

                /* Read until the client hangs up. */
                n = recv(fd, buf, sizeof buf, 0);
                if (n <= 0)
                        break;
                if (varlink_buffer_feed(b, buf, (size_t) n) < 0)
                        break;
        }
out:
        close(fd);
        if (s->listening)
                close(s->fd);
        return NULL;
}

/* Start the server on one end of a socketpair; the client adopts the other. */
static secclient_control *server_start(Server *s) {
        secclient_control *c = NULL;
        int sv[2];

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        s->fd = sv[0];
        assert_int_equal(pthread_create(&s->thread, NULL, server_run, s), 0);
        assert_int_equal(control_adopt_fd(sv[1], &c), 0);
        return c;
}

/* Free the client (the server sees EOF) and wait for the server. */
static void server_finish(Server *s, secclient_control *c) {
        assert_null(secclient_control_free(c));
        assert_int_equal(pthread_join(s->thread, NULL), 0);
        free(s->parameters);
        s->parameters = NULL;
}

static void test_call_reply(void **state) {
        Server s = {
                .replies = {
                        RAW("{\"parameters\":{\"version\":\"0.1.0\",\"uptime_usec\":5}}\0"),
                        RAW("{\"parameters\":{}}\0"),
                        RAW("{\"parameters\":{\"x\":1}}\0"),
                },
        };
        secclient_control *c = server_start(&s);
        _cleanup_free_ char *reply = NULL, *error = NULL;

        assert_int_equal(secclient_control_call(c, "io.secd.Status.Get", NULL, &reply, &error), 0);
        assert_string_equal(reply, "{\"version\":\"0.1.0\",\"uptime_usec\":5}");
        assert_null(error);
        assert_string_equal(s.method, "io.secd.Status.Get");
        assert_false(s.more);
        assert_string_equal(s.parameters, "{}");

        free(reply);
        reply = NULL;
        assert_int_equal(secclient_control_call(c, "io.secd.Policy.Remove", " {\"id\": 12} \n", &reply, NULL), 0);
        assert_string_equal(reply, "{}");
        assert_string_equal(s.parameters, "{\"id\":12}");

        /* The caller may not want the reply at all. */
        assert_int_equal(secclient_control_call(c, "io.secd.Service.Reload", "{}", NULL, NULL), 0);
        server_finish(&s, c);
        assert_int_equal(s.n_calls, 3);
}

static void test_error_reply(void **state) {
        Server s = {
                .replies = {
                        RAW("{\"error\":\"io.secd.Policy.NoSuchRule\",\"parameters\":{\"id\":7}}\0"),
                        RAW("{\"error\":\"org.varlink.service.MethodNotFound\"}\0"),
                        RAW("{\"parameters\":{\"ok\":true}}\0"),
                },
        };
        secclient_control *c = server_start(&s);
        _cleanup_free_ char *reply = NULL, *error = NULL;

        assert_int_equal(secclient_control_call(c, "io.secd.Policy.Remove", "{\"id\":7}", &reply, &error),
                         -EREMOTEIO);
        assert_string_equal(error, "io.secd.Policy.NoSuchRule");
        assert_string_equal(reply, "{\"id\":7}");

        /* The connection survives a Varlink error. */
        free(reply);
        free(error);
        reply = error = NULL;
        assert_int_equal(secclient_control_call(c, "io.secd.Nope.Nope", NULL, &reply, &error), -EREMOTEIO);
        assert_string_equal(error, VARLINK_ERROR_METHOD_NOT_FOUND);
        assert_string_equal(reply, "{}");

        free(reply);
        reply = NULL;
        assert_int_equal(secclient_control_call(c, "io.secd.Status.Get", NULL, &reply, NULL), 0);
        assert_string_equal(reply, "{\"ok\":true}");
        server_finish(&s, c);
}

static void test_more_stream(void **state) {
        Server s = {
                .replies = {
                        /* Three replies, the first two in one write. */
                        RAW("{\"parameters\":{\"entries\":[1]},\"continues\":true}\0"
                            "{\"parameters\":{\"entries\":[2]},\"continues\":true}\0"
                            "{\"parameters\":{\"entries\":[3]}}\0"),
                        RAW("{\"parameters\":{\"entries\":[]},\"continues\":true}\0"
                            "{\"error\":\"io.secd.Audit.PermissionDenied\"}\0"),
                },
        };
        secclient_control *c = server_start(&s);
        char *reply = NULL, *error = NULL;
        int continues = -1;

        assert_int_equal(secclient_control_call_more(c, "io.secd.Audit.Tail", "{\"limit\":3}"), 0);
        /* One call at a time. */
        assert_int_equal(secclient_control_call(c, "io.secd.Status.Get", NULL, NULL, NULL), -EBUSY);

        for (int i = 1; i <= 3; i++) {
                char expect[64];

                assert_int_equal(secclient_control_next(c, -1, &reply, &error, &continues), 0);
                snprintf(expect, sizeof expect, "{\"entries\":[%d]}", i);
                assert_string_equal(reply, expect);
                assert_int_equal(continues, i < 3);
                free(reply);
                reply = NULL;
        }
        assert_true(s.more);
        assert_string_equal(s.method, "io.secd.Audit.Tail");
        /* The stream is over. */
        assert_int_equal(secclient_control_next(c, -1, &reply, &error, &continues), -EINVAL);

        /* A stream that ends with an error. */
        assert_int_equal(secclient_control_call_more(c, "io.secd.Audit.Tail", NULL), 0);
        assert_int_equal(secclient_control_next(c, 1000, &reply, &error, &continues), 0);
        assert_int_equal(continues, 1);
        free(reply);
        reply = NULL;
        assert_int_equal(secclient_control_next(c, 1000, &reply, &error, &continues), -EREMOTEIO);
        assert_int_equal(continues, 0);
        assert_string_equal(error, "io.secd.Audit.PermissionDenied");
        free(reply);
        free(error);
        server_finish(&s, c);
}

static void test_timeout(void **state) {
        Server s = {}; /* never answers */
        secclient_control *c = server_start(&s);
        char *reply = NULL;

        assert_int_equal(secclient_control_set_timeout(c, 100), 0);
        assert_int_equal(secclient_control_call(c, "io.secd.Status.Get", NULL, &reply, NULL), -ETIMEDOUT);
        assert_null(reply);
        /* A late reply would be mistaken for the next one: the connection is done. */
        assert_int_equal(secclient_control_call(c, "io.secd.Status.Get", NULL, &reply, NULL), -ENOTCONN);
        server_finish(&s, c);
}

static void test_stream_timeout_keeps_stream(void **state) {
        Server s = {
                .replies = {
                        RAW("{\"parameters\":{\"entries\":[]},\"continues\":true}\0"),
                },
        };
        secclient_control *c = server_start(&s);
        char *reply = NULL;
        int continues = -1;

        assert_int_equal(secclient_control_call_more(c, "io.secd.Audit.Tail", NULL), 0);
        assert_int_equal(secclient_control_next(c, 1000, &reply, NULL, &continues), 0);
        assert_int_equal(continues, 1);
        free(reply);
        reply = NULL;
        /* Nothing new: time out, and the stream is still there to wait on. */
        assert_int_equal(secclient_control_next(c, 50, &reply, NULL, &continues), -ETIMEDOUT);
        assert_int_equal(secclient_control_next(c, 50, &reply, NULL, &continues), -ETIMEDOUT);
        assert_null(reply);
        server_finish(&s, c);
}

static void test_hangup(void **state) {
        Server s = { .close_after = true };
        secclient_control *c = server_start(&s);

        assert_int_equal(secclient_control_call(c, "io.secd.Status.Get", NULL, NULL, NULL), -ECONNRESET);
        assert_int_equal(secclient_control_call(c, "io.secd.Status.Get", NULL, NULL, NULL), -ENOTCONN);
        server_finish(&s, c);

        /* Hang-up in the middle of a reply (no NUL at EOF). */
        Server t = { .replies = { RAW("{\"parameters\":{}}") }, .close_after = true };
        c = server_start(&t);
        assert_int_equal(secclient_control_call(c, "io.secd.Status.Get", NULL, NULL, NULL), -ECONNRESET);
        server_finish(&t, c);
}

static void test_bad_replies(void **state) {
        static const Chunk bad[] = {
                RAW("not json\0"),
                RAW("[]\0"),
                RAW("{\"parameters\":[]}\0"),
                RAW("{\"error\":\"nodots\"}\0"),
                RAW("{\"parameters\":{},\"bogus\":1}\0"),
                RAW("{\"parameters\":{\"s\":\"\xff\"}}\0"),
                RAW("\0"),
                /* "continues" on a call without "more" */
                RAW("{\"parameters\":{},\"continues\":true}\0"),
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                Server s = { .replies = { bad[i] } };
                secclient_control *c = server_start(&s);
                char *reply = NULL, *error = NULL;

                assert_int_equal(secclient_control_call(c, "io.secd.Status.Get", NULL, &reply, &error), -EBADMSG);
                assert_null(reply);
                assert_null(error);
                server_finish(&s, c);
        }

        /* Over the reply size limit (a small one, to keep the test quick). */
        char big[300];
        memcpy(big, "{\"parameters\":{\"s\":\"", 20);
        memset(big + 20, 'x', sizeof big - 20);
        Server s = { .replies = { { big, sizeof big } } };
        secclient_control *c = server_start(&s);
        assert_int_equal(control_set_message_max(c, 128), 0);
        assert_int_equal(secclient_control_call(c, "io.secd.Status.Get", NULL, NULL, NULL), -EMSGSIZE);
        server_finish(&s, c);
}

static void test_invalid_arguments(void **state) {
        Server s = {};
        secclient_control *c = server_start(&s);

        assert_int_equal(secclient_control_call(c, "nodots", NULL, NULL, NULL), -EINVAL);
        assert_int_equal(secclient_control_call(c, NULL, NULL, NULL, NULL), -EINVAL);
        assert_int_equal(secclient_control_call(c, "io.secd.Status.get", NULL, NULL, NULL), -EINVAL);
        assert_int_equal(secclient_control_call(c, "io.secd.Status.Get", "[]", NULL, NULL), -EINVAL);
        assert_int_equal(secclient_control_call(c, "io.secd.Status.Get", "{", NULL, NULL), -EINVAL);
        assert_int_equal(secclient_control_call(c, "io.secd.Status.Get", "{} x", NULL, NULL), -EINVAL);
        assert_int_equal(secclient_control_call(c, "io.secd.Status.Get", "{}{}", NULL, NULL), -EINVAL);
        assert_int_equal(secclient_control_call_more(c, "x", NULL), -EINVAL);
        assert_int_equal(secclient_control_next(c, -1, NULL, NULL, NULL), -EINVAL);
        assert_int_equal(secclient_control_call(NULL, "a.b.C", NULL, NULL, NULL), -EINVAL);
        assert_int_equal(secclient_control_set_timeout(NULL, 1), -EINVAL);
        assert_int_equal(secclient_control_fd(NULL), -EINVAL);
        assert_true(secclient_control_fd(c) >= 0);
        assert_null(secclient_control_free(NULL));
        server_finish(&s, c);
        assert_int_equal(s.n_calls, 0);
}

static char *temp_dir(void) {
        char *d = strdup("/tmp/test-secclient-XXXXXX");

        assert_non_null(d);
        assert_non_null(mkdtemp(d));
        return d;
}

static void test_open_path(void **state) {
        _cleanup_free_ char *dir = temp_dir(), *path = NULL, *reply = NULL;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        secclient_control *c = NULL;
        Server s = {
                .listening = true,
                .replies = { RAW("{\"parameters\":{\"pong\":1}}\0") },
        };
        int fd;

        assert_true(asprintf(&path, "%s/control.sock", dir) > 0);

        /* No socket there. */
        assert_int_equal(secclient_control_open(path, &c), -ENOENT);
        assert_null(c);

        /* A socket nobody listens on. */
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof sa), 0);
        assert_int_equal(secclient_control_open(path, &c), -ECONNREFUSED);

        /* Listening: a real round trip. */
        assert_int_equal(listen(fd, 1), 0);
        s.fd = fd;
        assert_int_equal(pthread_create(&s.thread, NULL, server_run, &s), 0);
        assert_int_equal(secclient_control_open(path, &c), 0);
        assert_int_equal(secclient_control_call(c, "org.varlink.service.GetInfo", NULL, &reply, NULL), 0);
        assert_string_equal(reply, "{\"pong\":1}");
        assert_string_equal(s.method, "org.varlink.service.GetInfo");
        /* SOCK_CLOEXEC */
        assert_true(fcntl(secclient_control_fd(c), F_GETFD) & FD_CLOEXEC);
        server_finish(&s, c);

        assert_int_equal(unlink(path), 0);
        assert_int_equal(rmdir(dir), 0);

        /* Paths that cannot be socket addresses. */
        char longpath[200];
        memset(longpath, 'a', sizeof longpath - 1);
        longpath[0] = '/';
        longpath[sizeof longpath - 1] = '\0';
        assert_int_equal(secclient_control_open(longpath, &c), -ENAMETOOLONG);
        assert_int_equal(secclient_control_open("", &c), -EINVAL);
        assert_int_equal(secclient_control_open(path, NULL), -EINVAL);
}

static void test_strerror_version(void **state) {
        assert_string_equal(secclient_version(), SECD_VERSION);
        assert_non_null(secclient_strerror(-ECONNREFUSED));
        assert_non_null(strstr(secclient_strerror(-ECONNREFUSED), "secd"));
        assert_non_null(secclient_strerror(-EREMOTEIO));
        assert_non_null(secclient_strerror(-ENOSPC));
        assert_non_null(secclient_strerror(-99999));
        assert_non_null(secclient_strerror(0));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_call_reply),
                cmocka_unit_test(test_error_reply),
                cmocka_unit_test(test_more_stream),
                cmocka_unit_test(test_timeout),
                cmocka_unit_test(test_stream_timeout_keeps_stream),
                cmocka_unit_test(test_hangup),
                cmocka_unit_test(test_bad_replies),
                cmocka_unit_test(test_invalid_arguments),
                cmocka_unit_test(test_open_path),
                cmocka_unit_test(test_strerror_version),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
