/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * CA key type: ECDSA P-256 vs Ed25519 through GnuTLS, the way secd uses
 * them (gnutls_privkey_sign_data, gnutls_pubkey_verify_data2, key
 * generation). Each loop is bounded by a count and by time. The numbers
 * and the choice are in docs/certificates.md.
 *
 *   bench-sign [SECONDS_PER_LOOP]     (default 1, at most 10)
 */
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOOP_MAX 1000000
#define MESSAGE_SIZE 512     /* about a certificate's to-be-signed part */

typedef struct Algo {
        const char *name;
        gnutls_pk_algorithm_t pk;
        unsigned bits;
        gnutls_digest_algorithm_t dig;
        gnutls_sign_algorithm_t sign;
} Algo;

static double now_sec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void die(const char *what, int r) {
        fprintf(stderr, "%s: %s\n", what, gnutls_strerror(r));
        exit(EXIT_FAILURE);
}

static void bench(const Algo *a, double seconds) {
        gnutls_privkey_t key;
        gnutls_pubkey_t pub;
        unsigned char msg[MESSAGE_SIZE];
        gnutls_datum_t data = { msg, sizeof msg }, sig = {};
        double start, keygen_us, sign_us, verify_us;
        unsigned long n;
        int r;

        memset(msg, 0x5a, sizeof msg);

        start = now_sec();
        for (n = 0; n < LOOP_MAX && (n == 0 || now_sec() - start < seconds); n++) {
                r = gnutls_privkey_init(&key);
                if (r < 0)
                        die("privkey_init", r);
                r = gnutls_privkey_generate2(key, a->pk, a->bits, 0, NULL, 0);
                if (r < 0)
                        die("generate", r);
                gnutls_privkey_deinit(key);
        }
        keygen_us = (now_sec() - start) * 1e6 / (double) n;

        if ((r = gnutls_privkey_init(&key)) < 0 || (r = gnutls_privkey_generate2(key, a->pk, a->bits, 0, NULL, 0)) < 0 ||
            (r = gnutls_pubkey_init(&pub)) < 0 || (r = gnutls_pubkey_import_privkey(pub, key, 0, 0)) < 0)
                die("key", r);

        start = now_sec();
        for (n = 0; n < LOOP_MAX && (n == 0 || now_sec() - start < seconds); n++) {
                gnutls_free(sig.data);
                sig = (gnutls_datum_t) {};
                r = gnutls_privkey_sign_data(key, a->dig, 0, &data, &sig);
                if (r < 0)
                        die("sign", r);
        }
        sign_us = (now_sec() - start) * 1e6 / (double) n;

        start = now_sec();
        for (n = 0; n < LOOP_MAX && (n == 0 || now_sec() - start < seconds); n++) {
                r = gnutls_pubkey_verify_data2(pub, a->sign, 0, &data, &sig);
                if (r < 0)
                        die("verify", r);
        }
        verify_us = (now_sec() - start) * 1e6 / (double) n;

        printf("%-16s keygen %8.1f us   sign %8.1f us (%8.0f/s)   verify %8.1f us (%8.0f/s)   signature %u bytes\n",
               a->name, keygen_us, sign_us, 1e6 / sign_us, verify_us, 1e6 / verify_us, sig.size);

        gnutls_free(sig.data);
        gnutls_pubkey_deinit(pub);
        gnutls_privkey_deinit(key);
}

int main(int argc, char *argv[]) {
        static const Algo algos[] = {
                { "ECDSA P-256", GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), GNUTLS_DIG_SHA256,
                  GNUTLS_SIGN_ECDSA_SHA256 },
                { "Ed25519", GNUTLS_PK_EDDSA_ED25519, 256, GNUTLS_DIG_SHA512, GNUTLS_SIGN_EDDSA_ED25519 },
        };
        double seconds = 1.0;

        if (argc > 1) {
                seconds = atof(argv[1]);
                if (!(seconds > 0.0 && seconds <= 10.0)) {
                        fprintf(stderr, "usage: %s [SECONDS_PER_LOOP (0..10]]\n", argv[0]);
                        return EXIT_FAILURE;
                }
        }
        printf("GnuTLS %s, %d-byte message, %.1f s per loop\n", gnutls_check_version(NULL), MESSAGE_SIZE, seconds);
        for (size_t i = 0; i < sizeof algos / sizeof algos[0]; i++)
                bench(&algos[i], seconds);
        return EXIT_SUCCESS;
}
