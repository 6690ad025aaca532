/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libsecclient's credential hand-over bundle, as a child receives it from
 * its socketpair: whatever parses formats back to a bundle that parses to
 * the same three strings, and json-c agrees the formatted text is JSON with
 * those values. CHECK, not CHECK(): release builds define NDEBUG.
 */
#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "secclient-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                               \
        do {                                                                   \
                if (!(x)) {                                                    \
                        fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #x); \
                        abort();                                               \
                }                                                              \
        } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *v[3] = {}, *w[3] = {}, *text = NULL;
        static const char *const keys[3] = { "ca_cert", "client_cert", "client_key" };
        size_t len;
        json_object *o;

        if (creds_bundle_parse((const char *) data, size, &v[0], &v[1], &v[2]) < 0) {
                CHECK(!v[0] && !v[1] && !v[2]);
                return 0;
        }
        for (size_t i = 0; i < 3; i++)
                CHECK(v[i] && v[i][0] != '\0');

        CHECK(creds_bundle_format(v[0], v[1], v[2], &text, &len) == 0 ||
              size > SECCLIENT_CREDS_BUNDLE_MAX / 2);
        if (text) {
                CHECK(strlen(text) == len);
                CHECK(creds_bundle_parse(text, len, &w[0], &w[1], &w[2]) == 0);
                o = json_tokener_parse(text);
                CHECK(o);
                for (size_t i = 0; i < 3; i++) {
                        CHECK(strcmp(v[i], w[i]) == 0);
                        CHECK(strcmp(json_object_get_string(json_object_object_get(o, keys[i])), v[i]) == 0);
                        free(w[i]);
                }
                json_object_put(o);
                free(text);
        }
        for (size_t i = 0; i < 3; i++)
                free(v[i]);
        return 0;
}
