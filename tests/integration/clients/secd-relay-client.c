/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * secd-relay-client: drives secd's relay and key server for the integration
 * tests (tests/integration/test_relay.py, test_keys.py, test_relay_crash.py,
 * test_secmsg.py).
 * TEST ONLY: it takes identity seeds from files or from its standard input.
 *
 *   secd-relay-client [OPTIONS] script            commands on stdin, one a line
 *   secd-relay-client [OPTIONS] COMMAND ARGS...   one command (seeds only as @FILE)
 *
 * Options:
 *   --enroll-socket PATH   --endpoint PATH|HOST:PORT   --timeout MS
 *   --pem CA CERT KEY      load credentials instead of enrolling
 *   --no-connect           do not enroll and connect before the first command
 *
 * Every command prints exactly one JSON object on one line:
 *   {"cmd":"send","ok":false,"errno":122,"error":"EDQUOT","secd":"..."}
 *
 * Arguments: SEED is @FILE (32 raw bytes or 64 hex digits) or, in a script,
 * 64 hex digits; KEY is a 64-hex public key (mailbox address); DATA is a
 * comma-separated list of parts, each hex bytes or fill:N (N pattern bytes,
 * see fill_pattern()), "-" for nothing; MSGID is 32 hex digits or "-"
 * (random).
 *
 * Library calls (libsecclient, the connection made at start):
 *   connect | disconnect | reconnect | ping
 *   pub SEED                           the public key of SEED
 *   register SEED                      {"created":bool,"key":HEX}
 *   send KEY MSGID DATA                {"server_id":N,"duplicate":bool}
 *   sendmany KEY N SIZE PREFIX         N sends of fill:SIZE, ids PREFIX(8 bytes)||u64 counter;
 *                                      stops at the first error: {"sent":N,"ids":[...]}
 *   fetch MAXCOUNT MAXBYTES WAITMS     {"messages":[{"id","cid","len","data"|"sha256"}],"elapsed_ms"}
 *   ack ID...                          {"deleted":N}
 *   drain                              fetch + ack until empty: {"messages":[...]}
 *   publish NOTK SPKID OTKID0          fresh X25519 keys: {"stored","identity_dh","spk","otks"}
 *   bundle KEY | count
 *   bundles KEY THREADS PER_THREAD     concurrent KEYS_BUNDLE, one connection per thread:
 *                                      {"otk_ids":[...],"no_otk":N,"errors":{"EAGAIN":N}}
 *   raw TYPE DATA                      one frame by secclient_send(), its reply:
 *                                      {"type":N,"code":N,"message":S,"payload":HEX}
 *   publish-bad FIELD NOTK             KEYS_PUBLISH built here for the registered seed,
 *                                      FIELD one of none (valid), identity_dh_sig, spk_sig,
 *                                      identity_dh, spk, spk_id, signer (another key), domain
 *                                      (signed without the domain string); sent raw
 *   crash-send KEY N SIZE SENDER LOG DEADLINE_MS [STOPFILE]
 *                                      N messages with client ids "CRSH"||SENDER u32||i u64,
 *                                      each retried (same id) across secd's deaths until
 *                                      acknowledged; then "CIDHEX SERVERID DUP" is appended
 *                                      to LOG and fsync'd. No new message once STOPFILE
 *                                      exists or DEADLINE_MS passed
 *   crash-recv SEED LOG DEADLINE_MS STOPFILE
 *                                      the crash test's consumer: register, then fetch (long
 *                                      poll) and ack until STOPFILE exists, across secd's
 *                                      deaths (reconnect, register again, ack again what was
 *                                      not acknowledged). Appends "R CIDHEX SERVERID SHA256"
 *                                      for each message received, fsync'd before its ACK is
 *                                      sent, and "A SERVERID" once secd acknowledged the ACK
 *   crash-bundles KEY LOG DELAY_MS DEADLINE_MS STOPFILE
 *                                      KEYS_BUNDLE for KEY every DELAY_MS across secd's deaths
 *                                      until no one-time pre-key is left or STOPFILE exists;
 *                                      appends "O OTKID" (or "N" for none) once a reply came
 *   sleep MS
 *
 * Raw TLS connections made here with the same credentials (gnutls), for
 * what the library does not let a caller do (up to 8 at once, index K):
 *   tls-open                           {"k":K} after handshake and a PING
 *   tls-exporter K                     this session's RFC 9266 exporter
 *   tls-register K SEED [SIGNER [EXPK [DOMAIN]]]
 *                                      REGISTER for SEED's key on K, the proof signed by
 *                                      SIGNER (default SEED) over connection EXPK's
 *                                      exporter (default K) with the domain string
 *                                      (DOMAIN "nodomain": without); prints the payload
 *                                      sent, so a test can replay its bytes
 *   tls-raw K TYPE DATA                one frame on K, its reply
 *   tls-send K TYPE DATA               one frame on K without waiting: {"request_id":N}
 *   tls-recv K                         the next frame on K: {"request_id":N,"type":N,...}
 *   tls-close K
 *
 * Exit status: 0 when every command succeeded, 1 otherwise, 2 usage.
 */

#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <json-c/json.h>
#include <nettle/eddsa.h>
#include <nettle/sha2.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "secclient-internal.h"
#include "secclient.h"

#define LINE_MAX_BYTES (4u << 20)
#define DATA_MAX_BYTES (17u << 20)
#define TLS_CONN_MAX 8
#define THREADS_MAX 64
#define PER_THREAD_MAX 1000
#define SENDMANY_MAX 100000
#define IDS_LISTED_MAX 2000
#define INLINE_DATA_MAX 256
#define REPLY_HEX_MAX (256u << 10)     /* reply payload bytes printed */
#define DRAIN_ROUNDS_MAX 10000
#define FRAME_HEADER 12
#define FRAME_PAYLOAD_LIMIT (16u << 20)
#define ARGS_MAX 1010

/* Frame types and the signed strings (common/frame.h, common/relay-proto.h), written out
 * here on purpose: the tool checks secd against the protocol text, not against its codec. */
#define T_PING 0x01
#define T_REGISTER 0x10
#define T_KEYS_PUBLISH 0x20
#define T_ERROR 0xFF
#define DOMAIN_REGISTER "secd relay register v1"
#define DOMAIN_IDENTITY_DH "secd keys identity-dh v1"
#define DOMAIN_SIGNED_PREKEY "secd keys signed-prekey v1"

typedef struct TlsConn {
        int fd;
        gnutls_session_t session;
        uint32_t next_id;
} TlsConn;

typedef struct Tool {
        secclient *c;
        const char *enroll_socket;
        const char *endpoint;
        unsigned timeout_ms;
        const char *pem[3];
        bool script;            /* seeds may be given as hex */
        bool have_seed;
        uint8_t seed[32];       /* the last one registered through the library */
        TlsConn *tls[TLS_CONN_MAX];
        gnutls_certificate_credentials_t cred;
} Tool;

/* ---- output ------------------------------------------------------------ */

static void emit(json_object *o) {
        puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        fflush(stdout);
        json_object_put(o);
}

static json_object *result_new(const char *cmd) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "cmd", json_object_new_string(cmd));
        return o;
}

static const char *errno_name(int r) {
        const char *n = strerrorname_np(r < 0 ? -r : r);
        return n ? n : "?";
}

/* ok:false with the errno and secd's message; returns r. */
static int result_errno(json_object *o, Tool *t, int r) {
        json_object_object_add(o, "ok", json_object_new_boolean(false));
        json_object_object_add(o, "errno", json_object_new_int(-r));
        json_object_object_add(o, "error", json_object_new_string(errno_name(r)));
        const char *m = t && t->c ? secclient_last_error(t->c) : NULL;
        if (m)
                json_object_object_add(o, "secd", json_object_new_string(m));
        return r;
}

static void add_hex(json_object *o, const char *key, const uint8_t *p, size_t n) {
        static const char digits[] = "0123456789abcdef";
        char *s = malloc(2 * n + 1);
        if (!s)
                abort();
        for (size_t i = 0; i < n; i++) {
                s[2 * i] = digits[p[i] >> 4];
                s[2 * i + 1] = digits[p[i] & 15];
        }
        s[2 * n] = 0;
        json_object_object_add(o, key, json_object_new_string(s));
        free(s);
}

static void add_u64(json_object *o, const char *key, uint64_t v) {
        json_object_object_add(o, key, json_object_new_uint64(v));
}

static void add_sha256(json_object *o, const char *key, const uint8_t *p, size_t n) {
        struct sha256_ctx ctx;
        uint8_t d[SHA256_DIGEST_SIZE];
        sha256_init(&ctx);
        sha256_update(&ctx, n, p);
        sha256_digest(&ctx, sizeof d, d);
        add_hex(o, key, d, sizeof d);
}

/* ---- argument parsing ---------------------------------------------------- */

static int hex_value(char ch) {
        if (ch >= '0' && ch <= '9')
                return ch - '0';
        if (ch >= 'a' && ch <= 'f')
                return ch - 'a' + 10;
        if (ch >= 'A' && ch <= 'F')
                return ch - 'A' + 10;
        return -1;
}

/* Exactly n bytes from 2n hex digits. */
static int parse_hex_exact(const char *s, uint8_t *out, size_t n) {
        if (strlen(s) != 2 * n)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                int hi = hex_value(s[2 * i]), lo = hex_value(s[2 * i + 1]);
                if (hi < 0 || lo < 0)
                        return -EINVAL;
                out[i] = (uint8_t) (hi << 4 | lo);
        }
        return 0;
}

static int parse_u64(const char *s, uint64_t max, uint64_t *ret) {
        char *end;
        if (!s || !*s || *s == '-')
                return -EINVAL;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 0);
        if (errno || *end || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

/*
 * The pattern a fill:N part and the crash sender write: byte k of a message
 * whose client id is cid is (cid[k % 16] + 7k) mod 256; plain fill:N uses
 * cid = 0..15.
 */
static void fill_pattern(uint8_t *p, size_t n, const uint8_t cid[16]) {
        for (size_t k = 0; k < n; k++)
                p[k] = (uint8_t) (cid[k % 16] + 7 * k);
}

static const uint8_t default_cid[16] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 };

/* DATA: "-" or parts separated by ',': hex, or fill:N. *ret is malloc'd (never NULL). */
static int parse_data(const char *spec, uint8_t **ret, size_t *ret_n) {
        size_t total = 0;
        const char *p = spec;

        if (strcmp(spec, "-") == 0)
                p = "";
        uint8_t *buf = malloc(1);
        if (!buf)
                return -ENOMEM;
        while (*p) {
                const char *end = strchrnul(p, ',');
                size_t len = (size_t) (end - p), add;
                bool fill = len > 5 && strncmp(p, "fill:", 5) == 0;
                if (fill) {
                        char num[24];
                        uint64_t v;
                        if (len - 5 >= sizeof num)
                                goto bad;
                        memcpy(num, p + 5, len - 5);
                        num[len - 5] = 0;
                        if (parse_u64(num, DATA_MAX_BYTES, &v) < 0)
                                goto bad;
                        add = (size_t) v;
                } else {
                        if (len % 2)
                                goto bad;
                        add = len / 2;
                }
                if (add > DATA_MAX_BYTES - total)
                        goto bad;
                uint8_t *nb = realloc(buf, total + add + 1);
                if (!nb) {
                        free(buf);
                        return -ENOMEM;
                }
                buf = nb;
                if (fill)
                        fill_pattern(buf + total, add, default_cid);
                else
                        for (size_t i = 0; i < add; i++) {
                                int hi = hex_value(p[2 * i]), lo = hex_value(p[2 * i + 1]);
                                if (hi < 0 || lo < 0)
                                        goto bad;
                                buf[total + i] = (uint8_t) (hi << 4 | lo);
                        }
                total += add;
                p = *end ? end + 1 : end;
        }
        *ret = buf;
        *ret_n = total;
        return 0;
bad:
        free(buf);
        return -EINVAL;
}

/* SEED: @FILE (32 raw bytes or 64 hex digits, optional newline) or, in a script, 64 hex digits. */
static int parse_seed(Tool *t, const char *s, uint8_t seed[32]) {
        if (s[0] != '@') {
                if (!t->script)
                        return -EINVAL; /* never a secret in argv */
                return parse_hex_exact(s, seed, 32);
        }
        _cleanup_close_ int fd = open(s + 1, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        char buf[72];
        ssize_t n = read(fd, buf, sizeof buf - 1);
        if (n < 0)
                return -errno;
        int r = -EINVAL;
        if (n == 32) {
                memcpy(seed, buf, 32);
                r = 0;
        } else if (n == 64 || (n == 65 && buf[64] == '\n')) {
                buf[64] = 0;
                r = parse_hex_exact(buf, seed, 32);
        }
        explicit_bzero(buf, sizeof buf);
        return r;
}

static int parse_key(const char *s, uint8_t key[32]) {
        return parse_hex_exact(s, key, 32);
}

static uint64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static void put_be32(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t) (v >> 24);
        p[1] = (uint8_t) (v >> 16);
        p[2] = (uint8_t) (v >> 8);
        p[3] = (uint8_t) v;
}

static void put_be64(uint8_t *p, uint64_t v) {
        put_be32(p, (uint32_t) (v >> 32));
        put_be32(p + 4, (uint32_t) v);
}

static uint32_t get_be32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

/* ---- the library connection ----------------------------------------------- */

static int handle_setup(Tool *t, secclient **ret) {
        secclient *c = NULL;
        int r = secclient_new(&c);
        if (r < 0)
                return r;
        if (t->enroll_socket)
                r = secclient_set_enroll_socket(c, t->enroll_socket);
        if (r >= 0 && t->endpoint)
                r = secclient_set_endpoint(c, t->endpoint);
        if (r >= 0 && t->timeout_ms)
                r = secclient_set_timeout(c, t->timeout_ms);
        if (r < 0) {
                secclient_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

static int read_whole_file(const char *path, char **ret) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        size_t cap = 65536, n = 0;
        char *buf = malloc(cap + 1);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t k = read(fd, buf + n, cap - n);
                if (k < 0) {
                        explicit_bzero(buf, n);
                        free(buf);
                        return -errno;
                }
                if (k == 0)
                        break;
                n += (size_t) k;
                if (n == cap) {
                        explicit_bzero(buf, n);
                        free(buf);
                        return -EFBIG;
                }
        }
        buf[n] = 0;
        *ret = buf;
        return 0;
}

static void free_secret(char *s) {
        if (s) {
                explicit_bzero(s, strlen(s));
                free(s);
        }
}

/* Credentials for the library handle: PEM files, or enrollment at connect. */
static int tool_load_pem(Tool *t, secclient *c) {
        char *pem[3] = {};
        int r = 0;
        for (int i = 0; i < 3 && r >= 0; i++)
                r = read_whole_file(t->pem[i], &pem[i]);
        if (r >= 0)
                r = secclient_load_credentials(c, pem[0], pem[1], pem[2]);
        for (int i = 0; i < 3; i++)
                free_secret(pem[i]);
        return r;
}

/*
 * Hand the main handle's credentials to another handle or to gnutls:
 * through secclient_creds_send() over a socketpair (the library's only way
 * out for them). Either into another handle, or parsed into PEMs.
 */
static int creds_handover(Tool *t, secclient *to, char **ret_ca, char **ret_cert, char **ret_key) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return -errno;
        _cleanup_close_ int a = sv[0], b = sv[1];
        int r = secclient_creds_send(t->c, a);
        if (r < 0)
                return r;
        a = safe_close(a);
        if (to)
                return secclient_creds_recv(to, b);

        uint8_t hdr[4];
        if (recv(b, hdr, 4, MSG_WAITALL) != 4)
                return -EBADMSG;
        uint32_t len = get_be32(hdr);
        if (len == 0 || len > SECCLIENT_CREDS_BUNDLE_MAX)
                return -EMSGSIZE;
        char *text = malloc(len);
        if (!text)
                return -ENOMEM;
        ssize_t n = recv(b, text, len, MSG_WAITALL);
        r = n == (ssize_t) len ? creds_bundle_parse(text, len, ret_ca, ret_cert, ret_key) : -EBADMSG;
        explicit_bzero(text, len);
        free(text);
        return r;
}

/* ---- raw TLS connections ------------------------------------------------------ */

static TlsConn *tls_conn_free(TlsConn *k) {
        if (!k)
                return NULL;
        if (k->session)
                gnutls_deinit(k->session);
        safe_close(k->fd);
        free(k);
        return NULL;
}

static int tls_write_all(TlsConn *k, const uint8_t *p, size_t n) {
        while (n > 0) {
                ssize_t w = gnutls_record_send(k->session, p, n);
                if (w == GNUTLS_E_AGAIN || w == GNUTLS_E_INTERRUPTED)
                        continue;
                if (w < 0)
                        return -EPIPE;
                p += w;
                n -= (size_t) w;
        }
        return 0;
}

static int tls_read_exact(TlsConn *k, uint8_t *p, size_t n) {
        while (n > 0) {
                ssize_t g = gnutls_record_recv(k->session, p, n);
                if (g == GNUTLS_E_AGAIN || g == GNUTLS_E_INTERRUPTED)
                        continue;
                if (g == GNUTLS_E_TIMEDOUT)
                        return -ETIMEDOUT;
                if (g == 0)
                        return -ECONNRESET;
                if (g < 0)
                        return -EPROTO;
                p += g;
                n -= (size_t) g;
        }
        return 0;
}

static int tls_send_frame(TlsConn *k, uint8_t type, const uint8_t *payload, size_t n, uint32_t *ret_id) {
        if (n > FRAME_PAYLOAD_LIMIT)
                return -EMSGSIZE;
        uint8_t *f = malloc(FRAME_HEADER + n);
        if (!f)
                return -ENOMEM;
        uint32_t id = ++k->next_id;
        f[0] = 'S';
        f[1] = 'D';
        f[2] = 1;
        f[3] = type;
        put_be32(f + 4, id);
        put_be32(f + 8, (uint32_t) n);
        if (n)
                memcpy(f + FRAME_HEADER, payload, n);
        int r = tls_write_all(k, f, FRAME_HEADER + n);
        free(f);
        if (r >= 0 && ret_id)
                *ret_id = id;
        return r;
}

/* One whole frame; the payload is malloc'd (never NULL). */
static int tls_recv_frame(TlsConn *k, uint8_t *ret_type, uint32_t *ret_id, uint8_t **ret, size_t *ret_n) {
        uint8_t h[FRAME_HEADER];
        int r = tls_read_exact(k, h, sizeof h);
        if (r < 0)
                return r;
        if (h[0] != 'S' || h[1] != 'D' || h[2] != 1)
                return -EBADMSG;
        uint32_t len = get_be32(h + 8);
        if (len > FRAME_PAYLOAD_LIMIT)
                return -EMSGSIZE;
        uint8_t *p = malloc(len + 1);
        if (!p)
                return -ENOMEM;
        r = tls_read_exact(k, p, len);
        if (r < 0) {
                free(p);
                return r;
        }
        *ret_type = h[3];
        *ret_id = get_be32(h + 4);
        *ret = p;
        *ret_n = len;
        return 0;
}

static int tls_exporter(TlsConn *k, uint8_t out[32]) {
        gnutls_datum_t cb = {};
        int g = gnutls_session_channel_binding(k->session, GNUTLS_CB_TLS_EXPORTER, &cb);
        if (g < 0)
                return -EPROTO;
        int r = cb.size == 32 ? 0 : -EPROTO;
        if (r >= 0)
                memcpy(out, cb.data, 32);
        gnutls_free(cb.data);
        return r;
}

/* Reply to request id (others, which the tool never has in flight, are an error). */
static int tls_request(TlsConn *k, uint8_t type, const uint8_t *payload, size_t n, uint8_t *ret_type,
                       uint8_t **ret, size_t *ret_n) {
        uint32_t id, rid;
        int r = tls_send_frame(k, type, payload, n, &id);
        if (r < 0)
                return r;
        r = tls_recv_frame(k, ret_type, &rid, ret, ret_n);
        if (r < 0)
                return r;
        if (rid != id && !(*ret_type == T_ERROR && rid == 0)) {
                free(*ret);
                return -EBADMSG;
        }
        return 0;
}

static int tool_tls_cred(Tool *t) {
        if (t->cred)
                return 0;
        char *ca = NULL, *cert = NULL, *key = NULL;
        int r;
        if (t->pem[0]) {
                r = read_whole_file(t->pem[0], &ca);
                if (r >= 0)
                        r = read_whole_file(t->pem[1], &cert);
                if (r >= 0)
                        r = read_whole_file(t->pem[2], &key);
        } else
                r = creds_handover(t, NULL, &ca, &cert, &key);
        if (r >= 0) {
                gnutls_datum_t ca_d = { (unsigned char *) ca, (unsigned) strlen(ca) };
                gnutls_datum_t cert_d = { (unsigned char *) cert, (unsigned) strlen(cert) };
                gnutls_datum_t key_d = { (unsigned char *) key, (unsigned) strlen(key) };
                r = gnutls_certificate_allocate_credentials(&t->cred) < 0 ? -ENOMEM : 0;
                if (r >= 0 && gnutls_certificate_set_x509_trust_mem(t->cred, &ca_d, GNUTLS_X509_FMT_PEM) <= 0)
                        r = -EBADMSG;
                if (r >= 0 && gnutls_certificate_set_x509_key_mem2(t->cred, &cert_d, &key_d,
                                                                   GNUTLS_X509_FMT_PEM, NULL, 0) < 0)
                        r = -EKEYREJECTED;
                if (r < 0 && t->cred) {
                        gnutls_certificate_free_credentials(t->cred);
                        t->cred = NULL;
                }
        }
        free_secret(ca);
        free_secret(cert);
        free_secret(key);
        return r;
}

static int unix_connect(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(path) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

static int tls_open(Tool *t, TlsConn **ret) {
        const char *path = t->endpoint ? t->endpoint : getenv("SECD_SOCKET");
        if (!path || !strchr(path, '/'))
                return -EINVAL;  /* the raw connections speak to Unix endpoints only */
        int r = tool_tls_cred(t);
        if (r < 0)
                return r;
        TlsConn *k = calloc(1, sizeof *k);
        if (!k)
                return -ENOMEM;
        k->fd = unix_connect(path);
        if (k->fd < 0) {
                r = k->fd;
                free(k);
                return r;
        }
        static const gnutls_typed_vdata_st vdata[] = {
                { .type = GNUTLS_DT_KEY_PURPOSE_OID, .data = (unsigned char *) GNUTLS_KP_TLS_WWW_SERVER },
        };
        if (gnutls_init(&k->session, GNUTLS_CLIENT | GNUTLS_NO_SIGNAL) < 0 ||
            gnutls_priority_set_direct(k->session, "NORMAL:-VERS-ALL:+VERS-TLS1.3", NULL) < 0 ||
            gnutls_credentials_set(k->session, GNUTLS_CRD_CERTIFICATE, t->cred) < 0) {
                tls_conn_free(k);
                return -ENOMEM;
        }
        gnutls_session_set_verify_cert2(k->session, (gnutls_typed_vdata_st *) vdata, 1, 0);
        gnutls_transport_set_int(k->session, k->fd);
        gnutls_handshake_set_timeout(k->session, t->timeout_ms ? t->timeout_ms : 10000);
        gnutls_record_set_timeout(k->session, t->timeout_ms ? t->timeout_ms : 10000);
        int g;
        do
                g = gnutls_handshake(k->session);
        while (g < 0 && !gnutls_error_is_fatal(g));
        if (g < 0) {
                tls_conn_free(k);
                return g == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR ? -EKEYREJECTED : -ECONNRESET;
        }
        /* Admission is judged after the handshake: a PING round trip tells. */
        uint8_t type, *p = NULL;
        size_t n;
        r = tls_request(k, T_PING, (const uint8_t *) "probe", 5, &type, &p, &n);
        if (r >= 0 && (type != (T_PING | 0x80) || n != 5 || memcmp(p, "probe", 5) != 0))
                r = -EACCES;
        free(p);
        if (r < 0) {
                tls_conn_free(k);
                return r;
        }
        *ret = k;
        return 0;
}

/* ---- commands --------------------------------------------------------------- */

typedef struct Command Command;
struct Command {
        const char *name;
        unsigned min_args, max_args;
        int (*run)(Tool *t, json_object *o, char **args, unsigned n);
};

static int need_conn(Tool *t) {
        return t->c ? 0 : -ENOTCONN;
}

static int cmd_connect(Tool *t, json_object *o, char **args, unsigned n) {
        return secclient_connect(t->c);
}

static int cmd_disconnect(Tool *t, json_object *o, char **args, unsigned n) {
        secclient_disconnect(t->c);
        return 0;
}

static int cmd_reconnect(Tool *t, json_object *o, char **args, unsigned n) {
        secclient_disconnect(t->c);
        return secclient_connect(t->c);
}

static int cmd_ping(Tool *t, json_object *o, char **args, unsigned n) {
        return secclient_ping(t->c, "relay-client", 12);
}

static int cmd_sleep(Tool *t, json_object *o, char **args, unsigned n) {
        uint64_t ms;
        if (parse_u64(args[0], 60000, &ms) < 0)
                return -EINVAL;
        sleep_ms((unsigned) ms);
        return 0;
}

static int cmd_pub(Tool *t, json_object *o, char **args, unsigned n) {
        uint8_t seed[32], pub[32];
        int r = parse_seed(t, args[0], seed);
        if (r >= 0)
                r = secclient_identity_public(seed, pub);
        explicit_bzero(seed, sizeof seed);
        if (r >= 0)
                add_hex(o, "key", pub, 32);
        return r;
}

static int cmd_register(Tool *t, json_object *o, char **args, unsigned n) {
        uint8_t seed[32], pub[32];
        int created = 0;
        int r = parse_seed(t, args[0], seed);
        if (r < 0)
                return r;
        r = secclient_identity_public(seed, pub);
        if (r >= 0)
                r = secclient_register(t->c, seed, &created);
        if (r >= 0) {
                memcpy(t->seed, seed, 32);
                t->have_seed = true;
                json_object_object_add(o, "created", json_object_new_boolean(created));
                add_hex(o, "key", pub, 32);
        }
        explicit_bzero(seed, sizeof seed);
        return r;
}

static int cmd_send(Tool *t, json_object *o, char **args, unsigned n) {
        uint8_t to[32], cid[16];
        _cleanup_free_ uint8_t *data = NULL;
        size_t len;
        uint64_t sid = 0;
        int dup = 0;
        bool random_id = strcmp(args[1], "-") == 0;
        if (parse_key(args[0], to) < 0 || (!random_id && parse_hex_exact(args[1], cid, 16) < 0) ||
            parse_data(args[2], &data, &len) < 0)
                return -EINVAL;
        int r = secclient_relay_send(t->c, to, random_id ? NULL : cid, data, len, &sid, &dup);
        if (r >= 0) {
                add_u64(o, "server_id", sid);
                json_object_object_add(o, "duplicate", json_object_new_boolean(dup));
        }
        return r;
}

static int cmd_sendmany(Tool *t, json_object *o, char **args, unsigned n) {
        uint8_t to[32], cid[16] = {}, prefix[8] = {};
        uint64_t count, size;
        size_t plen = strlen(args[3]) / 2;
        if (parse_key(args[0], to) < 0 || parse_u64(args[1], SENDMANY_MAX, &count) < 0 ||
            parse_u64(args[2], DATA_MAX_BYTES, &size) < 0 || size == 0 || plen > 8 ||
            parse_hex_exact(args[3], prefix, plen) < 0)
                return -EINVAL;
        _cleanup_free_ uint8_t *data = malloc(size);
        if (!data)
                return -ENOMEM;
        json_object *ids = json_object_new_array();
        json_object_object_add(o, "ids", ids);
        uint64_t sent = 0;
        int r = 0;
        uint64_t t0 = now_ms();
        for (; sent < count; sent++) {
                uint64_t sid;
                int dup;
                memcpy(cid, prefix, 8);
                put_be64(cid + 8, sent);
                fill_pattern(data, size, cid);
                r = secclient_relay_send(t->c, to, cid, data, size, &sid, &dup);
                if (r < 0)
                        break;
                if (sent < IDS_LISTED_MAX)
                        json_object_array_add(ids, json_object_new_uint64(sid));
        }
        add_u64(o, "sent", sent);
        add_u64(o, "elapsed_ms", now_ms() - t0);
        return r;
}

static void add_messages(json_object *arr, const secclient_message *m, size_t n) {
        for (size_t i = 0; i < n; i++) {
                json_object *e = json_object_new_object();
                add_u64(e, "id", m[i].id);
                add_hex(e, "cid", m[i].client_msg_id, 16);
                add_u64(e, "len", m[i].len);
                add_u64(e, "received_usec", m[i].received_usec);
                if (m[i].len <= INLINE_DATA_MAX)
                        add_hex(e, "data", m[i].data, m[i].len);
                add_sha256(e, "sha256", m[i].data, m[i].len);
                json_object_array_add(arr, e);
        }
}

static int cmd_fetch(Tool *t, json_object *o, char **args, unsigned n) {
        uint64_t count, bytes, wait;
        secclient_message *m = NULL;
        size_t k = 0;
        if (parse_u64(args[0], UINT32_MAX, &count) < 0 || parse_u64(args[1], UINT32_MAX, &bytes) < 0 ||
            parse_u64(args[2], 600000, &wait) < 0)
                return -EINVAL;
        uint64_t t0 = now_ms();
        int r = secclient_relay_fetch(t->c, (unsigned) count, (size_t) bytes, (unsigned) wait, &m, &k);
        add_u64(o, "elapsed_ms", now_ms() - t0);
        if (r < 0)
                return r;
        json_object *arr = json_object_new_array();
        add_messages(arr, m, k);
        json_object_object_add(o, "messages", arr);
        secclient_messages_free(m, k);
        return 0;
}

static int cmd_ack(Tool *t, json_object *o, char **args, unsigned n) {
        uint64_t ids[ARGS_MAX];
        unsigned deleted = 0;
        for (unsigned i = 0; i < n; i++)
                if (parse_u64(args[i], UINT64_MAX, &ids[i]) < 0)
                        return -EINVAL;
        int r = secclient_relay_ack(t->c, ids, n, &deleted);
        if (r >= 0)
                add_u64(o, "deleted", deleted);
        return r;
}

static int cmd_drain(Tool *t, json_object *o, char **args, unsigned n) {
        json_object *arr = json_object_new_array();
        json_object_object_add(o, "messages", arr);
        for (unsigned round = 0; round < DRAIN_ROUNDS_MAX; round++) {
                secclient_message *m = NULL;
                size_t k = 0;
                int r = secclient_relay_fetch(t->c, SECCLIENT_FETCH_MAX, 0, 0, &m, &k);
                if (r < 0)
                        return r;
                if (k == 0)
                        return 0;
                add_messages(arr, m, k);
                uint64_t *ids = calloc(k, sizeof *ids);
                if (!ids) {
                        secclient_messages_free(m, k);
                        return -ENOMEM;
                }
                for (size_t i = 0; i < k; i++)
                        ids[i] = m[i].id;
                secclient_messages_free(m, k);
                r = secclient_relay_ack(t->c, ids, k, NULL);
                free(ids);
                if (r < 0)
                        return r;
        }
        return -E2BIG;
}

static int cmd_publish(Tool *t, json_object *o, char **args, unsigned n) {
        uint64_t notk, spk_id, otk0;
        if (parse_u64(args[0], SECCLIENT_ONE_TIME_MAX + 10, &notk) < 0 || parse_u64(args[1], UINT32_MAX, &spk_id) < 0 ||
            parse_u64(args[2], UINT32_MAX, &otk0) < 0)
                return -EINVAL;
        uint8_t priv[32], idh[32], spk[32];
        secclient_prekey otks[SECCLIENT_ONE_TIME_MAX + 10];
        int r = secclient_x25519_generate(priv, idh);
        if (r >= 0)
                r = secclient_x25519_generate(priv, spk);
        for (uint64_t i = 0; r >= 0 && i < notk; i++) {
                otks[i].id = (uint32_t) (otk0 + i);
                r = secclient_x25519_generate(priv, otks[i].public_key);
        }
        explicit_bzero(priv, sizeof priv);
        if (r < 0)
                return r;
        unsigned stored = 0;
        r = secclient_keys_publish(t->c, idh, (uint32_t) spk_id, spk, otks, notk, &stored);
        if (r < 0)
                return r;
        add_u64(o, "stored", stored);
        add_hex(o, "identity_dh", idh, 32);
        add_hex(o, "spk", spk, 32);
        json_object *arr = json_object_new_array();
        for (uint64_t i = 0; i < notk; i++) {
                json_object *e = json_object_new_object();
                add_u64(e, "id", otks[i].id);
                add_hex(e, "key", otks[i].public_key, 32);
                json_object_array_add(arr, e);
        }
        json_object_object_add(o, "otks", arr);
        return 0;
}

static void add_bundle(json_object *o, const secclient_bundle *b) {
        add_hex(o, "identity_key", b->identity_key, 32);
        add_hex(o, "identity_dh", b->identity_dh, 32);
        add_u64(o, "spk_id", b->signed_prekey_id);
        add_hex(o, "spk", b->signed_prekey, 32);
        json_object_object_add(o, "has_otk", json_object_new_boolean(b->has_one_time));
        if (b->has_one_time) {
                add_u64(o, "otk_id", b->one_time.id);
                add_hex(o, "otk", b->one_time.public_key, 32);
        }
}

static int cmd_bundle(Tool *t, json_object *o, char **args, unsigned n) {
        uint8_t key[32];
        secclient_bundle b;
        if (parse_key(args[0], key) < 0)
                return -EINVAL;
        int r = secclient_keys_bundle(t->c, key, &b);
        if (r >= 0)
                add_bundle(o, &b);
        return r;
}

static int cmd_count(Tool *t, json_object *o, char **args, unsigned n) {
        unsigned count = 0;
        int r = secclient_keys_count(t->c, &count);
        if (r >= 0)
                add_u64(o, "count", count);
        return r;
}

typedef struct BundleWorker {
        pthread_t thread;
        secclient *c;
        uint8_t key[32];
        unsigned per;
        int setup_error;
        uint32_t otk_ids[PER_THREAD_MAX];
        unsigned n_otk, no_otk;
        int errors[PER_THREAD_MAX];
        unsigned n_errors;
} BundleWorker;

/* Everyone connects first, then all fetch at once. */
static pthread_mutex_t bundle_start_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t bundle_start_cond = PTHREAD_COND_INITIALIZER;
static bool bundle_start;

static void *bundle_worker(void *userdata) {
        BundleWorker *w = userdata;
        pthread_mutex_lock(&bundle_start_lock);
        while (!bundle_start)
                pthread_cond_wait(&bundle_start_cond, &bundle_start_lock);
        pthread_mutex_unlock(&bundle_start_lock);
        if (w->setup_error < 0)
                return NULL;
        for (unsigned i = 0; i < w->per; i++) {
                secclient_bundle b;
                int r = secclient_keys_bundle(w->c, w->key, &b);
                if (r < 0)
                        w->errors[w->n_errors++] = r;
                else if (b.has_one_time)
                        w->otk_ids[w->n_otk++] = b.one_time.id;
                else
                        w->no_otk++;
        }
        return NULL;
}

static int cmd_bundles(Tool *t, json_object *o, char **args, unsigned n) {
        uint8_t key[32];
        uint64_t threads, per;
        if (parse_key(args[0], key) < 0 || parse_u64(args[1], THREADS_MAX, &threads) < 0 || threads == 0 ||
            parse_u64(args[2], PER_THREAD_MAX, &per) < 0)
                return -EINVAL;
        BundleWorker *w = calloc(threads, sizeof *w);
        if (!w)
                return -ENOMEM;
        int r = 0;
        for (uint64_t i = 0; i < threads; i++) {
                memcpy(w[i].key, key, 32);
                w[i].per = (unsigned) per;
                w[i].setup_error = handle_setup(t, &w[i].c);
                if (w[i].setup_error >= 0)
                        w[i].setup_error = creds_handover(t, w[i].c, NULL, NULL, NULL);
                if (w[i].setup_error >= 0)
                        w[i].setup_error = secclient_connect(w[i].c);
        }
        bool *started = calloc(threads, sizeof *started);
        if (!started) {
                for (uint64_t i = 0; i < threads; i++)
                        secclient_free(w[i].c);
                free(w);
                return -ENOMEM;
        }
        bundle_start = false;
        for (uint64_t i = 0; i < threads; i++) {
                started[i] = pthread_create(&w[i].thread, NULL, bundle_worker, &w[i]) == 0;
                if (!started[i] && w[i].setup_error >= 0)
                        w[i].setup_error = -EAGAIN;
        }
        uint64_t t0 = now_ms();
        pthread_mutex_lock(&bundle_start_lock);
        bundle_start = true;
        pthread_cond_broadcast(&bundle_start_cond);
        pthread_mutex_unlock(&bundle_start_lock);
        for (uint64_t i = 0; i < threads; i++)
                if (started[i])
                        pthread_join(w[i].thread, NULL);
        add_u64(o, "elapsed_ms", now_ms() - t0);
        free(started);

        json_object *ids = json_object_new_array(), *errors = json_object_new_object();
        uint64_t no_otk = 0;
        for (uint64_t i = 0; i < threads; i++) {
                if (w[i].setup_error < 0) {
                        r = w[i].setup_error;
                        json_object_object_add(o, "setup_error", json_object_new_string(errno_name(r)));
                }
                for (unsigned j = 0; j < w[i].n_otk; j++)
                        json_object_array_add(ids, json_object_new_uint64(w[i].otk_ids[j]));
                no_otk += w[i].no_otk;
                for (unsigned j = 0; j < w[i].n_errors; j++) {
                        const char *name = errno_name(w[i].errors[j]);
                        json_object *c = NULL;
                        int64_t v = json_object_object_get_ex(errors, name, &c) ? json_object_get_int64(c) : 0;
                        json_object_object_add(errors, name, json_object_new_int64(v + 1));
                }
                secclient_disconnect(w[i].c);
                secclient_free(w[i].c);
        }
        free(w);
        json_object_object_add(o, "otk_ids", ids);
        add_u64(o, "no_otk", no_otk);
        json_object_object_add(o, "errors", errors);
        return r;
}

/* Describe a reply frame: type, ERROR code and message, the payload. */
static void add_reply(json_object *o, uint8_t type, const uint8_t *p, size_t len) {
        json_object_object_add(o, "type", json_object_new_int(type));
        add_u64(o, "len", len);
        add_hex(o, "payload", p, MIN(len, (size_t) REPLY_HEX_MAX));
        if (len > REPLY_HEX_MAX)
                json_object_object_add(o, "truncated", json_object_new_boolean(true));
        if (type == T_ERROR) {
                uint16_t code;
                char *msg = NULL;
                if (secclient_error_parse(p, len, &code, &msg) >= 0) {
                        json_object_object_add(o, "code", json_object_new_int(code));
                        json_object_object_add(o, "message", json_object_new_string(msg));
                        free(msg);
                } else
                        json_object_object_add(o, "code", json_object_new_int(-1));
        }
}

/* One raw frame through the library and its reply (replies to others are skipped, bounded). */
static int lib_request(Tool *t, json_object *o, uint8_t type, const uint8_t *payload, size_t len) {
        uint32_t id;
        int r = secclient_send(t->c, type, payload, len, &id);
        if (r < 0)
                return r;
        for (int i = 0; i < 16; i++) {
                uint8_t rtype;
                uint32_t rid;
                void *p = NULL;
                size_t n;
                r = secclient_recv(t->c, &rtype, &rid, &p, &n);
                if (r < 0)
                        return r;
                bool mine = rid == id || (rtype == T_ERROR && rid == 0);
                if (mine) {
                        add_reply(o, rtype, p, n);
                        json_object_object_add(o, "request_id_matches", json_object_new_boolean(rid == id));
                }
                free(p);
                if (mine)
                        return 0;
        }
        return -EBADMSG;
}

static int parse_type(const char *s, uint8_t *ret) {
        uint64_t v;
        if (parse_u64(s, 0xff, &v) < 0)
                return -EINVAL;
        *ret = (uint8_t) v;
        return 0;
}

static int cmd_raw(Tool *t, json_object *o, char **args, unsigned n) {
        uint8_t type;
        _cleanup_free_ uint8_t *data = NULL;
        size_t len;
        if (parse_type(args[0], &type) < 0 || parse_data(args[1], &data, &len) < 0)
                return -EINVAL;
        return lib_request(t, o, type, data, len);
}

static void ed25519_sign(const uint8_t seed[32], const uint8_t *msg, size_t n, uint8_t sig[64]) {
        uint8_t pub[32];
        ed25519_sha512_public_key(pub, seed);
        ed25519_sha512_sign(pub, seed, n, msg, sig);
}

static int cmd_publish_bad(Tool *t, json_object *o, char **args, unsigned n) {
        static const char *const fields[] = { "none", "identity_dh_sig", "spk_sig", "identity_dh", "spk",
                                               "spk_id", "signer", "domain" };
        unsigned field = ELEMENTSOF(fields);
        uint64_t notk;
        for (unsigned i = 0; i < ELEMENTSOF(fields); i++)
                if (strcmp(args[0], fields[i]) == 0)
                        field = i;
        if (field == ELEMENTSOF(fields) || parse_u64(args[1], 100, &notk) < 0)
                return -EINVAL;
        if (!t->have_seed)
                return -ENOKEY;

        uint8_t seed[32], other[32], idh[32], spk[32], msg[128];
        uint32_t spk_id = 7;
        if (getrandom(other, 32, 0) != 32 || getrandom(idh, 32, 0) != 32 || getrandom(spk, 32, 0) != 32)
                return -EIO;
        memcpy(seed, field == 6 ? other : t->seed, 32);
        bool domain = field != 7;

        size_t len = 198 + 36 * notk;
        _cleanup_free_ uint8_t *p = malloc(len);
        if (!p)
                return -ENOMEM;
        size_t m = 0, d;
        /* identity_dh, its signature */
        d = domain ? strlen(DOMAIN_IDENTITY_DH) : 0;
        memcpy(msg, DOMAIN_IDENTITY_DH, d);
        memcpy(msg + d, idh, 32);
        memcpy(p, idh, 32);
        ed25519_sign(seed, msg, d + 32, p + 32);
        /* spk_id, spk, its signature */
        d = domain ? strlen(DOMAIN_SIGNED_PREKEY) : 0;
        memcpy(msg, DOMAIN_SIGNED_PREKEY, d);
        put_be32(msg + d, spk_id);
        memcpy(msg + d + 4, spk, 32);
        put_be32(p + 96, spk_id);
        memcpy(p + 100, spk, 32);
        ed25519_sign(seed, msg, d + 36, p + 132);
        p[196] = (uint8_t) (notk >> 8);
        p[197] = (uint8_t) notk;
        m = 198;
        for (uint64_t i = 0; i < notk; i++) {
                put_be32(p + m, (uint32_t) (1000 + i));
                if (getrandom(p + m + 4, 32, 0) != 32)
                        return -EIO;
                m += 36;
        }
        explicit_bzero(seed, sizeof seed);
        explicit_bzero(other, sizeof other);
        /* Spoil one field after signing. */
        switch (field) {
        case 1: p[32 + 10] ^= 0x01; break;
        case 2: p[132 + 63] ^= 0x80; break;
        case 3: p[5] ^= 0x20; break;
        case 4: p[100 + 31] ^= 0x01; break;
        case 5: p[99] ^= 0x01; break;
        default: break;
        }
        return lib_request(t, o, T_KEYS_PUBLISH, p, len);
}

/* ---- the crash-test sender ---------------------------------------------------- */

static bool transient(int r) {
        return r == -ECONNRESET || r == -ECONNREFUSED || r == -ENOENT || r == -ENOTCONN || r == -EPIPE ||
               r == -ETIMEDOUT || r == -ECONNABORTED || r == -EPROTO || r == -EIO || r == -ESHUTDOWN ||
               r == -EAGAIN || r == -EBUSY || r == -EDQUOT;
}

static int cmd_crash_send(Tool *t, json_object *o, char **args, unsigned n) {
        uint8_t to[32], cid[16];
        uint64_t count, size, sender, deadline_ms;
        if (parse_key(args[0], to) < 0 || parse_u64(args[1], SENDMANY_MAX, &count) < 0 ||
            parse_u64(args[2], 1u << 20, &size) < 0 || size == 0 || parse_u64(args[3], UINT32_MAX, &sender) < 0 ||
            parse_u64(args[5], 600000, &deadline_ms) < 0)
                return -EINVAL;
        _cleanup_close_ int log_fd = open(args[4], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (log_fd < 0)
                return -errno;
        _cleanup_free_ uint8_t *data = malloc(size);
        if (!data)
                return -ENOMEM;
        uint64_t deadline = now_ms() + deadline_ms, acked = 0, retries = 0, reconnects = 0, dups = 0;
        json_object *errors = json_object_new_object();
        json_object_object_add(o, "errors", errors);
        int r = 0;
        for (uint64_t i = 0; i < count && r >= 0; i++) {
                if (now_ms() >= deadline || (n > 6 && access(args[6], F_OK) == 0))
                        break;
                memcpy(cid, "CRSH", 4);
                put_be32(cid + 4, (uint32_t) sender);
                put_be64(cid + 8, i);
                fill_pattern(data, size, cid);
                for (;;) {
                        uint64_t sid;
                        int dup;
                        r = secclient_relay_send(t->c, to, cid, data, size, &sid, &dup);
                        if (r >= 0) {
                                char line[80];
                                int k = 0;
                                for (int j = 0; j < 16; j++)
                                        k += snprintf(line + k, sizeof line - (size_t) k, "%02x", cid[j]);
                                k += snprintf(line + k, sizeof line - (size_t) k, " %llu %d\n",
                                              (unsigned long long) sid, dup);
                                if (write(log_fd, line, (size_t) k) != k || fsync(log_fd) < 0)
                                        return -EIO;
                                acked++;
                                dups += dup != 0;
                                break;
                        }
                        const char *name = errno_name(r);
                        json_object *c = NULL;
                        int64_t v = json_object_object_get_ex(errors, name, &c) ? json_object_get_int64(c) : 0;
                        json_object_object_add(errors, name, json_object_new_int64(v + 1));
                        if (!transient(r) || now_ms() >= deadline)
                                break;
                        retries++;
                        sleep_ms(20);
                        if (r != -EAGAIN && r != -EDQUOT && r != -EBUSY) {
                                /* The library gave up reconnecting by itself: a fresh connect. */
                                reconnects++;
                                (void) secclient_connect(t->c);
                        }
                }
        }
        add_u64(o, "acked", acked);
        add_u64(o, "duplicates", dups);
        add_u64(o, "retries", retries);
        add_u64(o, "reconnects", reconnects);
        return r;
}

static void count_error(json_object *errors, int r) {
        const char *name = errno_name(r);
        json_object *c = NULL;
        int64_t v = json_object_object_get_ex(errors, name, &c) ? json_object_get_int64(c) : 0;
        json_object_object_add(errors, name, json_object_new_int64(v + 1));
}

static int log_append(int fd, const char *line, size_t n) {
        if (write(fd, line, n) != (ssize_t) n || fsync(fd) < 0)
                return -EIO;
        return 0;
}

static int cmd_crash_recv(Tool *t, json_object *o, char **args, unsigned n) {
        uint8_t seed[32];
        uint64_t deadline_ms;
        if (parse_u64(args[2], 600000, &deadline_ms) < 0)
                return -EINVAL;
        int r = parse_seed(t, args[0], seed);
        if (r < 0)
                return r;
        _cleanup_close_ int log_fd = open(args[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (log_fd < 0) {
                explicit_bzero(seed, sizeof seed);
                return -errno;
        }
        uint64_t deadline = now_ms() + deadline_ms, received = 0, acked = 0, reconnects = 0;
        uint64_t unacked[SECCLIENT_FETCH_MAX];
        size_t n_unacked = 0;
        bool registered = false;
        json_object *errors = json_object_new_object();
        json_object_object_add(o, "errors", errors);

        for (;;) {
                if (!registered) {
                        r = secclient_register(t->c, seed, NULL);
                        if (r == -EEXIST)
                                r = 0;  /* the library registered again by itself after a reconnection */
                        if (r < 0)
                                goto failed;
                        registered = true;
                }
                if (n_unacked > 0) {
                        r = secclient_relay_ack(t->c, unacked, n_unacked, NULL);
                        if (r < 0)
                                goto failed;
                        for (size_t i = 0; i < n_unacked; i++) {
                                char line[40];
                                int k = snprintf(line, sizeof line, "A %llu\n", (unsigned long long) unacked[i]);
                                if (log_append(log_fd, line, (size_t) k) < 0) {
                                        r = -EIO;
                                        goto out;
                                }
                        }
                        acked += n_unacked;
                        n_unacked = 0;
                }
                /* Stop only with nothing received left unacknowledged (unless secd stays away). */
                if (now_ms() >= deadline || access(args[3], F_OK) == 0)
                        break;
                secclient_message *m = NULL;
                size_t k = 0;
                r = secclient_relay_fetch(t->c, SECCLIENT_FETCH_MAX, 0, 200, &m, &k);
                if (r < 0)
                        goto failed;
                for (size_t i = 0; i < k; i++) {
                        struct sha256_ctx ctx;
                        uint8_t d[SHA256_DIGEST_SIZE];
                        char line[200];
                        int len = snprintf(line, sizeof line, "R ");
                        sha256_init(&ctx);
                        sha256_update(&ctx, m[i].len, m[i].data);
                        sha256_digest(&ctx, sizeof d, d);
                        for (int j = 0; j < 16; j++)
                                len += snprintf(line + len, sizeof line - (size_t) len, "%02x", m[i].client_msg_id[j]);
                        len += snprintf(line + len, sizeof line - (size_t) len, " %llu ", (unsigned long long) m[i].id);
                        for (int j = 0; j < SHA256_DIGEST_SIZE; j++)
                                len += snprintf(line + len, sizeof line - (size_t) len, "%02x", d[j]);
                        len += snprintf(line + len, sizeof line - (size_t) len, "\n");
                        if (log_append(log_fd, line, (size_t) len) < 0) {
                                secclient_messages_free(m, k);
                                r = -EIO;
                                goto out;
                        }
                        unacked[n_unacked++] = m[i].id;
                }
                received += k;
                secclient_messages_free(m, k);
                continue;
        failed:
                count_error(errors, r);
                if (!transient(r) || now_ms() >= deadline)
                        goto out;
                sleep_ms(20);
                if (r != -EAGAIN && r != -EBUSY) {
                        reconnects++;
                        registered = false;
                        (void) secclient_connect(t->c);
                }
        }
        r = 0;
out:
        explicit_bzero(seed, sizeof seed);
        add_u64(o, "received", received);
        add_u64(o, "acked", acked);
        add_u64(o, "reconnects", reconnects);
        return r;
}

static int cmd_crash_bundles(Tool *t, json_object *o, char **args, unsigned n) {
        uint8_t key[32];
        uint64_t delay, deadline_ms, served = 0, reconnects = 0;
        if (parse_key(args[0], key) < 0 || parse_u64(args[2], 10000, &delay) < 0 ||
            parse_u64(args[3], 600000, &deadline_ms) < 0)
                return -EINVAL;
        _cleanup_close_ int log_fd = open(args[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (log_fd < 0)
                return -errno;
        uint64_t deadline = now_ms() + deadline_ms;
        json_object *errors = json_object_new_object();
        json_object_object_add(o, "errors", errors);
        int r = 0;
        while (now_ms() < deadline && access(args[4], F_OK) != 0) {
                secclient_bundle b;
                r = secclient_keys_bundle(t->c, key, &b);
                if (r < 0) {
                        count_error(errors, r);
                        if (!transient(r))
                                break;
                        sleep_ms(20);
                        reconnects++;
                        (void) secclient_connect(t->c);
                        r = 0;
                        continue;
                }
                char line[32];
                int k = b.has_one_time ? snprintf(line, sizeof line, "O %u\n", b.one_time.id)
                                       : snprintf(line, sizeof line, "N\n");
                if (log_append(log_fd, line, (size_t) k) < 0)
                        return -EIO;
                served++;
                if (!b.has_one_time)
                        break;
                sleep_ms((unsigned) delay);
        }
        add_u64(o, "served", served);
        add_u64(o, "reconnects", reconnects);
        return r;
}

/* ---- raw TLS commands ------------------------------------------------------------ */

static int parse_tls_index(Tool *t, const char *s, TlsConn **ret) {
        uint64_t k;
        if (parse_u64(s, TLS_CONN_MAX - 1, &k) < 0 || !t->tls[k])
                return -EBADF;
        *ret = t->tls[k];
        return 0;
}

static int cmd_tls_open(Tool *t, json_object *o, char **args, unsigned n) {
        unsigned k = 0;
        while (k < TLS_CONN_MAX && t->tls[k])
                k++;
        if (k == TLS_CONN_MAX)
                return -EMFILE;
        int r = tls_open(t, &t->tls[k]);
        if (r >= 0)
                json_object_object_add(o, "k", json_object_new_int((int) k));
        return r;
}

static int cmd_tls_close(Tool *t, json_object *o, char **args, unsigned n) {
        TlsConn *k;
        if (parse_tls_index(t, args[0], &k) < 0)
                return -EBADF;
        for (unsigned i = 0; i < TLS_CONN_MAX; i++)
                if (t->tls[i] == k)
                        t->tls[i] = tls_conn_free(k);
        return 0;
}

static int cmd_tls_exporter(Tool *t, json_object *o, char **args, unsigned n) {
        TlsConn *k;
        uint8_t e[32];
        if (parse_tls_index(t, args[0], &k) < 0)
                return -EBADF;
        int r = tls_exporter(k, e);
        if (r >= 0)
                add_hex(o, "exporter", e, 32);
        return r;
}

static int cmd_tls_register(Tool *t, json_object *o, char **args, unsigned n) {
        TlsConn *k, *ek;
        uint8_t seed[32], signer[32], pub[32], exporter[32], msg[128], payload[96];
        if (parse_tls_index(t, args[0], &k) < 0)
                return -EBADF;
        ek = k;
        if (n >= 4 && strcmp(args[3], "-") != 0 && parse_tls_index(t, args[3], &ek) < 0)
                return -EBADF;
        bool domain = !(n >= 5 && strcmp(args[4], "nodomain") == 0);
        int r = parse_seed(t, args[1], seed);
        if (r < 0)
                return r;
        if (n >= 3 && strcmp(args[2], "-") != 0)
                r = parse_seed(t, args[2], signer);
        else
                memcpy(signer, seed, 32);
        if (r >= 0)
                r = tls_exporter(ek, exporter);
        if (r >= 0) {
                size_t d = domain ? strlen(DOMAIN_REGISTER) : 0;
                memcpy(msg, DOMAIN_REGISTER, d);
                memcpy(msg + d, exporter, 32);
                ed25519_sha512_public_key(pub, seed);
                memcpy(payload, pub, 32);
                ed25519_sign(signer, msg, d + 32, payload + 32);
                add_hex(o, "key", pub, 32);
                add_hex(o, "sent", payload, sizeof payload);
        }
        explicit_bzero(seed, sizeof seed);
        explicit_bzero(signer, sizeof signer);
        if (r < 0)
                return r;
        uint8_t type, *p = NULL;
        size_t len;
        r = tls_request(k, T_REGISTER, payload, sizeof payload, &type, &p, &len);
        if (r >= 0) {
                add_reply(o, type, p, len);
                free(p);
        }
        return r;
}

static int cmd_tls_raw(Tool *t, json_object *o, char **args, unsigned n) {
        TlsConn *k;
        uint8_t type, rtype, *p = NULL;
        _cleanup_free_ uint8_t *data = NULL;
        size_t len, rlen;
        if (parse_tls_index(t, args[0], &k) < 0)
                return -EBADF;
        if (parse_type(args[1], &type) < 0 || parse_data(args[2], &data, &len) < 0)
                return -EINVAL;
        int r = tls_request(k, type, data, len, &rtype, &p, &rlen);
        if (r >= 0) {
                add_reply(o, rtype, p, rlen);
                free(p);
        }
        return r;
}

static int cmd_tls_send(Tool *t, json_object *o, char **args, unsigned n) {
        TlsConn *k;
        uint8_t type;
        uint32_t id;
        _cleanup_free_ uint8_t *data = NULL;
        size_t len;
        if (parse_tls_index(t, args[0], &k) < 0)
                return -EBADF;
        if (parse_type(args[1], &type) < 0 || parse_data(args[2], &data, &len) < 0)
                return -EINVAL;
        int r = tls_send_frame(k, type, data, len, &id);
        if (r >= 0)
                add_u64(o, "request_id", id);
        return r;
}

static int cmd_tls_recv(Tool *t, json_object *o, char **args, unsigned n) {
        TlsConn *k;
        uint8_t type, *p = NULL;
        uint32_t id;
        size_t len;
        if (parse_tls_index(t, args[0], &k) < 0)
                return -EBADF;
        int r = tls_recv_frame(k, &type, &id, &p, &len);
        if (r >= 0) {
                add_u64(o, "request_id", id);
                add_reply(o, type, p, len);
                free(p);
        }
        return r;
}

/* ---- dispatch ---------------------------------------------------------------------- */

static const Command commands[] = {
        { "connect", 0, 0, cmd_connect },
        { "disconnect", 0, 0, cmd_disconnect },
        { "reconnect", 0, 0, cmd_reconnect },
        { "ping", 0, 0, cmd_ping },
        { "sleep", 1, 1, cmd_sleep },
        { "pub", 1, 1, cmd_pub },
        { "register", 1, 1, cmd_register },
        { "send", 3, 3, cmd_send },
        { "sendmany", 4, 4, cmd_sendmany },
        { "fetch", 3, 3, cmd_fetch },
        { "ack", 1, ARGS_MAX - 1, cmd_ack },
        { "drain", 0, 0, cmd_drain },
        { "publish", 3, 3, cmd_publish },
        { "publish-bad", 2, 2, cmd_publish_bad },
        { "bundle", 1, 1, cmd_bundle },
        { "bundles", 3, 3, cmd_bundles },
        { "count", 0, 0, cmd_count },
        { "raw", 2, 2, cmd_raw },
        { "crash-send", 6, 7, cmd_crash_send },
        { "crash-recv", 4, 4, cmd_crash_recv },
        { "crash-bundles", 5, 5, cmd_crash_bundles },
        { "tls-open", 0, 0, cmd_tls_open },
        { "tls-close", 1, 1, cmd_tls_close },
        { "tls-exporter", 1, 1, cmd_tls_exporter },
        { "tls-register", 2, 5, cmd_tls_register },
        { "tls-raw", 3, 3, cmd_tls_raw },
        { "tls-send", 3, 3, cmd_tls_send },
        { "tls-recv", 1, 1, cmd_tls_recv },
};

/* Run one command; prints its line. Returns < 0 if it failed. */
static int run_command(Tool *t, char **args, unsigned n) {
        const Command *cmd = NULL;
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (strcmp(commands[i].name, args[0]) == 0)
                        cmd = &commands[i];
        json_object *o = result_new(args[0]);
        int r;
        if (!cmd || n - 1 < cmd->min_args || n - 1 > cmd->max_args)
                r = -EINVAL;
        else if (strncmp(cmd->name, "tls-", 4) != 0 && strcmp(cmd->name, "sleep") != 0 && need_conn(t) < 0)
                r = -ENOTCONN;
        else
                r = cmd->run(t, o, args + 1, n - 1);
        if (r < 0) {
                json_object_object_del(o, "ok");
                /* secd's message from the library, not for the raw connections (it may be stale). */
                result_errno(o, cmd && strncmp(cmd->name, "tls-", 4) == 0 ? NULL : t, r);
        } else
                json_object_object_add(o, "ok", json_object_new_boolean(true));
        emit(o);
        return r;
}

static int run_script(Tool *t) {
        const size_t cap = LINE_MAX_BYTES + 2;  /* the line, its newline, the NUL */
        int result = 0;
        static char *args[ARGS_MAX];
        char *line = malloc(cap);

        if (!line)
                return -ENOMEM;
        while (fgets(line, (int) cap, stdin)) {
                size_t len = strlen(line);
                if (len == cap - 1 && line[len - 1] != '\n') {
                        /* Over LINE_MAX_BYTES: skip the rest of it, refuse it whole. */
                        int ch;
                        while ((ch = getchar()) != EOF && ch != '\n')
                                ;
                        json_object *o = result_new("?");
                        result_errno(o, NULL, -E2BIG);
                        emit(o);
                        result = -E2BIG;
                        continue;
                }
                unsigned n = 0;
                bool too_many = false;
                for (char *save = NULL, *tok = strtok_r(line, " \t\r\n", &save); tok;
                     tok = strtok_r(NULL, " \t\r\n", &save)) {
                        if (n == ARGS_MAX) {
                                too_many = true;
                                break;
                        }
                        args[n++] = tok;
                }
                if (n == 0 || args[0][0] == '#')
                        continue;
                if (strcmp(args[0], "quit") == 0)
                        break;
                if (too_many) {
                        json_object *o = result_new(args[0]);
                        result_errno(o, NULL, -E2BIG);
                        emit(o);
                        result = -E2BIG;
                        continue;
                }
                int r = run_command(t, args, n);
                if (r < 0)
                        result = r;
        }
        explicit_bzero(line, cap);
        free(line);
        return result;
}

static int usage(void) {
        fprintf(stderr, "usage: secd-relay-client [--enroll-socket PATH] [--endpoint EP] [--timeout MS]\n"
                        "       [--pem CA CERT KEY] [--no-connect] script | COMMAND ARGS...\n"
                        "(commands: see the comment on top of secd-relay-client.c)\n");
        return 2;
}

int main(int argc, char *argv[]) {
        Tool t = {};
        bool connect_first = true;
        int i;

        for (i = 1; i < argc; i++) {
                const char *a = argv[i];
                bool more = i + 1 < argc;
                if (a[0] != '-')
                        break;
                if (strcmp(a, "--enroll-socket") == 0 && more)
                        t.enroll_socket = argv[++i];
                else if (strcmp(a, "--endpoint") == 0 && more)
                        t.endpoint = argv[++i];
                else if (strcmp(a, "--pem") == 0 && i + 3 < argc) {
                        t.pem[0] = argv[++i];
                        t.pem[1] = argv[++i];
                        t.pem[2] = argv[++i];
                } else if (strcmp(a, "--timeout") == 0 && more) {
                        uint64_t v;
                        if (parse_u64(argv[++i], 600000, &v) < 0 || v == 0)
                                return usage();
                        t.timeout_ms = (unsigned) v;
                } else if (strcmp(a, "--no-connect") == 0)
                        connect_first = false;
                else
                        return usage();
        }
        if (i >= argc)
                return usage();
        t.script = strcmp(argv[i], "script") == 0;
        if (t.script && i + 1 != argc)
                return usage();
        if (!t.script && argc - i > ARGS_MAX)
                return usage();

        int r = handle_setup(&t, &t.c);
        if (r >= 0 && t.pem[0])
                r = tool_load_pem(&t, t.c);
        if (r >= 0 && connect_first) {
                char *connect_args[] = { (char *) "connect" };
                r = run_command(&t, connect_args, 1);
                /*
                 * The crash-* loops reconnect by themselves: a first connect that met
                 * secd being killed (the test kills it as soon as some sender made
                 * progress, maybe before a slower one connected) is theirs to retry.
                 */
                if (r < 0 && transient(r) && !t.script && strncmp(argv[i], "crash-", 6) == 0)
                        r = 0;
        } else if (r < 0) {
                json_object *o = result_new("setup");
                result_errno(o, &t, r);
                emit(o);
        }
        if (r >= 0)
                r = t.script ? run_script(&t) : run_command(&t, argv + i, (unsigned) (argc - i));

        for (unsigned k = 0; k < TLS_CONN_MAX; k++)
                t.tls[k] = tls_conn_free(t.tls[k]);
        if (t.cred)
                gnutls_certificate_free_credentials(t.cred);
        explicit_bzero(t.seed, sizeof t.seed);
        if (t.c) {
                secclient_disconnect(t.c);
                secclient_free(t.c);
        }
        return r < 0 ? 1 : 0;
}
