/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * mTLS handshake benchmark helper (bench/README.md, run by
 * bench/run-handshake-bench.sh). Three modes:
 *
 *   bench-handshake client --connect unix:PATH|HOST:PORT --ca FILE
 *                          (--cert FILE --key FILE | --enroll PATH)
 *                          --frame ping|echo --server-pid PID [--count N] [--seconds S]
 *                          [--only full|resumed]
 *       N full handshakes, then N resumed ones (each reusing the newest
 *       session ticket), each followed by one 28-byte round trip (a PING
 *       frame; "ping" expects secd's PONG, "echo" expects the same bytes
 *       back). Measures the server process's CPU time (utime + stime from
 *       /proc/PID/stat, exited threads included) and wall-clock rate.
 *       --enroll makes a key pair and CSR in memory and asks secd's enroll
 *       socket for a certificate (io.secd.Enroll.Issue): the certificate
 *       then names this binary, as admission on the Unix data endpoint wants.
 *
 *   bench-handshake floor --ca FILE --cert FILE --key FILE
 *                         --client-cert FILE --client-key FILE [--count N]
 *       The crypto floor: the server's public-key operations in one full
 *       TLS 1.3 mTLS handshake with these keys, each timed alone in CPU time.
 *
 *   bench-handshake echo-server --listen HOST:PORT
 *       A small poll() echo server: stunnel's backend.
 *
 *   bench-handshake enroll-test --enroll PATH --ca FILE
 *       Exit 0 if the enroll socket issues a certificate.
 *
 * Prints numbers only; never fails on timing. Loopback and Unix sockets only.
 */

#include <arpa/inet.h>
#include <fcntl.h>
#include <inttypes.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nettle/curve25519.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include "macro.h"

#define PRIORITY "NORMAL:-VERS-ALL:+VERS-TLS1.3:-GROUP-ALL:+GROUP-X25519:-CIPHER-ALL:+AES-128-GCM"
#define COUNT_DEFAULT 2000
#define COUNT_MAX 1000000
#define SECONDS_DEFAULT 20
#define IO_TIMEOUT_SEC 10
#define PING_PAYLOAD_LEN 16
#define FRAME_LEN (12 + PING_PAYLOAD_LEN)
#define ENROLL_REPLY_MAX (256 * 1024)
#define ECHO_CLIENTS_MAX 64
#define FLOOR_BUDGET_NS (UINT64_C(2) * 1000 * 1000 * 1000)

static const char *arg_connect, *arg_ca, *arg_cert, *arg_key, *arg_enroll, *arg_frame = "ping";
static const char *arg_client_cert, *arg_client_key, *arg_listen, *arg_only;
static unsigned arg_count = COUNT_DEFAULT, arg_seconds = SECONDS_DEFAULT;
static pid_t arg_server_pid;

static _noreturn_ void die(const char *fmt, ...) _printf_(1, 2);
static _noreturn_ void die(const char *fmt, ...) {
        va_list ap;

        fputs("bench-handshake: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        exit(EXIT_FAILURE);
}

static void check_gnutls(int r, const char *what) {
        if (r < 0)
                die("%s: %s", what, gnutls_strerror(r));
}

static uint64_t clock_ns(clockid_t id) {
        struct timespec ts;

        clock_gettime(id, &ts);
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static void datum_load(const char *path, gnutls_datum_t *ret) {
        check_gnutls(gnutls_load_file(path, ret), path);
}

static void datum_wipe(gnutls_datum_t *d) {
        if (d->data) {
                gnutls_memset(d->data, 0, d->size);
                gnutls_free(d->data);
        }
        d->data = NULL;
        d->size = 0;
}

/* ---- host:port / unix:path ------------------------------------------- */

static int endpoint_connect(const char *endpoint) {
        int fd;

        if (strncmp(endpoint, "unix:", 5) == 0) {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };
                const char *path = endpoint + 5;

                if (strlen(path) >= sizeof sa.sun_path)
                        die("socket path too long: %s", path);
                memcpy(sa.sun_path, path, strlen(path));
                fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd < 0)
                        die("socket: %m");
                if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                        die("connect %s: %m", path);
        } else {
                struct sockaddr_in sa = { .sin_family = AF_INET };
                char host[64];
                const char *colon = strrchr(endpoint, ':');
                unsigned port;
                int one = 1;

                if (!colon || (size_t) (colon - endpoint) >= sizeof host ||
                    sscanf(colon + 1, "%u", &port) != 1 || port == 0 || port > 65535)
                        die("bad endpoint: %s", endpoint);
                memcpy(host, endpoint, colon - endpoint);
                host[colon - endpoint] = 0;
                if (inet_pton(AF_INET, host, &sa.sin_addr) != 1 || ntohl(sa.sin_addr.s_addr) >> 24 != 127)
                        die("only IPv4 loopback addresses: %s", host);
                sa.sin_port = htons(port);
                fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd < 0)
                        die("socket: %m");
                /* Without it TLS 1.3's tickets meet Nagle and delayed ACK. */
                (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                        die("connect %s: %m", endpoint);
        }

        struct timeval tv = { .tv_sec = IO_TIMEOUT_SEC };
        (void) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        (void) setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        return fd;
}

/* ---- enrollment (in memory) ------------------------------------------ */

static char *enroll_varlink_call(const char *socket_path, const char *csr_pem) {
        _cleanup_free_ char *buf = NULL;
        size_t used = 0;
        json_object *req = json_object_new_object(), *params = json_object_new_object();

        json_object_object_add(params, "csr", json_object_new_string(csr_pem));
        json_object_object_add(req, "method", json_object_new_string("io.secd.Enroll.Issue"));
        json_object_object_add(req, "parameters", params);
        const char *s = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);

        _cleanup_free_ char *ep = NULL;
        if (asprintf(&ep, "unix:%s", socket_path) < 0)
                die("out of memory");
        _cleanup_close_ int fd = endpoint_connect(ep);
        if (write(fd, s, strlen(s) + 1) != (ssize_t) strlen(s) + 1)
                die("write to %s: %m", socket_path);
        json_object_put(req);

        buf = malloc(ENROLL_REPLY_MAX);
        if (!buf)
                die("out of memory");
        for (;;) {
                ssize_t n;

                if (used >= ENROLL_REPLY_MAX)
                        die("enroll reply too large");
                n = read(fd, buf + used, ENROLL_REPLY_MAX - used);
                if (n <= 0)
                        die("read from %s: %s", socket_path, n < 0 ? strerror(errno) : "EOF");
                if (memchr(buf + used, 0, n))
                        break;
                used += n;
        }
        return TAKE_PTR(buf);
}

/* Key of the CA's type, CSR, Enroll.Issue; the key never leaves memory. */
static void enroll(const char *socket_path, gnutls_x509_crt_t ca, gnutls_x509_crt_t *ret_crt,
                   gnutls_x509_privkey_t *ret_key) {
        gnutls_x509_privkey_t key;
        gnutls_x509_crq_t crq;
        gnutls_datum_t csr = {};
        int pk = gnutls_x509_crt_get_pk_algorithm(ca, NULL);
        unsigned bits = pk == GNUTLS_PK_ECDSA ? GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1) :
                        pk == GNUTLS_PK_RSA ? 2048 : 0;

        check_gnutls(gnutls_x509_privkey_init(&key), "privkey init");
        check_gnutls(gnutls_x509_privkey_generate(key, pk, bits, 0), "key generation");
        check_gnutls(gnutls_x509_crq_init(&crq), "crq init");
        check_gnutls(gnutls_x509_crq_set_version(crq, 1), "crq version");
        check_gnutls(gnutls_x509_crq_set_dn_by_oid(crq, GNUTLS_OID_X520_COMMON_NAME, 0, "bench-handshake",
                                                   strlen("bench-handshake")), "crq dn");
        check_gnutls(gnutls_x509_crq_set_key(crq, key), "crq key");
        check_gnutls(gnutls_x509_crq_sign2(crq, key, pk == GNUTLS_PK_EDDSA_ED25519 ? GNUTLS_DIG_SHA512 : GNUTLS_DIG_SHA256, 0),
                     "crq sign");
        check_gnutls(gnutls_x509_crq_export2(crq, GNUTLS_X509_FMT_PEM, &csr), "crq export");
        gnutls_x509_crq_deinit(crq);

        _cleanup_free_ char *csr_pem = strndup((const char *) csr.data, csr.size);
        gnutls_free(csr.data);
        if (!csr_pem)
                die("out of memory");
        _cleanup_free_ char *reply = enroll_varlink_call(socket_path, csr_pem);

        json_object *o = json_tokener_parse(reply), *p, *c;
        if (!o)
                die("enroll reply is not JSON");
        if (json_object_object_get_ex(o, "error", &p))
                die("enrollment refused: %s", json_object_to_json_string(o));
        if (!json_object_object_get_ex(o, "parameters", &p) ||
            !json_object_object_get_ex(p, "certificate", &c) || !json_object_is_type(c, json_type_string))
                die("enroll reply without certificate");
        const char *pem = json_object_get_string(c);
        gnutls_datum_t d = { .data = (unsigned char *) pem, .size = strlen(pem) };
        check_gnutls(gnutls_x509_crt_init(ret_crt), "crt init");
        check_gnutls(gnutls_x509_crt_import(*ret_crt, &d, GNUTLS_X509_FMT_PEM), "enrolled certificate");
        json_object_put(o);
        *ret_key = key;
}

/* ---- client ---------------------------------------------------------- */

typedef struct CpuSample {
        double server_s;
        double client_s;
        uint64_t wall_ns;
} CpuSample;

static double proc_cpu_seconds(pid_t pid) {
        char path[64], buf[4096];
        unsigned long long utime, stime;
        ssize_t n;

        snprintf(path, sizeof path, "/proc/%d/stat", (int) pid);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                die("open %s: %m (server gone?)", path);
        n = read(fd, buf, sizeof buf - 1);
        if (n <= 0)
                die("read %s: %m", path);
        buf[n] = 0;
        /* comm may contain spaces and ')': fields start after the last ')'. */
        char *p = strrchr(buf, ')');
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
                die("cannot parse %s", path);
        return (double) (utime + stime) / (double) sysconf(_SC_CLK_TCK);
}

static double self_cpu_seconds(void) {
        return clock_ns(CLOCK_PROCESS_CPUTIME_ID) / 1e9;
}

static CpuSample sample_now(void) {
        return (CpuSample) {
                .server_s = proc_cpu_seconds(arg_server_pid),
                .client_s = self_cpu_seconds(),
                .wall_ns = clock_ns(CLOCK_MONOTONIC),
        };
}

static void round_trip(gnutls_session_t s, uint32_t id) {
        uint8_t req[FRAME_LEN], resp[FRAME_LEN];
        size_t got = 0;
        ssize_t n;

        if (streq(arg_frame, "ping")) {
                /* 'S' 'D', version 1, PING, id, length, payload. */
                req[0] = 0x53, req[1] = 0x44, req[2] = 1, req[3] = 0x01;
                req[4] = id >> 24, req[5] = id >> 16, req[6] = id >> 8, req[7] = id;
                req[8] = 0, req[9] = 0, req[10] = 0, req[11] = PING_PAYLOAD_LEN;
                for (size_t i = 0; i < PING_PAYLOAD_LEN; i++)
                        req[12 + i] = 'a' + (i + id) % 26;
        } else {
                /* gnutls-serv --echo is line-based: a text line of the same size as the frame. */
                memset(req, 'x', sizeof req);
                snprintf((char *) req, sizeof req, "SD ping %010" PRIu32 " ", id);
                req[strlen((char *) req)] = 'x';
                req[sizeof req - 1] = '\n';
        }

        do
                n = gnutls_record_send(s, req, sizeof req);
        while (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED);
        if (n != (ssize_t) sizeof req)
                die("send: %s", n < 0 ? gnutls_strerror(n) : "short write");
        while (got < sizeof resp) {
                n = gnutls_record_recv(s, resp + got, sizeof resp - got);
                if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
                        continue;
                if (n <= 0)
                        die("receive (after %zu bytes): %s", got, n < 0 ? gnutls_strerror(n) : "EOF");
                got += n;
        }
        if (streq(arg_frame, "ping")) {
                if (resp[0] != 0x53 || resp[1] != 0x44 || resp[2] != 1)
                        die("reply is not a frame");
                if (resp[3] == 0xFF)
                        die("secd answered ERROR (code %u)", (resp[12] << 8) | resp[13]);
                if (resp[3] != 0x81 || memcmp(resp + 4, req + 4, 8) != 0 || memcmp(resp + 12, req + 12, PING_PAYLOAD_LEN) != 0)
                        die("reply is not the PONG of our PING (type 0x%02x)", resp[3]);
        } else if (memcmp(resp, req, sizeof req) != 0)
                die("echo differs");
}

typedef struct Client {
        gnutls_certificate_credentials_t cred;
        gnutls_priority_t prio;
        gnutls_datum_t session_data;
} Client;

/*
 * Before every read, ask for immediate ACKs (TCP only). gnutls-serv does not
 * set TCP_NODELAY: its reply after the session tickets would wait for our
 * delayed ACK (40 ms). Quick ACKs make the rate measure the server, and
 * change nothing for a server with TCP_NODELAY.
 */
static ssize_t pull_quickack(gnutls_transport_ptr_t ptr, void *buf, size_t len) {
        int fd = (int) (intptr_t) ptr, one = 1;

        (void) setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
        return recv(fd, buf, len, 0);
}

/* One connection: handshake, round trip, close_notify. true if resumed. */
static bool client_connection(Client *c, bool resume, uint32_t id) {
        gnutls_session_t s;
        int r, fd = endpoint_connect(arg_connect);

        check_gnutls(gnutls_init(&s, GNUTLS_CLIENT), "gnutls_init");
        check_gnutls(gnutls_priority_set(s, c->prio), "priority");
        check_gnutls(gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, c->cred), "credentials");
        gnutls_session_set_verify_cert(s, NULL, 0);
        if (resume && c->session_data.data)
                check_gnutls(gnutls_session_set_data(s, c->session_data.data, c->session_data.size), "session data");
        gnutls_transport_set_int(s, fd);
        if (strncmp(arg_connect, "unix:", 5) != 0)
                gnutls_transport_set_pull_function(s, pull_quickack);
        do
                r = gnutls_handshake(s);
        while (r < 0 && !gnutls_error_is_fatal(r));
        if (r < 0)
                die("handshake with %s: %s", arg_connect, gnutls_strerror(r));

        round_trip(s, id);      /* the server's tickets arrive before the reply */

        bool resumed = gnutls_session_is_resumed(s);
        if (!resume || resumed) {
                /* Keep the newest ticket: a server may accept each one once. */
                gnutls_datum_t d = {};
                if (gnutls_session_get_data2(s, &d) >= 0) {
                        datum_wipe(&c->session_data);
                        c->session_data = d;
                }
        }
        (void) gnutls_bye(s, GNUTLS_SHUT_WR);
        gnutls_deinit(s);
        close(fd);
        return resumed;
}

static void phase_print(const char *label, unsigned n, unsigned resumed, const CpuSample *a, const CpuSample *b) {
        double wall = (b->wall_ns - a->wall_ns) / 1e9;
        double srv = b->server_s - a->server_s, cli = b->client_s - a->client_s;

        /* One line, key=value, for run-handshake-bench.sh. */
        printf("%s n=%u resumed=%u wall_s=%.3f server_cpu_s=%.3f client_cpu_s=%.3f "
               "server_cpu_us_per_hs=%.1f hs_per_s=%.1f\n",
               label, n, resumed, wall, srv, cli, n ? srv * 1e6 / n : 0.0, wall > 0 ? n / wall : 0.0);
}

static void phase_run(Client *c, const char *label, bool resume) {
        uint64_t deadline = clock_ns(CLOCK_MONOTONIC) + (uint64_t) arg_seconds * 1000000000u;
        unsigned n = 0, resumed = 0;
        CpuSample a, b;

        a = sample_now();
        while (n < arg_count && clock_ns(CLOCK_MONOTONIC) < deadline) {
                resumed += client_connection(c, resume, n);
                n++;
        }
        b = sample_now();
        /* Let the server finish the last close, then read its CPU again. */
        usleep(200 * 1000);
        b.server_s = proc_cpu_seconds(arg_server_pid);
        phase_print(label, n, resumed, &a, &b);
}

static int run_client(void) {
        Client c = {};
        gnutls_x509_crt_t ca;
        gnutls_datum_t d;

        if (!arg_connect || !arg_ca || arg_server_pid <= 0 || (!arg_enroll && (!arg_cert || !arg_key)))
                die("client needs --connect, --ca, --server-pid and --cert/--key or --enroll");
        if (!streq(arg_frame, "ping") && !streq(arg_frame, "echo"))
                die("--frame is ping or echo");

        check_gnutls(gnutls_certificate_allocate_credentials(&c.cred), "credentials");
        check_gnutls(gnutls_certificate_set_x509_trust_file(c.cred, arg_ca, GNUTLS_X509_FMT_PEM), arg_ca);
        if (arg_enroll) {
                gnutls_x509_crt_t crt;
                gnutls_x509_privkey_t key;

                datum_load(arg_ca, &d);
                check_gnutls(gnutls_x509_crt_init(&ca), "crt init");
                check_gnutls(gnutls_x509_crt_import(ca, &d, GNUTLS_X509_FMT_PEM), arg_ca);
                gnutls_free(d.data);
                enroll(arg_enroll, ca, &crt, &key);
                check_gnutls(gnutls_certificate_set_x509_key(c.cred, &crt, 1, key), "enrolled key");
                gnutls_x509_privkey_deinit(key);        /* GnuTLS copied it; deinit wipes */
                gnutls_x509_crt_deinit(crt);
                gnutls_x509_crt_deinit(ca);
        } else
                check_gnutls(gnutls_certificate_set_x509_key_file(c.cred, arg_cert, arg_key, GNUTLS_X509_FMT_PEM),
                             "client certificate and key");
        check_gnutls(gnutls_priority_init(&c.prio, PRIORITY, NULL), "priority string");

        /* Untimed warm-up: page cache, server caches (hash cache), first ticket. */
        for (unsigned i = 0; i < 5; i++)
                (void) client_connection(&c, false, i);
        if (!arg_only || streq(arg_only, "full"))
                phase_run(&c, "full", false);
        if (!arg_only || streq(arg_only, "resumed"))
                phase_run(&c, "resumed", true);

        datum_wipe(&c.session_data);
        gnutls_priority_deinit(c.prio);
        gnutls_certificate_free_credentials(c.cred);
        return 0;
}

/* Does the enroll socket issue us a certificate? (The script's probe.) */
static int run_enroll_test(void) {
        gnutls_x509_crt_t ca, crt;
        gnutls_x509_privkey_t key;
        gnutls_datum_t d;

        if (!arg_enroll || !arg_ca)
                die("enroll-test needs --enroll and --ca");
        datum_load(arg_ca, &d);
        check_gnutls(gnutls_x509_crt_init(&ca), "crt init");
        check_gnutls(gnutls_x509_crt_import(ca, &d, GNUTLS_X509_FMT_PEM), arg_ca);
        gnutls_free(d.data);
        enroll(arg_enroll, ca, &crt, &key);
        printf("enrolled\n");
        gnutls_x509_privkey_deinit(key);
        gnutls_x509_crt_deinit(crt);
        gnutls_x509_crt_deinit(ca);
        return 0;
}

/* ---- crypto floor ---------------------------------------------------- */

typedef struct FloorKeys {
        gnutls_privkey_t server_key, client_key;
        gnutls_pubkey_t client_pub;
        gnutls_x509_crt_t client_crt;
        gnutls_x509_trust_list_t trust;
        gnutls_sign_algorithm_t server_sign, client_sign;
} FloorKeys;

/* The TLS 1.3 signature scheme GnuTLS uses for a key of this type. */
static gnutls_sign_algorithm_t tls13_sign_for(gnutls_privkey_t key) {
        unsigned bits = 0;
        int pk = gnutls_privkey_get_pk_algorithm(key, &bits);

        switch (pk) {
        case GNUTLS_PK_EDDSA_ED25519:
                return GNUTLS_SIGN_EDDSA_ED25519;
        case GNUTLS_PK_EDDSA_ED448:
                return GNUTLS_SIGN_EDDSA_ED448;
        case GNUTLS_PK_ECDSA:
                return bits > 384 ? GNUTLS_SIGN_ECDSA_SECP521R1_SHA512 :
                       bits > 256 ? GNUTLS_SIGN_ECDSA_SECP384R1_SHA384 : GNUTLS_SIGN_ECDSA_SECP256R1_SHA256;
        case GNUTLS_PK_RSA:
        case GNUTLS_PK_RSA_PSS:
                return GNUTLS_SIGN_RSA_PSS_RSAE_SHA256;
        default:
                die("unsupported key type %s", gnutls_pk_get_name(pk));
        }
}

static void privkey_load(const char *path, gnutls_privkey_t *ret) {
        gnutls_datum_t d;

        datum_load(path, &d);
        check_gnutls(gnutls_privkey_init(ret), "privkey init");
        check_gnutls(gnutls_privkey_import_x509_raw(*ret, &d, GNUTLS_X509_FMT_PEM, NULL, 0), path);
        datum_wipe(&d);
}

typedef void (*FloorOp)(FloorKeys *k, void *state);

/* Mean CPU time of op, up to --count runs or 2 s; µs. */
static double floor_time(FloorOp op, FloorKeys *k, void *state) {
        uint64_t start, now;
        unsigned n = 0;

        op(k, state);   /* warm */
        start = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
        /* The clock is a system call: read it every 16 ops only. */
        while (n < arg_count && (n % 16 != 0 || clock_ns(CLOCK_PROCESS_CPUTIME_ID) - start < FLOOR_BUDGET_NS)) {
                op(k, state);
                n++;
        }
        now = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
        return (now - start) / 1000.0 / n;
}

/* The content a TLS 1.3 CertificateVerify signs: 64 spaces, context, 0, a SHA-256 transcript hash. */
static uint8_t cv_content[64 + 33 + 1 + 32];
static gnutls_datum_t client_cv_sig;

static void op_x25519(FloorKeys *k, void *state) {
        uint8_t priv[CURVE25519_SIZE], pub[CURVE25519_SIZE], shared[CURVE25519_SIZE];
        const uint8_t *peer_pub = state;

        /* What GnuTLS 3.7 does for X25519 (lib/nettle/pk.c): random scalar, nettle's curve25519. */
        check_gnutls(gnutls_rnd(GNUTLS_RND_KEY, priv, sizeof priv), "rnd");
        curve25519_mul_g(pub, priv);
        curve25519_mul(shared, priv, peer_pub);
        gnutls_memset(priv, 0, sizeof priv);
        gnutls_memset(shared, 0, sizeof shared);
        __asm__ volatile("" : : "r"(pub) : "memory");
}

static void op_sign(FloorKeys *k, void *state) {
        gnutls_datum_t data = { cv_content, sizeof cv_content }, sig;

        check_gnutls(gnutls_privkey_sign_data2(k->server_key, k->server_sign, 0, &data, &sig), "sign");
        gnutls_free(sig.data);
}

static void op_verify_cv(FloorKeys *k, void *state) {
        gnutls_datum_t data = { cv_content, sizeof cv_content };

        check_gnutls(gnutls_pubkey_verify_data2(k->client_pub, k->client_sign, 0, &data, &client_cv_sig),
                     "CertificateVerify verification");
}

static void op_verify_chain(FloorKeys *k, void *state) {
        gnutls_typed_vdata_st purpose = {
                .type = GNUTLS_DT_KEY_PURPOSE_OID,
                .data = (unsigned char *) GNUTLS_KP_TLS_WWW_CLIENT,
        };
        unsigned status;

        check_gnutls(gnutls_x509_trust_list_verify_crt2(k->trust, &k->client_crt, 1, &purpose, 1, 0, &status, NULL),
                     "chain verification");
        if (status != 0)
                die("client certificate does not verify against the CA (status 0x%x)", status);
}

static int run_floor(void) {
        FloorKeys k = {};
        gnutls_datum_t d;
        uint8_t peer_priv[CURVE25519_SIZE], peer_pub[CURVE25519_SIZE];

        if (!arg_ca || !arg_cert || !arg_key || !arg_client_cert || !arg_client_key)
                die("floor needs --ca, --cert, --key, --client-cert, --client-key");

        privkey_load(arg_key, &k.server_key);
        privkey_load(arg_client_key, &k.client_key);
        k.server_sign = tls13_sign_for(k.server_key);
        k.client_sign = tls13_sign_for(k.client_key);

        datum_load(arg_client_cert, &d);
        check_gnutls(gnutls_x509_crt_init(&k.client_crt), "crt init");
        check_gnutls(gnutls_x509_crt_import(k.client_crt, &d, GNUTLS_X509_FMT_PEM), arg_client_cert);
        gnutls_free(d.data);
        check_gnutls(gnutls_pubkey_init(&k.client_pub), "pubkey init");
        check_gnutls(gnutls_pubkey_import_x509(k.client_pub, k.client_crt, 0), "client public key");
        check_gnutls(gnutls_x509_trust_list_init(&k.trust, 0), "trust list");
        check_gnutls(gnutls_x509_trust_list_add_trust_file(k.trust, arg_ca, NULL, GNUTLS_X509_FMT_PEM, 0, 0), arg_ca);

        memset(cv_content, ' ', 64);
        memcpy(cv_content + 64, "TLS 1.3, client CertificateVerify", 33);
        check_gnutls(gnutls_rnd(GNUTLS_RND_NONCE, cv_content + 98, 32), "rnd");
        gnutls_datum_t data = { cv_content, sizeof cv_content };
        check_gnutls(gnutls_privkey_sign_data2(k.client_key, k.client_sign, 0, &data, &client_cv_sig), "client sign");

        check_gnutls(gnutls_rnd(GNUTLS_RND_KEY, peer_priv, sizeof peer_priv), "rnd");
        curve25519_mul_g(peer_pub, peer_priv);

        double x = floor_time(op_x25519, &k, peer_pub);
        double s = floor_time(op_sign, &k, NULL);
        double v = floor_time(op_verify_cv, &k, NULL);
        double c = floor_time(op_verify_chain, &k, NULL);

        printf("floor x25519_us=%.2f sign_us=%.2f verify_cv_us=%.2f verify_chain_us=%.2f total_us=%.2f "
               "server_sign=%s client_sign=%s\n",
               x, s, v, c, x + s + v + c,
               gnutls_sign_get_name(k.server_sign), gnutls_sign_get_name(k.client_sign));
        /* A resumed TLS 1.3 handshake (psk_dhe_ke) keeps only the key exchange. */
        printf("floor-resumed x25519_us=%.2f total_us=%.2f\n", x, x);

        gnutls_memset(peer_priv, 0, sizeof peer_priv);
        gnutls_free(client_cv_sig.data);
        gnutls_x509_trust_list_deinit(k.trust, 1);
        gnutls_pubkey_deinit(k.client_pub);
        gnutls_x509_crt_deinit(k.client_crt);
        gnutls_privkey_deinit(k.server_key);
        gnutls_privkey_deinit(k.client_key);
        return 0;
}

/* ---- echo server (stunnel's backend) ---------------------------------- */

static volatile sig_atomic_t echo_stop;

static void on_term(int sig) {
        echo_stop = 1;
}

static int run_echo_server(void) {
        struct sockaddr_in sa = { .sin_family = AF_INET };
        struct pollfd pfd[1 + ECHO_CLIENTS_MAX];
        size_t nfd = 1;
        char host[64];
        const char *colon;
        unsigned port;
        int one = 1;

        if (!arg_listen || !(colon = strrchr(arg_listen, ':')) || (size_t) (colon - arg_listen) >= sizeof host ||
            sscanf(colon + 1, "%u", &port) != 1 || port == 0 || port > 65535)
                die("echo-server needs --listen 127.0.0.1:PORT");
        memcpy(host, arg_listen, colon - arg_listen);
        host[colon - arg_listen] = 0;
        if (inet_pton(AF_INET, host, &sa.sin_addr) != 1 || ntohl(sa.sin_addr.s_addr) >> 24 != 127)
                die("only IPv4 loopback addresses: %s", host);
        sa.sin_port = htons(port);

        signal(SIGTERM, on_term);
        signal(SIGINT, on_term);
        signal(SIGPIPE, SIG_IGN);
        pfd[0].fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        pfd[0].events = POLLIN;
        if (pfd[0].fd < 0)
                die("socket: %m");
        (void) setsockopt(pfd[0].fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(pfd[0].fd, (struct sockaddr *) &sa, sizeof sa) < 0 || listen(pfd[0].fd, 128) < 0)
                die("bind/listen %s: %m", arg_listen);

        while (!echo_stop) {
                if (poll(pfd, nfd, 1000) < 0) {
                        if (errno == EINTR)
                                continue;
                        die("poll: %m");
                }
                if (pfd[0].revents & POLLIN) {
                        int fd = accept4(pfd[0].fd, NULL, NULL, SOCK_CLOEXEC);
                        if (fd >= 0) {
                                if (nfd >= ELEMENTSOF(pfd))
                                        close(fd);      /* over the bound */
                                else {
                                        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                                        pfd[nfd++] = (struct pollfd) { .fd = fd, .events = POLLIN };
                                }
                        }
                }
                for (size_t i = 1; i < nfd; i++) {
                        char buf[16384];
                        ssize_t n;

                        if (!pfd[i].revents)
                                continue;
                        n = read(pfd[i].fd, buf, sizeof buf);
                        if (n <= 0 || write(pfd[i].fd, buf, n) != n) {
                                close(pfd[i].fd);
                                pfd[i--] = pfd[--nfd];
                        }
                }
        }
        return 0;
}

/* ---- main --------------------------------------------------------------- */

static unsigned parse_unsigned(const char *s, unsigned max) {
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || *end || end == s || v == 0 || v > max)
                die("bad number: %s", s);
        return v;
}

int main(int argc, char *argv[]) {
        if (argc < 2)
                die("usage: bench-handshake client|floor|echo-server OPTIONS (see the source's head comment)");
        for (int i = 2; i < argc; i++) {
                const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

                if (!v)
                        die("%s needs a value", o);
                i++;
                if (streq(o, "--connect"))
                        arg_connect = v;
                else if (streq(o, "--ca"))
                        arg_ca = v;
                else if (streq(o, "--cert"))
                        arg_cert = v;
                else if (streq(o, "--key"))
                        arg_key = v;
                else if (streq(o, "--client-cert"))
                        arg_client_cert = v;
                else if (streq(o, "--client-key"))
                        arg_client_key = v;
                else if (streq(o, "--enroll"))
                        arg_enroll = v;
                else if (streq(o, "--frame"))
                        arg_frame = v;
                else if (streq(o, "--only"))
                        arg_only = v;
                else if (streq(o, "--listen"))
                        arg_listen = v;
                else if (streq(o, "--server-pid"))
                        arg_server_pid = parse_unsigned(v, INT32_MAX);
                else if (streq(o, "--count"))
                        arg_count = parse_unsigned(v, COUNT_MAX);
                else if (streq(o, "--seconds"))
                        arg_seconds = parse_unsigned(v, 3600);
                else
                        die("unknown option %s", o);
        }

        setvbuf(stdout, NULL, _IOLBF, 0);
        signal(SIGPIPE, SIG_IGN);
        if (streq(argv[1], "client"))
                return run_client();
        if (streq(argv[1], "floor"))
                return run_floor();
        if (streq(argv[1], "echo-server"))
                return run_echo_server();
        if (streq(argv[1], "enroll-test"))
                return run_enroll_test();
        die("unknown mode %s", argv[1]);
}
