/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Enroll, connect and ping secd: the smallest libsecclient program.
 *
 *   ping [ENDPOINT [COUNT]]
 *
 * ENDPOINT defaults to $SECD_SOCKET, then /run/secd/secd.sock; the enroll
 * socket to $SECD_ENROLL_SOCKET, then /run/secd/enroll.sock. Prints the
 * round-trip time of each PING.
 */
#include <inttypes.h>
#include <secclient.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec / 1e6;
}

static int fail(secclient *c, const char *what, int r) {
        const char *note = secclient_last_error(c);

        fprintf(stderr, "ping: %s: %s%s%s\n", what, secclient_strerror(r), note ? ": " : "",
                note ? note : "");
        secclient_free(c);
        return 1;
}

int main(int argc, char **argv) {
        static const char payload[] = "secclient example";
        secclient *c = NULL;
        long count = 1;
        double t;
        int r;

        if (argc > 3) {
                fprintf(stderr, "usage: %s [ENDPOINT [COUNT]]\n", argv[0]);
                return 2;
        }
        if (argc > 2) {
                count = strtol(argv[2], NULL, 10);
                if (count < 1 || count > 1000000) {
                        fprintf(stderr, "ping: bad count '%s'\n", argv[2]);
                        return 2;
                }
        }

        r = secclient_new(&c);
        if (r < 0) {
                fprintf(stderr, "ping: %s\n", secclient_strerror(r));
                return 1;
        }
        if (argc > 1) {
                r = secclient_set_endpoint(c, argv[1]);
                if (r < 0)
                        return fail(c, argv[1], r);
        }

        /* Enrolls first: a fresh client has no certificate. */
        t = now_ms();
        r = secclient_connect(c);
        if (r < 0)
                return fail(c, "connect", r);
        printf("connected (enrolled, mTLS, admitted) in %.3f ms; certificate expires at %" PRIu64
               " (µs since the epoch)\n",
               now_ms() - t, secclient_cert_expiry(c));

        for (long i = 0; i < count; i++) {
                t = now_ms();
                r = secclient_ping(c, payload, sizeof payload - 1);
                if (r < 0)
                        return fail(c, "ping", r);
                printf("pong: %zu bytes, round trip %.3f ms\n", sizeof payload - 1, now_ms() - t);
        }

        secclient_disconnect(c);
        secclient_free(c);
        return 0;
}
