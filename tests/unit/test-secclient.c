/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libsecclient's mTLS client: the pure helpers (endpoints, backoff, renewal,
 * error mapping, the credential bundle), the hand-over over socketpairs, and
 * connect/ping/pipelining/ERROR/reconnect/resumption/enrollment against an
 * in-test GnuTLS server and a scripted Varlink enroll server running in a
 * thread, with a CA and certificates made at test time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <json-c/json.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "secclient-internal.h"
#include "varlink.h"

#define T_TYPE_ECHO 0x10   /* test server: held until 3 arrived, answered in reverse order */
#define T_TYPE_UNKNOWN 0x7e
#define T_TYPE_BIG 0x11      /* test server: replies with as many bytes as the uint32 payload says */
#define T_TYPE_HUGE 0x12     /* test server: replies with a header announcing 17 MiB, then nothing */

/* ---------------------------------------------------------------------- */
/* Certificates made at test time */

typedef struct Pki {
        gnutls_x509_privkey_t ca_key;
        gnutls_x509_crt_t ca_crt;
        char *ca_pem;
} Pki;

static char *datum_string(gnutls_datum_t *d) {
        char *s = strndup((const char *) d->data, d->size);
        assert_non_null(s);
        gnutls_free(d->data);
        return s;
}

static char *crt_pem(gnutls_x509_crt_t crt) {
        gnutls_datum_t d;
        assert_int_equal(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &d), 0);
        return datum_string(&d);
}

static char *key_pem(gnutls_x509_privkey_t key) {
        gnutls_datum_t d;
        assert_int_equal(
                gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN, &d), 0);
        return datum_string(&d);
}

static gnutls_x509_privkey_t key_new(void) {
        gnutls_x509_privkey_t k;
        assert_int_equal(gnutls_x509_privkey_init(&k), 0);
        assert_int_equal(gnutls_x509_privkey_generate2(k, GNUTLS_PK_EDDSA_ED25519, 256, 0, NULL, 0), 0);
        return k;
}

static void crt_common(gnutls_x509_crt_t crt, const char *cn, time_t nb, time_t na) {
        static unsigned char serial = 1;
        unsigned char s[16] = { 0x01 };

        s[15] = serial++;
        assert_int_equal(gnutls_x509_crt_set_version(crt, 3), 0);
        assert_int_equal(gnutls_x509_crt_set_serial(crt, s, sizeof s), 0);
        assert_int_equal(gnutls_x509_crt_set_activation_time(crt, nb), 0);
        assert_int_equal(gnutls_x509_crt_set_expiration_time(crt, na), 0);
        assert_int_equal(gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, cn, strlen(cn)),
                         0);
}

static void pki_init(Pki *p, const char *cn) {
        time_t now = time(NULL);

        p->ca_key = key_new();
        assert_int_equal(gnutls_x509_crt_init(&p->ca_crt), 0);
        crt_common(p->ca_crt, cn, now - 60, now + 86400);
        assert_int_equal(gnutls_x509_crt_set_key(p->ca_crt, p->ca_key), 0);
        assert_int_equal(gnutls_x509_crt_set_basic_constraints(p->ca_crt, 1, -1), 0);
        assert_int_equal(
                gnutls_x509_crt_set_key_usage(p->ca_crt, GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN), 0);
        assert_int_equal(gnutls_x509_crt_sign2(p->ca_crt, p->ca_crt, p->ca_key, GNUTLS_DIG_SHA512, 0), 0);
        p->ca_pem = crt_pem(p->ca_crt);
}

static void pki_done(Pki *p) {
        gnutls_x509_crt_deinit(p->ca_crt);
        gnutls_x509_privkey_deinit(p->ca_key);
        free(p->ca_pem);
}

/* A certificate for key (or for the key of crq) with one key purpose. */
static char *pki_issue(Pki *p, gnutls_x509_privkey_t key, gnutls_x509_crq_t crq, const char *purpose,
                       time_t nb, time_t na) {
        gnutls_x509_crt_t crt;
        char *pem;

        assert_int_equal(gnutls_x509_crt_init(&crt), 0);
        if (crq)
                assert_int_equal(gnutls_x509_crt_set_crq(crt, crq), 0);
        crt_common(crt, "test", nb, na);
        if (key)
                assert_int_equal(gnutls_x509_crt_set_key(crt, key), 0);
        assert_int_equal(gnutls_x509_crt_set_basic_constraints(crt, 0, -1), 0);
        assert_int_equal(gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE), 0);
        assert_int_equal(gnutls_x509_crt_set_key_purpose_oid(crt, purpose, 1), 0);
        assert_int_equal(gnutls_x509_crt_sign2(crt, p->ca_crt, p->ca_key, GNUTLS_DIG_SHA512, 0), 0);
        pem = crt_pem(crt);
        gnutls_x509_crt_deinit(crt);
        return pem;
}

typedef struct Creds {
        char *cert, *key;
} Creds;

static Creds pki_creds(Pki *p, const char *purpose, time_t nb, time_t na) {
        gnutls_x509_privkey_t k = key_new();
        Creds c = { .cert = pki_issue(p, k, NULL, purpose, nb, na), .key = key_pem(k) };

        gnutls_x509_privkey_deinit(k);
        return c;
}

static void creds_done(Creds *c) {
        free(c->cert);
        free(c->key);
}

/* ---------------------------------------------------------------------- */
/* The in-test mTLS server */

typedef enum ServerMode {
        SERVER_NORMAL,
        SERVER_REFUSE,          /* ERROR NOT_ADMITTED (request id 0) after the handshake, then close */
        SERVER_DROP_AFTER_ONE,  /* close each connection after its second frame (probe + one) */
        SERVER_IDLE_AFTER_ONE,  /* the same, with ERROR IDLE_TIMEOUT (request id 0) before the close */
        SERVER_REVOKE_AFTER_ONE, /* the same, with ERROR CERT_REVOKED */
} ServerMode;

typedef struct Server {
        char dir[64];
        char path[128];
        int listen_fd;
        ServerMode mode;
        gnutls_certificate_credentials_t cred;
        gnutls_datum_t ticket_key;
        pthread_t thread;
        int stop_pipe[2];
        unsigned n_connections;
        unsigned n_resumed;
} Server;

/* gnutls_record_send() sends at most one record per call. */
static int send_all_tls(gnutls_session_t s, const uint8_t *p, size_t size) {
        while (size > 0) {
                ssize_t n = gnutls_record_send(s, p, size);

                if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
                        continue;
                if (n <= 0)
                        return -1;
                p += n;
                size -= (size_t) n;
        }
        return 0;
}

static int write_frame(gnutls_session_t s, uint8_t type, uint32_t id, const void *p, uint32_t len) {
        uint8_t *buf;
        size_t size;
        int r;

        if (frame_build(type, id, p, len, &buf, &size) < 0)
                return -1;
        r = send_all_tls(s, buf, size);
        free(buf);
        return r;
}

static int write_error(gnutls_session_t s, uint32_t id, uint16_t code, const char *msg) {
        uint8_t *buf;
        size_t size;
        ssize_t n;

        if (frame_build_error(id, code, msg, &buf, &size) < 0)
                return -1;
        n = gnutls_record_send(s, buf, size);
        free(buf);
        return n == (ssize_t) size ? 0 : -1;
}

static void serve_connection(Server *srv, int fd) {
        gnutls_session_t s;
        FrameReader *reader = NULL;
        uint32_t held_ids[3];
        unsigned n_held = 0, n_frames = 0;
        uint8_t buf[4096];
        int g;

        assert_int_equal(gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NO_SIGNAL), 0);
        assert_int_equal(gnutls_priority_set_direct(s, "NORMAL:-VERS-ALL:+VERS-TLS1.3", NULL), 0);
        assert_int_equal(gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, srv->cred), 0);
        gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
        assert_int_equal(gnutls_session_ticket_enable_server(s, &srv->ticket_key), 0);
        gnutls_transport_set_int(s, fd);
        gnutls_handshake_set_timeout(s, 5000);
        gnutls_record_set_timeout(s, 5000);

        do
                g = gnutls_handshake(s);
        while (g < 0 && !gnutls_error_is_fatal(g));
        if (g < 0)
                goto out;
        srv->n_connections++;
        if (gnutls_session_is_resumed(s))
                srv->n_resumed++;
        else {
                unsigned status = 0;
                if (gnutls_certificate_verify_peers2(s, &status) < 0 || status != 0) {
                        (void) write_error(s, 0, FRAME_ERROR_NOT_ADMITTED, "bad client certificate");
                        goto out;
                }
        }

        if (srv->mode == SERVER_REFUSE) {
                (void) write_error(s, 0, FRAME_ERROR_NOT_ADMITTED, "not admitted: policy");
                goto out;
        }

        assert_int_equal(frame_reader_new(FRAME_PAYLOAD_MAX_DEFAULT, &reader), 0);
        for (;;) {
                ssize_t n = gnutls_record_recv(s, buf, sizeof buf);
                size_t off = 0;

                if (n <= 0)
                        goto out;
                while (off < (size_t) n) {
                        FrameHeader h;
                        const uint8_t *payload;
                        size_t used;
                        int r = frame_reader_feed(reader, buf + off, (size_t) n - off, &used);

                        off += used;
                        if (r < 0)
                                goto out;
                        if (r == 0)
                                continue;
                        frame_reader_frame(reader, &h, &payload);
                        n_frames++;
                        if (h.type == FRAME_PING)
                                (void) write_frame(s, FRAME_PONG, h.request_id, payload, h.length);
                        else if (h.type == T_TYPE_ECHO) {
                                held_ids[n_held++] = h.request_id;
                                if (n_held == 3) {
                                        for (unsigned i = 3; i > 0; i--) {
                                                uint32_t id = held_ids[i - 1];
                                                (void) write_frame(s, T_TYPE_ECHO | FRAME_REPLY_BIT, id, &id,
                                                                   sizeof id);
                                        }
                                        n_held = 0;
                                }
                        } else if (h.type == T_TYPE_BIG && h.length == 4) {
                                uint32_t want;
                                uint8_t *big;

                                memcpy(&want, payload, 4);
                                big = malloc(want ? want : 1);
                                assert_non_null(big);
                                for (uint32_t i = 0; i < want; i++)
                                        big[i] = (uint8_t) i;
                                (void) write_frame(s, T_TYPE_BIG | FRAME_REPLY_BIT, h.request_id, big, want);
                                free(big);
                        } else if (h.type == T_TYPE_HUGE) {
                                uint8_t hdr[FRAME_HEADER_SIZE];

                                frame_header_write(hdr, T_TYPE_HUGE | FRAME_REPLY_BIT, h.request_id,
                                                   FRAME_PAYLOAD_MAX_HARD + 1);
                                (void) gnutls_record_send(s, hdr, sizeof hdr);
                        } else
                                (void) write_error(s, h.request_id, FRAME_ERROR_UNKNOWN_TYPE,
                                                   "unknown frame type");
                        frame_reader_reset(reader);
                        if (srv->mode == SERVER_DROP_AFTER_ONE && n_frames == 2)
                                goto out;
                        if (srv->mode == SERVER_REVOKE_AFTER_ONE && n_frames == 2) {
                                (void) write_error(s, 0, FRAME_ERROR_CERT_REVOKED, "certificate revoked");
                                goto out;
                        }
                        if (srv->mode == SERVER_IDLE_AFTER_ONE && n_frames == 2) {
                                (void) write_error(s, 0, FRAME_ERROR_IDLE_TIMEOUT, "idle timeout");
                                goto out;
                        }
                }
        }
out:
        frame_reader_free(reader);
        gnutls_deinit(s);
}

static void *server_run(void *userdata) {
        Server *srv = userdata;

        for (unsigned i = 0; i < 64; i++) {
                struct pollfd p[2] = { { .fd = srv->listen_fd, .events = POLLIN },
                                       { .fd = srv->stop_pipe[0], .events = POLLIN } };
                int fd;

                if (poll(p, 2, 10000) <= 0 || (p[1].revents & POLLIN))
                        break;
                fd = accept4(srv->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0)
                        break;
                serve_connection(srv, fd);
                close(fd);
        }
        return NULL;
}

static void server_start_family(Server *srv, Pki *pki, ServerMode mode, const char *server_purpose,
                                int family) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        gnutls_datum_t ca = { (unsigned char *) pki->ca_pem, (unsigned) strlen(pki->ca_pem) };
        time_t now = time(NULL);
        Creds sc = pki_creds(pki, server_purpose, now - 60, now + 3600);
        gnutls_datum_t cd = { (unsigned char *) sc.cert, (unsigned) strlen(sc.cert) };
        gnutls_datum_t kd = { (unsigned char *) sc.key, (unsigned) strlen(sc.key) };

        *srv = (Server) { .mode = mode };
        strcpy(srv->dir, "/tmp/test-secclient-XXXXXX");
        assert_non_null(mkdtemp(srv->dir));
        snprintf(srv->path, sizeof srv->path, "%s/secd.sock", srv->dir);

        assert_int_equal(gnutls_certificate_allocate_credentials(&srv->cred), 0);
        assert_true(gnutls_certificate_set_x509_trust_mem(srv->cred, &ca, GNUTLS_X509_FMT_PEM) > 0);
        assert_int_equal(gnutls_certificate_set_x509_key_mem(srv->cred, &cd, &kd, GNUTLS_X509_FMT_PEM), 0);
        assert_int_equal(gnutls_session_ticket_key_generate(&srv->ticket_key), 0);
        creds_done(&sc);

        srv->listen_fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(srv->listen_fd >= 0);
        if (family == AF_INET) {
                struct sockaddr_in in = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
                socklen_t len = sizeof in;

                assert_int_equal(bind(srv->listen_fd, (struct sockaddr *) &in, sizeof in), 0);
                assert_int_equal(getsockname(srv->listen_fd, (struct sockaddr *) &in, &len), 0);
                snprintf(srv->path, sizeof srv->path, "127.0.0.1:%u", ntohs(in.sin_port));
        } else if (family == AF_INET6) {
                struct sockaddr_in6 in6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
                socklen_t len = sizeof in6;

                assert_int_equal(bind(srv->listen_fd, (struct sockaddr *) &in6, sizeof in6), 0);
                assert_int_equal(getsockname(srv->listen_fd, (struct sockaddr *) &in6, &len), 0);
                snprintf(srv->path, sizeof srv->path, "[::1]:%u", ntohs(in6.sin6_port));
        } else {
                strcpy(sa.sun_path, srv->path);
                assert_int_equal(bind(srv->listen_fd, (struct sockaddr *) &sa, sizeof sa), 0);
        }
        assert_int_equal(listen(srv->listen_fd, 8), 0);
        assert_int_equal(pipe2(srv->stop_pipe, O_CLOEXEC), 0);
        assert_int_equal(pthread_create(&srv->thread, NULL, server_run, srv), 0);
}

static void server_start(Server *srv, Pki *pki, ServerMode mode, const char *server_purpose) {
        server_start_family(srv, pki, mode, server_purpose, AF_UNIX);
}

static void server_stop(Server *srv) {
        assert_int_equal(write(srv->stop_pipe[1], "x", 1), 1);
        assert_int_equal(pthread_join(srv->thread, NULL), 0);
        close(srv->stop_pipe[0]);
        close(srv->stop_pipe[1]);
        close(srv->listen_fd);
        if (srv->path[0] == '/')
                unlink(srv->path);
        rmdir(srv->dir);
        gnutls_certificate_free_credentials(srv->cred);
        gnutls_memset(srv->ticket_key.data, 0, srv->ticket_key.size);
        gnutls_free(srv->ticket_key.data);
}

static secclient *client_for(Server *srv, Pki *pki, Creds *cc) {
        secclient *c = NULL;

        assert_int_equal(secclient_new(&c), 0);
        assert_int_equal(secclient_set_endpoint(c, srv->path), 0);
        assert_int_equal(secclient_set_timeout(c, 5000), 0);
        assert_int_equal(secclient_load_credentials(c, pki->ca_pem, cc->cert, cc->key), 0);
        return c;
}

/* ---------------------------------------------------------------------- */
/* Pure helpers */

static void test_endpoint_parse(void **state) {
        SecclientEndpoint e = {};

        assert_int_equal(endpoint_parse("/run/secd/secd.sock", &e), 0);
        assert_true(e.unix_socket);
        assert_string_equal(e.path, "/run/secd/secd.sock");
        endpoint_done(&e);

        assert_int_equal(endpoint_parse("./secd.sock", &e), 0);
        assert_true(e.unix_socket);
        endpoint_done(&e);

        assert_int_equal(endpoint_parse("@secd-test", &e), 0);
        assert_true(e.unix_socket);
        endpoint_done(&e);

        assert_int_equal(endpoint_parse("127.0.0.1:8443", &e), 0);
        assert_false(e.unix_socket);
        assert_string_equal(e.host, "127.0.0.1");
        assert_string_equal(e.port, "8443");
        endpoint_done(&e);

        assert_int_equal(endpoint_parse("secd.example.org:1", &e), 0);
        assert_string_equal(e.host, "secd.example.org");
        assert_string_equal(e.port, "1");
        endpoint_done(&e);

        assert_int_equal(endpoint_parse("[::1]:65535", &e), 0);
        assert_false(e.unix_socket);
        assert_string_equal(e.host, "::1");
        assert_string_equal(e.port, "65535");
        endpoint_done(&e);

        static const char *const bad[] = {
                "", "@", "host", "host:", ":80", "host:0", "host:65536", "host:-1", "host:+80",
                "host:80x", "host: 80", "::1:80", "[::1]", "[::1]80", "[]:80", "[host]:80",
                "[::1]:", "a:b:c", "ho st:80", "host:123456",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                e = (SecclientEndpoint) {};
                if (endpoint_parse(bad[i], &e) != -EINVAL)
                        fail_msg("endpoint \"%s\" accepted", bad[i]);
        }

        char longpath[200];
        memset(longpath, 'a', sizeof longpath - 1);
        longpath[0] = '/';
        longpath[sizeof longpath - 1] = '\0';
        assert_int_equal(endpoint_parse(longpath, &e), -ENAMETOOLONG);
        assert_int_equal(endpoint_parse(NULL, &e), -EINVAL);
}

static void test_backoff_schedule(void **state) {
        unsigned prev_max = 0;

        assert_int_equal(backoff_delay_ms(0, 12345), 0);
        for (unsigned a = 1; a < 20; a++) {
                unsigned base = SECCLIENT_RECONNECT_BASE_MS;
                unsigned d;

                for (unsigned i = 1; i < a && base < SECCLIENT_RECONNECT_CAP_MS; i++)
                        base *= 2;
                if (base > SECCLIENT_RECONNECT_CAP_MS)
                        base = SECCLIENT_RECONNECT_CAP_MS;
                /* Jitter in [base/2, base], both ends reachable. */
                assert_int_equal(backoff_delay_ms(a, 0), base / 2);
                assert_int_equal(backoff_delay_ms(a, base / 2), base);
                for (uint32_t rnd = 0; rnd < 100000; rnd += 997) {
                        d = backoff_delay_ms(a, rnd);
                        assert_true(d >= base / 2 && d <= base);
                }
                d = backoff_delay_ms(a, UINT32_MAX);
                assert_true(d <= SECCLIENT_RECONNECT_CAP_MS);
                assert_true(base >= prev_max);
                prev_max = base;
        }
        assert_int_equal(backoff_delay_ms(1, 0), 50);
        assert_int_equal(backoff_delay_ms(2, 0), 100);
        assert_int_equal(backoff_delay_ms(3, 0), 200);
        assert_int_equal(backoff_delay_ms(100, 0), SECCLIENT_RECONNECT_CAP_MS / 2);
        assert_int_equal(backoff_delay_ms(UINT32_MAX, UINT32_MAX) <= SECCLIENT_RECONNECT_CAP_MS, 1);

        /* The whole schedule is bounded: attempts × cap. */
        unsigned total = 0;
        for (unsigned a = 0; a < SECCLIENT_RECONNECT_ATTEMPTS; a++)
                total += backoff_delay_ms(a, UINT32_MAX);
        assert_true(total <= SECCLIENT_RECONNECT_ATTEMPTS * SECCLIENT_RECONNECT_CAP_MS);
}

static void test_renew_due(void **state) {
        const uint64_t h = 3600ull * 1000000ull;

        assert_false(renew_due(1000, 1000, 1000 + h));
        assert_false(renew_due(1000 + h / 2 - 1, 1000, 1000 + h));
        assert_true(renew_due(1000 + h / 2, 1000, 1000 + h));
        assert_true(renew_due(1000 + h, 1000, 1000 + h));
        assert_true(renew_due(1000 + 2 * h, 1000, 1000 + h));
        assert_false(renew_due(0, 1000, 1000 + h));           /* clock before not_before */
        assert_true(renew_due(5, 10, 10));                     /* empty validity */
        assert_true(renew_due(5, 10, 9));
        assert_false(renew_due(UINT64_MAX / 2 - 1, 0, UINT64_MAX));
        assert_true(renew_due(UINT64_MAX / 2, 0, UINT64_MAX));
}

static void test_error_mapping(void **state) {
        assert_int_equal(enroll_error_to_errno("io.secd.Enroll.NotAdmitted"), -EACCES);
        assert_int_equal(enroll_error_to_errno("io.secd.Enroll.RateLimited"), -EAGAIN);
        assert_int_equal(enroll_error_to_errno("io.secd.Enroll.InvalidRequest"), -EPROTO);
        assert_int_equal(enroll_error_to_errno("org.varlink.service.MethodNotFound"), -EPROTO);
        assert_int_equal(enroll_error_to_errno(NULL), -EPROTO);

        assert_int_equal(frame_error_to_errno(FRAME_ERROR_NOT_ADMITTED), -EACCES);
        assert_int_equal(frame_error_to_errno(FRAME_ERROR_CERT_REVOKED), -EKEYREVOKED);
        assert_int_equal(frame_error_to_errno(FRAME_ERROR_CERT_EXPIRED), -EKEYEXPIRED);
        assert_int_equal(frame_error_to_errno(FRAME_ERROR_SHUTTING_DOWN), -ESHUTDOWN);
        assert_int_equal(frame_error_to_errno(FRAME_ERROR_IDLE_TIMEOUT), -ETIMEDOUT);
        assert_int_equal(frame_error_to_errno(FRAME_ERROR_TOO_LARGE), -EMSGSIZE);
        assert_int_equal(frame_error_to_errno(FRAME_ERROR_UNKNOWN_TYPE), -EOPNOTSUPP);
        assert_int_equal(frame_error_to_errno(FRAME_ERROR_BAD_FRAME), -EBADMSG);
        assert_int_equal(frame_error_to_errno(FRAME_ERROR_BAD_PAYLOAD), -EBADMSG);
        assert_int_equal(frame_error_to_errno(FRAME_ERROR_INTERNAL), -EPROTO);
        assert_int_equal(frame_error_to_errno(9999), -EPROTO);

        /* secclient_error_parse() over the codec's own ERROR frames. */
        uint8_t *buf;
        size_t size;
        uint16_t code;
        char *msg;
        assert_int_equal(frame_build_error(7, FRAME_ERROR_NOT_ADMITTED, "no", &buf, &size), 0);
        assert_int_equal(
                secclient_error_parse(buf + FRAME_HEADER_SIZE, size - FRAME_HEADER_SIZE, &code, &msg), 0);
        assert_int_equal(code, FRAME_ERROR_NOT_ADMITTED);
        assert_string_equal(msg, "no");
        free(msg);
        assert_int_not_equal(secclient_error_parse(buf + FRAME_HEADER_SIZE, 1, &code, &msg), 0);
        free(buf);
        assert_int_equal(secclient_error_parse(NULL, 5, &code, NULL), -EINVAL);
}

/* ---------------------------------------------------------------------- */
/* Credential bundle and hand-over */

static void test_bundle(void **state) {
        char *json, *ca, *cert, *key;
        size_t len;

        assert_int_equal(creds_bundle_format("CA\n\"x\"\\", "CERT\n", "KEY\t\x01", &json, &len), 0);
        assert_int_equal(strlen(json), len);
        /* json-c agrees it is JSON. */
        json_object *o = json_tokener_parse(json);
        assert_non_null(o);
        assert_string_equal(json_object_get_string(json_object_object_get(o, "client_key")), "KEY\t\x01");
        json_object_put(o);

        assert_int_equal(creds_bundle_parse(json, len, &ca, &cert, &key), 0);
        assert_string_equal(ca, "CA\n\"x\"\\");
        assert_string_equal(cert, "CERT\n");
        assert_string_equal(key, "KEY\t\x01");
        erase_and_free(json);
        free(ca);
        free(cert);
        erase_and_free(key);

        /* Key order does not matter; whitespace is allowed; \/ and \u00xx decode. */
        static const char ok[] =
                " { \"client_key\" : \"k\\u0041\" , \"ca_cert\":\"c\\/a\", \"client_cert\":\"x\" } \n";
        assert_int_equal(creds_bundle_parse(ok, strlen(ok), &ca, &cert, &key), 0);
        assert_string_equal(key, "kA");
        assert_string_equal(ca, "c/a");
        free(ca);
        free(cert);
        erase_and_free(key);

        static const char *const bad[] = {
                "",
                "{}",
                "[]",
                "{\"ca_cert\":\"a\",\"client_cert\":\"b\"}",
                "{\"ca_cert\":\"a\",\"client_cert\":\"b\",\"client_key\":\"c\",\"x\":\"d\"}",
                "{\"ca_cert\":\"a\",\"ca_cert\":\"b\",\"client_key\":\"c\"}",
                "{\"ca_cert\":\"a\",\"client_cert\":\"b\",\"client_key\":\"c\"",
                "{\"ca_cert\":\"a\",\"client_cert\":\"b\",\"client_key\":\"c\"}x",
                "{\"ca_cert\":\"a\",\"client_cert\":\"b\",\"client_key\":\"\"}",
                "{\"ca_cert\":\"a\",\"client_cert\":\"b\",\"client_key\":1}",
                "{\"ca_cert\":\"a\",\"client_cert\":\"b\",\"client_key\":\"c\\u0000\"}",
                "{\"ca_cert\":\"a\",\"client_cert\":\"b\",\"client_key\":\"c\\u00e9\"}",
                "{\"ca_cert\":\"a\",\"client_cert\":\"b\",\"client_key\":\"c\\q\"}",
                "{\"ca_cert\":\"a\",\"client_cert\":\"b\",\"client_key\":\"c\n\"}",
                "{\"ca_cert\":\"a\",\"client_cert\":\"b\",\"client_key\":\"c\xc3\xa9\"}",
                "{\"ca_cert\":\"a\",\"client_cert\":\"b\",\"client_key\":\"c\\u12\"}",
                "{\"ca_cert\":\"a\" \"client_cert\":\"b\",\"client_key\":\"c\"}",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                ca = cert = key = NULL;
                if (creds_bundle_parse(bad[i], strlen(bad[i]), &ca, &cert, &key) >= 0)
                        fail_msg("bundle %zu accepted: %s", i, bad[i]);
                assert_null(ca);
                assert_null(key);
        }
        /* Embedded NUL inside the buffer. */
        static const char nul[] = "{\"ca_cert\":\"a\",\"client_cert\":\"b\",\"client_key\":\"c\"}\0";
        assert_int_equal(creds_bundle_parse(nul, sizeof nul - 1, &ca, &cert, &key), -EBADMSG);

        char *big = malloc(SECCLIENT_CREDS_BUNDLE_MAX + 1);
        assert_non_null(big);
        memset(big, ' ', SECCLIENT_CREDS_BUNDLE_MAX);
        big[SECCLIENT_CREDS_BUNDLE_MAX] = '\0';
        assert_int_equal(creds_bundle_parse(big, SECCLIENT_CREDS_BUNDLE_MAX + 1, &ca, &cert, &key),
                         -EMSGSIZE);
        assert_int_equal(creds_bundle_format(big, "b", "c", &json, &len), -EMSGSIZE);
        free(big);
}

static void creds_round_trip(int type) {
        Pki pki;
        time_t now = time(NULL);
        Creds cc;
        secclient *a = NULL, *b = NULL;
        int sv[2];

        pki_init(&pki, "test CA");
        cc = pki_creds(&pki, GNUTLS_KP_TLS_WWW_CLIENT, now - 60, now + 3600);

        assert_int_equal(secclient_new(&a), 0);
        assert_int_equal(secclient_new(&b), 0);
        assert_int_equal(secclient_creds_send(a, 0), -ENOKEY);
        assert_int_equal(secclient_load_credentials(a, pki.ca_pem, cc.cert, cc.key), 0);
        assert_int_equal(secclient_cert_expiry(a), (uint64_t) (now + 3600) * 1000000u);
        assert_int_equal(secclient_cert_expiry(b), 0);

        assert_int_equal(socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(secclient_creds_send(a, sv[0]), 0);
        assert_int_equal(secclient_creds_recv(b, sv[1]), 0);
        assert_int_equal(secclient_cert_expiry(b), secclient_cert_expiry(a));

        /* And on to a third client from the received one. */
        secclient *d = NULL;
        assert_int_equal(secclient_new(&d), 0);
        assert_int_equal(secclient_creds_send(b, sv[1]), 0);
        assert_int_equal(secclient_creds_recv(d, sv[0]), 0);
        assert_int_equal(secclient_cert_expiry(d), secclient_cert_expiry(a));
        secclient_free(d);

        close(sv[0]);
        close(sv[1]);
        secclient_free(a);
        secclient_free(b);
        creds_done(&cc);
        pki_done(&pki);
}

static void test_creds_seqpacket(void **state) {
        creds_round_trip(SOCK_SEQPACKET);
}

static void test_creds_stream(void **state) {
        creds_round_trip(SOCK_STREAM);
}

static void send_raw(int fd, const void *p, size_t n) {
        assert_int_equal(send(fd, p, n, MSG_NOSIGNAL), (ssize_t) n);
}

static void prefix(uint8_t out[4], uint32_t len) {
        out[0] = (uint8_t) (len >> 24);
        out[1] = (uint8_t) (len >> 16);
        out[2] = (uint8_t) (len >> 8);
        out[3] = (uint8_t) len;
}

static void test_creds_bad(void **state) {
        secclient *c = NULL;
        int sv[2];
        uint8_t hdr[4];
        static const char garbage[] =
                "{\"ca_cert\":\"not a certificate\",\"client_cert\":\"x\",\"client_key\":\"y\"}";

        assert_int_equal(secclient_new(&c), 0);
        assert_int_equal(secclient_set_timeout(c, 2000), 0);
        assert_int_equal(secclient_creds_recv(c, -1), -EBADF);

        /* Stream: truncated (EOF in the middle). */
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        prefix(hdr, 100);
        send_raw(sv[0], hdr, 4);
        send_raw(sv[0], "{\"ca", 4);
        close(sv[0]);
        assert_int_equal(secclient_creds_recv(c, sv[1]), -EBADMSG);
        close(sv[1]);

        /* Stream: oversized length, rejected before reading the rest. */
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        prefix(hdr, SECCLIENT_CREDS_BUNDLE_MAX + 1);
        send_raw(sv[0], hdr, 4);
        assert_int_equal(secclient_creds_recv(c, sv[1]), -EMSGSIZE);
        close(sv[0]);
        close(sv[1]);

        /* Stream: garbage PEM in a well-formed bundle. */
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        prefix(hdr, sizeof garbage - 1);
        send_raw(sv[0], hdr, 4);
        send_raw(sv[0], garbage, sizeof garbage - 1);
        assert_int_equal(secclient_creds_recv(c, sv[1]), -EBADMSG);
        close(sv[0]);
        close(sv[1]);

        /* Stream: not JSON at all. */
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        prefix(hdr, 5);
        send_raw(sv[0], hdr, 4);
        send_raw(sv[0], "hello", 5);
        assert_int_equal(secclient_creds_recv(c, sv[1]), -EBADMSG);
        close(sv[0]);
        close(sv[1]);

        /* Stream: nothing arrives: the timeout. */
        assert_int_equal(secclient_set_timeout(c, 100), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(secclient_creds_recv(c, sv[1]), -ETIMEDOUT);
        close(sv[0]);
        close(sv[1]);
        assert_int_equal(secclient_set_timeout(c, 2000), 0);

        /* Seqpacket: a message bigger than the maximum. */
        size_t big_len = SECCLIENT_CREDS_BUNDLE_MAX + 100;
        uint8_t *big = calloc(1, big_len);
        int sndbuf = 4 * 1024 * 1024;
        assert_non_null(big);
        prefix(big, (uint32_t) (big_len - 4));
        assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
        (void) setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
        send_raw(sv[0], big, big_len);
        assert_int_equal(secclient_creds_recv(c, sv[1]), -EMSGSIZE);
        free(big);

        /* Seqpacket: the prefix disagrees with the message (truncated bundle). */
        uint8_t msg[4 + 10];
        prefix(msg, 20);
        memcpy(msg + 4, "{\"ca_cert\"", 10);
        send_raw(sv[0], msg, sizeof msg);
        assert_int_equal(secclient_creds_recv(c, sv[1]), -EBADMSG);

        /* Seqpacket: shorter than a prefix. */
        send_raw(sv[0], "ab", 2);
        assert_int_equal(secclient_creds_recv(c, sv[1]), -EBADMSG);
        close(sv[0]);
        close(sv[1]);

        /* Datagram sockets are refused. */
        assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(secclient_creds_recv(c, sv[1]), -ESOCKTNOSUPPORT);
        close(sv[0]);
        close(sv[1]);

        assert_int_equal(secclient_cert_expiry(c), 0);
        secclient_free(c);
}

static void test_load_credentials_bad(void **state) {
        Pki pki, other;
        time_t now = time(NULL);
        Creds cc, oc;
        secclient *c = NULL;

        pki_init(&pki, "test CA");
        pki_init(&other, "other CA");
        cc = pki_creds(&pki, GNUTLS_KP_TLS_WWW_CLIENT, now - 60, now + 3600);
        oc = pki_creds(&other, GNUTLS_KP_TLS_WWW_CLIENT, now - 60, now + 3600);

        assert_int_equal(secclient_new(&c), 0);
        assert_int_equal(secclient_load_credentials(c, NULL, cc.cert, cc.key), -EINVAL);
        assert_int_equal(secclient_load_credentials(c, "garbage", cc.cert, cc.key), -EBADMSG);
        assert_int_equal(secclient_load_credentials(c, pki.ca_pem, "garbage", cc.key), -EBADMSG);
        /* A key that is not the certificate's. */
        assert_true(secclient_load_credentials(c, pki.ca_pem, cc.cert, oc.key) < 0);
        assert_int_equal(secclient_cert_expiry(c), 0);
        assert_int_equal(secclient_load_credentials(c, pki.ca_pem, cc.cert, cc.key), 0);

        secclient_free(c);
        creds_done(&cc);
        creds_done(&oc);
        pki_done(&pki);
        pki_done(&other);
}

/* ---------------------------------------------------------------------- */
/* Against the in-test mTLS server */

static void test_connect_ping_pipeline(void **state) {
        Pki pki;
        Server srv;
        time_t now = time(NULL);
        Creds cc;
        secclient *c;
        uint32_t ids[3];
        bool seen[3] = {};

        pki_init(&pki, "test CA");
        server_start(&srv, &pki, SERVER_NORMAL, GNUTLS_KP_TLS_WWW_SERVER);
        cc = pki_creds(&pki, GNUTLS_KP_TLS_WWW_CLIENT, now - 60, now + 3600);
        c = client_for(&srv, &pki, &cc);

        assert_int_equal(secclient_ping(c, "x", 1), -ENOTCONN);
        assert_int_equal(secclient_connect(c), 0);
        assert_int_equal(client_session_resumed(c), 0);
        assert_int_equal(secclient_ping(c, "hello", 5), 0);
        assert_int_equal(secclient_ping(c, NULL, 0), 0);
        char big[1025] = {};
        assert_int_equal(secclient_ping(c, big, sizeof big), -EMSGSIZE);
        assert_int_equal(secclient_ping(c, big, 1024), 0);

        /* Three pipelined requests; the server answers in reverse order. */
        for (unsigned i = 0; i < 3; i++)
                assert_int_equal(secclient_send(c, T_TYPE_ECHO, "r", 1, &ids[i]), 0);
        assert_true(ids[0] != ids[1] && ids[1] != ids[2]);
        /* A ping in the middle: the echo replies are kept for recv. */
        assert_int_equal(secclient_ping(c, "mid", 3), 0);
        for (unsigned i = 0; i < 3; i++) {
                uint8_t type;
                uint32_t id, echoed;
                void *payload;
                size_t len;

                assert_int_equal(secclient_recv(c, &type, &id, &payload, &len), 0);
                assert_int_equal(type, T_TYPE_ECHO | FRAME_REPLY_BIT);
                assert_int_equal(len, 4);
                memcpy(&echoed, payload, 4);
                assert_int_equal(echoed, id);
                if (i == 0)
                        assert_int_equal(id, ids[2]);
                for (unsigned j = 0; j < 3; j++)
                        if (ids[j] == id) {
                                assert_false(seen[j]);
                                seen[j] = true;
                        }
                free(payload);
        }
        assert_true(seen[0] && seen[1] && seen[2]);

        /* An unknown type: ERROR through recv, the connection lives. */
        {
                uint8_t type;
                uint32_t id, sent;
                void *payload;
                size_t len;
                uint16_t code;
                char *msg;

                assert_int_equal(secclient_send(c, T_TYPE_UNKNOWN, NULL, 0, &sent), 0);
                assert_int_equal(secclient_recv(c, &type, &id, &payload, &len), 0);
                assert_int_equal(type, FRAME_ERROR);
                assert_int_equal(id, sent);
                assert_int_equal(secclient_error_parse(payload, len, &code, &msg), 0);
                assert_int_equal(code, FRAME_ERROR_UNKNOWN_TYPE);
                assert_string_equal(msg, "unknown frame type");
                assert_string_equal(secclient_last_error(c), "unknown frame type");
                free(msg);
                free(payload);
                assert_int_equal(secclient_ping(c, "alive", 5), 0);
        }
        assert_int_equal(secclient_send(c, FRAME_PONG, NULL, 0, NULL), -EINVAL);

        /* A reply over many TLS records, and an empty one. */
        static const uint32_t sizes[] = { 1u << 20, 0, 70000 };
        for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
                uint8_t type;
                uint32_t id, sent;
                void *payload;
                size_t len;

                assert_int_equal(secclient_send(c, T_TYPE_BIG, &sizes[i], 4, &sent), 0);
                assert_int_equal(secclient_recv(c, &type, &id, &payload, &len), 0);
                assert_int_equal(type, T_TYPE_BIG | FRAME_REPLY_BIT);
                assert_int_equal(id, sent);
                assert_int_equal(len, sizes[i]);
                assert_non_null(payload);
                for (size_t k = 0; k < len; k += 4099)
                        assert_int_equal(((uint8_t *) payload)[k], (uint8_t) k);
                free(payload);
        }

        /* A reply announcing more than the hard cap: refused before allocating, connection closed. */
        {
                uint8_t type;
                uint32_t id;
                void *payload;
                size_t len;

                assert_int_equal(secclient_send(c, T_TYPE_HUGE, NULL, 0, NULL), 0);
                assert_int_equal(secclient_recv(c, &type, &id, &payload, &len), -EMSGSIZE);
                assert_int_equal(secclient_recv(c, &type, &id, &payload, &len), -ENOTCONN);
                /* ping reconnects (resuming) */
                assert_int_equal(secclient_ping(c, "back", 4), 0);
                assert_int_equal(client_session_resumed(c), 1);
        }

        /* Disconnect, reconnect: the session is resumed from the ticket. */
        secclient_disconnect(c);
        assert_int_equal(secclient_ping(c, "x", 1), -ENOTCONN);
        assert_int_equal(secclient_connect(c), 0);
        assert_int_equal(client_session_resumed(c), 1);
        assert_int_equal(secclient_ping(c, "again", 5), 0);
        secclient_free(c);

        server_stop(&srv);
        assert_int_equal(srv.n_connections, 3);
        assert_int_equal(srv.n_resumed, 2);
        creds_done(&cc);
        pki_done(&pki);
}

static bool ipv6_loopback_works(void) {
        struct sockaddr_in6 in6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
        int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool ok = fd >= 0 && bind(fd, (struct sockaddr *) &in6, sizeof in6) == 0;

        if (fd >= 0)
                close(fd);
        return ok;
}

static void test_connect_tcp(void **state) {
        Pki pki;
        Server srv;
        time_t now = time(NULL);
        Creds cc;
        secclient *c;
        int families[] = { AF_INET, AF_INET6 };

        pki_init(&pki, "test CA");
        cc = pki_creds(&pki, GNUTLS_KP_TLS_WWW_CLIENT, now - 60, now + 3600);
        for (size_t i = 0; i < ELEMENTSOF(families); i++) {
                if (families[i] == AF_INET6 && !ipv6_loopback_works()) {
                        print_message("no IPv6 loopback: [::1] not tested\n");
                        continue;
                }
                server_start_family(&srv, &pki, SERVER_NORMAL, GNUTLS_KP_TLS_WWW_SERVER, families[i]);
                c = client_for(&srv, &pki, &cc);
                assert_int_equal(secclient_connect(c), 0);
                assert_int_equal(secclient_ping(c, "tcp", 3), 0);
                secclient_disconnect(c);
                assert_int_equal(secclient_connect(c), 0);
                assert_int_equal(client_session_resumed(c), 1);
                assert_int_equal(secclient_ping(c, "tcp", 3), 0);
                secclient_free(c);
                server_stop(&srv);
        }
        creds_done(&cc);
        pki_done(&pki);
}

/* A socket that accepts into its backlog and never speaks TLS: connect times out in time. */
static void test_connect_timeout(void **state) {
        Pki pki;
        time_t now = time(NULL);
        Creds cc;
        secclient *c = NULL;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        char dir[] = "/tmp/test-secclient-XXXXXX";
        struct timespec t0, t1;
        int fd;
        long ms;

        pki_init(&pki, "test CA");
        cc = pki_creds(&pki, GNUTLS_KP_TLS_WWW_CLIENT, now - 60, now + 3600);
        assert_non_null(mkdtemp(dir));
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s/secd.sock", dir);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof sa), 0);
        assert_int_equal(listen(fd, 8), 0);

        assert_int_equal(secclient_new(&c), 0);
        assert_int_equal(secclient_set_endpoint(c, sa.sun_path), 0);
        assert_int_equal(secclient_load_credentials(c, pki.ca_pem, cc.cert, cc.key), 0);
        assert_int_equal(secclient_set_timeout(c, 300), 0);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(secclient_connect(c), -ETIMEDOUT);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        assert_true(ms >= 250 && ms < 3000);
        assert_non_null(secclient_last_error(c));
        secclient_free(c);

        close(fd);
        unlink(sa.sun_path);
        rmdir(dir);
        creds_done(&cc);
        pki_done(&pki);
}

static void test_connect_refused(void **state) {
        Pki pki, other;
        Server srv;
        time_t now = time(NULL);
        Creds cc, oc;
        secclient *c;

        pki_init(&pki, "test CA");
        pki_init(&other, "other CA");
        cc = pki_creds(&pki, GNUTLS_KP_TLS_WWW_CLIENT, now - 60, now + 3600);
        oc = pki_creds(&other, GNUTLS_KP_TLS_WWW_CLIENT, now - 60, now + 3600);

        /* ERROR NOT_ADMITTED right after the handshake. */
        server_start(&srv, &pki, SERVER_REFUSE, GNUTLS_KP_TLS_WWW_SERVER);
        c = client_for(&srv, &pki, &cc);
        assert_int_equal(secclient_connect(c), -EACCES);
        assert_string_equal(secclient_last_error(c), "not admitted: policy");
        /* Not connected: nothing reconnects on its own after a refused connect. */
        assert_int_equal(secclient_ping(c, "x", 1), -ENOTCONN);
        secclient_free(c);
        server_stop(&srv);

        /* A server whose certificate is not for servers. */
        server_start(&srv, &pki, SERVER_NORMAL, GNUTLS_KP_TLS_WWW_CLIENT);
        c = client_for(&srv, &pki, &cc);
        assert_int_equal(secclient_connect(c), -EKEYREJECTED);
        assert_non_null(secclient_last_error(c));
        secclient_free(c);
        server_stop(&srv);

        /* A server from another CA. */
        server_start(&srv, &other, SERVER_NORMAL, GNUTLS_KP_TLS_WWW_SERVER);
        c = client_for(&srv, &pki, &cc);
        assert_int_equal(secclient_connect(c), -EKEYREJECTED);
        secclient_free(c);
        /* Our client certificate from a CA the server does not trust. */
        c = client_for(&srv, &other, &cc);
        secclient_free(c);
        c = NULL;
        assert_int_equal(secclient_new(&c), 0);
        assert_int_equal(secclient_set_endpoint(c, srv.path), 0);
        assert_int_equal(secclient_set_timeout(c, 5000), 0);
        assert_int_equal(secclient_load_credentials(c, other.ca_pem, cc.cert, cc.key), 0);
        assert_true(secclient_connect(c) < 0);
        secclient_free(c);
        server_stop(&srv);

        /* Nobody there. */
        c = client_for(&srv, &pki, &oc);
        assert_int_equal(secclient_set_endpoint(c, "/nonexistent/secd.sock"), 0);
        assert_int_equal(secclient_connect(c), -ENOENT);
        /* TCP without credentials: no enrollment over TCP. */
        secclient_free(c);
        assert_int_equal(secclient_new(&c), 0);
        assert_int_equal(secclient_set_endpoint(c, "127.0.0.1:1"), 0);
        assert_int_equal(secclient_connect(c), -ENOKEY);
        assert_int_equal(secclient_set_endpoint(c, "bad"), -EINVAL);
        secclient_free(c);

        /* An expired certificate is not even tried. */
        Creds ec = pki_creds(&pki, GNUTLS_KP_TLS_WWW_CLIENT, now - 7200, now - 3600);
        assert_int_equal(secclient_new(&c), 0);
        assert_int_equal(secclient_set_endpoint(c, "127.0.0.1:1"), 0);
        assert_int_equal(secclient_load_credentials(c, pki.ca_pem, ec.cert, ec.key), 0);
        assert_int_equal(secclient_connect(c), -EKEYEXPIRED);
        secclient_free(c);
        creds_done(&ec);

        creds_done(&cc);
        creds_done(&oc);
        pki_done(&pki);
        pki_done(&other);
}

static void test_reconnect(void **state) {
        Pki pki;
        Server srv;
        time_t now = time(NULL);
        Creds cc;
        secclient *c;

        pki_init(&pki, "test CA");
        server_start(&srv, &pki, SERVER_DROP_AFTER_ONE, GNUTLS_KP_TLS_WWW_SERVER);
        cc = pki_creds(&pki, GNUTLS_KP_TLS_WWW_CLIENT, now - 60, now + 3600);
        c = client_for(&srv, &pki, &cc);

        assert_int_equal(secclient_connect(c), 0);
        /* The server hangs up after this ping. */
        assert_int_equal(secclient_ping(c, "1", 1), 0);
        /* The drop is seen by ping itself, which reconnects (resuming) and retries once. */
        assert_int_equal(secclient_ping(c, "2", 1), 0);
        assert_int_equal(client_session_resumed(c), 1);
        /* A hang-up noticed before writing: send reconnects first. */
        {
                uint8_t type;
                uint32_t id, sent;
                void *payload;
                size_t len;

                usleep(200 * 1000); /* the server has closed connection 2 */
                assert_int_equal(secclient_send(c, FRAME_PING, "3", 1, &sent), 0);
                assert_int_equal(secclient_recv(c, &type, &id, &payload, &len), 0);
                assert_int_equal(type, FRAME_PONG);
                assert_int_equal(id, sent);
                free(payload);
                /* Connection 3 is closed after that reply: recv reports it, once. */
                assert_int_equal(secclient_recv(c, &type, &id, &payload, &len), -ECONNRESET);
                assert_int_equal(secclient_recv(c, &type, &id, &payload, &len), -ENOTCONN);
        }
        secclient_free(c);
        server_stop(&srv);
        assert_int_equal(srv.n_connections, 3);


        /* ERROR IDLE_TIMEOUT (id 0) and a close: the next ping reconnects, resuming. */
        server_start(&srv, &pki, SERVER_IDLE_AFTER_ONE, GNUTLS_KP_TLS_WWW_SERVER);
        c = client_for(&srv, &pki, &cc);
        assert_int_equal(secclient_connect(c), 0);
        assert_int_equal(secclient_ping(c, "1", 1), 0);
        usleep(200 * 1000);
        assert_int_equal(secclient_ping(c, "2", 1), 0);
        assert_int_equal(client_session_resumed(c), 1);
        /* Without a pause: ping meets the ERROR before writing or in its round trip, and retries. */
        assert_int_equal(secclient_ping(c, "3", 1), 0);
        assert_int_equal(secclient_ping(c, "4", 1), 0);
        secclient_free(c);
        server_stop(&srv);
        assert_int_equal(srv.n_connections, 4);

        /* A reply that arrived before the drop is still delivered after the reconnect. */
        server_start(&srv, &pki, SERVER_IDLE_AFTER_ONE, GNUTLS_KP_TLS_WWW_SERVER);
        c = client_for(&srv, &pki, &cc);
        assert_int_equal(secclient_connect(c), 0);
        {
                uint8_t type;
                uint32_t a, b, id;
                void *payload;
                size_t len;

                assert_int_equal(secclient_send(c, FRAME_PING, "a", 1, &a), 0);
                usleep(200 * 1000); /* PONG a, ERROR IDLE_TIMEOUT, close */
                assert_int_equal(secclient_send(c, FRAME_PING, "b", 1, &b), 0);
                assert_int_equal(secclient_recv(c, &type, &id, &payload, &len), 0);
                assert_int_equal(id, a);
                assert_int_equal(type, FRAME_PONG);
                free(payload);
                assert_int_equal(secclient_recv(c, &type, &id, &payload, &len), 0);
                assert_int_equal(id, b);
                free(payload);
        }
        secclient_free(c);
        server_stop(&srv);
        assert_int_equal(srv.n_connections, 2);

        /* ERROR CERT_REVOKED (id 0): no automatic reconnect; its errno until the next connect. */
        server_start(&srv, &pki, SERVER_REVOKE_AFTER_ONE, GNUTLS_KP_TLS_WWW_SERVER);
        c = client_for(&srv, &pki, &cc);
        assert_int_equal(secclient_connect(c), 0);
        assert_int_equal(secclient_ping(c, "1", 1), 0);
        usleep(200 * 1000);
        assert_int_equal(secclient_ping(c, "2", 1), -EKEYREVOKED);
        assert_string_equal(secclient_last_error(c), "certificate revoked");
        assert_int_equal(secclient_send(c, FRAME_PING, "3", 1, NULL), -EKEYREVOKED);
        assert_int_equal(secclient_connect(c), 0);
        assert_int_equal(secclient_ping(c, "4", 1), 0);
        secclient_free(c);
        server_stop(&srv);
        assert_int_equal(srv.n_connections, 2);

        creds_done(&cc);
        pki_done(&pki);
}

/* ---------------------------------------------------------------------- */
/* Enrollment against a scripted io.secd.Enroll server */

typedef struct EnrollServer {
        char dir[64];
        char path[128];
        int listen_fd;
        Pki *pki;
        const char *error;   /* answer with this Varlink error instead */
        const char *error_parameters;
        time_t not_before_offset, not_after_offset;  /* of issued certificates; 0,0: -10 s, +1 h */
        pthread_t thread;
        unsigned n_calls;
} EnrollServer;

static void *enroll_run(void *userdata) {
        EnrollServer *es = userdata;
        int fd;
        VarlinkBuffer *b = NULL;

        assert_int_equal(varlink_buffer_new(1 << 20, &b), 0);
        for (;;) {
                struct pollfd p = { .fd = es->listen_fd, .events = POLLIN };
                const char *m;
                size_t size;
                char buf[4096];

                if (poll(&p, 1, 10000) <= 0)
                        break;
                fd = accept4(es->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0)
                        break;
                for (;;) {
                        ssize_t n;
                        int r = varlink_buffer_next(b, &m, &size);

                        if (r != 0)
                                break;
                        n = recv(fd, buf, sizeof buf, 0);
                        if (n <= 0)
                                break;
                        assert_int_equal(varlink_buffer_feed(b, buf, (size_t) n), 0);
                }
                es->n_calls++;
                json_object *call = json_tokener_parse(m), *params, *csr_o,
                            *reply = json_object_new_object();
                assert_non_null(call);
                assert_string_equal(json_object_get_string(json_object_object_get(call, "method")),
                                    "io.secd.Enroll.Issue");
                params = json_object_object_get(call, "parameters");
                csr_o = json_object_object_get(params, "csr");
                if (es->error) {
                        json_object_object_add(reply, "error", json_object_new_string(es->error));
                        json_object_object_add(reply, "parameters",
                                               json_tokener_parse(es->error_parameters));
                } else {
                        gnutls_x509_crq_t crq;
                        gnutls_datum_t d = { (unsigned char *) json_object_get_string(csr_o),
                                             (unsigned) json_object_get_string_len(csr_o) };
                        time_t now = time(NULL);
                        char *cert;
                        json_object *out = json_object_new_object();

                        assert_int_equal(gnutls_x509_crq_init(&crq), 0);
                        assert_int_equal(gnutls_x509_crq_import(crq, &d, GNUTLS_X509_FMT_PEM), 0);
                        assert_int_equal(gnutls_x509_crq_verify(crq, 0), 0);
                        assert_int_equal(gnutls_x509_crq_get_pk_algorithm(crq, NULL),
                                         GNUTLS_PK_EDDSA_ED25519);
                        cert = pki_issue(es->pki, NULL, crq, GNUTLS_KP_TLS_WWW_CLIENT,
                                         now + (es->not_after_offset ? es->not_before_offset : -10),
                                         now + (es->not_after_offset ?: 3600));
                        gnutls_x509_crq_deinit(crq);
                        json_object_object_add(out, "certificate", json_object_new_string(cert));
                        json_object_object_add(out, "ca", json_object_new_string(es->pki->ca_pem));
                        json_object_object_add(out, "expires",
                                               json_object_new_string("2099-01-01T00:00:00Z"));
                        json_object_object_add(reply, "parameters", out);
                        free(cert);
                }
                const char *text = json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN);
                assert_int_equal(send(fd, text, strlen(text) + 1, MSG_NOSIGNAL), (ssize_t) strlen(text) + 1);
                json_object_put(reply);
                json_object_put(call);
                close(fd);
                varlink_buffer_free(b);
                assert_int_equal(varlink_buffer_new(1 << 20, &b), 0);
        }
        varlink_buffer_free(b);
        return NULL;
}

static void enroll_server_start(EnrollServer *es, Pki *pki, const char *error,
                                const char *error_parameters) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        *es = (EnrollServer) { .pki = pki, .error = error, .error_parameters = error_parameters };
        strcpy(es->dir, "/tmp/test-secclient-XXXXXX");
        assert_non_null(mkdtemp(es->dir));
        snprintf(es->path, sizeof es->path, "%s/enroll.sock", es->dir);
        es->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        strcpy(sa.sun_path, es->path);
        assert_int_equal(bind(es->listen_fd, (struct sockaddr *) &sa, sizeof sa), 0);
        assert_int_equal(listen(es->listen_fd, 8), 0);
        assert_int_equal(pthread_create(&es->thread, NULL, enroll_run, es), 0);
}

static void enroll_server_stop(EnrollServer *es) {
        shutdown(es->listen_fd, SHUT_RDWR);
        assert_int_equal(pthread_join(es->thread, NULL), 0);
        close(es->listen_fd);
        unlink(es->path);
        rmdir(es->dir);
}

static void test_enroll(void **state) {
        Pki pki;
        Server srv;
        EnrollServer es;
        secclient *c;

        pki_init(&pki, "test CA");
        server_start(&srv, &pki, SERVER_NORMAL, GNUTLS_KP_TLS_WWW_SERVER);
        enroll_server_start(&es, &pki, NULL, NULL);

        /* Environment defaults. */
        setenv("SECD_SOCKET", srv.path, 1);
        setenv("SECD_ENROLL_SOCKET", es.path, 1);
        assert_int_equal(secclient_new(&c), 0);
        unsetenv("SECD_SOCKET");
        unsetenv("SECD_ENROLL_SOCKET");

        /* No certificate, a local endpoint: connect enrolls first. */
        assert_int_equal(secclient_connect(c), 0);
        assert_int_equal(es.n_calls, 1);
        assert_true(secclient_cert_expiry(c) > (uint64_t) time(NULL) * 1000000u);
        assert_int_equal(secclient_ping(c, "enrolled", 8), 0);
        /* Explicit enrollment replaces the credentials. */
        assert_int_equal(secclient_enroll(c), 0);
        assert_int_equal(es.n_calls, 2);
        /* The live session keeps its (old) credentials. */
        assert_int_equal(secclient_ping(c, "still", 5), 0);
        assert_int_equal(secclient_enroll(c), 0);
        assert_int_equal(secclient_ping(c, "still", 5), 0);
        assert_int_equal(es.n_calls, 3);
        secclient_disconnect(c);
        assert_int_equal(secclient_connect(c), 0);
        assert_int_equal(client_session_resumed(c), 0); /* new certificate, no stale ticket */
        secclient_free(c);
        enroll_server_stop(&es);

        /* Certificates past half-life are renewed at connect; a failed renewal keeps the old one. */
        enroll_server_start(&es, &pki, NULL, NULL);
        es.not_before_offset = -3000;
        es.not_after_offset = 600;
        assert_int_equal(secclient_new(&c), 0);
        assert_int_equal(secclient_set_enroll_socket(c, es.path), 0);
        assert_int_equal(secclient_set_endpoint(c, srv.path), 0);
        assert_int_equal(secclient_enroll(c), 0);
        assert_int_equal(es.n_calls, 1);
        assert_int_equal(secclient_connect(c), 0);
        assert_int_equal(es.n_calls, 2);
        secclient_disconnect(c);
        enroll_server_stop(&es);
        assert_int_equal(secclient_connect(c), 0);
        assert_int_equal(secclient_ping(c, "old", 3), 0);
        secclient_free(c);

        /* Refusals. */
        static const struct {
                const char *error, *parameters;
                int expected;
                const char *text;
        } cases[] = {
                { "io.secd.Enroll.NotAdmitted", "{\"reason\":\"policy\"}", -EACCES,
                  "enrollment refused: io.secd.Enroll.NotAdmitted: policy" },
                { "io.secd.Enroll.RateLimited", "{\"retry_after_usec\":5000000}", -EAGAIN,
                  "enrollment rate limited; retry after 5000000 us" },
                { "io.secd.Enroll.InvalidRequest", "{\"reason\":\"key type\"}", -EPROTO,
                  "enrollment refused: io.secd.Enroll.InvalidRequest: key type" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                enroll_server_start(&es, &pki, cases[i].error, cases[i].parameters);
                assert_int_equal(secclient_new(&c), 0);
                assert_int_equal(secclient_set_enroll_socket(c, es.path), 0);
                assert_int_equal(secclient_set_endpoint(c, srv.path), 0);
                assert_int_equal(secclient_enroll(c), cases[i].expected);
                assert_string_equal(secclient_last_error(c), cases[i].text);
                assert_int_equal(secclient_connect(c), cases[i].expected);
                assert_int_equal(secclient_cert_expiry(c), 0);
                secclient_free(c);
                enroll_server_stop(&es);
        }

        /* No enroll socket. */
        assert_int_equal(secclient_new(&c), 0);
        assert_int_equal(secclient_set_enroll_socket(c, "/nonexistent/enroll.sock"), 0);
        assert_int_equal(secclient_enroll(c), -ENOENT);
        assert_non_null(secclient_last_error(c));
        secclient_free(c);

        server_stop(&srv);
        pki_done(&pki);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_endpoint_parse),
                cmocka_unit_test(test_backoff_schedule),
                cmocka_unit_test(test_renew_due),
                cmocka_unit_test(test_error_mapping),
                cmocka_unit_test(test_bundle),
                cmocka_unit_test(test_creds_seqpacket),
                cmocka_unit_test(test_creds_stream),
                cmocka_unit_test(test_creds_bad),
                cmocka_unit_test(test_load_credentials_bad),
                cmocka_unit_test(test_connect_ping_pipeline),
                cmocka_unit_test(test_connect_tcp),
                cmocka_unit_test(test_connect_timeout),
                cmocka_unit_test(test_connect_refused),
                cmocka_unit_test(test_reconnect),
                cmocka_unit_test(test_enroll),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
