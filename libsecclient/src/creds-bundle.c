/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The credential hand-over bundle, a JSON object of three PEM strings. It
 * carries a private key, so it is written and read here by hand rather than
 * through json-c: every copy this code makes is wiped before it is freed
 * (json-c's tokener and printbufs would leave copies behind).
 */
#include <stdlib.h>
#include <string.h>

#include "secclient-internal.h"

static const char *const bundle_keys[3] = { "ca_cert", "client_cert", "client_key" };

/* Growable buffer whose old copies are wiped on every reallocation. */
typedef struct SecretBuf {
        char *data;
        size_t len, size;
} SecretBuf;

static void secret_buf_done(SecretBuf *b) {
        if (b->data) {
                explicit_bzero(b->data, b->size);
                free(b->data);
        }
        *b = (SecretBuf) {};
}

static int secret_buf_append(SecretBuf *b, const char *p, size_t n) {
        size_t need;

        if (!size_add_ok(b->len, n + 1, &need) || need > 4 * SECCLIENT_CREDS_BUNDLE_MAX + 64)
                return -EMSGSIZE;
        if (need > b->size) {
                size_t size = MAX(need, b->size * 2);
                char *d = malloc(size);

                if (!d)
                        return -ENOMEM;
                if (b->data) {
                        memcpy(d, b->data, b->len);
                        explicit_bzero(b->data, b->size);
                        free(b->data);
                }
                b->data = d;
                b->size = size;
        }
        memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = '\0';
        return 0;
}

static int append_json_string(SecretBuf *b, const char *s) {
        int r;

        r = secret_buf_append(b, "\"", 1);
        if (r < 0)
                return r;
        for (; *s; s++) {
                unsigned char ch = (unsigned char) *s;
                char esc[8];

                if (ch == '"' || ch == '\\') {
                        esc[0] = '\\';
                        esc[1] = (char) ch;
                        r = secret_buf_append(b, esc, 2);
                } else if (ch == '\n')
                        r = secret_buf_append(b, "\\n", 2);
                else if (ch < 0x20) {
                        static const char hex[] = "0123456789abcdef";

                        memcpy(esc, "\\u00", 4);
                        esc[4] = hex[ch >> 4];
                        esc[5] = hex[ch & 0xf];
                        r = secret_buf_append(b, esc, 6);
                } else
                        r = secret_buf_append(b, s, 1);
                if (r < 0)
                        return r;
        }
        return secret_buf_append(b, "\"", 1);
}

int creds_bundle_format(const char *ca, const char *cert, const char *key, char **ret, size_t *ret_len) {
        const char *values[3] = { ca, cert, key };
        SecretBuf b = {};
        int r = 0;

        if (!ca || !cert || !key || !ret || !ret_len)
                return -EINVAL;

        r = secret_buf_append(&b, "{", 1);
        for (size_t i = 0; r >= 0 && i < 3; i++) {
                if (i > 0)
                        r = secret_buf_append(&b, ",", 1);
                if (r >= 0)
                        r = append_json_string(&b, bundle_keys[i]);
                if (r >= 0)
                        r = secret_buf_append(&b, ":", 1);
                if (r >= 0)
                        r = append_json_string(&b, values[i]);
        }
        if (r >= 0)
                r = secret_buf_append(&b, "}", 1);
        if (r >= 0 && b.len > SECCLIENT_CREDS_BUNDLE_MAX)
                r = -EMSGSIZE;
        if (r < 0) {
                secret_buf_done(&b);
                return r;
        }
        *ret_len = b.len;
        *ret = b.data;
        return 0;
}

typedef struct Parser {
        const char *p, *end;
} Parser;

static void skip_ws(Parser *ps) {
        while (ps->p < ps->end && strchr(" \t\r\n", *ps->p) && *ps->p != '\0')
                ps->p++;
}

static int hex_value(char ch) {
        if (ch >= '0' && ch <= '9')
                return ch - '0';
        if (ch >= 'a' && ch <= 'f')
                return ch - 'a' + 10;
        if (ch >= 'A' && ch <= 'F')
                return ch - 'A' + 10;
        return -1;
}

/*
 * A JSON string into a wiped-on-free buffer. PEM is ASCII: \u escapes are
 * accepted only below 0x80 and raw bytes only in 0x20-0x7e; anything else
 * is malformed for this bundle.
 */
static int parse_string(Parser *ps, SecretBuf *out) {
        int r;

        if (ps->p >= ps->end || *ps->p != '"')
                return -EBADMSG;
        ps->p++;
        for (;;) {
                char ch;

                if (ps->p >= ps->end)
                        return -EBADMSG;
                ch = *ps->p++;
                if (ch == '"')
                        break;
                if ((unsigned char) ch < 0x20 || (unsigned char) ch > 0x7e)
                        return -EBADMSG;
                if (ch == '\\') {
                        if (ps->p >= ps->end)
                                return -EBADMSG;
                        ch = *ps->p++;
                        switch (ch) {
                        case '"': case '\\': case '/':
                                break;
                        case 'n': ch = '\n'; break;
                        case 'r': ch = '\r'; break;
                        case 't': ch = '\t'; break;
                        case 'b': ch = '\b'; break;
                        case 'f': ch = '\f'; break;
                        case 'u': {
                                int v = 0;

                                if (ps->end - ps->p < 4)
                                        return -EBADMSG;
                                for (int i = 0; i < 4; i++) {
                                        int h = hex_value(ps->p[i]);
                                        if (h < 0)
                                                return -EBADMSG;
                                        v = v * 16 + h;
                                }
                                ps->p += 4;
                                if (v == 0 || v >= 0x80)
                                        return -EBADMSG;
                                ch = (char) v;
                                break;
                        }
                        default:
                                return -EBADMSG;
                        }
                }
                r = secret_buf_append(out, &ch, 1);
                if (r < 0)
                        return r;
        }
        if (!out->data) /* "" */
                return secret_buf_append(out, "", 0);
        return 0;
}

int creds_bundle_parse(const char *text, size_t len, char **ret_ca, char **ret_cert, char **ret_key) {
        SecretBuf values[3] = {};
        Parser ps = { .p = text, .end = text + len };
        int r = -EBADMSG;

        if (!text || !ret_ca || !ret_cert || !ret_key)
                return -EINVAL;
        if (len > SECCLIENT_CREDS_BUNDLE_MAX)
                return -EMSGSIZE;

        skip_ws(&ps);
        if (ps.p >= ps.end || *ps.p++ != '{')
                goto fail;
        for (size_t n = 0;; n++) {
                SecretBuf name = {};
                size_t i;

                skip_ws(&ps);
                if (n == 3)
                        break;
                if (n > 0) {
                        if (ps.p >= ps.end || *ps.p++ != ',')
                                goto fail;
                        skip_ws(&ps);
                }
                r = parse_string(&ps, &name);
                if (r < 0) {
                        secret_buf_done(&name);
                        goto fail;
                }
                for (i = 0; i < 3; i++)
                        if (streq(name.data, bundle_keys[i]))
                                break;
                secret_buf_done(&name);
                r = -EBADMSG;
                if (i == 3 || values[i].data) /* unknown or duplicate key */
                        goto fail;
                skip_ws(&ps);
                if (ps.p >= ps.end || *ps.p++ != ':')
                        goto fail;
                skip_ws(&ps);
                r = parse_string(&ps, &values[i]);
                if (r < 0)
                        goto fail;
                r = -EBADMSG;
        }
        if (ps.p >= ps.end || *ps.p++ != '}')
                goto fail;
        skip_ws(&ps);
        if (ps.p != ps.end)
                goto fail;
        for (size_t i = 0; i < 3; i++)
                if (values[i].len == 0)
                        goto fail;

        *ret_ca = values[0].data;
        *ret_cert = values[1].data;
        *ret_key = values[2].data;
        return 0;

fail:
        for (size_t i = 0; i < 3; i++)
                secret_buf_done(&values[i]);
        return r;
}
