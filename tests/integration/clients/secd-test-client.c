/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * secd-test-client: a small libsecclient program for the integration tests
 * (tests/integration/test_mtls.py). Written against the public header only.
 *
 *   secd-test-client [OPTIONS] COMMAND
 *
 * Commands:
 *   enroll       enroll, print the certificate's expiry
 *   ping         get credentials, connect, one PING round trip
 *   hold         get credentials, connect, PING, print "ready"; then one
 *                PING per "ping" line on stdin until EOF or "quit"
 *   dump-creds   enroll and write the credential bundle to --out-fd
 *                (secclient_creds_send(); TEST ONLY: key material)
 *   marker       print the embedded marker (the tests flip a byte in it)
 *
 * Options:
 *   --enroll-socket PATH   the enroll socket
 *   --endpoint PATH|HOST:PORT   the data endpoint
 *   --creds-fd N           load credentials with secclient_creds_recv(N)
 *                          instead of enrolling
 *   --pem CA CERT KEY      load PEM files (secclient_load_credentials)
 *   --out-fd N             for dump-creds
 *   --payload TEXT         PING payload (default "secd-test")
 *   --timeout MS           per-operation timeout
 *
 * Every step prints one JSON object on a line of its own:
 *   {"step":"connect","ok":false,"errno":13,"error":"EACCES","message":"...","secd":"..."}
 * Exit status: 0 all steps succeeded, 1 a step failed, 2 usage.
 */

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "secclient.h"

/*
 * The modified-binary test finds this string in a copy of this executable
 * and changes one byte of it: the copy still runs, but hashes differently.
 */
static const char test_marker[] = "SECD-TEST-CLIENT-MARKER-0123456789abcdef";

static void print_json_string(const char *s) {
        putchar('"');
        for (; s && *s; s++) {
                unsigned char ch = (unsigned char) *s;
                if (ch == '"' || ch == '\\')
                        printf("\\%c", ch);
                else if (ch < 0x20 || ch >= 0x7f)
                        printf("\\u%04x", ch);
                else
                        putchar(ch);
        }
        putchar('"');
}

static int step_result(secclient *c, const char *step, int r) {
        printf("{\"step\":");
        print_json_string(step);
        if (r >= 0) {
                printf(",\"ok\":true}\n");
                fflush(stdout);
                return 0;
        }
        const char *name = strerrorname_np(-r);
        printf(",\"ok\":false,\"errno\":%d,\"error\":", -r);
        print_json_string(name ? name : "?");
        printf(",\"message\":");
        print_json_string(secclient_strerror(r));
        const char *secd = c ? secclient_last_error(c) : NULL;
        if (secd) {
                printf(",\"secd\":");
                print_json_string(secd);
        }
        printf("}\n");
        fflush(stdout);
        return r;
}

static int read_file(const char *path, char **ret) {
        FILE *f = fopen(path, "re");
        if (!f)
                return -errno;
        char *buf = NULL;
        size_t size = 0;
        FILE *m = open_memstream(&buf, &size);
        if (!m) {
                fclose(f);
                return -ENOMEM;
        }
        char chunk[4096];
        size_t n;
        while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
                fwrite(chunk, 1, n, m);
        bool bad = ferror(f);
        fclose(f);
        if (fclose(m) != 0 || bad) {
                free(buf);
                return -EIO;
        }
        *ret = buf;
        return 0;
}

static void free_secret(char *s) {
        if (!s)
                return;
        explicit_bzero(s, strlen(s));
        free(s);
}

typedef struct Options {
        const char *enroll_socket;
        const char *endpoint;
        int creds_fd;
        int out_fd;
        const char *pem[3];
        const char *payload;
        unsigned timeout_ms;
} Options;

static int get_credentials(secclient *c, const Options *o) {
        int r;

        if (o->creds_fd >= 0) {
                r = secclient_creds_recv(c, o->creds_fd);
                return step_result(c, "creds-recv", r);
        }
        if (o->pem[0]) {
                char *pem[3] = {};
                for (int i = 0; i < 3; i++) {
                        r = read_file(o->pem[i], &pem[i]);
                        if (r < 0)
                                break;
                }
                if (r >= 0)
                        r = secclient_load_credentials(c, pem[0], pem[1], pem[2]);
                for (int i = 0; i < 3; i++)
                        free_secret(pem[i]);
                return step_result(c, "load-credentials", r);
        }
        r = secclient_enroll(c);
        step_result(c, "enroll", r);
        if (r >= 0) {
                printf("{\"step\":\"expiry\",\"ok\":true,\"usec\":%llu}\n",
                       (unsigned long long) secclient_cert_expiry(c));
                fflush(stdout);
        }
        return r;
}

static int ping(secclient *c, const Options *o) {
        return step_result(c, "ping", secclient_ping(c, o->payload, strlen(o->payload)));
}

static int command_hold(secclient *c, const Options *o) {
        int r = step_result(c, "connect", secclient_connect(c));
        if (r < 0)
                return r;
        r = ping(c, o);
        if (r < 0)
                return r;
        printf("{\"step\":\"ready\",\"ok\":true}\n");
        fflush(stdout);

        char line[64];
        while (fgets(line, sizeof line, stdin)) {
                if (strncmp(line, "quit", 4) == 0)
                        break;
                if (strncmp(line, "ping", 4) == 0) {
                        r = ping(c, o);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static int usage(void) {
        fprintf(stderr, "usage: secd-test-client [--enroll-socket PATH] [--endpoint EP] [--creds-fd N]\n"
                        "       [--pem CA CERT KEY] [--out-fd N] [--payload TEXT] [--timeout MS]\n"
                        "       enroll|ping|hold|dump-creds|marker\n");
        return 2;
}

static int parse_fd(const char *s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || *end || end == s || v < 0 || v > 1 << 20)
                return -1;
        return (int) v;
}

int main(int argc, char *argv[]) {
        Options o = { .creds_fd = -1, .out_fd = -1, .payload = "secd-test" };
        const char *command = NULL;

        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];
                bool more = i + 1 < argc;
                if (strcmp(a, "--enroll-socket") == 0 && more)
                        o.enroll_socket = argv[++i];
                else if (strcmp(a, "--endpoint") == 0 && more)
                        o.endpoint = argv[++i];
                else if (strcmp(a, "--creds-fd") == 0 && more) {
                        if ((o.creds_fd = parse_fd(argv[++i])) < 0)
                                return usage();
                } else if (strcmp(a, "--out-fd") == 0 && more) {
                        if ((o.out_fd = parse_fd(argv[++i])) < 0)
                                return usage();
                } else if (strcmp(a, "--pem") == 0 && i + 3 < argc) {
                        o.pem[0] = argv[++i];
                        o.pem[1] = argv[++i];
                        o.pem[2] = argv[++i];
                } else if (strcmp(a, "--payload") == 0 && more)
                        o.payload = argv[++i];
                else if (strcmp(a, "--timeout") == 0 && more) {
                        int t = parse_fd(argv[++i]);
                        if (t <= 0)
                                return usage();
                        o.timeout_ms = (unsigned) t;
                } else if (a[0] != '-' && !command)
                        command = a;
                else
                        return usage();
        }
        if (!command)
                return usage();

        if (strcmp(command, "marker") == 0) {
                printf("%s\n", test_marker);
                return 0;
        }

        secclient *c = NULL;
        int r = step_result(NULL, "new", secclient_new(&c));
        if (r < 0)
                return 1;
        if (o.enroll_socket && r >= 0)
                r = step_result(c, "set-enroll-socket", secclient_set_enroll_socket(c, o.enroll_socket));
        if (o.endpoint && r >= 0)
                r = step_result(c, "set-endpoint", secclient_set_endpoint(c, o.endpoint));
        if (o.timeout_ms && r >= 0)
                r = step_result(c, "set-timeout", secclient_set_timeout(c, o.timeout_ms));

        if (r >= 0) {
                if (strcmp(command, "enroll") == 0)
                        r = get_credentials(c, &o);
                else if (strcmp(command, "ping") == 0) {
                        r = get_credentials(c, &o);
                        if (r >= 0)
                                r = step_result(c, "connect", secclient_connect(c));
                        if (r >= 0)
                                r = ping(c, &o);
                } else if (strcmp(command, "hold") == 0) {
                        r = get_credentials(c, &o);
                        if (r >= 0)
                                r = command_hold(c, &o);
                } else if (strcmp(command, "dump-creds") == 0) {
                        if (o.out_fd < 0) {
                                secclient_free(c);
                                return usage();
                        }
                        r = get_credentials(c, &o);
                        if (r >= 0)
                                r = step_result(c, "creds-send", secclient_creds_send(c, o.out_fd));
                        close(o.out_fd);
                } else {
                        secclient_free(c);
                        return usage();
                }
        }
        secclient_disconnect(c);
        secclient_free(c);
        return r < 0 ? 1 : 0;
}
